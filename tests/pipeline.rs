//! End-to-end tests: pipeline (filled in by its issue).
