//! The reconciler: the only part of Felix that touches the kernel (through `calico-dataplane`'s
//! `Rtnl`, `Nft` and `Sysctl` traits, so it is unit-tested with the recording fakes).
//!
//! ```text
//!  DesiredState ──▶ Reconciler::apply ──▶ diff against the cached kernel view ──▶ device,
//!                   Reconciler::resync ─▶ re-read the kernel first (start, timer, damage)    address, sysctl,
//!                                                                                  neighbours, FDB,
//!                                                                                  one route batch,
//!                                                                                  device removal, nft
//! ```
//!
//! It owns only what it creates: routes `felix_owns_route` accepts (proto 80, or on `cali*` /
//! `vxlan.calico` / `vxlan-v6.calico`), the two VXLAN devices with their addresses (an IPv6
//! device keeps the kernel's link-local one), neighbour and FDB entries, the
//! tunnel address on the kernel's `tunl0` (`ipip`), and the `calico-nat` nftables table.
//! `sysctls` holds the kernel parameters upstream sets (host forwarding, workload interfaces).
//! The `nft -f -` child of a natOutgoing change runs on a scoped thread while the route batch
//! goes out (a process start costs about as much as 5,000 routes in one batch).
//! The first call (and every `resync`) lists the kernel, so stale objects of an earlier run are
//! removed too. Deletes can be held back until the calculation graph is in sync
//! ([`Reconciler::hold_deletes`]). The caller drives time: it calls `resync` on its own interval
//! (upstream refreshes routes every 90 s).
//!
//! A route whose device does not exist yet (a workload's `caliX` before the CNI plugin created
//! it) is left out and reported as pending; the next `apply`/`resync` looks the device up again.

#[cfg(test)]
mod fixture;
mod ipip;
#[cfg(test)]
mod kernel_tests;
#[cfg(test)]
mod kernel_tests_v6;
mod nat;
mod routes;
pub mod sysctls;
mod vxlan;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use calico_dataplane::{Family, Nft, RouteFilter, Rtnl, Sysctl, SysctlKey, VxlanLink};
use ipnet::IpNet;

use crate::model::{DesiredState, NatOutgoing, VXLAN_DEVICE, VXLAN_V6_DEVICE, VxlanDevice};

/// How often the caller should call [`Reconciler::resync`] unless configured otherwise
/// (upstream's `RouteRefreshInterval`).
pub const DEFAULT_RESYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(90);

/// `rp_filter` upstream sets on `vxlan.calico` (loose: decapsulated packets arrive on the
/// device while the route back to their source may point elsewhere).
pub const VXLAN_RP_FILTER: &str = "2";

/// A failure that stops a reconciliation (the kernel cannot be read, the desired state holds
/// a value that cannot be programmed). Failures of single objects go into [`Report::errors`].
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("reading the kernel's {what} failed: {source}")]
    Read {
        what: &'static str,
        #[source]
        source: calico_dataplane::Error,
    },
    #[error(
        "{what} of {object} is {value:?}, not a MAC address like 66:0a:1b:2c:3d:4e; fix the Node's vxlanTunnelMACAddr"
    )]
    BadValue {
        what: &'static str,
        object: String,
        value: String,
    },
}

/// The kernel-facing traits the reconciler works through.
pub struct Dataplane<'a> {
    pub rtnl: &'a mut dyn Rtnl,
    pub sysctl: &'a mut dyn Sysctl,
    /// `Send`: the nft pass runs on a scoped thread beside the route batch.
    pub nft: &'a mut (dyn Nft + Send),
}

/// What one reconciliation did. Object failures are kept here (they name the object) and
/// retried on the next call.
#[derive(Debug, Default)]
pub struct Report {
    /// Route changes sent in the batch (replaces + deletes).
    pub routes_replaced: usize,
    pub routes_deleted: usize,
    pub device_created: bool,
    pub device_deleted: bool,
    /// The device existed with other VNI/port/local/parent/learning and was recreated.
    pub device_recreated_for: Vec<String>,
    /// MTU, MAC or up state fixed in place.
    pub device_fixed: bool,
    pub addresses_changed: usize,
    pub neighbours_set: usize,
    pub neighbours_deleted: usize,
    pub fdb_set: usize,
    pub fdb_deleted: usize,
    pub sysctls_written: usize,
    pub nat_applied: bool,
    /// Desired routes whose device does not exist (yet).
    pub pending: Vec<IpNet>,
    /// Desired destinations held by a route we do not own (left alone).
    pub conflicts: Vec<IpNet>,
    pub errors: Vec<calico_dataplane::Error>,
}

impl Report {
    /// Nothing pending, conflicting or failed.
    pub fn is_clean(&self) -> bool {
        self.pending.is_empty() && self.conflicts.is_empty() && self.errors.is_empty()
    }

    /// Whether the kernel was changed at all.
    pub fn changed(&self) -> bool {
        self.routes_replaced
            + self.routes_deleted
            + self.addresses_changed
            + self.neighbours_set
            + self.neighbours_deleted
            + self.fdb_set
            + self.fdb_deleted
            + self.sysctls_written
            > 0
            || self.device_created
            || self.device_deleted
            || self.device_fixed
            || self.nat_applied
    }
}

/// What the reconciler believes the kernel holds (refreshed by `resync`).
#[derive(Debug, Default)]
struct KernelView {
    /// Interface name → index.
    links: BTreeMap<String, u32>,
    routes: routes::ActualRoutes,
    vxlan: Option<VxlanLink>,
    vxlan_v6: Option<VxlanLink>,
}

impl KernelView {
    fn vxlan_slot(&mut self, v6: bool) -> &mut Option<VxlanLink> {
        if v6 {
            &mut self.vxlan_v6
        } else {
            &mut self.vxlan
        }
    }
}

/// Keeps the kernel at a [`DesiredState`]; see the module documentation.
#[derive(Debug, Default)]
pub struct Reconciler {
    view: Option<KernelView>,
    nat_applied: Option<NatOutgoing>,
    hold_deletes: bool,
    /// The last pass wanted an IPIP device (so the next one without it clears `tunl0`).
    ipip_wanted: bool,
}

impl Reconciler {
    pub fn new() -> Self {
        Reconciler::default()
    }

    /// While held, nothing stale is deleted (use until the calculation graph is in sync, so a
    /// partial snapshot does not remove routes that are still wanted).
    pub fn hold_deletes(&mut self, hold: bool) {
        self.hold_deletes = hold;
    }

    /// Re-read the kernel, then apply the difference: the start-up pass and the periodic
    /// resync that repairs manual damage.
    pub fn resync(
        &mut self,
        dp: &mut Dataplane<'_>,
        desired: &DesiredState,
    ) -> Result<Report, ReconcileError> {
        self.view = None;
        self.reconcile(dp, desired, true)
    }

    /// Apply the difference between `desired` and the cached kernel view (read first when
    /// there is none, e.g. on the first call). When an object fails on the cached view (say a
    /// `caliX` was recreated with a new index), the kernel is re-read and the pass repeated
    /// once, so the caller need not wait for the next resync.
    pub fn apply(
        &mut self,
        dp: &mut Dataplane<'_>,
        desired: &DesiredState,
    ) -> Result<Report, ReconcileError> {
        let cached = self.view.is_some();
        let report = self.reconcile(dp, desired, false)?;
        if cached && !report.errors.is_empty() {
            return self.resync(dp, desired);
        }
        Ok(report)
    }

    fn reconcile(
        &mut self,
        dp: &mut Dataplane<'_>,
        desired: &DesiredState,
        full: bool,
    ) -> Result<Report, ReconcileError> {
        let full = full || self.view.is_none();
        let mut view = match self.view.take() {
            Some(v) => v,
            None => read_view(dp.rtnl)?,
        };
        let deletes = !self.hold_deletes;
        let mut report = Report::default();

        // 1. The devices, before the routes and neighbours that use them.
        let device = self.device_phase(
            dp,
            desired.vxlan.as_ref(),
            false,
            &mut view,
            full,
            &mut report,
        )?;
        let device6 = self.device_phase(
            dp,
            desired.vxlan_v6.as_ref(),
            true,
            &mut view,
            full,
            &mut report,
        )?;

        // 1b. The IPIP device (the kernel's tunl0).
        match &desired.ipip {
            Some(want) => {
                if let Err(e) = ipip::ensure(dp.rtnl, want, &mut report) {
                    report.errors.push(e);
                }
                self.ipip_wanted = true;
            }
            None if deletes && (full || self.ipip_wanted) => {
                if let Err(e) = ipip::release(dp.rtnl, &mut report) {
                    report.errors.push(e);
                }
                self.ipip_wanted = false;
            }
            None => {}
        }

        // 2. Neighbours and FDB entries on them.
        for (index, name, family) in [
            (device, VXLAN_DEVICE, Family::V4),
            (device6, VXLAN_V6_DEVICE, Family::V6),
        ] {
            let Some(index) = index else { continue };
            let neigh = desired
                .neighbours
                .values()
                .filter(|n| n.dev == name)
                .map(|n| {
                    Ok((
                        n.ip,
                        vxlan::mac_of("neighbour MAC", &n.ip.to_string(), &n.mac)?,
                    ))
                })
                .collect::<Result<BTreeMap<_, _>, ReconcileError>>()?;
            let fdb = vxlan::fdb_targets(desired.fdb.values().filter(|f| f.dev == name))?;
            let read = |what| move |source| ReconcileError::Read { what, source };
            vxlan::sync_neighbours(dp.rtnl, index, family, &neigh, deletes, &mut report)
                .map_err(read("neighbours"))?;
            vxlan::sync_fdb(dp.rtnl, index, &fdb, deletes, &mut report).map_err(read("fdb"))?;
        }

        // 3.–5. Routes (one batch), device removal and natOutgoing. The nft table touches
        // nothing else, so its `nft -f -` child runs on a scoped thread (which inherits this
        // thread's network namespace) while the route batch goes out; its outcome is merged
        // last, where the nat step always stood. An unchanged table on an incremental pass
        // runs no process, so no thread then (nor when one cannot be started).
        let mut nat_applied = self.nat_applied.take();
        let nat_work = full || nat_applied.as_ref() != Some(&desired.nat);
        let (failed, beside) = std::thread::scope(|s| {
            let nft = &mut *dp.nft;
            let applied = &mut nat_applied;
            let nat = nat_work.then(|| {
                std::thread::Builder::new()
                    .name("felix-nft".into())
                    .spawn_scoped(s, move || {
                        let mut r = Report::default();
                        nat::sync(nft, &desired.nat, applied, full, &mut r);
                        r
                    })
                    .ok()
            });
            let failed = self.routes_and_removal(dp.rtnl, desired, &mut view, deletes, &mut report);
            match nat.flatten().map(|h| h.join()) {
                None => (failed, None),
                Some(Ok(r)) => (failed, Some(r)),
                Some(Err(panic)) => std::panic::resume_unwind(panic),
            }
        });
        let nat_report = beside.unwrap_or_else(|| {
            let mut r = Report::default();
            nat::sync(dp.nft, &desired.nat, &mut nat_applied, full, &mut r);
            r
        });
        self.nat_applied = nat_applied;
        report.nat_applied = nat_report.nat_applied;
        report.errors.extend(nat_report.errors);

        // A failed object leaves the view uncertain: read the kernel again next time.
        if !failed && report.errors.is_empty() {
            self.view = Some(view);
        }
        Ok(report)
    }

    /// Steps 3 and 4 of `reconcile`; returns whether an object failed.
    fn routes_and_removal(
        &mut self,
        rtnl: &mut dyn Rtnl,
        desired: &DesiredState,
        view: &mut KernelView,
        deletes: bool,
        report: &mut Report,
    ) -> bool {
        // 3. Routes, one batch.
        let mut failed = self.route_phase(rtnl, desired, view, deletes, report);

        // 4. A device goes after the routes through it.
        for v6 in [false, true] {
            let wanted = if v6 {
                &desired.vxlan_v6
            } else {
                &desired.vxlan
            };
            if wanted.is_some() || !deletes {
                continue;
            }
            let Some(link) = view.vxlan_slot(v6).take() else {
                continue;
            };
            match rtnl.delete_link(&link.link.name) {
                Ok(()) => {
                    report.device_deleted = true;
                    view.routes.forget_oif(link.link.index);
                    view.links.remove(&link.link.name);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    report.errors.push(e);
                    failed = true;
                }
            }
        }
        failed
    }

    fn device_phase(
        &mut self,
        dp: &mut Dataplane<'_>,
        want: Option<&VxlanDevice>,
        v6: bool,
        view: &mut KernelView,
        full: bool,
        report: &mut Report,
    ) -> Result<Option<u32>, ReconcileError> {
        let Some(want) = want else {
            return Ok(None);
        };
        let parent = match &want.parent {
            None => None,
            Some(name) => match resolve(dp.rtnl, &mut view.links, name) {
                Some(i) => Some(i),
                None => {
                    report.errors.push(calico_dataplane::Error::Invalid {
                        what: "vxlan parent interface",
                        detail: format!(
                            "{name} (parent of {}) does not exist; retrying on the next resync",
                            want.name
                        ),
                    });
                    return Ok(None);
                }
            },
        };
        let spec = vxlan::spec(want, parent)?;
        let actual = view.vxlan_slot(v6).take();
        let old_index = actual.as_ref().map(|l| l.link.index);
        let (link, created) = match vxlan::ensure_device(dp.rtnl, &spec, actual, report) {
            Ok(x) => x,
            Err(e) => {
                report.errors.push(e);
                return Ok(None);
            }
        };
        let index = link.link.index;
        if created {
            if let Some(old) = old_index {
                view.routes.forget_oif(old);
            }
            view.links.insert(link.link.name.clone(), index);
        }
        *view.vxlan_slot(v6) = Some(link);
        if let Err(e) = vxlan::ensure_address(dp.rtnl, index, want.tunnel_addr, report) {
            report.errors.push(e);
        }
        if (created || full) && !v6 {
            write_sysctl(dp.sysctl, &want.name, report);
        }
        Ok(Some(index))
    }

    /// Returns whether a batch element failed.
    fn route_phase(
        &mut self,
        rtnl: &mut dyn Rtnl,
        desired: &DesiredState,
        view: &mut KernelView,
        deletes: bool,
        report: &mut Report,
    ) -> bool {
        let mut want = BTreeMap::new();
        let mut keep = BTreeSet::new();
        for (dst, r) in &desired.routes {
            let oif = match routes::device_of(r) {
                None => None,
                Some(name) => match resolve(rtnl, &mut view.links, name) {
                    Some(i) => Some(i),
                    None => {
                        report.pending.push(*dst);
                        keep.insert(*dst);
                        continue;
                    }
                },
            };
            want.insert(*dst, routes::kernel_route(r, oif));
        }
        let diff = routes::diff(&want, &keep, &view.routes, deletes);
        report.conflicts = diff.conflicts;
        if diff.changes.is_empty() {
            return false;
        }
        let failures = match rtnl.apply_routes(&diff.changes) {
            Ok(f) => f,
            Err(e) => {
                report.errors.push(e);
                return true;
            }
        };
        let failed: BTreeSet<usize> = failures.iter().map(|f| f.index).collect();
        for (i, change) in diff.changes.iter().enumerate() {
            if failed.contains(&i) {
                continue;
            }
            view.routes.applied(change);
            match change {
                calico_dataplane::RouteChange::Delete(_) => report.routes_deleted += 1,
                _ => report.routes_replaced += 1,
            }
        }
        let any = !failures.is_empty();
        report.errors.extend(failures.into_iter().filter_map(|f| {
            // A delete of a route that is already gone is what we wanted.
            let gone = matches!(
                diff.changes[f.index],
                calico_dataplane::RouteChange::Delete(_)
            ) && f.error.is_not_found();
            (!gone).then_some(f.error)
        }));
        any
    }
}

/// Interface index by name: the cached one, else a fresh lookup (a `caliX` may have appeared).
fn resolve(rtnl: &mut dyn Rtnl, links: &mut BTreeMap<String, u32>, name: &str) -> Option<u32> {
    if let Some(i) = links.get(name) {
        return Some(*i);
    }
    let link = rtnl.link_by_name(name).ok().flatten()?;
    links.insert(name.to_string(), link.index);
    Some(link.index)
}

fn read_view(rtnl: &mut dyn Rtnl) -> Result<KernelView, ReconcileError> {
    let read = |what| move |source| ReconcileError::Read { what, source };
    let links: BTreeMap<String, u32> = rtnl
        .links()
        .map_err(read("links"))?
        .into_iter()
        .map(|l| (l.name, l.index))
        .collect();
    let names: BTreeMap<u32, String> = links.iter().map(|(n, i)| (*i, n.clone())).collect();
    let mut listed = rtnl
        .routes(&RouteFilter::main(Family::V4))
        .map_err(read("IPv4 routes"))?;
    listed.extend(
        rtnl.routes(&RouteFilter::main(Family::V6))
            .map_err(read("IPv6 routes"))?,
    );
    let routes = routes::ActualRoutes::from_listing(listed, &|i| names.get(&i).cloned());
    let vxlan = rtnl
        .vxlan_by_name(VXLAN_DEVICE)
        .map_err(read("vxlan device"))?;
    let vxlan_v6 = rtnl
        .vxlan_by_name(VXLAN_V6_DEVICE)
        .map_err(read("vxlan-v6 device"))?;
    Ok(KernelView {
        links,
        routes,
        vxlan,
        vxlan_v6,
    })
}

fn write_sysctl(sysctl: &mut dyn Sysctl, dev: &str, report: &mut Report) {
    let key = match SysctlKey::ipv4_conf(dev, "rp_filter") {
        Ok(k) => k,
        Err(e) => {
            report.errors.push(e);
            return;
        }
    };
    if sysctl.get(&key).ok().as_deref() == Some(VXLAN_RP_FILTER) {
        return;
    }
    match sysctl.set(&key, VXLAN_RP_FILTER) {
        Ok(()) => report.sysctls_written += 1,
        Err(e) => report.errors.push(e),
    }
}
