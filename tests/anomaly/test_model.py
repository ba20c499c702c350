"""The anomaly model's resampling as matrix products gives the interpolate / pool / blur chain's numbers."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch.nn import functional as F  # noqa: E402

from inspectloop.anomaly import model  # noqa: E402


@pytest.mark.parametrize(("grid", "size", "pool"), [
    ((15, 6), (60, 24), 4),  # deep stride-32 blocks at stride 32 (KolektorSDD's 192 x 480)
    ((15, 6), (60, 24), 2),
    ((16, 16), (32, 32), 1),  # block 10 of the default model upsampled to block 4's grid
    ((32, 32), (32, 32), 2),  # block 4 pooled to stride 16
    ((7, 9), (29, 37), 4),  # odd sizes: a remainder row and column are dropped, as avg_pool2d drops them
])
def test_resizing_then_pooling_is_the_interpolate_and_avg_pool_chain(grid: tuple[int, int], size: tuple[int, int],
                                                                      pool: int) -> None:
    tap = torch.randn(2, 5, *grid, generator=torch.Generator().manual_seed(0))
    expected = tap if grid == size else F.interpolate(tap, size=size, mode="bilinear", align_corners=False)
    if pool > 1:
        expected = F.avg_pool2d(expected, pool)
    rows, columns = model._Resamplers().get(tap, size, lambda n, to: model._pooled(model._bilinear(n, to), pool))
    got = rows @ tap @ columns.t()
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize(("grid", "shape"), [((15, 6), (480, 192)), ((28, 28), (224, 224)), ((8, 8), (64, 64))])
def test_the_heatmap_is_the_upsampled_patch_scores_blurred_with_reflected_borders(grid: tuple[int, int],
                                                                                  shape: tuple[int, int]) -> None:
    patches = torch.rand(3, *grid, generator=torch.Generator().manual_seed(1))
    blur = model._gaussian_kernel(model.HEATMAP_SIGMA)
    pad, kernel = blur.numel() // 2, blur.reshape(1, 1, 1, -1)
    up = F.interpolate(patches[:, None], size=shape, mode="bilinear", align_corners=False)
    up = F.conv2d(F.pad(up, (pad, pad, 0, 0), mode="reflect"), kernel)
    expected = F.conv2d(F.pad(up, (0, 0, pad, pad), mode="reflect"), kernel.transpose(2, 3))[:, 0]
    core = model.PatchCore(torch.nn.Identity(), torch.zeros(1, 4), shape)  # smooth() reads no features
    assert torch.allclose(core.smooth(patches), expected, atol=1e-5)


def test_matrices_are_made_once_per_grid() -> None:
    resamplers, made = model._Resamplers(), []

    def make(n: int, to: int) -> torch.Tensor:
        made.append((n, to))
        return model._bilinear(n, to)

    for _ in range(3):
        resamplers.get(torch.zeros(1, 1, 4, 5), (8, 10), make)
    resamplers.get(torch.zeros(1, 1, 4, 6), (8, 10), make)
    assert made == [(4, 8), (5, 10), (4, 8), (6, 10)]
