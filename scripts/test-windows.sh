#!/usr/bin/env bash
# Build the library's unit tests for Windows (x86_64-pc-windows-gnu) and run them under Wine.
#
#   scripts/test-windows.sh [--no-run] [-- TEST-ARGS…]
#
# The same cross route as scripts/build-windows.sh (installs what is missing with apt-get;
# builds into target/windows; the Wine prefix in ~/.cache/ccsync-win). TEST-ARGS go to the test
# binary (a name filter, --test-threads N, --nocapture, …). Tests that need git are skipped
# (see WIN_TESTS_NEEDING_GIT in scripts/windows/env.sh). Exits with the tests' status.
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
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) win_die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

started=$(date +%s)
win_packages
win_cargo test --lib --no-run || win_die "the Windows test build failed"
built=$(date +%s)
win_say "test binary built in $((built - started)) s"
[ "$run" = 1 ] || exit 0
win_prefix
skips=()
for t in "${WIN_TESTS_NEEDING_GIT[@]}"; do skips+=(--skip "$t"); done
win_say "skipping ${#WIN_TESTS_NEEDING_GIT[@]} tests that need git (reported as filtered out)"
status=0
win_cargo test --lib -- "${skips[@]}" "${args[@]}" || status=$?
win_say "tests ran under Wine in $(($(date +%s) - built)) s (exit $status)"
exit "$status"
