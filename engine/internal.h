/* vdisk engine internals, grouped by the source file that defines them.
 * Nothing outside engine/ includes this header.
 *
 * Modules, in one downward order: each file calls only the files listed
 * below it (tests/test-engine-layering.sh checks this), and each LMDB
 * database has one owner, the only file that touches it.
 *
 *   api.c      the public vd_* entry points: check arguments, name the call
 *              in error messages, call one internal function
 *   store.c    store lifecycle: open, create, close, info
 *   check.c    vd_store_check: verify everything
 *   gc.c       vd_store_gc: drop dead chunks, compact pack files
 *   query.c    info, list, diff
 *   admin.c    create, snapshot, clone, remove, rollback, flatten, resize
 *   volume.c   volume handles: open/close, read/write/zero/extents/flush,
 *              snapshots of open heads, the background sealer thread
 *   seal.c     sealing a head's dirty chunks into the store
 *   compact.c  compacting one pack file (for gc too); the background
 *              compactor thread that reclaims space incrementally
 *   dirty.c    a head's dirty chunks (the write-back cache) and views
 *   journal.c  a head's write journal: append, group commit, replay, trim
 *   control.c  the control socket: snapshot requests between processes
 *   catalog.c  DBs "volumes" and "snapshots"; resolving a point
 *   layer.c    DBs "map", "epochs", "layers", "readers"; chains
 *   chunk.c    DB "chunks": naming, compression, references, verified loads
 *   pack.c     pack files (append-only chunk records)
 *   cache.c    the clean-chunk cache and the chunk buffer pool
 *   lock.c     process locks (lock files)
 *   superblock.c  STORE/vdisk.sb: read, create, upgrade to version 3
 *   index.c    the LMDB environment, transactions, DB "meta" and counters
 *   error.c    error codes and the per-thread error message
 *   frontend.c vd_point_parse, vd_errno: pure helpers for the front ends
 *   common/, format/   short I/O, vectors, hex; on-disk codecs (no state)
 *
 * vd_store_close (store.c) closes what volume.c opened (and stops the
 * compactor that volume.c starts); volume.c starts the
 * control socket with a handler of its own, so control.c never calls up.
 */
#ifndef VDISK_INTERNAL_H
#define VDISK_INTERNAL_H

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>
#include <lmdb.h>

#include "common/vector.h"
#include "engine/vdisk.h"
#include "format/format.h"

#define DIV_ROUND_UP(a, b) (((a) + (b) - 1) / (b))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

static inline uint64_t now_seconds(void)
{
	return (uint64_t)time(NULL);
}

DEFINE_VECTOR(u32_vec, uint32_t);

/* ---- the store handle ---------------------------------------------------
 * Fields are grouped by the module that owns them; others go through that
 * module's functions. */

struct pack_writer {
	int fd;           /* -1 until the first append */
	uint32_t id;
	uint64_t size;    /* append offset */
	/* Syncs run without st_pack_lock (pack_sync_start/finish): GEN
	 * counts appends and new files, SYNCED_GEN (atomic) is the newest
	 * GEN known durable, DIR_SYNCED (atomic) the newest pack id whose
	 * directory entry is. */
	uint64_t gen;
	uint64_t synced_gen;
	uint64_t dir_synced;
	uint64_t wb_from; /* writeback not yet started from here */
	/* The file pack_roll closed without syncing it (0: none, atomic):
	 * every pack_sync_* syncs it too, the first to finish clears it. */
	uint32_t rolled_id;
	uint64_t spare_next, spare_end; /* pack ids drawn, not yet used */
	uint64_t appended; /* bytes appended by this handle, ever */
	/* Large appends bypass the page cache (pack_appendv): the same file
	 * opened O_DIRECT (-1: not yet, or the file system refuses it), and
	 * an aligned buffer the records are gathered in. */
	int dfd;
	bool no_direct;
	uint8_t *stage;
	size_t stage_size;
};

struct chunk_cache;
struct vd_volume;

struct vd_store {
	/* store.c; superblock.c (under st_sb_lock once open) */
	char *st_dir;
	int st_dirfd;
	uint32_t st_version;     /* the superblock's format version */
	pthread_mutex_t st_sb_lock;
	uint32_t st_chunk_size;
	uint8_t st_uuid[16];
	char st_holder[64];
	uint64_t st_cache_bytes;
	uint64_t st_dirty_max;   /* dirty bytes at which writers wait */
	uint64_t st_journal_high; /* a head's journal bytes that start sealing */
	/* Bytes of the in-memory map of what journals hold (the entries whose
	 * data is only there, and their piece lists) at which writers wait. */
	uint64_t st_piece_max;
	bool st_uring;           /* batch record reads with io_uring */
	bool st_seal_frozen;     /* the sealer seals what snapshots froze */

	/* index.c opens the environment and the handles; each handle is used
	 * only by its database's owner. */
	MDB_env *st_env;
	MDB_dbi st_meta;                      /* index.c */
	MDB_dbi st_chunks;                    /* chunk.c */
	MDB_dbi st_map, st_epochs, st_layers, st_readers; /* layer.c */
	MDB_dbi st_volumes, st_snapshots;     /* catalog.c */

	/* pack.c: appends and the LMDB write transactions that reference
	 * them; read descriptors indexed by pack id. */
	pthread_mutex_t st_pack_lock;
	struct pack_writer st_writer;
	pthread_rwlock_t st_fd_lock;
	int *st_fds;
	int *st_rfds; /* second descriptors, without readahead (pack_read_random) */
	uint32_t st_nfds;
	uint32_t st_nrfds; /* open descriptors in st_rfds */
	/* Reads in flight (pack_read_begin); descriptors of removed packs wait
	 * in st_fd_dead (under st_fd_lock) until there are none. */
	uint64_t st_fd_readers;
	int *st_fd_dead;
	size_t st_fd_ndead;

	struct chunk_cache *st_cache;         /* cache.c */
	struct chunk_locs *st_locs;           /* chunk.c, made on first use */
	/* chunk.c: bytes of chunks stored in place that the index does not
	 * name yet (atomic; an estimate for the compactor, not dead space). */
	uint64_t st_unindexed;

	/* volume.c: open handles of this process, shared by (vol, snap). */
	pthread_mutex_t st_vol_lock;
	pthread_cond_t st_vol_cond;   /* a pin was dropped */
	struct vd_volume *st_vols;

	/* dirty.c counts dirty bytes; volume.c runs the sealer thread. */
	pthread_mutex_t st_dirty_lock;
	pthread_cond_t st_dirty_cond;   /* dirty bytes fell, or work to do */
	uint64_t st_dirty_bytes;
	uint64_t st_piece_bytes;
	uint64_t st_piece_charged;      /* to the cache: cache_reserve */
	unsigned st_throttled;          /* writers waiting in dirty_throttle */
	bool st_sealer_stop;
	bool st_sealer_started;
	pthread_t st_sealer;

	/* compact.c: the background compactor (under st_compact_lock). */
	pthread_mutex_t st_compact_lock;
	pthread_cond_t st_compact_cond;  /* stop requested */
	pthread_cond_t st_compact_eased; /* st_compact_over went false */
	bool st_compact_stop;
	bool st_compact_started;
	bool st_compact_over;            /* past the hard bound: seals wait */
	/* The last measure: pack bytes, live bytes, pack_appended(). */
	uint64_t st_compact_disk, st_compact_live, st_compact_app;
	uint64_t st_compact_hard;        /* seals wait past this estimate */
	uint64_t st_compact_seal_ms;     /* the last compact_wait (ms) */
	pthread_t st_compact_thread;

	/* control.c */
	pthread_mutex_t st_ctl_lock;
	int st_ctl_fd;
	bool st_ctl_started;
	pthread_t st_ctl_thread;
	int (*st_ctl_snapshot)(vd_store *s, const char *vol, const char *snap);
	int (*st_ctl_settle)(vd_store *s, const char *vol, const char *snap);
};

/* ---- error.c ------------------------------------------------------------ */

/* Records "CALL: message" as this thread's last error, CALL being the
 * public call under way (else FUNC), and returns ERR. */
int err_set(int err, const char *func, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#define SET_ERROR(err, ...) err_set((err), __func__, __VA_ARGS__)
/* Maps an LMDB return code to a vdisk code. */
int err_from_mdb(int rc);
/* SET_ERROR for a failed LMDB call on WHAT. */
int err_mdb(int rc, const char *what);
/* Starts a public call: clears the last error and names API in the
 * messages set until the call ends. */
void err_begin(const char *api);
#define API_BEGIN() err_begin(__func__)
/* Ends a public call returning R: a failure that set no message gets one
 * (vd_strerror's), so every failure explains itself; a success clears it. */
int err_end(int r);
/* The last message without its "CALL: " prefix. */
const char *err_detail(void);

/* ---- index.c ------------------------------------------------------------ */

/* Opens STORE/index.mdb with every database, creating the meta records of
 * a new store; checks the format and chunk size against the superblock. */
int index_open(vd_store *s);
void index_close(vd_store *s);
/* Bytes the index file occupies on disk. */
uint64_t index_disk_bytes(vd_store *s);

/* The store counters kept in DB "meta". */
struct store_stats {
	int64_t chunks, refs, stored, dead_chunks, dead_bytes;
	int64_t compact_packs, compact_bytes;  /* compacted by gc or compact.c */
};

/* A write transaction with its counter changes. */
struct wtxn {
	MDB_txn *txn;
	struct store_stats d;
};

int wtxn_begin(vd_store *s, struct wtxn *w);
/* Applies the counter deltas, then commits (durably). */
int wtxn_commit(vd_store *s, struct wtxn *w);
void wtxn_abort(struct wtxn *w);
int rtxn_begin(vd_store *s, MDB_txn **txn);
void rtxn_end(MDB_txn *txn);   /* NULL is fine */

int meta_get_u64(vd_store *s, MDB_txn *txn, const char *key, uint64_t *val);
int meta_put_u64(vd_store *s, MDB_txn *txn, const char *key, uint64_t val);
/* Returns the next value of counter KEY (starting at 1) and stores it. */
int meta_next_id(vd_store *s, MDB_txn *txn, const char *key, uint64_t *id);
/* Reads the counters; missing ones read as 0.  *PRESENT (may be NULL)
 * gets a bit per counter found, in field order. */
int stats_read(vd_store *s, MDB_txn *txn, struct store_stats *out,
	       unsigned *present);

/* ---- superblock.c ------------------------------------------------------- */

/* Creates STORE/vdisk.sb in DIRFD (if another process created one first,
 * that one stands). */
int sb_create(int dirfd, uint32_t chunk_size);
/* Reads and checks the superblock into S (st_version, st_chunk_size,
 * st_uuid); -ENOENT if there is none. */
int sb_read(vd_store *s);
/* Makes a version 1 or 2 store version 3 (superblock, then DB "meta"); a
 * no-op for a version 3 store. */
int sb_upgrade(vd_store *s);

/* ---- lock.c ------------------------------------------------------------- */

/* Process locks in STORE/locks/, one per point: "VOL" for a head,
 * "VOL@SNAP" for a snapshot.  lock_acquire returns an fd (>= 0) holding an
 * flock on the lock file of NAME, or VD_EBUSY with the holder named. */
int lock_acquire(vd_store *s, const char *name, bool exclusive,
		 bool write_holder);
void lock_release(int fd);
/* Records this process as the holder in lock file FD. */
int lock_write_holder(vd_store *s, int fd);
/* Fills PID and HOLDER from the lock file of NAME if someone holds it
 * exclusively; returns 1 if held, 0 if free. */
int lock_holder(vd_store *s, const char *name, int *pid, char *holder,
		size_t holder_len);
/* Removes the lock file of a point that no longer exists. */
void lock_unlink(vd_store *s, const char *name);
/* "VOL" or "VOL@SNAP" (SNAP NULL or ""). */
#define LOCK_NAME_MAX (2 * VD_NAME_MAX + 2)
void lock_name(char out[LOCK_NAME_MAX], const char *vol, const char *snap);

/* ---- cache.c ------------------------------------------------------------ */

/* The piece size of the cache: the frame size chunk.c writes. */
#define CACHE_PIECE (16u * 1024u)
struct chunk_cache *cache_new(uint64_t max_bytes, uint32_t chunk_size);
void cache_free(struct chunk_cache *c);
/* min(CACHE_PIECE, chunk_size): pieces of chunks are cached at that size. */
uint32_t cache_piece(const struct chunk_cache *c);
/* Copies LEN bytes at OFF of cached chunk HASH into OUT, from the whole
 * chunk or from the pieces covering them; false if absent. */
bool cache_read(struct chunk_cache *c, const uint8_t hash[32], void *out,
		size_t off, size_t len);
/* A chunk-sized buffer from the store's pool (or malloc), and back. */
void *cache_buf_get(struct chunk_cache *c);
void cache_buf_put(struct chunk_cache *c, void *buf);
/* Inserts a verified chunk; takes ownership of BUF (from cache_buf_get). */
void cache_insert(struct chunk_cache *c, const uint8_t hash[32], void *buf);
/* Inserts a copy of verified chunk DATA (chunk_size bytes). */
void cache_insert_copy(struct chunk_cache *c, const uint8_t hash[32],
		       const void *data);
/* A cache_piece()-sized buffer, recycled from evicted pieces (or a new
 * slab), and back. */
void *cache_piece_get(struct chunk_cache *c);
void cache_piece_put(struct chunk_cache *c, void *buf);
/* True if BYTES of chunk HASH would go in without evicting anything. */
bool cache_has_room(struct chunk_cache *c, const uint8_t hash[32], size_t bytes);
/* Inserts verified piece IDX of chunk HASH; takes ownership of BUF
 * (from cache_piece_get). */
void cache_insert_piece(struct chunk_cache *c, const uint8_t hash[32],
			uint32_t idx, void *buf);
/* Holds BYTES of the cache's bound out for memory the cache does not
 * hold (the journal's map, dirty.c): the cache evicts, and gives the
 * pages back, to stay within what is left (at least one whole chunk a
 * shard).  Called as BYTES moves, with the newest figure. */
void cache_reserve(struct chunk_cache *c, uint64_t bytes);

/* ---- pack.c ------------------------------------------------------------- */

/* Ensures the writer pack has room for MAX_BYTES more, opening a new file
 * if needed: its id one this handle drew before, else drawn in TXN (NULL:
 * -EAGAIN).  Caller holds st_pack_lock. */
int pack_reserve(vd_store *s, MDB_txn *txn, uint64_t max_bytes);
/* Appends N records (headers RECS, payloads PAYLOADS) to the writer pack
 * with one system call per 256; OFFSETS gets where each went (in pack
 * *PACK_ID).  Caller holds st_pack_lock and reserved room for all. */
int pack_appendv(vd_store *s, const struct fmt_record *recs,
		 const void *const *payloads, size_t n, uint32_t *pack_id,
		 uint64_t *offsets);
/* Appends a record (header + payload) to the writer pack; returns its
 * location.  Caller holds st_pack_lock and reserved room. */
int pack_append(vd_store *s, const struct fmt_record *rec,
		const void *payload, uint32_t *pack_id, uint64_t *offset);
/* True if the writer pack has room for MAX_BYTES more (pack_reserve
 * would not need a transaction).  Caller holds st_pack_lock. */
bool pack_room(vd_store *s, uint64_t max_bytes);
/* A descriptor sharing the writer pack's flock (its id in *ID): while it
 * is open nobody can claim the pack, even once the writer moved on, so
 * records the index does not name yet stay where the journal points.
 * Caller holds st_pack_lock and an open writer pack. */
int pack_pin(vd_store *s, uint32_t *id);
/* fdatasyncs the writer pack if anything was appended.  Caller holds
 * st_pack_lock. */
int pack_sync(vd_store *s);
/* The same in two steps, so that appends need not wait for the disk:
 * pack_sync_start (caller holds st_pack_lock) takes what is appended so
 * far; pack_sync_finish (without the lock) makes it durable. */
struct pack_sync {
	int fd; /* -1: nothing to sync */
	uint32_t id;
	uint64_t gen;
	bool dir;
	uint32_t rolled_id; /* a rolled file to sync too (0: none) */
};
int pack_sync_start(vd_store *s, struct pack_sync *ps);
int pack_sync_finish(vd_store *s, struct pack_sync *ps);
/* Reads the record at (pack_id, offset) of STORED_LEN payload bytes into
 * BUF (FMT_REC_HEADER_SIZE + stored_len bytes).  VD_ECORRUPT if short or
 * missing, -ENOENT if the pack file is gone (gc moved it: retry). */
int pack_read(vd_store *s, uint32_t pack_id, uint64_t offset,
	      uint32_t stored_len, uint8_t *buf);
/* Reads LEN bytes at OFFSET of pack PACK_ID into BUF (part of a record);
 * errors as pack_read. */
int pack_read_bytes(vd_store *s, uint32_t pack_id, uint64_t offset,
		    size_t len, uint8_t *buf);
/* Reads the bytes at OFFSET of pack PACK_ID into the N parts of IOV (which
 * it uses up) with one preadv: a record's header and table aside, its raw
 * frames straight into a caller's buffer.  RANDOM: through the pack's
 * descriptor without readahead (pack_read_random).  Errors as pack_read. */
int pack_readv(vd_store *s, uint32_t pack_id, uint64_t offset,
	       struct iovec *iov, int n, bool random);
/* As pack_read_bytes, for a small read at a random place (a frame of a
 * 4 KiB read): through a second descriptor of the pack that has kernel
 * readahead off, so that it reads no neighbours, while whole-record reads
 * (scans) keep readahead on the first. */
int pack_read_random(vd_store *s, uint32_t pack_id, uint64_t offset,
		     size_t len, uint8_t *buf);
/* Asks the kernel to start reading LEN bytes at OFFSET of pack PACK_ID
 * (POSIX_FADV_WILLNEED); best effort, no error. */
void pack_prefetch(vd_store *s, uint32_t pack_id, uint64_t offset, size_t len);
/* Brackets every use of descriptors from pack_fd_get (pack_read does it
 * itself): a removed pack's descriptor is closed only when no read is in
 * flight, so a read never races the close. */
void pack_read_begin(vd_store *s);
void pack_read_end(vd_store *s);
/* A cached read descriptor of pack ID (header checked on first open);
 * -ENOENT if the file is gone.  Between pack_read_begin and _end. */
int pack_fd_get(vd_store *s, uint32_t id);
void pack_close_all(vd_store *s);
/* The ids of every pack file in STORE/data. */
int pack_list(vd_store *s, u32_vec *ids);
/* Counts the pack files and the bytes they occupy on disk. */
void pack_usage(vd_store *s, uint64_t *files, uint64_t *bytes);
/* For gc: returns an fd holding an exclusive flock on pack ID, with its
 * size, or < 0 if another handle appends to it (ours or another
 * process's) or it is gone. */
int pack_claim(vd_store *s, uint32_t id, uint64_t *size);
/* Removes pack ID (gc moved everything out); returns 1 if removed. */
int pack_remove(vd_store *s, uint32_t id);
/* Bytes this handle appended to pack files since it opened. */
uint64_t pack_appended(vd_store *s);
/* The size of pack file ID in bytes (st_size); -errno if gone. */
int pack_size(vd_store *s, uint32_t id, uint64_t *size);
/* True if this handle appends to pack ID. */
bool pack_is_writer(vd_store *s, uint32_t id);
/* If this handle appends to pack ID (0: to any) of at least MIN_SIZE
 * bytes, syncs and closes it (the next append opens a new file), so that
 * it can be claimed and compacted. */
int pack_roll(vd_store *s, uint32_t id, uint64_t min_size);
/* After reading through FD (from pack_fd_get), true if FD still is pack
 * ID's descriptor: false means it was closed (the pack was removed) and
 * the bytes read may belong to another file, so the read is retried. */
bool pack_fd_valid(vd_store *s, uint32_t id, int fd);

/* ---- chunk.c ------------------------------------------------------------ */

void chunk_hash(const void *data, size_t len, uint8_t out[32]);
/* Frees the calling thread's hashing and compression contexts (threads
 * free theirs when they exit; the main thread never does). */
void chunk_thread_release(void);
/* Frees the store's remembered chunk locations (at close). */
void chunk_locs_free(vd_store *s);
/* What the table of framed chunks' locations takes when made: part of the
 * cache's bound. */
size_t chunk_locs_bytes(const vd_store *s);
bool chunk_is_zero(const void *data, size_t len);
/* Compresses CHUNK (named HASH) into OUT (capacity chunk_size plus
 * fmt_frames_slack: cache buffers have it); sets codec and length.  Framed
 * once the store is version 3, one record before. */
int chunk_compress(vd_store *s, const void *chunk, const uint8_t hash[32],
		   void *out, uint8_t *codec, uint32_t *stored_len);
/* The same; with BULK (a bulk load's chunks) at a higher zstd level:
 * smaller, slower to write, as quick to read. */
int chunk_compress_as(vd_store *s, const void *chunk, const uint8_t hash[32],
		      bool bulk, void *out, uint8_t *codec, uint32_t *stored_len);
/* The most bytes a chunk record (header and payload) of S can take. */
size_t chunk_record_max(const vd_store *s);
/* True if the store holds chunk HASH (live or dead). */
bool chunk_exists(vd_store *s, MDB_txn *txn, const uint8_t hash[32]);

/* Bytes [OFF, OFF + LEN) of chunk HASH into DST (LEN bytes; not a whole
 * chunk) if its location is remembered (chunk.c), with no transaction:
 * 0, or 1 if it is not (or moved, or failed its check: the caller loads
 * it the usual way, which reports damage), or < 0 on a read error.
 * CACHE as for load(). */
int chunk_load_remembered(vd_store *s, const uint8_t hash[32], void *dst,
			  size_t off, size_t len, bool cache);
/* Loads bytes [OFF, OFF + LEN) of chunk HASH, verified, into OUT + OFF
 * (OUT has chunk_size bytes; others may be written too), from the cache or
 * the data files; only the frames holding them are decoded.  TXN is a read
 * (or write) transaction.  VD_ECORRUPT on any mismatch. */
int chunk_load(vd_store *s, MDB_txn *txn, const uint8_t hash[32], void *out,
	       size_t off, size_t len);
/* Loads several chunk pieces the cache did not hold (verified, as
 * chunk_load, but the LEN bytes from OFF go to reqs[i].out[0]), reading
 * their records with one io_uring submission per up to 16
 * (VDISK_IO=uring).  Each reqs[i].r gets 0, VD_ECORRUPT, -ENOENT (pack file gone: retry
 * with a fresh transaction) or another error.  Returns < 0 only if the
 * batch itself failed. */
struct chunk_req {
	uint8_t hash[32];
	uint8_t *out;
	size_t off, len;
	bool scan;  /* part of a sequential scan: decode, cache nothing */
	int r;
};
int chunk_load_many(vd_store *s, MDB_txn *txn, struct chunk_req *reqs,
		    size_t n);
/* Reads a chunk's location; VD_ECORRUPT if absent or malformed. */
int chunk_get(vd_store *s, MDB_txn *txn, const uint8_t hash[32],
	      struct fmt_chunk *c);
/* Verifies a stored record fully; VD_ECORRUPT with a message if bad,
 * -ENOENT if its pack file is gone.  SCRATCH holds a record, OUT a chunk. */
int chunk_verify(vd_store *s, const uint8_t hash[32], const struct fmt_chunk *c,
		 uint8_t *scratch, uint8_t *out);
/* As chunk_verify, but checked as a read is (a framed record's frame
 * checks, not its name): a chunk stored in place, read before it is
 * indexed. */
int chunk_decode_at(vd_store *s, const uint8_t hash[32],
		    const struct fmt_chunk *c, uint8_t *scratch, uint8_t *out);

/* Adds a reference to HASH, storing the compressed PAYLOAD if the chunk is
 * new (PAYLOAD may be NULL: then RAW is compressed here).  Caller holds
 * st_pack_lock. */
int chunk_ref(vd_store *s, struct wtxn *w, const uint8_t hash[32],
	      const void *raw, const void *payload, uint8_t codec,
	      uint32_t stored_len);
/* Appends the N chunks of CW to the writer pack, in order, without naming
 * them in the index (whole-chunk writes the journal points to until a
 * seal names them with chunk_ref_at); each cw[i].at gets its location
 * (refs 0).  Caller holds st_pack_lock and no write transaction. */
struct chunk_write;
int chunk_append(vd_store *s, struct chunk_write *cw, size_t n);
/* Bytes chunk_append put in pack files that the index does not name yet
 * (pending, not dead: the compactor leaves them out of its estimate);
 * chunk_unindexed_drop takes back one that will never be named. */
uint64_t chunk_unindexed(vd_store *s);
void chunk_unindexed_drop(vd_store *s, const struct fmt_chunk *at);
/* Adds a reference to HASH, appended at AT by chunk_append if the index
 * does not have it yet.  Caller holds st_pack_lock. */
int chunk_ref_at(vd_store *s, struct wtxn *w, const uint8_t hash[32],
		 const struct fmt_chunk *at);
/* Adds a reference to an existing chunk (VD_ECORRUPT if absent). */
int chunk_ref_existing(vd_store *s, struct wtxn *w, const uint8_t hash[32]);
int chunk_unref(vd_store *s, struct wtxn *w, const uint8_t hash[32]);

/* Calls FN for every entry of DB "chunks" in key order: KEY of KEYLEN bytes
 * (32 unless damaged) and its value, or C NULL if the value is malformed.
 * A non-zero return from FN stops the scan and is returned.  *N (may be
 * NULL) gets the number of entries first. */
typedef int (*chunk_scan_fn)(void *opaque, const uint8_t *key, size_t keylen,
			     const struct fmt_chunk *c);
int chunk_scan(vd_store *s, MDB_txn *txn, chunk_scan_fn fn, void *opaque,
	       uint64_t *n);
/* For gc: deletes every dead chunk in W (counting them in *FREED) and calls
 * LIVE for each live one. */
int chunk_drop_dead(vd_store *s, struct wtxn *w, chunk_scan_fn live,
		    void *opaque, uint64_t *freed);
/* For gc: copies chunk HASH, which a scan saw at C, to the writer pack and
 * points the index at the copy, keeping its current reference count (C is
 * updated).  Returns 0 when moved (or no longer at C), 1 when left in
 * place because it fails the checks of a read (chunk_decode_at) or is
 * gone.  Caller holds
 * st_pack_lock and reserved room.  SCRATCH holds a record, RAW a chunk. */
int chunk_move(vd_store *s, struct wtxn *w, const uint8_t hash[32],
	       struct fmt_chunk *c, uint8_t *scratch, uint8_t *raw);
/* For compaction: empties the record of HASH at (PACK_ID, OFFSET) in W.
 * Returns CHUNK_GONE if the index no longer points there, CHUNK_DROPPED
 * if the chunk was dead (it is deleted), CHUNK_MOVED if it was live and
 * moved (as chunk_move, *MOVED gets the bytes appended) or CHUNK_KEPT if it
 * fails verification (it stays); < 0 on error.  Caller holds st_pack_lock
 * and reserved room. */
enum { CHUNK_GONE, CHUNK_DROPPED, CHUNK_MOVED, CHUNK_KEPT };
int chunk_evacuate(vd_store *s, struct wtxn *w, const uint8_t hash[32],
		   uint32_t pack_id, uint64_t offset, uint8_t *scratch,
		   uint8_t *raw, uint64_t *moved);

/* ---- layer.c ------------------------------------------------------------ */

/* Looks up the newest entry of (LAYER, IDX) with epoch <= EPOCH.
 * Returns 1 found, 0 none, < 0 error (VD_ECORRUPT for a bad value). */
int map_lookup(vd_store *s, MDB_txn *txn, uint64_t layer, uint64_t idx,
	       uint64_t epoch, struct fmt_map_val *out);
/* Sets (LAYER, IDX, EPOCH) to VAL, releasing the chunk it replaces. */
int map_put(vd_store *s, struct wtxn *w, uint64_t layer, uint64_t idx,
	    uint64_t epoch, const struct fmt_map_val *val);

int layer_get(vd_store *s, MDB_txn *txn, uint64_t id, struct fmt_layer *l);
/* Creates a layer forked from (PARENT, PARENT_EPOCH) (0, 0 for none),
 * registering it as a reader of its parent and adding a head reader. */
int layer_create(vd_store *s, struct wtxn *w, uint64_t parent,
		 uint64_t parent_epoch, uint64_t *id);
/* Freezes LAYER's current epoch for a snapshot: registers a reader there
 * and moves the write epoch on.  Returns both epochs. */
int layer_freeze(vd_store *s, struct wtxn *w, uint64_t layer,
		 uint64_t *frozen_epoch, uint64_t *write_epoch);
/* The write epoch of LAYER (what its head writes at). */
int layer_write_epoch(vd_store *s, MDB_txn *txn, uint64_t layer,
		      uint64_t *epoch);

/* Removes one reader; entries nobody can see any more are dropped, and a
 * layer with no readers left is destroyed (and so on up its parents).
 * Cost: proportional to the entries that reader alone could see. */
int reader_remove(vd_store *s, struct wtxn *w, uint64_t layer,
		  uint64_t epoch);
/* Stored bytes that removing reader (LAYER, EPOCH) would free. */
int reader_exclusive_bytes(vd_store *s, MDB_txn *txn, uint64_t layer,
			   uint64_t epoch, uint64_t *bytes);

/* A point to read: a layer chain with the epoch visible in each. */
struct chain_link {
	uint64_t layer, epoch;
	uint8_t *present;   /* bitmap of indices with entries, or NULL */
};
/* One resolved index (see chain_cached); every field is accessed
 * atomically: SEQ is odd while a writer changes the slot. */
struct chain_slot {
	uint32_t seq;
	uint32_t kind;
	uint64_t tag;         /* index + 1; 0: empty */
	uint64_t valid_from;  /* fills from older transactions are refused */
	uint64_t hash[4];
	uint64_t pad;
};
struct chain {
	struct chain_link *links;
	size_t n;
	uint64_t nidx;      /* chunk indices covered by the bitmaps */
	struct chain_slot *slots; /* what indices resolved to, or NULL */
	uint64_t slot_mask;
};
/* Builds the chain of (LAYER, EPOCH) with a presence bitmap per layer over
 * NIDX indices: an ancestor's visible entries never change, and the top
 * layer changes only through its writer, which marks what it adds. */
int chain_build(vd_store *s, MDB_txn *txn, uint64_t layer, uint64_t epoch,
		uint64_t nidx, struct chain *out);
void chain_free(struct chain *c);
/* Records that the top layer now has an entry for IDX, added by write
 * transaction TXN (a seal of ours), before TXN commits. */
void chain_mark(struct chain *c, MDB_txn *txn, uint64_t idx);
/* What IDX resolved to lately, if the chain remembers: the committed
 * state as of now, without a transaction (chain_mark forgets an index
 * before the commit that changes it). */
bool chain_cached(const struct chain *c, uint64_t idx, struct fmt_map_val *out);
/* Resolves index IDX through the chain; a missing entry is a hole. */
int chain_resolve(vd_store *s, MDB_txn *txn, const struct chain *c,
		  uint64_t idx, struct fmt_map_val *out);
/* Smallest index >= IDX that any chain layer has an entry for. */
int chain_next_idx(vd_store *s, MDB_txn *txn, const struct chain *c,
		   uint64_t idx, uint64_t *next);
/* Copies LEN bytes at OFF of chunk IDX as the chain's committed state shows
 * it (verified) into OUT.  *TXN is begun lazily and renewed once if gc
 * moved the chunk meanwhile; the caller ends it. */
int chain_read(vd_store *s, MDB_txn **txn, const struct chain *c,
	       uint64_t idx, void *out, size_t off, size_t len);

/* Scans for check.  An entry of DB "map" as found: KEY_OK false for a key
 * of the wrong size (then only KEYLEN is meaningful), VAL NULL for a
 * malformed value. */
struct map_entry {
	bool key_ok;
	size_t keylen;
	uint64_t layer, idx, epoch;
	const struct fmt_map_val *val;
	bool has_epoch_record;   /* DB "epochs" lists it */
};
typedef int (*map_scan_fn)(void *opaque, const struct map_entry *e);
int map_scan(vd_store *s, MDB_txn *txn, map_scan_fn fn, void *opaque);
/* Every layer record: L NULL if malformed.  HAS_READERS: someone reads it. */
typedef int (*layer_scan_fn)(void *opaque, uint64_t id,
			     const struct fmt_layer *l, bool has_readers);
int layer_scan(vd_store *s, MDB_txn *txn, layer_scan_fn fn, void *opaque);
/* Every reader record: OK false if malformed. */
typedef int (*reader_scan_fn)(void *opaque, uint64_t layer, uint64_t epoch,
			      bool ok);
int reader_scan(vd_store *s, MDB_txn *txn, reader_scan_fn fn, void *opaque);
bool layer_exists(vd_store *s, MDB_txn *txn, uint64_t id);
bool reader_exists(vd_store *s, MDB_txn *txn, uint64_t layer, uint64_t epoch);

/* ---- catalog.c ---------------------------------------------------------- */

/* Errors: VD_ENOVOL (and VD_ENOSNAP for a snapshot of an existing volume),
 * VD_ECORRUPT for a malformed record. */
int catalog_volume_get(vd_store *s, MDB_txn *txn, const char *vol,
		       struct fmt_volume *out);
int catalog_volume_put(vd_store *s, MDB_txn *txn, const char *vol,
		       const struct fmt_volume *fv);
int catalog_volume_del(vd_store *s, MDB_txn *txn, const char *vol);
int catalog_snapshot_get(vd_store *s, MDB_txn *txn, const char *vol,
			 const char *snap, struct fmt_snapshot *out);
int catalog_snapshot_del(vd_store *s, MDB_txn *txn, const char *vol,
			 const char *snap);
/* Takes snapshot VOL@SNAP of the committed head, in a transaction of its
 * own; *WRITE_EPOCH (may be NULL) gets the head's new write epoch.  The
 * caller holds VOL's lock or is its writer. */
int catalog_snapshot_add(vd_store *s, const char *vol, const char *snap,
			 uint64_t *write_epoch);

/* Calls FN for each snapshot of VOL (in name order); a non-zero return
 * stops the walk and is returned. */
typedef int (*catalog_snap_fn)(void *opaque, const char *name,
			       const struct fmt_snapshot *sn);
int catalog_snapshots_of(vd_store *s, MDB_txn *txn, const char *vol,
			 catalog_snap_fn fn, void *opaque);
/* Writes the volumes cloned from VOL@SNAP into OUT, comma separated (OUT
 * may be NULL); returns how many. */
int catalog_clones_of(vd_store *s, MDB_txn *txn, const char *vol,
		      const char *snap, char *out, size_t outlen);

/* Scans for check and listing: every volume record (FV NULL if malformed;
 * NAME NULL if the key is not a valid name, then KEY/KEYLEN say what it
 * is), every snapshot record (SN NULL if malformed, names NULL if the key
 * is). */
typedef int (*catalog_volume_scan_fn)(void *opaque, const char *name,
				      const struct fmt_volume *fv,
				      const void *key, size_t keylen);
int catalog_volume_scan(vd_store *s, MDB_txn *txn, catalog_volume_scan_fn fn,
			void *opaque);
typedef int (*catalog_snapshot_scan_fn)(void *opaque, const char *vol,
					const char *snap,
					const struct fmt_snapshot *sn,
					size_t keylen);
int catalog_snapshot_scan(vd_store *s, MDB_txn *txn,
			  catalog_snapshot_scan_fn fn, void *opaque);

/* Where a point (VOL, or VOL@SNAP with SNAP non-NULL) reads from. */
struct point_loc {
	uint64_t layer, epoch;   /* epoch FMT_EPOCH_HEAD for a head */
	uint64_t size, created;
	struct fmt_volume vol;   /* the volume's record (heads only) */
};
int catalog_point(vd_store *s, MDB_txn *txn, const char *vol,
		  const char *snap, struct point_loc *out);

/* ---- control.c ---------------------------------------------------------- */

/* Serves snapshot requests from other processes on this process's control
 * socket, answering each with FN's result (and its message), and settle
 * requests with SETTLE's.  Idempotent. */
typedef int (*control_snapshot_fn)(vd_store *s, const char *vol,
				   const char *snap);
int control_start(vd_store *s, control_snapshot_fn fn,
		  control_snapshot_fn settle);
void control_stop(vd_store *s);
/* Asks the process holding VOL (PID) to snapshot it. */
int control_request_snapshot(vd_store *s, int pid, const char *vol,
			     const char *snap);
/* Asks the process holding VOL (PID) to seal what it holds of snapshot
 * VOL@SNAP's epoch. */
int control_request_settle(vd_store *s, int pid, const char *vol,
			   const char *snap);

/* ---- journal.c ---------------------------------------------------------- */

struct journal;
/* Where a record's data is: segment SEG, at byte POS of its file. */
struct jloc {
	uint64_t seg, pos;
};
/* Applies one journaled record (DATA NULL: zeroes) found at LOC. */
typedef int (*journal_apply_fn)(void *opaque, const void *data, uint64_t off,
				uint64_t len, const struct jloc *loc);
/* Replay met an epoch marker: the records after it belong to EPOCH. */
typedef int (*journal_epoch_fn)(void *opaque, uint64_t epoch);
/* Opens the journal of head VOL (of LAYER), replaying what it holds through
 * FN in order, epoch markers through EFN (*APPLIED counts the records).
 * EPOCH: the head's write epoch, which new segments start with.
 * VD_ECORRUPT if a synced segment is damaged. */
int journal_open(vd_store *s, const char *vol, uint64_t layer,
		 uint64_t epoch, journal_apply_fn fn, journal_epoch_fn efn,
		 void *opaque, struct journal **out, uint64_t *applied);
/* Appends an epoch marker: the records after it belong to EPOCH (a
 * snapshot moved the write epoch on, or back after a failed one).  Not
 * synced: the caller syncs (volume_flush). */
int journal_mark_epoch(struct journal *j, uint64_t epoch);
void journal_close(struct journal *j);  /* NULL is fine */
/* Removes the spare files a writer that died left in VOL's journal
 * (trimmed segments kept for reuse; nothing reads them).  Only a writer,
 * which holds the volume, may call it. */
void journal_sweep_spares(vd_store *s, const char *vol);
/* Appends a write (KIND FMT_JREC_WRITE with DATA, or FMT_JREC_ZERO) and
 * applies it through APPLY, record by record, under the journal's lock, so
 * writes take effect in the order they are journaled. */
int journal_write(struct journal *j, unsigned kind, uint64_t off,
		  const void *data, uint64_t len, journal_apply_fn apply,
		  void *opaque);
/* Applies a chunk record: chunk HASH, written whole at OFF, is at C (a
 * pack record the index does not name yet) and the record at LOC. */
typedef int (*journal_chunk_fn)(void *opaque, uint64_t off,
				const uint8_t hash[32], const struct fmt_chunk *c,
				const struct jloc *loc);
/* A chunk written whole at OFF (a multiple of the chunk size), hashed and
 * compressed: HASH, and PAYLOAD of STORED_LEN bytes in CODEC. */
struct chunk_write {
	uint64_t off;
	uint8_t hash[32];
	uint8_t *payload;
	uint8_t codec;
	uint32_t stored_len;
	struct fmt_chunk at;    /* where it was appended */
};
/* Whole-chunk writes stored in place: the N payloads of CW are appended
 * to the writer pack (not named by the index), a chunk record pointing to
 * each is journaled, and APPLY applies them, in order, all under the
 * journal's lock.  The pack stays pinned while a segment naming it is on
 * disk.  A flush must sync the pack before the journal (volume_flush). */
int journal_write_chunks(struct journal *j, struct chunk_write *cw, size_t n,
			 journal_chunk_fn apply, void *opaque);
/* Reads LEN bytes of journaled data at (SEG, POS).  -ENOENT if the segment
 * is gone (trimmed: what it held is sealed now). */
int journal_read(struct journal *j, uint64_t seg, uint64_t pos, void *buf,
		 size_t len);
/* Makes every write journaled before the call durable (group commit). */
int journal_sync(struct journal *j);
/* KEEP(OPAQUE, FLOOR) returns the oldest segment still holding an unsealed
 * write (UINT64_MAX: none), or any segment at or below FLOOR as soon as it
 * finds one needed there (nothing can be trimmed then); called under the
 * journal's lock. */
void journal_set_keep(struct journal *j, uint64_t (*keep)(void *, uint64_t),
		      void *opaque);
/* Removes the segments that KEEP no longer needs, oldest first.  Never
 * waits: if a write is under way, that write does it when it ends. */
void journal_trim(struct journal *j);
/* Removes every segment (all of it is sealed; nothing writes). */
void journal_trim_all(struct journal *j);
/* Bytes the journal's segments take. */
uint64_t journal_bytes(struct journal *j);
/* True if head VOL has journal segments on disk. */
bool journal_exists(vd_store *s, const char *vol);
/* Deletes head VOL's journal (the head was removed or rolled back). */
int journal_remove(vd_store *s, const char *vol);

/* ---- volume handles (dirty.c, seal.c, volume.c) ------------------------- */

struct dirty;

struct vd_volume {
	vd_store *v_store;
	/* Reads go to this writable head of the same volume, in this process:
	 * set for an alias (v_alias: not listed, no lock of its own) and for a
	 * read-only head that a writer opened after it. */
	struct vd_volume *v_target;
	bool v_alias;
	struct vd_volume *v_next;     /* in st_vols, under st_vol_lock */
	int v_refs;                   /* under st_vol_lock */
	int v_pins;                   /* the sealer's, under st_vol_lock: the
				       * last unref waits for none */
	bool v_closing;               /* under st_vol_lock: the sealer keeps off */
	char v_name[VD_NAME_MAX + 1];
	char v_snap[VD_NAME_MAX + 1]; /* "" for the head */
	bool v_readonly;
	int v_lockfd;
	uint32_t v_chunk_size;

	/* Size and chain; changed only by snapshot (epoch) under v_seal_lock
	 * plus v_lock. */
	uint64_t v_size;
	struct chain v_chain;         /* links[0] is the top layer */
	uint64_t v_write_epoch;       /* head: epoch new entries get */
	uint64_t v_replay_top;        /* replay: the committed write epoch */
	bool v_epoch_broken;          /* a snapshot's marker failed: no writes
				       * (atomic) */

	/* dirty.c: the dirty chunks of a writable head, under v_lock. */
	pthread_mutex_t v_lock;
	pthread_cond_t v_cond;        /* a seal finished */
	struct dirty **v_table;
	size_t v_table_size;
	size_t v_ndirty;
	/* Every entry, oldest (least recently written) first; those in
	 * memory, oldest first; every entry by its oldest unsealed write. */
	struct dirty_chain { struct dirty *head, *tail; } v_fifo, v_mem, v_jlist;
	uint64_t v_gen;               /* write generation */
	uint64_t v_sealed_seq;        /* bumped when an entry leaves */

	/* Serializes seal commits and epoch changes. */
	pthread_mutex_t v_seal_lock;
	/* Writes hold it shared; a snapshot holds it exclusively for an
	 * instant, to be a point in time. */
	pthread_rwlock_t v_barrier;

	struct journal *v_journal;    /* writable heads, unless VD_OPEN_BULK */
	bool v_bulk;                  /* VD_OPEN_BULK: chunks sealed for bulk */
	bool v_replaying;             /* open is replaying the journal */
	bool v_pack_unsynced;         /* chunks stored in place since a flush */
	bool v_in_place;              /* whole chunks in place (VDISK_IN_PLACE) */
	/* Entries of epochs before v_write_epoch may be dirty while
	 * v_frozen_seq (bumped by each snapshot, atomic) is past
	 * v_frozen_done (the sealer's: the last seq it found nothing left
	 * of); the background sealer seals them. */
	uint64_t v_frozen_seq, v_frozen_done;
	uint64_t v_frozen_gen;        /* sealer: v_gen at its last look */
	int v_settling;               /* seals waited for, under way (atomic) */
};

/* ---- dirty.c ------------------------------------------------------------ */

/* Waits while the store's write-back cache is full (and wakes the sealer
 * past its start mark). */
void dirty_throttle(vd_store *s);
/* True past the start mark of either bound (dirty bytes, journal map
 * bytes): background sealing starts.  _locked: st_dirty_lock held. */
bool dirty_over_start(vd_store *s);
bool dirty_over_start_locked(const vd_store *s);
/* A write to a dirty chunk as the journal holds it: POFS..POFS+PLEN of the
 * chunk, from byte POS of journal segment SEG (POS DIRTY_ZEROES: zeroes). */
struct dirty_piece {
	uint64_t gen, seg, pos;
	uint32_t pofs, plen;
};
#define DIRTY_ZEROES UINT64_MAX
/* Writes SRC (NULL: zeroes) into chunk IDX at POFS..POFS+PLEN.  LOC says
 * where the journal holds these bytes (NULL: not journaled, so the entry
 * must stay in memory). */
int dirty_write(vd_volume *v, uint64_t idx, const uint8_t *src, size_t pofs,
		size_t plen, const struct jloc *loc);
/* Chunk IDX was written whole and stored in place at AT (chunk HASH, not
 * in the index yet; journaled at LOC): the entry becomes STORED. */
int dirty_write_stored(vd_volume *v, uint64_t idx, const uint8_t hash[32],
		       const struct fmt_chunk *at, const struct jloc *loc);
/* Reads LEN bytes at OFF of chunk IDX of head V's committed state at
 * EPOCH of its layer (what an entry of EPOCH was written over) into OUT;
 * *TXN as for chain_read. */
int dirty_base_read(vd_volume *v, MDB_txn **txn, uint64_t epoch, uint64_t idx,
		    void *out, size_t off, size_t len);
/* Lays PIECES over OUT, which holds [POFS, POFS+PLEN) of the chunk,
 * reading their data from V's journal. */
int dirty_apply_pieces(vd_volume *v, const struct dirty_piece *pieces,
		       size_t n, uint8_t *out, size_t pofs, size_t plen);
/* Drops the memory copies of V's coldest entries whose writes are all in
 * the journal (they read back from it) until the store's dirty bytes are
 * at most TARGET.  Returns the bytes freed. */
uint64_t dirty_evict(vd_volume *v, uint64_t target);
/* The oldest journal segment holding a write that is not sealed yet
 * (UINT64_MAX if none), or the first found at or below FLOOR. */
uint64_t dirty_min_jseg(vd_volume *v, uint64_t floor);
/* Wakes the background sealer. */
void dirty_wake(vd_store *s);
/* How many chunks of V are dirty. */
size_t dirty_count(vd_volume *v);
/* Drops every dirty chunk (a close whose flush failed). */
void dirty_discard(vd_volume *v);

/* A view of the committed state: a read transaction with the v_sealed_seq
 * read before it began.  While v_sealed_seq is unchanged no entry has left
 * the dirty table since, so the transaction shows every chunk that is not
 * dirty. */
struct view {
	MDB_txn *txn;
	uint64_t seq;
};
int view_begin(vd_volume *v, struct view *w);
void view_end(struct view *w);

/* What the dirty table says of one chunk of a read. */
enum dirty_hit {
	DIRTY_MISS,    /* not dirty: read the committed state (view fresh) */
	DIRTY_STALE,   /* not dirty, but the view is stale: renew, ask again */
	DIRTY_COPIED,  /* copied into OUT */
	DIRTY_SPARSE,  /* sparse pages: use dirty_read_sparse */
};
enum dirty_hit dirty_read(vd_volume *v, const struct view *view, uint64_t idx,
			  uint8_t *out, size_t pofs, size_t plen);
/* Reads a piece of chunk IDX that a sparse entry covers: the stored chunk,
 * then whatever the entry holds now laid over it.  May renew VIEW. */
int dirty_read_sparse(vd_volume *v, struct view *view, uint64_t idx,
		      uint8_t *out, size_t pofs, size_t plen);
/* Allocation of chunk IDX if dirty: DIRTY_COPIED with *TYPE set, or
 * DIRTY_MISS / DIRTY_STALE as for dirty_read. */
enum dirty_hit dirty_extent(vd_volume *v, const struct view *view,
			    uint64_t idx, unsigned *type);
/* Lowers *BEST to the smallest dirty index in [IDX, MIN(*BEST, END)).
 * -EAGAIN if VIEW went stale (renew it and ask again). */
int dirty_next(vd_volume *v, const struct view *view, uint64_t idx,
	       uint64_t end, uint64_t *best);

/* Sealing (seal.c) takes copies of dirty entries and reports back. */
#define DIRTY_PAGE 4096u
struct seal_item {
	uint64_t idx, gen;
	uint64_t epoch;         /* of the entry: the map entry's epoch */
	uint8_t *raw;           /* copy of the chunk; NULL: zero */
	uint8_t hash[32];
	bool is_data;
	uint8_t *payload;       /* compressed, NULL if the store has it */
	uint8_t codec;
	uint32_t stored_len;
	bool needs_base;        /* sparse: raw holds only the pages in mask */
	uint64_t mask[VD_CHUNK_MAX / DIRTY_PAGE / 64];
	struct dirty_piece *pieces; /* journaled: laid over the base */
	bool stored;            /* hashed, in a pack file at AT, unindexed */
	struct fmt_chunk at;
	size_t npieces;
	int r;                  /* this item failed (stays dirty) */
};
/* The generation of V's latest write. */
uint64_t dirty_gen(vd_volume *v);
/* Which entries a seal takes first: the least recently written (memory
 * presses: chunks written again and again stay dirty), or those whose
 * first unsealed write is oldest (the journal is full: they hold its
 * oldest segments). */
enum seal_order { SEAL_COLDEST, SEAL_OLDEST };
/* Picks up to MAX entries in ORDER whose first write is <= UPTO and
 * epoch <= MAX_EPOCH, and that have no older entry of their index (it is
 * sealed first), marks them sealing and copies their bytes into ITEMS. */
size_t dirty_pick(vd_volume *v, struct seal_item *items, size_t max,
		  uint64_t upto, uint64_t max_epoch, enum seal_order order,
		  int *err);
/* Reports the picked ITEMS sealed (R == 0: committed, except items whose
 * own r < 0) or not: sealed entries not written since leave the table.
 * Returns the first item error. */
int dirty_sealed(vd_volume *v, struct seal_item *items, size_t n, int r);
/* True if an entry of epoch <= MAX_EPOCH holds writes of generation <=
 * UPTO.  With WAIT, when all of them are being sealed elsewhere (or wait
 * for an older entry being sealed), waits for such a seal to end. */
bool dirty_pending(vd_volume *v, uint64_t upto, uint64_t max_epoch, bool wait);

/* ---- seal.c ------------------------------------------------------------- */

/* Chunk bytes one seal commit takes: its copies (and their compressed
 * forms) are in memory until it commits, so a batch is bounded in bytes,
 * whatever the chunk size (64 chunks of 64 KiB, 4 of 1 MiB). */
#define SEAL_BATCH_BYTES (4u << 20)
/* Seals up to MAX dirty entries of V whose first write is <= UPTO, and at
 * most SEAL_BATCH_BYTES of them (one at least; a bulk load: no byte
 * bound), taken in ORDER, in one transaction.  Returns how many it
 * sealed, or an error. */
int seal_batch(vd_volume *v, size_t max, uint64_t upto, enum seal_order order);
/* Seals one batch of the entries a snapshot froze (those of epochs before
 * the write epoch), as big as a settle's.  Returns how many it sealed (0:
 * none is left), or an error. */
int seal_frozen_batch(vd_volume *v);
/* Seals every chunk dirty now (the body of flush). */
int seal_all(vd_volume *v);
/* Seals every entry of epoch <= EPOCH (a snapshot's), waiting for seals
 * of them under way: then the index holds that epoch whole. */
int seal_epoch(vd_volume *v, uint64_t epoch);

/* ---- compact.c ---------------------------------------------------------- */

/* A record of a pack file, as a scan of DB "chunks" found it. */
struct pack_rec {
	uint8_t hash[32];
	uint64_t offset;
	uint32_t stored_len;
};
DEFINE_VECTOR(rec_vec, struct pack_rec);

/* What compact_pack did. */
struct compact_result {
	uint64_t dropped, moved, moved_bytes;
	bool removed;
	uint64_t freed;        /* SIZE minus the bytes moved, if removed */
};

/* Compacts pack ID of SIZE bytes, which the caller claimed (pack_claim)
 * after the last transaction that could append to it ended, RECS listing
 * every chunk the index placed in it since: dead chunks are deleted, live
 * ones copied to the writer pack, in transactions of up to BATCH bytes
 * copied (0: one transaction), each synced before its commit; then, unless
 * a record failed verification, the file is removed. */
int compact_pack(vd_store *s, uint32_t id, uint64_t size,
		 const struct pack_rec *recs, size_t n, uint64_t batch,
		 struct compact_result *res);
/* Starts the background compactor (once per handle; VDISK_COMPACT=off:
 * never). */
int compact_start(vd_store *s);
/* Stops it; before the pack files close. */
void compact_stop(vd_store *s);
/* Waits while the store is past the hard bound on dead bytes and the
 * compactor is making progress: before each seal batch and each write
 * in place. */
void compact_wait(vd_store *s);
/* Whether chunks stored in place but not yet in the index (neither live
 * nor dead to the compactor; the records they replace still count as
 * live) pass L / 32 + 16 MiB: then the sealer indexes them, so that the
 * space bound sees what they replaced as dead. */
bool compact_pending_high(vd_store *s);

/* ---- volume.c ----------------------------------------------------------- */

int volume_open(vd_store *s, const char *vol, const char *snap,
		unsigned flags, vd_volume **out);
int volume_close(vd_volume *v);
int volume_pread(vd_volume *v, void *buf, size_t len, uint64_t off);
int volume_pwrite(vd_volume *v, const void *buf, size_t len, uint64_t off);
int volume_zero(vd_volume *v, uint64_t off, uint64_t len);
int volume_flush(vd_volume *v);
int volume_extents(vd_volume *v, uint64_t off, uint64_t len,
		   vd_extent_fn cb, void *opaque);
/* Takes snapshot SNAP of the open writable head V (flushes first). */
int volume_snapshot(vd_volume *v, const char *snap);
/* Finds this process's open writable head of VOL (a reference the caller
 * drops with volume_close), or NULL. */
vd_volume *volume_find_open(vd_store *s, const char *vol);
/* Flushes and closes every handle still open; stops the sealer. */
void volume_close_all(vd_store *s);
/* Makes the index hold snapshot VOL@SNAP whole: a snapshot is taken
 * without sealing, so writes of its epoch may still be dirty in the head's
 * writer.  This process's writer seals them; another process's is asked to
 * (control socket); a dead writer's journal is replayed.  Before anything
 * reads the snapshot's epoch from the index (opening it, clone, remove,
 * rollback, diff).  A missing snapshot is left for the caller to report. */
int snapshot_settle(vd_store *s, const char *vol, const char *snap);
/* Drops a reference volume_find_open took, without sealing. */
void volume_put(vd_volume *v);
/* Makes the committed state of head VOL hold every acknowledged write it
 * can: replays and seals the journal a dead writer left, if any; with
 * SEAL_OURS, seals what this process holds of it.  (A head another
 * process writes is left to that process.) */
int volume_recover(vd_store *s, const char *vol, bool seal_ours);

/* ---- admin.c ------------------------------------------------------------ */

int volume_create(vd_store *s, const char *vol, uint64_t size);
int volume_remove(vd_store *s, const char *vol, bool recursive);
int volume_rename(vd_store *s, const char *vol, const char *to);
int volume_resize(vd_store *s, const char *vol, uint64_t size,
		  bool allow_shrink);
int volume_rollback(vd_store *s, const char *vol, const char *snap);
int volume_flatten(vd_store *s, const char *vol);
int snapshot_create(vd_store *s, const char *vol, const char *snap);
int snapshot_remove(vd_store *s, const char *vol, const char *snap);
int clone_create(vd_store *s, const char *vol, const char *snap,
		 const char *newvol);

/* ---- query.c ------------------------------------------------------------ */

int info_get(vd_store *s, const char *vol, const char *snap, unsigned flags,
	     struct vd_info *out);
int list_points(vd_store *s, unsigned flags, vd_info_fn cb, void *opaque);
int diff_points(vd_store *s, const char *vol_a, const char *snap_a,
		const char *vol_b, const char *snap_b, vd_range_fn cb,
		void *opaque);

/* ---- gc.c --------------------------------------------------------------- */

int store_gc(vd_store *s, vd_progress_fn progress, void *opaque,
	     struct vd_gc_stats *out);

/* ---- check.c ------------------------------------------------------------ */

int store_check(vd_store *s, vd_progress_fn progress, vd_problem_fn problem,
		void *opaque);

/* ---- store.c ------------------------------------------------------------ */

int store_open(const char *dir, const struct vd_store_options *opts,
	       vd_store **out);
void store_close(vd_store *s);
int store_init(const char *dir, uint32_t chunk_size);
int store_info(vd_store *s, struct vd_store_info *out);

#endif /* VDISK_INTERNAL_H */
