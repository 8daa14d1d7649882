#!/bin/bash
# NBD over TLS benchmark: the same client (fio ioengine=nbd, libnbd, over a
# Unix socket) against `vdisk serve` and its anchors, each with TLS (X.509
# certificates made in the run with certtool; NBD_OPT_STARTTLS, TLS
# required) and, for reference, the same server without TLS, in one run,
# reported as figures and ratios.  Not part of make check.
#
#   bench/nbd/tls.sh            # ~4-6 min on 2 cores with the defaults
#
# Servers (one at a time; scratch data deleted between them; each on a
# fresh SIZE export that is filled once with fio before the timed jobs):
#   vdisk-tls     vdisk serve --tls=require --tls-certificates DIR
#   vdisk         vdisk serve (no TLS)
#   qemu-tls      qemu-nbd -f raw --object tls-creds-x509,...,endpoint=server
#                 --tls-creds tls0, raw file
#   qemu          qemu-nbd -f raw (no TLS), raw file
#   nbdkit-tls    nbdkit --tls=require --tls-certificates=DIR file FILE
#   nbdkit        nbdkit file FILE (no TLS)
# qemu-nbd runs with --cache=writeback --aio=threads -e 8 as in run.sh.
# TLS clients use nbds+unix:///vol?socket=S&tls-certificates=CLIENT-DIR
# (the CA and a CA-signed client certificate; the server certificate is
# for localhost, which libnbd checks for a Unix socket).  fio's nbd engine
# never calls nbd_set_uri_allow_local_file, so libnbd refuses the
# tls-certificates= of such a URI, and as root libnbd's default directory
# is /etc/pki/libnbd (not $HOME); so fio runs with a small LD_PRELOAD
# (built here with cc) that sets allow_local_file before nbd_connect_uri.
# It touches nothing but the connect call.
#
# Workloads (in this order, each over the whole export):
#   seqw / seqr          sequential 1 MiB, queue depth 8, SIZE bytes
#   randr32 / randw32    random 4 KiB reads / writes of the data, QD 32,
#                        RUNTIME s each
# Per job: throughput (MB/s for sequential, IOPS for random); the server's
# CPU time (utime+stime of its process, /proc/PID/stat, over fio's whole
# life) per GiB moved (sequential) or per operation in µs (random); fio's
# own CPU the same way (the client pays for TLS too, on the same 2 cores).
# Per server: peak RSS (VmHWM).
#
# Environment:
#   VDISK_BENCH_TMP  scratch directory (default /work/bench-tmp; never
#                    inside the repository)
#   SIZE             export size (default 1G); sequential jobs cover it
#   RUNTIME          seconds per random job (default 10)
#   SERVERS          subset of the servers above (default: all)
#   VDISK            the vdisk program (default: ./vdisk at the top)
#
# Writes bench/results/tls-raw.txt (RESULT lines, as run.sh) and
# bench/results/tls-latest.md (made from the first by the Python at the end).
set -u -o pipefail
source "$(dirname "$0")/../dirs.sh" tls
size=${SIZE:-1G}
runtime=${RUNTIME:-10}
servers=${SERVERS:-vdisk-tls vdisk qemu-tls qemu nbdkit-tls nbdkit}
vdisk=${VDISK:-$top/vdisk}
raw=$bench/results/tls-raw.txt
md=$bench/results/tls-latest.md
mkdir -p "$bench/results"
rm -rf "$tmp" && mkdir -p "$tmp" || exit 1
for p in fio nbdkit qemu-nbd certtool numfmt cc "$vdisk"; do
	command -v "$p" >/dev/null || { echo "missing $p" >&2; exit 77; }
done
size_b=$(numfmt --from=iec "${size%iB}") || exit 2
hz=$(getconf CLK_TCK)
: >"$raw"
t_start=$(date +%s)

# shellcheck source=bench/nbd/common.sh
source "$bench/nbd/common.sh"

record_build
res meta size "$size"
res meta runtime "$runtime"
res meta load_start "$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)"
res meta versions "$(fio --version)/qemu-nbd-$(qemu-nbd --version | awk 'NR==1{print $2}')/nbdkit-$(nbdkit --version | awk '{print $2}')/gnutls-$(certtool --version | awk 'NR==1{print $NF}')"

# ---- credentials: a CA, a server certificate for localhost, a client one ----
pki=$tmp/pki cli=$tmp/client
mkdir -p "$pki" "$cli"
source "$top/tests/tls-certs.sh"
tls_make_certs "$pki" "$cli" "$tmp" "vdisk-bench" || exit 1

# fio's nbd engine: let libnbd read the URI's tls-certificates= directory.
cat >"$tmp/allow-local-file.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdbool.h>
struct nbd_handle;
int nbd_set_uri_allow_local_file(struct nbd_handle *, bool);
int nbd_connect_uri(struct nbd_handle *h, const char *uri)
{
	static int (*real)(struct nbd_handle *, const char *);
	if (!real)
		real = (int (*)(struct nbd_handle *, const char *))
			dlsym(RTLD_NEXT, "nbd_connect_uri");
	if (!real || nbd_set_uri_allow_local_file(h, true) == -1)
		return -1;
	return real(h, uri);
}
C
cc -shared -fPIC -O2 -o "$tmp/allow-local-file.so" "$tmp/allow-local-file.c" -ldl || exit 1


sock=$tmp/sock
set_uri() {   # set_uri TLS(0|1)
	if [ "$1" = 1 ]; then
		uri="nbds+unix:///vol?socket=$sock&tls-certificates=$cli"
	else
		uri="nbd+unix:///vol?socket=$sock"
	fi
}
serve_vdisk() {   # serve_vdisk TLS
	rm -f "$sock"
	local t=()
	[ "$1" = 1 ] && t=(--tls=require --tls-certificates "$pki")
	VDISK_STORE=$tmp/store "$vdisk" serve --socket "$sock" "${t[@]}" vol 2>>"$tmp/serve.log" &
	server_pid=$!
	set_uri "$1"
	wait_sock "$sock"
}
serve_qemu() {   # serve_qemu TLS IMAGE
	rm -f "$sock"
	local t=()
	[ "$1" = 1 ] && t=(--object "tls-creds-x509,id=tls0,dir=$pki,endpoint=server" --tls-creds tls0)
	qemu-nbd -t -f raw -k "$sock" -x vol --cache=writeback --aio=threads -e 8 \
		"${t[@]}" "$2" 2>>"$tmp/serve.log" &
	server_pid=$!
	set_uri "$1"
	wait_sock "$sock"
}
serve_nbdkit() {   # serve_nbdkit TLS IMAGE
	rm -f "$sock"
	local t=()
	[ "$1" = 1 ] && t=(--tls=require "--tls-certificates=$pki")
	nbdkit -f -U "$sock" "${t[@]}" file "$2" 2>>"$tmp/serve.log" &
	server_pid=$!
	set_uri "$1"
	wait_sock "$sock"
}


# job NAME FIO-ARGS...: prints "MBps iops server_cpu_s client_cpu_s ops GiB"
job() {
	local name=$1 c0 c1
	shift
	c0=$(cpu_ticks)
	LD_PRELOAD=$tmp/allow-local-file.so fio --name="$name" --ioengine=nbd --uri="$uri" --output-format=json \
		--output="$tmp/$name.json" "$@" >/dev/null || {
		echo "fio $name failed: $(tail -3 "$tmp/$name.json")" >&2
		tail -5 "$tmp/serve.log" >&2
		exit 1
	}
	c1=$(cpu_ticks)
	/usr/bin/python3 - "$tmp/$name.json" "$((c1 - c0))" "$hz" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
d = j["write"] if j["write"]["io_bytes"] else j["read"]
moved = (j["write"]["io_bytes"] + j["read"]["io_bytes"]) / 2**30
ops = j["write"]["total_ios"] + j["read"]["total_ios"]
cpu = int(sys.argv[2]) / int(sys.argv[3])
# fio's usr_cpu/sys_cpu are percentages of job_runtime (ms; "elapsed" is
# whole seconds, too coarse for a 2 s sequential job)
client = (j["usr_cpu"] + j["sys_cpu"]) / 100 * j["job_runtime"] / 1000
print("%.1f %.0f %.3f %.3f %d %.4f" % (d["bw_bytes"] / 1e6, d["iops"], cpu, client, ops, moved))
PY
}

per_gib() { awk -v c="$1" -v g="$2" 'BEGIN{printf "%.3f", (g > 0 ? c / g : 0)}'; }
per_op() { awk -v c="$1" -v n="$2" 'BEGIN{printf "%.1f", (n > 0 ? c * 1e6 / n : 0)}'; }

# run WORKLOAD SERVER: run one workload and record it
run() {
	local wl=$1 s=$2
	case $wl in
	seqw|seqr)
		local rw=write
		[ "$wl" = seqr ] && rw=read
		set -- $(job "$wl" --rw=$rw --bs=1M --iodepth=8 --size="$size")
		got $# 6
		res "$s" "$wl" "$1"
		res "$s" "$wl.cpu" "$(per_gib "$3" "$6")"
		res "$s" "$wl.fio-cpu" "$(per_gib "$4" "$6")" ;;
	randr32|randw32)
		local rw=randwrite
		[ "$wl" = randr32 ] && rw=randread
		set -- $(job "$wl" --rw=$rw --bs=4k --iodepth=32 --size="$size" \
			--time_based --runtime="$runtime" --randrepeat=0)
		got $# 6
		res "$s" "$wl" "$2"
		res "$s" "$wl.cpu" "$(per_op "$3" "$5")"
		res "$s" "$wl.fio-cpu" "$(per_op "$4" "$5")" ;;
	esac
}

fill() {   # fill: write the whole export once (not recorded)
	set -- $(job fill --rw=write --bs=1M --iodepth=8 --size="$size")
	got $# 6
}

all="seqw seqr randr32 randw32"

for s in $servers; do
	say "$s ($(date +%T))"
	rm -rf "$tmp/store" "$tmp"/*.img "$tmp"/*.json
	peak_kb=0
	tls=0
	case $s in *-tls) tls=1 ;; esac
	res "$s" load "$(cut -d' ' -f1 /proc/loadavg)"
	case $s in
	vdisk|vdisk-tls)
		VDISK_STORE=$tmp/store "$vdisk" create vol "$size" >/dev/null || exit 1
		serve_vdisk $tls ;;
	qemu|qemu-tls)
		truncate -s "$size" "$tmp/raw.img"
		serve_qemu $tls "$tmp/raw.img" ;;
	nbdkit|nbdkit-tls)
		truncate -s "$size" "$tmp/raw.img"
		serve_nbdkit $tls "$tmp/raw.img" ;;
	*) echo "unknown server $s" >&2; exit 2 ;;
	esac
	fill
	if [ "$s" = vdisk-tls ]; then
		grep -q ", tls" "$tmp/serve.log" || { echo "vdisk did not log a TLS session" >&2; exit 1; }
	fi
	for wl in $all; do run "$wl" "$s"; done
	stop_server
	res "$s" peak-rss-MiB $((peak_kb / 1024))
done
rm -rf "$tmp/store" "$tmp"/*.img

res meta load_end "$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)"
res meta elapsed-s $(($(date +%s) - t_start))

/usr/bin/python3 - "$raw" >"$md" <<'PY' || exit 1
import sys
meta, r = {}, {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 4 or f[0] != "RESULT":
        continue
    if f[1] == "meta":
        meta[f[2]] = " ".join(f[3:])
    else:
        r[(f[1], f[2])] = f[3]

def num(s, k):
    v = r.get((s, k))
    return float(v) if v is not None else None

def fmt(v, unit):
    if v is None:
        return "–"
    if unit == "IOPS":
        return "%.1fk" % (v / 1000) if v >= 1000 else "%.0f" % v
    if unit == "MB/s":
        return "%.0f" % v
    return "%.2f" % v if v < 100 else "%.0f" % v

def ratio(a, b):
    return "%.2f" % (a / b) if a is not None and b else "–"

fams = [("vdisk", "vdisk"), ("qemu", "qemu-nbd"), ("nbdkit", "nbdkit")]
wls = [("seqw", "Sequential write, 1 MiB, QD 8", "MB/s", "s/GiB"),
       ("seqr", "Sequential read, 1 MiB, QD 8", "MB/s", "s/GiB"),
       ("randr32", "Random read, 4 KiB, QD 32", "IOPS", "µs/op"),
       ("randw32", "Random write, 4 KiB, QD 32", "IOPS", "µs/op")]
v = meta.get("versions", "").split("/")
print("# NBD over TLS next to plain NBD, same client (%s ioengine=nbd, Unix socket)" % (v[0] if v else "fio"))
print()
print("Export %s (filled once with fio first), random jobs %s s each over the written data; "
      "vdisk %s, %s, load average (1/5/15 min) %s at start and %s at end, whole run %s s. "
      "Servers ran one at a time on the same 2-core machine (shared with other work); %s."
      % (meta.get("size"), meta.get("runtime"), meta.get("commit"), meta.get("date"),
         meta.get("load_start"), meta.get("load_end"), meta.get("elapsed-s"), ", ".join(v)))
print()
print("- TLS: X.509 certificates made in the run with certtool (CA, server certificate for "
      "localhost, client certificate); the servers require TLS (`vdisk serve --tls=require "
      "--tls-certificates DIR`, `qemu-nbd --object tls-creds-x509,...,endpoint=server --tls-creds tls0`, "
      "`nbdkit --tls=require --tls-certificates=DIR`); fio's URI is "
      "`nbds+unix:///vol?socket=S&tls-certificates=DIR` (fio's nbd engine never allows a URI's local "
      "files, so fio runs with a tiny LD_PRELOAD calling `nbd_set_uri_allow_local_file` before "
      "`nbd_connect_uri`; nothing else changes). qemu-nbd verifies the client certificate (its "
      "default), vdisk and nbdkit do not ask for one (theirs): handshake only. Plain: the same server and export without TLS.")
print("- Figures are single runs, not medians: compare only rows of the same run; a 1-minute load "
      "average clearly above ~2-3 in the *load* column means other work shared the 2 cores.")
print("- *server CPU*: the server process's user+system time (/proc/PID/stat) over fio's whole life, "
      "per GiB moved (sequential) or per operation (random). *fio CPU*: fio's own user+system time "
      "the same way (the client encrypts and decrypts too, on the same 2 cores).")
print("- qemu-nbd: raw file, --cache=writeback --aio=threads -e 8; nbdkit: file plugin on a raw file.")
print()
print("## Throughput: TLS and plain per server, and TLS ratios")
print()
print("| job | unit | vdisk TLS | vdisk plain | TLS ÷ plain | qemu-nbd TLS | qemu-nbd plain | TLS ÷ plain "
      "| nbdkit TLS | nbdkit plain | TLS ÷ plain | vdisk-TLS ÷ qemu-nbd-TLS | vdisk-TLS ÷ nbdkit-TLS |")
print("|---|---|" + "---|" * 11)
for wl, title, unit, cu in wls:
    row = ["%s (%s)" % (wl, title), unit]
    for f, _ in fams:
        t, p = num(f + "-tls", wl), num(f, wl)
        row += [fmt(t, unit), fmt(p, unit), ratio(t, p)]
    vt = num("vdisk-tls", wl)
    row += [ratio(vt, num("qemu-tls", wl)), ratio(vt, num("nbdkit-tls", wl))]
    print("| " + " | ".join(row) + " |")
print()
print("## Server CPU (and fio's) per GiB or per operation")
print()
print("| job | unit | vdisk TLS | vdisk plain | TLS ÷ plain | qemu-nbd TLS | qemu-nbd plain | TLS ÷ plain "
      "| nbdkit TLS | nbdkit plain | TLS ÷ plain | fio: vdisk TLS | fio: qemu-nbd TLS | fio: nbdkit TLS |")
print("|---|---|" + "---|" * 12)
for wl, title, unit, cu in wls:
    row = [wl, cu]
    for f, _ in fams:
        t, p = num(f + "-tls", wl + ".cpu"), num(f, wl + ".cpu")
        row += [fmt(t, cu), fmt(p, cu), ratio(t, p)]
    for f, _ in fams:
        row.append(fmt(num(f + "-tls", wl + ".fio-cpu"), cu))
    print("| " + " | ".join(row) + " |")
print()
print("## Peak memory (VmHWM) and load at the server's start")
print()
print("| server | peak RSS MiB | load (1 min) |")
print("|---|---|---|")
for f, name in fams:
    for s, lab in ((f + "-tls", name + " TLS"), (f, name + " plain")):
        if (s, "peak-rss-MiB") in r:
            print("| %s | %s | %s |" % (lab, r[(s, "peak-rss-MiB")], r.get((s, "load"), "–")))
PY
cat "$md"
