#!/usr/bin/env bash
# Runs every test: formatting, lints, unit, property and black-box integration tests. Installs the
# Debian packages the tests drive for real (strace, promtool, rngtest, setpriv). Some tests need
# root and CAP_SYS_ADMIN (real RNDADDENTROPY): run as root, as CI does.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "$0: run this as root (it feeds the kernel with real ioctls)" >&2; exit 77; }
  exec sudo -E "$0" "$@"
fi
scripts/setup-debian.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
# A one-shot run gains nothing from incremental state, which is a quarter of target/ (5.8 GB
# measured); CI's disk has been seen full.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
# A full run writes about 20 GB (target/, fuzz/target, the firmware's targets): say so up front
# rather than fail deep inside a C build with ENOSPC.
free_gb=$(df -Pk . | awk 'NR==2 { print int($4 / 1048576) }')
if [ "$free_gb" -lt 25 ]; then
  echo "warning: $free_gb GB free here; a cold run of this script needs about 20 GB" >&2
fi
# Each stage's start, with the minutes since this script began: where CI's time goes.
stage() { printf '==> [%s, +%d min] %s\n' "$(date +%T)" $((SECONDS / 60)) "$*"; }
stage "cargo fmt --check"; cargo fmt --all -- --check
stage "cargo clippy -D warnings"; cargo clippy --workspace --all-targets --locked -- -D warnings
# OpenSSL 3.5 for the provider's second ABI suite (openssl-provider/tests/openssl35.rs), from the
# sources in the locked openssl-src package: ~5 min once, then a no-op.
stage "OpenSSL 3.5 for the provider tests"; openssl-provider/scripts/build-openssl.sh
# qeaas-coap/tests/device_qemu.rs builds firmware-esp32/qemu-dtls (its own pinned toolchain) for
# riscv32imc and runs it on qemu against the real frontend: that toolchain needs the target.
(cd firmware-esp32/qemu-dtls && rustup target add riscv32imc-unknown-none-elf >/dev/null)
stage "cargo test"; CI=${CI:-1} cargo test --workspace --locked --no-fail-fast
# Every fuzz target of fuzz/ for 30 s from its committed corpus (cargo-fuzz, installed once).
# Cost: a cold ASan release build of the fuzz crate (vendored OpenSSL, wolfSSL: 12.4 CPU-minutes,
# measured) plus 30 s per target (3 targets).
stage "fuzz (30 s per target)"; scripts/fuzz.sh 30
# The units in systemd/ (verify, exposure, sysusers/tmpfiles), then every binary cargo test just
# built under an emulation of its unit's credentials and sandbox (~5 s).
stage "systemd units"; QEAAS_BIN=target/debug scripts/systemd-security.sh --run
# The Debian packages (the release build scripts/demo.sh then reuses), lintian, and the packages
# installed, booted, hot-plugged, upgraded and purged in a Debian 12 guest (qemu, TCG).
stage "Debian packages"; scripts/build-debs.sh
# The packages installed, booted, hot-plugged, upgraded, rebooted and purged in a Debian 12
# guest under TCG: 625 s on 2 cores (66 checks, 2026-12-07), plus the guest image once
# (debootstrap, cached in /var/cache/qeaas-vm). QEAAS_VM_TEST=0 skips it.
if [ "${QEAAS_VM_TEST:-1}" = 1 ]; then
  stage "Debian packages in a booted guest"; scripts/vm-test.sh
else
  stage "Debian packages in a booted guest: skipped (QEAAS_VM_TEST=0)"
fi
# The ESP32-C3 firmware must build for riscv32imc and give a flashable image (esptool: a pip
# install, where espflash would need a 10-minute cargo install); its core runs on qemu riscv32.
stage "firmware: ESP32-C3 without credentials (TRNG only)"
(cd firmware-esp32/esp32c3 && cargo build --release --locked)
# Then with a throwaway CA and dummy network settings, so the DTLS path is compiled and linked
# (nothing is contacted: there is no board here).
stage "firmware: ESP32-C3 image with a throwaway CA"
creds=$(mktemp -d)
cargo run --locked -q -p qeaas-coap --bin qeaas-coapd -- gen-credentials --out "$creds/c" >/dev/null
grep -v -- ----- "$creds/c/ca.pem" | base64 -d >"$creds/ca.der"
QEAAS_IMAGE_TOOL=esptool QEAAS_WIFI_SSID=ci-dummy QEAAS_SERVER=192.0.2.1:5684 \
  QEAAS_CA_DER="$creds/ca.der" scripts/build-firmware.sh
# grep reads all of nm's output (no -q): under pipefail, an early exit would SIGPIPE nm.
riscv64-unknown-elf-nm firmware-esp32/esp32c3/target/riscv32imc-unknown-none-elf/release/qeaas-esp32c3 |
  grep -w wolfSSL_connect >/dev/null || { echo "DTLS client not linked into the image" >&2; exit 1; }
rm -rf "$creds"
stage "firmware: core on qemu-system-riscv32"; scripts/firmware-qemu-smoke.sh
stage "all tests passed"
