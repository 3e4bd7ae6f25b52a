// The Bun builds (build.mjs --bun-only): the bytecode file run by bun, and the compiled executable. Each
// delivers, closes, reopens, lists, sends mail and serves pages exactly as the Node build does:
// the same inputs give the same exit statuses and output, the same files (bytes and modes) and
// the same mail. Bun comes from the npm registry, as in package.test.ts; without it every test
// here is skipped, saying why. Built once per run, into a temporary folder (the executable is
// ~110 MB).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { BIN, cgiWithBusyLog, FAKE_SENDMAIL, mail, PRIVATE_ENV, readableCopies, ROOT, stored, tempDir, toolFromNpm } from './harness.ts';
import { startServer } from './web.ts';

let bun: { path?: string; why?: string } = {};
let built = '';
beforeAll(() => {
  bun = toolFromNpm('bun', '.bin/bun');
  if (!bun.path) return;
  built = tempDir('tm-bun-');
  const r = spawnSync(process.execPath, [join(ROOT, 'build.mjs'), '--bun-only', '--exe', '--out', built], { cwd: ROOT, env: { ...process.env, BUN: bun.path }, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
}, 600_000);
afterAll(() => { if (built) rmSync(built, { recursive: true, force: true }); });

/** The test's Bun, or the test skipped with the reason printed. */
function needsBun(ctx: { skip: () => void }): string {
  if (!bun.path) {
    console.log(`skipped: ${bun.why}`);
    ctx.skip();
  }
  return bun.path!;
}

/** The three builds of one program, each as the command that runs it. */
const builds = (bunPath: string): Record<'node' | 'bytecode' | 'executable', string[]> => ({
  node: [process.execPath, BIN],
  bytecode: [bunPath, join(built, 'ticket-mail.js')],
  executable: [join(built, 'ticket-mail')],
});

interface Outcome { status: number | null; stdout: string; stderr: string }
const runWith = (command: string[], args: string[], input: string, env: NodeJS.ProcessEnv, cwd = ROOT): Outcome => {
  const r = spawnSync(command[0]!, [...command.slice(1), ...args], { input, env, cwd, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
};

/**
 * What varies from run to run and nothing else: times, the random part of the Message-IDs we
 * make (renamed in order of appearance, so that a reply still names its message), the run's
 * folder. Everything else must be byte for byte what the Node build wrote.
 */
function normalizer(root: string) {
  const random = new Map<string, string>();
  return (text: string) => text.split(root).join('<root>')
    .replace(/(ticket-mail\.[\w-]+\.)([0-9a-f]{16})@/g, (_, kind: string, hex: string) => {
      if (!random.has(hex)) random.set(hex, `<random ${random.size + 1}>`);
      return `${kind}${random.get(hex)}@`;
    })
    .replace(/^(From \S+) [A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}$/gm, '$1 <asctime>')
    .replace(/\b[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\b/g, '<date>')
    .replace(/\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\b/g, '<iso time>')
    .replace(/^\d{13}$/gm, '<ms>')
    .replace(/"(ino|mtimeMs)":[\d.]+/g, '"$1":<n>')
    .replace(/"facts":\[[^\]]*\]/g, (facts) => facts.replace(/\b\d{13}\b/g, '<ms>')); // the list's facts: times of From_ lines
}

/**
 * Every file and folder under `dir`: its mode and (normalized) contents. The message index names
 * its files by a hash of each Message-ID, random for the notes close and reopen write: it counts
 * as the list of its files' contents.
 */
function tree(dir: string, normalize: (text: string) => string): Record<string, string> {
  const entries: Record<string, string> = {};
  const index: string[] = [];
  const walk = (path: string) => {
    for (const name of readdirSync(path).sort()) {
      const full = join(path, name);
      const at = relative(dir, full);
      const st = lstatSync(full);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) { if (!at.startsWith('.ticket-mail/ids/')) entries[`${at}/`] = mode; walk(full); continue; }
      const text = normalize(readFileSync(full, 'latin1'));
      if (at.startsWith('.ticket-mail/ids/')) index.push(`${mode} ${text}`);
      else entries[at] = `${mode} ${text}`;
    }
  };
  walk(dir);
  entries['(message index)'] = index.sort().join('\n');
  return entries;
}

/** The mail the fake sendmail recorded, oldest first: its arguments and text. */
const sentIn = (dir: string, normalize: (text: string) => string) => readdirSync(dir).filter((n) => n.endsWith('.eml')).sort()
  .map((n) => normalize(`${readFileSync(join(dir, n.replace(/\.eml$/, '.args')), 'utf8')}\n${readFileSync(join(dir, n), 'utf8')}`));

const ENCODED_SUBJECT = '=?utf-8?q?Drucker_brennt_=E2=80=94_bitte_helfen?=';

/**
 * One ticket's life, as mail and as the maintainer's commands: new tickets (acknowledgement and
 * notification: mimetext; an encoded subject: postal-mime's header functions; a text part with an
 * unusual Content-Type: its full MIME parser), appends by address and by tag, a close refused,
 * a close, a reopen by mail, an MTA's retry, a ticket that does not exist, an empty message, then
 * close and reopen as commands (cac), list and show.
 */
function lifeOfATicket(command: string[]) {
  const root = tempDir('tm-bun-run-');
  const dir = join(root, 'tickets');
  const sent = join(root, 'sent');
  mkdirSync(sent);
  const env = { ...PRIVATE_ENV, HOME: root, XDG_CACHE_HOME: join(root, 'cache'), FAKE_SENDMAIL_DIR: sent };
  const common = ['--dir', dir, '--domain', 'tickets.example', '--admin', 'max@tickets.example'];
  const by = (recipient: string, sender = 'alice@customer.example') => [...common, '--recipient', recipient, '--sender', sender];
  const second = mail({ id: 'two@customer.example', subject: 'Re: printer', body: 'It still burns.\nFrom the left.\n' });
  const steps: Array<[string[], string]> = [
    [by('submit@tickets.example'), mail({ id: 'one@customer.example', subject: ENCODED_SUBJECT })],
    [by('ticket-1@tickets.example'), second],
    [by('submit@tickets.example'), mail({ id: 'three@customer.example', subject: 'Re: [issue1] printer', body: '>From the start.\n' })],
    [by('ticket-1-done@tickets.example', 'bob@elsewhere.example'), mail({ from: 'bob@elsewhere.example', id: 'four@elsewhere.example', subject: 'close it' })],
    [by('ticket-1-done@tickets.example'), mail({ id: 'five@customer.example', subject: 'Re: [issue1] thanks' })],
    [by('ticket-1@tickets.example'), mail({ id: 'six@customer.example', subject: 'Re: [issue1] again' })],
    [by('ticket-1@tickets.example'), second],
    [by('submit@tickets.example'), mail({ id: 'seven@customer.example', subject: 'odd part',
      headers: ['MIME-Version: 1.0', 'Content-Type: text/plain; name="a;b.txt"; charset=utf-8', 'Content-Transfer-Encoding: quoted-printable'], body: 'Gr=C3=BC=C3=9Fe\n' })],
    [by('ticket-99@tickets.example'), mail({ id: 'eight@customer.example', subject: 'lost' })],
    [by('ticket-1@tickets.example'), ''],
    [[...common, 'close', '2', '--as', 'max@tickets.example'], ''],
    [[...common, 'reopen', '2', '--as', 'max@tickets.example'], ''],
    [[...common, 'list', '--all', '--json'], ''],
    [[...common, 'show', '1', '--json'], ''],
  ];
  const normalize = normalizer(root);
  const outcomes = steps.map(([args, input]) => {
    const r = runWith(command, args, input, env);
    return { status: r.status, stdout: normalize(r.stdout), stderr: normalize(r.stderr) };
  });
  return { outcomes, files: tree(dir, normalize), sent: sentIn(sent, normalize), dir };
}

describe('the Bun builds deliver as the Node build does', () => {
  it('a ticket\'s life: the same exit statuses and output, files, modes and mail', (ctx) => {
    const programs = builds(needsBun(ctx));
    const node = lifeOfATicket(programs.node);
    // The Node build's run is the reference; it must itself have done what the steps ask.
    expect(node.outcomes.map((o) => o.status)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 65, 0, 0, 0, 0]);
    expect(node.files['.ticket-mail/log']!.split('\n').filter(Boolean).map((l) => l.split('\t')[6])).toEqual(
      ['created', 'appended', 'appended', 'close-refused', 'closed', 'reopened', 'duplicate', 'created', 'unmatched', 'closed', 'reopened']);
    expect(node.sent.length).toBeGreaterThanOrEqual(8);
    expect(node.files['1']!.slice(0, 4)).toBe('600 ');
    expect(node.files['archived/']).toBe('700');
    expect(stored(join(node.dir, '1'))[1]!.toString()).toBe(mail({ id: 'two@customer.example', subject: 'Re: printer', body: 'It still burns.\nFrom the left.\n' }));
    for (const build of ['bytecode', 'executable'] as const) {
      const run = lifeOfATicket(programs[build]);
      expect(run.outcomes, build).toEqual(node.outcomes);
      expect(run.files, build).toEqual(node.files);
      expect(run.sent, build).toEqual(node.sent);
    }
  }, 120_000);

  // Under Bun the index keys come from its native hasher, under Node from ours: one folder may be
  // delivered to by both (an upgrade, a second MTA route), so each must find what the others filed.
  it('shares the message index: what one build filed is a copy for the others, and a reply to it threads, whatever its Message-ID', (ctx) => {
    const programs = builds(needsBun(ctx));
    const root = tempDir('tm-bun-index-');
    const dir = join(root, 'tickets');
    const env = { ...PRIVATE_ENV, HOME: root, XDG_CACHE_HOME: join(root, 'cache') };
    const log = () => (existsSync(join(dir, '.ticket-mail', 'log')) ? readFileSync(join(dir, '.ticket-mail', 'log'), 'utf8').trim().split('\n') : []);
    /** A delivery's route, ticket and outcome: its line in the audit log (the lines of its replies follow). */
    const deliverWith = (command: string[], message: string) => {
      const before = log().length;
      const r = runWith(command, ['--dir', dir, '--domain', 'tickets.example', '--recipient', 'submit@tickets.example', '--sender', 'alice@customer.example'], message, env);
      expect(r.status, r.stderr).toBe(0);
      const [, , , , route, ticket, outcome] = log()[before]!.split('\t');
      return `${route} ${ticket} ${outcome}`;
    };
    // A plain ID, one longer than a SHA-256 block, one with a comment (keyed as the ID), one in
    // UTF-8 and a field that is no ID (keyed as the whole field; nothing threads by them), and
    // none (keyed by the message's own hash).
    const variants: Array<{ id: string | null; field?: string; threads: boolean }> = [
      { id: 'plain@customer.example', threads: true },
      { id: 'grüße-ñ@customer.example', threads: false },
      { id: `${'long-'.repeat(30)}@customer.example`, threads: true },
      { id: null, field: 'Message-ID: <commented@customer.example> (sent by a robot)', threads: true },
      { id: null, field: 'Message-ID: no id at all', threads: false },
      { id: null, threads: false },
    ];
    let ticket = 0;
    for (const [first, command] of Object.entries(programs)) {
      variants.forEach(({ id, field, threads }, i) => {
        const ours = field?.replace('<', `<${first}-`).replace('no id', `no ${first} id`); // each build's first message its own
        const message = mail({ id: id === null ? null : `${first}-${id}`, subject: `case ${first} ${i}`, headers: ours ? [ours] : [] });
        expect(deliverWith(command, message), `${first} files case ${i}`).toBe(`create/submit ${++ticket} created`);
        const referenced = /<([^>]+)>/.exec(ours ?? '')?.[1] ?? `${first}-${id}`;
        for (const [other, otherCommand] of Object.entries(programs).filter(([name]) => name !== first)) {
          expect(deliverWith(otherCommand, message), `${other} gets case ${i} again, as ${first} filed it`).toBe(`create/submit ${ticket} duplicate`);
          if (!threads) continue;
          const reply = mail({ id: `reply-${other}-${i}-${first}@customer.example`, subject: 'no tag here', headers: [`In-Reply-To: <${referenced}>`] });
          expect(deliverWith(otherCommand, reply), `${other} threads a reply to case ${i}, as ${first} filed it`).toBe(`append/thread ${ticket} appended`);
        }
      });
    }
  }, 120_000);

  it('a config file and templates: found and used as by the Node build', (ctx) => {
    const programs = builds(needsBun(ctx));
    const results = Object.entries(programs).map(([build, command]) => {
      const root = tempDir('tm-bun-config-');
      const templates = join(root, 'templates');
      mkdirSync(templates);
      writeFileSync(join(templates, 'ack.txt'), 'Ticket {ticket} ({subject}) is ours now.\n');
      const sent = join(root, 'sent');
      mkdirSync(sent);
      const config = join(root, 'config.json');
      writeFileSync(config, `// comments are allowed\n${JSON.stringify({ dir: join(root, 'tickets'), domain: 'tickets.example', sendmail: FAKE_SENDMAIL, templates })}\n`);
      const env = { PATH: process.env.PATH, HOME: root, TICKET_MAIL_CONFIG: config, FAKE_SENDMAIL_DIR: sent };
      const r = runWith(command, ['--recipient', 'submit@tickets.example', '--sender', 'alice@customer.example'], mail({ id: 'config@customer.example' }), env);
      const normalize = normalizer(root);
      return { build, status: r.status, stderr: r.stderr, sent: sentIn(sent, normalize), files: tree(join(root, 'tickets'), normalize) };
    });
    expect(results[0]!.sent.join('')).toContain('Ticket 1 (Printer on fire) is ours now.');
    for (const r of results) expect({ ...r, build: 'node' }).toEqual({ ...results[0]!, status: 0, stderr: '' });
  }, 60_000);

  it('gives every file and folder its mode as Node does, whatever the umask', (ctx) => {
    const programs = builds(needsBun(ctx));
    const trees = Object.values(programs).map((command) => {
      const root = tempDir('tm-bun-umask-');
      const dir = join(root, 'tickets');
      const r = spawnSync('sh', ['-c', 'umask 000; exec "$@"', 'sh', ...command, '--dir', dir, '--domain', 'tickets.example', '--recipient', 'submit@tickets.example', '--sender', 'alice@customer.example'],
        { input: mail({ id: 'umask@customer.example' }), env: { ...PRIVATE_ENV, HOME: root }, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      return tree(dir, normalizer(root));
    });
    expect(trees[0]!['1']!.slice(0, 4)).toBe('600 ');
    expect(trees[0]!['.ticket-mail/']).toBe('700');
    for (const t of trees) expect(t).toEqual(trees[0]);
  }, 60_000);

  it('exits 75 on a read-only folder and a full disk, the mbox unchanged, saying what Node says', (ctx) => {
    const programs = builds(needsBun(ctx));
    const mnt = tempDir();
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', mnt]);
    if (mounted.status !== 0) {
      console.log(`skipped: cannot mount a small tmpfs here (${mounted.stderr.toString().trim()})`);
      return ctx.skip();
    }
    try {
      const env = { ...PRIVATE_ENV, XDG_CACHE_HOME: tempDir() };
      // A lock's temporary name holds the process id.
      const deliverTo = (command: string[], recipient: string, message: string) => {
        const r = runWith(command, ['--dir', mnt, '--domain', 'tickets.example', '--recipient', recipient, '--sender', 'alice@customer.example'], message, env);
        return { ...r, stderr: r.stderr.replace(/\.lock\.[^\s,)]+/g, '.lock.<name>') };
      };
      expect(deliverTo(programs.node, 'submit@tickets.example', mail()).status).toBe(0);
      const before = readFileSync(join(mnt, '1'));
      const full = Object.values(programs).map((command) => deliverTo(command, 'ticket-1@tickets.example', mail({ body: 'y'.repeat(400_000) })));
      expect(full[0]).toMatchObject({ status: 75, stderr: expect.stringMatching(/ENOSPC/) });
      for (const r of full) expect(r).toEqual(full[0]);
      expect(readFileSync(join(mnt, '1'))).toEqual(before);
      expect(spawnSync('mount', ['-o', 'remount,ro', mnt]).status).toBe(0);
      const readOnly = Object.values(programs).map((command) => deliverTo(command, 'ticket-1@tickets.example', mail()));
      expect(readOnly[0]).toMatchObject({ status: 75, stderr: expect.stringMatching(/EROFS/) });
      for (const r of readOnly) expect(r).toEqual(readOnly[0]);
      expect(readFileSync(join(mnt, '1'))).toEqual(before);
    } finally {
      spawnSync('umount', [mnt]);
    }
  }, 60_000);
});

describe('the Bun builds serve the history viewer', () => {
  it('a CGI page and a 404 byte for byte as the Node build, and serve\'s pages', async (ctx) => {
    const programs = builds(needsBun(ctx));
    const root = tempDir('tm-bun-viewer-');
    const dir = join(root, 'tickets');
    const env = { ...PRIVATE_ENV, HOME: root };
    expect(runWith(programs.node, ['--dir', dir, '--recipient', 'submit@tickets.example', '--sender', 'a@b.example'], mail({ subject: 'under <Bun>' }), env).status).toBe(0);
    const cgi = (command: string[], path: string) => runWith(command, ['--dir', dir, '--domain', 'tickets.example', 'cgi'], '',
      { ...env, GATEWAY_INTERFACE: 'CGI/1.1', REQUEST_METHOD: 'GET', SCRIPT_NAME: '', PATH_INFO: path, AUTH_TYPE: 'Basic', REMOTE_USER: 'reader' });
    for (const path of ['/1/', '/9/']) {
      const pages = Object.values(programs).map((command) => cgi(command, path));
      expect(pages[0]!.stdout).toMatch(path === '/1/' ? /^Status: 200 [^]*<bdi>under &lt;Bun&gt;<\/bdi>/ : /^Status: 404 /);
      for (const page of pages) expect(page).toEqual(pages[0]);
    }
    const bodies: string[] = [];
    for (const command of Object.values(programs)) {
      const server = await startServer(command[0]!, [...command.slice(1), '--dir', dir, 'serve', '--listen', '127.0.0.1:0'], env);
      try {
        const page = await fetch(`${server.url}1/`);
        expect(page.status).toBe(200);
        bodies.push(await page.text());
        expect(Buffer.from(await (await fetch(`${server.url}1/mbox`)).arrayBuffer()).equals(readFileSync(join(dir, '1')))).toBe(true);
      } finally { await server.stop(); }
    }
    expect(bodies[0]).toContain('<bdi>under &lt;Bun&gt;</bdi>');
    expect(bodies.slice(1)).toEqual([bodies[0], bodies[0]]);
  }, 120_000);
  // Bun reports no write waiting in a full pipe (process.getActiveResourcesInfo() is [] and
  // process.stderr.writableLength 0 while one waits: Bun 1.4.5), so the early end of a CGI reply
  // (runCgi) would drop a 500's error line there: under Bun the reply ends at the natural exit.
  it('a 500 page\'s error line reaches a log pipe that is full for a moment', (ctx) => {
    const programs = builds(needsBun(ctx));
    const root = tempDir('tm-bun-log-');
    const dir = join(root, 'tickets');
    const env = { ...PRIVATE_ENV, HOME: root };
    expect(runWith(programs.node, ['--dir', dir, '--recipient', 'submit@tickets.example', '--sender', 'a@b.example'], mail(), env).status).toBe(0);
    rmSync(join(dir, 'archived'), { recursive: true });
    writeFileSync(join(dir, 'archived'), 'not a folder\n'); // /archived/ is then a 500 (ENOTDIR)
    for (const [name, command] of Object.entries(programs)) {
      const r = cgiWithBusyLog([...command, '--dir', dir, '--domain', 'tickets.example', 'cgi'],
        { ...env, GATEWAY_INTERFACE: 'CGI/1.1', REQUEST_METHOD: 'GET', SCRIPT_NAME: '', PATH_INFO: '/archived/', AUTH_TYPE: 'Basic', REMOTE_USER: 'reader' });
      expect([name, r.status, r.stdout.slice(0, 12)]).toEqual([name, 0, 'Status: 500 ']);
      expect([name, r.stderr]).toEqual([name, expect.stringMatching(/^ticket-mail: viewer: ENOTDIR: not a directory/)]);
    }
  }, 60_000);
});

describe('what a Bun build loads and reads', () => {
  it('runs cac, mimetext, postal-mime and the viewer only where the Node build loads them', (ctx) => {
    const bunPath = needsBun(ctx);
    const work = tempDir('tm-bun-lazy-');
    const base = join(work, 'base');
    const env = { ...PRIVATE_ENV, HOME: work };
    const to = (dir: string, recipient: string, admin: string[] = []) => ['--dir', dir, '--domain', 'tickets.example', ...admin,
      '--recipient', recipient, '--sender', 'alice@customer.example'];
    const admin = ['--admin', 'max@tickets.example'];
    expect(runWith([process.execPath, BIN], to(base, 'submit@tickets.example'), mail({ id: 'first@customer.example' }), env).status).toBe(0);
    const runs: Record<string, (dir: string) => { args: string[]; input?: string; env?: NodeJS.ProcessEnv }> = {
      'an append': (dir) => ({ args: to(dir, 'ticket-1@tickets.example'), input: mail({ id: 'reply@customer.example' }) }),
      'an append by its tag': (dir) => ({ args: to(dir, 'submit@tickets.example'), input: mail({ id: 'tagged@customer.example', subject: 'Re: [issue1] printer' }) }),
      'a new ticket, acknowledged and notified': (dir) => ({ args: to(dir, 'submit@tickets.example', admin), input: mail({ id: 'new@customer.example' }) }),
      'a new ticket with an unusual text part': (dir) => ({ args: to(dir, 'submit@tickets.example', admin), input: mail({ id: 'odd@customer.example',
        headers: ['MIME-Version: 1.0', 'Content-Type: text/plain; name="a;b.txt"; charset=utf-8'], body: 'Hello.\n' }) }),
      'a CGI page': (dir) => ({ args: ['--dir', dir, '--domain', 'tickets.example', 'cgi'], env: { REQUEST_METHOD: 'GET', PATH_INFO: '/1/', AUTH_TYPE: 'Basic', REMOTE_USER: 'reader' } }),
      '--help': () => ({ args: ['--help'] }),
    };
    /** One run in a copy of the base folder: its outcome and the mail it sent. */
    const attempt = (command: string[], run: string, cache = '/dev/null') => {
      const root = tempDir('tm-bun-lazy-run-');
      const dir = join(root, 'tickets');
      const sent = join(root, 'sent');
      cpSync(base, dir, { recursive: true });
      mkdirSync(sent);
      const { args, input = '', env: more } = runs[run]!(dir);
      const normalize = normalizer(root);
      const r = runWith(command, args, input, { ...env, ...more, XDG_CACHE_HOME: cache, FAKE_SENDMAIL_DIR: sent });
      return { status: r.status, stdout: normalize(r.stdout), stderr: normalize(r.stderr), sent: sentIn(sent, normalize) };
    };
    // What the Node build loads for each: the modules whose code cache it saved (--help saves none: cac).
    const loadedByNode = Object.fromEntries(Object.keys(runs).map((run) => {
      const cache = tempDir('tm-bun-lazy-cache-');
      expect(attempt([process.execPath, BIN], run, cache).status).toBe(0);
      const saved = existsSync(join(cache, 'ticket-mail')) ? readdirSync(join(cache, 'ticket-mail')) : [];
      return [run, run === '--help' ? ['cac'] : saved.map((f) => /^[0-9a-f]{16}-(.+)-v[\d.]+-\w+\.v8$/.exec(f)![1]!).filter((m) => m !== 'core' && m !== 'core-cgi').sort()];
    }));
    expect(loadedByNode).toEqual({ 'an append': [], 'an append by its tag': ['postal-mime-headers'], 'a new ticket, acknowledged and notified': ['mimetext', 'postal-mime-headers'],
      'a new ticket with an unusual text part': ['mimetext', 'postal-mime', 'postal-mime-headers'], 'a CGI page': ['viewer'], '--help': ['cac'] });
    const healthy = Object.fromEntries(Object.keys(runs).map((run) => [run, attempt([bunPath, join(built, 'ticket-mail.js')], run)]));
    for (const [run, r] of Object.entries(healthy)) expect(r.status === 0 && !/cannot|could not/.test(`${r.stderr}${r.sent.join('')}`), run).toBe(true);
    // The same build from modules of which one fails when it runs: only the runs that need it notice.
    for (const poisoned of ['cac', 'mimetext', 'postal-mime', 'postal-mime-headers', 'viewer']) {
      const tree = join(work, poisoned);
      cpSync(join(ROOT, 'dist', 'bin'), join(tree, 'dist', 'bin'), { recursive: true });
      writeFileSync(join(tree, 'dist', 'bin', `${poisoned}.js`), `(function () { throw new Error('${poisoned} ran'); })`);
      const made = spawnSync(process.execPath, [join(ROOT, 'build.mjs'), '--bun-only'], { cwd: tree, env: { ...process.env, BUN: bunPath }, encoding: 'utf8' });
      expect(made.status, made.stderr).toBe(0);
      for (const run of Object.keys(runs)) {
        const r = attempt([bunPath, join(tree, 'dist', 'bun', 'ticket-mail.js')], run);
        // A part the MIME parser cannot decode is said so in the mail, not on stderr.
        const notice = /cannot load (\S+) \(\1 ran\)|(\(the message could not be decoded)/.exec(`${r.stderr}${r.sent.join('')}`);
        const noticed = notice ? notice[1] ?? 'postal-mime' : undefined;
        if (loadedByNode[run]!.includes(poisoned)) expect(noticed, `${run}, ${poisoned} poisoned`).toBe(poisoned);
        else expect(r, `${run}, ${poisoned} poisoned`).toEqual(healthy[run]);
      }
    }
  }, 120_000);

  it('writes no V8 code cache under Bun, not even for the single file', (ctx) => {
    const bunPath = needsBun(ctx);
    const cacheOf = (command: string[]) => {
      const root = tempDir('tm-bun-cache-');
      const r = runWith(command, ['--dir', join(root, 'tickets'), '--recipient', 'submit@tickets.example', '--sender', 'a@b.example'], mail(),
        { ...PRIVATE_ENV, HOME: root, XDG_CACHE_HOME: join(root, 'cache') });
      expect(r.status, r.stderr).toBe(0);
      return existsSync(join(root, 'cache', 'ticket-mail')) ? readdirSync(join(root, 'cache', 'ticket-mail')).length : 0;
    };
    expect(cacheOf([process.execPath, BIN])).toBeGreaterThan(0);
    expect(cacheOf([bunPath, BIN])).toBe(0);
    expect(cacheOf(builds(bunPath).executable)).toBe(0);
  });

  it('delivers from the source when the bytecode file is damaged or missing', (ctx) => {
    const bunPath = needsBun(ctx);
    const work = tempDir('tm-bun-jsc-');
    const dir = join(work, 'tickets');
    const env = { ...PRIVATE_ENV, HOME: work };
    for (const damage of ['flipped', 'missing']) {
      const copy = join(work, damage);
      mkdirSync(copy);
      cpSync(join(built, 'ticket-mail.js'), join(copy, 'ticket-mail.js'));
      const bytecode = readFileSync(join(built, 'ticket-mail.js.jsc'));
      if (damage === 'flipped') writeFileSync(join(copy, 'ticket-mail.js.jsc'), bytecode.map((b, i) => (i >= 8 && i < 24 ? b ^ 0xff : b)));
      const message = mail({ id: `${damage}@customer.example` });
      expect(runWith([bunPath, join(copy, 'ticket-mail.js')], ['--dir', dir, '--recipient', 'submit@tickets.example', '--sender', 'a@b.example'], message, env))
        .toEqual({ status: 0, stdout: '', stderr: '' });
      expect(stored(join(dir, damage === 'flipped' ? '1' : '2')).map(String)).toEqual([message]);
    }
  });

  it('the executable reads no .env from the folder it runs in (bun itself would)', (ctx) => {
    const programs = builds(needsBun(ctx));
    const cwd = tempDir('tm-bun-env-');
    const elsewhere = join(cwd, 'elsewhere');
    expect(runWith(programs.node, ['--dir', elsewhere, '--recipient', 'submit@tickets.example', '--sender', 'a@b.example'], mail(), PRIVATE_ENV).status).toBe(0);
    writeFileSync(join(cwd, '.env'), `TICKET_MAIL_DIR=${elsewhere}\n`);
    const list = (command: string[]) => runWith(command, ['list'], '', { ...PRIVATE_ENV, HOME: join(cwd, 'home') }, cwd);
    expect(list(programs.bytecode).stdout).toMatch(/\n1 +open/); // bun's own default: why the pipe should run the executable
    expect(list(programs.executable)).toEqual(list(programs.node));
    expect(list(programs.node).stdout).not.toMatch(/\n1 +open/);
  });
});

describe('ticket.ts compiled by bun build --compile', () => {
  it('runs as the program it is (argv[1] is a virtual /$bunfs path), and a module importing it runs nothing', (ctx) => {
    const bunPath = needsBun(ctx);
    const work = tempDir('tm-bun-direct-');
    const exe = join(work, 'ticket-mail');
    const made = spawnSync(bunPath, ['build', '--compile', '--bytecode', join(ROOT, 'ticket.ts'), '--outfile', exe], { cwd: work, encoding: 'utf8' });
    try {
      expect(made.status, made.stderr).toBe(0);
      const dir = join(work, 'tickets');
      const message = mail({ id: 'compiled@customer.example' });
      expect(runWith([exe], ['--dir', dir, '--recipient', 'submit@tickets.example', '--sender', 'a@b.example'], message, PRIVATE_ENV))
        .toEqual({ status: 0, stdout: '', stderr: '' });
      expect(stored(join(dir, '1')).map(String)).toEqual([message]);
      const imported = spawnSync(bunPath, ['-e', `await import(${JSON.stringify(join(ROOT, 'ticket.ts'))}); console.log('imported')`, '--', '--dir', dir, 'list'],
        { env: PRIVATE_ENV, encoding: 'utf8' });
      expect(imported).toMatchObject({ status: 0, stdout: 'imported\n' });
    } finally { rmSync(work, { recursive: true, force: true }); }
  }, 120_000);
});

// The executable is its own program: setup's launcher, the timer's chores, mutt's hooks and
// Postfix's policy service run it alone, with no program file after it (argv[1] inside it is a
// /$bunfs path that exists nowhere else). As root: setup makes the pipe's user.
const EXE_USER = 'tm-bunexe';
describe.skipIf(process.getuid?.() !== 0)('the executable set up as the MTA\'s pipe', () => {
  afterAll(() => { spawnSync('sh', ['-c', `id -u ${EXE_USER} >/dev/null 2>&1 && userdel ${EXE_USER}; getent group ${EXE_USER} >/dev/null && groupdel ${EXE_USER}`]); });

  it('setup writes a launcher that runs it alone; a delivery through it, check, muttrc and postfix-config name it alone', (ctx) => {
    needsBun(ctx);
    const base = tempDir('tm-bun-setup-');
    chmodSync(base, 0o755);
    chmodSync(built, 0o755); // the pipe's user runs the executable where it was built
    const exe = join(built, 'ticket-mail');
    const dir = join(base, 'tickets');
    const config = join(base, 'etc', 'config.json');
    const launcher = join(base, 'bin', 'deliver');
    const env = { PATH: process.env.PATH, TICKET_MAIL_CONFIG: '' };
    const run = (args: string[]) => runWith([exe], args, '', env);
    try {
      const setup = run(['setup', '--user', EXE_USER, '--home', join(base, 'home'), '--launcher', launcher, '--config', config, '--etc', join(base, 'etc'),
        '--mta', 'none', '--dir', dir, '--domain', 'tickets.example', '--admin', 'max@tickets.example', '--sendmail', readableCopies().sendmail]);
      expect(setup.status, setup.stderr).toBe(0);
      expect(setup.stdout).toContain(`wrote the launcher ${launcher} (runs ${exe})\n`);
      const script = readFileSync(launcher, 'utf8');
      expect(script).toMatch(new RegExp(`^node=${exe}\n# node is ticket-mail itself, compiled .*\nprogram=$`, "m"));
      // The MTA's side of a delivery: the launcher, as root, with the envelope.
      const message = mail({ id: 'through-the-launcher@customer.example' });
      const delivered = runWith([launcher], ['--recipient', 'submit@tickets.example', '--sender', 'alice@customer.example'], message, { PATH: process.env.PATH });
      expect(delivered, delivered.stderr).toMatchObject({ status: 0, stderr: '' });
      expect(stored(join(dir, '1')).map(String)).toEqual([message]);
      const check = run(['check', '--config', config]);
      expect(check.stdout).not.toMatch(/program|\/\$bunfs/);
      const hooks = run(['muttrc', '--config', config]);
      expect(hooks.status, hooks.stderr).toBe(0);
      expect(hooks.stdout).toContain(`<shell-escape>'${exe}' 'close' '1' `);
      expect(hooks.stdout).toContain(`set editor=\\"'${exe}' 'draft' `);
      const postfix = run(['postfix-config', '--config', config]);
      expect(postfix.stdout).toMatch(new RegExp(`argv=${exe} postfix-policy --config ${config}\n`));
      // The launcher's own word when the executable is gone: 75, and it names what it could not run.
      rmSync(join(base, 'moved'), { force: true });
      const gone = runWith(['sh', '-c', `sed 's|^node=.*|node=${join(base, 'moved')}|' ${launcher} > ${launcher}.gone && sh ${launcher}.gone --recipient ticket-1@tickets.example`], [], message, { PATH: process.env.PATH });
      expect(gone).toMatchObject({ status: 75, stderr: expect.stringMatching(new RegExp(`^ticket-mail: cannot run ${join(base, 'moved')} \\(exit status 127`)) });
    } finally { rmSync(base, { recursive: true, force: true }); }
  }, 120_000);
});
