"""Checkers of the parameters the modalities and sample-data makers read (``<modality>.source``,
``<modality>.tokenization``, ``<modality>.sample_data``).

Each returns the value in its checked form or raises :class:`~omnivec2_pipelines.formats.base.DataError`
naming the full key, ``<prefix>.<key>``. Bools are refused wherever a number is expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from omnivec2_pipelines.formats.base import DataError

_NO_DEFAULT: Any = object()


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _get(params: dict[str, Any], key: str, default: Any) -> Any:
    return params.get(key) if default is _NO_DEFAULT else params.get(key, default)


def pos_int(params: dict[str, Any], key: str, prefix: str, default: Any = _NO_DEFAULT) -> int:
    """``params[key]`` (or ``default`` when absent) as a positive int.

    Raises:
        DataError: ``<prefix>.<key> must be a positive int, got ...``.
    """
    value = _get(params, key, default)
    if not _is_int(value) or value <= 0:
        raise DataError(f"{prefix}.{key} must be a positive int, got {value!r}")
    return int(value)


def int_at_least(params: dict[str, Any], key: str, prefix: str, minimum: int,
                 default: Any = _NO_DEFAULT) -> int:
    """``params[key]`` (or ``default``) as an int ``>= minimum``.

    Raises:
        DataError: ``<prefix>.<key> must be an int >= <minimum>, got ...``.
    """
    value = _get(params, key, default)
    if not _is_int(value) or value < minimum:
        raise DataError(f"{prefix}.{key} must be an int >= {minimum}, got {value!r}")
    return int(value)


def int_param(params: dict[str, Any], key: str, prefix: str, default: Any = _NO_DEFAULT) -> int:
    """``params[key]`` (or ``default``) as an int (any sign, e.g. a seed or a column index).

    Raises:
        DataError: ``<prefix>.<key> must be an int, got ...``.
    """
    value = _get(params, key, default)
    if not _is_int(value):
        raise DataError(f"{prefix}.{key} must be an int, got {value!r}")
    return int(value)


def flag(params: dict[str, Any], key: str, prefix: str, default: bool) -> bool:
    """``params[key]`` (or ``default``) as a bool; only ``true``/``false`` are accepted.

    Raises:
        DataError: ``<prefix>.<key> must be true or false, got ...``.
    """
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise DataError(f"{prefix}.{key} must be true or false, got {value!r}")
    return value


def one_of(params: dict[str, Any], key: str, prefix: str, choices: Sequence[str], default: str) -> str:
    """``params[key]`` (or ``default``), which must be one of ``choices``.

    Raises:
        DataError: ``<prefix>.<key>=...; expected one of [...]``.
    """
    value = params.get(key, default)
    if value not in choices:
        raise DataError(f"{prefix}.{key}={value!r}; expected one of {list(choices)}")
    return value


def pos_ints(params: dict[str, Any], key: str, prefix: str, n: int) -> tuple[int, ...]:
    """``params[key]`` as a list of ``n`` positive ints (whole floats such as ``4.0`` count).

    Raises:
        DataError: ``<prefix>.<key> must be a list of <n> positive ints, got ...``.
    """
    out = _pos_ints(params.get(key), n)
    if out is None:
        raise DataError(f"{prefix}.{key} must be a list of {n} positive ints, got {params.get(key)!r}")
    return out


def pair(params: dict[str, Any], key: str, prefix: str, names: str = "[H, W]",
         scalar: bool = False) -> tuple[int, int]:
    """``params[key]`` as a pair of positive ints (``scalar``: one int ``n`` stands for ``[n, n]``).

    Raises:
        DataError: ``<prefix>.<key> must be a pair of positive ints <names>, got ...``.
    """
    value = params.get(key)
    if scalar and _is_int(value):
        value = [value, value]
    out = _pos_ints(value, 2)
    if out is None:
        raise DataError(f"{prefix}.{key} must be a pair of positive ints {names}, got {value!r}")
    return out[0], out[1]


def size_and_patch(params: dict[str, Any], prefix: str,
                   scalar: bool = False) -> tuple[tuple[int, int], tuple[int, int]]:
    """``params["size"]`` and ``params["patch_size"]`` (pairs, see :func:`pair`); the patch divides the size.

    Raises:
        DataError: a bad pair, or ``<prefix>.patch_size=[...] must divide <prefix>.size=[...] in both axes``.
    """
    size = pair(params, "size", prefix, scalar=scalar)
    patch = pair(params, "patch_size", prefix, scalar=scalar)
    if size[0] % patch[0] or size[1] % patch[1]:
        raise DataError(f"{prefix}.patch_size={list(patch)} must divide {prefix}.size={list(size)} "
                        f"in both axes")
    return size, patch


def column_name(source: dict[str, Any], key: str, prefix: str, default: str) -> str:
    """A column-name parameter: a non-empty string.

    Raises:
        DataError: ``<prefix>.<key> must be a column name, got ...``.
    """
    value = source.get(key, default)
    if not isinstance(value, str) or not value:
        raise DataError(f"{prefix}.{key} must be a column name, got {value!r}")
    return value


def is_number(token: str) -> bool:
    """True when ``float(token)`` parses (``"nan"`` and ``"inf"`` included)."""
    try:
        float(token)
    except ValueError:
        return False
    return True


def _pos_ints(value: Any, n: int) -> tuple[int, ...] | None:
    """``value`` as ``n`` positive ints, or None when it is not that."""
    try:
        out = tuple(int(v) for v in value)
        ok = len(out) == n and all(v > 0 for v in out) and \
            all(not isinstance(v, bool) and float(v) == int(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if ok else None
