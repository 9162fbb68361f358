"""Arithmetic expressions over band names, parsed safely (no ``eval``).

A user defines an index in YAML, e.g. ``gndvi: "(nir - green) / (nir + green)"``. The text is
parsed with :mod:`ast` and only numbers, names, ``+ - * / **`` and unary minus/plus are
accepted; anything else (calls, attributes, subscripts, comparisons) is refused with a
message naming the expression. Evaluation is plain numpy on float64 arrays: a division by
zero or an overflow gives NaN/inf, which the caller turns into nodata.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from deepgeo_runner.core.errors import ConfigError

_BINARY: dict[type, Callable] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable] = {ast.USub: operator.neg, ast.UAdd: operator.pos}


@dataclass(frozen=True)
class Expression:
    """A parsed expression and the names it reads."""

    text: str
    tree: ast.Expression
    names: tuple[str, ...]

    def evaluate(self, values: Mapping[str, np.ndarray | float]) -> np.ndarray:
        """Evaluate with ``values`` (name → array or number) in float64."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.asarray(_eval(self.tree.body, values), dtype=np.float64)


def parse_expression(text: str, where: str = "preprocessing.expressions") -> Expression:
    """Parse and check an expression; raise :class:`ConfigError` naming ``where`` if unsafe."""
    try:
        tree = ast.parse(str(text).strip(), mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"{where}: cannot parse '{text}': {exc.msg}.") from exc
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in names:
                names.append(node.id)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise ConfigError(
                    f"{where}: '{text}' holds the constant {node.value!r}; only numbers are allowed."
                )
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise ConfigError(f"{where}: '{text}' uses an operator outside + - * / **.")
        elif isinstance(node, ast.UnaryOp):
            if type(node.op) not in _UNARY:
                raise ConfigError(f"{where}: '{text}' uses a unary operator other than - or +.")
        elif not isinstance(node, ast.Expression | ast.Load | ast.operator | ast.unaryop):
            raise ConfigError(
                f"{where}: '{text}' contains a {type(node).__name__}; only numbers, band names, "
                "parentheses and + - * / ** are allowed."
            )
    return Expression(str(text), tree, tuple(names))


def _eval(node: ast.AST, values: Mapping[str, np.ndarray | float]):
    if isinstance(node, ast.Constant):
        return np.float64(node.value)  # numpy semantics: 1 / 0 → inf, not ZeroDivisionError
    if isinstance(node, ast.Name):
        return np.asarray(values[node.id], dtype=np.float64)
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, values), _eval(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, values))
    raise ConfigError(f"unsupported expression node {type(node).__name__}")  # parse_expression refuses these
