//! Hostile local users against natra's node state (docs/security.md): a
//! uid-65534 process holding the node lock, lock files and pin roots planted
//! or swapped for symlinks before natra made them. Each actor really runs;
//! every test asserts what the file system or natra's exit shows.
mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::natra_bin;
use common::pod::run;
use serde_json::Value;

const NOBODY: &str = "65534";

/// A directory of this test's own, root's and 0755 (as /run is), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("hostile-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        // CARGO_TARGET_TMPDIR's parents must let uid 65534 reach the lock.
        let mut p = dir.parent();
        while let Some(d) = p {
            if d.as_os_str().is_empty() || d == Path::new("/") {
                break;
            }
            let mode = fs::metadata(d).unwrap().mode();
            if mode & 0o001 == 0 {
                fs::set_permissions(d, fs::Permissions::from_mode(mode | 0o001)).unwrap();
            }
            p = d.parent();
        }
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A DEL of an attachment natra never made: nothing to do but take the lock.
fn natra_del(lock: &Path, pin_root: &Path, extra: &[(&str, &str)]) -> Child {
    let mut child = Command::new(natra_bin())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CNI_COMMAND", "DEL")
        .env("CNI_CONTAINERID", "hostile-lock")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .env("NATRA_PIN_ROOT", pin_root)
        .env("NATRA_LOCK_FILE", lock)
        .envs(extra.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start natra");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"cniVersion":"1.0.0","name":"hostile","type":"natra"}"#)
        .unwrap();
    child
}

/// Waits for `child` up to `limit`; kills it past that. None: it had to be killed.
fn wait_at_most(mut child: Child, limit: Duration) -> Option<(Output, Duration)> {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return Some((child.wait_with_output().unwrap(), start.elapsed()));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// `flock <mode> <file> sleep 30` as `uid`; returns once it holds the lock
/// (or has exited, unable to open the file).
fn lock_holder(uid: &str, mode: &str, file: &Path) -> Child {
    let mut cmd = if uid == "0" {
        Command::new("flock")
    } else {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "flock",
        ]);
        c
    };
    let mut child = cmd
        // --no-fork: flock execs sleep itself, so killing it drops the lock.
        .args(["--no-fork", mode, file.to_str().unwrap(), "sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start flock");
    // flock holds the lock before it execs sleep; give it that moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let held = fs::read_to_string("/proc/locks").unwrap().lines().any(|l| {
            l.contains(&format!(
                ":{} ",
                fs::metadata(file).map(|m| m.ino()).unwrap_or(0)
            ))
        });
        if held {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    child
}

fn cni_error(out: &Output) -> Value {
    assert!(!out.status.success(), "natra succeeded: {out:?}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not a CNI error ({e}): {out:?}"))
}

#[test]
#[ignore = "needs root: a uid-65534 lock holder (run via make test)"]
fn a_local_users_lock_holder_stalls_no_cni_call() {
    common::require_root();
    let scratch = Scratch::new("lock-nobody");
    let lock = scratch.0.join("run/natra.lock");
    let pins = scratch.0.join("pins");
    // natra makes its lock file on its first call.
    let (out, _) = wait_at_most(natra_del(&lock, &pins, &[]), Duration::from_secs(20))
        .expect("the first DEL hung");
    assert!(out.status.success(), "{out:?}");
    let meta = fs::metadata(&lock).unwrap();
    eprintln!(
        "lock file {}: mode {:o}, dir mode {:o}",
        lock.display(),
        meta.mode() & 0o7777,
        fs::metadata(lock.parent().unwrap()).unwrap().mode() & 0o7777
    );

    // uid 65534 takes a shared lock on it, which needs only a read-only fd.
    let mut holder = lock_holder(NOBODY, "-s", &lock);
    let started = wait_at_most(natra_del(&lock, &pins, &[]), Duration::from_secs(10));
    let _ = holder.kill();
    let holder_out = holder.wait_with_output().unwrap();
    let (out, took) = started.expect(
        "natra's DEL was still waiting for the lock after 10 s: a uid-65534 process holds it",
    );
    assert!(out.status.success(), "{out:?}");
    eprintln!(
        "DEL beside a uid-65534 flock: {} ms (the holder: {})",
        took.as_millis(),
        String::from_utf8_lossy(&holder_out.stderr).trim()
    );
    assert!(took < Duration::from_secs(5), "DEL took {took:?}");
    assert_eq!(meta.mode() & 0o077, 0, "the lock file is open to others");
    assert_eq!(meta.uid(), 0);
}

#[test]
#[ignore = "needs root: lock files planted by uid 65534 (run via make test)"]
fn a_planted_or_symlinked_lock_file_is_refused_and_untouched() {
    common::require_root();
    let scratch = Scratch::new("lock-planted");
    let pins = scratch.0.join("pins");
    let dir = scratch.0.join("run");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).unwrap();

    // A lock file another user made first: theirs to hold whenever they like.
    let planted = dir.join("planted.lock");
    let out = run(Command::new("setpriv").args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "touch",
        planted.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{out:?}");
    let (out, _) = wait_at_most(natra_del(&planted, &pins, &[]), Duration::from_secs(10))
        .expect("DEL hung on a planted lock file");
    let e = cni_error(&out);
    assert!(
        e["msg"].as_str().unwrap().contains("owned by uid 65534"),
        "{e}"
    );
    assert_eq!(fs::metadata(&planted).unwrap().uid(), 65534);

    // A symlink in its place, pointing at a file natra must not touch.
    let victim = scratch.0.join("victim");
    fs::write(&victim, b"victim").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.join("link.lock");
    symlink(&victim, &link).unwrap();
    let (out, _) = wait_at_most(natra_del(&link, &pins, &[]), Duration::from_secs(10))
        .expect("DEL hung on a symlinked lock file");
    let e = cni_error(&out);
    assert!(e["msg"].as_str().unwrap().contains("symlink"), "{e}");
    assert_eq!(fs::metadata(&victim).unwrap().mode() & 0o7777, 0o640);
    assert_eq!(fs::read(&victim).unwrap(), b"victim");
}

#[test]
#[ignore = "needs root: a stuck lock holder (run via make test)"]
fn a_held_lock_is_waited_for_a_bounded_time_then_code_11() {
    common::require_root();
    let scratch = Scratch::new("lock-held");
    let lock = scratch.0.join("natra.lock");
    let pins = scratch.0.join("pins");
    let (out, _) = wait_at_most(natra_del(&lock, &pins, &[]), Duration::from_secs(10)).unwrap();
    assert!(out.status.success(), "{out:?}");
    // A natra call stuck with the lock (here root's flock stands in for it).
    let mut holder = lock_holder("0", "-x", &lock);
    let timed = wait_at_most(
        natra_del(&lock, &pins, &[("NATRA_LOCK_TIMEOUT_MS", "300")]),
        Duration::from_secs(10),
    );
    let _ = holder.kill();
    let _ = holder.wait();
    let (out, took) = timed.expect("DEL waited for a held lock for more than 10 s");
    let e = cni_error(&out);
    assert_eq!(e["code"], 11, "{e}");
    eprintln!("held lock: code 11 after {} ms", took.as_millis());
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Released, the next call goes through.
    let (out, _) = wait_at_most(natra_del(&lock, &pins, &[]), Duration::from_secs(10)).unwrap();
    assert!(out.status.success(), "{out:?}");
}
