"""DreamBooth: fine-tune the denoiser (fully or with LoRA) on a subject, with prior preservation."""
