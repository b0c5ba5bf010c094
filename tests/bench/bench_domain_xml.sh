#!/usr/bin/env bash
# Domain XML benchmark: Nestor's builder and nova's LibvirtConfigGuest build
# and render the same typical guest, side by side in one run (issue 3 asks
# Nestor to be at least 30x faster).
# Usage: bench_domain_xml.sh [BUILD_DIR] [GUESTS] [ROUNDS]
# Needs python3-nova (apt-get install -y python3-nova). Exits 1 below the target.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
guests=${2:-1000}
rounds=${3:-5}
target=30

bin=$build/bench/bench_domain_xml
[ -x "$bin" ] || { echo "bench_domain_xml.sh: $bin not built" >&2; exit 2; }
/usr/bin/python3 -c 'import nova.virt.libvirt.config' 2>/dev/null ||
        { echo "bench_domain_xml.sh: python3-nova is not installed" >&2; exit 2; }

nestor=$("$bin" "$guests" "$rounds")
nova=$(/usr/bin/python3 "$here/bench_domain_xml_nova.py" "$guests" "$rounds")
echo "$nestor"
echo "$nova"

value() { sed -n "s/^$1 $2=//p" <<<"$3"; }
n_build=$(value nestor build_us_per_guest "$nestor")
n_full=$(value nestor parse_build_us_per_guest "$nestor")
v_build=$(value nova build_us_per_guest "$nova")
awk -v n="$n_build" -v f="$n_full" -v v="$v_build" -v t="$target" 'BEGIN {
        printf "per guest: nestor %.2f us (%.2f us with JSON spec parsing), nova %.2f us\n", n, f, v
        printf "ratio: %.1fx (%.1fx with spec parsing), target >= %dx\n", v / n, v / f, t
        exit (v / n >= t) ? 0 : 1
}'
