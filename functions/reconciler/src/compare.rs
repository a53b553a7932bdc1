//! The comparison of one window: the hops in pipeline order, each a count and a digest in and
//! out (core's [`Reconciliation`]).
//!
//! The stream itself is seen through its two consumers: the archive (read here, record by
//! record) and the forwarder (its tally lines). When they agree, that is the stream; when one
//! holds more records, it is the reference and the other is short by the difference (records
//! are lost, not invented: every stream record is archived once and finished by the forwarder
//! once). So a record deleted from the archive shows at `stream>archive` only, a batch the
//! forwarder's mapping gave up on at `stream>forwarder` only, and an emitter that lost track of
//! a record at its own hop only.
//!
//! - `producer>stream`: the producers' tallies (each event once) against the distinct
//!   envelopes of the stream (the archive's, plus those the forwarder saw that the archive
//!   lacks).
//! - `stream>archive`: the stream against the archive.
//! - `stream>forwarder`: the stream against what the forwarder finished.
//! - `forwarder>emitter:<name>`: what the forwarder finished against what the emitter
//!   delivered, spooled, dead-lettered or filtered out.

use std::collections::{BTreeSet, HashSet};

use authtrail_core::envelope::format_timestamp;
use authtrail_core::tally::line::{ForwarderMinute, Outcomes};
use authtrail_core::tally::object::{
    ArchiveSummary, ForwarderSummary, HopResult, HopStatus, OBJECT_VERSION, OutcomeCounts,
    ProducerSummary, Reconciliation,
};
use authtrail_core::tally::{
    Digest, HOP_PRODUCER_STREAM, HOP_STREAM_ARCHIVE, HOP_STREAM_FORWARDER, MINUTE_MS, emitter_hop,
};

use crate::archive::ArchiveSpan;
use crate::forwarder::ForwarderView;
use crate::producer::{ProducerFigure, ProducerTallies};

/// The forwarder's side of a run.
#[derive(Debug)]
pub enum ForwarderInput<'a> {
    /// No forwarder log group is configured: no forwarder hops.
    NotConfigured,
    /// Configured, but its tallies could not be read (the reason).
    Unavailable(String),
    /// Its tallies over the run's span.
    View(&'a ForwarderView),
}

/// Everything a window is compared from.
#[derive(Debug)]
pub struct WindowInputs<'a> {
    /// Start of the window, epoch milliseconds (a whole minute).
    pub start_ms: i64,
    /// Its length, seconds (whole minutes).
    pub seconds: u64,
    /// The settle delay it was given, seconds.
    pub settle_seconds: u64,
    /// When the comparison is made, epoch milliseconds.
    pub now_ms: i64,
    /// The archive objects of the run's span.
    pub archive: &'a ArchiveSpan,
    /// The forwarder's tallies.
    pub forwarder: ForwarderInput<'a>,
    /// The producers' tallies.
    pub producers: &'a ProducerTallies,
}

/// What the archive holds of a window.
#[derive(Debug, Default)]
struct ArchiveWindow {
    all: Digest,
    envelopes: Digest,
    distinct_envelopes: Digest,
}

fn archive_window(span: &ArchiveSpan, from: i64, to: i64) -> ArchiveWindow {
    let mut w = ArchiveWindow::default();
    let mut seen = HashSet::new();
    for r in span.records_in(from, to) {
        w.all.add(r.hash);
        if r.envelope {
            w.envelopes.add(r.hash);
            if seen.insert(r.hash) {
                w.distinct_envelopes.add(r.hash);
            }
        }
    }
    w
}

/// Compares one hop's figures.
fn hop(name: String, expected: Digest, observed: Digest, short: &str) -> HopResult {
    let (status, unaccounted, extra, reason) = if expected == observed {
        (HopStatus::Ok, 0, 0, None)
    } else if observed.count < expected.count {
        let n = expected.count - observed.count;
        (HopStatus::Unaccounted, n, 0, Some(format!("{n} {short}")))
    } else if observed.count > expected.count {
        let n = observed.count - expected.count;
        (
            HopStatus::Extra,
            0,
            n,
            Some(format!(
                "{n} more records came out than went in (duplicates, or records of a producer that keeps no tally here)"
            )),
        )
    } else {
        (
            HopStatus::Mismatch,
            1,
            0,
            Some("the counts agree but the digests do not: records were altered, or as many lost as others added".into()),
        )
    };
    HopResult {
        hop: name,
        status,
        expected: Some(expected.into()),
        observed: Some(observed.into()),
        unaccounted,
        extra,
        outcomes: None,
        reason,
    }
}

fn unknown(name: String, reason: String) -> HopResult {
    HopResult {
        hop: name,
        status: HopStatus::Unknown,
        expected: None,
        observed: None,
        unaccounted: 0,
        extra: 0,
        outcomes: None,
        reason: Some(reason),
    }
}

fn counts(o: &Outcomes) -> OutcomeCounts {
    OutcomeCounts {
        delivered: o.delivered.count,
        spooled: o.spooled.count,
        dead_lettered: o.dead_lettered.count,
        filtered: o.filtered.count,
    }
}

/// The forwarder hops and the stream's view, when the forwarder's tallies are usable.
fn forwarder_hops(
    fw: &ForwarderMinute,
    names: &BTreeSet<String>,
    archive: &ArchiveWindow,
    hops: &mut Vec<HopResult>,
) {
    let stream = if fw.seen.count >= archive.all.count {
        fw.seen
    } else {
        archive.all
    };
    let mut to_archive = hop(
        HOP_STREAM_ARCHIVE.into(),
        stream,
        archive.all,
        "records the forwarder finished are not in the archive (deleted, or not archived within the settle delay)",
    );
    let mut to_forwarder = hop(
        HOP_STREAM_FORWARDER.into(),
        stream,
        fw.seen,
        "archived records were never finished by the forwarder (a batch its mapping gave up on, the forwarder behind by more than the settle delay, or a tally line lost)",
    );
    if fw.seen.count == archive.all.count && fw.seen != archive.all {
        // The two views disagree in content: which one is wrong is not known.
        to_archive = hop(HOP_STREAM_ARCHIVE.into(), fw.seen, archive.all, "");
        to_forwarder = hop(HOP_STREAM_FORWARDER.into(), archive.all, fw.seen, "");
    }
    hops.push(to_archive);
    hops.push(to_forwarder);
    let none = Outcomes::default();
    for name in names {
        let o = fw.emitters.get(name).unwrap_or(&none);
        let mut h = hop(
            emitter_hop(name),
            fw.seen,
            o.total(),
            "records the forwarder finished have no outcome at this emitter",
        );
        h.outcomes = Some(counts(o));
        hops.push(h);
    }
}

/// The reconciliation of one window.
pub fn reconcile(inp: &WindowInputs<'_>) -> Reconciliation {
    let window_ms = i64::try_from(inp.seconds).unwrap_or(i64::MAX / 1000) * 1000;
    let (from, to) = (
        inp.start_ms.div_euclid(MINUTE_MS),
        (inp.start_ms + window_ms).div_euclid(MINUTE_MS),
    );
    let archive = archive_window(inp.archive, from, to);
    let mut hops = Vec::new();
    let mut forwarder = ForwarderSummary::default();
    let mut fw_window: Option<ForwarderMinute> = None;
    match &inp.forwarder {
        ForwarderInput::NotConfigured => {}
        ForwarderInput::Unavailable(reason) => forwarder.unavailable = Some(reason.clone()),
        ForwarderInput::View(v) if v.overlaps(from, to) => {
            forwarder.unavailable = Some(
                "tally lines of a shard overlap in part in this window: some records may count twice".into(),
            );
        }
        ForwarderInput::View(v) => fw_window = Some(v.window(from, to)),
    }
    if let ForwarderInput::View(v) = &inp.forwarder {
        forwarder.lines = v.lines;
        forwarder.repeated_lines = v.repeated;
        forwarder.overlapping_lines = v.overlapping;
        forwarder.shards = v.shards;
    }
    if let Some(figure) = inp.producers.figure(from, to) {
        hops.push(match figure {
            ProducerFigure::Unknown(reason) => unknown(HOP_PRODUCER_STREAM.into(), reason),
            ProducerFigure::Known(put) => {
                let mut seen = archive.distinct_envelopes;
                if let Some(fw) = &fw_window
                    && fw.seen.count > archive.all.count
                    && fw.envelopes.count > archive.envelopes.count
                {
                    // Envelopes the forwarder saw in the stream that the archive lacks.
                    seen += &fw.envelopes.minus(&archive.envelopes);
                }
                hop(
                    HOP_PRODUCER_STREAM.into(),
                    put,
                    seen,
                    "events the producer put never reached the stream's consumers",
                )
            }
        });
    }
    match (&fw_window, &forwarder.unavailable) {
        (Some(fw), _) => {
            let names = match &inp.forwarder {
                ForwarderInput::View(v) => v
                    .minutes
                    .values()
                    .flat_map(|m| m.emitters.keys().cloned())
                    .collect(),
                _ => BTreeSet::new(),
            };
            forwarder_hops(fw, &names, &archive, &mut hops);
        }
        (None, Some(reason)) => {
            hops.push(unknown(HOP_STREAM_ARCHIVE.into(), reason.clone()));
            hops.push(unknown(HOP_STREAM_FORWARDER.into(), reason.clone()));
        }
        (None, None) => {}
    }
    let (status, unaccounted) = Reconciliation::status_of(&hops);
    let in_window = inp.archive.records_in(from, to).count() as u64;
    Reconciliation {
        version: OBJECT_VERSION,
        window_start: format_timestamp(inp.start_ms),
        window_end: format_timestamp(inp.start_ms + window_ms),
        window_seconds: inp.seconds,
        computed_at: format_timestamp(inp.now_ms),
        settle_seconds: inp.settle_seconds,
        status,
        unaccounted,
        hops,
        archive: ArchiveSummary {
            objects: inp.archive.objects.len() as u64,
            records: in_window,
            envelopes: archive.envelopes.count,
            distinct_envelopes: archive.distinct_envelopes.count,
            other: in_window - archive.envelopes.count,
            undated: inp.archive.undated(),
        },
        forwarder,
        producer: ProducerSummary {
            checkpoints: inp.producers.tallies.len() as u64,
            put: inp.producers.put(from, to),
            unknown: match inp.producers.figure(from, to) {
                Some(ProducerFigure::Unknown(r)) => Some(r),
                _ => None,
            },
        },
    }
}

#[cfg(test)]
#[path = "compare_tests.rs"]
mod tests;
