"""The app's training process: requests carry settings objects to the library API."""

import json

from studio.app.training_launcher import new_run_request, resume_request
from studio.app.training_process import main, request_settings
from studio.trainers.run.run_directory import EXIT_FILE, PROCESS_FILE
from studio.trainers import DreamBoothSettings, TextualInversionSettings


def test_a_new_run_request_carries_the_settings(tmp_path):
    settings = DreamBoothSettings(model="tiny", data="d", instance_prompt="a sks toy",
                                  lora_rank=4, sample_prompts=["a", "b"], cache_dir="c")
    request = json.loads(json.dumps(new_run_request(settings)))
    assert request["method"] == "dreambooth" and request["resume"] is False
    assert request_settings(str(tmp_path), request) == settings


def test_a_resume_request_takes_the_run_s_own_settings(tmp_path):
    from studio.trainers.run.run_directory import RunDirectory

    settings = TextualInversionSettings(model="tiny", data="d", token="<t>", init_word="t",
                                        steps=7)
    config = settings.to_config()
    del config["method"]  # A run written before the method was recorded.
    RunDirectory(str(tmp_path)).create(config)
    resumed = request_settings(str(tmp_path), resume_request("textual-inversion", "cache"))
    assert resumed == TextualInversionSettings(
        model="tiny", data="d", token="<t>", init_word="t", steps=7, cache_dir="cache")


def test_a_user_error_is_recorded_as_the_command_line_s(tmp_path, capsys):
    run_dir = tmp_path / "run"
    request = new_run_request(TextualInversionSettings(model="tiny", token="<t>"))
    assert main([str(run_dir), json.dumps(request)]) == 2
    exit_record = json.loads((run_dir / EXIT_FILE).read_text())
    assert exit_record["code"] == 2
    assert "needs --data, --init-word" in exit_record["error"]
    assert "studio train: error: " in capsys.readouterr().err
    command = json.loads((run_dir / PROCESS_FILE).read_text())["command"]
    assert command == ["studio", "train", "textual-inversion", "--out", str(run_dir)]
