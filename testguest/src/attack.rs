//! `attack=...`: the attack guest. Each attack does one thing a malicious guest would try against
//! the hypervisor or the guests beside it, catches the fault the processor raises (an IDT with
//! #UD, #GP and #PF handlers that resume after the attacking instruction) and prints one line
//! `testguest: attack NAME: OUTCOME`. Whether the attack was contained is for the test to judge
//! from those lines, the hypervisor's reports and the canaries: this side only reports.

use core::arch::asm;
use core::fmt::Write;

use pci::header::{self, Command};
use pci::ConfigAccess;
use testguest::cmdline::Attack;

use crate::guest::Console;
use crate::nvme::{find_vf, Conf1, VF};
use crate::traps::{probe, Outcome};

macro_rules! say {
    ($($arg:tt)*) => {{ let _ = writeln!(Console, $($arg)*); }};
}

fn wrmsr(msr: u32, value: u64) -> Outcome {
    probe!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32)
}

fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads the TSC.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    u64::from(hi) << 32 | u64::from(lo)
}

fn spin_cycles(n: u64) {
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < n {
        core::hint::spin_loop();
    }
}

fn outb(port: u16, v: u8) {
    // SAFETY: port output to the virtual platform; no memory is touched.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack)) };
}

fn read_volatile<T: Copy>(addr: u64) -> T {
    // SAFETY: a deliberate access to device memory or an unbacked guest-physical address, which
    // the hypervisor maps or emulates (identity-mapped guest page tables).
    unsafe { core::ptr::read_volatile(addr as *const T) }
}

fn write_volatile<T: Copy>(addr: u64, v: T) {
    // SAFETY: as in `read_volatile`.
    unsafe { core::ptr::write_volatile(addr as *mut T, v) }
}

/// Runs `attacks` in order; `canary` is the first `canary=` address (0: none).
pub fn run(attacks: impl Iterator<Item = Attack>, canary: u64) {
    crate::traps::install();
    for a in attacks {
        let name = a.name();
        match a {
            Attack::Vmsave => say!(
                "testguest: attack {name}: {}",
                probe!("vmsave", in("rax") canary)
            ),
            Attack::Vmload => say!(
                "testguest: attack {name}: {}",
                probe!("vmload", in("rax") canary)
            ),
            Attack::Clgi => say!("testguest: attack {name}: {}", probe!("clgi")),
            Attack::Stgi => say!("testguest: attack {name}: {}", probe!("stgi")),
            Attack::Skinit => say!(
                "testguest: attack {name}: {}",
                probe!("skinit", in("rax") canary)
            ),
            Attack::Invlpga => {
                say!(
                    "testguest: attack {name}: {}",
                    probe!("invlpga", in("rax") 0u64, in("ecx") 0u32)
                )
            }
            Attack::Rdpru => say!(
                "testguest: attack {name}: {}",
                probe!("rdpru", in("ecx") 0u32, out("eax") _, out("edx") _)
            ),
            Attack::Monitor => say!(
                "testguest: attack {name}: {}",
                probe!("monitor", in("rax") 0x10_0000u64, in("ecx") 0u32, in("edx") 0u32)
            ),
            Attack::Mwait => {
                say!(
                    "testguest: attack {name}: {}",
                    probe!("mwait", in("eax") 0u32, in("ecx") 0u32)
                )
            }
            Attack::Wbinvd => say!("testguest: attack {name}: {}", probe!("wbinvd")),
            Attack::Wbnoinvd => say!("testguest: attack {name}: {}", probe!("wbnoinvd")),
            Attack::Invd => say!("testguest: attack {name}: {}", probe!("invd")),
            Attack::Xsetbv => xsetbv(name),
            Attack::Svr => say!("testguest: attack {name}: {}", wrmsr(0x80f, 0xcff)),
            Attack::LvtSmi => say!("testguest: attack {name}: {}", wrmsr(0x832, 2 << 8 | 0xef)),
            Attack::LvtErrorNmi => {
                say!("testguest: attack {name}: {}", wrmsr(0x837, 4 << 8 | 0xfe))
            }
            // Fixed, physical destination 0 (itself), vector 3.
            Attack::IpiLowVector => say!("testguest: attack {name}: {}", wrmsr(0x830, 3)),
            Attack::IcrBroadcasts => {
                // NMI, INIT and fixed vector 0x40 to all excluding self; NMI to APIC id 0xff..
                // (the broadcast ID: it comes back to this vCPU, as on hardware).
                let nmi = wrmsr(0x830, 3 << 18 | 4 << 8);
                let init = wrmsr(0x830, 3 << 18 | 5 << 8);
                let fixed = wrmsr(0x830, 3 << 18 | 0x40);
                let far = wrmsr(0x830, 0xffff_ffffu64 << 32 | 4 << 8);
                say!("testguest: attack {name}: nmi {nmi}, init {init}, fixed {fixed}, nmi to 0xffffffff {far}");
            }
            Attack::IoapicLowVector => ioapic_low_vector(name),
            Attack::SvmMsrs => svm_msrs(name, canary),
            Attack::X2apicReserved => {
                let read = |msr: u32| probe!("rdmsr", in("ecx") msr, out("eax") _, out("edx") _);
                let (r804, r840, r850) = (read(0x804), read(0x840), read(0x850));
                let (w804, w840) = (wrmsr(0x804, 1), wrmsr(0x840, 1));
                say!("testguest: attack {name}: read 804h {r804}, 840h {r840}, 850h {r850}; write 804h {w804}, 840h {w840}");
            }
            Attack::Ports => {
                for (port, v) in [
                    (0x21u16, 0u8),
                    (0xa1, 0),
                    (0x43, 0x34),
                    (0x40, 1),
                    (0x40, 0),
                    (0x70, 0x8f),
                    (0x92, 2),
                ] {
                    outb(port, v);
                }
                say!("testguest: attack {name}: completed");
            }
            Attack::DebugRegisters => {
                // Breakpoints (any access, 8 bytes) on the hypervisor's image and on the first
                // canary; the guest's own accesses never touch them, its exits go on.
                let (dr0, dr1) = (0x20_0000u64, canary);
                let set = probe!(
                    "mov dr0, {a}\n mov dr1, {b}\n mov dr7, {c}",
                    a = in(reg) dr0,
                    b = in(reg) dr1,
                    c = in(reg) 0x0ff0_000fu64
                );
                for _ in 0..1000 {
                    outb(0x80, 0);
                }
                let clear = probe!("mov dr7, {c}", c = in(reg) 0x400u64);
                say!("testguest: attack {name}: set {set}, 1000 exits, cleared {clear}");
            }
            Attack::DevicePages => {
                // Local APIC (xAPIC MMIO is off in x2APIC mode), IOAPIC version, QEMU's IOMMU
                // and ECAM windows, the last page below 4 GiB.
                let mut reads = [0u32; 5];
                for (r, a) in reads.iter_mut().zip([
                    0xfee0_0030u64,
                    0xfed8_0000,
                    0xb000_0000,
                    0xffff_f000,
                    0xfec0_0010,
                ]) {
                    *r = read_volatile(a);
                }
                for a in [0xfee0_00b0u64, 0xfed8_0018, 0xb000_0004, 0xffff_f000] {
                    write_volatile(a, 0xffff_ffffu32);
                }
                say!(
                    "testguest: attack {name}: apic {:#x}, iommu {:#x}, ecam {:#x}, top {:#x}",
                    reads[0],
                    reads[1],
                    reads[2],
                    reads[3]
                );
            }
            Attack::ConsoleFlood => {
                for i in 0..5000 {
                    say!("flood {i}");
                }
                say!("testguest: attack {name}: 5000 lines printed");
            }
            Attack::BarMoves => bar_moves(name),
            Attack::MmioStraddle => mmio_straddle(name),
            Attack::MsixLowVector => msix_low_vector(name),
            Attack::Cr4Reserved => {
                let outcome =
                    probe!("mov {t}, cr4\n or {t}, 0x8000\n mov cr4, {t}", t = out(reg) _);
                say!("testguest: attack {name}: {outcome}");
            }
        }
    }
}

fn xsetbv(name: &str) {
    let xsave = core::arch::x86_64::__cpuid(1).ecx & (1 << 26) != 0;
    if !xsave {
        say!("testguest: attack {name}: skipped (no XSAVE)");
        return;
    }
    // SAFETY: sets CR4.OSXSAVE (bit 18), which CPUID allows; this guest uses no extended state.
    unsafe {
        asm!("mov {t}, cr4", "bts {t}, 18", "mov cr4, {t}", t = out(reg) _, options(nomem, nostack))
    };
    let supported = {
        let r = core::arch::x86_64::__cpuid_count(0xd, 0);
        u64::from(r.edx) << 32 | u64::from(r.eax)
    };
    let hidden = !supported & !(1 << 63) & (1u64 << 62 | 1 << 10);
    let bad = 3 | hidden;
    let refused =
        probe!("xsetbv", in("ecx") 0u32, in("eax") bad as u32, in("edx") (bad >> 32) as u32);
    let good = probe!("xsetbv", in("ecx") 0u32, in("eax") 3u32, in("edx") 0u32);
    say!("testguest: attack {name}: hidden bits {refused}, x87+sse {good}");
}

/// IOAPIC pin 0 (the PIT) with vector 4, then the PIT at about 1 kHz for a while.
fn ioapic_low_vector(name: &str) {
    const IOAPIC: u64 = 0xfec0_0000;
    let select = |reg: u32, value: u32| {
        write_volatile(IOAPIC, reg);
        write_volatile(IOAPIC + 0x10, value);
    };
    select(0x11, 0);
    select(0x10, 4);
    outb(0x43, 0x34);
    outb(0x40, 0xa9);
    outb(0x40, 0x04);
    spin_cycles(200_000_000);
    select(0x10, 1 << 16);
    say!("testguest: attack {name}: completed");
}

fn svm_msrs(name: &str, canary: u64) {
    let hsave = wrmsr(0xc001_0117, canary);
    let vm_cr = wrmsr(0xc001_0114, 1 << 4);
    let efer = {
        let (lo, hi): (u32, u32);
        // SAFETY: reads EFER (intercepted, answered by the hypervisor).
        unsafe {
            asm!("rdmsr", in("ecx") 0xc000_0080u32, out("eax") lo, out("edx") hi, options(nomem, nostack))
        };
        wrmsr(
            0xc000_0080,
            (u64::from(hi) << 32 | u64::from(lo)) & !(1 << 12),
        )
    };
    let syscfg = wrmsr(0xc001_0010, 1 << 23);
    let hwcr = wrmsr(0xc001_0015, 1 << 0);
    let apic_base = wrmsr(0x1b, 0xfee0_0000);
    let tsc = wrmsr(0x10, 0);
    say!("testguest: attack {name}: vm_hsave_pa {hsave}, vm_cr {vm_cr}, efer.svme {efer}, syscfg {syscfg}, hwcr {hwcr}, apic_base {apic_base}, tsc {tsc}");
}

/// BAR 0's size from the usual sizing dance (decoding off while all ones are in).
fn bar0_size(cfg: &mut Conf1, bar0: u64) -> u64 {
    let command = header::read_command(cfg, VF);
    header::write_command(cfg, VF, command - Command::MEMORY_SPACE);
    cfg.write32(VF, header::BAR0, u32::MAX);
    let mask = cfg.read32(VF, header::BAR0) & !0xf;
    cfg.write32(VF, header::BAR0, bar0 as u32);
    header::write_command(cfg, VF, command);
    u64::from(!mask) + 1
}

fn bar_moves(name: &str) {
    let Some(bar0) = find_vf() else {
        say!("testguest: attack {name}: no VF at 00:01.0");
        return;
    };
    let mut cfg = Conf1;
    const MOVES: u64 = 100_000;
    let mut last = bar0;
    for i in 0..MOVES {
        // A different 2 MiB region of [3 GiB + 256 MiB, 4 GiB - 256 MiB) each time.
        let to = 0xd000_0000 + (i * 0x9e37_79b9 % 1280) * (1 << 20) / 2 * 2 + (i % 4) * 0x4000;
        let to = to & !0x3fff;
        cfg.write32(VF, header::BAR0, to as u32);
        last = to;
    }
    cfg.write32(VF, header::BAR0, bar0 as u32);
    let old: u32 = read_volatile(last);
    let cap: u32 = read_volatile(bar0);
    say!("testguest: attack {name}: {MOVES} moves, old place reads {old:#x}, bar back at {bar0:#x} reads {cap:#x}");
}

fn mmio_straddle(name: &str) {
    let Some(bar0) = find_vf() else {
        say!("testguest: attack {name}: no VF at 00:01.0");
        return;
    };
    let mut cfg = Conf1;
    let size = bar0_size(&mut cfg, bar0);
    let command = header::read_command(&cfg, VF);
    header::write_command(&mut cfg, VF, command - Command::MEMORY_SPACE);
    let off_start: u32 = read_volatile(bar0);
    let off_end: u64 = read_volatile(bar0 + size - 4);
    header::write_command(&mut cfg, VF, command);
    let on_end: u64 = read_volatile(bar0 + size - 4);
    say!("testguest: attack {name}: bar0 {size:#x} bytes; decoding off: start reads {off_start:#x}, 8 bytes at end-4 read {off_end:#x}; decoding on: 8 bytes at end-4 read {on_end:#x}");
}

fn msix_low_vector(name: &str) {
    let Some(bar0) = find_vf() else {
        say!("testguest: attack {name}: no VF at 00:01.0");
        return;
    };
    let mut cfg = Conf1;
    let Some(cap) = pci::capability::find_capability(&cfg, VF, pci::capability::id::MSIX) else {
        say!("testguest: attack {name}: the VF has no MSI-X capability");
        return;
    };
    let table = cfg.read32(VF, cap + 4);
    if table & 7 != 0 {
        say!("testguest: attack {name}: MSI-X table not in BAR 0");
        return;
    }
    let entry = bar0 + u64::from(table & !7);
    write_volatile(entry, 0xfee0_0000u32);
    write_volatile(entry + 4, 0u32);
    write_volatile(entry + 8, 2u32);
    write_volatile(entry + 12, 0u32);
    let control = cfg.read32(VF, cap);
    cfg.write32(VF, cap, control | 1 << 31);
    // Mask it again and turn MSI-X off: the device stays usable for nothing else here.
    write_volatile(entry + 12, 1u32);
    cfg.write32(VF, cap, control & !(1 << 31));
    say!("testguest: attack {name}: completed");
}
