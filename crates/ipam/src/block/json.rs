//! The stored form of a block, written by hand: the exact bytes `serde_json::to_vec` writes for
//! the derived `Serialize` (same field order, the same skipped fields, the same escapes), without
//! serde's per-token plumbing. Every block write of an allocation serializes the whole block
//! (~9 KiB for a /26 with its attributes), so this is on the allocator's hot path. Tests compare
//! the two byte for byte.

use std::collections::BTreeMap;

use super::{AllocationAttribute, AllocationBlock};

impl AllocationBlock {
    /// The stored form, written into a buffer sized for it up front (a /26 block with its
    /// attributes is ~9 KiB: growing a buffer to that size would copy it several times).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.json_size_hint());
        out.extend_from_slice(b"{\"cidr\":\"");
        // An address and a prefix length: digits, dots, colons, hex and one slash.
        out.extend_from_slice(self.cidr.to_string().as_bytes());
        out.extend_from_slice(b"\",\"affinity\":");
        opt_str(&mut out, self.affinity.as_deref());
        if let Some(t) = &self.affinity_claim_time {
            out.extend_from_slice(b",\"affinity_claim_time\":");
            string(&mut out, t);
        }
        out.extend_from_slice(b",\"allocations\":[");
        for (i, a) in self.allocations.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match a {
                Some(index) => number(&mut out, *index as u64),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b"],\"unallocated\":[");
        for (i, o) in self.unallocated.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            number(&mut out, *o as u64);
        }
        out.extend_from_slice(b"],\"attributes\":[");
        for (i, a) in self.attributes.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            attribute(&mut out, a);
        }
        out.extend_from_slice(b"],\"sequenceNumber\":");
        number(&mut out, self.sequence_number);
        out.extend_from_slice(b",\"sequenceNumberForAllocation\":{");
        for (i, (k, v)) in self.sequence_number_for_allocation.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(&mut out, k);
            out.push(b':');
            number(&mut out, *v);
        }
        out.extend_from_slice(b"},\"deleted\":");
        out.extend_from_slice(if self.deleted { b"true" } else { b"false" });
        if let Some(h) = &self.host_affinity {
            out.extend_from_slice(b",\"hostAffinity\":");
            string(&mut out, h);
        }
        out.push(b'}');
        out
    }

    /// A little more than the length of `to_json`'s output (never less for blocks whose
    /// strings need no escaping).
    pub(super) fn json_size_hint(&self) -> usize {
        let map_len = |m: &BTreeMap<String, String>| -> usize {
            m.iter().map(|(k, v)| k.len() + v.len() + 6).sum::<usize>() + 2
        };
        let attributes: usize = self
            .attributes
            .iter()
            .map(|a| {
                80 + a.handle_id.as_ref().map_or(0, String::len)
                    + map_len(&a.secondary)
                    + map_len(&a.alternate_owner)
                    + a.released_at.as_ref().map_or(0, String::len)
            })
            .sum();
        // Per slot at most 5 digits and a comma ("null," is 5); per ordinal in the sequence
        // map: key, quotes, colon, a u64 and a comma.
        320 + self.affinity.as_ref().map_or(0, String::len)
            + self.affinity_claim_time.as_ref().map_or(0, String::len)
            + self.host_affinity.as_ref().map_or(0, String::len)
            + 6 * (self.allocations.len() + self.unallocated.len())
            + 28 * self.sequence_number_for_allocation.len()
            + attributes
    }
}

/// One attribute; the optional and empty members are left out as the derive's
/// `skip_serializing_if` does.
fn attribute(out: &mut Vec<u8>, a: &AllocationAttribute) {
    out.push(b'{');
    let mut first = true;
    let mut key = |out: &mut Vec<u8>, name: &[u8]| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        out.extend_from_slice(name);
    };
    if let Some(h) = &a.handle_id {
        key(out, b"\"handle_id\":");
        string(out, h);
    }
    if !a.secondary.is_empty() {
        key(out, b"\"secondary\":");
        map(out, &a.secondary);
    }
    if !a.alternate_owner.is_empty() {
        key(out, b"\"alternateOwnerAttrs\":");
        map(out, &a.alternate_owner);
    }
    if let Some(t) = &a.released_at {
        key(out, b"\"releasedAt\":");
        string(out, t);
    }
    out.push(b'}');
}

fn map(out: &mut Vec<u8>, m: &BTreeMap<String, String>) {
    out.push(b'{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k);
        out.push(b':');
        string(out, v);
    }
    out.push(b'}');
}

fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string. The usual case (nothing to escape) is copied as is; anything else is left to
/// serde_json, so escapes are exactly serde_json's.
fn string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        // Not reached: writing a string into a Vec cannot fail.
        out.extend_from_slice(b"\"\"");
    }
}

/// A decimal number, as serde_json writes integers.
fn number(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}
