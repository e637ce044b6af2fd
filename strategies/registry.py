"""The strategy registry: built-ins plus whatever users register."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from strategies.base import Strategy, StrategyError

__all__ = ["get", "load_module", "names", "register", "unregister_module"]

_REGISTRY: dict[str, Strategy] = {}


def register(strategy: Strategy, *, replace: bool = False) -> Strategy:
    """Make a strategy sweepable by name; returns it (so it can decorate an assignment).

    Example:
        >>> import strategies
        >>> s = strategies.get("top_n")
        >>> strategies.register(s, replace=True) is s
        True
    """
    if not isinstance(strategy, Strategy):
        raise TypeError(f"register() takes a strategies.Strategy, got {type(strategy).__name__}")
    if strategy.name in _REGISTRY and not replace and _REGISTRY[strategy.name] is not strategy:
        raise StrategyError(
            f"a strategy named {strategy.name!r} is already registered (pass replace=True)"
        )
    _REGISTRY[strategy.name] = strategy
    return strategy


def get(name: str | Strategy) -> Strategy:
    """The strategy registered under ``name`` (a Strategy passes through)."""
    if isinstance(name, Strategy):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), names(), n=1)
        raise StrategyError(
            f"unknown strategy {name!r}; known strategies: {', '.join(names())}"
            + (f"; did you mean {close[0]!r}?" if close else "")
        ) from None


def names() -> list[str]:
    return sorted(_REGISTRY)


def unregister_module(module: str) -> list[str]:
    """Drop every strategy defined in ``module`` or its submodules (by the module of its
    ``prepare``); returns their names. Used before a user module is imported again (an
    edited strategy shipped to a long-lived cluster) so the new copy can register.

    Example:
        >>> import strategies
        >>> strategies.unregister_module("no_such_module")
        []
    """
    dropped = []
    for key, strategy in list(_REGISTRY.items()):
        owner = getattr(strategy.prepare, "__module__", None) or ""
        if owner == module or owner.startswith(module + "."):
            del _REGISTRY[key]
            dropped.append(key)
    return dropped


def load_module(spec: str | os.PathLike[str]) -> ModuleType:
    """Import a user strategy module (a .py path or a dotted name) so it registers itself.

    A file is imported under its stem (``user_strategy.py`` -> ``user_strategy``), once.

    Example:
        >>> import strategies
        >>> _ = strategies.load_module("examples/user_strategy.py")   # doctest: +SKIP
        >>> "rsi_reversal" in strategies.names()                       # doctest: +SKIP
        True
    """
    text = str(spec)
    path = Path(text)
    if text.endswith(".py") or path.is_file():
        if not path.is_file():
            raise StrategyError(f"no such file: {text}")
        resolved = path.resolve()
        # Imported under its file's stem, as cluster.ship_modules does on the workers: one
        # module name per file everywhere (Numba's disk cache records the module name).
        name = resolved.stem
        loaded = sys.modules.get(name)
        if loaded is not None:
            file = getattr(loaded, "__file__", None)
            if file and Path(file).resolve() == resolved:
                return loaded
            raise StrategyError(
                f"cannot import {text} as module {name!r}: a different module of that name "
                f"is already loaded ({file}); rename the file"
            )
        mod_spec = importlib.util.spec_from_file_location(name, resolved)
        if mod_spec is None or mod_spec.loader is None:
            raise StrategyError(f"cannot import {text}")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        try:
            mod_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise StrategyError(f"importing {text} failed: {type(exc).__name__}: {exc}") from exc
        return module
    # Like `python -m`: a dotted name may be a module of the current folder.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(text)
    except ImportError as exc:
        raise StrategyError(
            f"cannot import module {text!r} ({exc}); give a dotted module name importable "
            "from here or a path to a .py file"
        ) from exc
    except Exception as exc:
        raise StrategyError(f"importing {text} failed: {type(exc).__name__}: {exc}") from exc
