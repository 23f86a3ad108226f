"""Runs: every training run with its status, curves, samples; resume; TensorBoard."""

import os

import streamlit as st

from studio.app import run_status
from studio.app.app_state import data_folder
from studio.app.page_errors import errors_as_messages
from studio.app.run_panels import (POLL_SECONDS, line_chart, progress_panel, samples_panel,
                                   status_badge, stop_button, tensorboard_command)
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
    _overview(data, any(status.is_active for status in statuses.values()))
    names = [record.name for record in records]
    selected = st.session_state.get("selected_run")
    index = next((i for i, r in enumerate(records) if r.path == selected), 0)
    name = st.selectbox("Run", names, index=index, key="runs_selected_name")
    record = records[names.index(name)]
    with errors_as_messages("Showing the run"):
        _details(record, statuses[record.path], data)


def _overview(data, any_active):
    """The table of runs, read again every poll while one trains (as the detail below is)."""

    @st.fragment(run_every=POLL_SECONDS if any_active else None)
    def table():
        import pandas as pd

        rows = []
        for record in list_runs(data.runs):
            status = record.status()
            summary = record.summary or {}
            progress = record.progress()
            loss = summary.get("final_loss")
            if loss is None and progress:
                loss = next((point[1] for point in reversed(progress) if point[1] is not None),
                            None)
            rows.append({
                "run": record.name,
                "method": record.method_label,
                "status": status.state,
                "step": f"{progress[-1][0] if progress else 0} / {record.target_steps or '?'}",
                "loss": "—" if loss is None else f"{loss:.4f}",
                "started": format_age(record.first_started),
            })
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

    table()


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
    curves, samples, settings, files, manage = st.tabs(
        ["Curves", "Samples", "Settings", "Files & log", "Manage"])
    with curves:
        _curves(record)
    with samples:
        samples_panel(record, key=f"runs-samples-{record.name}")
    with settings:
        _settings_table(record)
    with manage:
        with errors_as_messages("Changing the run"):
            _manage(record, status, data)
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
            line_chart(frame, x_label="step", y_label=tag, height=200)


# Summary keys in words, in the order shown.
SUMMARY_LABELS = {
    "status": "How it ended",
    "steps": "Steps done",
    "target_steps": "Steps asked for",
    "final_loss": "Final loss",
    "total_seconds": "Training time, all sessions",
    "steps_per_second": "Average speed (steps/s, with compiling and sampling)",
    "device": "Device",
    "precision": "Precision",
}


def _settings_table(record):
    """The run's settings as a table: setting, value, what it does (from the settings' fields)."""
    import dataclasses

    import pandas as pd

    from studio.app.settings_form import field_label
    from studio.trainers.settings.run_settings_files import SETTINGS_CLASSES

    config = record.config
    if not config:
        st.caption("The run has not written its settings yet.")
        return
    settings_class = SETTINGS_CLASSES.get(config.get("method") or record.method.replace("-", "_"))
    fields = {f.name: f for f in dataclasses.fields(settings_class)} if settings_class else {}
    rows = [{"setting": field_label(name), "value": _shown(value),
             "what it does": fields[name].metadata.get("help", "") if name in fields else ""}
            for name, value in config.items() if name not in ("method", "history")]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    for change in config.get("history") or []:
        st.caption(f"Resumed at step {change.get('step')}, changing "
                   + ", ".join(f"{field_label(name)} {values.get('from')!r} → {values.get('to')!r}"
                               for name, values in (change.get("changed") or {}).items()))
    summary = record.summary
    if summary:
        st.markdown("**Summary**")
        rows = [{"": SUMMARY_LABELS.get(key, key), "value": _shown(summary[key])}
                for key in [*SUMMARY_LABELS, *sorted(set(summary) - set(SUMMARY_LABELS))]
                if key in summary]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _shown(value):
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "; ".join(map(str, value))
    return str(value)


def _manage(record, status, data):
    """Clone the settings into Train, extend, rename and delete the run."""
    from studio.app.navigation import page
    from studio.app.run_actions import delete_run, rename_run, train_form_values
    from studio.app.settings_form import CLONED_SETTINGS
    from studio.app.train_page import field_key

    if record.config and st.button("Clone the settings into the Train form",
                                   icon=":material/content_copy:", key=f"clone-{record.name}"):
        method, values = train_form_values(record, field_key)
        st.session_state["train_method"] = method
        from studio.app.model_catalog import model_choices

        model = record.config.get("model")
        if model in [choice.name for choice in model_choices() if choice.available]:
            st.session_state["train_model"] = model
        st.session_state[CLONED_SETTINGS] = values
        st.switch_page(page("train"))
    if status.state == run_status.FINISHED and record.config:
        row = st.columns([2, 1])
        target = row[0].number_input("Extend to (steps)", min_value=(record.target_steps or 0) + 1,
                                     value=2 * (record.target_steps or 1),
                                     key=f"extend-steps-{record.name}",
                                     help="Trains on from the last checkpoint up to this step.")
        if row[1].button("Extend", icon=":material/fast_forward:", key=f"extend-{record.name}"):
            start_training(record.path, resume_request(
                record.method, os.path.join(data.cache, "latents"), steps=int(target)))
            st.session_state["selected_run"] = record.path
            st.toast(f"Extending {record.name} to {int(target)} steps")
            st.rerun()
    if status.is_active:
        st.caption("Stop the run to rename or delete it.")
        return
    row = st.columns([2, 1])
    new_name = row[0].text_input("New name", value=record.name, key=f"rename-{record.name}")
    if row[1].button("Rename", key=f"rename-button-{record.name}") and new_name != record.name:
        path = rename_run(record, new_name)
        st.session_state["selected_run"] = path
        st.session_state.pop("runs_selected_name", None)
        st.rerun()
    confirm = f"confirm-delete-{record.name}"
    if not st.session_state.get(confirm):
        if st.button("Delete this run", icon=":material/delete:", key=f"delete-{record.name}"):
            st.session_state[confirm] = True
            st.rerun()
        return
    st.warning(f"Delete {record.name} with its checkpoints, samples and results? "
               "This cannot be undone.", icon=":material/warning:")
    row = st.columns(2)
    if row[0].button(f"Yes, delete {record.name}", type="primary", key=f"delete-yes-{record.name}"):
        delete_run(record)
        st.session_state.pop(confirm, None)
        st.session_state.pop("runs_selected_name", None)
        st.session_state["selected_run"] = None
        st.toast(f"Deleted {record.name}")
        st.rerun()
    if row[1].button("Keep it", key=f"delete-no-{record.name}"):
        st.session_state.pop(confirm, None)
        st.rerun()
