//! deploy/: the DaemonSet's structure, its command against the real CLI, the
//! Dockerfile, and the example conflists.
mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

fn daemonset() -> Yaml {
    let text = fs::read_to_string(common::repo_root().join("deploy/cni-installer.yaml")).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).unwrap();
    assert_eq!(docs.len(), 1, "one document");
    docs.remove(0)
}

fn strs(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("not a list: {y:?}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn init_container(ds: &Yaml) -> &Yaml {
    let inits = ds["spec"]["template"]["spec"]["initContainers"]
        .as_vec()
        .unwrap();
    assert_eq!(inits.len(), 1);
    &inits[0]
}

#[test]
fn daemonset_structure() {
    let ds = daemonset();
    assert_eq!(ds["apiVersion"].as_str(), Some("apps/v1"));
    assert_eq!(ds["kind"].as_str(), Some("DaemonSet"));
    assert_eq!(ds["metadata"]["namespace"].as_str(), Some("kube-system"));
    let pod = &ds["spec"]["template"]["spec"];
    let selector = &ds["spec"]["selector"]["matchLabels"];
    let labels = &ds["spec"]["template"]["metadata"]["labels"];
    for (k, v) in selector.as_hash().unwrap() {
        assert_eq!(&labels[k.as_str().unwrap()], v, "selector matches labels");
    }
    // Every node, tainted or not.
    let tolerations = pod["tolerations"].as_vec().unwrap();
    assert!(tolerations
        .iter()
        .any(|t| t["operator"].as_str() == Some("Exists") && t["key"].is_badvalue()));

    let init = init_container(&ds);
    assert_eq!(init["securityContext"]["privileged"].as_bool(), Some(true));
    let mounts: Vec<(String, String, Option<String>)> = init["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["mountPath"].as_str().unwrap().to_owned(),
                m["mountPropagation"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let volumes = pod["volumes"].as_vec().unwrap();
    let host_path = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .and_then(|v| v["hostPath"]["path"].as_str())
            .unwrap_or_else(|| panic!("no hostPath volume {name}"))
            .to_owned()
    };
    for (name, host, propagation) in [
        ("cni-conf", "/etc/cni/net.d", None),
        ("cni-bin", "/opt/cni/bin", None),
        ("bpffs", "/sys/fs/bpf", Some("Bidirectional")),
    ] {
        assert_eq!(host_path(name), host);
        let m = mounts
            .iter()
            .find(|m| m.0 == name)
            .unwrap_or_else(|| panic!("init container lacks {name}"));
        assert_eq!(m.2.as_deref(), propagation, "{name} propagation");
    }

    let main = pod["containers"].as_vec().unwrap();
    assert_eq!(main.len(), 1);
    assert!(main[0]["image"].as_str().unwrap().contains("pause"));
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                main[0]["resources"][kind][res].as_str().is_some(),
                "pause {kind}.{res}"
            );
        }
    }
    assert_eq!(
        main[0]["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );
}

/// The init container's command, run for real against the binary with its
/// host paths redirected into a temp dir: every flag must exist and work.
#[test]
#[ignore = "needs root: mounts bpffs (run via make test)"]
fn daemonset_command_runs_against_the_cli() {
    common::require_root();
    let ds = daemonset();
    let command = strs(&init_container(&ds)["command"]);
    assert_eq!(command[0], "/natra");
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("deploy-cmd-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let (conf, bin, bpffs) = (tmp.join("net.d"), tmp.join("bin"), tmp.join("bpf"));
    fs::create_dir_all(&conf).unwrap();
    fs::create_dir_all(&bin).unwrap();
    fs::copy(
        common::repo_root().join("deploy/examples/ptp-natra.conflist"),
        conf.join("10-ptp.conflist"),
    )
    .unwrap();
    let args: Vec<String> = command[1..]
        .iter()
        .map(|a| match a.as_str() {
            "/host/etc/cni/net.d" => conf.to_string_lossy().into_owned(),
            "/host/opt/cni/bin" => bin.to_string_lossy().into_owned(),
            "/sys/fs/bpf" => bpffs.to_string_lossy().into_owned(),
            other => other.to_owned(),
        })
        .collect();
    let out = Command::new(common::natra_bin())
        .env_remove("CNI_COMMAND")
        .args(&args)
        .output()
        .unwrap();
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    let _ = Command::new("umount").arg(&bpffs).output();
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        mounts.contains(&format!("{} bpf ", bpffs.display())),
        "--bpffs mounted bpffs"
    );
    assert!(conf.join("00-natra.conflist").is_file());
    assert!(bin.join("natra").is_file());
    let _ = fs::remove_dir_all(&tmp);
}

#[test]
fn dockerfile_is_multi_stage_and_runs_the_cli() {
    let text = fs::read_to_string(common::repo_root().join("deploy/Dockerfile")).unwrap();
    let froms = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage build");
    assert!(text.contains("cargo build --release --locked"));
    assert!(text.contains("COPY --from=build /src/target/release/natra /natra"));
    let ds = daemonset();
    assert_eq!(strs(&init_container(&ds)["command"])[0], "/natra");
    assert!(text.contains(r#"ENTRYPOINT ["/natra"]"#));
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
