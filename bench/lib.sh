# shellcheck shell=bash
# bench/lib.sh: helpers shared by bench/run and its areas (sourced, not run).
#
# Every figure of bench/ comes from these helpers, so that all areas measure
# the same way: a monotonic clock (bench/timeit), medians of BENCH_RUNS runs
# with their spread, caches dropped for cold figures, and a description of the
# machine next to every table.

# log prints a progress line on stderr; RESULTS.md gets only figures.
log() { printf 'bench: %s\n' "$*" >&2; }

die() {
	printf 'bench: error: %s\n' "$*" >&2
	exit 1
}

# need_pkgs installs the Debian packages whose named command is missing, each
# argument being COMMAND or COMMAND:PACKAGE. Silent when all are present, so
# repeated runs print nothing; the apt lock timeout lets it wait for another
# apt-get (make test installs its own packages) instead of failing.
need_pkgs() {
	local spec cmd pkg missing=()
	for spec in "$@"; do
		cmd=${spec%%:*}
		pkg=${spec#*:}
		command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
	done
	((${#missing[@]} == 0)) && return 0
	log "installing ${missing[*]} (apt-get)"
	local aptlog
	aptlog=$(mktemp)
	if ! { apt-get -o DPkg::Lock::Timeout=600 -qq update &&
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
			-qq -y install "${missing[@]}"; } >"$aptlog" 2>&1; then
		cat "$aptlog" >&2
		rm -f "$aptlog"
		die "apt-get install ${missing[*]} failed"
	fi
	rm -f "$aptlog"
}

# drop_caches writes dirty pages back and empties the page, dentry and inode
# caches, so that the next command reads from the disk (cold figures).
drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# warm_tree reads every byte and inode of a tree once so that it sits in the
# page cache (warm-source figures). tar's output goes through cat because GNU
# tar skips reading file contents when it writes straight to /dev/null.
warm_tree() {
	tar -C "$1" -cf - . 2>/dev/null | cat >/dev/null
}

# settle is run before every timed command: the previous run's writeback and
# deletions must not be billed to the next one. In cold mode it also drops the
# caches; in warm mode it re-reads the source tree so that it is cached.
# Usage: settle SOURCE_TREE
settle() {
	sync
	case ${BENCH_SOURCE:-warm} in
	cold) drop_caches ;;
	warm) warm_tree "$1" ;;
	*) die "BENCH_SOURCE must be warm or cold, not ${BENCH_SOURCE}" ;;
	esac
}

# Scratch space. The bench disk here is ext4 without a journal, and such an
# ext4 avoids reusing an inode for 60 s after its deletion, or 6 min while
# the inode's table block is dirty, which creating a neighbouring inode makes
# it: ext4's recently_deleted() makes every file creation scan past such
# inodes. Right after `rm -rf` of earlier copies, `cp -a` of the 12k-file
# tree took 2 to 4 times longer, and of the 31k-file tree up to 6 times, in
# kernel CPU. So no scratch directory is deleted while an area measures: each
# command and run gets its own, reclaim deletes them when bench/run exits,
# and await_fresh_inodes makes the next run wait out the window.

# inode_reuse_window prints how many seconds after a deletion file creation
# on DIR's filesystem stays slow: 360 on ext4 without a journal, else 0.
# BENCH_INODE_WAIT overrides it.
inode_reuse_window() {
	if [[ -n ${BENCH_INODE_WAIT:-} ]]; then
		echo "$BENCH_INODE_WAIT"
		return
	fi
	local src fstype
	read -r src fstype < <(findmnt -no SOURCE,FSTYPE -T "$1")
	if [[ $fstype == ext4 ]] && ! compgen -G "/proc/fs/jbd2/$(basename "$src")-*" >/dev/null; then
		echo 360
	else
		echo 0
	fi
}

# reclaim deletes scratch directories, writes the deletion back, and notes
# the time in BENCH_DIR/last-delete for await_fresh_inodes, also for the
# next run of bench/run.
reclaim() {
	local d deleted=""
	for d in "$@"; do
		[[ -e $d ]] || continue
		rm -rf --one-file-system "$d"
		deleted=1
	done
	[[ -n $deleted ]] || return 0
	sync
	date +%s >"$BENCH_DIR/last-delete"
}

# await_fresh_inodes sleeps until file creation on the bench disk no longer
# pays for the last reclaim (see above).
await_fresh_inodes() {
	local last=0 window wait
	[[ -r $BENCH_DIR/last-delete ]] && last=$(<"$BENCH_DIR/last-delete")
	window=$(inode_reuse_window "$BENCH_DIR")
	wait=$((last + window - $(date +%s)))
	((wait > 0)) || return 0
	log "waiting ${wait} s: bench/run deleted files $(($(date +%s) - last)) s ago, and this ext4 without a journal creates files slowly for ${window} s after a deletion (BENCH_INODE_WAIT=0 skips the wait)"
	sleep "$wait"
}

# shrink gives a scratch directory's disk space back without deleting a
# single inode: it truncates every regular file below each DIR to 0 bytes
# (not crossing into other filesystems, so never into a mount), which frees
# their blocks but keeps the inodes allocated, so file creation afterwards
# does not pay for recently deleted inodes (see above). Areas shrink what
# they will not read again, once its daemons are stopped, so that a whole
# bench/run fits on the disk. Usage: shrink DIR...
shrink() {
	local d
	for d in "$@"; do
		[[ -d $d ]] || continue
		find "$d" -xdev -type f -size +0 -exec truncate -s 0 {} +
	done
	sync
}

# need_space fails unless the filesystem of DIR has BYTES free.
need_space() {
	local dir=$1 bytes=$2 avail
	avail=$(df --output=avail -B1 "$dir" | tail -n 1 | tr -d ' ')
	((avail >= bytes)) ||
		die "$dir needs $(fmt_bytes "$bytes") free for this area, has $(fmt_bytes "$avail"): lower BENCH_RUNS or free space"
	return 0
}

# timeit runs a command under bench/timeit (monotonic clock plus rusage of
# the command's process tree) and appends one line to OUT:
#   elapsed_seconds user_seconds sys_seconds maxrss_kib exit_status
# The command's stdout and stderr pass through. Returns the command's status.
# Usage: timeit OUT CMD [ARG...]
timeit() {
	local out=$1
	shift
	"$BENCH_TOOLS/timeit" -o "$out" -- "$@"
}

# timeit_store is timeit for a command served by a store's daemon: its
# stdout goes to OUT and its stderr to ERR, and the CPU time that the daemon
# of STORE spent meanwhile (from /proc/PID/stat, 10 ms ticks; the daemon may
# start during the command) is appended to the line as field 6. A command
# that fails leaves no line. Returns the command's status.
# Usage: timeit_store TIMES OUT ERR STORE CMD [ARG...]
timeit_store() {
	local times=$1 out=$2 err=$3 store=$4 status=0 pid cpu0=0 cpu1=0 lines=0
	shift 4
	[[ -e $times ]] && lines=$(wc -l <"$times")
	pid=$(forge_daemon_pid "$store")
	[[ -z $pid ]] || cpu0=$(proc_cpu "$pid")
	timeit "$times" "$@" >"$out" 2>"$err" || status=$?
	# timeit writes no line when it cannot start the command.
	if [[ ! -e $times ]] || (($(wc -l <"$times") == lines)); then
		return $((status ? status : 1))
	fi
	if [[ $(forge_daemon_pid "$store") != "$pid" ]]; then
		pid=$(forge_daemon_pid "$store") cpu0=0
	fi
	[[ -z $pid ]] || cpu1=$(proc_cpu "$pid")
	sed -i "\$s/\$/ $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')/" "$times"
	if ((status != 0)); then
		sed -i '$d' "$times"
		return "$status"
	fi
}

# fmt_time prints seconds, in ms below one second.
fmt_time() {
	awk -v s="$1" 'BEGIN {
		if (s == "" || s == "nan") { print "n/a"; exit }
		if (s < 1) printf "%.1f ms\n", s * 1000; else if (s < 100) printf "%.2f s\n", s; else printf "%.0f s\n", s
	}'
}

# time_cells prints the cells "median | spread (min–max) | CPU" of a file of
# timeit lines, CPU being user+sys of the command plus field 6 (a daemon's).
time_cells() {
	local med min max cpu
	read -r med min max _ < <(field "$1" 1 | stats)
	cpu=$(awk '{ print $2 + $3 + $6 }' "$1" | median)
	echo "$(fmt_time "$med") | $(fmt_time "$min") – $(fmt_time "$max") | $(fmt_time "$cpu")"
}

# count_lines prints the number of lines of a file, 0 when it is missing.
count_lines() { if [[ -e $1 ]]; then wc -l <"$1"; else echo 0; fi; }

# field prints column N (1-based) of every line of a file of timeit lines.
field() { awk -v n="$2" '{ print $n }' "$1"; }

# stats reads numbers, one a line, on stdin and prints "median min max count".
# The median of an even count is the mean of the two middle values.
stats() {
	sort -g | awk '
		{ v[NR] = $1 }
		END {
			if (NR == 0) { print "nan nan nan 0"; exit }
			if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%.15g %.15g %.15g %d\n", m, v[1], v[NR], NR
		}'
}

# median prints the median of the numbers on stdin.
median() { stats | awk '{ print $1 }'; }

# ratio prints A/B with two decimals, or "n/a" when either is missing.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a == "" || b == "" || a == "nan" || b == "nan" || b + 0 == 0) { print "n/a"; exit }
		printf "%.2f\n", a / b
	}'
}

# ratio_fine is ratio with three decimals below 0.1, where two would show a
# figure of milliseconds against one of minutes as 0.00.
ratio_fine() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a == "" || b == "" || a == "nan" || b == "nan" || b + 0 == 0) { print "n/a"; exit }
		r = a / b
		if (r < 0.1) printf "%.3f\n", r; else printf "%.2f\n", r
	}'
}

# fmt_secs prints seconds with a precision that suits their size.
fmt_secs() {
	awk -v s="$1" 'BEGIN {
		if (s == "" || s == "nan") { print "n/a"; exit }
		if (s < 1) printf "%.3f s\n", s; else if (s < 100) printf "%.2f s\n", s; else printf "%.0f s\n", s
	}'
}

# fmt_minutes prints whole seconds as minutes and seconds.
fmt_minutes() { printf '%d min %02d s\n' $(($1 / 60)) $(($1 % 60)); }

# fmt_bytes prints a byte count in binary units.
fmt_bytes() {
	awk -v b="$1" 'BEGIN {
		if (b == "" || b == "nan") { print "n/a"; exit }
		split("B KiB MiB GiB TiB", u, " ")
		sign = b < 0 ? "-" : ""
		if (b < 0) b = -b
		i = 1
		while (b >= 1024 && i < 5) { b /= 1024; i++ }
		if (i == 1) printf "%s%d B\n", sign, b; else printf "%s%.1f %s\n", sign, b, u[i]
	}'
}

# verdict prints PASS when VALUE OP LIMIT holds (OP is "le" or "ge"), FAIL when
# it does not, and n/a when there is no value.
verdict() {
	awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
		if (v == "" || v == "n/a" || v == "nan") { print "n/a"; exit }
		ok = (op == "le") ? (v + 0 <= l + 0) : (v + 0 >= l + 0)
		print ok ? "PASS" : "FAIL"
	}'
}

# forge_daemon_pid prints the PID of the daemon serving STORE (an absolute
# path), or nothing. Clients start it as "forge daemon --store STORE".
forge_daemon_pid() {
	local f
	for f in /proc/[0-9]*/cmdline; do
		if [[ $(daemon_args "$f") == "daemon --store $1" ]]; then
			f=${f#/proc/}
			echo "${f%/cmdline}"
			return
		fi
	done
}

# daemon_args prints arguments 1 to 3 of a /proc/PID/cmdline file, or
# nothing when the process has gone meanwhile.
daemon_args() {
	{ tr '\0' '\n' <"$1" | sed -n '2,4p' | paste -sd ' '; } 2>/dev/null || true
}

# proc_cpu prints the user+system CPU seconds a process has used so far.
proc_cpu() {
	# Fields 14 and 15 of /proc/PID/stat, after the parenthesized name.
	sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null |
		awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($12 + $13) / hz }' || echo 0
}

# stop_forge_daemons stops the daemons serving stores below DIR, which this
# run started through forge commands: first asking them (forge daemon stop),
# then by their PID.
stop_forge_daemons() {
	local dir=$1 f pid store
	for f in /proc/[0-9]*/cmdline; do
		store=$(daemon_args "$f")
		[[ $store == "daemon --store $dir/"* ]] || continue
		store=${store#daemon --store }
		pid=${f#/proc/}
		pid=${pid%/cmdline}
		[[ -z $FORGE ]] || "$FORGE" daemon stop --store "$store" >/dev/null 2>&1 || true
		wait_gone "$pid" 10 && continue
		log "daemon $pid of $store did not stop when asked; sending SIGTERM"
		kill -TERM "$pid" 2>/dev/null || true
		wait_gone "$pid" 10 || log "daemon $pid of $store is still running"
	done
}

# wait_gone waits up to SECONDS for process PID to exit.
wait_gone() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}


# machine_description prints a Markdown list describing where the figures
# come from: CPU, cores, memory, kernel, and the disk and filesystem under the
# bench directory (which holds the trees and every destination).
machine_description() {
	local dir=$1 src fstype opts model disk rota size
	read -r src fstype opts < <(findmnt -no SOURCE,FSTYPE,OPTIONS -T "$dir")
	disk=$(lsblk -no PKNAME "$src" 2>/dev/null | head -n1)
	[[ -n $disk ]] || disk=$(basename "$src")
	model=$(lsblk -dno MODEL "/dev/$disk" 2>/dev/null | sed 's/ *$//')
	rota=$(lsblk -dno ROTA "/dev/$disk" 2>/dev/null | tr -d ' ')
	size=$(lsblk -dno SIZE "/dev/$disk" 2>/dev/null | tr -d ' ')
	case $rota in 0) rota="non-rotational" ;; 1) rota="reported rotational (virtual disks often are)" ;; *) rota="rotation unknown" ;; esac
	echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- CPU: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) cores online$(grep -q -m1 -w sha_ni /proc/cpuinfo && echo ', SHA-NI')"
	echo "- Memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "- Kernel: $(uname -sr); load average at the start of the area: $(cut -d' ' -f1-3 /proc/loadavg) (other processes on the machine widen the spread)"
	local journal=""
	if [[ $fstype == ext4 ]]; then
		journal=", no journal"
		compgen -G "/proc/fs/jbd2/$(basename "$src")-*" >/dev/null && journal=", with a journal"
	fi
	echo "- Disk of the bench directory: \`$src\` (${model:-no model}, ${size:-size unknown}, $rota), $fstype$journal ($opts)"
	echo "- Go: $(go version 2>/dev/null | awk '{ print $3 }'); forge commit: $(git -C "$BENCH_REPO" rev-parse --short HEAD 2>/dev/null || echo 'none yet')$(git -C "$BENCH_REPO" status --porcelain 2>/dev/null | grep -q . && echo ' (with uncommitted changes)')"
}

# results_update replaces the section of one area in RESULTS.md with the
# contents of a file, or appends it when the area has none yet. It wraps the
# contents in HTML comment markers, which delimit the sections so that other
# areas' sections are kept verbatim.
# Usage: results_update RESULTS_MD AREA SECTION_FILE
results_update() {
	local results=$1 area=$2 section=$3 tmp
	tmp=$(mktemp "$results.XXXXXX")
	# mktemp makes the file 0600, and the rename would give RESULTS.md that
	# mode: it is a file of the repository, for anyone to read.
	chmod 0644 "$tmp"
	if [[ ! -s $results ]]; then
		cat >"$results" <<-'EOF'
			# forge benchmark results

			<!-- Generated by bench/run: do not edit by hand, edits are lost on the next run. -->
			Generated by `bench/run` (`make bench`). Each area below is rewritten only when
			`bench/run` runs that area (`bench/run AREA`); the other areas keep their figures
			and their own date and machine. Times are medians of the runs shown with their
			spread (min–max); ratios divide medians measured in the same run.
		EOF
	fi
	awk -v area="$area" -v section="$section" '
		function emit(  line) {
			print "<!-- area:" area " begin -->"
			while ((getline line < section) > 0) print line
			close(section)
			print "<!-- area:" area " end -->"
		}
		$0 == "<!-- area:" area " begin -->" { skip = 1; emit(); done = 1; next }
		skip && $0 == "<!-- area:" area " end -->" { skip = 0; next }
		!skip { print }
		END { if (!done) { print ""; emit() } }
	' "$results" >"$tmp"
	mv "$tmp" "$results"
}
