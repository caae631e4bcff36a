//! What `callrecords-etl schema` prints: the declared tables as a plain-text listing, or the
//! SQL that registers the lake's tables in a query engine (Spark/Databricks, Athena, Trino,
//! DuckDB, Synapse serverless SQL), one statement group per table.
//!
//! Everything comes from the declarations ([`crate::schema`]): column names, types,
//! descriptions (as column comments), the `dt` partition. The lake root is a parameter, a
//! local path or a URL (`abfss://…`, `s3://…`), so the same script registers a copy of the
//! lake anywhere. Knows nothing of Graph or the sink; it only builds text, it does no I/O.
//!
//! A table is registered only when it holds data ([`select`]): DuckDB refuses a view over
//! a folder without files, Spark's `MSCK REPAIR` one without a folder. Which tables hold
//! data the caller reads from the lake; without the lake, the tables of the API version's
//! streams. The script names the tables it leaves out, why, and how to add them later.

use std::collections::BTreeSet;
use std::fmt::Write as _;

pub mod delta;

use crate::schema::{ColumnSchema, ColumnType, Convert, TableSchema};

/// The lake root written into the SQL when none is given: a marker the user replaces
/// (`sed 's#<lake-root>#s3://bucket/teams#'`), and that fails loudly if left in.
pub const LOCATION_PLACEHOLDER: &str = "<lake-root>";

/// The name of the Hive partition column every table has (`<table>/dt=YYYY-MM-DD/`).
const PARTITION_COLUMN: &str = "dt";

/// Why a declared table is left out of the DDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The lake holds no rows of it yet.
    NoRows,
    /// Its stream is on Graph's beta endpoint only, which the lake (or `--api-version`)
    /// does not use.
    BetaOnly,
}

impl Skip {
    fn reason(self) -> &'static str {
        match self {
            Skip::NoRows => "the lake holds no rows of it yet",
            Skip::BetaOnly => {
                "its stream is beta-only: exports from Graph v1.0 never write it (export with --api-version beta)"
            }
        }
    }
}

/// What says which tables hold data.
#[derive(Debug, Clone, Copy)]
pub enum Evidence<'a> {
    /// The tables the lake holds files of.
    Lake(&'a BTreeSet<String>),
    /// No readable lake: the tables of the API version's streams (`beta`: all of them).
    ApiVersion { beta: bool },
}

/// The tables to register and those left out, with why: in the lake, the tables it holds
/// files of (one without is beta-only when its stream is, else empty so far); without it,
/// the tables of the API version's streams. `beta_only` says whether a table's stream is
/// on Graph's beta endpoint only.
pub fn select<'a>(
    tables: &[&'a TableSchema],
    evidence: Evidence,
    beta_only: impl Fn(&TableSchema) -> bool,
) -> (Vec<&'a TableSchema>, Vec<(&'a TableSchema, Skip)>) {
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    for &table in tables {
        let skip = match evidence {
            Evidence::Lake(holding) if holding.contains(&table.table) => None,
            Evidence::Lake(_) if beta_only(table) => Some(Skip::BetaOnly),
            Evidence::Lake(_) => Some(Skip::NoRows),
            Evidence::ApiVersion { beta } => (!beta && beta_only(table)).then_some(Skip::BetaOnly),
        };
        match skip {
            None => kept.push(table),
            Some(skip) => skipped.push((table, skip)),
        }
    }
    (kept, skipped)
}

/// The lines saying which tables a script leaves out, why, and how to add them: a `--`
/// comment in the script, and a warning on stderr.
pub fn skipped_lines(
    dialect: Dialect,
    skipped: &[(&TableSchema, Skip)],
    location: &str,
) -> Vec<String> {
    let mut lines: Vec<String> = skipped
        .iter()
        .map(|(table, skip)| format!("Not registered: {}: {}.", table.table, skip.reason()))
        .collect();
    if !skipped.is_empty() {
        lines.push(format!(
            "Once a table holds data, add it: callrecords-etl schema --ddl {} --table <table> --location {}",
            dialect.name(),
            one_line(location)
        ));
    }
    lines
}

/// A location the dialect cannot read: Athena, Trino and Synapse read tables from URLs
/// only, never from a path on this machine.
#[derive(Debug, thiserror::Error)]
#[error(
    "--location {location}: {engine} reads tables from {expected}, not a local path; pass the lake's URL, e.g. --location {example}"
)]
pub struct LocationError {
    pub location: String,
    pub engine: &'static str,
    pub expected: &'static str,
    pub example: &'static str,
}

/// Checks that `dialect` can read `location` (the placeholder passes: the user replaces it).
pub fn check_location(dialect: Dialect, location: &str) -> Result<(), LocationError> {
    let refuse = |engine, expected, example| {
        Err(LocationError {
            location: location.to_string(),
            engine,
            expected,
            example,
        })
    };
    let url = |schemes: &[&str]| schemes.iter().any(|scheme| location.starts_with(scheme));
    match dialect {
        _ if location == LOCATION_PLACEHOLDER => Ok(()),
        Dialect::Spark | Dialect::DuckDb => Ok(()),
        Dialect::Athena if !url(&["s3://"]) => {
            refuse("Athena", "Amazon S3 (s3://…)", "s3://bucket/teams")
        }
        Dialect::Trino if !location.contains("://") => refuse(
            "Trino's Hive connector",
            "a file system URL (s3://, abfs://, gs://, hdfs://…)",
            "s3://bucket/teams",
        ),
        Dialect::Synapse if !url(&["https://", "abfss://"]) => refuse(
            "Synapse serverless SQL",
            "Azure storage URLs (https://… or abfss://…)",
            "https://acct.dfs.core.windows.net/lake/teams",
        ),
        _ => Ok(()),
    }
}

/// A query engine to write DDL for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Spark 3.2+ SQL: Databricks, Fabric and Synapse Spark, open-source Spark.
    Spark,
    /// Amazon Athena's Hive DDL (`CREATE EXTERNAL TABLE … STORED AS PARQUET`).
    Athena,
    /// Trino (and Starburst) with the Hive connector.
    Trino,
    /// DuckDB: views over `read_parquet`.
    DuckDb,
    /// Azure Synapse serverless SQL pool: views over `OPENROWSET`.
    Synapse,
}

impl Dialect {
    pub const ALL: [Dialect; 5] = [
        Dialect::Spark,
        Dialect::Athena,
        Dialect::Trino,
        Dialect::DuckDb,
        Dialect::Synapse,
    ];

    /// The name on the command line (`--ddl NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Spark => "spark",
            Dialect::Athena => "athena",
            Dialect::Trino => "trino",
            Dialect::DuckDb => "duckdb",
            Dialect::Synapse => "synapse",
        }
    }

    fn syntax(self) -> &'static Syntax {
        match self {
            Dialect::Spark | Dialect::Athena => &HIVE,
            Dialect::Trino => &TRINO,
            Dialect::DuckDb => &DUCKDB,
            Dialect::Synapse => &SYNAPSE,
        }
    }
}

impl std::str::FromStr for Dialect {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dialect::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Dialect::ALL.iter().map(|d| d.name()).collect();
                format!("unknown SQL dialect `{s}`; one of: {}", names.join(", "))
            })
    }
}

/// How a dialect spells the declared types, quotes identifiers and writes string literals.
struct Syntax {
    string: &'static str,
    /// Strings of unbounded length (JSON text) where the dialect bounds the plain one.
    long_string: &'static str,
    int32: &'static str,
    int64: &'static str,
    float: &'static str,
    double: &'static str,
    boolean: &'static str,
    timestamp: &'static str,
    list_of_string: &'static str,
    quote: fn(&str) -> String,
    literal: fn(&str) -> String,
}

impl Syntax {
    fn column_type(&self, column: &ColumnSchema) -> String {
        match column.column_type {
            ColumnType::String if column.convert == Convert::Json => self.long_string.into(),
            ColumnType::String => self.string.into(),
            ColumnType::Int32 => self.int32.into(),
            ColumnType::Int64 => self.int64.into(),
            ColumnType::Float => self.float.into(),
            ColumnType::Double => self.double.into(),
            ColumnType::Boolean => self.boolean.into(),
            ColumnType::Timestamp => self.timestamp.into(),
            // Every engine here spells decimals the same way, up to precision 38.
            ColumnType::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
            ColumnType::ListOfString => self.list_of_string.into(),
        }
    }
}

/// Spark and Athena (Hive DDL): backquoted names, backslash escapes in literals.
const HIVE: Syntax = Syntax {
    string: "STRING",
    long_string: "STRING",
    int32: "INT",
    int64: "BIGINT",
    float: "FLOAT",
    double: "DOUBLE",
    boolean: "BOOLEAN",
    timestamp: "TIMESTAMP",
    list_of_string: "ARRAY<STRING>",
    quote: backquoted,
    literal: backslash_escaped_literal,
};

/// Trino's Hive connector declares only `timestamp(3)` under its default
/// `hive.timestamp-precision` (MILLISECONDS) and refuses other precisions in CREATE TABLE;
/// the files keep microseconds, which a session with `timestamp_precision = 'MICROSECONDS'`
/// reads in full.
const TRINO: Syntax = Syntax {
    string: "VARCHAR",
    long_string: "VARCHAR",
    int32: "INTEGER",
    int64: "BIGINT",
    float: "REAL",
    double: "DOUBLE",
    boolean: "BOOLEAN",
    timestamp: "TIMESTAMP(3)",
    list_of_string: "ARRAY(VARCHAR)",
    quote: double_quoted,
    literal: standard_literal,
};

/// DuckDB reads `isAdjustedToUTC` Parquet timestamps as TIMESTAMPTZ: instants, as declared.
const DUCKDB: Syntax = Syntax {
    string: "VARCHAR",
    long_string: "VARCHAR",
    int32: "INTEGER",
    int64: "BIGINT",
    float: "FLOAT",
    double: "DOUBLE",
    boolean: "BOOLEAN",
    timestamp: "TIMESTAMPTZ",
    list_of_string: "VARCHAR[]",
    quote: double_quoted,
    literal: standard_literal,
};

/// Serverless SQL reads Parquet strings correctly only with a UTF-8 collation, and pushes
/// string predicates down only with a BIN2 one. VARCHAR(8000) is its largest bounded type;
/// JSON text and lists (which it returns as JSON text) get VARCHAR(MAX).
const SYNAPSE: Syntax = Syntax {
    string: "VARCHAR(8000) COLLATE Latin1_General_100_BIN2_UTF8",
    long_string: "VARCHAR(MAX) COLLATE Latin1_General_100_BIN2_UTF8",
    int32: "INT",
    int64: "BIGINT",
    float: "REAL",
    double: "FLOAT",
    boolean: "BIT",
    timestamp: "DATETIME2(6)",
    list_of_string: "VARCHAR(MAX) COLLATE Latin1_General_100_BIN2_UTF8",
    quote: bracketed,
    literal: standard_literal,
};

// Names are quoted always, not only the reserved ones: each engine (and version) reserves
// different words (`type`, `role`, `label`, `version`, …), and quoting is harmless for the rest.

fn backquoted(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn double_quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn bracketed(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

// Literals and comments are kept to one line (a line break in a description becomes a
// space), so every line of a script is SQL or a whole `--` comment.

/// Spark and Hive read a backslash in a literal as an escape character.
fn backslash_escaped_literal(text: &str) -> String {
    let text = one_line(text).replace('\\', "\\\\").replace('\'', "\\'");
    format!("'{text}'")
}

fn standard_literal(text: &str) -> String {
    format!("'{}'", one_line(text).replace('\'', "''"))
}

fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// The DDL of `tables` for `dialect`, over the lake at `location` (a path or URL of the
/// folder that holds `<table>/dt=…/`): a header saying how to use it, then each table's
/// statements.
pub fn script(
    dialect: Dialect,
    tables: &[&TableSchema],
    skipped: &[(&TableSchema, Skip)],
    location: &str,
) -> String {
    let root = location.trim_end_matches('/');
    let mut text = String::new();
    for line in header(dialect, location)
        .into_iter()
        .chain(skipped_lines(dialect, skipped, location))
    {
        let _ = writeln!(text, "-- {line}");
    }
    for table in tables {
        text.push('\n');
        text.push_str(&statement(dialect, table, root));
    }
    text
}

fn header(dialect: Dialect, location: &str) -> Vec<String> {
    let mut lines = vec![format!(
        "Tables of the callrecords-etl lake at {}, generated from schemas/*.json by `callrecords-etl schema --ddl {}`.",
        one_line(location),
        dialect.name()
    )];
    if location == LOCATION_PLACEHOLDER {
        lines.push(format!(
            "Replace {LOCATION_PLACEHOLDER} with the lake root (or pass --location)."
        ));
    }
    let notes: &[&str] = match dialect {
        Dialect::Spark => &[
            "Spark 3.2+, Databricks, Fabric and Synapse Spark. The tables are external: dropping one keeps the files.",
            "A table sees the partitions registered in the metastore: run its MSCK REPAIR TABLE … SYNC PARTITIONS",
            "after every export (SYNC also drops a day that a rerun emptied).",
        ],
        Dialect::Athena => &[
            "Athena (Hive DDL). A table sees the partitions registered in the catalog: run its MSCK REPAIR TABLE",
            "after every export; it only adds partitions, so drop a day that a rerun emptied with",
            "ALTER TABLE … DROP PARTITION (dt = DATE '…'), or use partition projection on dt instead.",
        ],
        Dialect::Trino => &[
            "Trino with the Hive connector: run in the catalog and schema that should hold the tables.",
            "Timestamps are declared timestamp(3), the connector's default precision; the files hold microseconds,",
            "which SET SESSION <catalog>.timestamp_precision = 'MICROSECONDS' reads in full.",
            "A table sees the partitions registered in the metastore: after every export run, per table,",
            "CALL system.sync_partition_metadata('<schema>', '<table>', 'FULL') (shown after each table).",
        ],
        Dialect::DuckDb => &[
            "DuckDB views over the files: a new or replaced partition is visible at once, nothing to repair.",
            "Each column is cast to its declared type so the view's schema is the declaration, and",
            "union_by_name reads files written before a column was added as NULL in that column.",
            "DuckDB checks the files when it creates a view: only tables that hold data are registered.",
        ],
        Dialect::Synapse => &[
            "Synapse serverless SQL pool: run in a user database (not master); GO ends each batch.",
            "Views over OPENROWSET, not CREATE EXTERNAL TABLE: an external table over Parquet folders can",
            "neither expose dt=YYYY-MM-DD as a column nor skip folders by it, while filepath(1) in a view does",
            "both: WHERE dt = '2026-11-20' reads only that day's folder. The location is a URL serverless SQL",
            "reads (https://<account>.dfs.core.windows.net/<container>/<path> or abfss://…).",
        ],
    };
    lines.extend(notes.iter().map(|note| note.to_string()));
    lines
}

/// The statements that register `table` (whose folder is `<root>/<table>`), after a
/// comment naming it.
fn statement(dialect: Dialect, table: &TableSchema, root: &str) -> String {
    let syntax = dialect.syntax();
    let parts = Parts {
        table,
        syntax,
        name: (syntax.quote)(&table.table),
        location: format!("{root}/{}", table.table),
        dt: (syntax.quote)(PARTITION_COLUMN),
        dt_comment: (syntax.literal)(&format!(
            "Partition (folder dt=YYYY-MM-DD): {}.",
            table.partition_source
        )),
        table_comment: (syntax.literal)(&table.description),
    };
    let heading = format!(
        "-- {}: {}\n-- Grain: {}.{}\n",
        table.table,
        one_line(&table.description),
        one_line(&table.grain),
        table
            .primary_key_sentence("")
            .map(|key| format!(" {key}"))
            .unwrap_or_default()
    );
    let body = match dialect {
        Dialect::Spark => spark(&parts),
        Dialect::Athena => athena(&parts),
        Dialect::Trino => trino(&parts),
        Dialect::DuckDb => duckdb(&parts),
        Dialect::Synapse => synapse(&parts),
    };
    heading + &body
}

/// A table's pieces, quoted and escaped for one dialect.
struct Parts<'a> {
    table: &'a TableSchema,
    syntax: &'static Syntax,
    /// The quoted table name.
    name: String,
    /// The table's folder, unquoted.
    location: String,
    /// The quoted partition column.
    dt: String,
    /// The partition column's description, as a literal.
    dt_comment: String,
    /// The table's description, as a literal.
    table_comment: String,
}

impl Parts<'_> {
    /// `  name TYPE COMMENT '…'`, a column of Spark, Athena and Trino.
    fn commented_columns(&self) -> Vec<String> {
        let syntax = self.syntax;
        self.table
            .columns
            .iter()
            .map(|column| {
                format!(
                    "  {} {} COMMENT {}",
                    (syntax.quote)(&column.name),
                    syntax.column_type(column),
                    (syntax.literal)(&column.description)
                )
            })
            .collect()
    }

    /// The `dt=…/*.parquet` files of the table, as a literal.
    fn files(&self) -> String {
        (self.syntax.literal)(&format!("{}/{PARTITION_COLUMN}=*/*.parquet", self.location))
    }
}

fn spark(parts: &Parts) -> String {
    let Parts { name, dt, .. } = parts;
    let mut columns = parts.commented_columns();
    columns.push(format!("  {dt} DATE COMMENT {}", parts.dt_comment));
    format!(
        "CREATE TABLE IF NOT EXISTS {name} (\n{}\n)\nUSING PARQUET\nPARTITIONED BY ({dt})\nCOMMENT {}\nLOCATION {};\nMSCK REPAIR TABLE {name} SYNC PARTITIONS;\n",
        columns.join(",\n"),
        parts.table_comment,
        (parts.syntax.literal)(&parts.location),
    )
}

fn athena(parts: &Parts) -> String {
    let Parts { name, dt, .. } = parts;
    // Athena wants the folder of an external table with its trailing slash.
    format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS {name} (\n{}\n)\nCOMMENT {}\nPARTITIONED BY ({dt} DATE COMMENT {})\nSTORED AS PARQUET\nLOCATION {};\nMSCK REPAIR TABLE {name};\n",
        parts.commented_columns().join(",\n"),
        parts.table_comment,
        parts.dt_comment,
        (parts.syntax.literal)(&format!("{}/", parts.location)),
    )
}

fn trino(parts: &Parts) -> String {
    let Parts { name, dt, .. } = parts;
    let literal = parts.syntax.literal;
    let mut columns = parts.commented_columns();
    columns.push(format!("  {dt} DATE COMMENT {}", parts.dt_comment));
    format!(
        "CREATE TABLE IF NOT EXISTS {name} (\n{}\n)\nCOMMENT {}\nWITH (\n  format = 'PARQUET',\n  external_location = {},\n  partitioned_by = ARRAY[{}]\n);\n-- CALL system.sync_partition_metadata('<schema>', {}, 'FULL');\n",
        columns.join(",\n"),
        parts.table_comment,
        literal(&parts.location),
        literal(PARTITION_COLUMN),
        literal(&parts.table.table),
    )
}

fn duckdb(parts: &Parts) -> String {
    let Parts {
        name, dt, syntax, ..
    } = parts;
    let mut columns: Vec<String> = parts
        .table
        .columns
        .iter()
        .map(|column| {
            let quoted = (syntax.quote)(&column.name);
            format!(
                "  CAST({quoted} AS {}) AS {quoted}",
                syntax.column_type(column)
            )
        })
        .collect();
    columns.push(format!("  {dt}"));
    let mut text = format!(
        "CREATE OR REPLACE VIEW {name} AS\nSELECT\n{}\nFROM read_parquet({}, hive_partitioning = true, hive_types = {{{}: DATE}}, union_by_name = true);\n",
        columns.join(",\n"),
        parts.files(),
        (syntax.literal)(PARTITION_COLUMN),
    );
    let _ = writeln!(text, "COMMENT ON VIEW {name} IS {};", parts.table_comment);
    for column in &parts.table.columns {
        let _ = writeln!(
            text,
            "COMMENT ON COLUMN {name}.{} IS {};",
            (syntax.quote)(&column.name),
            (syntax.literal)(&column.description)
        );
    }
    let _ = writeln!(
        text,
        "COMMENT ON COLUMN {name}.{dt} IS {};",
        parts.dt_comment
    );
    text
}

fn synapse(parts: &Parts) -> String {
    let Parts {
        name, dt, syntax, ..
    } = parts;
    let columns: Vec<String> = parts
        .table
        .columns
        .iter()
        .map(|column| {
            format!(
                "    {} {}",
                (syntax.quote)(&column.name),
                syntax.column_type(column)
            )
        })
        .collect();
    format!(
        "CREATE OR ALTER VIEW {name} AS\nSELECT [r].*, CAST([r].filepath(1) AS DATE) AS {dt}\nFROM OPENROWSET(\n    BULK {},\n    FORMAT = 'PARQUET'\n) WITH (\n{}\n) AS [r];\nGO\n",
        parts.files(),
        columns.join(",\n"),
    )
}

/// The declared tables as text for people: per table its description, grain, keys and
/// partition, then one line per column (name, type, nullability, description).
pub fn listing(tables: &[&TableSchema]) -> String {
    let mut text = String::new();
    for table in tables {
        if !text.is_empty() {
            text.push('\n');
        }
        let _ = writeln!(
            text,
            "{} ({} columns)\n  {}\n  Grain: {}.\n{}  Partitioned by dt = {}.\n",
            table.table,
            table.columns.len(),
            table.description,
            table.grain,
            table
                .primary_key_sentence("")
                .map(|key| format!("  {key}\n"))
                .unwrap_or_default(),
            table.partition_source
        );
        let name_width = table
            .columns
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0);
        let types: Vec<String> = table
            .columns
            .iter()
            .map(|column| {
                let required = if column.nullable { "" } else { " not null" };
                format!("{}{required}", column.column_type.declared_name())
            })
            .collect();
        let type_width = types.iter().map(String::len).max().unwrap_or(0);
        for (column, declared) in table.columns.iter().zip(&types) {
            let _ = writeln!(
                text,
                "  {:<name_width$}  {:<type_width$}  {}",
                column.name, declared, column.description
            );
        }
    }
    text
}
