//! The embedded backend: one SQLite file in WAL mode shared by many processes.
//! (Being written; see the module plan in lib.rs.)

use crate::config::EmbeddedConfig;
use crate::error::{Error, Result};

pub struct EmbeddedDatastore;

impl EmbeddedDatastore {
    pub fn open(_config: &EmbeddedConfig) -> Result<Self> {
        Err(Error::Unsupported("embedded datastore not built yet".into()))
    }
}
