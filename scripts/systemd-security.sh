#!/usr/bin/env bash
# Checks systemd/: qeaasd.service, whose sandbox is compared with jitterentropy-rngd's (the
# best-sandboxed peer on Debian 12), and the frontends' units (qeaas-coapd, qeaas-httpsd,
# qeaas-upstream), in one run:
#   1. systemd-analyze security --offline=true on all of them and the peer: exposure side by side;
#      exit 1 if qeaasd is more exposed than the peer, or a frontend (no capability, no device)
#      more exposed than qeaasd;
#   2. systemd-analyze verify on each unit (on a copy running /bin/true where the binary is not
#      installed); any warning about a unit fails;
#   3. systemd-sysusers --dry-run on all our snippets together, then sysusers and systemd-tmpfiles
#      into a scratch root, checking who owns what they create (the upstream pipe);
#   4. udevadm verify on the udev rules where udevadm has it (systemd >= 254; Debian 12 has 252),
#      otherwise a syntax check of each rule line;
#   5. with --run (root, built binaries in target/release): the daemon and the three frontends,
#      each under its unit's credentials and sandbox, emulated with unshare, setpriv and
#      libseccomp (see "Emulated" below), fed by qeaas-sim:
#      - qeaasd: user nobody, device group nogroup (as udev's "qeaas"), the socket group as its
#        only supplementary group, CAP_SYS_ADMIN as its only (ambient) capability. It must feed
#        the kernel (zero credit: simulated data), send READY=1 from its main PID
#        (NotifyAccess=main), give its socket the socket group, serve a client that has that group
#        as a supplementary one, refuse one without it, and its worker must end with no
#        capabilities;
#      - qeaas-coapd, qeaas-httpsd: started unprivileged (no `user =` in their configs), in the
#        socket group only, with no capability at all; they must serve a real client (qeaas-fetch
#        over DTLS, curl over TLS 1.3) with pool bytes, make no system call the filter refuses
#        (strace), and their credentials must not open the noise source;
#      - qeaas-upstream: qeaas-fetch --follow from that qeaas-coapd into a pipe owned as
#        qeaas-upstream.tmpfiles makes it; the daemon's credentials read the bytes from it,
#        a frontend's cannot.
#      Emulated: User=/Group=/SupplementaryGroups= (unused numeric ids, so nothing is added to
#      /etc/passwd), capability sets, NoNewPrivileges=, SystemCallFilter= (the unit's exact allow
#      list, EPERM for the rest), RestrictAddressFamilies= (socket() of another family fails),
#      MemoryDenyWriteExecute= (prctl PR_SET_MDWE), ProtectSystem=strict (every mount read-only
#      but /proc, /sys, /dev and qeaasd's RuntimeDirectory), PrivateDevices= (a /dev with only
#      null, zero, full, random, urandom, tty). Not emulated: DeviceAllow=, PrivateTmp=,
#      ProtectProc=, the other Protect*= settings, IPAddressDeny=; and no systemd as PID 1 ran
#      any of it.
#   scripts/systemd-security.sh [--run]      (QEAAS_BIN=DIR: binaries from DIR, not target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DAEMON=0
[ "${1:-}" = "--run" ] && RUN_DAEMON=1
UNIT=systemd/qeaasd.service
FRONTENDS="qeaas-coapd qeaas-httpsd qeaas-upstream"
PEER=/lib/systemd/system/jitterentropy.service
fail=0
tmp=$(mktemp -d)
cleanup() {
  local p
  for p in ${PIDS:-}; do kill "$p" 2>/dev/null || true; done
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

# 1. Exposure, all units in one systemd-analyze call (file paths work offline on systemd 252).
units="$UNIT"
for f in $FRONTENDS; do units="$units systemd/$f.service"; done
echo "==> systemd-analyze security --offline=true --no-pager $units $PEER"
# shellcheck disable=SC2086
systemd-analyze security --offline=true --no-pager $units "$PEER" >"$tmp/security.txt" 2>&1 || true
score() { sed -n "s/.*Overall exposure level for $1: \([0-9.]*\).*/\1/p" "$tmp/security.txt"; }
# What still counts against a unit: the ✗ lines of its table (tables end with their score line).
against() {
  awk -v u="$1" '/Overall exposure level for/ { if (index($0, u ":")) exit; n = 0; next }
       /^✗/ {sub(/[[:space:]]+$/, ""); gsub(/[[:space:]][[:space:]]+/, "  "); l[++n] = "      " $0}
       END { for (i = 1; i <= n; i++) print l[i] }' "$tmp/security.txt"
}
ours=$(score qeaasd.service)
peer=$(score jitterentropy.service)
[ -n "$ours" ] && [ -n "$peer" ] || { cat "$tmp/security.txt"; echo "could not read the exposure levels"; exit 1; }
printf '    %-30s %s\n' "unit" "exposure (0 = fully sandboxed .. 10; lower is better)" \
  "qeaasd.service (ours)" "$ours" "jitterentropy.service (peer)" "$peer"
against qeaasd.service
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
if le "$ours" "$peer"; then
  echo "    ok: qeaasd is not more exposed than the peer"
else
  echo "    FAIL: qeaasd ($ours) is more exposed than jitterentropy.service ($peer)"; fail=1
fi
for f in $FRONTENDS; do
  s=$(score "$f.service")
  [ -n "$s" ] || { cat "$tmp/security.txt"; echo "    FAIL: no exposure level for $f.service"; fail=1; continue; }
  printf '    %-30s %s\n' "$f.service" "$s"
  against "$f.service"
  # A frontend holds no capability and no device: it has no excuse to be more exposed.
  if le "$s" "$ours"; then
    echo "    ok: $f is not more exposed than qeaasd"
  else
    echo "    FAIL: $f ($s) is more exposed than qeaasd.service ($ours)"; fail=1
  fi
done

# 2. Syntax. verify exits 0 on unknown keys and bad values, so any line naming a unit fails.
echo "==> systemd-analyze verify"
mkdir -p "$tmp/unit"
for u in $units; do
  n=$(basename "$u")
  exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$u")
  if [ -x "$exe" ]; then
    cp "$u" "$tmp/unit/$n"
  else
    echo "    ($exe not installed: verifying a copy of $n whose ExecStart= runs /bin/true)"
    sed "s#^ExecStart=$exe#ExecStart=/bin/true#" "$u" >"$tmp/unit/$n"
  fi
done
# shellcheck disable=SC2046
out=$(cd "$tmp/unit" && systemd-analyze verify --man=no $(ls) 2>&1) || true
if printf '%s\n' "$out" | grep -q 'qeaas'; then
  printf '%s\n' "$out" | sed "s#$tmp/unit/#systemd/#; s/^/    /"; echo "    FAIL"; fail=1
else
  echo "    ok: $(ls "$tmp/unit" | tr '\n' ' ')"
fi

# 3. sysusers.d and tmpfiles.d snippets (nothing is written to this system). All sysusers snippets
# at once: the frontends' "m" lines use the group qeaasd.sysusers defines.
echo "==> systemd-sysusers --dry-run, then sysusers and systemd-tmpfiles into a scratch root"
sysusers=$(ls "$PWD"/systemd/*.sysusers)
tmpfiles=$(ls "$PWD"/systemd/*.tmpfiles)
# shellcheck disable=SC2086
if out=$(systemd-sysusers --dry-run $sysusers 2>&1) \
   && ! printf '%s\n' "$out" | grep -qiE 'fail|invalid|ignoring|syntax'; then
  printf '%s\n' "$out" | grep -i 'creating' | sed 's/^/    /' || echo "    ok (users and groups already exist)"
else
  printf '%s\n' "$out" | sed 's/^/    /'; echo "    FAIL: sysusers"; fail=1
fi
root=$tmp/root
mkdir -p "$root/etc"
# tmpfiles resolves the names in the scratch root's /etc/passwd, which sysusers just wrote.
# shellcheck disable=SC2086
if out=$(systemd-sysusers --root="$root" $sysusers 2>&1; systemd-tmpfiles --root="$root" --create $tmpfiles 2>&1) \
   && ! printf '%s\n' "$out" | grep -qiE 'fail|invalid|ignoring|syntax|unknown'; then
  # root is not in the scratch files (sysusers only writes the accounts it creates).
  id_of() { if [ "$2" = root ]; then echo 0; else awk -F: -v n="$2" '$1 == n {print $3}' "$root/etc/$1"; fi; }
  # path type mode user group, as the snippets and the units' comments say.
  while read -r path type mode user group; do
    want="$type $mode $(id_of passwd "$user"):$(id_of group "$group")"
    got=$(stat -c '%F %a %u:%g' "$root$path" 2>/dev/null || echo missing)
    if [ "$got" = "$want" ]; then
      echo "    ok: $path $type $mode $user:$group"
    else
      echo "    FAIL: $path is '$got', want '$want' ($user:$group)"; fail=1
    fi
  done <<'EOF'
/etc/qeaas directory 755 root root
/run/qeaas-upstream directory 755 root root
/run/qeaas-upstream/upstream.fifo fifo 640 qeaas-upstream qeaas
EOF
  # Who is in the socket group: the daemon (to chown its socket) and the socket's clients, never
  # the feeder; nobody but the daemon in its device group.
  members=$(awk -F: '$1 == "qeaas-clients" {print $4}' "$root/etc/group")
  devmembers=$(awk -F: '$1 == "qeaas" {print $4}' "$root/etc/group")
  if [ "$members" = "qeaas,qeaas-coap,qeaas-https" ] && [ -z "$devmembers" ]; then
    echo "    ok: qeaas-clients = $members; qeaas (devices) has no supplementary member"
  else
    echo "    FAIL: qeaas-clients = '$members', qeaas = '$devmembers'"; fail=1
  fi
else
  printf '%s\n' "$out" | sed 's/^/    /'; echo "    FAIL: sysusers/tmpfiles into $root"; fail=1
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

# 5. Optional: the real binaries under their units' credentials and sandbox (emulated).
if [ "$RUN_DAEMON" = 1 ]; then
  echo "==> qeaasd and the frontends under their units' credentials and sandbox (emulated)"
  [ "$(id -u)" -eq 0 ] || { echo "    --run needs root"; exit 2; }
  BIN=${QEAAS_BIN:-target/release}
  for b in qeaasd qeaas-sim qeaas qeaas-coapd qeaas-httpsd qeaas-fetch; do
    [ -x "$BIN/$b" ] || { echo "    $BIN/$b missing: build it first (cargo build --release -p qeaas --bins -p qeaas-coap -p qeaas-https)"; exit 2; }
  done
  for c in setpriv unshare strace curl; do
    command -v "$c" >/dev/null || { echo "    $c missing (apt-get install util-linux strace curl)"; exit 2; }
  done
  # Debian's python3 (the user nobody cannot reach a per-user one such as pyenv's under /root).
  PY=/usr/bin/python3
  [ -x "$PY" ] || PY=$(command -v python3)
  # Copies: the units' users must reach them, and a concurrent build must not swap them mid-run.
  mkdir -p "$tmp/bin"
  for b in qeaasd qeaas-sim qeaas qeaas-coapd qeaas-httpsd qeaas-fetch; do cp "$BIN/$b" "$tmp/bin/"; done
  BIN=$tmp/bin
  chmod 0755 "$tmp"
  # Stand-ins for the sysusers accounts: qeaasd keeps nobody, with nogroup standing for the device
  # group "qeaas"; the others get ids no account uses, so nothing is added to /etc/passwd.
  CLIENTS=60901 COAP=60902 HTTPS=60903 UPSTREAM=60904 OTHER=60905
  for i in $CLIENTS $COAP $HTTPS $UPSTREAM $OTHER; do
    if getent passwd "$i" >/dev/null || getent group "$i" >/dev/null; then
      echo "    id $i is in use here: pick other stand-in ids"; exit 2
    fi
  done
  NOGROUP=$(getent group nogroup | cut -d: -f3)
  NOCAPS="--inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs"

  # Allow list = @default + the unit's SystemCallFilter= lines applied in order (the first is an
  # allow list, then ~ removes and a plain line adds back), expanded by systemd-analyze itself.
  # Also from the unit: RestrictAddressFamilies= (socket() only for the listed families; EPERM,
  # where systemd answers EAFNOSUPPORT) and MemoryDenyWriteExecute= (PR_SET_MDWE, which execve
  # keeps).
  cat >"$tmp/seccomp_exec.py" <<'EOF'
import ctypes, os, re, socket, subprocess, sys
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
allow, families, mdwe = None, None, False
for line in open(unit):
    m = re.match(r"\s*(SystemCallFilter|RestrictAddressFamilies|MemoryDenyWriteExecute)=(.*)", line)
    if not m:
        continue
    key, v = m.group(1), m.group(2).strip()
    if key == "RestrictAddressFamilies":
        assert not v.startswith("~"), "only allow lists are emulated"
        families = [getattr(socket, f) for f in v.split()]
        continue
    if key == "MemoryDenyWriteExecute":
        mdwe = v == "yes"
        continue
    names = set().union(*[expand(i) for i in v.lstrip("~").split()])
    if allow is None:
        assert not v.startswith("~"), "the first SystemCallFilter= must be an allow list"
        allow = expand("@default") | names
    elif v.startswith("~"):
        allow -= names
    else:
        allow |= names
class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]
lib = ctypes.CDLL("libseccomp.so.2")
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp)]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
ctx = lib.seccomp_init(0x00050000 | 1)          # SCMP_ACT_ERRNO(EPERM)
n = 0
for name in sorted(allow):
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr < 0:
        continue
    if name == "socket" and families is not None:
        for f in families:                          # SCMP_CMP_EQ on the first argument
            assert lib.seccomp_rule_add_array(ctx, 0x7FFF0000, nr, 1, ArgCmp(0, 4, f, 0)) == 0
        n += 1
    elif lib.seccomp_rule_add(ctx, 0x7FFF0000, nr, 0) == 0:   # SCMP_ACT_ALLOW
        n += 1
if mdwe:
    libc = ctypes.CDLL(None, use_errno=True)
    # PR_SET_MDWE (65), PR_MDWE_REFUSE_EXEC_GAIN: no mapping may become writable and executable.
    assert libc.prctl(65, 1, 0, 0, 0) == 0, f"PR_SET_MDWE: {os.strerror(ctypes.get_errno())}"
assert lib.seccomp_load(ctx) == 0, "seccomp_load failed"
fams = "any family" if families is None else " ".join(str(f) for f in families)
print(f"sandbox: {n} system calls allowed, the rest fail with EPERM; socket() for {fams};"
      f" MemoryDenyWriteExecute {'on' if mdwe else 'off'}", file=sys.stderr)
os.execv(cmd[0], cmd)
EOF
  # The mounts, in a private mount namespace (unshare): ProtectSystem=strict makes every mount but
  # /proc, /sys, /dev and the --writable ones read-only; --private-devices (PrivateDevices=yes)
  # puts a /dev with the pseudo-devices only in place. A mount that cannot be made read-only is
  # an error, not a silently weaker sandbox.
  cat >"$tmp/sandbox.sh" <<'EOF'
set -euo pipefail
pd=0; rw=()
while [ "$1" != -- ]; do
  case $1 in --private-devices) pd=1 ;; --writable) rw+=("$2"); shift ;; esac; shift
done
shift
if [ "$pd" = 1 ]; then
  stage=$(mktemp -d)
  mount -t tmpfs -o mode=0755,nosuid,noexec tmpfs "$stage"
  for n in null zero full random urandom tty; do touch "$stage/$n"; mount --bind "/dev/$n" "$stage/$n"; done
  mkdir -m 1777 "$stage/shm"
  mount --move "$stage" /dev
fi
for d in "${rw[@]}"; do mount --bind "$d" "$d"; done
for m in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
  case $m in /proc | /proc/* | /sys | /sys/* | /dev | /dev/*) continue ;; esac
  for d in "${rw[@]}"; do [ "$m" = "$d" ] && continue 2; done
  mount -o remount,bind,ro "$m" || { echo "sandbox: cannot make $m read-only" >&2; exit 1; }
done
exec "$@"
EOF
  # in_unit UNIT "SETPRIV OPTIONS" "SANDBOX OPTIONS" COMMAND...: in the background; unshare,
  # bash, setpriv and python all exec, so $! is the command's PID.
  in_unit() {
    local unit=$1 creds=$2 box=$3; shift 3
    # shellcheck disable=SC2086
    unshare --mount --propagation private -- bash "$tmp/sandbox.sh" $box -- \
      setpriv $creds "$PY" "$tmp/seccomp_exec.py" "$unit" "$@" &
  }
  # traced LOG UNIT ...: the same under strace, whose log shows any system call refused after the
  # command started. The command is strace's child (the same PID through every exec): both go
  # into PIDS, since a killed strace leaves its tracee running.
  traced() {
    local log=$1 unit=$2 creds=$3 box=$4 child="" _; shift 4
    # shellcheck disable=SC2086
    strace -f -qq -o "$log" -- unshare --mount --propagation private -- bash "$tmp/sandbox.sh" $box -- \
      setpriv $creds "$PY" "$tmp/seccomp_exec.py" "$unit" "$@" &
    PIDS="$PIDS $!"
    for _ in $(seq 50); do child=$(pgrep -P "$!" | head -1 || true); [ -n "$child" ] && break; sleep 0.05; done
    PIDS="$PIDS $child"
  }

  RUNDIR=$(mktemp -d /run/qeaas-security.XXXXXX)
  mkdir -p "$RUNDIR/sim"
  chown nobody:nogroup "$RUNDIR"; chmod 0755 "$RUNDIR"   # as RuntimeDirectory= (User=, Mode=0755)
  port=$((20000 + RANDOM % 20000))
  cport=$((port + 1)) hport=$((port + 2))
  cat >"$tmp/qeaasd.toml" <<EOF
[kernel]
interval_secs = 2
feed_bytes = 64
feed_uncredited = true
[socket]
path = "$RUNDIR/entropy.sock"
mode = 0o660
group = "$CLIENTS"
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
  chmod 0644 "$tmp/qeaasd.toml"
  "$BIN/qeaas-sim" --fifo "$RUNDIR/sim/qrandom0" --pty "$RUNDIR/sim/ttyTRNG" --rate 4M 2>"$tmp/sim.log" &
  PIDS="$!"
  for _ in $(seq 50); do [ -p "$RUNDIR/sim/qrandom0" ] && [ -L "$RUNDIR/sim/ttyTRNG" ] && break; sleep 0.1; done
  # The devices belong to the daemon's group, with the modes the udev rules give them.
  chgrp nogroup "$RUNDIR/sim/qrandom0" "$(readlink -f "$RUNDIR/sim/ttyTRNG")"
  chmod 0640 "$RUNDIR/sim/qrandom0"; chmod 0660 "$(readlink -f "$RUNDIR/sim/ttyTRNG")"
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
  PIDS="$PIDS $!"
  for _ in $(seq 50); do [ -S "$tmp/notify.sock" ] && break; sleep 0.1; done

  echo "  -- qeaasd.service: nobody:nogroup + $CLIENTS, CAP_SYS_ADMIN ambient, /run/... writable"
  NOTIFY_SOCKET=$tmp/notify.sock in_unit "$UNIT" \
    "--reuid=nobody --regid=nogroup --groups=$CLIENTS --inh-caps=-all,+sys_admin --ambient-caps=-all,+sys_admin --bounding-set=-all,+sys_admin --no-new-privs" \
    "--writable $RUNDIR" "$BIN/qeaasd" run --config "$tmp/qeaasd.toml" 2>"$tmp/daemon.log"
  DAEMON_PID=$!
  PIDS="$PIDS $DAEMON_PID"
  ok=0
  for _ in $(seq 100); do
    curl -s "127.0.0.1:$port/metrics" 2>/dev/null | grep -q '^qeaas_kernel_ioctls_total{ioctl="RNDADDENTROPY"} [1-9]' && { ok=1; break; }
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
  done
  sup=$(pgrep -f "qeaasd run --config $tmp/qeaasd.toml" | head -1 || true)
  wrk=$(pgrep -f "qeaasd worker --config $tmp/qeaasd.toml" | head -1 || true)
  creds() { awk '/^(Uid|Gid|Groups|CapEff|CapBnd|NoNewPrivs|Seccomp):/ {printf "%s %s  ", $1, $2}' "/proc/$1/status"; }
  [ -n "$sup" ] && echo "    supervisor: $(creds "$sup")"
  [ -n "$wrk" ] && echo "    worker:     $(creds "$wrk")"
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
  # The socket: the worker (not root, no CAP_CHOWN) gave it the socket group through its
  # supplementary membership (SupplementaryGroups=qeaas-clients).
  got=$(stat -c '%a %g' "$RUNDIR/entropy.sock" 2>/dev/null || echo missing)
  if [ "$got" = "660 $CLIENTS" ]; then
    echo "    ok: socket mode 0660, group $CLIENTS (qeaas-clients), set by the unprivileged worker"
  else
    echo "    FAIL: socket is '$got', want '660 $CLIENTS'"; fail=1
  fi
  # A client whose primary group is not the socket's: served through its supplementary groups,
  # which the daemon takes from the socket (SO_PEERGROUPS, recorded at connect). One without the
  # group is refused.
  if setpriv --reuid=$OTHER --regid=$OTHER --groups=$CLIENTS "$BIN/qeaas" -s "$RUNDIR/entropy.sock" get -n 16 --hex >/dev/null 2>"$tmp/client.log"; then
    echo "    ok: a client in qeaas-clients by supplementary group only is served"
  else
    echo "    FAIL: supplementary-group client refused: $(cat "$tmp/client.log")"; fail=1
  fi
  if setpriv --reuid=$OTHER --regid=$OTHER --clear-groups "$BIN/qeaas" -s "$RUNDIR/entropy.sock" get -n 16 --hex >/dev/null 2>&1; then
    echo "    FAIL: a client outside qeaas-clients was served"; fail=1
  else
    echo "    ok: a client outside qeaas-clients is refused"
  fi

  # refused LOG BINARY: system calls that failed with EPERM (the filter's answer), EROFS (the
  # read-only mounts), or EACCES from mmap/mprotect (MDWE), in BINARY's process and its threads,
  # after it was executed.
  refused() {
    awk -v exe="execve(\"$2\"" '
      index($0, exe) && / = 0$/ { on[$1] = 1; next }
      ($1 in on) && /(clone3?|fork|vfork)\(|resumed>/ && $NF ~ /^[0-9]+$/ && $NF > 0 { on[$NF] = 1 }
      ($1 in on) && (/ = -1 (EPERM|EROFS|EAFNOSUPPORT) / || /(mmap|mprotect)\(.* = -1 EACCES /) { print "      " $0 }' "$1"
  }
  # Credentials and sandbox of a running frontend; exits 1 unless as the unit says.
  frontend_ok() { # name pid uid groups
    local s=/proc/$2/status
    echo "    $1: $(creds "$2")"
    awk -v uid="$3" -v groups="$4" '
      /^Uid:/ { ok += ($2 == uid && $3 == uid && $4 == uid) }
      /^Groups:/ { g = ""; for (i = 2; i <= NF; i++) g = g (g ? " " : "") $i; ok += (g == groups) }
      /^Cap(Inh|Prm|Eff|Bnd|Amb):/ { ok += ($2 ~ /^0+$/) }
      /^NoNewPrivs:/ { ok += ($2 == 1) }
      /^Seccomp:/ { ok += ($2 == 2) }
      END { exit !(ok == 9) }' "$s"
  }

  # Each frontend's config as the docs give it: no `user =` (it starts unprivileged), readable
  # by its own group only (PSKs, keys).
  psk=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf %s "$psk" >"$tmp/client.psk"; chmod 0600 "$tmp/client.psk"
  cat >"$tmp/coapd.toml" <<EOF
listen = "127.0.0.1:$cport"
socket = "$RUNDIR/entropy.sock"
max_bytes = 256
[[psk]]
identity = "security-check"
key = "$psk"
EOF
  chown root:$COAP "$tmp/coapd.toml"; chmod 0640 "$tmp/coapd.toml"
  "$BIN/qeaas-httpsd" gen-cert --dir "$tmp/https" >/dev/null
  chown root:$HTTPS "$tmp/https/server.key"; chmod 0640 "$tmp/https/server.key"
  token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  cat >"$tmp/httpsd.toml" <<EOF
listen = "127.0.0.1:$hport"
socket = "$RUNDIR/entropy.sock"
[tls]
cert = "$tmp/https/server.crt"
key = "$tmp/https/server.key"
[[client]]
name = "security-check"
token_sha256 = "$(printf %s "$token" | "$BIN/qeaas-httpsd" hash-token)"
quota_bytes = 1048576
rate_per_sec = 100.0
burst = 100
EOF
  chown root:$HTTPS "$tmp/httpsd.toml"; chmod 0640 "$tmp/httpsd.toml"
  # The upstream pipe as qeaas-upstream.tmpfiles makes it: in a root directory, the feeder's,
  # readable by the daemon's group.
  mkdir -m 0755 "$tmp/up"
  mkfifo -m 0640 "$tmp/up/upstream.fifo"; chown $UPSTREAM:nogroup "$tmp/up/upstream.fifo"
  cp "$tmp/client.psk" "$tmp/up.psk"; chown root:$UPSTREAM "$tmp/up.psk"; chmod 0640 "$tmp/up.psk"

  echo "  -- qeaas-coapd.service: uid $COAP, groups $CLIENTS only, no capabilities"
  traced "$tmp/coapd.strace" systemd/qeaas-coapd.service "--reuid=$COAP --regid=$COAP --groups=$CLIENTS $NOCAPS" \
    "--private-devices" "$BIN/qeaas-coapd" -c "$tmp/coapd.toml" 2>"$tmp/coapd.log"
  got=""
  for _ in $(seq 20); do
    got=$("$BIN/qeaas-fetch" "coaps://127.0.0.1:$cport/entropy?n=32" --psk-identity security-check \
      --psk-key-file "$tmp/client.psk" --handshake-timeout 2 --hex 2>"$tmp/fetch.log") && break
    sleep 0.5
  done
  if [[ $got =~ ^[0-9a-f]{64}$ ]]; then
    echo "    ok: qeaas-fetch got 32 pool bytes over DTLS from the sandboxed qeaas-coapd"
  else
    echo "    FAIL: no answer from qeaas-coapd: $(tail -3 "$tmp/fetch.log")"; sed 's/^/      /' "$tmp/coapd.log" | tail -10; fail=1
  fi
  coapd=$(pgrep -f "^$BIN/qeaas-coapd -c $tmp/coapd.toml" | head -1 || true)
  if [ -n "$coapd" ] && frontend_ok qeaas-coapd "$coapd" $COAP "$CLIENTS"; then
    echo "    ok: uid $COAP, only the socket group, no capability in any set, no_new_privs, seccomp"
  else
    echo "    FAIL: qeaas-coapd not running or not with the unit's credentials"; fail=1
  fi

  echo "  -- qeaas-httpsd.service: uid $HTTPS, groups $CLIENTS only, no capabilities"
  traced "$tmp/httpsd.strace" systemd/qeaas-httpsd.service "--reuid=$HTTPS --regid=$HTTPS --groups=$CLIENTS $NOCAPS" \
    "--private-devices" "$BIN/qeaas-httpsd" -c "$tmp/httpsd.toml" run 2>"$tmp/httpsd.log"
  n=0
  for _ in $(seq 40); do
    n=$(curl -sf -m 5 --cacert "$tmp/https/ca.crt" -H "Authorization: Bearer $token" \
      -H 'Accept: application/octet-stream' "https://127.0.0.1:$hport/api/v1/entropy?bytes=32" | wc -c || true)
    [ "$n" = 32 ] && break
    sleep 0.25
  done
  health=$(curl -s -m 5 -o /dev/null -w '%{http_code}' --cacert "$tmp/https/ca.crt" "https://127.0.0.1:$hport/health" || true)
  if [ "$n" = 32 ] && [ "$health" = 200 ]; then
    echo "    ok: curl got 32 pool bytes over TLS from the sandboxed qeaas-httpsd; /health 200"
  else
    echo "    FAIL: qeaas-httpsd gave $n bytes, /health $health"; sed 's/^/      /' "$tmp/httpsd.log" | tail -10; fail=1
  fi
  httpsd=$(pgrep -f "^$BIN/qeaas-httpsd -c $tmp/httpsd.toml" | head -1 || true)
  if [ -n "$httpsd" ] && frontend_ok qeaas-httpsd "$httpsd" $HTTPS "$CLIENTS"; then
    echo "    ok: uid $HTTPS, only the socket group, no capability in any set, no_new_privs, seccomp"
  else
    echo "    FAIL: qeaas-httpsd not running or not with the unit's credentials"; fail=1
  fi

  echo "  -- qeaas-upstream.service: uid $UPSTREAM, no groups, no capabilities"
  traced "$tmp/upstream.strace" systemd/qeaas-upstream.service "--reuid=$UPSTREAM --regid=$UPSTREAM --clear-groups $NOCAPS" \
    "--private-devices" "$BIN/qeaas-fetch" --follow -o "$tmp/up/upstream.fifo" --psk-identity security-check \
    --psk-key-file "$tmp/up.psk" "coaps://127.0.0.1:$cport/entropy?n=64" 2>"$tmp/upstream.log"
  # The daemon's credentials read the pipe (through its group); a frontend's cannot open it.
  n=$(timeout 20 setpriv --reuid=nobody --regid=nogroup --clear-groups head -c 256 "$tmp/up/upstream.fifo" | wc -c || true)
  if [ "$n" = 256 ]; then
    echo "    ok: 256 bytes through the pipe (writer under ProtectSystem=strict, reader uid nobody by group)"
  else
    echo "    FAIL: $n bytes through the pipe"; sed 's/^/      /' "$tmp/upstream.log" | tail -10; fail=1
  fi
  up=$(pgrep -f "^$BIN/qeaas-fetch --follow -o $tmp/up/upstream.fifo" | head -1 || true)
  if [ -n "$up" ] && frontend_ok qeaas-upstream "$up" $UPSTREAM ""; then
    echo "    ok: uid $UPSTREAM, no supplementary group, no capability in any set, no_new_privs, seccomp"
  else
    echo "    FAIL: qeaas-fetch --follow not running or not with the unit's credentials"; fail=1
  fi
  if timeout 5 setpriv --reuid=$COAP --regid=$COAP --groups=$CLIENTS head -c 1 "$tmp/up/upstream.fifo" >/dev/null 2>"$tmp/deny.log"; then
    echo "    FAIL: a frontend's credentials read the upstream pipe"; fail=1
  elif grep -q 'Permission denied' "$tmp/deny.log"; then
    echo "    ok: a frontend's credentials cannot open the upstream pipe"
  else
    echo "    FAIL: reading the pipe as a frontend failed otherwise: $(cat "$tmp/deny.log")"; fail=1
  fi

  echo "  -- least privilege and the sandbox's refusals"
  # The point of qeaas-clients: a frontend's credentials reach the socket, not the noise source.
  if timeout 5 setpriv --reuid=$COAP --regid=$COAP --groups=$CLIENTS head -c 1 "$RUNDIR/sim/qrandom0" >/dev/null 2>"$tmp/deny.log"; then
    echo "    FAIL: a frontend's credentials read the noise source"; fail=1
  elif grep -q 'Permission denied' "$tmp/deny.log"; then
    echo "    ok: a frontend's credentials (qeaas-clients) cannot open the noise source (group qeaas)"
  else
    echo "    FAIL: reading the noise source as a frontend failed otherwise: $(cat "$tmp/deny.log")"; fail=1
  fi
  # Stop the frontends (strace then finishes its log) and look for refused system calls.
  for p in ${coapd:-} ${httpsd:-} ${up:-}; do kill "$p" 2>/dev/null || true; done
  sleep 1
  for f in coapd:qeaas-coapd httpsd:qeaas-httpsd upstream:qeaas-fetch; do
    r=$(refused "$tmp/${f%%:*}.strace" "$BIN/${f#*:}")
    if [ ! -s "$tmp/${f%%:*}.strace" ]; then
      echo "    FAIL: no strace log for ${f#*:}"; fail=1
    elif [ -n "$r" ]; then
      echo "    FAIL: system calls refused to ${f#*:} (EPERM: filter; EROFS: read-only; EAFNOSUPPORT):"
      printf '%s\n' "$r" | head -20; fail=1
    else
      echo "    ok: ${f#*:}: no system call refused by the filter, the families or the read-only mounts"
    fi
  done
fi

exit "$fail"
