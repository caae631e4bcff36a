//! The Arrow columns a table is built in, one per declared column type, and the plain
//! conversions of a parsed JSON value to each type.
//!
//! Primitive columns (integers, floats, timestamps) are a `Vec` of values and a null bitmap
//! ([`Values`]) instead of arrow's builders: appending a value or a null is a push and a bit,
//! inlined, where a builder call reserved and zero-filled per value (BENCHMARKS.md). The
//! arrays they finish into are the same. Strings stay in arrow's `StringBuilder`: a column
//! of our own was measured to cost as many instructions.
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

/// Arrow builders, one variant per declared column type; the large and rare ones boxed
/// (see `Column` in the parent module).
pub(super) enum ColumnBuilder {
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

impl ColumnBuilder {
    /// An empty column that holds no memory until its first value. A worker makes a whole
    /// set of tables per day it meets, and arrow's builders' `new` reserves 1,024 values
    /// each (5 KiB per string column, 6 MiB of tables per worker for a week of call
    /// records before a row is read): with 64 workers, peak memory 80 MiB higher
    /// (BENCHMARKS.md).
    pub(super) fn new(column_type: ColumnType) -> Self {
        match column_type {
            ColumnType::String => ColumnBuilder::Utf8(empty_strings()),
            ColumnType::Int32 => ColumnBuilder::Int32(Values::new()),
            ColumnType::Int64 => ColumnBuilder::Int64(Values::new()),
            ColumnType::Float => ColumnBuilder::Float32(Values::new()),
            ColumnType::Double => ColumnBuilder::Float64(Values::new()),
            ColumnType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::with_capacity(0)),
            ColumnType::Timestamp => ColumnBuilder::Timestamp(Values::new()),
            ColumnType::Decimal { precision, scale } => ColumnBuilder::Decimal(
                Box::new(Decimal128Builder::with_capacity(0)),
                precision,
                scale,
            ),
            ColumnType::ListOfString => match column_type.arrow() {
                arrow_schema::DataType::List(element) => ColumnBuilder::List(Box::new(
                    ListBuilder::with_capacity(empty_strings(), 0).with_field(element),
                )),
                _ => unreachable!("list<string> is an Arrow list"),
            },
        }
    }

    pub(super) fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Utf8(b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Float32(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::Boolean(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish().with_timezone(UTC)),
            ColumnBuilder::Decimal(b, precision, scale) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*precision, *scale)
                    .expect("declared decimal precision is valid"),
            ),
            ColumnBuilder::List(b) => Arc::new(b.finish()),
        }
    }

    pub(super) fn append_null(&mut self) {
        match self {
            ColumnBuilder::Utf8(b) => b.append_null(),
            ColumnBuilder::Int32(b) => b.push_null(),
            ColumnBuilder::Int64(b) => b.push_null(),
            ColumnBuilder::Float32(b) => b.push_null(),
            ColumnBuilder::Float64(b) => b.push_null(),
            ColumnBuilder::Boolean(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.push_null(),
            ColumnBuilder::Decimal(b, ..) => b.append_null(),
            ColumnBuilder::List(b) => b.append_null(),
        }
    }

    /// Appends `value` (not null), converted by the column type alone. An error leaves a
    /// null appended.
    pub(super) fn append_value(&mut self, value: Item<'_, '_>) -> Result<(), String> {
        let result = match self {
            ColumnBuilder::Utf8(b) => {
                match value.as_str() {
                    Some(text) => b.append_value(text),
                    // A number or boolean where Graph declares a string: keep it as sent.
                    None => b.append_value(value.to_json_string()),
                }
                Ok(())
            }
            ColumnBuilder::Int32(b) => integer(value).and_then(|n| {
                let n =
                    i32::try_from(n).map_err(|_| format!("{n} does not fit a 32-bit integer"))?;
                b.push(n);
                Ok(())
            }),
            ColumnBuilder::Int64(b) => integer(value).map(|n| b.push(n)),
            ColumnBuilder::Float32(b) => float(value).map(|n| b.push(n as f32)),
            ColumnBuilder::Float64(b) => float(value).map(|n| b.push(n)),
            ColumnBuilder::Boolean(b) => {
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
            ColumnBuilder::Timestamp(b) => match value.as_str() {
                Some(s) => values::parse_timestamp_micros(s).map(|micros| b.push_option(micros)),
                None => Err(format!("{value} is not a timestamp")),
            },
            ColumnBuilder::Decimal(b, precision, scale) => {
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
            ColumnBuilder::List(b) => match value.node() {
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

    pub(super) fn append_str(&mut self, value: Option<&str>) {
        match self {
            ColumnBuilder::Utf8(b) => b.append_option(value),
            _ => unreachable!(
                "text conversions are declared on string columns (checked by TableBuilder::new)"
            ),
        }
    }

    pub(super) fn append_f64(&mut self, value: f64) {
        match self {
            ColumnBuilder::Float64(b) => b.push(value),
            _ => unreachable!(
                "duration_ms is declared on double columns (checked by TableBuilder::new)"
            ),
        }
    }

    pub(super) fn append_timestamp(&mut self, micros: i64) {
        match self {
            ColumnBuilder::Timestamp(b) => b.push(micros),
            _ => unreachable!(
                "report bounds are declared as timestamps (checked by TableBuilder::new)"
            ),
        }
    }

    pub(super) fn append_derived(&mut self, value: DerivedValue<'_>) {
        match (self, value) {
            (ColumnBuilder::Utf8(b), DerivedValue::Text(v)) => b.append_option(v),
            (ColumnBuilder::Int32(b), DerivedValue::Count(v)) => b.push_option(v),
            (ColumnBuilder::Boolean(b), DerivedValue::Flag(v)) => b.append_option(v),
            (ColumnBuilder::Float64(b), DerivedValue::Number(v)) => b.push_option(v),
            (ColumnBuilder::List(b), DerivedValue::Reasons(Some(reasons))) => {
                for column in reasons.columns() {
                    b.values().append_value(column);
                }
                b.append(true);
            }
            (ColumnBuilder::List(b), DerivedValue::Reasons(None)) => b.append_null(),
            _ => unreachable!(
                "derived columns are declared with their kind's type (checked by TableBuilder::new)"
            ),
        }
    }

    pub(super) fn append_i32(&mut self, value: i32) {
        match self {
            ColumnBuilder::Int32(b) => b.push(value),
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
