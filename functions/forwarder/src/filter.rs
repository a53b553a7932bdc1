//! Filters: per-emitter event selection by type (`include` / `exclude`) and field filter
//! policies (`filterPolicies.field.includeIf` / `excludeIf`, JSON pointers as core parses them;
//! exclude wins).

use serde_json::{Map, Value};

use crate::ForwarderError;

/// Event-type selection of one emitter. A record matches when none of its names is excluded
/// and, if `include` is not empty, at least one of its names is included. Names are exact and
/// case-sensitive; a trailing `*` matches by prefix (`LOGIN*`, `ldap:*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    include: Vec<String>,
    exclude: Vec<String>,
}

fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

impl Selector {
    /// The selector of `include` (all when empty) and `exclude` (event type names).
    pub fn new(include: Vec<String>, exclude: Vec<String>) -> Self {
        Self { include, exclude }
    }

    /// Whether every record matches.
    pub fn is_all(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Whether a record with these names (its kind and event types) goes to the emitter.
    pub fn matches<'a>(&self, names: impl IntoIterator<Item = &'a str> + Clone) -> bool {
        let any = |list: &[String]| {
            names
                .clone()
                .into_iter()
                .any(|n| list.iter().any(|p| pattern_matches(p, n)))
        };
        if any(&self.exclude) {
            return false;
        }
        self.include.is_empty() || any(&self.include)
    }
}

pub use authtrail_core::json_pointer::Pointer;

/// Copies the value at `pointer` from `src` into `dst`, creating the objects on the way. A
/// pointer that passes through an array keeps that whole array.
fn copy_into(pointer: &Pointer, src: &Value, dst: &mut Map<String, Value>) {
    let tokens = pointer.tokens();
    let mut s = src;
    let mut d = dst;
    for (i, token) in tokens.iter().enumerate() {
        let Value::Object(map) = s else { return };
        let Some(child) = map.get(token) else { return };
        let last = i + 1 == tokens.len();
        if last || !child.is_object() {
            d.insert(token.clone(), child.clone());
            return;
        }
        let entry = d
            .entry(token.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            return;
        }
        let Value::Object(next) = entry else { return };
        d = next;
        s = child;
    }
}

/// Field filter policy: with `includeIf` given, only those fields are kept; `excludeIf` fields
/// are removed (also when included: exclude wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldFilter {
    include: Vec<Pointer>,
    exclude: Vec<Pointer>,
}

impl FieldFilter {
    /// The filter keeping `include` (all when empty) and removing `exclude` (JSON pointers).
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, ForwarderError> {
        Ok(Self {
            include: include
                .iter()
                .map(|p| Pointer::parse(p))
                .collect::<Result<_, _>>()?,
            exclude: exclude
                .iter()
                .map(|p| Pointer::parse(p))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether the filter keeps every field.
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// The `includeIf` pointers.
    pub fn include(&self) -> &[Pointer] {
        &self.include
    }

    /// The `excludeIf` pointers.
    pub fn exclude(&self) -> &[Pointer] {
        &self.exclude
    }

    /// Applies the policy; returns the number of fields removed by `excludeIf`.
    pub fn apply(&self, value: &mut Value) -> usize {
        if !self.include.is_empty() {
            let mut kept = Map::new();
            for p in &self.include {
                copy_into(p, value, &mut kept);
            }
            *value = Value::Object(kept);
        }
        self.exclude
            .iter()
            .filter(|p| p.remove(value).is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn selector_exclude_wins_over_include_and_empty_include_means_all() {
        let sel = Selector::new(s(&["LOGIN_ERROR", "admin-event"]), s(&["USER:DELETE"]));
        assert!(sel.matches(["user-event", "LOGIN_ERROR"]));
        assert!(!sel.matches(["user-event", "LOGIN"]));
        assert!(sel.matches(["admin-event", "CREATE", "USER:CREATE"]));
        assert!(!sel.matches(["admin-event", "DELETE", "USER:DELETE"]));
        let all = Selector::new(vec![], s(&["REFRESH_TOKEN"]));
        assert!(all.matches(["user-event", "LOGIN"]));
        assert!(!all.matches(["user-event", "REFRESH_TOKEN"]));
    }

    #[test]
    fn selector_trailing_star_matches_by_prefix() {
        let sel = Selector::new(s(&["ldap:*", "LOGIN*"]), vec![]);
        assert!(sel.matches(["other", "ldap:bind", "ldap"]));
        assert!(sel.matches(["user-event", "LOGIN_ERROR"]));
        assert!(!sel.matches(["other", "radius:authorize", "radius"]));
    }

    #[test]
    fn field_filter_exclude_removes_fields_and_wins_over_include() {
        let f = FieldFilter::new(
            &s(&["/event/type", "/event/details", "/timestamp"]),
            &s(&["/event/details/code_id"]),
        )
        .unwrap();
        let mut v = json!({"timestamp":"t","eventType":"user-event","event":{"type":"LOGIN","ipAddress":"1.2.3.4","details":{"code_id":"c","username":"u"}}});
        assert_eq!(f.apply(&mut v), 1);
        assert_eq!(
            v,
            json!({"timestamp":"t","event":{"type":"LOGIN","details":{"username":"u"}}})
        );
    }

    #[test]
    fn field_filter_exclude_only_keeps_everything_else_and_skips_absent_fields() {
        let f =
            FieldFilter::new(&[], &s(&["/event/details/code_id", "/nope/x", "/list/0"])).unwrap();
        let mut v = json!({"event":{"details":{"code_id":"c","a":"b"}},"list":[1,2]});
        assert_eq!(f.apply(&mut v), 2);
        assert_eq!(v, json!({"event":{"details":{"a":"b"}},"list":[2]}));
    }

    #[test]
    fn pointers_unescape_tilde_and_slash() {
        let p = Pointer::parse("/a~1b/c~0d").unwrap();
        assert_eq!(p.get(&json!({"a/b":{"c~d":5}})), Some(&json!(5)));
        assert!(Pointer::parse("a").is_err());
        assert!(Pointer::parse("/a~2").is_err());
    }
}
