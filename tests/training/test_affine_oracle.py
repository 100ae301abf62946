"""training/affine_oracle.py: the best per-channel affine map of the hazy image to the GT."""

import numpy as np

from keras_dehaze.data import write_image
from keras_dehaze.metrics.full_reference import psnr
from tests.training_scripts import load_training_script


def _script():
    return load_training_script("affine_oracle")


def test_uniform_haze_is_undone_exactly_and_a_non_affine_change_is_not():
    rng = np.random.default_rng(0)
    clear = rng.uniform(0, 1, (24, 32, 3)).astype(np.float32)
    t, airlight = 0.3, np.array([0.8, 0.85, 0.9], np.float32)  # uniform haze = an affine map per channel
    hazy = clear * t + airlight * (1 - t)
    oracle = _script().affine_oracle(hazy, clear)
    assert psnr(oracle, clear) > 60
    squared = clear ** 2  # not affine: the fit is only the best straight line
    fitted = _script().affine_oracle(squared, clear)
    assert 15 < psnr(fitted, clear) < 40 and psnr(fitted, clear) > psnr(squared, clear)


def test_prints_one_row_per_pair(tmp_path, capsys):
    rng = np.random.default_rng(1)
    for i in range(2):
        clear = rng.uniform(0, 1, (16, 16, 3))
        write_image(str(tmp_path / "GT" / f"{i}.png"), clear)
        write_image(str(tmp_path / "hazy" / f"{i}.png"), 0.5 * clear + 0.4)
    assert _script().main([str(tmp_path)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if ".png" in line]
    assert len(rows) == 2
    hazy_psnr, oracle_psnr = float(rows[0].split()[1]), float(rows[0].split()[4])
    assert oracle_psnr > hazy_psnr + 10  # 8-bit rounding limits the exact inverse
