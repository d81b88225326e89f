//! The files and directories natra trusts, as root: its own, never reached
//! through a symlink, and closed to other users.
//!
//! natra runs as root on every node, and the places it keeps state in are
//! reachable by other local users: bpffs is mode 1777 by default, and a path
//! another user created or replaced with a symlink first would have natra
//! (un)pin, list and delete wherever that user points it. So every directory
//! natra keeps state in is checked with `lstat` (a symlink is never
//! followed), must be owned by root, and is narrowed to `mode` when natra
//! finds it wider (a directory an earlier natra created 0755); one owned by
//! anybody else is refused, never "fixed", since its contents are not ours.
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// Bits that let other users in: group and other.
const OTHERS: u32 = 0o077;

fn refuse(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("refusing {}: {why}", path.display()))
        .with_details("natra keeps its state only where root alone can write; remove it and retry")
}

/// What `lstat` says of `path`, or None if nothing is there.
fn lstat(path: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(
            Error::new(ErrorKind::Io, format!("cannot stat {}", path.display())).with_details(e),
        ),
    }
}

/// Whether `meta` is a real directory (not a symlink to one) owned by root.
pub fn is_root_dir(meta: &fs::Metadata) -> bool {
    meta.file_type().is_dir() && meta.uid() == 0
}

/// `path` as natra's own directory: created with `mode` (and parents as
/// needed) when absent; when present, a real directory owned by root,
/// narrowed to `mode` if wider. Anything else is refused.
pub fn own_dir(path: &Path, mode: u32) -> Result<()> {
    match lstat(path)? {
        None => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| {
                    Error::new(ErrorKind::Io, format!("cannot create {}", parent.display()))
                        .with_details(e)
                })?;
            }
            match fs::DirBuilder::new().mode(mode).create(path) {
                Ok(()) => {}
                // Made by a concurrent natra (or someone else) since: judge it.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return own_dir(path, mode),
                Err(e) => {
                    return Err(Error::new(
                        ErrorKind::Io,
                        format!("cannot create {}", path.display()),
                    )
                    .with_details(e))
                }
            }
            narrow(path, mode)
        }
        Some(meta) if meta.file_type().is_symlink() => Err(refuse(path, "it is a symlink")),
        Some(meta) if !meta.file_type().is_dir() => Err(refuse(path, "it is not a directory")),
        Some(meta) if meta.uid() != 0 => Err(refuse(
            path,
            format!("it is owned by uid {}, not root", meta.uid()),
        )),
        Some(meta) if meta.mode() & 0o7777 != mode => {
            log::warn!(
                "{} had mode {:o}; narrowing it to {mode:o}",
                path.display(),
                meta.mode() & 0o7777
            );
            narrow(path, mode)
        }
        Some(_) => Ok(()),
    }
}

fn narrow(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| {
        Error::new(ErrorKind::Io, format!("cannot chmod {}", path.display())).with_details(e)
    })
}

/// A directory natra only reads through (the lock's): absent is fine (the
/// caller creates it with [`own_dir`]); present, it must be a real directory
/// owned by root that no other user can write to, or one with the sticky bit
/// (like /tmp), where nobody can replace what root made in it.
pub fn check_parent(path: &Path) -> Result<()> {
    match lstat(path)? {
        None => Ok(()),
        Some(meta) if meta.file_type().is_symlink() => Err(refuse(path, "it is a symlink")),
        Some(meta) if !is_root_dir(&meta) => {
            Err(refuse(path, "it is not a directory owned by root"))
        }
        Some(meta) if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 => Err(refuse(
            path,
            format!(
                "other users can write to it (mode {:o}, no sticky bit)",
                meta.mode() & 0o7777
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Opens (creating it `mode` if absent) a file only root may use: never
/// through a symlink (O_NOFOLLOW), a regular file owned by root, narrowed to
/// `mode` if an earlier natra left it wider.
pub fn own_file(path: &Path, mode: u32) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                refuse(path, "it is a symlink")
            } else {
                Error::new(ErrorKind::Io, format!("cannot open {}", path.display())).with_details(e)
            }
        })?;
    let meta = file.metadata().map_err(|e| {
        Error::new(ErrorKind::Io, format!("cannot stat {}", path.display())).with_details(e)
    })?;
    if !meta.file_type().is_file() {
        return Err(refuse(path, "it is not a regular file"));
    }
    if meta.uid() != 0 {
        return Err(refuse(
            path,
            format!("it is owned by uid {}, not root", meta.uid()),
        ));
    }
    if meta.mode() & OTHERS != 0 {
        log::warn!(
            "{} had mode {:o}; narrowing it to {mode:o}",
            path.display(),
            meta.mode() & 0o7777
        );
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| {
                Error::new(ErrorKind::Io, format!("cannot chmod {}", path.display()))
                    .with_details(e)
            })?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("natra-safefs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn own_dir_creates_narrows_and_refuses_symlinks() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: ownership checks need root (run `sudo make test`)");
            return;
        }
        let base = tmp("dir");
        let d = base.join("a/b");
        own_dir(&d, 0o700).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o7777, 0o700);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        own_dir(&d, 0o700).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o7777, 0o700);
        let link = base.join("link");
        symlink(&d, &link).unwrap();
        let e = own_dir(&link, 0o700).unwrap_err();
        assert!(e.msg.contains("symlink"), "{e}");
        let file = base.join("file");
        fs::write(&file, b"").unwrap();
        assert!(own_dir(&file, 0o700).is_err());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn own_file_refuses_symlinks_and_narrows() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: ownership checks need root (run `sudo make test`)");
            return;
        }
        let base = tmp("file");
        let f = base.join("lock");
        drop(own_file(&f, 0o600).unwrap());
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o600);
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        drop(own_file(&f, 0o600).unwrap());
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o600);
        let victim = base.join("victim");
        fs::write(&victim, b"x").unwrap();
        let link = base.join("link");
        symlink(&victim, &link).unwrap();
        assert!(own_file(&link, 0o600).unwrap_err().msg.contains("symlink"));
        assert!(check_parent(&link).is_err());
        assert!(check_parent(Path::new("/tmp")).is_ok());
        fs::remove_dir_all(&base).unwrap();
    }
}
