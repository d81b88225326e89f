//! Object keys matched the way Go's `encoding/json` matches them, so that natra
//! reads a netconf exactly as the Go plugins and libraries around it do.
//!
//! The runtimes that call natra are Go programs, and so are the plugins they
//! are tested with. containerd (go-cni) and CRI-O (ocicni) marshal the
//! `bandwidth` capability from a struct without JSON tags, so natra receives
//! `{"IngressRate": …, "IngressBurst": …}`; upstream's plugin reads it into
//! `ingressRate` because Go's decoder matches a key to a struct field
//! case-insensitively. What Go does, and this module with it:
//! - a key matches a field by its exact name, else by Unicode simple case
//!   folding (`bytes.EqualFold`: ASCII case, and `K` (U+212A) for k, `ſ`
//!   (U+017F) for s: the two non-ASCII letters that fold onto ASCII ones);
//! - keys are taken in document order, so when two keys name one field the
//!   later wins; an object decoded into a field that already holds a struct
//!   or a map is merged into it (Go decodes into the existing value);
//! - `null` leaves a number, string or bool field as it was, and clears a
//!   struct, map or list field (pointer, map and slice fields in Go);
//! - keys of a map (annotations) and of opaque values (`prevResult`) are data,
//!   kept exactly; unknown keys are dropped, as Go ignores them.
//!
//! [`canonical`] rewrites a document into one whose struct keys are exactly
//! the canonical names, which serde then decodes with its exact matching.
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// What Go would decode a JSON value into.
#[derive(Debug)]
pub enum Shape {
    /// A number, string or bool field.
    Scalar,
    /// An `interface{}` or `json.RawMessage` field: kept as it is.
    Opaque,
    /// A struct: its fields, by canonical (tag) name.
    Struct(&'static [Field]),
    /// A `map[string]T`: keys are data, matched exactly.
    Map(&'static Shape),
    /// A slice.
    List(&'static Shape),
}

/// One struct field: its JSON name as the Go tag spells it, and its shape.
#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub shape: Shape,
}

/// Shorthand for the schema tables.
pub const fn field(name: &'static str, shape: Shape) -> Field {
    Field { name, shape }
}

/// A JSON document as written: objects keep every key, duplicates included,
/// in document order (serde_json's `Value` keeps only one of two equal keys).
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Raw>),
    Object(Vec<(String, Raw)>),
}

impl Raw {
    pub fn parse(text: &[u8]) -> serde_json::Result<Raw> {
        serde_json::from_slice(text)
    }

    /// The value as Go's `interface{}` would hold it (a later duplicate key wins).
    fn into_value(self) -> Value {
        match self {
            Raw::Null => Value::Null,
            Raw::Bool(b) => Value::Bool(b),
            Raw::Number(n) => Value::Number(n),
            Raw::String(s) => Value::String(s),
            Raw::Array(items) => Value::Array(items.into_iter().map(Raw::into_value).collect()),
            Raw::Object(entries) => {
                let mut map = Map::new();
                for (k, v) in entries {
                    map.insert(k, v.into_value());
                }
                Value::Object(map)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Raw, E> {
                Ok(Raw::Number(n.into()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Raw, E> {
                Ok(Raw::Number(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Raw, E> {
                Number::from_f64(n)
                    .map(Raw::Number)
                    .ok_or_else(|| E::custom("a number JSON cannot hold"))
            }
            fn visit_str<E>(self, s: &str) -> Result<Raw, E> {
                Ok(Raw::String(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Raw, E> {
                Ok(Raw::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Raw::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Raw>()? {
                    entries.push((k, v));
                }
                Ok(Raw::Object(entries))
            }
        }
        d.deserialize_any(RawVisitor)
    }
}

/// Go's `bytes.EqualFold` of a key against an ASCII field name.
pub fn fold_eq(key: &str, name: &str) -> bool {
    let mut key_chars = key.chars();
    for n in name.chars() {
        let Some(k) = key_chars.next() else {
            return false;
        };
        let same = match k {
            '\u{212A}' => n.eq_ignore_ascii_case(&'k'),
            '\u{017F}' => n.eq_ignore_ascii_case(&'s'),
            k => k.eq_ignore_ascii_case(&n),
        };
        if !same {
            return false;
        }
    }
    key_chars.next().is_none()
}

/// The field a key decodes into: by exact name first, then folded.
fn find_field(fields: &'static [Field], key: &str) -> Option<&'static Field> {
    fields
        .iter()
        .find(|f| f.name == key)
        .or_else(|| fields.iter().find(|f| fold_eq(key, f.name)))
}

/// `raw` rewritten for `shape`: struct keys canonical, merged as Go merges.
pub fn canonical(raw: Raw, shape: &Shape) -> Value {
    let mut out = Value::Null;
    decode_into(&mut out, raw, shape);
    out
}

/// Decodes `raw` into the slot `into` already holding a value, as Go decodes
/// into an existing field.
fn decode_into(into: &mut Value, raw: Raw, shape: &Shape) {
    match (shape, raw) {
        // null: no-op for scalars, clears everything else.
        (Shape::Scalar, Raw::Null) => {}
        (_, Raw::Null) => *into = Value::Null,
        (Shape::Struct(fields), Raw::Object(entries)) => {
            if !into.is_object() {
                *into = Value::Object(Map::new());
            }
            let obj = into.as_object_mut().expect("made an object above");
            for (key, value) in entries {
                let Some(f) = find_field(fields, &key) else {
                    continue;
                };
                let slot = obj.entry(f.name).or_insert(Value::Null);
                decode_into(slot, value, &f.shape);
                // A scalar's null on a field never set leaves it absent.
                if slot.is_null() {
                    obj.remove(f.name);
                }
            }
        }
        (Shape::Map(elem), Raw::Object(entries)) => {
            if !into.is_object() {
                *into = Value::Object(Map::new());
            }
            let obj = into.as_object_mut().expect("made an object above");
            for (key, value) in entries {
                // Go stores a fresh element per key, replacing any earlier one.
                obj.insert(key, canonical(value, elem));
            }
        }
        (Shape::List(elem), Raw::Array(items)) => {
            *into = Value::Array(items.into_iter().map(|i| canonical(i, elem)).collect());
        }
        // Opaque values, scalars, and values of the wrong JSON type, which
        // serde then refuses as Go does (kept as written so it can say why).
        (_, raw) => *into = raw.into_value(),
    }
}

/// A top-level string field of a document, matched as Go would (for the
/// answers that must not fail on a document otherwise bad: VERSION, errors).
pub fn top_level_str(text: &[u8], name: &str) -> Option<String> {
    let Ok(Raw::Object(entries)) = Raw::parse(text) else {
        return None;
    };
    // Every matching key is decoded in turn: the last one wins.
    match entries.iter().rev().find(|(k, _)| fold_eq(k, name)) {
        Some((_, Raw::String(s))) => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BW: Shape = Shape::Struct(&[
        field("ingressRate", Shape::Scalar),
        field("egressRate", Shape::Scalar),
    ]);
    static DOC: Shape = Shape::Struct(&[
        field("cniVersion", Shape::Scalar),
        field("runtimeConfig", Shape::Struct(&[field("bandwidth", BW)])),
        field("annotations", Shape::Map(&Shape::Scalar)),
        field("prevResult", Shape::Opaque),
        field("list", Shape::List(&BW)),
    ]);

    fn canon(text: &str) -> Value {
        canonical(Raw::parse(text.as_bytes()).unwrap(), &DOC)
    }

    #[test]
    fn keys_fold_as_go_equal_fold() {
        assert!(fold_eq("IngressRate", "ingressRate"));
        assert!(fold_eq("INGRESSRATE", "ingressRate"));
        assert!(fold_eq("ingressrate", "ingressRate"));
        assert!(fold_eq("cniVer\u{017F}ion", "cniVersion"));
        assert!(fold_eq("\u{212A}ey", "key"));
        assert!(!fold_eq("ingressRat", "ingressRate"));
        assert!(!fold_eq("ingressRatee", "ingressRate"));
        assert!(!fold_eq("ingress_rate", "ingressRate"));
        // Dotless and dotted I fold to no ASCII letter in Go either.
        assert!(!fold_eq("\u{0131}ngressRate", "ingressRate"));
        assert!(!fold_eq("\u{0130}ngressRate", "ingressRate"));
    }

    #[test]
    fn go_field_names_reach_the_canonical_ones() {
        let v = canon(
            r#"{"CNIVersion":"1.0.0","RuntimeConfig":{"Bandwidth":
                {"IngressRate":20000000,"EgressRate":10000000,"IngressBurst":4294967295}}}"#,
        );
        assert_eq!(
            v,
            json!({"cniVersion":"1.0.0","runtimeConfig":{"bandwidth":
                {"ingressRate":20000000,"egressRate":10000000}}})
        );
    }

    #[test]
    fn the_later_key_wins_and_objects_merge() {
        let v = canon(
            r#"{"runtimeConfig":{"bandwidth":{"ingressRate":1,"egressRate":2}},
                "RUNTIMECONFIG":{"bandwidth":{"IngressRate":3}},
                "cniVersion":"0.4.0","CniVersion":"1.0.0"}"#,
        );
        assert_eq!(
            v,
            json!({"runtimeConfig":{"bandwidth":{"ingressRate":3,"egressRate":2}},
                "cniVersion":"1.0.0"})
        );
        // An exact duplicate merges the same way.
        let v = canon(
            r#"{"runtimeConfig":{"bandwidth":{"ingressRate":1}},
                "runtimeConfig":{"bandwidth":{"egressRate":2}}}"#,
        );
        assert_eq!(
            v["runtimeConfig"]["bandwidth"],
            json!({"ingressRate":1,"egressRate":2})
        );
    }

    #[test]
    fn null_keeps_a_scalar_and_clears_a_struct() {
        let v = canon(r#"{"runtimeConfig":{"bandwidth":{"ingressRate":5,"IngressRate":null}}}"#);
        assert_eq!(v["runtimeConfig"]["bandwidth"], json!({"ingressRate":5}));
        let v = canon(r#"{"runtimeConfig":{"bandwidth":{"ingressRate":5},"Bandwidth":null}}"#);
        // Cleared is absent: serde reads both as None.
        assert_eq!(v["runtimeConfig"], json!({}));
        let v = canon(r#"{"cniVersion":null}"#);
        assert_eq!(v, json!({}));
    }

    #[test]
    fn map_keys_and_opaque_values_are_data() {
        let v = canon(
            r#"{"Annotations":{"Kubernetes.io/Egress-Bandwidth":"1M","a":"1","a":"2"},
                "PrevResult":{"IPs":[{"Address":"10.0.0.2/24"}],"ips":[]},
                "List":[{"IngressRate":1}],"unknown":{"x":1}}"#,
        );
        assert_eq!(
            v,
            json!({"annotations":{"Kubernetes.io/Egress-Bandwidth":"1M","a":"2"},
                "prevResult":{"IPs":[{"Address":"10.0.0.2/24"}],"ips":[]},
                "list":[{"ingressRate":1}]})
        );
    }

    #[test]
    fn wrong_types_are_kept_for_serde_to_refuse() {
        let v = canon(r#"{"runtimeConfig":"yes","cniVersion":1}"#);
        assert_eq!(v, json!({"runtimeConfig":"yes","cniVersion":1}));
    }

    #[test]
    fn top_level_strings_are_found_as_go_finds_them() {
        let doc = br#"{"CNIVERSION":"0.4.0","name":"n"}"#;
        assert_eq!(top_level_str(doc, "cniVersion").as_deref(), Some("0.4.0"));
        let doc = br#"{"cniversion":"0.4.0","cniVersion":"1.0.0"}"#;
        assert_eq!(top_level_str(doc, "cniVersion").as_deref(), Some("1.0.0"));
        let doc = br#"{"cniVersion":"1.0.0","cniversion":"0.4.0"}"#;
        assert_eq!(top_level_str(doc, "cniVersion").as_deref(), Some("0.4.0"));
        assert_eq!(top_level_str(b"{bad", "cniVersion"), None);
    }
}
