//! One rate measurement at a time, and no CNI call while one runs.
//!
//! On a 2-core machine a concurrent ADD in the same test binary costs a CPU
//! for ~250 ms of verifier work (kernel time), and a TCP flow measured
//! meanwhile came out at 0.79 of its cap instead of 0.95–0.97 (seen on
//! `clsact_hostside_attaches_on_the_host_veth`, one run in three). Rate
//! measurements take the machine exclusively; CNI calls share it.
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static MACHINE: RwLock<()> = RwLock::new(());

/// Held for the whole of a rate or latency measurement.
pub fn measuring() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|e| e.into_inner())
}

/// Held for one plugin invocation (libcni or natra directly).
pub fn cni_call() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|e| e.into_inner())
}
