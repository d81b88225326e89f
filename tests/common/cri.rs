//! The CRI tier's harness: Debian's containerd, started by the test with its
//! own config in a temp dir, driven over its CRI socket as kubelet drives it
//! (k8s-cri's tonic client), with natra chained the way a node has it (a main
//! ptp + host-local conflist, then `natra install`).
//!
//! Isolation: every [`Containerd`] has its own root, state, sockets, runc
//! root, CNI conf and bin dirs, host-local dataDir, 10.99.N.0/24 subnet (see
//! [`net_prefix`]), natra pin root (`NATRA_PIN_ROOT`) and lock file
//! (`NATRA_LOCK_FILE`): libcni hands containerd's environment to the plugins,
//! so natra's pins of this tier never mix with the other tests'. It is an
//! RAII guard: on drop it stops and removes every sandbox, kills containerd
//! (and any runc container or shim of its own that is left) by PID, unmounts
//! whatever is still mounted under its dir and removes its pins and files.
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerStatus, ContainerStatusRequest, CreateContainerRequest, ImageSpec,
    ImageStatusRequest, LinuxPodSandboxConfig, ListPodSandboxRequest, PodSandbox, PodSandboxConfig,
    PodSandboxMetadata, PodSandboxState, PodSandboxStatusRequest, RemoveContainerRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StatusRequest,
    StopContainerRequest, StopPodSandboxRequest,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tonic::transport::{Channel, Endpoint, Uri};
use yaml_rust2::{Yaml, YamlLoader};

use super::iperf;
use super::kernel;
use super::pod::{net_prefix, run, run_ok};
use super::{natra_bin, repo_root};

/// The sandbox ("pause") image every containerd of the tier imports.
pub const SANDBOX_IMAGE: &str = "localhost/natra-test/pause:1";
/// Bound on every CRI call (a RunPodSandbox takes ~0.2-0.5 s here).
const CRI_TIMEOUT: Duration = Duration::from_secs(90);
/// containerd up, CRI plugin serving, CNI config loaded.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The plugins of the node's main CNI, copied from Debian's package.
const MAIN_PLUGINS: [&str; 3] = ["ptp", "host-local", "loopback"];
const DEBIAN_CNI_DIR: &str = "/usr/lib/cni";

/// Whether the CRI tier can run here: containerd, runc and the tools the
/// image build and the measurements use. When something is missing the test
/// fails under `CI=true` (CI installs them: scripts/install-deps.sh) and
/// otherwise says loudly that it skipped.
pub fn cri_available(test: &str) -> bool {
    let missing: Vec<&str> = [
        "containerd",
        "containerd-shim-runc-v2",
        "runc",
        "ctr",
        "gcc",
        "python3",
        "nsenter",
        "iperf3",
    ]
    .into_iter()
    .filter(|b| which(b).is_none())
    .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "the CRI tier needs {missing:?} on the PATH (scripts/install-deps.sh installs \
         containerd runc protobuf-compiler gcc libc6-dev python3)"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {msg}");
    }
    eprintln!(
        "\n==================================================================\n\
         SKIPPING {test}: {msg}\n\
         ==================================================================\n"
    );
    false
}

/// PATH with the sbin dirs (runc lives in /usr/sbin), for containerd too.
fn path_env() -> String {
    let mut path = std::env::var("PATH").unwrap_or_default();
    for dir in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        if !path.split(':').any(|p| p == dir) {
            if !path.is_empty() {
                path.push(':');
            }
            path.push_str(dir);
        }
    }
    path
}

fn which(program: &str) -> Option<PathBuf> {
    path_env()
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// The natra the tier installs: cargo's build of this tree, or the binary
/// NATRA_CRI_NATRA names (e.g. target/release/natra, or an older build to
/// see what the tier catches).
pub fn natra_under_test() -> PathBuf {
    std::env::var_os("NATRA_CRI_NATRA")
        .map(PathBuf::from)
        .unwrap_or_else(natra_bin)
}

static BPFFS: OnceLock<()> = OnceLock::new();

/// bpffs at /sys/fs/bpf (what `make test` does before the tests).
fn ensure_bpffs() {
    BPFFS.get_or_init(|| {
        run_ok(&mut Command::new(
            repo_root().join("scripts/mount-bpffs.sh"),
        ));
    });
}

static IMAGE: OnceLock<PathBuf> = OnceLock::new();

/// The sandbox image as an OCI archive: scripts/cri/pause.c built static,
/// packed by scripts/cri/mkimage.py; once per test binary run.
pub fn sandbox_image_tar() -> &'static Path {
    IMAGE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let build = dir.join(format!("cri-image-{}", std::process::id()));
        let _ = fs::remove_dir_all(&build);
        fs::create_dir_all(&build).expect("cannot create the image build dir");
        let pause = build.join("pause");
        run_ok(
            Command::new("gcc")
                .args(["-static", "-Os", "-o"])
                .arg(&pause)
                .arg(repo_root().join("scripts/cri/pause.c")),
        );
        let tar = build.join("pause.tar");
        run_ok(
            Command::new("python3")
                .arg(repo_root().join("scripts/cri/mkimage.py"))
                .args(["--name", SANDBOX_IMAGE, "--entrypoint", "/pause"])
                .arg("--out")
                .arg(&tar)
                .arg("--file")
                .arg(format!("{}:/pause", pause.display())),
        );
        // Renamed into place: a concurrent run never imports half a file.
        let out = dir.join("cri-pause.tar");
        fs::rename(&tar, &out).expect("cannot move the image archive into place");
        let _ = fs::remove_dir_all(&build);
        out
    })
}

/// What the conf dir holds when containerd starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    /// Only the main conflist (ptp + host-local): no natra at all.
    MainOnly,
    /// The main conflist and natra's 00-natra.conflist from `natra install`.
    Natra,
    /// As `Natra`, with bin/natra a wrapper that logs each call (verb,
    /// CNI_NETNS, CNI_ARGS) to [`Containerd::cni_log`] and execs natra.
    NatraLogged,
}

/// One containerd of the tier with its own everything (see the module doc).
pub struct Containerd {
    pub name: String,
    pub work: PathBuf,
    pub sock: PathBuf,
    pub conf_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub pin_root: PathBuf,
    pub subnet: u8,
    pub net_name: String,
    /// The wrapper's log (Chain::NatraLogged).
    pub cni_log: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// [`Containerd::shared_bpffs`]'s bind of /sys/fs/bpf.
    bpffs_bind: Option<PathBuf>,
}

impl Containerd {
    /// Writes the config and CNI dirs and starts containerd; returns once its
    /// CRI answers with RuntimeReady and NetworkReady and the sandbox image is
    /// imported. `name` must be short and hold only `[a-z0-9-]`.
    pub fn start(name: &str, subnet: u8, chain: Chain) -> Containerd {
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "name {name:?} must be [a-z0-9-]"
        );
        ensure_bpffs();
        let image = sandbox_image_tar();
        let pid = std::process::id();
        let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cri-{name}-{pid}"));
        let _ = fs::remove_dir_all(&work);
        for sub in ["root", "state", "runc", "conf", "bin", "ipam", "pod-logs"] {
            fs::create_dir_all(work.join(sub)).expect("cannot create the containerd work dir");
        }
        let sock = work.join("containerd.sock");
        assert!(
            sock.as_os_str().len() < 100,
            "{} is too long for a unix socket path",
            sock.display()
        );
        let mut cd = Containerd {
            name: name.to_owned(),
            sock,
            conf_dir: work.join("conf"),
            bin_dir: work.join("bin"),
            pin_root: PathBuf::from(format!("/sys/fs/bpf/natra-test-cri-{name}-{pid}")),
            subnet,
            net_name: format!("natra-cri-{name}-{pid}"),
            cni_log: work.join("cni-calls.log"),
            config: work.join("config.toml"),
            log: work.join("containerd.log"),
            work,
            child: None,
            bpffs_bind: None,
        };
        for plugin in MAIN_PLUGINS {
            fs::copy(
                Path::new(DEBIAN_CNI_DIR).join(plugin),
                cd.bin_dir.join(plugin),
            )
            .unwrap_or_else(|e| panic!("cannot copy {DEBIAN_CNI_DIR}/{plugin}: {e}"));
        }
        cd.write_main_conflist();
        match chain {
            Chain::MainOnly => {}
            Chain::Natra => cd.install_natra(false),
            Chain::NatraLogged => cd.install_natra(true),
        }
        fs::write(&cd.config, cd.config_toml()).expect("cannot write config.toml");
        {
            // Starting containerd costs CPU: never while a rate is measured.
            let _shared = super::quiet::cni_call();
            cd.spawn();
            cd.import_image(image);
        }
        cd
    }

    /// The node's main network: ptp + host-local on this containerd's subnet.
    fn write_main_conflist(&self) {
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": self.net_name,
            "plugins": [{
                "type": "ptp",
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "subnet": format!("{}.{}.0/24", net_prefix(), self.subnet),
                    "dataDir": self.work.join("ipam"),
                    "routes": [{ "dst": "0.0.0.0/0" }],
                }
            }]
        });
        // containerd reloads its conf dir on inotify: temp file + rename.
        let tmp = self.work.join("10-main.conflist.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(&conflist).unwrap())
            .expect("cannot write the main conflist");
        fs::rename(&tmp, self.conf_dir.join("10-main.conflist"))
            .expect("cannot move the main conflist into place");
    }

    /// `natra install`, as the DaemonSet runs it: natra copied into the bin
    /// dir, 00-natra.conflist chaining it after the main conflist.
    fn install_natra(&self, logged: bool) {
        let out = run_ok(
            Command::new(natra_under_test())
                .env_remove("CNI_COMMAND")
                .arg("install")
                .arg("--cni-conf-dir")
                .arg(&self.conf_dir)
                .arg("--cni-bin-dir")
                .arg(&self.bin_dir),
        );
        eprintln!("[{}] natra install: {}", self.name, out.trim());
        let chained = fs::read_to_string(self.conf_dir.join("00-natra.conflist"))
            .expect("natra install wrote no 00-natra.conflist");
        let chained: Value = serde_json::from_str(&chained).expect("00-natra.conflist is JSON");
        let plugins = chained["plugins"].as_array().expect("plugins");
        assert_eq!(
            plugins
                .last()
                .map(|p| (&p["type"], &p["capabilities"]["bandwidth"])),
            Some((&json!("natra"), &json!(true))),
            "natra install must chain natra last with the bandwidth capability: {chained}"
        );
        if logged {
            let natra = self.bin_dir.join("natra");
            let real = self.bin_dir.join("natra.real");
            fs::rename(&natra, &real).expect("cannot move natra aside");
            let wrapper = format!(
                "#!/bin/sh\n\
                 # The CRI tier's call log: what containerd asked of natra.\n\
                 echo \"$CNI_COMMAND netns=$CNI_NETNS args=$CNI_ARGS\" >> '{}'\n\
                 exec '{}' \"$@\"\n",
                self.cni_log.display(),
                real.display()
            );
            let tmp = self.bin_dir.join("natra.tmp");
            fs::write(&tmp, wrapper).expect("cannot write the natra wrapper");
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
            fs::rename(&tmp, &natra).expect("cannot move the wrapper into place");
        }
    }

    fn config_toml(&self) -> String {
        let w = |sub: &str| self.work.join(sub).display().to_string();
        format!(
            r#"version = 2
root = "{root}"
state = "{state}"
# Nothing here needs these; fewer plugins, quicker start.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.native",
]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{image}"
  # No CAP_SYS_RESOURCE here: without it runc fails with "can't get final
  # child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{conf}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{runc}"
        SystemdCgroup = false
"#,
            root = w("root"),
            state = w("state"),
            sock = self.sock.display(),
            image = SANDBOX_IMAGE,
            bin = self.bin_dir.display(),
            conf = self.conf_dir.display(),
            runc = w("runc"),
        )
    }

    /// Starts containerd on this dir and waits until its CRI is ready.
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "containerd is already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("cannot open containerd's log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&self.config)
            .env("PATH", path_env())
            // libcni passes containerd's environment (os.Environ()) on to
            // every plugin: natra's pins and lock of this tier stay apart.
            .env("NATRA_PIN_ROOT", &self.pin_root)
            .env("NATRA_LOCK_FILE", self.work.join("natra.lock"))
            .env_remove("NATRA_FAIL_AFTER_ATTACHES")
            .env_remove("CNI_COMMAND")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start containerd: {e}"));
        self.child = Some(child);
        self.wait_ready();
    }

    /// The containerd's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("containerd is not running").id()
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        let mut last = String::from("socket not there yet");
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "containerd exited ({status}) before it was ready:\n{}",
                    self.log_tail(40)
                );
            }
            if self.sock.exists() {
                match Cri::connect(&self.sock).and_then(|mut c| c.runtime_conditions()) {
                    Ok(conds) if conds.iter().all(|(_, ok)| *ok) && conds.len() >= 2 => return,
                    Ok(conds) => last = format!("conditions {conds:?}"),
                    Err(e) => last = e,
                }
            }
            assert!(
                start.elapsed() < READY_TIMEOUT,
                "containerd not ready after {READY_TIMEOUT:?} ({last}):\n{}",
                self.log_tail(40)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn import_image(&self, tar: &Path) {
        self.import(tar, SANDBOX_IMAGE);
    }

    /// `ctr -n k8s.io images import <tar>` into this containerd, as an
    /// operator loads an image without a registry; returns once the CRI
    /// lists `name`.
    pub fn import(&self, tar: &Path, name: &str) {
        run_ok(
            Command::new("ctr")
                .arg("-a")
                .arg(&self.sock)
                .args(["-n", "k8s.io", "images", "import"])
                .arg(tar),
        );
        // The CRI plugin learns of the image from containerd's events.
        let start = Instant::now();
        let mut cri = self.client();
        while !cri.image_present(name) {
            assert!(
                start.elapsed() < READY_TIMEOUT,
                "the CRI never saw the imported {name}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node's /sys/fs/bpf as a mount source containerd accepts for
    /// HostToContainer (rslave) or Bidirectional propagation, which it
    /// refuses unless the source is a shared or slave mount: on a systemd
    /// node every mount is shared; here /sys/fs/bpf is private, and making
    /// it shared would let other tests' private-mount-ns unmounts reach it.
    /// So: a bind of /sys/fs/bpf (the same bpffs, the same pins) made
    /// shared, outside the work dir (never under a recursive delete),
    /// unmounted and rmdir'ed on drop.
    pub fn shared_bpffs(&mut self) -> PathBuf {
        use nix::mount::{mount, MsFlags};
        if let Some(p) = &self.bpffs_bind {
            return p.clone();
        }
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "cri-bpffs-{}-{}",
            self.name,
            std::process::id()
        ));
        fs::create_dir_all(&dir).expect("cannot create the bpffs bind dir");
        mount(
            Some("/sys/fs/bpf"),
            &dir,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("cannot bind-mount /sys/fs/bpf");
        self.bpffs_bind = Some(dir.clone());
        mount(
            None::<&str>,
            &dir,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .expect("cannot make the bpffs bind shared");
        dir
    }

    /// A fresh CRI connection (one per thread: the client blocks).
    pub fn client(&self) -> Cri {
        Cri::connect(&self.sock).unwrap_or_else(|e| panic!("[{}] CRI connect: {e}", self.name))
    }

    /// Kills containerd by PID (SIGKILL, as a crash would) and starts it again
    /// on the same dirs; shims and sandboxes live on.
    /// Returns how long containerd took to be ready again.
    pub fn restart(&mut self) -> Duration {
        let _shared = super::quiet::cni_call();
        let start = Instant::now();
        let mut child = self.child.take().expect("containerd is not running");
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let _ = child.wait();
        self.spawn();
        start.elapsed()
    }

    /// The last `n` lines of containerd's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The UID the Pod `name` gets in its sandbox metadata.
    pub fn pod_uid(&self, name: &str) -> String {
        format!("{}-{name}-{}", self.name, std::process::id())
    }

    /// IDs of the containers runc runs under this containerd's runc root.
    pub fn runc_containers(&self) -> Vec<String> {
        let runc_root = self.work.join("runc").join("k8s.io");
        if !runc_root.exists() {
            return Vec::new();
        }
        let out = run(Command::new("runc")
            .env("PATH", path_env())
            .arg("--root")
            .arg(&runc_root)
            .args(["list", "-q"]));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    /// The sandbox netns files containerd holds (netns_mounts_under_state_dir).
    pub fn netns_files(&self) -> Vec<String> {
        list_dir(&self.netns_dir()).unwrap_or_default()
    }

    pub fn netns_dir(&self) -> PathBuf {
        self.work.join("state/io.containerd.grpc.v1.cri/netns")
    }

    /// A Pod's sandbox config as kubelet sends it (metadata, hostname, log
    /// directory, annotations; Linux security context left default).
    pub fn pod_config(&self, name: &str, annotations: &[(&str, &str)]) -> PodSandboxConfig {
        let log_directory = self.work.join("pod-logs").join(name);
        fs::create_dir_all(&log_directory).expect("cannot create the Pod's log dir");
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.to_owned(),
                uid: self.pod_uid(name),
                namespace: "natra-cri".to_owned(),
                attempt: 0,
            }),
            hostname: name.to_owned(),
            log_directory: log_directory.display().to_string(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            linux: Some(LinuxPodSandboxConfig::default()),
            ..Default::default()
        }
    }

    /// natra's pin dir for a sandbox's eth0: `<container id>:eth0` right
    /// under the pin root or under its network's directory
    /// (`<root>/<network>/<id>:eth0`), wherever natra put it; the flat path
    /// when there is none.
    pub fn pin_dir(&self, sandbox_id: &str) -> PathBuf {
        let name = format!("{sandbox_id}:eth0");
        self.attachment_dirs()
            .into_iter()
            .find(|d| d.file_name().is_some_and(|n| n == name.as_str()))
            .unwrap_or_else(|| self.pin_root.join(name))
    }

    /// Sorted entries of a sandbox's pin dir (None: no dir).
    pub fn pins(&self, sandbox_id: &str) -> Option<Vec<String>> {
        list_dir(&self.pin_dir(sandbox_id))
    }

    /// natra's attachment dirs (`<container id>:<ifname>`) under the pin
    /// root, one or two levels down.
    pub fn attachment_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for top in list_dir(&self.pin_root).unwrap_or_default() {
            let top = self.pin_root.join(top);
            if !top.is_dir() {
                continue;
            }
            if top.file_name().unwrap().to_string_lossy().contains(':') {
                dirs.push(top);
            } else {
                for sub in list_dir(&top).unwrap_or_default() {
                    if sub.contains(':') {
                        dirs.push(top.join(sub));
                    }
                }
            }
        }
        dirs
    }

    /// What natra still pins, relative to the pin root: its attachment dirs
    /// and the slots of the shared dataplane still held, as
    /// `~dataplane/<layout>/slots/<n>` (empty when there is no pin root;
    /// the shared dataplane itself stays, a node component).
    pub fn pin_root_entries(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .attachment_dirs()
            .iter()
            .map(|d| {
                d.strip_prefix(&self.pin_root)
                    .unwrap_or(d)
                    .display()
                    .to_string()
            })
            .collect();
        let base = self.pin_root.join("~dataplane");
        for layout in list_dir(&base).unwrap_or_default() {
            for slot in list_dir(&base.join(&layout).join("slots")).unwrap_or_default() {
                out.push(format!("~dataplane/{layout}/slots/{slot}"));
            }
        }
        out
    }

    /// The natra binary `natra install` copied into the bin dir (what the
    /// plugins run; cargo may replace target/*/natra while tests run).
    pub fn installed_natra(&self) -> PathBuf {
        let real = self.bin_dir.join("natra.real");
        if real.exists() {
            real
        } else {
            self.bin_dir.join("natra")
        }
    }

    /// `natra inspect --json` over this containerd's pin root.
    pub fn inspect(&self) -> Vec<Value> {
        if !self.pin_root.exists() {
            return Vec::new();
        }
        let out = run_ok(
            Command::new(self.installed_natra())
                .env_remove("CNI_COMMAND")
                .env("NATRA_PIN_ROOT", &self.pin_root)
                .args(["inspect", "--json"]),
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("natra inspect --json: {e}: {out}"))
    }

    /// The calls the wrapper logged (Chain::NatraLogged).
    pub fn cni_calls(&self) -> Vec<CniCall> {
        match fs::read_to_string(&self.cni_log) {
            Ok(log) => log.lines().map(CniCall::parse).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("cannot read {}: {e}", self.cni_log.display()),
        }
    }

    /// Stops and removes every sandbox this containerd knows (best effort).
    fn remove_all_sandboxes(&self) {
        let Ok(mut cri) = Cri::connect(&self.sock) else {
            return;
        };
        let Ok(list) = cri.list() else { return };
        for sb in list {
            if let Err(e) = cri.stop(&sb.id) {
                eprintln!("cleanup: StopPodSandbox {}: {}", sb.id, e.message());
            }
            if let Err(e) = cri.remove(&sb.id) {
                eprintln!("cleanup: RemovePodSandbox {}: {}", sb.id, e.message());
            }
        }
    }

    /// Whatever runc still runs under this containerd's runc root, and any
    /// shim serving its socket, killed by PID.
    fn kill_leftovers(&self) {
        let runc_root = self.work.join("runc").join("k8s.io");
        for id in self.runc_containers() {
            eprintln!("cleanup: runc container {id} left: killing it");
            let _ = run(Command::new("runc")
                .env("PATH", path_env())
                .arg("--root")
                .arg(&runc_root)
                .args(["delete", "--force", &id]));
        }
        for pid in shim_pids(&self.sock) {
            eprintln!("cleanup: shim {pid} of {} left: killing it", self.name);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// Unmounts (lazily, deepest first) whatever is mounted under the work
    /// dir: netns bind mounts, sandbox rootfs overlays.
    fn unmount_all(&self) {
        let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let mut points: Vec<PathBuf> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|p| PathBuf::from(unescape_mountinfo(p)))
            .filter(|p| p.starts_with(&self.work))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for p in points {
            if let Err(e) = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
                eprintln!("cleanup: cannot unmount {}: {e}", p.display());
            }
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Never panics: a panic while unwinding from a failed assertion aborts.
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                self.remove_all_sandboxes();
            }
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = kill(pid, Signal::SIGKILL);
            }
            let _ = child.wait();
        }
        self.kill_leftovers();
        self.unmount_all();
        if let Some(bind) = self.bpffs_bind.take() {
            match nix::mount::umount2(&bind, nix::mount::MntFlags::MNT_DETACH) {
                // remove_dir: never recursive, never into the node's bpffs.
                Ok(()) => {
                    if let Err(e) = fs::remove_dir(&bind) {
                        eprintln!("cleanup: cannot remove {}: {e}", bind.display());
                    }
                }
                Err(e) => eprintln!("cleanup: cannot unmount {}: {e}", bind.display()),
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.pin_root) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("cleanup: cannot remove {}: {e}", self.pin_root.display());
            }
        }
        // libcni's result cache (containerd does not move it off /var/lib/cni).
        if let Ok(entries) = fs::read_dir("/var/lib/cni/results") {
            let prefix = format!("{}-", self.net_name);
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.work) {
            eprintln!("cleanup: cannot remove {}: {e}", self.work.display());
        }
    }
}

fn list_dir(dir: &Path) -> Option<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot list {}: {e}", dir.display()),
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Some(names)
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// PIDs of containerd-shim-runc-v2 processes started by the containerd
/// listening on `sock` (their command line names it after `-address`).
fn shim_pids(sock: &Path) -> Vec<i32> {
    let sock = sock.as_os_str().as_encoded_bytes();
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            let is_shim = args
                .first()
                .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"));
            let ours = args.windows(2).any(|w| w[0] == b"-address" && w[1] == sock);
            (is_shim && ours).then_some(pid)
        })
        .collect()
}

/// One call the natra wrapper logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniCall {
    pub command: String,
    pub netns: String,
    pub args: String,
}

impl CniCall {
    fn parse(line: &str) -> CniCall {
        let (command, rest) = line.split_once(" netns=").unwrap_or((line, ""));
        let (netns, args) = rest.split_once(" args=").unwrap_or((rest, ""));
        CniCall {
            command: command.to_owned(),
            netns: netns.to_owned(),
            args: args.to_owned(),
        }
    }

    /// A `KEY=value` of CNI_ARGS.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .split(';')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }

    /// The sandbox the call was for (K8S_POD_INFRA_CONTAINER_ID).
    pub fn sandbox(&self) -> Option<&str> {
        self.arg("K8S_POD_INFRA_CONTAINER_ID")
    }
}

/// A blocking CRI v1 client over containerd's unix socket (tonic underneath,
/// on its own single-threaded runtime).
pub struct Cri {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    image: ImageServiceClient<Channel>,
}

impl Cri {
    pub fn connect(sock: &Path) -> Result<Cri, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let sock = sock.to_owned();
        let channel = rt
            .block_on(async move {
                // The URI is a placeholder: the connector dials the socket.
                Endpoint::from_static("http://[::]:50051")
                    .timeout(CRI_TIMEOUT)
                    .connect_timeout(Duration::from_secs(5))
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let sock = sock.clone();
                        async move {
                            let stream = tokio::net::UnixStream::connect(sock).await?;
                            Ok::<_, io::Error>(TokioIo::new(stream))
                        }
                    }))
                    .await
            })
            .map_err(|e| format!("connect: {e:?}"))?;
        Ok(Cri {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            image: ImageServiceClient::new(channel),
        })
    }

    /// The runtime's conditions (RuntimeReady, NetworkReady) from Status.
    pub fn runtime_conditions(&mut self) -> Result<Vec<(String, bool)>, String> {
        let resp = self
            .rt
            .block_on(self.runtime.status(StatusRequest { verbose: false }))
            .map_err(|e| format!("Status: {}", e.message()))?
            .into_inner();
        Ok(resp
            .status
            .map(|s| {
                s.conditions
                    .into_iter()
                    .map(|c| (c.r#type, c.status))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub fn image_present(&mut self, name: &str) -> bool {
        let req = ImageStatusRequest {
            image: Some(ImageSpec {
                image: name.to_owned(),
                ..Default::default()
            }),
            verbose: false,
        };
        self.rt
            .block_on(self.image.image_status(req))
            .is_ok_and(|r| r.into_inner().image.is_some())
    }

    /// RunPodSandbox, during which natra's ADD runs: shares the machine with
    /// other CNI calls, never with a measurement (common::quiet).
    pub fn run_pod(&mut self, config: PodSandboxConfig) -> Result<String, tonic::Status> {
        let _shared = super::quiet::cni_call();
        self.run_pod_unlocked(config)
    }

    /// RunPodSandbox without taking common::quiet (the caller holds it).
    pub fn run_pod_unlocked(&mut self, config: PodSandboxConfig) -> Result<String, tonic::Status> {
        let req = RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        self.rt
            .block_on(self.runtime.run_pod_sandbox(req))
            .map(|r| r.into_inner().pod_sandbox_id)
    }

    pub fn stop(&mut self, id: &str) -> Result<(), tonic::Status> {
        let _shared = super::quiet::cni_call();
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.rt
            .block_on(self.runtime.stop_pod_sandbox(req))
            .map(|_| ())
    }

    pub fn remove(&mut self, id: &str) -> Result<(), tonic::Status> {
        let _shared = super::quiet::cni_call();
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.rt
            .block_on(self.runtime.remove_pod_sandbox(req))
            .map(|_| ())
    }

    pub fn list(&mut self) -> Result<Vec<PodSandbox>, tonic::Status> {
        self.rt
            .block_on(
                self.runtime
                    .list_pod_sandbox(ListPodSandboxRequest { filter: None }),
            )
            .map(|r| r.into_inner().items)
    }

    /// PodSandboxStatus (verbose), read into what the tests look at.
    pub fn sandbox(&mut self, id: &str) -> Result<Sandbox, tonic::Status> {
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: true,
        };
        let resp = self
            .rt
            .block_on(self.runtime.pod_sandbox_status(req))?
            .into_inner();
        let status = resp
            .status
            .ok_or_else(|| tonic::Status::internal("PodSandboxStatus without a status"))?;
        let info: Value = resp
            .info
            .get("info")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        let netns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .and_then(|nss| nss.iter().find(|ns| ns["type"] == "network"))
            .and_then(|ns| ns["path"].as_str())
            .map(PathBuf::from);
        Ok(Sandbox {
            id: status.id,
            name: status.metadata.map(|m| m.name).unwrap_or_default(),
            ready: status.state == PodSandboxState::SandboxReady as i32,
            ip: status.network.map(|n| n.ip).unwrap_or_default(),
            pid: info["pid"].as_u64().unwrap_or(0) as u32,
            netns,
            info,
        })
    }

    /// Stop then Remove, both required to succeed.
    pub fn stop_remove(&mut self, id: &str) {
        self.stop(id)
            .unwrap_or_else(|e| panic!("StopPodSandbox {id}: {}", e.message()));
        self.remove(id)
            .unwrap_or_else(|e| panic!("RemovePodSandbox {id}: {}", e.message()));
    }

    pub fn create_container(
        &mut self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> Result<String, tonic::Status> {
        let req = CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        self.rt
            .block_on(self.runtime.create_container(req))
            .map(|r| r.into_inner().container_id)
    }

    pub fn start_container(&mut self, id: &str) -> Result<(), tonic::Status> {
        let req = StartContainerRequest {
            container_id: id.to_owned(),
        };
        self.rt
            .block_on(self.runtime.start_container(req))
            .map(|_| ())
    }

    /// StopContainer: SIGTERM (the image's stop signal), SIGKILL after
    /// `timeout_s`, as kubelet does with terminationGracePeriodSeconds.
    pub fn stop_container(&mut self, id: &str, timeout_s: i64) -> Result<(), tonic::Status> {
        let req = StopContainerRequest {
            container_id: id.to_owned(),
            timeout: timeout_s,
        };
        self.rt
            .block_on(self.runtime.stop_container(req))
            .map(|_| ())
    }

    pub fn remove_container(&mut self, id: &str) -> Result<(), tonic::Status> {
        let req = RemoveContainerRequest {
            container_id: id.to_owned(),
        };
        self.rt
            .block_on(self.runtime.remove_container(req))
            .map(|_| ())
    }

    /// ContainerStatus (verbose): the status and the process's PID.
    pub fn container_status(&mut self, id: &str) -> Result<(ContainerStatus, u32), tonic::Status> {
        let req = ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: true,
        };
        let resp = self
            .rt
            .block_on(self.runtime.container_status(req))?
            .into_inner();
        let info: Value = resp
            .info
            .get("info")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        let status = resp
            .status
            .ok_or_else(|| tonic::Status::internal("ContainerStatus without a status"))?;
        Ok((status, info["pid"].as_u64().unwrap_or(0) as u32))
    }
}

/// The natra agent's container as deploy/natra-agent.yaml declares it: what
/// the CRI tier hands containerd, and what tests/deploy.rs checks.
pub const AGENT_MANIFEST: &str = "deploy/natra-agent.yaml";

/// The manifest, parsed (one document).
pub fn agent_daemonset() -> Yaml {
    let path = repo_root().join(AGENT_MANIFEST);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut docs =
        YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(docs.len(), 1, "{AGENT_MANIFEST}: one document");
    docs.remove(0)
}

/// One volumeMount with its hostPath volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentMount {
    pub name: String,
    pub host_path: String,
    pub container_path: String,
    /// mountPropagation as written (None: the default, private).
    pub propagation: Option<String>,
    pub read_only: bool,
}

/// The DaemonSet's one container, read from the manifest.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub image: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<AgentMount>,
    pub privileged: bool,
    pub caps_add: Vec<String>,
    pub caps_drop: Vec<String>,
    pub run_as_user: Option<i64>,
    pub readonly_rootfs: bool,
    pub seccomp: Option<String>,
    pub host_network: bool,
    /// resources.{requests,limits}.{cpu,memory} as written.
    pub cpu_request: String,
    pub cpu_limit: String,
    pub memory_limit: String,
}

pub fn yaml_strs(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("not a list: {y:?}"))
        .iter()
        .map(|s| match s {
            Yaml::String(s) => s.clone(),
            Yaml::Integer(i) => i.to_string(),
            other => panic!("not a string: {other:?}"),
        })
        .collect()
}

/// The one container of the DaemonSet's Pod.
pub fn agent_container(ds: &Yaml) -> &Yaml {
    let containers = ds["spec"]["template"]["spec"]["containers"]
        .as_vec()
        .expect("spec.template.spec.containers");
    assert_eq!(containers.len(), 1, "one container: the agent");
    &containers[0]
}

impl AgentSpec {
    pub fn from_manifest() -> AgentSpec {
        let ds = agent_daemonset();
        let pod = &ds["spec"]["template"]["spec"];
        let c = agent_container(&ds);
        let volumes = pod["volumes"].as_vec().expect("volumes");
        let mounts = c["volumeMounts"]
            .as_vec()
            .expect("volumeMounts")
            .iter()
            .map(|m| {
                let name = m["name"].as_str().expect("volumeMount name").to_owned();
                let host_path = volumes
                    .iter()
                    .find(|v| v["name"].as_str() == Some(name.as_str()))
                    .and_then(|v| v["hostPath"]["path"].as_str())
                    .unwrap_or_else(|| panic!("no hostPath volume {name}"))
                    .to_owned();
                AgentMount {
                    name,
                    host_path,
                    container_path: m["mountPath"].as_str().expect("mountPath").to_owned(),
                    propagation: m["mountPropagation"].as_str().map(str::to_owned),
                    read_only: m["readOnly"].as_bool().unwrap_or(false),
                }
            })
            .collect();
        let sc = &c["securityContext"];
        let list = |y: &Yaml| {
            if y.is_badvalue() {
                Vec::new()
            } else {
                yaml_strs(y)
            }
        };
        let res = |kind: &str, what: &str| {
            c["resources"][kind][what]
                .as_str()
                .unwrap_or_else(|| panic!("resources.{kind}.{what} is not a string"))
                .to_owned()
        };
        AgentSpec {
            image: c["image"].as_str().expect("image").to_owned(),
            command: yaml_strs(&c["command"]),
            env: c["env"]
                .as_vec()
                .map(|env| {
                    env.iter()
                        .map(|e| {
                            (
                                e["name"].as_str().expect("env name").to_owned(),
                                e["value"].as_str().expect("env value").to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            mounts,
            privileged: sc["privileged"].as_bool().unwrap_or(false),
            caps_add: list(&sc["capabilities"]["add"]),
            caps_drop: list(&sc["capabilities"]["drop"]),
            run_as_user: sc["runAsUser"].as_i64(),
            readonly_rootfs: sc["readOnlyRootFilesystem"].as_bool().unwrap_or(false),
            seccomp: sc["seccompProfile"]["type"].as_str().map(str::to_owned),
            host_network: pod["hostNetwork"].as_bool().unwrap_or(false),
            cpu_request: res("requests", "cpu"),
            cpu_limit: res("limits", "cpu"),
            memory_limit: res("limits", "memory"),
        }
    }

    /// The value after `flag` in the command.
    pub fn arg(&self, flag: &str) -> Option<&str> {
        self.command
            .windows(2)
            .find(|w| w[0] == flag)
            .map(|w| w[1].as_str())
    }

    /// The command with `flag`'s value replaced (the flag must be there).
    pub fn command_with(&self, flag: &str, value: &str) -> Vec<String> {
        let i = self
            .command
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("the agent's command has no {flag}: {:?}", self.command));
        let mut cmd = self.command.clone();
        cmd[i + 1] = value.to_owned();
        cmd
    }

    /// The mount named `name`.
    pub fn mount(&self, name: &str) -> &AgentMount {
        self.mounts
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("the agent has no volumeMount {name}"))
    }
}

/// A Kubernetes CPU quantity in millicores ("10m", "0.2", "1").
pub fn millicores(q: &str) -> i64 {
    match q.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or_else(|_| panic!("bad CPU quantity {q}")),
        None => {
            (q.parse::<f64>()
                .unwrap_or_else(|_| panic!("bad CPU quantity {q}"))
                * 1000.0) as i64
        }
    }
}

/// A Kubernetes memory quantity in bytes ("32Mi", "1Gi", "64M", "1000").
pub fn bytes_of(q: &str) -> i64 {
    for (suffix, mul) in [
        ("Ki", 1i64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ] {
        if let Some(n) = q.strip_suffix(suffix) {
            return n
                .parse::<i64>()
                .unwrap_or_else(|_| panic!("bad quantity {q}"))
                * mul;
        }
    }
    q.parse()
        .unwrap_or_else(|_| panic!("bad memory quantity {q}"))
}

/// A sandbox as PodSandboxStatus (verbose) shows it.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub id: String,
    pub name: String,
    pub ready: bool,
    /// The Pod's IP (network.ip).
    pub ip: String,
    /// The pause process (verbose info).
    pub pid: u32,
    /// The netns path from the runtime spec (verbose info).
    pub netns: Option<PathBuf>,
    pub info: Value,
}

impl Sandbox {
    /// The network namespace to enter: the runtime spec's path, or the
    /// pause process's.
    pub fn netns_path(&self) -> PathBuf {
        self.netns
            .clone()
            .or_else(|| {
                (self.pid != 0).then(|| PathBuf::from(format!("/proc/{}/ns/net", self.pid)))
            })
            .unwrap_or_else(|| panic!("sandbox {} has neither a netns path nor a pid", self.id))
    }

    /// A command run inside the sandbox's netns.
    pub fn exec(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns_path().display()))
            .arg(program);
        cmd
    }

    /// The host end of the sandbox's eth0 (name, ifindex): the peer ifindex
    /// `ip -j link` shows inside the netns, looked up in the host netns.
    pub fn host_veth(&self) -> (String, u32) {
        let out = run_ok(self.exec("ip").args(["-j", "link", "show", "dev", "eth0"]));
        let links: Value = serde_json::from_str(&out).expect("ip -j link is JSON");
        let peer = links[0]["link_index"]
            .as_u64()
            .unwrap_or_else(|| panic!("eth0 of {} has no link_index: {out}", self.id))
            as u32;
        let host: Value =
            serde_json::from_str(&run_ok(Command::new("ip").args(["-j", "link", "show"])))
                .expect("ip -j link is JSON");
        let name = host
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["ifindex"].as_u64() == Some(peer as u64))
            .and_then(|l| l["ifname"].as_str())
            .unwrap_or_else(|| {
                panic!(
                    "no host interface with ifindex {peer} (peer of {})",
                    self.id
                )
            })
            .to_owned();
        (name, peer)
    }

    /// The Pod's default gateway (the host end of ptp's veth).
    pub fn gateway(&self) -> String {
        let out = run_ok(
            self.exec("ip")
                .args(["-j", "-4", "route", "show", "default"]),
        );
        let routes: Value = serde_json::from_str(&out).expect("ip -j route is JSON");
        routes[0]["gateway"]
            .as_str()
            .unwrap_or_else(|| panic!("no default route in {}: {out}", self.id))
            .to_owned()
    }
}

/// natra's programs at the tcx hooks of a host device, as (hook, name).
pub fn natra_progs_on(ifindex: u32) -> Vec<(&'static str, String)> {
    let (ingress, egress) = kernel::tcx_both(ifindex);
    let mut out = Vec::new();
    for (hook, att) in [("tcx ingress", ingress), ("tcx egress", egress)] {
        for id in att.prog_ids {
            let name = kernel::prog_name(id);
            if name == "pod_ingress" || name == "pod_egress" {
                out.push((hook, name));
            }
        }
    }
    out.sort();
    out
}

/// One TCP rate between the host and a sandbox, receiver side (bits/s):
/// a one-off iperf3 server in the sandbox's netns, the client in the host
/// netns; `from_pod` (-R) makes the sandbox the sender (its egress).
/// Holds the machine exclusively (common::quiet).
pub fn iperf_host_pod(sb: &Sandbox, port: u16, from_pod: bool, secs: u32) -> f64 {
    let _exclusive = super::quiet::measuring();
    let mut server = ServerGuard(
        sb.exec("iperf3")
            .args(["-s", "-1", "-J", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start iperf3 in the sandbox"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ss = run(sb.exec("ss").args(["-Hltn", &format!("sport = :{port}")]));
        if !String::from_utf8_lossy(&ss.stdout).trim().is_empty() {
            break;
        }
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!(
                "iperf3 server in {} exited before listening: {status}",
                sb.id
            );
        }
        assert!(Instant::now() < deadline, "iperf3 server never listened");
        thread::sleep(Duration::from_millis(20));
    }
    let mut cmd = Command::new("timeout");
    cmd.args(["30", "iperf3", "-J", "-c", &sb.ip, "-p", &port.to_string()])
        .args([
            "-t",
            &secs.to_string(),
            "-O",
            "1",
            "--connect-timeout",
            "3000",
        ]);
    if from_pod {
        cmd.arg("-R");
    }
    let out: Output = run(&mut cmd);
    let report = iperf::report(&out);
    iperf::received_bps(&report)
}

struct ServerGuard(Child);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// The p-th percentile (0..=100) of samples, nearest rank.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}
