/* Helpers shared by the engine's unit tests (tests/unit/test-*.c): checks
 * that report file:line and keep going, a seeded PRNG whose seed is printed
 * first so that a failure replays, and scratch directories.
 *
 * A test program exits 0 (pass), 1 (fail) or 77 (skip); see
 * tests/run-tests.sh.  Everything here is static so that each test stays one
 * self-contained program. */
#ifndef VDISK_ENGINE_TEST_H
#define VDISK_ENGINE_TEST_H

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ET_UNUSED __attribute__((unused))

static unsigned long et_failures;
static uint64_t et_seed;

/* CHECK(cond, fmt, ...): count and report a failure, keep going. */
#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond)) {                                               \
			et_failures++;                                       \
			fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, \
				__LINE__, #cond);                            \
			fprintf(stderr, __VA_ARGS__);                        \
			fprintf(stderr, " (seed=%" PRIu64 ")\n", et_seed);   \
		}                                                            \
	} while (0)

/* CHECK_RC(expr, want): EXPR returns an int status that must equal WANT. */
#define CHECK_RC(expr, want)                                                 \
	do {                                                                 \
		const int rc_ = (expr);                                      \
		const int want_ = (want);                                    \
		CHECK(rc_ == want_, "%s returned %d (%s), expected %d (%s); %s", \
		      #expr, rc_, vd_strerror(rc_), want_, vd_strerror(want_), \
		      vd_last_error());                                      \
	} while (0)

/* DIE: for set-up failures after which nothing else makes sense. */
static void et_die(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), noreturn));
static ET_UNUSED void et_die(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s:%d: FATAL: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (seed=%" PRIu64 ")\n", et_seed);
	exit(1);
}
#define DIE(...) et_die(__FILE__, __LINE__, __VA_ARGS__)

/* ---- PRNG (splitmix64 seeding xoshiro256**) ----------------------------- */

struct et_rng {
	uint64_t s[4];
};

static ET_UNUSED uint64_t et_splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static ET_UNUSED void et_rng_seed(struct et_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = et_splitmix(&seed);
}

static inline uint64_t et_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static ET_UNUSED uint64_t et_next(struct et_rng *r)
{
	uint64_t *s = r->s;
	const uint64_t result = et_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = et_rotl(s[3], 45);
	return result;
}

/* Uniform in [0, n) (n > 0). */
static ET_UNUSED uint64_t et_below(struct et_rng *r, uint64_t n)
{
	return n ? et_next(r) % n : 0;
}

/* Uniform in [lo, hi]. */
static ET_UNUSED uint64_t et_range(struct et_rng *r, uint64_t lo, uint64_t hi)
{
	return lo + et_below(r, hi - lo + 1);
}

/* True with probability PCT percent. */
static ET_UNUSED int et_chance(struct et_rng *r, unsigned pct)
{
	return et_below(r, 100) < pct;
}

static ET_UNUSED void et_fill(struct et_rng *r, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len >= 8) {
		const uint64_t v = et_next(r);
		memcpy(p, &v, 8);
		p += 8;
		len -= 8;
	}
	if (len) {
		const uint64_t v = et_next(r);
		memcpy(p, &v, len);
	}
}

/* Seed from argv[1] ("seed=N" or "N"), else $VDISK_TEST_SEED, else time and
 * pid.  Printed first, so every log starts with the replay seed. */
static ET_UNUSED uint64_t et_init_seed(int argc, char **argv)
{
	const char *s = NULL;

	if (argc > 1)
		s = argv[1];
	else if (getenv("VDISK_TEST_SEED"))
		s = getenv("VDISK_TEST_SEED");
	if (s && strncmp(s, "seed=", 5) == 0)
		s += 5;
	if (s && *s) {
		et_seed = strtoull(s, NULL, 0);
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		et_seed = ((uint64_t)ts.tv_sec * 1000003u) ^
			  (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
		et_seed %= 1000000000000ull;
	}
	printf("seed=%" PRIu64 "\n", et_seed);
	fflush(stdout);
	return et_seed;
}

/* ---- scratch directories ------------------------------------------------ */

static ET_UNUSED int et_rm_cb(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* rm -rf PATH */
static ET_UNUSED void et_rm_rf(const char *path)
{
	nftw(path, et_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory, removed by et_tmpdir_done() unless $VDISK_TEST_KEEP is
 * set or the test failed.  Under $VDISK_TEST_TMPDIR or $TMPDIR if set;
 * otherwise, for tests that do not need a disk's sync behaviour (FAST),
 * under /dev/shm when it is there (fsync is free: the model test syncs a
 * thousand times), else /tmp. */
static char et_tmp[4096];

static ET_UNUSED const char *et_tmpdir_in(const char *name, int fast)
{
	const char *base = getenv("VDISK_TEST_TMPDIR");

	if (!base || !*base)
		base = getenv("TMPDIR");
	if (!base || !*base)
		base = fast && access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm"
								      : "/tmp";
	snprintf(et_tmp, sizeof(et_tmp), "%s/vdisk-%s.XXXXXX", base, name);
	if (!mkdtemp(et_tmp))
		DIE("mkdtemp %s: %s", et_tmp, strerror(errno));
	return et_tmp;
}

static ET_UNUSED const char *et_tmpdir(const char *name)
{
	return et_tmpdir_in(name, 1);
}

static ET_UNUSED void et_tmpdir_done(void)
{
	if (!et_tmp[0])
		return;
	if (et_failures || getenv("VDISK_TEST_KEEP"))
		fprintf(stderr, "kept %s\n", et_tmp);
	else
		et_rm_rf(et_tmp);
}

/* Prints the verdict and returns the exit code. */
static ET_UNUSED int et_finish(const char *name)
{
	et_tmpdir_done();
	if (et_failures) {
		printf("%s: FAIL: %lu check(s) failed (seed=%" PRIu64 ")\n", name,
		       et_failures, et_seed);
		return 1;
	}
	printf("%s: ok (seed=%" PRIu64 ")\n", name, et_seed);
	return 0;
}

#endif /* VDISK_ENGINE_TEST_H */
