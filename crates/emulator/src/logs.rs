//! The synthetic PSTN logs behind the log functions (`getPstnCalls`,
//! `getDirectRoutingCalls`, and on beta `getSmsLog`, `getPstnBlockedUsersLog`,
//! `getPstnOnlineMeetingDialoutReport`): deterministic rows for any date, usable without
//! HTTP.
//!
//! Row `index` of UTC day `day` of a log is generated from its own ChaCha8 stream seeded by
//! `mix(seed, log tag, day, index)`, like the call records, so any window can be rebuilt
//! without state. Row 0 of every day starts exactly at midnight and row 1 at
//! 23:59:59.9999999, so boundary mistakes show; the rest follow the tenant's hourly
//! profile. Per day: `rows_per_day` PSTN and Direct Routing rows each, a quarter as many
//! SMS and one blocked-user event per 50. The dial-out report has no rows of its own: it
//! aggregates the `conf_out` PSTN rows of the window per organizer. Some successful Direct
//! Routing rows are the tenant's Direct Routing call records (same start, `correlationId` =
//! the call record id), as in real Graph.
//!
//! [`LogTenant::rows`] selects the half-open window `[from, to)`; the HTTP layer applies
//! each function's documented inclusive or exclusive `toDateTime` on top.
//! Pure data generation; touches nothing else.

mod beta;
mod direct_routing;
mod people;
mod pstn;

use chrono::{DateTime, Duration, TimeDelta, Utc};
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::tenant::directory::Directory;
use super::tenant::values::{TenantRng, mix, pick_weighted, time_after};
use super::tenant::{DirectRoutingCall, HOURLY_WEIGHTS};
use super::{ApiVersion, DEFAULT_CALLS_PER_DAY, EmulatorConfig, Tenant};

/// The Graph functions that return PSTN logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogFunction {
    /// `getPstnCalls`: Calling Plan and Operator Connect calls (`pstnCallLogRow`).
    PstnCalls,
    /// `getDirectRoutingCalls`: calls through the tenant's own SBCs (`directRoutingLogRow`).
    DirectRoutingCalls,
    /// beta `getSmsLog` (`smsLogRow`).
    SmsLog,
    /// beta `getPstnBlockedUsersLog` (`pstnBlockedUsersLogRow`).
    PstnBlockedUsersLog,
    /// beta `getPstnOnlineMeetingDialoutReport` (`pstnOnlineMeetingDialoutReport`).
    PstnOnlineMeetingDialoutReport,
}

impl LogFunction {
    pub const ALL: [LogFunction; 5] = [
        LogFunction::PstnCalls,
        LogFunction::DirectRoutingCalls,
        LogFunction::SmsLog,
        LogFunction::PstnBlockedUsersLog,
        LogFunction::PstnOnlineMeetingDialoutReport,
    ];

    /// The function's name in a Graph URL.
    pub fn name(self) -> &'static str {
        match self {
            LogFunction::PstnCalls => "getPstnCalls",
            LogFunction::DirectRoutingCalls => "getDirectRoutingCalls",
            LogFunction::SmsLog => "getSmsLog",
            LogFunction::PstnBlockedUsersLog => "getPstnBlockedUsersLog",
            LogFunction::PstnOnlineMeetingDialoutReport => "getPstnOnlineMeetingDialoutReport",
        }
    }

    /// The function a URL segment names; Graph matches names case-insensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|function| function.name().eq_ignore_ascii_case(name))
    }

    /// The `microsoft.graph.callRecords` type of the rows, as `@odata.context` names it.
    pub fn row_type(self) -> &'static str {
        match self {
            LogFunction::PstnCalls => "pstnCallLogRow",
            LogFunction::DirectRoutingCalls => "directRoutingLogRow",
            LogFunction::SmsLog => "smsLogRow",
            LogFunction::PstnBlockedUsersLog => "pstnBlockedUsersLogRow",
            LogFunction::PstnOnlineMeetingDialoutReport => "pstnOnlineMeetingDialoutReport",
        }
    }

    /// Whether the function exists in `version` (SMS, blocked users and the dial-out report
    /// are beta only).
    pub fn is_available_in(self, version: ApiVersion) -> bool {
        version == ApiVersion::Beta
            || matches!(
                self,
                LogFunction::PstnCalls | LogFunction::DirectRoutingCalls
            )
    }

    /// The row property a window selects on; the dial-out report has none (it aggregates
    /// the PSTN rows that start in the window).
    pub fn time_property(self) -> Option<&'static str> {
        match self {
            LogFunction::PstnCalls | LogFunction::DirectRoutingCalls => Some("startDateTime"),
            LogFunction::SmsLog => Some("sentDateTime"),
            LogFunction::PstnBlockedUsersLog => Some("blockDateTime"),
            LogFunction::PstnOnlineMeetingDialoutReport => None,
        }
    }

    /// Whether the real function includes rows at exactly `toDateTime`: documented
    /// inclusive for PSTN and SMS, exclusive for Direct Routing; blocked users and the
    /// dial-out report state nothing and are taken as inclusive like the PSTN log.
    pub fn includes_to(self) -> bool {
        self != LogFunction::DirectRoutingCalls
    }
}

/// A half-open time window `[from, to)`.
#[derive(Clone, Copy, Debug)]
struct Window {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl Window {
    fn contains(self, time: DateTime<Utc>) -> bool {
        self.from <= time && time < self.to
    }

    /// The UTC days (since 1970) the window touches; none before 1970.
    fn days(self) -> impl Iterator<Item = u32> {
        let first = self.from.timestamp().div_euclid(86_400).max(0);
        let last = (self.to - TimeDelta::nanoseconds(1))
            .timestamp()
            .div_euclid(86_400);
        (first..=last).filter_map(|day| u32::try_from(day).ok())
    }
}

/// Where a row lives: its UTC day and its index within the day.
#[derive(Clone, Copy, Debug)]
struct Slot {
    day: u32,
    index: u32,
}

impl Slot {
    fn midnight(self) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + Duration::days(i64::from(self.day))
    }

    /// When the row's event happens: midnight for row 0, the day's last 100 ns tick for
    /// row 1, else an hour drawn from the tenant's profile.
    fn time(self, rng: &mut TenantRng) -> DateTime<Utc> {
        match self.index {
            0 => self.midnight(),
            1 => self.midnight() + Duration::days(1) - TimeDelta::nanoseconds(100),
            _ => {
                let hour = pick_weighted(rng, &HOURLY_WEIGHTS);
                let offset_ms = i64::from(hour) * 3_600_000 + rng.random_range(0..3_600_000);
                time_after(rng, self.midnight(), offset_ms, 0.02)
            }
        }
    }
}

/// The deterministic PSTN logs of the synthetic tenant.
#[derive(Clone, Debug)]
pub struct LogTenant {
    seed: u64,
    rows_per_day: u32,
    directory: Directory,
    /// The call records that Direct Routing rows point at with `correlationId`.
    call_records: Tenant,
}

impl LogTenant {
    /// The logs an emulator with this `seed` and `log_rows_per_day` serves when its
    /// `calls_per_day` is the default (Direct Routing rows point at its call records). For
    /// another `calls_per_day`, use [`LogTenant::for_config`].
    pub fn new(seed: u64, rows_per_day: u32) -> Self {
        Self::linked(Tenant::new(seed, DEFAULT_CALLS_PER_DAY), seed, rows_per_day)
    }

    /// Exactly the logs an emulator started with `config` serves.
    pub fn for_config(config: &EmulatorConfig) -> Self {
        Self::linked(
            Tenant::new(config.seed, config.calls_per_day),
            config.seed,
            config.log_rows_per_day,
        )
    }

    fn linked(call_records: Tenant, seed: u64, rows_per_day: u32) -> Self {
        Self {
            seed,
            rows_per_day,
            directory: Directory::new(seed),
            call_records,
        }
    }

    /// The rows `function` returns in `version` for events in `[from, to)` (dial-out
    /// report: aggregated over the PSTN calls that started then), in time order, each
    /// exactly as served (beta-only properties only on beta). Beta-only functions have no
    /// rows in v1.0.
    pub fn rows(
        &self,
        function: LogFunction,
        version: ApiVersion,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<Value> {
        if from >= to || !function.is_available_in(version) {
            return Vec::new();
        }
        let window = Window { from, to };
        match function {
            LogFunction::PstnCalls => self.pstn_rows(window, version),
            LogFunction::DirectRoutingCalls => self.direct_routing_rows(window, version),
            LogFunction::SmsLog => {
                self.collect(beta::SMS_TAG, self.rows_per_day / 4, window, |slot, rng| {
                    let time = slot.time(rng);
                    window
                        .contains(time)
                        .then(|| (time, beta::sms_row(self, time, rng)))
                })
            }
            LogFunction::PstnBlockedUsersLog => self.collect(
                beta::BLOCKED_TAG,
                self.rows_per_day / 50,
                window,
                |slot, rng| {
                    let time = slot.time(rng);
                    window
                        .contains(time)
                        .then(|| (time, beta::blocked_user_row(self, time, rng)))
                },
            ),
            LogFunction::PstnOnlineMeetingDialoutReport => {
                beta::dialout_report(&self.pstn_rows(window, ApiVersion::V1))
            }
        }
    }

    fn pstn_rows(&self, window: Window, version: ApiVersion) -> Vec<Value> {
        self.collect(pstn::TAG, self.rows_per_day, window, |slot, rng| {
            let time = slot.time(rng);
            window
                .contains(time)
                .then(|| (time, pstn::row(self, time, rng, version)))
        })
    }

    fn direct_routing_rows(&self, window: Window, version: ApiVersion) -> Vec<Value> {
        // Rows are drawn day by day, so one day's calls are looked up once.
        let mut calls: Option<(u32, Vec<DirectRoutingCall>)> = None;
        self.collect(
            direct_routing::TAG,
            self.rows_per_day,
            window,
            |slot, rng| {
                if calls.as_ref().is_none_or(|(day, _)| *day != slot.day) {
                    calls = Some((slot.day, self.call_records.direct_routing_calls(slot.day)));
                }
                let day_calls = calls.as_ref().map_or(&[][..], |(_, day_calls)| day_calls);
                // Row 2 + k may be the day's k-th Direct Routing call record (each at most once).
                let linked = (slot.index >= 2)
                    .then(|| day_calls.get(slot.index as usize - 2))
                    .flatten()
                    .filter(|_| rng.random_bool(0.5));
                let time = linked.map_or_else(|| slot.time(rng), |call| call.start);
                window.contains(time).then(|| {
                    let row = direct_routing::row(self, time, linked, rng, version);
                    (time, row)
                })
            },
        )
    }

    /// Draws `per_day` slots of every day the window touches (each from its own stream) and
    /// keeps the rows `draw` returns, ordered by time, then day and index.
    fn collect(
        &self,
        tag: u64,
        per_day: u32,
        window: Window,
        mut draw: impl FnMut(Slot, &mut TenantRng) -> Option<(DateTime<Utc>, Value)>,
    ) -> Vec<Value> {
        let mut rows: Vec<(DateTime<Utc>, Slot, Value)> = Vec::new();
        for day in window.days() {
            for index in 0..per_day {
                let slot = Slot { day, index };
                let mut rng = TenantRng::seed_from_u64(mix(&[
                    self.seed,
                    tag,
                    u64::from(day),
                    u64::from(index),
                ]));
                if let Some((time, row)) = draw(slot, &mut rng) {
                    rows.push((time, slot, row));
                }
            }
        }
        rows.sort_by_key(|(time, slot, _)| (*time, slot.day, slot.index));
        rows.into_iter().map(|(_, _, row)| row).collect()
    }
}

/// Removes the properties only beta serves when the row is for v1.0.
fn for_version(mut row: Value, version: ApiVersion, beta_only: &[&str]) -> Value {
    if version == ApiVersion::V1
        && let Some(object) = row.as_object_mut()
    {
        for key in beta_only {
            object.remove(*key);
        }
    }
    row
}
