#!/usr/bin/env node
// Checks the Markdown links of README.md and docs/*.md: every relative link must name a file
// or folder of the checkout, and every #anchor a heading of its target (GitHub's slugs).
// External links (http:, https:, mailto:) are not fetched. Exits 1 and lists the broken ones.
// Usage: node scripts/check-links.mjs [FILE.md ...]
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const files =
  process.argv.length > 2
    ? process.argv.slice(2).map((f) => resolve(f))
    : [
        join(root, 'README.md'),
        ...readdirSync(join(root, 'docs'))
          .filter((f) => f.endsWith('.md'))
          .map((f) => join(root, 'docs', f)),
      ];

/** The text outside fenced code blocks and inline code spans, line by line. */
function proseLines(markdown) {
  let fence = null;
  return markdown.split('\n').map((line) => {
    const m = /^\s*(```+|~~~+)/.exec(line);
    if (m) {
      if (fence === null) fence = m[1][0];
      else if (m[1][0] === fence) fence = null;
      return '';
    }
    return fence === null ? line.replace(/`+[^`]*`+/g, (s) => ' '.repeat(s.length)) : '';
  });
}

/** GitHub's anchor of a heading: lowercased, punctuation dropped, spaces to hyphens. */
function slug(heading) {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1') // a link's text
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

const anchorCache = new Map();
function anchorsOf(file) {
  if (!anchorCache.has(file)) {
    const seen = new Map();
    const anchors = new Set();
    let fence = null;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const f = /^\s*(```+|~~~+)/.exec(line);
      if (f) {
        if (fence === null) fence = f[1][0];
        else if (f[1][0] === fence) fence = null;
        continue;
      }
      const h = fence === null && /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
      if (!h) continue;
      const base = slug(h[1]);
      const n = seen.get(base) ?? 0;
      seen.set(base, n + 1);
      anchors.add(n === 0 ? base : `${base}-${n}`);
    }
    for (const m of readFileSync(file, 'utf8').matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) anchors.add(m[1]);
    anchorCache.set(file, anchors);
  }
  return anchorCache.get(file);
}

const broken = [];
let checked = 0;
for (const file of files) {
  const lines = proseLines(readFileSync(file, 'utf8'));
  lines.forEach((line, i) => {
    // [text](target) and ![alt](target); the target ends at the first space or ')'.
    for (const m of line.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      const target = m[1];
      if (/^(https?|mailto):/i.test(target)) continue;
      checked++;
      const where = `${relative(root, file)}:${i + 1}`;
      const [path, anchor] = target.split('#', 2);
      const dest = path === '' ? file : resolve(dirname(file), decodeURI(path));
      if (!existsSync(dest)) {
        broken.push(`${where}: ${target}: no such file`);
        continue;
      }
      if (anchor === undefined || anchor === '') continue;
      if (statSync(dest).isDirectory() || !dest.endsWith('.md')) {
        broken.push(`${where}: ${target}: an anchor into a file that is not Markdown`);
        continue;
      }
      if (!anchorsOf(dest).has(decodeURIComponent(anchor).toLowerCase()))
        broken.push(`${where}: ${target}: no heading #${anchor} in ${relative(root, dest)}`);
    }
  });
}

if (broken.length > 0) {
  console.error(`${broken.length} broken link(s) of ${checked} checked:\n${broken.join('\n')}`);
  process.exit(1);
}
console.log(`${checked} links checked in ${files.length} files: all resolve.`);
