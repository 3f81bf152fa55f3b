//! End-to-end tests, one binary.

#[path = "../bin/crash_child.rs"]
#[allow(dead_code)]
mod child;
mod crash;
mod faults;
mod model;
mod parquet_export;
mod segment_export;
mod shim;
