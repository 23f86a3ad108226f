"""What a training run is doing before and between its steps, for whoever listens.

A run spends minutes before its first step: loading the model, checking
the images, encoding the latent cache, generating class images, compiling
the step. The trainers call `report_phase` at each of these (with a count
where there is one); nobody listens unless a caller installs a listener
with `phase_listener`, as the app's training process does to write the
run folder's `phase.json`.

Example:

>>> with phase_listener(lambda phase, done, total: print(phase, done, total)):
...     train_dreambooth(settings, "runs/dog")
"""

import contextlib

STARTING = "starting"
LOADING_MODEL = "loading_model"
CHECKING_IMAGES = "checking_images"
CACHING_LATENTS = "caching_latents"
CLASS_IMAGES = "class_images"
COMPILING = "compiling"
TRAINING = "training"
SAMPLING = "sampling"
# The phases in the order a run goes through them, with words for people.
PHASE_LABELS = {
    STARTING: "Starting the training process",
    LOADING_MODEL: "Loading the model",
    CHECKING_IMAGES: "Checking the images",
    CLASS_IMAGES: "Generating class images",
    CACHING_LATENTS: "Encoding the images (latent cache)",
    COMPILING: "Compiling the training step",
    TRAINING: "Training",
    SAMPLING: "Drawing sample images",
}

_listeners = []


def report_phase(phase, done=None, total=None):
    """Tells the listeners that the run is in `phase` (a `PHASE_LABELS` key), `done` of `total`."""
    for listener in list(_listeners):
        listener(phase, done, total)


@contextlib.contextmanager
def phase_listener(callback):
    """Calls `callback(phase, done, total)` for each `report_phase` while the block runs."""
    _listeners.append(callback)
    try:
        yield callback
    finally:
        _listeners.remove(callback)


def phase_counter(phase):
    """A `(done, total)` callback that reports `phase` with the count (for loops below trainers)."""
    return lambda done, total: report_phase(phase, done, total)
