# offsite: build, test and demo entry points. CI runs `.ci/run`, which is `make test`.
#
#   make services        install/start PostgreSQL, MariaDB, the S3 test server and the tools (idempotent)
#   make build           release binary: target/release/offsite
#   make test            services, then every test (tests talk to the real servers)
#   make lint            rustfmt check and clippy with warnings as errors
#   make demo            end-to-end demo on a local-directory store (scripts/demo)
#   make bench           benchmarks (scripts/bench)
#   make clean-services  stop the S3 test server that scripts/s3-test-server started

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# Where the tests find the S3 test server; override from the environment if it lives elsewhere.
OFFSITE_TEST_S3_ENDPOINT ?= http://127.0.0.1:5055
export OFFSITE_TEST_S3_ENDPOINT

.PHONY: services build test lint demo bench clean-services

services:
	scripts/services

build:
	cargo build --release --locked

test: services
	cargo build --locked --all-targets
	cargo test --locked -- --test-threads=4

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets --locked -- -D warnings

demo: services build
	scripts/demo

bench: services build
	scripts/bench

clean-services:
	scripts/s3-test-server stop
