# shellcheck shell=bash
# bench/areas/build.sh: area "build" of bench/run (issue 9, rows 7 and 2).
#
# Builds the sample image (samples/debian-bookworm-format1.json) with `forge build`
# on a new store: once cold, which downloads Debian from the mirror, then
# fully cached, then with its last stage (the hostname) changed, and times
# each. The builds that differ in the hostname are then the "10 builds
# differing in one small stage" whose store is compared with one build's,
# and with an osbuild-style store, which holds every stage's tree as a full
# copy. Writes the "build" section of RESULTS.md.

# DESIGN §7: 10 builds differing in one small stage: store ≤ 1.1× one build.
BUILD_TARGET_STORE=1.10
# DESIGN §7: two disk images differing in one file: ≥ 90 % of chunks shared.
# A hostname variant's image differs from the earlier ones in /etc/hostname.
BUILD_TARGET_SHARED=90
# How many builds differ in one small stage for the store's size (issue 9,
# row 2); more when BENCH_RUNS hostname builds are more than BUILD_COUNT - 1.
BUILD_COUNT=10

# The timed command, as RESULTS.md shows it.
BUILD_CMD='forge build --store S --libdir L --output-directory OUT --monitor-fd 3 MANIFEST'

# BUILD_MONITOR opens file descriptor 3 on a file (the first argument) and
# execs the command that follows, so that forge build's --monitor-fd 3
# events land in that file through timeit, which passes on only 0, 1 and 2.
# shellcheck disable=SC2016 # expanded by the inner bash
BUILD_MONITOR=(bash -c 'exec 3>"$1" || exit 125; shift; exec "$@"' build_monitor)

# What the area holds while it runs, for build_cleanup (also run by the
# EXIT trap when the area dies half-way): its scratch directory, whose
# stores' daemons must go. BUILD_W holds the raw figures, BUILD_STORE is
# the store of the builds.
BUILD_SCRATCH=""
BUILD_W=""
BUILD_STORE=""

area_build() {
	local section=$BENCH_WORK/build.md
	local runs=$BENCH_RUNS
	{
		echo "## Whole builds of the sample image, and the store after 10 of them"
		echo
		echo "Issue 9, rows 7 (whole builds: cold, fully cached, one late stage changed) and 2 (store size for 10 builds differing in one small stage): \`bench/run build\`, 1 cold build, $runs runs of the others."
		echo
		machine_description "$BENCH_DIR"
		echo
		build_method
	} >"$section"

	# Whatever happens from here on, the daemons go: the area's cleanup runs
	# before bench/run's own EXIT trap, which it keeps.
	local saved_trap prev_trap=()
	saved_trap=$(trap -p EXIT)
	eval "prev_trap=($saved_trap)" # trap -- 'COMMAND' EXIT
	# shellcheck disable=SC2064 # bench/run's trap command is expanded now, on purpose
	trap "build_cleanup; ${prev_trap[2]:-}" EXIT

	# The store, the images copied out, and the builds' scratch space.
	need_space "$BENCH_DIR" $(((8 + runs) << 30))
	build_measure >>"$section"

	build_cleanup
	if [[ -n $saved_trap ]]; then
		eval "$saved_trap"
	else
		trap - EXIT
	fi
	results_update "$BENCH_RESULTS" build "$section"
}

build_method() {
	cat <<-EOF
		How: \`MANIFEST\` is \`samples/debian-bookworm-format1.json\` with this host's Debian mirror
		filled in by \`go run ./samples/gen-manifest\` (mmdebstrap of bookworm minbase, apt
		install of linux-image-amd64 and five more packages, locale, timezone, users, fstab,
		grub2, hostname; the qemu assembler writes a 3 GiB qcow2 image). \`S\` is a new
		store on the bench disk, \`L\` the libdir built from this checkout
		(\`CGO_ENABLED=0 go build ./cmd/forge-stages\`), \`OUT\` a new directory per build.
		Every build starts after \`sync; echo 3 > /proc/sys/vm/drop_caches\`. Times are
		wall-clock (monotonic); CPU is user+sys of forge build and the processes it waited
		for (the stages, the assembler) plus that of the store's daemon meanwhile (from
		its \`/proc/PID/stat\`). "Stages run" counts the \`stage.started\` events of
		\`--monitor-fd\` (the assembler counts as one), to show that a build ran what
		its row says and no more. The raw figures are kept in \`BENCH_DIR/raw/build\`.
		The cold build runs **once** per bench run: it downloads every package from the
		mirror (minutes of apt inside it, and the network's speed), so it is the one
		figure here that is not a median; the cached builds and those with one stage
		changed each run $BENCH_RUNS times, each with a hostname of its own
		(\`gen-manifest --hostname bench-variant-I\`), in the same store, after the cold one.
		For the store's size, $(build_count) builds differ in the hostname alone: the cold
		one, the $BENCH_RUNS timed ones, and (if those are fewer than $((BUILD_COUNT - 1)))
		more of the same built without the assembler. Their images are then dropped
		(\`forge store rm\` of the assembler's refs, \`forge store gc\`), and the store's
		\`pack_bytes\` (the chunks) and its directory (\`du -sb S\`: the packs and the index,
		which holds the nodes and refs; the target applies to it) are those of the stage
		trees of $(build_count) builds; dropping the hostname stages of all but the cold
		build (\`rm\`, \`gc\`) leaves those of one build. The index's size on disk depends on
		when pebble compacts what was deleted, so the two directory sizes may differ by a
		few KiB either way.
		The osbuild-style store holds each stage's tree as a full copy: one build is the sum
		of the \`logical_bytes\` of the cold build's stage refs (\`forge store ls --json\`),
		computed, not measured. Targets: DESIGN §7 (10 builds differing in one small stage:
		store ≤ ${BUILD_TARGET_STORE}× one build; two disk images differing in one file: ≥
		${BUILD_TARGET_SHARED} % of chunks shared; measured here in bytes: the share of a
		variant's image, which differs from the earlier ones in /etc/hostname, that the
		store held already, a lower bound since the growth also holds the hostname stage).
	EOF
}

# build_count prints how many builds differ in the hostname for the store's
# size: the cold one and max(BUILD_COUNT - 1, BENCH_RUNS) variants.
build_count() { echo $((1 + (BENCH_RUNS > BUILD_COUNT - 1 ? BENCH_RUNS : BUILD_COUNT - 1))); }

# build_cleanup stops the daemons of the area's stores; it runs at the end
# of the area and from the EXIT trap.
build_cleanup() {
	[[ -n $BUILD_SCRATCH ]] || return 0
	stop_forge_daemons "$BUILD_SCRATCH"
	# Whatever a killed build or a daemon that died left mounted goes too.
	umount_below "$BUILD_SCRATCH"
}

# build_fail records a failure once: a note under the tables, the list of
# what did not run, and the tail of the command's stderr on the terminal.
# Usage: build_fail WHAT [ERRFILE]
build_fail() {
	local what=$1 errfile=${2:-} last="" line
	log "build: $what"
	if [[ -s $errfile ]]; then
		tail -n 20 "$errfile" | sed 's/^/bench:     /' >&2
		last=$(grep -v '^[[:space:]]*$' "$errfile" | tail -n 1 | cut -c1-200)
	fi
	line="- $what${last:+; its last line on stderr: \`$last\`}."
	grep -qxF -- "$line" "$BUILD_W/notes" 2>/dev/null && return 0
	echo "$line" >>"$BUILD_W/notes"
	# Read into BENCH_FAILED at the end of the area: build_fail also runs
	# in command substitutions.
	echo "build: $what" >>"$BUILD_W/failed"
}

# build_one drops the caches and runs one timed forge build of MANIFEST into
# TIMES, with its events in BUILD_W/NAME.events and its stderr in
# BUILD_W/NAME.err; with OUTDIR, the output is copied there.
# Usage: build_one NAME TIMES MANIFEST [OUTDIR]
build_one() {
	local name=$1 times=$2 manifest=$3 out=${4:-}
	[[ -z $out ]] || mkdir -p "$out"
	drop_caches
	if ! timeit_store "$times" /dev/null "$BUILD_W/$name.err" "$BUILD_STORE" \
		"${BUILD_MONITOR[@]}" "$BUILD_W/$name.events" \
		"$FORGE" build --store "$BUILD_STORE" --libdir "$BENCH_LIBDIR" ${out:+--output-directory "$out"} --monitor-fd 3 "$manifest"; then
		build_fail "\`forge build\` of $(basename "$manifest") ($name) failed" "$BUILD_W/$name.err"
		return 1
	fi
}

# build_events prints a jq query's answer over the events of build NAME.
# The events are RFC 7464 text sequences: RS, JSON, LF.
# Usage: build_events NAME QUERY
build_events() { tr -d '\036' <"$BUILD_W/$1.events" | jq -s -r "$2"; }

# build_started prints how many stages (and assembler) build NAME ran.
build_started() { build_events "$1" '[.[] | select(.type == "stage.started")] | length'; }

# build_du prints "pack_bytes logical_bytes directory_bytes" of the area's
# store: the packs hold the chunks, the directory also the index (pebble),
# which holds the nodes (the trees' inodes) and the refs.
build_du() {
	local pl
	if ! "$FORGE" store du --store "$BUILD_STORE" --json >"$BUILD_W/du.json" 2>"$BUILD_W/du.err" ||
		! pl=$(jq -er '[.pack_bytes, .logical_bytes] | map(numbers) | select(length == 2) | @tsv' "$BUILD_W/du.json" | tr '\t' ' '); then
		build_fail "\`forge store du --store S --json\` failed or lacks pack_bytes or logical_bytes" "$BUILD_W/du.err"
		return 1
	fi
	echo "$pl $(du -sb "$BUILD_STORE" | cut -f1)"
}

# build_expect checks that build NAME ran WANT stages (the assembler counts)
# and records the check in BUILD_W/checks: "NAME WANT GOT".
# Usage: build_expect NAME WANT
build_expect() {
	local got
	got=$(build_started "$1" 2>/dev/null) || got="?"
	echo "$1 $2 $got" >>"$BUILD_W/checks"
	[[ $got == "$2" ]] || build_fail "build $1 ran $got stages and assemblers, not $2"
}

# build_measure runs the builds and prints the tables.
build_measure() {
	BUILD_W=$BENCH_DIR/raw/build
	BUILD_SCRATCH=$BENCH_WORK/build
	BUILD_STORE=$BUILD_SCRATCH/store
	rm -rf "$BUILD_W"
	mkdir -p "$BUILD_W" "$BUILD_SCRATCH"
	local note=""
	if [[ -z $FORGE ]]; then
		note="not run: $FORGE_MISSING"
	elif [[ -z $BENCH_LIBDIR ]]; then
		note="not run: $BENCH_LIBDIR_MISSING"
	elif ! "$BENCH_REPO/scripts/install-deps" run >"$BUILD_W/install-deps.log" 2>&1; then
		note="not run: \`scripts/install-deps run\` failed"
		build_fail "\`scripts/install-deps run\` failed (the sample's build root is the host)" "$BUILD_W/install-deps.log"
	fi
	[[ -z $note || $note != "not run: "* ]] || BENCH_FAILED+=("build: $note")
	[[ -n $note ]] || build_runs || note="failed: see the notes below"
	build_tables "$note"
	echo
	echo "Notes:"
	echo
	echo "- Load average at the end of the area: $(cut -d' ' -f1-3 /proc/loadavg) (at its start: see above)." >>"$BUILD_W/notes"
	cat "$BUILD_W/notes"
	[[ ! -s $BUILD_W/failed ]] || mapfile -t -O "${#BENCH_FAILED[@]}" BENCH_FAILED <"$BUILD_W/failed"
}

# build_runs makes the manifests and runs every build of the area; it
# returns non-zero when the cold build fails (nothing else can run then).
build_runs() {
	local m=$BUILD_SCRATCH/manifests i n
	mkdir -p "$m"
	n=$(($(build_count) - 1))
	if ! sample_manifest "$m/sample.json" 2>"$BUILD_W/manifest.err"; then
		build_fail "\`gen-manifest\` of the sample failed" "$BUILD_W/manifest.err"
		return 1
	fi
	for ((i = 1; i <= n; i++)); do
		if ! sample_manifest "$m/variant-$i.json" --hostname "bench-variant-$i" 2>"$BUILD_W/manifest.err"; then
			build_fail "\`gen-manifest --hostname\` failed" "$BUILD_W/manifest.err"
			return 1
		fi
		# Beyond the timed builds: the same without the assembler.
		((i <= BENCH_RUNS)) || jq 'del(.pipeline.assembler)' "$m/variant-$i.json" >"$m/tree-$i.json"
	done

	log "build: the cold build of the sample (once: it downloads Debian)"
	build_one cold "$BUILD_W/cold.t" "$m/sample.json" "$BUILD_SCRATCH/out-cold" || return 1
	# The IDs of the sample's stages and assembler, from forge inspect
	# (with --store: without one it would look at the default store).
	if ! "$FORGE" inspect --store "$BUILD_STORE" "$m/sample.json" >"$BUILD_W/inspect-sample.json" 2>"$BUILD_W/inspect.err"; then
		build_fail "\`forge inspect\` of the sample failed" "$BUILD_W/inspect.err"
		return 1
	fi
	local stages
	stages=$(jq '.pipeline.stages | length' "$BUILD_W/inspect-sample.json")
	build_expect cold $((stages + 1))
	"$FORGE" store ls --store "$BUILD_STORE" --json >"$BUILD_W/ls-cold.json" 2>"$BUILD_W/ls.err" || {
		build_fail "\`forge store ls --store S --json\` failed" "$BUILD_W/ls.err"
		return 1
	}
	build_du >"$BUILD_W/du-cold" || return 1
	build_check_output cold "$BUILD_SCRATCH/out-cold"

	for ((i = 1; i <= BENCH_RUNS; i++)); do
		log "build: fully cached, run $i/$BENCH_RUNS"
		build_one "cached-$i" "$BUILD_W/cached.t" "$m/sample.json" "$BUILD_SCRATCH/out-cached-$i" || continue
		build_expect "cached-$i" 0
		build_check_output "cached-$i" "$BUILD_SCRATCH/out-cached-$i"
	done
	local before after
	for ((i = 1; i <= BENCH_RUNS; i++)); do
		log "build: one late stage changed (hostname), run $i/$BENCH_RUNS"
		before=$(build_du) || return 1
		build_one "variant-$i" "$BUILD_W/variant.t" "$m/variant-$i.json" "$BUILD_SCRATCH/out-variant-$i" || continue
		after=$(build_du) || return 1
		echo "${after%% *} ${before%% *}" | awk '{ print $1 - $2 }' >>"$BUILD_W/variant.growth"
		build_expect "variant-$i" 2
		build_check_output "variant-$i" "$BUILD_SCRATCH/out-variant-$i"
	done
	build_du >"$BUILD_W/du-images" || return 1
	for ((i = BENCH_RUNS + 1; i <= n; i++)); do
		log "build: one late stage changed, without the assembler: $i of $n (for the store's size)"
		build_one "tree-$i" "$BUILD_W/tree.t" "$m/tree-$i.json" || continue
		build_expect "tree-$i" 1
	done
	build_store_sizes "$m" "$n"
}

# build_check_output checks that build NAME left a non-empty image in OUTDIR
# and records its size and SHA-256 prefix (of the cached builds, the same as
# the cold build's) in BUILD_W/outputs: "NAME BYTES SHA".
# Usage: build_check_output NAME OUTDIR
build_check_output() {
	local name=$1 dir=$2 img
	img=$(find "$dir" -maxdepth 1 -type f -name '*.qcow2' | head -n 1)
	if [[ -z $img || ! -s $img ]]; then
		build_fail "build $name left no image in its output directory"
		return 0
	fi
	echo "$name $(stat -c %s "$img") $(sha256sum "$img" | cut -c1-16)" >>"$BUILD_W/outputs"
}

# build_store_sizes drops the images, then the variants' hostname stages,
# measuring the store after each, for the store's size of many builds and
# of one. Usage: build_store_sizes MANIFEST_DIR VARIANTS
build_store_sizes() {
	local m=$1 n=$2 i f refs=() hosts=()
	for f in "$m/sample.json" "$m"/variant-*.json; do
		"$FORGE" inspect --store "$BUILD_STORE" "$f" >"$BUILD_W/inspect.json" 2>"$BUILD_W/inspect.err" || {
			build_fail "\`forge inspect\` of $(basename "$f") failed" "$BUILD_W/inspect.err"
			return 1
		}
		[[ $f == "$m/sample.json" ]] || hosts+=("$(jq -r '.pipeline.stages[-1].id' "$BUILD_W/inspect.json")")
		# An image exists for the cold build and the timed variants only.
		i=${f##*variant-}
		i=${i%.json}
		[[ $f == "$m/sample.json" ]] || ((i <= BENCH_RUNS)) || continue
		refs+=("$(jq -r '.pipeline.assembler.id' "$BUILD_W/inspect.json")")
	done
	if ! "$FORGE" store rm --store "$BUILD_STORE" "${refs[@]}" >"$BUILD_W/rm.out" 2>"$BUILD_W/rm.err" ||
		! "$FORGE" store gc --store "$BUILD_STORE" >"$BUILD_W/gc.out" 2>"$BUILD_W/gc.err"; then
		build_fail "dropping the images (\`forge store rm\`, \`forge store gc\`) failed" "$BUILD_W/rm.err"
		return 1
	fi
	build_du >"$BUILD_W/du-trees" || return 1
	if ! "$FORGE" store rm --store "$BUILD_STORE" "${hosts[@]}" >"$BUILD_W/rm.out" 2>"$BUILD_W/rm.err" ||
		! "$FORGE" store gc --store "$BUILD_STORE" >"$BUILD_W/gc.out" 2>"$BUILD_W/gc.err"; then
		build_fail "dropping the variants' hostname stages (\`forge store rm\`, \`forge store gc\`) failed" "$BUILD_W/rm.err"
		return 1
	fi
	build_du >"$BUILD_W/du-one" || return 1
	# What the store must hold now: the cold build's stage refs, no more.
	"$FORGE" store ls --store "$BUILD_STORE" --json >"$BUILD_W/ls-one.json" 2>"$BUILD_W/ls.err" ||
		build_fail "\`forge store ls --store S --json\` failed" "$BUILD_W/ls.err"
	echo "${#hosts[@]}" >"$BUILD_W/variants"
}

# build_tables prints the area's tables from the raw figures in BUILD_W.
# Usage: build_tables NOTE
build_tables() {
	local note=${1:-} why=${1:-failed: see the notes below}
	local base="" runs=$BENCH_RUNS
	[[ ! -s $BUILD_W/cold.t ]] || base=$(field "$BUILD_W/cold.t" 1 | median)
	echo
	echo "### Whole builds (issue 9, row 7)"
	echo
	echo "| row | command | runs | median | spread (min–max) | CPU | × cold | stages run | store growth (pack_bytes, median) |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	build_row "cold: a new store (baseline; downloads Debian)" "\`$BUILD_CMD\`" cold.t "$base" cold "$why" ""
	build_row "fully cached: the same manifest again" "the same, on the same S" cached.t "$base" cached "$why" ""
	build_row "one late stage changed: the hostname" "the same, MANIFEST from \`gen-manifest --hostname bench-variant-I\`" variant.t "$base" variant "$why" variant.growth
	if [[ -s $BUILD_W/tree.t ]]; then
		build_row "the same without the assembler (for the store's size only)" "the same, MANIFEST without its assembler, no \`--output-directory\`" tree.t "$base" tree "$why" ""
	fi

	echo
	echo "### Store size after $(build_count) builds differing in one small stage (issue 9, row 2)"
	echo
	echo "| size | from | bytes | × forge, 1 build | × osbuild-style, same builds | target | result |"
	echo "| --- | --- | --- | --- | --- | --- | --- |"
	if [[ ! -s $BUILD_W/du-one || ! -s $BUILD_W/du-trees || ! -s $BUILD_W/ls-cold.json ]]; then
		echo "| forge store, stage trees of $(build_count) builds | \`forge store du --store S --json\` | ${note:-failed: see the notes below} | | | ≤ ${BUILD_TARGET_STORE}× one build (DESIGN §7) | not run |"
	else
		local one trees count osb1 osb img one_dir trees_dir
		count=$((1 + $(<"$BUILD_W/variants")))
		read -r one _ one_dir <"$BUILD_W/du-one"
		read -r trees _ trees_dir <"$BUILD_W/du-trees"
		# The cold build's stage refs: every ref it left but its image's.
		osb1=$(jq --slurpfile i "$BUILD_W/inspect-sample.json" \
			'[$i[0].pipeline.stages[].id] as $ids | [.[] | select(.name as $n | $ids | index($n)) | .logical_bytes] | add' \
			"$BUILD_W/ls-cold.json")
		img=$(jq --slurpfile i "$BUILD_W/inspect-sample.json" \
			'[.[] | select(.name == $i[0].pipeline.assembler.id) | .logical_bytes] | add // 0' "$BUILD_W/ls-cold.json")
		osb=$((osb1 * count))
		local r
		r=$(ratio "$trees_dir" "$one_dir")
		echo "| forge store, stage trees of 1 build: packs | \`forge store du --store S --json\` pack_bytes, after \`forge store rm\` and \`gc\` of the images and of the variants' hostname stages | $(fmt_bytes "$one") | | $(ratio_fine "$one" "$osb1")× | | |"
		echo "| forge store, stage trees of 1 build: the store (baseline) | \`du -sb S\` (packs, and the index, which holds the nodes and refs), then | $(fmt_bytes "$one_dir") | 1.00× | $(ratio_fine "$one_dir" "$osb1")× | | |"
		echo "| forge store, stage trees of $count builds: packs | \`forge store du --store S --json\` pack_bytes, after \`rm\` and \`gc\` of the images only | $(fmt_bytes "$trees") ($(build_delta "$trees" "$one") against 1 build) | | $(ratio_fine "$trees" "$osb")× | | |"
		echo "| forge store, stage trees of $count builds: the store | \`du -sb S\`, then | $(fmt_bytes "$trees_dir") ($(build_delta "$trees_dir" "$one_dir") against 1 build) | ${r}× | $(ratio_fine "$trees_dir" "$osb")× | ≤ ${BUILD_TARGET_STORE}× one build (DESIGN §7) | $(verdict "$r" le "$BUILD_TARGET_STORE") |"
		echo "| osbuild-style store, 1 build ($(jq '.pipeline.stages | length' "$BUILD_W/inspect-sample.json") stage trees, each a full copy) | sum of \`logical_bytes\` of the cold build's stage refs in \`forge store ls --json\` (computed) | $(fmt_bytes "$osb1") | $(ratio "$osb1" "$one_dir")× | 1.00× | | |"
		echo "| osbuild-style store, $count builds (baseline) | $count × the row above (computed) | $(fmt_bytes "$osb") | $(ratio "$osb" "$one_dir")× | 1.00× | | |"
		echo "| for comparison: the cold build's image | \`logical_bytes\` of its assembler's ref | $(fmt_bytes "$img") | | | | |"
		if [[ -s $BUILD_W/variant.growth && $img -gt 0 ]]; then
			local shared
			shared=$(awk -v g="$(median <"$BUILD_W/variant.growth")" -v i="$img" 'BEGIN { printf "%.1f", 100 * (1 - g / i) }')
			echo "| a hostname variant's image: share already in the store | 1 − store growth (row 7, median) ÷ the image's \`logical_bytes\` | ${shared} % | | | ≥ ${BUILD_TARGET_SHARED} % (DESIGN §7: two disk images differing in one file) | $(verdict "$shared" ge "$BUILD_TARGET_SHARED") |"
		fi
		if [[ -s $BUILD_W/du-cold && -s $BUILD_W/du-images ]]; then
			echo "| for comparison: forge store after the cold build, with its image | \`forge store du --store S --json\` pack_bytes | $(fmt_bytes "$(cut -d' ' -f1 "$BUILD_W/du-cold")") | | | | |"
			echo "| for comparison: forge store after the cold and the $runs timed builds, with their $((runs + 1)) images | the same | $(fmt_bytes "$(cut -d' ' -f1 "$BUILD_W/du-images")") | | | | |"
		fi
	fi

	echo
	build_checks "$note"
}

# build_row prints one row of the builds' table.
# COMMAND is Markdown (a command in backquotes, or words).
# Usage: build_row LABEL COMMAND TIMES BASE KIND WHY GROWTH
build_row() {
	local label=$1 cmd=$2 times=$BUILD_W/$3 base=$4 kind=$5 why=$6 growth=${7:-}
	if [[ ! -s $times ]]; then
		echo "| $label | $cmd | 0 | $why | | | | | |"
		return
	fi
	local n started g="—"
	n=$(count_lines "$times")
	started=$(awk -v k="$kind" '$1 ~ "^" k "(-|$)" { print $3 }' "$BUILD_W/checks" 2>/dev/null | sort -u | paste -sd/ -) || true
	[[ -z $growth || ! -s $BUILD_W/$growth ]] || g=$(fmt_bytes "$(median <"$BUILD_W/$growth")")
	echo "| $label | $cmd | $n | $(time_cells "$times") | $(ratio_fine "$(field "$times" 1 | median)" "$base")× | ${started:-?} | $g |"
}

# build_delta prints A - B in bytes with its sign.
build_delta() {
	local d=$(($1 - $2))
	if ((d < 0)); then fmt_bytes "$d"; else echo "+$(fmt_bytes "$d")"; fi
}

# build_checks prints the table of what the builds must have done.
build_checks() {
	local note=${1:-not run}
	echo "Checks:"
	echo
	echo "| check | expected | got | result |"
	echo "| --- | --- | --- | --- |"
	if [[ ! -s $BUILD_W/checks ]]; then
		echo "| stages and assemblers each build ran (\`stage.started\` events) | | $note | not run |"
		return
	fi
	local bad
	bad=$(awk '$2 != $3' "$BUILD_W/checks" | wc -l)
	echo "| stages and assemblers each build ran (\`stage.started\` events): all for the cold build, none for the cached ones, 2 (hostname, assembler) or 1 (hostname) for the others | as its row says | $(($(count_lines "$BUILD_W/checks") - bad)) of $(count_lines "$BUILD_W/checks") builds as expected | $( ((bad == 0)) && echo PASS || echo FAIL) |"
	if [[ -s $BUILD_W/outputs ]]; then
		local cold cached distinct
		cold=$(awk '$1 == "cold" { print $3 }' "$BUILD_W/outputs")
		cached=$(awk '$1 ~ /^cached-/ { print $3 }' "$BUILD_W/outputs" | sort -u)
		distinct=$(awk '$1 ~ /^cached-/' "$BUILD_W/outputs" | wc -l)
		local result=PASS
		[[ -n $cold && $cached == "$cold" ]] || result=FAIL
		((distinct > 0)) || result="not run"
		[[ $result != FAIL ]] || BENCH_FAILED+=("build: a cached build's image differs from the cold build's")
		echo "| the cached builds' image is the cold build's (SHA-256 prefix of the .qcow2 in OUT) | ${cold:-n/a} | $(echo "$cached" | paste -sd' ' -) ($distinct cached builds) | $result |"
	fi
	if [[ -s $BUILD_W/ls-one.json ]]; then
		local want got result=PASS
		want=$(jq -r '.pipeline.stages[].id' "$BUILD_W/inspect-sample.json" | sort | paste -sd' ' -)
		got=$(jq -r '.[].name' "$BUILD_W/ls-one.json" | sort | paste -sd' ' -)
		[[ $want == "$got" ]] || result=FAIL
		[[ $result != FAIL ]] || BENCH_FAILED+=("build: after dropping the images and variants, the store holds other refs than the cold build's stages")
		echo "| after dropping the images and the variants' hostname stages, the store's refs are the cold build's stages | $(wc -w <<<"$want") refs | $(wc -w <<<"$got") refs$([[ $result == PASS ]] || echo ", not the same") | $result |"
	fi
}
