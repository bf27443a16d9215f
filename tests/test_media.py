"""Image loading: every accepted source, normalisation, limits and bad input."""

import base64
import io
import random

import numpy as np
import pytest
from PIL import Image

from mm_rag_components.errors import MediaError
from mm_rag_components.media import content_hash, load_image, load_image_with_hash


def encoded(colour=(255, 0, 0), size=(8, 6), mode="RGB", fmt="PNG", **save) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format=fmt, **save)
    return buf.getvalue()


def test_every_source_kind_gives_the_same_rgb_image(tmp_path):
    data = encoded()
    path = tmp_path / "x.png"
    path.write_bytes(data)
    b64 = base64.b64encode(data).decode()
    sources = [path, str(path), data, bytearray(data), b64, "data:image/png;base64," + b64]
    hashes = {load_image_with_hash(s).sha256 for s in sources}
    assert hashes == {content_hash(data)}
    assert load_image_with_hash(path).origin == str(path)
    for source in sources:
        img = load_image(source)
        assert img.mode == "RGB" and img.size == (8, 6) and img.getpixel((0, 0)) == (255, 0, 0)
    pil = load_image(Image.open(path))
    assert pil.mode == "RGB" and pil.getpixel((0, 0)) == (255, 0, 0)


def test_base64_strings_containing_slashes_are_not_mistaken_for_paths():
    jpeg = encoded((0, 128, 0), size=(8, 8), fmt="JPEG")
    b64 = base64.b64encode(jpeg).decode()
    assert b64.startswith("/9j/")  # every JPEG's base64 starts like an absolute path
    assert load_image(b64).size == (8, 8)


def test_long_base64_strings_decode_instead_of_failing_as_file_names():
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    b64 = base64.b64encode(buf.getvalue()).decode()
    assert len(b64) > 5000
    assert load_image(b64).size == (64, 64)


@pytest.mark.parametrize(
    "mode, colour, expected",
    [
        ("L", 128, (128, 128, 128)),
        ("P", 3, None),  # palette index 3 → whatever colour the palette holds, as RGB
        ("RGBA", (0, 0, 0, 0), (255, 255, 255)),  # transparent pixels flattened on white
        ("LA", (10, 255), (10, 10, 10)),
        ("CMYK", (0, 0, 0, 0), (255, 255, 255)),
    ],
)
def test_other_modes_become_rgb(mode, colour, expected):
    img = load_image(encoded(colour, mode=mode, fmt="TIFF" if mode == "CMYK" else "PNG"))
    assert img.mode == "RGB" and img.size == (8, 6)
    if expected is not None:
        assert img.getpixel((0, 0)) == expected
    pil = load_image(Image.new(mode, (3, 3), colour))
    assert pil.mode == "RGB"


def test_16_bit_greyscale_keeps_its_tones():
    ramp = (np.arange(64, dtype=np.uint16) * 1024).reshape(8, 8)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")
    img = load_image(buf.getvalue())
    values = np.asarray(img)[..., 0].ravel()
    assert img.mode == "RGB"
    np.testing.assert_allclose(values, ramp.ravel() / 257, atol=1)  # not clipped to white


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    assert load_image(buf.getvalue()).size == (20, 40)
    assert load_image(Image.open(io.BytesIO(buf.getvalue()))).size == (20, 40)


def test_urls_are_refused_unless_enabled_and_never_fetched(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a URL was fetched")

    monkeypatch.setattr("mm_rag_components.remote.urls.fetch", no_network)
    for url in ("https://example.com/cat.png", "HTTP://example.com/cat.jpg"):
        with pytest.raises(MediaError, match="allow_urls"):
            load_image(url)


def test_pixel_limit_guards_against_bombs_and_can_be_raised():
    data = encoded(size=(3000, 3000))
    with pytest.raises(MediaError, match="exceeds the limit of 1,000,000"):
        load_image(data, max_pixels=1_000_000)
    assert load_image(data, max_pixels=10_000_000).size == (3000, 3000)
    assert load_image(data, max_pixels=None).size == (3000, 3000)
    with pytest.raises(MediaError, match="exceeds the limit"):
        load_image(Image.new("RGB", (100, 100)), max_pixels=9_999)


def _random_bytes() -> bytes:
    return random.Random(0).randbytes(2048)


def _half_a_noisy_jpeg() -> bytes:
    """A JPEG whose header is intact but whose pixel data stops half way."""
    noise = np.random.default_rng(1).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="JPEG")
    data = buf.getvalue()
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"", "empty"),
        (b"this is text, not an image", "not a recognised image"),
        (_random_bytes(), "not a recognised image"),
        (encoded(size=(64, 64))[:60], "truncated|cannot open|corrupt"),
        (_half_a_noisy_jpeg(), "corrupt or truncated"),
    ],
    ids=["zero-bytes", "text-named-jpg", "random-bytes", "truncated-png", "truncated-jpeg-body"],
)
def test_bad_files_raise_media_error_naming_the_file(tmp_path, payload, match):
    path = tmp_path / "bad.jpg"
    path.write_bytes(payload)
    with pytest.raises(MediaError, match=match) as info:
        load_image(path)
    assert "bad.jpg" in str(info.value)
    with pytest.raises(MediaError):
        load_image(payload)


def test_missing_file_and_garbage_strings():
    with pytest.raises(MediaError, match="no such file"):
        load_image("/no/such/image.png")
    with pytest.raises(MediaError, match="no such file"):
        load_image("photos/cat")
    with pytest.raises(MediaError, match="neither"):
        load_image("not base64 !!!")
    with pytest.raises(MediaError, match="base64"):
        load_image("data:image/png,%89PNG")
    with pytest.raises(MediaError, match="unsupported image source type"):
        load_image(12345)


def test_content_hash_is_stable():
    assert content_hash(b"abc") == content_hash("abc") == content_hash(b"abc")
    assert content_hash(b"abc") != content_hash(b"abd")
    data = encoded()
    assert load_image_with_hash(data).sha256 == load_image_with_hash(bytes(data)).sha256 == content_hash(data)
    first = load_image_with_hash(Image.new("RGB", (5, 5), (1, 2, 3))).sha256
    assert first == load_image_with_hash(Image.new("RGB", (5, 5), (1, 2, 3))).sha256
    assert first != load_image_with_hash(Image.new("RGB", (5, 5), (1, 2, 4))).sha256


def test_only_regular_files_are_read_and_only_up_to_the_limit(tmp_path):
    import os

    from mm_rag_components.media import read_image_bytes, read_regular_file

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # nobody writes: opening it for a blocking read would hang
    with pytest.raises(MediaError, match=r"not a regular file \(FIFO\)"):
        load_image(fifo)
    (tmp_path / "zero.png").symlink_to("/dev/zero")  # would fill memory
    with pytest.raises(MediaError, match=r"not a regular file \(character device\)"):
        load_image(tmp_path / "zero.png")
    with pytest.raises(MediaError, match="directory"):
        read_regular_file(tmp_path, max_bytes=10)
    (tmp_path / "a.txt").write_bytes(b"x" * 11)
    assert read_regular_file(tmp_path / "a.txt", max_bytes=11) == b"x" * 11
    with pytest.raises(MediaError, match="11 bytes is over max_text_bytes=10"):
        read_regular_file(tmp_path / "a.txt", max_bytes=10, limit_name="max_text_bytes")
    with pytest.raises(MediaError, match="max_image_bytes"):
        read_image_bytes(tmp_path / "a.txt", max_file_bytes=5)


def test_walk_media_reports_symlinks_that_leave_the_folder(tmp_path):
    from mm_rag_components.media import walk_media

    root, outside = tmp_path / "root", tmp_path / "out"
    (root / ".hidden").mkdir(parents=True)
    outside.mkdir()
    (outside / "x.txt").write_text("x")
    (root / "a.png").write_bytes(encoded())
    (root / "in.png").symlink_to("a.png")
    (root / "out.txt").symlink_to(outside / "x.txt")
    (root / "notes.csv").write_text("a")
    (root / ".hidden" / "h.png").write_bytes(encoded())
    found = {f.path.name: (f.kind, f.problem) for f in walk_media(root.resolve())}
    assert set(found) == {"a.png", "in.png", "out.txt", "notes.csv"}
    assert found["a.png"] == ("image", None) and found["in.png"] == ("image", None)
    assert found["notes.csv"] == ("other", None)
    assert found["out.txt"][0] == "text" and "follow_external_symlinks=True" in found["out.txt"][1]
    assert all(f.problem is None for f in walk_media(root.resolve(), follow_external_symlinks=True))
