//! Kernel parameters Felix keeps, as upstream: IPv4 forwarding on for the host (a fresh network
//! namespace has it off), and on every local workload interface the settings the 169.254.1.1
//! gateway trick and anti-spoofing need (`proxy_arp=1`, `neigh/<if>/proxy_delay=0`,
//! `forwarding=1`, `route_localnet=1`, strict `rp_filter=1`). The CNI plugin writes the same
//! values when it creates the interface; Felix re-asserts them so a hand-changed or
//! half-configured interface converges. Each value is read first and written only when it
//! differs, so a resync of an unchanged host writes nothing.

use calico_dataplane::{Sysctl, SysctlKey};

/// `net/ipv4/ip_forward`.
pub const IP_FORWARD: &str = "net/ipv4/ip_forward";

/// The settings of a workload interface (host side `caliX`).
pub fn workload_settings(iface: &str) -> calico_dataplane::Result<Vec<(SysctlKey, &'static str)>> {
    Ok(vec![
        (SysctlKey::ipv4_conf(iface, "rp_filter")?, "1"),
        (SysctlKey::ipv4_conf(iface, "route_localnet")?, "1"),
        (SysctlKey::ipv4_neigh(iface, "proxy_delay")?, "0"),
        (SysctlKey::ipv4_conf(iface, "proxy_arp")?, "1"),
        (SysctlKey::ipv4_conf(iface, "forwarding")?, "1"),
    ])
}

/// The host-wide settings.
pub fn host_settings() -> calico_dataplane::Result<Vec<(SysctlKey, &'static str)>> {
    Ok(vec![(SysctlKey::parse(IP_FORWARD)?, "1")])
}

/// Writes the values that differ; returns how many were written. Stops at the first failure
/// (a missing interface makes every later key fail the same way).
pub fn ensure(
    sysctl: &mut dyn Sysctl,
    settings: &[(SysctlKey, &str)],
) -> calico_dataplane::Result<usize> {
    let mut written = 0;
    for (key, value) in settings {
        if sysctl.get(key).ok().as_deref().map(str::trim) == Some(*value) {
            continue;
        }
        sysctl.set(key, value)?;
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use calico_dataplane::fake::RecordingSysctl;

    use super::*;

    #[test]
    fn writes_only_what_differs() -> calico_dataplane::Result<()> {
        let mut s = RecordingSysctl::default();
        s.values
            .insert("net/ipv4/conf/cali1/proxy_arp".into(), "1".into());
        assert_eq!(ensure(&mut s, &workload_settings("cali1")?)?, 4);
        let keys: Vec<&str> = s.writes.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "net/ipv4/conf/cali1/rp_filter",
                "net/ipv4/conf/cali1/route_localnet",
                "net/ipv4/neigh/cali1/proxy_delay",
                "net/ipv4/conf/cali1/forwarding",
            ]
        );
        assert_eq!(ensure(&mut s, &workload_settings("cali1")?)?, 0);
        assert_eq!(ensure(&mut s, &host_settings()?)?, 1);
        assert_eq!(s.writes.last(), Some(&(IP_FORWARD.into(), "1".into())));
        Ok(())
    }
}
