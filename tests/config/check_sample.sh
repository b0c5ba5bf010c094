#!/usr/bin/env bash
# Fails when etc/nestor.conf.sample does not document exactly the options
# the agent and its plugins register (every shipped plugin enabled).
# Usage: check_sample.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2

plugins=$(find "$build/plugins" -maxdepth 1 -name '*.so' ! -name 'testing.so' -printf '%f\n' |
        sed 's/\.so$//' | sort | paste -sd, -)
conf=$(mktemp)
trap 'rm -f "$conf"' EXIT
printf '[DEFAULT]\nplugin_dir = %s/plugins\nenabled_plugins = %s\n' "$build" "$plugins" >"$conf"

options() { awk '/^\[/{s=$0} /^#?[a-z_]+ = /{sub(/^#/, ""); print s, $1}' "$1" | sort; }

generated=$(mktemp)
"$build/nestor-agent" --config-file "$conf" --write-sample-config >"$generated"
if ! diff <(options "$src/etc/nestor.conf.sample") <(options "$generated"); then
        echo "etc/nestor.conf.sample is out of date ('<' only in the sample, '>' only in the code)." >&2
        echo "Regenerate it: build/nestor-agent --write-sample-config --config-file <conf enabling $plugins>" >&2
        rm -f "$generated"
        exit 1
fi
rm -f "$generated"
echo "sample documents every option"
