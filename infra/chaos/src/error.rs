//! The chaos run's one error type: each variant says which part failed.

/// Errors of the chaos run (the accounting's verdict is not an error: see
/// [`crate::Verdict`]).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The pipeline run (the demo underneath) failed at a step.
    #[error("pipeline: {0}")]
    Demo(#[from] authtrail_demo::DemoError),
    /// A fault injector (a proxy) could not start.
    #[error("starting the {what}: {source}")]
    Injector {
        what: &'static str,
        source: std::io::Error,
    },
    /// A place could not be read for the accounting.
    #[error("reading {place}: {detail}")]
    Read { place: String, detail: String },
    /// The run ended before the accounting could look at every place.
    #[error("the accounting did not run (the pipeline stopped before draining)")]
    NoAccounting,
    /// Writing the output files failed.
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}
