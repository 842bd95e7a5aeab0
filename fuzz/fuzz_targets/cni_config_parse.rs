//! Fuzz target: the CNI network configuration, result and CNI_ARGS parsers on arbitrary bytes.
//! None may panic; a configuration that parses must have a prevResult that prints in every
//! version and parses back, and an error that prints as valid JSON.
#![no_main]

use calico_cni::spec::{CniArgs, CniResult, CniVersion, NetConf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match NetConf::parse(data) {
        Ok(conf) => {
            if let Some(prev) = &conf.prev_result {
                for v in CniVersion::ALL {
                    let printed = prev.to_json(v);
                    let back = match CniResult::parse(printed.as_bytes()) {
                        Ok(r) => r,
                        Err(e) => panic!("printed result does not parse: {e}\n{printed}"),
                    };
                    assert_eq!(back.ips, prev.ips);
                    assert_eq!(back.interfaces.len(), prev.interfaces.len());
                }
            }
        }
        Err(e) => {
            let json = e.to_json("1.1.0");
            assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok(), "{json}");
        }
    }
    let _ = CniResult::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = CniArgs::parse(text);
    }
});
