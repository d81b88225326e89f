//! natra's BPF object loaded into the kernel by a test itself, outside
//! natra's ADD (BPF_PROG_RUN, clsact building blocks, a foreign program).
use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use natra::dataplane::skeleton::{NatraSkel, NatraSkelBuilder};

/// The skeleton, opened and loaded (needs root). Its object storage is
/// leaked, one small allocation per call that lives as long as the test;
/// the programs and maps themselves are freed when the skeleton drops.
pub fn loaded() -> NatraSkel<'static> {
    NatraSkelBuilder::default()
        .open(Box::leak(Box::new(MaybeUninit::uninit())))
        .expect("open the BPF object")
        .load()
        .expect("load the BPF programs (verifier log above)")
}
