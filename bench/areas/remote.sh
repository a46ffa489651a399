# shellcheck shell=bash
# bench/areas/remote.sh: area "remote" of bench/run (remote stores over S3,
# against restic on the same S3 server).
#
# Starts a SeaweedFS S3 server on 127.0.0.1 (scripts/install-s3-server's
# weed, on free ports, with its data on the bench disk), then, each run:
# pushes the Debian reference tree, imported into a store, to an empty
# bucket prefix with `forge store push` and backs the same tree up with
# `restic backup` into a new restic repository on the same server (the
# baseline); pushes and backs up again, nothing new; pulls it into a new,
# empty store (`forge store pull`, then `forge store export` to a
# directory) against `restic restore`. Then, once, builds the Debian sample
# (samples/debian-bookworm.json, as area debian makes it ready) cold on an
# empty store A with no remote (the baseline), pushes every stage of it
# with `forge build --remote R --push`, and builds it on empty stores B
# that take the stages from A's bucket. Writes the "remote" section of
# RESULTS.md.
#
# Knobs (environment; see also bench/run's):
#   BENCH_REMOTE_BUILD=0|1   the build rows (default 1: a cold build of the
#                            sample, minutes, plus BENCH_RUNS builds on host B)
#   BENCH_REMOTE_TREE=DIR    push, pull and back up DIR instead of the Debian
#                            reference tree (to try the area on a small tree)
#   BENCH_REMOTE_MANIFEST=F  build the format-2 manifest F, ready to build,
#                            instead of the sample (to try the build rows on
#                            a small manifest: no downloads)

# The bucket that every row uses: forge's pushes go under a new prefix per
# run, restic's repositories are new prefixes too.
REM_BUCKET=bench
REM_REF=bench

# The timed commands, as RESULTS.md shows them.
REM_CMD_BACKUP='cd TREE && restic -r s3:ENDPOINT/bench/restic-I --cache-dir CA backup --json .'
REM_CMD_PUSH='forge store push --store A --remote rI bench'
REM_CMD_RESTORE='restic -r s3:ENDPOINT/bench/restic-I --cache-dir CB restore latest --target DEST && sync -f DEST'
REM_CMD_PULL='forge store pull --store B --remote rI bench && sync -f B'
REM_CMD_EXPORT='forge store export --store B bench DEST && sync -f DEST'
REM_CMD_BUILD='forge build --store S --libdir L --output-directory OUT --monitor-fd 3 MANIFEST'

# REM_DURABLE runs a command, then syncs the filesystem of its destination
# (the first argument), as area store's DURABLE.
# shellcheck disable=SC2016 # expanded by the inner bash
REM_DURABLE=(bash -c '"${@:2}" && sync -f "$1"' rem_durable)
# REM_IN runs a command in a directory (restic backs up "." so that its
# restore writes the tree itself below --target, not its path).
# shellcheck disable=SC2016
REM_IN=(bash -c 'cd "$1" || exit 125; shift; exec "$@"' rem_in)
# REM_MONITOR opens fd 3 on a file (the first argument) for forge build's
# --monitor-fd 3 (timeit passes on only 0, 1 and 2) and execs the rest.
# shellcheck disable=SC2016
REM_MONITOR=(bash -c 'exec 3>"$1" || exit 125; shift; exec "$@"' rem_monitor)

# What the area holds while it runs, for rem_cleanup (also run by the EXIT
# trap): the scratch directory (stores, repositories' caches, restored and
# exported trees, the S3 server's data), the raw figures, and the S3
# server: its PID and what it leaves outside its directory.
REM_SCRATCH=""
REM_W=""
# A copy of the area's stderr, for the signal traps.
REM_STDERR=2
REM_WEED=""
REM_WEED_PID=""
REM_WEED_LITTER=()
# The S3 server's addresses and the one identity it knows (made up per run).
REM_ENDPOINT=""
REM_MASTER=""
REM_FILER=""
REM_ENV=()

area_remote() {
	local section=$BENCH_WORK/remote.md
	{
		echo "## Remote stores over S3: push, pull and a cold build from another host's bucket, against restic"
		echo
		echo "\`bench/run remote\`: $BENCH_RUNS runs per row, the build on an empty store with no remote once; source trees $BENCH_SOURCE."
		echo
		machine_description "$BENCH_DIR"
		echo
	} >"$section"

	local saved_trap prev_trap=() saved_sigs
	saved_trap=$(trap -p EXIT)
	eval "prev_trap=($saved_trap)" # trap -- 'COMMAND' EXIT
	# shellcheck disable=SC2064 # bench/run's trap command is expanded now, on purpose
	trap "rem_cleanup; ${prev_trap[2]:-}" EXIT
	# A signal that kills bash skips the EXIT trap, and would leave the S3
	# server running: while the area runs, a signal is an exit (after the
	# command in the foreground, when only bash received it).
	# The traps put back the area's stderr first: the signal may come while
	# a function's stderr goes to a file (timeit's, for one).
	saved_sigs=$(trap -p INT TERM HUP)
	exec {REM_STDERR}>&2
	trap 'exec 2>&$REM_STDERR; exit 130' INT
	trap 'exec 2>&$REM_STDERR; exit 143' TERM
	trap 'exec 2>&$REM_STDERR; exit 129' HUP

	REM_W=$BENCH_DIR/raw/remote
	REM_SCRATCH=$BENCH_WORK/remote
	rem_kill_leftover
	rm -rf "$REM_W"
	mkdir -p "$REM_W" "$REM_SCRATCH"
	need_pkgs restic curl ss:iproute2 jq:jq sha256sum:coreutils
	# Built once per machine (minutes the first time); rem_start_server
	# says so when there is none.
	REM_WEED=$(rem_weed_binary 2>"$REM_W/install-s3-server.err") || REM_WEED=""

	local tree
	if [[ -n ${BENCH_REMOTE_TREE:-} ]]; then
		[[ -d $BENCH_REMOTE_TREE ]] || die "BENCH_REMOTE_TREE=$BENCH_REMOTE_TREE is not a directory"
		tree=$(cd "$BENCH_REMOTE_TREE" && pwd)
	else
		tree=$(debian_tree)
	fi
	# A run holds the tree three times on disk (the second store, restic's
	# restore, forge's export: truncated once the run is done) and twice in
	# the S3 server (forge's prefix, restic's repository: kept); store A
	# holds it once. The build rows: store A after the sample is 1.2 GiB,
	# its images and each host B's about 2 GiB.
	local bytes
	bytes=$(du -sb "$tree" | cut -f1)
	need_space "$BENCH_DIR" $(((4 + 2 * BENCH_RUNS) * bytes + ((4 + 2 * BENCH_RUNS) << 30)))
	# Restore and export create as many files as the tree has (see
	# await_fresh_inodes in lib.sh).
	await_fresh_inodes
	{
		rem_method
		rem_measure "$tree"
	} >>"$section"

	rem_cleanup
	if [[ -n $saved_trap ]]; then
		eval "$saved_trap"
	else
		trap - EXIT
	fi
	trap - INT TERM HUP
	[[ -z $saved_sigs ]] || eval "$saved_sigs"
	exec {REM_STDERR}>&-
	results_update "$BENCH_RESULTS" remote "$section"
}

rem_method() {
	cat <<-EOF
		How: one SeaweedFS $([[ -x $REM_WEED ]] && "$REM_WEED" version 2>/dev/null | awk '{ print $3 }') server (\`weed server -s3\`: master, volume server,
		filer and S3 gateway in one process, built by \`scripts/install-s3-server\`) on 127.0.0.1, its data on the bench disk,
		one bucket \`$REM_BUCKET\`, path-style requests signed with a key made up for the run;
		every client runs on the same machine, so the figures are of the tools and the
		server, not of a network. restic $(restic version 2>/dev/null | awk '{ print $2 }') (Debian's package) is the baseline: it
		encrypts and compresses (its defaults: zstd "auto", repository version 2);
		forge sends its chunks as it stores them.

		- **Push** (\`A\` is a store holding the tree, imported with \`forge store import
		  --ref $REM_REF\` before the runs, not timed; its daemon runs): run \`I\` adds a remote
		  \`rI\` = \`s3://$REM_BUCKET/forge-I\`, an empty prefix (\`forge store remote add --endpoint\`,
		  not timed), and pushes the ref; restic's baseline is \`restic init\` of a new
		  repository \`restic-I\` in the same bucket (not timed), then \`restic backup\` of the
		  tree as a directory, with a new cache \`CA\`. **Push again**: the same commands
		  again (forge: the same remote; restic: the same repository and cache, which
		  finds the previous snapshot and skips the unchanged files).
		- **Pull**: \`B\` is a new, empty store (made, and its daemon started, by \`forge store
		  remote add\`, not timed); restic's baseline restores the latest snapshot with a
		  new cache \`CB\` into a new directory, as a second host would. restic restore
		  writes a directory: the like-for-like forge row is the pull followed by \`forge
		  store export\` of the pulled ref to a new directory (the two timed one after the
		  other, no settling between them; the row adds their times). Every pull, export
		  and restore is followed by \`sync -f\` of its destination (forge fsyncs its packs;
		  restic and the export do not).
		- **Remote mount** (\`C\` is a new, empty store, made by \`forge store remote add\`, not
		  timed): \`forge store mount --remote rI $REM_REF MNT\` and the first byte of
		  \`$REM_LAZY_FILE\` read through it, timed together (the mount fetches the tree
		  object, then the file's one chunk); then \`tar\` of the whole tree through that
		  mount, which fetches, verifies and keeps in \`C\` every chunk; then, after a new
		  mount (not timed), the same \`tar\` again, which fetches nothing. Their fetched
		  chunks, bytes and requests are the daemon's log line when each mount ends. The
		  ratio column divides by restic's restore, what a host without lazy mounts runs
		  before it can read anything.
		- **Requests and bytes** are what each tool reports: forge's summary line on
		  stderr ("R requests, SIZE sent" / "received", SIZE rounded to 0.1 of its unit);
		  restic's \`--json\` backup summary has no request count and gives \`data_added\`
		  (what the snapshot added to the repository, packed), and its restore reports
		  neither: "—".
		- **Build**: \`MANIFEST\` is $([[ -n ${BENCH_REMOTE_MANIFEST:-} ]] && echo "\`$(basename "$BENCH_REMOTE_MANIFEST")\` (BENCH_REMOTE_MANIFEST)" || echo "\`samples/debian-bookworm.json\` made ready by \`gen-manifest\`, as in area debian"), \`L\` the
		  libdir built from this checkout. Host A: an empty store, \`$REM_CMD_BUILD\`,
		  once, cold (the baseline: the build with no remote, measured here); then the same
		  with \`--remote R --push\` (\`R\` = \`s3://$REM_BUCKET/build\`), every stage cached, which
		  pushes every stage. Host B, $BENCH_RUNS times: a new, empty store with the same remote
		  added (not timed), its daemon stopped, caches dropped, then
		  \`forge build --store B --libdir L --remote R --output-directory OUT --monitor-fd 3 MANIFEST\`;
		  its requests and bytes are the sums of its "pulled from remote" lines (a
		  stage found missing in the bucket costs requests that no line counts).
		  BENCH_REMOTE_BUILD=0 leaves the build rows out.

		Times are wall-clock (monotonic), the median of the runs with the spread
		min–max. CPU is user+sys of the command plus, for forge, its store's daemon
		meanwhile (from its \`/proc/PID/stat\`); server CPU is the S3 server's meanwhile.
		$([[ $BENCH_SOURCE == cold ]] && echo "Caches are dropped (\`sync; echo 3 > /proc/sys/vm/drop_caches\`) before every timed command (BENCH_SOURCE=cold)." || echo "Before each push the source (the tree for restic, store \`A\` for forge) is read into the page cache (\`tar cf - DIR | cat\`); before each pull and restore only \`sync\`: the server's data, just written, is in the page cache already. The build rows drop the caches first (cold).")
		Each run times every row in turn, in the order of the table. The raw figures and
		every command's output are kept in \`BENCH_DIR/raw/remote\`.
	EOF
}

# --- the S3 server ---

# rem_weed_binary prints the path of the weed binary (built once per
# machine by scripts/install-s3-server: minutes the first time).
rem_weed_binary() {
	PATH=$PATH:/usr/local/go/bin "$BENCH_REPO/scripts/install-s3-server" | tail -n 1
}

# rem_kill_leftover kills the S3 server that an interrupted run left (its
# PID in BENCH_DIR/remote-weed.pid, and its command line naming the bench's
# scratch directory), by PID.
rem_kill_leftover() {
	local pidfile=$BENCH_DIR/remote-weed.pid pid
	[[ -r $pidfile ]] || return 0
	pid=$(<"$pidfile")
	rm -f "$pidfile"
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "-dir=$BENCH_WORK/remote/"; then
		log "remote: stopping the S3 server $pid that an earlier run left"
		kill -KILL "$pid" 2>/dev/null || true
		wait_gone "$pid" 10 || log "remote: the S3 server $pid is still running"
	fi
}

# rem_free_ports prints N distinct TCP ports free on 127.0.0.1 now, drawn at
# random below the kernel's ephemeral range, as integration/itest does (weed's
# processes connect to each other, and an outgoing connection could take a
# port of that range before the server listens on it).
rem_free_ports() {
	local n=$1 lo=10000 hi=32768 p chosen=" " tries=0
	read -r hi _ </proc/sys/net/ipv4/ip_local_port_range || hi=32768
	((hi - lo >= 1000)) || die "remote: no room for ports below the ephemeral range ($hi)"
	while ((n > 0)); do
		((tries++ < 1000)) || die "remote: found no free ports"
		p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo)))
		[[ $chosen != *" $p "* ]] || continue
		[[ -z $(ss -Hltn "sport = :$p" 2>/dev/null) ]] || continue
		chosen+="$p "
		echo "$p"
		n=$((n - 1))
	done
}

# rem_probe waits until a GET of URL answers STATUS, the server exits or
# DEADLINE (epoch seconds) passes.
# Usage: rem_probe URL STATUS DEADLINE
rem_probe() {
	local url=$1 want=$2 deadline=$3 got
	while :; do
		got=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" 2>/dev/null) || true
		[[ $got != "$want" ]] || return 0
		kill -0 "$REM_WEED_PID" 2>/dev/null || {
			log "remote: the S3 server exited before $url answered $want"
			return 1
		}
		if (($(date +%s) > deadline)); then
			log "remote: $url did not answer $want within 60 s (last: ${got:-no answer})"
			return 1
		fi
		sleep 0.2
	done
}

# rem_start_server starts the S3 server and waits until it takes writes,
# then makes the bucket; as integration/itest's StartS3 with one process:
# its master, volume server, filer and gateway answer, its master assigns,
# and its filer has joined the lock ring that conditional writes need
# (else the first of them waits for it, up to 10 s). Sets REM_ENDPOINT,
# REM_ENV and the rest. Returns non-zero, with a note, when it cannot.
rem_start_server() {
	local dir=$REM_SCRATCH/s3 sockets
	if [[ ! -x $REM_WEED ]]; then
		rem_fail "\`scripts/install-s3-server\` gave no weed binary" "$REM_W/install-s3-server.err"
		return 1
	fi
	mkdir -p "$dir/config" "$dir/volume" "$dir/master"
	# As the test harness: no warm-up window for a fresh master (there are
	# no veteran volume servers to wait for), two volumes per growth.
	printf '[master.volume_growth]\nallocation_deferral = "0s"\ncopy_1 = 2\ncopy_2 = 2\ncopy_3 = 1\ncopy_other = 1\n' >"$dir/config/master.toml"
	local key secret
	key=FB$(od -An -tx1 -N9 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F')
	secret=$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n')
	jq -n --arg k "$key" --arg s "$secret" '{identities: [{name: "forge-bench",
		credentials: [{accessKey: $k, secretKey: $s}],
		actions: ["Admin", "Read", "Write", "List", "Tagging"]}]}' >"$dir/s3.json"
	chmod 0600 "$dir/s3.json"
	# Unix sockets need a short path.
	sockets=$(mktemp -d /tmp/weed-bench-XXXXXX)
	REM_WEED_LITTER+=("$sockets")
	local ports=() ip=127.0.0.1
	mapfile -t ports < <(rem_free_ports 8)
	if ((${#ports[@]} != 8)); then
		rem_fail "found no 8 free ports on 127.0.0.1 for the S3 server"
		return 1
	fi
	local mp=${ports[0]} mg=${ports[1]} vp=${ports[2]} vg=${ports[3]} fp=${ports[4]} fg=${ports[5]} sp=${ports[6]} sg=${ports[7]}
	REM_MASTER=$ip:$mp.$mg
	REM_FILER=$ip:$fp.$fg
	REM_ENDPOINT=http://$ip:$sp
	# weed server leaves gRPC sockets in /tmp, named after the ports.
	REM_WEED_LITTER+=(/tmp/seaweedfs-master-grpc-"$mg".sock /tmp/seaweedfs-volume-grpc-"$vg".sock
		/tmp/seaweedfs-filer-grpc-"$fg".sock /tmp/seaweedfs-s3-grpc-"$sg".sock)
	log "remote: starting the S3 server ($REM_WEED) on $REM_ENDPOINT"
	# Its own fds: not bench/run's lock (fd 9), which a server left
	# running would hold.
	(
		exec 9>&-
		((REM_STDERR == 2)) || exec {REM_STDERR}>&-
		cd "$dir" || exit 125
		exec "$REM_WEED" -logtostderr -v=0 -config_dir="$dir/config" server -ip="$ip" -ip.bind="$ip" \
			-dir="$dir/volume" -master.dir="$dir/master" \
			-master.port="$mp" -master.port.grpc="$mg" -master.peers=none -master.telemetry=false \
			-volume.port="$vp" -volume.port.grpc="$vg" -volume.preStopSeconds=0 \
			-filer.port="$fp" -filer.port.grpc="$fg" -filer.localSocket="$sockets/filer.sock" \
			-s3 -s3.port="$sp" -s3.port.grpc="$sg" -s3.port.iceberg=0 -s3.port.lance=0 \
			-s3.config="$dir/s3.json" -s3.localSocket="$sockets/s3.sock" \
			-s3.autoCreateBucket=false -s3.iam=false
	) >"$REM_W/weed.log" 2>&1 </dev/null &
	REM_WEED_PID=$!
	# No job notice ("Killed") when rem_stop_server kills it.
	disown "$REM_WEED_PID"
	echo "$REM_WEED_PID" >"$BENCH_DIR/remote-weed.pid"
	local deadline=$(($(date +%s) + 60)) start=$SECONDS
	if ! rem_probe "http://$ip:$mp/readyz" 200 "$deadline" ||
		! rem_probe "http://$ip:$mp/dir/assign?replication=-" 406 "$deadline" ||
		! rem_probe "http://$ip:$vp/healthz" 200 "$deadline" ||
		! rem_probe "http://$ip:$fp/healthz" 200 "$deadline" ||
		! rem_probe "$REM_ENDPOINT/healthz" 200 "$deadline"; then
		rem_fail "the S3 server (\`weed server -s3\`) did not start" "$REM_W/weed.log"
		return 1
	fi
	until grep -Eq 'LockRing: filer@[^ ]+ received ring update v[0-9]+: \[[^ ]' "$REM_W/weed.log"; do
		if ! kill -0 "$REM_WEED_PID" 2>/dev/null || (($(date +%s) > deadline)); then
			rem_fail "the S3 server's filer did not join a lock ring within 60 s" "$REM_W/weed.log"
			return 1
		fi
		sleep 0.2
	done
	if ! printf 's3.bucket.create -name %s\n' "$REM_BUCKET" |
		(cd "$dir" && timeout 60 "$REM_WEED" -logtostderr shell -master="$REM_MASTER" -filer="$REM_FILER") >"$REM_W/bucket.log" 2>&1; then
		rem_fail "\`weed shell\` could not create the bucket" "$REM_W/bucket.log"
		return 1
	fi
	log "remote: the S3 server serves, after $((SECONDS - start)) s"
	# The credentials go to the commands that use the server, not to the
	# rest of bench/run; other AWS settings of the host stay out.
	REM_ENV=(env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN -u AWS_REGION -u AWS_DEFAULT_REGION
		-u AWS_CONFIG_FILE -u AWS_SHARED_CREDENTIALS_FILE
		AWS_ACCESS_KEY_ID="$key" AWS_SECRET_ACCESS_KEY="$secret" RESTIC_PASSWORD=forge-bench)
}

# rem_stop_server kills the S3 server by its PID, with SIGKILL as the test
# harness does (its data is thrown away, and weed's graceful stop can hang
# retrying its filer), and removes what it leaves outside its directory.
rem_stop_server() {
	if [[ -n $REM_WEED_PID ]]; then
		kill -KILL "$REM_WEED_PID" 2>/dev/null || true
		wait_gone "$REM_WEED_PID" 10 || log "remote: the S3 server $REM_WEED_PID is still running"
		rm -f "$BENCH_DIR/remote-weed.pid"
		REM_WEED_PID=""
	fi
	local f
	for f in "${REM_WEED_LITTER[@]}"; do
		rm -rf "$f"
	done
	REM_WEED_LITTER=()
}

# rem_cleanup stops the daemons of the area's stores and the S3 server,
# and undoes what a killed build left: mounts and loop devices below the
# scratch directory.
rem_cleanup() {
	[[ -n $REM_SCRATCH ]] || return 0
	stop_forge_daemons "$REM_SCRATCH"
	rem_stop_server
	umount_below "$REM_SCRATCH"
	local dev file
	while read -r dev file; do
		[[ $file == "$REM_SCRATCH/"* ]] || continue
		log "remote: detaching $dev, left over $file"
		losetup -d "$dev" 2>/dev/null || true
	done < <(losetup -ln -O NAME,BACK-FILE 2>/dev/null)
}

# --- helpers ---

# rem_fail records a failure once: a note under the tables, the list of
# what did not run, and the tail of the command's output on the terminal.
# Usage: rem_fail WHAT [ERRFILE]
rem_fail() {
	local what=$1 errfile=${2:-} last="" line
	log "remote: $what"
	if [[ -s $errfile ]]; then
		tail -n 20 "$errfile" | sed 's/^/bench:     /' >&2
		last=$(grep -v '^[[:space:]]*$' "$errfile" | tail -n 1 | cut -c1-200)
	fi
	line="- $what${last:+; its last line of output: \`$last\`}."
	grep -qxF -- "$line" "$REM_W/notes" 2>/dev/null && return 0
	echo "$line" >>"$REM_W/notes"
	echo "remote: $what" >>"$REM_W/failed"
}

# rem_settle runs before a timed command: sync, then in cold mode (or for
# KIND cold) drop the caches, else read SOURCE into the page cache when
# given. Usage: rem_settle warm|cold [SOURCE]
rem_settle() {
	sync
	if [[ $1 == cold || $BENCH_SOURCE == cold ]]; then
		drop_caches
	elif [[ -n ${2:-} ]]; then
		warm_tree "$2"
	fi
}

# rem_time runs one timed command and appends its line to TIMES, with the
# CPU of STORE's daemon as field 6 (0 for STORE "-") and the S3 server's
# meanwhile as field 7; stdout to OUT, stderr to ERR. A command that fails
# leaves no line. Returns the command's status.
# Usage: rem_time TIMES OUT ERR STORE|- CMD [ARG...]
rem_time() {
	local times=$1 out=$2 err=$3 store=$4 status=0 lines w0=0 w1=0
	shift 4
	lines=$(count_lines "$times")
	[[ -z $REM_WEED_PID ]] || w0=$(proc_cpu "$REM_WEED_PID")
	if [[ $store != - ]]; then
		timeit_store "$times" "$out" "$err" "$store" "$@" || status=$?
	else
		timeit "$times" "$@" >"$out" 2>"$err" || status=$?
		if ((status != 0)); then
			# timeit writes a line for a command that ran and failed.
			(($(count_lines "$times") == lines)) || sed -i '$d' "$times"
		else
			sed -i '$s/$/ 0/' "$times"
		fi
	fi
	((status == 0)) || return "$status"
	[[ -z $REM_WEED_PID ]] || w1=$(proc_cpu "$REM_WEED_PID")
	sed -i "\$s/\$/ $(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.2f", b - a }')/" "$times"
}

# rem_sum_last appends to TIMES the sum of the last lines of A and B (the
# maximum of their peak resident sizes, the status of B).
rem_sum_last() {
	paste -d ' ' <(tail -n 1 "$1") <(tail -n 1 "$2") | awk '{
		printf "%.6f %.6f %.6f %d %d %.2f %.2f\n", $1 + $8, $2 + $9, $3 + $10, ($4 > $11 ? $4 : $11), $12, $6 + $13, $7 + $14
	}' >>"$3"
}

# rem_bytes prints the bytes of a size as forge prints it ("512 B",
# "12.3 MiB"): to 0.1 of its unit.
rem_bytes() {
	awk -v s="$1" 'BEGIN {
		n = split(s, f, " ")
		if (n != 2) { print ""; exit }
		m = 1
		if (f[2] == "KiB") m = 1024; else if (f[2] == "MiB") m = 1024^2; else if (f[2] == "GiB") m = 1024^3
		else if (f[2] == "TiB") m = 1024^4; else if (f[2] != "B") { print ""; exit }
		printf "%.0f\n", f[1] * m
	}'
}

# rem_forge_xfer records "REQUESTS BYTES NEW CHUNKS" of forge's push or pull
# summary line in ERR into XFER, the line itself into LAST; returns
# non-zero when there is none.
# Usage: rem_forge_xfer push|pull ERR XFER LAST
rem_forge_xfer() {
	local kind=$1 err=$2 xfer=$3 last=$4 line re
	if [[ $kind == push ]]; then
		line=$(grep -E '^pushed .* chunks were new, .* requests, .* sent in ' "$err" | tail -n 1)
		re=': ([0-9]+) of ([0-9]+) chunks were new, .*; ([0-9]+) requests, ([0-9.]+ [KMGTPE]?i?B) sent in '
	else
		line=$(grep -E '^pulled .* chunks fetched, .* requests, .* received in ' "$err" | tail -n 1)
		re=': ([0-9]+) of ([0-9]+) chunks fetched, .*; ([0-9]+) requests, ([0-9.]+ [KMGTPE]?i?B) received in '
	fi
	[[ $line =~ $re ]] || return 1
	echo "${BASH_REMATCH[3]} $(rem_bytes "${BASH_REMATCH[4]}") ${BASH_REMATCH[1]} ${BASH_REMATCH[2]}" >>"$xfer"
	echo "$line" >"$last"
}

# rem_tree_shape prints "ENTRIES FILE_BYTES" of a tree: every entry but
# the top, and the sizes of its regular files (directories' sizes depend on
# their filesystem's history).
rem_tree_shape() {
	echo "$(find "$1" -mindepth 1 | wc -l) $(find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }')"
}

# rem_shape_text prints "ENTRIES FILE_BYTES" for a table.
rem_shape_text() { echo "$1" | awk '{ printf "%s entries, %s bytes of files\n", $1, $2 }'; }

# rem_median prints the median wall time of REM_W/FILE, nothing if none.
rem_median() { [[ ! -s $REM_W/$1 ]] || field "$REM_W/$1" 1 | median; }

# --- the rows ---

rem_measure() {
	local tree=$1
	if rem_start_server; then
		rem_tree_rows "$tree" || true
		if [[ ${BENCH_REMOTE_BUILD:-1} == 0 ]]; then
			echo "not run: BENCH_REMOTE_BUILD=0" >"$REM_W/why-build"
		else
			rem_build_rows || true
		fi
	else
		echo "not run: the S3 server did not start (see the notes below)" >"$REM_W/why-tree"
		echo "not run: the S3 server did not start (see the notes below)" >"$REM_W/why-build"
	fi
	rem_tables "$tree"
	if [[ -s $REM_W/notes ]]; then
		echo
		echo "Notes:"
		echo
		cat "$REM_W/notes"
	fi
	[[ ! -s $REM_W/failed ]] || mapfile -t -O "${#BENCH_FAILED[@]}" BENCH_FAILED <"$REM_W/failed"
}

# rem_restic runs restic with the server's credentials.
rem_restic() { "${REM_ENV[@]}" restic "$@"; }

# rem_tree_rows measures push, push again and pull of TREE, BENCH_RUNS runs.
rem_tree_rows() {
	local tree=$1
	if [[ -z $FORGE ]]; then
		echo "not run: $FORGE_MISSING" >"$REM_W/why-forge"
	fi
	local a=$REM_SCRATCH/tree/A i run forge_ok=$FORGE restic_ok=1
	mkdir -p "$REM_SCRATCH/tree"
	if [[ -n $forge_ok ]]; then
		log "remote: importing the tree into store A (not timed)"
		if ! "$FORGE" store import --store "$a" --ref "$REM_REF" "$tree" >"$REM_W/import.out" 2>"$REM_W/import.err"; then
			rem_fail "\`forge store import\` of the tree failed" "$REM_W/import.err"
			echo "failed: see the notes below" >"$REM_W/why-forge"
			forge_ok=""
		else
			tail -n 1 "$REM_W/import.out" >"$REM_W/import.hash"
		fi
	fi
	rem_tree_shape "$tree" >"$REM_W/tree.shape"
	local repo cache_a cache_b b restored exported r
	for ((i = 1; i <= BENCH_RUNS; i++)); do
		run=$REM_SCRATCH/tree/run$i
		mkdir -p "$run"
		r=$REM_W/run$i
		mkdir -p "$r"
		repo=s3:$REM_ENDPOINT/$REM_BUCKET/restic-$i
		cache_a=$run/restic-cache-A cache_b=$run/restic-cache-B
		b=$run/B restored=$run/restored exported=$run/exported

		# Push: restic backup into a new repository, forge push to a new prefix.
		if [[ -n $restic_ok ]]; then
			log "remote: restic backup, run $i/$BENCH_RUNS"
			if ! rem_restic -r "$repo" init >"$r/restic-init.out" 2>&1; then
				rem_fail "\`restic init\` of $repo failed" "$r/restic-init.out"
				restic_ok=""
			else
				rem_settle warm "$tree"
				if rem_time "$REM_W/restic-backup.t" "$r/restic-backup.out" "$r/restic-backup.err" - \
					"${REM_IN[@]}" "$tree" "${REM_ENV[@]}" restic -r "$repo" --cache-dir "$cache_a" backup --json .; then
					rem_restic_summary "$r/restic-backup.out" "$REM_W/restic-backup.xfer"
				else
					rem_fail "\`restic backup\` (run $i) failed" "$r/restic-backup.err"
					restic_ok=""
				fi
			fi
		fi
		if [[ -n $forge_ok ]]; then
			log "remote: forge store push, run $i/$BENCH_RUNS"
			if ! "${REM_ENV[@]}" "$FORGE" store remote add --store "$a" "r$i" "s3://$REM_BUCKET/forge-$i" \
				--endpoint "$REM_ENDPOINT" >"$r/remote-add-A.out" 2>&1; then
				rem_fail "\`forge store remote add\` (store A, run $i) failed" "$r/remote-add-A.out"
				forge_ok=""
			else
				rem_settle warm "$a"
				rem_forge_push push "$a" "$i" "$r" || forge_ok=""
			fi
		fi
		# Push again, nothing new.
		if [[ -n $forge_ok ]]; then
			log "remote: forge store push again, run $i/$BENCH_RUNS"
			rem_settle warm "$a"
			rem_forge_push push-again "$a" "$i" "$r" || true
		fi
		if [[ -n $restic_ok ]]; then
			log "remote: restic backup again, run $i/$BENCH_RUNS"
			rem_settle warm "$tree"
			if rem_time "$REM_W/restic-backup-again.t" "$r/restic-backup-again.out" "$r/restic-backup-again.err" - \
				"${REM_IN[@]}" "$tree" "${REM_ENV[@]}" restic -r "$repo" --cache-dir "$cache_a" backup --json .; then
				rem_restic_summary "$r/restic-backup-again.out" "$REM_W/restic-backup-again.xfer"
			else
				rem_fail "\`restic backup\` again (run $i) failed" "$r/restic-backup-again.err"
			fi
		fi

		# Pull: restic restore into a new directory, forge pull into a new store.
		if [[ -n $restic_ok ]]; then
			log "remote: restic restore, run $i/$BENCH_RUNS"
			rem_settle warm
			if rem_time "$REM_W/restic-restore.t" "$r/restic-restore.out" "$r/restic-restore.err" - \
				"${REM_DURABLE[@]}" "$run" "${REM_ENV[@]}" restic -r "$repo" --cache-dir "$cache_b" restore latest --target "$restored"; then
				rem_tree_shape "$restored" >>"$REM_W/restored.shape"
			else
				rem_fail "\`restic restore\` (run $i) failed" "$r/restic-restore.err"
			fi
		fi
		if [[ -n $forge_ok ]]; then
			log "remote: forge store pull and export, run $i/$BENCH_RUNS"
			if ! "${REM_ENV[@]}" "$FORGE" store remote add --store "$b" "r$i" "s3://$REM_BUCKET/forge-$i" \
				--endpoint "$REM_ENDPOINT" >"$r/remote-add-B.out" 2>&1; then
				rem_fail "\`forge store remote add\` (store B, run $i) failed" "$r/remote-add-B.out"
			else
				rem_settle warm
				if ! rem_time "$REM_W/pull.t" "$r/pull.out" "$r/pull.err" "$b" \
					"${REM_DURABLE[@]}" "$b" "${REM_ENV[@]}" "$FORGE" store pull --store "$b" --remote "r$i" "$REM_REF"; then
					rem_fail "\`forge store pull\` (run $i) failed" "$r/pull.err"
				else
					rem_forge_xfer pull "$r/pull.err" "$REM_W/pull.xfer" "$REM_W/pull.last" ||
						rem_fail "\`forge store pull\` (run $i) printed no summary line" "$r/pull.err"
					tail -n 1 "$r/pull.out" >>"$REM_W/hashes"
					# The export right after: a user's pull, then export.
					if rem_time "$REM_W/export.t" "$r/export.out" "$r/export.err" "$b" \
						"${REM_DURABLE[@]}" "$run" "$FORGE" store export --store "$b" "$REM_REF" "$exported"; then
						rem_sum_last "$REM_W/pull.t" "$REM_W/export.t" "$REM_W/pull-export.t"
						rem_tree_shape "$exported" >>"$REM_W/exported.shape"
					else
						rem_fail "\`forge store export\` after the pull (run $i) failed" "$r/export.err"
					fi
				fi
			fi
		fi
		if [[ -n $forge_ok ]]; then
			rem_lazy_rows "$run" "$i" "$r" "$tree" || true
		fi
		# Nothing of this run is read again but the S3 server's data: the
		# second store's daemon goes, and the data of what the run wrote
		# here (not the inodes: see shrink in lib.sh).
		stop_forge_daemons "$run"
		shrink "$run"
	done
	[[ -n $restic_ok ]] || [[ -s $REM_W/why-restic ]] || echo "failed: see the notes below" >"$REM_W/why-restic"
	[[ -n $forge_ok ]] || [[ -s $REM_W/why-forge ]] || echo "failed: see the notes below" >"$REM_W/why-forge"
	stop_forge_daemons "$REM_SCRATCH/tree"
}

# REM_LAZY_FILE is the file read first through a remote mount: one
# small file of the Debian tree (another tree: its first regular file).
REM_LAZY_FILE=etc/debian_version

# rem_lazy_rows measures a remote mount on a new store C (issue 18: any
# tree of the bucket mounted at once, read lazily): the mount and the
# first read of one small file, timed together; tar of the whole tree
# through it (every chunk fetched, verified and kept in C); then, after a
# new mount, tar again (every chunk read from C). The chunks and bytes
# each mount fetched are the daemon's log line when the mount ends.
# Usage: rem_lazy_rows RUNDIR I RESULTDIR TREE
rem_lazy_rows() {
	local run=$1 i=$2 r=$3 tree=$4 c=$1/C mnt=$1/lazy-mnt file=$REM_LAZY_FILE phase
	mkdir -p "$mnt"
	if ! "${REM_ENV[@]}" "$FORGE" store remote add --store "$c" "r$i" "s3://$REM_BUCKET/forge-$i" \
		--endpoint "$REM_ENDPOINT" >"$r/remote-add-C.out" 2>&1; then
		rem_fail "\`forge store remote add\` (store C, run $i) failed" "$r/remote-add-C.out"
		return 1
	fi
	if [[ ! -f $tree/$file ]]; then
		file=$(cd "$tree" && find . -type f -size -64k -print -quit)
	fi
	rem_settle warm
	log "remote: forge store mount --remote, run $i/$BENCH_RUNS"
	if ! rem_time "$REM_W/lazy-first.t" "$r/lazy-first.out" "$r/lazy-first.err" "$c" \
		"${REM_ENV[@]}" sh -c '"$1" store mount --store "$2" --remote "$3" "$4" "$5" && head -c 1 "$5/$6"' \
		sh "$FORGE" "$c" "r$i" "$REM_REF" "$mnt" "$file"; then
		rem_fail "\`forge store mount --remote\` and a first read (run $i) failed" "$r/lazy-first.err"
		"$FORGE" store umount --store "$c" --lazy "$mnt" >/dev/null 2>&1
		return 1
	fi
	for phase in cold warm; do
		if [[ $phase == warm ]] && ! "${REM_ENV[@]}" "$FORGE" store mount --store "$c" --remote "r$i" "$REM_REF" "$mnt" \
			>"$r/lazy-mount-warm.out" 2>&1; then
			rem_fail "the second \`forge store mount --remote\` (run $i) failed" "$r/lazy-mount-warm.out"
			return 1
		fi
		if ! rem_time "$REM_W/lazy-$phase.t" "$r/lazy-$phase.out" "$r/lazy-$phase.err" "$c" \
			sh -c 'tar -C "$1" -cf - . | wc -c' sh "$mnt"; then
			rem_fail "tar through the remote mount ($phase, run $i) failed" "$r/lazy-$phase.err"
			"$FORGE" store umount --store "$c" --lazy "$mnt" >/dev/null 2>&1
			return 1
		fi
		"$FORGE" store umount --store "$c" "$mnt" >/dev/null 2>&1
		# "remote mount of ID (rI) ended: N chunks fetched, M bytes, R requests"
		grep -oE 'remote mount of [0-9a-f]+ \([^)]*\) ended: [0-9]+ chunks fetched, [0-9]+ bytes, [0-9]+ requests' "$c/daemon.log" |
			tail -n 1 | awk '{ printf "%d %d %d\n", $12, $10, $7 }' >>"$REM_W/lazy-$phase.xfer"
	done
}

# rem_forge_push runs one timed forge push (NAME push or push-again) of
# store A to remote rI. Returns non-zero when it fails.
# Usage: rem_forge_push NAME STORE I RUNDIR
rem_forge_push() {
	local name=$1 a=$2 i=$3 r=$4
	if ! rem_time "$REM_W/$name.t" "$r/$name.out" "$r/$name.err" "$a" \
		"${REM_ENV[@]}" "$FORGE" store push --store "$a" --remote "r$i" "$REM_REF"; then
		rem_fail "\`forge store push\` ($name, run $i) failed" "$r/$name.err"
		return 1
	fi
	rem_forge_xfer push "$r/$name.err" "$REM_W/$name.xfer" "$REM_W/$name.last" ||
		rem_fail "\`forge store push\` ($name, run $i) printed no summary line" "$r/$name.err"
	tail -n 1 "$r/$name.out" >>"$REM_W/hashes"
}

# rem_restic_summary records "- DATA_ADDED FILES_NEW FILES_UNMODIFIED" of
# restic backup's --json summary in OUT into XFER ("-": no request count).
rem_restic_summary() {
	jq -r 'select(.message_type == "summary") | "- \(.data_added) \(.files_new) \(.files_unmodified)"' "$1" 2>/dev/null |
		tail -n 1 >>"$2" || true
}

# rem_build_rows: the sample built cold on host A (no remote: the
# baseline), pushed, and built on empty hosts B from the bucket.
rem_build_rows() {
	if [[ -z $FORGE ]]; then
		echo "not run: $FORGE_MISSING" >"$REM_W/why-build"
		return 1
	fi
	if [[ -z ${BENCH_LIBDIR:-} && -z ${BENCH_LIBDIR_MISSING:-} ]]; then
		# bench/run builds the libdir for the areas that build; build it
		# here when it did not.
		local lib=$BENCH_TOOLS/libexec/forge
		rm -rf "$lib"
		if (cd "$BENCH_REPO" && CGO_ENABLED=0 go build -o "$lib/forge-stages" ./cmd/forge-stages &&
			"$lib/forge-stages" link "$lib") 2>"$REM_W/libdir-build.log"; then
			BENCH_LIBDIR=$lib
		else
			BENCH_LIBDIR_MISSING="the libdir does not build (\`CGO_ENABLED=0 go build ./cmd/forge-stages\`)"
			rem_fail "$BENCH_LIBDIR_MISSING" "$REM_W/libdir-build.log"
		fi
	fi
	if [[ -z ${BENCH_LIBDIR:-} ]]; then
		echo "not run: $BENCH_LIBDIR_MISSING" >"$REM_W/why-build"
		return 1
	fi
	# Short paths: a build binds Unix sockets below its store (at most 107
	# bytes), and BENCH_DIR may be long.
	local d=$REM_SCRATCH/b m a i b manifest
	mkdir -p "$d"
	m=$d/manifests
	mkdir -p "$m"
	if [[ -n ${BENCH_REMOTE_MANIFEST:-} ]]; then
		cp "$BENCH_REMOTE_MANIFEST" "$m/sample.json" || die "cannot read BENCH_REMOTE_MANIFEST=$BENCH_REMOTE_MANIFEST"
	else
		local mirror=()
		[[ -z ${BENCH_MIRROR:-} ]] || mirror=(--mirror "$BENCH_MIRROR")
		if ! "$BENCH_TOOLS/gen-manifest" "${mirror[@]}" "$BENCH_REPO/samples/debian-bookworm.json" >"$m/sample.json" 2>"$REM_W/gen.err"; then
			rem_fail "\`gen-manifest\` of the sample failed" "$REM_W/gen.err"
			echo "failed: see the notes below" >"$REM_W/why-build"
			return 1
		fi
	fi
	manifest=$m/sample.json
	a=$d/A/S
	mkdir -p "$d/A"

	log "remote: host A, cold build with no remote (the baseline)"
	if ! rem_build "$REM_W/build-a" "$a" cold "$REM_W/build-cold.t" "$d/A/out" "$manifest"; then
		echo "failed: see the notes below" >"$REM_W/why-build"
		return 1
	fi
	rem_output_sums "$d/A/out" >"$REM_W/build-a.sums"
	shrink "$d/A/out"
	if ! "${REM_ENV[@]}" "$FORGE" store remote add --store "$a" R "s3://$REM_BUCKET/build" \
		--endpoint "$REM_ENDPOINT" >"$REM_W/remote-add-build-A.out" 2>&1; then
		rem_fail "\`forge store remote add\` (host A) failed" "$REM_W/remote-add-build-A.out"
		echo "failed: see the notes below" >"$REM_W/why-build"
		return 1
	fi
	log "remote: host A, pushing every stage (forge build --remote R --push)"
	if ! rem_build "$REM_W/build-push" "$a" warm "$REM_W/build-push.t" "$d/A/out-push" "$manifest" --remote R --push; then
		echo "failed: see the notes below" >"$REM_W/why-build"
		return 1
	fi
	# "pushed to remote R: N of M chunks new, BYTES bytes in P packs, Ts"
	grep -oE 'pushed to remote [^:]+: [0-9]+ of [0-9]+ chunks new, [0-9]+ bytes in [0-9]+ packs' "$REM_W/build-push.err" |
		awk '{ n++; c += $5; t += $7; b += $10; p += $13 } END { printf "- %d %d %d %d %d\n", b, n, c, t, p }' >"$REM_W/build-push.xfer"
	stop_forge_daemons "$d/A"
	shrink "$d/A/out-push"

	for ((i = 1; i <= BENCH_RUNS; i++)); do
		b=$d/B$i/S
		mkdir -p "$d/B$i"
		if ! "${REM_ENV[@]}" "$FORGE" store remote add --store "$b" R "s3://$REM_BUCKET/build" \
			--endpoint "$REM_ENDPOINT" >"$REM_W/remote-add-build-B$i.out" 2>&1; then
			rem_fail "\`forge store remote add\` (host B, run $i) failed" "$REM_W/remote-add-build-B$i.out"
			continue
		fi
		log "remote: host B, cold build from A's bucket, run $i/$BENCH_RUNS"
		if rem_build "$REM_W/build-b$i" "$b" cold "$REM_W/build-b.t" "$d/B$i/out" "$manifest" --remote R; then
			# "pulled from remote R: F of C chunks fetched, BYTES bytes in R requests, Ts"
			grep -oE 'pulled from remote [^:]+: [0-9]+ of [0-9]+ chunks fetched, [0-9]+ bytes in [0-9]+ requests' "$REM_W/build-b$i.err" |
				awk '{ n++; f += $5; c += $7; b += $10; r += $13 } END { printf "%d %d %d %d %d\n", r, b, n, f, c }' >>"$REM_W/build-b.xfer"
			rem_output_sums "$d/B$i/out" >"$REM_W/build-b$i.sums"
			if cmp -s "$REM_W/build-a.sums" "$REM_W/build-b$i.sums"; then echo same; else echo different; fi >>"$REM_W/build-b.same"
			grep -c '^downloaded ' "$REM_W/build-b$i.err" >>"$REM_W/build-b.downloads" || true
		fi
		stop_forge_daemons "$d/B$i"
		shrink "$d/B$i"
	done
	stop_forge_daemons "$d"
}

# rem_build runs one timed forge build of MANIFEST on STORE into OUT (a new
# directory), its events and stderr in PREFIX.{events,err}; KIND cold drops
# the caches first. The store's daemon is stopped first (the build starts
# it). Further arguments go to forge build. Records the stages it ran
# (stage.started events) in PREFIX.started.
# Usage: rem_build PREFIX STORE cold|warm TIMES OUT MANIFEST [ARG...]
rem_build() {
	local p=$1 store=$2 kind=$3 times=$4 out=$5 manifest=$6
	shift 6
	stop_forge_daemons "$(dirname "$store")"
	mkdir -p "$out"
	rem_settle "$kind"
	if ! rem_time "$times" /dev/null "$p.err" "$store" \
		"${REM_MONITOR[@]}" "$p.events" "${REM_ENV[@]}" \
		"$FORGE" build --store "$store" --libdir "$BENCH_LIBDIR" "$@" \
		--output-directory "$out" --monitor-fd 3 "$manifest"; then
		rem_fail "\`forge build\` ($(basename "$p")) failed" "$p.err"
		return 1
	fi
	tr -d '\036' <"$p.events" | jq -s '[.[] | select(.type == "stage.started")] | length' >"$p.started" 2>/dev/null ||
		echo "?" >"$p.started"
}

# rem_output_sums prints the sha256 of every file below a build's output
# directory, by path.
rem_output_sums() {
	(cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
}

# --- tables ---

# rem_row prints one row of a table.
# Usage: rem_row LABEL COMMAND TIMES XFER BASE WHY [BYTES_LABEL]
# XFER's lines are "REQUESTS BYTES ..." ("-" for a request count the tool
# does not report).
rem_row() {
	local label=$1 cmd=$2 times=$REM_W/$3 xfer=$REM_W/$4 base=$5 why=$6 blabel=${7:-}
	if [[ ! -s $times ]]; then
		echo "| $label | $cmd | 0 | $why | | | | | | |"
		return
	fi
	local req="—" by="—" wcpu
	if [[ -s $xfer ]]; then
		if [[ $(field "$xfer" 1 | head -n 1) != - ]]; then
			req=$(field "$xfer" 1 | median)
			req=$(printf '%.0f' "$req")
		fi
		by=$(field "$xfer" 2 | median)
		by="$(fmt_bytes "$by")${blabel:+ $blabel}"
	fi
	wcpu=$(awk '{ print $7 }' "$times" | median)
	echo "| $label | $cmd | $(count_lines "$times") | $(time_cells "$times") | $(fmt_time "$wcpu") | $req | $by | $(rem_x "$(ratio_fine "$(field "$times" 1 | median)" "$base")") |"
}

# rem_x prints a ratio with its sign, or n/a.
rem_x() { if [[ $1 == n/a ]]; then echo n/a; else echo "$1×"; fi; }

rem_tables() {
	local tree=$1 why_f why_r why_b entries
	why_f=$(cat "$REM_W/why-forge" "$REM_W/why-tree" 2>/dev/null | head -n 1) || true
	why_r=$(cat "$REM_W/why-restic" "$REM_W/why-tree" 2>/dev/null | head -n 1) || true
	why_b=$(cat "$REM_W/why-build" 2>/dev/null) || true
	: "${why_f:=failed: see the notes below}" "${why_r:=failed: see the notes below}" "${why_b:=failed: see the notes below}"
	if [[ -s $REM_W/tree.shape ]]; then
		read -r entries _ <"$REM_W/tree.shape"
	else
		entries=$(find "$tree" -mindepth 1 | wc -l)
	fi
	echo
	echo "### Push, push again and pull: $(basename "$tree") ($entries entries, $(fmt_bytes "$(du -sb "$tree" | cut -f1)"))"
	echo
	if [[ -f $tree.info ]]; then
		echo "Built once with \`$(tree_info "$tree" what)\` in $(tree_info "$tree" build_seconds) s on $(tree_info "$tree" built) (not part of the figures)."
	else
		echo "The tree is \`$tree\` (BENCH_REMOTE_TREE), not the Debian reference tree."
	fi
	echo
	echo "\"× restic\" divides by restic's row of the same kind. Bytes: forge's are what it sent or received; restic's, \`data_added\` of its backup summary."
	echo
	echo "| row | command | runs | median | spread (min–max) | CPU | server CPU | requests | bytes | × restic |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	local rb rba rr
	rb=$(rem_median restic-backup.t)
	rba=$(rem_median restic-backup-again.t)
	rr=$(rem_median restic-restore.t)
	rem_row "restic backup to a new repository (baseline)" "\`restic init\` (not timed), \`$REM_CMD_BACKUP\`" restic-backup.t restic-backup.xfer "$rb" "$why_r" "added"
	rem_row "forge push to an empty prefix" "\`$REM_CMD_PUSH\`" push.t push.xfer "$rb" "$why_f" "sent"
	rem_row "restic backup again, nothing new (baseline)" "the same again: same repository and cache" restic-backup-again.t restic-backup-again.xfer "$rba" "$why_r" "added"
	rem_row "forge push again, nothing new" "the same again" push-again.t push-again.xfer "$rba" "$why_f" "sent"
	rem_row "restic restore into a new directory (baseline)" "\`$REM_CMD_RESTORE\`" restic-restore.t /dev/null "$rr" "$why_r"
	rem_row "forge pull into an empty store" "\`forge store remote add\` (not timed), \`$REM_CMD_PULL\`" pull.t pull.xfer "$rr" "$why_f" "received"
	rem_row "forge pull + export to a directory (like for like)" "the pull above, then \`$REM_CMD_EXPORT\`" pull-export.t pull.xfer "$rr" "$why_f" "received"
	rem_row "forge export alone, after the pull" "\`$REM_CMD_EXPORT\`" export.t /dev/null "$rr" "$why_f"
	rem_row "forge remote mount on an empty store, and the first byte of one file" "\`forge store remote add\` (not timed), \`forge store mount --store C --remote rI bench MNT && head -c 1 MNT/$REM_LAZY_FILE\`" lazy-first.t /dev/null "$rr" "$why_f"
	rem_row "tar of the whole tree through that mount: every chunk fetched" "\`tar -C MNT -cf - . | wc -c\`" lazy-cold.t lazy-cold.xfer "$rr" "$why_f" "fetched"
	rem_row "tar again through a new remote mount: every chunk kept in C" "\`forge store umount\`, \`forge store mount --remote\` (not timed), the same tar" lazy-warm.t lazy-warm.xfer "$rr" "$why_f" "fetched"

	echo
	echo "### A cold build of the sample on host B from host A's bucket"
	echo
	echo "\"× no remote\" divides by host A's cold build with no remote, measured in this run. Bytes: of host B's builds, what their pulls received; of the push, the packs its stages' pushes wrote."
	echo
	echo "| row | command | runs | median | spread (min–max) | CPU | server CPU | requests | bytes | × no remote |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	local cold
	cold=$(rem_median build-cold.t)
	rem_row "host A: cold build, empty store, no remote (baseline)" "\`$REM_CMD_BUILD\`, caches dropped" build-cold.t /dev/null "$cold" "$why_b"
	rem_row "host A: the same with \`--remote R --push\`, every stage cached: pushes every stage" "\`forge build --store A --libdir L --remote R --push --output-directory OUT2 MANIFEST\`" build-push.t build-push.xfer "$cold" "$why_b" "in packs"
	rem_row "host B: cold build, empty store, stages from A's bucket" "\`forge store remote add\` (not timed), caches dropped, \`forge build --store B --libdir L --remote R --output-directory OUT --monitor-fd 3 MANIFEST\`" build-b.t build-b.xfer "$cold" "$why_b" "received"

	echo
	rem_checks
}

rem_checks() {
	echo "Checks:"
	echo
	echo "| check | expected | got | result |"
	echo "| --- | --- | --- | --- |"
	if [[ -s $REM_W/hashes && -s $REM_W/import.hash ]]; then
		local want n bad
		want=$(<"$REM_W/import.hash")
		n=$(count_lines "$REM_W/hashes")
		bad=$(grep -cvxF -- "$want" "$REM_W/hashes") || true
		echo "| every push and pull prints the tree hash of the import (${want:0:12}) | $n of $n | $((n - bad)) of $n | $( ((bad == 0)) && echo PASS || echo FAIL) |"
	fi
	if [[ -s $REM_W/push-again.xfer ]]; then
		local newc
		newc=$(awk '{ s += $3 } END { print s + 0 }' "$REM_W/push-again.xfer")
		echo "| the second push finds every chunk in the bucket (\"0 of M chunks were new\") | 0 new | $newc new, in $(count_lines "$REM_W/push-again.xfer") pushes | $( ((newc == 0)) && echo PASS || echo FAIL) |"
	fi
	local kind f shape
	shape=$(cat "$REM_W/tree.shape" 2>/dev/null) || true
	for kind in exported restored; do
		f=$REM_W/$kind.shape
		[[ -s $f && -n $shape ]] || continue
		local n good
		n=$(count_lines "$f")
		good=$(grep -cxF -- "$shape" "$f") || true
		echo "| $([[ $kind == exported ]] && echo "forge's export" || echo "restic's restore") holds the tree's entries and file bytes (\`find\`) | $(rem_shape_text "$shape") in each of $n | $(sort -u "$f" | while read -r e b; do rem_shape_text "$e $b"; done | paste -sd ';' | sed 's/;/; /g') | $( ((good == n)) && echo PASS || echo FAIL) |"
	done
	if [[ -s $REM_W/build-a.started ]]; then
		echo "| host A's cold build runs every stage; its push build runs none (\`stage.started\`) | all; 0 | $(<"$REM_W/build-a.started"); $(cat "$REM_W/build-push.started" 2>/dev/null || echo "?") | $([[ $(cat "$REM_W/build-push.started" 2>/dev/null) == 0 && $(<"$REM_W/build-a.started") != 0 ]] && echo PASS || echo FAIL) |"
	fi
	local i started="" bad=0
	for ((i = 1; i <= BENCH_RUNS; i++)); do
		[[ -s $REM_W/build-b$i.started ]] || continue
		started+="$(<"$REM_W/build-b$i.started") "
		[[ $(<"$REM_W/build-b$i.started") == 0 ]] || bad=$((bad + 1))
	done
	if [[ -n $started ]]; then
		echo "| host B runs no stage (\`stage.started\` events) | 0 | ${started% } | $( ((bad == 0)) && echo PASS || echo FAIL) |"
	fi
	if [[ -s $REM_W/build-b.downloads ]]; then
		local dl
		dl=$(awk '{ s += $1 } END { print s + 0 }' "$REM_W/build-b.downloads")
		echo "| host B downloads no source (\"downloaded URL\" lines) | 0 | $dl | $( ((dl == 0)) && echo PASS || echo FAIL) |"
	fi
	if [[ -s $REM_W/build-b.same ]]; then
		local same n
		n=$(count_lines "$REM_W/build-b.same")
		same=$(grep -cx same "$REM_W/build-b.same") || true
		echo "| host B's output is host A's, byte for byte (\`sha256sum\` of every file of OUT) | $n of $n | $same of $n | $( ((same == n)) && echo PASS || echo FAIL) |"
	fi
	if [[ -s $REM_W/push.last || -s $REM_W/pull.last ]]; then
		{
			# shellcheck disable=SC2016 # the backquotes are literal
			echo "- forge's summary lines of the last run: $(cat "$REM_W/push.last" "$REM_W/push-again.last" "$REM_W/pull.last" 2>/dev/null | sed 's/.*/`&`/' | paste -sd ';' | sed 's/;/; /g')."
		} >>"$REM_W/notes"
	fi
	if [[ -s $REM_W/build-push.xfer ]]; then
		local _ b n c t p
		read -r _ b n c t p <"$REM_W/build-push.xfer"
		echo "- Host A's push build pushed $n stages: $c of their $t chunks were new, $(fmt_bytes "$b") in $p packs (its \"pushed to remote\" lines; they give no request count)." >>"$REM_W/notes"
	fi
	if [[ -s $REM_W/build-b.xfer ]]; then
		local r b n f c
		read -r r b n f c < <(tail -n 1 "$REM_W/build-b.xfer")
		echo "- Host B's last build pulled $n stages from the bucket: $f of $c chunks fetched, $(fmt_bytes "$b") in $r requests (its \"pulled from remote\" lines)." >>"$REM_W/notes"
	fi
	if [[ -s $REM_W/restic-backup-again.xfer ]]; then
		local _ add fnew funm
		read -r _ add fnew funm < <(tail -n 1 "$REM_W/restic-backup-again.xfer")
		echo "- restic's second backup of the last run: $fnew new files, $funm unmodified, $(fmt_bytes "$add") added (its --json summary)." >>"$REM_W/notes"
	fi
	echo "- Load average at the end of the area: $(cut -d' ' -f1-3 /proc/loadavg)." >>"$REM_W/notes"
}
