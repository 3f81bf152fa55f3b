//! Agent integration tests against librdkafka's in-process mock cluster, one binary.

mod common;
mod delivery;
mod errors;
mod http_cli;
mod process;
