"""Progress from inside the compiled sampling loop.

The loop runs every step in one compiled call; each finished step sends its
index to Python from inside that call (`report_step`), and the pipeline
turns the messages into its `callback(step, total)` on the caller's thread
(`predict_with_step_reports`). Backend-agnostic: CI runs these under
TensorFlow and JAX; the XLA case is TensorFlow's alone (XLA cannot call
Python there, so the steps come when the call returns).
"""

import threading
import time

import keras
import numpy as np
import pytest
from keras import ops

from studio.models import StableDiffusionBackbone
from studio.pipelines import SamplingLoop, TextToImagePipeline
from studio.schedulers import get_scheduler

STEPS = 4


@pytest.fixture(scope="module")
def backbone():
    return StableDiffusionBackbone.from_preset("tiny")


def _inputs(backbone, steps=STEPS):
    rng = np.random.default_rng(0)
    shape = (1, *backbone.latent_shape(32, 32))
    scheduler = get_scheduler("euler_a")
    scheduler.set_timesteps(steps)
    def encode(prompt):
        return ops.convert_to_numpy(backbone.encode_text(backbone.tokenizer([prompt]))["context"])

    context, empty = encode("a circle"), encode("")
    return {
        "latents": rng.standard_normal(shape).astype("float32"),
        "context": context.astype("float32"),
        "unconditional_context": empty.astype("float32"),
        "guidance_scale": np.array([7.5], "float32"),
        "noise": rng.standard_normal((steps, *shape)).astype("float32"),
        "table": scheduler.step_table(),
    }


def _watched(loop):
    """Marks when `loop.predict_on_batch` has returned."""
    state = {"returned": False}
    predict = loop.predict_on_batch

    def watched(inputs):
        state["returned"] = False
        result = predict(inputs)
        state["returned"] = True
        return result

    loop.predict_on_batch = watched
    return state


def test_each_step_is_reported_from_inside_the_call(backbone):
    # The default compilation: jit under JAX, a graph without XLA on
    # TensorFlow's CPU (TensorFlow's XLA case has its own test below).
    loop = SamplingLoop(backbone.denoiser)
    loop.compile(jit_compile="auto")
    state = _watched(loop)
    heard = []
    loop.step_listener = lambda index: heard.append((index, state["returned"]))
    for run in range(2):
        heard.clear()
        loop.predict_on_batch(_inputs(backbone))
        assert [index for index, _ in heard] == list(range(STEPS)), (run, heard)
        assert not any(returned for _, returned in heard), heard
    # Without a listener the same program runs and nothing is heard.
    loop.step_listener = None
    heard.clear()
    loop.predict_on_batch(_inputs(backbone))
    assert heard == []


def test_pipeline_callback_runs_on_the_callers_thread_while_each_batch_runs(backbone):
    pipeline = TextToImagePipeline(backbone)
    loop = pipeline.sampling_loop
    state = _watched(loop)
    # The compiled call waits inside its first step's report until the
    # caller has run the callback for it, so "still running" is certain.
    first_seen = threading.Event()
    forward = loop._step_done

    def held_at_first_step(index):
        forward(index)
        if index == 0:
            assert first_seen.wait(timeout=60)
            first_seen.clear()

    loop._step_done = held_at_first_step  # before the loop is traced
    caller = threading.get_ident()
    calls = []

    def callback(step, total):
        calls.append((step, total, threading.get_ident() == caller))
        if step == 1:
            assert not state["returned"], calls
            first_seen.set()

    pipeline(["a", "b"], num_steps=STEPS, seed=1, height=32, width=32, batch_size=1,
             sampler="euler_a", callback=callback)  # fmt: skip
    expected = [(step, STEPS, True) for step in range(1, STEPS + 1)]
    assert calls == expected * 2


def test_a_failing_callback_is_raised_after_the_batch_and_the_pipeline_goes_on(backbone):
    pipeline = TextToImagePipeline(backbone)
    options = dict(num_steps=STEPS, seed=3, height=32, width=32, sampler="ddim")
    steps = []

    def fail_at_two(step, total):
        steps.append(step)
        if step == 2:
            raise KeyError("stop here")

    with pytest.raises(KeyError, match="stop here"):
        pipeline("a circle", callback=fail_at_two, **options)
    assert steps == [1, 2]
    # The loop is free again and computes the same images as before.
    again = pipeline("a circle", callback=lambda step, total: None, **options).images
    plain = pipeline("a circle", **options).images
    np.testing.assert_array_equal(again, plain)


def test_an_error_of_the_call_itself_reaches_the_caller(backbone, monkeypatch):
    pipeline = TextToImagePipeline(backbone)

    def broken(inputs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(pipeline.sampling_loop, "predict_on_batch", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        pipeline("a circle", num_steps=2, seed=0, height=32, width=32,
                 callback=lambda step, total: None)  # fmt: skip
    assert pipeline.sampling_loop.step_listener is None
    assert pipeline.sampling_loop.call_lock.acquire(blocking=False)
    pipeline.sampling_loop.call_lock.release()


@pytest.mark.large  # XLA compiles the tiny loop for about 20 s on the CPU
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's XLA only")
def test_under_tensorflow_xla_the_steps_are_reported_when_the_call_returns(backbone):
    pipeline = TextToImagePipeline(backbone, jit_compile=True)
    heard = []
    pipeline.sampling_loop.step_listener = heard.append
    pipeline.sampling_loop.predict_on_batch(_inputs(backbone))
    assert heard == []  # XLA cannot call Python: nothing from inside
    pipeline.sampling_loop.step_listener = None
    calls = []
    pipeline("a circle", num_steps=STEPS, seed=0, height=32, width=32, sampler="euler_a",
             callback=lambda step, total: calls.append((step, total)))  # fmt: skip
    assert calls == [(step, STEPS) for step in range(1, STEPS + 1)]


def test_an_interrupt_returns_at_once_and_the_next_call_waits_for_the_running_one(
        backbone, monkeypatch):
    import studio.pipelines.step_report as step_report

    pipeline = TextToImagePipeline(backbone)
    loop = pipeline.sampling_loop
    events = []
    predict = loop.predict_on_batch
    release = threading.Event()

    def slow(inputs):
        events.append("start")
        result = predict(inputs)
        release.wait(timeout=30)  # a long generation, still running
        events.append("end")
        return result

    monkeypatch.setattr(loop, "predict_on_batch", slow)

    class InterruptedQueue(step_report.queue.SimpleQueue):
        def get(self, *args, **kwargs):
            raise KeyboardInterrupt  # Ctrl-C while the caller waits

    monkeypatch.setattr(step_report.queue, "SimpleQueue", InterruptedQueue)
    options = dict(num_steps=2, seed=0, height=32, width=32)
    with pytest.raises(KeyboardInterrupt):
        pipeline("a circle", callback=lambda step, total: None, **options)
    monkeypatch.undo()
    monkeypatch.setattr(loop, "predict_on_batch", slow)
    for _ in range(600):  # the interrupted call goes on, on its own thread
        if events:
            break
        time.sleep(0.05)
    assert events == ["start"]

    # The next call, from another thread, starts only when the first ends.
    second = threading.Thread(target=lambda: pipeline("a circle", **options))
    second.start()
    second.join(timeout=0.5)
    assert second.is_alive() and events.count("start") == 1, events
    release.set()
    second.join(timeout=60)
    assert events == ["start", "end", "start", "end"]
    assert loop.step_listener is None
