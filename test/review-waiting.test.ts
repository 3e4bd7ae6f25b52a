// Hostile review of issue 18's "who is waiting" and "the numbers": the audit log as input to
// stats (a FIFO, a symlink, a gzip bomb among its rotated parts), who counts as us (an admin's
// address written in the forms the address parser reads), the From_ lines' local times read
// in another zone than they were written in. Real deliveries of the built file (fake sendmail),
// the CLI as a maintainer runs it.
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { createWriteStream, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { Store, addresses, mboxRecord, parseHead, readCloses, recordSide, resolveConfig } from '../ticket.ts';
import { BIN, FAKE_SENDMAIL, PRIVATE_ENV, deliver, mail, tempDir } from './harness.ts';

const ADMIN = 'max@tickets.example';

function setup(env: NodeJS.ProcessEnv = {}) {
  const root = tempDir('tm-rwait-');
  const tickets = join(root, 'tickets');
  const settings = ['--dir', tickets, '--domain', 'tickets.example', '--sendmail', FAKE_SENDMAIL, '--admin', ADMIN];
  const send = (recipient: string, message: string, sender = 'alice@customer.example') => {
    const r = deliver([...settings, '--recipient', recipient, '--sender', sender], message, env);
    expect(r, r.stderr).toMatchObject({ status: 0 });
  };
  const run = (args: string[], extra: NodeJS.ProcessEnv = {}, timeout = 60_000) =>
    spawnSync(process.execPath, [BIN, ...settings, ...args], { env: { ...PRIVATE_ENV, ...extra }, encoding: 'utf8', timeout });
  const state = join(tickets, '.ticket-mail');
  const store = new Store(resolveConfig({ dir: tickets, domain: 'tickets.example', admin: [ADMIN] }, {}, {}));
  return { root, tickets, state, settings, send, run, store };
}

/** A log line as audit() writes it: time, message-id, sender, recipient, action, ticket, outcome, warning. */
const logLine = (at: string, ticket: number, outcome: string) => `${at}\t<x@y>\ta@b.example\tticket-${ticket}-done@tickets.example\tclose\t${ticket}\t${outcome}\t-\n`;

describe('stats reads the audit log as a state file: never through a link, never a FIFO, bounded', () => {
  it('a FIFO among the log parts is skipped (it hung stats, and serve\'s /stats with every page, for good)', () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: 'one' }));
    execFileSync('mkfifo', [join(t.state, 'log.1')]);
    const r = t.run(['stats', '--json'], {}, 30_000);
    expect(r.error, 'stats hung on the FIFO').toBeUndefined();
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ open: 1, closesFrom: 'log' });
    rmSync(t.root, { recursive: true, force: true });
  }, 60_000);

  it('a symlinked log part is not followed (another file\'s lines are no closes of ours)', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: 'one' }));
    const elsewhere = join(t.root, 'elsewhere');
    writeFileSync(elsewhere, logLine('2026-01-05T10:00:00.000Z', 1, 'closed'));
    symlinkSync(elsewhere, join(t.state, 'log.1'));
    const closes = await readCloses(t.store);
    expect(closes?.get(1)).toBeUndefined(); // the real log holds the delivery's line, no close
    rmSync(join(t.state, 'log'));
    expect(await readCloses(t.store)).toBeUndefined(); // only the link is left: no log readable
    rmSync(t.root, { recursive: true, force: true });
  }, 60_000);

  it('a gzip bomb among the rotated parts costs bounded memory, and the other parts still count', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: 'one' }));
    writeFileSync(join(t.state, 'log.1'), logLine('2026-01-05T10:00:00.000Z', 1, 'closed') + logLine('2026-01-06T10:00:00.000Z', 1, 'reopened'));
    // 1 GiB of log lines that are no closes, gzipped to a few MB.
    const line = Buffer.from(logLine('2026-01-01T00:00:00.000Z', 7, 'filed'));
    const lines = Buffer.alloc(line.length * 16384, line);
    const total = 1 << 30;
    await pipeline(Readable.from((function* () { for (let n = 0; n < total; n += lines.length) yield lines; })()), createGzip({ level: 9 }),
      createWriteStream(join(t.state, 'log.2.gz')));
    expect(statSync(join(t.state, 'log.2.gz')).size).toBeLessThan(16 << 20);
    // The child's peak memory (ru_maxrss of the children, in KiB), as python measures it.
    const r = spawnSync('python3', ['-c', `
import resource, subprocess, sys
p = subprocess.run(sys.argv[1:], capture_output=True)
sys.stdout.write(str(p.returncode) + ' ' + str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) + '\\n' + p.stdout.decode())
`, process.execPath, BIN, ...t.settings, 'stats', '--json'], { env: PRIVATE_ENV, encoding: 'utf8', timeout: 120_000 });
    const [status, rss] = r.stdout.split('\n')[0]!.split(' ').map(Number);
    expect(status, r.stderr).toBe(0);
    expect(rss! / 1024, 'peak MB').toBeLessThan(400);
    const stats = JSON.parse(r.stdout.slice(r.stdout.indexOf('\n') + 1));
    expect(stats.closesFrom).toBe('log');
    expect((await readCloses(t.store))?.get(1)).toEqual([{ at: Date.parse('2026-01-05T10:00:00.000Z'), closed: true }, { at: Date.parse('2026-01-06T10:00:00.000Z'), closed: false }]);
    rmSync(t.root, { recursive: true, force: true });
  }, 180_000);
});

describe('who counts as us: every form of an admin\'s address that the address parser reads', () => {
  // delivery's own test of an admin (addresses(From)[0] in cfg.admins) and the list's agree:
  // the list's cheap pre-check for an admin's address in the From looked for it as one string.
  const cfg = resolveConfig({ dir: '/nonexistent', domain: 'tickets.example', admin: ['max@help.example', ADMIN] }, {}, {});
  const side = (from: string) => recordSide(parseHead(`From: ${from}\nSubject: Re\n\n`)!, 'max@help.example', cfg);
  for (const from of ['"max"@help.example', 'max(Max)@help.example', 'max@(home)help.example',
    '"max"@tickets.example', '"ticket-4"@tickets.example']) {
    it(`From: ${from}`, () => {
      expect(cfg.admins.includes(addresses(from)[0]!) || addresses(from)[0]!.endsWith('@tickets.example')).toBe(true); // the parser's reading
      expect(side(from)).toBe('us');
    });
  }
  for (const from of ['"max@help.example" <eve@evil.example>', 'Eve <eve@evil.example> (max@help.example)', 'eve@evil.example, max@help.example',
    'max@help.example.', '=?utf-8?q?max=40help.example?= <eve@evil.example>', 'Max <max@help.example.evil.example>', 'eve@help.example']) {
    it(`From: ${from} is not us`, () => expect(side(from)).toBe('them'));
  }
});

describe('the From_ lines\' times are UTC: read in any zone, a wait began before now', () => {
  // Delivery writes asctime in its own zone (the MTA's: the machine's, or Exim's timezone); a
  // maintainer whose shell says TZ=America/St_Johns (UTC-3:30) reads "Tue Dec  1 10:00:00" as
  // 13:30 UTC: a ticket that came a minute ago has waited "0s", waitedSeconds < 0, and stats'
  // time to close (the log's close is UTC) comes out negative. (mutt, for one, reads a From_
  // line's time as UTC: is_from() in its from.c, mutt_mktime(&tm, 0), and writes it local.) A fix
  // that does not depend on the reader: new From_ lines in UTC, read as UTC (records written
  // before in another zone then read off by that zone's offset, once: say so).
  it('a wait that began before now reads as before now, whatever the reader\'s TZ', () => {
    const t = setup({ TZ: 'UTC' });
    t.send('submit@tickets.example', mail({ subject: 'one' }));
    t.send('ticket-1-done@tickets.example', mail({ subject: 'done' }));
    t.send('submit@tickets.example', mail({ subject: 'two' }));
    const before = Date.now();
    for (const TZ of ['America/St_Johns', 'Pacific/Chatham', 'UTC']) {
      const r = t.run(['list', '--waiting', '--json'], { TZ });
      expect(r.status, r.stderr).toBe(0);
      const [row] = JSON.parse(r.stdout);
      expect(row.ticket).toBe(2);
      expect(row.waitedSeconds, TZ).toBeGreaterThanOrEqual(0);
      expect(Math.abs(Date.parse(row.waitingSince) - Date.parse(row.lastActivity)), `${TZ}: the From_ time against the file's mtime`).toBeLessThan(60_000);
      const s = t.run(['stats', '--json'], { TZ });
      expect(JSON.parse(s.stdout).timeToClose.medianSeconds, TZ).toBeGreaterThanOrEqual(0);
      expect(Date.parse(JSON.parse(s.stdout).oldestOpen[0].opened), TZ).toBeLessThanOrEqual(before);
    }
    rmSync(t.root, { recursive: true, force: true });
  }, 60_000);
});



describe('a record without a time in its From_ line: a read-on and a fresh read agree', () => {
  // scanRecords gives the first record without a time the file's mtime: the mtime of the read
  // that first saw it. When the ticket grows, the read-on keeps that old mtime, a fresh read (no
  // cache: another user, a deleted cache, a change of admins) takes the new one; and the mtime,
  // the file's last change, is the latest time there is: "opened" comes after the answer, and
  // stats' time to first answer is negative. A stable choice would be the time of the first later
  // record that has one (else the mtime), or the first message's Date.
  it.fails('opened is the same either way, and never after the first answer', () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: 'makes the folders' }));
    const path = join(t.tickets, '2');
    writeFileSync(path, `From alice@customer.example sometime\nFrom: Alice <alice@customer.example>\nSubject: hand-made\n\nhelp\n\n`, { mode: 0o600 });
    const old = new Date('2026-01-02T03:04:05.000Z');
    utimesSync(path, old, old);
    const first = JSON.parse(t.run(['list', '--json']).stdout).find((r: { ticket: number }) => r.ticket === 2);
    expect(first.opened).toBe(old.toISOString());
    t.send('ticket-2@tickets.example', mail({ from: `Max <${ADMIN}>`, subject: 'Re' }), ADMIN);
    const readOn = JSON.parse(t.run(['list', '--json']).stdout).find((r: { ticket: number }) => r.ticket === 2);
    rmSync(join(t.state, 'list-cache.json'));
    const fresh = JSON.parse(t.run(['list', '--json']).stdout).find((r: { ticket: number }) => r.ticket === 2);
    expect(fresh.firstAnswer).not.toBeNull();
    expect(Date.parse(fresh.opened)).toBeLessThanOrEqual(Date.parse(fresh.firstAnswer));
    expect(readOn).toEqual(fresh);
    rmSync(t.root, { recursive: true, force: true });
  }, 60_000);
});

describe('stats counts a close once, however often the log parts hold it', () => {
  // logrotate renames log to log.1 between stats' read of log and its read of log.1: the lines
  // of that moment are read twice. A close of a closed ticket is no close (nor is a reopen of an
  // open one): the count follows the ticket's state, not the lines.
  it('the same close line in log and log.1 (a rotation between the two reads) is one close', () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: 'one' }));
    t.send('ticket-1-done@tickets.example', mail({ subject: 'done' }));
    const log = readFileSync(join(t.state, 'log'), 'latin1');
    const close = log.split('\n').find((line) => line.split('\t')[6] === 'closed')!;
    writeFileSync(join(t.state, 'log.1'), `${close}\n`);
    const stats = JSON.parse(t.run(['stats', '--json']).stdout);
    expect(stats.closed).toBe(1);
    expect(stats.weeks.reduce((sum: number, w: { closed: number }) => sum + w.closed, 0)).toBe(1);
    expect(stats.timeToClose.tickets).toBe(1);
    rmSync(t.root, { recursive: true, force: true });
  }, 60_000);
});

describe('automatic mail, as the waiting rule reads it', () => {
  // whyAutomatic was made to decide whether we may send an automatic reply; any List-* header
  // counts there (no reply to a list). For who is waiting it hides a person's message: a
  // customer who answers through a list, or from a sales tool that puts List-Unsubscribe on
  // every mail, never makes the ticket wait on us. The waiting rule wants the marks of mail
  // no person wrote (Auto-Submitted, the null sender, a robot's address, X-Autoreply,
  // Precedence auto_reply), not those of mail sent to many.
  it('a customer\'s answer carrying List-Unsubscribe, or sent through a list, waits on us', () => {
    const t = setup();
    for (const [i, headers] of [['List-Unsubscribe: <mailto:unsub@crm.example>'], ['List-Id: <support.customer.example>', 'Precedence: list']].entries()) {
      t.send('submit@tickets.example', mail({ subject: `case ${i}` }));
      t.send(`ticket-${i + 1}@tickets.example`, mail({ from: `Max <${ADMIN}>`, subject: 'Re' }), ADMIN);
      t.send(`ticket-${i + 1}@tickets.example`, mail({ subject: 'Re: still broken', headers }));
    }
    const rows = JSON.parse(t.run(['list', '--json']).stdout);
    expect(rows.map((r: { waiting: string }) => r.waiting)).toEqual(['us', 'us']);
    rmSync(t.root, { recursive: true, force: true });
  }, 60_000);
});

describe('a wait and a close', () => {
  // The customer closed the ticket ("solved, thanks", to ticket-1-done@) a month ago and
  // reopened it an hour ago: nextFacts knows no close, so the wait runs from the closing
  // message, and list --waiting puts this ticket first with "30d". A closed span is nobody's
  // wait: the closing record (To or Cc naming the close address, or our note's recipient if it
  // recorded it) should end the wait as our answer does, without being an answer.
  it.fails('a ticket the customer closed and reopened has waited since the reopening', () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: 'makes the folders' }));
    const now = Date.now();
    const D = 86400_000;
    const record = (sender: string, at: number, message: string) => mboxRecord(Buffer.from(message), sender, 'ticket 2', new Date(at));
    writeFileSync(join(t.tickets, '2'), Buffer.concat([
      record('alice@customer.example', now - 40 * D, mail({ subject: 'help' })),
      record(ADMIN, now - 39 * D, mail({ from: `Max <${ADMIN}>`, subject: 'Re: help' })),
      record('alice@customer.example', now - 30 * D, mail({ to: 'ticket-2-done@tickets.example', subject: 'solved, thanks' })),
      record('alice@customer.example', now - 3600_000, mail({ to: 'ticket-2@tickets.example', subject: 'it is broken again' })),
    ]), { mode: 0o600 });
    const [row] = JSON.parse(t.run(['list', '--waiting', '--json']).stdout).filter((r: { ticket: number }) => r.ticket === 2);
    expect(row.waitedSeconds).toBeLessThan(2 * 3600);
    rmSync(t.root, { recursive: true, force: true });
  }, 60_000);
});
