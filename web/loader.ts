// Loads a checkpoint folder in the browser from bytes (file picker or URL) and builds the model on
// WebGPU. Understands the folders the project writes: training checkpoints (config.json with the
// embedded frugal config, model.safetensors, tokenizer.json), HF Llama/FBI-LLM folders (sharded
// safetensors too) and packed 1-bit FBI folders. Packed FBI layers run on the CPU addon only, so a
// packed folder is expanded on load into the latent-equivalent FBI weights: sign(W) = +-1 from the
// bits with the stored wscale/wbias, which computes exactly what the packed kernel computes.
import { ByteTokenizer, tokenizerFromJson, type Tokenizer } from '../src/data/index.ts';
import { isPackedConfig, PACKED_FORMAT, PACKED_VERSION, packedWordsPerRow } from '../src/io/packed.ts';
import type { RawTensor, TensorMap } from '../src/io/raw.ts';
import { readSafetensors } from '../src/io/safetensors.ts';
import { CausalLM } from '../src/models/index.ts';
import { fromHf, loadStateDict } from '../src/models/hf.ts';
import type { DeviceName } from '../src/backend/types.ts';

/** Reads one file of the folder by name; null when the folder has no such file. */
export type FolderReader = (name: string) => Promise<Uint8Array | null>;

export interface LoadedModel {
  model: CausalLM;
  tokenizer: Tokenizer;
  /** Where the tokenizer came from ("tokenizer.json" or the byte-level fallback). */
  tokenizerSource: string;
  /** Bytes of the weight files as stored. */
  storedBytes: number;
  /** The folder held packed 1-bit weights (expanded to f32 on load). */
  packed: boolean;
}

/**
 * A folder chosen with <input type=file webkitdirectory> (or several files picked together). Files
 * are told apart by their folder (webkitRelativePath): a run folder holds a checkpoint in model/ and
 * perhaps a packed one in packed/, whose files share names, so they are never mixed: the one folder
 * with a config.json is used, and a pick with several such folders is refused with their names.
 */
export function folderFromFiles(files: Iterable<File>): FolderReader {
  const byDir = new Map<string, Map<string, File>>();
  for (const f of files) {
    const rel = (f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name;
    const dir = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
    if (!byDir.has(dir)) byDir.set(dir, new Map());
    byDir.get(dir)!.set(f.name, f);
  }
  if (byDir.size === 0) throw new Error('no files were chosen; pick the checkpoint folder (or its config.json, weights and tokenizer.json)');
  const withConfig = [...byDir.keys()].filter((d) => byDir.get(d)!.has('config.json'));
  if (withConfig.length > 1) {
    throw new Error(`the chosen folder holds several checkpoints (${withConfig.map((d) => `${d}/`).join(', ')}); pick one of them, e.g. model/ or packed/ of a run folder`);
  }
  const byName = byDir.get(withConfig[0] ?? [...byDir.keys()][0])!;
  return async (name) => {
    const f = byName.get(name);
    return f ? new Uint8Array(await f.arrayBuffer()) : null;
  };
}

/** A folder served over HTTP: base URL + file name. A 404 (or an HTML fallback page) means "absent". */
export function folderFromUrl(base: string): FolderReader {
  const root = base.endsWith('/') ? base : `${base}/`;
  return async (name) => {
    const url = new URL(name, new URL(root, location.href)).href;
    let res: Response;
    try {
      res = await fetch(url);
    } catch (e) {
      throw new Error(`could not fetch ${url} (${(e as Error).message}); check the URL and that the server allows cross-origin requests`);
    }
    // Dev servers answer unknown paths with the app's index.html; that is not a checkpoint file.
    if (res.status === 404 || (res.headers.get('content-type') ?? '').startsWith('text/html')) return null;
    if (!res.ok) throw new Error(`fetching ${url} failed: HTTP ${res.status} ${res.statusText}`);
    return new Uint8Array(await res.arrayBuffer());
  };
}

function parseJson(bytes: Uint8Array, name: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new Error(`${name} is not valid JSON (${(e as Error).message}); the checkpoint is corrupt or incomplete`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${name} must hold a JSON object`);
  return v as Record<string, unknown>;
}

async function need(read: FolderReader, name: string, hint: string): Promise<Uint8Array> {
  const b = await read(name);
  if (!b) throw new Error(`the checkpoint has no ${name}; ${hint}`);
  return b;
}

/** Weights of a non-packed folder: model.safetensors or a sharded model.safetensors.index.json. */
async function readWeights(read: FolderReader): Promise<{ tensors: TensorMap; bytes: number }> {
  const single = await read('model.safetensors');
  if (single) return { tensors: readSafetensors(single).tensors, bytes: single.length };
  const index = await read('model.safetensors.index.json');
  if (!index) {
    const bin = (await read('pytorch_model.bin')) ?? (await read('pytorch_model.bin.index.json'));
    throw new Error(bin
      ? 'PyTorch .bin weights are not read in the browser; convert the folder to safetensors first (load and save it with the frugal CLI)'
      : 'the checkpoint has no model.safetensors (or model.safetensors.index.json with its shards)');
  }
  const map = parseJson(index, 'model.safetensors.index.json').weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new Error('model.safetensors.index.json has no "weight_map" object');
  const tensors: TensorMap = new Map();
  let bytes = 0;
  for (const shard of new Set(Object.values(map as Record<string, unknown>))) {
    if (typeof shard !== 'string' || shard.includes('/')) throw new Error(`model.safetensors.index.json names ${JSON.stringify(shard)}, which is not a file of the folder`);
    const b = await need(read, shard, 'a shard listed in model.safetensors.index.json is missing');
    bytes += b.length;
    for (const [n, t] of readSafetensors(b).tensors) tensors.set(n, t);
  }
  return { tensors, bytes };
}

/** f32 [out, in] of +-1 from packed sign words (bit j of row r: word r*W + j/32, bit j%32, 1 = +1). */
export function unpackSigns(bits: Int32Array, outF: number, inF: number): Float32Array {
  const words = packedWordsPerRow(inF);
  const w = new Float32Array(outF * inF);
  for (let r = 0; r < outF; r++) {
    for (let j = 0; j < inF; j++) w[r * inF + j] = (bits[r * words + (j >>> 5)] >>> (j & 31)) & 1 ? 1 : -1;
  }
  return w;
}

/** Packed folder contents as the tensors of the latent FBI model (weight = signs, scales as stored). */
function expandPacked(hf: Record<string, unknown>, file: Uint8Array): { config: Record<string, unknown>; tensors: TensorMap } {
  const marker = hf.frugal_packed as Record<string, unknown>;
  if (marker.format !== PACKED_FORMAT || marker.version !== PACKED_VERSION || marker.word_bits !== 32) {
    throw new Error(`packed format ${JSON.stringify(marker)} is not supported (expected ${PACKED_FORMAT} version ${PACKED_VERSION}, 32-bit words)`);
  }
  if (marker.head_dtype === 'int8') throw new Error('this packed folder has an int8 LM head (frugal pack --head int8), which the playground does not read; pack it with the default f16 head');
  const { tensors, metadata } = readSafetensors(file);
  let shapes: Record<string, [number, number]>;
  try {
    shapes = JSON.parse(metadata.packed_linears ?? '');
  } catch {
    throw new Error('model.safetensors has no valid "packed_linears" metadata; the folder was not written by the packer');
  }
  const out: TensorMap = new Map(tensors);
  for (const [name, [outF, inF]] of Object.entries(shapes)) {
    const bits = out.get(`${name}.weight_bits`);
    if (!bits || bits.dtype !== 'i32' || bits.shape[0] !== outF || bits.shape[1] !== packedWordsPerRow(inF)) {
      throw new Error(`packed linear ${name}: weight_bits is missing or does not hold [${outF}, ${inF}] sign bits`);
    }
    out.delete(`${name}.weight_bits`);
    const weight: RawTensor = { dtype: 'f32', shape: [outF, inF], data: unpackSigns(bits.data as Int32Array, outF, inF) };
    out.set(`${name}.weight`, weight);
  }
  const config = { ...hf };
  delete config.frugal_packed;
  return { config, tensors: out };
}

/** Builds the model of a checkpoint folder on `device` and loads its weights and tokenizer. */
export async function loadCheckpoint(read: FolderReader, device: DeviceName = 'webgpu'): Promise<LoadedModel> {
  const hf = parseJson(await need(read, 'config.json', 'pick the folder that holds config.json and the weights'), 'config.json');
  const packed = isPackedConfig(hf);
  let config = hf;
  let tensors: TensorMap;
  let storedBytes: number;
  if (packed) {
    const file = await need(read, 'model.safetensors', 'a packed folder stores its weights in model.safetensors');
    ({ config, tensors } = expandPacked(hf, file));
    storedBytes = file.length;
  } else {
    ({ tensors, bytes: storedBytes } = await readWeights(read));
  }
  const model = new CausalLM(fromHf(config, tensors), { device });
  loadStateDict(model, tensors, 'checkpoint');
  const tokJson = await read('tokenizer.json');
  if (tokJson) {
    const tokConfig = await read('tokenizer_config.json');
    const tokenizer = tokenizerFromJson(parseJson(tokJson, 'tokenizer.json'), tokConfig ? parseJson(tokConfig, 'tokenizer_config.json') : {});
    return { model, tokenizer, tokenizerSource: 'tokenizer.json', storedBytes, packed };
  }
  if (model.config.vocabSize < 256) throw new Error(`the checkpoint has no tokenizer.json and its vocabulary (${model.config.vocabSize}) is too small for bytes; add the tokenizer.json it was trained with`);
  return { model, tokenizer: new ByteTokenizer(), tokenizerSource: 'bytes (no tokenizer.json in the folder)', storedBytes, packed };
}
