//! Producer benchmark: events per second from the MPAS simulator into a sink, and the
//! producer's peak memory as the backlog grows.
//!
//! 1. **ceiling**: the producer library in-process against the simulator (HTTP, JSON, envelope,
//!    redaction), writing to an in-memory sink and checkpoint store: the producer's own limit.
//! 2. **moto**: the real `authtrail-producer` binary under the local Lambda runner, writing to
//!    moto's Kinesis with the checkpoint in moto's S3; peak RSS (`VmHWM`) of the function
//!    process, for a 10k and a 50k backlog (a fresh process each).
//! 3. **moto ceiling**: moto's PutRecords alone (SDK client, 500 records of 600 bytes per call,
//!    sequential and 4 calls in flight) for the same record counts, printed next to the
//!    producer's figure with the producer/moto ratio.
//!
//! `cargo bench -p authtrail-producer --bench producer` (also run by `make bench`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use authtrail_core::redact::{RedactionMode, Redactor};
use authtrail_harness::{Emulator, bin_path};
use authtrail_producer::checkpoint::MemoryCheckpointStore;
use authtrail_producer::config::{ApiModeSetting, Credentials, StartFrom};
use authtrail_producer::mpas::{ClientOptions, HttpEventSource};
use authtrail_producer::pull::{Producer, PullSettings, now_ms};
use authtrail_producer::sink::MemorySink;
use authtrail_runner::{FunctionConfig, LambdaFunction, Outcome, invoke_scheduled};
use serde_json::Value;

fn sim_config(history: u64) -> mpas_sim::SimConfig {
    let mut cfg = mpas_sim::SimConfig {
        history,
        rate: 2000.0,
        live: false,
        ..mpas_sim::SimConfig::default()
    };
    cfg.traffic.tie_fraction = 0.05;
    cfg
}

fn redactors() -> (Redactor, Redactor) {
    (
        Redactor::new(
            &["/event/ipAddress".into(), "/event/details/username".into()],
            RedactionMode::Mask,
        )
        .unwrap(),
        Redactor::new(
            &[
                "/event/authDetails/ipAddress".into(),
                "/event/representation".into(),
            ],
            RedactionMode::Mask,
        )
        .unwrap(),
    )
}

async fn ceiling(history: u64) -> (u64, f64) {
    let sim = mpas_sim::start(sim_config(history)).await.unwrap();
    let source = HttpEventSource::new(
        &sim.base_url(),
        "demo",
        Credentials::ClientCredentials {
            client_id: "authtrail".into(),
            client_secret: authtrail_core::secret::Secret::new("authtrail-secret"),
        },
        &ClientOptions::new(Duration::from_secs(10), 3),
    )
    .unwrap();
    let (ru, ra) = redactors();
    let settings = PullSettings {
        user_events: true,
        admin_events: true,
        page_size: 1000,
        settle_window: Duration::from_secs(15),
        query_lag: Duration::from_millis(500),
        start_from: StartFrom::Oldest,
        api_mode: ApiModeSetting::Auto,
        deadline_reserve: Duration::from_secs(1),
        sink_max_attempts: 10,
        sink_base_backoff: Duration::from_millis(10),
    };
    let p = Producer::new(
        settings,
        source,
        MemorySink::default(),
        MemoryCheckpointStore::default(),
        ru,
        ra,
    );
    let started = Instant::now();
    let s = p.run(now_ms() + 600_000).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    (s.put, s.put as f64 / secs)
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

async fn through_moto(em: &Emulator, history: u64, run: usize) -> (u64, f64, Option<u64>) {
    let sim = mpas_sim::start(sim_config(history)).await.unwrap();
    let stream = format!("bench-{run}");
    em.create_stream(&stream, 4).await.unwrap();
    let bucket = format!("bench-ckpt-{run}");
    em.create_bucket(&bucket).await.unwrap();
    let mut env = em.env();
    for (k, v) in [
        ("MPAS_BASE_URL", sim.base_url()),
        ("MPAS_REALM", "demo".into()),
        ("MPAS_CLIENT_ID", "authtrail".into()),
        ("MPAS_CLIENT_SECRET", "authtrail-secret".into()),
        ("KINESIS_STREAM_NAME", stream.clone()),
        ("CHECKPOINT_BUCKET", bucket.clone()),
        ("AWS_LAMBDA_LOG_LEVEL", "warn".into()),
    ] {
        env.push((k.to_string(), v));
    }
    let mut cfg = FunctionConfig::new("producer-bench", bin_path("authtrail-producer").unwrap())
        .with_env(env)
        .with_timeout(Duration::from_secs(600));
    cfg.echo_logs = false;
    cfg.memory_mb = 256;
    let f = LambdaFunction::start(cfg).await.unwrap();
    let inv = invoke_scheduled(&f, "bench").await.unwrap();
    let summary: Value = match &inv.outcome {
        Outcome::Response(_) => inv.response_json().unwrap(),
        other => panic!("bench run failed: {other:?}\n{}", f.logs()),
    };
    let peak = match f.pid().await {
        Some(pid) => vm_hwm_kib(pid),
        None => None,
    };
    let put = summary["put"].as_u64().unwrap_or(0);
    (put, put as f64 / inv.duration.as_secs_f64(), peak)
}

/// moto's own PutRecords ceiling: `total` records of ~600 bytes in calls of 500 into a fresh
/// stream of `shards` shards, with `in_flight` calls at a time. Returns records/s overall, for
/// the first 10k and for the last 10k records (moto's per-shard cost grows with the shard).
async fn moto_ceiling(
    em: &Emulator,
    name: &str,
    shards: i32,
    total: usize,
    in_flight: usize,
) -> (f64, f64, f64) {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    em.create_stream(name, shards).await.unwrap();
    let client = em.kinesis().await;
    let payload = vec![b'x'; 600];
    let calls = total / 500;
    let window = 10_000 / 500;
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(in_flight));
    let done = std::sync::Arc::new(std::sync::Mutex::new(Vec::with_capacity(calls)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..calls {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let mut req = client.put_records().stream_name(name);
        for i in 0..500 {
            req = req.records(
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(payload.clone()))
                    .partition_key(format!("{c:016x}{i:016x}"))
                    .build()
                    .unwrap(),
            );
        }
        let done = done.clone();
        tasks.spawn(async move {
            let out = req.send().await.unwrap();
            assert_eq!(out.failed_record_count(), Some(0));
            done.lock().unwrap().push(started.elapsed().as_secs_f64());
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut t = done.lock().unwrap().clone();
    t.sort_by(f64::total_cmp);
    let overall = total as f64 / t[calls - 1];
    let first = 10_000.0 / t[window - 1];
    let last = if calls > window {
        10_000.0 / (t[calls - 1] - t[calls - 1 - window])
    } else {
        first
    };
    (overall, first, last)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("producer benchmark (events from the MPAS simulator, envelope + default redaction)");
        for history in [10_000u64, 50_000] {
            let (put, eps) = ceiling(history).await;
            println!(
                "  ceiling  backlog {history:>6}: {put} events, {eps:>9.0} events/s (in-memory sink and checkpoint)"
            );
        }
        let em = match Emulator::start().await {
            Ok(em) => em,
            Err(e) => {
                println!("  moto: skipped ({e}); run `make venv`");
                return;
            }
        };
        // moto's own ceiling: PutRecords alone into a fresh stream with the same shard count,
        // for the same number of records as each backlog (moto's cost per record grows with the
        // records already in the shard, so the ceiling depends on the backlog).
        let mut moto = Vec::new();
        for (history, in_flight) in [(10_000usize, 1usize), (50_000, 1), (50_000, 4)] {
            let (all, first, last) = moto_ceiling(
                &em,
                &format!("ceiling-{history}-{in_flight}"),
                4,
                history,
                in_flight,
            )
            .await;
            println!(
                "  moto ceiling (PutRecords alone, {history} x 600 B, 4 shards, {in_flight} in flight): {all:>6.0} rec/s overall, {first:>6.0} rec/s first 10k, {last:>6.0} rec/s last 10k"
            );
            if in_flight == 1 {
                moto.push((history as u64, all));
            }
        }
        for (i, history) in [10_000u64, 50_000].into_iter().enumerate() {
            match bin_path("authtrail-producer") {
                Ok(_) => {
                    let (put, eps, peak) = through_moto(&em, history, i).await;
                    let peak = peak.map_or("n/a".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
                    let ceiling = moto
                        .iter()
                        .find(|(h, _)| *h == history)
                        .map_or(f64::NAN, |(_, c)| *c);
                    println!(
                        "  moto     backlog {history:>6}: {put} events, {eps:>9.0} events/s into Kinesis (real binary), peak RSS {peak}; moto's ceiling {ceiling:.0} rec/s, producer/moto {:.2}",
                        eps / ceiling
                    );
                }
                Err(e) => println!("  moto: skipped ({e})"),
            }
        }
        if moto.iter().any(|(_, c)| *c < 20_000.0) {
            println!(
                "  note: moto's own PutRecords ceiling is below the 20,000 events/s target (one Python process), so the figure into moto measures moto; the producer's own limit is the in-memory line"
            );
        }
    });
}
