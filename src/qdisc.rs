//! Queueing disciplines over rtnetlink: the root qdisc (natra installs `fq`
//! for its EDT mode, and must remove only an fq it installed) and the clsact
//! qdisc that the legacy cls_bpf attach path needs.
//!
//! Every function acts in the calling thread's netns; wrap calls in
//! [`crate::netns::run_in_netns`] for the Pod side. Requests go out on a
//! plain socket with extended ACKs on, so the kernel's own explanation of a
//! refusal (e.g. "Specified qdisc kind is unknown") reaches the error details
//! — neli's `NlRouter` drops the extack attributes when it types an error.
use std::fmt;

use neli::consts::nl::{NlmF, Nlmsg, NlmsgerrAttr};
use neli::consts::rtnl::{Rtm, Tca};
use neli::consts::socket::NlFamily;
use neli::nl::{NlPayload, NlmsghdrBuilder};
use neli::rtnl::{RtattrBuilder, Tcmsg, TcmsgBuilder};
use neli::socket::synchronous::NlSocketHandle;
use neli::types::RtBuffer;
use neli::utils::Groups;
use nix::errno::Errno;

use crate::error::{Context, Error, ErrorKind, Result};

/// `TC_H_ROOT`: the parent of a device's root qdisc.
pub const TC_H_ROOT: u32 = 0xFFFF_FFFF;
/// `TC_H_CLSACT` (== `TC_H_INGRESS`): the parent of the clsact/ingress qdisc.
pub const TC_H_CLSACT: u32 = 0xFFFF_FFF1;
/// The handle of a clsact qdisc, `ffff:`.
pub const CLSACT_HANDLE: u32 = 0xFFFF_0000;
/// The clsact class that holds ingress filters, `ffff:fff2`.
pub const CLSACT_INGRESS_PARENT: u32 = 0xFFFF_FFF2;
/// The clsact class that holds egress filters, `ffff:fff3`.
pub const CLSACT_EGRESS_PARENT: u32 = 0xFFFF_FFF3;

/// One qdisc or filter as an RTM_NEW{QDISC,TFILTER} dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcObject {
    pub ifindex: u32,
    pub handle: u32,
    pub parent: u32,
    /// For filters: priority in the upper 16 bits, protocol (big endian) in
    /// the lower.
    pub info: u32,
    /// TCA_KIND, e.g. "fq", "clsact", "bpf".
    pub kind: Option<String>,
    /// TCA_OPTIONS' payload as the kernel dumped it (the kind's nested
    /// attributes), empty when there was none.
    pub options: Vec<u8>,
}

/// The handle natra gives the root qdiscs it installs, `4e54:` ("NT").
///
/// A fixed handle is what keeps natra from clobbering a configured root: with
/// handle 0 and NLM_F_CREATE|NLM_F_EXCL (`tc qdisc add root fq`) the kernel
/// creates and grafts over *any* root, an operator's htb included; with a
/// handle it answers EEXIST ("NLM_F_REPLACE needed to override") unless the
/// root is a default one (noqueue, mq, pfifo_fast: handle 0). It also marks
/// a root natra installed as natra's.
pub const NATRA_ROOT_HANDLE: u32 = 0x4e54_0000;

/// What [`install_root_qdisc`] / [`install_fq_root`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootOutcome {
    /// The root is natra's (handle [`NATRA_ROOT_HANDLE`]): created now, or
    /// left by an earlier attempt. DEL must remove it.
    Installed,
    /// The root already was of that kind under another handle, so it is
    /// someone else's: DEL must leave it.
    AlreadyPresent,
}

/// The outcome of [`install_fq_root`].
pub type FqOutcome = RootOutcome;

/// Kind of the root qdisc of `ifindex` ("noqueue", "fq", "mq", …); None when
/// the kernel dumps none (a down device has only the invisible builtin noop).
pub fn root_qdisc_kind(ifindex: u32) -> Result<Option<String>> {
    Ok(root_qdisc(ifindex)?.and_then(|q| q.kind))
}

/// How natra sizes the fq it installs, so that fq never drops what natra's
/// program already charged and paced (docs/dataplane.md, "EDT pacing").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FqSizing {
    /// `limit`: packets in the whole qdisc.
    pub limit: u32,
    /// `flow_limit`: packets per flow.
    pub flow_limit: u32,
    /// `orphan_mask`: flows for packets without a socket (forwarded ones)
    /// are `skb->hash & orphan_mask`.
    pub orphan_mask: u32,
    /// `horizon` in µs: stamps further ahead are dropped by fq.
    pub horizon_us: u32,
    /// `pacing` (TCA_FQ_RATE_ENABLE). Off in natra's fq: natra paces, with
    /// `skb->tstamp`, which fq honours either way; with it on, fq would also
    /// switch every local TCP socket to its own pacing (SK_PACING_FQ) at the
    /// socket's pacing rate, and a mouse whose handshake waited in the queue
    /// (a long srtt, a low pacing rate) would spread its first window over
    /// a hundred ms on top of natra's stamps.
    pub pacing: bool,
}

/// fq's option attributes (TCA_FQ_*, linux/pkt_sched.h), all u32: what
/// natra sets on its fq, and the horizon it reads back from another's.
const TCA_FQ_PLIMIT: u16 = 1;
const TCA_FQ_FLOW_PLIMIT: u16 = 2;
const TCA_FQ_RATE_ENABLE: u16 = 5;
const TCA_FQ_ORPHAN_MASK: u16 = 10;
/// µs: a packet stamped further ahead than this is dropped (or, with
/// horizon_drop off, has its stamp cut to it).
const TCA_FQ_HORIZON: u16 = 14;

/// fq's defaults, the floor of natra's sizing.
const FQ_DEFAULT_LIMIT: u32 = 10_000;
const FQ_DEFAULT_FLOW_LIMIT: u32 = 100;
const FQ_DEFAULT_HORIZON_US: u32 = 10_000_000;
/// 4096 orphan flows instead of 1024: fewer mice sharing a flow with an elephant.
const FQ_ORPHAN_MASK: u32 = 4095;
/// The smallest frame natra charges (Ethernet + IPv4 headers, no payload).
const MIN_FRAME_BYTES: u64 = 34;
/// Most packets natra asks fq to hold (memory is bounded by the bucket's
/// debt anyway: only charged packets are paced).
const FQ_MAX_LIMIT: u64 = 1 << 20;

impl FqSizing {
    /// For `queue_bytes` charged ahead of the wire (one flow may hold all of
    /// it, in frames as small as natra charges) and delays up to `horizon_ns`.
    pub fn for_queue(queue_bytes: u64, horizon_ns: u64) -> FqSizing {
        let flow = queue_bytes
            .div_ceil(MIN_FRAME_BYTES)
            .clamp(u64::from(FQ_DEFAULT_FLOW_LIMIT), FQ_MAX_LIMIT);
        let limit = (flow + u64::from(FQ_DEFAULT_LIMIT)).min(FQ_MAX_LIMIT);
        let horizon = (horizon_ns / 1000 + 1_000_000).max(u64::from(FQ_DEFAULT_HORIZON_US));
        FqSizing {
            limit: limit as u32,
            flow_limit: flow as u32,
            orphan_mask: FQ_ORPHAN_MASK,
            horizon_us: horizon.min(u64::from(u32::MAX)) as u32,
            pacing: false,
        }
    }

    /// TCA_OPTIONS' payload: nested TCA_FQ_* u32 attributes.
    fn options(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (kind, value) in [
            (TCA_FQ_RATE_ENABLE, u32::from(self.pacing)),
            (TCA_FQ_PLIMIT, self.limit),
            (TCA_FQ_FLOW_PLIMIT, self.flow_limit),
            (TCA_FQ_ORPHAN_MASK, self.orphan_mask),
            (TCA_FQ_HORIZON, self.horizon_us),
        ] {
            out.extend_from_slice(&8u16.to_ne_bytes());
            out.extend_from_slice(&kind.to_ne_bytes());
            out.extend_from_slice(&value.to_ne_bytes());
        }
        out
    }
}

/// The horizon of the fq that is the root of `ifindex`, in ns: how far ahead
/// of now that fq takes a stamp as it is. None when the root is not fq, or
/// the kernel reports no horizon (before 5.7 fq had none).
pub fn root_fq_horizon_ns(ifindex: u32) -> Result<Option<u64>> {
    Ok(root_qdisc(ifindex)?
        .filter(|q| q.kind.as_deref() == Some("fq"))
        .and_then(|q| nested_u32(&q.options, TCA_FQ_HORIZON))
        .map(|us| u64::from(us) * 1000))
}

/// The u32 attribute `kind` among the nested attributes `payload` (each
/// {len u16, type u16, value} padded to 4 bytes, in host order).
fn nested_u32(payload: &[u8], kind: u16) -> Option<u32> {
    let mut at = 0usize;
    while at + 4 <= payload.len() {
        let len = usize::from(u16::from_ne_bytes([payload[at], payload[at + 1]]));
        // NLA_F_NESTED / NLA_F_NET_BYTEORDER live in the top bits of the type
        let ty = u16::from_ne_bytes([payload[at + 2], payload[at + 3]]) & 0x3fff;
        if len < 4 || at + len > payload.len() {
            return None;
        }
        if ty == kind && len >= 8 {
            let v = &payload[at + 4..at + 8];
            return Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]]));
        }
        at += len.div_ceil(4) * 4;
    }
    None
}

/// Makes fq the root qdisc of `ifindex` unless it already is (see
/// [`install_root_qdisc`]). A kernel without sch_fq is reported as such, with
/// the kernel's errno and extack message in the details.
pub fn install_fq_root(ifindex: u32) -> Result<FqOutcome> {
    install_fq_root_sized(ifindex, None)
}

/// [`install_fq_root`], the fq natra creates sized by `sizing` (an fq that
/// is already there is left as it is).
pub fn install_fq_root_sized(ifindex: u32, sizing: Option<FqSizing>) -> Result<FqOutcome> {
    install_root_with(ifindex, "fq", sizing.map(|s| s.options())).map_err(|fail| match fail {
        RootFailure::Netlink(f) if matches!(f.errno(), Some(Errno::ENOENT | Errno::EOPNOTSUPP)) => {
            Error::new(
                ErrorKind::Dataplane,
                format!("the fq qdisc is unavailable on this kernel (ifindex {ifindex})"),
            )
            .with_details(f)
        }
        other => other.into_error(ifindex, "fq"),
    })
}

/// Makes a qdisc of `kind`, without options and with handle
/// [`NATRA_ROOT_HANDLE`], the root of `ifindex` unless the root already is of
/// that kind. Only a default root is replaced; any other root is an error
/// (EEXIST), so natra never clobbers an operator's setup. The kernel creates
/// and grafts atomically: a refused request leaves the previous root in
/// place and nothing new behind.
pub fn install_root_qdisc(ifindex: u32, kind: &str) -> Result<RootOutcome> {
    install_root(ifindex, kind).map_err(|fail| fail.into_error(ifindex, kind))
}

enum RootFailure {
    Natra(Error),
    Netlink(Failure),
}

impl RootFailure {
    fn into_error(self, ifindex: u32, kind: &str) -> Error {
        match self {
            RootFailure::Natra(e) => e,
            RootFailure::Netlink(f) => Error::new(
                ErrorKind::Dataplane,
                format!("cannot install {kind} as the root qdisc of ifindex {ifindex}"),
            )
            .with_details(f),
        }
    }
}

fn install_root(ifindex: u32, kind: &str) -> std::result::Result<RootOutcome, RootFailure> {
    install_root_with(ifindex, kind, None)
}

fn install_root_with(
    ifindex: u32,
    kind: &str,
    options: Option<Vec<u8>>,
) -> std::result::Result<RootOutcome, RootFailure> {
    if let Some(root) = root_qdisc(ifindex).map_err(RootFailure::Natra)? {
        if root.kind.as_deref() == Some(kind) {
            return Ok(if root.handle == NATRA_ROOT_HANDLE {
                RootOutcome::Installed
            } else {
                RootOutcome::AlreadyPresent
            });
        }
    }
    let request = tcmsg_with(ifindex, NATRA_ROOT_HANDLE, TC_H_ROOT, Some(kind), options)
        .map_err(RootFailure::Natra)?;
    Rtnl::open()
        .map_err(RootFailure::Natra)?
        .transact(Rtm::Newqdisc, NlmF::CREATE | NlmF::EXCL, request)
        .map_err(RootFailure::Netlink)?;
    Ok(RootOutcome::Installed)
}

/// Makes natra's fq (its handle), sized by `sizing`, the root of `ifindex`:
/// whatever root another party put there is replaced (the agent's repair of
/// an EDT attachment whose fq a Pod with NET_ADMIN replaced), and natra's own
/// fq already there is changed in place, its queued packets kept (the kernel
/// changes a root whose handle is the one asked for; a live rate change).
pub fn replace_root_with_fq(ifindex: u32, sizing: FqSizing) -> Result<()> {
    let request = tcmsg_with(
        ifindex,
        NATRA_ROOT_HANDLE,
        TC_H_ROOT,
        Some("fq"),
        Some(sizing.options()),
    )?;
    Rtnl::open()?
        .transact(Rtm::Newqdisc, NlmF::CREATE | NlmF::REPLACE, request)
        .map_err(|f| {
            Error::new(
                ErrorKind::Dataplane,
                format!("cannot make natra's fq ({sizing:?}) the root qdisc of ifindex {ifindex}"),
            )
            .with_details(f)
        })?;
    Ok(())
}

/// Deletes the root qdisc of `ifindex` if, and only if, its kind is `kind`;
/// no root qdisc, or one of another kind, is left alone and is Ok.
pub fn remove_root_qdisc(ifindex: u32, kind: &str) -> Result<()> {
    let Some(root) = root_qdisc(ifindex)? else {
        return Ok(());
    };
    if root.kind.as_deref() != Some(kind) {
        log::debug!(
            "root qdisc of ifindex {ifindex} is {:?}, not {kind}: leaving it",
            root.kind
        );
        return Ok(());
    }
    // The handle pins the request to the qdisc just seen: if it was
    // replaced meanwhile, the kernel refuses instead of deleting the new one.
    delete_qdisc(ifindex, root.handle, TC_H_ROOT, kind)
}

/// Whether `ifindex` has a clsact qdisc (an `ingress` qdisc does not count).
pub fn has_clsact(ifindex: u32) -> Result<bool> {
    Ok(clsact_slot_kind(ifindex)?.as_deref() == Some("clsact"))
}

/// Kind of the qdisc at `ffff:` ("clsact" or "ingress"), None when empty.
/// Asked of that one slot (RTM_GETQDISC of parent ffff:fff1), not by
/// dumping every qdisc of the netns, which grows with the node's Pods.
/// NLM_F_ECHO: the kernel answers a GET of one qdisc as a notification,
/// sent to the asker only when it asks for an echo.
pub fn clsact_slot_kind(ifindex: u32) -> Result<Option<String>> {
    let request = tcmsg(ifindex, 0, TC_H_CLSACT, None)?;
    match Rtnl::open()?.transact(Rtm::Getqdisc, NlmF::ECHO, request) {
        Ok(found) => Ok(found
            .into_iter()
            .find(|q| q.ifindex == ifindex && q.parent == TC_H_CLSACT)
            .and_then(|q| q.kind)),
        Err(Failure::Kernel {
            errno: Errno::ENOENT,
            ..
        }) => Ok(None),
        // Anything else: the dump, which every kernel answers.
        Err(_) => Ok(list_qdiscs(ifindex)?
            .into_iter()
            .find(|q| q.parent == TC_H_CLSACT)
            .and_then(|q| q.kind)),
    }
}

/// Deletes the clsact qdisc of `ifindex`, and with it every filter on both
/// of its hooks; absent is Ok, and an `ingress` qdisc is left alone.
pub fn remove_clsact(ifindex: u32) -> Result<()> {
    if !has_clsact(ifindex)? {
        return Ok(());
    }
    delete_qdisc(ifindex, CLSACT_HANDLE, TC_H_CLSACT, "clsact")
}

/// Every visible qdisc of `ifindex`.
pub fn list_qdiscs(ifindex: u32) -> Result<Vec<TcObject>> {
    let request = tcmsg(ifindex, 0, 0, None)?;
    let replies = Rtnl::open()?
        .transact(Rtm::Getqdisc, NlmF::DUMP, request)
        .map_err(|fail| {
            Error::new(
                ErrorKind::Io,
                format!("cannot list the qdiscs of ifindex {ifindex}"),
            )
            .with_details(fail)
        })?;
    // A qdisc dump covers every device of the netns.
    Ok(replies
        .into_iter()
        .filter(|q| q.ifindex == ifindex)
        .collect())
}

/// Filters of `ifindex` under `parent` (e.g. [`CLSACT_EGRESS_PARENT`]). Each
/// filter protocol/priority appears once with handle 0 (the classifier
/// instance) and once per filter with its handle.
pub fn list_filters(ifindex: u32, parent: u32) -> Result<Vec<TcObject>> {
    let request = tcmsg(ifindex, 0, parent, None)?;
    let replies = Rtnl::open()?
        .transact(Rtm::Gettfilter, NlmF::DUMP, request)
        .map_err(|fail| {
            Error::new(
                ErrorKind::Io,
                format!("cannot list the filters of ifindex {ifindex} parent {parent:#x}"),
            )
            .with_details(fail)
        })?;
    Ok(replies
        .into_iter()
        .filter(|f| f.ifindex == ifindex)
        .collect())
}

/// The root qdisc of `ifindex`, None when the kernel dumps none.
pub fn root_qdisc(ifindex: u32) -> Result<Option<TcObject>> {
    Ok(list_qdiscs(ifindex)?
        .into_iter()
        .find(|q| q.parent == TC_H_ROOT))
}

fn delete_qdisc(ifindex: u32, handle: u32, parent: u32, kind: &str) -> Result<()> {
    let request = tcmsg(ifindex, handle, parent, None)?;
    match Rtnl::open()?.transact(Rtm::Delqdisc, NlmF::empty(), request) {
        Ok(_) => Ok(()),
        // Gone between the dump and the delete: what the caller wanted.
        Err(fail) if fail.errno() == Some(Errno::ENOENT) => Ok(()),
        Err(fail) => Err(Error::new(
            ErrorKind::Dataplane,
            format!("cannot delete the {kind} qdisc {handle:#x} of ifindex {ifindex}"),
        )
        .with_details(fail)),
    }
}

fn tcmsg(ifindex: u32, handle: u32, parent: u32, kind: Option<&str>) -> Result<Tcmsg> {
    tcmsg_with(ifindex, handle, parent, kind, None)
}

/// A tcmsg with TCA_KIND and, when given, TCA_OPTIONS (raw nested attributes).
fn tcmsg_with(
    ifindex: u32,
    handle: u32,
    parent: u32,
    kind: Option<&str>,
    options: Option<Vec<u8>>,
) -> Result<Tcmsg> {
    let mut attrs = RtBuffer::new();
    if let Some(kind) = kind {
        attrs.push(
            RtattrBuilder::default()
                .rta_type(Tca::Kind)
                .rta_payload(kind)
                .build()
                .context(ErrorKind::Io, "cannot build TCA_KIND")?,
        );
    }
    if let Some(options) = options {
        attrs.push(
            RtattrBuilder::default()
                .rta_type(Tca::Options)
                .rta_payload(options)
                .build()
                .context(ErrorKind::Io, "cannot build TCA_OPTIONS")?,
        );
    }
    TcmsgBuilder::default()
        .tcm_family(AF_UNSPEC)
        .tcm_ifindex(ifindex as i32)
        .tcm_handle(handle)
        .tcm_parent(parent)
        .tcm_info(0)
        .rtattrs(attrs)
        .build()
        .context(ErrorKind::Io, "cannot build a tcmsg")
}

/// tcm_family for qdiscs and filters.
const AF_UNSPEC: u8 = 0;

/// Why an rtnetlink request failed.
#[derive(Debug)]
enum Failure {
    /// The kernel refused it: errno and the extack message, if any.
    Kernel {
        errno: Errno,
        extack: Option<String>,
    },
    /// The socket or message handling failed.
    Socket(String),
}

impl Failure {
    fn errno(&self) -> Option<Errno> {
        match self {
            Failure::Kernel { errno, .. } => Some(*errno),
            Failure::Socket(_) => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Kernel {
                errno,
                extack: Some(msg),
            } => write!(f, "{errno} (kernel: {msg})"),
            Failure::Kernel {
                errno,
                extack: None,
            } => write!(f, "{errno}"),
            Failure::Socket(msg) => write!(f, "{msg}"),
        }
    }
}

/// One rtnetlink socket in the calling thread's netns.
struct Rtnl {
    sock: NlSocketHandle,
    seq: u32,
}

impl Rtnl {
    fn open() -> Result<Rtnl> {
        let sock = NlSocketHandle::connect(NlFamily::Route, None, Groups::empty())
            .context(ErrorKind::Io, "cannot open an rtnetlink socket")?;
        sock.enable_ext_ack(true)
            .context(ErrorKind::Io, "cannot enable netlink extended ACKs")?;
        // The kernel then validates requests strictly instead of ignoring
        // what it does not understand.
        sock.enable_strict_checking(true)
            .context(ErrorKind::Io, "cannot enable netlink strict checking")?;
        Ok(Rtnl { sock, seq: 1 })
    }

    /// Sends one request (with NLM_F_ACK unless it is a dump) and collects
    /// the replies until the ACK, the error or NLMSG_DONE.
    fn transact(
        &mut self,
        ty: Rtm,
        flags: NlmF,
        request: Tcmsg,
    ) -> std::result::Result<Vec<TcObject>, Failure> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let flags = if flags.contains(NlmF::DUMP) {
            flags | NlmF::REQUEST
        } else {
            flags | NlmF::REQUEST | NlmF::ACK
        };
        let msg = NlmsghdrBuilder::default()
            .nl_type(ty)
            .nl_flags(flags)
            .nl_seq(seq)
            .nl_payload(NlPayload::Payload(request))
            .build()
            .map_err(|e| Failure::Socket(format!("cannot build the request: {e}")))?;
        self.sock
            .send(&msg)
            .map_err(|e| Failure::Socket(format!("send failed: {e}")))?;

        let mut found = Vec::new();
        loop {
            let (replies, _) = self
                .sock
                .recv::<u16, Tcmsg>()
                .map_err(|e| Failure::Socket(format!("receive failed: {e}")))?;
            for reply in replies {
                let reply =
                    reply.map_err(|e| Failure::Socket(format!("bad netlink reply: {e}")))?;
                if *reply.nl_seq() != seq {
                    continue;
                }
                if *reply.nl_type() == u16::from(Nlmsg::Done) {
                    return Ok(found);
                }
                match reply.nl_payload() {
                    NlPayload::Ack(_) | NlPayload::DumpExtAck(_) => return Ok(found),
                    NlPayload::Err(err) => {
                        let extack = err
                            .ext_ack()
                            .get_attr_handle()
                            .get_attr_payload_as_with_len::<String>(NlmsgerrAttr::Msg)
                            .ok();
                        return Err(Failure::Kernel {
                            errno: Errno::from_raw(-*err.error()),
                            extack,
                        });
                    }
                    NlPayload::Payload(tc) => found.push(TcObject {
                        ifindex: *tc.tcm_ifindex() as u32,
                        handle: *tc.tcm_handle(),
                        parent: *tc.tcm_parent(),
                        info: *tc.tcm_info(),
                        kind: tc
                            .rtattrs()
                            .get_attr_handle()
                            .get_attr_payload_as_with_len::<String>(Tca::Kind)
                            .ok(),
                        options: tc
                            .rtattrs()
                            .iter()
                            .find(|a| *a.rta_type() == Tca::Options)
                            .map(|a| a.rta_payload().as_ref().to_vec())
                            .unwrap_or_default(),
                    }),
                    NlPayload::Empty => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod sizing_tests {
    use super::*;

    #[test]
    fn the_horizon_is_read_back_from_the_options_natra_writes() {
        let s = FqSizing::for_queue(475_000, 180_000_000);
        let opts = s.options();
        assert_eq!(nested_u32(&opts, TCA_FQ_HORIZON), Some(s.horizon_us));
        assert_eq!(nested_u32(&opts, TCA_FQ_FLOW_PLIMIT), Some(s.flow_limit));
        // absent, truncated, or a length that runs past the end: none
        assert_eq!(nested_u32(&opts, 15), None);
        assert_eq!(nested_u32(&opts[..opts.len() - 2], TCA_FQ_HORIZON), None);
        assert_eq!(nested_u32(&[8, 0, 14, 0, 1], TCA_FQ_HORIZON), None);
        assert_eq!(nested_u32(&[0, 0, 14, 0, 1, 0, 0, 0], TCA_FQ_HORIZON), None);
        // a u8 attribute (padded) before it is stepped over
        let mut padded = vec![5, 0, 15, 0, 1, 0, 0, 0];
        padded.extend_from_slice(&opts);
        assert_eq!(nested_u32(&padded, TCA_FQ_HORIZON), Some(s.horizon_us));
    }

    #[test]
    fn fq_holds_every_charged_packet_of_the_horizon() {
        // 20 Mbit/s with EDT: 475 kB may be charged ahead of the wire
        let s = FqSizing::for_queue(475_000, 150_000_000);
        assert_eq!(s.flow_limit, 475_000u64.div_ceil(MIN_FRAME_BYTES) as u32);
        assert!(s.limit >= s.flow_limit + FQ_DEFAULT_LIMIT);
        assert_eq!(s.horizon_us, FQ_DEFAULT_HORIZON_US);
        assert_eq!(s.orphan_mask, 4095);
        // never below fq's defaults, never past the cap
        let tiny = FqSizing::for_queue(1, 1);
        assert_eq!((tiny.flow_limit, tiny.limit), (100, 10_100));
        let big = FqSizing::for_queue(u64::MAX / 2, 20_000_000_000);
        assert_eq!(big.flow_limit as u64, FQ_MAX_LIMIT);
        assert_eq!(big.horizon_us, 21_000_000);
        // natra paces; fq must not pace local TCP on top
        assert!(!s.pacing);
        // five u32 attributes, 8 bytes each; rate_enable first, 0
        let o = s.options();
        assert_eq!(o.len(), 40);
        assert_eq!(&o[..8], [8, 0, 5, 0, 0, 0, 0, 0]);
    }
}
