//! The caps on an answer and the checks between engine calls, against a real engine.

use super::*;

/// An engine in `dir` (dim `user` keyed by the rollups, counter `tokens`, label `note`) holding
/// `n` events, one a day from day 20000 on, users `u0`..`u2`, event `i` with a note of
/// `note(i)` bytes.
fn engine(dir: &std::path::Path, n: u64, note: impl Fn(u64) -> usize) -> DynEngine {
    let config = keplordb::EngineConfig::new(dir.join("data"))
        .with_columns(["user"], ["tokens"], ["note"])
        .with_rollup_dims(vec![0]);
    let engine = DynEngine::open(config).unwrap();
    let events: Vec<keplordb::DynEvent> = (0..n)
        .map(|i| keplordb::DynEvent {
            id: format!("e{i:03}"),
            ts_ns: (20_000 + i as i64) * NANOS_PER_DAY,
            metric: 1,
            counters: vec![1],
            dims: vec![format!("u{}", i % 3)],
            labels: vec!["x".repeat(note(i))],
            ..Default::default()
        })
        .collect();
    engine.append_batch(&events).unwrap();
    engine
}

fn caps(max_page_bytes: usize, max_rollup_buckets: usize) -> Caps {
    Caps {
        max_limit: 1000,
        max_page_bytes,
        max_rollup_buckets,
    }
}

/// Every page from the newest on: the ids of each page.
fn pages(engine: &DynEngine, limit: usize, caps: &Caps) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut pairs = vec![("limit".to_string(), limit.to_string())];
        pairs.extend(cursor.map(|c| ("cursor".to_string(), c)));
        let p = Params::parse(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str()))).unwrap();
        let page = events(engine, &p, caps, &Cancel::default()).unwrap();
        out.push(page.events.iter().map(|e| e.id.clone()).collect());
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

#[test]
fn an_events_page_stops_at_its_byte_budget_and_goes_on_from_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    // Notes of 1000 bytes; event 7 has one of 5000, larger than the whole budget.
    let engine = engine(dir.path(), 40, |i| if i == 7 { 5000 } else { 1000 });
    let one = {
        let p = Params::parse([("limit", "1")]).unwrap();
        let page = events(&engine, &p, &Caps::NONE, &Cancel::default()).unwrap();
        json_len(&page.events[0])
    };
    let budget = 3 * one + one / 2;
    let got = pages(&engine, 100, &caps(budget, 1));
    let sizes: Vec<usize> = got.iter().map(Vec::len).collect();
    // Three events fit a page; event 7 fills one alone and its neighbours share theirs.
    assert!(sizes.iter().all(|&n| (1..=3).contains(&n)), "{sizes:?}");
    assert!(got.contains(&vec!["e007".to_string()]), "{got:?}");
    let all: Vec<String> = got.concat();
    let want: Vec<String> = (0..40).rev().map(|i| format!("e{i:03}")).collect();
    assert_eq!(all, want, "every event once, newest first");
    // Without a byte cap, `limit` alone cuts the pages.
    let sizes: Vec<usize> = pages(&engine, 16, &Caps::NONE)
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(sizes, [16, 16, 8]);
    // A page as large as the store is the only one.
    let got = pages(&engine, 1000, &caps(usize::MAX, 1));
    assert_eq!(got.len(), 1);
}

#[test]
fn a_page_larger_than_the_first_chunk_is_fetched_in_chunks_sized_by_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 100, |_| 100);
    let p = Params::parse([("limit", "90")]).unwrap();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut cancel = Cancel::default();
    let counted = calls.clone();
    cancel.between_calls = Some(std::sync::Arc::new(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }));
    let page = events(&engine, &p, &Caps::NONE, &cancel).unwrap();
    assert_eq!(page.events.len(), 90);
    assert_eq!(
        page.next_cursor.as_deref(),
        Some(format_cursor(&page.events[89].cursor()).as_str())
    );
    // The first chunk of 16, then the other 74 at once: the budget is not near.
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn a_rollups_answer_over_its_bucket_cap_is_refused_naming_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    // 300 days, one event a day: 300 buckets.
    let engine = engine(dir.path(), 300, |_| 1);
    let p = Params::parse([("from_day", "20000"), ("to_day", "20299")]).unwrap();
    let whole = rollups(&engine, &p, &caps(1, 300), &Cancel::default()).unwrap();
    assert_eq!(whole.buckets.len(), 300);
    // Asked in windows, the answer is the one of a single call.
    let single = engine.query_rollups(20_000, 20_299, &[None]).unwrap();
    let days: Vec<i64> = whole.buckets.iter().map(|b| b.day).collect();
    assert_eq!(days, single.iter().map(|(k, _)| k.day).collect::<Vec<_>>());
    match rollups(&engine, &p, &caps(1, 299), &Cancel::default()) {
        Err(QueryError::TooLarge(m)) => {
            assert!(
                m.contains("http.max_rollup_buckets") && m.contains("from_day"),
                "{m}"
            );
            assert!(m.contains("dim.user"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    // Filtered on a rollup dim, it fits.
    let p = Params::parse([
        ("from_day", "20000"),
        ("to_day", "20299"),
        ("dim.user", "u1"),
    ])
    .unwrap();
    assert_eq!(
        rollups(&engine, &p, &caps(1, 299), &Cancel::default())
            .unwrap()
            .buckets
            .len(),
        100
    );
    // from_day after to_day: no day, no bucket.
    let p = Params::parse([("from_day", "20100"), ("to_day", "20000")]).unwrap();
    assert!(rollups(&engine, &p, &caps(1, 1), &Cancel::default())
        .unwrap()
        .buckets
        .is_empty());
    // The widest range the parameters allow is asked in at most 64 windows.
    let p = Params::parse([
        ("from_day", MIN_DAY.to_string().as_str()),
        ("to_day", MAX_DAY.to_string().as_str()),
    ])
    .unwrap();
    assert_eq!(
        rollups(&engine, &p, &Caps::NONE, &Cancel::default())
            .unwrap()
            .buckets
            .len(),
        300
    );
}

#[test]
fn a_cancelled_query_stops_at_its_next_check() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 100, |_| 10);
    let mut cancel = Cancel::default();
    let c = cancel.clone();
    // Cancelled right after the first engine call.
    cancel.between_calls = Some(std::sync::Arc::new(move || c.cancel()));
    let p = Params::parse([("limit", "90")]).unwrap();
    assert!(matches!(
        events(&engine, &p, &Caps::NONE, &cancel),
        Err(QueryError::Cancelled)
    ));
    let p = Params::parse([("from_day", "0"), ("to_day", "30000")]).unwrap();
    assert!(matches!(
        rollups(&engine, &p, &Caps::NONE, &cancel),
        Err(QueryError::Cancelled)
    ));
}

fn params(pairs: &[(&str, &str)]) -> Params {
    Params::parse(pairs.iter().copied()).unwrap()
}

#[test]
fn top_ranks_groups_exactly_with_an_others_row_and_names_bad_parameters() {
    let dir = tempfile::tempdir().unwrap();
    // 40 events: u0 has 14, u1 and u2 13 each.
    let engine = engine(dir.path(), 40, |_| 1);
    let caps = caps(usize::MAX, 1000);
    let t = top(&engine, &params(&[("limit", "1")]), &caps).unwrap();
    assert_eq!(t.by, ["user"], "the first dim by default");
    assert_eq!(t.order, "count");
    assert_eq!(t.groups.len(), 1);
    assert_eq!(t.groups[0].values["user"], "u0");
    assert_eq!(t.groups[0].aggregate.event_count, 14);
    assert_eq!(t.groups[0].aggregate.counters["tokens"], 14);
    let others = t.others.unwrap();
    assert_eq!((others.event_count, t.total_groups, t.exact), (26, 3, true));
    // Ties (13 and 13) by value; every group when the limit allows.
    let t = top(
        &engine,
        &params(&[("by", "user"), ("order", "tokens")]),
        &caps,
    )
    .unwrap();
    let users: Vec<&str> = t.groups.iter().map(|g| g.values["user"].as_str()).collect();
    assert_eq!(users, ["u0", "u1", "u2"]);
    assert!(t.others.is_none());
    // Under a filter.
    let p = params(&[
        ("by", "user"),
        ("to", &(20_010 * NANOS_PER_DAY).to_string()),
    ]);
    let t = top(&engine, &p, &caps).unwrap();
    let counts: Vec<u64> = t.groups.iter().map(|g| g.aggregate.event_count).collect();
    assert_eq!(counts, [4, 3, 3]);

    for (pairs, parameter) in [
        (&[("by", "nobody")][..], "by"),
        (&[("by", "user,user")][..], "by"),
        (&[("order", "speed")][..], "order"),
        (&[("limit", "1001")][..], "limit"),
    ] {
        match top(&engine, &params(pairs), &caps) {
            Err(QueryError::Param(e)) => assert_eq!(e.parameter, parameter, "{pairs:?}"),
            other => panic!("{pairs:?}: {other:?}"),
        }
    }
}

#[test]
fn series_buckets_split_by_group_and_keep_to_the_bucket_cap() {
    let dir = tempfile::tempdir().unwrap();
    // One event a day for 40 days.
    let engine = engine(dir.path(), 40, |_| 1);
    let caps = caps(usize::MAX, 1000);
    let s = series(
        &engine,
        &params(&[("every", "10d")]),
        &caps,
        &Cancel::default(),
    )
    .unwrap();
    assert_eq!(s.every_ns, 10 * NANOS_PER_DAY);
    let counts: Vec<u64> = s.buckets.iter().map(|b| b.aggregate.event_count).collect();
    assert_eq!(counts, [10, 10, 10, 10]);
    assert_eq!(s.buckets[0].start_ns, 20_000 * NANOS_PER_DAY);
    assert!(s.series.is_empty() && s.by.is_empty());

    let p = params(&[("every", "20d"), ("by", "user"), ("limit", "1")]);
    let s = series(&engine, &p, &caps, &Cancel::default()).unwrap();
    assert_eq!(s.series.len(), 1);
    assert_eq!(s.series[0].values["user"], "u0");
    let per_bucket = |b: &[BucketJson]| {
        b.iter()
            .map(|b| b.aggregate.event_count)
            .collect::<Vec<_>>()
    };
    assert_eq!(per_bucket(&s.series[0].buckets), [7, 7]);
    assert_eq!(per_bucket(s.others.as_ref().unwrap()), [13, 13]);
    assert_eq!(s.total_groups, 3);

    // Daily buckets: 40 of them, past a cap of 39.
    let tight = super::tests::caps(usize::MAX, 39);
    let e = series(
        &engine,
        &params(&[("every", "1d")]),
        &tight,
        &Cancel::default(),
    );
    assert!(matches!(e, Err(QueryError::TooLarge(m)) if m.contains("http.max_rollup_buckets")));
    for bad in ["0m", "1000s", "1.5h", "90", "1w", "01h", ""] {
        let e = Params::parse([("every", bad)]).unwrap_err();
        assert_eq!(e.parameter, "every", "{bad:?}");
    }
    for (good, ns) in [("1s", 1_000_000_000), ("999d", 999 * NANOS_PER_DAY)] {
        let p = Params::parse([("every", good)]).unwrap();
        assert_eq!(p.every_ns, Some(ns));
        assert_eq!(
            Params::parse(p.to_pairs().iter().map(|(a, b)| (a.as_str(), b.as_str()))).unwrap(),
            p
        );
    }
}
