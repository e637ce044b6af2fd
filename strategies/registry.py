"""The strategy registry: built-ins plus whatever users register."""

from __future__ import annotations

from strategies.base import Strategy, StrategyError

__all__ = ["get", "names", "register"]

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
        raise StrategyError(
            f"unknown strategy {name!r}; known strategies: {', '.join(names())}"
        ) from None


def names() -> list[str]:
    return sorted(_REGISTRY)
