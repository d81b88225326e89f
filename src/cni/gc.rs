//! GC (CNI 1.1): remove the state of every attachment the runtime no longer
//! lists as valid, including links left defunct by a vanished veth and the
//! leftovers of an ADD that was killed half-way.
use std::collections::HashSet;
use std::fs;
use std::io;

use super::config::NetConf;
use crate::dataplane::{self, pins};
use crate::error::{Error, ErrorKind, Result};

/// The attachments the runtime keeps: `cni.dev/valid-attachments` (the spec's
/// key) and `cni.dev/attachments` (what some libcni versions send), merged.
fn valid_dir_names(conf: &NetConf) -> HashSet<String> {
    let mut names = HashSet::new();
    for list in [&conf.valid_attachments, &conf.attachments] {
        for a in list.iter().flatten() {
            match pins::attachment_dir_name(&a.container_id, &a.ifname) {
                Ok(name) => {
                    names.insert(name);
                }
                // natra never made state for a name it refuses.
                Err(e) => log::warn!("GC: ignoring listed attachment: {e}"),
            }
        }
    }
    names
}

/// Removes every attachment directory under the pin root that is not listed.
/// Returns the directory names removed.
pub fn collect(conf: &NetConf) -> Result<Vec<String>> {
    let keep = valid_dir_names(conf);
    let root = pins::pin_root();
    let entries = match fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::new(ErrorKind::Io, "cannot list the pin root")
                .with_details(format!("{}: {e}", root.display())))
        }
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep.contains(&name) || !entry.path().is_dir() {
            continue;
        }
        // No netns: a Pod-side clsact filter or fq goes with the Pod's netns.
        dataplane::remove(&pins::AttachmentPins { dir: entry.path() }, None)?;
        log::info!("GC: removed stale attachment {name}");
        removed.push(name);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::{json, Value};

    fn conf(doc: Value) -> Result<NetConf> {
        NetConf::decode(doc.to_string().as_bytes())
    }

    #[test]
    fn both_keys_are_read_and_merged() {
        let stdin = json!({
            "cniVersion": "1.1.0",
            "cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}],
            "cni.dev/attachments": [{"containerID": "b.c", "ifname": "eth0"}]
        });
        let names = valid_dir_names(&conf(stdin).unwrap());
        assert_eq!(
            names,
            HashSet::from(["a:eth0".to_string(), "b~c:eth0".to_string()])
        );
    }

    #[test]
    fn hostile_entries_are_skipped_not_fatal() {
        let stdin = json!({"cniVersion": "1.1.0", "cni.dev/valid-attachments": [
            {"containerID": "../x", "ifname": "eth0"}, {"containerID": "ok", "ifname": "eth0"}]});
        assert_eq!(
            valid_dir_names(&conf(stdin).unwrap()),
            HashSet::from(["ok:eth0".to_string()])
        );
    }

    #[test]
    fn a_malformed_list_is_a_decode_error() {
        let stdin =
            json!({"cniVersion": "1.1.0", "cni.dev/valid-attachments": [{"containerID": 5}]});
        assert_eq!(conf(stdin).unwrap_err().kind, ErrorKind::Decode);
    }
}
