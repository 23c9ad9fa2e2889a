#!/usr/bin/env bash
# First boot of a Raspberry Pi OS (64-bit, Bookworm or Trixie) card prepared on a laptop. The
# card's FAT boot partition (/boot/firmware) holds:
#
#   crowd-appliance/release/   from `appliance provision release` (this script is part of it)
#   crowd-appliance/bundle/    exactly one <device id>.tar.gz from `appliance provision device`
#
# and the kernel command line (cmdline.txt) ends with
#   systemd.run=/boot/firmware/crowd-appliance/release/firstboot.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target
#
# Two modes:
#   firstboot.sh            (from systemd.run=, i.e. no unit yet) installs and enables
#                           crowd-appliance-firstboot.service, takes its own words off cmdline.txt
#                           and lets the board reboot into the normal system;
#   firstboot.sh --install  (from that unit) stages the bundle on the root file system and deletes
#                           it from the FAT partition (it holds the device key), installs the
#                           release and the bundle with the bundle's install.sh, runs the
#                           self-test (its output also goes to crowd-appliance/firstboot.log on the
#                           FAT partition, for a laptop to read), and starts appliance.service.
#
# Every step can be repeated: after a power cut at any point, the next boot finishes the job.
# --root DIR runs either mode against a folder instead of / (tests, image builds): no systemctl,
# no runuser, and install.sh gets --root too.
set -euo pipefail
umask 077

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODE=enable
ROOT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --install) MODE=install; shift ;;
        --root) ROOT="$(cd "${2:?--root needs a folder}" && pwd)"; shift 2 ;;
        *) echo "firstboot.sh: error: unknown option $1 (--install, --root DIR)" >&2; exit 2 ;;
    esac
done
BOOT="$ROOT/boot/firmware"
CARD="$BOOT/crowd-appliance"
STAGE="$ROOT/var/lib/crowd-appliance-firstboot"
UNIT=crowd-appliance-firstboot.service
LOG="$CARD/firstboot.log"

say() { echo "firstboot: $*"; [ ! -d "$CARD" ] || echo "firstboot: $*" >>"$LOG"; }
fail() { say "error: $*"; exit "${2:-1}"; }

if [ "$MODE" = enable ]; then
    # This runs instead of the normal boot (kernel-command-line.target): whatever goes wrong, take
    # the hook off cmdline.txt first and end with 0, so the board reboots into its normal system
    # (and says so in the log on the card) instead of coming back here for ever.
    trap 'say "error: enabling $UNIT failed (line $LINENO); booting without it"; exit 0' ERR
    # Our words off the one-line cmdline.txt; the boot-once words stay while another
    # systemd.run= (Raspberry Pi Imager's firstrun.sh) still needs them.
    cmdline="$BOOT/cmdline.txt"
    if [ -f "$cmdline" ]; then
        read -r -a words <"$cmdline" || true
        kept=() others=0
        for w in "${words[@]}"; do
            case "$w" in
                systemd.run=*crowd-appliance/*) ;;
                systemd.run=*) others=1; kept+=("$w") ;;
                *) kept+=("$w") ;;
            esac
        done
        if [ "$others" -eq 0 ]; then
            filtered=()
            for w in "${kept[@]}"; do
                case "$w" in systemd.run_success_action=*|systemd.unit=kernel-command-line.target) ;; *) filtered+=("$w") ;; esac
            done
            kept=("${filtered[@]}")
        fi
        printf '%s\n' "${kept[*]}" >"$cmdline.new"
        sync
        mv -f "$cmdline.new" "$cmdline"
        sync
    fi
    units="$ROOT/etc/systemd/system"
    install -d -m 0755 "$units" "$units/multi-user.target.wants"
    install -m 0644 "$HERE/$UNIT" "$units/$UNIT"
    ln -sfn "../$UNIT" "$units/multi-user.target.wants/$UNIT"
    sync
    say "$UNIT installed and enabled; it runs on the next boot"
    exit 0
fi

# --- install mode: 1. the bundle off the FAT partition, into a root-only folder on the root file
# system. The bundle as made (<id>.tar.gz) or already unpacked on the laptop (<id>/install.sh ...).
shopt -s nullglob
bundles=("$CARD"/bundle/*.tar.gz "$CARD"/bundle/*/install.sh)
shopt -u nullglob
if [ ${#bundles[@]} -gt 1 ]; then
    fail "more than one bundle in $CARD/bundle; leave exactly one <device id>.tar.gz there" 2
fi
if [ ${#bundles[@]} -eq 1 ]; then
    install -d -m 0700 "$STAGE"
    rm -rf "$STAGE/unpack"
    mkdir -m 0700 "$STAGE/unpack"
    case "${bundles[0]}" in
        *.tar.gz) tar -xzf "${bundles[0]}" -C "$STAGE/unpack" --no-same-owner \
                      || fail "${bundles[0]}: cannot unpack the bundle" 2 ;;
        *) cp -r "$(dirname "${bundles[0]}")" "$STAGE/unpack/" ;;
    esac
    sync
    rm -rf "$STAGE/bundle"
    mv "$STAGE/unpack" "$STAGE/bundle"
    sync
    # The key now lives only on the root file system: overwrite every file of the FAT copy before
    # deleting it (a delete alone leaves its clusters readable on the card).
    find "$CARD/bundle" -type f -size +0 -exec sh -c \
        'dd if=/dev/zero of="$1" bs="$(stat -c %s "$1")" count=1 conv=notrunc,fsync status=none' sh {} \;
    rm -rf "$CARD/bundle"
    sync
    say "bundle $(basename "${bundles[0]%/install.sh}") moved off the boot partition"
fi
[ -d "$STAGE/bundle" ] || { say "nothing to install (no bundle in $CARD/bundle)"; exit 0; }
installers=("$STAGE"/bundle/*/install.sh)
[ -f "${installers[0]}" ] || fail "$STAGE/bundle: no <device id>/install.sh in the bundle" 2

# --- 2. the release and the bundle, with the bundle's own installer (verifies the release first)
args=(--release "$CARD/release" --no-selftest)
[ -z "$ROOT" ] || args+=(--root "$ROOT")
set +e
bash "${installers[0]}" "${args[@]}" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 0 ] || fail "install.sh exited $rc; the staged bundle stays for the next boot to try again" "$rc"

# --- 3. the self-test, for the log: red does not stop the service (the clock may not be synced or
# the broker not reachable yet this early; the running service reports those in its health)
etc="$ROOT/etc/crowd-appliance"
selftest=("$ROOT/opt/crowd-appliance/.venv/bin/appliance" selftest --config "$etc/site.yaml")
[ -n "$ROOT" ] || selftest=(runuser -u appliance -- "${selftest[@]}")
set +e
(cd "$ROOT/var/lib/crowd-appliance" && "${selftest[@]}") 2>&1 | tee -a "$LOG"
set -e

# --- 4. done: the staged copy (it holds the key) goes, then the service starts
rm -rf "$STAGE"
sync
if [ -z "$ROOT" ]; then
    # --no-block: this unit is still starting; waiting on another start from inside it could hang boot.
    systemctl --no-block start appliance.service
    say "appliance.service started; watch for the device in 'appliance monitor'"
else
    say "--root: appliance.service not started"
fi
