//! Attach modes: where natra's programs sit and how ADD picks a mode (the
//! plan); add.rs carries the plan out, teardown.rs and check.rs undo or
//! verify what it did in any of them.
//!
//! | mode | pod_ingress (into the Pod) | pod_egress (out of the Pod) |
//! |---|---|---|
//! | `tcx-hostside` | tcx egress of the host veth | tcx ingress of the host veth |
//! | `clsact-hostside` | clsact egress of the host veth | clsact ingress of the host veth |
//! | `tcx-podside` | tcx ingress of the Pod's interface | tcx egress of the Pod's interface |
//! | `clsact-podside` | clsact ingress of the Pod's interface | clsact egress of the Pod's interface |
//!
//! Pod-side attachments are made from inside the Pod's netns (on a thread of
//! their own, [`netns::run_in_netns`]); their pins still live in the host's
//! bpffs, since setns(CLONE_NEWNET) leaves the mount namespace alone.
//!
//! `auto` tries the modes in turn ([`auto_order`]): Pod side first when EDT
//! pacing will be used (fq on the Pod's interface only paces what leaves it
//! after natra stamped it), host side first otherwise. Every failed attempt
//! undoes what it made before the next one starts.
//!
//! What an attempt made is written to the `attachment` record (record.rs)
//! as it goes, and undone from it (teardown.rs): the same code serves a
//! failed attempt, DEL and GC. tcx links are pinned as `<prog>_link`; for
//! clsact the programs are pinned as `<prog>_prog` (pins.rs), so DEL and
//! CHECK know natra's program id and never take someone else's filter for
//! natra's (an ifindex can be reused by another Pod's veth once this one
//! died).
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::clsact::Hook;
use super::direction::Direction;
use crate::error::Result;
use crate::netns;

/// Where and how the programs are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    TcxHostside,
    TcxPodside,
    ClsactHostside,
    ClsactPodside,
    /// pod_ingress on the host veth, pod_egress on the Pod's interface: each
    /// direction where an fq after it can pace it (EDT both ways). tcx only:
    /// a clsact mode would own a qdisc on each side.
    TcxSplit,
}

impl AttachMode {
    pub const ALL: [AttachMode; 5] = [
        AttachMode::TcxHostside,
        AttachMode::TcxPodside,
        AttachMode::ClsactHostside,
        AttachMode::ClsactPodside,
        AttachMode::TcxSplit,
    ];

    /// The name `attachMode` / `NATRA_ATTACH_MODE` take.
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::TcxHostside => "tcx-hostside",
            AttachMode::TcxPodside => "tcx-podside",
            AttachMode::ClsactHostside => "clsact-hostside",
            AttachMode::ClsactPodside => "clsact-podside",
            AttachMode::TcxSplit => "tcx-split",
        }
    }

    pub fn parse(name: &str) -> Option<AttachMode> {
        AttachMode::ALL.into_iter().find(|m| m.name() == name)
    }

    /// `dir`'s program sits on the Pod's interface (inside the Pod's
    /// netns), not on the host veth.
    pub fn pod_side(self, dir: Direction) -> bool {
        match self {
            AttachMode::TcxPodside | AttachMode::ClsactPodside => true,
            AttachMode::TcxSplit => dir == Direction::PodEgress,
            AttachMode::TcxHostside | AttachMode::ClsactHostside => false,
        }
    }

    /// Some program of this mode sits inside the Pod's netns.
    pub fn touches_pod(self) -> bool {
        Direction::ALL.into_iter().any(|d| self.pod_side(d))
    }

    pub fn is_tcx(self) -> bool {
        matches!(
            self,
            AttachMode::TcxHostside | AttachMode::TcxPodside | AttachMode::TcxSplit
        )
    }

    /// The `BPF_TCX_*` attach type that sees `dir` in this mode.
    pub fn tcx_attach_type(self, dir: Direction) -> u32 {
        match self.clsact_hook(dir) {
            Hook::Ingress => libbpf_sys::BPF_TCX_INGRESS,
            Hook::Egress => libbpf_sys::BPF_TCX_EGRESS,
        }
    }

    /// The hook (tcx or clsact) that sees `dir` in this mode.
    pub fn clsact_hook(self, dir: Direction) -> Hook {
        if self.pod_side(dir) {
            Hook::for_pod_veth(dir)
        } else {
            Hook::for_host_veth(dir)
        }
    }

    /// The device `dir`'s program attaches to, in its own netns.
    pub fn ifindex(self, dir: Direction, host_ifindex: u32, pod_ifindex: u32) -> u32 {
        if self.pod_side(dir) {
            pod_ifindex
        } else {
            host_ifindex
        }
    }

    /// Where `dir`'s program attaches, for messages.
    pub fn side(self, dir: Direction) -> &'static str {
        if self.pod_side(dir) {
            "the Pod's interface"
        } else {
            "the host veth"
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `attachMode`: one mode, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModeChoice {
    #[default]
    Auto,
    Explicit(AttachMode),
}

impl fmt::Display for ModeChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModeChoice::Auto => f.write_str("auto"),
            ModeChoice::Explicit(m) => m.fmt(f),
        }
    }
}

/// `edtPacing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EdtPacing {
    /// EDT when fq can be had on the Pod's interface, policing otherwise.
    #[default]
    Auto,
    /// EDT or a failed ADD.
    On,
    /// Never EDT; qdiscs are never touched.
    Off,
}

impl EdtPacing {
    pub fn parse(name: &str) -> Option<EdtPacing> {
        match name {
            "auto" => Some(EdtPacing::Auto),
            "on" => Some(EdtPacing::On),
            "off" => Some(EdtPacing::Off),
            _ => None,
        }
    }
}

/// The attach options of one ADD/CHECK (src/cni/options.rs reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    pub mode: ModeChoice,
    pub edt: EdtPacing,
}

/// The Pod an attachment serves, as the runtime names it in CNI_ARGS
/// (`struct natra_pod_ref`, record.rs); empty strings where the runtime
/// passed none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// The two ends of the Pod's veth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The Pod's netns (CNI_NETNS).
    pub netns: PathBuf,
    /// The Pod's interface (CNI_IFNAME), for messages.
    pub pod_ifname: String,
    /// The Pod's interface, in the Pod's netns.
    pub pod_ifindex: u32,
    /// The host-side veth, in the host netns.
    pub host_ifindex: u32,
    /// The Pod, as the runtime names it (CNI_ARGS), for the record.
    pub pod: PodRef,
}

/// What the EDT probe (edt.rs) found on the Pod's interface (pod egress's
/// queue) and on the host veth (pod ingress's queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fq {
    /// fq is the root qdisc of the Pod's interface: EDT can pace pod egress
    /// in the Pod-side modes.
    pub available: bool,
    /// natra installed it (DEL and a failed ADD remove it).
    pub owned: bool,
    /// fq is the root qdisc of the host veth: EDT can pace pod ingress in
    /// the host-side modes (tcx egress runs just before the root qdisc).
    pub host_available: bool,
    /// natra installed that one.
    pub host_owned: bool,
}

/// One load of the dataplane and the modes tried with it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// EDT pacing of pod egress: what the dataplane's config must say.
    pub edt: bool,
    /// natra installed the fq that EDT relies on.
    pub owns_fq: bool,
    /// EDT pacing of pod ingress (host-side modes, fq on the host veth).
    pub edt_ingress: bool,
    /// natra installed the host veth's fq.
    pub owns_host_fq: bool,
    pub modes: Vec<AttachMode>,
}

/// What ADD ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    pub mode: AttachMode,
    /// pod egress paced
    pub edt: bool,
    /// pod ingress paced
    pub edt_ingress: bool,
}

/// The order `auto` tries the modes in.
pub fn auto_order(edt: bool) -> [AttachMode; 4] {
    use AttachMode::*;
    if edt {
        [TcxPodside, ClsactPodside, TcxHostside, ClsactHostside]
    } else {
        [TcxHostside, ClsactHostside, TcxPodside, ClsactPodside]
    }
}

/// The stages of one ADD. EDT paces a direction only where an fq follows
/// its program: pod egress on the Pod's interface (Pod-side and split
/// modes), pod ingress on the host veth (host-side and split modes); a
/// stage's config says which directions it paces. With both fqs, `auto`
/// tries the split modes (EDT both ways), then the Pod-side ones, then
/// (unless `edtPacing` is `on`) the host-side ones, each stage a load of its
/// own; install() narrows a stage to the fqs still in place when it runs.
pub fn plan(opts: &Options, fq: Fq) -> Vec<Stage> {
    use AttachMode::*;
    let stage = |modes: &[AttachMode]| {
        let egress = fq.available && modes.iter().all(|m| m.pod_side(Direction::PodEgress));
        let ingress = fq.host_available && modes.iter().all(|m| !m.pod_side(Direction::PodIngress));
        Stage {
            edt: egress,
            owns_fq: egress && fq.owned,
            edt_ingress: ingress,
            owns_host_fq: ingress && fq.host_owned,
            modes: modes.to_vec(),
        }
    };
    let pod_side = [TcxPodside, ClsactPodside];
    let host_side = [TcxHostside, ClsactHostside];
    match opts.mode {
        ModeChoice::Explicit(mode) => vec![stage(&[mode])],
        ModeChoice::Auto if fq.available => {
            let mut stages = Vec::new();
            if fq.host_available {
                stages.push(stage(&[TcxSplit]));
            }
            stages.push(stage(&pod_side));
            if opts.edt != EdtPacing::On {
                stages.push(stage(&host_side));
            }
            stages
        }
        ModeChoice::Auto if fq.host_available => vec![stage(&host_side), stage(&pod_side)],
        ModeChoice::Auto => vec![stage(&auto_order(false))],
    }
}

/// Runs `work` in the Pod's netns where `mode` puts `dir`'s program on the
/// Pod's interface, here otherwise.
pub fn on_side<T, F>(mode: AttachMode, dir: Direction, netns: &Path, work: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> Result<T> + Send,
{
    if mode.pod_side(dir) {
        netns::run_in_netns(netns, work)
    } else {
        work()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_FQ: Fq = Fq {
        available: false,
        owned: false,
        host_available: false,
        host_owned: false,
    };
    const OUR_FQ: Fq = Fq {
        available: true,
        owned: true,
        host_available: false,
        host_owned: false,
    };

    fn opts(mode: ModeChoice, edt: EdtPacing) -> Options {
        Options { mode, edt }
    }

    #[test]
    fn names_round_trip() {
        for mode in AttachMode::ALL {
            assert_eq!(AttachMode::parse(mode.name()), Some(mode));
        }
        assert_eq!(AttachMode::parse("tcx"), None);
    }

    #[test]
    fn hooks_follow_the_side() {
        use AttachMode::*;
        for (mode, dir, hook) in [
            (
                TcxHostside,
                Direction::PodIngress,
                libbpf_sys::BPF_TCX_EGRESS,
            ),
            (
                TcxHostside,
                Direction::PodEgress,
                libbpf_sys::BPF_TCX_INGRESS,
            ),
            (
                TcxPodside,
                Direction::PodIngress,
                libbpf_sys::BPF_TCX_INGRESS,
            ),
            (TcxPodside, Direction::PodEgress, libbpf_sys::BPF_TCX_EGRESS),
        ] {
            assert_eq!(mode.tcx_attach_type(dir), hook, "{mode} {dir:?}");
        }
        assert_eq!(
            ClsactPodside.clsact_hook(Direction::PodEgress),
            Hook::Egress
        );
        assert_eq!(
            ClsactHostside.clsact_hook(Direction::PodEgress),
            Hook::Ingress
        );
    }

    #[test]
    fn auto_without_fq_is_host_side_first_in_one_stage() {
        let stages = plan(&opts(ModeChoice::Auto, EdtPacing::Auto), NO_FQ);
        assert_eq!(stages.len(), 1);
        assert!(!stages[0].edt);
        assert_eq!(stages[0].modes, auto_order(false));
        assert_eq!(stages[0].modes[0], AttachMode::TcxHostside);
    }

    #[test]
    fn auto_with_fq_is_pod_side_with_edt_then_host_side_without() {
        let stages = plan(&opts(ModeChoice::Auto, EdtPacing::Auto), OUR_FQ);
        assert_eq!(stages.len(), 2);
        assert!(stages[0].edt && stages[0].owns_fq);
        assert_eq!(
            stages[0].modes,
            [AttachMode::TcxPodside, AttachMode::ClsactPodside]
        );
        assert!(!stages[1].edt && !stages[1].owns_fq);
        assert_eq!(
            stages[1].modes,
            [AttachMode::TcxHostside, AttachMode::ClsactHostside]
        );
    }

    #[test]
    fn with_both_fqs_auto_paces_both_ways_first_then_one_way() {
        let both = Fq {
            host_available: true,
            host_owned: true,
            ..OUR_FQ
        };
        let pod = |m: &AttachMode, d| m.pod_side(d);
        let stages = plan(&opts(ModeChoice::Auto, EdtPacing::Auto), both);
        assert_eq!(stages.len(), 3);
        assert_eq!(stages[0].modes, [AttachMode::TcxSplit]);
        assert!(stages[0].edt && stages[0].edt_ingress);
        assert!(stages[0].owns_fq && stages[0].owns_host_fq);
        assert!(stages[1].edt && !stages[1].edt_ingress);
        assert!(stages[1].modes.iter().all(|m| m.touches_pod()));
        assert!(!stages[2].edt && stages[2].edt_ingress && stages[2].owns_host_fq);
        assert!(stages[2].modes.iter().all(|m| !m.touches_pod()));
        let host_only = Fq {
            available: false,
            owned: false,
            ..both
        };
        let stages = plan(&opts(ModeChoice::Auto, EdtPacing::Auto), host_only);
        assert_eq!(stages.len(), 2);
        assert!(stages[0].edt_ingress && stages[0].modes.iter().all(|m| !m.touches_pod()));
        assert!(
            !stages[1].edt_ingress
                && stages[1]
                    .modes
                    .iter()
                    .all(|m| pod(m, Direction::PodIngress))
        );
        let explicit = plan(
            &opts(
                ModeChoice::Explicit(AttachMode::TcxHostside),
                EdtPacing::Auto,
            ),
            host_only,
        );
        assert!(explicit[0].edt_ingress && !explicit[0].edt);
        let split = plan(
            &opts(ModeChoice::Explicit(AttachMode::TcxSplit), EdtPacing::Auto),
            both,
        );
        assert!(split[0].edt && split[0].edt_ingress);
    }

    #[test]
    fn the_split_mode_puts_each_direction_before_its_fq() {
        use AttachMode::TcxSplit;
        assert!(!TcxSplit.pod_side(Direction::PodIngress));
        assert!(TcxSplit.pod_side(Direction::PodEgress));
        // pod ingress at the host veth's egress, pod egress at the Pod's
        // eth0 egress: both just before a root qdisc
        assert_eq!(
            TcxSplit.tcx_attach_type(Direction::PodIngress),
            libbpf_sys::BPF_TCX_EGRESS
        );
        assert_eq!(
            TcxSplit.tcx_attach_type(Direction::PodEgress),
            libbpf_sys::BPF_TCX_EGRESS
        );
        assert_eq!(TcxSplit.ifindex(Direction::PodIngress, 7, 2), 7);
        assert_eq!(TcxSplit.ifindex(Direction::PodEgress, 7, 2), 2);
    }

    #[test]
    fn edt_on_never_falls_back_to_the_host_side() {
        let stages = plan(&opts(ModeChoice::Auto, EdtPacing::On), OUR_FQ);
        assert_eq!(stages.len(), 1);
        assert!(stages[0].modes.iter().all(|m| m.touches_pod()));
    }

    #[test]
    fn an_explicit_mode_is_tried_alone() {
        for mode in AttachMode::ALL {
            let stages = plan(&opts(ModeChoice::Explicit(mode), EdtPacing::Auto), NO_FQ);
            assert_eq!(stages.len(), 1);
            assert_eq!(stages[0].modes, [mode]);
        }
        let stages = plan(
            &opts(
                ModeChoice::Explicit(AttachMode::ClsactPodside),
                EdtPacing::Auto,
            ),
            OUR_FQ,
        );
        assert!(stages[0].edt);
    }
}
