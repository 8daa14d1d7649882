/* Regression test: a malformed chunks-DB value must not hide other chunks
 * from vd_store_check.
 *
 * check counts map references per chunk hash in an open-addressing table
 * (engine/check.c, struct hcount: linear probing, slot = the first 8 bytes
 * of the hash, little-endian, masked to the table size, 1024 to start).
 * When check met a chunk whose index value was malformed, it reported it
 * and dropped its entry from the table by clearing the slot, without a
 * tombstone, which cut the probe chain of any later key that had probed
 * past that slot: such a chunk then seemed to have no references and to be
 * missing from the index, two problems that are not there.
 *
 * The store here holds exactly two chunks, A and B, whose hashes fall in
 * the same slot, with A < B bytewise (the chunks DB is walked in key
 * order, so A is met first).  A is chunk 0 of the volume and B chunk 1, so
 * the map walk inserts A first and B probes past it.  With the store
 * closed, A's chunks-DB value is replaced by a 3-byte one, and the
 * statistics counters are lowered as if A had never been counted, so that
 * the malformed value is the only damage check can find.  check must then
 * report exactly one problem, about A; nothing about B.
 *
 * Usage: test-check-probe [seed] */
#include <sys/stat.h>

#include "engine/vdisk.h"
#include "format/format.h"
#include "engine-test.h"
#include "index-test.h"

#define CHUNK 4096u
#define SLOTS 1024u /* check's initial table size */

struct problems {
	int n;
	char what[8][512];
};

static void problem_cb(void *opaque, const char *what)
{
	struct problems *const p = opaque;

	printf("vd_store_check: %s\n", what);
	if (p->n < 8)
		snprintf(p->what[p->n], sizeof(p->what[0]), "%s", what);
	p->n++;
}

static uint32_t slot_of(const uint8_t h[32])
{
	return (uint32_t)(fmt_get_le64(h) & (SLOTS - 1));
}

static void hex16(const uint8_t h[32], char out[17])
{
	for (int i = 0; i < 8; i++)
		sprintf(out + 2 * i, "%02x", h[i]);
}

/* Chunk contents number N: random bytes from the seed, then N. */
static void contents(uint8_t *p, uint64_t n)
{
	struct et_rng r;

	et_rng_seed(&r, et_seed);
	et_fill(&r, p, CHUNK);
	memcpy(p, &n, sizeof(n));
}

/* Finds two chunk contents whose hashes share a slot, A's hash < B's. */
static void find_pair(uint8_t *a, uint8_t ha[32], uint8_t *b, uint8_t hb[32])
{
	static int64_t first[SLOTS];
	uint8_t h[32];

	memset(first, 0xff, sizeof(first));
	for (uint64_t n = 0;; n++) {
		contents(b, n);
		et_sha256(b, CHUNK, h);
		const uint32_t s = slot_of(h);
		if (first[s] < 0) {
			first[s] = (int64_t)n;
			continue;
		}
		contents(a, (uint64_t)first[s]);
		et_sha256(a, CHUNK, ha);
		memcpy(hb, h, 32);
		if (memcmp(ha, hb, 32) > 0) {
			uint8_t t[CHUNK], th[32];
			memcpy(t, a, CHUNK), memcpy(a, b, CHUNK), memcpy(b, t, CHUNK);
			memcpy(th, ha, 32), memcpy(ha, hb, 32), memcpy(hb, th, 32);
		}
		printf("contents %" PRId64 " and %" PRIu64 " share slot %u\n",
		       first[s], n, s);
		return;
	}
}

static uint64_t meta_get(struct et_idx *x, const char *key)
{
	MDB_val k = {strlen(key), (void *)key}, v;

	if (mdb_get(x->txn, x->meta, &k, &v) || v.mv_size != 8)
		DIE("meta %s: missing or malformed", key);
	return fmt_get_le64(v.mv_data);
}

static void meta_put(struct et_idx *x, const char *key, uint64_t val)
{
	uint8_t b[8];
	MDB_val k = {strlen(key), (void *)key}, v = {8, b};
	int rc;

	fmt_put_le64(b, val);
	if ((rc = mdb_put(x->txn, x->meta, &k, &v, 0)))
		DIE("meta %s: %s", key, mdb_strerror(rc));
}

int main(int argc, char **argv)
{
	static uint8_t a[CHUNK], b[CHUNK];
	uint8_t ha[32], hb[32];
	char store[4200], xa[17], xb[17];
	struct vd_store_options o = {.chunk_size = CHUNK, .create = 1};
	struct problems pr = {0};
	vd_store *st;
	vd_volume *v;
	int rc;

	et_init_seed(argc, argv);
	snprintf(store, sizeof(store), "%s/store", et_tmpdir("check-probe"));
	find_pair(a, ha, b, hb);
	hex16(ha, xa);
	hex16(hb, xb);
	printf("A %s (chunk 0), B %s (chunk 1)\n", xa, xb);

	if ((rc = vd_store_open(store, &o, &st)) < 0 ||
	    (rc = vd_volume_create(st, "v", 2 * CHUNK)) < 0 ||
	    (rc = vd_volume_open(st, "v", NULL, 0, &v)) < 0)
		DIE("set-up: %s; %s", vd_strerror(rc), vd_last_error());
	if ((rc = vd_volume_pwrite(v, a, CHUNK, 0)) < 0 ||
	    (rc = vd_volume_pwrite(v, b, CHUNK, CHUNK)) < 0 ||
	    (rc = vd_volume_close(v)) < 0)
		DIE("write: %s; %s", vd_strerror(rc), vd_last_error());
	rc = vd_store_check(st, NULL, problem_cb, &pr);
	if (rc != 0)
		DIE("the store is not clean before the damage: %d", rc);
	vd_store_close(st);

	/* Damage A's index value; lower the counters by A's share. */
	struct et_idx x;
	struct fmt_chunk ca;
	MDB_val k = {32, ha}, val;
	et_idx_open(store, &x);
	MDB_stat ms;
	if (mdb_stat(x.txn, x.chunks, &ms) || ms.ms_entries != 2)
		DIE("expected exactly two chunks in the index");
	if (mdb_get(x.txn, x.chunks, &k, &val) ||
	    fmt_chunk_decode(val.mv_data, val.mv_size, &ca))
		DIE("chunk A is not in the index");
	static const uint8_t bad[3] = {1, 2, 3};
	val.mv_size = sizeof(bad);
	val.mv_data = (void *)bad;
	if ((rc = mdb_put(x.txn, x.chunks, &k, &val, 0)))
		DIE("mdb_put: %s", mdb_strerror(rc));
	meta_put(&x, "stat_chunks", meta_get(&x, "stat_chunks") - 1);
	meta_put(&x, "stat_refs", meta_get(&x, "stat_refs") - ca.refs);
	meta_put(&x, "stat_stored", meta_get(&x, "stat_stored") -
		 (FMT_REC_HEADER_SIZE + (uint64_t)ca.stored_len));
	et_idx_close(&x, 1);

	o.create = 0;
	if ((rc = vd_store_open(store, &o, &st)) < 0)
		DIE("reopen: %s; %s", vd_strerror(rc), vd_last_error());
	pr.n = 0;
	rc = vd_store_check(st, NULL, problem_cb, &pr);
	vd_store_close(st);

	CHECK(rc == 1 && pr.n == 1,
	      "vd_store_check returned %d with %d problems; expected exactly one, "
	      "about chunk A's malformed index value", rc, pr.n);
	int about_a = 0;
	for (int i = 0; i < pr.n && i < 8; i++) {
		CHECK(!strstr(pr.what[i], xb),
		      "a problem names chunk B, which is intact: %s", pr.what[i]);
		about_a += strstr(pr.what[i], xa) &&
			   strstr(pr.what[i], "malformed index value");
	}
	CHECK(about_a == 1, "%d problems name chunk A's malformed index value",
	      about_a);
	return et_finish("test-check-probe");
}
