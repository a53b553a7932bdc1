//! A Lambda function (built on `lambda_runtime`) for the runner's own tests. Its behaviour is
//! driven by the records it gets and by environment variables:
//!
//! - `TEST_STATE_DIR`: directory for `deliveries.log` (one `shardId sequenceNumber` line per
//!   delivered Kinesis record, written before anything else happens) and marker files.
//! - `TEST_INIT_FAIL=1`: exit with status 1 before asking for work (an init failure).
//!
//! Kinesis record data containing `FAIL-ONCE` / `FAIL-ALWAYS` is reported as a batch item
//! failure (the first time only / always); `CRASH-ONCE` / `CRASH` exits the process;
//! `ERROR-ONCE` / `ERROR` returns an error; `SLEEP` sleeps past the deadline.
//!
//! Any other event is answered with `{deadlineMs, nowMs, requestId, invokedFunctionArn, pid,
//! eventBridge, event}`; `{"action":"crash"|"error"|"sleep"}` in it triggers that behaviour.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

fn state_dir() -> PathBuf {
    std::env::var_os("TEST_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// True the first time `name` is seen (creates a marker file).
fn first_time(name: &str) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(state_dir().join(format!("marker-{name}")))
        .is_ok()
}

async fn sleep_past(deadline_ms: u64) {
    let wait = deadline_ms.saturating_sub(now_ms()) + 2_000;
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

async fn kinesis(event: KinesisEvent, deadline_ms: u64) -> Result<Value, Error> {
    let mut log = String::new();
    for r in &event.records {
        let shard = r
            .event_id
            .as_deref()
            .and_then(|id| id.split(':').next())
            .unwrap_or("?");
        log.push_str(&format!("{shard} {}\n", r.kinesis.sequence_number));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir().join("deliveries.log"))?
        .write_all(log.as_bytes())?;
    let mut failures = Vec::new();
    for r in &event.records {
        let data = String::from_utf8_lossy(&r.kinesis.data.0);
        let seq = &r.kinesis.sequence_number;
        let key = format!(
            "{}-{seq}",
            r.event_id.as_deref().unwrap_or("").replace(':', "-")
        );
        if data.contains("FAIL-ONCE") {
            if first_time(&format!("fail-{key}")) {
                failures.push(json!({"itemIdentifier": seq}));
            }
        } else if data.contains("FAIL-ALWAYS") {
            failures.push(json!({"itemIdentifier": seq}));
        }
        if data.contains("CRASH-ONCE") {
            if first_time(&format!("crash-{key}")) {
                eprintln!("runner-test-function: crashing on {seq}");
                std::process::exit(3);
            }
        } else if data.contains("CRASH") {
            eprintln!("runner-test-function: crashing on {seq}");
            std::process::exit(3);
        }
        if data.contains("ERROR-ONCE") {
            if first_time(&format!("error-{key}")) {
                return Err(format!("record {seq} asked for an error").into());
            }
        } else if data.contains("ERROR") {
            return Err(format!("record {seq} asked for an error").into());
        }
        if data.contains("SLEEP") {
            sleep_past(deadline_ms).await;
        }
    }
    println!(
        "{}",
        json!({"summary": "runner-test-function", "records": event.records.len(), "failures": failures.len()})
    );
    Ok(json!({ "batchItemFailures": failures }))
}

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, ctx) = event.into_parts();
    if payload.get("Records").is_some() {
        let ev: KinesisEvent = serde_json::from_value(payload)?;
        return kinesis(ev, ctx.deadline).await;
    }
    match payload.get("action").and_then(Value::as_str) {
        Some("crash") => std::process::exit(3),
        Some("error") => return Err("asked for an error".into()),
        Some("sleep") => sleep_past(ctx.deadline).await,
        _ => {}
    }
    let event_bridge = serde_json::from_value::<EventBridgeEvent>(payload.clone()).is_ok();
    println!(
        "{}",
        json!({"summary": "runner-test-function", "eventBridge": event_bridge})
    );
    Ok(json!({
        "deadlineMs": ctx.deadline,
        "nowMs": now_ms(),
        "requestId": ctx.request_id,
        "invokedFunctionArn": ctx.invoked_function_arn,
        "functionName": ctx.env_config.function_name,
        "pid": std::process::id(),
        "eventBridge": event_bridge,
        "event": payload,
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    if std::env::var("TEST_INIT_FAIL").as_deref() == Ok("1") {
        eprintln!("runner-test-function: failing init as asked");
        std::process::exit(1);
    }
    lambda_runtime::run(service_fn(handler)).await
}
