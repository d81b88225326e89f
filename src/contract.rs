//! include/natra.h's `#define`s as Rust constants, generated from the header
//! by build.rs: the one place their values come from (the structs and enums
//! come through the skeleton's BTF, `dataplane::skeleton::types`).
#![allow(unused_parens, clippy::unreadable_literal)]
include!(concat!(env!("OUT_DIR"), "/natra_h_constants.rs"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_headers_constants_arrive_with_their_values() {
        assert_eq!(NATRA_NSEC_PER_SEC, 1_000_000_000);
        assert_eq!(NATRA_MAX_BURST_BYTES, 1 << 32);
        assert_eq!(NATRA_SKETCH_BYTES_MASK, (1 << 40) - 1);
        assert_eq!(NATRA_SKETCH_EPOCH_MASK, 0xff_ffff);
        assert_eq!(NATRA_SKETCH_MAX_DEPTH, 8);
    }
}
