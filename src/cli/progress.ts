// A progress bar on stderr. On a terminal it redraws one line in place (at most ~12 times a
// second); otherwise (a pipe, a CI log) it prints a plain line about every tenth of the way.

export interface ProgressFields {
  step: number;
  loss: number;
  lr: number;
}

export interface ProgressOptions {
  total: number;
  /** Text before the bar, e.g. "phase 1". */
  label?: string;
  stream?: NodeJS.WriteStream;
  /** Forces TTY (true) or plain-line (false) mode; default: stream.isTTY. */
  tty?: boolean;
  /** Plain mode: lines per run (default 10). */
  lines?: number;
}

export function formatLr(lr: number): string {
  return lr === 0 ? '0' : lr.toExponential(3);
}

export class ProgressBar {
  readonly #total: number;
  readonly #label: string;
  readonly #stream: NodeJS.WriteStream;
  readonly #tty: boolean;
  readonly #every: number;
  readonly #started = performance.now();
  #lastDraw = 0;
  #lastWidth = 0;
  #first = 0;
  #sum = 0;
  #count = 0;
  #ema = 0;
  #emaSteps = 0;

  constructor(o: ProgressOptions) {
    this.#total = o.total;
    this.#label = o.label ? `${o.label} ` : '';
    this.#stream = o.stream ?? process.stderr;
    this.#tty = o.tty ?? Boolean(this.#stream.isTTY);
    this.#every = Math.max(1, Math.round(o.total / (o.lines ?? 10)));
  }

  /** Reports progress; `f.step` counts from the run's first step (1-based within [first, total]). */
  update(f: ProgressFields, done = false): void {
    if (this.#first === 0) this.#first = f.step;
    const elapsed = (performance.now() - this.#started) / 1000;
    const doneSteps = f.step - this.#first + 1;
    const rate = elapsed > 0 ? doneSteps / elapsed : 0;
    this.#sum += f.loss;
    this.#count += 1;
    this.#ema = 0.9 * this.#ema + 0.1 * f.loss;
    this.#emaSteps += 1;
    const stepText = `step ${String(f.step).padStart(String(this.#total).length)}/${this.#total}`;
    // A terminal shows the smoothed minibatch loss; a log line the mean since the last line.
    const loss = this.#tty ? this.#ema / (1 - 0.9 ** this.#emaSteps) : this.#sum / this.#count;
    const fields = `${stepText}  loss ${loss.toFixed(5)}  lr ${formatLr(f.lr)}  ${rate >= 1 ? `${rate.toFixed(0)} steps/s` : ''}`;
    if (this.#tty) {
      const now = performance.now();
      if (!done && now - this.#lastDraw < 80 && f.step !== this.#total) return;
      this.#lastDraw = now;
      const frac = Math.min(1, f.step / this.#total);
      const width = 24;
      const filled = Math.round(frac * width);
      const line = `${this.#label}[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ${fields}`;
      const cols = this.#stream.columns || 120;
      const shown = line.length > cols - 1 ? line.slice(0, cols - 1) : line;
      this.#stream.write(`\r${shown}${' '.repeat(Math.max(0, this.#lastWidth - shown.length))}`);
      this.#lastWidth = shown.length;
      if (done) this.#stream.write('\n');
    } else if (done || f.step % this.#every === 0 || f.step === this.#total) {
      this.#stream.write(`${this.#label}${fields.trimEnd()}\n`);
      this.#sum = 0;
      this.#count = 0;
    }
  }
}
