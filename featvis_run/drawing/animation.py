"""Pictures of a sequence: frames labelled with their checkpoint, an animated GIF, and a small line plot.

Pillow encodes the GIF and matplotlib draws the plot; both are imported on first use. Everything returns bytes or
arrays (no file I/O): the caller writes them atomically.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from featvis_run.drawing.layout import pad_to_largest

__all__ = ["encode_gif", "label_frame", "line_plot"]


def label_frame(picture: np.ndarray, text: str) -> np.ndarray:
    """``picture`` (BGR) with a black caption bar on top holding ``text`` in white."""
    scale = max(0.45, min(picture.shape[1] / 640, 1.0))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    bar = np.zeros((th + base + 8, picture.shape[1], 3), np.uint8)
    cv2.putText(bar, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([bar, picture])


def encode_gif(frames: Sequence[np.ndarray], duration_ms: int = 600, loop: int = 0) -> bytes:
    """BGR frames (padded to the largest) as an animated GIF that loops; one GIF frame per input frame."""
    from PIL import Image

    if not frames:
        raise ValueError("no frames for a GIF")
    images = []
    for canvas in pad_to_largest(frames):
        rgb = Image.fromarray(np.ascontiguousarray(canvas[:, :, ::-1]))
        # fast octree quantization: Pillow's default (median cut) takes over a second per 640 x 480 frame
        images.append(rgb.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE))
    buf = io.BytesIO()
    # disposal=1 and optimize=False: Pillow keeps every frame, even one equal to the one before it
    images[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=duration_ms,
        loop=loop,
        disposal=1,
        optimize=False,
    )
    return buf.getvalue()


def line_plot(
    labels: Sequence[str], series: Mapping[str, Sequence[float | None]], title: str, size: tuple[int, int] = (480, 300)
) -> np.ndarray:
    """A small line plot (BGR, ``size`` = (width, height) px) of each named series over ``labels``; one y axis per
    series (the first on the left, the second on the right), missing values (None) left out."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(labels))
    axes = [ax, ax.twinx()] if len(series) > 1 else [ax]
    for (name, values), axis, colour in zip(series.items(), axes, ("tab:blue", "tab:red"), strict=False):
        ys = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        axis.plot(x, ys, marker="o", color=colour, label=name)
        axis.set_ylabel(name, color=colour, fontsize=8)
        axis.tick_params(axis="y", labelcolor=colour, labelsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[:, :, 2::-1])
