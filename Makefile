GO ?= go
BIN := bin/seedlm
DEMO_MODEL := testdata/models/stories260K-layer0.safetensors
DEMO_DIR := out/demo
# make bench BENCH_FLAGS=-quick: a seconds-long smoke run written to out/bench/.
BENCH_FLAGS ?=
FUZZTIME ?= 30s

.PHONY: build test demo bench fuzz lint clean interop

# The VCS revision, stamped for seedlm version when Go's own -buildvcs
# stamping is off.
VCS_LDFLAGS = -X main.vcsRevision=$(shell git rev-parse HEAD 2>/dev/null) \
	-X main.vcsTime=$(shell git log -1 --format=%cI 2>/dev/null) \
	-X main.vcsModified=$(shell test -z "$$(git status --porcelain 2>/dev/null)" && echo false || echo true)

build:
	$(GO) build -ldflags "$(VCS_LDFLAGS)" -o $(BIN) ./cmd/seedlm

test:
	$(GO) vet ./...
	$(GO) test ./...
	# The pure-Go twins of the encoder's assembly kernels (short: small K).
	$(GO) test -tags purego -short ./internal/encoder/...

# compress → inspect → verify → decompress a cut-down of a real model.
demo: build
	@rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	@echo '$$ seedlm compress $(DEMO_MODEL) -o $(DEMO_DIR)/demo.seedlm'
	@$(BIN) compress $(DEMO_MODEL) -o $(DEMO_DIR)/demo.seedlm
	@echo
	@echo '$$ seedlm inspect $(DEMO_DIR)/demo.seedlm'
	@$(BIN) inspect $(DEMO_DIR)/demo.seedlm
	@echo
	@echo '$$ seedlm verify $(DEMO_DIR)/demo.seedlm'
	@$(BIN) verify $(DEMO_DIR)/demo.seedlm
	@echo
	@echo '$$ seedlm decompress $(DEMO_DIR)/demo.seedlm -o $(DEMO_DIR)/demo.safetensors'
	@$(BIN) decompress $(DEMO_DIR)/demo.seedlm -o $(DEMO_DIR)/demo.safetensors

# Compress/decompress the real models in ../shared/data and a generated
# 4096×4096 matrix; writes docs/BENCHMARKS.md.
bench: build
	scripts/bench.sh $(BENCH_FLAGS)

# Loads decompressed model folders with PyTorch and an independent
# safetensors reader (scripts/interop.py); needs python3-torch, so it is not
# part of make test.
interop: build
	scripts/interop.sh

# Runs every Fuzz target in the tree for FUZZTIME each.
fuzz:
	@set -e; found=0; \
	for f in $$(grep -rl --include='*_test.go' '^func Fuzz' cmd internal 2>/dev/null); do \
	  pkg=./$$(dirname $$f); \
	  for t in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -d' ' -f2); do \
	    found=1; echo "== $$pkg $$t ($(FUZZTIME))"; \
	    $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; \
	done; \
	if [ $$found = 0 ]; then echo "fuzz: no Fuzz targets yet"; fi

lint:
	@out=$$(gofmt -l cmd internal scripts); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin out
