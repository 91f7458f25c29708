// The installed package's root folder (holding package.json, build/, prebuilds/, bench/),
// found from this file: src/cli/ in a checkout, dist/cjs/cli/ in the package.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface PackageJson {
  name: string;
  version: string;
  [key: string]: unknown;
}

let cached: { root: string; manifest: PackageJson } | undefined;

export function packageRoot(): { root: string; manifest: PackageJson } {
  if (cached) return cached;
  for (let dir = __dirname; ; dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const manifest = JSON.parse(readFileSync(file, 'utf8')) as PackageJson;
      if (manifest.name === 'fused-optim') return (cached = { root: dir, manifest });
    }
    if (dirname(dir) === dir) throw new Error(`cannot find the fused-optim package root above ${__dirname}`);
  }
}
