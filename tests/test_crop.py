"""The VRN crop: geometry against hand-computed values and the official run.m, inverse, warp, real photos."""

from __future__ import annotations

import math

import numpy as np
import pytest

from realtime_vrn.crop import CROP_SIZE, TARGET_BOX_SIDE, CropTransform


def box_points(corner0, corner1, fill) -> np.ndarray:
    """68 points: two box corners and 66 copies of ``fill`` (frame px)."""
    points = np.tile(np.asarray(fill, dtype=np.float64), (68, 1))
    points[0] = corner0
    points[1] = corner1
    return points


# -- geometry ------------------------------------------------------------------------------------------------

def test_from_landmarks_hand_computed():
    # box 150 x 216 px -> geometric-mean side sqrt(32400) = 180 -> s = 90 / 180 = 0.5; mean = (175, 158)
    crop = CropTransform.from_landmarks(box_points((100, 50), (250, 266), (175, 158)))
    assert crop.scale == pytest.approx(0.5, abs=1e-12)
    assert crop.centre == pytest.approx((175.5, 158.5), abs=1e-12)
    assert crop.c0 == 95.5
    # the landmark mean lands at 95.5 - s/2 (run.m), the corners at s * (corner - centre) + 95.5
    np.testing.assert_allclose(crop.to_crop([175, 158]), [95.25, 95.25], atol=1e-12)
    np.testing.assert_allclose(crop.to_crop([[100, 50], [250, 266]]), [[57.75, 41.25], [132.75, 149.25]],
                               atol=1e-12)
    np.testing.assert_allclose(crop.matrix, [[0.5, 0, 95.5 - 87.75], [0, 0.5, 95.5 - 79.25]], atol=1e-12)


def test_other_sizes_keep_the_framing():
    points = box_points((100, 50), (250, 266), (175, 158))
    crop = CropTransform.from_landmarks(points, size=96)
    assert crop.size == 96 and crop.c0 == 47.5
    assert crop.scale == pytest.approx(0.25, abs=1e-12)  # target side 90 * 96 / 192 = 45 px
    np.testing.assert_allclose(crop.to_crop([175, 158]), [47.5 - 0.125] * 2, atol=1e-12)
    for size in (64, 128, 192, 256):
        crop = CropTransform.from_landmarks(points, size=size)
        corners = crop.to_crop(points[:2])
        side = math.sqrt(np.prod(corners[1] - corners[0]))
        assert side == pytest.approx(TARGET_BOX_SIDE * size / CROP_SIZE, rel=1e-12)
        # the same frame point sits at the same relative position of the window (edge coordinates u + 0.5)
        np.testing.assert_allclose((crop.to_crop(points[:2]) + 0.5) / size,
                                   (CropTransform.from_landmarks(points).to_crop(points[:2]) + 0.5) / 192,
                                   atol=1e-12)


def matlab_run_m(points_1based: np.ndarray, image_w: int, image_h: int, query_1based: np.ndarray) -> np.ndarray:
    """0-based crop coordinates of ``query`` through run.m's lines, as coordinate maps (MATLAB 1-based in)."""
    scale = 90 / math.sqrt(np.prod(points_1based.max(0) - points_1based.min(0)))
    out = []
    for axis, length in ((0, image_w), (1, image_h)):
        u = query_1based[..., axis] + (length / 2 - points_1based[:, axis].mean())  # imtranslate(I, cen - mean(P))
        u = scale * (u - 0.5) + 0.5  # imresize: input u = x/s + 0.5*(1 - 1/s)  <=>  x = s*(u - 0.5) + 0.5
        u = u + 32  # padarray(I, [32 32 0])
        cen = math.floor((math.ceil(scale * length) + 64) / 2)  # cen = floor(size(I)/2)
        out.append(u - (cen - 95) + 1 - 1)  # I(cen-95 : cen+96): crop index 1 at cen-95; then 0-based
    return np.stack(out, axis=-1)


def test_matches_official_run_m_within_its_rounding():
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(400):
        w, h = rng.integers(200, 1500, size=2)
        points = rng.uniform(0.2, 0.8, size=(68, 2)) * [w, h] * rng.uniform(0.3, 1.0)
        query = rng.uniform(0, 1, size=(5, 2)) * [w, h]
        ours = CropTransform.from_landmarks(points).to_crop(query)
        official = matlab_run_m(points + 1, int(w), int(h), query + 1)
        diff = ours - official
        # one constant offset per image and axis: run.m's ceil/floor rounding, |r| <= 0.5 crop px
        np.testing.assert_allclose(diff, np.broadcast_to(diff[:1], diff.shape), atol=1e-9)
        assert np.all(np.abs(diff) <= 0.5 + 1e-9)
        diffs.append(diff[0])
    assert np.abs(np.mean(diffs, axis=0)).max() < 0.03  # zero on average: the centre convention is run.m's


def test_round_trip_float64():
    rng = np.random.default_rng(1)
    for _ in range(50):
        crop = CropTransform(centre=tuple(rng.uniform(-500, 2000, 2)), scale=float(rng.uniform(0.05, 8.0)),
                             size=int(rng.choice([64, 96, 192, 256])))
        xy = rng.uniform(-1000, 3000, size=(7, 3, 2))
        back = crop.to_frame(crop.to_crop(xy))
        assert back.shape == xy.shape and back.dtype == np.float64
        np.testing.assert_allclose(back, xy, rtol=0, atol=1e-6)
        uv = rng.uniform(-10, 300, size=(11, 2))
        np.testing.assert_allclose(crop.to_crop(crop.to_frame(uv)), uv, rtol=0, atol=1e-6)


def test_scale_maps_lengths():
    crop = CropTransform(centre=(10.0, 20.0), scale=0.37, size=192)
    a, b = crop.to_crop([[0, 0], [100, 0]])
    assert b[0] - a[0] == pytest.approx(37.0)


# -- warp ----------------------------------------------------------------------------------------------------

def test_warp_single_pixel_lands_where_to_crop_says():
    image = np.zeros((60, 80, 3), np.uint8)
    image[30, 40] = (255, 128, 7)
    crop = CropTransform(centre=(40.5, 30.5), scale=1.0, size=16)
    u, v = crop.to_crop([40, 30])
    assert (u, v) == (7.0, 7.0)
    out = crop.warp(image)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[7, 7], (255, 128, 7))  # RGB order kept
    out[7, 7] = 0
    assert not out.any()


@pytest.mark.parametrize("scale", [0.45, 1.0, 2.3])
def test_warp_blob_centroid_matches_to_crop(scale):
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float64)
    x0, y0, sigma = 157.3, 121.7, 4.0
    blob = 250 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma ** 2))
    image = np.repeat(blob[..., None], 3, axis=2).round().astype(np.uint8)
    crop = CropTransform(centre=(160.2, 118.9), scale=scale, size=128)
    out = crop.warp(image)[..., 0].astype(np.float64)
    vv, uu = np.mgrid[0:128, 0:128]
    centroid = np.array([(uu * out).sum(), (vv * out).sum()]) / out.sum()
    # 0.08 px: the bicubic kernel (a = -0.75) does not preserve first moments exactly; a half-pixel
    # convention error would show as 0.5 * scale or more.
    np.testing.assert_allclose(centroid, crop.to_crop([x0, y0]), atol=0.08)


def test_warp_is_black_outside_the_frame():
    image = np.full((20, 30, 3), 200, np.uint8)
    crop = CropTransform(centre=(14.5, 9.5), scale=1.0, size=64)  # the frame fills crop [17..46] x [22..41]
    out = crop.warp(image)
    assert not out[:15].any() and not out[45:].any() and not out[:, :12].any() and not out[:, 52:].any()
    assert (out[25:38, 20:44] == 200).all()


def test_warp_orientation_not_flipped():
    image = np.zeros((100, 100, 3), np.uint8)
    image[10:30, 10:30, 0] = 255  # red top-left
    image[70:90, 60:90, 2] = 255  # blue bottom-right
    out = CropTransform(centre=(50.0, 50.0), scale=1.0, size=100).warp(image)
    assert out[20, 20, 0] == 255 and out[20, 20, 2] == 0
    assert out[80, 75, 2] == 255 and out[80, 75, 0] == 0


def cubic_kernel(t: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.75 (OpenCV's INTER_CUBIC), float64."""
    a, t = -0.75, np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def direct_bicubic(image: np.ndarray, crop: CropTransform) -> np.ndarray:
    """The crop by the textbook formula: each pixel the 4 x 4 taps around ``to_frame`` weighted by the kernel,
    taps outside the frame black, rounded half up and clipped (float64, pixel by pixel in NumPy)."""
    s = crop.size
    uv = np.stack(np.meshgrid(np.arange(s), np.arange(s)), axis=-1).reshape(-1, 2)
    xy = crop.to_frame(uv)
    padded = np.zeros((image.shape[0] + 8, image.shape[1] + 8, 3))
    padded[4:-4, 4:-4] = image
    acc = np.zeros((len(xy), 3))
    base = np.floor(xy).astype(np.int64) - 1
    for j in range(4):
        for i in range(4):
            x, y = base[:, 0] + i, base[:, 1] + j
            inside = (x >= 0) & (x < image.shape[1]) & (y >= 0) & (y < image.shape[0])
            weight = cubic_kernel(xy[:, 0] - x) * cubic_kernel(xy[:, 1] - y) * inside
            acc += weight[:, None] * padded[np.clip(y, -4, image.shape[0] + 3) + 4,
                                            np.clip(x, -4, image.shape[1] + 3) + 4]
    return np.clip(np.floor(acc + 0.5), 0, 255).astype(np.uint8).reshape(s, s, 3)


def real_face_crops(astronaut):
    """Crops of a real face: framed as the network sees it (shrunk), enlarged, half off the frame, shifted by
    fractions of a pixel."""
    h, w = astronaut.shape[:2]
    return [CropTransform((230.3, 140.8), 96 / 260, 96), CropTransform((230.3, 140.8), 192 / 230, 192),
            CropTransform((211.7, 98.2), 2.7, 64), CropTransform((w - 20.4, 30.6), 0.5, 96),
            CropTransform((-5.0, h + 5.5), 1.3, 48)]


def test_warp_is_the_textbook_bicubic_on_a_real_face(astronaut):
    for crop in real_face_crops(astronaut):
        got, want = crop.warp(astronaut).astype(int), direct_bicubic(astronaut, crop).astype(int)
        # float32 sums against float64: a value exactly between two levels may round either way
        assert np.abs(got - want).max() <= 1, crop
        assert (got != want).mean() < 1e-3, crop


def test_warp_agrees_with_opencv_on_a_real_face(astronaut):
    import cv2

    for crop in real_face_crops(astronaut):
        want = cv2.warpAffine(astronaut, crop.matrix, (crop.size, crop.size), flags=cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0)).astype(int)
        diff = np.abs(crop.warp(astronaut).astype(int) - want)
        # OpenCV rounds sample positions to 1/32 px (up to 3 grey levels on this photo's sharpest edges, ~100
        # levels a pixel) and weights to 15 bits; elsewhere the two agree
        assert diff.max() <= 3 and (diff > 1).mean() < 0.02 and diff.mean() < 0.2, crop


def test_warp_reads_any_memory_layout(astronaut):
    crop = real_face_crops(astronaut)[0]
    flipped = astronaut[:, ::-1]  # a view with negative strides
    np.testing.assert_array_equal(crop.warp(flipped), crop.warp(np.ascontiguousarray(flipped)))


@pytest.mark.parametrize("centre, scale", [((1e15, -1e15), 1.0), ((10.0, 10.0), 1e-12), ((5.0, 5.0), 1e9)])
def test_warp_far_outside_or_extreme_scales(centre, scale):
    image = np.full((20, 30, 3), 200, np.uint8)
    out = CropTransform(centre=centre, scale=scale, size=32).warp(image)
    if scale == 1e9:  # every crop pixel samples within a billionth of a pixel of (5, 5)
        assert (out == 200).all()
    else:
        assert not out.any()


# -- rejections ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("points, message", [
    (np.zeros((67, 2)), "expected (68, 2)"),
    (np.zeros((68, 3)), "expected (68, 2)"),
    (np.full((68, 2), np.nan), "NaN"),
    (np.zeros((68, 2)), "zero area"),
    (box_points((0, 5), (10, 5), (5, 5)), "zero area"),
])
def test_from_landmarks_rejects(points, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CropTransform.from_landmarks(points)


@pytest.mark.parametrize("kwargs, message", [
    (dict(centre=(0.0, 0.0), scale=0.0), "scale"),
    (dict(centre=(0.0, 0.0), scale=float("inf")), "scale"),
    (dict(centre=(0.0, float("nan")), scale=1.0), "centre"),
    (dict(centre=(0.0, 0.0), scale=1.0, size=0), "size"),
])
def test_crop_transform_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CropTransform(**kwargs)


@pytest.mark.parametrize("image", [
    np.zeros((10, 10, 3), np.float32), np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8),
])
def test_warp_rejects_non_rgb_uint8(image):
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 RGB image"):
        CropTransform(centre=(5.0, 5.0), scale=1.0).warp(image)


def test_to_crop_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        CropTransform(centre=(5.0, 5.0), scale=1.0).to_crop(np.zeros((4, 3)))


# -- real photos ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photo_tracker():
    from realtime_vrn.landmarks import open_tracker

    with open_tracker(static=True) as tracker:
        yield tracker


def real_photos(face_photos, astronaut):
    from realtime_vrn.sources import read_image_rgb

    return [(p.name, read_image_rgb(p)) for p in face_photos] + [("astronaut", astronaut)]


def test_crop_of_real_photos_centres_the_face(face_photos, astronaut, photo_tracker):
    """Detect on the photo, crop, detect again on the crop: the face is centred and 90 px across."""
    assert len(face_photos) == 5
    for name, image in real_photos(face_photos, astronaut):
        found = photo_tracker.process(image, 0.0)
        assert found is not None, f"no face found in {name}"
        crop = CropTransform.from_landmarks(found.points68)
        crop_image = crop.warp(image)
        assert crop_image.shape == (192, 192, 3)
        again = photo_tracker.process(crop_image, 0.0)
        assert again is not None, f"no face found in the crop of {name}"
        side = math.sqrt(np.prod(again.points68.max(0) - again.points68.min(0)))
        assert side == pytest.approx(TARGET_BOX_SIDE, rel=0.06), name
        np.testing.assert_allclose(again.points68.mean(0), [95.5, 95.5], atol=3.0, err_msg=name)
        # the re-detected points agree with the mapped ones (a few crop pixels, Face Mesh's own spread)
        moved = crop.to_crop(found.points68)
        assert np.linalg.norm(moved - again.points68, axis=1).mean() < 3.0, name


def test_crop_size_128_on_a_real_photo(astronaut, photo_tracker):
    found = photo_tracker.process(astronaut, 0.0)
    crop = CropTransform.from_landmarks(found.points68, size=128)
    again = photo_tracker.process(crop.warp(astronaut), 0.0)
    assert again is not None
    side = math.sqrt(np.prod(again.points68.max(0) - again.points68.min(0)))
    assert side == pytest.approx(90 * 128 / 192, rel=0.06)
    np.testing.assert_allclose(again.points68.mean(0), [63.5, 63.5], atol=2.5)
