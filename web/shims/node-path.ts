// Browser stand-in for node:path: the few POSIX string functions the engine uses when it names files
// in messages. No file system is involved.
function normalize(parts: string[], absolute: boolean): string {
  const out: string[] = [];
  for (const p of parts) {
    if (!p || p === '.') continue;
    if (p === '..' && out.length && out[out.length - 1] !== '..') out.pop();
    else if (p !== '..' || !absolute) out.push(p);
  }
  return (absolute ? '/' : '') + out.join('/') || (absolute ? '/' : '.');
}

export function join(...segments: string[]): string {
  const s = segments.filter(Boolean).join('/');
  return normalize(s.split('/'), s.startsWith('/'));
}

export function resolve(...segments: string[]): string {
  let s = '';
  for (const seg of segments) s = seg.startsWith('/') ? seg : `${s}/${seg}`;
  return normalize(s.split('/'), true);
}

export function dirname(p: string): string {
  const i = p.replace(/\/+$/, '').lastIndexOf('/');
  return i < 0 ? '.' : i === 0 ? '/' : p.slice(0, i);
}

export function basename(p: string): string {
  const s = p.replace(/\/+$/, '');
  return s.slice(s.lastIndexOf('/') + 1);
}

export function extname(p: string): string {
  const b = basename(p);
  const i = b.lastIndexOf('.');
  return i <= 0 ? '' : b.slice(i);
}
