#!/usr/bin/env node
// Lists the CUDA code embedded in a binary: the fat binaries that nvcc links into the
// `.nv_fatbin` section, one container per .cu file, each holding device code (cubin) per
// GPU architecture and PTX. The same facts as `cuobjdump --list-elf --list-ptx`, for
// machines that have nvcc but not cuobjdump. Used by scripts/prebuild.mjs and the tests.
//
//   node scripts/fatbin.mjs prebuilds/linux-x64/fused-optim.node
//
// Layout (little-endian): container header { u32 magic 0xBA55ED50, u16 version,
// u16 headerSize, u64 payloadSize }, then entries { u16 kind (1 PTX, 2 cubin), u16,
// u32 headerSize, u64 payloadSize, ..., u32 arch at offset 28 } back to back.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const MAGIC = Buffer.from([0x50, 0xed, 0x55, 0xba]);

/** [{ kind: 'cubin' | 'ptx', arch: 'sm_90' | 'compute_90', size }] per container. */
export function listFatbins(buffer) {
  const containers = [];
  for (let at = buffer.indexOf(MAGIC); at >= 0; at = buffer.indexOf(MAGIC, at + 4)) {
    if (at + 16 > buffer.length) break;
    const version = buffer.readUInt16LE(at + 4);
    const headerSize = buffer.readUInt16LE(at + 6);
    const size = Number(buffer.readBigUInt64LE(at + 8));
    if (version !== 1 || headerSize !== 16 || at + headerSize + size > buffer.length) continue; // not a container
    const entries = [];
    let e = at + headerSize;
    const end = e + size;
    while (e + 32 <= end) {
      const kind = buffer.readUInt16LE(e);
      const entryHeader = buffer.readUInt32LE(e + 4);
      const payload = Number(buffer.readBigUInt64LE(e + 8));
      const arch = buffer.readUInt32LE(e + 28);
      if (entryHeader < 32 || (kind !== 1 && kind !== 2)) break;
      entries.push({
        kind: kind === 1 ? 'ptx' : 'cubin',
        arch: `${kind === 1 ? 'compute' : 'sm'}_${arch}`,
        size: payload,
      });
      e += entryHeader + payload;
    }
    if (entries.length) containers.push(entries);
    at += headerSize + size - 4;
  }
  return containers;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node scripts/fatbin.mjs FILE');
    process.exit(2);
  }
  const containers = listFatbins(readFileSync(file));
  if (!containers.length) console.log(`${file}: no CUDA fat binary (CPU-only build)`);
  containers.forEach((entries, i) =>
    console.log(`fatbin ${i}: ${entries.map((x) => `${x.arch} (${x.kind}, ${x.size} B)`).join(', ')}`),
  );
}
