//! The refusals the Foundation issue requires: each bad resource is refused with the field named
//! and a fix, through the same path calicoctl uses (parse, default, validate).

use calico_api::codec::parse_documents;
use calico_api::{FieldError, Resource};

const GOOD: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool
spec:
  cidr: 10.48.0.0/16
";

fn refuse(yaml: &str) -> Vec<FieldError> {
    let mut rs = parse_documents(yaml).unwrap_or_else(|e| panic!("should parse: {e}"));
    assert_eq!(rs.len(), 1);
    let r: &mut Resource = &mut rs[0];
    r.apply_defaults();
    match r.validate() {
        Ok(()) => panic!("accepted:\n{yaml}"),
        Err(e) => e.0,
    }
}

#[test]
fn the_good_pool_is_accepted() {
    let mut rs = parse_documents(GOOD).expect("parses");
    rs[0].apply_defaults();
    rs[0].validate().expect("valid");
}

#[test]
fn block_size_33_is_refused() {
    let errs = refuse(&format!("{GOOD}  blockSize: 33\n"));
    assert_eq!(
        errs,
        [FieldError {
            field: "spec.blockSize".into(),
            message: "33 is out of range; use 20–32 for an IPv4 pool".into()
        }]
    );
}

#[test]
fn ipip_and_vxlan_both_always_is_refused() {
    let errs = refuse(&format!("{GOOD}  ipipMode: Always\n  vxlanMode: Always\n"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].field, "spec.vxlanMode");
    assert!(
        errs[0].message.contains("set one of them to Never"),
        "{}",
        errs[0].message
    );
}

#[test]
fn pool_overlapping_link_local_is_refused() {
    let errs = refuse(&GOOD.replace("10.48.0.0/16", "169.254.0.0/16"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].field, "spec.cidr");
    assert!(
        errs[0].message.contains("link-local range 169.254.0.0/16"),
        "{}",
        errs[0].message
    );
    let errs = refuse(&GOOD.replace("10.48.0.0/16", "169.0.0.0/8"));
    assert_eq!(errs[0].field, "spec.cidr");
}

#[test]
fn malformed_selector_is_refused() {
    let errs = refuse(&format!("{GOOD}  nodeSelector: \"rack == 'a' &&\"\n"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].field, "spec.nodeSelector");
    assert!(errs[0].message.contains("selector"), "{}", errs[0].message);
    let errs = refuse(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  selector: app = 'x'\n",
    );
    assert_eq!(errs[0].field, "spec.selector");
}
