//! Calling the natra binary directly as a CNI plugin, with a hand-made
//! environment and stdin (what libcni would do, minus libcni).
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::natra_bin;

/// Runs natra with only `env` (plus PATH and NATRA_PIN_ROOT) and `stdin`.
pub fn natra_raw(env: &[(&str, &str)], pin_root: &Path, stdin: &str) -> Output {
    let _shared = super::quiet::cni_call();
    let mut cmd = Command::new(natra_bin());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NATRA_PIN_ROOT", pin_root)
        .envs(env.iter().copied());
    output_with_stdin(&mut cmd, stdin)
}

/// Runs `cmd` with `stdin` written to it and its stdout/stderr captured.
pub fn output_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    // a plugin may exit before reading everything (EPIPE is then fine)
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().expect("cannot wait for the child")
}

/// A CNI call of natra for `container_id` on eth0.
pub fn natra_cni(
    command: &str,
    container_id: &str,
    netns: Option<&Path>,
    pin_root: &Path,
    stdin: &str,
) -> Output {
    let netns = netns.map(|p| p.to_str().unwrap()).unwrap_or("");
    natra_raw(
        &[
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", container_id),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
        ],
        pin_root,
        stdin,
    )
}

/// stdout parsed as exactly one JSON value followed by nothing but
/// whitespace; panics otherwise.
pub fn single_json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut values = serde_json::Deserializer::from_str(&stdout).into_iter::<Value>();
    let first = match values.next() {
        Some(Ok(v)) => v,
        other => panic!(
            "stdout is not a JSON document ({other:?}):\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    };
    let rest = &stdout[values.byte_offset()..];
    assert!(
        rest.trim().is_empty(),
        "stdout holds more than one JSON document; after it: {rest:?}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    first
}

/// One CNI call of a limiter plugin (natra or upstream `bandwidth`) with the
/// environment libcni would give it; panics if it fails; returns how long
/// it took, process start to exit.
pub fn timed_limiter_call(
    plugin: &Path,
    verb: &str,
    id: &str,
    netns: &Path,
    pin_root: &Path,
    stdin: &Value,
) -> Duration {
    let start = Instant::now();
    let mut cmd = Command::new(plugin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CNI_COMMAND", verb)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .env("NATRA_PIN_ROOT", pin_root)
        .env("NATRA_LOG", "warn");
    let out = output_with_stdin(&mut cmd, &stdin.to_string());
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{} {verb} failed: {}{}",
        plugin.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// `natra inspect --json` over `pin_root`: every attachment natra shows.
pub fn inspect_all(pin_root: &Path) -> Vec<Value> {
    let out = Command::new(natra_bin())
        .env_remove("CNI_COMMAND")
        .env("NATRA_PIN_ROOT", pin_root)
        .args(["inspect", "--json"])
        .output()
        .expect("cannot run natra inspect");
    assert!(
        out.status.success(),
        "natra inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("natra inspect --json is JSON")
}

/// The one attachment under `pin_root`, as `natra inspect --json` shows it.
pub fn inspect_one(pin_root: &Path) -> Value {
    let mut all = inspect_all(pin_root);
    assert_eq!(all.len(), 1, "one limited Pod interface");
    all.remove(0)
}
