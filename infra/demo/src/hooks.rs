//! Hooks for runs built on the demo (the chaos run): a rewrite of the forwarder configuration
//! and of each function's runner configuration, a task beside the traffic, and a look at every
//! place once the pipeline drained. Without hooks the demo runs as it always did.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use authtrail_runner::{FunctionConfig, LambdaFunction};
use siem_receiver::{Receiver, Rsyslog};

/// A boxed future a hook returns.
pub type HookFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What a hook can reach while the demo runs.
#[derive(Clone)]
pub struct RunContext {
    /// The SDK configuration of the emulator.
    pub sdk: aws_config::SdkConfig,
    /// The MPAS simulator.
    pub sim: mpas_sim::Sim,
    /// The HTTPS SIEM receiver (Splunk HEC, Elasticsearch, webhook).
    pub receiver: Arc<Receiver>,
    /// The syslog collector.
    pub rsyslog: Arc<Rsyslog>,
    pub producer: Arc<LambdaFunction>,
    pub archiver: Arc<LambdaFunction>,
    pub forwarder: Arc<LambdaFunction>,
    /// The stream's name.
    pub stream: String,
    /// The archive bucket.
    pub archive_bucket: String,
    /// The dead-letter bucket (the spool is in it, under `spool_prefix`).
    pub dlq_bucket: String,
    pub spool_prefix: String,
    /// Turns true when the traffic stops.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

/// Hooks into a demo run; every method's default keeps the demo's behaviour.
pub trait DemoHooks: Send + Sync + std::fmt::Debug {
    /// The forwarder configuration the stack gets.
    fn forwarder_config(&self, config: serde_json::Value) -> serde_json::Value {
        config
    }

    /// The runner configuration of a function (`authtrail-producer`, `authtrail-archiver`,
    /// `authtrail-forwarder`) before it starts; `emulator_port` is the emulator's port.
    fn function_config(
        &self,
        _binary: &str,
        _emulator_port: u16,
        cfg: FunctionConfig,
    ) -> FunctionConfig {
        cfg
    }

    /// Runs beside the traffic from its start; must end soon after `ctx.stop` turns true
    /// (the demo waits for it before the producer's catch-up and the drain).
    fn during_run(&self, _ctx: RunContext) -> HookFuture {
        Box::pin(async {})
    }

    /// Called once the pipeline drained (spool empty), before the demo's own accounting.
    fn drained(&self, _ctx: RunContext) -> HookFuture {
        Box::pin(async {})
    }
}
