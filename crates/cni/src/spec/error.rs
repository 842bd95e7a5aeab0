//! CNI errors: the spec's well-known codes, a message and details, printed as
//! `{"cniVersion", "code", "msg", "details"}` on stdout with a non-zero exit status.

use std::fmt;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// Error codes from the CNI specification (1–99 reserved), plus our plugin-specific ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    IncompatibleVersion,
    UnsupportedField,
    UnknownContainer,
    InvalidEnvironment,
    Io,
    Decode,
    InvalidNetworkConfig,
    TryAgainLater,
    /// A delegated or plugin-specific code (≥ 100; we use 999 for internal failures).
    Other(u32),
}

/// Our generic plugin-specific failure (datastore, dataplane, IPAM exhausted, …).
pub const CODE_PLUGIN: u32 = 999;

impl ErrorCode {
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::IncompatibleVersion => 1,
            ErrorCode::UnsupportedField => 2,
            ErrorCode::UnknownContainer => 3,
            ErrorCode::InvalidEnvironment => 4,
            ErrorCode::Io => 5,
            ErrorCode::Decode => 6,
            ErrorCode::InvalidNetworkConfig => 7,
            ErrorCode::TryAgainLater => 11,
            ErrorCode::Other(c) => c,
        }
    }

    pub fn from_code(code: u32) -> ErrorCode {
        match code {
            1 => ErrorCode::IncompatibleVersion,
            2 => ErrorCode::UnsupportedField,
            3 => ErrorCode::UnknownContainer,
            4 => ErrorCode::InvalidEnvironment,
            5 => ErrorCode::Io,
            6 => ErrorCode::Decode,
            7 => ErrorCode::InvalidNetworkConfig,
            11 => ErrorCode::TryAgainLater,
            c => ErrorCode::Other(c),
        }
    }
}

/// A CNI error result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CniError {
    pub code: ErrorCode,
    pub msg: String,
    pub details: String,
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            write!(f, "{} (code {})", self.msg, self.code.code())
        } else {
            write!(
                f,
                "{}: {} (code {})",
                self.msg,
                self.details,
                self.code.code()
            )
        }
    }
}

impl CniError {
    pub fn new(code: ErrorCode, msg: impl Into<String>, details: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// A plugin-specific failure (code 999).
    pub fn plugin(msg: impl Into<String>, details: impl Into<String>) -> Self {
        CniError::new(ErrorCode::Other(CODE_PLUGIN), msg, details)
    }

    /// The JSON printed on stdout. `cniVersion` is the configuration's when it was readable,
    /// else our latest.
    pub fn to_json(&self, cni_version: &str) -> String {
        let out = ErrorOut {
            version: cni_version,
            err: self,
        };
        serde_json::to_string(&out).unwrap_or_else(|_| {
            // Serializing strings and a number cannot fail; keep a valid answer regardless.
            format!(r#"{{"cniVersion":"{cni_version}","code":{}}}"#, CODE_PLUGIN)
        })
    }
}

struct ErrorOut<'a> {
    version: &'a str,
    err: &'a CniError,
}

impl Serialize for ErrorOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("cniVersion", self.version)?;
        m.serialize_entry("code", &self.err.code.code())?;
        m.serialize_entry("msg", &self.err.msg)?;
        if !self.err.details.is_empty() {
            m.serialize_entry("details", &self.err.details)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_is_byte_exact() {
        let e = CniError::new(
            ErrorCode::InvalidNetworkConfig,
            "invalid network configuration",
            "mtu: 70000 > 65535",
        );
        assert_eq!(
            e.to_json("1.0.0"),
            r#"{"cniVersion":"1.0.0","code":7,"msg":"invalid network configuration","details":"mtu: 70000 > 65535"}"#
        );
        let e = CniError::new(ErrorCode::TryAgainLater, "datastore busy", "");
        assert_eq!(
            e.to_json("0.4.0"),
            r#"{"cniVersion":"0.4.0","code":11,"msg":"datastore busy"}"#
        );
        assert_eq!(ErrorCode::from_code(4), ErrorCode::InvalidEnvironment);
        assert_eq!(ErrorCode::from_code(1234).code(), 1234);
    }
}
