# The devices of vdisk run (PCI, virtio-pci, virtqueues, virtio-blk): unit
# test and fuzz rules.  The top Makefile includes every vmm/*.mk.
#
#   make check (unit)    builds and runs build/tests/test-vmm-virtio (the
#                        devices driven as a guest would, no KVM) and
#                        build/tests/test-vmm-virtq-replay (the fuzz corpus)
#   make fuzz-virtq      builds build/fuzz/fuzz-virtq (clang, libFuzzer,
#                        ASan, UBSan)
#   make fuzz-virtq-run  fuzzes for FUZZ_TIME seconds (default 60), adding
#                        new inputs to build/fuzz/corpus-virtq (the committed
#                        corpus tests/fuzz/corpus-virtq is only read)
#
# The programs link the device sources named here, not vmm/*.c, so the
# machine's (KVM) files never come in.

BUILD     ?= build
FUZZ_CC   ?= clang
FUZZ_TIME ?= 60
VMM_DEV_SRCS := vmm/pci.c vmm/virtqueue.c vmm/virtio_pci.c vmm/virtio_blk.c \
                vmm/devices.c
VMM_DEV_HDRS := vmm/devices.h vmm/pci.h vmm/virtqueue.h vmm/virtio_pci.h \
                vmm/virtio_blk.h
VMM_DEV_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(VMM_DEV_SRCS))
VMM_DEV_TESTS := $(BUILD)/tests/test-vmm-virtio $(BUILD)/tests/test-vmm-virtq-replay

unit: $(VMM_DEV_TESTS)

$(VMM_DEV_TESTS): $(BUILD)/tests/%: tests/unit/%.c $(VMM_DEV_OBJS) \
		  $(BUILD)/libvdisk.a
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -o $@ $< $(VMM_DEV_OBJS) \
	    $(BUILD)/libvdisk.a $(LIBS)

$(BUILD)/tests/test-vmm-virtq-replay: tests/fuzz/fuzz-virtq.c

FUZZ_VIRTQ := $(BUILD)/fuzz/fuzz-virtq
VMM_FUZZ_SRCS := tests/fuzz/fuzz-virtq.c $(VMM_DEV_SRCS)

fuzz-virtq: $(FUZZ_VIRTQ)

# The engine is linked from its sources too, so all of it is instrumented.
$(FUZZ_VIRTQ): $(VMM_FUZZ_SRCS) $(VMM_DEV_HDRS) $(LIB_SRCS)
	@mkdir -p $(dir $@)
	@echo "  FUZZ  $@"
	$(Q)$(FUZZ_CC) -std=gnu11 -g -O1 -D_GNU_SOURCE -pthread -I. \
	    $(shell pkg-config --cflags $(PKGS) 2>/dev/null) \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -o $@ $(VMM_FUZZ_SRCS) $(LIB_SRCS) $(LIBS)

fuzz-virtq-run: $(FUZZ_VIRTQ)
	@mkdir -p $(BUILD)/fuzz/corpus-virtq
	$(FUZZ_VIRTQ) -max_total_time=$(FUZZ_TIME) -max_len=20000 \
	    $(BUILD)/fuzz/corpus-virtq tests/fuzz/corpus-virtq

.PHONY: fuzz-virtq fuzz-virtq-run

fuzz-virtq-corpus:
	./tests/fuzz/make-virtq-corpus.py tests/fuzz/corpus-virtq

.PHONY: fuzz-virtq-corpus
