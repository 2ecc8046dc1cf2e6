"""Unknown fields and values of the wrong JSON type, refused as the API server refuses them.

A misspelled field is not harmless here: ``ipBlock.excpet`` would drop the except, and
``ports: [{prot: 443}]`` would open every port. The API's field names and types come from
``kube/fields.json`` (derived from the official client's models by
``scripts/gen_kube_fields.py``; ClusterNetworkPolicy's, a CRD's, are written out there and
checked against the upstream CRD). ``null`` stands for an absent field, as for the API.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

_TABLE = Path(__file__).with_name("fields.json")
ROOT_TYPES = {
    kind: f"V1{kind}"
    for kind in ("NetworkPolicy", "Pod", "Namespace", "Node", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet",
                 "Job", "CronJob", "ReplicationController")
}
ROOT_TYPES["ClusterNetworkPolicy"] = "V1alpha2ClusterNetworkPolicy"  # a CRD: its table is written out by the script
# Maps of quantities ("1", 1, "500m"): strings in the client's models, numbers accepted too.
QUANTITY_MAPS = {"limits", "requests", "overhead", "capacity", "allocatable", "allocatedResources"}
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z")


@cache
def _types() -> dict[str, dict[str, str]]:
    return json.loads(_TABLE.read_text())["types"]  # type: ignore[no-any-return]


# A field's type, compiled: (how to look into it, the inner type name).
_ANY, _SCALAR, _OBJECT, _LIST, _MAP = range(5)


def _compile(type_name: str) -> tuple[int, str]:
    if type_name == "any":
        return _ANY, ""
    if type_name.startswith("list:"):
        return _LIST, type_name[5:]
    if type_name.startswith("map:"):
        return _MAP, type_name[4:]
    return (_OBJECT, type_name) if type_name in _types() else (_SCALAR, type_name)


@cache
def _compiled(type_name: str) -> dict[str, tuple[int, str]]:
    return {field: _compile(kind) for field, kind in _types()[type_name].items()}


def unknown_fields(raw: Mapping[str, Any], kind: str) -> Iterator[tuple[str, str]]:
    """``(path, message)`` for every field of ``raw`` (an object of ``kind``) the API does not
    have, and every value whose JSON type is not the field's. Paths are only built for the
    objects looked into (this runs on every object of every dump: it has to be cheap)."""
    stack: list[tuple[Mapping[str, Any], str, str]] = [(raw, ROOT_TYPES[kind], "")]
    while stack:
        value, type_name, path = stack.pop()
        fields = _compiled(type_name)
        for key, item in value.items():
            spec = fields.get(key) if isinstance(key, str) else None
            if spec is None:
                yield (f"{path}.{key}" if path else str(key)), unknown_field(key, _types()[type_name])
                continue
            if item is None or spec[0] == _ANY:
                continue
            if spec[0] == _SCALAR:  # most fields: checked here, without a path or a generator
                if type(item) is not _FITS.get(spec[1]):
                    problem = _scalar_problem(item, spec[1])
                    if problem:
                        yield (f"{path}.{key}" if path else key), problem
                continue
            yield from _look_into(item, spec, f"{path}.{key}" if path else key, key, stack)


def _look_into(
    item: Any, spec: tuple[int, str], where: str, key: str, stack: list[tuple[Mapping[str, Any], str, str]]
) -> Iterator[tuple[str, str]]:
    how, inner = spec
    if how == _SCALAR:
        problem = _scalar_problem(item, inner)
        if problem:
            yield where, problem
    elif how == _OBJECT:
        if isinstance(item, Mapping):
            stack.append((item, inner, where))
        else:
            yield where, f"must be an object, {_not(item)}"
    elif how == _LIST:
        if not isinstance(item, list):
            yield where, f"must be a list, {_not(item)}"
            return
        element = _compile(inner)
        for i, x in enumerate(item):
            if x is not None and element[0] != _ANY:
                yield from _look_into(x, element, f"{where}[{i}]", key, stack)
    else:  # a map: values of quantity maps may be numbers
        if not isinstance(item, Mapping):
            yield where, f"must be an object, {_not(item)}"
            return
        element = (_ANY, "") if key in QUANTITY_MAPS else _compile(inner)
        if element[0] == _ANY:
            return
        for k, x in item.items():
            if x is not None:
                yield from _look_into(x, element, f"{where}.{k}", key, stack)


_FITS = {"str": str, "int": int, "bool": bool}


def _scalar_problem(value: Any, type_name: str) -> str:
    """Why ``value`` cannot be of the scalar type ``type_name`` ("" if it can, or if not a scalar)."""
    if type(value) is _FITS.get(type_name) or type_name == "any":  # the common case, first and cheap
        return ""
    if type_name == "str" and not isinstance(value, str):
        return f"must be a string, {_not(value)}"
    if type_name == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"must be an integer, {_not(value)}"
    if type_name == "bool" and not isinstance(value, bool):
        return f"must be true or false, {_not(value)}"
    if type_name == "number" and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or (isinstance(value, float) and not math.isfinite(value))):
        return f"must be a number, {_not(value)}"
    if type_name == "datetime" and not isinstance(value, date) and not (
        isinstance(value, str) and _RFC3339.match(value)
    ):
        return f"must be an RFC 3339 time such as 2024-01-31T12:00:00Z, {_not(value)}"
    return ""


def _not(value: Any) -> str:
    shown = repr(value)
    return f"not {type(value).__name__} {shown if len(shown) <= 60 else shown[:60] + '...'}"


def unknown_field(key: Any, fields: Mapping[str, str]) -> str:
    """``unknown field "x"`` with the closest of ``fields`` ("did you mean") or all of them."""
    message = f"unknown field {json.dumps(key, default=str)}"
    close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
    if not close:
        lowered = {f.lower(): f for f in fields}
        close = [lowered[str(key).lower()]] if str(key).lower() in lowered else []
    return message + (f' (did you mean "{close[0]}"?)' if close else f" (known: {', '.join(sorted(fields))})")
