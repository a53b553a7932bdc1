//! Throughput of the simulator's events endpoint over loopback.
//!
//! `cargo bench -p mpas-sim` (or `cargo run --release --bench serve -p mpas-sim`): builds a
//! 100,000-event history, then pulls it page by page (`direction=asc`, offset paging) with
//! pages of 100 and 1000 events, and prints events/s and mean time per page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use mpas_sim::{SimConfig, start};

#[tokio::main]
async fn main() {
    const HISTORY: u64 = 100_000;
    let t0 = Instant::now();
    let sim = start(SimConfig {
        history: HISTORY,
        rate: 1000.0,
        history_end_ms: Some(1_700_000_000_000),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    println!(
        "history of {HISTORY} events generated in {:?}",
        t0.elapsed()
    );
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(sim.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "authtrail"),
            ("client_secret", "authtrail-secret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let stats = sim.stats();
    let total = stats.visible_user_events;
    for page in [100usize, 1000] {
        let started = Instant::now();
        let mut got = 0u64;
        let mut pages = 0u64;
        loop {
            let body = http
                .get(sim.events_url())
                .bearer_auth(&token)
                .query(&[
                    ("direction", "asc".to_owned()),
                    ("first", got.to_string()),
                    ("max", page.to_string()),
                ])
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let events: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            pages += 1;
            got += events.len() as u64;
            if events.len() < page {
                break;
            }
        }
        assert_eq!(got, total);
        let secs = started.elapsed().as_secs_f64();
        println!(
            "max={page}: {got} user events in {pages} pages, {:.0} events/s, {:.3} ms/page (client parse included)",
            got as f64 / secs,
            secs * 1000.0 / pages as f64
        );
    }
    let started = Instant::now();
    let body = http
        .get(format!("{}/sim/ledger", sim.base_url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let lines = body.iter().filter(|b| **b == b'\n').count();
    println!(
        "ledger: {lines} lines, {} bytes in {:?}",
        body.len(),
        started.elapsed()
    );
}
