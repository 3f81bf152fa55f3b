//! Appends, rotation, reopen.

use crate::common::*;

#[test]
fn append_flush_reopen_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Ev> = (0..5000).map(event).collect();
    {
        let engine = TestEngine::open(config(dir.path())).unwrap();
        for chunk in events.chunks(100) {
            engine.append_batch(chunk).unwrap();
        }
        assert_eq!(engine.total_events(), 5000);
        assert_eq!(all_events(&engine), events);
        engine.flush().unwrap();
        assert_eq!(engine.total_events(), 5000);
        assert_eq!(all_events(&engine), events);
        for e in (5000..5100).map(event) {
            engine.append(&e).unwrap();
        }
    }
    let engine = TestEngine::open(config(dir.path())).unwrap();
    let mut expect = events.clone();
    expect.extend((5000..5100).map(event));
    assert_eq!(engine.total_events(), 5100);
    assert_eq!(all_events(&engine), expect);
}
