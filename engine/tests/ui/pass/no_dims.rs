use keplordb::Schema;

/// Only counters: a metric stream with no dimensions.
#[derive(Schema)]
#[keplordb(id = 0)]
pub struct Heartbeat {
    #[counter]
    pub beats: u32,
}

#[derive(Schema)]
#[keplordb(id = 255)]
pub struct Empty {}

fn main() {
    let e = Heartbeat::new(5).beats(3).metric(-1).into_log_event();
    assert_eq!(e.counters, [3]);
    assert_eq!(Heartbeat::DIMS, 0);
    let _f: keplordb::QueryFilter<0> = Heartbeat::filter().from_ts(0).to_ts(10).into_filter();
    let c = Empty::default_config("/tmp/x".into());
    assert_eq!(c.schema_id, 255);
    assert!(c.dim_names.is_empty());
}
