//! Emulated tenants for the crash tests: `export` of one fixed window (call records and
//! PSTN calls, with a raw zone) with FAILPOINTS set, and two tenants whose exports of that
//! window differ (seeds 101 and 202), so that a lake holding a mix of the old and the new
//! rows shows.

use std::path::{Path, PathBuf};
use std::process::Output;

use callrecords_emulator::{EmulatorConfig, RunningEmulator};

use super::{CALL_TABLES, days_ago};

/// The streams every export here writes.
pub const STREAMS: &str = "call_records,pstn_calls";

/// The tables of [`STREAMS`].
pub fn tables() -> Vec<&'static str> {
    CALL_TABLES.iter().copied().chain(["pstn_calls"]).collect()
}

/// An emulated tenant and the config file that points the exporter at it.
pub struct Tenant {
    pub graph: RunningEmulator,
    pub config: PathBuf,
}

impl Tenant {
    /// Starts a small tenant (12 calls and 40 log rows a day) made from `seed`, its config
    /// file written into `dir`.
    pub async fn start(seed: u64, dir: &Path) -> Self {
        let graph = super::start_emulator(EmulatorConfig {
            seed,
            calls_per_day: 12,
            log_rows_per_day: 40,
            ..EmulatorConfig::default()
        })
        .await;
        let config = super::emulator_config_file(dir, &graph);
        Tenant { graph, config }
    }

    pub fn secret(&self) -> &str {
        &self.graph.config().client_secret
    }

    /// `export <options> --streams …` of the days 4 to 2 days ago into `<root>/lake` and
    /// `<root>/raw`, with `failpoints` set (empty: none).
    pub async fn export(&self, root: &Path, failpoints: &str, options: &[&str]) -> Output {
        let mut command = super::binary();
        command
            .env("CALLRECORDS_CLIENT_SECRET", self.secret())
            .env("FAILPOINTS", failpoints)
            .arg("export")
            .args(options)
            .args(["--streams", STREAMS, "--config"])
            .arg(&self.config)
            .args(["--from", &days_ago(4), "--to", &days_ago(2), "--out"])
            .arg(root.join("lake"))
            .arg("--raw")
            .arg(root.join("raw"));
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }
}

/// The old tenant (seed 101) and the new one (seed 202), their config files in `dir`.
pub struct TwoTenants {
    pub dir: tempfile::TempDir,
    pub old: Tenant,
    pub new: Tenant,
}

impl TwoTenants {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let old = Tenant::start(101, dir.path()).await;
        let new = Tenant::start(202, dir.path()).await;
        TwoTenants { dir, old, new }
    }

    /// `<dir>/<name>`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}
