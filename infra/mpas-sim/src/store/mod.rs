//! The event store: visible events sorted by time, pending (uncommitted) events by commit
//! time, and the ledger of everything that became visible. What a query selects and how its
//! page is cut is `query`.

mod query;

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::model::{EventKind, LedgerEntry, Record};
use query::{Window, page_filtered, page_unfiltered};

pub(crate) use query::{AdminFilter, EventQuery, Filter, UserFilter};

/// Out-of-order inserts above this count are appended and sorted instead of inserted one by one.
const INSERT_LIMIT: usize = 64;

/// A record waiting for its commit, ordered by commit time (then generation order).
struct Pending(Arc<Record>);

impl Pending {
    fn key(&self) -> (i64, u64) {
        (self.0.commit_at, self.0.seq)
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// Visible, pending and ledgered events of both kinds.
pub(crate) struct Store {
    user: Vec<Arc<Record>>,
    admin: Vec<Arc<Record>>,
    pending: BinaryHeap<Reverse<Pending>>,
    ledger: Vec<LedgerEntry>,
    /// Events with `time` below this are deleted (retention / explicit expiry).
    floor: i64,
    expired: u64,
    dropped: u64,
}

/// Sizes of the store, for stats.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StoreCounts {
    pub(crate) visible_user: usize,
    pub(crate) visible_admin: usize,
    pub(crate) pending: usize,
    pub(crate) ledger: usize,
    pub(crate) expired: u64,
    pub(crate) dropped: u64,
    pub(crate) oldest_time: Option<i64>,
}

impl Store {
    pub(crate) fn new() -> Self {
        Self {
            user: Vec::new(),
            admin: Vec::new(),
            pending: BinaryHeap::new(),
            ledger: Vec::new(),
            floor: i64::MIN,
            expired: 0,
            dropped: 0,
        }
    }

    /// Adds generated records: committed ones become visible now, the rest wait. Returns the
    /// number that wait.
    pub(crate) fn insert(&mut self, records: Vec<Record>, now: i64) -> u64 {
        let mut visible = Vec::new();
        let mut waiting = 0;
        for rec in records {
            let rec = Arc::new(rec);
            if rec.commit_at <= now {
                let at = rec.commit_at;
                visible.push((rec, at));
            } else {
                waiting += 1;
                self.pending.push(Reverse(Pending(rec)));
            }
        }
        self.publish(visible);
        waiting
    }

    /// Makes every pending event whose commit time has come visible.
    pub(crate) fn advance(&mut self, now: i64) {
        let mut due = Vec::new();
        while let Some(Reverse(p)) = self.pending.peek() {
            if p.0.commit_at > now {
                break;
            }
            if let Some(Reverse(p)) = self.pending.pop() {
                let at = p.0.commit_at;
                due.push((p.0, at));
            }
        }
        self.publish(due);
    }

    /// Commits every pending event now; returns how many.
    pub(crate) fn commit_all(&mut self, now: i64) -> usize {
        let all: Vec<_> = std::mem::take(&mut self.pending)
            .into_sorted_vec()
            .into_iter()
            .rev()
            .map(|Reverse(p)| (p.0, now))
            .collect();
        let n = all.len();
        self.publish(all);
        n
    }

    /// Deletes visible events older than `cutoff` (and any later-committing one as old).
    pub(crate) fn expire_before(&mut self, cutoff: i64) {
        if cutoff <= self.floor {
            return;
        }
        self.floor = cutoff;
        for rows in [&mut self.user, &mut self.admin] {
            let k = rows.partition_point(|r| r.time < cutoff);
            if k > 0 {
                rows.drain(..k);
                self.expired += k as u64;
            }
        }
    }

    fn publish(&mut self, mut batch: Vec<(Arc<Record>, i64)>) {
        if batch.is_empty() {
            return;
        }
        batch.sort_by_key(|(r, _)| (r.time, r.seq));
        let mut user = Vec::new();
        let mut admin = Vec::new();
        for (rec, at) in batch {
            if rec.time < self.floor {
                self.dropped += 1;
                continue;
            }
            self.ledger.push(LedgerEntry {
                seq: rec.seq,
                kind: rec.kind,
                id: rec.id.clone(),
                time: rec.time,
                visible_at: at,
                is_error: rec.is_error,
                json: Arc::clone(&rec.json),
            });
            match rec.kind {
                EventKind::User => user.push(rec),
                EventKind::Admin => admin.push(rec),
            }
        }
        merge_sorted(&mut self.user, user);
        merge_sorted(&mut self.admin, admin);
    }

    pub(crate) fn ledger(&self) -> &[LedgerEntry] {
        &self.ledger
    }

    pub(crate) fn visible(&self, kind: EventKind) -> &[Arc<Record>] {
        match kind {
            EventKind::User => &self.user,
            EventKind::Admin => &self.admin,
        }
    }

    pub(crate) fn counts(&self) -> StoreCounts {
        let oldest = [self.user.first(), self.admin.first()]
            .into_iter()
            .flatten()
            .map(|r| r.time)
            .min();
        StoreCounts {
            visible_user: self.user.len(),
            visible_admin: self.admin.len(),
            pending: self.pending.len(),
            ledger: self.ledger.len(),
            expired: self.expired,
            dropped: self.dropped,
            oldest_time: oldest,
        }
    }

    /// Selects the page `q` asks for (with its surrounding tie groups; see [`Window::finish`]).
    pub(crate) fn query(&self, kind: EventKind, q: &EventQuery) -> Window {
        let rows = self.visible(kind);
        let lo = q.from.map_or(0, |f| rows.partition_point(|r| r.time < f));
        let hi =
            q.to.map_or(rows.len(), |t| rows.partition_point(|r| r.time <= t));
        let Some(slice) = rows.get(lo..hi) else {
            return Window::empty();
        };
        if q.filter.is_empty() {
            page_unfiltered(slice, q)
        } else {
            page_filtered(slice, q)
        }
    }
}

/// Appends a time-sorted batch to a time-sorted vector, keeping it sorted (stable: equal times
/// keep their arrival order).
fn merge_sorted(rows: &mut Vec<Arc<Record>>, batch: Vec<Arc<Record>>) {
    let Some(first) = batch.first() else {
        return;
    };
    let in_order = rows.last().is_none_or(|last| last.time <= first.time);
    if in_order {
        rows.extend(batch);
        return;
    }
    let behind = batch
        .iter()
        .filter(|r| rows.last().is_some_and(|l| r.time < l.time))
        .count();
    if behind <= INSERT_LIMIT {
        for rec in batch {
            let at = rows.partition_point(|r| r.time <= rec.time);
            rows.insert(at, rec);
        }
    } else {
        rows.extend(batch);
        rows.sort_by_key(|r| r.time);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::model::Fields;

    fn rec(seq: u64, time: i64, commit_at: i64) -> Record {
        Record {
            seq,
            kind: EventKind::User,
            id: format!("id-{seq}"),
            time,
            commit_at,
            is_error: false,
            fields: Fields::User {
                event_type: if seq.is_multiple_of(2) {
                    "LOGIN"
                } else {
                    "LOGOUT"
                },
                client_id: None,
                user_id: None,
                ip_address: None,
            },
            json: format!("{{\"seq\":{seq}}}").into(),
        }
    }

    fn q(first: usize, max: Option<usize>, ascending: bool) -> EventQuery {
        EventQuery {
            from: None,
            to: None,
            first,
            max,
            ascending,
            filter: Filter::User(UserFilter::default()),
        }
    }

    fn seqs(w: Window) -> Vec<u64> {
        w.finish().iter().map(|r| r.seq).collect()
    }

    #[test]
    fn pages_cover_every_event_once_in_both_directions_without_ties() {
        let mut s = Store::new();
        s.insert((0..10).map(|i| rec(i, i as i64 * 10, 0)).collect(), 1000);
        let asc: Vec<u64> = (0..4)
            .flat_map(|p| seqs(s.query(EventKind::User, &q(p * 3, Some(3), true))))
            .collect();
        assert_eq!(asc, (0..10).collect::<Vec<_>>());
        let desc: Vec<u64> = (0..4)
            .flat_map(|p| seqs(s.query(EventKind::User, &q(p * 3, Some(3), false))))
            .collect();
        assert_eq!(desc, (0..10).rev().collect::<Vec<_>>());
    }

    #[test]
    fn late_commits_become_visible_only_when_the_clock_reaches_them() {
        let mut s = Store::new();
        let waiting = s.insert(vec![rec(0, 100, 5000), rec(1, 200, 200)], 1000);
        assert_eq!(waiting, 1);
        assert_eq!(seqs(s.query(EventKind::User, &q(0, None, true))), vec![1]);
        s.advance(5000);
        assert_eq!(
            seqs(s.query(EventKind::User, &q(0, None, true))),
            vec![0, 1]
        );
        let ledger: Vec<(u64, i64)> = s.ledger().iter().map(|e| (e.seq, e.visible_at)).collect();
        assert_eq!(ledger, vec![(1, 200), (0, 5000)]);
    }

    #[test]
    fn filtered_page_keeps_whole_tie_groups_and_respects_offsets() {
        let mut s = Store::new();
        // 12 events, LOGIN on even seq; times in pairs.
        s.insert((0..12).map(|i| rec(i, (i / 4) as i64, 0)).collect(), 1000);
        let mut query = q(0, Some(2), true);
        query.filter = Filter::User(UserFilter {
            types: vec!["LOGIN".into()],
            ..UserFilter::default()
        });
        let all: Vec<u64> = (0..3)
            .flat_map(|p| {
                let mut qq = query.clone();
                qq.first = p * 2;
                seqs(s.query(EventKind::User, &qq))
            })
            .collect();
        assert_eq!(all.len(), 6);
        assert!(all.iter().all(|s| s.is_multiple_of(2)));
    }

    #[test]
    fn expiry_removes_old_visible_events_and_drops_old_late_ones() {
        let mut s = Store::new();
        s.insert(vec![rec(0, 10, 10), rec(1, 20, 9000), rec(2, 30, 30)], 100);
        s.expire_before(25);
        s.advance(10_000);
        assert_eq!(seqs(s.query(EventKind::User, &q(0, None, true))), vec![2]);
        let c = s.counts();
        assert_eq!((c.expired, c.dropped, c.oldest_time), (1, 1, Some(30)));
    }
}
