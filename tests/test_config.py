import glob

import pytest

from keras_dehaze.config import Config, ConfigError, load_config


def test_every_shipped_config_loads():
    paths = glob.glob("training/configs/*.yaml")
    assert paths
    for path in paths:
        assert isinstance(load_config(path), Config)


def test_overrides_are_typed(tmp_path):
    cfg = load_config("training/configs/aecrnet_cpu_demo.yaml",
                      ["optim.lr=1e-3", "data.batch_size=2", "data.val_scenes=[1400, 1401]",
                       "model.args.filters=8", "trainer.positive_only=true"])
    assert cfg.optim.lr == 1e-3 and cfg.data.batch_size == 2
    assert cfg.data.val_scenes == (1400, 1401)
    assert cfg.model.args["filters"] == 8 and cfg.trainer.positive_only is True
    assert load_config(None, ["optim.epochs=3"]).optim.epochs == 3


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("trainer:\n  cr_wieght: 0.1\n")
    with pytest.raises(ConfigError, match=r"trainer\.cr_wieght"):
        load_config(str(path))
    with pytest.raises(ConfigError, match="unknown config key.*optimizer"):
        load_config(None, ["optimizer.lr=1"])


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"'optim.epochs' must be int"):
        load_config(None, ["optim.epochs=ten"])
    with pytest.raises(ConfigError, match=r"'data.batch_size' must be int"):
        load_config(None, ["data.batch_size=true"])
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(str(path))


def test_missing_file_and_bad_override():
    with pytest.raises(ConfigError, match="not found"):
        load_config("nope.yaml")
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["optim.lr"])


def test_empty_string_for_a_list_key_means_none(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text('data:\n  train: ""\nrehazy:\n  hazy: "photos"\n')
    cfg = load_config(str(path))
    assert cfg.data.train == () and cfg.rehazy.hazy == ("photos",)
    assert load_config(str(path), ["data.train=a"]).data.train == ("a",)
