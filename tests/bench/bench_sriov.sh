#!/usr/bin/env bash
# SR-IOV benchmark: Nestor's discovery, pools and claims next to nova's
# compute-side PciDeviceStats, on the same fake 4 PF x 256 VF sysfs tree, in
# one run. Issue 4 asks Nestor to be at least 100x faster per claim and per
# support check.
# Usage: bench_sriov.sh [BUILD_DIR] [CLAIMS] [NOVA_SUPPORTS]
# Needs python3-nova. Exits 1 below the target.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
claims=${2:-1000}
nova_supports=${3:-20}
target=100

bin=$build/bench/bench_sriov
[ -x "$bin" ] || { echo "bench_sriov.sh: $bin not built" >&2; exit 2; }
/usr/bin/python3 -c 'import nova.pci.stats' 2>/dev/null ||
        { echo "bench_sriov.sh: python3-nova is not installed" >&2; exit 2; }

work=$(mktemp -d /tmp/nestor-bench-sriov.XXXXXX)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 "$here/../fixtures/mkfakesysfs.py" "$work/tree" --nics 4 --ports 1 \
        --totalvfs 256 --numvfs 256 --offset 1 --stride 1 --bus 10 --quiet

nestor=$("$bin" "$work/tree" "$claims" "$claims")
nova=$(/usr/bin/python3 "$here/bench_sriov_nova.py" "$work/tree" --claims "$claims" \
        --supports "$nova_supports")
echo "$nestor"
echo "$nova"
/usr/bin/python3 - "$nestor" "$nova" "$target" <<'PY'
import json, sys
n, v, target = json.loads(sys.argv[1]), json.loads(sys.argv[2]), float(sys.argv[3])
print("devices %d (nestor scans %d functions), pools: nestor %d, nova %d" %
      (v["devices"], n["devices"], n["pools"], v["pools"]))
print("discovery (libpci + sysfs): nestor %.1f ms" % n["scan_ms"])
print("build pools: nestor %.2f ms, nova %.1f ms (%.0fx)" %
      (n["build_ms"], v["build_ms"], v["build_ms"] / n["build_ms"]))
ok = True
for key, what in (("claim_us", "claim"), ("support_us", "support check"), ("free_us", "free")):
    ratio = v[key] / n[key]
    need = key != "free_us"
    ok &= ratio >= target or not need
    print("per %s: nestor %.3f us, nova %.1f us -> %.0fx%s" %
          (what, n[key], v[key], ratio, " (target >= %dx)" % target if need else ""))
print("plugin claim path (requests, MACs, claims table): %.2f us per claim, %.2f us per free" %
      (n["plugin_claim_us"], n["plugin_free_us"]))
sys.exit(0 if ok else 1)
PY
