//! Our own CNI specification layer (no upstream code): everything a plugin needs to speak CNI
//! 0.3.0 … 1.1.0 to runtimes, and nothing about Calico itself.
//!
//! - `env`: CNI_* variables, CNI_ARGS (IgnoreUnknown) and CNI_PATH.
//! - `config`: the network configuration (upstream Calico's fields) → `NetConf`.
//! - `result`: results printed per version; parsed from IPAM plugins and `prevResult`.
//! - `error`: CNI error JSON and codes.
//! - `version`: supported versions, VERSION output, per-command gating.
//! - `delegate`: run the IPAM plugin found on CNI_PATH.
//! - `run`: one invocation end to end (`dispatch`), never panicking on input.

pub mod config;
pub mod delegate;
pub mod env;
pub mod error;
pub mod result;
pub mod run;
pub mod version;

pub use config::NetConf;
pub use env::{CniArgs, Command, Environment};
pub use error::{CniError, ErrorCode};
pub use result::{CniResult, Dns, Interface, IpConfig, RouteResult};
pub use run::{Outcome, Plugin, Request, dispatch};
pub use version::CniVersion;
