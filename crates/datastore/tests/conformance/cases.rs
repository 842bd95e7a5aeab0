//! The single-process cases: CRUD and CAS semantics, revisions, lists, watches, compaction,
//! leases, and size limits.

use super::{EVENT_WAIT, Fixture, expect_quiet, next_event};
use anyhow::{Context, bail, ensure};
use calico_datastore::{Error, EventKind, Revision};
use futures::StreamExt;
use std::time::{Duration, Instant};

pub async fn crud(f: Fixture) -> anyhow::Result<()> {
    let s = &f.store;
    let k = f.key("crud/a");
    ensure!(s.get(&k).await?.is_none(), "fresh key must be absent");

    let r1 = s.create(&k, b"v1".to_vec(), None).await?;
    let kv = s.get(&k).await?.context("created key must be readable")?;
    ensure!(kv.key == k && kv.value == b"v1", "get returned {kv:?}");
    ensure!(
        kv.create_revision == r1 && kv.mod_revision == r1,
        "revisions of {kv:?} ≠ {r1}"
    );
    ensure!(kv.lease.is_none(), "no lease was given: {kv:?}");

    match s.create(&k, b"again".to_vec(), None).await {
        Err(Error::AlreadyExists { key }) => ensure!(key == k, "error names {key}"),
        other => bail!("second create must fail AlreadyExists, got {other:?}"),
    }
    ensure!(
        s.get(&k).await?.map(|kv| kv.value) == Some(b"v1".to_vec()),
        "failed create wrote"
    );

    let r2 = s.update(&k, b"v2".to_vec(), r1).await?;
    ensure!(r2 > r1, "update revision {r2} must exceed {r1}");
    let kv = s.get(&k).await?.context("updated key")?;
    ensure!(
        kv.value == b"v2" && kv.mod_revision == r2 && kv.create_revision == r1,
        "{kv:?}"
    );

    match s.update(&f.key("crud/missing"), b"x".to_vec(), r2).await {
        Err(Error::NotFound { .. }) => {}
        other => bail!("update of a missing key must fail NotFound, got {other:?}"),
    }

    let old = s.delete(&k, None).await?;
    ensure!(
        old.value == b"v2" && old.mod_revision == r2,
        "delete returned {old:?}"
    );
    ensure!(s.get(&k).await?.is_none(), "deleted key still readable");
    match s.delete(&k, None).await {
        Err(Error::NotFound { .. }) => {}
        other => bail!("delete of a missing key must fail NotFound, got {other:?}"),
    }

    let r3 = s.create(&k, b"v3".to_vec(), None).await?;
    let kv = s.get(&k).await?.context("recreated key")?;
    ensure!(
        r3 > r2 && kv.create_revision == r3,
        "recreate starts a new life: {kv:?}"
    );
    Ok(())
}

pub async fn cas_conflicts(f: Fixture) -> anyhow::Result<()> {
    let s = &f.store;
    let k = f.key("cas/a");
    let r1 = s.create(&k, b"1".to_vec(), None).await?;
    let r2 = s.update(&k, b"2".to_vec(), r1).await?;

    match s.update(&k, b"stale".to_vec(), r1).await {
        Err(Error::Conflict {
            key,
            expected,
            actual,
        }) => {
            ensure!(
                key == k && expected == r1 && actual == r2,
                "conflict {key} {expected} {actual}"
            )
        }
        other => bail!("update with a stale revision must conflict, got {other:?}"),
    }
    match s.delete(&k, Some(r1)).await {
        Err(Error::Conflict {
            expected, actual, ..
        }) => {
            ensure!(
                expected == r1 && actual == r2,
                "delete conflict {expected} {actual}"
            )
        }
        other => bail!("delete with a stale revision must conflict, got {other:?}"),
    }
    ensure!(
        s.get(&k).await?.map(|kv| kv.value) == Some(b"2".to_vec()),
        "a failed CAS wrote"
    );

    // Racing CAS writers from one revision: exactly one wins.
    let results = futures::future::join_all(
        (0..8).map(|i| s.update(&k, format!("racer{i}").into_bytes(), r2)),
    )
    .await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Conflict { .. })))
        .count();
    ensure!(
        wins == 1 && conflicts == 7,
        "8 racing CAS: {wins} won, {conflicts} conflicted"
    );

    let kv = s.get(&k).await?.context("key after race")?;
    s.delete(&k, Some(kv.mod_revision)).await?;
    ensure!(s.get(&k).await?.is_none(), "CAS delete did not delete");
    Ok(())
}

pub async fn revisions_increase(f: Fixture) -> anyhow::Result<()> {
    let s = &f.store;
    let start = s.revision().await?;
    let mut last = start;
    for i in 0..40 {
        let k = f.key(&format!("rev/{}", i % 5));
        let rev = match s.get(&k).await? {
            None => s.create(&k, vec![i], None).await?,
            Some(kv) if i % 7 == 0 => {
                s.delete(&k, Some(kv.mod_revision)).await?;
                s.revision().await?
            }
            Some(kv) => s.update(&k, vec![i], kv.mod_revision).await?,
        };
        ensure!(rev > last, "write {i}: revision {rev} not above {last}");
        last = rev;
        let now = s.revision().await?;
        ensure!(now >= rev, "store revision {now} behind a write at {rev}");
    }
    Ok(())
}

pub async fn list_consistency(f: Fixture) -> anyhow::Result<()> {
    let s = &f.store;
    let empty = s.list(&f.key("list/")).await?;
    ensure!(empty.kvs.is_empty(), "fresh prefix lists {:?}", empty.kvs);
    let mut want = Vec::new();
    for name in ["b", "a", "c/x", "c/y", "ab"] {
        let k = f.key(&format!("list/{name}"));
        s.create(&k, name.as_bytes().to_vec(), None).await?;
        want.push(k);
    }
    // Neighbours that must not match the prefix.
    s.create(&f.key("list"), b"no".to_vec(), None).await?;
    s.create(&f.key("listx/a"), b"no".to_vec(), None).await?;
    want.sort();

    let l = s.list(&f.key("list/")).await?;
    let got: Vec<_> = l.kvs.iter().map(|kv| kv.key.clone()).collect();
    ensure!(got == want, "list returned {got:?}, want {want:?}");
    let newest = l.kvs.iter().map(|kv| kv.mod_revision).max().unwrap_or(0);
    ensure!(
        l.revision >= newest,
        "list revision {} below a listed key's {newest}",
        l.revision
    );

    let sub = s.list(&f.key("list/c/")).await?;
    ensure!(sub.kvs.len() == 2, "sub-prefix lists {:?}", sub.kvs);

    // list_keys: the same keys and revisions, no values.
    let keys = s.list_keys(&f.key("list/")).await?;
    let same: Vec<_> = keys
        .kvs
        .iter()
        .map(|kv| (kv.key.clone(), kv.create_revision, kv.mod_revision))
        .collect();
    let full: Vec<_> = l
        .kvs
        .iter()
        .map(|kv| (kv.key.clone(), kv.create_revision, kv.mod_revision))
        .collect();
    ensure!(same == full, "list_keys returned {same:?}, list {full:?}");
    ensure!(
        keys.kvs.iter().all(|kv| kv.value.is_empty()),
        "list_keys sent values: {:?}",
        keys.kvs
    );
    ensure!(
        keys.revision >= l.revision,
        "list_keys revision {} below list's {}",
        keys.revision,
        l.revision
    );

    // list + watch(revision + 1) sees exactly the writes after the listing.
    let mut rx = s.watch(&f.key("list/"), l.revision + 1).await?;
    let r = s
        .update(&want[0], b"after".to_vec(), l.kvs[0].mod_revision)
        .await?;
    let ev = next_event(&mut rx, "the write after the listing").await?;
    ensure!(ev.kv.key == want[0] && ev.kv.mod_revision == r, "{ev:?}");
    expect_quiet(&mut rx, "the write after the listing").await
}

pub async fn watch_order_and_resume(f: Fixture) -> anyhow::Result<()> {
    let s = &f.store;
    let p = f.key("w/");
    let base = s.revision().await?;
    // (kind, key, value, revision) for every write, in order.
    let mut want: Vec<(EventKind, String, Vec<u8>, Revision)> = Vec::new();
    let (a, b, c) = (f.key("w/a"), f.key("w/b"), f.key("w/c"));
    let ra = s.create(&a, b"a1".to_vec(), None).await?;
    want.push((EventKind::Put, a.clone(), b"a1".to_vec(), ra));
    let rb = s.create(&b, b"b1".to_vec(), None).await?;
    want.push((EventKind::Put, b.clone(), b"b1".to_vec(), rb));
    let ra2 = s.update(&a, b"a2".to_vec(), ra).await?;
    want.push((EventKind::Put, a.clone(), b"a2".to_vec(), ra2));
    s.delete(&b, Some(rb)).await?;
    // The delete's revision is not returned; 0 = "any, in order".
    want.push((EventKind::Delete, b.clone(), Vec::new(), 0));
    for i in 0..16u8 {
        let r = match s.get(&c).await? {
            None => s.create(&c, vec![i], None).await?,
            Some(kv) => s.update(&c, vec![i], kv.mod_revision).await?,
        };
        want.push((EventKind::Put, c.clone(), vec![i], r));
    }

    let check = |from_index: usize, got: &[calico_datastore::WatchEvent]| -> anyhow::Result<()> {
        let mut last = 0;
        for (ev, (kind, key, value, rev)) in got.iter().zip(&want[from_index..]) {
            ensure!(
                ev.kind == *kind && ev.kv.key == *key && (*rev == 0 || ev.kv.mod_revision == *rev),
                "event {ev:?} ≠ expected {kind:?} {key} @{rev}"
            );
            ensure!(
                ev.kv.mod_revision > last,
                "event {ev:?} not after revision {last}"
            );
            last = ev.kv.mod_revision;
            if ev.kind == EventKind::Put {
                ensure!(
                    ev.kv.value == *value,
                    "value of {key} @{rev}: {:?}",
                    ev.kv.value
                );
            }
        }
        Ok(())
    };

    let mut rx = s.watch(&p, base + 1).await?;
    let mut got = Vec::new();
    for i in 0..want.len() {
        got.push(next_event(&mut rx, &format!("event {i} of the history")).await?);
    }
    check(0, &got)?;
    // prev, where the backend reports it, is the value before the event.
    if let Some(prev) = &got[2].prev {
        ensure!(
            prev.value == b"a1" && prev.mod_revision == ra,
            "prev of a2: {prev:?}"
        );
    }
    if let Some(prev) = &got[3].prev {
        ensure!(prev.value == b"b1", "prev of the delete of b: {prev:?}");
    }
    expect_quiet(&mut rx, "the whole history").await?;

    // Resume from the middle: no gap, no duplicate.
    let mid = 7;
    let mut rx = s.watch(&p, want[mid].3).await?;
    let mut resumed = Vec::new();
    for i in mid..want.len() {
        resumed.push(next_event(&mut rx, &format!("resumed event {i}")).await?);
    }
    check(mid, &resumed)?;
    expect_quiet(&mut rx, "the resumed history").await?;

    // A live watch sees new writes, in order.
    let mut live = s.watch(&p, s.revision().await? + 1).await?;
    let r1 = s.create(&f.key("w/live1"), b"1".to_vec(), None).await?;
    let r2 = s.create(&f.key("w/live2"), b"2".to_vec(), None).await?;
    let e1 = next_event(&mut live, "live1").await?;
    let e2 = next_event(&mut live, "live2").await?;
    ensure!(
        e1.kv.mod_revision == r1 && e2.kv.mod_revision == r2,
        "live order {e1:?} {e2:?}"
    );
    Ok(())
}

pub async fn watch_prefix_filtering(f: Fixture) -> anyhow::Result<()> {
    let s = &f.store;
    let from = s.revision().await? + 1;
    let mut rx = s.watch(&f.key("pf/a/"), from).await?;
    s.create(&f.key("pf/b/1"), b"x".to_vec(), None).await?;
    s.create(&f.key("pf/ab"), b"x".to_vec(), None).await?;
    s.create(&f.key("pf/a"), b"x".to_vec(), None).await?;
    let r = s.create(&f.key("pf/a/1"), b"mine".to_vec(), None).await?;
    s.create(&f.key("pf/a0"), b"x".to_vec(), None).await?;
    let ev = next_event(&mut rx, "the one key under the prefix").await?;
    ensure!(
        ev.kv.key == f.key("pf/a/1") && ev.kv.mod_revision == r,
        "{ev:?}"
    );
    expect_quiet(&mut rx, "the prefixed key").await
}

pub async fn compaction_then_relist(f: Fixture) -> anyhow::Result<()> {
    let s = &f.store;
    let k = f.key("cmp/k");
    let r0 = s.create(&k, b"0".to_vec(), None).await?;
    let mut revs = vec![r0];
    for i in 1..5u8 {
        let r = s
            .update(&k, vec![b'0' + i], *revs.last().unwrap_or(&r0))
            .await?;
        revs.push(r);
    }
    let gone = f.key("cmp/gone");
    let rg = s.create(&gone, b"g".to_vec(), None).await?;
    s.delete(&gone, Some(rg)).await?;
    let other = f.key("cmp/other");
    s.create(&other, b"o".to_vec(), None).await?;

    let at = revs[3];
    s.compact(at).await?;

    let mut rx = s.watch(&f.key("cmp/"), r0).await?;
    match tokio::time::timeout(EVENT_WAIT, rx.recv()).await {
        Ok(Some(Err(Error::Compacted {
            requested,
            compacted,
        }))) => {
            ensure!(
                requested == r0 && compacted == at,
                "Compacted{{{requested}, {compacted}}}"
            )
        }
        other => bail!("a watch from before the compaction must end Compacted, got {other:?}"),
    }

    // From the compaction point itself history is still there.
    let mut rx = s.watch(&f.key("cmp/k"), at).await?;
    for (i, rev) in revs[3..].iter().enumerate() {
        let ev = next_event(&mut rx, &format!("retained event {i}")).await?;
        ensure!(
            ev.kv.mod_revision == *rev,
            "retained history {ev:?} ≠ @{rev}"
        );
    }

    // Relist: the current state is intact, and watching from it continues.
    let l = s.list(&f.key("cmp/")).await?;
    let got: Vec<_> = l
        .kvs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
        .collect();
    ensure!(
        got == vec![(k.as_str(), &b"4"[..]), (other.as_str(), &b"o"[..])],
        "{got:?}"
    );
    let mut rx = s.watch(&f.key("cmp/"), l.revision + 1).await?;
    let r = s.update(&k, b"5".to_vec(), revs[4]).await?;
    let ev = next_event(&mut rx, "the write after the relist").await?;
    ensure!(ev.kv.mod_revision == r && ev.kv.value == b"5", "{ev:?}");
    Ok(())
}

pub async fn lease_expiry(f: Fixture) -> anyhow::Result<()> {
    let s = &f.store;
    let k = f.key("lease/ephemeral");
    let keep = f.key("lease/plain");
    let lease = s.grant_lease(Duration::from_secs(2)).await?;
    s.create(&k, b"e".to_vec(), Some(lease)).await?;
    s.create(&keep, b"p".to_vec(), None).await?;
    let kv = s.get(&k).await?.context("leased key")?;
    ensure!(
        kv.lease == Some(lease),
        "leased key reports lease {:?}",
        kv.lease
    );

    // Kept alive well past the TTL, the key stays; an update keeps its lease.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.keep_alive(lease).await?;
    }
    let kv = s.get(&k).await?.context("a kept-alive key vanished")?;
    s.update(&k, b"e2".to_vec(), kv.mod_revision).await?;
    let kv = s.get(&k).await?.context("updated leased key")?;
    ensure!(kv.lease == Some(lease), "update dropped the lease: {kv:?}");

    // Left alone, it expires with a Delete event.
    let mut rx = s.watch(&f.key("lease/"), s.revision().await? + 1).await?;
    let ev = next_event(&mut rx, "the delete of the expired key").await?;
    ensure!(ev.kind == EventKind::Delete && ev.kv.key == k, "{ev:?}");
    ensure!(s.get(&k).await?.is_none(), "expired key still readable");
    ensure!(s.get(&keep).await?.is_some(), "an unleased key vanished");
    ensure!(
        s.keep_alive(lease).await.is_err(),
        "keep_alive on an expired lease must fail"
    );
    ensure!(
        s.create(&f.key("lease/late"), b"x".to_vec(), Some(lease))
            .await
            .is_err(),
        "create with an expired lease must fail"
    );
    Ok(())
}

pub async fn lease_revoke(f: Fixture) -> anyhow::Result<()> {
    let s = &f.store;
    let lease = s.grant_lease(Duration::from_secs(60)).await?;
    let (a, b, c) = (f.key("rv/a"), f.key("rv/b"), f.key("rv/c"));
    s.create(&a, b"a".to_vec(), Some(lease)).await?;
    s.create(&b, b"b".to_vec(), Some(lease)).await?;
    s.create(&c, b"c".to_vec(), None).await?;
    let mut rx = s.watch(&f.key("rv/"), s.revision().await? + 1).await?;
    s.revoke_lease(lease).await?;
    let mut deleted = Vec::new();
    for i in 0..2 {
        let ev = next_event(&mut rx, &format!("revoke delete {i}")).await?;
        ensure!(ev.kind == EventKind::Delete, "{ev:?}");
        deleted.push(ev.kv.key);
    }
    deleted.sort();
    ensure!(
        deleted == vec![a.clone(), b.clone()],
        "revoke deleted {deleted:?}"
    );
    ensure!(
        s.get(&a).await?.is_none() && s.get(&b).await?.is_none(),
        "revoked keys remain"
    );
    ensure!(s.get(&c).await?.is_some(), "an unleased key vanished");
    ensure!(
        s.keep_alive(lease).await.is_err(),
        "keep_alive on a revoked lease must fail"
    );
    expect_quiet(&mut rx, "the revoke").await
}

pub async fn ten_thousand_keys(f: Fixture) -> anyhow::Result<()> {
    let s = &f.store;
    const N: usize = 10_000;
    let mut want: Vec<String> = (0..N).map(|i| f.key(&format!("many/{i}"))).collect();
    let writes = futures::stream::iter(want.clone())
        .map(|k| async move { s.create(&k, k.as_bytes().to_vec(), None).await })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for w in writes {
        w?;
    }
    s.create(&f.key("many0"), b"outside".to_vec(), None).await?;
    want.sort();
    let l = s.list(&f.key("many/")).await?;
    ensure!(
        l.kvs.len() == N,
        "list returned {} keys, want {N}",
        l.kvs.len()
    );
    for (kv, k) in l.kvs.iter().zip(&want) {
        ensure!(
            kv.key == *k && kv.value == k.as_bytes(),
            "list out of order at {}: {k}",
            kv.key
        );
    }
    Ok(())
}

pub async fn one_mib_values(f: Fixture) -> anyhow::Result<()> {
    let s = &f.store;
    let pattern = |seed: u32| -> Vec<u8> {
        (0..1024 * 1024u32)
            .map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8)
            .collect()
    };
    let (v1, v2) = (pattern(1), pattern(2));
    let k = f.key("big/v");
    let r1 = s.create(&k, v1.clone(), None).await?;
    let got = s.get(&k).await?.context("1 MiB key")?;
    ensure!(
        got.value == v1,
        "1 MiB value changed on the way (len {})",
        got.value.len()
    );
    let r2 = s.update(&k, v2.clone(), r1).await?;
    let l = s.list(&f.key("big/")).await?;
    ensure!(
        l.kvs.len() == 1 && l.kvs[0].value == v2,
        "listed 1 MiB value differs"
    );
    let mut rx = s.watch(&k, r1).await?;
    let e1 = next_event(&mut rx, "1 MiB create").await?;
    let e2 = next_event(&mut rx, "1 MiB update").await?;
    ensure!(
        e1.kv.value == v1 && e2.kv.value == v2,
        "watched 1 MiB values differ"
    );
    ensure!(
        e2.kv.mod_revision == r2,
        "update event at {} ≠ {r2}",
        e2.kv.mod_revision
    );
    Ok(())
}
