# shellcheck shell=bash
# bench/areas/mounts.sh: area "mounts" of bench/run (issue 3, "Read-only
# mounts", Speed).
#
# Imports the Debian reference tree, the mixed tree and a one-file tree of
# 1 GiB of random bytes into one store, mounts them read-only with
# `forge store mount`, and compares reading the Debian tree (and the big
# file) through the mount with reading the cached tree itself on ext4, in
# the same run. Writes the "mounts" section of RESULTS.md.

# Targets: issue 3 ("Read-only mounts", Speed), and DESIGN §7 where it asks
# for more (cold read of a whole tree).
MOUNTS_TARGET_MOUNT_S=0.050     # forge store mount < 50 ms whatever the size
MOUNTS_TARGET_WARM=1.50         # warm find, find -printf, tar ≤ 1.5× ext4
MOUNTS_TARGET_WARM_DESIGN=1.10  # warm read of the tree ≤ 1.1× (DESIGN §7)
MOUNTS_TARGET_COLD=1.50         # cold read of the tree ≤ 1.5× (DESIGN §7)
MOUNTS_TARGET_SEQ_READ=0.80     # cold sequential read ≥ 0.8× ext4 throughput

# The one-file tree of the cold sequential read. Its size and version are
# part of its cache name, like the mixed tree's.
BIGFILE_SIZE=$((1 << 30))
BIGFILE_VERSION=1
BIGFILE_NAME=random
BIGFILE_TREE_CMD="head -c $BIGFILE_SIZE /dev/urandom >DIR/$BIGFILE_NAME"

# What the area holds while it runs, for mounts_cleanup (also run by the
# EXIT trap when the area dies half-way): the store, its scratch directory,
# and the mountpoints mounted and not yet unmounted.
MOUNTS_STORE=""
MOUNTS_SCRATCH=""
MOUNTS_ACTIVE=()

# The timed commands, as RESULTS.md shows them.
MOUNTS_CMD_FIND='find DIR >/dev/null'
MOUNTS_CMD_STAT="find DIR -printf '%s %m %u %T@\\n' >/dev/null"
MOUNTS_CMD_TAR='tar cf - -C DIR . | wc -c'
MOUNTS_CMD_DD='dd if=DIR/random of=/dev/null bs=1M'

# MOUNTS_TAR is the tar row's command, DIR being replaced: GNU tar skips
# reading the files when it writes to /dev/null itself, hence the pipe.
# shellcheck disable=SC2016 # expanded by the inner bash
MOUNTS_TAR=(bash -c 'set -o pipefail; tar cf - -C "$1" . | wc -c' mounts_tar DIR)

# MOUNTS_WARM_TRIES bounds the measurements of one warm figure (see
# mounts_warm).
MOUNTS_WARM_TRIES=5

area_mounts() {
	local section=$BENCH_WORK/mounts.md
	{
		echo "## Mounts: read-only FUSE mounts of stored trees"
		echo
		echo "Issue 3, \"Read-only mounts\", Speed: \`bench/run mounts\`, $BENCH_RUNS runs per row."
		echo
		machine_description "$BENCH_DIR"
		echo
		mounts_method
	} >"$section"
	local debian mixed big
	debian=$(debian_tree)
	mixed=$(mixed_tree)
	big=$(bigfile_tree)
	# The store holds the three trees once (mounts add nothing).
	need_space "$BENCH_DIR" $(($(du -sb "$debian" | cut -f1) + $(du -sb "$mixed" | cut -f1) + BIGFILE_SIZE + (1 << 30)))

	# Whatever happens from here on, the mounts and the daemon go: the
	# area's cleanup runs before bench/run's own EXIT trap, which it keeps.
	local saved_trap prev_trap=()
	saved_trap=$(trap -p EXIT)
	eval "prev_trap=($saved_trap)" # trap -- 'COMMAND' EXIT
	# shellcheck disable=SC2064 # bench/run's trap command is expanded now, on purpose
	trap "mounts_cleanup; ${prev_trap[2]:-}" EXIT

	mounts_measure "$debian" "$mixed" "$big" >>"$section"

	mounts_cleanup
	if [[ -n $saved_trap ]]; then
		eval "$saved_trap"
	else
		trap - EXIT
	fi
	results_update "$BENCH_RESULTS" mounts "$section"
}

mounts_method() {
	cat <<-EOF
		How: one store \`S\` on the bench disk holds the three trees below, imported
		once before the runs (\`forge store import --store S --ref NAME TREE\`, not
		timed); the imports start the store's daemon, which serves every mount of the
		area. \`TREE\` is the cached reference tree itself on ext4 (the baseline),
		\`MNT\` the same tree mounted read-only from \`S\`. Each run mounts the trees on
		new mountpoints (\`forge store mount\` is timed: the command returns once the
		tree is mounted), times every row in turn, baseline first, then unmounts them
		(\`forge store umount\`): every run starts with a new mount and cold kernel
		caches of it, while the daemon keeps what it decoded in earlier runs.
		Warm rows run the command once untimed on both \`TREE\` and \`MNT\`, then time it
		on each. Cold rows run \`sync; echo 3 > /proc/sys/vm/drop_caches\` before each
		timed command, which empties the page, dentry and inode caches of both ext4 and
		the mount, and the page cache of the store's packs. \`BENCH_SOURCE\` does not
		apply: each row says whether it is warm or cold. Times are wall-clock
		(monotonic), the median of the runs with the spread min–max; CPU is user+sys
		of the command (median), for commands on a mount with that of the store's
		daemon, which serves the FUSE requests (from its \`/proc/PID/stat\`, 10 ms
		ticks). Ratios divide the medians of the mount and of ext4 measured in the
		same run. The raw figures of the last run are kept in \`BENCH_DIR/raw/mounts\`
		(by default under \`/var/tmp/forge-bench\`).
		Targets: issue 3, "Read-only mounts", Speed (mount < 50 ms whatever the size,
		warm \`find\` and warm read of every file ≤ 1.5×, cold sequential read of a
		1 GiB file ≥ 0.8×; the same ≤ 1.5× for \`find -printf\`, which stats every
		entry) and DESIGN §7 (read a tree through a mount, cold ≤ 1.5×, warm ≤ 1.1×).
	EOF
}

# bigfile_tree prints the path of the one-file tree of the cold sequential
# read (1 GiB of random bytes, so that nothing compresses or deduplicates),
# generating it first when it is missing. Cached like the trees of
# bench/trees.sh.
bigfile_tree() {
	local tree=$BENCH_DIR/trees/bigfile-v$BIGFILE_VERSION-$BIGFILE_SIZE
	if [[ -d $tree && -f $tree.info ]]; then
		echo "$tree"
		return
	fi
	local partial=$tree.partial start
	discard_partial "$partial"
	rm -rf "$tree" "$tree.info"
	mkdir -p "$partial"
	log "generating the 1 GiB one-file tree (once; cached in $tree)"
	start=$(date +%s)
	head -c "$BIGFILE_SIZE" /dev/urandom >"$partial/$BIGFILE_NAME" || {
		discard_partial "$partial"
		die "writing $BIGFILE_SIZE random bytes to $partial/$BIGFILE_NAME failed"
	}
	# On the disk before anything times a read of it.
	sync -f "$partial/$BIGFILE_NAME"
	mv -T "$partial" "$tree"
	record_tree "$tree" $(($(date +%s) - start)) "$BIGFILE_TREE_CMD"
	echo "$tree"
}

# mounts_measure imports the trees, runs the rows BENCH_RUNS times and prints
# the tables. Usage: mounts_measure DEBIAN_TREE MIXED_TREE BIG_TREE
mounts_measure() {
	local debian=$1 mixed=$2 big=$3
	local w=$BENCH_DIR/raw/mounts
	MOUNTS_SCRATCH=$BENCH_WORK/mounts
	MOUNTS_STORE=$MOUNTS_SCRATCH/store
	rm -rf "$w"
	mkdir -p "$w" "$MOUNTS_SCRATCH"
	local forge_ok=$FORGE forge_note=${FORGE_MISSING:+not run: $FORGE_MISSING}
	if [[ -n $forge_ok ]]; then
		local ref tree
		for ref in debian mixed big; do
			case $ref in
			debian) tree=$debian ;;
			mixed) tree=$mixed ;;
			big) tree=$big ;;
			esac
			log "mounts: importing $(basename "$tree") as $ref (not timed)"
			if ! mounts_import "$w" "$ref" "$tree"; then
				forge_ok="" forge_note="failed: see the notes below"
				break
			fi
		done
	fi

	local i run r
	for ((i = 1; i <= BENCH_RUNS; i++)); do
		log "mounts: run $i/$BENCH_RUNS"
		run=$MOUNTS_SCRATCH/run$i
		mkdir -p "$run/debian" "$run/mixed" "$run/big"
		if [[ -n $forge_ok ]]; then
			for r in debian mixed big; do
				sync
				if ! mounts_mount "$w" "$r" "$run/$r"; then
					forge_ok="" forge_note="failed: see the notes below"
					break
				fi
			done
		fi
		# The mixed tree is only mounted for the time it takes.
		[[ -z $forge_ok ]] || mounts_umount "$run/mixed"

		mounts_warm "$w" find "$debian" "$run/debian" "$forge_ok" find DIR
		mounts_warm "$w" stat "$debian" "$run/debian" "$forge_ok" find DIR -printf '%s %m %u %T@\n'
		mounts_warm "$w" tar "$debian" "$run/debian" "$forge_ok" "${MOUNTS_TAR[@]}"
		mounts_cold "$w" tar "$debian" "$run/debian" "$forge_ok" "${MOUNTS_TAR[@]}"
		mounts_cold "$w" dd "$big" "$run/big" "$forge_ok" dd if=DIR/$BIGFILE_NAME of=/dev/null bs=1M
		((i > 1)) || [[ -z $forge_ok ]] || mounts_check_bigfile "$w" "$big" "$run/big"

		mounts_umount "$run/debian"
		mounts_umount "$run/big"
	done

	local entries bytes
	entries=$(find "$debian" | wc -l)
	bytes=$(du -sb "$debian" | cut -f1)
	echo
	echo "### Mounting: \`forge store mount\`"
	echo
	echo "| tree | command | median | spread (min–max) | CPU | target | result |"
	echo "| --- | --- | --- | --- | --- | --- | --- |"
	mounts_mount_row "1 GiB one-file tree" "$w/mount-big.t" "$forge_note"
	mounts_mount_row "Debian ($entries entries, $(fmt_bytes "$bytes"))" "$w/mount-debian.t" "$forge_note"
	mounts_mount_row "2 GiB mixed tree ($(find "$mixed" | wc -l) entries, $(fmt_bytes "$(du -sb "$mixed" | cut -f1)"))" "$w/mount-mixed.t" "$forge_note"

	echo
	echo "### Reading the Debian tree: Debian bookworm minbase + linux-image-amd64 ($entries entries, $(fmt_bytes "$bytes"))"
	echo
	echo "Built once with \`$(tree_info "$debian" what)\` in $(tree_info "$debian" build_seconds) s on $(tree_info "$debian" built) (not part of the figures). \`DIR\` is \`TREE\` in the ext4 rows and \`MNT\` in the mount rows."
	echo
	echo "| row | command | median | spread (min–max) | CPU | × ext4 | target | result |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
	local t="≤ $MOUNTS_TARGET_WARM× ext4"
	mounts_pair "warm find" "$MOUNTS_CMD_FIND" "$w/warm-find" le "$MOUNTS_TARGET_WARM" "$t" "$forge_note"
	mounts_pair "warm find -printf (stat)" "$MOUNTS_CMD_STAT" "$w/warm-stat" le "$MOUNTS_TARGET_WARM" "$t" "$forge_note"
	mounts_pair "warm tar (read every file)" "$MOUNTS_CMD_TAR" "$w/warm-tar" le "$MOUNTS_TARGET_WARM" "$t" "$forge_note"
	local rel
	rel=$(mounts_ratio "$w/warm-tar")
	echo "| warm tar, DESIGN §7 | the row above | | | | | ≤ $MOUNTS_TARGET_WARM_DESIGN× ext4 (DESIGN §7) | $(mounts_verdict "$rel" le "$MOUNTS_TARGET_WARM_DESIGN") |"
	mounts_pair "cold tar (read every file)" "$MOUNTS_CMD_TAR" "$w/cold-tar" le "$MOUNTS_TARGET_COLD" \
		"≤ $MOUNTS_TARGET_COLD× ext4 (DESIGN §7)" "$forge_note"

	echo
	echo "### Cold sequential read of a 1 GiB file"
	echo
	echo "A one-file tree, built once with \`$(tree_info "$big" what)\` on $(tree_info "$big" built). MiB/s is 1 GiB ÷ the command's wall time, the median of the runs; \`DIR\` is \`TREE\` or \`MNT\` as above. On a virtual disk, the host may still hold the file in its own cache after the guest dropped its caches: that shows as a wide spread of the ext4 row."
	echo
	echo "| row | command | median MiB/s | spread (min–max) | median time | CPU | × ext4 | target | result |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	mounts_rate_pair "cold sequential read" "$MOUNTS_CMD_DD" "$w/cold-dd" "$BIGFILE_SIZE" ge "$MOUNTS_TARGET_SEQ_READ" \
		"≥ $MOUNTS_TARGET_SEQ_READ× ext4" "$forge_note"

	echo
	mounts_checks "$w" "$forge_note"
	echo "- Load average at the end of the area: $(cut -d' ' -f1-3 /proc/loadavg) (at its start: see above)." >>"$w/notes"
	if [[ -s $w/dropped ]]; then
		echo "- Another process on the machine dropped the caches during $(wc -l <"$w/dropped") warm measurements (counted in \`/proc/vmstat\`): each was measured again, up to $MOUNTS_WARM_TRIES times in all, and the last try counts." >>"$w/notes"
	fi
	if [[ -s $w/notes ]]; then
		echo
		echo "Notes:"
		echo
		cat "$w/notes"
	fi
}

# mounts_import imports TREE into the area's store under REF and records its
# tree hash. Usage: mounts_import WORKDIR REF TREE
mounts_import() {
	local w=$1 ref=$2 tree=$3 status=0
	"$FORGE" store import --store "$MOUNTS_STORE" --ref "$ref" "$tree" >"$w/import-$ref.out" 2>"$w/import-$ref.err" || status=$?
	if ((status != 0)); then
		mounts_fail "$w" "\`forge store import\` of $(basename "$tree") exited with status $status" "$w/import-$ref.err"
		return 1
	fi
	local hash
	hash=$(tail -n 1 "$w/import-$ref.out")
	if ! [[ $hash =~ ^[0-9a-f]{64}$ ]]; then
		mounts_fail "$w" "\`forge store import\` of $(basename "$tree") did not print a tree hash as its last line (got '${hash:0:80}')" "$w/import-$ref.err"
		return 1
	fi
	echo "$hash" >"$w/hash-$ref"
}

# mounts_mount mounts REF at MOUNTPOINT, timed into mount-REF.t.
# Usage: mounts_mount WORKDIR REF MOUNTPOINT
mounts_mount() {
	local w=$1 ref=$2 mp=$3
	MOUNTS_ACTIVE+=("$mp")
	if ! mounts_time "$w/mount-$ref.t" "$w/mount-$ref.err" "$FORGE" store mount --store "$MOUNTS_STORE" "$ref" "$mp"; then
		mounts_fail "$w" "\`forge store mount\` of $ref failed" "$w/mount-$ref.err"
		return 1
	fi
	if ! mountpoint -q "$mp"; then
		mounts_fail "$w" "\`forge store mount\` of $ref returned but nothing is mounted at its mountpoint" "$w/mount-$ref.err"
		return 1
	fi
}

# mounts_umount unmounts a mountpoint of the area: with forge, lazily if it
# is busy, and with umount -l when forge cannot (its daemon is gone).
mounts_umount() {
	local mp=$1 m left=()
	if mountpoint -q "$mp"; then
		"$FORGE" store umount --store "$MOUNTS_STORE" "$mp" >/dev/null 2>&1 ||
			"$FORGE" store umount --store "$MOUNTS_STORE" --lazy "$mp" >/dev/null 2>&1 ||
			umount -l "$mp" 2>/dev/null ||
			log "mounts: cannot unmount $mp"
	fi
	for m in "${MOUNTS_ACTIVE[@]}"; do
		[[ $m == "$mp" ]] || left+=("$m")
	done
	MOUNTS_ACTIVE=("${left[@]}")
}

# mounts_cleanup unmounts what the area mounted and stops the store's
# daemon; it runs at the end of the area and from the EXIT trap.
mounts_cleanup() {
	local mp
	for mp in "${MOUNTS_ACTIVE[@]}"; do
		mounts_umount "$mp"
	done
	[[ -n $MOUNTS_SCRATCH ]] || return 0
	stop_forge_daemons "$MOUNTS_SCRATCH"
	# Whatever a daemon that died left mounted (ENOTCONN) goes too.
	umount_below "$MOUNTS_SCRATCH"
}

# mounts_time runs one timed command with its stdout discarded and its
# stderr in ERRFILE, and appends the CPU time that the store's daemon spent
# meanwhile to the timeit line as field 6. A failed command leaves no figure.
# Usage: mounts_time TIMES ERRFILE CMD [ARG...]
mounts_time() {
	local times=$1 err=$2 status=0 pid cpu0=0 cpu1=0 lines=0
	shift 2
	[[ -e $times ]] && lines=$(wc -l <"$times")
	pid=$(forge_daemon_pid "$MOUNTS_STORE")
	[[ -z $pid ]] || cpu0=$(proc_cpu "$pid")
	timeit "$times" "$@" >/dev/null 2>"$err" || status=$?
	# timeit writes no line when it cannot start the command.
	if [[ ! -e $times ]] || (($(wc -l <"$times") == lines)); then
		return $((status ? status : 1))
	fi
	if [[ $(forge_daemon_pid "$MOUNTS_STORE") != "$pid" ]]; then
		pid=$(forge_daemon_pid "$MOUNTS_STORE") cpu0=0
	fi
	[[ -z $pid ]] || cpu1=$(proc_cpu "$pid")
	sed -i "\$s/\$/ $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')/" "$times"
	if ((status != 0)); then
		sed -i '$d' "$times"
		return "$status"
	fi
}

# mounts_subst prints the arguments with DIR replaced by a path, one a line.
mounts_subst() {
	local dir=$1 a
	shift
	for a in "$@"; do
		printf '%s\n' "${a//DIR/$dir}"
	done
}

# mounts_warm times a warm command on TREE and on MNT (after one untimed run
# on each) into warm-NAME.ext4.t and warm-NAME.mount.t. The untimed runs'
# outputs feed the checks of identical results. Other programs on the
# machine may drop the caches (tests of cold reads do): a figure during
# which /proc/vmstat counted a drop is measured again, up to
# MOUNTS_WARM_TRIES times, and the retries are noted.
# Usage: mounts_warm WORKDIR NAME TREE MNT FORGE_OK CMD [ARG...] (DIR in args)
mounts_warm() {
	local w=$1 name=$2 tree=$3 mnt=$4 forge_ok=$5
	shift 5
	local where dir argv=() try drops times err
	for where in ext4 mount; do
		dir=$tree
		if [[ $where == mount ]]; then
			[[ -n $forge_ok ]] || continue
			dir=$mnt
		fi
		mapfile -t argv < <(mounts_subst "$dir" "$@")
		times=$w/warm-$name.$where.t err=$w/warm-$name.$where.err
		for ((try = 1; try <= MOUNTS_WARM_TRIES; try++)); do
			drops=$(mounts_drops)
			# The untimed run: fills the caches and records the output.
			if ! mounts_digest "$name" "$dir" "${argv[@]}" >"$w/out-$name.$where" 2>"$err"; then
				mounts_fail "$w" "warm-up of \`${argv[*]}\` failed" "$err"
				break
			fi
			# Writeback of what the warm-up dirtied (atimes) is not the timed run's.
			sync
			if ! mounts_time "$times" "$err" "${argv[@]}"; then
				mounts_fail "$w" "warm \`${argv[*]}\` failed" "$err"
				break
			fi
			[[ $(mounts_drops) != "$drops" ]] || break
			echo "warm $name on $where" >>"$w/dropped"
			log "mounts: another process dropped the caches during warm $name on $where (try $try of $MOUNTS_WARM_TRIES)"
			((try == MOUNTS_WARM_TRIES)) || sed -i '$d' "$times"
		done
	done
	mounts_compare "$w" "$name"
}

# mounts_drops prints how many times the caches have been dropped since boot.
mounts_drops() { awk '$1 == "drop_pagecache" || $1 == "drop_slab" { n += $2 } END { print n + 0 }' /proc/vmstat; }

# mounts_cold times a command on TREE and on MNT, each after dropping the
# caches, into cold-NAME.ext4.t and cold-NAME.mount.t.
# Usage: mounts_cold WORKDIR NAME TREE MNT FORGE_OK CMD [ARG...] (DIR in args)
mounts_cold() {
	local w=$1 name=$2 tree=$3 mnt=$4 forge_ok=$5
	shift 5
	local where dir argv=() err
	for where in ext4 mount; do
		dir=$tree
		if [[ $where == mount ]]; then
			[[ -n $forge_ok ]] || continue
			dir=$mnt
		fi
		mapfile -t argv < <(mounts_subst "$dir" "$@")
		err=$w/cold-$name.$where.err
		drop_caches
		if ! mounts_time "$w/cold-$name.$where.t" "$err" "${argv[@]}"; then
			mounts_fail "$w" "cold \`${argv[*]}\` failed" "$err"
			continue
		fi
		# dd reports what it copied on stderr: all of the file, or no figure.
		if [[ ${argv[0]} == dd ]] && [[ $(awk '/ bytes /{ print $1; exit }' "$err") != "$BIGFILE_SIZE" ]]; then
			sed -i '$d' "$w/cold-$name.$where.t"
			mounts_fail "$w" "cold \`${argv[*]}\` did not copy $BIGFILE_SIZE bytes" "$err"
		fi
	done
}

# mounts_digest runs the untimed warm-up of a row and prints what must be the
# same on ext4 and on the mount: the number of entries (find), the SHA-256 of
# the sorted listing of every entry's path, type, size, mode, owner, group and
# mtime in ns (find -printf; that listing is read right after the warm-up, and
# directories' sizes are left out: each filesystem has its own), or the
# archive's size (tar).
# Usage: mounts_digest NAME DIR CMD [ARG...]
mounts_digest() {
	local name=$1 dir=$2
	shift 2
	case $name in
	find) "$@" | wc -l ;;
	stat)
		"$@" >/dev/null
		find "$dir" -printf '%P\t%y\t%s\t%m\t%u\t%g\t%T@\n' |
			awk -F '\t' -v OFS='\t' '$2 == "d" { $3 = "-" } 1' | LC_ALL=C sort | sha256sum | cut -c1-16
		;;
	*) "$@" ;;
	esac
}

# mounts_compare notes, once per row, a run where the warm-up's output on the
# mount differs from that on ext4.
mounts_compare() {
	local w=$1 name=$2 a b
	[[ -s $w/out-$name.ext4 && -s $w/out-$name.mount ]] || return 0
	a=$(<"$w/out-$name.ext4")
	b=$(<"$w/out-$name.mount")
	[[ $a != "$b" ]] || return 0
	echo "$a $b" >>"$w/mismatch-$name"
}

# mounts_check_bigfile compares the big file through the mount with the
# original (both are in the page cache after the cold reads).
mounts_check_bigfile() {
	local w=$1 tree=$2 mnt=$3
	if cmp -s "$tree/$BIGFILE_NAME" "$mnt/$BIGFILE_NAME"; then
		echo same >"$w/out-bigfile"
	else
		echo differs >"$w/out-bigfile"
	fi
}

# mounts_checks prints the table of what must read back the same through
# the mount (the warm-up outputs of the last run, and every run compared).
mounts_checks() {
	local w=$1 note=$2 name label a b result
	echo "Results must be the same through the mount (the untimed warm-up runs of every run compared; values of the last run):"
	echo
	echo "| check | ext4 | mount | result |"
	echo "| --- | --- | --- | --- |"
	for name in find stat tar; do
		case $name in
		find) label="entries (\`find DIR | wc -l\`)" ;;
		stat) label="path, type, size (not of directories), mode, owner, group, mtime (ns) of every entry: SHA-256 prefix of the sorted \`find DIR -printf\`" ;;
		tar) label="tar archive bytes (\`tar cf - -C DIR . | wc -c\`)" ;;
		esac
		a=$(cat "$w/out-$name.ext4" 2>/dev/null || echo n/a)
		b=$(cat "$w/out-$name.mount" 2>/dev/null || true)
		if [[ -z $b ]]; then
			echo "| $label | $a | ${note:-not run} | not run |"
			continue
		fi
		result=PASS
		if [[ -s $w/mismatch-$name ]]; then
			result="FAIL ($(wc -l <"$w/mismatch-$name") of $BENCH_RUNS runs)"
			BENCH_FAILED+=("mounts: $label differs through the mount")
		fi
		echo "| $label | $a | $b | $result |"
	done
	if [[ -s $w/out-bigfile ]]; then
		result=PASS
		if [[ $(<"$w/out-bigfile") != same ]]; then
			result=FAIL
			BENCH_FAILED+=("mounts: the 1 GiB file differs through the mount")
		fi
		echo "| content of the 1 GiB file (\`cmp\`, first run) | | $(<"$w/out-bigfile") | $result |"
	fi
}

# mounts_fail records a failure: a note under the tables, the list of what
# did not run, and the tail of the command's stderr on the terminal.
mounts_fail() {
	local w=$1 what=$2 errfile=$3
	log "mounts: $what"
	local last=""
	if [[ -s $errfile ]]; then
		tail -n 20 "$errfile" | sed 's/^/bench:     /' >&2
		last=$(grep -v '^[[:space:]]*$' "$errfile" | tail -n 1 | cut -c1-200)
	fi
	echo "- $what${last:+; its last line on stderr: \`$last\`}." >>"$w/notes"
	BENCH_FAILED+=("mounts: $what")
}

# mounts_ratio prints the ratio of the medians of PREFIX.mount.t and
# PREFIX.ext4.t (wall time).
mounts_ratio() {
	[[ -s $1.mount.t && -s $1.ext4.t ]] || {
		echo n/a
		return
	}
	ratio "$(field "$1.mount.t" 1 | median)" "$(field "$1.ext4.t" 1 | median)"
}

# mounts_verdict is verdict, with "not run" for a missing ratio.
mounts_verdict() {
	[[ $1 != n/a ]] || {
		echo "not run"
		return
	}
	echo "$1× $(verdict "$1" "$2" "$3")"
}

# mounts_mount_row prints one row of the mount-time table.
# Usage: mounts_mount_row LABEL TIMES NOTE
mounts_mount_row() {
	local label=$1 times=$2 note=$3
	local cmd='forge store mount --store S REF MNT'
	local target
	target="< $(awk -v s="$MOUNTS_TARGET_MOUNT_S" 'BEGIN { printf "%d", s * 1000 }') ms"
	if [[ ! -s $times ]]; then
		echo "| $label | \`$cmd\` | ${note:-not run} | | | $target | not run |"
		return
	fi
	local med min max n cpu result
	read -r med min max n < <(field "$times" 1 | stats)
	cpu=$(awk '{ print $2 + $3 + $6 }' "$times" | median)
	result=$(awk -v v="$med" -v l="$MOUNTS_TARGET_MOUNT_S" 'BEGIN { print (v + 0 < l + 0) ? "PASS" : "FAIL" }')
	((n == BENCH_RUNS)) || result="$result ($n of $BENCH_RUNS runs)"
	echo "| $label | \`$cmd\` | $(mounts_ms "$med") | $(mounts_ms "$min") – $(mounts_ms "$max") | $(mounts_ms "$cpu") | $target | $result |"
}

# mounts_ms prints seconds as milliseconds.
mounts_ms() { awk -v s="$1" 'BEGIN { if (s == "" || s == "nan") print "n/a"; else printf "%.1f ms\n", s * 1000 }'; }

# mounts_secs prints seconds, in ms below one second (the warm rows are short).
mounts_secs() {
	awk -v s="$1" 'BEGIN {
		if (s == "" || s == "nan") { print "n/a"; exit }
		if (s < 1) printf "%.1f ms\n", s * 1000; else printf "%.2f s\n", s
	}'
}

# mounts_pair prints the ext4 row and the mount row of one command.
# Usage: mounts_pair LABEL COMMAND PREFIX OP LIMIT TARGET NOTE
mounts_pair() {
	local label=$1 cmd=$2 prefix=$3 op=$4 limit=$5 target=$6 note=$7
	local base="" where
	[[ -s $prefix.ext4.t ]] && base=$(field "$prefix.ext4.t" 1 | median)
	for where in ext4 mount; do
		local times=$prefix.$where.t l="$label, $where" c=${cmd//DIR/TREE} t="—"
		if [[ $where == mount ]]; then
			c=${cmd//DIR/MNT} t=$target
		else
			l="$l (baseline)"
		fi
		if [[ ! -s $times ]]; then
			local why=${note:-not run}
			[[ $where == ext4 ]] && why="failed: see the notes below"
			echo "| $l | \`$c\` | $why | | | | $t | not run |"
			continue
		fi
		local med min max n cpu r result="—"
		read -r med min max n < <(field "$times" 1 | stats)
		cpu=$(awk '{ print $2 + $3 + $6 }' "$times" | median)
		r=$(ratio "$med" "$base")
		[[ $where == mount ]] && result=$(verdict "$r" "$op" "$limit")
		((n == BENCH_RUNS)) || result="$result ($n of $BENCH_RUNS runs)"
		echo "| $l | \`$c\` | $(mounts_secs "$med") | $(mounts_secs "$min") – $(mounts_secs "$max") | $(mounts_secs "$cpu") | $r× | $t | $result |"
	done
}

# mounts_rate_pair prints the ext4 row and the mount row of a throughput
# figure: BYTES ÷ wall time of each run, in MiB/s.
# Usage: mounts_rate_pair LABEL COMMAND PREFIX BYTES OP LIMIT TARGET NOTE
mounts_rate_pair() {
	local label=$1 cmd=$2 prefix=$3 bytes=$4 op=$5 limit=$6 target=$7 note=$8
	local base="" where
	[[ -s $prefix.ext4.t ]] && base=$(awk -v b="$bytes" '{ print b / $1 / 1048576 }' "$prefix.ext4.t" | median)
	for where in ext4 mount; do
		local times=$prefix.$where.t l="$label, $where" c=${cmd//DIR/TREE} t="—"
		if [[ $where == mount ]]; then
			c=${cmd//DIR/MNT} t=$target
		else
			l="$l (baseline)"
		fi
		if [[ ! -s $times ]]; then
			local why=${note:-not run}
			[[ $where == ext4 ]] && why="failed: see the notes below"
			echo "| $l | \`$c\` | $why | | | | | $t | not run |"
			continue
		fi
		local med min max n secs cpu r result="—"
		read -r med min max n < <(awk -v b="$bytes" '{ print b / $1 / 1048576 }' "$times" | stats)
		secs=$(field "$times" 1 | median)
		cpu=$(awk '{ print $2 + $3 + $6 }' "$times" | median)
		r=$(ratio "$med" "$base")
		[[ $where == mount ]] && result=$(verdict "$r" "$op" "$limit")
		((n == BENCH_RUNS)) || result="$result ($n of $BENCH_RUNS runs)"
		echo "| $l | \`$c\` | $(printf '%.0f' "$med") | $(printf '%.0f' "$min") – $(printf '%.0f' "$max") | $(fmt_secs "$secs") | $(fmt_secs "$cpu") | $r× | $t | $result |"
	done
}
