"""The attention inspector's core against FA_SPEC's rank-one view, computed independently."""

import numpy as np
import pytest
import torch
from torch import nn

from napari_fanet.engine import model_catalog
from napari_fanet.engine.attention_inspection import (
    AttentionInspector,
    fa_levels,
    fa_models,
    rank_one_factors,
)
from napari_fanet.engine.network_input import (
    bottleneck_cell,
    cells_to_window,
    prepare_network_input,
    voxel_on_ray,
    window_bounds,
)
from napari_fanet.engine.prediction_request import PredictionRequest
from napari_fanet.io.layers import LayerVolume
from napari_fanet.models import FoldedAttention3d, build_model, save_checkpoint
from napari_fanet.tasks.b0_alignment import align_to_b0

SHAPE = (56, 40, 20)
SEG_CKPT = {"extra": {"voxel_size": [2.0, 2.0, 2.0]}}
QSM_SCALES = {"field_scale": 0.05, "chi_scale": 0.1, "align_b0": True}
QSM_CKPT = {"extra": {"voxel_size": [2.0, 2.0, 2.0], "preprocessing": QSM_SCALES}}
TINY = (8, 8, 8, 8, 16)


def seg_arrays(shape=SHAPE, seed=0):
    rng = np.random.default_rng(seed)
    brain = np.zeros(shape, dtype=np.float32)
    brain[3:-3, 2:-2, 2:-2] = 1
    arrays = {k: (rng.standard_normal(shape) + 3) * brain for k in ("T1", "T2", "FLAIR")}
    return {**{k: v.astype(np.float32) for k, v in arrays.items()}, "brain mask": brain}


def seg_model(seed=0, betas=(0.7, -0.4, 1.3, 0.5)):
    torch.manual_seed(seed)
    model = build_model("fanet-seg", features=TINY).eval()
    with torch.no_grad():
        model.attention.beta.copy_(torch.tensor(betas))
        # Smaller projections keep the softmaxes away from saturation, so every entry matters.
        model.attention.theta.weight.mul_(0.6)
        model.attention.phi.weight.mul_(0.6)
    return model


def zscore(image, mask):
    inside = image[mask > 0.5]
    return np.where(mask > 0.5, (image - inside.mean()) / inside.std(), 0.0)


def softmax_rows(energy):
    e = np.exp(energy - energy.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def reference(model, x, block=None, sqrt_scale=False):
    """FA_SPEC by hand, in float64: the block's input X, g(X), A_a, M_a and its output Z."""
    seen = {}
    fa = model.attention if block is None else block
    hook = fa.register_forward_hook(
        lambda m, i, o: seen.update(x=i[0][0].double().numpy(), z=o[0].double().numpy())
    )
    with torch.no_grad():
        model(x)  # the full network, which pads the window itself
    hook.remove()

    def conv(layer):
        w = layer.weight.detach().double().numpy()[:, :, 0, 0, 0]
        b = layer.bias.detach().double().numpy()
        return np.einsum("oc,cdhw->odhw", w, seen["x"]) + b[:, None, None, None]

    t, p, g = conv(fa.theta), conv(fa.phi), conv(fa.g)
    energies = {
        "D": np.einsum("ckhw,clhw->kl", t, p),
        "H": np.einsum("cdkw,cdlw->kl", t, p),
        "W": np.einsum("cdhk,cdhl->kl", t, p),
        "C": -np.einsum("cdhw,edhw->ce", t, p),  # softmax(-E_C), the default channel sign
    }
    if sqrt_scale:  # divide by the square root of the row length N*C/L
        energies = {a: e / np.sqrt(t.size / len(e)) for a, e in energies.items()}
    raw = {a: softmax_rows(e) for a, e in energies.items()}
    beta = dict(zip("DHWC", fa.beta.detach().double().numpy(), strict=True))
    eff = {a: np.eye(len(m)) + beta[a] * m for a, m in raw.items()}
    return {"raw": raw, "effective": eff, "g": g, "z": seen["z"]}


@pytest.mark.parametrize("effective", [True, False])
@pytest.mark.parametrize(("channel", "source"), [(-1, -1), (3, -1), (-1, 5), (11, 2)])
def test_map_equals_the_explicit_rank_one_contraction(effective, channel, source):
    arrays = seg_arrays()
    model = seg_model()
    voxel = (30, 12, 7)
    view = AttentionInspector().inspect(
        "segmentation", arrays, (2.0, 2.0, 2.0), model, SEG_CKPT, voxel, window=48,
        effective=effective, channel=channel, source_channel=source,
    )  # fmt: skip

    # The window by hand: 48 centred on x = 30 inside 56 voxels; y (40) and z (20) are whole.
    assert view.window_start == (6, 0, 0)
    assert view.window_shape == (48, 40, 20)
    # The U-Net pads y by (4, 4) and z by (6, 6): offsets (24, 12 + 4, 7 + 6) // 16.
    assert view.cell == (1, 1, 0)
    assert view.bottleneck_shape == (16, 3, 3, 2)
    np.testing.assert_allclose(view.beta, [0.7, -0.4, 1.3, 0.5], rtol=1e-6)

    # Network input by hand: z-scored channels in the brain, cropped to the window.
    image = np.stack([zscore(arrays[k], arrays["brain mask"]) for k in ("T1", "T2", "FLAIR")])
    x = torch.from_numpy(image[:, 6:54].astype(np.float32))[None]
    ref = reference(model, x)
    mats = ref["effective" if effective else "raw"]
    k, i, j = view.cell
    for a in "DHWC":
        np.testing.assert_allclose(view.rank_one.matrices[a], mats[a], rtol=1e-4, atol=1e-6)

    # Rank-one tensors of the elements (q, k, i, j), q = 0..C-1: m_C[q] x m_D[k] x m_H[i] x m_W[j].
    tensors = np.einsum("qa,b,c,d->qabcd", mats["C"], mats["D"][k], mats["H"][i], mats["W"][j])
    if effective:  # they are what the block applies: Z[q, k, i, j] = <tensor_q, g(X)>
        np.testing.assert_allclose(
            np.einsum("qabcd,abcd->q", tensors, ref["g"]), ref["z"][:, k, i, j], rtol=1e-4,
            atol=1e-5,
        )  # fmt: skip
    chosen = tensors[channel] if channel >= 0 else tensors.mean(axis=0)
    expected = chosen.sum(axis=0) if source < 0 else chosen[source]
    np.testing.assert_allclose(view.rank_one.spatial_map, expected, rtol=1e-4, atol=1e-7)
    c_row = mats["C"][channel] if channel >= 0 else mats["C"].mean(axis=0)
    np.testing.assert_allclose(view.rank_one.factors["C"], c_row, rtol=1e-4, atol=1e-7)
    for a, idx in zip("DHW", view.cell, strict=True):
        np.testing.assert_allclose(view.rank_one.factors[a], mats[a][idx], rtol=1e-4, atol=1e-7)

    # Image space: every window voxel shows the weight of its cell; zero outside the window.
    grid = np.indices(SHAPE)
    inside = (grid[0] >= 6) & (grid[0] < 54)
    cells = [(grid[0] - 6) // 16, (grid[1] + 4) // 16, (grid[2] + 6) // 16]
    want = np.where(inside, expected[tuple(np.clip(c, 0, 2) for c in cells)], 0.0)
    np.testing.assert_allclose(view.image_map, want, rtol=1e-4, atol=1e-7)
    assert view.image_map.shape == SHAPE and view.image_map.dtype == np.float32


@pytest.mark.parametrize(
    ("offset", "window", "cell"),
    [
        ((0, 0, 0), (64, 64, 64), (0, 0, 0)),
        ((15, 16, 63), (64, 64, 64), (0, 1, 3)),
        ((31, 32, 47), (64, 64, 64), (1, 2, 2)),
        ((11, 12, 0), (40, 20, 48), (0, 1, 0)),  # padded by (4, 4) and (6, 6)
        ((39, 19, 47), (40, 20, 48), (2, 1, 2)),
    ],
)
def test_bottleneck_cell_table(offset, window, cell):
    assert bottleneck_cell(offset, window) == cell


@pytest.mark.parametrize(
    ("args", "bounds"),
    [((30, 48, 56), (6, 48)), ((2, 48, 56), (0, 48)), ((55, 48, 56), (8, 48)),
     ((10, 48, 40), (0, 40))],
)  # fmt: skip
def test_window_bounds_table(args, bounds):
    assert window_bounds(*args) == bounds


def test_cells_to_window_inverts_bottleneck_cell():
    window = (40, 20, 48)
    cells = np.arange(3 * 2 * 3, dtype=float).reshape(3, 2, 3)
    up = cells_to_window(cells, window)
    assert up.shape == window
    for offset in [(0, 0, 0), (11, 12, 47), (39, 19, 16), (27, 3, 31)]:
        assert up[offset] == cells[bottleneck_cell(offset, window)]
    with pytest.raises(ValueError, match="does not belong to a window"):
        cells_to_window(cells, (64, 20, 48))
    with pytest.raises(ValueError, match="outside the window"):
        bottleneck_cell((40, 0, 0), window)


def test_forward_pass_is_reused_until_something_changes():
    arrays, model = seg_arrays(), seg_model()
    inspector = AttentionInspector()

    def look(voxel, arr=arrays, net=model, **kw):
        return inspector.inspect("segmentation", arr, (2, 2, 2), net, SEG_CKPT, voxel,
                                 window=32, **kw)  # fmt: skip

    first = look((2, 12, 7))
    assert not first.reused_forward
    # Same window (clamped at the border), other options: no new pass.
    again = look((3, 13, 8), effective=False, channel=2, source_channel=1)
    assert again.reused_forward and inspector.forward_passes == 1
    assert look((30, 12, 7)).window_start != first.window_start  # another window
    assert inspector.forward_passes == 2
    changed = {**arrays, "T1": arrays["T1"] * 2}  # z-scoring hides a pure scale: shift instead
    changed["T1"][10, 10, 10] += 5
    look((30, 12, 7), arr=changed)
    look((30, 12, 7), arr=changed, net=seg_model(seed=1))
    assert inspector.forward_passes == 4


def test_resampled_inputs_map_voxels_and_maps_back():
    shape = (40, 36, 24)  # 1 mm, the model runs at 2 mm: a (20, 18, 12) grid
    arrays = seg_arrays(shape)
    view = AttentionInspector().inspect(
        "segmentation", arrays, (1, 1, 1), seg_model(), SEG_CKPT, (9, 20, 23), window=16
    )
    assert view.network_voxel == (4, 10, 11)
    net = prepare_network_input("segmentation", arrays, (1, 1, 1), SEG_CKPT)
    assert net.shape == (20, 18, 12) and net.voxel_size == (2.0, 2.0, 2.0)
    full = np.zeros(net.shape, dtype=np.float32)
    start, size = view.window_start, view.window_shape
    full[tuple(slice(s, s + n) for s, n in zip(start, size, strict=True))] = cells_to_window(
        view.rank_one.spatial_map, size
    )
    assert view.image_map.shape == shape
    for v in [(0, 0, 0), (9, 20, 23), (39, 35, 0), (17, 3, 12)]:
        assert view.image_map[v] == full[net.to_network(v)]


def test_qsm_voxels_follow_the_b0_rotation():
    torch.manual_seed(0)
    model = build_model("fanet-qsm", features=TINY).eval()
    rng = np.random.default_rng(1)
    mask = np.zeros(SHAPE, dtype=np.float32)
    mask[4:-4, 4:-4, 3:-3] = 1
    field = (0.02 * rng.standard_normal(SHAPE) * mask).astype(np.float32)
    arrays = {"local field": field, "brain mask": mask}
    vox = (2.0, 2.0, 2.0)

    # B0 along z (or -z): no rotation, the network sees the masked field over its own spread.
    spread = np.float32(field[mask > 0].std())
    for b0_z in (1, -1):
        net = prepare_network_input("qsm", arrays, vox, QSM_CKPT, b0_dir=(0, 0, b0_z))
        assert net.rotation is None
        np.testing.assert_allclose(net.image[0], field * mask / spread, rtol=1e-5)

    # Tilted B0: a blob at the voxel lands where to_network says after the real alignment.
    b0, voxel = (0.4, -0.2, 1.0), (20, 26, 12)
    net = prepare_network_input("qsm", arrays, vox, QSM_CKPT, b0_dir=b0)
    assert net.rotation is not None
    blob = np.zeros(SHAPE, dtype=np.float32)
    blob[tuple(slice(c - 1, c + 2) for c in voxel)] = 1
    aligned, *_ = align_to_b0(blob, np.ones(SHAPE), np.asarray(b0) / np.linalg.norm(b0), vox)
    peak = np.unravel_index(np.argmax(aligned), SHAPE)
    assert np.abs(np.subtract(peak, net.to_network(voxel))).max() <= 1

    view = AttentionInspector().inspect(
        "qsm", arrays, vox, model, QSM_CKPT, voxel, window=32, b0_dir=b0
    )
    assert view.network_voxel == net.to_network(voxel)
    assert view.image_map.shape == SHAPE and view.image_map[voxel] > 0
    assert view.bottleneck_shape[1:] == (2, 2, 2)


def test_request_and_model_loading(tmp_path, monkeypatch):
    monkeypatch.setattr(model_catalog, "_added", {})
    fa = save_checkpoint(tmp_path / "tiny-fa.pt", seg_model(), extra=SEG_CKPT["extra"])
    plain = build_model("unet-seg", features=TINY)
    save_checkpoint(tmp_path / "tiny-unet.pt", plain, extra=SEG_CKPT["extra"])
    model_catalog.add_model(fa)
    model_catalog.add_model(tmp_path / "tiny-unet.pt")
    names = [e.name for e in fa_models("segmentation")]
    assert "tiny-fa" in names and "tiny-unet" not in names
    assert all(e.task == "qsm" for e in fa_models("qsm"))

    arrays = seg_arrays()
    inputs = {role: LayerVolume(role, a, (2.0, 2.0, 2.0)) for role, a in arrays.items()}
    request = PredictionRequest("segmentation", inputs, str(fa))
    inspector = AttentionInspector()
    view = inspector.inspect_request(request, (30, 12, 7), window=32)
    # Window 32: x starts at 30 - 16 (offset 16), y at 0 (offset 12), z is whole (padded by 6).
    assert view.window_start == (14, 0, 0) and view.cell == (1, 0, 0)
    assert inspector.load(str(fa))[0] is inspector.load(str(fa))[0]
    request.inputs["T1"] = None
    with pytest.raises(ValueError, match="cannot inspect: choose a T1 layer"):
        inspector.inspect_request(request, (30, 12, 7))


def test_voxel_on_ray_picks_the_brightest_voxel():
    volume = np.zeros((12, 10, 9))
    volume[5, 6, 7] = 3.0
    volume[9, 6, 7] = 1.0
    assert voxel_on_ray(volume, (0, 6, 7), (11.9, 6, 7)) == (5, 6, 7)
    assert voxel_on_ray(volume, (0, 0, 0), (0, 0, 0)) == (0, 0, 0)


def test_inspector_errors():
    arrays, model = seg_arrays(), seg_model()
    inspector = AttentionInspector()

    def look(task="segmentation", net=model, voxel=(30, 12, 7), **kw):
        return inspector.inspect(task, arrays, (2, 2, 2), net, SEG_CKPT, voxel, **kw)

    with pytest.raises(ValueError, match="positive multiple of 16 voxels, got 40"):
        look(window=40)
    with pytest.raises(TypeError, match=r"window must be None \(the whole volume\) or an integer"):
        look(window=32.0)
    with pytest.raises(ValueError, match="is a segmentation model, not qsm"):
        look("qsm")
    with pytest.raises(ValueError, match=r"voxel \(56, 0, 0\) is outside the volume"):
        look(voxel=(56, 0, 0))
    with pytest.raises(ValueError, match=r"channel must be -1 \(all\) or in \[0, 15\]"):
        look(channel=16, window=32)
    with pytest.raises(TypeError, match="source_channel must be an integer"):
        look(source_channel=0.5, window=32)
    full_res = nn.Sequential(nn.Conv3d(3, 8, 1), FoldedAttention3d(8))  # FA not at 1/16
    with pytest.raises(ValueError, match="expects a U-Net level-4 grid of"):
        look(net=full_res, window=16)
    with pytest.raises(ValueError, match="task must be one of"):
        prepare_network_input("denoise", arrays, (2, 2, 2), SEG_CKPT)
    with pytest.raises(ValueError, match=r"segmentation needs the inputs \['FLAIR'\]"):
        prepare_network_input(
            "segmentation", {k: arrays[k] for k in ("T1", "T2")}, (2, 2, 2), SEG_CKPT
        )
    look(window=32)
    record = inspector._forward[2]["attention"]
    with pytest.raises(TypeError, match="channel must be an integer"):
        rank_one_factors(record, (0, 0, 0), channel=True)
    with pytest.raises(ValueError, match=r"cell \(2, 0, 0\) is outside the FA block's grid"):
        rank_one_factors(record, (2, 0, 0))


def test_qsm_input_errors():
    mask = np.zeros(SHAPE, dtype=np.float32)
    arrays = {"local field": np.zeros(SHAPE, dtype=np.float32), "brain mask": mask}
    with pytest.raises(ValueError, match="brain mask is empty"):
        prepare_network_input("qsm", arrays, (2, 2, 2), QSM_CKPT)
    mask[10:20, 10:20, 5:15] = 1
    with pytest.raises(ValueError, match=r"lacks the QSM preprocessing scales"):
        prepare_network_input("qsm", arrays, (2, 2, 2), SEG_CKPT)
    with pytest.raises(ValueError, match="B0 direction must be 3 numbers, not all zero"):
        prepare_network_input("qsm", arrays, (2, 2, 2), QSM_CKPT, b0_dir=(0, 0, 0))


LEVEL2_BETAS = (0.5, -0.3, 0.8, 0.2)


def level2_model(seed=0):
    """A tiny FA-Net with FA blocks at levels 2 (1/4 resolution) and 4, sqrt energy scaling."""
    torch.manual_seed(seed)
    model = build_model(
        "fanet-seg", features=(8, 8, 8, 8, 8), attention_levels=(2, 4),
        attention_kwargs={"scale": "sqrt"},
    ).eval()  # fmt: skip
    with torch.no_grad():
        model.level_attention["2"].beta.copy_(torch.tensor(LEVEL2_BETAS))
        model.attention.beta.copy_(torch.tensor([0.7, -0.4, 1.3, 0.5]))
    return model


@pytest.mark.parametrize("effective", [True, False])
def test_finest_level_over_the_whole_volume_by_default(effective):
    arrays, model = seg_arrays(), level2_model()
    inspector = AttentionInspector()
    voxel = (30, 12, 7)
    view = inspector.inspect(
        "segmentation", arrays, (2.0, 2.0, 2.0), model, SEG_CKPT, voxel, effective=effective
    )
    # Whole volume: (56, 40, 20) padded to (64, 48, 32); level 2: cells of 4 voxels (8 mm).
    assert view.whole_volume and view.window_start == (0, 0, 0) and view.window_shape == SHAPE
    assert (view.level, view.levels, view.cell_size) == (2, (2, 4), 4)
    assert view.cell_mm == (8.0, 8.0, 8.0)
    assert view.bottleneck_shape == (8, 16, 12, 8)
    # Padded offsets (30 + 4, 12 + 4, 7 + 6) // 4.
    assert view.cell == (8, 4, 3)
    np.testing.assert_allclose(view.beta, LEVEL2_BETAS, rtol=1e-6)

    image = np.stack([zscore(arrays[k], arrays["brain mask"]) for k in ("T1", "T2", "FLAIR")])
    x = torch.from_numpy(image.astype(np.float32))[None]
    ref = reference(model, x, model.level_attention["2"], sqrt_scale=True)
    mats = ref["effective" if effective else "raw"]
    k, i, j = view.cell
    expected = mats["C"].mean(axis=0).sum() * np.einsum(
        "a,b,c->abc", mats["D"][k], mats["H"][i], mats["W"][j]
    )
    assert view.rank_one.spatial_map.shape == (16, 12, 8)
    np.testing.assert_allclose(view.rank_one.spatial_map, expected, rtol=1e-4, atol=1e-8)
    if not effective:  # raw rows summed over input channels: a distribution over the volume
        assert view.rank_one.spatial_map.sum() == pytest.approx(1.0, rel=1e-6)
    # The map is the outer product of the cached rows (no new pass for another voxel).
    cached = inspector._matrices[("level_attention.2", effective)]
    other = inspector.inspect(
        "segmentation", arrays, (2.0, 2.0, 2.0), model, SEG_CKPT, (3, 39, 19), effective=effective
    )
    assert other.cell == (1, 10, 6) and inspector.forward_passes == 1
    rows = [cached[a][c] for a, c in zip("DHW", other.cell, strict=True)]
    weight = cached["C"].mean(axis=0).sum()
    np.testing.assert_allclose(
        other.rank_one.spatial_map, weight * np.einsum("a,b,c->abc", *rows), rtol=1e-12
    )
    # The image-space map: every voxel shows its cell's weight.
    grid = np.indices(SHAPE)
    cells = tuple((g + b) // 4 for g, b in zip(grid, (4, 4, 6), strict=True))
    np.testing.assert_allclose(view.image_map, expected[cells], rtol=1e-4, atol=1e-8)
    assert "level 2 (8 x 8 x 8 mm cells)" in view.legend()
    if not effective:
        assert "sums to 1" in view.legend()


def test_level_choice_and_its_errors():
    arrays, model = seg_arrays(), level2_model()
    inspector = AttentionInspector()

    def look(**kw):
        return inspector.inspect(
            "segmentation", arrays, (2, 2, 2), model, SEG_CKPT, (30, 12, 7), **kw
        )

    bottleneck = look(level=4)
    assert (bottleneck.cell_size, bottleneck.bottleneck_shape[1:]) == (16, (4, 3, 2))
    assert bottleneck.cell == (2, 1, 0)
    assert look(level=2).cell == (8, 4, 3)
    assert inspector.forward_passes == 1  # one pass captured both levels
    with pytest.raises(
        ValueError, match=r"no FA block at level 3; it has FA blocks at level\(s\) \[2, 4\]"
    ):
        look(level=3)
    with pytest.raises(TypeError, match="level must be None \\(the finest\\) or an integer"):
        look(level="2")
    with pytest.raises(ValueError, match="Conv3d has no FoldedAttention3d block to inspect"):
        inspector.inspect(
            "segmentation", arrays, (2, 2, 2), nn.Conv3d(3, 3, 1), SEG_CKPT, (0, 0, 0)
        )
    # A bottleneck-only model keeps working as before: level 4 is its finest.
    assert (
        AttentionInspector()
        .inspect("segmentation", arrays, (2, 2, 2), seg_model(), SEG_CKPT, (30, 12, 7))
        .level
        == 4
    )


def test_clicks_and_levels_do_not_rerun_the_network():
    arrays, model = seg_arrays(), level2_model()
    calls = []
    model.encoders[0].register_forward_hook(lambda *_: calls.append(1))
    inspector = AttentionInspector()
    for voxel, options in [
        ((30, 12, 7), {}), ((2, 3, 4), {}), ((50, 30, 10), {"effective": False}),
        ((50, 30, 10), {"level": 4}), ((10, 10, 10), {"channel": 3, "source_channel": 1}),
    ]:  # fmt: skip
        inspector.inspect("segmentation", arrays, (2, 2, 2), model, SEG_CKPT, voxel, **options)
    assert len(calls) == 1 and inspector.forward_passes == 1
    inspector.inspect("segmentation", arrays, (2, 2, 2), model, SEG_CKPT, (30, 12, 7), window=32)
    assert len(calls) == 2  # a window is another input


@pytest.mark.parametrize(
    ("shape", "voxel_size", "window"),
    [(SHAPE, (2.0, 2.0, 2.0), None), ((40, 36, 24), (1.0, 1.0, 1.0), None),
     (SHAPE, (2.0, 2.0, 2.0), 32)],
)  # fmt: skip
def test_cell_grid_lines_up_with_the_input_voxels(shape, voxel_size, window):
    arrays = seg_arrays(shape)
    view = AttentionInspector().inspect(
        "segmentation", arrays, voxel_size, level2_model(), SEG_CKPT, (9, 20, 11), window=window
    )
    grid = view.grid
    ratio = np.asarray(SEG_CKPT["extra"]["voxel_size"]) / np.asarray(voxel_size)
    np.testing.assert_allclose(grid.scale, 4 * ratio)
    if shape == SHAPE and window is None:  # padded by 4: cell 0 spans voxels -4..-1
        assert grid.offset == (-2.5, -2.5, -4.5)
    # Every input voxel lies in the cell whose centre is nearest: the cell-grid map drawn with
    # this scale and offset shows what the up-sampled image-space map shows, voxel by voxel.
    coords = np.indices(shape).reshape(3, -1).T
    cells = np.rint((coords - np.asarray(grid.offset)) / np.asarray(grid.scale)).astype(int)
    cell_map = view.rank_one.spatial_map
    start, size = np.asarray(view.window_start), np.asarray(view.window_shape)
    net_coords = (coords + 0.5) / ratio - 0.5  # the model-grid position of each voxel
    inside = np.all((net_coords >= start - 0.5) & (net_coords < start + size - 0.5), axis=1)
    assert inside.any() and (window is not None or inside.all())
    assert (cells[inside] >= 0).all() and (cells[inside] < cell_map.shape).all()
    clipped = np.clip(cells, 0, np.asarray(cell_map.shape) - 1)
    looked_up = np.where(inside, cell_map[tuple(clipped.T)], 0.0)  # the image map is 0 outside
    np.testing.assert_allclose(view.image_map.reshape(-1), looked_up, rtol=1e-6, atol=1e-9)


def test_tilted_qsm_frame_has_no_cell_grid():
    torch.manual_seed(0)
    model = build_model("fanet-qsm", features=TINY).eval()
    mask = np.zeros(SHAPE, dtype=np.float32)
    mask[4:-4, 4:-4, 3:-3] = 1
    field = (0.02 * np.random.default_rng(1).standard_normal(SHAPE) * mask).astype(np.float32)
    arrays = {"local field": field, "brain mask": mask}
    inspector = AttentionInspector()
    straight = inspector.inspect("qsm", arrays, (2, 2, 2), model, QSM_CKPT, (20, 26, 12))
    assert straight.grid is not None and straight.whole_volume
    tilted = inspector.inspect(
        "qsm", arrays, (2, 2, 2), model, QSM_CKPT, (20, 26, 12), b0_dir=(0.4, -0.2, 1.0)
    )
    assert tilted.grid is None and tilted.image_map.shape == SHAPE


def test_whole_volume_out_of_memory_suggests_a_window(monkeypatch):
    model = level2_model()

    def too_big(x):
        raise MemoryError("cannot allocate")

    monkeypatch.setattr(model, "bottleneck", too_big)
    with pytest.raises(MemoryError, match=r"over a \(56, 40, 20\) input .* with a window"):
        AttentionInspector().inspect(
            "segmentation", seg_arrays(), (2, 2, 2), model, SEG_CKPT, (30, 12, 7)
        )


def test_fa_levels_of_checkpoints(tmp_path):
    grown = save_checkpoint(tmp_path / "levels.pt", level2_model(), extra=SEG_CKPT["extra"])
    plain = save_checkpoint(
        tmp_path / "plain.pt", build_model("unet-seg", features=TINY), extra=SEG_CKPT["extra"]
    )
    assert fa_levels(grown) == (2, 4)
    assert fa_levels(plain) == ()


@pytest.mark.parametrize(
    ("offset", "window", "level", "cell"),
    [((0, 0, 0), (64, 64, 64), 2, (0, 0, 0)), ((15, 16, 63), (64, 64, 64), 2, (3, 4, 15)),
     ((11, 12, 0), (40, 20, 48), 2, (3, 4, 0)), ((11, 12, 0), (40, 20, 48), 0, (15, 18, 0))],
)  # fmt: skip
def test_cells_at_finer_levels(offset, window, level, cell):
    assert bottleneck_cell(offset, window, level) == cell
    cells = np.random.default_rng(0).random(tuple((w + (-w) % 16) // 2**level for w in window))
    assert cells_to_window(cells, window, level)[offset] == cells[cell]


def test_level_argument_errors():
    with pytest.raises(ValueError, match=r"level must be a U-Net level in 0..4, got 5"):
        bottleneck_cell((0, 0, 0), (16, 16, 16), 5)
    with pytest.raises(TypeError, match="level must be an integer U-Net level"):
        cells_to_window(np.zeros((1, 1, 1)), (16, 16, 16), 2.0)
    with pytest.raises(ValueError, match=r"level-2 grid of shape \(1, 1, 1\) does not belong"):
        cells_to_window(np.zeros((1, 1, 1)), (16, 16, 16), 2)
