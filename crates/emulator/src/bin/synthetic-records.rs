//! `synthetic-records`: writes the emulator's synthetic tenant as a JSON-lines file of
//! complete call records (the input of `benches/run.sh`, `cargo bench --bench stages` and
//! `callrecords-etl reflatten`). The same arguments always give the same bytes.

use std::path::PathBuf;

use anyhow::Context;
use callrecords_emulator::tenant::Shape;
use callrecords_emulator::{Tenant, synthetic_records};
use clap::{Parser, ValueEnum};

/// Write the synthetic tenant's complete call records (from 2026-11-01) as JSON lines.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  synthetic-records --out records.jsonl --calls-per-day 1900 --days 7"
)]
struct Args {
    /// The JSON-lines file to write (replaced if it exists).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Days of records, from 2026-11-01.
    #[arg(long, value_name = "DAYS", default_value_t = 7)]
    days: u32,
    /// Calls per UTC day in the synthetic tenant.
    #[arg(long, default_value_t = callrecords_emulator::DEFAULT_CALLS_PER_DAY)]
    calls_per_day: u32,
    /// Seed of the synthetic tenant.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The mix of calls: `mixed` (mostly two-party and PSTN calls) or `meetings` (meetings
    /// with many attendees, long sessions, streams with many null metrics).
    #[arg(long, value_enum, default_value_t = ShapeArg::Mixed)]
    shape: ShapeArg,
    /// Every day's large meeting gets this many participants, each with a session (10,000
    /// make one record of about 90 MB: what one huge record costs).
    #[arg(long, value_name = "N")]
    large_meeting_attendees: Option<u32>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ShapeArg {
    Mixed,
    Meetings,
}

impl From<ShapeArg> for Shape {
    fn from(shape: ShapeArg) -> Self {
        match shape {
            ShapeArg::Mixed => Shape::Mixed,
            ShapeArg::Meetings => Shape::Meetings,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let tenant = Tenant::new(args.seed, args.calls_per_day)
        .with_shape(args.shape.into())
        .with_large_meeting(args.large_meeting_attendees);
    synthetic_records::write(file, &tenant, args.days)
        .with_context(|| format!("cannot write {}", args.out.display()))
}
