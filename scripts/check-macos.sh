#!/usr/bin/env bash
# Type-check ccsync for macOS (aarch64-apple-darwin, or the target given) on Debian 12: no link.
#
#   scripts/check-macos.sh [TARGET]
#
# The route of scripts/build-windows.sh: Debian's rustc-web and rust-web-src (installed with
# apt-get when missing) build std's metadata for the target with -Zbuild-std, and `cargo check`
# type-checks the library, both binaries and the tests for it into target/macos. There is no
# macOS SDK here, so nothing is linked, and zstd's C code (which a C compiler for macOS would
# build) is not compiled: zstd-sys is pointed through pkg-config at a stand-in entry, which is
# enough for a check. Exits with cargo's status.
set -euo pipefail
source "$(dirname "$0")/windows/env.sh"

target=${1:-aarch64-apple-darwin}
case "$target" in
-h | --help)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*-apple-darwin) ;;
*) win_die "not a macOS target: $target" ;;
esac

started=$(date +%s)
win_packages rust
[ -d /usr/lib/rustlib/src/rust/library ] || win_die "no Rust library source at /usr/lib/rustlib/src/rust (package rust-web-src)"
dir=${CCSYNC_MACOS_TARGET_DIR:-$WIN_ROOT/target/macos}
mkdir -p "$dir/pkgconfig"
printf '%s\n' 'Name: libzstd' 'Description: a stand-in for a type-check (nothing is linked)' \
    'Version: 1.5.7' 'Libs:' 'Cflags:' >"$dir/pkgconfig/libzstd.pc"
status=0
(
    cd "$WIN_ROOT"
    unset RUSTUP_TOOLCHAIN RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER RUSTFLAGS CARGO_BUILD_TARGET
    export PATH=/usr/bin:/bin:$PATH
    export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 CARGO_INCREMENTAL=0
    export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
    export ZSTD_SYS_USE_PKG_CONFIG=1 PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_PATH=$dir/pkgconfig
    # Nothing runs but build scripts and proc macros: no optimisation (the dev profile's
    # opt-level 2 for dependencies is for running tests).
    exec /usr/bin/cargo check -Zbuild-std --target "$target" --target-dir "$dir" \
        --config 'profile.dev.package."*".opt-level=0' -p ccsync --lib --bins --tests
) || status=$?
win_say "cargo check for $target took $(($(date +%s) - started)) s (exit $status)"
exit "$status"
