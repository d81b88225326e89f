//! natra called alone for a Pod (not the chain), with the environment
//! libcni gives a plugin: what a test does to see exactly what natra made
//! or left, with the veth still there.
use std::process::Output;

use serde_json::{json, Value};

use super::plugin::natra_raw;
use super::pod::Pod;

impl Pod<'_> {
    /// natra's netconf for this Pod's network (`cniVersion` 1.0.0, `name`,
    /// `type`) with `fields` (attachMode, runtimeConfig, prevResult, …)
    /// set on it.
    pub fn natra_conf(&self, fields: Value) -> Value {
        let mut conf = json!({"cniVersion": "1.0.0", "name": self.net.net_name, "type": "natra"});
        for (k, v) in fields.as_object().expect("fields is an object") {
            conf[k] = v.clone();
        }
        conf
    }

    /// natra alone: `verb` for this Pod's container ID, netns and
    /// interface, CNI_PATH as libcni sets it, `env` on top, `conf` on stdin.
    pub fn natra_alone(&self, verb: &str, conf: &Value, env: &[(&str, &str)]) -> Output {
        let netns = self.netns_path.to_str().expect("netns path is UTF-8");
        let mut vars = vec![
            ("CNI_COMMAND", verb),
            ("CNI_CONTAINERID", self.id.as_str()),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", self.ifname.as_str()),
            ("CNI_PATH", "/usr/lib/cni"),
        ];
        vars.extend_from_slice(env);
        natra_raw(&vars, &self.net.pin_root, &conf.to_string())
    }
}
