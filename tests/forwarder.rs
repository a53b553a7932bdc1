//! End-to-end tests: forwarder (filled in by its issue).
