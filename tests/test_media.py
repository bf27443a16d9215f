"""Image loading: every accepted source, normalisation, limits and bad input."""

import base64
import io

import pytest
from PIL import Image

from mm_rag_components.errors import MediaError
from mm_rag_components.media import content_hash, load_image, load_image_with_hash


def png_bytes(colour=(255, 0, 0), size=(8, 6), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG")
    return buf.getvalue()


def test_every_source_kind_gives_the_same_rgb_image(tmp_path):
    data = png_bytes()
    path = tmp_path / "x.png"
    path.write_bytes(data)
    b64 = base64.b64encode(data).decode()
    sources = [path, str(path), data, b64, "data:image/png;base64," + b64]
    hashes = {load_image_with_hash(s).sha256 for s in sources}
    assert hashes == {content_hash(data)}
    for source in sources:
        img = load_image(source)
        assert img.mode == "RGB" and img.size == (8, 6) and img.getpixel((0, 0)) == (255, 0, 0)
    pil = load_image(Image.new("L", (3, 3), 128))
    assert pil.mode == "RGB" and pil.getpixel((1, 1)) == (128, 128, 128)


def test_transparency_is_flattened_on_white():
    img = load_image(png_bytes((0, 0, 0, 0), mode="RGBA"))
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    assert load_image(buf.getvalue()).size == (20, 40)


def test_urls_are_refused_unless_enabled():
    with pytest.raises(MediaError, match="allow_urls"):
        load_image("https://example.com/cat.png")


def test_pixel_limit_guards_against_bombs_and_can_be_raised():
    data = png_bytes(size=(3000, 3000))
    with pytest.raises(MediaError, match="exceeds the limit"):
        load_image(data, max_pixels=1_000_000)
    assert load_image(data, max_pixels=10_000_000).size == (3000, 3000)


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"", "empty"),
        (b"this is text, not an image", "not a recognised image"),
        (png_bytes(size=(64, 64))[:60], "truncated|cannot open|corrupt"),
    ],
)
def test_bad_bytes_raise_media_error(tmp_path, payload, match):
    path = tmp_path / "bad.jpg"
    path.write_bytes(payload)
    with pytest.raises(MediaError, match=match):
        load_image(path)


def test_missing_file_and_garbage_string():
    with pytest.raises(MediaError, match="no such file"):
        load_image("/no/such/image.png")
    with pytest.raises(MediaError, match="neither"):
        load_image("not base64 !!!")


def test_content_hash_is_stable():
    assert content_hash(b"abc") == content_hash("abc") == content_hash(b"abc")
    assert content_hash(b"abc") != content_hash(b"abd")
