//! The network configuration natra reads from stdin.
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Context, Error, ErrorKind, Result};
use crate::limits::{bucket_params, PodLimits, RequestedLimit};

/// cniVersions natra accepts in a config.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The `bandwidth` capability's shape (and upstream's static netconf fields):
/// rates in bits/s, bursts in bits.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    #[serde(default)]
    pub ingress_rate: u64,
    #[serde(default)]
    pub ingress_burst: u64,
    #[serde(default)]
    pub egress_rate: u64,
    #[serde(default)]
    pub egress_burst: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig {
    bandwidth: Option<Bandwidth>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    #[serde(default)]
    runtime_config: RuntimeConfig,
    #[serde(default)]
    pub prev_result: Option<Value>,
    /// Static limits, as the upstream plugin takes them; runtimeConfig wins.
    #[serde(flatten)]
    static_limits: Bandwidth,
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<NetConf> {
        let conf: NetConf = serde_json::from_slice(stdin)
            .context(ErrorKind::Decode, "cannot decode the network configuration")?;
        if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
            return Err(Error::new(
                ErrorKind::IncompatibleVersion,
                format!("cniVersion {:?} is not supported", conf.cni_version),
            )
            .with_details(format!("supported: {}", SUPPORTED_VERSIONS.join(", "))));
        }
        Ok(conf)
    }

    /// The limits asked for: `runtimeConfig.bandwidth` (what kubelet and the
    /// runtimes fill) when present, else the static netconf fields.
    pub fn requested_bandwidth(&self) -> Bandwidth {
        self.runtime_config.bandwidth.unwrap_or(self.static_limits)
    }

    pub fn pod_limits(&self) -> Result<PodLimits> {
        let bw = self.requested_bandwidth();
        Ok(PodLimits {
            pod_ingress: bucket_params(
                "ingress",
                RequestedLimit {
                    rate_bits: bw.ingress_rate,
                    burst_bits: bw.ingress_burst,
                },
            )?,
            pod_egress: bucket_params(
                "egress",
                RequestedLimit {
                    rate_bits: bw.egress_rate,
                    burst_bits: bw.egress_burst,
                },
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_config_bandwidth_is_read_in_bits() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"natra",
                "runtimeConfig":{"bandwidth":{"ingressRate":20000000,"ingressBurst":4294967295,
                "egressRate":10000000,"egressBurst":4294967295}}}"#,
        )
        .unwrap();
        let limits = conf.pod_limits().unwrap();
        assert_eq!(limits.pod_ingress.unwrap().rate_bytes_per_sec, 2_500_000);
        assert_eq!(limits.pod_egress.unwrap().rate_bytes_per_sec, 1_250_000);
    }

    #[test]
    fn runtime_config_wins_over_static_fields() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"0.4.0","name":"n","type":"natra","ingressRate":8000,
                "runtimeConfig":{"bandwidth":{"egressRate":16000}}}"#,
        )
        .unwrap();
        let limits = conf.pod_limits().unwrap();
        assert!(limits.pod_ingress.is_none());
        assert_eq!(limits.pod_egress.unwrap().rate_bytes_per_sec, 2_000);
    }

    #[test]
    fn static_fields_apply_without_runtime_config() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"0.3.1","name":"n","type":"natra","ingressRate":8000,"ingressBurst":80000}"#,
        )
        .unwrap();
        assert_eq!(
            conf.pod_limits()
                .unwrap()
                .pod_ingress
                .unwrap()
                .rate_bytes_per_sec,
            1_000
        );
    }

    #[test]
    fn no_limits_is_unlimited() {
        let conf = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"natra"}"#).unwrap();
        assert!(conf.pod_limits().unwrap().is_unlimited());
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert_eq!(
            NetConf::parse(b"{not json").unwrap_err().kind,
            ErrorKind::Decode
        );
        let negative =
            br#"{"cniVersion":"1.0.0","runtimeConfig":{"bandwidth":{"ingressRate":-5}}}"#;
        assert_eq!(
            NetConf::parse(negative).unwrap_err().kind,
            ErrorKind::Decode
        );
    }

    #[test]
    fn unknown_versions_are_refused() {
        let e = NetConf::parse(br#"{"cniVersion":"9.9.9","name":"n","type":"natra"}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::IncompatibleVersion);
    }

    #[test]
    fn invalid_rate_names_the_field() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","runtimeConfig":{"bandwidth":{"ingressRate":5}}}"#,
        )
        .unwrap();
        let e = conf.pod_limits().unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(e.msg.contains("ingressRate"));
    }
}
