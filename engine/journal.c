/* The write journal of a volume head: acknowledged writes, in order, until
 * they are destaged into chunks.
 *
 *   STORE/journal/VOL/NNNNNNNNNNNNNNNN.jnl   segments, numbered from 1
 *
 * A write is appended (header + data, one pwritev) before it is applied to
 * the head's dirty chunks, under one lock, so the journal's order is the
 * order the writes took effect in.  A chunk record stands for a whole
 * chunk appended to a pack file just before (journal_write_chunks); replay
 * stops at one whose chunk is not there, which only a write that no flush
 * covered can leave (a flush syncs the pack file first).  A flush is one fdatasync of the
 * current segment, shared by every flush waiting at the time (group
 * commit); a segment is synced before the next one starts, so only the
 * newest can have an unsynced tail.
 *
 * Trimming: a segment goes once every write it holds is destaged, and
 * segments go oldest first, so the journal is always a suffix of the
 * writes.  Replay applies that suffix in order over the committed state;
 * the committed state of each chunk holds a prefix of its writes at least
 * as long as what was trimmed, so re-applying a destaged write there is
 * harmless.  Replay uses only the run of consecutively numbered segments
 * ending at the newest: a gap means the segments below it were trimmed.
 * It stops at the first invalid record of the newest segment (a torn
 * tail: writes never flushed); an invalid record in an older, synced
 * segment is damage, and opening the volume fails with VD_ECORRUPT.
 * Segments of another layer (a rollback or removal that stopped before
 * deleting them) are stale: skipped, and removed with the rest.
 *
 * Epochs: a snapshot of the head appends an epoch marker (FMT_JREC_EPOCH,
 * synced before the snapshot's index commit) instead of sealing; the
 * records after a marker belong to its epoch, those before to the older
 * one.  Every segment starts with a marker of the epoch current then, so
 * the records of any suffix of segments have a known epoch.  Replay hands
 * markers to the caller (journal_epoch_fn), which decides what they mean
 * (volume.c: one newer than the committed write epoch is ignored).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/io.h"
#include "common/vector.h"
#include "engine/internal.h"

#define SEGMENT_MAX (64ull << 20) /* start a new segment past this */
/* Appends go over blocks written before (zeros written ahead, or a reused
 * file's old records), never past the file's end: on ext4 a flush after
 * appends that grew the file commits its size and new extents to the
 * filesystem's journal, and one after overwrites syncs only data.  4 KiB
 * records with a flush every 8 (python, this VM): 300 us a sync growing,
 * 175 us over zeros written 1 MiB ahead; one sync in a MiB still commits
 * the metadata.  PostgreSQL zero-fills its WAL segments for this reason. */
#define ZERO_AHEAD (1u << 20)
#define ZERO_BUF (64u << 10)
/* Segments kept open for reads: a full journal (twice 1 GiB, the default
 * bound, in 64 MiB segments) has 32, and with 8 kept, sealing one opened
 * and closed a segment for one piece read in three (6% of the server's
 * CPU under sustained random writes). */
#define READ_FDS 40
/* A segment with no write yet: its header and its epoch marker. */
#define SEGMENT_EMPTY (FMT_JNL_HEADER_SIZE + FMT_JREC_HEADER_SIZE)

struct journal {
	vd_store *j_store;
	char j_vol[VD_NAME_MAX + 1];
	uint64_t j_layer;
	uint64_t j_epoch;         /* of the records appended now (j_lock) */

	/* Appends and their application, under j_lock (held across both, so
	 * the journal's order is the order writes took effect); the fields
	 * below change under j_lock plus j_tail_lock, so j_tail_lock alone is
	 * enough to read them. */
	pthread_mutex_t j_lock;
	pthread_mutex_t j_tail_lock;
	int j_fd;                 /* current segment, -1 before the first */
	uint64_t j_seg;           /* its number */
	uint64_t j_size;          /* its append offset */
	uint64_t j_wb_from;       /* its writeback not yet started from here */
	uint64_t j_seq;           /* last record's sequence number */
	uint64_t j_first_seg;     /* oldest segment on disk */
	uint64_t j_bytes;         /* in all segments on disk */
	/* Reuse: a trimmed segment's file becomes the next segment (see
	 * segment_start), so that appends overwrite allocated, cached blocks
	 * instead of allocating and zeroing new ones.  j_spares are the old
	 * numbers of the spare files; only segments this handle started
	 * (from j_own_first) are reused; j_file_size is the current
	 * segment's file size: past j_size it holds zeros written ahead
	 * (ZERO_AHEAD) or a reused file's earlier records. */
	uint64_t j_spares[2];
	size_t j_nspares;
	uint64_t j_own_first;
	uint64_t j_file_size;
	bool j_dir_unsynced;      /* a segment was created since the last sync */
	/* Chunk records: the bytes they stand for (in pack files) count as
	 * journal bytes, per segment, so that they are sealed and trimmed
	 * like data written here; j_seg_chunk is the current segment's. */
	uint64_t j_chunk_bytes;
	uint64_t j_seg_chunk;
	struct seg_weight { uint64_t seg, bytes; } *j_weights;
	size_t j_nweights, j_weights_cap;
	/* The pack files chunk records point into, each pinned (pack_pin)
	 * until the newest segment naming it is trimmed, durably: nobody can
	 * compact away a record a replay may still read.  Under j_lock. */
	struct pack_pin { uint32_t pack; int fd; uint64_t seg; } *j_pins;
	size_t j_npins, j_pins_cap;

	/* Trimming: which segments are still needed (the head's oldest
	 * unsealed write), asked under j_lock; a trim that found j_lock taken
	 * is left to the next write. */
	uint64_t (*j_keep)(void *opaque, uint64_t floor);
	void *j_keep_opaque;
	bool j_trim_pending;

	/* Read handles of segments for journal_read, so that sealing a chunk
	 * made of journaled pieces costs a pread per piece, not an open, a
	 * pread and a close (one settle of 16k chunks made 185k opens).  Under
	 * j_rfd_lock; an entry in use (refs) is never closed, a trimmed one
	 * is closed by its last user. */
	pthread_mutex_t j_rfd_lock;
	struct read_fd { uint64_t seg, used; int fd; unsigned refs; bool gone; }
		j_rfds[READ_FDS];
	uint64_t j_rfd_clock;

	/* Group commit, under j_sync_lock. */
	pthread_mutex_t j_sync_lock;
	pthread_cond_t j_sync_cond;
	uint64_t j_synced;        /* records up to this seq are durable */
	bool j_syncing;
};

static int seg_path(const char *vol, uint64_t seg, char *out, size_t len)
{
	const int n = snprintf(out, len, "journal/%s/%016llx.jnl", vol,
			       (unsigned long long)seg);
	return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

static int dir_path(const char *vol, char *out, size_t len)
{
	const int n = snprintf(out, len, "journal/%s", vol);
	return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

/* A trimmed segment kept for reuse: its file, renamed. */
static int spare_path(const char *vol, uint64_t seg, char *out, size_t len)
{
	const int n = snprintf(out, len, "journal/%s/%016llx.spare", vol,
			       (unsigned long long)seg);
	return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

static int fsync_at(vd_store *s, const char *dir)
{
	const int fd = openat(s->st_dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = 0;

	if (fd < 0 || fsync(fd) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	return r;
}

/* The segment numbers in journal/VOL, sorted. */
DEFINE_VECTOR(u64_vec, uint64_t);

static int cmp_u64(const void *a, const void *b)
{
	const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The numbers of VOL's journal files named NNNNNNNNNNNNNNNN.SUFFIX, sorted. */
static int list_files(vd_store *s, const char *vol, const char *suffix,
		      u64_vec *out)
{
	char dir[128];
	DIR *d;
	int fd;

	if (dir_path(vol, dir, sizeof dir) < 0)
		return SET_ERROR(-ENAMETOOLONG, "journal of '%s': name too long", vol);
	fd = openat(s->st_dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0
		       : SET_ERROR(-errno, "%s/%s: %s", s->st_dir, dir, strerror(errno));
	if (!(d = fdopendir(fd))) {
		close(fd);
		return SET_ERROR(-errno, "%s/%s: %s", s->st_dir, dir, strerror(errno));
	}
	for (struct dirent *e; (e = readdir(d));) {
		unsigned long long seg;
		char tail[8];
		if (sscanf(e->d_name, "%16llx.%7s", &seg, tail) == 2 &&
		    !strcmp(tail, suffix) &&
		    strlen(e->d_name) == 17 + strlen(suffix) && seg &&
		    u64_vec_append(out, seg) < 0) {
			closedir(d);
			return SET_ERROR(-ENOMEM, "out of memory");
		}
	}
	closedir(d);
	if (out->len)
		qsort(out->ptr, out->len, sizeof *out->ptr, cmp_u64);
	return 0;
}

static int list_segments(vd_store *s, const char *vol, u64_vec *out)
{
	return list_files(s, vol, "jnl", out);
}

bool journal_exists(vd_store *s, const char *vol)
{
	u64_vec segs = { 0 };
	const bool any = list_segments(s, vol, &segs) == 0 && segs.len > 0;

	free(segs.ptr);
	return any;
}

void journal_sweep_spares(vd_store *s, const char *vol)
{
	u64_vec spares = { 0 };
	char path[160];

	if (list_files(s, vol, "spare", &spares) == 0)
		for (size_t i = 0; i < spares.len; i++)
			if (spare_path(vol, spares.ptr[i], path, sizeof path) == 0)
				unlinkat(s->st_dirfd, path, 0);
	free(spares.ptr);
}

int journal_remove(vd_store *s, const char *vol)
{
	u64_vec segs = { 0 };
	char path[160];
	int r;

	if ((r = list_segments(s, vol, &segs)) < 0)
		return r;
	journal_sweep_spares(s, vol);
	/* Oldest first, so that what is left is always a suffix. */
	for (size_t i = 0; i < segs.len; i++)
		if (seg_path(vol, segs.ptr[i], path, sizeof path) == 0 &&
		    unlinkat(s->st_dirfd, path, 0) < 0 && errno != ENOENT) {
			r = SET_ERROR(-errno, "%s/%s: %s", s->st_dir, path,
				      strerror(errno));
			break;
		}
	if (r == 0 && dir_path(vol, path, sizeof path) == 0)
		unlinkat(s->st_dirfd, path, AT_REMOVEDIR);
	free(segs.ptr);
	return r;
}

/* ---- replay ------------------------------------------------------------- */

/* Reads the chunk a CHUNK record's data BODY points to into OUT (SCRATCH:
 * a record buffer).  False if it is not there, whole and matching: it
 * never reached the disk, so no flush followed the write (a flush syncs
 * the pack file before the journal), and neither it nor any later write
 * was acknowledged as durable. */
static bool chunk_record_load(vd_store *s, const uint8_t *body, uint8_t *scratch,
			      uint8_t *out)
{
	struct fmt_jchunk jc;
	struct fmt_chunk c = { 0 };

	if (fmt_jchunk_decode(body, &jc) != 0)
		return false;
	c.pack_id = jc.pack_id;
	c.offset = jc.offset;
	c.stored_len = jc.stored_len;
	c.codec = jc.codec;
	return c.stored_len <= chunk_record_max(s) - FMT_REC_HEADER_SIZE &&
	       chunk_verify(s, jc.hash, &c, scratch, out) == 0;
}

/* Applies the valid records of segment SEG; *END is set where they end.
 * LAST: the newest segment, whose invalid tail is dropped.  Returns 1 if
 * replay must stop here (a chunk record whose chunk is not on disk). */
static int replay_segment(vd_store *s, struct journal *j, uint64_t seg,
			  bool last, journal_apply_fn fn, journal_epoch_fn efn,
			  void *opaque, uint64_t *applied)
{
	uint8_t hb[FMT_JNL_HEADER_SIZE], rb[FMT_JREC_HEADER_SIZE];
	struct fmt_jnl_header h;
	uint8_t *data = NULL, *chunk = NULL, *scratch = NULL;
	char path[160];
	struct stat st;
	uint64_t off;
	int fd, r = 0;

	seg_path(j->j_vol, seg, path, sizeof path);
	fd = openat(s->st_dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = SET_ERROR(-errno, "%s/%s: %s", s->st_dir, path, strerror(errno));
		goto out;
	}
	__atomic_add_fetch(&j->j_bytes, (uint64_t)st.st_size, __ATOMIC_RELAXED);
	if (pread_full(fd, hb, sizeof hb, 0) != (ssize_t)sizeof hb ||
	    fmt_jnl_header_decode(hb, &h) != 0 || h.segment != seg ||
	    memcmp(h.uuid, s->st_uuid, 16)) {
		/* A segment created but never synced may be empty or torn. */
		if (!last)
			r = SET_ERROR(VD_ECORRUPT, "%s/%s: bad journal header",
				      s->st_dir, path);
		goto out;
	}
	if (h.layer != j->j_layer)
		goto out; /* stale: an earlier life of the volume */
	/* A dead writer may have left the newest segment's tail unsynced.
	 * What replay seals must be durable in the journal first (the rule
	 * seal_batch keeps), so sync it now. */
	if (last && fdatasync(fd) < 0) {
		r = SET_ERROR(-errno, "%s/%s: fdatasync: %s", s->st_dir, path,
			      strerror(errno));
		goto out;
	}
	if (!(data = malloc(FMT_JREC_DATA_MAX)) ||
	    !(chunk = malloc(s->st_chunk_size)) ||
	    !(scratch = malloc(chunk_record_max(s)))) {
		r = SET_ERROR(-ENOMEM, "out of memory");
		goto out;
	}
	for (off = FMT_JNL_HEADER_SIZE;; ) {
		struct fmt_jrec rec;
		ssize_t n = pread_full(fd, rb, sizeof rb, off);
		bool ok = n == (ssize_t)sizeof rb && fmt_jrec_decode(rb, &rec) == 0 &&
			  rec.seq > j->j_seq;

		uint64_t dlen;

		if (n == 0 && off == (uint64_t)st.st_size)
			break; /* the clean end */
		if (ok && rec.kind == FMT_JREC_CHUNK)
			ok = rec.length == s->st_chunk_size &&
			     rec.offset % s->st_chunk_size == 0;
		dlen = ok ? fmt_jrec_data_len(rec.kind, rec.length) : 0;
		if (ok && dlen)
			ok = pread_full(fd, data, dlen, off + sizeof rb) == (ssize_t)dlen;
		if (ok)
			ok = fmt_jrec_verify(rb, &rec, data);
		if (!ok) {
			if (!last)
				r = SET_ERROR(VD_ECORRUPT, "%s/%s: damaged journal "
					      "record at offset %llu", s->st_dir,
					      path, (unsigned long long)off);
			break; /* the newest segment's torn tail: never flushed */
		}
		if (rec.kind == FMT_JREC_CHUNK &&
		    !chunk_record_load(s, data, scratch, chunk)) {
			r = 1; /* nothing from here on was flushed */
			break;
		}
		if (rec.kind == FMT_JREC_EPOCH) {
			if ((r = efn(opaque, rec.offset)) < 0)
				break;
		} else {
			const struct jloc loc = { seg, off + sizeof rb };
			const void *d = rec.kind == FMT_JREC_WRITE ? data
					: rec.kind == FMT_JREC_CHUNK ? chunk : NULL;
			if ((r = fn(opaque, d, rec.offset, rec.length, &loc)) < 0)
				break;
		}
		j->j_seq = rec.seq;
		(*applied)++;
		off += sizeof rb + dlen;
	}
out:
	free(data);
	free(chunk);
	free(scratch);
	if (fd >= 0)
		close(fd);
	return r;
}

int journal_open(vd_store *s, const char *vol, uint64_t layer,
		 uint64_t epoch, journal_apply_fn fn, journal_epoch_fn efn,
		 void *opaque, struct journal **out, uint64_t *applied)
{
	struct journal *j = calloc(1, sizeof *j);
	u64_vec segs = { 0 };
	size_t first;
	int r;

	*out = NULL;
	*applied = 0;
	if (!j)
		return SET_ERROR(-ENOMEM, "out of memory");
	j->j_store = s;
	j->j_layer = layer;
	j->j_epoch = epoch;
	j->j_fd = -1;
	snprintf(j->j_vol, sizeof j->j_vol, "%s", vol);
	pthread_mutex_init(&j->j_lock, NULL);
	pthread_mutex_init(&j->j_tail_lock, NULL);
	pthread_mutex_init(&j->j_sync_lock, NULL);
	pthread_cond_init(&j->j_sync_cond, NULL);
	pthread_mutex_init(&j->j_rfd_lock, NULL);
	for (size_t i = 0; i < READ_FDS; i++)
		j->j_rfds[i].fd = -1;
	if ((r = list_segments(s, vol, &segs)) < 0)
		goto err;
	/* The consecutive run ending at the newest segment. */
	first = segs.len;
	while (first > 0 && (first == segs.len ||
			     segs.ptr[first - 1] + 1 == segs.ptr[first]))
		first--;
	for (size_t i = first; i < segs.len; i++) {
		if ((r = replay_segment(s, j, segs.ptr[i], i + 1 == segs.len, fn,
					efn, opaque, applied)) < 0)
			goto err;
		if (r == 1) { /* the rest was never flushed: drop it */
			r = 0;
			break;
		}
	}
	j->j_first_seg = segs.len ? segs.ptr[0] : 1;
	j->j_seg = segs.len ? segs.ptr[segs.len - 1] : 0; /* next append: +1 */
	j->j_own_first = j->j_seg + 1;
	j->j_synced = j->j_seq;
	free(segs.ptr);
	*out = j;
	return 0;
err:
	free(segs.ptr);
	journal_close(j);
	return r;
}

void journal_close(struct journal *j)
{
	if (!j)
		return;
	if (j->j_fd >= 0)
		close(j->j_fd);
	for (size_t i = 0; i < j->j_nspares; i++) {
		char path[160];
		if (spare_path(j->j_vol, j->j_spares[i], path, sizeof path) == 0)
			unlinkat(j->j_store->st_dirfd, path, 0);
	}
	for (size_t i = 0; i < j->j_npins; i++)
		close(j->j_pins[i].fd);
	free(j->j_pins);
	free(j->j_weights);
	for (size_t i = 0; i < READ_FDS; i++)
		if (j->j_rfds[i].fd >= 0)
			close(j->j_rfds[i].fd);
	pthread_mutex_destroy(&j->j_rfd_lock);
	pthread_mutex_destroy(&j->j_lock);
	pthread_mutex_destroy(&j->j_tail_lock);
	pthread_mutex_destroy(&j->j_sync_lock);
	pthread_cond_destroy(&j->j_sync_cond);
	free(j);
}

static void trim_locked(struct journal *j, uint64_t keep);
static int append_record(struct journal *j, unsigned kind, uint64_t off,
			 const void *data, uint64_t len, struct jloc *loc);

/* ---- appending ---------------------------------------------------------- */

/* Reuses a spare file as the new segment PATH, whose header is HB: the
 * header and a first record that cannot be valid go in before the rename,
 * so that until the new segment's own first record is written the file
 * reads as an empty segment.  The records of its earlier life that stay
 * past the new ones all have lower sequence numbers (this handle wrote
 * them, and its numbers only grow), so replay, which takes only a
 * sequence number above the last, stops there as at a torn tail.  The
 * descriptor, or -1 (no spare, or it failed: make a new file). */
static int spare_take(struct journal *j, const uint8_t *hb, const char *path)
{
	vd_store *s = j->j_store;
	uint8_t head[FMT_JNL_HEADER_SIZE + FMT_JREC_HEADER_SIZE] = { 0 };
	char from[160];
	struct stat st;
	int fd;

	while (j->j_nspares > 0) {
		const uint64_t seg = j->j_spares[--j->j_nspares];
		if (spare_path(j->j_vol, seg, from, sizeof from) < 0)
			continue;
		fd = openat(s->st_dirfd, from, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		memcpy(head, hb, FMT_JNL_HEADER_SIZE);
		if (fstat(fd, &st) == 0 &&
		    pwrite_full(fd, head, sizeof head, 0) == 0 &&
		    renameat(s->st_dirfd, from, s->st_dirfd, path) == 0) {
			j->j_file_size = MAX((uint64_t)st.st_size, sizeof head);
			/* Its pages may have left the page cache since it was
			 * trimmed, and a record that covers part of a page
			 * would read it first: bring them back ahead. */
			(void)posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
			return fd;
		}
		close(fd);
		unlinkat(s->st_dirfd, from, 0);
	}
	return -1;
}

/* Keeps trimmed segment SEG (at PATH) as a spare if there is room and
 * this handle wrote it; false: the caller removes it. */
static bool spare_keep(struct journal *j, uint64_t seg, const char *path)
{
	char to[160];

	if (seg < j->j_own_first ||
	    j->j_nspares == sizeof j->j_spares / sizeof *j->j_spares ||
	    spare_path(j->j_vol, seg, to, sizeof to) < 0 ||
	    renameat(j->j_store->st_dirfd, path, j->j_store->st_dirfd, to) < 0)
		return false;
	j->j_spares[j->j_nspares++] = seg;
	return true;
}

/* Starts segment j_seg + 1, syncing the current one first so that only
 * the newest segment can have an unsynced tail.  Caller holds j_lock. */
static int segment_start(struct journal *j)
{
	vd_store *s = j->j_store;
	struct fmt_jnl_header h = { .version = FMT_JNL_VERSION, .layer = j->j_layer };
	uint8_t hb[FMT_JNL_HEADER_SIZE];
	char path[160];
	int fd, r;

	if ((r = sb_upgrade(s)) < 0)
		return r;
	/* The chunks the current segment's chunk records point to go to disk
	 * before it is synced, as its own bytes do: a flush then never has
	 * more than a segment's worth of either to sync. */
	if (j->j_seg_chunk) {
		struct pack_sync ps;

		pthread_mutex_lock(&s->st_pack_lock);
		r = pack_sync_start(s, &ps);
		pthread_mutex_unlock(&s->st_pack_lock);
		if (r == 0)
			r = pack_sync_finish(s, &ps);
		if (r < 0)
			return r;
	}
	if (j->j_fd >= 0) {
		/* Past the last record the file may hold zeros written ahead
		 * or, reused, an earlier life's records: cut them off, durably
		 * (fsync: the size), before a newer segment makes this one an
		 * older one, which replay reads to its end. */
		if (j->j_file_size > j->j_size) {
			if (ftruncate(j->j_fd, (off_t)j->j_size) < 0 || fsync(j->j_fd) < 0)
				return SET_ERROR(-errno, "journal of '%s': truncate: %s",
						 j->j_vol, strerror(errno));
		} else if (fdatasync(j->j_fd) < 0) {
			return SET_ERROR(-errno, "journal of '%s': fdatasync: %s",
					 j->j_vol, strerror(errno));
		}
		pthread_mutex_lock(&j->j_tail_lock);
		close(j->j_fd);
		j->j_fd = -1;
		pthread_mutex_unlock(&j->j_tail_lock);
	}
	dir_path(j->j_vol, path, sizeof path);
	if (mkdirat(s->st_dirfd, path, 0755) < 0 && errno != EEXIST)
		return SET_ERROR(-errno, "%s/%s: %s", s->st_dir, path, strerror(errno));
	h.segment = j->j_seg + 1;
	memcpy(h.uuid, s->st_uuid, 16);
	seg_path(j->j_vol, h.segment, path, sizeof path);
	fmt_jnl_header_encode(&h, hb);
	if ((fd = spare_take(j, hb, path)) < 0) {
		fd = openat(s->st_dirfd, path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			return SET_ERROR(-errno, "%s/%s: %s", s->st_dir, path, strerror(errno));
		if ((r = pwrite_full(fd, hb, sizeof hb, 0)) < 0) {
			close(fd);
			unlinkat(s->st_dirfd, path, 0);
			return SET_ERROR(r, "%s/%s: %s", s->st_dir, path, strerror(-r));
		}
		j->j_file_size = sizeof hb;
	}
	pthread_mutex_lock(&j->j_tail_lock);
	if (j->j_seg == 0 || journal_bytes(j) == 0)
		j->j_first_seg = h.segment;
	j->j_fd = fd;
	j->j_seg = h.segment;
	j->j_size = FMT_JNL_HEADER_SIZE;
	j->j_wb_from = 0;
	j->j_seg_chunk = 0;
	__atomic_add_fetch(&j->j_bytes, FMT_JNL_HEADER_SIZE, __ATOMIC_RELAXED);
	j->j_dir_unsynced = true;
	pthread_mutex_unlock(&j->j_tail_lock);
	/* The segment's records get a known epoch, whatever is trimmed. */
	{
		struct jloc loc;
		return append_record(j, FMT_JREC_EPOCH, j->j_epoch, NULL, 0, &loc);
	}
}

/* Makes sure the current segment's file is written up to END, so that
 * the records up to there overwrite written blocks: zeros up to the next
 * ZERO_AHEAD past it, their writeback started, so the flush that commits
 * the new blocks finds them on their way.  Every append comes here first.
 * In 64 KiB writes: the page cache sizes its folios by the write, and a
 * record's write walks every block of the folios it touches (python, this
 * VM: 3.6 us a 4 KiB record over zeros written 1 MiB at a time, 1.9 us
 * over 64 KiB ones).  Caller holds j_lock. */
static int zero_ahead(struct journal *j, uint64_t end)
{
	static uint8_t zeros[ZERO_BUF]; /* never written: in .bss, not the binary */
	const uint64_t to = (end + ZERO_AHEAD - 1) / ZERO_AHEAD * ZERO_AHEAD;
	const uint64_t from = MAX(j->j_file_size, j->j_size); /* never over a record */
	int r;

	if (end <= from)
		return 0;
	for (j->j_file_size = from; j->j_file_size < to;) {
		const size_t n = (size_t)MIN(ZERO_BUF, to - j->j_file_size);
		if ((r = pwrite_full(j->j_fd, zeros, n, j->j_file_size)) < 0)
			return SET_ERROR(r, "journal of '%s': write: %s", j->j_vol,
					 strerror(-r));
		j->j_file_size += n;
	}
	(void)sync_file_range(j->j_fd, (off_t)from, (off_t)(to - from),
			      SYNC_FILE_RANGE_WRITE);
	return 0;
}

/* Appends one record; *LOC says where its data went.  Caller holds
 * j_lock. */
static int append_record(struct journal *j, unsigned kind, uint64_t off,
			 const void *data, uint64_t len, struct jloc *loc)
{
	struct fmt_jrec rec = { .kind = (uint16_t)kind, .offset = off,
				.length = len };
	uint8_t hb[FMT_JREC_HEADER_SIZE];
	struct iovec iov[2] = { { hb, sizeof hb }, { (void *)data, 0 } };
	const uint64_t dlen = fmt_jrec_data_len(kind, len);
	const size_t total = sizeof hb + dlen;
	int r;

	if ((j->j_fd < 0 || j->j_size + j->j_seg_chunk + total > SEGMENT_MAX) &&
	    (r = segment_start(j)) < 0)
		return r;
	if ((r = zero_ahead(j, j->j_size + total)) < 0)
		return r;
	rec.seq = j->j_seq + 1; /* after the new segment's epoch marker */
	fmt_jrec_encode(&rec, data, hb);
	iov[1].iov_len = dlen;
	loc->seg = j->j_seg;
	loc->pos = j->j_size + sizeof hb;
	for (size_t done = 0; done < total;) {
		const ssize_t n = pwritev(j->j_fd, iov, 2, (off_t)(j->j_size + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return SET_ERROR(n < 0 ? -errno : -EIO, "journal of '%s': "
					 "write: %s", j->j_vol,
					 strerror(n < 0 ? errno : EIO));
		done += (size_t)n;
		if (done < total) { /* short: go on from where it stopped */
			size_t skip = (size_t)n;
			for (int i = 0; i < 2; i++) {
				const size_t d = MIN(skip, iov[i].iov_len);
				iov[i].iov_base = (char *)iov[i].iov_base + d;
				iov[i].iov_len -= d;
				skip -= d;
			}
		}
	}
	pthread_mutex_lock(&j->j_tail_lock);
	j->j_size += total;
	__atomic_add_fetch(&j->j_bytes, total, __ATOMIC_RELAXED);
	j->j_seq = rec.seq;
	pthread_mutex_unlock(&j->j_tail_lock);
	writeback_start(j->j_fd, &j->j_wb_from, j->j_size);
	return 0;
}

int journal_mark_epoch(struct journal *j, uint64_t epoch)
{
	struct jloc loc;
	int r;

	pthread_mutex_lock(&j->j_lock);
	r = append_record(j, FMT_JREC_EPOCH, epoch, NULL, 0, &loc);
	if (r == 0)
		j->j_epoch = epoch;
	pthread_mutex_unlock(&j->j_lock);
	return r;
}

int journal_write(struct journal *j, unsigned kind, uint64_t off,
		  const void *data, uint64_t len, journal_apply_fn apply,
		  void *opaque)
{
	int r = 0;

	pthread_mutex_lock(&j->j_lock);
	for (uint64_t done = 0; done < len && r == 0;) {
		const uint64_t n = kind == FMT_JREC_WRITE
				   ? MIN(len - done, (uint64_t)FMT_JREC_DATA_MAX)
				   : len - done;
		const uint8_t *part = data ? (const uint8_t *)data + done : NULL;
		struct jloc loc;

		/* Each record is applied as soon as it is journaled, in the
		 * order journaled: replay gives the same bytes. */
		if ((r = append_record(j, kind, off + done, part, n, &loc)) == 0)
			r = apply(opaque, part, off + done, n, &loc);
		done += n;
	}
	if (__atomic_exchange_n(&j->j_trim_pending, false, __ATOMIC_ACQ_REL) &&
	    j->j_keep)
		trim_locked(j, j->j_keep(j->j_keep_opaque, j->j_first_seg));
	pthread_mutex_unlock(&j->j_lock);
	return r;
}

/* Pins pack ID (FD: a pack_pin descriptor, or -1) for records in the
 * current segment.  Caller holds j_lock and, if FD is -1, st_pack_lock
 * with ID the writer pack. */
static int pin_pack(struct journal *j, uint32_t id)
{
	size_t i;

	for (i = 0; i < j->j_npins && j->j_pins[i].pack != id; i++)
		;
	if (i == j->j_npins) {
		uint32_t got;
		const int fd = pack_pin(j->j_store, &got);
		if (fd < 0)
			return fd;
		if (vector_reserve((void **)&j->j_pins, &j->j_pins_cap, j->j_npins, 1,
				   sizeof *j->j_pins) < 0) {
			close(fd);
			return SET_ERROR(-ENOMEM, "out of memory");
		}
		assert(got == id);
		j->j_pins[j->j_npins++] = (struct pack_pin){ id, fd, 0 };
	}
	j->j_pins[i].seg = j->j_seg;
	return 0;
}

/* Counts a chunk record's chunk toward the current segment's bytes. */
static int weigh(struct journal *j, uint64_t bytes)
{
	if (!j->j_nweights || j->j_weights[j->j_nweights - 1].seg != j->j_seg) {
		if (vector_reserve((void **)&j->j_weights, &j->j_weights_cap,
				   j->j_nweights, 1, sizeof *j->j_weights) < 0)
			return SET_ERROR(-ENOMEM, "out of memory");
		j->j_weights[j->j_nweights++] = (struct seg_weight){ j->j_seg, 0 };
	}
	j->j_weights[j->j_nweights - 1].bytes += bytes;
	pthread_mutex_lock(&j->j_tail_lock);
	j->j_seg_chunk += bytes;
	pthread_mutex_unlock(&j->j_tail_lock);
	__atomic_add_fetch(&j->j_chunk_bytes, bytes, __ATOMIC_RELAXED);
	return 0;
}

/* Appends chunk records for CW[0..N) with one write; LOCS gets where
 * each record's data went.  Caller holds j_lock; the current segment is
 * open. */
static int append_chunk_records(struct journal *j, const struct chunk_write *cw,
				size_t n, struct jloc *locs)
{
	enum { REC = FMT_JREC_HEADER_SIZE + FMT_JCHUNK_SIZE };
	const uint32_t cs = j->j_store->st_chunk_size;
	uint8_t *buf = malloc(n * REC);
	int r;

	if (!buf)
		return SET_ERROR(-ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		struct fmt_jrec rec = { .kind = FMT_JREC_CHUNK, .seq = j->j_seq + 1 + i,
					.offset = cw[i].off, .length = cs };
		struct fmt_jchunk jc = { .pack_id = cw[i].at.pack_id,
					 .codec = cw[i].at.codec,
					 .offset = cw[i].at.offset,
					 .stored_len = cw[i].at.stored_len };
		uint8_t *p = buf + i * REC;

		memcpy(jc.hash, cw[i].hash, 32);
		fmt_jchunk_encode(&jc, p + FMT_JREC_HEADER_SIZE);
		fmt_jrec_encode(&rec, p + FMT_JREC_HEADER_SIZE, p);
		locs[i] = (struct jloc){ j->j_seg, j->j_size + i * REC +
					 FMT_JREC_HEADER_SIZE };
	}
	if ((r = zero_ahead(j, j->j_size + n * REC)) < 0) {
		free(buf);
		return r;
	}
	r = pwrite_full(j->j_fd, buf, n * REC, j->j_size);
	free(buf);
	if (r < 0)
		return SET_ERROR(r, "journal of '%s': write: %s", j->j_vol, strerror(-r));
	pthread_mutex_lock(&j->j_tail_lock);
	j->j_size += n * REC;
	__atomic_add_fetch(&j->j_bytes, n * REC, __ATOMIC_RELAXED);
	j->j_seq += n;
	pthread_mutex_unlock(&j->j_tail_lock);
	return 0;
}

int journal_write_chunks(struct journal *j, struct chunk_write *cw, size_t n,
			 journal_chunk_fn apply, void *opaque)
{
	vd_store *s = j->j_store;
	const uint64_t weight = (uint64_t)n * (FMT_JREC_HEADER_SIZE + FMT_JCHUNK_SIZE +
					       s->st_chunk_size);
	struct jloc *locs = malloc(n * sizeof *locs);
	int r;

	if (!locs)
		return SET_ERROR(-ENOMEM, "out of memory");
	pthread_mutex_lock(&j->j_lock);
	/* The records' segment first, so that the pin names it. */
	if ((j->j_fd < 0 || (j->j_size + j->j_seg_chunk + weight > SEGMENT_MAX &&
			     j->j_size + j->j_seg_chunk > SEGMENT_EMPTY)) &&
	    (r = segment_start(j)) < 0)
		goto out;
	pthread_mutex_lock(&s->st_pack_lock);
	r = chunk_append(s, cw, n);
	if (r == 0)
		r = pin_pack(j, cw[0].at.pack_id);
	pthread_mutex_unlock(&s->st_pack_lock);
	if (r < 0 || (r = append_chunk_records(j, cw, n, locs)) < 0 ||
	    (r = weigh(j, (uint64_t)n * s->st_chunk_size)) < 0)
		goto out;
	for (size_t i = 0; i < n && r == 0; i++)
		r = apply(opaque, cw[i].off, cw[i].hash, &cw[i].at, &locs[i]);
out:
	if (__atomic_exchange_n(&j->j_trim_pending, false, __ATOMIC_ACQ_REL) &&
	    j->j_keep)
		trim_locked(j, j->j_keep(j->j_keep_opaque, j->j_first_seg));
	pthread_mutex_unlock(&j->j_lock);
	free(locs);
	return r;
}

/* The cached read handle of segment SEG, in use (*SLOT) until rfd_put;
 * -1 if it is not cached. */
static int rfd_find(struct journal *j, uint64_t seg, int *slot)
{
	for (int i = 0; i < READ_FDS; i++) {
		struct read_fd *e = &j->j_rfds[i];
		if (e->fd >= 0 && !e->gone && e->seg == seg) {
			e->refs++;
			e->used = ++j->j_rfd_clock;
			*slot = i;
			return e->fd;
		}
	}
	return -1;
}

/* Caches FD, just opened for SEG, in the least recently used free slot
 * (*SLOT -1: none is free, the caller closes it after use); or, if
 * another thread cached SEG meanwhile, closes FD and returns that one. */
static int rfd_insert(struct journal *j, uint64_t seg, int fd, int *slot)
{
	struct read_fd *victim = NULL;
	int have;

	pthread_mutex_lock(&j->j_rfd_lock);
	if ((have = rfd_find(j, seg, slot)) >= 0) {
		pthread_mutex_unlock(&j->j_rfd_lock);
		close(fd);
		return have;
	}
	*slot = -1;
	for (int i = 0; i < READ_FDS; i++) {
		struct read_fd *e = &j->j_rfds[i];
		if (e->refs == 0 && (!victim || e->fd < 0 ||
				     (victim->fd >= 0 && e->used < victim->used))) {
			victim = e;
			*slot = i;
		}
	}
	if (victim) {
		if (victim->fd >= 0)
			close(victim->fd);
		*victim = (struct read_fd){ seg, ++j->j_rfd_clock, fd, 1, false };
	}
	pthread_mutex_unlock(&j->j_rfd_lock);
	return fd;
}

/* Opens segment SEG for reading, through the cache; 0 or -errno. */
/* Closes the cached handles nobody is using. */
static void rfd_close_idle(struct journal *j)
{
	pthread_mutex_lock(&j->j_rfd_lock);
	for (int i = 0; i < READ_FDS; i++) {
		struct read_fd *e = &j->j_rfds[i];
		if (e->fd >= 0 && e->refs == 0) {
			close(e->fd);
			e->fd = -1;
		}
	}
	pthread_mutex_unlock(&j->j_rfd_lock);
}

static int rfd_get(struct journal *j, uint64_t seg, int *fd, int *slot)
{
	vd_store *s = j->j_store;
	char path[160];

	pthread_mutex_lock(&j->j_rfd_lock);
	*fd = rfd_find(j, seg, slot);
	pthread_mutex_unlock(&j->j_rfd_lock);
	if (*fd >= 0)
		return 0;
	seg_path(j->j_vol, seg, path, sizeof path);
	*fd = openat(s->st_dirfd, path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0 && (errno == EMFILE || errno == ENFILE)) {
		/* Out of descriptors (many heads served): give back the
		 * idle ones kept here and try once more. */
		rfd_close_idle(j);
		*fd = openat(s->st_dirfd, path, O_RDONLY | O_CLOEXEC);
	}
	if (*fd < 0)
		return errno == ENOENT ? -ENOENT
		       : SET_ERROR(-errno, "%s/%s: %s", s->st_dir, path,
				   strerror(errno));
	*fd = rfd_insert(j, seg, *fd, slot);
	return 0;
}

static void rfd_put(struct journal *j, int fd, int slot)
{
	struct read_fd *e;

	if (slot < 0) {
		close(fd);
		return;
	}
	e = &j->j_rfds[slot];
	pthread_mutex_lock(&j->j_rfd_lock);
	if (--e->refs == 0 && e->gone) {
		close(e->fd);
		e->fd = -1;
	}
	pthread_mutex_unlock(&j->j_rfd_lock);
}

/* Trimmed segments: their handles go (a read of one finds it missing, as
 * without the cache), each once its last reader is done. */
static void rfd_drop_below(struct journal *j, uint64_t first)
{
	pthread_mutex_lock(&j->j_rfd_lock);
	for (int i = 0; i < READ_FDS; i++) {
		struct read_fd *e = &j->j_rfds[i];
		if (e->fd < 0 || e->seg >= first)
			continue;
		e->gone = true;
		if (e->refs == 0) {
			close(e->fd);
			e->fd = -1;
		}
	}
	pthread_mutex_unlock(&j->j_rfd_lock);
}

int journal_read(struct journal *j, uint64_t seg, uint64_t pos, void *buf,
		 size_t len)
{
	vd_store *s = j->j_store;
	char path[160];
	ssize_t n;
	int fd, slot, r;

	if ((r = rfd_get(j, seg, &fd, &slot)) < 0)
		return r;
	n = pread_full(fd, buf, len, pos);
	rfd_put(j, fd, slot);
	if (n < 0 || (size_t)n != len)
		seg_path(j->j_vol, seg, path, sizeof path);
	if (n < 0)
		return SET_ERROR((int)n, "%s/%s: read: %s", s->st_dir, path,
				 strerror((int)-n));
	if ((size_t)n != len)
		return SET_ERROR(VD_ECORRUPT, "%s/%s: journaled data at %llu is cut "
				 "short", s->st_dir, path, (unsigned long long)pos);
	return 0;
}

int journal_sync(struct journal *j)
{
	uint64_t want, upto;
	int fd = -1, r = 0;
	bool dir;

	/* Never j_lock: its holder may be waiting for a seal, and seals sync. */
	pthread_mutex_lock(&j->j_tail_lock);
	want = j->j_seq;
	pthread_mutex_unlock(&j->j_tail_lock);

	pthread_mutex_lock(&j->j_sync_lock);
	while (j->j_synced < want && j->j_syncing)
		pthread_cond_wait(&j->j_sync_cond, &j->j_sync_lock);
	if (j->j_synced >= want) {
		pthread_mutex_unlock(&j->j_sync_lock);
		return 0;
	}
	j->j_syncing = true;
	pthread_mutex_unlock(&j->j_sync_lock);

	/* One fdatasync covers every record appended before it starts. */
	pthread_mutex_lock(&j->j_tail_lock);
	upto = j->j_seq;
	if (j->j_fd >= 0)
		fd = dup(j->j_fd);
	dir = j->j_dir_unsynced;
	j->j_dir_unsynced = false;
	pthread_mutex_unlock(&j->j_tail_lock);
	if (fd >= 0 && fdatasync(fd) < 0)
		r = SET_ERROR(-errno, "journal of '%s': fdatasync: %s", j->j_vol,
			      strerror(errno));
	if (fd >= 0)
		close(fd);
	/* A new segment's name must survive too, and so must the entries of
	 * journal/VOL and journal/ (their first time). */
	if (r == 0 && dir) {
		char path[128];
		dir_path(j->j_vol, path, sizeof path);
		if ((r = fsync_at(j->j_store, path)) == 0 &&
		    (r = fsync_at(j->j_store, "journal")) == 0 &&
		    fsync(j->j_store->st_dirfd) < 0)
			r = -errno;
		if (r < 0) {
			pthread_mutex_lock(&j->j_tail_lock);
			j->j_dir_unsynced = true;
			pthread_mutex_unlock(&j->j_tail_lock);
			r = SET_ERROR(r, "journal of '%s': fsync of its directory: %s",
				      j->j_vol, strerror(-r));
		}
	}

	pthread_mutex_lock(&j->j_sync_lock);
	j->j_syncing = false;
	if (r == 0 && upto > j->j_synced)
		j->j_synced = upto;
	pthread_cond_broadcast(&j->j_sync_cond);
	pthread_mutex_unlock(&j->j_sync_lock);
	return r;
}

/* ---- trimming ----------------------------------------------------------- */

uint64_t journal_bytes(struct journal *j)
{
	return __atomic_load_n(&j->j_bytes, __ATOMIC_RELAXED) +
	       __atomic_load_n(&j->j_chunk_bytes, __ATOMIC_RELAXED);
}

/* After trimming: the segments below j_first_seg are gone.  Their chunk
 * bytes go, and so do the pins of packs that only they named, once the
 * removals are durable (a segment that came back after a crash would
 * point into a pack compacted meanwhile). */
static void trim_done(struct journal *j)
{
	size_t k = 0;
	bool unpin = false;

	for (size_t i = 0; i < j->j_nweights; i++) {
		if (j->j_weights[i].seg >= j->j_first_seg)
			j->j_weights[k++] = j->j_weights[i];
		else
			__atomic_sub_fetch(&j->j_chunk_bytes, j->j_weights[i].bytes,
					   __ATOMIC_RELAXED);
	}
	j->j_nweights = k;
	for (size_t i = 0; i < j->j_npins; i++)
		unpin |= j->j_pins[i].seg < j->j_first_seg;
	if (!unpin)
		return;
	{
		char path[128];
		dir_path(j->j_vol, path, sizeof path);
		if (fsync_at(j->j_store, path) < 0)
			return; /* keep them: the next trim tries again */
	}
	k = 0;
	for (size_t i = 0; i < j->j_npins; i++) {
		if (j->j_pins[i].seg < j->j_first_seg)
			close(j->j_pins[i].fd);
		else
			j->j_pins[k++] = j->j_pins[i];
	}
	j->j_npins = k;
}

/* Removes the segments below KEEP, oldest first.  Caller holds j_lock, so
 * no write is between its append and its application: KEEP, computed under
 * j_lock from what is dirty, accounts for every record appended. */
static void trim_locked(struct journal *j, uint64_t keep)
{
	vd_store *s = j->j_store;
	char path[160];

	/* Nothing live at all: the current segment can go too. */
	if (keep > j->j_seg && j->j_fd >= 0) {
		pthread_mutex_lock(&j->j_tail_lock);
		close(j->j_fd);
		j->j_fd = -1;
		pthread_mutex_unlock(&j->j_tail_lock);
	}
	while (j->j_first_seg < keep && j->j_first_seg <= j->j_seg &&
	       !(j->j_fd >= 0 && j->j_first_seg == j->j_seg)) {
		struct stat st;
		seg_path(j->j_vol, j->j_first_seg, path, sizeof path);
		if (fstatat(s->st_dirfd, path, &st, 0) == 0)
			__atomic_sub_fetch(&j->j_bytes,
					   MIN(__atomic_load_n(&j->j_bytes, __ATOMIC_RELAXED),
					       (uint64_t)st.st_size),
					   __ATOMIC_RELAXED);
		if (!spare_keep(j, j->j_first_seg, path) &&
		    unlinkat(s->st_dirfd, path, 0) < 0 && errno != ENOENT)
			break; /* left for later */
		j->j_first_seg++;
	}
	rfd_drop_below(j, j->j_first_seg);
	trim_done(j);
}

void journal_set_keep(struct journal *j, uint64_t (*keep)(void *, uint64_t),
		      void *opaque)
{
	j->j_keep = keep;
	j->j_keep_opaque = opaque;
}

void journal_trim(struct journal *j)
{
	/* Never wait for j_lock here: a writer holding it may itself be
	 * waiting for the seal that called us to free memory.  If it is
	 * taken, the next write does the trim. */
	if (pthread_mutex_trylock(&j->j_lock) != 0) {
		__atomic_store_n(&j->j_trim_pending, true, __ATOMIC_RELEASE);
		return;
	}
	__atomic_store_n(&j->j_trim_pending, false, __ATOMIC_RELAXED);
	trim_locked(j, j->j_keep ? j->j_keep(j->j_keep_opaque, j->j_first_seg) : 0);
	pthread_mutex_unlock(&j->j_lock);
}

void journal_trim_all(struct journal *j)
{
	pthread_mutex_lock(&j->j_lock);
	trim_locked(j, UINT64_MAX);
	pthread_mutex_unlock(&j->j_lock);
}
