"""Builders for small tables in the JSON ``nft -j list table inet azure-npm`` prints (the
shapes are those nft 1.0 prints for our rules)."""

from __future__ import annotations

import json
from typing import Any

from npm.dataplane.nft import ListedTable, read_table

ACCEPT: dict[str, Any] = {"accept": None}
DROP: dict[str, Any] = {"drop": None}
RETURN: dict[str, Any] = {"return": None}
NAMED_PORT_KEY = [{"payload": {"protocol": "ip", "field": "daddr"}}, {"meta": {"key": "l4proto"}},
                  {"payload": {"protocol": "th", "field": "dport"}}]


def document(*items: dict[str, Any]) -> str:
    """``nft -j list table`` output holding these set, map, chain and rule items (rules get
    handles in order)."""
    head = [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": "inet", "name": "azure-npm", "handle": 1}}]
    out = []
    for handle, item in enumerate(items, start=2):
        if "rule" in item:
            item = {"rule": {**item["rule"], "handle": handle}}
        out.append(item)
    return json.dumps({"nftables": head + out})


def table(*items: dict[str, Any]) -> ListedTable:
    """The listed table of :func:`document`."""
    return read_table(document(*items))


def nft_set(name: str, elements: list[Any], *, key: Any = "ipv4_addr", interval: bool = False) -> dict[str, Any]:
    s = {"family": "inet", "name": name, "table": "azure-npm", "type": key, "handle": 1, "elem": elements}
    if interval:
        s["flags"] = ["interval"]
    return {"set": s}


def nft_map(name: str, elements: list[Any]) -> dict[str, Any]:
    return {"map": {"family": "inet", "name": name, "table": "azure-npm", "type": "ipv4_addr", "handle": 1,
                    "map": "verdict", "elem": elements}}


def chain(name: str, *, hook: str = "", prio: int = 0, policy: str = "accept") -> dict[str, Any]:
    c: dict[str, Any] = {"family": "inet", "table": "azure-npm", "name": name, "handle": 1}
    if hook:
        c.update(type="filter", hook=hook, prio=prio, policy=policy)
    return {"chain": c}


def rule(chain_name: str, *expr: dict[str, Any], comment: str = "") -> dict[str, Any]:
    r: dict[str, Any] = {"family": "inet", "table": "azure-npm", "chain": chain_name, "expr": list(expr)}
    if comment:
        r["comment"] = comment
    return {"rule": r}


def match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def ip(field: str, right: Any, op: str = "==") -> dict[str, Any]:
    return match({"payload": {"protocol": "ip", "field": field}}, right, op)


def dport(proto: str, right: Any, op: str = "==") -> dict[str, Any]:
    return match({"payload": {"protocol": proto, "field": "dport"}}, right, op)


def prefix(addr: str, length: int) -> dict[str, Any]:
    return {"prefix": {"addr": addr, "len": length}}


def vmap(field: str, name: str) -> dict[str, Any]:
    return {"vmap": {"key": {"payload": {"protocol": "ip", "field": field}}, "data": f"@{name}"}}


def jump(target: str) -> dict[str, Any]:
    return {"jump": {"target": target}}


def goto(target: str) -> dict[str, Any]:
    return {"goto": {"target": target}}
