"""Data flows one way: no module of structgs imports a layer above its own (function-level
imports included)."""

import ast
from pathlib import Path

import structgs

# lowest first; a package may import its own layer and any below it
LAYERS = [
    {"__init__", "utils"},  # the package's __init__ holds only its version
    {"scene"},
    {"render"},
    {"decoder", "data"},
    {"model"},
    {"training", "masks"},
    {"shaping"},
    {"edit"},
    {"eval"},
    {"pipeline"},
    {"viewer"},
    {"cli", "cli_options"},
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def test_the_package_init_imports_nothing():
    assert not [m for _, m in _imports(Path(structgs.__file__))]


def test_no_module_imports_a_layer_above_it():
    root = Path(structgs.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) > 40
    upward, unranked = [], []
    for path in files:
        rel = path.relative_to(root.parent).with_suffix("")
        own = rel.parts[1] if len(rel.parts) > 2 else rel.parts[1].removesuffix(".py")
        if own not in RANK:
            unranked.append(str(rel))
            continue
        for line, module in _imports(path):
            if module.split(".")[0] != "structgs":
                continue
            target = _package(module)
            if target not in RANK:
                unranked.append(f"{rel}:{line} imports {module}")
            elif RANK[target] > RANK[own]:
                upward.append(f"{rel}:{line} ({own}) imports {module} ({target})")
    assert not unranked, unranked
    assert not upward, "\n".join(upward)


def test_the_method_references_in_the_code_resolve():
    """Every ``docs/method.md §N`` the code cites is a section of docs/method.md in the repository."""
    import re

    root = Path(structgs.__file__).parent
    method = (root.parent / "docs" / "method.md").read_text()
    sections = set(re.findall(r"^## §(\d+)", method, flags=re.M))
    cited = {}
    for path in root.rglob("*.py"):
        for a, b in re.findall(r"docs/method\.md §(\d+)(?:-(\d+))?", path.read_text()):
            for n in range(int(a), int(b or a) + 1):
                cited.setdefault(str(n), []).append(path.name)
    assert len(cited) >= 4 and sections >= {"1", "2", "3", "4", "5"}
    assert not set(cited) - sections, {n: cited[n] for n in set(cited) - sections}
    assert "METHOD.md" not in "".join(p.read_text() for p in root.rglob("*.py"))
