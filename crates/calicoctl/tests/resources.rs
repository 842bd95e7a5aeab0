//! calicoctl's resource commands end to end: the real binary against a temp embedded datastore.

mod common;

use common::{Ctl, SEED_POOL, pool};

const WIDE_HEADER: &str = "NAME                  CIDR             NAT    IPIPMODE   VXLANMODE     DISABLED   DISABLEBGPEXPORT   SELECTOR   ASSIGNMENTMODE   \n";
const WIDE_ROW: &str = "default-ipv4-ippool   192.168.0.0/16   true   Never      CrossSubnet   false      true               all()      Automatic        \n";

#[test]
fn seed_pool_applies_and_lists_wide_exactly() {
    let ctl = Ctl::embedded();
    let f = ctl.file("pool.yaml", SEED_POOL);
    assert_eq!(
        ctl.apply(&f).ok().stdout,
        "Successfully applied 1 'IPPool' resource(s)\n"
    );
    let wide = ctl.run(&["get", "ippool", "-o", "wide"]);
    assert_eq!(wide.ok().stdout, format!("{WIDE_HEADER}{WIDE_ROW}\n"));
    let narrow = ctl.run(&["get", "ippools"]);
    assert_eq!(
        narrow.ok().stdout,
        "NAME                  CIDR             SELECTOR   \ndefault-ipv4-ippool   192.168.0.0/16   all()      \n\n"
    );
    // By name: one table per resource, like upstream.
    let named = ctl.run(&["get", "ippool", "default-ipv4-ippool", "-o", "wide"]);
    assert_eq!(named.ok().stdout, format!("{WIDE_HEADER}{WIDE_ROW}\n"));
}

#[test]
fn yaml_output_applies_again_unchanged() {
    let ctl = Ctl::embedded();
    ctl.apply(&ctl.file("pool.yaml", SEED_POOL)).ok();
    let strip_rv = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.contains("resourceVersion"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for args in [
        vec!["get", "ippool", "default-ipv4-ippool", "-o", "yaml"],
        vec!["get", "ippool", "-o", "yaml"],
        vec!["get", "ippool", "default-ipv4-ippool", "-o", "json"],
        vec!["get", "ippool", "-o", "json"],
    ] {
        let before = ctl.run(&args);
        before.ok();
        let again = ctl.run_stdin(&["apply", "-f", "-"], Some(&before.stdout));
        assert_eq!(
            again.ok().stdout,
            "Successfully applied 1 'IPPool' resource(s)\n",
            "{args:?}"
        );
        let after = ctl.run(&args);
        assert_eq!(
            strip_rv(&after.ok().stdout),
            strip_rv(&before.stdout),
            "{args:?}"
        );
    }
    let listing = ctl.run(&["get", "ippool", "-o", "yaml"]);
    assert!(listing.stdout.starts_with("apiVersion: projectcalico.org/v3\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: IPPool\n"), "{}", listing.stdout);
    assert!(
        listing
            .stdout
            .contains("\nkind: IPPoolList\nmetadata:\n  resourceVersion: \""),
        "{}",
        listing.stdout
    );
}

#[test]
fn replace_with_stale_resource_version_is_refused() {
    let ctl = Ctl::embedded();
    ctl.apply(&ctl.file("pool.yaml", SEED_POOL)).ok();
    let stale = ctl
        .run(&["get", "ippool", "default-ipv4-ippool", "-o", "yaml"])
        .ok()
        .stdout
        .clone();
    // Someone else changes the pool.
    let changed = stale.replace("natOutgoing: true", "natOutgoing: false");
    assert_eq!(
        ctl.run_stdin(&["replace", "-f", "-"], Some(&changed))
            .ok()
            .stdout,
        "Successfully replaced 1 'IPPool' resource(s)\n"
    );
    // Our copy is now stale.
    let ours = stale.replace("disableBGPExport: true", "disableBGPExport: false");
    let r = ctl.run_stdin(&["replace", "-f", "-"], Some(&ours));
    r.failed();
    assert!(
        r.stderr.starts_with(
            "failed to replace 'IPPool' resource: update conflict: IPPool(default-ipv4-ippool)"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("get it again"), "{}", r.stderr);
    let now = ctl.run(&["get", "ippool", "-o", "wide"]);
    assert!(
        now.ok().stdout.contains("192.168.0.0/16   false  "),
        "the other writer's change stays:\n{}",
        now.stdout
    );
    // apply honours a stale resourceVersion the same way.
    ctl.run_stdin(&["apply", "-f", "-"], Some(&ours)).failed();
    // replace of something that does not exist.
    let r = ctl.run_stdin(
        &["replace", "-f", "-"],
        Some(&pool("ghost", "10.9.0.0/16", "")),
    );
    assert_eq!(
        r.failed().stderr,
        "failed to replace 'IPPool' resource: resource does not exist: IPPool(ghost) with error: <nil>\n"
    );
}

fn assert_nothing_written(ctl: &Ctl) {
    let r = ctl.run(&["get", "ippool"]);
    assert_eq!(
        r.ok().stdout,
        "NAME   CIDR   SELECTOR   \n\n",
        "a refused command wrote something"
    );
}

#[test]
fn bad_pools_are_refused_with_the_field_named() {
    let ctl = Ctl::embedded();
    let cases = [
        (
            "bs",
            pool("bs", "10.1.0.0/16", "  blockSize: 33\n"),
            "spec.blockSize",
        ),
        (
            "both",
            pool(
                "both",
                "10.2.0.0/16",
                "  ipipMode: Always\n  vxlanMode: Always\n",
            ),
            "Mode",
        ),
        ("ll", pool("ll", "169.254.0.0/24", ""), "spec.cidr"),
        (
            "sel",
            pool("sel", "10.4.0.0/16", "  nodeSelector: has(foo\n"),
            "spec.nodeSelector",
        ),
    ];
    for (name, yaml, field) in &cases {
        let f = ctl.file(&format!("{name}.yaml"), yaml);
        for cmd in ["apply", "create", "validate"] {
            let r = ctl.run(&[cmd, "-f", f.to_str().unwrap()]);
            r.failed();
            assert!(
                r.stderr.starts_with(&format!(
                    "failed to {cmd} 'IPPool' resource: [IPPool({name}) is not valid: "
                )),
                "{cmd} {name}: {}",
                r.stderr
            );
            assert!(
                r.stderr.contains(field),
                "{cmd} {name}: field {field} not named: {}",
                r.stderr
            );
        }
        assert_nothing_written(&ctl);
    }
    let r = ctl.run(&[
        "validate",
        "-f",
        ctl.file("ok.yaml", SEED_POOL).to_str().unwrap(),
    ]);
    assert_eq!(
        r.ok().stdout,
        "Successfully validated 1 'IPPool' resource(s)\n"
    );
}

#[test]
fn one_bad_document_writes_nothing() {
    let ctl = Ctl::embedded();
    let text = format!(
        "{}---\n{}---\n{}",
        pool("good-a", "10.10.0.0/16", ""),
        pool("bad", "10.11.0.0/16", "  blockSize: 33\n"),
        pool("good-b", "10.12.0.0/16", "")
    );
    let f = ctl.file("multi.yaml", &text);
    for cmd in ["create", "apply"] {
        let r = ctl.run(&[cmd, "-f", f.to_str().unwrap()]);
        assert!(
            r.failed().stderr.starts_with(&format!(
                "failed to {cmd} any 'IPPool' resources: [IPPool(bad) is not valid: spec.blockSize"
            )),
            "{}",
            r.stderr
        );
        assert_nothing_written(&ctl);
    }
    // An unparsable document anywhere in a directory fails the lot as well.
    ctl.file("dir/a.yaml", &pool("a", "10.20.0.0/16", ""));
    ctl.file("dir/b.yaml", "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: b\nspec:\n  cidr: 10.21.0.0/16\n  bogus: 1\n");
    let dir = ctl.dir.path().join("dir");
    let r = ctl.run(&["apply", "-f", dir.to_str().unwrap()]);
    assert!(
        r.failed().stderr.starts_with("failed to execute command: "),
        "{}",
        r.stderr
    );
    // The file, then the codec's line and column of the offending field.
    assert!(
        r.stderr
            .contains("dir/b.yaml: line 7, column 3: unknown field `bogus`, expected one of cidr"),
        "{}",
        r.stderr
    );
    assert_nothing_written(&ctl);
    // Standard input is named as such; a JSON document's position is reported the same way.
    let r = ctl.run_stdin(
        &["apply", "-f", "-"],
        Some("{\"kind\": \"IPPool\", \"apiVersion\": \"projectcalico.org/v3\",\n \"metadata\": {\"name\": \"j\"}, \"spec\": {\"cidr\": 5}}\n"),
    );
    assert_eq!(
        r.failed().stderr,
        "failed to execute command: stdin: line 2, column 46: invalid type: integer `5`, expected a string\n"
    );
    // The same directory without the bad file applies both.
    std::fs::remove_file(dir.join("b.yaml")).unwrap();
    ctl.file("dir/c.yml", &pool("c", "10.22.0.0/16", ""));
    ctl.file("dir/ignored.txt", "not a manifest");
    assert_eq!(
        ctl.run(&["apply", "-f", dir.to_str().unwrap()]).ok().stdout,
        "Successfully applied 2 'IPPool' resource(s)\n"
    );
}

#[test]
fn create_delete_and_not_found() {
    let ctl = Ctl::embedded();
    let f = ctl.file("pool.yaml", SEED_POOL);
    let path = f.to_str().unwrap();
    assert_eq!(
        ctl.run(&["create", "-f", path]).ok().stdout,
        "Successfully created 1 'IPPool' resource(s)\n"
    );
    let r = ctl.run(&["create", "-f", path]);
    assert_eq!(
        r.failed().stderr,
        "failed to create 'IPPool' resource: [resource already exists: IPPool(default-ipv4-ippool)]\n"
    );
    assert_eq!(
        ctl.run(&["create", "-f", path, "--skip-exists"])
            .ok()
            .stdout,
        "Successfully created 1 'IPPool' resource(s)\n"
    );
    let r = ctl.run(&["get", "ippool", "nope"]);
    assert_eq!(
        r.failed().stderr,
        "resource does not exist: IPPool(nope) with error: <nil>\n"
    );
    let r = ctl.run(&["delete", "ippool", "default-ipv4-ippool", "nope"]);
    assert_eq!(
        r.failed().stderr,
        "Failed to delete 'IPPool' resource: resource does not exist: IPPool(nope) with error: <nil>\n"
    );
    ctl.run(&["get", "ippool", "default-ipv4-ippool"]).ok();
    // A kind with nothing stored lists as its heading line and the blank line after the table.
    let r = ctl.run(&["get", "workloadendpoints", "-A"]);
    assert_eq!(
        r.ok().stdout,
        "NAMESPACE   WORKLOAD   NODE   NETWORKS   INTERFACE   \n\n"
    );
    let r = ctl.run(&["delete", "hostendpoint", "gone"]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (
            1,
            "",
            "Failed to delete 'HostEndpoint' resource: resource does not exist: HostEndpoint(gone) with error: <nil>\n"
        )
    );
    assert_eq!(
        ctl.run(&["delete", "ippool", "default-ipv4-ippool"])
            .ok()
            .stdout,
        "Successfully deleted 1 'IPPool' resource(s)\n"
    );
    assert_nothing_written(&ctl);
    ctl.run(&["create", "-f", path]).ok();
    assert_eq!(
        ctl.run(&["delete", "-f", path]).ok().stdout,
        "Successfully deleted 1 'IPPool' resource(s)\n"
    );
    assert_eq!(
        ctl.run(&["delete", "-s", "ippool", "gone"]).ok().stdout,
        "Successfully deleted 1 'IPPool' resource(s)\n"
    );
    // Upstream's less common aliases resolve too.
    for alias in [
        "pols",
        "nos",
        "bgpf",
        "gnetsets",
        "reservations",
        "kubecontrollersconfigs",
    ] {
        ctl.run(&["get", alias]).ok();
    }
    let r = ctl.run(&["get", "bogus"]);
    assert_eq!(
        r.failed().stderr,
        "failed to get resources: resource type 'bogus' is not supported\n"
    );
    let r = ctl.run(&["get", "ippool", "-n", "default"]);
    assert_eq!(r.failed().stderr, "IPPool is not namespaced\n");
    let r = ctl.run(&["apply", "-f", "/nonexistent/pool.yaml"]);
    assert_eq!(
        r.failed().stderr,
        "failed to execute command: open /nonexistent/pool.yaml: no such file or directory\n"
    );
}

#[test]
fn label_and_patch() {
    let ctl = Ctl::embedded();
    ctl.apply(&ctl.file("pool.yaml", &pool("p1", "10.30.0.0/16", "")))
        .ok();
    assert_eq!(
        ctl.run(&["label", "ippool", "p1", "env=prod"]).ok().stdout,
        "Successfully set label env on ippool p1\n"
    );
    let r = ctl.run(&["label", "ippool", "p1", "env=dev"]);
    assert_eq!(
        r.failed().stderr,
        "failed to update label of ippool p1, key env is already present. please use '--overwrite' to set a new value\n"
    );
    assert_eq!(
        ctl.run(&["label", "ippool", "p1", "env=dev", "--overwrite"])
            .ok()
            .stdout,
        "Successfully updated label env on ippool p1\n"
    );
    let y = ctl.run(&["get", "ippool", "p1", "-o", "yaml"]);
    assert!(
        y.ok().stdout.contains("  labels:\n    env: dev\n"),
        "{}",
        y.stdout
    );
    assert_eq!(
        ctl.run(&["label", "ippool", "p1", "--remove", "env"])
            .ok()
            .stdout,
        "Successfully removed label env from ippool p1\n"
    );
    let r = ctl.run(&["label", "ippool", "p1", "env", "--remove"]);
    assert_eq!(
        r.failed().stderr,
        "cannot remove label of ippool p1, key env does not exist\n"
    );
    assert_eq!(
        ctl.run(&["label", "ippool", "p9", "a=b"]).failed().stderr,
        "ippool p9 not found\n"
    );

    let r = ctl.run(&[
        "patch",
        "ippool",
        "p1",
        "-p",
        r#"{"spec":{"natOutgoing":true,"vxlanMode":"Always"}}"#,
    ]);
    assert_eq!(r.ok().stdout, "Successfully patched 1 'IPPool' resource\n");
    let wide = ctl
        .run(&["get", "ippool", "-o", "wide"])
        .ok()
        .stdout
        .clone();
    assert!(
        wide.contains("p1     10.30.0.0/16   true   Never      Always      "),
        "{wide}"
    );
    // A patch that breaks validation changes nothing.
    let r = ctl.run(&[
        "patch",
        "ippool",
        "p1",
        "-p",
        r#"{"spec":{"ipipMode":"Always"}}"#,
    ]);
    assert!(r.failed().stderr.contains("Mode"), "{}", r.stderr);
    assert_eq!(ctl.run(&["get", "ippool", "-o", "wide"]).ok().stdout, wide);
    let r = ctl.run(&["patch", "ippool", "nope", "-p", "{}"]);
    assert_eq!(
        r.failed().stderr,
        "hit error: resource does not exist: IPPool(nope) with error: <nil>\n"
    );
}

#[test]
fn version_reports_client_and_unknown_cluster() {
    let ctl = Ctl::embedded();
    let r = ctl.run(&["version"]);
    let lines: Vec<&str> = r.ok().stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    assert!(lines[0].starts_with("Client Version:    v"), "{}", r.stdout);
    assert!(lines[1].starts_with("Git commit:        "), "{}", r.stdout);
    assert_eq!(lines[2], "Cluster Version:   unknown");
    assert_eq!(lines[3], "Cluster Type:      unknown");
}

#[test]
fn unreachable_etcd_names_the_endpoint_quickly() {
    // A port nothing listens on: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let ctl = Ctl::etcd(&endpoint);
    for args in [
        vec!["get", "ippool"],
        vec![
            "apply",
            "-f",
            ctl.file("p.yaml", SEED_POOL).to_str().unwrap(),
        ],
    ] {
        let r = ctl.run(&args);
        r.failed();
        assert!(
            r.stderr.contains(&endpoint),
            "endpoint not named: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains("ETCD_ENDPOINTS"),
            "no hint how to configure: {}",
            r.stderr
        );
        assert!(r.took.as_secs() < 5, "took {:?}", r.took);
    }
}

#[test]
fn mixed_kinds_tables_and_namespaces() {
    let ctl = Ctl::embedded();
    let f = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mixed.yaml");
    assert_eq!(
        ctl.apply(&f).ok().stdout,
        "Successfully applied 5 resource(s)\n"
    );
    // Nodes without their own AS number inherit BGPConfiguration default's, shown in brackets.
    assert_eq!(
        ctl.run(&["get", "node", "-o", "wide"]).ok().stdout,
        "NAME    ASN       IPV4             IPV6          \n\
         node1   (65531)   10.10.10.11/24                 \n\
         node2   65001     10.10.20.12/24   fd00::12/64   \n\n"
    );
    assert_eq!(
        ctl.run(&["get", "bgpconfig"]).ok().stdout,
        "NAME      LOGSEVERITY   MESHENABLED   ASNUMBER   \ndefault   Info          false         65531      \n\n"
    );
    assert_eq!(
        ctl.run(&["get", "bgppeers"]).ok().stdout,
        "NAME                       PEERIP          NODE       ASN     \n\
         leaf2101-calico-master-1   192.168.100.1   master-1   65102   \n\n"
    );
    assert_eq!(
        ctl.run(&["get", "wep", "-A"]).ok().stdout,
        "NAMESPACE   WORKLOAD   NODE    NETWORKS        INTERFACE         \n\
         demo        nginx      node1   10.244.1.5/32   cali0123456789a   \n\n"
    );
    // Without -n or -A only the default namespace is listed.
    assert_eq!(
        ctl.run(&["get", "workloadendpoints"]).ok().stdout,
        "WORKLOAD   NODE   NETWORKS   INTERFACE   \n\n"
    );
    let r = ctl.run(&["get", "wep", "node1-k8s-nginx-eth0", "-A"]);
    assert_eq!(
        r.failed().stderr,
        "cannot use --all-namespace flag for getting a single resource\n"
    );
    let y = ctl.run(&[
        "get",
        "wep",
        "node1-k8s-nginx-eth0",
        "-n",
        "demo",
        "-o",
        "yaml",
        "--export",
    ]);
    assert!(!y.ok().stdout.contains("resourceVersion"), "{}", y.stdout);
    assert!(!y.stdout.contains("namespace:"), "{}", y.stdout);
    // Deleting the namespaced one needs its namespace.
    let r = ctl.run(&["delete", "wep", "node1-k8s-nginx-eth0"]);
    assert!(
        r.failed()
            .stderr
            .contains("WorkloadEndpoint(default/node1-k8s-nginx-eth0)"),
        "{}",
        r.stderr
    );
    ctl.run(&["delete", "wep", "node1-k8s-nginx-eth0", "-n", "demo"])
        .ok();
    assert_eq!(
        ctl.run(&["delete", "-f", f.to_str().unwrap(), "-s"])
            .ok()
            .stdout,
        "Successfully deleted 5 resource(s)\n"
    );
}

#[test]
fn config_file_custom_columns_and_get_from_file() {
    // No datastore variables at all: everything comes from the CalicoAPIConfig file.
    let ctl = Ctl::etcd("http://127.0.0.1:1")
        .with_env("DATASTORE_TYPE", "")
        .with_env("ETCD_ENDPOINTS", "");
    let db = ctl.dir.path().join("from-config.db");
    let cfg = ctl.file(
        "calicoctl.cfg",
        &format!(
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata:\nspec:\n  datastoreType: embedded\n  embeddedDatastorePath: {}\n",
            db.display()
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let pool_file = ctl.file("pool.yaml", SEED_POOL);
    let r = ctl.run(&["apply", "-f", pool_file.to_str().unwrap(), "--config", cfg]);
    assert_eq!(
        r.ok().stdout,
        "Successfully applied 1 'IPPool' resource(s)\n"
    );
    assert!(
        db.exists(),
        "the config file's embeddedDatastorePath was not used"
    );
    let r = ctl.run(&[
        "get",
        "ippool",
        "-c",
        cfg,
        "-o",
        "custom-columns=NAME,NAT,VXLANMODE",
    ]);
    assert_eq!(
        r.ok().stdout,
        "NAME                  NAT    VXLANMODE     \ndefault-ipv4-ippool   true   CrossSubnet   \n\n"
    );
    let r = ctl.run(&[
        "get",
        "-f",
        pool_file.to_str().unwrap(),
        "-c",
        cfg,
        "-o",
        "name",
    ]);
    assert_eq!(r.ok().stdout, "ippool/default-ipv4-ippool\n");
    let r = ctl.run(&["get", "ippool", "-c", "/nonexistent/calicoctl.cfg"]);
    assert!(
        r.failed()
            .stderr
            .contains("cannot read config file /nonexistent/calicoctl.cfg"),
        "{}",
        r.stderr
    );
    let r = ctl.run(&["get", "ippool", "-c", cfg, "-o", "custom-columns=NAME,FOO"]);
    assert!(
        r.failed()
            .stderr
            .starts_with("unknown heading FOO, valid values are: NAME, CIDR"),
        "{}",
        r.stderr
    );
}
