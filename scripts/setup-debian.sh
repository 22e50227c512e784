#!/usr/bin/env bash
# Installs what qeaas needs to build and test on Debian 12: the Rust toolchain (via rustup when
# cargo is missing) and the Debian packages the tests drive for real.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

PKGS=(build-essential pkg-config curl ca-certificates git
      strace            # the kernel-feeding test traces qeaasd's ioctls
      rng-tools5        # rngtest (FIPS 140-2) and rngd, the peer we are compared with
      prometheus        # promtool: checks live metrics and the alert rules
      util-linux        # setpriv: runs a client as another user
      jitterentropy-rngd  # its unit is the sandboxing reference for systemd/qeaasd.service
      systemd libseccomp2 # systemd-analyze verify/security on systemd/*.service; the units' syscall filters emulated (scripts/systemd-security.sh)
      pollinate         # Debian's pollen client: qeaas-https tests seed through the HTTPS face
      nghttp2-client    # h2load: many concurrent HTTP/2 streams on one token (qeaas-https quota test)
      libcoap3-bin      # coap-client-gnutls/-openssl: real DTLS 1.2 PSK clients for qeaas-coapd's tests; coap-server: the firmware client's interop peer
      python3
      python3-venv python3-dev autoconf automake  # aiocoap[tinydtls] in a venv: its DTLSSocket builds tinydtls
      openssl libssl-dev  # the provider's tests drive Debian's openssl 3.0; C drivers link libcrypto
      make perl binutils  # build OpenSSL 3.5 from openssl-src; nm checks the provider's exports
      nginx-light libnginx-mod-stream  # nginx: balancing DTLS across two qeaas-coapd; TLS in front of qeaas-httpsd (qeaas-https/tests/nginx.rs)
      qemu-system-misc python3-venv  # the firmware core on qemu riscv32; esptool (PyPI) makes the ESP32 image
      gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf  # wolfSSL for the riscv32imc device (qeaas-coap/tests/device_qemu.rs)
      debhelper help2man lintian  # scripts/build-debs.sh: the Debian packages, their man pages, lintian
      debootstrap qemu-system-x86 qemu-utils  # scripts/vm-test.sh: a Debian 12 guest booting the packages
      libnss-extrausers)  # users and groups that exist only through NSS, as from LDAP or sssd (tests/socket_acl.rs)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  # Do not start rngd/jitterentropy from the package postinst: we only want the binaries.
  $SUDO env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  $SUDO systemctl disable --now rng-tools-debian.service rngd.service jitterentropy.service nginx.service >/dev/null 2>&1 || true
fi

# NSS: look users and groups up in /var/lib/extrausers too (after files), so the socket's ACL is
# tested with a user /etc/passwd does not have. Nothing is there until a test puts it there.
if ! grep -qE '^passwd:.*extrausers' /etc/nsswitch.conf || ! grep -qE '^group:.*extrausers' /etc/nsswitch.conf; then
  echo "==> nsswitch.conf: passwd, group += extrausers"
  $SUDO sed -i -E '/^(passwd|group):/{/extrausers/!s/$/ extrausers/}' /etc/nsswitch.conf
fi
$SUDO mkdir -p /var/lib/extrausers

# aiocoap-client (PyPI aiocoap[tinydtls], DTLS 1.2 PSK): a second real CoAP client for qeaas-coapd's
# tests, in its own venv (Debian has no package); installed once, then a no-op.
AIOCOAP_VENV=/opt/qeaas-aiocoap
if [ ! -x "$AIOCOAP_VENV/bin/aiocoap-client" ] || ! "$AIOCOAP_VENV/bin/python" -c 'import DTLSSocket' 2>/dev/null; then
  echo "==> aiocoap[tinydtls] into $AIOCOAP_VENV"
  $SUDO /usr/bin/python3 -m venv "$AIOCOAP_VENV"
  $SUDO "$AIOCOAP_VENV/bin/pip" install -q 'aiocoap[tinydtls]==0.4.17'
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] || {
    echo "==> installing Rust with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
  }
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
cargo --version
