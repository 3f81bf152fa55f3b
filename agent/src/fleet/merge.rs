//! Merging the members' answers as if one store had answered (the rules are in the module
//! documentation of `crate::fleet`).

use std::collections::BTreeMap;

use crate::api::{AggregateResponse, EventJson, EventsResponse, RollupBucket, RollupsResponse};

/// Sums partial aggregates.
pub fn merge_aggregates(parts: impl IntoIterator<Item = AggregateResponse>) -> AggregateResponse {
    let mut total = AggregateResponse::default();
    for p in parts {
        total.merge(&p);
    }
    total
}

/// Merges newest-first pages that answered the same cursor with the same `limit`, into a page
/// of at most `limit` events and `max_bytes` of their JSON (at least one event).
///
/// A member's page that ends with a `next_cursor` may have stopped short of `limit` (its own
/// byte budget): it has more events, all older than its last one. The merged page therefore
/// stops at the newest such last event (the *frontier*), so that no member's unseen event is
/// skipped by the merged `next_cursor`.
pub fn merge_pages(
    parts: impl IntoIterator<Item = EventsResponse>,
    limit: usize,
    max_bytes: usize,
) -> EventsResponse {
    let mut all: Vec<EventJson> = Vec::new();
    let mut frontier: Option<(i64, String)> = None;
    let mut more = false;
    for p in parts {
        if p.next_cursor.is_some() {
            more = true;
            if let Some(last) = p.events.last() {
                let key = (last.ts_ns, last.id.clone());
                if frontier.as_ref().is_none_or(|f| key > *f) {
                    frontier = Some(key);
                }
            }
        }
        all.extend(p.events);
    }
    all.sort_by(|a, b| (b.ts_ns, &b.id).cmp(&(a.ts_ns, &a.id)));
    // One event stored twice (a partition replayed by its new owner) is shown once.
    all.dedup_by(|a, b| a.id == b.id && a.ts_ns == b.ts_ns);
    if let Some((ts, id)) = &frontier {
        all.retain(|e| (e.ts_ns, &e.id) >= (*ts, id));
    }
    let mut cut = all.len() > limit;
    all.truncate(limit);
    let mut bytes = 0usize;
    let fit = all
        .iter()
        .position(|e| {
            bytes = bytes.saturating_add(crate::api::json_len(e));
            bytes > max_bytes
        })
        .map_or(all.len(), |i| i.max(1));
    cut |= fit < all.len();
    all.truncate(fit);
    let next_cursor = (cut || more || all.len() == limit)
        .then(|| all.last().map(|e| crate::api::format_cursor(&e.cursor())))
        .flatten();
    EventsResponse {
        events: all,
        next_cursor,
    }
}

/// Sums rollup buckets per (day, dims), in (day, dims) order.
pub fn merge_rollups(parts: impl IntoIterator<Item = RollupsResponse>) -> RollupsResponse {
    let mut merged: BTreeMap<(i64, BTreeMap<String, String>), RollupBucket> = BTreeMap::new();
    for b in parts.into_iter().flat_map(|p| p.buckets) {
        match merged.get_mut(&(b.day, b.dims.clone())) {
            Some(m) => {
                m.event_count += b.event_count;
                m.metric = m.metric.saturating_add(b.metric);
                for (k, v) in b.counters {
                    *m.counters.entry(k).or_default() += v;
                }
            }
            None => {
                merged.insert((b.day, b.dims.clone()), b);
            }
        }
    }
    RollupsResponse {
        buckets: merged.into_values().collect(),
    }
}

/// The event found by any member; the newest copy (then the greatest id) if several have one.
pub fn pick_event(parts: impl IntoIterator<Item = EventJson>) -> Option<EventJson> {
    parts
        .into_iter()
        .max_by(|a, b| (a.ts_ns, &a.id).cmp(&(b.ts_ns, &b.id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::json_len;

    fn ev(id: &str, ts: i64) -> EventJson {
        EventJson {
            id: id.into(),
            ts_ns: ts,
            metric: 1,
            latency_ms: 0,
            latency_detail_ms: 0,
            status: 200,
            flags: 0,
            dims: BTreeMap::new(),
            counters: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }

    fn page(events: Vec<EventJson>) -> EventsResponse {
        EventsResponse {
            events,
            next_cursor: None,
        }
    }

    fn ids(r: &EventsResponse) -> Vec<&str> {
        r.events.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn aggregates_are_summed() {
        let a = AggregateResponse {
            event_count: 2,
            metric: 10,
            counters: [("tokens".to_string(), 5)].into(),
            latency_ms_sum: 7,
            latency_detail_ms_sum: 1,
            min_ts_ns: Some(5),
            max_ts_ns: Some(9),
        };
        let b = AggregateResponse {
            event_count: 3,
            metric: -4,
            counters: [("tokens".to_string(), 6)].into(),
            latency_ms_sum: 1,
            latency_detail_ms_sum: 2,
            min_ts_ns: Some(3),
            max_ts_ns: Some(8),
        };
        let empty = AggregateResponse::default();
        let m = merge_aggregates([a, empty, b]);
        assert_eq!(m.event_count, 5);
        assert_eq!(m.metric, 6);
        assert_eq!(m.counters["tokens"], 11);
        assert_eq!((m.latency_ms_sum, m.latency_detail_ms_sum), (8, 3));
        assert_eq!((m.min_ts_ns, m.max_ts_ns), (Some(3), Some(9)));
        assert_eq!(merge_aggregates([]), AggregateResponse::default());
    }

    #[test]
    fn pages_interleave_newest_first_and_cut_at_limit() {
        let a = page(vec![ev("a3", 30), ev("a2", 20), ev("a1", 10)]);
        let b = page(vec![ev("b2", 25), ev("b1", 20)]);
        let m = merge_pages([a.clone(), b.clone()], 3, usize::MAX);
        assert_eq!(ids(&m), ["a3", "b2", "b1"], "ties on ts: id descending");
        assert_eq!(m.next_cursor.as_deref(), Some("20:b1"));
        let m = merge_pages([a, b], 10, usize::MAX);
        assert_eq!(ids(&m), ["a3", "b2", "b1", "a2", "a1"]);
        assert_eq!(m.next_cursor, None, "a page that is not full is the last");
        assert_eq!(merge_pages([], 5, usize::MAX), EventsResponse::default());
    }

    #[test]
    fn pages_show_an_event_stored_twice_once() {
        let a = page(vec![ev("x", 5), ev("w", 4)]);
        let b = page(vec![ev("x", 5), ev("v", 3)]);
        let m = merge_pages([a, b], 3, usize::MAX);
        assert_eq!(ids(&m), ["x", "w", "v"]);
    }

    #[test]
    fn a_member_page_cut_short_holds_the_merge_at_its_last_event() {
        // `a` stopped after two events for its byte budget: its next one may be older than
        // 25 but newer than anything `b` has left.
        let a = EventsResponse {
            events: vec![ev("a3", 30), ev("a2", 25)],
            next_cursor: Some("25:a2".into()),
        };
        let b = page(vec![ev("b2", 27), ev("b1", 10)]);
        let m = merge_pages([a.clone(), b.clone()], 10, usize::MAX);
        assert_eq!(ids(&m), ["a3", "b2", "a2"], "b1 waits for a's next page");
        assert_eq!(m.next_cursor.as_deref(), Some("25:a2"));
        // The merged page keeps to the byte budget too, with at least one event.
        let one = json_len(&ev("a3", 30));
        let m = merge_pages([a.clone(), b.clone()], 10, 2 * one);
        assert_eq!(ids(&m), ["a3", "b2"]);
        assert_eq!(m.next_cursor.as_deref(), Some("27:b2"));
        let m = merge_pages([a, b], 10, 1);
        assert_eq!(ids(&m), ["a3"]);
        assert_eq!(m.next_cursor.as_deref(), Some("30:a3"));
    }

    #[test]
    fn paging_the_merge_with_its_cursor_visits_every_event_once() {
        // Three members, each answering like the engine: newest first, strictly after the cursor.
        let members: Vec<Vec<EventJson>> = (0..3)
            .map(|m| {
                (0..40)
                    .map(|i| ev(&format!("m{m}-{i:02}"), (i * 7 + m * 3) % 50))
                    .collect()
            })
            .collect();
        // Each member also cuts its page at a byte budget of about `budget` events, as the
        // agent does; the merge keeps to one of its own.
        let size = json_len(&ev("m0-00", 0));
        let answer =
            |events: &[EventJson], cursor: Option<(i64, String)>, limit: usize, budget: usize| {
                let mut v: Vec<EventJson> = events
                    .iter()
                    .filter(|e| {
                        cursor.as_ref().is_none_or(|(ts, id)| {
                            e.ts_ns < *ts || (e.ts_ns == *ts && e.id.as_str() < id.as_str())
                        })
                    })
                    .cloned()
                    .collect();
                v.sort_by(|a, b| (b.ts_ns, &b.id).cmp(&(a.ts_ns, &a.id)));
                let full = v.len() > limit.min(budget);
                v.truncate(limit.min(budget));
                EventsResponse {
                    next_cursor: full
                        .then(|| v.last().map(|e| crate::api::format_cursor(&e.cursor())))
                        .flatten(),
                    events: v,
                }
            };
        for (member_budget, merge_budget) in
            [(usize::MAX, usize::MAX), (3, usize::MAX), (2, 5), (7, 1)]
        {
            let mut cursor = None;
            let mut seen = Vec::new();
            loop {
                let m = merge_pages(
                    members
                        .iter()
                        .map(|e| answer(e, cursor.clone(), 7, member_budget)),
                    7,
                    merge_budget.saturating_mul(size),
                );
                assert!(!m.events.is_empty() || m.next_cursor.is_none());
                seen.extend(m.events.iter().map(|e| (e.ts_ns, e.id.clone())));
                let Some(c) = m.next_cursor else { break };
                let (ts, id) = c.split_once(':').unwrap();
                cursor = Some((ts.parse().unwrap(), id.to_string()));
            }
            assert_eq!(seen.len(), 120, "budgets {member_budget}, {merge_budget}");
            assert!(
                seen.windows(2).all(|w| w[0] > w[1]),
                "strictly newest first"
            );
        }
    }

    #[test]
    fn rollups_are_summed_per_day_and_dims() {
        let bucket = |day, user: &str, n, tokens| RollupBucket {
            day,
            dims: [("user".to_string(), user.to_string())].into(),
            event_count: n,
            metric: n as i64,
            counters: [("tokens".to_string(), tokens)].into(),
        };
        let a = RollupsResponse {
            buckets: vec![bucket(2, "u1", 1, 10), bucket(1, "u1", 2, 20)],
        };
        let b = RollupsResponse {
            buckets: vec![bucket(1, "u1", 3, 30), bucket(1, "u2", 4, 40)],
        };
        let m = merge_rollups([a, b]);
        let got: Vec<_> = m
            .buckets
            .iter()
            .map(|b| {
                (
                    b.day,
                    b.dims["user"].as_str(),
                    b.event_count,
                    b.counters["tokens"],
                )
            })
            .collect();
        assert_eq!(got, [(1, "u1", 5, 50), (1, "u2", 4, 40), (2, "u1", 1, 10)]);
    }

    #[test]
    fn a_lookup_takes_any_member_that_has_the_event() {
        assert_eq!(pick_event([]), None);
        let got = pick_event([ev("x", 5), ev("x", 7)]).unwrap();
        assert_eq!(got.ts_ns, 7, "the newest copy");
    }
}
