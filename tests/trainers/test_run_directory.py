"""Tests of RunDirectory, the layout of a training run's folder."""

import json
import os

import pytest

from studio.trainers.run.run_directory import RunDirectory


def test_create_lays_out_the_folder_and_writes_the_config(tmp_path):
    run = RunDirectory(tmp_path / "run")
    assert not run.exists()
    run.create({"token": "<tom>", "steps": 10})
    assert run.exists()
    for folder in ("checkpoints", "logs", "samples"):
        assert os.path.isdir(tmp_path / "run" / folder)
    with open(tmp_path / "run" / "config.json") as file:
        assert json.load(file) == {"token": "<tom>", "steps": 10}
    assert run.read_config() == {"token": "<tom>", "steps": 10}
    assert run.file("embedding.safetensors") == os.path.join(run.path, "embedding.safetensors")


def test_create_refuses_an_existing_run(tmp_path):
    run = RunDirectory(tmp_path)
    run.create({"a": 1})
    with pytest.raises(FileExistsError, match="already holds a training run"):
        RunDirectory(tmp_path).create({"a": 2})
    assert run.read_config() == {"a": 1}


def test_summary_is_written_atomically_and_read_back(tmp_path):
    run = RunDirectory(tmp_path)
    run.create({})
    assert run.read_summary() is None
    run.write_summary({"steps": 3, "final_loss": 0.5})
    run.write_summary({"steps": 4, "final_loss": 0.25})
    assert run.read_summary() == {"steps": 4, "final_loss": 0.25}
    # No temporary files are left beside it.
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoints", "config.json", "logs", "samples", "summary.json",
    ]


def test_read_config_of_a_folder_without_a_run_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no training run"):
        RunDirectory(tmp_path / "missing").read_config()


def test_the_app_reads_progress_samples_checkpoints_and_results(tmp_path):
    from studio.trainers.run.run_directory import progress_line

    run = RunDirectory(tmp_path)
    run.create({"steps": 4})
    with open(run.progress_path, "w", encoding="utf-8") as file:
        file.write(progress_line(1, 0.5, 10.0) + progress_line(2, float("nan"), 11.0))
        file.write(progress_line(1, 0.25, 12.0) + '{"step": 3, "lo')  # Resumed; half a line.
    assert run.read_progress() == [(1, 0.25, 12.0), (2, None, 11.0)]

    for step, index in ((2, 1), (2, 0), (10, 0)):
        open(run.sample_path(step, index), "wb").close()
    assert run.sample_files() == {
        2: [run.sample_path(2, 0), run.sample_path(2, 1)], 10: [run.sample_path(10, 0)],
    }

    checkpoints = run.checkpoints()
    complete, partial = checkpoints.folder(2), checkpoints.folder(4)
    for folder in (complete, partial):
        os.makedirs(folder)
        open(os.path.join(folder, "embedding.safetensors"), "wb").close()
    open(os.path.join(complete, "checkpoint.json"), "w").close()
    assert run.checkpoint_folders() == [(2, complete)]
    assert run.checkpoint_result_files() == [(2, os.path.join(complete, "embedding.safetensors"))]
    assert run.result_file() is None
    open(run.file("lora.safetensors"), "wb").close()
    assert run.result_file() == run.file("lora.safetensors")


def test_process_records_and_stop_requests(tmp_path):
    run = RunDirectory(tmp_path)
    assert run.read_process_record() is None and run.read_exit_record() is None
    assert run.read_config(default={}) == {} and not run.stop_requested()
    run.write_process_record({"pid": 1})
    run.write_exit_record({"code": 0})
    assert run.read_process_record() == {"pid": 1} and run.read_exit_record() == {"code": 0}
    run.remove_exit_record()
    assert run.read_exit_record() is None
    run.request_stop()
    assert run.stop_requested()
    (tmp_path / "summary.json").write_text("{half")
    assert run.read_summary() is None


def test_reading_a_run_imports_no_keras():
    import subprocess
    import sys

    code = ("import sys, studio.app.run_record, studio.app.file_library; "
            "print('keras' in sys.modules or 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# Issue 23 items 13 and 14: stale temporaries, one training process per folder.


def dead_pid():
    """The id of a process that has ended."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_taking_the_lock_removes_temporaries_of_dead_writers_only(tmp_path):
    from studio.files.atomic_write import atomic_folder

    run = RunDirectory(tmp_path / "run")
    run.create({"steps": 2})
    pid = dead_pid()
    stale = [
        tmp_path / "run" / f".embedding.safetensors.{pid}.0a1b2c3d.partial",
        tmp_path / "run" / f".summary.json.{pid}.0a1b2c3d.partial",
        tmp_path / "run" / "samples" / f".step-000002-0.png.{pid}.0a1b2c3d.partial",
        tmp_path / "run" / f".unet.weights.h5.{pid}.0a1b2c3d.partial.weights.h5",
    ]
    for path in stale:
        path.write_bytes(b"half")
    staging = tmp_path / "run" / "checkpoints" / f".step-000002.{pid}.k2j_x9ab.partial"
    staging.mkdir()
    (staging / f".training_state.npz.{pid}.0a1b2c3d.partial").write_bytes(b"half")
    live = tmp_path / "run" / f".config.json.{os.getppid()}.0a1b2c3d.partial"
    live.write_bytes(b"being written")
    # atomic_folder's staging folders are named so too (writer's id, .partial).
    names = []
    with atomic_folder(tmp_path / "run" / "checkpoints" / "step-000004") as folder:
        names.append(os.path.basename(folder))
    assert names[0].startswith(f".step-000004.{os.getpid()}.") and names[0].endswith(".partial")

    with run.lock():
        left = sorted(
            os.path.relpath(os.path.join(root, name), tmp_path / "run")
            for root, folders, files in os.walk(tmp_path / "run")
            for name in folders + files
        )
    assert [name for name in left if ".partial" in name] == [live.name]
    assert os.path.isdir(tmp_path / "run" / "checkpoints" / "step-000004")


def test_a_second_process_cannot_train_in_a_locked_run_folder(tmp_path):
    from studio.trainers.run.run_lock import RunLockedError

    run = RunDirectory(tmp_path / "run")
    run.create({"steps": 2})
    with run.lock():
        # flock locks belong to the open file: a second open, even in this
        # process, is refused as another process would be.
        with pytest.raises(RunLockedError, match=rf"run is in use.*pid {os.getpid()}"):
            with run.lock():
                pass
    with run.lock():  # Released.
        pass


def test_the_lock_of_a_killed_process_is_released(tmp_path):
    import signal
    import subprocess
    import sys

    run = RunDirectory(tmp_path / "run")
    run.create({"steps": 2})
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from studio.trainers.run.run_directory import RunDirectory\n"
         f"lock = RunDirectory({str(run.path)!r}).lock().__enter__()\n"
         "print('locked', flush=True)\n"
         "time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        from studio.trainers.run.run_lock import RunLockedError

        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            run.lock().__enter__()
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        with run.lock():
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_taken_for_a_run_that_never_started_leaves_nothing(tmp_path):
    run = RunDirectory(tmp_path / "new")
    with pytest.raises(ValueError):
        with run.lock():
            assert os.path.isdir(tmp_path / "new")
            raise ValueError("bad data")
    assert not os.path.exists(tmp_path / "new")
    # An existing folder stays, without the lock file.
    (tmp_path / "mine").mkdir()
    with RunDirectory(tmp_path / "mine").lock():
        pass
    assert os.listdir(tmp_path / "mine") == []


def test_restart_progress_keeps_the_steps_up_to_the_checkpoint_once(tmp_path):
    from studio.trainers.run.run_directory import progress_line

    run = RunDirectory(tmp_path)
    with open(run.progress_path, "w", encoding="utf-8") as file:
        for step in (1, 2, 3, 4, 3, 4, 5):  # An old folder: a resume repeated 3 and 4.
            file.write(progress_line(step, 0.1 * step, 1000.0 + step, elapsed=float(step)))
        file.write('{"step": 6, "lo')  # Killed while writing.
    assert run.restart_progress(4) == 5.0
    with open(run.progress_path, encoding="utf-8") as file:
        records = [json.loads(line) for line in file]
    assert [record.get("step") for record in records] == [1, 2, 3, 4, None]
    assert records[-1]["elapsed"] == 5.0
    assert [step for step, _, _ in run.read_progress()] == [1, 2, 3, 4]
    assert RunDirectory(tmp_path / "none").restart_progress(0) == 0.0
