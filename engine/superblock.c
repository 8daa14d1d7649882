/* The superblock, STORE/vdisk.sb: the store's identity and format version.
 * Written once at init, and once more when a version 1 store is upgraded
 * (the first time one of its volume heads is opened for writing with a
 * journal).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/io.h"
#include "engine/internal.h"

static int sb_write(int dirfd, const struct fmt_superblock *sb, bool replace);

static int fsync_dir(int dirfd)
{
	return fsync(dirfd) < 0 ? -errno : 0;
}

/* Writes the superblock under a temporary name and links it into place:
 * if another process won the race, its superblock stands. */
int sb_create(int dirfd, uint32_t chunk_size)
{
	struct fmt_superblock sb = {
		.version = FMT_VERSION,
		.chunk_size = chunk_size,
		.created = now_seconds(),
	};

	if (getrandom(sb.uuid, sizeof sb.uuid, 0) != sizeof sb.uuid)
		return -errno;
	sb.uuid[6] = (sb.uuid[6] & 0x0f) | 0x40; /* RFC 4122 version 4 */
	sb.uuid[8] = (sb.uuid[8] & 0x3f) | 0x80;
	return sb_write(dirfd, &sb, false);
}

/* Writes SB to a temporary file and moves it into place: with REPLACE by
 * rename (the old or the new one stands, whole), else by link (if another
 * process created one first, its superblock stands). */
static int sb_write(int dirfd, const struct fmt_superblock *sb, bool replace)
{
	uint8_t buf[FMT_SB_SIZE];
	char tmp[64];
	int fd, r = 0;

	fmt_sb_encode(sb, buf);
	snprintf(tmp, sizeof tmp, FMT_SB_NAME ".tmp.%d", (int)getpid());
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	/* fsync orders the superblock's bytes before its name appears. */
	if ((r = write_full(fd, buf, sizeof buf)) == 0 && fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && replace && renameat(dirfd, tmp, dirfd, FMT_SB_NAME) < 0)
		r = -errno;
	if (r == 0 && !replace && linkat(dirfd, tmp, dirfd, FMT_SB_NAME, 0) < 0 &&
	    errno != EEXIST)
		r = -errno;
	unlinkat(dirfd, tmp, 0); /* after a rename: gone already */
	if (r == 0)
		r = fsync_dir(dirfd);
	return r;
}


int sb_read(vd_store *s)
{
	uint8_t buf[FMT_SB_SIZE];
	struct fmt_superblock sb;
	ssize_t n;
	int fd, r;

	fd = openat(s->st_dirfd, FMT_SB_NAME, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT
		       : SET_ERROR(-errno, "%s/%s: %s", s->st_dir, FMT_SB_NAME,
				   strerror(errno));
	n = pread_full(fd, buf, sizeof buf, 0);
	close(fd);
	if (n < 0)
		return SET_ERROR((int)n, "%s/%s: %s", s->st_dir, FMT_SB_NAME,
				 strerror((int)-n));
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
				 "%s: unsupported store format version %u (this vdisk "
				 "reads %u to %u)", s->st_dir, sb.version,
				 FMT_VERSION_MIN, FMT_VERSION);
	default:
		return SET_ERROR(VD_ECORRUPT, "%s: damaged superblock (%s)",
				 s->st_dir, r == FMT_BAD_CRC ? "checksum" : "field");
	}
	s->st_version = sb.version;
	s->st_chunk_size = sb.chunk_size;
	memcpy(s->st_uuid, sb.uuid, 16);
	return 0;
}


int sb_upgrade(vd_store *s)
{
	struct fmt_superblock sb = { .version = FMT_VERSION };
	struct wtxn w;
	uint8_t buf[FMT_SB_SIZE];
	int fd, r;

	pthread_mutex_lock(&s->st_sb_lock);
	if (s->st_version >= FMT_VERSION) {
		pthread_mutex_unlock(&s->st_sb_lock);
		return 0;
	}
	/* Keep every other field as it is on disk. */
	fd = openat(s->st_dirfd, FMT_SB_NAME, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || pread_full(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf ||
	    fmt_sb_decode(buf, &sb) != 0) {
		r = SET_ERROR(VD_ECORRUPT, "%s/%s: cannot read the superblock to "
			      "upgrade it", s->st_dir, FMT_SB_NAME);
		goto out;
	}
	sb.version = FMT_VERSION;
	/* The superblock first: a crash before the meta record is updated
	 * leaves a store that the next open finishes upgrading. */
	if ((r = sb_write(s->st_dirfd, &sb, true)) < 0) {
		r = SET_ERROR(r, "%s: cannot upgrade the store to format %u: %s",
			      s->st_dir, FMT_VERSION, strerror(-r));
		goto out;
	}
	if ((r = wtxn_begin(s, &w)) < 0)
		goto out;
	if ((r = meta_put_u64(s, w.txn, "format", FMT_VERSION)) < 0) {
		wtxn_abort(&w);
		goto out;
	}
	if ((r = wtxn_commit(s, &w)) == 0)
		__atomic_store_n(&s->st_version, FMT_VERSION, __ATOMIC_RELEASE);
out:
	if (fd >= 0)
		close(fd);
	pthread_mutex_unlock(&s->st_sb_lock);
	return r;
}
