//! Unit tests per construct and error, upstream's canonicalisation vectors, and property tests:
//! print→parse round trips, evaluation preserved, and a fuzz-style smoke test on arbitrary text.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::{Expr, MAX_DEPTH, Selector, parse};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sel(text: &str) -> Selector {
    match parse(text) {
        Ok(s) => s,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| v.to_string()).collect()
}

fn s(v: &str) -> String {
    v.to_string()
}

#[test]
fn each_construct_parses_to_its_node() {
    let cases: Vec<(&str, Expr)> = vec![
        ("all()", Expr::All),
        ("global( )", Expr::Global),
        (
            "has( projectcalico.org/name )",
            Expr::Has(s("projectcalico.org/name")),
        ),
        ("!has(a)", Expr::Not(Box::new(Expr::Has(s("a"))))),
        ("a == 'b'", Expr::Eq(s("a"), s("b"))),
        ("a!=\"b\"", Expr::Ne(s("a"), s("b"))),
        (
            "a in {'x', \"y\", 'x',}",
            Expr::In(s("a"), set(&["x", "y"])),
        ),
        ("a in {}", Expr::In(s("a"), set(&[]))),
        ("a not in {'x'}", Expr::NotIn(s("a"), set(&["x"]))),
        ("a notin {'x'}", Expr::NotIn(s("a"), set(&["x"]))),
        ("a starts with 'p'", Expr::StartsWith(s("a"), s("p"))),
        ("a startswith 'p'", Expr::StartsWith(s("a"), s("p"))),
        ("a ends with 's'", Expr::EndsWith(s("a"), s("s"))),
        ("a contains 's'", Expr::Contains(s("a"), s("s"))),
        (
            "kubernetes.io/os == 'linux'",
            Expr::Eq(s("kubernetes.io/os"), s("linux")),
        ),
        ("in == 'x'", Expr::Eq(s("in"), s("x"))),
        ("!!has(a)", Expr::Has(s("a"))),
        ("! !! has(a)", Expr::Not(Box::new(Expr::Has(s("a"))))),
        ("((has(a)))", Expr::Has(s("a"))),
    ];
    for (text, want) in cases {
        assert_eq!(sel(text).expr(), Some(&want), "{text}");
    }
}

#[test]
fn precedence_is_not_then_and_then_or() {
    let got = sel("!has(a) && has(b) || has(c) && has(d)");
    let want = Expr::Or(vec![
        Expr::And(vec![
            Expr::Not(Box::new(Expr::Has(s("a")))),
            Expr::Has(s("b")),
        ]),
        Expr::And(vec![Expr::Has(s("c")), Expr::Has(s("d"))]),
    ]);
    assert_eq!(got.expr(), Some(&want));
    assert_eq!(
        got.to_string(),
        "((!has(a) && has(b)) || (has(c) && has(d)))"
    );
}

#[test]
fn canonical_form_matches_upstream_vectors() {
    let cases = [
        (" all() ", "all()"),
        (" (all() )", "all()"),
        ("! (has( b)||! has(a ))", "!(has(b) || !has(a))"),
        (
            "! (a == \"b\"&&! c != \"d\")",
            "!(a == \"b\" && !c != \"d\")",
        ),
        ("a == \"'\"", "a == \"'\""),
        ("a == '\"'", "a == '\"'"),
        ("a contains '\"'", "a contains '\"'"),
        ("a startswith '\"'", "a starts with '\"'"),
        ("a endswith \"'\"", "a ends with \"'\""),
        ("a!='\"'", "a != '\"'"),
        (
            "a in {\"z\", \"z\", \"x\", \"y\", \"x\", \"a\"}",
            "a in {\"a\", \"x\", \"y\", \"z\"}",
        ),
        ("a not in {'\"', \"'\"}", "a not in {'\"', \"'\"}"),
        ("a == 'b' && c == 'd'", "(a == \"b\" && c == \"d\")"),
        // Found by the fuzzer: upstream prints `!!all()`, which would re-parse as `all()`.
        ("!(!all())", "!(!all())"),
        ("!(!!(!has(a)))", "!(!has(a))"),
        (
            "(a == 'b' && c == 'd') && e == 'f'",
            "((a == \"b\" && c == \"d\") && e == \"f\")",
        ),
    ];
    for (input, want) in cases {
        let canon = sel(input).to_string();
        assert_eq!(canon, want, "{input}");
        assert_eq!(sel(&canon), sel(input), "{input} round trip");
    }
}

#[test]
fn empty_selector_is_distinct_and_matches_everything() {
    for blank in ["", " ", "\t "] {
        let empty = sel(blank);
        assert!(empty.is_empty());
        assert_eq!(empty.to_string(), "");
        assert!(empty.matches(&labels(&[])));
        assert!(empty.matches(&labels(&[("a", "b")])));
    }
    assert!(!Selector::all().is_empty());
    assert_eq!(Selector::all().to_string(), "all()");
}

#[test]
fn evaluation_matches_upstream_semantics() {
    // (selector, labels, expected)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
    let cases: &[Case] = &[
        ("a == 'b'", &[("a", "b"), ("c", "d")], true),
        ("a == 'b'", &[("a", "c")], false),
        ("a == 'b'", &[], false),
        ("a != 'b'", &[], true),
        ("a != 'b'", &[("a", "b")], false),
        ("a in {'x','y'}", &[("a", "y")], true),
        ("a in {'x','y'}", &[], false),
        ("a not in {'x','y'}", &[], true),
        ("a not in {'x','y'}", &[("a", "x")], false),
        ("a contains 'a'", &[("a", "bab")], true),
        ("a contains 'a'", &[("b", "aaa")], false),
        ("a starts with 'a'", &[("a", "abb")], true),
        ("a starts with 'a'", &[("a", "baa")], false),
        ("a ends with 'a'", &[("a", "bba")], true),
        ("a ends with 'a'", &[("a", "aab")], false),
        ("has(a)", &[("a", "")], true),
        ("!has(a)", &[("a", "")], false),
        ("all()", &[], true),
        ("global()", &[], true),
        ("has(a) && !has(b)", &[("a", "a")], true),
        ("!(!has(a) || has(b))", &[("a", "a")], true),
        ("a != 'a1' || b != 'b1'", &[("a", "a1"), ("b", "b1")], false),
        (
            "! a == 'a1' || ! b == 'b1'",
            &[("a", "a1"), ("b", "b1")],
            false,
        ),
    ];
    for (text, pairs, want) in cases {
        assert_eq!(
            sel(text).matches(&labels(pairs)),
            *want,
            "{text} on {pairs:?}"
        );
    }
}

#[test]
fn global_takes_the_context_value() {
    let s = sel("global()");
    assert!(s.matches_with_global(&labels(&[]), true));
    assert!(!s.matches_with_global(&labels(&[]), false));
    assert!(sel("!global()").matches_with_global(&labels(&[]), false));
}

#[test]
fn bad_selectors_report_position_and_expectation() {
    // (input, character position, fragment of the message)
    let cases: &[(&str, usize, &str)] = &[
        ("b == b", 5, "expected a quoted string after '=='"),
        ("b contains b", 11, "expected a quoted string"),
        ("b starts with b", 14, "expected a quoted string"),
        ("'b1' == b", 0, "expected a label"),
        ("b", 1, "expected an operator after label"),
        ("a b", 2, "expected an operator after the label"),
        ("!", 1, "to start an expression"),
        ("foo == \"bar\" &", 13, "expected '&&'"),
        ("foo == \"bar\" |", 13, "expected '||'"),
        ("foo != ||", 7, "expected a quoted string"),
        ("foo in {\"\", ||", 12, "in the set"),
        ("foo in \"\"", 7, "set literal"),
        ("\"FOO", 0, "unterminated string"),
        ("\"FOO'", 0, "unterminated string"),
        ("'FOO", 0, "unterminated string"),
        ("(", 1, "to start an expression"),
        ("(a == \"foo\"", 11, "expected ')'"),
        (")", 0, "to start an expression"),
        ("()", 1, "to start an expression"),
        ("%", 0, "expected a label"),
        ("a == \"b\" && %", 12, "expected a label"),
        ("a == \"b\" || %", 12, "expected a label"),
        ("a ", 2, "expected an operator after label"),
        ("has(foo) &&", 11, "to start an expression"),
        ("has()", 4, "expected a label"),
        ("has(a b)", 6, "expected ')' to close has("),
        ("all(x)", 4, "expected ')' to close all("),
        ("a = 'b'", 2, "expected '=='"),
        ("has(a) has(b)", 7, "'&&', '||' or the end"),
        ("a == 'b'\nb == 'c'", 8, "expected a label"),
        ("é == 'x'", 0, "expected a label"),
        ("a == 'é' && %", 12, "expected a label"),
    ];
    for (input, pos, fragment) in cases {
        match parse(input) {
            Ok(s) => panic!("{input:?} should not parse, got {s}"),
            Err(e) => {
                assert_eq!(e.position, *pos, "{input:?}: {e}");
                assert!(e.message.contains(fragment), "{input:?}: {e}");
                assert_eq!(e.input, *input);
            }
        }
    }
}

#[test]
fn labels_longer_than_the_limit_are_rejected() {
    let ok = format!("has({})", "a".repeat(super::MAX_LABEL_LEN));
    assert!(parse(&ok).is_ok());
    let long = format!("has({})", "a".repeat(super::MAX_LABEL_LEN + 1));
    let e = parse(&long).err().map(|e| e.message);
    assert!(e.is_some_and(|m| m.contains("label longer than 512")));
}

#[test]
fn nesting_is_capped_with_a_clear_error() {
    let ok = format!("{}has(a){}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert_eq!(sel(&ok).to_string(), "has(a)");
    let deep = format!(
        "{}has(a){}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    let e = parse(&deep).err();
    assert!(e.as_ref().is_some_and(|e| e.position == MAX_DEPTH), "{e:?}");
    assert!(e.is_some_and(|e| e.message.contains("nested deeper than 64")));
    // Hostile input: far deeper nesting and long `!` runs neither panic nor overflow the stack.
    assert!(parse(&"(".repeat(1_000_000)).is_err());
    assert_eq!(
        sel(&format!("{}has(a)", "!".repeat(100_001))).to_string(),
        "!has(a)"
    );
}

#[test]
fn serde_uses_the_canonical_text() {
    let s: Selector = match serde_json::from_str("\"a=='b'&&has(c)\"") {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        serde_json::to_string(&s).ok().as_deref(),
        Some("\"(a == \\\"b\\\" && has(c))\"")
    );
    assert!(serde_json::from_str::<Selector>("\"a ==\"").is_err());
}

// ---- property tests ----

fn label_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["a", "b", "app", "projectcalico.org/name", "k8s-app"])
            .prop_map(String::from),
        1 => "[a-zA-Z0-9_./-]{1,20}",
    ]
}

/// Values the printer can quote: never both quote characters.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["", "x", "y", "web", "prod"]).prop_map(String::from),
        1 => "[a-z \"()&|!{},=é]{0,8}",
        1 => "[a-z '()&|!{},=]{0,8}",
    ]
}

/// Trees in the shape the parser produces: chains of two or more terms.
fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        Just(Expr::All),
        Just(Expr::Global),
        label_key().prop_map(Expr::Has),
        (label_key(), value()).prop_map(|(k, v)| Expr::Eq(k, v)),
        (label_key(), value()).prop_map(|(k, v)| Expr::Ne(k, v)),
        (label_key(), value()).prop_map(|(k, v)| Expr::Contains(k, v)),
        (label_key(), value()).prop_map(|(k, v)| Expr::StartsWith(k, v)),
        (label_key(), value()).prop_map(|(k, v)| Expr::EndsWith(k, v)),
        (label_key(), prop::collection::btree_set(value(), 0..4)).prop_map(|(k, v)| Expr::In(k, v)),
        (label_key(), prop::collection::btree_set(value(), 0..4))
            .prop_map(|(k, v)| Expr::NotIn(k, v)),
    ];
    leaf.prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            prop::collection::vec(inner, 2..4).prop_map(Expr::Or),
        ]
    })
}

fn label_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(label_key(), value(), 0..5)
}

/// What the fuzz target checks, on any text: no panic; if it parses, the canonical text parses
/// to the same tree and is a fixed point of print∘parse.
pub(crate) fn check_any_text(text: &str) {
    if let Ok(first) = parse(text) {
        let canon = first.to_string();
        let second = match parse(&canon) {
            Ok(s) => s,
            Err(e) => panic!("canonical form {canon:?} of {text:?} does not parse: {e}"),
        };
        assert_eq!(first, second, "{text:?} -> {canon:?}");
        assert_eq!(second.to_string(), canon);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn print_then_parse_gives_the_same_tree(e in expr()) {
        let text = e.to_string();
        let parsed = parse(&text);
        prop_assert_eq!(parsed.as_ref().ok().and_then(Selector::expr), Some(&e), "{} -> {:?}", text, parsed);
    }

    #[test]
    fn printed_selector_evaluates_like_the_tree(e in expr(), maps in prop::collection::vec(label_map(), 1..6), global: bool) {
        let reparsed = parse(&e.to_string());
        prop_assert!(reparsed.is_ok());
        let reparsed = reparsed.unwrap_or_default();
        for m in &maps {
            prop_assert_eq!(reparsed.matches_with_global(m, global), e.evaluate(m, global));
        }
    }

    #[test]
    fn arbitrary_text_never_panics_and_round_trips(text in any::<String>()) {
        check_any_text(&text);
    }

    #[test]
    fn selector_like_text_never_panics_and_round_trips(
        parts in prop::collection::vec(prop::sample::select(vec![
            "a", "b.c/d", " ", "\t", "==", "!=", "!", "&&", "||", "(", ")", "{", "}", ",", "'x'",
            "\"y\"", "'\"'", "\"'\"", "in", "not", "not in", "contains", "starts", "with",
            "ends with", "has(", "has(a)", "all()", "global()", "=", "&", "|", "é",
        ]), 0..24)
    ) {
        check_any_text(&parts.concat());
    }
}
