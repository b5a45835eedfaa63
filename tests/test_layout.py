"""The package layout stays readable: imports flow one way along the data flow, and no module grows past 500 lines.

Plain Python over ``ast``: every ``import`` and ``from … import`` in the product's code (top-level and inside
functions) is read, resolved to a layer, and compared with the importing module's own layer.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module may import from its own layer and from any layer before it, never from a later one.
# `models` is the base; the stage packages of needlecare/ follow the data flow; the flows orchestrate the
# stages; the web app and the CLI sit on top.
LAYERS: tuple[str, ...] = (
    "models",
    "needlecare.core",
    "needlecare.intake",
    "needlecare.followup",
    "needlecare.safety",
    "needlecare.surveys",
    "needlecare.outcomes",
    "needlecare.staff",
    "needlecare.demo",
    "needlecare.dev",
    "flows",
    "needlecare.web",
    "needlecare.cli",
)
# Frameworks the base layer and the pure rule modules must not pull in (architecture: models hold tables and
# contracts, the rules are evaluated anywhere, including tests, without a server).
FRAMEWORKS = ("prefect", "fastapi", "apprise", "starlette", "uvicorn")
FRAMEWORK_FREE = ("models", "needlecare.safety.rules", "needlecare.followup.questions", "needlecare.outcomes.stats")
MAX_LINES = 500
TOP_LEVEL_ALLOWED = {"__init__.py"}


def product_modules() -> Iterator[Path]:
    for top in ("models", "needlecare", "flows"):
        yield from sorted((ROOT / top).rglob("*.py"))


def dotted(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    """The longest layer name that is the module itself or a package above it."""
    matches = [layer for layer in LAYERS if module == layer or module.startswith(layer + ".")]
    return max(matches, key=len) if matches else None


def imports_in(source: str, module: str, *, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, dotted name) for every import in ``source``, the code of ``module``; relative imports resolved."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:  # `from needlecare.outcomes import stats` imports a module
                yield node.lineno, f"{base}.{alias.name}"


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    return imports_in(path.read_text(), dotted(path), is_package=path.name == "__init__.py")


def upward_imports(module: str, source: str, *, is_package: bool = False) -> list[str]:
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    own = layer_of(module)
    if own is None:
        return []
    found = []
    for lineno, target in imports_in(source, module, is_package=is_package):
        other = layer_of(target)
        if other is not None and rank[other] > rank[own]:
            found.append(f"{module}:{lineno} ({own}) imports {target} ({other})")
    return found


def test_every_product_module_has_a_layer() -> None:
    homeless = [dotted(p) for p in product_modules() if layer_of(dotted(p)) is None and dotted(p) != "needlecare"]
    assert homeless == [], f"place these in a package listed in LAYERS ({__file__}): {homeless}"


def test_needlecare_keeps_only_packages_at_its_top() -> None:
    loose = sorted(p.name for p in (ROOT / "needlecare").glob("*.py") if p.name not in TOP_LEVEL_ALLOWED)
    assert loose == [], f"modules directly under needlecare/ belong in a stage package: {loose}"


def test_every_package_says_what_it_owns() -> None:
    for init in sorted((ROOT / "needlecare").glob("*/**/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc.split()) >= 12, f"{init.relative_to(ROOT)}: say what the package owns and may import"
        assert "import" in doc, f"{init.relative_to(ROOT)}: the docstring names what the package may import"


def test_imports_flow_one_way() -> None:
    upward = [
        line
        for path in product_modules()
        for line in upward_imports(dotted(path), path.read_text(), is_package=path.name == "__init__.py")
    ]
    assert upward == [], "imports must point down the layers:\n" + "\n".join(sorted(set(upward)))


@pytest.mark.parametrize("module", FRAMEWORK_FREE)
def test_base_and_pure_rules_import_no_framework(module: str) -> None:
    paths = [p for p in product_modules() if dotted(p) == module or dotted(p).startswith(module + ".")]
    assert paths, f"{module} not found"
    found = [
        f"{p.relative_to(ROOT)}:{lineno} imports {target}"
        for p in paths
        for lineno, target in imported_modules(p)
        if target.split(".")[0] in FRAMEWORKS
    ]
    assert found == []


def test_no_module_passes_500_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n for p in product_modules() if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these along their seams (at most {MAX_LINES} lines): {long}"


def test_the_layering_check_sees_an_upward_import() -> None:
    """The checker itself: later stages imported from an earlier one are reported, in every import form."""
    source = (
        "from needlecare.outcomes import reports\n"
        "import needlecare.web.app\n"
        "def f():\n    from needlecare.safety.rules import get_rules\n"
        "from ..intake import ingest\n"
    )
    found = upward_imports("needlecare.followup.outbox", source)
    assert [line.split(" imports ")[1].split(" ")[0] for line in found] == [
        "needlecare.outcomes",
        "needlecare.outcomes.reports",
        "needlecare.web.app",
        "needlecare.safety.rules",
        "needlecare.safety.rules.get_rules",
    ]
    assert upward_imports("needlecare.outcomes.reports", "from needlecare.core import clock\nimport models\n") == []
    assert layer_of("needlecare.core") == "needlecare.core"
    assert layer_of("json") is None
