//! The stored IPAM objects other than blocks, in upstream libcalico-go's JSON (its `model`
//! package), so a store written by us reads like upstream's and the reverse:
//!
//! - block affinity at `/calico/ipam/v2/host/<node>/ipv4/block/<cidr>`:
//!   `{"state":"pending|confirmed|pendingDeletion","deleted":false}`
//! - handle at `/calico/ipam/v2/handle/<id>`: `{"block":{"10.0.0.0/26":2},"deleted":false}`
//! - IPAM config at `/calico/ipam/v2/config`:
//!   `{"strict_affinity":true,"auto_allocate_blocks":true,"maxBlocksPerHost":4}` (Go's
//!   `omitempty`: false and 0 are left out).
//!
//! Parsing is the only place stored bytes become these types; everything else uses the types.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Upstream's affinity states. An empty or missing state is read as confirmed (older data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AffinityState {
    #[serde(rename = "pending")]
    Pending,
    #[serde(rename = "confirmed", alias = "")]
    Confirmed,
    #[serde(rename = "pendingDeletion")]
    PendingDeletion,
}

/// The value stored at an affinity key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffinityValue {
    #[serde(default = "confirmed")]
    pub state: AffinityState,
    #[serde(default)]
    pub deleted: bool,
}

fn confirmed() -> AffinityState {
    AffinityState::Confirmed
}

impl AffinityValue {
    pub fn new(state: AffinityState) -> Self {
        AffinityValue {
            state,
            deleted: false,
        }
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings and booleans: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The value stored at a handle key: how many addresses the handle holds in each block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleValue {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub block: BTreeMap<String, i64>,
    #[serde(default)]
    pub deleted: bool,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, i64>, D::Error> {
    Ok(Option::<BTreeMap<String, i64>>::deserialize(d)?.unwrap_or_default())
}

impl HandleValue {
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Adds `n` addresses in `block`.
    pub fn increment(&mut self, block: &IpNet, n: usize) {
        *self.block.entry(block.to_string()).or_default() += n as i64;
    }

    /// Removes `n` addresses in `block`; the entry goes when it reaches zero. Never goes below
    /// zero (a handle that under-counts is repaired by `check`, not made worse here).
    pub fn decrement(&mut self, block: &IpNet, n: usize) {
        let key = block.to_string();
        if let Some(count) = self.block.get_mut(&key) {
            *count -= n as i64;
            if *count <= 0 {
                self.block.remove(&key);
            }
        }
    }

    /// Whether the handle holds nothing (upstream deletes such handles).
    pub fn is_empty(&self) -> bool {
        self.block.values().all(|&c| c <= 0)
    }

    /// Total addresses the handle claims to hold.
    pub fn total(&self) -> i64 {
        self.block.values().sum()
    }
}

/// The value stored at `/calico/ipam/v2/config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamConfigValue {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict_affinity: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_allocate_blocks: bool,
    #[serde(rename = "maxBlocksPerHost", default, skip_serializing_if = "is_zero")]
    pub max_blocks_per_host: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The IPAM settings the allocator works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpamConfig {
    pub strict_affinity: bool,
    pub auto_allocate_blocks: bool,
    /// 0 = no configured limit (the allocator then applies upstream's default of 20).
    pub max_blocks_per_host: u32,
}

/// Upstream's safeguard against runaway block claims when no limit is configured.
pub const DEFAULT_MAX_BLOCKS_PER_HOST: u32 = 20;

impl Default for IpamConfig {
    fn default() -> Self {
        IpamConfig {
            strict_affinity: false,
            auto_allocate_blocks: true,
            max_blocks_per_host: 0,
        }
    }
}

impl IpamConfig {
    /// The cap on blocks affine to one host: the configured value, or 20 when 0.
    pub fn effective_max_blocks(&self) -> u32 {
        if self.max_blocks_per_host == 0 {
            DEFAULT_MAX_BLOCKS_PER_HOST
        } else {
            self.max_blocks_per_host
        }
    }

    /// Upstream's rules for a new configuration.
    pub fn validate(&self) -> Result<(), String> {
        if !self.strict_affinity && !self.auto_allocate_blocks {
            return Err(
                "cannot disable both strictAffinity and autoAllocateBlocks: no node could \
                        get addresses; enable one of them"
                    .into(),
            );
        }
        if self.max_blocks_per_host > 0 && !self.strict_affinity {
            return Err(
                "maxBlocksPerHost requires strictAffinity: set --strictaffinity=true as well, \
                        or set --max-blocks-per-host=0"
                    .into(),
            );
        }
        Ok(())
    }
}

impl From<&IpamConfigValue> for IpamConfig {
    fn from(v: &IpamConfigValue) -> Self {
        IpamConfig {
            strict_affinity: v.strict_affinity,
            auto_allocate_blocks: v.auto_allocate_blocks,
            max_blocks_per_host: u32::try_from(v.max_blocks_per_host.max(0)).unwrap_or(u32::MAX),
        }
    }
}

impl From<&IpamConfig> for IpamConfigValue {
    fn from(c: &IpamConfig) -> Self {
        IpamConfigValue {
            strict_affinity: c.strict_affinity,
            auto_allocate_blocks: c.auto_allocate_blocks,
            max_blocks_per_host: i64::from(c.max_blocks_per_host),
        }
    }
}

/// Splits an affinity key back into (host, block CIDR).
pub fn parse_affinity_key(key: &str) -> Option<(String, IpNet)> {
    let rest = key
        .strip_prefix(calico_datastore::keys::IPAM_ROOT)?
        .strip_prefix("host/")?;
    let (host, rest) = rest.split_once('/')?;
    let rest = rest
        .strip_prefix("ipv4/block/")
        .or_else(|| rest.strip_prefix("ipv6/block/"))?;
    let (ip, len) = rest.rsplit_once('-')?;
    let cidr = format!("{ip}/{len}");
    Some((host.to_string(), cidr.parse().ok()?))
}

/// Splits a block key back into the block CIDR.
pub fn parse_block_key(key: &str) -> Option<IpNet> {
    let rest = key
        .strip_prefix(calico_datastore::keys::IPAM_ROOT)?
        .strip_prefix("assignment/")?;
    let rest = rest
        .strip_prefix("ipv4/block/")
        .or_else(|| rest.strip_prefix("ipv6/block/"))?;
    let (ip, len) = rest.rsplit_once('-')?;
    format!("{ip}/{len}").parse().ok()
}

/// The handle id of a handle key.
pub fn parse_handle_key(key: &str) -> Option<&str> {
    key.strip_prefix(calico_datastore::keys::IPAM_ROOT)?
        .strip_prefix("handle/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_datastore::keys;

    #[test]
    fn affinity_json_is_upstreams() {
        let v = AffinityValue::new(AffinityState::Pending);
        assert_eq!(v.to_json(), br#"{"state":"pending","deleted":false}"#);
        let c =
            AffinityValue::from_json(br#"{"state":"pendingDeletion","deleted":false}"#).unwrap();
        assert_eq!(c.state, AffinityState::PendingDeletion);
        let old = AffinityValue::from_json(br#"{"state":""}"#).unwrap();
        assert_eq!(old.state, AffinityState::Confirmed);
        assert_eq!(
            AffinityValue::from_json(b"{}").unwrap().state,
            AffinityState::Confirmed
        );
    }

    #[test]
    fn handle_json_is_upstreams() {
        let mut h = HandleValue::default();
        let b: IpNet = "10.0.0.0/26".parse().unwrap();
        h.increment(&b, 2);
        assert_eq!(
            h.to_json(),
            br#"{"block":{"10.0.0.0/26":2},"deleted":false}"#
        );
        h.decrement(&b, 1);
        assert_eq!(h.total(), 1);
        h.decrement(&b, 5);
        assert!(h.is_empty());
        assert!(h.block.is_empty());
        let null = HandleValue::from_json(br#"{"block":null,"deleted":false}"#).unwrap();
        assert!(null.is_empty());
    }

    #[test]
    fn config_json_is_upstreams() {
        let v = IpamConfigValue::from(&IpamConfig::default());
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"auto_allocate_blocks":true}"#
        );
        let v: IpamConfigValue = serde_json::from_str(
            r#"{"strict_affinity":true,"auto_allocate_blocks":true,"maxBlocksPerHost":4}"#,
        )
        .unwrap();
        let c = IpamConfig::from(&v);
        assert_eq!(c.max_blocks_per_host, 4);
        assert_eq!(c.effective_max_blocks(), 4);
        assert_eq!(IpamConfig::default().effective_max_blocks(), 20);
        assert!(c.validate().is_ok());
        let bad = IpamConfig {
            strict_affinity: false,
            max_blocks_per_host: 3,
            ..c
        };
        assert!(bad.validate().unwrap_err().contains("strictAffinity"));
    }

    #[test]
    fn keys_parse_back() {
        let v4: IpNet = "10.0.0.64/26".parse().unwrap();
        let v6: IpNet = "fd00::40/122".parse().unwrap();
        for net in [v4, v6] {
            let s = net.to_string();
            assert_eq!(parse_block_key(&keys::block_key(&s)), Some(net));
            assert_eq!(
                parse_affinity_key(&keys::affinity_key("node-1", &s)),
                Some(("node-1".to_string(), net))
            );
        }
        assert_eq!(
            parse_handle_key(&keys::handle_key("k8s-pod-network.x")),
            Some("k8s-pod-network.x")
        );
    }
}
