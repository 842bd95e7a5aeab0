//! natOutgoing as an nftables script, rendered purely from [`NatOutgoing`] so it can be
//! snapshot-tested; the dataplane applies it with one `nft -f` (one atomic transaction).
//!
//! Upstream's rule, in our own table: masquerade traffic whose source is in a natOutgoing pool
//! and whose destination is outside every pool (pod-to-pod traffic keeps its source address).
//! The script first creates then deletes the table, so applying it replaces whatever an earlier
//! run (or a crashed one) left, and never touches other tables.

use std::fmt::Write;

use ipnet::IpNet;

use crate::model::NatOutgoing;

/// Our nftables table (family `ip`).
pub const NAT_TABLE: &str = "calico-nat";
/// Set of the natOutgoing pools' CIDRs (upstream's ipset `cali40masq-ipam-pools`).
pub const MASQ_POOLS_SET: &str = "masq-ipam-pools";
/// Set of all pools' CIDRs (upstream's `cali40all-ipam-pools`).
pub const ALL_POOLS_SET: &str = "all-ipam-pools";

fn set(out: &mut String, name: &str, nets: &[IpNet]) {
    let v4: Vec<String> = nets
        .iter()
        .filter(|n| n.addr().is_ipv4())
        .map(ToString::to_string)
        .collect();
    let _ = writeln!(out, "\tset {name} {{");
    out.push_str("\t\ttype ipv4_addr\n\t\tflags interval\n");
    if !v4.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", v4.join(", "));
    }
    out.push_str("\t}\n");
}

/// The whole IPv4 table as an `nft -f` script.
pub fn nft_script(nat: &NatOutgoing) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "table ip {NAT_TABLE}");
    let _ = writeln!(out, "delete table ip {NAT_TABLE}");
    let _ = writeln!(out, "table ip {NAT_TABLE} {{");
    set(&mut out, MASQ_POOLS_SET, &nat.nat_pools);
    set(&mut out, ALL_POOLS_SET, &nat.all_pools);
    out.push_str("\tchain postrouting {\n");
    out.push_str("\t\ttype nat hook postrouting priority srcnat; policy accept;\n");
    let _ = writeln!(
        out,
        "\t\tip saddr @{MASQ_POOLS_SET} ip daddr != @{ALL_POOLS_SET} masquerade fully-random"
    );
    out.push_str("\t}\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().expect("net")).collect()
    }

    #[test]
    fn script_snapshot() {
        let nat = NatOutgoing {
            nat_pools: nets(&["10.48.0.0/24"]),
            all_pools: nets(&["10.48.0.0/24", "10.48.128.0/24", "fd00::/64"]),
        };
        assert_eq!(
            nft_script(&nat),
            "table ip calico-nat
delete table ip calico-nat
table ip calico-nat {
\tset masq-ipam-pools {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 10.48.0.0/24 }
\t}
\tset all-ipam-pools {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 10.48.0.0/24, 10.48.128.0/24 }
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr @masq-ipam-pools ip daddr != @all-ipam-pools masquerade fully-random
\t}
}
"
        );
    }

    #[test]
    fn empty_sets_have_no_elements_line() {
        let s = nft_script(&NatOutgoing::default());
        assert!(!s.contains("elements"));
        assert!(s.contains("masquerade"));
    }
}
