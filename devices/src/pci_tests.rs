use super::super::pci_host::ConfigRegisters;
use super::*;

type Ports = PciConfigPorts<ConfigRegisters>;

fn outl(p: &mut Ports, v: u32, port: u16) {
    p.write(port, 4, v, 0);
}

fn inl(p: &mut Ports, port: u16) -> u32 {
    p.read(port, 4, 0)
}

/// PCI_CONF1_ADDRESS from Linux arch/x86/pci/direct.c for bus 0.
fn conf1_address(devfn: u8, reg: u16) -> u32 {
    0x8000_0000 | u32::from(devfn) << 8 | u32::from(reg & 0xFC)
}

/// A function with vendor 0x1af4, device 0x1041, class 02/00/00 and a writable dword at 0x40.
fn virtio_net() -> ConfigRegisters {
    let mut regs = ConfigRegisters::new();
    regs.define(0x00, 0x1041_1af4, 0, 0);
    regs.define(0x08, 0x0200_0001, 0, 0);
    regs.define(0x40, 0, !0, 0);
    regs
}

#[test]
fn vendor_id_of_the_host_bridge() {
    let mut p = Ports::new();
    outl(&mut p, 0x8000_0000, CONFIG_ADDRESS_PORT);
    assert_eq!(inl(&mut p, CONFIG_DATA_PORT), 0x0008_1b36);
    assert_eq!(p.read(CONFIG_DATA_PORT, 2, 0), 0x1b36);
    assert_eq!(p.read(CONFIG_DATA_PORT + 2, 2, 0), 0x0008);
    assert_eq!(p.read(CONFIG_DATA_PORT + 1, 1, 0), 0x1b);
}

#[test]
fn missing_device_reads_all_ones() {
    let mut p = Ports::new();
    outl(
        &mut p,
        conf1_address(DevFn::new(3, 0).unwrap().0, 0),
        CONFIG_ADDRESS_PORT,
    );
    assert_eq!(inl(&mut p, CONFIG_DATA_PORT), 0xFFFF_FFFF);
    assert_eq!(p.read(CONFIG_DATA_PORT + 2, 2, 0), 0xFFFF);
    // Bus 1 does not exist either, even at device 0.
    outl(&mut p, 0x8001_0000, CONFIG_ADDRESS_PORT);
    assert_eq!(inl(&mut p, CONFIG_DATA_PORT), 0xFFFF_FFFF);
    // With the enable bit clear CONFIG_DATA is not configuration space.
    outl(&mut p, 0x0000_0000, CONFIG_ADDRESS_PORT);
    assert_eq!(inl(&mut p, CONFIG_DATA_PORT), 0xFFFF_FFFF);
    outl(&mut p, 0x1234, CONFIG_DATA_PORT);
    outl(&mut p, 0x8000_0000, CONFIG_ADDRESS_PORT);
    assert_eq!(inl(&mut p, CONFIG_DATA_PORT), 0x0008_1b36);
}

#[test]
fn linux_pci_check_type1_and_sanity_check() {
    let mut p = Ports::new();
    // pci_check_type1: outb(0x01, 0xCFB) is not ours (byte access), then the dword round trip.
    assert!(!Ports::claims(0xCFB, 1));
    let tmp = inl(&mut p, CONFIG_ADDRESS_PORT);
    outl(&mut p, 0x8000_0000, CONFIG_ADDRESS_PORT);
    assert_eq!(inl(&mut p, CONFIG_ADDRESS_PORT), 0x8000_0000);
    // pci_sanity_check: a 16-bit read of PCI_CLASS_DEVICE (0x0A) of devfn 0 is 0x0600.
    outl(&mut p, conf1_address(0, 0x0A), CONFIG_ADDRESS_PORT);
    assert_eq!(p.read(CONFIG_DATA_PORT + (0x0A & 2), 2, 0), 0x0600);
    outl(&mut p, tmp, CONFIG_ADDRESS_PORT);
    assert_eq!(inl(&mut p, CONFIG_ADDRESS_PORT), 0);
}

#[test]
fn config_address_reserved_bits_read_zero() {
    let mut p = Ports::new();
    outl(&mut p, 0xFFFF_FFFF, CONFIG_ADDRESS_PORT);
    assert_eq!(inl(&mut p, CONFIG_ADDRESS_PORT), 0x80FF_FFFC);
    let a = ConfigAddress::new(0x8000_1A44);
    assert_eq!(
        (
            a.bus(),
            a.devfn().device(),
            a.devfn().function(),
            a.register()
        ),
        (0, 3, 2, 0x44)
    );
    // Narrow accesses to 0xCF8 are not CONFIG_ADDRESS.
    p.write(CONFIG_ADDRESS_PORT, 1, 0, 0);
    assert_eq!(inl(&mut p, CONFIG_ADDRESS_PORT), 0x80FF_FFFC);
    assert_eq!(p.read(CONFIG_ADDRESS_PORT, 2, 0), 0xFFFF);
}

#[test]
fn added_device_byte_and_word_writes() {
    let mut p = Ports::new();
    let slot = DevFn::new(3, 0).unwrap();
    p.bus_mut().add(slot, virtio_net()).unwrap();
    outl(&mut p, conf1_address(slot.0, 0), CONFIG_ADDRESS_PORT);
    assert_eq!(inl(&mut p, CONFIG_DATA_PORT), 0x1041_1af4);
    outl(&mut p, conf1_address(slot.0, 0x40), CONFIG_ADDRESS_PORT);
    p.write(CONFIG_DATA_PORT + 1, 1, 0xAB, 0);
    p.write(CONFIG_DATA_PORT + 2, 2, 0x1234, 0);
    assert_eq!(inl(&mut p, CONFIG_DATA_PORT), 0x1234_AB00);
    // A word at 0xCFF straddles the dword: the lane past it reads as ones, and is not written.
    p.write(CONFIG_DATA_PORT + 3, 2, 0x5566, 0);
    assert_eq!(p.read(CONFIG_DATA_PORT + 3, 2, 0), 0xFF66);
    // Read-only vendor id.
    outl(&mut p, conf1_address(slot.0, 0), CONFIG_ADDRESS_PORT);
    outl(&mut p, 0, CONFIG_DATA_PORT);
    assert_eq!(inl(&mut p, CONFIG_DATA_PORT), 0x1041_1af4);
}

#[test]
fn slot_table_rules() {
    let mut bus: PciBus<ConfigRegisters> = PciBus::new();
    assert_eq!(
        bus.add(DevFn::HOST_BRIDGE, virtio_net()),
        Err(PciError::Reserved)
    );
    let a = DevFn::new(1, 0).unwrap();
    assert_eq!(bus.add(a, virtio_net()), Ok(()));
    assert_eq!(bus.add(a, virtio_net()), Err(PciError::Occupied));
    for d in 2..=PCI_SLOTS as u8 {
        assert_eq!(bus.add(DevFn::new(d, 0).unwrap(), virtio_net()), Ok(()));
    }
    assert_eq!(
        bus.add(DevFn::new(30, 0).unwrap(), virtio_net()),
        Err(PciError::Full)
    );
    assert!(bus.remove(a).is_some());
    assert_eq!(bus.read(a, 0), u32::MAX);
    assert_eq!(bus.add(DevFn::new(30, 0).unwrap(), virtio_net()), Ok(()));
    assert_eq!(DevFn::new(32, 0), None);
    assert_eq!(DevFn::new(0, 8), None);
}
