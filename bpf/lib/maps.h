/* SPDX-License-Identifier: Apache-2.0 */
/* Maps of one attachment (one Pod interface); indexed by enum natra_direction. */
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

/* What ADD attached where (key 0), pinned as `attachment`; control plane only. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct natra_attachment);
} natra_attach SEC(".maps");

#endif /* NATRA_MAPS_H */
