#!/usr/bin/env bash
# Runs the TensorFlow-free on-device runner (edge/infer.py = keras_dehaze.edge.runner) on the
# Raspberry Pi's architecture (arm64 / aarch64, 64-bit Raspberry Pi OS = Debian bookworm) under qemu
# user emulation, and compares its output with the x86 output of the same runner and model.
#
#   sudo bash edge/check_aarch64.sh CACHE_DIR [PHOTO ...]
#
# CACHE_DIR keeps the arm64 Debian root (CACHE_DIR/rootfs, built once with debootstrap, ~10 min)
# and the aarch64 wheels (CACHE_DIR/wheels, CACHE_DIR/site); later runs reuse them. PHOTO
# defaults to a synthetic hazy 690x436 image. Models: every bundled int8 model
# (keras_dehaze/weights/*_int8.tflite), or the files in $MODELS (space separated).
#
# Needs root (debootstrap, chroot), qemu-user-static and debootstrap (installed with apt-get when
# missing), and a host Python with pip, numpy, opencv and ai-edge-litert ($PYTHON, default
# python3) for the x86 reference run. Only numpy, opencv-python-headless and ai-edge-litert are
# installed for the arm64 Python, and only the runner's files (DEVICE_FILES of
# keras_dehaze/edge/runner.py) are copied: the runner must need nothing else. Both runs use that
# copy (python -m keras_dehaze.edge.runner).
#
# /sys is deliberately NOT bound into the chroot: under qemu 7.2 LiteRT's CPU-feature probing
# through /sys crashes the interpreter. Without it XNNPACK is off and the builtin int8 kernels
# run; they differ from XNNPACK's by up to 3 LSB (also on x86), hence the tolerance.
#
# Prints one line per (photo, model): "aarch64 check: PHOTO MODEL WxH max_abs_diff=N ..." and
# exits 1 if any difference exceeds $TOLERANCE (default 3 grey levels).
set -euo pipefail

if [[ $# -lt 1 ]]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
CACHE=$(mkdir -p "$1" && cd "$1" && pwd)
shift
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
TOLERANCE=${TOLERANCE:-3}
SUITE=bookworm
ROOTFS=$CACHE/rootfs
log() { echo "check_aarch64: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    log "must run as root (debootstrap, chroot)"
    exit 2
fi

# --------------------------------------------------------------- qemu + binfmt_misc
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
    log "installing qemu-user-static and debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0 install --no-install-recommends \
        qemu-user-static debootstrap >/dev/null
fi
if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
    # The F flag opens the interpreter now, so it also works inside the chroot.
    conf=/usr/lib/binfmt.d/qemu-aarch64.conf
    if [[ ! -f $conf ]]; then
        log "$conf missing (is qemu-user-static installed?)"
        exit 2
    fi
    grep -v '^#' "$conf" > /proc/sys/fs/binfmt_misc/register
    log "registered qemu-aarch64 with binfmt_misc"
fi

# --------------------------------------------------------------- arm64 Debian root (cached)
if [[ ! -f $ROOTFS/.keras_dehaze_complete ]]; then
    rm -rf "$ROOTFS"
    mirror=$(grep -hsE '^[[:space:]]*(URIs:|deb[[:space:]])' /etc/apt/sources.list \
                 /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
             | grep -v -- '-security' | grep -oE 'https?://[^[:space:]]+' | head -n 1 || true)
    log "debootstrap --arch=arm64 --variant=minbase $SUITE $ROOTFS ${mirror:-(default mirror)}"
    start=$(date +%s)
    debootstrap --arch=arm64 --variant=minbase --include=python3,libstdc++6 \
        "$SUITE" "$ROOTFS" ${mirror:+"$mirror"} > "$CACHE/debootstrap.log" 2>&1 \
        || { tail -n 30 "$CACHE/debootstrap.log" >&2; exit 1; }
    touch "$ROOTFS/.keras_dehaze_complete"
    log "arm64 root built in $(( $(date +%s) - start )) s"
fi
chroot "$ROOTFS" uname -m | grep -qx aarch64 || { log "the chroot does not run aarch64 code"; exit 1; }
PYVER=$(chroot "$ROOTFS" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
log "arm64 root: $(chroot "$ROOTFS" python3 --version 2>&1)"

# --------------------------------------------------------------- aarch64 wheels (cached)
SITE=$CACHE/site-py$PYVER
if [[ ! -f $SITE/.keras_dehaze_complete ]]; then
    # ai-edge-litert 2.x aarch64 wheels are tagged manylinux_2_27 (manylinux2014 alone finds
    # only 1.x), opencv-python-headless 5.x manylinux_2_28; bookworm's glibc 2.36 takes all.
    # pip does not widen a given --platform to older manylinux tags, so all are listed.
    wheel_args=(--platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64
                --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 --only-binary=:all:
                --python-version "$PYVER" --implementation cp)
    "$PYTHON" -m pip download --quiet --dest "$CACHE/wheels" "${wheel_args[@]}" \
        ai-edge-litert==2.3.0 numpy opencv-python-headless
    rm -rf "$SITE"
    "$PYTHON" -m pip install --quiet --no-index --find-links "$CACHE/wheels" --target "$SITE" \
        "${wheel_args[@]}" ai-edge-litert==2.3.0 numpy opencv-python-headless
    touch "$SITE/.keras_dehaze_complete"
fi
ls "$CACHE/wheels" | sed 's/^/check_aarch64: wheel /' >&2

# --------------------------------------------------------------- the runner, models, photos
WORK=$ROOTFS/opt/keras_dehaze_check
rm -rf "$WORK"
mkdir -p "$WORK/runner" "$WORK/models" "$WORK/photos" "$WORK/out" "$WORK/site"
# The runner's files only (keras_dehaze/edge/runner.py lists them): the rest of the package,
# TensorFlow included, is absent, as on a device.
(cd "$REPO" && PYTHONPATH= "$PYTHON" -c \
    'import sys; from keras_dehaze.edge.runner import copy_device_files; copy_device_files(sys.argv[1])' \
    "$WORK/runner")
mount --bind "$SITE" "$WORK/site"
trap 'umount "$WORK/site" 2>/dev/null || true' EXIT

if [[ -n ${MODELS:-} ]]; then
    read -r -a models <<< "$MODELS"
else
    models=("$REPO"/keras_dehaze/weights/*_int8.tflite)
fi
[[ -f ${models[0]} ]] || { log "no int8 model found"; exit 2; }
for m in "${models[@]}"; do cp "$m" "$WORK/models/"; done

photos=("$@")
if [[ ${#photos[@]} -eq 0 ]]; then
    "$PYTHON" - "$WORK/photos/synthetic_hazy.png" <<'EOF'
import sys, cv2, numpy as np
rng = np.random.default_rng(0)
h, w = 436, 690
y, x = np.mgrid[0:h, 0:w].astype(np.float32)
scene = np.stack([0.5 + 0.4 * np.sin(x / 23.0), 0.5 + 0.4 * np.cos(y / 17.0),
                  0.5 + 0.3 * np.sin((x + y) / 41.0)], -1)
scene += rng.normal(0, 0.03, scene.shape).astype(np.float32)
t = np.exp(-1.2 * (1.0 - y / h))[..., None]
hazy = np.clip(scene * t + 0.85 * (1 - t), 0, 1)
cv2.imwrite(sys.argv[1], np.round(hazy[..., ::-1] * 255).astype(np.uint8))
EOF
    photos=("$WORK/photos/synthetic_hazy.png")
else
    for p in "${photos[@]}"; do cp "$p" "$WORK/photos/"; done
fi

# --------------------------------------------------------------- run and compare
status=0
for m in "${models[@]}"; do
    mname=$(basename "$m")
    mstem=${mname%.tflite}
    for p in "${photos[@]}"; do
        pname=$(basename "$p")
        stem=${pname%.*}
        mkdir -p "$WORK/out/x86-$mstem" "$WORK/out/arm64-$mstem"
        (cd "$WORK/runner" && PYTHONPATH= "$PYTHON" -m keras_dehaze.edge.runner --model "$m" \
            "$WORK/photos/$pname" -o "$WORK/out/x86-$mstem" --threads 2 -q)
        start=$(date +%s)
        chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root \
            PYTHONPATH=/opt/keras_dehaze_check/site:/opt/keras_dehaze_check/runner \
            python3 -m keras_dehaze.edge.runner \
            --model "/opt/keras_dehaze_check/models/$mname" "/opt/keras_dehaze_check/photos/$pname" \
            -o "/opt/keras_dehaze_check/out/arm64-$mstem" --threads 2
        seconds=$(( $(date +%s) - start ))
        "$PYTHON" - "$WORK/out/x86-$mstem/${stem}_dehazed.png" \
            "$WORK/out/arm64-$mstem/${stem}_dehazed.png" "$pname" "$mname" "$TOLERANCE" \
            "$seconds" <<'EOF' || status=1
import sys, cv2, numpy as np
x86, arm, photo, model, tol, seconds = sys.argv[1:7]
a = cv2.imread(x86, cv2.IMREAD_UNCHANGED).astype(np.int32)
b = cv2.imread(arm, cv2.IMREAD_UNCHANGED).astype(np.int32)
if a.shape != b.shape:
    sys.exit(f"aarch64 check: {photo} {model}: shapes differ {a.shape} vs {b.shape}")
d = np.abs(a - b)
mse = np.mean(((a - b) / 255.0) ** 2)
psnr = float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)
ok = d.max() <= int(tol)
print(f"aarch64 check: {photo} {model} {a.shape[1]}x{a.shape[0]} max_abs_diff={d.max()} "
      f"pixels_differing={np.mean(d > 0) * 100:.2f}% psnr_vs_x86={psnr:.1f}dB "
      f"emulated_run={seconds}s {'OK' if ok else 'FAIL (tolerance ' + tol + ')'}")
sys.exit(0 if ok else 1)
EOF
    done
done
exit $status
