// Turns the suite's results into tables: plain text for a terminal, or Markdown for
// docs/benchmarks.md (--markdown). The JSON output (--json) is the results object itself.
import { TFJS_BYTES_PER_PARAM, tfjsTable } from './tfjs.mjs';

const fix = (x, d) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
const pct = (x) => (Number.isFinite(x) ? `${(100 * x).toFixed(0)}%` : 'n/a');
const times = (x) => (Number.isFinite(x) ? `${x >= 100 ? x.toFixed(0) : x.toFixed(1)}x` : '');

function humanCount(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)}K`;
  return String(n);
}

/** A table: headers, rows of strings; numbers right-aligned (columns listed in `right`). */
export function formatTable(headers, rows, { markdown = false, right = [] } = {}) {
  const alignRight = headers.map((_, i) => right.includes(i));
  if (markdown) {
    const line = (cells) => `| ${cells.join(' | ')} |`;
    return [line(headers), line(alignRight.map((r) => (r ? '---:' : '---'))), ...rows.map(line)].join('\n');
  }
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const pad = (cells) =>
    cells
      .map((c, i) => (alignRight[i] ? String(c).padStart(widths[i]) : String(c).padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [pad(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(pad)].join('\n');
}

/** The target a case is held to (the issue's), as a fraction of copy bandwidth, or null. */
export function targetFor(caseId, device) {
  if (device === 'cuda') return caseId === 'transformer' ? 0.85 : null;
  if (caseId === 'one-big') return 0.8;
  if (caseId === 'medium-64' || caseId === 'small-4096') return 0.7;
  return null;
}

export function renderReport(r, { markdown = false } = {}) {
  const out = [];
  const h = (title) => out.push('', markdown ? `### ${title}` : `== ${title}`, '');
  const bw = r.copyBandwidth;
  const header = [];
  header.push(
    `fused-optim benchmark${r.quick ? ' (--quick: small sizes, few repetitions; not for comparison)' : ''}`,
    `date ${r.date}; commit ${r.commit}${r.dirty ? ' (+ uncommitted changes)' : ''}; node ${r.node}; ${r.machine.cpuModel}, ${r.machine.cores} cores, ${r.machine.memoryGiB} GiB`,
    `backend ${r.backend.backend} (${r.backend.device}); ${r.threads} threads`,
    `copy bandwidth (${bw.device}, read + write counted): ${fix(bw.referenceGBps, 1)} GB/s ` +
      `[start ${fix(bw.start.gbps, 1)} (${bw.start.method}), end ${fix(bw.end?.gbps, 1)}; ` +
      `${bw.start.methods.map((m) => `${m.name} ${fix(m.bestGBps, 1)}`).join(', ')} at start]`,
  );
  if (r.otherLoad) {
    header.push(
      `other load during the run: ${fix(r.otherLoad.otherCores, 2)} cores busy outside this process on average` +
        `${r.otherLoad.stealCores > 0.005 ? `, ${fix(r.otherLoad.stealCores, 2)} cores stolen by the hypervisor` : ''}` +
        `${r.otherLoad.otherCores > 0.1 ? ' (the machine was not quiet: figures may be low)' : ''}`,
    );
  }
  // Markdown: a list, so that each line stays a line.
  out.push(...(markdown ? [header[0], '', ...header.slice(1).map((l) => `- ${l}`)] : header));

  h('Fused optimizers: one step, median of repeated runs after warm-up');
  const rows = r.results.map((x) => {
    const target = targetFor(x.case, r.backend.backend);
    return [
      x.case,
      x.algoName,
      x.dtype,
      String(x.tensors),
      humanCount(x.params),
      fix(x.msMedian, 2),
      fix(x.mparamsPerS, 0),
      String(x.bytesPerParam),
      fix(x.gbps, 1),
      pct(x.fractionOfCopy),
      fix(x.predictedMs, 2),
      target === null ? '' : `${pct(target)} ${x.fractionOfCopy >= target ? 'met' : 'MISSED'}`,
      times(x.vsJs),
      times(x.vsTfjs),
    ];
  });
  out.push(
    formatTable(
      [
        'case',
        'optimizer',
        'param/grad',
        'tensors',
        'params',
        'ms/step',
        'Mparams/s',
        'B/param',
        'GB/s',
        'of copy',
        'model ms',
        'target',
        'vs JS',
        'vs tfjs',
      ],
      rows,
      { markdown, right: [3, 4, 5, 6, 7, 8, 9, 10, 12, 13] },
    ),
  );
  out.push(
    '',
    "model ms: bytes per param x params / copy bandwidth (the floor). vs JS / vs tfjs: fused Mparams/s over the peer's, " +
      'fp32 rows only (tfjs: its Adam against the fused AdamW).',
  );

  if (r.peers.length) {
    h('Peers (same run, same machine, fp32)');
    out.push(
      formatTable(
        ['peer', 'case', 'params run', 'scaling', 'ms/step', 'Mparams/s', 'fused Mparams/s', 'fused / peer'],
        r.peers.map((p) => [
          p.peerName,
          p.case,
          humanCount(p.params),
          p.scaling,
          fix(p.msMedian, 2),
          fix(p.mparamsPerS, 1),
          fix(p.fusedMparamsPerS, 0),
          times(p.ratio),
        ]),
        { markdown, right: [2, 4, 5, 6, 7] },
      ),
    );
  }
  if (r.tfjs?.runs?.length) {
    h('TensorFlow.js: TfjsOptimizer (AdamW, weightDecay 0) vs tf.train.adam, one applyGradients (same run)');
    out.push(
      formatTable(
        [
          'tfjs backend',
          'model',
          'variables',
          'params',
          'TfjsOptimizer ms',
          'of which fused step',
          'tf.train.adam ms',
          'speed-up',
          'GB/s',
          'of copy',
          'target',
        ],
        tfjsTable(r.tfjs),
        { markdown, right: [2, 3, 4, 5, 6, 7, 8, 9] },
      ),
    );
    out.push(
      '',
      `ms: median per step. GB/s: ${TFJS_BYTES_PER_PARAM} bytes per param (grads copied in, the fused step, values copied ` +
        "into a new tensor) over TfjsOptimizer's time; of copy: over the copy bandwidth above. Fused tensors on " +
        `${r.tfjs.runs[0].device}; tfjs's CPU and wasm backends compute on one thread.`,
    );
  }
  for (const s of r.skipped ?? []) out.push(`skipped: ${s}`);

  const ho = r.hostOverhead;
  if (ho) {
    h('Host overhead per step() (fp32 tensors of 1 element: the work is nil, the time is the call)');
    out.push(
      formatTable(
        ['optimizer', ...ho.counts.map((n) => `${n} t`), 'a (us)', 'b (us/tensor)', 'r2', 'target: < 5 + 0.2 N us'],
        ho.fits.map((f) => [
          f.algoName,
          ...f.points.map((p) => `${fix(p.usPerCall, 2)}${p.withinTarget ? '' : '!'}`),
          fix(f.a, 2),
          fix(f.b, 3),
          fix(f.r2, 3),
          f.withinTarget
            ? 'met at every N'
            : `MISSED at N = ${f.points
                .filter((p) => !p.withinTarget)
                .map((p) => p.tensors)
                .join(', ')}`,
        ]),
        {
          markdown,
          right: [...ho.counts.map((_, i) => i + 1), ho.counts.length + 1, ho.counts.length + 2, ho.counts.length + 3],
        },
      ),
    );
    const sc = ho.stepCount;
    out.push(
      '',
      `us per call at N tensors ("!": above 5 + 0.2 N us); a + b*N fitted by least squares on relative errors. Step count: ${sc.algoName} with ${sc.tensors} tensors over ${sc.steps} steps, ` +
        `median per window of ${sc.window}: first ${fix(sc.firstUs, 2)} us, last ${fix(sc.lastUs, 2)} us (last/first ${fix(sc.ratio, 2)}; ` +
        `windows ${fix(sc.minUs, 2)} to ${fix(sc.maxUs, 2)} us): ${sc.independent ? 'independent of the step count' : 'NOT flat'}.`,
    );
  }
  if (r.manyParams?.length) {
    h('Many tiny params: AdamW over N fp32 params of 4 elements, one group (host work: building and planning)');
    out.push(
      formatTable(
        ['run', 'params', 'new AdamW (s)', 'first step (s)', 'steady step (ms)', 'us/param: new', 'first', 'steady'],
        r.manyParams.map((m) => [
          m.id,
          humanCount(m.params),
          fix(m.constructMs / 1e3, 3),
          fix(m.firstStepMs / 1e3, 3),
          fix(m.steadyStepMs, 1),
          fix(m.usPerParam.construct, 2),
          fix(m.usPerParam.firstStep, 2),
          fix(m.usPerParam.steadyStep, 2),
        ]),
        { markdown, right: [1, 2, 3, 4, 5, 6, 7] },
      ),
    );
    out.push(
      '',
      'Measured once per N after the params exist (a cold start, as a user pays it); target: 100k params built in under 0.5 s.',
    );
  }
  return out.join('\n');
}
