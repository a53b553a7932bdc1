//! EventBridge scheduled events: what a `rate(...)`/`cron(...)` rule delivers to a function.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::Result;
use crate::function::{ACCOUNT_ID, Invocation, LambdaFunction};

/// A schedule rule.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Rule name (in the `resources` ARN).
    pub rule_name: String,
    /// Interval between invocations (the rule's `rate(...)`).
    pub every: Duration,
    /// Stop after this many invocations (`None`: until stopped).
    pub count: Option<u64>,
    /// Region for the event and rule ARN; `None`: the function's region.
    pub region: Option<String>,
    /// Invoke once right away instead of waiting one interval first.
    pub fire_immediately: bool,
}

impl ScheduleConfig {
    /// A schedule firing every `every`, starting right away, until stopped.
    pub fn every(rule_name: impl Into<String>, every: Duration) -> Self {
        Self {
            rule_name: rule_name.into(),
            every,
            count: None,
            region: None,
            fire_immediately: true,
        }
    }
}

/// Builds an EventBridge "Scheduled Event" exactly as EventBridge sends it to Lambda.
pub fn scheduled_event(region: &str, rule_name: &str, time: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": time.to_rfc3339_opts(SecondsFormat::Secs, true),
        "region": region,
        "resources": [format!("arn:aws:events:{region}:{ACCOUNT_ID}:rule/{rule_name}")],
        "detail": {}
    })
}

fn region_of(function: &LambdaFunction, cfg: &ScheduleConfig) -> String {
    cfg.region.clone().unwrap_or_else(|| {
        function
            .arn()
            .split(':')
            .nth(3)
            .unwrap_or("us-east-1")
            .to_owned()
    })
}

/// Invokes `function` once with a scheduled event for `rule_name`.
pub async fn invoke_scheduled(function: &LambdaFunction, rule_name: &str) -> Result<Invocation> {
    let cfg = ScheduleConfig::every(rule_name, Duration::from_secs(60));
    let event = scheduled_event(&region_of(function, &cfg), rule_name, Utc::now());
    function.invoke_json(&event).await
}

/// Invokes `function` on the schedule until `count` invocations are done or `stop` completes;
/// returns the invocations in order. Ticks are not skipped while an invocation runs late
/// (the next one follows right after), as EventBridge queues them.
pub async fn run_schedule(
    function: &LambdaFunction,
    cfg: &ScheduleConfig,
    stop: impl Future<Output = ()> + Send,
) -> Result<Vec<Invocation>> {
    let region = region_of(function, cfg);
    let mut done = Vec::new();
    let start = tokio::time::Instant::now();
    let mut next = if cfg.fire_immediately {
        start
    } else {
        start + cfg.every
    };
    tokio::pin!(stop);
    loop {
        if cfg.count.is_some_and(|c| done.len() as u64 >= c) {
            break;
        }
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep_until(next) => {}
        }
        let event = scheduled_event(&region, &cfg.rule_name, Utc::now());
        let invocation = function.invoke_json(&event).await?;
        tracing::info!(function = %function.name(), rule = %cfg.rule_name, outcome = invocation.outcome.kind(), "scheduled invocation");
        done.push(invocation);
        next += cfg.every;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use aws_lambda_events::event::eventbridge::EventBridgeEvent;

    #[test]
    fn scheduled_event_deserializes_as_eventbridge_event() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let v = scheduled_event("eu-west-1", "every-minute", t);
        let ev: EventBridgeEvent = serde_json::from_value(v).unwrap();
        assert_eq!(ev.detail_type, "Scheduled Event");
        assert_eq!(ev.source, "aws.events");
        assert_eq!(ev.time, Some(t));
        assert_eq!(ev.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            ev.resources.unwrap(),
            vec!["arn:aws:events:eu-west-1:123456789012:rule/every-minute".to_owned()]
        );
    }
}
