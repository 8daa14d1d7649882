/* guest/bootfiles.c: finding the guest's own kernel (see bootfiles.h). */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "guest/bootfiles.h"
#include "guest/disk.h"
#include "guest/extfs.h"
#include "guest/partition.h"

/* Kernels and initrds are tens of MiB; a larger "kernel" is a hostile
 * image trying to fill host memory. */
#define BOOT_FILE_MAX (1ull << 30)

/* Copies regular file INO into a new memfd, hashing it on the way. */
static int copy_file(struct guest_fs *fs, uint64_t ino,
		     struct guest_boot_file *f, char *why, size_t whylen)
{
	struct guest_stat st;
	EVP_MD_CTX *md = NULL;
	unsigned char *buf = NULL;
	uint64_t off = 0;
	unsigned n;
	int rc, fd = -1;

	rc = guest_fs_stat(fs, ino, &st);
	if (rc < 0) {
		guest_say(why, whylen, "%s: %s", f->path, strerror(-rc));
		return rc;
	}
	if (!S_ISREG(st.mode)) {
		guest_say(why, whylen, "%s is not a regular file", f->path);
		return -EINVAL;
	}
	if (st.size > BOOT_FILE_MAX) {
		guest_say(why, whylen, "%s is %llu bytes; more than 1 GiB is not "
		    "a kernel or initrd", f->path, (unsigned long long)st.size);
		return -EFBIG;
	}
	buf = malloc(1 << 20);
	md = EVP_MD_CTX_new();
	fd = memfd_create("vdisk-boot", MFD_CLOEXEC);
	if (!buf || !md || fd < 0 || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		rc = fd < 0 ? -errno : -ENOMEM;
		guest_say(why, whylen, "%s: %s", f->path, strerror(-rc));
		goto fail;
	}
	while (off < st.size) {
		ssize_t got = guest_fs_read(fs, ino, buf, 1 << 20, off);

		if (got <= 0) {
			rc = got < 0 ? (int)got : -EIO;
			guest_say(why, whylen, "reading %s: %s", f->path,
			    strerror(-rc));
			goto fail;
		}
		if (write(fd, buf, (size_t)got) != got) {
			rc = -errno;
			guest_say(why, whylen, "copying %s: %s", f->path,
			    strerror(errno));
			goto fail;
		}
		EVP_DigestUpdate(md, buf, (size_t)got);
		off += (uint64_t)got;
	}
	EVP_DigestFinal_ex(md, f->sha256, &n);
	EVP_MD_CTX_free(md);
	free(buf);
	f->fd = fd;
	f->size = st.size;
	return 0;
fail:
	EVP_MD_CTX_free(md);
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* PATH, following links; a link pointing nowhere is an error naming its
 * target.  Returns 0, -ENOENT if PATH itself is absent, or -errno. */
static int open_link(struct guest_fs *fs, const char *path,
		     struct guest_boot_file *f, char *why, size_t whylen)
{
	char target[GUEST_BOOT_PATH_MAX - 64];
	struct guest_stat st;
	uint64_t ino;
	int rc;

	rc = guest_fs_resolve(fs, path, 0, &ino);
	if (rc < 0)
		return rc;
	snprintf(f->path, sizeof(f->path), "%s", path);
	if (guest_fs_stat(fs, ino, &st) == 0 && S_ISLNK(st.mode)) {
		rc = guest_fs_readlink(fs, ino, target, sizeof(target));
		if (rc < 0) {
			guest_say(why, whylen, "%s: %s", path, strerror(-rc));
			return rc == -ENOENT ? -EIO : rc;
		}
		snprintf(f->path, sizeof(f->path), "%s -> %s", path, target);
		rc = guest_fs_resolve(fs, path, 1, &ino);
		if (rc < 0) {
			guest_say(why, whylen, "%s points nowhere: %s", f->path,
			    strerror(-rc));
			return rc == -ENOENT ? -EIO : rc;
		}
	}
	rc = copy_file(fs, ino, f, why, whylen);
	return rc == -ENOENT ? -EIO : rc;
}

struct newest {
	char name[256];
	int found;
};

static int pick_newest(void *opaque, const char *name, uint64_t ino,
		       unsigned dtype)
{
	struct newest *n = opaque;

	(void)ino;
	(void)dtype;
	if (strncmp(name, "vmlinuz-", 8) || !name[8] || strlen(name) >= 256)
		return 0;
	if (!n->found || strverscmp(name, n->name) > 0) {
		snprintf(n->name, sizeof(n->name), "%s", name);
		n->found = 1;
	}
	return 0;
}

/* Fills B's files from FS: 0, -ENOENT (no kernel there), or -errno. */
static int find_in_fs(struct guest_fs *fs, struct guest_boot *b, char *why,
		      size_t whylen)
{
	struct newest n = { .found = 0 };
	char path[300];
	uint64_t boot;
	int rc;

	rc = open_link(fs, "/vmlinuz", &b->kernel, why, whylen);
	if (rc == 0) {
		rc = open_link(fs, "/initrd.img", &b->initrd, why, whylen);
		return rc == -ENOENT ? 0 : rc;
	}
	if (rc != -ENOENT && rc != -ENOTDIR)
		return rc;
	if (guest_fs_resolve(fs, "/boot", 1, &boot) < 0)
		return -ENOENT;
	rc = guest_fs_readdir(fs, boot, pick_newest, &n);
	if (rc < 0 && rc != -ENOTDIR) {
		guest_say(why, whylen, "/boot: %s", strerror(-rc));
		return rc;
	}
	if (!n.found)
		return -ENOENT;
	snprintf(path, sizeof(path), "/boot/%s", n.name);
	rc = open_link(fs, path, &b->kernel, why, whylen);
	if (rc < 0)
		return rc;
	snprintf(path, sizeof(path), "/boot/initrd.img-%s", n.name + 8);
	rc = open_link(fs, path, &b->initrd, why, whylen);
	return rc == -ENOENT || rc == -ENOTDIR ? 0 : rc;
}

static int has_boot(struct guest_fs *fs)
{
	uint64_t ino;

	return guest_fs_resolve(fs, "/vmlinuz", 0, &ino) == 0 ||
	       guest_fs_resolve(fs, "/boot", 1, &ino) == 0;
}

int guest_boot_find(vd_volume *v, struct guest_boot *b, char *why,
		    size_t whylen)
{
	struct guest_partition_table *table = NULL;
	char fswhy[256];
	struct guest_disk disk;
	struct guest_fs *fs = NULL;
	int rc;

	memset(b, 0, sizeof(*b));
	b->kernel.fd = b->initrd.fd = -1;
	why[0] = 0;
	rc = guest_disk_from_volume(v, &disk);
	if (rc < 0)
		return rc;
	if (guest_fs_open(&disk, 0, disk.size, &fs, fswhy, sizeof(fswhy)) < 0) {
		fs = NULL;
		table = calloc(1, sizeof(*table));
		if (!table)
			return -ENOMEM;
		if (guest_partitions_read(&disk, table, fswhy,
					  sizeof(fswhy)) < 0)
			table->count = 0;
		for (size_t i = 0; i < table->count; i++) {
			const struct guest_partition *p = &table->part[i];

			if (p->extended || guest_fs_open(&disk, p->offset,
					p->length, &fs, fswhy,
					sizeof(fswhy)) < 0)
				continue;
			if (has_boot(fs)) {
				b->part = p->number;
				break;
			}
			guest_fs_close(fs);
			fs = NULL;
		}
	}
	free(table);
	if (!fs)
		return -ENOENT;
	guest_fs_uuid(fs, b->uuid);
	rc = find_in_fs(fs, b, why, whylen);
	guest_fs_close(fs);
	if (rc < 0)
		guest_boot_release(b);
	return rc;
}

void guest_boot_release(struct guest_boot *b)
{
	if (b->kernel.fd >= 0)
		close(b->kernel.fd);
	if (b->initrd.fd >= 0)
		close(b->initrd.fd);
	b->kernel.fd = b->initrd.fd = -1;
}
