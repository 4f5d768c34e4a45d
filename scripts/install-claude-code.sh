#!/bin/sh
# Install the pinned real Claude Code client for the conformance tests (tests/conformance.rs).
#
#   export CCSYNC_REAL_CLAUDE=$(scripts/install-claude-code.sh | tail -1)
#
# Installs @anthropic-ai/claude-code with npm into a cache outside the repository:
#   ${CCSYNC_TEST_CACHE:-$HOME/.cache/ccsync-test}/claude-code-<version>
# The version is pinned (CCSYNC_CLAUDE_CODE_VERSION overrides it). Idempotent: when the binary of
# that version is already there, nothing is downloaded. npm's own output goes to stderr; the last
# line on stdout is the absolute path of the native `claude` binary.
#
# The npm package's `bin/claude.exe` is only a stub until its postinstall script copies the native
# binary over it, and install scripts may be blocked (and are not run here: --ignore-scripts).
# The native binary is in the platform package (@anthropic-ai/claude-code-<platform>/claude),
# installed as an optional dependency, so this script points at that file directly.
set -eu

VERSION="${CCSYNC_CLAUDE_CODE_VERSION:-2.1.197}"
CACHE="${CCSYNC_TEST_CACHE:-$HOME/.cache/ccsync-test}"
DIR="$CACHE/claude-code-$VERSION"

say() { printf '%s\n' "install-claude-code: $*" >&2; }
die() {
    say "$*"
    exit 1
}

platform() {
    os=$(uname -s)
    arch=$(uname -m)
    case "$arch" in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) die "unsupported CPU architecture: $arch" ;;
    esac
    case "$os" in
    Linux)
        libc=""
        if getconf GNU_LIBC_VERSION >/dev/null 2>&1; then
            libc=""
        elif (ldd --version 2>&1 | grep -qi musl) || ls /lib/ld-musl-* >/dev/null 2>&1; then
            libc="-musl"
        fi
        echo "linux-$arch$libc"
        ;;
    Darwin) echo "darwin-$arch" ;;
    *) die "unsupported operating system: $os (run the conformance tests on Linux or macOS)" ;;
    esac
}

PLATFORM=$(platform)
REL="node_modules/@anthropic-ai/claude-code-$PLATFORM/claude"

# The installed binary answers `--version` with "<version> (Claude Code)".
is_good() {
    [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "^$VERSION "
}

if is_good "$DIR/$REL"; then
    say "Claude Code $VERSION already installed in $DIR"
    echo "$DIR/$REL"
    exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm not found; install Node.js (with npm) first"

mkdir -p "$CACHE"
# Install into a fresh directory next to the target and move it into place at the end, so an
# interrupted run never leaves a half-installed client that a later run would trust.
TMP=$(mktemp -d "$CACHE/.claude-code-$VERSION.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
chmod 755 "$TMP"
printf '{"name": "ccsync-test-claude-code", "private": true}\n' >"$TMP/package.json"

say "installing @anthropic-ai/claude-code@$VERSION ($PLATFORM) into $DIR"
npm install --prefix "$TMP" --ignore-scripts --include=optional --no-audit --no-fund \
    --save-exact --loglevel=warn "@anthropic-ai/claude-code@$VERSION" >&2 ||
    die "npm install failed"

is_good "$TMP/$REL" ||
    die "the native binary $REL was not installed (is @anthropic-ai/claude-code-$PLATFORM@$VERSION available for this platform?)"

rm -rf "$DIR"
mv "$TMP" "$DIR"
trap - EXIT INT TERM
is_good "$DIR/$REL" || die "$DIR/$REL does not run"
say "installed Claude Code $VERSION"
echo "$DIR/$REL"
