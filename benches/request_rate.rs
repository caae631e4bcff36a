//! How close an export runs to Graph's allowed request rate (BENCHMARKS.md).
//!
//! Starts the embedded emulator enforcing Graph's documented throttling limits (1,500
//! call-record requests per 20 s for the application in the tenant, 40 per 20 s per record
//! and for listing), exports a large window of call records with the default settings, and
//! prints: requests per record, records per second, and the share of the allowed requests
//! used in every full 20-second window of the run (the target is at least 90 %), with the
//! 429s and failed records (the target is none).
//!
//! Run: `cargo bench --bench request_rate` (DAYS=14 days of 200 calls: about 2,800 records
//! and 70 s; CALLS_PER_DAY and CONCURRENCY change the load).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use callrecords_emulator::{self as emulator, EmulatorConfig, Limits, RecordedRequest};
use callrecords_etl::export::{self, ExportPlan, RunSummary};
use callrecords_etl::graph::{ClientSettings, GraphClient, Secret};
use callrecords_etl::progress::{Progress, ProgressMode};
use callrecords_etl::store::Location;
use callrecords_etl::streams::StreamKind;
use callrecords_etl::window::{Window, midnight};
use support::setting;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; this benchmark takes no arguments.
    let days: u32 = setting("DAYS", 14);
    let calls_per_day = setting("CALLS_PER_DAY", 200);
    let concurrency: usize = setting("CONCURRENCY", 8);
    let limits = Limits::default();
    let config = EmulatorConfig {
        calls_per_day,
        enforce_limits: true,
        limits: limits.clone(),
        ..EmulatorConfig::default()
    };
    let emulator = emulator::start(config, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = url::Url::parse(&emulator.base_url())?;
    let client = GraphClient::new(ClientSettings::new(
        url.clone(),
        url,
        emulator.config().tenant_id.clone(),
        emulator.config().client_id.clone(),
        Secret::new(emulator.config().client_secret.clone()),
    ))?;
    let lake = tempfile::tempdir()?;
    let today = chrono::Utc::now().date_naive();
    let plan = ExportPlan {
        format: Default::default(),
        window: Window::new(
            midnight(today - chrono::Days::new(u64::from(days))),
            midnight(today),
        )?,
        streams: vec![StreamKind::CallRecords],
        output: Location::Local(lake.path().to_path_buf()),
        concurrency,
        api_version: callrecords_etl::graph::ApiVersion::V1,
        log_chunk_days: 30,
        privacy: Default::default(),
        derivation: Default::default(),
        raw: None,
        full: false,
    };
    println!(
        "export of {days} days x {calls_per_day} calls against the emulator enforcing Graph's limits \
         ({} requests / {} s per app; concurrency {concurrency}) ...",
        limits.call_records.requests,
        limits.call_records.per.as_secs()
    );
    let clock = Instant::now();
    let summary = export::export(
        &client,
        &plan,
        &Progress::new(ProgressMode::Hidden),
        &CancellationToken::new(),
    )
    .await?;
    let elapsed = clock.elapsed();

    let (failed, admitted) = report_requests(&emulator.requests(), &summary, elapsed);
    let lowest = report_rate(&admitted, &limits);
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "target: >= 90 % of the allowed rate in every full window: {}",
        met(lowest.is_some_and(|lowest| lowest >= 0.9))
    );
    println!("target: no failed record: {}", met(failed == 0));
    emulator.shutdown().await;
    Ok(())
}

/// Prints the records exported and the requests they took; returns the failed records and
/// when each admitted call-record request arrived.
fn report_requests(
    requests: &[RecordedRequest],
    summary: &RunSummary,
    elapsed: Duration,
) -> (usize, Vec<Duration>) {
    let throttled = requests.iter().filter(|r| r.status == 429).count();
    let admitted: Vec<Duration> = requests
        .iter()
        .filter(|r| r.status != 429 && r.path.contains("/communications/callRecords"))
        .map(|r| r.received)
        .collect();
    let lists = requests
        .iter()
        .filter(|r| r.path.ends_with("/communications/callRecords"))
        .count();
    let records = summary.records_exported;
    let failed = summary.records_rejected.len() + summary.records_not_found.len();
    let per_record = (admitted.len() - lists) as f64 / records as f64;
    println!(
        "records: {records} exported, {failed} failed; {:.1} s, {:.1} records/s",
        elapsed.as_secs_f64(),
        records as f64 / elapsed.as_secs_f64()
    );
    println!(
        "requests: {} admitted ({lists} list pages), {:.2} per record (details + participants + extra pages), \
         {throttled} answered 429",
        admitted.len(),
        per_record
    );
    (failed, admitted)
}

/// Full windows of the limit's length from the first request: the share of the allowed
/// requests each one used.
fn window_shares(admitted: &[Duration], window: Duration, allowed: f64) -> Vec<f64> {
    let (first, last) = (admitted[0], *admitted.last().expect("requests were made"));
    let mut shares = Vec::new();
    let mut start = first;
    while start + window <= last {
        let used = admitted
            .iter()
            .filter(|t| **t >= start && **t < start + window)
            .count();
        shares.push(used as f64 / allowed);
        start += window;
    }
    shares
}

/// Prints the share of the allowed rate each full window used; returns the lowest share,
/// or None when the run fit in one window.
fn report_rate(admitted: &[Duration], limits: &Limits) -> Option<f64> {
    let window = limits.call_records.per;
    let allowed = f64::from(limits.call_records.requests);
    let shares = window_shares(admitted, window, allowed);
    let (first, last) = (admitted[0], *admitted.last().expect("requests were made"));
    let rate = admitted.len() as f64 / (last - first).as_secs_f64();
    let lowest = shares.iter().copied().fold(f64::INFINITY, f64::min);
    if shares.is_empty() {
        println!(
            "allowed rate used: the run ended within one {} s window, so none is full \
             (more DAYS or CALLS_PER_DAY); over the whole run {rate:.1} requests/s",
            window.as_secs()
        );
        return None;
    }
    let shown: Vec<String> = shares
        .iter()
        .map(|s| format!("{:.0} %", s * 100.0))
        .collect();
    println!(
        "allowed rate used, per full {} s window: {}",
        window.as_secs(),
        shown.join(", ")
    );
    let mean = shares.iter().sum::<f64>() / shares.len() as f64;
    println!(
        "mean {:.1} %, lowest {:.1} %; over the whole run {rate:.1} requests/s (allowed on average: {:.1}/s)",
        mean * 100.0,
        lowest * 100.0,
        allowed / window.as_secs_f64()
    );
    Some(lowest)
}
