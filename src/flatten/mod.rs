//! Nested Graph JSON → rows of the declared tables, in Arrow builders.
//!
//! A [`TableBuilder`] fills one table from JSON objects by the column declarations of
//! `schemas/<table>.json`: each column names a path from the row object and a conversion,
//! so adding a column is a change to the declaration, not to this code. The per-stream
//! walkers ([`call_records`]) decide which object is a row of which table and supply the
//! values only they know (the call id, position keys) through a [`RowContext`].
//!
//! Rows are read from a [`dom::Dom`], parsed with the [`shape::Shapes`] the declarations
//! compile to: only the members some column reads are kept, and a column's path is a list
//! of slot numbers, so the hot path neither allocates per member nor compares keys. Each
//! column is compiled once into a `Column`: the object on its path it reads from (an
//! anchor, found once per row for all the columns below it), its slot there, what becomes
//! of the value (converted by type alone, or as declared and protected), and its Arrow
//! column (`columns`); a value costs one slot read and one match. Raw
//! JSON lines (`reflatten`) and records fetched from Graph (`export`, which assembles a
//! record's pages into the JSON text of its raw line) are parsed from the same text by the
//! same parser, so both give the same rows.
//!
//! Personal data is written as the run's [`Privacy`] says: each column's `pii` class is
//! turned into a `Protection` once, when the builder is made, so the hot path only
//! matches on it (no lookups per cell).
//!
//! Derived columns (`$quality`, `$audio_streams_poor`, `$caller_building`, ...) take their
//! values from the walker's [`Derivations`] ([`crate::quality`]).
//!
//! May touch: arrow, serde_json, [`crate::schema`], [`crate::privacy`], [`crate::quality`].
//! Knows nothing of HTTP or files.

pub mod call_records;
mod columns;
pub mod dom;
pub mod shape;
pub mod values;

use std::borrow::Cow;
use std::sync::OnceLock;

use arrow_array::{ArrayRef, RecordBatch};
use serde_json::Value;

use self::columns::ColumnBuilder;
use self::dom::{Dom, Item, Node};
use self::shape::{ShapeId, Shapes};
use crate::privacy::{ColumnClass, PiiClass, Privacy, Treatment, is_phone_number};
use crate::quality::{Derivations, Derived, DerivedKind};
use crate::schema::{self, ColumnSchema, ColumnType, Convert, TableSchema};

/// Values of a row that do not come from its JSON object: whose call it is and where it sits.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowContext<'a> {
    pub call_id: &'a str,
    pub session_index: i32,
    pub segment_index: i32,
    pub media_index: i32,
    pub stream_index: i32,
    pub hop_index: i32,
    pub participant_index: i32,
    /// `caller` / `callee` (trace-route hops).
    pub side: &'static str,
    /// `participant` / `organizer` (participants).
    pub role: &'static str,
    /// The range a report row aggregates (microseconds since the epoch, UTC).
    pub report_from: i64,
    pub report_to: i64,
    /// Stream classifications, roll-ups and sites ([`crate::quality`]).
    pub derived: Derivations<'a>,
}

/// The names a declaration may use as `$name` paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContextKey {
    CallId,
    SessionIndex,
    SegmentIndex,
    MediaIndex,
    StreamIndex,
    HopIndex,
    ParticipantIndex,
    Side,
    Role,
    ReportFrom,
    ReportTo,
    Derived(Derived),
}

impl ContextKey {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "call_id" => ContextKey::CallId,
            "session_index" => ContextKey::SessionIndex,
            "segment_index" => ContextKey::SegmentIndex,
            "media_index" => ContextKey::MediaIndex,
            "stream_index" => ContextKey::StreamIndex,
            "hop_index" => ContextKey::HopIndex,
            "participant_index" => ContextKey::ParticipantIndex,
            "side" => ContextKey::Side,
            "role" => ContextKey::Role,
            "report_from" => ContextKey::ReportFrom,
            "report_to" => ContextKey::ReportTo,
            _ => ContextKey::Derived(Derived::parse(name)?),
        })
    }
}

/// A value that could not be converted to its column: reported, written as null.
#[derive(Debug, Clone, PartialEq)]
pub struct FlattenIssue {
    pub table: &'static str,
    pub column: &'static str,
    pub record_id: String,
    pub message: String,
}

impl std::fmt::Display for FlattenIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{} of record {}: {}",
            self.table, self.column, self.record_id, self.message
        )
    }
}

/// Where a column's value is read.
#[derive(Debug, Clone, Copy)]
enum Read {
    Context(ContextKey),
    /// The row value itself (rows that are plain values, like a modality).
    Itself,
    /// Slot `slot` of the object at anchor `anchor` (see [`Anchor`]; the row is anchor 0),
    /// which has shape `shape`.
    Slot {
        anchor: usize,
        shape: ShapeId,
        slot: u16,
    },
}

/// An object on the way from a row to its columns' values (the `callerNetwork` of a media
/// row): slot `slot` of the object at anchor `parent`, which has shape `shape`. Anchors are
/// found once per row, so a column costs one slot read whatever the depth of its path, and
/// the columns below a missing object none.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Anchor {
    parent: usize,
    shape: ShapeId,
    slot: u16,
}

/// Anchors a table may have besides its row (the call tables have at most 12).
const MAX_ANCHORS: usize = 23;

/// What the privacy settings do to one column's values.
#[derive(Debug)]
enum Protection {
    /// Written as read: no personal data, or its class is kept.
    None,
    /// Every value hashed or dropped.
    Value(Treatment),
    /// Identity ids that are phone numbers hashed or dropped; other ids written as read.
    PhoneIds(Treatment),
    /// Identity JSON with its personal members rewritten by class (boxed: see [`Column`]).
    IdentityJson(Box<Privacy>),
}

impl Protection {
    /// The protection of a column of `class` under `privacy`.
    fn of(class: Option<ColumnClass>, privacy: &Privacy) -> Self {
        let treatment = |class| privacy.treatment(class).clone();
        let protection = match class {
            None => Protection::None,
            Some(ColumnClass::Value(class)) => Protection::Value(treatment(class)),
            Some(ColumnClass::IdentityId) => Protection::PhoneIds(treatment(PiiClass::PhoneNumber)),
            Some(ColumnClass::IdentityJson) if privacy.keeps_everything() => Protection::None,
            Some(ColumnClass::IdentityJson) => Protection::IdentityJson(Box::new(privacy.clone())),
        };
        match protection {
            Protection::Value(Treatment::Keep) | Protection::PhoneIds(Treatment::Keep) => {
                Protection::None
            }
            other => other,
        }
    }

    /// The text to write for `text`; `phone_identity` says the value is the id of a
    /// `phone` identity.
    fn apply<'a>(&self, text: Option<Cow<'a, str>>, phone_identity: bool) -> Option<Cow<'a, str>> {
        let text = text?;
        match self {
            Protection::None | Protection::IdentityJson(_) => Some(text),
            Protection::Value(treatment) => treatment.apply(text),
            Protection::PhoneIds(treatment) if phone_identity || is_phone_number(&text) => {
                treatment.apply(text)
            }
            Protection::PhoneIds(_) => Some(text),
        }
    }
}

/// What is done with a column's value, resolved when the builder is made.
#[derive(Debug)]
enum Write {
    /// Converted by the column type alone: no conversion declared, no personal data to protect.
    Plain,
    /// Converted as declared, then protected.
    Converted(Convert, Protection),
}

/// One column compiled for the hot path: where its value is, what becomes of it, and the
/// Arrow column it goes to.
///
/// Every row walks all of its table's columns (up to 100), so their size is what the walk
/// pulls through the core's first-level cache: the rare large parts (a privacy policy, a
/// list or decimal builder) are boxed. At 320 bytes a table's columns filled that cache on
/// their own; at 176, first-level misses fell 6 % (cachegrind, BENCHMARKS.md).
struct Column {
    name: &'static str,
    read: Read,
    write: Write,
    builder: ColumnBuilder,
}

const _: () = assert!(std::mem::size_of::<Column>() <= 192);

impl Column {
    /// Compiles `column` of `table` for rows of shape `row`, adding the objects its path
    /// passes to `anchors` (where they are not yet).
    fn compile(
        table: &'static str,
        column: &'static ColumnSchema,
        privacy: &Privacy,
        (shapes, row): (&Shapes, ShapeId),
        anchors: &mut Vec<Anchor>,
    ) -> Self {
        let read = if let Some(key) = column.path.strip_prefix('$') {
            Read::Context(ContextKey::parse(key).unwrap_or_else(|| {
                panic!(
                    "schemas/{table}.json: column {} uses unknown context value ${key}",
                    column.name
                )
            }))
        } else if column.path.is_empty() {
            Read::Itself
        } else {
            read_path(&slot_path(shapes, row, &column.path), anchors)
        };
        check_convert_fits_type(table, column);
        let write = match (
            column.convert,
            Protection::of(declared_class(table, column), privacy),
        ) {
            (Convert::Plain, Protection::None) => Write::Plain,
            (convert, protection) => Write::Converted(convert, protection),
        };
        Column {
            name: &column.name,
            read,
            write,
            builder: ColumnBuilder::new(column.column_type),
        }
    }

    /// The column's value in a row whose anchors are `anchors`: None when it is absent or
    /// null (and for context values). Always inlined: left to the compiler it stayed a call
    /// per value in [`TableBuilder::append_item`] (1.8 % of reflatten's instructions).
    #[inline(always)]
    fn value<'d, 'a>(&self, anchors: &[Item<'d, 'a>]) -> Option<Item<'d, 'a>> {
        let value = match self.read {
            Read::Slot {
                anchor,
                shape,
                slot,
            } => {
                let holder = anchors[anchor];
                if !holder.is_object() {
                    return None;
                }
                holder.slot(shape, slot)
            }
            Read::Itself => anchors[0],
            Read::Context(_) => return None,
        };
        (!value.is_null()).then_some(value)
    }

    /// Appends the column's value in a row whose anchors are `anchors`. An error leaves a
    /// null appended.
    #[inline]
    fn append(&mut self, anchors: &[Item<'_, '_>], context: &RowContext) -> Result<(), String> {
        if let Read::Context(key) = self.read {
            append_context(&mut self.builder, key, context);
            return Ok(());
        }
        let Some(value) = self.value(anchors) else {
            self.builder.append_null();
            return Ok(());
        };
        match &self.write {
            Write::Plain => self.builder.append_value(value),
            Write::Converted(convert, protection) => {
                append_converted(&mut self.builder, *convert, value, protection)
            }
        }
    }
}

/// The read of the value at the end of `slots`: the objects before it are anchors, added to
/// `anchors` where they are not yet.
fn read_path(slots: &[(ShapeId, u16)], anchors: &mut Vec<Anchor>) -> Read {
    let (&(shape, slot), objects) = slots.split_last().expect("a path has a segment");
    let mut anchor = 0;
    for &(shape, slot) in objects {
        let step = Anchor {
            parent: anchor,
            shape,
            slot,
        };
        anchor = 1 + anchors.iter().position(|a| *a == step).unwrap_or_else(|| {
            anchors.push(step);
            anchors.len() - 1
        });
    }
    Read::Slot {
        anchor,
        shape,
        slot,
    }
}

/// The slots along a dotted `path` from objects of shape `row`, which must have been
/// declared in `shapes` ([`declare_table`]).
fn slot_path(shapes: &Shapes, row: ShapeId, path: &str) -> Vec<(ShapeId, u16)> {
    let mut shape = Some(row);
    path.split('.')
        .map(|segment| {
            let current = shape.unwrap_or_else(|| panic!("{path}: {segment} is below a value"));
            let slot = shapes
                .get(current)
                .slot_of(segment)
                .unwrap_or_else(|| panic!("{path}: {segment} was not declared"));
            shape = shapes.get(current).child(slot);
            (current, slot)
        })
        .collect()
}

/// Declares in `shapes` everything the columns of `table` read from rows of shape `row`.
/// Where several tables share shapes (a callRecord's tree), every table is declared with
/// this before any with [`declare_table_kept_whole`].
pub(crate) fn declare_table(shapes: &mut Shapes, row: ShapeId, table: &'static TableSchema) {
    for column in table.columns.iter().filter(|c| !c.path.starts_with('$')) {
        values::declare_reads(shapes, row, &column.path, column.convert);
    }
}

/// Declares the text the columns of `table` keep whole (see [`declare_table`]).
pub(crate) fn declare_table_kept_whole(
    shapes: &mut Shapes,
    row: ShapeId,
    table: &'static TableSchema,
) {
    for column in table.columns.iter().filter(|c| !c.path.starts_with('$')) {
        values::declare_kept_whole(shapes, row, &column.path, column.convert);
    }
}

/// The shapes of one table read alone (a log row), the row's shape being [`TABLE_ROW`].
fn table_shapes(table: &'static TableSchema) -> &'static Shapes {
    static SHAPES: OnceLock<Vec<Shapes>> = OnceLock::new();
    let all = SHAPES.get_or_init(|| {
        schema::tables()
            .iter()
            .map(|table| {
                let mut shapes = Shapes::new();
                let row = shapes.add();
                debug_assert_eq!(row, TABLE_ROW);
                declare_table(&mut shapes, row, table);
                declare_table_kept_whole(&mut shapes, row, table);
                shapes
            })
            .collect()
    });
    let position = schema::tables()
        .iter()
        .position(|t| std::ptr::eq(t, table))
        .expect("a declared table");
    &all[position]
}

/// The row shape in [`table_shapes`]: the first shape added after [`shape::KEEP_ALL`].
const TABLE_ROW: ShapeId = 1;

/// Builds one table's rows from JSON objects, by its declaration.
pub struct TableBuilder {
    schema: &'static TableSchema,
    /// The shapes rows are parsed with, and the shape of a row object among them.
    shapes: &'static Shapes,
    row_shape: ShapeId,
    /// The objects the columns' paths pass, found once per row.
    anchors: Vec<Anchor>,
    columns: Vec<Column>,
    /// Positions of the not-null columns read from the row (keys such as a log row's `id`).
    required: Vec<usize>,
    rows: usize,
}

impl TableBuilder {
    /// A builder that writes every value as read (privacy mode `keep`).
    pub fn new(schema: &'static TableSchema) -> Self {
        Self::with_privacy(schema, &Privacy::default())
    }

    /// A builder that writes personal data as `privacy` says, by each column's `pii` class.
    pub fn with_privacy(schema: &'static TableSchema, privacy: &Privacy) -> Self {
        Self::within(schema, privacy, table_shapes(schema), TABLE_ROW)
    }

    /// A builder for rows of shape `row_shape` within `shapes`, in which [`declare_table`]
    /// declared `schema`.
    pub(crate) fn within(
        schema: &'static TableSchema,
        privacy: &Privacy,
        shapes: &'static Shapes,
        row_shape: ShapeId,
    ) -> Self {
        let mut anchors = Vec::new();
        let columns = schema
            .columns
            .iter()
            .map(|column| {
                let rows = (shapes, row_shape);
                Column::compile(&schema.table, column, privacy, rows, &mut anchors)
            })
            .collect::<Vec<_>>();
        assert!(
            anchors.len() <= MAX_ANCHORS,
            "schemas/{}.json: the paths pass {} objects, more than {MAX_ANCHORS}",
            schema.table,
            anchors.len()
        );
        let required = schema
            .columns
            .iter()
            .enumerate()
            .filter(|(_, column)| !column.nullable && !column.path.starts_with('$'))
            .map(|(index, _)| index)
            .collect();
        TableBuilder {
            schema,
            shapes,
            row_shape,
            anchors,
            columns,
            required,
            rows: 0,
        }
    }

    pub fn schema(&self) -> &'static TableSchema {
        self.schema
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one row read from `row` (a JSON object, or a plain value for `""` paths).
    /// A row without a value for a not-null column is not appended; it is reported.
    pub fn append(&mut self, row: &Value, context: &RowContext, issues: &mut Vec<FlattenIssue>) {
        let mut dom = Dom::new(self.shapes);
        dom.parse_value(row, self.row_shape);
        self.append_item(dom.root(), context, issues);
    }

    /// Appends one row read from `row`, parsed with this builder's row shape.
    pub fn append_item(
        &mut self,
        row: Item<'_, '_>,
        context: &RowContext,
        issues: &mut Vec<FlattenIssue>,
    ) {
        let mut found = [row; MAX_ANCHORS + 1];
        for (at, anchor) in self.anchors.iter().enumerate() {
            found[at + 1] = found[anchor.parent].slot(anchor.shape, anchor.slot);
        }
        let anchors = &found[..=self.anchors.len()];
        let table: &'static str = &self.schema.table;
        for &index in &self.required {
            let column = &self.columns[index];
            if column.value(anchors).is_none() {
                issues.push(FlattenIssue {
                    table,
                    column: column.name,
                    record_id: context.call_id.to_string(),
                    message: "a required value is missing: the row was left out".into(),
                });
                return;
            }
        }
        for column in &mut self.columns {
            if let Err(message) = column.append(anchors, context) {
                issues.push(FlattenIssue {
                    table,
                    column: column.name,
                    record_id: context.call_id.to_string(),
                    message,
                });
            }
        }
        self.rows += 1;
    }

    /// The rows so far as a batch of the declared Arrow schema; the builder starts empty again.
    pub fn finish(&mut self) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|column| column.builder.finish())
            .collect();
        self.rows = 0;
        RecordBatch::try_new(self.schema.arrow_schema(), arrays).unwrap_or_else(|e| {
            panic!(
                "table {} does not match its declaration: {e}",
                self.schema.table
            )
        })
    }
}

fn append_context(builder: &mut ColumnBuilder, key: ContextKey, context: &RowContext) {
    match key {
        ContextKey::CallId => builder.append_str(Some(context.call_id)),
        ContextKey::Side => builder.append_str(Some(context.side)),
        ContextKey::Role => builder.append_str(Some(context.role)),
        ContextKey::SessionIndex => builder.append_i32(context.session_index),
        ContextKey::SegmentIndex => builder.append_i32(context.segment_index),
        ContextKey::MediaIndex => builder.append_i32(context.media_index),
        ContextKey::StreamIndex => builder.append_i32(context.stream_index),
        ContextKey::HopIndex => builder.append_i32(context.hop_index),
        ContextKey::ParticipantIndex => builder.append_i32(context.participant_index),
        ContextKey::ReportFrom => builder.append_timestamp(context.report_from),
        ContextKey::ReportTo => builder.append_timestamp(context.report_to),
        ContextKey::Derived(derived) => builder.append_derived(derived.value(&context.derived)),
    }
}

/// Appends `value` (not null) converted as `convert` says and protected by `protection`.
fn append_converted(
    builder: &mut ColumnBuilder,
    convert: Convert,
    value: Item<'_, '_>,
    protection: &Protection,
) -> Result<(), String> {
    let object = Some(value).filter(Item::is_object);
    let identity = || object.and_then(values::chosen_identity);
    let identity_field = |field: &str| {
        identity()
            .and_then(|(_, identity)| identity.get(field))
            .and_then(|value| value.as_str())
            .map(Cow::Borrowed)
    };
    let mut phone_identity = false;
    let text = match convert {
        // Personal-data columns are strings (checked by `declared_class`); plain columns
        // without any are converted by their type (`Write::Plain`).
        Convert::Plain => Some(match value.as_str() {
            Some(text) => Cow::Borrowed(text),
            None => Cow::Owned(value.to_json_string()),
        }),
        Convert::DurationMs => return append_duration_ms(builder, value),
        Convert::Json => Some(match protection {
            Protection::IdentityJson(privacy) => {
                let mut value = value.to_value();
                privacy.protect_identity_json(&mut value);
                Cow::Owned(value.to_string())
            }
            _ => Cow::Owned(value.to_json_string()),
        }),
        Convert::IdentityKind => identity().map(|(kind, _)| Cow::Borrowed(kind)),
        Convert::IdentityId => identity().and_then(|(kind, identity)| {
            phone_identity = kind == "phone";
            identity
                .get("id")
                .and_then(|id| id.as_str())
                .map(Cow::Borrowed)
        }),
        Convert::IdentityDisplayName => identity_field("displayName"),
        Convert::IdentityTenantId => identity_field("tenantId"),
        Convert::IdentityUserPrincipalName => identity_field("userPrincipalName"),
        Convert::EndpointType => object.and_then(values::endpoint_type).map(Cow::Borrowed),
        Convert::UserAgentType => object.and_then(values::user_agent_type).map(Cow::Borrowed),
        Convert::IdList => return append_id_list(builder, value),
    };
    builder.append_str(protection.apply(text, phone_identity).as_deref());
    Ok(())
}

/// The `id`s of an array of objects, as a list column (an item without one is a null).
fn append_id_list(builder: &mut ColumnBuilder, value: Item<'_, '_>) -> Result<(), String> {
    let Some(list) = builder.list() else {
        unreachable!("id_list is declared on list<string> columns (checked by TableBuilder::new)")
    };
    if !matches!(value.node(), Node::Array { .. }) {
        list.append_null();
        return Err(format!("{value} is not an array"));
    }
    for item in value.items() {
        match item.get("id") {
            Some(id) if id.is_null() => list.values().append_null(),
            Some(id) => match id.as_str() {
                Some(text) => list.values().append_value(text),
                None => list.values().append_value(id.to_json_string()),
            },
            None => list.values().append_null(),
        }
    }
    list.append(true);
    Ok(())
}

fn append_duration_ms(builder: &mut ColumnBuilder, value: Item<'_, '_>) -> Result<(), String> {
    let ms = match value.as_str() {
        Some(text) => values::parse_iso8601_duration_ms(text),
        None => Err(format!("{value} is not an ISO-8601 duration string")),
    };
    match &ms {
        Ok(ms) => builder.append_f64(*ms),
        Err(_) => builder.append_null(),
    }
    ms.map(drop)
}

/// The `pii` class a column declares. A class the code does not know, or one on a column
/// that is not a string (or, for identity JSON, not JSON), is a build defect.
fn declared_class(table: &str, column: &ColumnSchema) -> Option<ColumnClass> {
    let class: ColumnClass = column
        .pii
        .as_deref()?
        .parse()
        .unwrap_or_else(|e| panic!("schemas/{table}.json: column {}: {e}", column.name));
    assert!(
        column.column_type == ColumnType::String,
        "schemas/{table}.json: column {} holds personal data, so it must be declared string",
        column.name
    );
    assert!(
        class != ColumnClass::IdentityJson || column.convert == Convert::Json,
        "schemas/{table}.json: column {}: pii identity_json needs convert json",
        column.name
    );
    Some(class)
}

/// A declaration whose path or conversion cannot produce its column type is a build defect.
fn check_convert_fits_type(table: &str, column: &ColumnSchema) {
    let expected = match column.path.strip_prefix('$') {
        Some("call_id" | "side" | "role") => ColumnType::String,
        Some("report_from" | "report_to") => ColumnType::Timestamp,
        Some(name) => match Derived::parse(name).map(Derived::kind) {
            None | Some(DerivedKind::Count) => ColumnType::Int32,
            Some(DerivedKind::Text) => ColumnType::String,
            Some(DerivedKind::Flag) => ColumnType::Boolean,
            Some(DerivedKind::Number) => ColumnType::Double,
            Some(DerivedKind::Reasons) => ColumnType::ListOfString,
        },
        None => match column.convert {
            Convert::Plain => return,
            Convert::DurationMs => ColumnType::Double,
            Convert::IdList => ColumnType::ListOfString,
            _ => ColumnType::String,
        },
    };
    assert!(
        column.column_type == expected,
        "schemas/{table}.json: column {} ({:?}, path {}) must be declared {}",
        column.name,
        column.convert,
        column.path,
        expected.declared_name()
    );
}
