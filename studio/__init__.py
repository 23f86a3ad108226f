"""Keras fine-tuning studio for Stable Diffusion.

Importing `studio` is cheap: it imports neither Keras nor TensorFlow. Import
the part you need (`studio.models`, `studio.pipelines`, `studio.trainers`, ...);
`studio.show(images, labels=...)` draws a grid inline in a notebook.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # Loaded on first use (PEP 562), so `import studio` stays cheap.
    if name == "show":
        from studio.images.show import show

        return show
    raise AttributeError(f"module 'studio' has no attribute {name!r}")
