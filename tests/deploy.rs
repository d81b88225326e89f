//! deploy/: the agent DaemonSet's structure, its command run against the real
//! CLI, the image `make image` builds for it, and the example conflists.
//! The CRI tier (tests/cri.rs) runs the same container through containerd.
mod common;

use common::http::http_get;

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::cri::{
    agent_container, agent_daemonset, bytes_of, millicores, AgentSpec, AGENT_MANIFEST,
};
use serde_json::Value;

/// What the agent is allowed, and nothing else: see the manifest's comments.
const CAPS: [&str; 3] = ["BPF", "NET_ADMIN", "SYS_ADMIN"];

/// `natra agent --help`, from the binary cargo built.
fn agent_help() -> String {
    let out = Command::new(common::natra_bin())
        .env_remove("CNI_COMMAND")
        .args(["agent", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success(), "natra agent --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The default the CLI prints for `flag` (`[default: …]` on its line).
fn cli_default(help: &str, flag: &str) -> String {
    let after = help
        .split_once(&format!("{flag} "))
        .unwrap_or_else(|| panic!("natra agent --help has no {flag}:\n{help}"))
        .1;
    after
        .split_once("[default: ")
        .and_then(|(_, d)| d.split_once(']'))
        .map(|(d, _)| d.to_owned())
        .unwrap_or_else(|| panic!("no default for {flag}"))
}

fn port_of(listen: &str) -> i64 {
    listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {listen}"))
}

#[test]
fn daemonset_structure() {
    let ds = agent_daemonset();
    assert_eq!(ds["apiVersion"].as_str(), Some("apps/v1"));
    assert_eq!(ds["kind"].as_str(), Some("DaemonSet"));
    assert_eq!(ds["metadata"]["namespace"].as_str(), Some("kube-system"));
    let template = &ds["spec"]["template"];
    let pod = &template["spec"];
    let selector = ds["spec"]["selector"]["matchLabels"].as_hash().unwrap();
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(
            &template["metadata"]["labels"][k.as_str().unwrap()],
            v,
            "selector matches labels"
        );
    }
    // Every node, tainted or not: one toleration with no key, operator Exists.
    assert!(pod["tolerations"]
        .as_vec()
        .unwrap()
        .iter()
        .any(|t| t["operator"].as_str() == Some("Exists")
            && t["key"].is_badvalue()
            && t["effect"].is_badvalue()));
    assert_eq!(
        pod["priorityClassName"].as_str(),
        Some("system-node-critical")
    );
    assert_eq!(
        ds["spec"]["updateStrategy"]["type"].as_str(),
        Some("RollingUpdate")
    );
    assert_eq!(
        pod["hostNetwork"].as_bool(),
        Some(true),
        "metrics on the node's address"
    );
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    assert!(
        (2..=30).contains(&grace),
        "grace {grace}s: the agent stops in < 1 s"
    );
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
    // No init containers any more, no privileged container: the agent is it.
    assert!(pod["initContainers"].is_badvalue(), "initContainers left");
    assert_eq!(pod["containers"].as_vec().unwrap().len(), 1);
}

#[test]
fn agent_container_least_privilege() {
    let spec = AgentSpec::from_manifest();
    let ds = agent_daemonset();
    let c = agent_container(&ds);
    assert!(!spec.privileged, "the agent must not be privileged");
    assert!(spec.caps_drop.iter().any(|c| c == "ALL"), "drop ALL first");
    let added: BTreeSet<&str> = spec.caps_add.iter().map(String::as_str).collect();
    assert_eq!(
        added,
        BTreeSet::from(CAPS),
        "exactly the capabilities it needs"
    );
    assert_eq!(
        spec.caps_add.len(),
        CAPS.len(),
        "no capability listed twice"
    );
    // The API server rejects allowPrivilegeEscalation: false beside
    // CAP_SYS_ADMIN (or privileged): the DaemonSet would never roll out.
    if added.contains("SYS_ADMIN") {
        assert_ne!(
            c["securityContext"]["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "allowPrivilegeEscalation: false is invalid with SYS_ADMIN"
        );
    }
    assert_eq!(
        spec.run_as_user,
        Some(0),
        "root, for the root-owned node dirs"
    );
    assert!(
        spec.readonly_rootfs,
        "the agent writes nothing to its image"
    );
    assert_eq!(spec.seccomp.as_deref(), Some("RuntimeDefault"));
    // Bidirectional is valid only in a privileged container.
    for m in &spec.mounts {
        assert_ne!(m.propagation.as_deref(), Some("Bidirectional"), "{m:?}");
    }
    // Each added capability says what it is for: a comment right above it.
    let text = fs::read_to_string(common::repo_root().join(AGENT_MANIFEST)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for cap in CAPS {
        let at = lines
            .iter()
            .position(|l| l.trim() == format!("- {cap}"))
            .unwrap_or_else(|| panic!("no `- {cap}` line"));
        assert!(
            at > 0 && lines[at - 1].trim_start().starts_with('#'),
            "capability {cap} has no comment saying what it is for"
        );
    }
}

#[test]
fn agent_command_matches_the_cli() {
    let spec = AgentSpec::from_manifest();
    let help = agent_help();
    assert_eq!(spec.command[..2], ["/natra", "agent"], "runs `natra agent`");
    // Every flag the manifest passes exists in the real CLI.
    for flag in spec.command.iter().filter(|a| a.starts_with("--")) {
        let name = flag.split('=').next().unwrap();
        assert!(
            help.contains(&format!("{name} ")),
            "natra agent has no {name}:\n{help}"
        );
    }
    // The CNI dirs are the ones the hostPath volumes are mounted on.
    let conf = spec.mount("cni-conf");
    let bin = spec.mount("cni-bin");
    let bpffs = spec.mount("bpffs");
    assert_eq!(conf.host_path, "/etc/cni/net.d");
    assert_eq!(bin.host_path, "/opt/cni/bin");
    assert_eq!(bpffs.host_path, "/sys/fs/bpf");
    assert_eq!(
        spec.arg("--cni-conf-dir"),
        Some(conf.container_path.as_str())
    );
    assert_eq!(spec.arg("--cni-bin-dir"), Some(bin.container_path.as_str()));
    assert!(!conf.read_only && !bin.read_only, "the agent writes both");
    // The pins: the node's bpffs at the same path, and a pin root under it.
    assert_eq!(bpffs.container_path, "/sys/fs/bpf");
    assert_eq!(bpffs.propagation.as_deref(), Some("HostToContainer"));
    assert!(
        spec.arg("--bpffs").is_none(),
        "an unprivileged agent's bpffs mount would stay in its own mount ns"
    );
    let pin_root = spec
        .env
        .iter()
        .find(|(k, _)| k == "NATRA_PIN_ROOT")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/sys/fs/bpf/natra");
    assert!(Path::new(pin_root).starts_with(&bpffs.container_path));
    assert_eq!(
        pin_root, "/sys/fs/bpf/natra",
        "the plugin's default pin root"
    );
    assert!(spec.host_network);
}

#[test]
fn probes_and_scrape_annotations_match_the_agent() {
    let spec = AgentSpec::from_manifest();
    let help = agent_help();
    let ds = agent_daemonset();
    let c = agent_container(&ds);
    let default_listen = cli_default(&help, "--listen");
    let listen = spec
        .arg("--listen")
        .map(str::to_owned)
        .unwrap_or(default_listen.clone());
    let port = port_of(&listen);
    assert_eq!(port, port_of(&default_listen), "the agent's default port");
    assert!(
        listen.starts_with("0.0.0.0:"),
        "reachable on the node's address"
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some("/healthz"), "{probe}");
        assert_eq!(get["port"].as_i64(), Some(port), "{probe} port");
    }
    assert_eq!(
        c["ports"][0]["containerPort"].as_i64(),
        Some(port),
        "declared port"
    );
    let ann = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(
        ann["prometheus.io/port"].as_str(),
        Some(port.to_string().as_str())
    );
    assert_eq!(ann["prometheus.io/path"].as_str(), Some("/metrics"));
    // Resources: requests at most the limits.
    assert!(millicores(&spec.cpu_request) <= millicores(&spec.cpu_limit));
    let mem_req = c["resources"]["requests"]["memory"].as_str().unwrap();
    assert!(bytes_of(mem_req) <= bytes_of(&spec.memory_limit));
    assert!(
        bytes_of(mem_req) >= 16 << 20,
        "a static binary still needs ~4 MiB"
    );
}

/// The image the manifest names is the one `make image` builds, and its
/// entrypoint is the agent.
#[test]
fn image_is_what_make_image_builds() {
    let spec = AgentSpec::from_manifest();
    let makefile = fs::read_to_string(common::repo_root().join("Makefile")).unwrap();
    assert!(
        makefile.contains("IMAGE ?= localhost/natra:$(VERSION)"),
        "make image names localhost/natra:<version>"
    );
    assert_eq!(
        spec.image,
        format!("localhost/natra:{}", env!("CARGO_PKG_VERSION")),
        "the manifest's image is this version's"
    );
    assert!(makefile.contains("--entrypoint /natra agent"));
    assert!(
        makefile.contains("$(RELEASE_BIN):/natra"),
        "the static build"
    );
    assert!(
        !common::repo_root().join("deploy/Dockerfile").exists(),
        "deploy/Dockerfile was dropped: make image builds the image"
    );
    // The built image, when there is one (make test builds it first).
    let tar = common::repo_root().join("target/natra-image.tar");
    if !tar.exists() {
        eprintln!(
            "NOTE: {} missing: the built image is not checked",
            tar.display()
        );
        return;
    }
    let cat = |member: &str| -> Value {
        let out = Command::new("tar")
            .arg("-xOf")
            .arg(&tar)
            .arg(member)
            .output()
            .unwrap();
        assert!(out.status.success(), "tar -xOf {member}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let blob = |digest: &Value| {
        cat(&format!(
            "blobs/sha256/{}",
            digest.as_str().unwrap()[7..].to_owned()
        ))
    };
    let index = cat("index.json");
    let m = &index["manifests"][0];
    assert_eq!(
        m["annotations"]["io.containerd.image.name"].as_str(),
        Some(spec.image.as_str()),
        "ctr import names it as the manifest does"
    );
    let manifest = blob(&m["digest"]);
    let config = blob(&manifest["config"]["digest"]);
    let entrypoint: Vec<String> = config["config"]["Entrypoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        entrypoint,
        spec.command[..2],
        "entrypoint = the manifest's command"
    );
}

/// A localhost port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The manifest's command run for real against the binary, its host paths
/// redirected into a temp dir and --listen onto a free localhost port (9471
/// may be taken here): it chains natra, answers /healthz, and a SIGTERM
/// stops it with natra still chained. Needs no root.
#[test]
fn daemonset_command_runs_against_the_cli() {
    let spec = AgentSpec::from_manifest();
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("deploy-agent-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let (conf, bin, pins) = (tmp.join("net.d"), tmp.join("bin"), tmp.join("pins"));
    fs::create_dir_all(&conf).unwrap();
    fs::create_dir_all(&bin).unwrap();
    fs::copy(
        common::repo_root().join("deploy/examples/ptp-natra.conflist"),
        conf.join("10-ptp.conflist"),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut command = spec.command_with("--cni-conf-dir", conf.to_str().unwrap());
    let i = command.iter().position(|a| a == "--cni-bin-dir").unwrap();
    command[i + 1] = bin.to_string_lossy().into_owned();
    let i = command.iter().position(|a| a == "--listen").unwrap();
    command[i + 1] = listen.clone();
    let mut agent = Agent(
        Command::new(common::natra_bin())
            .env_remove("CNI_COMMAND")
            .env("NATRA_PIN_ROOT", &pins)
            .args(&command[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    let healthy = loop {
        if let Ok((200, body)) = http_get(&listen, "/healthz") {
            if conf.join("00-natra.conflist").is_file() {
                break body;
            }
        }
        if let Some(status) = agent.0.try_wait().unwrap() {
            let mut err = String::new();
            agent
                .0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("{command:?} exited ({status}):\n{err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "agent not up in 10 s"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let up = start.elapsed();
    assert_eq!(healthy.trim(), "ok");
    assert!(bin.join("natra").is_file(), "the agent installed natra");
    let chained: Value =
        serde_json::from_slice(&fs::read(conf.join("00-natra.conflist")).unwrap()).unwrap();
    assert_eq!(
        chained["plugins"].as_array().unwrap().last().unwrap()["type"],
        "natra"
    );
    let (status, _) = http_get(&listen, "/metrics").unwrap();
    assert_eq!(status, 200, "/metrics");
    let (status, stopped) = common::sigterm_and_wait(&mut agent.0, Duration::from_secs(5));
    eprintln!(
        "agent: chained and healthy {:.0} ms after spawn, stopped {:.0} ms after SIGTERM",
        up.as_secs_f64() * 1e3,
        stopped.as_secs_f64() * 1e3
    );
    assert!(status.success(), "agent exit after SIGTERM: {status}");
    assert!(
        conf.join("00-natra.conflist").is_file(),
        "a rolling update's SIGTERM must leave natra chained"
    );
    let _ = fs::remove_dir_all(&tmp);
}

#[test]
fn example_conflists_chain_natra_last_with_the_bandwidth_capability() {
    let dir = common::repo_root().join("deploy/examples");
    let mut seen = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let conf: Value = serde_json::from_slice(&fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let plugins = conf["plugins"].as_array().unwrap();
        let last = plugins.last().unwrap();
        assert_eq!(last["type"], "natra", "{}", path.display());
        assert_eq!(last["capabilities"]["bandwidth"], true);
        assert!(conf["name"].is_string() && conf["cniVersion"].is_string());
        // natra install would leave them as they are: natra is already chained.
        assert_eq!(natra::cli::install::chain_natra(&conf).unwrap(), conf);
        seen += 1;
    }
    assert!(seen >= 4, "ptp, flannel, calico, kindnet examples");
}
