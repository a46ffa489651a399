# forge: see README.md. `make test` installs what the tests need and runs them
# all (integration tests need root); `make run` builds the sample image.

GO      ?= go
PREFIX  ?= /usr/local
UNITDIR ?= /etc/systemd/system
# Go's standard install location, for shells whose PATH lacks it.
export PATH := $(PATH):/usr/local/go/bin

FUZZTIME ?= 10s

.PHONY: all build test unit integration fuzz bench install run clean

all: build

build:
	$(GO) build -o bin/forge ./cmd/forge
	$(GO) build -o bin/loopd ./cmd/loopd

test: build
	scripts/install-deps test
	$(GO) vet ./...
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) test -count=1 -timeout 30m ./...
	$(MAKE) fuzz

# Unit tests only: no root needed.
unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /integration)

integration: build
	scripts/install-deps test
	$(GO) test -count=1 -timeout 30m -v ./integration/...

# Each fuzz target briefly, from its seeds (longer: make fuzz FUZZTIME=10m).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./cas/node/
	$(GO) test -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./loopd/
	$(GO) test -run '^$$' -fuzz '^FuzzRead$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./loopd/ptable/

bench: build
	scripts/install-deps bench
	bench/run

install: build
	install -D -m 0755 bin/forge $(DESTDIR)$(PREFIX)/bin/forge
	install -D -m 0755 bin/loopd $(DESTDIR)$(PREFIX)/bin/loopd
	for unit in dist/*.service dist/*.socket; do \
		[ -e "$$unit" ] || continue; \
		sed 's|/usr/local/bin/|$(PREFIX)/bin/|g' "$$unit" > "$$unit.tmp" && \
		install -D -m 0644 "$$unit.tmp" "$(DESTDIR)$(UNITDIR)/$$(basename $$unit)" && rm -f "$$unit.tmp"; \
	done

run: build
	@echo "make run: building the sample image needs 'forge build' (the builder issue); for now this builds bin/forge only."

clean:
	rm -rf bin
