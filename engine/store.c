/* The store's lifecycle: open, create, close and info.  A store is a
 * directory holding the superblock, the LMDB index, the data (pack) files
 * and the process lock files.
 *
 *   STORE/vdisk.sb          superblock, written once by init (FORMAT.md)
 *   STORE/index.mdb         LMDB environment (MDB_NOSUBDIR), + index.mdb-lock
 *   STORE/data/XXXXXXXX.pack  append-only chunk records
 *   STORE/locks/NAME.lock   flock()s: volume writers, snapshot readers
 *
 * The superblock is created first (written to a temporary name and linked
 * into place, so two processes creating the default store at once agree on
 * one); the LMDB meta records are then created if missing, so a crash in
 * the middle of init leaves a store that the next open completes.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/io.h"
#include "engine/internal.h"

/* ---- open and create ---------------------------------------------------- */

static bool dir_is_empty(int dirfd)
{
	DIR *d = fdopendir(dup(dirfd));
	struct dirent *e;
	bool empty = true;

	if (!d)
		return false;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			empty = false;
			break;
		}
	closedir(d);
	return empty;
}

/* The defaults of the memory bounds (README "Memory"): with the seal batch,
 * the buffer pool and the NBD server's requests they keep `vdisk serve`
 * under 200 MiB of RSS, whatever the write load. */
#define STORE_CACHE_DEFAULT (96ull << 20)
#define STORE_DIRTY_DEFAULT (8ull << 20)

static uint64_t env_mb(const char *name, uint64_t dflt)
{
	const char *e = getenv(name);
	char *end;
	unsigned long long v;

	if (!e || !*e)
		return dflt;
	v = strtoull(e, &end, 10);
	return *end || v == 0 ? dflt : v << 20;
}

/* Creates the superblock in the empty directory DIR, then reads it.  Two
 * processes creating the same fresh store at once are serialised by a lock
 * on the directory: the second finds the first's superblock, not a
 * directory that is no longer empty. */
static int store_create(vd_store *s, const char *dir, uint32_t cs)
{
	int r;

	if (flock(s->st_dirfd, LOCK_EX) < 0)
		return SET_ERROR(-errno, "%s: cannot lock: %s", dir,
				 strerror(errno));
	if ((r = sb_read(s)) == -ENOENT) {
		if (!dir_is_empty(s->st_dirfd))
			r = SET_ERROR(VD_ENOTSTORE, "%s: not empty and not a "
				      "vdisk store; refusing to write there", dir);
		else if ((r = sb_create(s->st_dirfd, cs)) < 0)
			r = SET_ERROR(r, "%s: cannot create the store: %s", dir,
				      strerror(-r));
		else
			r = sb_read(s);
	}
	flock(s->st_dirfd, LOCK_UN);
	return r;
}

static int store_setup(vd_store *s, const char *dir,
		       const struct vd_store_options *o)
{
	const uint32_t cs = o && o->chunk_size ? o->chunk_size : VD_CHUNK_DEFAULT;
	const bool create = o && o->create;
	const char *holder = o && o->holder ? o->holder : program_invocation_short_name;
	struct stat st;
	int r;

	s->st_dirfd = -1;
	s->st_ctl_fd = -1;
	s->st_writer.fd = -1;
	s->st_writer.dfd = -1;
	/* VDISK_DIRECT=on: whole chunks stored in place bypass the page
	 * cache (dist/vdisk.1; off by default, README: on the bench machine
	 * it won sequential writes on some days and lost them on others, and
	 * always made the next read a disk read). */
	s->st_writer.no_direct = !(getenv("VDISK_DIRECT") &&
				   !strcmp(getenv("VDISK_DIRECT"), "on"));
	snprintf(s->st_holder, sizeof s->st_holder, "%s", holder);
	s->st_cache_bytes = o && o->cache_bytes ? o->cache_bytes
			    : env_mb("VDISK_CACHE_MB", STORE_CACHE_DEFAULT);
	s->st_journal_high = env_mb("VDISK_JOURNAL_MB", 1ull << 30);
	/* The map costs about 250 bytes per journaled chunk and 32 per write
	 * (its pieces, in arrays that double): 4 KiB random writes over 2 GiB
	 * with a full 1 GiB journal make about 16 MiB.  1/48 of the journal
	 * bound (21 MiB by default) lets most of the journal fill before the
	 * map presses (bench: QD32 random writes 43.6k IOPS; 49k with 1/32,
	 * which took `serve --cache 2G` 3 MiB further past its memory bound;
	 * 27k with 1/64), and caps the map of smaller writes.  The map is
	 * charged to the cache's bound (dirty.c), so that what the process
	 * holds is a constant plus the cache (README, Memory): at most 3/4
	 * of it, so that reads keep a quarter while the journal is full.
	 * (A quarter of the cache made a 32 MiB cache's 4 KiB random writes
	 * 2.8x slower, sealing after a third of the writes a chunk, and
	 * took more memory than it saved: the seals' batches.) */
	s->st_piece_max = MAX(MIN(s->st_journal_high / 48, s->st_cache_bytes / 4 * 3),
			      1ull << 20);
	s->st_dirty_max = o && o->dirty_bytes ? o->dirty_bytes
			  : env_mb("VDISK_DIRTY_MB", STORE_DIRTY_DEFAULT);
	/* Batched io_uring reads are opt-in (VDISK_IO=uring): the raw record
	 * reads gain (bench/bench-io.c), but engine reads did not measurably
	 * (bench part 5), decompressing and hashing dominating. */
	s->st_uring = getenv("VDISK_IO") && !strcmp(getenv("VDISK_IO"), "uring");
	/* VDISK_SEAL_FROZEN=off leaves a snapshot's epoch unsealed until it
	 * is read (tests of that path). */
	s->st_seal_frozen = !(getenv("VDISK_SEAL_FROZEN") &&
			      !strcmp(getenv("VDISK_SEAL_FROZEN"), "off"));
	pthread_mutex_init(&s->st_pack_lock, NULL);
	pthread_rwlock_init(&s->st_fd_lock, NULL);
	pthread_mutex_init(&s->st_vol_lock, NULL);
	pthread_cond_init(&s->st_vol_cond, NULL);
	pthread_mutex_init(&s->st_dirty_lock, NULL);
	pthread_cond_init(&s->st_dirty_cond, NULL);
	pthread_mutex_init(&s->st_ctl_lock, NULL);
	pthread_mutex_init(&s->st_compact_lock, NULL);
	pthread_cond_init(&s->st_compact_cond, NULL);
	pthread_cond_init(&s->st_compact_eased, NULL);
	pthread_mutex_init(&s->st_sb_lock, NULL);
	if (!(s->st_dir = strdup(dir)))
		return SET_ERROR(-ENOMEM, "out of memory");

	if (cs < VD_CHUNK_MIN || cs > VD_CHUNK_MAX || (cs & (cs - 1)))
		return SET_ERROR(-EINVAL, "chunk size %u is not a power of two "
				 "from 4 KiB to 1 MiB", cs);
	if (stat(dir, &st) < 0) {
		if (errno != ENOENT || !create)
			return SET_ERROR(errno == ENOENT ? VD_ENOTSTORE : -errno,
					 "%s: %s", dir, strerror(errno));
		/* Only the store directory itself: a mistyped path should fail,
		 * not grow a tree of new directories. */
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return SET_ERROR(-errno, "%s: cannot create: %s", dir,
					 strerror(errno));
	} else if (!S_ISDIR(st.st_mode)) {
		return SET_ERROR(VD_ENOTSTORE, "%s: not a directory", dir);
	}
	s->st_dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->st_dirfd < 0)
		return SET_ERROR(-errno, "%s: %s", dir, strerror(errno));

	r = sb_read(s);
	if (r == -ENOENT) {
		if (!create)
			return SET_ERROR(VD_ENOTSTORE, "%s: not a vdisk store "
					 "(no %s)", dir, FMT_SB_NAME);
		if ((r = store_create(s, dir, cs)) < 0)
			return r;
	}
	if (r < 0)
		return r == -ENOENT ? SET_ERROR(r, "%s: %s", dir, strerror(-r)) : r;

	/* Everything else lives relative to the store directory. */
	if ((mkdirat(s->st_dirfd, "data", 0755) < 0 && errno != EEXIST) ||
	    (mkdirat(s->st_dirfd, "locks", 0755) < 0 && errno != EEXIST) ||
	    (mkdirat(s->st_dirfd, "journal", 0755) < 0 && errno != EEXIST))
		return SET_ERROR(-errno, "%s: %s", dir, strerror(errno));
	/* The bound covers what the process caches: the pieces, and the
	 * table of where framed chunks are (chunk.c). */
	if (!(s->st_cache = cache_new(s->st_cache_bytes -
				      MIN(chunk_locs_bytes(s), s->st_cache_bytes / 2),
				      s->st_chunk_size)))
		return SET_ERROR(-ENOMEM, "%s: no memory for a chunk cache of %llu "
				 "bytes", dir, (unsigned long long)s->st_cache_bytes);
	return 0;
}

int store_open(const char *dir, const struct vd_store_options *opts,
	       vd_store **out)
{
	vd_store *s;
	int r;

	*out = NULL;
	if (!(s = calloc(1, sizeof *s)))
		return SET_ERROR(-ENOMEM, "out of memory");
	r = store_setup(s, dir, opts);
	if (r == 0)
		r = index_open(s);
	if (r < 0) {
		store_close(s);
		return r;
	}
	*out = s;
	return 0;
}

int store_init(const char *dir, uint32_t chunk_size)
{
	struct vd_store_options o = { .chunk_size = chunk_size, .create = 1 };
	vd_store *s;
	struct stat st;
	int r, fd;

	if (chunk_size == 0)
		o.chunk_size = VD_CHUNK_DEFAULT;
	if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			const bool exists = faccessat(fd, FMT_SB_NAME, F_OK, 0) == 0;
			close(fd);
			if (exists)
				return SET_ERROR(VD_EEXIST,
						 "%s is already a vdisk store", dir);
		}
	}
	if ((r = store_open(dir, &o, &s)) < 0)
		return r;
	store_close(s);
	return 0;
}

void store_close(vd_store *s)
{
	if (!s)
		return;
	compact_stop(s);
	volume_close_all(s);
	control_stop(s);
	pack_close_all(s);
	index_close(s);
	cache_free(s->st_cache);
	chunk_locs_free(s);
	if (s->st_dirfd >= 0)
		close(s->st_dirfd);
	pthread_mutex_destroy(&s->st_pack_lock);
	pthread_rwlock_destroy(&s->st_fd_lock);
	pthread_mutex_destroy(&s->st_vol_lock);
	pthread_cond_destroy(&s->st_vol_cond);
	pthread_mutex_destroy(&s->st_dirty_lock);
	pthread_cond_destroy(&s->st_dirty_cond);
	pthread_mutex_destroy(&s->st_ctl_lock);
	pthread_mutex_destroy(&s->st_compact_lock);
	pthread_cond_destroy(&s->st_compact_cond);
	pthread_cond_destroy(&s->st_compact_eased);
	pthread_mutex_destroy(&s->st_sb_lock);
	free(s->st_dir);
	free(s);
	chunk_thread_release();
}

/* ---- info --------------------------------------------------------------- */

int store_info(vd_store *s, struct vd_store_info *out)
{
	struct store_stats st;
	MDB_txn *txn;
	const uint8_t *u = s->st_uuid;
	int r;

	memset(out, 0, sizeof *out);
	out->format_version = s->st_version;
	out->chunk_size = s->st_chunk_size;
	snprintf(out->uuid, sizeof out->uuid,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9],
		 u[10], u[11], u[12], u[13], u[14], u[15]);
	if ((r = rtxn_begin(s, &txn)) < 0)
		return r;
	r = stats_read(s, txn, &st, NULL);
	rtxn_end(txn);
	if (r < 0)
		return r;
	out->chunks = (uint64_t)st.chunks;
	out->chunk_refs = (uint64_t)st.refs;
	out->stored_bytes = (uint64_t)st.stored;
	out->dead_chunks = (uint64_t)st.dead_chunks;
	out->dead_bytes = (uint64_t)st.dead_bytes;
	out->dedup_ratio = out->chunks ? (double)out->chunk_refs / out->chunks : 1.0;
	out->compress_ratio = out->stored_bytes
		? (double)out->chunks * s->st_chunk_size / out->stored_bytes : 1.0;
	pack_usage(s, &out->pack_files, &out->pack_bytes);
	out->index_bytes = index_disk_bytes(s);
	out->reclaimable_bytes = out->pack_bytes > out->stored_bytes
				 ? out->pack_bytes - out->stored_bytes : 0;
	out->compacted_files = (uint64_t)st.compact_packs;
	out->compacted_bytes = (uint64_t)st.compact_bytes;
	return 0;
}
