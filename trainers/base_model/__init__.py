"""Pretraining the embedded tiny-shapes model from scratch: its VAE, then its text encoder and UNet."""
