//! Where a Pod interface's state lives in the dataplane's maps: its slot
//! (keys slot x NATRA_DIR_COUNT + direction), the generation it owns that
//! slot under, and which dataplane (the shared one of a state layout, or a
//! private load). include/natra.h explains the layout.
use super::direction::Direction;
use crate::contract::{NATRA_SLOTS, NATRA_SLOT_SKETCH_CELLS};

/// A Pod interface's place in a dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Placement {
    /// The shared dataplane's layout id; 0 for a private load (and for
    /// records of natra before the shared dataplane).
    pub layout: u64,
    pub slot: u32,
    /// Matched by the program against its config's: 0 only in records of
    /// natra before the shared dataplane (whose programs never check it).
    pub generation: u32,
}

impl Placement {
    /// A private load: slot 0 of maps sized for one.
    pub const PRIVATE: Placement = Placement {
        layout: 0,
        slot: 0,
        generation: 1,
    };

    pub const SLOTS: u32 = NATRA_SLOTS as u32;

    pub fn is_shared(&self) -> bool {
        self.layout != 0
    }

    /// The key of `dir` in natra_cfg, natra_bucket and natra_stats.
    pub fn key(&self, dir: Direction) -> u32 {
        self.slot * Direction::ALL.len() as u32 + dir.index()
    }

    /// The first sketch cell of `dir`, whose sketch has `cells` cells.
    pub fn sketch_base(&self, dir: Direction, cells: u32) -> u32 {
        if self.is_shared() {
            self.key(dir) * NATRA_SLOT_SKETCH_CELLS as u32
        } else {
            dir.index() * cells
        }
    }

    /// The generation after `previous` (never 0, which no live slot has).
    pub fn next_generation(previous: u32) -> u32 {
        previous.wrapping_add(1).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_key_their_directions_and_sketch_ranges_apart() {
        let a = Placement {
            layout: 7,
            slot: 3,
            generation: 1,
        };
        assert_eq!(a.key(Direction::PodIngress), 6);
        assert_eq!(a.key(Direction::PodEgress), 7);
        let cells = NATRA_SLOT_SKETCH_CELLS as u32;
        assert_eq!(a.sketch_base(Direction::PodEgress, 512), 7 * cells);
        assert_eq!(Placement::PRIVATE.key(Direction::PodEgress), 1);
        assert_eq!(Placement::PRIVATE.sketch_base(Direction::PodEgress, 96), 96);
        assert_eq!(Placement::next_generation(u32::MAX), 1);
        assert_eq!(Placement::next_generation(4), 5);
    }
}
