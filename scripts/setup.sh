#!/usr/bin/env bash
# Set up a development or field install in ./.venv: system packages (when we can install them),
# then the appliance with its test extras. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || need_apt+=(mosquitto mosquitto-clients)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need_apt+=(python3-venv)
# pdftoppm renders the public sign to PNG (and the sign tests read it back); DejaVu prints any operator name.
command -v pdftoppm >/dev/null 2>&1 || need_apt+=(poppler-utils)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
# systemd-analyze: the tests score and verify systemd/appliance.service with it.
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# unshare (util-linux): the release tests install with no network at all (unshare -n), the aarch64
# smoke test runs in a private mount namespace (unshare -m); sha256sum (coreutils): install.sh
# checks every wheel of a release against its lock.
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
command -v sha256sum >/dev/null 2>&1 || need_apt+=(coreutils)
# Camera tests: ffmpeg makes the test cameras' JPEG frames from the sample clip; GStreamer's RTSP
# server (run with Debian's python3, which has python3-gi) is the IP camera on loopback.
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
if ! /usr/bin/python3 -c "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); \
from gi.repository import Gst; Gst.init(None); assert Gst.ElementFactory.find('jpegparse') \
and Gst.ElementFactory.find('rtpjpegpay')" >/dev/null 2>&1; then
    need_apt+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
fi
# Test brokers (scripts/test.sh sets SETUP_TEST_BROKERS=1; a field install never gets them):
# RabbitMQ's MQTT plugin, so the MQTT 3.1.1 path is tested against a broker that is not Mosquitto
# (tests/test_publish_rabbitmq.py; about 20 s to install, 25 s to run). The test starts its own
# node on loopback ports; the package's own service, where systemd starts it, is not used.
# The cluster test runs three such nodes, and HAProxy in front of them for the comparison with the
# device's own list of broker URLs (tests/test_broker_cluster.py, scripts/simulate_fleet.py --cluster).
if [ "${SETUP_TEST_BROKERS:-0}" = 1 ] && [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    need_apt+=(rabbitmq-server)
fi
if [ "${SETUP_TEST_BROKERS:-0}" = 1 ] && ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
    need_apt+=(haproxy)
fi
# The public page is checked as a person sees it: real headless Chromium driven through chromedriver
# (tests/test_transparency_page.py), with axe-core from npm injected for the accessibility check.
if [ "${SETUP_TEST_BROKERS:-0}" = 1 ]; then
    command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
    command -v npm >/dev/null 2>&1 || need_apt+=(npm)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else SUDO=""; fi
    if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
        echo "setup: installing ${need_apt[*]} with apt-get" >&2
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "setup: please install ${need_apt[*]} (apt-get); continuing without" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# pip's output goes to a log, shown only if the install fails.
log=.venv/install.log
# The slowest step (half a minute or more) and otherwise silent: say what runs and where to watch it.
echo "setup: installing the appliance and its Python dependencies into .venv with pip (log: $log)" >&2
if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e '.[test]'; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "setup: pip install failed (full log: $log)" >&2
    exit 1
fi
# axe-core at the version pinned by tests/browser/package-lock.json (npm ci: exactly the lock file).
if [ "${SETUP_TEST_BROKERS:-0}" = 1 ] && [ ! -f tests/browser/node_modules/axe-core/axe.min.js ]; then
    if command -v npm >/dev/null 2>&1; then
        echo "setup: installing axe-core for the page tests with npm ci (tests/browser)" >&2
        (cd tests/browser && npm ci --no-audit --no-fund --silent) >&2
    else
        echo "setup: npm is missing; the page's accessibility test will be skipped" >&2
    fi
fi
echo "setup: ready. Try: .venv/bin/appliance run --config examples/site.yaml" >&2
