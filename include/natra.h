/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one contract between natra's BPF dataplane and its Rust control plane.
 * Every struct and enum that crosses the boundary lives here, once; Rust sees
 * them through the skeleton's generated `types`, so they also reach bpftool
 * with field names through BTF. docs/dataplane.md explains the design.
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

/*
 * The shared dataplane (docs/dataplane.md, "One dataplane per node"): one
 * load per node and state layout, whose maps hold NATRA_SLOTS Pod
 * interfaces. A slot's directions are the keys slot x NATRA_DIR_COUNT + dir
 * of natra_cfg, natra_bucket and natra_stats; its sketch cells begin at
 * (slot x NATRA_DIR_COUNT + dir) x NATRA_SLOT_SKETCH_CELLS of natra_sketch.
 * A per-attachment stub program (a few raw instructions the control plane
 * writes) stores the slot and its generation in skb->cb and tail-calls the
 * shared program of its direction through natra_progs[dir]; the program
 * applies a slot only while natra_config.generation says the slot is the
 * stub's. A Pod whose sketch needs more cells, or a node out of slots, gets
 * a private load of the same object (slot 0 of maps sized for one).
 */
#define NATRA_SLOTS 512
#define NATRA_SLOT_SKETCH_CELLS 512
/* skb->cb words the stub writes before its tail call, and where cb sits in
 * struct __sk_buff (UAPI; natra.bpf.c asserts it). */
#define NATRA_CB_SLOT 0
#define NATRA_CB_GENERATION 1
#define NATRA_SKB_CB_OFFSET 48
/* Bucket levels are kept in byte-nanoseconds (bytes x 1e9) so refills are
 * exact integers; 2^32 bytes x 1e9 still fits in 63 bits, and so does the
 * EDT debt below zero, which is capped at the same 2^32 bytes. */
#define NATRA_MAX_BURST_BYTES (1ULL << 32)
#define NATRA_MAX_EDT_DEBT_BYTES (1ULL << 32)

/* Count-Min Sketch cells: (epoch << 40) | bytes. 40 bits of bytes saturate at
 * ~1.1 TB per window; the 24-bit epoch wraps after 2^24 epochs. */
#define NATRA_SKETCH_BYTES_BITS 40
#define NATRA_SKETCH_BYTES_MASK ((1ULL << NATRA_SKETCH_BYTES_BITS) - 1)
#define NATRA_SKETCH_EPOCH_MASK 0xffffffULL
/* Rows are unrolled in the program: depth is 1..NATRA_SKETCH_MAX_DEPTH. */
#ifndef NATRA_SKETCH_MAX_DEPTH
#define NATRA_SKETCH_MAX_DEPTH 8
#endif

/* natra_config.flags */
enum natra_config_flags {
	/* Pace over-rate packets with an EDT departure time (skb->tstamp)
	 * instead of dropping them: heavy ones within edt_horizon_ns, mice
	 * below their floor within mice_horizon_ns. Set by the control plane
	 * only on a direction whose program runs just before an fq (pod egress
	 * at the Pod's interface, pod ingress at the host veth's egress). */
	NATRA_CFG_EDT = 1,
};

/* Limits of one direction, written by the control plane at ADD. All byte
 * amounts are bytes; the program multiplies them by 1e9 itself. */
struct natra_config {
	enum natra_direction direction;
	enum natra_config_flags flags; /* bits of enum natra_config_flags */
	__u64 rate_bytes_per_sec;      /* 0: direction not limited */
	__u64 burst_bytes;	       /* bucket depth: bytes allowed above rate */
	__u64 ecn_band_bytes;	       /* heavy flows' lowest band, for ECT packets, marked CE */
	__u64 refill_full_ns;	       /* idle time that refills the bucket from its floor */
	__u64 mice_reserve_bytes;      /* bottom of the bucket that only mice may use */
	__u64 edt_debt_bytes;	       /* EDT: how far below 0 the level may go (0: no EDT) */
	__u64 edt_horizon_ns;	       /* EDT: longest delay given; beyond it, drop */
	__u64 heavy_threshold_bytes;   /* a flow whose sketch estimate exceeds this is heavy */
	__u64 epoch_ns;		       /* sketch epoch: half the window */
	__u32 sketch_depth;	       /* rows, 1..NATRA_SKETCH_MAX_DEPTH */
	__u32 sketch_width;	       /* columns per row, a power of two */
	__u32 sketch_shift;	       /* 64 - log2(sketch_width) */
	__u32 sketch_base;	       /* index of this direction's first cell */
	__u32 generation;	       /* the slot's owner: stubs carrying another are ignored */
	__u32 reserved;
	/* Appended for queues both ways (EDT on a direction, issue 16): */
	__u64 mice_debt_bytes; /* EDT: how far below -edt_debt paced mice may take the level */
	__u64 mice_horizon_ns; /* EDT: longest delay given to a mouse; beyond it, drop */
	__u64 ce_delay_ns;     /* EDT: a paced heavy ECT packet delayed more is marked CE */
	/* Handshakes (EDT; docs/dataplane.md, "EDT pacing"): */
	__u64 handshake_extra_bytes; /* how far below -(edt_debt + mice_debt) a handshake may go */
	__u64 handshake_horizon_ns;  /* longest delay given to one; beyond it, drop */
};

/* Token bucket and sketch clock of one direction. No lock: CPUs update it
 * with atomics (compare-and-swap of last_ns, level and epoch_start_ns;
 * docs/dataplane.md, Concurrency). */
struct natra_bucket_state {
	__u32 epoch;	       /* sketch epoch number (24 bits used) */
	__s64 level;	       /* byte-ns available: -(the EDT debts) x 1e9 .. burst x 1e9 */
	__u64 last_ns;	       /* bpf_ktime_get_coarse_ns() of the last refill */
	__u64 epoch_start_ns;  /* when `epoch` began; > now: the epoch never advances */
	__u64 heavy_seen;      /* bitmap of heavy flows' hashes seen this epoch */
	__u64 heavy_seen_prev; /* the same for the previous epoch */
	__u64 clock_jiffies;   /* jiffy in which clock_ns was read (0: none yet) */
	__u64 clock_ns;	       /* bpf_ktime_get_coarse_ns() read in that jiffy */
	__u64 cas_giveups;     /* charges whose every CAS on the level lost: committed by add */
};

/* Per-CPU counters of one direction. Every packet the program handles lands
 * in exactly one of passed_* or dropped_*; passed = mouse + heavy; paced and
 * CE-marked packets are heavy packets that passed. */
struct natra_counters {
	__u64 passed_packets;
	__u64 passed_bytes;
	__u64 passed_mouse_packets;
	__u64 passed_mouse_bytes;
	__u64 passed_heavy_packets;
	__u64 passed_heavy_bytes;
	__u64 paced_packets; /* given an EDT departure time in the future */
	__u64 paced_bytes;
	__u64 ce_marked_packets;
	__u64 ce_marked_bytes;
	__u64 dropped_packets;
	__u64 dropped_bytes;
	__u64 malformed_packets;   /* truncated IP headers: charged, never parsed past the end */
	__u64 non_ip_packets;	   /* ARP and friends: charged, never ECN-marked */
	__u64 paced_mouse_packets; /* mice given an EDT departure time (in paced_* too) */
	__u64 paced_mouse_bytes;
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
	/* pod_ingress on the host veth (paced by fq there), pod_egress on the
	 * Pod's interface (paced by fq there): EDT both ways. */
	NATRA_ATTACH_TCX_SPLIT = 5,
};

/* struct natra_attachment.flags: an enum, so that Rust and bpftool see the names. */
enum natra_attach_flags {
	NATRA_ATTACH_OWNS_CLSACT = 1 << 0, /* natra created the clsact qdisc it uses */
	NATRA_ATTACH_OWNS_FQ = 1 << 1,	   /* natra installed fq as the Pod's root qdisc */
	NATRA_ATTACH_EDT = 1 << 2,	   /* EDT pacing on: fq on the Pod's interface */
	/* pod ingress paced (host-side modes): fq as the host veth's root */
	NATRA_ATTACH_EDT_INGRESS = 1 << 3,
	NATRA_ATTACH_OWNS_HOST_FQ = 1 << 4, /* natra installed that fq on the host veth */
};

/* The Pod an attachment serves, as the runtime names it in CNI_ARGS
 * (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID), for `natra inspect` and the
 * metrics' labels. NUL-terminated and NUL-padded; empty when the runtime
 * passed none. Each holds Kubernetes' longest: a namespace is a DNS-1123
 * label (63 bytes), a Pod name a DNS-1123 subdomain (253), a UID a UUID (36). */
struct natra_pod_ref {
	char namespace[64];
	char name[256];
	char uid[40];
};

/* What ADD did for one Pod interface (map natra_attach, key 0), so that DEL,
 * CHECK and GC undo or verify exactly that. Written by the control plane
 * only; the programs never read it. */
struct natra_attachment {
	enum natra_attach_mode mode;
	__u32 host_ifindex;	       /* host-side veth, in the host netns */
	__u32 pod_ifindex;	       /* the Pod's interface, in the Pod's netns */
	enum natra_attach_flags flags; /* bits of enum natra_attach_flags */
	struct natra_pod_ref pod;      /* whose interface this is */
	char netns[128];	       /* CNI_NETNS at ADD: the node agent's way in to repair */
	__u64 layout;		       /* the shared dataplane's layout id; 0: a private load */
	__u32 slot;		       /* key base slot x NATRA_DIR_COUNT in the maps */
	__u32 generation;	       /* the slot's generation this attachment owns */
};

#endif /* NATRA_H */
