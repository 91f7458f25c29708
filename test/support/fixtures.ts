// Reads test/fixtures/adamw_torch.json (written by gen_adamw_fixtures.py with torch).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TorchCase {
  name: string;
  metrics?: { grads: string[]; values: Array<Record<string, number>> };
  dtype: 'float32' | 'float16' | 'bfloat16';
  grad_dtype: 'float32' | 'float16' | 'bfloat16';
  groups: Array<{
    lr: number;
    betas: [number, number];
    eps: number;
    weight_decay: number;
    amsgrad: boolean;
    maximize: boolean;
    initial_lr?: number;
    layerwise_decay?: number;
    n_layers?: number;
    params: number[];
  }>;
  params: Array<{ numel: number; init: string; name?: string; ratio?: number; apply_decay?: boolean }>;
  steps: Array<{
    lr: number[];
    grads: Array<string | null>;
    expected_master: string[];
    expected_param: Array<string | null>;
    expected_exp_avg: Array<string | null>;
    expected_exp_avg_sq: Array<string | null>;
    expected_max_exp_avg_sq: Array<string | null>;
    expected_step: number[];
  }>;
}

export function loadTorchCases(file = 'adamw_torch.json'): TorchCase[] {
  const json = JSON.parse(readFileSync(join(__dirname, '..', 'fixtures', file), 'utf8'));
  if (json.encoding !== 'base64-le') throw new Error(`unexpected fixture encoding ${json.encoding}`);
  return json.cases;
}

function bytes(b64: string): Uint8Array {
  const buf = Buffer.from(b64, 'base64');
  return new Uint8Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

export const f32 = (b64: string): Float32Array => new Float32Array(bytes(b64).buffer);
export const u32 = (b64: string): Uint32Array => new Uint32Array(bytes(b64).buffer);
export const u16 = (b64: string): Uint16Array => new Uint16Array(bytes(b64).buffer);
