"""Class x class verdicts of one port in factored form, and what can be read from them.

Egress out of a class depends only on the rules that select it, and so does ingress into a
class. So for one port every class ``i`` has an *egress set* (the destination classes its
egress allows; every class when no policy isolates it) and an *ingress set* (the source
classes its ingress admits), and

    allowed[i, j] = j in out_sets[out_sig[i]]  and  i in in_sets[in_sig[j]]

Classes selected by the same rules share a set, and equal sets are stored once (packed bits,
``simulator.bitsets``), so the factors take O((S + T) * C) bits for S egress and T ingress
sets, where the C x C matrix takes C² bytes. Blocks of the matrix are read in tiles, and pair
counts are computed from the factors without building any tile (see :meth:`count`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.bitsets import bits, pair_bits

# Bytes one temporary tile may take while counting or reading blocks; tests lower it to
# exercise tiling on small clusters.
TILE_BYTES = 64 << 20


@dataclass(frozen=True)
class PortVerdicts:
    """Factored class x class verdicts for one port (see the module docstring)."""

    out_sig: np.ndarray  # int32 [C]: each class's egress set
    out_sets: np.ndarray  # uint8 [S, ceil(C/8)]: packed sets of destination classes
    in_sig: np.ndarray  # int32 [C]: each class's ingress set
    in_sets: np.ndarray  # uint8 [T, ceil(C/8)]: packed sets of source classes

    @property
    def count(self) -> int:
        return len(self.out_sig)

    @property
    def nbytes(self) -> int:
        """Memory the factors take (what a dense class matrix would take: ``count ** 2``)."""
        return int(self.out_sig.nbytes + self.out_sets.nbytes + self.in_sig.nbytes + self.in_sets.nbytes)

    def block(self, rows: np.ndarray | slice, cols: np.ndarray | slice) -> np.ndarray:
        """bool [len(rows), len(cols)]: verdicts of source classes ``rows`` towards
        destination classes ``cols`` (int arrays or slices), a new array."""
        r_ids = _ids(rows, self.count)
        c_ids = _ids(cols, self.count)
        out = bits(self.out_sets, self.out_sig[r_ids], cols)
        out &= bits(self.in_sets, self.in_sig[c_ids], rows).T
        return out

    def egress_block(self, rows: np.ndarray | slice, cols: np.ndarray | slice) -> np.ndarray:
        """bool [len(rows), len(cols)]: egress only (whether the source's egress admits)."""
        return bits(self.out_sets, self.out_sig[_ids(rows, self.count)], cols)

    def ingress_block(self, rows: np.ndarray | slice, cols: np.ndarray | slice) -> np.ndarray:
        """bool [len(rows), len(cols)]: ingress only (whether the destination's ingress admits)."""
        return np.ascontiguousarray(bits(self.in_sets, self.in_sig[_ids(cols, self.count)], rows).T)

    def pairs(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """bool [k]: verdict of each (src[k], dst[k]) class pair."""
        src = np.asarray(src, dtype=np.int64)
        dst = np.asarray(dst, dtype=np.int64)
        return pair_bits(self.out_sets, self.out_sig[src], dst) & pair_bits(self.in_sets, self.in_sig[dst], src)

    def allowed_pairs(self, weights: np.ndarray, tile_bytes: int | None = None) -> int:
        """Sum over class pairs (i, j) allowed of ``weights[i] * weights[j]``: with class
        sizes as weights, the number of allowed (source, destination) pod pairs.

        Groups sources by egress set and destinations by ingress set:
        ``sum_{s,t} A[s, t] * B[s, t]`` with ``A[s, t]`` the weight of the sources with
        egress set s inside ingress set t and ``B[s, t]`` the weight of the destinations
        with ingress set t inside egress set s. Cost O((S + T) * C), in tiles of at most
        ``tile_bytes``; no C x C array is built.
        """
        budget = TILE_BYTES if tile_bytes is None else tile_bytes
        count = self.count
        if count == 0:
            return 0
        w = np.asarray(weights, dtype=np.float64)
        # Sets are stored per recipe; equal sets of different recipes count as one here.
        out_sig, out_sets = _distinct(self.out_sig, self.out_sets)
        in_sig, in_sets = _distinct(self.in_sig, self.in_sets)
        s_ids, s_order, s_starts = _groups(out_sig)
        t_ids, t_order, t_starts = _groups(in_sig)
        w_by_s = w[s_order]  # source weights in egress-set order
        total = 0
        # A tile of A is [t block, all s] from t-block rows of in_sets (columns in s order);
        # a tile of B is [s chunk, t block] from the s-chunk rows of out_sets restricted to
        # the destinations of the t block (contiguous in t order).
        per_row = max(1, count * 8)  # float64 bytes per row of a temporary
        t_step = max(1, budget // per_row)
        for t0 in range(0, len(t_ids), t_step):
            t1 = min(len(t_ids), t0 + t_step)
            ins = bits(in_sets, t_ids[t0:t1], s_order)  # [tb, C] sources in s order
            a = np.add.reduceat(ins * w_by_s, s_starts[:-1], axis=1)  # [tb, S]
            lo, hi = t_starts[t0], t_starts[t1]
            dsts = t_order[lo:hi]
            local = t_starts[t0:t1] - lo
            w_dst = w[dsts]
            s_step = max(1, budget // max(1, len(dsts) * 8))
            for s0 in range(0, len(s_ids), s_step):
                s1 = min(len(s_ids), s0 + s_step)
                outs = bits(out_sets, s_ids[s0:s1], dsts)  # [sb, len(dsts)]
                b = np.add.reduceat(outs * w_dst, local, axis=1)  # [sb, tb]
                total += float(np.sum(a[:, s0:s1].T * b))
        return round(total)


def _ids(sel: np.ndarray | slice, count: int) -> np.ndarray:
    if isinstance(sel, slice):
        return np.arange(*sel.indices(count))
    return np.asarray(sel, dtype=np.int64)


def _distinct(sig: np.ndarray, sets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sig, sets) with equal sets merged: each class points at one copy of its set."""
    used = np.unique(sig)
    sub = np.ascontiguousarray(sets[used])
    if sub.shape[1] == 0:
        return np.zeros_like(sig), sub[:1]
    uniq, inverse = np.unique(sub.view(np.dtype((np.void, sub.shape[1]))).ravel(), return_inverse=True)
    remap = np.zeros(len(sets), dtype=np.int64)
    remap[used] = inverse.reshape(-1)
    return remap[sig], uniq.view(np.uint8).reshape(len(uniq), sub.shape[1])


def _groups(sig: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct set ids, classes sorted by set, start of each set's run plus the end)."""
    order = np.argsort(sig, kind="stable")
    ids, starts = np.unique(sig[order], return_index=True)
    return ids, order, np.append(starts, len(sig)).astype(np.int64)


__all__ = ["TILE_BYTES", "PortVerdicts"]
