/* The store: a directory holding the superblock, the LMDB index, the data
 * (pack) files and the process lock files.
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

#include "engine/internal.h"

#define INDEX_NAME "index.mdb"
#define MAP_SIZE (1ull << 40) /* address space only; the file grows as used */

uint64_t now_seconds(void)
{
	return (uint64_t)time(NULL);
}

/* ---- transactions ------------------------------------------------------- */

int rtxn_begin(vd_store *s, MDB_txn **txn)
{
	const int rc = mdb_txn_begin(s->st_env, NULL, MDB_RDONLY, txn);
	if (rc)
		return SET_ERROR(err_from_mdb(rc), "read transaction: %s",
				 mdb_strerror(rc));
	return 0;
}

int wtxn_begin(vd_store *s, struct wtxn *w)
{
	int rc;

	memset(w, 0, sizeof *w);
	rc = mdb_txn_begin(s->st_env, NULL, 0, &w->txn);
	if (rc)
		return SET_ERROR(err_from_mdb(rc), "write transaction: %s",
				 mdb_strerror(rc));
	return 0;
}

void wtxn_abort(struct wtxn *w)
{
	if (w->txn)
		mdb_txn_abort(w->txn);
	w->txn = NULL;
}

static int meta_add(vd_store *s, MDB_txn *txn, const char *key, int64_t delta)
{
	uint64_t v = 0;
	int r;

	if (delta == 0)
		return 0;
	r = meta_get_u64(s, txn, key, &v);
	if (r < 0 && r != -ENOENT)
		return r;
	return meta_put_u64(s, txn, key, v + (uint64_t)delta);
}

int wtxn_commit(vd_store *s, struct wtxn *w)
{
	int r, rc;

	if ((r = meta_add(s, w->txn, "stat_chunks", w->d.chunks)) < 0 ||
	    (r = meta_add(s, w->txn, "stat_refs", w->d.refs)) < 0 ||
	    (r = meta_add(s, w->txn, "stat_stored", w->d.stored)) < 0 ||
	    (r = meta_add(s, w->txn, "stat_dead_chunks", w->d.dead_chunks)) < 0 ||
	    (r = meta_add(s, w->txn, "stat_dead_bytes", w->d.dead_bytes)) < 0) {
		wtxn_abort(w);
		return r;
	}
	rc = mdb_txn_commit(w->txn);
	w->txn = NULL;
	if (rc)
		return SET_ERROR(err_from_mdb(rc), "commit: %s",
				 mdb_strerror(rc));
	return 0;
}

int meta_get_u64(vd_store *s, MDB_txn *txn, const char *key, uint64_t *val)
{
	MDB_val k = { strlen(key), (void *)key }, v;
	const int rc = mdb_get(txn, s->st_meta, &k, &v);

	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	if (rc)
		return SET_ERROR(err_from_mdb(rc), "meta %s: %s", key,
				 mdb_strerror(rc));
	if (v.mv_size != 8)
		return SET_ERROR(VD_ECORRUPT, "meta %s: value of %zu bytes", key,
				 v.mv_size);
	*val = fmt_get_le64(v.mv_data);
	return 0;
}

int meta_put_u64(vd_store *s, MDB_txn *txn, const char *key, uint64_t val)
{
	uint8_t buf[8];
	MDB_val k = { strlen(key), (void *)key }, v = { 8, buf };
	int rc;

	fmt_put_le64(buf, val);
	rc = mdb_put(txn, s->st_meta, &k, &v, 0);
	if (rc)
		return SET_ERROR(err_from_mdb(rc), "meta %s: %s", key,
				 mdb_strerror(rc));
	return 0;
}

int meta_next_id(vd_store *s, MDB_txn *txn, const char *key, uint64_t *id)
{
	uint64_t v = 0;
	int r = meta_get_u64(s, txn, key, &v);

	if (r < 0 && r != -ENOENT)
		return r;
	*id = v + 1;
	return meta_put_u64(s, txn, key, v + 1);
}

/* ---- process locks ------------------------------------------------------ */

static int lock_path(vd_store *s, const char *name, char *out, size_t len)
{
	const int n = snprintf(out, len, "locks/%s.lock", name);
	return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

static void read_holder(int fd, int *pid, char *holder, size_t holder_len)
{
	char buf[128] = "";
	const ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	char *nl;

	*pid = 0;
	if (holder_len)
		holder[0] = '\0';
	if (n <= 0)
		return;
	buf[n] = '\0';
	*pid = atoi(buf);
	nl = strchr(buf, '\n');
	if (nl && holder_len) {
		char *end = strchr(nl + 1, '\n');
		if (end)
			*end = '\0';
		snprintf(holder, holder_len, "%s", nl + 1);
	}
}

int lock_acquire(vd_store *s, const char *name, bool exclusive,
		 bool write_holder)
{
	char path[160];
	int fd;

	if (lock_path(s, name, path, sizeof path) < 0)
		return SET_ERROR(-ENAMETOOLONG, "lock %s", name);
	fd = openat(s->st_dirfd, path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return SET_ERROR(-errno, "lock %s: %s", path, strerror(errno));
	if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
		const int e = errno;
		int pid;
		char holder[64];

		read_holder(fd, &pid, holder, sizeof holder);
		close(fd);
		if (e != EWOULDBLOCK)
			return SET_ERROR(-e, "lock %s: %s", path, strerror(e));
		if (pid == getpid())
			return SET_ERROR(VD_EBUSY, "'%s' is open in this process", name);
		if (pid > 0 && kill(pid, 0) == 0 && !exclusive)
			return SET_ERROR(VD_EBUSY,
					 "'%s' is held for writing by %s (pid %d)",
					 name, holder[0] ? holder : "?", pid);
		if (pid > 0 && kill(pid, 0) == 0)
			return SET_ERROR(VD_EBUSY, "'%s' is in use by %s (pid %d)",
					 name, holder[0] ? holder : "?", pid);
		return SET_ERROR(VD_EBUSY, "'%s' is in use by another process",
				 name);
	}
	if (write_holder) {
		const int r = lock_write_holder(s, fd);
		if (r < 0) {
			close(fd);
			return SET_ERROR(r, "lock %s: %s", path, strerror(-r));
		}
	}
	return fd;
}

int lock_write_holder(vd_store *s, int fd)
{
	char buf[128];
	const int n = snprintf(buf, sizeof buf, "%d\n%s\n", (int)getpid(),
			       s->st_holder);
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, n, 0) != n)
		return -errno;
	return 0;
}

void lock_release(int fd)
{
	if (fd >= 0)
		close(fd); /* drops the flock */
}

int lock_holder(vd_store *s, const char *name, int *pid, char *holder,
		size_t holder_len)
{
	char path[160];
	int fd, held = 0;

	*pid = 0;
	if (holder_len)
		holder[0] = '\0';
	if (lock_path(s, name, path, sizeof path) < 0)
		return 0;
	fd = openat(s->st_dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
		read_holder(fd, pid, holder, holder_len);
		held = 1;
	}
	close(fd);
	return held;
}

/* ---- open and create ---------------------------------------------------- */

static int fsync_dir(int dirfd)
{
	return fsync(dirfd) < 0 ? -errno : 0;
}

/* Writes the superblock under a temporary name and links it into place:
 * if another process won the race, its superblock stands. */
static int sb_create(int dirfd, uint32_t chunk_size)
{
	struct fmt_superblock sb = {
		.version = FMT_VERSION,
		.chunk_size = chunk_size,
		.created = now_seconds(),
	};
	uint8_t buf[FMT_SB_SIZE];
	char tmp[64];
	int fd, r = 0;

	if (getrandom(sb.uuid, sizeof sb.uuid, 0) != sizeof sb.uuid)
		return -errno;
	sb.uuid[6] = (sb.uuid[6] & 0x0f) | 0x40; /* RFC 4122 version 4 */
	sb.uuid[8] = (sb.uuid[8] & 0x3f) | 0x80;
	fmt_sb_encode(&sb, buf);
	snprintf(tmp, sizeof tmp, FMT_SB_NAME ".tmp.%d", (int)getpid());
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	/* fsync orders the superblock's bytes before its name appears. */
	if (write(fd, buf, sizeof buf) != sizeof buf || fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && linkat(dirfd, tmp, dirfd, FMT_SB_NAME, 0) < 0 &&
	    errno != EEXIST)
		r = -errno;
	unlinkat(dirfd, tmp, 0);
	if (r == 0)
		r = fsync_dir(dirfd);
	return r;
}

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

static int read_superblock(vd_store *s)
{
	uint8_t buf[FMT_SB_SIZE];
	struct fmt_superblock sb;
	ssize_t n;
	int fd, r;

	fd = openat(s->st_dirfd, FMT_SB_NAME, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = pread(fd, buf, sizeof buf, 0);
	close(fd);
	if (n < 0)
		return SET_ERROR(-errno, "%s/%s: %s", s->st_dir, FMT_SB_NAME,
				 strerror(errno));
	if (n != FMT_SB_SIZE)
		return SET_ERROR(VD_ECORRUPT,
				 "%s/%s: superblock is %zd bytes, expected %d",
				 s->st_dir, FMT_SB_NAME, n, FMT_SB_SIZE);
	r = fmt_sb_decode(buf, &sb);
	switch (r) {
	case 0:
		break;
	case FMT_BAD_MAGIC:
		return SET_ERROR(VD_ENOTSTORE, "%s: %s has no vdisk signature",
				 s->st_dir, FMT_SB_NAME);
	case FMT_BAD_VERSION:
		return SET_ERROR(VD_EVERSION,
				 "%s: unsupported store format version %u (this vdisk reads %u)",
				 s->st_dir, sb.version, FMT_VERSION);
	default:
		return SET_ERROR(VD_ECORRUPT, "%s: damaged superblock (%s)",
				 s->st_dir, r == FMT_BAD_CRC ? "checksum" : "field");
	}
	s->st_chunk_size = sb.chunk_size;
	memcpy(s->st_uuid, sb.uuid, 16);
	return 0;
}

static int open_index(vd_store *s)
{
	static const struct { const char *name; size_t off; } dbs[] = {
		{ "meta", offsetof(vd_store, st_meta) },
		{ "volumes", offsetof(vd_store, st_volumes) },
		{ "snapshots", offsetof(vd_store, st_snapshots) },
		{ "layers", offsetof(vd_store, st_layers) },
		{ "readers", offsetof(vd_store, st_readers) },
		{ "map", offsetof(vd_store, st_map) },
		{ "epochs", offsetof(vd_store, st_epochs) },
		{ "chunks", offsetof(vd_store, st_chunks) },
	};
	char path[4096];
	struct wtxn w;
	uint64_t v;
	int rc, r, n;

	n = snprintf(path, sizeof path, "%s/%s", s->st_dir, INDEX_NAME);
	if (n < 0 || (size_t)n >= sizeof path)
		return SET_ERROR(-ENAMETOOLONG, "%s: path too long", s->st_dir);
	if ((rc = mdb_env_create(&s->st_env)) ||
	    (rc = mdb_env_set_maxdbs(s->st_env, 16)) ||
	    (rc = mdb_env_set_mapsize(s->st_env, MAP_SIZE)) ||
	    (rc = mdb_env_set_maxreaders(s->st_env, 1022)))
		return SET_ERROR(err_from_mdb(rc), "index: %s", mdb_strerror(rc));
	/* MDB_NOTLS: read transactions are not tied to threads, and a thread
	 * may hold several.  No MDB_WRITEMAP, so LMDB's syncs are fdatasync
	 * calls that order our data-file syncs before them. */
	rc = mdb_env_open(s->st_env, path,
			  MDB_NOSUBDIR | MDB_NOTLS | MDB_NORDAHEAD, 0644);
	if (rc)
		return SET_ERROR(err_from_mdb(rc), "%s: %s", path,
				 mdb_strerror(rc));
	r = wtxn_begin(s, &w);
	if (r < 0)
		return r;
	for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
		rc = mdb_dbi_open(w.txn, dbs[i].name, MDB_CREATE,
				  (MDB_dbi *)((char *)s + dbs[i].off));
		if (rc) {
			wtxn_abort(&w);
			return SET_ERROR(err_from_mdb(rc), "index db %s: %s",
					 dbs[i].name, mdb_strerror(rc));
		}
	}
	/* A store whose init stopped after the superblock gets its meta now. */
	r = meta_get_u64(s, w.txn, "format", &v);
	if (r == -ENOENT) {
		if ((r = meta_put_u64(s, w.txn, "format", FMT_VERSION)) < 0 ||
		    (r = meta_put_u64(s, w.txn, "chunk_size", s->st_chunk_size)) < 0) {
			wtxn_abort(&w);
			return r;
		}
	} else if (r < 0) {
		wtxn_abort(&w);
		return r;
	} else if (v != FMT_VERSION) {
		wtxn_abort(&w);
		return SET_ERROR(VD_EVERSION, "index format version %llu",
				 (unsigned long long)v);
	} else if ((r = meta_get_u64(s, w.txn, "chunk_size", &v)) < 0 ||
		   v != s->st_chunk_size) {
		wtxn_abort(&w);
		return SET_ERROR(VD_ECORRUPT,
				 "index chunk size disagrees with the superblock");
	}
	return wtxn_commit(s, &w);
}

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
	snprintf(s->st_holder, sizeof s->st_holder, "%s", holder);
	s->st_cache_bytes = o && o->cache_bytes ? o->cache_bytes
			    : env_mb("VDISK_CACHE_MB", 256ull << 20);
	s->st_dirty_max = o && o->dirty_bytes ? o->dirty_bytes
			  : env_mb("VDISK_DIRTY_MB", 1ull << 30);
	/* Batched io_uring reads are opt-in (VDISK_IO=uring): the raw record
	 * reads gain (bench/bench-io.c), but engine reads did not measurably
	 * (bench part 5), decompressing and hashing dominating. */
	s->st_uring = getenv("VDISK_IO") && !strcmp(getenv("VDISK_IO"), "uring");
	pthread_mutex_init(&s->st_pack_lock, NULL);
	pthread_rwlock_init(&s->st_fd_lock, NULL);
	pthread_mutex_init(&s->st_vol_lock, NULL);
	pthread_mutex_init(&s->st_dirty_lock, NULL);
	pthread_cond_init(&s->st_dirty_cond, NULL);
	if (!(s->st_dir = strdup(dir)))
		return -ENOMEM;

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

	r = read_superblock(s);
	if (r == -ENOENT) {
		if (!create)
			return SET_ERROR(VD_ENOTSTORE, "%s: not a vdisk store "
					 "(no %s)", dir, FMT_SB_NAME);
		if (!dir_is_empty(s->st_dirfd))
			return SET_ERROR(VD_ENOTSTORE, "%s: not empty and not a "
					 "vdisk store; refusing to write there", dir);
		if ((r = sb_create(s->st_dirfd, cs)) < 0)
			return SET_ERROR(r, "%s: cannot create the store: %s", dir,
					 strerror(-r));
		r = read_superblock(s);
	}
	if (r < 0)
		return r == -ENOENT ? SET_ERROR(r, "%s: %s", dir, strerror(-r)) : r;

	/* Everything else lives relative to the store directory. */
	if ((mkdirat(s->st_dirfd, "data", 0755) < 0 && errno != EEXIST) ||
	    (mkdirat(s->st_dirfd, "locks", 0755) < 0 && errno != EEXIST))
		return SET_ERROR(-errno, "%s: %s", dir, strerror(errno));
	if (!(s->st_cache = cache_new(s->st_cache_bytes, s->st_chunk_size)))
		return -ENOMEM;
	return 0;
}

int vd_store_open(const char *dir, const struct vd_store_options *opts,
		  vd_store **out)
{
	vd_store *s;
	int r;

	API_BEGIN();
	*out = NULL;
	if (!dir || !*dir)
		return SET_ERROR(-EINVAL, "no store directory given");
	if (!(s = calloc(1, sizeof *s)))
		return -ENOMEM;
	r = store_setup(s, dir, opts);
	if (r == 0)
		r = open_index(s);
	if (r < 0) {
		vd_store_close(s);
		return r;
	}
	*out = s;
	return 0;
}

int vd_store_init(const char *dir, uint32_t chunk_size)
{
	struct vd_store_options o = { .chunk_size = chunk_size, .create = 1 };
	vd_store *s;
	struct stat st;
	int r, fd;

	API_BEGIN();
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
	r = vd_store_open(dir, &o, &s);
	if (r < 0)
		return r;
	vd_store_close(s);
	return 0;
}

void vd_store_close(vd_store *s)
{
	if (!s)
		return;
	/* Volumes the caller left open are flushed and closed. */
	for (;;) {
		vd_volume *v;
		pthread_mutex_lock(&s->st_vol_lock);
		v = s->st_vols;
		if (v)
			v->v_refs = 1;
		pthread_mutex_unlock(&s->st_vol_lock);
		if (!v)
			break;
		vd_volume_close(v);
	}
	sealer_stop(s);
	control_stop(s);
	pack_close_all(s);
	if (s->st_env)
		mdb_env_close(s->st_env);
	cache_free(s->st_cache);
	if (s->st_dirfd >= 0)
		close(s->st_dirfd);
	pthread_mutex_destroy(&s->st_pack_lock);
	pthread_rwlock_destroy(&s->st_fd_lock);
	pthread_mutex_destroy(&s->st_vol_lock);
	pthread_mutex_destroy(&s->st_dirty_lock);
	pthread_cond_destroy(&s->st_dirty_cond);
	free(s->st_dir);
	free(s);
}

/* ---- info --------------------------------------------------------------- */

int vd_store_info(vd_store *s, struct vd_store_info *out)
{
	MDB_txn *txn;
	uint64_t v;
	struct stat st;
	DIR *d;
	int r, fd;
	const uint8_t *u = s->st_uuid;

	API_BEGIN();
	memset(out, 0, sizeof *out);
	out->format_version = FMT_VERSION;
	out->chunk_size = s->st_chunk_size;
	snprintf(out->uuid, sizeof out->uuid,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9],
		 u[10], u[11], u[12], u[13], u[14], u[15]);
	if ((r = rtxn_begin(s, &txn)) < 0)
		return r;
#define GET(key, field) \
	if (meta_get_u64(s, txn, key, &v) == 0) out->field = v
	GET("stat_chunks", chunks);
	GET("stat_refs", chunk_refs);
	GET("stat_stored", stored_bytes);
	GET("stat_dead_chunks", dead_chunks);
	GET("stat_dead_bytes", dead_bytes);
#undef GET
	mdb_txn_abort(txn);
	out->dedup_ratio = out->chunks ? (double)out->chunk_refs / out->chunks : 1.0;
	out->compress_ratio = out->stored_bytes
		? (double)out->chunks * s->st_chunk_size / out->stored_bytes : 1.0;

	fd = openat(s->st_dirfd, "data", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 && (d = fdopendir(fd))) {
		struct dirent *e;
		while ((e = readdir(d))) {
			const size_t n = strlen(e->d_name);
			if (n > 5 && !strcmp(e->d_name + n - 5, ".pack") &&
			    fstatat(fd, e->d_name, &st, 0) == 0) {
				out->pack_files++;
				out->pack_bytes += (uint64_t)st.st_blocks * 512;
			}
		}
		closedir(d);
	} else if (fd >= 0) {
		close(fd);
	}
	if (fstatat(s->st_dirfd, INDEX_NAME, &st, 0) == 0)
		out->index_bytes = (uint64_t)st.st_blocks * 512;
	return 0;
}
