"""The distribution installs one import package, `studio`, and nothing else."""

import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(out), ROOT],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("*.whl")
    return zipfile.ZipFile(path)


def test_top_level_is_studio_alone(wheel):
    (top_level,) = [n for n in wheel.namelist() if n.endswith("top_level.txt")]
    assert wheel.read(top_level).decode().split() == ["studio"]


def test_mapped_folders_are_inside_studio(wheel):
    names = wheel.namelist()
    for package in ("trainers", "datasets", "prompts"):
        assert f"studio/{package}/__init__.py" in names
        assert not any(n.startswith(f"{package}/") for n in names)


def test_every_source_module_and_data_file_is_packaged(wheel):
    names = set(wheel.namelist())
    for folder, package in (("studio", "studio"), ("trainers", "studio/trainers"),
                            ("datasets", "studio/datasets"), ("prompts", "studio/prompts")):
        for directory, _, files in os.walk(os.path.join(ROOT, folder)):
            if "__pycache__" in directory:
                continue
            relative = os.path.relpath(directory, os.path.join(ROOT, folder))
            for name in files:
                # Source and the package data it reads (vocabularies, shipped weights).
                if name.endswith((".py", ".txt", ".txt.gz", ".json", ".weights.h5")):
                    member = os.path.normpath(os.path.join(package, relative, name))
                    assert member in names, f"{member} is missing from the wheel"


def test_console_script(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    assert "studio = studio.cli.main:main" in wheel.read(entry_points).decode()
