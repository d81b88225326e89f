//! `natra inspect` and `natra stats`: what the dataplane reads back
//! (dataplane::view), formatted for the operator, as JSON or for Prometheus.
use std::path::Path;

use crate::dataplane::shared::DataplaneView;
use crate::dataplane::view::{AttachmentView, DirectionView};
use crate::dataplane::Direction;
use crate::error::Result;
use crate::units;

/// Every attachment under the pin root.
pub fn inspect_all(root: &Path) -> Result<Vec<AttachmentView>> {
    crate::dataplane::list_attachments(root)
}

pub fn direction_label(d: Direction) -> &'static str {
    d.program_name()
}

/// `natra inspect --json`.
pub fn json(attachments: &[AttachmentView]) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(attachments).expect("JSON")
    )
}

/// A label value in the text exposition format: `\`, `"` and newlines escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `namespace/name ` of the Pod, or nothing where the runtime gave no name.
fn pod_prefix(a: &AttachmentView) -> String {
    match &a.pod {
        Some(pod) if !pod.name.is_empty() => format!("{}/{} ", pod.namespace, pod.name),
        _ => String::new(),
    }
}

/// Each direction with its counters, as (label, counters by field).
fn counters(
    a: &AttachmentView,
) -> impl Iterator<Item = (&'static str, &serde_json::Map<String, serde_json::Value>)> {
    a.directions
        .iter()
        .filter_map(|(d, e): (Direction, &DirectionView)| {
            Some((direction_label(d), e.counters.as_object()?))
        })
}

/// `natra stats --prometheus`: node_exporter textfile-collector format.
pub fn prometheus(attachments: &[AttachmentView]) -> String {
    let mut out = String::new();
    for (metric, suffix, help) in [
        (
            "natra_packets_total",
            "_packets",
            "Packets seen by natra, by verdict.",
        ),
        (
            "natra_bytes_total",
            "_bytes",
            "Wire bytes seen by natra, by verdict.",
        ),
    ] {
        out.push_str(&format!(
            "# HELP {metric} {help}\n# TYPE {metric} counter\n"
        ));
        for a in attachments {
            let (namespace, pod) = a
                .pod
                .as_ref()
                .map_or(("", ""), |p| (p.namespace.as_str(), p.name.as_str()));
            for (dir, counters) in counters(a) {
                for (field, value) in counters {
                    let Some(verdict) = field.strip_suffix(suffix) else {
                        continue;
                    };
                    out.push_str(&format!(
                        "{metric}{{namespace=\"{}\",pod=\"{}\",container_id=\"{}\",ifname=\"{}\",direction=\"{dir}\",verdict=\"{verdict}\"}} {}\n",
                        label_value(namespace),
                        label_value(pod),
                        label_value(&a.container_id),
                        label_value(&a.ifname),
                        value
                    ));
                }
            }
        }
    }
    out
}

/// `natra stats`: one line per Pod interface and direction.
pub fn stats_table(attachments: &[AttachmentView]) -> String {
    let mut out = String::new();
    for a in attachments {
        for (dir, counters) in counters(a) {
            let fields: Vec<String> = counters
                .iter()
                .filter(|(k, v)| k.ends_with("_packets") && v.as_u64() != Some(0))
                .map(|(k, v)| format!("{}={v}", k.trim_end_matches("_packets")))
                .collect();
            out.push_str(&format!(
                "{}{}:{} {dir}: {}\n",
                pod_prefix(a),
                a.container_id,
                a.ifname,
                if fields.is_empty() {
                    "no packets".to_string()
                } else {
                    fields.join(" ")
                }
            ));
        }
    }
    out
}

/// `natra inspect` without --json: a short human summary.
pub fn inspect_text(attachments: &[AttachmentView], dataplanes: &[DataplaneView]) -> String {
    let mut out = String::new();
    for d in dataplanes {
        out.push_str(&format!(
            "dataplane {}{}: {} of {} slots held, programs {}\n",
            d.layout,
            if d.current {
                " (this natra's layout)"
            } else {
                ""
            },
            d.slots_used,
            d.slots,
            d.programs.join(" ")
        ));
    }
    for a in attachments {
        let (mode, flags) = match &a.attachment {
            Some(r) if r.flags.is_empty() => (r.mode.as_str(), "none".to_owned()),
            Some(r) => (r.mode.as_str(), r.flags.join(",")),
            None => ("unrecorded", "none".to_owned()),
        };
        let place = match &a.attachment {
            Some(r) if r.dataplane == "private" => "private dataplane".to_owned(),
            Some(r) => format!("slot {} gen {} of {}", r.slot, r.generation, r.dataplane),
            None => "no record".to_owned(),
        };
        out.push_str(&format!(
            "{}{} {}  mode {mode} flags {flags}  {place}  (pins {}, BPF memlock {})\n",
            pod_prefix(a),
            a.container_id,
            a.ifname,
            a.pin_dir.display(),
            units::bytes(a.bpf_memlock_bytes)
        ));
        for (d, e) in a.directions.iter() {
            let dir = direction_label(d);
            let Some(limit) = e.limit else {
                out.push_str(&format!("  {dir}: not limited\n"));
                continue;
            };
            let device = match (e.side, &e.device) {
                (Some("pod"), Some(dev)) => format!("the Pod's {dev}"),
                (_, Some(dev)) => dev.clone(),
                (_, None) => "an unknown device".to_owned(),
            };
            let ifindex = e.ifindex.map_or_else(|| "?".to_owned(), |i| i.to_string());
            out.push_str(&format!(
                "  {dir}: {} on {device} (ifindex {ifindex}), rate {}, burst {}\n",
                e.attach.as_deref().unwrap_or("not attached"),
                units::rate(limit.rate_bytes_per_sec),
                units::bytes(limit.burst_bytes),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::dataplane::modes::PodRef;
    use serde_json::json;

    fn attachment(pod: Option<PodRef>) -> AttachmentView {
        let mut a = AttachmentView {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            pod,
            ..AttachmentView::default()
        };
        a.directions.pod_egress.counters = json!({"dropped_packets": 7, "dropped_bytes": 700});
        a
    }

    fn pod(namespace: &str, name: &str) -> Option<PodRef> {
        Some(PodRef {
            namespace: namespace.into(),
            name: name.into(),
            uid: "u".into(),
        })
    }

    #[test]
    fn series_carry_the_pods_namespace_and_name_escaped() {
        let prom = prometheus(&[attachment(pod("team-a", "we\"b\\0\n"))]);
        let line = prom
            .lines()
            .find(|l| l.starts_with("natra_packets_total{"))
            .unwrap();
        assert_eq!(
            line,
            r#"natra_packets_total{namespace="team-a",pod="we\"b\\0\n",container_id="c1",ifname="eth0",direction="pod_egress",verdict="dropped"} 7"#
        );
        assert!(stats_table(&[attachment(pod("team-a", "web"))])
            .starts_with("team-a/web c1:eth0 pod_egress: dropped=7"));
    }

    #[test]
    fn without_a_pod_name_the_labels_are_empty_and_text_shows_the_container() {
        let prom = prometheus(&[attachment(None)]);
        assert!(
            prom.contains(r#"{namespace="",pod="",container_id="c1""#),
            "{prom}"
        );
        assert!(stats_table(&[attachment(None)]).starts_with("c1:eth0 pod_egress"));
    }
}
