"""The package reads as the pipeline: no import cycles, no reaching into another module's private names, small modules."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "depthscope"
MAX_LINES = 400


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict) -> list[tuple[str, list[str], bool]]:
    """(imported module, names, at module level) for every import of a depthscope module in `path`."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [a.name for a in node.names]
            for n in names:  # `from depthscope.cost import rules` imports the submodule
                if f"{module}.{n}" in known:
                    out.append((f"{module}.{n}", [], id(node) in top_level))
            out.append((module, names, id(node) in top_level))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], id(node) in top_level) for a in node.names]
    return [(m, names, top) for m, names, top in out if m in known]


def test_no_import_cycles_inside_the_package():
    """A cycle through module-level or function-level imports between depthscope's modules fails."""
    known = modules()
    graph = {name: {m for m, _, _ in imports(name, path, known) if m != name} for name, path in known.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            # importing a.b runs a/__init__ first: that edge is implied, not a cycle of ours
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_imports_another_modules_private_names():
    known = modules()
    offenders = []
    for name, path in known.items():
        for module, names, _ in imports(name, path, known):
            if module == name:
                continue
            offenders += [f"{name}: from {module} import {n}" for n in names if n.startswith("_") and n != "__version__"]
    assert not offenders, "\n".join(offenders)


def test_modules_stay_small():
    too_long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def test_every_module_is_in_the_architecture_doc():
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    missing = [name for name, path in modules().items() if path.name != "__main__.py" and f"`{name}`" not in doc]
    assert not missing, f"modules not listed in docs/architecture.md: {missing}"
