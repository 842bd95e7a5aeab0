//! ResourceStore refuses an IPPool whose CIDR shares addresses with another pool, on every write
//! path (create, update, apply), naming both pools and `spec.cidr`, and writes nothing then.
//! Runs on the embedded backend.

use calico_api::codec::parse_documents;
use calico_api::{Kind, Resource};
use calico_datastore::Datastore;
use calico_datastore::config::EmbeddedConfig;
use calico_datastore::embedded::EmbeddedDatastore;
use calico_datastore::keys::resource_key;
use calico_datastore::resources::{ResourceStore, StoreError, check_pool_overlap};
use std::sync::Arc;

fn pool(name: &str, cidr: &str) -> Resource {
    let text = format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: {cidr}\n"
    );
    match parse_documents(&text) {
        Ok(mut rs) if rs.len() == 1 => rs.remove(0),
        other => panic!("pool {name} {cidr} does not parse to one resource: {other:?}"),
    }
}

struct Store {
    store: ResourceStore,
    ds: Arc<dyn Datastore>,
    _dir: tempfile::TempDir,
}

fn embedded() -> Store {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = EmbeddedConfig {
        path: dir.path().join("calico.db"),
    };
    let ds: Arc<dyn Datastore> =
        Arc::new(EmbeddedDatastore::open(&config).expect("open the embedded store"));
    Store {
        store: ResourceStore::new(ds.clone()),
        ds,
        _dir: dir,
    }
}

async fn names(s: &ResourceStore) -> Vec<String> {
    let mut v: Vec<String> = s
        .list(Kind::IPPool, None)
        .await
        .expect("list pools")
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    v.sort();
    v
}

#[track_caller]
fn assert_overlap(r: Result<Resource, StoreError>, new: &str, other: &str, other_cidr: &str) {
    let err = match r {
        Err(e @ StoreError::Invalid { .. }) => e.to_string(),
        other => panic!("expected the overlap to be refused, got {other:?}"),
    };
    let want = format!(
        "IPPool({new}) is not valid: spec.cidr: IPPool({new}) CIDR overlaps with IPPool({other}) CIDR {other_cidr}"
    );
    assert!(
        err.starts_with(&want),
        "{err}\nwanted it to start with\n{want}"
    );
}

#[tokio::test]
async fn create_and_apply_refuse_overlapping_pools() {
    let s = embedded();
    let st = &s.store;
    st.create(pool("a", "10.0.0.0/16"))
        .await
        .expect("first pool");
    // Same CIDR, a smaller one inside, a larger one around it: all refused.
    assert_overlap(
        st.create(pool("same", "10.0.0.0/16")).await,
        "same",
        "a",
        "10.0.0.0/16",
    );
    assert_overlap(
        st.create(pool("inner", "10.0.1.0/24")).await,
        "inner",
        "a",
        "10.0.0.0/16",
    );
    assert_overlap(
        st.create(pool("outer", "10.0.0.0/8")).await,
        "outer",
        "a",
        "10.0.0.0/16",
    );
    assert_overlap(
        st.apply(pool("outer", "10.0.0.0/8")).await,
        "outer",
        "a",
        "10.0.0.0/16",
    );
    assert_eq!(names(st).await, ["a"], "a refused pool was written");

    // Neighbours and the other family are fine; re-applying a pool does not overlap itself.
    st.create(pool("b", "10.1.0.0/16"))
        .await
        .expect("adjacent pool");
    st.apply(pool("v6", "fd00:1::/112"))
        .await
        .expect("IPv6 pool");
    st.apply(pool("a", "10.0.0.0/16"))
        .await
        .expect("re-apply of a");
    assert_eq!(names(st).await, ["a", "b", "v6"]);
    assert_overlap(
        st.create(pool("v6b", "fd00::/16")).await,
        "v6b",
        "v6",
        "fd00:1::/112",
    );

    // Every overlapping pool is named.
    let err = st
        .create(pool("all", "10.0.0.0/8"))
        .await
        .expect_err("overlaps a and b")
        .to_string();
    assert!(
        err.contains("overlaps with IPPool(a) CIDR 10.0.0.0/16")
            && err.contains("overlaps with IPPool(b) CIDR 10.1.0.0/16"),
        "{err}"
    );
    // Once the other pool is gone the range is free.
    st.delete(Kind::IPPool, None, "a", None)
        .await
        .expect("delete a");
    st.create(pool("inner", "10.0.1.0/24"))
        .await
        .expect("no longer overlaps");
}

#[tokio::test]
async fn update_refuses_a_pool_that_overlaps_one_written_behind_the_stores_back() {
    let s = embedded();
    let st = &s.store;
    st.create(pool("a", "10.0.0.0/16")).await.expect("pool a");
    // A writer that bypasses ResourceStore (an older client, a raw etcd put) stored an
    // overlapping pool; updating either pool now reports the overlap instead of carrying it on.
    let legacy = pool("legacy", "10.0.128.0/17");
    s.ds.create(
        &resource_key(Kind::IPPool, None, "legacy"),
        legacy.to_json(),
        None,
    )
    .await
    .expect("raw write");
    let mut a = st.get(Kind::IPPool, None, "a").await.expect("get a");
    a.metadata_mut()
        .labels
        .get_or_insert_with(Default::default)
        .insert("x".into(), "y".into());
    assert_overlap(st.update(a.clone()).await, "a", "legacy", "10.0.128.0/17");
    assert_overlap(st.apply(a).await, "a", "legacy", "10.0.128.0/17");
    let stored = st.get(Kind::IPPool, None, "a").await.expect("get a");
    assert!(
        stored.metadata().labels.is_none(),
        "a refused update was written"
    );
}

#[test]
fn the_batch_check_sees_pools_not_yet_written() {
    let batch = [
        pool("x", "192.168.0.0/16"),
        pool("y", "192.168.7.0/24"),
        pool("z", "172.16.0.0/12"),
    ];
    let err = check_pool_overlap(&batch[1], &batch).expect_err("y is inside x");
    assert_eq!(
        err.to_string(),
        "IPPool(y) is not valid: spec.cidr: IPPool(y) CIDR overlaps with IPPool(x) CIDR 192.168.0.0/16 (pools may not share addresses: choose a CIDR outside it, or delete IPPool(x) first)"
    );
    check_pool_overlap(&batch[2], &batch).expect("z overlaps nothing");
}
