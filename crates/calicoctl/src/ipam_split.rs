//! `calicoctl ipam split N --cidr=C | --name=P`: replace one IP pool by N (a power of two) equal
//! children named `split-<pool>-<i>`, as upstream. Only with the datastore locked (nothing may
//! allocate meanwhile). Every child is built and validated before anything is written; then the
//! old pool is disabled, the children are created (they overlap the disabled parent, so they are
//! written without the overlap check, like upstream's "unsafe create"), and the parent deleted.

use calico_api::{Kind, Resource};
use calico_datastore::keys;
use calico_datastore::resources::{ResourceStore, prepare};
use ipnet::IpNet;

use crate::ipam::cluster_info;

/// The `parts` equal children of `cidr`.
pub fn split_cidr(cidr: &str, parts: u32) -> Result<Vec<IpNet>, String> {
    if parts < 2 || !parts.is_power_of_two() {
        return Err(format!(
            "number to split CIDR into is not a valid power of 2: {parts}"
        ));
    }
    let net: IpNet = cidr
        .parse()
        .map_err(|_| format!("error reading CIDR {cidr} before attempting to split it"))?;
    let power = parts.trailing_zeros() as u8;
    let new_len = net.prefix_len() + power;
    if new_len > net.max_prefix_len() {
        return Err(format!(
            "the CIDR {cidr} is not large enough to be split into {parts} parts"
        ));
    }
    Ok(net
        .trunc()
        .subnets(new_len)
        .map_err(|e| e.to_string())?
        .collect())
}

pub async fn run(
    config: &str,
    number: &str,
    cidr: Option<&str>,
    name: Option<&str>,
) -> Result<String, String> {
    let parts: u32 = number.parse().map_err(|e| {
        format!("error reading number to split IP pools into. {number} is not a valid number: {e}")
    })?;
    if cidr.is_none() && name.is_none() {
        return Err(
            "no name or CIDR provided. Provide a name or CIDR to denote the IP pool to split"
                .into(),
        );
    }
    let store = crate::client::connect(Some(config)).await?;
    let ds = store.datastore().clone();
    let (_, _, locked) = cluster_info(&ds).await?;
    if !locked {
        return Err("datastore is not locked. Run the `calicoctl datastore migrate lock` command in order split the IP pools".into());
    }
    let pools = store
        .list(Kind::IPPool, None)
        .await
        .map_err(|e| e.to_string())?;
    let old = pools.into_iter().find_map(|r| match r {
        Resource::IPPool(p)
            if name.is_some_and(|n| p.metadata.name == n)
                || cidr.is_some_and(|c| p.spec.cidr == c) =>
        {
            Some(p)
        }
        _ => None,
    });
    let Some(mut old) = old else {
        return Err(format!(
            "unable to find IP pool {} covering the specified CIDR {}",
            name.unwrap_or(""),
            cidr.unwrap_or("")
        ));
    };
    let children = split_cidr(&old.spec.cidr, parts).map_err(|e| {
        format!(
            "error splitting the CIDR {} into {parts} CIDRs: {e}",
            old.spec.cidr
        )
    })?;
    let base: String = old.metadata.name.chars().take(245).collect();
    let mut created = Vec::new();
    for (i, net) in children.iter().enumerate() {
        let mut child = old.clone();
        child.metadata = calico_api::ObjectMeta {
            name: format!("split-{base}-{i}"),
            labels: old.metadata.labels.clone(),
            annotations: old.metadata.annotations.clone(),
            ..Default::default()
        };
        child.spec.cidr = net.to_string();
        child.spec.disabled = None;
        let child = prepare(Resource::IPPool(child))
            .map_err(|e| format!("cannot split into {net}: {e}"))?;
        created.push(child);
    }

    old.spec.disabled = Some(true);
    let old_name = old.metadata.name.clone();
    store
        .update(Resource::IPPool(old))
        .await
        .map_err(|e| format!("error disabling IP pool {old_name}: {e}"))?;
    let writer = ResourceStore::new(ds.clone());
    let mut out = format!("IP Pool {old_name} was successfully split into {parts} smaller pools.");
    for child in &created {
        let key = keys::resource_key(Kind::IPPool, None, child.name());
        let mut stored = child.clone();
        let meta = stored.metadata_mut();
        meta.resource_version = None;
        meta.creation_timestamp = Some(calico_datastore::resources::rfc3339(
            std::time::SystemTime::now(),
        ));
        ds.create(&key, stored.to_json(), None).await.map_err(|e| {
            format!(
                "error using unsafe create to make split pool {}: {e}",
                child.name()
            )
        })?;
        if let Resource::IPPool(p) = child {
            out.push_str(&format!(
                "Created {} with CIDR {}.\n",
                p.metadata.name, p.spec.cidr
            ));
        }
    }
    writer
        .delete(Kind::IPPool, None, &old_name, None)
        .await
        .map_err(|e| format!("error removing the IP pool that was split {old_name}: {e}"))?;
    out.push_str("Please refer to the documentation for final steps.");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_into_powers_of_two() {
        let nets = split_cidr("172.16.0.0/16", 4).unwrap_or_default();
        let s: Vec<String> = nets.iter().map(ToString::to_string).collect();
        assert_eq!(
            s,
            [
                "172.16.0.0/18",
                "172.16.64.0/18",
                "172.16.128.0/18",
                "172.16.192.0/18"
            ]
        );
        assert!(
            split_cidr("10.0.0.0/8", 3)
                .unwrap_err()
                .contains("not a valid power of 2")
        );
        assert!(
            split_cidr("10.0.0.0/31", 4)
                .unwrap_err()
                .contains("not large enough")
        );
        assert_eq!(split_cidr("fd00::/64", 2).unwrap_or_default().len(), 2);
    }
}
