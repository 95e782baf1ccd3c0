// Stop strings over streamed text: text is released as soon as it cannot be the start of a stop
// string, so a streamed continuation never shows a stop string (or a piece of one) that ends it.
export class StopMatcher {
  private held = '';
  stopped = false;
  constructor(private readonly stops: readonly string[]) {
    if (stops.some((s) => s.length === 0)) throw new Error('stop strings must be non-empty');
  }

  /** Feeds decoded text; returns what can be shown now. After a match, `stopped` is set and the rest is dropped. */
  push(piece: string): string {
    if (this.stopped) return '';
    const text = this.held + piece;
    let cut = -1;
    for (const s of this.stops) {
      const at = text.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stopped = true;
      this.held = '';
      return text.slice(0, cut);
    }
    // Hold back the longest tail that is a proper prefix of some stop string.
    let keep = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, text.length); n > keep; n--) {
        if (text.endsWith(s.slice(0, n))) {
          keep = n;
          break;
        }
      }
    }
    this.held = text.slice(text.length - keep);
    return text.slice(0, text.length - keep);
  }

  /** The text still held back once the sequence ends without a match. */
  flush(): string {
    const t = this.stopped ? '' : this.held;
    this.held = '';
    return t;
  }
}
