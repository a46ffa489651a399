# forge: see README.md. `make test` installs what the tests need and runs them
# all (integration tests need root); `make run` builds the sample image.

GO      ?= go
PREFIX  ?= /usr/local
# forge looks for its stages in $(LIBEXECDIR)/forge (see builder.FindLibdir).
LIBEXECDIR ?= /usr/libexec
UNITDIR ?= /etc/systemd/system
# make run: the store, where the image goes, and the sample it builds.
STORE   ?= /var/cache/forge
OUTPUT  ?= output
SAMPLE  ?= samples/debian-bookworm.json
MIRROR  ?=
# Go's standard install location, for shells whose PATH lacks it.
export PATH := $(PATH):/usr/local/go/bin

# Executions per fuzz target, not a duration: with go1.26 a duration-based
# -fuzztime can fail with "context deadline exceeded" when it ends while a
# worker is busy (golang/go#75804, fixed in go1.27), as it did in CI on a
# loaded machine. 300000 is 5-15 s per target here.
FUZZTIME ?= 300000x

.PHONY: all build test unit integration fuzz bench install run sample clean

all: build

build:
	$(GO) build -o bin/forge ./cmd/forge
	$(GO) build -o bin/loopd ./cmd/loopd
	@# The libdir: one static binary (stages run in any build root),
	@# hard-linked as osbuild-run, runners/NAME, stages/NAME and
	@# assemblers/NAME, with each stage's NAME.meta.json beside it.
	rm -rf bin/libexec/forge
	CGO_ENABLED=0 $(GO) build -o bin/libexec/forge/forge-stages ./cmd/forge-stages
	bin/libexec/forge/forge-stages link bin/libexec/forge

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

# Each fuzz target briefly, from its seeds (longer: make fuzz FUZZTIME=10000000x).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./cas/node/
	$(GO) test -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./loopd/
	$(GO) test -run '^$$' -fuzz '^FuzzRead$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./loopd/ptable/
	$(GO) test -run '^$$' -fuzz '^FuzzDumps$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./builder/pyjson/
	$(GO) test -run '^$$' -fuzz '^FuzzParseV2$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./builder/manifest/
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./internal/jsonschema/
	$(GO) test -run '^$$' -fuzz '^FuzzRegex$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./internal/jsonschema/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./builder/manifest/
	$(GO) test -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./internal/treestream/

bench: build
	scripts/install-deps bench
	bench/run

install: build
	install -D -m 0755 bin/forge $(DESTDIR)$(PREFIX)/bin/forge
	install -D -m 0755 bin/loopd $(DESTDIR)$(PREFIX)/bin/loopd
	rm -rf $(DESTDIR)$(LIBEXECDIR)/forge
	install -D -m 0755 bin/libexec/forge/forge-stages $(DESTDIR)$(LIBEXECDIR)/forge/forge-stages
	$(DESTDIR)$(LIBEXECDIR)/forge/forge-stages link $(DESTDIR)$(LIBEXECDIR)/forge
	for unit in dist/*.service dist/*.socket; do \
		[ -e "$$unit" ] || continue; \
		sed 's|/usr/local/bin/|$(PREFIX)/bin/|g' "$$unit" > "$$unit.tmp" && \
		install -D -m 0644 "$$unit.tmp" "$(DESTDIR)$(UNITDIR)/$$(basename $$unit)" && rm -f "$$unit.tmp"; \
	done

# Builds the sample Debian image into $(OUTPUT)/ with the store $(STORE);
# the mirror is the host's apt mirror unless MIRROR=URL is given.
run: build
	scripts/install-deps run
	@mkdir -p $(OUTPUT)
	$(GO) run ./samples/gen-manifest $(if $(MIRROR),--mirror $(MIRROR)) $(SAMPLE) > $(OUTPUT)/manifest.json
	bin/forge build --store $(STORE) --output-directory $(OUTPUT) $(OUTPUT)/manifest.json
	@img=$$(ls -t $(OUTPUT)/*.qcow2 $(OUTPUT)/*/*.qcow2 $(OUTPUT)/*.raw 2>/dev/null | head -n1); \
	echo; echo "The image is $$img. Boot it (log in as forge, password forge; Ctrl-a x quits):"; \
	echo "  qemu-system-x86_64 -m 1024 -nographic -snapshot -drive file=$$img,if=virtio$$(case $$img in *.qcow2) echo ,format=qcow2;; *) echo ,format=raw;; esac)"; \
	echo "(-snapshot keeps the image as built; add -enable-kvm where KVM works: much faster than emulation.)"

# Pins the sample's packages anew (samples/debian-bookworm.in.json →
# samples/debian-bookworm.json): resolved against the host's mirror (or
# MIRROR=URL), downloaded from Debian's canonical archive URL, which the
# image's apt sources name too. Run it when the mirror no longer has the
# pinned .debs (after a point release), and commit the result.
ARCHIVE ?= http://deb.debian.org/debian
sample:
	$(GO) run ./samples/gen-manifest --resolve $(if $(MIRROR),--mirror $(MIRROR)) --archive-url $(ARCHIVE) \
		samples/debian-bookworm.in.json > samples/debian-bookworm.json.new
	mv samples/debian-bookworm.json.new samples/debian-bookworm.json

clean:
	rm -rf bin $(OUTPUT)
