//! The chaos run, small: 20,000 events over a minute through the whole pipeline on the
//! emulator with every fault kind of the schedule (MPAS faults and expiring tokens, producer
//! SIGKILLs at the three kill points, S3 write faults, Kinesis partial failures, two receivers
//! down, a syslog collector that stops reading, a foreign producer with malformed records), and
//! the accounting's exit criteria.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use authtrail_chaos::{ChaosOptions, Counts, run};
use authtrail_harness::ScratchDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn small_chaos_run_loses_nothing_and_repeats_nothing_in_stream_archive_or_a_receiver_that_stayed_up()
 {
    let dir = ScratchDir::new("chaos").unwrap();
    let outcome = run(ChaosOptions {
        events: 20_000,
        duration: Duration::from_secs(60),
        seed: 19,
        counts: Counts {
            kills: 3,
            token_expiries: 3,
        },
        out_dir: dir.path().to_path_buf(),
        ..ChaosOptions::default()
    })
    .await
    .unwrap();
    let v = &outcome.verdict;
    assert!(v.pass, "{:#?}\n{}", v.failures, v.lines.join("\n"));
    assert!(outcome.made > 15_000, "made only {}", outcome.made);
    let places = v.json["places"].as_object().unwrap();
    for (name, p) in places {
        assert_eq!(p["lost"], 0, "{name}");
    }
    // Nothing twice in the stream (kills between accepted and saved are settled by reading the
    // stream back), in the archive, or in the index that was up the whole time.
    for name in ["stream", "archive", "elastic"] {
        assert_eq!(places[name]["extraCopies"], 0, "{name}");
    }
    let malformed = &v.json["malformed"];
    assert!(malformed["written"].as_u64().unwrap() > 0);
    assert_eq!(malformed["notDeadLettered"], 0);
    assert_eq!(malformed["notInArchiveErrors"], 0);
    assert_eq!(v.json["spoolLeft"], 0);
    for kind in [
        "token-expiry",
        "receiver-down-splunk",
        "receiver-down-webhook",
        "s3-write-faults",
        "syslog-stops-reading",
        "kinesis-put-records-entries-failed",
    ] {
        assert!(
            outcome.faults.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} injected: {:?}",
            outcome.faults
        );
    }
    let kills: u64 = outcome
        .faults
        .iter()
        .filter(|(k, _)| k.starts_with("producer-sigkill-"))
        .map(|(_, n)| *n)
        .sum();
    assert!(kills >= 2, "{:?}", outcome.faults);
    assert!(dir.path().join("chaos-report.json").is_file());
    // The same seed gives the same schedule.
    assert_eq!(
        outcome.plan,
        authtrail_chaos::plan(
            19,
            Duration::from_secs(60),
            Counts {
                kills: 3,
                token_expiries: 3
            }
        )
    );
}
