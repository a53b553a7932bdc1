//! RFC 6901 JSON pointers (`/event/details/username`, `/a~1b` for the key `a/b`, `/c~0d` for
//! `c~d`), parsed once at configuration time and then used to read, replace or remove a value.
//!
//! Every pointer must start with `/`: the empty pointer (the whole document) is refused, since
//! no caller means to redact or filter a whole record. Array elements are addressed by their
//! decimal index (`/list/1`); a token that does not parse as an index addresses nothing in an
//! array.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::error::Error;

/// A parsed JSON pointer: the text it was given and its unescaped reference tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pointer {
    text: String,
    tokens: Vec<String>,
}

impl Pointer {
    /// Parses `pointer`; fails with [`Error::NotAPointer`] when it does not start with `/` and
    /// [`Error::BadPointerEscape`] on a `~` not followed by `0` or `1`.
    pub fn parse(pointer: &str) -> Result<Self, Error> {
        let Some(rest) = pointer.strip_prefix('/') else {
            return Err(Error::NotAPointer(pointer.to_string()));
        };
        let tokens = rest
            .split('/')
            .map(|token| unescape(token).ok_or_else(|| Error::BadPointerEscape(pointer.into())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            text: pointer.to_string(),
            tokens,
        })
    }

    /// The pointer as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The unescaped reference tokens (`/a~1b/c` gives `["a/b", "c"]`).
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The value this pointer addresses in `value`, if there is one.
    pub fn get<'v>(&self, mut value: &'v Value) -> Option<&'v Value> {
        for token in &self.tokens {
            value = match value {
                Value::Object(map) => map.get(token)?,
                Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(value)
    }

    /// The value this pointer addresses in `value`, mutably.
    pub fn get_mut<'v>(&self, mut value: &'v mut Value) -> Option<&'v mut Value> {
        for token in &self.tokens {
            value = match value {
                Value::Object(map) => map.get_mut(token)?,
                Value::Array(items) => items.get_mut(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(value)
    }

    /// Removes the addressed value from its object or array and returns it (an array's later
    /// elements move down by one).
    pub fn remove(&self, value: &mut Value) -> Option<Value> {
        let (last, parents) = self.tokens.split_last()?;
        let mut cur = value;
        for token in parents {
            cur = match cur {
                Value::Object(map) => map.get_mut(token)?,
                Value::Array(items) => items.get_mut(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        match cur {
            // `shift_remove`: the other keys keep their order (serde_json's `remove` with
            // `preserve_order` moves the last key into the gap).
            Value::Object(map) => map.shift_remove(last),
            Value::Array(items) => match last.parse::<usize>() {
                Ok(i) if i < items.len() => Some(items.remove(i)),
                _ => None,
            },
            _ => None,
        }
    }
}

/// `token` with `~1` read as `/` and `~0` as `~`; `None` on any other `~`.
fn unescape(token: &str) -> Option<String> {
    if !token.contains('~') {
        return Some(token.to_string());
    }
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

impl FromStr for Pointer {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn tilde_one_is_a_slash_and_tilde_zero_a_tilde() {
        let p = Pointer::parse("/a~1b/c~0d").unwrap();
        assert_eq!(p.tokens(), ["a/b", "c~d"]);
        assert_eq!(p.as_str(), "/a~1b/c~0d");
        assert_eq!(p.to_string(), "/a~1b/c~0d");
        // `~01` is `~1` literally, not `/`: unescaping runs once, left to right.
        assert_eq!(Pointer::parse("/~01").unwrap().tokens(), ["~1"]);
    }

    #[test]
    fn pointers_without_a_leading_slash_or_with_bad_escapes_are_refused() {
        assert!(matches!(Pointer::parse("a"), Err(Error::NotAPointer(p)) if p == "a"));
        assert!(matches!(Pointer::parse(""), Err(Error::NotAPointer(_))));
        for bad in ["/a~2", "/a~", "/~x/b"] {
            assert!(
                matches!(Pointer::parse(bad), Err(Error::BadPointerEscape(p)) if p == bad),
                "{bad}"
            );
        }
        assert!("/ok".parse::<Pointer>().is_ok());
    }

    #[test]
    fn empty_tokens_address_empty_keys() {
        let p = Pointer::parse("/").unwrap();
        assert_eq!(p.tokens(), [""]);
        assert_eq!(p.get(&json!({"": 1})), Some(&json!(1)));
        assert_eq!(Pointer::parse("/a/").unwrap().tokens(), ["a", ""]);
    }

    #[test]
    fn get_walks_objects_and_array_indices() {
        let v = json!({"a/b": {"c~d": "x"}, "list": ["keep", {"k": 2}]});
        assert_eq!(
            Pointer::parse("/a~1b/c~0d").unwrap().get(&v),
            Some(&json!("x"))
        );
        assert_eq!(
            Pointer::parse("/list/1/k").unwrap().get(&v),
            Some(&json!(2))
        );
        assert_eq!(Pointer::parse("/list/9").unwrap().get(&v), None);
        assert_eq!(Pointer::parse("/list/x").unwrap().get(&v), None);
        assert_eq!(Pointer::parse("/a~1b/c~0d/deeper").unwrap().get(&v), None);
        assert_eq!(Pointer::parse("/missing").unwrap().get(&v), None);
    }

    #[test]
    fn get_mut_replaces_in_place() {
        let mut v = json!({"event": {"ipAddress": "192.0.2.1"}, "list": [1, 2]});
        *Pointer::parse("/event/ipAddress")
            .unwrap()
            .get_mut(&mut v)
            .unwrap() = json!("<redacted>");
        *Pointer::parse("/list/0").unwrap().get_mut(&mut v).unwrap() = json!(0);
        assert_eq!(
            v,
            json!({"event": {"ipAddress": "<redacted>"}, "list": [0, 2]})
        );
    }

    #[test]
    fn remove_takes_the_value_out_of_objects_and_arrays() {
        let mut v = json!({"event": {"details": {"code_id": "c", "a": "b"}}, "list": [1, 2, 3]});
        assert_eq!(
            Pointer::parse("/event/details/code_id")
                .unwrap()
                .remove(&mut v),
            Some(json!("c"))
        );
        assert_eq!(
            Pointer::parse("/list/0").unwrap().remove(&mut v),
            Some(json!(1))
        );
        assert_eq!(Pointer::parse("/list/5").unwrap().remove(&mut v), None);
        assert_eq!(Pointer::parse("/nope/x").unwrap().remove(&mut v), None);
        assert_eq!(v, json!({"event": {"details": {"a": "b"}}, "list": [2, 3]}));
    }

    #[test]
    fn removing_a_key_keeps_the_order_of_the_others() {
        let mut v: Value = serde_json::from_str(r#"{"a":1,"b":2,"c":3,"d":4}"#).unwrap();
        Pointer::parse("/b").unwrap().remove(&mut v);
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"a":1,"c":3,"d":4}"#);
    }
}
