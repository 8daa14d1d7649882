/* The virtio 1.x modern PCI transport (virtio 1.2, 4.1): the virtio
 * vendor capabilities and one 32-bit memory BAR holding the common
 * configuration, ISR, device configuration, notification area and the
 * MSI-X table and PBA, which the VIRTIO_PCI_CAP_PCI_CFG capability also
 * reaches through configuration space.  No legacy (0.9.5) interface:
 * Linux's virtio_pci drives modern devices, and the legacy I/O BAR would
 * double the code. */
#ifndef VDISK_VMM_VIRTIO_PCI_H
#define VDISK_VMM_VIRTIO_PCI_H
#include <pthread.h>
#include <stdint.h>

#include "vmm/devices.h"
#include "vmm/pci.h"
#include "vmm/virtqueue.h"

#define VIRTIO_PCI_VENDOR     0x1AF4
#define VIRTIO_PCI_DEVICE(t)  (0x1040 + (t))
#define VIRTIO_F_VERSION_1    32

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER      2
#define VIRTIO_STATUS_DRIVER_OK   4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED      0x80

/* Capability types (virtio_pci_cap.cfg_type). */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG    3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG    5

/* BAR0 layout: one page per region. */
#define VP_BAR_SIZE     0x8000u
#define VP_COMMON_OFF   0x0000u
#define VP_COMMON_LEN   0x40u
#define VP_ISR_OFF      0x1000u
#define VP_DEVCFG_OFF   0x2000u
#define VP_NOTIFY_OFF   0x3000u
#define VP_NOTIFY_MULT  4u
#define VP_MSIX_OFF     0x4000u
#define VP_PBA_OFF      0x5000u

#define VP_MAX_QUEUES   4u
#define VP_MAX_VECTORS  (VP_MAX_QUEUES + 1)
#define VP_NO_VECTOR    0xFFFF
#define VP_DEVCFG_MAX   64u

struct virtio_pci {
	struct pci_device pci;        /* first: the PCI callbacks cast back */
	pthread_mutex_t lock;         /* everything below, and the device */
	const struct guest_mem *mem;
	const struct vmm_irq_ops *irq;
	uint8_t gsi;
	int intx_level;

	uint64_t dev_features, drv_features;
	uint32_t dev_feature_sel, drv_feature_sel;
	uint8_t status, isr, config_gen;
	uint16_t config_vector, queue_sel;
	unsigned nqueues;
	struct virtq vq[VP_MAX_QUEUES];

	uint8_t msix_cap;             /* its offset in configuration space */
	uint8_t pci_cfg_cap;          /* the VIRTIO_PCI_CAP_PCI_CFG window */
	int msix_enabled, msix_masked, intx_disabled;
	uint32_t msix_table[VP_MAX_VECTORS][4];
	uint64_t msix_pba;

	uint8_t devcfg[VP_DEVCFG_MAX];
	unsigned devcfg_len;

	/* The device: the driver notified queue Q (called with LOCK held). */
	void (*queue_notify)(struct virtio_pci *vp, unsigned q);
	void *dev;
};

/* Sets up VP as virtio device TYPE with NQUEUES queues, FEATURES offered,
 * BAR0 at BAR, INTx pin A on GSI.  The caller fills devcfg/devcfg_len and
 * queue_notify/dev. */
void virtio_pci_init(struct virtio_pci *vp, const struct guest_mem *mem,
		     const struct vmm_irq_ops *irq, uint16_t type,
		     uint16_t subsys_id, uint32_t class_code,
		     uint64_t features, unsigned nqueues, uint32_t bar,
		     uint8_t gsi);
void virtio_pci_destroy(struct virtio_pci *vp);

/* An access at OFF inside BAR0 (takes LOCK). */
void virtio_pci_bar_access(struct virtio_pci *vp, uint64_t off, void *data,
			   unsigned size, int is_write);

/* With LOCK held: used buffers were pushed to queue Q, interrupt the
 * driver if it wants that; the driver broke the rules, so set
 * DEVICE_NEEDS_RESET and tell it with a configuration interrupt. */
void virtio_pci_queue_interrupt(struct virtio_pci *vp, unsigned q);
void virtio_pci_device_error(struct virtio_pci *vp);

#endif
