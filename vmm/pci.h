/* PCI bus 0 behind configuration mechanism 1 (ports 0xCF8, 0xCFC-0xCFF):
 * type-0 configuration headers, one 32-bit memory BAR per device at most,
 * capability lists.  Devices keep their 256 bytes of configuration space
 * here; a write mask says which bits the guest may change, which is also
 * all the BAR sizing protocol needs (all-ones written, the mask read). */
#ifndef VDISK_VMM_PCI_H
#define VDISK_VMM_PCI_H
#include <stdint.h>

#define PCI_CFG_SIZE    256
#define PCI_MAX_SLOTS   32

#define PCI_VENDOR_ID   0x00
#define PCI_DEVICE_ID   0x02
#define PCI_COMMAND     0x04
#define PCI_STATUS      0x06
#define PCI_REVISION    0x08
#define PCI_CLASS_PROG  0x09
#define PCI_HEADER_TYPE 0x0E
#define PCI_BAR0        0x10
#define PCI_SUBSYS_VENDOR 0x2C
#define PCI_SUBSYS_ID   0x2E
#define PCI_CAP_PTR     0x34
#define PCI_INT_LINE    0x3C
#define PCI_INT_PIN     0x3D

#define PCI_COMMAND_IO     0x0001
#define PCI_COMMAND_MEMORY 0x0002
#define PCI_COMMAND_MASTER 0x0004
#define PCI_COMMAND_INTX_DISABLE 0x0400
#define PCI_STATUS_CAP_LIST 0x0010

struct pci_device {
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];  /* bits the guest may write */
	uint32_t bar_size;            /* BAR0 (memory, 32-bit); 0: none */
	uint8_t cap_end;              /* where the next capability goes */
	uint8_t cap_last;             /* offset of the last one, 0: none */
	/* Called after a guest write of SIZE bytes at OFF changed cfg. */
	void (*cfg_written)(struct pci_device *pd, unsigned off, unsigned size);
	/* Called before a guest read of SIZE bytes at OFF (may update cfg). */
	void (*cfg_reading)(struct pci_device *pd, unsigned off, unsigned size);
	void *opaque;
};

struct pci_bus {
	uint32_t addr;                /* the 0xCF8 register */
	struct pci_device *slot[PCI_MAX_SLOTS];
};

/* A type-0 header with these identities; no BAR, no capabilities. */
void pci_device_init(struct pci_device *pd, uint16_t vendor, uint16_t device,
		     uint32_t class_rev, uint16_t subsys_vendor,
		     uint16_t subsys_id);
/* A 32-bit non-prefetchable memory BAR0 of SIZE (a power of two >= 16) at
 * ADDR (aligned to SIZE). */
void pci_device_set_bar0(struct pci_device *pd, uint32_t addr, uint32_t size);
/* INTx pin (1 = INTA) and the line register the guest reads (the GSI). */
void pci_device_set_intx(struct pci_device *pd, uint8_t pin, uint8_t line);
/* Appends a capability of LEN bytes (ID, next pointer and BODY, which
 * holds LEN - 2 bytes); returns its offset, 0 if there is no room. */
uint8_t pci_device_add_cap(struct pci_device *pd, uint8_t id,
			   const void *body, uint8_t len);

/* BAR0's address as the guest programmed it, and whether the device
 * decodes memory (command register) at all. */
uint32_t pci_device_bar0(const struct pci_device *pd);
int pci_device_mem_enabled(const struct pci_device *pd);

/* Little-endian accessors into configuration space. */
uint32_t pci_cfg_read(const struct pci_device *pd, unsigned off,
		      unsigned size);
void pci_cfg_set(struct pci_device *pd, unsigned off, unsigned size,
		 uint32_t val);

/* A port access 0xCF8-0xCFF: returns 1 if handled (always, in range). */
int pci_bus_pio(struct pci_bus *bus, uint16_t port, void *data, unsigned size,
		int is_write);

#endif
