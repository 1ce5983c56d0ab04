use core::arch::{asm, global_asm};
use core::fmt::{self, Write};

use testguest::cmdline::{self, Ending};

/// Bochs/QEMU-style debug console port: one byte per OUT.
const DEBUG_PORT: u16 = 0xe9;
/// ACPI PM1a control block of the virtual platform (FADT); SLP_EN is bit 13, SLP_TYP bits 12:10.
const PM1A_CNT: u16 = 0x604;
const SLP_EN: u16 = 1 << 13;
const SLP_TYP_S5: u16 = 5 << 10;
/// An address far outside any test guest's RAM (but inside its 4 GiB identity map).
const FAR_AWAY: u64 = 0xc000_0000;

global_asm!(
    r#"
.section .text.entry, "ax"
.global _start
_start:
    lea rsp, [rip + stack_top]
    call guest_main
1:  cli
    hlt
    jmp 1b

.section .bss
.balign 16
stack:
    .skip 65536
stack_top:
"#
);

pub(crate) struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: port output to the hypervisor's debug console; no memory is touched.
            unsafe { asm!("out dx, al", in("dx") DEBUG_PORT, in("al") b, options(nomem, nostack)) };
        }
        Ok(())
    }
}

macro_rules! say {
    ($($arg:tt)*) => {{ let _ = writeln!(Console, $($arg)*); }};
}

fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    // Under the hypervisor every CPUID exits and is answered by its policy.
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    (r.eax, r.ebx, r.ecx, r.edx)
}

fn as_text(words: &[u32], out: &mut [u8; 12]) -> usize {
    let mut n = 0;
    for w in words {
        for b in w.to_le_bytes() {
            if b.is_ascii_graphic() {
                out[n] = b;
                n += 1;
            }
        }
    }
    n
}

fn check_cpuid() {
    let (_, b, c, d) = cpuid(0);
    let mut vendor = [0u8; 12];
    let n = as_text(&[b, d, c], &mut vendor);
    let (_, _, ecx1, _) = cpuid(1);
    let (max_hv, hb, hc, hd) = cpuid(0x4000_0000);
    let mut sig = [0u8; 12];
    let m = as_text(&[hb, hc, hd], &mut sig);
    let (_, _, ecx81, _) = cpuid(0x8000_0001);
    say!(
        "testguest: cpuid: vendor {} hypervisor-bit {} signature \"{}\" max-leaf {:#x} svm {}",
        core::str::from_utf8(&vendor[..n]).unwrap_or("?"),
        if ecx1 & (1 << 31) != 0 {
            "set"
        } else {
            "clear"
        },
        core::str::from_utf8(&sig[..m]).unwrap_or("?"),
        max_hv,
        if ecx81 & (1 << 2) != 0 {
            "visible"
        } else {
            "hidden"
        }
    );
}

fn check_ram(ram: u64) {
    // A 1 MiB block below the top of RAM, clear of the image (1 MiB..) and its stack.
    let start = (ram - (2 << 20)) as *mut u64;
    let words = (1 << 20) / 8;
    let mut sum: u64 = 0;
    for i in 0..words {
        let v = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // SAFETY: the block lies inside this guest's RAM (identity-mapped) and nothing else uses it.
        unsafe { start.add(i).write_volatile(v) };
    }
    for i in 0..words {
        // SAFETY: as above.
        sum = sum.wrapping_add(unsafe { start.add(i).read_volatile() });
    }
    let expect = (0..words as u64).fold(0u64, |s, i| {
        s.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    });
    say!(
        "testguest: ram check {} (sum {:#x})",
        if sum == expect { "ok" } else { "FAILED" },
        sum
    );
}

fn read_u32(addr: u64) -> u32 {
    let v: u32;
    // SAFETY: a deliberate load from an address that may lie outside this guest's RAM: the
    // hypervisor emulates it (it never reaches host memory).
    unsafe { asm!("mov {v:e}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack)) };
    v
}

fn write_u32(addr: u64, v: u32) {
    // SAFETY: a deliberate store outside this guest's RAM, as above.
    unsafe { asm!("mov [{a}], {v:e}", a = in(reg) addr, v = in(reg) v, options(nostack)) };
}

fn touch_outside(ram: u64) {
    let past_end = read_u32(ram + 0x1000);
    say!(
        "testguest: read past end of ram at {:#x} -> {:#x}",
        ram + 0x1000,
        past_end
    );
    write_u32(FAR_AWAY, 0x1234_5678);
    let back = read_u32(FAR_AWAY);
    say!(
        "testguest: wrote {:#x} at {:#x}, read back {:#x}",
        0x1234_5678,
        FAR_AWAY,
        back
    );
}

pub(crate) fn power_off() -> ! {
    say!("testguest: done, requesting power-off");
    // SAFETY: port output to the virtual ACPI PM1a control register.
    unsafe {
        asm!("out dx, ax", in("dx") PM1A_CNT, in("ax") SLP_EN | SLP_TYP_S5, options(nomem, nostack))
    };
    say!("testguest: FAILED: still running after power-off");
    halt()
}

/// The NUL-terminated command line the hypervisor placed at `addr` (0: none).
fn cmdline_at(addr: u64) -> &'static str {
    if addr == 0 {
        return "";
    }
    let ptr = addr as *const u8;
    let mut len = 0;
    // SAFETY: the hypervisor wrote a NUL-terminated string inside this guest's RAM; stop at 1 KiB.
    while len < 1024 && unsafe { ptr.add(len).read_volatile() } != 0 {
        len += 1;
    }
    // SAFETY: as above, `len` bytes are readable.
    let bytes = unsafe { core::slice::from_raw_parts(ptr, len) };
    core::str::from_utf8(bytes).unwrap_or("")
}

/// An exception with no IDT to deliver it through: #UD, then #GP on the empty IDT, then a double
/// fault, then shutdown.
fn triple_fault() -> ! {
    say!("testguest: ending with a triple fault");
    let empty = [0u16; 5];
    // SAFETY: deliberately loads an empty IDT and raises #UD: the processor shuts down, which the
    // hypervisor intercepts. Nothing after this runs.
    unsafe { asm!("lidt [{}]", "ud2", in(reg) empty.as_ptr(), options(noreturn)) }
}

fn reset() -> ! {
    say!("testguest: ending with a reset request");
    // SAFETY: the reset control register (port 0xCF9) with a hard reset request (0x06).
    unsafe { asm!("out dx, al", in("dx") 0xcf9u16, in("al") 0x06u8, options(nomem, nostack)) };
    say!("testguest: FAILED: still running after reset");
    halt()
}

/// What a boot leaves in the last word of RAM (nothing else there is used).
const BOOT_MARKER: u64 = 0xb007_ed0b_5e55_1011;

/// Before a reset or a triple fault (which the hypervisor may answer with a restart): the last
/// word of RAM must not hold the marker of an earlier boot — a restart clears RAM — and then
/// gets this boot's.
fn boot_marker(ram: u64) {
    let at = (ram - 8) as *mut u64;
    // SAFETY: the last word of this guest's RAM, identity-mapped; the image, stack and page
    // tables lie far below it.
    let found = unsafe { at.read_volatile() };
    if found == BOOT_MARKER {
        say!("testguest: FAILED: ram holds the marker of an earlier boot");
    } else {
        say!("testguest: ram is fresh: no marker of an earlier boot");
    }
    // SAFETY: as above.
    unsafe { at.write_volatile(BOOT_MARKER) };
}

fn halt() -> ! {
    say!("testguest: halting with interrupts disabled");
    loop {
        // SAFETY: halting with interrupts off; only an NMI could wake this vCPU.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}

#[no_mangle]
extern "C" fn guest_main(ram: u64, vcpu: u64, cmdline: u64) -> ! {
    let cmdline = cmdline_at(cmdline);
    say!(
        "testguest: hello from vcpu {}, {} MiB of ram",
        vcpu,
        ram >> 20
    );
    let command = match cmdline::parse(cmdline) {
        Ok(c) => c,
        Err(e) => {
            say!("testguest: FAILED: {} in command line \"{}\"", e, cmdline);
            halt()
        }
    };
    if command.attacks.iter().next().is_some() {
        let canary = command.canaries.as_slice().first().copied().unwrap_or(0);
        crate::attack::run(command.attacks.iter(), canary);
        say!("testguest: attacks done");
    }
    if let Some(f) = command.fuzz {
        crate::fuzz::run(f, ram);
    }
    if let Some(d) = command.deliver {
        crate::deliver::run(d, ram);
    }
    match command.ending {
        Ending::TripleFault => {
            boot_marker(ram);
            triple_fault()
        }
        Ending::Reset => {
            boot_marker(ram);
            reset()
        }
        Ending::Halt => halt(),
        Ending::NvmeDma => crate::nvme::run(ram, command.canaries.as_slice()),
        Ending::VirtioBad => crate::virtio_bad::run(ram),
        Ending::PowerOff => {}
    }
    check_cpuid();
    check_ram(ram);
    touch_outside(ram);
    power_off()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    say!("testguest: PANIC: {}", info);
    loop {
        // SAFETY: as in power_off.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}
