/* vdisk engine internals, grouped by the source file that defines them.
 * Nothing outside engine/ includes this header. */
#ifndef VDISK_INTERNAL_H
#define VDISK_INTERNAL_H

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <lmdb.h>

#include "engine/vdisk.h"
#include "format/format.h"

/* ---- error.c ------------------------------------------------------------ */

/* Records "FUNC: message" as this thread's last error and returns ERR. */
int vd_set_error(int err, const char *func, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#define SET_ERROR(err, ...) vd_set_error((err), __func__, __VA_ARGS__)
/* Maps an LMDB return code to a vdisk code. */
int err_from_mdb(int rc);
/* Starts a public call: clears the last error and names the call in the
 * messages its helpers set. */
void err_begin(const char *api);
#define API_BEGIN() err_begin(__func__)

/* ---- store.c ------------------------------------------------------------ */

struct pack_writer {
	int fd;           /* -1 until the first append */
	uint32_t id;
	uint64_t size;    /* append offset */
	bool unsynced;    /* appended since the last fdatasync */
	bool new_file;    /* its directory entry is not yet synced */
};

struct chunk_cache;
struct vd_volume;

struct vd_store {
	char *st_dir;
	int st_dirfd;
	uint32_t st_chunk_size;
	uint8_t st_uuid[16];
	char st_holder[64];
	uint64_t st_cache_bytes;
	uint64_t st_dirty_max;   /* dirty bytes at which writers wait */
	bool st_uring;           /* batch record reads with io_uring */

	MDB_env *st_env;
	MDB_dbi st_meta, st_volumes, st_snapshots, st_layers, st_readers,
		st_map, st_epochs, st_chunks;

	/* Appends and the LMDB write transactions that reference them. */
	pthread_mutex_t st_pack_lock;
	struct pack_writer st_writer;

	/* Read-only descriptors of pack files, indexed by pack id. */
	pthread_rwlock_t st_fd_lock;
	int *st_fds;
	uint32_t st_nfds;

	struct chunk_cache *st_cache;

	/* Open volume handles of this process, shared by (vol, snap). */
	pthread_mutex_t st_vol_lock;
	struct vd_volume *st_vols;

	/* Background sealing of dirty chunks (volume.c). */
	pthread_mutex_t st_dirty_lock;
	pthread_cond_t st_dirty_cond;   /* dirty bytes fell, or work to do */
	uint64_t st_dirty_bytes;
	bool st_sealer_stop;
	bool st_sealer_started;
	pthread_t st_sealer;

	/* Control socket for requests from other processes (control.c). */
	int st_ctl_fd;
	bool st_ctl_started;
	pthread_t st_ctl_thread;
};

/* Accumulated changes to the store counters kept in the meta DB. */
struct stat_delta {
	int64_t chunks, refs, stored, dead_chunks, dead_bytes;
};

/* A write transaction with its counter changes. */
struct wtxn {
	MDB_txn *txn;
	struct stat_delta d;
};

int wtxn_begin(vd_store *s, struct wtxn *w);
/* Applies the counter deltas, then commits (durably). */
int wtxn_commit(vd_store *s, struct wtxn *w);
void wtxn_abort(struct wtxn *w);
int rtxn_begin(vd_store *s, MDB_txn **txn);

int meta_get_u64(vd_store *s, MDB_txn *txn, const char *key, uint64_t *val);
int meta_put_u64(vd_store *s, MDB_txn *txn, const char *key, uint64_t val);
/* Returns the next value of counter KEY (starting at 1) and stores it. */
int meta_next_id(vd_store *s, MDB_txn *txn, const char *key, uint64_t *id);

/* Process locks in STORE/locks/.  lock_acquire returns an fd (>= 0) holding
 * an flock on the lock file for NAME, or VD_EBUSY with the holder named. */
int lock_acquire(vd_store *s, const char *name, bool exclusive,
		 bool write_holder);
void lock_release(int fd);
/* Records this process as the holder in lock file FD. */
int lock_write_holder(vd_store *s, int fd);
/* Fills PID and HOLDER from the lock file of NAME if someone holds it
 * exclusively; returns 1 if held, 0 if free. */
int lock_holder(vd_store *s, const char *name, int *pid, char *holder,
		size_t holder_len);

uint64_t now_seconds(void);

/* ---- pack.c ------------------------------------------------------------- */

/* Ensures the writer pack has room for MAX_BYTES more, opening a new file
 * (its id drawn in TXN) if needed.  Caller holds st_pack_lock. */
int pack_reserve(vd_store *s, MDB_txn *txn, uint64_t max_bytes);
/* Forgets the cached descriptor of pack ID (gc removed the file). */
void pack_forget(vd_store *s, uint32_t id);
/* Appends a record (header + payload) to the writer pack; returns its
 * location.  Caller holds st_pack_lock and reserved room. */
int pack_append(vd_store *s, MDB_txn *txn, const struct fmt_record *rec,
		const void *payload, uint32_t *pack_id, uint64_t *offset);
/* fdatasyncs the writer pack if anything was appended.  Caller holds
 * st_pack_lock. */
int pack_sync(vd_store *s);
/* Reads the record at (pack_id, offset) of STORED_LEN payload bytes into
 * BUF (FMT_REC_HEADER_SIZE + stored_len bytes).  VD_ECORRUPT if short or
 * missing, -ENOENT if the pack file is gone (gc moved it: retry). */
int pack_read(vd_store *s, uint32_t pack_id, uint64_t offset,
	      uint32_t stored_len, uint8_t *buf);
void pack_close_all(vd_store *s);
/* A cached read descriptor of pack ID (header checked on first open);
 * -ENOENT if the file is gone. */
int pack_fd_get(vd_store *s, uint32_t id);
int pack_path(const vd_store *s, uint32_t id, char *out, size_t len);

/* ---- chunk.c ------------------------------------------------------------ */

void chunk_hash(const void *data, size_t len, uint8_t out[32]);
bool chunk_is_zero(const void *data, size_t len);
/* Compresses CHUNK into OUT (capacity chunk_size); sets codec and length. */
int chunk_compress(const void *chunk, size_t len, void *out, uint8_t *codec,
		   uint32_t *stored_len);

/* Loads chunk HASH, verified, into OUT (chunk_size bytes), from the cache or
 * the data files.  TXN is a read (or write) transaction.  VD_ECORRUPT on
 * any mismatch. */
int chunk_load(vd_store *s, MDB_txn *txn, const uint8_t hash[32], void *out);
/* Loads several chunks (verified, full chunk each, into reqs[i].out),
 * reading the records of cache misses with one io_uring submission per up
 * to 16.  Each reqs[i].r gets 0, VD_ECORRUPT, -ENOENT (pack file gone: retry
 * with a fresh transaction) or another error.  Returns < 0 only if the
 * batch itself failed. */
struct chunk_req {
	uint8_t hash[32];
	uint8_t *out;
	int r;
};
int chunk_load_many(vd_store *s, MDB_txn *txn, struct chunk_req *reqs,
		    size_t n);
/* Reads a chunk's location; VD_ECORRUPT if absent or malformed. */
int chunk_get(vd_store *s, MDB_txn *txn, const uint8_t hash[32],
	      struct fmt_chunk *c);
/* Verifies a stored record fully (used by check); VD_ECORRUPT with a
 * message if bad. */
int chunk_verify(vd_store *s, const uint8_t hash[32], const struct fmt_chunk *c,
		 uint8_t *scratch, uint8_t *out);

/* Adds a reference to HASH, storing the compressed PAYLOAD if the chunk is
 * new (PAYLOAD may be NULL: then RAW is compressed here).  Caller holds
 * st_pack_lock. */
int chunk_ref(vd_store *s, struct wtxn *w, const uint8_t hash[32],
	      const void *raw, const void *payload, uint8_t codec,
	      uint32_t stored_len);
/* Adds a reference to an existing chunk (VD_ECORRUPT if absent). */
int chunk_ref_existing(vd_store *s, struct wtxn *w, const uint8_t hash[32]);
int chunk_unref(vd_store *s, struct wtxn *w, const uint8_t hash[32]);

struct chunk_cache *cache_new(uint64_t max_bytes, uint32_t chunk_size);
void cache_free(struct chunk_cache *c);
/* Copies LEN bytes at OFF of cached chunk HASH into OUT; false if absent. */
bool cache_read(struct chunk_cache *c, const uint8_t hash[32], void *out,
		size_t off, size_t len);
/* A chunk-sized buffer from the store's pool (or malloc), and back. */
void *cache_buf_get(struct chunk_cache *c);
void cache_buf_put(struct chunk_cache *c, void *buf);
/* Inserts a verified chunk; takes ownership of BUF (from cache_buf_get). */
void cache_insert(struct chunk_cache *c, const uint8_t hash[32], void *buf);

/* ---- layer.c ------------------------------------------------------------ */

/* What a map entry says of one chunk index. */
struct map_val {
	uint8_t kind;      /* FMT_MAP_HOLE or FMT_MAP_DATA */
	uint8_t hash[32];
};

/* Looks up the newest entry of (LAYER, IDX) with epoch <= EPOCH.
 * Returns 1 found, 0 none, < 0 error (VD_ECORRUPT for a bad value). */
int map_lookup(vd_store *s, MDB_txn *txn, uint64_t layer, uint64_t idx,
	       uint64_t epoch, struct map_val *out, uint64_t *found_epoch);
/* Sets (LAYER, IDX, EPOCH) to VAL, releasing the chunk it replaces. */
int map_put(vd_store *s, struct wtxn *w, uint64_t layer, uint64_t idx,
	    uint64_t epoch, const struct map_val *val);
/* Smallest chunk index >= IDX with any entry in LAYER, or UINT64_MAX. */
int map_next_idx(vd_store *s, MDB_txn *txn, uint64_t layer, uint64_t idx,
		 uint64_t *next);

int layer_get(vd_store *s, MDB_txn *txn, uint64_t id, struct fmt_layer *l);
int layer_put(vd_store *s, MDB_txn *txn, uint64_t id,
	      const struct fmt_layer *l);
/* Creates a layer forked from (PARENT, PARENT_EPOCH) (0, 0 for none),
 * registering it as a reader of its parent and adding a head reader. */
int layer_create(vd_store *s, struct wtxn *w, uint64_t parent,
		 uint64_t parent_epoch, uint64_t *id);

int reader_add(vd_store *s, struct wtxn *w, uint64_t layer, uint64_t epoch);
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
struct chain {
	struct chain_link *links;
	size_t n;
	uint64_t nidx;      /* chunk indices covered by the bitmaps */
};
/* Builds the chain of (LAYER, EPOCH) with a presence bitmap per layer over
 * NIDX indices: an ancestor's visible entries never change, and the top
 * layer changes only through its writer, which marks what it adds. */
int chain_build(vd_store *s, MDB_txn *txn, uint64_t layer, uint64_t epoch,
		uint64_t nidx, struct chain *out);
void chain_free(struct chain *c);
/* Records that the top layer now has an entry for IDX (a seal of ours). */
void chain_mark(struct chain *c, uint64_t idx);
/* Resolves index IDX through the chain; a missing entry is a hole. */
int chain_resolve(vd_store *s, MDB_txn *txn, const struct chain *c,
		  uint64_t idx, struct map_val *out);
/* Smallest index >= IDX that any chain layer has an entry for. */
int chain_next_idx(vd_store *s, MDB_txn *txn, const struct chain *c,
		   uint64_t idx, uint64_t *next);

/* ---- volume.c ----------------------------------------------------------- */

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

	/* Dirty chunks (writable heads only). */
	pthread_mutex_t v_lock;
	pthread_cond_t v_cond;        /* a seal finished */
	struct dirty **v_table;
	size_t v_table_size;
	size_t v_ndirty;
	struct dirty *v_fifo_head, *v_fifo_tail; /* oldest first */
	uint64_t v_gen;               /* write generation */
	uint64_t v_sealed_seq;        /* bumped when an entry leaves */
	int v_error;                  /* sticky failure of background seal */

	/* Serializes seal commits and epoch changes. */
	pthread_mutex_t v_seal_lock;
	/* Writes hold it shared; a snapshot holds it exclusively for an
	 * instant, to be a point in time. */
	pthread_rwlock_t v_barrier;
};

/* Seals every chunk dirty now (the body of flush). */
int volume_seal_all(vd_volume *v);
/* Takes snapshot SNAP of the open writable head V (flushes first). */
int volume_snapshot(vd_volume *v, const char *snap);
void sealer_stop(vd_store *s);
/* Finds this process's open handle of VOL's head, or NULL. */
vd_volume *volume_find_open(vd_store *s, const char *vol);

/* ---- admin.c ------------------------------------------------------------ */

int volume_get(vd_store *s, MDB_txn *txn, const char *vol,
	       struct fmt_volume *out);
int snapshot_get(vd_store *s, MDB_txn *txn, const char *vol, const char *snap,
		 struct fmt_snapshot *out);
/* The snapshot record write + reader registration (caller owns the lock). */
int snapshot_commit(vd_store *s, const char *vol, const char *snap,
		    uint64_t *new_epoch);

/* ---- control.c ---------------------------------------------------------- */

int control_start(vd_store *s);
void control_stop(vd_store *s);
/* Asks the process holding VOL (PID) to snapshot it. */
int control_request_snapshot(vd_store *s, int pid, const char *vol,
			     const char *snap);

#define DIV_ROUND_UP(a, b) (((a) + (b) - 1) / (b))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#endif /* VDISK_INTERNAL_H */
