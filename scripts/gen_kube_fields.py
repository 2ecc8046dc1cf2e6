"""Write kube/fields.json: every field of the objects the tools read, from the kubernetes client.

The strict reader (kube.parse) refuses unknown fields as the API server's strict field
validation does. It needs the API's field names, which the official client's models carry
(``attribute_map``, ``openapi_types``); importing the client costs about a second, so the
table is derived once, here, and committed. Run after upgrading the client:

    python scripts/gen_kube_fields.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import kubernetes
from kubernetes.client import models

ROOTS = (
    "V1NetworkPolicy", "V1Pod", "V1Namespace", "V1Node",
    "V1Deployment", "V1ReplicaSet", "V1StatefulSet", "V1DaemonSet", "V1Job", "V1CronJob", "V1ReplicationController",
)
SCALARS = {"str": "str", "int": "int", "bool": "bool", "float": "number", "datetime": "datetime"}
# Quantities ("1", 1, "500m") are strings in the client's models but numbers are accepted too.
QUANTITIES = {"sizeLimit", "divisor"}
OUT = Path(__file__).resolve().parents[1] / "kube" / "fields.json"
_LIST = re.compile(r"^(?:list|List)\[(.+)\]$")
_MAP = re.compile(r"^(?:dict\(str, (.+)\)|Dict\[str, (.+)\])$")


def normalise(type_name: str) -> str:
    """``V1Foo`` | ``list:<type>`` | ``map:<type>`` | a scalar: ``str``, ``int``, ``bool``,
    ``number``, ``datetime``, or ``any`` (int-or-string, free-form objects, quantities)."""
    if m := _LIST.match(type_name):
        return "list:" + normalise(m.group(1))
    if m := _MAP.match(type_name):
        return "map:" + normalise(m.group(1) or m.group(2))
    if hasattr(models, type_name):
        return type_name
    return SCALARS.get(type_name, "any")


def main() -> None:
    table: dict[str, dict[str, str]] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in table:
            continue
        cls = getattr(models, name)
        fields = {cls.attribute_map[attr]: normalise(kind) for attr, kind in cls.openapi_types.items()}
        fields.update({f: "any" for f in QUANTITIES & set(fields)})
        table[name] = dict(sorted(fields.items()))
        for kind in fields.values():
            inner = kind.split(":")[-1]
            if hasattr(models, inner):
                todo.append(inner)
    doc = {"client": kubernetes.__version__, "roots": list(ROOTS), "types": dict(sorted(table.items()))}
    OUT.write_text(json.dumps(doc, indent=0, sort_keys=False) + "\n")
    print(f"wrote {OUT}: {len(table)} types from kubernetes {kubernetes.__version__}")


if __name__ == "__main__":
    main()
