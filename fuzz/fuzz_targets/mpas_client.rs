//! cargo-fuzz target: see [`authtrail_fuzz::mpas_client`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authtrail_fuzz::mpas_client::run(data));
