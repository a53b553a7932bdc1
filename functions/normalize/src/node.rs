//! A record read for mapping: a JSON tree whose strings and keys borrow from the record's text
//! (copied only when they hold escapes) and whose objects are member lists in order, without
//! the hashing and per-string allocations of a `serde_json::Value`. Duplicate keys keep the
//! first key's place and the last value, as `serde_json::Value` (with `preserve_order`) reads
//! them. A `serde_json::Value` converts into a tree that borrows from it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// One JSON value of a record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
    Arr(Vec<Node<'a>>),
    Obj(Obj<'a>),
}

/// A JSON object: its members in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Obj<'a> {
    members: Vec<(Cow<'a, str>, Node<'a>)>,
    /// One bit per (length, first byte) of the keys so far: a new key whose bit is clear
    /// cannot repeat one, and is added without comparing it with the others.
    seen: u64,
}

/// The bit of `key` in [`Obj::seen`].
fn key_bit(key: &str) -> u64 {
    let first = key.as_bytes().first().copied().unwrap_or(0) as usize;
    1 << ((key.len().wrapping_mul(31).wrapping_add(first)) % 64)
}

impl<'a> Node<'a> {
    /// Reads `text` (one JSON value).
    pub(crate) fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// A tree borrowing from `v`.
    pub(crate) fn from_value(v: &'a Value) -> Self {
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Node::U64(u),
                (_, Some(i), _) => Node::I64(i),
                (_, _, f) => Node::F64(f.unwrap_or(0.0)),
            },
            Value::String(s) => Node::Str(Cow::Borrowed(s)),
            Value::Array(a) => Node::Arr(a.iter().map(Node::from_value).collect()),
            Value::Object(o) => Node::Obj(Obj {
                members: o
                    .iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Node::from_value(v)))
                    .collect(),
                seen: 0,
            }),
        }
    }

    /// The object, when this is one.
    pub(crate) fn as_obj(&self) -> Option<&Obj<'a>> {
        match self {
            Node::Obj(o) => Some(o),
            _ => None,
        }
    }

    /// The string, when this is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, when this is one.
    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Whether this is a number.
    pub(crate) fn is_number(&self) -> bool {
        matches!(self, Node::U64(_) | Node::I64(_) | Node::F64(_))
    }

    /// The compact JSON text of this value.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl<'a> Obj<'a> {
    /// The value of member `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.members
            .iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| v)
    }

    /// The position of member `key` among the members.
    pub(crate) fn position(&self, key: &str) -> Option<usize> {
        self.members.iter().position(|(k, _)| k.as_ref() == key)
    }

    /// The value of the member at `position`.
    pub(crate) fn at(&self, position: usize) -> Option<&Node<'a>> {
        self.members.get(position).map(|(_, v)| v)
    }

    /// The string at `key`.
    pub(crate) fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Node::as_str)
    }

    /// The object at `key`.
    pub(crate) fn get_obj(&self, key: &str) -> Option<&Obj<'a>> {
        self.get(key).and_then(Node::as_obj)
    }

    /// Whether member `key` is present.
    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The members, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Node<'a>)> {
        self.members.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// Adds a member, or replaces the value of a member of the same key in its place.
    fn insert(&mut self, key: Cow<'a, str>, value: Node<'a>) {
        let bit = key_bit(&key);
        if self.seen & bit != 0
            && let Some(member) = self.members.iter_mut().find(|(k, _)| *k == key)
        {
            member.1 = value;
            return;
        }
        self.seen |= bit;
        self.members.push((key, value));
    }
}

/// A key or string borrowed from the text when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(b))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::U64(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
        Ok(Node::I64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
        Ok(Node::F64(v))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(s.to_string())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node<'de>>()? {
            items.push(item);
        }
        Ok(Node::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut obj = Obj {
            members: Vec::with_capacity(map.size_hint().unwrap_or(8)),
            seen: 0,
        };
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let value = map.next_value::<Node<'de>>()?;
            obj.insert(key, value);
        }
        Ok(Node::Obj(obj))
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => s.serialize_unit(),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::U64(v) => s.serialize_u64(*v),
            Node::I64(v) => s.serialize_i64(*v),
            Node::F64(v) => s.serialize_f64(*v),
            Node::Str(t) => s.serialize_str(t),
            Node::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Obj(o) => o.serialize(s),
        }
    }
}

impl Serialize for Obj<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.members.len()))?;
        for (k, v) in &self.members {
            map.serialize_entry(k.as_ref(), v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_text_reads_and_writes_as_a_serde_json_value_does() {
        let texts = [
            r#"{"a":1,"b":"x\u00e9\"y","c":[true,null,-2,1.5e3],"d":{"e":{}},"a":2}"#,
            r#"{"eventType":"user-event","event":{"id":"e","time":1739388470156,"details":{"username":"u"}}}"#,
            r#"[1,"two",{"three":3}]"#,
            r#""just a string""#,
        ];
        for t in texts {
            let node = Node::parse(t).unwrap_or(Node::Null);
            let value: Value = serde_json::from_str(t).unwrap_or(Value::Null);
            assert_eq!(node.to_json(), value.to_string(), "{t}");
            assert_eq!(Node::from_value(&value).to_json(), value.to_string(), "{t}");
        }
    }

    #[test]
    fn strings_without_escapes_borrow_from_the_text_and_duplicates_keep_the_last_value() {
        let t = r#"{"k":"plain","e":"a\nb","k":"last"}"#;
        let node = Node::parse(t).unwrap_or(Node::Null);
        let obj = node.as_obj().cloned().unwrap_or_default();
        assert_eq!(obj.get_str("k"), Some("last"));
        assert!(matches!(obj.get("e"), Some(Node::Str(Cow::Owned(_)))));
        assert!(matches!(obj.get("k"), Some(Node::Str(Cow::Borrowed(_)))));
        assert_eq!(obj.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["k", "e"]);
        assert!(Node::parse("{").is_err());
    }
}
