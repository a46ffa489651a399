# shellcheck shell=bash
# bench/areas/cow.sh: area "cow" of bench/run (issue 4, "Copy-on-write
# mounts", points 3 "Cost" and 4 "Speed"; issue 9, rows 3, 4 and 6).
#
# Every run imports the Debian reference tree and a tree of 100k small files
# into a new store, mounts them read-write with `forge store mount --rw`,
# changes a few files and commits, and starts a command on each with
# `forge run --tree`; then untars 20k small files, writes and
# reads back a 1 GiB file, and installs packages with apt-get in a chroot,
# each on a new copy-on-write mount and, as the baseline, on ext4 of the same
# disk. Writes the "cow" section of RESULTS.md.

# Targets: issue 4 points 3 and 4, and DESIGN §7.
COW_TARGET_MOUNT_S=0.050 # forge store mount --rw < 50 ms for either tree
COW_TARGET_COMMIT_TREE=2.00 # commit of k files, 100k-file tree ÷ Debian ≤ 2×
COW_TARGET_UNTAR=2.00    # untar 20k small files ≤ 2× ext4
COW_TARGET_APT=1.30      # apt-get install in a chroot ≤ 1.3× ext4
COW_TARGET_DD=0.80       # large-file write and read-back ≥ 0.8× ext4

# COW_K files are changed before the first commit of a mount, and COW_K2
# others before its second one: the second commit shows how the cost grows
# with k on the same tree.
COW_K=10
COW_K2=100

# The tree of 100k small files and the tarball of the untar row. Their sizes
# and versions are part of their cache names, like the mixed tree's: changing
# the generator means bumping the version.
SMALL_FILES=100000
SMALL_VERSION=1
SMALL_TREE_CMD="bench/areas/cow.sh cow_gen_small: $SMALL_FILES files of 64 B–4 KiB in 1000 directories 3 levels deep"
UNTAR_FILES=20000
UNTAR_VERSION=1
UNTAR_BALL_CMD="bench/areas/cow.sh cow_gen_ball: $UNTAR_FILES files of 1–8 KiB in 300 directories, tar --sort=name"

# The apt row: packages that the Debian tree lacks, their .debs and the
# package lists downloaded once (cached like the trees), and at most
# COW_APT_RUNS runs of it, each installing in two chroots.
COW_APT_PKGS=(openssh-server python3 perl)
COW_APT_VERSION=1
COW_APT_RUNS=3

# What the area holds while it runs, for cow_cleanup (also run by the EXIT
# trap when the area dies half-way): its scratch directory, the forge
# mounts as "STORE<tab>MOUNTPOINT", and
# the bind mounts of the chroots in the order they were made.
COW_SCRATCH=""
COW_ACTIVE=()
COW_BINDS=()

# The timed commands, as RESULTS.md shows them.
COW_CMD_CP='cp -a TREE DEST && sync -f DEST'
COW_CMD_MOUNT='forge store mount --store S --rw REF MNT'
COW_CMD_IMPORT='forge store import --store S --ref REF TREE && sync -f S'
COW_CMD_COMMIT='forge store commit --store S MNT && sync -f S'
COW_CMD_APPEND='echo LINE >>MNT/FILE, for each file'
COW_CMD_UNTAR_EXT4='tar xf BALL -C DIR && sync -f DIR'
COW_CMD_UNTAR_MNT='tar xf BALL -C MNT && sync -f MNT'
COW_CMD_DD_WRITE='dd if=SRC of=DIR/big bs=1M count=1024 conv=fsync'
COW_CMD_DD_READ='dd if=DIR/big of=/dev/null bs=1M'
COW_CMD_APT="chroot DIR apt-get install -y --no-install-recommends --no-download ${COW_APT_PKGS[*]}"

# shellcheck disable=SC2016 # the command as shown, not expanded
COW_CMD_RUN='forge run --store S --tree REF -- /bin/bash -c '"'"'echo "ran $EPOCHREALTIME"'"'"

# COW_STAMP prints "start EPOCHREALTIME" and execs the command given, and
# COW_STAGE_CMD, run by forge run, prints "ran EPOCHREALTIME" as it starts:
# the difference is how long forge run takes to start a stage's process.
# shellcheck disable=SC2016 # expanded by the inner bash
COW_STAMP=(bash -c 'echo "start $EPOCHREALTIME"; exec "$@"' cow_stamp)
# shellcheck disable=SC2016 # expanded by the inner bash
COW_STAGE_CMD=(/bin/bash -c 'echo "ran $EPOCHREALTIME"')

# COW_DURABLE runs a command, then syncs the filesystem of its first
# argument, so that the time includes writing the data to the disk.
# shellcheck disable=SC2016 # expanded by the inner bash
COW_DURABLE=(bash -c '"${@:2}" && sync -f "$1"' cow_durable)

# COW_CHROOT runs a command in a chroot (the next argument) without questions
# and with the host's environment left out.
COW_CHROOT=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot)

# COW_APPEND appends a line to each file given.
# shellcheck disable=SC2016 # expanded by the inner bash
COW_APPEND=(bash -c 'for f; do echo "changed by bench/run cow" >>"$f" || exit; done' cow_append)

area_cow() {
	local section=$BENCH_WORK/cow.md
	{
		echo "## Copy-on-write mounts: start, commit, write-heavy stages"
		echo
		echo "Issue 4, \"Copy-on-write mounts\", points 3 (Cost) and 4 (Speed), and issue 9, rows 3 (start a stage), 4 (commit after a stage) and 6 (writes in a copy-on-write mount): \`bench/run cow\`, $BENCH_RUNS runs per row ($(cow_apt_runs) for the apt-get rows, at most $COW_APT_RUNS: each of their runs takes a while)."
		echo
		machine_description "$BENCH_DIR"
		echo
		cow_method
	} >"$section"

	# Whatever happens from here on, the binds, the mounts and the daemons
	# go (also those of the download of the .debs): the area's cleanup runs
	# before bench/run's own EXIT trap, which it keeps.
	local saved_trap prev_trap=()
	saved_trap=$(trap -p EXIT)
	eval "prev_trap=($saved_trap)" # trap -- 'COMMAND' EXIT
	# shellcheck disable=SC2064 # bench/run's trap command is expanded now, on purpose
	trap "cow_cleanup; ${prev_trap[2]:-}" EXIT

	local debian small ball big apt
	debian=$(debian_tree)
	small=$(cow_small_tree)
	ball=$(cow_untar_ball)
	big=$(bigfile_tree)
	apt=$(cow_apt_cache "$debian")
	# Every run keeps a store of each tree, and in the store and its mounts
	# the untarred files, two 1 GiB files and what apt-get installed, until
	# bench/run exits; its copies of the trees on ext4, the untarred files
	# and the 1 GiB file there are truncated once the run is over.
	local trees_bytes
	trees_bytes=$(($(du -sb "$debian" | cut -f1) + $(du -sb "$small" | cut -f1)))
	need_space "$BENCH_DIR" $((BENCH_RUNS * (trees_bytes + (3 << 30)) + 2 * trees_bytes + (2 << 30)))
	await_fresh_inodes
	cow_measure "$debian" "$small" "$ball" "$big" "$apt" >>"$section"

	# The binds go now; the mounts and their daemons stay, idle, until
	# bench/run exits (the trap above): unmounting deletes their scratch
	# files, which would slow down file creation in the areas that follow
	# (see lib.sh).
	cow_unbind_all
	results_update "$BENCH_RESULTS" cow "$section"
}

# cow_apt_runs prints how many runs the apt-get rows get.
cow_apt_runs() { echo $((BENCH_RUNS < COW_APT_RUNS ? BENCH_RUNS : COW_APT_RUNS)); }

cow_method() {
	cat <<-EOF
		How: each run makes a new store \`S\` and new directories on the bench disk (ext4,
		the same disk as the cached trees), and deletes nothing until bench/run exits:
		forge mounts stay mounted until then too, since unmounting deletes their scratch
		files, and on an ext4 without a journal recently deleted inodes slow down every
		file creation that follows (see the store area), here and in the areas after this
		one. Once a run has timed its rows, its files on ext4 (the copies of the trees, the
		untarred files, the 1 GiB file) are truncated (\`truncate -s 0\`: the disk gets
		its space back, and no inode is deleted). The area starts 6 min after bench/run
		last deleted files, for the same reason. Each run times every row
		in turn, baseline first, with a \`sync\` before each timed command. Times are
		wall-clock (monotonic), the median of the runs with the spread min–max; CPU is
		user+sys of the command (median), for forge commands and commands on a mount with
		that of the store's daemon, which does the work and serves the FUSE requests (from
		its \`/proc/PID/stat\`, 10 ms ticks). Ratios divide medians measured in the same
		run. The raw figures of the last run are kept in \`BENCH_DIR/raw/cow\` (by default
		under \`/var/tmp/forge-bench\`). Source trees are read into the page cache before
		each \`cp -a\` and import (\`tar cf - TREE | cat\`), the tarball and the 1 GiB
		source file before the rows that read them.
		Targets: issue 4, point 3 (\`forge store mount --rw\` < 50 ms for the Debian tree
		and for a 100k-file tree; a commit after changing k files costs O(k · depth),
		measured for k = $COW_K on both trees; DESIGN §7: "grows with k, not with the tree")
		and point 4 (untar 20k small files ≤ 2× ext4, apt-get install in a chroot ≤ 1.3×
		ext4, large-file write and read-back ≥ 0.8× ext4).
	EOF
}

# cow_gen_small writes the tree of SMALL_FILES small files into DIR (which
# must not exist): file i is dA/dB/dC/fNNNNNN with A, B, C its last three
# decimal digits, 64 B to 4 KiB of a text line naming it, mode 0644, and
# every entry's mtime 2024-01-01 00:00 UTC. Only arithmetic on i decides the
# names, sizes and contents, so every awk makes the same tree.
cow_gen_small() {
	local out=$1
	(
		umask 022
		mkdir -p "$out"
		cd "$out" || exit 1
		mkdir -p d{0..9}/d{0..9}/d{0..9}
		awk -v n="$SMALL_FILES" 'BEGIN {
			for (i = 0; i < n; i++) {
				rel = sprintf("d%d/d%d/d%d/f%06d", i % 10, int(i / 10) % 10, int(i / 100) % 10, i)
				size = 64 + (i * 7919) % 4033
				line = sprintf("forge bench small file %s\n", rel)
				s = line
				while (length(s) < size) s = s line
				printf "%s", substr(s, 1, size) > rel
				close(rel)
			}
		}' || exit 1
		find . -exec touch -h -d @1704067200 {} +
	)
}

# cow_small_tree prints the path of the 100k-file tree, generating it first
# when it is missing. Cached like the trees of bench/trees.sh.
cow_small_tree() {
	local tree=$BENCH_DIR/trees/small-v$SMALL_VERSION-$SMALL_FILES
	if [[ -d $tree && -f $tree.info ]]; then
		echo "$tree"
		return
	fi
	local partial=$tree.partial start
	discard_partial "$partial"
	rm -rf "$tree" "$tree.info"
	mkdir -p "$BENCH_DIR/trees"
	log "generating the tree of $SMALL_FILES small files (once; cached in $tree)"
	start=$(date +%s)
	cow_gen_small "$partial" || {
		discard_partial "$partial"
		die "generating $partial failed"
	}
	sync -f "$partial"
	mv -T "$partial" "$tree"
	record_tree "$tree" $(($(date +%s) - start)) "$SMALL_TREE_CMD"
	echo "$tree"
}

# cow_gen_ball writes the tarball of the untar row to FILE from the files it
# generates in DIR (below BENCH_WORK, deleted when bench/run exits: deleting
# them now would slow down the ext4 rows, see lib.sh): UNTAR_FILES files of
# 1–8 KiB, file i being dAA/eBB/fNNNNN with AA = i mod 20 and BB = i div 20
# mod 15, so 300 directories of about 67 files, owned by root, mode 0644,
# all mtimes 2024-01-01 00:00 UTC.
# Usage: cow_gen_ball DIR FILE
cow_gen_ball() {
	local dir=$1 ball=$2
	(
		umask 022
		mkdir -p "$dir"
		cd "$dir" || exit 1
		awk -v n="$UNTAR_FILES" 'BEGIN {
			for (i = 0; i < n; i++) {
				d = sprintf("d%02d/e%02d", i % 20, int(i / 20) % 15)
				if (!(d in made)) { made[d] = 1; system("mkdir -p " d) }
				rel = sprintf("%s/f%05d", d, i)
				size = 1024 + (i * 7919) % 7169
				line = sprintf("forge bench untar file %s\n", rel)
				s = line
				while (length(s) < size) s = s line
				printf "%s", substr(s, 1, size) > rel
				close(rel)
			}
		}' || exit 1
	) || return 1
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1704067200 \
		-cf "$ball" -C "$dir" .
}

# cow_untar_ball prints the path of the tarball of the untar row, making it
# first when it is missing.
cow_untar_ball() {
	local ball=$BENCH_DIR/trees/untar-v$UNTAR_VERSION-$UNTAR_FILES.tar
	if [[ -f $ball && -f $ball.info ]]; then
		echo "$ball"
		return
	fi
	local partial=$ball.partial start
	rm -f "$partial" "$ball" "$ball.info"
	mkdir -p "$BENCH_DIR/trees"
	log "making the tarball of $UNTAR_FILES small files (once; cached in $ball)"
	start=$(date +%s)
	cow_gen_ball "$BENCH_WORK/cow-untar-source" "$partial" || {
		rm -f "$partial"
		die "making $partial failed"
	}
	sync -f "$partial"
	mv -T "$partial" "$ball"
	{
		echo "what: $UNTAR_BALL_CMD"
		echo "built: $(date -u '+%Y-%m-%d %H:%M UTC')"
		echo "build_seconds: $(($(date +%s) - start))"
		echo "entries: $(tar tf "$ball" | wc -l)"
		echo "bytes: $(stat -c %s "$ball")"
	} >"$ball.info"
	echo "$ball"
}

# cow_apt_cache prints the directory that holds lists/ (apt's package lists)
# and archives/ (the .debs of COW_APT_PKGS and what they need) for the
# Debian tree, downloading them first when they are missing: in a chroot of
# a copy of the tree (below BENCH_WORK), with the host's resolv.conf, from
# the archive of the tree's own sources.list. The timed chroots bind both
# directories, so that apt-get install reads the same files and never the
# network.
# Usage: cow_apt_cache DEBIAN_TREE
cow_apt_cache() {
	local tree=$1
	local cache
	cache=$BENCH_DIR/trees/apt-v$COW_APT_VERSION-$(
		IFS=-
		echo "${COW_APT_PKGS[*]}"
	)
	if [[ -d $cache && -f $cache.info ]]; then
		echo "$cache"
		return
	fi
	local partial=$cache.partial prep=$BENCH_WORK/cow-apt-prep start
	rm -rf "$partial" "$cache" "$cache.info"
	mkdir -p "$partial/lists/partial" "$partial/archives/partial"
	log "downloading the package lists and .debs of ${COW_APT_PKGS[*]} (once; cached in $cache)"
	start=$(date +%s)
	discard_partial "$prep"
	cp -a "$tree" "$prep" || die "cp -a $tree $prep failed"
	local status=0 alog=$BENCH_DIR/trees/apt-download.log
	cow_chroot_setup "$prep" "$partial" || status=$?
	if ((status == 0)); then
		{
			cow_chroot_run "$prep" apt-get update &&
				cow_chroot_run "$prep" apt-get install -y -d --no-install-recommends "${COW_APT_PKGS[@]}" &&
				cow_chroot_run "$prep" apt-get install -s --no-install-recommends --no-download "${COW_APT_PKGS[@]}"
		} >"$alog" 2>&1 || status=$?
	fi
	cow_chroot_teardown "$prep"
	if ((status != 0)); then
		tail -n 20 "$alog" >&2
		rm -rf "$partial"
		die "downloading ${COW_APT_PKGS[*]} in a chroot of $prep failed (log: $alog)"
	fi
	mv -T "$partial" "$cache"
	{
		echo "what: apt-get update; apt-get install -d --no-install-recommends ${COW_APT_PKGS[*]}, in a chroot of the Debian tree"
		echo "built: $(date -u '+%Y-%m-%d %H:%M UTC')"
		echo "build_seconds: $(($(date +%s) - start))"
		echo "debs: $(find "$cache/archives" -name '*.deb' | wc -l)"
		echo "deb_bytes: $(find "$cache/archives" -name '*.deb' -printf '%s\n' | awk '{ n += $1 } END { print n + 0 }')"
	} >"$cache.info"
	echo "$cache"
}

# cow_chroot_setup prepares ROOT for apt-get: the host's resolv.conf, a
# policy-rc.d that keeps services from starting, and bind mounts of /proc,
# /sys, /dev and of APT_CACHE's lists/ and archives/ at /var/lib/apt/lists
# and /var/cache/apt/archives, each recorded in COW_BINDS as soon as it is
# made. Usage: cow_chroot_setup ROOT APT_CACHE
cow_chroot_setup() {
	local root=$1 cache=$2 d src
	cp -L --remove-destination /etc/resolv.conf "$root/etc/resolv.conf" || return 1
	printf '#!/bin/sh\n# bench/run cow: no service starts in this chroot.\nexit 101\n' >"$root/usr/sbin/policy-rc.d" || return 1
	chmod 0755 "$root/usr/sbin/policy-rc.d" || return 1
	for d in proc sys dev var/lib/apt/lists var/cache/apt/archives; do
		case $d in
		var/lib/apt/lists) src=$cache/lists ;;
		var/cache/apt/archives) src=$cache/archives ;;
		*) src=/$d ;;
		esac
		mkdir -p "$root/$d" || return 1
		mount --bind "$src" "$root/$d" || return 1
		COW_BINDS+=("$root/$d")
	done
}

# cow_chroot_teardown unmounts the binds below ROOT, last made first.
cow_chroot_teardown() {
	local root=$1 i left=()
	for ((i = ${#COW_BINDS[@]} - 1; i >= 0; i--)); do
		[[ ${COW_BINDS[i]} == "$root/"* ]] || continue
		cow_unbind "${COW_BINDS[i]}"
	done
	for i in "${COW_BINDS[@]}"; do
		[[ $i == "$root/"* ]] || left+=("$i")
	done
	COW_BINDS=("${left[@]}")
}

# cow_unbind unmounts one bind mount, lazily when it is busy.
cow_unbind() {
	mountpoint -q "$1" || return 0
	umount "$1" 2>/dev/null || umount -l "$1" 2>/dev/null || log "cow: cannot unmount $1"
}

# cow_chroot_run runs apt-get or a dpkg tool in the chroot ROOT (COW_CHROOT).
# Usage: cow_chroot_run ROOT CMD [ARG...]
cow_chroot_run() { "${COW_CHROOT[@]}" "$@"; }

# cow_cleanup unmounts what the area mounted (the chroots' binds first,
# last made first) and stops its stores' daemons; it runs at the end of the
# area and from the EXIT trap.
cow_cleanup() {
	local i
	cow_unbind_all
	for ((i = ${#COW_ACTIVE[@]} - 1; i >= 0; i--)); do
		cow_umount "${COW_ACTIVE[i]%%$'\t'*}" "${COW_ACTIVE[i]#*$'\t'}"
	done
	COW_ACTIVE=()
	# The download of the .debs binds in a command substitution, out of
	# COW_BINDS's sight.
	umount_below "$BENCH_WORK/cow-apt-prep"
	[[ -n $COW_SCRATCH ]] || return 0
	stop_forge_daemons "$COW_SCRATCH"
	# Whatever a daemon that died left mounted (ENOTCONN) goes too.
	umount_below "$COW_SCRATCH"
}

# cow_unbind_all unmounts the chroots' binds, last made first.
cow_unbind_all() {
	local i
	for ((i = ${#COW_BINDS[@]} - 1; i >= 0; i--)); do
		cow_unbind "${COW_BINDS[i]}"
	done
	COW_BINDS=()
}

# cow_umount unmounts a forge mount: with forge, lazily if it is busy, and
# with umount -l when forge cannot (its daemon is gone).
# Usage: cow_umount STORE MOUNTPOINT
cow_umount() {
	local store=$1 mp=$2
	mountpoint -q "$mp" || return 0
	"$FORGE" store umount --store "$store" "$mp" >/dev/null 2>&1 ||
		"$FORGE" store umount --store "$store" --lazy "$mp" >/dev/null 2>&1 ||
		umount -l "$mp" 2>/dev/null ||
		log "cow: cannot unmount $mp"
}

# cow_time runs one timed command with its stdout in OUTFILE and its stderr
# in ERRFILE, and appends to the timeit line, as field 6, the CPU time that
# the daemon of STORE spent meanwhile (0 when STORE is empty: an ext4 row).
# A failed command leaves no figure.
# Usage: cow_time TIMES OUTFILE ERRFILE STORE CMD [ARG...]
cow_time() {
	local times=$1 out=$2 err=$3 store=$4 status=0 pid="" cpu0=0 cpu1=0 lines=0
	shift 4
	[[ -e $times ]] && lines=$(wc -l <"$times")
	[[ -z $store ]] || pid=$(forge_daemon_pid "$store")
	[[ -z $pid ]] || cpu0=$(proc_cpu "$pid")
	timeit "$times" "$@" >"$out" 2>"$err" || status=$?
	# timeit writes no line when it cannot start the command.
	if [[ ! -e $times ]] || (($(wc -l <"$times") == lines)); then
		return $((status ? status : 1))
	fi
	if [[ -n $store && $(forge_daemon_pid "$store") != "$pid" ]]; then
		pid=$(forge_daemon_pid "$store") cpu0=0
	fi
	[[ -z $pid ]] || cpu1=$(proc_cpu "$pid")
	sed -i "\$s/\$/ $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')/" "$times"
	if ((status != 0)); then
		sed -i '$d' "$times"
		return "$status"
	fi
}

# cow_fail records a failure once: a note under the tables, the list of what
# did not run (COW_W/failed, added to BENCH_FAILED at the end of the area:
# cow_fail also runs in command substitutions), and the tail of the
# command's stderr on the terminal.
# Usage: cow_fail WHAT [ERRFILE]
cow_fail() {
	local what=$1 errfile=${2:-} last="" line
	log "cow: $what"
	if [[ -s $errfile ]]; then
		tail -n 20 "$errfile" | sed 's/^/bench:     /' >&2
		last=$(grep -v '^[[:space:]]*$' "$errfile" | tail -n 1 | cut -c1-200)
	fi
	line="- $what${last:+; its last line on stderr: \`$last\`}."
	# The same failure in every run is noted once.
	grep -qxF -- "$line" "$COW_W/notes" 2>/dev/null && return 0
	echo "$line" >>"$COW_W/notes"
	echo "cow: $what" >>"$COW_W/failed"
}

# cow_hash checks that the last line of a forge command's stdout is a tree
# hash and prints it.
# Usage: cow_hash OUTFILE ERRFILE WHAT
cow_hash() {
	local hash
	hash=$(tail -n 1 "$1")
	if ! [[ $hash =~ ^[0-9a-f]{64}$ ]]; then
		cow_fail "$3 did not print a tree hash as its last line (got '${hash:0:80}')" "$2"
		return 1
	fi
	echo "$hash"
}

# cow_import imports TREE into STORE as REF (timed, with sync -f STORE, into
# import-REF.t) and prints its tree hash.
# Usage: cow_import REF STORE TREE
cow_import() {
	local ref=$1 store=$2 tree=$3 out=$COW_W/import-$1.out err=$COW_W/import-$1.err
	settle "$tree"
	if ! cow_time "$COW_W/import-$ref.t" "$out" "$err" "$store" \
		"${COW_DURABLE[@]}" "$store" "$FORGE" store import --store "$store" --ref "$ref" "$tree"; then
		cow_fail "\`forge store import\` of $(basename "$tree") failed" "$err"
		return 1
	fi
	cow_hash "$out" "$err" "\`forge store import\` of $(basename "$tree")"
}

# cow_mount mounts REF (none: an empty tree) read-write at MOUNTPOINT,
# timed into TIMES when that is not empty.
# Usage: cow_mount TIMES STORE MOUNTPOINT [REF]
cow_mount() {
	local times=$1 store=$2 mp=$3 ref=${4:-} what
	what="\`forge store mount --rw\` of ${ref:-an empty tree}"
	mkdir -p "$mp"
	sync
	COW_ACTIVE+=("$store"$'\t'"$mp")
	local status=0
	if [[ -n $times ]]; then
		cow_time "$times" /dev/null "$COW_W/mount.err" "$store" \
			"$FORGE" store mount --store "$store" --rw ${ref:+"$ref"} "$mp" || status=$?
	else
		"$FORGE" store mount --store "$store" --rw ${ref:+"$ref"} "$mp" >/dev/null 2>"$COW_W/mount.err" || status=$?
	fi
	if ((status != 0)); then
		cow_fail "$what failed" "$COW_W/mount.err"
		return 1
	fi
	if ! mountpoint -q "$mp"; then
		cow_fail "$what returned but nothing is mounted at its mountpoint" "$COW_W/mount.err"
		return 1
	fi
}

# cow_commit commits MOUNTPOINT (timed, with sync -f STORE, into
# commit-NAME.t) and records what the store grew by in commit-NAME.growth:
# "new_nodes new_pack_bytes" (from forge store du). Prints the tree hash.
# Usage: cow_commit NAME STORE MOUNTPOINT
cow_commit() {
	local name=$1 store=$2 mp=$3 out=$COW_W/commit-$1.out err=$COW_W/commit-$1.err before after hash
	before=$(cow_du "$store") || return 1
	sync
	if ! cow_time "$COW_W/commit-$name.t" "$out" "$err" "$store" \
		"${COW_DURABLE[@]}" "$store" "$FORGE" store commit --store "$store" "$mp"; then
		cow_fail "\`forge store commit\` ($name) failed" "$err"
		return 1
	fi
	hash=$(cow_hash "$out" "$err" "\`forge store commit\` ($name)") || return 1
	after=$(cow_du "$store") || return 1
	awk -v a="$before" -v b="$after" 'BEGIN { split(a, x, " "); split(b, y, " "); print y[1] - x[1], y[2] - x[2] }' \
		>>"$COW_W/commit-$name.growth"
	echo "$hash"
}

# cow_du prints "nodes pack_bytes" of a store.
cow_du() {
	if ! "$FORGE" store du --store "$1" --json >"$COW_W/du.json" 2>"$COW_W/du.err" ||
		! jq -er '[.nodes, .pack_bytes] | map(numbers) | select(length == 2) | @tsv' "$COW_W/du.json" |
		tr '\t' ' '; then
		cow_fail "\`forge store du --store S --json\` failed or lacks nodes or pack_bytes" "$COW_W/du.err"
		return 1
	fi
}

# cow_pick prints K regular files of TREE (paths relative to it) spread
# evenly over its sorted list of files, at offset OFF (0 to 1) of each of K
# equal slices: two offsets give two disjoint sets.
# Usage: cow_pick TREE K OFF
cow_pick() {
	find "$1" -type f -printf '%P\n' | LC_ALL=C sort |
		awk -v k="$2" -v off="$3" '
			{ f[NR] = $0 }
			END { for (j = 0; j < k; j++) print f[int((j + off) * NR / k) + 1] }'
}

# cow_measure runs the rows BENCH_RUNS times and prints the tables.
# Usage: cow_measure DEBIAN SMALL BALL BIG APT_CACHE
cow_measure() {
	local debian=$1 small=$2 ball=$3 big=$4 apt=$5
	COW_W=$BENCH_DIR/raw/cow
	COW_SCRATCH=$BENCH_WORK/cow
	rm -rf "$COW_W"
	mkdir -p "$COW_W" "$COW_SCRATCH"
	local forge_note=${FORGE_MISSING:+not run: $FORGE_MISSING}
	local t
	for t in debian small; do
		local tree=$debian
		[[ $t == debian ]] || tree=$small
		cow_pick "$tree" "$COW_K" 0.5 >"$COW_W/files-$t-k$COW_K"
		cow_pick "$tree" "$COW_K2" 0.25 >"$COW_W/files-$t-k$COW_K2"
	done

	local i run
	for ((i = 1; i <= BENCH_RUNS; i++)); do
		log "cow: run $i/$BENCH_RUNS"
		run=$COW_SCRATCH/run$i
		mkdir -p "$run"
		cow_run_start "$i" "$run" "$debian" "$small"
		cow_run_untar "$i" "$run" "$ball"
		cow_run_dd "$i" "$run" "$big/$BIGFILE_NAME"
		((i > $(cow_apt_runs))) || cow_run_apt "$i" "$run" "$apt"
		# Each run's daemon keeps serving its mounts until the end, idle;
		# the run's ext4 files are not read again: their data go, their
		# inodes stay (see shrink in lib.sh), so that the runs fit on the disk.
		shrink "$run/copy-debian" "$run/copy-small" "$run/untar-ext4" "$run/dd-ext4" "$run/mnt-dd"
	done

	cow_tables "$debian" "$small" "$ball" "$apt" "$forge_note"
	echo "- Load average at the end of the area: $(cut -d' ' -f1-3 /proc/loadavg) (at its start: see above)." >>"$COW_W/notes"
	echo
	echo "Notes:"
	echo
	cat "$COW_W/notes"
	# What failed in command substitutions, too.
	[[ ! -s $COW_W/failed ]] || mapfile -t -O "${#BENCH_FAILED[@]}" BENCH_FAILED <"$COW_W/failed"
}

# cow_run_start times, in run I: cp -a of both trees, their first import
# into the run's store, their read-write mounts, and the commits after
# changing COW_K and then COW_K2 files on those mounts.
# Usage: cow_run_start I RUNDIR DEBIAN SMALL
cow_run_start() {
	local i=$1 run=$2 debian=$3 small=$4 t tree
	# The baselines: cp -a, as osbuild starts a stage. The Debian copy is
	# also the ext4 chroot of this run's apt row.
	for t in debian small; do
		tree=$debian
		[[ $t == debian ]] || tree=$small
		settle "$tree"
		cow_time "$COW_W/cp-$t.t" /dev/null "$COW_W/cp-$t.err" "" \
			"${COW_DURABLE[@]}" "$run/copy-$t" cp -a "$tree" "$run/copy-$t" ||
			cow_fail "cp -a of $(basename "$tree") failed" "$COW_W/cp-$t.err"
	done
	[[ -n $FORGE ]] || return 0

	local store=$run/store hash
	for t in debian small; do
		tree=$debian
		[[ $t == debian ]] || tree=$small
		hash=$(cow_import "$t" "$store" "$tree") || return 0
		echo "$hash" >"$run/hash-$t"
	done
	for t in debian small; do
		cow_mount "$COW_W/mount-$t.t" "$store" "$run/mnt-$t" "$t" || continue
		cow_change_commit "$i" "$t" "$store" "$run/mnt-$t" "$(<"$run/hash-$t")"
	done
	for t in debian small; do
		cow_run_stage "$t" "$store"
	done
}

# cow_run_stage times `forge run --tree T` of a command that prints when it
# starts (COW_STAGE_CMD) into run-T.t, and records in run-T.lat the time
# from the start of forge run to that of the command (both EPOCHREALTIME:
# the wall clock, which the buildroot's namespaces share with the host).
# Usage: cow_run_stage T STORE
cow_run_stage() {
	local t=$1 store=$2 out=$COW_W/run-$1.out err=$COW_W/run-$1.err
	sync
	if ! cow_time "$COW_W/run-$t.t" "$out" "$err" "$store" \
		"${COW_STAMP[@]}" "$FORGE" run --store "$store" --tree "$t" -- "${COW_STAGE_CMD[@]}"; then
		cow_fail "\`forge run --tree $t\` failed" "$err"
		return 0
	fi
	if ! awk '$1 == "start" { s = $2 } $1 == "ran" { r = $2 } END { if (s == "" || r == "") exit 1; printf "%.6f\n", r - s }' \
		"$out" >>"$COW_W/run-$t.lat"; then
		cow_fail "\`forge run --tree $t\` did not print the command's start time" "$err"
	fi
}

# cow_change_commit appends a line to COW_K files of the mount of tree T and
# commits, then does the same with COW_K2 other files. Each commit must
# differ from the tree before by exactly the files changed (forge store
# diff), which is checked in every run.
# Usage: cow_change_commit I T STORE MOUNTPOINT BASE_HASH
cow_change_commit() {
	local i=$1 t=$2 store=$3 mp=$4 base=$5 k hash files=() err
	for k in "$COW_K" "$COW_K2"; do
		mapfile -t files <"$COW_W/files-$t-k$k"
		err=$COW_W/append-$t-k$k.err
		sync
		if ! cow_time "$COW_W/append-$t-k$k.t" /dev/null "$err" "$store" "${COW_APPEND[@]}" "${files[@]/#/$mp/}"; then
			cow_fail "appending to $k files of the $t mount failed" "$err"
			return 0
		fi
		hash=$(cow_commit "$t-k$k" "$store" "$mp") || return 0
		if ! "$FORGE" store diff --store "$store" "$base" "$hash" >"$COW_W/diff-$t-k$k" 2>"$COW_W/diff.err"; then
			cow_fail "\`forge store diff\` after the commit of $k files failed" "$COW_W/diff.err"
		elif ! diff -q <(sed 's/^/M /' "$COW_W/files-$t-k$k" | LC_ALL=C sort) <(LC_ALL=C sort "$COW_W/diff-$t-k$k") >/dev/null; then
			echo "$i" >>"$COW_W/mismatch-diff-$t-k$k"
		else
			echo "$i" >>"$COW_W/checked-diff-$t-k$k"
		fi
		base=$hash
	done
}

# cow_run_untar times, in run I, untarring BALL into an empty ext4 directory
# and into a read-write mount of an empty tree, then the commit of the
# mount. The first run checks that both hold the same files.
# Usage: cow_run_untar I RUNDIR BALL
cow_run_untar() {
	local i=$1 run=$2 ball=$3 dir=$2/untar-ext4 mp=$2/mnt-untar store=$2/store
	mkdir -p "$dir"
	cat "$ball" >/dev/null
	sync
	cow_time "$COW_W/untar.ext4.t" /dev/null "$COW_W/untar.ext4.err" "" \
		"${COW_DURABLE[@]}" "$dir" tar xf "$ball" -C "$dir" ||
		cow_fail "\`tar xf\` into ext4 failed" "$COW_W/untar.ext4.err"
	[[ -n $FORGE && -s $run/hash-debian ]] || return 0
	cow_mount "" "$store" "$mp" || return 0
	cat "$ball" >/dev/null
	sync
	if ! cow_time "$COW_W/untar.mount.t" /dev/null "$COW_W/untar.mount.err" "$store" \
		"${COW_DURABLE[@]}" "$mp" tar xf "$ball" -C "$mp"; then
		cow_fail "\`tar xf\` into a read-write mount failed" "$COW_W/untar.mount.err"
		return 0
	fi
	cow_commit untar "$store" "$mp" >/dev/null || return 0
	((i == 1)) || return 0
	# The same files, modes, owners, mtimes and contents on both sides.
	local where d
	for where in ext4 mount; do
		d=$dir
		[[ $where == ext4 ]] || d=$mp
		if ! tar --sort=name -cf - -C "$d" . | sha256sum | cut -c1-16 >"$COW_W/out-untar.$where"; then
			echo "tar cf failed" >"$COW_W/out-untar.$where"
		fi
	done
}

# cow_run_dd times, in run I, writing SRC (1 GiB of random bytes, read into
# the page cache first) to a new file with dd conv=fsync and reading it back
# warm, on ext4 and on a read-write mount of an empty tree, then the commit
# of the mount. The first run checks the file read through the mount.
# Usage: cow_run_dd I RUNDIR SRC
cow_run_dd() {
	local i=$1 run=$2 src=$3 where d store=$2/store
	# A 1 GiB file written while another is allocated on the disk is
	# slower here, whichever side writes it (1.6 s, mostly system time,
	# against 0.7 s, on ext4 and on a mount alike): each side's file is
	# truncated once read back, and the sides take turns at going first.
	local order=(ext4 mount)
	((i % 2)) || order=(mount ext4)
	for where in "${order[@]}"; do
		if [[ $where == ext4 ]]; then
			d=$run/dd-ext4
			mkdir -p "$d"
			store=""
		else
			[[ -n $FORGE && -s $run/hash-debian ]] || continue
			d=$run/mnt-dd store=$run/store
			cow_mount "" "$store" "$d" || continue
		fi
		cat "$src" >/dev/null
		sync
		if ! cow_time "$COW_W/dd-write.$where.t" /dev/null "$COW_W/dd-write.$where.err" "$store" \
			dd if="$src" of="$d/big" bs=1M count=1024 conv=fsync; then
			cow_fail "\`dd\` writing 1 GiB on $where failed" "$COW_W/dd-write.$where.err"
			continue
		fi
		cow_dd_bytes "$COW_W/dd-write.$where" || continue
		# Warm: read once untimed, then timed.
		cat "$d/big" >/dev/null 2>&1 || true
		if ! cow_time "$COW_W/dd-read.$where.t" /dev/null "$COW_W/dd-read.$where.err" "$store" \
			dd if="$d/big" of=/dev/null bs=1M; then
			cow_fail "\`dd\` reading 1 GiB back on $where failed" "$COW_W/dd-read.$where.err"
			continue
		fi
		cow_dd_bytes "$COW_W/dd-read.$where" || continue
		if [[ $where == mount ]]; then
			((i > 1)) || { cmp -s "$src" "$d/big" && echo same || echo differs; } >"$COW_W/out-dd"
			cow_commit dd "$store" "$d" >/dev/null || true
		fi
		# Its blocks go before the other side writes (see above).
		truncate -s 0 "$d/big"
		sync
	done
}

# cow_dd_bytes drops the last figure of PREFIX.t unless dd copied 1 GiB,
# which it reports on stderr (PREFIX.err).
cow_dd_bytes() {
	[[ $(awk '/ bytes /{ print $1; exit }' "$1.err") == $((1 << 30)) ]] && return 0
	sed -i '$d' "$1.t"
	cow_fail "\`dd\` ($(basename "$1")) did not copy 1 GiB" "$1.err"
	return 1
}

# cow_run_apt times, in run I, apt-get install of COW_APT_PKGS in a chroot
# of the run's cp -a copy of the Debian tree and in a chroot of a new
# read-write mount of it, then the commit of the mount. The first run checks
# that dpkg sees the same installed packages on both and nothing to audit.
# Usage: cow_run_apt I RUNDIR APT_CACHE
cow_run_apt() {
	local i=$1 run=$2 cache=$3 where root store installed
	for where in ext4 mount; do
		if [[ $where == ext4 ]]; then
			root=$run/copy-debian store=""
			[[ -d $root/etc ]] || continue
		else
			[[ -n $FORGE && -s $run/hash-debian ]] || return 0
			root=$run/mnt-apt store=$run/store
			cow_mount "" "$store" "$root" debian || return 0
		fi
		log "cow: apt-get install in a chroot on $where"
		if ! cow_chroot_setup "$root" "$cache" 2>"$COW_W/apt-setup.err"; then
			cow_fail "preparing the chroot on $where for apt-get failed" "$COW_W/apt-setup.err"
			cow_chroot_teardown "$root"
			continue
		fi
		sync
		installed=""
		if cow_time "$COW_W/apt.$where.t" "$COW_W/apt.$where.out" "$COW_W/apt.$where.err" "$store" \
			"${COW_CHROOT[@]}" "$root" apt-get install -y --no-install-recommends --no-download "${COW_APT_PKGS[@]}"; then
			installed=1
			if ((i == 1)); then
				# shellcheck disable=SC2016 # dpkg-query's format, not the shell's
				cow_chroot_run "$root" dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\n' |
					sha256sum | cut -c1-16 >"$COW_W/out-apt-pkgs.$where"
				cow_chroot_run "$root" dpkg --audit 2>&1 | wc -l >"$COW_W/out-apt-audit.$where"
			fi
		else
			cow_fail "apt-get install in a chroot on $where failed" "$COW_W/apt.$where.err"
		fi
		cow_chroot_teardown "$root"
		[[ $where == mount && -n $installed ]] || continue
		cow_commit apt "$store" "$root" >/dev/null || true
	done
}

# cow_secs prints seconds, in ms below one second.
cow_secs() {
	awk -v s="$1" 'BEGIN {
		if (s == "" || s == "nan") { print "n/a"; exit }
		if (s < 1) printf "%.1f ms\n", s * 1000; else if (s < 100) printf "%.2f s\n", s; else printf "%.0f s\n", s
	}'
}

# cow_med prints the median wall time of a file of timeit lines, or nothing.
cow_med() { if [[ -s $1 ]]; then field "$1" 1 | median; fi; }

# cow_ratio prints A/B for a table: like ratio, with three decimals below 0.1,
# where two would show a mount of a few ms against a cp -a of seconds as 0.00.
cow_ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a == "" || b == "" || a == "nan" || b == "nan" || b + 0 == 0) { print "n/a"; exit }
		r = a / b
		if (r < 0.1) printf "%.3f\n", r; else printf "%.2f\n", r
	}'
}

# cow_growth prints the median of column COL of a commit's .growth file, or
# n/a. Usage: cow_growth FILE COL
cow_growth() {
	if [[ -s $1 ]]; then field "$1" "$2" | median; else echo n/a; fi
}

# cow_cells prints the cells "median | spread | CPU" of a file of timeit
# lines (CPU: the command's and the daemon's, field 6).
cow_cells() {
	local med min max n cpu
	read -r med min max n < <(field "$1" 1 | stats)
	cpu=$(awk '{ print $2 + $3 + $6 }' "$1" | median)
	echo "$(cow_secs "$med") | $(cow_secs "$min") – $(cow_secs "$max") | $(cow_secs "$cpu")"
}

# cow_result prints a verdict cell: VERDICT, with "(n of N runs)" when the
# file of timeit lines has fewer than N figures.
# Usage: cow_result VERDICT TIMES N
cow_result() {
	local n=0
	[[ -s $2 ]] && n=$(wc -l <"$2")
	if ((n == $3)); then echo "$1"; else echo "$1 ($n of $3 runs)"; fi
}

# cow_why prints why a row has no figures: the note when forge is missing,
# else a pointer to the notes.
cow_why() { echo "${1:-failed: see the notes below}"; }

# cow_blank prints N empty cells.
cow_blank() {
	local i s=""
	for ((i = 0; i < $1; i++)); do s+=" |"; done
	echo "$s"
}

# cow_tables prints the tables of the area from the raw figures in COW_W.
# Usage: cow_tables DEBIAN SMALL BALL APT_CACHE FORGE_NOTE
cow_tables() {
	local debian=$1 small=$2 ball=$3 apt=$4 note=$5
	local runs=$BENCH_RUNS apt_runs
	apt_runs=$(cow_apt_runs)
	local d_entries s_entries
	d_entries=$(tree_info "$debian" entries)
	s_entries=$(tree_info "$small" entries)
	declare -A label=(
		[debian]="Debian ($d_entries entries, $(fmt_bytes "$(tree_info "$debian" bytes)"))"
		[small]="100k files ($s_entries entries, $(fmt_bytes "$(tree_info "$small" bytes)"))"
	)
	declare -A short=([debian]="Debian tree" [small]="100k-file tree")

	echo
	echo "The trees: the Debian reference tree, built once with \`$(tree_info "$debian" what)\` in $(tree_info "$debian" build_seconds) s on $(tree_info "$debian" built), and a tree of $SMALL_FILES small files, generated once by \`$SMALL_TREE_CMD\` in $(tree_info "$small" build_seconds) s on $(tree_info "$small" built) (not part of the figures)."

	local t times base med r target result
	echo
	echo "### Starting a stage: \`forge store mount --rw\` and \`forge run\` against \`cp -a\` of the tree"
	echo
	echo "\`cp -a\` is how osbuild starts a stage on a base tree (DESIGN §7); the mount is of the tree imported into the run's store just before. \`forge run\` starts a stage as \`forge build\` does (issue 9, row 3): a copy-on-write mount of the stored tree at /run/osbuild/tree in a buildroot with new namespaces and the host's /usr, then the command, here a bash that prints \`ran\` and its \`\$EPOCHREALTIME\` as it starts; a wrapper prints \`start \$EPOCHREALTIME\` just before it execs forge run. The first \`forge run\` row is the difference (no CPU figure: it is part of the second's), the second the whole command, with the unmount of the tree after the command exits (nothing is committed)."
	echo
	echo "| tree | row | command | median | spread (min–max) | CPU | × cp -a | target | result |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	target="< $(awk -v s="$COW_TARGET_MOUNT_S" 'BEGIN { printf "%d", s * 1000 }') ms"
	for t in debian small; do
		times=$COW_W/cp-$t.t
		base=$(cow_med "$times")
		if [[ -s $times ]]; then
			echo "| ${label[$t]} | cp -a (baseline) | \`$COW_CMD_CP\` | $(cow_cells "$times") | 1.00× | — | $(cow_result — "$times" "$runs") |"
		else
			echo "| ${label[$t]} | cp -a (baseline) | \`$COW_CMD_CP\` | $(cow_why "") |$(cow_blank 3) — | not run |"
		fi
		times=$COW_W/mount-$t.t
		if [[ ! -s $times ]]; then
			echo "| ${label[$t]} | mount read-write | \`$COW_CMD_MOUNT\` | $(cow_why "$note") |$(cow_blank 3) $target | not run |"
			continue
		fi
		med=$(cow_med "$times")
		result=$(awk -v v="$med" -v l="$COW_TARGET_MOUNT_S" 'BEGIN { print (v + 0 < l + 0) ? "PASS" : "FAIL" }')
		echo "| ${label[$t]} | mount read-write | \`$COW_CMD_MOUNT\` | $(cow_cells "$times") | $(cow_ratio "$med" "$base")× | $target | $(cow_result "$result" "$times" "$runs") |"
	done
	for t in debian small; do
		base=$(cow_med "$COW_W/cp-$t.t")
		times=$COW_W/run-$t.lat
		if [[ -s $times ]]; then
			local lmed lmin lmax
			read -r lmed lmin lmax _ < <(stats <"$times")
			result=$(awk -v v="$lmed" -v l="$COW_TARGET_MOUNT_S" 'BEGIN { print (v + 0 < l + 0) ? "PASS" : "FAIL" }')
			echo "| ${label[$t]} | forge run: until the stage's process runs | \`$COW_CMD_RUN\`: from its start to the command's \`ran\` | $(cow_secs "$lmed") | $(cow_secs "$lmin") – $(cow_secs "$lmax") | — | $(cow_ratio "$lmed" "$base")× | $target (DESIGN §7) | $(cow_result "$result" "$times" "$runs") |"
		else
			echo "| ${label[$t]} | forge run: until the stage's process runs | \`$COW_CMD_RUN\` | $(cow_why "$note") |$(cow_blank 3) $target (DESIGN §7) | not run |"
		fi
		times=$COW_W/run-$t.t
		if [[ -s $times ]]; then
			echo "| ${label[$t]} | forge run: the whole command | the same, from its start to its exit | $(cow_cells "$times") | $(cow_ratio "$(cow_med "$times")" "$base")× | — | $(cow_result — "$times" "$runs") |"
		fi
	done

	echo
	echo "### Commit after changing k files of a tree"
	echo
	echo "On the mounts above, each run appends a line to $COW_K files spread evenly over the sorted list of the tree's regular files and commits, then appends a line to $COW_K2 other files and commits again (the same mount: the second commit ingests only what changed since the first). The baseline is the first import of the tree into the run's new store. New nodes and pack bytes are what \`forge store du --json\` counts after the commit minus before it (median); every commit must differ from the tree before it by exactly the files changed (\`forge store diff\`, checked in every run: see the checks below)."
	echo
	echo "| tree | row | command | median | spread (min–max) | CPU | new nodes | new pack bytes | × first import | target | result |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	local k growth nodes bytes
	for t in debian small; do
		times=$COW_W/import-$t.t
		base=$(cow_med "$times")
		if [[ -s $times ]]; then
			echo "| ${label[$t]} | first import (baseline) | \`$COW_CMD_IMPORT\` | $(cow_cells "$times") | | | 1.00× | — | $(cow_result — "$times" "$runs") |"
		else
			echo "| ${label[$t]} | first import (baseline) | \`$COW_CMD_IMPORT\` | $(cow_why "$note") |$(cow_blank 5) — | not run |"
		fi
		for k in "$COW_K" "$COW_K2"; do
			local which="first commit"
			[[ $k == "$COW_K" ]] || which="second commit"
			times=$COW_W/append-$t-k$k.t
			if [[ -s $times ]]; then
				echo "| ${label[$t]} | append to k = $k files (copies them up) | \`$COW_CMD_APPEND\` | $(cow_cells "$times") | | | $(cow_ratio "$(cow_med "$times")" "$base")× | — | $(cow_result — "$times" "$runs") |"
			fi
			times=$COW_W/commit-$t-k$k.t
			growth=$COW_W/commit-$t-k$k.growth
			if [[ ! -s $times ]]; then
				echo "| ${label[$t]} | $which, k = $k files | \`$COW_CMD_COMMIT\` | $(cow_why "$note") |$(cow_blank 5) — | not run |"
				continue
			fi
			nodes=$(cow_growth "$growth" 1)
			bytes=$(cow_growth "$growth" 2)
			echo "| ${label[$t]} | $which, k = $k files | \`$COW_CMD_COMMIT\` | $(cow_cells "$times") | $nodes | $(fmt_bytes "$bytes") | $(cow_ratio "$(cow_med "$times")" "$base")× | — | $(cow_result — "$times" "$runs") |"
		done
	done
	echo
	echo "| figure | from | value | target | result |"
	echo "| --- | --- | --- | --- | --- |"
	local grow_entries
	grow_entries=$(ratio "$s_entries" "$d_entries")
	r=$(ratio "$(cow_med "$COW_W/commit-small-k$COW_K.t")" "$(cow_med "$COW_W/commit-debian-k$COW_K.t")")
	result="not run"
	[[ $r == n/a ]] || result=$(verdict "$r" le "$COW_TARGET_COMMIT_TREE")
	echo "| commit of k = $COW_K files, 100k-file tree ÷ Debian tree (the first has ${grow_entries}× the entries) | medians of the commit rows | ${r}× | ≤ ${COW_TARGET_COMMIT_TREE}×: grows with k, not with the tree (DESIGN §7; issue 4 point 3: O(k · depth)) | $result |"
	for t in debian small; do
		r=$(ratio "$(cow_med "$COW_W/commit-$t-k$COW_K2.t")" "$(cow_med "$COW_W/commit-$t-k$COW_K.t")")
		echo "| commit of k = $COW_K2 ÷ k = $COW_K files, ${short[$t]} | medians of the commit rows | ${r}× | — (grows with k) | — |"
	done

	echo
	echo "### Write-heavy stage: untar $UNTAR_FILES small files"
	echo
	echo "\`BALL\` ($(fmt_bytes "$(tree_info "$ball" bytes)"), $(tree_info "$ball" entries) entries) was made once by \`$UNTAR_BALL_CMD\`; it is read into the page cache before each untar. \`DIR\` is a new empty directory on ext4, \`MNT\` a new read-write mount of an empty tree. Both untars are followed by \`sync -f\`, which writes the files to the disk (on the mount: to its upper layer, on the store's disk); they are in the store once committed, which is the next row."
	echo
	echo "| row | command | median | spread (min–max) | CPU | × ext4 | target | result |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
	base=$(cow_med "$COW_W/untar.ext4.t")
	target="≤ ${COW_TARGET_UNTAR}× ext4"
	if [[ -s $COW_W/untar.ext4.t ]]; then
		echo "| untar, ext4 (baseline) | \`$COW_CMD_UNTAR_EXT4\` | $(cow_cells "$COW_W/untar.ext4.t") | 1.00× | — | $(cow_result — "$COW_W/untar.ext4.t" "$runs") |"
	else
		echo "| untar, ext4 (baseline) | \`$COW_CMD_UNTAR_EXT4\` | $(cow_why "") |$(cow_blank 3) — | not run |"
	fi
	times=$COW_W/untar.mount.t
	if [[ -s $times ]]; then
		r=$(ratio "$(cow_med "$times")" "$base")
		echo "| untar, mount | \`$COW_CMD_UNTAR_MNT\` | $(cow_cells "$times") | ${r}× | $target | $(cow_result "$(verdict "$r" le "$COW_TARGET_UNTAR")" "$times" "$runs") |"
	else
		echo "| untar, mount | \`$COW_CMD_UNTAR_MNT\` | $(cow_why "$note") |$(cow_blank 3) $target | not run |"
	fi
	times=$COW_W/commit-untar.t
	if [[ -s $times ]]; then
		echo "| commit of the untarred files ($(cow_growth "$COW_W/commit-untar.growth" 1) new nodes, $(fmt_bytes "$(cow_growth "$COW_W/commit-untar.growth" 2)") of packs) | \`$COW_CMD_COMMIT\` | $(cow_cells "$times") | $(ratio "$(cow_med "$times")" "$base")× | — | $(cow_result — "$times" "$runs") |"
		# Untar and commit of the same run, added up run by run.
		if [[ $(wc -l <"$times") == $(wc -l <"$COW_W/untar.mount.t") ]]; then
			paste -d ' ' "$COW_W/untar.mount.t" "$times" |
				awk '{ print $1 + $7, $2 + $8, $3 + $9, 0, 0, $6 + $12 }' >"$COW_W/untar-commit.t"
			r=$(ratio "$(cow_med "$COW_W/untar-commit.t")" "$base")
			echo "| untar and commit, mount (their sum in each run) | the two rows above | $(cow_cells "$COW_W/untar-commit.t") | ${r}× | — | — |"
		fi
	else
		echo "| commit of the untarred files | \`$COW_CMD_COMMIT\` | $(cow_why "$note") |$(cow_blank 3) — | not run |"
	fi

	echo
	echo "### Large file: write and read back 1 GiB"
	echo
	echo "\`SRC\` is the 1 GiB file of random bytes of the mounts area (\`$BIGFILE_TREE_CMD\`), read into the page cache before each write. \`DIR\` is a new directory on ext4 or a new read-write mount of an empty tree, where \`big\` is a new file: on the mount it lives in the upper layer, on the store's disk, like a copied-up file, and overlayfs writes it there. \`conv=fsync\` makes both write the file to the disk before dd exits; on the mount it is in the store once committed, the last row. The read-back is warm: the file is read once untimed first. Each side's file is truncated once read back (and committed), before the other side writes: a 1 GiB file written while another is allocated is 2× slower on this disk, on ext4 and on a mount alike; the sides also take turns at going first (ext4 in odd runs). MiB/s is 1 GiB ÷ the command's wall time, the median of the runs."
	echo
	echo "| row | command | median MiB/s | spread (min–max) | median time | CPU | × ext4 | target | result |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	local op cmd
	for op in write read; do
		cmd=$COW_CMD_DD_WRITE
		[[ $op == write ]] || cmd=$COW_CMD_DD_READ
		cow_rate_pair "$op" "$cmd" "$COW_W/dd-$op" "$note"
	done
	times=$COW_W/commit-dd.t
	if [[ -s $times ]]; then
		local rate
		rate=$(awk '{ print 1024 / $1 }' "$times" | median)
		echo "| commit of the 1 GiB file, mount | \`$COW_CMD_COMMIT\` | $(printf '%.0f' "$rate") | | $(cow_secs "$(cow_med "$times")") | $(cow_secs "$(awk '{ print $2 + $3 + $6 }' "$times" | median)") | | — | $(cow_result — "$times" "$runs") |"
	fi

	echo
	echo "### apt-get install in a chroot"
	echo
	echo "apt-get installs ${COW_APT_PKGS[*]} (not in the Debian tree, which holds linux-image-amd64 already; with --no-install-recommends: $(tree_info "$apt" debs) .debs, $(fmt_bytes "$(tree_info "$apt" deb_bytes)")) in a chroot of the run's \`cp -a\` copy of the Debian tree on ext4 (the baseline) and of a new read-write mount of it, each with /proc, /sys and /dev bound from the host, the host's resolv.conf and a policy-rc.d that starts no service. The package lists and the .debs were downloaded once (\`$(tree_info "$apt" what)\`) into \`$(basename "$apt")\` under \`BENCH_DIR/trees\`, whose \`lists/\` and \`archives/\` both chroots bind at /var/lib/apt/lists and /var/cache/apt/archives: \`--no-download\` makes apt-get fail rather than fetch anything. $apt_runs runs (at most $COW_APT_RUNS: each takes a while). dpkg fsyncs every file it unpacks, on both sides to the disk (on the mount to its upper layer); the mount's files are in the store once committed, the last row."
	echo
	echo "| row | command | median | spread (min–max) | CPU | × ext4 | target | result |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
	base=$(cow_med "$COW_W/apt.ext4.t")
	target="≤ ${COW_TARGET_APT}× ext4"
	if [[ -s $COW_W/apt.ext4.t ]]; then
		echo "| apt-get install, ext4 (baseline) | \`$COW_CMD_APT\` | $(cow_cells "$COW_W/apt.ext4.t") | 1.00× | — | $(cow_result — "$COW_W/apt.ext4.t" "$apt_runs") |"
	else
		echo "| apt-get install, ext4 (baseline) | \`$COW_CMD_APT\` | $(cow_why "") |$(cow_blank 3) — | not run |"
	fi
	times=$COW_W/apt.mount.t
	if [[ -s $times ]]; then
		r=$(ratio "$(cow_med "$times")" "$base")
		echo "| apt-get install, mount | \`$COW_CMD_APT\` | $(cow_cells "$times") | ${r}× | $target | $(cow_result "$(verdict "$r" le "$COW_TARGET_APT")" "$times" "$apt_runs") |"
	else
		echo "| apt-get install, mount | \`$COW_CMD_APT\` | $(cow_why "$note") |$(cow_blank 3) $target | not run |"
	fi
	times=$COW_W/commit-apt.t
	if [[ -s $times ]]; then
		echo "| commit after apt-get ($(cow_growth "$COW_W/commit-apt.growth" 1) new nodes, $(fmt_bytes "$(cow_growth "$COW_W/commit-apt.growth" 2)") of packs) | \`$COW_CMD_COMMIT\` | $(cow_cells "$times") | $(ratio "$(cow_med "$times")" "$base")× | — | $(cow_result — "$times" "$apt_runs") |"
	fi

	echo
	cow_checks "$note"
}

# cow_rate_pair prints the ext4 row and the mount row of a dd figure: 1 GiB
# ÷ wall time of each run, in MiB/s.
# Usage: cow_rate_pair OP COMMAND PREFIX NOTE
cow_rate_pair() {
	local op=$1 cmd=$2 prefix=$3 note=$4 base="" where
	[[ -s $prefix.ext4.t ]] && base=$(awk '{ print 1024 / $1 }' "$prefix.ext4.t" | median)
	for where in ext4 mount; do
		local times=$prefix.$where.t l="$op, $where" t="—"
		if [[ $where == mount ]]; then
			t="≥ ${COW_TARGET_DD}× ext4"
		else
			l="$l (baseline)"
		fi
		if [[ ! -s $times ]]; then
			local why
			why=$(cow_why "")
			[[ $where == ext4 ]] || why=$(cow_why "$note")
			echo "| $l | \`$cmd\` | $why |$(cow_blank 4) $t | not run |"
			continue
		fi
		local med min max n secs cpu r result="—"
		read -r med min max n < <(awk '{ print 1024 / $1 }' "$times" | stats)
		secs=$(field "$times" 1 | median)
		cpu=$(awk '{ print $2 + $3 + $6 }' "$times" | median)
		r=$(ratio "$med" "$base")
		[[ $where == mount ]] && result=$(verdict "$r" ge "$COW_TARGET_DD")
		echo "| $l | \`$cmd\` | $(printf '%.0f' "$med") | $(printf '%.0f' "$min") – $(printf '%.0f' "$max") | $(cow_secs "$secs") | $(cow_secs "$cpu") | ${r}× | $t | $(cow_result "$result" "$times" "$BENCH_RUNS") |"
	done
}

# cow_checks prints the table of what must be the same on the mount as on
# ext4, and of what each commit must have stored.
cow_checks() {
	local note=${1:-not run} t k label result a b name
	echo "Checks: what the mounts and commits hold must be right (the diff checks in every run, the others in the first):"
	echo
	echo "| check | ext4 | mount | result |"
	echo "| --- | --- | --- | --- |"
	for t in debian small; do
		name="Debian tree"
		[[ $t == debian ]] || name="100k-file tree"
		for k in "$COW_K" "$COW_K2"; do
			label="commit after changing $k files of the $name: \`forge store diff\` lists exactly those files as modified"
			if [[ ! -s $COW_W/mismatch-diff-$t-k$k && ! -s $COW_W/checked-diff-$t-k$k ]]; then
				echo "| $label | | ${note} | not run |"
			elif [[ -s $COW_W/mismatch-diff-$t-k$k ]]; then
				echo "| $label | | differs in $(wc -l <"$COW_W/mismatch-diff-$t-k$k") runs (last: $(wc -l <"$COW_W/diff-$t-k$k") lines) | FAIL |"
				BENCH_FAILED+=("cow: the commit after changing $k files of the $name stored other changes")
			else
				echo "| $label | | $k files, in $(wc -l <"$COW_W/checked-diff-$t-k$k") of $BENCH_RUNS runs | PASS |"
			fi
		done
	done
	cow_check_pair "untarred files: SHA-256 prefix of \`tar --sort=name -cf - -C DIR .\` (paths, modes, owners, mtimes, contents)" untar "$note"
	if [[ -s $COW_W/out-dd ]]; then
		result=PASS
		if [[ $(<"$COW_W/out-dd") != same ]]; then
			result=FAIL
			BENCH_FAILED+=("cow: the 1 GiB file read back through the mount differs from what was written")
		fi
		echo "| 1 GiB file read back through the mount (\`cmp SRC MNT/big\`) | | $(<"$COW_W/out-dd") | $result |"
	else
		echo "| 1 GiB file read back through the mount (\`cmp SRC MNT/big\`) | | $note | not run |"
	fi
	cow_check_pair "installed packages: SHA-256 prefix of \`dpkg-query -W\` (name, version, status)" apt-pkgs "$note"
	a=$(cat "$COW_W/out-apt-audit.ext4" 2>/dev/null || echo n/a)
	b=$(cat "$COW_W/out-apt-audit.mount" 2>/dev/null || true)
	label="lines printed by \`dpkg --audit\` after apt-get"
	if [[ -z $b ]]; then
		echo "| $label | $a | $note | not run |"
	else
		result=PASS
		if [[ $b != 0 || $a != 0 ]]; then
			result=FAIL
			BENCH_FAILED+=("cow: dpkg --audit complains after apt-get install")
		fi
		echo "| $label | $a | $b | $result |"
	fi
}

# cow_check_pair prints a check row comparing out-NAME.ext4 and out-NAME.mount.
# Usage: cow_check_pair LABEL NAME NOTE
cow_check_pair() {
	local label=$1 name=$2 note=$3 a b result=PASS
	a=$(cat "$COW_W/out-$name.ext4" 2>/dev/null || echo n/a)
	b=$(cat "$COW_W/out-$name.mount" 2>/dev/null || true)
	if [[ -z $b ]]; then
		echo "| $label | $a | $note | not run |"
		return
	fi
	if [[ $a != "$b" ]]; then
		result=FAIL
		BENCH_FAILED+=("cow: $label differs on the mount")
	fi
	echo "| $label | $a | $b | $result |"
}
