//! `natra install` / `natra uninstall`: put the binary in the CNI bin dir and
//! a chained conflist beside the node's main one.
//!
//! The runtime loads the lexically first config in the conf dir, so natra
//! writes `00-natra.conflist` (the main config with natra appended) and never
//! edits the original: `uninstall` removes natra's file and the original is
//! in force again. Every write is a temp file + rename, and a write whose
//! content is already there is skipped, so re-running is a byte-identical
//! no-op.
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::error::{Context, Error, ErrorKind, Result};

pub const CONFLIST_NAME: &str = "00-natra.conflist";
pub const BINARY_NAME: &str = "natra";
const TEMP_PREFIX: &str = ".natra-install-";

#[derive(Debug, PartialEq, Eq)]
pub struct Installed {
    pub binary: PathBuf,
    pub conflist: PathBuf,
    /// The main config natra chained itself after.
    pub main_config: PathBuf,
    /// False when everything was already in place.
    pub changed: bool,
}

pub fn install(conf_dir: &Path, bin_dir: &Path, binary: &Path) -> Result<Installed> {
    let main_config = main_config(conf_dir)?;
    let text = fs::read(&main_config).context(
        ErrorKind::Io,
        format!("cannot read {}", main_config.display()),
    )?;
    let main: Value = serde_json::from_slice(&text).context(
        ErrorKind::Decode,
        format!("{} is not JSON", main_config.display()),
    )?;
    let chained = chain_natra(&main).map_err(|e| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("cannot chain natra after {}", main_config.display()),
        )
        .with_details(e)
    })?;
    let mut rendered = serde_json::to_vec_pretty(&chained).expect("JSON value serialises");
    rendered.push(b'\n');

    let bin_target = bin_dir.join(BINARY_NAME);
    let bin_bytes =
        fs::read(binary).context(ErrorKind::Io, format!("cannot read {}", binary.display()))?;
    let mut changed = write_if_different(&bin_target, &bin_bytes, 0o755)?;
    let conflist = conf_dir.join(CONFLIST_NAME);
    changed |= write_if_different(&conflist, &rendered, 0o644)?;
    Ok(Installed {
        binary: bin_target,
        conflist,
        main_config,
        changed,
    })
}

/// Mounts bpffs at `path` unless it already is one. In the DaemonSet the path
/// is a Bidirectional hostPath, so the mount reaches the node, where the
/// plugin pins. Returns whether it mounted.
pub fn ensure_bpffs_mounted(path: &Path) -> Result<bool> {
    if crate::dataplane::pins::ensure_bpffs(path).is_ok() && path.exists() {
        return Ok(false);
    }
    fs::create_dir_all(path).context(ErrorKind::Io, format!("cannot create {}", path.display()))?;
    nix::mount::mount(
        Some("bpf"),
        path,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        // As systemd mounts it: only root may create pins at the top, so no
        // other user can plant natra's pin root (or a symlink) first.
        Some("mode=0700"),
    )
    .context(
        ErrorKind::Io,
        format!("cannot mount bpffs at {}", path.display()),
    )?;
    Ok(true)
}

/// Removes natra's conflist and binary; absent is fine.
pub fn uninstall(conf_dir: &Path, bin_dir: &Path) -> Result<bool> {
    let mut changed = false;
    for path in [conf_dir.join(CONFLIST_NAME), bin_dir.join(BINARY_NAME)] {
        match fs::remove_file(&path) {
            Ok(()) => changed = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(
                    Error::new(ErrorKind::Io, format!("cannot remove {}", path.display()))
                        .with_details(e),
                )
            }
        }
    }
    Ok(changed)
}

/// The config the runtime would load without natra: the lexically first
/// `.conf`, `.conflist` or `.json` that is not natra's own.
pub fn main_config(conf_dir: &Path) -> Result<PathBuf> {
    let entries = fs::read_dir(conf_dir)
        .context(ErrorKind::Io, format!("cannot list {}", conf_dir.display()))?;
    let mut candidates: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            name != CONFLIST_NAME
                && !name.starts_with('.')
                && matches!(ext, "conf" | "conflist" | "json")
                && p.is_file()
        })
        .collect();
    candidates.sort();
    let first = candidates.into_iter().next().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "no CNI config in {} to chain natra after",
                conf_dir.display()
            ),
        )
        .with_details("install the main CNI (flannel, calico, kindnet, …) first")
    })?;
    let name = first.file_name().unwrap().to_string_lossy();
    if *name <= *CONFLIST_NAME {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("{name} sorts before {CONFLIST_NAME}: the runtime would not load natra's"),
        ));
    }
    Ok(first)
}

/// The main config as a conflist with natra appended last (once), keeping
/// its name and cniVersion.
pub fn chain_natra(main: &Value) -> std::result::Result<Value, String> {
    let obj = main.as_object().ok_or("the config is not a JSON object")?;
    let natra = json!({"type": "natra", "capabilities": {"bandwidth": true}});
    let mut list = if let Some(plugins) = obj.get("plugins") {
        let plugins = plugins.as_array().ok_or("\"plugins\" is not a list")?;
        if plugins.is_empty() {
            return Err("\"plugins\" is empty".into());
        }
        obj.clone()
    } else {
        // A single-plugin .conf: its name and cniVersion move up a level.
        if !obj.contains_key("type") {
            return Err("neither \"plugins\" nor \"type\"".into());
        }
        let mut plugin = obj.clone();
        let mut list = Map::new();
        for key in ["cniVersion", "name"] {
            if let Some(v) = plugin.remove(key) {
                list.insert(key.into(), v);
            }
        }
        list.insert("plugins".into(), Value::Array(vec![Value::Object(plugin)]));
        list
    };
    let plugins = list
        .get_mut("plugins")
        .and_then(Value::as_array_mut)
        .expect("built above");
    plugins.retain(|p| p.get("type").and_then(Value::as_str) != Some("natra"));
    plugins.push(natra);
    Ok(Value::Object(list))
}

/// Writes `bytes` to `path` through a temp file + rename unless the file
/// already holds exactly them. Returns whether it wrote.
fn write_if_different(path: &Path, bytes: &[u8], mode: u32) -> Result<bool> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if fs::read(path).map(|old| old == bytes).unwrap_or(false) {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        "{TEMP_PREFIX}{}-{}",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let write = || -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::new(ErrorKind::Io, format!("cannot write {}", path.display())).with_details(e)
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflist_gets_natra_appended_and_keeps_name_and_version() {
        let flannel = json!({"name": "cbr0", "cniVersion": "0.3.1", "plugins": [
            {"type": "flannel", "delegate": {"hairpinMode": true}},
            {"type": "portmap", "capabilities": {"portMappings": true}}]});
        let out = chain_natra(&flannel).unwrap();
        assert_eq!(out["name"], "cbr0");
        assert_eq!(out["cniVersion"], "0.3.1");
        assert_eq!(out["plugins"].as_array().unwrap().len(), 3);
        assert_eq!(out["plugins"][2]["type"], "natra");
        assert_eq!(out["plugins"][2]["capabilities"]["bandwidth"], true);
    }

    #[test]
    fn a_single_plugin_conf_becomes_a_conflist() {
        let conf = json!({"cniVersion": "1.0.0", "name": "kindnet", "type": "ptp",
                          "ipam": {"type": "host-local"}});
        let out = chain_natra(&conf).unwrap();
        assert_eq!(out["name"], "kindnet");
        assert_eq!(out["cniVersion"], "1.0.0");
        assert_eq!(
            out["plugins"],
            json!([{"type": "ptp", "ipam": {"type": "host-local"}},
                   {"type": "natra", "capabilities": {"bandwidth": true}}])
        );
    }

    #[test]
    fn natra_is_never_chained_twice() {
        let conf = json!({"name": "n", "cniVersion": "1.0.0", "plugins": [
            {"type": "ptp"}, {"type": "natra", "capabilities": {"bandwidth": true}}]});
        assert_eq!(chain_natra(&conf).unwrap(), conf);
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(chain_natra(&json!([1, 2])).is_err());
        assert!(chain_natra(&json!({"name": "x", "plugins": []})).is_err());
        assert!(chain_natra(&json!({"name": "x"})).is_err());
    }
}
