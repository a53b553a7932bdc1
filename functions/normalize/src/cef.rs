//! CEF (ArcSight Common Event Format) lines, as ArcSight and QRadar read them from syslog:
//! `CEF:0|authtrail|<product>|1.0|<signature id>|<name>|<severity>|<extensions>`.
//!
//! - Device Vendor `authtrail`, Device Product the source (`MPAS`, `Foxpass`, `Blitz Identity
//!   Provider`, `Unknown`), Device Version `1.0`.
//! - Signature ID: the event type (`LOGIN_ERROR`, `USER:CREATE`, `ldap:bind`); Name: the OCSF
//!   type name (`Authentication: Logon`), `Unmapped event` for records the mapping does not know.
//! - Severity 0-10 from the OCSF `severity_id`: Informational 1, Low 3, Medium 5, High 7,
//!   Critical 9, Fatal 10, Unknown 0.
//! - Extensions: `rt` (epoch ms), `act`, `outcome`, `cat` (the OCSF class), `externalId`,
//!   `reason`, `duser`/`duid` (the user who authenticates, or the target of an admin change),
//!   `suser`/`suid` (the admin), `src` (only an IP address; anything else, a pseudonym for
//!   example, goes to `cs6` labelled `sourceAddress`), `app` (the authentication protocol),
//!   `requestClientApplication` (user agent), `msg` (the source's message; the record's JSON
//!   for records the mapping does not know), `cs1` realm, `cs2` client, `cs3` session, `cs4`
//!   resourcePath, `cs5` privileges, each with its `csNLabel`.
//!
//! Escaping: `\` and `|` in header fields (line breaks there become spaces); `\`, `=` and line
//! breaks (`\n`, `\r`) in extension values. A line never holds a line break.

use std::fmt::Write;

use crate::facts::{Address, Facts};
use crate::node::Node;

/// The CEF severity (0-10) of an OCSF `severity_id`.
pub fn severity(severity_id: u8) -> u8 {
    match severity_id {
        1 => 1,
        2 => 3,
        3 => 5,
        4 => 7,
        5 => 9,
        6 => 10,
        _ => 0,
    }
}

/// Appends `text` with each byte that `escape` names replaced (all of them ASCII, so the
/// text between them is whole characters); runs of plain text are copied at once.
fn push_escaped(out: &mut String, text: &str, escape: fn(u8) -> Option<&'static str>) {
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        if let Some(rep) = escape(b) {
            out.push_str(text.get(start..i).unwrap_or_default());
            out.push_str(rep);
            start = i + 1;
        }
    }
    out.push_str(text.get(start..).unwrap_or_default());
}

/// Appends `text` as a CEF header field.
pub fn push_header(out: &mut String, text: &str) {
    push_escaped(out, text, |b| match b {
        b'\\' => Some("\\\\"),
        b'|' => Some("\\|"),
        b'\n' | b'\r' => Some(" "),
        _ => None,
    });
}

/// Appends ` key=value` (after a space) with `value` escaped as a CEF extension value.
pub fn push_ext(out: &mut String, key: &str, value: &str) {
    out.push(' ');
    out.push_str(key);
    out.push('=');
    push_escaped(out, value, |b| match b {
        b'\\' => Some("\\\\"),
        b'=' => Some("\\="),
        b'\n' => Some("\\n"),
        b'\r' => Some("\\r"),
        _ => None,
    });
}

/// The keys of the custom string extensions `cs1`-`cs6` and their labels.
const CUSTOM: [(&str, &str); 6] = [
    ("cs1", "cs1Label"),
    ("cs2", "cs2Label"),
    ("cs3", "cs3Label"),
    ("cs4", "cs4Label"),
    ("cs5", "cs5Label"),
    ("cs6", "cs6Label"),
];

/// The custom string extension `csN` (`n` 1-6) with its label.
fn push_custom(out: &mut String, n: usize, label: &str, value: Option<&str>) {
    if let (Some(v), Some((key, label_key))) = (value, CUSTOM.get(n.wrapping_sub(1))) {
        push_ext(out, key, v);
        push_ext(out, label_key, label);
    }
}

/// Appends the CEF line of `f` (`record` and its text `text` give the `msg` of records the
/// mapping does not know).
pub(crate) fn write(out: &mut String, f: &Facts<'_>, record: &Node<'_>, text: Option<&str>) {
    out.push_str("CEF:0|authtrail|");
    push_header(out, f.product.name());
    out.push_str("|1.0|");
    push_header(out, f.event_type);
    out.push('|');
    if f.is_mapped() {
        let _ = write!(out, "{}", f.mapping.type_name());
    } else {
        out.push_str("Unmapped event");
    }
    let _ = write!(out, "|{}|", severity(f.severity_id()));
    let _ = write!(out, "rt={}", f.time_ms);
    push_ext(out, "act", f.event_type);
    push_ext(out, "outcome", f.status.outcome());
    push_ext(out, "cat", f.mapping.class.name());
    opt(out, "externalId", f.id);
    opt(out, "reason", f.reason);
    if let Some(actor) = &f.actor {
        opt(out, "suser", actor.name.as_deref());
        opt(out, "suid", actor.uid.as_deref());
    }
    opt(out, "duser", f.user.name.as_deref());
    opt(out, "duid", f.user.uid.as_deref());
    match f.src {
        Some(Address::Ip(ip)) => push_ext(out, "src", ip),
        Some(Address::Other(other)) => push_custom(out, 6, "sourceAddress", Some(other)),
        None => {}
    }
    opt(out, "app", f.protocol.filter(|p| p.0 != 0).map(|p| p.1));
    opt(out, "requestClientApplication", f.user_agent);
    push_custom(out, 1, "realm", f.tenant);
    push_custom(out, 2, "client", f.service.or(f.invoked_by));
    push_custom(out, 3, "session", f.session);
    push_custom(out, 4, "resourcePath", f.resource_path);
    if !f.privileges.is_empty() {
        let joined = f
            .privileges
            .iter()
            .map(|p| p.as_ref())
            .collect::<Vec<_>>()
            .join(",");
        push_custom(out, 5, "privileges", Some(&joined));
    }
    if f.is_mapped() {
        opt(out, "msg", f.message);
    } else {
        let json = match text {
            Some(t) => std::borrow::Cow::Borrowed(t),
            None => std::borrow::Cow::Owned(record.to_json()),
        };
        push_ext(out, "msg", &json);
    }
}

fn opt(out: &mut String, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        push_ext(out, key, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_escape_pipes_and_backslashes_and_lose_line_breaks() {
        let mut s = String::new();
        push_header(&mut s, "a|b\\c\nd\re");
        assert_eq!(s, "a\\|b\\\\c d e");
    }

    #[test]
    fn extension_values_escape_equals_backslashes_and_line_breaks_but_not_pipes() {
        let mut s = String::from("CEF:0|x|rt=1");
        push_ext(&mut s, "msg", "a=b\\c\nd\re|f");
        assert_eq!(s, "CEF:0|x|rt=1 msg=a\\=b\\\\c\\nd\\re|f");
        push_ext(&mut s, "k", "v");
        assert!(s.ends_with(" k=v"));
    }

    #[test]
    fn severities_scale_from_ocsf_to_cef() {
        assert_eq!(
            [0, 1, 2, 3, 4, 5, 6, 99].map(severity),
            [0, 1, 3, 5, 7, 9, 10, 0]
        );
    }
}
