"""A paused training run: everything the rest of the run depends on, and its bytes.

``train(..., until_epoch=k)`` returns a ``TrainResult`` with status ``paused`` and a
``Checkpoint``; ``train(..., resume=checkpoint)`` continues at epoch k + 1, and the epochs it trains
are those the run would have had unpaused, bit for bit. A checkpoint holds:

- ``settings``: the run's validated settings, the network's shape and a CRC-32 of the training and
  validation data, compared with the resuming call's (a difference is an ``InputError``);
- ``epoch`` (the last one trained), ``updates``, ``initial_loss`` and the ``history`` so far;
- ``params``: the network's flat parameter vector θ, in the network's dtype;
- ``optimizer``: the rule's state (momentum's velocity; Adam's moments and step count t);
- ``shuffle_state`` and ``order``: the shuffling generator's ``bit_generator.state`` and the sample
  order it permutes in place each epoch;
- ``stopping``: early stopping's best validation loss and stale count, the training-loss rule's best
  loss and stale count and, under the adaptive schedule, the η it has reached (the other schedules
  are functions of the epoch); ``best_params``, the best epoch's θ when ``restore_best``.

``to_bytes`` writes an uncompressed zip (an ``.npz`` that ``numpy.load`` reads): a JSON header
``checkpoint.json`` with the scalars and the history, and one ``.npy`` member per array, in their
own dtypes (a float32 network's arrays stay float32). No pickle, and the same checkpoint always
gives the same bytes: members are written in a fixed order with a fixed timestamp.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field

import numpy as np

from nnlab.checks import InputError

FORMAT = "nnlab-checkpoint"
VERSION = 1
_HEADER = "checkpoint.json"
_EPOCH_ZERO = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp, so the bytes never vary


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A training run paused after ``epoch``; see the module docstring for each field.

    ``history`` holds each epoch's ``EpochRecord`` as a tuple of its fields, in order.
    """

    settings: dict
    epoch: int
    updates: int
    initial_loss: float
    params: np.ndarray
    optimizer: dict[str, np.ndarray]
    shuffle_state: dict
    order: np.ndarray
    stopping: dict
    best_params: np.ndarray | None = None
    history: tuple[tuple, ...] = field(default_factory=tuple)

    def __repr__(self) -> str:
        return (
            f"Checkpoint(epoch={self.epoch} of {self.settings['epochs']}, "
            f"optimizer={self.settings['optimizer']!r}, params={self.params.size} "
            f"{self.params.dtype.name})"
        )

    def to_bytes(self) -> bytes:
        """The checkpoint as an uncompressed ``.npz``; ``Checkpoint.from_bytes`` reads it back."""
        header = {
            "format": FORMAT,
            "version": VERSION,
            "settings": self.settings,
            "epoch": self.epoch,
            "updates": self.updates,
            "initial_loss": self.initial_loss,
            "shuffle_state": self.shuffle_state,
            "stopping": self.stopping,
            "history": [list(row) for row in self.history],
        }
        arrays = {"params": self.params, "order": self.order}
        arrays.update({f"optimizer.{name}": value for name, value in self.optimizer.items()})
        if self.best_params is not None:
            arrays["best_params"] = self.best_params
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            text = json.dumps(header, sort_keys=True, separators=(",", ":"))
            archive.writestr(_member(_HEADER), text.encode())
            for name, value in arrays.items():
                npy = io.BytesIO()
                np.lib.format.write_array(npy, np.asarray(value), allow_pickle=False)
                archive.writestr(_member(f"{name}.npy"), npy.getvalue())
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        """The checkpoint ``to_bytes`` wrote; an ``InputError`` if ``data`` is not one."""
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                header = json.loads(archive.read(_HEADER))
                arrays = {
                    name.removesuffix(".npy"): np.lib.format.read_array(
                        io.BytesIO(archive.read(name)), allow_pickle=False
                    )
                    for name in archive.namelist()
                    if name.endswith(".npy")
                }
        except (zipfile.BadZipFile, KeyError, ValueError) as error:
            raise InputError(f"not an nnlab training checkpoint: {error}") from None
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise InputError(
                f"not an nnlab training checkpoint of version {VERSION}: format "
                f"{header.get('format')!r}, version {header.get('version')!r}"
            )
        optimizer = {
            name.removeprefix("optimizer."): value
            for name, value in arrays.items()
            if name.startswith("optimizer.")
        }
        return cls(
            settings=header["settings"],
            epoch=header["epoch"],
            updates=header["updates"],
            initial_loss=header["initial_loss"],
            params=arrays["params"],
            optimizer=optimizer,
            shuffle_state=header["shuffle_state"],
            order=arrays["order"],
            stopping=header["stopping"],
            best_params=arrays.get("best_params"),
            history=tuple(tuple(row) for row in header["history"]),
        )


def _member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH_ZERO)
    info.external_attr = 0o644 << 16
    return info


# settings left out of a checkpoint at their default (as checkpoints from before them have none)
LEFT_OUT = {"subnormals": "keep"}


def settings_difference(saved: dict, current: dict) -> list[str]:
    """``name=value`` pairs for each setting that differs, the checkpoint's value first."""
    names = sorted(saved.keys() | current.keys())
    return [
        f"{name}={_setting(saved, name)!r} in the checkpoint, {_setting(current, name)!r} here"
        for name in names
        if _setting(saved, name) != _setting(current, name)
    ]


def _setting(settings: dict, name: str):
    return settings.get(name, LEFT_OUT.get(name))
