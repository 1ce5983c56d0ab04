#!/bin/sh
# Manual prototype of `cargo xtask qemu-avic kvm`: builds the L1 initramfs (busybox, kvm
# modules, Debian's qemu-system-x86_64 with its libraries and firmware as the L2 VMM, the L2
# kernel + initramfs, kvm-l1-init.sh as /init) and boots the Debian 6.1 kernel as L1 under
# QEMU_BINARY (the patched one) with -cpu CPU.
#
# usage: tests/qemu-avic/kvm-validate.sh QEMU_BINARY KERNEL_TREE L2_KERNEL L2_INITRD [CPU] [MODES]
#   e.g. kvm-validate.sh ~/.cache/didvisor/qemu/build/qemu-system-x86_64 \
#          ~/.cache/didvisor/linux/6.1.0-56-amd64 build/linux/vmlinuz build/linux/initrd.cpio.gz
#   MODES        kvm_amd avic= values, default "0 1"
# environment: L2_TIMEOUT (s, default 600) bounds each L2 run; L2_MACHINE replaces the L2
#   machine options of kvm-l1-init.sh (default microvm + qboot), e.g.
#   L2_MACHINE="-machine q35 -global kvm-pit.lost_tick_policy=discard" (SeaBIOS: hangs with
#   avic=1 until xAVIC is emulated, see NOTES.md)
set -eu
qemu=$1 tree=$2 l2k=$3 l2i=$4 cpu=${5:-max,+avic,+x2avic} modes=${6:-0 1}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
kernel=$(ls "$tree"/boot/vmlinuz-* | head -1)
mods=$(ls -d "$tree"/lib/modules/* | head -1)/kernel
root=$work/root
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/m" "$root/l2" \
         "$root/usr/bin" "$root/usr/share/qemu" "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for m in virt/lib/irqbypass.ko arch/x86/kvm/kvm.ko drivers/crypto/ccp/ccp.ko \
         arch/x86/kvm/kvm-amd.ko; do
    cp "$mods/$m" "$root/m/$(basename $m .ko | tr - _).ko"
done
printf 'irqbypass\nkvm\nccp\nkvm_amd\n' > "$root/m/order"
echo "console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1" > "$root/l2/append"
l2q=/usr/bin/qemu-system-x86_64
cp "$l2q" "$root/usr/bin/"
for lib in $(ldd "$l2q" | awk '/=>/ {print $3} /^[[:space:]]*\// {print $1}'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
for f in /usr/share/seabios/bios-256k.bin /usr/share/qemu/kvmvapic.bin \
         /usr/share/qemu/linuxboot_dma.bin /usr/share/qemu/linuxboot.bin \
         /usr/share/qemu/qboot.rom; do
    cp -L "$f" "$root/usr/share/qemu/"
done
cp "$l2k" "$root/l2/vmlinuz"
cp "$l2i" "$root/l2/initrd.gz"
echo "$modes" > "$root/l2/avic-modes"
echo "${L2_TIMEOUT:-600}" > "$root/l2/timeout"
[ -z "${L2_MACHINE:-}" ] || echo "$L2_MACHINE" > "$root/l2/machine"
mknod "$root/dev/console" c 5 1
cp "$here/kvm-l1-init.sh" "$root/init"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$work/initrd.gz"
ls -la "$work/initrd.gz" >&2
timeout 1500 "$qemu" -machine q35 -cpu "$cpu" -smp 2 -m 4G -nographic -no-reboot -nic none \
    -kernel "$kernel" -initrd "$work/initrd.gz" -append "console=ttyS0 quiet" </dev/null
