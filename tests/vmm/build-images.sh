#!/bin/bash
# Builds the guest images of the `vdisk run` end-to-end test.
#
#   build-images.sh OUT_DIR
#
# Environment: VDISK (the vdisk binary; optional: without it the outer
# image only probes KVM), KVM_PROBE (the static kvm-probe binary),
# VDISK_TEST_CACHE (where the kernel package is kept between runs; default
# $XDG_CACHE_HOME/vdisk-test, else /var/tmp/vdisk-test-cache).
#
# Writes OUT_DIR/vmlinuz (the outer kernel), OUT_DIR/outer.cpio (busybox,
# the KVM modules, kvm-probe, vdisk with its shared libraries, the inner
# images, /init = outer-init.sh, /scenario.sh) and OUT_DIR/inner/ (vmlinuz,
# initrd with busybox, the virtio modules and /init = inner-init.sh, and
# the patterns pattern-a/b/c).  Both guests run Debian 12's stock
# linux-image-amd64, fetched with apt-get download.  The initramfs images
# are uncompressed cpio: decompression is the slowest part of an initramfs
# under emulation, and the files stay in page cache anyway.
#
# VMM_BENCH=1 adds bench/vmm's guest scripts and QEMU (with its firmware)
# to the outer image, for bench/vmm/run.sh.
#
# Exit status: 0 built, 77 (with the reason on stdout) when something it
# needs is missing or the kernel package cannot be fetched, 1 on error.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-images.sh OUT_DIR}
cache=${VDISK_TEST_CACHE:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/vdisk-test}}
cache=${cache:-/var/tmp/vdisk-test-cache}
skip() { echo "SKIP: $*"; exit 77; }

busybox=$(command -v busybox) || skip "busybox is not installed (busybox-static)"
case $(LC_ALL=C ldd "$busybox" 2>&1 || :) in
*"not a dynamic"*|*"statically linked"*) ;;
*) skip "$busybox is not static (install busybox-static)" ;;
esac
command -v cpio >/dev/null || skip "cpio is not installed"
[ -x "${KVM_PROBE:-}" ] || { echo "build-images: KVM_PROBE not built" >&2; exit 1; }

# ---- the kernel packages, cached --------------------------------------------
# fetch_kernel FLAVOUR: sets kdir to a cache directory holding vmlinuz and
# the modules below of linux-image-VERSION-FLAVOUR, the package the meta
# package linux-image-FLAVOUR depends on (fetched once).  Returns 1 with
# the reason in $why if it cannot.
fetch_kernel() {
	local flavour=$1 version dl
	version=$(apt-cache depends "linux-image-$flavour" 2>/dev/null |
		sed -n "s/^ *Depends: linux-image-\([0-9][^ ]*-$flavour\)\$/\1/p" | head -n 1) || :
	if [ -z "$version" ]; then
		# No package lists (offline?): the newest kernel already cached.
		version=$(ls "$cache" 2>/dev/null |
			sed -n "s/^kernel-\([0-9].*-$flavour\)\$/\1/p" | sort -V | tail -n 1)
		[ -n "$version" ] || { why="cannot resolve linux-image-$flavour (apt-cache depends) and nothing is cached in $cache"; return 1; }
	fi
	kdir=$cache/kernel-$version
	[ -f "$kdir/.complete" ] && return 0
	dl=$(mktemp -d "$cache/download.XXXXXX")
	if ! (cd "$dl" && timeout 300 apt-get download -q "linux-image-$version" \
		>download.log 2>&1); then
		tail -n 3 "$dl/download.log" >&2
		rm -rf "$dl"
		why="cannot fetch linux-image-$version (apt-get download failed)"
		return 1
	fi
	# Only the kernel and the modules the guests load; a flavour may lack
	# some of these folders (the cloud kernel has no ccp), hence no check
	# of tar's status but of what it gave.  (A function called in a
	# condition runs without set -e: every step is checked.)
	mkdir -p "$dl/x"
	dpkg-deb --fsys-tarfile "$dl"/linux-image-*.deb >"$dl/fs.tar" ||
		{ rm -rf "$dl"; why="cannot unpack linux-image-$version"; return 1; }
	tar -x -C "$dl/x" -f "$dl/fs.tar" --wildcards './boot/vmlinuz-*' \
		'./lib/modules/*/kernel/arch/x86/kvm/*' \
		'./lib/modules/*/kernel/virt/*' \
		'./lib/modules/*/kernel/drivers/crypto/ccp/*' \
		'./lib/modules/*/kernel/drivers/virtio/*' \
		'./lib/modules/*/kernel/drivers/block/virtio_blk.ko*' 2>/dev/null
	rm -rf "$kdir"
	mkdir -p "$kdir/modules" &&
	cp "$dl"/x/boot/vmlinuz-* "$kdir/vmlinuz" &&
	find "$dl/x/lib/modules" -name '*.ko*' -exec cp {} "$kdir/modules/" \; ||
		{ rm -rf "$dl" "$kdir"; why="no kernel in linux-image-$version"; return 1; }
	# Compressed modules (later Debian releases) are stored plain: busybox
	# insmod takes plain .ko files.
	for f in "$kdir"/modules/*.ko.xz; do
		[ -e "$f" ] && { xz -d "$f" || return 1; }
	done
	for f in "$kdir"/modules/*.ko.zst; do
		[ -e "$f" ] && { zstd -q -d --rm "$f" || return 1; }
	done
	touch "$kdir/.complete"
	rm -rf "$dl"
}
mkdir -p "$cache"
why=
fetch_kernel cloud-amd64 && cloud_kdir=$kdir || { cloud_kdir=; echo "build-images: no cloud kernel: $why"; }
fetch_kernel amd64 || skip "$why"
version=${kdir##*/kernel-}

# ---- helpers -----------------------------------------------------------------
# The module NAME and, first, the modules it depends on (modinfo's
# depends= field, read from the file: no depmod, no modules.dep).
modules_in_order() {
	local name f dep
	for name in "$@"; do
		f=$kdir/modules/$name.ko
		[ -f "$f" ] || f=$kdir/modules/${name//_/-}.ko
		[ -f "$f" ] || { echo "build-images: module $name is not in $kdir" >&2; return 1; }
		for dep in $(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | tr ',' ' '); do
			modules_in_order "$dep"
		done
		echo "$f"
	done
}

# Copies the modules and their dependencies into ROOT/lib/modules.
install_modules() {
	local root=$1 f
	shift
	mkdir -p "$root/lib/modules"
	for f in $(modules_in_order "$@" | awk '!seen[$0]++'); do
		cp "$f" "$root/lib/modules/"
	done
}

# A root with busybox and its applets in /bin.
new_root() {
	local root=$1 applet
	rm -rf "$root"
	mkdir -p "$root"/{bin,dev,proc,sys,tmp}
	cp "$busybox" "$root/bin/busybox"
	for applet in $("$busybox" --list); do
		[ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
	done
}

# Copies the dynamic executable EXE into ROOT/bin and its shared libraries
# and loader to the same paths under ROOT.
install_binary() {
	local root=$1 exe=$2 lib
	cp "$exe" "$root/bin/"
	for lib in $(ldd "$exe" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 }
				      $1 ~ /^\// { print $1 }'); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
}

pack() { (cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$2"; }

# ---- the inner guest ---------------------------------------------------------
mkdir -p "$out/inner"
inner=$out/inner
# 1 MiB each, every line different, so that a misplaced block shows.
pattern() { seq -f "$1%.0f" 1 200000 | head -c 1048576 || :; }
(set +o pipefail; pattern a >"$inner/pattern-a"; pattern b >"$inner/pattern-b"
 pattern c >"$inner/pattern-c")
cp "$kdir/vmlinuz" "$inner/vmlinuz"
cp "$kdir/vmlinuz" "$out/vmlinuz"

# inner_initrd KDIR FILE: busybox, KDIR's virtio modules, the patterns and
# /init.
inner_initrd() {
	local kdir=$1 root=$out/inner-root
	new_root "$root"
	install_modules "$root" virtio_ring virtio virtio_pci_legacy_dev \
		virtio_pci_modern_dev virtio_pci virtio_blk
	cp "$inner/pattern-a" "$inner/pattern-b" "$root/"
	[ -n "$bench" ] && install -m 755 "$here/../../bench/vmm/inner-bench.sh" "$root/bench"
	install -m 755 "$here/inner-init.sh" "$root/init"
	pack "$root" "$2"
	rm -rf "$root"
}
bench=${VMM_BENCH:-}
inner_initrd "$kdir" "$inner/initrd"
# The cloud flavour (no MP-table parsing, fewer drivers) boots too.
if [ -n "$cloud_kdir" ]; then
	cp "$cloud_kdir/vmlinuz" "$inner/vmlinuz-cloud"
	inner_initrd "$cloud_kdir" "$inner/initrd-cloud"
fi

# ---- the outer guest ---------------------------------------------------------
root=$out/outer-root
new_root "$root"
install_modules "$root" irqbypass kvm ccp kvm-amd
cp "$KVM_PROBE" "$root/bin/kvm-probe"
if [ -n "${VDISK:-}" ] && [ -x "$VDISK" ]; then
	install_binary "$root" "$VDISK"
fi
mkdir -p "$root/inner"
cp "$inner"/* "$root/inner/"
install -m 755 "$here/scenario.sh" "$root/scenario.sh"
install -m 755 "$here/outer-init.sh" "$root/init"
if [ -n "$bench" ]; then
	qemu=$(command -v qemu-system-x86_64) || skip "qemu-system-x86_64 is not installed"
	install_binary "$root" "$qemu"
	mkdir -p "$root/usr/share"
	cp -rL /usr/share/qemu /usr/share/seabios "$root/usr/share/"
	install -m 755 "$here/../../bench/vmm/outer-bench.sh" "$root/bench.sh"
fi
pack "$root" "$out/outer.cpio"
rm -rf "$root"
echo "build-images: kernel $version; outer.cpio $(( $(stat -c %s "$out/outer.cpio") >> 20 )) MiB, inner initrd $(( $(stat -c %s "$inner/initrd") >> 10 )) KiB"
