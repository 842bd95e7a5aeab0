//! One IPAM allocation block: upstream's `AllocationBlock` and its pure operations.
//!
//! A block covers a CIDR of `size` addresses, each named by its ordinal (offset from the network
//! address). Every ordinal is in exactly one of two places: `allocations[o] = Some(attr index)`
//! (held, the attribute says by which handle and owner) or `unallocated` (free, in FIFO order:
//! allocation takes from the head, release appends to the tail, which delays reuse).
//!
//! Sequence numbers stop ABA races: each held ordinal records the block's `sequenceNumber` at the
//! time it was handed out, and every operation that changes the block then increments
//! `sequenceNumber` (one operation = one datastore write). A release that names a sequence number
//! succeeds only if the ordinal still carries it, so a stale release can never free an address
//! that was released and handed to someone else since.
//!
//! The JSON form is byte-compatible with upstream's etcd values (field names and nulls as Go's
//! encoder writes them). [`AllocationBlock::from_json`] checks every invariant, so the operations
//! can rely on them; they still never index without a bound check.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

/// Largest block upstream allows (IPv4 /20, IPv6 /116): 4096 addresses.
pub const MAX_BLOCK_ADDRESSES: usize = 4096;

/// Affinity prefix for blocks owned by a node.
pub const AFFINITY_HOST: &str = "host";
/// Affinity prefix for blocks owned by a virtual entity (e.g. a load-balancer pool).
pub const AFFINITY_VIRTUAL: &str = "virtual";

/// Errors of block operations and of reading a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error(
        "block CIDR {cidr} has {bits} host bits; blocks hold at most {MAX_BLOCK_ADDRESSES} \
         addresses (IPv4 /20..=/32, IPv6 /116..=/128): use a larger IP pool blockSize"
    )]
    TooLarge { cidr: IpNet, bits: u8 },
    #[error("address {ip} is not in block {cidr}")]
    NotInBlock { ip: IpAddr, cidr: IpNet },
    #[error(
        "address {ip} in block {cidr} is already assigned; pick another address or release it first"
    )]
    AlreadyAssigned { ip: IpAddr, cidr: IpNet },
    #[error(
        "release of {ip} in block {cidr} names sequence number {requested} but the allocation \
         has {actual}: the address was released and handed out again since; not releasing it"
    )]
    SequenceMismatch {
        ip: IpAddr,
        cidr: IpNet,
        requested: u64,
        actual: u64,
    },
    #[error(
        "release of {ip} in block {cidr} names handle {requested:?} but the address belongs to \
         {actual:?}; not releasing it"
    )]
    HandleMismatch {
        ip: IpAddr,
        cidr: IpNet,
        requested: String,
        actual: String,
    },
    #[error("IPAM block value is not valid JSON for an AllocationBlock: {0}")]
    Json(String),
    #[error("IPAM block {cidr} is inconsistent: {problem}; run `calicoctl ipam check`")]
    Corrupt { cidr: IpNet, problem: String },
}

/// Who holds an allocation: a handle (e.g. `k8s-pod-network.<containerID>`) and owner attributes
/// (`node`, `pod`, `namespace`, `timestamp`, `type`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationAttribute {
    #[serde(rename = "handle_id", default, skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    /// Upstream's "active owner" attributes, stored under `secondary`.
    #[serde(
        rename = "secondary",
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub secondary: BTreeMap<String, String>,
    /// Attributes of a previous or potential owner (live migration); kept as read.
    #[serde(
        rename = "alternateOwnerAttrs",
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub alternate_owner: BTreeMap<String, String>,
    /// Set by upstream releases with an IP cooldown; such allocations count as released.
    #[serde(
        rename = "releasedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub released_at: Option<String>,
}

impl AllocationAttribute {
    /// The handle as upstream compares it (anything from a `\r` on is ignored).
    fn handle(&self) -> Option<&str> {
        self.handle_id.as_deref().map(sanitize_handle)
    }
}

fn sanitize_handle(handle: &str) -> &str {
    handle.split('\r').next().unwrap_or_default()
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An IPAM block as stored in the datastore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationBlock {
    pub cidr: IpNet,
    /// `host:<node>`, `virtual:<name>`, or none (Go writes `null`).
    pub affinity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_claim_time: Option<String>,
    /// Per ordinal: index into `attributes` when held, `null` when free.
    #[serde(default, deserialize_with = "null_as_default")]
    pub allocations: Vec<Option<usize>>,
    /// Free ordinals in the order they will be handed out.
    #[serde(default, deserialize_with = "null_as_default")]
    pub unallocated: Vec<usize>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub attributes: Vec<AllocationAttribute>,
    #[serde(rename = "sequenceNumber", default)]
    pub sequence_number: u64,
    /// Ordinal (as a decimal string, as Kubernetes requires map keys) → the block's sequence
    /// number when the ordinal was handed out.
    #[serde(
        rename = "sequenceNumberForAllocation",
        default,
        deserialize_with = "null_as_default"
    )]
    pub sequence_number_for_allocation: BTreeMap<String, u64>,
    #[serde(default)]
    pub deleted: bool,
    /// Deprecated upstream form of `affinity` (`hostAffinity: <node>`); kept as read.
    #[serde(
        rename = "hostAffinity",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub host_affinity: Option<String>,
}

/// One address to release, optionally guarded by the handle and sequence number the caller
/// believes it holds (upstream's `ReleaseOptions`; both are strongly recommended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRequest {
    pub ip: IpAddr,
    pub handle: Option<String>,
    pub sequence_number: Option<u64>,
}

/// What a release did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseOutcome {
    /// Requested addresses that were not allocated (releasing them is a no-op, not an error).
    pub not_allocated: Vec<IpAddr>,
    /// Released addresses per handle, for the handle objects' per-block counts.
    pub released_by_handle: BTreeMap<String, usize>,
    /// How many addresses were freed.
    pub released: usize,
}

fn host_bits(cidr: &IpNet) -> u8 {
    cidr.max_prefix_len() - cidr.prefix_len()
}

impl AllocationBlock {
    /// A new, empty block: every ordinal free, in ascending order. `initial_sequence` should be
    /// unique across the block's lifetimes (upstream uses the creation time in nanoseconds) so a
    /// deleted and re-created block never repeats sequence numbers.
    pub fn new(
        cidr: IpNet,
        affinity: Option<String>,
        initial_sequence: u64,
    ) -> Result<Self, BlockError> {
        let cidr = cidr.trunc();
        let bits = host_bits(&cidr);
        if bits > 12 {
            return Err(BlockError::TooLarge { cidr, bits });
        }
        let size = 1usize << bits;
        Ok(AllocationBlock {
            cidr,
            affinity,
            affinity_claim_time: None,
            allocations: vec![None; size],
            unallocated: (0..size).collect(),
            attributes: Vec::new(),
            sequence_number: initial_sequence,
            sequence_number_for_allocation: BTreeMap::new(),
            deleted: false,
            host_affinity: None,
        })
    }

    /// Reads a stored block and checks its invariants. Allocations that upstream marked released
    /// (`releasedAt`, its IP cooldown) are freed here, as upstream does with a zero cooldown.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BlockError> {
        let mut block: AllocationBlock =
            serde_json::from_slice(bytes).map_err(|e| BlockError::Json(e.to_string()))?;
        block.check()?;
        block.free_released();
        Ok(block)
    }

    /// Number of addresses the block covers.
    pub fn size(&self) -> usize {
        1usize << host_bits(&self.cidr).min(12)
    }

    /// Checks that the block is well formed: `allocations` covers the CIDR, every attribute
    /// index exists, and held and free ordinals partition the block.
    pub fn check(&self) -> Result<(), BlockError> {
        let corrupt = |problem: String| BlockError::Corrupt {
            cidr: self.cidr,
            problem,
        };
        let bits = host_bits(&self.cidr);
        if bits > 12 {
            return Err(BlockError::TooLarge {
                cidr: self.cidr,
                bits,
            });
        }
        if self.allocations.len() != self.size() {
            return Err(corrupt(format!(
                "{} allocation slots for {} addresses",
                self.allocations.len(),
                self.size()
            )));
        }
        let mut seen = vec![false; self.size()];
        for &o in &self.unallocated {
            match seen.get_mut(o) {
                None => return Err(corrupt(format!("free ordinal {o} is outside the block"))),
                Some(true) => return Err(corrupt(format!("ordinal {o} is listed free twice"))),
                Some(s) => *s = true,
            }
        }
        for (o, slot) in self.allocations.iter().enumerate() {
            match (slot, seen.get(o).copied().unwrap_or(false)) {
                (Some(_), true) => {
                    return Err(corrupt(format!("ordinal {o} is both allocated and free")));
                }
                (None, false) => {
                    return Err(corrupt(format!(
                        "ordinal {o} is neither allocated nor free"
                    )));
                }
                (Some(a), false) if *a >= self.attributes.len() => {
                    return Err(corrupt(format!(
                        "ordinal {o} points at missing attribute {a}"
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The node (or virtual owner) this block is affine to, if any.
    pub fn host(&self) -> Option<&str> {
        let affinity = self.affinity.as_deref()?;
        [AFFINITY_HOST, AFFINITY_VIRTUAL]
            .iter()
            .find_map(|kind| affinity.strip_prefix(kind)?.strip_prefix(':'))
    }

    /// Whether the block is affine to `<kind>:<host>`.
    pub fn affinity_matches(&self, kind: &str, host: &str) -> bool {
        self.affinity.as_deref() == Some(&format!("{kind}:{host}"))
    }

    /// The ordinal of `ip` in this block.
    pub fn ordinal_of(&self, ip: IpAddr) -> Result<usize, BlockError> {
        let offset = match (ip, self.cidr) {
            (IpAddr::V4(a), IpNet::V4(n)) => u32::from(a)
                .checked_sub(u32::from(n.network()))
                .map(u128::from),
            (IpAddr::V6(a), IpNet::V6(n)) => u128::from(a).checked_sub(u128::from(n.network())),
            _ => None,
        };
        offset
            .and_then(|o| usize::try_from(o).ok())
            .filter(|&o| o < self.size())
            .ok_or(BlockError::NotInBlock {
                ip,
                cidr: self.cidr,
            })
    }

    /// The address at `ordinal`, or `None` past the end of the block.
    pub fn ip_at(&self, ordinal: usize) -> Option<IpAddr> {
        if ordinal >= self.size() {
            return None;
        }
        Some(match self.cidr {
            IpNet::V4(n) => IpAddr::from(Ipv4Addr::from(
                u32::from(n.network()) + u32::try_from(ordinal).ok()?,
            )),
            IpNet::V6(n) => IpAddr::from(Ipv6Addr::from(u128::from(n.network()) + ordinal as u128)),
        })
    }

    /// The sequence number recorded for a held address (0 if none was recorded, as upstream).
    pub fn sequence_number_of(&self, ip: IpAddr) -> Result<u64, BlockError> {
        let o = self.ordinal_of(ip)?;
        Ok(self.seq_for(o))
    }

    fn seq_for(&self, ordinal: usize) -> u64 {
        self.sequence_number_for_allocation
            .get(&ordinal.to_string())
            .copied()
            .unwrap_or(0)
    }

    /// Index of an attribute equal to (handle, owner), appending one if there is none.
    fn find_or_add_attribute(
        &mut self,
        handle: Option<&str>,
        owner: &BTreeMap<String, String>,
    ) -> usize {
        // Compared in place: the strings are copied only for a new attribute.
        let same = |a: &AllocationAttribute| {
            a.handle_id.as_deref() == handle
                && a.secondary == *owner
                && a.alternate_owner.is_empty()
                && a.released_at.is_none()
        };
        if let Some(i) = self.attributes.iter().position(same) {
            return i;
        }
        self.attributes.push(AllocationAttribute {
            handle_id: handle.map(str::to_string),
            secondary: owner.clone(),
            ..Default::default()
        });
        self.attributes.len() - 1
    }

    /// Hands out up to `count` free addresses from the head of `unallocated`, skipping (and
    /// keeping in place) those `is_reserved` rejects (IPReservations). Returns the addresses in
    /// order; fewer than `count` when the block runs out.
    pub fn auto_assign(
        &mut self,
        count: usize,
        handle: Option<&str>,
        owner: &BTreeMap<String, String>,
        is_reserved: impl Fn(IpAddr) -> bool,
    ) -> Vec<IpAddr> {
        let mut taken = Vec::new();
        let mut remaining = Vec::with_capacity(self.unallocated.len());
        let mut attr = None;
        for &o in &self.unallocated {
            let Some(ip) = self.ip_at(o) else { continue };
            if taken.len() >= count || is_reserved(ip) {
                remaining.push(o);
                continue;
            }
            taken.push((o, ip));
        }
        if taken.is_empty() {
            return Vec::new();
        }
        let seq = self.sequence_number;
        for &(o, _) in &taken {
            let index = *attr.get_or_insert_with(|| self.find_or_add_attribute(handle, owner));
            if let Some(slot) = self.allocations.get_mut(o) {
                *slot = Some(index);
            }
            self.sequence_number_for_allocation
                .insert(o.to_string(), seq);
        }
        self.unallocated = remaining;
        self.bump();
        taken.into_iter().map(|(_, ip)| ip).collect()
    }

    /// Assigns one specific address (upstream's AssignIP).
    pub fn assign(
        &mut self,
        ip: IpAddr,
        handle: Option<&str>,
        owner: &BTreeMap<String, String>,
    ) -> Result<(), BlockError> {
        let o = self.ordinal_of(ip)?;
        if !matches!(self.allocations.get(o), Some(None)) {
            return Err(BlockError::AlreadyAssigned {
                ip,
                cidr: self.cidr,
            });
        }
        let index = self.find_or_add_attribute(handle, owner);
        if let Some(slot) = self.allocations.get_mut(o) {
            *slot = Some(index);
        }
        self.unallocated.retain(|&u| u != o);
        self.sequence_number_for_allocation
            .insert(o.to_string(), self.sequence_number);
        self.bump();
        Ok(())
    }

    /// Releases addresses. All guards are checked before anything changes: one wrong sequence
    /// number or handle fails the whole release and leaves the block as it was.
    pub fn release(&mut self, requests: &[ReleaseRequest]) -> Result<ReleaseOutcome, BlockError> {
        let mut outcome = ReleaseOutcome::default();
        let mut ordinals = BTreeSet::new();
        for req in requests {
            let o = self.ordinal_of(req.ip)?;
            let actual = self.seq_for(o);
            if let Some(requested) = req.sequence_number
                && requested != actual
            {
                return Err(BlockError::SequenceMismatch {
                    ip: req.ip,
                    cidr: self.cidr,
                    requested,
                    actual,
                });
            }
            let Some(Some(index)) = self.allocations.get(o) else {
                if !outcome.not_allocated.contains(&req.ip) {
                    outcome.not_allocated.push(req.ip);
                }
                continue;
            };
            let holder = self
                .attributes
                .get(*index)
                .and_then(AllocationAttribute::handle);
            if let Some(requested) = &req.handle
                && holder != Some(requested.as_str())
            {
                return Err(BlockError::HandleMismatch {
                    ip: req.ip,
                    cidr: self.cidr,
                    requested: requested.clone(),
                    actual: holder.unwrap_or_default().to_string(),
                });
            }
            if ordinals.insert(o)
                && let Some(h) = holder
            {
                *outcome.released_by_handle.entry(h.to_string()).or_default() += 1;
            }
        }
        outcome.released = ordinals.len();
        if self.free(&ordinals) {
            self.bump();
        }
        Ok(outcome)
    }

    /// Releases every address held by `handle` (guarded by `sequence_number` per address when
    /// given); returns how many were freed.
    pub fn release_by_handle(&mut self, handle: &str, sequence_number: Option<u64>) -> usize {
        let ordinals: BTreeSet<usize> = (0..self.allocations.len())
            .filter(|&o| self.holder(o) == Some(handle))
            .filter(|&o| sequence_number.is_none_or(|s| s == self.seq_for(o)))
            .collect();
        if self.free(&ordinals) {
            self.bump();
        }
        ordinals.len()
    }

    fn holder(&self, ordinal: usize) -> Option<&str> {
        let index = (*self.allocations.get(ordinal)?)?;
        self.attributes.get(index)?.handle()
    }

    /// Records a write that changes no allocation (affinity changes, a rewrite that invalidates
    /// stale copies): upstream increments the sequence number on every block update.
    pub fn touch(&mut self) {
        self.bump();
    }

    /// Records a write: the next allocation carries a new sequence number. Wraps rather than
    /// panics on a hostile stored value.
    fn bump(&mut self) {
        self.sequence_number = self.sequence_number.wrapping_add(1);
    }

    /// Frees `ordinals` (appended to the free list in ascending order) and drops attributes no
    /// longer referenced. Returns whether anything changed.
    fn free(&mut self, ordinals: &BTreeSet<usize>) -> bool {
        let mut changed = false;
        for &o in ordinals {
            if let Some(slot @ Some(_)) = self.allocations.get_mut(o) {
                *slot = None;
                self.unallocated.push(o);
                self.sequence_number_for_allocation.remove(&o.to_string());
                changed = true;
            }
        }
        if changed {
            self.compact_attributes();
        }
        changed
    }

    /// Frees allocations whose attribute carries upstream's `releasedAt` (cooldown over).
    fn free_released(&mut self) {
        let released: BTreeSet<usize> = (0..self.allocations.len())
            .filter(|&o| {
                let index = self.allocations.get(o).copied().flatten();
                index
                    .and_then(|i| self.attributes.get(i))
                    .is_some_and(|a| a.released_at.is_some())
            })
            .collect();
        self.free(&released);
    }

    /// Removes unreferenced attributes and renumbers the allocations' indexes.
    fn compact_attributes(&mut self) {
        let mut used = vec![false; self.attributes.len()];
        for index in self.allocations.iter().flatten() {
            if let Some(u) = used.get_mut(*index) {
                *u = true;
            }
        }
        if used.iter().all(|&u| u) {
            return;
        }
        let mut new_index = vec![0; used.len()];
        let mut next = 0;
        for (old, &keep) in used.iter().enumerate() {
            if keep {
                new_index[old] = next;
                next += 1;
            }
        }
        let mut old = 0;
        self.attributes.retain(|_| {
            old += 1;
            used[old - 1]
        });
        for index in self.allocations.iter_mut().flatten() {
            *index = new_index.get(*index).copied().unwrap_or(*index);
        }
    }

    /// Addresses held by `handle`.
    pub fn ips_by_handle(&self, handle: &str) -> Vec<IpAddr> {
        (0..self.allocations.len())
            .filter(|&o| self.holder(o) == Some(handle))
            .filter_map(|o| self.ip_at(o))
            .collect()
    }

    /// The attribute of a held address; `Ok(None)` when the address is free.
    pub fn attribute_of(&self, ip: IpAddr) -> Result<Option<&AllocationAttribute>, BlockError> {
        let o = self.ordinal_of(ip)?;
        Ok(self
            .allocations
            .get(o)
            .copied()
            .flatten()
            .and_then(|i| self.attributes.get(i)))
    }

    /// Number of held addresses.
    pub fn in_use(&self) -> usize {
        self.allocations.iter().filter(|a| a.is_some()).count()
    }

    /// Number of free addresses, reserved ones included.
    pub fn free_count(&self) -> usize {
        self.unallocated.len()
    }

    /// Number of free addresses that `auto_assign` could hand out.
    pub fn assignable_count(&self, is_reserved: impl Fn(IpAddr) -> bool) -> usize {
        self.unallocated
            .iter()
            .filter_map(|&o| self.ip_at(o))
            .filter(|&ip| !is_reserved(ip))
            .count()
    }

    /// Whether no address is held.
    pub fn is_empty(&self) -> bool {
        self.allocations.iter().all(Option::is_none)
    }

    /// Held addresses, ascending.
    pub fn in_use_ips(&self) -> Vec<IpAddr> {
        (0..self.allocations.len())
            .filter(|&o| matches!(self.allocations.get(o), Some(Some(_))))
            .filter_map(|o| self.ip_at(o))
            .collect()
    }
}

mod json;

#[cfg(test)]
mod tests;
