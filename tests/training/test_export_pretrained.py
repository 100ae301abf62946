"""training/export_pretrained.py: the record names the validation figures of the file it ships."""

import pytest
from tests.training_scripts import load_training_script


def _script():
    return load_training_script("export_pretrained")


LOG = [  # log.csv rows as csv.DictReader gives them (strings)
    {"val_psnr": "20.5", "val_ssim": "0.89", "val_teacher_psnr": "20.6", "val_teacher_ssim": "0.895"},
    {"val_psnr": "20.9", "val_ssim": "0.90", "val_teacher_psnr": "20.7", "val_teacher_ssim": "0.901"},
    {"val_psnr": "20.65", "val_ssim": "0.899", "val_teacher_psnr": "20.75", "val_teacher_ssim": "0.9008"},
]
BEST = {"monitor": "val_psnr", "value": 20.9, "epoch": 2}


def test_each_shipped_file_gets_its_own_validation_figures():
    shipped = _script()._shipped_validation
    assert shipped("best.keras", BEST, LOG) == {"epoch": 2, "val_psnr": 20.9, "val_ssim": 0.90}
    assert shipped("latest.keras", BEST, LOG) == {"checkpoint": "latest.keras", "epoch": 3, "val_psnr": 20.65,
                                                 "val_ssim": 0.899}
    assert shipped("teacher.keras", BEST, LOG) == {"checkpoint": "teacher.keras", "epoch": 3, "val_psnr": 20.75,
                                                  "val_ssim": 0.9008}


def test_unknown_file_or_missing_teacher_columns_are_refused():
    shipped = _script()._shipped_validation
    with pytest.raises(SystemExit, match="no validation figures are logged for epoch_3.keras"):
        shipped("epoch_3.keras", BEST, LOG)
    with pytest.raises(SystemExit, match="no val_teacher_psnr column"):
        shipped("teacher.keras", BEST, [{"val_psnr": "20", "val_ssim": "0.9"}])
