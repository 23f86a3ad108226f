"""Reports the `training` phase once the first step (which compiles it) is done."""

import keras

from studio.trainers.run.run_phase import TRAINING, report_phase


class PhaseCallback(keras.callbacks.Callback):
    """Calls `report_phase("training")` after the first batch of `fit`.

    Until then the run is compiling its step (`fit_run` reports
    "compiling" before `fit`): the first batch traces and compiles it.
    """

    def __init__(self):
        super().__init__()
        self._reported = False

    def on_train_batch_end(self, batch, logs=None):
        if not self._reported:
            self._reported = True
            report_phase(TRAINING)
