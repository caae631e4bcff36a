//! The stream classification rules of Microsoft's Call Quality Dashboard, with configurable
//! thresholds (`[quality]`), and the classification of one stream.
//!
//! Source: "Stream Classification in Call Quality Dashboard (CQD)", Microsoft Teams docs,
//! <https://learn.microsoft.com/microsoftteams/stream-classification-in-call-quality-dashboard>.
//! - Audio is poor when (round trip > 500 ms, or packet loss rate > 0.1, or jitter > 30 ms)
//!   and packet utilization > 500 packets.
//! - Video: the first metric present of frame loss > 50 %, frame rate < 7, post-FEC packet
//!   loss rate > 0.15 decides.
//! - Video-based screen sharing: the same order, with frame rate < 2.
//! - Application sharing (RDP) and data streams are unclassified (Graph carries none of the
//!   metrics CQD uses for them), and so is a stream missing the metrics its class needs.
//!
//! Pure: no I/O, no allocation per stream (reasons are a bit set of static column names).

use serde::Deserialize;

/// Every threshold of the rules; the defaults are CQD's. `[quality]` in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// Audio is poor above this average round trip (ms).
    pub audio_round_trip_ms: f64,
    /// Audio is poor above this average packet loss rate (0–1).
    pub audio_packet_loss_rate: f64,
    /// Audio is poor above this average jitter (ms).
    pub audio_jitter_ms: f64,
    /// Audio is classified poor only with more packets than this.
    pub audio_packet_utilization: i64,
    /// Video is poor above this average frame loss (percent).
    pub video_frame_loss_percentage: f64,
    /// Video is poor below this average frame rate (frames per second).
    pub video_frame_rate: f64,
    /// Video is poor above this post-FEC packet loss rate (0–1).
    pub video_post_fec_packet_loss_rate: f64,
    /// Screen sharing (video-based) is poor above this average frame loss (percent).
    pub screen_sharing_frame_loss_percentage: f64,
    /// Screen sharing (video-based) is poor below this average frame rate.
    pub screen_sharing_frame_rate: f64,
    /// Screen sharing (video-based) is poor above this post-FEC packet loss rate.
    pub screen_sharing_post_fec_packet_loss_rate: f64,
}

impl Default for Rules {
    /// The thresholds of CQD.
    fn default() -> Self {
        Rules {
            audio_round_trip_ms: 500.0,
            audio_packet_loss_rate: 0.1,
            audio_jitter_ms: 30.0,
            audio_packet_utilization: 500,
            video_frame_loss_percentage: 50.0,
            video_frame_rate: 7.0,
            video_post_fec_packet_loss_rate: 0.15,
            screen_sharing_frame_loss_percentage: 50.0,
            screen_sharing_frame_rate: 2.0,
            screen_sharing_post_fec_packet_loss_rate: 0.15,
        }
    }
}

impl Rules {
    /// The thresholds by their `[quality]` key, in declaration order.
    fn thresholds(&self) -> [(&'static str, f64); 10] {
        [
            ("audio_round_trip_ms", self.audio_round_trip_ms),
            ("audio_packet_loss_rate", self.audio_packet_loss_rate),
            ("audio_jitter_ms", self.audio_jitter_ms),
            (
                "audio_packet_utilization",
                self.audio_packet_utilization as f64,
            ),
            (
                "video_frame_loss_percentage",
                self.video_frame_loss_percentage,
            ),
            ("video_frame_rate", self.video_frame_rate),
            (
                "video_post_fec_packet_loss_rate",
                self.video_post_fec_packet_loss_rate,
            ),
            (
                "screen_sharing_frame_loss_percentage",
                self.screen_sharing_frame_loss_percentage,
            ),
            ("screen_sharing_frame_rate", self.screen_sharing_frame_rate),
            (
                "screen_sharing_post_fec_packet_loss_rate",
                self.screen_sharing_post_fec_packet_loss_rate,
            ),
        ]
    }

    /// The problems of thresholds that cannot be meant (negative or not a number).
    pub fn problems(&self) -> Vec<String> {
        self.thresholds()
            .into_iter()
            .filter(|(_, value)| !value.is_finite() || *value < 0.0)
            .map(|(key, value)| {
                format!("[quality] {key} = {value}: a threshold is a number of at least 0")
            })
            .collect()
    }

    /// The `quality_rules` value: `cqd` for CQD's thresholds, else `cqd-custom:` and every
    /// threshold that differs (`key=value`, in declaration order).
    pub fn id(&self) -> String {
        let defaults = Rules::default().thresholds();
        let changed: Vec<String> = self
            .thresholds()
            .into_iter()
            .zip(defaults)
            .filter(|((_, value), (_, default))| value != default)
            .map(|((key, value), _)| format!("{key}={value}"))
            .collect();
        if changed.is_empty() {
            "cqd".to_string()
        } else {
            format!("cqd-custom:{}", changed.join(","))
        }
    }

    /// Classifies one stream of a media of `class`.
    pub fn classify(&self, class: MediaClass, metrics: &StreamMetrics) -> Verdict {
        match class {
            MediaClass::Audio => self.audio(metrics),
            MediaClass::Video => video_like(
                metrics,
                self.video_frame_loss_percentage,
                self.video_frame_rate,
                self.video_post_fec_packet_loss_rate,
            ),
            MediaClass::ScreenSharing => video_like(
                metrics,
                self.screen_sharing_frame_loss_percentage,
                self.screen_sharing_frame_rate,
                self.screen_sharing_post_fec_packet_loss_rate,
            ),
            MediaClass::ApplicationSharing | MediaClass::Data | MediaClass::Other => {
                Verdict::UNCLASSIFIED
            }
        }
    }

    fn audio(&self, m: &StreamMetrics) -> Verdict {
        let Some(packets) = m.packet_utilization else {
            return Verdict::UNCLASSIFIED;
        };
        if m.round_trip_ms.is_none() && m.packet_loss_rate.is_none() && m.jitter_ms.is_none() {
            return Verdict::UNCLASSIFIED;
        }
        let mut reasons = Reasons::NONE;
        let above = |value: Option<f64>, limit: f64| value.is_some_and(|v| v > limit);
        if above(m.round_trip_ms, self.audio_round_trip_ms) {
            reasons = reasons.with(Reasons::ROUND_TRIP);
        }
        if above(m.packet_loss_rate, self.audio_packet_loss_rate) {
            reasons = reasons.with(Reasons::PACKET_LOSS);
        }
        if above(m.jitter_ms, self.audio_jitter_ms) {
            reasons = reasons.with(Reasons::JITTER);
        }
        if reasons.is_empty() || packets <= self.audio_packet_utilization {
            return Verdict::GOOD;
        }
        Verdict {
            quality: Quality::Poor,
            reasons,
        }
    }
}

/// Video and video-based screen sharing: the first metric present decides.
fn video_like(m: &StreamMetrics, frame_loss: f64, frame_rate: f64, post_fec: f64) -> Verdict {
    let (poor, reason) = if let Some(loss) = m.video_frame_loss_percentage {
        (loss > frame_loss, Reasons::FRAME_LOSS)
    } else if let Some(rate) = m.video_frame_rate {
        (rate < frame_rate, Reasons::FRAME_RATE)
    } else if let Some(loss) = m.post_fec_packet_loss_rate {
        (loss > post_fec, Reasons::POST_FEC_LOSS)
    } else {
        return Verdict::UNCLASSIFIED;
    };
    if poor {
        Verdict {
            quality: Quality::Poor,
            reasons: reason,
        }
    } else {
        Verdict::GOOD
    }
}

/// What a media carries, from its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaClass {
    Audio,
    Video,
    /// Video-based screen sharing (VBSS): `applicationsharing-video`.
    ScreenSharing,
    /// Application sharing over RDP: other `applicationsharing…` labels.
    ApplicationSharing,
    Data,
    /// No label, or one these rules do not know.
    Other,
}

impl MediaClass {
    /// The class of a media `label` (`main-audio`, `main-video`, `applicationsharing-video`,
    /// `data`, ...). `applicationsharing…` is looked at first: its video label is screen
    /// sharing, not video.
    pub fn of_label(label: Option<&str>) -> MediaClass {
        let Some(label) = label else {
            return MediaClass::Other;
        };
        let has = |word: &str| {
            label
                .as_bytes()
                .windows(word.len())
                .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
        };
        let starts = |word: &str| {
            label.len() >= word.len()
                && label.as_bytes()[..word.len()].eq_ignore_ascii_case(word.as_bytes())
        };
        if starts("applicationsharing") {
            if has("video") {
                MediaClass::ScreenSharing
            } else {
                MediaClass::ApplicationSharing
            }
        } else if has("audio") {
            MediaClass::Audio
        } else if has("video") {
            MediaClass::Video
        } else if has("data") {
            MediaClass::Data
        } else {
            MediaClass::Other
        }
    }
}

/// The metrics of one stream the rules read (None: not reported).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StreamMetrics {
    pub round_trip_ms: Option<f64>,
    pub packet_loss_rate: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub packet_utilization: Option<i64>,
    pub video_frame_loss_percentage: Option<f64>,
    pub video_frame_rate: Option<f64>,
    pub post_fec_packet_loss_rate: Option<f64>,
}

/// A stream's classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    Good,
    Poor,
    Unclassified,
}

impl Quality {
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Good => "good",
            Quality::Poor => "poor",
            Quality::Unclassified => "unclassified",
        }
    }
}

/// The metrics that made a stream poor, as a set of `call_media_streams` column names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reasons(u8);

impl Reasons {
    pub const NONE: Reasons = Reasons(0);
    pub const ROUND_TRIP: Reasons = Reasons(1);
    pub const PACKET_LOSS: Reasons = Reasons(1 << 1);
    pub const JITTER: Reasons = Reasons(1 << 2);
    pub const FRAME_LOSS: Reasons = Reasons(1 << 3);
    pub const FRAME_RATE: Reasons = Reasons(1 << 4);
    pub const POST_FEC_LOSS: Reasons = Reasons(1 << 5);

    /// The column each reason names, by bit.
    const COLUMNS: [&'static str; 6] = [
        "average_round_trip_time_ms",
        "average_packet_loss_rate",
        "average_jitter_ms",
        "average_video_frame_loss_percentage",
        "average_video_frame_rate",
        "post_forward_error_correction_packet_loss_rate",
    ];

    pub fn with(self, other: Reasons) -> Reasons {
        Reasons(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The column names, in a fixed order.
    pub fn columns(self) -> impl Iterator<Item = &'static str> {
        Self::COLUMNS
            .into_iter()
            .enumerate()
            .filter(move |(bit, _)| self.0 & (1 << bit) != 0)
            .map(|(_, column)| column)
    }
}

/// The classification of one stream and the metrics that made it poor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub quality: Quality,
    pub reasons: Reasons,
}

impl Verdict {
    pub const GOOD: Verdict = Verdict {
        quality: Quality::Good,
        reasons: Reasons::NONE,
    };
    pub const UNCLASSIFIED: Verdict = Verdict {
        quality: Quality::Unclassified,
        reasons: Reasons::NONE,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A good audio stream well inside every threshold, with enough packets.
    fn audio() -> StreamMetrics {
        StreamMetrics {
            round_trip_ms: Some(100.0),
            packet_loss_rate: Some(0.01),
            jitter_ms: Some(10.0),
            packet_utilization: Some(10_000),
            ..StreamMetrics::default()
        }
    }

    fn classify(class: MediaClass, metrics: StreamMetrics) -> (Quality, Vec<&'static str>) {
        let verdict = Rules::default().classify(class, &metrics);
        (verdict.quality, verdict.reasons.columns().collect())
    }

    #[test]
    fn audio_just_above_each_threshold_is_poor_and_names_its_column() {
        let cases = [
            (
                StreamMetrics {
                    round_trip_ms: Some(500.001),
                    ..audio()
                },
                "average_round_trip_time_ms",
            ),
            (
                StreamMetrics {
                    packet_loss_rate: Some(0.1001),
                    ..audio()
                },
                "average_packet_loss_rate",
            ),
            (
                StreamMetrics {
                    jitter_ms: Some(30.001),
                    ..audio()
                },
                "average_jitter_ms",
            ),
        ];
        for (metrics, column) in cases {
            assert_eq!(
                classify(MediaClass::Audio, metrics),
                (Quality::Poor, vec![column])
            );
        }
    }

    #[test]
    fn audio_at_or_just_below_each_threshold_is_good() {
        for metrics in [
            StreamMetrics {
                round_trip_ms: Some(500.0),
                ..audio()
            },
            StreamMetrics {
                round_trip_ms: Some(499.9),
                ..audio()
            },
            StreamMetrics {
                packet_loss_rate: Some(0.1),
                ..audio()
            },
            StreamMetrics {
                packet_loss_rate: Some(0.0999),
                ..audio()
            },
            StreamMetrics {
                jitter_ms: Some(30.0),
                ..audio()
            },
            StreamMetrics {
                jitter_ms: Some(29.9),
                ..audio()
            },
        ] {
            assert_eq!(
                classify(MediaClass::Audio, metrics),
                (Quality::Good, vec![])
            );
        }
    }

    #[test]
    fn audio_needs_more_than_500_packets_to_be_poor() {
        let bad = StreamMetrics {
            round_trip_ms: Some(900.0),
            jitter_ms: Some(80.0),
            ..audio()
        };
        let at_gate = StreamMetrics {
            packet_utilization: Some(500),
            ..bad
        };
        let above_gate = StreamMetrics {
            packet_utilization: Some(501),
            ..bad
        };
        assert_eq!(
            classify(MediaClass::Audio, at_gate),
            (Quality::Good, vec![])
        );
        assert_eq!(
            classify(MediaClass::Audio, above_gate),
            (
                Quality::Poor,
                vec!["average_round_trip_time_ms", "average_jitter_ms"]
            )
        );
    }

    #[test]
    fn audio_missing_its_metrics_is_unclassified() {
        let no_packets = StreamMetrics {
            packet_utilization: None,
            round_trip_ms: Some(900.0),
            ..audio()
        };
        let no_metrics = StreamMetrics {
            packet_utilization: Some(10_000),
            ..StreamMetrics::default()
        };
        assert_eq!(
            classify(MediaClass::Audio, no_packets).0,
            Quality::Unclassified
        );
        assert_eq!(
            classify(MediaClass::Audio, no_metrics).0,
            Quality::Unclassified
        );
        // One metric is enough to classify.
        let jitter_only = StreamMetrics {
            jitter_ms: Some(31.0),
            packet_utilization: Some(600),
            ..StreamMetrics::default()
        };
        assert_eq!(
            classify(MediaClass::Audio, jitter_only),
            (Quality::Poor, vec!["average_jitter_ms"])
        );
    }

    #[test]
    fn video_and_screen_sharing_take_the_first_metric_present() {
        let frame_loss = |v| StreamMetrics {
            video_frame_loss_percentage: Some(v),
            video_frame_rate: Some(1.0),
            post_fec_packet_loss_rate: Some(0.9),
            ..StreamMetrics::default()
        };
        let frame_rate = |v| StreamMetrics {
            video_frame_rate: Some(v),
            post_fec_packet_loss_rate: Some(0.9),
            ..StreamMetrics::default()
        };
        let post_fec = |v| StreamMetrics {
            post_fec_packet_loss_rate: Some(v),
            ..StreamMetrics::default()
        };
        let poor = |column| (Quality::Poor, vec![column]);
        let good = (Quality::Good, vec![]);
        for class in [MediaClass::Video, MediaClass::ScreenSharing] {
            // Frame loss decides although the frame rate and post-FEC loss are bad.
            assert_eq!(classify(class, frame_loss(50.0)), good);
            assert_eq!(
                classify(class, frame_loss(50.01)),
                poor("average_video_frame_loss_percentage")
            );
            assert_eq!(classify(class, post_fec(0.15)), good);
            assert_eq!(
                classify(class, post_fec(0.1501)),
                poor("post_forward_error_correction_packet_loss_rate")
            );
            assert_eq!(
                classify(class, StreamMetrics::default()).0,
                Quality::Unclassified
            );
        }
        assert_eq!(classify(MediaClass::Video, frame_rate(7.0)), good);
        assert_eq!(
            classify(MediaClass::Video, frame_rate(6.99)),
            poor("average_video_frame_rate")
        );
        assert_eq!(classify(MediaClass::ScreenSharing, frame_rate(2.0)), good);
        assert_eq!(
            classify(MediaClass::ScreenSharing, frame_rate(1.99)),
            poor("average_video_frame_rate")
        );
        // 6 frames per second is poor video but fine screen sharing.
        assert_eq!(classify(MediaClass::ScreenSharing, frame_rate(6.0)), good);
    }

    #[test]
    fn application_sharing_data_and_unknown_media_are_unclassified() {
        let bad = StreamMetrics {
            video_frame_rate: Some(0.5),
            round_trip_ms: Some(2_000.0),
            ..audio()
        };
        for class in [
            MediaClass::ApplicationSharing,
            MediaClass::Data,
            MediaClass::Other,
        ] {
            assert_eq!(classify(class, bad), (Quality::Unclassified, vec![]));
        }
    }

    #[test]
    fn labels_map_to_classes_with_application_sharing_before_video() {
        let cases = [
            (Some("main-audio"), MediaClass::Audio),
            (Some("main-video"), MediaClass::Video),
            (Some("applicationsharing-video"), MediaClass::ScreenSharing),
            (Some("ApplicationSharing-Video"), MediaClass::ScreenSharing),
            (Some("applicationsharing"), MediaClass::ApplicationSharing),
            (Some("data"), MediaClass::Data),
            (Some("panoramic-video"), MediaClass::Video),
            (Some("something-else"), MediaClass::Other),
            (None, MediaClass::Other),
        ];
        for (label, class) in cases {
            assert_eq!(MediaClass::of_label(label), class, "{label:?}");
        }
    }

    #[test]
    fn custom_thresholds_move_the_line_and_name_the_rules() {
        let rules: Rules = toml::from_str("audio_jitter_ms = 20\nvideo_frame_rate = 15").unwrap();
        let jitter = StreamMetrics {
            jitter_ms: Some(25.0),
            ..audio()
        };
        assert_eq!(
            rules.classify(MediaClass::Audio, &jitter).quality,
            Quality::Poor
        );
        assert_eq!(
            Rules::default()
                .classify(MediaClass::Audio, &jitter)
                .quality,
            Quality::Good
        );
        let video = StreamMetrics {
            video_frame_rate: Some(10.0),
            ..StreamMetrics::default()
        };
        assert_eq!(
            rules.classify(MediaClass::Video, &video).quality,
            Quality::Poor
        );
        assert_eq!(Rules::default().id(), "cqd");
        assert_eq!(
            rules.id(),
            "cqd-custom:audio_jitter_ms=20,video_frame_rate=15"
        );
        assert_eq!(
            rules.audio_round_trip_ms, 500.0,
            "unset keys keep CQD's value"
        );
    }

    #[test]
    fn unknown_keys_and_impossible_thresholds_are_refused() {
        let unknown = toml::from_str::<Rules>("audio_jiter_ms = 20").unwrap_err();
        assert!(unknown.to_string().contains("audio_jiter_ms"), "{unknown}");
        let negative: Rules = toml::from_str("video_frame_rate = -1").unwrap();
        assert_eq!(negative.problems().len(), 1);
        assert!(negative.problems()[0].contains("[quality] video_frame_rate"));
        assert!(Rules::default().problems().is_empty());
    }
}
