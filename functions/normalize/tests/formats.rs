//! Every fixture record of every source, in every format: OCSF events pass the check against
//! the OCSF 1.1.0 schema files, ECS documents pass the ECS check, CEF lines are one line with
//! the header and escaping of the format; the mapping table's choices, redaction and records
//! no mapping knows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use authtrail_normalize::{Format, MASK, render};
use serde_json::{Value, json};
use support::fixtures::{self, Fixture};
use support::ocsf::Schema;

fn rendered(format: Format, f: &Fixture) -> String {
    let mut out = String::new();
    let text = f.text();
    render(format, &f.record, &f.class(), Some(&text), &mut out).unwrap();
    out
}

fn ocsf(f: &Fixture) -> Value {
    serde_json::from_str(&rendered(Format::Ocsf, f)).unwrap()
}

fn ecs(f: &Fixture) -> Value {
    serde_json::from_str(&rendered(Format::Ecs, f)).unwrap()
}

/// The mapped fixtures, as they come and redacted both ways.
fn all_mapped() -> Vec<Fixture> {
    let mut all = Vec::new();
    for f in fixtures::mapped() {
        all.push(fixtures::redact(&f, "mask"));
        all.push(fixtures::redact(&f, "hash"));
        all.push(f);
    }
    all
}

#[test]
fn every_mapped_fixture_event_type_passes_the_ocsf_schema_check() {
    let schema = Schema::load();
    let mut failures = Vec::new();
    for f in all_mapped() {
        let event = ocsf(&f);
        let errors = schema.check(&event);
        if !errors.is_empty() {
            failures.push(format!("{}: {errors:#?}\n{event}", f.name));
        }
        assert_ne!(event["class_uid"], 0, "{} is mapped: {event}", f.name);
        assert_eq!(event["category_uid"], 3, "{}", f.name);
        assert_eq!(event["metadata"]["version"], "1.1.0");
        assert_eq!(event["time"], fixtures::T0);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn records_no_mapping_knows_are_base_events_with_the_source_under_unmapped() {
    let schema = Schema::load();
    for f in fixtures::unknown_records() {
        let event = ocsf(&f);
        assert_eq!(
            schema.check(&event),
            Vec::<String>::new(),
            "{}: {event}",
            f.name
        );
        assert_eq!(
            (
                &event["class_uid"],
                &event["category_uid"],
                &event["type_uid"]
            ),
            (&json!(0), &json!(0), &json!(0)),
            "{}",
            f.name
        );
        assert_eq!(event["unmapped"], f.record, "{}", f.name);
        let doc = ecs(&f);
        assert_eq!(
            support::ecs::check(&doc),
            Vec::<String>::new(),
            "{}: {doc}",
            f.name
        );
        assert_eq!(doc["tags"], json!(["authtrail-unmapped"]), "{}", f.name);
        assert!(doc["event"].get("category").is_none());
        let cef = rendered(Format::Cef, &f);
        assert!(cef.contains("|Unmapped event|"), "{cef}");
        assert!(!cef.contains('\n'), "{cef}");
    }
}

#[test]
fn every_fixture_passes_the_ecs_check_and_always_has_an_outcome() {
    let mut failures = Vec::new();
    for f in all_mapped().into_iter().chain(fixtures::unknown_records()) {
        let doc = ecs(&f);
        let errors = support::ecs::check(&doc);
        if !errors.is_empty() {
            failures.push(format!("{}: {errors:#?}\n{doc}", f.name));
        }
        assert_eq!(doc["event"]["original"], f.text(), "{}", f.name);
        assert!(doc["event"]["outcome"].is_string(), "{}", f.name);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Splits a CEF line into its 7 header fields and the extension text, honouring `\|`.
fn cef_parts(line: &str) -> (Vec<String>, String) {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if fields.len() < 7 => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '|' if fields.len() < 7 => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    (fields, cur)
}

/// The extension's `key=value` pairs, values unescaped.
fn cef_extensions(ext: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut chars = ext.chars().peekable();
    let mut token = String::new();
    let mut pending_key: Option<String> = None;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => token.push('\n'),
                Some('r') => token.push('\r'),
                Some(other) => token.push(other),
                None => {}
            },
            '=' => {
                // The text since the last space is the next key.
                let (value, key) = match token.rfind(' ') {
                    Some(i) => (token[..i].to_string(), token[i + 1..].to_string()),
                    None => (String::new(), token.clone()),
                };
                if let Some(k) = pending_key.take() {
                    out.push((k, value));
                }
                pending_key = Some(key);
                token.clear();
            }
            c => token.push(c),
        }
    }
    if let Some(k) = pending_key {
        out.push((k, token));
    }
    out
}

#[test]
fn cef_lines_have_the_header_and_escaped_extensions_on_one_line() {
    for f in all_mapped().into_iter().chain(fixtures::unknown_records()) {
        let line = rendered(Format::Cef, &f);
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        let (header, ext) = cef_parts(&line);
        assert_eq!(header.len(), 7, "{line}");
        assert_eq!(header[0], "CEF:0");
        assert_eq!(header[1], "authtrail");
        assert_eq!(header[3], "1.0");
        assert_eq!(header[4], f.event_type, "{line}");
        let severity: u8 = header[6].parse().unwrap();
        assert!(severity <= 10);
        let pairs = cef_extensions(&ext);
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("rt"), Some(fixtures::T0.to_string().as_str()), "{line}");
        assert!(matches!(
            get("outcome"),
            Some("success" | "failure" | "unknown")
        ));
        if let Some(src) = get("src") {
            assert!(src.parse::<std::net::IpAddr>().is_ok(), "{line}");
        }
        for (k, _) in &pairs {
            assert!(
                k.chars().all(|c| c.is_ascii_alphanumeric()),
                "bad extension key {k:?} in {line}"
            );
        }
    }
}

#[test]
fn cef_msg_of_an_unknown_record_is_its_json_with_equals_and_line_breaks_escaped() {
    let f = fixtures::other("x", json!({"a": "b=c", "t": "x\ny"}), "unknown");
    let line = rendered(Format::Cef, &f);
    let (_, ext) = cef_parts(&line);
    let pairs = cef_extensions(&ext);
    let msg = pairs
        .iter()
        .find(|(k, _)| k == "msg")
        .map(|(_, v)| v.clone());
    assert_eq!(msg.as_deref(), Some(f.text().as_str()), "{line}");
    assert!(line.contains(r#"b\=c"#), "{line}");
}

#[test]
fn login_error_maps_to_a_failed_logon_with_the_error_as_status_detail() {
    let f = fixtures::redact(&fixtures::user_event("LOGIN_ERROR"), "mask");
    let e = ocsf(&f);
    assert_eq!(e["class_uid"], 3002);
    assert_eq!(e["activity_id"], 1);
    assert_eq!(e["type_uid"], 300201);
    assert_eq!(e["status_id"], 2);
    assert_eq!(e["status_detail"], "invalid_user_credentials");
    assert_eq!(e["severity_id"], 2);
    assert_eq!(e["auth_protocol_id"], 4);
    assert_eq!(e["user"], json!({"uid": "0b3c5d7e-user"}));
    assert_eq!(e["service"], json!({"name": "account-console"}));
    assert_eq!(
        e["metadata"]["product"],
        json!({"name": "MPAS", "vendor_name": "Keycloak"})
    );
    assert_eq!(e["metadata"]["uid"], "ev-LOGIN_ERROR");
    assert_eq!(e["metadata"]["tenant_uid"], "9f1c1f2e-realm");
    // The masked address and name carry nothing: not mapped, kept in `unmapped`.
    assert!(e.get("src_endpoint").is_none(), "{e}");
    assert_eq!(e["unmapped"]["ipAddress"], MASK);
    assert_eq!(e["unmapped"]["details"]["username"], MASK);
    assert!(e["unmapped"].get("userId").is_none());
    let d = ecs(&f);
    assert_eq!(d["event"]["category"], json!(["authentication", "session"]));
    assert_eq!(d["event"]["type"], json!(["start"]));
    assert_eq!(d["event"]["outcome"], "failure");
    assert_eq!(d["event"]["reason"], "invalid_user_credentials");
    assert!(d.get("source").is_none());
    let cef = rendered(Format::Cef, &f);
    assert!(
        cef.starts_with("CEF:0|authtrail|MPAS|1.0|LOGIN_ERROR|Authentication: Logon|3|rt=1739388470156 act=LOGIN_ERROR outcome=failure"),
        "{cef}"
    );
}

#[test]
fn keycloak_token_events_map_to_ticket_activities_and_protocols() {
    let act = |ty: &str| {
        let e = ocsf(&fixtures::user_event(ty));
        (
            e["class_uid"].clone(),
            e["activity_id"].clone(),
            e["auth_protocol_id"].clone(),
        )
    };
    assert_eq!(act("CODE_TO_TOKEN"), (json!(3002), json!(4), json!(6)));
    assert_eq!(act("REFRESH_TOKEN"), (json!(3002), json!(5), json!(6)));
    assert_eq!(act("TOKEN_EXCHANGE"), (json!(3002), json!(4), json!(0)));
    assert_eq!(act("CLIENT_LOGIN"), (json!(3002), json!(1), json!(6)));
    assert_eq!(
        act("IDENTITY_PROVIDER_LOGIN"),
        (json!(3002), json!(1), json!(0))
    );
    assert_eq!(act("LOGOUT"), (json!(3002), json!(2), json!(0)));
    let mut saml = fixtures::user_event("LOGIN");
    saml.record["event"]["details"]["auth_method"] = json!("saml");
    assert_eq!(ocsf(&saml)["auth_protocol_id"], 5);
}

#[test]
fn account_lifecycle_events_map_to_account_change_activities() {
    let act = |ty: &str| {
        let e = ocsf(&fixtures::user_event(ty));
        (
            e["class_uid"].as_u64(),
            e["activity_id"].as_u64(),
            e["severity_id"].as_u64(),
        )
    };
    assert_eq!(act("REGISTER"), (Some(3001), Some(1), Some(1)));
    assert_eq!(act("UPDATE_PASSWORD"), (Some(3001), Some(3), Some(1)));
    assert_eq!(act("RESET_PASSWORD"), (Some(3001), Some(4), Some(1)));
    assert_eq!(act("DELETE_ACCOUNT"), (Some(3001), Some(6), Some(1)));
    assert_eq!(act("UPDATE_TOTP"), (Some(3001), Some(10), Some(1)));
    assert_eq!(act("REMOVE_TOTP"), (Some(3001), Some(11), Some(1)));
    assert_eq!(act("UPDATE_CREDENTIAL"), (Some(3001), Some(10), Some(1)));
    assert_eq!(
        act("USER_DISABLED_BY_TEMPORARY_LOCKOUT"),
        (Some(3001), Some(9), Some(3))
    );
    assert_eq!(act("UPDATE_PASSWORD_ERROR"), (Some(3001), Some(3), Some(2)));
    let mut password = fixtures::user_event("UPDATE_CREDENTIAL");
    password.record["event"]["details"]["credential_type"] = json!("password");
    assert_eq!(ocsf(&password)["activity_id"], 3);
}

#[test]
fn admin_events_name_the_admin_as_actor_and_the_target_from_the_resource_path() {
    let fx = fixtures::keycloak_admin_events();
    let by = |name: &str, path: &str| {
        fx.iter()
            .find(|f| f.name == name && f.record["event"]["resourcePath"] == path)
            .map(ocsf)
            .unwrap()
    };
    let created = by("USER:CREATE", "users/u-1");
    assert_eq!(
        (
            created["class_uid"].as_u64(),
            created["activity_id"].as_u64()
        ),
        (Some(3001), Some(1))
    );
    assert_eq!(created["user"], json!({"uid": "u-1", "name": "carol"}));
    assert_eq!(
        created["actor"],
        json!({"user": {"uid": "a11ce-admin", "domain": "master", "type_id": 2, "type": "Admin"}, "invoked_by": "security-admin-console"})
    );
    assert_eq!(created["src_endpoint"], json!({"ip": "203.0.113.9"}));
    let granted = by("REALM_ROLE_MAPPING:CREATE", "users/u-1/role-mappings/realm");
    assert_eq!(
        (
            granted["class_uid"].as_u64(),
            granted["activity_id"].as_u64()
        ),
        (Some(3005), Some(1))
    );
    assert_eq!(granted["privileges"], json!(["auditor"]));
    assert_eq!(granted["metadata"]["profiles"], json!(["host"]));
    // User Access Management has no src_endpoint: the admin's address stays in unmapped.
    assert_eq!(
        granted["unmapped"]["authDetails"]["ipAddress"],
        "203.0.113.9"
    );
    let on_group = by("REALM_ROLE_MAPPING:CREATE", "groups/g1/role-mappings/realm");
    assert_eq!(
        (
            on_group["class_uid"].as_u64(),
            on_group["activity_id"].as_u64()
        ),
        (Some(3006), Some(1))
    );
    assert_eq!(on_group["group"], json!({"uid": "g1"}));
    let joined = by("GROUP_MEMBERSHIP:CREATE", "users/u-1/groups/g1");
    assert_eq!(
        (joined["class_uid"].as_u64(), joined["activity_id"].as_u64()),
        (Some(3006), Some(3))
    );
    assert_eq!(joined["group"], json!({"uid": "g1", "name": "ops"}));
    assert_eq!(joined["user"], json!({"uid": "u-1"}));
    let client = by("CLIENT:UPDATE", "clients/c-1");
    assert_eq!(
        (client["class_uid"].as_u64(), client["activity_id"].as_u64()),
        (Some(3004), Some(3))
    );
    assert_eq!(
        client["entity"],
        json!({"type": "CLIENT", "uid": "c-1", "name": "webapp"})
    );
    let realm = by("REALM:UPDATE", "");
    assert_eq!(realm["entity"], json!({"type": "REALM", "name": "demo"}));
    let d = ecs(fx.iter().find(|f| f.name == "USER:CREATE").unwrap());
    assert_eq!(d["user"]["id"], "a11ce-admin");
    assert_eq!(
        d["user"]["target"],
        json!({"id": "u-1", "name": "carol", "domain": "9f1c1f2e-realm"})
    );
    assert_eq!(d["event"]["type"], json!(["user", "creation"]));
    assert_eq!(d["related"]["user"], json!(["carol", "u-1", "a11ce-admin"]));
    let failed = ocsf(fx.iter().find(|f| f.name == "USER:CREATE (error)").unwrap());
    assert_eq!(
        (failed["status_id"].as_u64(), failed["severity_id"].as_u64()),
        (Some(2), Some(2))
    );
}

#[test]
fn foxpass_records_are_authentications_over_ldap_or_radius() {
    let fx = fixtures::foxpass_records();
    let ldap = ocsf(&fx[0]);
    assert_eq!(
        (ldap["class_uid"].as_u64(), ldap["activity_id"].as_u64()),
        (Some(3002), Some(1))
    );
    assert_eq!(
        (
            ldap["auth_protocol_id"].as_u64(),
            ldap["auth_protocol"].as_str()
        ),
        (Some(99), Some("LDAP"))
    );
    assert_eq!(
        ldap["user"],
        json!({"uid": "uid=bob,ou=people,dc=example,dc=com", "name": "bob"})
    );
    assert_eq!(ldap["message"], "bind succeeded");
    assert_eq!(ldap["unmapped"], json!({"user_type": "user"}));
    let failed = ocsf(&fx[1]);
    assert_eq!(failed["status_id"], 2);
    let radius = ocsf(&fx[2]);
    assert_eq!(radius["auth_protocol_id"], 10);
    assert_eq!(radius["src_endpoint"], json!({"ip": "198.51.100.20"}));
    assert_eq!(radius["metadata"]["product"]["name"], "Foxpass");
}

#[test]
fn blitz_records_map_where_the_type_says_what_happened() {
    let fx = fixtures::blitz_records();
    let get = |name: &str| ocsf(fx.iter().find(|f| f.name == name).unwrap());
    let failed = get("login_failed");
    assert_eq!(
        (failed["class_uid"].as_u64(), failed["status_id"].as_u64()),
        (Some(3002), Some(2))
    );
    assert_eq!(failed["status_detail"], "wrong_password");
    assert_eq!(failed["http_request"], json!({"user_agent": "Mozilla/5.0"}));
    assert_eq!(failed["service"], json!({"name": "portal"}));
    assert_eq!(get("logout")["activity_id"], 2);
    assert_eq!(get("user_locked")["class_uid"], 3001);
    let created = get("admin_user_created");
    assert_eq!(
        (
            created["class_uid"].as_u64(),
            created["activity_id"].as_u64()
        ),
        (Some(3004), Some(1))
    );
    assert_eq!(
        created["entity"],
        json!({"type": "user_created", "uid": "s-43", "name": "erin"})
    );
    assert_eq!(created["actor"]["user"]["uid"], "s-42");
}

#[test]
fn redacted_values_stay_redacted_and_pseudonyms_go_to_string_fields_only() {
    let f = fixtures::redact(&fixtures::user_event("LOGIN"), "hash");
    let pseudonym = f.record["event"]["ipAddress"].as_str().unwrap().to_string();
    let name = f.record["event"]["details"]["username"]
        .as_str()
        .unwrap()
        .to_string();
    let e = ocsf(&f);
    assert_eq!(e["src_endpoint"], json!({"uid": pseudonym}));
    assert_eq!(e["user"]["name"], name);
    let d = ecs(&f);
    assert_eq!(d["source"], json!({"address": pseudonym}));
    assert!(d["related"].get("ip").is_none());
    let cef = rendered(Format::Cef, &f);
    assert!(
        cef.contains(&format!("cs6={pseudonym} cs6Label=sourceAddress")),
        "{cef}"
    );
    assert!(!cef.contains(" src="), "{cef}");
    for format in [Format::Ocsf, Format::Ecs, Format::Cef] {
        let out = rendered(format, &f);
        assert!(
            !out.contains("192.0.2.10") && !out.contains("alice"),
            "{format}: {out}"
        );
    }
}

#[test]
fn rendering_the_text_gives_what_rendering_the_value_gives() {
    for f in all_mapped().into_iter().chain(fixtures::unknown_records()) {
        let text = f.text();
        for format in Format::ALL {
            let mut from_text = String::new();
            authtrail_normalize::render_text(*format, &text, &f.class(), &mut from_text).unwrap();
            assert_eq!(from_text, rendered(*format, &f), "{format} {}", f.name);
        }
    }
    let mut out = String::new();
    let f = fixtures::user_event("LOGIN");
    assert!(
        authtrail_normalize::render_text(Format::Ocsf, "{not json", &f.class(), &mut out).is_err()
    );
}

#[test]
fn raw_format_writes_the_record_text_unchanged() {
    let f = fixtures::user_event("LOGIN");
    let text = " {\"keep\": \"spacing\"} ";
    let mut out = String::from("old");
    render(Format::Raw, &f.record, &f.class(), Some(text), &mut out).unwrap();
    assert_eq!(out, text);
    render(Format::Raw, &f.record, &f.class(), None, &mut out).unwrap();
    assert_eq!(out, f.text());
}

// ---------------------------------------------------------------------------------------------
// The checkers themselves: they must catch what they claim to catch.
// ---------------------------------------------------------------------------------------------

#[test]
fn the_ocsf_checker_catches_attributes_requirements_enums_captions_types_and_profiles() {
    let schema = Schema::load();
    let good = ocsf(&fixtures::user_event("LOGIN"));
    assert_eq!(schema.check(&good), Vec::<String>::new());
    let broken = |edit: &dyn Fn(&mut Value), expect: &str| {
        let mut e = good.clone();
        edit(&mut e);
        let errors = schema.check(&e);
        assert!(
            errors.iter().any(|x| x.contains(expect)),
            "expected an error containing {expect:?}, got {errors:#?}"
        );
    };
    broken(&|e| e["bogus"] = json!(1), "bogus: not an attribute");
    broken(
        &|e| e["user"]["shoe_size"] = json!(1),
        "user.shoe_size: not an attribute",
    );
    broken(
        &|e| {
            e.as_object_mut().unwrap().remove("user");
        },
        "user: required",
    );
    broken(
        &|e| {
            e["metadata"].as_object_mut().unwrap().remove("version");
        },
        "metadata.version: required",
    );
    broken(
        &|e| e["activity_id"] = json!(42),
        "activity_id: 42 is not one of the values",
    );
    broken(
        &|e| e["auth_protocol_id"] = json!(77),
        "auth_protocol_id: 77",
    );
    broken(&|e| e["status"] = json!("Fine"), "the caption of status_id");
    broken(
        &|e| e["src_endpoint"] = json!({"ip": "<redacted>"}),
        "src_endpoint.ip",
    );
    broken(&|e| e["time"] = json!("yesterday"), "time");
    broken(&|e| e["type_uid"] = json!(300299), "type_uid");
    broken(
        &|e| e["device"] = json!({"ip": "192.0.2.1"}),
        "profile \"host\"",
    );
    broken(
        &|e| e["user"] = json!({"type_id": 1}),
        "needs at least one of",
    );
    broken(
        &|e| {
            e.as_object_mut().unwrap().remove("service");
        },
        "needs at least one of",
    );
}

#[test]
fn the_ecs_checker_catches_missing_fields_and_values_ecs_does_not_allow() {
    let good = ecs(&fixtures::user_event("LOGIN"));
    assert_eq!(support::ecs::check(&good), Vec::<String>::new());
    let broken = |edit: &dyn Fn(&mut Value), expect: &str| {
        let mut d = good.clone();
        edit(&mut d);
        let errors = support::ecs::check(&d);
        assert!(
            errors.iter().any(|x| x.contains(expect)),
            "{expect}: {errors:#?}"
        );
    };
    broken(
        &|d| {
            d["event"].as_object_mut().unwrap().remove("outcome");
        },
        "event.outcome",
    );
    broken(&|d| d["event"]["outcome"] = json!("ok"), "event.outcome");
    broken(
        &|d| d["event"]["category"] = json!(["login"]),
        "\"login\" not allowed",
    );
    broken(
        &|d| d["event"]["type"] = json!(["creation"]),
        "not expected",
    );
    broken(&|d| d["source"] = json!({"ip": "<redacted>"}), "source.ip");
    broken(&|d| d["@timestamp"] = json!(1), "@timestamp");
    broken(&|d| d["keycloak"] = json!({}), "keycloak: not a field set");
}

#[test]
fn the_copied_schema_files_are_the_release_files() {
    let full = std::env::var_os("OCSF_SCHEMA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/ocsf-schema-1.1.0")
        });
    let copy = support::ocsf::bundled_dir();
    if !full.join("dictionary.json").is_file() {
        eprintln!(
            "no full OCSF 1.1.0 schema at {}: the copy in {} is not compared (set OCSF_SCHEMA_DIR)",
            full.display(),
            copy.display()
        );
        return;
    }
    let mut compared = 0;
    let mut stack = vec![copy.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(&copy).unwrap();
            let ours = std::fs::read(&path).unwrap();
            let theirs = std::fs::read(full.join(rel))
                .unwrap_or_else(|e| panic!("{} is not in the full schema: {e}", rel.display()));
            assert!(
                ours == theirs,
                "{} differs from the release file",
                rel.display()
            );
            compared += 1;
        }
    }
    assert!(compared > 60, "only {compared} files compared");
}
