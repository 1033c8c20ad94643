"""Offscreen renders to PNG: deterministic encoding (zlib, no timestamps), atomic files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import BioslicerError
from ..toolpath import Toolpath, atomic_write_bytes
from .layer import layer_plotter
from .scene3d import toolpath_plotter
from .style import DEFAULT_WINDOW


# ----------------------------------------------------------------------------- PNG output
def encode_png(img: np.ndarray, text: dict | None = None) -> bytes:
    """Encode an (H, W, 3|4) uint8 image as PNG bytes (no timestamps: deterministic).

    ``text`` (keyword -> str) is stored as ``iTXt`` chunks (UTF-8), e.g. the caption under
    ``Description``, so a program can read back what the picture says.
    """
    img = np.ascontiguousarray(img, dtype=np.uint8)
    h, w, c = img.shape
    color_type = {3: 2, 4: 6}[c]
    raw = np.zeros((h, w * c + 1), np.uint8)
    raw[:, 1:] = img.reshape(h, w * c)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    texts = b"".join(chunk(b"iTXt", k.encode("latin-1") + b"\0\0\0\0\0" + v.encode("utf-8"))
                     for k, v in sorted((text or {}).items()))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + texts
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))


def png_text(data: bytes) -> dict:
    """The text chunks (``tEXt``/``iTXt`` without compression) of PNG bytes: keyword -> str."""
    out, pos = {}, 8
    while pos + 8 <= len(data):
        n, tag = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if tag == b"tEXt":
            k, _, v = body.partition(b"\0")
            out[k.decode("latin-1")] = v.decode("latin-1")
        elif tag == b"iTXt":
            k, _, rest = body.partition(b"\0")
            if rest[:1] == b"\0":                    # not compressed
                _, _, rest = rest[2:].partition(b"\0")  # language tag
                _, _, v = rest.partition(b"\0")          # translated keyword
                out[k.decode("latin-1")] = v.decode("utf-8")
        pos += 12 + n
    return out


def plotter_image(plotter) -> np.ndarray:
    """Render ``plotter`` offscreen and return the (H, W, 3) uint8 image; closes the plotter."""
    try:
        img = plotter.screenshot(return_img=True)
    finally:
        plotter.close()
    return np.asarray(img)[..., :3]


def write_plotter_png(path, plotter) -> Path:
    """Render ``plotter`` offscreen, close it and write the PNG atomically; returns the path.

    The caption of the scene (``plotter.preview_info["caption"]``), if any, goes into the PNG
    as its ``Description`` text.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise BioslicerError(f"preview image {path} must end in .png")
    caption = (getattr(plotter, "preview_info", None) or {}).get("caption")
    atomic_write_bytes(path, encode_png(plotter_image(plotter), {"Description": caption} if caption else None))
    return path


def render_png(path, toolpath: Toolpath | None = None, mesh=None, layers=None, color: str = "kind",
               voxels=None, show_blocks: bool = True, off_screen: bool = True,
               max_segments: int = 2_000_000, title: str | None = None, window_size=DEFAULT_WINDOW,
               max_line_pixels: float | None = None, source: str | None = None) -> Path:
    """Render the 3-D preview (see :func:`toolpath_plotter`) offscreen to a PNG file.

    Parameters
    ----------
    path : str or Path
        Output ``.png``; written atomically.
    toolpath, mesh, layers, color, voxels, show_blocks, max_segments, title
        As for :func:`toolpath_plotter`.
    off_screen : bool
        Ignored: the render is always offscreen.
    window_size : (int, int)
        Image size in pixels (default 1200 x 900).
    max_line_pixels : float, optional
        Render budget, see :func:`toolpath_plotter`.
    source : str, optional
        One line saying what the toolpath is (see :func:`toolpath_plotter`).

    Returns
    -------
    path : Path
        The file written.
    """
    p = toolpath_plotter(toolpath=toolpath, mesh=mesh, layers=layers, color=color, voxels=voxels,
                         show_blocks=show_blocks, off_screen=True, max_segments=max_segments, title=title,
                         window_size=window_size, slider=False, max_line_pixels=max_line_pixels, source=source)
    return write_plotter_png(path, p)


def render_layer_png(path, toolpath: Toolpath, layer: int, printer=None, contours=None,
                     window_size=DEFAULT_WINDOW, max_segments: int = 2_000_000, title: str | None = None,
                     max_line_pixels: float | None = None) -> Path:
    """Render the 2-D view of one layer (see :func:`layer_plotter`) offscreen to a PNG file.

    Returns
    -------
    path : Path
        The file written (atomically).
    """
    p = layer_plotter(toolpath, layer, printer=printer, contours=contours, off_screen=True,
                      window_size=window_size, max_segments=max_segments, title=title,
                      max_line_pixels=max_line_pixels)
    return write_plotter_png(path, p)
