//! cargo-fuzz target: see [`authtrail_fuzz::forwarder_config`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authtrail_fuzz::forwarder_config::run(data));
