//! The whole authtrail pipeline on one machine, every event accounted for.
//!
//! [`run`] starts the AWS emulator, the MPAS simulator (live traffic with late commits, ties and
//! faults), a real rsyslog and the local HTTPS SIEM receiver; creates the pipeline stack on the
//! emulator's CloudFormation from `cloudformation/pipeline.yaml` (the template users deploy);
//! reads the functions' environment back from the stack; runs the three real function binaries
//! through the event-source runner (the producer on a sped-up schedule, the archiver and the
//! forwarder on the stream, the forwarder's spool redrive on a sped-up schedule too); and ends
//! with an accounting of every event at every hop ([`authtrail_check`]).
//!
//! A SIEM outage (`siem_outage`) lasts its full length, past the end of the traffic if it is
//! longer: the forwarder spools what the receiver cannot take, and the demo ends once the
//! receiver is back and the redrive schedule has emptied the spool.
//!
//! The reconciler runs too ([`reconcile`]): its stack from `cloudformation/reconciler.yaml`,
//! the forwarder's output shipped into the emulator's CloudWatch Logs as Lambda would, runs on
//! a sped-up schedule during the traffic and one over every window of the traffic at the end
//! (with `tamper_archive`, again after deleting a few events from the archive).

pub mod reconcile;
mod redrive;

pub use reconcile::{HopMetric, Reconciled, RequestTotals, Tampered};
pub use redrive::{REDRIVE_RULE, drain_spool, spooled_objects};

mod hooks;
pub use hooks::{DemoHooks, HookFuture, RunContext};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authtrail_check::{KeyPolicy, Report, Tally};
use authtrail_harness::{Emulator, bin_path, workspace_root};
use authtrail_runner::{
    FunctionConfig, KinesisEventSource, KinesisSourceConfig, LambdaFunction, OnFailure,
    ScheduleConfig, SourceStats, run_schedule,
};
use serde_json::json;
use siem_receiver::{Endpoint, Receiver, ReceiverOptions, Rsyslog};

/// Errors of the demo: each says which step failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{step}: {detail}")]
    Step { step: &'static str, detail: String },
}

fn step<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> DemoError {
    move |e| DemoError::Step {
        step,
        detail: e.to_string(),
    }
}

/// What the demo does.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How long the identity provider makes traffic.
    pub duration: Duration,
    /// Events per second made at the identity provider.
    pub rate: f64,
    /// Fraction of MPAS API requests that fail (spread over 500, 429, slow and truncated).
    pub fault_rate: f64,
    /// Take the HTTPS SIEM receiver down for this long, one third into the run (it stays down
    /// past the end of the traffic when the outage is longer than the rest of the run).
    pub siem_outage: Option<Duration>,
    /// Redrive schedule of the forwarder's spool (AWS: every minute; sped up here).
    pub redrive_every: Duration,
    /// Producer schedule (AWS: every minute; sped up here).
    pub producer_every: Duration,
    /// Archiver batching window (AWS: 60 s; sped up here).
    pub archiver_window: Duration,
    /// Where the ledger, SIEM samples and the report are written.
    pub out_dir: PathBuf,
    /// Print progress lines.
    pub progress: bool,
    /// Keep everything running after the summary until Ctrl-C.
    pub keep_running: bool,
    pub seed: u64,
    /// Hooks of a run built on the demo (none: the demo as it is).
    pub hooks: Option<Arc<dyn DemoHooks>>,
    /// Window of the reconciliation (AWS: 300 s; shorter here).
    pub reconcile_window: Duration,
    /// Reconciler schedule during the traffic (AWS: every 5 minutes; sped up here).
    pub reconcile_every: Duration,
    /// After the reconciliation, delete this many events from one archive object and
    /// reconcile again (0: do not).
    pub tamper_archive: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(60),
            rate: 100.0,
            fault_rate: 0.05,
            siem_outage: None,
            redrive_every: Duration::from_secs(5),
            producer_every: Duration::from_secs(3),
            archiver_window: Duration::from_secs(10),
            out_dir: workspace_root().join("demo-out"),
            progress: true,
            keep_running: false,
            seed: 42,
            hooks: None,
            reconcile_window: Duration::from_secs(60),
            reconcile_every: Duration::from_secs(15),
            tamper_archive: 0,
        }
    }
}

/// The result: the accounting report and where to look.
#[derive(Debug)]
pub struct DemoOutcome {
    pub report: Report,
    pub archive_url: String,
    pub out_dir: PathBuf,
    pub made: usize,
    pub archiver: SourceStats,
    pub forwarder: SourceStats,
    /// What the reconciler found (`None` when the reconciliation could not be made; the
    /// reason was printed).
    pub reconciled: Option<Reconciled>,
    /// The emulator, still running (the outcome's objects can be read until it is dropped).
    pub emulator: Emulator,
}

const REALM: &str = "demo";
const CLIENT_ID: &str = "authtrail";
const CLIENT_SECRET: &str = "demo-client-secret";
const HEC_TOKEN: &str = "demo-hec-token";
const STACK: &str = "authtrail-demo";
const CODE_BUCKET: &str = "authtrail-demo-code";
/// The smallest valid zip archive (an empty one): the emulator stores the code but never runs
/// it; the real binaries run under the event-source runner.
const EMPTY_ZIP: [u8; 22] = [
    0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn say(opts: &DemoOptions, line: impl AsRef<str>) {
    if opts.progress {
        println!("{}", line.as_ref());
    }
}

/// The forwarder configuration of the demo: every kind of receiver we can run locally.
pub fn forwarder_config(receiver: &Receiver, rsyslog: &Rsyslog) -> serde_json::Value {
    let ca = receiver.ca_path().display().to_string();
    let base = receiver.url();
    json!({
        "emitters": [
            {"name": "splunk", "type": "splunk-hec", "url": format!("{base}/services/collector/event"),
             "token": HEC_TOKEN, "caBundle": ca, "emitTimeoutInSec": 10},
            {"name": "elastic", "type": "elasticsearch", "url": base, "index": "authtrail", "caBundle": ca,
             "emitTimeoutInSec": 10},
            {"name": "webhook", "type": "http", "url": format!("{base}/ingest"), "caBundle": ca,
             "headers": {"X-Source": "authtrail"}, "emitTimeoutInSec": 10},
            {"name": "syslog", "type": "syslog", "protocol": "TLS", "host": "127.0.0.1", "port": rsyslog.tls_port,
             "caBundle": ca, "facility": "authpriv", "connectTimeout": 5000,
             "severityFieldMappings": [{"field": "/event/type", "valueMappings": {"LOGIN_ERROR": "warning", "LOGIN": "informational"}}]}
        ],
        "emitToAllOf": ["syslog"],
        "emitAtLeastOneOf": ["splunk", "elastic", "webhook"],
        // Ride out a blip of a few seconds inside the invocation; anything longer is spooled
        // per emitter (in the dead-letter bucket under SPOOL_PREFIX) and redriven once the
        // receiver answers, so the receivers that stayed up get every record once and the one
        // that went down gets them once after it returns.
        "retry": {"maxAttempts": 4, "initialBackoffMs": 250, "maxBackoffMs": 2000},
        // Time compressed: a warm instance probes a down receiver every 5 s (not 60 s), at
        // most every 30 s while it stays down, so it sees the return within the run.
        "spool": {"redriveBudgetInSec": 20, "probeTimeoutInSec": 2,
                  "probeIntervalInSec": 5, "probeMaxIntervalInSec": 30}
    })
}

/// Runs the demo end to end and returns the accounting.
pub async fn run(opts: DemoOptions) -> Result<DemoOutcome, DemoError> {
    let started = Instant::now();
    std::fs::create_dir_all(&opts.out_dir).map_err(step("creating the output directory"))?;
    let scratch = opts.out_dir.join("run");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(step("creating the run directory"))?;

    // 1. Local stand-ins.
    say(
        &opts,
        "starting the AWS emulator (moto), the MPAS simulator, rsyslog and the HTTPS SIEM receiver ...",
    );
    let emu = Emulator::start()
        .await
        .map_err(step("starting the emulator"))?;
    let sdk = emu.sdk_config().await;
    let sim_cfg = mpas_sim::SimConfig {
        realm: REALM.into(),
        client_id: CLIENT_ID.into(),
        client_secret: mpas_sim::Secret::new(CLIENT_SECRET),
        seed: opts.seed,
        rate: opts.rate,
        live: true,
        traffic: mpas_sim::TrafficConfig {
            late_fraction: 0.05,
            late_max_ms: 3000,
            tie_fraction: 0.05,
            ..mpas_sim::TrafficConfig::default()
        },
        faults: mpas_sim::FaultRates {
            error_500: opts.fault_rate * 0.4,
            too_many_429: opts.fault_rate * 0.3,
            slow: opts.fault_rate * 0.2,
            truncate: opts.fault_rate * 0.1,
            slow_ms: 300,
            retry_after_secs: 1,
            ..mpas_sim::FaultRates::default()
        },
        ..mpas_sim::SimConfig::default()
    };
    let sim = mpas_sim::start(sim_cfg)
        .await
        .map_err(step("starting the MPAS simulator"))?;
    let receiver = Arc::new(
        Receiver::start(
            &scratch,
            ReceiverOptions {
                splunk_token: HEC_TOKEN.into(),
                ..ReceiverOptions::default()
            },
        )
        .await
        .map_err(step("starting the HTTPS SIEM receiver"))?,
    );
    let rsyslog = Arc::new(
        Rsyslog::start(&scratch, receiver.certs())
            .await
            .map_err(step("starting rsyslog"))?,
    );

    // 2. The pipeline stack, from the template users deploy.
    say(
        &opts,
        "creating the pipeline stack from cloudformation/pipeline.yaml on the emulator ...",
    );
    let s3 = emu.s3().await;
    emu.create_bucket(CODE_BUCKET)
        .await
        .map_err(step("creating the code bucket"))?;
    for f in ["archiver", "forwarder", "producer", "reconciler"] {
        s3.put_object()
            .bucket(CODE_BUCKET)
            .key(format!("authtrail/0.1.0/authtrail-{f}.zip"))
            .body(EMPTY_ZIP.to_vec().into())
            .send()
            .await
            .map_err(|e| DemoError::Step {
                step: "uploading code placeholders",
                detail: format!("{e:?}"),
            })?;
    }
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let creds = secrets
        .create_secret()
        .name("authtrail-demo/mpas-credentials")
        .secret_string(json!({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}).to_string())
        .send()
        .await
        .map_err(|e| DemoError::Step {
            step: "creating the MPAS credentials secret",
            detail: format!("{e:?}"),
        })?;
    let creds_arn = creds.arn().unwrap_or_default().to_string();
    let mut fwd_value = forwarder_config(&receiver, &rsyslog);
    if let Some(h) = &opts.hooks {
        fwd_value = h.forwarder_config(fwd_value);
    }
    let fwd_config = fwd_value.to_string();
    let outputs = create_stack(
        &sdk,
        STACK,
        "cloudformation/pipeline.yaml",
        &[
            ("CodeBucket", CODE_BUCKET),
            ("StreamName", "authtrail-demo-events"),
            ("ShardCount", "2"),
            ("BucketName", "authtrail-demo-archive"),
            ("DlqBucketName", "authtrail-demo-dlq"),
            ("CheckpointBucketName", "authtrail-demo-checkpoints"),
            ("MpasBaseUrl", &sim.base_url()),
            ("MpasRealm", REALM),
            ("ExistingCredentialsSecretArn", &creds_arn),
            ("ForwarderConfig", &fwd_config),
        ],
    )
    .await?;
    let out = |k: &str| outputs.get(k).cloned().unwrap_or_default();
    let stream = out("KinesisStreamName");
    let bucket = out("BucketName");
    let dlq_bucket = out("DeadLetterBucketName");
    say(
        &opts,
        format!(
            "stack {STACK}: stream {stream}, archive s3://{bucket}/raw/, dead letters s3://{dlq_bucket}/"
        ),
    );
    // The reconciler's stack, from the pipeline stack's outputs.
    let checkpoint_bucket = out("CheckpointBucketName");
    let checkpoint_key = format!("authtrail/producer/{REALM}/checkpoint.json");
    let forwarder_log_group = format!("/authtrail/{STACK}/forwarder");
    let window_secs = opts.reconcile_window.as_secs().max(60);
    let rparams = reconcile::stack_params(
        CODE_BUCKET,
        &bucket,
        (&checkpoint_bucket, &checkpoint_key),
        &forwarder_log_group,
        window_secs,
    );
    let rparams: Vec<(&str, &str)> = rparams
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let routputs = create_stack(
        &sdk,
        reconcile::RECONCILER_STACK,
        "cloudformation/reconciler.yaml",
        &rparams,
    )
    .await?;
    let rout = |k: &str| routputs.get(k).cloned().unwrap_or_default();
    let (reconcile_bucket, reconcile_prefix) = (rout("ReconcileBucket"), rout("ReconcilePrefix"));

    // 3. The functions, with the environment the stack gave them.
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let producer = start_function_with(
        &lambda,
        &emu,
        &out("ProducerFunctionName"),
        "authtrail-producer",
        &scratch,
        opts.hooks.as_ref(),
    )
    .await?;
    let archiver = start_function_with(
        &lambda,
        &emu,
        &out("ArchiverFunctionName"),
        "authtrail-archiver",
        &scratch,
        opts.hooks.as_ref(),
    )
    .await?;
    let forwarder = start_function_with(
        &lambda,
        &emu,
        &out("ForwarderFunctionName"),
        "authtrail-forwarder",
        &scratch,
        opts.hooks.as_ref(),
    )
    .await?;
    let reconciler = start_function(
        &lambda,
        &emu,
        &rout("ReconcilerFunctionName"),
        "authtrail-reconciler",
        &scratch,
    )
    .await?;

    // Where the stack tells the forwarder to spool (SPOOL_PREFIX in its environment).
    let spool_prefix = lambda
        .get_function_configuration()
        .function_name(out("ForwarderFunctionName"))
        .send()
        .await
        .ok()
        .and_then(|c| c.environment()?.variables()?.get("SPOOL_PREFIX").cloned())
        .unwrap_or_else(|| "spool/".into());

    let archiver_src = KinesisEventSource::new(
        &sdk,
        KinesisSourceConfig {
            batch_size: 10_000,
            max_batching_window: opts.archiver_window,
            report_batch_item_failures: true,
            // As pipeline.yaml sets it: the archive retries until the records would leave the
            // stream, never skips a batch after a few tries.
            max_retry_attempts: 10_000,
            max_record_age: Some(Duration::from_secs(86_400)),
            bisect_batch_on_function_error: true,
            on_failure: Some(OnFailure::S3 {
                bucket: dlq_bucket.clone(),
                prefix: "esm-failures/archiver/".into(),
            }),
            ..KinesisSourceConfig::new(stream.clone())
        },
        archiver.clone(),
    )
    .await
    .map_err(step("archiver event source"))?;
    let forwarder_src = KinesisEventSource::new(
        &sdk,
        KinesisSourceConfig {
            batch_size: 1000,
            max_batching_window: Duration::from_secs(1),
            report_batch_item_failures: true,
            // As pipeline.yaml sets it: retry until the records would leave the stream, then
            // the whole batch into the dead-letter bucket (aws/lambda/...).
            max_retry_attempts: 10_000,
            max_record_age: Some(Duration::from_secs(86_400)),
            bisect_batch_on_function_error: true,
            on_failure: Some(OnFailure::S3 {
                bucket: dlq_bucket.clone(),
                prefix: String::new(),
            }),
            ..KinesisSourceConfig::new(stream.clone())
        },
        forwarder.clone(),
    )
    .await
    .map_err(step("forwarder event source"))?;

    // 4. Run: traffic for `duration`, the producer on its schedule, consumers on the stream.
    say(
        &opts,
        format!(
            "running for {} s: {} events/s at the IdP, {:.0}% MPAS faults, producer every {} s{}",
            opts.duration.as_secs(),
            opts.rate,
            opts.fault_rate * 100.0,
            opts.producer_every.as_secs_f64(),
            opts.siem_outage
                .map(|d| format!(", SIEM receiver down for {} s", d.as_secs()))
                .unwrap_or_default()
        ),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let sched = ScheduleConfig::every("authtrail-demo-producer", opts.producer_every);
    let producer_task = {
        let producer = producer.clone();
        let rx = stop_rx.clone();
        tokio::spawn(async move { run_schedule(&producer, &sched, stopped(rx)).await })
    };
    let archiver_task = {
        let rx = stop_rx.clone();
        let src = Arc::new(archiver_src);
        let s = src.clone();
        (
            src,
            tokio::spawn(async move { s.run_until(stopped(rx)).await }),
        )
    };
    let forwarder_task = {
        let rx = stop_rx.clone();
        let src = Arc::new(forwarder_src);
        let s = src.clone();
        (
            src,
            tokio::spawn(async move { s.run_until(stopped(rx)).await }),
        )
    };

    let redrive_task = {
        let forwarder = forwarder.clone();
        let rx = stop_rx.clone();
        let sched = ScheduleConfig {
            fire_immediately: false,
            ..ScheduleConfig::every(REDRIVE_RULE, opts.redrive_every)
        };
        tokio::spawn(async move { run_schedule(&forwarder, &sched, stopped(rx)).await })
    };
    // Lambda ships the forwarder's output to its log group; the reconciler reads its tally
    // lines there.
    let (ship_stop, ship_rx) = tokio::sync::watch::channel(false);
    let shipper = tokio::spawn(reconcile::ship_logs(
        aws_sdk_cloudwatchlogs::Client::new(&sdk),
        forwarder.clone(),
        forwarder_log_group.clone(),
        ship_rx,
    ));
    let reconcile_task = tokio::spawn(reconcile::run_scheduled(
        reconciler.clone(),
        opts.reconcile_every,
        stop_rx.clone(),
    ));
    let ctx = RunContext {
        sdk: sdk.clone(),
        sim: sim.sim().clone(),
        receiver: receiver.clone(),
        rsyslog: rsyslog.clone(),
        producer: producer.clone(),
        archiver: archiver.clone(),
        forwarder: forwarder.clone(),
        stream: stream.clone(),
        archive_bucket: bucket.clone(),
        dlq_bucket: dlq_bucket.clone(),
        spool_prefix: spool_prefix.clone(),
        stop: stop_rx.clone(),
    };
    let hook_task = opts
        .hooks
        .as_ref()
        .map(|h| tokio::spawn(h.during_run(ctx.clone())));
    let buckets = Buckets {
        s3: &s3,
        archive: &bucket,
        dlq: &dlq_bucket,
        spool_prefix: &spool_prefix,
    };

    let run_start = Instant::now();
    let mut outage_done = opts.siem_outage.is_none();
    let mut outage_end: Option<Instant> = None;
    while run_start.elapsed() < opts.duration {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if !outage_done && outage_end.is_none() && run_start.elapsed() >= opts.duration / 3 {
            receiver.go_down().await;
            outage_end = opts.siem_outage.map(|d| Instant::now() + d);
            say(&opts, "  -- SIEM receiver is down --");
        }
        if let Some(end) = outage_end
            && Instant::now() >= end
        {
            receiver
                .come_back()
                .await
                .map_err(step("bringing the SIEM receiver back"))?;
            outage_end = None;
            outage_done = true;
            say(&opts, "  -- SIEM receiver is back --");
        }
        progress(&opts, run_start, &sim, &buckets, &receiver, &rsyslog).await;
    }

    // 5. Stop the traffic, let late commits land, let the producer catch up, drain.
    say(
        &opts,
        "traffic stopped; letting late commits land and the pipeline drain ...",
    );
    sim.freeze_clock();
    sim.stop_traffic()
        .map_err(step("stopping the simulator's traffic"))?;
    sim.commit_pending();
    let made = sim.ledger().len();
    // An outage longer than the run lasts its full length; the consumers keep running.
    if let Some(end) = outage_end {
        say(
            &opts,
            format!(
                "  -- SIEM receiver stays down {} s more --",
                end.saturating_duration_since(Instant::now()).as_secs()
            ),
        );
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_secs(2)).await;
            progress(&opts, run_start, &sim, &buckets, &receiver, &rsyslog).await;
        }
        receiver
            .come_back()
            .await
            .map_err(step("bringing the SIEM receiver back"))?;
        say(&opts, "  -- SIEM receiver is back --");
    }
    let _ = stop_tx.send(true);
    if let Some(task) = hook_task {
        let _ = task.await;
    }
    let _ = producer_task.await;
    let _ = redrive_task.await;
    let archiver_stats_run = archiver_task
        .1
        .await
        .map_err(step("archiver task"))?
        .map_err(step("archiver"))?;
    let forwarder_stats_run = forwarder_task
        .1
        .await
        .map_err(step("forwarder task"))?
        .map_err(step("forwarder"))?;
    // The producer's settle window re-reads recent events; more runs pick up everything now
    // visible (and a backlog left by a slow or faulted run), until runs find nothing new.
    let no_faults = mpas_sim::FaultRates::default();
    sim.set_faults(no_faults).map_err(step("clearing faults"))?;
    producer_catch_up(&producer, &opts).await?;
    let archiver_drain = archiver_task
        .0
        .drain()
        .await
        .map_err(step("draining the archiver"))?;
    let forwarder_drain = forwarder_task
        .0
        .drain()
        .await
        .map_err(step("draining the forwarder"))?;
    // The redrive schedule's last runs: everything spooled goes to its receiver.
    let redrives = drain_spool(
        &forwarder,
        &s3,
        &dlq_bucket,
        &spool_prefix,
        Duration::from_secs(300),
    )
    .await?;
    if redrives > 0 {
        say(
            &opts,
            format!("spool drained by {redrives} scheduled redrive(s)"),
        );
    }
    progress(&opts, run_start, &sim, &buckets, &receiver, &rsyslog).await;

    if let Some(h) = &opts.hooks {
        h.drained(ctx.clone()).await;
    }

    // 6. Accounting.
    let policy = KeyPolicy::default();
    let mut expected = Tally::new("made at IdP");
    let mut ledger_lines = Vec::new();
    for entry in sim.ledger() {
        if let Ok(event) = entry.event() {
            let line = json!({"kind": entry.kind, "visibleAt": entry.visible_at, "event": event});
            expected.add_value(&policy, &line);
            ledger_lines.push(line.to_string());
        }
    }
    write_lines(&opts.out_dir.join("ledger.jsonl"), &ledger_lines)?;
    let mut archive = Tally::new("archive");
    authtrail_check::sources::read_s3_prefix(&s3, &bucket, "raw/", &policy, &mut archive)
        .await
        .map_err(step("reading the archive"))?;
    // Dead letters, batches the mappings gave up on (the archiver's under esm-failures/, the
    // forwarder's under aws/lambda/ as on AWS); the spool is not a dead end and is empty now.
    let mut dlq = Tally::new("dead-letter");
    for prefix in ["dlq/", "aws/lambda/", "esm-failures/"] {
        authtrail_check::sources::read_s3_prefix(&s3, &dlq_bucket, prefix, &policy, &mut dlq)
            .await
            .map_err(step("reading the dead-letter bucket"))?;
    }
    let mut siems = Vec::new();
    for (name, endpoint) in [
        ("splunk", Endpoint::SplunkHec),
        ("elastic", Endpoint::Elasticsearch),
        ("webhook", Endpoint::Ingest),
    ] {
        let events = receiver.events(endpoint);
        let lines: Vec<String> = events.iter().map(|v| v.to_string()).collect();
        write_lines(&opts.out_dir.join(format!("siem-{name}.jsonl")), &lines)?;
        let mut t = Tally::new(name);
        for v in &events {
            t.add_value(&policy, v);
        }
        siems.push(t);
    }
    let syslog_msgs = rsyslog.messages();
    let mut syslog = Tally::new("syslog");
    let mut syslog_lines = Vec::new();
    for m in &syslog_msgs {
        let v = json!({"facility": m.facility, "severity": m.severity, "msg": m.msg});
        syslog.add_value(&policy, &v);
        syslog_lines.push(v.to_string());
    }
    write_lines(&opts.out_dir.join("siem-syslog.jsonl"), &syslog_lines)?;
    siems.push(syslog);
    let mut sources = vec![&archive];
    sources.extend(siems.iter());
    let report = Report::compare(&expected, &sources, Some(&dlq), 60_000);
    let report_json = serde_json::to_string_pretty(&report).map_err(step("writing the report"))?;
    std::fs::write(opts.out_dir.join("report.json"), report_json)
        .map_err(step("writing the report"))?;

    // 7. Reconciliation, as a deployment does it: per window and hop from the functions'
    // tallies and the archive.
    say(
        &opts,
        "reconciling every window of the traffic (waiting for the producer's tally to be final) ...",
    );
    let scheduled = reconcile_task.await.unwrap_or_default();
    let _ = ship_stop.send(true);
    let shipped_lines = shipper.await.unwrap_or(0);
    let ledger = sim.ledger();
    let event_times = (
        ledger.iter().map(|e| e.time).min().unwrap_or(0),
        ledger.iter().map(|e| e.time).max().unwrap_or(0),
    );
    let reconciled = match reconcile::finish(reconcile::Finish {
        s3: &s3,
        reconciler: &reconciler,
        producer: &producer,
        checkpoint: (&checkpoint_bucket, &checkpoint_key),
        archive_bucket: &bucket,
        objects: (&reconcile_bucket, &reconcile_prefix),
        window_secs,
        event_times,
        tamper: opts.tamper_archive,
        scheduled,
        shipped_lines,
    })
    .await
    {
        Ok(r) => {
            std::fs::write(
                opts.out_dir.join("reconciliation.json"),
                serde_json::to_string_pretty(&r.report).map_err(step("writing the report"))?,
            )
            .map_err(step("writing the report"))?;
            Some(r)
        }
        // The accounting above stands on its own: a reconciliation that cannot be made is
        // reported, not fatal.
        Err(e) => {
            eprintln!("authtrail-demo: the reconciliation could not be made: {e}");
            None
        }
    };

    let mut archiver_all = archiver_stats_run;
    merge(&mut archiver_all, &archiver_drain);
    let mut forwarder_all = forwarder_stats_run;
    merge(&mut forwarder_all, &forwarder_drain);
    say(
        &opts,
        format!("\nsummary after {:.0} s", started.elapsed().as_secs_f64()),
    );
    say(
        &opts,
        format!(
            "  producer  invocations {}, cold starts {}",
            producer.invocations(),
            producer.cold_starts()
        ),
    );
    say(&opts, format!("  archiver  {archiver_all}"));
    say(&opts, format!("  forwarder {forwarder_all}"));
    say(&opts, report.render(30));
    if let Some(r) = &reconciled {
        say(&opts, reconcile::summary(r));
    }
    let archive_url = format!("s3://{bucket}/raw/");
    say(
        &opts,
        format!(
            "look around: ledger, SIEM samples and report.json in {}; archive objects at {archive_url} on the emulator ({})",
            opts.out_dir.display(),
            emu.endpoint()
        ),
    );

    if opts.keep_running {
        say(
            &opts,
            format!(
                "everything keeps running; try: AWS_ENDPOINT_URL={} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION={} aws s3 ls --recursive s3://{bucket}/  (Ctrl-C stops)",
                emu.endpoint(),
                emu.region()
            ),
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    producer.shutdown().await;
    archiver.shutdown().await;
    forwarder.shutdown().await;
    reconciler.shutdown().await;
    Ok(DemoOutcome {
        report,
        archive_url,
        out_dir: opts.out_dir.clone(),
        made,
        archiver: archiver_all,
        forwarder: forwarder_all,
        reconciled,
        emulator: emu,
    })
}

fn merge(into: &mut SourceStats, more: &SourceStats) {
    into.total.invocations += more.total.invocations;
    into.total.records_delivered += more.total.records_delivered;
    into.total.records_processed += more.total.records_processed;
    into.total.retries += more.total.retries;
    into.total.partial_failures += more.total.partial_failures;
    into.total.function_errors += more.total.function_errors;
    into.total.records_discarded += more.total.records_discarded;
}

fn write_lines(path: &Path, lines: &[String]) -> Result<(), DemoError> {
    let mut body = lines.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    std::fs::write(path, body).map_err(step("writing a sample file"))
}

/// The buckets the progress line looks into.
struct Buckets<'a> {
    s3: &'a aws_sdk_s3::Client,
    archive: &'a str,
    dlq: &'a str,
    spool_prefix: &'a str,
}

async fn progress(
    opts: &DemoOptions,
    run_start: Instant,
    sim: &mpas_sim::SimHandle,
    buckets: &Buckets<'_>,
    receiver: &Receiver,
    rsyslog: &Rsyslog,
) {
    if !opts.progress {
        return;
    }
    let made = sim.stats();
    let objects = buckets
        .s3
        .list_objects_v2()
        .bucket(buckets.archive)
        .prefix("raw/")
        .send()
        .await
        .map(|o| o.key_count().unwrap_or(0))
        .unwrap_or(0);
    let splunk = receiver.events(Endpoint::SplunkHec).len();
    let elastic = receiver.documents().len();
    let webhook = receiver.events(Endpoint::Ingest).len();
    let syslog = rsyslog.messages().len();
    let spooled = spooled_objects(buckets.s3, buckets.dlq, buckets.spool_prefix).await;
    println!(
        "  t={:>4}s  made {:>6}  archive objects {:>4}  | delivered: splunk {:>6}  elastic {:>6}  webhook {:>6}  syslog {:>6}  | spool objects {:>4}",
        run_start.elapsed().as_secs(),
        made.ledger,
        objects,
        splunk,
        elastic,
        webhook,
        syslog,
        spooled
    );
}

/// Creates stack `stack` from `template` (a path from the workspace root) and returns its
/// outputs once it is complete.
async fn create_stack(
    sdk: &aws_config::SdkConfig,
    stack: &str,
    template: &str,
    params: &[(&str, &str)],
) -> Result<BTreeMap<String, String>, DemoError> {
    let body =
        std::fs::read_to_string(workspace_root().join(template)).map_err(|e| DemoError::Step {
            step: "reading a template",
            detail: format!("{template}: {e}"),
        })?;
    let cfn = aws_sdk_cloudformation::Client::new(sdk);
    let mut req = cfn
        .create_stack()
        .stack_name(stack)
        .template_body(body)
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam);
    for (k, v) in params {
        req = req.parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key(*k)
                .parameter_value(*v)
                .build(),
        );
    }
    req.send().await.map_err(|e| DemoError::Step {
        step: "creating the stack",
        detail: format!("{e:?}"),
    })?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let desc = cfn
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .map_err(|e| DemoError::Step {
                step: "describing the stack",
                detail: format!("{e:?}"),
            })?;
        if let Some(stack) = desc.stacks().first() {
            let status = stack
                .stack_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            if status == "CREATE_COMPLETE" {
                return Ok(stack
                    .outputs()
                    .iter()
                    .filter_map(|o| {
                        Some((o.output_key()?.to_string(), o.output_value()?.to_string()))
                    })
                    .collect());
            }
            if status.contains("FAILED") || status.contains("ROLLBACK") {
                return Err(DemoError::Step {
                    step: "creating the stack",
                    detail: format!(
                        "{status}: {}",
                        stack.stack_status_reason().unwrap_or_default()
                    ),
                });
            }
        }
        if Instant::now() > deadline {
            return Err(DemoError::Step {
                step: "creating the stack",
                detail: "not complete after 120 s".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts a function binary with the environment its stack resource declares, plus the
/// emulator's standard AWS variables.
async fn start_function(
    lambda: &aws_sdk_lambda::Client,
    emu: &Emulator,
    function_name: &str,
    binary: &str,
    scratch: &Path,
) -> Result<Arc<LambdaFunction>, DemoError> {
    start_function_with(lambda, emu, function_name, binary, scratch, None).await
}

/// [`start_function`], its runner configuration passed through the hooks first.
async fn start_function_with(
    lambda: &aws_sdk_lambda::Client,
    emu: &Emulator,
    function_name: &str,
    binary: &str,
    scratch: &Path,
    hooks: Option<&Arc<dyn DemoHooks>>,
) -> Result<Arc<LambdaFunction>, DemoError> {
    let conf = lambda
        .get_function_configuration()
        .function_name(function_name)
        .send()
        .await
        .map_err(|e| DemoError::Step {
            step: "reading the function configuration",
            detail: format!("{function_name}: {e:?}"),
        })?;
    let mut env: Vec<(String, String)> = conf
        .environment()
        .and_then(|e| e.variables())
        .map(|vars| vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    env.extend(emu.env());
    env.push(("AWS_LAMBDA_LOG_LEVEL".into(), "warn".into()));
    // The demo's SIEM tokens are given in plain text in the configuration: a local run.
    env.push(("AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS".into(), "true".into()));
    let timeout = Duration::from_secs(u64::try_from(conf.timeout().unwrap_or(60)).unwrap_or(60));
    let memory = u32::try_from(conf.memory_size().unwrap_or(256)).unwrap_or(256);
    let mut cfg = FunctionConfig::new(
        binary,
        bin_path(binary).map_err(step("finding the function binary"))?,
    )
    .with_timeout(timeout);
    // Function logs go to a file per function, not the terminal.
    cfg.echo_logs = false;
    cfg.log_file = Some(scratch.join(format!("{binary}.log")));
    cfg.memory_mb = memory;
    cfg = cfg.with_env(env);
    if let Some(h) = hooks {
        cfg = h.function_config(binary, emu.port(), cfg);
    }
    let f = LambdaFunction::start(cfg)
        .await
        .map_err(step("starting a function"))?;
    Ok(Arc::new(f))
}

/// Runs the producer every 3 s until it has read up to the simulator's frozen clock: at least
/// four runs (the settle window), then until two runs in a row were complete and put nothing
/// (a backlog drains first); at most 600 runs.
async fn producer_catch_up(producer: &LambdaFunction, opts: &DemoOptions) -> Result<(), DemoError> {
    let one = ScheduleConfig {
        count: Some(1),
        fire_immediately: true,
        ..ScheduleConfig::every("authtrail-demo-producer", Duration::from_secs(3))
    };
    let mut quiet_runs = 0;
    for run in 0..600u32 {
        let started = Instant::now();
        let done = run_schedule(producer, &one, std::future::pending())
            .await
            .map_err(step("producer catch-up"))?;
        let summary: Option<serde_json::Value> = done.first().and_then(|i| match &i.outcome {
            authtrail_runner::Outcome::Response(body) => serde_json::from_slice(body).ok(),
            _ => None,
        });
        let caught_up = summary.as_ref().is_some_and(|v| {
            v["complete"] == json!(true) && v["put"] == json!(0) && v["stoodDown"] != json!(true)
        });
        quiet_runs = if caught_up { quiet_runs + 1 } else { 0 };
        if run >= 3 && quiet_runs >= 2 {
            return Ok(());
        }
        if run > 0 && run % 20 == 0 {
            say(
                opts,
                format!("  producer catching up: {run} runs after the traffic"),
            );
        }
        tokio::time::sleep(Duration::from_secs(3).saturating_sub(started.elapsed())).await;
    }
    Err(DemoError::Step {
        step: "producer catch-up",
        detail: "still not caught up after 600 runs".into(),
    })
}
