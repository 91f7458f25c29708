// A small, dependency-free SVG line chart: one or two y axes (left and right, each linear
// or log10), "nice" ticks, a legend, and optional vertical markers. Enough for a loss and
// learning-rate plot that a person opens in a browser.

export interface PlotSeries {
  label: string;
  x: ArrayLike<number>;
  y: ArrayLike<number>;
  /** Which y axis the series is drawn against (default 'left'). */
  axis?: 'left' | 'right';
  color?: string;
  /** Line width in px (default 1.75). */
  width?: number;
  dashed?: boolean;
}

export interface AxisOptions {
  label?: string;
  /** log10 scale; values <= 0 are left out. */
  log?: boolean;
  /** Force the range (otherwise taken from the data). */
  min?: number;
  max?: number;
}

export interface PlotMarker {
  x: number;
  label: string;
}

export interface PlotOptions {
  title?: string;
  subtitle?: string;
  width?: number;
  height?: number;
  xLabel?: string;
  left?: AxisOptions;
  right?: AxisOptions;
  series: PlotSeries[];
  markers?: PlotMarker[];
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd'];
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';

/** Escapes text for SVG content and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(
    /[<>&"']/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );
}

/**
 * The labels of one axis, in one notation: all in exponent form when any tick needs it
 * (below 0.001 or from 1e6), thousands as "k" when the axis reaches 10,000 in round
 * thousands, else plain; never "0.001" beside "8e-4".
 */
export function formatTicks(ticks: readonly number[]): string[] {
  const nonzero = ticks.filter((t) => t !== 0);
  const exponent = (v: number) => {
    const [m, e] = v.toExponential(2).split('e');
    return `${String(Number(m))}e${Number(e)}`;
  };
  if (nonzero.some((t) => Math.abs(t) < 1e-3 || Math.abs(t) >= 1e6))
    return ticks.map((t) => (t === 0 ? '0' : exponent(t)));
  if (nonzero.some((t) => Math.abs(t) >= 1e4) && nonzero.every((t) => Number.isInteger(t / 1000)))
    return ticks.map((t) => (t === 0 ? '0' : `${t / 1000}k`));
  return ticks.map((t) => String(Number(t.toPrecision(4))));
}

/** A short label for one value: 0.001, 2.5e-4, 20k, 1.5e6 (an axis uses formatTicks). */
export function formatTick(v: number): string {
  return formatTicks([v])[0];
}

/** About `count` round tick values spanning [lo, hi] (1, 2, 2.5, 5 times a power of ten). */
export function niceTicks(lo: number, hi: number, count = 6): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 2.5, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push(Math.abs(t) < step * 1e-9 ? 0 : Number(t.toPrecision(12)));
  }
  return ticks;
}

/** Ticks of a log10 axis: each power of ten, plus 2 and 5 times it when the range is short. */
export function logTicks(lo: number, hi: number): number[] {
  const e0 = Math.floor(Math.log10(lo));
  const e1 = Math.ceil(Math.log10(hi));
  const mults = e1 - e0 <= 2 ? [1, 2, 5] : [1];
  const ticks: number[] = [];
  for (let e = e0; e <= e1; e++) {
    for (const m of mults) {
      const t = Number((m * 10 ** e).toPrecision(12));
      if (t >= lo * (1 - 1e-9) && t <= hi * (1 + 1e-9)) ticks.push(t);
    }
  }
  // A narrow range can fall between powers of ten: fall back to linear ticks.
  return ticks.length >= 2 ? ticks : niceTicks(lo, hi, 4);
}

interface Scale {
  lo: number;
  hi: number;
  log: boolean;
  ticks: number[];
  toPx(v: number): number;
}

function finiteRange(values: number[], log: boolean): [number, number] | undefined {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (!Number.isFinite(v) || (log && v <= 0)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : undefined;
}

function makeScale(
  values: number[],
  opts: AxisOptions,
  pxLo: number,
  pxHi: number,
  padZero: boolean,
  headroom = true,
  tight = false, // the axis ends at the data (x: no tick past the last step)
): Scale {
  const log = opts.log ?? false;
  const range = finiteRange(values, log);
  const dataHi = range?.[1];
  let [lo, hi] = range ?? (log ? [1, 10] : [0, 1]);
  if (opts.min !== undefined) lo = opts.min;
  if (opts.max !== undefined) hi = opts.max;
  let ticks: number[];
  if (log) {
    if (hi / lo < 1.5) {
      lo /= 1.25;
      hi *= 1.25;
    }
    // Widen to the enclosing ticks so the curve never touches the frame.
    lo = 10 ** (Math.floor(Math.log10(lo) * 4) / 4);
    hi = 10 ** (Math.ceil(Math.log10(hi) * 4) / 4);
    if (headroom && opts.max === undefined && dataHi !== undefined && Math.log10(hi / dataHi) < 0.05) hi *= 10 ** 0.08;
    ticks = logTicks(lo, hi);
  } else {
    if (padZero && opts.min === undefined && lo > 0 && lo < hi * 0.5) lo = 0; // anchor at zero when it is close
    if (hi === lo) {
      const d = Math.abs(hi) > 0 ? Math.abs(hi) * 0.1 : 1;
      lo -= d;
      hi += d;
    }
    ticks = niceTicks(lo, hi);
    const step = ticks.length > 1 ? ticks[1] - ticks[0] : 0;
    if (tight) ticks = ticks.filter((t) => t >= lo - step * 1e-9 && t <= hi + step * 1e-9);
    else if (step > 0) {
      lo = Math.min(lo, ticks[0]);
      if (hi > ticks[ticks.length - 1] + step * 1e-9)
        ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
      hi = Math.max(hi, ticks[ticks.length - 1]);
    }
    // Headroom above a curve whose maximum sits on the top tick, so its peak is not cut by the frame.
    if (headroom && opts.max === undefined && dataHi !== undefined && dataHi >= hi - (hi - lo) * 0.01)
      hi += (hi - lo) * 0.04;
  }
  const f = (v: number) => (log ? Math.log10(v) : v);
  const a = f(lo);
  const b = f(hi);
  return { lo, hi, log, ticks, toPx: (v) => pxLo + ((f(v) - a) / (b - a || 1)) * (pxHi - pxLo) };
}

/**
 * At most about `buckets` points per series, keeping each bucket's minimum and maximum in
 * order, so spikes survive and a 20,000-step curve stays a small file.
 */
export function downsample(x: ArrayLike<number>, y: ArrayLike<number>, buckets = 800): Array<[number, number]> {
  const n = Math.min(x.length, y.length);
  const pts: Array<[number, number]> = [];
  if (n <= buckets * 2) {
    for (let i = 0; i < n; i++) pts.push([x[i], y[i]]);
    return pts;
  }
  const per = n / buckets;
  for (let b = 0; b < buckets; b++) {
    const s = Math.floor(b * per);
    const e = Math.min(n, Math.floor((b + 1) * per));
    let iMin = s;
    let iMax = s;
    for (let i = s; i < e; i++) {
      if (y[i] < y[iMin]) iMin = i;
      if (y[i] > y[iMax]) iMax = i;
    }
    for (const i of iMin === iMax ? [iMin] : [Math.min(iMin, iMax), Math.max(iMin, iMax)]) pts.push([x[i], y[i]]);
  }
  if (pts[pts.length - 1][0] !== x[n - 1]) pts.push([x[n - 1], y[n - 1]]);
  return pts;
}

const r2 = (v: number) => Math.round(v * 100) / 100;

/** The chart as a standalone SVG document. */
export function renderSvg(o: PlotOptions): string {
  const W = o.width ?? 900;
  const H = o.height ?? 500;
  const series = o.series.map((s, i) => ({
    ...s,
    axis: s.axis ?? 'left',
    color: s.color ?? PALETTE[i % PALETTE.length],
  }));
  const hasRight = series.some((s) => s.axis === 'right');
  const top = (o.title ? 44 : 16) + (o.subtitle ? 16 : 0) + 26; // title, subtitle, legend row
  const margin = { top, right: hasRight ? 84 : 24, bottom: 56, left: 84 };
  const plotW = W - margin.left - margin.right;
  const plotH = H - margin.top - margin.bottom;
  const x0 = margin.left;
  const x1 = x0 + plotW;
  const y0 = margin.top + plotH; // bottom
  const y1 = margin.top;

  const xs = series.flatMap((s) => Array.from(s.x));
  const xScale = makeScale(xs.concat((o.markers ?? []).map((m) => m.x)), {}, x0, x1, true, false, true);
  const yLeft = makeScale(
    series.filter((s) => s.axis === 'left').flatMap((s) => Array.from(s.y)),
    o.left ?? {},
    y0,
    y1,
    true,
  );
  const yRight = makeScale(
    series.filter((s) => s.axis === 'right').flatMap((s) => Array.from(s.y)),
    o.right ?? {},
    y0,
    y1,
    true,
  );

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ${FONT} font-size="12">`,
  );
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  let ty = 26;
  if (o.title) {
    out.push(
      `<text x="${W / 2}" y="${ty}" text-anchor="middle" font-size="16" font-weight="600" fill="#222">${escapeXml(o.title)}</text>`,
    );
    ty += 18;
  }
  if (o.subtitle)
    out.push(
      `<text x="${W / 2}" y="${ty}" text-anchor="middle" font-size="12" fill="#666">${escapeXml(o.subtitle)}</text>`,
    );

  // Grid and ticks. Horizontal grid lines follow the left axis (or the right one alone).
  const gridY = series.some((s) => s.axis === 'left') ? yLeft : yRight;
  out.push('<g stroke="#e6e6e6" stroke-width="1">');
  for (const t of gridY.ticks)
    out.push(`<line x1="${x0}" x2="${x1}" y1="${r2(gridY.toPx(t))}" y2="${r2(gridY.toPx(t))}"/>`);
  for (const t of xScale.ticks)
    out.push(`<line x1="${r2(xScale.toPx(t))}" x2="${r2(xScale.toPx(t))}" y1="${y1}" y2="${y0}"/>`);
  out.push('</g>');
  out.push(`<rect x="${x0}" y="${y1}" width="${plotW}" height="${plotH}" fill="none" stroke="#888" stroke-width="1"/>`);

  out.push('<g fill="#444">');
  const xLabels = formatTicks(xScale.ticks);
  xScale.ticks.forEach((t, i) => {
    const px = r2(xScale.toPx(t));
    out.push(
      `<line x1="${px}" x2="${px}" y1="${y0}" y2="${y0 + 5}" stroke="#888"/><text x="${px}" y="${y0 + 18}" text-anchor="middle">${xLabels[i]}</text>`,
    );
  });
  const axisColor = (side: 'left' | 'right') => {
    const on = series.filter((s) => s.axis === side);
    return on.length === 1 ? on[0].color : '#444';
  };
  const drawY = (scale: Scale, side: 'left' | 'right', label?: string) => {
    const x = side === 'left' ? x0 : x1;
    const d = side === 'left' ? -1 : 1;
    const color = axisColor(side);
    const labels = formatTicks(scale.ticks);
    scale.ticks.forEach((t, i) => {
      const py = r2(scale.toPx(t));
      out.push(
        `<line x1="${x}" x2="${x + 5 * d}" y1="${py}" y2="${py}" stroke="${color}"/>` +
          `<text x="${x + 8 * d}" y="${py + 4}" text-anchor="${side === 'left' ? 'end' : 'start'}" fill="${color}">${labels[i]}</text>`,
      );
    });
    if (label) {
      const lx = side === 'left' ? 20 : W - 14;
      const ly = (y0 + y1) / 2;
      out.push(
        `<text x="${lx}" y="${ly}" transform="rotate(-90 ${lx} ${ly})" text-anchor="middle" font-size="13" fill="${color}">${escapeXml(label)}${scale.log ? ' (log scale)' : ''}</text>`,
      );
    }
  };
  if (series.some((s) => s.axis === 'left')) drawY(yLeft, 'left', o.left?.label);
  if (hasRight) drawY(yRight, 'right', o.right?.label);
  if (o.xLabel)
    out.push(
      `<text x="${(x0 + x1) / 2}" y="${H - 14}" text-anchor="middle" font-size="13">${escapeXml(o.xLabel)}</text>`,
    );
  out.push('</g>');

  // Markers: dashed vertical lines, labelled near the bottom (after the curves, on a halo).
  const markerLabels: string[] = [];
  for (const m of o.markers ?? []) {
    const px = r2(xScale.toPx(m.x));
    out.push(
      `<line x1="${px}" x2="${px}" y1="${y1}" y2="${y0}" stroke="#555" stroke-width="1.25" stroke-dasharray="6 4"/>`,
    );
    const right = px + 6 + 7 * m.label.length < x1;
    markerLabels.push(
      `<text x="${right ? px + 6 : px - 6}" y="${y0 - 10}" text-anchor="${right ? 'start' : 'end'}" fill="#333" font-size="12" ` +
        `stroke="#ffffff" stroke-width="4" stroke-linejoin="round" paint-order="stroke">${escapeXml(m.label)}</text>`,
    );
  }

  // The curves, clipped to the plot area.
  out.push(`<clipPath id="plot-area"><rect x="${x0}" y="${y1}" width="${plotW}" height="${plotH}"/></clipPath>`);
  out.push('<g clip-path="url(#plot-area)" fill="none" stroke-linejoin="round" stroke-linecap="round">');
  for (const s of series) {
    const scale = s.axis === 'left' ? yLeft : yRight;
    let d = '';
    let pen = false;
    for (const [x, y] of downsample(s.x, s.y)) {
      if (!Number.isFinite(y) || (scale.log && y <= 0)) {
        pen = false; // a gap
        continue;
      }
      d += `${pen ? 'L' : 'M'}${r2(xScale.toPx(x))} ${r2(scale.toPx(y))}`;
      pen = true;
    }
    out.push(
      `<path d="${d}" stroke="${s.color}" stroke-width="${s.width ?? 1.75}"${s.dashed ? ' stroke-dasharray="7 4"' : ''}/>`,
    );
  }
  out.push('</g>');
  out.push(...markerLabels);

  // Legend, one row above the plot.
  let lx = x0;
  const ly = y1 - 12;
  out.push('<g font-size="12" fill="#222">');
  for (const s of series) {
    out.push(
      `<line x1="${lx}" x2="${lx + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2.5"${s.dashed ? ' stroke-dasharray="7 4"' : ''}/>` +
        `<text x="${lx + 28}" y="${ly}">${escapeXml(s.label)}${hasRight ? ` (${s.axis} axis)` : ''}</text>`,
    );
    lx += 28 + 7 * (s.label.length + (hasRight ? 12 : 0)) + 24;
  }
  out.push('</g>');
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
