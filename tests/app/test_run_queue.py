"""The run queue starts its first run once nothing trains, and each run once."""

from studio.app import training_launcher
from studio.app.run_queue import RunQueue


def test_queued_runs_start_one_by_one_when_nothing_trains(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(training_launcher, "start_training",
                        lambda run_dir, request: started.append((run_dir, request)))
    queue = RunQueue(tmp_path)
    queue.add("runs/a", {"method": "textual_inversion", "n": 1})
    queue.add("runs/b", {"method": "dreambooth", "n": 2})
    assert queue.start_next(lambda: True) is None and started == []
    assert queue.start_next(lambda: False) == "runs/a"
    assert [entry["run_dir"] for entry in RunQueue(tmp_path).entries()] == ["runs/b"]
    queue.remove("runs/b")
    assert queue.start_next(lambda: False) is None
    assert started == [("runs/a", {"method": "textual_inversion", "n": 1})]
