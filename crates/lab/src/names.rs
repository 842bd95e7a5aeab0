//! Names of everything a lab creates, and the patterns `down` uses to find them again.
//!
//! Every name carries the lab: namespaces spell it out (`cl-<tag>-<lab>-<node>`), links — which
//! must fit in 15 bytes — carry the lab's tag, six hex digits of a hash of the lab name
//! (`cb<tag>-<subnet>` bridges, `cv<tag>-<entity>[-<k>]` switch-side veth ends). Inside a lab's
//! own namespaces, node-side links keep the names calico-node expects (`eth1`, `eth2`, …).
//! So two labs, or two test runs with different lab names, never touch each other's objects,
//! and a lab killed half-way is found by prefix even without its state file.

use std::fmt;

/// The switch namespace's role name; nodes and routers may not use it.
pub const SWITCH: &str = "switch";
/// The etcd namespace's role name (datastore type etcd).
pub const ETCD: &str = "etcd";
/// Entity names nodes and routers may not take.
pub const RESERVED: &[&str] = &[SWITCH, ETCD];
/// A node's link into its subnet.
pub const PRIMARY_IFNAME: &str = "eth1";
/// Nodes + routers per lab (entity indexes must fit the link names).
pub const MAX_ENTITIES: usize = 999;
/// Extra interfaces per node or router.
pub const MAX_EXTRA_INTERFACES: usize = 9;
/// Subnets per lab.
pub const MAX_SUBNETS: usize = 999;
const MAX_LAB_NAME: usize = 32;
const MAX_OBJECT_NAME: usize = 63;

/// 64-bit FNV-1a: stable across builds and platforms (the tag must never change for a name).
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The naming scheme of one lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNames {
    lab: String,
    tag: String,
}

impl LabNames {
    pub fn new(lab: &str) -> LabNames {
        LabNames {
            lab: lab.to_string(),
            tag: format!("{:06x}", fnv1a(lab) & 0xff_ffff),
        }
    }

    pub fn lab(&self) -> &str {
        &self.lab
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Prefix of every namespace of this lab.
    pub fn netns_prefix(&self) -> String {
        format!("cl-{}-{}-", self.tag, self.lab)
    }

    /// Namespace of a node or router.
    pub fn netns(&self, entity: &str) -> String {
        format!("{}{entity}", self.netns_prefix())
    }

    pub fn switch_netns(&self) -> String {
        self.netns(SWITCH)
    }

    /// Namespace of pod NAMESPACE/NAME (created by `pod add` once the CNI plugin exists).
    /// '_' never occurs in node or router names, so a pod can never take a node's namespace;
    /// the lab prefix makes `down` remove pods like everything else.
    pub fn pod_netns(&self, namespace: &str, pod: &str) -> String {
        format!("{}pod_{namespace}_{pod}", self.netns_prefix())
    }

    /// Bridge of subnet `i` in the switch namespace.
    pub fn bridge(&self, subnet: usize) -> String {
        format!("cb{}-{subnet}", self.tag)
    }

    /// Switch-side end of entity `e`'s `k`-th link (k = 0 is a node's `eth1`).
    pub fn switch_port(&self, entity: usize, k: usize) -> String {
        if k == 0 {
            format!("cv{}-{entity}", self.tag)
        } else {
            format!("cv{}-{entity}-{k}", self.tag)
        }
    }

    /// Is `name` a namespace of this lab?
    pub fn owns_netns(&self, name: &str) -> bool {
        name.strip_prefix(&self.netns_prefix())
            .is_some_and(|rest| !rest.is_empty())
    }

    /// Is `name` a link this lab would create (bridges and switch ports)?
    pub fn owns_link(&self, name: &str) -> bool {
        name.strip_prefix("cb")
            .or_else(|| name.strip_prefix("cv"))
            .and_then(|rest| rest.strip_prefix(self.tag.as_str()))
            .is_some_and(|rest| rest.starts_with('-'))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError(String);

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn dns_like(s: &str, max: usize, extra: &[char]) -> Result<(), NameError> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(&c);
    if s.is_empty() {
        return Err(NameError("must not be empty".into()));
    }
    if s.len() > max {
        return Err(NameError(format!(
            "{s:?} is {} characters; at most {max}",
            s.len()
        )));
    }
    if !s.chars().all(ok_char) {
        return Err(NameError(format!(
            "{s:?} may contain only lowercase letters, digits and {extra:?}"
        )));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(s.chars().next()) || !alnum(s.chars().last()) {
        return Err(NameError(format!(
            "{s:?} must start and end with a letter or digit"
        )));
    }
    Ok(())
}

/// Lab names: lowercase letters, digits and '-', at most 32 characters.
pub fn check_lab_name(s: &str) -> Result<(), NameError> {
    dns_like(s, MAX_LAB_NAME, &['-'])
}

/// Node, router, subnet and pod names: DNS-label-like, '.' allowed (Kubernetes node names).
pub fn check_object_name(s: &str) -> Result<(), NameError> {
    dns_like(s, MAX_OBJECT_NAME, &['-', '.'])
}

/// Interface names inside a node: at most 15 bytes, no '/', no whitespace.
pub fn check_ifname(s: &str) -> Result<(), NameError> {
    if s.is_empty() || s.len() > 15 {
        return Err(NameError(format!(
            "{s:?}: interface names have 1..=15 bytes"
        )));
    }
    if s == "." || s == ".." || s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(NameError(format!("{s:?} is not a valid interface name")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_fit_the_kernel_limit_at_the_largest_indexes() {
        let n = LabNames::new("a-very-long-lab-name-of-32-chars");
        assert!(
            n.bridge(MAX_SUBNETS).len() <= 15,
            "{}",
            n.bridge(MAX_SUBNETS)
        );
        let p = n.switch_port(MAX_ENTITIES, MAX_EXTRA_INTERFACES);
        assert!(p.len() <= 15, "{p}");
    }

    #[test]
    fn tags_are_stable_and_differ_between_labs() {
        assert_eq!(
            LabNames::new("seed000").tag(),
            LabNames::new("seed000").tag()
        );
        assert_ne!(
            LabNames::new("seed000").tag(),
            LabNames::new("seed001").tag()
        );
        assert_eq!(LabNames::new("x").tag().len(), 6);
    }

    #[test]
    fn ownership_is_by_prefix_and_does_not_leak_to_similar_labs() {
        let a = LabNames::new("lab");
        let b = LabNames::new("lab-2");
        assert!(a.owns_netns(&a.netns("node1")));
        assert!(a.owns_netns(&a.switch_netns()));
        assert!(!a.owns_netns(&b.netns("node1")));
        assert!(!b.owns_netns(&a.netns("node1")));
        assert!(!a.owns_netns(&a.netns_prefix()));
        let pod = a.pod_netns("default", "pod-a");
        assert!(a.owns_netns(&pod));
        assert!(check_object_name(pod.trim_start_matches(&a.netns_prefix())).is_err());
        assert!(a.owns_link(&a.bridge(0)));
        assert!(a.owns_link(&a.switch_port(3, 1)));
        assert!(!a.owns_link(&b.bridge(0)));
        assert!(!a.owns_link("eth1"));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_lab_name("seed000-crosssubnet").is_ok());
        assert!(check_lab_name("Seed").is_err());
        assert!(check_lab_name("-x").is_err());
        assert!(check_lab_name(&"a".repeat(33)).is_err());
        assert!(check_object_name("k01-worker.example").is_ok());
        assert!(check_ifname("eth2").is_ok());
        assert!(check_ifname("a-name-of-16-chr").is_err());
    }
}
