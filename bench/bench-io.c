/* bench-io: does io_uring beat pread for vdisk's data-file reads?
 *
 * The engine reads one chunk record (48-byte header + compressed payload,
 * ~32 KiB for a 64 KiB chunk) per cache miss, and a multi-chunk request
 * reads several.  This measures exactly that access pattern on a scratch
 * file, with the page cache warm and with it dropped:
 *
 *   pread-1      one pread per record (what the engine does)
 *   uring-1      one io_uring submit-and-wait per record
 *   pread-16     16 records read back to back with pread
 *   uring-16     16 records submitted at once, then reaped
 *
 * Usage: bench-io FILE [SIZE_MB]   (FILE is created and removed)
 * Output: RESULT lines (like bench-engine) and a short table.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REC (32 * 1024 + 48)
#define BATCH 16

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static double run(int fd, struct io_uring *ring, uint64_t nrec, int batch,
		  int use_uring, double seconds, uint8_t *bufs)
{
	const double t0 = now();
	uint64_t done = 0;

	while (now() - t0 < seconds) {
		uint64_t offs[BATCH];
		for (int i = 0; i < batch; i++)
			offs[i] = (next_rand() % nrec) * REC;
		if (!use_uring) {
			for (int i = 0; i < batch; i++)
				if (pread(fd, bufs + (size_t)i * REC, REC, offs[i]) != REC)
					die("pread");
		} else {
			struct io_uring_cqe *cqe;
			for (int i = 0; i < batch; i++) {
				struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
				io_uring_prep_read(sqe, fd, bufs + (size_t)i * REC, REC, offs[i]);
			}
			if (io_uring_submit_and_wait(ring, batch) < 0)
				die("io_uring_submit_and_wait");
			for (int i = 0; i < batch; i++) {
				if (io_uring_wait_cqe(ring, &cqe) < 0 || cqe->res != REC)
					die("io_uring read");
				io_uring_cqe_seen(ring, cqe);
			}
		}
		done += batch;
	}
	return done / (now() - t0);
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/tmp/vdisk-bench-io";
	const uint64_t mb = argc > 2 ? strtoull(argv[2], NULL, 10) : 1024;
	const uint64_t nrec = mb * 1024 * 1024 / REC;
	uint8_t *bufs = aligned_alloc(4096, (size_t)BATCH * REC + 4096);
	struct io_uring ring;
	int fd;

	if (!bufs || io_uring_queue_init(64, &ring, 0) < 0)
		die("setup");
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		die(path);
	for (size_t i = 0; i < (size_t)BATCH * REC; i++)
		bufs[i] = (uint8_t)next_rand();
	fprintf(stderr, "  [io] writing %llu MiB of records\n", (unsigned long long)mb);
	for (uint64_t i = 0; i < nrec; i++)
		if (pwrite(fd, bufs + (i % BATCH) * REC, REC, i * REC) != REC)
			die("pwrite");
	fsync(fd);

	static const struct { const char *name; int batch, uring; } modes[] = {
		{ "pread-1", 1, 0 }, { "uring-1", 1, 1 },
		{ "pread-16", BATCH, 0 }, { "uring-16", BATCH, 1 },
	};
	printf("| pattern | page cache warm (records/s) | page cache dropped (records/s) |\n");
	printf("|---|---|---|\n");
	for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
		double warm, cold;
		warm = run(fd, &ring, nrec, modes[m].batch, modes[m].uring, 3.0, bufs);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		cold = run(fd, &ring, nrec, modes[m].batch, modes[m].uring, 3.0, bufs);
		printf("| %s | %.0f | %.0f |\n", modes[m].name, warm, cold);
		fprintf(stderr, "RESULT io.%s.warm %.0f rec/s\nRESULT io.%s.cold %.0f rec/s\n",
			modes[m].name, warm, modes[m].name, cold);
		/* Warm the whole file again for the next mode's warm run. */
		for (uint64_t i = 0; i < nrec; i += BATCH)
			if (pread(fd, bufs, REC, i * REC) < 0)
				die("pread");
	}
	close(fd);
	unlink(path);
	io_uring_queue_exit(&ring);
	free(bufs);
	return 0;
}
