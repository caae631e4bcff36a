//! Progress of a run: live bars on a terminal (indicatif, one per stream), periodic plain
//! log lines otherwise (cron, systemd, Kubernetes logs), nothing with `--quiet`.
//!
//! Log lines go through [`LogWriter`], which clears the bars while a line is printed so
//! that the two never tear each other. May touch: stderr.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::graph::RequestStats;

/// How often a plain progress line is logged per stream when stderr is not a terminal.
const PLAIN_INTERVAL: Duration = Duration::from_secs(15);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Live bars when stderr is a terminal, plain periodic lines otherwise.
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

/// Progress of one run: hands out a [`StreamProgress`] per exported stream.
pub struct Progress {
    terminal: bool,
    plain: bool,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Self {
        let terminal = mode == ProgressMode::Auto && std::io::stderr().is_terminal();
        Progress {
            terminal,
            plain: mode == ProgressMode::Auto && !terminal,
        }
    }

    /// Progress of `stream`. Call records count records against the records listed so
    /// far (their total is known, and so an ETA, once the list is complete); log streams
    /// count rows.
    pub fn stream(&self, stream: &'static str, unit: Unit) -> StreamProgress {
        let bar = self.terminal.then(|| {
            let template = match unit {
                Unit::Records => {
                    "{spinner} {prefix:<22} {pos:>7}/{len:<7} records, ETA {eta:<4} {msg}"
                }
                Unit::Rows => "{spinner} {prefix:<22} {pos:>7} rows {msg}",
            };
            let bar = bars().add(ProgressBar::new(0));
            bar.set_style(ProgressStyle::with_template(template).expect("the template is valid"));
            bar.set_prefix(stream);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        StreamProgress {
            stream,
            unit,
            bar,
            plain: self.plain,
            state: Mutex::new(StreamState {
                last_line: Some(Instant::now()),
                ..StreamState::default()
            }),
            started: Instant::now(),
        }
    }
}

/// What a stream counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Records,
    Rows,
}

#[derive(Default)]
struct StreamState {
    done: u64,
    listed: u64,
    /// Listed records the lake already holds at their version: copied, not fetched.
    reused: u64,
    pages: u64,
    listing_complete: bool,
    stats: RequestStats,
    last_line: Option<Instant>,
}

/// Progress of one stream.
pub struct StreamProgress {
    stream: &'static str,
    unit: Unit,
    bar: Option<ProgressBar>,
    plain: bool,
    state: Mutex<StreamState>,
    started: Instant,
}

impl StreamProgress {
    /// A page arrived with `items` records (call records) or rows (log streams).
    pub fn page(&self, items: usize, stats: RequestStats) {
        self.update(|state| {
            state.pages += 1;
            state.listed += items as u64;
            state.stats = stats;
        });
        if let (Some(bar), Unit::Records) = (&self.bar, self.unit) {
            bar.inc_length(items as u64);
        }
    }

    /// Every record of the window has been listed: the total is known.
    pub fn listing_complete(&self) {
        self.update(|state| state.listing_complete = true);
    }

    /// `count` listed records need no fetching: the lake holds them at their version. They
    /// fill the bar but not the rate, which would otherwise promise too early an end.
    pub fn reused(&self, count: u64) {
        self.update(|state| state.reused += count);
        if let Some(bar) = &self.bar {
            bar.inc(count);
        }
    }

    /// `count` records were fetched (or skipped), or `count` rows written.
    pub fn done(&self, count: u64, stats: RequestStats) {
        self.update(|state| {
            state.done += count;
            state.stats = stats;
        });
        if let Some(bar) = &self.bar {
            bar.inc(count);
        }
    }

    /// Ends the stream's bar and logs its final line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let state = self.state.lock().expect("progress lock");
        if self.plain {
            tracing::info!("Finished {}: {}", self.stream, self.describe(&state));
        }
    }

    fn update(&self, change: impl FnOnce(&mut StreamState)) {
        let mut state = self.state.lock().expect("progress lock");
        change(&mut state);
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "{}; {}",
                self.describe_rate(&state),
                self.describe_requests(&state)
            ));
        } else if self.plain
            && state
                .last_line
                .is_none_or(|t| t.elapsed() >= PLAIN_INTERVAL)
        {
            state.last_line = Some(Instant::now());
            tracing::info!("Progress of {}: {}", self.stream, self.describe(&state));
        }
    }

    fn describe(&self, state: &StreamState) -> String {
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = state.done as f64 / elapsed;
        let reused = match state.reused {
            0 => String::new(),
            reused => format!(" ({reused} unchanged, reused)"),
        };
        let to_fetch = state.listed.saturating_sub(state.reused);
        let done = match self.unit {
            Unit::Records if state.listing_complete => {
                let left = to_fetch.saturating_sub(state.done);
                let eta = if rate > 0.0 {
                    format!(", ETA {:.0} s", left as f64 / rate)
                } else {
                    String::new()
                };
                format!(
                    "{}/{to_fetch} records{reused}, {rate:.1} records/s{eta}",
                    state.done
                )
            }
            Unit::Records => format!(
                "{}/{to_fetch}+ records listed so far{reused}, {rate:.1} records/s",
                state.done
            ),
            Unit::Rows => format!("{} rows, {rate:.0} rows/s", state.done),
        };
        format!("{done}; {}", self.describe_requests(state))
    }

    fn describe_rate(&self, state: &StreamState) -> String {
        let rate = state.done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        match self.unit {
            Unit::Records => format!("{rate:.1} records/s"),
            Unit::Rows => format!("{rate:.0} rows/s"),
        }
    }

    fn describe_requests(&self, state: &StreamState) -> String {
        let stats = &state.stats;
        format!(
            "{} pages, {} requests, {} retries, {} throttled (429), {:.1} s waited",
            state.pages,
            stats.requests,
            stats.retries,
            stats.throttled,
            (stats.throttle_wait_ms + stats.paced_wait_ms) as f64 / 1000.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_records_are_counted_apart_from_the_ones_to_fetch() {
        let progress = Progress::new(ProgressMode::Hidden).stream("call_records", Unit::Records);
        progress.page(10, RequestStats::default());
        progress.reused(6);
        progress.done(3, RequestStats::default());
        let line = progress.describe(&progress.state.lock().unwrap());
        assert!(
            line.starts_with("3/4+ records listed so far (6 unchanged, reused), "),
            "{line}"
        );
        progress.listing_complete();
        let line = progress.describe(&progress.state.lock().unwrap());
        assert!(
            line.starts_with("3/4 records (6 unchanged, reused), "),
            "{line}"
        );
        assert!(line.contains(", ETA "), "one record left to fetch: {line}");
    }
}
