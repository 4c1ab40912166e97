"""Per-stage rule tables keyed on node type: the mechanism that keeps what a node type means
in one place per stage.

Every stage that treats node types differently (float evaluation, quantisation, the
simulator, the integer reference, the Lava lowering, mapping costs, energy counts, the
exporters) owns one `Rules` table, defined in the stage's own module, and registers one
rule per node type next to the code that implements it:

    REFERENCE = Rules("integer reference")

    @REFERENCE.register(FxDense)
    def _dense(node, ins, ctx):
        ...

A stage then asks the table (`REFERENCE.rule(node)(node, ins, ctx)`) instead of testing
the node's type, and the node types a stage supports are `REFERENCE.types`, never a list
typed by hand. A new node type is supported by a stage when, and only when, that stage's
module registers a rule for it; a stage that meets a node without a rule refuses it in one
line naming the node, its type, the stage and the types the stage does support.

Lookup follows the class hierarchy (a rule for `SumPool2d` also serves `AvgPool2d` unless
`AvgPool2d` has its own), so a subclass inherits what it does not override, unless the
stage `refuse`s the subclass (netx export and `FxConv1d`, a subclass of `FxConv2d`).
"""
from __future__ import annotations

from typing import Callable, Iterable, TypeVar

from ..errors import UnsupportedError

F = TypeVar("F", bound=Callable)

ALL_TABLES: dict[str, "Rules"] = {}
"""Every table by stage name, for the `inspect`-style overview of what is supported where."""


class Rules:
    """One stage's table: node type -> rule (any callable or object the stage defines)."""

    def __init__(self, stage: str):
        import sys
        self.stage = stage
        self.module = sys._getframe(1).f_globals.get("__name__", "")   # where it is defined
        self._rules: dict[type, object] = {}
        self._refused: set[type] = set()
        ALL_TABLES[stage] = self

    def register(self, *types: type) -> Callable[[F], F]:
        """Decorator: the decorated object is this stage's rule for every type in `types`."""
        if not types:
            raise TypeError("register() needs at least one node type")

        def deco(rule: F) -> F:
            for t in types:
                if t in self._rules:
                    raise TypeError(f"{self.stage}: {t.__name__} registered twice")
                self._rules[t] = rule
            return rule
        return deco

    def add(self, node_type: type, rule: object) -> None:
        """Register `rule` for `node_type` (when a decorator does not fit)."""
        self.register(node_type)(rule)

    def refuse(self, node_type: type) -> None:
        """This stage has no rule for `node_type` (and its subclasses), although a base
        class of it has one: it is refused like any type without a rule."""
        if node_type in self._rules:
            raise TypeError(f"{self.stage}: {node_type.__name__} has a rule; cannot refuse it")
        self._refused.add(node_type)

    def get(self, node_or_type, default=None):
        """The rule for this node (or node type), following the class hierarchy."""
        cls = node_or_type if isinstance(node_or_type, type) else type(node_or_type)
        for c in cls.__mro__:
            if c in self._refused:
                return default
            if c in self._rules:
                return self._rules[c]
        return default

    def rule(self, node):
        """The rule for `node`; UnsupportedError in one line when this stage has none."""
        found = self.get(node)
        if found is None:
            raise UnsupportedError(self.refusal(node))
        return found

    def supports(self, node_or_type) -> bool:
        return self.get(node_or_type) is not None

    @property
    def types(self) -> tuple[type, ...]:
        """The node types registered here, in registration order."""
        return tuple(self._rules)

    def names(self) -> str:
        return ", ".join(t.__name__ for t in self._rules)

    def refusal(self, node) -> str:
        name = getattr(node, "name", None)
        cls = node if isinstance(node, type) else type(node)
        where = f"{name}: " if name else ""
        return (f"{where}{cls.__name__} has no {self.stage} rule (supported: "
                f"{self.names()})")

    def check(self, nodes: Iterable) -> None:
        """Refuse, in one line, the first node this stage cannot handle."""
        for node in nodes:
            if not self.supports(node):
                raise UnsupportedError(self.refusal(node))

    def __repr__(self) -> str:
        return f"Rules({self.stage!r}: {self.names()})"


STAGE_MODULES = (   # the modules that define the stage tables, in pipeline order
    "snncompile.formats.nir.read", "snncompile.backends.float_model",
    "snncompile.passes.fold", "snncompile.passes.quantize", "snncompile.mapping.split",
    "snncompile.mapping.coproc_assign", "snncompile.backends.reference",
    "snncompile.backends.sim.simulator", "snncompile.backends.sim.kernels_plan",
    "snncompile.backends.lava.lower", "snncompile.verify.fidelity", "snncompile.energy.model",
    "snncompile.energy.sanafe_backend", "snncompile.formats.netx.write",
    "snncompile.formats.nir.write",
)


def support_matrix() -> dict[str, list[str]]:
    """{stage: node type names it has a rule for}, over every stage table (importing the
    modules that define them; none of them imports Lava)."""
    import importlib
    for mod in STAGE_MODULES:
        importlib.import_module(mod)
    rank = {m: i for i, m in enumerate(STAGE_MODULES)}
    tables = sorted((t for t in ALL_TABLES.values() if t.module in rank),  # not test tables
                    key=lambda t: rank[t.module])
    return {t.stage: [c.__name__ for c in t.types] for t in tables}


def support_table() -> str:
    """`support_matrix` as text: one row per node type, one column per stage."""
    from .nodes import NODE_TYPES
    matrix = support_matrix()
    stages = list(matrix)
    width = max(len(n) for n in NODE_TYPES)
    lines = ["stages: " + "; ".join(f"{i + 1} = {s}" for i, s in enumerate(stages)), "",
             f"{'node type':<{width}}  stage  " + " ".join(f"{i + 1:>2}"
                                                          for i in range(len(stages)))]
    for name, cls in NODE_TYPES.items():
        marks = " ".join(f"{'x' if ALL_TABLES[s].supports(cls) else '.':>2}"
                         for s in stages)
        lines.append(f"{name:<{width}}  {cls.stage:<5}  {marks}")
    return "\n".join(lines)
