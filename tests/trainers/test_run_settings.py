"""The settings dataclasses: checks, `config.json`, resume rules, the options built from them."""

import argparse
import dataclasses
import subprocess
import sys

import pytest

from studio.cli.settings_options import add_settings_options, settings_from_options
from studio.trainers import (
    BaseModelSettings,
    DreamBoothSettings,
    TextualInversionSettings,
)
from studio.trainers.settings import settings_class

TI = dict(model="tiny", data="images", token="<toy>", init_word="toy")


def parse(settings_cls, *argv):
    parser = argparse.ArgumentParser()
    add_settings_options(parser, settings_cls)
    parser.add_argument("--out")
    parser.add_argument("--resume", action="store_true")
    return parser, parser.parse_args(list(argv))


def test_options_come_from_the_fields():
    _, args = parse(TextualInversionSettings, "--grad-accum", "2", "--sample-prompt", "a",
                    "--sample-prompt", "b", "--no-jit", "--min-snr-gamma", "5")
    assert vars(args) == {"grad_accum": 2, "sample_prompts": ["a", "b"], "jit": False,
                          "min_snr_gamma": 5.0, "out": None, "resume": False}
    _, args = parse(DreamBoothSettings, "--lora-feed-forward", "--optimizer", "lion")
    assert args.lora_feed_forward is True and args.optimizer == "lion"
    with pytest.raises(SystemExit):
        parse(DreamBoothSettings, "--optimizer", "rmsprop")


def test_help_renders_each_default_once():
    parser, _ = parse(TextualInversionSettings)
    text = " ".join(parser.format_help().split())
    assert "optimizer steps in the run; a resumed run may change it (default: 2000)" in text
    assert "learning rate; a resumed run may change it (default: 0.005)" in text
    assert "training image size (default: the model's)" in text
    for field in dataclasses.fields(TextualInversionSettings):
        assert "default" not in field.metadata["help"]


def test_validation_names_the_option_and_the_value():
    with pytest.raises(ValueError, match="needs --data, --init-word. Received: none"):
        TextualInversionSettings(model="tiny", token="<toy>").validate()
    with pytest.raises(ValueError, match="--num-vectors must be at least 1. Received: 0"):
        TextualInversionSettings(**TI, num_vectors=0).validate()
    with pytest.raises(ValueError, match="--latent-variants must be >= 0. Received: -1"):
        TextualInversionSettings(**TI, latent_variants=-1).validate()
    with pytest.raises(ValueError, match="--precision must be one of"):
        TextualInversionSettings(**TI, precision="float8").validate()
    with pytest.raises(ValueError, match="--pool-size must be at least 1. Received: 0"):
        BaseModelSettings(pool_size=0).validate()


def test_dreambooth_learning_rate_follows_the_mode():
    assert DreamBoothSettings().lr == 5e-6
    assert DreamBoothSettings(lora_rank=4).lr == 1e-4
    assert DreamBoothSettings(lora_rank=4, lr=1e-3).lr == 1e-3


def test_config_records_the_method_and_not_the_machine_paths():
    settings = TextualInversionSettings(**TI, cache_dir="/tmp/cache", weights="/w")
    config = settings.to_config()
    assert config["method"] == "textual_inversion" and config["token"] == "<toy>"
    assert not {"cache_dir", "weights", "vocabulary", "jit"} & set(config)
    again = TextualInversionSettings.from_config(config, steps=5)
    assert again == dataclasses.replace(settings, cache_dir=None, weights=None, steps=5)


@pytest.mark.parametrize("config, expected", [
    ({"method": "dreambooth"}, DreamBoothSettings),
    ({"token": "<a>", "init_word": "a"}, TextualInversionSettings),
    ({"instance_prompt": "a sks dog"}, DreamBoothSettings),
    ({"vae_steps": 3, "pool_size": 8}, BaseModelSettings),
])
def test_the_method_of_a_config_with_or_without_its_key(config, expected):
    assert settings_class(config) is expected


def test_a_resume_may_change_only_resumable_settings():
    stored = TextualInversionSettings(**TI).to_config()
    TextualInversionSettings.from_config(stored, steps=9, devices=2, sample_every=3,
                                         lr=0.1, cache_dir="x").check_resume(stored)
    with pytest.raises(ValueError, match=r"--seed 1 \(the run has 0\)"):
        TextualInversionSettings.from_config(stored, seed=1).check_resume(stored)
    with pytest.raises(ValueError, match="another method"):
        DreamBoothSettings(model="tiny").check_resume(stored)
    # A config written before the method was recorded.
    del stored["method"]
    TextualInversionSettings.from_config(stored, steps=9).check_resume(stored)


def test_the_command_merges_defaults_the_run_and_the_options(tmp_path):
    from studio.trainers.run.run_directory import RunDirectory

    old = TextualInversionSettings(**TI, steps=10, lr=0.02).to_config()
    del old["method"]
    RunDirectory(str(tmp_path)).create(old)
    _, args = parse(TextualInversionSettings, "--out", str(tmp_path), "--resume",
                    "--steps", "20", "--cache-dir", "c")
    settings = settings_from_options(TextualInversionSettings, args)
    assert (settings.steps, settings.lr, settings.token) == (20, 0.02, "<toy>")
    assert settings.cache_dir == "c"
    _, args = parse(TextualInversionSettings, "--resume")
    with pytest.raises(ValueError, match="--resume needs --out"):
        settings_from_options(TextualInversionSettings, args)


def test_importing_the_library_api_and_the_cli_help_stay_cheap():
    code = (
        "import sys, studio.trainers, studio.cli.main\n"
        "from studio.trainers import TextualInversionSettings, DreamBoothSettings\n"
        "studio.cli.main.build_parser().format_help()\n"
        "heavy = {'keras', 'tensorflow', 'jax'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
