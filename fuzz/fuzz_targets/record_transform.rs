//! cargo-fuzz target: see [`authtrail_fuzz::record_transform`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authtrail_fuzz::record_transform::run(data));
