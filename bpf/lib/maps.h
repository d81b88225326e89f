/* SPDX-License-Identifier: Apache-2.0 */
/* Maps of one attachment (one Pod interface); indexed by enum natra_direction,
 * except the sketch. Each Pod interface loads its own object, so no state is
 * shared between Pods. */
#ifndef NATRA_MAPS_H
#define NATRA_MAPS_H

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NATRA_DIR_COUNT);
	__type(key, __u32);
	__type(value, struct natra_config);
} natra_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NATRA_DIR_COUNT);
	__type(key, __u32);
	__type(value, struct natra_bucket_state);
} natra_bucket SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NATRA_DIR_COUNT);
	__type(key, __u32);
	__type(value, struct natra_counters);
} natra_stats SEC(".maps");

/* Count-Min Sketch cells of both directions: key = dir x depth x width + row
 * x width + col (natra_config.sketch_base is the first term). max_entries is
 * set by the control plane before load (2 x depth x width); this default
 * holds the default geometry, depth 4 x width 128, for the tests' own loads. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NATRA_DIR_COUNT * 4 * 128);
	__type(key, __u32);
	__type(value, __u64);
} natra_sketch SEC(".maps");

/* What ADD attached where (key 0), pinned as `attachment`; control plane only. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct natra_attachment);
} natra_attach SEC(".maps");

#endif /* NATRA_MAPS_H */
