"""nnlab.stops: stop signals taken outside imports, and left ignored where they were ignored.
Real signals, sent to this process's main thread."""

from __future__ import annotations

import signal
import sys
import threading
import time

import pytest

from nnlab import stops

# A module whose import takes a Ctrl-C inside a bare ``except``, as Cython's memoryview set-up
# does while NumPy's random module loads; Python's own handler loses it there.
SWALLOWING = """\
import signal

try:
    signal.raise_signal(signal.SIGINT)  # its handler runs before this call returns
except:  # noqa: E722
    pass
LOADED = True
"""
# A module whose import lasts (a slow import, or one waiting for another thread's).
SLOW = "import time\ntime.sleep({seconds})\nLOADED = True\n"


def _module(tmp_path, monkeypatch, name: str, text: str) -> str:
    (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def _signal_in(seconds: float, signum: int = signal.SIGINT) -> threading.Timer:
    timer = threading.Timer(seconds, signal.pthread_kill, (threading.main_thread().ident, signum))
    timer.start()
    return timer


@pytest.mark.parametrize("once", [False, True])
def test_a_ctrl_c_during_an_import_is_taken_once_it_is_done(tmp_path, monkeypatch, once):
    name = _module(tmp_path, monkeypatch, f"swallowing_{once}", SWALLOWING)
    imported = False
    with pytest.raises(KeyboardInterrupt), stops.taken(once=once):
        __import__(name)
        imported = True
        time.sleep(5)  # the Ctrl-C is taken here, a moment after the import
    assert imported and sys.modules[name].LOADED  # whole, not half-imported


def _ctrl_c_while_importing(name: str) -> float:
    """Seconds from the start of importing ``name``, with a Ctrl-C 0.1 s in, to the
    KeyboardInterrupt (taken in the import, or in a sleep right after it)."""
    started = time.monotonic()
    timer = _signal_in(0.1)
    try:
        with pytest.raises(KeyboardInterrupt), stops.taken():
            __import__(name)
            time.sleep(5)
    finally:
        timer.cancel()
    return time.monotonic() - started


def test_a_ctrl_c_during_a_slow_import_waits_for_it(tmp_path, monkeypatch):
    name = _module(tmp_path, monkeypatch, "slow_import", SLOW.format(seconds=0.5))
    assert 0.5 <= _ctrl_c_while_importing(name) < 2
    assert sys.modules[name].LOADED


def test_an_import_that_hangs_is_interrupted_after_all(tmp_path, monkeypatch):
    name = _module(tmp_path, monkeypatch, "hanging_import", SLOW.format(seconds=60))
    waited = _ctrl_c_while_importing(name)
    assert stops.MAX_DEFER_SECONDS <= waited < stops.MAX_DEFER_SECONDS + 2
    assert name not in sys.modules


def test_a_block_inside_an_import_is_not_deferred(tmp_path, monkeypatch):
    """A script imported by another (``python -c "import experiment"``) that stops on Ctrl-C:
    the import around the whole block does not count."""
    text = (
        "import time\nfrom nnlab import stops\nfrom test_stops import _signal_in\n"
        "STARTED = time.monotonic()\n"
        "try:\n"
        "    with stops.taken():\n"
        "        _signal_in(0.1)\n"
        "        time.sleep(5)\n"
        "except KeyboardInterrupt:\n"
        "    WAITED = time.monotonic() - STARTED\n"
    )
    name = _module(tmp_path, monkeypatch, "experiment", text)
    assert __import__(name).WAITED < 1


def test_a_signal_deferred_when_the_block_ends_is_raised_as_it_ends(tmp_path, monkeypatch):
    """The import ends, and the block with it, before the signal is sent again: it is not
    lost, nor left to land in whatever runs next."""
    name = _module(tmp_path, monkeypatch, "ends_the_block", SLOW.format(seconds=0.3))
    timer = _signal_in(0.1, signal.SIGTERM)
    try:
        with pytest.raises(KeyboardInterrupt), stops.taken():
            __import__(name)  # the block ends within microseconds of the import
    finally:
        timer.cancel()
    time.sleep(3 * stops.RETRY_SECONDS)  # nothing more arrives: SIGTERM's default would kill
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_after_the_first_stop_the_others_are_ignored_until_the_block_ends():
    with stops.taken(once=True):
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
        assert stops.ignored() == set(stops.STOP_SIGNALS)
        signal.raise_signal(signal.SIGINT)  # ignored: nothing raised
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_signal_ignored_when_the_block_starts_stays_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts a command
    try:
        with stops.taken():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            signal.raise_signal(signal.SIGHUP)  # nothing raised
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_held_ignores_the_stop_signals_for_its_block():
    with stops.held():
        signal.raise_signal(signal.SIGINT)  # nothing raised
        signal.raise_signal(signal.SIGTERM)  # nor killed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_another_thread_changes_nothing():
    found = []

    def block():
        with stops.taken(), stops.held():
            found.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=block)
    thread.start()
    thread.join()
    assert found == [signal.default_int_handler]


def test_a_stop_taken_by_a_nested_once_block_is_the_outer_ones_too():
    """``nnlab sweep`` on the command line: the sweep's block inside the command's. After the
    sweep took a Ctrl-C, a second one while the command prints its message is ignored (one
    line, one status)."""
    with stops.taken(once=True):
        with pytest.raises(KeyboardInterrupt), stops.taken(once=True):
            signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)  # ignored: nothing raised
        assert stops.ignored() == set(stops.STOP_SIGNALS)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_signal_deferred_by_the_outer_block_is_taken_once_by_the_inner(tmp_path, monkeypatch):
    name = _module(tmp_path, monkeypatch, "before_the_sweep", SLOW.format(seconds=0.2))
    timer = _signal_in(0.05)
    raised = 0
    try:
        with stops.taken(once=True):  # the command's
            try:
                __import__(name)  # the Ctrl-C lands here, and is sent again...
                with stops.taken(once=True):  # ... to the sweep's block, which takes it
                    time.sleep(5)
            except KeyboardInterrupt:
                raised += 1
    except KeyboardInterrupt:  # the outer block must not raise it a second time
        raised += 10
    finally:
        timer.cancel()
    assert raised == 1
