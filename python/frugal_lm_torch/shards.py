"""Token shards: a flat stream of token ids with a small header (the format is documented in
README.md, "Training with PyTorch"). Little-endian throughout:

    bytes 0..7    magic b'FRUGTOK1'
    u32           vocab size of the tokenizer that wrote the ids
    u32           length n of the tokenizer id string
    u64           number of tokens T
    n bytes       tokenizer id (UTF-8), then zero padding to a multiple of 4 bytes
    T x i32       token ids
"""
import struct

import numpy as np

MAGIC = b'FRUGTOK1'


class ShardError(ValueError):
    pass


def read_shard(path):
    """Returns (tokens int32 array, vocab_size, tokenizer_id)."""
    with open(path, 'rb') as fh:
        raw = fh.read()
    if len(raw) < 24 or raw[:8] != MAGIC:
        raise ShardError(f'{path}: not a frugal token shard (bad magic)')
    vocab, n, count = struct.unpack('<IIQ', raw[8:24])
    start = 24 + n + ((4 - n % 4) % 4)
    if start + 4 * count != len(raw):
        raise ShardError(f'{path}: header says {count} tokens but the file holds {(len(raw) - start) // 4}')
    tok_id = raw[24:24 + n].decode('utf-8')
    tokens = np.frombuffer(raw, dtype='<i4', count=count, offset=start).astype(np.int32)
    if count and (tokens.min() < 0 or tokens.max() >= vocab):
        raise ShardError(f'{path}: token ids outside [0, {vocab})')
    return tokens, vocab, tok_id


def write_shard(path, tokens, vocab, tok_id=''):
    b = tok_id.encode('utf-8')
    with open(path, 'wb') as fh:
        fh.write(MAGIC + struct.pack('<IIQ', vocab, len(b), len(tokens)) + b + b'\0' * ((4 - len(b) % 4) % 4))
        fh.write(np.asarray(tokens, dtype='<i4').tobytes())
