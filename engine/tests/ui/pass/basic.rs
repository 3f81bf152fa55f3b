use keplordb::{Engine, Schema};

#[derive(Schema)]
#[keplordb(id = 1)]
pub struct AiCall {
    #[dim(bloom, rollup)]
    pub user: String,
    #[dim]
    pub model: String,
    #[counter]
    pub tokens: u32,
    #[label]
    pub note: String,
}

fn main() {
    let dir = std::env::temp_dir().join(format!("keplordb-ui-pass-{}", std::process::id()));
    let engine: Engine<2, 1, 1> = Engine::open(AiCall::default_config(dir.clone())).unwrap();
    engine
        .append(&AiCall::new(1).user("alice").model("gpt-4o").tokens(1200).metric(5).status(200).note("hi").into_log_event())
        .unwrap();
    let t = engine.aggregate(&AiCall::filter().user("alice").into_filter()).unwrap();
    assert_eq!(t.event_count, 1);
    assert_eq!((AiCall::DIMS, AiCall::COUNTERS, AiCall::LABELS), (2, 1, 1));
    let _alias: &AiCallEngine = &engine;
    use AiCallFields as _;
    let e = &engine.query_recent(&AiCall::filter().into_filter(), 1).unwrap()[0];
    assert_eq!((e.user(), e.model(), e.tokens(), e.note()), ("alice", "gpt-4o", 1200, "hi"));
    drop(engine);
    std::fs::remove_dir_all(dir).unwrap();
}
