//! IPPools may not share addresses: the real binary refuses a pool that overlaps a stored pool
//! or another pool of the same input, before writing anything of that input.

mod common;

use common::{Ctl, pool};

/// The pools stored, as `get ippool` lists them.
fn listed(ctl: &Ctl) -> String {
    ctl.run(&["get", "ippool"]).ok().stdout.clone()
}

/// A multi-document YAML input of pools `(name, cidr)`.
fn pools(list: &[(&str, &str)]) -> String {
    let docs: Vec<String> = list.iter().map(|(n, c)| pool(n, c, "")).collect();
    docs.join("---\n")
}

const HINT: &str = "(pools may not share addresses: choose a CIDR outside it, or delete";

#[test]
fn two_new_pools_that_overlap_each_other_write_nothing() {
    let ctl = Ctl::embedded();
    let text = pools(&[
        ("wide", "10.50.0.0/16"),
        ("fine", "10.51.0.0/16"),
        ("narrow", "10.50.7.0/24"),
    ]);
    let f = ctl.file("pools.yaml", &text);
    let empty = listed(&ctl);
    for cmd in ["create", "apply"] {
        let r = ctl.run(&[cmd, "-f", f.to_str().expect("utf-8 path")]);
        assert_eq!(
            r.failed().stderr,
            format!(
                "failed to {cmd} any 'IPPool' resources: [IPPool(narrow) is not valid: spec.cidr: IPPool(narrow) CIDR overlaps with IPPool(wide) CIDR 10.50.0.0/16 {HINT} IPPool(wide) first)]\n"
            )
        );
        assert_eq!(listed(&ctl), empty, "{cmd} wrote part of a refused input");
    }
    // `validate` looks at each document alone, as upstream's does, and has no datastore.
    ctl.run(&["validate", "-f", f.to_str().expect("utf-8 path")])
        .ok();
}

#[test]
fn a_new_pool_that_overlaps_a_stored_one_writes_nothing() {
    let ctl = Ctl::embedded();
    ctl.apply(&ctl.file("stored.yaml", &pool("stored", "192.168.0.0/16", "")))
        .ok();
    let before = listed(&ctl);
    let text = pools(&[("other", "10.70.0.0/16"), ("big", "192.0.0.0/8")]);
    let f = ctl.file("batch.yaml", &text);
    let r = ctl.apply(&f);
    assert_eq!(
        r.failed().stderr,
        format!(
            "failed to apply any 'IPPool' resources: [IPPool(big) is not valid: spec.cidr: IPPool(big) CIDR overlaps with IPPool(stored) CIDR 192.168.0.0/16 {HINT} IPPool(stored) first)]\n"
        )
    );
    assert_eq!(listed(&ctl), before, "part of a refused input was written");
    let r = ctl.run_stdin(
        &["create", "-f", "-"],
        Some(&pool("inside", "192.168.3.0/24", "")),
    );
    assert_eq!(
        r.failed().stderr,
        format!(
            "failed to create 'IPPool' resource: [IPPool(inside) is not valid: spec.cidr: IPPool(inside) CIDR overlaps with IPPool(stored) CIDR 192.168.0.0/16 {HINT} IPPool(stored) first)]\n"
        )
    );
    assert_eq!(listed(&ctl), before);
}

#[test]
fn pools_do_not_overlap_themselves() {
    let ctl = Ctl::embedded();
    let text = pools(&[
        ("a", "10.80.0.0/16"),
        ("b", "10.81.0.0/16"),
        ("v6", "fd00:80::/112"),
    ]);
    let f = ctl.file("pools.yaml", &text);
    assert_eq!(
        ctl.apply(&f).ok().stdout,
        "Successfully applied 3 'IPPool' resource(s)\n"
    );
    // Re-applying the same pools, replacing them, and applying what `get -o yaml` printed all
    // compare each pool with the others only.
    ctl.apply(&f).ok();
    let path = f.to_str().expect("utf-8 path");
    let r = ctl.run(&["replace", "-f", path]);
    assert_eq!(
        r.ok().stdout,
        "Successfully replaced 3 'IPPool' resource(s)\n"
    );
    let yaml = ctl
        .run(&["get", "ippool", "-o", "yaml"])
        .ok()
        .stdout
        .clone();
    ctl.apply(&ctl.file("listing.yaml", &yaml)).ok();
    // With `--skip-exists` nothing is written, so an existing pool is not checked again.
    assert_eq!(
        ctl.run(&["create", "-f", path, "--skip-exists"])
            .ok()
            .stdout,
        "Successfully created 3 'IPPool' resource(s)\n"
    );
    // Once the overlapped pool is deleted, its range is free.
    ctl.run(&["delete", "ippool", "a"]).ok();
    ctl.apply(&ctl.file("c.yaml", &pool("c", "10.80.0.0/20", "")))
        .ok();
}
