//! The command line: `export`, `emulator` and `schema`, their options and help text.
//!
//! Parses arguments (clap), sets up logging, builds the runtime, hands the overrides to
//! [`crate::config`] to resolve, calls the modules that do the work ([`crate::export`],
//! [`crate::reflatten`], [`crate::check`], [`crate::ddl`]), prints what [`crate::report`]
//! renders, and maps every outcome to a documented exit code ([`crate::exit`]).
//! May touch: process arguments, environment, stderr/stdout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{self, ExportSettings, Overrides, Settings};
use crate::ddl::{self, Dialect};
use crate::exit::{Exit, Failure};
use crate::export::{self, ExportPlan};
use crate::graph::{ApiVersion, ClientSettings, GraphClient, Secret};
use crate::progress::{LogWriter, Progress, ProgressMode};
use crate::redact::redact;
use crate::reflatten::{self, ReflattenPlan};
use crate::schema::{self, TableSchema};
use crate::state::{self, ExportState};
use crate::window::{self, Window};
use crate::{check, report};
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

  # Register the lake in Databricks (Unity Catalog external location) or Spark; --lake reads
  # it (credentials from the environment) to register only the tables that hold data
  callrecords-etl schema --ddl spark --location abfss://lake@acct.dfs.core.windows.net/teams \\
    --lake az://lake/teams > teams.sql

  # Trino, Athena, Synapse serverless SQL
  callrecords-etl schema --ddl trino --location s3://bucket/teams
  callrecords-etl schema --ddl athena --location s3://bucket/teams
  callrecords-etl schema --ddl synapse --location https://acct.dfs.core.windows.net/lake/teams

  # Query a local export with DuckDB
  callrecords-etl schema --ddl duckdb --location \"$PWD/lake\" | duckdb lake.duckdb

Without --location the SQL holds the placeholder <lake-root>, to replace with the lake root.
Only tables that hold data are registered (the lake is read from --lake, or from a local
--location); without a lake to read, the tables of --api-version's streams (default v1.0).
The script names the tables it leaves out, and why. Athena, Trino and Synapse need a URL.";

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
    /// Housekeeping of a lake of Delta tables (--format delta): vacuum the data files that
    /// runs replaced longer ago than the retention.
    #[command(after_help = format!("{MAINTAIN_EXAMPLES}\n\n{}", crate::exit::HELP))]
    Maintain(MaintainArgs),
}

const MAINTAIN_EXAMPLES: &str = "\
Examples:
  # Delete the files replaced more than a week ago (Delta's default retention)
  callrecords-etl maintain --config /etc/callrecords/etl.toml

  # See what a 30-day retention would delete
  callrecords-etl maintain --out s3://bucket/teams --vacuum-hours 720 --dry-run";

#[derive(Debug, Args)]
struct MaintainArgs {
    /// The export's configuration file: its [output] path and [output.options] (nothing
    /// else of it is used).
    #[arg(long, value_name = "FILE", env = "CALLRECORDS_CONFIG")]
    config: Option<PathBuf>,
    /// The lake: a folder, or an object-store URL; overrides [output] path.
    #[arg(long, value_name = "PATH|URL")]
    out: Option<String>,
    /// Delete the files removed from the tables longer ago than this.
    #[arg(long, value_name = "N", default_value_t = crate::maintain::DEFAULT_RETENTION_HOURS)]
    vacuum_hours: u32,
    /// Allow --vacuum-hours below 168 (readers on older versions may then fail).
    #[arg(long)]
    allow_short_retention: bool,
    /// List what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
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
commit marker (_markers/<stream>/dt=.../_SUCCESS) gives only the files the marker names.";

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
    /// Parse-and-flatten threads. Default: one per core, at most 16 (each worker adds memory:
    /// about 12 MiB; BENCHMARKS.md).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,
    /// The export's configuration file: its [privacy] modes apply to the rebuilt tables, as
    /// they did when the export wrote them, and its [output.options] to object-store
    /// locations (nothing else of it is used). Without it, personal data is written as read.
    #[arg(long, value_name = "FILE", env = "CALLRECORDS_CONFIG")]
    config: Option<PathBuf>,
    /// Table format: parquet (Hive-partitioned files) or delta (Delta Lake tables);
    /// overrides [output] format.
    #[arg(long, value_name = "FORMAT")]
    format: Option<crate::commit::TableFormat>,
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
    /// Table format: parquet (Hive-partitioned files) or delta (Delta Lake tables, one per
    /// table folder); overrides [output] format.
    #[arg(long, value_name = "FORMAT")]
    format: Option<crate::commit::TableFormat>,
    /// Streams to export, comma-separated: call_records, pstn_calls, direct_routing_calls, and
    /// with the beta API sms_logs, pstn_blocked_users, pstn_online_meeting_dialouts.
    /// Default: every stream the API version offers.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    streams: Option<Vec<String>>,
    /// Graph API version; overrides [graph] api_version. beta adds the beta-only log streams
    /// and properties.
    #[arg(long, value_name = "VERSION", value_parser = api_version_parser())]
    api_version: Option<ApiVersion>,
    /// Call records fetched at the same time; overrides [export] concurrency.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: Option<u16>,
    /// Also write what Graph returned into this raw landing zone (a folder, or an
    /// object-store URL like --out); overrides [raw] path.
    #[arg(long, value_name = "PATH|URL")]
    raw: Option<String>,
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
    #[arg(long, value_name = "VERSION", value_parser = api_version_parser())]
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
    /// The lake to read, to register only the tables that hold data (default: --location,
    /// when it is a folder on this machine). Object stores take their credentials from the
    /// environment (AWS_*, AZURE_*, GOOGLE_*).
    #[arg(long, value_name = "PATH|URL", requires = "ddl")]
    lake: Option<String>,
    /// Without a lake to read: the tables of this API version's streams (v1.0 leaves out
    /// the beta-only logs).
    #[arg(long, value_name = "VERSION", value_parser = api_version_parser(), requires = "ddl")]
    api_version: Option<ApiVersion>,
    /// Listing format: text for people, or json: the declarations as in schemas/*.json
    /// (one object with --table, else an array). With --ddl: the lake's table format,
    /// parquet (the default) or delta (registers the Delta tables of --format delta).
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    format: ListFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
enum ListFormat {
    Text,
    Json,
    Parquet,
    Delta,
}

/// `--api-version`: the names of [`ApiVersion`].
fn api_version_parser() -> impl clap::builder::TypedValueParser<Value = ApiVersion> {
    clap::builder::TypedValueParser::map(
        clap::builder::PossibleValuesParser::new(ApiVersion::ALL.map(ApiVersion::name)),
        |name| name.parse::<ApiVersion>().expect("a listed API version"),
    )
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
            Command::Schema(args) => run_schema(args).await,
            Command::Reflatten(args) => run_reflatten(args, reporting.quiet).await,
            Command::Maintain(args) => run_maintain(args, reporting.quiet).await,
        }
    });
    match outcome {
        Ok(exit) => exit.into(),
        Err(error) => {
            let exit = crate::exit::code_of(&error);
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

fn init_logging(cli: &Cli) {
    let default = if cli.quiet {
        "warn"
    } else {
        // delta-rs and its kernel report every log scan at info: only their warnings.
        match cli.verbose {
            0 => "info,deltalake_core=warn,buoyant_kernel=warn,buoyant_kernel_engine=warn",
            1 => {
                "callrecords_etl=debug,info,deltalake_core=warn,buoyant_kernel=warn,buoyant_kernel_engine=warn"
            }
            _ => "trace",
        }
    };
    // `target=level` directives, comma-separated (tracing-subscriber's `Targets`: the
    // env-filter syntax without span filters, which would pull a regex engine into the build).
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| default.parse().expect("the default directives parse"));
    let builder = tracing_subscriber::fmt()
        // Everything reaches the filter, which alone decides (the builder's own is INFO).
        .with_max_level(tracing::level_filters::LevelFilter::TRACE)
        .with_writer(LogWriter)
        .with_target(false);
    match cli.log_format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .finish()
            .with(filter)
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(filter)
            .init(),
    }
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
    let requested_window = requested_window(args.from, args.to)?;
    // A dry run reads the settings only: no emulator, no token, no request.
    let (settings, running_emulator) = args.source.connect(!args.dry_run).await?;
    let settings = settings.resolve(Overrides {
        api_version: args.api_version,
        streams: args.streams,
        out: args.out,
        raw: args.raw,
        concurrency: args.concurrency.map(usize::from),
        format: args.format,
    })?;
    let window = match requested_window {
        Some(window) => window,
        None => nightly_window(&settings).await?,
    }
    .check_length(settings.max_window_days)?;
    let plan = ExportPlan {
        window,
        streams: settings.streams,
        output: settings.output,
        format: settings.format,
        concurrency: settings.concurrency,
        api_version: settings.graph.api_version,
        log_chunk_days: settings.log_chunk_days,
        privacy: settings.privacy,
        derivation: settings.derivation,
        raw: settings.raw,
        full: args.full,
    };
    if args.dry_run {
        print!("{}", report::plan(&plan));
        if plan.format == crate::commit::TableFormat::Delta {
            let windows = export::stream_windows(&plan, chrono::Utc::now());
            let tables = export::partitions_to_replace(&windows)
                .into_iter()
                .map(|(table, _)| table)
                .collect();
            let planned = crate::delta::plan(&plan.output, &tables).await?;
            print!(
                "{}",
                report::table_versions(&crate::delta::versions(&planned))
            );
        }
        return Ok(Exit::Success);
    }
    let client = GraphClient::new(settings.graph).context("cannot set up the Graph client")?;
    let summary = export_until_stopped(&client, &plan, reporting.quiet).await;
    if let Some(running) = running_emulator {
        running.shutdown().await;
    }
    let summary = summary?;
    if reporting.json {
        let summary = serde_json::to_string(&summary).expect("the summary serializes");
        tracing::info!(summary = %summary, "Export finished.");
    } else {
        eprint!("{}", report::export_summary(&summary, &plan));
    }
    Ok(if summary.records_rejected.is_empty() {
        Exit::Success
    } else {
        Exit::Rejected
    })
}

/// The window `--from`/`--to` ask for: one bound alone reaches to today 00:00 UTC, or back
/// a day from `--to`; neither leaves the window to the nightly plan.
fn requested_window(
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Option<Window>, window::WindowError> {
    let today = || window::midnight(chrono::Utc::now().date_naive());
    let day_before = |to: chrono::DateTime<chrono::Utc>| {
        window::midnight(to.date_naive()) - chrono::Duration::days(1)
    };
    Ok(Some(match (from, to) {
        (None, None) => return Ok(None),
        (Some(from), None) => Window::new(from, today())?,
        (None, Some(to)) => Window::new(day_before(to), to)?,
        (Some(from), Some(to)) => Window::new(from, to)?,
    }))
}

/// The window of a nightly run, planned from the lake's `_state.json`.
async fn nightly_window(settings: &ExportSettings) -> anyhow::Result<Window> {
    let state = ExportState::load_from(&settings.output).await?;
    let names: Vec<&str> = settings.streams.iter().map(|s| s.name()).collect();
    let nightly = state::plan_nightly(&state, &names, chrono::Utc::now(), settings.lookback_days);
    for warning in &nightly.warnings {
        tracing::warn!("{warning}.");
    }
    Ok(nightly.window)
}

/// Runs the export until it ends or a signal stops it; a stop is a [`Failure`] with the
/// signal's exit code.
async fn export_until_stopped(
    client: &GraphClient,
    plan: &ExportPlan,
    quiet: bool,
) -> anyhow::Result<export::RunSummary> {
    let progress = Progress::new(if quiet {
        ProgressMode::Hidden
    } else {
        ProgressMode::Auto
    });
    let cancel = CancellationToken::new();
    let signal = tokio::spawn(stop_on_signal(cancel.clone()));
    match export::export(client, plan, &progress, &cancel).await {
        Ok(summary) => {
            signal.abort();
            Ok(summary)
        }
        Err(error) if error.downcast_ref::<export::Cancelled>().is_some() => {
            let exit = signal.await.unwrap_or(Exit::Interrupted);
            Err(error.context(Failure {
                exit,
                message: "stopped by a signal".into(),
            }))
        }
        Err(error) => Err(error),
    }
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

/// `check`: configuration, sign-in, then one cheap request per stream ([`check`]); each
/// step prints a ✓ or ✗ line on stdout, the ✗ lines saying what to do.
async fn run_check(args: CheckArgs) -> anyhow::Result<Exit> {
    let (mut settings, _emulator) = match args.source.connect(true).await {
        Ok(connected) => connected,
        Err(error) => {
            println!("✗ configuration: {}", redact(&describe(&error), &[]));
            return Err(error);
        }
    };
    let streams = settings.resolve_streams(args.api_version, args.streams)?;
    let graph = &settings.graph;
    println!(
        "✓ configuration: tenant {}, application {}, Graph {} ({}), sign-in at {}",
        graph.tenant_id, graph.client_id, graph.graph_url, graph.api_version, graph.login_url
    );
    let client = GraphClient::new(settings.graph).context("cannot set up the Graph client")?;
    if let Err(error) = check::sign_in(&client).await {
        println!("✗ sign-in: {}", redact(&error.to_string(), &[]));
        println!("  {}", check::advice(&error));
        return Ok(Exit::Failure);
    }
    println!("✓ sign-in: Entra ID issued an access token for the application");
    let now = chrono::Utc::now();
    let mut failed = false;
    for stream in streams {
        match check::probe(&client, stream, now).await {
            Ok(what) => println!("✓ {stream}: {what}"),
            Err(error) => {
                failed = true;
                println!("✗ {stream}: {}", redact(&error.to_string(), &[]));
                println!("  {}", check::advice(&error));
            }
        }
    }
    Ok(if failed { Exit::Failure } else { Exit::Success })
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
    Settings::with_defaults(ClientSettings::new(
        url.clone(),
        url,
        config.tenant_id.clone(),
        config.client_id.clone(),
        Secret::new(config.client_secret.clone()),
    ))
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

async fn run_schema(args: SchemaArgs) -> anyhow::Result<Exit> {
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
        (Some(_), ListFormat::Json) => {
            return Err(Failure::usage(
                "--format json lists the declarations; with --ddl, --format is the lake's table \
                 format: parquet or delta",
            )
            .into());
        }
        (Some(dialect), _) => schema_ddl(dialect, &args, &tables).await?,
        (None, ListFormat::Parquet | ListFormat::Delta) => {
            return Err(Failure::usage(
                "--format parquet|delta picks the DDL of the lake's table format: add --ddl <dialect>",
            )
            .into());
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

/// `schema --ddl`: the script registering the tables that hold data, as read from the lake
/// (or, without one, those of `--api-version`'s streams); what it leaves out goes to stderr too.
async fn schema_ddl(
    dialect: Dialect,
    args: &SchemaArgs,
    tables: &[&TableSchema],
) -> anyhow::Result<String> {
    let location = args
        .location
        .as_deref()
        .unwrap_or(ddl::LOCATION_PLACEHOLDER);
    ddl::check_location(dialect, location)?;
    if location == ddl::LOCATION_PLACEHOLDER {
        tracing::warn!(
            "The SQL locates the lake at the placeholder {location}: replace it, or pass --location."
        );
    }
    let local_folder = args
        .location
        .as_deref()
        .filter(|l| !l.contains("://") && std::path::Path::new(l).is_dir());
    let holding = match args.lake.as_deref().or(local_folder) {
        Some(lake) => Some(tables_holding_data(lake, tables).await?),
        None => {
            tracing::warn!(
                "No lake read (pass --lake, or a local --location): registering the tables of the {} streams; \
                 a table without rows yet fails in DuckDB and in MSCK REPAIR.",
                args.api_version.unwrap_or(ApiVersion::V1).name()
            );
            None
        }
    };
    let evidence = match &holding {
        Some(holding) => ddl::Evidence::Lake(holding),
        None => ddl::Evidence::ApiVersion {
            beta: args.api_version == Some(ApiVersion::Beta),
        },
    };
    let beta_only = |table: &TableSchema| {
        (table.stream.parse::<crate::streams::StreamKind>()).is_ok_and(|s| s.beta_only())
    };
    let (kept, skipped) = ddl::select(tables, evidence, beta_only);
    for line in ddl::skipped_lines(dialect, &skipped, location) {
        tracing::warn!("{line}");
    }
    Ok(match args.format {
        ListFormat::Delta => ddl::delta::script(dialect, &kept, location),
        _ => ddl::script(dialect, &kept, &skipped, location),
    })
}

/// The names of `tables` that the lake at `lake` holds Parquet files of.
async fn tables_holding_data(
    lake: &str,
    tables: &[&TableSchema],
) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let location = crate::store::Location::parse(lake, &Default::default())
        .with_context(|| format!("--lake {lake}"))?;
    if location.local_path("").is_some_and(|root| !root.is_dir()) {
        return Err(Failure::usage(format!(
            "--lake {lake}: no such folder; pass the lake root (the folder that holds <table>/dt=.../)"
        ))
        .into());
    }
    let mut holding = std::collections::BTreeSet::new();
    for table in tables {
        let files = crate::commit::live_files(&location, &table.table)
            .await
            .with_context(|| format!("cannot list the table {} of the lake {lake}", table.table))?;
        if files.iter().any(|file| file.ends_with(".parquet")) {
            holding.insert(table.table.clone());
        }
    }
    Ok(holding)
}

async fn run_reflatten(args: ReflattenArgs, quiet: bool) -> anyhow::Result<Exit> {
    let window = match (args.from, args.to) {
        (Some(from), Some(to)) => Some(Window::new(from, to)?),
        _ => None,
    };
    let streams = match args.streams {
        Some(names) => Some(config::select_streams(Some(names), ApiVersion::Beta)?),
        None => None,
    };
    let workers = args.workers.map(usize::from).unwrap_or_else(|| {
        reflatten::default_workers(
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
        )
    });
    // The raw zone holds what Graph sent; rebuilt tables protect it as the export did.
    let settings = match &args.config {
        Some(path) => config::load_for_reflatten(path, |name| std::env::var(name).ok())?,
        None => config::ReflattenSettings::default(),
    };
    if let Some(window) = window {
        window.check_length(settings.max_window_days)?;
    }
    config::check_apart((&args.raw, "--raw"), (&args.out, "--out"))?;
    let plan = ReflattenPlan {
        raw: settings.location("--raw", &args.raw)?,
        output: settings.location("--out", &args.out)?,
        format: settings.format(args.format),
        window,
        streams,
        privacy: settings.privacy,
        derivation: settings.derivation,
        workers,
    };
    let summary = reflatten::reflatten(&plan).await?;
    if !quiet {
        eprint!("{}", report::reflatten_summary(&summary, &plan));
    }
    Ok(Exit::Success)
}

async fn run_maintain(args: MaintainArgs, quiet: bool) -> anyhow::Result<Exit> {
    crate::maintain::check_retention(args.vacuum_hours, args.allow_short_retention)
        .map_err(Failure::usage)?;
    let settings = match &args.config {
        Some(path) => config::load_for_reflatten(path, |name| std::env::var(name).ok())?,
        None => config::ReflattenSettings::default(),
    };
    let plan = crate::maintain::MaintainPlan {
        lake: settings.lake(args.out.as_deref())?,
        retention_hours: args.vacuum_hours,
        allow_short_retention: args.allow_short_retention,
        dry_run: args.dry_run,
    };
    let summary = crate::maintain::maintain(&plan).await?;
    if !quiet {
        eprint!("{}", report::maintain_summary(&summary, &plan));
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requested_window_takes_both_bounds_or_fills_in_one() {
        let day = |d: u32| window::midnight(chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap());
        assert_eq!(requested_window(None, None).unwrap(), None);
        let both = requested_window(Some(day(20)), Some(day(23)))
            .unwrap()
            .unwrap();
        assert_eq!((both.from, both.to), (day(20), day(23)));
        let to_only = requested_window(None, Some(day(23))).unwrap().unwrap();
        assert_eq!((to_only.from, to_only.to), (day(22), day(23)));
        assert!(requested_window(Some(day(23)), Some(day(20))).is_err());
    }

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
