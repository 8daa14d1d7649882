/* vdisk engine: the public API.
 *
 * This header is all that the CLI, the NBD server, the FUSE mount and the
 * runner include.  Nothing outside engine/ may use engine internals.
 *
 * Conventions
 *  - Every function returning int returns 0 (or a count) on success and a
 *    negative code on failure: -errno for OS failures, or one of the VD_E*
 *    codes below.  vd_strerror() describes both; vd_last_error() returns the
 *    message recorded by the failing call in this thread, with context
 *    ("vd_volume_open: volume 'vm1' is held for writing by vdisk serve
 *    (pid 1234)").  Every call clears it first, so it never describes an
 *    earlier failure.  vd_errno() turns any code into a positive errno for a
 *    front end.  The pure helpers (vd_strerror, vd_name_valid, vd_errno,
 *    vd_point_parse) leave the last error alone.
 *  - Names of volumes and snapshots are 1-64 characters of [A-Za-z0-9._-],
 *    not starting with '.' or '-'.  Anything else is VD_ENAME.  A point is
 *    "VOL" (a volume head) or "VOL@SNAP"; vd_point_parse() splits and
 *    checks that spelling for every front end.
 *  - Threads: a vd_store and the vd_volume handles opened from it may be used
 *    from any number of threads at once.  Reads of different chunks proceed
 *    in parallel.  A vd_volume must not be used after vd_volume_close().
 *  - Processes: any number of processes may open one store.  A volume head
 *    has one writer process at a time; vd_volume_open() elsewhere fails with
 *    VD_EBUSY naming the holder.  vd_snapshot_create() on a volume held by
 *    another process asks that process to take the snapshot, so it contains
 *    every write the holder acknowledged before the call.
 *  - Open the store after fork() or daemonizing, never before (LMDB rule).
 */
#ifndef VDISK_H
#define VDISK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The store format version (FORMAT.md) this library reads and writes: a
 * store of any other version fails to open with VD_EVERSION.  Equal to
 * FMT_VERSION in format/format.h (tests/unit/test-frontend.c checks). */
#define VD_FORMAT_VERSION 1u

/* vdisk's own error codes, in a band well clear of errno values. */
#define VD_ECORRUPT    (-32001) /* data or index failed verification */
#define VD_EVERSION    (-32002) /* store format version not supported */
#define VD_ENOTSTORE   (-32003) /* directory is not a vdisk store */
#define VD_ENOVOL      (-32004) /* no such volume */
#define VD_ENOSNAP     (-32005) /* no such snapshot */
#define VD_EEXIST      (-32006) /* a volume or snapshot of that name exists */
#define VD_EHASCLONES  (-32007) /* snapshot has clones depending on it */
#define VD_EBUSY       (-32008) /* volume or snapshot in use by another holder */
#define VD_EHASSNAPS   (-32009) /* volume has snapshots (use recursive rm) */
#define VD_ENAME       (-32010) /* invalid volume or snapshot name */
#define VD_EREADONLY   (-32011) /* write to a snapshot or read-only handle */
#define VD_ERANGE      (-32012) /* offset or length beyond the volume's end */
#define VD_ENOTCLONE   (-32013) /* flatten of a volume with no origin */
#define VD_ESHRINK     (-32014) /* resize would shrink without permission */

#define VD_NAME_MAX 64

/* Largest volume size (1 EiB): offsets plus lengths never overflow. */
#define VD_SIZE_MAX (1ull << 60)

/* Returns a static description of any code this API returns. */
const char *vd_strerror(int err);

/* Returns the message of the last failure in this thread ("" if none).
 * Valid until the next vd_* call in this thread. */
const char *vd_last_error(void);

/* True if NAME is a valid volume or snapshot name. */
int vd_name_valid(const char *name);

/* ---- helpers for front ends (engine/frontend.c) ------------------------- */

/* Maps ERR, any code this API returns, to the positive errno a front end
 * reports (an NBD error, a FUSE reply, a syscall's errno); 0 for ERR >= 0.
 *   -errno (-4095..-1)       that errno
 *   VD_ECORRUPT              EIO: the data cannot be given back
 *   VD_EVERSION              EPROTONOSUPPORT: a store format this build
 *                            does not speak (not ENOTSUP, which front ends
 *                            use for an unsupported operation)
 *   VD_ENOTSTORE             ENOTDIR: the path is not a store directory
 *                            (ENOENT stays for volumes and snapshots)
 *   VD_ENOVOL, VD_ENOSNAP    ENOENT
 *   VD_EEXIST                EEXIST
 *   VD_EHASCLONES,
 *   VD_EHASSNAPS             ENOTEMPTY: others still depend on it
 *   VD_EBUSY                 EBUSY
 *   VD_ENAME                 EINVAL
 *   VD_EREADONLY             EROFS
 *   VD_ERANGE                EINVAL: the request itself is out of bounds,
 *                            as for a read past the end.  Writes past the
 *                            end are often reported differently (NBD wants
 *                            ENOSPC, FUSE may prefer EFBIG): the front end
 *                            decides, by testing ERR == VD_ERANGE.
 *   VD_ENOTCLONE, VD_ESHRINK EINVAL: the operation does not apply
 *   anything else            EIO
 * Pure; thread-safe; does not touch vd_last_error().
 * Errors: none (it returns errno values, never fails). */
int vd_errno(int err);

/* A point parsed from "VOL" or "VOL@SNAP". */
struct vd_point {
	char vol[VD_NAME_MAX + 1];
	char snap[VD_NAME_MAX + 1]; /* "" for a volume head */
};

/* A WHY buffer of this size holds every reason vd_point_parse gives. */
#define VD_POINT_WHY_MAX 128

/* Splits SPEC ("VOL" or "VOL@SNAP") into OUT->vol and OUT->snap ("" when
 * there is no '@') and checks both names by the rules of vd_name_valid().
 * Whether a snapshot is required or forbidden is for the caller to check
 * (OUT->snap[0]).
 * On failure OUT holds two empty names and, if WHY is not NULL and WHYLEN
 * is not 0, WHY gets a NUL-terminated reason without the spec in it, for
 * the caller to put into context (truncated to WHYLEN; VD_POINT_WHY_MAX
 * always fits): "volume name is empty", "snapshot name is empty", "more
 * than one '@'", "volume name is longer than 64 characters", "snapshot
 * name starts with '.' (names may not start with '.' or '-')", "invalid
 * character ' ' in volume name (names use A-Z a-z 0-9 . _ -)".
 * SPEC NULL is treated as "".  Pure; thread-safe; does not touch
 * vd_last_error().
 * Errors: VD_ENAME. */
int vd_point_parse(const char *spec, struct vd_point *out, char *why,
		   size_t whylen);

/* ---- store -------------------------------------------------------------- */

typedef struct vd_store vd_store;

#define VD_CHUNK_MIN     4096u
#define VD_CHUNK_MAX     (1024u * 1024u)
#define VD_CHUNK_DEFAULT (64u * 1024u)

struct vd_store_options {
	/* Chunk size for a store created by this call (0: default).  Ignored
	 * when the store exists. */
	uint32_t chunk_size;
	/* 1: create the store if DIR is missing or an empty directory. */
	int create;
	/* Bytes of decompressed clean chunks cached in memory (0: default
	 * 256 MiB, or the environment variable VDISK_CACHE_MB). */
	uint64_t cache_bytes;
	/* Bound of the write-back cache of dirty (not yet sealed) chunks, per
	 * store handle (0: default 1 GiB, or VDISK_DIRTY_MB).  Writers wait
	 * while it is full; sealing starts at three quarters of it. */
	uint64_t dirty_bytes;
	/* Shown to other processes as the holder of volumes opened for writing
	 * ("vdisk serve"); NULL: the program name. */
	const char *holder;
};

/* Opens (and with opts->create, creates) the store in directory DIR.
 * OPTS may be NULL (open an existing store with defaults).
 * Errors: VD_ENOTSTORE (DIR exists, is not empty and is not a store, or is
 * missing and create is 0), VD_EVERSION, VD_ECORRUPT (damaged superblock),
 * -EINVAL (bad chunk size), -errno.  Free with vd_store_close(). */
int vd_store_open(const char *dir, const struct vd_store_options *opts,
		  vd_store **out);

/* Flushes and closes every volume still open, then the store.  NULL is
 * fine. */
void vd_store_close(vd_store *store);

/* Creates a store in DIR (missing or empty) with CHUNK_SIZE (a power of two
 * in [VD_CHUNK_MIN, VD_CHUNK_MAX]).  VD_EEXIST if DIR is already a store. */
int vd_store_init(const char *dir, uint32_t chunk_size);

struct vd_store_info {
	uint32_t format_version;
	uint32_t chunk_size;
	char uuid[37];
	uint64_t chunks;          /* unique chunks referenced */
	uint64_t chunk_refs;      /* references to them (map entries) */
	uint64_t stored_bytes;    /* compressed bytes of referenced chunks */
	uint64_t dead_chunks;     /* unreferenced chunks awaiting gc */
	uint64_t dead_bytes;
	uint64_t pack_files;
	uint64_t pack_bytes;      /* bytes in data files (on disk) */
	uint64_t index_bytes;     /* size of the LMDB file */
	double dedup_ratio;       /* chunk_refs / chunks (1.0 if none) */
	double compress_ratio;    /* chunks * chunk_size / stored_bytes */
};

int vd_store_info(vd_store *store, struct vd_store_info *out);

/* ---- volumes, snapshots, clones ----------------------------------------- */

/* Creates an empty (all-zero) volume of SIZE bytes (0 < SIZE <=
 * VD_SIZE_MAX; else -EINVAL). */
int vd_volume_create(vd_store *store, const char *vol, uint64_t size);

/* Removes VOL.  With snapshots it fails with VD_EHASSNAPS unless
 * RECURSIVE; if any snapshot has clones it fails with VD_EHASCLONES and
 * removes nothing (vd_last_error() names the clones).  VD_EBUSY if held. */
int vd_volume_remove(vd_store *store, const char *vol, int recursive);

/* Grows VOL to SIZE; shrinking needs ALLOW_SHRINK (else VD_ESHRINK). */
int vd_volume_resize(vd_store *store, const char *vol, uint64_t size,
		     int allow_shrink);

/* Freezes VOL's current contents as VOL@SNAP.  Instant: the cost does not
 * grow with the volume's size.  If VOL is open for writing in this or
 * another process, that holder takes the snapshot after sealing the writes
 * it has acknowledged. */
int vd_snapshot_create(vd_store *store, const char *vol, const char *snap);

/* Removes VOL@SNAP.  VD_EHASCLONES (naming them) if clones depend on it,
 * VD_EBUSY if it is open elsewhere. */
int vd_snapshot_remove(vd_store *store, const char *vol, const char *snap);

/* Creates NEWVOL, writable, starting as VOL@SNAP and sharing its chunks. */
int vd_clone_create(vd_store *store, const char *vol, const char *snap,
		    const char *newvol);

/* Returns VOL to the contents and size of VOL@SNAP; later snapshots stay. */
int vd_volume_rollback(vd_store *store, const char *vol, const char *snap);

/* Detaches clone VOL from its origin snapshot (VD_ENOTCLONE if it has
 * none).  Costs one index entry per allocated chunk; no data is copied. */
int vd_volume_flatten(vd_store *store, const char *vol);

/* ---- listing ------------------------------------------------------------ */

struct vd_info {
	char vol[VD_NAME_MAX + 1];
	char snap[VD_NAME_MAX + 1];        /* "" for a volume head */
	char origin_vol[VD_NAME_MAX + 1];  /* clone origin, "" if none */
	char origin_snap[VD_NAME_MAX + 1];
	uint64_t size;
	uint64_t created;         /* unix seconds */
	uint32_t snapshots;       /* for a volume head: how many it has */
	uint32_t clones;          /* for a snapshot: clones made from it */
	/* Filled only with VD_INFO_SPACE: */
	uint64_t written_bytes;   /* logical bytes in allocated chunks */
	uint64_t unique_bytes;    /* stored bytes that removal would free */
	/* Writer holding a volume head (pid 0 if none). */
	int holder_pid;
	char holder[64];
};

#define VD_INFO_SPACE 1u /* compute written_bytes/unique_bytes (scans map) */

/* Fills OUT for VOL (SNAP NULL) or VOL@SNAP. */
int vd_info_get(vd_store *store, const char *vol, const char *snap,
		unsigned flags, struct vd_info *out);

/* Calls CB for every volume and, after each volume, its snapshots in
 * creation order.  A non-zero return from CB stops the walk and is
 * returned. */
typedef int (*vd_info_fn)(void *opaque, const struct vd_info *info);
int vd_list(vd_store *store, unsigned flags, vd_info_fn cb, void *opaque);

/* Reports the byte ranges (chunk granularity, merged) whose contents differ
 * between point A (VOL_A@SNAP_A, SNAP_A may be NULL for the head) and point
 * B.  Ranges beyond the smaller size count as changed. */
typedef int (*vd_range_fn)(void *opaque, uint64_t off, uint64_t len);
int vd_diff(vd_store *store, const char *vol_a, const char *snap_a,
	    const char *vol_b, const char *snap_b, vd_range_fn cb,
	    void *opaque);

/* ---- I/O ---------------------------------------------------------------- */

typedef struct vd_volume vd_volume;

#define VD_OPEN_RDONLY 1u

/* Opens VOL (SNAP NULL: the head, writable unless VD_OPEN_RDONLY) or the
 * read-only snapshot VOL@SNAP.  In one process, opening the same point
 * twice returns handles sharing one cache.  Errors: VD_ENOVOL, VD_ENOSNAP,
 * VD_EBUSY (head held for writing by another process, named in
 * vd_last_error()).  Close with vd_volume_close(). */
int vd_volume_open(vd_store *store, const char *vol, const char *snap,
		   unsigned flags, vd_volume **out);

/* Flushes (if writable) and releases V.  Returns the flush status; the
 * handle is gone either way.  NULL is fine. */
int vd_volume_close(vd_volume *v);

uint64_t vd_volume_size(const vd_volume *v);
uint32_t vd_volume_chunk_size(const vd_volume *v);
int vd_volume_is_readonly(const vd_volume *v);

/* Reads LEN bytes at OFF into BUF.  Any alignment.  VD_ERANGE past the end,
 * VD_ECORRUPT if a chunk fails verification (other chunks stay readable). */
int vd_volume_pread(vd_volume *v, void *buf, size_t len, uint64_t off);

/* Writes LEN bytes at OFF.  Visible to every later read at once; durable
 * after the next successful vd_volume_flush(). */
int vd_volume_pwrite(vd_volume *v, const void *buf, size_t len, uint64_t off);

/* Makes [OFF, OFF+LEN) read as zeroes, freeing whole chunks (discard, trim
 * and write-zeroes are all this). */
int vd_volume_zero(vd_volume *v, uint64_t off, uint64_t len);

/* Makes every write acknowledged before it durable. */
int vd_volume_flush(vd_volume *v);

/* Reports allocation of [OFF, OFF+LEN) in runs: DATA (stored bytes, which
 * may still happen to be zero) or HOLE (reads as zeroes).  Runs are chunk
 * granular, clipped to the range, merged, and in order.  A non-zero return
 * from CB stops the walk and is returned. */
#define VD_EXTENT_DATA 0u
#define VD_EXTENT_HOLE 1u
typedef int (*vd_extent_fn)(void *opaque, uint64_t off, uint64_t len,
			    unsigned type);
int vd_volume_extents(vd_volume *v, uint64_t off, uint64_t len,
		      vd_extent_fn cb, void *opaque);

/* ---- maintenance -------------------------------------------------------- */

typedef void (*vd_progress_fn)(void *opaque, uint64_t done, uint64_t total);

/* Verifies every chunk (hash, record, refcount) and every index invariant.
 * Calls PROBLEM once per problem found with a one-line description.
 * Returns the number of problems (0: clean) or a negative error. */
typedef void (*vd_problem_fn)(void *opaque, const char *what);
int vd_store_check(vd_store *store, vd_progress_fn progress,
		   vd_problem_fn problem, void *opaque);

struct vd_gc_stats {
	uint64_t chunks_freed;    /* unreferenced chunks dropped */
	uint64_t chunks_moved;    /* live chunks copied out of sparse files */
	uint64_t files_removed;
	uint64_t bytes_before;    /* data-file bytes before and after */
	uint64_t bytes_after;
};

/* Drops unreferenced chunks and compacts data files that hold any. */
int vd_store_gc(vd_store *store, vd_progress_fn progress, void *opaque,
		struct vd_gc_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_H */
