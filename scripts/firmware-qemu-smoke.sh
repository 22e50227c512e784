#!/usr/bin/env bash
# Runs the portable firmware core (pool, TRNG health gate, CoAP client) bare-metal on
# qemu-system-riscv32 -M virt with semihosting, and prints instruction counts and heap peak.
# Installs qemu-system-misc (Debian) if qemu-system-riscv32 is missing. Exit 0 only if every
# check in firmware-esp32/qemu-smoke/src/main.rs passed.
set -euo pipefail
cd "$(dirname "$0")/../firmware-esp32/qemu-smoke"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if ! command -v qemu-system-riscv32 >/dev/null; then
  apt-get install -y --no-install-recommends qemu-system-misc
fi
rustup target add riscv32imc-unknown-none-elf >/dev/null
timeout 300 cargo run --release --locked
