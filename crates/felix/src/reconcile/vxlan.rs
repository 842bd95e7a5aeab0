//! A VXLAN device (`vxlan.calico`, or `vxlan-v6.calico` over IPv6), its tunnel address, and the
//! permanent neighbour and FDB entries of the remote VTEPs on it. Everything on the device is ours, so any entry that is not
//! desired is stale; only permanent entries are removed (the kernel's own dynamic entries come
//! and go by themselves).

use std::collections::BTreeMap;
use std::net::IpAddr;

use calico_dataplane::{
    Address, Family, FdbEntry, LinkChange, Mac, Neighbour, Rtnl, VxlanLink, VxlanSpec, parse_mac,
};
use ipnet::IpNet;

use super::{ReconcileError, Report};
use crate::model::{Fdb, VxlanDevice};

pub(crate) fn mac_of(what: &'static str, object: &str, value: &str) -> Result<Mac, ReconcileError> {
    parse_mac(value).ok_or_else(|| ReconcileError::BadValue {
        what,
        object: object.to_string(),
        value: value.to_string(),
    })
}

/// The kernel spec of the desired device; the parent must already be resolved.
pub(crate) fn spec(d: &VxlanDevice, parent: Option<u32>) -> Result<VxlanSpec, ReconcileError> {
    Ok(VxlanSpec {
        name: d.name.clone(),
        vni: d.vni,
        port: d.port,
        local: Some(d.local_ip),
        parent,
        learning: false,
        mtu: Some(d.mtu),
        mac: Some(mac_of("vxlan device MAC", &d.name, &d.mac)?),
        up: true,
    })
}

/// Make the device match `spec`: create it, recreate it when an attribute that cannot change
/// in place differs, fix MTU/MAC/up in place. Returns the device and whether it was
/// (re)created (so routes, neighbours and FDB entries through it are gone).
pub(crate) fn ensure_device(
    rtnl: &mut dyn Rtnl,
    spec: &VxlanSpec,
    actual: Option<VxlanLink>,
    report: &mut Report,
) -> Result<(VxlanLink, bool), calico_dataplane::Error> {
    let mut created = false;
    let current = match actual {
        Some(link) if link.immutable_drift(spec).is_empty() => Some(link),
        Some(link) => {
            report.device_recreated_for = link
                .immutable_drift(spec)
                .iter()
                .map(ToString::to_string)
                .collect();
            rtnl.delete_link(&link.link.name)?;
            None
        }
        None => None,
    };
    let link = match current {
        Some(link) => link,
        None => {
            rtnl.create_vxlan(spec)?;
            created = true;
            report.device_created = true;
            read_back(rtnl, &spec.name)?
        }
    };
    let mut change = LinkChange::default();
    if spec.mtu.is_some() && link.link.mtu != spec.mtu {
        change.mtu = spec.mtu;
    }
    if let Some(mac) = spec.mac
        && link.link.mac.as_deref() != Some(&mac[..])
    {
        change.mac = Some(mac);
    }
    if !link.link.up {
        change.up = Some(true);
    }
    if change == LinkChange::default() {
        return Ok((link, created));
    }
    rtnl.set_link(link.link.index, &change)?;
    report.device_fixed = true;
    Ok((read_back(rtnl, &spec.name)?, created))
}

fn read_back(rtnl: &mut dyn Rtnl, name: &str) -> Result<VxlanLink, calico_dataplane::Error> {
    rtnl.vxlan_by_name(name)?
        .ok_or_else(|| calico_dataplane::Error::Invalid {
            what: "vxlan device",
            detail: format!("{name} is missing right after it was created or changed"),
        })
}

/// The tunnel address as the only address of its family on the device (an IPv6 device keeps
/// the kernel's own link-local address).
pub(crate) fn ensure_address(
    rtnl: &mut dyn Rtnl,
    index: u32,
    tunnel: IpAddr,
    report: &mut Report,
) -> Result<(), calico_dataplane::Error> {
    let want = IpNet::from(tunnel);
    let family = if tunnel.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    };
    let have = rtnl.addresses(family, Some(index))?;
    let link_local = |n: &IpNet| matches!(n.addr(), IpAddr::V6(a) if a.is_unicast_link_local());
    for a in have.iter().filter(|a| a.net != want && !link_local(&a.net)) {
        rtnl.delete_address(a)?;
        report.addresses_changed += 1;
    }
    if !have.iter().any(|a| a.net == want) {
        rtnl.add_address(&Address::new(index, want))?;
        report.addresses_changed += 1;
    }
    Ok(())
}

/// Neighbour entries on the device: desired ones replaced when missing or different, stale
/// permanent ones deleted (when `deletes`).
pub(crate) fn sync_neighbours(
    rtnl: &mut dyn Rtnl,
    index: u32,
    family: Family,
    want: &BTreeMap<IpAddr, Mac>,
    deletes: bool,
    report: &mut Report,
) -> Result<(), calico_dataplane::Error> {
    let have = rtnl.neighbours(family, Some(index))?;
    for (ip, mac) in want {
        let wanted = Neighbour::permanent(index, *ip, *mac);
        if have.contains(&wanted) {
            continue;
        }
        match rtnl.replace_neighbour(&wanted) {
            Ok(()) => report.neighbours_set += 1,
            Err(e) => report.errors.push(e),
        }
    }
    if !deletes {
        return Ok(());
    }
    for n in have.iter().filter(|n| n.permanent) {
        if want.contains_key(&n.ip) {
            continue;
        }
        match rtnl.delete_neighbour(n) {
            Ok(()) => report.neighbours_deleted += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => report.errors.push(e),
        }
    }
    Ok(())
}

/// FDB entries on the device (MAC → remote node IP), same rules as neighbours.
pub(crate) fn sync_fdb(
    rtnl: &mut dyn Rtnl,
    index: u32,
    want: &BTreeMap<Mac, IpAddr>,
    deletes: bool,
    report: &mut Report,
) -> Result<(), calico_dataplane::Error> {
    let have = rtnl.fdb(index)?;
    for (mac, dst) in want {
        let wanted = FdbEntry::permanent(index, *mac, *dst);
        if have.contains(&wanted) {
            continue;
        }
        match rtnl.replace_fdb(&wanted) {
            Ok(()) => report.fdb_set += 1,
            Err(e) => report.errors.push(e),
        }
    }
    if !deletes {
        return Ok(());
    }
    for f in have.iter().filter(|f| f.permanent && f.dst.is_some()) {
        let desired = matches!(
            (want.get(&f.mac), f.dst),
            (Some(d), Some(a)) if *d == a
        );
        if desired {
            continue;
        }
        match rtnl.delete_fdb(f) {
            Ok(()) => report.fdb_deleted += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => report.errors.push(e),
        }
    }
    Ok(())
}

/// Desired FDB entries (of one device) by MAC bytes.
pub(crate) fn fdb_targets<'a>(
    fdb: impl Iterator<Item = &'a Fdb>,
) -> Result<BTreeMap<Mac, IpAddr>, ReconcileError> {
    fdb.map(|f| Ok((mac_of("FDB entry MAC", &f.dev, &f.mac)?, f.dst)))
        .collect()
}
