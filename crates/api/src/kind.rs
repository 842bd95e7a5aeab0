//! The resource kinds: their names as users type them, plural key segments, and scope.

use std::fmt;

macro_rules! kinds {
    ($( $variant:ident => $name:literal, $plural:literal, namespaced: $ns:literal, aliases: [$($alias:literal),*] );* $(;)?) => {
        /// A projectcalico.org/v3 resource kind.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind { $($variant),* }

        impl Kind {
            /// Every kind, in a stable order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),*];

            /// The `kind:` field value, e.g. `IPPool`.
            pub fn name(self) -> &'static str {
                match self { $(Kind::$variant => $name),* }
            }

            /// Lower-case plural used in datastore keys, e.g. `ippools`.
            pub fn plural(self) -> &'static str {
                match self { $(Kind::$variant => $plural),* }
            }

            /// Whether resources of this kind live in a namespace.
            pub fn namespaced(self) -> bool {
                match self { $(Kind::$variant => $ns),* }
            }

            /// Resolves what a user types on the command line (`ippool`, `ippools`, `IPPool`,
            /// `pool`, `wep` …), case-insensitively.
            pub fn from_user(s: &str) -> Option<Kind> {
                let l = s.to_ascii_lowercase();
                $(
                    if l == $name.to_ascii_lowercase() || l == $plural $(|| l == $alias)* {
                        return Some(Kind::$variant);
                    }
                )*
                None
            }

            /// Resolves the exact `kind:` field value of a document.
            pub fn from_kind_field(s: &str) -> Option<Kind> {
                match s { $($name => Some(Kind::$variant),)* _ => None }
            }
        }
    };
}

kinds! {
    IPPool => "IPPool", "ippools", namespaced: false, aliases: ["ippool", "pool", "pools", "ipp", "ipps"];
    IPAMConfiguration => "IPAMConfiguration", "ipamconfigurations", namespaced: false, aliases: ["ipamconfig", "ipamconfigs", "ipamconfiguration"];
    IPReservation => "IPReservation", "ipreservations", namespaced: false, aliases: ["ipreservation", "ipr", "iprs", "reservation", "reservations"];
    BlockAffinity => "BlockAffinity", "blockaffinities", namespaced: false, aliases: ["blockaffinity", "affinity", "affinities", "bas", "ba"];
    Node => "Node", "nodes", namespaced: false, aliases: ["node", "no", "nos"];
    WorkloadEndpoint => "WorkloadEndpoint", "workloadendpoints", namespaced: true, aliases: ["workloadendpoint", "wep", "weps"];
    HostEndpoint => "HostEndpoint", "hostendpoints", namespaced: false, aliases: ["hostendpoint", "hep", "heps"];
    BGPConfiguration => "BGPConfiguration", "bgpconfigurations", namespaced: false, aliases: ["bgpconfiguration", "bgpconfig", "bgpconfigs"];
    BGPPeer => "BGPPeer", "bgppeers", namespaced: false, aliases: ["bgppeer", "bgpp", "bgpps", "bp", "bps"];
    BGPFilter => "BGPFilter", "bgpfilters", namespaced: false, aliases: ["bgpfilter", "bgpf", "bgpfs", "bf", "bfs"];
    FelixConfiguration => "FelixConfiguration", "felixconfigurations", namespaced: false, aliases: ["felixconfiguration", "felixconfig", "felixconfigs"];
    NetworkPolicy => "NetworkPolicy", "networkpolicies", namespaced: true, aliases: ["networkpolicy", "policy", "np", "nps", "policies", "pol", "pols"];
    GlobalNetworkPolicy => "GlobalNetworkPolicy", "globalnetworkpolicies", namespaced: false, aliases: ["globalnetworkpolicy", "gnp", "gnps"];
    Tier => "Tier", "tiers", namespaced: false, aliases: ["tier"];
    NetworkSet => "NetworkSet", "networksets", namespaced: true, aliases: ["networkset", "netset", "netsets"];
    GlobalNetworkSet => "GlobalNetworkSet", "globalnetworksets", namespaced: false, aliases: ["globalnetworkset", "gnetsets"];
    Profile => "Profile", "profiles", namespaced: false, aliases: ["profile", "pro", "pros"];
    ClusterInformation => "ClusterInformation", "clusterinformations", namespaced: false, aliases: ["clusterinformation", "clusterinfo", "clusterinfos"];
    KubeControllersConfiguration => "KubeControllersConfiguration", "kubecontrollersconfigurations", namespaced: false, aliases: ["kubecontrollersconfiguration", "kcc", "kubecontrollersconfig", "kubecontrollersconfigs"];
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_resolve() {
        assert_eq!(Kind::from_user("ippool"), Some(Kind::IPPool));
        assert_eq!(Kind::from_user("IPPools"), Some(Kind::IPPool));
        assert_eq!(Kind::from_user("wep"), Some(Kind::WorkloadEndpoint));
        assert_eq!(Kind::from_user("gnp"), Some(Kind::GlobalNetworkPolicy));
        assert_eq!(Kind::from_user("pols"), Some(Kind::NetworkPolicy));
        assert_eq!(Kind::from_user("bgpf"), Some(Kind::BGPFilter));
        assert_eq!(Kind::from_user("nonsense"), None);
        for k in Kind::ALL {
            assert_eq!(Kind::from_user(k.name()), Some(*k));
            assert_eq!(Kind::from_user(k.plural()), Some(*k));
            assert_eq!(Kind::from_kind_field(k.name()), Some(*k));
        }
    }
}
