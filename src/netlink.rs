//! rtnetlink queries (neli): the one place natra talks to the kernel's link table.
use neli::consts::nl::NlmF;
use neli::consts::rtnl::{Ifla, IflaInfo, RtAddrFamily, Rtm};
use neli::consts::socket::NlFamily;
use neli::nl::{NlPayload, NlmsghdrBuilder};
use neli::rtnl::{Ifinfomsg, IfinfomsgBuilder};
use neli::socket::synchronous::NlSocketHandle;
use neli::utils::Groups;

use crate::error::{Context, Error, ErrorKind, Result};

/// What natra needs to know about one network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// IFLA_LINK: for a veth, the peer's ifindex in the peer's netns.
    pub peer_index: Option<u32>,
    /// IFLA_INFO_KIND, e.g. "veth".
    pub kind: Option<String>,
}

/// Looks an interface up by index in the calling thread's netns. A plain
/// socket, not neli's router: the router runs a thread per socket, which
/// an ADD (a short-lived process asking two questions) does not need.
pub fn link_by_index(index: u32) -> Result<Link> {
    let missing = || Error::new(ErrorKind::Io, format!("no interface with ifindex {index}"));
    let sock = NlSocketHandle::connect(NlFamily::Route, None, Groups::empty())
        .context(ErrorKind::Io, "cannot open an rtnetlink socket")?;
    let request = IfinfomsgBuilder::default()
        .ifi_family(RtAddrFamily::Unspecified)
        .ifi_index(index as i32)
        .build()
        .context(ErrorKind::Io, "cannot build RTM_GETLINK")?;
    let msg = NlmsghdrBuilder::default()
        .nl_type(Rtm::Getlink)
        .nl_flags(NlmF::REQUEST)
        .nl_seq(1)
        .nl_payload(NlPayload::Payload(request))
        .build()
        .context(ErrorKind::Io, "cannot build RTM_GETLINK")?;
    sock.send(&msg).context(
        ErrorKind::Io,
        format!("RTM_GETLINK for ifindex {index} failed"),
    )?;
    // One reply: the link, or an error (no such ifindex).
    let (replies, _) = sock.recv::<Rtm, Ifinfomsg>().context(
        ErrorKind::Io,
        format!("RTM_GETLINK for ifindex {index} failed"),
    )?;
    for reply in replies {
        let reply = reply.map_err(|e| missing().with_details(e))?;
        match reply.nl_payload() {
            NlPayload::Payload(link) => return parse_link(link),
            NlPayload::Err(e) => return Err(missing().with_details(e)),
            _ => {}
        }
    }
    Err(missing())
}

/// Looks an interface up by name in the calling thread's netns.
pub fn link_by_name(name: &str) -> Result<Link> {
    let index = nix::net::if_::if_nametoindex(name)
        .context(ErrorKind::Io, format!("no interface named {name:?}"))?;
    link_by_index(index)
}

fn parse_link(msg: &Ifinfomsg) -> Result<Link> {
    let attrs = msg.rtattrs().get_attr_handle();
    let name = attrs
        .get_attr_payload_as_with_len::<String>(Ifla::Ifname)
        .context(ErrorKind::Io, "RTM_NEWLINK without IFLA_IFNAME")?;
    let peer_index = attrs.get_attr_payload_as::<u32>(Ifla::Link).ok();
    let kind = attrs
        .get_nested_attributes::<IflaInfo>(Ifla::Linkinfo)
        .ok()
        .and_then(|info| {
            info.get_attr_payload_as_with_len::<String>(IflaInfo::Kind)
                .ok()
        });
    Ok(Link {
        index: *msg.ifi_index() as u32,
        name,
        peer_index,
        kind,
    })
}
