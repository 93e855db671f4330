#!/usr/bin/env bash
# Proves systemd/jellyfin-export-scheduler.service:
#   1. `systemd-analyze verify` finds nothing to say about it;
#   2. `systemd-analyze security --offline=true` rates its exposure at most 1.5.
#
# usage: tests/systemd.sh   (from anywhere; needs systemd-analyze, and root for step 1)
#        JES_UNIT=path/to/other.service tests/systemd.sh   (check another unit file)
#
# verify checks that the program ExecStart= names exists, and the unit names the installed path
# /usr/local/bin/jellyfin-export-scheduler. When nothing is installed there, the check runs
# in a private mount namespace (unshare) with a tmpfs over /usr/local/bin holding a copy of
# the built binary, so the unit file is verified exactly as shipped and the host is left
# untouched. JES_BIN names the binary to use (default: target/release, else target/debug,
# else a debug build now).
set -euo pipefail
cd "$(dirname "$0")/.."

unit=${JES_UNIT:-systemd/jellyfin-export-scheduler.service}
max_exposure=1.5
installed=/usr/local/bin/jellyfin-export-scheduler

fail() { echo "tests/systemd.sh: FAIL: $*" >&2; exit 1; }

if ! command -v systemd-analyze >/dev/null; then
  echo "== installing systemd-analyze (Debian's systemd package)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd; } >/dev/null 2>&1 || true
fi
command -v systemd-analyze >/dev/null ||
  fail "systemd-analyze is not installed and could not be installed (Debian: apt-get install systemd)."
[[ -f $unit ]] || fail "$unit is missing."
echo "== $(systemd-analyze --version | head -1)"

# --- 1. verify -------------------------------------------------------------------------
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

if [[ -x $installed ]]; then
  echo "== systemd-analyze verify $unit (with the installed $installed)"
  systemd-analyze verify "$unit" >"$out/verify" 2>&1 || true
else
  bin=${JES_BIN:-}
  if [[ -z $bin ]]; then
    for candidate in target/release/jellyfin-export-scheduler target/debug/jellyfin-export-scheduler; do
      [[ -x $candidate ]] && { bin=$candidate; break; }
    done
  fi
  if [[ -z $bin ]]; then
    echo "== cargo build --locked (verify needs ExecStart's program to exist)"
    cargo build --locked --quiet
    bin=target/debug/jellyfin-export-scheduler
  fi
  [[ -x $bin ]] || fail "$bin is not an executable file; set JES_BIN to the built binary."
  command -v unshare >/dev/null || fail "unshare (util-linux) is needed to stand the binary in for $installed."
  echo "== systemd-analyze verify $unit (with $bin standing in for $installed)"
  # shellcheck disable=SC2016 # $1 and $2 are the inner shell's arguments
  unshare --mount --propagation private -- sh -c '
      mount -t tmpfs -o mode=0755 tmpfs /usr/local/bin &&
      cp "$1" /usr/local/bin/jellyfin-export-scheduler &&
      exec systemd-analyze verify "$2"' sh "$bin" "$unit" >"$out/verify" 2>&1 ||
    { cat "$out/verify" >&2; fail "systemd-analyze verify failed (is this run as root, as unshare --mount needs?)."; }
fi
if [[ -s $out/verify ]]; then
  cat "$out/verify" >&2
  fail "systemd-analyze verify reported the problems above; it must be silent."
fi
echo "verify: clean"

# --- 2. security -----------------------------------------------------------------------
echo "== systemd-analyze security --offline=true $unit"
systemd-analyze security --offline=true --no-pager "$unit" >"$out/security" 2>&1 || true
# Show what still counts against the unit, then the verdict.
grep -E '^✗' "$out/security" || true
score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$out/security")
if [[ -z $score ]]; then
  cat "$out/security" >&2
  fail "systemd-analyze security printed no overall exposure level."
fi
echo "exposure score: $score (must be <= $max_exposure)"
awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s <= m) }' ||
  fail "the unit's exposure score $score is above $max_exposure; see the ✗ lines above."
echo "PASS: $unit verifies clean and scores $score"
