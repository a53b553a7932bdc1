//! OCSF `unmapped`: the fields of the source event that the mapping placed nowhere else, under
//! their source names, written straight from the source value (no copy).

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::node::{Node, Obj};

/// The members of one source object that the mapping placed (left out of `unmapped`), as a
/// set of their positions (a member past the 64th is never marked: it stays in `unmapped` too,
/// which is harmless).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Used(u64);

impl Used {
    /// Records the member at `position` as placed.
    pub(crate) fn set(&mut self, position: usize) {
        if position < 64 {
            self.0 |= 1 << position;
        }
    }

    /// Whether the member at `position` was placed.
    pub(crate) fn has(&self, position: usize) -> bool {
        position < 64 && self.0 & (1 << position) != 0
    }
}

/// What goes under `unmapped`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) enum Unmapped<'a> {
    /// Nothing.
    #[default]
    None,
    /// The whole source record (records the mapping does not know).
    Whole(&'a Node<'a>),
    /// The members of `obj` not in `used`; the object member at position `nested.0` written
    /// the same way with `nested.1` (Keycloak's `details`, `authDetails`).
    Rest {
        obj: &'a Obj<'a>,
        used: Used,
        nested: [Option<(usize, Used)>; 2],
    },
}

impl<'a> Unmapped<'a> {
    /// The members of `obj` not in `used`.
    pub(crate) fn rest(obj: &'a Obj<'a>, used: Used) -> Self {
        Unmapped::Rest {
            obj,
            used,
            nested: [None, None],
        }
    }

    /// The same, with the object members `nested` filtered by their own `Used`.
    pub(crate) fn rest_nested(
        obj: &'a Obj<'a>,
        used: Used,
        nested: [Option<(usize, Used)>; 2],
    ) -> Self {
        Unmapped::Rest { obj, used, nested }
    }

    /// Whether nothing is left to write.
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Unmapped::None => true,
            Unmapped::Whole(_) => false,
            Unmapped::Rest { obj, used, nested } => {
                Entries { obj, used, nested }.iter().next().is_none()
            }
        }
    }
}

/// The members of one object left for `unmapped`.
struct Entries<'s, 'a> {
    obj: &'a Obj<'a>,
    used: &'s Used,
    nested: &'s [Option<(usize, Used)>; 2],
}

/// One member left: as it is, or an object member filtered by its own `Used`.
enum Entry<'s, 'a> {
    Plain(&'a Node<'a>),
    Nested(&'a Obj<'a>, &'s Used),
}

impl<'s, 'a> Entries<'s, 'a> {
    fn iter(&self) -> impl Iterator<Item = (&'a str, Entry<'s, 'a>)> + '_ {
        self.obj.iter().enumerate().filter_map(move |(i, (k, v))| {
            if self.used.has(i) {
                return None;
            }
            let nested = self.nested.iter().flatten().find(|(at, _)| *at == i);
            match (nested, v) {
                (Some((_, inner)), Node::Obj(o)) => {
                    let left = Entries {
                        obj: o,
                        used: inner,
                        nested: &[None, None],
                    };
                    left.iter()
                        .next()
                        .is_some()
                        .then_some((k, Entry::Nested(o, inner)))
                }
                _ => Some((k, Entry::Plain(v))),
            }
        })
    }
}

impl Serialize for Entries<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, e) in self.iter() {
            match e {
                Entry::Plain(v) => map.serialize_entry(k, v)?,
                Entry::Nested(o, used) => map.serialize_entry(
                    k,
                    &Entries {
                        obj: o,
                        used,
                        nested: &[None, None],
                    },
                )?,
            }
        }
        map.end()
    }
}

impl Serialize for Unmapped<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Unmapped::None => s.serialize_map(Some(0))?.end(),
            Unmapped::Whole(v) => v.serialize(s),
            Unmapped::Rest { obj, used, nested } => Entries { obj, used, nested }.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unmapped_leaves_out_placed_keys_and_empty_nested_objects() {
        let v = json!({"type": 1, "code": "x", "details": {"username": "n", "k": "v"}, "authDetails": {"ipAddress": "i"}});
        let node = Node::from_value(&v);
        let Some(obj) = node.as_obj() else { return };
        let mut used = Used::default();
        used.set(0);
        let mut details = Used::default();
        details.set(0);
        let mut auth = Used::default();
        auth.set(0);
        let u = Unmapped::rest_nested(obj, used, [Some((2, details)), Some((3, auth))]);
        assert_eq!(
            serde_json::to_value(u).ok(),
            Some(json!({"code": "x", "details": {"k": "v"}}))
        );
        assert!(!u.is_empty());
        let mut all = Used::default();
        for i in 0..4 {
            all.set(i);
        }
        assert!(Unmapped::rest(obj, all).is_empty());
        assert!(Unmapped::None.is_empty());
    }

    #[test]
    fn members_past_the_sixty_fourth_are_never_marked() {
        let mut used = Used::default();
        used.set(63);
        used.set(64);
        assert!(used.has(63) && !used.has(64) && !used.has(1000));
    }
}
