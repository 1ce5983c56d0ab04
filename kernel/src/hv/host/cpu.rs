//! Per-core descriptor tables: each core gets its own GDT and TSS (the TSS carries the core's
//! interrupt stacks for NMI, double fault and machine check), and then the shared IDT
//! (`idt`).

use core::cell::UnsafeCell;
use didvisor::cpuset::MAX_CPUS;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

pub const KERNEL_CODE: u16 = 0x08;
/// IST slots (1-based, as in the gate's IST field).
pub const IST_NMI: u8 = 1;
pub const IST_DOUBLE_FAULT: u8 = 2;
pub const IST_MACHINE_CHECK: u8 = 3;
const IST_STACK_SIZE: u64 = 16 * 1024;

struct CpuTables {
    gdt: GlobalDescriptorTable,
    tss: TaskStateSegment,
}

/// One slot per core; a core only ever touches its own slot, once, while it comes up.
struct Slots(UnsafeCell<[Option<CpuTables>; MAX_CPUS]>);
// SAFETY: each slot is written by exactly one core (its owner, indexed by its own cpu index) before
// it is used, and never written again.
unsafe impl Sync for Slots {}

static TABLES: Slots = Slots(UnsafeCell::new([const { None }; MAX_CPUS]));

/// Sets up and loads this core's GDT and TSS (the caller loads the IDT next, whose gates name the
/// code selector and IST slots defined here). `cpu` is this core's logical index.
pub fn init_this_core(cpu: usize) {
    let mut tss = TaskStateSegment::new();
    for ist in [IST_NMI, IST_DOUBLE_FAULT, IST_MACHINE_CHECK] {
        let stack = super::memory::alloc_zeroed(IST_STACK_SIZE, 4096);
        tss.interrupt_stack_table[usize::from(ist - 1)] = VirtAddr::new(stack + IST_STACK_SIZE);
    }
    // SAFETY: slot `cpu` belongs to this core only (see `Slots`) and is written once, here.
    let slot = unsafe { &mut (*TABLES.0.get())[cpu] };
    let tables = slot.insert(CpuTables {
        gdt: GlobalDescriptorTable::new(),
        tss,
    });
    // SAFETY: the slot lives in a static and is never moved or written again, so the TSS reference
    // the descriptor keeps is valid forever.
    let tss_ref: &'static TaskStateSegment = unsafe { &*(&tables.tss as *const TaskStateSegment) };
    let code = tables.gdt.append(Descriptor::kernel_code_segment());
    let data = tables.gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = tables.gdt.append(Descriptor::tss_segment(tss_ref));
    debug_assert_eq!(code.0, KERNEL_CODE);
    // SAFETY: as above, the GDT is in a static slot that never moves.
    let gdt: &'static GlobalDescriptorTable =
        unsafe { &*(&tables.gdt as *const GlobalDescriptorTable) };
    gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded.
    unsafe {
        CS::set_reg(code);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        load_tss(tss_sel);
    }
}

/// Lets the host interrupts pending on this core be taken (their handlers only EOI), with
/// interrupts enabled for exactly one instruction.
pub fn take_pending_interrupts() {
    // SAFETY: STI takes effect after the following instruction, so interrupts are recognised at
    // the NOP and nowhere else; the host IDT has handlers for every vector we send ourselves, and
    // the kernel is built without a red zone, so an interrupt frame on this stack is harmless.
    unsafe { core::arch::asm!("sti", "nop", "cli") };
}
