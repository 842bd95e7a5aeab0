//! Runs the real `calicoctl` binary against a datastore owned by one test.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one run printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Run {
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected success; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
    #[track_caller]
    pub fn failed(&self) -> &Self {
        assert_ne!(
            self.code, 0,
            "expected failure; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// calicoctl pointed at one datastore through the environment, as a user would do it.
pub struct Ctl {
    env: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
}

const RUN_LIMIT: Duration = Duration::from_secs(60);

impl Ctl {
    /// A fresh embedded datastore in a temp dir.
    pub fn embedded() -> Ctl {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("datastore.db");
        Ctl {
            env: vec![
                ("DATASTORE_TYPE".into(), "embedded".into()),
                ("EMBEDDED_DATASTORE_PATH".into(), db.display().to_string()),
            ],
            dir,
        }
    }

    /// An etcd datastore at `endpoints`.
    pub fn etcd(endpoints: &str) -> Ctl {
        Ctl {
            env: vec![
                ("DATASTORE_TYPE".into(), "etcdv3".into()),
                ("ETCD_ENDPOINTS".into(), endpoints.into()),
            ],
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Adds (or overrides) one environment variable for every run.
    pub fn with_env(mut self, key: &str, value: &str) -> Ctl {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    /// The datastore this calicoctl uses, opened by the test itself (same environment).
    pub async fn datastore(&self) -> Arc<dyn calico_datastore::Datastore> {
        let vars: HashMap<String, String> = self.env.iter().cloned().collect();
        let cfg = match calico_datastore::DatastoreConfig::resolve(None, &vars) {
            Ok(c) => c,
            Err(e) => panic!("the test's datastore environment {vars:?}: {e}"),
        };
        match calico_datastore::connect(&cfg).await {
            Ok(ds) => ds,
            Err(e) => panic!("cannot open the test's store: {e}"),
        }
    }

    /// Writes `text` to a file in the test's dir and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write file");
        p
    }

    /// `calicoctl ipam check` succeeds and reports no problem; returns its run for more checks.
    pub fn ipam_check_clean(&self) -> Run {
        let out = self.run(&["ipam", "check"]);
        out.ok();
        assert!(
            out.stdout.ends_with("Check complete; found 0 problems.\n"),
            "{}",
            out.stdout
        );
        out
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_stdin(args, None)
    }

    /// Runs calicoctl with `stdin`, killing it if it outlives `RUN_LIMIT`.
    pub fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_calicoctl"));
        cmd.args(args);
        for k in [
            "DATASTORE_TYPE",
            "ETCD_ENDPOINTS",
            "ETCD_CA_CERT_FILE",
            "ETCD_CERT_FILE",
            "ETCD_KEY_FILE",
            "EMBEDDED_DATASTORE_PATH",
        ] {
            cmd.env_remove(k);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd.spawn().expect("spawn calicoctl");
        {
            let mut pipe = child.stdin.take().expect("stdin");
            if let Some(text) = stdin {
                pipe.write_all(text.as_bytes()).expect("write stdin");
            }
        }
        loop {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            if start.elapsed() > RUN_LIMIT {
                let _ = child.kill();
                panic!("calicoctl {args:?} did not finish within {RUN_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = child.wait_with_output().expect("output");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: start.elapsed(),
        }
    }

    pub fn apply(&self, path: &Path) -> Run {
        self.run(&["apply", "-f", path.to_str().expect("utf-8 path")])
    }
}

/// The seed fixtures the api crate keeps (crates/api/tests/fixtures).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/tests/fixtures")
}

/// IPPool of seed 000_46912935cdbe7fc6.txt (the README's demo pool).
pub const SEED_POOL: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  labels:
    app.kubernetes.io/managed-by: tigera-operator
  name: default-ipv4-ippool
spec:
  allowedUses:
  - Workload
  - Tunnel
  assignmentMode: Automatic
  blockSize: 26
  cidr: 192.168.0.0/16
  disableBGPExport: true
  ipipMode: Never
  natOutgoing: true
  nodeSelector: all()
  vxlanMode: CrossSubnet
";

pub fn pool(name: &str, cidr: &str, extra: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: {cidr}\n{extra}"
    )
}
