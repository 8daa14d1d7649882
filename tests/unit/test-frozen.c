/* Writes over a live snapshot's unsealed chunks (issue #7): a part of a
 * chunk written after `vd_snapshot_create` while the chunk's older writes
 * are still dirty becomes an entry of the new epoch over the frozen one,
 * its bytes only in the journal.  With 64 KiB chunks and the frozen
 * epochs left unsealed (VDISK_SEAL_FROZEN=off) this stacks three epochs of
 * unsealed entries on the same chunks (4 KiB-aligned, unaligned and zeroed
 * pieces, some whole chunks) in a writer process that checks every byte of
 * the head after each snapshot and then exits without sealing; the parent
 * reopens the store (the journal replayed) and checks the head, each
 * snapshot (which seals its epoch first, under the live head), and the
 * head again after close (sealed then).  vd_store_check must be clean.
 *
 * Usage: test-frozen [seed] */
#include <errno.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "engine/vdisk.h"
#include "engine-test.h"

#define CS      65536u
#define NCHUNKS 24u
#define SIZE    ((uint64_t)CS * NCHUNKS)
#define EPOCHS  3

static struct et_rng rng;
static uint8_t *model, *snaps[EPOCHS]; /* shared with the writer */

/* Some writes, most 4 KiB-aligned pieces, over a few chunks so that they
 * land on chunks the last snapshot froze; all in MODEL too. */
static void burst(vd_volume *v, int n)
{
	uint8_t buf[3 * 4096];

	for (int i = 0; i < n; i++) {
		const uint64_t c = et_below(&rng, NCHUNKS / 2) * 2; /* even chunks */
		const unsigned kind = (unsigned)et_below(&rng, 10);
		uint64_t off;
		size_t len;

		if (kind < 6) {         /* aligned page(s) */
			len = 4096 * (size_t)et_range(&rng, 1, 3);
			off = c * CS + 4096 * et_below(&rng, (CS - len) / 4096 + 1);
		} else if (kind < 8) {  /* unaligned */
			len = (size_t)et_range(&rng, 1, sizeof buf);
			off = c * CS + et_below(&rng, CS - len + 1);
		} else if (kind < 9) {  /* zeroes */
			len = (size_t)et_range(&rng, 1, sizeof buf);
			off = c * CS + et_below(&rng, CS - len + 1);
			CHECK_RC(vd_volume_zero(v, off, len), 0);
			memset(model + off, 0, len);
			continue;
		} else {                /* a whole chunk */
			uint8_t *whole = malloc(CS);
			if (!whole)
				DIE("out of memory");
			et_fill(&rng, whole, CS);
			CHECK_RC(vd_volume_pwrite(v, whole, CS, c * CS), 0);
			memcpy(model + c * CS, whole, CS);
			free(whole);
			continue;
		}
		et_fill(&rng, buf, len);
		CHECK_RC(vd_volume_pwrite(v, buf, len, off), 0);
		memcpy(model + off, buf, len);
	}
}

/* Every byte of V against WANT, whole chunks and then odd pieces. */
static void compare(vd_volume *v, const uint8_t *want, const char *what)
{
	uint8_t *back = malloc(CS);

	if (!back)
		DIE("out of memory");
	for (uint64_t c = 0; c < NCHUNKS; c++) {
		CHECK_RC(vd_volume_pread(v, back, CS, c * CS), 0);
		CHECK(!memcmp(back, want + c * CS, CS), "%s: chunk %llu differs",
		      what, (unsigned long long)c);
	}
	for (int i = 0; i < 64; i++) {
		const size_t len = (size_t)et_range(&rng, 1, 9000);
		const uint64_t off = et_below(&rng, SIZE - len + 1);
		CHECK_RC(vd_volume_pread(v, back, len, off), 0);
		CHECK(!memcmp(back, want + off, len), "%s: %zu bytes at %llu differ",
		      what, len, (unsigned long long)off);
	}
	free(back);
}

static void compare_snaps(vd_store *s, int n, const char *when)
{
	for (int e = 0; e < n; e++) {
		char name[16], what[64];
		vd_volume *r;

		snprintf(name, sizeof name, "s%d", e);
		snprintf(what, sizeof what, "vol@%s %s", name, when);
		CHECK_RC(vd_volume_open(s, "vol", name, VD_OPEN_RDONLY, &r), 0);
		if (r) {
			compare(r, snaps[e], what);
			CHECK_RC(vd_volume_close(r), 0);
		}
	}
}

static void problem_cb(void *opaque, const char *what)
{
	(void)opaque;
	fprintf(stderr, "vd_store_check: %s\n", what);
}

static void check_clean(vd_store *s)
{
	const int rc = vd_store_check(s, NULL, problem_cb, NULL);

	CHECK(rc == 0, "vd_store_check returned %d (%s); %s", rc, vd_strerror(rc),
	      vd_last_error());
}

/* The writer: epochs of unsealed writes on the same chunks, each frozen by
 * a snapshot taken while the head is open, flushed, then gone without a
 * seal (as a killed server).  Returns what its checks found. */
static int writer(const char *dir, const struct vd_store_options *o)
{
	vd_store *s;
	vd_volume *v;

	CHECK_RC(vd_store_open(dir, o, &s), 0);
	if (!s)
		return 1;
	CHECK_RC(vd_volume_create(s, "vol", SIZE), 0);
	CHECK_RC(vd_volume_open(s, "vol", NULL, 0, &v), 0);
	if (!v)
		DIE("cannot open vol: %s", vd_last_error());
	for (int e = 0; e < EPOCHS; e++) {
		char name[16];

		burst(v, 200);
		CHECK_RC(vd_volume_flush(v), 0);
		snprintf(name, sizeof name, "s%d", e);
		CHECK_RC(vd_snapshot_create(s, "vol", name), 0);
		memcpy(snaps[e], model, SIZE);
		compare(v, model, "head right after a snapshot");
	}
	burst(v, 200);
	CHECK_RC(vd_volume_flush(v), 0);
	compare(v, model, "head over three frozen epochs");
	return et_failures != 0;
}

static uint8_t *shared(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		DIE("mmap: %s", strerror(errno));
	return p;
}

int main(int argc, char **argv)
{
	const char *dir;
	struct vd_store_options o = { .create = 1, .chunk_size = CS };
	vd_store *s;
	vd_volume *v;
	int status;
	pid_t pid;

	setenv("VDISK_SEAL_FROZEN", "off", 1);
	et_rng_seed(&rng, et_init_seed(argc, argv));
	/* Shared: the writer's images are the parent's expectations. */
	model = shared(SIZE);
	for (int e = 0; e < EPOCHS; e++)
		snaps[e] = shared(SIZE);
	dir = et_tmpdir("frozen");

	fflush(NULL);
	if ((pid = fork()) < 0)
		DIE("fork: %s", strerror(errno));
	if (pid == 0)
		_exit(writer(dir, &o));
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		DIE("the writer failed (status %#x)", (unsigned)status);

	/* Its journal replayed, three frozen epochs under the head. */
	CHECK_RC(vd_store_open(dir, &o, &s), 0);
	if (!s)
		return et_finish("test-frozen");
	CHECK_RC(vd_volume_open(s, "vol", NULL, 0, &v), 0);
	if (!v)
		DIE("cannot open vol: %s", vd_last_error());
	compare(v, model, "head replayed");
	burst(v, 100);
	compare(v, model, "head written after replay");

	/* Reading a snapshot seals its epoch under the live head. */
	compare_snaps(s, EPOCHS, "with the head open");
	burst(v, 100);
	compare(v, model, "head after its snapshots were sealed");
	CHECK_RC(vd_volume_close(v), 0);

	CHECK_RC(vd_volume_open(s, "vol", NULL, VD_OPEN_RDONLY, &v), 0);
	if (v) {
		compare(v, model, "head sealed at close");
		CHECK_RC(vd_volume_close(v), 0);
	}
	compare_snaps(s, EPOCHS, "after close");
	check_clean(s);
	vd_store_close(s);
	et_tmpdir_done();
	return et_finish("test-frozen");
}
