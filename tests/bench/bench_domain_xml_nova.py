#!/usr/bin/python3
"""nova's side of bench_domain_xml: build and render the same typical guest
with nova.virt.libvirt.config (python3-nova), as in the research notes.

Usage: /usr/bin/python3 bench_domain_xml_nova.py [GUESTS] [ROUNDS]
Prints the median per-guest time of ROUNDS rounds of GUESTS guests."""
import statistics
import sys
import time

from nova.virt.libvirt import config as vc


def build():
    g = vc.LibvirtConfigGuest()
    g.virt_type = 'kvm'
    g.name = 'instance-00000001'
    g.uuid = 'b38a3f43-4be2-4046-897f-b67c2f5e0147'
    g.memory = 2 * 1024 * 1024
    g.vcpus = 2
    g.os_type = 'hvm'
    g.os_arch = 'x86_64'
    g.os_mach_type = 'q35'
    g.os_boot_dev = ['hd']
    g.features = [vc.LibvirtConfigGuestFeatureACPI(), vc.LibvirtConfigGuestFeatureAPIC(),
                  vc.LibvirtConfigGuestFeatureVMCoreInfo()]
    clk = vc.LibvirtConfigGuestClock()
    clk.offset = 'utc'
    for name, tickpolicy, present in (('pit', 'delay', None), ('rtc', 'catchup', None),
                                      ('hpet', None, False)):
        t = vc.LibvirtConfigGuestTimer()
        t.name = name
        if tickpolicy:
            t.tickpolicy = tickpolicy
        if present is not None:
            t.present = present
        clk.add_timer(t)
    g.set_clock(clk)
    cpu = vc.LibvirtConfigGuestCPU()
    cpu.mode = 'host-model'
    cpu.sockets, cpu.cores, cpu.threads = 1, 2, 1
    cpu.add_feature(vc.LibvirtConfigGuestCPUFeature('vmx'))
    g.cpu = cpu
    d1 = vc.LibvirtConfigGuestDisk()
    d1.source_type = 'file'
    d1.source_device = 'disk'
    d1.driver_name = 'qemu'
    d1.driver_format = 'qcow2'
    d1.driver_cache = 'none'
    d1.source_path = '/var/lib/nova/instances/x/disk'
    d1.target_dev = 'vda'
    d1.target_bus = 'virtio'
    d2 = vc.LibvirtConfigGuestDisk()
    d2.source_type = 'network'
    d2.source_protocol = 'rbd'
    d2.source_name = 'volumes/volume-1'
    d2.source_hosts = ['10.0.0.1']
    d2.source_ports = ['6789']
    d2.driver_name = 'qemu'
    d2.driver_format = 'raw'
    d2.driver_cache = 'none'
    d2.target_dev = 'vdb'
    d2.target_bus = 'virtio'
    d2.serial = 'c0ffee00-1111-2222-3333-444455556666'
    nic = vc.LibvirtConfigGuestInterface()
    nic.net_type = 'bridge'
    nic.source_dev = 'br-int'
    nic.mac_addr = 'fa:16:3e:11:22:33'
    nic.model = 'virtio'
    nic.target_dev = 'tap1234'
    nic.vporttype = 'openvswitch'
    nic.add_vport_param('interfaceid', '7e4b8b1f-0000-4000-8000-000000000001')
    nic.mtu = 1450
    hd = vc.LibvirtConfigGuestHostdevPCI()
    hd.domain, hd.bus, hd.slot, hd.function = '0000', '0x81', '0x00', '0x1'
    ser = vc.LibvirtConfigGuestSerial()
    ser.type = 'pty'
    con = vc.LibvirtConfigGuestConsole()
    con.type = 'pty'
    bal = vc.LibvirtConfigMemoryBalloon()
    bal.model = 'virtio'
    bal.period = 10
    rng = vc.LibvirtConfigGuestRng()
    rng.backend = '/dev/urandom'
    # nova adds this when the image sets hw_qemu_guest_agent; Nestor's plain profile always.
    qga = vc.LibvirtConfigGuestChannel()
    qga.type = 'unix'
    qga.target_name = 'org.qemu.guest_agent.0'
    qga.source_path = '/var/lib/libvirt/qemu/org.qemu.guest_agent.0.instance-00000001.sock'
    for dev in (d1, d2, nic, hd, ser, con, qga, rng, bal):
        g.add_device(dev)
    m = vc.LibvirtConfigGuestMetaNovaInstance()
    m.package = '26.2.2'
    m.name = 'bench'
    m.creationTime = 0
    m.flavor = vc.LibvirtConfigGuestMetaNovaFlavor()
    m.flavor.name = 'm1.small'
    m.flavor.memory = 2048
    m.flavor.vcpus = 2
    m.flavor.disk = 20
    m.flavor.ephemeral = 0
    m.flavor.swap = 0
    m.owner = vc.LibvirtConfigGuestMetaNovaOwner()
    m.owner.userid = 'u'
    m.owner.username = 'admin'
    m.owner.projectid = 'p'
    m.owner.projectname = 'demo'
    g.metadata.append(m)
    return g


def bench(n):
    t0 = time.perf_counter()
    for _ in range(n):
        build().to_xml()
    return time.perf_counter() - t0


def main():
    guests = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    bench(50)  # warm-up
    per_guest = [bench(guests) / guests * 1e6 for _ in range(rounds)]
    print('nova guests=%d rounds=%d xml_bytes=%d' % (guests, rounds, len(build().to_xml())))
    print('nova build_us_per_guest=%.3f' % statistics.median(per_guest))


if __name__ == '__main__':
    main()
