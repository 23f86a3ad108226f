"""A file an image was generated with: a LoRA or an embedding, by name, hash and strength."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class ConceptReference:
    """One LoRA or embedding file of a generation, as A1111's infotext names it.

    Attributes:
        name: the file's name without folder and extension (A1111's name
            for it: `<lora:NAME:0.8>`, `TI hashes: "NAME: ..."`).
        short_hash: A1111's short hash of the file (12 hex digits, see
            `studio.interop.a1111_hashes`), or "" when unknown.
        strength: a LoRA's strength (`scale`); 1.0 for embeddings.
    """

    name: str
    short_hash: str = ""
    strength: float = 1.0
