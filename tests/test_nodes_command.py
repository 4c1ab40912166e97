"""`snncompile nodes`: the node-type x stage matrix comes from the stage tables themselves."""
import json

from snncompile.cli import main
from snncompile.ir.nodes import NODE_TYPES
from snncompile.ir.registry import ALL_TABLES, Rules, support_matrix


def test_matrix_is_the_tables(capsys):
    assert main(["nodes", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == support_matrix()
    for stage, names in shown.items():
        assert names == [t.__name__ for t in ALL_TABLES[stage].types]
    # the pipeline's own stages are all there
    for stage in ("float evaluation", "quantisation", "mapping", "integer reference",
                  "simulator", "Lava lowering", "energy counts"):
        assert stage in shown


def test_text_has_a_row_per_node_type_and_a_column_per_stage(capsys):
    assert main(["nodes"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[2:] for line in out[3:]}
    assert set(rows) == set(NODE_TYPES)
    stages = list(support_matrix())
    sim = stages.index("simulator")
    assert rows["FxLIF"][sim] == "x" and rows["Dense"][sim] == "."


def test_every_stage_table_is_in_the_matrix():
    """Every `Rules(...)` table in the package is defined in a module the matrix imports, so
    the matrix does not depend on what happened to be imported before."""
    import re
    from pathlib import Path

    from snncompile.ir.registry import STAGE_MODULES
    root = Path(__file__).resolve().parent.parent
    for path in (root / "snncompile").rglob("*.py"):
        if path.name == "registry.py":
            continue
        if re.search(r"^\w+ = Rules\(", path.read_text(), re.M):
            mod = ".".join(path.relative_to(root).with_suffix("").parts)
            assert mod in STAGE_MODULES, f"{mod} defines a Rules table"
    assert set(support_matrix()) == {t.stage for t in ALL_TABLES.values()
                                     if t.module in STAGE_MODULES}


def test_a_table_outside_the_stage_modules_is_not_shown():
    t = Rules("test-only stage")
    try:
        t.register(NODE_TYPES["FxLIF"])(lambda *a: None)
        assert "test-only stage" not in support_matrix()
    finally:
        del ALL_TABLES["test-only stage"]


def test_readme_matrix_is_current(capsys):
    """The README's matrix is this command's output (regenerate it when a rule is added)."""
    from pathlib import Path
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = text.split("printed by `snncompile nodes`", 1)[1].split("```\n", 2)[1]
    assert main(["nodes"]) == 0
    assert block.rstrip("\n") == capsys.readouterr().out.rstrip("\n")
