#!/usr/bin/env bash
# Build the library's unit tests for Windows (x86_64-pc-windows-gnu) and run them under Wine.
#
#   scripts/test-windows.sh [--no-run] [-- TEST-ARGS…]
#
# The same cross route as scripts/build-windows.sh (installs what is missing with apt-get;
# builds into target/windows; the Wine prefix in ~/.cache/ccsync-win). TEST-ARGS go to the test
# binary (a name filter, --test-threads N, --nocapture, …). git is the test relay of
# tools/wintest (a Windows git.exe relaying to the host's git over 127.0.0.1); the few tests
# that still cannot pass under Wine are skipped (WIN_TESTS_SKIPPED in scripts/windows/env.sh,
# with the reasons). Exits with the tests' status.
set -euo pipefail
source "$(dirname "$0")/windows/env.sh"

run=1
args=()
while [ $# -gt 0 ]; do
    case "$1" in
    --no-run) run=0 ;;
    --)
        shift
        args=("$@")
        break
        ;;
    -h | --help)
        sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) win_die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

started=$(date +%s)
win_packages
win_cargo test --lib --no-run || win_die "the Windows test build failed"
win_cargo build -p wintest --bins || win_die "the Windows build of tools/wintest failed"
built=$(date +%s)
win_say "test binary built in $((built - started)) s"
[ "$run" = 1 ] || exit 0
win_prefix
win_relay_start
skips=()
for t in "${WIN_TESTS_SKIPPED[@]}"; do skips+=(--skip "$t"); done
win_say "skipping ${#WIN_TESTS_SKIPPED[@]} tests that cannot pass under Wine (reported as filtered out)"
status=0
win_cargo test --lib -- "${skips[@]}" "${args[@]}" || status=$?
win_say "tests ran under Wine in $(($(date +%s) - built)) s (exit $status)"
exit "$status"
