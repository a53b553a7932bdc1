//! Placeholder replaced by the Parquet benchmark.
fn main() {}
