# cairn: build, test and run.
#
#   make build              bin/cairn, bin/cairnctl, bin/cairn-warden, bin/cairn-bench
#                           (static, CGO_ENABLED=0)
#   make test               the whole test suite (scripts/test)
#   make run                build, then start one member on 127.0.0.1:2379 (data in ./default.cairn)
#   make bench              cairn against etcd (and the ceiling server): scripts/bench-vs-etcd
#   make robustness-short   every fault scenario once (also part of make test)
#   make robustness         randomized, several runs per scenario; writes docs/robustness.md
#   make clean              remove bin/

GO ?= go
BINS := cairn cairnctl cairn-warden cairn-bench

.PHONY: all build test run bench robustness-short robustness clean

all: build

# Always rebuilt: go's build cache makes an up-to-date build cheap, and make
# cannot see every Go source the binaries depend on.
build:
	@for b in $(BINS); do \
		if ls cmd/$$b/*.go >/dev/null 2>&1; then \
			echo "CGO_ENABLED=0 $(GO) build -o bin/$$b ./cmd/$$b"; \
			CGO_ENABLED=0 $(GO) build -o bin/$$b ./cmd/$$b || exit 1; \
		fi; \
	done

test:
	./scripts/test

run: build
	./bin/cairn $(ARGS)

bench: build
	./scripts/bench-vs-etcd $(ARGS)

robustness-short:
	./scripts/robustness --short

robustness:
	./scripts/robustness $(ARGS)

clean:
	rm -rf bin
