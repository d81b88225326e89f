//! The verbs: ADD, DEL, CHECK, VERSION, and (CNI 1.1) STATUS and GC.
use std::path::Path;

use serde_json::Value;

use super::config::{NetConf, SUPPORTED_VERSIONS};
use super::env::{CniEnv, Command};
use super::policy::FailurePolicy;
use super::{gc, gojson, lock, options, result, status};
use crate::dataplane::pins::{self, AttachmentPins};
use crate::dataplane::{self, modes};
use crate::error::{Error, ErrorKind, Result};
use crate::netlink::{self, Link};
use crate::netns;

/// Runs one invocation; returns what goes on stdout (None: nothing).
pub fn run(env: &CniEnv, stdin: &[u8]) -> Result<Option<Value>> {
    if env.command == Command::Version {
        return Ok(Some(result::version(
            &answered_version(stdin),
            SUPPORTED_VERSIONS,
        )));
    }
    let conf = NetConf::parse(stdin)?;
    require_verb_in_version(env.command, &conf.cni_version)?;
    if env.command == Command::Status {
        return status::check_ready().map(|()| None);
    }
    let _lock = lock::lock_node()?;
    if env.command == Command::Gc {
        gc::collect(&conf)?;
        // Slots left by a natra killed half-way, other layouts' dataplanes
        // no Pod uses any more (docs/dataplane.md).
        if let Err(e) = crate::dataplane::collect_shared(&crate::dataplane::pins::pin_root()) {
            log::warn!("GC: cannot collect unused dataplane state: {e}");
        }
        return Ok(None);
    }
    match env.command {
        Command::Add => {
            let policy = FailurePolicy::from_netconf(&conf)?;
            match options::parse(&conf).and_then(|opts| add(env, &conf, &opts)) {
                Err(e) if policy == FailurePolicy::Ignore => {
                    // install() rolled back; make sure of it before letting the Pod run.
                    let cleanup = remove_attachment(env, &conf, env.netns.as_deref());
                    log::error!(
                        "failurePolicy=ignore: {}:{} starts UNLIMITED: {e}{}",
                        env.container_id,
                        env.ifname,
                        cleanup
                            .err()
                            .map(|c| format!(" (cleanup: {c})"))
                            .unwrap_or_default()
                    );
                    Ok(Some(result::passthrough(
                        conf.prev_result.as_ref(),
                        &conf.cni_version,
                    )))
                }
                other => other.map(Some),
            }
        }
        Command::Del => remove_attachment(env, &conf, env.netns.as_deref()).map(|()| None),
        Command::Check => check(env, &conf, &options::parse(&conf)?).map(|()| None),
        Command::Version | Command::Status | Command::Gc => unreachable!("answered above"),
    }
}

/// This attachment's pin directories: keyed by network (where ADD pins) and
/// where natra pinned before it keyed by network. Refuses a container ID or
/// ifname natra cannot name a directory after (code 4), and a network name
/// (code 7).
fn attachment_pins(env: &CniEnv, conf: &NetConf) -> Result<(AttachmentPins, AttachmentPins)> {
    let root = pins::pin_root();
    let legacy = AttachmentPins::legacy(&root, &env.container_id, &env.ifname)?;
    let keyed = AttachmentPins::new(&root, &conf.name, &env.container_id, &env.ifname)?;
    Ok((keyed, legacy))
}

/// DEL (and ADD's clean slate): removes what natra made for this attachment,
/// keyed and legacy. A pin root that is not natra's (another user's, or a
/// symlink) holds nothing natra made: it is reported and left alone.
fn remove_attachment(env: &CniEnv, conf: &NetConf, netns: Option<&Path>) -> Result<()> {
    let root = pins::pin_root();
    let legacy = AttachmentPins::legacy(&root, &env.container_id, &env.ifname)?;
    let keyed = match AttachmentPins::new(&root, &conf.name, &env.container_id, &env.ifname) {
        Ok(p) => Some(p),
        // No ADD pinned under a network name natra refuses.
        Err(e) if e.kind == ErrorKind::InvalidConfig => None,
        Err(e) => return Err(e),
    };
    match pins::trusted_root(&root) {
        Ok(true) => {}
        Ok(false) => return Ok(()),
        Err(e) => {
            log::warn!("{e}: natra made nothing there, and removes nothing");
            return Ok(());
        }
    }
    if let Some(keyed) = keyed {
        dataplane::remove(&keyed, netns)?;
        pins::prune_network_dir(&root, &conf.name);
    }
    dataplane::remove(&legacy, netns)?;
    if let Some(ns) = netns.filter(|p| !p.as_os_str().is_empty() && p.exists()) {
        if let Err(e) = dataplane::edt::remove_natra_fq_named(ns, &env.ifname) {
            log::warn!("natra's fq left to the Pod's netns: {e}");
        }
    }
    Ok(())
}

/// Each verb exists from a spec version on (CHECK 0.4.0, STATUS/GC 1.1.0).
fn require_verb_in_version(verb: Command, cni_version: &str) -> Result<()> {
    let parsed: Vec<u32> = cni_version
        .split('.')
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    let version = (
        parsed.first().copied().unwrap_or(0),
        parsed.get(1).copied().unwrap_or(0),
        parsed.get(2).copied().unwrap_or(0),
    );
    let since = verb.since();
    if version < since {
        return Err(Error::new(
            ErrorKind::IncompatibleVersion,
            format!(
                "{verb} needs cniVersion {}.{}.{} or later, the config has {cni_version}",
                since.0, since.1, since.2
            ),
        ));
    }
    Ok(())
}

/// VERSION's own cniVersion: the one asked in, if natra speaks it, else its
/// latest (never an echo of whatever a caller wrote).
fn answered_version(stdin: &[u8]) -> String {
    gojson::top_level_str(stdin, "cniVersion")
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| latest_version().to_owned())
}

pub fn latest_version() -> &'static str {
    SUPPORTED_VERSIONS.last().expect("at least one version")
}

fn add(env: &CniEnv, conf: &NetConf, opts: &modes::Options) -> Result<Value> {
    let limits = conf.pod_limits()?;
    let passthrough = result::passthrough(conf.prev_result.as_ref(), &conf.cni_version);
    if limits.is_unlimited() {
        // Still clear what an earlier ADD of this attachment may have left;
        // under names natra refuses, no ADD can have left anything.
        if attachment_pins(env, conf).is_ok() {
            remove_attachment(env, conf, env.netns.as_deref())?;
        }
        log::info!(
            "{}:{}: no bandwidth limit requested; nothing loaded",
            env.container_id,
            env.ifname
        );
        return Ok(passthrough);
    }
    require_prev_result(conf)?;
    let (pins, _) = attachment_pins(env, conf)?;
    let (host, target) = pod_target(env)?;
    pins::own_root(&pins::pin_root())?;
    // A repeated ADD replaces what the earlier one made.
    remove_attachment(env, conf, Some(&target.netns))?;
    let installed = dataplane::install(&pins, &target, &limits, opts)
        .inspect_err(|_| pins::prune_network_dir(&pins::pin_root(), &conf.name))?;
    log::info!(
        "{}:{}{}: limited with attachMode {} (EDT {}), host veth {} (ifindex {}): {}",
        env.container_id,
        env.ifname,
        if env.pod.name.is_empty() {
            String::new()
        } else {
            format!(" (pod {}/{})", env.pod.namespace, env.pod.name)
        },
        installed.mode,
        if installed.edt { "on" } else { "off" },
        host.name,
        host.index,
        limits.with_edt_dirs(installed.edt_ingress, installed.edt)
    );
    Ok(passthrough)
}

fn check(env: &CniEnv, conf: &NetConf, opts: &modes::Options) -> Result<()> {
    require_prev_result(conf)?;
    let limits = conf.pod_limits()?;
    if limits.is_unlimited() {
        // Under names natra refuses, no ADD can have left anything.
        let Ok((keyed, legacy)) = attachment_pins(env, conf) else {
            return Ok(());
        };
        if let Some(found) = [keyed, legacy].iter().find(|p| p.exists()) {
            return Err(Error::new(
                ErrorKind::CheckMismatch,
                "no limit is configured but natra state exists",
            )
            .with_details(found.dir.display()));
        }
        return Ok(());
    }
    let (keyed, legacy) = attachment_pins(env, conf)?;
    pins::trusted_root(&pins::pin_root())?;
    // A Pod an older natra limited keeps its legacy directory until DEL.
    let pins = if !keyed.exists() && legacy.exists() {
        legacy
    } else {
        keyed
    };
    let (_, target) = pod_target(env)?;
    dataplane::verify(&pins, &target, &limits, opts)
}

fn require_prev_result(conf: &NetConf) -> Result<()> {
    match conf.prev_result {
        Some(Value::Object(_)) => Ok(()),
        _ => Err(Error::new(
            ErrorKind::InvalidConfig,
            "prevResult is missing: natra is a chained plugin and runs after a main plugin",
        )),
    }
}

/// The host side of the Pod's veth, found from the Pod interface's peer
/// ifindex (prevResult is not trusted for it: several main plugins omit it),
/// and both ends as the attach modes need them.
fn pod_target(env: &CniEnv) -> Result<(Link, modes::Target)> {
    let netns = env
        .netns
        .as_deref()
        .ok_or_else(|| Error::new(ErrorKind::InvalidEnvironment, "CNI_NETNS is not set"))?;
    if !netns.exists() {
        return Err(Error::new(
            ErrorKind::ContainerUnknown,
            format!("netns {} does not exist", netns.display()),
        ));
    }
    let ifname = env.ifname.clone();
    let pod = netns::run_in_netns(netns, move || netlink::link_by_name(&ifname))?;
    let peer = pod.peer_index.filter(|&p| p != pod.index).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("{} in the Pod is not a veth: it has no peer", pod.name),
        )
    })?;
    let host = netlink::link_by_index(peer).map_err(|e| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "the peer of {} (ifindex {peer}) is not in this netns",
                pod.name
            ),
        )
        .with_details(e)
    })?;
    if host.kind.as_deref() != Some("veth") || host.peer_index != Some(pod.index) {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "ifindex {peer} on the host is not the peer of the Pod's {}",
                pod.name
            ),
        )
        .with_details(format!(
            "host interface {} (ifindex {}) is a {}, peer ifindex {}",
            host.name,
            host.index,
            host.kind.as_deref().unwrap_or("device of no kind"),
            host.peer_index
                .map(|p| p.to_string())
                .unwrap_or_else(|| "none".into())
        )));
    }
    let target = modes::Target {
        netns: netns.to_path_buf(),
        pod_ifname: pod.name.clone(),
        pod_ifindex: pod.index,
        host_ifindex: host.index,
        pod: env.pod.clone(),
    };
    Ok((host, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_answers_only_a_version_natra_speaks() {
        assert_eq!(answered_version(br#"{"cniVersion":"0.4.0"}"#), "0.4.0");
        assert_eq!(answered_version(br#"{"CNIVersion":"1.0.0"}"#), "1.0.0");
        for asked in [
            &br#"{"cniVersion":"9.9.9"}"#[..],
            br#"{"cniVersion":"<script>"}"#,
            b"",
            b"{bad",
        ] {
            assert_eq!(answered_version(asked), latest_version(), "{asked:?}");
        }
    }
}
