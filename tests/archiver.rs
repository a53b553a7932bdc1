//! End-to-end tests: archiver (filled in by its issue).
