#!/usr/bin/python3
"""The sriov plugin through the agent, as an operator and a controller use it.

nestor-agent with enabled_plugins = libvirt, sriov on the in-process libvirt
test driver and a fake sysfs tree (tests/fixtures/mkfakesysfs.py: a dual-port
82599 with 4 VFs per port and an FC HBA with 2 VFs), driven with nestorctl over
the real broker:

  1. discovery: pci_list_devices (fields, filters), pci_pools, pci_diagnose
     (a device_spec that matches nothing is reported);
  2. spawn with an SR-IOV port (MAC, VLAN, trust) and a flavor alias: the
     domain XML has <interface type='hostdev'> and <hostdev>, the VF settings
     went to the (record) backend, pools and PF/VF exclusivity follow;
  3. bad requests fail with clear errors and claim nothing;
  4. an FC VF gets NPIV WWNs and a vHBA;
  5. destroy frees everything (and resets the VF);
  6. restart: the agent comes back on a libvirt whose domains hold claims (a
     test driver file made from the first run's domain XML) and rebuilds
     them: the devices and MACs are not handed out again.

Usage: test_sriov_agent.py BUILD_DIR
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

BUILD = os.path.abspath(sys.argv[1])
SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
HOST = "sriov-it-%d" % os.getpid()
EXCHANGE = "nestor_sriov_it_%d" % os.getpid()
WORK = tempfile.mkdtemp(prefix="nestor-sriov-")
agent = None
checks = 0


def log(msg):
    print("test_sriov_agent: " + msg, file=sys.stderr, flush=True)


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    path = os.path.join(WORK, "agent.log")
    if os.path.exists(path):
        with open(path) as f:
            for line in f.readlines()[-60:]:
                print("  agent: " + line.rstrip(), file=sys.stderr)
    raise SystemExit(1)


def check(cond, msg):
    global checks
    checks += 1
    if not cond:
        fail(msg)


def write_config(uri):
    specs = [
        {"address": "0000:03:00.0", "physical_network": "physnet1", "trusted": "true"},
        {"address": "0000:03:00.1", "physical_network": "physnet2"},
        {"vendor_id": "10df"},
        {"address": "0000:99:00.0", "physical_network": "nowhere"},
    ]
    aliases = [
        {"name": "vf", "vendor_id": "8086", "product_id": "10ed", "device_type": "type-VF"},
        {"name": "nic-pf", "vendor_id": "8086", "product_id": "10fb",
         "device_type": "type-PF"},
        {"name": "fc", "vendor_id": "10df", "product_id": "e208", "device_type": "type-VF"},
    ]
    lines = [
        "[DEFAULT]",
        "transport_url = rabbit://guest:guest@localhost:5672/",
        "host = " + HOST,
        "control_exchange = " + EXCHANGE,
        "plugin_dir = " + os.path.join(BUILD, "plugins"),
        "enabled_plugins = libvirt, sriov",
        "state_path = " + os.path.join(WORK, "state"),
        "[libvirt]",
        "uri = " + uri,
        "[pci]",
        "sysfs_root = " + os.path.join(WORK, "fake", "sys"),
        "vf_config = record:" + os.path.join(WORK, "vf.jsonl"),
        "rescan_interval = 0",
    ]
    lines += ["device_spec = " + json.dumps(s) for s in specs]
    lines += ["alias = " + json.dumps(a) for a in aliases]
    lines += ["[oslo_messaging_rabbit]", "rabbit_retry_interval = 0.1"]
    with open(os.path.join(WORK, "nestor.conf"), "w") as f:
        f.write("\n".join(lines) + "\n")


def ctl(method, args=None, expect_error=None):
    """Calls method; returns the result, or the error text when expect_error
    (a class name) is given and the call failed with it."""
    cmd = [os.path.join(BUILD, "nestorctl"), "--config-file", os.path.join(WORK, "nestor.conf"),
           "--host", HOST, "--timeout", "60", "--json", "call", method]
    if args is not None:
        cmd += ["--args", json.dumps(args)]
    for _ in range(60):
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode == 3 and "ConnectionError" in p.stderr:
            time.sleep(1)
            continue
        break
    if expect_error:
        check(p.returncode != 0, "%s %s succeeded, expected %s" % (method, args, expect_error))
        check(expect_error in p.stderr, "%s: expected %s, got: %s" % (method, expect_error,
                                                                     p.stderr.strip()))
        return p.stderr.strip()
    if p.returncode != 0:
        fail("%s %s: %s" % (method, json.dumps(args), p.stderr.strip()))
    return json.loads(p.stdout) if p.stdout.strip() else None


def agent_env():
    """An ASan agent needs libtirpc before libvirt (see test_qemu.sh)."""
    env = dict(os.environ)
    with open(os.path.join(BUILD, "nestor-agent"), "rb") as f:
        if b"__asan_init" in f.read():
            tirpc = subprocess.run("ldconfig -p | awk '/libtirpc\\.so\\.3 /{print $NF; exit}'",
                                   shell=True, capture_output=True, text=True).stdout.strip()
            if tirpc:
                env["LD_PRELOAD"] = tirpc
    return env


def start_agent():
    global agent
    env = agent_env()
    agent_bin = os.path.join(BUILD, "nestor-agent")
    logf = open(os.path.join(WORK, "agent.log"), "a")
    agent = subprocess.Popen([agent_bin, "--config-file", os.path.join(WORK, "nestor.conf")],
                             stderr=logf, env=env)
    for _ in range(100):
        if agent.poll() is not None:
            fail("the agent exited with %d" % agent.returncode)
        p = subprocess.run([os.path.join(BUILD, "nestorctl"), "--config-file",
                            os.path.join(WORK, "nestor.conf"), "--host", HOST, "--timeout", "1",
                            "call", "ping"], capture_output=True)
        if p.returncode == 0:
            return
        time.sleep(0.2)
    fail("the agent does not answer")


def lsan_crashed():
    with open(os.path.join(WORK, "agent.log")) as f:
        text = f.read()
    return ("LeakSanitizer has encountered a fatal error" in text and
            "detected memory leaks" not in text)


def stop_agent():
    global agent
    if agent:
        agent.terminate()
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            agent.kill()
            fail("the agent did not stop on SIGTERM")
        if agent.returncode != 0 and lsan_crashed():
            # LeakSanitizer's own tracer died at exit (it reports "fatal
            # error", not a leak): a tool failure, not the agent's.
            log("LeakSanitizer failed at the agent's exit; not counted as a failure")
        else:
            check(agent.returncode == 0, "the agent exited with %d" % agent.returncode)
        agent = None


def devices(**flt):
    args = {"fields": ["address", "type", "state", "owner", "parent", "netdev"]}
    if flt:
        args["filter"] = flt
    return {d["address"]: d for d in ctl("pci_list_devices", args)}


def pool_free(pools, **keys):
    for p in pools:
        if all(p.get(k) == v or p.get("tags", {}).get(k) == v for k, v in keys.items()):
            return p["free"]
    fail("no pool with %s in %s" % (keys, json.dumps(pools)))


def recorded():
    path = os.path.join(WORK, "vf.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def spec(name, requests, **extra):
    s = {"name": name, "vcpus": 1, "memory_mb": 128, "disks": [{"size_gb": 1}],
         "pci_requests": requests}
    s.update(extra)
    return {"spec": s}


def bad_config_stops_the_agent():
    """Malformed JSON in [pci] device_spec: a startup error naming the line."""
    path = os.path.join(WORK, "nestor.conf")
    with open(path, "a") as f:
        f.write("[pci]\ndevice_spec = {\"address\": \n")
    with open(path) as f:
        line = len(f.read().splitlines())
    p = subprocess.run([os.path.join(BUILD, "nestor-agent"), "--config-file", path],
                       capture_output=True, text=True, timeout=60, env=agent_env())
    check(p.returncode != 0, "the agent started with a malformed device_spec")
    check("nestor.conf:%d: [pci] device_spec: malformed JSON" % line in p.stderr,
          "the error names the line: %s" % p.stderr.strip()[-300:])


def main():
    subprocess.run([sys.executable if os.path.exists("/usr/bin/python3") else "python3",
                    os.path.join(SRC, "tests", "fixtures", "mkfakesysfs.py"),
                    os.path.join(WORK, "fake"), "--fc-hbas", "1", "--quiet"], check=True)
    write_config("test:///default")
    bad_config_stops_the_agent()
    write_config("test:///default")
    start_agent()

    # ---- 1. discovery ----
    all_devs = devices()
    pfs = [a for a, d in all_devs.items() if d["type"] == "type-PF"]
    vfs = [a for a, d in all_devs.items() if d["type"] == "type-VF"]
    check(pfs[:2] == ["0000:03:00.0", "0000:03:00.1"], "PFs: %s" % pfs)
    check(len(vfs) == 10, "8 NIC VFs and 2 FC VFs expected, got %s" % vfs)
    vf_pf0 = sorted(a for a in vfs if all_devs[a]["parent"] == "0000:03:00.0")
    check(vf_pf0 == ["0000:03:10.0", "0000:03:10.2", "0000:03:10.4", "0000:03:10.6"],
          "PF0's VFs by offset/stride: %s" % vf_pf0)
    check(all(all_devs[a]["state"] == "available" for a in vf_pf0), "VFs start available")
    only = devices(type="type-PF")
    check(set(only) == set(pfs), "filter on type: %s" % list(only))
    one = ctl("pci_list_devices", {"fields": ["address"], "filter": {"address": "0000:03:10.2"}})
    check(one == [{"address": "0000:03:10.2"}], "fields selection: %s" % one)
    ctl("pci_list_devices", {"fields": ["nonsense"]}, expect_error="unknown field 'nonsense'")
    ctl("pci_list_devices", {"filter": {"colour": "red"}}, expect_error="cannot filter on 'colour'")
    pools = ctl("pci_pools")
    check(pool_free(pools, physical_network="physnet1", dev_type="type-VF") == 4,
          "physnet1 VF pool: %s" % json.dumps(pools))
    diag = ctl("pci_diagnose")
    msgs = " ".join(c["message"] for c in diag["checks"])
    check("matches no device" in msgs, "diagnose reports the unmatched device_spec: %s" % msgs)
    check(isinstance(diag["ready"], bool), "diagnose says ready or not")

    # ---- 2. spawn with a port and an alias ----
    port = {"vnic_type": "direct", "physical_network": "physnet1", "id": "port-a",
            "vlan": 100, "trusted": True, "spoofchk": False, "max_tx_rate": 1000}
    r = ctl("spawn", spec("vm-a", [port, {"alias": "vf", "count": 1}]))
    uuid_a = r["uuid"]
    pci = r["pci_devices"]
    check(len(pci) == 2, "two devices claimed: %s" % pci)
    nic = [c for c in pci if c["form"] == "interface"][0]
    check(nic["mac"].startswith("fa:16:3e:") and nic["vlan"] == 100, "port claim: %s" % nic)
    check(devices()[nic["address"]]["parent"] == "0000:03:00.0", "the port got a physnet1 VF")
    xml = ET.fromstring(ctl("get_xml", {"instance": "vm-a"}))
    iface = xml.find("./devices/interface[@type='hostdev']")
    check(iface is not None and iface.get("managed") == "yes", "an <interface type='hostdev'>")
    check(iface.find("mac").get("address") == nic["mac"], "the MAC in the XML")
    check(iface.find("vlan/tag").get("id") == "100", "one VLAN tag")
    check(len(iface.findall("vlan/tag")) == 1, "exactly one tag")
    check(len(xml.findall("./devices/hostdev[@type='pci']")) == 1, "one plain <hostdev>")
    rec = [x for x in recorded() if x.get("trust") is True]
    check(rec and rec[-1]["pf"] == all_devs["0000:03:00.0"]["netdev"] and
          rec[-1].get("spoofchk") is False and rec[-1].get("max_tx_rate") == 1000,
          "VF settings recorded: %s" % recorded())
    after = devices()
    check(after[nic["address"]]["state"] == "claimed" and
          after[nic["address"]]["owner"] == uuid_a, "the VF is claimed by vm-a")
    check(after["0000:03:00.0"]["state"] == "unavailable", "its PF is unavailable")
    info = ctl("get_info", {"instance": "vm-a"})
    check(len(info["metadata"]["claims"]) == 2, "get_info shows the claims: %s" % info)

    # ---- 3. bad requests: clear errors, nothing claimed ----
    before = devices()
    ctl("spawn", spec("bad1", [{"alias": "nic-pf", "count": 2}]),
        expect_error="PciAllocationFailed")
    e = ctl("spawn", spec("bad2", [{"alias": "vf", "count": 9}]),
            expect_error="PciAllocationFailed")
    check("free" in e, "the error says what was free: %s" % e)
    ctl("spawn", spec("bad3", [{"alias": "nope"}]), expect_error="PciAliasNotFound")
    ctl("spawn", spec("bad4", [dict(port, id="p4", vlan=4095)]), expect_error="4094")
    ctl("spawn", spec("bad5", [dict(port, id="p5", vlan=[100, 200])]),
        expect_error="exactly one VLAN tag")
    ctl("spawn", spec("bad6", [dict(port, id="p6", mac="01:00:5e:00:00:01")]),
        expect_error="unicast MAC")
    ctl("spawn", spec("bad7", [dict(port, id="p7", mac=nic["mac"])]),
        expect_error="already in use")
    ctl("spawn", spec("bad8", [{"vnic_type": "macvtap", "physical_network": "physnet1"}]),
        expect_error="vnic_type")
    ctl("spawn", spec("bad9", [{"alias": "fc", "wwnn": "5001a4a000000001",
                                "wwpn": "5001a4a00000000g"}]), expect_error="InvalidInput")
    # All or nothing: the VF part would fit, the PF part cannot.
    ctl("spawn", spec("bad10", [{"alias": "vf", "count": 2}, {"alias": "nic-pf", "count": 2}]),
        expect_error="PciAllocationFailed")
    check(devices() == before, "failed spawns claimed nothing")
    check(not any(i["name"].startswith("bad") for i in ctl("list_instances")),
          "failed spawns left no instance")

    # ---- 4. Fibre Channel VF: NPIV ----
    r = ctl("spawn", spec("vm-fc", [{"alias": "fc", "count": 1}]))
    fc = r["pci_devices"][0]
    check(fc["wwpn"].startswith("5001a4a") and len(fc["wwpn"]) == 16 and
          fc["wwnn"] != fc["wwpn"], "NAA-5 WWNs: %s" % fc)
    check(fc.get("vhba", "").startswith("scsi_host"), "a vHBA was created: %s" % fc)
    ctl("spawn", spec("vm-fc2", [{"alias": "fc", "wwnn": fc["wwnn"], "wwpn": fc["wwpn"]}]),
        expect_error="already in use")
    ctl("destroy", {"instance": "vm-fc"})

    # ---- 5. destroy frees ----
    ctl("destroy", {"instance": "vm-a"})
    freed = devices()
    check(freed[nic["address"]]["state"] == "available" and
          freed["0000:03:00.0"]["state"] == "available", "destroy freed the VF and its PF")
    resets = [x for x in recorded() if x.get("trust") is False]
    check(resets and resets[-1].get("spoofchk") is True, "the VF was reset: %s" % recorded())

    # ---- 6. restart with instances holding claims ----
    r = ctl("spawn", spec("vm-b", [dict(port, id="port-b"), {"alias": "nic-pf", "count": 1}]))
    uuid_b = r["uuid"]
    held = {c["address"]: c for c in r["pci_devices"]}
    dom_xml = ctl("get_xml", {"instance": "vm-b"})
    stop_agent()
    # A libvirt whose only domain is vm-b, as the next agent will find it.
    node = ET.fromstring("<node/>")
    dom = ET.fromstring(dom_xml)
    dom.set("type", "test")
    node.append(dom)
    with open(os.path.join(WORK, "node.xml"), "w") as f:
        f.write(ET.tostring(node, encoding="unicode"))
    write_config("test://" + os.path.join(WORK, "node.xml"))
    start_agent()
    again = devices()
    for addr in held:
        check(again[addr]["state"] == "claimed" and again[addr]["owner"] == uuid_b,
              "after restart %s is claimed by vm-b: %s" % (addr, again[addr]))
    pf_b = [a for a in held if again[a]["type"] == "type-PF"][0]
    ctl("spawn", spec("vm-c", [{"alias": "nic-pf", "count": 2}]),
        expect_error="PciAllocationFailed")
    mac_b = [c for c in held.values() if c["form"] == "interface"][0]["mac"]
    ctl("spawn", spec("vm-d", [dict(port, id="p-d", mac=mac_b)]), expect_error="already in use")
    ctl("destroy", {"instance": "vm-b"})
    check(devices()[pf_b]["state"] == "available", "destroy after restart frees the PF")
    stop_agent()
    log("%d checks passed" % checks)


try:
    main()
finally:
    if agent:
        agent.kill()
        agent.wait()
    if not os.environ.get("KEEP"):
        shutil.rmtree(WORK, ignore_errors=True)
