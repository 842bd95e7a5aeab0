//! CNI specification versions we speak, and which commands each allows. A configuration's
//! `cniVersion` selects the result format (`result.rs`) and gates CHECK (≥ 0.4.0) and
//! STATUS/GC (≥ 1.1.0), as the spec requires.

use std::fmt;
use std::str::FromStr;

use super::error::{CniError, ErrorCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl CniVersion {
    pub const ALL: [CniVersion; 5] = [
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];

    /// The newest version we implement (what VERSION reports as its own).
    pub const LATEST: CniVersion = CniVersion::V1_1_0;

    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// 0.3.x and 0.4.0 results carry `"version": "4"|"6"` on each IP; 1.x results do not.
    pub fn ips_have_version(self) -> bool {
        self < CniVersion::V1_0_0
    }

    pub fn supports_check(self) -> bool {
        self >= CniVersion::V0_4_0
    }

    pub fn supports_status_and_gc(self) -> bool {
        self >= CniVersion::V1_1_0
    }

    /// The VERSION command's answer.
    pub fn version_info_json() -> String {
        let supported: Vec<&str> = CniVersion::ALL.iter().map(|v| v.as_str()).collect();
        let value = serde_json::json!({
            "cniVersion": CniVersion::LATEST.as_str(),
            "supportedVersions": supported,
        });
        value.to_string()
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CniVersion {
    type Err = CniError;

    fn from_str(s: &str) -> Result<Self, CniError> {
        CniVersion::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                let supported: Vec<&str> = CniVersion::ALL.iter().map(|v| v.as_str()).collect();
                CniError::new(
                    ErrorCode::IncompatibleVersion,
                    format!("incompatible CNI version {s:?}"),
                    format!("this plugin supports {}", supported.join(", ")),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order() {
        assert_eq!("0.4.0".parse::<CniVersion>().ok(), Some(CniVersion::V0_4_0));
        assert!(CniVersion::V0_3_1 < CniVersion::V1_0_0);
        let err = "0.2.0".parse::<CniVersion>().expect_err("unsupported");
        assert_eq!(err.code, ErrorCode::IncompatibleVersion);
        assert!(!CniVersion::V0_3_1.supports_check());
        assert!(CniVersion::V1_1_0.supports_status_and_gc());
        assert!(!CniVersion::V1_0_0.supports_status_and_gc());
    }

    #[test]
    fn version_output_is_byte_exact() {
        assert_eq!(
            CniVersion::version_info_json(),
            r#"{"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}"#
        );
    }
}
