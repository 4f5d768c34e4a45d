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

# The Debian packages, installed with apt-get when missing (as root, or through sudo). With
# `rust`, only the compiler and the library source (scripts/check-macos.sh).
win_packages() {
    # wine64-preloader is only "suggested" by wine64, but /usr/lib/wine/wine64 cannot start a
    # program without it.
    local want=(rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64-posix
        binutils-mingw-w64-x86-64 mingw-w64-x86-64-dev wine64 wine64-preloader)
    [ "${1:-}" = rust ] && want=(rustc-web cargo-web rust-web-src)
    local need=() p
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
    done
    [ ${#need[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || win_die "missing ${need[*]}, and there is no apt-get to install them"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    win_say "installing ${need[*]}"
    # Update the lists first: a stale list offers an older rust-web (1.85, too old for ccsync;
    # 1.96 is in bookworm-security).
    "${sudo[@]}" apt-get update -qq >&2 || win_say "apt-get update failed; trying the lists as they are"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 ||
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
        # Smaller and faster to build: no incremental state, line tables only (enough for
        # backtraces) in the debug and test profiles.
        export CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=line-tables-only
        # age reads its messages through rust-embed, which in a build with debug assertions
        # loads them from the source folder at run time through std::fs::canonicalize, and that
        # fails under Wine 8 (error 234): built without them, the two embed the files, as in a
        # release build.
        exec /usr/bin/cargo "$sub" -Zbuild-std --target "$WIN_TARGET" --target-dir "$WIN_TARGET_DIR" \
            --config 'profile.dev.package.age.debug-assertions=false' \
            --config 'profile.dev.package.rust-embed.debug-assertions=false' "$@"
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

# The test git relay (tools/wintest): the Windows git.exe, copied alone into a folder of the
# cache that goes first on the Windows PATH (WINEPATH), and the host server it relays to,
# started in the background (ended when the calling script exits). Exports WINTEST_RELAY and
# WINEPATH. The Windows helpers must be built (win_cargo build -p wintest --bins).
win_relay_start() {
    local exe=$WIN_TARGET_DIR/$WIN_TARGET/debug/git.exe
    [ -f "$exe" ] || win_die "no $exe (the Windows build of tools/wintest)"
    local bin=$WIN_CACHE/relay-bin
    mkdir -p "$bin"
    cmp -s "$exe" "$bin/git.exe" || cp "$exe" "$bin/git.exe"
    # The host side, built by the ordinary toolchain (a small program: std and libc).
    (cd "$WIN_ROOT" && cargo build -q -p wintest --bin git-relay) >&2 || win_die "could not build git-relay"
    local relay=${CARGO_TARGET_DIR:-$WIN_ROOT/target}/debug/git-relay
    local var_file
    var_file=$(mktemp "${TMPDIR:-/tmp}/ccsync-relay.XXXXXX")
    rm -f "$var_file"
    "$relay" --var-file "$var_file" &
    WIN_RELAY_PID=$!
    trap 'kill "$WIN_RELAY_PID" 2>/dev/null || true' EXIT
    local i=0
    while [ ! -s "$var_file" ]; do
        kill -0 "$WIN_RELAY_PID" 2>/dev/null || win_die "git-relay did not start"
        i=$((i + 1))
        [ $i -lt 500 ] || win_die "git-relay did not say where it listens"
        sleep 0.02
    done
    WINTEST_RELAY=$(cat "$var_file")
    rm -f "$var_file"
    export WINTEST_RELAY
    export WINEPATH="Z:${bin//\//\\}"
}

# Unit tests that cannot pass under Wine, with the reason. Passed to the test binary as --skip
# filters (git itself is there: the relay).
WIN_TESTS_SKIPPED=(
    # Their child process is a POSIX shell script (`sh -c`), which Windows does not have.
    store::git::tests::a_child_left_holding_the_pipes_does_not_keep_the_step_waiting
    store::git::tests::a_step_is_stopped_when_it_is_silent_or_stalls
    store::git::tests::a_step_that_keeps_reporting_progress_outlasts_the_idle_bound
    store::git::tests::a_step_that_trickles_forever_is_stopped_in_all
)
