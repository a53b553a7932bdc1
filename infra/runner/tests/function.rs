//! The Runtime API and the function process: a real `lambda_runtime` client
//! (`runner-test-function`) driven by `LambdaFunction`. No emulator needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authtrail_runner::{
    FunctionConfig, LambdaFunction, MAX_INVOKE_PAYLOAD_BYTES, Outcome, RunnerError, ScheduleConfig,
    run_schedule,
};
use serde_json::{Value, json};

fn config(name: &str) -> FunctionConfig {
    let mut cfg = FunctionConfig::new(name, env!("CARGO_BIN_EXE_runner-test-function"));
    cfg.echo_logs = false;
    cfg.inherit_env = false;
    cfg.env.push(("AWS_REGION".into(), "eu-west-1".into()));
    cfg
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn deadline_header_is_in_the_future_by_the_function_timeout() {
    let f = LambdaFunction::start(config("deadline").with_timeout(Duration::from_secs(7)))
        .await
        .unwrap();
    let before = now_ms();
    let inv = f.invoke_json(&json!({"hello": "world"})).await.unwrap();
    let after = now_ms();
    let body: Value = inv.response_json().unwrap();
    let deadline = body["deadlineMs"].as_u64().unwrap();
    assert!(
        deadline >= before + 7_000,
        "deadline {deadline} before {before}+7s"
    );
    assert!(
        deadline <= after + 7_000,
        "deadline {deadline} after {after}+7s"
    );
    assert_eq!(body["event"], json!({"hello": "world"}));
    assert_eq!(body["requestId"].as_str().unwrap(), inv.request_id);
    assert_eq!(
        body["invokedFunctionArn"],
        "arn:aws:lambda:eu-west-1:123456789012:function:deadline"
    );
    assert_eq!(body["functionName"], "deadline");
}

#[tokio::test]
async fn warm_invocations_reuse_one_process_and_logs_are_captured() {
    let f = LambdaFunction::start(config("warm")).await.unwrap();
    let first = f.invoke_json(&json!({})).await.unwrap();
    let second = f.invoke_json(&json!({})).await.unwrap();
    let pid = |i: &authtrail_runner::Invocation| i.response_json::<Value>().unwrap()["pid"].clone();
    assert_eq!(pid(&first), pid(&second));
    assert!(!second.cold_start);
    assert_eq!(f.cold_starts(), 1);
    let line = f
        .wait_for_log(Duration::from_secs(10), |l| {
            l.contains("\"summary\":\"runner-test-function\"")
        })
        .await;
    assert!(line.is_some(), "summary line not captured: {}", f.logs());
}

#[tokio::test]
async fn function_error_reports_error_type_and_message_and_keeps_the_process() {
    let f = LambdaFunction::start(config("errors")).await.unwrap();
    let inv = f.invoke_json(&json!({"action": "error"})).await.unwrap();
    match &inv.outcome {
        Outcome::FunctionError {
            error_type,
            error_message,
        } => {
            assert!(!error_type.is_empty());
            assert_eq!(error_message, "asked for an error");
        }
        other => panic!("expected a function error, got {other:?}"),
    }
    assert!(f.invoke_json(&json!({})).await.unwrap().is_success());
    assert_eq!(f.cold_starts(), 1);
}

#[tokio::test]
async fn crash_during_invocation_is_reported_and_the_next_invocation_cold_starts() {
    let f = LambdaFunction::start(config("crash")).await.unwrap();
    let inv = f.invoke_json(&json!({"action": "crash"})).await.unwrap();
    assert!(matches!(inv.outcome, Outcome::Crashed { .. }), "{inv:?}");
    assert_eq!(inv.error_type(), Some("Runtime.ExitError"));
    let next = f.invoke_json(&json!({})).await.unwrap();
    assert!(next.is_success(), "{next:?}");
    assert!(next.cold_start);
    assert_eq!(f.cold_starts(), 2);
}

#[tokio::test]
async fn timed_out_invocation_is_killed_and_the_next_one_gets_a_fresh_process() {
    let f = LambdaFunction::start(config("timeout").with_timeout(Duration::from_secs(1)))
        .await
        .unwrap();
    let first_pid = f.pid().await.unwrap();
    let inv = f.invoke_json(&json!({"action": "sleep"})).await.unwrap();
    assert!(matches!(inv.outcome, Outcome::TimedOut { .. }), "{inv:?}");
    assert_eq!(inv.error_type(), Some("Sandbox.Timedout"));
    let next = f.invoke_json(&json!({})).await.unwrap();
    assert!(next.cold_start);
    let pid = next.response_json::<Value>().unwrap()["pid"]
        .as_u64()
        .unwrap();
    assert_ne!(pid, u64::from(first_pid));
    // The old process is gone (killed, not left running).
    assert!(
        !std::path::Path::new(&format!("/proc/{first_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{first_pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
    );
}

#[tokio::test]
async fn process_exiting_before_asking_for_work_is_an_init_error() {
    let mut cfg = config("initfail");
    cfg.env.push(("TEST_INIT_FAIL".into(), "1".into()));
    let f = LambdaFunction::new(cfg).unwrap();
    let inv = f.invoke_json(&json!({})).await.unwrap();
    match &inv.outcome {
        Outcome::InitError {
            error_type,
            error_message,
        } => {
            assert_eq!(error_type, "Runtime.ExitError");
            assert!(
                error_message.contains("before requesting an invocation"),
                "{error_message}"
            );
        }
        other => panic!("expected an init error, got {other:?}"),
    }
}

#[tokio::test]
async fn payload_above_six_mb_is_rejected_before_invoking() {
    let f = LambdaFunction::new(config("big")).unwrap();
    let err = f
        .invoke(vec![b' '; MAX_INVOKE_PAYLOAD_BYTES + 1])
        .await
        .unwrap_err();
    assert!(matches!(err, RunnerError::PayloadTooLarge { .. }), "{err}");
    assert_eq!(f.cold_starts(), 0);
}

#[tokio::test]
async fn missing_binary_fails_at_start() {
    let cfg = FunctionConfig::new("nobin", "/nonexistent/bootstrap");
    let err = LambdaFunction::start(cfg).await.unwrap_err();
    assert!(matches!(err, RunnerError::Spawn { .. }), "{err}");
}

#[tokio::test]
async fn schedule_source_delivers_eventbridge_scheduled_events_that_deserialize() {
    let f = LambdaFunction::start(config("sched")).await.unwrap();
    let mut cfg = ScheduleConfig::every("every-minute", Duration::from_millis(50));
    cfg.count = Some(3);
    let done = run_schedule(&f, &cfg, std::future::pending())
        .await
        .unwrap();
    assert_eq!(done.len(), 3);
    let mut ids = std::collections::HashSet::new();
    for inv in &done {
        let body: Value = inv.response_json().unwrap();
        assert_eq!(body["eventBridge"], true, "{body}");
        let event = &body["event"];
        assert_eq!(event["detail-type"], "Scheduled Event");
        assert_eq!(event["source"], "aws.events");
        assert_eq!(
            event["resources"][0],
            "arn:aws:events:eu-west-1:123456789012:rule/every-minute"
        );
        ids.insert(event["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 3, "each scheduled event has its own id");
}

#[tokio::test]
async fn kill_now_mid_invocation_ends_it_as_crashed_and_the_next_one_cold_starts() {
    let f = std::sync::Arc::new(
        LambdaFunction::start(config("kill-now").with_timeout(Duration::from_secs(30)))
            .await
            .unwrap(),
    );
    let first_pid = f.pid().await.unwrap();
    let running = {
        let f = f.clone();
        tokio::spawn(async move { f.invoke_json(&json!({"action": "sleep"})).await })
    };
    // The invocation holds the environment; the kill does not wait for it.
    while f.invocations() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.kill_now(), Some(first_pid));
    let inv = running.await.unwrap().unwrap();
    assert!(matches!(inv.outcome, Outcome::Crashed { .. }), "{inv:?}");
    let next = f.invoke_json(&json!({})).await.unwrap();
    assert!(next.is_success(), "{next:?}");
    assert!(next.cold_start);
    assert_ne!(f.pid().await.unwrap(), first_pid);
}
