//! Local event-source runner: drives Lambda function binaries through the Lambda Runtime API
//! with real Kinesis and EventBridge payloads.
//!
//! - [`LambdaFunction`]: one function and its execution environment (a child process polling a
//!   local Runtime API server), invoked one event at a time.
//! - [`KinesisEventSource`]: an event-source mapping reading a Kinesis stream (e.g. moto's) and
//!   invoking a function with `KinesisEvent` batches, with AWS's batching and failure semantics.
//! - [`schedule`]: EventBridge scheduled events.
//! - [`cli`]: the `authtrail-runner` command line.

pub mod cli;
mod error;
mod function;
pub mod kinesis;
mod runtime_api;
pub mod schedule;

pub use error::{Result, RunnerError};
pub use function::{
    ACCOUNT_ID, FunctionConfig, Invocation, LambdaFunction, MAX_INVOKE_PAYLOAD_BYTES, Outcome,
};
pub use kinesis::{
    BatchRecord, Counters, KinesisEventSource, KinesisSourceConfig, OnFailure, ShardStats,
    SourceStats, StartingPosition,
};
pub use runtime_api::ErrorReport;
pub use schedule::{ScheduleConfig, invoke_scheduled, run_schedule, scheduled_event};
