//! The derive end to end: typed round trips and the schema guard between derived schemas.

use keplordb::{DbError, Engine, Schema};

#[derive(Debug, Schema, PartialEq)]
#[keplordb(id = 1)]
pub struct AiCall {
    #[dim(bloom, rollup)]
    pub user: String,
    #[dim]
    pub model: String,
    #[counter]
    pub tokens: u32,
}

/// Same id, other fields.
#[derive(Debug, Schema)]
#[keplordb(id = 1)]
pub struct AiCallV2 {
    #[dim(bloom, rollup)]
    pub user: String,
    #[dim]
    pub model: String,
    #[counter]
    pub tokens: u32,
    #[counter]
    pub cached_tokens: u32,
}

/// Other id, same shape.
#[derive(Debug, Schema)]
#[keplordb(id = 2)]
pub struct Other {
    #[dim(bloom, rollup)]
    pub user: String,
    #[dim]
    pub model: String,
    #[counter]
    pub tokens: u32,
}

#[test]
fn typed_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let engine = AiCall::open(dir.path()).unwrap();
    let call = AiCall {
        user: "alice".into(),
        model: "gpt-4o".into(),
        tokens: 1200,
    };
    engine
        .append(&call.at(10).metric(5).status(200).into_log_event())
        .unwrap();
    engine
        .append(
            &AiCall::new(11)
                .user("bob")
                .model("claude")
                .tokens(7)
                .into_log_event(),
        )
        .unwrap();
    let got = engine
        .query_recent(&AiCall::filter().user("alice").into_filter(), 10)
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(AiCall::from_event(&got[0]), call);
    assert_eq!(got[0].id.len(), 32, "a generated id");
    let both = engine
        .query_recent(&AiCall::filter().into_filter(), 10)
        .unwrap();
    assert_ne!(both[0].id, both[1].id);
    let by_time = engine
        .aggregate(&AiCall::filter().from_ts(11).to_ts(12).into_filter())
        .unwrap();
    assert_eq!(by_time.counters, [7]);
}

#[test]
fn opening_with_another_schema_names_both() {
    let dir = tempfile::tempdir().unwrap();
    drop(AiCall::open(dir.path()).unwrap());

    let err = AiCallV2::open(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DbError::SchemaMismatch { .. }), "{err}");
    assert!(
        msg.contains("counters: tokens, cached_tokens") && msg.contains("counters: tokens |"),
        "{msg}"
    );

    let err = Other::open(dir.path()).unwrap_err();
    match err {
        DbError::SchemaMismatch {
            expected, found, ..
        } => {
            assert_eq!((expected.schema_id, found.schema_id), (2, 1));
        }
        e => panic!("{e}"),
    }
}

#[test]
fn engine_type_must_match_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let err = Engine::<3, 1, 0>::open(AiCall::default_config(dir.path().into())).unwrap_err();
    assert!(
        matches!(&err, DbError::InvalidConfig { field: "dim_names", reason } if reason.contains("2 names given, but the engine type declares 3")),
        "{err}"
    );
    // Nothing was created.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
