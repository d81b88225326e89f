//! Hand-built packets: Ethernet, IPv4 (options, fragments), IPv6 (extension
//! headers, fragments), TCP and UDP, and readers of the fields the programs
//! rewrite.

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const ECN_NOT_ECT: u8 = 0;
pub const ECN_ECT1: u8 = 1;
pub const ECN_ECT0: u8 = 2;
pub const ECN_CE: u8 = 3;
pub const ETH_HLEN: usize = 14;

pub use crate::common::inet::inet_checksum;

pub fn eth(ethertype: u16) -> Vec<u8> {
    let mut p = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    p.extend_from_slice(&ethertype.to_be_bytes());
    p
}

/// A TCP header (data offset covers `options`, padded to 4 bytes) and payload.
pub fn tcp(payload_len: usize, options: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let doff = (20 + options.len()) / 4;
    let mut t = Vec::new();
    t.extend_from_slice(&40000u16.to_be_bytes()); // sport
    t.extend_from_slice(&5201u16.to_be_bytes()); // dport
    t.extend_from_slice(&0x0102_0304u32.to_be_bytes()); // seq
    t.extend_from_slice(&0x0506_0708u32.to_be_bytes()); // ack
    t.push((doff as u8) << 4);
    t.push(0x10); // ACK
    t.extend_from_slice(&64240u16.to_be_bytes()); // window
    t.extend_from_slice(&[0, 0, 0, 0]); // checksum (not checked by anyone here), urg
    t.extend_from_slice(options);
    t.extend((0..payload_len).map(|i| (i % 251) as u8));
    t
}

pub fn udp(payload_len: usize) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&40000u16.to_be_bytes());
    u.extend_from_slice(&53u16.to_be_bytes());
    u.extend_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend((0..payload_len).map(|i| (i % 253) as u8));
    u
}

/// Ethernet + IPv4 (with a correct header checksum) + `l4`.
pub fn ipv4(tos: u8, proto: u8, options: &[u8], l4: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let ihl = 20 + options.len();
    let mut ip = vec![0x40 | (ihl / 4) as u8, tos];
    ip.extend_from_slice(&((ihl + l4.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&0x1c46u16.to_be_bytes()); // id
    ip.extend_from_slice(&0x4000u16.to_be_bytes()); // DF, offset 0
    ip.push(64); // ttl
    ip.push(proto);
    ip.extend_from_slice(&[0, 0]); // checksum, below
    ip.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    ip.extend_from_slice(options);
    let csum = inet_checksum(&ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    let mut p = eth(ETH_P_IP);
    p.extend_from_slice(&ip);
    p.extend_from_slice(l4);
    p
}

pub const V6_SRC: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const V6_DST: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// Ethernet + IPv6 (traffic class `tclass`, flow label `flow`) + `l4`.
pub fn ipv6(tclass: u8, flow: u32, nexthdr: u8, l4: &[u8]) -> Vec<u8> {
    ipv6_addrs(tclass, flow, nexthdr, &V6_SRC, &V6_DST, l4)
}

pub fn ipv6_addrs(
    tclass: u8,
    flow: u32,
    nexthdr: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
    l4: &[u8],
) -> Vec<u8> {
    let word = (6u32 << 28) | (u32::from(tclass) << 20) | (flow & 0xf_ffff);
    let mut p = eth(ETH_P_IPV6);
    p.extend_from_slice(&word.to_be_bytes());
    p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    p.push(nexthdr);
    p.push(64);
    p.extend_from_slice(src);
    p.extend_from_slice(dst);
    p.extend_from_slice(l4);
    p
}

/// A TCP header from `sport` to `dport` with `payload_len` bytes.
pub fn tcp_ports(sport: u16, dport: u16, payload_len: usize) -> Vec<u8> {
    let mut t = tcp(payload_len, &[]);
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t
}

/// IPv4 TCP from 10.0.0.1:`sport` to 10.0.0.2:`dport`, 1000 bytes of payload.
pub fn ipv4_flow(sport: u16, dport: u16) -> Vec<u8> {
    ipv4(0, IPPROTO_TCP, &[], &tcp_ports(sport, dport, 1000))
}

/// An IPv6 extension header (hop-by-hop, routing, destination options) of 8
/// bytes: next header, length 0, 6 bytes of PadN.
pub fn ext8(next: u8) -> Vec<u8> {
    vec![next, 0, 1, 4, 0, 0, 0, 0]
}

/// An IPv6 fragment header: next header, offset (8-byte units), M flag.
pub fn frag6(next: u8, offset: u16, more: bool) -> Vec<u8> {
    let off = (offset << 3) | u16::from(more);
    let mut h = vec![next, 0];
    h.extend_from_slice(&off.to_be_bytes());
    h.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    h
}

/// Sets an IPv4 packet's fragment field (flags + offset) and fixes its
/// header checksum.
pub fn set_frag4(mut p: Vec<u8>, frag: u16) -> Vec<u8> {
    p[ETH_HLEN + 6..ETH_HLEN + 8].copy_from_slice(&frag.to_be_bytes());
    p[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&[0, 0]);
    let c = inet_checksum(ipv4_header(&p));
    p[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
    p
}

pub fn ipv4_tcp(tos: u8) -> Vec<u8> {
    ipv4(tos, IPPROTO_TCP, &[], &tcp(1000, &[]))
}

pub fn ipv6_tcp(tclass: u8) -> Vec<u8> {
    ipv6(tclass, 0x12345, IPPROTO_TCP, &tcp(1000, &[]))
}

pub fn ipv4_tos(p: &[u8]) -> u8 {
    p[ETH_HLEN + 1]
}

pub fn ipv4_header(p: &[u8]) -> &[u8] {
    let ihl = usize::from(p[ETH_HLEN] & 0xf) * 4;
    &p[ETH_HLEN..ETH_HLEN + ihl]
}

pub fn ipv6_tclass(p: &[u8]) -> u8 {
    (p[ETH_HLEN] << 4) | (p[ETH_HLEN + 1] >> 4)
}

pub fn ipv6_flow(p: &[u8]) -> u32 {
    u32::from_be_bytes([0, p[ETH_HLEN + 1] & 0xf, p[ETH_HLEN + 2], p[ETH_HLEN + 3]])
}

/// An ARP request (28 bytes after Ethernet).
pub fn arp() -> Vec<u8> {
    let mut p = eth(ETH_P_ARP);
    p.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    p.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 10, 0, 0, 2]);
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 1]);
    p
}
