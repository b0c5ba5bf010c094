#!/usr/bin/python3
"""The reference: nova's compute-side PCI stats (PciDeviceStats) on the same
fake sysfs tree the Nestor benchmark reads (tests/bench/bench_sriov.sh).

Devices are read from ROOT/sys/bus/pci/devices (vendor, device, numa_node,
physfn), whitelisted like an operator would for nova: each PF by its address
and its VFs by a regex on their buses, tagged physical_network=physnet<k>.
Measures: building the pools (PciDevice.create + add_device), N single-VF
consume_requests (the compute claim) rotating over the physnets, M
support_requests on the compute-side stats (sampled: one costs tens of ms)
and N frees. Prints one JSON object.

Usage: bench_sriov_nova.py ROOT [--claims N] [--supports M]
"""
import argparse
import json
import os
import time

from nova import objects
from nova.objects import fields
from nova.pci import stats
from nova.pci import whitelist

objects.register_all()


def read_tree(root):
    base = os.path.join(root, "sys", "bus", "pci", "devices")
    devs = []
    for bdf in sorted(os.listdir(base)):
        d = os.path.join(base, bdf)

        def rd(name):
            with open(os.path.join(d, name)) as f:
                return f.read().strip()
        cls = int(rd("class"), 16)
        if cls >> 16 != 0x02:
            continue
        physfn = os.path.join(d, "physfn")
        vf = os.path.islink(physfn)
        pf = os.path.exists(os.path.join(d, "sriov_totalvfs"))
        devs.append({
            "address": bdf,
            "vendor_id": rd("vendor")[2:],
            "product_id": rd("device")[2:],
            "numa_node": int(rd("numa_node")),
            "dev_type": (fields.PciDeviceType.SRIOV_VF if vf else
                         fields.PciDeviceType.SRIOV_PF if pf else
                         fields.PciDeviceType.STANDARD),
            "parent_addr": os.path.basename(os.readlink(physfn)) if vf else None,
            "status": fields.PciDeviceStatus.AVAILABLE,
            "label": "label_%s_%s" % (rd("vendor")[2:], rd("device")[2:]),
            "dev_id": "pci_" + bdf.replace(":", "_").replace(".", "_"),
            "request_id": None,
            "extra_info": {},
        })
    return devs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--claims", type=int, default=1000)
    ap.add_argument("--supports", type=int, default=20)
    a = ap.parse_args()

    raw = read_tree(a.root)
    pfs = [d for d in raw if d["dev_type"] == fields.PciDeviceType.SRIOV_PF]
    specs = []
    for k, pf in enumerate(pfs):
        buses = sorted({d["address"][5:7] for d in raw if d["parent_addr"] == pf["address"]})
        physnet = "physnet%d" % k
        specs.append({"address": pf["address"], "physical_network": physnet})
        specs.append({"address": {"domain": "0000", "bus": "(%s)" % "|".join(buses),
                                  "slot": ".*", "function": ".*"},
                      "physical_network": physnet})

    t0 = time.perf_counter()
    wl = whitelist.Whitelist([json.dumps(s) for s in specs])
    devices = []
    for i, d in enumerate(raw):
        dev = objects.PciDevice.create(None, d)
        dev.id = i + 1
        devices.append(dev)
    by_addr = {d.address: d for d in devices}
    for d in devices:
        if d.parent_addr:
            parent = by_addr[d.parent_addr]
            d.parent_device = parent
            parent.child_devices.append(d)
    st = stats.PciDeviceStats(objects.NUMATopology(), dev_filter=wl)
    for d in devices:
        st.add_device(d)
    build_s = time.perf_counter() - t0

    n_physnets = len(pfs)

    def request(i):
        return objects.InstancePCIRequest(
            count=1, spec=[{"physical_network": "physnet%d" % (i % n_physnets),
                            "remote_managed": "False"}],
            request_id=None, numa_policy=fields.PCINUMAAffinityPolicy.LEGACY)

    # On full pools, before any claim: what the scheduler's retry or a
    # compute-side check pays on a fresh node.
    t0 = time.perf_counter()
    for i in range(a.supports):
        if not st.support_requests([request(i)]):
            raise SystemExit("nova: support_requests said no")
    support_s = time.perf_counter() - t0

    claimed = []
    t0 = time.perf_counter()
    for i in range(a.claims):
        got = st.consume_requests([request(i)])
        if not got:
            raise SystemExit("nova could not allocate claim %d" % i)
        for dev in got:
            dev.claim("instance-%d" % i)
        claimed.extend(got)
    claim_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    for dev in claimed:
        for freed in dev.free():
            st.add_device(freed)
    free_s = time.perf_counter() - t0

    print(json.dumps({
        "impl": "nova", "devices": len(devices), "pools": len(st.pools),
        "build_ms": build_s * 1e3,
        "claim_us": claim_s / a.claims * 1e6,
        "support_us": support_s / a.supports * 1e6,
        "free_us": free_s / a.claims * 1e6,
        "claims": a.claims, "supports": a.supports,
    }))


if __name__ == "__main__":
    main()
