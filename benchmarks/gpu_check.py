"""GPU reality check: the studio against diffusers on the same GPU, in one run.

SD 1.x architecture (the studio's `sd-v1` preset, random weights, nothing
downloaded) at 512 px. Each row pairs a studio measurement (Keras 3 on
JAX) with diffusers' equivalent (PyTorch) on the same GPU:

* training steps (`mixed_float16` and `mixed_bfloat16`, batch 1 and 4):
  textual inversion, DreamBooth LoRA (rank 4) and full DreamBooth (AdamW;
  Adafactor + remat), with prior preservation (each subject example has a
  class example beside it); steps/s, peak memory, first-step (compile)
  time, and the MFU of the full step;
* generation: 30 DDIM steps, guidance 7.5, batch 1 and 4, warmed-up
  latency and first-call time;
* numerics: the same random weights exported to a diffusers folder
  (`studio.interop.export_diffusers_folder`), the same initial latents and
  token ids: max and mean absolute pixel difference of the two pipelines.

After them, the newer families' training rows at 1024 px, batch 1, fp16
(issues 18 and 19): SD-XL base (`sdxl-base`) textual inversion on both
text encoders, and DreamBooth LoRA with cached text-encoder outputs and
gradient checkpointing, against diffusers' `textual_inversion_sdxl.py` /
`train_dreambooth_lora_sdxl.py` steps; SD3.5 medium's MMDiT (keras-hub's
classes) DreamBooth LoRA against `train_dreambooth_lora_sd3.py`'s step.
`--family` picks families (`sd` is SD 1.x).

Every group of rows runs in its own process (a worker), so peak memory is
its own and an out-of-memory row, a missing package or a crash becomes an
error in the table while the others run. `--budget-s` bounds the whole
run: rows that would start after it are skipped with a note (run them
later with `--only`). The most important rows run first (numerics and
generation, then batch 1 fp16 training). Usage:

    KERAS_BACKEND=jax python benchmarks/gpu_check.py --family sd --out gpu_check.json
    KERAS_BACKEND=jax python benchmarks/gpu_check.py --family sdxl --family sd3 --out xl.json
    python benchmarks/gpu_check.py --cpu-dry-run --out dry.json   # tiny, on the CPU

The workers never import TensorFlow, keras_cv or `studio.datasets` (the
GPU machine has no TensorFlow): a worker refuses to import TensorFlow, so
the CPU dry run proves it. See benchmarks/BENCHMARKS.md.
"""

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPOSITORY = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from gpu_check_scales import (  # noqa: E402
    FAMILIES,
    FAMILY_LABELS,
    FAMILY_TASKS,
    SCALES,
    TASK_NAMES,
    TRAIN_TASKS,
    peak_flops,
)

RESULT_PREFIX = "GPU_CHECK_RESULT "
META_PREFIX = "GPU_CHECK_META "
FRAMEWORKS = ("studio", "diffusers")
DEFAULT_BUDGET_S = {"full": 450.0, "dry": 900.0}
# Goals of the issue (reported, not asserted), at full size.
GOAL_TRAIN_SPEEDUP = 1.2
GOAL_GENERATION_RATIO = 1.0
GOAL_PEAK_GIB = {"ti": 6.0, "lora": 8.0, "full_lean": 14.0}
# Issues 18 and 19: 1024 px, batch 1, fp16, on a 16 GB T4.
FAMILY_GOAL_PEAK_GIB = {("sdxl", "ti"): 12.0, ("sdxl", "lora"): 14.0, ("sd3", "lora"): 14.0}
GOAL_MFU = 0.40
GOAL_MEAN_PIXEL_DIFF = 2.0
DRY_RUN_XLA_FLAGS = "--xla_backend_optimization_level=0"
# A worker that printed nothing for this long past the budget is stopped.
WORKER_GRACE_S = 30.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the table as JSON to this file")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="the same rows at tiny sizes on the CPU (tiny preset, 64 px, 2 steps)")
    parser.add_argument("--budget-s", type=float,
                        help="time budget of the whole run; later rows are skipped "
                        "(default: 450 on the GPU, 900 for the dry run)")
    parser.add_argument("--only", action="append", default=[],
                        help="run only rows whose id contains this text (repeatable), "
                        "e.g. --only train/full --only b4")
    parser.add_argument("--family", action="append", choices=FAMILIES,
                        help="run only this model family's rows (repeatable; default: all): "
                        "sd (SD 1.x), sdxl, sd3")
    parser.add_argument("--one-process", action="store_true",
                        help="run all rows of a framework in one worker (the dry run's "
                        "default: saves start-up; peak memory is then the process's)")
    parser.add_argument("--studio-xla-flags", default="",
                        help="extra XLA_FLAGS for the studio's workers, e.g. "
                        "--studio-xla-flags=--xla_gpu_autotune_level=0 (with '=') to see "
                        "what XLA's autotuning costs in compile time and peak memory and "
                        "gains in steps/s")
    parser.add_argument("--work-dir", help="folder for the exported model and images "
                        "(default: a new folder under /tmp)")
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--rows", help=argparse.SUPPRESS)
    parser.add_argument("--scale", choices=sorted(SCALES), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    scale = SCALES["dry" if args.cpu_dry_run else "full"]
    budget = args.budget_s if args.budget_s is not None else DEFAULT_BUDGET_S[scale.name]
    work_dir = args.work_dir or _new_work_dir()
    rows = plan_rows(scale, args.only, args.family or FAMILIES)
    jobs = plan_jobs(rows, one_process=args.one_process or args.cpu_dry_run)
    started = time.perf_counter()
    results, meta = {}, {}
    for framework, job_rows in jobs:
        elapsed = time.perf_counter() - started
        if elapsed >= budget:
            for row in job_rows:
                results[(row["id"], framework)] = {
                    "skipped": f"time budget of {budget:.0f} s spent ({elapsed:.0f} s)"}
            continue
        print(f"[{elapsed:6.1f} s] {framework}: {', '.join(r['id'] for r in job_rows)}",
              flush=True)
        found, worker_meta = run_job(framework, job_rows, scale, work_dir,
                                     budget - elapsed + WORKER_GRACE_S,
                                     xla_flags=args.studio_xla_flags if framework == "studio"
                                     else "")
        results.update({(row_id, framework): value for row_id, value in found.items()})
        meta.setdefault(framework, worker_meta)
    report = build_report(rows, results, meta, scale, budget, time.perf_counter() - started,
                          argv if argv is not None else sys.argv[1:])
    print()
    print(format_table(report))
    if args.out:
        with open(args.out, "w") as file:
            json.dump(report, file, indent=1, default=_json_default)
        print(f"\nWrote {args.out}")
    return 0


def _new_work_dir():
    import tempfile

    return tempfile.mkdtemp(prefix="gpu-check-")


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


# --- The plan --------------------------------------------------------------


def plan_rows(scale, only=(), families=FAMILIES):
    """The rows of `scale` in `families`, most important first: dicts with `id` and settings.

    SD 1.x rows first (ids without a family prefix), then each newer
    family's training rows (`sdxl/ti/...`, `sd3/lora/...`).
    """
    rows = _sd_rows(scale) if "sd" in families else []
    for family, tasks in FAMILY_TASKS.items():
        if family not in families:
            continue
        family_scale = scale.families[family]
        precision, batch = family_scale.precision, family_scale.batch_size
        for task in tasks:
            rows.append({"id": f"{family}/{task}/{precision}/b{batch}", "kind": "train",
                         "family": family, "task": task, "precision": precision,
                         "batch": batch})
    if only:
        rows = [row for row in rows if any(text in row["id"] for text in only)]
    return rows


def _sd_rows(scale):
    rows = []
    for precision in scale.numerics_precisions:
        for batch in scale.generation_batch_sizes:
            rows.append({"id": f"generate/{precision}/b{batch}", "kind": "generate",
                         "precision": precision, "batch": batch})
        # After the generation rows: diffusers compares their images.
        rows.append({"id": f"numerics/{precision}", "kind": "numerics", "precision": precision})
    order = [(precision, batch) for batch in scale.batch_sizes for precision in scale.precisions]
    for precision, batch in order:
        for task in TRAIN_TASKS:
            rows.append({"id": f"train/{task}/{precision}/b{batch}", "kind": "train",
                         "task": task, "precision": precision, "batch": batch})
    return rows


def plan_jobs(rows, one_process=False):
    """`(framework, rows)` per worker process, in run order.

    One worker per row and framework (the studio's first), so that peak
    memory is the row's own; generation and numerics rows of a precision
    share a worker (one export, one pipeline). With `one_process`, a
    framework's rows of each group share one worker.
    """
    groups = []
    for row in rows:
        key = ("generation", row["precision"]) if row["kind"] != "train" else ("train", row["id"])
        if one_process:
            key = (key[0],)
        if groups and groups[-1][0] == key:
            groups[-1][1].append(row)
        elif any(group_key == key for group_key, _ in groups):
            next(group for group_key, group in groups if group_key == key).append(row)
        else:
            groups.append((key, [row]))
    return [(framework, group) for _, group in groups for framework in FRAMEWORKS]


# --- Running workers -------------------------------------------------------


def run_job(framework, rows, scale, work_dir, timeout, xla_flags=""):
    """Runs `rows` in a fresh worker; returns `({row id: result}, worker meta)`.

    `xla_flags` go after any XLA_FLAGS of the environment.
    """
    command = [sys.executable, os.path.abspath(__file__), "--worker", framework,
               "--scale", scale.name, "--rows", json.dumps(rows), "--work-dir", work_dir]
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2",
               # JAX takes memory as it needs it, so a PyTorch worker after
               # it and `memory_stats()` see the same device.
               XLA_PYTHON_CLIENT_PREALLOCATE="false")
    if scale.name == "dry":
        # The dry run checks that the code runs, not how fast: XLA:CPU
        # compiles without LLVM's optimisations in a fraction of the time.
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + DRY_RUN_XLA_FLAGS).strip()
    if xla_flags:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + xla_flags).strip()
    # One JAX compilation cache for the run's workers: each studio worker
    # builds its networks with random weights, which compiles a small
    # program per variable shape (22.7 s of the H200's SD 1.x
    # textual-inversion row); later workers load those instead. Each row's
    # training step is a program of its own, so its first step still
    # compiles in full, as a user's first run does.
    env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(work_dir, "jax-cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    try:
        completed = subprocess.run(command, env=env, capture_output=True, text=True,
                                   timeout=max(timeout, 1.0))
        stdout, stderr, code = completed.stdout, completed.stderr, completed.returncode
    except subprocess.TimeoutExpired as expired:
        stdout, stderr, code = _text(expired.stdout), _text(expired.stderr), "timeout"
    found, meta = {}, {}
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            record = json.loads(line[len(RESULT_PREFIX):])
            found[record["id"]] = record["result"]
        elif line.startswith(META_PREFIX):
            meta = json.loads(line[len(META_PREFIX):])
    for row in rows:
        if row["id"] not in found:
            if code == "timeout":
                found[row["id"]] = {"skipped": "time budget spent while the worker ran"}
            else:
                tail = [line for line in stderr.strip().splitlines() if line.strip()][-3:]
                found[row["id"]] = {"error": f"worker exit code {code}: " + " | ".join(tail)[-400:]}
    return found, meta


def _text(value):
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def run_worker(args):
    """A worker process: runs its rows and prints one result line per row."""
    scale = SCALES[args.scale]
    rows = json.loads(args.rows)
    # Keras reads its backend when first imported: the studio's is JAX
    # (the GPU machine has no TensorFlow).
    os.environ["KERAS_BACKEND"] = "jax"
    # As on the GPU machine, TensorFlow (and kagglehub) cannot be imported:
    # a worker that needs them fails here, on the CPU, too. (keras-hub and
    # transformers import them only where they are installed.)
    for name in ("tensorflow", "tensorflow_text", "kagglehub"):
        sys.modules[name] = None
    _make_studio_importable()
    if args.worker == "studio":
        import gpu_check_studio as worker
    else:
        import gpu_check_diffusers as worker

    def emit(row_id, result):
        print(RESULT_PREFIX + json.dumps({"id": row_id, "result": result},
                                         default=_json_default), flush=True)

    print(META_PREFIX + json.dumps(_worker_meta(args.worker, worker)), flush=True)
    worker.run_rows(rows, scale, args.work_dir, emit)
    return 0


def _worker_meta(framework, worker):
    import importlib.metadata

    names = {"studio": ("keras", "keras-hub", "jax", "jaxlib", "numpy"),
             "diffusers": ("torch", "diffusers", "transformers", "peft", "numpy")}[framework]
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        device = worker.device_name()
    except Exception as error:
        device = f"unknown ({type(error).__name__})"
    return {"device": device, "versions": versions, "python": platform.python_version(),
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def _make_studio_importable():
    """Lets the workers import `studio` from this checkout when it is not installed.

    The GPU machine gets the repository but no install: `studio` is the
    folder of that name, and `studio.trainers` / `studio.prompts` are the
    top-level `trainers/` and `prompts/` folders (pyproject's
    `package-dir`). An installed studio is left as it is.
    """
    import importlib.util

    if REPOSITORY not in sys.path:
        sys.path.insert(1, REPOSITORY)
    try:
        import studio.trainers  # noqa: F401
        return
    except ModuleNotFoundError:
        pass
    import studio

    for name in ("trainers", "prompts"):
        folder = os.path.join(REPOSITORY, name)
        spec = importlib.util.spec_from_file_location(
            f"studio.{name}", os.path.join(folder, "__init__.py"),
            submodule_search_locations=[folder])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        setattr(studio, name, module)
        spec.loader.exec_module(module)


# --- The report ------------------------------------------------------------


def build_report(rows, results, meta, scale, budget, elapsed, argv):
    """The JSON document: run metadata and one entry per row with both sides and derived numbers."""
    device = (meta.get("studio") or {}).get("device") or (meta.get("diffusers") or {}).get("device")
    peak = peak_flops((meta.get("diffusers") or {}).get("device", "")) or peak_flops(device or "")
    entries = []
    for row in rows:
        entry = dict(row)
        for framework in FRAMEWORKS:
            entry[framework] = results.get((row["id"], framework), {"skipped": "not run"})
        entries.append(entry)
    flops = _flops_by_batch(entries)
    for entry in entries:
        _derive(entry, scale, flops, peak)
    return {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "python benchmarks/gpu_check.py " + " ".join(argv),
            "scale": scale.name,
            "preset": scale.preset,
            "resolution": scale.resolution,
            "generation_steps": scale.generation_steps,
            "device": device,
            "peak_flops": peak,
            "budget_s": budget,
            "elapsed_s": elapsed,
            "workers": meta,
            "families": {
                family: {"preset": family_scale.preset or "keras-hub classes",
                         "resolution": family_scale.resolution,
                         "remat": family_scale.remat}
                for family, family_scale in scale.families.items()
            },
        },
        "rows": entries,
    }


def _ok(side):
    return isinstance(side, dict) and "error" not in side and "skipped" not in side


def _flops_by_batch(entries):
    """UNet forward+backward FLOPs per (precision, batch), from the full rows."""
    flops = {}
    for entry in entries:
        if entry.get("task") == "full" and _ok(entry["studio"]) and "flops" in entry["studio"]:
            flops[(entry["precision"], entry["batch"])] = entry["studio"]["flops"]
    return flops


def _derive(entry, scale, flops, peak):
    """Ratios, MFU and goals of one entry (goals only at full size)."""
    studio, diffusers = entry.get("studio"), entry.get("diffusers")
    goals = {}
    full = scale.name == "full"
    if entry["kind"] == "train":
        if _ok(studio) and _ok(diffusers):
            entry["speedup"] = studio["steps_per_second"] / diffusers["steps_per_second"]
            entry["memory_ratio"] = studio["peak_gib"] / diffusers["peak_gib"]
            goals["speedup >= 1.2"] = entry["speedup"] >= GOAL_TRAIN_SPEEDUP
        task, family = entry["task"], entry.get("family", "sd")
        goal_peak = (GOAL_PEAK_GIB.get(task) if family == "sd"
                     else FAMILY_GOAL_PEAK_GIB.get((family, task)))
        if goal_peak and entry["precision"] == "mixed_float16" and entry["batch"] == 1:
            if _ok(studio):
                goals[f"peak <= {goal_peak:.0f} GiB"] = studio["peak_gib"] <= goal_peak
        count = flops.get((entry["precision"], entry["batch"])) if family == "sd" else None
        if task in ("full", "full_lean") and count:
            entry["flops"] = count
            for name, side in (("studio", studio), ("diffusers", diffusers)):
                if _ok(side):
                    side["tflops_per_s"] = count / side["seconds_per_step"] / 1e12
                    side["mfu"] = count / side["seconds_per_step"] / peak if peak else None
            if task == "full" and _ok(studio) and studio.get("mfu") is not None:
                goals["MFU >= 40%"] = studio["mfu"] >= GOAL_MFU
    elif entry["kind"] == "generate":
        if _ok(studio) and _ok(diffusers):
            entry["latency_ratio"] = studio["latency_s"] / diffusers["latency_s"]
            goals["latency <= 1.0x"] = entry["latency_ratio"] <= GOAL_GENERATION_RATIO
    elif entry["kind"] == "numerics":
        if _ok(diffusers) and entry["precision"] == "mixed_float16":
            goals["mean diff <= 2/255"] = diffusers["mean_abs_diff"] <= GOAL_MEAN_PIXEL_DIFF
    if full and goals:
        entry["goals"] = goals


def _cell(value, digits=2):
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}f}"
    return str(value)


def _side_problem(side):
    if not isinstance(side, dict):
        return "missing"
    if "error" in side:
        return "ERROR " + side["error"]
    if "skipped" in side:
        return "skipped: " + side["skipped"]
    return None


def format_table(report):
    """The one table, as text."""
    meta = report["meta"]
    lines = [
        f"GPU check ({meta['scale']}): device {meta['device']}; peak rate "
        f"{_cell(meta['peak_flops'] and meta['peak_flops'] / 1e12, 0)} TFLOP/s; "
        f"{meta['elapsed_s']:.0f} s of a {meta['budget_s']:.0f} s budget",
        "Train: steps/s (first step s, peak GiB). Generate: latency s (first call s, peak GiB). "
        "Numerics: |pixel| difference in levels of 255.",
    ]
    families = {entry.get("family", "sd") for entry in report["rows"]}
    for family in sorted(families, key=FAMILIES.index):
        if family == "sd":
            lines.append(f"{FAMILY_LABELS[family]} rows: {meta['preset']} architecture, random "
                         f"weights, {meta['resolution']} px.")
            continue
        about = meta["families"][family]
        lines.append(f"{FAMILY_LABELS[family]} rows: {about['preset']}, {about['resolution']} px, "
                     f"random weights; DreamBooth LoRA r4 with prior preservation, cached text "
                     f"outputs{', gradient checkpointing' if about['remat'] else ''}.")
    header = f"{'row':<40} {'studio':>24} {'diffusers':>24} {'studio/diff':>11}  notes"
    lines += [header, "-" * len(header)]
    for entry in report["rows"]:
        cells, notes = [], []
        for framework in FRAMEWORKS:
            side = entry[framework]
            problem = _side_problem(side)
            if problem:
                cells.append("-")
                notes.append(f"{framework}: {problem}")
            elif entry["kind"] == "train":
                cells.append(f"{side['steps_per_second']:.3f} ({side['first_s']:.1f}, "
                             f"{side['peak_gib']:.2f})")
            elif entry["kind"] == "generate":
                cells.append(f"{side['latency_s']:.3f} ({side['first_s']:.1f}, "
                             f"{side['peak_gib']:.2f})")
            elif framework == "studio":
                cells.append(f"export {side['export_s']:.1f} s")
            else:
                cells.append(f"max {side['max_abs_diff']:.0f} mean {side['mean_abs_diff']:.3f}")
        ratio = entry.get("speedup", entry.get("latency_ratio"))
        if entry["kind"] == "train" and "flops" in entry:
            mfus = [f"{name} MFU {_cell(entry[name].get('mfu') and 100 * entry[name]['mfu'], 1)}% "
                    f"({entry[name].get('tflops_per_s'):.3g} TFLOP/s)"
                    for name in FRAMEWORKS if _ok(entry[name])]
            notes.append(f"{entry['flops'] / 1e12:.3g} TFLOP/step; " + ", ".join(mfus))
        if entry.get("family", "sd") != "sd":
            notes.extend(_family_notes(entry))
        studio = entry.get("studio", {})
        if _ok(studio) and "in_use_gib" in studio:
            notes.append(f"studio holds {studio['in_use_gib']:.2f} GiB after the steps, "
                         f"largest allocation {studio.get('largest_alloc_gib', 0):.2f} GiB")
        for goal, met in entry.get("goals", {}).items():
            notes.append(f"{goal}: {'met' if met else 'NOT met'}")
        lines.append(f"{_row_label(entry):<40} {cells[0]:>24} {cells[1]:>24} "
                     f"{_cell(ratio):>11}  {'; '.join(notes)}")
    return "\n".join(lines)


def _family_notes(entry):
    """What a newer family's row measured beside steps/s: weights, checkpointing, trained sizes."""
    studio, diffusers = entry["studio"], entry["diffusers"]
    notes = []
    if _ok(studio):
        notes.append(f"studio weights {studio['weights_gib']:.1f} GiB")
        if "remat" in studio:
            notes.append(f"studio checkpointing: {studio['remat']}")
    if _ok(studio) and _ok(diffusers):
        if studio["trained_parameters"] != diffusers["trained_parameters"]:
            notes.append(f"trained {studio['trained_parameters']} vs "
                         f"{diffusers['trained_parameters']} ({diffusers.get('trained_note', '')})")
    return notes


def _row_label(entry):
    precision = {"mixed_float16": "fp16", "mixed_bfloat16": "bf16", "float32": "fp32"}
    label = precision.get(entry.get("precision"), "")
    family = entry.get("family", "sd")
    if family != "sd":
        return f"{FAMILY_LABELS[family]} {TASK_NAMES[entry['task']]} {label} b{entry['batch']}"
    if entry["kind"] == "train":
        return f"{TASK_NAMES[entry['task']]} {label} b{entry['batch']}"
    if entry["kind"] == "generate":
        return f"generate {label} b{entry['batch']}"
    return f"numerics {label}"


if __name__ == "__main__":
    sys.exit(main())
