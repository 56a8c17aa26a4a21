"""Headless napari smoke test: a real viewer under Xvfb + Mesa, with the plugin registered."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qtpy", reason="needs the [qt] extra")


def test_viewer_knows_plugin_and_shows_3d_image(make_napari_viewer) -> None:
    from npe2 import PluginManager

    viewer = make_napari_viewer(show=True)

    # make_napari_viewer runs napari's plugin discovery into the global npe2 manager.
    names = {mf.name for mf in PluginManager.instance().iter_manifests()}
    assert "napari-fanet" in names

    volume = np.zeros((8, 16, 16), dtype=np.float32)
    volume[2:6, 4:12, 4:12] = 1.0
    layer = viewer.add_image(volume, name="tiny volume")
    assert layer.ndim == 3
    assert viewer.layers["tiny volume"] is layer

    # Render through vispy/OpenGL in 2D and as a 3D volume; a broken GL stack fails here.
    for ndisplay in (2, 3):
        viewer.dims.ndisplay = ndisplay
        shot = viewer.screenshot(canvas_only=True, flash=False)
        assert shot.ndim == 3
        assert shot.shape[-1] == 4
        assert shot[..., :3].max() > 0, f"blank canvas with ndisplay={ndisplay}"
