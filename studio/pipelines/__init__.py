"""Generation pipelines on top of `studio.models`."""

from studio.pipelines.generation_runner import GenerationRunner
from studio.pipelines.generation_settings import GenerationSettings
from studio.pipelines.guided_denoiser import GuidedDenoiser
from studio.pipelines.inpainting_mask import InpaintingMask
from studio.pipelines.latent_decoder import LatentDecoder
from studio.pipelines.sampling_loop import SamplingLoop
from studio.pipelines.settings_from_parameters import settings_from_parameters
from studio.pipelines.text_to_image_pipeline import GeneratedImages, TextToImagePipeline
