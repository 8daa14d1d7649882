# NBD fuzzing rules.  The top Makefile includes this file:
#
#	include nbd/nbd.mk
#
# It also works alone: make -f nbd/nbd.mk fuzz-nbd
#
#   make fuzz-nbd        builds build/fuzz/fuzz-nbd (clang, libFuzzer, ASan,
#                        UBSan) from the handshake and request parser
#   make fuzz-nbd-run    fuzzes for FUZZ_TIME seconds (default 60), adding
#                        new inputs to build/fuzz/corpus-nbd (the committed
#                        corpus is only read)
#   make fuzz-nbd-corpus regenerates the seed inputs in tests/fuzz/corpus
#
# make check replays tests/fuzz/corpus through tests/unit/test-nbd-replay.c
# with the normal compiler, so no rule here is needed for that.

BUILD     ?= build
FUZZ_CC   ?= clang
FUZZ_TIME ?= 60
FUZZ_NBD  := $(BUILD)/fuzz/fuzz-nbd
FUZZ_NBD_SRCS := tests/fuzz/fuzz-nbd.c nbd/nbd_proto.c nbd/nbd_handshake.c

fuzz-nbd: $(FUZZ_NBD)

$(FUZZ_NBD): $(FUZZ_NBD_SRCS) nbd/nbd.h nbd/nbd_proto.h
	@mkdir -p $(dir $@)
	@echo "  FUZZ  $@"
	$(Q)$(FUZZ_CC) -std=gnu11 -g -O1 -D_GNU_SOURCE -I. \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -o $@ $(FUZZ_NBD_SRCS)

fuzz-nbd-run: $(FUZZ_NBD)
	@mkdir -p $(BUILD)/fuzz/corpus-nbd
	$(FUZZ_NBD) -max_total_time=$(FUZZ_TIME) -max_len=4096 \
	    $(BUILD)/fuzz/corpus-nbd tests/fuzz/corpus

fuzz-nbd-corpus:
	./tests/fuzz/make-nbd-corpus.py tests/fuzz/corpus

.PHONY: fuzz-nbd fuzz-nbd-run fuzz-nbd-corpus
