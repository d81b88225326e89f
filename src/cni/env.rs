//! The CNI_* environment of one plugin invocation.
use std::path::PathBuf;

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
    fn unknown_commands_are_refused() {
        let e = env(&[("CNI_COMMAND", "FROB")]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidEnvironment);
    }
}
