#!/bin/sh
# Checks the systemd unit: `systemd-analyze verify` must be silent (it exits 0 on unknown keys
# and bad values, printing only a warning, so any output fails the check) and the
# `systemd-analyze security --offline=true` exposure must be at most 1.5.
#
# Usage: scripts/check-systemd.sh [UNIT] (default systemd/kiotviet-sync.service)
# A template (NAME@.service) is checked as its instance NAME@check.service, and must equal
# systemd/kiotviet-sync.service apart from comments, Description=, ExecStart= and
# LoadCredential= (the instance's files): the same hardening, hence the same score.
# Env:   KVS_BIN  the binary ExecStart should point at (default build/kiotviet-syncd)
#
# verify insists that ExecStart's binary exists, and the unit names the installed path
# (/usr/local/bin/kiotviet-syncd), so the checks run on a copy whose ExecStart is the built
# binary. Works as root in a container without a running systemd: both commands only read
# unit files (--man=no: the man page need not be installed).
set -eu

unit=${1:-systemd/kiotviet-sync.service}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${KVS_BIN:-$root/build/kiotviet-syncd}
max_exposure=15   # tenths: 1.5

fail() { echo "check-systemd: $*" >&2; exit 1; }

command -v systemd-analyze >/dev/null 2>&1 ||
    fail "systemd-analyze not found (Debian package: systemd)"
[ -f "$unit" ] || fail "no unit file $unit"
[ -x "$bin" ] || fail "$bin is not built (run make first, or set KVS_BIN)"
grep -q '^ExecStart=/usr/local/bin/kiotviet-syncd ' "$unit" ||
    fail "$unit: ExecStart must start with /usr/local/bin/kiotviet-syncd (make install rewrites it)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvs-unit.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
name=$(basename "$unit")
case $name in
*@.service)
    name=${name%@.service}@check.service
    plain=$root/systemd/kiotviet-sync.service
    strip() { grep -v -e '^#' -e '^Description=' -e '^ExecStart=' -e '^LoadCredential=' "$1"; }
    strip "$plain" >"$tmp/plain.lines"
    strip "$unit" >"$tmp/template.lines"
    if ! diff -u "$tmp/plain.lines" "$tmp/template.lines" >&2; then
        fail "$unit differs from $plain beyond Description=, ExecStart= and LoadCredential="
    fi
    echo "check-systemd: same settings as kiotviet-sync.service OK" ;;
esac
copy=$tmp/$name
sed "s|^ExecStart=/usr/local/bin/kiotviet-syncd |ExecStart=$bin |" "$unit" >"$copy"

# 1. verify: exit status and silence.
status=0
out=$(cd "$tmp" && systemd-analyze verify --man=no "$copy" 2>&1) || status=$?
if [ "$status" -ne 0 ] || [ -n "$out" ]; then
    printf '%s\n' "$out" >&2
    fail "systemd-analyze verify $unit failed (exit $status)"
fi
echo "check-systemd: verify OK"

# 2. security: --threshold makes it fail above 1.5; the score is also read back and shown.
status=0
out=$(systemd-analyze security --offline=true --threshold=$max_exposure "$copy" 2>&1) || status=$?
score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9]*\.[0-9]\).*/\1/p')
if [ "$status" -ne 0 ] || [ -z "$score" ]; then
    printf '%s\n' "$out" | grep -v '✓' >&2 || true
    fail "systemd-analyze security: exposure ${score:-unknown} is above 1.5 (exit $status)"
fi
tenths=$(echo "$score" | tr -d .)
[ "$tenths" -le "$max_exposure" ] || fail "exposure $score is above 1.5"
echo "check-systemd: security exposure $score (at most 1.5) OK"
