"""Training loops that teach Stable Diffusion new concepts (installed as `studio.trainers`)."""
