// Review rv2 of 931466a..c41f528: findings as tests.
import { test, expect } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deliver, mail, searchFolder } from './harness.ts';

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
