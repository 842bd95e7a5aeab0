//! Every fixture (the Calico resources of the seed lab documents, plus one of every other kind)
//! parses, validates as written and after defaults, and round-trips YAML → Resource → YAML →
//! Resource to equal values. Defaulted output must also apply again unchanged.

use calico_api::codec::{parse_documents, to_json, to_yaml};
use calico_api::{Kind, Resource};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn fixtures() -> Vec<(String, Vec<Resource>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the seed fixtures in {}",
        dir.display()
    );
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("fixture is UTF-8");
            let name = p
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let rs = parse_documents(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!rs.is_empty(), "{name}: no resources");
            (name, rs)
        })
        .collect()
}

#[test]
fn every_fixture_parses_and_validates() {
    for (name, rs) in fixtures() {
        for r in rs {
            r.validate()
                .unwrap_or_else(|e| panic!("{name}: {} {}: {e}", r.kind(), r.name()));
            let mut d = r.clone();
            d.apply_defaults();
            d.validate().unwrap_or_else(|e| {
                panic!("{name}: {} {} after defaults: {e}", r.kind(), r.name())
            });
        }
    }
}

#[test]
fn every_fixture_round_trips() {
    for (name, rs) in fixtures() {
        let y = to_yaml(&rs);
        let back = parse_documents(&y)
            .unwrap_or_else(|e| panic!("{name}: printed YAML does not parse: {e}\n{y}"));
        assert_eq!(
            back, rs,
            "{name}: YAML round trip changed the resources\n{y}"
        );
        assert_eq!(to_yaml(&back), y, "{name}: printing is not stable");
        let j = to_json(&rs);
        assert_eq!(
            parse_documents(&j).unwrap_or_else(|e| panic!("{name}: {e}\n{j}")),
            rs,
            "{name}: JSON round trip"
        );
        for r in &rs {
            let stored =
                Resource::from_json(r.kind(), &r.to_json()).expect("stored JSON reads back");
            assert_eq!(&stored, r, "{name}: datastore JSON round trip");
        }
    }
}

#[test]
fn defaulted_output_applies_again_unchanged() {
    for (name, rs) in fixtures() {
        let mut defaulted = rs.clone();
        defaulted.iter_mut().for_each(Resource::apply_defaults);
        let printed = to_yaml(&defaulted);
        let mut again =
            parse_documents(&printed).unwrap_or_else(|e| panic!("{name}: {e}\n{printed}"));
        for r in &again {
            r.validate()
                .unwrap_or_else(|e| panic!("{name}: printed {} does not validate: {e}", r.name()));
        }
        again.iter_mut().for_each(Resource::apply_defaults);
        assert_eq!(again, defaulted, "{name}: defaults are not idempotent");
        for (new, old) in again.iter().zip(&defaulted) {
            new.validate_update(old)
                .unwrap_or_else(|e| panic!("{name}: re-applying {} is refused: {e}", new.name()));
        }
    }
}

#[test]
fn fixtures_cover_every_kind_and_the_seed_values() {
    let all: Vec<Resource> = fixtures().into_iter().flat_map(|(_, rs)| rs).collect();
    let kinds: BTreeSet<Kind> = all.iter().map(Resource::kind).collect();
    assert_eq!(
        kinds,
        Kind::ALL.iter().copied().collect(),
        "a kind has no fixture"
    );

    let seed000 = all
        .iter()
        .find(|r| r.name() == "default-ipv4-ippool" && r.metadata().labels.is_some());
    let Some(Resource::IPPool(p)) = seed000 else {
        panic!("seed 000 pool missing")
    };
    assert_eq!(p.spec.cidr, "192.168.0.0/16");
    assert_eq!(p.spec.disable_bgp_export, Some(true));
    assert_eq!(
        p.spec.vxlan_mode,
        Some(calico_api::resources::EncapMode::CrossSubnet)
    );

    let peers: Vec<_> = all
        .iter()
        .filter(|r| r.kind() == Kind::BGPPeer && r.name().starts_with("leaf"))
        .collect();
    assert_eq!(peers.len(), 4);
    let Some(Resource::Node(n)) = all.iter().find(|r| r.name() == "master2") else {
        panic!("node master2 missing")
    };
    assert_eq!(n.spec.ipv4_vxlan_tunnel_addr, "10.233.116.0");
    assert_eq!(
        n.spec.bgp.as_ref().map(|b| b.ipv4_address.as_str()),
        Some("192.168.56.12/24")
    );
    assert_eq!(n.spec.orch_refs[0].orchestrator, "k8s");
}
