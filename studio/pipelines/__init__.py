"""Generation pipelines on top of `studio.models`."""

from studio.pipelines.guided_denoiser import GuidedDenoiser
from studio.pipelines.inpainting_mask import InpaintingMask
from studio.pipelines.sampling_loop import SamplingLoop
from studio.pipelines.text_to_image_pipeline import GeneratedImages, TextToImagePipeline
