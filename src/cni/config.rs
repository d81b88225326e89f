//! The network configuration natra reads from stdin, decoded once into
//! [`NetConf`], which every verb, option and policy reads.
//!
//! Keys are matched as Go's `encoding/json` matches them (gojson.rs): the
//! runtimes send `runtimeConfig.bandwidth` with Go's field names
//! (`IngressRate`, …), and Go plugins read any case of a field's name.
use serde::Deserialize;
use serde_json::Value;

use super::gojson::{self, field, Raw, Shape};
pub use super::sources::Bandwidth;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::limits::{pod_limits, PodLimits, RequestedLimit, Tuning};

/// cniVersions natra accepts in a config.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// GC's lists of the attachments the runtime keeps: the spec's key, and what
/// some libcni versions send.
pub const VALID_ATTACHMENTS_KEYS: [&str; 2] = ["cni.dev/valid-attachments", "cni.dev/attachments"];

/// One `{containerID, ifname}` of GC's lists.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct GcAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig {
    bandwidth: Option<Bandwidth>,
    /// The Pod's annotations, under either name runtimes use (see sources.rs).
    #[serde(default)]
    pod_annotations: Option<Value>,
    #[serde(default, rename = "io.kubernetes.cri.pod-annotations")]
    cri_pod_annotations: Option<Value>,
}

/// The netconf as Go would decode it: every struct natra reads, with its
/// fields' canonical names (what upstream's Go tags say, and natra's own).
const BANDWIDTH: Shape = Shape::Struct(&[
    field("ingressRate", Shape::Scalar),
    field("ingressBurst", Shape::Scalar),
    field("egressRate", Shape::Scalar),
    field("egressBurst", Shape::Scalar),
]);
const GC_ATTACHMENTS: Shape = Shape::List(&Shape::Struct(&[
    field("containerID", Shape::Scalar),
    field("ifname", Shape::Scalar),
]));
static NETCONF: Shape = Shape::Struct(&[
    field("cniVersion", Shape::Scalar),
    field("name", Shape::Scalar),
    field("type", Shape::Scalar),
    field(
        "runtimeConfig",
        Shape::Struct(&[
            field("bandwidth", BANDWIDTH),
            field("podAnnotations", Shape::Map(&Shape::Opaque)),
            field(
                "io.kubernetes.cri.pod-annotations",
                Shape::Map(&Shape::Opaque),
            ),
        ]),
    ),
    field("prevResult", Shape::Opaque),
    field("ingressRate", Shape::Scalar),
    field("ingressBurst", Shape::Scalar),
    field("egressRate", Shape::Scalar),
    field("egressBurst", Shape::Scalar),
    field("sketchWidth", Shape::Opaque),
    field("sketchDepth", Shape::Opaque),
    field("heavyThresholdBytes", Shape::Opaque),
    field("windowMs", Shape::Opaque),
    field("edtHorizonMs", Shape::Opaque),
    field("attachMode", Shape::Opaque),
    field("edtPacing", Shape::Opaque),
    field("failurePolicy", Shape::Opaque),
    field(VALID_ATTACHMENTS_KEYS[0], GC_ATTACHMENTS),
    field(VALID_ATTACHMENTS_KEYS[1], GC_ATTACHMENTS),
]);

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
    /// Attach options (cni::options) and failurePolicy (cni::policy), raw so
    /// that a wrong type is reported like a wrong value.
    #[serde(default)]
    pub attach_mode: Option<Value>,
    #[serde(default)]
    pub edt_pacing: Option<Value>,
    #[serde(default)]
    pub failure_policy: Option<Value>,
    /// GC's lists (cni::gc); None when the key is absent.
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<GcAttachment>>,
    #[serde(default, rename = "cni.dev/attachments")]
    pub attachments: Option<Vec<GcAttachment>>,
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
    /// Decodes a netconf as Go would, without judging its version.
    pub fn decode(stdin: &[u8]) -> Result<NetConf> {
        let raw = Raw::parse(stdin)
            .context(ErrorKind::Decode, "cannot decode the network configuration")?;
        serde_json::from_value(gojson::canonical(raw, &NETCONF))
            .context(ErrorKind::Decode, "cannot decode the network configuration")
    }

    /// Decodes a netconf and refuses a cniVersion natra does not speak.
    pub fn parse(stdin: &[u8]) -> Result<NetConf> {
        let conf = NetConf::decode(stdin)?;
        if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
            return Err(Error::new(
                ErrorKind::IncompatibleVersion,
                format!("cniVersion {:?} is not supported", conf.cni_version),
            )
            .with_details(format!("supported: {}", SUPPORTED_VERSIONS.join(", "))));
        }
        Ok(conf)
    }

    /// The limits asked for, merged per direction from runtimeConfig.bandwidth,
    /// the Pod's annotations and the static fields (precedence in sources.rs).
    pub fn requested_bandwidth(&self) -> Result<Bandwidth> {
        let rc = &self.runtime_config;
        let annotations = super::sources::pod_annotations([
            rc.pod_annotations.as_ref(),
            rc.cri_pod_annotations.as_ref(),
        ])?;
        super::sources::resolve(rc.bandwidth, annotations.as_ref(), self.static_limits)
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

    /// What containerd 1.6 (go-cni) sends natra for a Pod annotated
    /// `kubernetes.io/{ingress,egress}-bandwidth: 20M`, as seen through CRI
    /// (tests/cri.rs): go-cni's BandWidth has no JSON tags, so the keys are Go's
    /// field names, and the burst is MaxUint32 bits.
    const CONTAINERD_ADD: &[u8] = br#"{"capabilities":{"bandwidth":true},"cniVersion":"1.0.0",
        "name":"natra-cri","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"veth1234",
        "mac":"aa:bb:cc:dd:ee:ff"},{"name":"eth0","mac":"aa:bb:cc:dd:ee:01","sandbox":
        "/var/run/netns/cni-1"}],"ips":[{"interface":1,"address":"10.99.1.2/24",
        "gateway":"10.99.1.1"}],"dns":{}},"runtimeConfig":{"bandwidth":{"IngressRate":20000000,
        "IngressBurst":4294967295,"EgressRate":20000000,"EgressBurst":4294967295}},"type":"natra"}"#;
    /// CRI-O (ocicni) sends the same Go names; its burst is MaxUint32*8-1 bits.
    const CRIO_ADD: &[u8] = br#"{"cniVersion":"1.0.0","name":"crio","type":"natra",
        "capabilities":{"bandwidth":true},"runtimeConfig":{"bandwidth":{"IngressRate":10000000,
        "IngressBurst":34359738359,"EgressRate":5000000,"EgressBurst":34359738359}},
        "prevResult":{"cniVersion":"1.0.0","interfaces":[],"ips":[]}}"#;

    #[test]
    fn containerds_go_field_names_are_read() {
        let conf = NetConf::parse(CONTAINERD_ADD).unwrap();
        assert_eq!(
            conf.requested_bandwidth().unwrap(),
            Bandwidth {
                ingress_rate: 20_000_000,
                ingress_burst: 4_294_967_295,
                egress_rate: 20_000_000,
                egress_burst: 4_294_967_295,
            }
        );
        let limits = conf.pod_limits().unwrap();
        let (i, e) = (limits.pod_ingress.unwrap(), limits.pod_egress.unwrap());
        assert_eq!(
            (i.rate_bytes_per_sec, e.rate_bytes_per_sec),
            (2_500_000, 2_500_000)
        );
        // The 512 MiB burst is clamped to 500 ms of the rate (docs/limits.md).
        assert_eq!((i.burst_bytes, e.burst_bytes), (1_250_000, 1_250_000));
        assert_eq!(
            conf.prev_result.unwrap()["ips"][0]["address"],
            "10.99.1.2/24"
        );
    }

    #[test]
    fn crios_go_field_names_and_burst_are_read() {
        let conf = NetConf::parse(CRIO_ADD).unwrap();
        let limits = conf.pod_limits().unwrap();
        let (i, e) = (limits.pod_ingress.unwrap(), limits.pod_egress.unwrap());
        assert_eq!(
            (i.rate_bytes_per_sec, e.rate_bytes_per_sec),
            (1_250_000, 625_000)
        );
        assert_eq!((i.burst_bytes, e.burst_bytes), (625_000, 312_500));
    }

    #[test]
    fn every_key_is_matched_case_insensitively_as_go_does() {
        let conf = NetConf::parse(
            br#"{"CNIVERSION":"1.0.0","Name":"n","TYPE":"natra","AttachMode":"tcx-hostside",
                "edtpacing":"off","FailurePolicy":"ignore","SketchWidth":256,"EgressRATE":8000,
                "PrevResult":{"IPs":[]},"RuntimeConfig":{"Bandwidth":{"ingressrate":16000},
                "PodAnnotations":{"kubernetes.io/egress-bandwidth":"1M"}}}"#,
        )
        .unwrap();
        assert_eq!(
            (conf.cni_version.as_str(), conf.name.as_str()),
            ("1.0.0", "n")
        );
        assert_eq!(conf.plugin_type, "natra");
        assert_eq!(conf.attach_mode, Some(Value::from("tcx-hostside")));
        assert_eq!(conf.edt_pacing, Some(Value::from("off")));
        assert_eq!(conf.failure_policy, Some(Value::from("ignore")));
        // Opaque values keep their own keys as written.
        assert_eq!(conf.prev_result, Some(serde_json::json!({"IPs": []})));
        let l = conf.pod_limits().unwrap();
        assert_eq!(l.pod_ingress.unwrap().rate_bytes_per_sec, 2_000);
        assert_eq!(l.pod_ingress.unwrap().sketch_width, 256);
        // The annotation beats the static field; its key is data, not folded.
        assert_eq!(l.pod_egress.unwrap().rate_bytes_per_sec, 125_000);
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","runtimeConfig":{"podAnnotations":
                {"Kubernetes.io/Egress-Bandwidth":"1M"}}}"#,
        )
        .unwrap();
        assert!(conf.pod_limits().unwrap().is_unlimited());
    }

    #[test]
    fn a_later_spelling_of_a_rate_wins_as_in_go() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","runtimeConfig":{"bandwidth":
                {"ingressRate":8000,"IngressRate":16000,"egressRate":8000,"EgressRate":null}}}"#,
        )
        .unwrap();
        let bw = conf.requested_bandwidth().unwrap();
        assert_eq!((bw.ingress_rate, bw.egress_rate), (16_000, 8_000));
    }

    #[test]
    fn go_names_with_wrong_types_are_decode_errors() {
        for bad in [
            r#"{"IngressRate":"20M"}"#,
            r#"{"IngressRate":-1}"#,
            r#"{"IngressRate":2e7}"#,
            r#"{"EgressBurst":true}"#,
        ] {
            let doc = format!(r#"{{"cniVersion":"1.0.0","runtimeConfig":{{"bandwidth":{bad}}}}}"#);
            let e = NetConf::parse(doc.as_bytes()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Decode, "{bad}");
        }
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
        assert_eq!(
            (i.edt_horizon_ns, e.edt_horizon_ns),
            (100_000_000, 100_000_000)
        );
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
