//! How each column of a file is encoded, chosen from the file's first batch: dictionary
//! encoding only for columns whose values repeat, and min/max statistics only for columns
//! that are not text. Within a run, a table's choice is made once, from its first batch
//! that fills the sample, and its other partitions' files reuse it ([`TableEncodings`]):
//! the days of one table repeat their values alike, and looking at a sample of every
//! column was 1.5 % of `reflatten`'s instructions when done for each file.
//!
//! A dictionary pays when a column chunk holds few distinct values (call ids repeated on
//! every row of a call, codecs, enums, rounded metrics); for ids that are unique per row
//! (segment and stream ids, GUID-like text, most timestamps) the writer fills a hash table
//! of every value until the dictionary page is full, then falls back to plain encoding:
//! CPU spent for nothing.
//!
//! Statistics of text columns prune nothing: ids are random GUIDs, addresses and names
//! are in no order within a file, and JSON text is not compared at all, so every page's
//! min/max spans about every value. Computing them compared each value with the page's
//! min and max (9 % of the writer's instructions); numbers and timestamps keep theirs.
//!
//! No I/O: knows nothing of files or stores; the sink keeps one [`TableEncodings`] per run
//! and applies what it returns.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use rustc_hash::{FxBuildHasher, FxHashSet};

/// Fewer rows than this say too little about a column: its dictionary stays on.
const MIN_SAMPLE_ROWS: usize = 512;

/// The rows of the first batch looked at: enough to tell, cheap next to encoding them.
const SAMPLE_ROWS: usize = 2048;

/// A column whose distinct values exceed this share of its non-null values in the sample
/// is written without a dictionary.
const MAX_DISTINCT_SHARE: f64 = 0.8;

/// The properties of each table's files in one run, from [`file_properties`] of the
/// table's first batch of at least [`SAMPLE_ROWS`] rows. A smaller batch says too little
/// about its columns (every dictionary stays on), so its file's choice is its own.
#[derive(Default)]
pub(crate) struct TableEncodings {
    chosen: Mutex<HashMap<String, WriterProperties>>,
}

impl TableEncodings {
    /// The properties of a new file of `table` whose first batch is `batch`.
    pub fn for_file(
        &self,
        base: &WriterProperties,
        table: &str,
        batch: &RecordBatch,
    ) -> WriterProperties {
        if let Some(properties) = self.lock().get(table).cloned() {
            return properties;
        }
        let properties = file_properties(base, batch);
        if batch.num_rows() >= SAMPLE_ROWS {
            // Two threads may have chosen at once, from batches alike: either choice does.
            self.lock()
                .entry(table.to_string())
                .or_insert_with(|| properties.clone());
        }
        properties
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, WriterProperties>> {
        // A panic while holding it leaves a complete map: each entry is inserted whole.
        self.chosen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `base`, with the dictionary turned off for every top-level column of `batch` that
/// holds mostly distinct values, and no statistics for text columns.
fn file_properties(base: &WriterProperties, batch: &RecordBatch) -> WriterProperties {
    let mut builder = base.clone().into_builder();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let path = || ColumnPath::from(field.name().as_str());
        if mostly_distinct(column.as_ref()) == Some(true) {
            builder = builder.set_column_dictionary_enabled(path(), false);
        }
        if matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8) {
            builder = builder.set_column_statistics_enabled(path(), EnabledStatistics::None);
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
    // Values are counted by a 64-bit key each (the value itself when it fits, else its
    // hash): a set of integers costs a fraction of one of byte slices, and among 2,048
    // values two hashes collide with a probability of about 1e-13.
    let mut distinct = FxHashSet::with_capacity_and_hasher(SAMPLE_ROWS, FxBuildHasher);
    match column.data_type() {
        DataType::Utf8 => distinct.extend(column.as_string::<i32>().iter().flatten().map(text_key)),
        DataType::LargeUtf8 => {
            distinct.extend(column.as_string::<i64>().iter().flatten().map(text_key))
        }
        data_type if data_type.is_primitive() => {
            let width = data_type.primitive_width()?;
            let data = column.to_data();
            let bytes = &data.buffers()[0].as_slice()[data.offset() * width..];
            let slots = bytes.chunks_exact(width).take(column.len());
            match column.nulls() {
                Some(nulls) => distinct.extend(
                    slots
                        .zip(nulls.iter())
                        .filter(|(_, valid)| *valid)
                        .map(|(slot, _)| slot_key(slot)),
                ),
                None => distinct.extend(slots.map(slot_key)),
            }
        }
        _ => return None,
    }
    Some(distinct.len() as f64 > MAX_DISTINCT_SHARE * values as f64)
}

/// The key of a text value: its hash.
fn text_key(text: &str) -> u64 {
    FxBuildHasher.hash_one(text.as_bytes())
}

/// The key of a primitive value's little-endian bytes: the value itself up to 8 bytes,
/// the hash of wider ones (decimals).
fn slot_key(slot: &[u8]) -> u64 {
    match <[u8; 8]>::try_from(slot) {
        Ok(bytes) => u64::from_le_bytes(bytes),
        Err(_) if slot.len() < 8 => {
            let mut bytes = [0; 8];
            bytes[..slot.len()].copy_from_slice(slot);
            u64::from_le_bytes(bytes)
        }
        Err(_) => FxBuildHasher.hash_one(slot),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Decimal128Array, Float64Array, Int32Array, Int64Array, StringArray};
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
    fn narrow_and_wide_numbers_are_told_apart_by_value() {
        let rows = 4096;
        let properties = properties_of(vec![
            ("n32", Arc::new(Int32Array::from_iter_values(0..rows))),
            (
                "mod32",
                Arc::new(Int32Array::from_iter_values((0..rows).map(|n| n % 7))),
            ),
            (
                "decimal",
                Arc::new(
                    Decimal128Array::from_iter_values((0..rows).map(|n| i128::from(n) << 70))
                        .with_precision_and_scale(38, 0)
                        .unwrap(),
                ),
            ),
            (
                "decimal_mod",
                Arc::new(
                    Decimal128Array::from_iter_values((0..rows).map(|n| i128::from(n % 3) << 70))
                        .with_precision_and_scale(38, 0)
                        .unwrap(),
                ),
            ),
        ]);
        assert!(!dictionary(&properties, "n32"));
        assert!(dictionary(&properties, "mod32"));
        assert!(!dictionary(&properties, "decimal"));
        assert!(dictionary(&properties, "decimal_mod"));
    }

    #[test]
    fn text_columns_have_no_statistics_and_others_keep_page_statistics() {
        let properties = properties_of(vec![
            ("id", Arc::new(StringArray::from_iter_values(["a", "b"]))),
            ("n", Arc::new(Int64Array::from_iter_values([1, 2]))),
            (
                "ratio",
                Arc::new(Float64Array::from_iter_values([0.5, 1.0])),
            ),
        ]);
        let statistics = |column| properties.statistics_enabled(&ColumnPath::from(column));
        assert_eq!(statistics("id"), EnabledStatistics::None);
        assert_eq!(statistics("n"), EnabledStatistics::Page);
        assert_eq!(statistics("ratio"), EnabledStatistics::Page);
    }

    fn batch_of(name: &str, column: Arc<dyn Array>) -> RecordBatch {
        let schema = Schema::new(vec![Field::new(name, column.data_type().clone(), true)]);
        RecordBatch::try_new(Arc::new(schema), vec![column]).unwrap()
    }

    fn numbered(rows: usize, every: usize) -> Arc<dyn Array> {
        Arc::new(StringArray::from_iter_values(
            (0..rows).map(|n| format!("id-{}", n / every)),
        ))
    }

    #[test]
    fn a_table_chooses_once_from_its_first_batch_that_fills_the_sample() {
        let base = WriterProperties::builder().build();
        let encodings = TableEncodings::default();
        // Too small to tell: its own choice (dictionary on), not the table's.
        let small = encodings.for_file(&base, "t", &batch_of("id", numbered(100, 1)));
        assert!(dictionary(&small, "id"));
        // Distinct ids: off, and so for the table's later files whatever their values.
        let first = encodings.for_file(&base, "t", &batch_of("id", numbered(SAMPLE_ROWS, 1)));
        assert!(!dictionary(&first, "id"));
        let later = encodings.for_file(&base, "t", &batch_of("id", numbered(SAMPLE_ROWS, 10)));
        assert!(!dictionary(&later, "id"));
        // Another table chooses its own.
        let other = encodings.for_file(&base, "u", &batch_of("id", numbered(SAMPLE_ROWS, 10)));
        assert!(dictionary(&other, "id"));
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
