# shellcheck shell=bash
# bench/areas/store.sh: area "store" of bench/run (issue 2, point 6; issue
# 9, rows 1 and 2).
#
# Imports each reference tree into a fresh store and again into the same
# store, next to `cp -a` of the same tree to the same disk, and for the
# Debian tree next to the peers, `ostree commit` and `casync make`, with the
# sizes of what each stores; and runs the chunker's Go benchmarks. Writes
# the "store" section of RESULTS.md.

# Targets: issue 2 point 6, and DESIGN §7 where it asks for more.
STORE_TARGET_FIRST=1.00        # first import ≤ 1.0× cp -a
STORE_TARGET_REIMPORT=0.25     # re-import unchanged ≤ 0.25× cp -a
STORE_TARGET_REIMPORT_REL=0.10 # re-import ≤ 0.1× first import (DESIGN §7)
STORE_TARGET_GROWTH=1          # re-import grows the store < 1 % (issue 2 point 2)
STORE_TARGET_CHUNK_MBPS=1200   # chunking+hashing ≥ 1.2 GB/s per core

# DURABLE runs a command, then syncs the filesystem of its destination (the
# first argument), so that the time includes writing the data to the disk.
# shellcheck disable=SC2016 # expanded by the inner bash
DURABLE=(bash -c '"${@:2}" && sync -f "$1"' durable)

area_store() {
	local section=$BENCH_WORK/store.md
	{
		echo "## Store: import into the content-addressed store"
		echo
		echo "Issue 2, point 6, and issue 9, rows 1 (ingest, re-ingest: against cp -a, ostree, casync) and 2 (store size of the Debian tree), and issue 14 (the time to rebuild a lost index): \`bench/run store\`, $BENCH_RUNS runs per row, source trees $BENCH_SOURCE."
		echo
		machine_description "$BENCH_DIR"
		echo
		store_method
	} >"$section"
	need_pkgs ostree casync
	local debian mixed nodev
	debian=$(debian_tree)
	mixed=$(mixed_tree)
	nodev=$(debian_nodev_tree "$debian")
	# A run writes two copies and a store of the tree it measures (a store
	# counts as the tree), and for the Debian tree an ostree repository and
	# a casync store too; each run shrinks what it wrote (see shrink in
	# lib.sh) before the next one starts.
	need_space "$BENCH_DIR" $((5 * $(du -sb "$debian" | cut -f1) + 3 * $(du -sb "$mixed" | cut -f1) + (2 << 30)))
	await_fresh_inodes
	{
		store_tree "Debian bookworm minbase + linux-image-amd64" "$debian" "$nodev"
		store_tree "2 GiB mixed tree" "$mixed"
		store_chunker
	} >>"$section"
	results_update "$BENCH_RESULTS" store "$section"
}

store_method() {
	cat <<-EOF
		How: \`TREE\` is a cached reference tree; \`DEST\` and the store \`S\` are new
		directories on the same filesystem as \`TREE\`, one per command and run, with a
		\`sync\` before each command. None is deleted before the whole run ends, and a
		run starts 6 min after the previous one deleted its files: on an ext4 without a
		journal, inodes deleted in the last 1–6 min make every file creation scan past
		them (ext4's \`recently_deleted()\`), which slowed \`cp -a\` 2–6× after an \`rm -rf\`
		of earlier copies, while an import, which creates few files, hardly noticed.
		Each run times every row in turn, so that drift over the run affects all rows
		alike. Times are wall-clock (monotonic), the median of the runs with the spread
		min–max; CPU is user+sys of the command (median), for the imports with that of
		the store's daemon, which does the work (from its \`/proc/PID/stat\`). The daemon
		keeps running between the two imports of a run. The raw figures of the last
		run are kept in \`BENCH_DIR/raw/store\` (by default under \`/var/tmp/forge-bench\`).
	EOF
	if [[ $BENCH_SOURCE == warm ]]; then
		echo "Source trees are warm: read once into the page cache (\`tar cf - TREE | cat\`) before each timed command."
	else
		echo "Source trees are cold: \`sync; echo 3 > /proc/sys/vm/drop_caches\` before each timed command."
	fi
	cat <<-EOF
		Peers, on the Debian tree only (on the mixed tree they would double the
		area's time): \`ostree commit\` into a bare repository \`R\` (made by \`ostree
		init --mode=bare\` just before, not timed), whose re-ingest is the same commit
		again; ostree cannot store device nodes, so both read \`TREE'\`, a copy of the tree
		without the 8 of its \`/dev\` (cached next to it). \`casync make\` with a new chunk
		store \`C.castr\` and an encoder cache \`CACHE\` (casync's default chunk size and
		compression), whose re-ingest is the same with a new index and the same store
		and cache, which lets casync skip the unchanged files. Each is followed by the
		same \`sync -f\` as the imports. casync compresses its chunks (zstd, its default);
		forge and ostree store file contents as they are.
		Once a run has timed every row, its copies, stores and repositories are
		truncated (\`truncate -s 0\` of every file: the disk gets its space back, and no
		inode is deleted, see above).
		The baseline is \`cp -a\` followed by \`sync -f\` of the destination filesystem,
		and the imports are followed by the same \`sync -f\`: forge fsyncs its packs
		before it commits (DESIGN §3), which a bare \`cp -a\` never waits for. The bare
		\`cp -a\` (data still in the page cache) is shown too, with the ratios to it.
		The index rebuild row is what a user runs after losing \`S/index\` (issue 14): after
		the re-import, the daemon is stopped and the index removed (not timed), then
		\`forge store fsck --repair\` starts a daemon, which rebuilds the index from the
		packs' footers and nodes and the ref log as it opens the store, and fsck then
		checks the whole store (every chunk re-hashed from the page cache, every ref
		walked); the figure includes both, and the CPU column the daemon's.
		Compression (issue 18): after those, the tree is imported into a second new
		store \`Z\` whose setting is \`forge store compression zstd\` (each chunk stored
		zstd-compressed, fastest level, where that saves an eighth of it), and the tree
		is read back with \`tar\` through a new read-only mount of \`S\` and of \`Z\` (the
		mount's kernel cache cold, the packs in the page cache: what a stage reading its
		input sees); the CPU column adds the daemon's, which decodes.
		Targets: issue 2, point 6 (first import ≤ 1.0× cp -a, re-import ≤ 0.25× cp -a,
		chunking+hashing ≥ 1.2 GB/s per core) and DESIGN §7 (re-import ≤ 0.1× first import).
	EOF
}

# store_tree measures one reference tree and prints its tables. With
# NODEV_TREE (the same tree without its device nodes, which ostree cannot
# store), it also measures the peers: ostree commit and casync make.
# Usage: store_tree TITLE TREE [NODEV_TREE]
store_tree() {
	local title=$1 tree=$2 peers=${3:-}
	# w keeps the raw figures of the last run (BENCH_DIR/raw) for whoever
	# doubts a median; scratch holds the copies and stores.
	local w scratch
	w=$BENCH_DIR/raw/store/$(basename "$tree")
	scratch=$BENCH_WORK/$(basename "$tree")
	rm -rf "$w"
	mkdir -p "$w" "$scratch"
	local forge_ok=$FORGE i run
	local forge_note=${FORGE_MISSING:+not run: $FORGE_MISSING}
	local rebuild_note=${FORGE_MISSING:+not run: $FORGE_MISSING}
	local zstd_note=${FORGE_MISSING:+not run: $FORGE_MISSING}

	for ((i = 1; i <= BENCH_RUNS; i++)); do
		log "store: $title: run $i/$BENCH_RUNS"
		run=$scratch/run$i
		mkdir -p "$run"
		settle "$tree"
		timeit "$w/cp-durable.t" "${DURABLE[@]}" "$run/copy1" cp -a "$tree" "$run/copy1" ||
			die "cp -a $tree $run/copy1 failed"
		settle "$tree"
		timeit "$w/cp.t" cp -a "$tree" "$run/copy2" || die "cp -a $tree $run/copy2 failed"

		if [[ -n $forge_ok ]]; then
			settle "$tree"
			if ! store_import "$w" first "$run/store" "$tree"; then
				forge_ok=""
				forge_note="failed: see the notes below"
			else
				settle "$tree"
				if ! store_import "$w" again "$run/store" "$tree"; then
					forge_ok=""
					forge_note="failed: see the notes below"
				elif ! store_rebuild "$w" "$run/store"; then
					rebuild_note="failed: see the notes below"
				fi
				settle "$tree"
				store_zstd "$w" "$run" "$tree" || zstd_note="failed: see the notes below"
			fi
		fi
		[[ -z $peers ]] || store_peers "$w" "$run" "$tree" "$peers"
		# Nothing of this run is read again: the daemon goes, and the data
		# of the copies and stores (not their inodes: see shrink in lib.sh),
		# so that the runs fit on the disk.
		stop_forge_daemons "$run"
		shrink "$run"
	done

	local entries bytes base base_bare
	entries=$(find "$tree" | wc -l)
	bytes=$(du -sb "$tree" | cut -f1)
	base=$(field "$w/cp-durable.t" 1 | median)
	base_bare=$(field "$w/cp.t" 1 | median)

	echo
	echo "### $title ($entries entries, $(fmt_bytes "$bytes"))"
	echo
	echo "Built once with \`$(tree_info "$tree" what)\` in $(tree_info "$tree" build_seconds) s on $(tree_info "$tree" built) (not part of the figures)."
	echo
	echo "| row | command | median | spread (min–max) | CPU | × cp -a | × bare cp -a | target | result |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	time_row "cp -a (baseline)" 'cp -a TREE DEST && sync -f DEST' "$w/cp-durable.t" "$base" "$base_bare"
	time_row "bare cp -a" 'cp -a TREE DEST' "$w/cp.t" "$base" "$base_bare"
	time_row "first import" 'forge store import --store S --ref bench TREE && sync -f S' "$w/first.t" "$base" "$base_bare" \
		le "$STORE_TARGET_FIRST" "≤ $STORE_TARGET_FIRST× cp -a" "$forge_note"
	time_row "re-import unchanged" 'the same, again on the same S' "$w/again.t" "$base" "$base_bare" \
		le "$STORE_TARGET_REIMPORT" "≤ $STORE_TARGET_REIMPORT× cp -a" "$forge_note"
	if [[ -s $w/first.t && -s $w/again.t ]]; then
		local rel
		rel=$(ratio "$(field "$w/again.t" 1 | median)" "$(field "$w/first.t" 1 | median)")
		echo "| re-import ÷ first import | medians of the two rows above | | | | | | ≤ $STORE_TARGET_REIMPORT_REL× (DESIGN §7) | $rel× $(verdict "$rel" le "$STORE_TARGET_REIMPORT_REL") |"
	else
		echo "| re-import ÷ first import | medians of the two rows above | ${forge_note:-not run} | | | | | ≤ $STORE_TARGET_REIMPORT_REL× (DESIGN §7) | not run |"
	fi
	time_row "index rebuild" 'forge daemon stop --store S; rm -rf S/index; forge store fsck --store S --repair' "$w/rebuild.t" "$base" "$base_bare" \
		"" "" "—" "${rebuild_note:-$forge_note}"
	time_row "first import, compression zstd" 'forge store compression --store Z zstd; forge store import --store Z --ref bench TREE && sync -f Z' "$w/zstd.t" "$base" "$base_bare" \
		"" "" "—" "${zstd_note:-$forge_note}"
	time_row "read the tree through a new mount: S (no compression)" "forge store mount --store S bench MNT (not timed); tar -C MNT -cf - . | wc -c" "$w/read-none.t" "$base" "$base_bare" \
		"" "" "—" "${zstd_note:-$forge_note}"
	time_row "read the tree through a new mount: Z (zstd)" "the same on Z" "$w/read-zstd.t" "$base" "$base_bare" \
		"" "" "—" "${zstd_note:-$forge_note}"
	if [[ -n $peers ]]; then
		time_row "ostree commit (peer)" "$STORE_CMD_OSTREE" "$w/ostree-first.t" "$base" "$base_bare" "" "" "—" "failed: see the notes below"
		time_row "ostree commit unchanged (peer)" 'the same, again on the same R' "$w/ostree-again.t" "$base" "$base_bare" "" "" "—" "failed: see the notes below"
		time_row "casync make (peer)" "$STORE_CMD_CASYNC" "$w/casync-first.t" "$base" "$base_bare" "" "" "—" "failed: see the notes below"
		time_row "casync make unchanged (peer)" 'the same, again with a new I.caidx, the same C.castr and CACHE' "$w/casync-again.t" "$base" "$base_bare" "" "" "—" "failed: see the notes below"
		store_peer_ratios "$w"
	fi
	echo
	store_sizes "$w" "$bytes" "${forge_note:-not run}" "$peers"
	if [[ -s $w/notes ]]; then
		echo
		echo "Notes:"
		echo
		cat "$w/notes"
	fi
}

# The peers' timed commands, as RESULTS.md shows them. R is a repository
# made by `ostree init --mode=bare` just before (not timed); TREE' is the
# tree without its device nodes (see debian_nodev_tree in trees.sh).
STORE_CMD_OSTREE="ostree --repo=R commit --branch=bench --tree=dir=TREE' && sync -f R"
STORE_CMD_CASYNC='casync make --store=C.castr --cache=CACHE I.caidx TREE && sync -f C.castr'

# store_peers times, in one run, the peers' ingest of TREE and their
# re-ingest of it unchanged: ostree commit of NODEV_TREE into a new bare
# repository, then again into the same one, and casync make into a new
# chunk store with an encoder cache (which lets casync skip the files that
# did not change), then again with both. Records the sizes of the
# repository and of the chunk store after the first ingest.
# Usage: store_peers WORKDIR RUNDIR TREE NODEV_TREE
store_peers() {
	local w=$1 run=$2 tree=$3 nodev=$4 phase ok=1
	local repo=$run/ostree castr=$run/casync.castr cache=$run/casync.cache
	if ! ostree --repo="$repo" init --mode=bare >"$w/ostree-init.out" 2>&1; then
		store_fail "$w" "\`ostree init --mode=bare\` failed" "$w/ostree-init.out"
		ok=""
	fi
	for phase in first again; do
		[[ -n $ok ]] || break
		settle "$nodev"
		store_peer_time "$w" "ostree-$phase" "$repo" \
			ostree --repo="$repo" commit --branch=bench --tree=dir="$nodev" || ok=""
	done
	local ostree_ok=$ok
	ok=1
	for phase in first again; do
		[[ -n $ok ]] || break
		settle "$tree"
		store_peer_time "$w" "casync-$phase" "$castr" \
			casync make --store="$castr" --cache="$cache" "$run/$phase.caidx" "$tree" || ok=""
	done
	[[ -n $ostree_ok && -s $w/ostree-first.t && -s $w/casync-first.t ]] || return 0
	# Measured after both ingests: the second adds one commit object to
	# the repository, and its own index, which is not counted (nor is the
	# encoder cache, a cache).
	printf '%s\t%s\t%s\t%s\n' \
		"$(du -sb "$repo" | cut -f1)" "$(du -s -B1 "$repo" | cut -f1)" \
		"$(du -scb "$castr" "$run/first.caidx" | tail -n 1 | cut -f1)" \
		"$(du -sc -B1 "$castr" "$run/first.caidx" | tail -n 1 | cut -f1)" >>"$w/peers.sizes"
}

# store_peer_time runs one timed peer command followed by sync -f DEST, its
# output in NAME.out and NAME.err; a failure leaves no figure and a note.
# Usage: store_peer_time WORKDIR NAME DEST CMD [ARG...]
store_peer_time() {
	local w=$1 name=$2 dest=$3 status=0 lines=0
	shift 3
	[[ -e $w/$name.t ]] && lines=$(wc -l <"$w/$name.t")
	timeit "$w/$name.t" "${DURABLE[@]}" "$dest" "$@" >"$w/$name.out" 2>"$w/$name.err" || status=$?
	((status == 0)) && return 0
	store_fail "$w" "\`$1 ${2:-}\` ($name) exited with status $status" "$w/$name.err"
	# A failed run is no figure (timeit writes none when it cannot start it).
	if [[ -e $w/$name.t ]] && (($(wc -l <"$w/$name.t") > lines)); then
		sed -i '$d' "$w/$name.t"
	fi
	return 1
}

# store_peer_ratios prints the rows that set forge's imports against the
# peers' ingests (the baselines of issue 9, row 1), and each peer's
# re-ingest against its first ingest, to set beside forge's.
store_peer_ratios() {
	local w=$1 tool f a
	f=$(store_med "$w/first.t")
	a=$(store_med "$w/again.t")
	local first=() again=() self=()
	for tool in ostree casync; do
		first+=("÷ $tool $(ratio "$f" "$(store_med "$w/$tool-first.t")")×")
		again+=("÷ $tool $(ratio "$a" "$(store_med "$w/$tool-again.t")")×")
		self+=("$tool $(ratio "$(store_med "$w/$tool-again.t")" "$(store_med "$w/$tool-first.t")")×")
	done
	echo "| first import ÷ the peers' first ingest | medians of the rows above | | | | | | — | ${first[0]}, ${first[1]} |"
	echo "| re-import ÷ the peers' unchanged ingest | medians of the rows above | | | | | | — | ${again[0]}, ${again[1]} |"
	echo "| unchanged ÷ first ingest, peers | medians of the rows above | | | | | | — | ${self[0]}, ${self[1]} |"
}

# store_med prints the median wall time of a file of timeit lines, or
# nothing when it has none.
store_med() { if [[ -s $1 ]]; then field "$1" 1 | median; fi; }

# store_import runs one timed import (PHASE first or again) and records its
# tree hash and the store's sizes. It returns non-zero, with a note, when the
# import fails or prints no tree hash.
# Usage: store_import WORKDIR PHASE STORE TREE
store_import() {
	local w=$1 phase=$2 store=$3 tree=$4 status=0 pid cpu0=0 cpu1
	# The import's work is done by the store's daemon, which the first
	# import starts: its CPU time is added to the client's.
	pid=$(forge_daemon_pid "$store")
	[[ -z $pid ]] || cpu0=$(proc_cpu "$pid")
	timeit "$w/$phase.t" "${DURABLE[@]}" "$store" \
		"$FORGE" store import --store "$store" --ref bench "$tree" >"$w/$phase.out" 2>"$w/$phase.err" || status=$?
	if [[ $(forge_daemon_pid "$store") != "$pid" ]]; then
		pid=$(forge_daemon_pid "$store") cpu0=0
	fi
	cpu1=0
	[[ -z $pid ]] || cpu1=$(proc_cpu "$pid")
	sed -i "\$s/\$/ $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')/" "$w/$phase.t"
	if ((status != 0)); then
		store_fail "$w" "\`forge store import\` ($phase) exited with status $status" "$w/$phase.err"
		sed -i '$d' "$w/$phase.t" # a failed run is no figure
		return 1
	fi
	local hash
	hash=$(tail -n 1 "$w/$phase.out")
	if ! [[ $hash =~ ^[0-9a-f]{64}$ ]]; then
		store_fail "$w" "\`forge store import\` ($phase) did not print a tree hash as its last line (got '${hash:0:80}')" "$w/$phase.err"
		return 1
	fi
	echo "$hash" >>"$w/hashes"
	if ! "$FORGE" store du --store "$store" --json >"$w/du.json" 2>"$w/du.err" ||
		! jq -er '[.logical_bytes, .stored_bytes, .pack_bytes, .chunks] | map(numbers) | select(length == 4) | @tsv' \
			"$w/du.json" >"$w/du.tsv"; then
		store_fail "$w" "\`forge store du --store S --json\` failed or lacks logical_bytes, stored_bytes, pack_bytes or chunks" "$w/du.err"
		return 1
	fi
	printf '%s\t%s\t%s\n' "$(cat "$w/du.tsv")" "$(du -sb "$store" | cut -f1)" "$(du -s -B1 "$store" | cut -f1)" >>"$w/$phase.sizes"
}

# store_zstd imports TREE into a second store, Z, whose chunks are stored
# zstd-compressed where that saves an eighth (issue 18: compression as a
# store option, its cost measured), then reads the tree back through a new
# read-only mount of each store (the kernel's cache of the mount cold, the
# packs in the page cache, as for a stage's input) with tar.
# Usage: store_zstd WORKDIR RUNDIR TREE
store_zstd() {
	local w=$1 run=$2 tree=$3 kind store mp
	if ! "$FORGE" store compression --store "$run/store-zstd" zstd 2>"$w/zstd.err"; then
		store_fail "$w" "\`forge store compression --store Z zstd\` failed" "$w/zstd.err"
		return 1
	fi
	store_import "$w" zstd "$run/store-zstd" "$tree" || return 1
	for kind in none zstd; do
		store=$run/store
		[[ $kind == none ]] || store=$run/store-zstd
		mp=$run/mnt-$kind
		mkdir -p "$mp"
		if ! "$FORGE" store mount --store "$store" bench "$mp" >/dev/null 2>"$w/read-$kind.err"; then
			store_fail "$w" "\`forge store mount\` of store $kind failed" "$w/read-$kind.err"
			return 1
		fi
		timeit_store "$w/read-$kind.t" "$w/read-$kind.out" "$w/read-$kind.err" "$store" \
			sh -c 'tar -C "$1" -cf - . | wc -c' sh "$mp"
		local status=$?
		"$FORGE" store umount --store "$store" "$mp" >/dev/null 2>&1
		if ((status != 0)); then
			store_fail "$w" "reading store $kind's mount with tar failed" "$w/read-$kind.err"
			return 1
		fi
	done
}

# store_rebuild times what a user runs after losing the index of STORE
# (issue 14): the daemon is stopped, the index removed, and fsck --repair
# starts a daemon, which rebuilds the index from the packs' footers and
# nodes and the ref log on open; fsck then checks the whole store (every
# chunk re-hashed, every ref walked), which the figure includes. The
# packs were just written, so they are read from the page cache.
# Usage: store_rebuild WORKDIR STORE
store_rebuild() {
	local w=$1 store=$2 status=0 pid
	stop_forge_daemons "$(dirname "$store")" # it matches the stores below a directory
	rm -rf "$store/index"
	timeit "$w/rebuild.t" "$FORGE" store fsck --store "$store" --repair >"$w/rebuild.out" 2>"$w/rebuild.err" || status=$?
	pid=$(forge_daemon_pid "$store")
	sed -i "\$s/\$/ $([[ -n $pid ]] && proc_cpu "$pid" || echo 0)/" "$w/rebuild.t"
	if ((status != 0)); then
		store_fail "$w" "\`forge store fsck --repair\` after \`rm -rf S/index\` exited with status $status" "$w/rebuild.err"
		sed -i '$d' "$w/rebuild.t"
		return 1
	fi
}

# store_fail records a failure: a note under the tree's tables, the list of
# what did not run, and the tail of the command's stderr on the terminal.
store_fail() {
	local w=$1 what=$2 errfile=$3
	log "store: $what"
	local last=""
	if [[ -s $errfile ]]; then
		tail -n 20 "$errfile" | sed 's/^/bench:     /' >&2
		last=$(grep -v '^[[:space:]]*$' "$errfile" | tail -n 1 | cut -c1-200)
	fi
	echo "- $what${last:+; its last line on stderr: \`$last\`}." >>"$w/notes"
	BENCH_FAILED+=("store: $what")
}

# time_row prints one row of a time table.
# Usage: time_row LABEL COMMAND TIMES BASE BASE_BARE [OP LIMIT TARGET [NOTE]]
time_row() {
	local label=$1 cmd=$2 times=$3 base=$4 base_bare=$5
	local op=${6:-} limit=${7:-} target=${8:-—} note=${9:-not run}
	if [[ ! -s $times ]]; then
		echo "| $label | \`$cmd\` | $note | | | | | $target | not run |"
		return
	fi
	local med min max n cpu r r_bare result="—"
	read -r med min max n < <(field "$times" 1 | stats)
	cpu=$(awk '{ print $2 + $3 + $6 }' "$times" | median)
	r=$(ratio "$med" "$base")
	r_bare=$(ratio "$med" "$base_bare")
	[[ -n $op ]] && result=$(verdict "$r" "$op" "$limit")
	((n == BENCH_RUNS)) || result="$result ($n of $BENCH_RUNS runs)"
	echo "| $label | \`$cmd\` | $(fmt_secs "$med") | $(fmt_secs "$min") – $(fmt_secs "$max") | $(fmt_secs "$cpu") | $r× | $r_bare× | $target | $result |"
}

# store_sizes prints the table of the store's size against the tree's.
# Usage: store_sizes WORKDIR TREE_BYTES NOTE
store_sizes() {
	local w=$1 bytes=$2 note=$3 peers=${4:-}
	# The peers' sizes are of their directories: so is forge's ratio column.
	local pack=""
	[[ -s $w/first.sizes ]] && pack=$(field "$w/first.sizes" 5 | median)
	echo "| size | command | bytes (median) | × tree | × forge store directory | target | result |"
	echo "| --- | --- | --- | --- | --- | --- | --- |"
	echo "| tree | \`du -sb TREE\` | $(fmt_bytes "$bytes") | 1.00× | $(ratio "$bytes" "$pack")× | | |"
	if [[ ! -s $w/first.sizes ]]; then
		echo "| store after first import | \`forge store du --store S --json\`, \`du -sb S\` | $note | | | | not run |"
	else
		# Columns of PHASE.sizes: logical stored pack chunks store-dir-bytes
		# store-dir-disk-bytes.
		local col label cmd v
		for col in 1 2 3 5 6; do
			case $col in
			1) label="logical_bytes after first import" cmd='forge store du --store S --json' ;;
			2) label="stored_bytes after first import" cmd='forge store du --store S --json' ;;
			3) label="pack_bytes after first import" cmd='forge store du --store S --json' ;;
			5) label="store directory after first import" cmd='du -sb S' ;;
			6) label="store directory on disk after first import" cmd='du -s -B1 S' ;;
			esac
			v=$(field "$w/first.sizes" "$col" | median)
			echo "| $label | \`$cmd\` | $(fmt_bytes "$v") | $(ratio "$v" "$bytes")× | $(ratio "$v" "$pack")× | | |"
		done
		echo "| chunks after first import | \`forge store du --store S --json\` | $(field "$w/first.sizes" 4 | median) chunks | | | | |"
		if [[ -s $w/zstd.sizes ]]; then
			v=$(field "$w/zstd.sizes" 3 | median)
			echo "| pack_bytes after first import, compression zstd | \`forge store du --store Z --json\` | $(fmt_bytes "$v") | $(ratio "$v" "$bytes")× | $(ratio "$v" "$pack")× | | |"
			v=$(field "$w/zstd.sizes" 6 | median)
			echo "| store directory on disk after first import, compression zstd | \`du -s -B1 Z\` | $(fmt_bytes "$v") | $(ratio "$v" "$bytes")× | $(ratio "$v" "$pack")× | | |"
		fi
	fi
	if [[ -n $peers ]]; then
		# Columns of peers.sizes: ostree repo bytes, on disk; casync store
		# and index bytes, on disk.
		local c lab cm v
		for c in 1 2 3 4; do
			case $c in
			1) lab="ostree bare repo after first commit (peer)" cm='du -sb R' ;;
			2) lab="ostree bare repo on disk after first commit (peer)" cm='du -s -B1 R' ;;
			3) lab="casync chunk store and index after first make (peer)" cm='du -sb C.castr I.caidx' ;;
			4) lab="casync chunk store and index on disk after first make (peer)" cm='du -s -B1 C.castr I.caidx' ;;
			esac
			if [[ ! -s $w/peers.sizes ]]; then
				echo "| $lab | \`$cm\` | failed: see the notes below | | | | not run |"
				continue
			fi
			v=$(field "$w/peers.sizes" "$c" | median)
			echo "| $lab | \`$cm\` | $(fmt_bytes "$v") | $(ratio "$v" "$bytes")× | $(ratio "$v" "$pack")× | | |"
		done
	fi
	[[ -s $w/first.sizes ]] || return 0
	if [[ -s $w/again.sizes ]]; then
		local p1 p2 growth
		p1=$(field "$w/first.sizes" 3 | median)
		p2=$(field "$w/again.sizes" 3 | median)
		growth=$(awk -v a="$p1" -v b="$p2" 'BEGIN { if (a > 0) printf "%+.2f", (b - a) * 100 / a; else print "n/a" }')
		echo "| growth of pack_bytes by the re-import | \`forge store du --store S --json\` | $(fmt_bytes "$(awk -v a="$p1" -v b="$p2" 'BEGIN { printf "%.0f", b - a }')") ($growth %) | | | < $STORE_TARGET_GROWTH % (issue 2, point 2) | $(awk -v g="$growth" -v t="$STORE_TARGET_GROWTH" 'BEGIN { if (g == "n/a") print "n/a"; else print (g < t) ? "PASS" : "FAIL" }') |"
	fi
	local distinct
	distinct=$(sort -u "$w/hashes" | wc -l)
	if ((distinct == 1)); then
		echo "| tree hash | last line of \`forge store import\` | the same in all $(wc -l <"$w/hashes") imports | | | the same | PASS |"
	else
		echo "| tree hash | last line of \`forge store import\` | $distinct different hashes in $(wc -l <"$w/hashes") imports of one tree | | | the same | FAIL |"
		BENCH_FAILED+=("store: imports of one tree gave $distinct different tree hashes")
	fi
}

# store_chunker runs the Go benchmarks of cas/chunker and prints their table.
# Conventions of the benchmark names: those that use several cores say
# "Parallel" (their MB/s is divided by the GOMAXPROCS of the run for the
# per-core figure); the target applies to those that hash ("SHA" or "Hash"),
# the others (chunking alone) are shown for comparison.
#
# The benchtime is a duration, not the 3x first planned: RunParallel splits
# 3 iterations 2:1 between 2 goroutines, which understates the parallel
# figure by a quarter, and 3 passes over 64 MiB last too little to be steady.
store_chunker() {
	local benchtime=${BENCH_CHUNKER_BENCHTIME:-1s}
	local cmd="go test -run '^\$' -bench . -benchtime $benchtime -count $BENCH_RUNS ./cas/chunker/"
	local out=$BENCH_DIR/raw/store/chunker.out
	mkdir -p "${out%/*}"
	echo
	echo "### Chunking + hashing"
	echo
	echo "Command: \`$cmd\`; MB/s as \`go test\` reports it (10^6 bytes per second). Benchmarks"
	echo "named \"Parallel\" use all cores: their per-core figure is MB/s ÷ cores. The target applies"
	echo "to the benchmarks that hash (\"SHA\" or \"Hash\" in the name); chunking alone is shown for comparison."
	echo
	echo "| benchmark | median MB/s | spread (min–max) | cores | MB/s per core | target | result |"
	echo "| --- | --- | --- | --- | --- | --- | --- |"
	local target="≥ $STORE_TARGET_CHUNK_MBPS MB/s per core"
	if [[ ! -d $BENCH_REPO/cas/chunker ]]; then
		echo "| chunking+hashing | not run: \`cas/chunker\` does not exist yet | | | | $target | not run |"
		BENCH_FAILED+=("store: cas/chunker does not exist, no chunking+hashing figures")
		return
	fi
	log "store: chunker benchmarks"
	local status=0
	(cd "$BENCH_REPO" && go test -run '^$' -bench . -benchtime "$benchtime" -count "$BENCH_RUNS" ./cas/chunker/) >"$out" 2>&1 || status=$?
	# Lines: BenchmarkName-PROCS  ITERATIONS  NS ns/op  MBS MB/s ...
	local names
	names=$(awk '/^Benchmark/ { for (i = 3; i < NF; i++) if ($(i + 1) == "MB/s") { print $1; break } }' "$out" | sort -u)
	if ((status != 0)) || [[ -z $names ]]; then
		local why="\`go test\` exited with status $status"
		((status != 0)) || why="no benchmark reports MB/s (b.SetBytes)"
		echo "| chunking+hashing | failed: $why | | | | $target | not run |"
		tail -n 20 "$out" | sed 's/^/bench:     /' >&2
		BENCH_FAILED+=("store: chunker benchmarks: $why")
		return
	fi
	local name short procs med min max n cores per
	while read -r name; do
		read -r med min max n < <(awk -v b="$name" '$1 == b { for (i = 3; i < NF; i++) if ($(i + 1) == "MB/s") print $i }' "$out" | stats)
		# go test appends -GOMAXPROCS to the name unless it is 1.
		short=$name procs=1
		if [[ $name =~ ^(.*)-([0-9]+)$ ]]; then
			short=${BASH_REMATCH[1]} procs=${BASH_REMATCH[2]}
		fi
		cores=1
		[[ $name == *Parallel* ]] && cores=$procs
		per=$(awk -v m="$med" -v c="$cores" 'BEGIN { printf "%.0f", m / c }')
		local t="$target" v
		v=$(verdict "$per" ge "$STORE_TARGET_CHUNK_MBPS")
		if ! [[ ${short,,} =~ sha|hash ]]; then
			t="— (no hashing)" v="—"
		fi
		echo "| \`$short\` | $(printf '%.0f' "$med") | $(printf '%.0f' "$min") – $(printf '%.0f' "$max") | $cores | $per | $t | $v |"
	done <<<"$names"
}
