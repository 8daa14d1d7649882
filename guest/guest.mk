# guest/: test programs and fuzz targets of the guest disk readers
# (included by the Makefile).  The readers themselves are in FRONT_SRCS.

GUEST_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard guest/*.c))
GUEST_LIBS  = $(shell pkg-config --libs ext2fs com_err 2>/dev/null)

# Helpers the shell tests run (not test-* themselves: run-tests.sh runs
# only those).
$(BUILD)/tests/guest-%: tests/guest/guest-%.c $(GUEST_OBJS) $(BUILD)/libvdisk.a
	@mkdir -p $(dir $@)
	@echo "  CC    $@"
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -o $@ $< $(GUEST_OBJS) \
	   $(BUILD)/libvdisk.a $(GUEST_LIBS) $(LIBS)

GUEST_TOOLS := $(BUILD)/tests/guest-parts $(BUILD)/tests/guest-fs
all: $(GUEST_TOOLS)
unit: $(GUEST_TOOLS)
