# The core of vdisk run (loader, firmware tables, UART): its unit test,
# which runs without KVM.  vmm/kvm.c and vmm/vmm.c stay out of it.
VMM_CORE_SRCS := vmm/boot.c vmm/tables.c vmm/uart.c
VMM_CORE_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(VMM_CORE_SRCS))

unit: $(BUILD)/tests/test-vmm-boot

$(BUILD)/tests/test-vmm-boot: tests/unit/test-vmm-boot.c $(VMM_CORE_OBJS) \
			      $(BUILD)/libvdisk.a
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -o $@ $< $(VMM_CORE_OBJS) \
	    $(BUILD)/libvdisk.a $(LIBS)
