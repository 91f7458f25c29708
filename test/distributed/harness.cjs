// The rank side of the MPI suites (test/distributed.mpi.test.ts runs them under mpirun):
// cases run one after another in every rank; each records its checks instead of throwing,
// so that a failed check does not leave the other ranks waiting in a collective. After
// each case the ranks exchange their outcomes, and rank 0 writes them all to a JSON file.
'use strict';
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');

const dist = join(__dirname, '..', '..', 'dist', 'cjs');
const lib = require(join(dist, 'index.js'));
const distributed = require(join(dist, 'distributed', 'index.js'));

const cases = [];

/** Registers a case: fn(ctx) with ctx = { group, check, note }. `minRanks` skips it below. */
function test(name, fn, { minRanks = 1, maxRanks = Infinity } = {}) {
  cases.push({ name, fn, minRanks, maxRanks });
}

function bitsOf(t) {
  return t.dtype === 'float32' ? new Uint32Array(t.toFloat32Array().buffer) : t.toBits();
}

function sameBits(a, b) {
  const x = bitsOf(a);
  const y = bitsOf(b);
  if (x.length !== y.length) return `lengths ${x.length} and ${y.length}`;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return `element ${i} differs (${x[i]} vs ${y[i]})`;
  return '';
}

function fnv(bytes, h = 0x811c9dc5) {
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0;
  return h;
}

/** A hash of tensors' bits (to compare ranks). */
function hashTensors(tensors) {
  let h = 0x811c9dc5;
  for (const t of tensors) {
    const b = bitsOf(t);
    h = fnv(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), h);
  }
  return h;
}

async function main() {
  const out = process.argv[2];
  if (out === '--list') {
    // The cases, for the vitest side, without starting MPI.
    process.stdout.write(
      JSON.stringify(cases.map((c) => ({ name: c.name, minRanks: c.minRanks, maxRanks: c.maxRanks }))),
    );
    return;
  }
  const timeoutSeconds = Number(process.env.FO_DIST_TEST_TIMEOUT || 60);
  const group = await distributed.init({ timeoutSeconds });
  const results = [];
  const only = process.env.FO_DIST_TEST_FILTER ? new RegExp(process.env.FO_DIST_TEST_FILTER) : null;
  for (const c of cases) {
    if (group.worldSize < c.minRanks || group.worldSize > c.maxRanks) continue;
    if (only && !only.test(c.name)) continue;
    const failures = [];
    const notes = [];
    const check = (ok, message) => {
      if (!ok) failures.push(typeof message === 'function' ? message() : message);
      return ok;
    };
    const started = Date.now();
    try {
      await c.fn({ group, check, note: (s) => notes.push(s) });
    } catch (e) {
      failures.push(`threw: ${e && e.stack ? e.stack : String(e)}`);
    }
    const mine = { rank: group.rank, failures, notes, ms: Date.now() - started };
    const text = new TextEncoder().encode(JSON.stringify(mine));
    const lengths = new Int32Array(group.worldSize);
    await group.allGatherAsync(Int32Array.of(text.length), lengths);
    const width = Math.max(...lengths);
    const padded = new Uint8Array(width);
    padded.set(text);
    const all = new Uint8Array(width * group.worldSize);
    await group.allGatherAsync(padded, all);
    const ranks = [...lengths].map((n, r) =>
      JSON.parse(new TextDecoder().decode(all.subarray(r * width, r * width + n))),
    );
    results.push({ name: c.name, ranks });
    if (group.rank === 0 && process.env.FO_DIST_TEST_PROGRESS)
      process.stderr.write(
        `[${group.worldSize} ranks] ${ranks.every((x) => x.failures.length === 0) ? 'ok  ' : 'FAIL'} ${c.name} (${ranks.map((x) => x.ms).join('/')} ms)\n`,
      );
  }
  if (group.rank === 0 && out) writeFileSync(out, JSON.stringify({ worldSize: group.worldSize, results }, null, 1));
  group.destroy();
}

module.exports = { lib, distributed, test, main, sameBits, bitsOf, hashTensors };
