#!/usr/bin/env bash
# Cross-build ccsync for Windows (x86_64-pc-windows-gnu) on Debian 12, and check that it runs
# under Wine.
#
#   scripts/build-windows.sh [--release] [--tests] [--no-run]
#
# Installs what it needs with apt-get when missing (Debian's rust-web compiler and library
# source, the mingw-w64 linker, wine64 and wine64-preloader), builds `ccsync.exe` and
# `claude-session-sync.exe` into target/windows/x86_64-pc-windows-gnu/{debug,release}/ (never
# touching target/debug or the rustup toolchain), then runs `ccsync.exe --version` under wine64
# in a private prefix in ~/.cache/ccsync-win (with a stub bcryptprimitives.dll that Wine 8
# lacks) unless --no-run. --tests also builds the test helpers of tools/wintest (git.exe,
# claude.exe, envrun.exe) that `cargo test --test windows` runs.
# Progress goes to stderr; the last line on stdout is the absolute path of ccsync.exe.
set -euo pipefail
source "$(dirname "$0")/windows/env.sh"

profile=debug
run=1
tests=0
for a in "$@"; do
    case "$a" in
    --release) profile=release ;;
    --tests) tests=1 ;;
    --no-run) run=0 ;;
    -h | --help)
        sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) win_die "unknown argument: $a (see --help)" ;;
    esac
done

started=$(date +%s)
win_packages
flags=(--bins -p ccsync)
[ "$profile" = release ] && flags+=(--release)
[ "$tests" = 1 ] && flags+=(-p wintest)
win_cargo build "${flags[@]}" >&2 || win_die "the Windows build failed"
exe=$WIN_TARGET_DIR/$WIN_TARGET/$profile/ccsync.exe
[ -f "$exe" ] || win_die "the build did not produce $exe"
win_say "built in $(($(date +%s) - started)) s"

if [ "$run" = 1 ]; then
    win_prefix
    version=$("$WINE64" "$exe" --version) || win_die "$exe --version failed under Wine"
    win_say "under Wine: $version"
fi
printf '%s\n' "$exe"
