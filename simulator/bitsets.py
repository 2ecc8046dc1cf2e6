"""Sets of classes as packed bit rows, deduplicated, and reading bits back out of them.

A per-port verdict is stored as a few thousand distinct sets of classes (which destinations
a source may reach, which sources a destination admits), each a row of ``ceil(C / 8)``
bytes (``np.packbits(..., bitorder="little")``), instead of a C x C boolean matrix.
"""

from __future__ import annotations

import numpy as np

ALL = 0  # row id of the set of every class (a direction no policy isolates)
NONE = 1  # row id of the empty set (isolated, nothing allowed)


def pack(vec: np.ndarray) -> np.ndarray:
    """uint8 [ceil(n / 8)]: ``vec`` (bool [n]) as little-endian bits."""
    return np.packbits(vec, bitorder="little")


class SetTable:
    """Distinct sets of ``count`` classes; row ``ALL`` is every class, row ``NONE`` none.

    ``add`` returns the id of a set, the same id for the same set. ``rows()`` is the packed
    table (uint8 [n, ceil(count / 8)]); a table derived with ``derive`` shares the ids of
    its parent and appends.
    """

    def __init__(self, count: int, base: np.ndarray | None = None, index: dict[bytes, int] | None = None) -> None:
        self.count = count
        if base is None:
            width = (count + 7) // 8
            base = np.zeros((2, width), dtype=np.uint8)
            base[ALL] = pack(np.ones(count, dtype=bool))
            index = {base[ALL].tobytes(): ALL, base[NONE].tobytes(): NONE}
        self._base = base
        self._index: dict[bytes, int] = dict(index or {})
        self._new: list[np.ndarray] = []
        self._rows: np.ndarray | None = base

    def add(self, vec: np.ndarray) -> int:
        """Id of the set ``vec`` (bool [count]), added if new."""
        packed = pack(vec)
        key = packed.tobytes()
        got = self._index.get(key)
        if got is None:
            got = self._index[key] = len(self._base) + len(self._new)
            self._new.append(packed)
            self._rows = None
        return got

    def rows(self) -> np.ndarray:
        """uint8 [n, ceil(count / 8)]: every set, by id (read only)."""
        if self._rows is None:
            self._base = np.concatenate([self._base, np.stack(self._new)]) if self._new else self._base
            self._base.flags.writeable = False
            self._new = []
            self._rows = self._base
        return self._rows

    def derive(self) -> SetTable:
        """A table with the same sets and ids, to which new sets can be added independently."""
        return SetTable(self.count, self.rows(), self._index)

    @property
    def nbytes(self) -> int:
        return int(self.rows().nbytes)


def bits(rows: np.ndarray, which: np.ndarray, cols: np.ndarray | slice) -> np.ndarray:
    """bool [len(which), len(cols)]: bit ``cols[k]`` of set ``which[m]`` of the packed ``rows``.

    ``cols`` is an int array of class ids or a ``slice(start, stop)`` (cheaper). Cost is
    proportional to the output, plus one pass over the distinct rows in ``which``.
    """
    uniq, inverse = np.unique(which, return_inverse=True)
    sub = rows[uniq]
    if isinstance(cols, slice):
        start, stop = cols.start or 0, cols.stop
        chunk = sub[:, start >> 3 : (stop + 7) >> 3]
        out = np.unpackbits(chunk, axis=1, bitorder="little")[:, start & 7 : (start & 7) + (stop - start)]
        out = out.view(bool)
    else:
        cols = np.asarray(cols, dtype=np.int64)
        got = sub[:, cols >> 3]
        out = ((got >> (cols & 7).astype(np.uint8)) & 1).view(bool)
    return out[inverse.reshape(-1)]


def pair_bits(rows: np.ndarray, which: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """bool [k]: bit ``cols[k]`` of set ``which[k]`` (element-wise)."""
    cols = np.asarray(cols, dtype=np.int64)
    got = rows[np.asarray(which, dtype=np.int64), cols >> 3]
    return ((got >> (cols & 7).astype(np.uint8)) & 1).astype(bool)


def unpack_rows(rows: np.ndarray, which: np.ndarray, count: int) -> np.ndarray:
    """bool [len(which), count]: whole sets."""
    return np.unpackbits(rows[which], axis=1, count=count, bitorder="little").view(bool)


__all__ = ["ALL", "NONE", "SetTable", "bits", "pack", "pair_bits", "unpack_rows"]
