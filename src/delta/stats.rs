//! The per-file statistics of a Delta `add` action (`numRecords`, `minValues`, `maxValues`,
//! `nullCount`), computed from the footer of a Parquet file the sink wrote: no data is read.
//!
//! Pure: knows the declared columns and the Parquet footer, nothing of stores or logs.

use chrono::{DateTime, SecondsFormat};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;
use serde_json::{Map, Value, json};

use crate::schema::{ColumnType, TableSchema};

/// Strings longer than this get no min/max (Delta's own writers truncate them; leaving them
/// out keeps the log small and is always correct: engines then just read the file).
const MAX_STRING_STAT: usize = 64;

/// The `stats` JSON of an `add` action for the file whose footer is `metadata`.
pub fn file_stats(table: &TableSchema, metadata: &ParquetMetaData) -> String {
    let rows: i64 = metadata.row_groups().iter().map(|g| g.num_rows()).sum();
    let (mut min, mut max, mut nulls) = (Map::new(), Map::new(), Map::new());
    for (index, column) in table.columns.iter().enumerate() {
        if column.column_type == ColumnType::ListOfString {
            continue;
        }
        let chunks: Vec<&Statistics> = metadata
            .row_groups()
            .iter()
            .filter_map(|group| group.columns().get(index))
            .filter(|chunk| chunk.column_path().parts() == [column.name.as_str()])
            .filter_map(|chunk| chunk.statistics())
            .collect();
        if chunks.len() != metadata.num_row_groups() {
            continue;
        }
        if let Some(count) = chunks
            .iter()
            .map(|s| s.null_count_opt())
            .sum::<Option<u64>>()
        {
            nulls.insert(column.name.clone(), json!(count));
        }
        let values = |pick: fn(&Statistics) -> Option<Value>| {
            chunks.iter().map(|s| pick(s)).collect::<Option<Vec<_>>>()
        };
        let ty = column.column_type;
        if let Some(low) = values(|s| bound(s, true)).and_then(|v| extreme(ty, v, true)) {
            min.insert(column.name.clone(), low);
        }
        if let Some(high) = values(|s| bound(s, false)).and_then(|v| extreme(ty, v, false)) {
            max.insert(column.name.clone(), high);
        }
    }
    json!({ "numRecords": rows, "minValues": min, "maxValues": max, "nullCount": nulls })
        .to_string()
}

/// A row group's min (`low`) or max as a raw JSON value (integers as numbers, byte arrays
/// as strings); None when the chunk has none or it is not usable.
fn bound(statistics: &Statistics, low: bool) -> Option<Value> {
    let pick = |min: Option<Value>, max: Option<Value>| if low { min } else { max };
    match statistics {
        Statistics::Int32(s) => pick(s.min_opt().map(|v| json!(v)), s.max_opt().map(|v| json!(v))),
        Statistics::Int64(s) => pick(s.min_opt().map(|v| json!(v)), s.max_opt().map(|v| json!(v))),
        Statistics::Float(s) => pick(
            s.min_opt().filter(|v| v.is_finite()).map(|v| json!(v)),
            s.max_opt().filter(|v| v.is_finite()).map(|v| json!(v)),
        ),
        Statistics::Double(s) => pick(
            s.min_opt().filter(|v| v.is_finite()).map(|v| json!(v)),
            s.max_opt().filter(|v| v.is_finite()).map(|v| json!(v)),
        ),
        Statistics::ByteArray(s) => {
            let text = |v: &parquet::data_type::ByteArray| {
                std::str::from_utf8(v.data())
                    .ok()
                    .filter(|t| t.len() <= MAX_STRING_STAT)
                    .map(|t| json!(t))
            };
            pick(s.min_opt().and_then(text), s.max_opt().and_then(text))
        }
        _ => None,
    }
}

/// The least (`low`) or greatest of the row groups' bounds, as Delta writes a value of `ty`:
/// numbers as numbers, strings as strings, timestamps as UTC ISO-8601 text in milliseconds
/// (the min rounded down, the max up, so that both still bound every value).
fn extreme(ty: ColumnType, values: Vec<Value>, low: bool) -> Option<Value> {
    match ty {
        ColumnType::Int32 | ColumnType::Int64 | ColumnType::Timestamp => {
            let numbers = values
                .iter()
                .map(Value::as_i64)
                .collect::<Option<Vec<_>>>()?;
            let value = if low {
                numbers.into_iter().min()
            } else {
                numbers.into_iter().max()
            }?;
            Some(match ty {
                ColumnType::Timestamp => json!(timestamp_millis(value, low)?),
                _ => json!(value),
            })
        }
        ColumnType::Float | ColumnType::Double => {
            let numbers = values
                .iter()
                .map(Value::as_f64)
                .collect::<Option<Vec<_>>>()?;
            let fold = if low { f64::min } else { f64::max };
            numbers.into_iter().reduce(fold).map(|v| json!(v))
        }
        ColumnType::String => {
            let texts = values
                .iter()
                .map(Value::as_str)
                .collect::<Option<Vec<_>>>()?;
            let value = if low {
                texts.into_iter().min()
            } else {
                texts.into_iter().max()
            }?;
            Some(json!(value))
        }
        ColumnType::Boolean | ColumnType::Decimal { .. } | ColumnType::ListOfString => None,
    }
}

/// Microseconds since the epoch as Delta's timestamp statistic, in whole milliseconds,
/// rounded down (`low`) or up.
fn timestamp_millis(micros: i64, low: bool) -> Option<String> {
    let millis = match low {
        true => micros.div_euclid(1000),
        false => micros.div_euclid(1000) + i64::from(micros.rem_euclid(1000) != 0),
    };
    DateTime::from_timestamp_millis(millis).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_bounds_keep_every_value_inside() {
        assert_eq!(
            timestamp_millis(1_500, true).unwrap(),
            "1970-01-01T00:00:00.001Z"
        );
        assert_eq!(
            timestamp_millis(1_500, false).unwrap(),
            "1970-01-01T00:00:00.002Z"
        );
        assert_eq!(
            timestamp_millis(2_000, false).unwrap(),
            "1970-01-01T00:00:00.002Z"
        );
    }

    #[test]
    fn extremes_follow_the_column_type() {
        let ints = vec![json!(5), json!(-2), json!(9)];
        assert_eq!(
            extreme(ColumnType::Int64, ints.clone(), true),
            Some(json!(-2))
        );
        assert_eq!(extreme(ColumnType::Int32, ints, false), Some(json!(9)));
        let texts = vec![json!("b"), json!("a")];
        assert_eq!(extreme(ColumnType::String, texts, true), Some(json!("a")));
        let floats = vec![json!(1.5), json!(-0.5)];
        assert_eq!(extreme(ColumnType::Double, floats, false), Some(json!(1.5)));
        assert_eq!(extreme(ColumnType::Boolean, vec![json!(1)], true), None);
    }
}
