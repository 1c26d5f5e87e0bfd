"""nnlab.stops: the stop signals, taken outside imports, and left ignored where ignored."""

from __future__ import annotations

import signal
import sys
import time

import pytest

from nnlab import stops

# A module whose import takes a Ctrl-C inside a bare ``except``, as Cython's memoryview set-up
# does while NumPy's random module loads (numpy/random/_generator: ``try: ...register(...)
# except: pass``).
SWALLOWING = """\
import signal

try:
    signal.raise_signal(signal.SIGINT)  # its handler runs before this call returns
except:  # noqa: E722
    pass
LOADED = True
"""


def _import_fresh(tmp_path, monkeypatch, name: str):
    (tmp_path / f"{name}.py").write_text(SWALLOWING)
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delitem(sys.modules, name, raising=False)
    return __import__(name)


@pytest.mark.parametrize("handler", [stops.interrupt, stops.interrupt_once])
def test_a_ctrl_c_during_an_import_is_taken_once_it_is_done(tmp_path, monkeypatch, handler):
    with stops.handled(handler):
        with pytest.raises(KeyboardInterrupt):
            module = _import_fresh(tmp_path, monkeypatch, f"swallowing_{handler.__name__}")
            assert module.LOADED  # whole, not half-imported
            time.sleep(5)  # the Ctrl-C is taken here, a moment after the import
        assert sys.modules[module.__name__].LOADED


def test_without_that_the_import_loses_the_ctrl_c(tmp_path, monkeypatch):
    """What the test above guards against: Python's own handler raises inside the import,
    and the bare ``except`` swallows it."""
    with stops.handled(signal.default_int_handler, (signal.SIGINT,)):
        module = _import_fresh(tmp_path, monkeypatch, "swallowing_default")
        time.sleep(0.2)
    assert module.LOADED


def test_after_the_first_stop_the_others_are_ignored_until_the_block_ends():
    with stops.handled(stops.interrupt_once):
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
        assert stops.ignored() == set(stops.STOP_SIGNALS)
        signal.raise_signal(signal.SIGINT)  # ignored: nothing raised
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_signal_ignored_when_the_block_starts_stays_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts a command
    try:
        with stops.handled(stops.interrupt):
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is stops.interrupt
            signal.raise_signal(signal.SIGHUP)  # nothing raised
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
