//! What a request selects from the visible events and how its page is cut: Keycloak's filters
//! (`type`, `client`, `resourcePath` patterns, ...), the time range, `first`/`max` paging in
//! either direction, and same-millisecond ties served in a fresh order per request.

use std::sync::Arc;

use rand::seq::SliceRandom;

use crate::model::{Fields, Record};

/// Filters of `GET .../events`.
#[derive(Clone, Debug, Default)]
pub(crate) struct UserFilter {
    pub(crate) types: Vec<String>,
    pub(crate) client: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) ip_address: Option<String>,
}

/// Filters of `GET .../admin-events`.
#[derive(Clone, Debug, Default)]
pub(crate) struct AdminFilter {
    pub(crate) operation_types: Vec<String>,
    pub(crate) resource_types: Vec<String>,
    pub(crate) resource_path: Option<String>,
    pub(crate) auth_realm: Option<String>,
    pub(crate) auth_client: Option<String>,
    pub(crate) auth_user: Option<String>,
    pub(crate) auth_ip_address: Option<String>,
}

/// The filters of one request, by kind.
#[derive(Clone, Debug)]
pub(crate) enum Filter {
    User(UserFilter),
    Admin(AdminFilter),
}

impl Filter {
    /// True when the request filters nothing.
    pub(super) fn is_empty(&self) -> bool {
        match self {
            Self::User(f) => {
                f.types.is_empty()
                    && f.client.is_none()
                    && f.user.is_none()
                    && f.ip_address.is_none()
            }
            Self::Admin(f) => {
                f.operation_types.is_empty()
                    && f.resource_types.is_empty()
                    && f.resource_path.is_none()
                    && f.auth_realm.is_none()
                    && f.auth_client.is_none()
                    && f.auth_user.is_none()
                    && f.auth_ip_address.is_none()
            }
        }
    }

    /// True when `rec` passes every filter.
    fn matches(&self, rec: &Record) -> bool {
        fn eq(want: &Option<String>, have: Option<&str>) -> bool {
            want.as_deref().is_none_or(|w| have == Some(w))
        }
        match (self, &rec.fields) {
            (
                Self::User(f),
                Fields::User {
                    event_type,
                    client_id,
                    user_id,
                    ip_address,
                },
            ) => {
                (f.types.is_empty() || f.types.iter().any(|t| t == event_type))
                    && eq(&f.client, client_id.as_deref())
                    && eq(&f.user, user_id.as_deref())
                    && eq(&f.ip_address, ip_address.as_deref())
            }
            (
                Self::Admin(f),
                Fields::Admin {
                    operation_type,
                    resource_type,
                    resource_path,
                    auth_realm,
                    auth_client,
                    auth_user,
                    auth_ip,
                },
            ) => {
                (f.operation_types.is_empty()
                    || f.operation_types.iter().any(|t| t == operation_type))
                    && (f.resource_types.is_empty()
                        || f.resource_types.iter().any(|t| t == resource_type))
                    && f.resource_path
                        .as_deref()
                        .is_none_or(|p| glob_match(p, resource_path))
                    && eq(&f.auth_realm, Some(auth_realm))
                    && eq(&f.auth_client, Some(auth_client))
                    && eq(&f.auth_user, Some(auth_user))
                    && eq(&f.auth_ip_address, Some(auth_ip))
            }
            _ => false,
        }
    }
}

/// Keycloak turns `*` in `resourcePath` into SQL `%` (LIKE): `*` matches any run of characters.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return false;
    };
    if !text.starts_with(first) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..];
    let middle = &parts[1..parts.len() - 1];
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// One query against one kind's visible events.
#[derive(Clone, Debug)]
pub(crate) struct EventQuery {
    pub(crate) from: Option<i64>,
    pub(crate) to: Option<i64>,
    pub(crate) first: usize,
    /// `None`: no limit.
    pub(crate) max: Option<usize>,
    pub(crate) ascending: bool,
    pub(crate) filter: Filter,
}

/// A page with the complete tie groups around it, so ties can be shuffled outside the lock.
pub(crate) struct Window {
    rows: Vec<Arc<Record>>,
    offset: usize,
    len: usize,
}

impl Window {
    /// No rows.
    pub(super) fn empty() -> Self {
        Self {
            rows: Vec::new(),
            offset: 0,
            len: 0,
        }
    }

    /// Shuffles every run of same-millisecond rows (a fresh order per request, as a database
    /// sorting by `time` only may return them) and cuts the page out.
    pub(crate) fn finish(mut self) -> Vec<Arc<Record>> {
        let mut rng = rand::rng();
        let mut start = 0;
        while start < self.rows.len() {
            let t = self.rows[start].time;
            let mut end = start + 1;
            while end < self.rows.len() && self.rows[end].time == t {
                end += 1;
            }
            if end - start > 1 {
                self.rows[start..end].shuffle(&mut rng);
            }
            start = end;
        }
        self.rows
            .into_iter()
            .skip(self.offset)
            .take(self.len)
            .collect()
    }
}

/// The page of an unfiltered query: offsets straight into the time range.
pub(super) fn page_unfiltered(slice: &[Arc<Record>], q: &EventQuery) -> Window {
    let n = slice.len();
    let start = q.first;
    let end = q.max.map_or(n, |m| start.saturating_add(m).min(n));
    if start >= n || end <= start {
        return Window::empty();
    }
    let len = end - start;
    // Page in slice indices [s, e).
    let (s, e) = if q.ascending {
        (start, end)
    } else {
        (n - end, n - start)
    };
    let (Some(first), Some(last)) = (slice.get(s), slice.get(e - 1)) else {
        return Window::empty();
    };
    let (t_first, t_last) = (first.time, last.time);
    let a = slice.partition_point(|r| r.time < t_first);
    let b = slice.partition_point(|r| r.time <= t_last);
    let mut rows: Vec<Arc<Record>> = slice[a..b].to_vec();
    let offset = if q.ascending {
        start - a
    } else {
        rows.reverse();
        start - (n - b)
    };
    Window { rows, offset, len }
}

/// The page of a filtered query: matching rows up to the page end, completed to the whole
/// tie group of the last one.
pub(super) fn page_filtered(slice: &[Arc<Record>], q: &EventQuery) -> Window {
    let want = q.max.map(|m| q.first.saturating_add(m));
    if want == Some(0) {
        return Window::empty();
    }
    let mut rows: Vec<Arc<Record>> = Vec::new();
    let mut take = |rec: &Arc<Record>| -> bool {
        if !q.filter.matches(rec) {
            return true;
        }
        if let (Some(w), Some(last)) = (want, rows.last())
            && rows.len() >= w
            && last.time != rec.time
        {
            return false;
        }
        rows.push(Arc::clone(rec));
        true
    };
    if q.ascending {
        for rec in slice {
            if !take(rec) {
                break;
            }
        }
    } else {
        for rec in slice.iter().rev() {
            if !take(rec) {
                break;
            }
        }
    }
    let len = match q.max {
        Some(m) => m.min(rows.len().saturating_sub(q.first)),
        None => rows.len().saturating_sub(q.first),
    };
    Window {
        rows,
        offset: q.first,
        len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_keycloak_style_resource_paths() {
        assert!(glob_match("users/*", "users/abc"));
        assert!(glob_match("users/*/groups/*", "users/a/groups/b"));
        assert!(!glob_match(
            "users/*/groups/*",
            "users/a/role-mappings/realm"
        ));
        assert!(glob_match("users/abc", "users/abc"));
        assert!(!glob_match("users/abc", "users/abcd"));
        assert!(glob_match("*", ""));
    }
}
