# The front door: every target installs what it needs on a fresh Debian machine.
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: deps build demo test lint fmt bench clean-netns

deps:
	@bash scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --locked --release

# The main job: seed 000 as a lab in network namespaces (calico-lab up, print, down), from the
# release binaries `build` makes.
demo: build
	@bash scripts/demo.sh

# Everything: unit, property, conformance (embedded + real etcd), CLI end-to-end tests.
test: deps
	@bash scripts/test.sh

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

# Benchmarks (not timed tests): results go to docs/benchmarks.md.
bench: deps
	@bash scripts/bench.sh
