"""A reader and writer of the safetensors byte format, with numpy and torch only.

The format (https://github.com/huggingface/safetensors) is an 8-byte little-endian header
length ``N``, ``N`` bytes of JSON mapping each tensor name to its ``dtype``, ``shape`` and
``data_offsets`` (``[begin, end)`` in the byte buffer that follows; an optional
``"__metadata__"`` maps strings to strings), then the raw little-endian bytes of the tensors.
Nothing in it is executable, and :func:`loads` checks every declared size against the bytes
actually present before it allocates anything: a file cannot make it take more memory than
about twice its own size.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import torch

# Name in the header -> (torch dtype, bytes per element). The allow-list: no complex, no
# unsigned wider than a byte (torch supports few operations on them), no float8.
_DTYPES: dict[str, tuple[torch.dtype, int]] = {
    "BOOL": (torch.bool, 1),
    "U8": (torch.uint8, 1),
    "I8": (torch.int8, 1),
    "I16": (torch.int16, 2),
    "I32": (torch.int32, 4),
    "I64": (torch.int64, 8),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "F32": (torch.float32, 4),
    "F64": (torch.float64, 8),
}
_NAMES = {dtype: name for name, (dtype, _) in _DTYPES.items()}
# Raw bytes move through signed integers of the element's width: one path for every dtype
# (bf16 has no numpy dtype), and numpy's "<" fixes the byte order on any host.
_INT_OF_SIZE = {1: (torch.uint8, "<u1"), 2: (torch.int16, "<i2"), 4: (torch.int32, "<i4"), 8: (torch.int64, "<i8")}
#: Largest JSON header :func:`loads` parses (the official library's limit too): 100 MB.
MAX_HEADER_BYTES = 100_000_000
# More dimensions than any tensor of this package has; torch itself refuses more than 64.
_MAX_NDIM = 32
_METADATA = "__metadata__"


def _bad(detail: str) -> ValueError:
    return ValueError(f"not a valid safetensors buffer: {detail}")


def dumps(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors bytes of ``tensors`` (written in the order given).

    Parameters
    ----------
    tensors : dict of str to torch.Tensor
        Tensors of the dtypes in the allow-list (bool, uint8, int8/16/32/64, float16,
        bfloat16, float32, float64), on any device; they are copied to the CPU.
    metadata : dict of str to str, optional
        Stored as the header's ``"__metadata__"``.

    Returns
    -------
    bytes

    Raises
    ------
    ValueError
        For a name that is not a string or is ``"__metadata__"``, a value that is not a
        tensor or has a dtype outside the allow-list, or metadata that is not strings.

    Examples
    --------
    >>> import torch
    >>> from sklearn_mtr._safetensors import dumps, loads
    >>> tensors, _ = loads(dumps({"w": torch.ones(2, 3, dtype=torch.bfloat16)}))
    >>> tensors["w"].dtype, tuple(tensors["w"].shape)
    (torch.bfloat16, (2, 3))
    """
    header: dict[str, Any] = {}
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("safetensors metadata maps strings to strings")
        header[_METADATA] = dict(metadata)
    chunks, offset = [], 0
    for name, tensor in tensors.items():
        if not isinstance(name, str) or name == _METADATA:
            raise ValueError(f"a safetensors tensor name must be a string other than {_METADATA!r}; got {name!r}")
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{name!r} is a {type(tensor).__name__}, not a torch.Tensor")
        if tensor.dtype not in _NAMES:
            raise ValueError(f"{name!r} has the dtype {tensor.dtype}, which safetensors files here do not hold")
        data = _tensor_bytes(tensor)
        header[name] = {
            "dtype": _NAMES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the official writer does
    return b"".join([struct.pack("<Q", len(text)), text, *chunks])


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    tensor = tensor.detach().to("cpu").contiguous()
    int_dtype, numpy_dtype = _INT_OF_SIZE[tensor.element_size()]
    return tensor.view(int_dtype).numpy().astype(numpy_dtype, copy=False).tobytes()


def loads(data: bytes | bytearray | memoryview) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a safetensors buffer, every declared size checked first.

    Parameters
    ----------
    data : bytes-like
        The whole buffer.

    Returns
    -------
    tensors : dict of str to torch.Tensor
        CPU tensors, in the order of the header; each owns its memory.
    metadata : dict of str to str
        The header's ``"__metadata__"`` (empty when absent).

    Raises
    ------
    ValueError
        When the header length exceeds the buffer or :data:`MAX_HEADER_BYTES`, the header is
        not a JSON object of the expected fields (a repeated name included), a dtype is outside
        the allow-list, a shape's element count times the element size differs from its byte
        range, or the byte ranges are out of bounds, overlap, leave gaps or do not end where
        the buffer ends; when a boolean tensor holds bytes other than 0 and 1.

    Examples
    --------
    See :func:`dumps`.
    """
    view = memoryview(data).cast("B")
    if len(view) < 8:
        raise _bad(f"{len(view)} bytes, fewer than the 8 of the header length")
    (size,) = struct.unpack("<Q", view[:8])
    if size > min(len(view) - 8, MAX_HEADER_BYTES):
        raise _bad(f"the header declares {size} bytes, more than the {len(view) - 8} that follow (or the 100 MB cap)")
    try:
        header = json.loads(bytes(view[8 : 8 + size]).decode("utf-8"), object_pairs_hook=_unique_keys)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _bad(f"the header is not JSON ({str(exc)[:120]})") from None
    if not isinstance(header, dict):
        raise _bad("the header is not a JSON object")
    metadata = header.pop(_METADATA, {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _bad("__metadata__ is not a table of strings")
    buffer = view[8 + size :]
    entries = [_entry(name, spec, len(buffer)) for name, spec in header.items()]
    end = 0
    for name, _, _, begin, stop in sorted(entries, key=lambda e: (e[3], e[4])):
        if begin != end:
            raise _bad(f"the byte range of {name!r} starts at {begin}, where the previous one ends at {end}")
        end = stop
    if end != len(buffer):
        raise _bad(f"the tensors end at byte {end} of a data buffer of {len(buffer)} bytes")
    return {
        name: _tensor(name, buffer, dtype, shape, begin, stop) for name, dtype, shape, begin, stop in entries
    }, metadata


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    table = dict(pairs)
    if len(table) != len(pairs):
        raise ValueError("a name appears twice")
    return table


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _entry(name: str, spec: Any, n_bytes: int) -> tuple[str, str, list[int], int, int]:
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
        raise _bad(f"{name[:80]!r} is not an object of dtype, shape and data_offsets")
    dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise _bad(f"{name[:80]!r} has the dtype {str(dtype)[:20]!r}, not one of {sorted(_DTYPES)}")
    if not isinstance(shape, list) or len(shape) > _MAX_NDIM or not all(map(_is_count, shape)):
        raise _bad(f"{name[:80]!r} has the shape {str(shape)[:80]}, not a list of at most {_MAX_NDIM} sizes")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_count, offsets)):
        raise _bad(f"{name[:80]!r} has data_offsets {str(offsets)[:80]}, not [begin, end]")
    begin, stop = offsets
    if not begin <= stop <= n_bytes:
        raise _bad(f"{name[:80]!r} has the byte range [{begin}, {stop}) outside the {n_bytes} data bytes")
    count = 1
    for n in shape:
        count *= n
    if count * _DTYPES[dtype][1] != stop - begin:
        raise _bad(f"{name[:80]!r} has {stop - begin} bytes for a {dtype} tensor of shape {shape}")
    return name, dtype, shape, begin, stop


def _tensor(name: str, buffer: memoryview, dtype: str, shape: list[int], begin: int, stop: int) -> torch.Tensor:
    torch_dtype, itemsize = _DTYPES[dtype]
    if begin == stop:  # no bytes to view; a size-0 dimension may be large, but allocates nothing
        return torch.empty(shape, dtype=torch_dtype)
    int_dtype, numpy_dtype = _INT_OF_SIZE[itemsize]
    raw = np.frombuffer(buffer[begin:stop], dtype=numpy_dtype).astype(numpy_dtype[1:], copy=True)
    if torch_dtype is torch.bool and raw.max() > 1:
        raise _bad(f"the boolean tensor {name[:80]!r} holds bytes other than 0 and 1")
    return torch.from_numpy(raw).view(int_dtype).view(torch_dtype).reshape(shape)


__all__ = ["MAX_HEADER_BYTES", "dumps", "loads"]
