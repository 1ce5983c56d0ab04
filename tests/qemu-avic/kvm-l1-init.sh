#!/bin/busybox sh
# /init of the L1 initramfs of `cargo xtask qemu-avic kvm` (issue 6 item 4). Runs inside the
# Debian 6.1 L1 kernel booted under the patched QEMU. For each mode in /l2/avic-modes (default
# "0 1"; a mode is a `kvm_amd avic=` value, with a trailing x for an xAPIC-mode L2 on q35):
# load kvm_amd with it, run the L2 (Debian's
# qemu-system-x86_64 with KVM, 2 vCPUs, the project's guest kernel + initramfs) and count the
# L2's exits with ftrace hist triggers. Output, parsed by xtask (keep the format):
#   === l1 dmesg avic=N          KVM/SVM/AVIC lines of dmesg after loading kvm_amd
#   === l1 param avic=N Y|N      /sys/module/kvm_amd/parameters/avic
#   === l2 begin avic=N          then the L2's console (didvisor-guest: lines)
#   === l2 end avic=N rc=RC secs=S
#   === hist exit avic=N         kvm:kvm_exit hist keyed by exit_reason
#   === hist msr avic=N          kvm:kvm_msr hist keyed by ecx,write
#   === hist inhibit avic=N      kvm:kvm_apicv_inhibit_changed (if the event exists)
#   === hist avic_ipi avic=N     kvm:kvm_avic_incomplete_ipi hist keyed by index
#   === hist avic_unacc avic=N   kvm:kvm_avic_unaccelerated_access keyed by offset,rw
#   === hist NAME@PHASE avic=N   the same hists (exit, msr, avic_ipi, avic_unacc) as they
#                                stood when the L2 printed its `ipi begin` (PHASE ipi-begin)
#                                and its `ipi rounds` line (ipi-end), each group followed by
#   === l2 resume avic=N         (the L2's console goes on)
#                                The bench L2 (didbench, `cargo xtask bench --config kvm`)
#                                marks each workload window with `didvisor-bench-mark: NAME
#                                begin|end`: the same snapshots, PHASE NAME-begin / NAME-end.
#   === done
# /l2/disk-mb (bench): a sparse disk of that many MiB for the L2's drive (in /l2/machine).
export PATH=/bin:/usr/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
T=/sys/kernel/tracing
L2_MACHINE="-machine microvm,pit=off,pic=off,rtc=off,isa-serial=on -bios /usr/share/qemu/qboot.rom"
# Modes ending in x ("1x"): the L2 in xAPIC mode (its APIC through the MMIO page, i.e. xAVIC
# with avic=1) on q35/SeaBIOS (a PIT that does not re-inject, which would inhibit AVIC).
L2_MACHINE_XAPIC="-machine q35 -global kvm-pit.lost_tick_policy=discard"
# /m/order: the modules in load order, kvm_amd last (loaded per run below).
for m in $(cat /m/order 2>/dev/null || echo irqbypass kvm ccp kvm_amd); do
    [ $m = kvm_amd ] || insmod /m/$m.ko
done
if [ -f /l2/disk-mb ]; then
    dd if=/dev/zero of=/tmp/disk.img bs=1M count=0 seek=$(cat /l2/disk-mb) 2>/dev/null
fi
modes=$(cat /l2/avic-modes 2>/dev/null || echo "0 1")
secs=$(cat /l2/timeout 2>/dev/null || echo 600)
ev() { [ -d $T/events/kvm/$1 ]; }
# The exit hists as they stand now, labelled with phase $1 (the L2 run's avic value in $a).
snap() {
    phase=$1
    for h in "exit kvm_exit" "msr kvm_msr" "avic_ipi kvm_avic_incomplete_ipi" \
             "avic_unacc kvm_avic_unaccelerated_access" "inj kvm_inj_virq"; do
        set -- $h
        echo "=== hist $1@$phase avic=$a"
        ev $2 && grep -v '^#' $T/events/kvm/$2/hist | grep -v '^$'
    done
    echo "=== l2 resume avic=$a"
}
hist_on() {  # event keys
    ev $1 && echo "hist:keys=$2:sort=hitcount" > $T/events/kvm/$1/trigger
}
hist_off() {
    ev $1 && echo "!hist:keys=$2:sort=hitcount" > $T/events/kvm/$1/trigger
}
for a in $modes; do
    avic=${a%x}
    machine=$(cat /l2/machine 2>/dev/null || echo "$L2_MACHINE")
    append=$(cat /l2/append 2>/dev/null || echo console=ttyS0 panic=-1)
    if [ "$avic" != "$a" ]; then
        machine=$L2_MACHINE_XAPIC
        append="$append nox2apic"
    fi
    n0=$(dmesg | wc -l)
    insmod /m/kvm_amd.ko avic=$avic
    sleep 1
    echo "=== l1 dmesg avic=$a"
    dmesg | tail -n +$((n0 + 1)) | grep -iE "kvm|avic|svm"
    echo "=== l1 param avic=$a $(cat /sys/module/kvm_amd/parameters/avic)"
    hist_on kvm_exit exit_reason
    hist_on kvm_msr ecx,write
    hist_on kvm_apicv_inhibit_changed reason,set 2>/dev/null
    hist_on kvm_avic_incomplete_ipi index
    hist_on kvm_avic_unaccelerated_access offset,rw
    hist_on kvm_inj_virq common_pid
    echo "=== l2 begin avic=$a"
    t0=$(cut -d. -f1 /proc/uptime)
    ( while sleep 30; do
        n=$(grep -v '^#' $T/events/kvm/kvm_exit/hist | awk '/hitcount/ {s += $NF} END {print s+0}')
        echo "=== progress avic=$a $(($(cut -d. -f1 /proc/uptime) - t0)) $n"
        grep -v '^#' $T/events/kvm/kvm_exit/hist | grep hitcount | tail -4 | sed 's/^/#p /'
      done ) &
    mon=$!
    # /l2/machine: the L2 machine options of the x2APIC modes (default: microvm with qboot,
    # which starts no AP itself; the x modes exercise SeaBIOS and xAPIC).
    # The L2's console goes through a reader that snapshots the hists at the L2's `ipi`
    # step markers (its exit status through /tmp/l2rc: busybox sh has no PIPESTATUS).
    ( timeout $secs /usr/bin/qemu-system-x86_64 -L /usr/share/qemu -enable-kvm $machine \
        -cpu host -smp 2 -m 256M -nodefaults -display none -serial stdio -no-reboot \
        -kernel /l2/vmlinuz -initrd /l2/initrd.gz -append "$append" < /dev/null
      echo $? > /tmp/l2rc ) | while IFS= read -r line; do
        echo "$line"
        case "$line" in
        *"didvisor-guest: ipi begin"*) snap ipi-begin ;;
        *"didvisor-guest: ipi rounds"*) snap ipi-end ;;
        *"didvisor-bench-mark: "*)
            set -- $(echo "${line#*didvisor-bench-mark: }" | tr -d '\r')
            snap "$1-$2" ;;
        esac
    done
    rc=$(cat /tmp/l2rc 2>/dev/null || echo 255)
    kill $mon
    t1=$(cut -d. -f1 /proc/uptime)
    echo "=== l2 end avic=$a rc=$rc secs=$((t1 - t0))"
    for h in "exit kvm_exit" "msr kvm_msr" "inhibit kvm_apicv_inhibit_changed" \
             "avic_ipi kvm_avic_incomplete_ipi" "avic_unacc kvm_avic_unaccelerated_access"; do
        set -- $h
        echo "=== hist $1 avic=$a"
        ev $2 && grep -v '^#' $T/events/kvm/$2/hist | grep -v '^$'
    done
    hist_off kvm_exit exit_reason
    hist_off kvm_msr ecx,write
    hist_off kvm_apicv_inhibit_changed reason,set 2>/dev/null
    hist_off kvm_avic_incomplete_ipi index
    hist_off kvm_avic_unaccelerated_access offset,rw
    hist_off kvm_inj_virq common_pid
    rmmod kvm_amd
done
echo "=== done"
poweroff -f
