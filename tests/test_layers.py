"""The packages import one way: world -> engines -> runtime -> envs -> demos (the CLI on top).

Walks every module's imports (module level and the lazy ones inside functions) with `ast`,
so a violation fails here, not as an import circle someone trips over later.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("world", "engines", "runtime", "envs", "demos")  # each may import only those before it
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    # (importing module, imported module): the reason. None today; add one only with its reason.
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in the file; relative ones resolved."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            # `from pkg import mod` imports pkg.mod when mod is a module
            out.append((name, node.lineno))
            out += [(f"{name}.{a.name}", node.lineno) for a in node.names
                    if (ROOT / Path(*f"{name}.{a.name}".split("."))).with_suffix(".py").exists()]
    return out


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for layer in LAYERS for p in sorted((ROOT / layer).rglob("*.py"))}


def test_the_walk_sees_the_project():
    mods = project_modules()
    assert {"world.model", "engines.registry", "runtime.session", "envs.evaluate", "demos.cli"} <= set(mods)
    assert ("world.model", 9) in [(m, line) for m, line in imports_of(ROOT / "tests" / "test_world_model.py")]


@pytest.mark.parametrize("layer", LAYERS)
def test_no_package_imports_one_above_it(layer):
    above = LAYERS[LAYERS.index(layer) + 1 :]
    bad = []
    for name, path in project_modules().items():
        if name.split(".")[0] != layer:
            continue
        for target, line in imports_of(path):
            if target.split(".")[0] in above and (name, target) not in ALLOWED_UPWARD:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not bad, f"{layer} may import only {LAYERS[:LAYERS.index(layer)]}:\n" + "\n".join(bad)


def test_no_import_circle_inside_a_package():
    """A module graph without cycles (lazy imports included): e.g. the backends import the
    Backend interface, the registry imports the backends, never the other way round.
    A package's __init__ re-exporting its modules is not an edge into the package."""
    mods = project_modules()
    edges = {name: {t for t, _ in imports_of(path) if t in mods and t != name
                    and t.split(".")[0] == name.split(".")[0] and not mods[t].name == "__init__.py"}
             for name, path in mods.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in sorted(mods):
        if name not in state:
            visit(name, [name])
