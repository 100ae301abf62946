import glob

import pytest
import yaml

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


# --------------------------------------------------------------- keys of the older layout
def test_old_keys_move_to_the_trainer_section_with_a_warning(tmp_path):
    from keras_dehaze.config import ObsoleteConfigKeyWarning

    path = tmp_path / "old_colabator.yaml"
    path.write_text("trainer:\n  name: colabator\n  features: hed_vgg16\ncolabator:\n  cr_weight: 0.0\n")
    with pytest.warns(ObsoleteConfigKeyWarning, match=r"colabator.cr_weight: 0.0 is now trainer.cr_weight"):
        cfg = load_config(str(path))
    assert cfg.trainer.cr_weight == 0.0 and cfg.trainer.features == "hed_vgg16"
    with pytest.warns(ObsoleteConfigKeyWarning, match=r"corun.contrastive_weight: 0 is now trainer.cr_weight; "
                                                      r"corun.features: 'vgg19' is now trainer.features"):
        cfg = load_config(None, ["trainer.name=corun_pretrain", "corun.contrastive_weight=0", "corun.features=vgg19",
                                 "corun.asm_weight=0.05"])
    assert (cfg.trainer.cr_weight, cfg.trainer.features, cfg.corun.asm_weight) == (0, "vgg19", 0.05)
    with pytest.warns(ObsoleteConfigKeyWarning, match=r"distill.cr_weight: 0.2 is now trainer.cr_weight"):
        assert load_config(None, ["trainer.name=distill", "distill.cr_weight=0.2"]).trainer.cr_weight == 0.2
    # a key the configured strategy never read (old layout) is dropped, and said so
    with pytest.warns(ObsoleteConfigKeyWarning, match=r"colabator.cr_weight dropped \(only trainer.name colabator"):
        assert load_config(None, ["colabator.cr_weight=0.5"]).trainer.cr_weight is None


def test_a_full_old_run_config_loads_with_the_values_its_strategy_used(tmp_path):
    """config.yaml of a run made before the move holds every key of the old layout; its trainer
    section's CR keys were ignored by corun_pretrain, colabator and distill."""
    from keras_dehaze.config import ObsoleteConfigKeyWarning
    from keras_dehaze.trainers import get_trainer

    old_trainer = {"cr_weight": 0.1, "num_negatives": 1, "positive_only": False, "cr_start_step": 0,
                   "features": "vgg19", "feature_weights": ""}
    old = {"colabator": {"real": ["x"], "cr_weight": 0.0}, "distill": {"teacher": "", "cr_weight": 0.0},
           "corun": {"clean": [], "contrastive_weight": 0.2, "features": "hed_vgg16", "feature_weights": ""}}
    used = {"contrastive": (0.1, "vgg19"), "colabator": (0.0, "vgg19"), "distill": (0.0, "vgg19"),
            "corun_pretrain": (0.2, "hed_vgg16")}
    for name, (weight, features) in used.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"trainer": {"name": name, **old_trainer}, **old}))
        with pytest.warns(ObsoleteConfigKeyWarning):
            cfg = load_config(str(path))
        cfg = get_trainer(name).resolve_config(cfg)
        assert (cfg.trainer.cr_weight, cfg.trainer.features) == (weight, features), name


def test_old_keys_given_to_from_dict_name_their_new_place():
    from keras_dehaze.config import from_dict

    with pytest.raises(ConfigError, match=r"unknown config key\(s\) in section 'corun': corun.features; .*"
                                          r"corun.features is now trainer.features"):
        from_dict(Config, {"corun": {"features": "vgg19"}})


def test_shipped_configs_and_records_use_the_current_layout():
    import json
    import warnings

    from keras_dehaze import pretrained
    from keras_dehaze.config import from_dict, to_dict

    for path in glob.glob("training/configs/*.yaml"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an ObsoleteConfigKeyWarning fails here
            cfg = load_config(path)
        assert from_dict(Config, to_dict(cfg)) == cfg, path
    for name in pretrained.available():  # preset records: their training sections still load
        record = pretrained.metadata(name)
        if "trainer" in record:
            assert from_dict(Config, {"trainer": record["trainer"]}).trainer.name == record["trainer"]["name"]
        with open(f"keras_dehaze/weights/{name}.json") as f:
            assert json.load(f)["model"]
