"""B0 directions between world and array axes."""

import numpy as np


def test_world_to_array_direction_uses_only_rotation_and_flips():
    from napari_fanet.io.b0_direction import array_to_world_direction, world_to_array_direction

    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    world = np.array([1.0, 0.0, 1.0]) / np.sqrt(2)
    # anisotropic voxels must not tilt the direction (the physical angle is what matters)
    np.testing.assert_allclose(world_to_array_direction(world, affine), world, atol=1e-12)
    flipped = np.diag([-2.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(world_to_array_direction(world, flipped), [-world[0], 0, world[2]])
    back = array_to_world_direction(world_to_array_direction(world, flipped), flipped)
    np.testing.assert_allclose(back, world, atol=1e-12)
