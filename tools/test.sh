#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this):
#   1. installs missing Debian packages,
#   2. builds and runs every test (unit, integration against a real
#      RabbitMQ, Python oslo.messaging compatibility),
#   3. compiles the Release preset (-O3 warns about things -O2 does not,
#      and -Werror makes them errors for a packager),
#   4. rebuilds with AddressSanitizer + UndefinedBehaviorSanitizer and runs
#      the suite again, plus the libFuzzer target for a bounded time.
# The broker, and virtlogd + libvirtd for the real-QEMU tests, are started
# when they are not running, once for the whole run (a test starts them
# itself only when run alone), and stopped again only if this script
# started them.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh

started_broker=0
started_libvirtd=0
cleanup() {
        if [ "$started_libvirtd" = 1 ]; then
                tools/libvirtd.sh stop
        fi
        if [ "$started_broker" = 1 ]; then
                tools/broker.sh stop
        fi
}
trap cleanup EXIT
if ! tools/broker.sh status; then
        tools/broker.sh start
        started_broker=1
fi
if ! tools/libvirtd.sh status; then
        tools/libvirtd.sh start
        started_libvirtd=1
fi

jobs=$(nproc)
cmake --preset default >/dev/null
cmake --build --preset default -j "$jobs"
ctest --preset default

cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"

cmake --preset asan >/dev/null
cmake --build --preset asan -j "$jobs"
ctest --preset asan
echo "test.sh: all suites passed"
