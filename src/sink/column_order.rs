//! The column order a Parquet footer declares for float and double columns.
//!
//! parquet-rs 60 declares `IEEE_754_TOTAL_ORDER` for them and has no switch for it.
//! parquet-mr (Spark's Java reader, Hive) predates that order: it drops those columns'
//! min/max statistics, and Hive's legacy SerDe fails on the columns. pyarrow and parquet-mr
//! declare `TYPE_DEFINED_ORDER`, whose float statistics exclude NaN, as parquet-rs's do; so
//! the statistics stay right and only the declaration changes.
//!
//! [`TypeDefinedOrder`] is a writer between the Parquet writer and the file: it passes the
//! bytes through, holding back the file's last bytes, where the footer's `column_orders`
//! list ends, and rewrites each `IEEE_754_TOTAL_ORDER` there into `TYPE_DEFINED_ORDER`
//! (both encode in 3 bytes, so no offset or length moves). It checks the footer's layout
//! exactly and refuses a footer it does not recognise. Knows nothing of Arrow or the store.

use std::io::{self, Write};

/// Thrift compact encodings of a `ColumnOrder` union (an empty struct in field 1, 2 or 3,
/// its stop, the union's stop).
const TYPE_DEFINED: [u8; 3] = [0x1C, 0x00, 0x00];
const IEEE_754_TOTAL: [u8; 3] = [0x2C, 0x00, 0x00];
const INT96_TIMESTAMP: [u8; 3] = [0x3C, 0x00, 0x00];

/// The footer's trailer: the metadata's length (4 bytes) and `PAR1`.
const TRAILER: usize = 8;

/// Passes a Parquet file through to `inner`, rewriting the float column orders of its footer
/// ([`TypeDefinedOrder::finish`]).
pub struct TypeDefinedOrder<W: Write> {
    inner: W,
    /// The leaf columns of the file's schema: one column order each.
    columns: usize,
    /// The last bytes written, not yet passed on: at most [`Self::hold`] after each write.
    held: Vec<u8>,
}

impl<W: Write> TypeDefinedOrder<W> {
    pub fn new(inner: W, columns: usize) -> Self {
        TypeDefinedOrder {
            inner,
            columns,
            held: Vec::new(),
        }
    }

    /// The bytes held back: the trailer, the metadata's stop, the column orders, their list
    /// header (at most 6 bytes) and field header.
    fn hold(&self) -> usize {
        TRAILER + 1 + 3 * self.columns + 6 + 1
    }

    /// Rewrites the held footer's column orders and writes it; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let end = self.held.len();
        if end < TRAILER || &self.held[end - 4..] != b"PAR1" {
            return Err(unrecognised("no Parquet trailer"));
        }
        let footer = end - TRAILER;
        let orders = column_orders(&self.held[..footer], self.columns)?;
        for order in self.held[orders].chunks_exact_mut(3) {
            if *order == IEEE_754_TOTAL {
                order.copy_from_slice(&TYPE_DEFINED);
            }
        }
        self.inner.write_all(&self.held)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for TypeDefinedOrder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let hold = self.hold();
        if buf.len() >= hold {
            self.inner.write_all(&self.held)?;
            self.held.clear();
            self.inner.write_all(&buf[..buf.len() - hold])?;
            self.held.extend_from_slice(&buf[buf.len() - hold..]);
        } else {
            self.held.extend_from_slice(buf);
            if self.held.len() > hold {
                let pass = self.held.len() - hold;
                self.inner.write_all(&self.held[..pass])?;
                self.held.drain(..pass);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Where the `columns` column orders lie in `metadata`, the end of a Thrift-encoded
/// `FileMetaData` (unencrypted, so its last field is `column_orders`, field 7): the range
/// of their bytes, after checking the field header, the list header and each order.
fn column_orders(metadata: &[u8], columns: usize) -> io::Result<std::ops::Range<usize>> {
    let Some((&0x00, before)) = metadata.split_last() else {
        return Err(unrecognised("the metadata does not end with a stop"));
    };
    let Some(start) = before.len().checked_sub(3 * columns) else {
        return Err(unrecognised("too short for its column orders"));
    };
    let orders = start..before.len();
    if !before[orders.clone()].chunks_exact(3).all(|order| {
        [TYPE_DEFINED, IEEE_754_TOTAL, INT96_TIMESTAMP].contains(&order.try_into().unwrap())
    }) {
        return Err(unrecognised("its last field is not the column orders"));
    }
    // A list of structs: `size << 4 | 0xC` below 15 elements, else 0xFC and a varint size.
    let header: Vec<u8> = if columns < 15 {
        vec![(columns as u8) << 4 | 0x0C]
    } else {
        let mut header = vec![0xFC];
        let mut size = columns;
        while size >= 0x80 {
            header.push((size as u8 & 0x7F) | 0x80);
            size >>= 7;
        }
        header.push(size as u8);
        header
    };
    let fields = &before[..start];
    let recognised = fields.ends_with(&header)
        && fields
            .len()
            .checked_sub(header.len() + 1)
            // Field 7, a list, after an earlier field (delta in the high nibble).
            .is_some_and(|at| fields[at] & 0x0F == 0x09 && fields[at] >> 4 != 0);
    if !recognised {
        return Err(unrecognised("no list of column orders in its last field"));
    }
    Ok(orders)
}

fn unrecognised(what: &str) -> io::Error {
    io::Error::other(format!(
        "cannot set the type-defined column order in a Parquet footer: {what}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch};
    use bytes::Bytes;
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{ColumnOrder, SortOrder};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    /// A file with `wide` float columns and an integer one, through the rewriter.
    fn file(wide: usize) -> Bytes {
        let mut columns: Vec<(String, ArrayRef)> = (0..wide)
            .map(|i| {
                let array: ArrayRef = if i % 2 == 0 {
                    Arc::new(Float64Array::from(vec![Some(2.5), None, Some(-1.0)]))
                } else {
                    Arc::new(Float32Array::from(vec![Some(0.5), Some(f32::NAN), None]))
                };
                (format!("f{i}"), array)
            })
            .collect();
        columns.push(("n".into(), Arc::new(Int64Array::from(vec![1, 2, 3]))));
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let sink = TypeDefinedOrder::new(Vec::new(), wide + 1);
        let mut writer = ArrowWriter::try_new(sink, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        Bytes::from(writer.into_inner().unwrap().finish().unwrap())
    }

    #[test]
    fn float_columns_declare_the_type_defined_order_and_keep_min_max() {
        // Below and above 15 columns: the list's two header forms.
        for wide in [3, 20] {
            let reader = SerializedFileReader::new(file(wide)).unwrap();
            let metadata = reader.metadata();
            let orders = metadata.file_metadata().column_orders().unwrap();
            assert_eq!(orders.len(), wide + 1);
            for (i, order) in orders.iter().enumerate() {
                let signed = ColumnOrder::TYPE_DEFINED_ORDER(SortOrder::SIGNED);
                assert_eq!(*order, signed, "column {i}");
            }
            let row_group = metadata.row_group(0);
            let stats = row_group.column(0).statistics().unwrap();
            assert_eq!(stats.min_bytes_opt().unwrap(), (-1.0f64).to_le_bytes());
            assert_eq!(stats.max_bytes_opt().unwrap(), 2.5f64.to_le_bytes());
            // NaN stays out of the statistics, as the type-defined order wants.
            let stats = row_group.column(1).statistics().unwrap();
            assert_eq!(stats.min_bytes_opt().unwrap(), 0.5f32.to_le_bytes());
            assert_eq!(stats.max_bytes_opt().unwrap(), 0.5f32.to_le_bytes());
            assert_eq!(row_group.num_rows(), 3);
        }
    }

    #[test]
    fn a_footer_it_does_not_recognise_is_refused() {
        let good = file(3);
        // Told the wrong number of columns, the layout check fails.
        let mut sink = TypeDefinedOrder::new(Vec::new(), 5);
        sink.write_all(&good).unwrap();
        assert!(sink.finish().is_err());
        let mut sink = TypeDefinedOrder::new(Vec::new(), 4);
        sink.write_all(&good[..good.len() - 1]).unwrap();
        assert!(sink.finish().is_err());
    }
}
