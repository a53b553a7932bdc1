//! cargo-fuzz target: see [`authtrail_fuzz::kinesis_event`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authtrail_fuzz::kinesis_event::run(data));
