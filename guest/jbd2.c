/* guest/jbd2.c: jbd2 journal replay into an in-memory overlay, from the
 * format described in the kernel's Documentation/filesystems/ext4/
 * journal.rst (all fields big-endian).
 *
 * The log starts at the journal superblock's s_start with transaction
 * s_sequence and runs, wrapping from the last block back to s_first, for
 * as long as blocks carry the magic and the expected sequence.  Only
 * transactions closed by a commit block count.  Three walks over them:
 *   1. scan: find where the committed log ends;
 *   2. revoke: note, for each revoked block, the newest transaction that
 *      revoked it;
 *   3. replay: copy each logged block into the overlay unless a revoke in
 *      its own or a later transaction covers it; later copies win.
 * Checksums (csum v2/v3, the compat checksum) are tolerated, not checked:
 * a torn transaction has no commit block and is dropped either way.
 * Every walk is bounded by the journal's length. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "guest/jbd2.h"

#define JBD2_MAGIC 0xc03b3998u

enum {
	BT_DESCRIPTOR = 1,
	BT_COMMIT = 2,
	BT_SUPER_V1 = 3,
	BT_SUPER_V2 = 4,
	BT_REVOKE = 5,
};

#define INCOMPAT_REVOKE   0x01u
#define INCOMPAT_64BIT    0x02u
#define INCOMPAT_ASYNC    0x04u
#define INCOMPAT_CSUM_V2  0x08u
#define INCOMPAT_CSUM_V3  0x10u
#define INCOMPAT_FAST_COMMIT 0x20u
#define INCOMPAT_KNOWN (INCOMPAT_REVOKE | INCOMPAT_64BIT | INCOMPAT_ASYNC | \
			INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3)

#define TAG_ESCAPE    0x1u
#define TAG_SAME_UUID 0x2u
#define TAG_LAST      0x8u

/* ---- a block -> value hash (open addressing, linear probing) --------- */

struct map {
	uint64_t *keys; /* block + 1; 0 is empty */
	uint64_t *vals;
	size_t cap, count;
};

static int map_grow(struct map *m)
{
	const size_t cap = m->cap ? m->cap * 2 : 1024;
	uint64_t *keys = calloc(cap, sizeof(*keys));
	uint64_t *vals = calloc(cap, sizeof(*vals));

	if (!keys || !vals) {
		free(keys);
		free(vals);
		return -ENOMEM;
	}
	for (size_t i = 0; i < m->cap; i++) {
		size_t j;
		if (!m->keys[i])
			continue;
		for (j = (m->keys[i] * 0x9e3779b97f4a7c15ull) & (cap - 1);
		     keys[j]; j = (j + 1) & (cap - 1))
			;
		keys[j] = m->keys[i];
		vals[j] = m->vals[i];
	}
	free(m->keys);
	free(m->vals);
	m->keys = keys;
	m->vals = vals;
	m->cap = cap;
	return 0;
}

/* The slot of BLOCK, or of where it would go. */
static size_t map_slot(const struct map *m, uint64_t block)
{
	size_t j = ((block + 1) * 0x9e3779b97f4a7c15ull) & (m->cap - 1);

	while (m->keys[j] && m->keys[j] != block + 1)
		j = (j + 1) & (m->cap - 1);
	return j;
}

static uint64_t *map_get(const struct map *m, uint64_t block)
{
	size_t j;

	if (!m->cap)
		return NULL;
	j = map_slot(m, block);
	return m->keys[j] ? &m->vals[j] : NULL;
}

static int map_put(struct map *m, uint64_t block, uint64_t val)
{
	size_t j;
	int rc;

	if ((m->count + 1) * 2 > m->cap && (rc = map_grow(m)) < 0)
		return rc;
	j = map_slot(m, block);
	if (!m->keys[j]) {
		m->keys[j] = block + 1;
		m->count++;
	}
	m->vals[j] = val;
	return 0;
}

static void map_free(struct map *m)
{
	free(m->keys);
	free(m->vals);
}

/* ---- the overlay ------------------------------------------------------- */

struct jbd2_overlay {
	unsigned block_size;
	struct map index; /* fs block -> slot in data */
	uint8_t *data;
	size_t used, cap; /* slots */
};

static int overlay_put(struct jbd2_overlay *o, uint64_t block,
		       const uint8_t *buf)
{
	const uint64_t *slot = map_get(&o->index, block);
	int rc;

	if (slot) {
		memcpy(o->data + *slot * o->block_size, buf, o->block_size);
		return 0;
	}
	if (o->used == o->cap) {
		const size_t cap = o->cap ? o->cap * 2 : 64;
		uint8_t *data = realloc(o->data, cap * o->block_size);
		if (!data)
			return -ENOMEM;
		o->data = data;
		o->cap = cap;
	}
	rc = map_put(&o->index, block, o->used);
	if (rc < 0)
		return rc;
	memcpy(o->data + o->used * o->block_size, buf, o->block_size);
	o->used++;
	return 0;
}

const void *jbd2_overlay_block(const struct jbd2_overlay *o, uint64_t block)
{
	const uint64_t *slot = o ? map_get(&o->index, block) : NULL;

	return slot ? o->data + *slot * o->block_size : NULL;
}

size_t jbd2_overlay_count(const struct jbd2_overlay *o)
{
	return o ? o->used : 0;
}

void jbd2_overlay_free(struct jbd2_overlay *o)
{
	if (!o)
		return;
	map_free(&o->index);
	free(o->data);
	free(o);
}

/* ---- the log ------------------------------------------------------------- */

struct journal {
	jbd2_read_fn read;
	void *opaque;
	unsigned bs;
	uint32_t first, maxlen, start, sequence;
	uint32_t incompat;
	uint64_t fs_blocks;
	uint8_t *buf, *data;
};

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void note(char *notes, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void note(char *notes, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!notes || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(notes, len, fmt, ap);
	va_end(ap);
}

static uint32_t next_block(const struct journal *j, uint32_t pos)
{
	return pos + 1 >= j->maxlen ? j->first : pos + 1;
}

/* A tid later than B, with sequence numbers wrapping at 2^32. */
static int tid_after(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) > 0;
}

/* Tag size as laid out in a descriptor block, without the UUID. */
static size_t tag_size(const struct journal *j)
{
	size_t sz;

	if (j->incompat & INCOMPAT_CSUM_V3)
		return 16;
	sz = j->incompat & INCOMPAT_64BIT ? 12 : 8;
	/* csum v2 tags carry two more bytes than the v1 layout (the
	 * kernel's tag struct with a 16-bit checksum appended). */
	if (j->incompat & INCOMPAT_CSUM_V2)
		sz += 2;
	return sz;
}

static size_t tail_size(const struct journal *j)
{
	return j->incompat & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3) ? 4 : 0;
}

struct tag {
	uint64_t block;
	uint32_t flags;
};

/* Reads the tags of descriptor block J->buf into TAGS (at most MAX).
 * Returns how many. */
static size_t parse_tags(const struct journal *j, struct tag *tags,
			 size_t max)
{
	const size_t tsz = tag_size(j), end = j->bs - tail_size(j);
	size_t off = 12, n = 0;

	while (n < max && off + tsz <= end) {
		const uint8_t *t = j->buf + off;
		struct tag *tag = &tags[n++];

		tag->block = be32(t);
		if (j->incompat & INCOMPAT_CSUM_V3) {
			tag->flags = be32(t + 4);
			if (j->incompat & INCOMPAT_64BIT)
				tag->block |= (uint64_t)be32(t + 8) << 32;
		} else {
			tag->flags = (uint32_t)t[6] << 8 | t[7];
			if (j->incompat & INCOMPAT_64BIT)
				tag->block |= (uint64_t)be32(t + 8) << 32;
		}
		off += tsz;
		if (!(tag->flags & TAG_SAME_UUID))
			off += 16;
		if (tag->flags & TAG_LAST)
			break;
	}
	return n;
}

enum pass { PASS_SCAN, PASS_REVOKE, PASS_REPLAY };

struct walk {
	uint32_t end_seq;     /* first transaction not committed (scan) */
	uint64_t replayed, dropped, revoked;
	struct map revokes;   /* block -> newest revoking tid */
	struct jbd2_overlay *overlay;
};

static int read_jblock(const struct journal *j, uint32_t pos, uint8_t *buf)
{
	return j->read(j->opaque, pos, buf);
}

/* One walk of the log.  In PASS_SCAN it sets W->end_seq; the other passes
 * stop at it. */
static int walk_log(const struct journal *j, enum pass pass, struct walk *w)
{
	const size_t max_tags = j->bs / 8;
	struct tag *tags = malloc(max_tags * sizeof(*tags));
	uint32_t pos = j->start, seq = j->sequence;
	uint64_t visited = 0;
	int rc = 0;

	if (!tags)
		return -ENOMEM;
	if (pass == PASS_SCAN)
		w->end_seq = seq;
	while (visited < j->maxlen) {
		uint32_t type;

		if (pass != PASS_SCAN && seq == w->end_seq)
			break;
		rc = read_jblock(j, pos, j->buf);
		if (rc < 0)
			break;
		visited++;
		if (be32(j->buf) != JBD2_MAGIC || be32(j->buf + 8) != seq)
			break;
		type = be32(j->buf + 4);
		if (type == BT_DESCRIPTOR) {
			const size_t n = parse_tags(j, tags, max_tags);
			pos = next_block(j, pos);
			for (size_t i = 0; i < n; i++) {
				if (visited >= j->maxlen)
					break;
				if (pass == PASS_REPLAY) {
					const uint64_t *rseq;
					rc = read_jblock(j, pos, j->data);
					if (rc < 0)
						goto out;
					rseq = map_get(&w->revokes,
						       tags[i].block);
					if (rseq && !tid_after(seq,
							       (uint32_t)*rseq)) {
						w->revoked++;
					} else if (tags[i].block >= j->fs_blocks) {
						w->dropped++;
					} else {
						if (tags[i].flags & TAG_ESCAPE) {
							j->data[0] = 0xc0;
							j->data[1] = 0x3b;
							j->data[2] = 0x39;
							j->data[3] = 0x98;
						}
						rc = overlay_put(w->overlay,
								 tags[i].block,
								 j->data);
						if (rc < 0)
							goto out;
						w->replayed++;
					}
				}
				pos = next_block(j, pos);
				visited++;
			}
			continue;
		}
		if (type == BT_REVOKE) {
			const size_t esz = j->incompat & INCOMPAT_64BIT ? 8 : 4;
			uint32_t count = be32(j->buf + 12);
			if (count > j->bs - tail_size(j))
				count = (uint32_t)(j->bs - tail_size(j));
			if (pass == PASS_REVOKE) {
				for (size_t off = 16; off + esz <= count;
				     off += esz) {
					const uint64_t b = esz == 8 ?
						be64(j->buf + off) :
						be32(j->buf + off);
					const uint64_t *old =
						map_get(&w->revokes, b);
					if (old && !tid_after(seq,
							      (uint32_t)*old))
						continue;
					rc = map_put(&w->revokes, b, seq);
					if (rc < 0)
						goto out;
				}
			}
			pos = next_block(j, pos);
			continue;
		}
		if (type == BT_COMMIT) {
			seq++;
			if (pass == PASS_SCAN)
				w->end_seq = seq;
			pos = next_block(j, pos);
			continue;
		}
		break; /* anything else ends the log */
	}
out:
	free(tags);
	return rc;
}

int jbd2_replay(jbd2_read_fn read, void *opaque, uint64_t nblocks,
		unsigned block_size, uint64_t fs_blocks,
		struct jbd2_overlay **out, char *notes, size_t noteslen)
{
	struct journal j = { .read = read, .opaque = opaque, .bs = block_size,
			     .fs_blocks = fs_blocks };
	struct walk w = { 0 };
	uint32_t type, transactions;
	int rc;

	*out = NULL;
	if (block_size < 1024 || block_size > 65536 || nblocks < 2) {
		note(notes, noteslen, "impossible journal geometry");
		return -EIO;
	}
	j.buf = malloc(block_size);
	j.data = malloc(block_size);
	if (!j.buf || !j.data) {
		rc = -ENOMEM;
		goto out;
	}
	rc = read_jblock(&j, 0, j.buf);
	if (rc < 0) {
		note(notes, noteslen, "journal superblock unreadable");
		goto out;
	}
	type = be32(j.buf + 4);
	rc = -EIO;
	if (be32(j.buf) != JBD2_MAGIC ||
	    (type != BT_SUPER_V1 && type != BT_SUPER_V2)) {
		note(notes, noteslen, "no journal superblock");
		goto out;
	}
	if (be32(j.buf + 12) != block_size) {
		note(notes, noteslen, "journal block size %u is not the "
		     "filesystem's %u", be32(j.buf + 12), block_size);
		goto out;
	}
	j.maxlen = be32(j.buf + 16);
	j.first = be32(j.buf + 20);
	j.sequence = be32(j.buf + 24);
	j.start = be32(j.buf + 28);
	if (type == BT_SUPER_V2)
		j.incompat = be32(j.buf + 40);
	if (j.maxlen > nblocks || j.maxlen < 2 || j.first == 0 ||
	    j.first >= j.maxlen) {
		note(notes, noteslen, "journal superblock describes %u blocks "
		     "from %u in a %llu-block journal", j.maxlen, j.first,
		     (unsigned long long)nblocks);
		goto out;
	}
	if (j.incompat & ~INCOMPAT_KNOWN) {
		note(notes, noteslen, "journal features 0x%x are not "
		     "supported%s", j.incompat & ~INCOMPAT_KNOWN,
		     j.incompat & INCOMPAT_FAST_COMMIT ? " (fast commits)" : "");
		goto out;
	}
	if (j.start == 0) {
		/* The log is empty: nothing was left to replay. */
		note(notes, noteslen, "the journal was empty");
		rc = 0;
		goto out;
	}
	if (j.start < j.first || j.start >= j.maxlen) {
		note(notes, noteslen, "journal log start %u lies outside "
		     "blocks %u-%u", j.start, j.first, j.maxlen - 1);
		goto out;
	}
	w.overlay = calloc(1, sizeof(*w.overlay));
	if (!w.overlay) {
		rc = -ENOMEM;
		goto out;
	}
	w.overlay->block_size = block_size;
	if ((rc = walk_log(&j, PASS_SCAN, &w)) < 0 ||
	    (rc = walk_log(&j, PASS_REVOKE, &w)) < 0 ||
	    (rc = walk_log(&j, PASS_REPLAY, &w)) < 0) {
		note(notes, noteslen, "journal read failed: %s",
		     strerror(-rc));
		goto out;
	}
	transactions = w.end_seq - j.sequence;
	note(notes, noteslen, "%u transaction%s, %llu block%s replayed"
	     "%s%.0llu%s%s%.0llu%s", transactions, transactions == 1 ? "" : "s",
	     (unsigned long long)w.replayed, w.replayed == 1 ? "" : "s",
	     w.revoked ? ", " : "", (unsigned long long)w.revoked,
	     w.revoked ? " revoked" : "",
	     w.dropped ? ", " : "", (unsigned long long)w.dropped,
	     w.dropped ? " past the filesystem's end dropped" : "");
	if (w.overlay->used) {
		*out = w.overlay;
		w.overlay = NULL;
	}
	rc = 0;
out:
	jbd2_overlay_free(w.overlay);
	map_free(&w.revokes);
	free(j.buf);
	free(j.data);
	return rc;
}
