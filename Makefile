# vdisk: one readable Makefile.  `make` builds ./vdisk; `make check` runs
# the tests; `make demo` runs the demo; `make asan` runs the tests under
# AddressSanitizer and UBSan; `make tsan` runs the threaded tests under
# ThreadSanitizer; `make install` / `make uninstall` (PREFIX, DESTDIR)
# install the tool and the engine library.  Quiet unless V=1.

BUILD    ?= build
CC       ?= cc
PKGS     := lmdb libzstd libcrypto liburing libxxhash
# Only the front ends in the vdisk binary link these: GnuTLS (NBD over
# TLS), libfuse3 (vdisk mount) and libext2fs (guest filesystems).
NBD_PKGS := gnutls fuse3 ext2fs com_err
WARNINGS := -Wall -Wextra -Werror -Wmissing-prototypes -Wstrict-prototypes \
            -Wshadow -Wpointer-arith -Wformat=2 -Wvla -Wno-unused-parameter
CFLAGS   ?= -O2 -g
SAN      ?=
# A command the test runner runs under (make tsan: setarch -R).
TEST_WRAP ?=
ALL_CFLAGS = -std=gnu11 $(WARNINGS) $(CFLAGS) $(SAN) -D_GNU_SOURCE -pthread \
             -I. $(shell pkg-config --cflags $(PKGS) $(NBD_PKGS) 2>/dev/null)
LIBS      = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -pthread
NBD_LIBS  = $(shell pkg-config --libs $(NBD_PKGS) 2>/dev/null)

# The version: VD_VERSION_STRING from engine/vdisk.h when the header has
# it, else this default.  The only other place it appears is --version.
VDISK_VERSION_DEFAULT := 0.2.0
VDISK_VERSION := $(or $(shell sed -n 's/^[[:space:]]*\#[[:space:]]*define[[:space:]][[:space:]]*VD_VERSION_STRING[[:space:]][[:space:]]*"\([^"]*\)".*/\1/p' engine/vdisk.h 2>/dev/null),$(VDISK_VERSION_DEFAULT))
VDISK_SOMAJOR := $(firstword $(subst ., ,$(VDISK_VERSION)))

ifeq ($(V),1)
Q :=
else
Q := @
endif

# Per-folder source lists.
FORMAT_SRCS := format/format.c
COMMON_SRCS := $(wildcard common/*.c)
ENGINE_SRCS := $(wildcard engine/*.c)
NBD_SRCS    := $(wildcard nbd/*.c)
CLI_SRCS    := $(wildcard cli/*.c)
# Front ends beside nbd/, linked only into the vdisk binary: fuse/ (vdisk
# mount), guest/ (partition tables and guest filesystems), vmm/ (vdisk run).
FRONT_SRCS  := $(wildcard fuse/*.c guest/*.c vmm/*.c)
LIB_SRCS    := $(COMMON_SRCS) $(FORMAT_SRCS) $(ENGINE_SRCS)

# Unit tests: each tests/unit/test-*.c is one program linked with the engine.
# The programs named in UNIT_64K are built a second time as test-NAME-64k,
# from the same source with 64 KiB chunks and 4 KiB sectors (CHUNK, SECTOR):
# page-aligned writes then leave chunks sparse in memory, sealed over the
# stored chunk, which 4 KiB chunks never do.
UNIT_SRCS   := $(wildcard tests/unit/test-*.c)
UNIT_64K    := crash model threads
# Those in UNIT_COMPACT are built a third time as test-NAME-compact, which
# run with VDISK_COMPACT=aggressive: the background compactor moving chunks
# under the test's reads, writes, gc and crashes.
UNIT_COMPACT := crash model
UNIT_BINS   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS)) \
               $(patsubst %,$(BUILD)/tests/test-%-64k,$(UNIT_64K)) \
               $(patsubst %,$(BUILD)/tests/test-%-compact,$(UNIT_COMPACT))
# The LD_PRELOAD power-cut shim that test-crash runs the engine under.
POWERCUT_SO := $(BUILD)/tests/powercut.so

LIB_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRCS))
# The shared library's objects: position-independent, every symbol hidden
# except the declarations of engine/vdisk.h (dist/libvdisk-export.h).
PIC_OBJS := $(patsubst %.c,$(BUILD)/pic/%.o,$(LIB_SRCS))
SO_NAME  := libvdisk.so.$(VDISK_SOMAJOR)
SO_FILE  := libvdisk.so.$(VDISK_VERSION)
CLI_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(CLI_SRCS) $(NBD_SRCS) $(FRONT_SRCS))

all: vdisk $(BUILD)/$(SO_FILE) $(BUILD)/vdisk.pc $(BUILD)/vdisk.1 \
     $(BUILD)/vdisk-serve.service

vdisk: $(BUILD)/vdisk
	$(Q)ln -sf $(BUILD)/vdisk vdisk

$(BUILD)/vdisk: $(CLI_OBJS) $(BUILD)/libvdisk.a
	@echo "  LINK  $@"
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS) $(NBD_LIBS)

$(BUILD)/libvdisk.a: $(LIB_OBJS)
	@echo "  AR    $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/cli/main.o: ALL_CFLAGS += -DVDISK_VERSION_STRING='"$(VDISK_VERSION)"'
$(BUILD)/cli/main.o: Makefile

$(BUILD)/pic/%.o: %.c dist/libvdisk-export.h
	@mkdir -p $(dir $@)
	@echo "  CC    $< (PIC)"
	$(Q)$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden \
	   -include dist/libvdisk-export.h -MMD -MP -c -o $@ $<

$(BUILD)/$(SO_FILE): $(PIC_OBJS) dist/libvdisk.map
	@echo "  LINK  $@"
	$(Q)$(CC) $(ALL_CFLAGS) -shared -Wl,-soname,$(SO_NAME) \
	   -Wl,--version-script=dist/libvdisk.map -Wl,--no-undefined \
	   -o $@ $(PIC_OBJS) $(LIBS)
	$(Q)ln -sf $(SO_FILE) $(BUILD)/$(SO_NAME)
	$(Q)ln -sf $(SO_NAME) $(BUILD)/libvdisk.so

$(BUILD)/vdisk.pc: dist/vdisk.pc.in Makefile
	@echo "  GEN   $@"
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(libdir)|' \
	   -e 's|@INCLUDEDIR@|$(includedir)|' -e 's|@VERSION@|$(VDISK_VERSION)|' \
	   -e 's|@PKGS@|$(PKGS)|' $< >$@.tmp && mv $@.tmp $@

$(BUILD)/vdisk.1: dist/vdisk.1.in Makefile
	@mkdir -p $(BUILD)
	@echo "  GEN   $@"
	$(Q)sed -e 's|@VERSION@|$(VDISK_VERSION)|' -e 's|@DOCDIR@|$(docdir)|' \
	   -e 's|@BASHCOMPDIR@|$(bashcompdir)|' -e 's|@UNITDIR@|$(unitdir)|' \
	   $< >$@.tmp && mv $@.tmp $@

$(BUILD)/vdisk-serve.service: dist/vdisk-serve.service.in Makefile
	@mkdir -p $(BUILD)
	@echo "  GEN   $@"
	$(Q)sed -e 's|@BINDIR@|$(bindir)|' $< >$@.tmp && mv $@.tmp $@

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libvdisk.a
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -o $@ $< $(BUILD)/libvdisk.a $(LIBS)

$(BUILD)/tests/%-64k: tests/unit/%.c $(BUILD)/libvdisk.a
	@mkdir -p $(dir $@)
	@echo "  CC    $< (64 KiB chunks)"
	$(Q)$(CC) $(ALL_CFLAGS) -DCHUNK=65536u -DSECTOR=4096u -MMD -MP -o $@ $< \
	    $(BUILD)/libvdisk.a $(LIBS)

$(BUILD)/tests/%-compact: tests/unit/%.c $(BUILD)/libvdisk.a
	@mkdir -p $(dir $@)
	@echo "  CC    $< (compacting)"
	$(Q)$(CC) $(ALL_CFLAGS) -DCOMPACT_AGGRESSIVE -MMD -MP -o $@ $< \
	    $(BUILD)/libvdisk.a $(LIBS)

# With $(SAN) too: the test binaries it is preloaded into link the same
# sanitizer runtime, which is therefore loaded when the shim needs it.
$(POWERCUT_SO): tests/powercut/powercut.c
	@mkdir -p $(dir $@)
	@echo "  CC    $< (shared)"
	$(Q)$(CC) $(ALL_CFLAGS) -fPIC -shared -MMD -MP -o $@ $< -ldl

-include $(LIB_OBJS:.o=.d) $(CLI_OBJS:.o=.d) $(UNIT_BINS:=.d) $(POWERCUT_SO:.so=.d) \
         $(PIC_OBJS:.o=.d)

# ---- install -----------------------------------------------------------------
# GNU directory variables; DESTDIR is prepended to every path.  The .pc file
# and vdisk.1 record directories, so they are regenerated when those change
# (a stamp names the directories they were made with).
PREFIX      ?= /usr/local
bindir      ?= $(PREFIX)/bin
libdir      ?= $(PREFIX)/lib
includedir  ?= $(PREFIX)/include
pkgconfigdir ?= $(libdir)/pkgconfig
datadir     ?= $(PREFIX)/share
mandir      ?= $(datadir)/man
docdir      ?= $(datadir)/doc/vdisk
bashcompdir ?= $(datadir)/bash-completion/completions
unitdir     ?= $(PREFIX)/lib/systemd/system
INSTALL     ?= install

# Every file `make install` creates (and `make uninstall` removes), without
# DESTDIR.
INSTALLED := $(bindir)/vdisk $(libdir)/$(SO_FILE) $(libdir)/$(SO_NAME) \
             $(libdir)/libvdisk.so $(libdir)/libvdisk.a \
             $(includedir)/vdisk.h $(pkgconfigdir)/vdisk.pc \
             $(mandir)/man1/vdisk.1 $(docdir)/FORMAT.md $(docdir)/JSON.md \
             $(bashcompdir)/vdisk $(unitdir)/vdisk-serve.service \
             $(unitdir)/vdisk-serve.socket

DIRS_STAMP := $(BUILD)/.dirs-$(subst /,_,$(PREFIX)$(bindir)$(libdir)$(includedir)$(docdir)$(bashcompdir)$(unitdir))
$(DIRS_STAMP):
	@mkdir -p $(BUILD) && rm -f $(BUILD)/.dirs-* && touch $@
$(BUILD)/vdisk.pc $(BUILD)/vdisk.1 $(BUILD)/vdisk-serve.service: $(DIRS_STAMP)

install: all
	$(INSTALL) -d $(DESTDIR)$(bindir) $(DESTDIR)$(libdir) \
	   $(DESTDIR)$(includedir) $(DESTDIR)$(pkgconfigdir) \
	   $(DESTDIR)$(mandir)/man1 $(DESTDIR)$(docdir) $(DESTDIR)$(bashcompdir) \
	   $(DESTDIR)$(unitdir)
	$(INSTALL) -m 755 $(BUILD)/vdisk $(DESTDIR)$(bindir)/vdisk
	$(INSTALL) -m 755 $(BUILD)/$(SO_FILE) $(DESTDIR)$(libdir)/$(SO_FILE)
	ln -sf $(SO_FILE) $(DESTDIR)$(libdir)/$(SO_NAME)
	ln -sf $(SO_NAME) $(DESTDIR)$(libdir)/libvdisk.so
	$(INSTALL) -m 644 $(BUILD)/libvdisk.a $(DESTDIR)$(libdir)/libvdisk.a
	$(INSTALL) -m 644 engine/vdisk.h $(DESTDIR)$(includedir)/vdisk.h
	$(INSTALL) -m 644 $(BUILD)/vdisk.pc $(DESTDIR)$(pkgconfigdir)/vdisk.pc
	$(INSTALL) -m 644 $(BUILD)/vdisk.1 $(DESTDIR)$(mandir)/man1/vdisk.1
	$(INSTALL) -m 644 FORMAT.md cli/JSON.md $(DESTDIR)$(docdir)
	$(INSTALL) -m 644 dist/vdisk.bash $(DESTDIR)$(bashcompdir)/vdisk
	$(INSTALL) -m 644 $(BUILD)/vdisk-serve.service dist/vdisk-serve.socket \
	   $(DESTDIR)$(unitdir)

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(DESTDIR)$(docdir) 2>/dev/null

# ---- set-up ------------------------------------------------------------------
# Debian packages for building and for the tests (the real peers).
DEB_BUILD := gcc make pkg-config liblmdb-dev libzstd-dev libssl-dev liburing-dev \
             libgnutls28-dev libxxhash-dev libfuse3-dev libext2fs-dev
DEB_TEST  := qemu-utils nbdkit libnbd-bin python3-libnbd fio e2fsprogs \
             util-linux zstd lmdb-utils groff-base gnutls-bin python3-xxhash \
             fuse3 qemu-system-x86 busybox-static cpio fdisk jq attr dosfstools
deps:
	@./tests/install-deps.sh $(DEB_BUILD) $(DEB_TEST)

# ---- main job and tests ------------------------------------------------------
demo: deps
	$(Q)$(MAKE) --no-print-directory vdisk
	$(Q)./tests/demo.sh

check: deps
	$(Q)$(MAKE) --no-print-directory all unit
	$(Q)VDISK_BUILD=$(BUILD) VDISK_SANFLAGS="$(SAN)" $(TEST_WRAP) ./tests/run-tests.sh $(TESTS)

unit: $(UNIT_BINS) $(POWERCUT_SO)

asan:
	$(Q)LSAN_OPTIONS="suppressions=$(CURDIR)/tests/lsan.supp $${LSAN_OPTIONS:-}" \
	   $(MAKE) --no-print-directory check BUILD=build-asan CFLAGS="-O1 -g" \
	   SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

# ThreadSanitizer over the tests with threads: the engine's own (writers,
# snapshots, flush and gc against the sealer thread), the model test (one
# thread, but the engine seals in its own), the crash test (and its power
# cuts, with a TSan-built shim) and the NBD server under load and while
# snapshots go through its control socket.  Any report fails the test
# (halt_on_error).  tests/tsan.supp is only for false positives in
# third-party libraries, never for races in vdisk's code.  ASLR is turned
# off where setarch can, since TSan cannot run with some kernels' mmap
# randomisation ("unexpected memory mapping").
TSAN_TESTS = $(addprefix build-tsan/tests/,test-threads test-threads-64k \
                 test-model test-crash test-model-compact test-rename-bulk \
                 test-frozen) \
             tests/test-nbd-load.sh tests/test-nbd-snapshot.sh \
             tests/test-nbd-kill9.sh tests/test-cli-busy.sh
tsan:
	$(Q)TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 exitcode=66 \
	   suppressions=$(CURDIR)/tests/tsan.supp $${TSAN_OPTIONS:-}" \
	   $(MAKE) --no-print-directory check BUILD=build-tsan CFLAGS="-O1 -g" \
	   SAN="-fsanitize=thread -fno-omit-frame-pointer" TESTS="$(TSAN_TESTS)" \
	   TEST_WRAP="$$(setarch -R true 2>/dev/null && echo setarch -R)"

clean:
	rm -rf build build-asan build-tsan vdisk

.PHONY: all vdisk deps demo check unit asan tsan clean install uninstall

# NBD fuzzing targets (make fuzz-nbd, fuzz-nbd-run, fuzz-nbd-corpus).
include nbd/nbd.mk
# Each front-end folder's own unit tests and fuzz targets, where it has any.
-include $(wildcard fuse/*.mk guest/*.mk vmm/*.mk)
