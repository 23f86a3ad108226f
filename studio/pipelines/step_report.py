"""A compiled loop's "step i is done" message to Python, on each backend.

The sampling loop runs every step in one compiled call, so a progress bar
would otherwise hear of the steps only when the call returns. Keras has no
host-callback op, so this is the one backend switch of the loop:

* JAX: `jax.debug.callback`, which XLA runs on the host (CPU or GPU) when
  its operands are ready.
* TensorFlow without XLA (the CPU's default): `tf.py_function`, a stateful
  op that the graph runs inside the `while` loop's body.
* TensorFlow under XLA: nothing (XLA cannot call Python); the caller
  reports the steps when the call returns.

The message carries a scalar from the step's result, so it is sent after
the step's work, not when the step starts.
"""

import queue
import threading

import keras
from keras import ops


def report_step(listener, index, result, compiled_with_xla):
    """Calls `listener(index)` on the host once `result` (step `index`'s output) exists.

    Args:
        listener: a Python callable taking the int step index. It runs on a
            thread of the backend's runtime, so it should only hand the
            index on (a queue's `put`).
        index: the step's index, an int scalar tensor of the loop.
        result: the step's output; one of its elements orders the message
            after the step.
        compiled_with_xla: whether the loop is compiled by XLA (under
            TensorFlow that rules a Python call out: nothing is sent, and
            `predict_with_step_reports` reports after the call).
    """
    marker = ops.reshape(result, (-1,))[0]
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        jax.debug.callback(lambda step, _: listener(int(step)), index, marker)
    elif backend == "tensorflow" and not compiled_with_xla:
        import tensorflow as tf

        def send(step, _):
            listener(int(step))
            return []

        tf.py_function(send, [index, marker], [])


def predict_with_step_reports(sampling_loop, inputs, total, callback):
    """`sampling_loop.predict_on_batch(inputs)`, with `callback(step, total)` as steps finish.

    The compiled call runs on a worker thread; its step messages come back
    through a queue, and `callback` runs on the caller's thread (a
    Streamlit script's progress bar, a tqdm bar), once per step, in order,
    from 1 to `total`. Steps the backend could not report from inside
    (TensorFlow under XLA) are reported when the call returns.

    If `callback` raises, it is not called again, the call runs to its end
    (a compiled loop cannot be stopped halfway) and the error is raised
    then. An error of the call itself is raised as is. An interrupt
    (Ctrl-C, a notebook's stop) while waiting returns at once; the call
    finishes on its own thread.

    Calls on one loop take turns, until the compiled call has ended (the
    app's cached pipelines are shared by its sessions): one device computes
    one generation at a time anyway, and the loop has one listener.
    """
    lock = sampling_loop.call_lock
    if callback is None:
        with lock:
            return sampling_loop.predict_on_batch(inputs)
    messages = queue.SimpleQueue()
    outcome = {}

    def work():
        try:
            outcome["result"] = sampling_loop.predict_on_batch(inputs)
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error
        finally:
            sampling_loop.step_listener = None
            lock.release()
            messages.put(None)

    lock.acquire()
    sampling_loop.step_listener = messages.put
    worker = threading.Thread(target=work, name="studio-sampling-loop", daemon=True)
    try:
        worker.start()
    except BaseException:
        sampling_loop.step_listener = None
        lock.release()
        raise
    reported, callback_error = 0, None
    while True:
        index = messages.get()
        done = total if index is None else min(int(index) + 1, total)
        while callback_error is None and reported < done:
            reported += 1
            try:
                callback(reported, total)
            except BaseException as error:
                callback_error = error
        if index is None:
            break
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    if callback_error is not None:
        raise callback_error
    return outcome["result"]
