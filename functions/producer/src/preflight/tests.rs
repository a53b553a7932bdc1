//! The MPAS checks against the MPAS simulator: a modern and a legacy server, wrong credentials.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use authtrail_core::preflight::Status;
use authtrail_core::secret::Secret;

use super::*;

const SECRET: &str = "preflight-client-secret";

async fn sim(legacy: bool) -> mpas_sim::SimHandle {
    mpas_sim::start(mpas_sim::SimConfig {
        realm: "demo".into(),
        client_id: "authtrail".into(),
        client_secret: mpas_sim::Secret::new(SECRET),
        history: 20,
        legacy,
        ..mpas_sim::SimConfig::default()
    })
    .await
    .unwrap()
}

fn target(sim: &mpas_sim::SimHandle, secret: &str) -> MpasTarget {
    MpasTarget {
        base_url: sim.base_url(),
        realm: "demo".into(),
        credentials: Credentials::ClientCredentials {
            client_id: "authtrail".into(),
            client_secret: Secret::new(secret),
        },
        ca_bundle_pem: None,
        ca_bundle_only: false,
    }
}

fn statuses(checks: &[Check]) -> Vec<(&str, Status)> {
    checks.iter().map(|c| (c.name.as_str(), c.status)).collect()
}

#[tokio::test]
async fn a_modern_server_with_good_credentials_passes_every_mpas_check() {
    let sim = sim(false).await;
    let checks = check_mpas(&target(&sim, SECRET)).await;
    assert_eq!(
        statuses(&checks),
        MPAS_CHECKS
            .iter()
            .map(|n| (*n, Status::Ok))
            .collect::<Vec<_>>(),
        "{checks:#?}"
    );
    assert!(
        checks[4].detail.contains("26.2 or later"),
        "{:?}",
        checks[4]
    );
}

#[tokio::test]
async fn a_legacy_server_is_named_as_such_and_its_events_are_still_read() {
    let sim = sim(true).await;
    let checks = check_mpas(&target(&sim, SECRET)).await;
    assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:#?}");
    assert!(
        checks[4].detail.contains("before Keycloak 26.2"),
        "{:?}",
        checks[4]
    );
}

#[tokio::test]
async fn a_wrong_secret_fails_the_token_check_without_showing_the_secret() {
    let sim = sim(false).await;
    let wrong = "wrong-secret-value-1234";
    let checks = check_mpas(&target(&sim, wrong)).await;
    assert_eq!(
        statuses(&checks),
        vec![
            ("mpas.reachable", Status::Ok),
            ("mpas.token", Status::Failed),
            ("mpas.events", Status::Skipped),
            ("mpas.admin-events", Status::Skipped),
            ("mpas.api-generation", Status::Skipped),
        ]
    );
    assert!(checks[1].detail.contains("401"), "{:?}", checks[1]);
    let text = serde_json::to_string(&checks).unwrap();
    assert!(!text.contains(wrong) && !text.contains(SECRET), "{text}");
}

#[tokio::test]
async fn an_unreachable_server_fails_reachability_and_skips_the_rest() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = MpasTarget {
        base_url: format!("http://127.0.0.1:{port}"),
        realm: "demo".into(),
        credentials: Credentials::ClientCredentials {
            client_id: "authtrail".into(),
            client_secret: Secret::new(SECRET),
        },
        ca_bundle_pem: None,
        ca_bundle_only: false,
    };
    let checks = check_mpas(&t).await;
    assert_eq!(checks[0].status, Status::Failed);
    assert!(
        checks[0].detail.contains("not reachable"),
        "{:?}",
        checks[0]
    );
    assert!(checks[1..].iter().all(|c| c.status == Status::Skipped));
}
