"""Fixtures giving the tokenizer tests CLIP's real vocabulary file.

The file is read out of the `open-clip-torch` wheel (which ships it as
`open_clip/bpe_simple_vocab_16e6.txt.gz`): pip can reach the package
registry where GitHub, the file's usual origin, may be unreachable. The
wheel is downloaded once, never installed, and cached with the extracted
file under ~/.cache/keras-sd-studio-tests (or $KERAS_SD_STUDIO_TEST_CACHE).
Without network the tests that need it are skipped, or fail when the
environment variable CI is set.
"""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from studio.files.atomic_write import write_file_atomically
from studio.tokenizers import CLIPTokenizer
from studio.tokenizers import load_clip_vocabulary

VOCABULARY_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
WHEEL_MEMBER = f"open_clip/{VOCABULARY_FILENAME}"
PIP_TIMEOUT_S = 300


def _cache_folder():
    default = Path.home() / ".cache" / "keras-sd-studio-tests"
    return Path(os.environ.get("KERAS_SD_STUDIO_TEST_CACHE", default)) / "open-clip-torch"


def _unavailable(reason):
    if os.environ.get("CI"):
        pytest.fail(f"CLIP's vocabulary file is needed on CI: {reason}")
    pytest.skip(f"CLIP's vocabulary file is unavailable: {reason}")


def _download_wheel(folder):
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--quiet", "--disable-pip-version-check", "open-clip-torch", "-d", str(folder),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        _unavailable(f"`{' '.join(command)}` failed: {error}")
    wheels = sorted(folder.glob("open_clip_torch-*.whl"))
    if result.returncode != 0 or not wheels:
        _unavailable(f"`{' '.join(command)}` failed: {result.stderr[-1000:]}")
    return wheels[-1]


@pytest.fixture(scope="session")
def clip_vocabulary_file():
    """Path of CLIP's bpe_simple_vocab_16e6.txt.gz, as shipped in open-clip-torch."""
    folder = _cache_folder()
    target = folder / VOCABULARY_FILENAME
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    wheels = sorted(folder.glob("open_clip_torch-*.whl")) or [_download_wheel(folder)]
    try:
        with zipfile.ZipFile(wheels[-1]) as wheel:
            data = wheel.read(WHEEL_MEMBER)
    except (zipfile.BadZipFile, KeyError) as error:
        wheels[-1].unlink()  # A broken download is fetched again next time.
        _unavailable(f"cannot read {WHEEL_MEMBER} from {wheels[-1]}: {error}")
    # Test sessions running at once never see half a file.
    write_file_atomically(target, data)
    return target


@pytest.fixture(scope="session")
def clip_vocabulary(clip_vocabulary_file):
    """CLIP's (vocabulary, merges), read once per session."""
    return load_clip_vocabulary(clip_vocabulary_file)


@pytest.fixture
def clip_tokenizer(clip_vocabulary):
    """A fresh CLIP tokenizer (tests add placeholders to it)."""
    vocabulary, merges = clip_vocabulary
    return CLIPTokenizer(vocabulary, merges)
