"""Unknown fields, refused as the API server's strict field validation refuses them.

A misspelled field is not harmless here: ``ipBlock.excpet`` would drop the except, and
``ports: [{prot: 443}]`` would open every port. The API's field names come from
``kube/fields.json`` (derived from the official client's models by
``scripts/gen_kube_fields.py``).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

_TABLE = Path(__file__).with_name("fields.json")
ROOT_TYPES = {"NetworkPolicy": "V1NetworkPolicy", "Pod": "V1Pod", "Namespace": "V1Namespace", "Node": "V1Node"}


@cache
def _types() -> dict[str, dict[str, str]]:
    return json.loads(_TABLE.read_text())["types"]  # type: ignore[no-any-return]


def unknown_fields(raw: Mapping[str, Any], kind: str) -> Iterator[tuple[str, str]]:
    """``(path, message)`` for every field of ``raw`` (an object of ``kind``) the API does not have.

    Only mappings are looked into; values of the wrong type are the parser's business.
    """
    types = _types()
    stack: list[tuple[Any, str, str]] = [(raw, ROOT_TYPES[kind], "")]
    while stack:
        value, type_name, path = stack.pop()
        if type_name.startswith("list:"):
            if isinstance(value, list):
                inner = type_name[5:]
                stack.extend((item, inner, f"{path}[{i}]") for i, item in enumerate(value))
            continue
        if type_name.startswith("map:"):
            if isinstance(value, Mapping):
                inner = type_name[4:]
                stack.extend((v, inner, f"{path}.{k}") for k, v in value.items())
            continue
        fields = types.get(type_name)
        if fields is None or not isinstance(value, Mapping):
            continue
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            known = fields.get(key) if isinstance(key, str) else None
            if known is None:
                yield where, _unknown(key, fields)
            else:
                stack.append((item, known, where))


def _unknown(key: Any, fields: Mapping[str, str]) -> str:
    message = f"unknown field {json.dumps(key, default=str)}"
    close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
    if not close:
        lowered = {f.lower(): f for f in fields}
        close = [lowered[str(key).lower()]] if str(key).lower() in lowered else []
    return message + (f' (did you mean "{close[0]}"?)' if close else f" (known: {', '.join(sorted(fields))})")
