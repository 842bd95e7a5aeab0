//! Routes: desired [`model::Route`]s become kernel routes once their device resolves to an
//! index, and the difference to the owned kernel routes becomes one `apply_routes` batch.
//!
//! Ownership is `felix_owns_route` on the listed route (its device name and protocol); a route
//! we do not own is never replaced or deleted, even when it sits on a destination we want (that
//! is reported as a conflict instead).

use std::collections::{BTreeMap, BTreeSet};

use calico_dataplane::{self as dp, RouteChange, Scope};
use ipnet::IpNet;

use crate::model::{self, IPIP_DEVICE, RouteKind};

/// Kernel routes of the main table, split by ownership.
#[derive(Debug, Default, Clone)]
pub(crate) struct ActualRoutes {
    /// Ours, by destination (several when metrics differ).
    pub owned: BTreeMap<IpNet, Vec<dp::Route>>,
    /// Destinations holding a route we do not own with the default metric.
    pub foreign: BTreeSet<IpNet>,
}

impl ActualRoutes {
    pub fn from_listing(routes: Vec<dp::Route>, name_of: &dyn Fn(u32) -> Option<String>) -> Self {
        let mut out = ActualRoutes::default();
        for r in routes {
            if r.table != dp::TABLE_MAIN {
                continue;
            }
            let dev = r.oif.and_then(name_of);
            if model::felix_owns_route(dev.as_deref(), r.protocol) {
                out.owned.entry(r.dst).or_default().push(r);
            } else if is_default_metric(&r) {
                out.foreign.insert(r.dst);
            }
        }
        out
    }

    /// Record a batch element that the kernel accepted.
    pub fn applied(&mut self, change: &RouteChange) {
        match change {
            RouteChange::Add(r) | RouteChange::Replace(r) => {
                let slot = self.owned.entry(r.dst).or_default();
                slot.retain(|a| !(is_default_metric(a) && is_default_metric(r)));
                slot.push(r.clone());
            }
            RouteChange::Delete(r) => {
                if let Some(slot) = self.owned.get_mut(&r.dst) {
                    slot.retain(|a| a != r);
                    if slot.is_empty() {
                        self.owned.remove(&r.dst);
                    }
                }
            }
        }
    }

    /// Forget routes through `index` (the device went away and took them along).
    pub fn forget_oif(&mut self, index: u32) {
        for slot in self.owned.values_mut() {
            slot.retain(|r| r.oif != Some(index));
        }
        self.owned.retain(|_, v| !v.is_empty());
    }
}

/// IPv6 routes always carry a metric (1024 when none was given); treat that as "no metric".
fn is_default_metric(r: &dp::Route) -> bool {
    match r.metric {
        None | Some(0) => true,
        Some(1024) => r.dst.addr().is_ipv6(),
        Some(_) => false,
    }
}

/// The device a desired route needs, by name.
pub(crate) fn device_of(r: &model::Route) -> Option<&str> {
    match &r.kind {
        RouteKind::Blackhole => None,
        RouteKind::Device { iface } => Some(iface),
        RouteKind::ViaVxlan { gw } => Some(model::vxlan_device_for(gw)),
        RouteKind::ViaNode { dev, .. } => Some(dev),
        RouteKind::ViaIpip { .. } => Some(IPIP_DEVICE),
    }
}

/// The kernel form of a desired route; `oif` is the resolved index of [`device_of`].
pub(crate) fn kernel_route(r: &model::Route, oif: Option<u32>) -> dp::Route {
    let mut out = match (&r.kind, oif) {
        (RouteKind::Blackhole, _) | (_, None) => dp::Route::blackhole(r.dst),
        (RouteKind::Device { .. }, Some(i)) => dp::Route::link(r.dst, i),
        (RouteKind::ViaVxlan { gw }, Some(i)) => dp::Route::via(r.dst, *gw, i),
        (RouteKind::ViaIpip { gw }, Some(i)) => dp::Route::via(r.dst, (*gw).into(), i),
        (RouteKind::ViaNode { gw, .. }, Some(i)) => dp::Route::via(r.dst, *gw, i),
    };
    out.protocol = r.proto;
    out.onlink = r.onlink;
    out.scope = if r.scope_link {
        Scope::Link
    } else {
        Scope::Universe
    };
    out
}

/// Whether the listed route `actual` is what `want` asks for.
pub(crate) fn same_route(want: &dp::Route, actual: &dp::Route) -> bool {
    want.dst == actual.dst
        && want.kind == actual.kind
        && want.scope == actual.scope
        && (want.kind == dp::RouteKind::Blackhole || want.oif == actual.oif)
        && want.gateway == actual.gateway
        && want.onlink == actual.onlink
        && want.protocol == actual.protocol
        && want.table == actual.table
        && is_default_metric(actual)
}

/// What a route diff found besides the batch.
#[derive(Debug, Default)]
pub(crate) struct RouteDiff {
    pub changes: Vec<RouteChange>,
    /// Desired destinations held by a route we do not own.
    pub conflicts: Vec<IpNet>,
}

/// The batch moving `actual` to `want` (destination → resolved kernel route). Deletes come
/// first (they free destinations), then replaces; stale routes are deleted only when
/// `deletes` is true (the graph is in sync).
pub(crate) fn diff(
    want: &BTreeMap<IpNet, dp::Route>,
    keep: &BTreeSet<IpNet>,
    actual: &ActualRoutes,
    deletes: bool,
) -> RouteDiff {
    let mut out = RouteDiff::default();
    let mut sets = Vec::new();
    for (dst, w) in want {
        let have = actual.owned.get(dst).map(Vec::as_slice).unwrap_or_default();
        if deletes {
            // Same destination, another metric: a second route of ours that would shadow or
            // be shadowed; delete it. The default-metric one is replaced in place.
            for a in have.iter().filter(|a| !is_default_metric(a)) {
                out.changes.push(RouteChange::Delete(a.clone()));
            }
        }
        if have.iter().any(|a| same_route(w, a)) {
            continue;
        }
        let ours_in_place = have.iter().any(is_default_metric);
        if !ours_in_place && actual.foreign.contains(dst) {
            out.conflicts.push(*dst);
            continue;
        }
        sets.push(RouteChange::Replace(w.clone()));
    }
    if deletes {
        for (dst, have) in &actual.owned {
            if want.contains_key(dst) || keep.contains(dst) {
                continue;
            }
            out.changes
                .extend(have.iter().map(|a| RouteChange::Delete(a.clone())));
        }
    }
    out.changes.extend(sets);
    out
}
