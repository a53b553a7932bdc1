//! The fault driver: the [`DemoHooks`] of the chaos run. It points the producer and the archiver
//! at their proxies and the forwarder's syslog emitter at the stalling proxy, runs the foreign
//! producer, applies the schedule as the traffic runs (each fault logged with its time), heals
//! everything when the traffic stops, and reads every place once the pipeline drained.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use authtrail_demo::{DemoHooks, HookFuture, RunContext};
use authtrail_runner::FunctionConfig;
use serde_json::Value;
use siem_receiver::Endpoint;

use crate::account::{Places, collect};
use crate::foreign::{self, Rates, Written};
use crate::log::FaultLog;
use crate::proxy::AwsProxy;
use crate::schedule::{FaultKind, KillPoint, PlannedFault};
use crate::stall::StallProxy;

/// The producer's settle window in the chaos run (seconds): longer than the simulator's latest
/// commit (5 s), shorter than the default 15 s, since runs come every few seconds.
const SETTLE_WINDOW_SECS: &str = "8";

/// The chaos hooks and what they gather.
#[derive(Debug)]
pub struct Driver {
    pub(crate) plan: Vec<PlannedFault>,
    pub(crate) log: Arc<FaultLog>,
    pub(crate) producer_proxy: AwsProxy,
    pub(crate) archiver_proxy: AwsProxy,
    pub(crate) stall: StallProxy,
    pub(crate) producer_timeout: Duration,
    pub(crate) foreign_rates: Rates,
    /// PutRecords partial failures: fraction of calls, fraction of their entries.
    pub(crate) partial: (f64, f64),
    pub(crate) seed: u64,
    pub(crate) written: Arc<Mutex<Written>>,
    pub(crate) places: Arc<Mutex<Option<Result<Places, String>>>>,
}

impl DemoHooks for Driver {
    fn forwarder_config(&self, mut config: Value) -> Value {
        if let Some(emitters) = config.get_mut("emitters").and_then(Value::as_array_mut) {
            for e in emitters {
                if e.get("type").and_then(Value::as_str) == Some("syslog") {
                    let port = e.get("port").and_then(Value::as_u64).unwrap_or(0);
                    self.stall.set_target(u16::try_from(port).unwrap_or(0));
                    e["port"] = Value::from(self.stall.port());
                }
            }
        }
        config
    }

    fn function_config(&self, binary: &str, port: u16, mut cfg: FunctionConfig) -> FunctionConfig {
        let proxy = match binary {
            "authtrail-producer" => {
                // Time compression: a killed run's lease expires at its deadline; runs come
                // every few seconds, so the settle window each run re-reads is cut from 15 s
                // to 8 s, still longer than the simulator's latest commit (5 s).
                cfg.timeout = self.producer_timeout;
                cfg.env
                    .push(("MPAS_SETTLE_WINDOW_SECS".into(), SETTLE_WINDOW_SECS.into()));
                &self.producer_proxy
            }
            "authtrail-archiver" => &self.archiver_proxy,
            _ => return cfg,
        };
        proxy.set_target(port);
        cfg.env.push(("AWS_ENDPOINT_URL".into(), proxy.url()));
        cfg
    }

    fn during_run(&self, ctx: RunContext) -> HookFuture {
        let run = Run {
            plan: self.plan.clone(),
            log: self.log.clone(),
            producer_proxy: self.producer_proxy.clone(),
            archiver_proxy: self.archiver_proxy.clone(),
            stall: self.stall.clone(),
            foreign_rates: self.foreign_rates,
            partial: self.partial,
            seed: self.seed,
            written: self.written.clone(),
        };
        Box::pin(run.go(ctx))
    }

    fn drained(&self, ctx: RunContext) -> HookFuture {
        let places = self.places.clone();
        Box::pin(async move {
            let got = collect(&ctx).await.map_err(|e| e.to_string());
            if let Ok(mut p) = places.lock() {
                *p = Some(got);
            }
        })
    }
}

/// One run of the schedule (owned, for the spawned task).
struct Run {
    plan: Vec<PlannedFault>,
    log: Arc<FaultLog>,
    producer_proxy: AwsProxy,
    archiver_proxy: AwsProxy,
    stall: StallProxy,
    foreign_rates: Rates,
    partial: (f64, f64),
    seed: u64,
    written: Arc<Mutex<Written>>,
}

impl Run {
    async fn go(self, ctx: RunContext) {
        self.log.restart_clock();
        self.producer_proxy.set_victim(ctx.producer.clone());
        self.producer_proxy
            .set_partial_failures(self.partial.0, self.partial.1);
        let foreign_task = tokio::spawn(foreign::run(
            aws_sdk_kinesis::Client::new(&ctx.sdk),
            ctx.stream.clone(),
            self.foreign_rates,
            self.seed,
            ctx.stop.clone(),
        ));
        let mut stop = ctx.stop.clone();
        for fault in &self.plan {
            let wait = fault
                .at
                .saturating_sub(Duration::from_secs_f64(self.log.elapsed_secs()));
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = tokio::time::sleep(wait) => {},
            }
            self.apply(&ctx, fault).await;
        }
        let _ = stop.wait_for(|s| *s).await;
        // The traffic stopped: every injector heals, so the drain sees the pipeline whole.
        self.producer_proxy.heal();
        self.archiver_proxy.heal();
        self.stall.set_paused(false);
        ctx.receiver.heal();
        let sim_faults = ctx.sim.stats().faults;
        self.log.set_count("mpas-500", sim_faults.error_500);
        self.log.set_count("mpas-429", sim_faults.too_many_429);
        self.log.set_count("mpas-slow", sim_faults.slow);
        self.log.set_count("mpas-truncated", sim_faults.truncate);
        if let Ok(w) = foreign_task.await
            && let Ok(mut into) = self.written.lock()
        {
            *into = w;
        }
    }

    async fn apply(&self, ctx: &RunContext, fault: &PlannedFault) {
        let log = self.log.clone();
        match &fault.kind {
            FaultKind::TokenExpiry => {
                let n = ctx.sim.expire_tokens();
                log.fault("token-expiry", format!("{n} MPAS tokens expired"));
            }
            FaultKind::ProducerKill(KillPoint::MidPage) => {
                // Killed right after MPAS served it a page (polling the simulator's counters).
                let sim = ctx.sim.clone();
                let producer = ctx.producer.clone();
                let stop = ctx.stop.clone();
                tokio::spawn(async move {
                    let served = |s: &mpas_sim::Sim| {
                        let st = s.stats();
                        st.event_requests + st.admin_event_requests
                    };
                    let before = served(&sim);
                    while served(&sim) == before {
                        if *stop.borrow() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    let detail = match producer.kill_now() {
                        Some(pid) => format!("pid {pid}"),
                        None => "no process to kill".into(),
                    };
                    log.fault("producer-sigkill-mid-page", detail);
                });
            }
            FaultKind::ProducerKill(point) => self.producer_proxy.arm(*point),
            FaultKind::S3WriteFaults { length } => {
                self.archiver_proxy.set_write_faults(true);
                log.fault(
                    "s3-write-faults",
                    format!(
                        "archiver S3 writes answered 503 for {:.1}s",
                        length.as_secs_f64()
                    ),
                );
                let proxy = self.archiver_proxy.clone();
                let length = *length;
                tokio::spawn(async move {
                    tokio::time::sleep(length).await;
                    proxy.set_write_faults(false);
                });
            }
            FaultKind::ReceiverDown { receiver, length } => {
                let endpoint = if *receiver == "splunk" {
                    Endpoint::SplunkHec
                } else {
                    Endpoint::Ingest
                };
                ctx.receiver.fail_endpoint_for(endpoint, *length, 503);
                log.fault(
                    &fault.kind.name(),
                    format!("{receiver} answers 503 for {:.1}s", length.as_secs_f64()),
                );
            }
            FaultKind::SyslogStall { length } => {
                self.stall.set_paused(true);
                log.fault(
                    "syslog-stops-reading",
                    format!(
                        "the collector reads nothing for {:.1}s",
                        length.as_secs_f64()
                    ),
                );
                let stall = self.stall.clone();
                let length = *length;
                tokio::spawn(async move {
                    tokio::time::sleep(length).await;
                    stall.set_paused(false);
                });
            }
        }
    }
}
