//! Reconciliation end to end: the whole local pipeline (the MPAS simulator with faults, the
//! producer, the archiver and the forwarder as real binaries under the event-source runner on
//! moto, real receivers, a SIEM outage the spool rides out), the forwarder's output shipped to
//! moto's CloudWatch Logs as Lambda ships it, and the real reconciler binary from its stack
//! (`cloudformation/reconciler.yaml`). A run that loses nothing reconciles to 0 unaccounted at
//! every hop of every window; after a few events are deleted from one archive object, exactly
//! those are reported, in their windows and at `stream>archive` only, in the reconciliation
//! objects, in the reconciler's `Unaccounted` metric lines and in `authtrail-check reconcile`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use authtrail_demo::{DemoOptions, HopMetric, run};
use authtrail_harness::{ScratchDir, bin_path};

const EMITTERS: [&str; 4] = ["splunk", "elastic", "webhook", "syslog"];

/// `Unaccounted` per window start of hop `hop` in the reconciler's metric lines.
fn metric(metrics: &[HopMetric], hop: &str) -> BTreeMap<String, Option<u64>> {
    metrics
        .iter()
        .filter(|m| m.hop == hop)
        .map(|m| (m.window_start.clone(), m.unaccounted))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_that_loses_nothing_reconciles_to_zero_and_events_deleted_from_the_archive_are_reported_per_window_and_hop()
 {
    let dir = ScratchDir::new("reconcile").unwrap();
    let outcome = run(DemoOptions {
        duration: Duration::from_secs(20),
        rate: 40.0,
        fault_rate: 0.05,
        siem_outage: Some(Duration::from_secs(4)),
        producer_every: Duration::from_secs(2),
        archiver_window: Duration::from_secs(5),
        reconcile_window: Duration::from_secs(60),
        reconcile_every: Duration::from_secs(10),
        tamper_archive: 5,
        out_dir: dir.path().to_path_buf(),
        progress: true,
        ..DemoOptions::default()
    })
    .await
    .unwrap();
    assert!(outcome.report.complete, "{}", outcome.report.render(40));

    // 1. A receiver down, then redriven: nothing lost, every window reconciles to 0.
    let rec = outcome
        .reconciled
        .as_ref()
        .expect("the reconciliation was made");
    let clean = &rec.report;
    assert!(clean.complete, "{}", clean.render());
    assert!(clean.missing.is_empty());
    let mut put = 0;
    for w in &clean.windows {
        let hops: Vec<&str> = w.hops.iter().map(|h| h.hop.as_str()).collect();
        for want in ["producer>stream", "stream>archive", "stream>forwarder"] {
            assert!(
                hops.contains(&want),
                "{}: no {want} in {hops:?}",
                w.window_start
            );
        }
        for e in EMITTERS {
            let h = w
                .hops
                .iter()
                .find(|h| h.hop == format!("forwarder>emitter:{e}"))
                .unwrap_or_else(|| panic!("{}: no hop for {e}", w.window_start));
            let o = h.outcomes.as_ref().unwrap();
            // Every record delivered or (during the outage) spooled, none dead-lettered.
            assert_eq!(o.dead_lettered, 0, "{e}");
            assert_eq!(
                o.delivered + o.spooled + o.filtered,
                h.expected.as_ref().unwrap().count,
                "{e}"
            );
        }
        assert!(
            w.hops
                .iter()
                .all(|h| h.unaccounted == 0 && h.expected == h.observed)
        );
        put += w.producer.put.unwrap();
    }
    assert_eq!(
        put as usize, outcome.made,
        "the producer's tallies hold every event once"
    );
    let spooled: u64 = clean
        .windows
        .iter()
        .flat_map(|w| &w.hops)
        .filter_map(|h| h.outcomes.as_ref())
        .map(|o| o.spooled)
        .sum();
    assert!(
        spooled > 0,
        "the outage spooled nothing: the fault was not exercised"
    );
    let all = metric(&rec.metrics, "all");
    assert_eq!(all.len(), clean.windows.len());
    assert!(all.values().all(|v| *v == Some(0)), "{all:?}");

    // 2. Events deleted from the archive: exactly those, per window, at stream>archive only.
    let t = rec
        .tampered
        .as_ref()
        .expect("the archive was tampered with");
    assert_eq!(t.deleted.values().sum::<u64>(), 5);
    let report = &t.report;
    assert!(!report.complete);
    assert_eq!(report.unaccounted, 5, "{}", report.render());
    for w in &report.windows {
        let deleted = t.deleted.get(&w.window_start).copied().unwrap_or(0);
        for h in &w.hops {
            let want = if h.hop == "stream>archive" {
                deleted
            } else {
                0
            };
            assert_eq!(h.unaccounted, want, "{} {}: {h:?}", w.window_start, h.hop);
        }
        assert_eq!(w.unaccounted, deleted, "{}", w.window_start);
    }
    let archive_metric = metric(&t.metrics, "stream>archive");
    let all = metric(&t.metrics, "all");
    for w in &report.windows {
        let deleted = t.deleted.get(&w.window_start).copied().unwrap_or(0);
        assert_eq!(
            archive_metric[&w.window_start],
            Some(deleted),
            "{}",
            w.window_start
        );
        assert_eq!(all[&w.window_start], Some(deleted), "{}", w.window_start);
        assert_eq!(
            metric(&t.metrics, "stream>forwarder")[&w.window_start],
            Some(0)
        );
    }

    // 3. The operator's view: authtrail-check reconcile on the reconciler's stack.
    let out = std::process::Command::new(bin_path("authtrail-check").unwrap())
        .args([
            "reconcile",
            "--stack",
            "authtrail-demo-reconciler",
            "--from",
            &rec.from,
            "--to",
            &rec.to,
            "--window-secs",
            &rec.window_secs.to_string(),
        ])
        .envs(outcome.emulator.env())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("5 records unaccounted"), "{text}");
    for (window, n) in &t.deleted {
        let line = text
            .lines()
            .find(|l| l.contains(window.as_str()) && l.contains("stream>archive"))
            .unwrap_or_else(|| panic!("no stream>archive line for {window}: {text}"));
        assert!(line.contains(&format!("{n} records")), "{line}");
    }
}
