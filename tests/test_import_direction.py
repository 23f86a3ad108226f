"""Imports between the studio's packages go one way, and no two packages import each other.

The packages sit in layers; a package may import packages of its own or a
lower layer, never of a higher one (docs/ARCHITECTURE.md):

    0  studio's root modules (studio, studio.__main__, studio.errors), studio.files,
       studio.tensor_files, studio.tokenizers, studio.schedulers,
       studio.images, studio.prompts, studio.pretrained
    1  studio.models
    2  studio.interop, studio.embeddings, studio.lora
    3  studio.pipelines, studio.datasets, studio.grids
    4  studio.trainers
    5  studio.evaluation
    6  studio.cli, studio.app

Packages of one layer may import each other, as long as no cycle forms;
but no package imports `studio.cli` (each command is a thin shell over
library functions, so nothing else needs a command module). The only
exception is `studio/__main__.py`, the `python -m studio` entry point,
which imports `studio.cli`.

The graph is read from the source with `ast`, so it sees every import,
also those inside functions (which run late, but still tie the packages
together), relative imports, and module names written as strings (lazy
export tables, `importlib.import_module("studio.x")`). The folders come
from pyproject.toml's `package-dir` (trainers/ is `studio.trainers`, ...).
A new package must be given a layer here before the test passes.
"""

import ast
import dataclasses
import os
import tomllib

import pytest

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LAYERS = (
    ("studio", "studio.__main__", "studio.errors", "studio.files", "studio.tensor_files",
     "studio.tokenizers", "studio.schedulers", "studio.images", "studio.prompts",
     "studio.pretrained"),
    ("studio.models",),
    ("studio.interop", "studio.embeddings", "studio.lora"),
    ("studio.pipelines", "studio.datasets", "studio.grids"),
    ("studio.trainers",),
    ("studio.evaluation",),
    ("studio.cli", "studio.app"),
)
# Packages that only entry points import: every command is a thin shell over
# library functions, so nothing else needs a command module.
IMPORTED_BY_NOTHING = ("studio.cli",)
# Entry-point modules -> the packages they may import whatever the rules say.
ENTRY_POINTS = {"studio.__main__": {"studio.cli"}}


@dataclasses.dataclass(frozen=True)
class ImportEdge:
    """One import of one module by another, where the source says it."""

    path: str  # the importing file, relative to the source tree
    line: int
    importer: str  # module names
    imported: str


def package_roots(pyproject):
    """The `package-dir` table of `pyproject`: dict package name -> folder (absolute)."""
    with open(pyproject, "rb") as file:
        table = tomllib.load(file)["tool"]["setuptools"]["package-dir"]
    base = os.path.dirname(os.path.abspath(pyproject))
    return {name: os.path.join(base, folder) for name, folder in table.items()}


def source_modules(roots):
    """Every module under `roots` (dict package name -> folder): dict name -> file path.

    A folder that is itself a root of another package (trainers/ inside no
    other root, but a nested `package-dir` entry would be) is left to it.
    """
    folders = {os.path.normpath(folder) for folder in roots.values()}
    modules = {}
    for package, folder in roots.items():
        for directory, subfolders, files in os.walk(folder):
            subfolders[:] = sorted(
                name for name in subfolders
                if name != "__pycache__"
                and os.path.normpath(os.path.join(directory, name)) not in folders
            )
            relative = os.path.relpath(directory, folder)
            prefix = package if relative == "." else package + "." + relative.replace(os.sep, ".")
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                stem = name[: -len(".py")]
                module = prefix if stem == "__init__" else f"{prefix}.{stem}"
                modules[module] = os.path.join(directory, name)
    return modules


def import_edges(roots):
    """Every import of a module of `roots` by a module of `roots`, as `ImportEdge`s.

    Imports inside functions and `if` blocks count; so does a string
    constant that is exactly the name of one of the modules (a lazy
    export table or an `importlib.import_module` argument).

    Raises:
        SyntaxError: a module cannot be parsed.
    """
    modules = source_modules(roots)
    common = os.path.commonpath([os.path.dirname(os.path.normpath(f)) for f in roots.values()])
    edges = set()
    for importer, path in modules.items():
        with open(path, encoding="utf-8") as file:
            tree = ast.parse(file.read(), filename=path)
        is_package = os.path.basename(path) == "__init__.py"
        here = importer if is_package else importer.rpartition(".")[0]
        for node in ast.walk(tree):
            for imported in _imported_names(node, here, modules):
                if imported in modules or _is_package_prefix(imported, modules):
                    edges.add(ImportEdge(os.path.relpath(path, common), node.lineno,
                                         importer, imported))
    return sorted(edges, key=lambda edge: (edge.path, edge.line, edge.imported))


def _imported_names(node, here, modules):
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            parts = here.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            source = f"{base}.{node.module}" if node.module else base
        else:
            source = node.module
        # `from studio import models` imports the module studio.models;
        # `from studio.models import X` imports from studio.models.
        return [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                for alias in node.names]
    # A dotted name only: the bare word "studio" is too common a string.
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value:
        return [node.value] if node.value in modules else []
    return []


def _is_package_prefix(name, modules):
    return any(module.startswith(name + ".") for module in modules)


def package_of(module):
    """The unit the rule speaks of: `studio.X` for a module inside package X, else the module.

    studio.trainers.run.callbacks.x -> studio.trainers; studio.errors (a
    root module) -> studio.errors; studio -> studio.
    """
    return ".".join(module.split(".")[:2])


def direction_problems(edges, layers=LAYERS, imported_by_nothing=IMPORTED_BY_NOTHING,
                       entry_points=ENTRY_POINTS):
    """What is wrong with `edges` under `layers`: one line per bad edge, then per cycle.

    Returns:
        A list of str, empty when every edge goes down or sideways and no
        packages import each other in a ring.
    """
    layer_of = {package: index for index, names in enumerate(layers) for package in names}
    problems = []
    between = {}  # (package, package) -> the first edge seen
    for edge in edges:
        source, target = package_of(edge.importer), package_of(edge.imported)
        if source == target:
            continue
        if target in entry_points.get(edge.importer, ()):
            continue
        where = f"{edge.path}:{edge.line}: {edge.importer} imports {edge.imported}"
        missing = [p for p in (source, target) if p not in layer_of]
        if missing:
            problems.append(f"{where}: {', '.join(missing)} has no layer; add it to LAYERS")
            continue
        if layer_of[target] > layer_of[source]:
            problems.append(
                f"{where}: {source} (layer {layer_of[source]}) must not import {target} "
                f"(layer {layer_of[target]}, higher)"
            )
        elif target in imported_by_nothing:
            problems.append(
                f"{where}: nothing imports {target} but {', '.join(sorted(entry_points))} "
                "(commands are thin shells; move what is shared into a library package)"
            )
        between.setdefault((source, target), edge)
    for cycle in _cycles({pair for pair in between}):
        steps = [between[(a, b)] for a, b in zip(cycle, cycle[1:] + cycle[:1])]
        problems.append(
            "import cycle " + " -> ".join(cycle + cycle[:1]) + ": "
            + "; ".join(f"{e.path}:{e.line} imports {e.imported}" for e in steps)
        )
    return problems


def _cycles(pairs):
    """One ring of packages per strongly connected group of more than one package."""
    graph = {}
    for source, target in pairs:
        graph.setdefault(source, set()).add(target)
        graph.setdefault(target, set())
    # Tarjan's strongly connected components, iteratively.
    index, low, on_stack, stack, groups, counter = {}, {}, set(), [], [], [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(group)
    return [_ring(sorted(group), graph) for group in groups]


def _ring(group, graph):
    """A closed path through `group`, starting at its first member (for the message)."""
    members = set(group)
    start = group[0]
    # Breadth-first from the start back to itself, inside the group.
    paths = {child: [start, child] for child in sorted(graph[start]) if child in members}
    while start not in paths:
        paths = {
            child: path + [child]
            for node, path in sorted(paths.items())
            for child in sorted(graph[node])
            if child in members and child not in path[1:]
        } or {start: [start, start]}
    return paths[start][:-1]


# --- The studio's own source ---------------------------------------------


def test_imports_go_down_the_layers_and_form_no_cycles():
    edges = import_edges(package_roots(os.path.join(REPOSITORY, "pyproject.toml")))
    assert len(edges) > 100, "the import graph is suspiciously small"
    problems = direction_problems(edges)
    assert not problems, "Imports against the direction of LAYERS:\n" + "\n".join(problems)


def test_every_package_has_a_layer():
    modules = source_modules(package_roots(os.path.join(REPOSITORY, "pyproject.toml")))
    layered = {package for names in LAYERS for package in names}
    packages = {package_of(module) for module in modules}
    assert not packages - layered, f"packages without a layer: {sorted(packages - layered)}"


# --- The checker itself, on small made-up trees ----------------------------


def write_tree(root, files):
    """Writes `files` (dict relative path -> source) under `root`; returns package roots.

    Like pyproject.toml: studio/ is `studio`, trainers/ is `studio.trainers`.
    """
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    roots = {"studio": str(root / "studio")}
    if (root / "trainers").exists():
        roots["studio.trainers"] = str(root / "trainers")
    return roots


PACKAGES = {
    f"studio/{name}/__init__.py": ""
    for name in ("models", "interop", "embeddings", "evaluation", "cli", "app")
}
PACKAGES.update({"studio/__init__.py": "", "trainers/__init__.py": ""})


def problems_of(tmp_path, files):
    return direction_problems(import_edges(write_tree(tmp_path, {**PACKAGES, **files})))


def test_a_tree_that_follows_the_layers_has_no_problems(tmp_path):
    assert problems_of(tmp_path, {
        "studio/__main__.py": "from studio.cli.main import main\n",
        "studio/cli/main.py": "from studio.trainers import train\n",
        "studio/app/page.py": "from ..trainers import train\nfrom studio.evaluation import score\n",
        "studio/interop/reader.py": (
            "from studio.models import Backbone\nimport studio.embeddings\n"),
        "studio/evaluation/score.py": "def score():\n    from studio.trainers import train\n",
        "trainers/train.py": "from .run import x\nfrom studio.interop import reader\n",
        "trainers/run.py": "x = 1\n",
    }) == []


def test_catches_models_and_interop_importing_each_other(tmp_path):
    # The historic cycle: StableDiffusionBackbone.from_preset dispatched to
    # the converters, from inside a function.
    problems = problems_of(tmp_path, {
        "studio/models/backbone.py": (
            "class Backbone:\n"
            "    def from_preset(self, source):\n"
            "        from studio.interop import import_model\n"
            "        return import_model(source)\n"
        ),
        "studio/interop/model_import.py": "from studio.models.backbone import Backbone\n",
    })
    assert problems[0] == (
        "studio/models/backbone.py:3: studio.models.backbone imports studio.interop: "
        "studio.models (layer 1) must not import studio.interop (layer 2, higher)"
    )
    assert problems[1].startswith("import cycle studio.interop -> studio.models -> studio.interop")
    assert len(problems) == 2


def test_catches_embeddings_and_trainers_importing_each_other(tmp_path):
    # The historic cycle: PlaceholderEmbedding lived in trainers/, and
    # generation (studio.embeddings) needed it.
    problems = problems_of(tmp_path, {
        "studio/embeddings/with_embeddings.py": (
            "from studio.trainers.placeholder_embedding import PlaceholderEmbedding\n"
        ),
        "trainers/placeholder_embedding.py": "class PlaceholderEmbedding:\n    pass\n",
        "trainers/textual_inversion.py": "from studio.embeddings import save_embedding\n",
    })
    assert problems[0] == (
        "studio/embeddings/with_embeddings.py:1: studio.embeddings.with_embeddings imports "
        "studio.trainers.placeholder_embedding: studio.embeddings (layer 2) must not import "
        "studio.trainers (layer 4, higher)"
    )
    assert problems[1].startswith(
        "import cycle studio.embeddings -> studio.trainers -> studio.embeddings")
    assert len(problems) == 2


def test_catches_trainers_and_evaluation_importing_each_other(tmp_path):
    # The historic cycle: a trainer's callback scored samples with the
    # evaluation package, which built trainers to evaluate them. The
    # evaluation's import is a string (a lazy export table).
    problems = problems_of(tmp_path, {
        "trainers/run/sample_scores.py": "from ...evaluation import concept_fidelity\n",
        "trainers/run/__init__.py": "",
        "studio/evaluation/__init__.py": "EXPORTS = {'train': 'studio.trainers.train'}\n",
        "trainers/train.py": "def train():\n    pass\n",
    })
    assert problems[0] == (
        "trainers/run/sample_scores.py:1: studio.trainers.run.sample_scores imports "
        "studio.evaluation: studio.trainers (layer 4) must not import studio.evaluation "
        "(layer 5, higher)"
    )
    assert problems[1].startswith(
        "import cycle studio.evaluation -> studio.trainers -> studio.evaluation")
    assert len(problems) == 2


def test_catches_a_cycle_between_siblings(tmp_path):
    problems = problems_of(tmp_path, {
        "studio/interop/names.py": "import studio.embeddings.files\n",
        "studio/embeddings/files.py": "if True:\n    from studio import interop\n",
    })
    assert problems == [
        "import cycle studio.embeddings -> studio.interop -> studio.embeddings: "
        "studio/embeddings/files.py:2 imports studio.interop; "
        "studio/interop/names.py:1 imports studio.embeddings.files"
    ]


def test_only_the_entry_point_may_skip_layers(tmp_path):
    problems = problems_of(tmp_path, {
        "studio/__main__.py": "from studio.cli.main import main\n",
        "studio/errors.py": "from studio.cli import main\n",
        "studio/new_thing/__init__.py": "",
        "studio/models/net.py": "import studio.new_thing\n",
    })
    assert problems == [
        "studio/errors.py:1: studio.errors imports studio.cli: studio.errors (layer 0) must "
        "not import studio.cli (layer 6, higher)",
        "studio/models/net.py:1: studio.models.net imports studio.new_thing: "
        "studio.new_thing has no layer; add it to LAYERS",
    ]


def test_nothing_but_the_entry_point_imports_the_cli(tmp_path):
    # The app's Generate page took `next_image_index` from a command module.
    problems = problems_of(tmp_path, {
        "studio/__main__.py": "from studio.cli.main import main\n",
        "studio/cli/generate_command.py": "def next_image_index(folder):\n    return 0\n",
        "studio/app/generate_page.py": (
            "def save(folder):\n"
            "    from studio.cli.generate_command import next_image_index\n"
        ),
    })
    assert problems == [
        "studio/app/generate_page.py:2: studio.app.generate_page imports "
        "studio.cli.generate_command: nothing imports studio.cli but studio.__main__ "
        "(commands are thin shells; move what is shared into a library package)"
    ]


@pytest.mark.parametrize("source", [
    "import studio.interop\n",
    "from studio import interop\n",
    "from studio.interop.names import TABLE\n",
    "from ..interop import names\n",
    "import importlib\nimportlib.import_module('studio.interop.names')\n",
])
def test_every_way_of_importing_counts(tmp_path, source):
    problems = problems_of(tmp_path, {
        "studio/interop/names.py": "TABLE = {}\n",
        "studio/models/net.py": source,
    })
    assert len(problems) == 1 and "studio.models (layer 1) must not import studio.interop" in (
        problems[0]), problems
