# moat's two commands are `make demo` and `make test`; each sets up what it needs first.
# Everything here runs as root on Debian 12 (apt-get installs the host packages).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export MOAT_CACHE ?= /var/cache/moat

DEBIAN_PACKAGES := qemu-system-x86 qemu-user linux-source-6.1 build-essential bc bison flex libelf-dev \
	busybox-static crun cpio erofs-utils xz-utils iproute2 procps runc runsc podman conmon containerd docker.io \
	containernetworking-plugins iptables iperf3 iputils-ping \
	golang-go golang-github-containerd-containerd-dev
GENERATED := src/shared/protocol/gen/moat/agent/v1/agent_pb.ts
TS_SOURCES := $(shell find src test bench -name '*.ts' -not -path 'src/shared/protocol/gen/*' 2>/dev/null)

.PHONY: demo test setup build guest unit integration bench docs clean

## demo: set up, then run a container in its own VM and show its kernel beside the host's
demo: setup build guest
	@echo "==> moat check"
	@bin/moat check
	@echo "==> moat boot: a VM with moat's kernel, image and agent"
	@bin/moat boot
	@echo "==> moat run --rm busybox uname -a: a container in its own VM"
	@container=$$(bin/moat run --rm busybox uname -a) && echo "host:      $$(uname -a)" && echo "container: $$container"

## test: set up, then run the whole suite (unit and integration, one summary)
test: setup build guest
	@echo "==> tests"
	@# --test-timeout bounds each test file as a whole too (the runner's test for the file): a
	@# file of a dozen VM tests takes 4-5 minutes on a loaded 2-core TCG machine, so 15.
	node --test --test-concurrency=1 --test-timeout=900000 $$(find dist/src dist/test dist/bench -name '*.test.js' | sort)

## setup: Debian packages and npm packages
setup: node_modules/.installed
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f '$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "==> apt-get install $$missing"; \
	  apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@# The deploy tests decode manifests with kubectl (no cluster): Debian's, unless one is installed already (another package's kubectl would conflict).
	@command -v kubectl >/dev/null || { echo "==> apt-get install kubernetes-client"; apt-get update -q; DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends kubernetes-client; }

node_modules/.installed: package.json package-lock.json
	@echo "==> npm ci"
	npm ci --no-fund --no-audit
	@touch $@

## build: generate protobuf code, type-check and compile, bundle the agent, CLI, daemon and shim; the C helpers
build: node_modules/.installed $(GENERATED) dist/.built dist/bin/moat-standin dist/bin/moatd-launch dist/bin/moat-task-pid dist/bin/moat-tap-exec dist/bin/moat-jail dist/bin/moat-dns-relay dist/bin/moat-port-relay dist/bin/containerd-shim-moat-v2 dist/test/bin/moat-go-client dist/test/bin/moat-fs-checks dist/test/bin/moat-pause

SHIM_C := containerd-shim-moat-v2 moatd-start task-relay ttrpc-frame
dist/bin/containerd-shim-moat-v2: $(patsubst %,src/host/shim/%.c,$(SHIM_C)) $(wildcard src/host/shim/*.h)
	@mkdir -p dist/bin
	gcc -O2 -Wall -Wextra -Werror -o $@ $(filter %.c,$^)

dist/bin/moat-tap-exec: src/host/network/moat-tap-exec.c
	@mkdir -p dist/bin
	gcc -O2 -Wall -Wextra -Werror -o $@ $<

dist/bin/moat-dns-relay: src/host/network/moat-dns-relay.c
	@mkdir -p dist/bin
	gcc -O2 -Wall -Wextra -Werror -o $@ $<

dist/bin/moat-port-relay: src/host/network/moat-port-relay.c
	@mkdir -p dist/bin
	gcc -O2 -Wall -Wextra -Werror -o $@ $<

dist/bin/moat-jail: src/host/hypervisor/moat-jail.c
	@mkdir -p dist/bin
	gcc -O2 -Wall -Wextra -Werror -o $@ $<

dist/bin/moat-standin: src/host/standin/moat-standin.c
	@mkdir -p dist/bin
	gcc -O2 -Wall -Wextra -Werror -o $@ $<

dist/bin/moatd-launch: src/host/moatd/moatd-launch.c
	@mkdir -p dist/bin
	gcc -O2 -Wall -Wextra -Werror -o $@ $<

dist/bin/moat-task-pid: src/host/standin/moat-task-pid.c
	@mkdir -p dist/bin
	gcc -O2 -Wall -Wextra -Werror -o $@ $<

# The file-system checks of issues 15 and 13 (test/integration/issue-15-files.test.ts), run
# inside containers: static, so that it runs in any image.
dist/test/bin/moat-fs-checks: test/support/fs-checks.c
	@mkdir -p dist/test/bin
	gcc -static -O2 -Wall -Wextra -Werror -o $@ $<

# The pause program of the test suite's pause image, the CRI sandbox image of issue 12's tests
# (test/integration/harness/cri.ts): static, the image's only file.
dist/test/bin/moat-pause: test/support/pause.c
	@mkdir -p dist/test/bin
	gcc -static -O2 -Wall -Wextra -Werror -o $@ $<

# The test suite's containerd Go client (test/integration/issue-10-go-client.test.ts), built
# offline in GOPATH mode from Debian's golang-*-dev sources under /usr/share/gocode.
GO_CLIENT := test/integration/harness/go-client
dist/test/bin/moat-go-client: $(GO_CLIENT)/main.go
	@mkdir -p dist/test/bin dist/test/go/src
	ln -sfn $(CURDIR)/$(GO_CLIENT) dist/test/go/src/moat-go-client
	cd dist/test/go && GO111MODULE=off GOPATH=$(CURDIR)/dist/test/go:/usr/share/gocode GOCACHE=$(CURDIR)/dist/test/go/cache \
	  go build -o $(CURDIR)/$@ moat-go-client

$(GENERATED): node_modules/.installed buf.gen.yaml $(shell find proto -name '*.proto')
	@echo "==> buf generate"
	npx buf generate
	@touch $@

dist/.built: $(GENERATED) $(TS_SOURCES) tsconfig.json tools/bundle.mjs package.json
	@echo "==> tsc and esbuild"
	npx tsc -p .
	node tools/bundle.mjs
	@touch $@

## guest: the guest kernel and root file system, and the built-in busybox image, cached by input hash under $(MOAT_CACHE)
guest: build
	@echo "==> guest kernel (first build takes about 5 minutes on 2 cores)"
	@kernel=$$(bash image/kernel/build.sh) && mkdir -p dist/guest && ln -sfn "$$kernel" dist/guest/vmlinux
	@echo "==> guest root file system"
	@rootfs=$$(bash image/rootfs/build.sh dist/bundle/agent.js) && \
	  ln -sfn "$$rootfs/rootfs.erofs" dist/guest/rootfs.erofs && ln -sfn "$$rootfs/initrd.cpio" dist/guest/initrd.cpio
	@echo "==> built-in container image: busybox"
	@busybox=$$(bash image/busybox/build.sh) && mkdir -p dist/images/busybox && ln -sfn "$$busybox" dist/images/busybox/rootfs

## bench: the benchmarks (write bench/results/*.json)
bench: setup build guest
	node dist/bench/boot.js
	node dist/bench/run.js
	node dist/bench/start-breakdown.js
	node dist/bench/memory.js
	node dist/bench/density.js
	node dist/bench/burst.js
	node dist/bench/network.js
	node dist/bench/teardown.js
	node dist/bench/jail.js
	node dist/bench/shared-fs.js
	node dist/bench/shim-start.js
	node dist/bench/ctr-run.js
	node dist/bench/pods.js
	node dist/bench/soak.js

## docs: regenerate docs/cli.md from the command table
docs: build
	node --input-type=module -e "import('./dist/src/host/cli/cli-markdown.js').then((m) => process.stdout.write(m.cliMarkdown()))" > docs/cli.md

clean:
	rm -rf dist src/shared/protocol/gen
