//! The fault log: every fault injected, with its time since the start of the traffic, printed
//! as it happens and counted by kind for the report.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// Lines and counts of the faults injected so far.
#[derive(Debug)]
pub struct FaultLog {
    start: Mutex<Instant>,
    print: bool,
    lines: Mutex<Vec<String>>,
    counts: Mutex<BTreeMap<String, u64>>,
}

impl FaultLog {
    /// An empty log; `print` echoes each line to stdout.
    pub fn new(print: bool) -> Self {
        Self {
            start: Mutex::new(Instant::now()),
            print,
            lines: Mutex::new(Vec::new()),
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    /// Times from now on are measured from here (the start of the traffic).
    pub fn restart_clock(&self) {
        if let Ok(mut s) = self.start.lock() {
            *s = Instant::now();
        }
    }

    /// Seconds since the start of the traffic.
    pub fn elapsed_secs(&self) -> f64 {
        self.start
            .lock()
            .map(|s| s.elapsed().as_secs_f64())
            .unwrap_or(0.0)
    }

    /// Records one injected fault of `kind`, with a detail.
    pub fn fault(&self, kind: &str, detail: impl AsRef<str>) {
        self.fault_n(kind, 1, detail);
    }

    /// Records `n` injected faults of `kind` at once (a logged line only when `detail` is not
    /// empty: counters such as failed PutRecords entries are counted silently).
    pub fn fault_n(&self, kind: &str, n: u64, detail: impl AsRef<str>) {
        if let Ok(mut c) = self.counts.lock() {
            *c.entry(kind.to_string()).or_default() += n;
        }
        let detail = detail.as_ref();
        if detail.is_empty() {
            return;
        }
        let line = format!("  t={:>7.1}s FAULT {kind} {detail}", self.elapsed_secs());
        if self.print {
            println!("{line}");
        }
        if let Ok(mut l) = self.lines.lock() {
            l.push(line);
        }
    }

    /// Sets the count of `kind` (counters read from elsewhere, e.g. the simulator's).
    pub fn set_count(&self, kind: &str, n: u64) {
        if let Ok(mut c) = self.counts.lock() {
            c.insert(kind.to_string(), n);
        }
    }

    /// Faults injected so far, by kind.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Every logged line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}
