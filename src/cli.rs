//! The command line: `export` and `emulator`, their options and help text.
//!
//! Parses arguments (clap), sets up logging, builds the runtime, resolves the arguments
//! into the settings the other modules take, and maps every outcome to a documented
//! exit code ([`crate::exit`]). May touch: process arguments, environment, stderr/stdout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::config::{self, Settings};
use crate::emulator::{self, EmulatorConfig};
use crate::exit::{Exit, Failure};
use crate::graph::{ClientSettings, GraphClient, Secret};
use crate::pipeline::{self, ExportPlan, RunSummary};
use crate::privacy::Privacy;
use crate::progress::{LogWriter, Progress, ProgressMode};
use crate::streams::StreamKind;
use crate::window::{self, Window};

const EXPORT_EXAMPLES: &str = "\
Examples:
  # Try it without a tenant: export yesterday from the embedded Graph emulator
  callrecords-etl export --emulator --out ./lake

  # Nightly run against a real tenant (the secret comes from the environment)
  CALLRECORDS_CLIENT_SECRET=... callrecords-etl export --config /etc/callrecords-etl.toml

  # Re-export a date range by hand (from inclusive, to exclusive)
  callrecords-etl export --config etl.toml --from 2026-11-20 --to 2026-11-23";

#[derive(Debug, Parser)]
#[command(
    name = "callrecords-etl",
    version,
    about = "Export Microsoft Teams call records from Microsoft Graph into Hive-partitioned Parquet tables.",
    after_help = crate::exit::HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only warnings and errors; no progress line.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Log format on stderr: text for people, json (one object per line) for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Export the call records of a UTC window [from, to) into Parquet tables.
    #[command(after_help = format!("{EXPORT_EXAMPLES}\n\n{}", crate::exit::HELP))]
    Export(ExportArgs),
    /// Serve the embedded Microsoft Graph emulator (a synthetic tenant) on a loopback port.
    #[command(
        after_help = "Example:\n  callrecords-etl emulator --listen 127.0.0.1:8080 --seed 7 --calls-per-day 500\n\
        Then point [graph] graph_url and login_url at http://127.0.0.1:8080 and use the tenant id,\n\
        client id and secret it prints."
    )]
    Emulator(EmulatorArgs),
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// Configuration file (TOML; see config.example.toml).
    #[arg(long, env = "CALLRECORDS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Start of the window, inclusive: a UTC date (2026-11-20 = midnight) or an RFC 3339 time.
    /// Default: yesterday 00:00 UTC.
    #[arg(long, value_name = "DATE|TIME", value_parser = parse_bound)]
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// End of the window, exclusive: a UTC date or an RFC 3339 time. Default: today 00:00 UTC.
    #[arg(long, value_name = "DATE|TIME", value_parser = parse_bound)]
    to: Option<chrono::DateTime<chrono::Utc>>,
    /// Output folder; overrides [output] path.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Streams to export, comma-separated: call_records, pstn_calls, direct_routing_calls.
    /// Default: every implemented stream.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    streams: Option<Vec<String>>,
    /// Export from the embedded Graph emulator (a synthetic tenant on a loopback port):
    /// no configuration or credentials needed.
    #[arg(long)]
    emulator: bool,
    /// Call records fetched at the same time; overrides [export] concurrency.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: Option<u16>,
}

#[derive(Debug, Args)]
struct EmulatorArgs {
    /// Loopback address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Seed of the synthetic tenant: the same seed serves the same calls for any date.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Calls per UTC day in the synthetic tenant.
    #[arg(long, default_value_t = 200)]
    calls_per_day: u32,
}

fn parse_bound(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    window::parse_bound(text).map_err(|e| e.to_string())
}

/// The process entry point: parse, run, map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return Exit::Failure.into();
        }
    };
    let quiet = cli.quiet;
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Export(args) => run_export(args, quiet).await,
            Command::Emulator(args) => run_emulator(args).await,
        }
    });
    match outcome {
        Ok(exit) => exit.into(),
        Err(error) => {
            let exit = exit_code_of(&error);
            tracing::error!("{error:#}");
            exit.into()
        }
    }
}

/// The exit code an error stands for: usage and config errors are 2, the rest 1.
fn exit_code_of(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return failure.exit;
        }
        if cause.downcast_ref::<config::ConfigError>().is_some()
            || cause.downcast_ref::<window::WindowError>().is_some()
        {
            return Exit::Usage;
        }
    }
    Exit::Failure
}

fn init_logging(cli: &Cli) {
    let default = if cli.quiet {
        "warn"
    } else {
        match cli.verbose {
            0 => "info",
            1 => "callrecords_etl=debug,info",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter)
        .with_target(false);
    match cli.log_format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Resolves the streams to export; the ones not implemented yet are refused, never skipped.
fn resolve_streams(requested: Option<Vec<String>>) -> Result<Vec<StreamKind>, Failure> {
    let Some(names) = requested else {
        return Ok(vec![StreamKind::CallRecords]);
    };
    let mut streams = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let stream: StreamKind = name
            .parse()
            .map_err(|e: crate::streams::UnknownStream| Failure::usage(e.to_string()))?;
        if stream != StreamKind::CallRecords {
            return Err(Failure::usage(format!(
                "--streams {name}: this stream is not implemented in this version yet; export call_records only"
            )));
        }
        if !streams.contains(&stream) {
            streams.push(stream);
        }
    }
    if streams.is_empty() {
        return Err(Failure::usage(
            "--streams is empty: name at least one stream (call_records)",
        ));
    }
    Ok(streams)
}

async fn run_export(args: ExportArgs, quiet: bool) -> anyhow::Result<Exit> {
    let streams = resolve_streams(args.streams)?;
    let window = match (args.from, args.to) {
        (None, None) => Window::yesterday(chrono::Utc::now()),
        (Some(from), None) => Window::new(from, window::midnight(chrono::Utc::now().date_naive()))?,
        (None, Some(to)) => Window::new(
            window::midnight(to.date_naive()) - chrono::Duration::days(1),
            to,
        )?,
        (Some(from), Some(to)) => Window::new(from, to)?,
    };
    // The emulator must outlive the export; it stops when this guard drops.
    let mut running_emulator = None;
    let settings = if args.emulator {
        if args.config.is_some() {
            return Err(Failure::usage(
                "--emulator and --config exclude each other: the emulator needs no configuration",
            )
            .into());
        }
        let running = emulator::start(
            EmulatorConfig::default(),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .context("cannot start the embedded Graph emulator")?;
        tracing::info!(url = %running.base_url(), "Embedded Graph emulator started.");
        let settings = emulator_settings(&running, args.out.clone())?;
        running_emulator = Some(running);
        settings
    } else {
        let path = args.config.ok_or_else(|| {
            Failure::usage(
                "no configuration: pass --config FILE (see config.example.toml), set CALLRECORDS_CONFIG, \
                 or try --emulator to export from the embedded Graph emulator",
            )
        })?;
        config::load(&path, |name| std::env::var(name).ok())?
    };
    let plan = ExportPlan {
        window,
        streams,
        output: args.out.unwrap_or(settings.output),
        concurrency: args
            .concurrency
            .map(usize::from)
            .unwrap_or(settings.concurrency),
        privacy: settings.privacy,
    };
    let client = GraphClient::new(settings.graph).context("cannot set up the Graph client")?;
    let progress = Progress::new(if quiet {
        ProgressMode::Hidden
    } else {
        ProgressMode::Auto
    });
    let summary = pipeline::export(&client, &plan, &progress).await;
    progress.finish();
    if let Some(running) = running_emulator {
        running.shutdown().await;
    }
    let summary = summary?;
    print_summary(&summary, &plan);
    Ok(Exit::Success)
}

fn emulator_settings(
    running: &emulator::RunningEmulator,
    out: Option<PathBuf>,
) -> anyhow::Result<Settings> {
    let url = url::Url::parse(&running.base_url()).context("the emulator's URL")?;
    let config = running.config();
    Ok(Settings {
        graph: ClientSettings::new(
            url.clone(),
            url,
            config.tenant_id.clone(),
            config.client_id.clone(),
            Secret::new(config.client_secret.clone()),
        ),
        output: out.unwrap_or_else(|| PathBuf::from(config::DEFAULT_OUTPUT_PATH)),
        concurrency: config::DEFAULT_CONCURRENCY,
        privacy: Privacy::default(),
    })
}

async fn run_emulator(args: EmulatorArgs) -> anyhow::Result<Exit> {
    let config = EmulatorConfig {
        seed: args.seed,
        calls_per_day: args.calls_per_day,
        ..EmulatorConfig::default()
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    emulator::serve_until_shutdown(config, args.listen, shutdown)
        .await
        .map_err(|error| {
            if error.to_string().contains("loopback") {
                anyhow::Error::new(Failure::usage(format!("{error:#}")))
            } else {
                error
            }
        })?;
    Ok(Exit::Success)
}

/// The closing summary on stderr (the same figures are in the run manifest).
fn print_summary(summary: &RunSummary, plan: &ExportPlan) {
    let mut text = format!(
        "Exported {} call records of {} into {} in {:.1} s (run {}).\n",
        summary.records_exported,
        plan.window,
        plan.output.display(),
        summary.elapsed_seconds,
        summary.run_id
    );
    text.push_str(&format!(
        "  {:<24} {:>10} {:>6} {:>12}\n",
        "table", "rows", "files", "bytes"
    ));
    for (table, totals) in &summary.tables {
        text.push_str(&format!(
            "  {:<24} {:>10} {:>6} {:>12}\n",
            table, totals.rows, totals.files, totals.bytes
        ));
    }
    let requests = &summary.requests;
    text.push_str(&format!(
        "  partitions replaced: {}\n  requests: {} ({} retries, {} throttled with 429, {:.1} s waited)\n",
        summary.partitions_replaced.len(),
        requests.requests,
        requests.retries,
        requests.throttled,
        requests.throttle_wait_ms as f64 / 1000.0
    ));
    text.push_str(&format!(
        "  records skipped (404): {}{}\n  values written as null (unreadable): {}\n  manifest: {}\n",
        summary.records_not_found.len(),
        if summary.records_not_found.is_empty() {
            String::new()
        } else {
            format!(" ({})", summary.records_not_found.join(", "))
        },
        summary.value_issues,
        plan.output.join("_manifests").join(format!("{}.json", summary.run_id)).display()
    ));
    eprint!("{text}");
}
