//! End-to-end tooling (filled by the e2e issue).
