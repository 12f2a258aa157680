//! Sluice API types (filled by the API issue).
