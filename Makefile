# Ambit's entry points. `make demo` and `make test` work on a fresh Debian 12 machine as root: each
# installs what is missing (Debian packages, npm packages) and builds before it runs.

SHELL := /bin/bash
# ip, nft and bpftool live in sbin, which a non-login root shell may not have on its PATH.
export PATH := $(PATH):/usr/local/sbin:/usr/sbin:/sbin

APT_PACKAGES := clang llvm libbpf-dev bpftool nftables iproute2 curl openssl util-linux procps build-essential python3 iperf3 python3-h2 golang-go haproxy tcpdump
AMBIT := node dist/agent/cli/main.js

.PHONY: setup deps build bpf native test demo demo-down bench clean typecheck

BPF_CFLAGS := -O2 -g -target bpf -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu
BPF_OBJECTS := bpf/outbound_cgroup.bpf.o bpf/inbound_tc.bpf.o
# The node-gyp bundled with npm; --nodedir=/usr, because ~/.npmrc is only read when npm runs it, and
# without headers node-gyp would try to download them (nothing but the registries is reachable).
NODE_GYP := node $(dir $(shell readlink -f $$(command -v npm)))../node_modules/node-gyp/bin/node-gyp.js
ADDON := native/build/Release/ambit_bpf.node

## setup: install missing Debian and npm packages, then build
setup: deps build

# kubectl (the tests render deploy/ with kustomize) comes from Debian's kubernetes-client, unless a
# kubectl from elsewhere is installed: that package's /usr/bin/kubectl would collide with it.
deps: node_modules/.package-lock.json
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	command -v kubectl >/dev/null || missing="$$missing kubernetes-client"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

## build: compile the agent (TypeScript → dist/), the eBPF programs and the native binding
build: dist/.built bpf native

bpf: $(BPF_OBJECTS)
bpf/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/lib/*.h) | deps
	clang $(BPF_CFLAGS) -c $< -o $@

native: $(ADDON)
$(ADDON): native/binding.gyp $(wildcard native/src/*.c native/src/*.h) | deps
	cd native && $(NODE_GYP) rebuild --nodedir=/usr --loglevel=warn

dist/.built: node_modules/.package-lock.json tsconfig.json tsconfig.build.json $(shell find agent -name '*.ts')
	npx tsc -p tsconfig.build.json
	chmod +x dist/agent/cli/main.js
	@touch $@

typecheck: node_modules/.package-lock.json
	npx tsc -p tsconfig.json --noEmit

## test: type-check, then every test (unit, and integration on the real kernel: needs root)
test: setup
	@bash test/run.sh

## demo: bring up examples/bookinfo in the lab, send traffic, print what happened (stays up)
demo: setup
	@node examples/bookinfo/demo.mjs

## demo-down: remove the demo lab and everything it made
demo-down:
	@if [ -f dist/agent/cli/main.js ]; then $(AMBIT) lab down; else echo "nothing built, so no lab to remove"; fi

## bench: benchmarks, each reported as a ratio against a baseline measured in the same run
bench: setup
	@shopt -s nullglob; benches=(bench/*.bench.ts); [ $${#benches[@]} -gt 0 ] || { echo "no benchmarks in bench/"; exit 1; }; \
	for b in "$${benches[@]}"; do node --import tsx "$$b" || exit 1; done

clean:
	rm -rf dist native/build bpf/*.o

## proto: regenerate agent/proto/ from proto/*.proto (buf + protoc-gen-es from npm; the output is committed)
.PHONY: proto
proto: node_modules/.package-lock.json
	rm -rf agent/proto
	cd proto && ../node_modules/.bin/buf generate
