//! The two directions of a Pod's traffic, as natra's maps key them.
use libbpf_rs::ProgramAttachType;

use super::skeleton::types::natra_direction;
use crate::limits::{BucketParams, PodLimits};

/// A direction of a Pod's traffic, named from the Pod's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Into the Pod: the host-side veth's egress.
    PodIngress,
    /// Out of the Pod: the host-side veth's ingress.
    PodEgress,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::PodIngress, Direction::PodEgress];

    pub fn index(self) -> u32 {
        match self {
            Direction::PodIngress => natra_direction::NATRA_DIR_POD_INGRESS.0,
            Direction::PodEgress => natra_direction::NATRA_DIR_POD_EGRESS.0,
        }
    }

    pub fn program_name(self) -> &'static str {
        match self {
            Direction::PodIngress => "pod_ingress",
            Direction::PodEgress => "pod_egress",
        }
    }

    /// The tcx hook on the host-side veth that sees this direction.
    pub fn host_veth_hook(self) -> ProgramAttachType {
        match self {
            Direction::PodIngress => ProgramAttachType::TcxEgress,
            Direction::PodEgress => ProgramAttachType::TcxIngress,
        }
    }

    pub fn limit(self, limits: &PodLimits) -> Option<BucketParams> {
        match self {
            Direction::PodIngress => limits.pod_ingress,
            Direction::PodEgress => limits.pod_egress,
        }
    }
}
