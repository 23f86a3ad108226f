"""Prompt templates and placeholder-token handling (installed as `studio.prompts`)."""
