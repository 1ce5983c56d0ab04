//! `fuzz=SEED`: the fuzzing guest carries out the seeded action stream of
//! `testguest::fuzz_plan`, every action under the trap handlers (`traps.rs`), and prints what it
//! did and which exceptions it took. The hypervisor must survive it and the guests beside it must
//! not notice; that is the test's to judge.

use core::arch::asm;
use core::fmt::Write;

use pci::ConfigAccess;
use testguest::cmdline::Fuzz;
use testguest::fuzz_plan::{next_action, Action, Rng, Special, KINDS};

use crate::guest::Console;
use crate::nvme::{Conf1, VF};
use crate::traps::{probe, Outcome};

macro_rules! say {
    ($($arg:tt)*) => {{ let _ = writeln!(Console, $($arg)*); }};
}

fn special(which: Special, rax: u64, rcx: u64, rdx: u64) -> Outcome {
    match which {
        Special::Vmrun => probe!("vmrun", in("rax") rax),
        Special::Vmmcall => probe!("vmmcall", inout("rax") rax => _, in("rcx") rcx, in("rdx") rdx),
        Special::Vmload => probe!("vmload", in("rax") rax),
        Special::Vmsave => probe!("vmsave", in("rax") rax),
        Special::Clgi => probe!("clgi"),
        Special::Stgi => probe!("stgi"),
        Special::Skinit => probe!("skinit", in("rax") rax),
        Special::Invlpga => probe!("invlpga", in("rax") rax, in("ecx") rcx as u32),
        Special::Wbinvd => probe!("wbinvd"),
        Special::Invd => probe!("invd"),
        Special::Xsetbv => probe!(
            "xsetbv",
            in("ecx") rcx as u32 & 1,
            in("eax") rax as u32,
            in("edx") rdx as u32
        ),
        Special::Rdpru => probe!("rdpru", in("ecx") rcx as u32 & 1, out("eax") _, out("edx") _),
        Special::Monitor => probe!("monitor", in("rax") rax, in("ecx") 0u32, in("edx") 0u32),
        Special::Mwait => probe!("mwait", in("eax") rax as u32, in("ecx") 0u32),
        Special::Rdtscp => probe!("rdtscp", out("eax") _, out("edx") _, out("ecx") _),
        Special::Rdpmc => probe!("rdpmc", in("ecx") rcx as u32, out("eax") _, out("edx") _),
    }
}

fn invalid(i: usize) -> Outcome {
    match i {
        0 => probe!("ud2"),
        1 => probe!(".byte 0x0f, 0xff, 0xc0"), // UD0
        2 => probe!(".byte 0xd6"),             // SALC: invalid in 64-bit mode
        3 => probe!(".byte 0x06"),             // PUSH ES: invalid in 64-bit mode
        4 => probe!(".byte 0x0f, 0x0b"),       // UD2 again, as bytes
        _ => probe!(".byte 0x62, 0xff"),       // BOUND: invalid in 64-bit mode
    }
}

fn load(gpa: u64, size: u8) -> Outcome {
    match size {
        1 => probe!("mov {x:l}, byte ptr [{a}]", a = in(reg) gpa, x = out(reg) _),
        2 => probe!("mov {x:x}, word ptr [{a}]", a = in(reg) gpa, x = out(reg) _),
        4 => probe!("mov {x:e}, dword ptr [{a}]", a = in(reg) gpa, x = out(reg) _),
        _ => probe!("mov {x}, qword ptr [{a}]", a = in(reg) gpa, x = out(reg) _),
    }
}

fn store(gpa: u64, size: u8, value: u64) -> Outcome {
    match size {
        1 => probe!("mov byte ptr [{a}], {x:l}", a = in(reg) gpa, x = in(reg) value),
        2 => probe!("mov word ptr [{a}], {x:x}", a = in(reg) gpa, x = in(reg) value),
        4 => probe!("mov dword ptr [{a}], {x:e}", a = in(reg) gpa, x = in(reg) value),
        _ => probe!("mov qword ptr [{a}], {x}", a = in(reg) gpa, x = in(reg) value),
    }
}

fn act(a: Action) -> Outcome {
    match a {
        Action::MsrRead(msr) => probe!("rdmsr", in("ecx") msr, out("eax") _, out("edx") _),
        Action::MsrWrite(msr, v) => {
            probe!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32)
        }
        Action::PortIn { port, size } => match size {
            1 => probe!("in al, dx", in("dx") port, out("al") _),
            2 => probe!("in ax, dx", in("dx") port, out("ax") _),
            _ => probe!("in eax, dx", in("dx") port, out("eax") _),
        },
        Action::PortOut { port, size, value } => match size {
            1 => probe!("out dx, al", in("dx") port, in("al") value as u8),
            2 => probe!("out dx, ax", in("dx") port, in("ax") value as u16),
            _ => probe!("out dx, eax", in("dx") port, in("eax") value),
        },
        Action::Cpuid { leaf, subleaf } => probe!(
            "mov {s}, rbx\n cpuid\n mov rbx, {s}",
            s = out(reg) _,
            inout("eax") leaf => _,
            inout("ecx") subleaf => _,
            out("edx") _
        ),
        Action::Special {
            which,
            rax,
            rcx,
            rdx,
        } => special(which, rax, rcx, rdx),
        Action::Invalid(i) => invalid(i),
        Action::Load { gpa, size } => load(gpa, size),
        Action::Store { gpa, size, value } => store(gpa, size, value),
        Action::VfConfigRead(offset) => {
            let _ = Conf1.read32(VF, u16::from(offset));
            Outcome(crate::traps::NONE)
        }
        Action::VfConfigWrite(offset, value) => {
            Conf1.write32(VF, u16::from(offset), value);
            Outcome(crate::traps::NONE)
        }
    }
}

/// Runs the stream and prints the counts: one line of actions per kind, one of exceptions.
pub fn run(f: Fuzz, ram: u64) {
    crate::traps::install();
    let mut rng = Rng::new(f.seed);
    let mut kinds = [0u32; KINDS.len()];
    let mut vectors = [0u32; 32];
    for _ in 0..f.actions {
        let a = next_action(&mut rng, ram);
        kinds[a.kind()] += 1;
        if let Some(v) = act(a).vector() {
            vectors[usize::from(v) % 32] += 1;
        }
    }
    // SAFETY: interrupts stay off (a random write may have left a timer or an IPI pending).
    unsafe { asm!("cli", options(nomem, nostack)) };
    say!("testguest: fuzz: seed {:#x}: {} actions", f.seed, f.actions);
    // Two lines of counts: the guest's console lines hold 160 characters.
    for half in [0..KINDS.len() / 2, KINDS.len() / 2..KINDS.len()] {
        let _ = write!(Console, "testguest: fuzz: kinds:");
        for i in half {
            let _ = write!(Console, " {} {}", KINDS[i], kinds[i]);
        }
        say!("");
    }
    let _ = write!(Console, "testguest: fuzz: exceptions:");
    for (v, n) in vectors.iter().enumerate().filter(|(_, &n)| n > 0) {
        let _ = write!(Console, " {v}:{n}");
    }
    say!("");
    say!("testguest: fuzz: done");
}
