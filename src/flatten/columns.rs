//! The Arrow columns a table is built in, one per declared column type, and the plain
//! conversions of a parsed JSON value to each type.
//!
//! Primitive columns (integers, floats, timestamps) are a `Vec` of values and a null bitmap
//! ([`Values`]) instead of arrow's builders: appending a value or a null is a push and a bit,
//! inlined, where a builder call reserved and zero-filled per value (BENCHMARKS.md). The
//! arrays they finish into are the same. Strings stay in arrow's `StringBuilder`: a column
//! of our own was measured to cost as many instructions. A column's nulls are counted and
//! appended as one run before its next value ([`ColumnBuilder`]).
//!
//! May touch: arrow, [`super::dom`] (the values), [`super::values`] (conversions),
//! [`crate::quality`] (derived values). Knows nothing of tables, paths or privacy.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Decimal128Builder, ListBuilder, NullBufferBuilder, StringBuilder,
};
use arrow_array::types::{
    Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{ArrayRef, ArrowPrimitiveType, PrimitiveArray};

use super::dom::{Item, Node};
use super::values;
use crate::quality::DerivedValue;
use crate::schema::{ColumnType, UTC};

/// The values of one primitive column so far; a null is a zero with its bit cleared.
pub(super) struct Values<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    nulls: NullBufferBuilder,
}

impl<T: ArrowPrimitiveType> Values<T> {
    fn new() -> Self {
        Values {
            values: Vec::new(),
            nulls: NullBufferBuilder::new(0),
        }
    }

    #[inline]
    fn push(&mut self, value: T::Native) {
        self.values.push(value);
        self.nulls.append_non_null();
    }

    #[inline]
    fn push_null(&mut self) {
        self.values.push(T::Native::default());
        self.nulls.append_null();
    }

    fn push_nulls(&mut self, count: usize) {
        self.values
            .resize(self.values.len() + count, T::Native::default());
        self.nulls.append_n_nulls(count);
    }

    fn push_option(&mut self, value: Option<T::Native>) {
        match value {
            Some(value) => self.push(value),
            None => self.push_null(),
        }
    }

    /// The values so far as an array; the column starts empty again.
    fn finish(&mut self) -> PrimitiveArray<T> {
        PrimitiveArray::new(std::mem::take(&mut self.values).into(), self.nulls.finish())
    }
}

/// One column being built. Its nulls are counted, not appended, until its next value or
/// its batch's end, and then appended as one run: most columns of a stream are null on most
/// rows (70 % of a meeting's), and a null appended on its own cost as much as a value
/// (66 instructions, 3 % of `reflatten`'s: BENCHMARKS.md).
pub(super) struct ColumnBuilder {
    builder: Builder,
    /// Nulls since the last value, not appended yet.
    pending_nulls: usize,
}

impl ColumnBuilder {
    /// An empty column of `column_type` (see `Builder::new`).
    pub(super) fn new(column_type: ColumnType) -> Self {
        ColumnBuilder {
            builder: Builder::new(column_type),
            pending_nulls: 0,
        }
    }

    /// The column's values so far as an array; the column starts empty again.
    pub(super) fn finish(&mut self) -> ArrayRef {
        self.values().finish()
    }

    #[inline]
    pub(super) fn append_null(&mut self) {
        self.pending_nulls += 1;
    }

    /// The builder, with the nulls counted so far appended: what comes next is a value.
    #[inline]
    fn values(&mut self) -> &mut Builder {
        if self.pending_nulls > 0 {
            self.builder
                .append_nulls(std::mem::take(&mut self.pending_nulls));
        }
        &mut self.builder
    }

    /// Appends `value` (not null), converted by the column type alone. An error leaves a
    /// null appended.
    #[inline]
    pub(super) fn append_value(&mut self, value: Item<'_, '_>) -> Result<(), String> {
        self.values().append_value(value)
    }

    pub(super) fn append_str(&mut self, value: Option<&str>) {
        match value {
            Some(_) => self.values().append_str(value),
            None => self.append_null(),
        }
    }

    pub(super) fn append_f64(&mut self, value: f64) {
        self.values().append_f64(value);
    }

    pub(super) fn append_timestamp(&mut self, micros: i64) {
        self.values().append_timestamp(micros);
    }

    pub(super) fn append_derived(&mut self, value: DerivedValue<'_>) {
        if value.is_null() {
            self.append_null();
        } else {
            self.values().append_derived(value);
        }
    }

    pub(super) fn append_i32(&mut self, value: i32) {
        self.values().append_i32(value);
    }

    /// The list builder of a `list<string>` column, for items appended one by one.
    pub(super) fn list(&mut self) -> Option<&mut ListBuilder<StringBuilder>> {
        match self.values() {
            Builder::List(list) => Some(list),
            _ => None,
        }
    }
}

/// Arrow builders, one variant per declared column type; the large and rare ones boxed
/// (see `Column` in the parent module).
enum Builder {
    Utf8(StringBuilder),
    Int32(Values<Int32Type>),
    Int64(Values<Int64Type>),
    Float32(Values<Float32Type>),
    Float64(Values<Float64Type>),
    Boolean(BooleanBuilder),
    Timestamp(Values<TimestampMicrosecondType>),
    Decimal(Box<Decimal128Builder>, u8, i8),
    List(Box<ListBuilder<StringBuilder>>),
}

impl Builder {
    /// An empty column that holds no memory until its first value. A worker makes a whole
    /// set of tables per day it meets, and arrow's builders' `new` reserves 1,024 values
    /// each (5 KiB per string column, 6 MiB of tables per worker for a week of call
    /// records before a row is read): with 64 workers, peak memory 80 MiB higher
    /// (BENCHMARKS.md).
    fn new(column_type: ColumnType) -> Self {
        match column_type {
            ColumnType::String => Builder::Utf8(empty_strings()),
            ColumnType::Int32 => Builder::Int32(Values::new()),
            ColumnType::Int64 => Builder::Int64(Values::new()),
            ColumnType::Float => Builder::Float32(Values::new()),
            ColumnType::Double => Builder::Float64(Values::new()),
            ColumnType::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(0)),
            ColumnType::Timestamp => Builder::Timestamp(Values::new()),
            ColumnType::Decimal { precision, scale } => Builder::Decimal(
                Box::new(Decimal128Builder::with_capacity(0)),
                precision,
                scale,
            ),
            ColumnType::ListOfString => match column_type.arrow() {
                arrow_schema::DataType::List(element) => Builder::List(Box::new(
                    ListBuilder::with_capacity(empty_strings(), 0).with_field(element),
                )),
                _ => unreachable!("list<string> is an Arrow list"),
            },
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float32(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Boolean(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish().with_timezone(UTC)),
            Builder::Decimal(b, precision, scale) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*precision, *scale)
                    .expect("declared decimal precision is valid"),
            ),
            Builder::List(b) => Arc::new(b.finish()),
        }
    }

    /// `count` nulls at once: a run of them costs about what one did.
    fn append_nulls(&mut self, count: usize) {
        match self {
            Builder::Utf8(b) => b.append_nulls(count),
            Builder::Int32(b) => b.push_nulls(count),
            Builder::Int64(b) => b.push_nulls(count),
            Builder::Float32(b) => b.push_nulls(count),
            Builder::Float64(b) => b.push_nulls(count),
            Builder::Boolean(b) => b.append_nulls(count),
            Builder::Timestamp(b) => b.push_nulls(count),
            Builder::Decimal(b, ..) => b.append_nulls(count),
            Builder::List(b) => (0..count).for_each(|_| b.append_null()),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Utf8(b) => b.append_null(),
            Builder::Int32(b) => b.push_null(),
            Builder::Int64(b) => b.push_null(),
            Builder::Float32(b) => b.push_null(),
            Builder::Float64(b) => b.push_null(),
            Builder::Boolean(b) => b.append_null(),
            Builder::Timestamp(b) => b.push_null(),
            Builder::Decimal(b, ..) => b.append_null(),
            Builder::List(b) => b.append_null(),
        }
    }

    /// Appends `value` (not null), converted by the column type alone. An error leaves a
    /// null appended.
    fn append_value(&mut self, value: Item<'_, '_>) -> Result<(), String> {
        let result = match self {
            Builder::Utf8(b) => {
                match value.as_str() {
                    Some(text) => b.append_value(text),
                    // A number or boolean where Graph declares a string: keep it as sent.
                    None => b.append_value(value.to_json_string()),
                }
                Ok(())
            }
            Builder::Int32(b) => integer(value).and_then(|n| {
                let n =
                    i32::try_from(n).map_err(|_| format!("{n} does not fit a 32-bit integer"))?;
                b.push(n);
                Ok(())
            }),
            Builder::Int64(b) => integer(value).map(|n| b.push(n)),
            Builder::Float32(b) => float(value).map(|n| b.push(n as f32)),
            Builder::Float64(b) => float(value).map(|n| b.push(n)),
            Builder::Boolean(b) => {
                let parsed = match value.node() {
                    Node::Bool(v) => Some(v.get()),
                    Node::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
                    Node::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
                    _ => None,
                };
                parsed
                    .map(|v| b.append_value(v))
                    .ok_or_else(|| format!("{value} is not a boolean"))
            }
            Builder::Timestamp(b) => match value.as_str() {
                Some(s) => values::parse_timestamp_micros(s).map(|micros| b.push_option(micros)),
                None => Err(format!("{value} is not a timestamp")),
            },
            Builder::Decimal(b, precision, scale) => {
                // Graph sends money as JSON numbers (`12.83`); their shortest text form is the
                // decimal that was sent, which is parsed exactly, never through a float.
                let text = match value.node() {
                    Node::Int(_) | Node::Uint(_) | Node::Float(_) => {
                        Some(Cow::Owned(value.to_json_string()))
                    }
                    Node::Str(s) => Some(Cow::Borrowed(s.as_ref())),
                    _ => None,
                };
                match text {
                    None => Err(format!("{value} is not a decimal number")),
                    Some(text) => values::parse_decimal128(&text, *precision, *scale)
                        .map(|v| b.append_value(v)),
                }
            }
            Builder::List(b) => match value.node() {
                Node::Array { .. } => {
                    for item in value.items() {
                        match item.node() {
                            Node::Str(s) => b.values().append_value(s),
                            Node::Null | Node::Absent => b.values().append_null(),
                            _ => b.values().append_value(item.to_json_string()),
                        }
                    }
                    b.append(true);
                    Ok(())
                }
                _ => Err(format!("{value} is not an array")),
            },
        };
        if result.is_err() {
            self.append_null();
        }
        result
    }

    fn append_str(&mut self, value: Option<&str>) {
        match self {
            Builder::Utf8(b) => b.append_option(value),
            _ => unreachable!(
                "text conversions are declared on string columns (checked by TableBuilder::new)"
            ),
        }
    }

    fn append_f64(&mut self, value: f64) {
        match self {
            Builder::Float64(b) => b.push(value),
            _ => unreachable!(
                "duration_ms is declared on double columns (checked by TableBuilder::new)"
            ),
        }
    }

    fn append_timestamp(&mut self, micros: i64) {
        match self {
            Builder::Timestamp(b) => b.push(micros),
            _ => unreachable!(
                "report bounds are declared as timestamps (checked by TableBuilder::new)"
            ),
        }
    }

    fn append_derived(&mut self, value: DerivedValue<'_>) {
        match (self, value) {
            (Builder::Utf8(b), DerivedValue::Text(v)) => b.append_option(v),
            (Builder::Int32(b), DerivedValue::Count(v)) => b.push_option(v),
            (Builder::Boolean(b), DerivedValue::Flag(v)) => b.append_option(v),
            (Builder::Float64(b), DerivedValue::Number(v)) => b.push_option(v),
            (Builder::List(b), DerivedValue::Reasons(Some(reasons))) => {
                for column in reasons.columns() {
                    b.values().append_value(column);
                }
                b.append(true);
            }
            (Builder::List(b), DerivedValue::Reasons(None)) => b.append_null(),
            _ => unreachable!(
                "derived columns are declared with their kind's type (checked by TableBuilder::new)"
            ),
        }
    }

    fn append_i32(&mut self, value: i32) {
        match self {
            Builder::Int32(b) => b.push(value),
            _ => unreachable!("position keys are declared as int32 (checked by TableBuilder::new)"),
        }
    }
}

fn empty_strings() -> StringBuilder {
    StringBuilder::with_capacity(0, 0)
}

pub(super) fn integer(value: Item<'_, '_>) -> Result<i64, String> {
    match value.node() {
        Node::Int(n) => Ok(*n),
        Node::Uint(n) => i64::try_from(*n).map_err(|_| format!("{n} is not an integer")),
        Node::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(*f as i64),
        Node::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("\"{s}\" is not an integer")),
        _ => Err(format!("{value} is not an integer")),
    }
}

pub(super) fn float(value: Item<'_, '_>) -> Result<f64, String> {
    match value.node() {
        Node::Int(n) => Ok(*n as f64),
        Node::Uint(n) => Ok(*n as f64),
        Node::Float(f) => Ok(*f),
        Node::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("\"{s}\" is not a number")),
        _ => Err(format!("{value} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::{Array, Float64Array, Int32Array, StringArray};

    use super::*;

    /// Values, runs of nulls between them, and nulls that end the batch.
    const ROWS: [Option<i32>; 8] = [None, Some(1), None, None, Some(2), Some(3), None, None];

    #[test]
    fn nulls_counted_between_values_come_out_in_their_rows() {
        let mut strings = ColumnBuilder::new(ColumnType::String);
        let mut integers = ColumnBuilder::new(ColumnType::Int32);
        let mut doubles = ColumnBuilder::new(ColumnType::Double);
        let mut flags = ColumnBuilder::new(ColumnType::Boolean);
        for row in ROWS {
            let text = row.map(|n| n.to_string());
            strings.append_str(text.as_deref());
            match row {
                Some(n) => {
                    integers.append_i32(n);
                    doubles.append_f64(f64::from(n));
                }
                None => {
                    integers.append_null();
                    doubles.append_null();
                }
            }
            flags.append_derived(DerivedValue::Flag(row.map(|n| n > 1)));
        }
        let expected = ROWS.map(|row| row.map(|n| n.to_string()));
        assert_eq!(
            strings.finish().as_string::<i32>(),
            &StringArray::from(expected.to_vec())
        );
        let integers = integers.finish();
        assert_eq!(integers.as_primitive(), &Int32Array::from(ROWS.to_vec()));
        let doubles = doubles.finish();
        let expected = ROWS.map(|row| row.map(f64::from));
        assert_eq!(
            doubles.as_primitive(),
            &Float64Array::from(expected.to_vec())
        );
        let flags = flags.finish();
        let expected = ROWS.map(|row| row.map(|n| n > 1));
        assert_eq!(flags.as_boolean(), &expected.to_vec().into());
    }

    #[test]
    fn a_finished_column_starts_again_without_the_nulls_it_had() {
        let mut column = ColumnBuilder::new(ColumnType::Timestamp);
        column.append_null();
        column.append_null();
        assert_eq!(column.finish().null_count(), 2);
        column.append_timestamp(7);
        let again = column.finish();
        assert_eq!((again.len(), again.null_count()), (1, 0));
        assert_eq!(column.finish().len(), 0);
    }
}
