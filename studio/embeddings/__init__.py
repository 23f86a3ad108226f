"""Textual-inversion embedding files that diffusers, AUTOMATIC1111 and kohya load.

Reads and writes the studio's native `.safetensors`, diffusers', kohya's
and AUTOMATIC1111's layouts (`load_embedding`, `save_embedding`,
`convert_embedding`), reads SD-XL files for inspection, and reads PyTorch
files without PyTorch and without running pickle code. Importing this
package imports neither Keras nor TensorFlow.
"""

from studio.embeddings.backbone_with_embeddings import backbone_with_embeddings
from studio.embeddings.embedding_compatibility import check_compatible
from studio.embeddings.embedding_files import FORMATS
from studio.embeddings.embedding_files import convert_embedding
from studio.embeddings.embedding_files import load_embedding
from studio.embeddings.embedding_files import save_embedding
from studio.embeddings.embedding_format_error import EmbeddingFormatError
from studio.embeddings.embedding_format_error import UnsafePickleError
from studio.embeddings.nearest_words import nearest_words
from studio.embeddings.sdxl_embedding_file import load_diffusers_sdxl_embedding
from studio.embeddings.textual_inversion_embedding import TextualInversionEmbedding

__all__ = [
    "backbone_with_embeddings",
    "EmbeddingFormatError",
    "FORMATS",
    "TextualInversionEmbedding",
    "UnsafePickleError",
    "check_compatible",
    "convert_embedding",
    "load_diffusers_sdxl_embedding",
    "load_embedding",
    "nearest_words",
    "save_embedding",
]
