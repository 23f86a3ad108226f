"""Benchmark: throughput of the concept pipeline, with and without the latent cache.

Measures, side by side in one run on the same folder:

- images/s the pipeline delivers on its own (augmenting images on the fly,
  or reading cached VAE moments);
- the share of a training step spent waiting for data, with the step
  simulated by a sleep of `--step-seconds` (a GPU step leaves the CPU, and
  Python's lock, to the input threads just as a sleep does).

The goal: at batch 8, 512 px, on 2 CPU cores, with the cache on, the
accelerator never waits (a wait share near 0). Use `--cpu-cores` to pin the
run to that many cores. Timings are only compared within one run.

    python benchmarks/dataset_pipeline.py --resolution 512 --batch-size 8 --cpu-cores 2

The encoder behind the cache is a stand-in (8x8 average pooling) by default:
the cache is built once, before timing. `--encoder vae` uses a randomly
initialised full-size VAE encoder instead, to time that one-off cost too.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

WARMUP_BATCHES = 3
LATENT_CHANNELS = 4


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", default=None,
                        help="a folder of images (default: generated photos)")
    parser.add_argument("--images", type=int, default=16,
                        help="generated photos when no --folder (default: 16)")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=40, help="batches timed per measure")
    parser.add_argument("--step-seconds", type=float, default=0.2,
                        help="simulated training step (default: 0.2 s, an SD 1.x UNet "
                        "step at batch 8 on a recent GPU)")
    parser.add_argument("--variants", type=int, default=8, help="cached variants per image")
    parser.add_argument("--cpu-cores", type=int, default=None,
                        help="pin the process to this many cores (Linux)")
    parser.add_argument("--encoder", choices=("pool", "vae"), default="pool",
                        help="encoder behind the cache (default: a pooling stand-in)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def pool_encoder(images):
    """Stand-in VAE encoder: 8x8 average pooling to moments (mean, log-variance)."""
    images = np.asarray(images)
    batch, height, width, _ = images.shape
    pooled = images.reshape(batch, height // 8, 8, width // 8, 8, 3).mean(axis=(2, 4))
    mean = np.concatenate([pooled, pooled.mean(-1, keepdims=True)], -1)
    return np.concatenate([mean, np.zeros_like(mean)], -1).astype(np.float32)


def vae_encoder():
    from studio.models.vae_encoder import VAEEncoder

    # SD 1.x/2.x sizes; random weights time the same as trained ones.
    return VAEEncoder(block_channels=(128, 256, 512, 512), layers_per_block=2)


def write_photos(folder, count, seed=0):
    """Phone-like JPEGs (4:3, both orientations) of smooth random content."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for index in range(count):
        low = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(low).resize((1024, 768), Image.Resampling.BICUBIC)
        if index % 3 == 0:
            image = image.transpose(Image.Transpose.ROTATE_90)
        image.save(os.path.join(folder, f"photo {index:02d}.jpg"), quality=90)


def throughput(dataset, batches, batch_size):
    """Images per second the pipeline delivers with nothing else running."""
    iterator = iter(dataset)
    for _ in range(WARMUP_BATCHES):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def wait_share(dataset, batches, step_seconds):
    """Share of wall time spent in `next()` while steps of `step_seconds` run."""
    iterator = iter(dataset)
    for _ in range(WARMUP_BATCHES):
        next(iterator)
        time.sleep(step_seconds)
    waited = 0.0
    start = time.perf_counter()
    for _ in range(batches):
        before = time.perf_counter()
        next(iterator)
        waited += time.perf_counter() - before
        time.sleep(step_seconds)
    return waited / (time.perf_counter() - start)


def main(argv=None):
    args = parse_args(argv)
    if args.cpu_cores:
        # Before TensorFlow starts its thread pools.
        os.sched_setaffinity(0, range(args.cpu_cores))

    from studio.datasets import ConceptDataset, ImageFolder, LatentCache
    from studio.tokenizers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as scratch:
        folder_path = args.folder
        if folder_path is None:
            folder_path = os.path.join(scratch, "photos")
            os.makedirs(folder_path)
            write_photos(folder_path, args.images)
        tokenizer = CLIPTokenizer.byte_level()
        tokenizer.add_placeholder_tokens("<concept>")

        start = time.perf_counter()
        folder = ImageFolder(folder_path, resolution=args.resolution)
        read_seconds = time.perf_counter() - start

        plain = ConceptDataset(folder, tokenizer, "<concept>")
        encoder = pool_encoder if args.encoder == "pool" else vae_encoder()
        cache = LatentCache(
            encoder, f"benchmark-{args.encoder}", os.path.join(scratch, "cache"), args.variants
        )
        start = time.perf_counter()
        cached = ConceptDataset(folder, tokenizer, "<concept>", latent_cache=cache)
        cache_seconds = time.perf_counter() - start

        results = {
            "images": len(folder),
            "resolution": args.resolution,
            "batch_size": args.batch_size,
            "cpu_cores": len(os.sched_getaffinity(0)),
            "step_seconds": args.step_seconds,
            "read_folder_seconds": round(read_seconds, 3),
            "build_cache_seconds": round(cache_seconds, 3),
            "encoder": args.encoder,
        }
        for name, dataset in (("no_cache", plain), ("cache", cached)):
            pipeline = dataset.build(args.batch_size, seed=0)
            results[f"{name}_images_per_second"] = round(
                throughput(pipeline, args.batches, args.batch_size), 1
            )
            pipeline = dataset.build(args.batch_size, seed=0)
            results[f"{name}_wait_share"] = round(
                wait_share(pipeline, args.batches, args.step_seconds), 4
            )
        results["cache_speedup"] = round(
            results["cache_images_per_second"] / results["no_cache_images_per_second"], 1
        )

    if args.json:
        print(json.dumps(results))
    else:
        width = max(len(key) for key in results)
        for key, value in results.items():
            print(f"{key.ljust(width)}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
