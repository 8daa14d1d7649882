#!/usr/bin/python3
"""Turns bench/results/nbd-raw.txt into the markdown report (nbd-latest.md).

    bench/nbd/report.py results/nbd-raw.txt > results/nbd-latest.md

RESULT lines: "RESULT SERVER METRIC VALUE"; SERVER "meta" holds run facts.
Missing figures (a server not run, or failed) show as "n/a".
"""
import sys

R, META = {}, {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 4 or f[0] != "RESULT":
        continue
    if f[1] == "meta":
        META[f[2]] = " ".join(f[3:])
        continue
    try:
        R[(f[1], f[2])] = float(f[3])
    except ValueError:
        pass

DEFAULT_CACHE = 96  # MiB: vdisk serve's default --cache
LABEL = {
    "vdisk": "vdisk serve (default cache, %dM)" % DEFAULT_CACHE,
    "vdisk-cache": "vdisk serve --cache %s" % META.get("size", "SIZE"),
    "vdisk-snap": "vdisk, right after `vdisk snapshot`",
    "vdisk-deep": "vdisk, clone %s levels deep" % META.get("depth", "?"),
    "qemu-raw": "qemu-nbd, raw",
    "qemu-qcow2": "qemu-nbd, qcow2",
    "qemu-overlay": "qemu-nbd, qcow2 overlay on a backing qcow2",
    "qemu-snap": "qemu-nbd, qcow2 right after `qemu-img snapshot -c`",
    "nbdkit": "nbdkit file plugin, raw",
}
SERVERS = list(LABEL)
WL = [
    ("seqw", "Sequential write, 1 MiB, QD 8", "MB/s"),
    ("seqr", "Sequential read, 1 MiB, QD 8", "MB/s"),
    ("seqr2", "Sequential read again (page cache warm for every server), 1 MiB, QD 8", "MB/s"),
    ("randw1", "Random write, 4 KiB, QD 1", "IOPS"),
    ("randw32", "Random write, 4 KiB, QD 32", "IOPS"),
    ("randwf1", "Random write, 4 KiB, QD 1, flush every 8 writes (fio --fsync=8)", "IOPS"),
    ("randwf32", "Random write, 4 KiB, QD 32, flush every 8 writes (fio --fsync=8)", "IOPS"),
    ("randw32l", "Random write, 4 KiB, QD 32, long run (LONG s: the journal fills, destage must keep up)", "IOPS"),
    ("randr1", "Random read, 4 KiB, QD 1", "IOPS"),
    ("randr32", "Random read, 4 KiB, QD 32", "IOPS"),
    ("randr1s", "Random read, 4 KiB, QD 1, right after the server restarts", "IOPS"),
    ("randr32s", "Random read, 4 KiB, QD 32, right after the server restarts", "IOPS"),
]


def g(s, m):
    return R.get((s, m))


def fig(v, unit):
    if v is None:
        return "n/a"
    if unit == "IOPS":
        return "%.1fk" % (v / 1000) if v >= 1000 else "%.0f" % v
    return "%.0f" % v


def ratio(a, b):
    return "n/a" if a is None or not b else "%.2f" % (a / b)


out = []
p = out.append
p("# NBD servers, same client (fio %s ioengine=nbd, Unix socket)\n"
  % META.get("versions", "").split("/")[0].replace("fio-", ""))
p("Export %s, random jobs %s s each over the written data, flush after a %s burst; "
  "vdisk %s, %s, load average %s at start and %s at end, whole run %s s. "
  "Servers ran one at a time on the same 2-core machine; %s."
  % (META.get("size"), META.get("runtime"), META.get("burst"), META.get("commit"),
     META.get("date"), META.get("load_start"), META.get("load_end"),
     META.get("elapsed-s"), META.get("versions", "").replace("/", ", ")))
p("")
p("- Figures are single runs, not medians: compare only rows of the same run. The run "
  "itself (fio plus a multi-threaded server) keeps the 1-minute load average near 2-3; "
  "clearly above that (see the load column under *Peak memory*) means other work shared "
  "the 2 cores, and those rows are slower and noisier.")
p("- fio's data: random bytes, scrambled per 512 bytes (no dedup, incompressible), so "
  "vdisk pays zstd and SHA-256 on every chunk without saving space.")
p("- *CPU s/GiB*: the server process's user+system CPU time during the job per GiB "
  "moved (kernel writeback of the page cache is not counted for anyone). The CPU is "
  "taken over fio's whole life (connect to disconnect, so any flush on disconnect is "
  "included) and after it (below) and divided by the bytes of the timed part.")
p("- The CPU is counted until the server is idle again after the client disconnected "
  "(at most one clock tick in each of two half seconds in a row): work a server defers past the job (vdisk "
  "seals written chunks in the background and when the last connection to a volume "
  "closes) is charged to the job that caused it. *busy after, s*: how long the server "
  "kept working once the client had gone.")
p("- *CPU µs/req* (random jobs): the same CPU time divided by the data requests fio "
  "completed (reads + writes; in the `--fsync=8` jobs the flushes are not counted as "
  "requests but their CPU is).")
p("- `--fsync=8`: fio's nbd engine sends an NBD flush after every 8 writes; the IOPS "
  "count the writes only.")
p("- qcow2 overlay: the sequential write went into the base image (no overlay yet); "
  "every later job ran on a fresh overlay. qcow2/vdisk \"right after snapshot\": a "
  "new snapshot was taken right before each random-write job.")
build = g("vdisk-deep", "build-s")
p("- vdisk deep clone: `vdisk snapshot`+`clone` %s times, 3 random 64 KiB "
  "`vdisk import --existing` writes per level (%s), serving the deepest clone."
  % (META.get("depth"), "built in %.1f s" % build if build is not None else "not run"))
# A server left out of SERVERS (or a job out of JOBS) shows as n/a: say so.
ran = META.get("servers", "").split()
if ran:
    left = [s for s in SERVERS if s not in ran]
    p("- Servers run: %s%s; jobs: %s. Rows and ratios of servers or jobs not run show n/a."
      % (", ".join(ran), "; not run: " + ", ".join(left) if left else "",
         META.get("jobs", "all")))
p("")

for wl, title, unit in WL:
    rows = [s for s in SERVERS if g(s, wl) is not None]
    if not rows:
        continue
    p("## %s (%s)\n" % (title, unit))
    rnd = wl.startswith("rand")
    p("| server | %s | CPU s/GiB |%s busy after, s | vdisk ÷ this | vdisk --cache ÷ this |"
      % (unit, " CPU µs/req |" if rnd else ""))
    p("|---|---|---|---|---|---|%s" % ("---|" if rnd else ""))
    for s in rows:
        us = ""
        if rnd:
            us = " %s |" % ("n/a" if g(s, wl + ".us") is None else "%.1f" % g(s, wl + ".us"))
        p("| %s | %s | %s |%s %s | %s | %s |" % (
            LABEL[s], fig(g(s, wl), unit),
            "n/a" if g(s, wl + ".cpu") is None else "%.2f" % g(s, wl + ".cpu"), us,
            "n/a" if g(s, wl + ".tail") is None else "%.1f" % g(s, wl + ".tail"),
            ratio(g("vdisk", wl), g(s, wl)), ratio(g("vdisk-cache", wl), g(s, wl))))
    p("")

RND = [w for w, _, _ in WL if w.startswith("rand")]
p("## Server CPU per request, random 4 KiB jobs (µs)\n")
p("| server | %s |" % " | ".join(RND))
p("|---|%s" % ("---|" * len(RND)))
for s in SERVERS:
    if not any(g(s, w + ".us") is not None for w in RND):
        continue
    p("| %s | %s |" % (LABEL[s], " | ".join(
        "" if g(s, w + ".us") is None else "%.1f" % g(s, w + ".us") for w in RND)))
p("")

p("## Flush after a write burst\n")
p("One NBD flush timed alone, after %s written sequentially (1 MiB, 8 in flight, "
  "no flush or FUA) by a libnbd Python client; the write rate of the burst beside it.\n"
  % META.get("burst"))
p("| server | burst MB/s | flush s | CPU s/GiB (burst+flush) | busy after, s |")
p("|---|---|---|---|---|")
for s in SERVERS:
    if g(s, "flush") is None:
        continue
    p("| %s | %s | %.3f | %s | %s |" % (
        LABEL[s], fig(g(s, "burst"), "MB/s"), g(s, "flush"),
        "%.2f" % g(s, "flush.cpu") if g(s, "flush.cpu") is not None else "n/a",
        "%.1f" % g(s, "flush.tail") if g(s, "flush.tail") is not None else "n/a"))
p("")

p("## Peak memory (and the machine's load when each server started)\n")
p("| server | peak RSS (VmHWM) MiB | peak RssAnon MiB (sampled) | load average at start |")
p("|---|---|---|---|")
for s in SERVERS:
    if g(s, "peak-rss-MiB") is not None:
        p("| %s | %.0f | %s | %s |" % (LABEL[s], g(s, "peak-rss-MiB"),
                                       "n/a" if g(s, "peak-anon-MiB") is None else "%.0f" % g(s, "peak-anon-MiB"),
                                       "n/a" if g(s, "load") is None else "%.2f" % g(s, "load")))
p("")
p("VmHWM is the kernel's peak of the resident set, file pages mapped included (vdisk maps its "
  "LMDB index; those pages belong to the page cache either way); RssAnon is the process's own "
  "memory, sampled every 0.2 s, so a peak shorter than that can be missed.\n")
p("Page cache is not counted: qemu-nbd and nbdkit keep the data in the kernel's page "
  "cache, vdisk keeps decompressed chunks and unflushed writes in its own memory.\n")

# Targets from the issue.


def verdict(v, bar, factor=1.0, higher=True):
    if v is None or bar is None:
        return "n/a"
    ok = v >= factor * bar if higher else v <= factor * bar
    return "met" if ok else "**NOT met**"


p("## Targets (issue #7)\n")
p("vdisk's figure ÷ the bar (for the flush and the memory, the bar ÷ vdisk's: above 1 "
  "is better everywhere). The default-cache columns are the ones the targets apply to; "
  "the --cache columns are shown beside them.\n")
p("| target | workload | bar | vdisk | ratio | status | vdisk --cache | ratio | status |")
p("|---|---|---|---|---|---|---|---|---|")


def row(target, wl, unit, bar_server, factor=1.0, vd="vdisk", vdc="vdisk-cache"):
    bar = g(bar_server, wl)
    higher = wl != "flush"
    cells = []
    for s in (vd, vdc):
        v = g(s, wl) if s else None
        if s is None:
            cells += ["", "", ""]
            continue
        r = "n/a" if v is None or not bar else "%.2f" % ((v / bar) if higher else (bar / v if v else 0))
        cells += [fig(v, unit) if higher else ("n/a" if v is None else "%.3f s" % v), r,
                  verdict(v, bar, factor, higher)]
    barfmt = fig(bar, unit) if higher else ("n/a" if bar is None else "%.3f s" % bar)
    if factor != 1.0:
        barfmt = "%s × %s" % (factor, barfmt)
    p("| %s | %s | %s: %s | %s |" % (target, wl, LABEL[bar_server], barfmt, " | ".join(cells)))


for wl in ("randr1", "randr32"):
    row("random reads ≥ nbdkit", wl, "IOPS", "nbdkit")
for wl in ("randr1s", "randr32s"):
    row("random reads right after the server starts ≥ qemu-nbd qcow2", wl, "IOPS", "qemu-qcow2")
for wl in ("randw1", "randw32"):
    row("random writes ≥ nbdkit", wl, "IOPS", "nbdkit")
for wl in ("randw1", "randw32"):
    row("random writes ≥ nbdkit, right after a snapshot", wl, "IOPS", "nbdkit",
        vd="vdisk-snap", vdc=None)
row("random writes ≥ nbdkit, over a run that forces destage", "randw32l", "IOPS", "nbdkit")
row("sequential writes ≥ 1.5× qemu-nbd raw", "seqw", "MB/s", "qemu-raw", factor=1.5)
row("sequential reads ≥ 80% of nbdkit", "seqr", "MB/s", "nbdkit", factor=0.8)
row("(reference) the same read again", "seqr2", "MB/s", "nbdkit", factor=0.8)
row("flush after a burst ≤ qemu-nbd raw", "flush", "s", "qemu-raw")
for wl in ("randwf1", "randwf32"):
    row("random writes, flush every 8 writes ≥ nbdkit", wl, "IOPS", "nbdkit")
# The memory target: VmHWM (file pages mapped included), and beside it, as
# a reference, the sampled RssAnon (the process's own memory).
for s, cache in (("vdisk", DEFAULT_CACHE), ("vdisk-snap", DEFAULT_CACHE),
                 ("vdisk-deep", DEFAULT_CACHE), ("vdisk-cache", None)):
    if cache is None:
        try:
            cache = float(META.get("size", "").rstrip("iB").rstrip("G")) * 1024
        except ValueError:
            continue
    bar = 64 + cache if s == "vdisk-cache" else min(64 + cache, 200)
    what = ", --cache %s" % META.get("size") if s == "vdisk-cache" else \
        " (default total ≤ 200 MiB)" if s == "vdisk" else ", %s" % LABEL[s]
    for key, label in (("peak-rss-MiB", "peak RSS"), ("peak-anon-MiB", "(reference) peak RssAnon")):
        v = g(s, key)
        if v is None:
            continue
        p("| %s ≤ 64 MiB + cache%s | whole run | %.0f MiB | %.0f MiB | %.2f | %s |  |  |  |" % (
            label, what, bar, v, bar / v if v else 0, verdict(v, bar, higher=False)))
p("")

p("## Deep clone vs fresh volume (QD 32)\n")
p("| workload | fresh vdisk | clone %s deep | deep ÷ fresh |" % META.get("depth"))
p("|---|---|---|---|")
for wl in ("randw32", "randwf32", "randr32"):
    p("| %s | %s | %s | %s |" % (wl, fig(g("vdisk", wl), "IOPS"), fig(g("vdisk-deep", wl), "IOPS"),
                                 ratio(g("vdisk-deep", wl), g("vdisk", wl))))
print("\n".join(out))
