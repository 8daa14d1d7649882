#!/bin/bash
# The engine's structure, as engine/internal.h states it:
#  - modules in one downward order: each engine/*.c calls only internal
#    functions of the files listed below it;
#  - one owner per LMDB database: mdb_* calls only in the owning files, and
#    each database handle (st_chunks, st_map, ...) used only by its owner;
#  - the public vd_* entry points are thin: nothing in the engine calls
#    them (except the pure vd_name_valid and vd_strerror).
# Prints which engine files call which.
set -eu
cd "${VDISK_TOP:-$(dirname "$0")/..}"
exec python3 - <<'PY'
import re, sys, glob, os

hdr = open("engine/internal.h").read()
# The order: " *   name.c   description" lines of the top comment, top first.
top = hdr.split("*/", 1)[0]
order = re.findall(r"^ \*\s+([a-z]+\.c)\s", top, re.M)
if len(order) < 10:
    sys.exit("could not read the module order from engine/internal.h")
rank = {m: i for i, m in enumerate(order)}  # 0 = top

# Functions declared in each "---- X.c ----" section.
owner = {}
for sec, body in re.findall(r"/\* ---- ([a-z]+\.c) -+ \*/(.*?)(?=/\* ---- |\Z)", hdr, re.S):
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    for name in re.findall(r"^[a-z_][\w \t\*]*?\b([a-z_][a-z0-9_]*)\s*\(", body, re.M):
        if name not in ("if", "while", "for", "return", "sizeof"):
            owner[name] = sec
    for name in re.findall(r"^#define ([A-Z_]+)\(", body, re.M):
        owner[name] = sec
missing = [m for m in set(owner.values()) if m not in rank]
if missing:
    sys.exit("sections not in the module order: %s" % missing)

problems = []
calls = {}
files = sorted(glob.glob("engine/*.c"))
for path in files:
    me = os.path.basename(path)
    if me not in rank:
        problems.append("%s is not in the module order of engine/internal.h" % me)
        continue
    src = open(path).read()
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    src = re.sub(r'"(\\.|[^"\\])*"', '""', src)
    used = set()
    for name in set(re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(", src)):
        o = owner.get(name)
        if o and o != me:
            used.add(o)
            if rank[o] <= rank[me]:
                problems.append("%s calls %s() of %s, which is not below it"
                                % (me, name, o))
    calls[me] = used
    # LMDB calls only in the database owners (error.c maps LMDB codes).
    if re.search(r"\bmdb_\w+\s*\(", src) and me not in (
            "index.c", "chunk.c", "layer.c", "catalog.c", "error.c"):
        problems.append("%s calls LMDB directly (mdb_*)" % me)
    # Public entry points are not called from inside.
    if me != "api.c":
        for name in set(re.findall(r"\b(vd_[a-z_]+)\s*\(", src)):
            defined_here = re.search(r"^[a-z].*\b%s\s*\(" % name, src, re.M) \
                and not re.search(r"[=;(,]\s*%s\s*\(" % name, src)
            if name in ("vd_name_valid", "vd_strerror") or defined_here:
                continue
            problems.append("%s calls the public %s()" % (me, name))

dbs = {"st_meta": "index.c", "st_chunks": "chunk.c", "st_map": "layer.c",
       "st_epochs": "layer.c", "st_layers": "layer.c", "st_readers": "layer.c",
       "st_volumes": "catalog.c", "st_snapshots": "catalog.c"}
for path in files:
    me = os.path.basename(path)
    src = open(path).read()
    for db, own in dbs.items():
        if re.search(r"\b%s\b" % db, src) and me not in (own, "index.c"):
            problems.append("%s uses %s, owned by %s" % (me, db, own))

print("engine files, top first, and the files each calls:")
for m in order:
    if m in calls:
        print("  %-10s -> %s" % (m, " ".join(sorted(calls[m], key=rank.get)) or "-"))
for p in problems:
    print("FAIL: " + p)
sys.exit(1 if problems else 0)
PY
