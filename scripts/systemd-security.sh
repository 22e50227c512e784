#!/usr/bin/env bash
# Checks systemd/ and compares the sandbox of our unit with jitterentropy-rngd's (the
# best-sandboxed peer on Debian 12), in one run:
#   1. systemd-analyze security --offline=true on both units: exposure side by side; exit 1 if ours
#      is the more exposed;
#   2. systemd-analyze verify on qeaasd.service (on a copy running /bin/true if /usr/sbin/qeaasd is
#      not installed); any warning about the unit fails;
#   3. systemd-sysusers --dry-run and systemd-tmpfiles (into a scratch root) on our snippets;
#   4. udevadm verify on the udev rules where udevadm has it (systemd >= 254; Debian 12 has 252),
#      otherwise a syntax check of each rule line;
#   5. with --run (root, built binaries in target/release): the daemon under the unit's credentials
#      and syscall filter, emulated with setpriv and libseccomp: user nobody, CAP_SYS_ADMIN as its
#      only (ambient) capability, no_new_privs, the unit's exact SystemCallFilter= allow list with
#      EPERM for the rest (as SystemCallErrorNumber=EPERM), fed by qeaas-sim. It must feed the
#      kernel (with zero credit: simulated data), send READY=1 from its main PID (NotifyAccess=main),
#      serve a client that is in the socket group only as a supplementary group, and its worker
#      must end up with no capabilities. Not emulated: the device ACL, mount namespaces, IP filter.
#   scripts/systemd-security.sh [--run]      (QEAAS_BIN=DIR: binaries from DIR, not target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DAEMON=0
[ "${1:-}" = "--run" ] && RUN_DAEMON=1
UNIT=systemd/qeaasd.service
PEER=/lib/systemd/system/jitterentropy.service
fail=0
tmp=$(mktemp -d)
cleanup() {
  [ -z "${SIM_PID:-}" ] || kill "$SIM_PID" 2>/dev/null || true
  [ -z "${DAEMON_PID:-}" ] || kill "$DAEMON_PID" 2>/dev/null || true
  [ -z "${NOTIFY_PID:-}" ] || kill "$NOTIFY_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
  [ -z "${RUNDIR:-}" ] || rm -rf "$RUNDIR"
  return 0
}
trap cleanup EXIT

# The peer's unit: install jitterentropy-rngd without starting it (RUNLEVEL=1 keeps the postinst
# from starting it; disable it afterwards: we want its unit file, not a second daemon).
if [ ! -f "$PEER" ]; then
  [ "$(id -u)" -eq 0 ] || { echo "$0: $PEER missing; run as root to apt-get install jitterentropy-rngd" >&2; exit 2; }
  echo "==> apt-get install jitterentropy-rngd (for its unit file)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends jitterentropy-rngd >/dev/null
  systemctl disable --now jitterentropy.service >/dev/null 2>&1 || true
fi

# 1. Exposure, both units in one systemd-analyze call (file paths work offline on systemd 252).
echo "==> systemd-analyze security --offline=true --no-pager $UNIT $PEER"
systemd-analyze security --offline=true --no-pager "$UNIT" "$PEER" >"$tmp/security.txt" 2>&1 || true
score() { sed -n "s/.*Overall exposure level for $1: \([0-9.]*\).*/\1/p" "$tmp/security.txt"; }
ours=$(score qeaasd.service)
peer=$(score jitterentropy.service)
[ -n "$ours" ] && [ -n "$peer" ] || { cat "$tmp/security.txt"; echo "could not read the exposure levels"; exit 1; }
printf '    %-30s %s\n' "unit" "exposure (0 = fully sandboxed .. 10; lower is better)" \
  "qeaasd.service (ours)" "$ours" "jitterentropy.service (peer)" "$peer"
# What still counts against ours (the ✗ lines of our table only: it comes first).
awk '/Overall exposure level for qeaasd.service/ {exit}
     /^✗/ {sub(/[[:space:]]+$/, ""); gsub(/[[:space:]][[:space:]]+/, "  "); print "      " $0}' "$tmp/security.txt"
if awk -v a="$ours" -v b="$peer" 'BEGIN { exit !(a <= b) }'; then
  echo "    ok: ours is not more exposed than the peer"
else
  echo "    FAIL: ours ($ours) is more exposed than jitterentropy.service ($peer)"; fail=1
fi

# 2. Syntax. verify exits 0 on unknown keys and bad values, so any line naming the unit fails.
echo "==> systemd-analyze verify"
mkdir -p "$tmp/unit"
if [ -x /usr/sbin/qeaasd ]; then
  cp "$UNIT" "$tmp/unit/qeaasd.service"
else
  echo "    (/usr/sbin/qeaasd not installed: verifying a copy whose ExecStart= runs /bin/true)"
  sed 's#^ExecStart=/usr/sbin/qeaasd#ExecStart=/bin/true#' "$UNIT" >"$tmp/unit/qeaasd.service"
fi
out=$(systemd-analyze verify --man=no "$tmp/unit/qeaasd.service" 2>&1) || true
if printf '%s\n' "$out" | grep -q 'qeaasd'; then
  printf '%s\n' "$out" | sed "s#$tmp/unit/#$(dirname "$UNIT")/#; s/^/    /"; echo "    FAIL"; fail=1
else
  echo "    ok"
fi

# 3. sysusers.d and tmpfiles.d snippets (nothing is written to this system).
echo "==> systemd-sysusers --dry-run, systemd-tmpfiles --root=SCRATCH --create"
if out=$(systemd-sysusers --dry-run "$PWD/systemd/qeaasd.sysusers" 2>&1) \
   && ! printf '%s\n' "$out" | grep -qiE 'fail|invalid|ignoring|syntax'; then
  printf '%s\n' "$out" | grep -i 'creating' | sed 's/^/    /' || echo "    ok (user and group already exist)"
else
  printf '%s\n' "$out" | sed 's/^/    /'; echo "    FAIL: sysusers"; fail=1
fi
if out=$(systemd-tmpfiles --root="$tmp/root" --create "$PWD/systemd/qeaasd.tmpfiles" 2>&1) && [ -z "$out" ]; then
  echo "    ok: tmpfiles"
else
  printf '%s\n' "$out" | sed 's/^/    /'; echo "    FAIL: tmpfiles"; fail=1
fi

# 4. udev rules.
RULES=systemd/90-qeaas.rules
if command -v udevadm >/dev/null && udevadm verify --help >/dev/null 2>&1; then
  echo "==> udevadm verify $RULES"
  udevadm verify "$RULES" || fail=1
else
  echo "==> udev rules: syntax of each line (udevadm verify needs systemd >= 254; skipped)"
  # KEY or KEY{attr}, an operator, a double-quoted value; comma-separated.
  bad=$(grep -nvE '^[[:space:]]*(#|$)' "$RULES" \
    | grep -vE '^[0-9]+:[[:space:]]*[A-Z_]+(\{[^}]+\})?[[:space:]]*(==|!=|\+=|-=|:=|=)[[:space:]]*"[^"]*"([[:space:]]*,[[:space:]]*[A-Z_]+(\{[^}]+\})?[[:space:]]*(==|!=|\+=|-=|:=|=)[[:space:]]*"[^"]*")*[[:space:]]*$' || true)
  if [ -n "$bad" ]; then printf '    bad line %s\n' "$bad"; fail=1; else echo "    ok"; fi
fi

# 5. Optional: the real daemon under the unit's credentials and syscall filter.
if [ "$RUN_DAEMON" = 1 ]; then
  echo "==> qeaasd under the unit's user, capabilities and SystemCallFilter= (emulated)"
  [ "$(id -u)" -eq 0 ] || { echo "    --run needs root"; exit 2; }
  BIN=${QEAAS_BIN:-target/release}
  for b in qeaasd qeaas-sim qeaas; do
    [ -x "$BIN/$b" ] || { echo "    $BIN/$b missing: build it first (cargo build --release --bins)"; exit 2; }
  done
  command -v setpriv >/dev/null || { echo "    setpriv missing (util-linux)"; exit 2; }
  # Debian's python3 (the user nobody cannot reach a per-user one such as pyenv's under /root).
  PY=/usr/bin/python3
  [ -x "$PY" ] || PY=$(command -v python3)
  # Copies: nobody must reach them, and a concurrent build must not swap them mid-run.
  mkdir -p "$tmp/bin"
  cp "$BIN/qeaasd" "$BIN/qeaas-sim" "$BIN/qeaas" "$tmp/bin/"
  BIN=$tmp/bin
  # Allow list = @default + the unit's SystemCallFilter= lines applied in order (the first is an
  # allow list, then ~ removes and a plain line adds back), expanded by systemd-analyze itself.
  cat >"$tmp/seccomp_exec.py" <<'EOF'
import ctypes, os, re, subprocess, sys
unit, cmd = sys.argv[1], sys.argv[2:]
groups, cur = {}, None
out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"], capture_output=True, text=True, check=True).stdout
for line in out.splitlines():
    s = line.strip()
    if line.startswith("@"):
        cur = s; groups[cur] = []
    elif cur and s and not s.startswith("#"):
        groups[cur].append(s)
def expand(n):
    return set().union(*[expand(m) for m in groups[n]]) if n.startswith("@") else {n}
allow = None
for line in open(unit):
    m = re.match(r"\s*SystemCallFilter=(.*)", line)
    if not m:
        continue
    v = m.group(1).strip()
    names = set().union(*[expand(i) for i in v.lstrip("~").split()])
    if allow is None:
        assert not v.startswith("~"), "the first SystemCallFilter= must be an allow list"
        allow = expand("@default") | names
    elif v.startswith("~"):
        allow -= names
    else:
        allow |= names
lib = ctypes.CDLL("libseccomp.so.2")
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
ctx = lib.seccomp_init(0x00050000 | 1)          # SCMP_ACT_ERRNO(EPERM)
n = 0
for name in sorted(allow):
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr >= 0 and lib.seccomp_rule_add(ctx, 0x7FFF0000, nr, 0) == 0:   # SCMP_ACT_ALLOW
        n += 1
assert lib.seccomp_load(ctx) == 0, "seccomp_load failed"
print(f"seccomp: {n} system calls allowed, the rest fail with EPERM", file=sys.stderr)
os.execv(cmd[0], cmd)
EOF
  RUNDIR=$(mktemp -d /run/qeaas-security.XXXXXX)
  mkdir -p "$RUNDIR/sim"
  chown nobody:nogroup "$RUNDIR"; chmod 0750 "$RUNDIR"   # as RuntimeDirectory= (User=, Mode=0750)
  port=$((20000 + RANDOM % 20000))
  cat >"$tmp/qeaasd.toml" <<EOF
[kernel]
interval_secs = 2
feed_bytes = 64
feed_uncredited = true
[socket]
path = "$RUNDIR/entropy.sock"
mode = 0o660
group = "nogroup"
[metrics]
listen = "127.0.0.1:$port"
[[source]]
name = "quantis-sim"
kind = "quantis"
path = "$RUNDIR/sim/qrandom0"
[[source]]
name = "truerng-sim"
kind = "serial"
preset = "truerng"
path = "$RUNDIR/sim/ttyTRNG"
EOF
  chmod 0644 "$tmp/qeaasd.toml"; chmod 0755 "$tmp"
  "$BIN/qeaas-sim" --fifo "$RUNDIR/sim/qrandom0" --pty "$RUNDIR/sim/ttyTRNG" --rate 4M 2>"$tmp/sim.log" &
  SIM_PID=$!
  for _ in $(seq 50); do [ -p "$RUNDIR/sim/qrandom0" ] && [ -L "$RUNDIR/sim/ttyTRNG" ] && break; sleep 0.1; done
  # The devices belong to the daemon's group, as the udev rules arrange.
  chgrp nogroup "$RUNDIR/sim/qrandom0" "$(readlink -f "$RUNDIR/sim/ttyTRNG")"
  chmod g+rw "$RUNDIR/sim/qrandom0" "$(readlink -f "$RUNDIR/sim/ttyTRNG")"
  # A stand-in for systemd's notification socket, recording each message with its sender's PID.
  cat >"$tmp/notify.py" <<'EOF'
import os, socket, struct, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(path)
os.chmod(path, 0o777)
with open(out, "a", buffering=1) as f:
    while True:
        msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = next((struct.unpack("iII", d)[0] for lvl, typ, d in anc
                    if lvl == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS), -1)
        f.write(f"{pid} {' '.join(msg.decode(errors='replace').split())}\n")
EOF
  "$PY" "$tmp/notify.py" "$tmp/notify.sock" "$tmp/notify.log" &
  NOTIFY_PID=$!
  for _ in $(seq 50); do [ -S "$tmp/notify.sock" ] && break; sleep 0.1; done
  NOTIFY_SOCKET=$tmp/notify.sock setpriv --reuid=nobody --regid=nogroup --clear-groups \
    --inh-caps=-all,+sys_admin --ambient-caps=-all,+sys_admin --bounding-set=-all,+sys_admin \
    --no-new-privs "$PY" "$tmp/seccomp_exec.py" "$UNIT" \
    "$BIN/qeaasd" run --config "$tmp/qeaasd.toml" 2>"$tmp/daemon.log" &
  DAEMON_PID=$!
  ok=0
  for _ in $(seq 100); do
    curl -s "127.0.0.1:$port/metrics" 2>/dev/null | grep -q '^qeaas_kernel_ioctls_total{ioctl="RNDADDENTROPY"} [1-9]' && { ok=1; break; }
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
  done
  sup=$(pgrep -f "qeaasd run --config $tmp/qeaasd.toml" | head -1 || true)
  wrk=$(pgrep -f "qeaasd worker --config $tmp/qeaasd.toml" | head -1 || true)
  caps() { awk '/^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):/ {printf "%s %s  ", $1, $2}' "/proc/$1/status"; }
  [ -n "$sup" ] && echo "    supervisor: $(caps "$sup")"
  [ -n "$wrk" ] && echo "    worker:     $(caps "$wrk")"
  if [ "$ok" = 1 ] && [ -n "$wrk" ] && grep -q '^CapEff:[[:space:]]*0*$' "/proc/$wrk/status"; then
    echo "    ok: kernel fed (RNDADDENTROPY as nobody with ambient CAP_SYS_ADMIN); worker has no capabilities"
  else
    echo "    FAIL: daemon did not feed the kernel or the worker kept capabilities; its log:"
    sed 's/\x1b\[[0-9;]*m//g; s/^/      /' "$tmp/daemon.log" | tail -15; fail=1
  fi
  # Type=notify with NotifyAccess=main: READY=1 must come from the main PID (the supervisor).
  for _ in $(seq 30); do grep -q "READY=1" "$tmp/notify.log" 2>/dev/null && break; sleep 0.1; done
  if grep -q "^$DAEMON_PID .*READY=1" "$tmp/notify.log" 2>/dev/null; then
    echo "    ok: READY=1 sent by the main PID ($DAEMON_PID), as NotifyAccess=main requires"
  else
    echo "    FAIL: no READY=1 from the main PID $DAEMON_PID; notifications seen (PID message):"
    sed 's/^/      /' "$tmp/notify.log" 2>/dev/null; fail=1
  fi
  # A client whose primary group is not the socket's: served through its supplementary groups,
  # which the daemon reads from /proc/PID/status (hence no ProtectProc= in the unit).
  if setpriv --reuid=daemon --regid=daemon --groups=nogroup "$BIN/qeaas" -s "$RUNDIR/entropy.sock" get -n 16 --hex >/dev/null 2>"$tmp/client.log"; then
    echo "    ok: a client in the socket group by supplementary group only is served"
  else
    echo "    FAIL: supplementary-group client refused: $(cat "$tmp/client.log")"; fail=1
  fi
fi

exit "$fail"
