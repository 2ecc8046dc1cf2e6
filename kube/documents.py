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
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, TextIO

import yaml

from kube.errors import ObjectError
from kube.model import Source, raw_key

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = int(os.environ.get("NPM_MAX_INPUT_BYTES", 1 << 30))  # a 100k-pod dump is well below
MAX_DEPTH = 100  # Kubernetes objects nest about 20 deep; JSON parsers stop near 1,000
# Aliases may repeat a node, but not multiply a document: the expanded document may hold at most
# this many times the nodes written, plus a little (go-yaml bounds aliasing the same way).
ALIAS_RATIO = 10
ALIAS_SLACK = 10_000
MAX_EMPTY_DOCUMENTS = 10_000  # `---` alone, over and over, is no manifest
MAX_OBJECT_BYTES = 3 << 20  # the API server's request limit: no single object is larger

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser: ~10x faster on dumps


class DocumentError(ValueError):
    """A document that must be refused; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None, path: str = "") -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.path = path  # the field the problem is at, e.g. "spec.podSelector", when known
        self.obj = ""  # the object it is in ("NetworkPolicy x/p"), when it could be named

    def where(self) -> str:
        if self.line is None:
            return ""
        return f" at line {self.line}" + (f", column {self.column}" if self.column is not None else "")


def _sizes(root: yaml.Node) -> tuple[int, int]:
    """(nodes written, nodes once every alias is expanded) of a composed document; raises on a
    cycle, on nesting too deep and on a duplicate key: strictness is checked on the nodes,
    before anything is constructed.

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
        if isinstance(node, yaml.MappingNode):
            _no_duplicate_keys(root, node)
        if depth > MAX_DEPTH:
            mark = node.start_mark
            raise DocumentError(f"nested deeper than {MAX_DEPTH} levels", mark.line + 1)
        on_path.add(key)
        stack.append((node, depth, True))
        for child in _children(node):
            if id(child) not in sizes:
                stack.append((child, depth + 1, False))
    return len(sizes), sizes[id(root)]


def _no_duplicate_keys(root: yaml.Node, node: yaml.MappingNode) -> None:
    """Refuse a mapping that writes a key twice (the API server's strict decoding does); a
    YAML merge key (``<<: *base``) may still be overridden by the keys written beside it."""
    seen: set[tuple[str, str]] = set()
    for key_node, _value in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = (key_node.tag, key_node.value)
        if key in seen:
            mark = key_node.start_mark
            where = _path_to(root, node)
            path = f"{where}.{key_node.value}" if where else str(key_node.value)
            error = DocumentError(f"duplicate key {json.dumps(key_node.value)}", mark.line + 1, mark.column + 1, path)
            error.obj = _yaml_object_name(root, where)
            raise error
        seen.add(key)


def _path_to(root: yaml.Node, target: yaml.Node) -> str:
    """The field path from ``root`` to ``target`` (``spec.ingress[0]``), found by search: only
    needed for an error, so nothing is kept for the documents that have none."""
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if node is target:
            return path
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            for key_node, value in node.value:
                name = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                stack.append((value, f"{path}.{name}" if path else str(name)))
    return ""


def _yaml_object_name(root: yaml.Node, path: str) -> str:
    """``Kind ns/name`` of the object at the start of ``path`` (a list item, or the document)."""
    node = root
    if path.startswith("items["):
        index = int(path[6 : path.index("]")])
        items = _scalar_map(root).get("items")
        if isinstance(items, yaml.SequenceNode) and index < len(items.value):
            node = items.value[index]
    fields = _scalar_map(node)
    meta = _scalar_map(fields.get("metadata"))
    raw = {k: v.value for k, v in fields.items() if isinstance(v, yaml.ScalarNode)}
    raw["metadata"] = {k: v.value for k, v in meta.items() if isinstance(v, yaml.ScalarNode)}
    return _object_name(raw)


def _scalar_map(node: yaml.Node | None) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}


def _object_name(raw: Any) -> str:
    kind = raw.get("kind") if isinstance(raw, Mapping) else None
    if not isinstance(kind, str):
        return ""
    return f"{kind} {raw_key(kind, raw)}"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _json_checked(value: Any) -> None:
    """Depth within bounds and no duplicate key (located by its field path).

    The common case (no problem) walks without building paths; a second walk locates one.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise DocumentError(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, _Duplicated):
            raise DocumentError(f"duplicate key {json.dumps(item.duplicate)}", path=_json_path_to(value, item))
        if isinstance(item, _Constant):
            raise DocumentError(f"{item} is not a JSON number (the API server refuses it)",
                                path=_json_path_to(value, item))
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _json_path_to(root: Any, target: Any) -> str:
    """The field path of ``target`` (for a duplicated object, of its duplicated key)."""
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        item, path = stack.pop()
        if item is target:
            if isinstance(target, _Duplicated):
                return f"{path}.{target.duplicate}" if path else target.duplicate
            return path
        if isinstance(item, dict):
            stack.extend((v, f"{path}.{k}" if path else k) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))
    return ""


class Located(dict):  # type: ignore[type-arg]
    """An object as read, with the 1-based line it starts on: for CI annotations that point at
    the file and line of a policy or manifest."""

    __slots__ = ("line",)

    def __init__(self, items: dict[str, Any], line: int) -> None:
        super().__init__(items)
        self.line = line


# Located objects dump as the mappings they are (scenarios and tests write what they read).
for _dumper in {yaml.SafeDumper, getattr(yaml, "CSafeDumper", yaml.SafeDumper), yaml.Dumper}:
    _dumper.add_representer(Located, yaml.representer.SafeRepresenter.represent_dict)


def _located(node: yaml.Node, doc: Any, offset: int) -> Any:
    """``doc`` with its start line, and the items of a list document with theirs."""
    if not isinstance(node, yaml.MappingNode) or not isinstance(doc, dict):
        return doc
    out = Located(doc, node.start_mark.line + 1 + offset)
    items = out.get("items")
    if isinstance(items, list):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "items" and isinstance(value, yaml.SequenceNode):
                out["items"] = [_located(child, item, offset) for child, item in zip(value.value, items, strict=False)]
                break
    return out


def list_item_lines(text: str, key: str) -> list[int]:
    """The 1-based lines where the items of the top-level list ``key`` of a one-document YAML
    text start (for pointing at an entry of a config file); [] when there is no such list.
    Call it on text the strict reader accepted: it re-reads the structure, not the values."""
    loader = _Base(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError:
        return []
    finally:
        loader.dispose()
    if not isinstance(node, yaml.MappingNode):
        return []
    for k, value in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key and isinstance(value, yaml.SequenceNode):
            return [child.start_mark.line + 1 for child in value.value]
    return []


class JsonSyntaxError(DocumentError):
    """Text that is not JSON at all (it may still be YAML, whose flow style looks alike)."""


class _Duplicated(dict):  # type: ignore[type-arg]
    """A JSON object that wrote ``duplicate`` twice: kept to be located after parsing."""

    duplicate = ""


class _Marks(list):  # type: ignore[type-arg]
    """What one parse's hooks marked (duplicated objects, NaN/Infinity), so that the walk that
    locates them runs only when there is something to locate. One per parse: thread-safe."""

    def no_duplicates(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) == len(pairs):  # the common case: one C call, no Python loop
            return out
        seen: set[str] = set()
        duplicate = next(k for k, _v in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        marked = _Duplicated(out)
        marked.duplicate = duplicate
        self.append(marked)
        return marked

    def no_constants(self, name: str) -> Any:
        marked = _Constant(name)
        self.append(marked)
        return marked


class _Constant(str):
    """``NaN``, ``Infinity`` or ``-Infinity`` where JSON has none: kept to be located after parsing."""


_PAIR = re.compile(r'\s*[{,]\s*"((?:[^"\\]|\\.)*)"\s*:\s*("(?:[^"\\]|\\.)*"|[\[{])')


def _leading_pairs(text: str) -> Iterator[tuple[str, str]]:
    """The top-level fields at the start of a JSON object, as long as their values are strings;
    the first field with an object or list value ends it (its value is then ``{`` or ``[``)."""
    pos = 0
    for _ in range(16):
        m = _PAIR.match(text, pos)
        if m is None:
            return
        yield m.group(1), m.group(2)
        if not m.group(2).startswith('"'):
            return
        pos = m.end()


def _leading_kind(text: str) -> str | None:
    """The kind a large JSON text declares in its leading fields: ``List`` where ``items`` comes
    first, as kubectl writes lists (``{"apiVersion": "v1", "items": [...], "kind": "List"}``)."""
    for key, value in _leading_pairs(text):
        if key == "kind" and value.startswith('"'):
            return str(json.loads(value))
        if key == "items" and value == "[":
            return "List"
    return None


def parse_json(text: str) -> Any:
    """One JSON document, strictly: no duplicate keys, no NaN/Infinity, bounded depth; a single
    object (not a list) over the API server's size limit is refused before the strict parse."""
    if len(text) > MAX_OBJECT_BYTES:
        # Large and not a dump (a List): a single object, which the API server would refuse by
        # size before reading it. Where the leading fields cannot tell, C parsing does.
        kind = _leading_kind(text)
        if kind is None:
            try:
                kind = str(json.loads(text).get("kind", "")) if text.lstrip().startswith("{") else "List"
            except (json.JSONDecodeError, RecursionError, ValueError, AttributeError):
                kind = "List"  # let the strict parse say what is wrong
        if not kind.endswith("List"):
            raise DocumentError(f"is one object of {len(text):,} bytes, over the API server's "
                                f"{MAX_OBJECT_BYTES:,}-byte limit for an object")
    marks = _Marks()
    try:
        doc = json.loads(text, object_pairs_hook=marks.no_duplicates, parse_constant=marks.no_constants)
    except RecursionError:
        raise DocumentError(f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise JsonSyntaxError(f"invalid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    if marks:  # json's own recursion limit bounds the depth of what parsed at all
        _check_json_items(doc)
    return doc


def _check_json_items(doc: Any) -> None:
    """Check a document; in a list, each item on its own, a bad one replaced by its error so
    that the others are still read (``flatten`` reports it where it stood)."""
    if not _is_list(doc) or not isinstance(doc.get("items"), list) or isinstance(doc, _Duplicated):
        _json_checked(doc)
        return
    items = doc["items"]
    for i, item in enumerate(items):
        try:
            _check_json_items(item)
        except DocumentError as exc:
            exc.path = f"items[{i}].{exc.path}" if exc.path else f"items[{i}]"
            exc.obj = exc.obj or _object_name(item)
            items[i] = exc
    rest = {k: v for k, v in doc.items() if k != "items"}
    _json_checked(rest)


_SEPARATOR = re.compile(r"^---(?=[ \t\r]|$)", re.M)


def _chunks(text: str) -> Iterator[tuple[int, str]]:
    """The stream cut at every ``---`` line, as kubectl cuts it: (first line, text) of each."""
    start, line = 0, 0
    for m in _SEPARATOR.finditer(text):
        if m.start() > start or (start == 0 and m.start() > 0):
            chunk = text[start:m.start()]
            yield line, chunk
            line += chunk.count("\n")
        start = m.start()
    yield line, text[start:]


def parse_yaml(text: str) -> Iterator[Any]:
    """Each document of a YAML stream, strictly (see the module docstring): its value (``None``
    for an empty one) or the :class:`DocumentError` that refuses it. The stream is cut at
    ``---`` lines first, so a broken document does not take the ones after it."""
    for offset, chunk in _chunks(text):
        if not chunk.strip() or chunk.strip() == "---":
            yield None
            continue
        yield from _parse_chunk(chunk, offset)


def _parse_chunk(chunk: str, offset: int) -> Iterator[Any]:
    loader = _Base(chunk)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                yield None
                continue
            try:
                written, expanded = _sizes(node)
                if expanded > written * ALIAS_RATIO + ALIAS_SLACK:
                    raise DocumentError(
                        f"aliases expand {written:,} written nodes to {expanded:,}: refused as a resource bomb",
                        node.start_mark.line + 1,
                    )
                yield _located(node, loader.construct_document(node), offset)
            except RecursionError:
                yield DocumentError(f"nested deeper than {MAX_DEPTH} levels", node.start_mark.line + 1 + offset)
            except DocumentError as exc:
                if exc.line is not None:
                    exc.line += offset
                yield exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f" at line {mark.line + 1 + offset}, column {mark.column + 1}" if mark else ""
        yield DocumentError(f"invalid YAML{where}: {problem}")
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
            doc = parse_json(text)
        except JsonSyntaxError as exc:
            if name.endswith(".json"):
                yield ObjectError(Source(name, 0), "", exc.path, f"{exc}{exc.where()}")
                return
            doc = _NOT_JSON  # YAML's flow style starts with { or [ too: read it as YAML
        except DocumentError as exc:
            yield ObjectError(Source(name, 0), exc.obj, exc.path, f"{exc}{exc.where()}")
            return
        if doc is not _NOT_JSON:
            if not _objects_in(doc):
                yield ObjectError(Source(name), "", "", "holds no objects (null, an empty object or an empty list)")
            else:
                yield (Source(name, 0, _json_line(text) if not _is_list(doc) else None), doc)
            return
    found = 0
    empty = 0
    for index, doc in enumerate(parse_yaml(text)):
        if isinstance(doc, DocumentError):
            yield ObjectError(Source(name, index), doc.obj, doc.path, f"{doc}{doc.where()}")
            found += 1  # a document, if a bad one: the file was not empty
        elif doc is not None:
            found += _objects_in(doc)
            yield (Source(name, index, getattr(doc, "line", None)), doc)
        else:
            empty += 1
            if empty > MAX_EMPTY_DOCUMENTS:
                yield ObjectError(Source(name, index), "", "", f"holds more than {MAX_EMPTY_DOCUMENTS:,} empty "
                                  "documents: refused as a resource bomb")
                return
    if not found:
        yield ObjectError(
            Source(name), "", "", "holds no objects (only comments, empty documents, null or empty lists)"
        )


_NOT_JSON = object()


def _json_line(text: str) -> int:
    """The line a whole-file JSON object starts on (after leading blank lines)."""
    return text[: len(text) - len(text.lstrip())].count("\n") + 1


def _is_list(doc: Any) -> bool:
    kind = doc.get("kind") if isinstance(doc, Mapping) else None
    return isinstance(kind, str) and kind.endswith("List")


def _objects_in(doc: Any) -> int:
    """How many objects a document holds once lists are flattened (anything else counts as one)."""
    if _is_list(doc):
        items = doc.get("items")
        return sum(_objects_in(item) for item in items) if isinstance(items, list) else int(items is not None)
    return 0 if doc is None or doc == {} or doc == [] else 1


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
        for i, item in enumerate(items):
            if isinstance(item, Mapping):
                line = getattr(item, "line", None)
                yield from flatten(replace(source, line=line) if line is not None else source, item)
            elif isinstance(item, DocumentError):  # refused when read (see _check_json_items)
                yield ObjectError(source, item.obj or kind, item.path, f"{item}{item.where()}")
            else:
                got = type(item).__name__
                yield ObjectError(source, kind, f"items[{i}]", f"expected a Kubernetes object, got {got}")
    else:
        yield (source, doc)
