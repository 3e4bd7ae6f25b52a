// The built core and viewer (dist/bin, plain exports objects since 2383480) hand over the same
// names, kinds and values as ticket.ts and viewer.ts themselves.
import { test, expect } from 'vitest';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Script } from 'node:vm';
import { createRequire } from 'node:module';
import * as ticket from '../ticket.ts';
import * as viewer from '../viewer.ts';

const require = createRequire(import.meta.url);
function loadBuilt() {
  const BIN = join(__dirname, '..', 'dist', 'bin');
  const loaded: Record<string, { exports: any }> = {};
  const ours = (id: string) => id === 'core' || (!id.startsWith('node:') && existsSync(join(BIN, `${id}.js`)));
  const run = (name: string): any => {
    if (loaded[name]) return loaded[name]!.exports;
    const module = loaded[name] = { exports: {} };
    const file = join(BIN, `${name}.js`);
    new Script(readFileSync(file, 'utf8'), { filename: file }).runInThisContext()(module.exports, (id: string) => (ours(id) ? run(id) : require(id)), module, file, BIN);
    return module.exports;
  };
  return { core: run('core'), viewer: run('viewer') };
}
const shape = (m: Record<string, unknown>) => Object.fromEntries(Object.keys(m).sort().map((k) => {
  const v = m[k] as any;
  let s = typeof v;
  if (typeof v === 'function') s += `/${v.length}`;
  else if (v && typeof v === 'object') s += `/${JSON.stringify(v)}`;
  else s += `/${String(v)}`;
  return [k, s];
}));

test('the built core and viewer export what ticket.ts and viewer.ts do, with the same values', () => {
  const built = loadBuilt();
  expect(shape(built.core)).toEqual(shape(ticket as any));
  expect(shape(built.viewer)).toEqual(shape(viewer as any));
});
