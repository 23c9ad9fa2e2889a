# Sourced (not run) by scripts/aarch64_smoke.sh and scripts/aarch64_bench.sh: an emulated aarch64
# CPython with the appliance's runtime dependencies as their published aarch64 wheels (the ones a
# Raspberry Pi or Jetson installs), under qemu-user.
#
# Nothing is installed on the host: Debian packages (qemu-user-static for this host, python3.11
# for arm64) are fetched with apt-get through a private state folder and unpacked with dpkg -x;
# the wheels are an aarch64 release's (`appliance provision release`). Everything is cached in $AARCH64_SMOKE_CACHE
# (default ~/.cache/crowd-appliance-aarch64), so a second run only runs the command.
#
# onnxruntime crashes at import under qemu-user when /proc/cpuinfo describes an x86 CPU, so the
# aarch64 Python runs in a private mount namespace (unshare -m) with an ARM cpuinfo bind-mounted.
#
# The caller sets AARCH64_TASK (the name its lines start with), REPO and HOST_PY, then calls
# aarch64_prepare once and aarch64_python as often as it likes.

AARCH64_CACHE="${AARCH64_SMOKE_CACHE:-$HOME/.cache/crowd-appliance-aarch64}"
aarch64_start=$(date +%s)

# skip: exit 0 with a reason; fail: exit 1; step: a progress line with the seconds since sourcing.
skip() { echo "$AARCH64_TASK: SKIP: $*"; exit 0; }
fail() { echo "$AARCH64_TASK: FAIL: $*" >&2; exit 1; }
step() { echo "$AARCH64_TASK: [$(( $(date +%s) - aarch64_start ))s] $*"; }

# Skips (never fails) where this host cannot run the emulated Python at all.
aarch64_check_host() {
    [ "${APPLIANCE_SKIP_AARCH64:-}" = "" ] || skip "APPLIANCE_SKIP_AARCH64 is set"
    [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || skip "needs an x86_64 Linux host (this is $(uname -s)-$(uname -m))"
    local tool
    for tool in apt-get dpkg unshare mount; do
        command -v "$tool" >/dev/null || skip "$tool not found (needs a Debian-like host)"
    done
    [ -x "$HOST_PY" ] || skip "$HOST_PY not found (run scripts/setup.sh first)"
    unshare -m true 2>/dev/null || skip "cannot create a mount namespace (unshare -m needs CAP_SYS_ADMIN)"
}

# Sets AARCH64_QEMU, AARCH64_SYSROOT, AARCH64_SITE, fetching into the cache what is missing.
aarch64_prepare() {
    aarch64_check_host
    local cache="$AARCH64_CACHE"
    mkdir -p "$cache"
    AARCH64_SYSROOT="$cache/sysroot"
    AARCH64_SITE="$cache/site-packages"
    local apt="$cache/apt"

    # --- qemu-aarch64: the host's, else Debian's qemu-user-static unpacked into the cache
    AARCH64_QEMU="$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)"
    if [ -z "$AARCH64_QEMU" ]; then
        AARCH64_QEMU="$cache/qemu/usr/bin/qemu-aarch64-static"
        if [ ! -x "$AARCH64_QEMU" ]; then
            step "fetching Debian's qemu-user-static"
            mkdir -p "$cache/qemu-deb"
            (cd "$cache/qemu-deb" && apt-get download -q qemu-user-static >/dev/null 2>&1) \
                || skip "apt-get download qemu-user-static failed (no network or no Debian sources?)"
            dpkg -x "$cache"/qemu-deb/qemu-user-static_*.deb "$cache/qemu"
        fi
    fi

    # --- Debian's aarch64 python3.11 and its libraries, resolved by apt against an empty arm64 system
    if [ ! -x "$AARCH64_SYSROOT/usr/bin/python3.11" ]; then
        step "fetching Debian arm64 python3.11 (apt-get with a private state folder; the host's dpkg is not touched)"
        mkdir -p "$apt/lists/partial" "$apt/archives/partial"
        : > "$apt/status"
        cat > "$apt/apt.conf" <<EOF
Dir::State "$apt";
Dir::State::Lists "$apt/lists";
Dir::State::status "$apt/status";
Dir::Cache "$apt";
Dir::Cache::archives "$apt/archives";
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
Debug::NoLocking "true";
EOF
        APT_CONFIG="$apt/apt.conf" apt-get -q update >"$cache/apt.log" 2>&1 \
            || skip "apt-get update for arm64 failed (no network?); see $cache/apt.log"
        APT_CONFIG="$apt/apt.conf" apt-get -q -y install --download-only --no-install-recommends \
            python3.11-minimal libpython3.11-stdlib libstdc++6 >>"$cache/apt.log" 2>&1 \
            || skip "apt-get could not fetch arm64 python3.11; see $cache/apt.log"
        rm -rf "$AARCH64_SYSROOT.tmp" && mkdir -p "$AARCH64_SYSROOT.tmp"
        local deb
        for deb in "$apt"/archives/*.deb; do dpkg -x "$deb" "$AARCH64_SYSROOT.tmp"; done
        rm -rf "$AARCH64_SYSROOT" && mv "$AARCH64_SYSROOT.tmp" "$AARCH64_SYSROOT"
    fi

    # --- the runtime dependencies as aarch64 wheels, into a separate target: exactly the wheels of
    # an aarch64 release (`appliance provision release`, the one a Raspberry Pi installs), less the
    # appliance's own (this checkout is on the path instead)
    local deps_hash
    deps_hash="$("$HOST_PY" -c 'import hashlib, tomllib; d = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; print(hashlib.sha256("\n".join(d).encode()).hexdigest()[:16])')"
    if [ ! -f "$AARCH64_SITE/.deps-$deps_hash" ]; then
        step "building an aarch64 release for its dependencies' wheels (appliance provision release)"
        rm -rf "$cache/release" "$cache/wheels" "$AARCH64_SITE"
        "$HOST_PY" -m appliance provision release \
            -o "$cache/release" --arch aarch64 --python 3.11 --checkout "$REPO" >"$cache/pip.log" 2>&1 \
            || skip "appliance provision release --arch aarch64 failed (no network?); see $cache/pip.log"
        local platforms=() tag wheels=() whl
        for tag in $("$HOST_PY" -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1]))["platform_tags"]))' "$cache/release/release.json"); do
            platforms+=(--platform "$tag")
        done
        for whl in "$cache"/release/*.whl; do
            case "${whl##*/}" in crowd_appliance-*) ;; *) wheels+=("$whl") ;; esac
        done
        "$HOST_PY" -m pip install -q --no-deps --no-index --only-binary=:all: "${platforms[@]}" --python-version 3.11 \
            --target "$AARCH64_SITE" "${wheels[@]}" >>"$cache/pip.log" 2>&1 \
            || fail "pip install --target failed; see $cache/pip.log"
        touch "$AARCH64_SITE/.deps-$deps_hash"
    fi

    # An ARM CPU as onnxruntime's cpuinfo parser expects it: a Cortex-A76 (Raspberry Pi 5) and a
    # Cortex-A72 (Raspberry Pi 4, no dot-product instructions), to go with qemu's -cpu of the same name.
    cat > "$cache/cpuinfo-cortex-a76" <<'EOF'
processor	: 0
BogoMIPS	: 108.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x4
CPU part	: 0xd0b
CPU revision	: 1

EOF
    cat > "$cache/cpuinfo-cortex-a72" <<'EOF'
processor	: 0
BogoMIPS	: 108.00
Features	: fp asimd evtstrm crc32 cpuid
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd08
CPU revision	: 3

EOF
}

# aarch64_python [python args...]: Debian's python3.11 under qemu-aarch64 with the aarch64 wheels
# and this checkout on its path. AARCH64_CPU picks the cpuinfo shown to onnxruntime: unset (qemu's
# default CPU, "max", all extensions; the A76 cpuinfo), or cortex-a76 / cortex-a72 (also passed to
# qemu as -cpu, so the instructions the kernels may use are that core's).
aarch64_python() {
    local cpu="${AARCH64_CPU:-}" cpuinfo="$AARCH64_CACHE/cpuinfo-cortex-a76" qemu_cpu=()
    if [ -n "$cpu" ]; then
        cpuinfo="$AARCH64_CACHE/cpuinfo-$cpu"
        [ -f "$cpuinfo" ] || fail "no cpuinfo for AARCH64_CPU=$cpu (cortex-a76 or cortex-a72)"
        qemu_cpu=(-cpu "$cpu")
    fi
    unshare -m sh -c 'mount --bind "$1" /proc/cpuinfo && shift && exec "$@"' sh "$cpuinfo" \
        env PYTHONPATH="$AARCH64_SITE:$REPO" PYTHONDONTWRITEBYTECODE=1 PYTHONNOUSERSITE=1 \
        "$AARCH64_QEMU" "${qemu_cpu[@]}" -L "$AARCH64_SYSROOT" "$AARCH64_SYSROOT/usr/bin/python3.11" "$@"
}
