//! The node's metrics in the Prometheus text format, built on each scrape
//! from what the kernel holds (`natra inspect`'s view of every attachment)
//! and the agent's own counters.
//!
//! Labels: `namespace`, `pod` (from the runtime's CNI_ARGS at ADD),
//! `container_id`, `interface`, `direction` (`pod_ingress` = into the Pod).
//! The `verdict` label of `natra_packets_total` / `natra_bytes_total`
//! partitions every packet the dataplane handled into `passed_mouse`,
//! `passed_heavy` and `dropped`, so a `sum()` counts each packet once; paced
//! and CE-marked packets are heavy packets that passed, counted apart.
use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};
use serde_json::Value;

use crate::dataplane::shared::DataplaneView;

/// The agent's own counters, cumulative since it started.
#[derive(Debug, Default, Clone)]
pub struct AgentCounters {
    /// natra's conflist rewritten to follow the main CNI's.
    pub rechains: u64,
    /// Attachments found broken and restored.
    pub repairs: u64,
    /// Failures, by what failed (`rechain`, `inspect`, …).
    pub errors: Vec<(String, u64)>,
}

const LABELS: [&str; 5] = ["namespace", "pod", "container_id", "interface", "direction"];

fn counter(reg: &Registry, name: &str, help: &str, extra: &[&str]) -> IntCounterVec {
    let labels: Vec<&str> = LABELS.iter().chain(extra).copied().collect();
    let c = IntCounterVec::new(Opts::new(name, help), &labels).expect("valid metric");
    reg.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(reg: &Registry, name: &str, help: &str) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), &LABELS).expect("valid metric");
    reg.register(Box::new(g.clone())).expect("unique metric");
    g
}

/// The text exposition of `attachments` (as `natra inspect --json` lists
/// them), the node's shared `dataplanes` and `agent`.
pub fn render(
    attachments: &[Value],
    dataplanes: &[DataplaneView],
    agent: &AgentCounters,
) -> String {
    let reg = Registry::new();
    let packets = counter(
        &reg,
        "natra_packets_total",
        "Packets the dataplane handled, by verdict; the verdicts partition the total.",
        &["verdict"],
    );
    let bytes = counter(
        &reg,
        "natra_bytes_total",
        "Wire bytes the dataplane handled, by verdict; the verdicts partition the total.",
        &["verdict"],
    );
    let paced = counter(
        &reg,
        "natra_paced_packets_total",
        "Packets (heavy, or mice below their floor) that passed with an EDT departure time \
         in the future.",
        &[],
    );
    let ce = counter(
        &reg,
        "natra_ce_marked_packets_total",
        "Heavy ECN-capable packets that passed CE-marked.",
        &[],
    );
    let giveups = counter(
        &reg,
        "natra_cas_giveups_total",
        "Charges whose every compare-and-swap on the bucket's level lost to other CPUs \
         charging the same direction; each was committed with an atomic add and decided again \
         on the level it met (a packet that no longer fit is in \
         natra_packets_total{verdict=\"dropped\"}).",
        &[],
    );
    let malformed = counter(
        &reg,
        "natra_malformed_packets_total",
        "Packets with truncated IP headers (charged, never parsed past their end).",
        &[],
    );
    let rate = gauge(
        &reg,
        "natra_rate_bytes_per_second",
        "Configured rate of a limited direction, bytes per second.",
    );
    let burst = gauge(
        &reg,
        "natra_burst_bytes",
        "Configured bucket depth of a limited direction, bytes.",
    );
    for a in attachments {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let (ns, pod) = (text(&a["pod"]["namespace"]), text(&a["pod"]["name"]));
        let (id, ifname) = (text(&a["containerId"]), text(&a["ifname"]));
        for (dir, entry) in a["directions"].as_object().into_iter().flatten() {
            let labels = [ns.as_str(), pod.as_str(), id.as_str(), ifname.as_str(), dir];
            let cfg = &entry["config"];
            let Some(r) = cfg["rate_bytes_per_sec"].as_u64().filter(|&r| r > 0) else {
                continue;
            };
            rate.with_label_values(&labels).set(r as f64);
            burst
                .with_label_values(&labels)
                .set(cfg["burst_bytes"].as_u64().unwrap_or(0) as f64);
            let c = &entry["counters"];
            let n = |field: &str| c[field].as_u64().unwrap_or(0);
            for (verdict, p, b) in [
                ("passed_mouse", "passed_mouse_packets", "passed_mouse_bytes"),
                ("passed_heavy", "passed_heavy_packets", "passed_heavy_bytes"),
                ("dropped", "dropped_packets", "dropped_bytes"),
            ] {
                let with = [
                    labels[0], labels[1], labels[2], labels[3], labels[4], verdict,
                ];
                packets.with_label_values(&with).inc_by(n(p));
                bytes.with_label_values(&with).inc_by(n(b));
            }
            paced.with_label_values(&labels).inc_by(n("paced_packets"));
            ce.with_label_values(&labels).inc_by(n("ce_marked_packets"));
            giveups
                .with_label_values(&labels)
                .inc_by(entry["bucket"]["cas_giveups"].as_u64().unwrap_or(0));
            malformed
                .with_label_values(&labels)
                .inc_by(n("malformed_packets"));
        }
    }
    let slots = GaugeVec::new(
        Opts::new(
            "natra_dataplane_slots",
            "Slots of a shared dataplane (one per limited Pod interface), held or in all; \
             with none free, ADD falls back to a private load per Pod.",
        ),
        &["layout", "state"],
    )
    .expect("valid metric");
    reg.register(Box::new(slots.clone()))
        .expect("unique metric");
    for d in dataplanes {
        let layout = d.layout.as_str();
        slots
            .with_label_values(&[layout, "held"])
            .set(d.slots_used as f64);
        slots
            .with_label_values(&[layout, "total"])
            .set(f64::from(d.slots));
    }
    let agent_counter = |name: &str, help: &str, value: u64| {
        let c = prometheus::IntCounter::new(name, help).expect("valid metric");
        c.inc_by(value);
        reg.register(Box::new(c)).expect("unique metric");
    };
    agent_counter(
        "natra_agent_rechains_total",
        "Times the agent rewrote natra's conflist to follow the main CNI's.",
        agent.rechains,
    );
    agent_counter(
        "natra_agent_repairs_total",
        "Attachments the agent found broken and restored.",
        agent.repairs,
    );
    let errors = IntCounterVec::new(
        Opts::new(
            "natra_agent_errors_total",
            "Failures of the agent, by what failed.",
        ),
        &["what"],
    )
    .expect("valid metric");
    reg.register(Box::new(errors.clone()))
        .expect("unique metric");
    for (what, n) in &agent.errors {
        errors.with_label_values(&[what.as_str()]).inc_by(*n);
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&reg.gather(), &mut out)
        .expect("text encoding into memory");
    String::from_utf8(out).expect("the text format is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attachment() -> Value {
        json!({"containerId": "c1", "ifname": "eth0",
               "pod": {"namespace": "team-a", "name": "we\"b", "uid": "u"},
               "directions": {
                 "pod_egress": {"config": {"rate_bytes_per_sec": 2_500_000, "burst_bytes": 1_250_000},
                   "counters": {"passed_packets": 10, "passed_mouse_packets": 4,
                                "passed_heavy_packets": 6, "dropped_packets": 3,
                                "passed_mouse_bytes": 400, "passed_heavy_bytes": 6000,
                                "dropped_bytes": 4500, "paced_packets": 2},
                   "bucket": {"level": 0, "cas_giveups": 1}},
                 "pod_ingress": {"config": {"rate_bytes_per_sec": 0}}}})
    }

    #[test]
    fn verdicts_partition_the_packets_and_labels_name_the_pod() {
        let dp = DataplaneView {
            layout: "00ab".into(),
            current: true,
            programs: vec![],
            slots_used: 3,
            slots: 512,
        };
        let text = render(&[attachment()], &[dp], &AgentCounters::default());
        assert!(
            text.contains("natra_dataplane_slots{layout=\"00ab\",state=\"held\"} 3"),
            "{text}"
        );
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("natra_packets_total{"))
            .collect();
        assert_eq!(series.len(), 3, "{text}");
        let sum: u64 = series
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(sum, 4 + 6 + 3, "passed (10) + dropped (3), each once");
        assert!(
            text.contains(r#"natra_packets_total{container_id="c1",direction="pod_egress",interface="eth0",namespace="team-a",pod="we\"b",verdict="dropped"} 3"#),
            "{text}"
        );
        assert!(text.contains("natra_rate_bytes_per_second{"), "{text}");
        assert!(
            text.contains(r#"natra_cas_giveups_total{container_id="c1",direction="pod_egress",interface="eth0",namespace="team-a",pod="we\"b"} 1"#),
            "{text}"
        );
        assert!(
            !text.contains(r#"direction="pod_ingress""#),
            "unlimited direction: {text}"
        );
    }
}
