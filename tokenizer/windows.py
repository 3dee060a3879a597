"""The seed's preprocessing: 250-sample windows, per-window min-max to [0, 1], blocks of n samples."""
from __future__ import annotations

import numpy as np

WINDOW = 250  # samples per window (0.694 s at 360 Hz), the seed report's choice


def pad_to_windows(x: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Pad a 1-D signal at the end, repeating its last sample, to a whole number of windows.

    This is the one documented handling of a tail shorter than a window: it is encoded padded and the
    padding is cut off again by ``decode`` (the original length travels in ``state``).
    """
    n = len(x)
    total = max(1, -(-n // window)) * window
    if total == n:
        return np.asarray(x)
    return np.concatenate([x, np.full(total - n, x[-1] if n else 0.0, dtype=x.dtype)])


def to_windows(x: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """``(samples,)`` -> ``(n_windows, window)``, dropping an incomplete tail (training data)."""
    n = len(x) // window
    return np.asarray(x[: n * window]).reshape(n, window)


def minmax_normalize(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-window min-max to [0, 1]. Returns ``(normalized, mins, maxs)``.

    A flat window (max == min) maps to all zeros and decodes back to its constant value.
    """
    w = np.asarray(windows, dtype=np.float32)
    lo = w.min(axis=1)
    hi = w.max(axis=1)
    span = np.where(hi > lo, hi - lo, 1.0).astype(np.float32)
    return (w - lo[:, None]) / span[:, None], lo, hi


def minmax_denormalize(norm: np.ndarray, mins: np.ndarray, maxs: np.ndarray) -> np.ndarray:
    """Inverse of :func:`minmax_normalize` (window by window)."""
    span = (np.asarray(maxs) - np.asarray(mins)).astype(np.float32)  # 0 for a flat window: exact constant
    return norm * span[:, None] + mins[:, None]


def to_blocks(windows: np.ndarray, block_size: int) -> np.ndarray:
    """``(n_windows, window)`` -> ``(n_windows * window / n, 1, n)``, the autoencoder's input."""
    nw, w = windows.shape
    if w % block_size:
        raise ValueError(f"block size {block_size} does not divide the window length {w}")
    return windows.reshape(nw * (w // block_size), 1, block_size)
