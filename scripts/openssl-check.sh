#!/usr/bin/env bash
# Proves that OpenSSL really draws from qeaasd through the QEAAS provider.
#
# OpenSSL seeds itself from the OS, silently and with exit status 0, when `[random] seed = NAME`
# names nothing it can fetch (a typo, a provider that did not load). This check runs
# `openssl rand` through the given configuration and compares the daemon's per-uid counter
# (protocol op MY_STATS, `qeaas my-stats`) before and after: it must rise by at least the bytes
# fetched. Exit 0 when it did, 1 when it did not or when anything failed.
#
#   scripts/openssl-check.sh -c openssl.cnf [-s SOCKET] [-n BYTES] [-m MIN_RISE] [-o OPENSSL]
#
#   -c  OpenSSL configuration to check (default: $OPENSSL_CONF)
#   -s  qeaasd socket (default: the `socket = ` value in the config, else $QEAAS_SOCKET, else
#       /run/qeaas/entropy.sock)
#   -n  bytes to fetch with `openssl rand` (default 64)
#   -m  minimum rise of the counter (default: BYTES). In the seed role OpenSSL draws one seed of
#       at least 32 bytes and the provider fetches a whole batch (4096 by default), so BYTES up
#       to the batch size is met there too.
#   -o  the openssl binary (default: openssl); $QEAAS_BIN names the qeaas client (default: qeaas)
#
# The counter is per uid: another process of the same user drawing at the same moment would
# inflate the rise. Run the check as a user of its own, or where nothing else draws.
set -euo pipefail

conf=${OPENSSL_CONF:-}
socket=
bytes=64
min_rise=
openssl=openssl
qeaas=${QEAAS_BIN:-qeaas}

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 1; }
fail() { echo "openssl-check: FAIL: $*" >&2; exit 1; }

while getopts "c:s:n:m:o:h" opt; do
    case $opt in
        c) conf=$OPTARG ;;
        s) socket=$OPTARG ;;
        n) bytes=$OPTARG ;;
        m) min_rise=$OPTARG ;;
        o) openssl=$OPTARG ;;
        *) usage ;;
    esac
done
[ -n "$conf" ] || usage
[ -r "$conf" ] || fail "cannot read $conf"
[[ $bytes =~ ^[0-9]+$ ]] && [ "$bytes" -gt 0 ] || fail "-n must be a positive number"
min_rise=${min_rise:-$bytes}

if [ -z "$socket" ]; then
    socket=$(sed -n 's/^[[:space:]]*socket[[:space:]]*=[[:space:]]*\(.*[^[:space:]]\)[[:space:]]*$/\1/p' "$conf" | head -n1)
fi
socket=${socket:-${QEAAS_SOCKET:-/run/qeaas/entropy.sock}}

stats() { "$qeaas" --socket "$socket" my-stats; }

gens=$(OPENSSL_CONF=$conf "$openssl" list -random-generators 2>&1) ||
    fail "openssl list -random-generators failed: $gens"
grep -q "QEAAS @" <<<"$gens" ||
    fail "no QEAAS random generator: the provider did not load (check the provider section, module path, activate = 1)"

before=$(stats) || fail "cannot read MY_STATS from qeaasd at $socket"
out=$(OPENSSL_CONF=$conf "$openssl" rand -hex "$bytes" 2>&1) || fail "openssl rand failed: $out"
[ "${#out}" -eq $((2 * bytes)) ] || fail "openssl rand printed ${#out} hex digits, not $((2 * bytes))"
after=$(stats) || fail "cannot read MY_STATS from qeaasd at $socket"

rise=$((after - before))
if [ "$rise" -lt "$min_rise" ]; then
    fail "qeaasd served $rise bytes to uid $(id -u) while openssl rand fetched $bytes: OpenSSL is not drawing from the pool (check \`[random] seed = QEAAS\` or \`random = QEAAS\` and its spelling; OpenSSL silently seeds from the OS otherwise)"
fi
echo "openssl-check: ok: openssl rand -hex $bytes drew through qeaasd at $socket (MY_STATS +$rise bytes)"
