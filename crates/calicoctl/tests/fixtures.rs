//! Every seed fixture the api crate keeps (crates/api/tests/fixtures) applies through the real
//! binary, lists, and what `get -o yaml` prints applies again.

mod common;

use common::{Ctl, fixtures_dir};

fn fixture_files() -> Vec<std::path::PathBuf> {
    let dir = fixtures_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "the api crate's seed fixtures must exist at {}: {e}",
                dir.display()
            )
        })
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the seed fixtures in {}",
        dir.display()
    );
    files
}

/// The kinds in a fixture file, as `get` takes them.
fn kinds(text: &str) -> Vec<String> {
    let mut ks: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim_start_matches("- ").trim().strip_prefix("kind: "))
        .filter(|k| !k.ends_with("List"))
        .map(|k| k.trim().to_ascii_lowercase())
        .collect();
    ks.sort();
    ks.dedup();
    ks
}

#[test]
fn every_seed_fixture_applies_lists_and_reapplies() {
    let mut seen = std::collections::BTreeSet::new();
    for f in fixture_files() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("examples-") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let ctl = Ctl::embedded();
        let r = ctl.apply(&f);
        assert!(
            r.ok().stdout.starts_with("Successfully applied "),
            "{name}: {}",
            r.stdout
        );
        for kind in kinds(&text) {
            seen.insert(kind.clone());
            let wide = ctl.run(&["get", &kind, "-o", "wide", "-A"]);
            let wide = if wide.code != 0 {
                ctl.run(&["get", &kind, "-o", "wide"])
            } else {
                wide
            };
            assert!(
                wide.ok().stdout.lines().count() >= 3,
                "{name}: {kind} not listed:\n{}",
                wide.stdout
            );
            let mut get = vec!["get", kind.as_str(), "-o", "yaml"];
            if ctl.run(&["get", &kind, "-A"]).code == 0 {
                get.push("-A");
            }
            let yaml = ctl.run(&get);
            let again = ctl.run_stdin(&["apply", "-f", "-"], Some(&yaml.ok().stdout));
            assert!(
                again.ok().stdout.starts_with("Successfully applied "),
                "{name}: {kind}: {}",
                again.stdout
            );
        }
    }
    for k in ["ippool", "bgppeer", "node", "workloadendpoint"] {
        assert!(seen.contains(k), "no seed fixture of kind {k}: {seen:?}");
    }
}

#[test]
fn one_of_every_kind_creates_and_replaces() {
    let f = fixtures_dir().join("examples-every-kind.yaml");
    let text = std::fs::read_to_string(&f).unwrap();
    let ctl = Ctl::embedded();
    let r = ctl.run(&["create", "-f", f.to_str().unwrap()]);
    assert!(
        r.ok().stdout.starts_with("Successfully created "),
        "{}",
        r.stdout
    );
    for kind in kinds(&text) {
        let mut args = vec!["get", kind.as_str(), "-o", "yaml"];
        if ctl.run(&["get", &kind, "-A"]).code == 0 {
            args.push("-A");
        }
        let yaml = ctl.run(&args);
        let again = ctl.run_stdin(&["replace", "-f", "-"], Some(&yaml.ok().stdout));
        assert!(
            again.ok().stdout.starts_with("Successfully replaced "),
            "{kind}: {}",
            again.stdout
        );
    }
    // upstream refuses `apply` of ClusterInformation (calico-node owns it).
    let r = ctl.run_stdin(
        &["apply", "-f", "-"],
        Some(
            &ctl.run(&["get", "clusterinformation", "default", "-o", "yaml"])
                .stdout,
        ),
    );
    assert!(
        r.failed()
            .stderr
            .contains("operation apply is not supported on ClusterInformation"),
        "{}",
        r.stderr
    );
}
