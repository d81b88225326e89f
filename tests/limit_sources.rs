//! Every source of limits through libcni, and their precedence per direction:
//! runtimeConfig.bandwidth > the Pod's annotations (containerd's
//! `io.kubernetes.cri.pod-annotations` capability) > static netconf fields.
//! Asserted on what the kernel holds: the pinned config map.
mod common;

use common::pod::{bandwidth, TestNet};
use serde_json::{json, Value};

/// natra with both capabilities and a node-wide static default of 8 Mbit/s
/// ingress / 4 Mbit/s egress.
fn natra_entry() -> Value {
    json!({
        "type": "natra",
        "capabilities": {"bandwidth": true, "io.kubernetes.cri.pod-annotations": true},
        "ingressRate": 8_000_000, "ingressBurst": 800_000,
        "egressRate": 4_000_000, "egressBurst": 400_000
    })
}

/// Rates in the kernel (bytes/s), ingress then egress; 0 = not limited:
/// the Pod interface's own slot of the config map.
fn kernel_rates(pin_dir: &std::path::Path) -> (u64, u64) {
    let entries = common::kernel::slot_dump(pin_dir, "config");
    let rate = |dir: u64| {
        entries
            .iter()
            .find(|(d, _)| *d == dir)
            .map(|(_, value)| value["rate_bytes_per_sec"].as_u64().unwrap())
            .unwrap_or(0)
    };
    (rate(0), rate(1))
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn each_source_and_the_precedence_between_them() {
    common::require_root();
    let net = TestNet::with_natra("sources", 171, natra_entry());

    // Static fields alone: the node default.
    let p = net.pod("static");
    p.add(None).ok();
    assert_eq!(kernel_rates(&p.pin_dir()), (1_000_000, 500_000));

    // Annotations (Kubernetes quantities) beat the static default.
    let p = net.pod("ann");
    p.add_with_annotations(
        None,
        &json!({"kubernetes.io/ingress-bandwidth": "20M", "kubernetes.io/egress-bandwidth": "1Mi"}),
    )
    .ok();
    assert_eq!(kernel_rates(&p.pin_dir()), (2_500_000, 131_072));

    // runtimeConfig.bandwidth beats annotations, per direction: egress is
    // only annotated, so the annotation holds there.
    let p = net.pod("rt");
    p.add_with_annotations(
        Some(&bandwidth(Some(40_000_000), None)),
        &json!({"kubernetes.io/ingress-bandwidth": "20M", "kubernetes.io/egress-bandwidth": "16M"}),
    )
    .ok();
    assert_eq!(kernel_rates(&p.pin_dir()), (5_000_000, 2_000_000));
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn invalid_annotations_name_the_annotation_and_value() {
    common::require_root();
    let net = TestNet::with_natra("sources-bad", 172, natra_entry());
    for (value, what) in [("10 megabits", "grammar"), ("5", "below 1 kbit/s")] {
        let p = net.pod(if what == "grammar" { "g" } else { "low" });
        let err = p
            .add_with_annotations(None, &json!({"kubernetes.io/egress-bandwidth": value}))
            .err();
        assert_eq!(err.code, 7, "{what}: {}", err.msg);
        assert!(
            err.msg.contains("egress"),
            "{what}: the message names the field: {}",
            err.msg
        );
        assert_eq!(p.pins(), None, "{what}: nothing pinned");
    }
}
