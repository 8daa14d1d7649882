# fuse/: unit tests of the FUSE front end's helpers (included by the
# Makefile; the front end itself is in FRONT_SRCS).  The mount itself is
# tested against the kernel by tests/test-fuse-raw.sh.
#
#   make unit   also builds build/tests/test-fuse-mount (path normalising
#               and the mountinfo lookup of fuse/fuse_mount.c)

$(BUILD)/tests/test-fuse-mount: tests/fuse/test-fuse-mount.c $(BUILD)/fuse/fuse_mount.o
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -o $@ $< $(BUILD)/fuse/fuse_mount.o

unit: $(BUILD)/tests/test-fuse-mount
