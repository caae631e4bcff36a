//! Shapes: which members of which JSON objects the declared tables read, compiled from
//! the column paths of `schemas/*.json` before any record is parsed.
//!
//! A [`Shape`] lists the keys of one kind of object (a session, a media, an identity set)
//! that some column or row walker reads, each with the shape of the object (or of the
//! array items) found under it. The parser ([`super::dom`]) keeps exactly those members,
//! in slots numbered by the shape, and skips the rest without building anything; a
//! column's path is then a list of slot numbers instead of key lookups. Objects whose text
//! a column keeps whole (`convert: json`) keep every member ([`Shapes::keep_everything`]).
//!
//! May touch: nothing but the declarations handed in; no I/O.

use rustc_hash::FxHashMap;

/// An index into [`Shapes`].
pub type ShapeId = u32;

/// The shape that keeps every member of every object below it, in declaration-free form.
pub const KEEP_ALL: ShapeId = 0;

/// The keys of one kind of object that are read.
#[derive(Debug, Clone)]
pub struct Shape {
    keys: Vec<&'static str>,
    index: FxHashMap<&'static str, u16>,
    /// Per slot: the shape of an object (or of array items that are objects) under the key;
    /// `None` for values read as scalars (an object found there anyway is kept whole).
    children: Vec<Option<ShapeId>>,
    /// What happens to keys that are not slots: skipped (`None`), or kept with this shape.
    others: Option<ShapeId>,
    /// The slots in the order of their keys (for writing objects as `serde_json` does).
    in_key_order: std::sync::OnceLock<Vec<u16>>,
}

impl Shape {
    fn empty() -> Self {
        Shape {
            keys: Vec::new(),
            index: FxHashMap::default(),
            children: Vec::new(),
            others: None,
            in_key_order: std::sync::OnceLock::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn key(&self, slot: u16) -> &'static str {
        self.keys[usize::from(slot)]
    }

    /// Inlined: the parser resolves every key it did not predict with it (a call once the
    /// compiler stopped inlining it on its own: BENCHMARKS.md).
    #[inline]
    pub fn slot_of(&self, key: &str) -> Option<u16> {
        self.index.get(key).copied()
    }

    pub fn child(&self, slot: u16) -> Option<ShapeId> {
        self.children[usize::from(slot)]
    }

    pub fn others(&self) -> Option<ShapeId> {
        self.others
    }

    /// The slots ordered by their keys. Computed on first use: shapes are complete by then.
    pub fn slots_in_key_order(&self) -> &[u16] {
        self.in_key_order.get_or_init(|| {
            let mut slots: Vec<u16> = (0..self.keys.len() as u16).collect();
            slots.sort_by_key(|&slot| self.keys[usize::from(slot)]);
            slots
        })
    }
}

/// A set of shapes that refer to each other (a callRecord's tree, or one log table's row).
#[derive(Debug, Clone)]
pub struct Shapes {
    shapes: Vec<Shape>,
}

impl Default for Shapes {
    fn default() -> Self {
        Self::new()
    }
}

impl Shapes {
    /// A set holding only [`KEEP_ALL`].
    pub fn new() -> Self {
        let mut keep_all = Shape::empty();
        keep_all.others = Some(KEEP_ALL);
        Shapes {
            shapes: vec![keep_all],
        }
    }

    pub fn get(&self, id: ShapeId) -> &Shape {
        &self.shapes[id as usize]
    }

    /// How many shapes there are (ids are `0..len`).
    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    /// A new shape with no keys.
    pub fn add(&mut self) -> ShapeId {
        self.shapes.push(Shape::empty());
        ShapeId::try_from(self.shapes.len() - 1).expect("fewer than 2^32 shapes")
    }

    /// The slot of `key` in `shape`, added if it is new.
    pub fn slot(&mut self, shape: ShapeId, key: &'static str) -> u16 {
        assert_ne!(shape, KEEP_ALL, "the keep-all shape has no slots");
        let shape = &mut self.shapes[shape as usize];
        if let Some(&slot) = shape.index.get(key) {
            return slot;
        }
        // The text reader matches an expected key against the raw text, which holds only
        // for keys that need no escape in JSON.
        assert!(
            !key.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20),
            "{key:?} is not plain JSON string text"
        );
        assert!(
            shape.in_key_order.get().is_none(),
            "a shape gains no key once parsing has used it"
        );
        let slot = u16::try_from(shape.keys.len()).expect("fewer than 2^16 keys per object");
        shape.keys.push(key);
        shape.index.insert(key, slot);
        shape.children.push(None);
        slot
    }

    /// The shape of the objects under `key` of `shape`, added if there is none yet.
    pub fn child(&mut self, shape: ShapeId, key: &'static str) -> ShapeId {
        let slot = self.slot(shape, key);
        if let Some(child) = self.shapes[shape as usize].children[usize::from(slot)] {
            return child;
        }
        let child = self.add();
        self.shapes[shape as usize].children[usize::from(slot)] = Some(child);
        child
    }

    /// Makes `child` the shape of the objects under `key` of `shape` (a row walker's link
    /// from a parent row to its child rows). Links are made before any path is added.
    pub fn link(&mut self, shape: ShapeId, key: &'static str, child: ShapeId) {
        let slot = self.slot(shape, key);
        let existing = &mut self.shapes[shape as usize].children[usize::from(slot)];
        assert!(
            existing.is_none_or(|existing| existing == child),
            "{key} is linked to two shapes"
        );
        *existing = Some(child);
    }

    /// The shape reached from `shape` along a dotted `path`'s intermediate keys (each
    /// added if new), and the slot of its last key. `path` must not be empty.
    pub fn path(&mut self, mut shape: ShapeId, path: &'static str) -> (ShapeId, u16) {
        let mut segments = path.split('.').peekable();
        loop {
            let segment = segments.next().expect("a path has at least one segment");
            if segments.peek().is_none() {
                return (shape, self.slot(shape, segment));
            }
            shape = self.child(shape, segment);
        }
    }

    /// Like [`Shapes::path`], for a path that leads to an object: its shape.
    pub fn object_at(&mut self, shape: ShapeId, path: &'static str) -> ShapeId {
        if path.is_empty() {
            return shape;
        }
        let (parent, slot) = self.path(shape, path);
        self.child(parent, self.shapes[parent as usize].key(slot))
    }

    /// Objects of `shape` keep the members that are not slots, with `others` as their shape,
    /// unless they keep everything already.
    pub fn keep_others(&mut self, shape: ShapeId, others: ShapeId) {
        let shape = &mut self.shapes[shape as usize];
        if shape.others.is_none() {
            shape.others = Some(others);
        }
    }

    /// `shape` and every shape below it keep all their members (for text kept whole).
    /// Called after every path is added: a shape added later would not keep everything.
    pub fn keep_everything(&mut self, shape: ShapeId) {
        let mut pending = vec![shape];
        while let Some(shape) = pending.pop() {
            let entry = &mut self.shapes[shape as usize];
            if entry.others == Some(KEEP_ALL) {
                continue;
            }
            let previous = entry.others.replace(KEEP_ALL);
            pending.extend(entry.children.iter().flatten().copied());
            pending.extend(previous);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_share_intermediate_shapes_and_links_come_first() {
        let mut shapes = Shapes::new();
        let media = shapes.add();
        let hop = shapes.add();
        let caller_network = shapes.object_at(media, "callerNetwork");
        shapes.link(caller_network, "traceRouteHops", hop);
        let (network, speed) = shapes.path(media, "callerNetwork.linkSpeed");
        let (again, hops) = shapes.path(media, "callerNetwork.traceRouteHops");
        assert_eq!(network, again);
        assert_eq!(shapes.get(network).key(speed), "linkSpeed");
        assert_eq!(shapes.get(network).child(hops), Some(hop));
        assert_eq!(shapes.get(media).len(), 1);
        assert_eq!(shapes.get(media).others(), None);
    }

    #[test]
    fn keeping_everything_reaches_every_shape_below() {
        let mut shapes = Shapes::new();
        let set = shapes.add();
        let member = shapes.add();
        shapes.link(set, "user", member);
        shapes.keep_others(set, member);
        shapes.slot(member, "id");
        shapes.keep_everything(set);
        assert_eq!(shapes.get(set).others(), Some(KEEP_ALL));
        assert_eq!(shapes.get(member).others(), Some(KEEP_ALL));
    }
}
