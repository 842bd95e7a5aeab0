//! IPAM resources: IPAMConfiguration (singleton `default`), IPReservation, BlockAffinity.

use super::common::{check_cidr, check_name_ref, resource_struct};
use crate::validate::ValidationErrors;
use serde::{Deserialize, Deserializer, Serialize};

resource_struct!(
    /// `kind: IPAMConfiguration`; only the object named `default` is used.
    IPAMConfiguration,
    IPAMConfigurationSpec
);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPAMConfigurationSpec {
    /// When true, a node never borrows addresses from another node's block.
    #[serde(default)]
    pub strict_affinity: bool,
    /// Whether nodes claim new blocks on their own (libcalico-go's IPAMConfig field; true when
    /// absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_allocate_blocks: Option<bool>,
    /// Cap on blocks affine to one host; 0 = upstream's built-in limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_blocks_per_host: i32,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

impl IPAMConfigurationSpec {
    pub fn auto_allocate(&self) -> bool {
        self.auto_allocate_blocks.unwrap_or(true)
    }
}

impl IPAMConfiguration {
    pub fn apply_defaults(&mut self) {}

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        if self.metadata.name != "default" {
            errs.push(
                "metadata.name",
                format!(
                    "IPAMConfiguration is a singleton; name it \"default\" (not {:?})",
                    self.metadata.name
                ),
            );
        }
        let s = &self.spec;
        if s.max_blocks_per_host < 0 {
            errs.push(
                "spec.maxBlocksPerHost",
                "must be 0 (no limit) or a positive number",
            );
        }
        if !s.strict_affinity && !s.auto_allocate() {
            errs.push("spec.autoAllocateBlocks", "autoAllocateBlocks: false requires strictAffinity: true (otherwise no node could get addresses)");
        }
        if s.max_blocks_per_host > 0 && !s.strict_affinity {
            errs.push("spec.maxBlocksPerHost", "maxBlocksPerHost only applies with strictAffinity: true; set strictAffinity or remove maxBlocksPerHost");
        }
        errs.into_result()
    }
}

resource_struct!(
    /// `kind: IPReservation`: addresses IPAM must never hand out.
    IPReservation,
    IPReservationSpec
);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPReservationSpec {
    #[serde(
        default,
        rename = "reservedCIDRs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub reserved_cidrs: Vec<String>,
}

impl IPReservation {
    pub fn apply_defaults(&mut self) {}
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        for (i, c) in self.spec.reserved_cidrs.iter().enumerate() {
            check_cidr(c, &format!("spec.reservedCIDRs[{i}]"), &mut errs);
        }
        errs.into_result()
    }
}

resource_struct!(
    /// `kind: BlockAffinity`: which node owns which IPAM block (written by IPAM, not users).
    BlockAffinity,
    BlockAffinitySpec
);

/// Affinity lifecycle: pending → confirmed → pendingDeletion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BlockAffinityState {
    #[default]
    Pending,
    Confirmed,
    PendingDeletion,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlockAffinitySpec {
    #[serde(default)]
    pub state: BlockAffinityState,
    #[serde(default)]
    pub node: String,
    /// `host` (default) or `virtual`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub affinity_type: Option<String>,
    #[serde(default)]
    pub cidr: String,
    /// Upstream stores this as the string "true"/"false" for old readers; both forms are read.
    #[serde(
        default,
        deserialize_with = "bool_or_string",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub deleted: bool,
}

fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Str(String),
    }
    match B::deserialize(d)? {
        B::Bool(b) => Ok(b),
        B::Str(s) if s.is_empty() || s == "false" => Ok(false),
        B::Str(s) if s == "true" => Ok(true),
        B::Str(s) => Err(serde::de::Error::custom(format!(
            "deleted must be true or false, not {s:?}"
        ))),
    }
}

impl BlockAffinity {
    pub fn apply_defaults(&mut self) {}
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let s = &self.spec;
        if s.node.is_empty() {
            errs.push(
                "spec.node",
                "a BlockAffinity names the node that owns the block; set spec.node",
            );
        } else {
            check_name_ref(&s.node, "spec.node", &mut errs);
        }
        super::common::check_net(&s.cidr, "spec.cidr", &mut errs);
        if let Some(t) = &s.affinity_type {
            super::common::check_one_of(t, &["host", "virtual"], "spec.type", &mut errs);
        }
        if s.deleted {
            errs.push(
                "spec.deleted",
                "deleted cannot be set to true by a user; delete the BlockAffinity instead",
            );
        }
        errs.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipam_config_rules() {
        let mut c = IPAMConfiguration::new("default");
        assert!(c.validate().is_ok());
        c.spec.auto_allocate_blocks = Some(false);
        let e = c.validate().unwrap_err();
        assert_eq!(e.0[0].field, "spec.autoAllocateBlocks");
        c.spec.strict_affinity = true;
        assert!(c.validate().is_ok());
        c.spec.strict_affinity = false;
        c.spec.auto_allocate_blocks = None;
        c.spec.max_blocks_per_host = 4;
        assert_eq!(
            c.validate().unwrap_err().0[0].field,
            "spec.maxBlocksPerHost"
        );
        c.spec.max_blocks_per_host = -1;
        c.spec.strict_affinity = true;
        assert_eq!(
            c.validate().unwrap_err().0[0].field,
            "spec.maxBlocksPerHost"
        );
        let other = IPAMConfiguration::new("mine");
        assert_eq!(other.validate().unwrap_err().0[0].field, "metadata.name");
    }

    #[test]
    fn block_affinity_reads_string_deleted() {
        let a: BlockAffinity = serde_json::from_str(
            r#"{"apiVersion":"projectcalico.org/v3","kind":"BlockAffinity","metadata":{"name":"n-10-0-0-0-26"},
                "spec":{"state":"confirmed","node":"n","cidr":"10.0.0.0/26","deleted":"false"}}"#,
        )
        .unwrap();
        assert!(!a.spec.deleted);
        assert_eq!(a.spec.state, BlockAffinityState::Confirmed);
        assert!(a.validate().is_ok());
    }

    #[test]
    fn reservations_need_cidrs() {
        let mut r = IPReservation::new("r");
        r.spec.reserved_cidrs = vec!["10.0.0.1".into(), "10.0.1.0/24".into(), "x".into()];
        assert_eq!(
            r.validate().unwrap_err().0[0].field,
            "spec.reservedCIDRs[2]"
        );
    }
}
