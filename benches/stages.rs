//! Where one `reflatten` worker's time goes, per core (BENCHMARKS.md).
//!
//! Reads a JSON-lines file of callRecords into memory, then runs each stage of a worker
//! on one thread over every line, each stage including the ones before it:
//!
//! 1. `lines`: UTF-8 check and cutting into lines, nothing parsed;
//! 2. `serde skim` (the baseline): `serde_json` reading every line into `IgnoredAny`,
//!    the least work a serde parser does for a line: it checks the syntax and builds nothing;
//! 3. `parse`: the worker's reader, filling the tree of the members the tables read;
//! 4. `flatten`: plus placing each record and appending its rows to the nine tables'
//!    Arrow builders (a table's batch finished every [`BATCH_ROWS`] rows);
//! 5. `write`: plus encoding those batches into Parquet (zstd) by the sink, into a
//!    temporary folder;
//! 6. `Parquet alone`: the sink writing the batches of stage 4, made beforehand and held
//!    in memory, so only the encoding is timed. With the skim of stage 2, it bounds what
//!    any flattener can reach: a parser no faster than a syntax check, plus the writer.
//!
//! STAGES (e.g. `4` or `2,6`) runs only those stages, to time or profile one alone.
//!
//! Each stage runs REPEAT times (default 3); the best time counts. BATCH_ROWS (default
//! 8192) sets the rows per table in a batch. The GB/s of one core
//! bound what two cores can do: 1 GB/s on 2 cores needs every stage together at 0.5 GB/s
//! per core or better, with the Parquet writer's share spread over both cores.
//!
//! Run: `cargo bench --bench stages` (INPUT: a JSON-lines file, default
//! `target/stages-input.jsonl`, generated at first as `synthetic-records` writes it,
//! CALLS_PER_DAY=1900 over 7 days: about 0.49 GB, the input of `benches/run.sh`).

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use callrecords_emulator::{Tenant, synthetic_records};
use callrecords_etl::flatten::call_records::{self, CallRecordTables, RecordParser};
use callrecords_etl::privacy::Privacy;
use callrecords_etl::reflatten;
use callrecords_etl::sink::{ParquetSink, SinkOptions};
use callrecords_etl::store::Location;
use chrono::NaiveDate;
use support::setting;

/// Rows of one table accumulated before a batch is finished (and, in the last stage,
/// written); `BATCH_ROWS` overrides it, to see what batch sizes cost the Parquet writer.
const BATCH_ROWS: usize = 8 * 1024;

fn input() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("INPUT") {
        return Ok(PathBuf::from(path));
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/stages-input.jsonl");
    if !path.exists() {
        let calls_per_day = setting("CALLS_PER_DAY", 1900);
        eprintln!(
            "generating {} ({calls_per_day} calls/day x 7 days) ...",
            path.display()
        );
        let file = std::fs::File::create(&path)?;
        synthetic_records::write(file, &Tenant::new(42, calls_per_day), 7)?;
    }
    Ok(path)
}

/// What the stages run up to.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Stage {
    Lines,
    SerdeSkim,
    Parse,
    Flatten,
    Write,
    /// The Parquet writer alone, over the batches `Flatten` makes (held in memory).
    WriteAlone,
}

impl Stage {
    const ALL: [Stage; 6] = [
        Stage::Lines,
        Stage::SerdeSkim,
        Stage::Parse,
        Stage::Flatten,
        Stage::Write,
        Stage::WriteAlone,
    ];

    fn name(self) -> &'static str {
        match self {
            Stage::Lines => "lines (UTF-8, line ends)",
            Stage::SerdeSkim => "serde skim (baseline)",
            Stage::Parse => "parse (the worker's reader)",
            Stage::Flatten => "parse + flatten",
            Stage::Write => "parse + flatten + Parquet",
            Stage::WriteAlone => "Parquet alone (same batches)",
        }
    }
}

/// A finished batch of one table's rows for one day.
type TableBatch = (&'static str, NaiveDate, RecordBatch);

/// One pass of `stage` over `text`; returns the lines seen (so no stage is optimised away).
fn run(stage: Stage, text: &[u8], scratch: &std::path::Path) -> anyhow::Result<u64> {
    let output = tempfile::tempdir_in(scratch)?;
    let mut sink = match stage {
        Stage::Write => Some(ParquetSink::create(
            &Location::Local(output.path().to_path_buf()),
            "stages",
            SinkOptions::default(),
        )?),
        _ => None,
    };
    let seen = flatten_lines(stage, text, |table, dt, batch| match &mut sink {
        Some(sink) => Ok(sink.write(table, dt, &batch)?),
        None => Ok(()),
    })?;
    if let Some(sink) = sink {
        // Every file complete and synced, as before publishing.
        sink.finish()?;
    }
    Ok(seen)
}

/// Runs the stages up to `stage` (at most flattening) over every line of `text`, handing
/// each finished batch to `batch_done`; returns the lines seen.
fn flatten_lines(
    stage: Stage,
    text: &[u8],
    mut batch_done: impl FnMut(&'static str, NaiveDate, RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let lines = reflatten::lines(text).filter(|line| !line.trim_ascii().is_empty());
    let batch_rows = setting("BATCH_ROWS", BATCH_ROWS);
    let mut seen = 0u64;
    let privacy = Privacy::default();
    let mut parser = RecordParser::default();
    let mut tables: std::collections::BTreeMap<NaiveDate, CallRecordTables> = Default::default();
    let mut issues = Vec::new();
    for line in lines {
        seen += 1;
        // Checked line by line, as `reflatten`'s workers do.
        let line = simdutf8::basic::from_utf8(line)?;
        match stage {
            Stage::Lines => continue,
            Stage::SerdeSkim => {
                serde_json::from_str::<serde::de::IgnoredAny>(line)?;
                continue;
            }
            _ => {}
        }
        let record = parser.parse(line)?;
        if stage == Stage::Parse {
            continue;
        }
        let (_, start) = call_records::identify_item(record)?;
        let dt = start.date_naive();
        let partition = tables
            .entry(dt)
            .or_insert_with(|| CallRecordTables::new(&privacy));
        call_records::flatten_item(record, partition, &mut issues)?;
        issues.clear();
        for builder in partition.builders_mut() {
            if builder.len() >= batch_rows {
                batch_done(&builder.schema().table, dt, builder.finish())?;
            }
        }
    }
    for (dt, partition) in &mut tables {
        for builder in partition.builders_mut() {
            batch_done(&builder.schema().table, *dt, builder.finish())?;
        }
    }
    Ok(seen)
}

/// The Parquet writer alone: the batches of `text` are flattened first (untimed) and held
/// in memory, then written by the sink under the clock. Returns the time and lines seen.
fn time_write_alone(text: &[u8], scratch: &std::path::Path) -> anyhow::Result<(Duration, u64)> {
    let mut batches: Vec<TableBatch> = Vec::new();
    let seen = flatten_lines(Stage::Flatten, text, |table, dt, batch| {
        batches.push((table, dt, batch));
        Ok(())
    })?;
    let output = tempfile::tempdir_in(scratch)?;
    let clock = Instant::now();
    let sink = ParquetSink::create(
        &Location::Local(output.path().to_path_buf()),
        "stages",
        SinkOptions::default(),
    )?;
    for (table, dt, batch) in &batches {
        sink.write(table, *dt, batch)?;
    }
    sink.finish()?;
    Ok((clock.elapsed(), seen))
}

fn main() -> anyhow::Result<()> {
    let path = input()?;
    let repeat = setting("REPEAT", 3).max(1);
    let text = std::fs::read(&path)?;
    let scratch = tempfile::tempdir()?;
    println!(
        "input: {} ({:.0} MB); one thread; best of {repeat}",
        path.display(),
        text.len() as f64 / 1e6
    );
    let only: Vec<usize> = std::env::var("STAGES")
        .map(|list| {
            list.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut skim = None;
    for (number, stage) in (1..).zip(Stage::ALL) {
        if !only.is_empty() && !only.contains(&number) {
            continue;
        }
        let mut best = Duration::MAX;
        let mut lines = 0;
        for _ in 0..repeat {
            let elapsed;
            (elapsed, lines) = if stage == Stage::WriteAlone {
                time_write_alone(&text, scratch.path())?
            } else {
                let clock = Instant::now();
                let lines = run(stage, &text, scratch.path())?;
                (clock.elapsed(), lines)
            };
            best = best.min(elapsed);
        }
        let seconds = best.as_secs_f64();
        if stage == Stage::SerdeSkim {
            skim = Some(seconds);
        }
        let versus = skim.map_or(String::new(), |skim| {
            format!("  {:.2}x the baseline's time", seconds / skim)
        });
        println!(
            "{:<30} {:>7.3} s  {:>5.2} GB/s per core  {:>8.0} records/s{versus}",
            stage.name(),
            seconds,
            text.len() as f64 / seconds / 1e9,
            lines as f64 / seconds,
        );
    }
    Ok(())
}
