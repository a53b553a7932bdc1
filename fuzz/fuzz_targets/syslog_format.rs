//! cargo-fuzz target: see [`authtrail_fuzz::syslog_format`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authtrail_fuzz::syslog_format::run(data));
