# guest/: test programs and fuzz targets of the guest disk readers
# (included by the Makefile; the readers themselves are in FRONT_SRCS).
#
#   make unit               also builds the helpers the shell tests run
#                           (build/tests/guest-parts, guest-fs) and
#                           build/tests/test-guest-replay, which replays
#                           tests/fuzz/corpus-guest in make check
#   make fuzz-guest         builds build/fuzz/fuzz-guest (clang, libFuzzer,
#                           ASan, UBSan) over guest/ (partitions, libext2fs
#                           through our io_manager, jbd2 replay)
#   make fuzz-guest-run     fuzzes for FUZZ_TIME seconds (default 60),
#                           adding new inputs to build/fuzz/corpus-guest (the
#                           committed corpus is only read); crashes are
#                           left as build/fuzz/crash-*
#   make fuzz-guest-corpus  regenerates the seeds in tests/fuzz/corpus-guest

GUEST_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard guest/*.c))
GUEST_LIBS  = $(shell pkg-config --libs ext2fs com_err 2>/dev/null)
# The readers alone, without the engine adapters (volume.c, point.c).
GUEST_FUZZ_SRCS := guest/disk.c guest/partition.c guest/extfs.c guest/jbd2.c

$(BUILD)/tests/guest-%: tests/guest/guest-%.c $(GUEST_OBJS) $(BUILD)/libvdisk.a
	@mkdir -p $(dir $@)
	@echo "  CC    $@"
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -o $@ $< $(GUEST_OBJS) \
	   $(BUILD)/libvdisk.a $(GUEST_LIBS) $(LIBS)

$(BUILD)/tests/test-guest-replay: tests/guest/test-guest-replay.c \
    tests/fuzz/fuzz-guest.c $(GUEST_OBJS) $(BUILD)/libvdisk.a
	@mkdir -p $(dir $@)
	@echo "  CC    $@"
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -o $@ $< $(GUEST_OBJS) \
	   $(BUILD)/libvdisk.a $(GUEST_LIBS) $(LIBS)

GUEST_TOOLS := $(BUILD)/tests/guest-parts $(BUILD)/tests/guest-fs \
               $(BUILD)/tests/test-guest-replay
all: $(GUEST_TOOLS)
unit: $(GUEST_TOOLS)

FUZZ_CC    ?= clang
FUZZ_TIME  ?= 60
FUZZ_GUEST := $(BUILD)/fuzz/fuzz-guest

fuzz-guest: $(FUZZ_GUEST)

$(FUZZ_GUEST): tests/fuzz/fuzz-guest.c $(GUEST_FUZZ_SRCS) $(wildcard guest/*.h)
	@mkdir -p $(dir $@)
	@echo "  FUZZ  $@"
	$(Q)$(FUZZ_CC) -std=gnu11 -g -O1 -D_GNU_SOURCE -I. \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -o $@ tests/fuzz/fuzz-guest.c $(GUEST_FUZZ_SRCS) $(GUEST_LIBS)

fuzz-guest-run: $(FUZZ_GUEST)
	@mkdir -p $(BUILD)/fuzz/corpus-guest
	$(FUZZ_GUEST) -max_total_time=$(FUZZ_TIME) -max_len=65536 -timeout=10 \
	    -rss_limit_mb=2048 -artifact_prefix=$(BUILD)/fuzz/ \
	    $(BUILD)/fuzz/corpus-guest tests/fuzz/corpus-guest

fuzz-guest-corpus:
	./tests/fuzz/make-guest-corpus.sh tests/fuzz/corpus-guest

.PHONY: fuzz-guest fuzz-guest-run fuzz-guest-corpus
