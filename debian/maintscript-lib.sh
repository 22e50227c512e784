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

# Files that hold secrets belong to root and the group of the service reading them, 0640, through
# dpkg-statoverride so that upgrades keep it (dpkg would install a changed conffile 0644). Only if
# the administrator has set no override of their own; the state file records ours for the purge.
qeaas_statoverride() { # PACKAGE OWNER GROUP MODE FILE
    dpkg-statoverride --list "$5" >/dev/null 2>&1 && return 0
    dpkg-statoverride --update --add "$2" "$3" "$4" "$5"
    echo "statoverride $5" >>"$(qeaas_accounts_state "$1")"
}

# A file this package generated on this host (TLS material): removed on purge.
qeaas_generated() { # PACKAGE FILE...
    _p=$1
    shift
    for _f in "$@"; do echo "generated $_f" >>"$(qeaas_accounts_state "$_p")"; done
}

qeaas_accounts_purge() {
    _state=$(qeaas_accounts_state "$1")
    [ -f "$_state" ] || return 0
    # Before the groups they name go.
    for _f in $(sed -n "s/^statoverride //p" "$_state"); do
        dpkg-statoverride --remove "$_f" >/dev/null 2>&1 || true
    done
    for _f in $(sed -n "s/^generated //p" "$_state"); do
        rm -f "$_f"
        rmdir "$(dirname "$_f")" 2>/dev/null || true
    done
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
    udevadm trigger --action=change --subsystem-match=misc --sysname-match=hw_random || true
    udevadm trigger --action=change --subsystem-match=usb --attr-match=idVendor=0aba || true
    udevadm settle --timeout=10 || true
}
