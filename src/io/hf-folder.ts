// Hugging Face style checkpoint folders: config.json plus weights as one safetensors file, one
// torch.save file, or either format sharded behind an index.json that maps tensor names to files.
import type * as NodeFs from 'node:fs';
import type * as NodePath from 'node:path';
import { nodeBuiltin } from './node-builtins.ts';
import { checkRegularFile, readTextFile } from './safe-read.ts';
import { type RawTensor, type TensorMap, toTensorMap } from './raw.ts';
import { type SafetensorsWriteOptions, encodeSafetensors, readSafetensors } from './safetensors.ts';
import { readTorchBin } from './torch-bin.ts';
import { writeDirAtomic } from './atomic.ts';
const { existsSync, mkdirSync, statSync } = nodeBuiltin<typeof NodeFs>('node:fs');
const { basename, dirname, join, resolve } = nodeBuiltin<typeof NodePath>('node:path');

/** Weight layouts in the order they are preferred when several are present. */
const WEIGHT_LAYOUTS = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json'];

/** Files that hold weights; a new save replaces all of them. */
const WEIGHT_FILE = /^(model|pytorch_model)(-\d+-of-\d+)?\.(safetensors|bin)(\.index\.json)?$/;

function requireFolder(dir: string): string {
  const abs = resolve(dir);
  let isDir = false;
  try {
    isDir = statSync(abs).isDirectory();
  } catch {
    throw new Error(`checkpoint folder ${abs} does not exist; check the path`);
  }
  if (!isDir) throw new Error(`${abs} is a file, not a checkpoint folder; pass the folder that holds config.json and the weights`);
  return abs;
}

function readJson(path: string, what: string, root: string): unknown {
  let text: string;
  try {
    text = readTextFile(path, { root, what });
  } catch (e) {
    throw new Error(`cannot read ${what} ${path}: ${(e as Error).message.replace(`cannot open ${path}: `, '')}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} ${path} is not valid JSON (${(e as Error).message}); fix or re-download it`);
  }
}

/** The parsed config.json of a checkpoint folder. */
export function readConfig(dir: string): Record<string, unknown> {
  const path = join(requireFolder(dir), 'config.json');
  if (!existsSync(path)) throw new Error(`checkpoint folder ${dirname(path)} has no config.json; a checkpoint needs its model config next to the weights`);
  const cfg = readJson(path, 'config', dirname(path));
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw new Error(`config ${path} must hold a JSON object`);
  return cfg as Record<string, unknown>;
}

function readWeightFile(path: string, root: string): TensorMap {
  checkRegularFile(path, root);
  return path.endsWith('.safetensors') ? readSafetensors(path).tensors : readTorchBin(path);
}

function loadSharded(dir: string, indexPath: string): { tensors: TensorMap; files: string[] } {
  const index = readJson(indexPath, 'weight index', dir);
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new Error(`weight index ${indexPath} has no "weight_map" object (tensor name -> shard file)`);
  }
  const byShard = new Map<string, string[]>();
  for (const [name, file] of Object.entries(map)) {
    // Shards must be plain names inside the folder; an index cannot point elsewhere on disk.
    if (typeof file !== 'string' || file !== basename(file) || file === '..' || file === '.' || file === '') {
      throw new Error(`weight index ${indexPath} maps "${name}" to ${JSON.stringify(file)}, which is not a file name in the checkpoint folder`);
    }
    if (!byShard.has(file)) byShard.set(file, []);
    byShard.get(file)!.push(name);
  }
  if (byShard.size === 0) throw new Error(`weight index ${indexPath} lists no tensors`);
  const tensors: TensorMap = new Map();
  const files: string[] = [];
  for (const [file, names] of byShard) {
    const path = join(dir, file);
    if (!existsSync(path)) throw new Error(`shard ${file} listed in ${indexPath} is missing; re-download the checkpoint`);
    const shard = readWeightFile(path, dir);
    for (const name of names) {
      if (!shard.has(name)) throw new Error(`weight index ${indexPath} places "${name}" in ${file}, but that shard does not contain it`);
    }
    for (const [name, t] of shard) {
      if (tensors.has(name)) throw new Error(`tensor "${name}" appears in more than one shard of ${dir}`);
      tensors.set(name, t);
    }
    files.push(path);
  }
  return { tensors, files };
}

/**
 * Loads the weights of a checkpoint folder, whichever layout it uses:
 * model.safetensors, model.safetensors.index.json (+ shards), pytorch_model.bin, pytorch_model.bin.index.json (+ shards).
 * Returns the tensors and the weight files that were read.
 */
export function loadWeights(dir: string): { tensors: TensorMap; files: string[] } {
  const abs = requireFolder(dir);
  const layout = WEIGHT_LAYOUTS.find((f) => existsSync(join(abs, f)));
  if (!layout) {
    throw new Error(`checkpoint folder ${abs} has no weights; looked for ${WEIGHT_LAYOUTS.join(', ')}`);
  }
  const path = join(abs, layout);
  if (layout.endsWith('.index.json')) return loadSharded(abs, path);
  return { tensors: readWeightFile(path, abs), files: [path] };
}

export interface SaveCheckpointOptions extends SafetensorsWriteOptions {
  /** Carry over the old folder's non-weight files (tokenizer, README, ...). Default true. */
  keepOtherFiles?: boolean;
}

/**
 * Writes `config.json` and `model.safetensors` as one folder replacement: if anything fails the
 * previous checkpoint at `dir` stays as it was. Old weight files (other safetensors/bin layouts)
 * are dropped so the folder cannot hold two disagreeing sets of weights.
 */
export function saveCheckpointFolder(
  dir: string,
  config: object,
  tensors: TensorMap | Record<string, RawTensor>,
  metadata: Record<string, string> = {},
  opts: SaveCheckpointOptions = {},
): void {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new Error('checkpoint config must be a plain object');
  const abs = resolve(dir);
  // Encode first: invalid tensors or metadata fail before anything touches the disk.
  const weights = encodeSafetensors(toTensorMap(tensors), metadata, opts);
  const configJson = `${JSON.stringify(config, null, 2)}\n`;
  mkdirSync(dirname(abs), { recursive: true });
  const keepOthers = opts.keepOtherFiles ?? true;
  writeDirAtomic(abs, { 'config.json': configJson, 'model.safetensors': weights }, {
    keep: keepOthers ? (name) => !WEIGHT_FILE.test(name) && !name.startsWith('.') : undefined,
  });
}
