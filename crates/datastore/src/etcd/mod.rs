//! The etcd v3 backend. (Being written.)

use crate::config::EtcdConfig;
use crate::error::{Error, Result};

pub struct EtcdDatastore;

impl EtcdDatastore {
    pub async fn connect(_config: &EtcdConfig) -> Result<Self> {
        Err(Error::Unsupported("etcd datastore not built yet".into()))
    }
}
