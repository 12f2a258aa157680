//! restic's content-defined chunker (placeholder until the chunker lands).
