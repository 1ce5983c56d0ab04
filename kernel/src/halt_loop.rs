//! Whether a vCPU whose HLT is not intercepted (direct and avic modes) is halted for good: after
//! one of the hypervisor's NMI exits, with the guest's IF clear, the code at RIP must lead into a
//! HLT through nothing but CLI, NOP, PAUSE and direct jumps (`1: cli; hlt; jmp 1b`, Linux's
//! `for (;;) native_halt();`). Then the guest's own future is a HLT with interrupts off, which
//! only an NMI ends, whatever the bytes before RIP are.
//!
//! Looking back instead (the byte before RIP is F4h) cannot tell a HLT the NMI woke from the last
//! byte of any other instruction (`mov [rbp-0Ch], eax` ends in F4h too), and a vCPU wrongly
//! taken for halted was parked for good while its guest ran on: the RCU stall of a direct-mode
//! Linux guest (docs/evaluation.md). Decoding forward from RIP starts on an instruction boundary.

use insn::{Mode, MAX_INSN_LEN};

/// Instructions followed from RIP before giving up (a halt loop is two or three).
pub const MAX_STEPS: usize = 8;

/// True if the code at `rip` (in `mode`) runs into a HLT without changing anything but RIP, so
/// that a vCPU there with interrupts disabled halts again at once. `fetch` reads the guest's code
/// at an instruction pointer into the buffer and returns how many bytes it could read.
pub fn runs_into_hlt(
    mode: Mode,
    rip: u64,
    mut fetch: impl FnMut(u64, &mut [u8; MAX_INSN_LEN]) -> usize,
) -> bool {
    let (ip_mask, wide) = match mode {
        Mode::Long64 => (u64::MAX, true),
        Mode::Compat32 | Mode::Protected32 => (0xffff_ffff, true),
        Mode::Real16 => (0xffff, false),
    };
    let mut ip = rip & ip_mask;
    for _ in 0..MAX_STEPS {
        let mut b = [0u8; MAX_INSN_LEN];
        let n = fetch(ip, &mut b);
        let next = match (n, b[0], b[1]) {
            (1.., 0xf4, _) => return true,
            // CLI, NOP.
            (1.., 0xfa | 0x90, _) => ip.wrapping_add(1),
            // PAUSE, and NOP with an operand-size prefix.
            (2.., 0xf3 | 0x66, 0x90) => ip.wrapping_add(2),
            // JMP rel8.
            (2.., 0xeb, rel) => ip.wrapping_add(2).wrapping_add(i64::from(rel as i8) as u64),
            // JMP rel32 (rel16 in a 16-bit code segment).
            (5.., 0xe9, _) if wide => {
                let rel = i32::from_le_bytes([b[1], b[2], b[3], b[4]]);
                ip.wrapping_add(5).wrapping_add(i64::from(rel) as u64)
            }
            (3.., 0xe9, _) => {
                let rel = i16::from_le_bytes([b[1], b[2]]);
                ip.wrapping_add(3).wrapping_add(i64::from(rel) as u64)
            }
            _ => return false,
        };
        ip = next & ip_mask;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guest code `code` at address `base`; reads outside it fail.
    fn at(base: u64, code: &[u8]) -> impl FnMut(u64, &mut [u8; MAX_INSN_LEN]) -> usize + '_ {
        move |ip, out| {
            let Some(off) = ip.checked_sub(base).filter(|o| *o < code.len() as u64) else {
                return 0;
            };
            let rest = &code[off as usize..];
            let n = rest.len().min(MAX_INSN_LEN);
            out[..n].copy_from_slice(&rest[..n]);
            n
        }
    }

    #[test]
    fn halt_loops_are_found_from_the_instruction_after_hlt() {
        // 1: cli; hlt; jmp 1b -- the NMI exit leaves RIP at the JMP.
        let code = [0xfa, 0xf4, 0xeb, 0xfc];
        assert!(runs_into_hlt(Mode::Long64, 0x1002, at(0x1000, &code)));
        // 1: hlt; jmp 1b
        let code = [0xf4, 0xeb, 0xfd];
        assert!(runs_into_hlt(Mode::Long64, 0x1001, at(0x1000, &code)));
        // The same with a rel32 jump, NOPs and PAUSE on the way.
        let code = [
            0x90, 0xf4, 0xf3, 0x90, 0x66, 0x90, 0xe9, 0xf6, 0xff, 0xff, 0xff,
        ];
        assert!(runs_into_hlt(Mode::Long64, 0x1002, at(0x1000, &code)));
        // RIP right before the HLT.
        assert!(runs_into_hlt(
            Mode::Protected32,
            0x1000,
            at(0x1000, &[0xf4])
        ));
    }

    /// The false positive of looking back: a loop head right after an instruction ending in
    /// F4h (`mov al, 0F4h`), spinning with interrupts off, is not a halt.
    #[test]
    fn an_f4_byte_before_rip_is_no_halt() {
        // mov al, 0f4h; 2: rdtsc; cmp rax, rbx; jb 2b
        let code = [0xb0, 0xf4, 0x0f, 0x31, 0x48, 0x39, 0xd8, 0x72, 0xf9];
        assert!(!runs_into_hlt(Mode::Long64, 0x1002, at(0x1000, &code)));
        // mov [rbp-0Ch], eax; then anything but a halt.
        let code = [0x89, 0x45, 0xf4, 0x0f, 0x0b];
        assert!(!runs_into_hlt(Mode::Long64, 0x1003, at(0x1000, &code)));
    }

    #[test]
    fn bounded_and_careful() {
        // jmp $ spins for ever: given up after MAX_STEPS.
        assert!(!runs_into_hlt(
            Mode::Long64,
            0x1000,
            at(0x1000, &[0xeb, 0xfe])
        ));
        // Unreadable code, a truncated jump.
        assert!(!runs_into_hlt(Mode::Long64, 0x2000, at(0x1000, &[0xf4])));
        assert!(!runs_into_hlt(
            Mode::Long64,
            0x1000,
            at(0x1000, &[0xe9, 0, 0])
        ));
        // STI would enable interrupts: not a halt for good.
        assert!(!runs_into_hlt(
            Mode::Long64,
            0x1000,
            at(0x1000, &[0xfb, 0xf4])
        ));
    }

    #[test]
    fn sixteen_bit_code_wraps_and_takes_rel16() {
        // At 0xfffe: jmp +1 (rel16) wraps to 0x0002, where the HLT is.
        let mut mem = [0u8; 0x1_0000];
        mem[0xfffe..].copy_from_slice(&[0xe9, 0x00]);
        let fetch = |ip: u64, out: &mut [u8; MAX_INSN_LEN]| {
            let ip = ip as usize;
            let n = (mem.len() - ip).min(MAX_INSN_LEN);
            out[..n].copy_from_slice(&mem[ip..ip + n]);
            n
        };
        // Truncated at the segment's end: two bytes of a three-byte jump.
        assert!(!runs_into_hlt(Mode::Real16, 0xfffe, fetch));
        let mut mem = [0u8; 0x1_0000];
        mem[0xfff0..0xfff3].copy_from_slice(&[0xe9, 0x0f, 0x00]);
        mem[0x0002] = 0xf4;
        let fetch = |ip: u64, out: &mut [u8; MAX_INSN_LEN]| {
            let ip = ip as usize;
            let n = (mem.len() - ip).min(MAX_INSN_LEN);
            out[..n].copy_from_slice(&mem[ip..ip + n]);
            n
        };
        assert!(runs_into_hlt(Mode::Real16, 0xfff0, fetch));
    }
}
