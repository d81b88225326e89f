//! Where a Pod's limits come from, and which source wins.
//!
//! Per direction, the first source that sets a rate wins (docs/limits.md):
//! 1. `runtimeConfig.bandwidth` — the runtime's own reading of the Pod's
//!    annotations (the CNI `bandwidth` capability);
//! 2. the Pod's annotations `kubernetes.io/ingress-bandwidth` /
//!    `kubernetes.io/egress-bandwidth`, when the runtime passes them
//!    (`runtimeConfig.podAnnotations`, or the capability containerd names
//!    `io.kubernetes.cri.pod-annotations`), parsed as Kubernetes quantities;
//! 3. the static netconf fields (`ingressRate`, …): a node-wide default.
//!
//! A direction takes its burst from the same source as its rate; an
//! annotation carries no burst, so the default window applies.
use serde::Deserialize;
use serde_json::{Map, Value};

use super::quantity::parse_quantity;
use crate::error::{Error, ErrorKind, Result};

pub const INGRESS_ANNOTATION: &str = "kubernetes.io/ingress-bandwidth";
pub const EGRESS_ANNOTATION: &str = "kubernetes.io/egress-bandwidth";
/// runtimeConfig keys under which runtimes pass the Pod's annotations.
pub const ANNOTATION_KEYS: [&str; 2] = ["podAnnotations", "io.kubernetes.cri.pod-annotations"];

/// The `bandwidth` capability's shape (and upstream's static netconf fields):
/// rates in bits/s, bursts in bits.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    #[serde(default)]
    pub ingress_rate: u64,
    #[serde(default)]
    pub ingress_burst: u64,
    #[serde(default)]
    pub egress_rate: u64,
    #[serde(default)]
    pub egress_burst: u64,
}

/// The Pod's annotations from `runtimeConfig`, if the runtime passed any:
/// the values under [`ANNOTATION_KEYS`], in that order, the first set wins.
pub fn pod_annotations(values: [Option<&Value>; 2]) -> Result<Option<Map<String, Value>>> {
    for (key, value) in ANNOTATION_KEYS.into_iter().zip(values) {
        match value {
            None | Some(Value::Null) => continue,
            Some(Value::Object(map)) => return Ok(Some(map.clone())),
            Some(other) => {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!("runtimeConfig.{key} must be an object, not {other}"),
                ))
            }
        }
    }
    Ok(None)
}

/// One annotation's rate in bit/s, or None when absent.
fn annotation_rate(annotations: &Map<String, Value>, name: &str) -> Result<Option<u64>> {
    let Some(value) = annotations.get(name) else {
        return Ok(None);
    };
    let bad = |why: &str| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("annotation {name}: {value} {why}"),
        )
    };
    let text = value.as_str().ok_or_else(|| bad("is not a string"))?;
    // No trimming: Kubernetes' ParseQuantity refuses " 10M" too.
    parse_quantity(text)
        .map(Some)
        .ok_or_else(|| bad("is not a Kubernetes quantity (e.g. 10M, 1Gi)"))
}

/// Merges the three sources per direction.
pub fn resolve(
    runtime: Option<Bandwidth>,
    annotations: Option<&Map<String, Value>>,
    static_limits: Bandwidth,
) -> Result<Bandwidth> {
    let (ann_in, ann_out) = match annotations {
        Some(a) => (
            annotation_rate(a, INGRESS_ANNOTATION)?,
            annotation_rate(a, EGRESS_ANNOTATION)?,
        ),
        None => (None, None),
    };
    let runtime = runtime.unwrap_or_default();
    let pick = |rt: (u64, u64), ann: Option<u64>, st: (u64, u64)| {
        if rt.0 > 0 {
            rt
        } else if let Some(rate) = ann.filter(|&r| r > 0) {
            (rate, 0)
        } else {
            st
        }
    };
    let ingress = pick(
        (runtime.ingress_rate, runtime.ingress_burst),
        ann_in,
        (static_limits.ingress_rate, static_limits.ingress_burst),
    );
    let egress = pick(
        (runtime.egress_rate, runtime.egress_burst),
        ann_out,
        (static_limits.egress_rate, static_limits.egress_burst),
    );
    Ok(Bandwidth {
        ingress_rate: ingress.0,
        ingress_burst: ingress.1,
        egress_rate: egress.0,
        egress_burst: egress.1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bw(ir: u64, ib: u64, er: u64, eb: u64) -> Bandwidth {
        Bandwidth {
            ingress_rate: ir,
            ingress_burst: ib,
            egress_rate: er,
            egress_burst: eb,
        }
    }

    fn ann(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn runtime_config_beats_annotations_beats_static_per_direction() {
        let a = ann(json!({INGRESS_ANNOTATION: "30M", EGRESS_ANNOTATION: "40M"}));
        let out = resolve(
            Some(bw(10_000_000, 4_294_967_295, 0, 0)),
            Some(&a),
            bw(1_000_000, 8_000, 2_000_000, 8_000),
        )
        .unwrap();
        assert_eq!(out, bw(10_000_000, 4_294_967_295, 40_000_000, 0));
        let out = resolve(None, None, bw(1_000_000, 8_000, 2_000_000, 8_000)).unwrap();
        assert_eq!(out, bw(1_000_000, 8_000, 2_000_000, 8_000));
        let a = ann(json!({EGRESS_ANNOTATION: "1Mi"}));
        let out = resolve(None, Some(&a), bw(1_000_000, 8_000, 0, 0)).unwrap();
        assert_eq!(out, bw(1_000_000, 8_000, 1_048_576, 0));
    }

    #[test]
    fn annotations_are_read_under_both_runtime_keys() {
        let value = json!({INGRESS_ANNOTATION: "5M"});
        for values in [[Some(&value), None], [None, Some(&value)]] {
            let a = pod_annotations(values).unwrap().unwrap();
            assert_eq!(
                annotation_rate(&a, INGRESS_ANNOTATION).unwrap(),
                Some(5_000_000)
            );
        }
        assert_eq!(pod_annotations([None, None]).unwrap(), None);
    }

    #[test]
    fn a_bad_annotation_names_itself_and_its_value() {
        let a = ann(json!({EGRESS_ANNOTATION: "10 megabits"}));
        let e = resolve(None, Some(&a), Bandwidth::default()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(
            e.msg.contains(EGRESS_ANNOTATION) && e.msg.contains("10 megabits"),
            "{}",
            e.msg
        );
        let a = ann(json!({INGRESS_ANNOTATION: 5}));
        assert!(resolve(None, Some(&a), Bandwidth::default()).is_err());
        for spaced in [" 10M", "10M ", "\t10M", "10M\n"] {
            let a = ann(json!({INGRESS_ANNOTATION: spaced}));
            let e = resolve(None, Some(&a), Bandwidth::default()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidConfig, "{spaced:?}");
        }
    }
}
