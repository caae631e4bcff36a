//! The synthetic tenant: a deterministic, unbounded population of Teams call records.
//!
//! Every UTC day holds `calls_per_day` calls. Call `index` of day `day` is generated from its
//! own ChaCha8 stream seeded by `mix(seed, day, index)`, so any call can be rebuilt from its
//! id alone and nothing is kept in memory. The header fields (what the list endpoint
//! returns) are drawn first, so listing a window draws only headers; the full record
//! continues the same stream with participants and sessions.
//!
//! What a day holds (weights per call; call 0 of every day is always the large meeting):
//! peer-to-peer calls 55% (2 participants, 1 session, 1–2 segments), PSTN calls 20% (a
//! user and a `+1425555xxxx` number behind a `mediationServer` or `gateway` service
//! endpoint), group calls 10% (3–20 tenant users) and meetings 15% (3–25 attendees incl.
//! guests, federated, ACS and phone dial-ins, sometimes a bot, with `joinWebUrl`); each
//! conference participant has one leg (sometimes two) to a `mediaController`/… service
//! endpoint. The large meeting has 131–320 participants and 61–160 sessions, or, with
//! [`Tenant::with_large_meeting`], as many participants as asked, each with a session (a
//! record of tens of MB, for measuring what one record costs).
//! [`Shape::Meetings`] draws a different tenant for benchmarks: meetings and group calls
//! only, many attendees of whom a third have media sessions, longer sessions (up to four
//! segments, often video and screen sharing) and streams most of whose metrics are null.
//! Data exists for every day since 1970, past or future: the tenant knows no "now" and no
//! 30-day retention (the HTTP layer bounds unfiltered lists).
//!
//! Pure data generation, usable without HTTP; touches nothing else.

pub(super) mod directory;
mod endpoints;
mod media;
pub(super) mod values;

use chrono::{DateTime, Duration, TimeDelta, Utc};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use directory::{Directory, Party, PartyKind, outside_party};
use endpoints::{party_endpoint, service_endpoint, with_feedback};
use media::{MediaKind, MediaSides, media};
use values::{TenantRng, graph_timestamp, guid, mix, pick, pick_weighted, time_after};

/// Calls per day the id format can address (the index is 4 hex digits).
pub const MAX_CALLS_PER_DAY: u32 = 0x1_0000;

/// Relative call volume per UTC hour: quiet nights, a working-day hump with a lunch dip.
/// The PSTN logs share it, so their rows cluster where the calls do.
pub(super) const HOURLY_WEIGHTS: [(u32, u32); 24] = [
    (0, 1),
    (1, 1),
    (2, 1),
    (3, 1),
    (4, 1),
    (5, 2),
    (6, 4),
    (7, 8),
    (8, 14),
    (9, 16),
    (10, 16),
    (11, 14),
    (12, 10),
    (13, 14),
    (14, 16),
    (15, 15),
    (16, 12),
    (17, 8),
    (18, 5),
    (19, 3),
    (20, 2),
    (21, 2),
    (22, 1),
    (23, 1),
];

/// The deterministic synthetic tenant behind the emulator.
#[derive(Clone, Debug)]
pub struct Tenant {
    seed: u64,
    calls_per_day: u32,
    directory: Directory,
    /// Attendees of every day's large meeting, when set (each with a session).
    large_meeting: Option<u32>,
    shape: Shape,
}

/// The mix of calls a tenant holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Shape {
    /// Mostly two-party and PSTN calls, a few meetings (see the module doc).
    #[default]
    Mixed,
    /// Group calls (25%) and meetings (75%) only: 20–200 attendees, a third of them with a
    /// media session (the others joined view-only or by a room device that reports none),
    /// sessions of 1–4 segments, each with audio and often video and screen sharing, and
    /// each metric of a stream null with a chance of 70 % (Graph omits what an endpoint did not
    /// report).
    Meetings,
}

/// Legs of the meetings of [`Shape::Meetings`]: long sessions with reconnects and video.
const LONG_MEETING_LEG: ConferenceLeg = ConferenceLeg {
    max_segments: 4,
    extra_modality_chance: 0.6,
};

/// Share of a [`Shape::Meetings`] stream's metrics that are null.
const NULL_METRIC_CHANCE: f64 = 0.7;

/// What sort of call a record describes; fixes its size and shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallKind {
    PeerToPeer,
    Pstn,
    GroupCall,
    Meeting,
    /// The day's big all-hands: more sessions and participants than one page holds.
    LargeMeeting,
}

/// Where a call lives: its UTC day (days since 1970-01-01) and its index within the day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CallKey {
    day: u32,
    index: u32,
}

/// What a call is and when, drawn first from the call's stream; cheap (no JSON), so the
/// PSTN logs can find the day's Direct Routing calls without building records.
struct CallCore {
    kind: CallKind,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    version: u32,
    last_modified: DateTime<Utc>,
    call_type: &'static str,
    modalities: Vec<&'static str>,
    /// For PSTN calls: Calling Plan (`mediationServer`) or Direct Routing (`gateway`).
    pstn_role: &'static str,
}

/// The list-level part of a call: its core, then the organizer and the list item.
struct CallHeader {
    kind: CallKind,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    modalities: Vec<&'static str>,
    organizer: Party,
    pstn_role: &'static str,
    /// The list item: callRecord properties with `organizer_v2` inline.
    item: Value,
}

/// A Direct Routing (`gateway`) PSTN call of the tenant: the call a Direct Routing log
/// row's `correlationId` names in real Graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct DirectRoutingCall {
    pub id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Tenant {
    /// # Panics
    /// If `calls_per_day` exceeds [`MAX_CALLS_PER_DAY`] (ids could not address the calls).
    pub fn new(seed: u64, calls_per_day: u32) -> Self {
        assert!(
            calls_per_day <= MAX_CALLS_PER_DAY,
            "calls_per_day {calls_per_day} exceeds the maximum of {MAX_CALLS_PER_DAY}"
        );
        Self {
            seed,
            calls_per_day,
            directory: Directory::new(seed),
            large_meeting: None,
            shape: Shape::Mixed,
        }
    }

    /// The same tenant with another mix of calls.
    pub fn with_shape(mut self, shape: Shape) -> Self {
        self.shape = shape;
        self
    }

    /// The same tenant, but every day's large meeting has `attendees` participants besides
    /// its organizer, each with a session of its own (the other calls are unchanged).
    pub fn with_large_meeting(mut self, attendees: Option<u32>) -> Self {
        self.large_meeting = attendees;
        self
    }

    /// List items (as the list endpoint returns them: no sessions/participants,
    /// organizer_v2 inline) of every call with `from <= startDateTime < to`, sorted by
    /// startDateTime then id.
    pub fn list(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Value> {
        if from >= to {
            return Vec::new();
        }
        let first_day = from.timestamp().div_euclid(86_400).max(0);
        let last_day = (to - TimeDelta::nanoseconds(1))
            .timestamp()
            .div_euclid(86_400);
        let mut headers: Vec<(DateTime<Utc>, String, Value)> = Vec::new();
        for day in first_day..=last_day {
            let Ok(day) = u32::try_from(day) else { break };
            for index in 0..self.calls_per_day {
                let key = CallKey { day, index };
                let header = self.header(key, &mut self.rng(key));
                if from <= header.start && header.start < to {
                    headers.push((header.start, key.id(self.seed), header.item));
                }
            }
        }
        headers.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        headers.into_iter().map(|(_, _, item)| item).collect()
    }

    /// The complete record: all sessions (each with its segments) in `sessions`, all
    /// participants in `participants_v2`, organizer_v2 inline. None for an unknown or
    /// malformed id.
    pub fn record(&self, id: &str) -> Option<Value> {
        let key = CallKey::parse(id, self.seed, self.calls_per_day)?;
        let mut rng = self.rng(key);
        let header = self.header(key, &mut rng);
        let parties = self.parties(&header, &mut rng);
        let sessions = Sessions::new(&header, &mut rng, self.shape)
            .build(&parties, self.large_meeting.is_some());
        let participants: Vec<Value> = parties
            .iter()
            .map(|party| party.participant(&mut rng))
            .collect();
        let mut record = header.item;
        record["sessions"] = Value::Array(sessions);
        record["participants_v2"] = Value::Array(participants);
        if self.shape == Shape::Meetings {
            null_stream_metrics(&mut record, &mut rng);
        }
        Some(record)
    }

    fn rng(&self, key: CallKey) -> TenantRng {
        TenantRng::seed_from_u64(mix(&[self.seed, u64::from(key.day), u64::from(key.index)]))
    }

    /// The PSTN calls of UTC day `day` (days since 1970) that went through a Direct Routing
    /// gateway, in index order.
    pub(super) fn direct_routing_calls(&self, day: u32) -> Vec<DirectRoutingCall> {
        (0..self.calls_per_day)
            .filter_map(|index| {
                let key = CallKey { day, index };
                let core = self.core(key, &mut self.rng(key));
                (core.kind == CallKind::Pstn && core.pstn_role == "gateway").then(|| {
                    DirectRoutingCall {
                        id: key.id(self.seed),
                        start: core.start,
                        end: core.end,
                    }
                })
            })
            .collect()
    }

    fn core(&self, key: CallKey, rng: &mut TenantRng) -> CallCore {
        let kind = if key.index == 0 {
            CallKind::LargeMeeting
        } else if self.shape == Shape::Meetings {
            pick_weighted(rng, &[(CallKind::GroupCall, 25), (CallKind::Meeting, 75)])
        } else {
            pick_weighted(
                rng,
                &[
                    (CallKind::PeerToPeer, 55),
                    (CallKind::Pstn, 20),
                    (CallKind::GroupCall, 10),
                    (CallKind::Meeting, 15),
                ],
            )
        };
        let hour = pick_weighted(rng, &HOURLY_WEIGHTS);
        let day_start = DateTime::UNIX_EPOCH + Duration::days(i64::from(key.day));
        let start_ms = i64::from(hour) * 3_600_000 + rng.random_range(0..3_600_000);
        let start = time_after(rng, day_start, start_ms, 0.0);
        let length_ms = match kind {
            CallKind::PeerToPeer | CallKind::Pstn => rng.random_range(5_000..2_400_000),
            CallKind::GroupCall => rng.random_range(60_000..3_600_000),
            CallKind::Meeting => rng.random_range(900_000..5_400_000),
            CallKind::LargeMeeting => rng.random_range(3_600_000..7_200_000),
        };
        let end = time_after(rng, start, length_ms, 0.0);
        let version: u32 = pick_weighted(rng, &[(1, 80), (2, 15), (3, 5)]);
        // First version within the hour after the call ends; later versions hours after.
        let last_modified_ms =
            rng.random_range(300_000..3_600_000) + i64::from(version - 1) * 3 * 3_600_000;
        let last_modified = time_after(rng, end, last_modified_ms, 0.2);
        let natural_type = match kind {
            CallKind::PeerToPeer | CallKind::Pstn => "peerToPeer",
            _ => "groupCall",
        };
        let call_type = pick_weighted(
            rng,
            &[
                (natural_type, 960),
                ("unknown", 35),
                ("unknownFutureValue", 5),
            ],
        );
        let modalities = self.modalities(kind, rng);
        let pstn_role = pick_weighted(rng, &[("mediationServer", 60), ("gateway", 40)]);
        CallCore {
            kind,
            start,
            end,
            version,
            last_modified,
            call_type,
            modalities,
            pstn_role,
        }
    }

    fn header(&self, key: CallKey, rng: &mut TenantRng) -> CallHeader {
        let CallCore {
            kind,
            start,
            end,
            version,
            last_modified,
            call_type,
            modalities,
            pstn_role,
        } = self.core(key, rng);
        // Inbound PSTN calls are organised by the calling number, as in Microsoft's sample.
        let organizer = if kind == CallKind::Pstn && rng.random_bool(0.5) {
            outside_party(rng, PartyKind::Phone)
        } else {
            self.directory.random_user(rng)
        };
        let join_web_url = matches!(kind, CallKind::Meeting | CallKind::LargeMeeting).then(|| {
            format!(
                "https://teams.microsoft.com/l/meetup-join/19%3ameeting_{}%40thread.v2/0?context=%7b%22Tid%22%3a%22{}%22%2c%22Oid%22%3a%22{}%22%7d",
                guid(rng).replace('-', ""),
                crate::DEFAULT_TENANT_ID,
                organizer.id
            )
        });
        let item = json!({
            "id": key.id(self.seed),
            "version": version,
            "type": call_type,
            "modalities": modalities,
            "lastModifiedDateTime": graph_timestamp(last_modified),
            "startDateTime": graph_timestamp(start),
            "endDateTime": graph_timestamp(end),
            "joinWebUrl": join_web_url,
            "organizer_v2": organizer.participant(rng),
        });
        CallHeader {
            kind,
            start,
            end,
            modalities,
            organizer,
            pstn_role,
            item,
        }
    }

    fn modalities(&self, kind: CallKind, rng: &mut TenantRng) -> Vec<&'static str> {
        let (video_chance, sharing_chance) = match kind {
            CallKind::Pstn => (0.0, 0.0),
            CallKind::PeerToPeer => (0.3, 0.1),
            CallKind::GroupCall => (0.5, 0.3),
            CallKind::Meeting => (0.7, 0.5),
            CallKind::LargeMeeting => (1.0, 1.0),
        };
        let mut modalities = vec!["audio"];
        if rng.random_bool(video_chance) {
            modalities.push("video");
        }
        if rng.random_bool(sharing_chance) {
            modalities.push("screenSharing");
        }
        modalities
    }

    /// Everyone in the call, organizer first.
    fn parties(&self, header: &CallHeader, rng: &mut TenantRng) -> Vec<Party> {
        let mut parties = vec![header.organizer.clone()];
        match header.kind {
            CallKind::PeerToPeer => parties.push(if rng.random_bool(0.9) {
                self.directory.random_user(rng)
            } else {
                outside_party(rng, PartyKind::ExternalUser)
            }),
            CallKind::Pstn => parties.push(if header.organizer.kind == PartyKind::Phone {
                self.directory.random_user(rng)
            } else {
                outside_party(rng, PartyKind::Phone)
            }),
            CallKind::GroupCall => {
                // Mostly small gatherings, now and then a big one, to keep a day a few MB.
                let others = if rng.random_bool(0.2) {
                    rng.random_range(7..20)
                } else {
                    rng.random_range(2..6)
                };
                parties.extend(self.directory.distinct_users(rng, others));
            }
            CallKind::Meeting => {
                let others = if self.shape == Shape::Meetings {
                    rng.random_range(20..200)
                } else if rng.random_bool(0.2) {
                    rng.random_range(9..25)
                } else {
                    rng.random_range(2..7)
                };
                parties.extend((0..others).map(|_| self.directory.random_attendee(rng)));
                if rng.random_bool(0.1) {
                    parties.push(outside_party(rng, PartyKind::ApplicationInstance));
                }
            }
            CallKind::LargeMeeting => match self.large_meeting {
                None => {
                    let others = rng.random_range(130..320);
                    parties.extend(self.directory.distinct_users(rng, others));
                }
                Some(others) => {
                    // The directory holds fewer users than a huge meeting: the rest are
                    // attendees from anywhere.
                    let users = others.min(directory::DIRECTORY_SIZE - 1);
                    parties.extend(self.directory.distinct_users(rng, users));
                    let rest = (users..others).map(|_| self.directory.random_attendee(rng));
                    parties.extend(rest.collect::<Vec<_>>());
                }
            },
        }
        parties
    }
}

/// How a party's leg into a conference looks.
#[derive(Clone, Copy)]
struct ConferenceLeg {
    max_segments: u32,
    /// Chance that the leg also carries each of the call's non-audio modalities.
    extra_modality_chance: f64,
}

/// Legs of group calls and meetings: some reconnect (a second segment), some share video.
const MEETING_LEG: ConferenceLeg = ConferenceLeg {
    max_segments: 2,
    extra_modality_chance: 0.2,
};
/// Legs of the large meeting: mostly listeners, so few media lines and a modest record.
const LARGE_MEETING_LEG: ConferenceLeg = ConferenceLeg {
    max_segments: 1,
    extra_modality_chance: 0.1,
};

/// Builds the sessions of one call from its header and parties.
struct Sessions<'a> {
    header: &'a CallHeader,
    rng: &'a mut TenantRng,
    shape: Shape,
}

impl<'a> Sessions<'a> {
    fn new(header: &'a CallHeader, rng: &'a mut TenantRng, shape: Shape) -> Self {
        Self { header, rng, shape }
    }

    /// `every_party`: every party of the large meeting has a session.
    fn build(mut self, parties: &[Party], every_party: bool) -> Vec<Value> {
        let (start, end) = (self.header.start, self.header.end);
        match self.header.kind {
            CallKind::PeerToPeer | CallKind::Pstn => {
                // The organizer placed the call.
                let caller = party_endpoint(self.rng, &parties[0], self.header.pstn_role);
                let callee = party_endpoint(self.rng, &parties[1], self.header.pstn_role);
                let modalities = self.header.modalities.clone();
                let segments = self.rng.random_range(1..=2);
                vec![self.session(caller, callee, modalities, start, end, segments)]
            }
            CallKind::GroupCall | CallKind::Meeting if self.shape == Shape::Meetings => parties
                .iter()
                .filter_map(|party| {
                    let with_media = self.rng.random_bool(1.0 / 3.0);
                    with_media.then(|| self.conference_session(party, LONG_MEETING_LEG))
                })
                .collect(),
            CallKind::GroupCall | CallKind::Meeting => parties
                .iter()
                .flat_map(|party| {
                    // Some people drop and rejoin, which opens a second session.
                    let joins = if self.rng.random_bool(0.15) { 2 } else { 1 };
                    (0..joins)
                        .map(|_| self.conference_session(party, MEETING_LEG))
                        .collect::<Vec<_>>()
                })
                .collect(),
            CallKind::LargeMeeting => {
                // Attendees beyond these joined without media telemetry (view-only), so the
                // meeting has fewer sessions than participants, as big Teams events do.
                let with_media = match every_party {
                    true => parties.len(),
                    false => self.rng.random_range(61..=160).min(parties.len()),
                };
                parties[..with_media]
                    .iter()
                    .map(|party| self.conference_session(party, LARGE_MEETING_LEG))
                    .collect()
            }
        }
    }

    /// A party's leg into the conference: their endpoint calls the conference server.
    fn conference_session(&mut self, party: &Party, leg: ConferenceLeg) -> Value {
        let rng = &mut *self.rng;
        let caller = if party.kind == PartyKind::Phone {
            service_endpoint(rng, "audioTeleconferencerController")
        } else {
            party_endpoint(rng, party, self.header.pstn_role)
        };
        let role = pick_weighted(
            rng,
            &[
                ("mediaController", 80),
                ("conferencingAttendant", 10),
                ("conferencingAnnouncementService", 5),
                ("skypeForBusinessAudioVideoMcu", 5),
            ],
        );
        let callee = service_endpoint(rng, role);
        let length_ms = (self.header.end - self.header.start).num_milliseconds();
        let join_ms = rng.random_range(0..=length_ms / 4);
        let leave_ms = length_ms - rng.random_range(0..=length_ms / 4);
        let start = time_after(rng, self.header.start, join_ms, 0.0);
        let end = time_after(rng, self.header.start, leave_ms, 0.0);
        let modalities: Vec<&'static str> = self
            .header
            .modalities
            .iter()
            .copied()
            .filter(|modality| *modality == "audio" || rng.random_bool(leg.extra_modality_chance))
            .collect();
        let segments = rng.random_range(1..=leg.max_segments);
        self.session(caller, callee, modalities, start, end, segments)
    }

    fn session(
        &mut self,
        caller: Value,
        callee: Value,
        modalities: Vec<&'static str>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        segment_count: u32,
    ) -> Value {
        let rng = &mut *self.rng;
        let failure_info = rng.random_bool(0.04).then(|| failure_info(rng));
        let sides = MediaSides {
            caller_is_client: is_client(&caller),
            callee_is_client: is_client(&callee),
        };
        let media_kinds: Vec<MediaKind> = modalities
            .iter()
            .map(|modality| match *modality {
                "video" => MediaKind::Video,
                "screenSharing" => MediaKind::ScreenSharing,
                _ => MediaKind::Audio,
            })
            .collect();
        let segment_length_ms =
            ((end - start).num_milliseconds() / i64::from(segment_count)).max(1);
        let segments: Vec<Value> = (0..segment_count)
            .map(|segment| {
                let segment_start =
                    time_after(rng, start, segment_length_ms * i64::from(segment), 0.0);
                let segment_end = if segment + 1 == segment_count {
                    end
                } else {
                    time_after(rng, start, segment_length_ms * i64::from(segment + 1), 0.0)
                };
                let media: Vec<Value> = media_kinds
                    .iter()
                    .map(|kind| media(rng, *kind, sides, segment_start, segment_end))
                    .collect();
                // A failed session failed in its last segment.
                let segment_failure = if segment + 1 == segment_count {
                    failure_info.clone()
                } else {
                    None
                };
                json!({
                    "id": guid(rng),
                    "startDateTime": graph_timestamp(segment_start),
                    "endDateTime": graph_timestamp(segment_end),
                    "caller": caller,
                    "callee": callee,
                    "failureInfo": segment_failure,
                    "media": media,
                })
            })
            .collect();
        json!({
            "id": guid(rng),
            "modalities": modalities,
            "startDateTime": graph_timestamp(start),
            "endDateTime": graph_timestamp(end),
            "isTest": rng.random_bool(0.005),
            "caller": with_feedback(rng, caller),
            "callee": with_feedback(rng, callee),
            "failureInfo": failure_info,
            "segments": segments,
        })
    }
}

/// Sets about [`NULL_METRIC_CHANCE`] of the metrics of every stream of `record` to null
/// (all but its id, direction and times).
fn null_stream_metrics(record: &mut Value, rng: &mut TenantRng) {
    const KEPT: [&str; 4] = [
        "streamId",
        "streamDirection",
        "startDateTime",
        "endDateTime",
    ];
    let sessions = record["sessions"].as_array_mut().into_iter().flatten();
    let segments = sessions.flat_map(|s| s["segments"].as_array_mut().into_iter().flatten());
    let media = segments.flat_map(|s| s["media"].as_array_mut().into_iter().flatten());
    let streams = media.flat_map(|m| m["streams"].as_array_mut().into_iter().flatten());
    for stream in streams.filter_map(Value::as_object_mut) {
        for (name, value) in stream.iter_mut() {
            if !KEPT.contains(&name.as_str()) && rng.random_bool(NULL_METRIC_CHANCE) {
                *value = Value::Null;
            }
        }
    }
}

/// Whether an endpoint is a client (has telemetry of its own) rather than a service.
/// Looks at fields, not `@odata.type`, because the type is sometimes omitted.
fn is_client(endpoint: &Value) -> bool {
    endpoint.get("associatedIdentity").is_some()
}

fn failure_info(rng: &mut TenantRng) -> Value {
    json!({
        "reason": pick(rng, &[
            "Call failed to establish due to a media connectivity failure",
            "Unexpected client error",
            "The call was dropped due to network issues",
        ]),
        "stage": pick_weighted(rng, &[("callSetup", 50), ("midcall", 40), ("unknown", 8), ("unknownFutureValue", 2)]),
    })
}

impl CallKey {
    /// A GUID-shaped id: `{day:08x}-{index:04x}-4xxx-8xxx-{hash:012x}`, the hash tying it to
    /// the seed so ids of another tenant are unknown here.
    fn id(self, seed: u64) -> String {
        let hash = mix(&[seed, 0x1D, u64::from(self.day), u64::from(self.index)]);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            self.day,
            self.index,
            hash & 0xFFF,
            (hash >> 12) & 0xFFF,
            values::splitmix64(hash) & 0xFFFF_FFFF_FFFF
        )
    }

    /// The call an id names, if it is one of this tenant's ids (GUIDs are case-insensitive).
    fn parse(id: &str, seed: u64, calls_per_day: u32) -> Option<Self> {
        let id = id.to_ascii_lowercase();
        let mut parts = id.split('-');
        let day = parts.next().filter(|part| part.len() == 8)?;
        let index = parts.next().filter(|part| part.len() == 4)?;
        let key = CallKey {
            day: u32::from_str_radix(day, 16).ok()?,
            index: u32::from_str_radix(index, 16).ok()?,
        };
        (key.index < calls_per_day && key.id(seed) == id).then_some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_strangers() {
        let key = CallKey {
            day: 20_777,
            index: 17,
        };
        let id = key.id(42);
        assert_eq!(CallKey::parse(&id, 42, 200), Some(key));
        assert_eq!(CallKey::parse(&id.to_uppercase(), 42, 200), Some(key));
        assert_eq!(CallKey::parse(&id, 43, 200), None);
        assert_eq!(CallKey::parse(&id, 42, 10), None);
        assert_eq!(CallKey::parse("+not-an-id", 42, 200), None);
        assert_eq!(CallKey::parse("", 42, 200), None);
    }

    /// Every stream of `record`, flattened out of its sessions.
    fn streams(record: &Value) -> Vec<&serde_json::Map<String, Value>> {
        record["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["segments"].as_array().into_iter().flatten())
            .flat_map(|s| s["media"].as_array().into_iter().flatten())
            .flat_map(|m| m["streams"].as_array().into_iter().flatten())
            .filter_map(Value::as_object)
            .collect()
    }

    /// A day of `tenant`'s complete records.
    fn day_of(tenant: &Tenant) -> Vec<Value> {
        let day = DateTime::UNIX_EPOCH + Duration::days(20_400);
        tenant
            .list(day, day + Duration::days(1))
            .iter()
            .map(|item| tenant.record(item["id"].as_str().unwrap()).unwrap())
            .collect()
    }

    /// The share of null metrics (all but ids, directions and times) in `records`' streams.
    fn null_metric_share(records: &[Value]) -> f64 {
        let kept = [
            "streamId",
            "streamDirection",
            "startDateTime",
            "endDateTime",
        ];
        let metrics: Vec<&Value> = records
            .iter()
            .flat_map(streams)
            .flat_map(|stream| stream.iter())
            .filter(|(name, _)| !kept.contains(&name.as_str()))
            .map(|(_, value)| value)
            .collect();
        metrics.iter().filter(|v| v.is_null()).count() as f64 / metrics.len() as f64
    }

    #[test]
    fn the_meetings_shape_has_big_meetings_with_few_sessions_and_sparse_streams() {
        let records = day_of(&Tenant::new(42, 40).with_shape(Shape::Meetings));
        assert_eq!(records.len(), 40);
        let (mut participants, mut sessions) = (0, 0);
        for record in &records {
            let parties = record["participants_v2"].as_array().unwrap().len();
            assert_ne!(record["type"], "peerToPeer", "{}", record["id"]);
            assert!(parties >= 3, "{parties} participants");
            participants += parties;
            sessions += record["sessions"].as_array().unwrap().len();
        }
        // A third of the attendees have a session, so records are big but sessions few.
        assert!(participants > 40 * 20, "{participants} participants");
        assert!(sessions * 2 < participants, "{sessions} sessions");
        let share = null_metric_share(&records);
        // 70 % set to null, besides those the mixed tenant leaves null.
        assert!(
            (0.7..0.9).contains(&share),
            "{share} of the metrics are null"
        );
        let mixed = null_metric_share(&day_of(&Tenant::new(42, 40)));
        assert!(
            mixed < share - 0.3,
            "{mixed} of the mixed tenant's metrics are null, {share} of the meetings'"
        );
    }
}
