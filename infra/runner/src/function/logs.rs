//! The captured output of a function's processes: every stdout and stderr line, optionally
//! echoed to the runner's stderr and appended to a file.

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Captured output of a function, across all its processes.
pub(super) struct LogSink {
    pub(super) prefix: String,
    pub(super) echo: bool,
    pub(super) lines: StdMutex<Vec<String>>,
    pub(super) file: Option<StdMutex<std::fs::File>>,
    pub(super) notify: tokio::sync::Notify,
    /// Output streams still being read (a process's stdout and stderr until their end).
    pub(super) open_readers: AtomicUsize,
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

    /// Waits until every output stream was read to its end (a process that exited has
    /// written its last lines), or `limit` passes.
    pub(super) async fn drained(&self, limit: Duration) {
        let wait = async {
            loop {
                let notified = self.notify.notified();
                if self.open_readers.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }
}

/// Feeds the lines of a process output stream into `sink` until it ends.
pub(super) fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(reader: R, sink: Arc<LogSink>) {
    sink.open_readers.fetch_add(1, Ordering::AcqRel);
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            sink.push(line);
        }
        sink.open_readers.fetch_sub(1, Ordering::AcqRel);
        sink.notify.notify_waiters();
    });
}
