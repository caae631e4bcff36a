//! callrecords-etl: a batch exporter of Microsoft Teams call records
//! (Microsoft Graph `communications/callRecords`) into Hive-partitioned Parquet.
//!
//! # Layout
//!
//! - [`cli`]: the command line (clap); turns arguments into calls of the modules below
//!   and maps every outcome to a documented exit code ([`exit`], chosen by error type).
//! - [`config`]: the TOML configuration file (`config::file`), validated into
//!   [`config::Settings`] before any request is made; the command line's overrides meet it
//!   in one place (`config::resolve`), giving the [`config::ExportSettings`] of a run.
//! - [`check`]: what `check` asks of Graph (sign-in, one cheap request per stream) and the
//!   advice for each failure.
//! - [`report`]: what the commands print for people: the dry-run plan and the summaries.
//! - [`window`]: the half-open UTC export window `[from, to)` and its days.
//! - [`graph`]: the Microsoft Graph HTTP client: OAuth2 client-credentials token,
//!   `@odata.nextLink` paging, throttling (429 + `Retry-After`). Knows nothing of Arrow.
//! - [`streams`]: what to request for each exported stream (`call_records`, ...)
//!   and how to assemble a complete record from several Graph pages.
//! - [`schema`]: the declared output tables, read from `schemas/*.json` (embedded at
//!   build time); the Arrow schemas of the writer come from here.
//! - [`ddl`]: what `schema` prints: the declared tables as text, or the SQL that registers
//!   the lake's tables that hold data (which the CLI reads from the lake) in
//!   Spark/Databricks, Athena, Trino, DuckDB or Synapse. Knows nothing of Graph.
//! - [`flatten`]: nested Graph JSON → rows of the declared tables, filling Arrow builders
//!   by the column paths declared in the schemas, each column compiled once into a plan
//!   (slot path, conversion, protection) and filled into `flatten::columns`. Records are
//!   parsed into a borrowed tree that keeps only the members the declarations read
//!   ([`flatten::shape`], [`flatten::dom`]); raw lines and records fetched from Graph
//!   (assembled as the same JSON text) take the same parser.
//! - [`quality`]: call quality as answers: each stream classified good / poor / unclassified
//!   by Microsoft's CQD rules with the `[quality]` thresholds, roll-ups per session and per call
//!   (`call_quality`), and the buildings of endpoints from a CQD building file (`[sites]`);
//!   the flattener fills the columns the schemas declare with `$` paths from it.
//! - [`privacy`]: privacy modes (keep, keyed hash, drop) per class of personal data, which
//!   the flattener applies to the columns the schemas mark with a `pii` class.
//! - [`store`]: where the lake and the raw zone live ([`store::Location`]: a local folder or
//!   an object-store URL) and every operation on them (read, list, atomic replace, delete,
//!   streamed read and write, Parquet range reads, the run lock `_lock`); the only code that
//!   branches on the backend, with typed errors ([`store::StoreError`]); and whether two
//!   locations overlap ([`store::overlap()`]), compared after normalising paths and URLs.
//! - [`delta`]: Delta Lake tables (`--format delta`) through delta-rs: a table on a
//!   [`store::Location`], its snapshot's files, a run's commit of a table (remove the replaced
//!   partitions, add the run's files with statistics from their footers, `txn` + run id),
//!   its undo, and vacuum. The data files are the sink's.
//! - [`maintain`]: `maintain`: vacuums every Delta table of a lake.
//! - [`sink`]: Hive-partitioned Parquet files (`<table>/dt=YYYY-MM-DD/part-<run>-<n>.parquet`),
//!   staged and made durable through [`store`], with footers parquet-mr reads (type-defined
//!   float column order, `created_by` with the build's commit from `build.rs`); each file's
//!   column encodings chosen from its first batch (`sink::encoding`: no dictionary for mostly
//!   distinct columns, no min/max statistics for text columns). Knows
//!   nothing of Graph.
//! - [`commit`]: the run-wide commit: a journal (`_commits/<run>.json`), then repeatable
//!   switch steps for every partition of every table and the raw zone (folders exchanged on
//!   disk, commit markers under `_markers/` on an object store, outside the partition
//!   folders, or one Delta commit per table: `commit::delta`); recovery rolls an interrupted
//!   commit forward
//!   (or back) so the lake is the whole old or new state.
//! - [`run`]: the lifecycle `export` and `reflatten` share: run id, lock, recovery of an
//!   interrupted run; how rows reach the staged files ([`run::writer`]: written by the
//!   plain threads that built them, or sent from async tasks to the run's writer thread,
//!   into one sink that many threads write at once); log rows
//!   per partition and value-issue reporting ([`run::rows`]); quarantine
//!   ([`run::quarantine`]); the commit's changes and the summary part both commands write
//!   alike ([`run::summary`]); publishing (partitions, state, manifest) through [`commit`].
//! - [`raw`]: the raw landing zone (`<raw>/<stream>/dt=…/*.jsonl.zst`): what Graph returned,
//!   staged and published with the tables; and reading raw files back (on disk or from an
//!   object store).
//! - [`reflatten`]: rebuilds the tables from a raw zone without Graph, on every core: a
//!   reader thread cutting raw files into chunks, parse-and-flatten workers that encode
//!   their own rows into the run's staged files.
//! - [`redact`]: removes tokens, secrets and signatures from text before it is logged,
//!   printed or written.
//! - [`reuse`]: copying rows the lake holds into the partitions a run replaces: unchanged
//!   records (incremental rescans), rows outside a partial window on its edge days, rows of
//!   quarantined records; and the fingerprint that says which rows may be reused.
//! - [`state`]: the state of nightly runs (`_state.json`: the exported range per stream, the
//!   quarantined records to fetch again), from which a run without a window plans its own.
//! - [`export`]: the export run: window → Graph → flatten → the run's writer, with bounded
//!   concurrency and bounded memory, and its summary; what a run covers (`export::scope`),
//!   fetching call records and log streams (`export::call_records`, `export::logs`).
//! - [`progress`]: progress reporting for terminals and for logs.
//! - The embedded Microsoft Graph look-alike over a deterministic synthetic tenant, for
//!   out-of-the-box runs (`export --emulator`, `emulator`) and tests, is its own crate:
//!   [`callrecords_emulator`] (`crates/emulator`), which knows nothing of this one.
//! - `vendor/zstd`: the `zstd` crate with one patch (its `PATCHED.md`), which parquet's
//!   writer reaches through `[patch.crates-io]`.
//!
//! # Data flow
//!
//! ```text
//! CLI + config ─► Settings ─► export::export            (reflatten::reflatten: raw zone ─► workers)
//!                                 │ run::Run::begin: lock _lock; finish an interrupted commit (_commits/);
//!                                 │   read _state.json (window of a nightly run, quarantined records)
//!                                 │ call_records: list callRecords in [from, to)       (graph + streams)
//!                                 │   per listed id, bounded concurrency, paced under Graph's limits:
//!                                 │   details + session pages + participant pages → one JSON record;
//!                                 │   unchanged records, rows outside a partial window and quarantined
//!                                 │   records' rows are copied from the lake instead (reuse)
//!                                 │ log streams: getPstnCalls(…) etc. in ≤ 90-day chunks, pages of 1,000,
//!                                 │   rows kept by their own time in the chunk's half-open range
//!                                 ▼
//!                             flatten (schema-driven; quality classified, sites matched, privacy applied)
//!                                 │   ─► RecordBatch per (table, dt)
//!                                 ▼  bounded channel
//!                             run::writer (writer thread; reflatten's workers write themselves)
//!                                 ─► sink: staged Parquet, one file per partition (+ raw zone lines), fsynced
//!                                 ▼  only when every record was fetched (or skipped/quarantined)
//!                             run::Run::plan (Delta: each table's read and txn version)
//!                             run::Run::publish ─► commit: journal ─► switch every partition (raw zone, then tables;
//!                                     Delta: files moved in, one commit per table)
//!                                     ─► _state.json, _manifests/<run>.json ─► clean up
//! ```

pub mod check;
pub mod cli;
pub mod commit;
pub mod config;
pub mod ddl;
pub mod delta;
pub mod exit;
pub mod export;
pub mod flatten;
pub mod graph;
pub mod maintain;
pub mod privacy;
pub mod progress;
pub mod quality;
pub mod raw;
pub mod redact;
pub mod reflatten;
pub mod report;
pub mod reuse;
pub mod run;
pub mod schema;
pub mod sink;
pub mod state;
pub mod store;
pub mod streams;
pub mod window;
