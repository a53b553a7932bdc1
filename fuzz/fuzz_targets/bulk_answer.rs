//! cargo-fuzz target: see [`authtrail_fuzz::bulk_answer`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authtrail_fuzz::bulk_answer::run(data));
