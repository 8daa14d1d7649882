/* vdisk run: the contract between the machine (vmm/ KVM, boot, firmware
 * tables, UART; "the core") and the PCI device models (vmm/ PCI bus,
 * virtio-pci transport, virtqueues, virtio-blk; "the devices").
 *
 * The devices never call KVM: they see guest memory as a byte range, and
 * raise interrupts through callbacks the core gives them.  That is what
 * lets tests drive them without /dev/kvm (tests/unit/test-vmm-*.c).
 *
 * Guest-physical layout (the core writes the e820 map and firmware tables
 * from these constants):
 *   [0, mem_size)                         RAM (mem_size <= VMM_MEM_MAX)
 *   [VMM_PCI_MMIO_BASE, +VMM_PCI_MMIO_SIZE) PCI BARs, reserved in e820
 *   0xFEC00000 IOAPIC, 0xFEE00000 local APIC (KVM's in-kernel irqchip)
 */
#ifndef VDISK_VMM_DEVICES_H
#define VDISK_VMM_DEVICES_H
#include <stddef.h>
#include <stdint.h>

#include "engine/vdisk.h"

#define VMM_MEM_MAX       (3ull << 30)  /* RAM ends below the PCI window */
#define VMM_PCI_MMIO_BASE 0xC0000000ull
#define VMM_PCI_MMIO_SIZE 0x10000000ull /* 256 MiB of BAR space */
#define VMM_PCI_MAX_DISKS 16            /* slots 1..16; slot 0 the host bridge */

/* Guest RAM as the devices see it: guest-physical [0, size) at HOST. */
struct guest_mem {
	uint8_t *host;
	uint64_t size;
};

/* The host address of guest-physical [GPA, GPA+LEN), or NULL if any of it
 * lies outside RAM (or GPA+LEN overflows).  Every guest address a device
 * touches goes through this. */
static inline void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa,
				  uint64_t len)
{
	if (gpa > m->size || len > m->size - gpa)
		return NULL;
	return m->host + gpa;
}

/* Interrupt callbacks, implemented by the core: a level change of a GSI on
 * the IOAPIC (INTx), and an MSI message (MSI-X).  Called from the thread
 * that handles the access which caused them (a vCPU thread). */
struct vmm_irq_ops {
	void (*set_level)(void *opaque, unsigned gsi, int level);
	void (*msi)(void *opaque, uint64_t addr, uint32_t data);
	void *opaque;
};

/* One disk: an open engine handle, owned by the caller, and whether the
 * guest sees it read-only (VIRTIO_BLK_F_RO; writes fail with IOERR). */
struct vmm_disk_spec {
	vd_volume *vol;
	int readonly;
	const char *serial; /* VIRTIO_BLK_T_GET_ID answer, at most 20 bytes */
};

/* A PCI INTx route, for the core's MP table and ACPI tables: device SLOT's
 * pin PIN (1 = INTA) drives GSI (level-triggered, active-low, as PCI is). */
struct vmm_pci_irq {
	uint8_t slot, pin, gsi;
};

struct vmm_devices;

/* The host bridge at slot 0 and one virtio-blk device per disk at slots
 * 1..NDISKS.  Returns NULL with a message in WHY on failure. */
struct vmm_devices *vmm_devices_create(const struct guest_mem *mem,
				       const struct vmm_disk_spec *disks,
				       unsigned ndisks,
				       const struct vmm_irq_ops *irq,
				       char *why, size_t whylen);

/* Guest port I/O and MMIO accesses.  Return 1 if a device owns the
 * address (the access was handled: reads filled DATA), 0 if not.  SIZE is
 * 1, 2, 4 (or 8 for MMIO).  Port ranges: 0xCF8-0xCFF (configuration
 * mechanism 1).  MMIO: [VMM_PCI_MMIO_BASE, +VMM_PCI_MMIO_SIZE). */
int vmm_devices_pio(struct vmm_devices *d, uint16_t port, void *data,
		    unsigned size, int is_write);
int vmm_devices_mmio(struct vmm_devices *d, uint64_t gpa, void *data,
		     unsigned size, int is_write);

/* The INTx routes, at most MAX of them; returns how many there are. */
size_t vmm_devices_pci_irqs(const struct vmm_devices *d,
			    struct vmm_pci_irq *out, size_t max);

/* Engine flush of every writable disk: 0 or a negative vd error. */
int vmm_devices_flush(struct vmm_devices *d);

/* Flushes and frees; the volumes stay open (the caller closes them). */
void vmm_devices_destroy(struct vmm_devices *d);

#endif
