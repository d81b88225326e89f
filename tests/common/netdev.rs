//! What the kernel's network devices say, independent of natra: a Pod's
//! host veth found from the Pod's eth0, and whether this kernel has sch_fq.
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use super::pod::{run, run_ok, Pod};

/// The host end of the Pod's veth, found as the kernel links them (no ADD
/// result needed): the host interface whose ifindex is the `link_index`
/// (iflink) of the Pod's eth0.
pub fn host_peer(pod: &Pod) -> String {
    let eth0 =
        run_ok(Command::new("ip").args(["-n", &pod.netns_name, "-j", "link", "show", "eth0"]));
    let eth0: Value = serde_json::from_str::<Vec<Value>>(&eth0)
        .unwrap_or_else(|e| panic!("ip -j link show eth0: {e}: {eth0}"))
        .remove(0);
    let peer = eth0["link_index"]
        .as_u64()
        .unwrap_or_else(|| panic!("the Pod's eth0 has no peer: {eth0}"));
    let hosts: Vec<Value> =
        serde_json::from_str(&run_ok(Command::new("ip").args(["-j", "link"]))).unwrap();
    hosts
        .iter()
        .find(|l| l["ifindex"].as_u64() == Some(peer))
        .and_then(|l| l["ifname"].as_str())
        .unwrap_or_else(|| panic!("no host interface with ifindex {peer}"))
        .to_owned()
}

/// Whether this kernel can make fq the root qdisc of a veth (needs root):
/// `tc qdisc add dev <veth> root fq` on a veth pair in a throwaway netns,
/// tried once per test binary. natra's EDT pacing depends on exactly this,
/// so tests that see EDT on or off assert the case this answer names.
pub fn has_sch_fq() -> bool {
    static FQ: OnceLock<bool> = OnceLock::new();
    *FQ.get_or_init(probe_sch_fq)
}

fn probe_sch_fq() -> bool {
    struct Netns(String);
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = run(Command::new("ip").args(["netns", "del", &self.0]));
        }
    }
    let ns = Netns(format!("natra-fqprobe-{}", std::process::id()));
    let _ = run(Command::new("ip").args(["netns", "del", &ns.0]));
    run_ok(Command::new("ip").args(["netns", "add", &ns.0]));
    run_ok(Command::new("ip").args([
        "-n", &ns.0, "link", "add", "fq0", "type", "veth", "peer", "name", "fq1",
    ]));
    let out =
        run(Command::new("tc").args(["-n", &ns.0, "qdisc", "add", "dev", "fq0", "root", "fq"]));
    let has = out.status.success();
    eprintln!(
        "sch_fq probe (tc qdisc add dev <veth> root fq): {} {}",
        if has {
            "works: this kernel has sch_fq"
        } else {
            "fails: no sch_fq"
        },
        String::from_utf8_lossy(&out.stderr).trim()
    );
    has
}
