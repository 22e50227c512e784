#!/bin/bash
# The checks that scripts/vm-test.sh runs inside the booted Debian guest, as root, one phase per
# call:  vm-guest.sh PHASE [ARGS]   (the packages are in /root/debs/{prev,new}/).
# Each check prints one line "CHECK<TAB>name<TAB>pass|fail<TAB>detail"; the host collects them
# into the final table. Other output is the log.
set -uo pipefail
export LC_ALL=C DEBIAN_FRONTEND=noninteractive
PHASE=${1:?phase}
ROUND=${2:-}
PREFIX=${ROUND:+$ROUND: }
METRICS=http://127.0.0.1:9864/metrics
GADGET=/sys/kernel/config/usb_gadget/truerng

say() { echo "--- $*"; }
result() { printf 'CHECK\t%s%s\t%s\t%s\n' "$PREFIX" "$1" "$2" "$3"; }
# check NAME DETAIL COMMAND...: pass if COMMAND succeeds.
check() {
  local name=$1 detail=$2
  shift 2
  if "$@"; then result "$name" pass "$detail"; else result "$name" fail "$detail"; fi
}
# Value of one metric line (exact name with labels), or nothing.
metric() { curl -s --max-time 5 "$METRICS" | awk -v k="$1" '$1==k {print $2; exit}'; }
state_of() {
  curl -s --max-time 5 "$METRICS" |
    awk -v s="$1" 'index($1, "qeaas_source_state{source=\"" s "\"") == 1 && $2 == 1 {
      match($1, /state="[a-z]+"/); print substr($1, RSTART + 7, RLENGTH - 8)}'
}
# wait_for SECONDS COMMAND...: poll every second.
wait_for() {
  local t=$1
  shift
  for _ in $(seq "$t"); do "$@" && return 0; sleep 1; done
  "$@"
}
gt() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { exit !(a > b) }'; }
show() { systemctl show -p "$2" --value "$1"; }

# The administrator's edits to /etc/qeaas/qeaasd.toml for this machine: no Quantis card; the
# virtio hwrng and a TrueRNG on USB as sources. A marker line shows that upgrades keep them.
edit_config() {
  local c=/etc/qeaas/qeaasd.toml
  sed -i -e '/^path = "\/dev\/qrandom0"/a enable = false' \
    -e '/^name = "truerng"/,/^$/ s/^enable = false/enable = true/' \
    -e '/^name = "hwrng"/,$ s/^enable = false/enable = true/' "$c"
  echo '# vm-test: edited by the administrator' >>"$c"
  qeaasd check-config
}

# ---- USB TrueRNG: a configfs CDC-ACM gadget on dummy_hcd, TrueRNG's ids ----
gadget_create() {
  modprobe dummy_hcd && modprobe libcomposite || return 1
  mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
  [ -d "$GADGET" ] && return 0
  mkdir -p "$GADGET" && cd "$GADGET" || return 1
  echo 0x04d8 >idVendor
  echo 0xf5fe >idProduct
  mkdir -p strings/0x409 configs/c.1/strings/0x409 functions/acm.usb0
  echo ubld.it >strings/0x409/manufacturer
  echo TrueRNG >strings/0x409/product
  echo vm-test >strings/0x409/serialnumber
  echo ACM >configs/c.1/strings/0x409/configuration
  ln -s functions/acm.usb0 configs/c.1/
  cd / || return 1
}
gadget_plug() { ls /sys/class/udc | head -1 >"$GADGET/UDC"; }
gadget_unplug() { echo "" >"$GADGET/UDC"; }
# qeaas-sim writes into the gadget's side of the line, /dev/ttyGS0 (raw, so no byte is altered),
# as a transient unit so that it outlives this ssh session. Not nohup: when stdout is a terminal,
# nohup sends it to ./nohup.out instead, and the gadget never sees a byte.
feed_start() {
  stty -F /dev/ttyGS0 raw -echo || return 1
  systemctl reset-failed vm-feed 2>/dev/null
  systemd-run -q --unit vm-feed --collect sh -c 'exec qeaas-sim --stdout 100000000000 </dev/null >/dev/ttyGS0 2>/dev/null'
}
feed_stop() {
  systemctl stop vm-feed 2>/dev/null
  return 0
}

# ---- checks ----

phase_install() {
  local dir=/root/debs/$1
  check "rngd running before" "rng-tools-debian is what qeaasd must take over from" \
    systemctl is-active --quiet rng-tools-debian
  say "apt-get install $(ls "$dir")"
  if apt-get install -y "$dir"/*.deb >/root/apt-install.log 2>&1; then
    result "install (apt, offline)" pass "$(ls "$dir" | grep -c deb) packages"
  else
    tail -20 /root/apt-install.log
    result "install (apt, offline)" fail "see apt-install.log"
    return
  fi
  check "takes over from rng-tools" "rng-tools-debian removed by Conflicts/Replaces" \
    sh -c '! dpkg -l rng-tools-debian 2>/dev/null | grep -q "^ii"'
  check "accounts (sysusers)" "qeaas, qeaas-clients, qeaas-coap, qeaas-https, qeaas-upstream" \
    sh -c '{ getent passwd qeaas && getent group qeaas-clients && getent passwd qeaas-coap && getent passwd qeaas-https && getent passwd qeaas-upstream; } >/dev/null'
  check "qeaasd started by postinst" "$(show qeaasd StatusText)" systemctl is-active --quiet qeaasd
  check "upstream feeder installed disabled" "no /etc/qeaas/upstream.env yet" \
    sh -c '[ "$(systemctl is-enabled qeaas-upstream)" = disabled ]'
  check "qeaas-coapd waits, disabled, for a PSK" "$(systemctl is-enabled qeaas-coapd), $(systemctl is-active qeaas-coapd); no [[psk]] in the conffile" \
    sh -c '[ "$(systemctl is-enabled qeaas-coapd)" = disabled ] && ! systemctl is-active --quiet qeaas-coapd && ! grep -q "^\[\[psk\]\]" /etc/qeaas/coapd.toml'
  check "qeaas-httpsd up with a host certificate" "$(systemctl is-active qeaas-httpsd); key $(stat -c '%U:%G %a' /etc/qeaas/https/server.key 2>/dev/null); config $(stat -c '%U:%G %a' /etc/qeaas/qeaas-httpsd.toml)" \
    sh -c 'systemctl is-active --quiet qeaas-httpsd && [ "$(stat -c %G:%a /etc/qeaas/https/server.key)" = qeaas-https:640 ]'
  check "administrator's config edit" "hwrng and truerng on, no Quantis" edit_config
  systemctl restart qeaasd
}

# Once the administrator has configured the frontends for their own clients (phase_faces), the
# credentials printed in the shipped examples must still not work, and other local users must not
# read the frontends' secrets. Each refusal counts only while the configured client is served.
phase_attack() {
  local out ctl code ok
  out=$(mktemp)
  timeout 20 coap-client-gnutls -B 8 -m get -u vm-device -k "$(cat /root/coap-client.key)" \
    -o "$out" coaps://127.0.0.1:5684/entropy >/dev/null 2>&1
  ctl=$(stat -c %s "$out" 2>/dev/null || echo 0)
  rm -f "$out"
  timeout 20 coap-client-gnutls -B 8 -m get -u device-1 -k 'replace this with a long random passphrase' \
    -o "$out" coaps://127.0.0.1:5684/entropy >/dev/null 2>&1
  check "example PSK refused (coapd)" "device-1 with the key printed in config/coapd.toml: $(stat -c %s "$out" 2>/dev/null || echo 0) bytes; the configured vm-device: $ctl bytes" \
    sh -c "[ '$ctl' = 32 ] && [ ! -s '$out' ]"
  rm -f "$out"
  ok=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert /etc/qeaas/https/ca.crt -X POST \
    -d 'challenge=x' https://localhost:8443/)
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert /etc/qeaas/https/ca.crt \
    -H 'Authorization: Bearer test' 'https://localhost:8443/api/v1/entropy?bytes=32')
  check "example token refused (httpsd)" "Bearer test (its sha256 is in the shipped example): HTTP $code; pollen (anonymous): HTTP $ok" \
    sh -c "[ '$ok' = 200 ] && { [ '$code' = 401 ] || [ '$code' = 403 ]; }"
  local f readable=""
  for f in /etc/qeaas/coapd.toml /etc/qeaas/qeaas-httpsd.toml /etc/qeaas/coap/* /etc/qeaas/https/*; do
    [ -f "$f" ] || continue
    case "$f" in *.pem | *.crt) continue ;; esac # certificates are public
    setpriv --reuid=nobody --regid=nogroup --clear-groups cat "$f" >/dev/null 2>&1 && readable="$readable $f"
  done
  check "secrets unreadable by other users" "${readable:-none readable by nobody}" sh -c "[ -z '$readable' ]"
}

phase_boot() {
  check "qeaasd active after boot" "$(show qeaasd StatusText)" systemctl is-active --quiet qeaasd
  # Ready only after the first seeding: READY=1 came with STATUS="kernel seeded" (not the
  # timeout's), and the journal's "first seeding done" precedes systemd's "Started".
  local status
  status=$(show qeaasd StatusText)
  check "ready after the first seeding" "status: $status" sh -c "[ '$status' = 'kernel seeded' ]"
  local q s
  q=$(show qeaasd ActiveEnterTimestampMonotonic)
  s=$(show sysinit.target ActiveEnterTimestampMonotonic)
  check "ready before sysinit.target" "qeaasd ready at $(awk -v q="$q" 'BEGIN{printf "%.2f", q/1e6}') s, sysinit.target at $(awk -v s="$s" 'BEGIN{printf "%.2f", s/1e6}') s" \
    sh -c "[ '$q' -gt 0 ] && [ '$q' -le '$s' ]"
  printf "BOOT_TO_READY\t%s\n" "$(awk -v q="$q" 'BEGIN{printf "%.2f", q/1e6}')"
  systemd-analyze critical-chain qeaasd.service sysinit.target 2>/dev/null | sed 's/^/    /' || true
  journalctl -b -o short-monotonic -u qeaasd --no-pager | grep -E 'first seeding|Started|opened' | head -5 | sed 's/^/    /'
  # Credited the kernel from the virtio hwrng: metrics, then the ioctl itself (strace).
  local credit hw
  wait_for 30 sh -c "[ \"\$(curl -s $METRICS | awk '\$1==\"qeaas_kernel_credit_total\" {print \$2}')\" != 0 ]"
  credit=$(metric qeaas_kernel_credit_total)
  hw=$(metric 'qeaas_source_credit_total{source="hwrng"}')
  check "hwrng credited to the kernel (metrics)" "kernel credit ${credit:-?} bits; hwrng source credit ${hw:-?}; hwrng $(state_of hwrng); /dev/hwrng $(stat -c '%G %a' /dev/hwrng)" \
    sh -c "$(declare -f gt); gt '$credit' 0 && gt '$hw' 0"
  local pid interval trace
  pid=$(show qeaasd MainPID)
  interval=$(sed -n 's/^interval_secs = \([0-9]*\)/\1/p' /etc/qeaas/qeaasd.toml | head -1)
  trace=$(mktemp)
  timeout $((interval + 15)) strace -q -f -e trace=ioctl -e signal=none -p "$pid" -o "$trace" 2>/dev/null &
  local sp=$!
  wait_for $((interval + 15)) grep -q 'RNDADDENTROPY, {entropy_count=[1-9]' "$trace"
  kill "$sp" 2>/dev/null
  wait "$sp" 2>/dev/null
  check "RNDADDENTROPY with credit (strace)" "$(grep -m1 -o 'RNDADDENTROPY, {entropy_count=[0-9]*, buf_size=[0-9]*' "$trace" || echo "none in $((interval + 15)) s")" \
    grep -q 'RNDADDENTROPY, {entropy_count=[1-9]' "$trace"
  rm -f "$trace"
  local u
  for u in qeaasd qeaas-coapd qeaas-httpsd; do
    printf "SECURITY\t%s\t%s\n" "$u" "$(systemd-analyze security --no-pager "$u.service" 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')"
  done
}

phase_hotplug() {
  # Start from a stopped daemon: the plug itself must start it (90-qeaas.rules, SYSTEMD_WANTS).
  systemctl stop qeaasd
  gadget_create || { result "TrueRNG gadget" fail "dummy_hcd/configfs"; return; }
  gadget_plug
  wait_for 30 test -e /dev/ttyACM0
  check "TrueRNG appears as /dev/ttyACM0" "$(udevadm info -q property -n /dev/ttyACM0 2>/dev/null | grep -E '^ID_(VENDOR|MODEL)_ID=' | tr '\n' ' ')driver $(basename "$(readlink -f /sys/class/tty/ttyACM0/device/driver)")" \
    test -c /dev/ttyACM0
  check "udev rule applied" "$(stat -c '%G %a' /dev/ttyACM0 2>/dev/null), /dev/truerng -> $(readlink /dev/truerng)" \
    sh -c '[ "$(stat -c %G /dev/ttyACM0)" = qeaas ] && [ -L /dev/truerng ]'
  feed_start
  wait_for 60 systemctl is-active --quiet qeaasd
  check "plug starts qeaasd" "$(journalctl -b -u qeaasd -o cat --no-pager | grep -m1 -i 'start')" \
    systemctl is-active --quiet qeaasd
  local pid before after
  pid=$(show qeaasd MainPID)
  wait_for 90 sh -c "[ \"\$(curl -s $METRICS | awk 'index(\$0, \"qeaas_source_state{source=\\\"truerng\\\",state=\\\"healthy\\\"}\") == 1 {print \$2}')\" = 1 ]"
  before=$(metric 'qeaas_source_credit_total{source="truerng"}')
  sleep 5
  after=$(metric 'qeaas_source_credit_total{source="truerng"}')
  check "TrueRNG read and credited" "state $(state_of truerng), credit $before -> $after bits" gt "$after" "$before"
  # Unplug: unbind the UDC. The device disappears; qeaasd must notice and stop crediting it.
  gadget_unplug
  feed_stop
  wait_for 30 sh -c '! test -e /dev/ttyACM0'
  wait_for 30 sh -c "[ \"\$(curl -s $METRICS | awk 'index(\$0, \"qeaas_source_state{source=\\\"truerng\\\",state=\\\"healthy\\\"}\") == 1 {print \$2}')\" = 0 ]"
  before=$(metric 'qeaas_source_credit_total{source="truerng"}')
  sleep 5
  after=$(metric 'qeaas_source_credit_total{source="truerng"}')
  check "unplug detected, no credit" "state $(state_of truerng), unplugs $(metric 'qeaas_source_unplugs_total{source="truerng"}'), credit $before -> $after; $(journalctl -b -u qeaasd -o cat --no-pager | grep -i truerng | grep -iE 'unplug|end of data|failed' | tail -1)" \
    sh -c "[ '$before' = '$after' ] && [ \"\$(systemctl show -p MainPID --value qeaasd)\" = '$pid' ]"
  # Replug: bind again, feed again; same process, crediting again.
  gadget_plug
  wait_for 30 test -e /dev/ttyACM0
  feed_start
  wait_for 90 sh -c "[ \"\$(curl -s $METRICS | awk 'index(\$0, \"qeaas_source_state{source=\\\"truerng\\\",state=\\\"healthy\\\"}\") == 1 {print \$2}')\" = 1 ]"
  before=$(metric 'qeaas_source_credit_total{source="truerng"}')
  sleep 5
  after=$(metric 'qeaas_source_credit_total{source="truerng"}')
  check "replug resumes without restart" "state $(state_of truerng), credit $before -> $after, pid $pid -> $(show qeaasd MainPID), NRestarts $(show qeaasd NRestarts)" \
    sh -c "$(declare -f gt); gt '$after' '$before' && [ \"\$(systemctl show -p MainPID --value qeaasd)\" = '$pid' ]"
}

phase_faces() {
  # OpenSSL, through the installed provider, enabled by including the shipped snippet. Only for
  # this check: with it, every OpenSSL program seeds from qeaasd and fails closed for users
  # outside qeaas-clients (sshd's unprivileged child among them).
  local cnf=/etc/ssl/openssl.cnf
  cp "$cnf" /root/openssl.cnf.orig
  echo '.include /etc/ssl/qeaas-provider.cnf' >>"$cnf"
  check "openssl rand via the provider" "$(openssl list -random-generators 2>&1 | grep -o 'QEAAS @ qeaas' | head -1); $(/usr/libexec/qeaas/openssl-check -c "$cnf" 2>&1 | tail -1)" \
    /usr/libexec/qeaas/openssl-check -c "$cnf"
  check "provider fails closed for non-members" "nobody (not in qeaas-clients): $(setpriv --reuid=nobody --regid=nogroup --clear-groups openssl rand -hex 8 2>&1 | head -1 | cut -c1-80)" \
    sh -c '! setpriv --reuid=nobody --regid=nogroup --clear-groups openssl rand -hex 8 >/dev/null 2>&1'
  cp /root/openssl.cnf.orig "$cnf"

  # CoAP: the administrator adds a device's PSK, then restarts; libcoap's client fetches.
  local key=/root/coap-client.key
  [ -s "$key" ] || od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$key"
  if ! grep -q 'identity = "vm-device"' /etc/qeaas/coapd.toml; then
    printf '\n[[psk]]\nidentity = "vm-device"\nkey = "%s"\n' "$(cat "$key")" >>/etc/qeaas/coapd.toml
    systemctl enable qeaas-coapd 2>/dev/null
    systemctl restart qeaas-coapd
  fi
  wait_for 20 systemctl is-active --quiet qeaas-coapd
  check "qeaas-coapd under its unit" "user $(ps -o user= -p "$(show qeaas-coapd MainPID)" 2>/dev/null), CapEff $(awk '/CapEff/ {print $2}' "/proc/$(show qeaas-coapd MainPID)/status" 2>/dev/null)" \
    systemctl is-active --quiet qeaas-coapd
  local out=/root/coap.out
  rm -f "$out"
  timeout 30 coap-client-gnutls -B 10 -m get -u vm-device -k "$(cat "$key")" -o "$out" coaps://127.0.0.1:5684/entropy >/dev/null 2>&1
  check "coap-client-gnutls in the guest" "$(stat -c %s "$out" 2>/dev/null || echo 0) bytes: $(od -An -tx1 -N8 "$out" 2>/dev/null | tr -d ' \n')" \
    sh -c "[ \"\$(stat -c %s '$out')\" = 32 ]"

  # HTTPS: pollinate (strict: it checks the server's hash of its challenge) and the JSON API.
  wait_for 20 systemctl is-active --quiet qeaas-httpsd
  check "qeaas-httpsd under its unit" "user $(ps -o user= -p "$(show qeaas-httpsd MainPID)" 2>/dev/null), CapEff $(awk '/CapEff/ {print $2}' "/proc/$(show qeaas-httpsd MainPID)/status" 2>/dev/null)" \
    systemctl is-active --quiet qeaas-httpsd
  # --testing writes the seed to stdout (binary): kept out of the CHECK lines.
  if pollinate --testing --strict -s https://localhost:8443/ -c "--cacert /etc/qeaas/https/ca.crt" \
    >/root/pollinate.out 2>/root/pollinate.err; then
    result "pollinate in the guest" pass "strict, $(stat -c %s /root/pollinate.out) bytes of seed output"
  else
    result "pollinate in the guest" fail "$(tail -1 /root/pollinate.err | tr -d '\t' | cut -c1-80)"
  fi
}

# The host's clients need the PSK and the CA: printed for the host to pick up.
phase_host_creds() {
  echo "COAP_KEY $(cat /root/coap-client.key)"
  echo "HTTPS_CA $(base64 -w0 /etc/qeaas/https/ca.crt)"
}

# Start recording every RNDADDENTROPY the kernel receives (any process), for the upgrade's gap.
phase_trace_start() {
  local t=/sys/kernel/tracing
  [ -d $t/events/syscalls ] || mount -t tracefs nodev $t
  echo 0 >$t/tracing_on
  echo >$t/trace
  echo 'cmd == 0x40085203' >$t/events/syscalls/sys_enter_ioctl/filter
  echo 1 >$t/events/syscalls/sys_enter_ioctl/enable
  echo 1 >$t/tracing_on
}
feeds() { awk '/sys_ioctl/ && /cmd: 40085203/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+:$/) { sub(":", "", $i); print $i } }' /sys/kernel/tracing/trace; }

phase_upgrade() {
  local dir=/root/debs/new old_pid t0 t1
  old_pid=$(show qeaasd MainPID)
  # At least one feed by the old process before the upgrade.
  wait_for 90 sh -c "[ -n \"\$(awk '/cmd: 40085203/' /sys/kernel/tracing/trace)\" ]"
  t0=$(awk '{print $1}' /proc/uptime)
  say "upgrade: apt-get install $(ls "$dir")"
  if apt-get install -y "$dir"/*.deb >/root/apt-upgrade.log 2>&1; then
    result "upgrade (apt, offline)" pass "$(dpkg-query -W -f '${Version}' qeaasd) over the previous build"
  else
    tail -20 /root/apt-upgrade.log
    result "upgrade (apt, offline)" fail "see apt-upgrade.log"
  fi
  t1=$(awk '{print $1}' /proc/uptime)
  check "conffile edits kept" "$(grep -c 'vm-test: edited by the administrator' /etc/qeaas/qeaasd.toml) marker line; $(ls /etc/qeaas/*.dpkg-* 2>/dev/null | wc -l) .dpkg-* files" \
    sh -c "grep -q 'vm-test: edited by the administrator' /etc/qeaas/qeaasd.toml && grep -q 'identity = \"vm-device\"' /etc/qeaas/coapd.toml && ! ls /etc/qeaas/*.dpkg-* >/dev/null 2>&1"
  check "qeaasd restarted on the new binary" "pid $old_pid -> $(show qeaasd MainPID), $(show qeaasd StatusText)" \
    sh -c "systemctl is-active --quiet qeaasd && [ \"\$(systemctl show -p MainPID --value qeaasd)\" != '$old_pid' ]"
  # Feeding continues: the first feed after the upgrade, and the largest gap between two feeds.
  local interval
  interval=$(sed -n 's/^interval_secs = \([0-9]*\)/\1/p' /etc/qeaas/qeaasd.toml | head -1)
  wait_for 60 sh -c "$(declare -f feeds); feeds | awk -v t=$t1 '\$1 > t' | grep -q ."
  # The restart itself: the old process's last feed (its final feed, at SIGTERM) to the new
  # process's first. And the longest gap between any two feeds across the upgrade.
  local started gap restart
  started=$(awk -v us="$(show qeaasd ExecMainStartTimestampMonotonic)" 'BEGIN { printf "%.6f", us / 1e6 }')
  restart=$(feeds | awk -v s="$started" '$1 < s { last = $1 } $1 >= s && !first { first = $1 }
    END { if (last && first) printf "%.1f", first - last }')
  gap=$(feeds | awk -v a="$t0" -v b="$t1" '
    { t[NR] = $1 }
    END { for (i = 2; i <= NR; i++) if (t[i] > a && t[i - 1] < b && t[i] - t[i - 1] > g) g = t[i] - t[i - 1]
          printf "%.1f", g }')
  local apt_s
  apt_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
  printf "UPGRADE_GAP\t%s\n" "restart gap $restart s, longest gap $gap s, interval $interval s, apt $apt_s s"
  check "kernel feeding gap across the upgrade" "old process's final feed to the new one's first: ${restart:-?} s; longest gap between feeds ${gap} s (interval ${interval} s; apt took $apt_s s); $(journalctl -b -u qeaasd -o cat --no-pager | grep -c 'final feed before stopping') final feeds" \
    sh -c "$(declare -f gt); gt '$gap' 0 && ! gt '$gap' '$interval' && [ -n '$restart' ] && gt '$interval' '$restart'"
}

phase_purge() {
  feed_stop
  [ -d "$GADGET" ] && gadget_unplug 2>/dev/null
  local pkgs
  pkgs=$(dpkg-query -W -f '${Package} ${Status}\n' 'qeaas*' 'libqeaas*' 2>/dev/null | awk '/installed$/ {print $1}' | tr '\n' ' ')
  apt-get remove -y $pkgs >/root/apt-remove.log 2>&1
  check "remove" "$pkgs" sh -c '! systemctl is-active --quiet qeaasd && [ ! -e /usr/sbin/qeaasd ] && [ -e /etc/qeaas/qeaasd.toml ]'
  apt-get purge -y $pkgs >/root/apt-purge.log 2>&1
  local left=""
  for f in /etc/qeaas /var/lib/qeaas /run/qeaas /run/qeaas-upstream /etc/ssl/qeaas-provider.cnf \
    /usr/lib/x86_64-linux-gnu/ossl-modules/qeaas.so /lib/udev/rules.d/90-qeaas.rules /usr/libexec/qeaas \
    /lib/systemd/system/qeaasd.service /lib/systemd/system/qeaas-coapd.service \
    /lib/systemd/system/qeaas-httpsd.service /lib/systemd/system/qeaas-upstream.service; do
    [ -e "$f" ] && left="$left $f"
  done
  for f in /etc/systemd/system/*/qeaas* /var/lib/systemd/deb-systemd-helper-enabled/qeaas* \
    /var/lib/systemd/deb-systemd-helper-enabled/*/qeaas* /usr/lib/sysusers.d/qeaas* /usr/lib/tmpfiles.d/qeaas*; do
    [ -e "$f" ] && left="$left $f"
  done
  local users
  users=$(grep -E '^qeaas' /etc/passwd /etc/group | cut -d: -f2 | tr '\n' ' ')
  local orphans
  orphans=$(find / -xdev \( -nouser -o -nogroup \) 2>/dev/null | head -5 | tr '\n' ' ')
  check "purge leaves nothing" "files:${left:- none}; accounts: ${users:-none}; unowned files: ${orphans:-none}; overrides: $(dpkg-statoverride --list | grep -c qeaas)" \
    sh -c "[ -z '$left' ] && [ -z '$users' ] && [ -z '$orphans' ] && ! dpkg-statoverride --list | grep -q qeaas && [ -z \"\$(systemctl list-unit-files 'qeaas*' --no-legend)\" ]"
  apt-get install -y /root/rng-tools/rng-tools-debian_*.deb >/root/apt-rngtools.log 2>&1
  wait_for 20 systemctl is-active --quiet rng-tools-debian
  check "rng-tools installs back" "rng-tools-debian $(dpkg-query -W -f '${Version}' rng-tools-debian 2>/dev/null), $(systemctl is-active rng-tools-debian)" \
    systemctl is-active --quiet rng-tools-debian
}

case "$PHASE" in
install) phase_install "${3:-prev}" ;;
attack) phase_attack ;;
boot) phase_boot ;;
hotplug) phase_hotplug ;;
faces) phase_faces ;;
host-creds) phase_host_creds ;;
trace-start) phase_trace_start ;;
upgrade) phase_upgrade ;;
purge) phase_purge ;;
*) echo "unknown phase $PHASE" >&2; exit 2 ;;
esac
exit 0
