"""CLIP's byte-pair tokenizer, with placeholder tokens, and its vocabulary file.

Pure Python, numpy and `regex`: importing this package imports neither Keras
nor TensorFlow.
"""

from studio.tokenizers.clip_tokenizer import CLIPTokenizer
from studio.tokenizers.clip_vocabulary import CLIP_VOCABULARY_FILENAME
from studio.tokenizers.clip_vocabulary import CLIP_VOCABULARY_ORIGIN
from studio.tokenizers.clip_vocabulary import CLIP_VOCABULARY_SHA256
from studio.tokenizers.clip_vocabulary import VocabularyMismatchError
from studio.tokenizers.clip_vocabulary import VocabularyNotFoundError
from studio.tokenizers.clip_vocabulary import get_clip_vocabulary_path
from studio.tokenizers.clip_vocabulary import load_clip_vocabulary

__all__ = [
    "CLIPTokenizer",
    "CLIP_VOCABULARY_FILENAME",
    "CLIP_VOCABULARY_ORIGIN",
    "CLIP_VOCABULARY_SHA256",
    "VocabularyMismatchError",
    "VocabularyNotFoundError",
    "get_clip_vocabulary_path",
    "load_clip_vocabulary",
]
