"""Scalar series read back from a run's TensorBoard event files."""

import os


def read_scalars(log_dir):
    """Every scalar series in the event files of `log_dir`.

    Args:
        log_dir: a run's `logs/` folder.

    Returns:
        Dict tag -> list of `(step, value)`, steps ascending; a step logged
        twice (a resumed run) keeps its last value. Empty when there are no
        event files yet.
    """
    if not os.path.isdir(log_dir) or not any(
        name.startswith("events.out.tfevents") for name in os.listdir(log_dir)
    ):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # 0: keep every point rather than TensorBoard's default sample of them.
    accumulator = EventAccumulator(log_dir, size_guidance={"scalars": 0, "images": 1})
    accumulator.Reload()
    series = {}
    for tag in accumulator.Tags().get("scalars", []):
        points = {}
        for event in accumulator.Scalars(tag):
            points[int(event.step)] = float(event.value)
        series[tag] = sorted(points.items())
    return series
