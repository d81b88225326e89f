//! `failurePolicy`: what ADD does when natra cannot limit a Pod.
//!
//! `fail` (default): the ADD fails, so the Pod does not start unlimited. A
//! limiter that silently does not limit lets one Pod take a node's bandwidth
//! from its neighbours: a fairness and security problem, so failing is the
//! safe default. `ignore`: the Pod starts unlimited; natra logs one line an
//! operator can grep for (`UNLIMITED`) and leaves nothing half-attached
//! (ADD's rollback has already run).
use serde_json::Value;

use super::config::NetConf;
use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    #[default]
    Fail,
    Ignore,
}

impl FailurePolicy {
    pub fn from_netconf(conf: &NetConf) -> Result<FailurePolicy> {
        Self::from_value(conf.failure_policy.as_ref())
    }

    fn from_value(value: Option<&Value>) -> Result<FailurePolicy> {
        match value {
            None | Some(Value::Null) => Ok(FailurePolicy::Fail),
            Some(Value::String(s)) if s == "fail" => Ok(FailurePolicy::Fail),
            Some(Value::String(s)) if s == "ignore" => Ok(FailurePolicy::Ignore),
            Some(other) => Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("failurePolicy must be \"fail\" or \"ignore\", not {other}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_is_fail_and_bad_values_are_named() {
        assert_eq!(
            FailurePolicy::from_value(None).unwrap(),
            FailurePolicy::Fail
        );
        assert_eq!(
            FailurePolicy::from_value(Some(&json!("ignore"))).unwrap(),
            FailurePolicy::Ignore
        );
        let e = FailurePolicy::from_value(Some(&json!("Ignore"))).unwrap_err();
        assert!(e.msg.contains("Ignore"));
    }
}
