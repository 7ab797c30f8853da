"""Lightning checkpoints as safetensors files: no pickle, so loading a checkpoint can never run code.

A Lightning checkpoint is a nested structure of dicts, lists and tuples whose leaves are tensors and
plain values. :class:`SafetensorsCheckpointIO` stores every tensor as a safetensors tensor (keys ``t0``,
``t1``, ...) and the rest of the structure as JSON in the file's header metadata, with markers for what
JSON cannot say directly:

- ``{"__tensor__": "t3"}``: a tensor (the same tensor view appearing twice is stored once and comes back
  as one object, as ``torch.save`` would give);
- ``{"__tuple__": [...]}``: a tuple;
- ``{"__dict__": [[key, value], ...]}``: a dict whose keys are not all ``str`` (optimizer states use int
  keys), or whose single key would read as a marker;
- ``{"__odict__": [[[key, value], ...], metadata]}``: an :class:`~collections.OrderedDict` such as
  ``module.state_dict()``, with its ``_metadata`` attribute (module versions) when it has one;
- ``{"__float__": "nan" | "inf" | "-inf"}``: a non-finite float;
- ``{"__path__": "..."}``: a :class:`pathlib.Path`.

Leaves may be ``None``, ``bool``, ``int``, ``float``, ``str``, ``Path`` or a dense tensor; subclasses of the
builtin types are stored as the builtin type (a namedtuple comes back as a tuple). Anything else raises a
:class:`TypeError` naming its key path. Files are written to a temporary file next to the target and then
renamed onto it, so a killed process never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import safetensors
import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import CheckpointIO
from safetensors.torch import save_file

from delia.infra.errors import DeliaError, first_line
from delia.infra.files import atomic_path

FORMAT = "delia-ckpt-v1"
FORMAT_KEY = "format"
STRUCTURE_KEY = "delia_checkpoint"

TENSOR = "__tensor__"
TUPLE = "__tuple__"
DICT = "__dict__"
ODICT = "__odict__"
FLOAT = "__float__"
PATH = "__path__"
MARKERS = frozenset({TENSOR, TUPLE, DICT, ODICT, FLOAT, PATH})
NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

# safetensors refuses headers over 100 MB; a plausible header length tells a truncated file from a pickle.
MAX_HEADER_BYTES = 100 * 1024 * 1024


# ---------------------------------------------------------------------------------------------------- encode


@dataclass
class _Encoder:
    """Turns a checkpoint into JSON-ready data plus a flat dict of contiguous CPU tensors."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    views: dict[tuple, str] = field(default_factory=dict)  # identical tensor view -> its key
    storages: set[int] = field(default_factory=set)  # storage addresses of the tensors in ``tensors``
    stack: set[int] = field(default_factory=set)  # ids of the containers being encoded (cycle check)

    def encode(self, obj: Any, where: str) -> Any:
        if obj is None or isinstance(obj, bool):
            return obj
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return _encode_float(float(obj))
        if isinstance(obj, str):
            return str.__str__(obj)
        if isinstance(obj, PurePath):
            return {PATH: str(obj)}
        if isinstance(obj, torch.Tensor):
            return {TENSOR: self.tensor_key(obj, where)}
        if isinstance(obj, (dict, list, tuple)):
            return self.encode_container(obj, where)
        raise TypeError(f"{where}: cannot store a {type(obj)} without pickle")

    def encode_container(self, obj: dict | list | tuple, where: str) -> Any:
        if id(obj) in self.stack:
            raise TypeError(f"{where}: cannot store a {type(obj)} that contains itself")
        self.stack.add(id(obj))
        try:
            if isinstance(obj, dict):
                return self.encode_dict(obj, where)
            items = [self.encode(value, f"{where}[{i}]") for i, value in enumerate(obj)]
            return {TUPLE: items} if isinstance(obj, tuple) else items
        finally:
            self.stack.discard(id(obj))

    def encode_dict(self, obj: dict, where: str) -> Any:
        if isinstance(obj, OrderedDict):
            metadata = getattr(obj, "_metadata", None)
            meta = None if metadata is None else self.encode(metadata, f"{where}._metadata")
            return {ODICT: [self.encode_items(obj, where), meta]}
        if all(isinstance(key, str) for key in obj) and not (len(obj) == 1 and next(iter(obj)) in MARKERS):
            return {str.__str__(key): self.encode(value, f"{where}[{key!r}]") for key, value in obj.items()}
        return {DICT: self.encode_items(obj, where)}

    def encode_items(self, obj: dict, where: str) -> list[list[Any]]:
        items = []
        for key, value in obj.items():
            if isinstance(key, torch.Tensor):
                raise TypeError(f"{where}: cannot store a dict keyed by tensors")
            items.append([self.encode(key, f"{where} key {key!r}"), self.encode(value, f"{where}[{key!r}]")])
        return items

    def tensor_key(self, tensor: torch.Tensor, where: str) -> str:
        """Store ``tensor`` (once per identical view) and return its key; copy it if it shares storage."""
        if tensor.layout != torch.strided or tensor.device.type == "meta" or tensor.is_quantized:
            raise TypeError(
                f"{where}: cannot store a {tensor.layout} {tensor.device.type} tensor without pickle"
            )
        tensor = tensor.detach()
        view = (
            tensor.device,
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tensor.stride(),
            tensor.dtype,
        )
        if tensor.numel() and view in self.views:
            return self.views[view]
        if tensor.numel():
            stored = tensor.to("cpu").contiguous()
        else:
            stored = torch.empty(tensor.shape, dtype=tensor.dtype)
        if stored.untyped_storage().data_ptr() in self.storages:  # safetensors refuses shared storage
            stored = stored.clone()
        key = f"t{len(self.tensors)}"
        self.tensors[key] = stored
        self.storages.add(stored.untyped_storage().data_ptr())
        if tensor.numel():
            self.views[view] = key
        return key


def _encode_float(value: float) -> Any:
    if math.isnan(value):
        return {FLOAT: "nan"}
    if math.isinf(value):
        return {FLOAT: "inf" if value > 0 else "-inf"}
    return value


# ---------------------------------------------------------------------------------------------------- decode


class _CorruptError(ValueError):
    """The JSON structure in a checkpoint does not decode (a damaged or foreign file)."""


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(value, tensors) for value in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1 and next(iter(obj)) in MARKERS:
        ((marker, payload),) = obj.items()
        return _decode_marker(marker, payload, tensors)
    return {key: _decode(value, tensors) for key, value in obj.items()}


def _decode_marker(marker: str, payload: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if marker == TENSOR:
        if payload not in tensors:
            raise _CorruptError(f"missing tensor {payload!r}")
        return tensors[payload]
    if marker == TUPLE:
        return tuple(_decode(value, tensors) for value in payload)
    if marker == DICT:
        return dict(_decode_items(payload, tensors))
    if marker == ODICT:
        items, meta = payload
        result = OrderedDict(_decode_items(items, tensors))
        if meta is not None:
            result._metadata = _decode(meta, tensors)  # type: ignore[attr-defined]
        return result
    if marker == FLOAT:
        if payload not in NON_FINITE:
            raise _CorruptError(f"bad float {payload!r}")
        return NON_FINITE[payload]
    return Path(payload)  # PATH


def _decode_items(items: list, tensors: dict[str, torch.Tensor]) -> list[tuple[Any, Any]]:
    return [(_decode(key, tensors), _decode(value, tensors)) for key, value in items]


# ---------------------------------------------------------------------------------------------------- files


def _looks_like_safetensors(path: Path) -> bool:
    """Whether the file starts like a safetensors file (a plausible header length, then a JSON object).

    True for a truncated safetensors file too, so that it is reported as damaged, not as a pickle.
    """
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 2 <= header_len <= MAX_HEADER_BYTES and head[8:9] == b"{"


def _read_safetensors(path: Path, device: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    with safetensors.safe_open(str(path), framework="pt", device=device) as f:
        metadata = f.metadata() or {}
        if metadata.get(FORMAT_KEY) != FORMAT or STRUCTURE_KEY not in metadata:
            return metadata, {}
        return metadata, {key: f.get_tensor(key) for key in f.keys()}


def _device_name(map_location: Any) -> str:
    """The device to load tensors onto: ``map_location`` if it names one, else the CPU."""
    if isinstance(map_location, (str, torch.device)):
        return str(torch.device(map_location))
    return "cpu"


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    """Write a safetensors file next to ``path``, flush it to disk, then rename it onto ``path``."""
    with atomic_path(path, durable=True) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    _fsync_dir(path.parent)


# ---------------------------------------------------------------------------------------------------- plugin


class SafetensorsCheckpointIO(CheckpointIO):
    """Save and load Lightning checkpoints as safetensors files, never through pickle.

    Pass it to the trainer: ``Trainer(plugins=[SafetensorsCheckpointIO()])``. Checkpoints keep their usual
    names (``last.ckpt``); only the bytes differ. Local filesystem paths only.

    Args:
        allow_pickle: load a checkpoint that is not one of ours (a classic ``torch.save`` pickle) with
            ``torch.load``. Only for files you trust: unpickling can run arbitrary code.
    """

    def __init__(self, allow_pickle: bool = False) -> None:
        self.allow_pickle = allow_pickle

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` atomically (creating the directory).

        Raises:
            TypeError: for a value that cannot be stored without pickle, naming its key path, or for
                ``storage_options`` (not supported, as with Lightning's own ``TorchCheckpointIO``).
        """
        if storage_options is not None:
            raise TypeError(
                f"{type(self).__name__}.save_checkpoint does not support storage_options, got {storage_options!r}"
            )
        tensors, structure = encode_checkpoint(checkpoint)
        _write_atomic(tensors, {STRUCTURE_KEY: structure, FORMAT_KEY: FORMAT}, Path(path))

    def load_checkpoint(
        self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Read a checkpoint written by :meth:`save_checkpoint`, with its exact structure and types.

        Tensors load on the CPU, or on ``map_location`` when it is a ``str`` or :class:`torch.device`.
        ``weights_only`` does not apply to safetensors files (they never hold code); it is passed on to
        ``torch.load`` for a pickle file read with ``allow_pickle`` (``None`` meaning ``False``).

        Raises:
            DeliaError: the file is missing, damaged, or not one of ours (and ``allow_pickle`` is off).
        """
        file = Path(path)
        if not file.exists():
            raise DeliaError(f"{path}: checkpoint not found")
        if file.is_dir():
            raise DeliaError(f"{path}: a directory, not a checkpoint file")
        if file.stat().st_size < 9:
            raise DeliaError(f"{path}: unreadable checkpoint (only {file.stat().st_size} bytes)")
        if not _looks_like_safetensors(file):
            return self._load_pickle(file, map_location, weights_only)
        try:
            metadata, tensors = _read_safetensors(file, _device_name(map_location))
            if metadata.get(FORMAT_KEY) != FORMAT or STRUCTURE_KEY not in metadata:
                found = metadata.get(FORMAT_KEY, "no format")
                raise DeliaError(
                    f"{path}: a safetensors file but not a delia checkpoint ({found}, expected {FORMAT})"
                )
            return _decode(json.loads(metadata[STRUCTURE_KEY]), tensors)
        except DeliaError:
            raise
        except Exception as e:  # safetensors' errors, bad JSON, a damaged structure
            raise DeliaError(f"{path}: unreadable checkpoint ({first_line(e)})") from e

    def _load_pickle(self, file: Path, map_location: Any, weights_only: bool | None) -> dict[str, Any]:
        if not self.allow_pickle:
            raise DeliaError(
                f"{file}: not a safetensors checkpoint (a pickle file can run code when loaded); "
                "pass allow_pickle=true if you trust it"
            )
        try:
            return torch.load(file, map_location=map_location, weights_only=bool(weights_only))
        except Exception as e:
            raise DeliaError(f"{file}: unreadable checkpoint ({first_line(e)})") from e

    def remove_checkpoint(self, path: _PATH) -> None:
        """Delete the checkpoint at ``path`` if there is one (a directory is removed with its contents)."""
        file = Path(path)
        if file.is_dir() and not file.is_symlink():
            shutil.rmtree(file)
        else:
            file.unlink(missing_ok=True)


def encode_checkpoint(checkpoint: dict[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """Split ``checkpoint`` into its tensors and the JSON text of everything else.

    Raises:
        TypeError: for a value that cannot be stored without pickle, naming its key path.
    """
    encoder = _Encoder()
    structure = encoder.encode(checkpoint, "checkpoint")
    return encoder.tensors, json.dumps(structure, allow_nan=False, separators=(",", ":"))


def load_checkpoint_file(path: _PATH, *, allow_pickle: bool = False) -> dict[str, Any]:
    """Load a checkpoint file with a default :class:`SafetensorsCheckpointIO` (tensors on the CPU)."""
    return SafetensorsCheckpointIO(allow_pickle=allow_pickle).load_checkpoint(path)
