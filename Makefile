# vdisk: one readable Makefile.  `make` builds ./vdisk; `make check` runs
# the tests; `make demo` runs the demo; `make asan` runs the tests under
# AddressSanitizer and UBSan.  Quiet unless V=1.

BUILD    ?= build
CC       ?= cc
PKGS     := lmdb libzstd libcrypto liburing
WARNINGS := -Wall -Wextra -Werror -Wmissing-prototypes -Wstrict-prototypes \
            -Wshadow -Wpointer-arith -Wformat=2 -Wvla -Wno-unused-parameter
CFLAGS   ?= -O2 -g
SAN      ?=
ALL_CFLAGS = -std=gnu11 $(WARNINGS) $(CFLAGS) $(SAN) -D_GNU_SOURCE -pthread \
             -I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS      = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -pthread

ifeq ($(V),1)
Q :=
else
Q := @
endif

# Per-folder source lists.
FORMAT_SRCS := format/format.c
ENGINE_SRCS := engine/error.c engine/store.c engine/pack.c engine/chunk.c \
               engine/layer.c engine/volume.c engine/admin.c engine/control.c \
               engine/check.c engine/frontend.c
NBD_SRCS    := $(wildcard nbd/*.c)
CLI_SRCS    := $(wildcard cli/*.c)
LIB_SRCS    := $(FORMAT_SRCS) $(ENGINE_SRCS)

# Unit tests: each tests/unit/test-*.c is one program linked with the engine.
UNIT_SRCS   := $(wildcard tests/unit/test-*.c)
UNIT_BINS   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

LIB_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRCS))
CLI_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(CLI_SRCS) $(NBD_SRCS))

all: vdisk

vdisk: $(BUILD)/vdisk
	$(Q)ln -sf $(BUILD)/vdisk vdisk

$(BUILD)/vdisk: $(CLI_OBJS) $(BUILD)/libvdisk.a
	@echo "  LINK  $@"
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/libvdisk.a: $(LIB_OBJS)
	@echo "  AR    $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libvdisk.a
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libvdisk.a $(LIBS)

-include $(LIB_OBJS:.o=.d) $(CLI_OBJS:.o=.d)

# ---- set-up ------------------------------------------------------------------
# Debian packages for building and for the tests (the real peers).
DEB_BUILD := gcc make pkg-config liblmdb-dev libzstd-dev libssl-dev liburing-dev
DEB_TEST  := qemu-utils nbdkit libnbd-bin python3-libnbd fio e2fsprogs \
             util-linux zstd lmdb-utils
deps:
	@./tests/install-deps.sh $(DEB_BUILD) $(DEB_TEST)

# ---- main job and tests ------------------------------------------------------
demo: deps
	$(Q)$(MAKE) --no-print-directory vdisk
	$(Q)./tests/demo.sh

check: deps
	$(Q)$(MAKE) --no-print-directory vdisk unit
	$(Q)VDISK_BUILD=$(BUILD) VDISK_SANFLAGS="$(SAN)" ./tests/run-tests.sh $(TESTS)

unit: $(UNIT_BINS)

asan:
	$(Q)$(MAKE) --no-print-directory check BUILD=build-asan CFLAGS="-O1 -g" \
	   SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

clean:
	rm -rf build build-asan vdisk

.PHONY: all vdisk deps demo check unit asan clean

# NBD fuzzing targets (make fuzz-nbd, fuzz-nbd-run, fuzz-nbd-corpus).
include nbd/nbd.mk
