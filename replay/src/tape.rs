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
}

impl<'a> Tape<'a> {
    /// A seed that parses one JSON value onto the end of this tape.
    pub fn seed<'t>(&'t mut self) -> ValueSeed<'t, 'a> {
        ValueSeed {
            nodes: &mut self.nodes,
        }
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
