# Shared by the maintainer scripts: debian/rules writes debian/PACKAGE.{postinst,postrm} from
# debian/PACKAGE.{postinst,postrm}.in with this file in place of the #QEAAS_LIB# line.

# Accounts. systemd-sysusers creates whatever a package's sysusers.d file names that does not
# exist yet. qeaas_accounts_record PACKAGE CONF writes down, before sysusers runs, which of those
# names are about to be created, and qeaas_accounts_purge PACKAGE deletes exactly those on
# purge: an account or group the administrator had made beforehand is left alone.
qeaas_accounts_state() { echo "/var/lib/qeaas/$1.accounts"; }

qeaas_accounts_record() {
    _state=$(qeaas_accounts_state "$1")
    mkdir -p /var/lib/qeaas
    touch "$_state"
    # u NAME ID ...: a user, and a group of its name unless ID says "uid:group".
    # g NAME ...: a group. m USER GROUP: a membership; sysusers creates a missing GROUP.
    while read -r _type _name _id _rest; do
        case "$_type" in
        u)
            getent passwd "$_name" >/dev/null || echo "user $_name" >>"$_state"
            case "$_id" in
            *:*) ;;
            *) getent group "$_name" >/dev/null || echo "group $_name" >>"$_state" ;;
            esac
            ;;
        g) getent group "$_name" >/dev/null || echo "group $_name" >>"$_state" ;;
        m) getent group "$_id" >/dev/null || echo "group $_id" >>"$_state" ;;
        esac
    done <"/usr/lib/sysusers.d/$2.conf"
    # Once per name, in the order they were made.
    awk '!seen[$0]++' "$_state" >"$_state.new" && mv "$_state.new" "$_state"
}

qeaas_accounts_purge() {
    _state=$(qeaas_accounts_state "$1")
    [ -f "$_state" ] || return 0
    # Users first: a group cannot be deleted while it is a user's primary group.
    for _kind in user group; do
        for _name in $(sed -n "s/^$_kind //p" "$_state"); do
            if [ "$_kind" = user ]; then
                ! getent passwd "$_name" >/dev/null || userdel "$_name" || true
            else
                ! getent group "$_name" >/dev/null || groupdel "$_name" || true
            fi
        done
    done
    rm -f "$_state"
    rmdir /var/lib/qeaas 2>/dev/null || true
}

# udev: make the rules in /lib/udev/rules.d/90-qeaas.rules (or their absence, after a removal)
# apply to the noise sources already plugged in, not only to the next ones.
qeaas_udev_apply() {
    [ -d /run/udev ] && command -v udevadm >/dev/null || return 0
    udevadm control --reload || true
    udevadm trigger --action=change --subsystem-match=qrandom || true
    udevadm trigger --action=change --subsystem-match=tty --sysname-match='ttyACM*' || true
    udevadm trigger --action=change --subsystem-match=misc --sysname-match=hwrng || true
    udevadm trigger --action=change --subsystem-match=usb --attr-match=idVendor=0aba || true
    udevadm settle --timeout=10 || true
}
