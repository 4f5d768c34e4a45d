# Shared by scripts/build-windows.sh and scripts/test-windows.sh (sourced, not run).
#
# The Windows build of ccsync on a Debian 12 machine: rustup here has no Windows target, so
# Debian's rustc-web / cargo-web / rust-web-src (a compiler whose sysroot is /usr, with the
# matching library source) build std for x86_64-pc-windows-gnu with -Zbuild-std, linked by the
# mingw-w64 gcc; wine64 runs the result. Nothing here changes the rustup toolchain that
# `cargo test` uses: the Debian compiler is only named explicitly, for the cross commands.
#
# Caches live outside the repository: $CCSYNC_WIN_CACHE (default ~/.cache/ccsync-win) holds the
# Wine prefix and the stub bcryptprimitives.dll; the build goes to target/windows.

WIN_TARGET=x86_64-pc-windows-gnu
WIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WIN_CACHE=${CCSYNC_WIN_CACHE:-$HOME/.cache/ccsync-win}
WIN_TARGET_DIR=${CCSYNC_WIN_TARGET_DIR:-$WIN_ROOT/target/windows}
WIN_LINKER=x86_64-w64-mingw32-gcc-posix
WINE64=/usr/lib/wine/wine64
export WINEPREFIX=${WINEPREFIX:-$WIN_CACHE/wineprefix}
export WINEDEBUG=${WINEDEBUG:--all}
# No Mono or Gecko: nothing here needs them, and Wine would try to install them.
export WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-mscoree,mshtml=}

win_say() { printf '%s\n' "${0##*/}: $*" >&2; }
win_die() {
    win_say "$*"
    exit 1
}

# The Debian packages, installed with apt-get when missing (as root, or through sudo).
win_packages() {
    local want=(rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64-posix
        binutils-mingw-w64-x86-64 mingw-w64-x86-64-dev wine64)
    local need=() p
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
    done
    [ ${#need[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || win_die "missing ${need[*]}, and there is no apt-get to install them"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    win_say "installing ${need[*]}"
    # The list may be stale (the 1.96 rust-web packages are in bookworm-security): update once
    # when the first try fails.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 ||
        { "${sudo[@]}" apt-get update -qq >&2 &&
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2; } ||
        win_die "could not install ${need[*]}"
}

# Run the Debian cargo for the Windows target, with std built from source. Arguments: the
# cargo subcommand and its arguments (the target, target dir and build-std are added).
win_cargo() {
    local sub=$1
    shift
    [ -d /usr/lib/rustlib/src/rust/library ] || win_die "no Rust library source at /usr/lib/rustlib/src/rust (package rust-web-src)"
    (
        cd "$WIN_ROOT"
        # Only the Debian toolchain: rustup's proxies must not pick another compiler.
        unset RUSTUP_TOOLCHAIN RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER RUSTFLAGS CARGO_BUILD_TARGET
        export PATH=/usr/bin:/bin:$PATH
        export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
        export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=$WIN_LINKER
        export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=$WINE64
        export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
        exec /usr/bin/cargo "$sub" -Zbuild-std --target "$WIN_TARGET" --target-dir "$WIN_TARGET_DIR" "$@"
    )
}

# The stub bcryptprimitives.dll (scripts/windows/bcryptprimitives.c), built into the cache when
# its source is newer. Prints its path.
win_stub_dll() {
    local src=$WIN_ROOT/scripts/windows/bcryptprimitives.c
    local dll=$WIN_CACHE/bcryptprimitives.dll
    mkdir -p "$WIN_CACHE"
    if [ ! -f "$dll" ] || [ "$src" -nt "$dll" ]; then
        "$WIN_LINKER" -O2 -shared -o "$dll.tmp" "$src" -ladvapi32 >&2 || win_die "could not build $dll"
        mv "$dll.tmp" "$dll"
    fi
    printf '%s\n' "$dll"
}

# The private Wine prefix, created once, with the stub DLL in its system32.
win_prefix() {
    local dll
    dll=$(win_stub_dll)
    if [ ! -f "$WINEPREFIX/system.reg" ]; then
        win_say "creating the Wine prefix $WINEPREFIX"
        mkdir -p "$WINEPREFIX"
        "$WINE64" wineboot --init >/dev/null 2>&1 || true
        # wineboot returns before the server has written the registry: wait for it.
        "${WINE64%/wine64}/wineserver" -w >/dev/null 2>&1 || true
        [ -f "$WINEPREFIX/system.reg" ] || win_die "Wine did not create its prefix in $WINEPREFIX"
    fi
    local sys=$WINEPREFIX/drive_c/windows/system32
    [ -d "$sys" ] || win_die "no $sys in the Wine prefix"
    cmp -s "$dll" "$sys/bcryptprimitives.dll" || cp "$dll" "$sys/bcryptprimitives.dll"
}

# Unit tests that need git, which a Windows program under Wine cannot run yet (no Windows git
# in the reachable registries; the later end-to-end step relays to the host's git). They are
# passed to the test binary as --skip filters.
WIN_TESTS_NEEDING_GIT=(
    config::shared::tests::a_repository_with_only_ccsync_folders_and_no_marker_is_a_damaged_ccsync_one
    lock::tests::racing_machines_exactly_one_wins_and_release_rules
    store::tests::a_commit_puts_back_the_skeleton_a_repository_lost
    store::tests::broken_clone_is_replaced_and_concurrent_commits_both_land
    store::tests::the_remote_head_is_read_without_fetching
    sync::log::tests::segments_stay_few_and_bounded_and_concatenate_to_the_log
)
