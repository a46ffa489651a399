# shellcheck shell=bash
# bench/areas/debian.sh: area "debian" of bench/run (issue 17: the Debian
# sample the format-2 way, against the tools a Debian user would pick).
#
# Builds samples/debian-bookworm.json (format 2, pinned packages) with
# `forge build`: cold on an empty store, cold with the sources already in
# the store, fully cached, with the hostname changed; times the image
# pipelines against mkfs.ext4 -d + qemu-img convert on the same tree; and
# measures the store after the sample and after a variant with 5 more
# packages. The peers build the same package set from the same mirror,
# each with its own caching: mmdebstrap + mkfs.ext4 -d + qemu-img convert
# (the floor), mkosi 14 (--incremental) and debos (--disable-fakemachine,
# two recipes). Every image's /etc/hostname is checked. Writes the
# "debian" section of RESULTS.md.

# Issue 17's goals (its "Speed" table).
DEB_GOAL_COLD=75
DEB_GOAL_RERUN=1
DEB_GOAL_HOSTNAME=10
DEB_GOAL_IMAGE=1.5

# What the sample installs on top of minbase (its apt stage), the hostname
# it sets, and the 5 packages the variant adds.
DEB_PACKAGES=(linux-image-amd64 systemd-sysv udev iproute2 less sudo)
DEB_HOSTNAME=forge-debian
DEB_EXTRA=(tree nano bc psmisc lsof)
# The sample's stages: os 8, image 5, qcow2 1.
DEB_STAGES=14

DEB_FORGE_CMD='forge build --store S --libdir L --output-directory OUT --monitor-fd 3 MANIFEST'

# DEB_MONITOR opens fd 3 on a file (the first argument) for forge build's
# --monitor-fd 3 (timeit passes on only 0, 1 and 2) and execs the rest.
# shellcheck disable=SC2016 # expanded by the inner bash
DEB_MONITOR=(bash -c 'exec 3>"$1" || exit 125; shift; exec "$@"' deb_monitor)
# DEB_IN runs a command in a directory (mkosi and debos read their
# configuration from the current directory).
# shellcheck disable=SC2016
DEB_IN=(bash -c 'cd "$1" || exit 125; shift; exec "$@"' deb_in)

# What the area holds while it runs, for deb_cleanup (also run by the EXIT
# trap): the scratch directory (stores, trees, peers' caches and images)
# and the raw figures.
DEB_SCRATCH=""
DEB_W=""
DEB_MIRROR=""

area_debian() {
	local section=$BENCH_WORK/debian.md
	{
		echo "## The Debian sample, format 2: forge against mkosi, debos and mmdebstrap"
		echo
		echo "Issue 17 (the \"Speed\" table and the \`bench/\` rows of \"Tests and proof\"): \`bench/run debian\`, the cold builds once, $BENCH_RUNS runs of the others."
		echo
		machine_description "$BENCH_DIR"
		echo
	} >"$section"

	local saved_trap prev_trap=()
	saved_trap=$(trap -p EXIT)
	eval "prev_trap=($saved_trap)" # trap -- 'COMMAND' EXIT
	# shellcheck disable=SC2064 # bench/run's trap command is expanded now, on purpose
	trap "deb_cleanup; ${prev_trap[2]:-}" EXIT

	need_space "$BENCH_DIR" $(((24 + 2 * BENCH_RUNS) << 30))
	DEB_W=$BENCH_DIR/raw/debian
	DEB_SCRATCH=$BENCH_WORK/debian
	rm -rf "$DEB_W"
	mkdir -p "$DEB_W" "$DEB_SCRATCH"
	DEB_MIRROR=$(apt_mirror)
	{
		deb_method
		deb_measure
	} >>"$section"

	deb_cleanup
	if [[ -n $saved_trap ]]; then
		eval "$saved_trap"
	else
		trap - EXIT
	fi
	results_update "$BENCH_RESULTS" debian "$section"
}

deb_method() {
	cat <<-EOF
		How: every tool installs bookworm minbase plus \`${DEB_PACKAGES[*]}\` (no recommends)
		from this host's mirror \`$DEB_MIRROR\` (read from its apt sources, BENCH_MIRROR
		overrides it), sets the hostname $DEB_HOSTNAME and writes a 3 GiB disk image as
		qcow2; one build at a time. The raw figures and every tool's log are kept in
		\`BENCH_DIR/raw/debian\`.

		- **forge**: \`MANIFEST\` is \`samples/debian-bookworm.json\` (format 2, pinned
		  \`.deb\`s as \`org.osbuild.curl\` sources, \`source-epoch\`) made ready here by
		  \`gen-manifest\` (downloads from the mirror); pipelines \`os\` (mmdebstrap minbase, apt,
		  locale, timezone, users, fstab, grub2, hostname), \`image\` (truncate, sfdisk,
		  mkfs.ext4, copy, grub2.inst: \`disk.img\`, BIOS GRUB) and \`qcow2\`
		  (\`org.osbuild.qemu\`, uncompressed). \`S\` is one store for all rows, \`L\` the libdir
		  built from this checkout, \`OUT\` new per build. Before every timed build the store's
		  daemon is stopped (\`forge daemon stop --store S\`; the build starts it), except in
		  the row that says otherwise. Rows, in the order they run: cold on an empty store;
		  fully cached; fully cached with the daemon left running; hostname changed
		  (\`gen-manifest --hostname bench-host-I\`); a variant with ${#DEB_EXTRA[@]} more packages
		  (\`${DEB_EXTRA[*]}\` added to the apt stage of \`samples/debian-bookworm.in.json\`,
		  pinned with \`gen-manifest --resolve\`); then every ref not starting with \`source/\`
		  dropped (\`forge store rm\`, \`forge store gc\`) and the sample built again: cold
		  with its sources in the store.
		- **The image pipelines** (\`image\` and \`qcow2\`, truncate to qcow2) are the sum of
		  their stages' \`duration_seconds\` (\`stage.finished\` events of \`--monitor-fd\`, the
		  "done in" of forge's stderr): in the hostname-changed builds, which rerun the
		  hostname stage and then the image stages that take the \`os\` tree (copy,
		  grub2.inst, qemu; truncate, sfdisk and mkfs.ext4 stay cached), and all 6 of them
		  in the cold build; against the floor on the same tree:
		  \`forge store export\` of the cold build's \`os\` pipeline, then \`truncate -s 3G\`,
		  \`mkfs.ext4 -q -d TREE\` on that sparse file (no partition table, no GRUB) and
		  \`qemu-img convert -O qcow2\`.
		- **The floor**: \`mmdebstrap --variant=minbase --include=$(IFS=,; echo "${DEB_PACKAGES[*]}") bookworm TREE MIRROR\`,
		  \`truncate -s 3G\`, \`mkfs.ext4 -q -d TREE\`, \`qemu-img convert -O qcow2\` (no partition
		  table, no GRUB). mmdebstrap caches nothing: its rerun is the reassembly alone
		  (truncate, mkfs.ext4 -d, convert into a new file), hostname changed is
		  \`echo NAME > TREE/etc/hostname\` plus the reassembly.
		- **mkosi** $(mkosi --version 2>/dev/null | awk '{ print $2 }') (Debian's package): \`mkosi --incremental build\` with \`mkosi.default\`
		  (\`BENCH_DIR/raw/debian/mkosi.default\`): Distribution=debian, Release=bookworm,
		  Mirror, Format=gpt_ext4, QCow2=yes, RootSize=3G, Bootable=no, Packages= the list above,
		  Cache= a package cache, NspawnKeepUnit=yes. Bootable=no: mkosi 14's Bootable=yes is
		  UEFI-only (sd-boot on a vfat ESP) and this kernel has no vfat, so mkosi's image has
		  no boot loader (the timing leaves GRUB out; forge's has it). NspawnKeepUnit=yes:
		  PID 1 here is not systemd, so nspawn cannot make a scope unit. Rerun: \`mkosi
		  --incremental -f build\` (\`-f\` replaces the output and keeps the incremental
		  cache); hostname changed: the same with \`--hostname bench-host-I\`.
		- **debos** $(dpkg-query -W -f '${Version}' debos 2>/dev/null || true) (Debian's package): \`debos --disable-fakemachine\` (fakemachine cannot
		  start here: no KVM, no user-mode Linux), two recipes
		  (\`BENCH_DIR/raw/debian/debos-*.yaml\`): \`base.yaml\` (debootstrap minbase, apt of the
		  list above without recommends, pack to \`base.tar.gz\`: debos's own cache) and
		  \`image.yaml\` (unpack, hostname written from the host into \`\$ROOTDIR\`,
		  image-partition: msdos, one ext4 partition, 3 GiB; filesystem-deploy; \`qemu-img
		  convert -O qcow2\` as a postprocess step). Split because a recipe with
		  image-partition makes every chroot step bind \`/dev/disk\`, which this host lacks
		  (no udev), so the hostname is not set in a chroot either. No GRUB (as mkosi).
		  Cold: both recipes; rerun and hostname changed: \`image.yaml\` alone
		  (\`-t hostname:NAME\`), on the packed base.

		Cold builds run once, after \`sync; echo 3 > /proc/sys/vm/drop_caches\`; the others
		$BENCH_RUNS times each, after \`sync\`$([[ $BENCH_SOURCE == cold ]] && echo ' and dropping the caches (BENCH_SOURCE=cold)' || echo ' (warm caches, as for a user who reruns)'). Times are wall-clock (monotonic);
		CPU is user+sys of the command and what it waited for, plus for forge its store's
		daemon meanwhile. Ratios divide medians measured in this run.
	EOF
}

# deb_cleanup stops the daemons of the area's stores and undoes what a
# killed build left: mounts and loop devices below the scratch directory.
deb_cleanup() {
	[[ -n $DEB_SCRATCH ]] || return 0
	stop_forge_daemons "$DEB_SCRATCH"
	umount_below "$DEB_SCRATCH"
	local dev file
	while read -r dev file; do
		[[ $file == "$DEB_SCRATCH/"* ]] || continue
		log "debian: detaching $dev, left over $file"
		losetup -d "$dev" 2>/dev/null || true
	done < <(losetup -ln -O NAME,BACK-FILE 2>/dev/null)
}

# deb_fail records a failure once (see build_fail).
# Usage: deb_fail WHAT [ERRFILE]
deb_fail() {
	local what=$1 errfile=${2:-} last="" line
	log "debian: $what"
	if [[ -s $errfile ]]; then
		tail -n 20 "$errfile" | sed 's/^/bench:     /' >&2
		last=$(grep -v '^[[:space:]]*$' "$errfile" | tail -n 1 | cut -c1-200)
	fi
	line="- $what${last:+; its last line of output: \`$last\`}."
	grep -qxF -- "$line" "$DEB_W/notes" 2>/dev/null && return 0
	echo "$line" >>"$DEB_W/notes"
	echo "debian: $what" >>"$DEB_W/failed"
}

# deb_note records why a tool's rows did not run: DEB_W/why-TOOL.
deb_note() { echo "$2" >"$DEB_W/why-$1"; }

# deb_settle runs before a timed command: a cold row drops the caches, the
# others only write back (and drop with BENCH_SOURCE=cold). A cold row
# NAME also notes the load average it starts at (in DEB_W/loads): it runs
# once, and other processes on the machine change it most.
# Usage: deb_settle cold|warm [NAME]
deb_settle() {
	sync
	if [[ $1 == cold || $BENCH_SOURCE == cold ]]; then drop_caches; fi
	[[ $1 != cold || -z ${2:-} ]] || echo "$2 $(cut -d' ' -f1 /proc/loadavg)" >>"$DEB_W/loads"
}

# deb_hostname prints the /etc/hostname of a disk image (raw or qcow2): the
# ext4 filesystem at the start of its largest partition, or of the image
# when it has no partition table.
deb_hostname() {
	local img=$1 raw=$DEB_SCRATCH/check.raw off
	if [[ $(qemu-img info --output=json "$img" 2>/dev/null | jq -r .format) == qcow2 ]]; then
		qemu-img convert -O raw "$img" "$raw" 2>/dev/null || return 0
	else
		raw=$img
	fi
	off=$(sfdisk -J "$raw" 2>/dev/null | jq '[.partitiontable.partitions[]] | max_by(.size) | .start * 512' 2>/dev/null) || off=0
	[[ $off =~ ^[0-9]+$ ]] || off=0
	debugfs -R 'cat /etc/hostname' "$raw?offset=$off" 2>/dev/null | head -n 1
	# Its blocks back, without deleting the inode (see shrink in lib.sh).
	[[ $raw != "$DEB_SCRATCH/check.raw" ]] || truncate -s 0 "$raw"
}

# deb_check records the hostname of TOOL's image of build NAME:
# DEB_W/checks gets "TOOL NAME WANT GOT BYTES".
# Usage: deb_check TOOL NAME IMAGE WANT
deb_check() {
	local tool=$1 name=$2 img=$3 want=$4 got bytes=0
	[[ -f $img ]] && bytes=$(stat -c %s "$img")
	got=$(deb_hostname "$img")
	echo "$tool $name $want ${got:-none} $bytes" >>"$DEB_W/checks"
	[[ $got != "$want" ]] || return 0
	if [[ $tool == forge ]]; then
		deb_fail "forge's image of build $name does not hold /etc/hostname $want (got: ${got:-none})"
	else
		# A peer's wrong image is its result, not the bench's failure.
		deb_peer_note "- $tool's image of build $name does not hold /etc/hostname $want (got: ${got:-none})."
	fi
}

# deb_peer_note adds a line to the notes once.
deb_peer_note() {
	grep -qxF -- "$1" "$DEB_W/notes" 2>/dev/null || echo "$1" >>"$DEB_W/notes"
}

# deb_median prints the median wall time of DEB_W/FILE, nothing if none.
deb_median() { [[ ! -s $DEB_W/$1 ]] || field "$DEB_W/$1" 1 | median; }

# deb_measure runs every tool's rows and prints the tables.
deb_measure() {
	need_pkgs debugfs:e2fsprogs jq:jq sfdisk:fdisk
	if ! "$BENCH_REPO/scripts/install-deps" bench >"$DEB_W/install-deps.log" 2>&1; then
		deb_fail "\`scripts/install-deps bench\` failed (it installs the peers)" "$DEB_W/install-deps.log"
	fi
	deb_forge_rows || true
	deb_floor_rows || true
	deb_mkosi_rows || true
	deb_debos_rows || true
	deb_tables
	echo
	echo "Notes:"
	echo
	deb_static_notes >>"$DEB_W/notes"
	echo "- Load average at the end of the area: $(cut -d' ' -f1-3 /proc/loadavg) (at its start: see above)." >>"$DEB_W/notes"
	cat "$DEB_W/notes"
	[[ ! -s $DEB_W/failed ]] || mapfile -t -O "${#BENCH_FAILED[@]}" BENCH_FAILED <"$DEB_W/failed"
}

# deb_static_notes prints what the tables cannot show: the load each cold
# row started at, and where the peers' builds do less than forge's.
deb_static_notes() {
	if [[ -s $DEB_W/loads ]]; then
		echo "- The cold rows run once each, so the machine's load moves them most: the 1-minute load average when each started was $(awk '{ printf "%s%s %s: %s", (NR > 1 ? "; " : ""), $1, $2, $3 }' "$DEB_W/loads")."
	fi
	if [[ -s $DEB_W/mkosi-cold.t ]]; then
		echo "- mkosi does less than the others in its cold build: mkosi 14 runs apt with \`INITRD=No\` (Debian's kernel hooks then make no initramfs), leaves out documentation (WithDocs=no, its default: a dpkg \`path-exclude\`), and adds the suite's -updates archive from the mirror and its -security archive from security.debian.org (mkosi 14 never takes that one from the mirror), so its kernel can be a newer one than the others'$(deb_kernels)."
	fi
	if awk '$1 == "mkosi" && $2 ~ /^host-/ && $3 != $4 { bad = 1 } END { exit !bad }' "$DEB_W/checks" 2>/dev/null; then
		echo "- mkosi's hostname-changed builds are fast but wrong: with \`--incremental\`, its image kept the hostname of the build that made its cache ($DEB_HOSTNAME), as issue 17 saw too."
	fi
	echo "- Neither the floor's, mkosi's nor debos's image has a boot loader (GRUB would be a finalize or postprocess step of their own; see the method above); forge's has a partition table and BIOS GRUB (\`org.osbuild.grub2.inst\`), and its rerun rows include writing the 3 GiB image's qcow2 (about 750 MB) into \`OUT\`, as the peers' reruns write theirs."
	echo "- debos with \`--disable-fakemachine\` on a host without udevd: image-partition runs \`udevadm trigger --settle\`, which never returns when udevadm is installed and no udevd runs (the area then leaves debos out, saying so), and fails at once (debos goes on) when udevadm is not installed, as here; debos also left its loop devices attached after a failed step, which the area detaches."
}

# deb_kernels prints ", here: TOOL VERSION, ..." of the kernel package each
# peer's log shows it installed, or nothing.
deb_kernels() {
	local k out=""
	k=$(grep -o -m1 'linux-image-[0-9][^ ]*-amd64' "$DEB_W/mkosi-cold.log" 2>/dev/null) && out+="mkosi $k"
	k=$(grep -o -m1 'linux-image-[0-9][^ ]*-amd64' "$DEB_W/debos-cold.log" 2>/dev/null) && out+="${out:+, }debos $k"
	k=$(grep -o -m1 'linux-image-[0-9][^ ]*-amd64' "$DEB_W/cold.err" 2>/dev/null) && out+="${out:+, }forge $k"
	[[ -z $out ]] || echo " (here: $out)"
}

# --- forge ---

# deb_forge runs one timed forge build NAME of MANIFEST on STORE into
# DEB_SCRATCH/out-NAME, its events and stderr in DEB_W/NAME.{events,err},
# its line in DEB_W/TIMES. KIND is cold or warm (deb_settle). The daemon is
# stopped first unless KEEP is set.
# Usage: deb_forge NAME KIND STORE MANIFEST TIMES [KEEP]
deb_forge() {
	local name=$1 kind=$2 store=$3 manifest=$4 times=$DEB_W/$5 keep=${6:-}
	[[ -n $keep ]] || stop_forge_daemons "$(dirname "$store")"
	mkdir -p "$DEB_SCRATCH/out-$name"
	deb_settle "$kind" "forge $name"
	if ! timeit_store "$times" /dev/null "$DEB_W/$name.err" "$store" \
		"${DEB_MONITOR[@]}" "$DEB_W/$name.events" \
		"$FORGE" build --store "$store" --libdir "$BENCH_LIBDIR" \
		--output-directory "$DEB_SCRATCH/out-$name" --monitor-fd 3 "$manifest"; then
		deb_fail "\`forge build\` ($name) failed" "$DEB_W/$name.err"
		return 1
	fi
	local started
	started=$(tr -d '\036' <"$DEB_W/$name.events" | jq -s '[.[] | select(.type == "stage.started")] | length' 2>/dev/null) || started="?"
	echo "$name $started" >>"$DEB_W/forge-started"
}

# deb_events prints a jq query's answer over the events of build NAME.
deb_events() { tr -d '\036' <"$DEB_W/$1.events" | jq -s -r "$2"; }

# deb_image_seconds prints the summed durations of the stages of pipelines
# "image" and "qcow2" (indices 1 and 2 of the sample) in build NAME.
deb_image_seconds() {
	deb_events "$1" '[.[] | select(.type == "stage.finished" and (.path | test("^pipelines\\[[12]\\]"))) | .duration_seconds] | add // empty'
}

# deb_sources prints "WANTED STORED" summed over the "sources: N wanted, M
# stored already" lines of build NAME's stderr.
deb_sources() {
	awk '/^sources: [0-9]+ wanted, [0-9]+ stored already/ { w += $2; s += $4 } END { print w + 0, s + 0 }' "$DEB_W/$1.err"
}

# deb_du writes `forge store du --json` of STORE, with the store
# directory's size added, to DEB_W/du-NAME.json.
deb_du() {
	local store=$1 name=$2
	if ! "$FORGE" store du --store "$store" --json >"$DEB_W/du.tmp" 2>"$DEB_W/du.err"; then
		deb_fail "\`forge store du\` failed" "$DEB_W/du.err"
		return 1
	fi
	jq --argjson dir "$(du -sb "$store" | cut -f1)" '. + {dir_bytes: $dir}' "$DEB_W/du.tmp" >"$DEB_W/du-$name.json"
}

deb_forge_rows() {
	if [[ -z $FORGE ]]; then
		deb_note forge "not run: $FORGE_MISSING"
		return 1
	elif [[ -z $BENCH_LIBDIR ]]; then
		deb_note forge "not run: $BENCH_LIBDIR_MISSING"
		return 1
	fi
	local m=$DEB_SCRATCH/manifests s=$DEB_SCRATCH/forge/store i
	mkdir -p "$m" "$DEB_SCRATCH/forge"
	local mirror=()
	[[ -z ${BENCH_MIRROR:-} ]] || mirror=(--mirror "$BENCH_MIRROR")
	if ! "$BENCH_TOOLS/gen-manifest" "${mirror[@]}" "$BENCH_REPO/samples/debian-bookworm.json" >"$m/sample.json" 2>"$DEB_W/gen.err"; then
		deb_fail "\`gen-manifest\` of the sample failed" "$DEB_W/gen.err"
		deb_note forge "failed: see the notes below"
		return 1
	fi
	for ((i = 1; i <= BENCH_RUNS; i++)); do
		"$BENCH_TOOLS/gen-manifest" "${mirror[@]}" --hostname "bench-host-$i" \
			"$BENCH_REPO/samples/debian-bookworm.json" >"$m/host-$i.json" 2>"$DEB_W/gen.err" ||
			deb_fail "\`gen-manifest --hostname\` failed" "$DEB_W/gen.err"
	done
	# The variant: 5 more packages in the apt stage, pinned, made ready.
	jq --args '(.pipelines[] | select(.name == "os") | .stages[] | select(.type == "org.osbuild.apt") | .options.packages) += $ARGS.positional' \
		"${DEB_EXTRA[@]}" <"$BENCH_REPO/samples/debian-bookworm.in.json" >"$DEB_W/variant.in.json"
	if ! "$BENCH_TOOLS/gen-manifest" --resolve "${mirror[@]}" "$DEB_W/variant.in.json" >"$m/variant-pinned.json" 2>"$DEB_W/gen-variant.err" ||
		! "$BENCH_TOOLS/gen-manifest" "${mirror[@]}" "$m/variant-pinned.json" >"$m/variant.json" 2>>"$DEB_W/gen-variant.err"; then
		deb_fail "\`gen-manifest --resolve\` of the variant failed" "$DEB_W/gen-variant.err"
		rm -f "$m/variant.json"
	fi

	log "debian: forge, cold on an empty store (downloads the packages)"
	if ! deb_forge cold cold "$s" "$m/sample.json" forge-cold.t; then
		deb_note forge "failed: see the notes below"
		return 1
	fi
	deb_check forge cold "$DEB_SCRATCH/out-cold/qcow2/debian-bookworm.qcow2" "$DEB_HOSTNAME"
	deb_sources cold >"$DEB_W/sources-cold"
	deb_du "$s" sample || true

	for ((i = 1; i <= BENCH_RUNS; i++)); do
		log "debian: forge, fully cached, run $i/$BENCH_RUNS"
		deb_forge "cached-$i" warm "$s" "$m/sample.json" forge-cached.t &&
			deb_check forge "cached-$i" "$DEB_SCRATCH/out-cached-$i/qcow2/debian-bookworm.qcow2" "$DEB_HOSTNAME"
		deb_forge "running-$i" warm "$s" "$m/sample.json" forge-running.t keep || true
	done
	for ((i = 1; i <= BENCH_RUNS; i++)); do
		[[ -s $m/host-$i.json ]] || continue
		log "debian: forge, hostname changed, run $i/$BENCH_RUNS"
		if deb_forge "host-$i" warm "$s" "$m/host-$i.json" forge-host.t; then
			deb_check forge "host-$i" "$DEB_SCRATCH/out-host-$i/qcow2/debian-bookworm.qcow2" "bench-host-$i"
			deb_image_seconds "host-$i" >>"$DEB_W/forge-image.s"
		fi
	done
	deb_image_seconds cold >"$DEB_W/forge-image-cold.s" || true

	# The floor on forge's own tree: the os pipeline of the cold build.
	local os tree=$DEB_SCRATCH/forge-tree
	os=$(deb_events cold '[.[] | select(.type == "result")][-1].result.pipelines.os // empty')
	if [[ -z $os ]] || ! "$FORGE" store export --store "$s" "$os" "$tree" >"$DEB_W/export.out" 2>"$DEB_W/export.err"; then
		deb_fail "\`forge store export\` of the os pipeline (${os:-no ID in the result event}) failed" "$DEB_W/export.err"
	else
		for ((i = 1; i <= BENCH_RUNS; i++)); do
			log "debian: the floor's reassembly on forge's tree, run $i/$BENCH_RUNS"
			deb_reassemble "$tree" "$DEB_SCRATCH/forge-floor-$i" floor-forge-tree.t "" ||
				continue
			deb_check floor-on-forge-tree "$i" "$DEB_SCRATCH/forge-floor-$i.qcow2" "$DEB_HOSTNAME"
		done
	fi

	if [[ -s $m/variant.json ]]; then
		log "debian: forge, the variant with ${#DEB_EXTRA[@]} more packages"
		jq '[.pipelines[] | select(.name == "os") | .stages[] | select(.type == "org.osbuild.apt") | .inputs.packages.references | length][0]' \
			"$m/variant.json" >"$DEB_W/variant-apt-debs"
		jq '[.pipelines[] | select(.name == "os") | .stages[] | select(.type == "org.osbuild.apt") | .inputs.packages.references | length][0]' \
			"$m/sample.json" >"$DEB_W/sample-apt-debs"
		jq '[.pipelines[] | select(.name == "os") | .stages[] | select(.type == "org.osbuild.mmdebstrap") | .inputs.packages.references | length][0]' \
			"$m/sample.json" >"$DEB_W/sample-mmdebstrap-debs"
		if deb_forge variant cold "$s" "$m/variant.json" forge-variant.t; then
			deb_sources variant >"$DEB_W/sources-variant"
			deb_du "$s" variant || true
		fi
	fi

	log "debian: forge, every ref but the sources dropped, then cold again"
	stop_forge_daemons "$DEB_SCRATCH/forge"
	local refs=()
	mapfile -t refs < <("$FORGE" store ls --store "$s" --json 2>"$DEB_W/ls.err" | jq -r '.[].name | select(startswith("source/") | not)')
	if ((${#refs[@]} == 0)) ||
		! "$FORGE" store rm --store "$s" "${refs[@]}" >"$DEB_W/rm.out" 2>"$DEB_W/rm.err" ||
		! "$FORGE" store gc --store "$s" >"$DEB_W/gc.out" 2>"$DEB_W/gc.err"; then
		deb_fail "dropping the stage refs (\`forge store ls\`, \`rm\`, \`gc\`) failed" "$DEB_W/rm.err"
	else
		deb_du "$s" sources || true
		if deb_forge srccold cold "$s" "$m/sample.json" forge-srccold.t; then
			deb_check forge srccold "$DEB_SCRATCH/out-srccold/qcow2/debian-bookworm.qcow2" "$DEB_HOSTNAME"
			deb_sources srccold >"$DEB_W/sources-srccold"
		fi
	fi
	stop_forge_daemons "$DEB_SCRATCH/forge"
	# What the next tools need is disk space, not these images and trees.
	shrink "$DEB_SCRATCH"
}

# deb_reassemble times the floor's image step on TREE into PREFIX.raw and
# PREFIX.qcow2 (new files), first writing HOSTNAME into the tree when given.
# Usage: deb_reassemble TREE PREFIX TIMES HOSTNAME
deb_reassemble() {
	local tree=$1 out=$2 times=$DEB_W/$3 host=$4
	deb_settle warm
	# shellcheck disable=SC2016
	if ! timeit "$times" bash -c '
		set -e
		[[ -z $4 ]] || echo "$4" >"$1/etc/hostname"
		truncate -s 3G "$2.raw"
		mkfs.ext4 -q -d "$1" "$2.raw"
		qemu-img convert -O qcow2 "$2.raw" "$2.qcow2"' deb_reassemble "$tree" "$out" "$times" "$host" \
		>"$out.log" 2>&1; then
		deb_fail "the floor's reassembly (truncate, mkfs.ext4 -d, qemu-img convert) into $(basename "$out") failed" "$out.log"
		return 1
	fi
}

# --- the floor: mmdebstrap + mkfs.ext4 -d + qemu-img convert ---

deb_floor_rows() {
	local d=$DEB_SCRATCH/floor tree i
	tree=$d/tree
	mkdir -p "$d"
	log "debian: the floor, cold (mmdebstrap, mkfs.ext4 -d, qemu-img convert)"
	deb_settle cold "floor cold"
	# shellcheck disable=SC2016
	if ! timeit "$DEB_W/floor-cold.t" bash -c '
		set -e
		mmdebstrap --variant=minbase --include="$3" bookworm "$1" "$4"
		truncate -s 3G "$2.raw"
		mkfs.ext4 -q -d "$1" "$2.raw"
		qemu-img convert -O qcow2 "$2.raw" "$2.qcow2"' deb_floor "$tree" "$d/cold" \
		"$(IFS=,; echo "${DEB_PACKAGES[*]}")" "$DEB_MIRROR" >"$DEB_W/floor-cold.log" 2>&1; then
		deb_fail "the floor's cold build (mmdebstrap, mkfs.ext4 -d, qemu-img convert) failed" "$DEB_W/floor-cold.log"
		deb_note floor "failed: see the notes below"
		umount_below "$d"
		return 1
	fi
	# mmdebstrap writes no /etc/hostname of ours: the host's name is in it.
	deb_check floor cold "$d/cold.qcow2" "$(cat "$tree/etc/hostname" 2>/dev/null)"
	for ((i = 1; i <= BENCH_RUNS; i++)); do
		log "debian: the floor, rerun (reassembly), run $i/$BENCH_RUNS"
		deb_reassemble "$tree" "$d/rerun-$i" floor-rerun.t "" || continue
	done
	for ((i = 1; i <= BENCH_RUNS; i++)); do
		log "debian: the floor, hostname changed, run $i/$BENCH_RUNS"
		deb_reassemble "$tree" "$d/host-$i" floor-host.t "bench-host-$i" &&
			deb_check floor "host-$i" "$d/host-$i.qcow2" "bench-host-$i"
	done
	shrink "$d"
}

# --- mkosi ---

deb_mkosi_rows() {
	local d=$DEB_SCRATCH/mkosi i img
	if ! command -v mkosi >/dev/null || ! command -v systemd-nspawn >/dev/null; then
		deb_note mkosi "not run: mkosi or systemd-nspawn is missing (\`scripts/install-deps bench\` installs them)"
		return 1
	fi
	mkdir -p "$d/conf" "$d/out" "$d/ws" "$d/cache"
	cat >"$d/conf/mkosi.default" <<-EOF
		[Distribution]
		Distribution=debian
		Release=bookworm
		Mirror=$DEB_MIRROR

		[Output]
		Format=gpt_ext4
		QCow2=yes
		Bootable=no
		Hostname=$DEB_HOSTNAME
		RootSize=3G
		OutputDirectory=$d/out
		WorkspaceDirectory=$d/ws

		[Content]
		Packages=$(IFS=,; echo "${DEB_PACKAGES[*]}")
		Cache=$d/cache

		[Host]
		NspawnKeepUnit=yes
	EOF
	cp "$d/conf/mkosi.default" "$DEB_W/mkosi.default"
	log "debian: mkosi, cold"
	deb_settle cold "mkosi cold"
	if ! timeit "$DEB_W/mkosi-cold.t" "${DEB_IN[@]}" "$d/conf" mkosi --incremental build >"$DEB_W/mkosi-cold.log" 2>&1; then
		deb_fail "mkosi's cold build failed" "$DEB_W/mkosi-cold.log"
		deb_note mkosi "failed: see the notes below"
		deb_cleanup_below "$d"
		return 1
	fi
	deb_mkosi_check cold "$d" "$DEB_HOSTNAME"
	for ((i = 1; i <= BENCH_RUNS; i++)); do
		log "debian: mkosi, unchanged rerun (--incremental), run $i/$BENCH_RUNS"
		deb_settle warm
		if timeit "$DEB_W/mkosi-rerun.t" "${DEB_IN[@]}" "$d/conf" mkosi --incremental -f build >"$DEB_W/mkosi-rerun-$i.log" 2>&1; then
			deb_mkosi_check "rerun-$i" "$d" "$DEB_HOSTNAME"
		else
			deb_fail "mkosi's rerun $i failed" "$DEB_W/mkosi-rerun-$i.log"
			deb_cleanup_below "$d"
		fi
	done
	for ((i = 1; i <= BENCH_RUNS; i++)); do
		log "debian: mkosi, hostname changed, run $i/$BENCH_RUNS"
		deb_settle warm
		if timeit "$DEB_W/mkosi-host.t" "${DEB_IN[@]}" "$d/conf" mkosi --incremental -f --hostname "bench-host-$i" build >"$DEB_W/mkosi-host-$i.log" 2>&1; then
			deb_mkosi_check "host-$i" "$d" "bench-host-$i"
		else
			deb_fail "mkosi's hostname-changed build $i failed" "$DEB_W/mkosi-host-$i.log"
			deb_cleanup_below "$d"
		fi
	done
	deb_cleanup_below "$d"
	shrink "$d"
}

# deb_mkosi_check checks the hostname of mkosi's image after build NAME.
deb_mkosi_check() {
	local img
	img=$(find "$2/out" -name image.qcow2 -type f 2>/dev/null | head -n 1)
	[[ -n $img ]] || img=$(find "$2/out" -name 'image*.qcow2' ! -name '*.cache-*' 2>/dev/null | head -n 1)
	deb_check mkosi "$1" "${img:-$2/out/none}" "$3"
}

# deb_cleanup_below unmounts and detaches what a failed peer left below DIR.
deb_cleanup_below() {
	umount_below "$1"
	local dev file
	while read -r dev file; do
		[[ $file == "$1/"* ]] || continue
		log "debian: detaching $dev, left over $file"
		losetup -d "$dev" 2>/dev/null || true
	done < <(losetup -ln -O NAME,BACK-FILE 2>/dev/null)
}

# --- debos ---

deb_debos_rows() {
	local d=$DEB_SCRATCH/debos i
	local run=(debos --disable-fakemachine --artifactdir "$d/art")
	if ! command -v debos >/dev/null || ! command -v parted >/dev/null; then
		deb_note debos "not run: debos or parted is missing (\`scripts/install-deps bench\` installs them)"
		return 1
	fi
	# Without udevd, `udevadm trigger --settle` (image-partition) never
	# returns; without udevadm, debos notes the failure and goes on.
	if command -v udevadm >/dev/null && ! pgrep -x systemd-udevd >/dev/null; then
		deb_note debos "not run: udevadm is installed but no udevd runs, and debos's image-partition then waits in \`udevadm trigger --settle\` for ever"
		return 1
	fi
	mkdir -p "$d/art"
	local pkgs
	pkgs=$(IFS=,; echo "${DEB_PACKAGES[*]}")
	cat >"$d/base.yaml" <<-EOF
		{{- \$mirror := or .mirror "$DEB_MIRROR" -}}
		architecture: amd64
		actions:
		  - action: debootstrap
		    suite: bookworm
		    components: [main]
		    mirror: {{ \$mirror }}
		    variant: minbase
		  - action: apt
		    recommends: false
		    packages: [${pkgs//,/, }]
		  - action: pack
		    file: base.tar.gz
	EOF
	cat >"$d/image.yaml" <<-EOF
		{{- \$hostname := or .hostname "$DEB_HOSTNAME" -}}
		architecture: amd64
		actions:
		  - action: unpack
		    file: base.tar.gz
		  - action: run
		    command: echo {{ \$hostname }} > "\$ROOTDIR/etc/hostname"
		  - action: image-partition
		    imagename: disk.img
		    imagesize: 3GiB
		    partitiontype: msdos
		    mountpoints:
		      - mountpoint: /
		        partition: root
		    partitions:
		      - name: root
		        fs: ext4
		        start: 1MiB
		        end: 100%
		  - action: filesystem-deploy
		  - action: run
		    postprocess: true
		    command: qemu-img convert -O qcow2 "\$ARTIFACTDIR/disk.img" "\$ARTIFACTDIR/disk.qcow2"
	EOF
	cp "$d/base.yaml" "$DEB_W/debos-base.yaml"
	cp "$d/image.yaml" "$DEB_W/debos-image.yaml"
	log "debian: debos, cold (both recipes)"
	deb_settle cold "debos cold"
	# shellcheck disable=SC2016
	if ! timeit "$DEB_W/debos-cold.t" "${DEB_IN[@]}" "$d" bash -c '"${@:2}" -t "mirror:$1" base.yaml && "${@:2}" -t hostname:'"$DEB_HOSTNAME"' image.yaml' \
		deb_debos "$DEB_MIRROR" "${run[@]}" >"$DEB_W/debos-cold.log" 2>&1; then
		deb_fail "debos's cold build failed" "$DEB_W/debos-cold.log"
		deb_note debos "failed: see the notes below"
		deb_cleanup_below "$d"
		return 1
	fi
	deb_check debos cold "$d/art/disk.qcow2" "$DEB_HOSTNAME"
	for ((i = 1; i <= BENCH_RUNS; i++)); do
		log "debian: debos, unchanged rerun (image.yaml on the packed base), run $i/$BENCH_RUNS"
		deb_settle warm
		if timeit "$DEB_W/debos-rerun.t" "${DEB_IN[@]}" "$d" "${run[@]}" -t "hostname:$DEB_HOSTNAME" image.yaml >"$DEB_W/debos-rerun-$i.log" 2>&1; then
			deb_check debos "rerun-$i" "$d/art/disk.qcow2" "$DEB_HOSTNAME"
		else
			deb_fail "debos's rerun $i failed" "$DEB_W/debos-rerun-$i.log"
			deb_cleanup_below "$d"
		fi
	done
	for ((i = 1; i <= BENCH_RUNS; i++)); do
		log "debian: debos, hostname changed, run $i/$BENCH_RUNS"
		deb_settle warm
		if timeit "$DEB_W/debos-host.t" "${DEB_IN[@]}" "$d" "${run[@]}" -t "hostname:bench-host-$i" image.yaml >"$DEB_W/debos-host-$i.log" 2>&1; then
			deb_check debos "host-$i" "$d/art/disk.qcow2" "bench-host-$i"
		else
			deb_fail "debos's hostname-changed build $i failed" "$DEB_W/debos-host-$i.log"
			deb_cleanup_below "$d"
		fi
	done
	# debos leaves its loop devices attached when a step fails.
	deb_cleanup_below "$d"
	shrink "$d"
}

# --- tables ---

# deb_row prints one row of the builds' table.
# Usage: deb_row LABEL COMMAND TIMES BASE TOOL PREFIX
deb_row() {
	local label=$1 cmd=$2 times=$DEB_W/$3 base=$4 tool=$5 prefix=$6 why
	why=$(cat "$DEB_W/why-$tool" 2>/dev/null) || why="failed: see the notes below"
	if [[ ! -s $times ]]; then
		echo "| $label | $cmd | 0 | $why | | | | |"
		return
	fi
	local hosts
	hosts=$(awk -v t="$tool" -v p="$prefix" '$1 == t && index($2, p) == 1 { print ($3 == $4 ? "ok" : "**" $4 "**") }' "$DEB_W/checks" 2>/dev/null | sort | uniq -c | awk '{ printf "%s%s×%s", (NR > 1 ? ", " : ""), $1, $2 }') || true
	echo "| $label | $cmd | $(count_lines "$times") | $(time_cells "$times") | $(deb_x "$(ratio_fine "$(field "$times" 1 | median)" "$base")") | ${hosts:-—} |"
}

deb_tables() {
	local fl_cold fl_rerun fl_host
	fl_cold=$(deb_median floor-cold.t)
	fl_rerun=$(deb_median floor-rerun.t)
	fl_host=$(deb_median floor-host.t)
	echo
	echo "### Builds"
	echo
	echo "\"× floor\" divides by the floor's row of the same kind (cold, rerun, hostname changed). \"Hostname\" is what \`debugfs -R 'cat /etc/hostname'\` read from each build's image (ok: the one asked for)."
	echo
	echo "| row | command | runs | median | spread (min–max) | CPU | × floor | hostname |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
	deb_row "forge, cold: an empty store (downloads the .debs)" "\`$DEB_FORGE_CMD\`" forge-cold.t "$fl_cold" forge cold
	deb_row "forge, cold with the sources in the store (every other ref dropped, gc)" "the same" forge-srccold.t "$fl_cold" forge srccold
	deb_row "forge, fully cached rerun" "the same" forge-cached.t "$fl_rerun" forge cached
	deb_row "forge, fully cached rerun, the daemon left running" "the same, without \`forge daemon stop\` before" forge-running.t "$fl_rerun" forge running
	deb_row "forge, hostname changed" "the same, MANIFEST from \`gen-manifest --hostname bench-host-I\`" forge-host.t "$fl_host" forge host
	deb_row "forge, the variant with ${#DEB_EXTRA[@]} more packages, after the rows above" "the same, MANIFEST the variant" forge-variant.t "$fl_cold" forge variant
	deb_row "floor, cold (baseline)" "\`mmdebstrap --variant=minbase --include=… bookworm TREE MIRROR\`, \`truncate -s 3G\`, \`mkfs.ext4 -q -d TREE\`, \`qemu-img convert -O qcow2\`" floor-cold.t "$fl_cold" floor cold
	deb_row "floor, rerun: the reassembly alone (baseline)" "\`truncate\`, \`mkfs.ext4 -d\`, \`qemu-img convert\` into new files" floor-rerun.t "$fl_rerun" floor rerun
	deb_row "floor, hostname changed (baseline)" "\`echo NAME > TREE/etc/hostname\` and the reassembly" floor-host.t "$fl_host" floor host
	deb_row "mkosi, cold" "\`mkosi --incremental build\` (empty cache and output)" mkosi-cold.t "$fl_cold" mkosi cold
	deb_row "mkosi, unchanged rerun" "\`mkosi --incremental -f build\`" mkosi-rerun.t "$fl_rerun" mkosi rerun
	deb_row "mkosi, hostname changed" "\`mkosi --incremental -f --hostname bench-host-I build\`" mkosi-host.t "$fl_host" mkosi host
	deb_row "debos, cold: both recipes" "\`debos --disable-fakemachine --artifactdir A base.yaml\`, then \`… image.yaml\`" debos-cold.t "$fl_cold" debos cold
	deb_row "debos, unchanged rerun: image.yaml on the packed base" "\`debos --disable-fakemachine --artifactdir A -t hostname:$DEB_HOSTNAME image.yaml\`" debos-rerun.t "$fl_rerun" debos rerun
	deb_row "debos, hostname changed" "the same with \`-t hostname:bench-host-I\`" debos-host.t "$fl_host" debos host

	local f_cold f_rerun f_host m_cold m_rerun m_host d_cold d_rerun d_host
	f_cold=$(deb_median forge-cold.t)
	f_rerun=$(deb_median forge-cached.t)
	f_host=$(deb_median forge-host.t)
	m_cold=$(deb_median mkosi-cold.t)
	m_rerun=$(deb_median mkosi-rerun.t)
	m_host=$(deb_median mkosi-host.t)
	d_cold=$(deb_median debos-cold.t)
	d_rerun=$(deb_median debos-rerun.t)
	d_host=$(deb_median debos-host.t)
	echo
	echo "### Side by side, against issue 17's goals"
	echo
	echo "Medians from the table above; forge's unchanged rerun is the one that starts the store's daemon."
	echo
	echo "| | mkosi | debos | floor | forge | forge ÷ fastest peer | goal | result |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
	local best r
	best=$(printf '%s\n' "$m_cold" "$d_cold" "$fl_cold" | grep -v '^$' | sort -g | head -n 1) || true
	r=$(ratio "$f_cold" "$best")
	echo "| cold | $(fmt_secs "$m_cold") | $(fmt_secs "$d_cold") | $(fmt_secs "$fl_cold") | $(fmt_secs "$f_cold") | $(deb_x "$r") | ≤ ${DEB_GOAL_COLD} s, ahead of all three | $(deb_verdict_cold "$f_cold" "$r") |"
	best=$(printf '%s\n' "$m_rerun" "$d_rerun" "$fl_rerun" | grep -v '^$' | sort -g | head -n 1) || true
	echo "| unchanged rerun | $(fmt_secs "$m_rerun") | $(fmt_secs "$d_rerun") | $(fmt_secs "$fl_rerun") | $(fmt_secs "$f_rerun") | $(deb_x "$(ratio_fine "$f_rerun" "$best")") | ≤ ${DEB_GOAL_RERUN} s | $(verdict "$f_rerun" le "$DEB_GOAL_RERUN") |"
	best=$(printf '%s\n' "$m_host" "$d_host" "$fl_host" | grep -v '^$' | sort -g | head -n 1) || true
	local m_wrong=""
	! awk '$1 == "mkosi" && $2 ~ /^host-/ && $3 != $4 { bad = 1 } END { exit !bad }' "$DEB_W/checks" 2>/dev/null || m_wrong=", **wrong hostname**"
	echo "| hostname changed | $(fmt_secs "$m_host")$m_wrong | $(fmt_secs "$d_host") | $(fmt_secs "$fl_host") | $(fmt_secs "$f_host") | $(deb_x "$(ratio_fine "$f_host" "$best")") | ≤ ${DEB_GOAL_HOSTNAME} s | $(verdict "$f_host" le "$DEB_GOAL_HOSTNAME") |"

	echo
	echo "### The image pipelines against the floor on the same tree"
	echo
	local fimg="" fic="" ff mn mx
	[[ ! -s $DEB_W/forge-image.s ]] || fimg=$(median <"$DEB_W/forge-image.s")
	[[ ! -s $DEB_W/forge-image-cold.s ]] || fic=$(<"$DEB_W/forge-image-cold.s")
	ff=$(deb_median floor-forge-tree.t)
	echo "| figure | from | runs | median | spread (min–max) | × floor on the same tree | goal | result |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
	local n spread
	n=$(count_lines "$DEB_W/forge-image.s")
	spread=""
	if ((n > 0)); then
		read -r _ mn mx _ < <(stats <"$DEB_W/forge-image.s")
		spread="$(fmt_secs "$mn") – $(fmt_secs "$mx")"
	fi
	r=$(ratio "$fimg" "$ff")
	echo "| forge, hostname changed: pipelines \`image\` + \`qcow2\` as they rerun (copy, grub2.inst, qemu: the stages that take the os tree; truncate, sfdisk, mkfs.ext4 stay cached) | sum of their \`stage.finished\` \`duration_seconds\` in the hostname-changed builds | $n | $(fmt_secs "$fimg") | $spread | $(deb_x "$r") | ≤ ${DEB_GOAL_IMAGE}× | $(verdict "$r" le "$DEB_GOAL_IMAGE") |"
	echo "| forge, cold: pipelines \`image\` + \`qcow2\`, all 6 stages (truncate, sfdisk, mkfs.ext4, copy, grub2.inst, qemu) | the cold build's events | 1 | $(fmt_secs "$fic") | | $(deb_x "$(ratio "$fic" "$ff")") | | |"
	if [[ -s $DEB_W/floor-forge-tree.t ]]; then
		echo "| floor on forge's \`os\` tree (baseline) | \`forge store export\`, then \`truncate -s 3G\`, \`mkfs.ext4 -q -d TREE\`, \`qemu-img convert -O qcow2\` | $(count_lines "$DEB_W/floor-forge-tree.t") | $(time_cells "$DEB_W/floor-forge-tree.t" | cut -d'|' -f1-2 | sed 's/ *$//') | 1.00× | | |"
	else
		echo "| floor on forge's \`os\` tree (baseline) | | 0 | $(cat "$DEB_W/why-forge" 2>/dev/null || echo "failed: see the notes below") | | | | |"
	fi
	deb_stage_table

	echo
	echo "### The store after the sample, and after the variant"
	echo
	echo "| store | logical | pack_bytes (chunks) | directory (\`du -sb S\`) | refs | sources of the build: wanted, stored already |"
	echo "| --- | --- | --- | --- | --- | --- |"
	deb_du_row "after the sample's cold build" sample sources-cold
	deb_du_row "after the rows above and the variant's build (${#DEB_EXTRA[@]} more packages)" variant sources-variant
	deb_du_row "after \`forge store rm\` of every ref not starting with \`source/\`, and \`gc\`: the sources alone" sources ""
	if [[ -s $DEB_W/sources-variant ]]; then
		local w s
		read -r w s <"$DEB_W/sources-variant"
		echo
		echo "The variant reran its \`os\` pipeline from the apt stage on (mmdebstrap's tree, whose $(cat "$DEB_W/sample-mmdebstrap-debs" 2>/dev/null || echo "?") \`.deb\`s it takes, was in the store already). Its apt stage takes $(cat "$DEB_W/variant-apt-debs" 2>/dev/null) \`.deb\`s against the sample's $(cat "$DEB_W/sample-apt-debs" 2>/dev/null); of the $w sources its build wanted (those \`.deb\`s and the stage's \`Packages\` index, which differs from the sample's: forge's \"sources: N wanted, M stored already\" lines), $s were in the store already and $((w - s)) were downloaded. Between the two rows, the store's packs grew by $(fmt_bytes "$(deb_du_delta variant sample pack_bytes)"): the hostname-changed builds' trees and images, and the variant's new packages, stage trees and image, whose chunks the store mostly held already."
	fi
	echo
	deb_checks
}

# deb_x prints a ratio with its sign, or n/a.
deb_x() { if [[ $1 == n/a ]]; then echo n/a; else echo "$1×"; fi; }

# deb_verdict_cold: PASS when forge's cold build is within the goal and
# faster than every peer (ratio to the fastest < 1).
deb_verdict_cold() {
	local a b
	a=$(verdict "$1" le "$DEB_GOAL_COLD")
	b=$(verdict "$2" le 0.999)
	if [[ $a == n/a || $b == n/a ]]; then echo n/a; elif [[ $a == PASS && $b == PASS ]]; then echo PASS; else echo FAIL; fi
}

# deb_du_row prints one row of the store table from DEB_W/du-NAME.json.
deb_du_row() {
	local label=$1 name=$2 src=$3 f=$DEB_W/du-$2.json s=""
	if [[ ! -s $f ]]; then
		echo "| $label | not measured: $(cat "$DEB_W/why-forge" 2>/dev/null || echo "see the notes below") | | | | |"
		return
	fi
	[[ -z $src || ! -s $DEB_W/$src ]] || s=$(awk '{ print $1 ", " $2 }' "$DEB_W/$src")
	echo "| $label | $(fmt_bytes "$(jq .logical_bytes "$f")") | $(fmt_bytes "$(jq .pack_bytes "$f")") | $(fmt_bytes "$(jq .dir_bytes "$f")") | $(jq .refs "$f") | ${s:-—} |"
}

# deb_du_delta prints field F of du-A.json minus that of du-B.json.
deb_du_delta() {
	[[ -s $DEB_W/du-$1.json && -s $DEB_W/du-$2.json ]] || return 0
	echo $(($(jq ".$3" "$DEB_W/du-$1.json") - $(jq ".$3" "$DEB_W/du-$2.json")))
}

# deb_stage_table prints where forge's cold build spends its time: each
# stage's duration_seconds, next to the same stage in the build with its
# sources in the store.
deb_stage_table() {
	[[ -s $DEB_W/cold.events ]] || return 0
	echo
	echo "Where forge's cold builds spend their time (\`stage.finished\` \`duration_seconds\`: the stage's buildroot, its run and the commit of its tree; the sources are fetched inside the stage that first takes them):"
	echo
	echo "| stage | cold, empty store | cold, sources in the store |"
	echo "| --- | --- | --- |"
	local q='.[] | select(.type == "stage.finished") | "\(.path) \(.name) \(.duration_seconds)"'
	deb_events cold "$q" >"$DEB_W/stages-cold"
	[[ ! -s $DEB_W/srccold.events ]] || deb_events srccold "$q" >"$DEB_W/stages-srccold"
	local path name secs other
	while read -r path name secs; do
		other=$(awk -v p="$path" '$1 == p { print $3 }' "$DEB_W/stages-srccold" 2>/dev/null) || true
		echo "| \`$path\` $name | $(fmt_secs "$secs") | $(fmt_secs "$other") |"
	done <"$DEB_W/stages-cold"
	echo "| wall time of the build | $(fmt_secs "$(deb_median forge-cold.t)") | $(fmt_secs "$(deb_median forge-srccold.t)") |"
}

deb_checks() {
	echo "Checks:"
	echo
	echo "| check | expected | got | result |"
	echo "| --- | --- | --- | --- |"
	if [[ -s $DEB_W/forge-started ]]; then
		local want got n bad=0 name started
		n=$(count_lines "$DEB_W/forge-started")
		got=""
		while read -r name started; do
			case $name in
			cold | srccold) want=$DEB_STAGES ;;
			cached-* | running-*) want=0 ;;
			host-*) want=4 ;;
			*) want=$started ;;
			esac
			[[ $started == "$want" ]] || bad=$((bad + 1))
			got+="$name $started; "
		done <"$DEB_W/forge-started"
		echo "| forge's stages run (\`stage.started\`): all $DEB_STAGES cold, none cached, 4 with the hostname changed (hostname, then copy, grub2.inst and qemu, which take the os tree; truncate, sfdisk and mkfs.ext4 do not, and stay cached) | as its row says | ${got%; } | $( ((bad == 0)) && echo PASS || echo FAIL) |"
	fi
	if [[ -s $DEB_W/checks ]]; then
		local n good tool result
		for tool in forge floor-on-forge-tree floor mkosi debos; do
			n=$(awk -v t="$tool" '$1 == t' "$DEB_W/checks" | wc -l)
			((n > 0)) || continue
			good=$(awk -v t="$tool" '$1 == t && $3 == $4' "$DEB_W/checks" | wc -l)
			# A peer's wrong image is its result (see the notes), not the bench's.
			result=$( ((good == n)) && echo PASS || echo FAIL)
			[[ $tool == forge || $result == PASS ]] || result="FAIL: the peer's result, see the notes"
			echo "| $tool: every image holds the hostname asked for (\`debugfs -R 'cat /etc/hostname'\` on its largest partition) | $n images | $good images | $result |"
		done
	fi
	if [[ -s $DEB_W/srccold.err ]]; then
		local dl
		dl=$(grep -c '^downloaded ' "$DEB_W/srccold.err") || true
		echo "| the build with its sources in the store downloads nothing (\"downloaded URL\" lines on forge's stderr) | 0 | $dl | $( ((dl == 0)) && echo PASS || echo FAIL) |"
	fi
}
