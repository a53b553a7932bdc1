# authtrail: the contract for humans and CI. `make help` lists the targets.
# Every target installs what it needs (pinned Python tools in ./.venv, Debian packages when
# missing) and is quick when everything is already there.

SHELL        := /bin/bash
.SHELLFLAGS  := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV         ?= .venv
CARGO        ?= cargo
APT_TEST_PKGS := rsyslog rsyslog-gnutls gnutls-bin postgresql-15 postgresql-client-15 activemq
TEMPLATES    := $(wildcard cloudformation/*.yaml)
LAMBDA_BINS  := authtrail-producer authtrail-archiver authtrail-forwarder authtrail-securitylake authtrail-reconciler
export PATH  := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: venv
venv: ## Install the pinned Python tools the tests and the demo use (moto, cfn-lint) into .venv
	@infra/scripts/ensure-venv.sh infra/python/requirements-test.txt

.PHONY: tools
tools: venv ## Install the pinned heavy tools (cargo-lambda with Zig, checkov) into .venv
	@infra/scripts/ensure-venv.sh infra/python/requirements-tools.txt

.PHONY: apt-deps
apt-deps: ## Install the Debian packages the tests need (rsyslog with TLS) when missing
	@infra/scripts/ensure-apt.sh $(APT_TEST_PKGS)

.PHONY: test
test: venv apt-deps ## Run every test: unit, emulator integration and end-to-end
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

.PHONY: demo
demo: venv apt-deps ## Run the whole pipeline locally on the emulator and account for every event (DEMO_ARGS="--help" for options)
	$(CARGO) build --workspace --bins
	./target/debug/authtrail-demo $(DEMO_ARGS)

.PHONY: chaos
chaos: venv apt-deps ## The chaos run (not part of test): the pipeline with faults on a seeded schedule, then the accounting per place; CHAOS_EVENTS (1000000), CHAOS_DURATION_SECS (1500), CHAOS_SEED (42), CHAOS_KILLS (10), CHAOS_TOKEN_EXPIRIES (10), CHAOS_OUT_DIR
	$(CARGO) build --workspace --bins --release
	./target/release/authtrail-chaos $(if $(CHAOS_EVENTS),--events $(CHAOS_EVENTS)) $(if $(CHAOS_DURATION_SECS),--duration-secs $(CHAOS_DURATION_SECS)) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED)) $(if $(CHAOS_KILLS),--kills $(CHAOS_KILLS)) $(if $(CHAOS_TOKEN_EXPIRIES),--token-expiries $(CHAOS_TOKEN_EXPIRIES)) $(if $(CHAOS_OUT_DIR),--out-dir $(CHAOS_OUT_DIR))

.PHONY: lint
lint: tools ## cargo fmt --check, clippy -D warnings, cfn-lint and checkov on the templates
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@if [ -n "$(TEMPLATES)" ]; then cfn-lint $(TEMPLATES); checkov --quiet --compact --skip-download -d cloudformation --framework cloudformation; else echo "no templates yet"; fi

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: bench
bench: venv apt-deps ## Run the benchmarks and print their figures
	$(CARGO) build --workspace --bins --release
	# The benches configure emitters with plain tokens and keys (loopback receivers only).
	AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS=true AUTHTRAIL_BIN_DIR=$(CURDIR)/target/release $(CARGO) bench --workspace --benches

FUZZ_SECONDS ?= 60

.PHONY: fuzz
fuzz: ## Fuzz every decoder of outside data, FUZZ_SECONDS each (default 60; nightly; installs cargo-fuzz); not part of test
	@fuzz/run.sh $(FUZZ_SECONDS)

# Lambda architecture of `make build`/`package`/`deploy`: arm64 (default; Graviton, cheaper) or
# x86_64. The templates' `Architecture` parameter must match; `make deploy` passes it.
ARCH ?= arm64
LAMBDA_TARGET_arm64  := aarch64-unknown-linux-gnu
LAMBDA_TARGET_x86_64 := x86_64-unknown-linux-gnu
LAMBDA_FLAG_arm64    := --arm64
LAMBDA_FLAG_x86_64   := --x86-64

.PHONY: lambda-target
lambda-target:
	@case "$(ARCH)" in arm64|x86_64) ;; *) echo "ARCH must be arm64 or x86_64 (got '$(ARCH)')"; exit 2;; esac
	@rustup target list --installed 2>/dev/null | grep -qx '$(LAMBDA_TARGET_$(ARCH))' || \
	  rustup target add $(LAMBDA_TARGET_$(ARCH)) || \
	  { echo "the Rust standard library for $(LAMBDA_TARGET_$(ARCH)) is not installed and rustup could not fetch it;"; \
	    echo "install it (rustup target add $(LAMBDA_TARGET_$(ARCH))) or build for the other architecture (ARCH=arm64|x86_64)"; exit 2; }

.PHONY: build
build: tools lambda-target ## Build the Lambda binaries (cargo lambda build --release; ARCH=arm64 default, or x86_64)
	cargo lambda build --release $(LAMBDA_FLAG_$(ARCH)) $(addprefix --bin ,$(LAMBDA_BINS))

.PHONY: package
package: tools lambda-target ## Build the Lambda zips into target/lambda/<bin>/bootstrap.zip (ARCH=arm64 default, or x86_64)
	cargo lambda build --release $(LAMBDA_FLAG_$(ARCH)) --output-format zip $(addprefix --bin ,$(LAMBDA_BINS))

STACK       ?= authtrail
TEMPLATE    ?= cloudformation/pipeline.yaml
CODE_BUCKET ?=
VERSION     ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
CODE_PREFIX ?= authtrail/$(VERSION)
PARAMS      ?=

.PHONY: deploy-args deploy
deploy-args:
	@test -n "$(CODE_BUCKET)" || { echo "usage: make deploy CODE_BUCKET=<bucket in the stack's region> [STACK=authtrail] [TEMPLATE=cloudformation/pipeline.yaml] [PARAMS='Key=Value ...']"; exit 2; }
	@command -v aws >/dev/null || { echo "make deploy needs the AWS CLI (aws) with credentials for the target account"; exit 2; }

deploy: deploy-args package ## Upload the Lambda zips to CODE_BUCKET and deploy TEMPLATE as STACK (PARAMS="Key=Value ...")
	for bin in $(LAMBDA_BINS); do \
	  aws s3 cp target/lambda/$$bin/bootstrap.zip s3://$(CODE_BUCKET)/$(CODE_PREFIX)/$$bin.zip; \
	done
	code=""; \
	if grep -q '^  CodeBucket:' $(TEMPLATE); then code="CodeBucket=$(CODE_BUCKET) Architecture=$(ARCH)"; fi; \
	for p in Archiver:authtrail-archiver Forwarder:authtrail-forwarder Producer:authtrail-producer SecurityLake:authtrail-securitylake Reconciler:authtrail-reconciler; do \
	  key=$${p%%:*}CodeKey; bin=$${p#*:}; \
	  if grep -q "^  $$key:" $(TEMPLATE); then code="$$code $$key=$(CODE_PREFIX)/$$bin.zip"; fi; \
	done; \
	aws cloudformation deploy --stack-name $(STACK) --template-file $(TEMPLATE) \
	  --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
	  $$(if [ -n "$${code}$(PARAMS)" ]; then echo --parameter-overrides; fi) $$code $(PARAMS)

.PHONY: clean
clean: ## Remove build output and the virtualenv
	$(CARGO) clean
	rm -rf $(VENV)
