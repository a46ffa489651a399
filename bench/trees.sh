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
