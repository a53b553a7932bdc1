//! OCSF `unmapped`: the fields of the source event that the mapping placed nowhere else, under
//! their source names, written straight from the source value (no copy).

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// Every source key the mapping can place; [`Used`] is a set of positions in it.
const PLACEABLE: &[&str] = &[
    "type",
    "id",
    "time",
    "timestamp",
    "date",
    "@timestamp",
    "realmId",
    "error",
    "reason",
    "userId",
    "sessionId",
    "clientId",
    "ipAddress",
    "operationType",
    "resourceType",
    "username",
    "auth_method",
    "user_agent",
    "impersonator",
    "impersonator_realm",
    "service",
    "method",
    "success",
    "message",
    "bind_dn",
    "user",
    "ip",
    "subjectId",
    "sub",
    "login",
    "userName",
    "objectId",
    "targetId",
    "objectName",
    "targetName",
    "ua",
    "userAgent",
    "rpId",
    "sid",
];

/// The keys of one source object that the mapping placed (left out of `unmapped`), as a set
/// of positions in [`PLACEABLE`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Used(u64);

impl Used {
    /// Records `key` (one of [`PLACEABLE`]) as placed.
    pub(crate) fn mark(&mut self, key: &'static str) {
        let at = PLACEABLE.iter().position(|k| *k == key);
        debug_assert!(at.is_some(), "{key} is not listed as placeable");
        if let Some(i) = at {
            self.0 |= 1 << i;
        }
    }

    /// Whether `key` was placed.
    pub(crate) fn has(&self, key: &str) -> bool {
        let mut bits = self.0;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            if PLACEABLE.get(i) == Some(&key) {
                return true;
            }
            bits &= bits - 1;
        }
        false
    }
}

/// What goes under `unmapped`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) enum Unmapped<'a> {
    /// Nothing.
    #[default]
    None,
    /// The whole source record (records the mapping does not know).
    Whole(&'a Value),
    /// The members of `obj` not in `used`; the object member `nested.0` written the same way
    /// with `nested.1` (Keycloak's `details`, `authDetails`).
    Rest {
        obj: &'a Map<String, Value>,
        used: Used,
        nested: [Option<(&'static str, Used)>; 2],
    },
}

impl<'a> Unmapped<'a> {
    /// The members of `obj` not in `used`.
    pub(crate) fn rest(obj: &'a Map<String, Value>, used: Used) -> Self {
        Unmapped::Rest {
            obj,
            used,
            nested: [None, None],
        }
    }

    /// The same, with the object members `nested` filtered by their own `Used`.
    pub(crate) fn rest_nested(
        obj: &'a Map<String, Value>,
        used: Used,
        nested: [Option<(&'static str, Used)>; 2],
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
    obj: &'a Map<String, Value>,
    used: &'s Used,
    nested: &'s [Option<(&'static str, Used)>; 2],
}

/// One member left: as it is, or an object member filtered by its own `Used`.
enum Entry<'s, 'a> {
    Plain(&'a Value),
    Nested(&'a Map<String, Value>, &'s Used),
}

impl<'s, 'a> Entries<'s, 'a> {
    fn iter(&self) -> impl Iterator<Item = (&'a String, Entry<'s, 'a>)> + '_ {
        self.obj.iter().filter_map(move |(k, v)| {
            if self.used.has(k) {
                return None;
            }
            let nested = self
                .nested
                .iter()
                .flatten()
                .find(|(name, _)| *name == k.as_str());
            match (nested, v) {
                (Some((_, inner)), Value::Object(o)) => {
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
        let Value::Object(obj) = &v else { return };
        let mut used = Used::default();
        used.mark("type");
        let mut details = Used::default();
        details.mark("username");
        let mut auth = Used::default();
        auth.mark("ipAddress");
        let u = Unmapped::rest_nested(
            obj,
            used,
            [Some(("details", details)), Some(("authDetails", auth))],
        );
        assert_eq!(
            serde_json::to_value(u).ok(),
            Some(json!({"code": "x", "details": {"k": "v"}}))
        );
        assert!(!u.is_empty());
        let Value::Object(small) = json!({"type": 1, "id": "x"}) else {
            return;
        };
        let mut all = Used::default();
        all.mark("type");
        all.mark("id");
        assert!(Unmapped::rest(&small, all).is_empty());
        assert!(Unmapped::None.is_empty());
    }

    #[test]
    fn every_placeable_key_fits_the_set() {
        assert!(PLACEABLE.len() <= 64);
        let mut used = Used::default();
        for k in PLACEABLE {
            used.mark(k);
            assert!(used.has(k));
        }
        assert!(!used.has("representation"));
    }
}
