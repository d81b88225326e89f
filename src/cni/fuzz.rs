//! Property test over everything natra parses from a runtime: the netconf,
//! runtimeConfig (bandwidth, annotations), the options. Random documents
//! built from the real field names with hostile values: no input may panic,
//! and every accepted limit must be one the dataplane can run.
//! `NATRA_FUZZ_ITERS` runs it longer (`make fuzz`).
#![cfg(test)]

use serde_json::{json, Map, Value};

use super::config::NetConf;
use super::options;
use super::policy::FailurePolicy;
use crate::limits::{
    BucketParams, BURST_CEILING_BYTES, BURST_FLOOR_BYTES, MAX_RATE_BITS, MIN_RATE_BITS,
};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }

    /// A field name as a runtime may spell it: as tagged, Go's field name
    /// (what containerd and CRI-O send), or in any case.
    fn spelling(&mut self, name: &str) -> String {
        match self.next() % 4 {
            0 => name.to_owned(),
            1 => name[..1].to_uppercase() + &name[1..],
            2 => name.to_uppercase(),
            _ => name.to_lowercase(),
        }
    }

    /// A value of any JSON shape, biased to the edges that matter.
    fn value(&mut self) -> Value {
        match self.next() % 12 {
            0 => Value::Null,
            1 => json!(-1),
            2 => json!(u64::MAX),
            3 => json!(1.5),
            4 => json!(true),
            5 => json!([1, 2]),
            6 => json!({"x": 1}),
            7 => json!(self.next() % 2_000),
            8 => json!(self.next()),
            9 => json!(*self.pick(&[
                "10M",
                "1Gi",
                "5",
                "",
                "1e3",
                "-1M",
                "x",
                "1.5k",
                "999999999P"
            ])),
            10 => json!(4_294_967_295u64),
            _ => json!(self.next() % 2_000_000_000_000),
        }
    }
}

fn random_netconf(rng: &mut Rng) -> Value {
    let mut conf = Map::new();
    conf.insert(
        "cniVersion".into(),
        json!(*rng.pick(&["1.0.0", "0.3.1", "1.1.0", "0.4.0", "2.0", ""])),
    );
    conf.insert("name".into(), json!("n"));
    conf.insert("type".into(), json!("natra"));
    let fields = [
        "ingressRate",
        "ingressBurst",
        "egressRate",
        "egressBurst",
        "failurePolicy",
        "attachMode",
        "edtPacing",
        "sketchWidth",
        "sketchDepth",
        "heavyThresholdBytes",
        "windowMs",
        "edtHorizonMs",
    ];
    for f in fields {
        if rng.next() % 3 == 0 {
            conf.insert(rng.spelling(f), rng.value());
        }
    }
    let mut rc = Map::new();
    if rng.next() % 2 == 0 {
        let mut bw = Map::new();
        for f in &fields[..4] {
            if rng.next() % 2 == 0 {
                bw.insert(rng.spelling(f), rng.value());
            }
        }
        rc.insert("bandwidth".into(), Value::Object(bw));
    }
    if rng.next() % 2 == 0 {
        let key = *rng.pick(&["podAnnotations", "io.kubernetes.cri.pod-annotations"]);
        rc.insert(
            key.into(),
            json!({
                "kubernetes.io/ingress-bandwidth": rng.value(),
                "kubernetes.io/egress-bandwidth": rng.value(),
            }),
        );
    }
    conf.insert("runtimeConfig".into(), Value::Object(rc));
    Value::Object(conf)
}

fn assert_runnable(p: &BucketParams, doc: &Value) {
    let rate_bits = p.rate_bytes_per_sec * 8;
    assert!(
        (MIN_RATE_BITS..=MAX_RATE_BITS).contains(&rate_bits),
        "rate {rate_bits} from {doc}"
    );
    assert!(
        (BURST_FLOOR_BYTES..=BURST_CEILING_BYTES).contains(&p.burst_bytes),
        "burst {} from {doc}",
        p.burst_bytes
    );
    assert!(p.ecn_band_bytes <= p.burst_bytes, "band from {doc}");
    assert!(p.refill_full_ns > 0, "refill from {doc}");
}

#[test]
fn random_netconfs_never_panic_and_accepted_limits_are_runnable() {
    let iters: u64 = std::env::var("NATRA_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut accepted = 0u64;
    for _ in 0..iters {
        let doc = random_netconf(&mut rng);
        let bytes = doc.to_string().into_bytes();
        let Ok(conf) = NetConf::parse(&bytes) else {
            continue;
        };
        let _ = FailurePolicy::from_netconf(&conf);
        let _ = options::parse_with_env(&conf, |_| None);
        if let Ok(limits) = conf.pod_limits() {
            accepted += 1;
            for p in [limits.pod_ingress, limits.pod_egress]
                .into_iter()
                .flatten()
            {
                assert_runnable(&p, &doc);
            }
        }
    }
    assert!(accepted > 0, "the generator reached valid configs");
}
