//! How each column of a file is encoded, chosen from the file's first batch: dictionary
//! encoding only for columns whose values repeat.
//!
//! A dictionary pays when a column chunk holds few distinct values (call ids repeated on
//! every row of a call, codecs, enums, rounded metrics); for ids that are unique per row
//! (segment and stream ids, GUID-like text, most timestamps) the writer fills a hash table
//! of every value until the dictionary page is full, then falls back to plain encoding:
//! CPU spent for nothing.
//!
//! Pure: knows nothing of files or stores; the sink applies what it returns.

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use rustc_hash::FxHashSet;

/// Fewer rows than this say too little about a column: its dictionary stays on.
const MIN_SAMPLE_ROWS: usize = 512;

/// The rows of the first batch looked at: enough to tell, cheap next to encoding them.
const SAMPLE_ROWS: usize = 2048;

/// A column whose distinct values exceed this share of its non-null values in the sample
/// is written without a dictionary.
const MAX_DISTINCT_SHARE: f64 = 0.8;

/// `base`, with the dictionary turned off for every top-level column of `batch` that
/// holds mostly distinct values.
pub(crate) fn file_properties(base: &WriterProperties, batch: &RecordBatch) -> WriterProperties {
    let mut builder = base.clone().into_builder();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if mostly_distinct(column.as_ref()) == Some(true) {
            builder = builder
                .set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
        }
    }
    builder.build()
}

/// Whether most non-null values among the first [`SAMPLE_ROWS`] of `column` are distinct;
/// None for a sample too small or a type not looked at (nested and boolean columns keep
/// their dictionary).
fn mostly_distinct(column: &dyn Array) -> Option<bool> {
    let column = column.slice(0, column.len().min(SAMPLE_ROWS));
    let values = column.len() - column.null_count();
    if values < MIN_SAMPLE_ROWS {
        return None;
    }
    let distinct = match column.data_type() {
        DataType::Utf8 => distinct_count(column.as_string::<i32>().iter().flatten()),
        DataType::LargeUtf8 => distinct_count(column.as_string::<i64>().iter().flatten()),
        data_type if data_type.is_primitive() => {
            let width = data_type.primitive_width()?;
            let data = column.to_data();
            let bytes = &data.buffers()[0].as_slice()[data.offset() * width..];
            let slots = bytes.chunks_exact(width).take(column.len()).enumerate();
            distinct_count(
                slots
                    .filter(|(index, _)| column.is_valid(*index))
                    .map(|(_, slot)| slot),
            )
        }
        _ => return None,
    };
    Some(distinct as f64 > MAX_DISTINCT_SHARE * values as f64)
}

fn distinct_count<T: std::hash::Hash + Eq>(values: impl Iterator<Item = T>) -> usize {
    let mut distinct = FxHashSet::with_capacity_and_hasher(SAMPLE_ROWS, Default::default());
    distinct.extend(values);
    distinct.len()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int64Array, StringArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn properties_of(columns: Vec<(&str, Arc<dyn Array>)>) -> WriterProperties {
        let schema = Schema::new(
            columns
                .iter()
                .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        let arrays = columns.into_iter().map(|(_, array)| array).collect();
        let batch = RecordBatch::try_new(Arc::new(schema), arrays).unwrap();
        file_properties(&WriterProperties::builder().build(), &batch)
    }

    fn dictionary(properties: &WriterProperties, column: &str) -> bool {
        properties.dictionary_enabled(&ColumnPath::from(column))
    }

    #[test]
    fn unique_columns_lose_their_dictionary_and_repeating_ones_keep_it() {
        let rows = 4096;
        let properties = properties_of(vec![
            (
                "id",
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|n| format!("0000-{n:08}")),
                )),
            ),
            (
                "call_id",
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|n| format!("call-{}", n / 10)),
                )),
            ),
            ("n", Arc::new(Int64Array::from_iter_values(0..rows as i64))),
            (
                "ratio",
                Arc::new(Float64Array::from_iter_values(
                    (0..rows).map(|n| (n % 100) as f64 / 100.0),
                )),
            ),
            (
                "sparse",
                Arc::new(Int64Array::from_iter(
                    (0..rows).map(|n| (n % 10 == 0).then_some(n as i64)),
                )),
            ),
        ]);
        assert!(!dictionary(&properties, "id"));
        assert!(dictionary(&properties, "call_id"));
        assert!(!dictionary(&properties, "n"));
        assert!(dictionary(&properties, "ratio"));
        // 205 values in the sample: too few to judge.
        assert!(dictionary(&properties, "sparse"));
    }

    #[test]
    fn a_small_first_batch_keeps_every_dictionary() {
        let properties = properties_of(vec![(
            "id",
            Arc::new(StringArray::from_iter_values(
                (0..100).map(|n| n.to_string()),
            )),
        )]);
        assert!(dictionary(&properties, "id"));
    }
}
