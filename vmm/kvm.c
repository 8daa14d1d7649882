/* Every KVM ioctl of vdisk run: the VM, its RAM, the in-kernel irqchip and
 * PIT, the vCPUs in 64-bit mode for the Linux boot protocol, and KVM_RUN
 * exits translated into struct kvm_exit. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/machine.h"

struct kvm_vm {
	int kvm_fd, vm_fd;
	struct guest_mem mem;
	unsigned ncpus;
	int vcpu_fd[VMM_MAX_CPUS];
	struct kvm_run *run[VMM_MAX_CPUS];
	size_t run_size;
};

#define TSS_ADDR          0xfffbd000ul
#define IDENTITY_MAP_ADDR 0xfffbc000ul

static int fail(char *why, size_t whylen, const char *what)
{
	snprintf(why, whylen, "%s: %s", what, strerror(errno));
	return -1;
}

static int open_kvm(char *why, size_t whylen)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd >= 0)
		return fd;
	if (errno == ENOENT)
		snprintf(why, whylen, "vdisk run needs KVM (/dev/kvm is missing)");
	else if (errno == EACCES || errno == EPERM)
		snprintf(why, whylen, "no permission to open /dev/kvm (join "
			 "the kvm group or run as root)");
	else
		snprintf(why, whylen, "/dev/kvm: %s", strerror(errno));
	return -1;
}

/* The CPUID KVM supports, with what a guest expects of a hypervisor: the
 * hypervisor bit and the vCPU's APIC id.  KVM's own 0x40000000 leaves stay
 * as reported. */
static int set_cpuid(struct kvm_vm *vm, unsigned cpu, char *why, size_t whylen)
{
	struct kvm_cpuid2 *c;
	unsigned n = 64;

	for (;;) {
		c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c) {
			snprintf(why, whylen, "out of memory");
			return -1;
		}
		c->nent = n;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			break;
		free(c);
		if (errno != E2BIG || n > 4096)
			return fail(why, whylen, "KVM_GET_SUPPORTED_CPUID");
		n *= 2;
	}
	/* KVM_GET_SUPPORTED_CPUID leaves the TSC-deadline timer out (it is a
	 * capability of the in-kernel LAPIC); without it Linux calibrates the
	 * LAPIC timer against the PIT, which a slow (nested) host gets badly
	 * wrong: the guest's sleeps never ended. */
	int deadline = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION,
			     KVM_CAP_TSC_DEADLINE_TIMER) > 0;

	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 1) {
			e->ecx |= 1u << 31;
			if (deadline)
				e->ecx |= 1u << 24;
			e->ebx = (e->ebx & 0x00ffffffu) | (cpu << 24);
		} else if (e->function == 0xb || e->function == 0x1f) {
			e->edx = cpu; /* x2APIC id */
		}
	}
	if (ioctl(vm->vcpu_fd[cpu], KVM_SET_CPUID2, c) < 0) {
		free(c);
		return fail(why, whylen, "KVM_SET_CPUID2");
	}
	free(c);
	return 0;
}

struct kvm_vm *kvm_vm_create(uint64_t mem_size, unsigned ncpus, char *why,
			     size_t whylen)
{
	struct kvm_vm *vm;
	struct kvm_userspace_memory_region region;
	struct kvm_pit_config pit;
	int r;

	if (ncpus < 1 || ncpus > VMM_MAX_CPUS || mem_size > VMM_MEM_MAX ||
	    mem_size < (16u << 20)) {
		snprintf(why, whylen, "bad machine size");
		return NULL;
	}
	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	vm->vm_fd = -1;
	for (unsigned i = 0; i < VMM_MAX_CPUS; i++)
		vm->vcpu_fd[i] = -1;
	vm->kvm_fd = open_kvm(why, whylen);
	if (vm->kvm_fd < 0)
		goto err;
	r = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (r != KVM_API_VERSION) {
		snprintf(why, whylen, "KVM API version %d, expected %d", r,
			 KVM_API_VERSION);
		goto err;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		fail(why, whylen, "KVM_CREATE_VM");
		goto err;
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, TSS_ADDR) < 0) {
		fail(why, whylen, "KVM_SET_TSS_ADDR");
		goto err;
	}
	uint64_t idmap = IDENTITY_MAP_ADDR;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) {
		fail(why, whylen, "KVM_SET_IDENTITY_MAP_ADDR");
		goto err;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		fail(why, whylen, "KVM_CREATE_IRQCHIP");
		goto err;
	}
	memset(&pit, 0, sizeof(pit));
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		fail(why, whylen, "KVM_CREATE_PIT2");
		goto err;
	}
	vm->mem.size = mem_size;
	vm->mem.host = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->mem.host == MAP_FAILED) {
		vm->mem.host = NULL;
		fail(why, whylen, "mmap of guest memory");
		goto err;
	}
	madvise(vm->mem.host, mem_size, MADV_MERGEABLE);
	memset(&region, 0, sizeof(region));
	region.slot = 0;
	region.guest_phys_addr = 0;
	region.memory_size = mem_size;
	region.userspace_addr = (uintptr_t)vm->mem.host;
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
		fail(why, whylen, "KVM_SET_USER_MEMORY_REGION");
		goto err;
	}
	r = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (r <= 0) {
		fail(why, whylen, "KVM_GET_VCPU_MMAP_SIZE");
		goto err;
	}
	vm->run_size = (size_t)r;
	for (unsigned i = 0; i < ncpus; i++) {
		vm->vcpu_fd[i] = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
		if (vm->vcpu_fd[i] < 0) {
			fail(why, whylen, "KVM_CREATE_VCPU");
			goto err;
		}
		vm->ncpus = i + 1;
		vm->run[i] = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE,
				  MAP_SHARED, vm->vcpu_fd[i], 0);
		if (vm->run[i] == MAP_FAILED) {
			vm->run[i] = NULL;
			fail(why, whylen, "mmap of the vCPU run area");
			goto err;
		}
		if (set_cpuid(vm, i, why, whylen) < 0)
			goto err;
		if (i > 0) {
			/* An application processor: waits for INIT/SIPI from
			 * the boot processor, handled by the in-kernel LAPIC. */
			struct kvm_mp_state mp = {
				.mp_state = KVM_MP_STATE_UNINITIALIZED
			};

			if (ioctl(vm->vcpu_fd[i], KVM_SET_MP_STATE, &mp) < 0) {
				fail(why, whylen, "KVM_SET_MP_STATE");
				goto err;
			}
		}
	}
	return vm;
err:
	kvm_vm_destroy(vm);
	return NULL;
}

struct guest_mem kvm_vm_mem(const struct kvm_vm *vm)
{
	return vm->mem;
}

/* Identity map of the first 4 GiB with 2 MiB pages. */
static void write_page_tables(struct kvm_vm *vm)
{
	uint64_t *pml4 = (uint64_t *)(vm->mem.host + BOOT_PGTABLE_ADDR);
	uint64_t *pdpt = pml4 + 512;
	uint64_t *pd = pdpt + 512;

	memset(pml4, 0, 6 * 4096);
	pml4[0] = (BOOT_PGTABLE_ADDR + 0x1000) | 0x3;      /* present, rw */
	for (unsigned i = 0; i < 4; i++)
		pdpt[i] = (BOOT_PGTABLE_ADDR + 0x2000 + i * 0x1000ull) | 0x3;
	for (unsigned i = 0; i < 4 * 512; i++)
		pd[i] = ((uint64_t)i << 21) | 0x83;            /* PS */
}

/* Linux's boot GDT: __BOOT_CS 0x10 (64-bit code), __BOOT_DS 0x18. */
static void write_gdt(struct kvm_vm *vm)
{
	uint64_t *gdt = (uint64_t *)(vm->mem.host + BOOT_GDT_ADDR);

	gdt[0] = 0;
	gdt[1] = 0;
	gdt[2] = 0x00af9b000000ffffull;
	gdt[3] = 0x00cf93000000ffffull;
}

static void segment(struct kvm_segment *s, uint16_t sel, uint8_t type,
		    int code)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->base = 0;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->s = 1;
	s->g = 1;
	s->l = code ? 1 : 0;
	s->db = code ? 0 : 1;
}

int kvm_vm_boot_cpu(struct kvm_vm *vm, uint64_t entry, uint64_t boot_params,
		    char *why, size_t whylen)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_fpu fpu;
	int fd = vm->vcpu_fd[0];

	write_page_tables(vm);
	write_gdt(vm);
	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return fail(why, whylen, "KVM_GET_SREGS");
	segment(&sregs.cs, 0x10, 0xb, 1);
	segment(&sregs.ds, 0x18, 0x3, 0);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	memset(&sregs.tr, 0, sizeof(sregs.tr));
	sregs.tr.limit = 0x67;
	sregs.tr.type = 0xb;   /* busy 64-bit TSS */
	sregs.tr.present = 1;
	memset(&sregs.ldt, 0, sizeof(sregs.ldt));
	sregs.ldt.type = 0x2;
	sregs.ldt.present = 1;
	sregs.ldt.limit = 0xffff;
	sregs.gdt.base = BOOT_GDT_ADDR;
	sregs.gdt.limit = 4 * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = 0x80000011ull;          /* PG | ET | PE */
	sregs.cr3 = BOOT_PGTABLE_ADDR;
	sregs.cr4 = 0x20;                   /* PAE */
	sregs.efer = 0x500;                 /* LMA | LME */
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0)
		return fail(why, whylen, "KVM_SET_SREGS");
	memset(&regs, 0, sizeof(regs));
	regs.rip = entry;
	regs.rsi = boot_params;
	regs.rflags = 2;
	if (ioctl(fd, KVM_SET_REGS, &regs) < 0)
		return fail(why, whylen, "KVM_SET_REGS");
	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;
	fpu.mxcsr = 0x1f80;
	if (ioctl(fd, KVM_SET_FPU, &fpu) < 0)
		return fail(why, whylen, "KVM_SET_FPU");
	return 0;
}

int kvm_vcpu_run(struct kvm_vm *vm, unsigned cpu, struct kvm_exit *x)
{
	struct kvm_run *run = vm->run[cpu];

	memset(x, 0, offsetof(struct kvm_exit, why));
	x->why[0] = 0;
	if (ioctl(vm->vcpu_fd[cpu], KVM_RUN, 0) < 0) {
		if (errno == EINTR || errno == EAGAIN) {
			x->kind = KVM_X_INTR;
			return 0;
		}
		snprintf(x->why, sizeof(x->why), "KVM_RUN: %s", strerror(errno));
		x->kind = KVM_X_ERROR;
		return -1;
	}
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		x->kind = KVM_X_IO;
		x->port = run->io.port;
		x->size = run->io.size;
		x->count = run->io.count;
		x->is_write = run->io.direction == KVM_EXIT_IO_OUT;
		if (run->io.data_offset >= vm->run_size ||
		    (uint64_t)run->io.size * run->io.count >
		    vm->run_size - run->io.data_offset) {
			x->kind = KVM_X_ERROR;
			snprintf(x->why, sizeof(x->why), "bad KVM_EXIT_IO");
			return -1;
		}
		x->data = (uint8_t *)run + run->io.data_offset;
		break;
	case KVM_EXIT_MMIO:
		x->kind = KVM_X_MMIO;
		x->addr = run->mmio.phys_addr;
		x->size = run->mmio.len;
		x->count = 1;
		x->is_write = run->mmio.is_write;
		x->data = run->mmio.data;
		break;
	case KVM_EXIT_SHUTDOWN:
		x->kind = KVM_X_SHUTDOWN;
		break;
	case KVM_EXIT_HLT:
		x->kind = KVM_X_HALT;
		break;
	case KVM_EXIT_INTR:
		x->kind = KVM_X_INTR;
		break;
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_RESET)
			x->kind = KVM_X_RESET;
		else
			x->kind = KVM_X_POWEROFF;
		break;
	case KVM_EXIT_FAIL_ENTRY:
		x->kind = KVM_X_ERROR;
		snprintf(x->why, sizeof(x->why),
			 "KVM entry failed, hardware reason 0x%llx",
			 (unsigned long long)
			 run->fail_entry.hardware_entry_failure_reason);
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		x->kind = KVM_X_ERROR;
		snprintf(x->why, sizeof(x->why), "KVM internal error %u",
			 run->internal.suberror);
		break;
	default:
		x->kind = KVM_X_ERROR;
		snprintf(x->why, sizeof(x->why), "unexpected KVM exit %u",
			 run->exit_reason);
		break;
	}
	return 0;
}

void kvm_vcpu_kick(struct kvm_vm *vm, unsigned cpu, pthread_t thread, int sig)
{
	__atomic_store_n(&vm->run[cpu]->immediate_exit, 1, __ATOMIC_SEQ_CST);
	pthread_kill(thread, sig);
}

void kvm_vm_irq_line(struct kvm_vm *vm, unsigned gsi, int level)
{
	struct kvm_irq_level l = { .irq = gsi, .level = level ? 1 : 0 };

	ioctl(vm->vm_fd, KVM_IRQ_LINE, &l);
}

void kvm_vm_msi(struct kvm_vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_msi m;

	memset(&m, 0, sizeof(m));
	m.address_lo = (uint32_t)addr;
	m.address_hi = (uint32_t)(addr >> 32);
	m.data = data;
	ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &m);
}

void kvm_vm_destroy(struct kvm_vm *vm)
{
	if (!vm)
		return;
	for (unsigned i = 0; i < VMM_MAX_CPUS; i++) {
		if (vm->run[i])
			munmap(vm->run[i], vm->run_size);
		if (vm->vcpu_fd[i] >= 0)
			close(vm->vcpu_fd[i]);
	}
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->mem.host)
		munmap(vm->mem.host, vm->mem.size);
	free(vm);
}
