//! STATUS (CNI 1.1): can natra serve ADD on this node right now?
use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use crate::dataplane::pins;
use crate::dataplane::skeleton::NatraSkelBuilder;
use crate::error::{Error, ErrorKind, Result};

/// Ready when the pin root is on a bpffs and the programs load (which also
/// proves BTF and the verifier are happy on this kernel).
pub fn check_ready() -> Result<()> {
    let root = pins::pin_root();
    pins::ensure_bpffs(&root).map_err(|e| not_ready("bpffs is not usable", e))?;
    let mut storage = MaybeUninit::uninit();
    NatraSkelBuilder::default()
        .open(&mut storage)
        .and_then(|open| open.load())
        .map_err(|e| not_ready("the BPF programs cannot be loaded", e))?;
    Ok(())
}

fn not_ready(what: &str, cause: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::NotReady, format!("natra is not ready: {what}")).with_details(cause)
}
