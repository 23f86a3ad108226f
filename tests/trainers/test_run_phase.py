"""Training phases: reported by the trainers, recorded in the run folder with their history."""

from studio.trainers.run.run_directory import RunDirectory
from studio.trainers.run.run_phase import (CLASS_IMAGES, LOADING_MODEL, STARTING, TRAINING,
                                           phase_counter, phase_listener, report_phase)


def test_phases_reach_listeners_only_while_they_listen():
    heard = []
    report_phase(LOADING_MODEL)
    with phase_listener(lambda *phase: heard.append(phase)):
        report_phase(LOADING_MODEL)
        phase_counter(CLASS_IMAGES)(3, 10)
    report_phase(TRAINING)
    assert heard == [(LOADING_MODEL, None, None), (CLASS_IMAGES, 3, 10)]


def test_the_phase_file_keeps_the_session_s_earlier_phases(tmp_path):
    run = RunDirectory(tmp_path)
    run.write_phase(TRAINING)  # An earlier session's.
    run.write_phase(STARTING, new_session=True)
    run.write_phase(CLASS_IMAGES, 0, 4)
    run.write_phase(CLASS_IMAGES, 4, 4)
    first = run.read_phase()["started"]
    run.write_phase(TRAINING)
    record = run.read_phase()
    assert record["phase"] == TRAINING and record["done"] is None
    assert [entry["phase"] for entry in record["history"]] == [STARTING, CLASS_IMAGES]
    class_images = record["history"][1]
    assert class_images["total"] == 4 and class_images["started"] == first
    assert class_images["ended"] >= class_images["started"]
