"""The short hashes AUTOMATIC1111 writes into infotext for the files an image used.

A1111 names every file an image was made with by a prefix of a sha256:

- checkpoints (`Model hash`): the whole file's sha256, first 10 hex digits;
- textual-inversion embeddings (`TI hashes`): the whole file's sha256, first
  12 hex digits;
- LoRA files (`Lora hashes`): for a `.safetensors` file, the sha256 of its
  tensor data only (the bytes after the JSON header: kohya's "addnet" hash,
  so that editing a file's metadata keeps its hash); for other files the
  whole file's; first 12 hex digits.

Writing the same hashes lets A1111 and the sites that read its infotext
find our files, and lets `studio generate --from-png` check that a file
found by name is the one the image was made with.
"""

import hashlib
import os
import struct

CHECKPOINT_HASH_LENGTH = 10
NETWORK_HASH_LENGTH = 12
# A safetensors file starts with its header's length: 8 bytes, little-endian.
SAFETENSORS_LENGTH_BYTES = 8
_CHUNK_BYTES = 1 << 20
_SAFETENSORS_SUFFIX = ".safetensors"


def checkpoint_short_hash(path):
    """A1111's `Model hash` of a checkpoint file: its sha256's first 10 hex digits."""
    return _sha256(path)[:CHECKPOINT_HASH_LENGTH]


def embedding_short_hash(path):
    """A1111's `TI hashes` entry of an embedding file: its sha256's first 12 hex digits."""
    return _sha256(path)[:NETWORK_HASH_LENGTH]


def lora_short_hash(path):
    """A1111's `Lora hashes` entry of a LoRA file (12 hex digits).

    A `.safetensors` file is hashed from the end of its header on, as
    A1111 and kohya's scripts do; any other file whole.
    """
    path = os.fspath(path)
    start = 0
    if path.lower().endswith(_SAFETENSORS_SUFFIX):
        with open(path, "rb") as file:
            head = file.read(SAFETENSORS_LENGTH_BYTES)
        if len(head) == SAFETENSORS_LENGTH_BYTES:
            start = SAFETENSORS_LENGTH_BYTES + struct.unpack("<Q", head)[0]
    return _sha256(path, start)[:NETWORK_HASH_LENGTH]


def _sha256(path, start=0):
    digest = hashlib.sha256()
    with open(os.fspath(path), "rb") as file:
        file.seek(start)
        for chunk in iter(lambda: file.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()
