//! Changing a running attachment's limits in place (`natra set`, the node
//! agent's overrides): the new limits are written into the pinned `config`
//! map the attached programs read on every packet. Nothing is re-attached or
//! reloaded, so no packet meets a missing program, and the bucket keeps its
//! level, clamped into the new bucket's range when that shrank.
//!
//! What stays: the sketch's geometry (the sketch map was sized at load), and
//! which directions have a program at all: a direction ADD did not limit has
//! none, so it cannot be limited without re-attaching (recreate the Pod). A
//! limited direction can be lifted (rate 0: the program passes everything,
//! charging nothing) and limited again later.
use std::os::fd::AsFd;

use super::direction::Direction;
use super::edt;
use super::maps;
use super::pins::{AttachmentPins, BUCKET_MAP, CONFIG_MAP};
use super::record;
use crate::contract::NATRA_NSEC_PER_SEC;
use crate::error::{Error, ErrorKind, Result};
use crate::limits::{BucketParams, PodLimits};

/// What a live change did to one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    pub direction: Direction,
    /// Bytes per second before and after (0: not limited).
    pub rate_before: u64,
    pub rate_after: u64,
    /// The bucket's level had to be lowered into the new, smaller bucket.
    pub level_clamped: bool,
}

/// [`set_limits`] for an attachment as `list_attachments` shows it.
pub fn set_view_limits(
    a: &super::view::AttachmentView,
    limits: &PodLimits,
) -> Result<Vec<Changed>> {
    set_limits(
        &AttachmentPins {
            dir: a.pin_dir.clone(),
        },
        limits,
    )
}

/// Writes `limits` into the running attachment at `pins`. Each direction
/// `limits` leaves unset is lifted if it was limited.
pub fn set_limits(pins: &AttachmentPins, limits: &PodLimits) -> Result<Vec<Changed>> {
    let config = pins.open_map(CONFIG_MAP)?;
    let bucket = pins.open_map(BUCKET_MAP)?;
    let rec = record::read(pins)?;
    let flags = rec.as_ref().map_or(0, |r| r.flags);
    let place = rec.as_ref().map(|r| r.place).unwrap_or_default();
    let mut changed = Vec::new();
    // Checked for both directions before either is written.
    let mut plan = Vec::new();
    for dir in Direction::ALL {
        let current = maps::read_config(config.as_fd(), place.key(dir))?;
        let attached = current.sketch_width > 0;
        let wanted = dir.limit(limits);
        if wanted.is_some() && !attached {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "{} was not limited when the Pod was added: it has no program to limit \
                     it with (recreate the Pod to limit it)",
                    dir.program_name()
                ),
            ));
        }
        plan.push((dir, current, wanted));
    }
    for (dir, current, wanted) in plan {
        if current.sketch_width == 0 {
            continue;
        }
        let params = match wanted {
            Some(p) => {
                let p = if record::edt_for(flags, dir) {
                    p.with_edt()
                } else {
                    p
                };
                // The sketch map was sized at load: keep its geometry.
                BucketParams {
                    sketch_width: current.sketch_width,
                    sketch_depth: current.sketch_depth,
                    ..p
                }
            }
            None => BucketParams {
                rate_bytes_per_sec: 0,
                sketch_width: current.sketch_width,
                sketch_depth: current.sketch_depth,
                ..Default::default()
            },
        };
        let mut written = maps::config_for(dir, &params, &place);
        written.sketch_shift = current.sketch_shift;
        written.sketch_base = current.sketch_base;
        written.generation = current.generation;
        maps::write_config_raw(config.as_fd(), place.key(dir), &written)?;
        // natra's fq holds what the new rate may queue (its sizing scales
        // with the rate), as ADD would have sized it.
        if let Some(rec) = rec
            .as_ref()
            .filter(|_| params.edt && params.rate_bytes_per_sec > 0)
        {
            edt::resize_fq(rec, dir, &written)?;
        }
        // The level carries over; only a bucket that shrank below it (or a
        // debt deeper than the new EDT allows) moves it into range.
        let mut state = maps::read_bucket(bucket.as_fd(), place.key(dir))?;
        let top = (params.burst_bytes * NATRA_NSEC_PER_SEC) as i64;
        let bottom = -((params.edt_debt_bytes * NATRA_NSEC_PER_SEC) as i64);
        let level = state.level.clamp(bottom, top.max(bottom));
        let level_clamped = params.rate_bytes_per_sec > 0 && level != state.level;
        if level_clamped {
            state.level = level;
            maps::write_bucket(bucket.as_fd(), place.key(dir), &state)?;
        }
        changed.push(Changed {
            direction: dir,
            rate_before: current.rate_bytes_per_sec,
            rate_after: params.rate_bytes_per_sec,
            level_clamped,
        });
    }
    Ok(changed)
}
