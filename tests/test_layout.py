"""The package map stays true (docs/architecture.md): imports go one way and jobs/ holds entry points.

    jobs      -> manifests, models, pipeline (and jobs' own subpackages)
    manifests -> pipeline
    pipeline  -> nothing of the project
    models    -> nothing of the project

Read from the source with ``ast`` (no import is executed), including imports inside functions.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "models", "manifests", "jobs")
ALLOWED = {
    "pipeline": {"pipeline"},
    "models": {"models"},
    "manifests": {"manifests", "pipeline"},
    "jobs": {"jobs", "manifests", "models", "pipeline"},
}
# jobs/ top level: one module per command-line stage; libraries live in subpackages
CLI_STAGES = {
    "build_manifest",
    "extract",
    "train",
    "evaluate",
    "preview",
    "make_demo_data",
    "demo",
    "export",
    "card",
    "versions",
}
CLI_IMPORTERS = {"bench"}  # benchmarks may call a stage's functions; stages never import each other


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) for every import in ``path`` that names one of the project's packages
    or the tests' helpers."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            names = names[:1] if node.module.split(".")[0] not in PACKAGES else names
        elif isinstance(node, ast.ImportFrom):  # relative: resolve against the module's own package
            pkg = list(path.relative_to(ROOT).parent.parts) if path.is_relative_to(ROOT) else [path.parent.name]
            base = pkg[: len(pkg) - node.level + 1]
            names = [".".join(base + ([node.module] if node.module else []))]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES + ("tests", "fixtures", "videoutil"):
                found.append((node.lineno, name))
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_go_one_way(package):
    bad = []
    for path in modules(package):
        for line, name in project_imports(path):
            if name.split(".")[0] not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, f"{package} may import only {sorted(ALLOWED[package])}:\n" + "\n".join(bad)


def test_jobs_top_level_is_cli_stages_only():
    top = {p.stem for p in (ROOT / "jobs").glob("*.py")} - {"__init__"}
    assert top == CLI_STAGES, f"jobs/ top level must hold only the CLI stages; found {sorted(top ^ CLI_STAGES)}"
    for stage in CLI_STAGES:
        src = (ROOT / "jobs" / f"{stage}.py").read_text()
        assert "def main(" in src and '__name__ == "__main__"' in src, f"jobs/{stage}.py is not a CLI stage"


# what a CLI module may define at its top level: argument parsing and checks, main; the work is a library's
CLI_DEFS = {"main", "build_parser", "check_args", "config_from_args", "_kv", "_value"}


def test_extract_stays_a_cli():
    """jobs/extract.py parses and checks its arguments and calls the driver (jobs.extraction.driver): no Ray,
    no class, no function beyond the command line's."""
    path = ROOT / "jobs" / "extract.py"
    tree = ast.parse(path.read_text())
    defs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert defs <= CLI_DEFS, f"jobs/extract.py defines more than a CLI: {sorted(defs - CLI_DEFS)}"
    assert not any(isinstance(n, ast.ClassDef) for n in tree.body)
    names = [n for _, n in project_imports(path)]
    assert "jobs.extraction.driver" in names
    raw = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    raw += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    assert not [m for m in raw if m.split(".")[0] == "ray"], "jobs/extract.py imports Ray"


def test_production_code_reads_no_test_hooks_from_the_environment():
    """Test hooks are injected (parameters, fixtures, test-only modules): no production module names an
    environment variable meant for tests."""
    hook = re.compile(r"ASYM3D_(TEST|FLOW_STALL)")  # the two hooks production code used to read
    bad = [f"{p.relative_to(ROOT)}" for pkg in PACKAGES for p in modules(pkg) if hook.search(p.read_text())]
    assert not bad, bad


def test_stages_do_not_import_each_other():
    bad = []
    for path in modules("jobs"):
        rel = path.relative_to(ROOT / "jobs")
        if rel.parts[0] in CLI_IMPORTERS:
            continue
        for line, name in project_imports(path):
            parts = name.split(".")
            if len(parts) > 1 and parts[0] == "jobs" and parts[1] in CLI_STAGES and parts[1] != path.stem:
                bad.append(f"jobs/{rel}:{line} imports {name}")
    assert not bad, "a CLI stage (or a jobs library) imports a CLI stage:\n" + "\n".join(bad)


def test_the_checker_sees_violations(tmp_path):
    """The reader finds module-level, function-level and from-imports (so the rules above can fail)."""
    f = tmp_path / "x.py"
    f.write_text(
        "import os\nfrom manifests.shards import load_shards\n\ndef f():\n    import jobs.train\n"
        "    from pipeline import flow\n"
    )
    names = [n for _, n in project_imports(f)]
    assert "manifests.shards" in names and "jobs.train" in names and "pipeline" in names
    rel = ROOT / "models" / "layers.py"  # a relative import resolves to the module's own package
    assert ast.parse("from .specs import X").body[0].level == 1 and rel.exists()
    assert not any(n.startswith("os") for n in names)
