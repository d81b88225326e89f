//! What loading costs: the verifier's work per program.
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd};

use crate::setup::loaded;

/// Verifying the programs is most of what an ADD costs (docs/dataplane.md,
/// "Verification"): each program must stay a few thousand processed
/// instructions (about 5,000 on 6.18), not the 70,000 (125 ms each) that
/// paths multiplying through parse, sketch and bucket once cost. The bound
/// leaves room for other kernels' verifiers; `make verifier-stats` shows the
/// full statistics.
#[test]
#[ignore = "needs root: loads the programs (run via make test)"]
fn each_program_verifies_in_a_few_thousand_instructions() {
    let skel = loaded();
    for (name, p) in [
        ("pod_ingress", &skel.progs.pod_ingress),
        ("pod_egress", &skel.progs.pod_egress),
    ] {
        let mut info = libbpf_sys::bpf_prog_info::default();
        let mut len = size_of::<libbpf_sys::bpf_prog_info>() as u32;
        // SAFETY: info is a bpf_prog_info of len bytes; the kernel fills at
        // most len of them.
        let ret = unsafe {
            libbpf_sys::bpf_obj_get_info_by_fd(
                p.as_fd().as_raw_fd(),
                (&mut info as *mut libbpf_sys::bpf_prog_info).cast(),
                &mut len,
            )
        };
        assert_eq!(ret, 0, "{name}: BPF_OBJ_GET_INFO_BY_FD");
        println!(
            "{name}: {} instructions processed by the verifier",
            info.verified_insns
        );
        assert!(
            info.verified_insns > 0 && info.verified_insns <= 20_000,
            "{name}: the verifier processed {} instructions (budget 20,000)",
            info.verified_insns
        );
    }
}
