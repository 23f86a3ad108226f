"""Streamlit panels of one run, shared by the Train and Runs pages."""

import os

import streamlit as st

from studio.app import run_status
from studio.app.run_progress import format_duration, measure_progress
from studio.app.run_status import seconds_since

# How often a page showing a live run reads its files again.
POLL_SECONDS = 2.0
# Exponential smoothing of the loss curve: the raw loss of one step is noisy.
LOSS_SMOOTHING = 0.9
STATE_BADGES = {
    run_status.STARTING: ("blue", ":material/hourglass_top:"),
    run_status.RUNNING: ("blue", ":material/play_circle:"),
    run_status.STOPPING: ("orange", ":material/pause_circle:"),
    run_status.FINISHED: ("green", ":material/check_circle:"),
    run_status.STOPPED: ("orange", ":material/stop_circle:"),
    run_status.FAILED: ("red", ":material/error:"),
    run_status.INTERRUPTED: ("gray", ":material/help:"),
}


def status_badge(status):
    color, icon = STATE_BADGES.get(status.state, ("gray", ":material/help:"))
    st.badge(status.state.capitalize(), color=color, icon=icon)


def loss_frame(points):
    """A DataFrame indexed by step with the loss and its smoothed curve."""
    import pandas as pd

    rows = [(step, loss) for step, loss, _ in points if loss is not None]
    frame = pd.DataFrame(rows, columns=["step", "loss"]).set_index("step")
    frame["smoothed"] = frame["loss"].ewm(alpha=1 - LOSS_SMOOTHING).mean()
    return frame


def line_chart(frame, x_label, y_label, height):
    """Draws the columns of `frame` (indexed by the x values) as lines, from a Vega-Lite spec.

    `st.line_chart` builds the same chart through Altair, whose schema
    validation took half a second of each Runs page draw; the spec is
    plain data.
    """
    # Long form (one row per point and series): no field names from the data in the spec.
    data = frame.reset_index()
    data.columns = ["x", *(str(column) for column in frame.columns)]
    data = data.melt(id_vars="x", var_name="series", value_name="value").dropna()
    spec = {
        "mark": {"type": "line", "tooltip": True},
        "encoding": {
            "x": {"field": "x", "type": "quantitative", "title": x_label},
            "y": {"field": "value", "type": "quantitative", "title": y_label,
                  "scale": {"zero": False}},
            "color": {"field": "series", "type": "nominal", "title": None,
                      "legend": {"orient": "bottom"} if len(frame.columns) > 1 else None},
        },
    }
    st.vega_lite_chart(data, spec, height=height, width="stretch")


def phase_panel(record, status):
    """What an active run is doing before its steps (and while it draws samples), with its count.

    The phases it went through in this session are listed with their
    durations; class images being generated show as a contact sheet.
    """
    from studio.trainers.run.run_phase import CLASS_IMAGES, PHASE_LABELS, TRAINING

    phase = record.phase() if status.is_active else None
    if phase is None:
        return None
    name = phase.get("phase")
    label = PHASE_LABELS.get(name, str(name))
    done, total = phase.get("done"), phase.get("total")
    elapsed = format_duration(seconds_since(phase.get("started") or phase.get("time") or 0))
    if name != TRAINING:
        if total:
            st.progress(min(1.0, (done or 0) / total),
                        text=f"{label}: {done or 0} / {total} · {elapsed}")
        else:
            st.progress(0.0, text=f"{label}… · {elapsed}")
    history = [entry for entry in phase.get("history") or [] if entry.get("phase")]
    if history:
        st.caption("  ·  ".join(
            f"✓ {PHASE_LABELS.get(entry['phase'], entry['phase'])}"
            + (f" ({entry['total']})" if entry.get("total") else "")
            + f" {format_duration((entry.get('ended') or 0) - (entry.get('started') or 0))}"
            for entry in history))
    if name == CLASS_IMAGES or any(entry["phase"] == CLASS_IMAGES for entry in history):
        class_images_panel(record)
    return name


def class_images_panel(record, limit=48):
    """The run's class images so far, as a contact sheet."""
    import glob

    folder = record.config.get("class_data") or os.path.join(record.path, "class_images")
    paths = sorted(glob.glob(os.path.join(folder, "*.png")))
    if not paths:
        return
    with st.expander(f"Class images ({len(paths)})", expanded=True):
        st.image(paths[:limit], width=64)


def progress_panel(record, status):
    """Progress bar, step count, speed, ETA and the live loss curve."""
    progress = measure_progress(record.progress(), record.target_steps, since=record.started)
    phase = phase_panel(record, status)
    if status.state != run_status.STARTING:
        target = progress.target_steps or "?"
        st.progress(progress.fraction, text=f"Step {progress.step} of {target}")
    elif phase is None:
        st.progress(0.0, text="Starting the training process…")
    columns = st.columns(4)
    columns[0].metric("Step", f"{progress.step} / {progress.target_steps or '?'}")
    loss = "—" if progress.last_loss is None else f"{progress.last_loss:.4f}"
    columns[1].metric("Loss", loss)
    speed = progress.seconds_per_step
    columns[2].metric("Speed (last steps)", "—" if not speed else f"{1 / speed:.2f} steps/s" if speed < 1
                      else f"{speed:.1f} s/step")
    eta = progress.eta_seconds if status.is_active else None
    columns[3].metric("Time left", format_duration(eta) if status.is_active else "—")
    points = record.progress()
    if any(loss is not None for _, loss, _ in points):
        line_chart(loss_frame(points), x_label="step", y_label="loss", height=260)
    return progress


def samples_panel(record, key):
    """The sample images of the chosen step (the newest by default)."""
    samples = record.samples()
    if not samples:
        every = record.config.get("sample_every")
        st.caption("Sample images appear here every "
                   f"{every} steps." if every else "This run makes no sample images.")
        return
    steps = list(samples)
    step = steps[-1]
    if len(steps) > 1:
        step = st.select_slider("Samples at step", options=steps, value=steps[-1], key=key)
    paths = samples[step]
    columns = st.columns(min(len(paths), 4))
    for index, path in enumerate(paths):
        prompt = _prompt_of(path)
        columns[index % len(columns)].image(path, caption=prompt, width="stretch")


def stop_button(record, status, key):
    """The Stop button of an active run: asks for a stop with a final checkpoint."""
    from studio.trainers.run.run_directory import RunDirectory

    disabled = status.state == run_status.STOPPING
    if st.button("Stop", key=key, icon=":material/stop:", disabled=disabled,
                 help="Stop after the current step; a final checkpoint is saved, "
                 "and the run can be resumed later."):
        RunDirectory(record.path).request_stop()
        st.toast("Stopping after the current step…")
        st.rerun()


def tensorboard_command(record):
    return f"tensorboard --logdir \"{record.run.logs_path}\""


def _prompt_of(path):
    from studio.images import read_parameters

    try:
        parameters = read_parameters(path)
    except OSError:
        return None
    return parameters.prompt if parameters else None
