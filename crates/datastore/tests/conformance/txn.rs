//! Multi-key transactions (`Datastore::txn`): all or nothing, conditions naming the failing key,
//! per-op revisions that are the keys' new CAS tokens, watch order, and racing writers.

use super::{Fixture, next_event};
use anyhow::{Context, bail, ensure};
use calico_datastore::{Check, Error, EventKind, Op};

pub async fn txn_all_or_nothing(f: Fixture) -> anyhow::Result<()> {
    let s = &f.store;
    let (a, b, c) = (f.key("txn/a"), f.key("txn/b"), f.key("txn/c"));
    let before = s.revision().await?;
    let mut watch = s.watch(&f.key("txn/"), before + 1).await?;

    // Two creates in one transaction.
    let r = s
        .txn(
            vec![Check::absent(&a), Check::absent(&b)],
            vec![Op::put(&a, b"a1".to_vec()), Op::put(&b, b"b1".to_vec())],
        )
        .await?;
    ensure!(r.revisions.len() == 2, "one revision per op: {r:?}");
    ensure!(
        r.revisions[0] > before && r.revisions[0] <= r.revisions[1] && r.revisions[1] <= r.revision,
        "revisions {r:?} after {before}"
    );
    let ka = s.get(&a).await?.context("a written")?;
    let kb = s.get(&b).await?.context("b written")?;
    ensure!(ka.value == b"a1" && kb.value == b"b1", "{ka:?} {kb:?}");
    ensure!(
        ka.mod_revision == r.revisions[0] && kb.mod_revision == r.revisions[1],
        "per-op revisions {r:?} are the keys' mod revisions ({}, {})",
        ka.mod_revision,
        kb.mod_revision
    );
    for (key, value) in [(&a, b"a1"), (&b, b"b1")] {
        let ev = next_event(&mut watch, "a transaction's put").await?;
        ensure!(
            ev.kind == EventKind::Put && &ev.kv.key == key && ev.kv.value == value,
            "watch saw {ev:?}, expected {key} in op order"
        );
    }

    // A failing check anywhere writes nothing and names its key.
    let stale = ka.mod_revision - 1;
    match s
        .txn(
            vec![
                Check::revision(&b, kb.mod_revision),
                Check::revision(&a, stale),
            ],
            vec![Op::put(&a, b"x".to_vec()), Op::put(&c, b"x".to_vec())],
        )
        .await
    {
        Err(Error::Conflict {
            key,
            expected,
            actual,
        }) => ensure!(
            key == a && expected == stale && actual == ka.mod_revision,
            "conflict names {key} {expected} {actual}"
        ),
        other => bail!("stale revision must conflict on {a}, got {other:?}"),
    }
    match s
        .txn(vec![Check::absent(&a)], vec![Op::put(&c, b"x".to_vec())])
        .await
    {
        Err(Error::AlreadyExists { key }) => ensure!(key == a, "names {key}"),
        other => bail!("absent check on an existing key must fail AlreadyExists, got {other:?}"),
    }
    match s
        .txn(
            vec![Check::revision(&c, 1)],
            vec![Op::put(&a, b"x".to_vec())],
        )
        .await
    {
        Err(Error::NotFound { key }) => ensure!(key == c, "names {key}"),
        other => bail!("revision check on a missing key must fail NotFound, got {other:?}"),
    }
    ensure!(s.get(&c).await?.is_none(), "failed transaction wrote {c}");
    ensure!(
        s.get(&a).await?.map(|kv| kv.value) == Some(b"a1".to_vec()),
        "failed transaction wrote {a}"
    );

    // Update one key, delete another, create a third, guarded by both revisions.
    let r2 = s
        .txn(
            vec![
                Check::revision(&a, ka.mod_revision),
                Check::revision(&b, kb.mod_revision),
            ],
            vec![
                Op::put(&a, b"a2".to_vec()),
                Op::delete(&b),
                Op::put(&c, b"c1".to_vec()),
            ],
        )
        .await?;
    ensure!(r2.revision > r.revision, "{r2:?} after {r:?}");
    let ka2 = s.get(&a).await?.context("a updated")?;
    ensure!(
        ka2.value == b"a2" && ka2.create_revision == ka.create_revision,
        "update keeps the create revision: {ka2:?}"
    );
    ensure!(s.get(&b).await?.is_none(), "b deleted");
    ensure!(s.get(&c).await?.is_some(), "c created");
    // A revision check is "exists and at this revision": the deleted key's last revision, and
    // revisions no key can have (0, negative), all fail NotFound on a missing key.
    for rev in [kb.mod_revision, 0, -1] {
        match s
            .txn(
                vec![Check::revision(&b, rev)],
                vec![Op::put(&a, b"x".to_vec())],
            )
            .await
        {
            Err(Error::NotFound { key }) => ensure!(key == b, "names {key}"),
            other => bail!("revision {rev} check on deleted {b} must fail NotFound, got {other:?}"),
        }
    }
    for (kind, key) in [
        (EventKind::Put, &a),
        (EventKind::Delete, &b),
        (EventKind::Put, &c),
    ] {
        let ev = next_event(&mut watch, "the second transaction").await?;
        ensure!(ev.kind == kind && &ev.kv.key == key, "watch saw {ev:?}");
    }

    // Deleting an absent key is a no-op; duplicate keys are refused before anything is sent.
    s.txn(vec![], vec![Op::delete(&b), Op::put(&a, b"a3".to_vec())])
        .await?;
    ensure!(
        s.txn(vec![], vec![Op::put(&a, vec![]), Op::delete(&a)])
            .await
            .is_err(),
        "two ops on one key must be refused"
    );
    ensure!(
        s.txn(vec![], vec![]).await.is_err(),
        "no ops must be refused"
    );
    Ok(())
}

/// Eight transactions race from the same revisions to move a counter between two keys: exactly
/// one wins, and the two keys always change together.
pub async fn txn_racing_writers(f: Fixture) -> anyhow::Result<()> {
    let s = &f.store;
    let (a, b) = (f.key("race/a"), f.key("race/b"));
    let ra = s.create(&a, b"0".to_vec(), None).await?;
    let rb = s.create(&b, b"0".to_vec(), None).await?;
    let results = futures::future::join_all((0..8).map(|i| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            s.txn(
                vec![Check::revision(&a, ra), Check::revision(&b, rb)],
                vec![
                    Op::put(&a, format!("w{i}").into_bytes()),
                    Op::put(&b, format!("w{i}").into_bytes()),
                ],
            )
            .await
        }
    }))
    .await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Conflict { .. })))
        .count();
    ensure!(
        wins == 1 && conflicts == 7,
        "8 racing transactions: {wins} won, {conflicts} conflicted: {results:?}"
    );
    let va = s.get(&a).await?.context("a")?.value;
    let vb = s.get(&b).await?.context("b")?.value;
    ensure!(va == vb && va != b"0", "keys moved apart: {va:?} {vb:?}");
    Ok(())
}
