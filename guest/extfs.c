/* guest/extfs.c: ext2/3/4 read-only through libext2fs.  libext2fs reads
 * through an io_manager of ours that maps its block reads onto a region
 * of a guest_disk and lays the replayed journal (guest/jbd2.c) over them.
 *
 * The filesystem is untrusted.  libext2fs checks much (inode numbers,
 * extent headers, directory records); this file checks what it hands on
 * (names, sizes, symlink lengths, xattr sizes) and bounds every walk.
 * Not thread-safe: libext2fs handles are not. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <ext2fs/ext2fs.h>
#include "guest/extfs.h"
#include "guest/jbd2.h"

#define EXT_MAGIC 0xef53
#define SYMLINK_HOPS 40
#define JOURNAL_MAX_BLOCKS (1u << 20) /* 4 GiB of 4 KiB blocks */
#define CACHE_SLOTS 256

struct guest_fs {
	ext2_filsys fs;
	struct guest_disk disk;
	uint64_t offset, length;     /* the region, bytes */
	struct jbd2_overlay *overlay; /* replayed journal, or NULL */
	unsigned block_size;         /* of the filesystem (overlay blocks) */
	char notes[256];
	/* Recently read single blocks (inode tables, directories, bitmaps
	 * are read again and again; each read of the volume costs a chunk
	 * lookup): direct-mapped by block number, on once libext2fs has
	 * the filesystem's block size and the overlay is final. */
	uint8_t *cache;
	uint64_t cache_block[CACHE_SLOTS]; /* block + 1; 0 is empty */
};

/* libext2fs codes (and the errno values our io_manager returns) to
 * -errno.  Anything unexpected is damage: -EIO. */
static int fs_errno(errcode_t err)
{
	if (err == 0)
		return 0;
	if (err > 0 && err < 4096)
		return -(int)err;
	switch (err) {
	case EXT2_ET_FILE_NOT_FOUND: return -ENOENT;
	case EXT2_ET_NO_DIRECTORY: return -ENOTDIR;
	case EXT2_ET_NO_MEMORY: return -ENOMEM;
	case EXT2_ET_RO_FILSYS: return -EROFS;
	case EXT2_ET_EA_KEY_NOT_FOUND: return -ENODATA;
	default: return -EIO;
	}
}

/* ---- the io_manager ---------------------------------------------------- */

/* libext2fs opens a channel by name; ours names the guest_fs:
 * "guest:0x...". */
static struct struct_io_manager guest_io_manager;

struct channel {
	struct guest_fs *gfs;
};

static errcode_t io_open(const char *name, int flags, io_channel *out)
{
	struct guest_fs *gfs = NULL;
	io_channel ch;
	struct channel *priv;

	if (!name || sscanf(name, "guest:%p", (void **)&gfs) != 1 || !gfs)
		return EINVAL;
	if (flags & IO_FLAG_RW)
		return EROFS;
	ch = calloc(1, sizeof(*ch));
	priv = calloc(1, sizeof(*priv));
	if (!ch || !priv || !(ch->name = strdup(name))) {
		free(ch);
		free(priv);
		return EXT2_ET_NO_MEMORY;
	}
	priv->gfs = gfs;
	ch->magic = EXT2_ET_MAGIC_IO_CHANNEL;
	ch->manager = &guest_io_manager;
	ch->block_size = 1024;
	ch->refcount = 1;
	ch->private_data = priv;
	*out = ch;
	return 0;
}

static errcode_t io_close(io_channel ch)
{
	if (--ch->refcount > 0)
		return 0;
	free(ch->private_data);
	free(ch->name);
	free(ch);
	return 0;
}

static errcode_t io_set_blksize(io_channel ch, int blksize)
{
	if (blksize <= 0 || blksize > 65536)
		return EINVAL;
	ch->block_size = blksize;
	return 0;
}

/* Lays the overlay's blocks over BUF, which holds the region's bytes
 * [OFF, OFF + LEN). */
static void overlay_apply(const struct guest_fs *gfs, uint8_t *buf,
			  uint64_t off, size_t len)
{
	const unsigned bs = gfs->block_size;
	uint64_t b, end;

	if (!gfs->overlay || len == 0)
		return;
	end = (off + len - 1) / bs;
	for (b = off / bs; b <= end; b++) {
		const uint8_t *src = jbd2_overlay_block(gfs->overlay, b);
		uint64_t from, to;

		if (!src)
			continue;
		from = b * bs > off ? b * bs : off;
		to = (b + 1) * bs < off + len ? (b + 1) * bs : off + len;
		memcpy(buf + (from - off), src + (from - b * bs), to - from);
	}
}

/* Reads the region's bytes [OFF, OFF + LEN) with the overlay on top. */
static int region_read(const struct guest_fs *gfs, void *buf, size_t len,
		       uint64_t off)
{
	int rc;

	if (off > gfs->length || len > gfs->length - off)
		return -EIO;
	rc = guest_disk_read(&gfs->disk, buf, len, gfs->offset + off);
	if (rc < 0)
		return rc;
	overlay_apply(gfs, buf, off, len);
	return 0;
}

static errcode_t io_read_blk64(io_channel ch, unsigned long long block,
			       int count, void *data)
{
	const struct channel *priv = ch->private_data;
	const uint64_t bs = (uint64_t)ch->block_size;
	const uint64_t len = count < 0 ? (uint64_t)-(int64_t)count :
				 (uint64_t)count * bs;
	int rc;

	struct guest_fs *gfs = priv->gfs;
	uint64_t *slot = NULL;

	if (block > UINT64_MAX / bs || len > SIZE_MAX)
		return EXT2_ET_SHORT_READ;
	if (gfs->cache && len == gfs->block_size && bs == gfs->block_size) {
		slot = &gfs->cache_block[block % CACHE_SLOTS];
		if (*slot == block + 1) {
			memcpy(data, gfs->cache + (block % CACHE_SLOTS) * bs,
			       (size_t)len);
			return 0;
		}
	}
	rc = region_read(gfs, data, (size_t)len, block * bs);
	if (rc == 0 && slot) {
		memcpy(gfs->cache + (block % CACHE_SLOTS) * bs, data,
		       (size_t)len);
		*slot = block + 1;
	}
	if (rc == -EIO && (block * bs > priv->gfs->length ||
			   len > priv->gfs->length - block * bs))
		return EXT2_ET_SHORT_READ;
	return rc < 0 ? (errcode_t)-rc : 0;
}

static errcode_t io_read_blk(io_channel ch, unsigned long block, int count,
			     void *data)
{
	return io_read_blk64(ch, block, count, data);
}

static errcode_t io_write_blk64(io_channel ch, unsigned long long block,
				int count, const void *data)
{
	return EROFS;
}

static errcode_t io_write_blk(io_channel ch, unsigned long block, int count,
			      const void *data)
{
	return EROFS;
}

static errcode_t io_write_byte(io_channel ch, unsigned long offset,
			       int count, const void *data)
{
	return EROFS;
}

static errcode_t io_flush(io_channel ch)
{
	return 0;
}

static errcode_t io_set_option(io_channel ch, const char *option,
			       const char *arg)
{
	return EXT2_ET_INVALID_ARGUMENT;
}

static struct struct_io_manager guest_io_manager = {
	.magic = EXT2_ET_MAGIC_IO_MANAGER,
	.name = "vdisk guest",
	.open = io_open,
	.close = io_close,
	.set_blksize = io_set_blksize,
	.read_blk = io_read_blk,
	.write_blk = io_write_blk,
	.flush = io_flush,
	.write_byte = io_write_byte,
	.set_option = io_set_option,
	.read_blk64 = io_read_blk64,
	.write_blk64 = io_write_blk64,
};

/* ---- what else might be there ------------------------------------------ */

struct probe {
	uint64_t off;
	const char *magic;
	size_t len;
	const char *name;
};

/* Names the filesystem (or container) in the region, or NULL. */
static const char *identify(const struct guest_fs *gfs)
{
	static const struct probe probes[] = {
		{ 0, "XFSB", 4, "xfs" },
		{ 0x10040, "_BHRfS_M", 8, "btrfs" },
		{ 3, "NTFS    ", 8, "ntfs" },
		{ 3, "EXFAT   ", 8, "exfat" },
		{ 54, "FAT12   ", 8, "vfat" },
		{ 54, "FAT16   ", 8, "vfat" },
		{ 82, "FAT32   ", 8, "vfat" },
		{ 0, "LUKS\xba\xbe", 6, "a LUKS encrypted volume" },
		{ 512, "LABELONE", 8, "an LVM physical volume" },
		{ 4086, "SWAPSPACE2", 10, "Linux swap" },
		{ 4086, "SWAP-SPACE", 10, "Linux swap" },
		{ 0, "hsqs", 4, "squashfs" },
		{ 1024, "\x10\x20\xf5\xf2", 4, "f2fs" },
		{ 32769, "CD001", 5, "iso9660" },
		{ 32768, "JFS1", 4, "jfs" },
		{ 65536 + 52, "ReIsEr", 6, "reiserfs" },
		{ 4096, "\xfc\x4e\x2b\xa9", 4, "a Linux RAID member" },
		{ 0, "\xeb\x3c\x90", 0, NULL },
	};
	uint8_t buf[16];

	for (size_t i = 0; probes[i].name; i++) {
		const struct probe *p = &probes[i];
		if (p->off + p->len > gfs->length ||
		    region_read(gfs, buf, p->len, p->off) < 0)
			continue;
		if (!memcmp(buf, p->magic, p->len))
			return p->name;
	}
	return NULL;
}

static int region_is_zero(const struct guest_fs *gfs, uint64_t len)
{
	uint8_t buf[4096];

	if (len > gfs->length)
		len = gfs->length;
	for (uint64_t off = 0; off < len; off += sizeof(buf)) {
		const size_t n = len - off < sizeof(buf) ? len - off :
							  sizeof(buf);
		if (region_read(gfs, buf, n, off) < 0)
			return 0;
		for (size_t i = 0; i < n; i++)
			if (buf[i])
				return 0;
	}
	return 1;
}

/* ---- open and close --------------------------------------------------- */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* Checks the ext superblock's sizes against the region before libext2fs
 * sizes its tables from them. */
static int check_super(const struct guest_fs *gfs, char *why, size_t whylen)
{
	uint8_t sb[1024];
	uint32_t log_bs, incompat;
	uint64_t blocks, bs;
	const char *other;
	int rc;

	if (gfs->length < 2048 ||
	    (rc = region_read(gfs, sb, sizeof(sb), 1024)) < 0 ||
	    (sb[56] | sb[57] << 8) != EXT_MAGIC) {
		other = identify(gfs);
		if (other)
			guest_say(why, whylen, "holds %s; only ext2/3/4 can be read",
			    other);
		else if (region_is_zero(gfs, 65536))
			guest_say(why, whylen, "holds no filesystem (its first "
			    "64 KiB are zeroes); only ext2/3/4 can be read");
		else
			guest_say(why, whylen, "holds no filesystem vdisk "
			    "recognises; only ext2/3/4 can be read");
		return -EMEDIUMTYPE;
	}
	incompat = le32(sb + 0x60);
	if (incompat & EXT3_FEATURE_INCOMPAT_JOURNAL_DEV) {
		guest_say(why, whylen, "holds an ext3/ext4 external journal, not a "
		    "filesystem");
		return -EMEDIUMTYPE;
	}
	log_bs = le32(sb + 24);
	if (log_bs > 6) {
		guest_say(why, whylen, "holds an ext filesystem with an impossible "
		    "block size (2^%" PRIu32 " KiB)", log_bs);
		return -EIO;
	}
	bs = 1024u << log_bs;
	blocks = le32(sb + 4);
	if (incompat & EXT4_FEATURE_INCOMPAT_64BIT)
		blocks |= (uint64_t)le32(sb + 0x150) << 32;
	if (blocks == 0 || blocks > gfs->length / bs) {
		guest_say(why, whylen, "holds an ext filesystem of %" PRIu64 " blocks of %"
		    PRIu64 " bytes, larger than its %" PRIu64 " bytes",
		    blocks, bs, gfs->length);
		return -EIO;
	}
	return 0;
}

static int libext2fs_open(struct guest_fs *gfs, char *why, size_t whylen)
{
	char name[64];
	errcode_t err;

	snprintf(name, sizeof(name), "guest:%p", (void *)gfs);
	err = ext2fs_open2(name, NULL,
			   EXT2_FLAG_64BITS | EXT2_FLAG_SKIP_MMP,
			   0, 0, &guest_io_manager, &gfs->fs);
	if (err) {
		gfs->fs = NULL;
		guest_say(why, whylen, "holds an ext filesystem libext2fs cannot open: %s",
		    error_message(err));
		return err == EXT2_ET_NO_MEMORY ? -ENOMEM : -EIO;
	}
	gfs->block_size = gfs->fs->blocksize;
	return 0;
}

struct journal_map {
	struct guest_fs *gfs;
	blk64_t *blocks;
	uint64_t n;
};

static int journal_read(void *opaque, uint64_t n, void *buf)
{
	const struct journal_map *m = opaque;
	const unsigned bs = m->gfs->block_size;

	if (n >= m->n)
		return -EIO;
	/* The journal itself is read from the disk, never the overlay. */
	if (m->blocks[n] > m->gfs->length / bs - 1)
		return -EIO;
	return guest_disk_read(&m->gfs->disk, buf, bs,
			       m->gfs->offset + m->blocks[n] * bs);
}

/* A filesystem with needs_recovery: replays its internal journal into the
 * overlay and reopens libext2fs on top of it. */
static int replay_journal(struct guest_fs *gfs, char *why, size_t whylen)
{
	ext2_filsys fs = gfs->fs;
	const ext2_ino_t jino = fs->super->s_journal_inum;
	struct ext2_inode inode;
	struct journal_map m = { .gfs = gfs };
	char notes[160] = "";
	uint64_t size;
	errcode_t err;
	int rc;

	if (!ext2fs_has_feature_journal(fs->super) || jino == 0) {
		guest_say(why, whylen, "holds an ext filesystem that needs recovery "
		    "but has no internal journal (an external journal device is not "
		    "supported)");
		return -EIO;
	}
	err = ext2fs_read_inode(fs, jino, &inode);
	if (err) {
		guest_say(why, whylen, "holds an ext filesystem whose journal inode %u "
		    "cannot be read: %s", jino,
		    error_message(err));
		return -EIO;
	}
	size = EXT2_I_SIZE(&inode);
	m.n = size / gfs->block_size;
	if (m.n < 1024 / (gfs->block_size / 1024) || m.n > JOURNAL_MAX_BLOCKS) {
		guest_say(why, whylen, "holds an ext filesystem whose journal inode %u "
		    "has an impossible size "
		    "(%" PRIu64 " bytes)", jino, size);
		return -EIO;
	}
	m.blocks = calloc(m.n, sizeof(*m.blocks));
	if (!m.blocks)
		return -ENOMEM;
	for (uint64_t i = 0; i < m.n; i++) {
		err = ext2fs_bmap2(fs, jino, &inode, NULL, 0, i, NULL,
				   &m.blocks[i]);
		if (err || m.blocks[i] == 0) {
			guest_say(why, whylen, "holds an ext filesystem whose journal "
			    "block %" PRIu64 " is not mapped: %s", i,
			    err ? error_message(err) : "a hole");
			free(m.blocks);
			return -EIO;
		}
	}
	rc = jbd2_replay(journal_read, &m, m.n, gfs->block_size,
			 ext2fs_blocks_count(fs->super), &gfs->overlay, notes,
			 sizeof(notes));
	free(m.blocks);
	if (rc < 0) {
		guest_say(why, whylen, "holds an ext filesystem whose journal "
		    "cannot be replayed: %s", notes);
		return rc;
	}
	snprintf(gfs->notes, sizeof(gfs->notes), "journal replayed: %s",
		 notes);
	if (!gfs->overlay)
		return 0;
	ext2fs_close_free(&gfs->fs);
	return libext2fs_open(gfs, why, whylen);
}

/* libext2fs' messages for error_message(), registered once per process
 * (com_err adds a list node per call). */
static pthread_once_t error_table_once = PTHREAD_ONCE_INIT;

static void load_error_table(void)
{
	initialize_ext2_error_table();
}

int guest_fs_open(const struct guest_disk *d, uint64_t offset,
		  uint64_t length, struct guest_fs **out, char *why,
		  size_t whylen)
{
	struct guest_fs *gfs;
	int rc;

	if (!d || !out)
		return -EINVAL;
	*out = NULL;
	if (offset > d->size || length > d->size - offset) {
		guest_say(why, whylen, "region %" PRIu64 "+%" PRIu64 " lies outside "
		    "the %" PRIu64 "-byte disk", offset, length, d->size);
		return -EINVAL;
	}
	gfs = calloc(1, sizeof(*gfs));
	if (!gfs)
		return -ENOMEM;
	gfs->disk = *d;
	gfs->offset = offset;
	gfs->length = length;
	gfs->block_size = 1024;
	pthread_once(&error_table_once, load_error_table);
	rc = check_super(gfs, why, whylen);
	if (rc == 0)
		rc = libext2fs_open(gfs, why, whylen);
	if (rc == 0 && ext2fs_has_feature_journal_needs_recovery(gfs->fs->super))
		rc = replay_journal(gfs, why, whylen);
	if (rc == 0 && ext2fs_has_feature_journal_needs_recovery(gfs->fs->super))
		/* The replayed superblock still says so (the kernel
		 * clears the flag after recovery): clear it in memory. */
		ext2fs_clear_feature_journal_needs_recovery(gfs->fs->super);
	if (rc == 0) {
		gfs->cache = malloc((size_t)CACHE_SLOTS * gfs->block_size);
		memset(gfs->cache_block, 0, sizeof(gfs->cache_block));
	}
	if (rc < 0) {
		guest_fs_close(gfs);
		return rc;
	}
	*out = gfs;
	return 0;
}

void guest_fs_close(struct guest_fs *gfs)
{
	if (!gfs)
		return;
	if (gfs->fs) {
		gfs->fs->flags &= ~EXT2_FLAG_DIRTY;
		ext2fs_close_free(&gfs->fs);
	}
	jbd2_overlay_free(gfs->overlay);
	free(gfs->cache);
	free(gfs);
}

const char *guest_fs_notes(const struct guest_fs *gfs)
{
	return gfs->notes;
}

void guest_fs_uuid(const struct guest_fs *gfs, char out[37])
{
	const unsigned char *u = gfs->fs->super->s_uuid;

	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
		 "%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4],
		 u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
		 u[14], u[15]);
}

uint64_t guest_fs_root(const struct guest_fs *gfs)
{
	return EXT2_ROOT_INO;
}

/* ---- inodes -------------------------------------------------------------- */

static int check_ino(const struct guest_fs *gfs, uint64_t ino)
{
	return ino >= 1 && ino <= gfs->fs->super->s_inodes_count ? 0 : -ENOENT;
}

static int read_inode(struct guest_fs *gfs, uint64_t ino,
		      struct ext2_inode_large *inode)
{
	int rc = check_ino(gfs, ino);

	if (rc < 0)
		return rc;
	memset(inode, 0, sizeof(*inode));
	return fs_errno(ext2fs_read_inode_full(gfs->fs, (ext2_ino_t)ino,
					       (struct ext2_inode *)inode,
					       sizeof(*inode)));
}

/* An ext4 timestamp: 32 signed bits of seconds, and in the large inode's
 * extra field two more epoch bits and 30 bits of nanoseconds. */
static struct timespec ext_time(uint32_t secs, const uint32_t *extra)
{
	struct timespec ts;

	ts.tv_sec = (int32_t)secs;
	ts.tv_nsec = 0;
	if (extra) {
		ts.tv_sec += (int64_t)(*extra & 3) << 32;
		ts.tv_nsec = *extra >> 2;
		if (ts.tv_nsec > 999999999)
			ts.tv_nsec = 0;
	}
	return ts;
}

/* Whether the large inode's extra area holds the 32-bit field at byte
 * OFFSET of struct ext2_inode_large. */
static int has_extra(const struct guest_fs *gfs,
		     const struct ext2_inode_large *inode, size_t offset)
{
	const size_t isize = EXT2_INODE_SIZE(gfs->fs->super);

	return isize > EXT2_GOOD_OLD_INODE_SIZE &&
	       EXT2_GOOD_OLD_INODE_SIZE + (size_t)inode->i_extra_isize <= isize &&
	       offset + 4 <= EXT2_GOOD_OLD_INODE_SIZE + (size_t)inode->i_extra_isize;
}

#define EXTRA(gfs, inode, field) \
	(has_extra(gfs, inode, offsetof(struct ext2_inode_large, field)) ? \
	 &(inode)->field : NULL)

int guest_fs_stat(struct guest_fs *gfs, uint64_t ino, struct guest_stat *st)
{
	struct ext2_inode_large inode;
	int rc = read_inode(gfs, ino, &inode);

	if (rc < 0)
		return rc;
	memset(st, 0, sizeof(*st));
	st->ino = ino;
	st->mode = inode.i_mode;
	st->nlink = inode.i_links_count;
	/* With dir_nlink a directory of over 65000 subdirectories counts 1,
	 * which stat(2) on Linux shows as is. */
	st->uid = inode_uid(inode);
	st->gid = inode_gid(inode);
	st->size = EXT2_I_SIZE(&inode);
	st->blocks512 = ext2fs_get_stat_i_blocks(gfs->fs,
						 (struct ext2_inode *)&inode);
	if (LINUX_S_ISCHR(inode.i_mode) || LINUX_S_ISBLK(inode.i_mode)) {
		const uint32_t old = inode.i_block[0], new = inode.i_block[1];
		if (old)
			st->rdev = makedev((old >> 8) & 255, old & 255);
		else
			st->rdev = makedev((new & 0xfff00) >> 8,
					   (new & 0xff) | ((new >> 12) & 0xfff00));
	}
	st->atime = ext_time(inode.i_atime, EXTRA(gfs, &inode, i_atime_extra));
	st->mtime = ext_time(inode.i_mtime, EXTRA(gfs, &inode, i_mtime_extra));
	st->ctime = ext_time(inode.i_ctime, EXTRA(gfs, &inode, i_ctime_extra));
	if (has_extra(gfs, &inode, offsetof(struct ext2_inode_large, i_crtime)))
		st->btime = ext_time(inode.i_crtime,
				     EXTRA(gfs, &inode, i_crtime_extra));
	return 0;
}

/* ---- directories ------------------------------------------------------- */

struct lookup_state {
	const char *name;
	uint64_t found;
};

static int lookup_one(void *opaque, const char *name, uint64_t ino,
		      unsigned dtype)
{
	struct lookup_state *ls = opaque;

	if (strcmp(name, ls->name))
		return 0;
	ls->found = ino;
	return 1;
}

int guest_fs_lookup(struct guest_fs *gfs, uint64_t dir, const char *name,
		    uint64_t *ino)
{
	const size_t len = strlen(name);
	int rc;

	if (len == 0 || len > EXT2_NAME_LEN || strchr(name, '/'))
		return len > EXT2_NAME_LEN ? -ENAMETOOLONG : -ENOENT;
	/* Through guest_fs_readdir, not ext2fs_lookup: the same bounded
	 * walk (and the same names: a skipped entry cannot be found). */
	struct lookup_state ls = { name, 0 };
	rc = guest_fs_readdir(gfs, dir, lookup_one, &ls);
	if (rc < 0 && rc != 1)
		return rc;
	if (rc != 1)
		return -ENOENT;
	*ino = ls.found;
	return 0;
}

struct readdir_state {
	struct guest_fs *gfs;
	guest_dirent_fn fn;
	void *opaque;
	int rc;
	uint64_t budget; /* entries, empty ones included, before it is damage */
};

static unsigned dtype_of(int ft)
{
	switch (ft) {
	case EXT2_FT_REG_FILE: return DT_REG;
	case EXT2_FT_DIR: return DT_DIR;
	case EXT2_FT_CHRDEV: return DT_CHR;
	case EXT2_FT_BLKDEV: return DT_BLK;
	case EXT2_FT_FIFO: return DT_FIFO;
	case EXT2_FT_SOCK: return DT_SOCK;
	case EXT2_FT_SYMLINK: return DT_LNK;
	default: return DT_UNKNOWN;
	}
}

static int readdir_one(ext2_ino_t dir, int entry,
		       struct ext2_dir_entry *dirent, int offset,
		       int blocksize, char *buf, void *priv)
{
	struct readdir_state *s = priv;
	const int len = ext2fs_dirent_name_len(dirent);
	char name[EXT2_NAME_LEN + 1];

	/* An extent tree can name the same blocks again and again (a DAG of
	 * index nodes): the walk stops once it has seen more entries than
	 * the directory's size can hold. */
	if (s->budget-- == 0) {
		s->rc = -EIO;
		return DIRENT_ABORT;
	}
	if (entry != DIRENT_DOT_FILE && entry != DIRENT_DOT_DOT_FILE &&
	    entry != DIRENT_OTHER_FILE)
		return 0;
	if (dirent->inode == 0 || check_ino(s->gfs, dirent->inode) < 0 ||
	    len <= 0 || len > EXT2_NAME_LEN)
		return 0;
	memcpy(name, dirent->name, (size_t)len);
	name[len] = 0;
	if (memchr(name, '/', (size_t)len) || strlen(name) != (size_t)len)
		return 0;
	s->rc = s->fn(s->opaque, name, dirent->inode,
		      ext2fs_has_feature_filetype(s->gfs->fs->super) ?
		      dtype_of(ext2fs_dirent_file_type(dirent)) : DT_UNKNOWN);
	return s->rc ? DIRENT_ABORT : 0;
}

int guest_fs_readdir(struct guest_fs *gfs, uint64_t dir, guest_dirent_fn fn,
		     void *opaque)
{
	struct readdir_state s = { gfs, fn, opaque, 0, 0 };
	struct ext2_inode_large inode;
	uint64_t size, max;
	int rc = read_inode(gfs, dir, &inode);

	if (rc < 0)
		return rc;
	if (!LINUX_S_ISDIR(inode.i_mode))
		return -ENOTDIR;
	/* The smallest entry is 8 bytes; an inline directory holds at most
	 * an inode's worth plus an xattr block. */
	size = EXT2_I_SIZE(&inode);
	max = ext2fs_blocks_count(gfs->fs->super) * gfs->fs->blocksize;
	s.budget = (size < max ? size : max) / 8 + 64;
	rc = fs_errno(ext2fs_dir_iterate2(gfs->fs, (ext2_ino_t)dir,
					  DIRENT_FLAG_INCLUDE_EMPTY, NULL,
					  readdir_one, &s));
	return s.rc ? s.rc : rc;
}

/* ---- files --------------------------------------------------------------- */

/* An extent-mapped file's bytes [OFF, OFF + LEN), inside its size: each
 * extent's part read from the disk in one piece (ext2fs_file_read goes a
 * block at a time); holes and unwritten extents are zeroes. */
static int read_extents(struct guest_fs *gfs, uint64_t ino,
			struct ext2_inode_large *inode, uint8_t *buf,
			size_t len, uint64_t off)
{
	const uint64_t bs = gfs->fs->blocksize;
	const uint64_t first = off / bs, last = (off + len - 1) / bs;
	const uint64_t fs_blocks = ext2fs_blocks_count(gfs->fs->super);
	uint64_t budget = fs_blocks + 16, last_end = 0;
	ext2_extent_handle_t h;
	struct ext2fs_extent e;
	int op = EXT2_EXTENT_ROOT, rc = 0;
	errcode_t err;

	memset(buf, 0, len);
	err = ext2fs_extent_open2(gfs->fs, (ext2_ino_t)ino,
				  (struct ext2_inode *)inode, &h);
	if (err)
		return fs_errno(err);
	for (;;) {
		uint64_t from, to, lo, hi;

		err = ext2fs_extent_get(h, op, &e);
		op = EXT2_EXTENT_NEXT_LEAF;
		if (err == EXT2_ET_EXTENT_NO_NEXT)
			break;
		if (err) {
			rc = fs_errno(err);
			break;
		}
		if (budget-- == 0) {
			rc = -EIO;
			break;
		}
		if (!(e.e_flags & EXT2_EXTENT_FLAGS_LEAF) || e.e_len == 0)
			continue;
		if (e.e_lblk < last_end) { /* leaves out of order: damage */
			rc = -EIO;
			break;
		}
		last_end = e.e_lblk + e.e_len;
		if (e.e_lblk > last)
			break;
		if (last_end <= first || (e.e_flags & EXT2_EXTENT_FLAGS_UNINIT))
			continue;
		if (e.e_pblk >= fs_blocks || e.e_len > fs_blocks - e.e_pblk) {
			rc = -EIO;
			break;
		}
		lo = e.e_lblk > first ? e.e_lblk : first;
		hi = last_end - 1 < last ? last_end - 1 : last;
		from = lo * bs > off ? lo * bs : off;
		to = (hi + 1) * bs < off + len ? (hi + 1) * bs : off + len;
		rc = region_read(gfs, buf + (from - off), (size_t)(to - from),
				 (e.e_pblk + (lo - e.e_lblk)) * bs + from % bs);
		if (rc < 0)
			break;
	}
	ext2fs_extent_free(h);
	return rc;
}

ssize_t guest_fs_read(struct guest_fs *gfs, uint64_t ino, void *buf,
		      size_t len, uint64_t off)
{
	struct ext2_inode_large inode;
	ext2_file_t file;
	uint64_t size;
	size_t done = 0;
	errcode_t err;
	int rc = read_inode(gfs, ino, &inode);

	if (rc < 0)
		return rc;
	if (LINUX_S_ISDIR(inode.i_mode))
		return -EISDIR;
	if (!LINUX_S_ISREG(inode.i_mode))
		return -EINVAL;
	size = EXT2_I_SIZE(&inode);
	if (off >= size || len == 0)
		return 0;
	if (len > size - off)
		len = (size_t)(size - off);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	if ((inode.i_flags & EXT4_EXTENTS_FL) &&
	    !(inode.i_flags & EXT4_INLINE_DATA_FL)) {
		rc = read_extents(gfs, ino, &inode, buf, len, off);
		return rc < 0 ? rc : (ssize_t)len;
	}
	err = ext2fs_file_open2(gfs->fs, (ext2_ino_t)ino,
				(struct ext2_inode *)&inode, 0, &file);
	if (err)
		return fs_errno(err);
	err = ext2fs_file_llseek(file, off, EXT2_SEEK_SET, NULL);
	while (!err && done < len) {
		const unsigned int want = len - done > (1u << 30) ?
					  (1u << 30) : (unsigned)(len - done);
		unsigned int got = 0;
		err = ext2fs_file_read(file, (char *)buf + done, want, &got);
		if (err || got == 0)
			break;
		done += got;
	}
	ext2fs_file_close(file);
	if (err)
		return fs_errno(err);
	/* A file's size past its blocks reads as zeroes (a hole at the
	 * end); ext2fs_file_read stops at i_size, so short means damage. */
	if (done < len)
		memset((char *)buf + done, 0, len - done);
	return (ssize_t)len;
}

int guest_fs_readlink(struct guest_fs *gfs, uint64_t ino, char *buf,
		      size_t len)
{
	struct ext2_inode_large inode;
	uint64_t size;
	int rc = read_inode(gfs, ino, &inode);

	if (rc < 0)
		return rc;
	if (!LINUX_S_ISLNK(inode.i_mode))
		return -EINVAL;
	size = EXT2_I_SIZE(&inode);
	if (size == 0 || size >= gfs->fs->blocksize || size >= PATH_MAX)
		return -EIO;
	if (len <= size)
		return -ENAMETOOLONG;
	if (inode.i_flags & EXT4_INLINE_DATA_FL) {
		char tmp[PATH_MAX + EXT4_MIN_INLINE_DATA_SIZE];
		size_t got = sizeof(tmp);
		size_t have = 0;
		errcode_t err = ext2fs_inline_data_size(gfs->fs,
							(ext2_ino_t)ino, &have);
		if (err)
			return fs_errno(err);
		if (have > sizeof(tmp) || have < size)
			return -EIO;
		err = ext2fs_inline_data_get(gfs->fs, (ext2_ino_t)ino,
					     (struct ext2_inode *)&inode, tmp,
					     &got);
		if (err)
			return fs_errno(err);
		memcpy(buf, tmp, size);
	} else if (ext2fs_is_fast_symlink((struct ext2_inode *)&inode)) {
		if (size > sizeof(inode.i_block))
			return -EIO;
		memcpy(buf, inode.i_block, size);
	} else {
		ext2_file_t file;
		unsigned int got = 0;
		errcode_t err = ext2fs_file_open2(gfs->fs, (ext2_ino_t)ino,
						  (struct ext2_inode *)&inode,
						  0, &file);
		if (err)
			return fs_errno(err);
		err = ext2fs_file_read(file, buf, (unsigned)size, &got);
		ext2fs_file_close(file);
		if (err)
			return fs_errno(err);
		if (got != size)
			return -EIO;
	}
	buf[size] = 0;
	if (strlen(buf) != size)
		return -EIO; /* a NUL inside the target */
	return (int)size;
}

/* ---- extended attributes ------------------------------------------------- */

static int xattrs_open(struct guest_fs *gfs, uint64_t ino,
		       struct ext2_xattr_handle **h)
{
	errcode_t err;
	int rc = check_ino(gfs, ino);

	if (rc < 0)
		return rc;
	err = ext2fs_xattrs_open(gfs->fs, (ext2_ino_t)ino, h);
	if (err)
		return err == EXT2_ET_MISSING_EA_FEATURE ? -ENODATA :
							   fs_errno(err);
	err = ext2fs_xattrs_read(*h);
	if (err) {
		ext2fs_xattrs_close(h);
		return fs_errno(err);
	}
	return 0;
}

struct list_state {
	char *buf;
	size_t len, used;
};

static int list_one(char *name, char *value, size_t value_len, void *data)
{
	struct list_state *s = data;
	const size_t n = strlen(name) + 1;

	if (s->len && s->used + n <= s->len)
		memcpy(s->buf + s->used, name, n);
	s->used += n;
	return 0;
}

ssize_t guest_fs_listxattr(struct guest_fs *gfs, uint64_t ino, char *buf,
			   size_t len)
{
	struct ext2_xattr_handle *h;
	struct list_state s = { buf, len, 0 };
	errcode_t err;
	int rc = xattrs_open(gfs, ino, &h);

	if (rc == -ENODATA)
		return 0; /* no xattr feature: none */
	if (rc < 0)
		return rc;
	err = ext2fs_xattrs_iterate(h, list_one, &s);
	ext2fs_xattrs_close(&h);
	if (err)
		return fs_errno(err);
	if (len && s.used > len)
		return -ERANGE;
	return (ssize_t)s.used;
}

ssize_t guest_fs_getxattr(struct guest_fs *gfs, uint64_t ino,
			  const char *name, void *buf, size_t len)
{
	struct ext2_xattr_handle *h;
	void *value = NULL;
	size_t vlen = 0;
	errcode_t err;
	int rc = xattrs_open(gfs, ino, &h);

	if (rc < 0)
		return rc;
	err = ext2fs_xattr_get(h, name, &value, &vlen);
	ext2fs_xattrs_close(&h);
	if (err)
		return fs_errno(err);
	if (vlen > SSIZE_MAX) {
		ext2fs_free_mem(&value);
		return -EIO;
	}
	if (len) {
		if (vlen > len) {
			ext2fs_free_mem(&value);
			return -ERANGE;
		}
		memcpy(buf, value, vlen);
	}
	ext2fs_free_mem(&value);
	return (ssize_t)vlen;
}

/* ---- SEEK_DATA / SEEK_HOLE ----------------------------------------------- */

/* Runs of data, in logical blocks, found in file order. */
struct seek_state {
	uint64_t from;      /* block searched from */
	uint64_t data;      /* first data block >= from, or UINT64_MAX */
	uint64_t hole;      /* first hole block >= from */
	uint64_t budget;    /* block visits left before we call it damage */
	int whence, done;
};

/* Feeds the data run [LBLK, LBLK + LEN) of an increasing walk. */
static void seek_run(struct seek_state *s, uint64_t lblk, uint64_t len)
{
	const uint64_t end = lblk + len;

	if (s->done || end <= s->from)
		return;
	if (s->data == UINT64_MAX)
		s->data = lblk > s->from ? lblk : s->from;
	if (s->whence == SEEK_DATA) {
		s->done = 1;
		return;
	}
	/* SEEK_HOLE: the hole starts where the runs from s->from stop
	 * touching. */
	if (lblk > s->hole) {
		s->done = 1;
		return;
	}
	if (end > s->hole)
		s->hole = end;
}

static int seek_block(ext2_filsys fs, blk64_t *blocknr, e2_blkcnt_t blockcnt,
		      blk64_t ref_blk, int ref_offset, void *priv)
{
	struct seek_state *s = priv;

	if (blockcnt < 0)
		return 0;
	if (s->budget-- == 0) {
		s->done = -1;
		return BLOCK_ABORT;
	}
	seek_run(s, (uint64_t)blockcnt, 1);
	return s->done ? BLOCK_ABORT : 0;
}

static int seek_extents(struct guest_fs *gfs, uint64_t ino,
			struct ext2_inode_large *inode, struct seek_state *s)
{
	ext2_extent_handle_t h;
	struct ext2fs_extent e;
	errcode_t err;
	uint64_t last_end = 0;
	int op = EXT2_EXTENT_ROOT;

	err = ext2fs_extent_open2(gfs->fs, (ext2_ino_t)ino,
				  (struct ext2_inode *)inode, &h);
	if (err)
		return fs_errno(err);
	while (!s->done) {
		err = ext2fs_extent_get(h, op, &e);
		op = EXT2_EXTENT_NEXT_LEAF;
		if (err == EXT2_ET_EXTENT_NO_NEXT)
			break;
		if (err) {
			ext2fs_extent_free(h);
			return fs_errno(err);
		}
		if (s->budget-- == 0) {
			ext2fs_extent_free(h);
			return -EIO;
		}
		if (!(e.e_flags & EXT2_EXTENT_FLAGS_LEAF))
			continue;
		/* Leaves come in increasing order; one that goes back is
		 * damage (and would let the walk loop). */
		if (e.e_lblk < last_end) {
			ext2fs_extent_free(h);
			return -EIO;
		}
		last_end = e.e_lblk + e.e_len;
		if (!(e.e_flags & EXT2_EXTENT_FLAGS_UNINIT))
			seek_run(s, e.e_lblk, e.e_len);
	}
	ext2fs_extent_free(h);
	return 0;
}

int guest_fs_seek(struct guest_fs *gfs, uint64_t ino, uint64_t off,
		  int whence, uint64_t *out)
{
	struct ext2_inode_large inode;
	struct seek_state s;
	uint64_t size, bs;
	int rc;

	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL;
	rc = read_inode(gfs, ino, &inode);
	if (rc < 0)
		return rc;
	if (!LINUX_S_ISREG(inode.i_mode))
		return LINUX_S_ISDIR(inode.i_mode) ? -EISDIR : -EINVAL;
	size = EXT2_I_SIZE(&inode);
	if (off >= size)
		return -ENXIO;
	if (inode.i_flags & EXT4_INLINE_DATA_FL) {
		*out = whence == SEEK_DATA ? off : size;
		return 0;
	}
	bs = gfs->fs->blocksize;
	memset(&s, 0, sizeof(s));
	s.from = off / bs;
	s.hole = s.from;
	s.data = UINT64_MAX;
	s.whence = whence;
	s.budget = ext2fs_blocks_count(gfs->fs->super) + 16;
	if (inode.i_flags & EXT4_EXTENTS_FL) {
		rc = seek_extents(gfs, ino, &inode, &s);
	} else {
		rc = fs_errno(ext2fs_block_iterate3(gfs->fs, (ext2_ino_t)ino,
						    BLOCK_FLAG_DATA_ONLY |
						    BLOCK_FLAG_READ_ONLY,
						    NULL, seek_block, &s));
		if (s.done < 0)
			rc = -EIO;
	}
	if (rc < 0)
		return rc;
	if (whence == SEEK_DATA) {
		if (s.data == UINT64_MAX || s.data * bs >= size)
			return -ENXIO;
		*out = s.data * bs > off ? s.data * bs : off;
	} else {
		const uint64_t hole = s.hole * bs;
		*out = hole <= off ? off : hole < size ? hole : size;
	}
	return 0;
}

/* ---- paths --------------------------------------------------------------- */

int guest_fs_resolve(struct guest_fs *gfs, const char *path, int follow_last,
		     uint64_t *ino)
{
	/* The path still to walk: the caller's, with symlink targets
	 * spliced in front of what was left. */
	char *todo, *p;
	char target[PATH_MAX];
	uint64_t cur = EXT2_ROOT_INO;
	int hops = 0, rc = 0;
	size_t cap;

	if (!path || path[0] != '/')
		return -EINVAL;
	cap = strlen(path) + 1;
	if (cap > PATH_MAX)
		return -ENAMETOOLONG;
	todo = malloc(cap);
	if (!todo)
		return -ENOMEM;
	memcpy(todo, path, cap);
	p = todo;
	for (;;) {
		char name[EXT2_NAME_LEN + 1];
		struct guest_stat st;
		uint64_t next;
		size_t n;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		n = strcspn(p, "/");
		if (n > EXT2_NAME_LEN) {
			rc = -ENAMETOOLONG;
			break;
		}
		memcpy(name, p, n);
		name[n] = 0;
		p += n;
		if (!strcmp(name, "."))
			continue;
		rc = guest_fs_lookup(gfs, cur, name, &next);
		if (rc < 0)
			break;
		rc = guest_fs_stat(gfs, next, &st);
		if (rc < 0)
			break;
		while (*p == '/')
			p++;
		if (!S_ISLNK(st.mode) || (!*p && !follow_last)) {
			cur = next;
			continue;
		}
		if (++hops > SYMLINK_HOPS) {
			rc = -ELOOP;
			break;
		}
		rc = guest_fs_readlink(gfs, next, target, sizeof(target));
		if (rc < 0)
			break;
		rc = 0;
		/* New todo: TARGET "/" REST. */
		{
			const size_t tl = strlen(target), rl = strlen(p);
			char *nt;
			if (tl + rl + 2 > 2 * PATH_MAX) {
				rc = -ENAMETOOLONG;
				break;
			}
			nt = malloc(tl + rl + 2);
			if (!nt) {
				rc = -ENOMEM;
				break;
			}
			memcpy(nt, target, tl);
			nt[tl] = '/';
			memcpy(nt + tl + 1, p, rl + 1);
			free(todo);
			todo = p = nt;
		}
		if (target[0] == '/')
			cur = EXT2_ROOT_INO;
	}
	free(todo);
	if (rc == 0)
		*ino = cur;
	return rc;
}
