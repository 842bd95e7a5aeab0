//! Building blocks every kind shares: the `{apiVersion, kind, metadata, spec}` envelope macro,
//! upstream's `numorstring` value types (AS numbers, protocols, ports), and the field checks
//! (names, labels, CIDRs, selectors, durations) that validation of every kind is made of.
//!
//! Checks push a [`FieldError`](crate::FieldError) with the dotted field path and a message that
//! says what to write instead; they never stop at the first problem.

use crate::validate::ValidationErrors;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// Declares a resource struct `{apiVersion, kind, metadata, spec[, status]}` with unknown fields
/// refused, and its `new(name)`. An empty (default) status is not printed.
macro_rules! resource_struct {
    ($(#[$m:meta])* $name:ident, $spec:ty) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            #[serde(default)]
            pub api_version: String,
            #[serde(default)]
            pub kind: String,
            #[serde(default)]
            pub metadata: $crate::meta::ObjectMeta,
            #[serde(default)]
            pub spec: $spec,
        }
        $crate::resources::common::resource_struct!(@new $name);
    };
    ($(#[$m:meta])* $name:ident, $spec:ty, status: $status:ty) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            #[serde(default)]
            pub api_version: String,
            #[serde(default)]
            pub kind: String,
            #[serde(default)]
            pub metadata: $crate::meta::ObjectMeta,
            #[serde(default)]
            pub spec: $spec,
            #[serde(default, skip_serializing_if = "crate::resources::common::is_default")]
            pub status: $status,
        }
        $crate::resources::common::resource_struct!(@new $name);
    };
    (@new $name:ident) => {
        impl $name {
            /// A resource with the given name, `apiVersion` and `kind` filled and an empty spec.
            pub fn new(name: impl Into<String>) -> Self {
                $name {
                    api_version: $crate::API_VERSION.to_string(),
                    kind: stringify!($name).to_string(),
                    metadata: $crate::meta::ObjectMeta { name: name.into(), ..Default::default() },
                    ..Default::default()
                }
            }
        }
    };
}
pub(crate) use resource_struct;

/// Whether a value equals its default: an empty `status` is left out of the output.
pub(crate) fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

// ---------------------------------------------------------------------------------------------
// numorstring value types

/// A BGP AS number. YAML/JSON accept an integer, a decimal string or AS-dot notation (`1.10`);
/// it is always written back as an integer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AsNumber(pub u32);

impl AsNumber {
    /// Parses `65001`, `"65001"` or AS-dot `"1.10"` (= 1·65536 + 10).
    pub fn parse(s: &str) -> Result<AsNumber, String> {
        let s = s.trim();
        let bad = || {
            format!(
                "invalid AS number {s:?}: use an integer 0–4294967295 or AS-dot notation like 1.10"
            )
        };
        if let Some((hi, lo)) = s.split_once('.') {
            let hi: u16 = hi.parse().map_err(|_| bad())?;
            let lo: u16 = lo.parse().map_err(|_| bad())?;
            return Ok(AsNumber((u32::from(hi) << 16) | u32::from(lo)));
        }
        s.parse().map(AsNumber).map_err(|_| bad())
    }
}

impl fmt::Display for AsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for AsNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Num(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for AsNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(n) => u32::try_from(n).map(AsNumber).map_err(|_| {
                serde::de::Error::custom(format!("AS number {n} is out of range; use 0–4294967295"))
            }),
            NumOrStr::Str(s) => AsNumber::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// Protocol names a rule or port may name (upstream's exact spellings).
pub const PROTOCOL_NAMES: &[&str] = &["TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite"];

/// A rule's `protocol`: a name (`TCP`, `UDP`, `ICMP`, `ICMPv6`, `SCTP`, `UDPLite`) or a number.
/// Numeric strings (`"6"`) are read as numbers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Protocol {
    Name(String),
    Number(u8),
}

impl Protocol {
    /// Whether rules with this protocol may match ports (TCP, UDP, SCTP, by name or number).
    pub fn supports_ports(&self) -> bool {
        match self {
            Protocol::Name(n) => matches!(n.as_str(), "TCP" | "UDP" | "SCTP"),
            Protocol::Number(n) => matches!(n, 6 | 17 | 132),
        }
    }
    pub fn is_name(&self, name: &str) -> bool {
        matches!(self, Protocol::Name(n) if n == name)
    }
    /// Checks the protocol is a known name or 1–255.
    pub fn check(&self, field: &str, errs: &mut ValidationErrors) {
        match self {
            Protocol::Number(0) => errs.push(field, "protocol number 0 is invalid; use 1–255 or a name (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite)"),
            Protocol::Number(_) => {}
            Protocol::Name(n) if PROTOCOL_NAMES.contains(&n.as_str()) => {}
            Protocol::Name(n) => {
                let hint = PROTOCOL_NAMES
                    .iter()
                    .find(|p| p.eq_ignore_ascii_case(n))
                    .map(|p| format!("write {p}"))
                    .unwrap_or_else(|| "use TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1–255".into());
                errs.push(field, format!("unknown protocol {n:?}; {hint}"));
            }
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Name(n) => f.write_str(n),
            Protocol::Number(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Protocol::Name(n) => s.serialize_str(n),
            Protocol::Number(n) => s.serialize_u8(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let range = |n: i64| {
            u8::try_from(n).map(Protocol::Number).map_err(|_| {
                serde::de::Error::custom(format!("protocol number {n} is out of range; use 1–255"))
            })
        };
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(n) => range(n),
            NumOrStr::Str(s) => match s.trim().parse::<i64>() {
                Ok(n) => range(n),
                Err(_) => Ok(Protocol::Name(s)),
            },
        }
    }
}

/// A port match: a number, a range `"80:90"`, or a named port (`"http"`). A single number is
/// written back as an integer, a range as `"min:max"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Port {
    Range { min: u16, max: u16 },
    Named(String),
}

impl Port {
    pub fn single(p: u16) -> Port {
        Port::Range { min: p, max: p }
    }
    fn parse_str(s: &str) -> Result<Port, String> {
        let t = s.trim();
        if let Some((a, b)) = t.split_once(':') {
            let p = |x: &str| {
                x.trim().parse::<u16>().map_err(|_| {
                    format!(
                        "invalid port range {s:?}: use min:max with ports 1–65535, e.g. \"80:90\""
                    )
                })
            };
            let (min, max) = (p(a)?, p(b)?);
            if min > max {
                return Err(format!(
                    "invalid port range {s:?}: the first port must not exceed the second"
                ));
            }
            return Ok(Port::Range { min, max });
        }
        if t.chars().all(|c| c.is_ascii_digit()) && !t.is_empty() {
            return t
                .parse::<u16>()
                .map(Port::single)
                .map_err(|_| format!("port {t} is out of range; use 1–65535"));
        }
        Ok(Port::Named(s.to_string()))
    }
    /// Checks numbers are 1–65535 and names are valid port names.
    pub fn check(&self, field: &str, errs: &mut ValidationErrors) {
        match self {
            Port::Range { min, .. } if *min == 0 => {
                errs.push(field, "port 0 is invalid; port numbers must be 1–65535")
            }
            Port::Range { .. } => {}
            Port::Named(n) => check_port_name(n, field, errs),
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Range { min, max } if min == max => write!(f, "{min}"),
            Port::Range { min, max } => write!(f, "{min}:{max}"),
            Port::Named(n) => f.write_str(n),
        }
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Port::Range { min, max } if min == max => s.serialize_u16(*min),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(n) => u16::try_from(n).map(Port::single).map_err(|_| {
                serde::de::Error::custom(format!("port {n} is out of range; use 1–65535"))
            }),
            NumOrStr::Str(s) => Port::parse_str(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// Kubernetes' port-name rule (IANA service name): 1–15 characters of `a-z`, `0-9` and `-`,
/// at least one letter, no leading, trailing or doubled `-`.
pub fn check_port_name(n: &str, field: &str, errs: &mut ValidationErrors) {
    let ok = !n.is_empty()
        && n.len() <= 15
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && n.chars().any(|c| c.is_ascii_lowercase())
        && !n.starts_with('-')
        && !n.ends_with('-')
        && !n.contains("--");
    if !ok {
        errs.push(
            field,
            format!("invalid port name {n:?}: use 1–15 lower-case letters, digits and single '-' (at least one letter), or a number 1–65535 or range \"80:90\""),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Names and labels

fn is_label(s: &str) -> bool {
    s.len() <= 63 && is_label_chars(s)
}

/// Lower-case alphanumerics and `-`, starting and ending alphanumeric; any length.
fn is_label_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// DNS-1123 label: lower-case alphanumerics and `-`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    is_label(s)
}

/// DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    // As Kubernetes and upstream Calico check names: the length limit is on the whole name, not
    // per dot-separated part (a plain-CNI WorkloadEndpoint name holds a 64-character container ID).
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label_chars)
}

/// Checks a reference to another resource by name (a node, profile, filter …).
pub fn check_name_ref(s: &str, field: &str, errs: &mut ValidationErrors) {
    if !is_dns1123_subdomain(s) {
        errs.push(field, format!("invalid name {s:?}: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit (at most 253 characters)"));
    }
}

fn is_k8s_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// Kubernetes qualified name (`[prefix/]name`), used for label and annotation keys.
pub fn is_qualified_name(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => is_dns1123_subdomain(prefix) && is_k8s_name_part(name),
        None => is_k8s_name_part(k),
    }
}

/// Label values: empty, or at most 63 alphanumerics, `-`, `_`, `.` starting and ending alphanumeric.
pub fn is_label_value(v: &str) -> bool {
    v.is_empty() || is_k8s_name_part(v)
}

/// Checks a label map (`metadata.labels`, `labelsToApply`, template labels).
pub fn check_labels(labels: &BTreeMap<String, String>, field: &str, errs: &mut ValidationErrors) {
    for (k, v) in labels {
        if !is_qualified_name(k) {
            errs.push(format!("{field}[{k}]"), "invalid label key: use [prefix/]name where name is at most 63 letters, digits, '-', '_' or '.' and prefix is a DNS subdomain");
        }
        if !is_label_value(v) {
            errs.push(format!("{field}[{k}]"), format!("invalid label value {v:?}: use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Addresses

/// Parses `a.b.c.d/n`, `a::/n` or a bare address (taken as /32 or /128). Returns the network as
/// written (host bits kept) so callers can check masking.
pub fn parse_cidr_or_ip(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(n) = s.parse::<IpNet>() {
        return Some(n);
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// Whether the CIDR has no host bits set.
pub fn is_masked(n: &IpNet) -> bool {
    n.trunc().addr() == n.addr()
}

/// A network field (upstream `net`): a CIDR or address with no host bits set.
pub fn check_net(s: &str, field: &str, errs: &mut ValidationErrors) -> Option<IpNet> {
    match parse_cidr_or_ip(s) {
        None => {
            errs.push(
                field,
                format!("{s:?} is not a CIDR or IP address; write e.g. 10.0.0.0/24 or fd00::/64"),
            );
            None
        }
        Some(n) if !is_masked(&n) => {
            errs.push(
                field,
                format!(
                    "{s} has host bits set; write the network address {}",
                    n.trunc()
                ),
            );
            None
        }
        Some(n) => Some(n),
    }
}

/// A CIDR field that need not be masked (upstream `cidr`).
pub fn check_cidr(s: &str, field: &str, errs: &mut ValidationErrors) -> Option<IpNet> {
    let r = parse_cidr_or_ip(s);
    if r.is_none() {
        errs.push(
            field,
            format!("{s:?} is not a CIDR or IP address; write e.g. 10.0.0.0/24 or fd00::/64"),
        );
    }
    r
}

/// A bare IP address of the given family (4 or 6; 0 = either).
pub fn check_ip(s: &str, family: u8, field: &str, errs: &mut ValidationErrors) -> Option<IpAddr> {
    let what = match family {
        4 => "an IPv4 address",
        6 => "an IPv6 address",
        _ => "an IP address",
    };
    match s.trim().parse::<IpAddr>() {
        Ok(a) if family == 0 || (family == 4) == a.is_ipv4() => Some(a),
        _ => {
            errs.push(field, format!("{s:?} is not {what}"));
            None
        }
    }
}

/// A MAC address `aa:bb:cc:dd:ee:ff` (also `-` separated).
pub fn check_mac(s: &str, field: &str, errs: &mut ValidationErrors) {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        errs.push(
            field,
            format!("{s:?} is not a MAC address; write six hex pairs like ee:ee:ee:ee:ee:ee"),
        );
    }
}

/// A Linux interface name (at most 15 of `A-Za-z0-9_.-`), or `*` where allowed.
pub fn check_interface(s: &str, allow_star: bool, field: &str, errs: &mut ValidationErrors) {
    let ok = (allow_star && s == "*")
        || (!s.is_empty()
            && s.len() <= 15
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)));
    if !ok {
        errs.push(
            field,
            format!(
                "{s:?} is not an interface name: use at most 15 letters, digits, '_', '.' or '-'"
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Selectors and durations

/// Parses a selector field with the shared selector parser; the error says where it broke.
pub fn check_selector(s: &str, field: &str, errs: &mut ValidationErrors) {
    if let Err(e) = crate::selector::parse(s) {
        errs.push(
            field,
            format!("{e}; write a selector such as all(), has(key) or key == 'value'"),
        );
    }
}

/// `global()` is only meaningful as an EntityRule's namespaceSelector.
pub fn check_no_global(s: &str, field: &str, errs: &mut ValidationErrors) {
    if s.contains("global()") {
        errs.push(field, "global() can only be used in a rule's source/destination namespaceSelector; remove it here");
    }
}

/// Parses a Go duration (`90s`, `1m30s`, `1.5h`, `300ms`, `0`) to seconds.
pub fn parse_duration(s: &str) -> Option<f64> {
    let s = s.trim();
    if s == "0" {
        return Some(0.0);
    }
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * scale;
    }
    Some(if neg { -total } else { total })
}

pub fn check_duration(s: &str, field: &str, errs: &mut ValidationErrors) {
    if parse_duration(s).is_none() {
        errs.push(
            field,
            format!("{s:?} is not a duration; write e.g. 90s, 5m or 1h30m"),
        );
    }
}

/// Upstream's log levels for `logSeverityScreen` fields.
pub fn check_log_level(s: &str, field: &str, errs: &mut ValidationErrors) {
    const LEVELS: &[&str] = &["Trace", "Debug", "Info", "Warning", "Error", "Fatal"];
    if !LEVELS.contains(&s) {
        errs.push(
            field,
            format!(
                "unknown log level {s:?}; use one of Trace, Debug, Info, Warning, Error, Fatal"
            ),
        );
    }
}

/// Checks `value` is one of `allowed`, naming them in the message.
pub fn check_one_of(value: &str, allowed: &[&str], field: &str, errs: &mut ValidationErrors) {
    if !allowed.contains(&value) {
        errs.push(
            field,
            format!(
                "{value:?} is not allowed; use one of {}",
                allowed.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_numbers_parse_plain_and_dotted() {
        assert_eq!(AsNumber::parse("64512"), Ok(AsNumber(64512)));
        assert_eq!(AsNumber::parse("1.10"), Ok(AsNumber(65546)));
        assert!(AsNumber::parse("4294967296").is_err());
        assert!(AsNumber::parse("x").is_err());
    }

    #[test]
    fn ports_parse_numbers_ranges_and_names() {
        let p: Port = serde_json::from_str("80").unwrap();
        assert_eq!(p, Port::single(80));
        let p: Port = serde_json::from_str("\"80:90\"").unwrap();
        assert_eq!(p, Port::Range { min: 80, max: 90 });
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"80:90\"");
        let p: Port = serde_json::from_str("\"http\"").unwrap();
        assert_eq!(p, Port::Named("http".into()));
        assert!(serde_json::from_str::<Port>("\"90:80\"").is_err());
        assert!(serde_json::from_str::<Port>("70000").is_err());
        let mut e = ValidationErrors::default();
        Port::single(0).check("p", &mut e);
        Port::Named("Bad_Name".into()).check("q", &mut e);
        assert_eq!(e.0.len(), 2);
    }

    #[test]
    fn protocols_accept_names_and_numbers() {
        let p: Protocol = serde_json::from_str("\"TCP\"").unwrap();
        assert!(p.supports_ports());
        let p: Protocol = serde_json::from_str("\"17\"").unwrap();
        assert_eq!(p, Protocol::Number(17));
        assert!(serde_json::from_str::<Protocol>("256").is_err());
        let mut e = ValidationErrors::default();
        Protocol::Name("tcp".into()).check("spec.protocol", &mut e);
        Protocol::Number(0).check("spec.protocol", &mut e);
        assert_eq!(e.0.len(), 2);
        assert!(e.0[0].message.contains("write TCP"), "{}", e.0[0].message);
    }

    #[test]
    fn names_labels_and_durations() {
        assert!(is_dns1123_subdomain("default-ipv4-ippool"));
        assert!(is_dns1123_subdomain("kns.default"));
        assert!(!is_dns1123_subdomain("Bad_Name"));
        assert!(!is_dns1123_subdomain("-a"));
        assert!(is_qualified_name("node-role.kubernetes.io/control-plane"));
        assert!(!is_qualified_name("a/b/c"));
        assert!(is_label_value(""));
        assert_eq!(parse_duration("1m30s"), Some(90.0));
        assert_eq!(parse_duration("120s"), Some(120.0));
        assert_eq!(parse_duration("300ms"), Some(0.3));
        assert_eq!(parse_duration("5x"), None);
    }

    #[test]
    fn networks_must_be_masked() {
        let mut e = ValidationErrors::default();
        assert!(check_net("10.0.0.0/8", "a", &mut e).is_some());
        assert!(check_net("10.0.0.1", "a", &mut e).is_some());
        assert!(check_net("10.0.0.1/8", "b", &mut e).is_none());
        assert!(check_net("nonsense", "c", &mut e).is_none());
        assert_eq!(e.0.len(), 2);
        assert!(e.0[0].message.contains("10.0.0.0/8"));
    }
}
