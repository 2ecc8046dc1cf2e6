"""Located errors for bad input: file, document, object and field, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass

from kube.model import Source


@dataclass(frozen=True)
class ObjectError:
    """One problem with one input object (or with a whole file when ``obj`` is empty)."""

    source: Source
    obj: str  # e.g. "NetworkPolicy x/deny-all"; "" when the file itself is bad
    path: str  # field path, e.g. "spec.ingress[0].from[1].ipBlock.cidr"; "" if none
    message: str
    kind: str = ""  # the object's kind and key (object_key), when the object could be named
    key: str = ""

    def __str__(self) -> str:
        where = str(self.source)
        what = f"{self.obj}: " if self.obj else ""
        field = f"{self.path}: " if self.path else ""
        return f"{where}: {what}{field}{self.message}"

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.source.file,
            "document": self.source.document,
            "object": self.obj,
            "field": self.path,
            "message": self.message,
        }


class FieldError(Exception):
    """Raised while parsing one object; caught by the loader and turned into ObjectError."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
