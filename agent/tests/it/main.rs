//! Agent integration tests against librdkafka's in-process mock cluster, one binary.

mod agent_kills;
mod archive_duckdb;
mod archive_kills;
mod backpressure;
mod cli_tls;
mod common;
mod console;
mod delivery;
mod errors;
mod export_cli;
mod exposition;
mod fleet_api;
mod fleet_campaign;
mod fleet_figures;
mod fuzz_seeds;
mod http_cli;
mod mid_batch;
mod openapi;
mod process;
mod readiness;
mod real_cluster;
mod security;
mod soak;
mod tansu;
mod top_series;
mod undecodable;
