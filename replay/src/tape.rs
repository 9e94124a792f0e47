//! A JSON value parsed into a flat list of nodes (a "tape") that borrows its
//! strings from the line it was read from: no allocation per value (but for
//! strings with escapes), and the list's memory is reused from line to line. Built for the verifier's fast
//! path, so it takes only values whose canonical bytes (RFC 8785) it can
//! write without doubt: integers within ±(2^53−1) and objects whose keys are
//! strictly ascending in UTF-16 order, which is how every export writes
//! them (no duplicate key, nothing to sort). Anything else is refused and
//! the caller checks that line the normative way.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::io::Write;

use engine::chain::CANONICAL_INTEGER_MAX;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// One node of a [`Tape`], in document order (pre-order).
#[derive(Clone, Debug, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    /// Within ±(2^53−1): JCS and Rust print it the same way.
    Int(i64),
    Str(Cow<'a, str>),
    /// `len` elements follow; `end` is the index just after the last of them.
    Array {
        len: u32,
        end: u32,
    },
    /// `len` pairs of a [`Node::Key`] and a value follow; `end` as for arrays.
    Object {
        len: u32,
        end: u32,
    },
    Key(Cow<'a, str>),
}

/// A parsed value: `nodes[0]` is the root.
#[derive(Debug, Default)]
pub struct Tape<'a> {
    pub nodes: Vec<Node<'a>>,
    /// The containers [`Tape::parse_canonical`] has open (memory reused).
    open: Vec<Open>,
}

/// A container being read by [`Tape::parse_canonical`].
#[derive(Debug)]
struct Open {
    /// Its node's index.
    at: usize,
    /// Elements or members read so far.
    len: u32,
    /// Whether it is an object.
    object: bool,
    /// The node index of the object's last key.
    last_key: usize,
}

impl<'a> Tape<'a> {
    /// A seed that parses one JSON value onto the end of this tape.
    pub fn seed<'t>(&'t mut self) -> ValueSeed<'t, 'a> {
        ValueSeed {
            nodes: &mut self.nodes,
        }
    }

    /// Parses `text` onto the tape (cleared first) when it is one JSON
    /// value spelt exactly as RFC 8785 writes it and as the tape holds it:
    /// no whitespace, object keys strictly ascending in UTF-16 order,
    /// integers within ±(2^53−1) without a leading zero (nor `-0`), strings
    /// and keys without escapes or control characters. `None` for anything
    /// else, even valid JSON: the caller then parses it the general way
    /// ([`Tape::seed`]). What it accepts, it puts on the tape exactly as
    /// the general parse does, and [`Tape::is_canonical_text`] holds for
    /// it. A single pass over the bytes, several times faster than the
    /// general parse: it reads every payload of a sound export.
    pub fn parse_canonical(&mut self, text: &'a str) -> Option<()> {
        self.nodes.clear();
        self.open.clear();
        let bytes = text.as_bytes();
        let mut at = 0;
        loop {
            // A value starts at `at`.
            match *bytes.get(at)? {
                b'{' | b'[' => {
                    let object = bytes[at] == b'{';
                    let node = self.nodes.len();
                    self.nodes.push(if object {
                        Node::Object { len: 0, end: 0 }
                    } else {
                        Node::Array { len: 0, end: 0 }
                    });
                    at += 1;
                    if bytes.get(at) == Some(if object { &b'}' } else { &b']' }) {
                        at += 1;
                        self.close(node, 0, object)?;
                    } else {
                        self.open.push(Open {
                            at: node,
                            len: 0,
                            object,
                            last_key: 0,
                        });
                        if object {
                            at = self.key(text, at)?;
                        }
                        continue;
                    }
                }
                b'"' => {
                    let (value, end) = plain_string(text, at)?;
                    self.nodes.push(Node::Str(Cow::Borrowed(value)));
                    at = end;
                }
                b't' if bytes[at..].starts_with(b"true") => {
                    self.nodes.push(Node::Bool(true));
                    at += 4;
                }
                b'f' if bytes[at..].starts_with(b"false") => {
                    self.nodes.push(Node::Bool(false));
                    at += 5;
                }
                b'n' if bytes[at..].starts_with(b"null") => {
                    self.nodes.push(Node::Null);
                    at += 4;
                }
                b'-' | b'0'..=b'9' => {
                    let (value, end) = canonical_integer(bytes, at)?;
                    self.nodes.push(Node::Int(value));
                    at = end;
                }
                _ => return None,
            }
            // A value ended: what follows it in the innermost container.
            loop {
                let Some(open) = self.open.last_mut() else {
                    return (at == bytes.len()).then_some(());
                };
                open.len += 1;
                let (closing, object) = if open.object {
                    (b'}', true)
                } else {
                    (b']', false)
                };
                match *bytes.get(at)? {
                    b',' if object => {
                        at = self.key(text, at + 1)?;
                        break;
                    }
                    b',' => {
                        at += 1;
                        break;
                    }
                    byte if byte == closing => {
                        at += 1;
                        let Open { at: node, len, .. } = self.open.pop()?;
                        self.close(node, len, object)?;
                    }
                    _ => return None,
                }
            }
        }
    }

    /// Reads an object key and its colon at `at` (in the innermost open
    /// object), refusing keys out of canonical order; returns where the
    /// value starts.
    fn key(&mut self, text: &'a str, at: usize) -> Option<usize> {
        if text.as_bytes().get(at) != Some(&b'"') {
            return None;
        }
        let (key, end) = plain_string(text, at)?;
        let open = self.open.last_mut()?;
        if open.len > 0
            && let Some(Node::Key(previous)) = self.nodes.get(open.last_key)
            && engine::chain::utf16_order(previous, key) != Ordering::Less
        {
            return None;
        }
        open.last_key = self.nodes.len();
        self.nodes.push(Node::Key(Cow::Borrowed(key)));
        (text.as_bytes().get(end) == Some(&b':')).then_some(end + 1)
    }

    /// Sets the length and end of the container whose node is at `node`.
    fn close(&mut self, node: usize, len: u32, object: bool) -> Option<()> {
        let end = u32::try_from(self.nodes.len()).ok()?;
        self.nodes[node] = if object {
            Node::Object { len, end }
        } else {
            Node::Array { len, end }
        };
        Some(())
    }

    /// The index just after the value at `index` (and its descendants).
    pub fn end_of(&self, index: usize) -> usize {
        match self.nodes.get(index) {
            Some(Node::Array { end, .. } | Node::Object { end, .. }) => *end as usize,
            _ => index + 1,
        }
    }

    /// The `(key, value index)` pairs of the object at `index`.
    pub fn members(&self, index: usize) -> impl Iterator<Item = (&str, usize)> + '_ {
        let len = match self.nodes.get(index) {
            Some(Node::Object { len, .. }) => *len as usize,
            _ => 0,
        };
        let mut at = index + 1;
        (0..len).filter_map(move |_| {
            let key = match self.nodes.get(at) {
                Some(Node::Key(key)) => key.as_ref(),
                _ => return None,
            };
            let value = at + 1;
            at = self.end_of(value);
            Some((key, value))
        })
    }

    /// The element indexes of the array at `index`.
    pub fn elements(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        let len = match self.nodes.get(index) {
            Some(Node::Array { len, .. }) => *len as usize,
            _ => 0,
        };
        let mut at = index + 1;
        (0..len).map(move |_| {
            let element = at;
            at = self.end_of(element);
            element
        })
    }

    /// Whether `text`, the JSON this tape was parsed from, is already its
    /// canonical form byte for byte, so it can be hashed as it stands.
    /// The tape holds only what JCS writes unchanged (keys in order,
    /// integers, which JSON spells one way only, `-0` being parsed as a
    /// float and refused); a string borrowed from the text had no escape
    /// (and JSON allows no raw control character), so it reads the same.
    /// What is left is whitespace between tokens, and exactly then is the
    /// text longer than the canonical bytes this sums up.
    pub fn is_canonical_text(&self, text: &str) -> bool {
        let mut canonical = 0usize;
        for node in &self.nodes {
            canonical += match node {
                Node::Null | Node::Bool(true) => 4,
                Node::Bool(false) => 5,
                Node::Int(value) => itoa::Buffer::new().format(*value).len(),
                Node::Str(Cow::Borrowed(text)) => text.len() + 2,
                Node::Key(Cow::Borrowed(key)) => key.len() + 3,
                Node::Str(Cow::Owned(_)) | Node::Key(Cow::Owned(_)) => return false,
                Node::Array { len, .. } | Node::Object { len, .. } => {
                    (*len as usize).saturating_sub(1) + 2
                }
            };
        }
        !self.nodes.is_empty() && canonical == text.len()
    }

    /// Appends the canonical bytes of the value at `index` to `out`; returns
    /// the index after it, `None` if the tape is not well formed.
    pub fn write_canonical(&self, index: usize, out: &mut Vec<u8>) -> Option<usize> {
        match self.nodes.get(index)? {
            Node::Null => out.extend_from_slice(b"null"),
            Node::Bool(true) => out.extend_from_slice(b"true"),
            Node::Bool(false) => out.extend_from_slice(b"false"),
            Node::Int(value) => write!(out, "{value}").ok()?,
            Node::Str(text) | Node::Key(text) => engine::chain::write_json_string(text, out),
            Node::Array { len, end } => {
                out.push(b'[');
                let mut at = index + 1;
                for n in 0..*len {
                    if n > 0 {
                        out.push(b',');
                    }
                    at = self.write_canonical(at, out)?;
                }
                out.push(b']');
                return (at == *end as usize).then_some(at);
            }
            Node::Object { len, end } => {
                out.push(b'{');
                let mut at = index + 1;
                for n in 0..*len {
                    if n > 0 {
                        out.push(b',');
                    }
                    let Some(Node::Key(key)) = self.nodes.get(at) else {
                        return None;
                    };
                    engine::chain::write_json_string(key, out);
                    out.push(b':');
                    at = self.write_canonical(at + 1, out)?;
                }
                out.push(b'}');
                return (at == *end as usize).then_some(at);
            }
        }
        Some(index + 1)
    }
}

/// The content of the string whose opening quote is at `at`, and the
/// index after its closing quote, when it has no escape and no control
/// character (then these bytes are its canonical form too).
fn plain_string(text: &str, at: usize) -> Option<(&str, usize)> {
    let bytes = text.as_bytes();
    let start = at + 1;
    let length = memchr::memchr2(b'"', b'\\', bytes.get(start..)?)?;
    let end = start + length;
    if bytes[end] != b'"' || bytes[start..end].iter().any(|byte| *byte < 0x20) {
        return None;
    }
    Some((text.get(start..end)?, end + 1))
}

/// The integer at `at` and the index after it, when it is spelt as JCS
/// writes it (no leading zero, no `-0`, no fraction or exponent) and lies
/// within ±(2^53−1).
fn canonical_integer(bytes: &[u8], at: usize) -> Option<(i64, usize)> {
    let negative = bytes[at] == b'-';
    let first = at + usize::from(negative);
    let digits = bytes
        .get(first..)?
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    let end = first + digits;
    // 2^53-1 has 16 digits; a fraction or exponent makes it a float.
    if digits == 0
        || digits > 16
        || (bytes[first] == b'0' && (digits > 1 || negative))
        || matches!(bytes.get(end), Some(b'.' | b'e' | b'E'))
    {
        return None;
    }
    let magnitude = bytes[first..end]
        .iter()
        .fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0'));
    if magnitude > CANONICAL_INTEGER_MAX {
        return None;
    }
    let value = i64::try_from(magnitude).ok()?;
    Some((if negative { -value } else { value }, end))
}

/// Parses one value onto a tape (see [`Tape::seed`]).
#[derive(Debug)]
pub struct ValueSeed<'t, 'a> {
    nodes: &'t mut Vec<Node<'a>>,
}

fn index_u32<E: de::Error>(index: usize) -> Result<u32, E> {
    u32::try_from(index).map_err(|_| E::custom("value too large"))
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value with integers within ±(2^53-1) and keys in canonical order")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.nodes.push(Node::Null);
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.nodes.push(Node::Bool(value));
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        if value.unsigned_abs() > CANONICAL_INTEGER_MAX {
            return Err(E::custom("integer beyond ±(2^53-1)"));
        }
        self.nodes.push(Node::Int(value));
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        match i64::try_from(value) {
            Ok(value) => self.visit_i64(value),
            Err(_) => Err(E::custom("integer beyond ±(2^53-1)")),
        }
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom("a number with a fraction or an exponent"))
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<(), E> {
        self.nodes.push(Node::Str(Cow::Borrowed(value)));
        Ok(())
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        self.nodes.push(Node::Str(Cow::Owned(value.to_owned())));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let at = self.nodes.len();
        self.nodes.push(Node::Array { len: 0, end: 0 });
        let mut len = 0u32;
        while seq
            .next_element_seed(ValueSeed {
                nodes: &mut *self.nodes,
            })?
            .is_some()
        {
            len += 1;
        }
        let end = index_u32(self.nodes.len())?;
        self.nodes[at] = Node::Array { len, end };
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let at = self.nodes.len();
        self.nodes.push(Node::Object { len: 0, end: 0 });
        let mut len = 0u32;
        let mut previous_key: Option<usize> = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if let Some(Node::Key(previous)) = previous_key.and_then(|p| self.nodes.get(p))
                && engine::chain::utf16_order(previous, &key) != Ordering::Less
            {
                return Err(de::Error::custom("object keys not strictly ascending"));
            }
            previous_key = Some(self.nodes.len());
            self.nodes.push(Node::Key(key));
            map.next_value_seed(ValueSeed {
                nodes: &mut *self.nodes,
            })?;
            len += 1;
        }
        let end = index_u32(self.nodes.len())?;
        self.nodes[at] = Node::Object { len, end };
        Ok(())
    }
}

/// An object key, borrowed unless it has escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value.to_owned()))
    }
}
