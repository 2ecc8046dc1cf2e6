"""The strict reader: what the API server refuses is refused, and hostile input is bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube.documents import MAX_DEPTH, read_documents
from kube.errors import ObjectError


def read(tmp_path: Path, text: str, name: str = "in.yaml") -> list[object]:
    path = tmp_path / name
    path.write_text(text)
    return list(read_documents(str(path)))


def only_error(found: list[object]) -> str:
    errors = [e for e in found if isinstance(e, ObjectError)]
    assert errors, found
    return str(errors[0])


BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(8)]
)


def test_an_alias_bomb_is_refused_as_a_resource_bomb(tmp_path: Path) -> None:
    message = only_error(read(tmp_path, BOMB))
    assert "in.yaml" in message and "resource bomb" in message


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    assert "recursive" in only_error(read(tmp_path, "a: &a [*a]\n"))


@pytest.mark.parametrize("name, text", [
    ("deep.json", "[" * 5000 + "]" * 5000),
    ("deep.yaml", "[" * 5000 + "]" * 5000),
    ("deep-block.yaml", "".join(" " * i + "- \n" for i in range(0, 2 * (MAX_DEPTH + 5), 2)) + " " * 400 + "x\n"),
])
def test_nesting_deeper_than_the_limit_is_refused(tmp_path: Path, name: str, text: str) -> None:
    assert "nested deeper" in only_error(read(tmp_path, text, name))


@pytest.mark.parametrize("name, text, key", [
    ("dup.yaml", "kind: Pod\nspec: {}\nspec: {hostNetwork: true}\n", '"spec"'),
    ("dup.json", '{"kind": "Pod", "metadata": {"name": "a", "name": "b"}}', '"name"'),
])
def test_duplicate_keys_are_refused_with_their_line(tmp_path: Path, name: str, text: str, key: str) -> None:
    message = only_error(read(tmp_path, text, name))
    assert f"duplicate key {key}" in message


def test_a_merge_key_may_be_overridden_by_a_key_beside_it(tmp_path: Path) -> None:
    (doc,) = read(tmp_path, "base: &b {x: 1, y: 2}\nobj:\n  <<: *b\n  y: 3\n")
    assert doc[1]["obj"] == {"x": 1, "y": 3}  # type: ignore[index]


def test_json_nan_is_refused(tmp_path: Path) -> None:
    assert "NaN is not a JSON number" in only_error(read(tmp_path, '{"kind": "Pod", "x": NaN}', "n.json"))


@pytest.mark.parametrize("text", ["# only a comment\n", "---\n---\n", "null\n", "~\n"])
def test_a_file_holding_no_object_is_an_error(tmp_path: Path, text: str) -> None:
    assert "holds no objects" in only_error(read(tmp_path, text))


def test_a_byte_order_mark_is_not_content(tmp_path: Path) -> None:
    (doc,) = read(tmp_path, "\ufeffkind: Namespace\nmetadata: {name: x}\n")
    assert doc[1]["kind"] == "Namespace"  # type: ignore[index]


def test_python_tags_are_refused(tmp_path: Path) -> None:
    assert "invalid YAML" in only_error(read(tmp_path, "kind: !!python/object/apply:os.system [id]\n"))
