//! Block unit tests (wire format, each operation, each error) and a model-based property test
//! over random allocate/release sequences.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;

use super::*;

fn net(s: &str) -> IpNet {
    match s.parse() {
        Ok(n) => n,
        Err(e) => panic!("{s}: {e}"),
    }
}

fn ip(s: &str) -> IpAddr {
    match s.parse() {
        Ok(a) => a,
        Err(e) => panic!("{s}: {e}"),
    }
}

fn block(cidr: &str, seq: u64) -> AllocationBlock {
    match AllocationBlock::new(net(cidr), Some("host:node1".into()), seq) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

fn owner(pod: &str) -> BTreeMap<String, String> {
    [("node", "node1"), ("pod", pod), ("namespace", "default")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const NO_RESERVATIONS: fn(IpAddr) -> bool = |_| false;

#[test]
fn to_json_buffer_is_sized_for_full_blocks() {
    for cidr in ["10.0.0.0/26", "10.0.0.0/20", "fd00::/122"] {
        let mut b = block(cidr, u64::MAX - 5000);
        b.affinity_claim_time = Some("2026-11-21T12:00:00Z".into());
        for i in 0..b.size() {
            let handle = format!("k8s-pod-network.{i:064x}");
            let got = b.auto_assign(
                1,
                Some(&handle),
                &owner(&format!("pod-{i}")),
                NO_RESERVATIONS,
            );
            assert_eq!(got.len(), 1, "{cidr} ordinal {i}");
        }
        let len = b.to_json().len();
        assert!(
            b.json_size_hint() >= len,
            "{cidr}: hint {} < {len}",
            b.json_size_hint()
        );
    }
}

#[test]
fn to_json_writes_serde_json_bytes() {
    let odd = "q\"b\\s/\u{1}\u{8}\t\n\u{c}\r\u{1f}\u{7f}é€😀";
    let mut v4 = block("10.0.0.0/28", 0);
    v4.auto_assign(3, Some(odd), &owner(odd), NO_RESERVATIONS);
    v4.auto_assign(2, None, &BTreeMap::new(), NO_RESERVATIONS);
    v4.auto_assign(1, Some("h"), &owner("p"), NO_RESERVATIONS);
    let mut sparse = block("fd00::/126", u64::MAX);
    sparse.affinity = None;
    sparse.affinity_claim_time = Some(odd.into());
    sparse.host_affinity = Some("node \"x\"".into());
    sparse.deleted = true;
    let mut full = block("fd00:1::/122", 7);
    full.auto_assign(64, Some("k"), &owner("p"), NO_RESERVATIONS);
    if let Some(a) = full.attributes.first_mut() {
        a.alternate_owner = owner(odd);
        a.released_at = Some("2026-11-21T12:00:00Z".into());
    }
    for b in [v4, sparse, full, block("10.0.0.0/20", 1)] {
        let want = serde_json::to_vec(&b).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&b.to_json()),
            String::from_utf8_lossy(&want),
            "{}",
            b.cidr
        );
    }
}

#[test]
fn wire_format_matches_upstream_field_names_and_nulls() {
    let mut b = block("10.0.0.0/30", 4);
    let got = b.auto_assign(
        1,
        Some("k8s-pod-network.abc"),
        &owner("nginx"),
        NO_RESERVATIONS,
    );
    assert_eq!(got, vec![ip("10.0.0.0")]);
    let want = r#"{"cidr":"10.0.0.0/30","affinity":"host:node1","allocations":[0,null,null,null],"unallocated":[1,2,3],"attributes":[{"handle_id":"k8s-pod-network.abc","secondary":{"namespace":"default","node":"node1","pod":"nginx"}}],"sequenceNumber":5,"sequenceNumberForAllocation":{"0":4},"deleted":false}"#;
    assert_eq!(String::from_utf8_lossy(&b.to_json()), want);
    assert_eq!(AllocationBlock::from_json(want.as_bytes()), Ok(b));

    // Go writes nil slices and maps as null and a missing affinity as null.
    let sparse = r#"{"cidr":"10.0.0.4/31","affinity":null,"allocations":[null,null],"unallocated":[0,1],"attributes":null,"sequenceNumber":0,"sequenceNumberForAllocation":null,"deleted":false}"#;
    let b = AllocationBlock::from_json(sparse.as_bytes());
    assert!(
        b.as_ref()
            .is_ok_and(|b| b.affinity.is_none() && b.attributes.is_empty()),
        "{b:?}"
    );
}

#[test]
fn reading_rejects_inconsistent_blocks() {
    let cases = [
        (
            r#"{"cidr":"10.0.0.0/31","allocations":[null],"unallocated":[0]}"#,
            "1 allocation slots for 2",
        ),
        (
            r#"{"cidr":"10.0.0.0/31","allocations":[null,null],"unallocated":[0]}"#,
            "neither allocated nor free",
        ),
        (
            r#"{"cidr":"10.0.0.0/31","allocations":[null,null],"unallocated":[0,1,1]}"#,
            "free twice",
        ),
        (
            r#"{"cidr":"10.0.0.0/31","allocations":[null,null],"unallocated":[0,1,7]}"#,
            "outside the block",
        ),
        (
            r#"{"cidr":"10.0.0.0/31","allocations":[0,null],"unallocated":[0,1]}"#,
            "both allocated and free",
        ),
        (
            r#"{"cidr":"10.0.0.0/31","allocations":[3,null],"unallocated":[1]}"#,
            "missing attribute 3",
        ),
        (
            r#"{"cidr":"10.0.0.0/8","allocations":[],"unallocated":[]}"#,
            "at most 4096",
        ),
    ];
    for (json, fragment) in cases {
        let err = AllocationBlock::from_json(json.as_bytes())
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(fragment), "{json}: {err}");
    }
    assert!(matches!(
        AllocationBlock::from_json(b"{"),
        Err(BlockError::Json(_))
    ));
}

#[test]
fn upstream_released_allocations_are_freed_on_read() {
    let json = r#"{"cidr":"10.0.0.0/31","affinity":"host:n","allocations":[0,1],"unallocated":[],"attributes":[{"handle_id":"h1"},{"releasedAt":"2026-01-01T00:00:00Z"}],"sequenceNumber":9,"sequenceNumberForAllocation":{"0":1,"1":2},"deleted":false}"#;
    let b = AllocationBlock::from_json(json.as_bytes());
    let b = b.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.allocations, vec![Some(0), None]);
    assert_eq!(b.unallocated, vec![1]);
    assert_eq!(b.attributes.len(), 1);
    assert_eq!(b.sequence_number, 9, "reading is not a write");
}

#[test]
fn new_block_is_all_free_and_rejects_oversized_cidrs() {
    let b = block("10.1.2.64/26", 1);
    assert_eq!((b.size(), b.free_count(), b.in_use()), (64, 64, 0));
    assert_eq!(b.unallocated, (0..64).collect::<Vec<_>>());
    assert_eq!(b.ip_at(63), Some(ip("10.1.2.127")));
    assert_eq!(b.ip_at(64), None);
    let v6 = block("fd00::/122", 1);
    assert_eq!((v6.size(), v6.ip_at(63)), (64, Some(ip("fd00::3f"))));
    assert!(matches!(
        AllocationBlock::new(net("10.0.0.0/19"), None, 0),
        Err(BlockError::TooLarge { bits: 13, .. })
    ));
    // A CIDR with host bits set is stored truncated.
    assert_eq!(block("10.0.0.5/30", 0).cidr, net("10.0.0.4/30"));
}

#[test]
fn auto_assign_takes_from_the_head_skipping_reservations() {
    let mut b = block("10.0.0.0/29", 100);
    let reserved = |a: IpAddr| a == ip("10.0.0.1") || a == ip("10.0.0.2");
    let got = b.auto_assign(3, Some("h1"), &owner("a"), reserved);
    assert_eq!(got, vec![ip("10.0.0.0"), ip("10.0.0.3"), ip("10.0.0.4")]);
    assert_eq!(
        b.unallocated,
        vec![1, 2, 5, 6, 7],
        "reserved ordinals keep their place"
    );
    assert_eq!(b.sequence_number, 101);
    assert_eq!(b.sequence_number_of(ip("10.0.0.3")), Ok(100));
    assert_eq!(b.attributes.len(), 1, "one attribute shared by the batch");
    assert_eq!(b.assignable_count(reserved), 3);

    // Same handle and owner reuse the attribute; running out returns fewer.
    let got = b.auto_assign(10, Some("h1"), &owner("a"), reserved);
    assert_eq!(got.len(), 3);
    assert_eq!(b.attributes.len(), 1);
    assert_eq!(
        b.auto_assign(1, Some("h2"), &owner("b"), reserved),
        Vec::<IpAddr>::new()
    );
    assert_eq!(b.sequence_number, 102, "a no-op is not a write");
    assert_eq!(b.ips_by_handle("h1").len(), 6);
}

#[test]
fn assign_specific_address() {
    let mut b = block("10.0.0.0/30", 7);
    assert_eq!(b.assign(ip("10.0.0.2"), Some("h1"), &owner("a")), Ok(()));
    assert_eq!(b.unallocated, vec![0, 1, 3]);
    assert_eq!(b.sequence_number_of(ip("10.0.0.2")), Ok(7));
    assert_eq!(
        b.assign(ip("10.0.0.2"), Some("h2"), &owner("b")),
        Err(BlockError::AlreadyAssigned {
            ip: ip("10.0.0.2"),
            cidr: net("10.0.0.0/30")
        })
    );
    assert!(matches!(
        b.assign(ip("10.0.0.9"), None, &owner("b")),
        Err(BlockError::NotInBlock { .. })
    ));
    assert!(matches!(
        b.assign(ip("fd00::1"), None, &owner("b")),
        Err(BlockError::NotInBlock { .. })
    ));
    let attr = b.attribute_of(ip("10.0.0.2"));
    assert_eq!(
        attr.ok().flatten().and_then(|a| a.handle_id.as_deref()),
        Some("h1")
    );
    assert_eq!(b.attribute_of(ip("10.0.0.1")), Ok(None));
}

#[test]
fn release_checks_sequence_and_handle_before_changing_anything() {
    let mut b = block("10.0.0.0/30", 10);
    b.auto_assign(2, Some("h1"), &owner("a"), NO_RESERVATIONS); // ordinals 0,1 at seq 10
    b.auto_assign(1, Some("h2"), &owner("b"), NO_RESERVATIONS); // ordinal 2 at seq 11
    let before = b.clone();

    let stale = ReleaseRequest {
        ip: ip("10.0.0.0"),
        handle: None,
        sequence_number: Some(9),
    };
    let ok = ReleaseRequest {
        ip: ip("10.0.0.1"),
        handle: Some("h1".into()),
        sequence_number: Some(10),
    };
    let err = b.release(&[ok.clone(), stale]).map(|_| ()).unwrap_err();
    assert!(matches!(
        err,
        BlockError::SequenceMismatch {
            requested: 9,
            actual: 10,
            ..
        }
    ));
    assert!(err.to_string().contains("handed out again"));
    assert_eq!(b, before);

    let wrong_handle = ReleaseRequest {
        ip: ip("10.0.0.2"),
        handle: Some("h1".into()),
        sequence_number: None,
    };
    assert!(matches!(
        b.release(&[wrong_handle]),
        Err(BlockError::HandleMismatch { ref actual, .. }) if actual == "h2"
    ));
    assert_eq!(b, before);

    let free = ReleaseRequest {
        ip: ip("10.0.0.3"),
        handle: None,
        sequence_number: None,
    };
    let out = b.release(&[ok.clone(), ok, free]);
    let out = out.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.released, 1);
    assert_eq!(out.not_allocated, vec![ip("10.0.0.3")]);
    assert_eq!(
        out.released_by_handle,
        BTreeMap::from([("h1".to_string(), 1)])
    );
    assert_eq!(
        b.unallocated,
        vec![3, 1],
        "released ordinals go to the tail"
    );
    assert_eq!(b.sequence_number, 13);
    assert!(!b.sequence_number_for_allocation.contains_key("1"));
}

#[test]
fn release_by_handle_frees_all_and_compacts_attributes() {
    let mut b = block("10.0.0.0/29", 0);
    b.auto_assign(2, Some("h1"), &owner("a"), NO_RESERVATIONS);
    b.auto_assign(2, Some("h2"), &owner("b"), NO_RESERVATIONS);
    assert_eq!(b.attributes.len(), 2);
    assert_eq!(
        b.release_by_handle("h1", Some(99)),
        0,
        "sequence guard applies"
    );
    assert_eq!(b.release_by_handle("h1", None), 2);
    assert_eq!(b.attributes.len(), 1);
    assert_eq!(
        b.allocations[2],
        Some(0),
        "indexes renumbered after compaction"
    );
    assert_eq!(b.release_by_handle("nobody", None), 0);
    assert_eq!(b.sequence_number, 3);
    assert_eq!(b.release_by_handle("h2", Some(1)), 2);
    assert!(b.is_empty());
    assert!(b.attributes.is_empty());
    assert_eq!(b.unallocated, vec![4, 5, 6, 7, 0, 1, 2, 3]);
}

#[test]
fn affinity_helpers() {
    let b = block("10.0.0.0/30", 0);
    assert_eq!(b.host(), Some("node1"));
    assert!(b.affinity_matches(AFFINITY_HOST, "node1"));
    assert!(!b.affinity_matches(AFFINITY_VIRTUAL, "node1"));
    let v = AllocationBlock::new(net("10.0.0.0/30"), Some("virtual:lb".into()), 0);
    assert_eq!(v.ok().as_ref().and_then(AllocationBlock::host), Some("lb"));
}

// ---- model-based property test ----

#[derive(Debug, Clone)]
enum Op {
    AutoAssign {
        count: usize,
        handle: usize,
    },
    Assign {
        ordinal: usize,
        handle: usize,
    },
    /// `stale` names a sequence number the ordinal does not carry.
    Release {
        ordinal: usize,
        stale: bool,
        with_handle: bool,
    },
    ReleaseByHandle {
        handle: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..6usize, 0..3usize).prop_map(|(count, handle)| Op::AutoAssign { count, handle }),
        (0..20usize, 0..3usize).prop_map(|(ordinal, handle)| Op::Assign { ordinal, handle }),
        (0..20usize, any::<bool>(), any::<bool>()).prop_map(|(ordinal, stale, with_handle)| {
            Op::Release {
                ordinal,
                stale,
                with_handle,
            }
        }),
        (0..3usize).prop_map(|handle| Op::ReleaseByHandle { handle }),
    ]
}

/// Reference model: who holds each ordinal (handle, sequence number) and the FIFO free list.
struct Model {
    held: BTreeMap<usize, (String, u64)>,
    free: VecDeque<usize>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn operations_keep_a_partition_and_never_double_allocate(
        ops in prop::collection::vec(op(), 1..60),
        reserved_ordinal in 0..16usize,
    ) {
        let mut b = block("10.9.0.0/28", 1000);
        let reserved = |a: IpAddr| a == ip(&format!("10.9.0.{reserved_ordinal}"));
        let mut model = Model { held: BTreeMap::new(), free: (0..16).collect() };
        let handles = ["h0", "h1", "h2"];
        for op in ops {
            let seq_before = b.sequence_number;
            match op {
                Op::AutoAssign { count, handle } => {
                    let got = b.auto_assign(count, Some(handles[handle]), &owner("p"), reserved);
                    let expected: Vec<usize> =
                        model.free.iter().copied().filter(|&o| o != reserved_ordinal).take(count).collect();
                    let got_ordinals: Vec<usize> =
                        got.iter().map(|a| b.ordinal_of(*a).unwrap_or(usize::MAX)).collect();
                    prop_assert_eq!(&got_ordinals, &expected, "FIFO order, reserved skipped");
                    for o in got_ordinals {
                        prop_assert!(!model.held.contains_key(&o), "ordinal {} handed out twice", o);
                        model.held.insert(o, (handles[handle].to_string(), seq_before));
                    }
                    model.free.retain(|o| !expected.contains(o));
                }
                Op::Assign { ordinal, handle } => {
                    let addr = b.ip_at(ordinal).unwrap_or(ip("10.9.1.1"));
                    let result = b.assign(addr, Some(handles[handle]), &owner("p"));
                    let already_held = model.held.contains_key(&ordinal);
                    if ordinal >= 16 {
                        prop_assert!(matches!(result, Err(BlockError::NotInBlock { .. })), "{:?}", result);
                    } else if already_held {
                        prop_assert!(matches!(result, Err(BlockError::AlreadyAssigned { .. })), "{:?}", result);
                    } else {
                        prop_assert_eq!(result, Ok(()));
                        model.held.insert(ordinal, (handles[handle].to_string(), seq_before));
                        model.free.retain(|&o| o != ordinal);
                    }
                }
                Op::Release { ordinal, stale, with_handle } => {
                    let addr = b.ip_at(ordinal % 16).unwrap_or(ip("10.9.1.1"));
                    let o = ordinal % 16;
                    let held = model.held.get(&o).cloned();
                    let recorded = held.as_ref().map_or(0, |h| h.1);
                    let req = ReleaseRequest {
                        ip: addr,
                        handle: if with_handle { held.as_ref().map(|h| h.0.clone()) } else { None },
                        sequence_number: Some(if stale { recorded.wrapping_add(7) } else { recorded }),
                    };
                    let before = b.clone();
                    let result = b.release(&[req]);
                    if stale {
                        prop_assert!(matches!(result, Err(BlockError::SequenceMismatch { .. })), "{:?}", result);
                        prop_assert_eq!(&b, &before, "failed release changed the block");
                    } else if held.is_some() {
                        prop_assert_eq!(result.map(|r| r.released), Ok(1));
                        model.held.remove(&o);
                        model.free.push_back(o);
                    } else {
                        prop_assert_eq!(result.map(|r| r.not_allocated), Ok(vec![addr]));
                    }
                }
                Op::ReleaseByHandle { handle } => {
                    let n = b.release_by_handle(handles[handle], None);
                    let mine: Vec<usize> = model.held.iter()
                        .filter(|(_, h)| h.0 == handles[handle]).map(|(o, _)| *o).collect();
                    prop_assert_eq!(n, mine.len());
                    for o in mine {
                        model.held.remove(&o);
                        model.free.push_back(o);
                    }
                }
            }
            // The block agrees with the model, is a partition, and survives the wire.
            prop_assert_eq!(b.check(), Ok(()));
            prop_assert_eq!(&b.unallocated, &model.free.iter().copied().collect::<Vec<_>>());
            for (o, (h, s)) in &model.held {
                let addr = b.ip_at(*o).unwrap_or(ip("10.9.1.1"));
                prop_assert!(b.ips_by_handle(h).contains(&addr));
                prop_assert_eq!(b.sequence_number_of(addr), Ok(*s));
            }
            prop_assert_eq!(b.in_use(), model.held.len());
            prop_assert!(b.attributes.len() <= model.held.len(), "unreferenced attributes kept");
            prop_assert_eq!(AllocationBlock::from_json(&b.to_json()), Ok(b.clone()));
            prop_assert!(b.json_size_hint() >= b.to_json().len(), "to_json's buffer grew");
            prop_assert_eq!(b.to_json(), serde_json::to_vec(&b).unwrap_or_default());
        }
    }

    #[test]
    fn reading_arbitrary_json_never_panics(text in ".{0,200}") {
        let _ = AllocationBlock::from_json(text.as_bytes());
    }
}
