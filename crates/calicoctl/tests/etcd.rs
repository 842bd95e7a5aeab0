//! The same apply/get flow against a real etcd (the datastore crate's `test-util` harness
//! starts one per test on loopback), over plain HTTP and with client-certificate TLS.

mod common;

use calico_datastore::testutil::EtcdServer;
use common::{Ctl, SEED_POOL, pool};

fn flow(ctl: &Ctl) {
    let f = ctl.file("pool.yaml", SEED_POOL);
    assert_eq!(
        ctl.apply(&f).ok().stdout,
        "Successfully applied 1 'IPPool' resource(s)\n"
    );
    assert_eq!(
        ctl.run(&["get", "ippool", "-o", "wide"]).ok().stdout,
        "NAME                  CIDR             NAT    IPIPMODE   VXLANMODE     DISABLED   DISABLEBGPEXPORT   SELECTOR   ASSIGNMENTMODE   \n\
         default-ipv4-ippool   192.168.0.0/16   true   Never      CrossSubnet   false      true               all()      Automatic        \n\n"
    );
    let yaml = ctl
        .run(&["get", "ippool", "-o", "yaml"])
        .ok()
        .stdout
        .clone();
    assert_eq!(
        ctl.run_stdin(&["apply", "-f", "-"], Some(&yaml))
            .ok()
            .stdout,
        "Successfully applied 1 'IPPool' resource(s)\n"
    );
    // The listing's resourceVersion is the store revision, the item's its own mod revision.
    assert!(
        yaml.contains("kind: IPPoolList\nmetadata:\n  resourceVersion: \""),
        "{yaml}"
    );
    let stale = yaml.replace("natOutgoing: true", "natOutgoing: false");
    let r = ctl.run_stdin(&["replace", "-f", "-"], Some(&stale));
    assert!(
        r.failed()
            .stderr
            .contains("update conflict: IPPool(default-ipv4-ippool)"),
        "{}",
        r.stderr
    );
    let bad = ctl.file("bad.yaml", &pool("bad", "10.1.0.0/16", "  blockSize: 33\n"));
    let r = ctl.apply(&bad);
    assert!(r.failed().stderr.contains("spec.blockSize"), "{}", r.stderr);
    let names = ctl.run(&["get", "ippool", "-o", "name"]);
    assert_eq!(names.ok().stdout, "ippool/default-ipv4-ippool\n");
}

#[test]
fn apply_and_get_on_real_etcd() {
    let etcd = EtcdServer::start().expect("start etcd (run scripts/install-deps.sh)");
    flow(&Ctl::etcd(&etcd.endpoint()));
}

#[test]
fn apply_and_get_on_real_etcd_with_tls() {
    let etcd = EtcdServer::start_tls().expect("start etcd with TLS (run scripts/install-deps.sh)");
    let tls = etcd.tls_files().expect("tls files");
    let ctl = Ctl::etcd(&etcd.endpoint())
        .with_env("ETCD_CA_CERT_FILE", tls.ca.to_str().unwrap())
        .with_env("ETCD_CERT_FILE", tls.client_cert.to_str().unwrap())
        .with_env("ETCD_KEY_FILE", tls.client_key.to_str().unwrap());
    flow(&ctl);
}
