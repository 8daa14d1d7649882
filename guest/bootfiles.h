/* guest/bootfiles.h: the kernel and initrd a guest boots itself, found on
 * its root filesystem, for `vdisk run` without --kernel. */
#ifndef VDISK_GUEST_BOOTFILES_H
#define VDISK_GUEST_BOOTFILES_H
#include <stddef.h>
#include <stdint.h>
#include "engine/vdisk.h"

#define GUEST_BOOT_PATH_MAX 512

struct guest_boot_file {
	int fd;                         /* a memfd holding it, or -1 */
	char path[GUEST_BOOT_PATH_MAX]; /* in the guest ("/vmlinuz -> boot/x") */
	uint64_t size;
	unsigned char sha256[32];
};

struct guest_boot {
	unsigned part;  /* 0: the whole disk */
	char uuid[37];  /* of the filesystem, for root=UUID= */
	struct guest_boot_file kernel, initrd; /* initrd.fd -1: none */
};

/* Looks on V (the whole disk if it holds ext2/3/4, else the first
 * partition whose ext filesystem has /vmlinuz or /boot) for /vmlinuz and
 * /initrd.img (links resolved inside the guest filesystem), else the
 * newest /boot/vmlinuz-* (strverscmp) and its /boot/initrd.img-*, and
 * copies them into memfds.  Returns 0, or -errno with WHY saying why
 * (-ENOENT: no such filesystem or kernel; -EFBIG: a file over 1 GiB).
 * Release with guest_boot_release(). */
int guest_boot_find(vd_volume *v, struct guest_boot *out, char *why,
		    size_t whylen);
void guest_boot_release(struct guest_boot *b);

#endif
