// CRC-32 (IEEE 802.3, the polynomial of zlib, gzip, PNG and Python's zlib.crc32). The addon
// computes it (native/checkpoint/crc32.cpp: carry-less multiplication folding where the CPU
// has it, about memory speed); this is the synchronous entry for small inputs on the
// JavaScript thread. Checkpoint tensors are checksummed on worker threads (native_io.ts).
import { native } from '../native';

/** The CRC-32 of `bytes`, continuing from `crc` (the CRC of the bytes before; 0 to start). */
export function crc32(bytes: ArrayBufferView, crc = 0): number {
  return native().crc32(bytes, crc);
}

/** A CRC as the 8 lowercase hex digits checkpoints store. */
export function crcHex(crc: number): string {
  return (crc >>> 0).toString(16).padStart(8, '0');
}
