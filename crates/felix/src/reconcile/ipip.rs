//! The IPIP device: the kernel's catch-all tunnel `tunl0`, up, with the MTU and the node's IPIP
//! tunnel address as its only IPv4 address. Loading the kernel's `ipip` module creates `tunl0`
//! in every namespace; when it is missing Felix asks the kernel to create it (which loads the
//! module where that is possible). A kernel without ipip support gets one clear error naming
//! the fix, and the IPIP routes stay pending until the device exists.
//!
//! When no pool uses IPIP any more the device stays (it is the kernel's) but the tunnel
//! address Felix put on it is removed, as upstream does.

use calico_dataplane::{Family, LinkChange, Rtnl};

use super::{Report, vxlan};
use crate::model::{IPIP_DEVICE, IpipDevice};

fn no_ipip(e: &calico_dataplane::Error) -> calico_dataplane::Error {
    calico_dataplane::Error::Invalid {
        what: "ipip device",
        detail: format!(
            "{IPIP_DEVICE} does not exist and creating it failed ({e}): this kernel or network \
             namespace has no IPIP support; load the module on the host (`modprobe ipip`) or \
             use vxlanMode instead of ipipMode; IPIP routes stay unprogrammed until then"
        ),
    }
}

/// Makes `tunl0` match `want`; returns its index when it exists afterwards.
pub(crate) fn ensure(
    rtnl: &mut dyn Rtnl,
    want: &IpipDevice,
    report: &mut Report,
) -> Result<Option<u32>, calico_dataplane::Error> {
    let link = match rtnl.link_by_name(&want.name)? {
        Some(l) => l,
        None => {
            if let Err(e) = rtnl.create_ipip(&want.name) {
                if !e.is_exists() {
                    report.errors.push(no_ipip(&e));
                    return Ok(None);
                }
            } else {
                report.device_created = true;
            }
            match rtnl.link_by_name(&want.name)? {
                Some(l) => l,
                None => {
                    report.errors.push(calico_dataplane::Error::Invalid {
                        what: "ipip device",
                        detail: format!("{} is missing right after it was created", want.name),
                    });
                    return Ok(None);
                }
            }
        }
    };
    let mut change = LinkChange::default();
    if link.mtu != Some(want.mtu) {
        change.mtu = Some(want.mtu);
    }
    if !link.up {
        change.up = Some(true);
    }
    if change != LinkChange::default() {
        rtnl.set_link(link.index, &change)?;
        report.device_fixed = true;
    }
    vxlan::ensure_address(rtnl, link.index, want.tunnel_addr.into(), report)?;
    Ok(Some(link.index))
}

/// IPIP no longer wanted: remove the IPv4 addresses from `tunl0` (if it exists).
pub(crate) fn release(rtnl: &mut dyn Rtnl, report: &mut Report) -> calico_dataplane::Result<()> {
    let Some(link) = rtnl.link_by_name(IPIP_DEVICE)? else {
        return Ok(());
    };
    for a in rtnl.addresses(Family::V4, Some(link.index))? {
        rtnl.delete_address(&a)?;
        report.addresses_changed += 1;
    }
    Ok(())
}
