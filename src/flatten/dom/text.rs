//! The fast path of [`Dom::parse_str`]: a hand-written reader of JSON text that fills the
//! tree through the same object and array steps as the serde visitors, without serde's
//! per-value calls, and finds the end of strings sixteen bytes at a time. A member's key
//! is first compared in place with the key its shape expects next (objects of one kind
//! list their members in one order), so most keys are matched without a scan for their end.
//! It also notes which objects' texts can be copied as their JSON text (see [`Dom`]).
//!
//! It reads only what it is sure to read exactly as `serde_json` (1.x, without
//! `float_roundtrip`) does: strings without escapes, integers of up to 64 bits, decimals
//! without exponent of at most 22 fraction digits and a significand of 64 bits, `true`,
//! `false`, `null`, and nesting below serde_json's depth limit. For anything else, and for
//! every syntax error, it gives up ([`GiveUp`]), and [`Dom::parse_str`] reads the text again
//! with `serde_json`, which gives the same tree or the error message. Graph's records (and
//! the raw lines written from them) are almost all of the first kind.
//!
//! May touch: the [`Dom`] being filled; no I/O.

use std::borrow::Cow;

use super::{Dom, Key, KeySeed, NO_TEXT, Node, ShapeId, Truth, UNPREDICTED, index, same_bytes};

/// The text is not of the kind this reader is sure of; `serde_json` reads it instead.
#[derive(Debug)]
pub(super) struct GiveUp;

type Read<T> = Result<T, GiveUp>;

/// Nesting beyond this is left to `serde_json` (which stops at 128 with an error).
const MAX_DEPTH: u32 = 100;

/// `10^n` as `serde_json` divides by it (`f64_from_parts`: the significand, converted to
/// `f64`, divided by the power of ten of the fraction's digits). Literals, so correctly rounded.
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

pub(super) struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    position: usize,
    depth: u32,
    /// How many things were read that `serde_json` writes otherwise (whitespace, floats,
    /// keys out of order, objects that do not keep every member): an object is written
    /// as its text if this did not change while reading it.
    irregular: u32,
}

impl<'a> Reader<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Reader {
            text,
            bytes: text.as_bytes(),
            position: 0,
            depth: 0,
            irregular: 0,
        }
    }

    /// One JSON value filling the whole text (whitespace around it allowed).
    pub(super) fn document(mut self, dom: &mut Dom<'a>, shape: ShapeId) -> Read<Node<'a>> {
        self.whitespace();
        let root = self.value(dom, Some(shape))?;
        self.whitespace();
        if self.position == self.bytes.len() {
            Ok(root)
        } else {
            Err(GiveUp)
        }
    }

    #[inline]
    fn peek(&self) -> Read<u8> {
        self.bytes.get(self.position).copied().ok_or(GiveUp)
    }

    /// Whitespace, where there is any: raw lines (and what Graph sends) have none, so the
    /// first byte is looked at once, against the largest whitespace byte.
    #[inline]
    fn whitespace(&mut self) {
        if self
            .bytes
            .get(self.position)
            .is_none_or(|&byte| byte > b' ')
        {
            return;
        }
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.position) {
            self.position += 1;
            self.irregular += 1;
        }
    }

    /// Steps over `byte` (after whitespace), which must come next.
    #[inline]
    fn expect(&mut self, byte: u8) -> Read<()> {
        self.whitespace();
        if self.peek()? != byte {
            return Err(GiveUp);
        }
        self.position += 1;
        Ok(())
    }

    /// One value. Scalars (most values) are read in the caller's loop; only objects and
    /// arrays take a call, and the stack frame of the recursion.
    #[inline(always)]
    fn value(&mut self, dom: &mut Dom<'a>, shape: Option<ShapeId>) -> Read<Node<'a>> {
        match self.peek()? {
            b'"' => Ok(Node::Str(Cow::Borrowed(self.string()?))),
            b'{' | b'[' => self.nested(dom, shape),
            b'-' | b'0'..=b'9' => self.number(),
            _ => self.literal(),
        }
    }

    /// An object or an array (at its opening bracket).
    #[inline(never)]
    fn nested(&mut self, dom: &mut Dom<'a>, shape: Option<ShapeId>) -> Read<Node<'a>> {
        if self.bytes[self.position] == b'{' {
            self.object(dom, shape)
        } else {
            self.array(dom, shape)
        }
    }

    /// Reads a value as [`Reader::value`] does, keeping nothing (a member no column reads).
    fn skip(&mut self) -> Read<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.container(b'}', |reader| {
                reader.key()?;
                reader.skip()
            }),
            b'[' => self.container(b']', Reader::skip),
            b'-' | b'0'..=b'9' => self.number().map(drop),
            _ => self.literal().map(drop),
        }
    }

    /// An object or array from its opening byte to `close`: `each` reads one member or
    /// item; commas, whitespace and the depth this reader takes are seen to here.
    #[inline]
    fn container(&mut self, close: u8, mut each: impl FnMut(&mut Self) -> Read<()>) -> Read<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        self.position += 1;
        self.whitespace();
        if self.bytes.get(self.position) == Some(&close) {
            self.position += 1;
        } else {
            loop {
                each(self)?;
                self.whitespace();
                let byte = self.peek()?;
                self.position += 1;
                if byte == close {
                    break;
                }
                if byte != b',' {
                    return Err(GiveUp);
                }
                self.whitespace();
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// A member's key and its colon.
    #[inline]
    fn key(&mut self) -> Read<&'a str> {
        if self.peek()? != b'"' {
            return Err(GiveUp);
        }
        let key = self.string()?;
        self.colon()?;
        Ok(key)
    }

    /// The colon after a key, and the whitespace around it.
    #[inline]
    fn colon(&mut self) -> Read<()> {
        if self.bytes.get(self.position) == Some(&b':') {
            self.position += 1;
        } else {
            self.expect(b':')?;
        }
        self.whitespace();
        Ok(())
    }

    /// A member's key and its colon, resolved against the object's shape. The key expected
    /// next is compared with the text in place first: shapes' keys are plain JSON string
    /// text (no quote, backslash or control character), so when the text holds that key
    /// followed by a quote, it is that key, and the key needs no scan for its end.
    #[inline]
    fn member_key(&mut self, seed: &KeySeed) -> Read<Key<'a>> {
        if seed.guess != UNPREDICTED {
            let expected = seed.shape.key(seed.guess).as_bytes();
            let start = self.position + 1;
            let end = start + expected.len();
            if self.bytes.get(self.position) == Some(&b'"')
                && self.bytes.get(end) == Some(&b'"')
                && same_bytes(&self.bytes[start..end], expected)
            {
                self.position = end + 1;
                self.colon()?;
                return Ok(Key::Slot(seed.guess));
            }
        }
        let key = self.key()?;
        Ok(seed.resolve(key, || Cow::Borrowed(key)))
    }

    fn object(&mut self, dom: &mut Dom<'a>, shape: Option<ShapeId>) -> Read<Node<'a>> {
        let (start, irregular) = (self.position, self.irregular);
        let mut fill = dom.begin_object(shape);
        // Only objects that keep every member can be written as their text; their keys
        // must come in order.
        let whole = fill.shape.others().is_some();
        let mut previous = "";
        self.container(b'}', |reader| {
            match reader.member_key(&dom.key_seed(&fill))? {
                Key::Slot(slot) => {
                    if whole {
                        reader.next_key(&mut previous, fill.shape.key(slot));
                    }
                    dom.follow(&mut fill, slot);
                    let node = reader.value(dom, fill.shape.child(slot))?;
                    dom.set_slot(&fill, slot, node);
                }
                Key::Kept(name) => {
                    if let (true, Cow::Borrowed(key)) = (whole, &name) {
                        reader.next_key(&mut previous, key);
                    }
                    let node = reader.value(dom, fill.shape.others())?;
                    dom.keep_member(name, node);
                }
                Key::Skipped => reader.skip()?,
            }
            Ok(())
        })?;
        let text = if whole && self.irregular == irregular {
            (index(start), index(self.position - start))
        } else {
            // Nor can an object that holds this one be.
            self.irregular += 1;
            NO_TEXT
        };
        Ok(dom.end_object(fill, text))
    }

    /// Notes the key of a member of an object that keeps every member: `serde_json` writes
    /// keys in increasing order, once each.
    #[inline]
    fn next_key(&mut self, previous: &mut &'a str, key: &'a str) {
        if key <= *previous {
            self.irregular += 1;
        }
        *previous = key;
    }

    fn array(&mut self, dom: &mut Dom<'a>, shape: Option<ShapeId>) -> Read<Node<'a>> {
        let mark = dom.begin_array();
        self.container(b']', |reader| {
            let node = reader.value(dom, shape)?;
            dom.item_stack.push(node);
            Ok(())
        })?;
        Ok(dom.end_array(mark))
    }

    /// A string without escapes (at its opening quote), borrowed from the text.
    #[inline]
    fn string(&mut self) -> Read<&'a str> {
        let start = self.position + 1;
        let length = plain_string_length(&self.bytes[start..]).ok_or(GiveUp)?;
        self.position = start + length + 1;
        // Both ends are next to an ASCII quote: char boundaries.
        Ok(&self.text[start..start + length])
    }

    fn literal(&mut self) -> Read<Node<'a>> {
        let rest = &self.bytes[self.position..];
        let (node, length) = if rest.starts_with(b"null") {
            (Node::Null, 4)
        } else if rest.starts_with(b"true") {
            (Node::Bool(Truth::new(true)), 4)
        } else if rest.starts_with(b"false") {
            (Node::Bool(Truth::new(false)), 5)
        } else {
            return Err(GiveUp);
        };
        self.position += length;
        Ok(node)
    }

    /// A number as `serde_json` makes it: a non-negative integer is `Uint`, a negative one
    /// `Int` (`-0` and those below `i64::MIN` are floats), a decimal is its significand
    /// divided by the power of ten of its fraction digits.
    fn number(&mut self) -> Read<Node<'a>> {
        let negative = self.bytes[self.position] == b'-';
        if negative {
            self.position += 1;
        }
        let mut significand = match self.peek()? {
            b'0' => {
                self.position += 1;
                if self.peek().is_ok_and(|b| b.is_ascii_digit()) {
                    return Err(GiveUp);
                }
                0
            }
            b'1'..=b'9' => self.digits(0)?.0,
            _ => return Err(GiveUp),
        };
        let mut fraction_digits = 0;
        if self.bytes.get(self.position) == Some(&b'.') {
            self.position += 1;
            (significand, fraction_digits) = self.digits(significand)?;
            if fraction_digits == 0 {
                return Err(GiveUp);
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.position) {
            return Err(GiveUp);
        }
        if fraction_digits == 0 {
            return Ok(match (negative, (significand as i64).wrapping_neg()) {
                (false, _) => Node::Uint(significand),
                (true, negated) if negated < 0 => Node::Int(negated),
                (true, _) => {
                    self.irregular += 1;
                    Node::Float(-(significand as f64))
                }
            });
        }
        self.irregular += 1;
        let power = POWERS_OF_TEN.get(fraction_digits).ok_or(GiveUp)?;
        let magnitude = significand as f64 / power;
        Ok(Node::Float(if negative { -magnitude } else { magnitude }))
    }

    /// Appends the digits that follow to `significand`; returns it and how many digits
    /// there were. Gives up where the significand would pass 64 bits.
    #[inline]
    fn digits(&mut self, mut significand: u64) -> Read<(u64, usize)> {
        let start = self.position;
        // Most numbers are one run of at most eight digits: taken at once.
        while let Some((run, count)) = self
            .bytes
            .get(self.position..self.position + 8)
            .map(digit_run)
        {
            significand = significand
                .checked_mul(POWERS_OF_TEN_U64[count])
                .and_then(|s| s.checked_add(run))
                .ok_or(GiveUp)?;
            self.position += count;
            if count < 8 {
                return Ok((significand, self.position - start));
            }
        }
        while let Some(&byte) = self.bytes.get(self.position) {
            if !byte.is_ascii_digit() {
                break;
            }
            significand = significand
                .checked_mul(10)
                .and_then(|s| s.checked_add(u64::from(byte - b'0')))
                .ok_or(GiveUp)?;
            self.position += 1;
        }
        Ok((significand, self.position - start))
    }
}

/// `10^n` for the digits of one [`digit_run`].
const POWERS_OF_TEN_U64: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// The digits at the start of `eight` bytes, as a number, and how many there are (0 to 8).
/// Eight bytes are looked at as one word: no loop, and no chain of one multiplication per
/// digit (the byte-at-a-time loop was the slowest part of reading a number).
#[inline]
fn digit_run(eight: &[u8]) -> (u64, usize) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let word = u64::from_le_bytes(eight.try_into().expect("eight bytes"));
    // A byte is a digit when its high nibble is 3 and its low nibble below 10 (adding 6
    // stays within the nibble): per byte, without carries into the next.
    let not_digit = ((word & (0xf0 * ONES)) ^ (0x30 * ONES))
        | (((word & (0x0f * ONES)) + 6 * ONES) & (0xf0 * ONES));
    let count = (not_digit.trailing_zeros() / 8) as usize;
    if count == 0 {
        return (0, 0);
    }
    // The digits' values, the first in the highest byte used: leading zeros fill the
    // bytes below, so every run is read as eight digits.
    let mut value = (word & (0x0f * ONES)) << (8 * (8 - count));
    // Pairs, then fours, then all eight (the first digit is in the lowest byte).
    // (fast_float's eight-digit step: the products wrap by design.)
    value = value.wrapping_mul(10).wrapping_add(value >> 8);
    value = ((value & 0x0000_00ff_0000_00ff)
        .wrapping_mul(0x000f_4240_0000_0064)
        .wrapping_add(((value >> 16) & 0x0000_00ff_0000_00ff).wrapping_mul(0x0000_2710_0000_0001)))
        >> 32;
    (value, count)
}

/// The bytes of a string's text before its closing quote, where no backslash (an escape)
/// or control character (an error) comes first and the quote is there at all.
#[inline]
fn plain_string_length(bytes: &[u8]) -> Option<usize> {
    let mut start = 0;
    #[cfg(target_arch = "x86_64")]
    {
        // Sixteen bytes compared at once.
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8,
        };
        while start + 16 <= bytes.len() {
            // SAFETY: SSE2 is part of the x86_64 baseline, and the sixteen bytes loaded
            // from `start` lie within `bytes` (unaligned loads are allowed).
            let mask = unsafe {
                let block = _mm_loadu_si128(bytes.as_ptr().add(start).cast::<__m128i>());
                let quotes = _mm_cmpeq_epi8(block, _mm_set1_epi8(b'"' as i8));
                let backslashes = _mm_cmpeq_epi8(block, _mm_set1_epi8(b'\\' as i8));
                // Unsigned `byte <= 0x1f`: the smaller of the two is the byte itself.
                let controls = _mm_cmpeq_epi8(_mm_min_epu8(block, _mm_set1_epi8(0x1f)), block);
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quotes, backslashes), controls))
            };
            if mask != 0 {
                let at = start + mask.trailing_zeros() as usize;
                return (bytes[at] == b'"').then_some(at);
            }
            start += 16;
        }
    }
    let at = start
        + bytes[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    (bytes[at] == b'"').then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flatten::shape::Shapes;
    use serde_json::Value;

    /// The tree the reader builds, or None where it gives up.
    fn read(text: &str, shapes: &'static Shapes, root: ShapeId) -> Option<Value> {
        let mut dom = Dom::new(shapes);
        let node = Reader::new(text).document(&mut dom, root).ok()?;
        dom.root = node;
        Some(dom.root().to_value())
    }

    fn with_serde(text: &str, shapes: &'static Shapes, root: ShapeId) -> Option<Value> {
        let mut dom = Dom::new(shapes);
        dom.parse_str_with_serde(text, root).ok()?;
        Some(dom.root().to_value())
    }

    fn keep_all() -> (&'static Shapes, ShapeId) {
        let mut shapes = Shapes::new();
        let root = shapes.add();
        shapes.keep_everything(root);
        (Box::leak(Box::new(shapes)), root)
    }

    #[test]
    fn plain_strings_end_at_their_quote_in_every_position() {
        for length in 0..40 {
            let body = "é".repeat(length / 2) + &"x".repeat(length % 2);
            let text = format!("{body}\"tail\"");
            assert_eq!(plain_string_length(text.as_bytes()), Some(body.len()));
            for special in ["\\", "\u{1}", "\n", "\u{1f}"] {
                let text = format!("{body}{special}\"");
                assert_eq!(plain_string_length(text.as_bytes()), None, "{text:?}");
            }
            assert_eq!(plain_string_length(body.as_bytes()), None);
        }
        assert_eq!(plain_string_length("\u{7f}\u{80}ÿ\"".as_bytes()), Some(5));
    }

    #[test]
    fn digit_runs_are_read_as_digit_by_digit() {
        let digits = b"9081726354";
        for count in 0..=8 {
            for offset in 0..3 {
                let run = &digits[offset..offset + count];
                for after in [b'.', b',', b'}', b'e', b'/', b':', b' ', 0x80, b'0', b'9'] {
                    let mut eight = [after; 8];
                    eight[..count].copy_from_slice(run);
                    let expected = eight.iter().take_while(|b| b.is_ascii_digit()).count();
                    let value = std::str::from_utf8(&eight[..expected])
                        .unwrap()
                        .parse()
                        .unwrap_or(0);
                    assert_eq!(digit_run(&eight), (value, expected), "{eight:?}");
                }
            }
        }
        assert_eq!(digit_run(b"00000000"), (0, 8));
        assert_eq!(digit_run(b"99999999"), (99_999_999, 8));
    }

    proptest::proptest! {
        #[test]
        fn numbers_are_read_as_serde_json_reads_them(
            integer in proptest::num::u64::ANY,
            negative in proptest::bool::ANY,
            fraction in "[0-9]{0,24}",
        ) {
            let (shapes, root) = keep_all();
            let sign = if negative { "-" } else { "" };
            let number = match fraction.as_str() {
                "" => format!("{sign}{integer}"),
                fraction => format!("{sign}{integer}.{fraction}"),
            };
            let text = format!(r#"{{"n":{number},"after":1}}"#);
            let serde = with_serde(&text, shapes, root).expect("valid JSON");
            match read(&text, shapes, root) {
                Some(fast) => {
                    proptest::prop_assert_eq!(&fast, &serde, "{}", text);
                    proptest::prop_assert_eq!(fast.to_string(), serde.to_string());
                }
                // It may give up only on what it is not sure of.
                None => proptest::prop_assert!(
                    fraction.len() > 22 || integer.to_string().len() + fraction.len() > 19,
                    "gave up on {}", text
                ),
            }
        }
    }

    #[test]
    fn what_it_reads_is_what_serde_json_reads() {
        let (shapes, root) = keep_all();
        for text in [
            r#"{"a":1,"b":-2,"c":0,"d":-0,"e":18446744073709551615,"f":-9223372036854775808}"#,
            r#"{"g":-9223372036854775809,"h":0.1,"i":-0.0,"j":12.83,"k":0.0414,"l":1.5}"#,
            r#"{"m":22.4656,"n":0.30000000000000004,"o":1.7976931348623157,"p":-78.0}"#,
            r#"{"q":0.0000000000000000000001,"r":1844674407370955161.5}"#,
            r#"{"a":9999999999999999999,"b":12345678901234567890,"c":1.8446744073709551615}"#,
            r#"{"d":-1234567890123456789,"e":0.000000000000000001,"f":123456789.0123456789}"#,
            r#"{"a":7,"b":12345678,"c":123456789,"d":1234567812345678,"e":12345678123456781}"#,
            r#"{"f":0.12345678,"g":3.141592653589793,"h":10000000000000000000,"i":42}"#,
            r#" { "s" : [ true , false , null , "x" , { } , [ ] ] , "t":{"u":{"v":[[1]]}} } "#,
            r#"{"w":"é ü","dup":1,"dup":2,"x":"1234567890abcdefghijklmnopqrst"}"#,
            "[1,2,3]\r",
            r#""text""#,
        ] {
            let fast = read(text, shapes, root).unwrap_or_else(|| panic!("read: {text}"));
            let serde = with_serde(text, shapes, root).expect("valid JSON");
            assert_eq!(fast, serde, "{text}");
            // Integers and floats stay apart.
            assert_eq!(fast.to_string(), serde.to_string(), "{text}");
        }
    }

    #[test]
    fn it_gives_up_on_what_it_is_not_sure_of_and_on_every_error() {
        let (shapes, root) = keep_all();
        for text in [
            r#"{"a":"x\"y"}"#,
            r#"{"a":1e3}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":99999999999999999999}"#,
            r#"{"a":1.8446744073709551616}"#,
            r#"{"a":0.12345678901234567890123}"#,
            &format!("{}1{}", "[".repeat(101), "]".repeat(101)),
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a" 1}"#,
            r#"{"a":1"#,
            r#"{"a":"x"#,
            "{\"a\":\"\t\"}",
            r#"{"a":nul}"#,
            r#"{"a":1} x"#,
            r#"[1 2]"#,
            "",
        ] {
            assert!(read(text, shapes, root).is_none(), "{text}");
        }
    }

    #[test]
    fn expected_keys_match_only_the_whole_key() {
        let mut shapes = Shapes::new();
        let root = shapes.add();
        for key in ["id", "idle", "name"] {
            shapes.slot(root, key);
        }
        let shapes: &'static Shapes = Box::leak(Box::new(shapes));
        let mut dom = Dom::new(shapes);
        // The first text teaches the order id → idle → name; the others break it in
        // every way a key can resemble the expected one.
        for text in [
            r#"{"id":1,"idle":2,"name":3}"#,
            r#"{"idle":1,"id":2,"name":3}"#,
            r#"{"id":1,"id":2,"name":3}"#,
            r#"{"id":1,"idl":2,"name":3}"#,
            r#"{"id":1,"idlex":2,"nam":3}"#,
            r#"{"id" : 1 ,"idle"  :2,"name"	:3}"#,
            r#"{"i\u0064":1,"idle":2,"na\u006de":3}"#,
            r#"{"id":1,"idle":2,"name"#,
            r#"{"id":1,"idle":2,"name""#,
            r#"{"id":1,"idle":2,"name":"#,
            r#"{"id":1,"idle"2}"#,
        ] {
            let serde = with_serde(text, shapes, root);
            let mut fast = None;
            if let Ok(node) = Reader::new(text).document(&mut dom, root) {
                dom.root = node;
                fast = Some(dom.root().to_value());
            }
            assert!(
                fast.is_none() || fast == serde,
                "{text}: {fast:?} vs {serde:?}"
            );
            let mut whole = Dom::new(shapes);
            assert_eq!(
                whole
                    .parse_str(text, root)
                    .ok()
                    .map(|()| whole.root().to_value()),
                serde,
                "{text}"
            );
        }
    }

    #[test]
    fn skipped_members_are_checked_like_kept_ones() {
        let mut shapes = Shapes::new();
        let root = shapes.add();
        shapes.slot(root, "kept");
        let shapes: &'static Shapes = Box::leak(Box::new(shapes));
        let good = r#"{"skipped":{"x":[1,-2.5,"s",true,null,{}]},"kept":3}"#;
        assert_eq!(read(good, shapes, root), with_serde(good, shapes, root));
        assert_eq!(
            read(good, shapes, root).unwrap().to_string(),
            r#"{"kept":3}"#
        );
        for bad in [
            r#"{"skipped":[1,,2],"kept":3}"#,
            r#"{"skipped":{"x" 1},"kept":3}"#,
            r#"{"skipped":tru,"kept":3}"#,
        ] {
            assert!(read(bad, shapes, root).is_none(), "{bad}");
            assert!(with_serde(bad, shapes, root).is_none(), "{bad}");
        }
    }
}
