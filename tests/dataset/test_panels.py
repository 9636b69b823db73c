"""The one panel grid that serving, the external set and the experimental images share."""

from __future__ import annotations

import numpy as np
import pytest

from spinfer.data.panels import cut_panels, panel_corners
from spinfer.errors import InputError


def test_panels_tile_the_image_row_major_and_cut_what_they_name():
    image = np.arange(250 * 130 * 3, dtype=np.float32).reshape(250, 130, 3)
    corners = panel_corners(image.shape[:2], 100)
    assert corners == [(0, 0), (100, 0)]  # the remainder is left out, never padded
    tiles = cut_panels(image, corners, 100)
    assert tiles.shape == (2, 100, 100, 3)
    np.testing.assert_array_equal(tiles[1], image[100:200, :100])
    assert len(panel_corners((250, 130), 100, stride=50)) == 4 * 1
    assert panel_corners((99, 200), 100) == []


def test_a_stride_below_one_is_refused():
    with pytest.raises(InputError, match="stride must be >= 1"):
        panel_corners((200, 200), 100, stride=0)
