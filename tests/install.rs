//! `natra install` / `uninstall` against fixture CNI conf dirs, as the
//! DaemonSet's init container runs it.
mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

struct Dirs {
    root: PathBuf,
    conf: PathBuf,
    bin: PathBuf,
}

impl Dirs {
    fn new(name: &str) -> Dirs {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("install-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let (conf, bin) = (root.join("net.d"), root.join("bin"));
        fs::create_dir_all(&conf).unwrap();
        fs::create_dir_all(&bin).unwrap();
        Dirs { root, conf, bin }
    }

    fn natra(&self, verb: &str) -> Output {
        Command::new(common::natra_bin())
            .env_remove("CNI_COMMAND")
            .args([verb, "--cni-conf-dir"])
            .arg(&self.conf)
            .arg("--cni-bin-dir")
            .arg(&self.bin)
            .output()
            .unwrap()
    }

    fn chained(&self) -> Value {
        serde_json::from_slice(&fs::read(self.conf.join("00-natra.conflist")).unwrap()).unwrap()
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.conf).output();
        let _ = fs::set_permissions(&self.conf, fs::Permissions::from_mode(0o755));
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const FLANNEL: &str = r#"{
  "name": "cbr0",
  "cniVersion": "0.3.1",
  "plugins": [
    {"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
"#;

#[test]
fn flannel_conflist_is_chained_beside_the_original() {
    let d = Dirs::new("flannel");
    fs::write(d.conf.join("10-flannel.conflist"), FLANNEL).unwrap();
    let stdout = ok(&d.natra("install"));
    assert!(stdout.starts_with("installed"), "{stdout}");

    let chained = d.chained();
    assert_eq!(chained["name"], "cbr0");
    assert_eq!(chained["cniVersion"], "0.3.1");
    let types: Vec<&str> = chained["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["flannel", "portmap", "natra"]);
    assert_eq!(chained["plugins"][2]["capabilities"]["bandwidth"], true);
    // The original is untouched, byte for byte.
    assert_eq!(
        fs::read_to_string(d.conf.join("10-flannel.conflist")).unwrap(),
        FLANNEL
    );
    // The binary is a faithful, executable copy.
    let copied = d.bin.join("natra");
    assert_eq!(
        fs::read(&copied).unwrap(),
        fs::read(common::natra_bin()).unwrap()
    );
    assert_eq!(fs::metadata(&copied).unwrap().mode() & 0o777, 0o755);
    // Nothing else was left in the conf dir (no temp files).
    let mut names: Vec<String> = fs::read_dir(&d.conf)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["00-natra.conflist", "10-flannel.conflist"]);
}

#[test]
fn single_plugin_conf_becomes_a_conflist() {
    let d = Dirs::new("conf");
    fs::write(
        d.conf.join("10-kindnet.conf"),
        r#"{"cniVersion":"1.0.0","name":"kindnet","type":"ptp","ipMasq":false,
            "ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.0.0/24"}]]}}"#,
    )
    .unwrap();
    ok(&d.natra("install"));
    let chained = d.chained();
    assert_eq!(chained["name"], "kindnet");
    assert_eq!(chained["cniVersion"], "1.0.0");
    assert_eq!(chained["plugins"][0]["type"], "ptp");
    assert!(chained["plugins"][0].get("name").is_none());
    assert_eq!(
        chained["plugins"][1],
        json!({"type": "natra", "capabilities": {"bandwidth": true}})
    );
}

#[test]
fn installing_again_is_a_byte_identical_no_op() {
    let d = Dirs::new("again");
    fs::write(d.conf.join("10-flannel.conflist"), FLANNEL).unwrap();
    ok(&d.natra("install"));
    let path = d.conf.join("00-natra.conflist");
    let (before, inode) = (fs::read(&path).unwrap(), fs::metadata(&path).unwrap().ino());
    let bin_inode = fs::metadata(d.bin.join("natra")).unwrap().ino();
    let stdout = ok(&d.natra("install"));
    assert!(stdout.starts_with("already installed"), "{stdout}");
    assert_eq!(fs::read(&path).unwrap(), before);
    // Same inode: not even rewritten through a rename.
    assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
    assert_eq!(fs::metadata(d.bin.join("natra")).unwrap().ino(), bin_inode);
}

#[test]
fn uninstall_reverses_install() {
    let d = Dirs::new("uninstall");
    fs::write(d.conf.join("10-flannel.conflist"), FLANNEL).unwrap();
    ok(&d.natra("install"));
    assert_eq!(ok(&d.natra("uninstall")).trim(), "uninstalled");
    assert!(!d.conf.join("00-natra.conflist").exists());
    assert!(!d.bin.join("natra").exists());
    assert_eq!(
        fs::read_to_string(d.conf.join("10-flannel.conflist")).unwrap(),
        FLANNEL
    );
    assert_eq!(ok(&d.natra("uninstall")).trim(), "nothing to uninstall");
}

#[test]
fn a_conf_dir_without_a_main_config_is_a_clear_error() {
    let d = Dirs::new("empty");
    let out = d.natra("install");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no CNI config"), "{stderr}");
    assert!(!d.conf.join("00-natra.conflist").exists());
}

/// Root ignores permission bits, so as root the directory is bind-mounted
/// onto itself read-only (its files stay visible); otherwise it is made 0555.
fn make_read_only(dir: &Path) {
    if nix::unistd::geteuid().is_root() {
        for args in [
            vec!["--bind", dir.to_str().unwrap(), dir.to_str().unwrap()],
            vec!["-o", "remount,ro,bind", dir.to_str().unwrap()],
        ] {
            let st = Command::new("mount").args(&args).status().unwrap();
            assert!(st.success(), "mount {args:?}");
        }
    } else {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
    }
}

#[test]
fn a_read_only_conf_dir_is_a_clear_error() {
    let d = Dirs::new("readonly");
    fs::write(d.conf.join("10-flannel.conflist"), FLANNEL).unwrap();
    make_read_only(&d.conf);
    let out = d.natra("install");
    assert!(
        !out.status.success(),
        "install into a read-only dir succeeded"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot write") && stderr.contains("00-natra.conflist"),
        "the error names what could not be written: {stderr}"
    );
    assert!(!d.conf.join("00-natra.conflist").exists());
    let leftovers: Vec<_> = fs::read_dir(&d.conf).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "only the original stays");
}

/// The binary `natra install` copies onto a node needs only what every glibc
/// node has: libbpf, libelf and zlib are linked in (docs/install.md).
#[test]
fn the_installed_binary_needs_only_glibc_and_libgcc() {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(common::natra_bin())
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success(), "readelf -d failed: {out:?}");
    let dynamic = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(!needed.is_empty(), "no NEEDED entries read:\n{dynamic}");
    let glibc = [
        "libc.so.6",
        "libm.so.6",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
    ];
    let foreign: Vec<&&str> = needed
        .iter()
        .filter(|lib| !glibc.contains(lib) && **lib != "libgcc_s.so.1")
        .collect();
    assert!(
        foreign.is_empty(),
        "natra needs {foreign:?} (all: {needed:?})"
    );
}
