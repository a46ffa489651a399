# shellcheck shell=bash
# bench/areas/v2.sh: area "v2" of bench/run (DESIGN §7: a small format-2
# build, cold / cached, against today's osbuild on the same manifest).
#
# Writes a small osbuild format-2 manifest (a tree with two directories and
# a hostname, then a 64 MiB ext4 disk image holding that tree), builds it
# with `forge build` on a new store (cold) and again on that store (fully
# cached), and with osbuild from the checkout in OSBUILD_CHECKOUT the same
# way, and compares the times. Both tools' disk images must hold the
# manifest's /etc/hostname. Writes the "v2" section of RESULTS.md.

# DESIGN §7: a small format-2 build: cold ≤ 0.5× today's osbuild on the same
# manifest; fully cached ≤ 0.1 s.
V2_TARGET_COLD=0.5
V2_TARGET_CACHED=0.1

# What the manifest writes, and what the images must then hold.
V2_HOSTNAME=forge-bench-v2
V2_UUID=6e4ff95f-f662-45ee-a82a-bdf44a2d0b75
# How many stages the manifest has: a cold build runs them all.
V2_STAGES=5

# The timed commands, as RESULTS.md shows them.
V2_FORGE_CMD='forge build --store S --libdir L --export image --output-directory OUT --monitor-fd 3 MANIFEST'
V2_OSBUILD_CMD='python3 -m osbuild --libdir C --store S --output-directory OUT --export image MANIFEST'
# osbuild commits a stage's tree to its store only when --checkpoint asks
# for it, and only when the store may hold something: its default
# maximum size is 0, where every commit is dropped ("not cached").
V2_OSBUILD_CACHE=(--checkpoint '*' --cache-max-size unlimited)

# V2_WRAP notes when the command starts (bash's $EPOCHREALTIME, the wall
# clock of forge's event times) in the file given first, opens file
# descriptor 3 on the second (forge build's --monitor-fd 3: timeit passes
# on only 0, 1 and 2), changes to the directory given third (osbuild runs
# from its checkout), and execs the command that follows.
# shellcheck disable=SC2016 # expanded by the inner bash
V2_WRAP=(bash -c 'echo "$EPOCHREALTIME" >"$1" && exec 3>"$2" && cd "$3" || exit 125; shift 3; exec "$@"' v2_wrap)

# What the area holds while it runs, for v2_cleanup (also run by the EXIT
# trap when the area dies half-way). V2_W holds the raw figures; V2_ETC is
# set when the area made /etc/containers (osbuild needs it) and must remove
# it again.
V2_SCRATCH=""
V2_W=""
V2_ETC=""
# The osbuild checkout and its version, when OSBUILD_CHECKOUT is set and
# osbuild runs; V2_OSBUILD_NOTE says why not otherwise.
V2_OSBUILD=""
V2_OSBUILD_VERSION=""
V2_OSBUILD_NOTE=""

area_v2() {
	local section=$BENCH_WORK/v2.md
	{
		echo "## A small format-2 build: forge against today's osbuild"
		echo
		echo "DESIGN §7 (a small format-2 build, cold / cached, against today's osbuild on the same manifest): \`bench/run v2\`, $BENCH_RUNS runs per row."
		echo
		machine_description "$BENCH_DIR"
		echo
	} >"$section"

	local saved_trap prev_trap=()
	saved_trap=$(trap -p EXIT)
	eval "prev_trap=($saved_trap)" # trap -- 'COMMAND' EXIT
	# shellcheck disable=SC2064 # bench/run's trap command is expanded now, on purpose
	trap "v2_cleanup; ${prev_trap[2]:-}" EXIT

	need_space "$BENCH_DIR" $((2 << 30))
	V2_W=$BENCH_DIR/raw/v2
	V2_SCRATCH=$BENCH_WORK/v2
	rm -rf "$V2_W"
	mkdir -p "$V2_W" "$V2_SCRATCH"
	v2_osbuild_setup
	{
		v2_method
		v2_measure
	} >>"$section"

	v2_cleanup
	if [[ -n $saved_trap ]]; then
		eval "$saved_trap"
	else
		trap - EXIT
	fi
	results_update "$BENCH_RESULTS" v2 "$section"
}

v2_method() {
	local osb
	if [[ -n $V2_OSBUILD ]]; then
		osb="osbuild is \`C\` = OSBUILD_CHECKOUT=\`$V2_OSBUILD\` (\`python3 -m osbuild --version\`: $V2_OSBUILD_VERSION), run from inside that directory with /usr/bin/python3 (its stages run with it too, in bubblewrap)"
	else
		osb="**osbuild did not run**: $V2_OSBUILD_NOTE; forge's figures stand alone and the ratios are n/a"
	fi
	cat <<-EOF
		How: \`MANIFEST\` is written by the area (\`BENCH_DIR/raw/v2/manifest.json\`): format 2,
		no build pipeline (the host is the build root), pipeline \`tree\`: \`org.osbuild.mkdir\`
		(/etc and /usr/share/forge, with parents), \`org.osbuild.hostname\` ($V2_HOSTNAME);
		pipeline \`image\`: \`org.osbuild.truncate\` (disk.img, 64M), \`org.osbuild.mkfs.ext4\`
		(a fixed UUID, on a loopback device over disk.img), \`org.osbuild.copy\` (input
		\`root-tree\`: \`org.osbuild.tree\` of \`name:tree\`; device \`disk\`, loopback over disk.img;
		mount \`root\`: \`org.osbuild.ext4\` of \`disk\` at /; \`input://root-tree/\` to
		\`mount://root/\`); $V2_STAGES stages, and \`--export image\` builds both pipelines. \`L\` is
		the libdir built from this checkout (as \`make\` builds bin/libexec/forge:
		\`CGO_ENABLED=0 go build ./cmd/forge-stages\`, then \`forge-stages link\`); $osb.
		Each run, in this order: forge cold (a new store \`S\`, whose daemon forge build
		starts), forge fully cached (the same \`S\`, its daemon still running), forge fully
		cached once more after \`forge daemon stop --store S\` (not timed), so that this
		build starts the daemon; then osbuild cold as the command above stands (a new store;
		without \`--checkpoint\` osbuild stores no stage), osbuild cold storing every stage as
		forge does (a new store, \`${V2_OSBUILD_CACHE[*]}\`: osbuild's default maximum
		store size is 0, where it drops every commit), and osbuild fully cached (that store
		again, the same flags). Every build writes to a new \`OUT\`. Before the runs, one
		untimed cold build of each tool reads their programs into the page cache; before
		each timed build, \`sync\`$([[ $BENCH_SOURCE == cold ]] && echo ' and the caches are dropped (BENCH_SOURCE=cold)' || echo ' (warm caches; BENCH_SOURCE=cold drops them instead)'). Times are
		wall-clock (monotonic, from the start of a small bash wrapper that notes the start
		time and execs the tool); CPU is user+sys of the command and the processes it
		waited for, plus, for forge, that of its store's daemon meanwhile. "Stages run"
		counts forge's \`stage.started\` events (\`--monitor-fd\`) and osbuild's
		"⏱ Duration" lines. Every build's \`OUT/image/disk.img\` is checked with
		\`debugfs -R 'cat /etc/hostname'\`. The raw figures are kept in \`BENCH_DIR/raw/v2\`.
		Targets: DESIGN §7 (a small format-2 build: cold ≤ ${V2_TARGET_COLD}× today's osbuild,
		whose row here is osbuild's command as it stands, without checkpoints; fully cached
		≤ ${V2_TARGET_CACHED} s).
	EOF
}

# v2_osbuild_setup checks OSBUILD_CHECKOUT and gets osbuild ready to run:
# bubblewrap, python3-jsonschema for /usr/bin/python3 (osbuild's stages
# import it, through the osbuild package, in the build root, the host's
# /usr), and /etc/containers, which osbuild bind-mounts into the host's
# build root. Sets V2_OSBUILD, or V2_OSBUILD_NOTE to say why not.
v2_osbuild_setup() {
	V2_OSBUILD="" V2_OSBUILD_VERSION="" V2_OSBUILD_NOTE=""
	if [[ -z ${OSBUILD_CHECKOUT:-} ]]; then
		V2_OSBUILD_NOTE="OSBUILD_CHECKOUT is not set (an osbuild source checkout, for \`python3 -m osbuild\`)"
		log "v2: $V2_OSBUILD_NOTE: forge's figures alone"
		return 0
	fi
	local dir
	dir=$(cd "$OSBUILD_CHECKOUT" 2>/dev/null && pwd) || dir=""
	if [[ -z $dir || ! -e $dir/osbuild/__init__.py || ! -d $dir/stages ]]; then
		V2_OSBUILD_NOTE="OSBUILD_CHECKOUT=\`$OSBUILD_CHECKOUT\` is not an osbuild checkout (no osbuild/__init__.py and stages/)"
		log "v2: $V2_OSBUILD_NOTE"
		BENCH_FAILED+=("v2: $V2_OSBUILD_NOTE")
		return 0
	fi
	need_pkgs bwrap:bubblewrap
	if ! /usr/bin/python3 -c 'import jsonschema' 2>/dev/null; then
		log "v2: installing python3-jsonschema (apt-get): osbuild's stages import it with /usr/bin/python3"
		if ! { apt-get -o DPkg::Lock::Timeout=600 -qq update &&
			DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
				-qq -y install --no-install-recommends python3-jsonschema; } >"$V2_W/apt.log" 2>&1; then
			v2_fail "\`apt-get install python3-jsonschema\` failed" "$V2_W/apt.log"
			V2_OSBUILD_NOTE="python3-jsonschema could not be installed"
			return 0
		fi
	fi
	if [[ ! -e /etc/containers ]]; then
		mkdir /etc/containers
		V2_ETC=/etc/containers
	fi
	if ! V2_OSBUILD_VERSION=$(cd "$dir" && /usr/bin/python3 -m osbuild --version 2>"$V2_W/osbuild-version.err"); then
		v2_fail "\`python3 -m osbuild --version\` in $dir failed" "$V2_W/osbuild-version.err"
		V2_OSBUILD_NOTE="\`python3 -m osbuild --version\` failed in OSBUILD_CHECKOUT"
		return 0
	fi
	V2_OSBUILD_VERSION=${V2_OSBUILD_VERSION##* }
	V2_OSBUILD=$dir
}

# v2_cleanup stops the daemons of the area's stores and undoes what a
# killed build left: mounts and loop devices below the scratch directory,
# and /etc/containers when the area made it. It runs at the end of the area
# and from the EXIT trap.
v2_cleanup() {
	[[ -n $V2_SCRATCH ]] || return 0
	stop_forge_daemons "$V2_SCRATCH"
	umount_below "$V2_SCRATCH"
	local dev file
	while read -r dev file; do
		[[ $file == "$V2_SCRATCH/"* ]] || continue
		log "v2: detaching $dev, left over $file"
		losetup -d "$dev" 2>/dev/null || true
	done < <(losetup -ln -O NAME,BACK-FILE 2>/dev/null)
	if [[ -n $V2_ETC ]]; then
		rmdir "$V2_ETC" 2>/dev/null || log "v2: $V2_ETC, which the area made for osbuild, is not empty: left in place"
		V2_ETC=""
	fi
}

# v2_fail records a failure once (see build_fail).
# Usage: v2_fail WHAT [ERRFILE]
v2_fail() {
	local what=$1 errfile=${2:-} last="" line
	log "v2: $what"
	if [[ -s $errfile ]]; then
		tail -n 20 "$errfile" | sed 's/^/bench:     /' >&2
		last=$(grep -v '^[[:space:]]*$' "$errfile" | tail -n 1 | cut -c1-200)
	fi
	line="- $what${last:+; its last line of output: \`$last\`}."
	grep -qxF -- "$line" "$V2_W/notes" 2>/dev/null && return 0
	echo "$line" >>"$V2_W/notes"
	echo "v2: $what" >>"$V2_W/failed"
}

# v2_manifest writes the area's format-2 manifest to FILE.
v2_manifest() {
	jq -n --arg host "$V2_HOSTNAME" --arg uuid "$V2_UUID" '{
		version: "2",
		pipelines: [
			{
				name: "tree",
				stages: [
					{type: "org.osbuild.mkdir", options: {paths: [
						{path: "/etc", parents: true},
						{path: "/usr/share/forge", parents: true}]}},
					{type: "org.osbuild.hostname", options: {hostname: $host}}
				]
			},
			{
				name: "image",
				stages: [
					{type: "org.osbuild.truncate", options: {filename: "disk.img", size: "64M"}},
					{type: "org.osbuild.mkfs.ext4", options: {uuid: $uuid},
						devices: {device: {type: "org.osbuild.loopback", options: {filename: "disk.img"}}}},
					{type: "org.osbuild.copy",
						inputs: {"root-tree": {type: "org.osbuild.tree", origin: "org.osbuild.pipeline",
							references: ["name:tree"]}},
						devices: {disk: {type: "org.osbuild.loopback", options: {filename: "disk.img"}}},
						mounts: [{name: "root", type: "org.osbuild.ext4", source: "disk", target: "/"}],
						options: {paths: [{from: "input://root-tree/", to: "mount://root/"}]}}
				]
			}
		],
		sources: {}
	}' >"$1"
}

# v2_settle is run before every timed build: the last build's writeback is
# not billed to the next, and BENCH_SOURCE=cold drops the caches.
v2_settle() {
	sync
	[[ $BENCH_SOURCE != cold ]] || drop_caches
}

# v2_forge runs one forge build of the manifest on STORE into DIR/out, with
# its start time, events, stdout and stderr in DIR; with TIMES, timed into
# it. Returns non-zero when the build fails.
# Usage: v2_forge NAME STORE DIR [TIMES]
v2_forge() {
	local name=$1 store=$2 dir=$3 times=${4:-$V2_W/untimed.t}
	mkdir -p "$dir"
	v2_settle
	if ! timeit_store "$times" "$dir/stdout" "$dir/stderr" "$store" \
		"${V2_WRAP[@]}" "$dir/start" "$dir/events" "$V2_W" \
		"$FORGE" build --store "$store" --libdir "$BENCH_LIBDIR" --export image \
		--output-directory "$dir/out" --monitor-fd 3 "$V2_W/manifest.json"; then
		v2_fail "\`forge build\` ($name) failed" "$dir/stderr"
		return 1
	fi
}

# v2_osbuild runs one osbuild build of the manifest on STORE into DIR/out,
# with its stdout and stderr in DIR; the arguments after TIMES are added to
# osbuild's. Returns non-zero when the build fails.
# Usage: v2_osbuild NAME STORE DIR TIMES [ARG...]
v2_osbuild() {
	local name=$1 store=$2 dir=$3 times=$4 lines status=0
	shift 4
	mkdir -p "$dir"
	lines=$(count_lines "$times")
	v2_settle
	timeit "$times" "${V2_WRAP[@]}" "$dir/start" /dev/null "$V2_OSBUILD" \
		/usr/bin/python3 -m osbuild --libdir "$V2_OSBUILD" --store "$store" \
		--output-directory "$dir/out" --export image "$@" "$V2_W/manifest.json" \
		>"$dir/stdout" 2>"$dir/stderr" || status=$?
	if ((status != 0)); then
		# timeit writes a line for a command that ran and failed.
		(($(count_lines "$times") == lines)) || sed -i '$d' "$times"
		cat "$dir/stderr" >>"$dir/stdout"
		v2_fail "osbuild ($name) failed with status $status" "$dir/stdout"
		return 1
	fi
	# A failed umount or leftover loop device would pile up from run to run.
	umount_below "$store"
}

# v2_check records what build NAME of TOOL left: the stages it ran, the
# image's /etc/hostname and size, and the image pipeline's ID, in
# V2_W/checks: "TOOL NAME KIND STAGES HOSTNAME BYTES ID".
# Usage: v2_check TOOL NAME KIND DIR
v2_check() {
	local tool=$1 name=$2 kind=$3 dir=$4 stages host bytes=0 id
	local img=$dir/out/image/disk.img
	if [[ $tool == forge ]]; then
		stages=$(tr -d '\036' <"$dir/events" | jq -s '[.[] | select(.type == "stage.started")] | length' 2>/dev/null) || stages="?"
		id=$(tr -d '\036' <"$dir/events" | jq -rs '[.[] | select(.type == "result")][-1].result.pipelines.image // "?"' 2>/dev/null) || id="?"
	else
		stages=$(grep -c 'Duration: ' "$dir/stdout") || true
		id=$(awk '$1 == "image:" { print $2 }' "$dir/stdout" | tail -n 1)
	fi
	host=$(debugfs -R 'cat /etc/hostname' "$img" 2>/dev/null | head -n 1) || true
	[[ ! -f $img ]] || bytes=$(stat -c %s "$img")
	echo "$tool $name $kind ${stages:-?} ${host:-none} $bytes ${id:-?}" >>"$V2_W/checks"
	[[ $host == "$V2_HOSTNAME" ]] || v2_fail "$tool's build $name left no disk.img holding /etc/hostname $V2_HOSTNAME (got: ${host:-none})"
}

# v2_forge_phases splits cold forge build RUN's wall time (DIR's start
# time, its events, and the last line of TIMES) into phases, appended to
# V2_W/phases-forge: "RUN WALL STARTUP STAGES GAPS EXPORT EXIT", and its
# stages' durations to V2_W/stages-forge: "RUN INDEX NAME SECONDS".
# Usage: v2_forge_phases RUN DIR TIMES
v2_forge_phases() {
	local run=$1 dir=$2 times=$3 start wall
	start=$(<"$dir/start")
	wall=$(tail -n 1 "$times" | cut -d' ' -f1)
	# Event times are RFC 3339 with nanoseconds, UTC.
	tr -d '\036' <"$dir/events" | jq -rs --argjson start "$start" --argjson wall "$wall" --arg run "$run" '
		def t: (.time | sub("\\.[0-9]+Z$"; "Z") | fromdateiso8601)
			+ ((.time | capture("\\.(?<f>[0-9]+)Z$") | "0." + .f | tonumber) // 0);
		[.[] | select(.type == "stage.started")] as $s
		| [.[] | select(.type == "stage.finished")] as $f
		| ([.[] | select(.type == "result")][-1] | t) as $r
		| ($f | map(.duration_seconds) | add) as $stages
		| ($s[0] | t) as $first
		| ($f[-1] | t) as $last
		| [$first - $start, $stages, ($last - $first) - $stages, $r - $last, $start + $wall - $r]
		| [$run, $wall] + map(. * 1000 | round / 1000) | @tsv' | tr '\t' ' ' >>"$V2_W/phases-forge"
	tr -d '\036' <"$dir/events" | jq -rs --arg run "$run" '
		[.[] | select(.type == "stage.finished")] | to_entries[]
		| "\($run) \(.key) \(.value.name) \(.value.duration_seconds)"' >>"$V2_W/stages-forge"
}

# v2_osbuild_stages appends the durations osbuild printed for the stages of
# build RUN (DIR/stdout) to FILE: "RUN INDEX NAME SECONDS", and the build's
# wall time (the last line of TIMES) to FILE.walls: "RUN WALL".
# Usage: v2_osbuild_stages RUN DIR TIMES FILE
v2_osbuild_stages() {
	awk -v run="$1" '
		/^org\.osbuild\.[^ ]*: [0-9a-f]+ \{$/ { name = $1; sub(/:$/, "", name) }
		/Duration: [0-9.]+s/ {
			match($0, /Duration: [0-9.]+/)
			print run, n++, name, substr($0, RSTART + 10, RLENGTH - 10)
		}' "$2/stdout" >>"$4"
	echo "$1 $(tail -n 1 "$3" | cut -d' ' -f1)" >>"$4.walls"
}

# v2_median_run prints the run of a file of "RUN WALL ..." lines whose wall
# time is the median (the lower one of the middle two for an even count).
v2_median_run() {
	[[ -s $1 ]] || return 0
	sort -g -k2,2 "$1" | awk '{ r[NR] = $1 } END { print r[int((NR + 1) / 2)] }'
}

# v2_measure runs the builds and prints the tables.
v2_measure() {
	local note=""
	if [[ -z $FORGE ]]; then
		note="not run: $FORGE_MISSING"
	elif [[ -z $BENCH_LIBDIR ]]; then
		note="not run: $BENCH_LIBDIR_MISSING"
	fi
	[[ -z $note ]] || BENCH_FAILED+=("v2: forge: $note")
	need_pkgs debugfs:e2fsprogs mkfs.ext4:e2fsprogs
	v2_manifest "$V2_W/manifest.json"
	[[ -n $note ]] || v2_runs || true
	v2_tables "$note"
	echo
	echo "Notes:"
	echo
	echo "- Load average at the end of the area: $(cut -d' ' -f1-3 /proc/loadavg) (at its start: see above)." >>"$V2_W/notes"
	cat "$V2_W/notes"
	[[ ! -s $V2_W/failed ]] || mapfile -t -O "${#BENCH_FAILED[@]}" BENCH_FAILED <"$V2_W/failed"
}

# v2_runs runs the warm-up builds, then BENCH_RUNS runs of every row.
v2_runs() {
	local i d s
	log "v2: warm-up builds (not timed)"
	v2_forge warm-up "$V2_SCRATCH/warm/forge/store" "$V2_SCRATCH/warm/forge" || return 1
	stop_forge_daemons "$V2_SCRATCH/warm"
	if [[ -n $V2_OSBUILD ]]; then
		v2_osbuild warm-up "$V2_SCRATCH/warm/osbuild/store" "$V2_SCRATCH/warm/osbuild" "$V2_W/untimed.t" ||
			V2_OSBUILD_NOTE="osbuild failed: see the notes below"
		[[ -z $V2_OSBUILD_NOTE ]] || V2_OSBUILD=""
	fi
	for ((i = 1; i <= BENCH_RUNS; i++)); do
		log "v2: run $i/$BENCH_RUNS"
		d=$V2_SCRATCH/run-$i
		s=$d/forge-store
		if v2_forge "cold-$i" "$s" "$d/forge-cold" "$V2_W/forge-cold.t"; then
			v2_check forge "cold-$i" cold "$d/forge-cold"
			v2_forge_phases "$i" "$d/forge-cold" "$V2_W/forge-cold.t"
			if v2_forge "cached-$i" "$s" "$d/forge-cached" "$V2_W/forge-cached.t"; then
				v2_check forge "cached-$i" cached "$d/forge-cached"
			fi
			stop_forge_daemons "$d"
			if v2_forge "restart-$i" "$s" "$d/forge-restart" "$V2_W/forge-restart.t"; then
				v2_check forge "restart-$i" cached "$d/forge-restart"
			fi
		fi
		stop_forge_daemons "$d"
		[[ -n $V2_OSBUILD ]] || continue
		if v2_osbuild "plain-$i" "$d/osbuild-plain-store" "$d/osbuild-plain" "$V2_W/osbuild-plain.t"; then
			v2_check osbuild "plain-$i" cold "$d/osbuild-plain"
			v2_osbuild_stages "$i" "$d/osbuild-plain" "$V2_W/osbuild-plain.t" "$V2_W/stages-osbuild-plain"
		fi
		s=$d/osbuild-store
		if v2_osbuild "cold-$i" "$s" "$d/osbuild-cold" "$V2_W/osbuild-cold.t" "${V2_OSBUILD_CACHE[@]}"; then
			v2_check osbuild "cold-$i" cold "$d/osbuild-cold"
			v2_osbuild_stages "$i" "$d/osbuild-cold" "$V2_W/osbuild-cold.t" "$V2_W/stages-osbuild-cold"
			if v2_osbuild "cached-$i" "$s" "$d/osbuild-cached" "$V2_W/osbuild-cached.t" "${V2_OSBUILD_CACHE[@]}"; then
				v2_check osbuild "cached-$i" cached "$d/osbuild-cached"
			fi
		fi
	done
}

# v2_median prints the median wall time of a file of timeit lines in
# V2_W, or nothing when it is missing.
v2_median() { [[ ! -s $V2_W/$1 ]] || field "$V2_W/$1" 1 | median; }

# v2_row prints one row of the builds' table.
# Usage: v2_row LABEL COMMAND TIMES BASE TOOL KIND_PREFIX WHY
v2_row() {
	local label=$1 cmd=$2 times=$V2_W/$3 base=$4 tool=$5 prefix=$6 why=$7
	if [[ ! -s $times ]]; then
		echo "| $label | $cmd | 0 | $why | | | | |"
		return
	fi
	local started
	started=$(awk -v t="$tool" -v p="$prefix" '$1 == t && index($2, p "-") == 1 { print $4 }' "$V2_W/checks" 2>/dev/null | sort -u | paste -sd/ -) || true
	echo "| $label | $cmd | $(count_lines "$times") | $(time_cells "$times") | $(ratio_fine "$(field "$times" 1 | median)" "$base")× | ${started:-?} |"
}

# v2_tables prints the area's tables from the raw figures in V2_W.
# Usage: v2_tables NOTE
v2_tables() {
	local note=${1:-} why=${1:-failed: see the notes below} owhy
	owhy=${V2_OSBUILD_NOTE:-failed: see the notes below}
	[[ -z $note ]] || owhy=$note
	[[ -z ${OSBUILD_CHECKOUT:-} ]] && owhy="not run: $V2_OSBUILD_NOTE"
	local fcold fcached frestart oplain ocold ocached
	fcold=$(v2_median forge-cold.t)
	fcached=$(v2_median forge-cached.t)
	frestart=$(v2_median forge-restart.t)
	oplain=$(v2_median osbuild-plain.t)
	ocold=$(v2_median osbuild-cold.t)
	ocached=$(v2_median osbuild-cached.t)
	echo
	echo "### Builds"
	echo
	echo "| row | command | runs | median | spread (min–max) | CPU | × osbuild cold | stages run |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
	v2_row "forge, cold: a new store" "\`$V2_FORGE_CMD\`" forge-cold.t "$oplain" forge cold "$why"
	v2_row "forge, fully cached: the same again, the store's daemon running" "the same, on the same S" forge-cached.t "$oplain" forge cached "$why"
	v2_row "forge, fully cached, the daemon stopped before (the build starts it)" "the same, after \`forge daemon stop --store S\`" forge-restart.t "$oplain" forge restart "$why"
	v2_row "osbuild, cold: a new store, no checkpoints (baseline)" "\`$V2_OSBUILD_CMD\`, in C" osbuild-plain.t "$oplain" osbuild plain "$owhy"
	v2_row "osbuild, cold, storing every stage (as forge does)" "the same with \`${V2_OSBUILD_CACHE[*]}\`" osbuild-cold.t "$oplain" osbuild cold "$owhy"
	v2_row "osbuild, fully cached: the same again" "the same, on the same S" osbuild-cached.t "$oplain" osbuild cached "$owhy"

	echo
	echo "### Against the targets"
	echo
	echo "| figure | value | target | result |"
	echo "| --- | --- | --- | --- |"
	local r
	r=$(ratio "$fcold" "$oplain")
	echo "| forge cold ÷ osbuild cold (no checkpoints: osbuild's command as it stands) | ${r}× | ≤ ${V2_TARGET_COLD}× (DESIGN §7) | $(verdict "$r" le "$V2_TARGET_COLD") |"
	echo "| forge cold ÷ osbuild cold storing every stage | $(ratio "$fcold" "$ocold")× | | |"
	echo "| forge fully cached, daemon running | $(fmt_secs "$fcached") | ≤ ${V2_TARGET_CACHED} s (DESIGN §7) | $(verdict "$fcached" le "$V2_TARGET_CACHED") |"
	echo "| forge fully cached, daemon started by the build | $(fmt_secs "$frestart") | (≤ ${V2_TARGET_CACHED} s, for comparison) | $(verdict "$frestart" le "$V2_TARGET_CACHED") |"
	echo "| forge fully cached ÷ osbuild fully cached | $(ratio_fine "$fcached" "$ocached")× | | |"
	if [[ -z $V2_OSBUILD && -z $oplain ]]; then
		echo
		echo "osbuild's rows did not run: $V2_OSBUILD_NOTE. Set OSBUILD_CHECKOUT to an osbuild source checkout to compare."
	fi

	v2_phase_table
	echo
	v2_checks "$note"
}

# v2_phase_table prints where the cold builds spend their time: forge's
# phases and each stage's duration next to osbuild's for the same stage,
# each tool's from its run with the median wall time, so that the rows add
# up to that run's wall time.
v2_phase_table() {
	[[ -s $V2_W/phases-forge ]] || return 0
	local fr pr cr
	fr=$(v2_median_run "$V2_W/phases-forge")
	pr=$(v2_median_run "$V2_W/stages-osbuild-plain.walls")
	cr=$(v2_median_run "$V2_W/stages-osbuild-cold.walls")
	local -a ph
	read -r -a ph < <(awk -v r="$fr" '$1 == r' "$V2_W/phases-forge")
	echo
	echo "### Where the cold builds' time goes (each tool's run with the median wall time)"
	echo
	echo "forge's phases come from its \`--monitor-fd\` events: their times, and each \`stage.finished\` event's \`duration_seconds\` (\`forge build\` prints the same as \"done in\" on stderr), which spans the stage's buildroot, its run and the commit of its tree. osbuild's stages come from the \"⏱ Duration\" it prints after each; its rest (Python's start, the manifest's validation, the store, the export) is the wall time less the stages."
	echo
	echo "| phase | forge cold (run $fr) | osbuild cold, no checkpoints${pr:+ (run $pr)} | osbuild cold, storing every stage${cr:+ (run $cr)} |"
	echo "| --- | --- | --- | --- |"
	echo "| start to the first stage (the daemon's start, the manifest, the store) | $(fmt_secs "${ph[2]}") | | |"
	local i name f p c
	for ((i = 0; i < V2_STAGES; i++)); do
		name=$(awk -v r="$fr" -v i="$i" '$1 == r && $2 == i { print $3 }' "$V2_W/stages-forge")
		f=$(awk -v r="$fr" -v i="$i" '$1 == r && $2 == i { print $4 }' "$V2_W/stages-forge")
		p=$(awk -v r="$pr" -v i="$i" '$1 == r && $2 == i { print $4 }' "$V2_W/stages-osbuild-plain" 2>/dev/null)
		c=$(awk -v r="$cr" -v i="$i" '$1 == r && $2 == i { print $4 }' "$V2_W/stages-osbuild-cold" 2>/dev/null)
		echo "| stage $i: \`${name:-?}\` | $(fmt_secs "$f") | $(fmt_secs "$p") | $(fmt_secs "$c") |"
	done
	local sp="" sc="" wp="" wc=""
	[[ -z $pr ]] || read -r sp wp < <(v2_osbuild_sum "$pr" "$V2_W/stages-osbuild-plain")
	[[ -z $cr ]] || read -r sc wc < <(v2_osbuild_sum "$cr" "$V2_W/stages-osbuild-cold")
	echo "| all $V2_STAGES stages | $(fmt_secs "${ph[3]}") | $(fmt_secs "$sp") | $(fmt_secs "$sc") |"
	echo "| between the stages (the next pipeline's tree mounted) | $(fmt_secs "${ph[4]}") | | |"
	echo "| last stage to the result (the export to OUT/image) | $(fmt_secs "${ph[5]}") | | |"
	echo "| result to exit | $(fmt_secs "${ph[6]}") | | |"
	echo "| outside the stages (wall time less the stages) | $(fmt_secs "$(awk -v w="${ph[1]}" -v s="${ph[3]}" 'BEGIN { print w - s }')") | $(fmt_secs "$(awk -v w="$wp" -v s="$sp" 'BEGIN { if (w != "") print w - s }')") | $(fmt_secs "$(awk -v w="$wc" -v s="$sc" 'BEGIN { if (w != "") print w - s }')") |"
	echo "| wall time | $(fmt_secs "${ph[1]}") | $(fmt_secs "$wp") | $(fmt_secs "$wc") |"
}

# v2_osbuild_sum prints "STAGES WALL" of osbuild build RUN: the sum of its
# stages' durations in FILE, and its wall time from FILE.walls.
# Usage: v2_osbuild_sum RUN FILE
v2_osbuild_sum() {
	echo "$(awk -v r="$1" '$1 == r { s += $4 } END { print s + 0 }' "$2") $(awk -v r="$1" '$1 == r { print $2 }' "$2.walls")"
}

# v2_checks prints the table of what the builds must have done.
v2_checks() {
	local note=${1:-not run}
	echo "Checks:"
	echo
	echo "| check | expected | got | result |"
	echo "| --- | --- | --- | --- |"
	if [[ ! -s $V2_W/checks ]]; then
		echo "| every build's disk.img holds /etc/hostname | | ${note:-failed: see the notes below} | not run |"
		return
	fi
	local tool n good result want
	for tool in forge osbuild; do
		n=$(awk -v t="$tool" '$1 == t' "$V2_W/checks" | wc -l)
		((n > 0)) || continue
		good=$(awk -v t="$tool" -v h="$V2_HOSTNAME" '$1 == t && $5 == h && $6 == 64 * 1048576' "$V2_W/checks" | wc -l)
		result=PASS
		((good == n)) || result=FAIL
		[[ $result == PASS ]] || BENCH_FAILED+=("v2: some of $tool's images lack /etc/hostname $V2_HOSTNAME")
		echo "| $tool: \`OUT/image/disk.img\` is 64 MiB and \`debugfs -R 'cat /etc/hostname'\` prints $V2_HOSTNAME | $n builds | $good builds | $result |"
		good=$(awk -v t="$tool" -v s="$V2_STAGES" '$1 == t && (($3 == "cold" && $4 == s) || ($3 == "cached" && $4 == 0))' "$V2_W/checks" | wc -l)
		result=PASS
		((good == n)) || result=FAIL
		echo "| $tool: stages run: all $V2_STAGES by the cold builds, none by the cached ones | $n builds | $good builds | $result |"
	done
	want=$(awk '$1 == "forge" { print $7 }' "$V2_W/checks" | sort -u | paste -sd' ' -)
	local got
	got=$(awk '$1 == "osbuild" { print $7 }' "$V2_W/checks" | sort -u | paste -sd' ' -)
	if [[ -n $got ]]; then
		result=PASS
		[[ $want == "$got" && $want != *" "* ]] || result=FAIL
		echo "| forge and osbuild give the image pipeline the same ID (forge's \`result\` event, osbuild's \"Pipelines\" list) | forge: \`${want:0:16}…\` | osbuild: \`${got:0:16}…\` | $result |"
	fi
}
