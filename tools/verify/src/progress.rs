//! The progress bar on stderr, drawn as `authtrail-replay` draws its own: only when stderr is
//! a terminal and `--quiet` is not given, at most five times a second, one line redrawn in
//! place.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Width of the bar in characters.
const WIDTH: usize = 24;
/// Least time between two draws.
const EVERY: Duration = Duration::from_millis(200);

/// The progress of one verification: a phase, and requests done of those planned.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    last: Option<Instant>,
    phase: &'static str,
    total: usize,
    done: usize,
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
            last: None,
            phase: "listing",
            total: 0,
            done: 0,
        }
    }

    /// Starts a phase of `total` requests.
    pub fn phase(&mut self, phase: &'static str, total: usize) {
        self.phase = phase;
        self.total = total;
        self.done = 0;
        self.draw(true);
    }

    /// One request of the phase done.
    pub fn step(&mut self) {
        self.done += 1;
        self.draw(false);
    }

    /// Ends the line.
    pub fn finish(&mut self) {
        if self.enabled {
            self.draw(true);
            eprintln!();
        }
    }

    /// The line as drawn.
    pub fn line(&self) -> String {
        let filled = (self.done * WIDTH)
            .checked_div(self.total)
            .unwrap_or(WIDTH)
            .min(WIDTH);
        format!(
            "[{}{}] {}: {}/{}",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            self.phase,
            self.done,
            self.total
        )
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
        // A progress line that cannot be drawn is not worth failing the verification for.
        let _ = write!(err, "\r\x1b[2K{}", self.line());
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_the_phase_and_the_requests_done() {
        let mut p = Progress::with_drawing(false);
        p.phase("objects", 4);
        p.step();
        assert_eq!(p.line(), "[######------------------] objects: 1/4");
        p.phase("digests", 0);
        assert_eq!(p.line(), "[########################] digests: 0/0");
    }
}
