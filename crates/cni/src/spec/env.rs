//! The CNI_* environment: which command, which container, where its namespace is, the
//! interface name, `CNI_ARGS` (with IgnoreUnknown semantics) and `CNI_PATH`. Read through a
//! lookup function so tests never touch the process environment. Every problem is a CNI error
//! with code 4 (invalid environment variables) naming the variable.

use std::path::PathBuf;

use super::error::{CniError, ErrorCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn parse(s: &str) -> Result<Command, CniError> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            other => {
                return Err(invalid(
                    "CNI_COMMAND",
                    format!(
                        "unknown command {other:?}; expected ADD, DEL, CHECK, VERSION, STATUS or GC"
                    ),
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

/// The known keys of `CNI_ARGS` (Kubernetes runtimes and podman send these).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub ignore_unknown: bool,
    pub k8s_pod_namespace: Option<String>,
    pub k8s_pod_name: Option<String>,
    pub k8s_pod_infra_container_id: Option<String>,
    pub k8s_pod_uid: Option<String>,
    /// Unknown keys kept (only when IgnoreUnknown allowed them), in order.
    pub other: Vec<(String, String)>,
}

/// Go's `strconv.ParseBool`, which libcni's IgnoreUnknown uses.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

impl CniArgs {
    /// Parse `K1=V1;K2=V2`. Unknown keys are an error unless `IgnoreUnknown` is true (wherever
    /// it appears in the list). Empty segments are skipped; a segment without `=` is an error.
    pub fn parse(raw: &str) -> Result<CniArgs, CniError> {
        let mut pairs = Vec::new();
        for segment in raw.split(';').filter(|s| !s.is_empty()) {
            let Some((k, v)) = segment.split_once('=') else {
                return Err(invalid("CNI_ARGS", format!("{segment:?} is not KEY=VALUE")));
            };
            pairs.push((k.to_string(), v.to_string()));
        }
        let mut args = CniArgs::default();
        for (k, v) in &pairs {
            if k == "IgnoreUnknown" {
                args.ignore_unknown = parse_go_bool(v).ok_or_else(|| {
                    invalid("CNI_ARGS", format!("IgnoreUnknown={v:?} is not a boolean"))
                })?;
            }
        }
        let mut unknown = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "IgnoreUnknown" => {}
                "K8S_POD_NAMESPACE" => args.k8s_pod_namespace = Some(v),
                "K8S_POD_NAME" => args.k8s_pod_name = Some(v),
                "K8S_POD_INFRA_CONTAINER_ID" => args.k8s_pod_infra_container_id = Some(v),
                "K8S_POD_UID" => args.k8s_pod_uid = Some(v),
                _ if args.ignore_unknown => args.other.push((k, v)),
                _ => unknown.push(k),
            }
        }
        if !unknown.is_empty() {
            return Err(invalid(
                "CNI_ARGS",
                format!("unknown keys {unknown:?} (add IgnoreUnknown=1 to allow them)"),
            ));
        }
        Ok(args)
    }
}

/// The parsed environment of one plugin invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub command: Command,
    /// Empty for VERSION, STATUS and GC.
    pub container_id: String,
    /// Required for ADD and CHECK; DEL may come without it (the namespace may be gone).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: CniArgs,
    /// CNI_PATH split on `:` (empty entries dropped).
    pub path: Vec<PathBuf>,
}

fn invalid(var: &str, detail: String) -> CniError {
    CniError::new(
        ErrorCode::InvalidEnvironment,
        format!("invalid environment variable {var}"),
        detail,
    )
}

fn missing(var: &str, command: Command) -> CniError {
    CniError::new(
        ErrorCode::InvalidEnvironment,
        format!("required environment variable {var} is missing"),
        format!("{var} must be set for CNI_COMMAND={}", command.as_str()),
    )
}

/// A Linux interface name: 1–15 bytes, no `/`, `:` or whitespace, not `.` or `..`.
pub fn validate_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!("{name:?} must be 1 to 15 bytes long"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("{name:?} contains '/', ':' or whitespace"));
    }
    Ok(())
}

impl Environment {
    /// Read the environment through `get` (use `|k| std::env::var(k).ok()` in the binary).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Environment, CniError> {
        let nonempty = |k: &str| get(k).filter(|v| !v.is_empty());
        let command_raw =
            nonempty("CNI_COMMAND").ok_or_else(|| invalid("CNI_COMMAND", "not set".into()))?;
        let command = Command::parse(&command_raw)?;
        let needs_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let container_id = nonempty("CNI_CONTAINERID").unwrap_or_default();
        if needs_container && container_id.is_empty() {
            return Err(missing("CNI_CONTAINERID", command));
        }
        let netns = nonempty("CNI_NETNS").map(PathBuf::from);
        if matches!(command, Command::Add | Command::Check) && netns.is_none() {
            return Err(missing("CNI_NETNS", command));
        }
        let ifname = nonempty("CNI_IFNAME").unwrap_or_default();
        if needs_container {
            if ifname.is_empty() {
                return Err(missing("CNI_IFNAME", command));
            }
            validate_ifname(&ifname).map_err(|d| invalid("CNI_IFNAME", d))?;
        }
        let args = CniArgs::parse(&get("CNI_ARGS").unwrap_or_default())?;
        let path_raw = get("CNI_PATH").unwrap_or_default();
        let path: Vec<PathBuf> = path_raw
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        if needs_container && path.is_empty() {
            return Err(missing("CNI_PATH", command));
        }
        Ok(Environment {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
        })
    }

    /// The variables a delegated plugin gets (same command, container, namespace, interface,
    /// args and path as ours).
    pub fn to_vars(&self) -> Vec<(&'static str, String)> {
        let args: Vec<String> = {
            let a = &self.args;
            let mut v = Vec::new();
            if a.ignore_unknown {
                v.push("IgnoreUnknown=1".to_string());
            }
            let known = [
                ("K8S_POD_NAMESPACE", &a.k8s_pod_namespace),
                ("K8S_POD_NAME", &a.k8s_pod_name),
                ("K8S_POD_INFRA_CONTAINER_ID", &a.k8s_pod_infra_container_id),
                ("K8S_POD_UID", &a.k8s_pod_uid),
            ];
            for (k, val) in known {
                if let Some(val) = val {
                    v.push(format!("{k}={val}"));
                }
            }
            v.extend(a.other.iter().map(|(k, val)| format!("{k}={val}")));
            v
        };
        let path: Vec<String> = self.path.iter().map(|p| p.display().to_string()).collect();
        vec![
            ("CNI_COMMAND", self.command.as_str().to_string()),
            ("CNI_CONTAINERID", self.container_id.clone()),
            (
                "CNI_NETNS",
                self.netns
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            ("CNI_IFNAME", self.ifname.clone()),
            ("CNI_ARGS", args.join(";")),
            ("CNI_PATH", path.join(":")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Environment, CniError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Environment::from_lookup(|k| map.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=nginx-abc;K8S_POD_INFRA_CONTAINER_ID=abc123;FOO=bar",
        ),
    ];

    #[test]
    fn add_environment_parses_fully() {
        let e = env(ADD).expect("valid");
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.container_id, "abc123");
        assert_eq!(e.netns, Some(PathBuf::from("/run/netns/x")));
        assert_eq!(
            e.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(e.args.k8s_pod_namespace.as_deref(), Some("default"));
        assert_eq!(e.args.k8s_pod_name.as_deref(), Some("nginx-abc"));
        assert_eq!(e.args.k8s_pod_infra_container_id.as_deref(), Some("abc123"));
        assert_eq!(e.args.other, vec![("FOO".to_string(), "bar".to_string())]);
    }

    #[test]
    fn ignore_unknown_semantics() {
        let err = CniArgs::parse("K8S_POD_NAME=a;FOO=bar").expect_err("unknown key");
        assert_eq!(err.code, ErrorCode::InvalidEnvironment);
        assert!(err.details.contains("FOO"), "{err}");
        // IgnoreUnknown counts wherever it appears; Go's boolean spellings.
        assert!(CniArgs::parse("FOO=bar;IgnoreUnknown=true").is_ok());
        assert!(CniArgs::parse("FOO=bar;IgnoreUnknown=T").is_ok());
        assert!(CniArgs::parse("FOO=bar;IgnoreUnknown=0").is_err());
        assert!(CniArgs::parse("IgnoreUnknown=yes").is_err());
        assert!(CniArgs::parse("novalue").is_err());
        assert_eq!(CniArgs::parse("").expect("empty ok"), CniArgs::default());
        // Values may contain '='.
        let a = CniArgs::parse("K8S_POD_NAME=a=b").expect("ok");
        assert_eq!(a.k8s_pod_name.as_deref(), Some("a=b"));
    }

    #[test]
    fn required_variables_per_command() {
        let without = |var: &str| -> Vec<(&str, &str)> {
            ADD.iter().copied().filter(|(k, _)| *k != var).collect()
        };
        for var in [
            "CNI_COMMAND",
            "CNI_CONTAINERID",
            "CNI_NETNS",
            "CNI_IFNAME",
            "CNI_PATH",
        ] {
            let err = env(&without(var)).expect_err(var);
            assert_eq!(err.code, ErrorCode::InvalidEnvironment, "{var}");
            assert!(
                err.msg.contains(var) || err.details.contains(var),
                "{var}: {err}"
            );
        }
        // DEL without a namespace is fine (it may be gone already).
        let mut del = without("CNI_NETNS");
        del[0] = ("CNI_COMMAND", "DEL");
        assert_eq!(env(&del).expect("DEL ok").netns, None);
        assert_eq!(
            env(&[("CNI_COMMAND", "VERSION")]).expect("ok").command,
            Command::Version
        );
        assert!(env(&[("CNI_COMMAND", "STATUS")]).is_ok());
        assert!(env(&[("CNI_COMMAND", "add")]).is_err());
        let mut bad_if = ADD.to_vec();
        bad_if[3] = ("CNI_IFNAME", "a-very-long-ifname0");
        assert!(env(&bad_if).is_err());
    }

    #[test]
    fn delegated_variables_round_trip() {
        let e = env(ADD).expect("valid");
        let vars = e.to_vars();
        let map: HashMap<String, String> =
            vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let again = Environment::from_lookup(|k| map.get(k).cloned()).expect("round trip");
        assert_eq!(again, e);
    }
}
