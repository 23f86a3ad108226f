"""Textual inversion: new token vectors, the rest of the model frozen."""
