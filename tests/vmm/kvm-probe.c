/*
 * kvm-probe: is /dev/kvm here, and is it fast enough to boot a guest?
 *
 * Some virtual machines offer a /dev/kvm that runs guest code thousands of
 * times slower than native (a software hypervisor such as kvm_pvm).  The
 * boot test must not take that path, so this program times one counted loop
 * natively and then the same loop as real-mode guest code in a fresh VM.
 *
 *   kvm-probe [ITERATIONS]      (default 10000000)
 *
 * Prints one line "kvm-probe: native S s, guest S s, ratio R" and exits
 *   0  usable and fast: the guest loop took at most SLOW_RATIO times native
 *   3  usable but slow (or the guest loop did not end within the bound)
 *   2  unusable: no /dev/kvm, no permission, or an ioctl failed
 *
 * Static-linkable (it runs as is inside the nested test's initramfs).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Slower than this many times native counts as slow.  Hardware KVM runs a
 * loop without exits at native speed (ratio ~1); the nested TCG guest and
 * kvm_pvm measure in the hundreds to thousands. */
#define SLOW_RATIO 50.0
/* The guest loop is abandoned after this many times the native time (and
 * at least MIN_BOUND seconds), so that a slow hypervisor costs seconds. */
#define MIN_BOUND 1.0

#define GUEST_ADDR 0x1000

static volatile sig_atomic_t timed_out;

static void on_alarm(int sig)
{
	(void)sig;
	timed_out = 1;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int unusable(const char *what)
{
	printf("kvm-probe: unusable: %s: %s\n", what, strerror(errno));
	return 2;
}

/* The same instructions the guest runs, so that the ratio compares like
 * with like: dec ecx; jnz back. */
static double native_loop(uint32_t n)
{
	double t = now();

	__asm__ volatile("1: dec %0\n\tjnz 1b" : "+c"(n) : : "cc");
	return now() - t;
}

int main(int argc, char **argv)
{
	uint32_t iterations = 10000000;
	int kvm, vm, vcpu, run_size;
	struct kvm_userspace_memory_region region;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_run *run;
	struct sigaction sa;
	struct itimerval timer;
	double native, bound, start, guest;
	uint8_t *mem;

	if (argc > 1) {
		char *end;
		unsigned long v = strtoul(argv[1], &end, 10);
		if (*end || v == 0 || v > UINT32_MAX) {
			fprintf(stderr, "usage: kvm-probe [ITERATIONS]\n");
			return 2;
		}
		iterations = (uint32_t)v;
	}

	/* Best of three: the first run pays for page faults and frequency. */
	native = native_loop(iterations);
	for (int i = 0; i < 2; i++) {
		double t = native_loop(iterations);
		if (t < native)
			native = t;
	}
	bound = native * SLOW_RATIO * 2;
	if (bound < MIN_BOUND)
		bound = MIN_BOUND;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return unusable("open /dev/kvm");
	if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		errno = EINVAL;
		return unusable("KVM_GET_API_VERSION");
	}
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return unusable("KVM_CREATE_VM");

	mem = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return unusable("mmap");
	/* mov ecx, N; 1: dec ecx; jnz 1b; hlt  (real mode, 32-bit operands) */
	static const uint8_t code[] = {
		0x66, 0xb9, 0, 0, 0, 0,	/* mov ecx, imm32 */
		0x66, 0x49,		/* dec ecx */
		0x75, 0xfc,		/* jnz -4 */
		0xf4,			/* hlt */
	};
	memcpy(mem, code, sizeof code);
	memcpy(mem + 2, &iterations, 4);

	region = (struct kvm_userspace_memory_region){
		.slot = 0,
		.guest_phys_addr = GUEST_ADDR,
		.memory_size = 0x1000,
		.userspace_addr = (uintptr_t)mem,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return unusable("KVM_SET_USER_MEMORY_REGION");
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		return unusable("KVM_CREATE_VCPU");
	run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof *run)
		return unusable("KVM_GET_VCPU_MMAP_SIZE");
	run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		return unusable("mmap kvm_run");

	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		return unusable("KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		return unusable("KVM_SET_SREGS");
	memset(&regs, 0, sizeof regs);
	regs.rip = GUEST_ADDR;
	regs.rflags = 0x2;
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
		return unusable("KVM_SET_REGS");

	/* A signal without SA_RESTART makes KVM_RUN return EINTR: the bound. */
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	timer = (struct itimerval){
		.it_value = { (time_t)bound, (long)((bound - (time_t)bound) * 1e6) },
		.it_interval = { 0, 100000 },	/* again, should one be missed */
	};

	start = now();
	setitimer(ITIMER_REAL, &timer, NULL);
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR && timed_out)
				break;
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return unusable("KVM_RUN");
		}
		if (run->exit_reason == KVM_EXIT_HLT)
			break;
		if (run->exit_reason == KVM_EXIT_INTR) {
			if (timed_out)
				break;
			continue;
		}
		printf("kvm-probe: unusable: unexpected exit reason %u\n",
		       run->exit_reason);
		return 2;
	}
	guest = now() - start;
	timer = (struct itimerval){ { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &timer, NULL);

	if (timed_out) {
		printf("kvm-probe: native %.4f s, guest > %.2f s (stopped), "
		       "ratio > %.0f: slow\n", native, guest, guest / native);
		return 3;
	}
	printf("kvm-probe: native %.4f s, guest %.4f s, ratio %.1f: %s\n",
	       native, guest, guest / native,
	       guest / native > SLOW_RATIO ? "slow" : "fast");
	return guest / native > SLOW_RATIO ? 3 : 0;
}
