"""The one folder where the app keeps everything it writes."""

import os

# Where the data folder is, unless the environment says otherwise.
DATA_FOLDER_VARIABLE = "STUDIO_APP_DATA"
DEFAULT_DATA_FOLDER = "studio-data"


def _sub_folder(name):
    """A read-only attribute: the path of the sub-folder `name`."""
    return property(lambda self: os.path.join(self.root, name), doc=f"`ROOT/{name}/`.")


class AppDataFolder:
    """The app's data folder and its sub-folders.

    ```
    ROOT/
      datasets/     uploaded training images, one folder per data set
      runs/         training runs (see `studio.trainers.RunDirectory`)
      embeddings/   the embedding library: imported and exported files
      loras/        imported LoRA files
      outputs/      generated images
      exports/      converted files to download (not part of the library)
      cache/        latent cache of training images
    ```

    Every file the app writes lands under `root`; uploaded file names are
    never used as paths (see `safe_uploads`).

    Args:
        root: the folder (created on `ensure`).
    """

    def __init__(self, root):
        self.root = os.path.abspath(os.fspath(root))

    @classmethod
    def from_environment(cls):
        """`$STUDIO_APP_DATA`, or `./studio-data`."""
        return cls(os.environ.get(DATA_FOLDER_VARIABLE) or DEFAULT_DATA_FOLDER)

    datasets = _sub_folder("datasets")
    runs = _sub_folder("runs")
    embeddings = _sub_folder("embeddings")
    loras = _sub_folder("loras")
    outputs = _sub_folder("outputs")
    exports = _sub_folder("exports")
    cache = _sub_folder("cache")

    def ensure(self):
        """Creates the folder and its sub-folders; returns self."""
        for folder in (self.datasets, self.runs, self.embeddings, self.loras,
                       self.outputs, self.exports, self.cache):
            os.makedirs(folder, exist_ok=True)
        return self

    def contains(self, path):
        """True when `path` (resolved, links followed) is inside the data folder."""
        root = os.path.realpath(self.root)
        target = os.path.realpath(path)
        return os.path.commonpath([root, target]) == root
