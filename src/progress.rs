//! Progress of a run: a live line on a terminal (indicatif), periodic plain log lines
//! otherwise (cron, systemd, Kubernetes logs), nothing with `--quiet`.
//!
//! Log lines go through [`LogWriter`], which clears the bar while a line is printed so
//! that the two never tear each other. May touch: stderr.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::graph::RequestStats;

/// How often a plain progress line is logged when stderr is not a terminal.
const PLAIN_INTERVAL: Duration = Duration::from_secs(15);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A live line when stderr is a terminal, plain periodic lines otherwise.
    Auto,
    Hidden,
}

/// The bars of this process; log lines are printed above them.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// A `tracing` writer that prints each log line above the progress bars.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

/// One log line, written out when dropped.
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let line = std::mem::take(&mut self.0);
        bars().suspend(|| {
            let _ = std::io::stderr().lock().write_all(&line);
        });
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine(Vec::with_capacity(256))
    }
}

#[derive(Default)]
struct Counts {
    records: u64,
    listed: u64,
    pages: u64,
}

/// Progress of one export.
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    counts: Mutex<(Counts, Instant)>,
    started: Instant,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Self {
        let terminal = mode == ProgressMode::Auto && std::io::stderr().is_terminal();
        let bar = terminal.then(|| {
            let bar = bars().add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} call_records {msg}")
                    .expect("the template is valid"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            plain: mode == ProgressMode::Auto && !terminal,
            counts: Mutex::new((Counts::default(), Instant::now())),
            started: Instant::now(),
        }
    }

    /// A list page with `items` records arrived.
    pub fn page_listed(&self, items: usize) {
        let mut guard = self.counts.lock().expect("progress lock");
        guard.0.pages += 1;
        guard.0.listed += items as u64;
    }

    /// One record was fetched and flattened (or skipped).
    pub fn record_done(&self, stats: RequestStats) {
        let mut guard = self.counts.lock().expect("progress lock");
        guard.0.records += 1;
        let line = describe(&guard.0, &stats, self.started.elapsed());
        if let Some(bar) = &self.bar {
            bar.set_message(line);
        } else if self.plain && guard.1.elapsed() >= PLAIN_INTERVAL {
            guard.1 = Instant::now();
            tracing::info!("Progress: call_records {line}");
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn describe(counts: &Counts, stats: &RequestStats, elapsed: Duration) -> String {
    let rate = counts.records as f64 / elapsed.as_secs_f64().max(0.001);
    format!(
        "{}/{} records listed ({} pages), {:.1} records/s, {} requests, {} retries, {} throttled ({:.1} s waited)",
        counts.records,
        counts.listed,
        counts.pages,
        rate,
        stats.requests,
        stats.retries,
        stats.throttled,
        stats.throttle_wait_ms as f64 / 1000.0
    )
}
