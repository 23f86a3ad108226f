"""How far a run is and when it will end, from its progress lines."""

import dataclasses
import time

# Steps the speed is measured over: recent enough to follow changes.
SPEED_WINDOW = 20


@dataclasses.dataclass
class RunProgress:
    """Attributes:
        step: the last step done (0 before the first).
        target_steps: the run's length, or None when not known yet.
        seconds_per_step: the recent speed, or None before two steps.
        last_loss: the last finite loss, or None.
    """

    step: int
    target_steps: int
    seconds_per_step: float
    last_loss: float

    @property
    def fraction(self):
        if not self.target_steps:
            return 0.0
        return min(1.0, self.step / self.target_steps)

    @property
    def eta_seconds(self):
        if self.seconds_per_step is None or not self.target_steps:
            return None
        return max(0, self.target_steps - self.step) * self.seconds_per_step


def measure_progress(points, target_steps, since=None):
    """A `RunProgress` from `RunRecord.progress()` points `[(step, loss, time)]`.

    Args:
        points: the progress points.
        target_steps: the run's length, or None.
        since: None, or when the current session of the run started: the
            speed is measured on its steps only (not across a pause
            between a stop and a resume).
    """
    if not points:
        return RunProgress(0, target_steps, None, None)
    session = [point for point in points if since is None or point[2] >= since]
    recent = session[-SPEED_WINDOW:]
    speed = None
    if len(recent) >= 2 and recent[-1][0] > recent[0][0]:
        speed = (recent[-1][2] - recent[0][2]) / (recent[-1][0] - recent[0][0])
    losses = [loss for _, loss, _ in points if loss is not None]
    return RunProgress(points[-1][0], target_steps, speed, losses[-1] if losses else None)


def format_duration(seconds):
    """`"42 s"`, `"3 min 5 s"`, `"1 h 02 min"`."""
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def format_age(timestamp):
    """`"5 min ago"` for a time in seconds since the epoch."""
    if not timestamp:
        return "—"
    return format_duration(max(0, time.time() - timestamp)) + " ago"
