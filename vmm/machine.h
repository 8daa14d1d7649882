/* vdisk run, the core: KVM (vmm/kvm.c), the Linux loader (vmm/boot.c),
 * firmware tables (vmm/tables.c), the serial port (vmm/uart.c) and the
 * machine that ties them to the devices of vmm/devices.h (vmm/vmm.c).
 * Only vmm/kvm.c includes <linux/kvm.h>: everything else is testable
 * without /dev/kvm. */
#ifndef VDISK_VMM_MACHINE_H
#define VDISK_VMM_MACHINE_H
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/devices.h"

#define VMM_MAX_CPUS 16

/* Guest-physical addresses the loader and the tables use. */
#define BOOT_GDT_ADDR     0x500ull
#define BOOT_PARAMS_ADDR  0x7000ull
#define BOOT_PGTABLE_ADDR 0x9000ull   /* PML4, PDPT, 4 PDs: to 0xEFFF */
#define BOOT_CMDLINE_ADDR 0x20000ull
#define BOOT_CMDLINE_MAX  0x10000ull
#define BOOT_KERNEL_ADDR  0x100000ull
#define BOOT_EBDA_ADDR    0x9fc00ull
#define TABLES_ADDR       0xe0000ull  /* ACPI and MP tables: to 0xFFFFF */
#define TABLES_SIZE       0x20000ull

/* The ACPI fixed hardware: PM1a event block (4 ports) and control block. */
#define PM1A_EVT_PORT 0x600
#define PM1A_CNT_PORT 0x604
#define PM_SCI_IRQ    9

/* ---- vmm/kvm.c ---------------------------------------------------------- */

struct kvm_vm;

/* Opens /dev/kvm, creates the VM with the in-kernel irqchip and PIT, RAM
 * of MEM_SIZE at GPA 0 and NCPUS vCPUs (vCPU 0 the boot processor, the
 * others waiting for INIT/SIPI).  NULL with a message in WHY on failure. */
struct kvm_vm *kvm_vm_create(uint64_t mem_size, unsigned ncpus, char *why,
			     size_t whylen);
struct guest_mem kvm_vm_mem(const struct kvm_vm *vm);

/* Puts vCPU 0 in 64-bit mode at ENTRY with RSI = BOOT_PARAMS (the Linux
 * 64-bit boot protocol), on identity page tables written into RAM. */
int kvm_vm_boot_cpu(struct kvm_vm *vm, uint64_t entry, uint64_t boot_params,
		    char *why, size_t whylen);

/* What a vCPU exit asks of the machine. */
enum kvm_exit_kind {
	KVM_X_NONE,      /* nothing: run again */
	KVM_X_IO,        /* port access: PORT, SIZE, DATA, IS_WRITE, COUNT */
	KVM_X_MMIO,      /* memory access: ADDR, SIZE, DATA, IS_WRITE */
	KVM_X_SHUTDOWN,  /* triple fault */
	KVM_X_RESET,     /* system event reset */
	KVM_X_POWEROFF,  /* system event shutdown */
	KVM_X_HALT,
	KVM_X_INTR,      /* interrupted by a signal (kvm_vm_kick) */
	KVM_X_ERROR,     /* fail entry, internal error: see WHY */
};

struct kvm_exit {
	enum kvm_exit_kind kind;
	uint16_t port;
	uint64_t addr;
	unsigned size, count;
	int is_write;
	uint8_t *data;        /* inside the run area: write it for reads */
	char why[128];
};

/* One KVM_RUN of vCPU CPU.  Must be called from one thread per vCPU. */
int kvm_vcpu_run(struct kvm_vm *vm, unsigned cpu, struct kvm_exit *x);

/* Makes vCPU CPU's KVM_RUN return (now or at its next entry) with
 * KVM_X_INTR: set from another thread, with a signal to THREAD. */
void kvm_vcpu_kick(struct kvm_vm *vm, unsigned cpu, pthread_t thread,
		   int sig);

void kvm_vm_irq_line(struct kvm_vm *vm, unsigned gsi, int level);
void kvm_vm_msi(struct kvm_vm *vm, uint64_t addr, uint32_t data);
void kvm_vm_destroy(struct kvm_vm *vm);

/* ---- vmm/boot.c --------------------------------------------------------- */

struct boot_info {
	uint64_t entry;        /* 64-bit entry point */
	uint64_t boot_params;  /* the zero page */
	uint64_t kernel_end;   /* end of what the kernel may use */
	uint64_t initrd_addr, initrd_size;
	uint16_t version;      /* boot protocol */
};

/* Loads the bzImage KERNEL (KLEN bytes, untrusted), optional INITRD and
 * CMDLINE into MEM and writes the zero page and the e820 map.  0, or -1
 * with the reason in WHY. */
int boot_load_linux(const struct guest_mem *mem, const uint8_t *kernel,
		    size_t klen, const uint8_t *initrd, size_t ilen,
		    const char *cmdline, struct boot_info *out, char *why,
		    size_t whylen);

/* ---- vmm/tables.c ------------------------------------------------------- */

/* Writes the MP floating pointer and configuration table and the ACPI
 * tables (RSDP, XSDT, MADT, FADT, DSDT with _S5) for NCPUS processors and
 * the PCI INTx routes IRQS into [TABLES_ADDR, +TABLES_SIZE).  0 or -1. */
int tables_write(const struct guest_mem *mem, unsigned ncpus,
		 const struct vmm_pci_irq *irqs, size_t nirqs, char *why,
		 size_t whylen);

/* The MP table's checksum rule: bytes sum to 0 mod 256. */
uint8_t tables_sum(const uint8_t *p, size_t len);

/* ---- vmm/uart.c --------------------------------------------------------- */

#define UART_COM1_BASE 0x3f8
#define UART_COM1_IRQ  4
#define UART_FIFO      64

struct uart {
	pthread_mutex_t lock;
	uint8_t ier, lcr, mcr, scr, dll, dlm;
	int thre_pending;         /* the THR-empty interrupt is armed */
	uint8_t in[UART_FIFO];    /* received bytes, a ring */
	unsigned in_head, in_len;
	int irq_level;
	/* The line to the IOAPIC, and where transmitted bytes go. */
	void (*set_irq)(void *opaque, int level);
	void (*output)(void *opaque, uint8_t byte);
	void *opaque;
};

void uart_init(struct uart *u, void (*set_irq)(void *, int),
	       void (*output)(void *, uint8_t), void *opaque);
/* A guest access to register OFFSET (0..7) of the port. */
void uart_io(struct uart *u, unsigned offset, uint8_t *data, int is_write);
/* Host input: queues up to LEN bytes; returns how many fitted. */
size_t uart_receive(struct uart *u, const uint8_t *buf, size_t len);
void uart_destroy(struct uart *u);

/* ---- vmm/vmm.c ---------------------------------------------------------- */

struct vmm_config {
	const char *kernel_path, *initrd_path, *cmdline;
	uint64_t mem_size;
	unsigned ncpus;
	const struct vmm_disk_spec *disks;
	unsigned ndisks;
};

/* Boots and runs the guest until it powers off or reboots (0), triple
 * faults, fails or is stopped by SIGINT/SIGTERM/Ctrl-A x (1).  Prints
 * "vdisk: run: ..." messages on stderr. */
int vmm_run(const struct vmm_config *cfg);

#endif
