"""PNG/JPEG/TIFF reading: depth, grey conversion, sidecar spacing and header-only size refusal."""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from cervisag_edge.errors import InputError
from cervisag_edge.io import ReadLimits, read_image


def two_level(dtype: type, low: int, high: int, mid: int | None = None) -> np.ndarray:
    img = np.full((20, 20), low, dtype=dtype)
    img[:, 10:] = high
    if mid is not None:
        img[0, 0] = mid  # 1 of 200 low pixels: the 0.5 % percentile stays at ``low``
    return img


def test_png_8_bit_two_levels(tmp_path: Path) -> None:
    # half 50, half 200 -> 0.5 % and 99.5 % percentiles are 50 and 200 -> display 0 and 1
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), two_level(np.uint8, 50, 200))
    img = read_image(path, pixel_spacing_mm=(0.1, 0.1))
    assert img.format == "png" and img.dataset is None and img.size_px == (20, 20)
    assert img.display[0, 0] == 0.0 and img.display[0, 19] == 1.0
    assert img.spacing_source == "user" and img.warnings == ()


def test_png_16_bit_depth_kept(tmp_path: Path) -> None:
    # 1000 / 1100 with one pixel at 1050 -> (1050 - 1000) / 100 = 0.5; an 8-bit reduction would merge the levels
    path = tmp_path / "b.png"
    cv2.imwrite(str(path), two_level(np.uint16, 1000, 1100, mid=1050))
    img = read_image(path, pixel_spacing_mm=(0.1, 0.1))
    assert img.display[0, 0] == pytest.approx(0.5, abs=1e-6)
    assert img.display[5, 5] == 0.0 and img.display[5, 15] == 1.0


def test_colour_png_converted_with_warning(tmp_path: Path) -> None:
    bgr = np.zeros((10, 12, 3), np.uint8)
    bgr[:, :4] = (255, 0, 0)  # blue
    bgr[:, 4:8] = (0, 0, 255)  # red
    bgr[:, 8:] = (0, 255, 0)  # green
    path = tmp_path / "c.png"
    cv2.imwrite(str(path), bgr)
    img = read_image(path, pixel_spacing_mm=(1, 1))
    assert img.display[0, 0] == 0.0 and img.display[0, 11] == 1.0
    assert 0.0 < img.display[0, 5] < 1.0  # luma: blue < red < green
    assert any("converted to grey" in w for w in img.warnings)


def test_grey_stored_as_rgb_has_no_warning(tmp_path: Path) -> None:
    grey = two_level(np.uint8, 10, 90)
    path = tmp_path / "g.png"
    cv2.imwrite(str(path), cv2.merge([grey, grey, grey]))
    img = read_image(path, pixel_spacing_mm=(1, 1))
    assert img.warnings == () and img.display[0, 19] == 1.0


def test_sidecar_spacing_precedence(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    cv2.imwrite(str(path), two_level(np.uint8, 0, 255))
    img = read_image(path)
    assert img.pixel_spacing_mm is None and img.spacing_source == "none"
    assert any("p.png.json" in w and "p.json" in w for w in img.warnings)
    (tmp_path / "p.json").write_text(json.dumps({"pixel_spacing_mm": [0.2, 0.15]}))
    img = read_image(path)
    assert img.pixel_spacing_mm == (0.2, 0.15) and img.spacing_source == "sidecar"
    (tmp_path / "p.png.json").write_text(json.dumps({"pixel_spacing_mm": [0.3, 0.25]}))
    assert read_image(path).pixel_spacing_mm == (0.3, 0.25)
    assert read_image(path, pixel_spacing_mm=(0.5, 0.5)).spacing_source == "user"


@pytest.mark.parametrize("content", ['{"pixel_spacing_mm": [0, 0.1]}', '{"pixel_spacing_mm": 0.1}', "not json"])
def test_invalid_sidecar_is_warning(tmp_path: Path, content: str) -> None:
    path = tmp_path / "q.png"
    cv2.imwrite(str(path), two_level(np.uint8, 0, 255))
    (tmp_path / "q.png.json").write_text(content)
    img = read_image(path)
    assert img.pixel_spacing_mm is None and img.spacing_source == "none"
    assert any("q.png.json" in w for w in img.warnings)


def test_jpeg_and_tiff(tmp_path: Path) -> None:
    grey = two_level(np.uint8, 20, 220)
    jpg = tmp_path / "j.jpg"
    cv2.imwrite(str(jpg), np.pad(grey, ((0, 10), (0, 30)), mode="edge"))
    img = read_image(jpg, pixel_spacing_mm=(1, 1))
    assert img.format == "jpeg" and img.size_px == (50, 30)
    tif = tmp_path / "t.tif"
    cv2.imwrite(str(tif), two_level(np.uint16, 1000, 1100, mid=1050)[:, :17])
    img = read_image(tif, pixel_spacing_mm=(1, 1))
    assert img.format == "tiff" and img.size_px == (17, 20)
    assert img.display[0, 0] == pytest.approx(0.5, abs=1e-6)


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def test_huge_png_header_refused_without_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(np, "fromfile", lambda *a, **k: calls.append(2))
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(40000, 40000) + b"\x00" * 64)
    with pytest.raises(InputError, match=r"bomb\.png: PNG header size 40000 x 40000 = 1600000000 pixels"):
        read_image(path)
    assert calls == []


def test_huge_jpeg_and_tiff_headers_refused(tmp_path: Path) -> None:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x01\x02\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 30000, 20000, 1) + b"\x01\x11\x00"
    jpg = tmp_path / "bomb.jpg"
    jpg.write_bytes(b"\xff\xd8" + app0 + sof + b"\xff\xd9")
    with pytest.raises(InputError, match=r"bomb\.jpg: JPEG header size 20000 x 30000"):
        read_image(jpg)
    entries = struct.pack("<HHII", 256, 4, 1, 50000) + struct.pack("<HHII", 257, 3, 1, 40000)
    tif = tmp_path / "bomb.tif"
    tif.write_bytes(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2) + entries + b"\x00" * 4)
    with pytest.raises(InputError, match=r"bomb\.tif: TIFF header size 50000 x 40000"):
        read_image(tif)


def test_small_limit_refuses_normal_png(tmp_path: Path) -> None:
    path = tmp_path / "s.png"
    cv2.imwrite(str(path), np.zeros((30, 30), np.uint8))
    with pytest.raises(InputError, match="max_pixels"):
        read_image(path, limits=ReadLimits(max_pixels=899))


def test_truncated_and_corrupt_png(tmp_path: Path) -> None:
    short = tmp_path / "short.png"
    short.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(InputError, match=r"short\.png: truncated PNG"):
        read_image(short)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(_png_header(8, 8) + b"garbage" * 10)
    with pytest.raises(InputError, match=r"corrupt\.png: PNG data could not be decoded"):
        read_image(corrupt)
