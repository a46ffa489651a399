# shellcheck shell=bash
# bench/areas/concurrent.sh: area "concurrent" of bench/run (issue 9,
# row 8).
#
# Runs 1, 2, 4 and 8 builds of different small manifests at once on one
# store, and compares the total time and what the store grew by with N
# times those of one build, measured in the same run. The manifests all
# start from the sample's first stage (org.osbuild.mmdebstrap), stored
# once before the runs, so that no build downloads Debian. Writes the
# "concurrent" section of RESULTS.md.

# How many builds run at once in each row.
CONCURRENT_COUNTS=(1 2 4 8)

# The timed command, as RESULTS.md shows it.
CONCURRENT_CMD='forge build --store S --libdir L MANIFEST_i &, for i = 1…N; wait'

# CONCURRENT_LAUNCH starts one forge build per manifest, all at once, and
# waits for them all: its arguments are a directory for the builds' output
# and status, forge, the store, the libdir, then the manifests. It exits 1
# when a build failed, and writes how many did to DIR/failed.
# shellcheck disable=SC2016 # expanded by the inner bash
CONCURRENT_LAUNCH=(bash -c '
	dir=$1 forge=$2 store=$3 lib=$4
	shift 4
	i=0 pids=()
	for m; do
		i=$((i + 1))
		"$forge" build --store "$store" --libdir "$lib" "$m" >"$dir/$i.out" 2>"$dir/$i.err" &
		pids+=($!)
	done
	failed=0
	for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
	echo "$failed" >"$dir/failed"
	exit $((failed > 0))' concurrent_launch)

# What the area holds while it runs, for concurrent_cleanup (also run by
# the EXIT trap when the area dies half-way).
CONC_SCRATCH=""
CONC_W=""
CONC_STORE=""

area_concurrent() {
	local section=$BENCH_WORK/concurrent.md
	{
		echo "## Concurrent builds on one store"
		echo
		echo "Issue 9, row 8: \`bench/run concurrent\`, $BENCH_RUNS runs per row."
		echo
		machine_description "$BENCH_DIR"
		echo
		concurrent_method
	} >"$section"

	local saved_trap prev_trap=()
	saved_trap=$(trap -p EXIT)
	eval "prev_trap=($saved_trap)" # trap -- 'COMMAND' EXIT
	# shellcheck disable=SC2064 # bench/run's trap command is expanded now, on purpose
	trap "concurrent_cleanup; ${prev_trap[2]:-}" EXIT

	need_space "$BENCH_DIR" $((4 << 30))
	concurrent_measure >>"$section"

	concurrent_cleanup
	if [[ -n $saved_trap ]]; then
		eval "$saved_trap"
	else
		trap - EXIT
	fi
	results_update "$BENCH_RESULTS" concurrent "$section"
}

concurrent_method() {
	local counts=${CONCURRENT_COUNTS[*]}
	cat <<-EOF
		How: one new store \`S\` on the bench disk holds the tree of the sample's first
		stage (\`org.osbuild.mmdebstrap\` of bookworm minbase, with this host's mirror),
		imported once before the runs under its stage ID (\`forge store import --store S
		--ref ID TREE\`, not timed; the tree was built once by forge and cached under
		\`BENCH_DIR/trees\`), so that every build finds it stored and none downloads
		Debian. Each build's manifest is that stage, then \`org.osbuild.hostname\` with a
		hostname of its own (\`bench-rR-nN-bI\`), then the \`org.osbuild.tar\` assembler
		(an uncompressed tar of the whole tree, about as large as the tree): so every
		build is different, runs a stage on a copy-on-write mount of the base tree,
		commits it, tars the result from a read-only mount and stores the tar; without
		\`--output-directory\`, the tar stays in the store. \`L\` is the libdir built from
		this checkout. One untimed build warms the store up first. Each run times $counts
		builds at once, in this order, each set started by one shell and timed until the
		last build exits. The baseline of N builds at once is N × the median of the
		1-build row, for the time and for what the store grows by (\`pack_bytes\` of
		\`forge store du --json\` after minus before). CPU is user+sys of the builds
		plus that of the store's daemon meanwhile. After each set, no mount may be left:
		neither in \`forge store mounts\` nor below the area's scratch directory in the
		host's mount table. Caches are warm (the builds read the base tree, which the
		import and the first builds left in the page cache). The raw figures are kept
		in \`BENCH_DIR/raw/concurrent\`.
		Target: DESIGN §7 (8 concurrent builds on one store: all succeed, the mount count
		back to what it was).
	EOF
}

# concurrent_cleanup stops the daemons of the area's store; it runs at the
# end of the area and from the EXIT trap.
concurrent_cleanup() {
	[[ -n $CONC_SCRATCH ]] || return 0
	stop_forge_daemons "$CONC_SCRATCH"
	umount_below "$CONC_SCRATCH"
}

# concurrent_fail records a failure once (see build_fail).
concurrent_fail() {
	local what=$1 errfile=${2:-} last="" line
	log "concurrent: $what"
	if [[ -s $errfile ]]; then
		tail -n 20 "$errfile" | sed 's/^/bench:     /' >&2
		last=$(grep -v '^[[:space:]]*$' "$errfile" | tail -n 1 | cut -c1-200)
	fi
	line="- $what${last:+; its last line on stderr: \`$last\`}."
	grep -qxF -- "$line" "$CONC_W/notes" 2>/dev/null && return 0
	echo "$line" >>"$CONC_W/notes"
	echo "concurrent: $what" >>"$CONC_W/failed"
}

# concurrent_pack prints the store's pack_bytes.
concurrent_pack() {
	if ! "$FORGE" store du --store "$CONC_STORE" --json 2>"$CONC_W/du.err" | jq -er '.pack_bytes | numbers'; then
		concurrent_fail "\`forge store du --store S --json\` failed or lacks pack_bytes" "$CONC_W/du.err"
		return 1
	fi
}

# concurrent_mounts prints "FORGE HOST": the store's mounts as forge lists
# them, and the host's mounts below the area's scratch directory.
concurrent_mounts() {
	local f h
	f=$("$FORGE" store mounts --store "$CONC_STORE" --json 2>/dev/null | jq 'length') || f="?"
	h=$(findmnt -rn -o TARGET | awk -v d="$CONC_SCRATCH/" 'index($0, d) == 1' | wc -l)
	echo "$f $h"
}

# concurrent_manifest writes the manifest of one build: the base manifest's
# stage, the hostname NAME, the tar assembler. One stage per build: each
# stage starts a buildroot, which costs seconds (it generates its /etc),
# and the area must fit in bench/run's half hour.
# Usage: concurrent_manifest BASE_MANIFEST NAME FILE
concurrent_manifest() {
	jq --arg h "$2" '{pipeline: {
		stages: [.pipeline.stages[0],
			{name: "org.osbuild.hostname", options: {hostname: $h}}],
		assembler: {name: "org.osbuild.tar", options: {filename: "tree.tar"}}}}' "$1" >"$3"
}

concurrent_measure() {
	CONC_W=$BENCH_DIR/raw/concurrent
	CONC_SCRATCH=$BENCH_WORK/concurrent
	CONC_STORE=$CONC_SCRATCH/store
	rm -rf "$CONC_W"
	mkdir -p "$CONC_W" "$CONC_SCRATCH"
	local note=""
	if [[ -z $FORGE ]]; then
		note="not run: $FORGE_MISSING"
	elif [[ -z $BENCH_LIBDIR ]]; then
		note="not run: $BENCH_LIBDIR_MISSING"
	elif ! "$BENCH_REPO/scripts/install-deps" run >"$CONC_W/install-deps.log" 2>&1; then
		note="failed: see the notes below"
		concurrent_fail "\`scripts/install-deps run\` failed (the builds' build root is the host)" "$CONC_W/install-deps.log"
	fi
	[[ -z $note || $note != "not run: "* ]] || BENCH_FAILED+=("concurrent: $note")
	[[ -n $note ]] || concurrent_runs || note="failed: see the notes below"
	concurrent_tables "$note"
	echo
	echo "Notes:"
	echo
	echo "- Load average at the end of the area: $(cut -d' ' -f1-3 /proc/loadavg) (at its start: see above)." >>"$CONC_W/notes"
	cat "$CONC_W/notes"
	[[ ! -s $CONC_W/failed ]] || mapfile -t -O "${#BENCH_FAILED[@]}" BENCH_FAILED <"$CONC_W/failed"
}

# concurrent_runs seeds the store with the base tree and runs the sets of
# builds BENCH_RUNS times; it returns non-zero when nothing can run.
concurrent_runs() {
	local base id m=$CONC_SCRATCH/manifests
	mkdir -p "$m"
	if ! base=$(sample_base_tree 2>"$CONC_W/base.err"); then
		concurrent_fail "building the sample's base tree failed" "$CONC_W/base.err"
		return 1
	fi
	id=${base#* }
	base=${base%% *}
	echo "$base" >"$CONC_W/base-tree"
	log "concurrent: importing the base tree $(basename "$base") (not timed)"
	if ! "$FORGE" store import --store "$CONC_STORE" --ref "$id" "$base" >"$CONC_W/import.out" 2>"$CONC_W/import.err"; then
		concurrent_fail "\`forge store import\` of the base tree failed" "$CONC_W/import.err"
		return 1
	fi
	cp "$BENCH_WORK/sample-base/base.json" "$m/base.json"
	concurrent_manifest "$m/base.json" bench-warmup "$m/warmup.json"
	log "concurrent: one build to warm the store up (not timed)"
	if ! "$FORGE" build --store "$CONC_STORE" --libdir "$BENCH_LIBDIR" "$m/warmup.json" >"$CONC_W/warmup.out" 2>"$CONC_W/warmup.err"; then
		concurrent_fail "the warm-up build failed" "$CONC_W/warmup.err"
		return 1
	fi
	local r n i dir manifests before after m0 m1
	for ((r = 1; r <= BENCH_RUNS; r++)); do
		for n in "${CONCURRENT_COUNTS[@]}"; do
			log "concurrent: $n builds at once, run $r/$BENCH_RUNS"
			dir=$CONC_SCRATCH/r$r-n$n
			mkdir -p "$dir"
			manifests=()
			for ((i = 1; i <= n; i++)); do
				concurrent_manifest "$m/base.json" "bench-r$r-n$n-b$i" "$dir/m$i.json"
				manifests+=("$dir/m$i.json")
			done
			before=$(concurrent_pack) || return 1
			m0=$(concurrent_mounts)
			sync
			if ! timeit_store "$CONC_W/n$n.t" /dev/null "$CONC_W/n$n.err" "$CONC_STORE" \
				"${CONCURRENT_LAUNCH[@]}" "$dir" "$FORGE" "$CONC_STORE" "$BENCH_LIBDIR" "${manifests[@]}"; then
				local e
				e=$(grep -l . "$dir"/*.err 2>/dev/null | head -n 1) || true
				concurrent_fail "$(cat "$dir/failed" 2>/dev/null || echo "?") of $n builds at once failed" "$e"
			fi
			echo "$n $(cat "$dir/failed" 2>/dev/null || echo "$n")" >>"$CONC_W/succeeded"
			after=$(concurrent_pack) || return 1
			echo $((after - before)) >>"$CONC_W/n$n.growth"
			m1=$(concurrent_mounts)
			echo "$n $m0 $m1" >>"$CONC_W/mounts"
		done
	done
}

# concurrent_tables prints the area's table from the raw figures in CONC_W.
# Usage: concurrent_tables NOTE
concurrent_tables() {
	local note=${1:-} why=${1:-failed: see the notes below}
	local base="" gbase="" n times
	[[ -s $CONC_W/n1.t ]] && base=$(field "$CONC_W/n1.t" 1 | median)
	[[ -s $CONC_W/n1.growth ]] && gbase=$(median <"$CONC_W/n1.growth")
	if [[ -s $CONC_W/base-tree ]]; then
		local tree
		tree=$(<"$CONC_W/base-tree")
		echo
		echo "The base tree: $(tree_info "$tree" entries) entries, $(fmt_bytes "$(tree_info "$tree" bytes)"), built once by \`$(tree_info "$tree" what)\` in $(tree_info "$tree" build_seconds) s on $(tree_info "$tree" built) (not part of the figures)."
	fi
	local n8=""
	echo
	echo "| builds at once | command | runs | median total time | spread (min–max) | CPU | baseline: N × 1 build | × baseline |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
	for n in "${CONCURRENT_COUNTS[@]}"; do
		times=$CONC_W/n$n.t
		if [[ ! -s $times ]]; then
			echo "| $n | \`$CONCURRENT_CMD\` | 0 | $why | | | | |"
			continue
		fi
		local med bt=""
		med=$(field "$times" 1 | median)
		[[ -z $base ]] || bt=$(awk -v b="$base" -v n="$n" 'BEGIN { printf "%.6f", b * n }')
		echo "| $n | \`$CONCURRENT_CMD\` | $(count_lines "$times") | $(time_cells "$times") | $(fmt_time "$bt") | $(ratio "$med" "$bt")× |"
	done
	echo
	echo "| builds at once | store growth (median) | baseline: N × 1 build's growth | × baseline | builds that failed | sets that left mounts | target | result |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
	for n in "${CONCURRENT_COUNTS[@]}"; do
		local target="—" result="—" failed="" left="" g="" bg=""
		[[ -s $CONC_W/succeeded ]] && failed=$(awk -v n="$n" '$1 == n { f += $2; t += n } END { if (t) printf "%d of %d", f, t }' "$CONC_W/succeeded")
		[[ -s $CONC_W/mounts ]] && left=$(awk -v n="$n" '$1 == n { if ($4 != $2 || $5 != $3) bad++; runs++ } END { if (runs) printf "%d of %d", bad, runs }' "$CONC_W/mounts")
		if ((n == 8)); then
			target="all succeed, no mount left (DESIGN §7)"
			result="not run"
			if [[ -n $failed && -n $left ]]; then
				result=PASS
				[[ $failed == "0 of "* && $left == "0 of "* ]] || result=FAIL
			fi
			n8=$result
		fi
		[[ -s $CONC_W/n$n.growth ]] && g=$(median <"$CONC_W/n$n.growth")
		[[ -z $gbase ]] || bg=$(awk -v b="$gbase" -v n="$n" 'BEGIN { printf "%.0f", b * n }')
		if [[ -z $g ]]; then
			echo "| $n | $why | | | ${failed:-} | ${left:-} | $target | $result |"
			continue
		fi
		echo "| $n | $(fmt_bytes "$g") | $(fmt_bytes "$bg") | $(ratio "$g" "$bg")× | $failed | $left | $target | $result |"
	done
	[[ $n8 != FAIL ]] || BENCH_FAILED+=("concurrent: 8 builds at once: some failed or left mounts")
}
