//! What the store must hold, built from what `crash-child` reported, and the check of a
//! reopened store against it: events, batches, deletes, gc, and the answers of queries.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use keplordb::{Engine, QueryFilter};

use crate::child::{event, parse_id, Ev, BASE_TS, RUN_NS};

type Store = Engine<2, 1, 1>;

/// The campaign's knowledge of the store.
#[derive(Debug, Default)]
pub struct Model {
    /// Batch sizes announced by `try` lines: `(run, batch) -> n`.
    tried: BTreeMap<(u64, u64), u64>,
    /// Batches acknowledged, or seen whole after a reopen (durable from then on).
    durable: BTreeSet<(u64, u64)>,
    /// Ids whose delete was acknowledged: never visible again.
    deleted: HashSet<String>,
    /// Ids of deletes killed before their answer: either way, decided by the next reopen.
    maybe_deleted: HashSet<String>,
    pending_delete: Vec<String>,
    /// Batches whose append returned an error: on disk or not, but whole.
    failed: BTreeSet<(u64, u64)>,
    /// Largest gc cutoff announced: events older than it may be collected.
    gc_cutoff: i64,
    /// Events of collectable runs seen gone: never visible again.
    gone: HashSet<String>,
    /// Every run below this one is collected entirely (its bookkeeping is dropped).
    floor_run: u64,
    /// Errors the child reported (`err`, `delerr`, `gcerr`, `flusherr`).
    pub errors: Vec<String>,
    /// Figures.
    pub acks: u64,
    pub deletes_acked: u64,
    pub gcs: u64,
    pub events_checked: u64,
    pub queries_checked: u64,
}

impl Model {
    /// Takes one line of the child's output.
    pub fn feed(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let word = words.next().unwrap_or("");
        let nums: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(3)
            .filter_map(|w| w.parse().ok())
            .collect();
        match (word, &nums[..]) {
            ("try", &[r, b, n]) => {
                self.tried.insert((r, b), n);
            }
            ("ack", &[r, b, n]) => {
                assert_eq!(self.tried.get(&(r, b)), Some(&n), "ack without try: {line}");
                self.durable.insert((r, b));
                self.acks += 1;
            }
            ("deleting", _) => {
                self.pending_delete = words.map(str::to_string).collect();
                self.maybe_deleted
                    .extend(self.pending_delete.iter().cloned());
            }
            ("deleted", _) => {
                for id in self.pending_delete.drain(..) {
                    self.maybe_deleted.remove(&id);
                    self.deleted.insert(id);
                }
                self.deletes_acked += 1;
            }
            ("gc", _) => {
                let cutoff: i64 = words.next().and_then(|w| w.parse().ok()).unwrap();
                self.gc_cutoff = self.gc_cutoff.max(cutoff);
                self.gcs += 1;
            }
            ("err", &[r, b, ..]) => {
                self.failed.insert((r, b));
                self.errors.push(line.to_string());
            }
            ("err" | "delerr" | "gcerr" | "flusherr", _) => self.errors.push(line.to_string()),
            _ => {}
        }
    }

    /// Reopens `dir` and checks it against the model; then settles what the reopen decided
    /// (unanswered batches and deletes) and forgets runs collected entirely.
    pub fn check(&mut self, store: &Store, after: &str, seed: u64) {
        let mut seen: HashMap<String, Ev> = HashMap::new();
        store
            .scan_events(|e| {
                let id = e.id.clone();
                assert!(
                    seen.insert(id.clone(), e).is_none(),
                    "{after}: event {id} twice"
                );
            })
            .unwrap();
        for (id, e) in &seen {
            let (r, b, i) = parse_id(id).unwrap_or_else(|| panic!("{after}: stray id {id}"));
            assert!(r >= self.floor_run, "{after}: {id} came back after gc");
            assert!(
                self.tried.get(&(r, b)).is_some_and(|&n| i < n),
                "{after}: {id} was never written"
            );
            assert_eq!(*e, event(r, b, i), "{after}: {id} has other contents");
            assert!(!self.deleted.contains(id), "{after}: deleted {id} is back");
            assert!(!self.gone.contains(id), "{after}: collected {id} is back");
        }
        // Batch by batch: an event may be missing only when deleted (or maybe), or collectable;
        // the rest of a batch is there whole or not at all, and whole if the batch is durable.
        let mut expected: Vec<Ev> = Vec::new();
        let mut promoted = Vec::new();
        for (&(r, b), &n) in &self.tried {
            let (mut present, mut missing) = (0, 0);
            for i in 0..n {
                let e = event(r, b, i);
                let excused = self.deleted.contains(&e.id)
                    || self.maybe_deleted.contains(&e.id)
                    || self.gone.contains(&e.id)
                    || e.ts_ns < self.gc_cutoff;
                if seen.contains_key(&e.id) {
                    present += 1;
                    expected.push(e);
                } else if !excused {
                    missing += 1;
                }
            }
            let durable = self.durable.contains(&(r, b));
            assert!(
                !(durable && missing > 0),
                "{after}: {missing} events of acknowledged batch ({r}, {b}) are lost"
            );
            assert!(
                present == 0 || missing == 0,
                "{after}: batch ({r}, {b}) is torn: {present} there, {missing} missing"
            );
            if !durable && present > 0 {
                // Written but killed before its acknowledgement: only the run's last batch.
                assert!(
                    self.failed.contains(&(r, b))
                        || self.tried.range((r, b + 1)..(r + 1, 0)).next().is_none(),
                    "{after}: unacknowledged batch ({r}, {b}) is followed by another"
                );
                promoted.push((r, b));
            }
        }
        self.durable.extend(promoted);
        for id in std::mem::take(&mut self.maybe_deleted) {
            if !seen.contains_key(&id) {
                self.deleted.insert(id);
            }
        }
        for (&(r, b), &n) in &self.tried {
            for i in 0..n {
                let e = event(r, b, i);
                if e.ts_ns < self.gc_cutoff && !seen.contains_key(&e.id) {
                    self.gone.insert(e.id);
                }
            }
        }
        self.events_checked += seen.len() as u64;
        assert_eq!(
            store.total_events(),
            seen.len() as u64,
            "{after}: total_events"
        );
        self.check_queries(store, &expected, after, seed);
        self.forget_collected_runs(&seen);
    }

    /// Aggregates, newest-first pages, point lookups and rollups equal those of `expected`.
    fn check_queries(&mut self, store: &Store, expected: &[Ev], after: &str, seed: u64) {
        let user = format!("user-{}", seed % 23);
        let newest = expected.iter().map(|e| e.ts_ns).max().unwrap_or(BASE_TS);
        let mut filters = vec![QueryFilter::<2>::new()];
        let mut f = QueryFilter::new();
        f.dims[0] = Some(user.clone());
        filters.push(f.clone());
        f.from_ts_ns = Some(newest - 2 * RUN_NS);
        f.status_min = Some(200);
        f.status_max = Some(300);
        filters.push(f);
        let mut f = QueryFilter::new();
        f.dims[1] = Some(format!("model-{}", seed % 4));
        f.to_ts_ns = Some(newest - RUN_NS / 4);
        filters.push(f);
        for (k, filter) in filters.iter().enumerate() {
            let want: Vec<&Ev> = expected.iter().filter(|e| matches(filter, e)).collect();
            let got = store.aggregate(filter).unwrap();
            assert_eq!(
                got.event_count,
                want.len() as u64,
                "{after}: filter {k} count"
            );
            assert_eq!(
                got.metric,
                want.iter().map(|e| e.metric).sum::<i64>(),
                "{after}: filter {k} metric"
            );
            assert_eq!(
                got.counters[0],
                want.iter().map(|e| e.counters[0] as u64).sum::<u64>(),
                "{after}: filter {k} counters"
            );
            assert_eq!(
                got.latency_ms_sum,
                want.iter().map(|e| e.latency_ms as u64).sum::<u64>(),
                "{after}: filter {k} latency"
            );
            assert_eq!(got.max_ts_ns, want.iter().map(|e| e.ts_ns).max());
            assert_eq!(got.min_ts_ns, want.iter().map(|e| e.ts_ns).min());
            // Two newest-first pages.
            let mut order: Vec<&Ev> = want.clone();
            order.sort_by(|a, b| (b.ts_ns, &b.id).cmp(&(a.ts_ns, &a.id)));
            let page = store.query_recent(filter, 20).unwrap();
            let ids: Vec<&str> = page.iter().map(|e| e.id.as_str()).collect();
            let want_ids: Vec<&str> = order.iter().take(20).map(|e| e.id.as_str()).collect();
            assert_eq!(ids, want_ids, "{after}: filter {k} newest page");
            if let Some(last) = page.last() {
                let mut next = filter.clone();
                next.cursor = Some(last.into());
                let page2 = store.query_recent(&next, 20).unwrap();
                let ids: Vec<&str> = page2.iter().map(|e| e.id.as_str()).collect();
                let want_ids: Vec<&str> = order
                    .iter()
                    .skip(20)
                    .take(20)
                    .map(|e| e.id.as_str())
                    .collect();
                assert_eq!(ids, want_ids, "{after}: filter {k} second page");
            }
            self.queries_checked += 2;
        }
        // Rollups per (day, user), every day, and one user's.
        let day = |ts: i64| ts.div_euclid(86_400_000_000_000);
        let (lo, hi) = (day(BASE_TS), day(newest) + 1);
        for only in [None, Some(user.as_str())] {
            let mut want: BTreeMap<(i64, String), (u64, i64, u64)> = BTreeMap::new();
            for e in expected {
                if only.is_none_or(|u| e.dims[0] == u) {
                    let w = want.entry((day(e.ts_ns), e.dims[0].clone())).or_default();
                    w.0 += 1;
                    w.1 += e.metric;
                    w.2 += e.counters[0] as u64;
                }
            }
            let got: BTreeMap<(i64, String), (u64, i64, u64)> = store
                .query_rollups(lo, hi, &[only])
                .unwrap()
                .into_iter()
                .filter(|(_, v)| v.event_count > 0)
                .map(|(k, v)| {
                    (
                        (k.day, k.dims[0].clone()),
                        (v.event_count, v.metric, v.counters[0]),
                    )
                })
                .collect();
            assert_eq!(got, want, "{after}: rollups of {only:?}");
            self.queries_checked += 1;
        }
        // Point lookups: a few live ids and a few deleted ones.
        for e in expected.iter().step_by(expected.len() / 5 + 1) {
            let got = store.get_event(&e.id).unwrap().map(|g| g.into_log_event());
            assert_eq!(got.as_ref(), Some(e), "{after}: get_event({})", e.id);
            self.queries_checked += 1;
        }
        for id in self.deleted.iter().take(5) {
            assert!(
                store.get_event(id).unwrap().is_none(),
                "{after}: get_event({id})"
            );
            self.queries_checked += 1;
        }
    }

    /// Drops the bookkeeping of runs that are collectable and have nothing left.
    fn forget_collected_runs(&mut self, seen: &HashMap<String, Ev>) {
        let mut floor = self.floor_run;
        while BASE_TS + (floor as i64 + 1) * RUN_NS <= self.gc_cutoff
            && !seen
                .keys()
                .any(|id| parse_id(id).is_some_and(|(r, _, _)| r == floor))
        {
            floor += 1;
        }
        if floor == self.floor_run {
            return;
        }
        self.floor_run = floor;
        self.tried.retain(|&(r, _), _| r >= floor);
        self.durable.retain(|&(r, _)| r >= floor);
        self.failed.retain(|&(r, _)| r >= floor);
        let keep = |id: &String| parse_id(id).is_some_and(|(r, _, _)| r >= floor);
        self.gone.retain(keep);
        // Deleted ids of forgotten runs stay: a resurrection would fail the floor check anyway,
        // but `get_event` of them is still asked.
        let mut deleted: Vec<String> = self.deleted.drain().collect();
        deleted.sort();
        let (old, new): (Vec<String>, Vec<String>) = deleted.into_iter().partition(|id| !keep(id));
        self.deleted = new
            .into_iter()
            .chain(old.into_iter().rev().take(16))
            .collect();
    }
}

fn matches(f: &QueryFilter<2>, e: &Ev) -> bool {
    f.dims
        .iter()
        .zip(&e.dims)
        .all(|(want, v)| want.as_ref().is_none_or(|w| w == v))
        && f.from_ts_ns.is_none_or(|t| e.ts_ns >= t)
        && f.to_ts_ns.is_none_or(|t| e.ts_ns < t)
        && f.status_min.is_none_or(|s| e.status >= s)
        && f.status_max.is_none_or(|s| e.status < s)
}
