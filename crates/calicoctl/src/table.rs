//! `calicoctl get` tables: per-kind column sets and Go-tabwriter layout, like upstream.
//!
//! ```text
//!   Resource ──serde_json──▶ Value ──Column::cell──▶ Vec<String> rows ──layout──▶ text
//! ```
//!
//! Cells are read from the resource's JSON form (upstream's camelCase field names), so the
//! tables do not depend on how the typed structs in `calico-api` are laid out. Each cell
//! reproduces what upstream's Go template prints for that column, including Go's rendering of
//! absent values (`false` for an unset bool, `<nil>` for an unset pointer such as a policy's
//! `order`). Upstream writes every cell followed by a tab into a Go `text/tabwriter` with
//! minwidth 5, tabwidth 1, padding 3 and no flags; `layout` reproduces that exactly, including
//! the padding after the last column, and the blank line printed after each table.

use calico_api::Kind;
use serde_json::Value;

/// Go tabwriter settings used by upstream calicoctl (`tabwriter.NewWriter(os.Stdout, 5, 1, 3, ' ', 0)`).
const MIN_WIDTH: usize = 5;
const PADDING: usize = 3;

/// Global values a cell may need (upstream's template `config` function).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableContext {
    /// The cluster AS number (`BGPConfiguration default` spec.asNumber, else 64512, or
    /// `unknown` when the datastore could not be read), shown as `(N)` for nodes that inherit it.
    pub default_as_number: String,
}

impl Default for TableContext {
    fn default() -> Self {
        TableContext {
            default_as_number: "64512".into(),
        }
    }
}

/// The default (`ps`) or `wide` headings of a kind, as upstream's resource manager defines them.
pub fn default_headings(kind: Kind, wide: bool) -> &'static [&'static str] {
    use Kind::*;
    match (kind, wide) {
        (IPPool, false) => &["NAME", "CIDR", "SELECTOR"],
        (IPPool, true) => &[
            "NAME",
            "CIDR",
            "NAT",
            "IPIPMODE",
            "VXLANMODE",
            "DISABLED",
            "DISABLEBGPEXPORT",
            "SELECTOR",
            "ASSIGNMENTMODE",
        ],
        (Node, false) => &["NAME"],
        (Node, true) => &["NAME", "ASN", "IPV4", "IPV6"],
        (WorkloadEndpoint, false) => &["WORKLOAD", "NODE", "NETWORKS", "INTERFACE"],
        (WorkloadEndpoint, true) => &[
            "NAME",
            "WORKLOAD",
            "NODE",
            "NETWORKS",
            "INTERFACE",
            "PROFILES",
            "NATS",
        ],
        (BGPPeer, _) => &["NAME", "PEERIP", "NODE", "ASN"],
        (BGPConfiguration, _) => &["NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"],
        (BGPFilter, _) => &[
            "NAME",
            "NUMEXPORTV4",
            "NUMIMPORTV4",
            "NUMEXPORTV6",
            "NUMIMPORTV6",
        ],
        (ClusterInformation, _) => &[
            "NAME",
            "CLUSTERGUID",
            "CLUSTERTYPE",
            "CALICOVERSION",
            "DATASTOREREADY",
        ],
        (GlobalNetworkPolicy | NetworkPolicy, false) => &["NAME", "TIER"],
        (GlobalNetworkPolicy | NetworkPolicy, true) => &["NAME", "TIER", "ORDER", "SELECTOR"],
        (GlobalNetworkSet | NetworkSet, false) => &["NAME"],
        (GlobalNetworkSet | NetworkSet, true) => &["NAME", "NETS"],
        (HostEndpoint, false) => &["NAME", "NODE"],
        (HostEndpoint, true) => &["NAME", "NODE", "INTERFACE", "IPS", "PROFILES"],
        (IPAMConfiguration, false) => &["NAME", "STRICTAFFINITY", "AUTOALLOCATEBLOCKS"],
        (IPAMConfiguration, true) => &[
            "NAME",
            "STRICTAFFINITY",
            "AUTOALLOCATEBLOCKS",
            "MAXBLOCKSPERHOST",
        ],
        (IPReservation, false) => &["NAME"],
        (IPReservation, true) => &["NAME", "CIDRS"],
        (Profile, false) => &["NAME"],
        (Profile, true) => &["NAME", "LABELS"],
        (Tier, _) => &["NAME", "ORDER"],
        // Upstream calicoctl does not list block affinities; these columns are ours.
        (BlockAffinity, false) => &["NAME"],
        (BlockAffinity, true) => &["NAME", "NODE", "CIDR", "STATE"],
        (FelixConfiguration | KubeControllersConfiguration, _) => &["NAME"],
    }
}

/// Every heading a kind accepts (for `-o custom-columns=`), in a stable order.
pub fn valid_headings(kind: Kind) -> Vec<&'static str> {
    let mut all: Vec<&'static str> = default_headings(kind, true).to_vec();
    for h in default_headings(kind, false) {
        if !all.contains(h) {
            all.push(h);
        }
    }
    if kind.namespaced() {
        all.push("NAMESPACE");
    }
    if kind == Kind::WorkloadEndpoint {
        all.push("ORCHESTRATOR");
    }
    all
}

/// The value upstream's template prints for `heading` of one resource (as JSON). `None` when
/// the kind has no such column.
pub fn cell(kind: Kind, heading: &str, r: &Value, ctx: &TableContext) -> Option<String> {
    use Kind::*;
    let spec = |path: &str| lookup(r, &format!("spec.{path}"));
    let s = |path: &str| string(spec(path));
    let b = |path: &str| go_bool(spec(path));
    Some(match (kind, heading) {
        (_, "NAME") => string(lookup(r, "metadata.name")),
        (k, "NAMESPACE") if k.namespaced() => string(lookup(r, "metadata.namespace")),
        (IPPool, "CIDR") => s("cidr"),
        (IPPool, "NAT") => b("natOutgoing"),
        (IPPool, "IPIPMODE") => or_default(s("ipipMode"), "Never"),
        (IPPool, "VXLANMODE") => or_default(s("vxlanMode"), "Never"),
        (IPPool, "DISABLED") => b("disabled"),
        (IPPool, "DISABLEBGPEXPORT") => b("disableBGPExport"),
        (IPPool, "SELECTOR") => s("nodeSelector"),
        (IPPool, "ASSIGNMENTMODE") => go_ptr(spec("assignmentMode")),
        (Node, "ASN") => match spec("bgp") {
            Some(Value::Object(_)) => match spec("bgp.asNumber") {
                Some(v) if !is_zero(v) => scalar(v),
                _ => format!("({})", ctx.default_as_number),
            },
            _ => String::new(),
        },
        (Node, "IPV4") => s("bgp.ipv4Address"),
        (Node, "IPV6") => s("bgp.ipv6Address"),
        (WorkloadEndpoint, "NODE") => s("node"),
        (WorkloadEndpoint, "ORCHESTRATOR") => s("orchestrator"),
        (WorkloadEndpoint, "WORKLOAD") => or_default(s("workload"), &s("pod")),
        (WorkloadEndpoint, "NETWORKS") => join(spec("ipNetworks"), 0),
        (WorkloadEndpoint, "NATS") => join(spec("ipNATs"), 0),
        (WorkloadEndpoint | HostEndpoint, "PROFILES") => join(spec("profiles"), 0),
        (WorkloadEndpoint | HostEndpoint, "INTERFACE") => s("interfaceName"),
        (BGPPeer, "PEERIP") => s("peerIP"),
        (BGPPeer, "NODE") => match (s("node").as_str(), s("nodeSelector").as_str()) {
            ("", "") => "(global)".into(),
            ("", sel) => sel.into(),
            (node, _) => node.into(),
        },
        (BGPPeer, "ASN") => or_default(s("asNumber"), "0"),
        (BGPConfiguration, "LOGSEVERITY") => s("logSeverityScreen"),
        // Go's `{{if ptr}}` is true for any non-nil pointer, so an explicit false prints false.
        (BGPConfiguration, "MESHENABLED") => match spec("nodeToNodeMeshEnabled") {
            Some(v) if !v.is_null() => scalar(v),
            _ => "-".into(),
        },
        (BGPConfiguration, "ASNUMBER") => match spec("asNumber") {
            Some(v) if !v.is_null() => scalar(v),
            _ => "-".into(),
        },
        (BGPFilter, "NUMEXPORTV4") => len(spec("exportV4")),
        (BGPFilter, "NUMIMPORTV4") => len(spec("importV4")),
        (BGPFilter, "NUMEXPORTV6") => len(spec("exportV6")),
        (BGPFilter, "NUMIMPORTV6") => len(spec("importV6")),
        (ClusterInformation, "CLUSTERGUID") => s("clusterGUID"),
        (ClusterInformation, "CLUSTERTYPE") => s("clusterType"),
        (ClusterInformation, "CALICOVERSION") => s("calicoVersion"),
        (ClusterInformation, "DATASTOREREADY") => go_ptr(spec("datastoreReady")),
        (GlobalNetworkPolicy | NetworkPolicy | Tier, "ORDER") => go_ptr(spec("order")),
        (GlobalNetworkPolicy | NetworkPolicy, "SELECTOR") => s("selector"),
        (GlobalNetworkPolicy | NetworkPolicy, "TIER") => s("tier"),
        (GlobalNetworkSet | NetworkSet, "NETS") => join(spec("nets"), 80),
        (HostEndpoint, "NODE") => s("node"),
        (HostEndpoint, "IPS") => join(spec("expectedIPs"), 0),
        (IPAMConfiguration, "STRICTAFFINITY") => b("strictAffinity"),
        (IPAMConfiguration, "AUTOALLOCATEBLOCKS") => b("autoAllocateBlocks"),
        (IPAMConfiguration, "MAXBLOCKSPERHOST") => or_default(s("maxBlocksPerHost"), "0"),
        (IPReservation, "CIDRS") => join(spec("reservedCIDRs"), 80),
        (Profile, "LABELS") => join(spec("labelsToApply"), 0),
        (BlockAffinity, "NODE") => s("node"),
        (BlockAffinity, "CIDR") => s("cidr"),
        (BlockAffinity, "STATE") => s("state"),
        _ => return None,
    })
}

/// The rows (header first) of one table.
pub fn rows(
    kind: Kind,
    headings: &[&str],
    resources: &[Value],
    ctx: &TableContext,
) -> Result<Vec<Vec<String>>, String> {
    if let Some(h) = headings
        .iter()
        .find(|h| cell(kind, h, &Value::Null, ctx).is_none())
    {
        return Err(format!(
            "unknown heading {h}, valid values are: {}",
            valid_headings(kind).join(", ")
        ));
    }
    let mut out = vec![headings.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for r in resources {
        let mut row = Vec::with_capacity(headings.len());
        for h in headings {
            row.push(cell(kind, h, r, ctx).unwrap_or_default());
        }
        out.push(row);
    }
    Ok(out)
}

/// Lays out rows as Go's tabwriter does with upstream's settings when every cell (including
/// the last) is followed by a tab: each column is as wide as its widest cell plus 3 (at least
/// 5), and every cell is padded to that width. Widths count characters, as Go counts runes.
pub fn layout(rows: &[Vec<String>]) -> String {
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..ncols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count() + PADDING)
                .fold(MIN_WIDTH, usize::max)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for (c, w) in row.iter().zip(&widths) {
            out.push_str(c);
            out.extend(std::iter::repeat_n(' ', w - c.chars().count()));
        }
        out.push('\n');
    }
    out
}

/// One whole table as upstream prints it (headings, rows, then an empty line).
pub fn render(
    kind: Kind,
    headings: &[&str],
    resources: &[Value],
    ctx: &TableContext,
) -> Result<String, String> {
    let mut text = layout(&rows(kind, headings, resources, ctx)?);
    text.push('\n');
    Ok(text)
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, seg| v.get(seg))
}

/// A string field; absent or null prints as Go's zero value "".
fn string(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(v) => scalar(v),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Number(n) => go_number(n),
        other => other.to_string(),
    }
}

/// Go's `%v` of a number: integers as-is, floats in shortest form without a trailing `.0`.
fn go_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{}", f as i64),
        Some(f) => f.to_string(),
        None => n.to_string(),
    }
}

/// A non-pointer bool: absent prints `false`.
fn go_bool(v: Option<&Value>) -> String {
    match v {
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "false".into(),
    }
}

/// A pointer field: absent prints `<nil>` as Go's template does for a nil pointer.
fn go_ptr(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "<nil>".into(),
        Some(v) => scalar(v),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || s == "0",
        _ => false,
    }
}

fn or_default(s: String, default: &str) -> String {
    if s.is_empty() { default.to_string() } else { s }
}

fn len(v: Option<&Value>) -> String {
    match v {
        Some(Value::Array(a)) => a.len().to_string(),
        Some(Value::Object(m)) => m.len().to_string(),
        _ => "0".into(),
    }
}

/// Upstream's `join`/`joinAndTruncate`: list items (or sorted `k=v` map entries) joined by
/// commas, cut to `max` characters ending in `...` when `max` > 0.
fn join(v: Option<&Value>, max: usize) -> String {
    let items: Vec<String> = match v {
        Some(Value::Array(a)) => a.iter().map(scalar).collect(),
        Some(Value::Object(m)) => {
            let mut kv: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", scalar(v)))
                .collect();
            kv.sort();
            kv
        }
        None | Some(Value::Null) => return String::new(),
        Some(other) => vec![scalar(other)],
    };
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
        if max > 0 && out.len() > max {
            let mut cut = max - 3;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("...");
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool(name: &str, cidr: &str, vxlan: &str) -> Value {
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
               "metadata": {"name": name},
               "spec": {"cidr": cidr, "blockSize": 26, "ipipMode": "Never", "vxlanMode": vxlan,
                        "natOutgoing": true, "nodeSelector": "all()",
                        "assignmentMode": "Automatic"}})
    }

    #[test]
    fn ippool_wide_matches_upstream_layout() {
        let pools = [pool("default-pool", "10.233.64.0/18", "Always")];
        let t = render(
            Kind::IPPool,
            default_headings(Kind::IPPool, true),
            &pools,
            &TableContext::default(),
        )
        .unwrap();
        assert_eq!(
            t,
            "NAME           CIDR             NAT    IPIPMODE   VXLANMODE   DISABLED   DISABLEBGPEXPORT   SELECTOR   ASSIGNMENTMODE   \n\
             default-pool   10.233.64.0/18   true   Never      Always      false      false              all()      Automatic        \n\
             \n"
        );
    }

    #[test]
    fn ippool_default_columns_and_unset_modes() {
        let mut p = pool("p1", "192.168.0.0/16", "CrossSubnet");
        p["spec"].as_object_mut().unwrap().remove("ipipMode");
        let p2 = pool("a-much-longer-pool-name", "fd00::/108", "Never");
        let ctx = TableContext::default();
        let t = render(
            Kind::IPPool,
            default_headings(Kind::IPPool, false),
            &[p.clone(), p2],
            &ctx,
        )
        .unwrap();
        assert_eq!(
            t,
            "NAME                      CIDR             SELECTOR   \n\
             p1                        192.168.0.0/16   all()      \n\
             a-much-longer-pool-name   fd00::/108       all()      \n\n"
        );
        assert_eq!(cell(Kind::IPPool, "IPIPMODE", &p, &ctx).unwrap(), "Never");
    }

    #[test]
    fn minimum_width_is_five() {
        assert_eq!(
            layout(&[vec!["A".into(), "".into()]]),
            "A    ".to_string() + "     \n"
        );
    }

    #[test]
    fn node_wide_shows_inherited_asn() {
        let nodes = [
            json!({"metadata": {"name": "node1"},
                   "spec": {"bgp": {"ipv4Address": "10.10.10.11/24"}}}),
            json!({"metadata": {"name": "node2"},
                   "spec": {"bgp": {"asNumber": 65001, "ipv4Address": "10.10.20.12/24",
                                    "ipv6Address": "fd00::12/64"}}}),
            json!({"metadata": {"name": "node3"}, "spec": {}}),
        ];
        let ctx = TableContext::default();
        let t = render(Kind::Node, default_headings(Kind::Node, true), &nodes, &ctx).unwrap();
        assert_eq!(
            t,
            "NAME    ASN       IPV4             IPV6          \n\
             node1   (64512)   10.10.10.11/24                 \n\
             node2   65001     10.10.20.12/24   fd00::12/64   \n\
             node3                                            \n\n"
        );
        let ctx = TableContext {
            default_as_number: "65531".into(),
        };
        assert_eq!(cell(Kind::Node, "ASN", &nodes[0], &ctx).unwrap(), "(65531)");
    }

    #[test]
    fn workload_endpoints_with_namespace_column() {
        let weps = [
            json!({"metadata": {"name": "node1-k8s-nginx-eth0", "namespace": "default"},
                           "spec": {"node": "node1", "pod": "nginx", "interfaceName": "cali1234567890a",
                                    "ipNetworks": ["10.244.1.5/32", "fd00::5/128"]}}),
        ];
        let mut h = vec!["NAMESPACE"];
        h.extend_from_slice(default_headings(Kind::WorkloadEndpoint, false));
        let t = render(Kind::WorkloadEndpoint, &h, &weps, &TableContext::default()).unwrap();
        assert_eq!(
            t,
            "NAMESPACE   WORKLOAD   NODE    NETWORKS                    INTERFACE         \n\
             default     nginx      node1   10.244.1.5/32,fd00::5/128   cali1234567890a   \n\n"
        );
    }

    #[test]
    fn bgppeer_and_bgpconfiguration() {
        let ctx = TableContext::default();
        let peers = [
            json!({"metadata": {"name": "global-peer"}, "spec": {"peerIP": "10.0.0.1", "asNumber": 65102}}),
            json!({"metadata": {"name": "rr"}, "spec": {"nodeSelector": "has(rr)", "peerSelector": "has(rr)"}}),
            json!({"metadata": {"name": "leaf"}, "spec": {"node": "master-1", "peerIP": "2001:193:168:1::4", "asNumber": 65102}}),
        ];
        let t = render(
            Kind::BGPPeer,
            default_headings(Kind::BGPPeer, false),
            &peers,
            &ctx,
        )
        .unwrap();
        assert_eq!(
            t,
            "NAME          PEERIP              NODE       ASN     \n\
             global-peer   10.0.0.1            (global)   65102   \n\
             rr                                has(rr)    0       \n\
             leaf          2001:193:168:1::4   master-1   65102   \n\n"
        );
        let cfgs = [
            json!({"metadata": {"name": "default"}, "spec": {"logSeverityScreen": "Info", "nodeToNodeMeshEnabled": false, "asNumber": 65531}}),
            json!({"metadata": {"name": "node.x"}, "spec": {}}),
        ];
        let t = render(
            Kind::BGPConfiguration,
            default_headings(Kind::BGPConfiguration, false),
            &cfgs,
            &ctx,
        )
        .unwrap();
        assert_eq!(
            t,
            "NAME      LOGSEVERITY   MESHENABLED   ASNUMBER   \n\
             default   Info          false         65531      \n\
             node.x                  -             -          \n\n"
        );
    }

    #[test]
    fn policies_profiles_and_sets() {
        let ctx = TableContext::default();
        let gnp = json!({"metadata": {"name": "deny-all"}, "spec": {"tier": "default", "selector": "all()"}});
        assert_eq!(
            cell(Kind::GlobalNetworkPolicy, "ORDER", &gnp, &ctx).unwrap(),
            "<nil>"
        );
        let gnp2 = json!({"metadata": {"name": "p"}, "spec": {"order": 100.0}});
        assert_eq!(
            cell(Kind::GlobalNetworkPolicy, "ORDER", &gnp2, &ctx).unwrap(),
            "100"
        );
        let gnp3 = json!({"metadata": {"name": "p"}, "spec": {"order": 1.5}});
        assert_eq!(
            cell(Kind::GlobalNetworkPolicy, "ORDER", &gnp3, &ctx).unwrap(),
            "1.5"
        );
        let prof = json!({"metadata": {"name": "kns.default"}, "spec": {"labelsToApply": {"b": "2", "a": "1"}}});
        assert_eq!(
            cell(Kind::Profile, "LABELS", &prof, &ctx).unwrap(),
            "a=1,b=2"
        );
        let nets: Vec<String> = (0..20).map(|i| format!("10.0.{i}.0/24")).collect();
        let set = json!({"metadata": {"name": "s"}, "spec": {"nets": nets}});
        let c = cell(Kind::GlobalNetworkSet, "NETS", &set, &ctx).unwrap();
        assert_eq!(c.len(), 80);
        assert!(c.ends_with("..."), "{c}");
        let hep = json!({"metadata": {"name": "h"}, "spec": {"node": "n1", "interfaceName": "eth0", "expectedIPs": ["10.0.0.1", "10.0.0.2"]}});
        assert_eq!(
            render(
                Kind::HostEndpoint,
                default_headings(Kind::HostEndpoint, true),
                &[hep],
                &ctx
            )
            .unwrap(),
            "NAME   NODE   INTERFACE   IPS                 PROFILES   \n\
             h      n1     eth0        10.0.0.1,10.0.0.2              \n\n"
        );
    }

    #[test]
    fn unknown_heading_lists_valid_ones() {
        let e = rows(
            Kind::IPPool,
            &["NAME", "BOGUS"],
            &[pool("p", "10.0.0.0/8", "Never")],
            &TableContext::default(),
        )
        .unwrap_err();
        assert!(
            e.starts_with("unknown heading BOGUS, valid values are: NAME, CIDR, NAT"),
            "{e}"
        );
    }

    #[test]
    fn empty_listing_prints_headings_only() {
        assert_eq!(
            render(
                Kind::IPPool,
                default_headings(Kind::IPPool, false),
                &[],
                &TableContext::default()
            )
            .unwrap(),
            "NAME   CIDR   SELECTOR   \n\n"
        );
    }
}
