#!/usr/bin/env bash
# Installs crowd-appliance @APPLIANCE_VERSION@ as device @DEVICE_ID@ on a 64-bit Raspberry Pi OS,
# Debian, Ubuntu or Jetson (JetPack) board. Written by `appliance provision`; run from the
# unpacked bundle:
#
#   tar xzf @DEVICE_ID@.tar.gz && sudo ./@DEVICE_ID@/install.sh
#
# Idempotent: running it again (a newer bundle, or the same one) upgrades in place; the outbox
# in /var/lib/crowd-appliance is never touched. Exit 0: self-test green, 1: red, 2: bad usage.
set -euo pipefail

DEVICE_ID="@DEVICE_ID@"
VERSION="@APPLIANCE_VERSION@"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    cat <<USAGE
usage: install.sh [--root DIR] [--wheelhouse DIR] [--python PY] [--source SRC] [--skip CHECK]... [--no-selftest]

  --root DIR        install under DIR instead of / (a test or image build): no user is created,
                    nothing is chowned, systemctl is not called, and the paths in site.yaml are
                    rewritten to point under DIR so the installed appliance runs from there
  --wheelhouse DIR  install wheels from DIR only (sites without internet); default: the folder
                    'wheelhouse' beside the bundle if it exists, else PyPI
  --python PY       the Python 3.9+ to build the venv with (default: python3)
  --source SRC      camera source for the self-test only (default: the one in site.yaml)
  --skip CHECK      leave one self-test check out (camera, time, outbox, broker), e.g. on a lab
                    bench; the device is then not reported as ready to deploy
  --no-selftest     skip the self-test (and do not start the service)
USAGE
}

ROOT=/
WHEELHOUSE=""
PYTHON=python3
SELFTEST_SOURCE=""
SELFTEST=1
SELFTEST_SKIP=()
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="${2:?--root needs a folder}"; shift 2 ;;
        --wheelhouse) WHEELHOUSE="${2:?--wheelhouse needs a folder}"; shift 2 ;;
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
if [ -z "$WHEELHOUSE" ] && [ -d "$HERE/../wheelhouse" ]; then
    WHEELHOUSE="$(cd "$HERE/../wheelhouse" && pwd)"
fi
if [ -n "$WHEELHOUSE" ]; then
    [ -d "$WHEELHOUSE" ] || die "--wheelhouse $WHEELHOUSE: no such folder"
    WHEELHOUSE="$(cd "$WHEELHOUSE" && pwd)"
fi
for f in site.yaml appliance.service "tls/ca.crt" "tls/$DEVICE_ID.crt" "tls/$DEVICE_ID.key"; do
    [ -f "$HERE/$f" ] || die "$HERE/$f missing: unpack the whole bundle and run install.sh from it"
done

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

# --- 2. The unprivileged user the service runs as (video: V4L2 cameras)
if [ "$SYSTEM" -eq 1 ] && ! id "$USER_NAME" >/dev/null 2>&1; then
    groups_opt=()
    getent group video >/dev/null && groups_opt=(--groups video)
    useradd --system --home-dir /var/lib/crowd-appliance --no-create-home --shell /usr/sbin/nologin \
        "${groups_opt[@]}" "$USER_NAME"
    say "created user $USER_NAME"
fi

# --- 3. The appliance in a venv under /opt/crowd-appliance (upgraded in place when it exists)
mkdir -p "$PREFIX"
[ -x "$PREFIX/.venv/bin/python" ] || "$PYTHON" -m venv "$PREFIX/.venv"
pip_log="$PREFIX/install.log"
pip_args=(install --upgrade --disable-pip-version-check)
if [ -n "$WHEELHOUSE" ]; then
    pip_args+=(--no-index --find-links "$WHEELHOUSE")
    say "installing crowd-appliance $VERSION from $WHEELHOUSE"
else
    say "installing crowd-appliance $VERSION from PyPI"
fi
# The second step replaces the appliance itself even when its version did not change (a rebuilt
# wheel); its dependencies are only upgraded when the new version asks for it.
if ! { "$PREFIX/.venv/bin/python" -m pip "${pip_args[@]}" "crowd-appliance==$VERSION" \
       && "$PREFIX/.venv/bin/python" -m pip "${pip_args[@]}" --force-reinstall --no-deps "crowd-appliance==$VERSION"; \
     } >"$pip_log" 2>&1; then
    tail -n 20 "$pip_log" >&2
    echo "install.sh: error: pip install failed (full log: $pip_log)" >&2
    exit 1
fi

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
