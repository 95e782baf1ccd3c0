"""Minimal safetensors reader/writer (numpy + struct): an 8-byte little-endian header length, a JSON
header {name: {dtype, shape, data_offsets}} with an optional "__metadata__" string map, then the raw
little-endian tensor bytes."""
import json
import struct

import numpy as np

_DTYPES = {
    'F64': np.float64, 'F32': np.float32, 'F16': np.float16, 'I64': np.int64, 'I32': np.int32,
    'I16': np.int16, 'I8': np.int8, 'U8': np.uint8, 'BOOL': np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def read_safetensors(path):
    """Returns ({name: numpy array}, metadata dict)."""
    with open(path, 'rb') as fh:
        raw = fh.read()
    if len(raw) < 8:
        raise ValueError(f'{path}: too short to be a safetensors file')
    (n,) = struct.unpack('<Q', raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f'{path}: header length {n} runs past the end of the file')
    header = json.loads(raw[8:8 + n].decode('utf-8'))
    meta = header.pop('__metadata__', {}) or {}
    body = memoryview(raw)[8 + n:]
    out = {}
    for name, info in header.items():
        dt = info['dtype']
        if dt == 'BF16':
            a, b = info['data_offsets']
            u16 = np.frombuffer(body[a:b], dtype='<u2').astype(np.uint32) << 16
            out[name] = u16.view(np.float32).reshape(info['shape'])
            continue
        if dt not in _DTYPES:
            raise ValueError(f'{path}: tensor {name} has unsupported dtype {dt}')
        a, b = info['data_offsets']
        arr = np.frombuffer(body[a:b], dtype=np.dtype(_DTYPES[dt]).newbyteorder('<'))
        out[name] = arr.reshape(info['shape']).copy()
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: numpy array}; written in insertion order, 8-byte aligned header."""
    header = {}
    chunks = []
    off = 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        if arr.dtype not in _NAMES:
            raise ValueError(f'tensor {name}: unsupported dtype {arr.dtype}')
        data = arr.astype(arr.dtype.newbyteorder('<'), copy=False).tobytes()
        header[name] = {'dtype': _NAMES[arr.dtype], 'shape': list(arr.shape), 'data_offsets': [off, off + len(data)]}
        chunks.append(data)
        off += len(data)
    if metadata:
        header['__metadata__'] = {str(k): str(v) for k, v in metadata.items()}
    hj = json.dumps(header, separators=(',', ':')).encode('utf-8')
    hj += b' ' * ((8 - len(hj) % 8) % 8)
    with open(path, 'wb') as fh:
        fh.write(struct.pack('<Q', len(hj)))
        fh.write(hj)
        for c in chunks:
            fh.write(c)
