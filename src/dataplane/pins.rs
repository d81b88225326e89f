//! Where an attachment's BPF objects live in bpffs, and how its name is made.
//!
//! Layout (docs/pins.md): `<root>/<container id>:<ifname>/` holding the maps
//! `config`, `bucket`, `counters` and one link per limited direction,
//! `pod_ingress_link` / `pod_egress_link`. bpffs refuses `.` in names, so a
//! `.` becomes `~`, which neither a container ID nor an accepted ifname can
//! hold: the mapping stays one-to-one.
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, ErrorKind, Result};

pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/natra";
/// Overrides the pin root (tests use it to keep to a directory of their own).
pub const PIN_ROOT_ENV: &str = "NATRA_PIN_ROOT";
/// Longest container ID accepted: keeps the directory name within NAME_MAX.
pub const MAX_CONTAINER_ID_LEN: usize = 200;
/// Linux's IFNAMSIZ less the terminating NUL.
pub const MAX_IFNAME_LEN: usize = 15;

pub const CONFIG_MAP: &str = "config";
pub const BUCKET_MAP: &str = "bucket";
pub const COUNTERS_MAP: &str = "counters";

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
    pub fn new(root: &Path, container_id: &str, ifname: &str) -> Result<AttachmentPins> {
        Ok(AttachmentPins {
            dir: root.join(attachment_dir_name(container_id, ifname)?),
        })
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn link(&self, program: &str) -> PathBuf {
        self.dir.join(format!("{program}_link"))
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    pub fn create(&self) -> Result<()> {
        fs::create_dir_all(&self.dir).context(
            ErrorKind::Io,
            format!("cannot create pin directory {}", self.dir.display()),
        )
    }

    /// Unlinks every pin and the directory; absent is fine.
    pub fn remove_all(&self) -> Result<()> {
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
    fn pins_sit_inside_the_root() {
        let pins = AttachmentPins::new(Path::new("/sys/fs/bpf/natra"), "c1", "eth0").unwrap();
        assert_eq!(pins.dir, PathBuf::from("/sys/fs/bpf/natra/c1:eth0"));
        assert_eq!(
            pins.link("pod_ingress"),
            PathBuf::from("/sys/fs/bpf/natra/c1:eth0/pod_ingress_link")
        );
    }
}
