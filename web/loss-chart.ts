// A live training-loss line chart on a <canvas>: redrawn from all points on each update (a few
// hundred steps is cheap), y axis from the data range, with the latest value printed.
export class LossChart {
  private readonly points: number[] = [];
  constructor(private readonly canvas: HTMLCanvasElement, private readonly totalSteps: number) {
    this.draw();
  }

  push(loss: number): void {
    this.points.push(loss);
    this.draw();
  }

  private draw(): void {
    const ctx = this.canvas.getContext('2d');
    if (!ctx) return;
    const { width: w, height: h } = this.canvas;
    const pad = { l: 44, r: 10, t: 10, b: 22 };
    ctx.clearRect(0, 0, w, h);
    ctx.font = '11px system-ui, sans-serif';
    ctx.strokeStyle = '#999';
    ctx.strokeRect(pad.l, pad.t, w - pad.l - pad.r, h - pad.t - pad.b);
    const pts = this.points;
    if (pts.length === 0) {
      ctx.fillStyle = '#666';
      ctx.fillText('loss appears here while training', pad.l + 8, pad.t + 16);
      return;
    }
    const lo = Math.min(...pts), hi = Math.max(...pts);
    const span = hi - lo || 1;
    const x = (i: number) => pad.l + (i / Math.max(1, this.totalSteps - 1)) * (w - pad.l - pad.r);
    const y = (v: number) => pad.t + (1 - (v - lo) / span) * (h - pad.t - pad.b);
    ctx.fillStyle = '#444';
    ctx.fillText(hi.toFixed(2), 4, pad.t + 8);
    ctx.fillText(lo.toFixed(2), 4, h - pad.b);
    ctx.fillText(`step ${pts.length}/${this.totalSteps}, loss ${pts[pts.length - 1].toFixed(3)}`, pad.l + 6, h - 6);
    ctx.strokeStyle = '#1565c0';
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    pts.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
    ctx.stroke();
  }
}
