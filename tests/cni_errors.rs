//! natra's CNI errors, calling the binary directly with a hand-set
//! environment: each failure prints exactly one CNI error object on stdout,
//! exits non-zero, and leaves nothing in the pin root. Also VERSION, and a
//! successful ADD/CHECK/DEL printing nothing but the result.
//!
//! The error paths stop before natra touches the kernel, so they are plain
//! tests: as root they use a pin root on bpffs, otherwise a directory under
//! CARGO_TARGET_TMPDIR.
mod common;

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output};

use common::kernel::{self, TcxHook};
use common::plugin::{natra_cni, natra_raw, single_json};
use common::pod::{run, run_ok};
use serde_json::{json, Value};

const SUPPORTED: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// `<base>/natra-test-<name>-<pid>/pins`, base = /sys/fs/bpf when root
/// (and mounted), else CARGO_TARGET_TMPDIR. The outer directory is this
/// test's alone, so anything natra writes next to the pin root shows too.
struct PinSandbox {
    outer: PathBuf,
    root: PathBuf,
}

impl PinSandbox {
    fn new(test: &str) -> PinSandbox {
        let on_bpffs = nix::unistd::geteuid().is_root()
            && run(Command::new("stat").args(["-f", "-c", "%T", "/sys/fs/bpf"]))
                .stdout
                .starts_with(b"bpf");
        let base = if on_bpffs {
            PathBuf::from("/sys/fs/bpf")
        } else {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        };
        let outer = base.join(format!("natra-test-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&outer);
        let root = outer.join("pins");
        fs::create_dir_all(&root).expect("cannot create the pin sandbox");
        PinSandbox { outer, root }
    }

    fn entries(dir: &Path) -> Vec<String> {
        match fs::read_dir(dir) {
            Ok(e) => e
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("cannot list {}: {e}", dir.display()),
        }
    }

    /// The pin root is empty and nothing appeared beside it.
    fn assert_untouched(&self, what: &str) {
        assert_eq!(
            Self::entries(&self.root),
            Vec::<String>::new(),
            "{what}: new entries in the pin root {}",
            self.root.display()
        );
        assert_eq!(
            Self::entries(&self.outer),
            vec!["pins".to_string()],
            "{what}: new entries beside the pin root in {}",
            self.outer.display()
        );
    }

    /// The pin root holds the node's shared dataplane (which stays after a
    /// DEL) and nothing else: no slot of it held, nothing beside the root.
    fn assert_only_the_dataplane(&self, what: &str) {
        assert_eq!(
            Self::entries(&self.root),
            vec!["~dataplane".to_string()],
            "{what}: entries in the pin root {}",
            self.root.display()
        );
        let base = self.root.join("~dataplane");
        let layouts = Self::entries(&base);
        assert_eq!(layouts.len(), 1, "{what}: dataplanes {layouts:?}");
        for layout in layouts {
            let slots = Self::entries(&base.join(&layout).join("slots"));
            assert!(
                slots.is_empty(),
                "{what}: slots of {layout} held: {slots:?}"
            );
        }
        assert_eq!(
            Self::entries(&self.outer),
            vec!["pins".to_string()],
            "{what}: new entries beside the pin root in {}",
            self.outer.display()
        );
    }
}

impl Drop for PinSandbox {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.outer);
    }
}

/// A 1.0.0 prevResult of a Pod with eth0 in `netns`.
fn prev_result(netns: &str, host_veth: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": host_veth},
            {"name": "eth0", "sandbox": netns}
        ],
        "ips": [{"address": "10.99.121.2/24", "interface": 1, "gateway": "10.99.121.1"}],
        "dns": {}
    })
}

/// The natra entry of a conflist as libcni hands it over.
fn limited_conf(version: &str, bandwidth: Value, prev: Option<Value>) -> Value {
    let mut conf = json!({
        "cniVersion": version,
        "name": "natra-errors",
        "type": "natra",
        "capabilities": {"bandwidth": true},
        "runtimeConfig": {"bandwidth": bandwidth},
    });
    if let Some(prev) = prev {
        conf["prevResult"] = prev;
    }
    conf
}

fn bw_20m() -> Value {
    json!({"ingressRate": 20_000_000, "ingressBurst": 4_294_967_295u64,
           "egressRate": 20_000_000, "egressBurst": 4_294_967_295u64})
}

/// Asserts a CNI error: non-zero exit, stdout exactly one object with exactly
/// cniVersion, code, msg and details. Returns it.
fn expect_cni_error(out: &Output, code: u64, what: &str) -> serde_json::Map<String, Value> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{what}: exit status 0\nstderr:\n{stderr}"
    );
    let value = single_json(out);
    let obj = value
        .as_object()
        .unwrap_or_else(|| panic!("{what}: error is not an object: {value}"))
        .clone();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["cniVersion", "code", "details", "msg"],
        "{what}: {value}"
    );
    assert_eq!(
        obj["code"],
        json!(code),
        "{what}: {value}\nstderr:\n{stderr}"
    );
    assert!(obj["cniVersion"].is_string(), "{what}: {value}");
    assert!(obj["details"].is_string(), "{what}: {value}");
    assert!(
        obj["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: empty msg: {value}"
    );
    obj
}

fn add(sandbox: &PinSandbox, id: &str, netns: Option<&str>, stdin: &str) -> Output {
    natra_cni("ADD", id, netns.map(Path::new), &sandbox.root, stdin)
}

#[test]
fn unparsable_stdin_is_code_6() {
    let sandbox = PinSandbox::new("er-decode");
    for (what, stdin) in [
        ("truncated JSON", r#"{"cniVersion":"1.0.0","name":"#),
        ("not JSON", "this is not JSON"),
        ("empty stdin", ""),
        (
            "negative rate",
            r#"{"cniVersion":"1.0.0","name":"n","type":"natra","runtimeConfig":{"bandwidth":{"ingressRate":-5}}}"#,
        ),
    ] {
        let out = add(&sandbox, "decode1", Some("/run/netns/none"), stdin);
        let e = expect_cni_error(&out, 6, what);
        let version = e["cniVersion"].as_str().unwrap();
        assert!(
            SUPPORTED.contains(&version),
            "{what}: cniVersion {version:?}"
        );
        sandbox.assert_untouched(what);
    }
}

#[test]
fn unsupported_cni_version_is_code_1() {
    let sandbox = PinSandbox::new("er-version");
    for version in ["9.9.9", "0.2.0", "1.1.0-alpha"] {
        let conf = limited_conf(version, bw_20m(), Some(prev_result("/run/netns/x", "v")));
        let out = add(
            &sandbox,
            "version1",
            Some("/run/netns/x"),
            &conf.to_string(),
        );
        let e = expect_cni_error(&out, 1, version);
        assert_eq!(
            e["cniVersion"],
            json!(version),
            "the error echoes the config's version"
        );
        assert!(e["msg"].as_str().unwrap().contains(version), "{e:?}");
        sandbox.assert_untouched(version);
    }
}

#[test]
fn missing_prev_result_with_limits_is_code_7() {
    let sandbox = PinSandbox::new("er-noprev");
    let conf = limited_conf("1.0.0", bw_20m(), None);
    let out = add(&sandbox, "noprev1", Some("/run/netns/x"), &conf.to_string());
    let e = expect_cni_error(&out, 7, "ADD without prevResult");
    assert!(e["msg"].as_str().unwrap().contains("prevResult"), "{e:?}");
    sandbox.assert_untouched("ADD without prevResult");
    let out = natra_cni(
        "CHECK",
        "noprev1",
        Some(Path::new("/run/netns/x")),
        &sandbox.root,
        &conf.to_string(),
    );
    expect_cni_error(&out, 7, "CHECK without prevResult");
    sandbox.assert_untouched("CHECK without prevResult");
}

#[test]
fn invalid_rate_is_code_7_naming_the_field() {
    let sandbox = PinSandbox::new("er-rate");
    for (field, bw) in [
        (
            "ingressRate",
            json!({"ingressRate": 5, "ingressBurst": 4_294_967_295u64}),
        ),
        ("egressRate", json!({"egressRate": 999})),
        (
            "ingressRate",
            json!({"ingressRate": 1_000_000_000_000_001u64, "egressRate": 20_000_000}),
        ),
    ] {
        let conf = limited_conf("1.0.0", bw.clone(), Some(prev_result("/run/netns/x", "v")));
        let out = add(&sandbox, "rate1", Some("/run/netns/x"), &conf.to_string());
        let what = format!("bandwidth {bw}");
        let e = expect_cni_error(&out, 7, &what);
        assert!(
            e["msg"].as_str().unwrap().contains(field),
            "{what}: msg must name {field}: {e:?}"
        );
        sandbox.assert_untouched(&what);
    }
}

#[test]
fn missing_netns_is_code_3() {
    let sandbox = PinSandbox::new("er-netns");
    let netns = format!("/run/netns/natra-er-absent-{}", std::process::id());
    assert!(!Path::new(&netns).exists());
    let conf = limited_conf("1.0.0", bw_20m(), Some(prev_result(&netns, "v")));
    let out = add(&sandbox, "netns1", Some(&netns), &conf.to_string());
    let e = expect_cni_error(&out, 3, "ADD into a netns that does not exist");
    assert!(e["msg"].as_str().unwrap().contains(&netns), "{e:?}");
    sandbox.assert_untouched("missing netns");

    // No CNI_NETNS at all on ADD is a bad environment, not an unknown container.
    let out = add(&sandbox, "netns1", None, &conf.to_string());
    let e = expect_cni_error(&out, 4, "ADD without CNI_NETNS");
    assert!(e["msg"].as_str().unwrap().contains("CNI_NETNS"), "{e:?}");
    sandbox.assert_untouched("no CNI_NETNS");
}

/// Where a naive `root.join(id:ifname)` would land, resolved lexically.
fn escape_target(root: &Path, id: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in root
        .join("natra-errors")
        .join(format!("{id}:eth0"))
        .components()
    {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn hostile_container_id_is_code_4() {
    let sandbox = PinSandbox::new("er-hostile");
    let netns = "/run/netns/x";
    let conf = limited_conf("1.0.0", bw_20m(), Some(prev_result(netns, "v")));
    for id in [
        "../x",
        "../../x",
        "a/../../b",
        ".hidden",
        "a/b",
        "x\ny",
        "a:b",
    ] {
        for command in ["ADD", "CHECK", "DEL"] {
            let out = natra_cni(
                command,
                id,
                Some(Path::new(netns)),
                &sandbox.root,
                &conf.to_string(),
            );
            let what = format!("{command} with CNI_CONTAINERID {id:?}");
            let e = expect_cni_error(&out, 4, &what);
            assert!(
                e["msg"].as_str().unwrap().contains("CNI_CONTAINERID"),
                "{what}: {e:?}"
            );
            sandbox.assert_untouched(&what);
            let target = escape_target(&sandbox.root, id);
            assert!(!target.exists(), "{what}: {} was created", target.display());
        }
    }
    for ifname in ["../x", "..", ".", "a/b", "eth0:1"] {
        for command in ["ADD", "CHECK", "DEL"] {
            let out = natra_raw(
                &[
                    ("CNI_COMMAND", command),
                    ("CNI_CONTAINERID", "hostile1"),
                    ("CNI_NETNS", netns),
                    ("CNI_IFNAME", ifname),
                    ("CNI_PATH", "/usr/lib/cni"),
                ],
                &sandbox.root,
                &conf.to_string(),
            );
            let what = format!("{command} with CNI_IFNAME {ifname:?}");
            let e = expect_cni_error(&out, 4, &what);
            assert!(
                e["msg"].as_str().unwrap().contains("CNI_IFNAME"),
                "{what}: {e:?}"
            );
            sandbox.assert_untouched(&what);
        }
    }
}

#[test]
fn version_lists_the_supported_versions() {
    let sandbox = PinSandbox::new("er-verb");
    for stdin in [r#"{"cniVersion":"1.0.0"}"#, r#"{"cniVersion":"0.4.0"}"#, ""] {
        let out = natra_raw(&[("CNI_COMMAND", "VERSION")], &sandbox.root, stdin);
        assert!(
            out.status.success(),
            "VERSION with stdin {stdin:?}: {out:?}"
        );
        let v = single_json(&out);
        let listed: Vec<&str> = v["supportedVersions"]
            .as_array()
            .unwrap_or_else(|| panic!("no supportedVersions: {v}"))
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        for version in SUPPORTED {
            assert!(listed.contains(&version), "VERSION lacks {version}: {v}");
        }
        assert!(v["cniVersion"].is_string(), "{v}");
        sandbox.assert_untouched("VERSION");
    }
    // A version natra does not speak is not echoed back as if it did.
    let out = natra_raw(
        &[("CNI_COMMAND", "VERSION")],
        &sandbox.root,
        r#"{"cniVersion":"9.9.9"}"#,
    );
    assert_eq!(single_json(&out)["cniVersion"], "1.1.0");
}

/// A netns holding eth0, the peer of a host veth: just enough for natra.
struct VethPod {
    netns: String,
    host: String,
}

impl VethPod {
    fn new(tag: &str) -> VethPod {
        let pid = std::process::id();
        let pod = VethPod {
            netns: format!("natra-er-{tag}-{pid}"),
            host: format!("ne{tag}{pid}"),
        };
        assert!(
            pod.host.len() <= 15,
            "{} is too long for an ifname",
            pod.host
        );
        let _ = run(Command::new("ip").args(["netns", "del", &pod.netns]));
        run_ok(Command::new("ip").args(["netns", "add", &pod.netns]));
        run_ok(Command::new("ip").args([
            "link", "add", &pod.host, "type", "veth", "peer", "name", "eth0", "netns", &pod.netns,
        ]));
        run_ok(Command::new("ip").args(["link", "set", &pod.host, "up"]));
        pod
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }
}

impl Drop for VethPod {
    fn drop(&mut self) {
        let _ = run(Command::new("ip").args(["netns", "del", &self.netns]));
        let _ = run(Command::new("ip").args(["link", "del", &self.host]));
    }
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn successful_verbs_print_only_their_result() {
    common::require_root();
    let sandbox = PinSandbox::new("er-ok");
    let pod = VethPod::new("ok");
    let netns = pod.path();
    let prev = prev_result(netns.to_str().unwrap(), &pod.host);
    let conf = limited_conf("1.0.0", bw_20m(), Some(prev.clone())).to_string();
    let verbose = |command: &str| {
        natra_raw(
            &[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", "okpod"),
                ("CNI_NETNS", netns.to_str().unwrap()),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/usr/lib/cni"),
                // Everything natra and libbpf can say must go to stderr.
                ("NATRA_LOG", "debug"),
            ],
            &sandbox.root,
            &conf,
        )
    };

    let out = verbose("ADD");
    assert!(out.status.success(), "ADD: {out:?}");
    assert_eq!(
        single_json(&out),
        prev,
        "ADD prints prevResult back, nothing else"
    );
    let pin_dir = sandbox.root.join("natra-errors/okpod:eth0");
    let ifindex = kernel::ifindex(&pod.host).unwrap();
    let ingress = kernel::pinned_tcx(&pin_dir.join("pod_ingress_link"));
    let egress = kernel::pinned_tcx(&pin_dir.join("pod_egress_link"));
    assert_eq!(
        (ingress.ifindex, ingress.attach_type),
        (ifindex, TcxHook::Egress.attach_type())
    );
    assert_eq!(
        (egress.ifindex, egress.attach_type),
        (ifindex, TcxHook::Ingress.attach_type())
    );

    let out = verbose("CHECK");
    assert!(out.status.success(), "CHECK: {out:?}");
    assert!(
        out.stdout.is_empty(),
        "CHECK prints nothing: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = verbose("DEL");
    assert!(out.status.success(), "DEL: {out:?}");
    assert!(
        out.stdout.is_empty(),
        "DEL prints nothing: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!pin_dir.exists(), "DEL left {}", pin_dir.display());
    assert!(!kernel::link_exists(ingress.id) && !kernel::link_exists(egress.id));
    let (at_ingress, at_egress) = kernel::tcx_both(ifindex);
    assert!(at_ingress.prog_ids.is_empty() && at_egress.prog_ids.is_empty());
    sandbox.assert_only_the_dataplane("after DEL");
}
