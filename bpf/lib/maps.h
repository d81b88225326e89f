/* SPDX-License-Identifier: Apache-2.0 */
/* The dataplane's maps. natra_cfg, natra_bucket and natra_stats are indexed
 * by slot x NATRA_DIR_COUNT + enum natra_direction (include/natra.h): the
 * shared load holds NATRA_SLOTS slots, a private load (one Pod interface)
 * one, sized by the control plane before load. Slots share nothing but the
 * maps: each has its own keys and its own range of sketch cells. */
#ifndef NATRA_MAPS_H
#define NATRA_MAPS_H

/* Keys of the per-direction maps (every slot's directions), and cells of
 * the sketch (NATRA_SLOT_SKETCH_CELLS per key). */
#define NATRA_MAP_KEYS (NATRA_SLOTS * NATRA_DIR_COUNT)
#define NATRA_MAP_CELLS (NATRA_MAP_KEYS * NATRA_SLOT_SKETCH_CELLS)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NATRA_MAP_KEYS);
	__type(key, __u32);
	__type(value, struct natra_config);
} natra_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NATRA_MAP_KEYS);
	__type(key, __u32);
	__type(value, struct natra_bucket_state);
} natra_bucket SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NATRA_MAP_KEYS);
	__type(key, __u32);
	__type(value, struct natra_counters);
} natra_stats SEC(".maps");

/* Count-Min Sketch cells: key = natra_config.sketch_base + row x width +
 * col. The shared load gives each slot's direction NATRA_SLOT_SKETCH_CELLS;
 * a private load is sized by the control plane before load (2 x depth x
 * width, sketch_base = dir x depth x width). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NATRA_MAP_CELLS);
	__type(key, __u32);
	__type(value, __u64);
} natra_sketch SEC(".maps");

/* The shared programs by enum natra_direction, for the stubs' tail calls;
 * pinned as long as any stub may jump through it (a PROG_ARRAY is flushed
 * when its last user reference goes). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, NATRA_DIR_COUNT);
	__type(key, __u32);
	__type(value, __u32);
} natra_progs SEC(".maps");

/* What ADD attached where (key 0), pinned as `attachment`; control plane
 * only. A private load's own; a Pod on the shared dataplane gets a map of
 * this type made for it alone. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct natra_attachment);
} natra_attach SEC(".maps");

#endif /* NATRA_MAPS_H */
