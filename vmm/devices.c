/* The PCI machine of vdisk run: a host bridge at 00:00.0 and one
 * virtio-blk device per disk at slots 1..N, their BARs packed from
 * VMM_PCI_MMIO_BASE.  INTx pins alternate between GSIs 10 and 11, which
 * the core declares level-triggered and active-low. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/devices.h"
#include "vmm/pci.h"
#include "vmm/virtio_blk.h"

#define GSI_BASE 10

struct vmm_devices {
	struct guest_mem mem;
	struct vmm_irq_ops irq;
	pthread_mutex_t bus_lock;     /* the 0xCF8 register, config space */
	struct pci_bus bus;
	struct pci_device host;
	struct virtio_blk *blk[VMM_PCI_MAX_DISKS];
	unsigned ndisks;
};

static uint8_t slot_gsi(unsigned slot)
{
	return (uint8_t)(GSI_BASE + (slot - 1) % 2);
}

struct vmm_devices *vmm_devices_create(const struct guest_mem *mem,
				       const struct vmm_disk_spec *disks,
				       unsigned ndisks,
				       const struct vmm_irq_ops *irq,
				       char *why, size_t whylen)
{
	struct vmm_devices *d;

	if (ndisks > VMM_PCI_MAX_DISKS) {
		snprintf(why, whylen, "%u disks, at most %u are supported",
			 ndisks, VMM_PCI_MAX_DISKS);
		return NULL;
	}
	if (mem->size > VMM_MEM_MAX) {
		snprintf(why, whylen, "guest memory overlaps the PCI window");
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	d->mem = *mem;
	d->irq = *irq;
	pthread_mutex_init(&d->bus_lock, NULL);
	/* Intel 440FX host bridge: what Linux's pci_sanity_check looks for. */
	pci_device_init(&d->host, 0x8086, 0x1237, 0x06000002, 0, 0);
	d->bus.slot[0] = &d->host;
	for (unsigned i = 0; i < ndisks; i++) {
		unsigned slot = i + 1;
		uint32_t bar = (uint32_t)(VMM_PCI_MMIO_BASE + i * VP_BAR_SIZE);

		d->blk[i] = virtio_blk_create(&d->mem, &d->irq, &disks[i], bar,
					      slot_gsi(slot), why, whylen);
		if (!d->blk[i]) {
			vmm_devices_destroy(d);
			return NULL;
		}
		d->ndisks++;
		d->bus.slot[slot] = &virtio_blk_transport(d->blk[i])->pci;
	}
	return d;
}

int vmm_devices_pio(struct vmm_devices *d, uint16_t port, void *data,
		    unsigned size, int is_write)
{
	int r;

	if (port < 0xCF8 || port > 0xCFF)
		return 0;
	pthread_mutex_lock(&d->bus_lock);
	r = pci_bus_pio(&d->bus, port, data, size, is_write);
	pthread_mutex_unlock(&d->bus_lock);
	return r;
}

int vmm_devices_mmio(struct vmm_devices *d, uint64_t gpa, void *data,
		     unsigned size, int is_write)
{
	struct virtio_pci *hit = NULL;
	uint64_t off = 0;

	if (size != 1 && size != 2 && size != 4 && size != 8)
		return 0;
	pthread_mutex_lock(&d->bus_lock);
	for (unsigned i = 0; i < d->ndisks && !hit; i++) {
		struct virtio_pci *vp = virtio_blk_transport(d->blk[i]);
		uint64_t base = pci_device_bar0(&vp->pci);

		if (pci_device_mem_enabled(&vp->pci) && gpa >= base &&
		    gpa - base < vp->pci.bar_size &&
		    size <= vp->pci.bar_size - (gpa - base)) {
			hit = vp;
			off = gpa - base;
		}
	}
	pthread_mutex_unlock(&d->bus_lock);
	if (!hit)
		return 0;
	virtio_pci_bar_access(hit, off, data, size, is_write);
	return 1;
}

size_t vmm_devices_pci_irqs(const struct vmm_devices *d,
			    struct vmm_pci_irq *out, size_t max)
{
	size_t n = 0;

	for (unsigned i = 0; i < d->ndisks && n < max; i++, n++) {
		out[n].slot = (uint8_t)(i + 1);
		out[n].pin = 1;
		out[n].gsi = slot_gsi(i + 1);
	}
	return n;
}

int vmm_devices_flush(struct vmm_devices *d)
{
	int rc = 0;

	for (unsigned i = 0; i < d->ndisks; i++) {
		int r = virtio_blk_flush(d->blk[i]);

		if (r < 0 && !rc)
			rc = r;
	}
	return rc;
}

void vmm_devices_destroy(struct vmm_devices *d)
{
	if (!d)
		return;
	vmm_devices_flush(d);
	for (unsigned i = 0; i < d->ndisks; i++)
		virtio_blk_destroy(d->blk[i]);
	pthread_mutex_destroy(&d->bus_lock);
	free(d);
}
