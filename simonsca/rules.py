"""Conway's Game of Life (B3/S23) on numpy boolean arrays: the ground truth for scoring.

Public functions
----------------
``step(grid, wrap_x=True, wrap_y=True, generations=1, *, method="auto")``
    The grid after ``generations`` applications of B3/S23 (a new boolean array).
``neighbor_counts(grid, wrap_x=True, wrap_y=True)``
    The 8-neighbour live counts (``np.int64``).
``step_batch(grids, ...)`` / ``neighbor_counts_batch(grids, ...)``
    The same for a stack of equally shaped boards, shape ``(boards, height, width)``, all with the
    same wrap flags. ``step``/``neighbor_counts`` accept only 2-D grids, the ``*_batch`` functions
    only 3-D stacks, so a mistaken shape is an error and never silently reinterpreted.
``reference_step`` / ``reference_neighbor_counts``
    The slow per-cell Python loop that *defines* the semantics. Used by the tests (the fast paths
    must agree with it) and by the benchmarks (the speed-up is measured against it). Never use it
    for real work.

Semantics
---------
``x`` is the column (width) axis, ``y`` the row (height) axis. The eight neighbours of ``(y, x)``
are ``(y + dy, x + dx)`` for ``dy, dx`` in ``{-1, 0, 1}`` except ``(0, 0)``. On a wrapped axis the
coordinate is taken modulo the axis length, exactly as ``(x + dx) % width``; on an axis without
wrap, coordinates beyond the edge are dead cells. On a wrapped axis of length 1 or 2 a cell is
therefore its own neighbour, or counts the same neighbour twice: a lone live cell on a wrapped
1x1 grid has 8 live neighbours.

Two fast paths, chosen by size (``method="auto"``) or by name:

* ``"bytes"`` -- one ``uint8`` per cell in a grid padded by one ghost row/column on each side
  (filled from the opposite edge on a wrapped axis, dead otherwise); the 3x3 box sum is separable,
  so two in-place adds along each axis give it. Best for small grids and batches of boards.
* ``"packed"`` -- 64 cells per ``uint64`` word along each row; neighbour sums by bit-sliced
  adders (about 25 whole-array bitwise operations per generation, each covering 64 cells).
  Best for large grids and for many generations.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

__all__ = [
    "PACKED_MIN_CELLS",
    "neighbor_counts",
    "neighbor_counts_batch",
    "reference_neighbor_counts",
    "reference_step",
    "step",
    "step_batch",
]

Method = Literal["auto", "bytes", "packed"]

#: ``method="auto"`` uses the bit-packed path for boards with at least this many cells
#: (height x width, per board), the byte path below it. Measured on a shared 2-core x86 box:
#: bytes wins up to 512x512 (2-3x), the two tie at 1024x1024, packed wins from 2048x2048 on
#: (2-10x: the byte path's large temporaries stop fitting in cache).
PACKED_MIN_CELLS = 1 << 20

_WORD_BITS = 64
_WORD = np.dtype("<u8")  # cell x of a row is bit x % 64 of word x // 64 (np.packbits "little")


# --------------------------------------------------------------------------------------------
# public API


def step(
    grid: Any,
    wrap_x: bool = True,
    wrap_y: bool = True,
    generations: int = 1,
    *,
    method: Method = "auto",
) -> np.ndarray:
    """Return ``grid`` after ``generations`` steps of B3/S23, as a new boolean array.

    ``grid`` is a non-empty 2-D array of booleans (or of 0/1 numbers); ``generations=0`` returns
    a copy. ``method`` picks the implementation ("auto", "bytes" or "packed"); all give the same
    result. Raises ``ValueError`` naming the problem for a bad grid, flag or generation count.
    """
    board = _as_board(grid, ndim=2, name="grid")
    return _step(board, wrap_x, wrap_y, generations, method)


def step_batch(
    grids: Any,
    wrap_x: bool = True,
    wrap_y: bool = True,
    generations: int = 1,
    *,
    method: Method = "auto",
) -> np.ndarray:
    """:func:`step` for a stack of boards of shape ``(boards, height, width)``, all with the
    same wrap flags; returns a boolean array of the same shape."""
    boards = _as_board(grids, ndim=3, name="grids")
    return _step(boards, wrap_x, wrap_y, generations, method)


def neighbor_counts(grid: Any, wrap_x: bool = True, wrap_y: bool = True) -> np.ndarray:
    """Return the number of live cells among each cell's 8 neighbours, as ``np.int64``."""
    board = _as_board(grid, ndim=2, name="grid")
    return _counts(board, _as_flag(wrap_x, "wrap_x"), _as_flag(wrap_y, "wrap_y"))


def neighbor_counts_batch(grids: Any, wrap_x: bool = True, wrap_y: bool = True) -> np.ndarray:
    """:func:`neighbor_counts` for a stack of boards of shape ``(boards, height, width)``."""
    boards = _as_board(grids, ndim=3, name="grids")
    return _counts(boards, _as_flag(wrap_x, "wrap_x"), _as_flag(wrap_y, "wrap_y"))


# --------------------------------------------------------------------------------------------
# the slow reference (tests and benchmarks only)


def reference_neighbor_counts(grid: Any, wrap_x: bool = True, wrap_y: bool = True) -> np.ndarray:
    """SLOW reference: a per-cell Python loop over the 8 neighbours, ``(x + dx) % width`` on a
    wrapped axis. Defines the semantics the fast paths are tested against; not for real use."""
    g = _as_board(grid, ndim=2, name="grid")
    h, w = g.shape
    out = np.zeros((h, w), dtype=np.int64)
    cells = g.tolist()
    for y in range(h):
        for x in range(w):
            total = 0
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    if dx == 0 and dy == 0:
                        continue
                    yy, xx = y + dy, x + dx
                    if wrap_y:
                        yy %= h
                    if wrap_x:
                        xx %= w
                    if 0 <= yy < h and 0 <= xx < w:
                        total += cells[yy][xx]
            out[y, x] = total
    return out


def reference_step(
    grid: Any, wrap_x: bool = True, wrap_y: bool = True, generations: int = 1
) -> np.ndarray:
    """SLOW reference: :func:`reference_neighbor_counts` then B3/S23 per cell, ``generations``
    times. Defines the semantics the fast paths are tested against; not for real use."""
    g = _as_board(grid, ndim=2, name="grid").copy()
    for _ in range(_as_generations(generations)):
        n = reference_neighbor_counts(g, wrap_x, wrap_y)
        h, w = g.shape
        nxt = np.zeros((h, w), dtype=bool)
        for y in range(h):
            for x in range(w):
                nxt[y, x] = n[y, x] == 3 or (g[y, x] and n[y, x] == 2)
        g = nxt
    return g


# --------------------------------------------------------------------------------------------
# validation


def _as_board(grid: Any, ndim: int, name: str) -> np.ndarray:
    """``grid`` as a boolean array of ``ndim`` dimensions, or a ValueError naming the problem."""
    try:
        arr = np.asarray(grid)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise ValueError(f"{name} must be a rectangular array of booleans: {exc}") from None
    want = "2-D" if ndim == 2 else "3-D (boards, height, width)"
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold booleans or 0/1 numbers, got dtype {arr.dtype}")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} must hold booleans or 0/1 numbers, got {arr[where].item()!r} at index {where}"
        )
    return arr != 0


def _as_flag(value: Any, name: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"{name} must be True or False, got {value!r}")


def _as_generations(value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"generations must be a non-negative integer, got {value!r}")  # noqa: TRY004
    if value < 0:
        raise ValueError(f"generations must be >= 0, got {value}")
    return int(value)


def _as_method(value: Any) -> str:
    if value not in ("auto", "bytes", "packed"):
        raise ValueError(f"method must be 'auto', 'bytes' or 'packed', got {value!r}")
    return str(value)


# --------------------------------------------------------------------------------------------
# dispatch


def _step(board: np.ndarray, wrap_x: Any, wrap_y: Any, generations: Any, method: Any) -> np.ndarray:
    wx, wy = _as_flag(wrap_x, "wrap_x"), _as_flag(wrap_y, "wrap_y")
    gens = _as_generations(generations)
    how = _as_method(method)
    if gens == 0:
        return np.array(board, dtype=bool, copy=True)
    if how == "auto":
        cells = board.shape[-2] * board.shape[-1]
        how = "packed" if cells >= PACKED_MIN_CELLS else "bytes"
    if how == "packed":
        return _step_packed(board, wx, wy, gens)
    return _step_bytes(board, wx, wy, gens)


# --------------------------------------------------------------------------------------------
# byte path: one uint8 per cell, ghost-padded, separable 3x3 box sum on the flattened buffer
#
# The padded boards (..., h + 2, w + 2) are one contiguous buffer. Summing it flat with offsets
# of 1 (along rows) and w + 2 (across rows) gives the right 3x3 box sum at every interior cell;
# what lands on ghost cells is garbage that _fill_ghosts overwrites before the next generation.
# Working on one long 1-D array keeps numpy's inner loops long even for a batch of tiny boards.


def _padded(board: np.ndarray) -> np.ndarray:
    """A uint8 copy of ``board`` (..., h, w) with one ghost row/column on each side."""
    h, w = board.shape[-2:]
    pad = np.zeros(board.shape[:-2] + (h + 2, w + 2), dtype=np.uint8)
    pad[..., 1:-1, 1:-1] = board
    return pad


def _fill_ghosts(pad: np.ndarray, wrap_x: bool, wrap_y: bool) -> None:
    """Set the ghost cells: copies of the opposite edge on a wrapped axis, dead otherwise (x
    first, so that the corner ghosts come out right)."""
    h, w = pad.shape[-2] - 2, pad.shape[-1] - 2
    if wrap_x:
        pad[..., 1:-1, 0] = pad[..., 1:-1, w]
        pad[..., 1:-1, w + 1] = pad[..., 1:-1, 1]
    else:
        pad[..., :, 0] = 0
        pad[..., :, w + 1] = 0
    if wrap_y:
        pad[..., 0, :] = pad[..., h, :]
        pad[..., h + 1, :] = pad[..., 1, :]
    else:
        pad[..., 0, :] = 0
        pad[..., h + 1, :] = 0


class _FlatBoxSum:
    """Scratch buffers for 3x3 box sums over a padded buffer; ``box`` is (..., h + 2, w + 2)
    and holds the sum for padded cell (y, x) at [..., y - 1, x - 1]."""

    def __init__(self, pad: np.ndarray) -> None:
        self.flat = pad.reshape(-1)
        self.stride = pad.shape[-1]
        size = self.flat.size
        self.valid = size - 2 - 2 * self.stride  # flat positions with a whole 3x3 box
        self.rows = np.empty(size - 2, dtype=np.uint8)
        self.box = np.zeros(pad.shape, dtype=np.uint8)
        self.box_flat = self.box.reshape(-1)[: self.valid]
        start = 1 + self.stride
        self.centre = self.flat[start : start + self.valid]

    def compute(self) -> np.ndarray:
        """Fill ``box_flat`` with the box sums (centre included, at most 9) and return it."""
        flat, rows, s, out = self.flat, self.rows, self.stride, self.box_flat
        np.add(flat[:-2], flat[1:-1], out=rows)
        rows += flat[2:]
        np.add(rows[: -2 * s], rows[s:-s], out=out)
        out += rows[2 * s :]
        return out


def _counts(board: np.ndarray, wrap_x: bool, wrap_y: bool) -> np.ndarray:
    h, w = board.shape[-2:]
    pad = _padded(board)
    _fill_ghosts(pad, wrap_x, wrap_y)
    sums = _FlatBoxSum(pad)
    sums.compute()
    sums.box_flat -= sums.centre
    return sums.box[..., :h, :w].astype(np.int64)


def _step_bytes(board: np.ndarray, wrap_x: bool, wrap_y: bool, generations: int) -> np.ndarray:
    pad = _padded(board)
    sums = _FlatBoxSum(pad)
    centre, alive = sums.centre, sums.centre.view(np.bool_)
    for _ in range(generations):
        _fill_ghosts(pad, wrap_x, wrap_y)
        box = sums.compute()  # neighbours + self
        box -= centre  # neighbours n
        box |= centre  # n | alive == 3  <=>  n == 3, or n == 2 and alive
        np.equal(box, 3, out=alive)
    return pad[..., 1:-1, 1:-1].view(np.bool_).copy()


# --------------------------------------------------------------------------------------------
# packed path: 64 cells per uint64 word along each row, bit-sliced adders
#
# State: words of shape (..., h + 2, words); rows 1..h are the board, rows 0 and h + 1 ghost
# rows (copies of the opposite edge when wrap_y, else dead); bits past the width stay dead.
# A generation reads one state buffer and writes the other, in strips of rows small enough that
# the temporaries stay in cache.

#: About this many words per strip (x 9 scratch arrays x 8 bytes: ~1 MiB, about an L2 cache).
_STRIP_WORDS = 1 << 14


def _pack(board: np.ndarray) -> np.ndarray:
    h, w = board.shape[-2:]
    words = -(-w // _WORD_BITS)
    packed = np.packbits(board, axis=-1, bitorder="little")  # (..., h, ceil(w / 8)) uint8
    buf = np.zeros(board.shape[:-2] + (h + 2, words * 8), dtype=np.uint8)
    buf[..., 1:-1, : packed.shape[-1]] = packed
    return buf.view(_WORD)


def _unpack(state: np.ndarray, width: int) -> np.ndarray:
    inner = state[..., 1:-1, :].view(np.uint8)
    return np.unpackbits(inner, axis=-1, count=width, bitorder="little").view(np.bool_)


class _PackedStep:
    """One generation of the packed path, strip by strip, with reusable scratch arrays."""

    def __init__(self, state: np.ndarray, width: int, wrap_x: bool, wrap_y: bool) -> None:
        self.lead = state.shape[:-2]
        self.height = state.shape[-2] - 2
        self.words = n = state.shape[-1]
        self.wrap_x, self.wrap_y = wrap_x, wrap_y
        top = width - 1 - (n - 1) * _WORD_BITS  # bit of the last column in the last word
        self.top = _WORD.type(top)
        self.tail_mask = None if top == _WORD_BITS - 1 else _WORD.type((1 << (top + 1)) - 1)
        per_row = n * int(np.prod(self.lead, dtype=np.int64))
        self.strip = max(1, min(self.height, _STRIP_WORDS // per_row))
        outer = self.lead + (self.strip + 2, n)
        inner = self.lead + (self.strip, n)
        self.a, self.b, self.c, self.m0, self.m1 = (np.empty(outer, _WORD) for _ in range(5))
        self.s0, self.c0, self.t, self.q = (np.empty(inner, _WORD) for _ in range(4))

    def __call__(self, cur: np.ndarray, nxt: np.ndarray) -> None:
        h = self.height
        if self.wrap_y:
            cur[..., 0, :] = cur[..., h, :]
            cur[..., h + 1, :] = cur[..., 1, :]
        for r0 in range(0, h, self.strip):
            r1 = min(h, r0 + self.strip)
            self._strip(cur[..., r0 : r1 + 2, :], nxt[..., r0 + 1 : r1 + 1, :], r1 - r0)
        if self.tail_mask is not None:
            nxt[..., 1:-1, -1] &= self.tail_mask

    def _strip(self, src: np.ndarray, dst: np.ndarray, k: int) -> None:
        """``dst`` (k rows) = next generation of the middle k rows of ``src`` (k + 2 rows)."""
        one, high, n = _WORD.type(1), _WORD.type(_WORD_BITS - 1), self.words
        west, east, tmp = self.a[..., : k + 2, :], self.b[..., : k + 2, :], self.c[..., : k + 2, :]
        m0, m1 = self.m0[..., : k + 2, :], self.m1[..., : k + 2, :]
        s0, c0, t, q = (x[..., :k, :] for x in (self.s0, self.c0, self.t, self.q))
        # west[x] = cell x - 1, east[x] = cell x + 1 (rows are little-endian bit strings)
        np.left_shift(src, one, out=west)
        np.right_shift(src, one, out=east)
        if n > 1:
            np.right_shift(src[..., :-1], high, out=tmp[..., :-1])
            west[..., 1:] |= tmp[..., :-1]
            np.left_shift(src[..., 1:], high, out=tmp[..., 1:])
            east[..., :-1] |= tmp[..., 1:]
        if self.wrap_x:
            west[..., 0] |= (src[..., n - 1] >> self.top) & one
            east[..., n - 1] |= (src[..., 0] & one) << self.top
        # m = west + east, then hsum = m + centre, each as two bit planes (ones, twos)
        np.bitwise_xor(west, east, out=m0)
        np.bitwise_and(west, east, out=m1)
        h0, h1 = west, east  # reuse
        np.bitwise_and(m0, src, out=h1)
        h1 |= m1
        np.bitwise_xor(m0, src, out=h0)
        # neighbours n = hsum(y-1) + m(y) + hsum(y+1) = s0 + 2 * (u1 + w1 + mm1 + c0)
        u0, w0, mm0 = h0[..., :-2, :], h0[..., 2:, :], m0[..., 1:-1, :]
        u1, w1, mm1 = h1[..., :-2, :], h1[..., 2:, :], m1[..., 1:-1, :]
        np.bitwise_xor(u0, w0, out=t)
        np.bitwise_xor(t, mm0, out=s0)  # ones bit of n
        t &= mm0
        np.bitwise_and(u0, w0, out=c0)
        c0 |= t  # carry of the ones column
        np.bitwise_xor(u1, w1, out=t)
        np.bitwise_and(u1, w1, out=q)
        tmp = tmp[..., :k, :]
        np.bitwise_and(t, mm1, out=tmp)
        q |= tmp  # at least two of u1, w1, mm1
        t ^= mm1  # odd number of u1, w1, mm1
        t ^= c0
        # n in {2, 3}  <=>  exactly one of u1, w1, mm1, c0  <=>  t and not q
        np.bitwise_not(q, out=q)
        t &= q
        s0 |= src[..., 1:-1, :]  # n odd, or alive: n == 3, or n == 2 and alive
        np.bitwise_and(t, s0, out=dst)


def _step_packed(board: np.ndarray, wrap_x: bool, wrap_y: bool, generations: int) -> np.ndarray:
    cur = _pack(board)
    nxt = np.zeros_like(cur)
    one_generation = _PackedStep(cur, board.shape[-1], wrap_x, wrap_y)
    for _ in range(generations):
        one_generation(cur, nxt)
        cur, nxt = nxt, cur
    return _unpack(cur, board.shape[-1])
