# cairn: build, test and run the server.
#
#   make build   bin/cairn (static, CGO_ENABLED=0)
#   make test    the whole test suite (scripts/test)
#   make run     build, then start one member on 127.0.0.1:2379 (data in ./default.cairn)
#   make clean   remove bin/

GO ?= go
BIN := bin/cairn

.PHONY: all build test run clean

all: build

# Always rebuilt: go's build cache makes an up-to-date build cheap, and make
# cannot see every Go source the binary depends on.
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/cairn

test:
	./scripts/test

run: build
	./$(BIN) $(ARGS)

clean:
	rm -rf bin
