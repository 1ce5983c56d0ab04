#!/bin/sh
# Does Linux KVM (Debian 6.1, as L1) accept the emulated AVIC/x2AVIC?  Boots the L1 kernel
# under QEMU with a busybox initramfs that loads irqbypass, kvm, ccp and kvm-amd avic=1 and
# prints KVM's dmesg lines and /sys/module/kvm_amd/parameters/avic.  No L2 is started.
#
# usage: tests/qemu-avic/kvm-modprobe-check.sh QEMU_BINARY KERNEL_TREE [CPU]
#   QEMU_BINARY  e.g. "$(cargo xtask qemu-avic | tail -1)"
#   KERNEL_TREE  an unpacked linux-image-6.1.0-N-amd64 package (boot/vmlinuz-*, lib/modules/*),
#                e.g. ~/.cache/didvisor/linux/6.1.0-56-amd64 as `cargo xtask deps` leaves it
#   CPU          default max,+avic,+x2avic
# Expected with the patched QEMU: "AVIC enabled", "x2AVIC enabled", kvm_amd.avic=Y.
set -eu
qemu=$1 tree=$2 cpu=${3:-max,+avic,+x2avic}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
kernel=$(ls "$tree"/boot/vmlinuz-* | head -1)
mods=$(ls -d "$tree"/lib/modules/* | head -1)/kernel
root=$work/root
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/m"
cp /bin/busybox "$root/bin/busybox"
for m in virt/lib/irqbypass.ko arch/x86/kvm/kvm.ko drivers/crypto/ccp/ccp.ko \
         arch/x86/kvm/kvm-amd.ko; do
    cp "$mods/$m" "$root/m/"
done
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
for m in irqbypass kvm ccp; do insmod /m/$m.ko; done
insmod /m/kvm-amd.ko avic=1
echo "=== dmesg"
dmesg | grep -iE "kvm|avic|svm"
echo "=== kvm_amd.avic=$(cat /sys/module/kvm_amd/parameters/avic)"
poweroff -f
INIT
chmod +x "$root/init"
mknod "$root/dev/console" c 5 1
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip) > "$work/initrd.gz"
timeout 180 "$qemu" -machine q35 -cpu "$cpu" -smp 2 -m 1G -nographic -no-reboot \
    -kernel "$kernel" -initrd "$work/initrd.gz" -append "console=ttyS0 quiet" </dev/null |
    sed -n '/=== dmesg/,/=== kvm_amd/p'
