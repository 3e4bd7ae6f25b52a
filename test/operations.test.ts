// What a sysadmin expects of a server program, each proven with the real tool: the timer (systemd's
// units, or the cron line) that runs prune and flush, log rotation by the real logrotate, pruning
// the reply counters without racing a delivery, and the man page against the real --help.
// Nothing is installed on the machine: every generated file is written into a temp folder.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import {
  chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, realpathSync, statSync, symlinkSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { join } from 'node:path';
import { Installation, MessageIndex, cronFile, logrotateSnippet, readMbox, systemdUnits } from '../ticket.ts';
import { BIN, PRIVATE_ENV, ROOT, deliver, deliverAsync, mail, readableCopies, sentMail, tempDir } from './harness.ts';

const sh = (command: string, env: NodeJS.ProcessEnv = PRIVATE_ENV) => spawnSync('/bin/sh', ['-c', command], { encoding: 'utf8', env });
const has = (tool: string) => sh(`command -v ${tool}`).status === 0;

/**
 * Whether a test must be skipped for want of a tool, saying why. Under CI the tools are there
 * (.ci/run installs them): a missing one fails the test with that sentence instead, unless it
 * is `optional` (not installed by .ci/run).
 */
function lacks(tools: string[], install: string, optional = false): string | undefined {
  const missing = tools.filter((t) => !has(t));
  if (!missing.length) return undefined;
  const why = `missing ${missing.join(', ')} (apt-get install ${install})`;
  if (process.env.CI === 'true' && !optional) return undefined;
  console.log(`skipped: ${why}`);
  return why;
}
const needs = (tools: string[], install: string) => {
  const missing = tools.filter((t) => !has(t));
  if (missing.length) throw new Error(`missing ${missing.join(', ')} (apt-get install ${install})`);
};

const isRoot = process.getuid?.() === 0;
/** The pipe's user the generated files name: as root an unprivileged system user, else ourselves. */
const USER = isRoot ? 'daemon' : userInfo().username;
const UID = Number(sh(`id -u ${USER}`).stdout.trim());
const GROUP = sh(`id -gn ${USER}`).stdout.trim();
/** Runs a command line as USER, as cron and systemd's User= do. */
const asUser = (command: string, env: NodeJS.ProcessEnv) => (isRoot
  ? spawnSync('runuser', ['-u', USER, '--', '/bin/sh', '-c', command], { encoding: 'utf8', env })
  : spawnSync('/bin/sh', ['-c', command], { encoding: 'utf8', env }));

const HOUR = 3600_000;

/**
 * A tickets folder owned by USER, with the config file a setup would write (the fake sendmail),
 * and a folder the fake sendmail records into that USER can write.
 */
function installed() {
  const base = tempDir('tm-ops-');
  chmodSync(base, 0o755);
  const tickets = join(base, 'tickets');
  const sent = join(base, 'sent');
  mkdirSync(tickets, { mode: 0o700 });
  mkdirSync(sent, { mode: 0o777 });
  chmodSync(sent, 0o777);
  if (isRoot) chownSync(tickets, UID, -1);
  const config = join(base, 'config.json');
  writeFileSync(config, JSON.stringify({ dir: tickets, domain: 'tickets.example', sendmail: readableCopies().sendmail }), { mode: 0o644 });
  const state = join(tickets, '.ticket-mail');
  const inst: Installation = { user: USER, home: '/nonexistent', launcher: join(base, 'unused'), config, node: process.execPath, program: readableCopies().bin };
  /** A delivery as the MTA runs it (as root it becomes the folder's owner, USER). */
  const send = (from: string, message: string, args: string[] = []) =>
    deliver(['--config', config, '--recipient', 'submit@tickets.example', '--sender', from, ...args], message, { FAKE_SENDMAIL_DIR: sent });
  return { base, tickets, sent, config, state, inst, send, env: { ...PRIVATE_ENV, FAKE_SENDMAIL_DIR: sent } };
}

/** A reply counter as withinReplyLimit writes it: one time (ms) a line. */
function plantCounter(state: string, address: string, times: number[]): string {
  const folder = join(state, 'replies');
  mkdirSync(folder, { recursive: true, mode: 0o700 });
  const path = join(folder, MessageIndex.key(address));
  writeFileSync(path, times.join('\n'), { mode: 0o600 });
  if (isRoot) for (const owned of [state, folder, path]) chownSync(owned, UID, -1);
  return path;
}

describe('the timer: prune and flush on a schedule, as the pipe\'s user', () => {
  // The command lines exactly as the generated files give them to cron and to systemd.
  const cronCommand = (text: string) => {
    const line = text.split('\n').find((l) => /^\S+ \S+ \S+ \S+ \S+ /.test(l) && !l.startsWith('#'))!;
    const [minute, hour, day, month, weekday, user, ...command] = line.split(' ');
    expect([minute, hour, day, month, weekday, user]).toEqual(['*/10', '*', '*', '*', '*', USER]);
    // What cron hands to /bin/sh: up to the first unescaped % (the rest is the command's stdin), \% as %.
    return command.join(' ').split(/(?<!\\)%/)[0]!.replace(/\\%/g, '%');
  };
  // ExecStartPre= then ExecStart=, as systemd runs them; "-" (failure ignored) is systemd's, not the command's.
  const execStarts = (service: string) => [...service.matchAll(/^ExecStartPre=-?(.*)$/gm), ...service.matchAll(/^ExecStart=(.*)$/gm)].map((m) => m[1]!);

  it.each(['cron', 'systemd'] as const)('%s: the kept mail is sent through the config file\'s sendmail, the outbox emptied, old counters pruned', (kind) => {
    const t = installed();
    // The runtime under a name cron would cut at its %, unless escaped.
    const node = join(t.base, 'node%d');
    symlinkSync(process.execPath, node);
    const inst = { ...t.inst, node: kind === 'cron' ? node : process.execPath };
    expect(t.send('alice@customer.example', mail({ subject: 'kept' }), ['--sendmail', join(t.base, 'no-sendmail')]).status).toBe(0);
    const outbox = join(t.state, 'outbox');
    expect(readMbox(readFileSync(outbox)).map((r) => r.note)).toEqual(['outbox ack alice@customer.example']);
    const stale = plantCounter(t.state, 'bob@customer.example', [Date.now() - 2 * HOUR]);
    const alice = join(t.state, 'replies', MessageIndex.key('alice@customer.example')); // counted by the delivery just now
    const commands = kind === 'cron' ? [cronCommand(cronFile(inst))] : execStarts(systemdUnits(inst).service);
    expect(commands).toHaveLength(kind === 'cron' ? 1 : 2);
    for (const command of commands) {
      const r = asUser(command, t.env);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
    }
    expect(sentMail(t.sent).map((m) => [m.recipients, m.headers.get('subject')])).toEqual([[['alice@customer.example'], ['[issue1] kept']]]);
    expect(readFileSync(outbox, 'utf8')).toBe('');
    expect([existsSync(stale), existsSync(alice)]).toEqual([false, true]);
    if (isRoot) expect(statSync(outbox).uid).toBe(UID); // written as the pipe's user, not root
  });

  it('cron: the outbox is kept and the failure is left for check when sendmail fails; nothing is printed but errors', () => {
    const t = installed();
    expect(t.send('alice@customer.example', mail(), ['--sendmail', join(t.base, 'no-sendmail')]).status).toBe(0);
    const r = asUser(cronCommand(cronFile(t.inst)), { ...t.env, FAKE_SENDMAIL_MODE: 'fail' });
    expect([r.stdout, r.stderr]).toEqual(['', '']);
    expect(readMbox(readFileSync(join(t.state, 'outbox')))).toHaveLength(1);
  });

  // Only where systemd-analyze exists: installing systemd for a test would be too much.
  const noAnalyze = lacks(['systemd-analyze'], 'systemd', true);
  it.skipIf(!!noAnalyze)('systemd-analyze verify accepts the units, also for paths systemd must quote', () => {
    const t = installed();
    const units = join(t.base, 'units');
    mkdirSync(units);
    const odd = join(t.base, 'my node %i $HOME');
    symlinkSync(process.execPath, odd);
    const verify = (inst: Installation) => {
      const { service, timer } = systemdUnits(inst);
      writeFileSync(join(units, 'ticket-mail-flush.service'), service);
      writeFileSync(join(units, 'ticket-mail-flush.timer'), timer);
      return spawnSync('systemd-analyze', ['verify', join(units, 'ticket-mail-flush.service'), join(units, 'ticket-mail-flush.timer')], { encoding: 'utf8' });
    };
    for (const node of [process.execPath, odd]) {
      const r = verify({ ...t.inst, node });
      expect([r.status, r.stderr], node).toEqual([0, '']);
    }
    // The check can fail: a runtime that is not there.
    expect(verify({ ...t.inst, node: join(t.base, 'no-node') }).status).not.toBe(0);
  });
});

describe.skipIf(!isRoot)('setup', () => {
  it('writes the timer (systemd\'s where it runs, else cron\'s) and the logrotate snippet for its installation, under --etc', () => {
    const t = installed();
    const etc = join(t.base, 'etc');
    const launcher = join(t.base, 'bin', 'ticket-mail-deliver');
    const r = spawnSync(process.execPath, [readableCopies().bin, 'setup', '--user', USER, '--launcher', launcher, '--config', t.config, '--etc', etc,
      '--mta', 'none', '--dir', t.tickets, '--domain', 'tickets.example'], { encoding: 'utf8', env: PRIVATE_ENV });
    expect(r.status, r.stderr).toBe(0);
    const inst = { ...t.inst, launcher, program: realpathSync(readableCopies().bin) };
    const systemd = existsSync('/run/systemd/system');
    const expected: Array<[string, string]> = [
      ...(systemd ? [['systemd/system/ticket-mail-flush.service', systemdUnits(inst).service], ['systemd/system/ticket-mail-flush.timer', systemdUnits(inst).timer]] as Array<[string, string]>
        : [['cron.d/ticket-mail', cronFile(inst)] as [string, string]]),
      ['logrotate.d/ticket-mail', logrotateSnippet(join(t.tickets, '.ticket-mail', 'log'), USER, GROUP)],
    ];
    for (const [path, text] of expected) {
      expect(readFileSync(join(etc, path), 'utf8')).toBe(text);
      const st = statSync(join(etc, path));
      expect([path, st.uid, st.mode & 0o777]).toEqual([path, 0, 0o644]); // cron and logrotate refuse files others may write
      expect(r.stdout).toContain(`wrote ${join(etc, path.replace(/\.(service|timer)$/, '.{service,timer}'))}`);
    }
  });
});

const noLogrotate = lacks(['logrotate'], 'logrotate');
describe.skipIf(!!noLogrotate)('log rotation by the real logrotate', () => {
  it('rotates the audit log under deliveries: a fresh log as the pipe\'s user, mode 0600, the old ones kept and compressed, no line lost or split', async () => {
    needs(['logrotate'], 'logrotate');
    const t = installed();
    const log = join(t.state, 'log');
    const conf = join(t.base, 'logrotate.conf');
    writeFileSync(conf, logrotateSnippet(log, USER, GROUP), { mode: 0o644 });
    const rotate = () => spawnSync('logrotate', ['-f', '-s', join(t.base, 'logrotate.state'), conf], { encoding: 'utf8' });
    const ids: string[] = [];
    // Each from a sender of its own: the reply limit's "held" lines would be log lines too.
    const sender = () => `c${ids.length}@customer.example`; // the next message's
    const message = () => { const from = sender(); const id = `rot-${ids.length}@customer.example`; ids.push(`<${id}>`); return mail({ id, from }); };
    for (let i = 0; i < 3; i++) expect(t.send(sender(), message()).status).toBe(0);
    // A rotation while deliveries run: each delivery's line lands whole in the old log or the new one.
    const running = Array.from({ length: 12 }, () => deliverAsync(['--config', t.config, '--recipient', 'submit@tickets.example',
      '--sender', sender()], message(), { FAKE_SENDMAIL_DIR: t.sent }));
    while (readFileSync(log, 'utf8').split('\n').length < 6) await new Promise((r) => setTimeout(r, 10));
    const first = rotate();
    expect([first.status, first.stderr]).toEqual([0, '']);
    expect((await Promise.all(running)).map((r) => r.status)).toEqual(Array(12).fill(0));
    expect(t.send(sender(), message()).status).toBe(0);
    // The log the next delivery made: the pipe's user's, private.
    const fresh = statSync(log);
    expect([fresh.uid, fresh.mode & 0o777]).toEqual([UID, 0o600]);
    const second = rotate();
    expect([second.status, second.stderr]).toEqual([0, '']);
    // delaycompress: the newest rotated log stays plain (a delivery may still write to it), the older one is compressed.
    expect(readdirSync(t.state).filter((n) => n.startsWith('log')).sort()).toEqual(['log.1', 'log.2.gz']); // nocreate: no empty log
    for (const name of ['log.1', 'log.2.gz']) {
      const st = statSync(join(t.state, name));
      expect([name, st.uid, st.mode & 0o777]).toEqual([name, UID, 0o600]);
    }
    expect(t.send(sender(), message()).status).toBe(0);
    const text = spawnSync('gzip', ['-dc', join(t.state, 'log.2.gz')], { encoding: 'utf8' }).stdout
      + readFileSync(join(t.state, 'log.1'), 'utf8') + readFileSync(log, 'utf8');
    const lines = text.split('\n');
    expect(lines.pop()).toBe('');
    for (const line of lines) expect(line).toMatch(/^[^\t]+(\t[^\t]*){7}$/);
    expect(lines.map((l) => l.split('\t')[1]).sort()).toEqual([...ids].sort());
  });
});

describe('prune: the reply counters', () => {
  const prune = (tickets: string, env: NodeJS.ProcessEnv = {}) => deliver(['prune', '--dir', tickets], '', env);

  it('removes counters with no reply in the last hour, keeps the others, leaves locks, and never follows what is not a plain file', () => {
    const t = installed();
    const now = Date.now();
    const old = plantCounter(t.state, 'old@customer.example', [now - 3 * HOUR, now - HOUR - 60_000]);
    const damaged = plantCounter(t.state, 'damaged@customer.example', []);
    writeFileSync(damaged, 'not a time\n');
    const recent = plantCounter(t.state, 'recent@customer.example', [now - 10 * 60_000]);
    const mixed = plantCounter(t.state, 'mixed@customer.example', [now - 5 * HOUR, now - 60_000]);
    const folder = join(t.state, 'replies');
    // A counter's name that is a symlink to a file (with old times) elsewhere, and one that is a FIFO.
    const target = join(t.base, 'elsewhere');
    writeFileSync(target, String(now - 5 * HOUR));
    const link = join(folder, MessageIndex.key('link@customer.example'));
    symlinkSync(target, link);
    const fifo = join(folder, MessageIndex.key('fifo@customer.example'));
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const leftover = join(folder, `${MessageIndex.key('gone@customer.example')}.lock.${hostname()}.999999999.x`);
    writeFileSync(leftover, 'ticket-mail 999999999 host wait\n');
    const r = prune(t.tickets);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('removed 2, kept 2\n');
    expect(r.stderr.trim().split('\n').sort()).toEqual([
      `ticket-mail: left alone: ${fifo} is not a plain file (not a regular file)`,
      `ticket-mail: left alone: ${link} is not a plain file (a symlink)`,
    ].sort());
    expect([old, damaged, recent, mixed].map(existsSync)).toEqual([false, false, true, true]);
    expect([lstatSync(link).isSymbolicLink(), readFileSync(target, 'utf8'), lstatSync(fifo).isFIFO(), existsSync(leftover)])
      .toEqual([true, String(now - 5 * HOUR), true, true]);
    expect(readdirSync(folder).filter((n) => n.endsWith('.lock'))).toEqual([]); // its own locks released
    // Nothing left to do: nothing removed, exit 0 once the planted names are gone.
    unlinkSync(link); unlinkSync(fifo);
    expect(prune(t.tickets)).toMatchObject({ status: 0, stdout: 'removed 0, kept 2\n', stderr: '' });
  });

  it('refuses a replies folder that is a symlink, and touches nothing behind it', () => {
    const t = installed();
    const elsewhere = join(t.base, 'elsewhere');
    mkdirSync(elsewhere);
    const counter = join(elsewhere, MessageIndex.key('old@customer.example'));
    writeFileSync(counter, String(Date.now() - 5 * HOUR));
    mkdirSync(t.state, { mode: 0o700 });
    if (isRoot) chownSync(t.state, UID, -1);
    symlinkSync(elsewhere, join(t.state, 'replies'));
    const r = prune(t.tickets);
    expect([r.status, r.stderr]).toEqual([1, `ticket-mail: ${join(t.state, 'replies')} is not a folder\n`]);
    expect(existsSync(counter)).toBe(true);
  });

  it('takes the counter\'s lock: with a delivery counting a reply to the same address, the new reply is never lost', async () => {
    const t = installed();
    const counter = plantCounter(t.state, 'alice@customer.example', [Date.now() - 2 * HOUR]);
    // The counter's lock, held here by a live process: the delivery and prune both wait for it.
    const lock = `${counter}.lock`;
    writeFileSync(lock, `ticket-mail ${process.pid} ${hostname()} wait\n`);
    const delivery = deliverAsync(['--config', t.config, '--recipient', 'submit@tickets.example', '--sender', 'alice@customer.example'],
      mail({ subject: 'counted' }), { FAKE_SENDMAIL_DIR: t.sent });
    let pruned = false;
    const pruning = deliverAsync(['prune', '--config', t.config], '').finally(() => { pruned = true; });
    // Each waiter leaves its hitching post beside the lock (see takeLock); prune must not finish meanwhile.
    const waiters = () => readdirSync(join(t.state, 'replies')).filter((n) => n.startsWith(`${MessageIndex.key('alice@customer.example')}.lock.`)).length;
    while (waiters() < 2 && !pruned) await new Promise((r) => setTimeout(r, 10));
    expect(pruned).toBe(false);
    expect(readFileSync(counter, 'utf8')).toMatch(/^\d+$/); // the old time, untouched while the lock is held
    unlinkSync(lock);
    const [delivered, prunedRun] = await Promise.all([delivery, pruning]);
    expect(delivered.status, delivered.stderr).toBe(0);
    expect(prunedRun.status, prunedRun.stderr).toBe(0);
    expect(sentMail(t.sent).map((m) => m.recipients)).toEqual([['alice@customer.example']]);
    // Whichever got the lock first, the reply just sent is counted, and the old one is not.
    const times = readFileSync(counter, 'utf8').split('\n').map(Number);
    expect(times).toHaveLength(1);
    expect(Date.now() - times[0]!).toBeLessThan(HOUR);
  });
});

const noMan = lacks(['man', 'groff'], 'man-db groff-base');
describe.skipIf(!!noMan)('the man page', () => {
  const page = join(ROOT, 'dist', 'ticket-mail.1');
  const help = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args, '--help'], { encoding: 'utf8', env: PRIVATE_ENV }).stdout;
  /** The "  term  description" lines of one section of the help. */
  const entries = (text: string, title: string) => (text.split(`\n${title}:\n`)[1] ?? '').split('\n\n')[0]!.split('\n')
    .map((line) => line.trim().split(/ {2,}/)).map((cells) => (cells.length === 1 ? ['', cells[0]!] : cells) as [string, string]);
  const words = (text: string) => text.replace(/\s+/g, ' ');

  it('renders with man and groff, without a warning, in ASCII and UTF-8 alike', () => {
    needs(['man', 'groff'], 'man-db groff-base');
    const lint = spawnSync('groff', ['-man', '-ww', '-z', page], { encoding: 'utf8' });
    expect([lint.status, lint.stderr]).toEqual([0, '']);
    for (const locale of ['C', 'C.UTF-8']) {
      const r = spawnSync('man', ['-l', page], { encoding: 'utf8', env: { ...PRIVATE_ENV, LC_ALL: locale, MANWIDTH: '80' } });
      expect([r.status, r.stderr]).toEqual([0, '']);
      expect(r.stdout).toMatch(/^TICKET-MAIL\(1\)/);
      expect(r.stdout).not.toMatch(/[^\n\x20-\x7e]/); // - and ' as typed, not as a hyphen or a curly quote
    }
  });

  it('has every command and option --help shows, with its words', () => {
    needs(['man', 'groff'], 'man-db groff-base');
    const r = spawnSync('man', ['-l', page], { encoding: 'utf8', env: { ...PRIVATE_ENV, LC_ALL: 'C.UTF-8', MANWIDTH: '100' } });
    const man = words(r.stdout);
    const top = help();
    const commands = entries(top, 'Commands');
    expect(commands.length).toBeGreaterThan(15);
    expect(commands.map(([name]) => name)).toContain('prune');
    for (const [name, description] of commands) {
      const usage = name ? /\$ (.*)/.exec(help(name.split(' ')[0]!))![1]!.trim() : 'ticket-mail [options] < message';
      expect(man).toContain(words(`${usage} ${description}`));
      for (const [flags, text] of entries(name ? help(name.split(' ')[0]!) : top, 'Options')) expect(man).toContain(words(`${flags} ${text}`));
    }
  });

  it('is what npm install -g installs for man to find', () => {
    needs(['man', 'groff'], 'man-db groff-base');
    const work = tempDir('tm-man-');
    const packed = spawnSync('npm', ['pack', '--ignore-scripts', '--pack-destination', work, '--json'], { cwd: ROOT, encoding: 'utf8' });
    expect(packed.status, packed.stderr).toBe(0);
    const prefix = join(work, 'prefix');
    const installed = spawnSync('npm', ['install', '-g', '--prefix', prefix, '--offline', '--no-audit', '--no-fund',
      join(work, JSON.parse(packed.stdout)[0].filename)], { encoding: 'utf8' });
    expect(installed.status, installed.stderr).toBe(0);
    const env = { ...PRIVATE_ENV, MANPATH: join(prefix, 'share', 'man'), LC_ALL: 'C.UTF-8', MANWIDTH: '80' };
    const where = spawnSync('man', ['-w', 'ticket-mail'], { encoding: 'utf8', env });
    expect(where.stdout.trim()).toBe(realpathSync(join(prefix, 'share', 'man', 'man1', 'ticket-mail.1'))); // npm links it
    expect(readFileSync(where.stdout.trim(), 'utf8')).toBe(readFileSync(page, 'utf8'));
    expect(spawnSync('man', ['ticket-mail'], { encoding: 'utf8', env }).stdout).toMatch(/^TICKET-MAIL\(1\)/);
  });
});
