"""Read manifest text into raw documents: YAML (multi-document) or JSON, with hostile input bounded.

What the API server and ``kubectl`` (strict field validation) refuse is refused here too,
located by file, document and line: duplicate keys, JSON ``NaN``/``Infinity``, YAML tags
that are not plain data. What would make a reader hang or explode is bounded: a file's size,
nesting depth, and alias expansion ("billion laughs"), so that a hostile file is refused in
well under a second with bounded memory. Every tool reads its input through this module.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

import yaml

from kube.errors import ObjectError
from kube.model import Source

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = int(os.environ.get("NPM_MAX_INPUT_BYTES", 1 << 30))  # a 100k-pod dump is well below
MAX_DEPTH = 100  # Kubernetes objects nest about 20 deep; JSON parsers stop near 1,000
# Aliases may repeat a node, but not multiply a document: the expanded document may hold at most
# this many times the nodes written, plus a little (go-yaml bounds aliasing the same way).
ALIAS_RATIO = 10
ALIAS_SLACK = 10_000

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser: ~10x faster on dumps


class DocumentError(ValueError):
    """A document that must be refused; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column

    def where(self) -> str:
        if self.line is None:
            return ""
        return f" at line {self.line}" + (f", column {self.column}" if self.column is not None else "")


class _StrictLoader(_Base):  # type: ignore[misc,valid-type]
    """PyYAML's safe loader refusing duplicate keys (the API server's strict decoding does)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # ``<<: *base`` may be overridden by the keys written beside it
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key (a list or a map): PyYAML says so itself
                duplicate = False
            if duplicate:
                mark = key_node.start_mark
                raise DocumentError(f"duplicate key {json.dumps(key, default=str)}", mark.line + 1, mark.column + 1)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def _expanded_size(root: yaml.Node) -> int:
    """Nodes the document holds once every alias is expanded; raises on a cycle or too deep.

    Memoised per node, so the walk is linear in the nodes written even for a bomb.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            continue
        if key in sizes:
            continue
        if key in on_path:
            mark = node.start_mark
            raise DocumentError("an alias refers to a node that contains it (a recursive document)", mark.line + 1)
        if depth > MAX_DEPTH:
            mark = node.start_mark
            raise DocumentError(f"nested deeper than {MAX_DEPTH} levels", mark.line + 1)
        on_path.add(key)
        stack.append((node, depth, True))
        for child in _children(node):
            if id(child) not in sizes:
                stack.append((child, depth + 1, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _written_size(root: yaml.Node) -> int:
    """Distinct nodes written in the document (aliases counted once)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(_children(node))
    return len(seen)


def _json_depth_ok(value: Any) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise DocumentError(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


class JsonSyntaxError(DocumentError):
    """Text that is not JSON at all (it may still be YAML, whose flow style looks alike)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DocumentError(f"duplicate key {json.dumps(key)}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise DocumentError(f"{name} is not a JSON number (the API server refuses it)")


def parse_json(text: str) -> Any:
    """One JSON document, strictly: no duplicate keys, no NaN/Infinity, bounded depth."""
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError:
        raise DocumentError(f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise JsonSyntaxError(f"invalid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    _json_depth_ok(doc)
    return doc


def parse_yaml(text: str) -> Iterator[Any]:
    """The documents of a YAML stream, strictly (see the module docstring); ``None`` for empty ones."""
    loader = _StrictLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                yield None
                continue
            # Only a document with anchors can hold aliases: the cheap test first.
            if "&" in text and "*" in text:
                written = _written_size(node)
                expanded = _expanded_size(node)
                if expanded > written * ALIAS_RATIO + ALIAS_SLACK:
                    raise DocumentError(
                        f"aliases expand {written:,} written nodes to {expanded:,}: refused as a resource bomb",
                        node.start_mark.line + 1,
                    )
            else:
                _expanded_size(node)  # depth only: without aliases it is the written size
            try:
                yield loader.construct_document(node)
            except RecursionError:
                raise DocumentError(f"nested deeper than {MAX_DEPTH} levels", node.start_mark.line + 1) from None
    finally:
        loader.dispose()


def read_documents(path: str, stdin: TextIO | None = None) -> Iterator[tuple[Source, Any] | ObjectError]:
    """Yield ``(source, document)`` for every document under ``path``, or an error per bad file.

    ``-`` reads standard input. Directories are walked recursively, in sorted order, taking
    files that end in .yaml, .yml or .json. Empty documents (``---`` alone, ``null``) are
    skipped; a file with no document at all is an error, as is a file that is not text.
    """
    if path == "-":
        yield from _parse_text((stdin or sys.stdin).read(), "<stdin>")
        return
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(MANIFEST_SUFFIXES):
                    yield from read_documents(os.path.join(root, name))
        return
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            yield ObjectError(Source(path), "", "", f"is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit "
                              "(NPM_MAX_INPUT_BYTES raises it)")
            return
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        yield ObjectError(Source(path), "", "", f"cannot read: {exc.strerror or exc}")
        return
    if b"\x00" in data:
        yield ObjectError(Source(path), "", "", "is a binary file, not YAML or JSON")
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield ObjectError(Source(path), "", "", f"is not UTF-8 text (byte {exc.start})")
        return
    yield from _parse_text(text, path)


def _parse_text(text: str, name: str) -> Iterator[tuple[Source, Any] | ObjectError]:
    if len(text) > MAX_FILE_BYTES:
        yield ObjectError(Source(name), "", "", f"is over the {MAX_FILE_BYTES:,}-byte limit")
        return
    text = text.removeprefix("\ufeff")  # a byte-order mark is not content
    if not text.strip():
        yield ObjectError(Source(name), "", "", "is empty: no objects found")
        return
    if name.endswith(".json") or text.lstrip().startswith(("{", "[")):
        try:
            yield (Source(name, 0), parse_json(text))
            return
        except JsonSyntaxError as exc:
            if name.endswith(".json"):
                yield ObjectError(Source(name, 0), "", "", f"{exc}{exc.where()}")
                return
            # Not JSON after all (YAML flow style starts with { or [ too): read it as YAML.
        except DocumentError as exc:
            yield ObjectError(Source(name, 0), "", "", f"{exc}{exc.where()}")
            return
    index = 0
    found = 0
    try:
        for doc in parse_yaml(text):
            if doc is not None:
                found += 1
                yield (Source(name, index), doc)
            index += 1
    except DocumentError as exc:
        yield ObjectError(Source(name, index), "", "", f"{exc}{exc.where()}")
        return
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        yield ObjectError(Source(name, index), "", "", f"invalid YAML{where}: {problem}")
        return
    if not found:
        yield ObjectError(Source(name), "", "", "holds no objects (only comments, empty documents or null)")


def flatten(source: Source, doc: Any) -> Iterator[tuple[Source, Any] | ObjectError]:
    """Expand ``kind: List`` and typed lists (``PodList``, ...) into their items, nested lists too.

    A list whose ``items`` is not a list is an error, not something to skip.
    """
    kind = doc.get("kind") if isinstance(doc, Mapping) else None
    if isinstance(kind, str) and kind.endswith("List"):
        items = doc.get("items")
        if items is None:
            return  # an empty list as kubectl prints it: `items: null` or no items at all
        if not isinstance(items, list):
            yield ObjectError(source, kind, "items", f"must be a list, not {type(items).__name__}")
            return
        for item in items:
            yield from flatten(source, item)
    else:
        yield (source, doc)
