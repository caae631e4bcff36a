//! The command line: `export`, `emulator` and `schema`, their options and help text.
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
use crate::ddl::{self, Dialect};
use crate::exit::{Exit, Failure};
use crate::graph::{ClientSettings, GraphClient, Secret};
use crate::locations::{self, Overlap};
use crate::pipeline::{self, ExportPlan, RunSummary};
use crate::privacy::Privacy;
use crate::progress::{LogWriter, Progress, ProgressMode};
use crate::redact::redact;
use crate::reflatten::{self, ReflattenPlan};
use crate::schema::{self, TableSchema};
use crate::sink::store::Output;
use crate::state::{self, ExportState};
use crate::streams::StreamKind;
use crate::window::{self, Window};
use callrecords_emulator::{self as emulator, EmulatorConfig};
use tokio_util::sync::CancellationToken;

const EXPORT_EXAMPLES: &str = "\
Examples:
  # Try it without a tenant: export the last days from the embedded Graph emulator
  callrecords-etl export --emulator --out ./lake

  # Nightly run against a real tenant (the secret comes from the environment)
  CALLRECORDS_CLIENT_SECRET=... callrecords-etl export --config /etc/callrecords-etl.toml

  # Re-export a date range by hand (from inclusive, to exclusive)
  callrecords-etl export --config etl.toml --from 2026-11-20 --to 2026-11-23";

const SCHEMA_EXAMPLES: &str = "\
Examples:
  # The declared tables and columns, for people; or the declarations as JSON
  callrecords-etl schema
  callrecords-etl schema --table call_media_streams --format json

  # Register the lake in Databricks (Unity Catalog external location) or Spark
  callrecords-etl schema --ddl spark --location abfss://lake@acct.dfs.core.windows.net/teams > teams.sql

  # Trino, Athena, Synapse serverless SQL
  callrecords-etl schema --ddl trino --location s3://bucket/teams
  callrecords-etl schema --ddl athena --location s3://bucket/teams
  callrecords-etl schema --ddl synapse --location https://acct.dfs.core.windows.net/lake/teams

  # Query a local export with DuckDB
  callrecords-etl schema --ddl duckdb --location \"$PWD/lake\" | duckdb lake.duckdb

Without --location the SQL holds the placeholder <lake-root>, to replace with the lake root.";

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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ApiVersion {
    #[value(name = "v1.0")]
    V1,
    Beta,
}

impl ApiVersion {
    fn name(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1.0",
            ApiVersion::Beta => "beta",
        }
    }
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
    /// Check a configuration before the first export: validate it, sign in, and make one
    /// cheap request per stream, saying in plain words what is wrong and how to fix it.
    #[command(after_help = "Examples:\n  \
        CALLRECORDS_CLIENT_SECRET=... callrecords-etl check --config /etc/callrecords/etl.toml\n  \
        callrecords-etl check --emulator\n\n\
        Exit codes: 0 every check passed; 1 a check failed (see the ✗ lines); 2 the configuration is invalid.")]
    Check(CheckArgs),
    /// Print the declared tables, or the SQL that registers the lake in a query engine.
    #[command(after_help = format!("{SCHEMA_EXAMPLES}\n\n{}", crate::exit::HELP))]
    Schema(SchemaArgs),
    /// Rebuild the tables from a raw landing zone (see [raw] and --raw), without calling Graph.
    #[command(after_help = format!("{REFLATTEN_EXAMPLES}\n\n{}", crate::exit::HELP))]
    Reflatten(ReflattenArgs),
}

const REFLATTEN_EXAMPLES: &str = "\
Examples:
  # Rebuild every table the raw zone holds data for
  callrecords-etl reflatten --raw ./raw --out ./lake

  # Rebuild the call tables of three days (objects placed by their own start time)
  callrecords-etl reflatten --raw ./raw --out ./lake --from 2026-11-20 --to 2026-11-23 --streams call_records

  # Rebuild with the export's privacy modes (the hashing key from its salt_env variable)
  callrecords-etl reflatten --raw ./raw --out ./lake --config /etc/callrecords/etl.toml

  # Rebuild a lake on S3 from its raw zone there ([output.options] of the config apply)
  callrecords-etl reflatten --raw s3://bucket/teams-raw --out s3://bucket/teams --config /etc/callrecords/etl.toml

Reads <raw>/<stream>/dt=*/ files (*.jsonl, *.jsonl.zst, *.jsonl.gz); a folder without stream
folders, or a single local file, is read as call records. On an object store, a partition with a
_SUCCESS marker gives only the files the marker names.";

#[derive(Debug, Args)]
struct ReflattenArgs {
    /// The raw zone's root, a folder of raw files, or one raw file (of call records): a
    /// path, or an object-store URL (s3://, az://, abfss://, gs://) of any of these.
    #[arg(long, value_name = "PATH|URL")]
    raw: String,
    /// The lake: a folder, or an object-store URL (s3://, az://, abfss://, gs://).
    #[arg(long, value_name = "PATH|URL")]
    out: String,
    /// Only objects starting at or after this UTC date or time; with --to, the window's
    /// partitions are replaced (also by empty ones).
    #[arg(long, value_name = "DATE|TIME", value_parser = parse_bound, requires = "to")]
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only objects starting before this UTC date or time (exclusive).
    #[arg(long, value_name = "DATE|TIME", value_parser = parse_bound, requires = "from")]
    to: Option<chrono::DateTime<chrono::Utc>>,
    /// Streams to rebuild, comma-separated. Default: every stream the raw zone holds.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    streams: Option<Vec<String>>,
    /// Parse-and-flatten threads. Default: the number of cores.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,
    /// The export's configuration file: its [privacy] modes apply to the rebuilt tables, as
    /// they did when the export wrote them, and its [output.options] to object-store
    /// locations (nothing else of it is used). Without it, personal data is written as read.
    #[arg(long, value_name = "FILE", env = "CALLRECORDS_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ExportArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Start of the window, inclusive: a UTC date (2026-11-20 = midnight) or an RFC 3339 time.
    /// Default: the nightly window, the last [export] lookback_days (3) days ending today
    /// 00:00 UTC, reaching back to the last complete run after missed nights.
    #[arg(long, value_name = "DATE|TIME", value_parser = parse_bound)]
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// End of the window, exclusive: a UTC date or an RFC 3339 time. Default: today 00:00 UTC.
    #[arg(long, value_name = "DATE|TIME", value_parser = parse_bound)]
    to: Option<chrono::DateTime<chrono::Utc>>,
    /// Output folder or object-store URL (s3://bucket/prefix, az://container/prefix,
    /// abfss://container@account.dfs.core.windows.net/prefix, gs://bucket/prefix);
    /// overrides [output] path.
    #[arg(long, value_name = "PATH|URL")]
    out: Option<String>,
    /// Streams to export, comma-separated: call_records, pstn_calls, direct_routing_calls, and
    /// with the beta API sms_logs, pstn_blocked_users, pstn_online_meeting_dialouts.
    /// Default: every stream the API version offers.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    streams: Option<Vec<String>>,
    /// Graph API version; overrides [graph] api_version. beta adds the beta-only log streams
    /// and properties.
    #[arg(long, value_enum, value_name = "VERSION")]
    api_version: Option<ApiVersion>,
    /// Call records fetched at the same time; overrides [export] concurrency.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: Option<u16>,
    /// Also write what Graph returned into this raw landing zone (a folder, or an
    /// object-store URL like --out); overrides [raw] path.
    #[arg(long, value_name = "PATH|URL")]
    raw: Option<PathBuf>,
    /// Refetch every listed call record, also those whose version the lake already holds.
    #[arg(long)]
    full: bool,
    /// Print the plan (window, chunks, partitions that would be replaced, estimated
    /// requests) and exit, without fetching or writing anything.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Streams to check (default: every stream the API version offers).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    streams: Option<Vec<String>>,
    /// Graph API version; overrides [graph] api_version.
    #[arg(long, value_enum, value_name = "VERSION")]
    api_version: Option<ApiVersion>,
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
    #[arg(long, default_value_t = emulator::DEFAULT_CALLS_PER_DAY)]
    calls_per_day: u32,
    /// PSTN and Direct Routing log rows per UTC day (SMS and blocked users follow from it).
    #[arg(long, default_value_t = emulator::DEFAULT_LOG_ROWS_PER_DAY)]
    log_rows_per_day: u32,
    /// Lifetime of the access tokens it issues, in seconds (short ones test token refresh).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    token_lifetime: u64,
    /// Measuring one huge record: every day's large meeting gets this many participants,
    /// each with a session (3,000 make a record of about 10 MB).
    #[arg(long, value_name = "N", hide = true)]
    large_meeting_attendees: Option<u32>,
    #[command(flatten)]
    faults: FaultArgs,
}

/// Fault injection of the embedded emulator (for testing pipelines against a hostile Graph).
#[derive(Debug, Args)]
struct FaultArgs {
    /// Inject faults, seeded and reproducible: a comma list such as
    /// "seed=7,throttle=0.2,5xx=0.1,drop=0.05,slow=0.1,slow_delay=250ms,truncate=0.05,corrupt=0.01,token=0.1,retry_after=1"
    /// (rates are fractions of requests; corrupt is a fraction of call records whose
    /// responses are always broken).
    #[arg(long, value_name = "SPEC", value_parser = parse_faults)]
    faults: Option<emulator::Faults>,
    /// Enforce Graph's documented throttling limits (429 with Retry-After when exceeded).
    #[arg(long)]
    enforce_limits: bool,
}

impl FaultArgs {
    fn apply(&self, config: &mut EmulatorConfig) {
        if let Some(faults) = &self.faults {
            config.faults = faults.clone();
        }
        config.enforce_limits = self.enforce_limits;
    }
}

fn parse_faults(spec: &str) -> Result<emulator::Faults, String> {
    emulator::Faults::parse(spec).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
struct SchemaArgs {
    /// Only this table (default: every table).
    #[arg(long, value_name = "TABLE")]
    table: Option<String>,
    /// Print the CREATE statements for this engine instead of the listing:
    /// spark (also Databricks, Fabric Spark), athena, trino (Hive connector), duckdb,
    /// synapse (serverless SQL pool).
    #[arg(
        long,
        value_name = "DIALECT",
        value_parser = clap::builder::TypedValueParser::map(
            clap::builder::PossibleValuesParser::new(Dialect::ALL.map(Dialect::name)),
            |name| name.parse::<Dialect>().expect("a listed dialect")
        )
    )]
    ddl: Option<Dialect>,
    /// Lake root in the SQL: the folder that holds <table>/dt=.../, as a path or URL
    /// (s3://bucket/teams, abfss://lake@acct.dfs.core.windows.net/teams).
    /// Default: the placeholder <lake-root>.
    #[arg(long, value_name = "PATH|URL", requires = "ddl")]
    location: Option<String>,
    /// Listing format: text for people, or json: the declarations as in schemas/*.json
    /// (one object with --table, else an array).
    #[arg(long, value_enum, default_value_t = ListFormat::Text, conflicts_with = "ddl")]
    format: ListFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ListFormat {
    Text,
    Json,
}

fn parse_bound(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    window::parse_bound(text).map_err(|e| e.to_string())
}

/// The process entry point: parse, run, map the outcome to an exit code.
pub fn main() -> ExitCode {
    // Tests configure the commit's failure points through FAILPOINTS (see `commit::step!`).
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
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
    let reporting = Reporting {
        quiet: cli.quiet,
        json: matches!(cli.log_format, LogFormat::Json),
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Export(args) => run_export(args, reporting).await,
            Command::Emulator(args) => run_emulator(args).await,
            Command::Check(args) => run_check(args).await,
            Command::Schema(args) => run_schema(args),
            Command::Reflatten(args) => run_reflatten(args, reporting.quiet).await,
        }
    });
    match outcome {
        Ok(exit) => exit.into(),
        Err(error) => {
            let exit = exit_code_of(&error);
            tracing::error!("{}", redact(&describe(&error), &[]));
            exit.into()
        }
    }
}

/// `error` and its causes, joined by `: ` like `{:#}`, leaving out a cause whose message the
/// text before it already holds: many error types (ours, `object_store`'s, `reqwest`'s) say
/// their source in their own message and also return it as `source()`.
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

/// The exit code an error stands for: usage and config errors are 2, the rest 1.
fn exit_code_of(error: &anyhow::Error) -> Exit {
    // A `Failure` attached as context is only found by downcasting the error itself.
    if let Some(failure) = error.downcast_ref::<Failure>() {
        return failure.exit;
    }
    for cause in error.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return failure.exit;
        }
        if cause.downcast_ref::<config::ConfigError>().is_some()
            || cause.downcast_ref::<window::WindowError>().is_some()
        {
            return Exit::Usage;
        }
        match cause.downcast_ref::<state::StateError>() {
            Some(state::StateError::Locked { .. }) => return Exit::Locked,
            // Found before any request; the message says what to do.
            Some(state::StateError::Damaged { .. }) => return Exit::Usage,
            _ => {}
        }
        if let Some(
            crate::commit::CommitError::Damaged { .. }
            | crate::commit::CommitError::UnknownZone { .. },
        ) = cause.downcast_ref::<crate::commit::CommitError>()
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

/// Resolves the streams to export: by default every stream the API version offers; a
/// beta-only stream on v1.0 is refused, never skipped.
fn resolve_streams(
    requested: Option<Vec<String>>,
    api_version: &str,
) -> Result<Vec<StreamKind>, Failure> {
    let beta = api_version == "beta";
    let Some(names) = requested else {
        return Ok(StreamKind::ALL
            .into_iter()
            .filter(|s| beta || !s.beta_only())
            .collect());
    };
    let mut streams = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let stream: StreamKind = name
            .parse()
            .map_err(|e: crate::streams::UnknownStream| Failure::usage(e.to_string()))?;
        if stream.beta_only() && !beta {
            return Err(Failure::usage(format!(
                "--streams {name}: Graph offers this log only on its beta endpoint; set [graph] api_version = \"beta\" \
                 (or pass --api-version beta) to export it"
            )));
        }
        if !streams.contains(&stream) {
            streams.push(stream);
        }
    }
    if streams.is_empty() {
        return Err(Failure::usage(
            "--streams is empty: name at least one stream",
        ));
    }
    Ok(streams)
}

/// How the run talks to the operator.
#[derive(Debug, Clone, Copy)]
struct Reporting {
    /// No progress.
    quiet: bool,
    /// Log collectors read stderr: the summary is one JSON log event, not a table.
    json: bool,
}

async fn run_export(args: ExportArgs, reporting: Reporting) -> anyhow::Result<Exit> {
    let requested_window = match (args.from, args.to) {
        (None, None) => None,
        (Some(from), None) => Some(Window::new(
            from,
            window::midnight(chrono::Utc::now().date_naive()),
        )?),
        (None, Some(to)) => Some(Window::new(
            window::midnight(to.date_naive()) - chrono::Duration::days(1),
            to,
        )?),
        (Some(from), Some(to)) => Some(Window::new(from, to)?),
    };
    // A dry run reads the settings only: no emulator, no token, no request.
    let (mut settings, running_emulator) = args.source.connect(!args.dry_run).await?;
    if let Some(version) = args.api_version {
        settings.graph.api_version = version.name().into();
    }
    let streams = resolve_streams(args.streams, &settings.graph.api_version)?;
    let out = args.out.unwrap_or(settings.output);
    let output = Output::parse(&out, &settings.output_options)
        .map_err(|error| Failure::usage(error.to_string()))?;
    let raw_location = args.raw.or(settings.raw);
    let raw = raw_location
        .as_ref()
        .map(|raw| Output::parse(&raw.to_string_lossy(), &settings.output_options))
        .transpose()
        .map_err(|error| Failure::usage(format!("[raw] path: {error}")))?;
    if let Some(raw) = &raw_location {
        check_apart(
            (&raw.to_string_lossy(), "--raw or [raw] path"),
            (&out, "--out or [output] path"),
        )?;
    }
    if raw.is_some() {
        config::check_raw_privacy(&settings.privacy, settings.raw_allows_personal_data)
            .map_err(Failure::usage)?;
    }
    let window = match requested_window {
        Some(window) => window,
        None => {
            let state = ExportState::load_from(&output).await?;
            let names: Vec<&str> = streams.iter().map(|s| s.name()).collect();
            let nightly =
                state::plan_nightly(&state, &names, chrono::Utc::now(), settings.lookback_days);
            for warning in &nightly.warnings {
                tracing::warn!("{warning}.");
            }
            nightly.window
        }
    }
    .check_length(settings.max_window_days)?;
    let plan = ExportPlan {
        window,
        streams,
        output,
        concurrency: args
            .concurrency
            .map(usize::from)
            .unwrap_or(settings.concurrency),
        api_version: settings.graph.api_version.clone(),
        log_chunk_days: settings.log_chunk_days,
        privacy: settings.privacy,
        raw,
        full: args.full,
    };
    if args.dry_run {
        print!("{}", describe_plan(&plan));
        return Ok(Exit::Success);
    }
    let client = GraphClient::new(settings.graph).context("cannot set up the Graph client")?;
    let progress = Progress::new(if reporting.quiet {
        ProgressMode::Hidden
    } else {
        ProgressMode::Auto
    });
    let cancel = CancellationToken::new();
    let signal = tokio::spawn(stop_on_signal(cancel.clone()));
    let summary = pipeline::export(&client, &plan, &progress, &cancel).await;
    if let Some(running) = running_emulator {
        running.shutdown().await;
    }
    let summary = match summary {
        Ok(summary) => summary,
        Err(error) if error.downcast_ref::<pipeline::Cancelled>().is_some() => {
            let exit = signal.await.unwrap_or(Exit::Interrupted);
            return Err(error.context(Failure {
                exit,
                message: "stopped by a signal".into(),
            }));
        }
        Err(error) => return Err(error),
    };
    signal.abort();
    if reporting.json {
        let summary = serde_json::to_string(&summary).expect("the summary serializes");
        tracing::info!(summary = %summary, "Export finished.");
    } else {
        eprint!("{}", describe_summary(&summary, &plan));
    }
    Ok(if summary.records_rejected.is_empty() {
        Exit::Success
    } else {
        Exit::Rejected
    })
}

/// Where the data comes from: a configured tenant, or the embedded emulator.
#[derive(Debug, Args)]
struct SourceArgs {
    /// Configuration file (TOML; see config.example.toml).
    #[arg(long, env = "CALLRECORDS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Use the embedded Graph emulator (a synthetic tenant on a loopback port): no
    /// configuration or credentials needed.
    #[arg(long, conflicts_with = "config")]
    emulator: bool,
    #[command(flatten, next_help_heading = "Emulator faults (with --emulator)")]
    emulator_faults: FaultArgs,
}

impl SourceArgs {
    /// The settings, and the running emulator when it is the source (it stops when dropped).
    /// `start_emulator = false` gives the emulator's settings without starting it.
    async fn connect(
        &self,
        start_emulator: bool,
    ) -> anyhow::Result<(Settings, Option<emulator::RunningEmulator>)> {
        if !self.emulator {
            if self.emulator_faults.faults.is_some() || self.emulator_faults.enforce_limits {
                return Err(Failure::usage(
                    "--faults and --enforce-limits apply to the embedded emulator: add --emulator",
                )
                .into());
            }
            let path = self.config.as_ref().ok_or_else(|| {
                Failure::usage(
                    "no configuration: pass --config FILE (see config.example.toml), set CALLRECORDS_CONFIG, \
                     or try --emulator to use the embedded Graph emulator",
                )
            })?;
            return Ok((config::load(path, |name| std::env::var(name).ok())?, None));
        }
        let mut config = EmulatorConfig::default();
        self.emulator_faults.apply(&mut config);
        if !start_emulator {
            let url = url::Url::parse("http://127.0.0.1:0").expect("a valid URL");
            return Ok((emulator_settings(&config, url), None));
        }
        let running = emulator::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("cannot start the embedded Graph emulator")?;
        tracing::info!(url = %running.base_url(), "Embedded Graph emulator started.");
        let url = url::Url::parse(&running.base_url()).context("the emulator's URL")?;
        Ok((emulator_settings(running.config(), url), Some(running)))
    }
}

/// `check`: configuration, sign-in, then one cheap request per stream; each step prints a
/// ✓ or ✗ line on stdout, the ✗ lines saying what to do.
async fn run_check(args: CheckArgs) -> anyhow::Result<Exit> {
    let (mut settings, _emulator) = match args.source.connect(true).await {
        Ok(connected) => connected,
        Err(error) => {
            println!("✗ configuration: {}", redact(&describe(&error), &[]));
            return Err(error);
        }
    };
    if let Some(version) = args.api_version {
        settings.graph.api_version = version.name().into();
    }
    let streams = resolve_streams(args.streams, &settings.graph.api_version)?;
    let graph = &settings.graph;
    println!(
        "✓ configuration: tenant {}, application {}, Graph {} ({}), sign-in at {}",
        graph.tenant_id, graph.client_id, graph.graph_url, graph.api_version, graph.login_url
    );
    let client = GraphClient::new(settings.graph).context("cannot set up the Graph client")?;
    if let Err(error) = client.authenticate().await {
        println!("✗ sign-in: {}", redact(&error.to_string(), &[]));
        println!("  {}", check_advice(&error));
        return Ok(Exit::Failure);
    }
    println!("✓ sign-in: Entra ID issued an access token for the application");
    let now = chrono::Utc::now();
    let mut failed = false;
    for stream in streams {
        let outcome = match stream.log() {
            None => {
                let hour = Window {
                    from: now - chrono::Duration::hours(1),
                    to: now,
                };
                let mut pages = std::pin::pin!(crate::streams::call_records::list(
                    &client, hour.from, hour.to
                ));
                futures::StreamExt::next(&mut pages)
                    .await
                    .transpose()
                    .map(|page| {
                        format!(
                            "listed {} call records of the last hour",
                            page.map_or(0, |p| p.len())
                        )
                    })
            }
            Some(log) => {
                let day = Window::yesterday(now);
                let url = crate::streams::logs::request_url(&client, log, day);
                let mut pages = std::pin::pin!(crate::streams::logs::pages(&client, url));
                futures::StreamExt::next(&mut pages)
                    .await
                    .transpose()
                    .map(|page| {
                        format!(
                            "{} answered with {} rows of yesterday",
                            log.function,
                            page.map_or(0, |p| p.len())
                        )
                    })
            }
        };
        match outcome {
            Ok(what) => println!("✓ {stream}: {what}"),
            Err(error) => {
                failed = true;
                println!("✗ {stream}: {}", redact(&error.to_string(), &[]));
                println!("  {}", check_advice(&error));
            }
        }
    }
    Ok(if failed { Exit::Failure } else { Exit::Success })
}

/// What to do about a failed check, in plain words.
fn check_advice(error: &crate::graph::GraphError) -> String {
    use crate::graph::GraphError;
    match error {
        GraphError::Token { .. } => {
            "Fix the credentials or the tenant named above: in the Entra admin center, App registrations > \
             your app > Overview shows the Directory (tenant) ID and Application (client) ID; a new secret is \
             made under Certificates & secrets."
                .into()
        }
        GraphError::Forbidden { .. } => {
            "In the Entra admin center: App registrations > your app > API permissions > Add a permission > \
             Microsoft Graph > Application permissions > CallRecords.Read.All, then \"Grant admin consent\" \
             (a Global or Privileged Role Administrator must do this). Consent can take a few minutes to apply."
                .into()
        }
        GraphError::Unauthorized { .. } => {
            "The token was refused: check that tenant_id is the tenant where the app is registered and consented.".into()
        }
        GraphError::Transport { url, .. } => format!(
            "{} cannot be reached from here: check the network, DNS, a proxy (HTTPS_PROXY) or firewall, and \
             [graph] graph_url / login_url (or cloud).",
            url.host_str().unwrap_or("the host")
        ),
        GraphError::Throttled { .. } => "Graph is throttling this application; try again in a few minutes.".into(),
        GraphError::BadRequest { .. } => {
            "Graph refused the request: check [graph] api_version (the beta-only logs need \"beta\").".into()
        }
        _ => "See the message above; run with -vv for the requests made.".into(),
    }
}

/// Waits for SIGINT or SIGTERM, asks the run to stop, and tells which one came.
async fn stop_on_signal(cancel: CancellationToken) -> Exit {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers the default action (end the process) still applies.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let exit = tokio::select! {
        _ = interrupt.recv() => Exit::Interrupted,
        _ = terminate.recv() => Exit::Terminated,
    };
    tracing::warn!("Stopping: no further requests are made and nothing partial is published.");
    cancel.cancel();
    exit
}

/// Settings that point at the embedded emulator at `url`, with its credentials.
fn emulator_settings(config: &EmulatorConfig, url: url::Url) -> Settings {
    Settings {
        graph: ClientSettings::new(
            url.clone(),
            url,
            config.tenant_id.clone(),
            config.client_id.clone(),
            Secret::new(config.client_secret.clone()),
        ),
        output: config::DEFAULT_OUTPUT_PATH.into(),
        output_options: Default::default(),
        concurrency: config::DEFAULT_CONCURRENCY,
        lookback_days: config::DEFAULT_LOOKBACK_DAYS,
        log_chunk_days: config::DEFAULT_LOG_CHUNK_DAYS,
        max_window_days: config::DEFAULT_MAX_WINDOW_DAYS,
        privacy: Privacy::default(),
        raw: None,
        raw_allows_personal_data: false,
    }
}

async fn run_emulator(args: EmulatorArgs) -> anyhow::Result<Exit> {
    let mut config = EmulatorConfig {
        seed: args.seed,
        calls_per_day: args.calls_per_day,
        log_rows_per_day: args.log_rows_per_day,
        token_lifetime: std::time::Duration::from_secs(args.token_lifetime),
        large_meeting_attendees: args.large_meeting_attendees,
        ..EmulatorConfig::default()
    };
    args.faults.apply(&mut config);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    emulator::serve_until_shutdown(config, args.listen, shutdown)
        .await
        .map_err(|error| match error {
            emulator::StartError::NotLoopback(_) => {
                anyhow::Error::new(Failure::usage(error.to_string()))
            }
            error => anyhow::Error::new(error),
        })?;
    Ok(Exit::Success)
}

fn run_schema(args: SchemaArgs) -> anyhow::Result<Exit> {
    let tables: Vec<&TableSchema> = match &args.table {
        None => schema::tables().iter().collect(),
        Some(name) => vec![schema::table(name).ok_or_else(|| {
            let names: Vec<&str> = schema::tables().iter().map(|t| t.table.as_str()).collect();
            Failure::usage(format!(
                "--table {name}: no such table; the tables are: {}",
                names.join(", ")
            ))
        })?],
    };
    let text = match (args.ddl, args.format) {
        (Some(dialect), _) => {
            let location = args
                .location
                .as_deref()
                .unwrap_or(ddl::LOCATION_PLACEHOLDER);
            if location == ddl::LOCATION_PLACEHOLDER {
                tracing::warn!(
                    "The SQL locates the lake at the placeholder {location}: replace it, or pass --location."
                );
            }
            ddl::script(dialect, &tables, location)
        }
        (None, ListFormat::Text) => ddl::listing(&tables),
        (None, ListFormat::Json) => {
            let texts: Vec<&str> = tables
                .iter()
                .map(|t| schema::declaration(&t.table).expect("every table is declared"))
                .map(str::trim_end)
                .collect();
            if args.table.is_some() {
                format!("{}\n", texts[0])
            } else {
                format!("[\n{}\n]\n", texts.join(",\n"))
            }
        }
    };
    let mut stdout = std::io::stdout().lock();
    match std::io::Write::write_all(&mut stdout, text.as_bytes()) {
        // A reader that stopped early (`| head`) is not a failure of ours.
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(error).context("cannot write to stdout"))
        }
        _ => Ok(Exit::Success),
    }
}

async fn run_reflatten(args: ReflattenArgs, quiet: bool) -> anyhow::Result<Exit> {
    let window = match (args.from, args.to) {
        (Some(from), Some(to)) => Some(Window::new(from, to)?),
        _ => None,
    };
    let streams = match args.streams {
        Some(names) => Some(resolve_streams(Some(names), "beta")?),
        None => None,
    };
    let workers = args.workers.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    // The raw zone holds what Graph sent; rebuilt tables protect it as the export did.
    let settings = match &args.config {
        Some(path) => config::load_for_reflatten(path, |name| std::env::var(name).ok())?,
        None => config::ReflattenSettings::default(),
    };
    if let Some(window) = window {
        window.check_length(settings.max_window_days)?;
    }
    // The options are the export's lake's; a local copy (of the raw zone, say) takes none.
    let no_options = std::collections::BTreeMap::new();
    let location = |flag: &str, location: &str| {
        let options = match location.contains("://") {
            true => &settings.output_options,
            false => &no_options,
        };
        Output::parse(location, options).map_err(|error| Failure::usage(format!("{flag}: {error}")))
    };
    check_apart((&args.raw, "--raw"), (&args.out, "--out"))?;
    let plan = ReflattenPlan {
        raw: location("--raw", &args.raw)?,
        output: location("--out", &args.out)?,
        window,
        streams,
        privacy: settings.privacy,
        workers,
    };
    let summary = reflatten::reflatten(&plan).await?;
    if !quiet {
        let mut text = format!(
            "Rebuilt {} objects ({:.1} MB of JSON in {} files) into {} in {:.2} s (run {}).\n",
            summary.objects,
            summary.input_bytes as f64 / 1e6,
            summary.input_files,
            plan.output,
            summary.elapsed_seconds,
            summary.run_id
        );
        for (table, totals) in &summary.tables {
            text.push_str(&format!(
                "  {:<24} {:>10} {:>6} {:>12}\n",
                table, totals.rows, totals.files, totals.bytes
            ));
        }
        text.push_str(&format!(
            "  partitions replaced: {}\n  left out (outside the window): {}\n",
            summary.partitions_replaced.len(),
            summary.objects_outside_window
        ));
        eprint!("{text}");
    }
    Ok(Exit::Success)
}

/// The raw zone (or raw input) and the lake must be apart: a run replaces partitions and
/// removes stale staging under its output, which must not touch the raw files, and the
/// reverse. Each is `(location, the flag or key that set it)`.
fn check_apart(raw: (&str, &str), out: (&str, &str)) -> Result<(), Failure> {
    let relation = match locations::overlap(raw.0, out.0) {
        None => return Ok(()),
        Some(Overlap::Same) => "is the same folder as",
        Some(Overlap::Inside) => "lies inside",
        Some(Overlap::Contains) => "contains",
    };
    Err(Failure::usage(format!(
        "the raw zone {} ({}) {relation} the output {} ({}): use separate folders, neither \
         inside the other (such as ./raw and ./lake)",
        raw.0, raw.1, out.0, out.1
    )))
}

/// What a dry run prints: the plan, without fetching or writing anything.
fn describe_plan(plan: &ExportPlan) -> String {
    let stream_windows = pipeline::stream_windows(plan, chrono::Utc::now());
    let partitions = pipeline::partitions_to_replace(&stream_windows);
    let mut text = format!(
        "Dry run: nothing is fetched or written.\n  window: {}\n  output: {}\n  API version: {}\n  streams:\n",
        plan.window, plan.output, plan.api_version
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
                "    {:<30} {window}: 1 list request per 60 call records, then 2 per record \
                 (details, participants) plus 1 per further 60 sessions or 130 participants\n",
                stream.name()
            )),
            Some(log) => {
                let chunks = log.chunks(*window, plan.log_chunk_days);
                text.push_str(&format!(
                    "    {:<30} {window}: {} request(s) of {}, 1 more per 1,000 rows\n",
                    stream.name(),
                    chunks.len(),
                    log.function
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
fn describe_summary(summary: &RunSummary, plan: &ExportPlan) -> String {
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
    for (table, totals) in &summary.tables {
        text.push_str(&format!(
            "  {:<30} {:>10} {:>6} {:>12}\n",
            table, totals.rows, totals.files, totals.bytes
        ));
    }
    let requests = &summary.requests;
    text.push_str(&format!(
        "  partitions replaced: {}\n  requests: {} ({} retries, {} throttled with 429, {:.1} s waited on retries, \
         {:.1} s paced under Graph's limits)\n",
        summary.partitions_replaced.len(),
        requests.requests,
        requests.retries,
        requests.throttled,
        requests.throttle_wait_ms as f64 / 1000.0,
        requests.paced_wait_ms as f64 / 1000.0
    ));
    text.push_str(&format!(
        "  records skipped (404): {}{}\n",
        summary.records_not_found.len(),
        list(&mut summary.records_not_found.iter().map(String::as_str))
    ));
    text.push_str(&format!(
        "  records rejected (quarantined in {}): {}{}\n",
        plan.output
            .display_path(&format!("{}/{}", pipeline::REJECTED_DIR, summary.run_id)),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that, like many, says its source in its own message and returns it too.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot list /lake: {source}")]
    struct Listing {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_the_message_already_says_is_not_repeated() {
        let error = anyhow::Error::new(Listing {
            source: std::io::Error::other("No such file or directory"),
        })
        .context("cannot read the raw zone");
        assert_eq!(
            format!("{error:#}"),
            "cannot read the raw zone: cannot list /lake: No such file or directory: No such file or directory"
        );
        assert_eq!(
            describe(&error),
            "cannot read the raw zone: cannot list /lake: No such file or directory"
        );
        let distinct = anyhow::anyhow!("disk full").context("cannot write part-1.parquet");
        assert_eq!(
            describe(&distinct),
            "cannot write part-1.parquet: disk full"
        );
    }
}
