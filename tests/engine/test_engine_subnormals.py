"""A run's ``subnormals`` setting (nnlab/engine/arithmetic.py): IEEE arithmetic kept, the
reference, or subnormal numbers flushed to zero while the run trains.

What is checked on the real CPU register: that ``flush`` is in effect in the thread that trains
(inside ``on_epoch``, a subnormal result is 0), alone and packed, and that the thread's
arithmetic is back as it was after the run, also when the run raises; that a run meeting no
subnormal gives the same bits either way; that a sigmoid network at a large learning rate meets
them, and flushed still trains to the same bits alone, in a pack and on both engine paths; that
packs never mix the two; the errors; and checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import SET_FTZ_DAZ_WITH_LIBM, require_glibc_fenv, require_numba, without_numba
from test_engine_packed import assert_same_run, records

from nnlab.checks import InputError
from nnlab.engine import MLP, arithmetic, pack_plan, train, train_many
from nnlab.engine.training import bind_train_arguments, prepare

TINY = np.finfo(np.float64).tiny


@pytest.fixture(autouse=True)
def flushing_possible():
    require_numba()
    if platform.machine().lower() not in arithmetic.X86_64:
        pytest.skip(f"subnormals='flush' needs x86-64; this CPU is {platform.machine()!r}")


@contextlib.contextmanager
def two_blas_threads():
    """BLAS at two threads for the block; a skip where this machine's BLAS cannot have two."""
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(2, user_api="blas"):
        counts = {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
        if counts != {2}:
            pytest.skip(f"BLAS runs {sorted(counts)} threads here, not 2")
        yield


def quarter_of_tiny() -> float:
    """A subnormal result in IEEE arithmetic (tiny / 4), 0.0 where subnormals are flushed."""
    return float(np.array([TINY])[0] / 4)


def flushing_thread() -> None:
    """Set this thread's FTZ and DAZ as a library other than nnlab would."""
    exec(SET_FTZ_DAZ_WITH_LIBM, {})


def digits_like(n: int = 120, seed: int = 0, scale: float = 1.0):
    """16 features, 10 classes; ``scale`` 10 makes inputs that saturate sigmoid units."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 16)) * scale, rng.integers(0, 10, n)


def subnormals_in(array: np.ndarray) -> int:
    return int(np.count_nonzero((array != 0) & (np.abs(array) < TINY)))


def saturating(subnormals: str, seed: int = 0) -> dict:
    """A sigmoid network's settings at a learning rate that saturates it: it meets subnormals."""
    return {
        "optimizer": "adam",
        "learning_rate": 10.0,
        "epochs": 6,
        "batch_size": 16,
        "seed": seed,
        "subnormals": subnormals,
        "divergence_factor": None,
    }


def sigmoid_net(seed: int = 0) -> MLP:
    return MLP([16, 32, 10], activation="sigmoid", seed=seed)


@pytest.mark.parametrize("packed", [False, True], ids=["alone", "packed"])
def test_flush_is_in_effect_while_the_run_trains_and_undone_after(packed):
    X, y = digits_like()
    seen = {"keep": [], "flush": []}
    runs = [
        (
            MLP([16, 8, 10], seed=k),
            {
                "epochs": 3,
                "subnormals": mode,
                "on_epoch": lambda _, mode=mode: seen[mode].append(quarter_of_tiny()),
            },
        )
        for k, mode in enumerate(("keep", "flush", "keep", "flush"))
    ]
    if packed:
        assert sorted(pack_plan(runs, X, y)) == [[0, 2], [1, 3]]  # a pack of two in each mode
        train_many(runs, X, y)
    else:
        for net, settings in runs:
            train(net, X, y, **settings)
    assert seen["flush"] == [0.0] * 6
    assert seen["keep"] == [TINY / 4] * 6
    assert quarter_of_tiny() == TINY / 4  # this thread is IEEE again


def test_keep_trains_in_ieee_arithmetic_in_a_thread_that_already_flushes():
    """Another library set FTZ/DAZ in the caller's thread: a kept run still trains as the
    reference does, and the thread flushes again afterwards."""
    require_glibc_fenv()
    X, y = digits_like(scale=10.0)
    reference = train(sigmoid_net(), X, y, **saturating("keep"))

    def elsewhere(out: dict) -> None:  # a fresh thread, so this one's register is not touched
        flushing_thread()
        assert arithmetic.thread_flushes()
        seen = []
        out["run"] = train(
            sigmoid_net(),
            X,
            y,
            **saturating("keep"),
            on_epoch=lambda _: seen.append(quarter_of_tiny()),
        )
        out["seen"], out["after"] = seen, arithmetic.thread_flushes()

    out = {}
    thread = threading.Thread(target=elsewhere, args=(out,))
    thread.start()
    thread.join()
    assert out["seen"] == [TINY / 4] * len(reference.history)
    assert records(out["run"]) == records(reference)
    assert out["after"] is True


def test_nnlab_compiled_in_a_thread_that_flushes_still_tells_ieee_threads_apart():
    """Python parses a literal such as 5e-324 as 0.0 in a thread that flushes, and the .pyc
    keeps it so: the subnormal that tells whether a thread flushes is built from its bits."""
    require_glibc_fenv()
    source = Path(arithmetic.__file__).read_text()
    namespace = {"__name__": "arithmetic_compiled_flushing"}

    def compile_here():
        flushing_thread()
        exec(compile(source, arithmetic.__file__, "exec"), namespace)

    thread = threading.Thread(target=compile_here)
    thread.start()
    thread.join()
    assert not namespace["thread_flushes"]()  # this thread is IEEE


def test_a_kept_run_inside_a_flushed_runs_callback_trains_in_ieee_arithmetic():
    X, y = digits_like()
    inner = []

    def nested(_):
        train(MLP([16, 8, 10]), X, y, epochs=1, on_epoch=lambda _: inner.append(quarter_of_tiny()))
        inner.append(("after", quarter_of_tiny()))

    train(MLP([16, 8, 10]), X, y, epochs=1, subnormals="flush", on_epoch=nested)
    assert inner == [TINY / 4, ("after", 0.0)]
    assert not arithmetic.thread_flushes()


def test_the_register_is_put_back_when_the_run_raises():
    X, y = digits_like()

    def fail(record):
        raise RuntimeError(f"stop at epoch {record.epoch}")

    with pytest.raises(RuntimeError, match="stop at epoch 1"):
        train(MLP([16, 8, 10]), X, y, epochs=3, subnormals="flush", on_epoch=fail)
    assert quarter_of_tiny() == TINY / 4


def test_blas_products_flush_however_many_blas_threads_the_process_has():
    """OpenBLAS's own threads keep their own registers (with two, half of a large product was
    left subnormal): while a run is flushed, BLAS is held to the training thread."""
    from threadpoolctl import threadpool_info

    A = np.full((512, 512), 1e-160)  # every product 1e-320, subnormal
    with two_blas_threads():
        assert subnormals_in(A @ A) == A.size
        with arithmetic.training("flush"):
            flushed = A @ A
        assert subnormals_in(flushed) == 0 and not flushed.any()
        threads = {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}
        assert threads == {2}  # and back after
        assert subnormals_in(A @ A) == A.size


def numpy_blas_threads() -> int:
    """NumPy's BLAS's threads (numba may have loaded SciPy's too, which NumPy never calls)."""
    from threadpoolctl import threadpool_info

    (threads,) = {
        info["num_threads"]
        for info in threadpool_info()
        if info["user_api"] == "blas" and "numpy" in info["filepath"]
    }
    return threads


def test_blas_is_held_from_a_thread_other_than_the_one_that_set_its_limit():
    """threadpoolctl lets only the first thread that set a limit change OpenBLAS's
    process-wide pool, and ignores the others: a flushed run in another thread still holds
    BLAS to one thread (its products flush whole), and gives the count back after."""
    A = np.full((512, 512), 1e-160)
    seen = {}

    def flushed_elsewhere():
        with arithmetic.training("flush"):
            seen["threads"], seen["product"] = numpy_blas_threads(), A @ A

    with two_blas_threads():  # this thread sets the limit: it controls OpenBLAS
        thread = threading.Thread(target=flushed_elsewhere)
        thread.start()
        thread.join()
        assert seen["threads"] == 1
        assert subnormals_in(seen["product"]) == 0  # counted here: DAZ reads them as 0 there
        assert numpy_blas_threads() == 2
        assert subnormals_in(A @ A) == A.size


def test_a_limit_set_by_another_thread_during_a_flushed_run_does_not_undo_its_hold():
    from threadpoolctl import threadpool_limits

    A = np.full((512, 512), 1e-160)
    inside, go_on, seen = threading.Event(), threading.Event(), {}

    def flushed():
        with arithmetic.training("flush"):
            inside.set()
            go_on.wait(30)
            seen["threads"], seen["product"] = numpy_blas_threads(), A @ A

    with two_blas_threads():
        thread = threading.Thread(target=flushed)
        thread.start()
        assert inside.wait(30)
        threadpool_limits(2, user_api="blas")  # this thread's limit: ignored during the hold
        go_on.set()
        thread.join()
        assert seen["threads"] == 1 and subnormals_in(seen["product"]) == 0
        assert numpy_blas_threads() == 2  # the hold's end gave back what it found


def test_a_flushed_run_that_ends_leaves_blas_held_for_one_still_training():
    """BLAS's thread count is the process's: of two flushed runs that overlap (two threads of
    the threading backend), the first to end must not put it back under the other, and the
    last puts back what the process had."""
    _, blas = arithmetic._flushing_tools()
    with two_blas_threads():
        first, second = arithmetic._one_blas_thread(blas), arithmetic._one_blas_thread(blas)
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)  # the first run ends while the second trains
        assert numpy_blas_threads() == 1
        second.__exit__(None, None, None)
        assert numpy_blas_threads() == 2


def test_a_run_that_meets_no_subnormal_is_the_same_either_way():
    X, y = digits_like()
    settings = {"optimizer": "momentum", "learning_rate": 0.05, "epochs": 5, "seed": 3}
    kept_net, flushed_net = MLP([16, 12, 10], seed=1), MLP([16, 12, 10], seed=1)
    kept = train(kept_net, X, y, **settings)
    flushed = train(flushed_net, X, y, subnormals="flush", **settings)
    assert_same_run(kept, flushed, kept_net, flushed_net)


def test_a_saturated_sigmoid_network_meets_subnormals_which_flush_removes():
    """The last step's weight gradients and activations of each epoch hold subnormal numbers
    under IEEE arithmetic (so the setting has something to do), and none when flushed."""
    X, y = digits_like(scale=10)

    def subnormals_seen(mode: str) -> int:
        counts = []

        def count(_record):
            arrays = [trainer.backprop.flat_grad, *trainer.backprop.activations]
            counts.append(sum(subnormals_in(array) for array in arrays))

        settings = saturating(mode) | {"on_epoch": count}
        arguments = bind_train_arguments(sigmoid_net(), X, y, settings)
        trainer, until = prepare(arguments)
        with np.errstate(all="ignore"), arithmetic.training(mode):
            trainer.run(until)
        return sum(counts)

    assert subnormals_seen("keep") > 20
    assert subnormals_seen("flush") == 0


def test_flushed_runs_train_to_the_same_bits_alone_and_packed():
    X, y = digits_like(scale=10)
    val = digits_like(40, seed=1, scale=10)
    settings = [saturating("flush", seed=0) | {"learning_rate": rate} for rate in (0.1, 3.0, 10.0)]
    alone_nets = [sigmoid_net(k) for k in range(3)]
    alone = [train(n, X, y, val=val, **s) for n, s in zip(alone_nets, settings, strict=True)]
    packed_nets = [sigmoid_net(k) for k in range(3)]
    runs = list(zip(packed_nets, settings, strict=True))
    assert pack_plan(runs, X, y, val=val) == [[0, 1, 2]]
    packed = train_many(runs, X, y, val=val)
    for args in zip(alone, packed, alone_nets, packed_nets, strict=True):
        assert_same_run(*args)


def test_flushed_runs_are_the_same_on_both_engine_paths(monkeypatch):
    X, y = digits_like(scale=10)
    results = {}
    for path in ("numpy", "numba"):
        monkeypatch.setenv("NNLAB_KERNELS", path)
        net = MLP([16, 64, 10], activation="sigmoid", seed=0)  # 1,738 parameters: compiled
        results[path] = (train(net, X, y, **saturating("flush")), net)
    (reference, reference_net), (compiled, compiled_net) = results["numpy"], results["numba"]
    assert_same_run(reference, compiled, reference_net, compiled_net)


def test_packs_never_mix_kept_and_flushed_runs():
    X, y = digits_like()
    runs = [
        (MLP([16, 8, 10], seed=k), {"epochs": 2, "subnormals": mode})
        for k, mode in enumerate(("keep", "flush", "keep", "flush"))
    ]
    assert sorted(pack_plan(runs, X, y)) == [[0, 2], [1, 3]]


def test_a_bad_value_is_refused_naming_it():
    X, y = digits_like()
    with pytest.raises(InputError, match=r"subnormals 'zero'; expected one of 'keep', 'flush'"):
        train(MLP([16, 8, 10]), X, y, epochs=1, subnormals="zero")


def test_flush_without_numba_is_an_error_saying_why_and_keep_still_trains():
    stdout = without_numba("""
assert train(MLP([2, 3, 2]), X, y, epochs=2).status == "completed"
try:
    train(MLP([2, 3, 2]), X, y, epochs=2, subnormals="flush")
except InputError as error:
    print(error)
""")
    assert stdout.startswith("subnormals='flush' needs numba and threadpoolctl, which cannot")
    assert "pip install 'nnlab[fast]'" in stdout


def test_keep_in_a_flushing_thread_without_numba_is_an_error_not_another_arithmetic():
    require_glibc_fenv()
    stdout = without_numba(
        SET_FTZ_DAZ_WITH_LIBM
        + """
try:
    train(MLP([2, 3, 2]), X, y, epochs=2)
except InputError as error:
    print(error)
"""
    )
    assert stdout.startswith("subnormals='keep' in a thread that flushes subnormal numbers")
    assert "needs numba to train in IEEE arithmetic" in stdout


def test_a_kept_runs_checkpoint_reads_as_before_and_a_flushed_one_names_it():
    """Checkpoints from before the setting hold no ``subnormals``, and a kept run's still does
    not, so they resume; a flushed run's checkpoint resumes flushed only."""
    X, y = digits_like()
    kept = train(MLP([16, 8, 10], seed=0), X, y, epochs=4, until_epoch=2)
    assert "subnormals" not in kept.checkpoint.settings
    resumed = train(MLP([16, 8, 10]), X, y, epochs=4, resume=kept.checkpoint)
    assert resumed.status == "completed" and len(resumed.history) == 4
    # one that names the default (written by hand, say) is a kept run's too
    named = dataclasses.replace(
        kept.checkpoint, settings={**kept.checkpoint.settings, "subnormals": "keep"}
    )
    assert records(train(MLP([16, 8, 10]), X, y, epochs=4, resume=named)) == records(resumed)
    flushed = train(MLP([16, 8, 10], seed=0), X, y, epochs=4, until_epoch=2, subnormals="flush")
    assert flushed.checkpoint.settings["subnormals"] == "flush"
    with pytest.raises(InputError, match="subnormals='flush' in the checkpoint, 'keep' here"):
        train(MLP([16, 8, 10]), X, y, epochs=4, resume=flushed.checkpoint)
    done = train(MLP([16, 8, 10]), X, y, epochs=4, resume=flushed.checkpoint, subnormals="flush")
    assert records(done)[:2] == records(flushed)
