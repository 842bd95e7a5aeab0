//! One module per kind. Each kind is `{apiVersion, kind, metadata, spec}` with upstream's exact
//! camelCase field names, plus `apply_defaults` and `validate`.

mod envelope;
pub use envelope::*;

pub mod ippool;
pub use ippool::*;
