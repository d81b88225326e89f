//! What natra prints on stdout: the chained result, or a CNI error.
use serde_json::{json, Value};

/// The previous plugin's result, printed back unchanged but for its
/// cniVersion, which must be the config's.
pub fn passthrough(prev_result: Option<&Value>, cni_version: &str) -> Value {
    let mut result = prev_result.cloned().unwrap_or_else(|| json!({}));
    if let Value::Object(map) = &mut result {
        map.insert("cniVersion".into(), Value::String(cni_version.into()));
    }
    result
}

pub fn error(cni_version: &str, code: u32, msg: &str, details: &str) -> Value {
    json!({ "cniVersion": cni_version, "code": code, "msg": msg, "details": details })
}

pub fn version(cni_version: &str, supported: &[&str]) -> Value {
    json!({ "cniVersion": cni_version, "supportedVersions": supported })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prev_result_is_kept_verbatim_per_version() {
        for (version, prev) in [
            (
                "0.3.1",
                r#"{"cniVersion":"0.3.1","interfaces":[{"name":"eth0","sandbox":"/run/netns/x"}],"ips":[{"version":"4","address":"10.1.0.2/24","interface":0}],"dns":{}}"#,
            ),
            (
                "0.4.0",
                r#"{"cniVersion":"0.4.0","interfaces":[{"name":"veth1","mac":"aa:bb:cc:dd:ee:ff"}],"ips":[{"version":"4","address":"10.1.0.2/24","gateway":"10.1.0.1"}],"routes":[{"dst":"0.0.0.0/0"}]}"#,
            ),
            (
                "1.0.0",
                r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"fd00::2/64","interface":0}],"dns":{"nameservers":["10.0.0.10"]}}"#,
            ),
        ] {
            let parsed: Value = serde_json::from_str(prev).unwrap();
            let out = serde_json::to_string(&passthrough(Some(&parsed), version)).unwrap();
            assert_eq!(out, prev, "cniVersion {version}");
        }
    }

    #[test]
    fn prev_result_takes_the_configs_version() {
        let prev: Value = serde_json::from_str(r#"{"cniVersion":"0.3.1","ips":[]}"#).unwrap();
        let out = passthrough(Some(&prev), "1.0.0");
        assert_eq!(out["cniVersion"], "1.0.0");
        assert_eq!(out["ips"], json!([]));
    }

    #[test]
    fn error_has_the_four_fields() {
        let e = error("1.0.0", 7, "bad", "why");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"cniVersion":"1.0.0","code":7,"msg":"bad","details":"why"}"#
        );
    }
}
