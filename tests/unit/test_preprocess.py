import csv
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.configs import compose_config
from helpers.rendered_chars import render_character
from PIL import Image, ImageDraw

from emnist_lightning.errors import ImageInputError
from emnist_lightning.inference import preprocess
from emnist_lightning.inference.predict import predict
from emnist_lightning.inference.predictors import load_predictor, view_probabilities
from emnist_lightning.inference.preprocess import (
    EMNIST_PEN_WIDTHS,
    STROKE_RANGE,
    VIEW_WIDTHS,
    expand_image_paths,
    load_character,
    load_grayscale,
    load_views,
    normalise_stroke_width,
    pen_width_views,
    stroke_width,
    to_emnist_frame,
)
from emnist_lightning.training.run import train


def test_dark_on_light_and_light_on_dark_give_the_same_frame(tmp_path: Path) -> None:
    black_on_white = load_character(render_character("A", tmp_path / "a.png", dark_on_light=True))
    white_on_black = load_character(render_character("A", tmp_path / "b.png", dark_on_light=False))
    assert black_on_white.shape == (1, 28, 28)
    assert torch.allclose(black_on_white, white_on_black, atol=0.08)
    assert black_on_white[0, 0].max() < 0.05  # background is dark after inversion
    assert black_on_white.max() > 0.9  # ink is light


def test_ink_is_cropped_centred_and_fills_24_of_28_pixels(tmp_path: Path) -> None:
    small = load_character(
        render_character("T", tmp_path / "s.png", font_size=40, offset=(5, 5), stroke=2)
    )
    large = load_character(
        render_character(
            "T", tmp_path / "l.png", font_size=120, offset=(60, 2), canvas=(300, 200), stroke=6
        )
    )
    for frame in (small, large):
        rows = torch.nonzero(frame[0].amax(dim=1) > 0.3).flatten()
        cols = torch.nonzero(frame[0].amax(dim=0) > 0.3).flatten()
        assert 20 <= int(rows[-1] - rows[0]) + 1 <= 25  # the longer side spans ~24 pixels
        centre_row = (rows[0] + rows[-1]) / 2
        centre_col = (cols[0] + cols[-1]) / 2
        assert abs(float(centre_row) - 13.5) <= 1.5 and abs(float(centre_col) - 13.5) <= 1.5
    # Same glyph at a third of the size, anywhere on the canvas: nearly the same input.
    assert (small - large).abs().mean() < 0.05


def test_image_stays_upright_never_transposed() -> None:
    pixels = np.ones((100, 100), dtype=np.float32)
    pixels[10:20, 10:90] = 0.0  # a dark bar across the top ...
    pixels[10:90, 45:55] = 0.0  # ... on a stem: a "T"
    frame = to_emnist_frame(pixels)[0]
    assert frame[3:7].mean() > frame[:, 3:7].mean() + 0.2  # the bar is a row, not a column


def test_transparent_background_counts_as_paper(tmp_path: Path) -> None:
    image = Image.new("RGBA", (60, 60), (0, 0, 0, 0))
    image.paste((0, 0, 0, 255), (25, 5, 35, 55))  # an opaque black "1" on transparency
    image.save(tmp_path / "one.png")
    frame = load_character(tmp_path / "one.png")
    assert frame[0, :, 13:15].mean() > 0.5 and frame[0, :, :5].max() < 0.05


def test_blank_image_is_refused_with_one_line(tmp_path: Path) -> None:
    Image.new("L", (50, 50), 255).save(tmp_path / "blank.png")
    with pytest.raises(ImageInputError, match="blank.png: no ink found"):
        load_character(tmp_path / "blank.png")


def test_unreadable_and_missing_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageInputError, match="notes.png: not an image Pillow can read"):
        load_character(tmp_path / "notes.png")
    with pytest.raises(ImageInputError, match="missing.png: no such file"):
        load_character(tmp_path / "missing.png")


def test_folders_expand_to_their_image_files(tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg", "readme.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in expand_image_paths([str(tmp_path)])] == ["a.jpg", "b.png"]


def _ink_frame(size: int = 80) -> np.ndarray:
    """A "7" as floats: 1 on 0, so each test can store it in its own format."""
    pixels = np.zeros((size, size), dtype=np.float32)
    pixels[10:18, 15:65] = 1.0
    for row in range(18, 70):
        col = 60 - (row - 18) // 2
        pixels[row, col - 4 : col + 4] = 1.0
    return pixels


def test_float_tiff_is_read_by_its_own_range(tmp_path: Path) -> None:
    ink = _ink_frame()
    Image.fromarray(ink * 0.5 + 0.25, mode="F").save(tmp_path / "seven.tif")  # 0.25 .. 0.75
    Image.fromarray((ink * 255).astype(np.uint8), mode="L").save(tmp_path / "seven.png")
    assert Image.open(tmp_path / "seven.tif").mode == "F"
    from_tiff = load_character(tmp_path / "seven.tif")
    assert torch.allclose(from_tiff, load_character(tmp_path / "seven.png"), atol=0.02)
    assert from_tiff.max() == 1.0 and from_tiff[0, :, :3].max() < 0.05


def test_sixteen_bit_png_is_read_by_its_own_range(tmp_path: Path) -> None:
    ink = _ink_frame()
    Image.fromarray((1000 + ink * 50_000).astype(np.uint16)).save(tmp_path / "seven16.png")
    Image.fromarray((ink * 255).astype(np.uint8), mode="L").save(tmp_path / "seven.png")
    assert Image.open(tmp_path / "seven16.png").mode.startswith("I")
    assert torch.allclose(
        load_character(tmp_path / "seven16.png"), load_character(tmp_path / "seven.png"), atol=0.02
    )


def test_constant_float_tiff_is_refused_as_blank(tmp_path: Path) -> None:
    Image.fromarray(np.full((30, 30), 7.5, dtype=np.float32), mode="F").save(tmp_path / "flat.tif")
    with pytest.raises(ImageInputError, match="flat.tif: no ink found"):
        load_character(tmp_path / "flat.tif")


def write_png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height 8-bit gray pixels (and holds none): Pillow reads the
    size from the header, which is all its decompression-bomb check needs."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(
    "side", [9_500, 20_000], ids=["over-the-warning-limit", "over-the-error-limit"]
)
def test_image_over_the_decompression_bomb_limit_is_refused_in_one_line(
    tmp_path: Path, side: int
) -> None:
    assert side * side > Image.MAX_IMAGE_PIXELS  # 89,478,485 by default
    huge = write_png_header(tmp_path / "huge.png", side, side)
    with pytest.raises(ImageInputError) as refused:
        load_character(huge)
    message = str(refused.value)
    assert message.startswith(f"{huge}: too many pixels") and "crop or shrink" in message
    assert "\n" not in message


def test_the_bomb_limit_holds_even_when_warning_filters_are_not_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warning filters are process-wide; in a server's threads another thread may reset them."""
    monkeypatch.setattr(warnings, "simplefilter", lambda *args, **kwargs: None)
    huge = write_png_header(tmp_path / "huge.png", 9_500, 9_500)  # only a warning for Pillow
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        with pytest.raises(ImageInputError, match="huge.png: too many pixels"):
            load_character(huge)


def test_a_binary_file_object_reads_like_its_path(tmp_path: Path) -> None:
    path = render_character("K", tmp_path / "k.png")
    with path.open("rb") as f:
        assert torch.equal(load_character(f), load_character(path))
    assert torch.equal(load_character(io.BytesIO(path.read_bytes())), load_character(path))


def test_errors_for_file_objects_say_image() -> None:
    with pytest.raises(ImageInputError, match=r"^image: not an image Pillow can read"):
        load_character(io.BytesIO(b"not an image"))
    blank = io.BytesIO()
    Image.new("L", (40, 40), 255).save(blank, format="PNG")
    with pytest.raises(ImageInputError, match=r"^image: no ink found"):
        load_character(blank)


def _frame_stroke_width(frame: torch.Tensor) -> float:
    return stroke_width(frame.unsqueeze(0), smoothing=0)


# EMNIST's 20th, 50th and 80th percentile pens: 2.4, 2.9 and 3.6 pixels at 28x28 on the proxy
# training split (benchmarks/pen_width_views.py calibrate).
THREE_PENS = tuple(EMNIST_PEN_WIDTHS[q] for q in (20, 50, 80))

POLYLINES = {
    "Z": [(100, 100), (500, 100), (100, 560), (500, 560)],
    "V": [(100, 80), (300, 560), (500, 80)],
    "L": [(150, 80), (150, 560), (450, 560)],
}


@pytest.mark.parametrize("char", sorted(POLYLINES))
def test_hairline_and_marker_drawings_get_emnist_stroke_widths(tmp_path: Path, char: str) -> None:
    """EMNIST's strokes are 2.0 to 4.4 pixels wide (5th to 95th percentile, proxy training
    split). A 2-pixel line on a 600-pixel drawing used to come out 1.1-1.3 pixels wide and at
    a tenth of full brightness; a 140-pixel marker 5-5.3 pixels wide."""
    widths = {}
    for pen in (2, 140):
        image = Image.new("L", (600, 640), 240)
        ImageDraw.Draw(image).line(POLYLINES[char], fill=15, width=pen, joint="curve")
        image.save(tmp_path / f"{pen}.png")
        frame = load_character(tmp_path / f"{pen}.png")
        assert frame.max() == 1.0
        widths[pen] = _frame_stroke_width(frame)
    assert 1.6 <= widths[2] <= 2.4, widths
    assert 3.6 <= widths[140] <= 5.0, widths


def test_a_pen_within_emnist_range_is_left_as_drawn_and_a_hairline_is_widened() -> None:
    bar = torch.ones(1, 1, 100, 13)  # 13% of the longer side: within EMNIST's range
    assert torch.equal(normalise_stroke_width(bar), bar)
    hairline = torch.ones(1, 1, 200, 2)
    widened = normalise_stroke_width(hairline)[0, 0]
    rows = torch.nonzero(widened.amax(dim=1)).flatten()
    ink_height = int(rows[-1] - rows[0]) + 1
    middle_width = float(widened[widened.shape[0] // 2].sum())
    assert abs(middle_width - STROKE_RANGE[0] * ink_height) <= 2, (middle_width, ink_height)


def test_huge_photo_of_a_hairline_keeps_its_strokes(tmp_path: Path) -> None:
    """Large images are reduced by max-pooling before the strokes are measured, so a 2-pixel
    line on a 3000-pixel photo still comes out as a whole character."""
    image = Image.new("L", (3000, 2400), 235)
    draw = ImageDraw.Draw(image)
    draw.line([(800, 300), (1400, 2000), (2000, 300)], fill=20, width=2)  # a "V"
    image.save(tmp_path / "v.png")
    frame = load_character(tmp_path / "v.png")[0]
    assert frame[:4, 2:8].max() > 0.5 and frame[:4, -8:-2].max() > 0.5  # both arms' tops
    assert frame[-4:, 11:17].max() > 0.5  # the joint at the bottom


def test_predicting_a_folder_with_a_decompression_bomb_reports_it_and_predicts_the_rest(
    make_train_cfg,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(preprocess, "VIEW_WIDTHS", THREE_PENS)  # pen-width views on
    run = tmp_path / "run"
    train(make_train_cfg("trainer.max_epochs=1", "test=false", output_dir=run))
    folder = tmp_path / "images"
    folder.mkdir()
    render_character("A", folder / "a.png")
    Image.fromarray((_ink_frame() * 0.5).astype(np.float32), mode="F").save(folder / "seven.tif")
    bomb = write_png_header(folder / "bomb.png", 20_000, 20_000)
    capsys.readouterr()
    summary = predict(
        compose_config(
            "predict",
            [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", f"images=[{folder}]"],
            tmp_path / "predict",
        )
    )
    out, err = capsys.readouterr()
    assert summary["predicted"] == 2 and summary["failed"] == 1
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {bomb}: too many pixels (over Pillow's limit of {Image.MAX_IMAGE_PIXELS:,}, "
        "which guards against decompression bombs): crop or shrink it to the character"
    ]
    assert f"{folder / 'a.png'}: '" in out and f"{folder / 'seven.tif'}: '" in out
    # With views on, predict.py reads a redrawn image at several pens and averages.
    predictor = load_predictor(run / "checkpoints" / "last.ckpt")
    views = load_views(folder / "a.png")
    averaged = view_probabilities(predictor, [views])[0]
    with (tmp_path / "predict" / "predictions.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["file"].endswith("a.png"))
    assert len(views) > 1
    assert float(row["probability"]) == pytest.approx(float(averaged.max()), abs=1e-4)
    assert row["prediction"] == predictor.class_names[int(averaged.argmax())]
    assert not torch.allclose(averaged, predictor.probabilities(views)[len(views) // 2])


def _emnist_like(top: int = 2) -> np.ndarray:
    pixels = np.zeros((28, 28), dtype=np.float32)
    pixels[top : top + 24, 11:16] = np.linspace(0.3, 1.0, 5, dtype=np.float32)
    return pixels


def test_an_image_already_in_emnist_form_passes_through_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "emnist.png"
    Image.fromarray((_emnist_like() * 255).round().astype(np.uint8)).save(path)
    frame = load_character(path)
    expected = torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255)
    assert torch.equal(frame[0], expected)


@pytest.mark.parametrize(
    "pixels",
    [
        _emnist_like(top=0),  # off-centre by 2 pixels
        1.0 - _emnist_like(),  # dark ink on light paper
        np.pad(_emnist_like(), 2),  # 32x32
    ],
    ids=["off-centre", "dark-on-light", "not 28x28"],
)
def test_other_small_images_are_redrawn(pixels: np.ndarray) -> None:
    frame = to_emnist_frame(pixels)
    assert frame.shape == (1, 28, 28)
    assert not torch.equal(frame[0], torch.from_numpy(_emnist_like()))


def test_a_thin_pen_can_be_read_at_several_emnist_pens(tmp_path: Path) -> None:
    """Pen-width views: the same drawing at several EMNIST pens, not one clamped width."""
    image = Image.new("L", (600, 640), 240)
    ImageDraw.Draw(image).line(POLYLINES["Z"], fill=15, width=4, joint="curve")
    image.save(tmp_path / "z.png")
    views = pen_width_views(load_grayscale(tmp_path / "z.png"), widths=THREE_PENS)
    assert views.shape == (3, 1, 28, 28)
    widths = [_frame_stroke_width(view) for view in views]
    assert all(b - a > 0.3 for a, b in zip(widths, widths[1:], strict=False)), widths
    assert widths[0] >= 1.8 and widths[-1] <= 4.4, widths  # within EMNIST's 2.0-4.4
    assert all(STROKE_RANGE[0] <= w <= STROKE_RANGE[1] for w in EMNIST_PEN_WIDTHS.values())
    # Shipped: one view (none helped, docs "Reading real pens"), today's frame.
    assert VIEW_WIDTHS == ()
    assert torch.equal(load_views(tmp_path / "z.png"), load_character(tmp_path / "z.png")[None])


def test_views_can_be_limited_to_pens_thinner_than_a_width() -> None:
    pixels = np.full((300, 300), 0.95, dtype=np.float32)
    pixels[40:260, 140:180] = 0.05  # a bar 18% of its height wide: thicker than EMNIST's median
    median = EMNIST_PEN_WIDTHS[50]
    kept = pen_width_views(pixels, widths=THREE_PENS, below=median)
    assert kept.shape == (1, 1, 28, 28) and torch.equal(kept[0], to_emnist_frame(pixels))
    assert len(pen_width_views(pixels, widths=THREE_PENS, below=1.0)) == 3


def test_emnist_form_input_is_one_view_as_before(tmp_path: Path) -> None:
    path = tmp_path / "emnist.png"
    Image.fromarray((_emnist_like() * 255).round().astype(np.uint8)).save(path)
    expected = torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255)
    views = pen_width_views(load_grayscale(path), widths=THREE_PENS)
    assert views.shape == (1, 1, 28, 28) and torch.equal(views[0, 0], expected)
