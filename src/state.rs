//! The state of nightly runs, kept in the lake beside the tables (`_state.json`: per
//! stream, the window exported without a gap), from which a run without `--from/--to`
//! plans its window. (The lock that keeps two runs apart is [`crate::store::lock`].)
//!
//! May touch: `_state.json` under the lake's root, through [`crate::store`]. Knows nothing
//! of Graph or Parquet.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{self, Location, StoreError};
use crate::window::{Window, midnight};

pub const STATE_FILE: &str = "_state.json";

/// How long Graph keeps call records (404 and absent from the list afterwards).
pub const CALL_RECORD_RETENTION_DAYS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "the state file {path} is damaged ({message}); remove it to start over with the default window"
    )]
    Damaged { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The exported history of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    /// Everything in `[complete_from, complete_to)` was exported by runs that finished.
    pub complete_from: DateTime<Utc>,
    pub complete_to: DateTime<Utc>,
}

/// `_state.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExportState {
    pub streams: BTreeMap<String, StreamState>,
    /// Call records that a run quarantined, by the day they were listed on: every later run
    /// (whatever its window) fetches them again, until Graph's retention ends.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quarantined: BTreeMap<NaiveDate, BTreeSet<String>>,
}

impl ExportState {
    /// The state of the lake at `out`, local or on an object store.
    pub async fn load_from(out: &Location) -> Result<Self, StateError> {
        Ok(Self::read_from(out).await?.0)
    }

    /// The state of the lake at `out`, and the text of its file (None: no file yet), which
    /// a commit restores when it rolls back.
    pub async fn read_from(out: &Location) -> Result<(Self, Option<String>), StateError> {
        let Some(bytes) = out.read(STATE_FILE).await? else {
            return Ok((ExportState::default(), None));
        };
        let location = out.display_path(STATE_FILE);
        let text = String::from_utf8(bytes.to_vec()).map_err(|e| StateError::Damaged {
            path: location.clone(),
            message: e.to_string(),
        })?;
        Ok((Self::parse(text.as_bytes(), location)?, Some(text)))
    }

    /// The text of `_state.json`.
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).expect("the state serializes")
    }

    fn parse(bytes: &[u8], location: String) -> Result<Self, StateError> {
        serde_json::from_slice(bytes).map_err(|e| StateError::Damaged {
            path: location,
            message: e.to_string(),
        })
    }

    /// The state of the local lake at `out`.
    pub fn load(out: &Path) -> Result<Self, StateError> {
        let path = out.join(STATE_FILE);
        match store::local::read(&path)? {
            Some(bytes) => Self::parse(&bytes, path.display().to_string()),
            None => Ok(ExportState::default()),
        }
    }

    /// Writes the state of the local lake at `out`.
    pub fn save(&self, out: &Path) -> Result<(), StateError> {
        let path = out.join(STATE_FILE);
        Ok(store::local::write_atomically(
            &path,
            self.to_text().as_bytes(),
        )?)
    }

    /// The quarantined call records a run fetches again: those listed on a day whose
    /// records Graph still keeps, other than `window`'s days (there they are listed anew).
    pub fn quarantined_to_retry(
        &self,
        window: Option<Window>,
        now: DateTime<Utc>,
    ) -> BTreeMap<NaiveDate, BTreeSet<String>> {
        let available = call_records_available_from(now).date_naive();
        let listed = window.map(|w| w.days()).unwrap_or_default();
        self.quarantined
            .iter()
            .filter(|(dt, _)| **dt >= available && !listed.contains(dt))
            .map(|(dt, ids)| (*dt, ids.clone()))
            .collect()
    }

    /// Updates the quarantine after a run: the records it exported leave it, the ones it
    /// quarantined join it, and days past Graph's retention are dropped and returned (they
    /// can no longer be fetched).
    pub fn update_quarantine(
        &mut self,
        exported: &BTreeSet<String>,
        quarantined: &BTreeMap<NaiveDate, BTreeSet<String>>,
        now: DateTime<Utc>,
    ) -> BTreeMap<NaiveDate, BTreeSet<String>> {
        for ids in self.quarantined.values_mut() {
            ids.retain(|id| !exported.contains(id));
        }
        for (dt, ids) in quarantined {
            self.quarantined
                .entry(*dt)
                .or_default()
                .extend(ids.iter().cloned());
        }
        let available = call_records_available_from(now).date_naive();
        let retrievable = self.quarantined.split_off(&available);
        let expired = std::mem::replace(&mut self.quarantined, retrievable);
        self.quarantined.retain(|_, ids| !ids.is_empty());
        expired
            .into_iter()
            .filter(|(_, ids)| !ids.is_empty())
            .collect()
    }

    /// Records that `window` of `stream` was exported. The complete range grows only when
    /// the window overlaps or touches it: a window after a gap (a manual run of a later
    /// day) leaves the range as it is, so the next nightly run still exports the gap.
    pub fn record(&mut self, stream: &str, window: Window) {
        let updated = match self.streams.get(stream) {
            Some(state) if window.from <= state.complete_to && window.to >= state.complete_from => {
                StreamState {
                    complete_from: state.complete_from.min(window.from),
                    complete_to: state.complete_to.max(window.to),
                }
            }
            Some(state) => *state,
            None => StreamState {
                complete_from: window.from,
                complete_to: window.to,
            },
        };
        self.streams.insert(stream.to_string(), updated);
    }
}

/// A nightly window and what the operator must know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct NightlyPlan {
    pub window: Window,
    /// Loud warnings: days that can no longer be exported, catch-up after missed nights.
    pub warnings: Vec<String>,
}

/// The window of a run without `--from/--to`: the trailing `lookback_days` ending at today
/// 00:00 UTC (late call-record versions are picked up), extended back to where the
/// previous complete run ended when nights were missed, so no day is skipped silently.
pub fn plan_nightly(
    state: &ExportState,
    streams: &[&str],
    now: DateTime<Utc>,
    lookback_days: u32,
) -> NightlyPlan {
    let trailing = Window::trailing_days(now, lookback_days);
    let mut warnings = Vec::new();
    let resume_from = streams
        .iter()
        .filter_map(|stream| state.streams.get(*stream).map(|s| (stream, s.complete_to)))
        .filter(|(_, complete_to)| *complete_to < trailing.from)
        .min_by_key(|(_, complete_to)| *complete_to);
    let from = match resume_from {
        Some((stream, complete_to)) => {
            warnings.push(format!(
                "{stream} was last exported up to {complete_to}: missed nights are caught up from there"
            ));
            complete_to
        }
        None => trailing.from,
    };
    let window = Window {
        from,
        to: trailing.to,
    };
    if streams.contains(&"call_records") {
        let available_from = call_records_available_from(now);
        if window.from < available_from {
            warnings.push(format!(
                "call records started before {available_from} are past Graph's {CALL_RECORD_RETENTION_DAYS}-day \
                 retention and can no longer be exported: the days from {} to {available_from} are lost for \
                 call_records (the log streams are still exported for them)",
                window.from
            ));
        }
    }
    NightlyPlan { window, warnings }
}

/// The first midnight from which Graph still holds every call record of the day.
pub fn call_records_available_from(now: DateTime<Utc>) -> DateTime<Utc> {
    let oldest = now - chrono::Duration::days(CALL_RECORD_RETENTION_DAYS as i64);
    let next_midnight = oldest
        .date_naive()
        .checked_add_days(Days::new(1))
        .expect("a representable date");
    midnight(next_midnight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::parse_bound;

    fn at(text: &str) -> DateTime<Utc> {
        parse_bound(text).unwrap()
    }

    fn state(stream: &str, from: &str, to: &str) -> ExportState {
        let mut state = ExportState::default();
        state.streams.insert(
            stream.into(),
            StreamState {
                complete_from: at(from),
                complete_to: at(to),
            },
        );
        state
    }

    #[test]
    fn a_first_run_exports_the_trailing_lookback() {
        let plan = plan_nightly(
            &ExportState::default(),
            &["call_records"],
            at("2026-11-30T02:30:00Z"),
            3,
        );
        assert_eq!(
            plan.window,
            Window::new(at("2026-11-27"), at("2026-11-30")).unwrap()
        );
        assert!(plan.warnings.is_empty());
    }

    #[test]
    fn missed_nights_are_caught_up_from_the_last_complete_window() {
        let state = state("call_records", "2026-11-01", "2026-11-20");
        let plan = plan_nightly(&state, &["call_records"], at("2026-11-30T02:30:00Z"), 3);
        assert_eq!(plan.window.from, at("2026-11-20"));
        assert_eq!(plan.window.to, at("2026-11-30"));
        assert_eq!(plan.warnings.len(), 1);
        assert!(plan.warnings[0].contains("caught up"));
    }

    #[test]
    fn a_gap_past_the_retention_is_reported_as_lost() {
        let state = state("call_records", "2026-09-01", "2026-10-10");
        let plan = plan_nightly(&state, &["call_records"], at("2026-11-30T02:30:00Z"), 3);
        assert_eq!(plan.window.from, at("2026-10-10"));
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.contains("lost") && w.contains("2026-11-01")),
            "{:?}",
            plan.warnings
        );
        assert_eq!(
            call_records_available_from(at("2026-11-30T02:30:00Z")),
            at("2026-11-01")
        );
    }

    #[test]
    fn recording_windows_grows_the_complete_range_only_without_gaps() {
        let mut state = ExportState::default();
        state.record(
            "s",
            Window::new(at("2026-11-20"), at("2026-11-23")).unwrap(),
        );
        state.record(
            "s",
            Window::new(at("2026-11-22"), at("2026-11-25")).unwrap(),
        );
        assert_eq!(
            state.streams["s"],
            StreamState {
                complete_from: at("2026-11-20"),
                complete_to: at("2026-11-25")
            }
        );
        // A backfill of older days does not claim the gap before the range as complete.
        state.record(
            "s",
            Window::new(at("2026-11-01"), at("2026-11-02")).unwrap(),
        );
        assert_eq!(state.streams["s"].complete_from, at("2026-11-20"));
        // A window after a gap leaves the range alone: the gap will be caught up.
        state.record(
            "s",
            Window::new(at("2026-11-27"), at("2026-11-28")).unwrap(),
        );
        assert_eq!(
            state.streams["s"],
            StreamState {
                complete_from: at("2026-11-20"),
                complete_to: at("2026-11-25")
            }
        );
    }

    #[test]
    fn quarantined_records_are_retried_until_the_retention_ends() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T06:00:00Z")
            .unwrap()
            .to_utc();
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let mut state = ExportState::default();
        let quarantined = [(day(10), ids(&["a", "b"])), (day(28), ids(&["c"]))].into();
        assert!(
            state
                .update_quarantine(&ids(&[]), &quarantined, now)
                .is_empty()
        );
        let window = Window::trailing_days(now, 1);
        assert_eq!(
            state.quarantined_to_retry(Some(window), now),
            [(day(10), ids(&["a", "b"])), (day(28), ids(&["c"]))].into()
        );
        // The window's own days are listed anew: not retried separately.
        let window = Window::trailing_days(now, 3);
        assert_eq!(
            state.quarantined_to_retry(Some(window), now),
            [(day(10), ids(&["a", "b"]))].into()
        );

        // Exported records leave the list; days past the retention are dropped and named.
        assert!(
            state
                .update_quarantine(&ids(&["a", "c"]), &BTreeMap::new(), now)
                .is_empty()
        );
        assert_eq!(state.quarantined, [(day(10), ids(&["b"]))].into());
        let later = now + chrono::Duration::days(25);
        let expired = state.update_quarantine(&ids(&[]), &BTreeMap::new(), later);
        assert_eq!(expired, [(day(10), ids(&["b"]))].into());
        assert!(state.quarantined.is_empty());
        let text = state.to_text();
        assert!(
            !text.contains("quarantined"),
            "an empty list is not written: {text}"
        );
    }

    #[test]
    fn state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            ExportState::load(dir.path()).unwrap(),
            ExportState::default()
        );
        let state = state("call_records", "2026-11-01", "2026-11-20");
        state.save(dir.path()).unwrap();
        assert_eq!(ExportState::load(dir.path()).unwrap(), state);
        std::fs::write(dir.path().join(STATE_FILE), "{").unwrap();
        assert!(matches!(
            ExportState::load(dir.path()),
            Err(StateError::Damaged { .. })
        ));
    }
}
