"""Every shell command of README.md runs as written.

The commands are read from the README's fenced ```bash / ```sh / ```console blocks (for console
blocks, the lines that start with ``$ ``), so a renamed option, script or preset breaks this test.
They run in order in one temporary folder that holds what the README assumes the user has: a hazy
``photo.jpg``, a ``photos/`` folder, and a datasets folder (a tiny RESIDE-layout ``sots-indoor``
and a ``real-hazy`` folder without ground truth) for ``ln -s /path/to/datasets data``. The
repository's ``training/``, ``scripts/``, ``edge/`` and requirement files are linked into it, so
repository-relative paths work.

What differs from typing the commands:
- ``keras-dehaze`` runs as ``python -m keras_dehaze.cli`` and ``python`` is this interpreter
  (the console script may point at another checkout);
- ``/path/to/datasets`` is the temporary datasets folder;
- ``pip`` commands are only checked for shell syntax and that the files they name exist;
- ``pytest`` commands only collect (``--collect-only``): running the suite inside itself would
  recurse;
- ``training/train.py`` runs with ``--set optim.epochs=1 --set optim.steps_per_epoch=2`` appended.

A comment ``<!-- readme-test: skip (reason) -->`` directly above a block skips it;
``<!-- readme-test: slow (reason) -->`` marks it slow (run with ``-m slow``).
"""

import os
import re
import shlex
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests import REPO as ROOT

README = os.path.join(ROOT, "README.md")
SHELL_LANGS = {"bash", "sh", "shell", "console"}
MARKER = re.compile(r"<!--\s*readme-test:\s*(skip|slow)\s*\((.*?)\)\s*-->")
LINKED = ("training", "scripts", "edge", "keras_dehaze", "requirements.txt", "requirements-dev.txt", "pyproject.toml")
DATASETS_PLACEHOLDER = "/path/to/datasets"
TRAIN_SHORT = " --set optim.epochs=1 --set optim.steps_per_epoch=2"
# Files a command must leave behind (keyed by a piece of the command), besides exit status 0.
EXPECTED = {
    "dehaze photo.jpg -o out/": ["out/photo_dehazed.png"],
    "-o out_aecrnet/": ["out_aecrnet/photo_dehazed.png", "out_aecrnet/street_dehazed.png"],
    "-o eval_results": ["eval_results/report.md", "eval_results/sots-indoor.csv", "eval_results/real-hazy.csv"],
    "-o figure.jpg": ["figure.jpg"],
    "aecrnet_cpu_demo.yaml": ["runs/aecrnet_cpu_demo/best.keras"],
}


def readme_commands(path=README):
    """[(command, marker kind or None, marker reason, line number)] in README order."""
    lines = open(path, encoding="utf-8").read().split("\n")
    commands, i = [], 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence or not fence.group(1):
            i += 1
            continue
        lang, start = fence.group(1).lower(), i
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        marker = MARKER.search(lines[j]) if j >= 0 else None
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append((i + 1, lines[i]))
            i += 1
        i += 1
        if lang not in SHELL_LANGS:
            continue
        pending, first = "", None
        for number, text in body:
            if lang == "console":
                if not text.startswith("$ "):
                    continue
                text = text[2:]
            if not pending and (not text.strip() or text.lstrip().startswith("#")):
                continue
            first = first or number
            if text.rstrip().endswith("\\"):
                pending += text.rstrip()[:-1] + " "
                continue
            commands.append((pending + text, marker.group(1) if marker else None,
                             marker.group(2) if marker else None, first))
            pending, first = "", None
    return commands


def _params():
    params = []
    for command, kind, reason, line in readme_commands():
        marks = []
        if kind == "skip":
            marks.append(pytest.mark.skip(reason=f"README line {line}: {reason}"))
        elif kind == "slow":
            marks.append(pytest.mark.slow)
        params.append(pytest.param(command, id=f"L{line}:{command[:50]}", marks=marks))
    return params


def _hazy(seed, h=120, w=160):
    """A synthetic outdoor-like scene and its hazy version (atmospheric scattering model)."""
    rng = np.random.default_rng(seed)
    clear = np.zeros((h, w, 3), np.float32)
    clear[: h // 2] = np.linspace([0.9, 0.7, 0.5], [0.6, 0.8, 1.0], h // 2)[:, None]  # sky
    clear[h // 2:] = [0.25, 0.45, 0.2]  # ground
    for _ in range(6):  # buildings
        x, bw, bh = rng.integers(0, w - 20), rng.integers(10, 30), rng.integers(20, h // 2)
        clear[h // 2 + 10 - bh:h // 2 + 10, x:x + bw] = rng.uniform(0.1, 0.8, 3)
    clear += rng.normal(0, 0.02, clear.shape).astype(np.float32)
    clear = np.clip(clear, 0, 1)
    depth = np.linspace(1.5, 0.3, h, dtype=np.float32)[:, None, None]
    t = np.exp(-1.2 * depth)
    hazy = clear * t + 0.9 * (1 - t)
    return clear, hazy


def _write(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, np.round(np.clip(image, 0, 1)[..., ::-1] * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = str(tmp_path_factory.mktemp("readme"))
    for name in LINKED:
        os.symlink(os.path.join(ROOT, name), os.path.join(ws, name))
    _write(os.path.join(ws, "photo.jpg"), _hazy(0)[1])
    _write(os.path.join(ws, "photos", "street.jpg"), _hazy(1)[1])
    datasets = os.path.join(ws, "datasets")
    for k, scene in enumerate(("1400", "1401", "1409")):  # RESIDE layout; 1409 is a validation scene
        clear, _ = _hazy(10 + k)
        _write(os.path.join(datasets, "sots-indoor", "clear", f"{scene}.png"), clear)
        for level, beta in ((1, 0.6), (2, 1.4)):
            t = np.exp(-beta * np.linspace(1.5, 0.3, clear.shape[0], dtype=np.float32))[:, None, None]
            _write(os.path.join(datasets, "sots-indoor", "hazy", f"{scene}_{level}.png"), clear * t + 0.9 * (1 - t))
    for k in range(2):
        _write(os.path.join(datasets, "real-hazy", f"real{k}.jpg"), _hazy(20 + k)[1])
    return ws, datasets


def _env():
    env = dict(os.environ, PY=sys.executable)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _as_run(command, datasets):
    """The command as this test runs it (see the module docstring)."""
    command = command.replace(DATASETS_PLACEHOLDER, shlex.quote(datasets))
    command = re.sub(r"^keras-dehaze\b", '"$PY" -m keras_dehaze.cli', command.strip())
    command = re.sub(r"^python3?\b", '"$PY"', command)
    if "training/train.py" in command:
        command = re.sub(r"\s+#[^'\"]*$", "", command) + TRAIN_SHORT  # before a trailing comment
    return command


def _is_pip(command):
    words = shlex.split(command, comments=True)
    return "pip" in words[:3]


def _is_pytest(command):
    words = shlex.split(command, comments=True)
    return "pytest" in words[:3]


def test_readme_has_the_commands_it_should():
    commands = [c for c, *_ in readme_commands()]
    assert len(commands) >= 6
    for piece in ("pip install", "keras-dehaze dehaze", "keras-dehaze eval", "training/train.py", "pytest"):
        assert any(piece in c for c in commands), f"no README command contains {piece!r}"
    skipped = [c for c, kind, *_ in readme_commands() if kind == "skip"]
    assert len(skipped) <= 2, f"too many README commands are skipped: {skipped}"


@pytest.mark.parametrize("command", _params())
def test_readme_command(command, workspace):
    ws, datasets = workspace
    env = _env()
    if _is_pip(command):
        check = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        words = shlex.split(command, comments=True)
        for flag, value in zip(words, words[1:]):
            if flag in ("-r", "--requirement"):
                assert os.path.exists(os.path.join(ROOT, value)), f"{value} does not exist"
        assert os.path.exists(os.path.join(ROOT, "pyproject.toml"))
        return
    if _is_pytest(command):
        run = _as_run(command, datasets) + " --collect-only"
        result = subprocess.run(["bash", "-c", run], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{run}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        assert re.search(r"\d+(/\d+)? tests? (collected|selected)", result.stdout), result.stdout[-2000:]
        return
    data = os.path.join(ws, "data")
    if command.strip().startswith("ln -s") and command.split()[-1] == "data":
        if os.path.lexists(data):
            os.remove(data)
    elif not os.path.lexists(data):  # the README's `ln -s` command has not run (e.g. with -k)
        os.symlink(datasets, data)
    run = _as_run(command, datasets)
    result = subprocess.run(["bash", "-c", run], cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{run}\nexit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    for piece, files in EXPECTED.items():
        if piece in command:
            for name in files:
                assert os.path.exists(os.path.join(ws, name)), f"{command!r} did not write {name}"
