//! The chaos run: the whole pipeline of the demo ([`authtrail_demo`]: the emulator, the MPAS
//! simulator, the three real function binaries through the event-source runner, the local
//! receivers), with faults injected on a schedule drawn from a seed, and an accounting per place
//! at the end.
//!
//! Faults: MPAS request faults (500, 429, slow, truncated) at the simulator's rates; tokens
//! expiring mid-pull; the producer killed with SIGKILL right after MPAS served a page, after
//! Kinesis accepted a PutRecords call (before the answer), and as it writes its checkpoint;
//! S3 write faults for the archiver for a stretch; Kinesis PutRecords partial failures; the
//! Splunk endpoint down for a quarter of the run, the webhook for half of it (far beyond the
//! forwarder's in-invocation retry budget: spooled and redriven); the syslog collector that
//! stops reading; a foreign producer writing Foxpass-style records and 1 % malformed records.
//!
//! Module map: `schedule` (the seeded plan), `proxy` (HTTP proxy in front of the emulator for
//! the producer and the archiver), `stall` (the syslog collector that stops reading),
//! `foreign` (the foreign producer), `driver` (the demo hooks that apply it all), `account`
//! (reading every place), `verdict` (the exit criteria), `log` (the fault log).

mod account;
mod driver;
mod error;
mod foreign;
mod log;
mod proxy;
mod schedule;
mod stall;
mod verdict;

pub use error::ChaosError;
pub use schedule::{Counts, FaultKind, KillPoint, PlannedFault, plan};
pub use verdict::Verdict;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authtrail_demo::DemoOptions;
use serde_json::json;

use crate::driver::Driver;
use crate::foreign::Rates;
use crate::log::FaultLog;

/// What the chaos run does.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// Events made at the identity provider (spread over `duration`).
    pub events: u64,
    /// How long the traffic runs; every scheduled fault is a fraction of it.
    pub duration: Duration,
    /// Seed of the traffic and of the fault schedule.
    pub seed: u64,
    /// Fraction of MPAS requests that fail (500, 429, slow, truncated: 40/30/20/10).
    pub mpas_fault_rate: f64,
    /// Repeated faults.
    pub counts: Counts,
    /// Foreign (Foxpass-style) records per MPAS event.
    pub foreign_fraction: f64,
    /// Malformed records per record in the stream.
    pub malformed_fraction: f64,
    /// Fraction of the producer's PutRecords calls failed partially, and of their entries.
    pub partial_failures: (f64, f64),
    /// The producer's timeout under the runner (AWS: 120 s; shorter so a killed run's lease
    /// expires soon).
    pub producer_timeout: Duration,
    /// Schedules of the demo (sped up).
    pub producer_every: Duration,
    pub redrive_every: Duration,
    pub archiver_window: Duration,
    /// Where the demo's files and `chaos-report.json` go.
    pub out_dir: PathBuf,
    /// Print progress and fault lines.
    pub progress: bool,
}

impl Default for ChaosOptions {
    fn default() -> Self {
        Self {
            events: 1_000_000,
            duration: Duration::from_secs(1500),
            seed: 42,
            mpas_fault_rate: 0.2,
            counts: Counts {
                kills: 10,
                token_expiries: 10,
            },
            foreign_fraction: 0.05,
            malformed_fraction: 0.01,
            partial_failures: (0.2, 0.1),
            producer_timeout: Duration::from_secs(15),
            producer_every: Duration::from_secs(3),
            redrive_every: Duration::from_secs(5),
            archiver_window: Duration::from_secs(10),
            out_dir: authtrail_harness_out(),
            progress: true,
        }
    }
}

fn authtrail_harness_out() -> PathBuf {
    PathBuf::from("chaos-out")
}

/// The result of a chaos run.
#[derive(Debug)]
pub struct ChaosOutcome {
    /// The verdict against the exit criteria.
    pub verdict: Verdict,
    /// Events made at the identity provider.
    pub made: usize,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// The fault schedule as planned.
    pub plan: Vec<PlannedFault>,
    /// The summary line.
    pub summary: String,
    /// Seconds of the whole run.
    pub elapsed_secs: f64,
}

/// Runs the chaos run end to end.
pub async fn run(opts: ChaosOptions) -> Result<ChaosOutcome, ChaosError> {
    let started = Instant::now();
    let log = Arc::new(FaultLog::new(opts.progress));
    let plan = schedule::plan(opts.seed, opts.duration, opts.counts);
    if opts.progress {
        println!("fault schedule (seed {}):", opts.seed);
        for f in &plan {
            println!("  {f}");
        }
    }
    let rate = opts.events as f64 / opts.duration.as_secs_f64().max(1.0);
    let foreign = rate * opts.foreign_fraction;
    let driver = Arc::new(Driver {
        plan: plan.clone(),
        log: log.clone(),
        producer_proxy: proxy::AwsProxy::start(log.clone(), opts.seed).await?,
        archiver_proxy: proxy::AwsProxy::start(log.clone(), opts.seed ^ 1).await?,
        stall: stall::StallProxy::start().await?,
        producer_timeout: opts.producer_timeout,
        foreign_rates: Rates {
            foreign,
            malformed: (rate + foreign) * opts.malformed_fraction,
        },
        partial: opts.partial_failures,
        seed: opts.seed,
        written: Arc::new(Mutex::new(Default::default())),
        places: Arc::new(Mutex::new(None)),
    });
    let outcome = authtrail_demo::run(DemoOptions {
        duration: opts.duration,
        rate,
        fault_rate: opts.mpas_fault_rate,
        siem_outage: None,
        redrive_every: opts.redrive_every,
        producer_every: opts.producer_every,
        archiver_window: opts.archiver_window,
        out_dir: opts.out_dir.clone(),
        progress: opts.progress,
        keep_running: false,
        seed: opts.seed,
        hooks: Some(driver.clone()),
        ..DemoOptions::default()
    })
    .await;
    // The demo's steps after the drain (its reconciliation) are not part of the chaos criteria:
    // when one fails after every place was read, the verdict still stands, and the error is
    // reported with it.
    let (made_by_demo, demo_error) = match outcome {
        Ok(o) => (Some(o.made), None),
        Err(e) => (None, Some(e)),
    };
    let places_read = driver.places.lock().map(|p| p.is_some()).unwrap_or(false);
    if let (Some(e), false) = (&demo_error, places_read) {
        return Err(ChaosError::Read {
            place: "the pipeline".into(),
            detail: e.to_string(),
        });
    }
    let places = driver
        .places
        .lock()
        .ok()
        .and_then(|mut p| p.take())
        .ok_or(ChaosError::NoAccounting)?
        .map_err(|detail| ChaosError::Read {
            place: "the places".into(),
            detail,
        })?;
    let written = driver.written.lock().map(|w| w.clone()).unwrap_or_default();
    let faults = log.counts();
    let in_window = faults
        .get("producer-sigkill-mid-put-records")
        .copied()
        .unwrap_or(0)
        + faults
            .get("producer-sigkill-mid-checkpoint")
            .copied()
            .unwrap_or(0);
    let verdict = verdict::judge(
        &places,
        &written,
        verdict::RunFacts {
            kills_in_window: in_window,
        },
    );
    let made = made_by_demo.unwrap_or_else(|| places.expected.distinct());
    let demo_note = demo_error.map(|e| format!("the demo's steps after the drain failed: {e}"));
    let elapsed = started.elapsed().as_secs_f64();
    let delivered = made + written.foreign.len() + written.malformed.len();
    let summary = summary_line(&verdict, made, &written, &faults, delivered, opts.duration);
    let report = json!({
        "seed": opts.seed, "events": made, "demoNote": demo_note, "durationSecs": opts.duration.as_secs(),
        "elapsedSecs": elapsed, "verdict": verdict.json, "faults": faults,
        "faultLog": log.lines(), "plan": plan.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "summary": summary,
    });
    let path = opts.out_dir.join("chaos-report.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    )
    .map_err(|source| ChaosError::Write {
        path: path.display().to_string(),
        source,
    })?;
    if opts.progress {
        println!("\nchaos accounting per place:");
        for l in &verdict.lines {
            println!("{l}");
        }
        println!("  faults injected by kind: {faults:?}");
        for f in &verdict.failures {
            println!("  FAILED: {f}");
        }
        if let Some(n) = &demo_note {
            println!("  note: {n}");
        }
        println!("{summary}");
    }
    Ok(ChaosOutcome {
        verdict,
        made,
        faults,
        plan,
        summary,
        elapsed_secs: elapsed,
    })
}

fn summary_line(
    v: &Verdict,
    made: usize,
    written: &foreign::Written,
    faults: &BTreeMap<String, u64>,
    records: usize,
    traffic: Duration,
) -> String {
    let places = v.json["places"].as_object().cloned().unwrap_or_default();
    let lost: u64 = places.values().filter_map(|p| p["lost"].as_u64()).sum();
    let dups: Vec<String> = places
        .iter()
        .map(|(k, p)| format!("{k} {}", p["extraCopies"].as_u64().unwrap_or(0)))
        .collect();
    format!(
        "chaos {}: {made} MPAS events + {} foreign + {} malformed; lost {lost}; extra copies: {}; dead-lettered {} (malformed, with reason); faults injected {}; {:.0} records/s over {} s of traffic",
        if v.pass { "PASSED" } else { "FAILED" },
        written.foreign.len(),
        written.malformed.len(),
        dups.join(", "),
        v.json["deadLetters"]["malformed"].as_u64().unwrap_or(0),
        faults.values().sum::<u64>(),
        records as f64 / traffic.as_secs_f64().max(1.0),
        traffic.as_secs(),
    )
}
