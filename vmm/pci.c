/* PCI configuration mechanism 1 and type-0 headers (PCI Local Bus
 * Specification 3.0, 3.2.2.3.2 and 6.1). */
#include <string.h>

#include "vmm/pci.h"

#define PCI_ADDR_ENABLE 0x80000000u
#define CF8_PORT 0xCF8
#define CFC_PORT 0xCFC

uint32_t pci_cfg_read(const struct pci_device *pd, unsigned off, unsigned size)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < size && off + i < PCI_CFG_SIZE; i++)
		v |= (uint32_t)pd->cfg[off + i] << (8 * i);
	return v;
}

void pci_cfg_set(struct pci_device *pd, unsigned off, unsigned size,
		 uint32_t val)
{
	for (unsigned i = 0; i < size && off + i < PCI_CFG_SIZE; i++)
		pd->cfg[off + i] = (uint8_t)(val >> (8 * i));
}

static void wmask_set(struct pci_device *pd, unsigned off, unsigned size,
		      uint32_t mask)
{
	for (unsigned i = 0; i < size && off + i < PCI_CFG_SIZE; i++)
		pd->wmask[off + i] = (uint8_t)(mask >> (8 * i));
}

void pci_device_init(struct pci_device *pd, uint16_t vendor, uint16_t device,
		     uint32_t class_rev, uint16_t subsys_vendor,
		     uint16_t subsys_id)
{
	memset(pd, 0, sizeof(*pd));
	pci_cfg_set(pd, PCI_VENDOR_ID, 2, vendor);
	pci_cfg_set(pd, PCI_DEVICE_ID, 2, device);
	pci_cfg_set(pd, PCI_REVISION, 4, class_rev);
	pci_cfg_set(pd, PCI_SUBSYS_VENDOR, 2, subsys_vendor);
	pci_cfg_set(pd, PCI_SUBSYS_ID, 2, subsys_id);
	pd->cfg[PCI_HEADER_TYPE] = 0;
	wmask_set(pd, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY |
		  PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
	pd->wmask[0x0C] = 0xFF;  /* cache line size */
	pd->wmask[0x0D] = 0xFF;  /* latency timer */
	pd->cap_end = 0x40;
}

void pci_device_set_bar0(struct pci_device *pd, uint32_t addr, uint32_t size)
{
	pd->bar_size = size;
	pci_cfg_set(pd, PCI_BAR0, 4, addr & ~(size - 1));
	/* Low 4 bits: memory space, 32-bit, not prefetchable (all zero). */
	wmask_set(pd, PCI_BAR0, 4, ~(size - 1) & ~0xFu);
}

void pci_device_set_intx(struct pci_device *pd, uint8_t pin, uint8_t line)
{
	pd->cfg[PCI_INT_PIN] = pin;
	pd->cfg[PCI_INT_LINE] = line;
	pd->wmask[PCI_INT_LINE] = 0xFF;
}

uint8_t pci_device_add_cap(struct pci_device *pd, uint8_t id,
			   const void *body, uint8_t len)
{
	unsigned off = pd->cap_end;

	if (len < 2 || off + len > PCI_CFG_SIZE)
		return 0;
	pd->cfg[off] = id;
	pd->cfg[off + 1] = 0;
	memcpy(pd->cfg + off + 2, body, len - 2u);
	if (pd->cap_last)
		pd->cfg[pd->cap_last + 1] = (uint8_t)off;
	else
		pd->cfg[PCI_CAP_PTR] = (uint8_t)off;
	pci_cfg_set(pd, PCI_STATUS, 2,
		    pci_cfg_read(pd, PCI_STATUS, 2) | PCI_STATUS_CAP_LIST);
	pd->cap_last = (uint8_t)off;
	pd->cap_end = (uint8_t)((off + len + 3) & ~3u);
	return (uint8_t)off;
}

uint32_t pci_device_bar0(const struct pci_device *pd)
{
	return pci_cfg_read(pd, PCI_BAR0, 4) & ~0xFu;
}

int pci_device_mem_enabled(const struct pci_device *pd)
{
	return pd->bar_size &&
	       (pci_cfg_read(pd, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY);
}

static void cfg_write(struct pci_device *pd, unsigned off, unsigned size,
		      uint32_t val)
{
	for (unsigned i = 0; i < size && off + i < PCI_CFG_SIZE; i++) {
		uint8_t m = pd->wmask[off + i], b = (uint8_t)(val >> (8 * i));

		pd->cfg[off + i] = (uint8_t)((pd->cfg[off + i] & ~m) | (b & m));
	}
	if (pd->cfg_written)
		pd->cfg_written(pd, off, size);
}

/* The device the address register selects: bus 0, function 0 only. */
static struct pci_device *selected(struct pci_bus *bus)
{
	uint32_t a = bus->addr;

	if (!(a & PCI_ADDR_ENABLE) || ((a >> 16) & 0xFF) || ((a >> 8) & 7))
		return NULL;
	return bus->slot[(a >> 11) & 0x1F];
}

int pci_bus_pio(struct pci_bus *bus, uint16_t port, void *data, unsigned size,
		int is_write)
{
	uint32_t val = 0;
	unsigned want = size;

	if (port < CF8_PORT || port > CFC_PORT + 3 || !size || size > 4)
		return 0;
	if (is_write)
		memcpy(&val, data, size);
	if (port < CFC_PORT) {
		/* Only dword accesses reach the address register; byte probes
		 * of 0xCF8-0xCFB (Linux's type-2 check) read as nothing. */
		if (port == CF8_PORT && size == 4) {
			if (is_write)
				bus->addr = val & 0x80FFFFFCu;
			else
				val = bus->addr;
		} else if (!is_write) {
			val = 0xFFFFFFFFu;
		}
	} else {
		struct pci_device *pd = selected(bus);
		unsigned off = (bus->addr & 0xFC) + (port - CFC_PORT);

		if (off + size > (bus->addr & 0xFC) + 4u) {  /* past the dword */
			size = (bus->addr & 0xFC) + 4u - off;
			val &= (1u << (8 * size)) - 1;
		}
		if (!pd) {
			val = 0xFFFFFFFFu;
		} else if (is_write) {
			cfg_write(pd, off, size, val);
		} else {
			if (pd->cfg_reading)
				pd->cfg_reading(pd, off, size);
			val = pci_cfg_read(pd, off, size) |
			      (size < 4 ? ~0u << (8 * size) : 0);
		}
	}
	if (!is_write)
		memcpy(data, &val, want);
	return 1;
}
