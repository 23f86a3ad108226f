"""Tensor files read and written without PyTorch: `.safetensors` and PyTorch zip pickles."""
