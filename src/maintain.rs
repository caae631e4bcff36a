//! `maintain`: housekeeping of a lake of Delta tables. It vacuums every table: deletes the
//! data files that no version within the retention needs any more (removed by a run longer
//! ago than the retention; delta-rs' vacuum), holding the lake's lock so no run writes
//! meanwhile. A retention below Delta's default of 168 hours is refused unless asked for
//! explicitly: readers with an older snapshot, and time travel, still need those files.
//!
//! May touch: the lake's tables (through [`crate::delta`]) and its `_lock`. Knows nothing
//! of Graph.

use anyhow::Context;
use serde::Serialize;

use crate::delta::{self, Vacuumed};
use crate::schema;
use crate::store::Location;
use crate::store::lock::RunLock;

/// Delta's default `delta.deletedFileRetentionDuration`: one week.
pub const DEFAULT_RETENTION_HOURS: u32 = 168;

/// What `maintain` was asked to do.
#[derive(Debug)]
pub struct MaintainPlan {
    pub lake: Location,
    /// Files removed longer ago than this are deleted.
    pub retention_hours: u32,
    /// Allows a retention below [`DEFAULT_RETENTION_HOURS`].
    pub allow_short_retention: bool,
    /// List what would be deleted, delete nothing.
    pub dry_run: bool,
}

/// What `maintain` did.
#[derive(Debug, Serialize)]
pub struct MaintainSummary {
    pub vacuumed: Vec<Vacuumed>,
    /// Declared tables the lake holds no Delta table for.
    pub not_delta: Vec<String>,
}

/// Refuses a retention below the default unless `allow_short`, saying why and what to do.
pub fn check_retention(hours: u32, allow_short: bool) -> Result<(), String> {
    if hours >= DEFAULT_RETENTION_HOURS || allow_short {
        return Ok(());
    }
    Err(format!(
        "--vacuum-hours {hours} is below Delta's retention of {DEFAULT_RETENTION_HOURS} hours: a reader \
         still on an older version, or time travel to it, would miss the deleted files. Pass \
         --allow-short-retention to vacuum anyway"
    ))
}

/// Vacuums every declared table of the lake that is a Delta table.
pub async fn maintain(plan: &MaintainPlan) -> anyhow::Result<MaintainSummary> {
    crate::run::recover(&plan.lake, None).await?;
    let _lock = RunLock::acquire(&plan.lake, &crate::run::new_run_id(chrono::Utc::now())).await?;
    let retention = chrono::Duration::hours(i64::from(plan.retention_hours));
    let mut summary = MaintainSummary {
        vacuumed: Vec::new(),
        not_delta: Vec::new(),
    };
    for table in schema::tables() {
        let name = &table.table;
        let vacuumed = delta::vacuum(
            &plan.lake,
            name,
            retention,
            plan.allow_short_retention,
            plan.dry_run,
        )
        .await
        .with_context(|| format!("cannot vacuum {}", plan.lake.display_path(name)))?;
        match vacuumed {
            Some(vacuumed) => summary.vacuumed.push(vacuumed),
            None => summary.not_delta.push(name.clone()),
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_retention_needs_the_explicit_flag() {
        assert!(check_retention(168, false).is_ok());
        assert!(check_retention(0, true).is_ok());
        let refused = check_retention(24, false).unwrap_err();
        assert!(refused.contains("--allow-short-retention"), "{refused}");
    }
}
