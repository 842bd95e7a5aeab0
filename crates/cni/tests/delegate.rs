//! Delegation to a real IPAM plugin: the reference `host-local` from
//! containernetworking-plugins (/usr/lib/cni). The test fails loudly when it is not installed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use calico_cni::spec::delegate::{self, delegate_add, delegate_check, delegate_del, find_plugin};
use calico_cni::spec::{Command, Environment, ErrorCode};

const REFERENCE_DIR: &str = "/usr/lib/cni";

fn require_host_local() {
    assert!(
        Path::new(REFERENCE_DIR).join("host-local").is_file(),
        "this test needs the reference CNI plugins: apt-get install containernetworking-plugins"
    );
}

fn env(command: &str, container: &str, path: &[&Path]) -> Environment {
    let path: Vec<String> = path.iter().map(|p| p.display().to_string()).collect();
    let vars: HashMap<&str, String> = [
        ("CNI_COMMAND", command.to_string()),
        ("CNI_CONTAINERID", container.to_string()),
        ("CNI_NETNS", "/run/netns/unused-by-host-local".to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_PATH", path.join(":")),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1".to_string(),
        ),
    ]
    .into_iter()
    .collect();
    Environment::from_lookup(|k| vars.get(k).cloned()).expect("valid test environment")
}

fn conf(version: &str, data_dir: &Path, subnet: &str) -> Vec<u8> {
    format!(
        r#"{{"cniVersion":"{version}","name":"k8s-pod-network","type":"calico",
            "ipam":{{"type":"host-local","subnet":"{subnet}","dataDir":"{}",
                     "routes":[{{"dst":"0.0.0.0/0"}}]}}}}"#,
        data_dir.display()
    )
    .into_bytes()
}

#[test]
fn host_local_add_check_del_through_cni_path() {
    require_host_local();
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = tempfile::tempdir().expect("tempdir");
    // The first directory of CNI_PATH lacks the plugin: the search continues.
    let path = [empty.path(), Path::new(REFERENCE_DIR)];
    for (n, version) in ["0.3.1", "0.4.0", "1.0.0"].iter().enumerate() {
        let stdin = conf(version, dir.path(), "10.22.0.0/24");
        let container = format!("ctr-{n}");
        let add = env("ADD", &container, &path);
        let result = delegate_add("host-local", &stdin, &add).expect("host-local ADD");
        assert_eq!(result.ips.len(), 1, "{version}");
        let ip = result.ips[0].address;
        assert_eq!(ip.to_string(), format!("10.22.0.{}/24", n + 2), "{version}");
        assert_eq!(
            result.ips[0].gateway.map(|g| g.to_string()).as_deref(),
            Some("10.22.0.1")
        );
        assert_eq!(result.routes[0].dst.to_string(), "0.0.0.0/0");
        // host-local records the allocation under the network name, keyed by container.
        let record = dir
            .path()
            .join("k8s-pod-network")
            .join(ip.addr().to_string());
        let owner = std::fs::read_to_string(&record).expect("allocation file");
        assert!(owner.starts_with(&container), "{owner}");
        if *version != "0.3.1" {
            delegate_check("host-local", &stdin, &env("CHECK", &container, &path)).expect("CHECK");
        }
        delegate_del("host-local", &stdin, &env("DEL", &container, &path)).expect("DEL");
        assert!(!record.exists(), "DEL released {ip}");
        // DEL is idempotent.
        delegate_del("host-local", &stdin, &env("DEL", &container, &path)).expect("DEL again");
    }
}

#[test]
fn delegated_cni_errors_keep_their_code_and_message() {
    require_host_local();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = [Path::new(REFERENCE_DIR)];
    // host-local speaks up to 1.0.0: a 1.1.0 config comes back as its code-1 error.
    let stdin = conf("1.1.0", dir.path(), "10.22.0.0/24");
    let err = delegate_add("host-local", &stdin, &env("ADD", "c", &path)).expect_err("1.1.0");
    assert_eq!(err.code, ErrorCode::IncompatibleVersion, "{err}");
    assert!(err.msg.contains("incompatible CNI versions"), "{err}");
    // A /31 has no room: host-local's own error, passed through.
    let stdin = conf("1.0.0", dir.path(), "10.22.0.0/31");
    let err = delegate_add("host-local", &stdin, &env("ADD", "c", &path)).expect_err("tiny");
    assert!(err.to_string().contains("10.22.0.0/31"), "{err}");
}

#[test]
fn missing_plugin_is_a_config_error_naming_the_path() {
    let err = find_plugin("no-such-ipam", &[PathBuf::from("/nonexistent")]).expect_err("missing");
    assert_eq!(err.code, ErrorCode::InvalidNetworkConfig);
    assert!(
        err.msg.contains("no-such-ipam") && err.msg.contains("/nonexistent"),
        "{err}"
    );
    assert!(find_plugin("../bin/sh", &[PathBuf::from("/usr")]).is_err());
}

fn script(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn stdin_env_and_failures_of_a_fake_plugin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("seen");
    // Echo what it got into a file, answer with a result.
    script(
        dir.path(),
        "echo-ipam",
        &format!(
            "cat > {0}.stdin; env | grep ^CNI_ | sort > {0}.env\n\
             echo '{{\"cniVersion\":\"1.0.0\",\"ips\":[{{\"address\":\"10.9.0.3/32\"}}]}}'",
            out.display()
        ),
    );
    script(
        dir.path(),
        "garbage-ipam",
        "echo 'not json'; echo 'boom on stderr' >&2; exit 3",
    );
    script(dir.path(), "slow-ipam", "exec sleep 30");
    let path = [dir.path()];
    let stdin = br#"{"cniVersion":"1.0.0","name":"n","type":"calico","ipam":{"type":"echo-ipam"}}"#;
    let r = delegate_add("echo-ipam", stdin, &env("ADD", "abc", &path)).expect("fake ADD");
    assert_eq!(r.ips[0].address.to_string(), "10.9.0.3/32");
    assert_eq!(
        std::fs::read(out.with_extension("stdin")).expect("stdin seen"),
        stdin
    );
    let seen_env = std::fs::read_to_string(out.with_extension("env")).expect("env seen");
    assert!(seen_env.contains("CNI_COMMAND=ADD\n"), "{seen_env}");
    assert!(seen_env.contains("CNI_CONTAINERID=abc\n"), "{seen_env}");
    assert!(seen_env.contains("CNI_IFNAME=eth0\n"), "{seen_env}");
    assert!(seen_env.contains("K8S_POD_NAME=web-1"), "{seen_env}");
    // Releasing after a failed ADD runs the plugin with DEL although our command is ADD.
    delegate_del("echo-ipam", stdin, &env("ADD", "abc", &path)).expect("DEL");
    let seen_env = std::fs::read_to_string(out.with_extension("env")).expect("env seen");
    assert!(seen_env.contains("CNI_COMMAND=DEL\n"), "{seen_env}");

    let err = delegate_add("garbage-ipam", stdin, &env("ADD", "abc", &path)).expect_err("garbage");
    assert_eq!(err.code.code(), 999, "{err}");
    assert!(err.details.contains("boom on stderr"), "{err}");

    let started = Instant::now();
    let err = delegate::delegate(
        "slow-ipam",
        Command::Add,
        stdin,
        &env("ADD", "abc", &path),
        Duration::from_millis(300),
    )
    .expect_err("timeout");
    assert_eq!(err.code, ErrorCode::TryAgainLater, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "killed promptly: {:?}",
        started.elapsed()
    );
}
