"""Sets of classes as packed bit rows, deduplicated, and reading bits back out of them.

A per-port verdict is stored as a few thousand distinct sets of classes (which destinations
a source may reach, which sources a destination admits), each a row of ``ceil(C / 8)``
bytes (``np.packbits(..., bitorder="little")``), instead of a C x C boolean matrix.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ALL = 0  # row id of the set of every class (a direction no policy isolates)
NONE = 1  # row id of the empty set (isolated, nothing allowed)


def pack(vec: np.ndarray) -> np.ndarray:
    """uint8 [ceil(n / 8)]: ``vec`` (bool [n]) as little-endian bits."""
    return np.packbits(vec, bitorder="little")


Recipe = tuple  # what a set is the union of, as hashable tokens (see SetTable)


class SetTable:
    """Sets of ``count`` classes by id; row ``ALL`` is every class, row ``NONE`` none.

    Each set is known by its *recipe*: a hashable description of what it is the union of
    (the engine uses the rules whose peers it unites). ``add(vec, recipe)`` returns the id
    of the set with that recipe, adding ``vec`` if the recipe is new. Sets are keyed by
    recipe rather than by content so that, after pods change, each set can be recomputed
    for the changed classes from its recipe alone (two recipes with equal sets today may
    differ tomorrow). ``rows()`` is the packed table (uint8 [n, ceil(count / 8)]); ``derive``
    makes a table with the same ids to which new sets are appended independently.
    """

    def __init__(
        self,
        count: int,
        base: np.ndarray | None = None,
        index: dict[Recipe, int] | None = None,
        recipes: list[Recipe | None] | None = None,
    ) -> None:
        self.count = count
        if base is None:
            width = (count + 7) // 8
            base = np.zeros((2, width), dtype=np.uint8)
            base[ALL] = pack(np.ones(count, dtype=bool))
            index, recipes = {}, [None, ()]
        self._base = base
        self._index: dict[Recipe, int] = dict(index or {})
        self.recipes: list[Recipe | None] = list(recipes or [])
        self._new: list[np.ndarray] = []
        self._rows: np.ndarray | None = base

    def add(self, vec: np.ndarray, recipe: Recipe) -> int:
        """Id of the set made by ``recipe``; ``vec`` (bool [count]) is that set, stored if new."""
        got = self._index.get(recipe)
        if got is None:
            got = self._index[recipe] = len(self._base) + len(self._new)
            self._new.append(pack(vec))
            self.recipes.append(recipe)
            self._rows = None
        return got

    def find(self, recipe: Recipe) -> int | None:
        """Id of the set made by ``recipe``, or None if there is none yet."""
        return self._index.get(recipe)

    def rows(self) -> np.ndarray:
        """uint8 [n, ceil(count / 8)]: every set, by id (read only)."""
        if self._rows is None:
            self._base = np.concatenate([self._base, np.stack(self._new)]) if self._new else self._base
            self._base.flags.writeable = False
            self._new = []
            self._rows = self._base
        return self._rows

    def derive(self, rows: np.ndarray | None = None, count: int | None = None,
               forget: Callable[[Recipe], bool] | None = None) -> SetTable:
        """A table with the same ids, to which sets are added independently of this one.

        ``rows`` (and ``count``) replace the stored sets, e.g. widened to more classes;
        recipes for which ``forget`` is true are no longer found by ``add`` (their ids stay,
        unused): they described rules that have changed.
        """
        index = self._index if forget is None else {r: i for r, i in self._index.items() if not forget(r)}
        return SetTable(self.count if count is None else count, self.rows() if rows is None else rows, index,
                        self.recipes)


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


def set_columns(rows: np.ndarray, which: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
    """In place: bit ``cols[k]`` of set ``which[m]`` becomes ``values[m, k]`` (one pass per column)."""
    which = np.asarray(which, dtype=np.int64)
    for k, c in enumerate(np.asarray(cols, dtype=np.int64).tolist()):
        mask = np.uint8(1 << (c & 7))
        byte = rows[which, c >> 3]
        rows[which, c >> 3] = np.where(values[:, k], byte | mask, byte & ~mask)


def widen(rows: np.ndarray, count: int) -> np.ndarray:
    """``rows`` (packed sets) with room for ``count`` classes; the new bits are 0."""
    width = (count + 7) // 8
    out = np.zeros((rows.shape[0], width), dtype=np.uint8)
    out[:, : rows.shape[1]] = rows
    return out


__all__ = ["ALL", "NONE", "Recipe", "SetTable", "bits", "pack", "pair_bits", "set_columns", "widen"]
