//! Datastore errors. Messages name the key or endpoint and what to do.

use crate::Revision;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{key} does not exist")]
    NotFound { key: String },
    #[error("{key} already exists")]
    AlreadyExists { key: String },
    #[error(
        "{key} was modified concurrently (expected revision {expected}, found {actual}); re-read it and retry"
    )]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    #[error(
        "revision {requested} has been compacted (oldest kept: {compacted}); relist and watch again"
    )]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("cannot reach the datastore at {endpoint}: {reason}")]
    Unavailable { endpoint: String, reason: String },
    #[error("invalid datastore configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("datastore backend error: {0}")]
    Backend(String),
    #[error("stored value at {key} is not valid: {reason}")]
    Corrupt { key: String, reason: String },
}
