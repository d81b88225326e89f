//! STATUS (CNI 1.1): can natra serve ADD on this node right now?
use crate::error::Result;

/// Ready when the pin root is on a bpffs and the programs load (which also
/// proves BTF and the verifier are happy on this kernel).
pub fn check_ready() -> Result<()> {
    crate::dataplane::probe_ready()
}
