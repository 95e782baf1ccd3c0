"""Writes GGUFs of a frugal-lm LLaMA checkpoint with llama.cpp's gguf-py, for cross-checks against the peer.
Usage: PYTHONPATH=<llama.cpp>/gguf-py python3 bench/probes/gguf_peer_write.py CHECKPOINT_DIR OUT_DIR
Writes OUT_DIR/model-{F32,F16,Q8_0,Q4_0}.gguf (tokenizer: byte-level BPE over the 256 bytes, no merges,
no BOS: frugal's byte tokenizer on text without bytes 0-2) and, for the quantized ones, OUT_DIR/deq-{Q8_0,Q4_0}/: a
checkpoint folder holding the weights as gguf-py dequantizes them (HF layout), to compare logits."""
import json, os, shutil, struct, sys
import numpy as np
import gguf
from gguf.quants import dequantize, quantize

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
cfg = json.load(open(os.path.join(src, 'config.json')))


def read_safetensors(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    head = json.loads(b[8:8 + n])
    t = {}
    for k, v in head.items():
        if k == '__metadata__':
            continue
        assert v['dtype'] == 'F32', (k, v['dtype'])
        s, e = v['data_offsets']
        t[k] = np.frombuffer(b[8 + n + s:8 + n + e], np.float32).reshape(v['shape']).copy()
    return t


def write_safetensors(path, tensors):
    head, off, blobs = {}, 0, []
    for k, a in tensors.items():
        a = np.ascontiguousarray(a, np.float32)
        head[k] = {'dtype': 'F32', 'shape': list(a.shape), 'data_offsets': [off, off + a.nbytes]}
        off += a.nbytes
        blobs.append(a.tobytes())
    h = json.dumps(head).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


W = read_safetensors(os.path.join(src, 'model.safetensors'))
d, nh, nkv = cfg['hidden_size'], cfg['num_attention_heads'], cfg['num_key_value_heads']
hd = d // nh


def permute(w, heads):
    # HF half-split rows -> llama.cpp's interleaved RoPE order (as convert_hf_to_gguf does for LLaMA).
    return w.reshape(heads, 2, hd // 2, w.shape[1]).swapaxes(1, 2).reshape(w.shape)


NAMES = {'self_attn.q_proj': 'attn_q', 'self_attn.k_proj': 'attn_k', 'self_attn.v_proj': 'attn_v', 'self_attn.o_proj': 'attn_output',
         'mlp.gate_proj': 'ffn_gate', 'mlp.up_proj': 'ffn_up', 'mlp.down_proj': 'ffn_down',
         'input_layernorm': 'attn_norm', 'post_attention_layernorm': 'ffn_norm'}


def gguf_name(k):
    if k == 'model.embed_tokens.weight': return 'token_embd.weight'
    if k == 'model.norm.weight': return 'output_norm.weight'
    if k == 'lm_head.weight': return 'output.weight'
    p = k.split('.')
    return f'blk.{p[2]}.{NAMES[".".join(p[3:-1])]}.weight'


# GPT-2 byte -> character map, so token i is byte i.
keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
chars, n = {}, 0
for b in range(256):
    if b in keep: chars[b] = chr(b)
    else: chars[b] = chr(256 + n); n += 1
tokens = [chars[b] for b in range(256)]
# llama.cpp needs at least one merge: token 0 (byte 0, absent from text) becomes bytes 1 + 2, which never
# meet in printable text, so every text still encodes one token per byte.
tokens[0] = chars[1] + chars[2]
merges = [chars[1] + ' ' + chars[2]]

for qname in ['F32', 'F16', 'Q8_0', 'Q4_0']:
    path = os.path.join(out, f'model-{qname}.gguf')
    w = gguf.GGUFWriter(path, 'llama')
    w.add_name('frugal-lm peer check'); w.add_context_length(cfg['max_position_embeddings']); w.add_embedding_length(d)
    w.add_block_count(cfg['num_hidden_layers']); w.add_feed_forward_length(cfg['intermediate_size'])
    w.add_rope_dimension_count(hd); w.add_head_count(nh); w.add_head_count_kv(nkv)
    w.add_layer_norm_rms_eps(cfg['rms_norm_eps']); w.add_rope_freq_base(cfg['rope_theta'])
    w.add_file_type({'F32': 0, 'F16': 1, 'Q8_0': 7, 'Q4_0': 2}[qname])
    w.add_tokenizer_model('gpt2'); w.add_tokenizer_pre('default')
    w.add_token_list(tokens); w.add_token_types([1] * 256); w.add_token_merges(merges)
    w.add_add_bos_token(False); w.add_add_eos_token(False)
    deq = {}
    for k, a in W.items():
        if a.ndim == 1:
            w.add_tensor(gguf_name(k), a.astype(np.float32)); deq[k] = a
            continue
        g = permute(a, nh) if k.endswith('q_proj.weight') else permute(a, nkv) if k.endswith('k_proj.weight') else a
        if qname == 'F32':
            w.add_tensor(gguf_name(k), g.astype(np.float32)); deq[k] = a
        elif qname == 'F16':
            w.add_tensor(gguf_name(k), g.astype(np.float16)); deq[k] = a.astype(np.float16).astype(np.float32)
        else:
            qt = getattr(gguf.GGMLQuantizationType, qname)
            q = quantize(g, qt)
            w.add_tensor(gguf_name(k), q, raw_dtype=qt)
            back = dequantize(q, qt).reshape(g.shape)
            # Undo the row permutation: the checkpoint keeps HF order.
            if k.endswith('q_proj.weight') or k.endswith('k_proj.weight'):
                heads = nh if k.endswith('q_proj.weight') else nkv
                back = back.reshape(heads, hd // 2, 2, back.shape[1]).swapaxes(1, 2).reshape(back.shape)
            deq[k] = back
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    folder = os.path.join(out, f'deq-{qname}')
    os.makedirs(folder, exist_ok=True)
    shutil.copy(os.path.join(src, 'config.json'), folder)
    shutil.copy(os.path.join(src, 'tokenizer.json'), folder)
    write_safetensors(os.path.join(folder, 'model.safetensors'), deq)
    print('wrote', path, os.path.getsize(path))
