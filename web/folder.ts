// Checkpoint folders as the playground sees them: the files the user picked, or a base URL. This part
// runs on the page (it needs no engine): the page chooses the one checkpoint of a pick and hands its
// files (or an absolute URL) to the worker, which reads them through a FolderReader.

/** Reads one file of the folder by name; null when the folder has no such file. */
export type FolderReader = (name: string) => Promise<Uint8Array | null>;

/**
 * The files of the one checkpoint in a pick from <input type=file webkitdirectory> (or several files
 * picked together), by file name. Files are told apart by their folder (webkitRelativePath): a run
 * folder holds a checkpoint in model/ and perhaps a packed one in packed/, whose files share names,
 * so they are never mixed: the one folder with a config.json is used, and a pick with several such
 * folders is refused with their names.
 */
export function pickCheckpointFiles(files: Iterable<File>): { folder: string; files: Map<string, File> } {
  const byDir = new Map<string, Map<string, File>>();
  for (const f of files) {
    const rel = (f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name;
    const dir = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
    if (!byDir.has(dir)) byDir.set(dir, new Map());
    byDir.get(dir)!.set(f.name, f);
  }
  if (byDir.size === 0) throw new Error('no files were chosen; pick the checkpoint folder (or its config.json, weights and tokenizer.json)');
  const withConfig = [...byDir.keys()].filter((d) => byDir.get(d)!.has('config.json')).sort();
  if (withConfig.length > 1) {
    throw new Error(`the chosen folder holds several checkpoints (${withConfig.map((d) => `${d}/`).join(', ')}); pick one of them, e.g. model/ or packed/ of a run folder`);
  }
  const folder = withConfig[0] ?? [...byDir.keys()][0];
  return { folder, files: byDir.get(folder)! };
}

/** A FolderReader over files by name. */
export function folderFromFileMap(byName: Map<string, File>): FolderReader {
  return async (name) => {
    const f = byName.get(name);
    return f ? new Uint8Array(await f.arrayBuffer()) : null;
  };
}

/** pickCheckpointFiles, read through a FolderReader. */
export function folderFromFiles(files: Iterable<File>): FolderReader {
  return folderFromFileMap(pickCheckpointFiles(files).files);
}

/**
 * A folder served over HTTP: base URL + file name (relative URLs resolve against `from`, the page's
 * address). A 404 (or an HTML fallback page) means "absent".
 */
export function folderFromUrl(base: string, from: string = location.href): FolderReader {
  const root = new URL(base.endsWith('/') ? base : `${base}/`, from);
  return async (name) => {
    const url = new URL(name, root).href;
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
