#!/usr/bin/env bash
# Installs crowd-appliance @APPLIANCE_VERSION@ as device @DEVICE_ID@ on a 64-bit Raspberry Pi OS,
# Debian, Ubuntu or Jetson (JetPack) board. Written by `appliance provision`; run from the
# unpacked bundle, with a release folder from `appliance provision release`:
#
#   tar xzf @DEVICE_ID@.tar.gz && sudo ./@DEVICE_ID@/install.sh --release release/
#
# The release is installed with no package index at all: every wheel is checked against the
# release's lock (sha256) before anything on the board is touched, then pip installs exactly those
# files (--no-index --require-hashes) into a new venv, which replaces the running one only once it
# is complete. Idempotent: running it again (a newer bundle or release, or the same) upgrades in
# place; the outbox in /var/lib/crowd-appliance is never touched. Exit 0: self-test green, 1: red,
# 2: bad usage or a release that does not verify.
set -euo pipefail
# The venv must be readable by the service user whatever umask the caller had (first boot runs
# with 077); files that must be private get their mode explicitly below.
umask 022

DEVICE_ID="@DEVICE_ID@"
VERSION="@APPLIANCE_VERSION@"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
APPLIANCE_DIST=crowd-appliance

usage() {
    cat <<USAGE
usage: install.sh --release DIR [--online] [--root DIR] [--python PY] [--source SRC] [--skip CHECK]... [--no-selftest]

  --release DIR     the release folder to install from (made on a laptop with
                    'appliance provision release -o DIR --arch aarch64|x86_64 --python X.Y'):
                    its wheels, checked against its requirements.lock, and no package index
  --online          fetch dependency wheels missing from the release from the public index,
                    still pinned to the lock's sha256; the appliance itself always comes from
                    the release
  --root DIR        install under DIR instead of / (a test or image build): no user is created,
                    nothing is chowned, systemctl is not called, and the paths in site.yaml are
                    rewritten to point under DIR so the installed appliance runs from there
  --python PY       the Python 3.9+ to build the venv with (default: python3); it must be the
                    release's version and architecture
  --source SRC      camera source for the self-test only (default: the one in site.yaml)
  --skip CHECK      leave one self-test check out (camera, time, outbox, broker), e.g. on a lab
                    bench; the device is then not reported as ready to deploy
  --no-selftest     skip the self-test (and do not start the service)
USAGE
}

ROOT=/
RELEASE=""
ONLINE=0
PYTHON=python3
SELFTEST_SOURCE=""
SELFTEST=1
SELFTEST_SKIP=()
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="${2:?--root needs a folder}"; shift 2 ;;
        --release) RELEASE="${2:?--release needs a folder}"; shift 2 ;;
        --online) ONLINE=1; shift ;;
        --python) PYTHON="${2:?--python needs an interpreter}"; shift 2 ;;
        --source) SELFTEST_SOURCE="${2:?--source needs a source}"; shift 2 ;;
        --skip) SELFTEST_SKIP+=(--skip "${2:?--skip needs a check name}"); shift 2 ;;
        --no-selftest) SELFTEST=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: error: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

say() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 2; }

# Before anything else, so that a board without a release (and without network) learns at once
# what to do instead of waiting on a package index.
[ -n "$RELEASE" ] || die "no --release DIR: build one on a laptop with 'appliance provision release -o DIR --arch $(uname -m)' and copy it beside the bundle"

if [ "$ROOT" != / ]; then
    [ -d "$ROOT" ] || die "--root $ROOT: no such folder"
    ROOT="$(cd "$ROOT" && pwd)"
    SYSTEM=0
    say "note: --root $ROOT: installing into that folder only; skipping useradd, chown and systemctl"
else
    ROOT=""
    SYSTEM=1
    [ "$(id -u)" -eq 0 ] || die "run as root (sudo ./install.sh), or use --root DIR to install into a folder"
fi
[ -d "$RELEASE" ] || die "--release $RELEASE: no such folder"
RELEASE="$(cd "$RELEASE" && pwd)"
LOCK="$RELEASE/requirements.lock"
for f in requirements.lock release.json; do
    [ -f "$RELEASE/$f" ] || die "$RELEASE/$f missing: not a release folder (make one with 'appliance provision release')"
done
for f in site.yaml appliance.service "tls/ca.crt" "tls/$DEVICE_ID.crt" "tls/$DEVICE_ID.key"; do
    [ -f "$HERE/$f" ] || die "$HERE/$f missing: unpack the whole bundle and run install.sh from it"
done

# --- 0. The release, verified before anything on the board changes: every wheel in the folder is
# in the lock with its sha256 (a changed byte or a foreign wheel refuses the whole release), every
# locked wheel is there (unless --online may fetch it), and the appliance's own is always there.
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
grep -E '^[A-Za-z0-9._-]+==[^ ]+ --hash=sha256:[0-9a-f]{64}$' "$LOCK" >"$WORK/lock" || true
[ -s "$WORK/lock" ] || die "$LOCK: no pinned requirements"
shopt -s nullglob
wheels=("$RELEASE"/*.whl)
shopt -u nullglob
[ ${#wheels[@]} -gt 0 ] || die "$RELEASE: no wheels"
(cd "$RELEASE" && sha256sum -- *.whl) >"$WORK/have"
while read -r sum file; do
    grep -qF -- "--hash=sha256:$sum" "$WORK/lock" \
        || die "$RELEASE/${file#\*}: sha256 $sum is not in requirements.lock (changed or foreign wheel); refusing the release"
done <"$WORK/have"
while read -r req hash; do
    grep -q "^${hash#--hash=sha256:} " "$WORK/have" && continue
    if [ "${req%%==*}" = "$APPLIANCE_DIST" ] || [ "$ONLINE" -eq 0 ]; then
        die "$RELEASE: no wheel for $req in the folder (incomplete release)"
    fi
done <"$WORK/lock"
grep -q "^$APPLIANCE_DIST==" "$WORK/lock" || die "$LOCK: no $APPLIANCE_DIST line; a release carries the appliance"
RELEASE_ID="$(sha256sum "$LOCK" | cut -c1-16)"

PREFIX="$ROOT/opt/crowd-appliance"
ETC="$ROOT/etc/crowd-appliance"
STATE="$ROOT/var/lib/crowd-appliance"
UNIT_DIR="$ROOT/etc/systemd/system"
USER_NAME=appliance

# --- 1. Python venv (python3-venv comes from apt where missing)
if ! "$PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
    if [ "$SYSTEM" -eq 1 ] && command -v apt-get >/dev/null; then
        say "installing python3-venv with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    "$PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 9))' 2>/dev/null \
        || die "$PYTHON with venv (3.9 or newer) is needed: apt-get install python3-venv"
fi

# The release must be for this board (its wheels are for one architecture and Python version).
"$PYTHON" - "$RELEASE/release.json" <<'PY' || exit 2
import json, platform, sys
meta = json.load(open(sys.argv[1]))
here = f"{platform.machine()} Python {sys.version_info[0]}.{sys.version_info[1]}"
if (meta["arch"], meta["python"]) != (platform.machine(), f"{sys.version_info[0]}.{sys.version_info[1]}"):
    sys.exit(f"install.sh: error: {sys.argv[1]}: the release is for {meta['arch']} Python {meta['python']}, "
             f"this board is {here}: build one with 'appliance provision release --arch {platform.machine()} "
             f"--python {sys.version_info[0]}.{sys.version_info[1]}'")
PY

# --- 2. The unprivileged user the service runs as (video: V4L2 cameras)
if [ "$SYSTEM" -eq 1 ] && ! id "$USER_NAME" >/dev/null 2>&1; then
    groups_opt=()
    getent group video >/dev/null && groups_opt=(--groups video)
    useradd --system --home-dir /var/lib/crowd-appliance --no-create-home --shell /usr/sbin/nologin \
        "${groups_opt[@]}" "$USER_NAME"
    say "created user $USER_NAME"
fi

# --- 3. The appliance in a new venv under /opt/crowd-appliance/venvs/<lock's sha256>; .venv (what
# the unit runs) is switched to it with one rename only once it is complete, so an install that
# fails or is cut off half way leaves the previous one running.
VENVS="$PREFIX/venvs"
NEW_VENV="$VENVS/$RELEASE_ID"
mkdir -p "$VENVS"
pip_log="$PREFIX/install.log"
if [ -f "$NEW_VENV/.complete" ]; then
    say "release $RELEASE_ID is already installed in $NEW_VENV"
else
    rm -rf "$NEW_VENV"
    "$PYTHON" -m venv "$NEW_VENV"
    # Nothing from the board's pip configuration or environment (an extra index, find-links, a
    # constraints file) reaches this pip: only the release and, with --online, the public index.
    pip=(env -i PATH="$PATH" HOME="$WORK" PIP_CONFIG_FILE=/dev/null
         ${https_proxy:+https_proxy="$https_proxy"} ${HTTPS_PROXY:+HTTPS_PROXY="$HTTPS_PROXY"}
         "$NEW_VENV/bin/python" -m pip install
         --no-cache-dir --disable-pip-version-check --require-hashes --only-binary=:all: --find-links "$RELEASE")
    if [ "$ONLINE" -eq 0 ]; then
        say "installing $APPLIANCE_DIST $VERSION from the release $RELEASE (no package index)"
        install_cmd() { "${pip[@]}" --no-index -r "$LOCK"; }
    else
        say "installing $APPLIANCE_DIST $VERSION from $RELEASE, missing dependencies from the public index (hash-pinned)"
        # The appliance's own name is never looked up on an index (anyone may publish that name).
        grep -v "^$APPLIANCE_DIST==" "$WORK/lock" >"$WORK/deps.lock" || true
        grep "^$APPLIANCE_DIST==" "$WORK/lock" >"$WORK/own.lock"
        # The board's own trust store (Debian's), so that a site's TLS-inspecting proxy it trusts works too.
        [ ! -f /etc/ssl/certs/ca-certificates.crt ] || pip+=(--cert /etc/ssl/certs/ca-certificates.crt)
        install_cmd() {
            # (set -e does not apply inside a function called from a condition: each step says so itself)
            if [ -s "$WORK/deps.lock" ]; then "${pip[@]}" -r "$WORK/deps.lock" || return 1; fi
            "${pip[@]}" --no-index --no-deps -r "$WORK/own.lock"
        }
    fi
    if ! install_cmd >"$pip_log" 2>&1; then
        tail -n 20 "$pip_log" >&2
        rm -rf "$NEW_VENV"
        echo "install.sh: error: pip install failed; the previous install is unchanged (full log: $pip_log)" >&2
        exit 1
    fi
    sync  # the venv's files on disk before the mark that says it is complete
    touch "$NEW_VENV/.complete"
fi
previous="$(readlink "$PREFIX/.venv" 2>/dev/null || true)"
if [ -d "$PREFIX/.venv" ] && [ ! -L "$PREFIX/.venv" ]; then
    rm -rf "$PREFIX/.venv"  # a venv from before releases: replaced by the link below
fi
ln -sfn "venvs/$RELEASE_ID" "$PREFIX/.venv.next"
mv -T "$PREFIX/.venv.next" "$PREFIX/.venv"
sync
# Keep the running venv and the one before it (to go back by hand); older ones go.
for old in "$VENVS"/*; do
    [ "$old" = "$NEW_VENV" ] || [ "venvs/$(basename "$old")" = "$previous" ] || rm -rf "$old"
done

# --- 4. Config and keys in /etc/crowd-appliance: readable by the service user, nobody else
install -d -m 0755 "$ETC"
install -d -m 0750 "$ETC/tls"
install -d -m 0750 "$STATE"
install -m 0640 "$HERE/site.yaml" "$ETC/site.yaml"
install -m 0644 "$HERE/tls/ca.crt" "$ETC/tls/ca.crt"
install -m 0644 "$HERE/tls/$DEVICE_ID.crt" "$ETC/tls/$DEVICE_ID.crt"
install -m 0600 "$HERE/tls/$DEVICE_ID.key" "$ETC/tls/$DEVICE_ID.key"
if [ "$SYSTEM" -eq 1 ]; then
    chown root:"$USER_NAME" "$ETC/site.yaml" "$ETC/tls"
    chown "$USER_NAME:$USER_NAME" "$ETC/tls/$DEVICE_ID.key" "$STATE"
else
    # The config names absolute device paths; under --root they must point into the root.
    sed -i -e "s#/etc/crowd-appliance#$ETC#g" -e "s#/var/lib/crowd-appliance#$STATE#g" "$ETC/site.yaml"
fi

# --- 5. The systemd unit
install -d -m 0755 "$UNIT_DIR"
install -m 0644 "$HERE/appliance.service" "$UNIT_DIR/appliance.service"
if [ "$SYSTEM" -eq 1 ] && command -v systemctl >/dev/null; then
    systemctl daemon-reload
    systemctl enable appliance.service >/dev/null 2>&1
    # The self-test needs the camera the running service would hold.
    systemctl stop appliance.service || true
fi

# --- 6. Self-test, as the service user: green starts the service, red says what to fix
if [ "$SELFTEST" -eq 0 ]; then
    say "self-test skipped (--no-selftest); service not started"
    exit 0
fi
selftest=("$PREFIX/.venv/bin/appliance" selftest --config "$ETC/site.yaml")
[ -z "$SELFTEST_SOURCE" ] || selftest+=(--source "$SELFTEST_SOURCE")
selftest+=("${SELFTEST_SKIP[@]}")
if [ "$SYSTEM" -eq 1 ]; then
    selftest=(runuser -u "$USER_NAME" -- "${selftest[@]}")
fi
if [ -t 1 ]; then GREEN=$'\e[1;32m'; RED=$'\e[1;31m'; OFF=$'\e[0m'; else GREEN=""; RED=""; OFF=""; fi
verdict="$(mktemp)"
set +e
(cd "$STATE" && "${selftest[@]}") | tee "$verdict"
rc=${PIPESTATUS[0]}
set -e
ready=0
grep -q "^GREEN: ready to deploy" "$verdict" && ready=1
rm -f "$verdict"
if [ "$rc" -eq 0 ] && [ "$ready" -eq 1 ]; then
    if [ "$SYSTEM" -eq 1 ] && command -v systemctl >/dev/null; then
        systemctl restart appliance.service
        say "service appliance started (journalctl -u appliance -f)"
    fi
    echo "${GREEN}GREEN: $DEVICE_ID installed, self-test passed${OFF}"
    exit 0
fi
if [ "$rc" -eq 0 ]; then
    # Green with SKIP lines (--skip, or a check this machine cannot make) is not "ready to deploy":
    # the service is enabled but only started once a person has confirmed what was not checked.
    echo "${GREEN}GREEN, but not ready to deploy: $DEVICE_ID installed; confirm the SKIP lines above by hand${OFF}"
    [ "$SYSTEM" -eq 0 ] || echo "install.sh: service enabled, not started; once confirmed: sudo systemctl start appliance"
    exit 0
fi
echo "${RED}RED: $DEVICE_ID installed, but the self-test failed: fix the FAIL lines above, then run" \
     "${selftest[*]}${OFF}"
[ "$SYSTEM" -eq 0 ] || echo "install.sh: once it is green: sudo systemctl start appliance"
exit 1
