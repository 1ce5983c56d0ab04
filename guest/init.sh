#!/bin/sh
# /init of the Linux guest's initramfs (busybox sh). `cargo xtask build` packs this file into
# build/linux/initrd.cpio.gz together with a static busybox, its applet links and the nvme
# modules (/lib/modules/<release>/, with modules.dep).
#
# Output (the integration tests assert on these lines; keep the format):
#   didvisor-guest: kernel <uname -r>
#   didvisor-guest: nproc <nproc>
#   didvisor-guest: checksum <sha256 of the output of `seq 1 N`> (N = 100000, or
#                    `didvisor.seq=N` on the kernel command line for a longer busy phase)
#   didvisor-guest: interrupts-begin
#   <cat /proc/interrupts>
#   didvisor-guest: interrupts-end
#   [extra steps, see below]
#   didvisor-guest: done
# and then `poweroff -f`.
#
# Extra steps: `didvisor.test=STEP[,STEP...]` on the kernel command line (may be given more
# than once; `cargo xtask linux-run --append didvisor.test=nvme`) runs each STEP between
# interrupts-end and done:
#   nvme   load nvme.ko and its dependencies, wait for /dev/nvme0n1, print its size and the
#          sha256 of its first MiB (lines `didvisor-guest: nvme ...`)
#   nvme-write  load nvme, write a 64 KiB pattern made of `didvisor.pattern=WORD` (default
#          `didvisor`) at byte offset 1 MiB of /dev/nvme0n1, drop the page cache, read it back
#          and compare (`didvisor-guest: nvme write ok` or `... mismatch`), then print the sum of
#          the nvme interrupts in /proc/interrupts (`didvisor-guest: nvme interrupts N`)
#   nvme-read  load nvme, drop the page cache, read 16 MiB of /dev/nvme0n1 in 4 KiB blocks, and
#          print the nvme interrupt count (`didvisor-guest: nvme interrupts N`) — the I/O workload
#          of `cargo xtask bench`
#   net    load igbvf (the NIC VF's stock driver), give its interface `didvisor.ip=ADDR/LEN`
#          (default 10.0.2.15/24, QEMU's user network) and a default route via
#          `didvisor.gw=ADDR` (default 10.0.2.2), wait for the link, then print
#          `didvisor-guest: net IF mac MAC`, ping the gateway three times
#          (`didvisor-guest: net ping ok` or `... ping failed`), fetch
#          http://GW:`didvisor.port=N`/data with wget (when a port is given) and print
#          `didvisor-guest: net wget sha256 HASH bytes N` (or `net wget failed`), and last
#          `didvisor-guest: net interrupts N`, the sum of the interface's /proc/interrupts rows.
#          With `didvisor.peer=ADDR`: before the count, ping ADDR (another guest) until it
#          answers, 30 tries at most (`net peer ok` or `net peer failed`), then 3 s more for the
#          other guest's pings. With `didvisor.spoof=MAC`: then try `ip link set address MAC`
#          (`net spoof refused` or `net spoof accepted`) and print `net mac-after-spoof MAC`.
#          TCP between guests: `didvisor.tcp-listen=PORT` receives one connection's bytes
#          (listening from the start of the step, for 30 s at most after the peer pings) and
#          prints `net tcp received sha256 HASH bytes N`; `didvisor.tcp-send=ADDR:PORT` sends
#          the output of `seq 1 50000` there after the peer pings and prints
#          `net tcp sent sha256 HASH bytes N` (or `net tcp send failed`)
#   memtest  print MemTotal (`didvisor-guest: memtotal-kib N`), then run /bin/didmemtest over
#          `didvisor.memtest=MIB` (default 64) MiB of locked user memory: it writes and reads
#          back a pattern on the pages whose physical address is above 4 GiB
#          (`didvisor-guest: memtest pages N high H bad B max-pa 0xADDR`)
#   virtio-blk  load virtio_pci and virtio_blk, wait for /dev/vda, print its size and the
#          sha256 of the whole disk (`didvisor-guest: virtio-blk vda sectors N`, `... sha256 H`),
#          write the 64 KiB pattern of nvme-write at byte offset 1 MiB, drop the page cache, read
#          it back and compare (`didvisor-guest: virtio-blk write ok` or `... mismatch`), then
#          print the sum of the virtio rows of /proc/interrupts (`didvisor-guest: virtio-blk
#          interrupts N`)
#   shell  an interactive shell on the console; `exit` continues
#   input  read one line typed on the console (10 s at most) and print it back as
#          `didvisor-guest: input <line>`
#   ipi    (2+ CPUs) an IPI workload whose targets are running: init, pinned to CPU 0, and a
#          busy shell pinned to CPU 1 play `didvisor.ipi=N` (default 1000) rounds of signal
#          ping-pong (SIGUSR1 there, SIGUSR2 back); the kernel kicks the running receiver
#          with a rescheduling IPI each time (kick_process). Prints `didvisor-guest: ipi begin`,
#          pauses a second, plays, then `didvisor-guest: ipi rounds N rescheduling M` (M = the
#          growth of the RES counts, all CPUs) — the workload of `cargo xtask qemu-avic kvm`
#   reboot `reboot -f` after printing `didvisor-guest: reboot` (the kernel resets the machine
#          through the FADT's reset register); the steps after it do not run
# An unknown step prints `didvisor-guest: test STEP unknown`.

export PATH=/bin

say() { echo "didvisor-guest: $*"; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Only warnings and worse on the console from here on, so that late kernel messages
# (clocksource switches, random: crng init) do not land inside the lines below.
echo 4 >/proc/sys/kernel/printk

steps=
seq_n=100000
pattern=didvisor
ipi_n=1000
memtest_mib=64
bench=
net_ip=10.0.2.15/24
net_gw=10.0.2.2
net_port=
net_peer=
net_spoof=
tcp_listen=
tcp_send=
for word in $(cat /proc/cmdline); do
	case "$word" in
	didvisor.test=*) steps="$steps $(echo "${word#didvisor.test=}" | tr , ' ')" ;;
	didvisor.seq=*) seq_n="${word#didvisor.seq=}" ;;
	didvisor.pattern=*) pattern="${word#didvisor.pattern=}" ;;
	didvisor.ipi=*) ipi_n="${word#didvisor.ipi=}" ;;
	didvisor.ip=*) net_ip="${word#didvisor.ip=}" ;;
	didvisor.gw=*) net_gw="${word#didvisor.gw=}" ;;
	didvisor.port=*) net_port="${word#didvisor.port=}" ;;
	didvisor.peer=*) net_peer="${word#didvisor.peer=}" ;;
	didvisor.spoof=*) net_spoof="${word#didvisor.spoof=}" ;;
	didvisor.tcp-listen=*) tcp_listen="${word#didvisor.tcp-listen=}" ;;
	didvisor.tcp-send=*) tcp_send="${word#didvisor.tcp-send=}" ;;
	didvisor.memtest=*) memtest_mib="${word#didvisor.memtest=}" ;;
	didvisor.bench=*) bench="$(echo "${word#didvisor.bench=}" | tr , ' ')" ;;
	esac
done

# Waits up to 5 s for block device $1 to appear; false when it does not.
wait_block() {
	for i in $(seq 1 50); do
		[ -b "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

# Loads module $1 after its dependencies (modules.dep lists them last-to-load first).
load_module() {
	dir=/lib/modules/$(uname -r)
	modprobe "$1" 2>/dev/null && return 0
	line=$(grep "/$1.ko:" "$dir/modules.dep") || return 1
	order=
	for m in ${line#*:}; do order="$m $order"; done
	for m in $order ${line%%:*}; do
		insmod "$dir/$m" 2>/dev/null || grep -q "^$(basename "$m" .ko | tr - _) " /proc/modules || return 1
	done
}

step_nvme() {
	if load_module nvme; then
		say "nvme modules loaded: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"
	else
		say "nvme modules failed to load"
		return
	fi
	if ! wait_block /dev/nvme0n1; then
		say "nvme no namespace (/dev/nvme0n1 missing after 5 s)"
		return
	fi
	say "nvme nvme0n1 sectors $(cat /sys/block/nvme0n1/size)"
	set -- $(dd if=/dev/nvme0n1 bs=65536 count=16 2>/dev/null | sha256sum)
	say "nvme nvme0n1 sha256-first-mib $1"
}

# Waits for the first NVMe namespace after loading the driver; false when it never appears.
nvme_disk() {
	load_module nvme || { say "nvme modules failed to load"; return 1; }
	wait_block /dev/nvme0n1 && return 0
	say "nvme no namespace (/dev/nvme0n1 missing after 5 s)"
	return 1
}

# Writes the 64 KiB pattern at byte offset 1 MiB of block device $1, reads it back after
# dropping the page cache; prints "$2 write ok" or "$2 write mismatch".
write_pattern() {
	i=0
	: >/tmp/pattern.src
	while [ $i -lt 2048 ]; do
		echo "$pattern-$i" >>/tmp/pattern.src
		i=$((i + 1))
	done
	dd if=/tmp/pattern.src of=/tmp/pattern bs=65536 count=1 conv=sync 2>/dev/null
	dd if=/tmp/pattern of="$1" bs=65536 seek=16 count=1 conv=fsync 2>/dev/null
	echo 3 >/proc/sys/vm/drop_caches
	set -- "$1" "$2" $(sha256sum </tmp/pattern)
	want=$3
	set -- "$1" "$2" $(dd if="$1" bs=65536 skip=16 count=1 2>/dev/null | sha256sum)
	if [ "$3" = "$want" ]; then say "$2 write ok"; else say "$2 write mismatch"; fi
}

step_nvme_write() {
	nvme_disk || return
	write_pattern /dev/nvme0n1 nvme
	say "nvme interrupts $(nvme_interrupts)"
}

step_virtio_blk() {
	if load_module virtio_pci && load_module virtio_blk; then
		say "virtio-blk modules loaded"
	else
		say "virtio-blk modules failed to load"
		return
	fi
	if ! wait_block /dev/vda; then
		say "virtio-blk no disk (/dev/vda missing after 5 s)"
		return
	fi
	say "virtio-blk vda sectors $(cat /sys/block/vda/size)"
	set -- $(dd if=/dev/vda bs=65536 2>/dev/null | sha256sum)
	say "virtio-blk vda sha256 $1"
	write_pattern /dev/vda virtio-blk
	say "virtio-blk interrupts $(nvme_interrupts virtio)"
}

# Sum of the nvme rows of /proc/interrupts (of the rows naming $1, if given).
nvme_interrupts() {
	interrupt_sum "${1:-nvme}"
}

# Sum of the /proc/interrupts rows whose names contain $1.
interrupt_sum() {
	total=0
	while read -r label rest; do
		case "$rest" in
		*"$1"*)
			for n in $rest; do
				case "$n" in *[!0-9]*) break ;; *) total=$((total + n)) ;; esac
			done
			;;
		esac
	done </proc/interrupts
	echo $total
}

step_net() {
	if ! load_module igbvf; then
		say "net igbvf failed to load"
		return
	fi
	dev=
	for i in $(seq 1 50); do
		for d in /sys/class/net/eth*; do [ -e "$d" ] && dev=$(basename "$d") && break; done
		[ -n "$dev" ] && break
		sleep 0.1
	done
	if [ -z "$dev" ]; then
		say "net no interface (igbvf made none in 5 s)"
		return
	fi
	listener=
	if [ -n "$tcp_listen" ]; then
		# A stdin that stays open: at EOF nc half-closes, and the sender's nc quits at once.
		sleep 60 | nc -l -p "$tcp_listen" >/tmp/tcp.recv &
		listener=$!
	fi
	ip link set "$dev" up
	ip addr add "$net_ip" dev "$dev"
	ip route add default via "$net_gw"
	for i in $(seq 1 100); do
		[ "$(cat /sys/class/net/$dev/carrier 2>/dev/null)" = 1 ] && break
		sleep 0.1
	done
	say "net $dev mac $(cat /sys/class/net/$dev/address) carrier $(cat /sys/class/net/$dev/carrier 2>/dev/null)"
	if ping -c 3 -W 2 "$net_gw" >/dev/null 2>&1; then say "net ping ok"; else say "net ping failed"; fi
	if [ -n "$net_port" ]; then
		# Bounded by `timeout`: busybox 1.35's static wget crashes with its own -T.
		if timeout 20 wget -q -O /tmp/net.data "http://$net_gw:$net_port/data"; then
			set -- $(sha256sum </tmp/net.data)
			say "net wget sha256 $1 bytes $(wc -c </tmp/net.data)"
		else
			say "net wget failed"
		fi
	fi
	if [ -n "$net_peer" ]; then
		result=failed
		for i in $(seq 1 30); do
			if ping -c 1 -W 1 "$net_peer" >/dev/null 2>&1; then result=ok; break; fi
		done
		say "net peer $result"
		if [ -n "$tcp_send" ]; then
			seq 1 50000 >/tmp/tcp.send
			# Up to 5 tries: the peer's listener may still be starting.
			sent=failed
			for i in 1 2 3 4 5; do
				if timeout 20 nc "${tcp_send%:*}" "${tcp_send#*:}" </tmp/tcp.send; then sent=ok; break; fi
				sleep 1
			done
			if [ $sent = ok ]; then
				set -- $(sha256sum </tmp/tcp.send)
				say "net tcp sent sha256 $1 bytes $(wc -c </tmp/tcp.send)"
			else
				say "net tcp send failed"
			fi
		fi
		sleep 3
	fi
	if [ -n "$listener" ]; then
		for i in $(seq 1 300); do
			kill -0 "$listener" 2>/dev/null || break
			sleep 0.1
		done
		kill "$listener" 2>/dev/null
		set -- $(sha256sum </tmp/tcp.recv)
		say "net tcp received sha256 $1 bytes $(wc -c </tmp/tcp.recv)"
	fi
	if [ -n "$net_spoof" ]; then
		if ip link set dev "$dev" address "$net_spoof" 2>/dev/null; then
			say "net spoof accepted"
		else
			say "net spoof refused"
		fi
		say "net mac-after-spoof $(cat /sys/class/net/$dev/address)"
	fi
	say "net interrupts $(interrupt_sum "$dev")"
}

step_nvme_read() {
	nvme_disk || return
	echo 3 >/proc/sys/vm/drop_caches
	dd if=/dev/nvme0n1 of=/dev/null bs=4096 count=4096 2>/dev/null
	say "nvme interrupts $(nvme_interrupts)"
}

# The RES (rescheduling interrupts) row of /proc/interrupts summed over the CPUs.
res_total() {
	while read -r label rest; do
		[ "$label" = RES: ] || continue
		n=0
		for c in $rest; do
			case "$c" in *[!0-9]*) break ;; *) n=$((n + c)) ;; esac
		done
		echo $n
		return
	done </proc/interrupts
	echo 0
}

# Signal ping-pong between two busy shells, one per CPU: each SIGUSR is sent to a task that
# is running on the other CPU, so the kernel kicks that CPU with a rescheduling IPI
# (kick_process); the next one is sent only after the reply came, so none is coalesced.
step_ipi() {
	if [ "$(nproc)" -lt 2 ]; then
		say "ipi needs 2 cpus, have $(nproc)"
		return
	fi
	taskset -p 1 $$ >/dev/null
	me=$$
	taskset -c 1 sh -c "trap 'kill -USR2 $me' USR1; while :; do :; done" &
	pid=$!
	got=0
	trap 'got=1' USR2
	# A marker for whoever counts exits around this step (kvm-l1-init.sh), then time for the
	# busy task to settle on CPU 1.
	say "ipi begin"
	sleep 1
	r0=$(res_total)
	i=0
	while [ $i -lt "$ipi_n" ]; do
		got=0
		kill -USR1 $pid
		while [ $got = 0 ]; do :; done
		i=$((i + 1))
	done
	r1=$(res_total)
	trap - USR2
	kill -9 $pid
	wait $pid 2>/dev/null
	taskset -p 3 $$ >/dev/null
	say "ipi rounds $ipi_n rescheduling $((r1 - r0))"
}

step_bench() {
	case "$bench" in *nvme*) nvme_disk || return ;; esac
	say "clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
	for job in $bench; do
		/bin/didbench "${job%%:*}" "${job#*:}" || say "bench ${job%%:*} failed"
	done
	say "bench done"
}

say "kernel $(uname -r)"
say "nproc $(nproc)"
set -- $(seq 1 "$seq_n" | sha256sum)
say "checksum $(echo "$1" | head -c 64)"
say "interrupts-begin"
cat /proc/interrupts
say "interrupts-end"

for step in $steps; do
	case "$step" in
	nvme) step_nvme ;;
	nvme-write) step_nvme_write ;;
	nvme-read) step_nvme_read ;;
	net) step_net ;;
	virtio-blk) step_virtio_blk ;;
	ipi) step_ipi ;;
	bench) step_bench ;;
	memtest)
		while read -r key value unit; do
			[ "$key" = MemTotal: ] && say "memtotal-kib $value"
		done </proc/meminfo
		/bin/didmemtest "$memtest_mib" || say "memtest failed"
		;;
	shell)
		say "shell (exit continues)"
		sh
		;;
	reboot)
		say "reboot"
		sync
		reboot -f
		say "reboot failed"
		;;
	input)
		line=
		read -t 10 -r line
		say "input $line"
		;;
	*) say "test $step unknown" ;;
	esac
done

say "done"
sync
poweroff -f
# Not reached; if it is, init exits and the kernel panics (panic=-1 reboots, -no-reboot ends QEMU).
say "poweroff failed"
