"""tf.data pipelines of image/prompt pairs (installed as `studio.datasets`).

Importing the package is cheap: TensorFlow and keras_cv are imported when a
pipeline is built, so `studio data check --help` stays instant.
"""

from studio.datasets.concept_dataset import ConceptDataset
from studio.datasets.contact_sheet import make_contact_sheet
from studio.datasets.dreambooth_dataset import (
    DreamBoothDataset,
    class_image_dataset,
    dreambooth_instance_dataset,
)
from studio.datasets.image_augmenter import ImageAugmenter
from studio.datasets.image_decoding import SUPPORTED_EXTENSIONS, decode_training_image
from studio.datasets.image_folder import ImageFolder
from studio.datasets.image_folder_report import ImageFolderReport
from studio.datasets.invalid_image_folder_error import InvalidImageFolderError
from studio.datasets.latent_cache import LatentCache, default_cache_dir
from studio.datasets.weights_id import weights_id

__all__ = [
    "ConceptDataset",
    "DreamBoothDataset",
    "ImageAugmenter",
    "ImageFolder",
    "ImageFolderReport",
    "InvalidImageFolderError",
    "LatentCache",
    "SUPPORTED_EXTENSIONS",
    "class_image_dataset",
    "decode_training_image",
    "default_cache_dir",
    "dreambooth_instance_dataset",
    "make_contact_sheet",
    "weights_id",
]
