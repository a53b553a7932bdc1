//! The demo path, short: the whole pipeline from the simulator to the archive and four SIEM
//! receivers, with MPAS faults and a SIEM outage, ends with a complete accounting: every event
//! once in every receiver, also when the outage outlasts the run (the forwarder's spool and its
//! redrive schedule).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use authtrail_demo::{DemoOptions, run};
use authtrail_harness::ScratchDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_demo_with_faults_and_a_siem_outage_accounts_for_every_event() {
    let dir = ScratchDir::new("demo").unwrap();
    let outcome = run(DemoOptions {
        duration: Duration::from_secs(20),
        rate: 40.0,
        fault_rate: 0.1,
        siem_outage: Some(Duration::from_secs(4)),
        producer_every: Duration::from_secs(2),
        archiver_window: Duration::from_secs(5),
        out_dir: dir.path().to_path_buf(),
        progress: true,
        ..DemoOptions::default()
    })
    .await
    .unwrap();
    assert!(
        outcome.made > 300,
        "the simulator made only {} events",
        outcome.made
    );
    assert!(outcome.report.complete, "{}", outcome.report.render(40));
    assert_eq!(outcome.report.expected, outcome.made);
    let archive = &outcome.report.sources["archive"];
    assert_eq!(archive.distinct, outcome.made);
    assert_eq!(archive.records as usize, outcome.made);
    for siem in ["splunk", "elastic", "webhook", "syslog"] {
        assert!(
            outcome.report.sources.contains_key(siem),
            "no {siem} in the report"
        );
    }
    assert!(dir.path().join("report.json").is_file());
    assert!(dir.path().join("ledger.jsonl").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_with_a_siem_outage_longer_than_the_run_ends_complete_once_the_receiver_returns() {
    let dir = ScratchDir::new("demo-long-outage").unwrap();
    // Down from a third into the run until well after the traffic stops: longer than every
    // retry budget of the run.
    let outcome = run(DemoOptions {
        duration: Duration::from_secs(15),
        rate: 30.0,
        fault_rate: 0.0,
        siem_outage: Some(Duration::from_secs(25)),
        producer_every: Duration::from_secs(2),
        archiver_window: Duration::from_secs(5),
        redrive_every: Duration::from_secs(2),
        out_dir: dir.path().to_path_buf(),
        progress: true,
        ..DemoOptions::default()
    })
    .await
    .unwrap();
    assert!(outcome.report.complete, "{}", outcome.report.render(40));
    for siem in ["splunk", "elastic", "webhook", "syslog"] {
        let s = &outcome.report.sources[siem];
        assert_eq!(
            (s.distinct, s.duplicated, s.dead_lettered),
            (outcome.made, 0, 0),
            "{siem}"
        );
    }
    assert_eq!(outcome.forwarder.total.records_discarded, 0);
}
