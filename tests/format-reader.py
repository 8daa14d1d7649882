#!/usr/bin/env python3
"""An independent reader of a vdisk store, written from FORMAT.md alone.

Usage: format-reader.py STORE VOL[@SNAP] OUTFILE     (OUTFILE may be '-')

It parses and verifies the superblock, loads every LMDB database through the
`mdb_dump` tool (Debian lmdb-utils), checks the records' shapes and the index
invariants FORMAT.md states, resolves VOL or VOL@SNAP through layers and
epochs, reads each chunk record from its pack file, checks the record header
(and for a framed record its frame table and each frame's XXH3-64),
decompresses zstd payloads with the `zstd` tool, verifies SHA-256 and writes
the raw bytes of the point to OUTFILE.

It does not share any code with vdisk: if it disagrees with `vdisk export`,
either the engine or FORMAT.md is wrong.  Section names in messages refer to
FORMAT.md.

Exit status: 0 success; 1 the store violates the spec (corrupt, unsupported
version, not a store) or the volume/snapshot does not exist; 2 usage error.
"""

import hashlib
import os
import re
import struct
import subprocess
import sys

HEAD = 0xFFFFFFFFFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF
REC_HDR = 48
REC_MAGIC = 0x31434456
DBS = ("meta", "chunks", "layers", "map", "epochs", "readers", "volumes",
       "snapshots")
NAME_RE = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")


class SpecError(Exception):
    """The store disagrees with FORMAT.md (message says how)."""


def corrupt(section, msg):
    raise SpecError("corrupt: %s: %s" % (section, msg))


# ---- Conventions: CRC-32C --------------------------------------------------

def _crc_table():
    t = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC_T = _crc_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def valid_name(n):
    return bool(NAME_RE.match(n)) and n[:1] not in (b".", b"-")


# ---- Superblock --------------------------------------------------------------

def read_superblock(store):
    path = os.path.join(store, "vdisk.sb")
    try:
        with open(path, "rb") as f:
            sb = f.read(65)
    except FileNotFoundError:
        raise SpecError("not a vdisk store: %s has no vdisk.sb" % store)
    except OSError as e:
        raise SpecError("cannot read %s: %s" % (path, e.strerror))
    if len(sb) != 64:
        corrupt("Superblock", "vdisk.sb is %d bytes, not 64"
                % os.path.getsize(path))
    if sb[0:8] != b"VDISKSB1":
        raise SpecError("not a vdisk store: vdisk.sb has magic %r" % sb[0:8])
    crc, = struct.unpack_from("<I", sb, 60)
    if crc32c(sb[0:60]) != crc:
        corrupt("Superblock", "CRC-32C mismatch (stored %08x, computed %08x)"
                % (crc, crc32c(sb[0:60])))
    version, chunk_size = struct.unpack_from("<II", sb, 8)
    if version not in (1, 2, 3, 4, 5):
        raise SpecError("unsupported format version %d (superblock); this "
                        "reader knows versions 1 to 5" % version)
    if chunk_size < 4096 or chunk_size > 1048576 or \
            chunk_size & (chunk_size - 1):
        corrupt("Superblock", "chunk_size %d is not a power of two in "
                "4096..1048576" % chunk_size)
    if sb[40:60] != bytes(20):
        corrupt("Superblock", "reserved bytes 40-59 are not zero")
    uuid = sb[16:32]
    if (uuid[6] >> 4) != 4 or (uuid[8] & 0xC0) != 0x80:
        corrupt("Superblock", "uuid %s is not RFC 4122 version 4" % uuid.hex())
    return {"chunk_size": chunk_size, "uuid": uuid, "version": version,
            "created": struct.unpack_from("<Q", sb, 32)[0]}


# ---- LMDB through mdb_dump ---------------------------------------------------

def mdb_dump(env, args):
    try:
        p = subprocess.run(["mdb_dump", "-n"] + args + [env],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise SpecError("mdb_dump is not installed (Debian package lmdb-utils)")
    if p.returncode != 0:
        corrupt("LMDB index", "mdb_dump %s failed: %s"
                % (" ".join(args), p.stderr.decode(errors="replace").strip()))
    return p.stdout.decode("ascii")


def load_index(store):
    """Returns {database name: [(key, value)]}, keys in LMDB order, read in
    one read transaction (`mdb_dump -a` dumps every named database of the
    environment in one), or None if there is no index.mdb yet."""
    env = os.path.join(store, "index.mdb")
    if not os.path.exists(env):
        # "Creating a store writes the superblock first, then creates the
        # LMDB meta records if they are missing": a store whose creation
        # was interrupted is an empty store.
        return None
    # mdb_dump's default 'bytevalue' format: per database a header ending
    # in HEADER=END, then one hex line per key and per value, each
    # beginning with a space, then DATA=END.
    lines = mdb_dump(env, ["-a"]).split("\n")
    dbs, i = {}, 0
    while i < len(lines) and lines[i] != "":
        header = {}
        while i < len(lines) and lines[i] != "HEADER=END":
            k, _, v = lines[i].partition("=")
            header[k] = v
            i += 1
        i += 1
        name = header.get("database")
        if name is None or header.get("format") != "bytevalue":
            corrupt("LMDB index", "unexpected mdb_dump header %r" % header)
        if "duplicates" in header or "dupsort" in header:
            corrupt("LMDB index", "database %s allows duplicate keys" % name)
        pairs = []
        while i < len(lines) and lines[i] != "DATA=END":
            if i + 1 >= len(lines) or not lines[i].startswith(" ") or \
                    not lines[i + 1].startswith(" "):
                corrupt("LMDB index", "unexpected mdb_dump output in %s"
                        % name)
            pairs.append((bytes.fromhex(lines[i][1:]),
                          bytes.fromhex(lines[i + 1][1:])))
            i += 2
        i += 1
        dbs[name] = pairs
    for d in DBS:
        if d not in dbs:
            corrupt("LMDB index", "named database %r is missing" % d)
    for d in dbs:
        if d not in DBS:
            corrupt("LMDB index", "unknown named database %r" % d)
    return dbs


# ---- Index records -------------------------------------------------------------

class Index:
    def __init__(self, sb, dbs):
        self.sb = sb
        self.cs = sb["chunk_size"]
        self.meta = {}
        self.chunks = {}
        self.layers = {}
        self.map = {}           # layer -> index -> [(epoch, value)] newest first
        self.map_keys = set()
        self.epochs = set()
        self.readers = {}
        self.volumes = {}
        self.snapshots = {}
        if dbs is None:
            self.meta = {"format": 1, "chunk_size": self.cs}
            return
        self._meta(dbs["meta"])
        self._chunks(dbs["chunks"])
        self._layers(dbs["layers"])
        self._map(dbs["map"])
        self._epochs(dbs["epochs"])
        self._readers(dbs["readers"])
        self._volumes(dbs["volumes"])
        self._snapshots(dbs["snapshots"])

    def _meta(self, pairs):
        known = ("format", "chunk_size", "next_layer", "next_pack",
                 "stat_chunks", "stat_refs", "stat_stored",
                 "stat_dead_chunks", "stat_dead_bytes",
                 "stat_compact_packs", "stat_compact_bytes")
        for k, v in pairs:
            try:
                key = k.decode("ascii")
            except UnicodeDecodeError:
                corrupt("meta", "non-ASCII key %s" % k.hex())
            if key not in known:
                corrupt("meta", "unknown key %r" % key)
            if len(v) != 8:
                corrupt("meta", "value of %r is %d bytes, not a u64"
                        % (key, len(v)))
            self.meta[key] = struct.unpack("<Q", v)[0]
        if "format" not in self.meta:
            corrupt("meta", "no 'format' key")
        if self.meta["format"] not in (1, 2, 3, 4, 5) or \
                self.meta["format"] > sb_version(self):
            raise SpecError("unsupported format version %d (meta.format, "
                            "superblock %d)" % (self.meta["format"],
                                                sb_version(self)))
        if self.meta.get("chunk_size") != self.cs:
            corrupt("meta", "chunk_size %s differs from the superblock's %d"
                    % (self.meta.get("chunk_size"), self.cs))

    def _chunks(self, pairs):
        for k, v in pairs:
            if len(k) != 32 or len(v) != 32:
                corrupt("chunks", "key/value of %d/%d bytes, not 32/32"
                        % (len(k), len(v)))
            pack, slen, off, refs, codec = struct.unpack_from("<IIQQB", v)
            what = "chunk %s" % k.hex()
            if pack < 1:
                corrupt("chunks", "%s: pack_id 0" % what)
            if slen < 1 or slen > self.cs + \
                    (framed_max_table(self.cs) if codec == 2 else 0):
                corrupt("chunks", "%s: stored_len %d" % (what, slen))
            if off < 64:
                corrupt("chunks", "%s: offset %d < 64" % (what, off))
            if codec not in (0, 1, 2):
                corrupt("chunks", "%s: codec %d" % (what, codec))
            if codec == 0 and slen != self.cs:
                corrupt("chunks", "%s: raw chunk with stored_len %d"
                        % (what, slen))
            if v[25:32] != bytes(7):
                corrupt("chunks", "%s: reserved bytes not zero" % what)
            self.chunks[k] = {"pack": pack, "stored_len": slen, "offset": off,
                              "refs": refs, "codec": codec}

    def _layers(self, pairs):
        for k, v in pairs:
            if len(k) != 8 or len(v) != 32:
                corrupt("layers", "key/value of %d/%d bytes, not 8/32"
                        % (len(k), len(v)))
            lid, = struct.unpack(">Q", k)
            parent, pepoch, epoch, created = struct.unpack("<QQQQ", v)
            if lid == 0:
                corrupt("layers", "layer id 0")
            if epoch < 1 or epoch == HEAD:
                corrupt("layers", "layer %d: write epoch %d" % (lid, epoch))
            if parent == 0 and pepoch != 0:
                corrupt("layers", "layer %d: no parent but parent_epoch %d"
                        % (lid, pepoch))
            if parent == lid:
                corrupt("layers", "layer %d is its own parent" % lid)
            self.layers[lid] = {"parent": parent, "parent_epoch": pepoch,
                                "epoch": epoch}

    def _map(self, pairs):
        for k, v in pairs:
            if len(k) != 24:
                corrupt("map", "key of %d bytes, not 24" % len(k))
            layer, idx, nep = struct.unpack(">QQQ", k)
            epoch = nep ^ U64
            where = "(layer %d, index %d, epoch %d)" % (layer, idx, epoch)
            if len(v) == 1 and v[0] == 0:
                val = None
            elif len(v) == 33 and v[0] == 1:
                val = v[1:]
            else:
                corrupt("map", "%s: value of %d bytes, kind %s"
                        % (where, len(v), v[0] if v else "none"))
            # Key order is (layer, index, ~epoch): newest first per index.
            self.map.setdefault(layer, {}).setdefault(idx, []).append(
                (epoch, val))
            self.map_keys.add((layer, idx, epoch))

    def _epochs(self, pairs):
        for k, v in pairs:
            if len(k) != 24 or len(v) != 0:
                corrupt("epochs", "key/value of %d/%d bytes, not 24/0"
                        % (len(k), len(v)))
            layer, epoch, idx = struct.unpack(">QQQ", k)
            self.epochs.add((layer, idx, epoch))

    def _readers(self, pairs):
        for k, v in pairs:
            if len(k) != 16 or len(v) != 4:
                corrupt("readers", "key/value of %d/%d bytes, not 16/4"
                        % (len(k), len(v)))
            self.readers[struct.unpack(">QQ", k)] = struct.unpack("<I", v)[0]

    def _volumes(self, pairs):
        for k, v in pairs:
            if not valid_name(k):
                corrupt("volumes", "bad volume name %r" % k)
            if len(v) != 160:
                corrupt("volumes", "volume %s: value of %d bytes, not 160"
                        % (k.decode(), len(v)))
            size, layer, created = struct.unpack_from("<QQQ", v)
            what = "volume %s" % k.decode()
            if size == 0:
                corrupt("volumes", "%s: size 0" % what)
            if v[24:32] != bytes(8):
                corrupt("volumes", "%s: reserved bytes not zero" % what)
            ov, os_ = self._padded(v[32:96], what), self._padded(v[96:160], what)
            if bool(ov) != bool(os_):
                corrupt("volumes", "%s: only one origin field is set" % what)
            self.volumes[k] = {"size": size, "layer": layer,
                               "origin": (ov, os_) if ov else None}

    def _padded(self, field, what):
        n = field.rstrip(b"\0")
        if b"\0" in n or (n and not valid_name(n)):
            corrupt("volumes", "%s: bad origin name field %r" % (what, field))
        return n

    def _snapshots(self, pairs):
        for k, v in pairs:
            parts = k.split(b"\0")
            if len(parts) != 2 or not all(valid_name(p) for p in parts):
                corrupt("snapshots", "bad key %r" % k)
            if len(v) != 32:
                corrupt("snapshots", "%r: value of %d bytes" % (k, len(v)))
            layer, epoch, size, created = struct.unpack("<QQQQ", v)
            what = "%s@%s" % (parts[0].decode(), parts[1].decode())
            if layer < 1:
                corrupt("snapshots", "%s: layer 0" % what)
            if epoch < 1 or epoch == HEAD:
                corrupt("snapshots", "%s: epoch %d" % (what, epoch))
            if size == 0:
                corrupt("snapshots", "%s: size 0" % what)
            self.snapshots[(parts[0], parts[1])] = {
                "layer": layer, "epoch": epoch, "size": size}

    # ---- "Layers, epochs and readers": the lookup ---------------------------

    def lookup(self, layer, idx, epoch):
        """Returns the chunk name at chunk index idx of (layer, epoch), or
        None for a hole."""
        seen = set()
        while True:
            if layer in seen:
                corrupt("layers", "parent cycle through layer %d" % layer)
            seen.add(layer)
            if layer not in self.layers:
                corrupt("layers", "layer %d does not exist" % layer)
            for e, val in self.map.get(layer, {}).get(idx, ()):
                if e <= epoch:
                    return val
            L = self.layers[layer]
            if L["parent"] == 0:
                return None
            layer, epoch = L["parent"], L["parent_epoch"]

    def chain_indices(self, layer):
        """Every chunk index any map entry of layer or its ancestors names."""
        out, seen = set(), set()
        while layer and layer not in seen and layer in self.layers:
            seen.add(layer)
            out.update(self.map.get(layer, {}).keys())
            layer = self.layers[layer]["parent"]
        return out

    # ---- "Invariants" ---------------------------------------------------------

    def check_invariants(self):
        if self.map_keys != self.epochs:
            extra = sorted(self.map_keys - self.epochs)[:3]
            missing = sorted(self.epochs - self.map_keys)[:3]
            corrupt("epochs", "map and epochs keys differ: map entries "
                    "without epochs key %s, epochs keys without map entry %s"
                    % (extra, missing))
        refs = {}
        for layer, idxs in self.map.items():
            if layer not in self.layers:
                corrupt("map", "entries for missing layer %d" % layer)
            for idx, entries in idxs.items():
                for e, val in entries:
                    if val is None:
                        continue
                    if val not in self.chunks:
                        corrupt("map", "(layer %d, index %d, epoch %d) names "
                                "chunk %s, not in chunks"
                                % (layer, idx, e, val.hex()))
                    refs[val] = refs.get(val, 0) + 1
        for name, c in self.chunks.items():
            if c["refs"] != refs.get(name, 0):
                corrupt("chunks", "chunk %s has refs %d but %d map entries "
                        "name it" % (name.hex(), c["refs"], refs.get(name, 0)))
        live = [c for c in self.chunks.values() if c["refs"] > 0]
        dead = [c for c in self.chunks.values() if c["refs"] == 0]
        want = {
            "stat_chunks": len(live),
            "stat_refs": sum(c["refs"] for c in live),
            "stat_stored": sum(REC_HDR + c["stored_len"] for c in live),
            "stat_dead_chunks": len(dead),
            "stat_dead_bytes": sum(REC_HDR + c["stored_len"] for c in dead),
        }
        for k, w in want.items():
            if self.meta.get(k, 0) != w:
                corrupt("meta", "%s is %d, the chunks database says %d"
                        % (k, self.meta.get(k, 0), w))
        if self.chunks and max(c["pack"] for c in self.chunks.values()) > \
                self.meta.get("next_pack", 0):
            corrupt("meta", "a chunk names a pack id above next_pack %d"
                    % self.meta.get("next_pack", 0))
        if self.layers and max(self.layers) > self.meta.get("next_layer", 0):
            corrupt("meta", "layer %d is above next_layer %d"
                    % (max(self.layers), self.meta.get("next_layer", 0)))

        # Readers: each snapshot, each child layer and each volume head.
        want = {}
        for name, v in self.volumes.items():
            want[(v["layer"], HEAD)] = want.get((v["layer"], HEAD), 0) + 1
            if v["layer"] not in self.layers:
                corrupt("volumes", "volume %s: layer %d does not exist"
                        % (name.decode(), v["layer"]))
            if v["origin"] and v["origin"][0] not in self.volumes:
                # Not stated by FORMAT.md either way; the origin may have
                # been removed or flattened.  Only check the names' syntax.
                pass
        for (vol, snap), s in self.snapshots.items():
            what = "%s@%s" % (vol.decode(), snap.decode())
            if vol not in self.volumes:
                corrupt("snapshots", "%s: no such volume" % what)
            if s["layer"] not in self.layers:
                corrupt("snapshots", "%s: layer %d does not exist"
                        % (what, s["layer"]))
            key = (s["layer"], s["epoch"])
            want[key] = want.get(key, 0) + 1
        for lid, L in self.layers.items():
            if L["parent"]:
                if L["parent"] not in self.layers:
                    corrupt("layers", "layer %d: parent %d does not exist"
                            % (lid, L["parent"]))
                key = (L["parent"], L["parent_epoch"])
                want[key] = want.get(key, 0) + 1
                self.lookup(lid, 0, HEAD)       # detects parent cycles
        for key, n in want.items():
            if self.readers.get(key, 0) != n:
                corrupt("readers", "(layer %d, epoch %s) has %d points "
                        "reading it but the readers count is %s"
                        % (key[0], "HEAD" if key[1] == HEAD else key[1], n,
                           self.readers.get(key)))
        for key, n in self.readers.items():
            if key not in want:
                corrupt("readers", "(layer %d, epoch %d) count %d but no "
                        "point reads it" % (key[0], key[1], n))
            if key[0] not in self.layers:
                corrupt("readers", "reader of missing layer %d" % key[0])
        for lid in self.layers:
            if not any(k[0] == lid for k in self.readers):
                corrupt("layers", "layer %d has no reader" % lid)
        for (lid, epoch), n in self.readers.items():
            if epoch != HEAD and epoch >= self.layers[lid]["epoch"]:
                corrupt("readers", "reader (layer %d, epoch %d) is not "
                        "below the layer's write epoch %d"
                        % (lid, epoch, self.layers[lid]["epoch"]))

    def check_point_size(self, layer, epoch, size):
        """Invariant: entries visible beyond ceil(size / chunk_size) are
        holes or absent."""
        n = -(-size // self.cs)
        for idx in sorted(self.chain_indices(layer)):
            if idx >= n and self.lookup(layer, idx, epoch) is not None:
                corrupt("map", "chunk index %d is data but the point's size "
                        "is %d (%d chunks)" % (idx, size, n))


# ---- Pack files ------------------------------------------------------------------

class Packs:
    def __init__(self, store, sb):
        self.dir = os.path.join(store, "data")
        self.sb = sb
        self.files = {}

    def open(self, pack_id):
        f = self.files.get(pack_id)
        if f:
            return f
        path = os.path.join(self.dir, "%08x.pack" % pack_id)
        try:
            f = open(path, "rb")
        except OSError as e:
            corrupt("Pack files", "pack %08x: %s" % (pack_id, e.strerror))
        h = f.read(64)
        what = "%s" % path
        if len(h) != 64:
            corrupt("Pack files", "%s: header is %d bytes" % (what, len(h)))
        if h[0:8] != b"VDISKPK1":
            corrupt("Pack files", "%s: bad magic %r" % (what, h[0:8]))
        crc, = struct.unpack_from("<I", h, 60)
        if crc32c(h[0:60]) != crc:
            corrupt("Pack files", "%s: header CRC-32C mismatch" % what)
        version, pid = struct.unpack_from("<II", h, 8)
        if version != 1:
            raise SpecError("unsupported format version %d (pack %s)"
                            % (version, path))
        if pid != pack_id:
            corrupt("Pack files", "%s: header says pack_id %d" % (what, pid))
        if h[16:32] != self.sb["uuid"]:
            corrupt("Pack files", "%s: uuid differs from the superblock's"
                    % what)
        if h[32:60] != bytes(28):
            corrupt("Pack files", "%s: reserved bytes not zero" % what)
        self.files[pack_id] = f
        return f

    def read_record(self, name, c):
        """Reads and checks the record of chunk name (index value c); returns
        (codec, payload)."""
        cs = self.sb["chunk_size"]
        f = self.open(c["pack"])
        what = chunk_what(name, c)
        f.seek(c["offset"])
        h = f.read(REC_HDR)
        if len(h) != REC_HDR:
            corrupt("Pack files", "%s: record header cut short by the end "
                    "of the file" % what)
        magic, codec = struct.unpack_from("<IB", h)
        slen, rlen = struct.unpack_from("<II", h, 8)
        if magic != REC_MAGIC:
            corrupt("Pack files", "%s: record magic %08x" % (what, magic))
        if codec != c["codec"] or codec not in (0, 1, 2):
            corrupt("Pack files", "%s: record codec %d, index says %d"
                    % (what, codec, c["codec"]))
        if h[5:8] != bytes(3):
            corrupt("Pack files", "%s: record reserved bytes not zero" % what)
        if slen != c["stored_len"]:
            corrupt("Pack files", "%s: record stored_len %d, index says %d"
                    % (what, slen, c["stored_len"]))
        if rlen != cs:
            corrupt("Pack files", "%s: record raw_len %d" % (what, rlen))
        if h[16:48] != name:
            corrupt("Pack files", "%s: record hash %s" % (what, h[16:48].hex()))
        payload = f.read(slen)
        if len(payload) != slen:
            corrupt("Pack files", "%s: payload cut short by the end of the "
                    "file" % what)
        if codec == 0 and slen != cs:
            corrupt("Pack files", "%s: raw payload of %d bytes" % (what, slen))
        if codec == 1 and zstd_frame_len(payload, what) != slen:
            corrupt("Pack files", "%s: payload is not exactly one zstd frame "
                    "(%d bytes of frame, %d stored)"
                    % (what, zstd_frame_len(payload, what), slen))
        if codec == 2:
            return codec, frame_table(payload, name, cs, what)
        return codec, payload

    def read_chunks(self, chunks):
        """chunks: {name: index value}.  Returns {name: raw bytes}, every
        chunk verified.  zstd payloads are decompressed by one zstd process
        for all of them (the frames concatenated); if that fails in any way,
        chunk by chunk, to name the bad one."""
        cs = self.sb["chunk_size"]
        raw, packed, framed = {}, [], []
        for name in sorted(chunks, key=lambda n: (chunks[n]["pack"],
                                                  chunks[n]["offset"])):
            codec, payload = self.read_record(name, chunks[name])
            if codec == 0:
                raw[name] = payload
            elif codec == 2:
                framed.append((name, payload))
            else:
                packed.append((name, payload))
        for name, data in decode_frames(framed, chunks):
            raw[name] = data
        if packed:
            ok, out = zstd_run(b"".join(p for _, p in packed))
            if ok and len(out) == cs * len(packed):
                for i, (name, _) in enumerate(packed):
                    raw[name] = out[i * cs:(i + 1) * cs]
            for name, payload in packed:
                if name in raw and sha256(raw[name]) == name:
                    continue
                what = chunk_what(name, chunks[name])
                ok, data = zstd_run(payload)
                if not ok:
                    corrupt("Pack files", "%s: zstd frame does not "
                            "decompress: %s" % (what, data))
                if len(data) != cs:
                    corrupt("Pack files", "%s: zstd frame decompresses to %d "
                            "bytes, not %d" % (what, len(data), cs))
                raw[name] = data
        for name, data in raw.items():
            what = chunk_what(name, chunks[name])
            if sha256(data) != name:
                corrupt("Pack files", "%s: SHA-256 of the raw bytes is %s"
                        % (what, sha256(data).hex()))
            if data == bytes(cs):
                corrupt("map", "%s is all zeroes (must be a hole)" % what)
        return raw


# ---- framed records (version 3) -------------------------------------------------

def framed_max_table(cs):
    """Most table bytes a framed payload can add: 4 KiB frames."""
    return 16 + 16 * (cs // 4096)


def xxh3(data, seed=0):
    try:
        import xxhash
    except ImportError:
        raise SpecError("reading framed records needs the xxhash module "
                        "(python3-xxhash)")
    return xxhash.xxh3_64_intdigest(data, seed=seed)


def frame_table(payload, name, cs, what):
    """Checks the frame table of framed payload (FORMAT.md "Pack files")
    and every frame's check; returns (frame_size, [(kind, stored bytes)])."""
    if len(payload) < 8:
        corrupt("Pack files", "%s: frame table cut short" % what)
    fsize, n = struct.unpack_from("<II", payload)
    if fsize < 4096 or fsize > cs or fsize & (fsize - 1) or n != cs // fsize:
        corrupt("Pack files", "%s: frame table says %d frames of %d bytes"
                % (what, n, fsize))
    tlen = 16 + 16 * n
    if len(payload) < tlen:
        corrupt("Pack files", "%s: frame table cut short" % what)
    check, = struct.unpack_from("<Q", payload, tlen - 8)
    if check != xxh3(payload[:tlen - 8],
                     struct.unpack_from("<Q", name)[0]):
        corrupt("Pack files", "%s: frame table check mismatch" % what)
    frames, pos = [], tlen
    for i in range(n):
        slen, kind = struct.unpack_from("<IB", payload, 8 + 16 * i)
        fcheck, = struct.unpack_from("<Q", payload, 16 + 16 * i)
        fw = "%s frame %d" % (what, i)
        if payload[13 + 16 * i:16 + 16 * i] != bytes(3):
            corrupt("Pack files", "%s: reserved bytes not zero" % fw)
        if kind not in (0, 1, 2) or \
                (kind == 0 and slen != fsize) or \
                (kind == 1 and not 0 < slen < fsize) or \
                (kind == 2 and slen != 0):
            corrupt("Pack files", "%s: kind %d with %d bytes" % (fw, kind,
                                                                 slen))
        body = payload[pos:pos + slen]
        if len(body) != slen:
            corrupt("Pack files", "%s: beyond the payload" % fw)
        if xxh3(body) != fcheck:
            corrupt("Pack files", "%s: check mismatch" % fw)
        if kind == 1 and zstd_frame_len(body, fw) != slen:
            corrupt("Pack files", "%s: not exactly one zstd frame" % fw)
        frames.append((kind, body))
        pos += slen
    if pos != len(payload):
        corrupt("Pack files", "%s: %d payload bytes after the last frame"
                % (what, len(payload) - pos))
    return fsize, frames


def decode_frames(framed, chunks):
    """framed: [(name, (frame_size, frames))].  Yields (name, raw bytes);
    the zstd frames of all chunks go through one zstd process (each
    decompresses to exactly frame_size bytes), one by one if that fails,
    to name the bad one."""
    zs = [(fsize, body) for _, (fsize, frames) in framed
          for kind, body in frames if kind == 1]
    ok, out = zstd_run(b"".join(b for _, b in zs)) if zs else (True, b"")
    if not ok or len(out) != sum(f for f, _ in zs):
        out = b""
        for fsize, body in zs:
            ok, data = zstd_run(body)
            if not ok or len(data) != fsize:
                corrupt("Pack files", "a zstd frame does not decompress to "
                        "%d bytes: %s" % (fsize, data if not ok else len(data)))
            out += data
    pos = 0
    for name, (fsize, frames) in framed:
        data = bytearray()
        for kind, body in frames:
            if kind == 0:
                data += body
            elif kind == 2:
                data += bytes(fsize)
            else:
                data += out[pos:pos + fsize]
                pos += fsize
        yield name, bytes(data)


def chunk_what(name, c):
    return "chunk %s (pack %08x offset %d)" % (name.hex(), c["pack"],
                                                c["offset"])


def sha256(data):
    return hashlib.sha256(data).digest()


def zstd_frame_len(payload, what):
    """Length of the zstd frame at the start of payload (RFC 8878 section
    3.1.1), walking its block headers, so that trailing bytes or a second
    frame are rejected: FORMAT.md says the payload is one frame."""
    if payload[0:4] != b"\x28\xb5\x2f\xfd":
        corrupt("Pack files", "%s: payload is not a zstd frame" % what)
    if len(payload) < 5:
        corrupt("Pack files", "%s: zstd frame cut short" % what)
    fhd = payload[4]
    fcs_flag, single, cksum, did_flag = fhd >> 6, fhd >> 5 & 1, fhd >> 2 & 1, \
        fhd & 3
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[did_flag] + \
        (1 if single else 0, 2, 4, 8)[fcs_flag]
    while True:
        if pos + 3 > len(payload):
            corrupt("Pack files", "%s: zstd frame cut short" % what)
        bh = int.from_bytes(payload[pos:pos + 3], "little")
        pos += 3 + (1 if (bh >> 1 & 3) == 1 else bh >> 3)
        if bh & 1:
            break
    return pos + 4 * cksum


def zstd_run(frames):
    """Decompresses with the zstd tool; returns (True, bytes) or (False,
    error message)."""
    try:
        p = subprocess.run(["zstd", "-d", "-c", "-q"], input=frames,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise SpecError("zstd is not installed (Debian package zstd)")
    if p.returncode != 0:
        return False, p.stderr.decode(errors="replace").strip()
    return True, p.stdout


def sb_version(index):
    return index.sb["version"]


# ---- the write journal (version 2) ---------------------------------------------

JREC = struct.Struct("<IHHQQQQ")   # magic kind reserved seq offset length check
JREC_MAGIC = 0x4a524456
JREC_WRITE, JREC_ZERO, JREC_CHUNK, JREC_EPOCH = 1, 2, 3, 4
JREC_DATA_MAX = 8 << 20
JCHUNK = struct.Struct("<32sIB3sQI4s")  # hash pack codec 0 offset stored_len 0


def jrec_data_len(kind, length):
    return length if kind == JREC_WRITE else JCHUNK.size if kind == JREC_CHUNK else 0


def journal_records(store, sb, vol, layer, top):
    """The journal records of head VOL (of LAYER, whose committed write
    epoch is TOP) that a reader applies, in order: the consecutive run of
    segments ending at the newest, valid records, up to the first invalid
    one of the newest segment.  Each is (offset, length, data, epoch), data
    None for a zero record, or for a chunk record ("chunk", name,
    index-like value of where it was stored); epoch is the one the last
    epoch marker before it set (TOP before any), markers newer than TOP
    being ignored (FORMAT.md "Epoch markers")."""
    try:
        import xxhash
    except ImportError:
        raise SpecError("reading a journal needs the xxhash module "
                        "(python3-xxhash)")
    d = os.path.join(store, "journal", vol.decode())
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    segs = sorted(int(n[:16], 16) for n in names
                  if len(n) == 20 and n.endswith(".jnl") and
                  all(c in "0123456789abcdef" for c in n[:16]) and
                  int(n[:16], 16) > 0)
    first = len(segs)
    while first > 0 and (first == len(segs) or segs[first - 1] + 1 == segs[first]):
        first -= 1
    out, last_seq, epoch = [], 0, top
    for i in range(first, len(segs)):
        newest = i + 1 == len(segs)
        path = os.path.join(d, "%016x.jnl" % segs[i])
        with open(path, "rb") as f:
            data = f.read()
        what = "journal segment %s" % path
        h = data[:64]
        if len(h) < 64 or h[0:8] != b"VDISKJN1" or \
                struct.unpack_from("<I", h, 60)[0] != crc32c(h[:60]):
            if newest:
                continue  # created, never synced
            corrupt("Journal", "%s: bad header" % what)
        version, = struct.unpack_from("<I", h, 8)
        hlayer, hseg = struct.unpack_from("<QQ", h, 32)
        if version != 1 or h[16:32] != sb["uuid"] or hseg != segs[i] or \
                h[12:16] != bytes(4) or h[48:60] != bytes(12) or hlayer == 0:
            if newest:
                continue
            corrupt("Journal", "%s: bad header fields" % what)
        if hlayer != layer:
            continue  # stale: an earlier life of the volume
        off = 64
        while off < len(data):
            ok = off + JREC.size <= len(data)
            if ok:
                magic, kind, res, seq, voff, length, check = \
                    JREC.unpack_from(data, off)
                ok = (magic == JREC_MAGIC and
                      (kind in (JREC_WRITE, JREC_ZERO) or
                       (kind == JREC_CHUNK and sb["version"] >= 4) or
                       (kind == JREC_EPOCH and sb["version"] >= 5))
                      and res == 0 and seq > last_seq and
                      (length > 0) == (kind != JREC_EPOCH) and
                      (kind != JREC_EPOCH or voff > 0) and
                      (kind != JREC_WRITE or length <= JREC_DATA_MAX) and
                      (kind != JREC_CHUNK or (length == sb["chunk_size"] and
                                              voff % length == 0)))
            if ok:
                dlen = jrec_data_len(kind, length)
                body = data[off + JREC.size:off + JREC.size + dlen]
                ok = len(body) == dlen and check == xxhash.xxh3_64_intdigest(
                    body, seed=xxhash.xxh3_64_intdigest(data[off:off + 32]))
            if not ok:
                if newest:
                    break  # the torn tail: never flushed
                corrupt("Journal", "%s: damaged record at offset %d"
                        % (what, off))
            if kind == JREC_EPOCH:
                if voff <= top:   # newer: its snapshot was never committed
                    epoch = voff
            elif kind == JREC_CHUNK:
                name, pack, codec, z1, poff, slen, z2 = JCHUNK.unpack(body)
                out.append((voff, length, ("chunk", name, {
                    "pack": pack, "codec": codec, "offset": poff,
                    "stored_len": slen, "ok": z1 == bytes(3) and
                    z2 == bytes(4) and slen > 0}), epoch))
            else:
                out.append((voff, length,
                            body if kind == JREC_WRITE else None, epoch))
            last_seq = seq
            off += JREC.size + dlen
    return out


# ---- main ---------------------------------------------------------------------

def read_point(store, point, out):
    sb = read_superblock(store)
    idx = Index(sb, load_index(store))
    idx.check_invariants()
    vol, _, snap = point.partition("@")
    vol, snap = vol.encode(), snap.encode() if snap else None
    if vol not in idx.volumes:
        raise SpecError("no such volume: %s" % vol.decode())
    if snap is None:
        v = idx.volumes[vol]
        layer, epoch, size = v["layer"], HEAD, v["size"]
    else:
        if (vol, snap) not in idx.snapshots:
            raise SpecError("no such snapshot: %s" % point)
        s = idx.snapshots[(vol, snap)]
        layer, epoch, size = s["layer"], s["epoch"], s["size"]
    idx.check_point_size(layer, epoch, size)
    packs = Packs(store, sb)
    cs = sb["chunk_size"]
    names = [idx.lookup(layer, i, epoch) for i in range(-(-size // cs))]
    data = packs.read_chunks({n: idx.chunks[n] for n in names if n})
    # A head's journal holds writes not yet in chunks: laid over them in
    # order (FORMAT.md "Write journal"); a snapshot of the head's layer
    # gets those of its epoch and before (FORMAT.md "Epoch markers").
    head = idx.volumes[vol]["layer"]
    records = [r for r in journal_records(store, sb, vol, head,
                                          idx.layers[head]["epoch"])
               if epoch == HEAD or r[3] <= epoch] if layer == head else []
    if records:
        image = bytearray(size)
        for i, name in enumerate(names):
            if name is not None:
                n = min(cs, size - i * cs)
                image[i * cs:i * cs + n] = data[name][:n]
        for off, length, body, _ in records:
            if isinstance(body, tuple):
                # A whole chunk written in place: its data is in a pack
                # file.  If it is not there (whole, matching its name) the
                # write was never flushed, nor anything after it: stop.
                _, name, c = body
                try:
                    if not c.pop("ok"):
                        break
                    body = packs.read_chunks({name: c})[name]
                except SpecError:
                    break
            if off >= size:
                continue
            n = min(length, size - off)
            image[off:off + n] = body[:n] if body is not None else bytes(n)
        out.write(image)
        return
    for i, name in enumerate(names):
        n = min(cs, size - i * cs)
        if name is None:
            if out.seekable():
                out.seek(n, os.SEEK_CUR)
            else:
                out.write(bytes(n))
            continue
        if data[name][n:] != bytes(cs - n):
            corrupt("Invariants", "chunk index %d: bytes beyond the size %d "
                    "are not zero" % (i, size))
        out.write(data[name][:n])
    if out.seekable():
        out.truncate(size)


def main(argv):
    if len(argv) != 4 or argv[1].startswith("-"):
        sys.stderr.write("usage: format-reader.py STORE VOL[@SNAP] OUTFILE\n")
        return 2
    store, point, outfile = argv[1:]
    try:
        if outfile == "-":
            read_point(store, point, sys.stdout.buffer)
            sys.stdout.flush()
        else:
            with open(outfile, "wb") as out:
                read_point(store, point, out)
    except SpecError as e:
        sys.stderr.write("format-reader: %s\n" % e)
        if outfile != "-":
            try:
                os.unlink(outfile)
            except OSError:
                pass
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
