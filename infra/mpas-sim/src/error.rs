//! The crate's error type.

/// Everything that can go wrong when configuring or running the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A configuration value is out of range; names the setting and the expected form.
    #[error("invalid configuration: {setting}: {reason}")]
    Config {
        /// The setting (field or CLI flag) at fault.
        setting: &'static str,
        /// What was wrong and what is expected.
        reason: String,
    },
    /// Binding or serving the HTTP listener failed.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What the simulator was doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An event could not be serialized (should not happen with the generator's own types).
    #[error("could not serialize an event: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl SimError {
    pub(crate) fn config(setting: &'static str, reason: impl Into<String>) -> Self {
        Self::Config {
            setting,
            reason: reason.into(),
        }
    }

    pub(crate) fn io(context: &'static str, source: std::io::Error) -> Self {
        Self::Io { context, source }
    }
}
