// Progress display on stderr: a redrawn bar on a terminal, or a few plain lines when piped.
export type ProgressMode = 'bar' | 'lines' | 'none';

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${s.toFixed(0)}s`;
}

function fmtRate(r: number): string {
  return r >= 1000 ? `${(r / 1000).toFixed(1)}k` : r.toFixed(0);
}

export class Progress {
  private t0 = 0;
  private first = 0;
  private lastLine = 0;
  private readonly mode: ProgressMode;
  constructor(mode: ProgressMode, private readonly total: number, private readonly label: string) {
    this.mode = mode === 'bar' && !process.stderr.isTTY ? 'lines' : mode;
  }
  start(step: number): void {
    this.t0 = performance.now();
    this.first = step;
  }
  update(step: number, loss: number, tokPerS: number): void {
    if (this.mode === 'none') return;
    const elapsed = (performance.now() - this.t0) / 1000;
    const eta = ((this.total - step) * elapsed) / Math.max(step - this.first, 1);
    const text = `${this.label} ${step}/${this.total} loss ${loss.toFixed(4)} ${fmtRate(tokPerS)} tok/s ETA ${fmtTime(eta)}`;
    if (this.mode === 'bar') {
      const width = 24;
      const fill = Math.round((width * step) / this.total);
      process.stderr.write(`\r[${'='.repeat(fill)}${' '.repeat(width - fill)}] ${text}\x1b[K`);
    } else if (step === this.total || step - this.lastLine >= Math.max(1, Math.ceil(this.total / 10))) {
      this.lastLine = step;
      process.stderr.write(`${text}\n`);
    }
  }
  note(text: string): void {
    if (this.mode === 'none') return;
    process.stderr.write(this.mode === 'bar' ? `\r${text}\x1b[K\n` : `${text}\n`);
  }
  done(): void {
    if (this.mode === 'bar') process.stderr.write('\n');
  }
}
