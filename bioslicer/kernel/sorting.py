"""One stable argsort kernel shared by the other kernels (instead of ``np.argsort`` / ``.sort()``).

numba compiles its own sort implementations (quicksort and mergesort, per key type) into
every process that first uses them, and never caches them on their own: each kernel that
called ``np.argsort`` paid several seconds of compile on a cold start. This one is an
ordinary ``cache=True`` kernel, compiled once for float64 keys and then loaded from the cache.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_RUN = 16   # runs sorted by insertion before merging


@njit(cache=True, nogil=True)
def insertion_sort_by(idx, a, b, keys):
    """Sort ``idx[a:b]`` in place by ``keys[idx]``, stable (short runs: no allocation)."""
    for i in range(a + 1, b):
        v = idx[i]
        k = keys[v]
        t = i
        while t > a and keys[idx[t - 1]] > k:
            idx[t] = idx[t - 1]
            t -= 1
        idx[t] = v


@njit(cache=True, nogil=True)
def argsort_stable(keys):
    """Indices that sort ``keys`` ascending; equal keys keep their order (as ``kind="mergesort"``).

    Parameters
    ----------
    keys : (n,) float64 (no NaN)

    Returns
    -------
    (n,) int64
    """
    n = keys.shape[0]
    src = np.empty(n, np.int64)
    for i in range(n):
        src[i] = i
    if n < 2:
        return src
    for a in range(0, n, _RUN):
        insertion_sort_by(src, a, min(a + _RUN, n), keys)
    dst = np.empty(n, np.int64)
    width = _RUN
    while width < n:
        for a in range(0, n, 2 * width):
            m = min(a + width, n)
            b = min(a + 2 * width, n)
            i = a
            j = m
            o = a
            if m < b and keys[src[m]] < keys[src[m - 1]]:
                while i < m and j < b:
                    if keys[src[j]] < keys[src[i]]:
                        dst[o] = src[j]
                        j += 1
                    else:
                        dst[o] = src[i]
                        i += 1
                    o += 1
            while i < m:
                dst[o] = src[i]
                i += 1
                o += 1
            while j < b:
                dst[o] = src[j]
                j += 1
                o += 1
        src, dst = dst, src
        width *= 2
    return src
