//! The fault schedule: drawn from a seed, so the same seed gives the same schedule (times are
//! offsets from the start of the traffic, fractions of the run's length).

use std::fmt;
use std::time::Duration;

/// Where a producer kill lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KillPoint {
    /// Right after MPAS served the producer a page (it is reading, redacting or putting it).
    MidPage,
    /// After Kinesis accepted a PutRecords call, before its answer reaches the producer.
    MidPutRecords,
    /// As the producer writes its checkpoint, before the write reaches S3.
    MidCheckpoint,
}

impl KillPoint {
    /// The name used in logs and the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::MidPage => "mid-page",
            Self::MidPutRecords => "mid-put-records",
            Self::MidCheckpoint => "mid-checkpoint",
        }
    }
}

/// One kind of scheduled fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Every MPAS access token issued so far runs out now (the next page is answered 401).
    TokenExpiry,
    /// The producer is killed with SIGKILL at the next such point.
    ProducerKill(KillPoint),
    /// The archiver's S3 writes are answered 503 SlowDown for a stretch.
    S3WriteFaults { length: Duration },
    /// An HTTPS receiver endpoint answers 503 for a stretch.
    ReceiverDown {
        receiver: &'static str,
        length: Duration,
    },
    /// The syslog collector stops reading its connections for a stretch.
    SyslogStall { length: Duration },
}

impl FaultKind {
    /// The kind's name in the report's "faults injected by kind".
    pub fn name(&self) -> String {
        match self {
            Self::TokenExpiry => "token-expiry".into(),
            Self::ProducerKill(p) => format!("producer-sigkill-{}", p.name()),
            Self::S3WriteFaults { .. } => "s3-write-faults".into(),
            Self::ReceiverDown { receiver, .. } => format!("receiver-down-{receiver}"),
            Self::SyslogStall { .. } => "syslog-stops-reading".into(),
        }
    }
}

/// A fault at its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFault {
    /// Offset from the start of the traffic.
    pub at: Duration,
    pub kind: FaultKind,
}

impl fmt::Display for PlannedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={:>7.1}s {}", self.at.as_secs_f64(), self.kind.name())?;
        match &self.kind {
            FaultKind::S3WriteFaults { length }
            | FaultKind::ReceiverDown { length, .. }
            | FaultKind::SyslogStall { length } => {
                write!(f, " for {:.1}s", length.as_secs_f64())
            }
            _ => Ok(()),
        }
    }
}

/// How many of the repeated faults a run gets.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    /// Producer SIGKILLs (spread over the three kill points).
    pub kills: usize,
    /// Token expiries.
    pub token_expiries: usize,
}

/// SplitMix64: a small, fixed generator, so a seed means the same schedule on every build.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform draw in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform draw in `[lo, hi)`.
    pub fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// The schedule of a run of `duration` for `seed`, sorted by time.
///
/// Splunk's endpoint is down for a quarter of the run; the webhook's for half of it (many times
/// the forwarder's in-invocation retry budget: its records are spooled and redriven); the
/// archiver's S3 writes fail for a tenth; the syslog collector stops reading for a twelfth. All
/// of them end before 90 % of the run, so the drain sees every receiver back.
pub fn plan(seed: u64, duration: Duration, counts: Counts) -> Vec<PlannedFault> {
    let mut rng = Rng::new(seed);
    let d = duration.as_secs_f64();
    let at = |f: f64| Duration::from_secs_f64(d * f);
    let mut faults = Vec::new();
    let points = [
        KillPoint::MidPage,
        KillPoint::MidPutRecords,
        KillPoint::MidCheckpoint,
    ];
    let offset = (rng.next_u64() % 3) as usize;
    for i in 0..counts.kills {
        let point = points[(i + offset) % points.len()];
        faults.push(PlannedFault {
            at: at(rng.between(0.05, 0.85)),
            kind: FaultKind::ProducerKill(point),
        });
    }
    for _ in 0..counts.token_expiries {
        faults.push(PlannedFault {
            at: at(rng.between(0.02, 0.9)),
            kind: FaultKind::TokenExpiry,
        });
    }
    faults.push(PlannedFault {
        at: at(rng.between(0.2, 0.5)),
        kind: FaultKind::S3WriteFaults { length: at(0.1) },
    });
    faults.push(PlannedFault {
        at: at(rng.between(0.1, 0.4)),
        kind: FaultKind::ReceiverDown {
            receiver: "splunk",
            length: at(0.25),
        },
    });
    faults.push(PlannedFault {
        at: at(rng.between(0.1, 0.3)),
        kind: FaultKind::ReceiverDown {
            receiver: "webhook",
            length: at(0.5),
        },
    });
    faults.push(PlannedFault {
        at: at(rng.between(0.4, 0.75)),
        kind: FaultKind::SyslogStall {
            length: at(1.0 / 12.0),
        },
    });
    faults.sort_by_key(|f| f.at);
    faults
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNTS: Counts = Counts {
        kills: 10,
        token_expiries: 10,
    };

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let d = Duration::from_secs(1800);
        assert_eq!(plan(7, d, COUNTS), plan(7, d, COUNTS));
        assert_ne!(plan(7, d, COUNTS), plan(8, d, COUNTS));
    }

    #[test]
    fn every_fault_kind_is_planned_and_every_stretch_ends_before_ninety_percent() {
        let d = Duration::from_secs(1000);
        let faults = plan(42, d, COUNTS);
        assert_eq!(faults.len(), 24);
        for point in ["mid-page", "mid-put-records", "mid-checkpoint"] {
            let n = faults
                .iter()
                .filter(|f| f.kind.name() == format!("producer-sigkill-{point}"))
                .count();
            assert!(n >= 3, "{point}: {n}");
        }
        for f in &faults {
            let end = match &f.kind {
                FaultKind::S3WriteFaults { length }
                | FaultKind::ReceiverDown { length, .. }
                | FaultKind::SyslogStall { length } => f.at + *length,
                _ => f.at,
            };
            assert!(end <= Duration::from_secs(900), "{f}");
        }
        let splunk = faults
            .iter()
            .find(|f| f.kind.name() == "receiver-down-splunk")
            .map(|f| f.to_string())
            .unwrap_or_default();
        assert!(splunk.ends_with("for 250.0s"), "{splunk}");
    }
}
