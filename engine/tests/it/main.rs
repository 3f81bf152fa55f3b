//! Integration tests of the engine, one binary (see STYLE.md).

mod common;
mod derive;
mod fixtures;
mod fixtures_v2;
mod fuzz_found;
mod fuzz_seeds;
mod model;
mod model_group;
mod query_pool;
mod recovery;
mod segment_damage;
mod staged;
mod write_path;
