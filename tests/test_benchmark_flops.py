"""The FLOP counts that benchmarks/engine.py and benchmarks/grid.py divide by (issue 14)."""

import pytest


@pytest.fixture
def benchmarks(monkeypatch, request):
    """benchmarks/ importable, as its scripts import each other."""
    monkeypatch.syspath_prepend(str(request.config.rootpath / "benchmarks"))
    import gemm
    import grid

    return gemm, grid


def test_flops_per_sample_by_hand(benchmarks):
    gemm, _ = benchmarks
    # 64·128 + 128·10 = 9472 multiply-adds forward; weight gradients the same; deltas skip layer 1
    assert gemm.forward_flops_per_sample([64, 128, 10]) == 2 * 9472
    assert gemm.train_flops_per_sample([64, 128, 10]) == 2 * (3 * 9472 - 64 * 128)


@pytest.mark.parametrize("sizes", [[64, 128, 10], [100, 256, 256, 10], [2, 3]])
@pytest.mark.parametrize("m", [1, 32, 359])
def test_timed_products_are_the_counted_flops(benchmarks, sizes, m):
    gemm, _ = benchmarks
    step = gemm.step_products(sizes, m)
    assert gemm.product_flops(step) == m * gemm.train_flops_per_sample(sizes)
    forward = gemm.step_products(sizes, m, backward=False)
    assert gemm.product_flops(forward) == m * gemm.forward_flops_per_sample(sizes)
    for left, right, out in step:
        assert out.shape == (left.shape[0], right.shape[1])


def test_grid_flops_by_hand(benchmarks):
    _, grid = benchmarks
    # 2-3-2: 12 multiply-adds forward (24 FLOPs), training 2·(3·12 - 6) = 60 FLOPs per sample
    passes = grid.grid_passes([2, 3, 2], n_train=10, n_val=4, batch_size=5, runs=2, epochs=3)
    assert [flops for flops, _, _ in passes.values()] == [3 * 10 * 60, 3 * 4 * 24, 2 * 10 * 24]
    assert [rows for _, rows, _ in passes.values()] == [5, 4, 10]
    rates = dict.fromkeys(passes, 1e-9)  # one FLOP a second on each core
    assert grid.limit_seconds(passes, rates, cores=2) == pytest.approx((1800 + 288 + 480) / 2)
