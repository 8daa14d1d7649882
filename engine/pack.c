/* Pack files: append-only data files of chunk records.
 *
 * Each store handle appends to a pack file of its own (its id drawn from
 * the meta counter "next_pack", several at a time), holding an exclusive
 * flock on it so that gc in another process leaves it alone.  A file
 * rolls over past FMT_PACK_MAX_BYTES.  Ids are never reused, so a
 * descriptor cached for id N always names the same bytes; gc unlinks a
 * compacted file only after the index stops pointing into it, and a
 * reader that finds it gone retries.
 *
 * Records appended but never committed to the index (a crash between
 * append and commit) are dead bytes that gc reclaims.
 *
 * With VDISK_DIRECT=on, batches of whole chunks stored in place
 * (pack_appendv) bypass the page cache for the 4 KiB blocks they fill
 * whole (append_direct); readers of the ordinary descriptors see those
 * bytes like any others.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/io.h"
#include "engine/internal.h"

static void direct_close(struct pack_writer *w);

static int pack_path(const vd_store *s, uint32_t id, char *out, size_t len)
{
	const int n = snprintf(out, len, "data/%08x.pack", id);
	return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

/* Pack ids a handle draws from the index at a time: a new file every
 * 32 MiB (pack_roll) cost a commit each, two syncs in the middle of a
 * bulk write. */
#define PACK_IDS_AHEAD 8

/* Starts a new writer pack, its id drawn from the ids this handle holds,
 * else in the caller's transaction (TXN NULL: -EAGAIN then).  If that
 * transaction aborts, the ids are handed out again: a file another
 * handle made meanwhile is skipped (O_EXCL), and one left behind (header
 * only) is skipped here and removed by gc. */
static int writer_open(vd_store *s, MDB_txn *txn)
{
	struct pack_header_buf { uint8_t b[FMT_PACK_HEADER_SIZE]; } hb;
	struct fmt_pack_header h = { .version = FMT_PACK_VERSION };
	struct pack_writer *w = &s->st_writer;
	char path[64];
	uint64_t id;
	int fd, r;

	for (;;) {
		if (w->spare_next == w->spare_end) {
			uint64_t last = 0;
			if (!txn)
				return -EAGAIN;
			r = meta_get_u64(s, txn, "next_pack", &last);
			if (r < 0 && r != -ENOENT)
				return r;
			if (last + PACK_IDS_AHEAD > UINT32_MAX)
				return SET_ERROR(-ENOSPC, "pack ids exhausted");
			if ((r = meta_put_u64(s, txn, "next_pack",
					      last + PACK_IDS_AHEAD)) < 0)
				return r;
			w->spare_next = last + 1;
			w->spare_end = last + PACK_IDS_AHEAD + 1;
		}
		id = w->spare_next++;
		pack_path(s, (uint32_t)id, path, sizeof path);
		fd = openat(s->st_dirfd, path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
			    0644);
		if (fd >= 0)
			break;
		if (errno != EEXIST)
			return SET_ERROR(-errno, "%s: %s", path, strerror(errno));
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		r = -errno;
		goto err_close;
	}
	h.pack_id = (uint32_t)id;
	memcpy(h.uuid, s->st_uuid, 16);
	fmt_pack_header_encode(&h, hb.b);
	if ((r = pwrite_full(fd, hb.b, sizeof hb.b, 0)) < 0)
		goto err_close;
	/* The file and its directory entry become durable with the first
	 * pack_sync(), before any index commit can name this pack. */
	if (s->st_writer.fd >= 0)
		close(s->st_writer.fd);
	direct_close(&s->st_writer);
	s->st_writer.fd = fd;
	s->st_writer.id = (uint32_t)id;
	s->st_writer.size = FMT_PACK_HEADER_SIZE;
	s->st_writer.wb_from = 0;
	s->st_writer.gen++;
	return 0;

err_close:
	close(fd);
	unlinkat(s->st_dirfd, path, 0);
	return SET_ERROR(r, "%s: %s", path, strerror(-r));
}

int pack_append(vd_store *s, const struct fmt_record *rec,
		const void *payload, uint32_t *pack_id, uint64_t *offset)
{
	uint8_t hdr[FMT_REC_HEADER_SIZE];
	struct pack_writer *w = &s->st_writer;
	int r;

	/* pack_reserve() made room in the caller's transaction. */
	assert(w->fd >= 0);
	fmt_record_encode(rec, hdr);
	if ((r = pwrite_full(w->fd, hdr, sizeof hdr, w->size)) < 0 ||
	    (r = pwrite_full(w->fd, payload, rec->stored_len,
			     w->size + sizeof hdr)) < 0)
		return SET_ERROR(r, "pack %08x: write: %s", w->id, strerror(-r));
	*pack_id = w->id;
	*offset = w->size;
	w->size += sizeof hdr + rec->stored_len;
	__atomic_add_fetch(&w->appended, sizeof hdr + rec->stored_len,
			   __ATOMIC_RELAXED);
	w->gen++;
	writeback_start(w->fd, &w->wb_from, w->size);
	return 0;
}

/* With VDISK_DIRECT=on, appends of this many aligned bytes or more skip
 * the page cache, as qemu's cache=none and BlueStore do: on a host where
 * creating page-cache pages costs more than the disk write (the bench VM,
 * some days: 1 GiB buffered in 3.7 s, O_DIRECT in 0.7 s), and to keep
 * write-once bulk data from pushing out what readers use. */
#define DIRECT_ALIGN 4096u
#define DIRECT_MIN (256u << 10)
#define GROUP_BYTES (4u << 20) /* records gathered for one append */
#define STAGE_MAX (GROUP_BYTES + DIRECT_ALIGN)
#define STAGE_STEP (256u << 10)

/* The writer pack's O_DIRECT descriptor; false where the file system
 * refuses one (tmpfs), and from then on for this handle. */
static bool direct_fd(vd_store *s, struct pack_writer *w)
{
	char path[64];

	if (w->dfd >= 0)
		return true;
	if (w->no_direct)
		return false;
	pack_path(s, w->id, path, sizeof path);
	w->dfd = openat(s->st_dirfd, path, O_WRONLY | O_DIRECT | O_CLOEXEC);
	w->no_direct = w->dfd < 0;
	return !w->no_direct;
}

static void direct_close(struct pack_writer *w)
{
	if (w->dfd >= 0)
		close(w->dfd);
	w->dfd = -1;
}

/* Writes the TOTAL bytes of IOV at the writer's end, the 4 KiB blocks they
 * fill whole through the O_DIRECT descriptor and the partial blocks at
 * either end through the ordinary one (they share those blocks with the
 * records before and after).  0: done; 1: not worth it or not possible
 * (nothing written; write it the ordinary way); < 0: error. */
static int append_direct(vd_store *s, struct pack_writer *w,
			 const struct iovec *iov, int cnt, uint64_t total)
{
	const uint64_t start = w->size, end = start + total;
	const uint64_t a = (start + DIRECT_ALIGN - 1) / DIRECT_ALIGN * DIRECT_ALIGN;
	const uint64_t b = end / DIRECT_ALIGN * DIRECT_ALIGN;
	const size_t lead = start % DIRECT_ALIGN;
	uint8_t *p;
	int r;

	if (b <= a || b - a < DIRECT_MIN || !direct_fd(s, w))
		return 1;
	if (lead + total > STAGE_MAX)
		return 1;
	if (w->stage_size < lead + total) {
		/* Grown to what the appends need (a 1 MiB write: 1.25 MiB), not
		 * to the most they may: it stays for the next ones. */
		const size_t size = (lead + total + STAGE_STEP - 1) / STAGE_STEP * STAGE_STEP;
		void *m;
		if (posix_memalign(&m, DIRECT_ALIGN, size))
			return 1;
		free(w->stage);
		w->stage = m;
		w->stage_size = size;
	}
	/* Byte X of the file lands at stage + lead + (X - start): block A
	 * starts on an aligned address. */
	p = w->stage + lead;
	for (int i = 0; i < cnt; i++) {
		memcpy(p, iov[i].iov_base, iov[i].iov_len);
		p += iov[i].iov_len;
	}
	p = w->stage + lead;
	if ((r = pwrite_full(w->fd, p, a - start, start)) < 0)
		return r;
	r = pwrite_full(w->dfd, p + (a - start), b - a, a);
	if (r == -EINVAL) { /* opened, but refused: never again here */
		direct_close(w);
		w->no_direct = true;
		r = pwrite_full(w->fd, p + (a - start), b - a, a);
	}
	if (r < 0 || (r = pwrite_full(w->fd, p + (b - start), end - b, b)) < 0)
		return r;
	return 0;
}

/* Writes the TOTAL bytes of IOV at the writer's end, the ordinary way. */
static int append_buffered(struct pack_writer *w, struct iovec *v, int cnt,
			   uint64_t total)
{
	for (uint64_t put = 0; put < total;) {
		const ssize_t m = pwritev(w->fd, v, cnt, (off_t)(w->size + put));
		if (m < 0 && errno == EINTR)
			continue;
		if (m <= 0)
			return m < 0 ? -errno : -EIO;
		put += (uint64_t)m;
		/* Short: go on from where it stopped. */
		size_t left = (size_t)m;
		while (cnt && left >= v->iov_len) {
			left -= v->iov_len;
			v++;
			cnt--;
		}
		if (cnt) {
			v->iov_base = (char *)v->iov_base + left;
			v->iov_len -= left;
		}
	}
	return 0;
}

int pack_appendv(vd_store *s, const struct fmt_record *recs,
		 const void *const *payloads, size_t n, uint32_t *pack_id,
		 uint64_t *offsets)
{
	enum { GROUP = 256 };
	struct pack_writer *w = &s->st_writer;
	uint8_t hdr[GROUP][FMT_REC_HEADER_SIZE];
	struct iovec iov[2 * GROUP];

	assert(w->fd >= 0);
	*pack_id = w->id;
	for (size_t done = 0; done < n;) {
		uint64_t total = 0;
		size_t k = 0;
		int r;

		while (done + k < n && k < GROUP &&
		       (k == 0 || total + FMT_REC_HEADER_SIZE +
				  recs[done + k].stored_len <= GROUP_BYTES)) {
			const size_t i = done + k;
			fmt_record_encode(&recs[i], hdr[k]);
			offsets[i] = w->size + total;
			iov[2 * k] = (struct iovec){ hdr[k], FMT_REC_HEADER_SIZE };
			iov[2 * k + 1] = (struct iovec){ (void *)payloads[i],
							 recs[i].stored_len };
			total += FMT_REC_HEADER_SIZE + recs[i].stored_len;
			k++;
		}
		if ((r = append_direct(s, w, iov, 2 * (int)k, total)) > 0)
			r = append_buffered(w, iov, 2 * (int)k, total);
		if (r < 0)
			return SET_ERROR(r, "pack %08x: write: %s", w->id, strerror(-r));
		w->size += total;
		__atomic_add_fetch(&w->appended, total, __ATOMIC_RELAXED);
		w->gen++;
		writeback_start(w->fd, &w->wb_from, w->size);
		done += k;
	}
	return 0;
}

/* Ensures a writer pack with room for MAX_BYTES exists.  Must be called
 * without an open write transaction in this thread; caller holds
 * st_pack_lock. */
int pack_reserve(vd_store *s, MDB_txn *txn, uint64_t max_bytes)
{
	struct pack_writer *w = &s->st_writer;
	int r;

	if (w->fd >= 0 && w->size + max_bytes <= FMT_PACK_MAX_BYTES)
		return 0;
	if (!txn && w->spare_next == w->spare_end)
		return -EAGAIN;
	if (w->fd >= 0 && (r = pack_sync(s)) < 0)
		return r;
	return writer_open(s, txn);
}

bool pack_room(vd_store *s, uint64_t max_bytes)
{
	const struct pack_writer *w = &s->st_writer;

	return w->fd >= 0 && w->size + max_bytes <= FMT_PACK_MAX_BYTES;
}

int pack_pin(vd_store *s, uint32_t *id)
{
	const int fd = s->st_writer.fd >= 0 ? dup(s->st_writer.fd) : -1;

	if (fd < 0)
		return SET_ERROR(-errno, "pack %08x: dup: %s", s->st_writer.id,
				 strerror(errno));
	*id = s->st_writer.id;
	return fd;
}

/* Sets *AT to VALUE if that is larger (atomically). */
static void atomic_raise(uint64_t *at, uint64_t value)
{
	uint64_t old = __atomic_load_n(at, __ATOMIC_RELAXED);

	while (old < value && !__atomic_compare_exchange_n(at, &old, value, false,
							    __ATOMIC_RELEASE,
							    __ATOMIC_RELAXED))
		;
}

int pack_sync_start(vd_store *s, struct pack_sync *ps)
{
	struct pack_writer *w = &s->st_writer;

	ps->fd = -1;
	/* Left in place until synced: a flush racing this sync must not
	 * find nothing to sync and return first. */
	ps->rolled_id = __atomic_load_n(&w->rolled_id, __ATOMIC_ACQUIRE);
	if (w->fd < 0 || w->gen == __atomic_load_n(&w->synced_gen, __ATOMIC_ACQUIRE))
		return 0;
	/* A descriptor of its own: the writer may roll (and close its
	 * descriptor) while this one syncs. */
	if ((ps->fd = fcntl(w->fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return SET_ERROR(-errno, "pack %08x: dup: %s", w->id, strerror(errno));
	ps->id = w->id;
	ps->gen = w->gen;
	ps->dir = __atomic_load_n(&w->dir_synced, __ATOMIC_ACQUIRE) < w->id + 1;
	return 0;
}

/* Makes the names of the pack files up to ID durable. */
static int sync_dir(vd_store *s, uint32_t id)
{
	char data_dir[] = "data";
	const int dfd = openat(s->st_dirfd, data_dir,
			       O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = 0;

	if (dfd < 0 || fsync(dfd) < 0)
		r = SET_ERROR(-errno, "data directory: fsync: %s", strerror(errno));
	if (dfd >= 0)
		close(dfd);
	if (r == 0)
		atomic_raise(&s->st_writer.dir_synced, (uint64_t)id + 1);
	return r;
}

/* Syncs pack ID, closed since its last append, and its directory entry.
 * Gone is fine: compacted, so every indexed record of it has a synced
 * copy, and the journal pins the files its records point to. */
static int sync_rolled(vd_store *s, uint32_t id)
{
	struct pack_writer *w = &s->st_writer;
	char path[64];
	int fd, r = 0;

	pack_path(s, id, path, sizeof path);
	if ((fd = openat(s->st_dirfd, path, O_RDONLY | O_CLOEXEC)) < 0)
		return errno == ENOENT ? 0 : SET_ERROR(-errno, "%s: %s", path,
							 strerror(errno));
	if (fdatasync(fd) < 0)
		r = SET_ERROR(-errno, "pack %08x: fdatasync: %s", id, strerror(errno));
	close(fd);
	if (r == 0 && __atomic_load_n(&w->dir_synced, __ATOMIC_ACQUIRE) < id + 1)
		r = sync_dir(s, id);
	return r;
}

int pack_sync_finish(vd_store *s, struct pack_sync *ps)
{
	struct pack_writer *w = &s->st_writer;
	int r = 0;

	if (ps->rolled_id) {
		uint32_t expect = ps->rolled_id;

		if ((r = sync_rolled(s, ps->rolled_id)) == 0)
			__atomic_compare_exchange_n(&w->rolled_id, &expect, 0, false,
						    __ATOMIC_ACQ_REL,
						    __ATOMIC_RELAXED);
		ps->rolled_id = 0;
		if (r < 0) {
			if (ps->fd >= 0)
				close(ps->fd);
			ps->fd = -1;
			return r;
		}
	}
	if (ps->fd < 0)
		return 0;
	/* Orders the appended records before the index commit naming them. */
	if (fdatasync(ps->fd) < 0)
		r = SET_ERROR(-errno, "pack %08x: fdatasync: %s", ps->id,
			      strerror(errno));
	close(ps->fd);
	ps->fd = -1;
	/* The first sync of a new file also makes its name durable. */
	if (r == 0 && ps->dir)
		r = sync_dir(s, ps->id);
	if (r == 0)
		atomic_raise(&w->synced_gen, ps->gen);
	return r;
}

int pack_sync(vd_store *s)
{
	struct pack_sync ps;
	int r = pack_sync_start(s, &ps);

	return r < 0 ? r : pack_sync_finish(s, &ps);
}

/* Grows both descriptor tables to hold pack ID (under st_fd_lock). */
static int fds_grow(vd_store *s, uint32_t id)
{
	const uint32_t n = MAX(id + 1, s->st_nfds * 2);
	int *fds = malloc(n * sizeof *fds), *rfds = malloc(n * sizeof *rfds);

	if (!fds || !rfds) {
		free(fds);
		free(rfds);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		fds[i] = i < s->st_nfds ? s->st_fds[i] : -1;
		rfds[i] = i < s->st_nfds ? s->st_rfds[i] : -1;
	}
	free(s->st_fds);
	free(s->st_rfds);
	s->st_fds = fds;
	s->st_rfds = rfds;
	s->st_nfds = n;
	return 0;
}

/* Second descriptors take at most a quarter of the process's limit:
 * past it, random reads share the first (with readahead), as before. */
static uint32_t random_fds_max(void)
{
	static uint32_t max;
	uint32_t m = __atomic_load_n(&max, __ATOMIC_RELAXED);
	struct rlimit rl;

	if (m == 0) {
		m = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
		    ? (uint32_t)MIN(rl.rlim_cur / 4, (rlim_t)UINT32_MAX) : 1u << 16;
		__atomic_store_n(&max, MAX(m, 1u), __ATOMIC_RELAXED);
	}
	return m;
}

/* Returns a read descriptor for pack ID, opening and checking it once;
 * with RANDOM, the one that has readahead off if there is room for it. */
static int fd_get(vd_store *s, uint32_t id, bool random)
{
	uint8_t hb[FMT_PACK_HEADER_SIZE];
	struct fmt_pack_header h;
	char path[64];
	int fd, *slot;

	pthread_rwlock_rdlock(&s->st_fd_lock);
	fd = id >= s->st_nfds ? -1 : random ? s->st_rfds[id] : s->st_fds[id];
	pthread_rwlock_unlock(&s->st_fd_lock);
	if (fd >= 0)
		return fd;
	if (random && __atomic_load_n(&s->st_nrfds, __ATOMIC_RELAXED) >= random_fds_max())
		return fd_get(s, id, false);

	pack_path(s, id, path, sizeof path);
	fd = openat(s->st_dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT
		       : SET_ERROR(-errno, "%s: %s", path, strerror(errno));
	if (pread_full(fd, hb, sizeof hb, 0) != sizeof hb ||
	    fmt_pack_header_decode(hb, &h) != 0 || h.pack_id != id ||
	    memcmp(h.uuid, s->st_uuid, 16) != 0) {
		close(fd);
		return SET_ERROR(VD_ECORRUPT, "%s: bad data-file header", path);
	}
	/* Random frame reads of a dense region of a pack made the kernel
	 * take them for a stream and read ahead: with readahead on, an
	 * evicted random 4 KiB read brought in 1.44x the pages it used on a
	 * fresh volume and 1.73x on a 20-deep clone (bench part 3). */
	if (random)
		posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);

	pthread_rwlock_wrlock(&s->st_fd_lock);
	if (id >= s->st_nfds && fds_grow(s, id) < 0) {
		pthread_rwlock_unlock(&s->st_fd_lock);
		close(fd);
		return -ENOMEM;
	}
	slot = random ? &s->st_rfds[id] : &s->st_fds[id];
	if (*slot >= 0) { /* another thread won */
		close(fd);
		fd = *slot;
	} else {
		*slot = fd;
		if (random)
			__atomic_store_n(&s->st_nrfds, s->st_nrfds + 1, __ATOMIC_RELAXED);
	}
	pthread_rwlock_unlock(&s->st_fd_lock);
	return fd;
}

int pack_fd_get(vd_store *s, uint32_t id)
{
	return fd_get(s, id, false);
}

static int read_record(vd_store *s, uint32_t pack_id, uint64_t offset,
		       uint32_t stored_len, uint8_t *buf);
static int read_bytes(vd_store *s, uint32_t pack_id, uint64_t offset,
		      size_t len, uint8_t *buf, bool random);
static int read_iov(vd_store *s, uint32_t pack_id, uint64_t offset,
		    struct iovec *iov, int n, bool random);

/* Closes the descriptors of removed packs if no read is in flight.  A read
 * that begins later finds their slots empty (they were emptied first). */
static void reap_dead(vd_store *s)
{
	pthread_rwlock_wrlock(&s->st_fd_lock);
	if (__atomic_load_n(&s->st_fd_readers, __ATOMIC_SEQ_CST) == 0) {
		for (size_t i = 0; i < s->st_fd_ndead; i++)
			close(s->st_fd_dead[i]);
		__atomic_store_n(&s->st_fd_ndead, 0, __ATOMIC_RELAXED);
	}
	pthread_rwlock_unlock(&s->st_fd_lock);
}

void pack_read_begin(vd_store *s)
{
	__atomic_add_fetch(&s->st_fd_readers, 1, __ATOMIC_SEQ_CST);
}

void pack_read_end(vd_store *s)
{
	if (__atomic_sub_fetch(&s->st_fd_readers, 1, __ATOMIC_SEQ_CST) == 0 &&
	    __atomic_load_n(&s->st_fd_ndead, __ATOMIC_RELAXED))
		reap_dead(s);
}

int pack_read(vd_store *s, uint32_t pack_id, uint64_t offset,
	      uint32_t stored_len, uint8_t *buf)
{
	int r;

	pack_read_begin(s);
	r = read_record(s, pack_id, offset, stored_len, buf);
	pack_read_end(s);
	return r;
}

int pack_read_bytes(vd_store *s, uint32_t pack_id, uint64_t offset,
		    size_t len, uint8_t *buf)
{
	int r;

	pack_read_begin(s);
	r = read_bytes(s, pack_id, offset, len, buf, false);
	pack_read_end(s);
	return r;
}

int pack_read_random(vd_store *s, uint32_t pack_id, uint64_t offset,
		     size_t len, uint8_t *buf)
{
	int r;

	pack_read_begin(s);
	r = read_bytes(s, pack_id, offset, len, buf, true);
	pack_read_end(s);
	return r;
}

void pack_prefetch(vd_store *s, uint32_t pack_id, uint64_t offset, size_t len)
{
	int fd;

	pack_read_begin(s);
	if ((fd = fd_get(s, pack_id, false)) >= 0)
		posix_fadvise(fd, (off_t)offset, (off_t)len, POSIX_FADV_WILLNEED);
	pack_read_end(s);
}

static int read_record(vd_store *s, uint32_t pack_id, uint64_t offset,
		       uint32_t stored_len, uint8_t *buf)
{
	return read_bytes(s, pack_id, offset,
			  FMT_REC_HEADER_SIZE + (size_t)stored_len, buf, false);
}

static int read_bytes(vd_store *s, uint32_t pack_id, uint64_t offset,
		      size_t len, uint8_t *buf, bool random)
{
	struct iovec iov = { buf, len };

	return read_iov(s, pack_id, offset, &iov, 1, random);
}

/* preadv of IOV (N parts; advanced in place) at OFFSET, looping over
 * short reads; the bytes read or -errno. */
static ssize_t preadv_full(int fd, struct iovec *iov, int n, uint64_t offset)
{
	size_t done = 0;

	while (n > 0) {
		ssize_t got = preadv(fd, iov, n, (off_t)(offset + done));

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -errno;
		if (got == 0)
			break; /* end of file */
		done += (size_t)got;
		for (; n > 0 && (size_t)got >= iov->iov_len; iov++, n--)
			got -= (ssize_t)iov->iov_len;
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + got;
			iov->iov_len -= (size_t)got;
		}
	}
	return (ssize_t)done;
}

/* Reads IOV (N parts, used up) at OFFSET of pack PACK_ID, through its
 * RANDOM descriptor or its plain one; errors as pack_read. */
static int read_iov(vd_store *s, uint32_t pack_id, uint64_t offset,
		    struct iovec *iov, int n, bool random)
{
	const int fd = fd_get(s, pack_id, random);
	size_t len = 0;
	ssize_t got;

	if (fd < 0)
		return fd;
	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	got = preadv_full(fd, iov, n, offset);
	/* The pack was removed meanwhile: retry, as for a file gone. */
	if (!pack_fd_valid(s, pack_id, fd))
		return -ENOENT;
	if (got < 0)
		return SET_ERROR((int)got, "pack %08x: read at %llu: %s", pack_id,
				 (unsigned long long)offset, strerror((int)-got));
	if ((size_t)got != len)
		return SET_ERROR(VD_ECORRUPT,
				 "pack %08x: record at %llu is cut short (file truncated?)",
				 pack_id, (unsigned long long)offset);
	return 0;
}

int pack_readv(vd_store *s, uint32_t pack_id, uint64_t offset,
	       struct iovec *iov, int n, bool random)
{
	int r;

	pack_read_begin(s);
	r = read_iov(s, pack_id, offset, iov, n, random);
	pack_read_end(s);
	return r;
}

/* Retires the descriptor in *SLOT (under st_fd_lock); true if it waits
 * in st_fd_dead. */
static bool retire(vd_store *s, int *slot)
{
	const int fd = *slot;
	int *dead;

	if (fd < 0)
		return false;
	*slot = -1;
	dead = realloc(s->st_fd_dead, (s->st_fd_ndead + 1) * sizeof *dead);
	if (!dead) {
		close(fd); /* no memory: readers retry on a bad read */
		return false;
	}
	/* Closed once no read that may hold it is in flight. */
	s->st_fd_dead = dead;
	dead[s->st_fd_ndead] = fd;
	__atomic_store_n(&s->st_fd_ndead, s->st_fd_ndead + 1, __ATOMIC_RELAXED);
	return true;
}

/* Forgets the descriptors of pack ID (gc removed the file). */
static void pack_forget(vd_store *s, uint32_t id)
{
	bool reap = false;

	pthread_rwlock_wrlock(&s->st_fd_lock);
	if (id < s->st_nfds) {
		reap = retire(s, &s->st_fds[id]);
		if (s->st_rfds[id] >= 0)
			__atomic_store_n(&s->st_nrfds, s->st_nrfds - 1, __ATOMIC_RELAXED);
		reap = retire(s, &s->st_rfds[id]) || reap;
	}
	pthread_rwlock_unlock(&s->st_fd_lock);
	if (reap)
		reap_dead(s);
}

void pack_close_all(vd_store *s)
{
	pthread_mutex_lock(&s->st_pack_lock);
	pack_sync(s); /* the writer, and a rolled file */
	if (s->st_writer.fd >= 0) {
		close(s->st_writer.fd);
		s->st_writer.fd = -1;
	}
	direct_close(&s->st_writer);
	free(s->st_writer.stage);
	s->st_writer.stage = NULL;
	s->st_writer.stage_size = 0;
	pthread_mutex_unlock(&s->st_pack_lock);
	for (uint32_t i = 0; i < s->st_nfds; i++) {
		if (s->st_fds[i] >= 0)
			close(s->st_fds[i]);
		if (s->st_rfds[i] >= 0)
			close(s->st_rfds[i]);
	}
	for (size_t i = 0; i < s->st_fd_ndead; i++)
		close(s->st_fd_dead[i]);
	free(s->st_fd_dead);
	s->st_fd_dead = NULL;
	s->st_fd_ndead = 0;
	free(s->st_fds);
	free(s->st_rfds);
	s->st_fds = NULL;
	s->st_rfds = NULL;
	s->st_nfds = 0;
	s->st_nrfds = 0;
}

/* ---- the data directory ------------------------------------------------- */

/* Calls FN for each pack file in STORE/data with its id; -errno if the
 * directory cannot be read (no message set). */
static int scan_dir(vd_store *s, void (*fn)(void *, int dfd, const char *name,
					    uint32_t id), void *opaque)
{
	const int fd = openat(s->st_dirfd, "data", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;

	if (fd < 0 || !(d = fdopendir(fd))) {
		const int e = errno;
		if (fd >= 0)
			close(fd);
		return -e;
	}
	for (struct dirent *e; (e = readdir(d));) {
		unsigned id;
		char tail[8];
		if (sscanf(e->d_name, "%8x.%7s", &id, tail) == 2 &&
		    !strcmp(tail, "pack") && id != 0)
			fn(opaque, fd, e->d_name, id);
	}
	closedir(d);
	return 0;
}

struct list_ctx {
	u32_vec *ids;
	int r;
};

static void list_one(void *opaque, int dfd, const char *name, uint32_t id)
{
	struct list_ctx *c = opaque;
	(void)dfd;
	(void)name;
	if (c->r == 0)
		c->r = u32_vec_append(c->ids, id);
}

int pack_list(vd_store *s, u32_vec *ids)
{
	struct list_ctx c = { ids, 0 };
	const int r = scan_dir(s, list_one, &c);

	if (r < 0)
		return SET_ERROR(r, "%s/data: %s", s->st_dir, strerror(-r));
	return c.r < 0 ? SET_ERROR(c.r, "listing pack files: out of memory") : 0;
}

struct usage_ctx {
	uint64_t files, bytes;
};

static void usage_one(void *opaque, int dfd, const char *name, uint32_t id)
{
	struct usage_ctx *u = opaque;
	struct stat st;
	(void)id;
	if (fstatat(dfd, name, &st, 0) == 0) {
		u->files++;
		u->bytes += (uint64_t)st.st_blocks * 512;
	}
}

void pack_usage(vd_store *s, uint64_t *files, uint64_t *bytes)
{
	struct usage_ctx u = { 0, 0 };

	(void)scan_dir(s, usage_one, &u); /* unreadable: counts as empty */
	*files = u.files;
	*bytes = u.bytes;
}

int pack_claim(vd_store *s, uint32_t id, uint64_t *size)
{
	struct stat st;
	char path[64];
	bool mine;
	int fd;

	pthread_mutex_lock(&s->st_pack_lock);
	mine = s->st_writer.fd >= 0 && s->st_writer.id == id;
	pthread_mutex_unlock(&s->st_pack_lock);
	if (mine)
		return -EBUSY;
	pack_path(s, id, path, sizeof path);
	fd = openat(s->st_dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* Another process appending to it holds its flock. */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0 || fstat(fd, &st) < 0) {
		const int e = errno;
		close(fd);
		return -e;
	}
	*size = (uint64_t)st.st_size;
	return fd;
}

int pack_remove(vd_store *s, uint32_t id)
{
	char path[64];

	pack_forget(s, id);
	pack_path(s, id, path, sizeof path);
	return unlinkat(s->st_dirfd, path, 0) == 0;
}

uint64_t pack_appended(vd_store *s)
{
	return __atomic_load_n(&s->st_writer.appended, __ATOMIC_RELAXED);
}

int pack_size(vd_store *s, uint32_t id, uint64_t *size)
{
	struct stat st;
	char path[64];

	pack_path(s, id, path, sizeof path);
	if (fstatat(s->st_dirfd, path, &st, 0) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

bool pack_is_writer(vd_store *s, uint32_t id)
{
	bool mine;

	pthread_mutex_lock(&s->st_pack_lock);
	mine = s->st_writer.fd >= 0 && s->st_writer.id == id;
	pthread_mutex_unlock(&s->st_pack_lock);
	return mine;
}

int pack_roll(vd_store *s, uint32_t id, uint64_t min_size)
{
	struct pack_writer *w = &s->st_writer;
	int r = 0;

	/* Every transaction appending to it holds st_pack_lock until it
	 * commits, so none is under way.  Unsynced, the file is left to the
	 * next pack_sync_* (before any commit or flush that relies on it): a
	 * sync here, every 32 MiB, made a bulk write wait for the disk (fresh
	 * 2 GiB fill: 850 against 795 MiB/s).  One such file at a time. */
	pthread_mutex_lock(&s->st_pack_lock);
	if (w->fd >= 0 && (w->id == id || id == 0) && w->size >= min_size) {
		if (w->gen != __atomic_load_n(&w->synced_gen, __ATOMIC_ACQUIRE) &&
		    __atomic_load_n(&w->rolled_id, __ATOMIC_ACQUIRE) == 0) {
			__atomic_store_n(&w->rolled_id, w->id, __ATOMIC_RELEASE);
		} else if ((r = pack_sync(s)) < 0) {
			pthread_mutex_unlock(&s->st_pack_lock);
			return r;
		}
		close(w->fd);  /* drops the flock: pack_claim may take it */
		w->fd = -1;
	}
	pthread_mutex_unlock(&s->st_pack_lock);
	return r;
}

bool pack_fd_valid(vd_store *s, uint32_t id, int fd)
{
	bool ok;

	/* pack_forget clears the slot before it closes the descriptor. */
	pthread_rwlock_rdlock(&s->st_fd_lock);
	ok = id < s->st_nfds && (s->st_fds[id] == fd || s->st_rfds[id] == fd);
	pthread_rwlock_unlock(&s->st_fd_lock);
	return ok;
}
