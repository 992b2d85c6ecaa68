from pathlib import Path

import pytest

from nsmc.errors import UserError
from train.config import PretrainConfig, TrainConfig, lightning_devices, parse, validation_interval

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_reproduce_the_tutorial():
    cfg = parse(TrainConfig, [])
    assert (cfg.pretrained_model_name, cfg.downstream_corpus_name) == ("beomi/kcbert-base", "nsmc")
    assert (cfg.batch_size, cfg.learning_rate, cfg.max_seq_length, cfg.epochs, cfg.seed) == (
        32, 5e-5, 128, 3, 7)


def test_yaml_then_flags_override(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("batch_size: 8\nepochs: 5\n")
    cfg = parse(TrainConfig,
                [str(yaml_file), "--epochs", "2", "--group-by-length", "false", "--learning_rate", "1e-4"])
    assert (cfg.batch_size, cfg.epochs, cfg.group_by_length, cfg.learning_rate) == (8, 2, False, 1e-4)


def test_tutorial_tpu_cores_flag():
    cfg = parse(TrainConfig, ["--tpu_cores", "8"])
    assert cfg.accelerator == "tpu" and lightning_devices(cfg.devices) == 8


@pytest.mark.parametrize("bad", [["--devices", "two"], ["--scheduler", "cosine"], ["--batch_size", "0"],
                                 ["--val_check_interval", "2.5"], ["--val_check_interval", "0"],
                                 ["--ema_decay", "1"]])
def test_bad_values_are_user_errors(bad):
    with pytest.raises(UserError):
        parse(TrainConfig, bad)


def test_pretrain_objective_is_checked():
    assert parse(PretrainConfig, ["--objective", "electra"]).objective == "electra"
    with pytest.raises(UserError, match="choose mlm or electra"):
        parse(PretrainConfig, ["--objective", "bert"])


def test_validation_interval_is_a_fraction_or_a_step_count():
    """Lightning reads a float as a share of the epoch and an int as steps: 500.0 from a flag must be 500."""
    assert validation_interval(0.25) == 0.25 and validation_interval(1.0) == 1.0
    assert validation_interval(500.0) == 500 and isinstance(validation_interval(500.0), int)


def test_unknown_yaml_key_is_rejected(tmp_path, capsys):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("batch_sise: 8\n")
    with pytest.raises(SystemExit):
        parse(TrainConfig, [str(yaml_file)])
    assert "batch_sise" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_preset_loads(path):
    cls = PretrainConfig if path.name.startswith("pretrain") else TrainConfig
    assert parse(cls, [str(path)])


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        parse(TrainConfig, ["--help"])
    out = capsys.readouterr().out
    for name in ("--pretrained_model_name", "--downstream_model_dir", "--tpu_cores", "--resume",
                 "--corpus_dir", "--precision"):
        assert name in out
