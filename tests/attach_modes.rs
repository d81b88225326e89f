//! Attach modes (`attachMode`) and the EDT probe (`edtPacing`), driven
//! through libcni (`cnitool`) and asserted against what the kernel shows:
//! tcx links read back with libbpf (inside the Pod's netns for the Pod side),
//! clsact filters with `tc -j`, the attachment record with bpftool, and the
//! rate with iperf3.
//!
//! Whether this kernel has sch_fq is probed (`netdev::has_sch_fq`), not
//! assumed, and each EDT-dependent test asserts the matching case. Without
//! fq (this project's rig: tcx, no sch_fq) every mode attaches, `auto` picks
//! tcx-hostside and EDT is off (`edtPacing: on` is refused). With fq, `auto`
//! and the Pod-side modes run EDT under natra's fq on the Pod's eth0, and
//! `auto` picks tcx-podside.
//!
//! The iperf3 runs are serialised (one lock), so that the four mode tests
//! never measure against each other; the rest runs in parallel.
mod common;

use std::path::Path;
use std::process::Command;

use common::iperf::{self, client_command, IperfServer};
use common::kernel::{self, TcxHook};
use common::netdev::has_sch_fq;
use common::pod::{bandwidth, host_veth, pod_ip, run, run_ok, Pod, TestNet};
use natra::dataplane::clsact::{self, Hook, HANDLE, PRIORITY};
use serde_json::{json, Value};

const CAP_BITS: u64 = 20_000_000;
const DURATION_S: u32 = 5;
const OMIT_S: u32 = 1;
const TOLERANCE: f64 = 0.10;

/// A TestNet whose natra entry carries `fields` (e.g. attachMode).
fn net_with(test: &str, subnet: u8, fields: Value) -> TestNet {
    let net = TestNet::new(test, subnet);
    let mut conflist: Value = serde_json::from_slice(&std::fs::read(&net.conf).unwrap()).unwrap();
    let natra = conflist["plugins"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|p| p["type"] == "natra")
        .expect("natra in the conflist");
    for (k, v) in fields.as_object().unwrap() {
        natra[k] = v.clone();
    }
    std::fs::write(&net.conf, serde_json::to_vec_pretty(&conflist).unwrap()).unwrap();
    net
}

/// natra's DEL alone, invoked as libcni would: the veth stays, so whatever
/// natra left on it is still there to see.
fn natra_del(pod: &Pod, fields: &Value) {
    let out = pod.natra_alone("DEL", &pod.natra_conf(fields.clone()), &[]);
    assert!(
        out.status.success(),
        "natra DEL failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn host_ifindex(veth: &str) -> u32 {
    kernel::ifindex(veth).unwrap_or_else(|| panic!("host veth {veth} does not exist"))
}

/// The Pod's eth0 ifindex, read inside its netns.
fn pod_ifindex(pod: &Pod) -> u32 {
    run_ok(pod.exec("cat").arg("/sys/class/net/eth0/ifindex"))
        .trim()
        .parse()
        .unwrap()
}

/// tcx attachments of the Pod's eth0, queried inside its netns.
fn pod_tcx(pod: &Pod, ifindex: u32, hook: TcxHook) -> kernel::TcxAttached {
    natra::netns::run_in_netns(&pod.netns_path, move || {
        Ok(kernel::tcx_attached(ifindex, hook))
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("tcx query of the Pod's eth0 {hook:?}: {e}"))
}

/// `tc -j ARGS`, inside `pod`'s netns when given.
fn tc(pod: Option<&Pod>, args: &[&str]) -> Vec<Value> {
    let out = match pod {
        Some(pod) => run_ok(pod.exec("tc").arg("-j").args(args)),
        None => run_ok(Command::new("tc").arg("-j").args(args)),
    };
    if out.trim().is_empty() {
        return Vec::new();
    }
    match serde_json::from_str(&out) {
        Ok(Value::Array(list)) => list,
        other => panic!("tc {args:?} printed {other:?}: {out}"),
    }
}

fn filters(pod: Option<&Pod>, dev: &str, hook: &str) -> Vec<Value> {
    tc(pod, &["filter", "show", "dev", dev, hook])
}

fn qdiscs(pod: Option<&Pod>, dev: &str) -> Vec<Value> {
    tc(pod, &["qdisc", "show", "dev", dev])
}

fn has_clsact(pod: Option<&Pod>, dev: &str) -> bool {
    qdiscs(pod, dev).iter().any(|q| q["kind"] == "clsact")
}

fn root_kind(pod: Option<&Pod>, dev: &str) -> Option<String> {
    qdiscs(pod, dev)
        .iter()
        .find(|q| q["root"] == true)
        .and_then(|q| q["kind"].as_str().map(str::to_owned))
}

/// The cls_bpf filters (not their classifier heads) of a listing.
fn bpf_filters(list: &[Value]) -> Vec<&Value> {
    list.iter()
        .filter(|f| f["kind"] == "bpf" && f["options"]["handle"].is_string())
        .collect()
}

/// The id of the program pinned at `path`.
fn pinned_prog_id(path: &Path) -> u32 {
    let info = kernel::bpftool_json(&["prog", "show", "pinned", path.to_str().unwrap()]);
    info["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no id for {}: {info}", path.display())) as u32
}

/// The attachment record: (mode name, flags as their bit values). bpftool
/// prints an enum-typed field by name when it matches one enumerator, as a
/// number otherwise.
fn record(pod: &Pod) -> (String, u64) {
    let dump = kernel::map_dump_formatted(&pod.pin_dir().join("attachment"));
    assert_eq!(dump.len(), 1, "attachment is ARRAY[1]: {dump:?}");
    let v = &dump[0].1;
    (
        v["mode"]
            .as_str()
            .unwrap_or_else(|| panic!("mode not printed by name: {v}"))
            .to_owned(),
        match &v["flags"] {
            Value::Number(n) => n.as_u64().unwrap(),
            Value::String(name) => match name.as_str() {
                "NATRA_ATTACH_OWNS_CLSACT" => 1,
                "NATRA_ATTACH_OWNS_FQ" => 2,
                "NATRA_ATTACH_EDT" => 4,
                other => panic!("unknown flag {other}"),
            },
            other => panic!("flags printed as {other}"),
        },
    )
}

/// Record flags (natra.h).
const OWNS_CLSACT: u64 = 1;
const OWNS_FQ: u64 = 2;
const EDT: u64 = 4;
const EDT_INGRESS: u64 = 8;
const OWNS_HOST_FQ: u64 = 16;

/// The flags EDT adds to a Pod-side attachment with `edtPacing` auto or on:
/// natra's fq and EDT where the kernel has sch_fq, nothing where it has not.
fn edt_flags(pod_side: bool) -> u64 {
    if pod_side && has_sch_fq() {
        OWNS_FQ | EDT
    } else {
        0
    }
}

/// The mode `auto` picks here: Pod side first when EDT can be had.
fn auto_mode() -> Mode {
    if has_sch_fq() {
        Mode::TcxPodside
    } else {
        Mode::TcxHostside
    }
}

fn pin_names(pod: &Pod) -> Vec<String> {
    pod.pins()
        .unwrap_or_else(|| panic!("no pin dir for {}", pod.id))
}

/// Which way the measured traffic flows, seen from the limited Pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// The limited Pod sends (its egress).
    Egress,
    /// The limited Pod receives (its ingress): `iperf3 -R`.
    Ingress,
}

/// TCP from/to the limited `client`; returns the receiver's rate (bit/s).
fn measure(client: &Pod, server: &Pod, server_ip: &str, port: u16, way: Way) -> f64 {
    let _exclusive = common::quiet::measuring();
    let _srv = IperfServer::start(server, port);
    let mut cmd = client_command(client, server_ip, port, 30, DURATION_S, OMIT_S);
    cmd.args(["--connect-timeout", "3000"]);
    if way == Way::Ingress {
        cmd.arg("-R");
    }
    iperf::received_bps(&iperf::report(&run(&mut cmd)))
}

/// Where one mode puts the programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    TcxHostside,
    TcxPodside,
    ClsactHostside,
    ClsactPodside,
    TcxSplit,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::TcxHostside => "tcx-hostside",
            Mode::TcxPodside => "tcx-podside",
            Mode::ClsactHostside => "clsact-hostside",
            Mode::ClsactPodside => "clsact-podside",
            Mode::TcxSplit => "tcx-split",
        }
    }

    fn record_name(self) -> &'static str {
        match self {
            Mode::TcxHostside => "NATRA_ATTACH_TCX_HOSTSIDE",
            Mode::TcxPodside => "NATRA_ATTACH_TCX_PODSIDE",
            Mode::ClsactHostside => "NATRA_ATTACH_CLSACT_HOSTSIDE",
            Mode::ClsactPodside => "NATRA_ATTACH_CLSACT_PODSIDE",
            Mode::TcxSplit => "NATRA_ATTACH_TCX_SPLIT",
        }
    }

    fn pod_side(self) -> bool {
        matches!(self, Mode::TcxPodside | Mode::ClsactPodside)
    }

    /// `prog` sits on the Pod's eth0 (the split mode: pod egress only).
    fn pod_side_of(self, prog: &str) -> bool {
        self.pod_side() || (self == Mode::TcxSplit && prog == "pod_egress")
    }

    fn tcx(self) -> bool {
        matches!(self, Mode::TcxHostside | Mode::TcxPodside | Mode::TcxSplit)
    }

    /// The hooks of pod_ingress and pod_egress.
    fn hooks(self) -> [(&'static str, &'static str); 2] {
        match self {
            // each direction just before the root qdisc that can pace it
            Mode::TcxSplit => [("pod_ingress", "egress"), ("pod_egress", "egress")],
            _ if self.pod_side() => [("pod_ingress", "ingress"), ("pod_egress", "egress")],
            _ => [("pod_ingress", "egress"), ("pod_egress", "ingress")],
        }
    }
}

/// The direction index of a program name (the key of the programs array).
fn dir_index(prog: &str) -> u32 {
    match prog {
        "pod_ingress" => 0,
        _ => 1,
    }
}

fn tcx_hook(name: &str) -> TcxHook {
    match name {
        "ingress" => TcxHook::Ingress,
        _ => TcxHook::Egress,
    }
}

/// Asserts both programs sit where `mode` puts them, and nothing of natra's
/// on the other side.
fn assert_placed(mode: Mode, pod: &Pod, veth: &str) {
    let host_if = host_ifindex(veth);
    let pod_if = pod_ifindex(pod);
    let pins = pin_names(pod);
    for (prog, hook) in mode.hooks() {
        if mode.tcx() {
            assert!(pins.contains(&format!("{prog}_link")), "{mode:?}: {pins:?}");
            let link = kernel::pinned_tcx(&pod.pin_dir().join(format!("{prog}_link")));
            let want_if = if mode.pod_side_of(prog) {
                pod_if
            } else {
                host_if
            };
            assert_eq!(
                (link.ifindex, link.attach_type),
                (want_if, tcx_hook(hook).attach_type()),
                "{mode:?}: {prog} must be at tcx {hook} of ifindex {want_if}"
            );
            kernel::behind_stub(&pod.pin_dir(), link.prog_id, dir_index(prog));
            let at = if mode.pod_side_of(prog) {
                pod_tcx(pod, pod_if, tcx_hook(hook))
            } else {
                kernel::tcx_attached(host_if, tcx_hook(hook)).unwrap()
            };
            assert_eq!(
                at.link_ids,
                vec![link.id],
                "{mode:?}: tcx {hook} holds natra's {prog} link alone"
            );
        } else {
            assert!(pins.contains(&format!("{prog}_prog")), "{mode:?}: {pins:?}");
            let id = pinned_prog_id(&pod.pin_dir().join(format!("{prog}_prog")));
            let (ns, dev) = if mode.pod_side() {
                (Some(pod), "eth0")
            } else {
                (None, veth)
            };
            let list = filters(ns, dev, hook);
            let bpf = bpf_filters(&list);
            assert_eq!(bpf.len(), 1, "{mode:?}: {dev} {hook}: {list:#?}");
            let f = bpf[0];
            assert_eq!(f["pref"], PRIORITY, "{f:#}");
            assert_eq!(f["options"]["handle"], format!("{HANDLE:#x}"), "{f:#}");
            assert_eq!(f["options"]["direct-action"], true, "{f:#}");
            assert_eq!(f["options"]["prog"]["id"], id, "{mode:?} {prog}: {f:#}");
            kernel::behind_stub(&pod.pin_dir(), id, dir_index(prog));
        }
    }
    // The other side is untouched.
    let (hi, he) = kernel::tcx_both(host_if);
    let (pi, pe) = (
        pod_tcx(pod, pod_if, TcxHook::Ingress),
        pod_tcx(pod, pod_if, TcxHook::Egress),
    );
    let host_tcx = !hi.prog_ids.is_empty() || !he.prog_ids.is_empty();
    let pod_tcx_used = !pi.prog_ids.is_empty() || !pe.prog_ids.is_empty();
    let split = mode == Mode::TcxSplit;
    assert_eq!(
        host_tcx,
        mode == Mode::TcxHostside || split,
        "{mode:?}: host tcx"
    );
    assert_eq!(
        pod_tcx_used,
        mode == Mode::TcxPodside || split,
        "{mode:?}: Pod tcx"
    );
    if split {
        // pod ingress at the host veth's egress, pod egress at eth0's: the
        // two ingress hooks stay empty
        assert!(
            hi.prog_ids.is_empty() && pi.prog_ids.is_empty(),
            "{hi:?} {pi:?}"
        );
    }
    assert_eq!(
        has_clsact(None, veth),
        mode == Mode::ClsactHostside,
        "{mode:?}: host clsact"
    );
    assert_eq!(
        has_clsact(Some(pod), "eth0"),
        mode == Mode::ClsactPodside,
        "{mode:?}: Pod clsact"
    );
}

/// natra's fq (handle 4e54:) is the root qdisc of the Pod's eth0.
fn assert_natras_fq_is_root(pod: &Pod) {
    let list = qdiscs(Some(pod), "eth0");
    let root = list
        .iter()
        .find(|q| q["root"] == true)
        .unwrap_or_else(|| panic!("no root qdisc on the Pod's eth0: {list:#?}"));
    assert_eq!(
        (&root["kind"], &root["handle"]),
        (&json!("fq"), &json!("4e54:")),
        "{root:#}"
    );
}

/// Nothing of natra on either end of the Pod's veth.
fn assert_nothing_on(pod: &Pod, veth: &str) {
    let host_if = host_ifindex(veth);
    let pod_if = pod_ifindex(pod);
    let (hi, he) = kernel::tcx_both(host_if);
    assert!(
        hi.prog_ids.is_empty() && he.prog_ids.is_empty(),
        "tcx on {veth}: {hi:?} {he:?}"
    );
    for hook in [TcxHook::Ingress, TcxHook::Egress] {
        let at = pod_tcx(pod, pod_if, hook);
        assert!(at.prog_ids.is_empty(), "tcx on the Pod's eth0: {at:?}");
    }
    assert!(!has_clsact(None, veth), "clsact left on {veth}");
    assert!(!has_clsact(Some(pod), "eth0"), "clsact left in the Pod");
    assert_eq!(root_kind(Some(pod), "eth0").as_deref(), Some("noqueue"));
}

fn explicit_mode(mode: Mode, subnet: u8, way: Way, port: u16) {
    common::require_root();
    let fields = json!({"attachMode": mode.name()});
    let test = format!("am-{}", mode.name());
    let net = net_with(&test, subnet, fields.clone());
    let server = net.pod("srv");
    let client = net.pod("cli");
    let server_ip = pod_ip(&server.add(None).ok());
    let bw = bandwidth(Some(CAP_BITS), Some(CAP_BITS));
    let result = client.add(Some(&bw)).ok();
    let veth = host_veth(&result);

    // NATRA_ATTACH_OWNS_CLSACT: the veth had no clsact before natra.
    let flags = if mode.tcx() { 0 } else { OWNS_CLSACT }
        | edt_flags(mode.pod_side() || mode == Mode::TcxSplit)
        | if mode == Mode::TcxSplit && has_sch_fq() {
            EDT_INGRESS | OWNS_HOST_FQ
        } else {
            0
        };
    assert_eq!(record(&client), (mode.record_name().to_owned(), flags));
    assert_placed(mode, &client, &veth);
    client.check(Some(&bw)).ok();

    let lower = (1.0 - TOLERANCE) * CAP_BITS as f64;
    let rate = iperf::best_of_shortfalls(
        &format!("{mode:?} {way:?}"),
        lower,
        |&bps| bps,
        || measure(&client, &server, &server_ip, port, way),
    );
    let ratio = rate / CAP_BITS as f64;
    println!(
        "{:<16} {:<8} {:>6.2} Mbit/s = {ratio:.3} of the cap",
        mode.name(),
        format!("{way:?}"),
        rate / 1e6
    );
    assert!(
        (ratio - 1.0).abs() <= TOLERANCE,
        "{mode:?} {way:?}: {:.2} Mbit/s is {ratio:.3} of the {} Mbit/s cap",
        rate / 1e6,
        CAP_BITS / 1_000_000
    );

    natra_del(&client, &fields);
    assert_eq!(client.pins(), None, "{mode:?}: pins outlived DEL");
    assert_nothing_on(&client, &veth);
    client.del(Some(&bw)).ok();
    server.del(None).ok();
    net.assert_pin_root_clean();
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn tcx_split_puts_each_direction_before_its_queue() {
    explicit_mode(Mode::TcxSplit, 142, Way::Egress, 5416);
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn tcx_hostside_attaches_on_the_host_veth() {
    explicit_mode(Mode::TcxHostside, 130, Way::Ingress, 5411);
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn tcx_podside_attaches_on_the_pods_eth0() {
    explicit_mode(Mode::TcxPodside, 131, Way::Egress, 5412);
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn clsact_hostside_attaches_on_the_host_veth() {
    explicit_mode(Mode::ClsactHostside, 132, Way::Egress, 5413);
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn clsact_podside_attaches_on_the_pods_eth0() {
    explicit_mode(Mode::ClsactPodside, 133, Way::Ingress, 5414);
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn auto_picks_tcx_hostside_here_and_failed_attempts_are_undone() {
    common::require_root();
    let net = TestNet::new("am-auto", 134);
    let pod = net.pod("a");
    let bw = bandwidth(Some(CAP_BITS), Some(CAP_BITS));
    let result = pod.add(Some(&bw)).ok();
    let veth = host_veth(&result);
    // bpftool prints the record's mode by name (BTF).
    let dump = kernel::bpftool_json(&[
        "map",
        "dump",
        "pinned",
        pod.pin_dir().join("attachment").to_str().unwrap(),
    ]);
    assert_eq!(
        dump[0]["formatted"]["value"]["mode"],
        auto_mode().record_name(),
        "{dump}"
    );
    assert_eq!(
        dump[0]["formatted"]["value"]["host_ifindex"],
        host_ifindex(&veth)
    );
    assert_eq!(
        dump[0]["formatted"]["value"]["pod_ifindex"],
        pod_ifindex(&pod)
    );
    assert_placed(auto_mode(), &pod, &veth);
    pod.check(Some(&bw)).ok();

    // Every mode failing (fault injected after the first attach of each):
    // each attempt is undone before the next, whatever side it was on.
    let add = |mut fields: Value, env: &[(&str, &str)]| {
        fields["runtimeConfig"] = json!({"bandwidth": bw});
        fields["prevResult"] = result.clone();
        let out = pod.natra_alone("ADD", &pod.natra_conf(fields), env);
        (out.status.success(), common::plugin::single_json(&out))
    };
    let (ok, e) = add(json!({}), &[("NATRA_FAIL_AFTER_ATTACHES", "1")]);
    assert!(!ok);
    assert_eq!(e["code"], 100, "{e}");
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("attachMode auto: every mode failed")
            && msg.contains("NATRA_FAIL_AFTER_ATTACHES"),
        "{e}"
    );
    let details = e["details"].as_str().unwrap();
    for mode in [
        "tcx-hostside",
        "clsact-hostside",
        "tcx-podside",
        "clsact-podside",
    ] {
        assert!(details.contains(mode), "{mode} not tried: {e}");
    }
    assert_eq!(pod.pins(), None);
    assert_nothing_on(&pod, &veth);

    // An explicit mode is tried alone and names itself and the reason.
    run_ok(Command::new("tc").args(["qdisc", "add", "dev", &veth, "ingress"]));
    let (ok, e) = add(json!({"attachMode": "clsact-hostside"}), &[]);
    assert!(!ok);
    assert_eq!(e["code"], 100, "{e}");
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("attachMode clsact-hostside failed: ") && msg.contains("ingress qdisc"),
        "{e}"
    );
    assert_eq!(pod.pins(), None);
    let kinds: Vec<Value> = qdiscs(None, &veth)
        .iter()
        .map(|q| q["kind"].clone())
        .collect();
    assert!(kinds.contains(&json!("ingress")), "{kinds:?}");
    assert!(!kinds.contains(&json!("clsact")), "{kinds:?}");
    run_ok(Command::new("tc").args(["qdisc", "del", "dev", &veth, "ingress"]));
    assert_nothing_on(&pod, &veth);

    pod.del(Some(&bw)).ok();
    net.assert_pin_root_clean();
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn edt_pacing_on_is_refused_without_fq_and_leaves_nothing() {
    common::require_root();
    let net = net_with("am-edton", 135, json!({"edtPacing": "on"}));
    let pod = net.pod("a");
    // ptp alone first (natra with no limit does nothing), to see the Pod's
    // qdiscs before natra's refused ADD.
    let result = pod.add(None).ok();
    let veth = host_veth(&result);
    let before = qdiscs(Some(&pod), "eth0");
    assert_eq!(root_kind(Some(&pod), "eth0").as_deref(), Some("noqueue"));

    let bw = bandwidth(Some(CAP_BITS), Some(CAP_BITS));
    let fields = json!({"edtPacing": "on"});
    let mut conf = pod.natra_conf(fields.clone());
    conf["runtimeConfig"] = json!({"bandwidth": bw});
    conf["prevResult"] = result;
    let out = pod.natra_alone("ADD", &conf, &[]);
    if has_sch_fq() {
        // The other case: EDT on, under natra's fq, from the Pod side.
        assert!(
            out.status.success(),
            "edtPacing on with sch_fq failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(
            record(&pod),
            (Mode::TcxPodside.record_name().to_owned(), OWNS_FQ | EDT)
        );
        assert_natras_fq_is_root(&pod);
        assert_placed(Mode::TcxPodside, &pod, &veth);
        natra_del(&pod, &fields);
        assert_eq!(pod.pins(), None, "pins outlived DEL");
        net.assert_pin_root_clean();
        assert_eq!(
            qdiscs(Some(&pod), "eth0"),
            before,
            "natra's fq outlived DEL"
        );
        assert_nothing_on(&pod, &veth);
        pod.del(None).ok();
        return;
    }
    assert!(!out.status.success(), "edtPacing on without fq must fail");
    let err = common::plugin::single_json(&out);
    assert_eq!(err["code"], 100, "{err}");
    let msg = err["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("edtPacing on: fq cannot be installed on the Pod's eth0"),
        "{err}"
    );
    assert!(
        !err["details"].as_str().unwrap_or_default().is_empty(),
        "the kernel's reason belongs in the details: {err}"
    );

    assert_eq!(pod.pins(), None, "a refused ADD left pins");
    net.assert_pin_root_clean();
    assert_eq!(
        qdiscs(Some(&pod), "eth0"),
        before,
        "the Pod's qdiscs changed"
    );
    assert_nothing_on(&pod, &veth);
    pod.del(None).ok();
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn edt_pacing_auto_falls_back_to_policing_without_fq() {
    common::require_root();
    let net = net_with("am-edtauto", 136, json!({"edtPacing": "auto"}));
    let pod = net.pod("a");
    let bw = bandwidth(Some(CAP_BITS), Some(CAP_BITS));
    let out = pod.add(Some(&bw));
    let stderr = out.stderr.clone();
    let result = out.ok();
    if has_sch_fq() {
        // The other case: EDT on, natra's fq the root, programs Pod side.
        assert!(
            stderr.contains("EDT on: fq is the root qdisc of the Pod's eth0 (installed by natra)"),
            "{stderr}"
        );
        assert!(!stderr.contains("EDT off"), "{stderr}");
        assert_eq!(
            record(&pod),
            (Mode::TcxPodside.record_name().to_owned(), OWNS_FQ | EDT)
        );
        assert_natras_fq_is_root(&pod);
        assert_placed(Mode::TcxPodside, &pod, &host_veth(&result));
        pod.check(Some(&bw)).ok();
        pod.del(Some(&bw)).ok();
        net.assert_pin_root_clean();
        return;
    }
    let line = stderr
        .lines()
        .find(|l| l.contains("EDT off: fq unavailable: "))
        .unwrap_or_else(|| panic!("no `EDT off: fq unavailable` line in stderr:\n{stderr}"));
    // The reason is the kernel's refusal for the Pod's eth0: its ifindex,
    // the errno of a qdisc kind the kernel does not know, and its extack.
    let pod_if = pod_ifindex(&pod);
    assert!(line.contains(&format!("(ifindex {pod_if})")), "{line}");
    assert!(
        line.contains("ENOENT") && line.contains("kernel:"),
        "{line}"
    );
    let (mode, flags) = record(&pod);
    assert_eq!(mode, "NATRA_ATTACH_TCX_HOSTSIDE");
    assert_eq!(flags, 0, "no EDT, no fq of natra's");
    assert_eq!(root_kind(Some(&pod), "eth0").as_deref(), Some("noqueue"));
    assert!(
        !qdiscs(Some(&pod), "eth0").iter().any(|q| q["kind"] == "fq"),
        "fq left on the Pod's eth0"
    );
    assert_placed(Mode::TcxHostside, &pod, &host_veth(&result));
    pod.check(Some(&bw)).ok();
    pod.del(Some(&bw)).ok();
    net.assert_pin_root_clean();
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn check_fails_once_natras_clsact_filter_is_deleted() {
    common::require_root();
    let fields = json!({"attachMode": "clsact-podside"});
    let net = net_with("am-chkflt", 137, fields.clone());
    let pod = net.pod("a");
    let bw = bandwidth(Some(CAP_BITS), Some(CAP_BITS));
    let result = pod.add(Some(&bw)).ok();
    let veth = host_veth(&result);
    pod.check(Some(&bw)).ok();

    // Behind natra's back: its pod_ingress filter (Pod's eth0 ingress).
    run_ok(pod.exec("tc").args([
        "filter",
        "del",
        "dev",
        "eth0",
        "ingress",
        "pref",
        &PRIORITY.to_string(),
    ]));
    assert!(bpf_filters(&filters(Some(&pod), "eth0", "ingress")).is_empty());
    let e = pod.check(Some(&bw)).err();
    assert_eq!(e.code, 101, "{e:?}");
    assert!(e.msg.contains("pod_ingress"), "CHECK names it: {e:?}");

    // The same on the host side.
    let fields = json!({"attachMode": "clsact-hostside"});
    natra_del(&pod, &fields);
    let mut conf = pod.natra_conf(fields.clone());
    conf["runtimeConfig"] = json!({"bandwidth": bw});
    conf["prevResult"] = result;
    let out = pod.natra_alone("ADD", &conf, &[]);
    assert!(out.status.success(), "{out:?}");
    assert_placed(Mode::ClsactHostside, &pod, &veth);
    run_ok(Command::new("tc").args([
        "filter",
        "del",
        "dev",
        &veth,
        "ingress",
        "pref",
        &PRIORITY.to_string(),
    ]));
    let out = pod.natra_alone("CHECK", &conf, &[]);
    let e = common::plugin::single_json(&out);
    assert_eq!(e["code"], 101, "{e}");
    assert!(
        e["msg"].as_str().unwrap().contains("pod_egress"),
        "CHECK names it: {e}"
    );
    natra_del(&pod, &fields);
    assert_eq!(pod.pins(), None);
    pod.del(None).ok();
    net.assert_pin_root_clean();
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn del_spares_foreign_clsact_filters() {
    common::require_root();
    let fields = json!({"attachMode": "clsact-hostside"});
    let net = net_with("am-foreign", 138, fields.clone());
    let pod = net.pod("a");
    let bw = bandwidth(Some(CAP_BITS), Some(CAP_BITS));
    let veth = host_veth(&pod.add(Some(&bw)).ok());
    let ifindex = host_ifindex(&veth);

    // Someone else's filter on the same hook as natra's pod_egress.
    run_ok(Command::new("tc").args([
        "filter", "add", "dev", &veth, "ingress", "protocol", "all", "pref", "100", "u32", "match",
        "u32", "0", "0",
    ]));
    // And natra's slot on the other hook taken over by a program that is
    // not this attachment's (as when a reused ifindex carries another
    // Pod's filter).
    let skel = common::skel::loaded();
    use std::os::fd::AsFd;
    let foreign = clsact::attach(skel.progs.pod_ingress.as_fd(), ifindex, Hook::Egress).unwrap();
    let ours = pinned_prog_id(&pod.pin_dir().join("pod_ingress_prog"));
    assert_ne!(foreign.prog_id, ours);
    assert!(!foreign.created_clsact);

    natra_del(&pod, &fields);
    assert_eq!(pod.pins(), None);
    let ingress = filters(None, &veth, "ingress");
    assert!(
        ingress.iter().any(|f| f["kind"] == "u32"),
        "the foreign u32 filter went: {ingress:#?}"
    );
    assert!(
        bpf_filters(&ingress).is_empty(),
        "natra's own pod_egress filter stayed: {ingress:#?}"
    );
    let egress = filters(None, &veth, "egress");
    let bpf = bpf_filters(&egress);
    assert_eq!(
        bpf.len(),
        1,
        "the foreign program's filter went: {egress:#?}"
    );
    assert_eq!(bpf[0]["options"]["prog"]["id"], foreign.prog_id);
    assert!(has_clsact(None, &veth), "a clsact with filters on it went");

    pod.del(None).ok();
    net.assert_pin_root_clean();
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn env_wins_over_netconf_and_unknown_values_are_code_7() {
    common::require_root();
    let net = net_with("am-env", 139, json!({"attachMode": "clsact-podside"}));
    let pod = net.pod("a");
    let bw = bandwidth(Some(CAP_BITS), Some(CAP_BITS));
    let result = pod
        .add_with_env(Some(&bw), &[("NATRA_ATTACH_MODE", "tcx-podside")])
        .ok();
    assert_eq!(record(&pod).0, "NATRA_ATTACH_TCX_PODSIDE");
    assert_placed(Mode::TcxPodside, &pod, &host_veth(&result));
    // CHECK with the netconf's mode (no env) sees the difference.
    let e = pod.check(Some(&bw)).err();
    assert_eq!(e.code, 101, "{e:?}");
    assert!(
        e.msg.contains("tcx-podside") && e.msg.contains("clsact-podside"),
        "{e:?}"
    );

    for (fields, env, named) in [
        (
            json!({"attachMode": "sideways"}),
            None,
            ["attachMode", "sideways"],
        ),
        (json!({"edtPacing": "maybe"}), None, ["edtPacing", "maybe"]),
        (
            json!({}),
            Some(("NATRA_EDT_PACING", "always")),
            ["NATRA_EDT_PACING", "always"],
        ),
    ] {
        let mut conf = pod.natra_conf(json!({
            "runtimeConfig": {"bandwidth": bw}, "prevResult": result,
        }));
        for (k, v) in fields.as_object().unwrap() {
            conf[k] = v.clone();
        }
        let env: Vec<_> = env.into_iter().collect();
        let out = pod.natra_alone("ADD", &conf, &env);
        let e = common::plugin::single_json(&out);
        assert_eq!(e["code"], 7, "{e}");
        let msg = e["msg"].as_str().unwrap();
        assert!(named.iter().all(|n| msg.contains(n)), "{e}");
    }
    // The refused ADDs changed nothing.
    assert_eq!(record(&pod).0, "NATRA_ATTACH_TCX_PODSIDE");
    pod.del(Some(&bw)).ok();
    net.assert_pin_root_clean();
}
