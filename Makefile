# natra — see README.md. `make test` and `make demo` install their own deps.
CARGO ?= cargo
ROOT := $(shell id -u)
BPF_ARCH := $(if $(filter aarch64,$(shell uname -m)),arm64,x86)
BPF_SOURCES := $(wildcard bpf/*.c bpf/lib/*.h include/natra.h)
C_SOURCES := $(BPF_SOURCES) scripts/verifier-stats.c

.PHONY: all deps bpffs build release image test test-kernels lint fmt fuzz bench bench-quick bench-bpf bench-add verifier-stats demo vmlinux clean

HOST_TRIPLE := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
RELEASE_BIN := target/$(HOST_TRIPLE)/release/natra
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE ?= localhost/natra:$(VERSION)

all: build

deps:
	scripts/install-deps.sh

bpffs:
	scripts/mount-bpffs.sh

build: deps
	$(CARGO) build --release

# The binary to copy onto nodes: glibc, libbpf, libelf and zlib linked in
# (crt-static on the gnu target, Debian's static libraries), so the plugin
# runs on any node OS. RUSTFLAGS with --target reach natra, not build.rs.
release: deps
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --target $(HOST_TRIPLE) --bin natra
	@file $(RELEASE_BIN)

# An OCI image tarball FROM scratch: the static binary alone, entrypoint
# `natra agent`; no base image, no registry (`ctr images import` takes it).
image: release
	python3 scripts/cri/mkimage.py --name $(IMAGE) --out target/natra-image.tar \
		--entrypoint /natra agent --file $(RELEASE_BIN):/natra
	@echo "image $(IMAGE): target/natra-image.tar"

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	clang-format --dry-run --Werror $(C_SOURCES)

# Every test: unit, host-side arithmetic, BPF_PROG_RUN, libcni integration and
# real-traffic enforcement. Root-only tests are #[ignore]d for plain `cargo
# test`; as root they run here, otherwise this target says loudly it skipped them.
test: deps bpffs lint image
ifeq ($(ROOT),0)
	NATRA_BENCH_BIN=$(RELEASE_BIN) $(CARGO) test -- --include-ignored
	$(MAKE) test-kernels
else
	@echo "=================================================================="
	@echo "SKIPPING root-only tests (BPF_PROG_RUN, netns, libcni, traffic):"
	@echo "not running as root. Run 'sudo make test' to run all of them."
	@echo "SKIPPING the kernel matrix (make test-kernels: apt, qemu): same reason."
	@echo "=================================================================="
	$(CARGO) test
endif

# natra on Debian's own kernels under qemu (TCG), each with real sch_fq:
# 6.1 (clsact only) and 6.12 (tcx). EDT pacing, attach modes, mice, ingress,
# DEL leaving nothing; a per-kernel table at the end. Installs its own host
# deps (root). One kernel: make test-kernels KERNELS=6.12. See
# docs/development.md, "Kernel matrix".
KERNELS ?= 6.1 6.12
test-kernels: deps
	KERNELS="$(KERNELS)" scripts/kernel-matrix/run.sh

# The parser property tests, run far longer than in `make test`.
fuzz:
	NATRA_FUZZ_ITERS=5000000 $(CARGO) test --release --lib -- cni::quantity cni::fuzz --nocapture

# ns/packet of each dataplane path via BPF_PROG_RUN repeat, beside a
# pass-through program measured in the same run (tests/bench_bpf.rs). Root.
bench-bpf: bpffs
	$(CARGO) test --release --test bench_bpf -- --ignored --nocapture --test-threads=1

# ADD/DEL latency of natra beside the upstream bandwidth plugin (tests/bench_add.rs). Root.
bench-add: bpffs
	$(CARGO) test --release --test bench_add -- --ignored --nocapture --test-threads=1

# natra beside the upstream bandwidth plugin, every scenario (tests/perf):
# `bench` is the full run (3 runs, ~20 min on 2 cores) and rewrites
# docs/perf-vs-vanilla.md and docs/img/*.png; `bench-quick` is one short run
# (the subset `make test` gates on) that leaves docs/ alone. Root.
bench: deps bpffs
	NATRA_BENCH=full $(CARGO) test --release --test perf -- --ignored --nocapture --test-threads=1

bench-quick: deps bpffs
	NATRA_BENCH=quick $(CARGO) test --release --test perf -- --ignored --nocapture --test-threads=1

# The verifier's work per program (time, processed insns, states): it is most
# of an ADD's latency (docs/dataplane.md, verification). Compiles the object
# as build.rs does and loads it with the distribution's libbpf (libbpf-dev).
# Root. VERIFIER_LOG_LEVEL=2 prints the whole log instead.
VSTAT_DIR := target/verifier-stats
verifier-stats: bpffs
	mkdir -p $(VSTAT_DIR)
	clang -g -O2 -Wall -Werror -target bpf -D__TARGET_ARCH_$(BPF_ARCH) -Iinclude -Ibpf \
		-c bpf/natra.bpf.c -o $(VSTAT_DIR)/natra.bpf.o
	$(CC) -O2 -Wall -Werror -o $(VSTAT_DIR)/verifier-stats scripts/verifier-stats.c -lbpf
	$(VSTAT_DIR)/verifier-stats $(VSTAT_DIR)/natra.bpf.o $(VERIFIER_LOG_LEVEL)

fmt:
	$(CARGO) fmt
	clang-format -i $(C_SOURCES)

demo: deps bpffs
	$(CARGO) build --release
	scripts/demo.sh target/release/natra

vmlinux:
	scripts/gen-vmlinux.sh

clean:
	$(CARGO) clean
