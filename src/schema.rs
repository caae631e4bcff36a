//! The declared output tables: `schemas/<table>.json`, embedded at build time.
//!
//! Every table the exporter writes is declared here as data (columns, types,
//! descriptions, the Graph property each column comes from, and the JSON path
//! the flattener reads it from). The Arrow schemas of the writer are derived
//! from these declarations, so code and documentation cannot drift apart.
//! This module may touch only arrow-schema and serde (serde_json); it does no I/O.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

/// The schema files, in the order tables are documented and written.
const DECLARATIONS: &[(&str, &str)] = &[
    ("call_records", include_str!("../schemas/call_records.json")),
    (
        "call_participants",
        include_str!("../schemas/call_participants.json"),
    ),
    (
        "call_modalities",
        include_str!("../schemas/call_modalities.json"),
    ),
    (
        "call_sessions",
        include_str!("../schemas/call_sessions.json"),
    ),
    (
        "call_segments",
        include_str!("../schemas/call_segments.json"),
    ),
    ("call_media", include_str!("../schemas/call_media.json")),
    (
        "call_media_streams",
        include_str!("../schemas/call_media_streams.json"),
    ),
    (
        "call_trace_route_hops",
        include_str!("../schemas/call_trace_route_hops.json"),
    ),
    ("call_quality", include_str!("../schemas/call_quality.json")),
    ("pstn_calls", include_str!("../schemas/pstn_calls.json")),
    (
        "direct_routing_calls",
        include_str!("../schemas/direct_routing_calls.json"),
    ),
    ("sms_logs", include_str!("../schemas/sms_logs.json")),
    (
        "pstn_blocked_users",
        include_str!("../schemas/pstn_blocked_users.json"),
    ),
    (
        "pstn_online_meeting_dialouts",
        include_str!("../schemas/pstn_online_meeting_dialouts.json"),
    ),
];

/// Timezone of every timestamp column: instants in UTC, which Parquet records as
/// An identifier of the declarations (a digest of every schema file as embedded): rows
/// written under other declarations are not reused by a rescan.
pub fn declarations_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for (table, text) in DECLARATIONS {
            digest.update(table.as_bytes());
            digest.update(text.as_bytes());
        }
        hex::encode(&digest.finish().as_ref()[..8])
    })
}

/// `isAdjustedToUTC = true` and every engine reads as a UTC timestamp.
pub const UTC: &str = "UTC";

/// One declared table (`schemas/<table>.json`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSchema {
    pub table: String,
    pub description: String,
    /// The exported stream that produces the table (`call_records`, `pstn_calls`, ...).
    pub stream: String,
    pub grain: String,
    /// The Graph type one row is read from (its columns' `path`s are relative to it).
    pub row_object: String,
    pub partition_by: Vec<String>,
    pub partition_source: String,
    pub primary_key: Vec<String>,
    pub columns: Vec<ColumnSchema>,
    #[serde(skip)]
    arrow: OnceLock<SchemaRef>,
}

/// One declared column.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSchema {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    pub nullable: bool,
    pub description: String,
    /// `type.property` of the Graph model the column comes from (None for position keys).
    pub source: Option<String>,
    /// Where the value is read: a dotted path from the row object (`callerNetwork.linkSpeed`),
    /// `""` for the row value itself, or `$name` for a value the flattener supplies
    /// (the call id, position keys, ...).
    pub path: String,
    /// How the JSON value becomes the column value when the type alone does not say.
    #[serde(default)]
    pub convert: Convert,
    /// Class of personal data the column holds, if any (for privacy modes).
    #[serde(default)]
    pub pii: Option<String>,
}

/// Column types: only portable Parquet types, readable by Spark, Trino, DuckDB and pyarrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Int32,
    Int64,
    Float,
    Double,
    Boolean,
    /// Microseconds since the epoch, UTC.
    Timestamp,
    Decimal {
        precision: u8,
        scale: i8,
    },
    ListOfString,
}

impl ColumnType {
    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::String => DataType::Utf8,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float => DataType::Float32,
            ColumnType::Double => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            ColumnType::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
            ColumnType::ListOfString => {
                DataType::List(Arc::new(Field::new("element", DataType::Utf8, true)))
            }
        }
    }

    /// The name used in `schemas/*.json`.
    pub fn declared_name(self) -> String {
        match self {
            ColumnType::String => "string".into(),
            ColumnType::Int32 => "int32".into(),
            ColumnType::Int64 => "int64".into(),
            ColumnType::Float => "float".into(),
            ColumnType::Double => "double".into(),
            ColumnType::Boolean => "boolean".into(),
            ColumnType::Timestamp => "timestamp".into(),
            ColumnType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            ColumnType::ListOfString => "list<string>".into(),
        }
    }
}

impl std::str::FromStr for ColumnType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "string" => ColumnType::String,
            "int32" => ColumnType::Int32,
            "int64" => ColumnType::Int64,
            "float" => ColumnType::Float,
            "double" => ColumnType::Double,
            "boolean" => ColumnType::Boolean,
            "timestamp" => ColumnType::Timestamp,
            "list<string>" => ColumnType::ListOfString,
            other => {
                let inner = other
                    .strip_prefix("decimal(")
                    .and_then(|rest| rest.strip_suffix(')'))
                    .ok_or_else(|| format!("unknown column type `{other}`"))?;
                let (precision, scale) = inner
                    .split_once(',')
                    .ok_or_else(|| format!("decimal type `{other}` needs (precision,scale)"))?;
                let precision: u8 = precision
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad precision in `{other}`"))?;
                let scale: i8 = scale
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad scale in `{other}`"))?;
                if !(1..=38).contains(&precision) || scale < 0 || scale as u8 > precision {
                    return Err(format!(
                        "decimal type `{other}` is out of range (precision 1..=38, 0 <= scale <= precision)"
                    ));
                }
                ColumnType::Decimal { precision, scale }
            }
        })
    }
}

impl<'de> Deserialize<'de> for ColumnType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Conversions from a JSON value to a column value beyond the plain type mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Convert {
    /// The value as its column type says (strings, numbers, booleans, RFC 3339 timestamps,
    /// arrays of strings).
    #[default]
    Plain,
    /// An ISO-8601 duration string (`PT0.016S`) as float milliseconds.
    DurationMs,
    /// The value (object, array, ...) serialized as compact JSON text.
    Json,
    /// Which member of an identity set is set (`user`, `phone`, ...).
    IdentityKind,
    /// `id` of the identity chosen by [`Convert::IdentityKind`].
    IdentityId,
    /// `displayName` of the identity chosen by [`Convert::IdentityKind`].
    IdentityDisplayName,
    /// `tenantId` of the identity chosen by [`Convert::IdentityKind`].
    IdentityTenantId,
    /// `userPrincipalName` of the identity chosen by [`Convert::IdentityKind`].
    IdentityUserPrincipalName,
    /// `participantEndpoint` / `serviceEndpoint`, from `@odata.type` or inferred.
    EndpointType,
    /// `clientUserAgent` / `serviceUserAgent`, from `@odata.type` or inferred.
    UserAgentType,
    /// An array of objects as the list of their `id`s.
    IdList,
}

impl TableSchema {
    /// `Primary key: a, b.`, each name between `quote`s; none for a table without a key
    /// (log rows that nothing identifies), where an empty `Primary key: .` would mislead.
    pub fn primary_key_sentence(&self, quote: &str) -> Option<String> {
        (!self.primary_key.is_empty()).then(|| {
            let names: Vec<String> = self
                .primary_key
                .iter()
                .map(|name| format!("{quote}{name}{quote}"))
                .collect();
            format!("Primary key: {}.", names.join(", "))
        })
    }

    /// The Arrow schema of the written files: the declared columns in declared order,
    /// each field carrying its description (readers see it in the Parquet metadata).
    pub fn arrow_schema(&self) -> SchemaRef {
        self.arrow
            .get_or_init(|| {
                let fields: Vec<Field> = self
                    .columns
                    .iter()
                    .map(|column| {
                        Field::new(&column.name, column.column_type.arrow(), column.nullable)
                            .with_metadata(HashMap::from([(
                                "description".to_string(),
                                column.description.clone(),
                            )]))
                    })
                    .collect();
                // Readers that do not decode the embedded Arrow schema (DuckDB, Spark, Trino,
                // parquet-cli) can still read the footer's key-value pairs, where the sink
                // copies this metadata: the descriptions are repeated here for them.
                let descriptions: serde_json::Map<String, serde_json::Value> = self
                    .columns
                    .iter()
                    .map(|c| (c.name.clone(), c.description.clone().into()))
                    .collect();
                let metadata = HashMap::from([
                    ("callrecords_etl.table".to_string(), self.table.clone()),
                    (
                        "callrecords_etl.column_descriptions".to_string(),
                        serde_json::Value::Object(descriptions).to_string(),
                    ),
                    ("callrecords_etl.grain".to_string(), self.grain.clone()),
                    (
                        "callrecords_etl.primary_key".to_string(),
                        self.primary_key.join(","),
                    ),
                ]);
                Arc::new(Schema::new_with_metadata(fields, metadata))
            })
            .clone()
    }

    pub fn column(&self, name: &str) -> Option<&ColumnSchema> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Every declared table, parsed once.
///
/// The declarations are part of the binary, so a malformed file is a build defect:
/// `tests` parse all of them, and this panics with the file name if one is broken.
pub fn tables() -> &'static [TableSchema] {
    static TABLES: OnceLock<Vec<TableSchema>> = OnceLock::new();
    TABLES.get_or_init(|| {
        DECLARATIONS
            .iter()
            .map(|(name, text)| {
                let table: TableSchema = serde_json::from_str(text).unwrap_or_else(|e| {
                    panic!("schemas/{name}.json is not a valid table declaration: {e}")
                });
                assert_eq!(
                    table.table, *name,
                    "schemas/{name}.json declares table `{}`",
                    table.table
                );
                table
            })
            .collect()
    })
}

/// The declared table named `name`.
pub fn table(name: &str) -> Option<&'static TableSchema> {
    tables().iter().find(|t| t.table == name)
}

/// The text of `schemas/<name>.json`, as declared (what `schema --format json` prints).
pub fn declaration(name: &str) -> Option<&'static str> {
    DECLARATIONS
        .iter()
        .find(|(table, _)| *table == name)
        .map(|(_, text)| *text)
}

/// The tables a stream produces, in declaration order.
pub fn tables_of_stream(stream: &str) -> impl Iterator<Item = &'static TableSchema> + '_ {
    tables().iter().filter(move |t| t.stream == stream)
}

/// The table reference of `docs/tables.md`, generated from the declarations.
pub fn markdown_reference() -> String {
    let mut text = String::new();
    for table in tables() {
        text.push_str(&format!(
            "### `{}`\n\n{} Grain: {}.{} Partitioned by `dt` = {}.\n\n",
            table.table,
            table.description,
            table.grain,
            table
                .primary_key_sentence("`")
                .map(|key| format!(" {key}"))
                .unwrap_or_default(),
            table.partition_source
        ));
        text.push_str("| column | type | description |\n|---|---|---|\n");
        for column in &table.columns {
            let required = if column.nullable { "" } else { " not null" };
            text.push_str(&format!(
                "| `{}` | {}{} | {} |\n",
                column.name,
                column.column_type.declared_name(),
                required,
                column.description.replace('|', "\\|")
            ));
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declaration_parses_and_has_unique_columns() {
        for table in tables() {
            let mut names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
            names.sort_unstable();
            let before = names.len();
            names.dedup();
            assert_eq!(before, names.len(), "duplicate column in {}", table.table);
            for key in &table.primary_key {
                let column = table
                    .column(key)
                    .unwrap_or_else(|| panic!("{}: key {key} is not a column", table.table));
                assert!(
                    !column.nullable,
                    "{}: key column {key} must not be nullable",
                    table.table
                );
            }
            assert_eq!(table.partition_by, vec!["dt".to_string()]);
        }
    }

    #[test]
    fn column_types_round_trip_their_declared_names() {
        for name in [
            "string",
            "int32",
            "int64",
            "float",
            "double",
            "boolean",
            "timestamp",
            "decimal(38,10)",
            "list<string>",
        ] {
            let parsed: ColumnType = name.parse().unwrap();
            assert_eq!(parsed.declared_name(), name);
        }
        assert!("decimal(40,2)".parse::<ColumnType>().is_err());
        assert!("uuid".parse::<ColumnType>().is_err());
    }
}
