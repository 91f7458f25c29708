// Progress on stderr while the suite runs (stdout is kept for the table or the JSON).
// On a terminal: one bar redrawn in place. Otherwise (CI logs, pipes): one line per task.

function formatSeconds(s) {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${s.toFixed(0)}s`;
  return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
}

/**
 * createProgress({ total, stream, enabled }) -> { start(label), done(note?), finish() }.
 * `total` may grow with add(n) when a task's size is only known later.
 */
export function createProgress({ total, stream = process.stderr, enabled = true }) {
  const tty = Boolean(stream.isTTY);
  const width = 28;
  const t0 = Date.now();
  let done = 0;
  let label = '';
  const render = () => {
    if (!enabled) return;
    const elapsed = (Date.now() - t0) / 1000;
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const eta = done > 0 ? (elapsed / done) * (total - done) : NaN;
    const filled = Math.round(frac * width);
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
    const cols = stream.columns || 100;
    const line = `${bar} ${String(done).padStart(String(total).length)}/${total} ${formatSeconds(elapsed)} (eta ${formatSeconds(eta)}) ${label}`;
    stream.write(`\r\x1b[K${line.slice(0, cols - 1)}`);
  };
  return {
    add(n) {
      total += n;
    },
    start(l) {
      label = l;
      if (tty) render();
    },
    done(note = '') {
      done++;
      if (!enabled) return;
      if (tty) render();
      else stream.write(`bench: [${done}/${total}] ${label}${note ? `: ${note}` : ''}\n`);
    },
    finish() {
      if (enabled && tty) stream.write('\r\x1b[K');
    },
  };
}
