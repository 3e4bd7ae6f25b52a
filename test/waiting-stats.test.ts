// Who is waiting, and the numbers (issue 18, part W): the facts of each ticket read from its
// records (From_ line times, From and the marks of automatic mail), kept in list's cache and read
// on when a ticket grew; `list --waiting`, `stats` and the viewer's list filter and /stats page.
// Tickets made by real deliveries of the built file (the fake sendmail), or written record by
// record with mboxRecord where a test needs times of its choosing; stats on a hand-computed
// fixture with exact numbers; the SVG parsed as XML; the pages in a headless Chromium.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Browser } from 'playwright-core';
import fc from 'fast-check';
import {
  LOOP_HEADER, Store, asctime, countedTickets, firstInOrder, fromLineTime, headEnd, headFields, isoTime, listTickets, mboxRecord, nextFacts, oneLine, parseHead, readCloses, resolveConfig,
  shortDuration, shownMailboxes, sparkline, statsOf, ticketStats, type CloseEvents, type TicketRow,
} from '../ticket.ts';
import { handle } from '../viewer.ts';
import { BIN, FAKE_SENDMAIL, PRIVATE_ENV, deliver, deliverAsync, mail, tempDir } from './harness.ts';
import { browserMissing, launchBrowser, settle, startServe, watchPage } from './web.ts';

const ADMIN = 'max@tickets.example';

/** A tickets folder with one admin, deliveries into it, the CLI over it, and a fresh (memoryless) list of it. */
function setup(admins = [ADMIN]) {
  const root = tempDir('tm-wait-');
  const tickets = join(root, 'tickets');
  const settings = ['--dir', tickets, '--domain', 'tickets.example', '--sendmail', FAKE_SENDMAIL, ...admins.flatMap((a) => ['--admin', a])];
  const send = (recipient: string, message: string, sender = 'alice@customer.example') => {
    const r = deliver([...settings, '--recipient', recipient, '--sender', sender], message);
    expect(r, r.stderr).toMatchObject({ status: 0 });
  };
  const cli = (args: string[], extra: string[] = []) => {
    const r = spawnSync(process.execPath, [BIN, ...settings, ...extra, ...args], { env: PRIVATE_ENV, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout;
  };
  const json = (args: string[], extra: string[] = []) => JSON.parse(cli([...args, '--json'], extra));
  const config = (list = admins) => resolveConfig({ dir: tickets, domain: 'tickets.example', admin: list }, {}, {});
  const store = new Store(config());
  let aliases = 0;
  /** What a process with no memory and no cache lists: the same folder through a new path, its cache never read. */
  const truth = (which: 'open' | 'closed' | 'all' = 'all') => {
    const alias = join(root, `alias${aliases++}`);
    mkdirSync(alias);
    symlinkSync(tickets, join(alias, 't'));
    const cfg = resolveConfig({ dir: join(alias, 't'), domain: 'tickets.example', admin: admins }, {}, {});
    rmSync(join(tickets, '.ticket-mail', 'list-cache.json'), { force: true });
    return listTickets(new Store(cfg), which, false);
  };
  return { root, tickets, settings, send, cli, json, store, config, truth };
}

/** The times of a ticket's records, read from its From_ lines independently of fromLineTime (python3, UTC as written). */
function recordTimes(path: string): string[] {
  const r = spawnSync('python3', ['-c', `
import sys, time, calendar, datetime
for line in open(sys.argv[1], encoding='latin-1'):
    if line.startswith('From '):
        t = calendar.timegm(time.strptime(' '.join(line.split()[2:7]), '%a %b %d %H:%M:%S %Y'))
        print(datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.000Z'))
`, path], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trim().split('\n');
}

/** The fields of a row that the waiting view shows. */
const facts = (r: TicketRow | undefined) => r && { waiting: r.waiting, waitingSince: r.waitingSince, firstAnswer: r.firstAnswer, opened: r.opened, lastMessage: r.lastMessage };
const byNumber = (rows: TicketRow[], n: number) => rows.find((r) => r.ticket === n);

describe('the waiting rule, for each kind of last sender (real deliveries)', () => {
  it('customer, admin, our address, automatic mail, a bounce, a reopen, a close, a forged admin', () => {
    const t = setup();
    const customer = (n: number, extra: Parameters<typeof mail>[0] = {}) => t.send(`ticket-${n}@tickets.example`, mail({ subject: `Re: ${n}`, ...extra }));
    const admin = (n: number) => t.send(`ticket-${n}@tickets.example`, mail({ from: `Max <${ADMIN}>`, subject: `Re: ${n}` }), ADMIN);
    for (let n = 1; n <= 8; n++) t.send('submit@tickets.example', mail({ subject: `ticket ${n}` }));
    // 1: only the customer's message: waiting on us since it.
    admin(2); // 2: our answer last
    admin(3); customer(3); customer(3); // 3: the customer wrote twice after our answer: waiting since the first
    admin(4); customer(4, { headers: ['Auto-Submitted: auto-replied'], subject: 'Out of office' }); // 4: a vacation reply after our answer
    admin(5); t.send('ticket-5@tickets.example', mail({ from: 'Mail Delivery System <MAILER-DAEMON@customer.example>', subject: 'Undelivered' }), ''); // 5: a bounce
    t.send('ticket-6@tickets.example', mail({ from: 'Ticket 6 <ticket-6@tickets.example>', subject: 'Re: 6' })); // 6: from one of our addresses
    admin(7); t.send('ticket-7-done@tickets.example', mail({ subject: 'done' })); customer(7); // 7: closed, then reopened by the customer
    t.send('ticket-8-done@tickets.example', mail({ subject: 'done' })); // 8: closed
    // 9: a forged admin From (the known limit: it looks answered, this view only)
    t.send('submit@tickets.example', mail({ subject: 'ticket 9' }));
    t.send('ticket-9@tickets.example', mail({ from: `"Max" <${ADMIN}>`, subject: 'Re: 9' }), 'eve@evil.example');
    const rows = t.json(['list', '--all']) as TicketRow[];
    const times = (n: number, place = '') => recordTimes(join(t.tickets, place, String(n)));
    expect(facts(byNumber(rows, 1))).toMatchObject({ waiting: 'us', waitingSince: times(1)[0], firstAnswer: null });
    expect(facts(byNumber(rows, 2))).toMatchObject({ waiting: 'them', waitingSince: null, firstAnswer: times(2)[1] });
    expect(facts(byNumber(rows, 3))).toMatchObject({ waiting: 'us', waitingSince: times(3)[2], firstAnswer: times(3)[1] });
    expect(facts(byNumber(rows, 4))).toMatchObject({ waiting: 'them', waitingSince: null, lastMessage: times(4)[2] });
    expect(facts(byNumber(rows, 5))).toMatchObject({ waiting: 'them', waitingSince: null });
    expect(facts(byNumber(rows, 6))).toMatchObject({ waiting: 'them', waitingSince: null });
    expect(facts(byNumber(rows, 7))).toMatchObject({ waiting: 'us', waitingSince: times(7)[2] }); // the close message was the customer's
    expect(byNumber(rows, 7)!.state).toBe('open');
    expect(facts(byNumber(rows, 8))).toMatchObject({ waiting: null, waitingSince: null });
    expect(byNumber(rows, 8)!.state).toBe('closed');
    expect(facts(byNumber(rows, 9))).toMatchObject({ waiting: 'them', waitingSince: null });
    for (const r of rows) expect(r.opened, `ticket ${r.ticket}`).toBe(times(r.ticket, r.state === 'closed' ? 'archived' : '')[0]);
    // A fresh read (no cache, no memory) says the same.
    expect(t.truth('all').map(facts).sort()).toEqual(rows.map(facts).sort());
    rmSync(t.root, { recursive: true, force: true });
  }, 60_000);
});

/** Writes ticket N from records (sender, time, message) as mutt or a hand would: mboxRecord, the real record writer. */
function writeTicket(tickets: string, n: number, records: Array<[sender: string, at: number, message: string]>, place = '') {
  mkdirSync(join(tickets, place), { recursive: true });
  const path = join(tickets, place, String(n));
  writeFileSync(path, Buffer.concat(records.map(([sender, at, message]) => mboxRecord(Buffer.from(message), sender, `ticket ${n}`, new Date(at)))), { mode: 0o600 });
  return path;
}
const fromCustomer = (subject: string, who = 'Alice <alice@customer.example>') => mail({ from: who, subject });
const fromAdmin = (subject: string) => mail({ from: `Max <${ADMIN}>`, subject });
const H = 3600_000;
const D = 24 * H;

describe('list --waiting', () => {
  it('only the tickets waiting on us, the longest wait first, with how long: "3d 4h" and seconds', () => {
    const t = setup();
    t.send('submit@tickets.example', mail()); // makes the folders
    const now = Date.now();
    writeTicket(t.tickets, 2, [['a@customer.example', now - 10 * D, fromCustomer('old')], ['max@tickets.example', now - 9 * D, fromAdmin('Re')],
      ['a@customer.example', now - 3 * D - 4 * H - 60_000, fromCustomer('Re 2')], ['a@customer.example', now - D, fromCustomer('Re 3')]]);
    writeTicket(t.tickets, 3, [['b@customer.example', now - 5 * H - 12 * 60_000 - 5000, fromCustomer('newer', 'Bob <b@customer.example>')]]);
    writeTicket(t.tickets, 4, [['c@customer.example', now - 20 * D, fromCustomer('answered')], ['max@tickets.example', now - 19 * D, fromAdmin('Re')]]);
    const before = Date.now();
    const rows = t.json(['list', '--waiting']) as Array<TicketRow & { waitedSeconds: number }>;
    const after = Date.now();
    expect(rows.map((r) => r.ticket)).toEqual([2, 3, 1]);
    expect(rows[0]!.waitingSince).toBe(new Date(Math.floor((now - 3 * D - 4 * H - 60_000) / 1000) * 1000).toISOString()); // From_ lines keep seconds
    for (const r of rows) {
      const since = Date.parse(r.waitingSince!);
      expect(r.waitedSeconds).toBeGreaterThanOrEqual(Math.round((before - since) / 1000) - 1);
      expect(r.waitedSeconds).toBeLessThanOrEqual(Math.round((after - since) / 1000) + 1);
    }
    const human = t.cli(['list', '--waiting']).trimEnd().split('\n');
    expect(human[0]).toMatch(/^#\s+WAITED\s+SINCE\s+MSGS\s+SUBMITTER\s+SUBJECT$/);
    expect(human[1]).toMatch(/^2\s+3d 4h\s+\S+\s+4\s+Alice <alice@customer\.example>\s+old$/);
    expect(human[2]).toMatch(/^3\s+5h 12m\s/);
    expect(human).toHaveLength(4);
    // The plain list shows who is waiting for every ticket.
    const list = t.cli(['list', '--all']).trimEnd().split('\n');
    expect(list.find((l) => l.startsWith('4 '))).toMatch(/^4\s+open\s+on them\s/);
    expect(list.find((l) => l.startsWith('2 '))).toMatch(/^2\s+open\s+on us\s/);
    rmSync(t.root, { recursive: true, force: true });
  });

  it('shows a hostile From (bidi, C1, ESC) visibly, and JSON escapes it', () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ from: '=?UTF-8?Q?Eve_=E2=80=AE=C2=9B2J_=1B[31m?= <eve@evil.example>', subject: '=?UTF-8?Q?pay_=E2=80=AEgnp.exe?=' }));
    const human = t.cli(['list', '--waiting']);
    expect(human).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/u);
    expect(human).toContain('eve@evil.example');
    const json = t.cli(['list', '--waiting', '--json']);
    expect(json).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/u);
    expect(JSON.parse(json)[0].submitter).toMatch(/^Eve .*<eve@evil\.example>$/);
    const stats = t.cli(['stats']);
    expect(stats).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/u);
    expect(stats).toContain('eve@evil.example');
    rmSync(t.root, { recursive: true, force: true });
  });
});

describe('the facts in list\'s cache', () => {
  it('read on when a ticket grew agree with a fresh read, also after a record was seen half written', () => {
    const t = setup();
    t.send('submit@tickets.example', mail());
    const path = join(t.tickets, '1');
    const rows = () => listTickets(new Store(t.config()), 'all'); // a new Store, the same memory and cache: read on
    expect(facts(rows()[0])).toMatchObject({ waiting: 'us' });
    t.send('ticket-1@tickets.example', mail({ from: `Max <${ADMIN}>` }), ADMIN);
    expect(facts(rows()[0])).toMatchObject({ waiting: 'them' });
    t.send('ticket-1@tickets.example', mail());
    expect(facts(rows()[0])).toMatchObject({ waiting: 'us', waitingSince: recordTimes(path)[2] });
    // Our answer cut inside its head while list looked (a stat between two pages of one write): its From was not there yet.
    writeFileSync(`${path}.lock`, `${process.pid}\n`);
    const record = mboxRecord(Buffer.from(fromAdmin('Re: more')), ADMIN, 'ticket 1', new Date());
    const cut = record.indexOf('From: Max') + 4;
    appendFileSync(path, record.subarray(0, cut));
    expect(rows()[0]).toMatchObject({ messages: 4, waiting: 'us' });
    appendFileSync(path, record.subarray(cut));
    rmSync(`${path}.lock`);
    expect(facts(rows()[0])).toMatchObject({ waiting: 'them', waitingSince: null });
    t.send('ticket-1@tickets.example', mail({ headers: ['Precedence: bulk'] }));
    t.send('ticket-1@tickets.example', mail());
    t.send('ticket-1@tickets.example', mail());
    const read = rows();
    expect(read).toEqual(t.truth());
    expect(facts(read[0])).toMatchObject({ waiting: 'us', waitingSince: recordTimes(path)[5], firstAnswer: recordTimes(path)[1] });
    rmSync(t.root, { recursive: true, force: true });
  });

  it('a change of admins recomputes them; an old cache format and a corrupt cache are read as absent', () => {
    const t = setup([]);
    t.send('submit@tickets.example', mail());
    t.send('ticket-1@tickets.example', mail({ from: `Max <${ADMIN}>` }), ADMIN);
    expect(t.json(['list'])[0]).toMatchObject({ waiting: 'us' }); // nobody is an admin
    expect(t.json(['list'], ['--admin', ADMIN])[0]).toMatchObject({ waiting: 'them' }); // the same cache, other settings
    expect(t.json(['list'])[0]).toMatchObject({ waiting: 'us' });
    const cachePath = join(t.tickets, '.ticket-mail', 'list-cache.json');
    const saved = JSON.parse(readFileSync(cachePath, 'utf8'));
    // The format before the facts: one flat object of entries, with a wrong count to show it is not used.
    writeFileSync(cachePath, JSON.stringify(Object.fromEntries(Object.entries(saved.entries).map(([k, e]) => {
      const { facts: _, reread: __, ...old } = e as Record<string, unknown>;
      return [k, { ...old, messages: 99 }];
    }))));
    expect(t.json(['list'])[0]).toMatchObject({ messages: 2, waiting: 'us' });
    // An entry that matches its file but holds no facts (hand-edited, or cut): read again, never trusted to crash.
    const unfit = JSON.stringify({ settings: saved.settings, entries: { 1: { ...saved.entries['1'], facts: 'x' } } });
    for (const corrupt of [unfit, 'null', '[]', '{"entries":null}', '{']) {
      writeFileSync(cachePath, corrupt);
      expect(t.json(['list'])[0], corrupt).toMatchObject({ messages: 2, waiting: 'us' });
    }
    rmSync(t.root, { recursive: true, force: true });
  });

  it('a ticket with no record, with garbage From_ lines, and From_ lines other programs write', () => {
    const t = setup();
    t.send('submit@tickets.example', mail());
    writeFileSync(join(t.tickets, '2'), 'no mbox at all\n', { mode: 0o600 });
    writeFileSync(join(t.tickets, '3'), `From garbage\nFrom: a@b.example\n\nx\n\nFrom x@y.example no time 99:99\nFrom: ${ADMIN}\n\ny\n\n`, { mode: 0o600 });
    writeFileSync(join(t.tickets, '4'), '', { mode: 0o600 });
    const mtime = new Date('2026-01-02T03:04:05.000Z');
    for (const n of [2, 3, 4]) utimesSync(join(t.tickets, String(n)), mtime, mtime);
    const rows = t.json(['list']) as TicketRow[];
    expect(byNumber(rows, 2)).toMatchObject({ messages: 0, waiting: 'them', opened: mtime.toISOString(), lastMessage: mtime.toISOString() });
    expect(byNumber(rows, 4)).toMatchObject({ messages: 0, waiting: 'them', opened: mtime.toISOString() });
    // No time in either From_ line: the first gets the file's mtime, the second the one before it.
    expect(byNumber(rows, 3)).toMatchObject({ messages: 2, waiting: 'them', opened: mtime.toISOString(), lastMessage: mtime.toISOString() });
    expect(t.json(['list', '--waiting']).map((r: TicketRow) => r.ticket)).toEqual([1]);
    const local = (y: number, mo: number, d: number, h: number, mi: number, s: number) => Date.UTC(y, mo, d, h, mi, s); // a From_ line without a zone is UTC
    expect(fromLineTime(`From MAILER-DAEMON ${asctime(new Date(local(2026, 10, 7, 4, 0, 57)))}`)).toBe(local(2026, 10, 7, 4, 0, 57));
    expect(fromLineTime('From alice@customer.example Tue Dec  1 21:33:24 2026')).toBe(local(2026, 11, 1, 21, 33, 24));
    expect(fromLineTime('From alice@customer.example Tue Dec 1 21:33 2026')).toBe(local(2026, 11, 1, 21, 33, 0));
    expect(fromLineTime('From a@b Tue Dec  1 21:33:24 +0100 2026')).toBe(Date.UTC(2026, 11, 1, 20, 33, 24));
    expect(fromLineTime('From a@b Tue Dec  1 21:33:24 2026 -0500')).toBe(Date.UTC(2026, 11, 2, 2, 33, 24));
    expect(fromLineTime('From a@b Tue Dec  1 21:33:24 CET 2026')).toBe(local(2026, 11, 1, 21, 33, 24));
    // Years below 100 as written, not as Date.UTC reads them (1900 + year); 0048 was a leap year, 1900 was not.
    expect(new Date(fromLineTime('From a@b Sat Feb 29 12:00:00 0048')!).toISOString()).toBe('0048-02-29T12:00:00.000Z');
    expect(new Date(fromLineTime('From a@b Mon Jan  1 00:00:00 0000 +0100')!).toISOString()).toBe('-000001-12-31T23:00:00.000Z');
    expect(new Date(fromLineTime('From a@b Tue Dec  1 21:33:24 0100')!).toISOString()).toBe('0100-12-01T21:33:24.000Z');
    for (const bad of ['From a@b', 'From a@b Tue Foo  1 21:33:24 2026', 'From a@b Tue Dec 32 21:33:24 2026', 'From a@b Tue Dec  1 25:33:24 2026', 'From ']) {
      expect(fromLineTime(bad), bad).toBeUndefined();
    }
    rmSync(t.root, { recursive: true, force: true });
  });

  it('appends racing lists leave the list as a fresh read shows it', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail());
    t.send('submit@tickets.example', mail());
    const base = [...t.settings];
    const appends = Array.from({ length: 24 }, (_, i) => {
      const n = 1 + (i % 2);
      const ours = i % 3 === 0;
      return deliverAsync([...base, '--recipient', `ticket-${n}@tickets.example`, '--sender', ours ? ADMIN : 'alice@customer.example'],
        mail(ours ? { from: `Max <${ADMIN}>` } : { headers: i % 3 === 1 ? [] : ['Auto-Submitted: auto-replied'] }));
    });
    const store = new Store(t.config());
    let done = false;
    const finished = Promise.all(appends).then((runs) => { done = true; return runs; });
    let lists = 0;
    while (!done) { listTickets(store, 'open'); lists++; await new Promise((r) => setTimeout(r, 5)); }
    for (const r of await finished) expect(r.status, r.stderr).toBe(0);
    expect(lists).toBeGreaterThan(0);
    // Aged past the racy margin (an unchanged folder is trusted): the memory and the cache must be right.
    const old = Date.now() / 1000 - 60;
    utimesSync(t.tickets, old, old);
    const after = listTickets(store, 'open');
    expect(after).toEqual(t.truth('open'));
    rmSync(t.root, { recursive: true, force: true });
  }, 60_000);
});

/**
 * The hand-computed fixture: now is Wednesday 2026-06-17 12:00 UTC, so the 26 weeks start on the
 * Mondays from 2025-12-22 to 2026-06-15. See the expected numbers below for the reasoning.
 */
const NOW = Date.UTC(2026, 5, 17, 12);
const at = (iso: string) => Date.parse(`${iso}Z`);
function fixture() {
  const t = setup();
  t.send('submit@tickets.example', mail()); // makes the folders and the log; this ticket is removed
  rmSync(join(t.tickets, '1'));
  rmSync(join(t.tickets, '.ticket-mail', 'log'));
  const c = 'alice@customer.example';
  writeTicket(t.tickets, 1, [[c, at('2026-06-01T09:00:00'), fromCustomer('one')], [ADMIN, at('2026-06-01T11:00:00'), fromAdmin('Re')], [c, at('2026-06-10T10:00:00'), fromCustomer('Re')]]);
  writeTicket(t.tickets, 2, [[c, at('2026-06-16T08:00:00'), fromCustomer('two')], [ADMIN, at('2026-06-16T12:00:00'), fromAdmin('Re')],
    [c, at('2026-06-16T12:05:00'), mail({ subject: 'Out of office', headers: ['Auto-Submitted: auto-replied'] })]]);
  writeTicket(t.tickets, 3, [[c, at('2026-05-04T10:00:00'), fromCustomer('three')], [ADMIN, at('2026-05-05T10:00:00'), fromAdmin('Re')],
    [c, at('2026-05-06T10:00:00'), fromCustomer('done')]], 'archived');
  writeTicket(t.tickets, 4, [[c, at('2026-03-02T00:00:00'), fromCustomer('four')], [c, at('2026-03-03T00:00:00'), fromCustomer('done')],
    [c, at('2026-03-10T00:00:00'), fromCustomer('again')], [c, at('2026-03-17T00:00:00'), fromCustomer('done again')]], 'archived');
  writeTicket(t.tickets, 5, [[c, at('2026-06-08T12:00:00'), fromCustomer('five')], [c, at('2026-06-08T18:00:00'), mail({ from: 'ticket-5@tickets.example', subject: 'Re' })],
    [c, at('2026-06-09T12:00:00'), fromCustomer('done')]], 'archived');
  writeTicket(t.tickets, 6, [[ADMIN, at('2026-06-02T12:00:00'), fromAdmin('six, opened by us')], [c, at('2026-06-03T12:00:00'), fromCustomer('Re')]]);
  writeTicket(t.tickets, 7, [[c, at('2025-01-06T09:00:00'), fromCustomer('seven')], [ADMIN, at('2025-01-07T09:00:00'), fromAdmin('Re')]]);
  // The audit log: ticket 4's first close only in a rotated, compressed part; ticket 5's close in none (rotated away).
  const line = (iso: string, n: number, outcome: string) => `${iso}\t<id@x>\talice@customer.example\tticket-${n}-done@tickets.example\tclose/address\t${n}\t${outcome}\t-\n`;
  const state = join(t.tickets, '.ticket-mail');
  writeFileSync(join(state, 'log.2.gz'), gzipSync(line('2026-03-03T00:00:00.000Z', 4, 'closed')));
  writeFileSync(join(state, 'log.1'), `${line('2026-03-10T00:00:00.000Z', 4, 'reopened')}garbage line\n${line('not a time', 4, 'closed')}`);
  writeFileSync(join(state, 'log'), `${line('2026-03-17T00:00:00.000Z', 4, 'closed')}${line('2026-05-06T10:00:00.000Z', 3, 'closed')}${line('2026-06-01T09:00:00.000Z', 1, 'created')}`);
  return t;
}

const WEEK_STARTS = ['2025-12-22', '2025-12-29', '2026-01-05', '2026-01-12', '2026-01-19', '2026-01-26', '2026-02-02', '2026-02-09', '2026-02-16',
  '2026-02-23', '2026-03-02', '2026-03-09', '2026-03-16', '2026-03-23', '2026-03-30', '2026-04-06', '2026-04-13', '2026-04-20', '2026-04-27',
  '2026-05-04', '2026-05-11', '2026-05-18', '2026-05-25', '2026-06-01', '2026-06-08', '2026-06-15'];
/** Week index -> count; the rest 0. */
const perWeek = (counts: Record<string, number>, otherwise = 0) => WEEK_STARTS.map((w) => counts[w] ?? otherwise);

describe('stats, on a hand-computed fixture', () => {
  it('counts, weeks, backlog, times to first answer and to close, oldest and longest waits: exact', async () => {
    const t = fixture();
    const closes = await readCloses(t.store);
    expect(closes?.get(4)).toEqual([
      { at: at('2026-03-03T00:00:00'), closed: true }, { at: at('2026-03-10T00:00:00'), closed: false }, { at: at('2026-03-17T00:00:00'), closed: true }]);
    const s = ticketStats(listTickets(t.store, 'all'), closes, NOW);
    expect(s).toMatchObject({ now: '2026-06-17T12:00:00.000Z', open: 4, closed: 3, closesFrom: 'log' });
    expect(s.weeks.map((w) => w.start)).toEqual(WEEK_STARTS);
    // Opened: 4 on 03-02, 3 on 05-04, 1 and 6 in the week of 06-01, 5 on 06-08, 2 on 06-16 (7 before the weeks).
    expect(s.weeks.map((w) => w.opened)).toEqual(perWeek({ '2026-03-02': 1, '2026-05-04': 1, '2026-06-01': 2, '2026-06-08': 1, '2026-06-15': 1 }));
    // Closed: 4 on 03-03 and 03-17 (the log), 3 on 05-06 (the log), 5 at its last message 06-09 (no log line).
    expect(s.weeks.map((w) => w.closed)).toEqual(perWeek({ '2026-03-02': 1, '2026-03-16': 1, '2026-05-04': 1, '2026-06-08': 1 }));
    // Open at each week's end: 7 throughout; 4 from its reopen (03-10) to its close (03-17); 1 and 6 from 06-01; 2 from 06-16.
    expect(s.weeks.map((w) => w.backlog)).toEqual(perWeek({ '2026-03-09': 2, '2026-06-01': 3, '2026-06-08': 3, '2026-06-15': 4 }, 1));
    // First answer: 1 in 2 h, 2 in 4 h (the out-of-office changes nothing), 3 in 24 h, 5 in 6 h (from ticket-5@); 4 never, 6 opened by us.
    expect(s.firstAnswer).toEqual({ tickets: 4, medianSeconds: 4 * 3600, p90Seconds: 24 * 3600 });
    // Close: 5 in 24 h, 3 in 48 h (log), 4 in 15 days (its last close).
    expect(s.timeToClose).toEqual({ tickets: 3, medianSeconds: 48 * 3600, p90Seconds: 15 * 86400 });
    const age = (iso: string) => (NOW - at(iso)) / 1000;
    expect(s.oldestOpen.map((r) => [r.ticket, r.ageSeconds])).toEqual([[7, age('2025-01-06T09:00:00')], [1, age('2026-06-01T09:00:00')],
      [6, age('2026-06-02T12:00:00')], [2, age('2026-06-16T08:00:00')]]);
    expect(s.longestWaits.map((r) => [r.ticket, r.waitingSince, r.waitedSeconds])).toEqual([
      [6, '2026-06-03T12:00:00.000Z', age('2026-06-03T12:00:00')], [1, '2026-06-10T10:00:00.000Z', age('2026-06-10T10:00:00')]]);
    // Without any readable log: every close at the ticket's last message (4 closed once, on 03-17).
    for (const name of ['log', 'log.1', 'log.2.gz']) rmSync(join(t.tickets, '.ticket-mail', name));
    expect(await readCloses(t.store)).toBeUndefined();
    const files = ticketStats(listTickets(t.store, 'all'), undefined, NOW);
    expect(files.closesFrom).toBe('files');
    expect(files.weeks.map((w) => w.closed)).toEqual(perWeek({ '2026-03-16': 1, '2026-05-04': 1, '2026-06-08': 1 }));
    expect(files.weeks.map((w) => w.backlog)).toEqual(perWeek({ '2026-03-02': 2, '2026-03-09': 2, '2026-06-01': 3, '2026-06-08': 3, '2026-06-15': 4 }, 1));
    expect(files.timeToClose).toEqual({ tickets: 3, medianSeconds: 48 * 3600, p90Seconds: 15 * 86400 });
    rmSync(t.root, { recursive: true, force: true });
  });

  it('the CLI gives what ticketStats gives at its now; the terminal gets tables and sparklines; no tickets is all zeros', async () => {
    const t = fixture();
    const cli = t.json(['stats']);
    expect(cli).toEqual(ticketStats(listTickets(t.store, 'all'), await readCloses(t.store), Date.parse(cli.now)));
    const human = t.cli(['stats']);
    expect(human).toMatch(/^4 open, 3 closed \(closes from the audit log\)\n/);
    expect(human).toMatch(/\nWEEK OF\s+OPENED\s+CLOSED\s+BACKLOG\n/);
    expect(human).toMatch(/\nopened {3}[▁▂▃▄▅▆▇█]{26}\n/);
    expect(human).toContain('Oldest open tickets');
    expect(human).toMatch(/\n7\s+\d+d \d+h\s+Alice <alice@customer\.example>\s+seven\n/);
    const empty = setup();
    mkdirSync(empty.tickets);
    const none = empty.json(['stats']);
    expect(none).toMatchObject({ open: 0, closed: 0, closesFrom: 'files', firstAnswer: { tickets: 0, medianSeconds: null, p90Seconds: null }, oldestOpen: [], longestWaits: [] });
    expect(none.weeks.every((w: { opened: number; closed: number; backlog: number }) => w.opened + w.closed + w.backlog === 0)).toBe(true);
    expect(empty.cli(['stats'])).toMatch(/Time to first answer: none yet/);
    rmSync(t.root, { recursive: true, force: true });
    rmSync(empty.root, { recursive: true, force: true });
  });

  it('the small pieces: nextFacts, shortDuration, sparkline, isoTime', () => {
    fc.assert(fc.property(fc.oneof(fc.double({ min: -1e13, max: 3e14, noNaN: true }), fc.integer({ min: 0, max: 253402300799999 }),
      fc.constantFrom(0, -0.5, 0.5, 86399999.9, 253402300799999, 253402300800000, -1)), (ms) => {
      expect(isoTime(ms)).toBe(new Date(ms).toISOString());
    }), { numRuns: 20000 });
    expect(nextFacts(null, 'automatic', 5)).toEqual([5, null, 5, 5, 0]); // a monitoring alert opens a wait
    expect(nextFacts(nextFacts(null, 'us', 1), 'them', 2)).toEqual([1, null, 2, 2, 1]);
    expect(nextFacts(nextFacts(nextFacts(null, 'us', 1), 'them', 2), 'us', 3)).toEqual([1, null, null, 3, 1]); // opened by us: no "first answer"
    expect(nextFacts(nextFacts(nextFacts(null, 'them', 1), 'us', 4), 'automatic', 9)).toEqual([1, 4, null, 9, 0]);
    expect([0, 999, 40_000, 7 * 60_000, 5 * H + 12 * 60_000 + 59_000, 3 * D + 4 * H + 59 * 60_000].map(shortDuration)).toEqual(['0s', '0s', '40s', '7m', '5h 12m', '3d 4h']);
    expect(sparkline([0, 1, 2, 4, 8])).toBe('▁▂▃▅█');
    expect(sparkline([0, 0])).toBe('▁▁');
    expect(sparkline([10_000, 0, 1])).toBe('█▁▁');
  });
});

/** Each <svg>...</svg> of a page, parsed by Python's xml.dom.minidom (it throws on XML that is not well-formed): its rects' heights. */
function svgBars(page: string): number[][] {
  const svgs = page.match(/<svg[\s\S]*?<\/svg>/g) ?? [];
  const r = spawnSync('python3', ['-c', `
import json, sys, xml.dom.minidom
out = []
for svg in json.load(sys.stdin):
    doc = xml.dom.minidom.parseString(svg)
    assert doc.documentElement.namespaceURI == 'http://www.w3.org/2000/svg'
    assert not doc.getElementsByTagName('script') and not doc.getElementsByTagName('image') and not doc.getElementsByTagName('use')
    out.append([float(r.getAttribute('height')) for r in doc.getElementsByTagName('rect')])
print(json.dumps(out))
`], { input: JSON.stringify(svgs), encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

const viewerOf = (t: ReturnType<typeof setup>) => ({ store: t.store, base: '', access: { kind: 'loopback' as const, uids: new Set([process.getuid!()]) } });
async function page(t: ReturnType<typeof setup>, target: string) {
  const reply = await handle(viewerOf(t), { method: 'GET', target, peerUid: process.getuid!() });
  return { status: reply.status, text: String(reply.body) };
}

describe('the viewer', () => {
  it('/stats: the numbers as SVG charts (well-formed, no script) with their tables; one ticket, 10,000 in one week, a hostile From', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ from: '=?UTF-8?Q?Eve_=E2=80=AE=C2=9B2J_<b>x</b>?= <eve@evil.example>', subject: '=?UTF-8?Q?<script>alert(1)</script>_=E2=80=AEgnp.exe?=' }));
    const one = await page(t, '/stats');
    expect(one.status).toBe(200);
    const bars = svgBars(one.text);
    expect(bars).toHaveLength(2);
    expect(bars[0]).toHaveLength(52); // opened and closed, 26 weeks each
    expect(Math.max(...bars[0]!)).toBeGreaterThan(90); // the one ticket: the full height
    expect(one.text).not.toContain('<script>');
    expect(one.text).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(one.text).toContain('Eve &lt;U+202E&gt;&lt;U+009B&gt;2J &lt;b&gt;x&lt;/b&gt;');
    expect(one.text).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/u);
    expect(one.text).toMatch(/<td class="n">1<\/td><\/tr>\n<\/tbody><\/table><\/figure>/); // the backlog table ends with the one open ticket
    // 10,000 tickets opened in one week: the bars stay inside the chart, the empty weeks flat.
    const now = Date.now();
    for (let n = 2; n <= 10_000; n++) writeFileSync(join(t.tickets, String(n)), mboxRecord(Buffer.from(fromCustomer(`t${n}`)), 'a@customer.example', `ticket ${n}`, new Date(now - 1000)));
    const many = await page(t, '/stats');
    const [perWeekBars, backlogBars] = svgBars(many.text) as [number[], number[]];
    expect(Math.max(...perWeekBars, ...backlogBars)).toBeLessThanOrEqual(100);
    expect(perWeekBars.filter((h) => h > 0)).toHaveLength(1);
    expect(many.text).toContain('<text x="0" y="10">10000</text>');
    expect(many.text).toContain('<p>10000 open, 0 closed');
    rmSync(t.root, { recursive: true, force: true });
  }, 120_000);

  it('the list shows who is waiting, ?waiting=1 only the tickets waiting on us, the longest wait first, paged by a stable cursor', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail());
    const now = Date.now();
    for (let n = 2; n <= 70; n++) {
      const records: Array<[string, number, string]> = [['a@customer.example', now - n * H, fromCustomer(`t${n}`)]];
      if (n % 4 === 0) records.push([ADMIN, now - n * H + 60_000, fromAdmin('Re')]);
      writeTicket(t.tickets, n, records);
    }
    const all = await page(t, '/');
    expect(all.text).toMatch(/<td>on them<\/td>/);
    expect(all.text).toMatch(/<td>on us since \d{4}-\d\d-\d\d \d\d:\d\d UTC<\/td>/);
    const waiting = t.truth('open').filter((r) => r.waiting === 'us').sort((a, b) => Date.parse(a.waitingSince!) - Date.parse(b.waitingSince!) || a.ticket - b.ticket);
    expect(waiting.length).toBeGreaterThan(50);
    const first = await page(t, '/?waiting=1');
    const shown = (text: string) => [...text.matchAll(/<tr><td class="n"><a href="\/(\d+)\/">/g)].map((m) => Number(m[1]));
    expect(shown(first.text)).toEqual(waiting.slice(0, 50).map((r) => r.ticket));
    const next = /<a rel="next" href="(\/\?waiting=1&amp;after=\d+-\d+)">/.exec(first.text)![1]!.replace('&amp;', '&');
    // A customer's message in 68 (answered: now waiting on us) and a new ticket 71.
    t.send('ticket-68@tickets.example', mail());
    t.send('submit@tickets.example', mail());
    // Both now wait the shortest: at the end of page two, which still starts where page one ended.
    const second = await page(t, next);
    expect(shown(second.text)).toEqual([...waiting.slice(50).map((r) => r.ticket), 68, 71]);
    expect((await page(t, '/?waiting=1&after=junk')).status).toBe(404);
    expect((await page(t, '/?waiting=1&after=99999999999999-1')).text).toContain('No ticket waits on us after these.');
    rmSync(t.root, { recursive: true, force: true });
  });
});

describe('the pages in Chromium', () => {
  let browser: Browser | undefined;
  beforeAll(async () => { browser = await launchBrowser(); });
  afterAll(async () => { await browser?.close(); });

  it.skipIf(browserMissing)('/stats and /?waiting=1: no script, nothing loaded but the stylesheet, charts drawn, hostile names as text', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ from: '=?UTF-8?Q?<img_src=3Dx_onerror=3Dalert(1)>_=E2=80=AE?= <eve@evil.example>', subject: '<svg onload=alert(2)>' }));
    t.send('submit@tickets.example', mail({ subject: 'answered' }));
    t.send('ticket-2@tickets.example', mail({ from: `Max <${ADMIN}>` }), ADMIN);
    const serve = await startServe([...t.settings, '--listen', '127.0.0.1:0']);
    try {
      const context = await browser!.newContext();
      const tab = await context.newPage();
      const watch = watchPage(tab, serve.url);
      for (const path of ['stats', '?waiting=1']) {
        await tab.goto(`${serve.url}${path}`);
        await settle(tab);
        const text = await tab.evaluate('document.body.innerText') as string;
        expect(text).toContain('<img src=x onerror=alert(1)> <U+202E> <eve@evil.example>');
        if (path === 'stats') {
          expect(text).toContain('<svg onload=alert(2)>');
          expect(await tab.evaluate('document.querySelectorAll("svg.chart rect").length')).toBe(26 * 3);
          const box = await tab.evaluate('JSON.stringify(document.querySelector("svg.chart").getBoundingClientRect())') as string;
          expect(JSON.parse(box).height).toBeGreaterThan(50); // drawn, with its stylesheet
          expect(await tab.evaluate('getComputedStyle(document.querySelector("svg.chart rect.opened")).fill')).not.toBe('rgb(0, 0, 0)');
        } else {
          expect(await tab.evaluate('[...document.querySelectorAll("tbody tr")].map((r) => r.cells[0].innerText).join()')).toBe('1');
        }
      }
      expect(watch.dialogs).toEqual([]);
      expect(watch.errors).toEqual([]);
      expect(watch.failed).toEqual([]);
      expect(watch.requests.filter((p) => p !== '/stats' && p !== '/?waiting=1' && p !== '/style.css')).toEqual([]);
      expect(watch.consoleLines.filter((l) => /Content Security Policy/.test(l))).toEqual([]);
      await context.close();
    } finally {
      await serve.stop();
      rmSync(t.root, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('shownMailboxes\' plain path', () => {
  it('gives what the parser gives for "Name <address>" and a bare address', async () => {
    const { addressParser } = await import('postal-mime');
    const word = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/);
    const address = fc.tuple(fc.stringMatching(/^[A-Za-z0-9._+-]{1,20}$/), fc.stringMatching(/^[A-Za-z0-9.-]{1,20}$/)).map(([l, d]) => `${l}@${d}`);
    const value = fc.oneof(
      fc.tuple(fc.array(word, { minLength: 1, maxLength: 14 }), address).map(([w, a]) => `${w.join(' ')} <${a}>`),
      address.map((a) => `<${a}>`), address, address.map((a) => `  ${a} `));
    fc.assert(fc.property(value, (v) => {
      const parsed = addressParser(v, { flatten: true }).flatMap((m) => ('address' in m && m.address ? [m.name ? `${oneLine(m.name, 60)} <${oneLine(m.address, 254)}>` : oneLine(m.address, 254)] : []));
      expect(shownMailboxes(v, oneLine)).toEqual(parsed);
    }), { numRuns: 3000 });
  });
  it('gives what the parser and postal-mime\'s decoder give for a name of encoded words, B and Q, in several charsets', async () => {
    const { addressParser, decodeWords } = await import('postal-mime');
    const text = fc.array(fc.constantFrom('a', 'Z', '0', 'é', 'ü', 'ß', '中', 'Ω', ' ', '_', '?', '=', '"', '<', ';', '\u202e', '\x07'), { minLength: 0, maxLength: 20 }).map((cs) => cs.join(''));
    const charset = fc.constantFrom('UTF-8', 'utf-8', 'ISO-8859-1', 'windows-1252');
    const encodedWord = fc.tuple(text, charset, fc.boolean()).map(([t, cs, b]) => {
      const bytes = Buffer.from(t, /^utf/i.test(cs) ? 'utf8' : 'latin1');
      return b ? `=?${cs}?B?${bytes.toString('base64')}?=`
        : `=?${cs}?Q?${[...bytes].map((c) => (c === 0x20 ? '_' : /[A-Za-z0-9]/.test(String.fromCharCode(c)) ? String.fromCharCode(c) : `=${c.toString(16).toUpperCase().padStart(2, '0')}`)).join('')}?=`;
    });
    const address = fc.tuple(fc.stringMatching(/^[A-Za-z0-9._+-]{1,20}$/), fc.stringMatching(/^[A-Za-z0-9.-]{1,20}$/)).map(([l, d]) => `${l}@${d}`);
    const value = fc.tuple(fc.array(encodedWord, { minLength: 1, maxLength: 4 }), address).map(([w, a]) => `${w.join(' ')} <${a}>`);
    fc.assert(fc.property(value, (v) => {
      const [mailbox] = addressParser(v, { flatten: true }) as Array<{ name: string; address: string }>;
      const name = oneLine(decodeWords(v.slice(0, v.lastIndexOf(' <'))).replace(/\ufffd/g, ' '), 60);
      expect(mailbox!.address).toBe(v.slice(v.lastIndexOf('<') + 1, -1)); // the parser reads the same address
      expect(shownMailboxes(v, oneLine)).toEqual([name ? `${name} <${oneLine(mailbox!.address, 254)}>` : oneLine(mailbox!.address, 254)]);
    }), { numRuns: 2000 });
  });
  it('shows nothing for a missing or empty field, as the parser does', () => {
    for (const v of [undefined, '', '  ', '\n ']) expect(shownMailboxes(v)).toEqual([]);
  });
});

describe('the heads list reads', () => {
  it('headFields gives parseHead\'s fields: folded, CRLF, repeated, stray and non-field lines, any case, cut, bytes that are no UTF-8', () => {
    const wanted = new Set(['from', 'subject', 'auto-submitted']);
    const piece = fc.constantFrom('From', 'FROM', 'subject', 'Auto-Submitted', 'Received', 'X-Other', ':', ': v', ' ', '\t', '\r', '\n', '\r\n', '\n ',
      '\n\t', '\n\n', 'a', 'b c', '\xe9', '\xc3\xa9', '\xff', '\xc3', '\xe2\x82', 'Fr om', '=?x?=');
    fc.assert(fc.property(fc.array(piece, { maxLength: 16 }), fc.nat(3), (pieces, cut) => {
      const head = Buffer.from(pieces.join(''), 'latin1');
      // Among other bytes, as list reads it from a whole file; cut as FACTS_HEAD or the file's end cuts it.
      const bytes = Buffer.concat([Buffer.from('Before: x\n'), head, Buffer.from('After: y\n')]);
      const start = 10;
      const end = start + Math.max(0, head.length - cut);
      const message = bytes.subarray(start, end);
      const parsed = parseHead(message.subarray(0, headEnd(message)).toString('utf8'));
      expect(headFields(bytes, start, end, wanted)).toEqual(parsed && new Map([...parsed].filter(([name]) => wanted.has(name))));
    }), { numRuns: 5000 });
  });

  it('a later record\'s marks of automatic mail and an admin\'s From count however written: folded, CRLF, in capitals, deep in a long head, read on after growth', () => {
    const t = setup();
    const now = Date.now();
    const relays = Array.from({ length: 90 }, (_, i) => `Received: from relay${i}.customer.example by mx.tickets.example; Tue, 1 Dec 2026 10:00:00 +0000`);
    const marks = ['Auto-Submitted:\n auto-replied', 'AUTO-SUBMITTED: \tAuto-Replied (vacation)', 'Precedence:\n\tbulk', 'precedence: Junk', 'X-Autoreply: yes',
      'X-AUTORESPOND:\n yes', `${LOOP_HEADER}: other.example`, [...relays, 'Auto-Submitted: auto-generated'].join('\n')];
    const variants = marks.flatMap((mark) => [mark, mark.replace(/\n/g, '\r\n')]);
    const person = variants.length + 1; // the control: the same ticket, its last message a person's
    const records = (n: number): Array<[string, number, string]> => {
      const crlf = n <= variants.length && variants[n - 1]!.includes('\r');
      const written = (message: string) => (crlf ? message.replace(/\n/g, '\r\n') : message);
      return [['alice@customer.example', now - 3 * D, written(fromCustomer(`ticket ${n}`))],
        [ADMIN, now - 2 * D, written(mail({ from: `Max\n <${ADMIN}>`, subject: 'Re' }))], // a folded From: still the admin's
        ['alice@customer.example', now - D, written(n === person ? fromCustomer('Re: thanks') : mail({ subject: 'Away', headers: [variants[n - 1]!] }))]];
    };
    const expected = (n: number) => ({ waiting: n === person ? 'us' : 'them', waitingSince: n === person ? isoTime(Math.floor((now - D) / 1000) * 1000) : null,
      firstAnswer: isoTime(Math.floor((now - 2 * D) / 1000) * 1000) });
    for (let n = 1; n <= person; n++) writeTicket(t.tickets, n, records(n));
    const cold = t.json(['list']) as TicketRow[];
    for (let n = 1; n <= person; n++) expect(facts(byNumber(cold, n)), variants[n - 1] ?? 'a person').toMatchObject(expected(n));
    expect(t.truth('open').map(facts)).toEqual(cold.map(facts));
    // The last records appended to tickets already listed: read on from the cache (the records read from the file, not the whole file).
    for (let n = 1; n <= person; n++) writeTicket(t.tickets, n, records(n).slice(0, 2));
    expect(t.json(['list']).map((r: TicketRow) => r.waiting)).toEqual(Array(person).fill('them')); // answered
    for (let n = 1; n <= person; n++) {
      const [sender, at, message] = records(n)[2]!;
      appendFileSync(join(t.tickets, String(n)), mboxRecord(Buffer.from(message), sender, `ticket ${n}`, new Date(at)));
    }
    const grown = t.json(['list']) as TicketRow[];
    for (let n = 1; n <= person; n++) expect(facts(byNumber(grown, n)), variants[n - 1] ?? 'a person').toMatchObject(expected(n));
    rmSync(t.root, { recursive: true, force: true });
  }, 60_000);
});

describe('the numbers over many tickets', () => {
  it('stats over the files (countedTickets, no rows) gives what ticketStats gives over the list\'s rows: times from From_ lines or the file\'s mtime, both places, closes logged or not', () => {
    // Records by the customer, an admin or a robot, each with a time in its From_ line or none (then
    // the time before it, or the file's mtime: a fraction of a ms, which the rows' ISO times drop).
    const record = fc.record({ by: fc.constantFrom('customer', 'admin', 'robot'), hours: fc.option(fc.oneof(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 24 * 200 }))) }); // ties too
    const ticket = fc.record({ records: fc.array(record, { maxLength: 4 }), archived: fc.boolean(), micros: fc.integer({ min: 0, max: 30 * 86400e6 }),
      closes: fc.option(fc.array(fc.integer({ min: 0, max: 24 * 200 }), { maxLength: 3 })) });
    const base = Date.UTC(2026, 5, 30, 12, 0, 0);
    fc.assert(fc.property(fc.array(ticket, { minLength: 1, maxLength: 8 }), fc.integer({ min: 0, max: 999 }), (tickets, nowMicros) => {
      const root = tempDir('tm-counted-');
      const dir = join(root, 'tickets');
      mkdirSync(join(dir, 'archived'), { recursive: true });
      const closes: CloseEvents = new Map();
      let now = base;
      tickets.forEach((t, i) => {
        const from = { customer: 'u@customer.example', admin: ADMIN, robot: 'noreply@robot.example' };
        const text = t.records.map((r) => `From ${from[r.by]}${r.hours === null ? '' : ` ${asctime(new Date(base - r.hours * 3600_000))}`}\n`
          + `From: ${from[r.by]}\nSubject: ticket ${i + 1}\n\nhello\n\n`).join('');
        const path = join(dir, t.archived ? 'archived' : '', String(i + 1));
        writeFileSync(path, text);
        const mtime = base - 60 * 86400_000 + t.micros / 1000; // ms and a fraction of one
        utimesSync(path, mtime / 1000, mtime / 1000);
        // A now half a second past the first ticket's mtime, and a fraction: a time kept whole or not rounds apart.
        if (i === 0) now = Math.trunc(statSync(path).mtimeMs) + 500 + nowMicros / 1000 + 60 * 86400_000;
        if (t.closes) closes.set(i + 1, t.closes.map((h, k) => ({ at: base - h * 3600_000, closed: k % 2 === 0 })).sort((a, b) => a.at - b.at));
      });
      const store = new Store(resolveConfig({ dir, domain: 'tickets.example', admin: [ADMIN] }, {}, {}));
      for (const logged of [closes, undefined]) expect(statsOf(countedTickets(store, false), logged, now)).toEqual(ticketStats(listTickets(store, 'all', false), logged, now));
      rmSync(root, { recursive: true, force: true });
    }), { numRuns: 200 });
  });
  it('stats\' top tickets (firstInOrder) are those a sort of them all puts first: in order, ties as they came (a stable sort), any number of them', () => {
    const byKey = (a: [number, number], b: [number, number]) => a[0] - b[0]; // ties: the second number tells them apart
    fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 6 }), fc.nat()), { maxLength: 40 }), fc.integer({ min: -1, max: 12 }), (items, n) => {
      expect(firstInOrder(items, n, byKey)).toEqual(items.slice().sort(byKey).slice(0, Math.max(0, n)));
    }), { numRuns: 5000 });
  });
});
