//! A borrowed, shape-pruned JSON tree: the one form in which the flattener reads a record.
//!
//! [`Dom::parse_str`] (a call record's JSON text: a raw line, or a record fetched from
//! Graph) and [`Dom::parse_value`] (a log row, or a record held as a value in tests and
//! samples) run the same serde [`DeserializeSeed`] over their input, guided by a
//! [`Shape`]: members the shape names land in numbered slots, members it does not name
//! are skipped with [`IgnoredAny`] (nothing allocated), and strings without escapes borrow
//! from the input. Nodes live in a few flat vectors that are reused from record to record,
//! so parsing a record allocates nothing once the vectors have grown.
//!
//! Compared with building a `serde_json::Value` (a `BTreeMap` and a `String` per member),
//! this is what makes flattening run at the speed of the JSON scanner.
//!
//! An object whose text is already what [`Item::to_json_string`] writes (compact, keys in
//! order, no floats: Graph's identity sets) remembers where that text lies, and a column
//! that keeps it as JSON text copies it instead of writing it again member by member.
//!
//! May touch: serde, serde_json; no I/O.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

use super::shape::{KEEP_ALL, Shape, ShapeId, Shapes};

mod text;

/// One JSON value. Objects and arrays point into their [`Dom`]'s vectors.
///
/// The tag takes a whole word (`repr(u64)`; still 32 bytes in all). With a one-byte tag
/// the bytes after it held a `Bool` or the start of an `Object`, and moving a node the
/// parser had just returned copied them with overlapping loads that the CPU could not
/// forward from the narrower stores that wrote them: that stall was a third of the
/// parser's time on nulls and numbers (BENCHMARKS.md).
#[derive(Debug, Clone, PartialEq)]
#[repr(u64)]
pub enum Node<'a> {
    /// A member the object does not have (distinct from an explicit `null`).
    Absent,
    Null,
    Bool(Truth),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Object(Object),
    Array {
        start: u32,
        len: u32,
    },
}

/// A JSON boolean, a word wide like every other node's value: a one-byte `bool` stored
/// by the parser and the whole word read back when the node is moved is a store the CPU
/// cannot forward (the same stall as above, on `true` and `false`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truth(u64);

impl Truth {
    pub fn new(value: bool) -> Self {
        Truth(u64::from(value))
    }

    pub fn get(self) -> bool {
        self.0 != 0
    }
}

// The parser writes a node per value it keeps: a wider node is more memory to fill and walk.
const _: () = assert!(std::mem::size_of::<Node<'static>>() == 32);

/// Where an object's members are: its shape's slots, then the members kept beyond them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Object {
    shape: ShapeId,
    slots: u32,
    members: u32,
    members_len: u32,
    /// Where the object's text lies in the parsed text, if that text is exactly what
    /// [`Item::to_json_string`] writes for it ([`NO_TEXT`]: it is not, or not known).
    text: (u32, u32),
}

/// An object whose text is written member by member.
const NO_TEXT: (u32, u32) = (0, 0);

static ABSENT: Node<'static> = Node::Absent;

/// The parsed tree of one JSON value, borrowing from the input `'a`.
pub struct Dom<'a> {
    shapes: &'static Shapes,
    /// The text parsed last (empty for a parsed `Value`), where objects' texts lie.
    text: &'a str,
    /// Object slots, a block of `shape.len()` per object.
    nodes: Vec<Node<'a>>,
    /// Array items, contiguous per array.
    items: Vec<Node<'a>>,
    /// Members kept beyond the slots, contiguous per object.
    members: Vec<(Cow<'a, str>, Node<'a>)>,
    /// Items and members of the arrays and objects being parsed (nested ones finish first).
    item_stack: Vec<Node<'a>>,
    member_stack: Vec<(Cow<'a, str>, Node<'a>)>,
    root: Node<'a>,
    /// Per shape, where its slots' entries start in `predicted`.
    prediction_base: Vec<u32>,
    /// Per shape and slot (and one entry for "no key yet"): the slot whose key followed it
    /// last time. Objects of one kind list their members in one order (Graph's, or sorted
    /// in values written back as text), so a key is usually matched by one comparison instead of a hash lookup.
    predicted: Vec<u16>,
}

/// No prediction yet.
const UNPREDICTED: u16 = u16::MAX;

fn index(len: usize) -> u32 {
    u32::try_from(len).expect("a JSON document has fewer than 2^32 values")
}

/// An emptied vector of another lifetime that keeps the allocation (collected in place).
fn emptied<T, U>(mut vector: Vec<T>) -> Vec<U> {
    vector.clear();
    vector
        .into_iter()
        .map(|_| unreachable!("the vector was emptied"))
        .collect()
}

impl<'a> Dom<'a> {
    pub fn new(shapes: &'static Shapes) -> Self {
        let mut prediction_base = Vec::with_capacity(shapes.len());
        let mut entries = 0u32;
        for id in 0..shapes.len() {
            prediction_base.push(entries);
            entries += index(shapes.get(id as ShapeId).len() + 1);
        }
        Dom {
            shapes,
            text: "",
            nodes: Vec::new(),
            items: Vec::new(),
            members: Vec::new(),
            item_stack: Vec::new(),
            member_stack: Vec::new(),
            root: Node::Absent,
            prediction_base,
            predicted: vec![UNPREDICTED; entries as usize],
        }
    }

    /// The same tree, emptied, for input that lives shorter or longer: its buffers (and
    /// learnt key orders) are kept, so parsing the next chunk of lines allocates nothing.
    pub fn recycle<'b>(self) -> Dom<'b> {
        Dom {
            shapes: self.shapes,
            text: "",
            nodes: emptied(self.nodes),
            items: emptied(self.items),
            members: emptied(self.members),
            item_stack: emptied(self.item_stack),
            member_stack: emptied(self.member_stack),
            root: Node::Absent,
            prediction_base: self.prediction_base,
            predicted: self.predicted,
        }
    }

    /// Empties the tree for the next text. A tree the text reader filled is let go without
    /// visiting each node to drop it: that visit read the whole tree back into the cache
    /// only to find nothing to free, as the text reader borrows every string (0.8 % of
    /// `reflatten`'s instructions, 4 % of its first-level cache misses: BENCHMARKS.md).
    /// Only `serde_json` unescapes into owned strings, and only a tree it filled (or none
    /// yet) has no `text`.
    fn clear(&mut self) {
        if self.may_own() {
            self.nodes.clear();
            self.items.clear();
            self.members.clear();
        } else {
            debug_assert!(self.owns_nothing());
            // SAFETY: shortening a vector is sound even where it skips its elements' drops
            // (that only leaks them); and nothing leaks here, as no string is owned.
            unsafe {
                self.nodes.set_len(0);
                self.items.set_len(0);
                self.members.set_len(0);
            }
        }
        self.text = "";
        self.item_stack.clear();
        self.member_stack.clear();
        self.root = Node::Absent;
    }

    /// Whether a string or member name may be owned (`Cow::Owned`): the tree was not filled
    /// by the text reader, which sets `text` (see [`Dom::clear`]).
    fn may_own(&self) -> bool {
        self.text.is_empty()
    }

    /// No node or member name owns its string (what `may_own` being false promises).
    fn owns_nothing(&self) -> bool {
        let borrowed = |node: &Node<'a>| !matches!(node, Node::Str(Cow::Owned(_)));
        self.nodes.iter().chain(&self.items).all(borrowed)
            && self
                .members
                .iter()
                .all(|(name, node)| matches!(name, Cow::Borrowed(_)) && borrowed(node))
    }

    /// Parses one JSON text (trailing whitespace allowed) with `shape` as the root's shape.
    /// Taking `str` (the caller checked UTF-8 once for many lines) spares a check per string.
    ///
    /// The text is read by `text::Reader` first, which builds the same tree with a third
    /// less work than serde's visitors (BENCHMARKS.md); text it is not sure to read exactly
    /// as `serde_json` does (escapes, exponents, errors, ...) is read again by `serde_json`.
    pub fn parse_str(&mut self, json: &'a str, shape: ShapeId) -> serde_json::Result<()> {
        self.clear();
        if let Ok(root) = text::Reader::new(json).document(self, shape) {
            self.root = root;
            self.text = json;
            return Ok(());
        }
        self.parse_str_with_serde(json, shape)
    }

    /// [`Dom::parse_str`] by `serde_json` alone.
    fn parse_str_with_serde(&mut self, json: &'a str, shape: ShapeId) -> serde_json::Result<()> {
        self.clear();
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let root = NodeSeed {
            dom: self,
            shape: Some(shape),
        }
        .deserialize(&mut deserializer)?;
        deserializer.end()?;
        self.root = root;
        Ok(())
    }

    /// Reads a `serde_json::Value` with `shape` as the root's shape (its strings are borrowed).
    pub fn parse_value(&mut self, value: &'a Value, shape: ShapeId) {
        self.clear();
        self.root = NodeSeed {
            dom: self,
            shape: Some(shape),
        }
        .deserialize(value)
        .expect("every JSON value is a node");
    }

    pub fn root(&self) -> Item<'_, 'a> {
        Item {
            dom: self,
            node: &self.root,
        }
    }
}

/// A node together with its tree: what the flattener navigates.
#[derive(Clone, Copy)]
pub struct Item<'d, 'a> {
    dom: &'d Dom<'a>,
    node: &'d Node<'a>,
}

impl<'d, 'a> Item<'d, 'a> {
    fn at(&self, node: &'d Node<'a>) -> Self {
        Item {
            dom: self.dom,
            node,
        }
    }

    pub fn node(&self) -> &'d Node<'a> {
        self.node
    }

    /// Whether the member exists (it may be `null`).
    pub fn is_present(&self) -> bool {
        !matches!(self.node, Node::Absent)
    }

    /// Absent or `null`.
    pub fn is_null(&self) -> bool {
        matches!(self.node, Node::Absent | Node::Null)
    }

    pub fn is_object(&self) -> bool {
        matches!(self.node, Node::Object(_))
    }

    pub fn as_str(&self) -> Option<&'d str> {
        match self.node {
            Node::Str(text) => Some(text),
            _ => None,
        }
    }

    /// The member in slot `slot` of `shape` (absent when this is not such an object).
    #[inline]
    pub fn slot(&self, shape: ShapeId, slot: u16) -> Self {
        match self.node {
            Node::Object(object) if object.shape == shape => {
                self.at(&self.dom.nodes[object.slots as usize + usize::from(slot)])
            }
            Node::Object(_) => self
                .get(self.dom.shapes.get(shape).key(slot))
                .unwrap_or(self.at(&ABSENT)),
            _ => self.at(&ABSENT),
        }
    }

    /// The member `key`, if this is an object that has it.
    pub fn get(&self, key: &str) -> Option<Self> {
        let Node::Object(object) = self.node else {
            return None;
        };
        if let Some(slot) = self.dom.shapes.get(object.shape).slot_of(key) {
            let node = &self.dom.nodes[object.slots as usize + usize::from(slot)];
            return (!matches!(node, Node::Absent)).then(|| self.at(node));
        }
        self.kept_members(object)
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, node)| self.at(node))
    }

    /// The items of an array (none when this is not one).
    pub fn items(&self) -> impl Iterator<Item = Item<'d, 'a>> + use<'d, 'a> {
        let items: &'d [Node<'a>] = match self.node {
            Node::Array { start, len } => {
                &self.dom.items[*start as usize..(*start + *len) as usize]
            }
            _ => &[],
        };
        let dom = self.dom;
        items.iter().map(move |node| Item { dom, node })
    }

    /// The members of an object in key order (as a `serde_json::Value` map holds them),
    /// the last of duplicate keys winning.
    pub fn members(&self) -> Vec<(&'d str, Item<'d, 'a>)> {
        let Node::Object(object) = self.node else {
            return Vec::new();
        };
        let shape: &'static Shape = self.dom.shapes.get(object.shape);
        let slots = &self.dom.nodes[object.slots as usize..object.slots as usize + shape.len()];
        let mut members: Vec<(&'d str, Item<'d, 'a>)> = slots
            .iter()
            .enumerate()
            .filter(|(_, node)| !matches!(node, Node::Absent))
            .map(|(slot, node)| (shape.key(slot as u16), self.at(node)))
            .chain(
                self.kept_members(object)
                    .iter()
                    .map(|(name, node)| (name.as_ref(), self.at(node))),
            )
            .collect();
        // Stable: of equal keys the one read last stays last, and is kept.
        members.sort_by(|a, b| a.0.cmp(b.0));
        members.reverse();
        members.dedup_by(|later, earlier| later.0 == earlier.0);
        members.reverse();
        members
    }

    fn kept_members(&self, object: &Object) -> &'d [(Cow<'a, str>, Node<'a>)] {
        &self.dom.members[object.members as usize..(object.members + object.members_len) as usize]
    }

    /// The value as compact JSON text, members in key order (as `serde_json::Value` writes it).
    /// An object whose text was already so (as Graph writes identities) is copied.
    pub fn to_json_string(&self) -> String {
        if let Node::Object(object) = self.node
            && object.text != NO_TEXT
        {
            let (start, len) = object.text;
            return self.dom.text[start as usize..][..len as usize].to_owned();
        }
        serde_json::to_string(self).expect("a parsed JSON value serializes")
    }

    /// The value as a `serde_json::Value` (for the rare rewrites that need one).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a parsed JSON value converts")
    }
}

impl fmt::Display for Item<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json_string())
    }
}

impl fmt::Debug for Item<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Item<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.node {
            Node::Absent | Node::Null => serializer.serialize_unit(),
            Node::Bool(value) => serializer.serialize_bool(value.get()),
            Node::Int(value) => serializer.serialize_i64(*value),
            Node::Uint(value) => serializer.serialize_u64(*value),
            Node::Float(value) => serializer.serialize_f64(*value),
            Node::Str(text) => serializer.serialize_str(text),
            Node::Array { len, .. } => {
                let mut seq = serializer.serialize_seq(Some(*len as usize))?;
                for item in self.items() {
                    seq.serialize_element(&item)?;
                }
                seq.end()
            }
            Node::Object(object) if object.members_len == 0 => {
                // Only slots: their key order is known, nothing to collect or sort.
                let shape = self.dom.shapes.get(object.shape);
                let slots = &self.dom.nodes[object.slots as usize..][..shape.len()];
                let present = slots.iter().filter(|n| !matches!(n, Node::Absent)).count();
                let mut map = serializer.serialize_map(Some(present))?;
                for &slot in shape.slots_in_key_order() {
                    let node = &slots[usize::from(slot)];
                    if !matches!(node, Node::Absent) {
                        map.serialize_entry(shape.key(slot), &self.at(node))?;
                    }
                }
                map.end()
            }
            Node::Object(_) => {
                let members = self.members();
                let mut map = serializer.serialize_map(Some(members.len()))?;
                for (key, value) in members {
                    map.serialize_entry(key, &value)?;
                }
                map.end()
            }
        }
    }
}

/// Parses one value into the tree; `shape` applies if it is an object (or array of them).
struct NodeSeed<'d, 'a> {
    dom: &'d mut Dom<'a>,
    shape: Option<ShapeId>,
}

impl<'a> DeserializeSeed<'a> for NodeSeed<'_, 'a> {
    type Value = Node<'a>;

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<Node<'a>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'a> Visitor<'a> for NodeSeed<'_, 'a> {
    type Value = Node<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Node<'a>, E> {
        Ok(Node::Bool(Truth::new(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Node<'a>, E> {
        Ok(Node::Int(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Node<'a>, E> {
        Ok(Node::Uint(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Node<'a>, E> {
        Ok(Node::Float(value))
    }

    fn visit_borrowed_str<E>(self, value: &'a str) -> Result<Node<'a>, E> {
        Ok(Node::Str(Cow::Borrowed(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Node<'a>, E> {
        Ok(Node::Str(Cow::Owned(value.to_owned())))
    }

    fn visit_string<E>(self, value: String) -> Result<Node<'a>, E> {
        Ok(Node::Str(Cow::Owned(value)))
    }

    fn visit_unit<E>(self) -> Result<Node<'a>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'a>, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'a>>(self, deserializer: D) -> Result<Node<'a>, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<Node<'a>, A::Error> {
        let mark = self.dom.begin_array();
        while let Some(node) = seq.next_element_seed(NodeSeed {
            dom: &mut *self.dom,
            shape: self.shape,
        })? {
            self.dom.item_stack.push(node);
        }
        Ok(self.dom.end_array(mark))
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Node<'a>, A::Error> {
        let mut fill = self.dom.begin_object(self.shape);
        while let Some(key) = map.next_key_seed(self.dom.key_seed(&fill))? {
            match key {
                Key::Slot(slot) => {
                    self.dom.follow(&mut fill, slot);
                    let node = map.next_value_seed(NodeSeed {
                        dom: &mut *self.dom,
                        shape: fill.shape.child(slot),
                    })?;
                    self.dom.set_slot(&fill, slot, node);
                }
                Key::Kept(name) => {
                    let node = map.next_value_seed(NodeSeed {
                        dom: &mut *self.dom,
                        shape: fill.shape.others(),
                    })?;
                    self.dom.keep_member(name, node);
                }
                Key::Skipped => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(self.dom.end_object(fill, NO_TEXT))
    }
}

/// An object being read: its slots are reserved in the tree's nodes and its kept members
/// gather on the member stack until [`Dom::end_object`]. Both readers fill objects so.
struct ObjectFill {
    id: ShapeId,
    shape: &'static Shape,
    /// Where its slots start in `nodes`.
    slots: usize,
    /// Where its kept members start on the member stack.
    mark: usize,
    /// Where its shape's key predictions start.
    predictions: usize,
    /// The slot of the last key read; `shape.len()` before the first key.
    previous: usize,
}

impl<'a> Dom<'a> {
    fn begin_array(&self) -> usize {
        self.item_stack.len()
    }

    /// The array whose items were pushed on the item stack since `mark`.
    fn end_array(&mut self, mark: usize) -> Node<'a> {
        let start = index(self.items.len());
        let len = index(self.item_stack.len() - mark);
        self.items.extend(self.item_stack.drain(mark..));
        Node::Array { start, len }
    }

    fn begin_object(&mut self, shape: Option<ShapeId>) -> ObjectFill {
        let id = shape.unwrap_or(KEEP_ALL);
        let shapes: &'static Shapes = self.shapes;
        let shape = shapes.get(id);
        let slots = self.nodes.len();
        self.nodes.resize_with(slots + shape.len(), || Node::Absent);
        ObjectFill {
            id,
            shape,
            slots,
            mark: self.member_stack.len(),
            predictions: self.prediction_base[id as usize] as usize,
            previous: shape.len(),
        }
    }

    /// How to read the object's next key: its shape, and the slot expected next.
    fn key_seed(&self, fill: &ObjectFill) -> KeySeed {
        KeySeed {
            shape: fill.shape,
            guess: self.predicted[fill.predictions + fill.previous],
        }
    }

    /// Notes that the key of `slot` was read: it is expected after the previous key next time.
    fn follow(&mut self, fill: &mut ObjectFill, slot: u16) {
        self.predicted[fill.predictions + fill.previous] = slot;
        fill.previous = usize::from(slot);
    }

    #[inline]
    fn set_slot(&mut self, fill: &ObjectFill, slot: u16, node: Node<'a>) {
        self.nodes[fill.slots + usize::from(slot)] = node;
    }

    /// A member that is no slot, kept beyond the slots of the object being read.
    fn keep_member(&mut self, name: Cow<'a, str>, node: Node<'a>) {
        self.member_stack.push((name, node));
    }

    /// The object whose members were read since `fill`; `text`: where its text lies, if
    /// that is written as is.
    fn end_object(&mut self, fill: ObjectFill, text: (u32, u32)) -> Node<'a> {
        let members = index(self.members.len());
        let members_len = index(self.member_stack.len() - fill.mark);
        // Most objects keep no member beyond their slots; an empty drain still cost a call.
        if members_len > 0 {
            self.members.extend(self.member_stack.drain(fill.mark..));
        }
        Node::Object(Object {
            shape: fill.id,
            slots: index(fill.slots),
            members,
            members_len,
            text,
        })
    }
}

/// What a member's key means for its object's shape.
enum Key<'a> {
    Slot(u16),
    Kept(Cow<'a, str>),
    Skipped,
}

struct KeySeed {
    shape: &'static Shape,
    /// The slot whose key is expected next ([`UNPREDICTED`]: none).
    guess: u16,
}

impl KeySeed {
    // Once per member, from both readers.
    #[inline]
    fn resolve<'a>(&self, key: &str, owned: impl FnOnce() -> Cow<'a, str>) -> Key<'a> {
        if self.guess != UNPREDICTED && same_key(self.shape.key(self.guess), key) {
            return Key::Slot(self.guess);
        }
        match self.shape.slot_of(key) {
            Some(slot) => Key::Slot(slot),
            None if self.shape.others().is_some() => Key::Kept(owned()),
            None => Key::Skipped,
        }
    }
}

/// `a == b` for member names, inlined: names are short, and a call to `memcmp` per member
/// costs more than comparing them eight bytes at a time.
#[inline]
fn same_key(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

/// [`same_key`] on bytes: eight bytes at a time, the last eight overlapping the ones before
/// (no byte-by-byte tail); shorter names four bytes at a time the same way.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let length = a.len();
    if length != b.len() {
        return false;
    }
    let word = |bytes: &[u8], at: usize| {
        u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
    };
    let half = |bytes: &[u8], at: usize| {
        u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
    };
    match length {
        0..4 => a == b,
        4..8 => half(a, 0) == half(b, 0) && half(a, length - 4) == half(b, length - 4),
        _ => {
            let mut at = 0;
            while at + 8 < length {
                if word(a, at) != word(b, at) {
                    return false;
                }
                at += 8;
            }
            word(a, length - 8) == word(b, length - 8)
        }
    }
}

impl<'a> DeserializeSeed<'a> for KeySeed {
    type Value = Key<'a>;

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<Key<'a>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'a> Visitor<'a> for KeySeed {
    type Value = Key<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, key: &'a str) -> Result<Key<'a>, E> {
        Ok(self.resolve(key, || Cow::Borrowed(key)))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'a>, E> {
        Ok(self.resolve(key, || Cow::Owned(key.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shapes() -> (&'static Shapes, ShapeId, u16, u16) {
        let mut shapes = Shapes::new();
        let root = shapes.add();
        let (network, speed) = shapes.path(root, "network.linkSpeed");
        assert_eq!(network, shapes.object_at(root, "network"));
        let name = shapes.slot(root, "name");
        (Box::leak(Box::new(shapes)), root, speed, name)
    }

    #[test]
    fn only_declared_members_are_kept_and_both_inputs_agree() {
        let (shapes, root, _, name) = shapes();
        let text = r#"{"name":"a\"b","skipped":{"deep":[1,2,{"x":null}]},"network":{"linkSpeed":5,"other":1}}"#;
        let mut from_bytes = Dom::new(shapes);
        from_bytes.parse_str(text, root).unwrap();
        let value: Value = serde_json::from_str(text).unwrap();
        let mut from_value = Dom::new(shapes);
        from_value.parse_value(&value, root);
        for dom in [&from_bytes, &from_value] {
            let record = dom.root();
            assert_eq!(record.slot(root, name).as_str(), Some("a\"b"));
            assert!(record.get("skipped").is_none());
            assert_eq!(
                record.to_json_string(),
                r#"{"name":"a\"b","network":{"linkSpeed":5}}"#
            );
        }
    }

    #[test]
    fn text_kept_whole_matches_serde_json_value() {
        let mut shapes = Shapes::new();
        let root = shapes.add();
        shapes.slot(root, "z");
        shapes.keep_everything(root);
        let shapes: &'static Shapes = Box::leak(Box::new(shapes));
        let value = json!({"z": 1.5, "b": [true, null, -3, 18446744073709551615u64, "é\n"], "a": {"y": {}, "x": []}});
        let text = value.to_string();
        let mut dom = Dom::new(shapes);
        dom.parse_str(&text, root).unwrap();
        assert_eq!(dom.root().to_json_string(), value.to_string());
        assert_eq!(dom.root().to_value(), value);
        assert_eq!(dom.root().get("b").unwrap().items().count(), 5);
    }

    #[test]
    fn unescaped_strings_are_freed_and_plain_ones_let_go_between_texts() {
        let mut shapes = Shapes::new();
        let root = shapes.add();
        let name = shapes.slot(root, "name");
        shapes.keep_everything(root);
        let shapes: &'static Shapes = Box::leak(Box::new(shapes));
        let mut dom = Dom::new(shapes);
        // Escapes: serde_json reads the text, unescaping into owned strings and names.
        let escaped = r#"{"name":"a\"b","k\u00e9y":["x\ny",{"z\t":"w"}]}"#;
        dom.parse_str(escaped, root).unwrap();
        assert!(dom.may_own() && !dom.owns_nothing());
        let expected = json!({"name": "a\"b", "k\u{e9}y": ["x\ny", {"z\t": "w"}]});
        assert_eq!(dom.root().to_value(), expected);
        // Plain text after it (the owned strings dropped), then escapes again, then plain:
        // each emptying checks (in debug builds) that what it lets go owns nothing.
        for (text, value) in [
            (
                r#"{"name":"c","other":["d"]}"#,
                json!({"name": "c", "other": ["d"]}),
            ),
            (escaped, expected.clone()),
            (r#"{"name":"e"}"#, json!({"name": "e"})),
        ] {
            dom.parse_str(text, root).unwrap();
            assert_eq!(dom.root().to_value(), value);
        }
        assert_eq!(dom.root().slot(root, name).as_str(), Some("e"));
        assert!(!dom.may_own() && dom.owns_nothing());
    }

    #[test]
    fn objects_of_slots_only_are_written_in_key_order() {
        let mut shapes = Shapes::new();
        let root = shapes.add();
        for key in ["zeta", "alpha", "mid", "absent"] {
            shapes.slot(root, key);
        }
        let shapes: &'static Shapes = Box::leak(Box::new(shapes));
        let mut dom = Dom::new(shapes);
        dom.parse_str(r#"{"mid":null,"zeta":[1],"alpha":"a"}"#, root)
            .unwrap();
        assert_eq!(
            dom.root().to_json_string(),
            r#"{"alpha":"a","mid":null,"zeta":[1]}"#
        );
    }

    #[test]
    fn objects_are_written_as_serde_json_writes_them_whether_copied_or_not() {
        let mut shapes = Shapes::new();
        let root = shapes.add();
        shapes.path(root, "user.id");
        shapes.slot(root, "phone");
        shapes.keep_everything(root);
        // Keeps every member, but not of the objects under "inner" (which it may not copy).
        let open = shapes.add();
        shapes.path(open, "inner.b");
        shapes.path(open, "inner.a");
        shapes.keep_others(open, KEEP_ALL);
        let shapes: &'static Shapes = Box::leak(Box::new(shapes));
        let copied = |dom: &Dom<'_>| match dom.root().node() {
            Node::Object(object) => object.text != NO_TEXT,
            _ => false,
        };
        for (text, copies) in [
            (
                r#"{"a":null,"phone":null,"user":{"id":"x","name":"é"}}"#,
                true,
            ),
            (
                r#"{"a":[1,-2,true,false,{},[]],"b":{"c":{"d":"e"}},"user":{}}"#,
                true,
            ),
            (r#"{"":1,"user":{}}"#, false),
            (r#"{"user":{"id":"x"},"phone":null}"#, false),
            (r#"{"phone":null,"user":{"name":"x","id":"y"}}"#, false),
            (r#"{"a":1,"a":2}"#, false),
            (r#"{"a": 1}"#, false),
            (r#"{"a":[1, 2]}"#, false),
            (r#"{"a":1.50,"b":2.0}"#, false),
            (r#"{"a":-0}"#, false),
            (r#"{"a":"\u00e9"}"#, false),
            (r#"{"inner":{"a":1,"b":2}}"#, false),
            (r#"{"inner":{"b":1,"a":2}}"#, false),
        ] {
            let shape = if text.contains("inner") { open } else { root };
            let mut dom = Dom::new(shapes);
            dom.parse_str(text, shape).unwrap();
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(dom.root().to_json_string(), value.to_string(), "{text}");
            assert_eq!(copied(&dom), copies, "{text}");
            let user = dom.root().get("user");
            if let Some(user) = user.filter(|u| u.is_object()) {
                assert_eq!(user.to_json_string(), value["user"].to_string(), "{text}");
            }
        }
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_as_serde_json_does() {
        let (shapes, root, _, name) = shapes();
        let text = r#"{"name":"first","name":"second"}"#;
        let mut dom = Dom::new(shapes);
        dom.parse_str(text, root).unwrap();
        assert_eq!(dom.root().slot(root, name).as_str(), Some("second"));
    }

    #[test]
    fn member_names_compare_like_strings() {
        for (a, b) in [
            ("", ""),
            ("id", "id"),
            ("id", "ix"),
            ("averageJitter", "averageJitter"),
            ("averageJitter", "averageJitteR"),
            ("averageJitteR", "averageJitter"),
            ("abcdefgh", "abcdefgh"),
            ("abcdefgh", "abcdefgX"),
            ("short", "longer name"),
        ] {
            assert_eq!(same_key(a, b), a == b, "{a} vs {b}");
        }
        // Every length, and a difference in every position of it.
        let name = "averageInboundJitterRatioOfMedia";
        for length in 0..=name.len() {
            let a = &name[..length];
            assert!(same_key(a, a), "{a}");
            for at in 0..length {
                let mut b = a.as_bytes().to_vec();
                b[at] ^= 0x20;
                let b = String::from_utf8(b).unwrap();
                assert!(!same_key(a, &b), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        let (shapes, root, ..) = shapes();
        let mut dom = Dom::new(shapes);
        assert!(dom.parse_str(r#"{"name":"a""#, root).is_err());
        assert!(dom.parse_str(r#"{"name":"a"} x"#, root).is_err());
        assert!(dom.parse_str("{\"name\":\"a\"}  \n", root).is_ok());
    }
}
