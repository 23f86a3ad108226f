"""Images on disk (PNGs with A1111-style generation parameters) and labelled image grids."""

from studio.images.concept_reference import ConceptReference
from studio.images.generation_parameters import GenerationParameters
from studio.images.png_io import read_parameters, save_png
from studio.images.next_image_index import next_image_index
