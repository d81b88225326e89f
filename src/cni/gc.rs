//! GC (CNI 1.1): remove the state of every attachment of this network that
//! the runtime no longer lists as valid, including links left defunct by a
//! vanished veth and the leftovers of an ADD that was killed half-way.
//!
//! GC touches its own network's directory only (`<root>/<network>/`, see
//! pins.rs): a GC for a Pod's second network (Multus) never removes the
//! first network's limit. A GC without a list is refused, not read as "keep
//! nothing". One removal that fails does not stop the others; the call then
//! fails naming every one that did.
use std::collections::HashSet;
use std::fs;
use std::io;

use super::config::NetConf;
use crate::dataplane::{self, pins};
use crate::error::{Error, ErrorKind, Result};

/// The attachments the runtime keeps: `cni.dev/valid-attachments` (the spec's
/// key) and `cni.dev/attachments` (what some libcni versions send), merged.
/// None when the request carries neither.
fn valid_dir_names(conf: &NetConf) -> Option<HashSet<String>> {
    if conf.valid_attachments.is_none() && conf.attachments.is_none() {
        return None;
    }
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
    Some(names)
}

/// Removes every attachment directory of `conf`'s network that is not
/// listed. Returns the directory names removed.
pub fn collect(conf: &NetConf) -> Result<Vec<String>> {
    let keep = valid_dir_names(conf).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidConfig,
            "GC without cni.dev/valid-attachments: refusing to remove anything",
        )
    })?;
    let root = pins::pin_root();
    if !pins::trusted_root(&root)? {
        return Ok(Vec::new());
    }
    let network = root.join(pins::network_dir_name(&conf.name)?);
    let entries = match fs::read_dir(&network) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::new(ErrorKind::Io, "cannot list the network's pins")
                .with_details(format!("{}: {e}", network.display())))
        }
    };
    let mut removed = Vec::new();
    let mut failed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // A symlink or file here is nothing natra made: never followed.
        let real_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if keep.contains(&name) || !real_dir {
            continue;
        }
        // No netns: a Pod-side clsact filter or fq goes with the Pod's netns.
        match dataplane::remove(&pins::AttachmentPins { dir: entry.path() }, None) {
            Ok(()) => {
                log::info!("GC: removed stale attachment {}/{name}", conf.name);
                removed.push(name);
            }
            Err(e) => {
                log::error!("GC: cannot remove {}/{name}: {e}", conf.name);
                failed.push(format!("{name}: {e}"));
            }
        }
    }
    pins::prune_network_dir(&root, &conf.name);
    if !failed.is_empty() {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "GC removed {} attachment(s) but failed on {}",
                removed.len(),
                failed.len()
            ),
        )
        .with_details(failed.join("; ")));
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
        let names = valid_dir_names(&conf(stdin).unwrap()).unwrap();
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
            valid_dir_names(&conf(stdin).unwrap()).unwrap(),
            HashSet::from(["ok:eth0".to_string()])
        );
    }

    #[test]
    fn no_list_is_not_an_empty_list() {
        let none = conf(json!({"cniVersion": "1.1.0", "name": "n"})).unwrap();
        assert_eq!(valid_dir_names(&none), None);
        assert_eq!(collect(&none).unwrap_err().kind, ErrorKind::InvalidConfig);
        let empty = conf(json!({"cniVersion": "1.1.0", "cni.dev/valid-attachments": []}));
        assert_eq!(valid_dir_names(&empty.unwrap()), Some(HashSet::new()));
    }

    #[test]
    fn a_malformed_list_is_a_decode_error() {
        let stdin =
            json!({"cniVersion": "1.1.0", "cni.dev/valid-attachments": [{"containerID": 5}]});
        assert_eq!(conf(stdin).unwrap_err().kind, ErrorKind::Decode);
    }
}
