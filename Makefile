# natra — see README.md. `make test` and `make demo` install their own deps.
CARGO ?= cargo
ROOT := $(shell id -u)
BPF_SOURCES := $(wildcard bpf/*.c bpf/lib/*.h include/natra.h)

.PHONY: all deps bpffs build test lint fmt fuzz bench bench-quick bench-bpf bench-add demo vmlinux clean

all: build

deps:
	scripts/install-deps.sh

bpffs:
	scripts/mount-bpffs.sh

build: deps
	$(CARGO) build --release

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	clang-format --dry-run --Werror $(BPF_SOURCES)

# Every test: unit, host-side arithmetic, BPF_PROG_RUN, libcni integration and
# real-traffic enforcement. Root-only tests are #[ignore]d for plain `cargo
# test`; as root they run here, otherwise this target says loudly it skipped them.
test: deps bpffs lint
ifeq ($(ROOT),0)
	$(CARGO) test -- --include-ignored
else
	@echo "=================================================================="
	@echo "SKIPPING root-only tests (BPF_PROG_RUN, netns, libcni, traffic):"
	@echo "not running as root. Run 'sudo make test' to run all of them."
	@echo "=================================================================="
	$(CARGO) test
endif

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

fmt:
	$(CARGO) fmt
	clang-format -i $(BPF_SOURCES)

demo: deps bpffs
	$(CARGO) build --release
	scripts/demo.sh target/release/natra

vmlinux:
	scripts/gen-vmlinux.sh

clean:
	$(CARGO) clean
