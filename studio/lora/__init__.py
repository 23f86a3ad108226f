"""LoRA: which layers it adapts, and its weights in kohya's and diffusers' files.

Generation applies LoRA files and trainers write them; both import this
package, which imports nothing from either.
"""
