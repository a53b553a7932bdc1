//! End-to-end tests: producer (filled in by its issue).
