//! What the commands print for people: the plan of a dry run and the closing summaries of
//! `export` and `reflatten` (the same figures are in the run manifest). Pure text; the
//! request costs quoted come from the page sizes of [`crate::streams`]. Knows nothing of
//! how a run is done.

use crate::export::{self, ExportPlan, RunSummary};
use crate::reflatten::{ReflattenPlan, ReflattenSummary};
use crate::streams::{call_records, logs};

/// What a dry run prints: the plan, without fetching or writing anything.
pub fn plan(plan: &ExportPlan) -> String {
    let stream_windows = export::stream_windows(plan, chrono::Utc::now());
    let partitions = export::partitions_to_replace(&stream_windows);
    let mut text = format!(
        "Dry run: nothing is fetched or written.\n  window: {}\n  output: {}\n  API version: {}\n  streams:\n",
        plan.window,
        plan.output,
        plan.api_version.name()
    );
    text.insert_str(
        text.find("  API version").unwrap_or(0),
        &format!("  format: {}\n", plan.format.name()),
    );
    for (stream, window) in &stream_windows {
        let Some(window) = window else {
            text.push_str(&format!(
                "    {:<30} nothing: older than Graph keeps call records\n",
                stream.name()
            ));
            continue;
        };
        match stream.log() {
            None => text.push_str(&format!(
                "    {:<30} {window}: 1 list request per {} call records, then 2 per record \
                 (details, participants) plus 1 per further {} sessions or {} participants\n",
                stream.name(),
                thousands(call_records::LIST_PAGE_SIZE),
                thousands(call_records::SESSIONS_PAGE_SIZE),
                thousands(call_records::PARTICIPANTS_PAGE_SIZE),
            )),
            Some(log) => {
                let chunks = log.chunks(*window, plan.log_chunk_days);
                text.push_str(&format!(
                    "    {:<30} {window}: {} request(s) of {}, 1 more per {} rows\n",
                    stream.name(),
                    chunks.len(),
                    log.function,
                    thousands(logs::PAGE_SIZE),
                ));
                for chunk in chunks.iter().take(5) {
                    text.push_str(&format!("      chunk {chunk}\n"));
                }
                if chunks.len() > 5 {
                    text.push_str(&format!("      … {} more chunks\n", chunks.len() - 5));
                }
            }
        }
    }
    text.push_str(&format!(
        "  partitions that would be replaced ({}):\n",
        partitions.len()
    ));
    for (table, dt) in &partitions {
        text.push_str(&format!(
            "    {table}/{}\n",
            crate::sink::partition_dir_name(*dt)
        ));
    }
    text
}

/// The closing summary, printed on stderr (the same figures are in the run manifest).
pub fn export_summary(summary: &RunSummary, plan: &ExportPlan) -> String {
    let list = |ids: &mut dyn Iterator<Item = &str>| {
        let ids: Vec<&str> = ids.collect();
        if ids.is_empty() {
            String::new()
        } else {
            format!(" ({})", ids.join(", "))
        }
    };
    let mut text = format!(
        "Exported {} call records and the log rows below of {} into {} in {:.1} s (run {}).\n",
        summary.records_exported, plan.window, plan.output, summary.elapsed_seconds, summary.run_id
    );
    text.push_str(&format!(
        "  {:<30} {:>10} {:>6} {:>12}\n",
        "table", "rows", "files", "bytes"
    ));
    for (table, totals) in &summary.published.tables {
        text.push_str(&format!(
            "  {:<30} {:>10} {:>6} {:>12}\n",
            table, totals.rows, totals.files, totals.bytes
        ));
    }
    let requests = &summary.requests;
    text.push_str(&format!(
        "  partitions replaced: {}\n  requests: {} ({} retries, {} throttled with 429, {:.1} s waited on retries, \
         {:.1} s paced under Graph's limits)\n",
        summary.published.partitions_replaced.len(),
        requests.requests,
        requests.retries,
        requests.throttled,
        requests.throttle_wait_ms as f64 / 1000.0,
        requests.paced_wait_ms as f64 / 1000.0
    ));
    text.push_str(&table_versions(&summary.published.table_versions));
    text.push_str(&format!(
        "  records skipped (404): {}{}\n",
        summary.records_not_found.len(),
        list(&mut summary.records_not_found.iter().map(String::as_str))
    ));
    text.push_str(&format!(
        "  records rejected (quarantined in {}): {}{}\n",
        plan.output.display_path(&format!(
            "{}/{}",
            crate::run::quarantine::REJECTED_DIR,
            summary.run_id
        )),
        summary.records_rejected.len(),
        list(&mut summary.records_rejected.iter().map(|r| r.id.as_str()))
    ));
    if summary.records_quarantined_kept > 0 || summary.records_quarantined_pending > 0 {
        text.push_str(&format!(
            "  quarantined records whose earlier rows were kept: {}; fetched again by later runs: {}\n",
            summary.records_quarantined_kept, summary.records_quarantined_pending
        ));
    }
    if summary.records_kept_outside_window > 0 || !summary.records_moved.is_empty() {
        text.push_str(&format!(
            "  records kept outside the window (first or last day): {}; placed by their listed day: {}{}\n",
            summary.records_kept_outside_window,
            summary.records_moved.len(),
            list(&mut summary.records_moved.iter().map(String::as_str))
        ));
    }
    text.push_str(&format!(
        "  values written as null (unreadable): {}\n  manifest: {}\n",
        summary.value_issues,
        plan.output
            .display_path(&format!("_manifests/{}.json", summary.run_id))
    ));
    text
}

/// The closing summary of `reflatten`, printed on stderr.
pub fn reflatten_summary(summary: &ReflattenSummary, plan: &ReflattenPlan) -> String {
    let mut text = format!(
        "Rebuilt {} objects ({:.1} MB of JSON in {} files) into {} in {:.2} s (run {}).\n",
        summary.objects,
        summary.input_bytes as f64 / 1e6,
        summary.input_files,
        plan.output,
        summary.elapsed_seconds,
        summary.run_id
    );
    for (table, totals) in &summary.published.tables {
        text.push_str(&format!(
            "  {:<24} {:>10} {:>6} {:>12}\n",
            table, totals.rows, totals.files, totals.bytes
        ));
    }
    text.push_str(&format!(
        "  partitions replaced: {}\n  left out (outside the window): {}\n",
        summary.published.partitions_replaced.len(),
        summary.objects_outside_window
    ));
    text.push_str(&table_versions(&summary.published.table_versions));
    text
}

/// The Delta table versions a run writes (or would write), one line; empty for Parquet.
pub fn table_versions(versions: &std::collections::BTreeMap<String, u64>) -> String {
    if versions.is_empty() {
        return String::new();
    }
    let list: Vec<String> = versions.iter().map(|(t, v)| format!("{t} v{v}")).collect();
    format!("  Delta table versions: {}\n", list.join(", "))
}

/// What `maintain` printed: the files vacuumed per table.
pub fn maintain_summary(
    summary: &crate::maintain::MaintainSummary,
    plan: &crate::maintain::MaintainPlan,
) -> String {
    let verb = if plan.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut text = format!(
        "Vacuumed {} (files removed more than {} hours ago):\n",
        plan.lake, plan.retention_hours
    );
    for table in &summary.vacuumed {
        text.push_str(&format!(
            "  {:<30} {verb} {} files\n",
            table.table,
            table.files_deleted.len()
        ));
    }
    if !summary.not_delta.is_empty() {
        text.push_str(&format!(
            "  not Delta tables (nothing to vacuum): {}\n",
            summary.not_delta.join(", ")
        ));
    }
    text
}

/// `n` with a comma between thousands, as the messages write counts (1,000).
fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut text = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated_by_commas() {
        assert_eq!(thousands(60), "60");
        assert_eq!(thousands(130), "130");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
