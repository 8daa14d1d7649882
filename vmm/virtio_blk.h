/* virtio-blk (virtio 1.2, 5.2) on the modern PCI transport, backed by an
 * engine volume. */
#ifndef VDISK_VMM_VIRTIO_BLK_H
#define VDISK_VMM_VIRTIO_BLK_H
#include <stddef.h>
#include <stdint.h>

#include "vmm/devices.h"
#include "vmm/virtio_pci.h"

#define VIRTIO_ID_BLOCK 2

#define VIRTIO_BLK_F_SIZE_MAX     1
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_ID_BYTES 20
#define VBLK_SIZE_MAX       (1u << 20)       /* bytes per segment */
#define VBLK_SEG_MAX        (VQ_SIZE_MAX - 2) /* header and status too */
#define VBLK_ZERO_SECTORS   (1u << 21)       /* 1 GiB per discard segment */
#define VBLK_ZERO_SEGS      16u

struct virtio_blk;

/* A device for SPEC with BAR0 at BAR and INTx on GSI; NULL with WHY. */
struct virtio_blk *virtio_blk_create(const struct guest_mem *mem,
				     const struct vmm_irq_ops *irq,
				     const struct vmm_disk_spec *spec,
				     uint32_t bar, uint8_t gsi,
				     char *why, size_t whylen);
struct virtio_pci *virtio_blk_transport(struct virtio_blk *b);
/* Engine flush if the disk is writable: 0 or a negative vd error. */
int virtio_blk_flush(struct virtio_blk *b);
void virtio_blk_destroy(struct virtio_blk *b);

#endif
