use super::admin::{
    create_io_cq, create_io_sq, identify, namespace_attachment, opcode, virtualization_management,
    AttachSelect,
};
use super::entry::{sct, COMPLETION_ENTRY_SIZE};
use super::fake::{Fake, BUFFER, CQ, SQ};
use super::identify::{
    ControllerIdentity, ControllerList, PrimaryControllerCapabilities, SecondaryControllerEntry,
    SecondaryControllerList, IDENTIFY_SIZE,
};
use super::registers::{self, cc, cq_head_doorbell, sq_tail_doorbell, Cap};
use super::*;

// ---- registers ----

#[test]
fn doorbell_offsets() {
    assert_eq!(sq_tail_doorbell(0, 0), Some(0x1000));
    assert_eq!(cq_head_doorbell(0, 0), Some(0x1004));
    assert_eq!(sq_tail_doorbell(1, 0), Some(0x1008));
    assert_eq!(cq_head_doorbell(1, 0), Some(0x100C));
    // DSTRD 2: 16-byte stride.
    assert_eq!(sq_tail_doorbell(0, 2), Some(0x1000));
    assert_eq!(cq_head_doorbell(0, 2), Some(0x1010));
    assert_eq!(sq_tail_doorbell(3, 2), Some(0x1060));
    assert_eq!(cq_head_doorbell(0, 15), Some(0x1000 + (4 << 15)));
    assert_eq!(sq_tail_doorbell(0xFFFF, 15), None);
    assert_eq!(sq_tail_doorbell(0, 16), None);
}

#[test]
fn cap_fields() {
    // MQES 0x7FF, CQR, AMS 01, TO 0x1E, DSTRD 3, NSSRS, CSS 0x41, MPSMIN 1, MPSMAX 4.
    let cap = Cap(0x7FF
        | 1 << 16
        | 1 << 17
        | 0x1E << 24
        | 3 << 32
        | 1 << 36
        | 0x41 << 37
        | 1 << 48
        | 4 << 52);
    assert_eq!(cap.mqes(), 0x7FF);
    assert_eq!(cap.max_queue_entries(), 0x800);
    assert!(cap.cqr());
    assert_eq!(cap.timeout(), 0x1E);
    assert_eq!(cap.dstrd(), 3);
    assert!(cap.nssrs());
    assert_eq!(cap.css(), 0x41);
    assert_eq!(
        cap.css() & Cap::CSS_IO_COMMAND_SETS,
        Cap::CSS_IO_COMMAND_SETS
    );
    assert_eq!((cap.mpsmin(), cap.mpsmax()), (1, 4));
    let max = Cap(u64::MAX);
    assert_eq!((max.dstrd(), max.mpsmin(), max.css()), (15, 15, 0xFF));
}

#[test]
fn cc_and_aqa_values() {
    // EN, CSS 000, MPS 0, AMS 0, SHN 0, IOSQES 6, IOCQES 4.
    assert_eq!(cc::enable(cc::CSS_NVM), 0x0046_0001);
    assert_eq!(cc::enable(cc::CSS_ALL_IO_COMMAND_SETS), 0x0046_0061);
    assert_eq!(cc::enable(cc::CSS_ADMIN_ONLY), 0x0046_0071);
    assert_eq!(registers::aqa(32, 16), 0x000F_001F);
    assert_eq!(registers::aqa(4096, 4096), 0x0FFF_0FFF);
    assert_eq!(registers::aqa(0, 0), 0);
    assert_eq!(
        (
            registers::CC,
            registers::CSTS,
            registers::AQA,
            registers::ASQ,
            registers::ACQ
        ),
        (0x14, 0x1C, 0x24, 0x28, 0x30)
    );
}

// ---- entries and status ----

#[test]
fn submission_entry_byte_layout() {
    let e = SubmissionEntry {
        cdw0: 0x0102_0304,
        nsid: 0x0506_0708,
        cdw2: 0x090A_0B0C,
        cdw3: 0x0D0E_0F10,
        mptr: 0x1112_1314_1516_1718,
        prp1: 0x2122_2324_2526_2728,
        prp2: 0x3132_3334_3536_3738,
        cdw10: 0x4142_4344,
        cdw11: 0x4546_4748,
        cdw12: 0x494A_4B4C,
        cdw13: 0x4D4E_4F50,
        cdw14: 0x5152_5354,
        cdw15: 0x5556_5758,
    };
    let b = e.to_bytes();
    assert_eq!(b[0..4], [0x04, 0x03, 0x02, 0x01]);
    assert_eq!(b[4], 0x08);
    assert_eq!(b[16], 0x18);
    assert_eq!(b[23], 0x11);
    assert_eq!(b[24], 0x28, "PRP1 at byte 24");
    assert_eq!(b[32], 0x38, "PRP2 at byte 32");
    assert_eq!(b[40], 0x44, "CDW10 at byte 40");
    assert_eq!(b[60..64], [0x58, 0x57, 0x56, 0x55]);
    assert_eq!(SubmissionEntry::from_bytes(&b), e);
    let mut c = SubmissionEntry::new(0x1C);
    c.set_cid(0xBEEF);
    assert_eq!((c.opcode(), c.cid(), c.cdw0), (0x1C, 0xBEEF, 0xBEEF_001C));
}

#[test]
fn completion_entry_and_status_decode() {
    // DW0 7, SQHD 3, SQID 0, CID 0x1234, status: DNR, SCT 1, SC 0x20, phase 1.
    let mut b = [0u8; COMPLETION_ENTRY_SIZE];
    b[0] = 7;
    b[8] = 3;
    b[12..14].copy_from_slice(&0x1234u16.to_le_bytes());
    b[14..16].copy_from_slice(&0x8241u16.to_le_bytes());
    let c = CompletionEntry::from_bytes(&b);
    assert_eq!((c.dw0, c.sq_head, c.sq_id, c.cid), (7, 3, 0, 0x1234));
    assert!(c.phase());
    let s = c.status();
    assert_eq!(
        (s.sct(), s.sc(), s.dnr(), s.more(), s.crd()),
        (1, 0x20, true, false, 0)
    );
    assert!(!s.is_success());
    assert_eq!(
        s.to_string(),
        "invalid secondary controller state (sct 1, sc 0x20, dnr)"
    );
    assert_eq!(c.to_bytes(), b);
    // Success with the phase bit clear.
    b[14..16].copy_from_slice(&0u16.to_le_bytes());
    let c = CompletionEntry::from_bytes(&b);
    assert!(!c.phase() && c.status().is_success());
    assert_eq!(
        c.status().to_string(),
        "successful completion (sct 0, sc 0x00)"
    );
}

#[test]
fn status_display_covers_types_and_flags() {
    assert_eq!(Status::new(sct::GENERIC, 0x02), Status(0x0002));
    assert_eq!(
        Status::new(sct::GENERIC, 0x02).to_string(),
        "invalid field in command (sct 0, sc 0x02)"
    );
    assert_eq!(
        Status(Status::new(sct::COMMAND_SPECIFIC, 0x1A).0 | 1 << 13 | 1 << 14).to_string(),
        "namespace not attached (sct 1, sc 0x1a, more, dnr)"
    );
    assert_eq!(
        Status::new(sct::MEDIA_AND_DATA_INTEGRITY, 0x81).to_string(),
        "unrecovered read error (sct 2, sc 0x81)"
    );
    assert_eq!(
        Status::new(sct::VENDOR_SPECIFIC, 0xC0).to_string(),
        "unknown vendor specific status (sct 7, sc 0xc0)"
    );
    assert_eq!(
        Status::new(5, 0).to_string(),
        "unknown reserved type status (sct 5, sc 0x00)"
    );
    assert_eq!(Status(0x0800).crd(), 1);
    assert_eq!(Status(0x1800).crd(), 3);
    // Every value decodes without panicking.
    for v in 0..=0x7FFFu16 {
        let _ = Status(v).to_string();
    }
}

// ---- admin command encoders ----

#[test]
fn identify_encodings() {
    let e = identify(Cns::SecondaryControllers, 0, 0x0005, 0x1234_5000);
    assert_eq!(e.opcode(), opcode::IDENTIFY);
    assert_eq!(e.cdw0, 0x06);
    assert_eq!(e.cdw10, 0x0005_0015, "CNTID 31:16, CNS 7:0");
    assert_eq!((e.prp1, e.prp2, e.nsid, e.cdw11), (0x1234_5000, 0, 0, 0));
    assert_eq!(identify(Cns::Controller, 0, 0, 0).cdw10, 0x01);
    let ns = identify(Cns::Namespace, 7, 0, 0);
    assert_eq!((ns.cdw10, ns.nsid), (0x00, 7));
    assert_eq!(
        identify(Cns::PrimaryControllerCapabilities, 0, 0x41, 0).cdw10,
        0x0041_0014
    );
    assert_eq!(identify(Cns::NamespaceControllers, 1, 0, 0).cdw10, 0x12);
    assert_eq!(identify(Cns::SubsystemControllers, 0, 0, 0).cdw10, 0x13);
}

#[test]
fn create_queue_encoders() {
    // Create I/O CQ: opcode 05h, QSIZE 63 (0's based) in CDW10 31:16, QID 1, PC set, IEN clear.
    let cq = create_io_cq(1, 64, 0x10_5000);
    assert_eq!(cq.cdw0, 0x05);
    assert_eq!(cq.cdw10, 0x003F_0001);
    assert_eq!(cq.cdw11, 0x0000_0001);
    assert_eq!(cq.prp1, 0x10_5000);
    assert_eq!((cq.nsid, cq.prp2, cq.cdw12), (0, 0, 0));
    // Create I/O SQ: opcode 01h, CQID 1 in CDW11 31:16, PC set, priority 0.
    let sq = create_io_sq(1, 64, 0x10_4000, 1);
    assert_eq!(sq.cdw0, 0x01);
    assert_eq!(sq.cdw10, 0x003F_0001);
    assert_eq!(sq.cdw11, 0x0001_0001);
    assert_eq!(sq.prp1, 0x10_4000);
}

#[test]
fn namespace_attachment_encoding() {
    let a = namespace_attachment(AttachSelect::Attach, 1, 0x8000);
    assert_eq!((a.opcode(), a.nsid, a.cdw10, a.prp1), (0x15, 1, 0, 0x8000));
    let d = namespace_attachment(AttachSelect::Detach, 2, 0x8000);
    assert_eq!((d.nsid, d.cdw10), (2, 1));
    let mut page = [0xFFu8; IDENTIFY_SIZE];
    ControllerList::encode(&[0x0002, 0x0103], &mut page).unwrap();
    assert_eq!(page[0..6], [2, 0, 0x02, 0x00, 0x03, 0x01]);
    assert!(page[6..].iter().all(|&b| b == 0));
    assert_eq!(
        ControllerList::decode(&page).collect::<Vec<_>>(),
        [2, 0x103]
    );
    assert_eq!(ControllerList::encode(&[0; 2048], &mut page), None);
    // A count beyond the page is clamped.
    page[0..2].copy_from_slice(&0xFFFFu16.to_le_bytes());
    assert_eq!(ControllerList::decode(&page).count(), 2047);
}

#[test]
fn virtualization_management_encodings() {
    let assign_vq =
        virtualization_management(VmAction::SecondaryAssign, ResourceType::VirtualQueue, 2, 4);
    assert_eq!(assign_vq.opcode(), 0x1C);
    assert_eq!(
        assign_vq.cdw10, 0x0002_0008,
        "CNTLID 31:16, RT 10:8 = 0, ACT 3:0 = 8"
    );
    assert_eq!(assign_vq.cdw11, 4, "NR 15:0");
    assert_eq!((assign_vq.nsid, assign_vq.prp1), (0, 0));
    let assign_vi = virtualization_management(
        VmAction::SecondaryAssign,
        ResourceType::VirtualInterrupt,
        2,
        1,
    );
    assert_eq!((assign_vi.cdw10, assign_vi.cdw11), (0x0002_0108, 1));
    let online = virtualization_management(
        VmAction::SecondaryOnline,
        ResourceType::VirtualQueue,
        0x1234,
        0,
    );
    assert_eq!(online.cdw10, 0x1234_0009);
    let offline =
        virtualization_management(VmAction::SecondaryOffline, ResourceType::VirtualQueue, 3, 0);
    assert_eq!(offline.cdw10, 0x0003_0007);
    let primary = virtualization_management(
        VmAction::PrimaryFlexibleAllocation,
        ResourceType::VirtualInterrupt,
        1,
        0,
    );
    assert_eq!(primary.cdw10, 0x0001_0101);
}

#[test]
fn admin_command_as_data() {
    let attach = AdminCommand::AttachNamespace {
        nsid: 1,
        controller: 3,
    };
    assert_eq!(attach.direction(), DataDirection::ToController);
    assert_eq!(
        attach.encode(BUFFER),
        namespace_attachment(AttachSelect::Attach, 1, BUFFER)
    );
    let mut page = [0u8; 4096];
    attach.fill_buffer(&mut page);
    assert_eq!(page[0..4], [1, 0, 3, 0]);
    let id = AdminCommand::Identify {
        cns: Cns::SecondaryControllers,
        nsid: 0,
        cntid: 0,
    };
    assert_eq!(id.direction(), DataDirection::FromController);
    assert_eq!(id.encode(BUFFER).prp1, BUFFER);
    let vm = AdminCommand::VirtualizationManagement {
        action: VmAction::SecondaryOnline,
        resource: ResourceType::VirtualQueue,
        cntlid: 2,
        count: 0,
    };
    assert_eq!(vm.direction(), DataDirection::None);
    assert_eq!(vm.encode(BUFFER).prp1, 0, "no buffer");
}

// ---- identify data structures ----

fn secondary(scid: u16, vfn: u16, online: bool) -> SecondaryControllerEntry {
    SecondaryControllerEntry {
        scid,
        pcid: 0,
        scs: u8::from(online),
        vfn,
        ..Default::default()
    }
}

#[test]
fn secondary_controller_list_from_bytes() {
    // Built byte by byte at the spec's offsets: header 32 bytes, entries of 32.
    let mut page = [0u8; IDENTIFY_SIZE];
    page[0] = 2;
    let e1 = 32;
    page[e1..e1 + 2].copy_from_slice(&0x0001u16.to_le_bytes()); // SCID
    page[e1 + 2..e1 + 4].copy_from_slice(&0x0000u16.to_le_bytes()); // PCID
    page[e1 + 4] = 0x01; // SCS online
    page[e1 + 8..e1 + 10].copy_from_slice(&1u16.to_le_bytes()); // VFN
    page[e1 + 10..e1 + 12].copy_from_slice(&2u16.to_le_bytes()); // NVQ
    page[e1 + 12..e1 + 14].copy_from_slice(&1u16.to_le_bytes()); // NVI
    let e2 = 64;
    page[e2..e2 + 2].copy_from_slice(&0x0002u16.to_le_bytes());
    page[e2 + 8..e2 + 10].copy_from_slice(&2u16.to_le_bytes());
    let list = SecondaryControllerList::new(&page);
    assert_eq!(list.len(), 2);
    let a = list.get(0).unwrap();
    assert_eq!((a.scid, a.pcid, a.vfn, a.nvq, a.nvi), (1, 0, 1, 2, 1));
    assert!(a.online());
    let b = list.by_vfn(2).unwrap();
    assert_eq!((b.scid, b.online(), b.nvq), (2, false, 0));
    assert_eq!(list.by_vfn(3), None);
    assert_eq!(list.by_vfn(0), None);
    assert_eq!(list.get(2), None);
    // Round trip through the encoder.
    let mut again = [0u8; IDENTIFY_SIZE];
    SecondaryControllerList::encode(&[a, b], &mut again).unwrap();
    assert_eq!(again[..], page[..]);
    // A count past 127 is clamped, and nothing reads outside the page.
    page[0] = 0xFF;
    assert_eq!(SecondaryControllerList::new(&page).iter().count(), 127);
}

#[test]
fn primary_controller_capabilities_from_bytes() {
    let mut page = [0u8; IDENTIFY_SIZE];
    page[0..2].copy_from_slice(&0x0041u16.to_le_bytes());
    page[4] = 0x03;
    page[0x20..0x24].copy_from_slice(&4u32.to_le_bytes()); // VQFRT
    page[0x24..0x28].copy_from_slice(&1u32.to_le_bytes()); // VQRFA
    page[0x28..0x2A].copy_from_slice(&0u16.to_le_bytes()); // VQRFAP
    page[0x2A..0x2C].copy_from_slice(&2u16.to_le_bytes()); // VQPRT
    page[0x2C..0x2E].copy_from_slice(&2u16.to_le_bytes()); // VQFRSM
    page[0x2E..0x30].copy_from_slice(&1u16.to_le_bytes()); // VQGRAN
    page[0x40..0x44].copy_from_slice(&2u32.to_le_bytes()); // VIFRT
    page[0x48..0x4A].copy_from_slice(&0u16.to_le_bytes()); // VIRFAP
    page[0x4A..0x4C].copy_from_slice(&2u16.to_le_bytes()); // VIPRT
    page[0x4C..0x4E].copy_from_slice(&1u16.to_le_bytes()); // VIFRSM
    page[0x4E..0x50].copy_from_slice(&1u16.to_le_bytes()); // VIGRAN
    let caps = PrimaryControllerCapabilities::parse(&page);
    assert_eq!(caps.cntlid, 0x41);
    assert_eq!(caps.crt, 3);
    assert_eq!(
        (caps.vqfrt, caps.vqrfa, caps.vqrfap, caps.vqprt),
        (4, 1, 0, 2)
    );
    assert_eq!((caps.vqfrsm, caps.vqgran), (2, 1));
    assert_eq!(
        (
            caps.vifrt,
            caps.virfap,
            caps.viprt,
            caps.vifrsm,
            caps.vigran
        ),
        (2, 0, 2, 1, 1)
    );
    let mut again = [0u8; IDENTIFY_SIZE];
    caps.encode(&mut again);
    assert_eq!(again[..], page[..]);
}

#[test]
fn identify_controller_fields() {
    let mut page = [0u8; IDENTIFY_SIZE];
    page[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
    page[2..4].copy_from_slice(&0x1af4u16.to_le_bytes());
    page[4..24].copy_from_slice(b"abc                 ");
    page[24..64].copy_from_slice(b"QEMU NVMe Ctrl                          ");
    page[78..80].copy_from_slice(&0x0041u16.to_le_bytes());
    page[80..84].copy_from_slice(&0x0001_0400u32.to_le_bytes());
    page[256..258].copy_from_slice(&0x008Au16.to_le_bytes());
    page[516..520].copy_from_slice(&256u32.to_le_bytes());
    let id = ControllerIdentity::parse(&page);
    assert_eq!((id.vid, id.ssvid, id.cntlid), (0x1b36, 0x1af4, 0x41));
    assert_eq!(id.version, 0x0001_0400);
    assert_eq!(&id.serial[..3], b"abc");
    assert_eq!(id.model_str(), "QEMU NVMe Ctrl");
    assert!(id.supports_virtualization_management());
    assert!(id.supports_namespace_management());
    assert_eq!(id.namespaces, 256);
    page[256] = 0;
    assert!(!ControllerIdentity::parse(&page).supports_virtualization_management());
    page[24] = 0xFF;
    assert_eq!(ControllerIdentity::parse(&page).model_str(), "?");
}

// ---- bring-up plan ----

fn qemu_caps() -> PrimaryControllerCapabilities {
    PrimaryControllerCapabilities {
        crt: 3,
        vqfrt: 4,
        vqfrsm: 2,
        vqprt: 2,
        vifrt: 2,
        vifrsm: 1,
        viprt: 2,
        ..Default::default()
    }
}

fn vm(action: VmAction, resource: ResourceType, cntlid: u16, count: u16) -> AdminCommand {
    AdminCommand::VirtualizationManagement {
        action,
        resource,
        cntlid,
        count,
    }
}

#[test]
fn bring_up_two_vfs_in_the_working_order() {
    let mut page = [0u8; IDENTIFY_SIZE];
    SecondaryControllerList::encode(&[secondary(1, 1, false), secondary(2, 2, false)], &mut page)
        .unwrap();
    let list = SecondaryControllerList::new(&page);
    let vfs = [
        VfAssignment {
            vfn: 1,
            nsid: Some(1),
        },
        VfAssignment {
            vfn: 2,
            nsid: Some(2),
        },
    ];
    let plan = bring_up_vfs(&list, &vfs, VfResources::MINIMAL).unwrap();
    use ResourceType::{VirtualInterrupt as Vi, VirtualQueue as Vq};
    use VmAction::{SecondaryAssign as Assign, SecondaryOnline as Online};
    let expected = [
        vm(Assign, Vq, 1, 2),
        vm(Assign, Vi, 1, 1),
        vm(Online, Vq, 1, 0),
        AdminCommand::AttachNamespace {
            nsid: 1,
            controller: 1,
        },
        vm(Assign, Vq, 2, 2),
        vm(Assign, Vi, 2, 1),
        vm(Online, Vq, 2, 0),
        AdminCommand::AttachNamespace {
            nsid: 2,
            controller: 2,
        },
    ];
    assert_eq!(plan.iter().collect::<Vec<_>>(), expected);
    assert_eq!(plan.len(), 8);
    // As the controller sees them.
    let cdw10: Vec<u32> = plan.iter().map(|c| c.encode(BUFFER).cdw10).collect();
    assert_eq!(
        cdw10,
        [
            0x0001_0008,
            0x0001_0108,
            0x0001_0009,
            0,
            0x0002_0008,
            0x0002_0108,
            0x0002_0009,
            0
        ]
    );
    assert!(check_resources(&qemu_caps(), 2, VfResources::MINIMAL).is_ok());
}

#[test]
fn each_vf_gets_an_equal_share_of_the_flexible_resources() {
    // QEMU's `sriov_vq_flexible=4,sriov_vi_flexible=2`: the minimum.
    assert_eq!(VfResources::share(&qemu_caps(), 2), VfResources::MINIMAL);
    // `sriov_vq_flexible=8,sriov_vi_flexible=6` (the tests' machine): 4 queues, 3 vectors.
    let caps = PrimaryControllerCapabilities {
        vqfrt: 8,
        vqfrsm: 4,
        vifrt: 6,
        vifrsm: 3,
        ..qemu_caps()
    };
    let share = VfResources::share(&caps, 2);
    assert_eq!(
        share,
        VfResources {
            queues: 4,
            interrupts: 3
        }
    );
    assert!(check_resources(&caps, 2, share).is_ok());
    // Resources the primary holds are not shared; the per-VF limit and MOST cap the share.
    let held = PrimaryControllerCapabilities {
        vqrfap: 4,
        virfap: 6,
        ..caps
    };
    assert_eq!(
        VfResources::share(&held, 2),
        VfResources {
            queues: 2,
            interrupts: 0
        }
    );
    assert!(check_resources(&held, 2, VfResources::share(&held, 2)).is_err());
    let big = PrimaryControllerCapabilities {
        vqfrt: 1000,
        vqfrsm: 500,
        vifrt: 1000,
        vifrsm: 500,
        ..caps
    };
    assert_eq!(VfResources::share(&big, 1), VfResources::MOST);
    assert_eq!(VfResources::share(&caps, 0), VfResources::share(&caps, 1));
}

#[test]
fn bring_up_takes_an_online_vf_offline_first_and_can_skip_the_namespace() {
    let mut page = [0u8; IDENTIFY_SIZE];
    SecondaryControllerList::encode(&[secondary(7, 1, true)], &mut page).unwrap();
    let list = SecondaryControllerList::new(&page);
    let plan = bring_up_vfs(
        &list,
        &[VfAssignment { vfn: 1, nsid: None }],
        VfResources {
            queues: 3,
            interrupts: 2,
        },
    )
    .unwrap();
    assert_eq!(
        plan.iter().collect::<Vec<_>>(),
        [
            vm(VmAction::SecondaryOffline, ResourceType::VirtualQueue, 7, 0),
            vm(VmAction::SecondaryAssign, ResourceType::VirtualQueue, 7, 3),
            vm(
                VmAction::SecondaryAssign,
                ResourceType::VirtualInterrupt,
                7,
                2
            ),
            vm(VmAction::SecondaryOnline, ResourceType::VirtualQueue, 7, 0),
        ]
    );
}

#[test]
fn bring_up_errors() {
    let mut page = [0u8; IDENTIFY_SIZE];
    SecondaryControllerList::encode(&[secondary(1, 1, false)], &mut page).unwrap();
    let list = SecondaryControllerList::new(&page);
    let one = [VfAssignment { vfn: 1, nsid: None }];
    assert_eq!(
        bring_up_vfs(
            &list,
            &[VfAssignment { vfn: 2, nsid: None }],
            VfResources::MINIMAL
        ),
        Err(PlanError::NoSecondaryController { vfn: 2 })
    );
    for r in [
        VfResources {
            queues: 1,
            interrupts: 1,
        },
        VfResources {
            queues: 2,
            interrupts: 0,
        },
    ] {
        assert_eq!(
            bring_up_vfs(&list, &one, r),
            Err(PlanError::TooFewResources)
        );
    }
    let many = [VfAssignment { vfn: 1, nsid: None }; 17];
    assert_eq!(
        bring_up_vfs(&list, &many, VfResources::MINIMAL),
        Err(PlanError::TooManyVfs)
    );
    let caps = qemu_caps();
    assert_eq!(
        check_resources(&caps, 3, VfResources::MINIMAL),
        Err(PlanError::ResourcesExceeded {
            resource: ResourceType::VirtualQueue
        })
    );
    assert_eq!(
        check_resources(
            &caps,
            1,
            VfResources {
                queues: 2,
                interrupts: 2
            }
        ),
        Err(PlanError::ResourcesExceeded {
            resource: ResourceType::VirtualInterrupt
        })
    );
    assert_eq!(
        check_resources(
            &PrimaryControllerCapabilities { crt: 2, ..caps },
            1,
            VfResources::MINIMAL
        ),
        Err(PlanError::ResourceTypeUnsupported {
            resource: ResourceType::VirtualQueue
        })
    );
    // Flexible resources the primary holds are not available to VFs.
    assert_eq!(
        check_resources(
            &PrimaryControllerCapabilities { vqrfap: 2, ..caps },
            2,
            VfResources::MINIMAL
        ),
        Err(PlanError::ResourcesExceeded {
            resource: ResourceType::VirtualQueue
        })
    );
}

// ---- admin queue against the scripted controller ----

fn memory(entries: u16) -> QueueMemory {
    QueueMemory {
        sq: SQ,
        cq: CQ,
        entries,
    }
}

fn enabled(entries: u16) -> (Fake, AdminQueue) {
    let fake = Fake::new();
    let (mut r, mut m) = (fake.clone(), fake.clone());
    let q = AdminQueue::enable(&mut r, &mut m, memory(entries)).unwrap();
    (fake, q)
}

#[test]
fn enable_handshake() {
    let (fake, q) = enabled(4);
    let s = fake.state();
    assert_eq!(s.aqa, 0x0003_0003);
    assert_eq!((s.asq, s.acq), (SQ, CQ));
    // QEMU's CAP has CSS bit 6: select all I/O command sets.
    assert_eq!(s.cc, 0x0046_0061);
    assert_eq!(s.csts & 1, 1);
    assert_eq!(s.waits, 3, "one wait per CSTS read that was not ready yet");
    // ASQ and ACQ as 32-bit halves, low first; CC last.
    let order: Vec<u32> = s.writes.iter().map(|(o, _)| *o).collect();
    assert_eq!(order, [0x24, 0x28, 0x2C, 0x30, 0x34, 0x14]);
    // The completion queue was zeroed (phase tags 0).
    assert!(s.memory[0x1000..0x1040].iter().all(|&b| b == 0));
    assert!(q.phase());
    assert_eq!((q.sq_tail(), q.cq_head()), (0, 0));
}

#[test]
fn enable_disables_a_running_controller_first() {
    let fake = Fake::new();
    fake.state().cc = 1;
    fake.state().csts = 1;
    let (mut r, mut m) = (fake.clone(), fake.clone());
    AdminQueue::enable(&mut r, &mut m, memory(2)).unwrap();
    let s = fake.state();
    assert_eq!(s.writes[0], (0x14, 0));
    assert_eq!(s.writes.last(), Some(&(0x14, 0x0046_0061)));
    assert_eq!(s.waits, 6);
}

#[test]
fn enable_failures() {
    let try_enable = |f: &Fake, mem: QueueMemory| {
        let (mut r, mut m) = (f.clone(), f.clone());
        AdminQueue::enable(&mut r, &mut m, mem).err()
    };
    let f = Fake::new();
    f.state().absent = true;
    assert_eq!(try_enable(&f, memory(4)), Some(NvmeError::NoDevice));
    let f = Fake::new();
    f.state().ready_delay = u32::MAX;
    let cap = f.state().cap;
    f.state().cap = cap & !(0xFF << 24) | 1 << 24;
    assert_eq!(
        try_enable(&f, memory(4)),
        Some(NvmeError::ReadyTimeout { expected: true })
    );
    assert_eq!(f.state().waits, 500, "CAP.TO = 1: 500 ms");
    let f = Fake::new();
    f.state().fatal = true;
    assert_eq!(try_enable(&f, memory(4)), Some(NvmeError::ControllerFatal));
    let f = Fake::new();
    f.state().cap |= 1 << 48;
    assert_eq!(
        try_enable(&f, memory(4)),
        Some(NvmeError::PageSizeUnsupported { mpsmin: 1 })
    );
    let f = Fake::new();
    for bad in [
        memory(1),
        QueueMemory {
            sq: SQ + 8,
            ..memory(4)
        },
        QueueMemory {
            cq: CQ + 0x800,
            ..memory(4)
        },
    ] {
        assert_eq!(try_enable(&f, bad), Some(NvmeError::BadQueueMemory));
    }
    f.state().cap &= !0xFFFF; // MQES 0: one entry... too small for any queue
    assert_eq!(try_enable(&f, memory(2)), Some(NvmeError::BadQueueMemory));
    // Without CSS bit 6, the NVM command set is selected.
    let f = Fake::new();
    f.state().cap &= !(1 << 43);
    let (mut r, mut m) = (f.clone(), f.clone());
    AdminQueue::enable(&mut r, &mut m, memory(4)).unwrap();
    assert_eq!(f.state().cc, 0x0046_0001);
}

#[test]
fn phase_flips_on_wrap_and_doorbells_follow() {
    let (fake, mut q) = enabled(4);
    let (mut r, mut m) = (fake.clone(), fake.clone());
    let mut phases = Vec::new();
    for i in 0..10u16 {
        let cmd =
            virtualization_management(VmAction::SecondaryOnline, ResourceType::VirtualQueue, i, 0);
        let c = q.execute(&mut r, &mut m, cmd, 10).unwrap();
        assert_eq!(c.cid, i);
        phases.push(c.phase());
    }
    assert_eq!(
        phases,
        [true, true, true, true, false, false, false, false, true, true]
    );
    let ring = [1, 2, 3, 0, 1, 2, 3, 0, 1, 2];
    assert_eq!(fake.doorbell_writes(0x1000), ring, "SQ 0 tail");
    assert_eq!(fake.doorbell_writes(0x1004), ring, "CQ 0 head");
    assert!(q.phase());
    assert_eq!(fake.state().commands.len(), 10);
    assert_eq!(fake.state().waits, 3, "only the enable waited");
}

#[test]
fn doorbells_use_the_stride() {
    let fake = Fake::new();
    fake.state().cap |= 2 << 32;
    let (mut r, mut m) = (fake.clone(), fake.clone());
    let mut q = AdminQueue::enable(&mut r, &mut m, memory(8)).unwrap();
    q.execute(&mut r, &mut m, identify(Cns::Controller, 0, 0, BUFFER), 1)
        .unwrap();
    assert_eq!(fake.doorbell_writes(0x1000), [1]);
    assert_eq!(fake.doorbell_writes(0x1010), [1]);
}

#[test]
fn full_queue_stash_and_timeout() {
    let (fake, mut q) = enabled(4);
    let (mut r, mut m) = (fake.clone(), fake.clone());
    fake.state().hold = true;
    let cmd = SubmissionEntry::new(opcode::GET_FEATURES);
    let cids: Vec<u16> = (0..3)
        .map(|_| q.submit(&mut r, &mut m, cmd).unwrap())
        .collect();
    assert_eq!(cids, [0, 1, 2]);
    assert_eq!(q.submit(&mut r, &mut m, cmd), Err(NvmeError::QueueFull));
    assert_eq!(q.poll_completion(&mut r, &mut m, 2), Ok(None));
    fake.release();
    // Ask for the last first: the other two wait in the stash.
    assert_eq!(
        q.poll_completion(&mut r, &mut m, 2).unwrap().unwrap().cid,
        2
    );
    assert_eq!(
        q.poll_completion(&mut r, &mut m, 0).unwrap().unwrap().cid,
        0
    );
    assert_eq!(
        q.poll_completion(&mut r, &mut m, 1).unwrap().unwrap().cid,
        1
    );
    assert_eq!(q.poll_completion(&mut r, &mut m, 1), Ok(None));
    // The controller's SQ head freed the slots.
    assert!(q.submit(&mut r, &mut m, cmd).is_ok());
    // A command that never completes.
    fake.state().hold = true;
    let waits = fake.state().waits;
    assert_eq!(
        q.execute(&mut r, &mut m, cmd, 5),
        Err(NvmeError::CommandTimeout { cid: 4 })
    );
    assert_eq!(fake.state().waits - waits, 5);
}

#[test]
fn error_status_becomes_an_error() {
    let (fake, mut q) = enabled(4);
    let (mut r, mut m) = (fake.clone(), fake.clone());
    let status = Status(Status::new(sct::COMMAND_SPECIFIC, 0x20).0 | 1 << 14);
    fake.state()
        .fail
        .insert(opcode::VIRTUALIZATION_MANAGEMENT, status);
    let cmd =
        virtualization_management(VmAction::SecondaryOnline, ResourceType::VirtualQueue, 1, 0);
    let err = q.execute(&mut r, &mut m, cmd, 1).unwrap_err();
    assert_eq!(
        err,
        NvmeError::Command {
            opcode: 0x1C,
            status
        }
    );
    assert_eq!(
        err.to_string(),
        "admin opcode 0x1c failed: invalid secondary controller state (sct 1, sc 0x20, dnr)"
    );
}

#[test]
fn bad_sq_head_in_a_completion_is_an_error_not_a_panic() {
    let (fake, mut q) = enabled(4);
    let (mut r, mut m) = (fake.clone(), fake.clone());
    let c = CompletionEntry {
        sq_head: 9,
        status_phase: 1,
        ..Default::default()
    };
    fake.state().memory[0x1000..0x1010].copy_from_slice(&c.to_bytes());
    assert_eq!(q.poll(&mut r, &mut m), Err(NvmeError::BadCompletion));
}

#[test]
fn queue_pair_sizes_and_doorbells() {
    let pair = QueuePair::new(1, memory(4), 2).unwrap();
    assert_eq!((pair.qid(), pair.memory()), (1, memory(4)));
    assert_eq!((pair.sq_tail(), pair.cq_head(), pair.phase()), (0, 0, true));
    for bad in [memory(1), memory(4097)] {
        assert_eq!(
            QueuePair::new(1, bad, 0).unwrap_err(),
            NvmeError::BadQueueMemory
        );
    }
    assert_eq!(
        QueuePair::new(0xFFFF, memory(4), 15).unwrap_err(),
        NvmeError::BadQueueMemory
    );
}

#[test]
fn identify_and_bring_up_through_the_queue() {
    let (fake, mut q) = enabled(8);
    let (mut r, mut m) = (fake.clone(), fake.clone());
    let mut page = [0u8; IDENTIFY_SIZE];
    SecondaryControllerList::encode(&[secondary(1, 1, false), secondary(2, 2, false)], &mut page)
        .unwrap();
    fake.state().identify.insert(0x15, page.to_vec());
    q.execute(
        &mut r,
        &mut m,
        identify(Cns::SecondaryControllers, 0, 0, BUFFER),
        1,
    )
    .unwrap();
    let mut got = [0u8; IDENTIFY_SIZE];
    m.read(BUFFER, &mut got);
    let list = SecondaryControllerList::new(&got);
    let vfs = [
        VfAssignment {
            vfn: 1,
            nsid: Some(1),
        },
        VfAssignment {
            vfn: 2,
            nsid: Some(2),
        },
    ];
    let plan = bring_up_vfs(&list, &vfs, VfResources::MINIMAL).unwrap();
    for step in plan.iter() {
        if step.direction() == DataDirection::ToController {
            let mut data = [0u8; 4096];
            step.fill_buffer(&mut data);
            m.write(BUFFER, &data);
        }
        q.execute(&mut r, &mut m, step.encode(BUFFER), 1).unwrap();
    }
    let s = fake.state();
    let ops: Vec<u8> = s.commands.iter().map(|c| c.opcode()).collect();
    assert_eq!(ops, [0x06, 0x1C, 0x1C, 0x1C, 0x15, 0x1C, 0x1C, 0x1C, 0x15]);
    assert_eq!(s.data_in.len(), 2);
    assert_eq!(s.data_in[0][0..4], [1, 0, 1, 0], "one controller: 1");
    assert_eq!(s.data_in[1][0..4], [1, 0, 2, 0], "one controller: 2");
}
