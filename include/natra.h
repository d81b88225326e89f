/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one contract between natra's BPF dataplane and its Rust control plane.
 * Every struct and enum that crosses the boundary lives here, once; Rust sees
 * them through the skeleton's generated `types`, so they also reach bpftool
 * with field names through BTF.
 */
#ifndef NATRA_H
#define NATRA_H

/* Direction, named from the Pod's side; indexes every per-direction map. */
enum natra_direction {
	NATRA_DIR_POD_INGRESS = 0, /* traffic into the Pod */
	NATRA_DIR_POD_EGRESS = 1,  /* traffic out of the Pod */
	NATRA_DIR_COUNT = 2,
};

#define NATRA_NSEC_PER_SEC 1000000000ULL
/* Bucket levels are kept in byte-nanoseconds (bytes x 1e9) so refills are
 * exact integers; 2^32 bytes x 1e9 still fits in 63 bits. */
#define NATRA_MAX_BURST_BYTES (1ULL << 32)

/* Limits of one direction, written by the control plane at ADD. */
struct natra_config {
	enum natra_direction direction;
	__u32 pad;
	__u64 rate_bytes_per_sec; /* 0: direction not limited */
	__u64 burst_bytes;	  /* bucket depth: bytes allowed above rate */
	__u64 ecn_band_bytes;	  /* bottom of the bucket kept for ECT packets, marked CE */
	__u64 refill_full_ns;	  /* idle time that refills an empty bucket */
};

/* Token bucket of one direction; the lock makes refill+charge atomic across CPUs. */
struct natra_bucket_state {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 level;   /* byte-nanoseconds available, 0..burst_bytes x 1e9 */
	__u64 last_ns; /* bpf_ktime_get_ns() of the last refill */
};

/* Per-CPU counters of one direction. */
struct natra_counters {
	__u64 passed_packets;
	__u64 passed_bytes;
	__u64 ce_marked_packets;
	__u64 ce_marked_bytes;
	__u64 dropped_packets;
	__u64 dropped_bytes;
	__u64 malformed_packets; /* truncated IP headers: charged, never parsed past the end */
	__u64 non_ip_packets;	 /* ARP and friends: charged, never ECN-marked */
};

/* Where ADD attached a Pod interface's programs (docs/cni.md, attach modes).
 * Host side: the host-side veth (pod_ingress at its egress, pod_egress at its
 * ingress); Pod side: the Pod's own interface inside its netns (pod_ingress at
 * its ingress, pod_egress at its egress). */
enum natra_attach_mode {
	NATRA_ATTACH_NONE = 0, /* no record written yet */
	NATRA_ATTACH_TCX_HOSTSIDE = 1,
	NATRA_ATTACH_TCX_PODSIDE = 2,
	NATRA_ATTACH_CLSACT_HOSTSIDE = 3,
	NATRA_ATTACH_CLSACT_PODSIDE = 4,
};

/* struct natra_attachment.flags */
#define NATRA_ATTACH_OWNS_CLSACT (1U << 0) /* natra created the clsact qdisc it uses */
#define NATRA_ATTACH_OWNS_FQ (1U << 1)	   /* natra installed fq as the Pod's root qdisc */
#define NATRA_ATTACH_EDT (1U << 2)	   /* EDT pacing on: fq on the Pod's interface */

/* What ADD did for one Pod interface (map natra_attach, key 0), so that DEL,
 * CHECK and GC undo or verify exactly that. Written by the control plane
 * only; the programs never read it. */
struct natra_attachment {
	enum natra_attach_mode mode;
	__u32 host_ifindex; /* host-side veth, in the host netns */
	__u32 pod_ifindex;  /* the Pod's interface, in the Pod's netns */
	__u32 flags;	    /* NATRA_ATTACH_* */
};

#endif /* NATRA_H */
