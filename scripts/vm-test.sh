#!/usr/bin/env bash
# The Debian packages proven in a booted Debian 12 guest (qemu-system-x86_64): install over
# rng-tools, boot, the kernel credited from a virtio hwrng, a USB TrueRNG hot-plugged through
# dummy_hcd and a configfs CDC-ACM gadget, the faces (OpenSSL provider, CoAP, HTTPS) from the guest
# and from this host through user-mode port forwarding, an upgrade, a reboot, remove and purge.
# Prints one table: each check, pass or fail, and the boot-to-ready time of each boot.
#
#   scripts/vm-test.sh            packages from target/debian/ (built by scripts/build-debs.sh
#                                 if there are none), or from $QEAAS_VM_DEBS
#   QEAAS_VM_ACCEL=kvm|tcg|auto   auto (default): KVM if the guest kernel prints its banner under
#                                 it within 20 s, else TCG (nested KVM hangs it on this machine kind)
#
# The guest image comes from scripts/vm-image.sh (cached in /var/cache/qeaas-vm); each run boots
# a copy-on-write overlay of it, so the cache stays clean. Logs (serial console, apt, checks) are
# left in target/vm-test/. Needs root (debootstrap once; qemu itself does not).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (scripts/vm-image.sh runs debootstrap)" >&2; exit 77; }
for t in qemu-system-x86_64 qemu-img ssh scp coap-client-gnutls pollinate systemd-analyze; do
  command -v "$t" >/dev/null || { echo "$0: $t missing (scripts/setup-debian.sh installs it)" >&2; exit 69; }
done
DEBS=${QEAAS_VM_DEBS:-target/debian}
LOGS=target/vm-test
T0=$(date +%s)
ls "$DEBS"/qeaasd_*.deb >/dev/null 2>&1 || scripts/build-debs.sh --no-lint

echo "==> guest image"
t=$(date +%s)
IMG=$(scripts/vm-image.sh)
IMAGE_SECS=$(($(date +%s) - t))

rm -rf "$LOGS" && mkdir -p "$LOGS"
work=$(mktemp -d)
QEMU_PID=
cleanup() {
  if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
    kill "$QEMU_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$QEMU_PID" 2>/dev/null || true
  fi
  cp "$work"/console*.log "$LOGS"/ 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
RESULTS=$LOGS/results.tsv
: >"$RESULTS"
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"; printf '    %-4s %s: %s\n' "$2" "$1" "$3"; }

# The previous build for the upgrade check: these packages, repacked with a lower version (the
# maintainer scripts see a real upgrade from it: prerm upgrade, conffile handling, restart).
VER=$(dpkg-deb -f "$DEBS"/qeaasd_*.deb Version)
PREV="$VER~prev1"
mkdir -p "$work/debs/new" "$work/debs/prev"
# Not the -dbgsym packages: nothing in the guest needs them, and they are most of the bytes.
for d in "$DEBS"/*.deb; do
  case "$d" in *-dbgsym_*) continue ;; esac
  cp "$d" "$work/debs/new/"
  r="$work/repack"
  rm -rf "$r" && dpkg-deb -R "$d" "$r"
  sed -i -e "s/^Version: $VER\$/Version: $PREV/" -e "s/(= $VER)/(= $PREV)/g" "$r/DEBIAN/control"
  dpkg-deb -Zgzip -b "$r" "$work/debs/prev/" >/dev/null
done
rm -rf "$work/repack"
cp scripts/vm-guest.sh "$work/"
install -m 0600 "$IMG/id_ed25519" "$work/key"
qemu-img create -q -f qcow2 -b "$IMG/rootfs.img" -F raw "$work/disk.qcow2"

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    ss -Htuln "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}
SSHP=$(free_port)
COAPP=$(free_port)
HTTPSP=$(free_port)

boot() { # $1: accelerator, $2: console log
  qemu-system-x86_64 -name qeaas-vm -nodefaults -no-user-config -display none \
    -machine pc -accel "$1" -smp 2 -m 1024 \
    -kernel "$IMG/vmlinuz" -initrd "$IMG/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 net.ifnames=0" \
    -drive "file=$work/disk.qcow2,if=virtio,format=qcow2,cache=unsafe" \
    -device virtio-rng-pci \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$SSHP-:22,hostfwd=udp:127.0.0.1:$COAPP-:5684,hostfwd=tcp:127.0.0.1:$HTTPSP-:8443" \
    -device virtio-net-pci,netdev=n0 \
    -serial "file:$2" >"$work/qemu.log" 2>&1 &
  QEMU_PID=$!
}
stop_qemu() {
  kill "$QEMU_PID" 2>/dev/null || true
  wait "$QEMU_PID" 2>/dev/null || true
  QEMU_PID=
}

gssh() {
  ssh -q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o ConnectTimeout=10 -o ServerAliveInterval=10 -o ServerAliveCountMax=12 \
    -i "$work/key" -p "$SSHP" root@127.0.0.1 "$@"
}
wait_ssh() { # $1: seconds
  local end=$(($(date +%s) + $1))
  while [ "$(date +%s)" -lt "$end" ]; do
    kill -0 "$QEMU_PID" 2>/dev/null || return 1
    gssh true 2>/dev/null && return 0
    sleep 2
  done
  return 1
}

# KVM only if a kernel really boots under it: nested KVM on this machine kind hangs right after
# decompression, so the kernel gets 20 s to reach its init (in the initrd), else the guest boots
# under TCG.
ACCEL=${QEAAS_VM_ACCEL:-auto}
start_guest() {
  local t=$(date +%s)
  if [ "$ACCEL" = auto ]; then
    ACCEL=tcg
    if [ -w /dev/kvm ]; then
      echo "==> booting the guest under KVM (20 s to reach init)"
      boot kvm "$work/console-kvm.log"
      for _ in $(seq 20); do grep -q 'Run /init' "$work/console-kvm.log" 2>/dev/null && break; sleep 1; done
      if grep -q 'Run /init' "$work/console-kvm.log" 2>/dev/null; then
        ACCEL=kvm
      else
        echo "    the kernel did not reach init under KVM: TCG"
        stop_qemu
        # A pristine overlay again.
        rm -f "$work/disk.qcow2"
        qemu-img create -q -f qcow2 -b "$IMG/rootfs.img" -F raw "$work/disk.qcow2"
      fi
    fi
  fi
  [ "$ACCEL" = tcg ] && ACCEL=tcg,thread=multi
  if [ -z "$QEMU_PID" ]; then
    echo "==> booting the guest ($ACCEL, 2 vCPUs, 1 GiB)"
    boot "$ACCEL" "$work/console.log"
  fi
  wait_ssh 600 || { tail -30 "$work"/console*.log; echo "guest did not come up" >&2; exit 1; }
  echo "    ssh up after $(($(date +%s) - t)) s"
}
reboot_guest() {
  local id t=$(date +%s)
  id=$(gssh cat /proc/sys/kernel/random/boot_id)
  echo "==> rebooting the guest"
  gssh systemctl reboot || true
  local end=$(($(date +%s) + 600))
  while [ "$(date +%s)" -lt "$end" ]; do
    sleep 3
    local now
    now=$(gssh cat /proc/sys/kernel/random/boot_id 2>/dev/null) || continue
    [ -n "$now" ] && [ "$now" != "$id" ] && { echo "    back after $(($(date +%s) - t)) s"; return 0; }
  done
  tail -30 "$work/console.log"
  echo "guest did not come back" >&2
  exit 1
}
# guest PHASE ROUND [ARG]: runs vm-guest.sh in the guest; CHECK lines go to the table.
guest() {
  echo "==> $2: $1"
  # Quoted for the remote shell: rounds are two words ("boot 1").
  gssh bash /root/vm-guest.sh "$(printf '%q ' "$@")" 2>&1 | tee -a "$LOGS/guest.log" | while IFS=$'\t' read -r tag a b c; do
    case "$tag" in
    CHECK) record "$a" "$b" "$c" ;;
    BOOT_TO_READY) echo "$2 $a" >>"$LOGS/ready.txt"; echo "    boot to ready: $a s" ;;
    SECURITY) echo "$tag $a $b" >>"$LOGS/security-$2.txt" ;;
    *) printf '    %s\n' "$tag${a:+ $a}${b:+ $b}${c:+ $c}" ;;
    esac
  done
}

# What scripts/systemd-security.sh claims: the same systemd-analyze, offline, on systemd/.
security_claims() {
  local round=$1 u claim got
  for u in qeaasd qeaas-coapd qeaas-httpsd; do
    claim=$(systemd-analyze security --offline=true --no-pager "systemd/$u.service" 2>/dev/null |
      sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
    got=$(sed -n "s/^SECURITY $u \([0-9.]*\)/\1/p" "$LOGS/security-$round.txt" 2>/dev/null || true)
    if [ -n "$got" ] && [ "$got" = "$claim" ]; then
      record "$round: systemd-analyze security $u" pass "guest $got, systemd-security.sh (offline) $claim"
    else
      record "$round: systemd-analyze security $u" fail "guest ${got:-?}, systemd-security.sh (offline) ${claim:-?}"
    fi
  done
}

# The faces from this host, through qemu's port forwarding.
host_clients() {
  local round=$1 creds key out
  creds=$(gssh bash /root/vm-guest.sh host-creds x)
  key=$(sed -n 's/^COAP_KEY //p' <<<"$creds")
  sed -n 's/^HTTPS_CA //p' <<<"$creds" | base64 -d >"$work/ca.crt"
  out=$work/coap.out
  rm -f "$out"
  timeout 40 coap-client-gnutls -B 15 -m get -u vm-device -k "$key" -o "$out" \
    "coaps://127.0.0.1:$COAPP/entropy" >/dev/null 2>&1 || true
  if [ "$(stat -c %s "$out" 2>/dev/null || echo 0)" = 32 ]; then
    record "$round: coap-client-gnutls from the host" pass "32 bytes over udp 127.0.0.1:$COAPP -> guest 5684"
  else
    record "$round: coap-client-gnutls from the host" fail "$(stat -c %s "$out" 2>/dev/null || echo 0) bytes"
  fi
  if timeout 60 pollinate --testing --strict -s "https://127.0.0.1:$HTTPSP/" -c "--cacert $work/ca.crt" \
    >"$work/pollinate.log" 2>&1; then
    record "$round: pollinate from the host" pass "strict, tcp 127.0.0.1:$HTTPSP -> guest 8443, server's CA"
  else
    record "$round: pollinate from the host" fail "$(tail -1 "$work/pollinate.log")"
  fi
}

start_guest
scp -q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -i "$work/key" \
  -P "$SSHP" -r "$work/debs" "$work/vm-guest.sh" root@127.0.0.1:/root/
guest install install prev
reboot_guest
for round in "boot 1" "boot 2"; do
  guest boot "$round"
  security_claims "$round"
  guest trace-start "$round"
  guest hotplug "$round"
  guest faces "$round"
  guest attack "$round"
  host_clients "$round"
  if [ "$round" = "boot 1" ]; then
    guest upgrade upgrade
    reboot_guest
  fi
done
guest purge purge
gssh systemctl poweroff >/dev/null 2>&1 || true
for _ in $(seq 60); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 1; done
TOTAL=$(($(date +%s) - T0))

echo
echo "==> VM proof: $(grep -c . "$RESULTS") checks, accelerator $ACCEL, guest image $IMAGE_SECS s, total $TOTAL s"
printf '| %-58s | %-4s | %s\n' "check" "" "detail"
printf '|%s|%s|%s\n' "$(printf -- '-%.0s' $(seq 60))" "------" "--------"
while IFS=$'\t' read -r name res detail; do
  printf '| %-58s | %-4s | %s\n' "$name" "$res" "$detail"
done <"$RESULTS"
while read -r a b c; do printf '| %-58s | %-4s | %s s\n' "boot to qeaasd ready ($a $b)" "" "$c"; done <"$LOGS/ready.txt" 2>/dev/null || true
! grep -q $'\tfail\t' "$RESULTS"
