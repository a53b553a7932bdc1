//! The simulator's Keycloak and control APIs, exercised over HTTP against an in-process server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use mpas_sim::{FaultRates, GenerateSpec, Secret, SimConfig, SimHandle, TrafficConfig, start};
use reqwest::StatusCode;
use serde_json::Value;

/// 2025-02-12T00:00:00Z
const DAY_START: i64 = 1_739_318_400_000;

fn base_config() -> SimConfig {
    SimConfig {
        client_secret: Secret::new("s3cret"),
        username: Some("auditor".into()),
        password: Some(Secret::new("pa55")),
        ..SimConfig::default()
    }
}

/// A history of `n` events without ties, one per 20 ms, ending at `end`, clock frozen after it.
fn history_config(n: u64, end: i64) -> SimConfig {
    SimConfig {
        history: n,
        rate: 50.0,
        history_end_ms: Some(end),
        frozen_clock_ms: Some(end + 60_000),
        ..base_config()
    }
}

struct Client {
    http: reqwest::Client,
    token: String,
}

impl Client {
    async fn new(sim: &SimHandle) -> Self {
        let http = reqwest::Client::new();
        let resp = http
            .post(sim.token_url())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "authtrail"),
                ("client_secret", "s3cret"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        Self {
            http,
            token: body["access_token"].as_str().unwrap().to_owned(),
        }
    }

    async fn get(&self, url: &str, query: &[(&str, String)]) -> (StatusCode, String) {
        let resp = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .query(query)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.text().await.unwrap())
    }

    async fn events(&self, url: &str, query: &[(&str, String)]) -> Vec<Value> {
        let (status, body) = self.get(url, query).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Pulls every page with offset paging.
    async fn all_pages(&self, url: &str, max: usize, direction: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let page = self
                .events(
                    url,
                    &[
                        ("first", out.len().to_string()),
                        ("max", max.to_string()),
                        ("direction", direction.to_owned()),
                    ],
                )
                .await;
            let short = page.len() < max;
            out.extend(page);
            if short {
                return out;
            }
        }
    }
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

fn times(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["time"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn paging_with_first_max_covers_every_event_exactly_once_when_nothing_changes() {
    let sim = start(history_config(3000, DAY_START + 3_600_000))
        .await
        .unwrap();
    let c = Client::new(&sim).await;
    let ledger = sim.ledger();
    let expected_user: HashSet<String> = ledger
        .iter()
        .filter(|e| e.kind == mpas_sim::EventKind::User)
        .map(|e| e.id.clone())
        .collect();
    let expected_admin: HashSet<String> = ledger
        .iter()
        .filter(|e| e.kind == mpas_sim::EventKind::Admin)
        .map(|e| e.id.clone())
        .collect();
    assert!(expected_admin.len() > 100);
    for (url, expected) in [
        (sim.events_url(), &expected_user),
        (sim.admin_events_url(), &expected_admin),
    ] {
        for (max, direction) in [(100, "asc"), (7, "desc"), (1000, "desc")] {
            let got = ids(&c.all_pages(&url, max, direction).await);
            let unique: HashSet<String> = got.iter().cloned().collect();
            assert_eq!(got.len(), unique.len(), "duplicates with max={max}");
            assert_eq!(&unique, expected, "max={max} {direction}");
        }
    }
}

#[tokio::test]
async fn date_from_and_date_to_are_inclusive_at_both_ends_in_epoch_ms() {
    let sim = start(history_config(500, DAY_START + 3_600_000))
        .await
        .unwrap();
    let c = Client::new(&sim).await;
    let all = c
        .events(
            &sim.events_url(),
            &[("max", "10000".into()), ("direction", "asc".into())],
        )
        .await;
    let t = times(&all);
    let (from, to) = (t[100], t[200]);
    let got = c
        .events(
            &sim.events_url(),
            &[
                ("dateFrom", from.to_string()),
                ("dateTo", to.to_string()),
                ("max", "10000".into()),
            ],
        )
        .await;
    let expected = t.iter().filter(|x| (from..=to).contains(x)).count();
    assert_eq!(got.len(), expected);
    let got_times = times(&got);
    assert!(got_times.contains(&from) && got_times.contains(&to));
    // One millisecond inside on each side excludes both end events.
    let inner = c
        .events(
            &sim.events_url(),
            &[
                ("dateFrom", (from + 1).to_string()),
                ("dateTo", (to - 1).to_string()),
                ("max", "10000".into()),
            ],
        )
        .await;
    assert!(!times(&inner).contains(&from) && !times(&inner).contains(&to));
}

#[tokio::test]
async fn day_form_dates_cover_the_whole_utc_day() {
    // Two hours of history around midnight 2025-02-12 -> 2025-02-13.
    let midnight = DAY_START + 86_400_000;
    let sim = start(SimConfig {
        history: 7200,
        rate: 1.0,
        history_end_ms: Some(midnight + 3_600_000),
        frozen_clock_ms: Some(midnight + 7_200_000),
        ..base_config()
    })
    .await
    .unwrap();
    let c = Client::new(&sim).await;
    let day1 = c
        .events(
            &sim.events_url(),
            &[
                ("dateFrom", "2025-02-12".into()),
                ("dateTo", "2025-02-12".into()),
                ("max", "100000".into()),
            ],
        )
        .await;
    let day2 = c
        .events(
            &sim.events_url(),
            &[("dateFrom", "2025-02-13".into()), ("max", "100000".into())],
        )
        .await;
    let ledger: Vec<i64> = sim
        .ledger()
        .iter()
        .filter(|e| e.kind == mpas_sim::EventKind::User)
        .map(|e| e.time)
        .collect();
    let in_day1 = ledger.iter().filter(|t| **t < midnight).count();
    assert!(in_day1 > 100 && in_day1 < ledger.len());
    assert_eq!(day1.len(), in_day1);
    assert_eq!(day2.len(), ledger.len() - in_day1);
    assert!(times(&day1).iter().all(|t| *t < midnight));
}

#[tokio::test]
async fn direction_asc_desc_and_default_is_newest_first() {
    let sim = start(history_config(300, DAY_START)).await.unwrap();
    let c = Client::new(&sim).await;
    let default = times(&c.events(&sim.events_url(), &[]).await);
    let desc = times(
        &c.events(&sim.events_url(), &[("direction", "desc".into())])
            .await,
    );
    let asc = times(
        &c.events(&sim.events_url(), &[("direction", "asc".into())])
            .await,
    );
    assert_eq!(default.len(), 100, "max defaults to 100");
    assert!(default.windows(2).all(|w| w[0] >= w[1]));
    assert_eq!(default, desc);
    assert!(asc.windows(2).all(|w| w[0] <= w[1]));
    assert!(asc[0] < desc[0]);
}

#[tokio::test]
async fn bad_direction_date_first_or_max_gets_400() {
    let sim = start(history_config(10, DAY_START)).await.unwrap();
    let c = Client::new(&sim).await;
    for (k, v) in [
        ("direction", "up"),
        ("dateFrom", "yesterday"),
        ("dateTo", "2025-02-30"),
        ("first", "ten"),
        ("max", "1e3"),
    ] {
        for url in [sim.events_url(), sim.admin_events_url()] {
            let (status, body) = c.get(&url, &[(k, v.to_owned())]).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{k}={v}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert!(v["error"].is_string());
        }
    }
    let (_, body) = c.get(&sim.events_url(), &[("dateFrom", "x".into())]).await;
    assert!(body.contains("Invalid value for 'Date(From)'"), "{body}");
    assert!(sim.stats().bad_requests >= 10);
}

#[tokio::test]
async fn missing_unknown_or_expired_token_gets_401() {
    let sim = start(SimConfig {
        token_lifetime_secs: 60,
        ..history_config(10, DAY_START)
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let no_token = http.get(sim.events_url()).send().await.unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    let forged = http
        .get(sim.events_url())
        .bearer_auth("not.a.token")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let c = Client::new(&sim).await;
    assert_eq!(c.get(&sim.events_url(), &[]).await.0, StatusCode::OK);
    sim.advance_clock(61_000);
    assert_eq!(
        c.get(&sim.admin_events_url(), &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn expire_tokens_makes_tokens_issued_so_far_answer_401_and_a_new_token_works() {
    let sim = start(history_config(10, DAY_START)).await.unwrap();
    let c = Client::new(&sim).await;
    assert_eq!(c.get(&sim.events_url(), &[]).await.0, StatusCode::OK);
    assert_eq!(sim.expire_tokens(), 1);
    assert_eq!(
        c.get(&sim.events_url(), &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(sim.expire_tokens(), 0);
    let renewed = Client::new(&sim).await;
    assert_eq!(renewed.get(&sim.events_url(), &[]).await.0, StatusCode::OK);
}

async fn token_status(
    sim: &SimHandle,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, Value) {
    let http = reqwest::Client::new();
    let mut req = http.post(sim.token_url()).form(form);
    if let Some((u, p)) = basic {
        req = req.basic_auth(u, Some(p));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn password_grant_requires_admin_cli_and_the_configured_user() {
    let sim = start(base_config()).await.unwrap();
    let (s, body) = token_status(
        &sim,
        &[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", "auditor"),
            ("password", "pa55"),
        ],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(body["refresh_token"].is_string());
    assert_eq!(body["token_type"], "Bearer");
    let (s, body) = token_status(
        &sim,
        &[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", "auditor"),
            ("password", "nope"),
        ],
        None,
    )
    .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_grant"))
    );
    let (s, body) = token_status(
        &sim,
        &[
            ("grant_type", "password"),
            ("client_id", "authtrail"),
            ("client_secret", "s3cret"),
            ("username", "auditor"),
            ("password", "pa55"),
        ],
        None,
    )
    .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unauthorized_client"))
    );
}

#[tokio::test]
async fn client_credentials_accepts_form_or_basic_auth_and_rejects_bad_secrets() {
    let sim = start(base_config()).await.unwrap();
    let (s, body) = token_status(
        &sim,
        &[("grant_type", "client_credentials")],
        Some(("authtrail", "s3cret")),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["refresh_expires_in"], 0);
    assert_eq!(body["not-before-policy"], 0);
    let (s, body) = token_status(
        &sim,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "authtrail"),
            ("client_secret", "wrong"),
        ],
        None,
    )
    .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let (s, body) = token_status(
        &sim,
        &[("grant_type", "implicit"), ("client_id", "authtrail")],
        None,
    )
    .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    assert!(sim.stats().token_rejected >= 2);
}

#[tokio::test]
async fn unknown_realm_gets_404_on_token_and_admin_endpoints() {
    let sim = start(base_config()).await.unwrap();
    let http = reqwest::Client::new();
    let resp = http
        .post(format!(
            "{}/realms/nope/protocol/openid-connect/token",
            sim.base_url()
        ))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let c = Client::new(&sim).await;
    let (status, body) = c
        .get(&format!("{}/admin/realms/nope/events", sim.base_url()), &[])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "Realm not found."
    );
}

#[tokio::test]
async fn wrong_method_gets_405_and_unknown_path_404() {
    let sim = start(base_config()).await.unwrap();
    let http = reqwest::Client::new();
    let resp = http.post(sim.events_url()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let resp = http.get(sim.token_url()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let resp = http
        .get(format!("{}/nothing/here", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ties_come_back_in_varying_order_across_requests() {
    let sim = start(SimConfig {
        traffic: TrafficConfig {
            tie_fraction: 1.0,
            tie_burst: 20,
            admin_fraction: 0.0,
            ..TrafficConfig::default()
        },
        ..history_config(40, DAY_START)
    })
    .await
    .unwrap();
    let c = Client::new(&sim).await;
    let mut orders = HashSet::new();
    for _ in 0..10 {
        let page = c.events(&sim.events_url(), &[("max", "100".into())]).await;
        assert_eq!(page.len(), 40);
        let t = times(&page);
        assert!(t.windows(2).all(|w| w[0] >= w[1]), "still sorted by time");
        orders.insert(ids(&page));
    }
    assert!(orders.len() > 1, "tie order never changed in 10 requests");
}

#[tokio::test]
async fn late_commit_events_appear_after_later_stamped_events() {
    let t0 = DAY_START;
    let sim = start(SimConfig {
        frozen_clock_ms: Some(t0 + 10_000),
        ..base_config()
    })
    .await
    .unwrap();
    let report = sim
        .generate(&GenerateSpec {
            count: 400,
            from_ms: Some(t0 + 5_000),
            to_ms: Some(t0 + 10_000),
            late_fraction: Some(0.5),
            late_max_ms: Some(4000),
            admin_fraction: Some(0.0),
            ..GenerateSpec::default()
        })
        .unwrap();
    assert!(report.pending > 0);
    let c = Client::new(&sim).await;
    let url = sim.events_url();
    let q = [("max", "1000".to_owned()), ("direction", "asc".to_owned())];
    let before = c.events(&url, &q).await;
    let newest_before = *times(&before).iter().max().unwrap();
    sim.advance_clock(4000);
    let after = c.events(&url, &q).await;
    let seen: HashSet<String> = ids(&before).into_iter().collect();
    let newcomers: Vec<&Value> = after
        .iter()
        .filter(|e| !seen.contains(e["id"].as_str().unwrap()))
        .collect();
    assert_eq!(after.len() as u64, report.generated);
    assert_eq!(newcomers.len() as u64, report.pending);
    assert!(
        newcomers
            .iter()
            .any(|e| e["time"].as_i64().unwrap() < newest_before),
        "no late event is older than the newest event visible before"
    );
    assert!(
        newcomers.iter().all(|e| e.get("error").is_none()),
        "errors are never late"
    );
    // The ledger shows their visibility after their time.
    let ledger = sim.ledger();
    assert!(ledger.iter().any(|e| e.visible_at > e.time));
    assert!(
        ledger
            .iter()
            .filter(|e| e.is_error)
            .all(|e| e.visible_at == e.time)
    );
}

#[tokio::test]
async fn legacy_mode_has_no_id_ignores_direction_and_rejects_epoch_dates() {
    let sim = start(SimConfig {
        legacy: true,
        ..history_config(300, DAY_START + 3_600_000)
    })
    .await
    .unwrap();
    let c = Client::new(&sim).await;
    let asc = c
        .events(&sim.events_url(), &[("direction", "asc".into())])
        .await;
    assert!(asc.iter().all(|e| e.get("id").is_none()));
    let t = times(&asc);
    assert!(
        t.windows(2).all(|w| w[0] >= w[1]),
        "newest first despite direction=asc"
    );
    let (status, body) = c
        .get(&sim.events_url(), &[("dateFrom", DAY_START.to_string())])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("yyyy-MM-dd"));
    let day = c
        .events(
            &sim.admin_events_url(),
            &[
                ("dateFrom", "2025-02-12".into()),
                ("dateTo", "2025-02-12".into()),
            ],
        )
        .await;
    assert!(!day.is_empty());
    assert!(day.iter().all(|e| e.get("id").is_none()));
}

#[tokio::test]
async fn faults_appear_at_roughly_the_configured_rate_and_a_truncated_body_is_not_valid_json() {
    let sim = start(SimConfig {
        faults: FaultRates {
            error_500: 0.2,
            too_many_429: 0.1,
            truncate: 0.2,
            retry_after_secs: 7,
            ..FaultRates::default()
        },
        ..history_config(200, DAY_START)
    })
    .await
    .unwrap();
    let c = Client::new(&sim).await;
    let mut counts: HashMap<&str, u32> = HashMap::new();
    for _ in 0..400 {
        let resp = c
            .http
            .get(sim.events_url())
            .bearer_auth(&c.token)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = resp.bytes().await.unwrap();
        let kind = match status {
            StatusCode::INTERNAL_SERVER_ERROR => "500",
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(retry_after.as_deref(), Some("7"));
                "429"
            }
            StatusCode::OK if serde_json::from_slice::<Vec<Value>>(&body).is_err() => "truncated",
            StatusCode::OK => "ok",
            other => panic!("unexpected {other}"),
        };
        *counts.entry(kind).or_default() += 1;
    }
    let near = |k: &str, expected: f64| {
        let got = f64::from(*counts.get(k).unwrap_or(&0)) / 400.0;
        assert!(
            (got - expected).abs() < 0.08,
            "{k}: {got} vs {expected} ({counts:?})"
        );
    };
    near("500", 0.2);
    near("429", 0.1);
    near("truncated", 0.2);
    near("ok", 0.5);
    let stats = sim.stats();
    assert_eq!(u64::from(counts["truncated"]), stats.faults.truncate);
    assert_eq!(u64::from(counts["500"]), stats.faults.error_500);
    // Faults can be switched off at runtime through the control API.
    let resp = c
        .http
        .post(format!("{}/sim/faults", sim.base_url()))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    for _ in 0..20 {
        assert_eq!(c.get(&sim.events_url(), &[]).await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn slow_fault_delays_the_answer_but_serves_it_whole() {
    let sim = start(SimConfig {
        faults: FaultRates {
            slow: 1.0,
            slow_ms: 300,
            ..FaultRates::default()
        },
        ..history_config(20, DAY_START)
    })
    .await
    .unwrap();
    let c = Client::new(&sim).await;
    let page = c.events(&sim.events_url(), &[]).await;
    assert!(!page.is_empty());
    assert_eq!(sim.stats().faults.slow, 1);
}

#[tokio::test]
async fn same_seed_gives_identical_events_and_another_seed_does_not() {
    let a = start(history_config(2000, DAY_START)).await.unwrap();
    let b = start(history_config(2000, DAY_START)).await.unwrap();
    let other = start(SimConfig {
        seed: 43,
        ..history_config(2000, DAY_START)
    })
    .await
    .unwrap();
    let json = |s: &SimHandle| {
        s.ledger()
            .iter()
            .map(|e| e.json.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(json(&a), json(&b));
    assert_ne!(json(&a), json(&other));
    // And over HTTP, byte for byte (ties would shuffle; this history has none).
    let ca = Client::new(&a).await;
    let cb = Client::new(&b).await;
    let q = [("max", "5000".to_owned())];
    assert_eq!(
        ca.get(&a.admin_events_url(), &q).await.1,
        cb.get(&b.admin_events_url(), &q).await.1
    );
}

#[tokio::test]
async fn ledger_lists_exactly_the_visible_events() {
    let sim = start(SimConfig {
        traffic: TrafficConfig {
            late_fraction: 0.3,
            late_max_ms: 5000,
            tie_fraction: 0.2,
            ..TrafficConfig::default()
        },
        history: 1000,
        rate: 100.0,
        history_end_ms: Some(DAY_START),
        // Ten seconds of history are still committing at the frozen now.
        frozen_clock_ms: Some(DAY_START - 1000),
        ..base_config()
    })
    .await
    .unwrap();
    assert!(sim.stats().pending > 0);
    let c = Client::new(&sim).await;
    let all = |url: String| {
        let c = &c;
        async move { c.events(&url, &[("max", "-1".into())]).await }
    };
    let mut visible: HashSet<String> = ids(&all(sim.events_url()).await).into_iter().collect();
    visible.extend(ids(&all(sim.admin_events_url()).await));
    let resp = c
        .http
        .get(format!("{}/sim/ledger", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let length: usize = resp.headers()["x-ledger-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let text = resp.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), length);
    let ledger_ids: HashSet<String> = lines
        .iter()
        .map(|l| l["event"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ledger_ids, visible);
    assert!(
        lines
            .iter()
            .all(|l| l["visibleAt"].as_i64().unwrap() <= DAY_START - 1000)
    );
    // Committing the rest grows the ledger by exactly the pending events.
    let pending = sim.stats().pending;
    assert_eq!(sim.commit_pending() as u64, pending);
    let more = c
        .http
        .get(format!(
            "{}/sim/ledger?since={length}&format=json",
            sim.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap();
    assert_eq!(more.len() as u64, pending);
    assert_eq!(sim.ledger().len(), 1000);
}

#[tokio::test]
async fn retention_removes_old_events_so_clients_can_see_the_gap() {
    let sim = start(history_config(1000, DAY_START)).await.unwrap();
    let c = Client::new(&sim).await;
    let oldest_before = sim.stats().oldest_time.unwrap();
    // The history spans the 20 s before DAY_START and the clock is frozen at DAY_START + 60 s:
    // a 70 s retention keeps only the last 10 s of it.
    sim.set_retention(Some(Duration::from_secs(70)));
    let stats = sim.stats();
    let cutoff = DAY_START + 60_000 - 70_000;
    assert!(stats.expired > 0);
    assert!(stats.oldest_time.unwrap() >= cutoff);
    assert!(stats.oldest_time.unwrap() > oldest_before);
    let asc = c
        .events(
            &sim.events_url(),
            &[("direction", "asc".into()), ("max", "1".into())],
        )
        .await;
    assert!(asc[0]["time"].as_i64().unwrap() >= cutoff);
    // Explicit expiry through the control API.
    let resp = c
        .http
        .post(format!("{}/sim/expire", sim.base_url()))
        .json(&serde_json::json!({"beforeMs": DAY_START - 5000}))
        .send()
        .await
        .unwrap();
    let after: mpas_sim::Stats = resp.json().await.unwrap();
    assert!(after.expired > stats.expired);
    assert!(after.oldest_time.unwrap() >= DAY_START - 5000);
    let kept = after.visible_user_events + after.visible_admin_events;
    assert!(kept > 100 && kept < 400, "kept {kept}");
}

#[tokio::test]
async fn filters_select_by_type_client_user_and_resource_path() {
    let sim = start(history_config(3000, DAY_START)).await.unwrap();
    let c = Client::new(&sim).await;
    let url = sim.events_url();
    let errors = c
        .events(
            &url,
            &[
                ("type", "LOGIN_ERROR".into()),
                ("type", "LOGOUT".into()),
                ("max", "-1".into()),
            ],
        )
        .await;
    assert!(!errors.is_empty());
    assert!(
        errors
            .iter()
            .all(|e| e["type"] == "LOGIN_ERROR" || e["type"] == "LOGOUT")
    );
    let login_errors: Vec<&Value> = errors
        .iter()
        .filter(|e| e["type"] == "LOGIN_ERROR")
        .collect();
    assert!(login_errors.iter().all(|e| {
        let err = e["error"].as_str().unwrap();
        err == "invalid_user_credentials" || err == "user_not_found"
    }));
    let user = errors
        .iter()
        .find_map(|e| e["userId"].as_str())
        .unwrap()
        .to_owned();
    let by_user = c
        .events(&url, &[("user", user.clone()), ("max", "-1".into())])
        .await;
    assert!(!by_user.is_empty() && by_user.iter().all(|e| e["userId"] == user.as_str()));
    let by_client = c.events(&url, &[("client", "webapp".into())]).await;
    assert!(!by_client.is_empty() && by_client.iter().all(|e| e["clientId"] == "webapp"));
    let admin = c
        .events(
            &sim.admin_events_url(),
            &[
                ("resourceTypes", "USER".into()),
                ("resourcePath", "users/*".into()),
                ("operationTypes", "CREATE".into()),
            ],
        )
        .await;
    assert!(!admin.is_empty());
    assert!(admin.iter().all(|e| e["resourceType"] == "USER"
        && e["operationType"] == "CREATE"
        && e["resourcePath"].as_str().unwrap().starts_with("users/")
        && e["representation"].is_string()));
    // Filtered paging still covers every match once.
    let mut paged = Vec::new();
    loop {
        let page = c
            .events(
                &url,
                &[
                    ("type", "LOGIN".into()),
                    ("first", paged.len().to_string()),
                    ("max", "50".into()),
                ],
            )
            .await;
        let short = page.len() < 50;
        paged.extend(ids(&page));
        if short {
            break;
        }
    }
    let all_logins = c
        .events(&url, &[("type", "LOGIN".into()), ("max", "-1".into())])
        .await;
    assert_eq!(paged.len(), all_logins.len());
    assert_eq!(paged.iter().collect::<HashSet<_>>().len(), paged.len());
}

#[tokio::test]
async fn generate_control_call_appends_events_after_the_existing_ones() {
    let sim = start(history_config(100, DAY_START)).await.unwrap();
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/sim/generate", sim.base_url()))
        .json(&serde_json::json!({"count": 250}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let report: mpas_sim::GenerateReport = resp.json().await.unwrap();
    assert_eq!(report.generated, 250);
    assert!(
        report.from_ms > DAY_START,
        "new events come after the history"
    );
    let stats = sim.stats();
    assert_eq!(stats.generated, 350);
    assert_eq!(stats.ledger, 350);
    let bad = http
        .post(format!("{}/sim/generate", sim.base_url()))
        .json(&serde_json::json!({"count": 5, "tieFraction": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let health: Value = http
        .get(format!("{}/sim/health", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "UP");
}

#[tokio::test]
async fn clock_control_freezes_and_advances_time() {
    let sim = start(base_config()).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/sim/clock", sim.base_url());
    let frozen: Value = http
        .post(&url)
        .json(&serde_json::json!({"freeze": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t = frozen["nowMs"].as_i64().unwrap();
    let moved: Value = http
        .post(&url)
        .json(&serde_json::json!({"advanceMs": 1500}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(moved["nowMs"].as_i64().unwrap(), t + 1500);
    assert_eq!(sim.now_ms(), t + 1500);
}

#[tokio::test]
async fn live_mode_generates_traffic_as_the_clock_moves() {
    let sim = start(SimConfig {
        live: true,
        rate: 1000.0,
        ..base_config()
    })
    .await
    .unwrap();
    // Moving the clock makes the live generator catch up by rate * elapsed.
    sim.advance_clock(2000);
    let mut generated = 0;
    for _ in 0..200 {
        generated = sim.stats().generated;
        if generated >= 2000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(generated >= 2000, "generated {generated}");
}

#[tokio::test]
async fn stopping_traffic_makes_what_is_due_then_freezes_the_ledger() {
    let sim = start(SimConfig {
        live: true,
        rate: 1000.0,
        ..base_config()
    })
    .await
    .unwrap();
    sim.freeze_clock();
    sim.advance_clock(1500);
    // Whatever the background tick had not yet made up to the frozen clock is made now.
    sim.stop_traffic().unwrap();
    sim.commit_pending();
    let made = sim.ledger().len();
    assert!(made >= 1500, "made {made}");
    // Time passing and the background tick running change nothing any more.
    sim.advance_clock(5000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sim.commit_pending();
    assert_eq!(sim.ledger().len(), made);
}

#[tokio::test]
async fn control_calls_reject_bad_input_and_the_server_keeps_serving() {
    let sim = start(history_config(50, DAY_START)).await.unwrap();
    let http = reqwest::Client::new();
    let base = sim.base_url();
    for (path, body) in [
        (
            "/sim/generate",
            serde_json::json!({"count": 10, "fromMs": i64::MIN, "toMs": i64::MAX}),
        ),
        (
            "/sim/generate",
            serde_json::json!({"count": 10, "fromMs": 5, "toMs": 1}),
        ),
        ("/sim/generate", serde_json::json!({"count": "many"})),
        ("/sim/faults", serde_json::json!({"error500": 1.5})),
        ("/sim/faults", serde_json::json!({"bogus": 1})),
        ("/sim/clock", serde_json::json!({"advanceMs": "soon"})),
        ("/sim/expire", serde_json::json!({})),
    ] {
        let resp = http
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path} {body}");
    }
    let resp = http
        .get(format!("{base}/sim/ledger?format=xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // An absurd clock jump saturates instead of overflowing.
    let resp = http
        .post(format!("{base}/sim/clock"))
        .json(&serde_json::json!({"advanceMs": i64::MAX}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(sim.stats().ledger, 50);
}

#[tokio::test]
async fn refresh_token_of_the_password_grant_buys_a_new_access_token_once() {
    let sim = start(base_config()).await.unwrap();
    let (_, body) = token_status(
        &sim,
        &[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", "auditor"),
            ("password", "pa55"),
        ],
        None,
    )
    .await;
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", "admin-cli"),
        ("refresh_token", refresh.as_str()),
    ];
    let (s, again) = token_status(&sim, &form, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(again["access_token"].is_string());
    let (s, reused) = token_status(&sim, &form, None).await;
    assert_eq!(
        (s, reused["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // A refresh token is not an access token.
    let resp = reqwest::Client::new()
        .get(sim.events_url())
        .bearer_auth(&refresh)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}
