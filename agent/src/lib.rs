//! keplor-agent as a library: the pieces the `keplor-agent` binary is made of, public so that
//! integration tests (and programs that embed the sink) can drive them.
//!
//! Architecture invariant: the agent uses only `keplordb`'s public API, as any embedding
//! program would.

#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
pub mod archive;
pub mod config;
pub mod connect;
pub mod demo;
pub mod export;
pub mod fleet;
pub mod http;
pub mod mapping;
pub mod metrics;
pub mod ownership;
pub mod process_metrics;
pub mod query;
pub mod sink;
pub mod top;
