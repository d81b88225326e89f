//! Where an attachment's BPF objects live in bpffs, and how its name is made.
//!
//! Layout (docs/pins.md): `<root>/<network>/<container id>:<ifname>/`
//! holding the maps `config`, `bucket`, `counters`, `attachment` and, per
//! limited direction, a link (tcx modes: `pod_ingress_link` /
//! `pod_egress_link`) or a program (clsact modes: `pod_ingress_prog` /
//! `pod_egress_prog`). Every pin name natra uses is made here. An
//! attachment is keyed as the CNI spec keys it, by network name as well, so
//! that one network's DEL or GC never touches another network's attachment
//! of the same Pod. bpffs refuses `.` in names, so a `.` becomes `~`, which
//! no network name, container ID or accepted ifname can hold: the mapping
//! stays one-to-one.
//!
//! natra before network keying pinned at `<root>/<container id>:<ifname>/`
//! (a "legacy" directory: it holds a `:`, which a network's does not). DEL
//! and a repeated ADD remove such a directory too; CHECK reads it while no
//! keyed one exists; GC, which cannot tell its network, leaves it to DEL.
//!
//! The root is root's and 0700 (safefs.rs): bpffs is 1777 by default, so
//! another user could otherwise make it first, or plant a symlink there.
//! Nothing below it is followed through a symlink.
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, ErrorKind, Result};
use crate::safefs;

pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/natra";
/// Overrides the pin root (tests use it to keep to a directory of their own).
pub const PIN_ROOT_ENV: &str = "NATRA_PIN_ROOT";
/// Longest container ID accepted: keeps the directory name within NAME_MAX.
pub const MAX_CONTAINER_ID_LEN: usize = 200;
/// Linux's IFNAMSIZ less the terminating NUL.
pub const MAX_IFNAME_LEN: usize = 15;
/// Longest network name accepted: a bpffs name is at most NAME_MAX (255).
pub const MAX_NETWORK_LEN: usize = 200;
/// Mode of the pin root and every directory natra makes below it.
pub const DIR_MODE: u32 = 0o700;

pub const CONFIG_MAP: &str = "config";
pub const BUCKET_MAP: &str = "bucket";
pub const COUNTERS_MAP: &str = "counters";
/// The attachment record (record.rs).
pub const ATTACHMENT_MAP: &str = "attachment";
/// The program array the stubs jump through: pinned beside every
/// attachment, so that it is never flushed while a stub may use it.
pub const PROGRAMS_MAP: &str = "programs";
/// The sketch cells (pinned in the shared dataplane only).
pub const SKETCH_MAP: &str = "sketch";
/// `<root>/~dataplane/`: the shared dataplanes, one per state layout. No
/// network name starts with `~`, so it never collides with one.
pub const DATAPLANE_DIR: &str = "~dataplane";

pub fn pin_root() -> PathBuf {
    std::env::var_os(PIN_ROOT_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_ROOT))
}

/// The bpffs directory of one Pod interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentPins {
    pub dir: PathBuf,
}

impl AttachmentPins {
    /// `<root>/<network>/<container id>:<ifname>`.
    pub fn new(
        root: &Path,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<AttachmentPins> {
        Ok(AttachmentPins {
            dir: root
                .join(network_dir_name(network)?)
                .join(attachment_dir_name(container_id, ifname)?),
        })
    }

    /// `<root>/<container id>:<ifname>`: where natra pinned before it keyed
    /// attachments by network.
    pub fn legacy(root: &Path, container_id: &str, ifname: &str) -> Result<AttachmentPins> {
        Ok(AttachmentPins {
            dir: root.join(attachment_dir_name(container_id, ifname)?),
        })
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Opens the map pinned as `name` here.
    pub fn open_map(&self, name: &str) -> Result<libbpf_rs::MapHandle> {
        let path = self.map(name);
        libbpf_rs::MapHandle::from_pinned_path(&path).context(
            ErrorKind::Dataplane,
            format!("cannot open {}", path.display()),
        )
    }

    /// `<prog>_link`: a tcx link of `program`.
    pub fn link(&self, program: &str) -> PathBuf {
        self.dir.join(format!("{program}_link"))
    }

    /// `<prog>_prog`: `program` pinned for the clsact modes, so that DEL and
    /// CHECK know the id of natra's filter.
    pub fn prog(&self, program: &str) -> PathBuf {
        self.dir.join(format!("{program}_prog"))
    }

    /// A real directory (never a symlink's target) is there.
    pub fn exists(&self) -> bool {
        fs::symlink_metadata(&self.dir).is_ok_and(|m| m.is_dir())
    }

    /// Makes the directory, and its network's; the root must be natra's
    /// already ([`own_root`]).
    pub fn create(&self) -> Result<()> {
        if let Some(network_dir) = self.dir.parent() {
            safefs::own_dir(network_dir, DIR_MODE)?;
        }
        match fs::DirBuilder::new().mode(DIR_MODE).create(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(Error::new(
                ErrorKind::Io,
                format!("cannot create pin directory {}", self.dir.display()),
            )
            .with_details(e)),
            _ => safefs::own_dir(&self.dir, DIR_MODE),
        }
    }

    /// Unlinks every pin and the directory; absent is fine. A symlink in the
    /// directory's place is unlinked itself, never followed.
    pub fn remove_all(&self) -> Result<()> {
        if fs::symlink_metadata(&self.dir).is_ok_and(|m| m.file_type().is_symlink()) {
            log::warn!(
                "{} is a symlink: unlinking it, not what it points to",
                self.dir.display()
            );
            return remove_if_present(&self.dir);
        }
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(Error::new(ErrorKind::Io, "cannot list pin directory")
                    .with_details(format!("{}: {e}", self.dir.display())))
            }
        };
        for entry in entries.flatten() {
            remove_if_present(&entry.path())?;
        }
        match fs::remove_dir(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::new(ErrorKind::Io, "cannot remove pin directory")
                    .with_details(format!("{}: {e}", self.dir.display())))
            }
            _ => Ok(()),
        }
    }
}

/// The pin root made natra's (before ADD pins anything): on a bpffs, a real
/// directory owned by root, mode 0700; created so if absent.
pub fn own_root(root: &Path) -> Result<()> {
    ensure_bpffs(root)?;
    safefs::own_dir(root, DIR_MODE)
}

/// Whether there is a pin root to read or clean up: false when absent; an
/// error when it is not natra's (a symlink, or another user's), whose
/// contents natra never made and never touches.
pub fn trusted_root(root: &Path) -> Result<bool> {
    if fs::symlink_metadata(root).is_err() {
        return Ok(false);
    }
    safefs::own_dir(root, DIR_MODE).map(|()| true)
}

/// Removes `<root>/<network>` if DEL or GC left it empty.
pub fn prune_network_dir(root: &Path, network: &str) {
    let Ok(name) = network_dir_name(network) else {
        return;
    };
    let dir = root.join(name);
    if fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        // ENOTEMPTY: another attachment of the network lives on.
        let _ = fs::remove_dir(&dir);
    }
}

/// BPF_FS_MAGIC from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// bpffs must be mounted where the pins go, or pinning fails obscurely.
pub fn ensure_bpffs(root: &Path) -> Result<()> {
    let mut probe = root;
    while !probe.exists() {
        probe = probe.parent().unwrap_or(Path::new("/"));
    }
    let fs = nix::sys::statfs::statfs(probe)
        .context(ErrorKind::Io, format!("cannot statfs {}", probe.display()))?;
    if fs.filesystem_type().0 as i64 != BPF_FS_MAGIC {
        return Err(Error::new(
            ErrorKind::Io,
            format!("{} is not on a bpffs", probe.display()),
        )
        .with_details("mount it with: mount -t bpf bpf /sys/fs/bpf"));
    }
    Ok(())
}

pub fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::new(ErrorKind::Io, "cannot unpin")
                .with_details(format!("{}: {e}", path.display())))
        }
        _ => Ok(()),
    }
}

/// A network's directory name: its name with `.` as `~`. The CNI spec's
/// grammar (alphanumeric first, then alphanumerics, `_`, `.`, `-`) leaves no
/// `/`, `:` or `~`, so the name can neither escape the root nor collide.
pub fn network_dir_name(network: &str) -> Result<String> {
    let ok = !network.is_empty()
        && network.len() <= MAX_NETWORK_LEN
        && network.starts_with(|c: char| c.is_ascii_alphanumeric())
        && network
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("invalid network name {network:?}"),
        )
        .with_details(format!(
            "the netconf's name must be 1..={MAX_NETWORK_LEN} characters, start alphanumeric \
             and hold only [A-Za-z0-9_.-]"
        )));
    }
    Ok(network.replace('.', "~"))
}

/// `<container id>:<ifname>` with `.` as `~`; refuses what could escape the
/// root, collide, or overflow a bpffs name.
pub fn attachment_dir_name(container_id: &str, ifname: &str) -> Result<String> {
    let bad = |what: &str, value: &str, why: &str| {
        Error::new(ErrorKind::InvalidEnvironment, format!("invalid {what}"))
            .with_details(format!("{value:?}: {why}"))
    };
    if container_id.is_empty() || container_id.len() > MAX_CONTAINER_ID_LEN {
        return Err(bad(
            "CNI_CONTAINERID",
            container_id,
            &format!("must be 1..={MAX_CONTAINER_ID_LEN} characters"),
        ));
    }
    // The CNI spec's grammar: alphanumeric first, then alphanumerics, `_`, `.`, `-`.
    if !container_id.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !container_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(bad(
            "CNI_CONTAINERID",
            container_id,
            "must start alphanumeric and hold only [A-Za-z0-9_.-]",
        ));
    }
    if ifname.is_empty() || ifname.len() > MAX_IFNAME_LEN || ifname == "." || ifname == ".." {
        return Err(bad(
            "CNI_IFNAME",
            ifname,
            &format!("must be 1..={MAX_IFNAME_LEN} characters and not . or .."),
        ));
    }
    if !ifname
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(bad("CNI_IFNAME", ifname, "may hold only [A-Za-z0-9_.-]"));
    }
    Ok(format!(
        "{}:{}",
        container_id.replace('.', "~"),
        ifname.replace('.', "~")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_names_pass_and_dots_are_mapped() {
        let id = "4f2d5c9a0b1e3f7a8c6d2e0f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b";
        assert_eq!(
            attachment_dir_name(id, "eth0").unwrap(),
            format!("{id}:eth0")
        );
        assert_eq!(
            attachment_dir_name("pod.v1-x_y", "eth0.100").unwrap(),
            "pod~v1-x_y:eth0~100"
        );
    }

    #[test]
    fn mapping_is_one_to_one() {
        let a = attachment_dir_name("a.b", "eth0").unwrap();
        let b = attachment_dir_name("a-b", "eth0").unwrap();
        let c = attachment_dir_name("a", "b.eth0").unwrap();
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn hostile_names_are_refused() {
        for (id, ifname) in [
            ("../../etc", "eth0"),
            ("abc/def", "eth0"),
            (".hidden", "eth0"),
            ("", "eth0"),
            ("abc\ndef", "eth0"),
            ("abc:def", "eth0"),
            ("abc", ".."),
            ("abc", "."),
            ("abc", "eth/0"),
            ("abc", "eth0\u{7}"),
            ("abc", "a-very-long-ifname"),
            ("abc", ""),
            ("abc", "eth 0"),
        ] {
            let e = attachment_dir_name(id, ifname).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidEnvironment, "{id:?} {ifname:?}");
        }
        let long = "a".repeat(MAX_CONTAINER_ID_LEN + 1);
        assert!(attachment_dir_name(&long, "eth0").is_err());
        let ok = "a".repeat(MAX_CONTAINER_ID_LEN);
        assert!(attachment_dir_name(&ok, "eth0").is_ok());
    }

    #[test]
    fn pins_sit_inside_the_root_under_their_network() {
        let root = Path::new("/sys/fs/bpf/natra");
        let pins = AttachmentPins::new(root, "k8s-pod-network", "c1", "eth0").unwrap();
        assert_eq!(
            pins.dir,
            PathBuf::from("/sys/fs/bpf/natra/k8s-pod-network/c1:eth0")
        );
        assert_eq!(
            pins.link("pod_ingress"),
            PathBuf::from("/sys/fs/bpf/natra/k8s-pod-network/c1:eth0/pod_ingress_link")
        );
        let pins = AttachmentPins::new(root, "macvlan.conf", "c1", "net1").unwrap();
        assert_eq!(
            pins.dir,
            PathBuf::from("/sys/fs/bpf/natra/macvlan~conf/c1:net1")
        );
        assert_eq!(
            AttachmentPins::legacy(root, "c1", "eth0").unwrap().dir,
            PathBuf::from("/sys/fs/bpf/natra/c1:eth0")
        );
    }

    #[test]
    fn hostile_network_names_are_refused() {
        for name in ["", "../x", "a/b", ".x", "a:b", "a~b", "a b", "x\n"] {
            let e = network_dir_name(name).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidConfig, "{name:?}");
        }
        assert!(network_dir_name(&"n".repeat(MAX_NETWORK_LEN + 1)).is_err());
        assert_eq!(network_dir_name("cbr0").unwrap(), "cbr0");
    }
}
