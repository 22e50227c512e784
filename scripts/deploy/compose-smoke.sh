#!/usr/bin/env bash
# Brings up scripts/deploy/compose.yaml (qeaasd, two CoAP/DTLS frontends, the HTTPS frontend) with
# docker-compose and checks that each frontend serves pool bytes and every container runs as
# uid 990 with no capability. Run scripts/deploy/docker-smoke.sh first: it builds the image
# (qeaas:smoke, tagged `qeaas` here, as compose.yaml names it).
#
# What differs from a production host, on purpose: compose.yaml is copied and the Quantis
# `devices:` line is replaced by a bind mount of a named pipe fed by qeaas-sim (a pipe is not a
# device node, and Docker refuses it as one); the secrets are this run's; the nginx service is not
# started (its image comes from Docker Hub, which the project's build machines cannot reach;
# nginx-coap-udp.conf is tested with Debian's nginx by qeaas-coap/tests/nginx.rs).
#
#   scripts/deploy/compose-smoke.sh      # root, a Docker engine, docker-compose (Debian: 1.29)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root" >&2; exit 77; }
command -v docker-compose >/dev/null || apt-get install -y -q docker-compose >/dev/null
docker image inspect qeaas:smoke >/dev/null 2>&1 ||
  { echo "$0: no image qeaas:smoke: run scripts/deploy/docker-smoke.sh first" >&2; exit 69; }
docker tag qeaas:smoke qeaas
[ -e /dev/qrandom0 ] && { echo "$0: /dev/qrandom0 exists: not on a host with a real Quantis" >&2; exit 69; }

WORK=$(mktemp -d /tmp/qeaas-compose.XXXXXX)
P=qeaassmoke
cleanup() {
  (cd "$WORK/deploy" 2>/dev/null && docker-compose -p $P -f compose.yaml down -v >/dev/null 2>&1) || true
  kill "${SIM:-}" 2>/dev/null || true
  rm -f /dev/qrandom0
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

cp -r scripts/deploy "$WORK/"
cd "$WORK/deploy"
grep -q '^    devices: \["/dev/qrandom0:/dev/qrandom0"\]' compose.yaml
sed -i -e 's|^    devices: \["/dev/qrandom0:/dev/qrandom0"\].*|    # (smoke test: the simulated Quantis is a pipe, bind-mounted below)|' \
  -e 's|^      - ./qeaasd.container.toml:/etc/qeaas/qeaasd.toml:ro|&\n      - /dev/qrandom0:/dev/qrandom0|' compose.yaml

PSK=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
TOKEN=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
sed -i "s/^key = .*/key = \"$PSK\"/" coapd.container.toml
sed -i "s/^token_sha256 = .*/token_sha256 = \"$(printf %s "$TOKEN" | docker run --rm -i qeaas qeaas-httpsd hash-token)\"/" \
  httpsd.container.toml
mkdir -p https && chmod 0777 https
docker run --rm -v "$PWD/https:/out" qeaas qeaas-httpsd gen-cert --dir /out --alg ecdsa-p256 \
  --san localhost --san 127.0.0.1 >/dev/null
chmod 0755 https

(cd "$ROOT" && cargo build -q --release --locked -p qeaas --bin qeaas-sim)
"$ROOT/target/release/qeaas-sim" --fifo /dev/qrandom0 --rate 4M 2>"$WORK/sim.log" &
SIM=$!
for _ in $(seq 50); do [ -p /dev/qrandom0 ] && break; sleep 0.1; done
# The device's group on the host is root's here (compose.yaml: group_add QRANDOM_GID).
chmod 0660 /dev/qrandom0

QRANDOM_GID=0 docker-compose -p $P -f compose.yaml up -d --no-build qeaasd coapd-1 coapd-2 httpsd >/dev/null 2>&1 ||
  { QRANDOM_GID=0 docker-compose -p $P -f compose.yaml up --no-build qeaasd 2>&1 | tail -20; exit 1; }

fail=0
check() { if "$@"; then :; else echo "    FAILED: $*"; fail=1; fi; }
api=""
for _ in $(seq 30); do
  api=$(curl -sf --max-time 5 --cacert https/ca.crt -H "Authorization: Bearer $TOKEN" \
    'https://127.0.0.1:443/api/v1/entropy?bytes=32' || true)
  [ -n "$api" ] && break
  sleep 1
done
echo "    httpsd (published on 443, curl): ${api:-failed}"
check grep -Eq '"entropy":"[0-9a-f]{64}"' <<<"$api"
for c in coapd-1 coapd-2; do
  ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "${P}_${c}_1")
  rm -f "$WORK/coap.out"
  timeout 20 coap-client-gnutls -B 5 -m get -u device-1 -k "$PSK" -o "$WORK/coap.out" \
    "coaps://$ip/entropy" >/dev/null 2>&1 || true
  echo "    $c ($ip, coap-client-gnutls PSK): $(od -An -tx1 "$WORK/coap.out" 2>/dev/null | tr -d ' \n' || echo failed)"
  check [ "$(stat -c %s "$WORK/coap.out" 2>/dev/null)" = 32 ]
done
for n in qeaasd coapd-1 coapd-2 httpsd; do
  pid=$(docker inspect -f '{{.State.Pid}}' "${P}_${n}_1")
  uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
  cap=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")
  echo "    $n: uid $uid CapEff $cap"
  check [ "$uid" = 990 ]
  check [ "$cap" = 0000000000000000 ]
done
if [ $fail = 0 ]; then
  echo "==> ok: compose.yaml's services serve HTTPS and CoAPS from both frontends, unprivileged"
else
  for n in qeaasd coapd-1 coapd-2 httpsd; do echo "--- $n"; docker logs "${P}_${n}_1" 2>&1 | tail -10; done
  exit 1
fi
