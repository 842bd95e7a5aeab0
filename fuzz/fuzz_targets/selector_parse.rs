//! Fuzz target: the selector parser on arbitrary UTF-8. It must never panic, and whatever parses
//! must print to a canonical form that parses back to the same selector and prints identically.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(first) = calico_api::selector::parse(text) else {
        return;
    };
    let canon = first.to_string();
    let second = match calico_api::selector::parse(&canon) {
        Ok(s) => s,
        Err(e) => panic!("canonical form {canon:?} of {text:?} does not parse: {e}"),
    };
    assert_eq!(first, second, "{text:?} -> {canon:?}");
    assert_eq!(second.to_string(), canon);
});
