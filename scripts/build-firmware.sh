#!/usr/bin/env bash
# Builds the ESP32-C3 firmware (firmware-esp32/esp32c3) and a flashable image. Installs what it
# needs: the riscv32imc target for the pinned toolchain, and espflash (`cargo install espflash
# --locked`, once) or, with QEAAS_IMAGE_TOOL=esptool, PyPI's esptool in a virtualenv.
# Wi-Fi, server and DTLS credentials are build-time environment variables: see
# firmware-esp32/README.md.
set -euo pipefail
cd "$(dirname "$0")/../firmware-esp32/esp32c3"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
command -v rustup >/dev/null || {
  echo "$0: rustup is needed (scripts/setup-debian.sh installs it)" >&2
  exit 69
}
tool=${QEAAS_IMAGE_TOOL:-espflash}
case "$tool" in espflash | esptool) ;; *)
  echo "$0: QEAAS_IMAGE_TOOL must be espflash or esptool" >&2
  exit 64
  ;;
esac

# rust-toolchain.toml pins the toolchain; rustup installs it and the target on first use.
rustup target add riscv32imc-unknown-none-elf >/dev/null
cargo build --release --locked

elf=target/riscv32imc-unknown-none-elf/release/qeaas-esp32c3
# Flash (text) and static RAM (data + bss; bss includes the 112 KB main heap region).
if command -v riscv64-unknown-elf-size >/dev/null; then riscv64-unknown-elf-size "$elf"; fi
img=target/qeaas-esp32c3.bin
if [ "$tool" = espflash ]; then
  command -v espflash >/dev/null || cargo install espflash --locked
  # The partition table has the `qeaas` provisioning partition (firmware-esp32/README.md).
  espflash save-image --chip esp32c3 --partition-table partitions.csv "$elf" "$img"
  espflash save-image --chip esp32c3 --partition-table partitions.csv --merge "$elf" \
    target/qeaas-esp32c3-merged.bin
  echo "image: firmware-esp32/esp32c3/$img (application), target/qeaas-esp32c3-merged.bin (write at 0x0)"
else
  venv=target/esptool-venv
  if [ ! -x "$venv/bin/esptool" ]; then
    python3 -m venv "$venv" || {
      echo "$0: python3 -m venv failed (apt-get install python3-venv)" >&2
      exit 69
    }
    "$venv/bin/pip" install --quiet esptool
  fi
  "$venv/bin/esptool" --chip esp32c3 elf2image --output "$img" "$elf"
  echo "image: firmware-esp32/esp32c3/$img (application, write at 0x10000 after a bootloader)"
fi
