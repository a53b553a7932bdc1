//! The replay itself: read the source unit by unit, skip what the state file marks done, hand
//! the records to the emitter in batches, keep the state after every batch, and count
//! everything into the [`Summary`].

use std::fmt::Write as _;

use authtrail_forwarder::replay::{RecordOutcome, Replayer};
use tokio::time::{Duration, Instant};

use crate::ReplayError;
use crate::cli::{EXIT_COMPLETE, EXIT_INCOMPLETE, Plan, SourcePlan};
use crate::progress::Progress;
use crate::source::stream::{self, ShardReader};
use crate::source::{self, Item, Unit, archive, dlq};
use crate::state::StateFile;

/// Time one batch may take, retries included (the emitter's own retry policy ends it sooner).
const BATCH_BUDGET: Duration = Duration::from_secs(900);
/// Refused records listed in the summary.
const LISTED: usize = 20;

/// One record the emitter did not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    /// Its unit (object or shard).
    pub unit: String,
    /// Its id in the unit.
    pub item: String,
    /// Its outcome.
    pub outcome: RecordOutcome,
}

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Objects (or shard pages) read.
    pub units_read: usize,
    /// Objects skipped: complete in the state file.
    pub units_skipped: usize,
    /// Objects left out by their key hour.
    pub units_out_of_range: usize,
    /// Records of the range.
    pub chosen: usize,
    /// Records read but outside the range.
    pub out_of_range: usize,
    /// Records that cannot be replayed (see the sources).
    pub unusable: usize,
    /// Records skipped: done in the state file.
    pub already_done: usize,
    /// Dry run: records the emitter would be sent.
    pub would_send: usize,
    /// Records delivered.
    pub delivered: usize,
    /// Records not meant for the emitter (`include` / `exclude`).
    pub filtered: usize,
    /// Records refused or not delivered.
    pub missed: Vec<Missed>,
}

impl Summary {
    /// 0 when nothing was missed, else 1.
    pub fn exit_status(&self) -> u8 {
        if self.missed.is_empty() {
            EXIT_COMPLETE
        } else {
            EXIT_INCOMPLETE
        }
    }

    /// The summary as printed.
    pub fn render(&self, plan: &Plan) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "authtrail-replay: {}{}",
            plan.describe(),
            if plan.dry_run { " (dry run)" } else { "" }
        );
        let _ = writeln!(
            out,
            "  objects: {} read, {} skipped as done (state), {} outside the range",
            self.units_read, self.units_skipped, self.units_out_of_range
        );
        let _ = writeln!(
            out,
            "  records: {} in range, {} outside it, {} not replayable, {} skipped as done (state)",
            self.chosen, self.out_of_range, self.unusable, self.already_done
        );
        let refused = self
            .missed
            .iter()
            .filter(|m| matches!(m.outcome, RecordOutcome::Refused { .. }))
            .count();
        if plan.dry_run {
            let _ = writeln!(
                out,
                "  would send: {}, filtered out by include/exclude: {}",
                self.would_send, self.filtered
            );
        } else {
            let _ = writeln!(
                out,
                "  delivered: {}, filtered out: {}, refused: {}, not delivered: {}",
                self.delivered,
                self.filtered,
                refused,
                self.missed.len() - refused
            );
        }
        for m in self.missed.iter().take(LISTED) {
            let what = match &m.outcome {
                RecordOutcome::Refused { status, reason } => {
                    format!("refused ({status}): {reason}")
                }
                _ => "not delivered (still failing after the retries)".to_string(),
            };
            let _ = writeln!(out, "    {} record {}: {what}", m.unit, m.item);
        }
        if self.missed.len() > LISTED {
            let _ = writeln!(out, "    ... and {} more", self.missed.len() - LISTED);
        }
        let _ = writeln!(
            out,
            "  {}",
            if self.missed.is_empty() {
                "complete"
            } else {
                "INCOMPLETE: run again (with the same --state) once the emitter takes them"
            }
        );
        out
    }
}

/// Replays `plan` into `replayer`, counting into `summary` (which holds what was done when an
/// error ends the replay early).
pub async fn replay(
    plan: &Plan,
    replayer: &Replayer,
    sdk: &aws_config::SdkConfig,
    progress: &mut Progress,
    summary: &mut Summary,
) -> Result<(), ReplayError> {
    let mut state = StateFile::open(plan.state.as_deref(), &plan.describe())?;
    let mut run = Run {
        plan,
        replayer,
        progress,
        summary,
        state: &mut state,
    };
    match &plan.source {
        SourcePlan::Archive { bucket, prefix, .. } | SourcePlan::Dlq { bucket, prefix, .. } => {
            let s3 = authtrail_core::aws::s3_client(sdk);
            run.objects(&s3, bucket, prefix).await
        }
        SourcePlan::Stream {
            stream,
            shard,
            from_seq,
            to_seq,
        } => {
            let client = aws_sdk_kinesis::Client::new(sdk);
            run.shard(client, stream, shard, from_seq, to_seq.as_deref())
                .await
        }
    }
}

/// One replay under way.
struct Run<'a> {
    plan: &'a Plan,
    replayer: &'a Replayer,
    progress: &'a mut Progress,
    summary: &'a mut Summary,
    state: &'a mut StateFile,
}

impl Run<'_> {
    /// The archive or dead letters: every object the range wants, oldest hour first.
    async fn objects(
        &mut self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        prefix: &str,
    ) -> Result<(), ReplayError> {
        let keys = source::list_keys(s3, bucket, prefix).await?;
        let wanted: Vec<String> = keys
            .into_iter()
            .filter(|k| {
                let keep = match &self.plan.source {
                    SourcePlan::Archive { range, late_ms, .. } => {
                        archive::wants_key(k, range, *late_ms)
                    }
                    SourcePlan::Dlq { range, late_ms, .. } => {
                        dlq::wants_key(k, range.as_ref(), *late_ms)
                    }
                    SourcePlan::Stream { .. } => false,
                };
                if !keep {
                    self.summary.units_out_of_range += 1;
                }
                keep
            })
            .collect();
        self.progress.set_total(wanted.len());
        for key in wanted {
            if self.state.is_complete(&format!("s3://{bucket}/{key}")) {
                self.summary.units_skipped += 1;
                self.progress.unit();
                continue;
            }
            let text = source::get_object(s3, bucket, &key).await?;
            let unit = match &self.plan.source {
                SourcePlan::Archive { range, .. } => archive::select(bucket, &key, &text, range),
                SourcePlan::Dlq {
                    range, letters_of, ..
                } => dlq::select(bucket, &key, &text, letters_of, range.as_ref()),
                SourcePlan::Stream { .. } => Unit::default(),
            };
            let all_done = self.unit(unit).await?;
            if all_done && !self.plan.dry_run {
                self.state.complete(&format!("s3://{bucket}/{key}"));
                self.state.save()?;
            }
            self.progress.unit();
        }
        Ok(())
    }

    /// A shard, page by page from the sequence range's start (or where the state left off).
    async fn shard(
        &mut self,
        client: aws_sdk_kinesis::Client,
        stream_name: &str,
        shard: &str,
        from: &str,
        to: Option<&str>,
    ) -> Result<(), ReplayError> {
        let id = stream::unit_id(stream_name, shard);
        let through = self.state.through(&id).map(str::to_string);
        let mut reader =
            ShardReader::open(client, stream_name, shard, from, to, through.as_deref()).await?;
        // Progress advances `through` while every record so far is done.
        let mut contiguous = true;
        while let Some(unit) = reader.next_page().await? {
            let last = unit.items.last().map(|i| i.id.clone());
            let all_done = self.unit(unit).await?;
            contiguous &= all_done;
            if let (true, Some(last), false) = (contiguous, last, self.plan.dry_run) {
                self.state.advance(&id, &last);
                self.state.save()?;
            }
            self.progress.unit();
        }
        Ok(())
    }

    /// Replays one unit in batches; whether every record of it is now done.
    async fn unit(&mut self, unit: Unit) -> Result<bool, ReplayError> {
        self.summary.units_read += 1;
        self.summary.out_of_range += unit.out_of_range;
        self.summary.unusable += unit.unusable;
        self.summary.chosen += unit.items.len();
        let (done, todo): (Vec<Item>, Vec<Item>) = unit
            .items
            .into_iter()
            .partition(|i| self.state.is_done(&unit.id, &i.id));
        self.summary.already_done += done.len();
        let mut all_done = true;
        for batch in todo.chunks(self.plan.batch_size) {
            all_done &= self.batch(&unit.id, batch).await?;
        }
        Ok(all_done)
    }

    /// Sends one batch (counts only, in a dry run), marks what is done in the state and saves
    /// it; whether every record of the batch is done.
    async fn batch(&mut self, unit: &str, batch: &[Item]) -> Result<bool, ReplayError> {
        if self.plan.dry_run {
            let would = batch
                .iter()
                .filter(|i| self.replayer.selects(&i.record.data))
                .count();
            self.summary.would_send += would;
            self.summary.filtered += batch.len() - would;
            self.progress.records(batch.len());
            return Ok(true);
        }
        let records: Vec<_> = batch.iter().map(|i| i.record.clone()).collect();
        let outcomes = self
            .replayer
            .send(&records, Instant::now() + BATCH_BUDGET)
            .await;
        let mut all_done = true;
        for (item, outcome) in batch.iter().zip(outcomes) {
            match outcome {
                RecordOutcome::Delivered => self.summary.delivered += 1,
                RecordOutcome::Filtered => self.summary.filtered += 1,
                outcome => {
                    all_done = false;
                    self.summary.missed.push(Missed {
                        unit: unit.to_string(),
                        item: item.id.clone(),
                        outcome,
                    });
                    continue;
                }
            }
            self.state.mark(unit, [item.id.as_str()]);
        }
        self.state.save()?;
        self.progress.records(batch.len());
        Ok(all_done)
    }
}
