#!/usr/bin/env bash
# Builds the deployment image (scripts/deploy/Dockerfile) and runs the paper's layout from it:
# qeaasd, one CoAP/DTLS frontend and one HTTPS frontend, each in its own container with every
# capability dropped, read-only, no-new-privileges, as the image's user, sharing the socket through
# a volume, qeaasd reading a simulated Quantis (qeaas-sim on the host) passed in as /dev/qrandom0.
# Then a real coap-client-gnutls and curl fetch entropy from the containers, and the script checks
# each container's process: uid 990 (`qeaas`), CapEff 0.
#
#   scripts/deploy/docker-smoke.sh          # needs a Docker engine and root
#
# Base images: Docker Hub's rust:1-bookworm and debian:bookworm-slim when they can be pulled;
# otherwise (no registry access, as on the project's build machines) local stand-ins are made:
# debian:bookworm-slim's role by `debootstrap --variant=minbase bookworm`, rust's by that plus this
# machine's Rust toolchain. They are tagged qeaas-local/... so they are never mistaken for Hub's.
# Not part of scripts/test.sh: CI machines have no container engine.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root" >&2; exit 77; }
command -v docker >/dev/null || { echo "$0: no docker client (apt-get install docker.io)" >&2; exit 69; }
docker info >/dev/null 2>&1 || {
  echo "$0: no Docker engine answers. On a machine without one running (and without overlayfs or" >&2
  echo "iptables rights), this works: dockerd --storage-driver=vfs --iptables=false --bridge=none &" >&2
  exit 69
}
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

WORK=$(mktemp -d /tmp/qeaas-docker.XXXXXX)
NAMES=(qeaas-smoke-qeaasd qeaas-smoke-coapd qeaas-smoke-httpsd)
cleanup() {
  docker rm -f "${NAMES[@]}" >/dev/null 2>&1 || true
  docker volume rm qeaas-smoke-run >/dev/null 2>&1 || true
  kill "${SIM:-}" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

have_image() { docker image inspect "$1" >/dev/null 2>&1 || docker pull -q "$1" >/dev/null 2>&1; }

RUNTIME=debian:bookworm-slim
BUILDER=rust:1-bookworm
if ! have_image "$RUNTIME"; then
  RUNTIME=qeaas-local/debian:bookworm-minbase
  if ! docker image inspect "$RUNTIME" >/dev/null 2>&1; then
    echo "==> $RUNTIME: debootstrap (no registry access)"
    command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >/dev/null
    debootstrap --variant=minbase bookworm "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 ||
      { tail -20 "$WORK/debootstrap.log"; exit 1; }
    rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
    tar -C "$WORK/rootfs" -c . | docker import - "$RUNTIME" >/dev/null
    rm -rf "$WORK/rootfs"
  fi
fi
if ! have_image "$BUILDER"; then
  BUILDER=qeaas-local/rust:bookworm
  if ! docker image inspect "$BUILDER" >/dev/null 2>&1; then
    echo "==> $BUILDER: $RUNTIME + this machine's Rust toolchain ($(rustc --version))"
    SYSROOT=$(rustc --print sysroot)
    mkdir -p "$WORK/rust/toolchain/bin"
    cp -a "$SYSROOT/lib" "$SYSROOT/libexec" "$WORK/rust/toolchain/"
    cp -a "$SYSROOT/bin/rustc" "$SYSROOT/bin/cargo" "$WORK/rust/toolchain/bin/"
    # This machine's extra trust anchors (a TLS-inspecting egress proxy, say), so that cargo in
    # the builder reaches crates.io the way it does on the host.
    mkdir -p "$WORK/rust/ca"
    cp /usr/local/share/ca-certificates/*.crt "$WORK/rust/ca/" 2>/dev/null || true
    docker build -q --network host -t "$BUILDER" -f - "$WORK/rust" >/dev/null <<EOF
FROM $RUNTIME
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev make perl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
COPY toolchain /usr/local/rust
ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
    rm -rf "$WORK/rust"
  fi
fi

echo "==> docker build (builder $BUILDER, runtime $RUNTIME)"
start=$(date +%s)
docker build --network host --build-arg BUILDER="$BUILDER" --build-arg RUNTIME="$RUNTIME" \
  -f scripts/deploy/Dockerfile -t qeaas:smoke . >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
BUILD_SECS=$(( $(date +%s) - start ))
SIZE=$(docker image inspect qeaas:smoke --format '{{.Size}}')
echo "    built in ${BUILD_SECS} s; image $((SIZE / 1000000)) MB"

# The simulated Quantis on the host; the fifo is the container's /dev/qrandom0.
cargo build -q --release --locked -p qeaas --bin qeaas-sim
target/release/qeaas-sim --fifo "$WORK/qrandom0" --rate 4M 2>"$WORK/sim.log" &
SIM=$!
for _ in $(seq 50); do [ -p "$WORK/qrandom0" ] && break; sleep 0.1; done
chmod 0666 "$WORK/qrandom0"

# The shipped container configurations, with this run's secrets and loopback-only ports (the
# containers share the host's network: the project's build machines have no bridge).
PSK=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
TOKEN=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
mkdir -p "$WORK/etc/https"
sed -e 's/^listen = .*/listen = "127.0.0.1:19864"/' scripts/deploy/qeaasd.container.toml >"$WORK/etc/qeaasd.toml"
sed -e 's/^listen = .*/listen = "127.0.0.1:15684"/' -e "s/^key = .*/key = \"$PSK\"/" \
  scripts/deploy/coapd.container.toml >"$WORK/etc/coapd.toml"
TOKEN_HASH=$(printf %s "$TOKEN" | docker run --rm -i qeaas:smoke qeaas-httpsd hash-token)
sed -e 's/^listen = .*/listen = "127.0.0.1:18443"/' -e "s/^token_sha256 = .*/token_sha256 = \"$TOKEN_HASH\"/" \
  scripts/deploy/httpsd.container.toml >"$WORK/etc/httpsd.toml"
# The certificate is made by the image itself, as its user.
chmod 0777 "$WORK/etc/https"
docker run --rm -v "$WORK/etc/https:/out" qeaas:smoke \
  qeaas-httpsd gen-cert --dir /out --alg ecdsa-p256 --san localhost --san 127.0.0.1 >/dev/null
chmod 0755 "$WORK/etc/https"

HARDEN=(--network host --cap-drop ALL --security-opt no-new-privileges:true --read-only)
docker volume create qeaas-smoke-run >/dev/null
# A fresh volume is root's; the image's user must create the socket in it.
docker run --rm -u 0 -v qeaas-smoke-run:/run/qeaas qeaas:smoke chown qeaas:qeaas /run/qeaas
docker run -d --name qeaas-smoke-qeaasd "${HARDEN[@]}" \
  -v "$WORK/qrandom0:/dev/qrandom0" -v "$WORK/etc/qeaasd.toml:/etc/qeaas/qeaasd.toml:ro" \
  -v qeaas-smoke-run:/run/qeaas qeaas:smoke qeaasd -c /etc/qeaas/qeaasd.toml run >/dev/null
for _ in $(seq 100); do curl -sf 127.0.0.1:19864/metrics >/dev/null && break; sleep 0.2; done
docker run -d --name qeaas-smoke-coapd "${HARDEN[@]}" \
  -v "$WORK/etc/coapd.toml:/etc/qeaas/coapd.toml:ro" -v qeaas-smoke-run:/run/qeaas \
  qeaas:smoke qeaas-coapd -c /etc/qeaas/coapd.toml >/dev/null
docker run -d --name qeaas-smoke-httpsd "${HARDEN[@]}" \
  -v "$WORK/etc/httpsd.toml:/etc/qeaas/httpsd.toml:ro" -v "$WORK/etc/https:/etc/qeaas/https:ro" \
  -v qeaas-smoke-run:/run/qeaas qeaas:smoke qeaas-httpsd -c /etc/qeaas/httpsd.toml run >/dev/null

fail=0
check() { if "$@"; then :; else echo "    FAILED: $*"; fail=1; fi; }

coap_ok=0
for _ in $(seq 30); do
  rm -f "$WORK/coap.out"
  if coap-client-gnutls -B 5 -m get -u device-1 -k "$PSK" -o "$WORK/coap.out" \
       coaps://127.0.0.1:15684/entropy >/dev/null 2>&1 && [ "$(stat -c %s "$WORK/coap.out" 2>/dev/null)" = 32 ]; then
    coap_ok=1; break
  fi
  sleep 1
done
echo "    coaps (coap-client-gnutls, PSK): $([ $coap_ok = 1 ] && od -An -tx1 "$WORK/coap.out" | tr -d ' \n' || echo failed)"
check [ $coap_ok = 1 ]

api=$(curl -sf --cacert "$WORK/etc/https/ca.crt" -H "Authorization: Bearer $TOKEN" \
  'https://127.0.0.1:18443/api/v1/entropy?bytes=32' || true)
echo "    https (curl, JSON API): ${api:-failed}"
check grep -Eq '"entropy":"[0-9a-f]{64}"' <<<"$api"

for n in "${NAMES[@]}"; do
  pid=$(docker inspect -f '{{.State.Pid}}' "$n")
  uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
  cap=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")
  echo "    $n: $(cat "/proc/$pid/comm") uid $uid CapEff $cap"
  check [ "$uid" = 990 ]
  check [ "$cap" = 0000000000000000 ]
done
served=$(curl -s 127.0.0.1:19864/metrics | awk '/^qeaas_served_bytes_total/ {s += $2} END {print s + 0}')
echo "    qeaasd (container) served $served bytes to the frontends"
check [ "${served%.*}" -ge 64 ]

if [ $fail = 0 ]; then
  echo "==> ok: image qeaas:smoke ($((SIZE / 1000000)) MB, built in ${BUILD_SECS} s) serves CoAPS and HTTPS unprivileged"
else
  for n in "${NAMES[@]}"; do echo "--- $n"; docker logs "$n" 2>&1 | tail -15; done
  exit 1
fi
