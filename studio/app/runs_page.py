"""Runs: every training run with its status, curves, samples; resume; TensorBoard."""

import os

import streamlit as st

from studio.app import run_status
from studio.app.app_state import data_folder
from studio.app.page_errors import errors_as_messages
from studio.app.run_panels import (POLL_SECONDS, progress_panel, samples_panel, status_badge,
                                   stop_button, tensorboard_command)
from studio.app.run_record import list_runs
from studio.app.run_progress import format_age
from studio.app.tensorboard_scalars import read_scalars
from studio.app.training_launcher import resume_request, start_training


def render():
    st.title("Runs")
    data = data_folder()
    records = list_runs(data.runs)
    if not records:
        st.info("No training runs yet. Start one on the Train page.", icon=":material/school:")
        return
    statuses = {record.path: record.status() for record in records}
    _overview(records, statuses)
    names = [record.name for record in records]
    selected = st.session_state.get("selected_run")
    index = next((i for i, r in enumerate(records) if r.path == selected), 0)
    name = st.selectbox("Run", names, index=index, key="runs_selected_name")
    record = records[names.index(name)]
    with errors_as_messages("Showing the run"):
        _details(record, statuses[record.path], data)


def _overview(records, statuses):
    import pandas as pd

    rows = []
    for record in records:
        status = statuses[record.path]
        summary = record.summary or {}
        progress = record.progress()
        rows.append({
            "run": record.name,
            "method": record.method_label,
            "status": status.state,
            "step": f"{progress[-1][0] if progress else 0} / {record.target_steps or '?'}",
            "final loss": summary.get("final_loss"),
            "started": format_age(record.started),
        })
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _details(record, status, data):
    st.subheader(record.name, anchor=False)

    @st.fragment(run_every=POLL_SECONDS if status.is_active else None)
    def live():
        current = record.status()
        if status.is_active and not current.is_active:
            st.rerun(scope="app")
        top = st.columns([4, 1])
        with top[0]:
            status_badge(current)
            if current.state == run_status.FAILED:
                st.error(current.message, icon=":material/error:")
            else:
                st.caption(current.message)
        with top[1]:
            if current.is_active:
                stop_button(record, current, key=f"runs-stop-{record.name}")
            elif current.state in run_status.RESUMABLE_STATES and record.config:
                if st.button("Resume", icon=":material/play_arrow:", key=f"resume-{record.name}",
                             help="Continue from the last checkpoint."):
                    start_training(record.path, resume_request(
                        record.method, os.path.join(data.cache, "latents")))
                    st.session_state["selected_run"] = record.path
                    st.toast(f"Resuming {record.name}")
                    st.rerun()
        progress_panel(record, current)

    live()
    curves, samples, settings, files = st.tabs(["Curves", "Samples", "Settings", "Files & log"])
    with curves:
        _curves(record)
    with samples:
        samples_panel(record, key=f"runs-samples-{record.name}")
    with settings:
        st.json(record.config or {"note": "The run has not written its settings yet."})
        if record.summary:
            st.markdown("**Summary**")
            st.json(record.summary)
    with files:
        st.markdown("Open the run in TensorBoard:")
        st.code(tensorboard_command(record), language="bash")
        st.markdown(f"Folder: `{record.path}`")
        checkpoints = record.checkpoints()
        if checkpoints:
            st.markdown("Checkpoints: " + ", ".join(f"step {step}" for step, _ in checkpoints))
        result = record.result_file()
        if result:
            with open(result, "rb") as file:
                st.download_button(f"Download {os.path.basename(result)}", file.read(),
                                   file_name=f"{record.name}-{os.path.basename(result)}",
                                   icon=":material/download:")
        log = record.log_tail()
        if log:
            st.markdown("Last lines of the training output:")
            st.code(log, language=None)


@st.cache_data(show_spinner=False, max_entries=16)
def _scalars(log_dir, fingerprint):
    return read_scalars(log_dir)


def _curves(record):
    import pandas as pd

    log_dir = record.run.logs_path
    names = sorted(os.listdir(log_dir)) if os.path.isdir(log_dir) else []
    fingerprint = tuple((n, os.path.getsize(os.path.join(log_dir, n))) for n in names)
    series = _scalars(log_dir, fingerprint)
    if not series:
        st.caption("TensorBoard's curves appear here once the run has written them "
                   "(they are flushed every few minutes and at the end).")
        return
    st.caption(f"From the TensorBoard event files in `{log_dir}`.")
    tags = sorted(series, key=lambda tag: (tag != "loss", tag))
    columns = st.columns(2)
    for index, tag in enumerate(tags):
        frame = pd.DataFrame(series[tag], columns=["step", tag]).set_index("step")
        with columns[index % 2]:
            st.markdown(f"**{tag}**")
            st.line_chart(frame, height=200)
