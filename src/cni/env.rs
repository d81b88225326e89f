//! The CNI_* environment of one plugin invocation.
use std::path::PathBuf;

use crate::dataplane::record::PodRef;
use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl std::fmt::Display for Command {
    /// As CNI_COMMAND spells it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        })
    }
}

impl Command {
    /// The spec version that introduced the verb.
    pub fn since(self) -> (u32, u32, u32) {
        match self {
            Command::Add | Command::Del | Command::Version => (0, 1, 0),
            Command::Check => (0, 4, 0),
            Command::Status | Command::Gc => (1, 1, 0),
        }
    }

    /// Verbs that act on one attachment and need its CNI_* variables.
    pub fn is_per_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

#[derive(Debug, Clone)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    /// Empty on DEL when the runtime no longer has a netns.
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// The Pod as the runtime names it in CNI_ARGS (empty where it does not).
    pub pod: PodRef,
}

/// The Pod's identity from `CNI_ARGS`: `K=V` pairs split by `;`, as
/// containerd and CRI-O send them (`IgnoreUnknown=1;K8S_POD_NAMESPACE=…;
/// K8S_POD_NAME=…;K8S_POD_INFRA_CONTAINER_ID=…;K8S_POD_UID=…`). Other keys
/// and pairs without `=` are ignored; the last of a repeated key wins.
pub fn pod_from_cni_args(args: &str) -> PodRef {
    let mut pod = PodRef::default();
    for (key, value) in args.split(';').filter_map(|pair| pair.split_once('=')) {
        let slot = match key {
            "K8S_POD_NAMESPACE" => &mut pod.namespace,
            "K8S_POD_NAME" => &mut pod.name,
            "K8S_POD_UID" => &mut pod.uid,
            _ => continue,
        };
        *slot = value.to_owned();
    }
    pod
}

impl CniEnv {
    pub fn from_env() -> Result<CniEnv> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<CniEnv> {
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some("STATUS") => Command::Status,
            Some("GC") => Command::Gc,
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidEnvironment,
                    format!("CNI_COMMAND {:?} is not supported", other.unwrap_or("")),
                ))
            }
        };
        let non_empty = |k: &str| get(k).filter(|v| !v.is_empty());
        let required = |k: &str| {
            non_empty(k)
                .ok_or_else(|| Error::new(ErrorKind::InvalidEnvironment, format!("{k} is not set")))
        };
        if !command.is_per_attachment() {
            return Ok(CniEnv {
                command,
                container_id: String::new(),
                netns: None,
                ifname: String::new(),
                pod: PodRef::default(),
            });
        }
        let netns = non_empty("CNI_NETNS").map(PathBuf::from);
        if netns.is_none() && command != Command::Del {
            return Err(Error::new(
                ErrorKind::InvalidEnvironment,
                "CNI_NETNS is not set",
            ));
        }
        Ok(CniEnv {
            command,
            container_id: required("CNI_CONTAINERID")?,
            netns,
            ifname: required("CNI_IFNAME")?,
            pod: pod_from_cni_args(&get("CNI_ARGS").unwrap_or_default()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<CniEnv> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CniEnv::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn add_needs_a_netns() {
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap_err();
        assert!(e.msg.contains("CNI_NETNS"));
    }

    #[test]
    fn del_does_not_need_a_netns() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert!(e.netns.is_none());
    }

    #[test]
    fn status_and_gc_need_no_attachment() {
        for verb in ["STATUS", "GC", "VERSION"] {
            let e = env(&[("CNI_COMMAND", verb)]).unwrap();
            assert!(!e.command.is_per_attachment());
        }
    }

    #[test]
    fn the_pod_is_read_from_containerds_cni_args() {
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", "/var/run/netns/x"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;\
                 K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=0a1b2c3d-0000-4000-8000-123456789abc",
            ),
        ])
        .unwrap();
        assert_eq!(
            e.pod,
            PodRef {
                namespace: "team-a".into(),
                name: "web-0".into(),
                uid: "0a1b2c3d-0000-4000-8000-123456789abc".into(),
            }
        );
        assert_eq!(pod_from_cni_args(""), PodRef::default());
        assert_eq!(
            pod_from_cni_args("K8S_POD_NAME;K8S_POD_NAMESPACE=a=b;x=y").namespace,
            "a=b"
        );
    }

    #[test]
    fn unknown_commands_are_refused() {
        let e = env(&[("CNI_COMMAND", "FROB")]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidEnvironment);
    }
}
