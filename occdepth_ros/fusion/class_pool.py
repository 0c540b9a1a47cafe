"""ClassEvidencePool: the temporal map's per-class evidence, one row per map voxel that has
any, instead of a row for every voxel of the window.

On a street about a tenth of the window's voxels ever carry class evidence (the rest are
free space or never seen), and a row of 19 float32 sums is most of a voxel's bytes, so
rows are handed out as voxels first take class evidence and taken back when they leave the
window. The pool starts at ``INITIAL_FRACTION`` of the window and doubles when it runs out,
never beyond the window itself: memory follows the scene but stays bounded.
"""

from __future__ import annotations

import numpy as np

INITIAL_FRACTION = 1 / 8  # of the window's voxels; a street drive stays below it
NO_ROW = 0  # row 0 is never handed out and stays zero: a voxel without class evidence


class ClassEvidencePool:
    """``evidence`` (rows, width) float32 sums and ``stamp`` (rows,) int32, the frame of each
    row's last evidence. ``max_rows``: the most rows ever needed (one per window voxel)."""

    def __init__(self, width: int, max_rows: int) -> None:
        self.width = int(width)
        self.max_rows = int(max_rows)
        rows = max(2, min(self.max_rows, int(self.max_rows * INITIAL_FRACTION)) + 1)
        self.evidence = np.zeros((rows, self.width), dtype=np.float32)
        self.stamp = np.zeros(rows, dtype=np.int32)
        self.clear()

    @property
    def capacity(self) -> int:
        """Rows that can be handed out without growing."""
        return len(self.stamp) - 1

    @property
    def in_use(self) -> int:
        return self.capacity - self._n_free

    @property
    def nbytes(self) -> int:
        return self.evidence.nbytes + self.stamp.nbytes + self._free.nbytes

    def take(self, count: int) -> np.ndarray:
        """``count`` zeroed rows (int32), growing the pool if it has fewer free."""
        if count > self._n_free:
            self._grow(count - self._n_free)
        self._n_free -= count
        return self._free[self._n_free:self._n_free + count][::-1].copy()

    def give_back(self, rows: np.ndarray) -> None:
        """Rows whose voxels left the window: zeroed and free again."""
        rows = rows[rows != NO_ROW]
        if len(rows) == 0:
            return
        self.evidence[rows] = 0
        self.stamp[rows] = 0
        self._free[self._n_free:self._n_free + len(rows)] = rows
        self._n_free += len(rows)

    def clear(self) -> None:
        """Every row free and zero (the map was reset)."""
        self.evidence.fill(0)
        self.stamp.fill(0)
        self._free = np.arange(len(self.stamp) - 1, NO_ROW, -1, dtype=np.int32)  # a stack: low rows go first
        self._n_free = len(self._free)

    def _grow(self, short: int) -> None:
        old = len(self.stamp)
        new = min(self.max_rows + 1, max(2 * old, old + short))
        if new - old < short:
            raise RuntimeError(f"class evidence pool: {short} more rows needed beyond its bound of {self.max_rows}")
        evidence = np.zeros((new, self.width), dtype=np.float32)
        evidence[:old] = self.evidence
        stamp = np.zeros(new, dtype=np.int32)
        stamp[:old] = self.stamp
        free = np.empty(new - 1, dtype=np.int32)
        added = np.arange(new - 1, old - 1, -1, dtype=np.int32)  # the new rows, beneath the old free ones
        free[:len(added)] = added
        free[len(added):len(added) + self._n_free] = self._free[:self._n_free]
        self.evidence, self.stamp, self._free = evidence, stamp, free
        self._n_free += len(added)
