# shellcheck shell=bash
# bench/trees.sh: the reference trees of bench/ (sourced by bench/run).
#
# Each tree is built once and cached under $BENCH_DIR/trees: built under a
# ".partial" name and renamed when complete, so an interrupted build leaves no
# tree that a later run would take for a finished one. Next to each tree,
# NAME.info records how and when it was built and how long that took.

# apt_mirror prints the URI of the Debian archive that the host's apt uses for
# bookworm: deb822 sources first, then one-line sources. BENCH_MIRROR
# overrides it. Nothing is hard-coded, so the trees come from wherever this
# machine is allowed to fetch packages.
apt_mirror() {
	if [[ -n ${BENCH_MIRROR:-} ]]; then
		echo "$BENCH_MIRROR"
		return
	fi
	local f uri
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -r $f ]] || continue
		# deb822: paragraphs separated by blank lines; take the first URI of the
		# first enabled "deb" paragraph whose Suites include bookworm itself.
		uri=$(awk '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && suites ~ /(^| )bookworm( |$)/ && enabled != "no" && uris != "" && found == "") {
					split(uris, u, " "); found = u[1]
				}
				types = suites = uris = enabled = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			{
				line = $0; sub(/^[^:]*:[ \t]*/, "", line)
				key = tolower($1); sub(/:.*/, "", key)
				if (key == "types") types = line
				else if (key == "suites") suites = line
				else if (key == "uris") uris = line
				else if (key == "enabled") enabled = tolower(line)
			}
			END { flush(); print found }' "$f")
		if [[ -n $uri ]]; then
			echo "$uri"
			return
		fi
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -r $f ]] || continue
		# One-line form: deb [options] URI SUITE COMPONENT...
		uri=$(awk '
			$1 != "deb" { next }
			{
				i = 2
				if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				if ($(i + 1) == "bookworm") { print $i; exit }
			}' "$f")
		if [[ -n $uri ]]; then
			echo "$uri"
			return
		fi
	done
	die "no bookworm Debian archive in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list; set BENCH_MIRROR=URI"
}

# discard_partial removes a partly built tree. debootstrap mounts /proc and
# /sys inside its target and a killed debootstrap leaves them mounted, so
# unmount whatever is below the directory first (deepest first) and never
# let rm cross into another filesystem.
discard_partial() {
	[[ -e $1 ]] || return 0
	umount_below "$1"
	rm -rf --one-file-system "$1"
}

# umount_below unmounts every mount below a directory, deepest first.
umount_below() {
	local m
	while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done < <(findmnt -rn -o TARGET | awk -v d="$1" 'index($0, d "/") == 1' | sort -r)
}

# record_tree writes NAME.info for a finished tree.
# Usage: record_tree TREE SECONDS DESCRIPTION
record_tree() {
	local tree=$1 secs=$2 what=$3
	# For bench/run's summary: this run's time includes building a tree.
	touch "$BENCH_WORK/trees-built"
	{
		echo "what: $what"
		echo "built: $(date -u '+%Y-%m-%d %H:%M UTC')"
		echo "build_seconds: $secs"
		echo "entries: $(find "$tree" | wc -l)"
		echo "bytes: $(du -sb "$tree" | cut -f1)"
	} >"$tree.info"
}

# tree_info prints field KEY of a tree's .info file.
tree_info() { awk -v k="$2:" '$1 == k { $1 = ""; sub(/^ /, ""); print; exit }' "$1.info" 2>/dev/null; }

# DEBIAN_TREE_CMD is what RESULTS.md shows; MIRROR stands for the host's
# archive, whose name stays out of the repository.
DEBIAN_TREE_CMD='debootstrap --variant=minbase --include=linux-image-amd64 bookworm DIR MIRROR'

# debian_tree prints the path of the Debian bookworm minbase tree with a
# kernel, building it first when it is missing.
debian_tree() {
	local tree=$BENCH_DIR/trees/debian-bookworm-minbase-kernel
	if [[ -d $tree && -f $tree.info ]]; then
		echo "$tree"
		return
	fi
	need_pkgs debootstrap
	local mirror partial=$tree.partial start
	mirror=$(apt_mirror)
	discard_partial "$partial"
	rm -rf "$tree" "$tree.info"
	mkdir -p "$BENCH_DIR/trees"
	log "building the Debian reference tree (once; cached in $tree)"
	start=$(date +%s)
	local dlog=$BENCH_DIR/trees/debootstrap.log
	if ! debootstrap --variant=minbase --include=linux-image-amd64 bookworm "$partial" "$mirror" >"$dlog" 2>&1; then
		tail -n 20 "$dlog" >&2
		discard_partial "$partial"
		die "debootstrap failed (log: $dlog)"
	fi
	# debootstrap unmounts what it mounted when it succeeds; make sure, since
	# the tree is copied and imported with whatever is mounted in it.
	umount_below "$partial"
	mv -T "$partial" "$tree"
	record_tree "$tree" $(($(date +%s) - start)) "$DEBIAN_TREE_CMD"
	log "Debian reference tree built in $(tree_info "$tree" build_seconds) s"
	echo "$tree"
}

# debian_nodev_tree prints the path of a copy of the Debian tree without
# its device nodes (and FIFOs and sockets, if any), for ostree, which stores
# none of them; makes it first when it is missing or older than the tree.
# Usage: debian_nodev_tree DEBIAN_TREE
debian_nodev_tree() {
	local debian=$1 tree=$1.nodev
	if [[ -d $tree && -f $tree.info && $(tree_info "$tree" source_built) == "$(tree_info "$debian" built)" ]]; then
		echo "$tree"
		return
	fi
	local partial=$tree.partial start
	discard_partial "$partial"
	rm -rf "$tree" "$tree.info"
	log "copying the Debian tree without its device nodes, for ostree (once; cached in $tree)"
	start=$(date +%s)
	cp -a "$debian" "$partial" || {
		discard_partial "$partial"
		die "cp -a $debian $partial failed"
	}
	find "$partial" -xdev \( -type b -o -type c -o -type p -o -type s \) -delete
	sync -f "$partial"
	mv -T "$partial" "$tree"
	record_tree "$tree" $(($(date +%s) - start)) "cp -a DEBIAN_TREE DIR; find DIR \\( -type b -o -type c -o -type p -o -type s \\) -delete"
	echo "source_built: $(tree_info "$debian" built)" >>"$tree.info"
	echo "$tree"
}

# MIXED_SIZE and MIXED_SEED define the mixed tree; they are part of its
# cache name, like the generator's version, so changing any rebuilds it.
MIXED_SIZE=$((2 << 30))
MIXED_SEED=1
MIXED_VERSION=1
MIXED_TREE_CMD="go run ./bench/gentree -out DIR -size $MIXED_SIZE -seed $MIXED_SEED"

# mixed_tree prints the path of the 2 GiB mixed tree, generating it first
# when it is missing.
mixed_tree() {
	local tree=$BENCH_DIR/trees/mixed-v$MIXED_VERSION-seed$MIXED_SEED-$MIXED_SIZE
	if [[ -d $tree && -f $tree.info ]]; then
		echo "$tree"
		return
	fi
	local partial=$tree.partial start
	discard_partial "$partial"
	rm -rf "$tree" "$tree.info"
	mkdir -p "$BENCH_DIR/trees"
	log "generating the mixed reference tree (once; cached in $tree)"
	start=$(date +%s)
	"$BENCH_TOOLS/gentree" -out "$partial" -size "$MIXED_SIZE" -seed "$MIXED_SEED" >&2 ||
		{
			discard_partial "$partial"
			die "bench/gentree failed"
		}
	mv -T "$partial" "$tree"
	record_tree "$tree" $(($(date +%s) - start)) "$MIXED_TREE_CMD"
	log "mixed reference tree generated in $(tree_info "$tree" build_seconds) s"
	echo "$tree"
}

# sample_manifest writes the format-1 sample manifest
# (samples/debian-bookworm-format1.json: the areas that use it read its
# format-1 shape) with the host's Debian mirror filled in (BENCH_MIRROR overrides it) to
# FILE; further arguments go to gen-manifest (e.g. --hostname NAME).
# Usage: sample_manifest FILE [ARG...]
sample_manifest() {
	local out=$1
	shift
	"$BENCH_TOOLS/gen-manifest" ${BENCH_MIRROR:+--mirror "$BENCH_MIRROR"} "$@" \
		"$BENCH_REPO/samples/debian-bookworm-format1.json" >"$out"
}

# SAMPLE_BASE_CMD is what RESULTS.md shows for the sample's base tree.
SAMPLE_BASE_CMD='forge build of the sample'"'"'s first stage alone (org.osbuild.mmdebstrap, bookworm minbase), then forge store export ID DIR'

# sample_base_tree prints "PATH ID": the tree of the sample's first stage
# (org.osbuild.mmdebstrap) and that stage's osbuild ID, the name of its ref
# in a store. The tree is built once with forge build (which downloads
# Debian) in a store below BENCH_WORK, exported, and cached under a name
# with the ID, so that another mirror or other options make another tree.
# Needs FORGE and BENCH_LIBDIR.
sample_base_tree() {
	local m=$BENCH_WORK/sample-base id tree
	mkdir -p "$m"
	sample_manifest "$m/sample.json" 2>"$m/manifest.err" || die "gen-manifest of the sample failed: $(tail -n 1 "$m/manifest.err")"
	jq '{pipeline: {stages: [.pipeline.stages[0]]}}' "$m/sample.json" >"$m/base.json"
	id=$("$FORGE" inspect --store "$m/store" "$m/base.json" 2>"$m/inspect.err" | jq -r '.pipeline.stages[0].id') ||
		die "forge inspect of the sample's first stage failed: $(tail -n 1 "$m/inspect.err")"
	[[ $id =~ ^[0-9a-f]{64}$ ]] || die "forge inspect printed no ID for the sample's first stage"
	tree=$BENCH_DIR/trees/sample-base-${id:0:16}
	if [[ -d $tree && -f $tree.info ]]; then
		stop_forge_daemons "$m"
		echo "$tree $id"
		return
	fi
	local partial=$tree.partial start
	discard_partial "$partial"
	rm -rf "$tree" "$tree.info"
	log "building the sample's base tree (once; cached in $tree)"
	start=$(date +%s)
	if ! "$FORGE" build --store "$m/store" --libdir "$BENCH_LIBDIR" "$m/base.json" >"$m/build.log" 2>&1 ||
		! "$FORGE" store export --store "$m/store" "$id" "$partial" >>"$m/build.log" 2>&1; then
		tail -n 20 "$m/build.log" >&2
		stop_forge_daemons "$m"
		discard_partial "$partial"
		die "building the sample's base tree failed (log: $m/build.log)"
	fi
	stop_forge_daemons "$m"
	sync -f "$partial"
	mv -T "$partial" "$tree"
	record_tree "$tree" $(($(date +%s) - start)) "$SAMPLE_BASE_CMD"
	echo "stage_id: $id" >>"$tree.info"
	echo "$tree $id"
}
