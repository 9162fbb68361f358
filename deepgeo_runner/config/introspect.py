"""What a ``_target_`` accepts, read from source files without importing them.

Config validation runs before torch is imported (importing segmentation-models-pytorch or
Lightning costs seconds). The names it checks — our model and loss classes and their
parameters, smp's architectures and encoders, the Lightning Trainer's arguments — are plain
literals in those packages' sources, so they are read with :mod:`ast` in milliseconds. Every
function here returns None when the source does not have the expected shape (another
version of a package): the check is then skipped, or confirmed by importing the package,
never failed on a guess.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

# smp.encoders.get_encoder turns these deprecated 'timm-' names into timm-universal ('tu-') ones
SMP_TIMM_UNIVERSAL_PREFIXES = ("timm-regnet", "timm-res2", "timm-resnest", "timm-mobilenetv3", "timm-gernet")


def module_file(module: str) -> Path | None:
    """The source file of ``module``, located without importing it or its parent packages."""
    parts = module.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level lookup executes nothing
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if len(parts) == 1:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    if not spec.submodule_search_locations:
        return None
    base = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _tree(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module of a (possibly relative) ``from X import`` inside ``module``."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def _find(module: str, name: str, depth: int = 4) -> tuple[str, ast.ClassDef | ast.FunctionDef] | None:
    path = module_file(module)
    tree = _tree(path) if path else None
    if tree is None or depth < 0:
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == name:
            return module, node
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return _find(_absolute(module, path, node), alias.name, depth - 1)
    return None


def find_definition(module: str, name: str) -> ast.ClassDef | ast.FunctionDef | None:
    """The class or function ``name`` of ``module``, following ``from ... import`` re-exports."""
    found = _find(module, name)
    return found[1] if found else None


def public_names(module: str) -> list[str] | None:
    """``__all__`` of a module when it is a literal, else its top-level classes and functions."""
    path = module_file(module)
    tree = _tree(path) if path else None
    if tree is None:
        return None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
                and isinstance(node.value, ast.List | ast.Tuple)):
            return [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return [n.name for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef) and not n.name.startswith("_")]


@dataclass(frozen=True)
class Params:
    """The keyword arguments a callable takes by name, and whether it takes any (``**kwargs``)."""

    names: frozenset[str]
    any_keyword: bool


def params_of(module: str, name: str, depth: int = 4) -> Params | None:
    """Named parameters of function ``module.name``, or of class ``module.name``'s ``__init__``
    (its own, or the nearest base's found in source); None when they cannot be read.

    Names an ``__init__`` pops from its ``**kwargs`` (``kwargs.pop("old_name", ...)``) count as
    accepted: they are deprecated spellings the class still honours.
    """
    found = _find(module, name)
    if found is None or depth < 0:
        return None
    where, definition = found
    if isinstance(definition, ast.ClassDef):
        init = next((n for n in definition.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if init is None:  # inherited: from the first base defined in readable source
            base = definition.bases[0] if definition.bases else None
            return params_of(where, base.id, depth - 1) if isinstance(base, ast.Name) else None
        definition = init
    args = definition.args
    names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs} - {"self"}
    if args.kwarg is not None:
        for node in ast.walk(definition):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("pop", "get")
                    and getattr(node.func.value, "id", None) == args.kwarg.arg and node.args
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                names.add(node.args[0].value)
    return Params(frozenset(names), args.kwarg is not None)


def target_params(target: str) -> Params | None:
    """The parameters of ``module.attr`` (a ``_target_``), or None when they cannot be read."""
    module, _, name = target.rpartition(".")
    return params_of(module, name) if module else None


# --------------------------------------------------------------------------- third-party tables


def _literal_list(module: str, variable: str) -> list[str] | None:
    path = module_file(module)
    tree = _tree(path) if path else None
    for node in tree.body if tree else []:
        if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == variable for t in node.targets)
                and isinstance(node.value, ast.List | ast.Tuple)):
            return [e.id for e in node.value.elts if isinstance(e, ast.Name)]
    return None


@functools.cache
def smp_architectures() -> tuple[str, ...] | None:
    """smp's architecture class names (``_MODEL_ARCHITECTURES`` in its ``__init__``)."""
    names = _literal_list("segmentation_models_pytorch", "_MODEL_ARCHITECTURES")
    return tuple(names) if names else None


@functools.cache
def smp_encoders() -> frozenset[str] | None:
    """smp's encoder names: the keys of the ``*_encoders`` dict literals of its encoder modules."""
    init = module_file("segmentation_models_pytorch.encoders")
    if init is None:
        return None
    names: set[str] = set()
    for path in sorted(init.parent.glob("*.py")):
        for node in (_tree(path).body if _tree(path) else []):
            if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id.endswith("_encoders") and isinstance(node.value, ast.Dict)):
                names |= {k.value for k in node.value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return frozenset(names) or None


def smp_encoders_imported() -> frozenset[str]:
    """smp's encoder names by importing it (seconds: torch): confirms before refusing a name."""
    from segmentation_models_pytorch.encoders import encoders

    return frozenset(encoders)


def smp_architecture_params(arch: str) -> Params | None:
    """The ``__init__`` parameters of smp's architecture ``arch`` (any case)."""
    for name in smp_architectures() or ():
        if name.lower() == arch.lower():
            return params_of("segmentation_models_pytorch", name)
    return None


TRAINER_SOURCES = {
    "lightning.pytorch.Trainer": "lightning.pytorch.trainer.trainer",
    "lightning.Trainer": "lightning.pytorch.trainer.trainer",
    "lightning.pytorch.trainer.trainer.Trainer": "lightning.pytorch.trainer.trainer",
    "pytorch_lightning.Trainer": "pytorch_lightning.trainer.trainer",
    "pytorch_lightning.trainer.trainer.Trainer": "pytorch_lightning.trainer.trainer",
}


def trainer_params(target: str) -> Params | None:
    """The Lightning Trainer's ``__init__`` arguments, when ``target`` names that Trainer."""
    module = TRAINER_SOURCES.get(target)
    return params_of(module, "Trainer") if module else None


_REGISTERED = re.compile(r"^@(?:\w+\.)?register_model\b[^\n]*\n(?:@[^\n]*\n)*def (\w+)", re.M)


@functools.cache
def timm_models() -> frozenset[str] | None:
    """timm's model names: the functions decorated ``@register_model`` in ``timm/models/*.py``
    (found by a regular expression: parsing timm's large sources would take seconds)."""
    init = module_file("timm.models")
    if init is None:
        return None
    names: set[str] = set()
    for path in sorted(init.parent.glob("*.py")):
        names.update(_REGISTERED.findall(path.read_text(encoding="utf-8", errors="replace")))
    return frozenset(names) or None


def timm_models_imported() -> frozenset[str]:
    """timm's model names by importing it (seconds: torch): confirms before refusing a name."""
    import timm

    return frozenset(timm.list_models())
