//! Call quality as answers: each stream classified Good / Poor / Unclassified by the rules of
//! Microsoft's Call Quality Dashboard ([`rules`]), the roll-ups per session and per call, and
//! the sites (buildings) of endpoints from a CQD building file ([`sites`]).
//!
//! Rules: "Stream Classification in Call Quality Dashboard (CQD)", Microsoft Teams docs,
//! <https://learn.microsoft.com/microsoftteams/stream-classification-in-call-quality-dashboard>.
//!
//! The flattener ([`crate::flatten::call_records`]) reads the metrics, asks [`Rules::classify`],
//! tallies [`Rollup`]s and hands the results to the table builders as [`Derived`] values of
//! the columns the schemas declare with `$` paths (`$quality`, `$audio_streams_poor`, ...).
//! What made the rows ([`Derivation::fingerprint`]) joins the rows' fingerprint, so a rescan
//! does not reuse rows made under other rules or another building file.
//!
//! May touch: the building file (through [`sites`]). Knows nothing of Arrow, Graph or the lake.

pub mod rules;
pub mod sites;

use std::sync::Arc;

pub use rules::{MediaClass, Quality, Reasons, Rules, StreamMetrics, Verdict};
pub use sites::{Site, Sites, SitesError};

/// What the flattener derives with: the classification rules and the sites.
#[derive(Debug, Clone)]
pub struct Derivation {
    rules: Rules,
    rules_id: Arc<str>,
    sites: Arc<Sites>,
}

impl Default for Derivation {
    /// CQD's rules, no building file.
    fn default() -> Self {
        Derivation::new(Rules::default(), Sites::default())
    }
}

impl Derivation {
    pub fn new(rules: Rules, sites: Sites) -> Self {
        Derivation {
            rules_id: rules.id().into(),
            rules,
            sites: Arc::new(sites),
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn sites(&self) -> &Sites {
        &self.sites
    }

    /// The `quality_rules` value of every row ([`Rules::id`]).
    pub fn rules_id(&self) -> &str {
        &self.rules_id
    }

    /// What the derived columns depend on, for the rows' fingerprint.
    pub fn fingerprint(&self) -> String {
        format!("quality={};sites={}", self.rules_id, self.sites.id())
    }
}

/// The side of a call that received a stream: `callerToCallee` is received by the callee.
pub fn receiving_endpoint(stream_direction: Option<&str>) -> Option<&'static str> {
    match stream_direction? {
        "callerToCallee" => Some("callee"),
        "calleeToCaller" => Some("caller"),
        _ => None,
    }
}

/// Streams of one modality: how many, how many classified, how many poor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub streams: i32,
    pub classified: i32,
    pub poor: i32,
}

impl Tally {
    fn add(&mut self, quality: Quality) {
        self.streams += 1;
        self.classified += i32::from(quality != Quality::Unclassified);
        self.poor += i32::from(quality == Quality::Poor);
    }

    fn merge(&mut self, other: Tally) {
        self.streams += other.streams;
        self.classified += other.classified;
        self.poor += other.poor;
    }

    /// `poor` if any stream was poor, `good` if every classified one was good (and there
    /// was one), else `unclassified`.
    pub fn quality(self) -> Quality {
        if self.poor > 0 {
            Quality::Poor
        } else if self.classified > 0 {
            Quality::Good
        } else {
            Quality::Unclassified
        }
    }
}

/// The classified streams of a session or a call, and their worst metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rollup {
    pub audio: Tally,
    pub video: Tally,
    pub screen_sharing: Tally,
    pub worst_jitter_ms: Option<f64>,
    pub worst_packet_loss_rate: Option<f64>,
    pub worst_round_trip_time_ms: Option<f64>,
}

impl Rollup {
    /// Counts one stream of a media of `class`.
    pub fn add(&mut self, class: MediaClass, quality: Quality, metrics: &StreamMetrics) {
        match class {
            MediaClass::Audio => self.audio.add(quality),
            MediaClass::Video => self.video.add(quality),
            MediaClass::ScreenSharing => self.screen_sharing.add(quality),
            MediaClass::ApplicationSharing | MediaClass::Data | MediaClass::Other => {}
        }
        worst(&mut self.worst_jitter_ms, metrics.jitter_ms);
        worst(&mut self.worst_packet_loss_rate, metrics.packet_loss_rate);
        worst(&mut self.worst_round_trip_time_ms, metrics.round_trip_ms);
    }

    pub fn merge(&mut self, other: &Rollup) {
        self.audio.merge(other.audio);
        self.video.merge(other.video);
        self.screen_sharing.merge(other.screen_sharing);
        worst(&mut self.worst_jitter_ms, other.worst_jitter_ms);
        worst(
            &mut self.worst_packet_loss_rate,
            other.worst_packet_loss_rate,
        );
        worst(
            &mut self.worst_round_trip_time_ms,
            other.worst_round_trip_time_ms,
        );
    }

    /// Any poor audio or video stream.
    pub fn is_poor_call(&self) -> bool {
        self.audio.poor > 0 || self.video.poor > 0
    }
}

fn worst(current: &mut Option<f64>, value: Option<f64>) {
    if let Some(value) = value.filter(|v| !v.is_nan()) {
        *current = Some(current.map_or(value, |c| c.max(value)));
    }
}

/// The derived values a row's columns may read; the walker fills what applies to the row.
#[derive(Debug, Clone, Copy, Default)]
pub struct Derivations<'a> {
    /// A stream's classification.
    pub verdict: Option<Verdict>,
    /// A stream's receiving side.
    pub receiving_endpoint: Option<&'static str>,
    pub rules_id: &'a str,
    /// A session's or a call's streams.
    pub rollup: Option<&'a Rollup>,
    /// A media's caller and callee sites.
    pub sites: [Option<&'a Site>; 2],
}

/// A column the schemas declare with a `$` path whose value is derived here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derived {
    Quality,
    PoorReasons,
    ReceivingEndpoint,
    QualityRules,
    AudioQuality,
    VideoQuality,
    AudioStreams,
    AudioStreamsClassified,
    AudioStreamsPoor,
    VideoStreamsClassified,
    VideoStreamsPoor,
    ScreenSharingStreamsClassified,
    ScreenSharingStreamsPoor,
    IsPoorCall,
    WorstJitterMs,
    WorstPacketLossRate,
    WorstRoundTripTimeMs,
    /// Caller (0) or callee (1): building, city, country, inside corp.
    Building(usize),
    City(usize),
    Country(usize),
    InsideCorp(usize),
}

/// A derived value, by the kind of column it fills.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DerivedValue<'a> {
    Text(Option<&'a str>),
    Count(Option<i32>),
    Flag(Option<bool>),
    Number(Option<f64>),
    Reasons(Option<Reasons>),
}

impl DerivedValue<'_> {
    /// Whether there is no value (a null in any kind of column).
    pub fn is_null(&self) -> bool {
        match self {
            DerivedValue::Text(v) => v.is_none(),
            DerivedValue::Count(v) => v.is_none(),
            DerivedValue::Flag(v) => v.is_none(),
            DerivedValue::Number(v) => v.is_none(),
            DerivedValue::Reasons(v) => v.is_none(),
        }
    }
}

/// The kind of column a derived value fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerivedKind {
    Text,
    Count,
    Flag,
    Number,
    Reasons,
}

impl Derived {
    /// The derived value named `name` (a `$name` path).
    pub fn parse(name: &str) -> Option<Derived> {
        let side = |rest: &str| -> Option<fn(usize) -> Derived> {
            match rest {
                "building" => Some(Derived::Building),
                "city" => Some(Derived::City),
                "country" => Some(Derived::Country),
                "inside_corp" => Some(Derived::InsideCorp),
                _ => None,
            }
        };
        if let Some((prefix, rest)) = name.split_once('_')
            && let Some(index) = ["caller", "callee"].iter().position(|s| *s == prefix)
            && let Some(make) = side(rest)
        {
            return Some(make(index));
        }
        Some(match name {
            "quality" => Derived::Quality,
            "poor_reasons" => Derived::PoorReasons,
            "receiving_endpoint" => Derived::ReceivingEndpoint,
            "quality_rules" => Derived::QualityRules,
            "audio_quality" => Derived::AudioQuality,
            "video_quality" => Derived::VideoQuality,
            "audio_streams" => Derived::AudioStreams,
            "audio_streams_classified" => Derived::AudioStreamsClassified,
            "audio_streams_poor" => Derived::AudioStreamsPoor,
            "video_streams_classified" => Derived::VideoStreamsClassified,
            "video_streams_poor" => Derived::VideoStreamsPoor,
            "screen_sharing_streams_classified" => Derived::ScreenSharingStreamsClassified,
            "screen_sharing_streams_poor" => Derived::ScreenSharingStreamsPoor,
            "is_poor_call" => Derived::IsPoorCall,
            "worst_jitter_ms" => Derived::WorstJitterMs,
            "worst_packet_loss_rate" => Derived::WorstPacketLossRate,
            "worst_round_trip_time_ms" => Derived::WorstRoundTripTimeMs,
            _ => return None,
        })
    }

    pub fn kind(self) -> DerivedKind {
        match self {
            Derived::PoorReasons => DerivedKind::Reasons,
            Derived::AudioStreams
            | Derived::AudioStreamsClassified
            | Derived::AudioStreamsPoor
            | Derived::VideoStreamsClassified
            | Derived::VideoStreamsPoor
            | Derived::ScreenSharingStreamsClassified
            | Derived::ScreenSharingStreamsPoor => DerivedKind::Count,
            Derived::IsPoorCall | Derived::InsideCorp(_) => DerivedKind::Flag,
            Derived::WorstJitterMs
            | Derived::WorstPacketLossRate
            | Derived::WorstRoundTripTimeMs => DerivedKind::Number,
            _ => DerivedKind::Text,
        }
    }

    /// The value of this column for a row with `derivations`.
    pub fn value<'a>(self, d: &Derivations<'a>) -> DerivedValue<'a> {
        let rollup = d.rollup;
        let count = |tally: fn(&Rollup) -> i32| DerivedValue::Count(rollup.map(tally));
        let number =
            |worst: fn(&Rollup) -> Option<f64>| DerivedValue::Number(rollup.and_then(worst));
        let site = |side: usize| d.sites[side];
        match self {
            Derived::Quality => DerivedValue::Text(d.verdict.map(|v| v.quality.as_str())),
            Derived::PoorReasons => DerivedValue::Reasons(d.verdict.map(|v| v.reasons)),
            Derived::ReceivingEndpoint => DerivedValue::Text(d.receiving_endpoint),
            Derived::QualityRules => DerivedValue::Text(Some(d.rules_id)),
            Derived::AudioQuality => DerivedValue::Text(rollup.map(|r| r.audio.quality().as_str())),
            Derived::VideoQuality => DerivedValue::Text(rollup.map(|r| r.video.quality().as_str())),
            Derived::AudioStreams => count(|r| r.audio.streams),
            Derived::AudioStreamsClassified => count(|r| r.audio.classified),
            Derived::AudioStreamsPoor => count(|r| r.audio.poor),
            Derived::VideoStreamsClassified => count(|r| r.video.classified),
            Derived::VideoStreamsPoor => count(|r| r.video.poor),
            Derived::ScreenSharingStreamsClassified => count(|r| r.screen_sharing.classified),
            Derived::ScreenSharingStreamsPoor => count(|r| r.screen_sharing.poor),
            Derived::IsPoorCall => DerivedValue::Flag(rollup.map(Rollup::is_poor_call)),
            Derived::WorstJitterMs => number(|r| r.worst_jitter_ms),
            Derived::WorstPacketLossRate => number(|r| r.worst_packet_loss_rate),
            Derived::WorstRoundTripTimeMs => number(|r| r.worst_round_trip_time_ms),
            Derived::Building(side) => DerivedValue::Text(site(side).map(|s| s.building.as_str())),
            Derived::City(side) => DerivedValue::Text(site(side).and_then(|s| s.city.as_deref())),
            Derived::Country(side) => {
                DerivedValue::Text(site(side).and_then(|s| s.country.as_deref()))
            }
            Derived::InsideCorp(side) => DerivedValue::Flag(site(side).map(|s| s.inside_corp)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(jitter: f64, loss: f64, rtt: f64) -> StreamMetrics {
        StreamMetrics {
            jitter_ms: Some(jitter),
            packet_loss_rate: Some(loss),
            round_trip_ms: Some(rtt),
            ..StreamMetrics::default()
        }
    }

    #[test]
    fn rollups_count_by_modality_and_keep_the_worst_metrics() {
        // Session 1: two audio streams (one poor), one unclassified video stream.
        let mut first = Rollup::default();
        first.add(
            MediaClass::Audio,
            Quality::Poor,
            &metrics(45.0, 0.02, 120.0),
        );
        first.add(MediaClass::Audio, Quality::Good, &metrics(12.0, 0.2, 80.0));
        first.add(
            MediaClass::Video,
            Quality::Unclassified,
            &StreamMetrics::default(),
        );
        // Session 2: good video, poor screen sharing, a data stream (not counted).
        let mut second = Rollup::default();
        second.add(MediaClass::Video, Quality::Good, &metrics(5.0, 0.0, 900.0));
        second.add(
            MediaClass::ScreenSharing,
            Quality::Poor,
            &StreamMetrics::default(),
        );
        second.add(
            MediaClass::Data,
            Quality::Unclassified,
            &StreamMetrics::default(),
        );
        assert_eq!(
            (first.audio.quality(), first.video.quality()),
            (Quality::Poor, Quality::Unclassified)
        );
        assert_eq!(
            (second.audio.quality(), second.video.quality()),
            (Quality::Unclassified, Quality::Good)
        );
        assert!(
            first.is_poor_call() && !second.is_poor_call(),
            "screen sharing does not make a poor call"
        );
        let mut call = Rollup::default();
        call.merge(&first);
        call.merge(&second);
        assert_eq!(
            call.audio,
            Tally {
                streams: 2,
                classified: 2,
                poor: 1
            }
        );
        assert_eq!(
            call.video,
            Tally {
                streams: 2,
                classified: 1,
                poor: 0
            }
        );
        assert_eq!(
            call.screen_sharing,
            Tally {
                streams: 1,
                classified: 1,
                poor: 1
            }
        );
        assert_eq!(
            (
                call.worst_jitter_ms,
                call.worst_packet_loss_rate,
                call.worst_round_trip_time_ms
            ),
            (Some(45.0), Some(0.2), Some(900.0))
        );
        assert!(call.is_poor_call());
        assert_eq!(Rollup::default().worst_jitter_ms, None);
    }

    #[test]
    fn the_callee_receives_what_the_caller_sends() {
        assert_eq!(receiving_endpoint(Some("callerToCallee")), Some("callee"));
        assert_eq!(receiving_endpoint(Some("calleeToCaller")), Some("caller"));
        assert_eq!(receiving_endpoint(Some("unknownFutureValue")), None);
        assert_eq!(receiving_endpoint(None), None);
    }

    #[test]
    fn derived_names_parse_to_their_values() {
        assert_eq!(Derived::parse("callee_city"), Some(Derived::City(1)));
        assert_eq!(
            Derived::parse("caller_inside_corp"),
            Some(Derived::InsideCorp(0))
        );
        assert_eq!(
            Derived::parse("audio_streams_poor"),
            Some(Derived::AudioStreamsPoor)
        );
        assert_eq!(Derived::parse("caller_name"), None);
        let rollup = Rollup {
            audio: Tally {
                streams: 3,
                classified: 2,
                poor: 1,
            },
            ..Rollup::default()
        };
        let d = Derivations {
            rollup: Some(&rollup),
            rules_id: "cqd",
            ..Derivations::default()
        };
        assert_eq!(
            Derived::AudioStreamsClassified.value(&d),
            DerivedValue::Count(Some(2))
        );
        assert_eq!(
            Derived::AudioQuality.value(&d),
            DerivedValue::Text(Some("poor"))
        );
        assert_eq!(
            Derived::QualityRules.value(&d),
            DerivedValue::Text(Some("cqd"))
        );
        assert_eq!(Derived::Quality.value(&d), DerivedValue::Text(None));
    }
}
