// Review rv2 of 931466a..c41f528: findings as tests.
import { test, expect } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { cgiWithBusyLog, deliver, mail, PRIVATE_ENV, searchFolder } from './harness.ts';

// 17fd27e changed what fromLineTime makes of a year below 100, but not FACTS_RULES: a list cache
// written before it keeps the 1900 + year reading of an unchanged ticket, forever.
test('a list cache written before 17fd27e is read again: a From_ year 0048 is 0048, not 1948', () => {
  const t = searchFolder('tm-rv2-facts-');
  t.send('submit@tickets.example', mail({ subject: 'old' }));
  const path = join(t.tickets, '1');
  const text = readFileSync(path, 'latin1');
  writeFileSync(path, text.replace(/^From .*/, 'From jose@customer.example Sat Feb 29 12:00:00 0048'), 'latin1');
  const list = () => {
    const r = deliver(['list', '--json', ...t.settings], '', t.env);
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout)[0].opened;
  };
  expect(list()).toBe('0048-02-29T12:00:00.000Z');
  // The cache as the code before 17fd27e wrote it: FACTS_RULES 2, the year read as 1948.
  const cachePath = join(t.tickets, '.ticket-mail', 'list-cache.json');
  const cache = JSON.parse(readFileSync(cachePath, 'utf8'));
  cache.settings = JSON.stringify([2, ...JSON.parse(cache.settings).slice(1)]);
  const old = Date.UTC(48, 1, 29, 12); // 1948-02-29
  cache.entries['1'].facts = cache.entries['1'].facts.map((v: number | null) => (v === null || typeof v !== 'number' || v === 0 || v === 1 ? v : old));
  writeFileSync(cachePath, JSON.stringify(cache));
  expect(list()).toBe('0048-02-29T12:00:00.000Z');
});

// ddee03f: build.mjs's plainExports refuses an exported top-level let or var by its name in the
// entry's own text. An exported binding that can change, which the plain exports object would
// copy once, gets past it when exported under another name, declared second in a list, by
// destructuring, with two spaces, or in another of our files and re-exported.
const ROOT = join(import.meta.dirname, '..');
async function plainExportsOf(files: Record<string, string>): Promise<string> {
  const source = readFileSync(join(ROOT, 'build.mjs'), 'utf8');
  const from = source.indexOf('async function plainExports(');
  const fn = source.slice(from, source.indexOf('\n}\n', from) + 3);
  const imports = source.match(/^import .*$/gm)!.join('\n');
  const dir = mkdtempSync(join(tmpdir(), 'tm-rv2-exports-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const module = join(ROOT, 'node_modules', '.cache', `rv2-plain-exports-${process.pid}-${Math.random().toString(36).slice(2)}.mjs`);
  mkdirSync(dirname(module), { recursive: true });
  writeFileSync(module, `${imports}\nexport ${fn}`);
  try {
    const { plainExports } = await import(module);
    return await plainExports(join(dir, 'entry.ts')).then(() => 'accepted', (e: Error) => e.message);
  } finally { rmSync(module, { force: true }); }
}
const bump = 'export function bump() { n++; }\n';
test.each([
  ['export let', `export let n = 1;\n${bump}`],
  ['let, export { }', `let n = 1;\nexport { n };\n${bump}`],
  ['let, export { as }', `let n = 1;\nexport { n as count };\n${bump}`],
  ['the second of a list', `let m = 0, n = 1;\nexport { n };\n${bump}`],
  ['destructured', `export let { n } = { n: 1 };\n${bump}`],
  ['two spaces', `let  n = 1;\nexport { n };\n${bump}`],
  ['another file, re-exported', { 'entry.ts': "export { n, bump } from './other.ts';\n", 'other.ts': `export let n = 1;\n${bump}` }],
] as const)('plainExports refuses a mutable exported binding: %s', async (_, files) => {
  expect(await plainExportsOf(typeof files === 'string' ? { 'entry.ts': files } : files)).toMatch(/would be copied once/);
}, 30_000);
test('plainExports accepts const, functions, and ticket.ts and viewer.ts', async () => {
  expect(await plainExportsOf({ 'entry.ts': 'export const n = 1;\nlet hidden = 0;\nexport function bump() { hidden++; }\nexport default n;\n' })).toBe('accepted');
  const source = readFileSync(join(ROOT, 'build.mjs'), 'utf8');
  const from = source.indexOf('async function plainExports(');
  const fn = source.slice(from, source.indexOf('\n}\n', from) + 3);
  const module = join(ROOT, 'node_modules', '.cache', `rv2-plain-exports-real-${process.pid}.mjs`);
  writeFileSync(module, `${source.match(/^import .*$/gm)!.join('\n')}\nexport ${fn}`);
  try {
    const { plainExports } = await import(module);
    for (const file of ['ticket.ts', 'viewer.ts']) expect(await plainExports(join(ROOT, file))).toMatch(/^import \{ .*\bmain\b|^import \{ /);
  } finally { rmSync(module, { force: true }); }
}, 60_000);

// 9af3c67's cgiWithBusyLog drains the full log pipe 0.3 s after the program starts, whatever it
// has done by then: a program slower to start (a loaded CI machine, a cold code cache) writes its
// line into a pipe already drained, and a dropped line goes unseen: the test passes without the fix.
test('cgiWithBusyLog sees a line dropped by the early close of a program that starts slowly', () => {
  const buggy = `const { writeSync, closeSync } = require('node:fs');
setTimeout(() => {
  process.stderr.write('ticket-mail: viewer: ENOTDIR: not a directory\\n');
  writeSync(1, 'Status: 500 Internal Server Error\\r\\n\\r\\n');
  closeSync(1); closeSync(2); process.exit(0);
}, Number(process.argv[1]));`;
  for (const ms of [0, 600]) {
    const r = cgiWithBusyLog([process.execPath, '-e', buggy, String(ms)], PRIVATE_ENV);
    expect([ms, r.stdout]).toEqual([ms, 'Status: 500 Internal Server Error\r\n\r\n']);
    expect([ms, r.stderr]).toEqual([ms, '']); // dropped, and seen to be
  }
}, 30_000);
