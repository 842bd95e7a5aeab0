//! One invocation end to end through `dispatch`: what goes to stdout and the exit code, for
//! good requests, bad ones, and arbitrary garbage (property test: never a panic, always one
//! JSON document or nothing).

use std::collections::HashMap;
use std::io::Read;

use calico_cni::spec::{CniError, CniResult, IpConfig, Plugin, Request, dispatch};
use proptest::prelude::*;

#[derive(Default)]
struct Stub {
    calls: Vec<String>,
    panic_on_add: bool,
}

impl Plugin for Stub {
    fn add(&mut self, req: &Request) -> Result<CniResult, CniError> {
        self.calls.push(format!("ADD {}", req.env.container_id));
        if self.panic_on_add {
            panic!("stub exploded");
        }
        Ok(CniResult {
            ips: vec![IpConfig {
                address: "10.65.0.5/32".parse().expect("literal"),
                gateway: None,
                interface: None,
            }],
            ..Default::default()
        })
    }
    fn del(&mut self, req: &Request) -> Result<(), CniError> {
        self.calls.push(format!("DEL {}", req.env.container_id));
        Ok(())
    }
    fn check(&mut self, _req: &Request) -> Result<(), CniError> {
        self.calls.push("CHECK".into());
        Err(CniError::plugin(
            "endpoint missing",
            "no WorkloadEndpoint for ctr",
        ))
    }
}

fn vars(command: &str) -> HashMap<String, String> {
    [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "ctr"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn conf(version: &str) -> Vec<u8> {
    format!(r#"{{"cniVersion":"{version}","name":"net","type":"calico","ipam":{{"type":"calico-ipam"}}}}"#)
        .into_bytes()
}

#[test]
fn add_prints_the_result_in_the_config_version() {
    let mut stub = Stub::default();
    let env = vars("ADD");
    let out = dispatch(&conf("0.3.1"), |k| env.get(k).cloned(), &mut stub);
    assert_eq!(out.exit_code, 0);
    assert_eq!(
        out.stdout,
        "{\n    \"cniVersion\": \"0.3.1\",\n    \"ips\": [\n        {\n            \"version\": \"4\",\n            \"address\": \"10.65.0.5/32\"\n        }\n    ],\n    \"dns\": {}\n}"
    );
    assert_eq!(stub.calls, vec!["ADD ctr"]);
}

#[test]
fn del_prints_nothing_and_version_needs_no_config() {
    let mut stub = Stub::default();
    let env = vars("DEL");
    let out = dispatch(&conf("1.0.0"), |k| env.get(k).cloned(), &mut stub);
    assert_eq!((out.stdout.as_str(), out.exit_code), ("", 0));
    let env = vars("VERSION");
    let out = dispatch(
        br#"{"cniVersion":"1.0.0"}"#,
        |k| env.get(k).cloned(),
        &mut stub,
    );
    assert_eq!(out.exit_code, 0);
    assert_eq!(
        out.stdout,
        r#"{"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}"#
    );
}

#[test]
fn errors_are_cni_json_with_non_zero_exit() {
    let mut stub = Stub::default();
    let env = vars("CHECK");
    let out = dispatch(&conf("1.0.0"), |k| env.get(k).cloned(), &mut stub);
    assert_eq!(out.exit_code, 1);
    assert_eq!(
        out.stdout,
        r#"{"cniVersion":"1.0.0","code":999,"msg":"endpoint missing","details":"no WorkloadEndpoint for ctr"}"#
    );
    // CHECK on a 0.3.1 configuration is refused before the plugin runs.
    stub.calls.clear();
    let out = dispatch(&conf("0.3.1"), |k| env.get(k).cloned(), &mut stub);
    assert!(
        out.stdout.starts_with(r#"{"cniVersion":"0.3.1","code":1,"#),
        "{}",
        out.stdout
    );
    assert!(stub.calls.is_empty());
    // STATUS and GC need 1.1.0.
    let env = vars("GC");
    let out = dispatch(&conf("1.0.0"), |k| env.get(k).cloned(), &mut stub);
    assert!(out.stdout.contains(r#""code":1"#), "{}", out.stdout);
    let out = dispatch(&conf("1.1.0"), |k| env.get(k).cloned(), &mut stub);
    assert_eq!((out.stdout.as_str(), out.exit_code), ("", 0));
    // Missing environment: code 4, with the version sniffed from stdin.
    let out = dispatch(&conf("0.4.0"), |_| None, &mut stub);
    assert!(
        out.stdout.starts_with(r#"{"cniVersion":"0.4.0","code":4,"#),
        "{}",
        out.stdout
    );
    // Garbage stdin: code 6, our latest version.
    let env = vars("ADD");
    let out = dispatch(b"\xff\xfe{", |k| env.get(k).cloned(), &mut stub);
    assert!(
        out.stdout.starts_with(r#"{"cniVersion":"1.1.0","code":6,"#),
        "{}",
        out.stdout
    );
}

#[test]
fn a_panicking_handler_becomes_a_999_error() {
    let mut stub = Stub {
        panic_on_add: true,
        ..Default::default()
    };
    let env = vars("ADD");
    let out = dispatch(&conf("1.0.0"), |k| env.get(k).cloned(), &mut stub);
    assert_eq!(out.exit_code, 1);
    assert_eq!(
        out.stdout,
        r#"{"cniVersion":"1.0.0","code":999,"msg":"internal error in ADD","details":"stub exploded"}"#
    );
}

fn check_outcome(stdout: &str, exit_code: i32) -> Result<(), TestCaseError> {
    if exit_code == 0 {
        if !stdout.is_empty() {
            prop_assert!(
                serde_json::from_str::<serde_json::Value>(stdout).is_ok(),
                "{}",
                stdout
            );
        }
    } else {
        prop_assert_eq!(exit_code, 1);
        let v: serde_json::Value = serde_json::from_str(stdout)
            .map_err(|e| TestCaseError::fail(format!("{e}: {stdout}")))?;
        prop_assert!(v["code"].as_u64().is_some(), "{}", stdout);
        prop_assert!(v["msg"].as_str().is_some(), "{}", stdout);
    }
    Ok(())
}

const COMMANDS: [&str; 8] = ["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC", "add", ""];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn garbage_stdin_and_env_never_panic(
        stdin in prop::collection::vec(any::<u8>(), 0..400),
        command in 0usize..COMMANDS.len(),
        container in ".{0,20}",
        ifname in ".{0,20}",
        args in "[A-Za-z_=;0-9]{0,40}",
        path in "[/a-z:]{0,20}",
        drop_netns in any::<bool>(),
    ) {
        let mut env = vars(COMMANDS[command]);
        env.insert("CNI_CONTAINERID".into(), container);
        env.insert("CNI_IFNAME".into(), ifname);
        env.insert("CNI_ARGS".into(), args);
        env.insert("CNI_PATH".into(), path);
        if drop_netns {
            env.remove("CNI_NETNS");
        }
        let out = dispatch(&stdin, |k| env.get(k).cloned(), &mut Stub::default());
        check_outcome(&out.stdout, out.exit_code)?;
    }

    /// Structurally plausible configurations with random values in every field we read.
    #[test]
    fn plausible_configs_never_panic(
        version in prop::sample::select(vec!["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0", "2.0.0", ""]),
        mtu in prop::sample::select(vec!["0", "1500", "-1", "70000", "\"x\"", "1e3", "null"]),
        ipam_type in prop::sample::select(vec!["\"calico-ipam\"", "\"\"", "1", "null", "\"a/b\""]),
        assign in prop::sample::select(vec!["\"true\"", "\"false\"", "true", "\"maybe\"", "[]", "null"]),
        ips in prop::sample::select(vec!["[]", "[\"10.0.0.1\"]", "[\"10.0.0.1/33\"]", "[1]", "\"x\"", "null"]),
        prev in prop::sample::select(vec!["null", "{}", "[]", "{\"ips\":[{\"address\":\"1.2.3.4/32\",\"interface\":5}]}", "{\"ips\":\"x\"}"]),
        extra in "[a-z]{0,8}",
    ) {
        let stdin = format!(
            r#"{{"cniVersion":"{version}","name":"n","type":"calico","mtu":{mtu},
                "ipam":{{"type":{ipam_type},"assign_ipv4":{assign}}},
                "runtimeConfig":{{"ips":{ips}}},"prevResult":{prev},"{extra}x":1}}"#
        );
        let env = vars("ADD");
        let out = dispatch(stdin.as_bytes(), |k| env.get(k).cloned(), &mut Stub::default());
        check_outcome(&out.stdout, out.exit_code)?;
    }
}

#[test]
fn run_io_reads_stdin_and_writes_exactly_the_outcome() {
    use calico_cni::spec::run::run_io;
    let env = vars("ADD");
    let mut out = Vec::new();
    let code = run_io(
        &conf("1.0.0")[..],
        &mut out,
        |k| env.get(k).cloned(),
        &mut Stub::default(),
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("one JSON document");
    assert_eq!(v["ips"][0]["address"], "10.65.0.5/32");
    // DEL: nothing at all on stdout.
    let env = vars("DEL");
    let mut out = Vec::new();
    let code = run_io(
        &conf("1.0.0")[..],
        &mut out,
        |k| env.get(k).cloned(),
        &mut Stub::default(),
    );
    assert_eq!((code, out.len()), (0, 0));
    // Oversized stdin: code 5 without reading it all.
    let big = std::io::repeat(b' ').take(calico_cni::spec::run::MAX_STDIN + 10);
    let mut out = Vec::new();
    let code = run_io(big, &mut out, |k| env.get(k).cloned(), &mut Stub::default());
    assert_eq!(code, 1);
    assert!(String::from_utf8_lossy(&out).contains(r#""code":5"#));
}
