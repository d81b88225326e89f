//! The libbpf-cargo skeleton of `bpf/natra.bpf.c`; its `types` module is the
//! Rust view of `include/natra.h`.
include!(concat!(env!("OUT_DIR"), "/natra.skel.rs"));
