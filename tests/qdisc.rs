//! Root-qdisc management (natra::qdisc) and the legacy clsact + cls_bpf
//! attach path (natra::dataplane::clsact), asserted against what the kernel
//! shows through iproute2 (`tc -j`), never against natra's own view alone.
//!
//! Every test builds its own veth pair: the host end in the host netns, the
//! Pod end (eth0) in a fresh netns, both named with the test's tag and the
//! pid, and removed by a Drop guard even when an assertion fails.
mod common;

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::Command;

use libbpf_rs::Program;
use natra::dataplane::clsact::{self, Hook, HANDLE, PRIORITY};
use natra::error::ErrorKind;
use natra::netns::run_in_netns;
use natra::qdisc::{self, FqOutcome, RootOutcome};
use serde_json::Value;

use common::pod::{run, run_ok};

/// A veth pair: `host` in the host netns, `eth0` in the netns `ns`.
struct Veth {
    ns: String,
    ns_path: PathBuf,
    host: String,
    host_ifindex: u32,
}

impl Veth {
    /// `tag`: up to 3 of `[a-z0-9]`, unique among this file's tests.
    fn new(tag: &str) -> Veth {
        assert!(tag.len() <= 3, "tag {tag:?} would overflow IFNAMSIZ");
        let pid = std::process::id();
        let ns = format!("natra-qd-{tag}-{pid}");
        let host = format!("nq{tag}{pid}");
        // Leftovers of an earlier run with the same pid.
        let _ = run(Command::new("ip").args(["link", "del", &host]));
        let _ = run(Command::new("ip").args(["netns", "del", &ns]));
        run_ok(Command::new("ip").args(["netns", "add", &ns]));
        // The guard exists from here on, so a failure below still cleans up.
        let mut veth = Veth {
            ns_path: PathBuf::from("/run/netns").join(&ns),
            ns,
            host,
            host_ifindex: 0,
        };
        run_ok(Command::new("ip").args([
            "link", "add", &veth.host, "type", "veth", "peer", "name", "eth0", "netns", &veth.ns,
        ]));
        run_ok(Command::new("ip").args(["link", "set", &veth.host, "up"]));
        run_ok(Command::new("ip").args(["-n", &veth.ns, "link", "set", "eth0", "up"]));
        veth.host_ifindex = nix::net::if_::if_nametoindex(veth.host.as_str())
            .unwrap_or_else(|e| panic!("no ifindex for {}: {e}", veth.host));
        veth
    }

    /// `tc -j ARGS` in the host netns.
    fn tc(&self, args: &[&str]) -> Value {
        tc_json(Command::new("tc").arg("-j").args(args))
    }

    /// `tc -j ARGS` inside the Pod netns.
    fn tc_in_pod(&self, args: &[&str]) -> Value {
        tc_json(
            Command::new("ip")
                .args(["netns", "exec", &self.ns, "tc", "-j"])
                .args(args),
        )
    }

    fn qdiscs(&self) -> Vec<Value> {
        as_list(self.tc(&["qdisc", "show", "dev", &self.host]))
    }

    /// The qdiscs without their counters: what "nothing changed" compares.
    fn qdisc_tree(&self) -> Vec<(Value, Value, Value, Value)> {
        self.qdiscs()
            .into_iter()
            .map(|q| {
                (
                    q["kind"].clone(),
                    q["handle"].clone(),
                    q["root"].clone(),
                    q["parent"].clone(),
                )
            })
            .collect()
    }

    /// The kind of the root qdisc as tc shows it.
    fn tc_root_kind(&self) -> Option<String> {
        root_kind(&self.qdiscs())
    }

    fn tc_has_clsact(&self) -> bool {
        self.qdiscs().iter().any(|q| q["kind"] == "clsact")
    }

    fn filters(&self, hook: Hook) -> Vec<Value> {
        as_list(self.tc(&["filter", "show", "dev", &self.host, hook_arg(hook)]))
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting the netns takes the pair along; the explicit delete
        // covers a host end that somehow lost its peer.
        let _ = run(Command::new("ip").args(["link", "del", &self.host]));
        let out = run(Command::new("ip").args(["netns", "del", &self.ns]));
        if !out.status.success() {
            eprintln!(
                "cleanup: ip netns del {} failed: {}",
                self.ns,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn tc_json(cmd: &mut Command) -> Value {
    let out = run_ok(cmd);
    if out.trim().is_empty() {
        return Value::Array(Vec::new());
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("tc printed no JSON ({e}): {out}"))
}

fn as_list(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => panic!("tc printed {other}, not a list"),
    }
}

fn root_kind(qdiscs: &[Value]) -> Option<String> {
    qdiscs
        .iter()
        .find(|q| q["root"] == true)
        .map(|q| q["kind"].as_str().expect("qdisc without kind").to_owned())
}

fn hook_arg(hook: Hook) -> &'static str {
    match hook {
        Hook::Ingress => "ingress",
        Hook::Egress => "egress",
    }
}

/// The cls_bpf filters (not their classifier heads) in a `tc -j filter
/// show` listing.
fn bpf_filters(filters: &[Value]) -> Vec<&Value> {
    filters
        .iter()
        .filter(|f| f["kind"] == "bpf" && f["options"]["handle"].is_string())
        .collect()
}

/// Asserts the listing holds natra's filter, alone, running `prog_id` in
/// direct-action mode at natra's handle and priority.
fn assert_natra_filter(filters: &[Value], prog_id: u32) {
    let bpf = bpf_filters(filters);
    assert_eq!(bpf.len(), 1, "expected natra's filter alone: {filters:#?}");
    let f = bpf[0];
    assert_eq!(f["pref"], PRIORITY, "{f:#}");
    assert_eq!(f["protocol"], "all", "{f:#}");
    assert_eq!(f["options"]["handle"], format!("{HANDLE:#x}"), "{f:#}");
    assert_eq!(f["options"]["direct-action"], true, "{f:#}");
    assert_eq!(f["options"]["prog"]["id"], prog_id, "{f:#}");
}

fn prog_id(prog: &Program<'_>) -> u32 {
    Program::id_from_fd(prog.as_fd()).expect("prog id of a loaded program")
}

#[test]
#[ignore = "needs root: netns (run via make test)"]
fn root_qdisc_kind_is_what_the_kernel_shows() {
    common::require_root();
    let veth = Veth::new("rk");
    let tc_kind = veth.tc_root_kind();
    assert_eq!(tc_kind.as_deref(), Some("noqueue"), "veth's default root");
    assert_eq!(qdisc::root_qdisc_kind(veth.host_ifindex).unwrap(), tc_kind);

    // Inside the Pod netns, for its end.
    let pod_tc = root_kind(&as_list(veth.tc_in_pod(&["qdisc", "show", "dev", "eth0"])));
    let pod_ours = run_in_netns(&veth.ns_path, || {
        let index = natra::netlink::link_by_name("eth0")?.index;
        qdisc::root_qdisc_kind(index)
    })
    .unwrap();
    assert_eq!(pod_ours, pod_tc);

    // Once down, the device keeps its root as far as the dump shows.
    run_ok(Command::new("ip").args(["link", "set", &veth.host, "down"]));
    assert_eq!(
        qdisc::root_qdisc_kind(veth.host_ifindex).unwrap(),
        veth.tc_root_kind()
    );

    // A device never brought up has only the invisible builtin noop: tc
    // shows no root qdisc, and natra says None.
    run_ok(Command::new("ip").args([
        "-n", &veth.ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1",
    ]));
    let never_up = as_list(veth.tc_in_pod(&["qdisc", "show", "dev", "d0"]));
    assert_eq!(root_kind(&never_up), None, "{never_up:?}");
    let ours = run_in_netns(&veth.ns_path, || {
        qdisc::root_qdisc_kind(natra::netlink::link_by_name("d0")?.index)
    })
    .unwrap();
    assert_eq!(ours, None);
}

#[test]
#[ignore = "needs root: netns (run via make test)"]
fn install_fq_root_without_fq_fails_and_leaves_nothing() {
    common::require_root();
    let veth = Veth::new("fq");
    let before = veth.qdisc_tree();

    match qdisc::install_fq_root(veth.host_ifindex) {
        Err(e) => {
            eprintln!("install_fq_root: {e}");
            assert_eq!(e.kind, ErrorKind::Dataplane, "{e}");
            assert!(e.msg.contains("fq"), "message must name fq: {e}");
            assert!(e.msg.contains("unavailable"), "{e}");
            assert!(e.details.contains("ENOENT"), "errno in details: {e}");
            assert!(e.details.contains("kernel:"), "extack in details: {e}");
            assert_eq!(veth.qdisc_tree(), before, "a failed attempt left a qdisc");
            // The kernel itself agrees fq is missing, so this is not natra's
            // request being wrong.
            let out =
                run(Command::new("tc").args(["qdisc", "add", "dev", &veth.host, "root", "fq"]));
            assert!(
                !out.status.success(),
                "tc could add fq where natra could not"
            );
            assert_eq!(veth.qdisc_tree(), before);
        }
        // A kernel with sch_fq: the other half of the contract.
        Ok(outcome) => {
            assert_eq!(outcome, FqOutcome::Installed);
            assert_eq!(veth.tc_root_kind().as_deref(), Some("fq"));
            // natra's own fq (its handle) stays natra's on a retry.
            assert_eq!(
                qdisc::install_fq_root(veth.host_ifindex).unwrap(),
                FqOutcome::Installed
            );
            qdisc::remove_root_qdisc(veth.host_ifindex, "fq").unwrap();
            // Someone else's fq is reported as such.
            run_ok(Command::new("tc").args([
                "qdisc", "add", "dev", &veth.host, "root", "handle", "7:", "fq",
            ]));
            assert_eq!(
                qdisc::install_fq_root(veth.host_ifindex).unwrap(),
                FqOutcome::AlreadyPresent
            );
            qdisc::remove_root_qdisc(veth.host_ifindex, "fq").unwrap();
            assert_eq!(veth.tc_root_kind().as_deref(), Some("noqueue"));
        }
    }
}

#[test]
#[ignore = "needs root: netns (run via make test)"]
fn install_fq_root_never_overrides_a_configured_root() {
    common::require_root();
    let veth = Veth::new("fx");
    run_ok(Command::new("tc").args([
        "qdisc", "add", "dev", &veth.host, "root", "handle", "1:", "htb",
    ]));
    let before = veth.qdisc_tree();
    let e = qdisc::install_fq_root(veth.host_ifindex).unwrap_err();
    eprintln!("install_fq_root over htb: {e}");
    assert_eq!(e.kind, ErrorKind::Dataplane);
    assert!(e.msg.contains("fq"), "{e}");
    // Without sch_fq the kernel looks the kind up first (ENOENT); with it,
    // NLM_F_EXCL refuses to override htb (EEXIST).
    assert!(
        e.details.contains("ENOENT") || e.details.contains("EEXIST"),
        "{e}"
    );
    assert_eq!(veth.qdisc_tree(), before, "the operator's htb was touched");
}

/// The install logic natra uses for fq, with a kind this kernel has.
#[test]
#[ignore = "needs root: netns (run via make test)"]
fn install_root_qdisc_replaces_only_a_default_root() {
    common::require_root();
    let veth = Veth::new("ir");
    let ifindex = veth.host_ifindex;
    assert_eq!(veth.tc_root_kind().as_deref(), Some("noqueue"));

    let first = qdisc::install_root_qdisc(ifindex, "pfifo").unwrap();
    assert_eq!(first, RootOutcome::Installed);
    assert_eq!(veth.tc_root_kind().as_deref(), Some("pfifo"));
    let root = veth
        .qdiscs()
        .into_iter()
        .find(|q| q["root"] == true)
        .unwrap();
    assert_eq!(root["handle"], "4e54:", "natra's handle: {root}");
    // natra's own root (its handle) stays natra's on a retry.
    let again = qdisc::install_root_qdisc(ifindex, "pfifo").unwrap();
    assert_eq!(again, RootOutcome::Installed);
    let roots = veth
        .qdiscs()
        .into_iter()
        .filter(|q| q["root"] == true)
        .count();
    assert_eq!(roots, 1);
    qdisc::remove_root_qdisc(ifindex, "pfifo").unwrap();
    assert_eq!(veth.tc_root_kind().as_deref(), Some("noqueue"));

    // The same kind under another handle is someone else's.
    run_ok(Command::new("tc").args([
        "qdisc", "add", "dev", &veth.host, "root", "handle", "7:", "pfifo",
    ]));
    let foreign = qdisc::install_root_qdisc(ifindex, "pfifo").unwrap();
    assert_eq!(foreign, RootOutcome::AlreadyPresent);
    let root = veth
        .qdiscs()
        .into_iter()
        .find(|q| q["root"] == true)
        .unwrap();
    assert_eq!(root["handle"], "7:", "{root}");

    // A configured root of another kind is never overridden (where a plain
    // `tc qdisc add root pfifo`, handle 0 with NLM_F_EXCL, would replace it).
    run_ok(Command::new("tc").args([
        "qdisc", "replace", "dev", &veth.host, "root", "handle", "1:", "htb",
    ]));
    assert_eq!(veth.tc_root_kind().as_deref(), Some("htb"));
    let before = veth.qdisc_tree();
    let e = qdisc::install_root_qdisc(ifindex, "pfifo").unwrap_err();
    eprintln!("install_root_qdisc(pfifo) over htb: {e}");
    assert_eq!(e.kind, ErrorKind::Dataplane);
    assert!(e.msg.contains("pfifo"), "{e}");
    assert!(e.details.contains("EEXIST"), "{e}");
    assert_eq!(veth.qdisc_tree(), before, "the operator's htb was touched");
}

#[test]
#[ignore = "needs root: netns (run via make test)"]
fn remove_root_qdisc_removes_only_the_matching_kind() {
    common::require_root();
    let veth = Veth::new("rm");
    run_ok(Command::new("tc").args([
        "qdisc", "add", "dev", &veth.host, "root", "handle", "1:", "htb",
    ]));
    assert_eq!(veth.tc_root_kind().as_deref(), Some("htb"));
    assert_eq!(
        qdisc::root_qdisc_kind(veth.host_ifindex)
            .unwrap()
            .as_deref(),
        Some("htb")
    );

    qdisc::remove_root_qdisc(veth.host_ifindex, "fq").unwrap();
    assert_eq!(
        veth.tc_root_kind().as_deref(),
        Some("htb"),
        "non-matching kind removed"
    );

    qdisc::remove_root_qdisc(veth.host_ifindex, "htb").unwrap();
    // The kernel puts the device's default root back.
    assert_eq!(veth.tc_root_kind().as_deref(), Some("noqueue"));

    // Absent (a default root with handle 0, or another kind) is Ok.
    qdisc::remove_root_qdisc(veth.host_ifindex, "htb").unwrap();
    qdisc::remove_root_qdisc(veth.host_ifindex, "noqueue").unwrap();
    assert_eq!(veth.tc_root_kind().as_deref(), Some("noqueue"));

    // tbf too, so the match is on the kind, not on htb.
    run_ok(Command::new("tc").args([
        "qdisc", "add", "dev", &veth.host, "root", "tbf", "rate", "1mbit", "burst", "32k",
        "latency", "50ms",
    ]));
    qdisc::remove_root_qdisc(veth.host_ifindex, "htb").unwrap();
    assert_eq!(veth.tc_root_kind().as_deref(), Some("tbf"));
    qdisc::remove_root_qdisc(veth.host_ifindex, "tbf").unwrap();
    assert_eq!(veth.tc_root_kind().as_deref(), Some("noqueue"));
}

#[test]
#[ignore = "needs root: netns (run via make test)"]
fn has_and_remove_clsact() {
    common::require_root();
    let veth = Veth::new("ca");
    let ifindex = veth.host_ifindex;
    assert!(!qdisc::has_clsact(ifindex).unwrap());
    qdisc::remove_clsact(ifindex).unwrap(); // absent is Ok

    run_ok(Command::new("tc").args(["qdisc", "add", "dev", &veth.host, "clsact"]));
    assert!(veth.tc_has_clsact());
    assert!(qdisc::has_clsact(ifindex).unwrap());
    qdisc::remove_clsact(ifindex).unwrap();
    assert!(!veth.tc_has_clsact());
    assert!(!qdisc::has_clsact(ifindex).unwrap());

    // An ingress qdisc holds the same slot but is not clsact: left alone,
    // and natra refuses to attach there.
    run_ok(Command::new("tc").args(["qdisc", "add", "dev", &veth.host, "ingress"]));
    assert!(!qdisc::has_clsact(ifindex).unwrap());
    qdisc::remove_clsact(ifindex).unwrap();
    assert!(veth.qdiscs().iter().any(|q| q["kind"] == "ingress"));
    let skel = common::skel::loaded();
    let e = clsact::attach(skel.progs.pod_egress.as_fd(), ifindex, Hook::Ingress).unwrap_err();
    assert!(e.msg.contains("ingress qdisc"), "{e}");
    assert!(veth.qdiscs().iter().any(|q| q["kind"] == "ingress"));
}

#[test]
#[ignore = "needs root: netns (run via make test)"]
fn clsact_attach_query_detach_on_the_host_veth() {
    common::require_root();
    let veth = Veth::new("ha");
    let ifindex = veth.host_ifindex;
    let skel = common::skel::loaded();
    let ingress_id = prog_id(&skel.progs.pod_ingress);
    let egress_id = prog_id(&skel.progs.pod_egress);
    assert_eq!(clsact::query(ifindex, Hook::Egress).unwrap(), None);

    // Traffic into the Pod: host veth egress. natra creates the clsact.
    let a = clsact::attach(skel.progs.pod_ingress.as_fd(), ifindex, Hook::Egress).unwrap();
    assert_eq!(a.prog_id, ingress_id);
    assert!(a.created_clsact);
    assert!(veth.tc_has_clsact());
    assert_natra_filter(&veth.filters(Hook::Egress), ingress_id);
    assert_eq!(
        clsact::query(ifindex, Hook::Egress).unwrap(),
        Some(ingress_id)
    );
    assert_eq!(clsact::query(ifindex, Hook::Ingress).unwrap(), None);

    // Traffic out of the Pod: host veth ingress; the clsact exists now.
    let b = clsact::attach(skel.progs.pod_egress.as_fd(), ifindex, Hook::Ingress).unwrap();
    assert_eq!(b.prog_id, egress_id);
    assert!(!b.created_clsact);
    assert_natra_filter(&veth.filters(Hook::Ingress), egress_id);
    assert_eq!(
        clsact::query(ifindex, Hook::Ingress).unwrap(),
        Some(egress_id)
    );
    assert_natra_filter(&veth.filters(Hook::Egress), ingress_id);

    // First detach: natra's egress filter goes, the clsact stays for the
    // ingress one.
    let d = clsact::detach(ifindex, Hook::Egress, true).unwrap();
    assert!(d.filter_removed && !d.clsact_removed, "{d:?}");
    assert!(bpf_filters(&veth.filters(Hook::Egress)).is_empty());
    assert_eq!(clsact::query(ifindex, Hook::Egress).unwrap(), None);
    assert!(veth.tc_has_clsact());
    assert_natra_filter(&veth.filters(Hook::Ingress), egress_id);

    // Last detach: natra created the clsact and it is empty, so it goes.
    let d = clsact::detach(ifindex, Hook::Ingress, true).unwrap();
    assert!(d.filter_removed && d.clsact_removed, "{d:?}");
    assert!(!veth.tc_has_clsact(), "{:?}", veth.qdiscs());
    assert_eq!(clsact::query(ifindex, Hook::Ingress).unwrap(), None);

    // Detaching what is gone is Ok and does nothing.
    let d = clsact::detach(ifindex, Hook::Ingress, true).unwrap();
    assert!(!d.filter_removed && !d.clsact_removed, "{d:?}");
}

#[test]
#[ignore = "needs root: netns (run via make test)"]
fn clsact_attach_inside_the_pod_netns() {
    common::require_root();
    let veth = Veth::new("pa");
    let skel = common::skel::loaded();
    let fd = skel.progs.pod_egress.as_fd();
    let id = prog_id(&skel.progs.pod_egress);

    let (eth0, attached, queried) = run_in_netns(&veth.ns_path, || {
        let eth0 = natra::netlink::link_by_name("eth0")?.index;
        let attached = clsact::attach(fd, eth0, Hook::Egress)?;
        Ok((eth0, attached, clsact::query(eth0, Hook::Egress)?))
    })
    .unwrap();
    assert!(attached.created_clsact);
    assert_eq!(attached.prog_id, id);
    assert_eq!(queried, Some(id));
    let inside = as_list(veth.tc_in_pod(&["filter", "show", "dev", "eth0", "egress"]));
    assert_natra_filter(&inside, id);
    // Nothing on the host end: the work stayed in the Pod's netns.
    assert!(!veth.tc_has_clsact());
    assert_eq!(
        clsact::query(veth.host_ifindex, Hook::Egress).unwrap(),
        None
    );

    let detached =
        run_in_netns(&veth.ns_path, || clsact::detach(eth0, Hook::Egress, true)).unwrap();
    assert!(detached.filter_removed && detached.clsact_removed);
    let inside = as_list(veth.tc_in_pod(&["qdisc", "show", "dev", "eth0"]));
    assert!(
        !inside.iter().any(|q| q["kind"] == "clsact"),
        "clsact left in the Pod: {inside:?}"
    );
}

#[test]
#[ignore = "needs root: netns (run via make test)"]
fn clsact_attach_twice_replaces() {
    common::require_root();
    let veth = Veth::new("tw");
    let ifindex = veth.host_ifindex;
    let skel = common::skel::loaded();
    let ingress_id = prog_id(&skel.progs.pod_ingress);
    let egress_id = prog_id(&skel.progs.pod_egress);

    let first = clsact::attach(skel.progs.pod_ingress.as_fd(), ifindex, Hook::Egress).unwrap();
    let again = clsact::attach(skel.progs.pod_ingress.as_fd(), ifindex, Hook::Egress).unwrap();
    assert!(first.created_clsact && !again.created_clsact);
    assert_natra_filter(&veth.filters(Hook::Egress), ingress_id);

    // Another program at the same hook replaces natra's filter in place.
    let other = clsact::attach(skel.progs.pod_egress.as_fd(), ifindex, Hook::Egress).unwrap();
    assert_eq!(other.prog_id, egress_id);
    assert_natra_filter(&veth.filters(Hook::Egress), egress_id);
    assert_eq!(
        clsact::query(ifindex, Hook::Egress).unwrap(),
        Some(egress_id)
    );

    let d = clsact::detach(ifindex, Hook::Egress, true).unwrap();
    assert!(d.filter_removed && d.clsact_removed, "{d:?}");
    assert!(!veth.tc_has_clsact());
}

#[test]
#[ignore = "needs root: netns (run via make test)"]
fn clsact_detach_spares_foreign_filters_and_foreign_clsact() {
    common::require_root();
    let veth = Veth::new("fo");
    let ifindex = veth.host_ifindex;
    let skel = common::skel::loaded();
    let id = prog_id(&skel.progs.pod_ingress);

    // natra creates the clsact, then someone adds a filter of their own.
    let a = clsact::attach(skel.progs.pod_ingress.as_fd(), ifindex, Hook::Egress).unwrap();
    assert!(a.created_clsact);
    run_ok(Command::new("tc").args([
        "filter", "add", "dev", &veth.host, "ingress", "protocol", "all", "pref", "100", "u32",
        "match", "u32", "0", "0",
    ]));
    let d = clsact::detach(ifindex, Hook::Egress, a.created_clsact).unwrap();
    assert!(d.filter_removed && !d.clsact_removed, "{d:?}");
    assert!(
        veth.tc_has_clsact(),
        "the clsact went with a foreign filter on it"
    );
    let foreign = veth.filters(Hook::Ingress);
    assert!(
        foreign.iter().any(|f| f["kind"] == "u32"),
        "foreign filter lost: {foreign:?}"
    );

    // A clsact natra did not create stays even when natra leaves it empty.
    qdisc::remove_clsact(ifindex).unwrap();
    run_ok(Command::new("tc").args(["qdisc", "add", "dev", &veth.host, "clsact"]));
    let a = clsact::attach(skel.progs.pod_ingress.as_fd(), ifindex, Hook::Egress).unwrap();
    assert!(!a.created_clsact);
    assert_natra_filter(&veth.filters(Hook::Egress), id);
    let d = clsact::detach(ifindex, Hook::Egress, a.created_clsact).unwrap();
    assert!(d.filter_removed && !d.clsact_removed, "{d:?}");
    assert!(veth.tc_has_clsact());
    assert!(veth.filters(Hook::Egress).is_empty());
}
