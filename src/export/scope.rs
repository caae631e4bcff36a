//! What an export covers: per stream the window it exports (call records only as far back
//! as Graph keeps them; edge days widened where the lake's rows cannot be kept as they
//! are), the quarantined call records fetched again, and so the partitions it replaces and
//! the state it leaves.
//!
//! Knows nothing of fetching or writing.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};

use super::{ExportPlan, FetchOutcome};
use crate::reuse;
use crate::run::summary;
use crate::state::{self, ExportState};
use crate::streams::StreamKind;
use crate::window::Window;

/// What a run covers: per stream the window it exports, and the call records that earlier
/// runs quarantined, fetched again.
pub(super) struct Scope {
    /// The run's rows fingerprint ([`reuse::rows_fingerprint`]): rows of the lake written
    /// under another are never kept as they are.
    pub fingerprint: String,
    pub windows: BTreeMap<StreamKind, Option<Window>>,
    pub retry: BTreeMap<NaiveDate, BTreeSet<String>>,
}

impl Scope {
    pub async fn plan(
        plan: &ExportPlan,
        state: &ExportState,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Self> {
        let fingerprint = reuse::rows_fingerprint(&plan.privacy, &plan.derivation);
        let windows = widened_stream_windows(plan, &fingerprint, now).await?;
        let retry = match windows.get(&StreamKind::CallRecords) {
            Some(window) => state.quarantined_to_retry(*window, now),
            None => BTreeMap::new(),
        };
        Ok(Scope {
            fingerprint,
            windows,
            retry,
        })
    }

    /// Per stream name, the window it exports, as the summary lists them.
    pub fn stream_windows(&self) -> BTreeMap<String, Option<Window>> {
        self.windows
            .iter()
            .map(|(stream, window)| (stream.name().to_string(), *window))
            .collect()
    }

    /// The `(stream, dt)` partitions the run replaces: every day of each stream's window,
    /// and the days outside it whose quarantined records were fetched now.
    pub fn days(&self, retried_days: &BTreeSet<NaiveDate>) -> Vec<(StreamKind, NaiveDate)> {
        let windows = self.windows.iter().filter_map(|(s, w)| w.map(|w| (*s, w)));
        let mut days: Vec<_> = windows
            .flat_map(|(stream, window)| window.days().into_iter().map(move |dt| (stream, dt)))
            .collect();
        days.extend(retried_days.iter().map(|dt| (StreamKind::CallRecords, *dt)));
        days
    }

    /// The state after the run: its windows exported, its quarantine updated (records
    /// past Graph's retention are named in a loud warning and dropped).
    pub fn next_state(
        &self,
        mut state: ExportState,
        fetched: &FetchOutcome,
        now: DateTime<Utc>,
    ) -> ExportState {
        for (stream, window) in &self.windows {
            if let Some(window) = window {
                state.record(stream.name(), *window);
            }
        }
        let expired = state.update_quarantine(&fetched.exported_ids, &fetched.quarantined, now);
        for (dt, ids) in expired {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            tracing::error!(
                %dt,
                "Call records quarantined on {dt} could not be fetched again before Graph's {}-day retention ended \
                 and are lost for the lake: {}. Their responses are in _rejected/.",
                state::CALL_RECORD_RETENTION_DAYS,
                ids.join(", ")
            );
        }
        state
    }
}

/// Per stream, the window it exports (None: nothing of it is available any more), each
/// widened to whole days where the lake cannot keep an edge day's rows as they are
/// ([`reuse::widen_for_fingerprint`]).
async fn widened_stream_windows(
    plan: &ExportPlan,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<BTreeMap<StreamKind, Option<Window>>> {
    let widened =
        reuse::widen_for_fingerprints(&plan.output, &plan.streams, plan.window, fingerprint)
            .await?;
    Ok(widened
        .into_iter()
        .map(|(stream, window)| (stream, stream_window(stream, window, now)))
        .collect())
}

/// Per stream, the window it exports (None: nothing of it is available any more).
pub fn stream_windows(
    plan: &ExportPlan,
    now: DateTime<Utc>,
) -> BTreeMap<StreamKind, Option<Window>> {
    plan.streams
        .iter()
        .map(|stream| (*stream, stream_window(*stream, plan.window, now)))
        .collect()
}

/// The `(table, dt)` partitions a run with these stream windows replaces: every day of
/// each stream's window in each of its tables, also the days that turn out empty.
pub fn partitions_to_replace(
    stream_windows: &BTreeMap<StreamKind, Option<Window>>,
) -> BTreeSet<(String, NaiveDate)> {
    summary::table_partitions(
        stream_windows
            .iter()
            .filter_map(|(stream, window)| window.map(|w| (*stream, w)))
            .flat_map(|(stream, window)| window.days().into_iter().map(move |dt| (stream, dt))),
    )
}

/// The part of `window` a stream can be exported for. Graph keeps call records for 30
/// days: days before that are skipped (with a warning), never replaced by empty partitions.
fn stream_window(stream: StreamKind, window: Window, now: DateTime<Utc>) -> Option<Window> {
    if stream != StreamKind::CallRecords {
        return Some(window);
    }
    let available_from = state::call_records_available_from(now);
    if window.from >= available_from {
        return Some(window);
    }
    if window.to <= available_from {
        tracing::warn!(
            window = %window,
            "Graph keeps call records for {} days: none of this window is available any more; the call tables \
             are left as they are.",
            state::CALL_RECORD_RETENTION_DAYS
        );
        return None;
    }
    let clamped = Window {
        from: available_from,
        to: window.to,
    };
    tracing::warn!(
        window = %window,
        exported = %clamped,
        "Graph keeps call records for {} days: call records are exported from {available_from} only; the call \
         tables of earlier days are left as they are.",
        state::CALL_RECORD_RETENTION_DAYS
    );
    Some(clamped)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, day, hour, 0, 0).unwrap()
    }

    fn window(from: DateTime<Utc>, to: DateTime<Utc>) -> Window {
        Window::new(from, to).unwrap()
    }

    #[test]
    fn log_streams_are_exported_for_the_whole_window() {
        let old = window(at(1, 0), at(2, 0));
        let now = old.to + chrono::Duration::days(400);
        assert_eq!(stream_window(StreamKind::PstnCalls, old, now), Some(old));
    }

    #[test]
    fn call_records_are_exported_only_as_far_back_as_graph_keeps_them() {
        let now = at(31, 12);
        let available_from = state::call_records_available_from(now);
        let recent = window(available_from + chrono::Duration::hours(1), now);
        assert_eq!(
            stream_window(StreamKind::CallRecords, recent, now),
            Some(recent)
        );
        let straddling = window(available_from - chrono::Duration::days(2), now);
        assert_eq!(
            stream_window(StreamKind::CallRecords, straddling, now),
            Some(window(available_from, now))
        );
        let expired = window(available_from - chrono::Duration::days(2), available_from);
        assert_eq!(stream_window(StreamKind::CallRecords, expired, now), None);
    }

    #[test]
    fn partitions_to_replace_cover_every_day_of_each_available_stream() {
        let windows = BTreeMap::from([
            (StreamKind::CallRecords, None),
            (StreamKind::PstnCalls, Some(window(at(1, 6), at(3, 0)))),
        ]);
        let partitions = partitions_to_replace(&windows);
        let pstn: Vec<_> = summary::table_partitions(
            [
                (StreamKind::PstnCalls, at(1, 0).date_naive()),
                (StreamKind::PstnCalls, at(2, 0).date_naive()),
            ]
            .into_iter(),
        )
        .into_iter()
        .collect();
        assert_eq!(partitions.into_iter().collect::<Vec<_>>(), pstn);
    }
}
