//! The captured output of a function's processes: every stdout and stderr line, optionally
//! echoed to the runner's stderr and appended to a file.

use std::io::Write as _;
use std::sync::{Arc, Mutex as StdMutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Captured output of a function, across all its processes.
pub(super) struct LogSink {
    pub(super) prefix: String,
    pub(super) echo: bool,
    pub(super) lines: StdMutex<Vec<String>>,
    pub(super) file: Option<StdMutex<std::fs::File>>,
    pub(super) notify: tokio::sync::Notify,
}

impl LogSink {
    /// Records one line: echoed, appended to the file, kept, waiters woken.
    fn push(&self, line: String) {
        if self.echo {
            eprintln!("{}{}", self.prefix, line);
        }
        if let Some(file) = &self.file
            && let Ok(mut f) = file.lock()
        {
            let _ = writeln!(f, "{line}");
        }
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line);
        }
        self.notify.notify_waiters();
    }
}

/// Feeds the lines of a process output stream into `sink` until it ends.
pub(super) fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(reader: R, sink: Arc<LogSink>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            sink.push(line);
        }
    });
}
