//! The integration tests: one binary (`cargo test --test it`), one module per area, and
//! one harness ([`support`]) shared by all of them.

mod call_record_stream;
mod cli;
mod commit_crash;
mod ddl;
mod delta;
mod emulator;
mod emulator_faults;
mod emulator_logs;
mod flatten_samples;
mod graph_client;
mod incremental;
mod large_record;
mod log_streams;
mod never_lose_a_row;
mod object_store;
mod operators;
mod quality;
mod raw_zone;
mod readers;
mod reliability;
mod schemas;
mod security_auth;
mod security_leaks;
mod security_privacy;
mod support;
mod windows;
