//! IPAM consistency check (the core of `calicoctl ipam check`) and the repair of what it finds.
//!
//! Reads every block, affinity and handle once and cross-checks them:
//! - blocks parse and keep their invariants; no two blocks overlap (an address in two blocks
//!   would be handed out twice);
//! - every affinity has its block, owned by the affinity's host, and is confirmed;
//! - every block owned by a host has that host's affinity;
//! - every handle counts exactly the addresses its allocations hold, per block; every
//!   allocation's handle exists.
//!
//! Problems a crash can leave (half-done claims, handle counts written before or after a block
//! write that never came) are repairable: each carries the compare-and-swap fix, which `repair`
//! applies (a key that changed since the check is left alone; check again). Corrupt or
//! overlapping blocks need a human.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use calico_datastore::{Datastore, Error, Revision, keys};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::block::AllocationBlock;
use crate::model::{
    AffinityState, AffinityValue, HandleValue, parse_affinity_key, parse_block_key,
    parse_handle_key,
};

/// What kind of inconsistency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProblemKind {
    CorruptBlock,
    OverlappingBlocks,
    CorruptAffinity,
    CorruptHandle,
    AffinityWithoutBlock,
    StaleAffinity,
    UnconfirmedAffinity,
    BlockWithoutAffinity,
    HandleCountWrong,
    AllocationWithoutHandle,
}

/// A compare-and-swap fix: write `value` (or delete when `None`) at `key` if it is still at
/// revision `expected` (`None`: only if the key does not exist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fix {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Revision>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The key at fault.
    pub key: String,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
}

/// What `check` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub blocks: usize,
    pub affinities: usize,
    pub handles: usize,
    /// Every allocated address: its block and handle.
    #[serde(skip)]
    pub allocations: BTreeMap<IpAddr, (IpNet, Option<String>)>,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Whether every problem has a fix.
    pub fn repairable(&self) -> bool {
        self.problems.iter().all(|p| p.fix.is_some())
    }

    pub fn in_use(&self) -> usize {
        self.allocations.len()
    }
}

/// Checks the IPAM data in `ds`.
pub async fn check(ds: &dyn Datastore) -> Result<Report, Error> {
    let mut report = Report::default();
    let mut blocks: Vec<(AllocationBlock, String)> = Vec::new();
    for v6 in [false, true] {
        for kv in ds.list(&keys::block_prefix(v6)).await?.kvs {
            match AllocationBlock::from_json(&kv.value) {
                Ok(b) if parse_block_key(&kv.key) == Some(b.cidr) => blocks.push((b, kv.key)),
                Ok(b) => report.problems.push(problem(
                    ProblemKind::CorruptBlock,
                    &kv.key,
                    format!("holds block {} under another CIDR's key", b.cidr),
                    None,
                )),
                Err(e) => report.problems.push(problem(
                    ProblemKind::CorruptBlock,
                    &kv.key,
                    e.to_string(),
                    None,
                )),
            }
        }
    }
    report.blocks = blocks.len();
    check_overlaps(&blocks, &mut report);

    let block_by_cidr: BTreeMap<IpNet, &AllocationBlock> =
        blocks.iter().map(|(b, _)| (b.cidr, b)).collect();
    check_affinities(ds, &block_by_cidr, &mut report).await?;

    // Actual per-handle counts, from the blocks.
    let mut actual: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (b, _) in &blocks {
        for ip in b.in_use_ips() {
            let handle = b
                .attribute_of(ip)
                .ok()
                .flatten()
                .and_then(|a| a.handle_id.clone());
            if let Some(h) = &handle {
                *actual
                    .entry(h.clone())
                    .or_default()
                    .entry(b.cidr.to_string())
                    .or_default() += 1;
            }
            report.allocations.insert(ip, (b.cidr, handle));
        }
    }
    check_handles(ds, actual, &mut report).await?;
    report
        .problems
        .sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
    Ok(report)
}

fn problem(kind: ProblemKind, key: &str, detail: String, fix: Option<Fix>) -> Problem {
    Problem {
        kind,
        key: key.to_string(),
        detail,
        fix,
    }
}

fn check_overlaps(blocks: &[(AllocationBlock, String)], report: &mut Report) {
    let mut sorted: Vec<&(AllocationBlock, String)> = blocks.iter().collect();
    sorted.sort_by_key(|(b, _)| (b.cidr.network(), b.cidr.prefix_len()));
    for pair in sorted.windows(2) {
        let ((a, ka), (b, _)) = (pair[0], pair[1]);
        if a.cidr.contains(&b.cidr.network()) {
            let dup: Vec<String> = b
                .in_use_ips()
                .into_iter()
                .filter(|ip| a.attribute_of(*ip).ok().flatten().is_some())
                .map(|ip| ip.to_string())
                .collect();
            report.problems.push(problem(
                ProblemKind::OverlappingBlocks,
                ka,
                format!(
                    "blocks {} and {} overlap; addresses held in both: [{}]",
                    a.cidr,
                    b.cidr,
                    dup.join(", ")
                ),
                None,
            ));
        }
    }
}

async fn check_affinities(
    ds: &dyn Datastore,
    blocks: &BTreeMap<IpNet, &AllocationBlock>,
    report: &mut Report,
) -> Result<(), Error> {
    let mut seen: BTreeSet<(String, IpNet)> = BTreeSet::new();
    for kv in ds.list(&keys::all_affinities_prefix()).await?.kvs {
        report.affinities += 1;
        let Some((host, cidr)) = parse_affinity_key(&kv.key) else {
            report.problems.push(problem(
                ProblemKind::CorruptAffinity,
                &kv.key,
                "key does not name a host and block".into(),
                None,
            ));
            continue;
        };
        let delete = Some(Fix {
            key: kv.key.clone(),
            value: None,
            expected: Some(kv.mod_revision),
        });
        let value = match AffinityValue::from_json(&kv.value) {
            Ok(v) => v,
            Err(e) => {
                report
                    .problems
                    .push(problem(ProblemKind::CorruptAffinity, &kv.key, e, delete));
                continue;
            }
        };
        seen.insert((host.clone(), cidr));
        let owner = format!("{}:{host}", crate::block::AFFINITY_HOST);
        match blocks.get(&cidr) {
            None => report.problems.push(problem(
                ProblemKind::AffinityWithoutBlock,
                &kv.key,
                format!("{:?} affinity of {host} for block {cidr}, which does not exist (interrupted claim or release)", value.state),
                delete,
            )),
            Some(b) if b.affinity.as_deref() != Some(owner.as_str()) => report.problems.push(problem(
                ProblemKind::StaleAffinity,
                &kv.key,
                format!("affinity of {host} for block {cidr}, which is affine to {}", b.affinity.as_deref().unwrap_or("nobody")),
                delete,
            )),
            Some(_) if value.state != AffinityState::Confirmed => report.problems.push(problem(
                ProblemKind::UnconfirmedAffinity,
                &kv.key,
                format!("affinity of {host} for its block {cidr} is {:?} (interrupted claim or release)", value.state),
                Some(Fix {
                    key: kv.key.clone(),
                    value: Some(String::from_utf8_lossy(&AffinityValue::new(AffinityState::Confirmed).to_json()).into_owned()),
                    expected: Some(kv.mod_revision),
                }),
            )),
            Some(_) => {}
        }
    }
    for (cidr, b) in blocks {
        let Some(host) = b.affinity.as_deref().and_then(|a| a.strip_prefix("host:")) else {
            continue;
        };
        if !seen.contains(&(host.to_string(), *cidr)) {
            let key = keys::affinity_key(host, &cidr.to_string());
            report.problems.push(problem(
                ProblemKind::BlockWithoutAffinity,
                &keys::block_key(&cidr.to_string()),
                format!("block {cidr} is affine to {host}, which has no affinity for it"),
                Some(Fix {
                    key,
                    value: Some(
                        String::from_utf8_lossy(
                            &AffinityValue::new(AffinityState::Confirmed).to_json(),
                        )
                        .into_owned(),
                    ),
                    expected: None,
                }),
            ));
        }
    }
    Ok(())
}

async fn check_handles(
    ds: &dyn Datastore,
    mut actual: BTreeMap<String, BTreeMap<String, i64>>,
    report: &mut Report,
) -> Result<(), Error> {
    for kv in ds.list(&keys::handle_prefix()).await?.kvs {
        report.handles += 1;
        let Some(id) = parse_handle_key(&kv.key) else {
            continue;
        };
        let want = actual.remove(id).unwrap_or_default();
        let stored = match HandleValue::from_json(&kv.value) {
            Ok(v) => v,
            Err(e) => {
                report.problems.push(problem(
                    ProblemKind::CorruptHandle,
                    &kv.key,
                    e,
                    Some(handle_fix(&kv.key, &want, Some(kv.mod_revision))),
                ));
                continue;
            }
        };
        let stored_counts: BTreeMap<String, i64> =
            stored.block.into_iter().filter(|(_, c)| *c != 0).collect();
        if stored_counts != want {
            let detail = if want.is_empty() {
                format!(
                    "handle {id} holds no address but counts {stored_counts:?} (interrupted assignment or release)"
                )
            } else {
                format!("handle {id} counts {stored_counts:?} but holds {want:?}")
            };
            report.problems.push(problem(
                ProblemKind::HandleCountWrong,
                &kv.key,
                detail,
                Some(handle_fix(&kv.key, &want, Some(kv.mod_revision))),
            ));
        }
    }
    for (id, want) in actual {
        let key = keys::handle_key(&id);
        report.problems.push(problem(
            ProblemKind::AllocationWithoutHandle,
            &key,
            format!("addresses {want:?} are allocated to handle {id}, which does not exist"),
            Some(handle_fix(&key, &want, None)),
        ));
    }
    Ok(())
}

fn handle_fix(key: &str, counts: &BTreeMap<String, i64>, expected: Option<Revision>) -> Fix {
    let value = (!counts.is_empty()).then(|| {
        let v = HandleValue {
            block: counts.clone(),
            deleted: false,
        };
        String::from_utf8_lossy(&v.to_json()).into_owned()
    });
    Fix {
        key: key.to_string(),
        value,
        expected,
    }
}

/// Applies the fixes of a report; returns how many were applied. A fix whose key moved on since
/// the check is skipped (run `check` again).
pub async fn repair(ds: &dyn Datastore, report: &Report) -> Result<usize, Error> {
    repair_problems(ds, &report.problems).await
}

/// Applies the fixes of `problems` (e.g. read back from a saved report).
pub async fn repair_problems(ds: &dyn Datastore, problems: &[Problem]) -> Result<usize, Error> {
    let mut applied = 0;
    for fix in problems.iter().filter_map(|p| p.fix.as_ref()) {
        let r = match (&fix.value, fix.expected) {
            (Some(v), Some(rev)) => ds
                .update(&fix.key, v.clone().into_bytes(), rev)
                .await
                .map(|_| ()),
            (Some(v), None) => ds
                .create(&fix.key, v.clone().into_bytes(), None)
                .await
                .map(|_| ()),
            (None, Some(rev)) => ds.delete(&fix.key, Some(rev)).await.map(|_| ()),
            (None, None) => Ok(()),
        };
        match r {
            Ok(()) => applied += 1,
            Err(Error::Conflict { .. } | Error::NotFound { .. } | Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(applied)
}
