//! callrecords-etl: a batch exporter of Microsoft Teams call records
//! (Microsoft Graph `communications/callRecords`) into Hive-partitioned Parquet.
//!
//! # Layout
//!
//! - [`cli`]: the command line (clap); turns arguments into calls of the modules below
//!   and maps every outcome to a documented exit code ([`exit`]).
//! - [`config`]: the TOML configuration file, validated into [`config::Settings`]
//!   before any request is made.
//! - [`window`]: the half-open UTC export window `[from, to)` and its days.
//! - [`graph`]: the Microsoft Graph HTTP client: OAuth2 client-credentials token,
//!   `@odata.nextLink` paging, throttling (429 + `Retry-After`). Knows nothing of Arrow.
//! - [`streams`]: what to request for each exported stream (`call_records`, ...)
//!   and how to assemble a complete record from several Graph pages.
//! - [`schema`]: the declared output tables, read from `schemas/*.json` (embedded at
//!   build time); the Arrow schemas of the writer come from here.
//! - [`ddl`]: what `schema` prints: the declared tables as text, or the SQL that registers
//!   the lake in Spark/Databricks, Athena, Trino, DuckDB or Synapse. Knows nothing of Graph.
//! - [`flatten`]: nested Graph JSON → rows of the declared tables, filling Arrow builders
//!   by the column paths declared in the schemas. Records are parsed into a borrowed tree
//!   that keeps only the members the declarations read ([`flatten::shape`],
//!   [`flatten::dom`]); raw lines and records assembled from Graph pages take the same
//!   parser.
//! - [`privacy`]: privacy modes (keep, keyed hash, drop) per class of personal data, which
//!   the flattener applies to the columns the schemas mark with a `pii` class.
//! - [`sink`]: Hive-partitioned Parquet files (`<table>/dt=YYYY-MM-DD/part-<run>-<n>.parquet`),
//!   staged and then published. Knows nothing of Graph.
//! - [`raw`]: the raw landing zone (`<raw>/<stream>/dt=…/*.jsonl.zst`): what Graph returned,
//!   staged and published with the tables; and reading raw files back (on disk or from an
//!   object store).
//! - [`reflatten`]: rebuilds the tables from a raw zone without Graph, on every core.
//! - [`locations`]: whether two locations (the lake and the raw zone) overlap, compared
//!   after normalising paths and URLs.
//! - [`redact`]: removes tokens, secrets and signatures from text before it is logged,
//!   printed or written.
//! - [`reuse`]: incremental rescans: the `(id, version)` the lake holds, and copying the
//!   rows of unchanged records into the partitions a run replaces (on disk or on an object
//!   store alike).
//! - [`state`]: the output folder's lock (`_lock`: one run at a time) and the state of
//!   nightly runs (`_state.json`), from which a run without a window plans its own.
//! - [`pipeline`]: the export run: window → Graph → flatten → sink, with bounded
//!   concurrency and bounded memory, and the run summary.
//! - [`progress`]: progress reporting for terminals and for logs.
//! - [`emulator`]: an embedded Microsoft Graph look-alike over a deterministic synthetic
//!   tenant, for out-of-the-box runs and tests.
//!
//! # Data flow
//!
//! ```text
//! CLI + config ─► Settings ─► pipeline::export   (lock _lock; window from --from/--to or _state.json)
//!                                 │ call_records: list callRecords in [from, to)       (graph + streams)
//!                                 │   per listed id, bounded concurrency, paced under Graph's limits:
//!                                 │   details + session pages + participant pages → one JSON record
//!                                 │ log streams: getPstnCalls(…) etc. in ≤ 90-day chunks, pages of 1,000,
//!                                 │   rows kept by their own time in the chunk's half-open range
//!                                 ▼
//!                             flatten (schema-driven, privacy applied) ─► RecordBatch per (table, dt)
//!                                 ▼  bounded channel
//!                             sink (writer thread): staged Parquet
//!                                 ▼  only when every record was fetched (or skipped/quarantined)
//!                             publish the window's partitions, then _manifests/<run>.json and _state.json
//! ```

pub mod cli;
pub mod commit;
pub mod config;
pub mod ddl;
pub mod emulator;
pub mod exit;
pub mod flatten;
pub mod graph;
pub mod locations;
pub mod pipeline;
pub mod privacy;
pub mod progress;
pub mod raw;
pub mod redact;
pub mod reflatten;
pub mod reuse;
pub mod run;
pub mod schema;
pub mod sink;
pub mod state;
pub mod streams;
pub mod window;
