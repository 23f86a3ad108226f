"""Reads weight files in the legacy Keras HDF5 layout that KerasCV publishes.

KerasCV's Stable Diffusion files (`kcv_encoder.h5`, `kcv_diffusion_model.h5`,
...) were written by `model.save_weights("*.h5")` of tf.keras models: the root
lists `layer_names`, each layer group lists its `weight_names`. Our models are
built so that their `weights` list has the same order and shapes as KerasCV's
models (tests/models check this), so the file's weights, read in order, are
assigned by position. We read the file with h5py instead of
`keras.Model.load_weights` because that matches layers by the structure of
the saving model, which ours deliberately does not copy.
"""

import os

import numpy as np

from studio.errors import WeightsMismatchError


def read_legacy_h5_weights(path):
    """Returns the arrays of a legacy Keras `.h5` weight file, in order.

    Args:
        path: the `.h5` file.

    Returns:
        A list of `(name, numpy array)` pairs.

    Raises:
        WeightsMismatchError: if the file is not a readable weight file.
    """
    import h5py

    try:
        with h5py.File(path, "r") as file:
            root = file["model_weights"] if "model_weights" in file else file
            if "layer_names" not in root.attrs:
                raise WeightsMismatchError(
                    f"Weight file {path} has no `layer_names` attribute, so it "
                    "is not a Keras weight file in the legacy HDF5 layout that "
                    "KerasCV publishes (written by `save_weights('*.h5')`)."
                )
            weights = []
            for layer_name in root.attrs["layer_names"]:
                group = root[_text(layer_name)]
                for weight_name in group.attrs.get("weight_names", []):
                    weight_name = _text(weight_name)
                    weights.append((weight_name, np.asarray(group[weight_name])))
            return weights
    except WeightsMismatchError:
        raise
    except (OSError, KeyError) as error:
        size = os.path.getsize(path) if os.path.exists(path) else 0
        raise WeightsMismatchError(
            f"Could not read weight file {path} ({size} bytes): {error}. The "
            "file is corrupt or truncated (an interrupted download?). Delete "
            "it and download it again."
        ) from error


def load_legacy_h5_weights(model, path):
    """Assigns the weights of a legacy Keras `.h5` file to `model` by position.

    Raises:
        WeightsMismatchError: if the file is unreadable or its weights do not
            match the model's in number and shapes; the message names the file
            and the first mismatch.
    """
    file_weights = read_legacy_h5_weights(path)
    model_weights = model.weights
    if len(file_weights) != len(model_weights):
        raise WeightsMismatchError(
            f"Weight file {path} holds {len(file_weights)} weights, but "
            f"{model.__class__.__name__} '{model.name}' has "
            f"{len(model_weights)}. Is this the file of another component or "
            "model version?"
        )
    for index, ((name, array), variable) in enumerate(
        zip(file_weights, model_weights)
    ):
        if tuple(array.shape) != tuple(variable.shape):
            raise WeightsMismatchError(
                f"Weight file {path} does not fit {model.__class__.__name__} "
                f"'{model.name}': weight #{index} '{name}' has shape "
                f"{tuple(array.shape)} in the file, the model expects "
                f"{tuple(variable.shape)} ('{variable.path}'). Is this the "
                "file of another component or model version?"
            )
    model.set_weights([array for _, array in file_weights])


def _text(value):
    return value.decode("utf8") if isinstance(value, bytes) else value
