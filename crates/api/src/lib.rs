//! The projectcalico.org/v3 resource model.
//!
//! Everything that crosses the user boundary (YAML/JSON from `calicoctl`, values read back from a
//! datastore) is parsed here into typed resources, defaulted, and validated. Nothing in this crate
//! performs I/O, so every rule is unit-testable.
//!
//! ```text
//!   text ──codec::parse_documents──▶ Vec<Resource> ──Resource::default_and_validate──▶ stored
//!   stored bytes ──Resource::from_json──▶ Resource ──codec::to_yaml/to_json──▶ text
//! ```

pub mod codec;
pub mod kind;
pub mod meta;
pub mod naming;
pub mod resource;
pub mod resources;
pub mod selector;
pub mod validate;

pub use kind::Kind;
pub use meta::ObjectMeta;
pub use resource::Resource;
pub use validate::{FieldError, ValidationErrors};

/// The apiVersion of every resource in this crate.
pub const API_VERSION: &str = "projectcalico.org/v3";
