/* vdisk engine: the public API.
 *
 * This header is all that the CLI, the NBD server, the FUSE mount and the
 * runner include.  Nothing outside engine/ may use engine internals.  It is
 * the whole contract: what every function does, what it returns, who owns
 * what and for how long, and what may run at the same time.  A function
 * whose comment lacks an "Errors:" line is a bug
 * (tests/test-engine-header-contract.sh fails).
 *
 * Errors
 *  - Every function returning int returns 0 (or a count) on success and a
 *    negative code on failure: -errno for OS failures, or one of the VD_E*
 *    codes below.  vd_strerror() describes both; vd_errno() turns either
 *    into a positive errno for a front end's wire or syscall.
 *  - The "Errors:" line of each function lists every code it can return.
 *    Four come from the LMDB index and can come from any call that reads
 *    or changes it: VD_ECORRUPT (LMDB reports corruption, or an index record
 *    is malformed or missing), -EAGAIN (LMDB's reader table is full: more
 *    than about a thousand transactions at once across processes), -ENOMEM
 *    and -EIO (LMDB failures that have no better code).  Calls that change
 *    the index add -ENOSPC and -EDQUOT (LMDB's map or one transaction is
 *    full, or the disk or the quota is).  "-errno (...)" names the system
 *    calls whose other failures come through unchanged.
 *  - vd_last_error() returns the message recorded by the failing call in
 *    this thread, with context ("vd_volume_open: 'vm1' is held for writing
 *    by vdisk serve (pid 1234)").  Calls that can fail clear it first, so it
 *    never describes an earlier call's failure; a success leaves it empty,
 *    and a failure always sets it (to vd_strerror()'s text when nothing
 *    more precise is known).  The pure helpers (vd_strerror, vd_last_error,
 *    vd_name_valid, vd_errno, vd_point_parse) and the handle accessors
 *    (vd_volume_size, vd_volume_chunk_size, vd_volume_is_readonly) leave it
 *    alone.
 *
 * Names
 *  - Names of volumes and snapshots are 1-64 characters of [A-Za-z0-9._-],
 *    not starting with '.' or '-'.  Anything else is VD_ENAME.  A point is
 *    a volume head "VOL" or a snapshot "VOL@SNAP"; vd_point_parse() splits
 *    and checks that spelling for every front end.
 *  - Where a function takes SNAP as "NULL for the head" (vd_volume_open,
 *    vd_info_get, vd_diff), NULL means the head.  Where a snapshot is
 *    required (vd_snapshot_create, vd_snapshot_remove, vd_clone_create,
 *    vd_volume_rollback), SNAP must not be NULL.  No other pointer argument
 *    may be NULL unless its comment says so.  Passing NULL anyway is a
 *    caller bug with no promised outcome: some calls return -EINVAL, others
 *    crash (NULL SNAP in the four above, in this engine).
 *
 * Threads
 *  - A vd_store and the vd_volume handles opened from it may be used from
 *    any number of threads at once, except vd_store_close(), which must not
 *    race any other call on that store or its handles, and
 *    vd_volume_close(), which must not race other calls on that handle.
 *    Reads of different chunks proceed in parallel.
 *  - Threads the engine starts: opening a volume head for writing (also the
 *    internal open of vd_volume_resize) starts, once per vd_store, a
 *    background sealer thread and a control thread listening on an abstract
 *    Unix socket "vdisk-<32 hex digits of the store uuid>-<pid>" (see
 *    vd_snapshot_create), and a background compactor thread (unless
 *    VDISK_COMPACT=off) that moves live chunks out of data files holding
 *    dead ones and removes those files.  They run until vd_store_close(),
 *    even after every volume is closed.  Sealing a batch of 8 or more chunks (flush, close,
 *    snapshot, background) hashes and compresses on one short-lived helper
 *    thread per online CPU but one (15 at most), all joined before the call
 *    returns.  The threads inherit the signal mask of the
 *    thread that opened the volume: a front end that handles signals in one
 *    thread (sigwait) should block them before that.  The engine installs
 *    no signal handlers, never forks, never exits and prints nothing.
 *  - The control socket accepts a connection from any process in the same
 *    network namespace (abstract sockets have no file permissions); all a
 *    peer can ask is a snapshot, with valid names, of a volume this process
 *    holds for writing.
 *  - Callbacks (vd_list, vd_diff, vd_volume_extents, vd_store_check,
 *    vd_store_gc) run in the calling thread before the call returns.  Their
 *    pointer arguments are valid only during the callback: copy what you
 *    keep.  A callback must not call vd_* functions that take this store or
 *    one of its handles (the pure helpers above are fine): the engine may
 *    hold an LMDB read transaction across the callback, the walk does not
 *    see changes made meanwhile, and the message of vd_last_error() is
 *    replaced.  (Today no engine lock is held across any callback, so such
 *    calls do not deadlock, but that is not promised.)  A callback must not
 *    leave by longjmp() or a C++ exception: the engine would leak a
 *    transaction and memory.  A non-zero return stops the walk and is
 *    returned as is (it may be positive).
 *
 * Processes
 *  - Any number of processes may open one store.  A volume head has one
 *    writer process at a time; vd_volume_open() elsewhere fails with
 *    VD_EBUSY naming the holder.  vd_snapshot_create() on a volume held by
 *    another process asks that process to take the snapshot, so it contains
 *    every write the holder acknowledged before the call.
 *  - Open a store once per process (LMDB keeps one environment per process;
 *    and a second vd_store of the same store cannot open a head for writing:
 *    its control socket name is taken, -EADDRINUSE).
 *  - Open the store after fork() or daemonizing, never before, and never
 *    use a vd_store inherited across fork() (LMDB rule).
 *
 * Memory and durability
 *  - The engine owns vd_store and vd_volume; free them with their close
 *    functions.  Everything else is caller memory: I/O fills or reads the
 *    caller's buffers, and no pointer the engine hands back points into the
 *    index after the call (vd_strerror strings are static; vd_last_error's
 *    is per thread).
 *  - Writes are acknowledged once they are in the volume head's write
 *    journal (STORE/journal/VOL/) and its write-back cache, visible to
 *    every later read in this process, and durable after the next
 *    successful vd_volume_flush(), which syncs the journal.  Chunks are
 *    sealed from the cache in the background and at close; a snapshot
 *    seals nothing (its writes are sealed later, at its epoch, and before
 *    anything reads, clones or removes it).
 *    A crash loses only unflushed writes; the next open of the head
 *    replays its journal.
 *
 * Environment (read by vd_store_open(); an option field set to non-zero
 * wins over its variable; values that are not a positive decimal integer
 * are ignored)
 *  - VDISK_CACHE_MB: MiB of decompressed clean chunks cached per store
 *    handle (default 96).
 *  - VDISK_DIRTY_MB: MiB of dirty (acknowledged, not yet sealed) chunk data
 *    per store handle before writers wait (default 8).  Past three
 *    quarters of it the coldest dirty chunks leave memory (their bytes are
 *    in the journal, and read back from it); chunks are sealed when a
 *    head's journal passes VDISK_JOURNAL_MB and at close (a snapshot's
 *    epoch also before the snapshot is first read).
 *  - VDISK_JOURNAL_MB: MiB of journal a volume head may hold before its
 *    dirty chunks are sealed (default 1024); writers wait past twice that.
 *    The journal is on disk: it costs no memory beyond the page cache.
 *  - Memory besides these bounds: a seal commits at most 4 MiB of chunks
 *    (their copies and compressed forms are in memory until it commits),
 *    at most 4 MiB of idle chunk buffers are kept for reuse, and the
 *    sealer thread hands freed memory back to the kernel (malloc_trim)
 *    after each seal and once a second while idle.  With the defaults, a
 *    process serving volumes stays within about the cache + 64-96 MiB of
 *    RSS whatever the write load (README "Memory").
 *  - VDISK_COMPACT: "off" disables the background compactor (space then
 *    comes back only with vd_store_gc); "aggressive" makes it start at any
 *    5% of dead bytes, poll every 10 ms and never sleep (for tests); unset
 *    or anything else: on, keeping the data files within 1.25 x the live
 *    bytes + 8 MiB when idle and 1.4 x + 8 MiB (plus the file being
 *    compacted and one seal batch) while writing (README, FORMAT.md "Reclaiming space").
 *  - VDISK_IO: "uring" reads the records of chunks missing from the cache
 *    in batches with io_uring (up to 16 per submission); anything else, or
 *    unset, uses pread(2).
 */
#ifndef VDISK_H
#define VDISK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this library and its API (`vdisk --version`, vdisk.pc). */
#define VD_VERSION_MAJOR 0
#define VD_VERSION_MINOR 2
#define VD_VERSION_PATCH 0
#define VD_VERSION_STRING "0.2.0"

/* The store format version (FORMAT.md) this library writes.  It also reads
 * version 1 and 2 stores, and upgrades one to version 3 the first time a
 * volume head of it is opened for writing (VD_OPEN_BULK aside); a store of
 * any other version fails to open
 * with VD_EVERSION.  Equal to FMT_VERSION in format/format.h
 * (tests/unit/test-frontend.c checks). */
#define VD_FORMAT_VERSION 5u

/* vdisk's own error codes, in a band well clear of errno values.  vd_errno()
 * gives the errno a front end reports for each. */
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

/* Returns a static, constant description of ERR: any code this API returns
 * (0 is "success"; -errno gives strerror's text; anything else "unknown
 * error").  Thread-safe.
 * Errors: none. */
const char *vd_strerror(int err);

/* Returns the message of the last failure in this thread ("" if none; see
 * Errors above for when it is meaningful).  The string belongs to the
 * engine and is valid until the next vd_* call in this thread.
 * Errors: none. */
const char *vd_last_error(void);

/* Returns 1 if NAME is a valid volume or snapshot name, else 0 (also for
 * NULL).  Pure; thread-safe.
 * Errors: none. */
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
	 * when the store exists, but it must still be valid (else -EINVAL). */
	uint32_t chunk_size;
	/* 1: create the store if DIR is missing or an empty directory (only DIR
	 * itself is created, not its parents). */
	int create;
	/* Bytes of memory for caching (0: default 96 MiB, or the environment
	 * variable VDISK_CACHE_MB): decompressed clean chunks, where stored
	 * chunks are, and the map of what the write journal holds (at most
	 * 3/4 of it; the chunks make room). */
	uint64_t cache_bytes;
	/* Bound of the write-back cache of dirty (not yet sealed) chunks, per
	 * store handle (0: default 8 MiB, or VDISK_DIRTY_MB).  Writers wait
	 * while it is full; past three quarters of it the coldest chunks
	 * leave memory for the journal, or are sealed. */
	uint64_t dirty_bytes;
	/* Shown to other processes as the holder of volumes opened for writing
	 * ("vdisk serve"); NULL: the program name.  Copied (63 bytes at most);
	 * need not outlive the call. */
	const char *holder;
};

/* Opens (and with opts->create, creates) the store in directory DIR.
 * OPTS may be NULL (open an existing store with defaults); it and DIR need
 * not outlive the call.  Reads VDISK_CACHE_MB, VDISK_DIRTY_MB and VDISK_IO
 * (see Environment above).  Starts no threads.  On success *OUT is the new
 * handle, to free with vd_store_close(); on failure *OUT is NULL.
 * Errors: -EINVAL (DIR NULL or empty; chunk size not a power of two in
 * [VD_CHUNK_MIN, VD_CHUNK_MAX]), VD_ENOTSTORE (DIR is not a directory, is
 * missing and create is 0, or is neither a store nor empty), VD_EVERSION
 * (superblock or index of another format version), VD_ECORRUPT (damaged or
 * short superblock, index disagreeing with it, LMDB corruption), -ENOMEM,
 * -ENAMETOOLONG (DIR longer than 4095 bytes), -EAGAIN, -EIO, -ENOSPC,
 * -EDQUOT, -errno (stat, mkdir, open, read of DIR and its files,
 * getrandom, LMDB's open: e.g. -EACCES). */
int vd_store_open(const char *dir, const struct vd_store_options *opts,
		  vd_store **out);

/* Seals and closes every volume handle still open (a failed seal leaves
 * those writes in the head's journal, for the next open), stops the sealer, compactor and control threads and the
 * control socket, and frees the store.  Every vd_volume opened from STORE
 * is invalid afterwards, even one the caller never closed: using it,
 * vd_volume_close() included, is undefined.  Must not race any other call
 * on STORE or its handles.  NULL is fine.
 * Errors: none (returns nothing; see vd_volume_flush to keep errors). */
void vd_store_close(vd_store *store);

/* Creates a store in DIR (missing or an empty directory) with CHUNK_SIZE (0
 * for VD_CHUNK_DEFAULT, else a power of two in [VD_CHUNK_MIN,
 * VD_CHUNK_MAX]), then closes it.
 * Errors: VD_EEXIST (DIR is already a store), and those of vd_store_open()
 * with create: -EINVAL, VD_ENOTSTORE, VD_EVERSION, VD_ECORRUPT, -ENOMEM,
 * -ENAMETOOLONG, -EAGAIN, -EIO, -ENOSPC, -EDQUOT, -errno. */
int vd_store_init(const char *dir, uint32_t chunk_size);

struct vd_store_info {
	uint32_t format_version;  /* of this store: 1 to VD_FORMAT_VERSION */
	uint32_t chunk_size;
	char uuid[37];            /* RFC 4122 text, with dashes */
	uint64_t chunks;          /* unique chunks referenced */
	uint64_t chunk_refs;      /* references to them (map entries) */
	uint64_t stored_bytes;    /* compressed bytes of referenced chunks */
	uint64_t dead_chunks;     /* unreferenced chunks awaiting gc */
	uint64_t dead_bytes;
	uint64_t pack_files;
	uint64_t pack_bytes;      /* disk blocks used by data files, in bytes */
	uint64_t index_bytes;     /* disk blocks used by the LMDB file */
	double dedup_ratio;       /* chunk_refs / chunks (1.0 if none) */
	double compress_ratio;    /* chunks * chunk_size / stored_bytes */
	/* Space reclamation (see VDISK_COMPACT): pack_bytes not holding
	 * referenced chunks (dead records, headers, rounding), which the
	 * background compactor or vd_store_gc can give back; and the data files
	 * compacted and the bytes that gave back, by either, over the store's
	 * life (0 for stores compacted only by older versions). */
	uint64_t reclaimable_bytes;
	uint64_t compacted_files;
	uint64_t compacted_bytes;
};

/* Fills OUT with the store's identity and space counters.  The counters
 * are those committed to the index (writes not yet sealed are not in
 * them); a counter that cannot be read, and a data directory that cannot be
 * listed, count as 0 rather than fail.  Cost: one read transaction plus a
 * listing of the data directory.
 * Errors: -EAGAIN, -ENOMEM, -EIO. */
int vd_store_info(vd_store *store, struct vd_store_info *out);

/* ---- volumes, snapshots, clones -----------------------------------------
 *
 * Each change below is one LMDB write transaction: it happens whole or not
 * at all, and is durable when the call returns.  Changes to a volume head
 * (remove, rollback, flatten) take the head's writer lock for the
 * duration, so they fail with VD_EBUSY while any process, this one
 * included, has the head open for writing or read-only (for resize, see
 * its comment).
 */

/* Creates an empty (all-zero) volume VOL of SIZE bytes (0 < SIZE <=
 * VD_SIZE_MAX).
 * Errors: VD_ENAME, -EINVAL (size), VD_EEXIST, VD_ECORRUPT, -ENOSPC,
 * -EDQUOT, -ENOMEM, -EIO. */
int vd_volume_create(vd_store *store, const char *vol, uint64_t size);

/* Removes VOL.  With snapshots it fails with VD_EHASSNAPS unless RECURSIVE
 * (then they go too); if any snapshot has clones it fails with
 * VD_EHASCLONES and removes nothing (vd_last_error() names the clones).
 * Errors: VD_ENAME, VD_ENOVOL, VD_EBUSY (the head, or with RECURSIVE a
 * snapshot, is open by any process), VD_EHASSNAPS, VD_EHASCLONES,
 * VD_ECORRUPT, -ENOSPC, -EDQUOT, -ENOMEM, -EIO, -errno (lock files in
 * STORE/locks). */
int vd_volume_remove(vd_store *store, const char *vol, int recursive);

/* Renames VOL, a volume without snapshots, to NEW_NAME, in one
 * transaction: other processes see VOL or NEW_NAME, never both or neither.
 * vdisk import loads a volume under a temporary name and renames it when
 * it is complete, so a killed import never leaves a half volume under the
 * name asked for.  A dead writer's journal is sealed first.
 * Errors: VD_ENAME, VD_ENOVOL, VD_EEXIST (NEW_NAME exists, or is VOL),
 * VD_EBUSY (VOL is open by any process), VD_EHASSNAPS, VD_ECORRUPT,
 * -ENOSPC, -EDQUOT, -ENOMEM, -EAGAIN, -EIO, -EADDRINUSE, -errno (lock files
 * in STORE/locks; journal replay). */
int vd_volume_rename(vd_store *store, const char *vol, const char *new_name);

/* Sets VOL's size to SIZE (0 < SIZE <= VD_SIZE_MAX); shrinking needs
 * ALLOW_SHRINK and zeroes the cut-off tail first (growing later shows
 * zeroes).  Opens the head for writing internally, which starts the sealer
 * and control threads if they are not running (see Threads).
 * Errors: VD_ENAME, -EINVAL (size), VD_EBUSY (VOL is open for writing in
 * this process, or open in another; read-only handles in this process do
 * not stop it: see vd_volume_size), VD_ENOVOL, VD_ESHRINK, VD_ECORRUPT,
 * -ENOSPC, -EDQUOT, -ENOMEM, -EAGAIN, -EIO, -EADDRINUSE, -errno (lock
 * files; data-file writes and syncs when shrinking; the control socket). */
int vd_volume_resize(vd_store *store, const char *vol, uint64_t size,
		     int allow_shrink);

/* Freezes VOL's current contents as VOL@SNAP.  Instant: the cost does not
 * grow with the volume's size nor with its unsealed writes.  If VOL is
 * open for writing in this process, writes wait only while an epoch
 * marker is appended to its journal (and synced) and the snapshot is
 * committed; what is unsealed is sealed later, each write at its own
 * epoch.  If another process holds it, that process is asked over its
 * control socket and does the same, and this call waits up to 120 seconds
 * for its answer.  SNAP must not be NULL.
 * Errors: VD_ENAME, VD_ENOVOL, VD_EEXIST, VD_EBUSY (VOL is locked by a
 * process that does not answer snapshot requests, e.g. one removing or
 * rolling it back), -EIO (the holder did not answer), VD_ECORRUPT,
 * -ENOSPC, -EDQUOT, -ENOMEM, -EAGAIN, -errno (lock files; the control
 * socket; the data-file writes of sealing), and any status the holding
 * process reports for its own attempt. */
int vd_snapshot_create(vd_store *store, const char *vol, const char *snap);

/* Removes VOL@SNAP.  Chunks only it referenced become dead (vd_store_gc
 * reclaims them).  SNAP must not be NULL.
 * Errors: VD_ENAME, VD_ENOVOL, VD_ENOSNAP, VD_EHASCLONES (naming them),
 * VD_EBUSY (the snapshot is open by vd_volume_open in any process, this one
 * included), VD_ECORRUPT, -ENOSPC, -EDQUOT, -ENOMEM, -EIO, -errno (lock
 * files). */
int vd_snapshot_remove(vd_store *store, const char *vol, const char *snap);

/* Creates NEWVOL, writable, starting as VOL@SNAP and sharing its chunks (no
 * data is copied).  SNAP must not be NULL: a head cannot be cloned, take a
 * snapshot first.
 * Errors: VD_ENAME, VD_ENOVOL, VD_ENOSNAP, VD_EEXIST (NEWVOL exists),
 * VD_ECORRUPT, -ENOSPC, -EDQUOT, -ENOMEM, -EIO. */
int vd_clone_create(vd_store *store, const char *vol, const char *snap,
		    const char *newvol);

/* Returns VOL to the contents and size of VOL@SNAP; later snapshots stay.
 * SNAP must not be NULL.
 * Errors: VD_ENAME, VD_EBUSY (VOL is open by any process), VD_ENOVOL,
 * VD_ENOSNAP, VD_ECORRUPT, -ENOSPC, -EDQUOT, -ENOMEM, -EIO, -errno (lock
 * files). */
int vd_volume_rollback(vd_store *store, const char *vol, const char *snap);

/* Detaches clone VOL from its origin snapshot.  Costs one index entry per
 * allocated chunk, all in one transaction; no data is copied.  A very large
 * clone can exceed what one LMDB transaction may change (-ENOSPC).
 * Errors: VD_ENAME, VD_EBUSY (VOL is open by any process), VD_ENOVOL,
 * VD_ENOTCLONE, VD_ECORRUPT, -ENOSPC, -EDQUOT, -ENOMEM, -EIO, -errno
 * (lock files). */
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

/* Fills OUT (caller memory) for VOL (SNAP NULL) or VOL@SNAP, as committed
 * to the index: writes a holder has not sealed yet do not count.  Without
 * VD_INFO_SPACE the cost does not grow with the volume; with it, it scans
 * the point's map.
 * Errors: VD_ENAME, VD_ENOVOL, VD_ENOSNAP, VD_ECORRUPT, -ENOMEM, -EAGAIN,
 * -EIO. */
int vd_info_get(vd_store *store, const char *vol, const char *snap,
		unsigned flags, struct vd_info *out);

/* Callback of vd_list(): INFO (engine memory) is valid only during the
 * call.  Return 0 to go on. */
typedef int (*vd_info_fn)(void *opaque, const struct vd_info *info);

/* Calls CB for every volume (in byte order of the names) and, after each
 * volume, its snapshots in creation order, as of one consistent view of the
 * index taken when the call starts (an LMDB read transaction held until it
 * returns, across the callbacks).  FLAGS as for vd_info_get.  See Threads
 * for what CB may do.
 * Errors: VD_ECORRUPT, -ENOMEM, -EAGAIN, -EIO, or CB's non-zero return. */
int vd_list(vd_store *store, unsigned flags, vd_info_fn cb, void *opaque);

/* Callback of vd_diff(): one changed range.  Return 0 to go on. */
typedef int (*vd_range_fn)(void *opaque, uint64_t off, uint64_t len);

/* Reports the byte ranges (chunk granularity, merged, in order) whose
 * contents differ between point A (VOL_A@SNAP_A, SNAP_A NULL for the head)
 * and point B, as committed to the index, through CB while holding one read
 * transaction.  Ranges beyond the smaller size count as changed.  A head
 * this process holds for writing is sealed first, and one whose writer
 * died has its journal replayed first, so a head compares as every write
 * acknowledged to it.
 * Errors: VD_ENAME, VD_ENOVOL, VD_ENOSNAP, VD_EBUSY (a head named is held
 * for writing by another process: diff a snapshot of it), VD_ECORRUPT,
 * -ENOMEM, -EAGAIN, -EIO, or CB's non-zero return. */
int vd_diff(vd_store *store, const char *vol_a, const char *snap_a,
	    const char *vol_b, const char *snap_b, vd_range_fn cb,
	    void *opaque);

/* ---- I/O ---------------------------------------------------------------- */

typedef struct vd_volume vd_volume;

#define VD_OPEN_RDONLY 1u
/* A writable head for a bulk load that flushes once, at the end (vdisk
 * import): writes skip the journal, so each byte is written once instead
 * of twice, and vd_volume_flush() seals everything written so far (hash,
 * compress, sync the data files, commit), which is what makes it durable.
 * A crash loses what was written since the last flush.  Its chunks'
 * frames are compressed at a higher zstd level (smaller, as quick to
 * read).  In one process
 * the first open of a head decides; later opens share its handle. */
#define VD_OPEN_BULK 2u

/* Opens VOL (SNAP NULL: the head, writable unless VD_OPEN_RDONLY) or the
 * read-only snapshot VOL@SNAP, and sets *OUT (NULL on failure).
 *  - A writable head takes the head's exclusive process lock: it fails
 *    with VD_EBUSY while another process has the head open (either way) or
 *    is changing it.  The first writable open of a vd_store starts the
 *    sealer and control threads (see Threads).
 *  - A read-only head or a snapshot takes a shared lock: VD_EBUSY only while
 *    another process writes or changes the head (for a snapshot: while it
 *    is being removed).  A read-only head sees what is sealed (after
 *    replaying the journal a dead writer left, which takes the head's
 *    exclusive lock for that moment); if this process later opens the
 *    same head for writing, the read-only handle reads through the writer
 *    and so sees its acknowledged writes.
 *  - A writable open replays the head's journal, if a writer died with
 *    writes in it, and seals them before it returns: VD_ECORRUPT if a
 *    synced journal segment is damaged.
 *  - In one process, opening the same point again returns the same handle
 *    (or, read-only onto a head this process writes, a handle reading
 *    through the writer), counted: each successful open needs its own
 *    vd_volume_close(), and the caller must not use the handle after its
 *    own close even if another open returned the same pointer.
 * The handle is valid until vd_volume_close() or vd_store_close().
 * Errors: VD_ENAME, VD_ENOVOL, VD_ENOSNAP, VD_EBUSY (named in
 * vd_last_error()), VD_ECORRUPT, -ENOMEM, -EAGAIN, -EIO, -EADDRINUSE
 * (writable: another vd_store of this store in this process owns the
 * control socket name), -errno (lock file open and flock; socket, bind and
 * listen of the control socket; pthread_create). */
int vd_volume_open(vd_store *store, const char *vol, const char *snap,
		   unsigned flags, vd_volume **out);

/* Seals V's writes (if writable) and drops this reference; the last one
 * releases the handle and its lock and, everything being sealed, removes
 * the head's journal.  Returns the seal status; the caller's reference is
 * gone either way.  If sealing fails on the last reference, it is retried
 * once; writes still unsealed stay in the journal (durable if they were
 * flushed) and the next open of the head replays them.  Must not race
 * other calls on V.  NULL is fine.
 * Errors: -ENOSPC, -EDQUOT, -EIO (data-file and index writes and syncs),
 * VD_ECORRUPT, -ENOMEM, -EAGAIN, -errno. */
int vd_volume_close(vd_volume *v);

/* V's size in bytes when it was opened.  Other processes cannot resize a
 * head while it is open; in this process, vd_volume_resize() succeeds while
 * only read-only handles of the head are open, and those keep the old
 * size (and keep the head locked for writing until they close).
 * Errors: none. */
uint64_t vd_volume_size(const vd_volume *v);

/* The store's chunk size: the unit of allocation, extents and diff.
 * Errors: none. */
uint32_t vd_volume_chunk_size(const vd_volume *v);

/* 1 if V is a snapshot or a head opened with VD_OPEN_RDONLY, else 0.
 * Errors: none. */
int vd_volume_is_readonly(const vd_volume *v);

/* Reads LEN bytes at OFF into BUF.  Any alignment.  A writable head reads
 * its own acknowledged writes.  Other chunks stay readable when one fails;
 * on failure BUF may be partly filled.
 * Errors: VD_ERANGE (past the end), VD_ECORRUPT (a chunk failed
 * verification, or its record is short or its data file gone), -ENOMEM,
 * -EAGAIN, -EIO, -errno (open and read of data files; io_uring). */
int vd_volume_pread(vd_volume *v, void *buf, size_t len, uint64_t off);

/* Writes LEN bytes at OFF.  Visible to every later read at once; durable
 * after the next successful vd_volume_flush().  Writes covering part of a
 * chunk that are not 4 KiB aligned (in a store of 4 KiB chunks: every
 * partial write) read the stored chunk first.  Waits
 * while the store's write-back cache is full (VDISK_DIRTY_MB) until the
 * sealer makes room, and while the head's journal is past 2 GiB until the
 * sealer shrinks it; if sealing keeps failing (disk full, a corrupt chunk)
 * that wait does not end.  The write is appended to the head's journal
 * first; on failure after that, a prefix of the range (whole chunks before
 * the failing one) may read as written now, and all of it after a crash.
 * Errors: VD_EREADONLY, VD_ERANGE, VD_ECORRUPT (the stored chunk that an
 * unaligned write patches failed verification), -ENOSPC, -EDQUOT, -EIO
 * (appending to the journal), -ENOMEM, -EAGAIN, -errno (reading the stored
 * chunk; creating a journal segment). */
int vd_volume_pwrite(vd_volume *v, const void *buf, size_t len, uint64_t off);

/* Makes [OFF, OFF+LEN) read as zeroes, freeing whole chunks (discard, trim
 * and write-zeroes are all this).  Partial chunks at either end are
 * written with zeroes, as vd_volume_pwrite would, and so may read the
 * stored chunk; waits and partial failure as for vd_volume_pwrite.
 * Errors: VD_EREADONLY, VD_ERANGE, VD_ECORRUPT, -ENOMEM, -EAGAIN, -EIO,
 * -errno (reading the stored chunk). */
int vd_volume_zero(vd_volume *v, uint64_t off, uint64_t len);

/* Makes every write acknowledged on V before the call durable: one
 * fdatasync of the head's write journal, shared with the flushes of other
 * threads waiting at the time (group commit).  It seals no chunks.  A
 * read-only handle has nothing to flush and returns 0, except one reading
 * through this process's writer, which flushes that writer.  On failure
 * nothing is lost from memory; the flush can be retried.
 * Errors: -ENOSPC, -EDQUOT, -EIO (journal sync), -errno. */
int vd_volume_flush(vd_volume *v);

/* Extent types of vd_volume_extents(). */
#define VD_EXTENT_DATA 0u
#define VD_EXTENT_HOLE 1u

/* Callback of vd_volume_extents(): one run.  Return 0 to go on. */
typedef int (*vd_extent_fn)(void *opaque, uint64_t off, uint64_t len,
			    unsigned type);

/* Reports allocation of [OFF, OFF+LEN) in runs: DATA (stored bytes, which
 * may still happen to be zero) or HOLE (reads as zeroes).  Runs are chunk
 * granular, clipped to the range, merged, in order, and cover the range;
 * LEN 0 calls CB never.  A writable head reports its acknowledged writes.
 * CB runs with a read transaction open (see Threads).
 * Errors: VD_ERANGE, VD_ECORRUPT, -ENOMEM, -EAGAIN, -EIO, or CB's non-zero
 * return. */
int vd_volume_extents(vd_volume *v, uint64_t off, uint64_t len,
		      vd_extent_fn cb, void *opaque);

/* ---- maintenance -------------------------------------------------------- */

/* Progress of vd_store_check (chunks verified) and vd_store_gc (data files
 * visited): DONE of TOTAL (TOTAL may be 0). */
typedef void (*vd_progress_fn)(void *opaque, uint64_t done, uint64_t total);

/* One problem found by vd_store_check: WHAT, a one-line description, is
 * valid only during the call. */
typedef void (*vd_problem_fn)(void *opaque, const char *what);

/* Verifies every chunk (hash, record, refcount) and every index invariant
 * on one consistent view of the index (a read transaction held throughout,
 * across the callbacks), and reads every volume head's journal as a replay
 * would (damage in a synced segment is a problem); writers may go on
 * meanwhile.  Calls PROBLEM once
 * per problem found; PROGRESS and PROBLEM may be NULL.  Damage is reported
 * through PROBLEM and the count, not as an error.
 * Returns the number of problems (0: clean) or a negative error.
 * Errors: -ENOMEM (also when a cursor cannot be opened), VD_ECORRUPT (LMDB
 * cannot walk the map), -EAGAIN, -EIO, -errno (reading journal files). */
int vd_store_check(vd_store *store, vd_progress_fn progress,
		   vd_problem_fn problem, void *opaque);

struct vd_gc_stats {
	uint64_t chunks_freed;    /* unreferenced chunks dropped */
	uint64_t chunks_moved;    /* live chunks copied out of sparse files */
	uint64_t files_removed;
	uint64_t bytes_before;    /* data-file bytes before and after */
	uint64_t bytes_after;
};

/* Drops unreferenced chunks, then compacts data files that hold dead
 * records: copies their live chunks to the current data file, repoints the
 * index, and removes them: a full pass now (the background compactor, see
 * VDISK_COMPACT, does the same incrementally).  Files another process is appending to are
 * skipped, and so are records that fail verification (with their file, for
 * vd_store_check to report).  Runs alongside readers and writers in any
 * process.  PROGRESS may be NULL and is called with no lock or transaction
 * held; OUT may be NULL.
 * Errors: -ENOSPC, -EDQUOT, -EIO, VD_ECORRUPT, -ENOMEM, -EAGAIN, -errno
 * (listing, creating, writing, syncing and removing data files). */
int vd_store_gc(vd_store *store, vd_progress_fn progress, void *opaque,
		struct vd_gc_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_H */
