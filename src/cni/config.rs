//! The network configuration natra reads from stdin.
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Context, Error, ErrorKind, Result};
use crate::limits::{pod_limits, PodLimits, RequestedLimit, Tuning};

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
    /// The Pod's annotations, under either name runtimes use (see sources.rs).
    #[serde(alias = "io.kubernetes.cri.pod-annotations")]
    pod_annotations: Option<serde_json::Map<String, Value>>,
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
    /// Dataplane tuning (docs/dataplane.md); absent = derived from the rate.
    /// Kept as raw JSON so that any bad value is an InvalidConfig (code 7).
    #[serde(default)]
    sketch_width: Option<Value>,
    #[serde(default)]
    sketch_depth: Option<Value>,
    #[serde(default)]
    heavy_threshold_bytes: Option<Value>,
    #[serde(default)]
    window_ms: Option<Value>,
    /// EDT horizon; whether EDT is on is `edtPacing` (cni::options).
    #[serde(default)]
    edt_horizon_ms: Option<Value>,
}

/// A tuning field: absent/null, or a non-negative integer.
fn uint_field(name: &str, v: &Option<Value>) -> Result<Option<u64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("{name} must be a non-negative integer, not {v}"),
            )
        }),
    }
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
    /// The limits asked for, merged per direction from runtimeConfig.bandwidth,
    /// the Pod's annotations and the static fields (precedence in sources.rs).
    pub fn requested_bandwidth(&self) -> Result<Bandwidth> {
        super::sources::resolve(
            self.runtime_config.bandwidth,
            self.runtime_config.pod_annotations.as_ref(),
            self.static_limits,
        )
    }

    /// The netconf's dataplane tuning, type-checked (ranges are checked by
    /// `limits::pod_limits`).
    pub fn tuning(&self) -> Result<Tuning> {
        Ok(Tuning {
            sketch_width: uint_field("sketchWidth", &self.sketch_width)?,
            sketch_depth: uint_field("sketchDepth", &self.sketch_depth)?,
            heavy_threshold_bytes: uint_field("heavyThresholdBytes", &self.heavy_threshold_bytes)?,
            window_ms: uint_field("windowMs", &self.window_ms)?,
            edt_horizon_ms: uint_field("edtHorizonMs", &self.edt_horizon_ms)?,
        })
    }

    pub fn pod_limits(&self) -> Result<PodLimits> {
        let bw = self.requested_bandwidth()?;
        pod_limits(
            RequestedLimit {
                rate_bits: bw.ingress_rate,
                burst_bits: bw.ingress_burst,
            },
            RequestedLimit {
                rate_bits: bw.egress_rate,
                burst_bits: bw.egress_burst,
            },
            &self.tuning()?,
        )
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
    fn runtime_config_wins_per_direction_and_static_fields_fill_in() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"0.4.0","name":"n","type":"natra","ingressRate":8000,"egressRate":8000,
                "runtimeConfig":{"bandwidth":{"egressRate":16000}}}"#,
        )
        .unwrap();
        let limits = conf.pod_limits().unwrap();
        assert_eq!(limits.pod_ingress.unwrap().rate_bytes_per_sec, 1_000);
        assert_eq!(limits.pod_egress.unwrap().rate_bytes_per_sec, 2_000);
    }

    #[test]
    fn annotations_arrive_under_the_containerd_capability_name() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"natra","runtimeConfig":
                {"io.kubernetes.cri.pod-annotations":{"kubernetes.io/egress-bandwidth":"10M"}}}"#,
        )
        .unwrap();
        let limits = conf.pod_limits().unwrap();
        assert!(limits.pod_ingress.is_none());
        assert_eq!(limits.pod_egress.unwrap().rate_bytes_per_sec, 1_250_000);
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
    fn tuning_overrides_are_read_in_camel_case() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"natra","sketchWidth":512,
                "sketchDepth":3,"heavyThresholdBytes":100000,"windowMs":400,
                "edtHorizonMs":100,
                "runtimeConfig":{"bandwidth":{"ingressRate":20000000,"egressRate":20000000}}}"#,
        )
        .unwrap();
        let l = conf.pod_limits().unwrap();
        let (i, e) = (l.pod_ingress.unwrap(), l.pod_egress.unwrap());
        assert_eq!((i.sketch_width, i.sketch_depth), (512, 3));
        assert_eq!(i.heavy_threshold_bytes, 100_000);
        assert_eq!(i.epoch_ns, 200_000_000);
        assert!(!i.edt && !e.edt);
        assert_eq!((i.edt_horizon_ns, e.edt_horizon_ns), (0, 100_000_000));
        assert_eq!(e.with_edt().edt_debt_bytes, 250_000); // 2.5 MB/s x 100 ms
    }

    #[test]
    fn bad_tuning_values_are_invalid_config() {
        for bad in [
            r#""sketchWidth":100"#,
            r#""sketchWidth":-128"#,
            r#""sketchWidth":"128""#,
            r#""sketchDepth":0"#,
            r#""sketchDepth":1.5"#,
            r#""heavyThresholdBytes":0"#,
            r#""windowMs":100000"#,
            r#""edtHorizonMs":0"#,
        ] {
            let conf = NetConf::parse(
                format!(
                    r#"{{"cniVersion":"1.0.0","name":"n","type":"natra",{bad},
                    "runtimeConfig":{{"bandwidth":{{"egressRate":20000000}}}}}}"#
                )
                .as_bytes(),
            )
            .unwrap();
            let e = conf.pod_limits().unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidConfig, "{bad}: {e}");
        }
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
