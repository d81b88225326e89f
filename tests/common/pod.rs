//! Pods for the integration tests: a netns per Pod, wired up through libcni
//! (the `cnitool` driver) with ptp + host-local + natra, exactly as a
//! container runtime chains them.
//!
//! Isolation: every [`TestNet`] has its own pin root (`NATRA_PIN_ROOT`, passed
//! to the plugins through libcni's environment), plugin dir, libcni cache dir,
//! host-local dataDir and 10.99.N.0/24 subnet; every [`Pod`] its own netns and
//! container ID. Both are RAII guards: a Pod always runs `cnitool del` and
//! `ip netns del` when dropped, a TestNet removes its pin root and work dir,
//! so nothing leaks when an assertion fails half-way.
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::{json, Value};

use super::{natra_bin, repo_root};

/// The burst containerd asks for when a Pod only sets a rate (bits).
pub const CONTAINERD_BURST_BITS: u64 = 4_294_967_295;

static CNITOOL: OnceLock<PathBuf> = OnceLock::new();

/// The libcni driver, built once per test binary into CARGO_TARGET_TMPDIR.
pub fn cnitool() -> &'static Path {
    CNITOOL.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let crate_name = env!("CARGO_CRATE_NAME");
        let out = dir.join(format!("cnitool-{crate_name}"));
        // Built under a private name and renamed, so that concurrent test
        // binaries (or cargo runs) never execute a half-written file.
        let tmp = dir.join(format!("cnitool-{crate_name}-{}.tmp", std::process::id()));
        let output = Command::new(repo_root().join("tests/cnitool/build.sh"))
            .arg(&tmp)
            .env("GOCACHE", dir.join("cnitool-gocache"))
            .output()
            .expect("cannot run tests/cnitool/build.sh");
        assert!(
            output.status.success(),
            "building cnitool failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        fs::rename(&tmp, &out).expect("cannot move cnitool into place");
        out
    })
}

/// The `bandwidth` capability args, with containerd's burst for each limited
/// direction; `None` leaves a direction out.
pub fn bandwidth(ingress_bits: Option<u64>, egress_bits: Option<u64>) -> Value {
    let mut bw = serde_json::Map::new();
    if let Some(rate) = ingress_bits {
        bw.insert("ingressRate".into(), json!(rate));
        bw.insert("ingressBurst".into(), json!(CONTAINERD_BURST_BITS));
    }
    if let Some(rate) = egress_bits {
        bw.insert("egressRate".into(), json!(rate));
        bw.insert("egressBurst".into(), json!(CONTAINERD_BURST_BITS));
    }
    Value::Object(bw)
}

/// Runs a command, panicking only when it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `10.O`, the first two octets of every test subnet: O is 99 unless
/// NATRA_TEST_OCTET says otherwise, so that two checkouts can run their
/// root tests side by side without ptp's routes colliding.
pub fn net_prefix() -> String {
    let octet: u8 = std::env::var("NATRA_TEST_OCTET")
        .ok()
        .map(|v| v.parse().expect("NATRA_TEST_OCTET is 0..=255"))
        .unwrap_or(99);
    format!("10.{octet}")
}

/// A plugin invocation: never while a rate measurement runs.
fn run_cni(cmd: &mut Command) -> Output {
    let _shared = super::quiet::cni_call();
    run(cmd)
}

/// What one cnitool invocation printed.
#[derive(Debug)]
pub struct CniOut {
    pub what: String,
    pub success: bool,
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

/// A CNI error as cnitool reports it.
#[derive(Debug)]
pub struct CniError {
    pub code: u64,
    pub msg: String,
    pub details: String,
}

impl CniOut {
    fn from_output(what: String, out: Output) -> CniOut {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("{what}: stdout is not one JSON document ({e}):\n{stdout}\nstderr:\n{stderr}")
        });
        CniOut {
            what,
            success: out.status.success(),
            json,
            stdout,
            stderr,
        }
    }

    /// The result JSON; panics (with stdout and stderr) if the call failed.
    pub fn ok(self) -> Value {
        assert!(
            self.success,
            "{} failed:\n{}\nstderr:\n{}",
            self.what, self.stdout, self.stderr
        );
        self.json
    }

    /// The CNI error; panics if the call succeeded.
    pub fn err(self) -> CniError {
        assert!(
            !self.success,
            "{} succeeded but should have failed:\n{}\nstderr:\n{}",
            self.what, self.stdout, self.stderr
        );
        CniError {
            code: self.json["code"].as_u64().unwrap_or_else(|| {
                panic!(
                    "{}: error without a numeric code: {}",
                    self.what, self.stdout
                )
            }),
            msg: self.json["msg"].as_str().unwrap_or_default().to_owned(),
            details: self.json["details"].as_str().unwrap_or_default().to_owned(),
        }
    }
}

/// One test's network: conflist, plugin dir, caches, pin root and subnet.
pub struct TestNet {
    pub test: String,
    pub pin_root: PathBuf,
    pub work: PathBuf,
    pub plugin_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub conf: PathBuf,
    pub net_name: String,
    /// The third octet of this test's 10.99.N.0/24 (see [`net_prefix`]).
    pub subnet: u8,
}

impl TestNet {
    /// `test` must be short and hold only `[a-z0-9-]` (it names netns,
    /// container IDs and the bpffs pin root, which refuses `.`).
    pub fn new(test: &str, subnet: u8) -> TestNet {
        Self::with_natra(
            test,
            subnet,
            json!({ "type": "natra", "capabilities": { "bandwidth": true } }),
        )
    }

    /// Like `new`, with natra's conflist entry given (extra netconf fields).
    pub fn with_natra(test: &str, subnet: u8, natra: Value) -> TestNet {
        assert!(
            test.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "test name {test:?} must be [a-z0-9-]"
        );
        let pid = std::process::id();
        let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{test}-{pid}"));
        let pin_root = PathBuf::from(format!("/sys/fs/bpf/natra-test-{test}-{pid}"));
        let _ = fs::remove_dir_all(&work);
        let plugin_dir = work.join("plugins");
        let cache_dir = work.join("cni-cache");
        let ipam_dir = work.join("ipam");
        for dir in [&plugin_dir, &cache_dir, &ipam_dir] {
            fs::create_dir_all(dir).expect("cannot create the test's work dir");
        }
        std::os::unix::fs::symlink(natra_bin(), plugin_dir.join("natra"))
            .expect("cannot symlink natra into the plugin dir");
        let net_name = format!("natra-{test}");
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": net_name,
            "plugins": [
                {
                    "type": "ptp",
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "subnet": format!("{}.{subnet}.0/24", net_prefix()),
                        "dataDir": ipam_dir,
                    }
                },
                natra
            ]
        });
        let conf = work.join("net.conflist");
        fs::write(&conf, serde_json::to_vec_pretty(&conflist).unwrap())
            .expect("cannot write the conflist");
        TestNet {
            test: test.to_owned(),
            pin_root,
            work,
            plugin_dir,
            cache_dir,
            conf,
            net_name,
            subnet,
        }
    }

    /// A second network on the same node, as Multus adds one: its own name,
    /// subnet and conflist, sharing this network's pin root.
    pub fn another_network(&self, test: &str, subnet: u8) -> TestNet {
        let mut net = TestNet::new(test, subnet);
        net.pin_root = self.pin_root.clone();
        net
    }

    /// CNI_PATH: natra first, then the reference plugins.
    pub fn cni_path(&self) -> String {
        format!("{}:/usr/lib/cni", self.plugin_dir.display())
    }

    /// A Pod guard with a fresh netns; nothing is ADDed yet.
    pub fn pod(&self, short: &str) -> Pod<'_> {
        Pod::new(self, short)
    }

    /// Entries left under the pin root (empty when absent): attachment
    /// directories as `<network>/<id>:<ifname>` (or `<id>:<ifname>` in the
    /// legacy layout), a network directory left empty as `<network>/`, and
    /// a slot of the shared dataplane still held as
    /// `~dataplane/<layout>/slots/<n>`.
    pub fn pin_root_entries(&self) -> Vec<String> {
        let list = |dir: &Path| -> Vec<String> {
            match fs::read_dir(dir) {
                Ok(entries) => entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => panic!("cannot list {}: {e}", dir.display()),
            }
        };
        let mut out = Vec::new();
        for name in list(&self.pin_root) {
            let dir = self.pin_root.join(&name);
            if name == "~dataplane" {
                // The node's shared dataplane stays; a slot it still holds is
                // a Pod interface natra did not let go of.
                for layout in list(&dir) {
                    for slot in list(&dir.join(&layout).join("slots")) {
                        out.push(format!("{name}/{layout}/slots/{slot}"));
                    }
                }
                continue;
            }
            if name.contains(':') || !dir.is_dir() {
                out.push(name);
                continue;
            }
            let children = list(&dir);
            if children.is_empty() {
                out.push(format!("{name}/"));
            }
            out.extend(children.into_iter().map(|c| format!("{name}/{c}")));
        }
        out.sort();
        out
    }

    /// Nothing of any Pod is pinned any more.
    pub fn assert_pin_root_clean(&self) {
        let left = self.pin_root_entries();
        assert!(
            left.is_empty(),
            "natra left pins behind under {}: {left:?}",
            self.pin_root.display()
        );
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Unlinking the last pin of a link detaches it, so this also takes
        // down whatever a failed test left attached.
        if let Err(e) = fs::remove_dir_all(&self.pin_root) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("cleanup: cannot remove {}: {e}", self.pin_root.display());
            }
        }
        let _ = fs::remove_dir_all(&self.work);
    }
}

/// One Pod: a netns and a container ID, DELeted and removed on drop.
pub struct Pod<'a> {
    pub net: &'a TestNet,
    pub id: String,
    pub netns_name: String,
    pub netns_path: PathBuf,
    pub ifname: String,
}

impl<'a> Pod<'a> {
    fn new(net: &'a TestNet, short: &str) -> Pod<'a> {
        let pid = std::process::id();
        let netns_name = format!("natra-{}-{short}-{pid}", net.test);
        let _ = run(Command::new("ip").args(["netns", "del", &netns_name]));
        run_ok(Command::new("ip").args(["netns", "add", &netns_name]));
        Pod {
            net,
            id: format!("{}-{short}-{pid}", net.test),
            netns_path: PathBuf::from("/run/netns").join(&netns_name),
            netns_name,
            ifname: "eth0".to_owned(),
        }
    }

    /// `<pin root>/<network>/<container id>:<ifname>`.
    pub fn pin_dir(&self) -> PathBuf {
        self.net
            .pin_root
            .join(&self.net.net_name)
            .join(format!("{}:{}", self.id, self.ifname))
    }

    /// This Pod's attachment to another network as `ifname`: the same netns
    /// and container ID (a Multus-style second interface).
    pub fn also_on<'b>(&self, net: &'b TestNet, ifname: &str) -> Pod<'b> {
        Pod {
            net,
            id: self.id.clone(),
            netns_name: self.netns_name.clone(),
            netns_path: self.netns_path.clone(),
            ifname: ifname.to_owned(),
        }
    }

    /// Sorted names of the entries of the Pod's pin dir (None: no dir).
    pub fn pins(&self) -> Option<Vec<String>> {
        let entries = match fs::read_dir(self.pin_dir()) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => panic!("cannot list {}: {e}", self.pin_dir().display()),
        };
        let mut names: Vec<String> = entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Some(names)
    }

    pub fn add(&self, bw: Option<&Value>) -> CniOut {
        self.cnitool("add", bw, &[], Some(&self.netns_path))
    }

    /// ADD with the Pod's annotations passed as containerd does (capability
    /// `io.kubernetes.cri.pod-annotations`).
    pub fn add_with_annotations(&self, bw: Option<&Value>, annotations: &Value) -> CniOut {
        let mut cmd = self.cnitool_command(cnitool(), "add", Some(&self.netns_path));
        if let Some(bw) = bw {
            cmd.arg("--bandwidth").arg(bw.to_string());
        }
        cmd.arg("--annotations").arg(annotations.to_string());
        let what = format!(
            "cnitool add {} (bandwidth {bw:?}, annotations {annotations})",
            self.id
        );
        CniOut::from_output(what, run_cni(&mut cmd))
    }

    pub fn add_with_env(&self, bw: Option<&Value>, env: &[(&str, &str)]) -> CniOut {
        self.cnitool("add", bw, env, Some(&self.netns_path))
    }

    pub fn check(&self, bw: Option<&Value>) -> CniOut {
        self.cnitool("check", bw, &[], Some(&self.netns_path))
    }

    pub fn del(&self, bw: Option<&Value>) -> CniOut {
        self.cnitool("del", bw, &[], Some(&self.netns_path))
    }

    /// DEL as a runtime does once the netns is gone: CNI_NETNS empty.
    pub fn del_without_netns(&self) -> CniOut {
        self.cnitool("del", None, &[], None)
    }

    /// `ip netns del`: the Pod's end of the veth (and so the host end) goes.
    pub fn delete_netns(&self) {
        run_ok(Command::new("ip").args(["netns", "del", &self.netns_name]));
    }

    /// A command run inside the Pod's netns.
    pub fn exec(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns_name, program]);
        cmd
    }

    fn cnitool(
        &self,
        verb: &str,
        bw: Option<&Value>,
        env: &[(&str, &str)],
        netns: Option<&Path>,
    ) -> CniOut {
        let mut cmd = self.cnitool_command(cnitool(), verb, netns);
        if let Some(bw) = bw {
            cmd.arg("--bandwidth").arg(bw.to_string());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let what = format!("cnitool {verb} {} (bandwidth {bw:?}, env {env:?})", self.id);
        CniOut::from_output(what, run_cni(&mut cmd))
    }

    fn cnitool_command(&self, tool: &Path, verb: &str, netns: Option<&Path>) -> Command {
        let mut cmd = Command::new(tool);
        cmd.arg(verb)
            .arg("--conf")
            .arg(&self.net.conf)
            .arg("--netns")
            .arg(netns.map(Path::as_os_str).unwrap_or_default())
            .args(["--id", &self.id, "--ifname", &self.ifname])
            .arg("--cni-path")
            .arg(self.net.cni_path())
            .arg("--cache-dir")
            .arg(&self.net.cache_dir)
            .env("NATRA_PIN_ROOT", &self.net.pin_root)
            .env_remove("NATRA_FAIL_AFTER_ATTACHES");
        cmd
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        // Never panics: a panic while unwinding from a failed assertion aborts.
        if let Some(tool) = CNITOOL.get() {
            let netns = self
                .netns_path
                .exists()
                .then_some(self.netns_path.as_path());
            match self.cnitool_command(tool, "del", netns).output() {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "cleanup: cnitool del {} failed: {}{}",
                    self.id,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => eprintln!("cleanup: cannot run cnitool del {}: {e}", self.id),
            }
        }
        if self.netns_path.exists() {
            let _ = run(Command::new("ip").args(["netns", "del", &self.netns_name]));
        }
    }
}

/// The host end of the Pod's veth as the ADD result names it: the interface
/// without a sandbox.
pub fn host_veth(result: &Value) -> String {
    result["interfaces"]
        .as_array()
        .and_then(|ifs| ifs.iter().find(|i| i.get("sandbox").is_none()))
        .and_then(|i| i["name"].as_str())
        .unwrap_or_else(|| panic!("no host interface in the ADD result {result}"))
        .to_owned()
}

/// The Pod's first IP address (without the prefix length).
pub fn pod_ip(result: &Value) -> String {
    let cidr = result["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no ips[0].address in the ADD result {result}"));
    cidr.split('/').next().unwrap().to_owned()
}
