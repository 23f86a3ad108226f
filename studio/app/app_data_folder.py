"""The one folder where the app keeps everything it writes."""

import os

# Where the data folder is, unless the environment says otherwise.
DATA_FOLDER_VARIABLE = "STUDIO_APP_DATA"
DEFAULT_DATA_FOLDER = "studio-data"


class AppDataFolder:
    """The app's data folder and its sub-folders.

    ```
    ROOT/
      datasets/     uploaded training images, one folder per data set
      runs/         training runs (see `studio.trainers.RunDirectory`)
      embeddings/   the embedding library: imported and exported files
      loras/        imported LoRA files
      outputs/      generated images
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

    @property
    def datasets(self):
        return os.path.join(self.root, "datasets")

    @property
    def runs(self):
        return os.path.join(self.root, "runs")

    @property
    def embeddings(self):
        return os.path.join(self.root, "embeddings")

    @property
    def loras(self):
        return os.path.join(self.root, "loras")

    @property
    def outputs(self):
        return os.path.join(self.root, "outputs")

    @property
    def cache(self):
        return os.path.join(self.root, "cache")

    def ensure(self):
        """Creates the folder and its sub-folders; returns self."""
        for folder in (self.datasets, self.runs, self.embeddings, self.loras,
                       self.outputs, self.cache):
            os.makedirs(folder, exist_ok=True)
        return self

    def contains(self, path):
        """True when `path` (resolved, links followed) is inside the data folder."""
        root = os.path.realpath(self.root)
        target = os.path.realpath(path)
        return os.path.commonpath([root, target]) == root
