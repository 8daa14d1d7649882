# The end-to-end test of `vdisk run` (tests/test-vmm-boot.sh) and its
# helper kvm-probe, which times guest code under /dev/kvm against native.
# Static, and without $(SAN): it also runs inside the nested test's
# initramfs, which has no sanitizer runtime.
KVM_PROBE := $(BUILD)/tests/vmm/kvm-probe

$(KVM_PROBE): tests/vmm/kvm-probe.c
	@mkdir -p $(dir $@)
	@echo "  CC    $< (static)"
	$(Q)$(CC) -std=gnu11 $(WARNINGS) -O2 -D_GNU_SOURCE -static -o $@ $<

unit: $(KVM_PROBE)
