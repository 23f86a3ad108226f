"""TensorBoard event files written with NumPy, Pillow and the tensorboard package only."""

import io
import time

import numpy as np


class SummaryWriter:
    """Writes scalars and images to a TensorBoard log folder, on any Keras backend.

    `tf.summary` would run TensorFlow ops, which under JAX on a GPU machine
    would make TensorFlow take the GPU's memory; this writer builds the
    event protocol buffers itself (PNG-encoded images, as TensorBoard's
    image dashboard reads them) and hands them to tensorboard's event-file
    writer.

    Args:
        log_dir: the folder of the event files (created if missing).

    Example:

    ```python
    writer = SummaryWriter("runs/cat/logs")
    writer.scalar("loss", 0.12, step=100)
    writer.images("samples", uint8_images, step=100)
    writer.close()
    ```
    """

    def __init__(self, log_dir):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.log_dir = log_dir
        self._writer = EventFileWriter(log_dir)

    def scalar(self, tag, value, step):
        """Logs one float value of the series `tag` at `step`."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        self._emit(Summary.Value(tag=tag, simple_value=float(value)), step)

    def images(self, tag, images, step):
        """Logs uint8 images `(count, height, width, 3)` as `tag/0`, `tag/1`, ..."""
        from PIL import Image
        from tensorboard.compat.proto.summary_pb2 import Summary

        for index, image in enumerate(np.asarray(images)):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            height, width, channels = image.shape
            encoded = Summary.Image(
                height=height,
                width=width,
                colorspace=channels,
                encoded_image_string=buffer.getvalue(),
            )
            self._emit(Summary.Value(tag=f"{tag}/{index}", image=encoded), step)

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()

    def _emit(self, value, step):
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        event = Event(wall_time=time.time(), step=int(step), summary=Summary(value=[value]))
        self._writer.add_event(event)
