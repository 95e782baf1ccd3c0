// The playground's folder picker: a run folder's model/ and packed/ checkpoints are never mixed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { folderFromFiles } from '../../web/folder.ts';

const file = (rel: string, text: string) => {
  const f = new File([text], rel.split('/').at(-1)!);
  Object.defineProperty(f, 'webkitRelativePath', { value: rel });
  return f;
};
const read = async (r: ReturnType<typeof folderFromFiles>, n: string) => {
  const b = await r(n);
  return b && new TextDecoder().decode(b);
};

test('a run folder with both model/ and packed/ is refused naming both; one checkpoint folder is read alone', async () => {
  const run = [file('run/model/config.json', 'latent'), file('run/packed/config.json', 'packed'), file('run/metrics.jsonl', '{}')];
  assert.throws(() => folderFromFiles(run), /several checkpoints \(run\/model\/, run\/packed\/\).*model\/ or packed\//);
  const one = folderFromFiles([file('run/packed/config.json', 'packed'), file('run/packed/model.safetensors', 'w'), file('run/metrics.jsonl', '{}')]);
  assert.equal(await read(one, 'config.json'), 'packed');
  assert.equal(await read(one, 'metrics.jsonl'), null);
  // Files picked one by one (no relative path) are one folder.
  const loose = folderFromFiles([new File(['c'], 'config.json'), new File(['t'], 'tokenizer.json')]);
  assert.equal(await read(loose, 'tokenizer.json'), 't');
  assert.throws(() => folderFromFiles([]), /no files were chosen/);
});
