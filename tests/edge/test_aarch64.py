"""edge/check_aarch64.sh: the TF-free runner on the Raspberry Pi's architecture (arm64, qemu).

The full check builds an arm64 Debian bookworm root with debootstrap under qemu-user-static
(~4-10 min, cached), downloads aarch64 wheels and runs edge/infer.py with every bundled int8
model on a photo (~9 min per run emulated), so it is marked slow:

    python -m pytest -m slow tests/edge/test_aarch64.py

Set KERAS_DEHAZE_AARCH64_CACHE to a folder to keep the arm64 root between runs.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keras_dehaze import pretrained
import tests

REPO = Path(tests.REPO)
SCRIPT = REPO / "edge" / "check_aarch64.sh"
# The real hazy photo measured in docs/deployment.md (shared/ lies beside the repository).
PHOTO = REPO.parent / "shared" / "data" / "real-hazy" / "BJ_Baidu_544.jpeg"


def test_usage_without_arguments():
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "CACHE_DIR" in out.stdout


@pytest.mark.slow
def test_runner_on_arm64_matches_x86(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (debootstrap, chroot)")
    for tool in ("debootstrap", "qemu-aarch64-static"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (apt-get install debootstrap qemu-user-static)")
    int8 = sorted(f for f in os.listdir(pretrained.WEIGHTS_DIR) if f.endswith("_int8.tflite"))
    if not int8:
        pytest.skip("no bundled int8 model")
    cache = os.environ.get("KERAS_DEHAZE_AARCH64_CACHE") or str(tmp_path / "aarch64")
    args = ["bash", str(SCRIPT), cache] + ([str(PHOTO)] if PHOTO.is_file() else [])
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH="")
    out = subprocess.run(args, capture_output=True, text=True, timeout=3 * 3600, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("aarch64 check:")]
    print("\n".join(lines))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert len(lines) == len(int8), lines
    for line in lines:
        diff = int(re.search(r"max_abs_diff=(\d+)", line).group(1))
        assert diff <= 3 and line.endswith("OK"), line
