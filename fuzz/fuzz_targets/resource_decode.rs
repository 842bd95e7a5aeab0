//! Fuzz target: the resource codec on arbitrary UTF-8 (YAML or JSON). It must never panic;
//! whatever parses must validate without panicking, print, and parse back to equal resources.
#![no_main]

use calico_api::codec::{parse_documents, to_json, to_yaml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(resources) = parse_documents(text) else {
        return;
    };
    for r in &resources {
        let _ = r.validate();
        let mut d = r.clone();
        d.apply_defaults();
        let _ = d.validate();
    }
    let yaml = to_yaml(&resources);
    match parse_documents(&yaml) {
        Ok(back) => assert_eq!(back, resources, "YAML round trip of {text:?}:\n{yaml}"),
        Err(e) => panic!("printed YAML does not parse: {e}\n{yaml}"),
    }
    let json = to_json(&resources);
    match parse_documents(&json) {
        Ok(back) => assert_eq!(back, resources, "JSON round trip of {text:?}:\n{json}"),
        Err(e) => panic!("printed JSON does not parse: {e}\n{json}"),
    }
});
