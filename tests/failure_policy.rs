//! `failurePolicy` through libcni: `ignore` starts the Pod unlimited with a
//! grep-able log line and nothing half-attached; the default refuses it.
mod common;

use common::kernel;
use common::pod::{bandwidth, host_veth, TestNet};
use serde_json::json;

const RATE_BITS: u64 = 20_000_000;

fn natra_entry(policy: Option<&str>) -> serde_json::Value {
    let mut entry = json!({"type": "natra", "capabilities": {"bandwidth": true}});
    if let Some(p) = policy {
        entry["failurePolicy"] = json!(p);
    }
    entry
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn ignore_starts_the_pod_unlimited_with_nothing_left_behind() {
    common::require_root();
    let net = TestNet::with_natra("fp-ignore", 151, natra_entry(Some("ignore")));
    let pod = net.pod("p");
    let bw = bandwidth(Some(RATE_BITS), Some(RATE_BITS));
    // The second link's attach fails: ADD would fail under the default policy.
    let out = pod.add_with_env(Some(&bw), &[("NATRA_FAIL_AFTER_ATTACHES", "1")]);
    assert!(
        out.success,
        "ADD failed under ignore: {}{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stderr.contains("failurePolicy=ignore") && out.stderr.contains("UNLIMITED"),
        "no grep-able line in the log:\n{}",
        out.stderr
    );
    let result = out.json;
    assert!(
        result["ips"].is_array(),
        "the main plugin's result is passed on"
    );
    assert_eq!(pod.pins(), None, "pins left behind");
    let ifindex = kernel::ifindex(&host_veth(&result)).expect("host veth");
    assert!(
        kernel::tcx_link_ids_on(ifindex).is_empty(),
        "a program is still attached to the unlimited Pod's veth"
    );
    net.assert_pin_root_clean();
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn ignore_also_covers_an_invalid_rate() {
    common::require_root();
    let net = TestNet::with_natra("fp-badrate", 152, natra_entry(Some("ignore")));
    let pod = net.pod("p");
    let out = pod.add(Some(&bandwidth(Some(5), None)));
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("UNLIMITED") && out.stderr.contains("ingressRate"));
    assert_eq!(pod.pins(), None);
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn the_default_policy_refuses_the_pod() {
    common::require_root();
    for (test, subnet, policy) in [("fp-default", 153, None), ("fp-fail", 154, Some("fail"))] {
        let net = TestNet::with_natra(test, subnet, natra_entry(policy));
        let pod = net.pod("p");
        let bw = bandwidth(Some(RATE_BITS), Some(RATE_BITS));
        let err = pod
            .add_with_env(Some(&bw), &[("NATRA_FAIL_AFTER_ATTACHES", "1")])
            .err();
        assert_eq!(err.code, 100, "{policy:?}: {}", err.msg);
        assert_eq!(pod.pins(), None);
    }
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn an_unknown_policy_is_refused_naming_it() {
    common::require_root();
    let net = TestNet::with_natra("fp-bad", 155, natra_entry(Some("sometimes")));
    let pod = net.pod("p");
    let err = pod.add(Some(&bandwidth(Some(RATE_BITS), None))).err();
    assert_eq!(err.code, 7);
    assert!(err.msg.contains("sometimes"), "{}", err.msg);
}
