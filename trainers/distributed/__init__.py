"""Data-parallel training over several devices (`--devices N`)."""
