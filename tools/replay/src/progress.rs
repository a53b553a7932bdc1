//! The progress bar on stderr: objects (or pages) and records done, records per second. Drawn
//! only when stderr is a terminal and `--quiet` is not given, at most five times a second.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Width of the bar in characters.
const WIDTH: usize = 24;
/// Least time between two draws.
const EVERY: Duration = Duration::from_millis(200);

/// The progress of one replay.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    started: Instant,
    last: Option<Instant>,
    units_total: Option<usize>,
    units_done: usize,
    records_done: usize,
}

impl Progress {
    /// A progress bar, drawn when `quiet` is false and stderr is a terminal.
    pub fn new(quiet: bool) -> Self {
        Self::with_drawing(!quiet && std::io::stderr().is_terminal())
    }

    /// A progress bar drawn (or not) as told.
    pub fn with_drawing(enabled: bool) -> Self {
        Self {
            enabled,
            started: Instant::now(),
            last: None,
            units_total: None,
            units_done: 0,
            records_done: 0,
        }
    }

    /// How many objects there are (unknown for a stream).
    pub fn set_total(&mut self, units: usize) {
        self.units_total = Some(units);
        self.draw(false);
    }

    /// Adds records done.
    pub fn records(&mut self, n: usize) {
        self.records_done += n;
        self.draw(false);
    }

    /// Adds one object (or page) done.
    pub fn unit(&mut self) {
        self.units_done += 1;
        self.draw(false);
    }

    /// Draws the last state and ends the line.
    pub fn finish(&mut self) {
        self.draw(true);
        if self.enabled {
            eprintln!();
        }
    }

    /// The line as drawn.
    pub fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.records_done as f64 / secs;
        match self.units_total {
            Some(total) => {
                let filled = (self.units_done * WIDTH)
                    .checked_div(total)
                    .unwrap_or(WIDTH);
                format!(
                    "[{}{}] {}/{} objects, {} records, {:.0} records/s",
                    "#".repeat(filled.min(WIDTH)),
                    "-".repeat(WIDTH - filled.min(WIDTH)),
                    self.units_done,
                    total,
                    self.records_done,
                    rate
                )
            }
            None => format!(
                "{} pages, {} records, {:.0} records/s",
                self.units_done, self.records_done, rate
            ),
        }
    }

    fn draw(&mut self, force: bool) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if !force && self.last.is_some_and(|l| now.duration_since(l) < EVERY) {
            return;
        }
        self.last = Some(now);
        let mut err = std::io::stderr().lock();
        // A progress line that cannot be drawn is not worth failing the replay for.
        let _ = write!(err, "\r\x1b[2K{}", self.line());
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_objects_records_and_rate() {
        let mut p = Progress::with_drawing(false);
        p.set_total(4);
        p.unit();
        p.records(120);
        let line = p.line();
        assert!(
            line.starts_with("[######------------------] 1/4 objects, 120 records, "),
            "{line}"
        );
        assert!(line.ends_with(" records/s"), "{line}");
        let mut s = Progress::with_drawing(false);
        s.unit();
        assert!(s.line().starts_with("1 pages, 0 records"), "{}", s.line());
    }
}
