#!/usr/bin/env bash
# Builds (once) the Debian 12 guest that scripts/vm-test.sh boots: debootstrap from the Debian
# archive, linux-image-amd64 and systemd, the clients the checks drive, nothing of ours.
#
# scripts/vm-image.sh [CACHE_DIR]   prints the directory holding rootfs.img, vmlinuz, initrd.img
#                                   and the root ssh key (id_ed25519); CACHE_DIR defaults to
#                                   $QEAAS_VM_CACHE, then /var/cache/qeaas-vm
#
# The image is cached under CACHE_DIR (default /var/cache/qeaas-vm) in a directory named after a
# hash of this file: change the recipe and a new image is built; the same recipe is reused. Old
# images are removed when a new one is complete. Root only (debootstrap, chroot, device nodes).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${1:-${QEAAS_VM_CACHE:-/var/cache/qeaas-vm}}
SUITE=bookworm
MIRROR=${QEAAS_VM_MIRROR:-http://deb.debian.org/debian}
# In the image from the start: a booted Debian with systemd and udev, ssh for the checks, the
# clients the checks drive (strace, openssl, curl, libcoap's coap-client-gnutls, pollinate) and
# rng-tools-debian, the rngd that installing qeaasd must take over from (and that must install
# back after a purge: its .deb is kept in /root/rng-tools).
PACKAGES=systemd-sysv,udev,dbus,kmod,linux-image-amd64,initramfs-tools,openssh-server,iproute2,procps,strace,openssl,ca-certificates,curl,libcoap3-bin,pollinate,rng-tools-debian,less

key=$(sha256sum "$0" | cut -c1-16)
out="$CACHE/$key"
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (debootstrap)" >&2; exit 77; }
# stdout is the path and nothing else (scripts/vm-test.sh reads it): everything the build prints
# goes to stderr (mkfs.ext4 -q still says "Creating regular file" on stdout).
exec 3>&1 1>&2
for t in debootstrap mkfs.ext4 ssh-keygen; do
  command -v "$t" >/dev/null || { echo "$0: $t missing (scripts/setup-debian.sh installs it)" >&2; exit 69; }
done
mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/build.XXXXXX")
root="$work/root"
cleanup() {
  local m
  for m in dev/pts dev proc sys; do mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m"; done
  rm -rf "$work"
}
trap cleanup EXIT

start=$(date +%s)
echo "==> debootstrap $SUITE (minbase + ${PACKAGES//,/ }) into $root" >&2
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
  { tail -30 "$work/debootstrap.log" >&2; exit 1; }

echo "==> configuring the guest" >&2
echo qeaas-vm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 qeaas-vm\n' >"$root/etc/hosts"
echo '/dev/vda / ext4 errors=remount-ro 0 1' >"$root/etc/fstab"
# qemu's user-mode network: fixed address, no DHCP wait at boot.
mkdir -p "$root/etc/systemd/network"
cat >"$root/etc/systemd/network/10-eth0.network" <<'EOF'
[Match]
Name=eth0
[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
DNS=10.0.2.3
EOF
ln -sf /lib/systemd/system/systemd-networkd.service "$root/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
echo 'nameserver 10.0.2.3' >"$root/etc/resolv.conf"
# Jobs that would run into the checks (or reach for the Internet) at boot: off.
for u in pollinate.service apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer \
         fstrim.timer systemd-networkd-wait-online.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$u"
done
# Persistent journal: the checks read the boot before a reboot too.
mkdir -p "$root/var/log/journal"
# Root logs in with this image's key only.
ssh-keygen -q -t ed25519 -N '' -C qeaas-vm -f "$work/id_ed25519"
install -d -m 0700 "$root/root/.ssh"
install -m 0600 "$work/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
printf 'PasswordAuthentication no\nUseDNS no\n' >"$root/etc/ssh/sshd_config.d/qeaas-vm.conf"
# rng-tools-debian's .deb, so that it installs back offline after the purge.
mkdir -p "$root/root/rng-tools"
cp "$root"/var/cache/apt/archives/rng-tools-debian_*.deb "$root/root/rng-tools/" 2>/dev/null ||
  (cd "$root/root/rng-tools" && apt-get download rng-tools-debian >/dev/null)
ls "$root"/root/rng-tools/rng-tools-debian_*.deb >/dev/null
# The kernel and initrd boot directly (-kernel/-initrd): no boot loader in the image.
cp "$root"/boot/vmlinuz-* "$work/vmlinuz"
cp "$root"/boot/initrd.img-* "$work/initrd.img"
chroot "$root" apt-get clean
echo "==> rootfs.img (ext4)" >&2
mkfs.ext4 -q -L qeaas-root -d "$root" "$work/rootfs.img" 3G
rm -rf "$root"
touch "$work/.complete"
# Replace any older image only now that this one is complete.
for old in "$CACHE"/*/; do
  old=${old%/}
  [ "$old" != "$work" ] && [ -f "$old/.complete" ] && rm -rf "$old"
done
rm -rf "$out"
mv "$work" "$out"
trap - EXIT
echo "==> image built in $(($(date +%s) - start)) s: $out" >&2
echo "$out" >&3
