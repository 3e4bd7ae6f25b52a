// Search (ticket-mail search, the viewer's /?q=) over tickets made by real deliveries of the built
// file: base64, quoted-printable, ISO-8859-1 and HTML-only bodies, encoded subjects and names,
// attachments, hostile text. Every field and operator, accents and case, phrases, no match, bad
// queries (exit 2, one line); the cache (an append read from where it grew, a rewrite read again,
// a move read not at all, garbage and symlinks ignored, an unwritable state folder, racing
// searches); the viewer's results page, escaped.
import { afterAll, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Store, parseQuery, resolveConfig, searchReads, searchTickets, snippet, foldText } from '../ticket.ts';
import { handle } from '../viewer.ts';
import { deliver, deliverAsync, mail, searchFolder } from './harness.ts';
import { browserMissing, launchBrowser, settle, startServe, watchPage, type ServeServer } from './web.ts';
import type { Browser } from 'playwright-core';

const B64_BODY = 'The printer jammed again in the café.\nCompiled with C++ (v2.0) [a.*b]\n';
const B64 = Buffer.from(B64_BODY).toString('base64');
const HOSTILE = 'hostile \x9b31m \u202Egnp.exe';

/** A tickets folder and its messages, delivered as an MTA delivers them. */
function fixture() {
  const { dir, tickets, settings, send, env } = searchFolder('tm-search-');
  const search = (query: string[], extraEnv: NodeJS.ProcessEnv = {}) => deliver(['--dir', tickets, 'search', ...query], '', { ...env, ...extraEnv });
  const json = (query: string[], extraEnv: NodeJS.ProcessEnv = {}) => {
    const r = search(['--json', ...query], extraEnv);
    expect(r.status, r.stderr).toBeLessThan(2);
    return JSON.parse(r.stdout) as { total: number; results: Array<{ ticket: number; message: number; state: string; from: string; subject: string; snippet: Array<{ text: string; match?: true }> }> };
  };
  const hits = (...query: string[]) => json(query).results.map((r) => `${r.ticket}/${r.message}`).sort();
  // 1: base64 UTF-8 body, encoded subject and name.
  send('submit@tickets.example', mail({
    from: '=?ISO-8859-1?Q?Jos=E9_Caf=E9?= <jose@customer.example>', subject: '=?UTF-8?B?Q2Fmw6kgcHJpbnRlciBqYW0=?=', id: 's1@customer.example',
    headers: ['MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: base64'], body: `${B64}\n`,
  }));
  // 2: quoted-printable Latin-1, then the admin's HTML-only answer with a <script> as text.
  send('submit@tickets.example', mail({
    from: 'Bob <bob@customer.example>', subject: 'Kaffee', id: 's2@customer.example',
    headers: ['MIME-Version: 1.0', 'Content-Type: text/plain; charset=iso-8859-1', 'Content-Transfer-Encoding: quoted-printable'],
    body: 'Le caf=E9 est froid dans la Stra=DFe, =\nvraiment.\n',
  }), 'bob@customer.example');
  send('ticket-2@tickets.example', mail({
    from: 'Max <max@tickets.example>', to: 'ticket-2@tickets.example', subject: 'Re: Kaffee', id: 's3@tickets.example',
    headers: ['MIME-Version: 1.0', 'Content-Type: text/html; charset=utf-8'],
    body: '<html><body><p>We looked: &lt;script&gt;alert(1)&lt;/script&gt; is only text. Gr&#252;&#223;e</p></body></html>\n',
  }), 'max@tickets.example');
  // 3: an attachment, a Cc; later closed (archived/).
  send('submit@tickets.example', mail({
    from: 'Carol <carol@customer.example>', subject: 'Invoice wrong', id: 's4@customer.example', headers: ['Cc: Dave <dave@partner.example>', 'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="b"'],
    body: '--b\nContent-Type: text/plain\n\nSee attached.\n--b\nContent-Type: application/pdf; name="invoice-2026.pdf"\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQKcHJpbnRlcgo=\n--b--\n',
  }), 'carol@customer.example');
  // 4: a hostile subject (C1 and bidi controls).
  send('submit@tickets.example', mail({
    from: 'Eve <eve@customer.example>', subject: `=?UTF-8?B?${Buffer.from(HOSTILE).toString('base64')}?=`, id: 's5@customer.example',
    headers: ['MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit'], body: 'Ordinary words. жzebra, —quagga, 漢字テスト\n',
  }), 'eve@customer.example');
  return { dir, tickets, settings, send, search, json, hits, env, store: new Store(resolveConfig({ dir: tickets, domain: 'tickets.example' }, {}, {})) };
}

const today = () => { const d = new Date(); return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`; };
const tomorrow = () => { const d = new Date(Date.now() + 86_400_000); return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`; };

describe('search: what people read', { timeout: 120_000 }, () => {
  const t = fixture();
  t.send('ticket-3-done@tickets.example', mail({ from: 'Carol <carol@customer.example>', subject: 'Re: Invoice wrong', id: 's6@customer.example', body: 'Solved, thanks.\n' }), 'carol@customer.example');

  it('finds words in decoded bodies (base64, quoted-printable Latin-1, HTML as text), case- and accent-insensitive', () => {
    expect(t.hits('printer')).toEqual(['1/1']);
    expect(t.hits('JAMMED')).toEqual(['1/1']);
    expect(t.hits('cafe')).toEqual(['1/1', '2/1']);   // "café" in base64 UTF-8 and in QP Latin-1
    expect(t.hits('CAFÉ')).toEqual(['1/1', '2/1']);
    expect(t.hits('strasse')).toEqual(['2/1']);       // Straße: ß folded to ss
    expect(t.hits('STRAßE')).toEqual(['2/1']);
    expect(t.hits('vraiment')).toEqual(['2/1']);      // after a soft line break
    expect(t.hits('grusse')).toEqual(['2/2']);        // HTML entities decoded, accents folded
    expect(t.hits('print')).toEqual(['1/1']);         // a word matches the words it begins
    expect(t.hits('rinter')).toEqual([]);             // not inside a word
    expect(t.hits('zebra')).toEqual([]);              // after a Cyrillic letter: inside a word
    expect(t.hits('жzebra')).toEqual(['4/1']);
    expect(t.hits('quagga')).toEqual(['4/1']);        // after a dash: a word's start
    expect(t.hits('テスト')).toEqual(['4/1']);         // written without spaces: anywhere
    expect(t.hits('zebra ordinary')).toEqual([]);     // the same rule for several words
    expect(t.hits('quagga ordinary')).toEqual(['4/1']);
  });

  it('never finds what is only in the raw transfer encoding (base64 text, an attachment\'s bytes)', () => {
    const raw = B64.slice(0, 12);
    expect(readFileSync(join(t.tickets, '1'), 'latin1')).toContain(raw); // grep would find it
    const r = t.search([raw]);
    expect(r).toMatchObject({ status: 1, stdout: '', stderr: 'ticket-mail: no message matches\n' });
    expect(t.hits('JVBERi0xLjQKcHJpbnRlcgo')).toEqual([]);
    expect(t.hits('body:printer')).toEqual(['1/1']); // the PDF's bytes ("printer") are no text
  });

  it('every field: from: (decoded names, addresses), to: (To and Cc), subject: (decoded), body:, file:', () => {
    expect(t.hits('from:jose')).toEqual(['1/1']);
    expect(t.hits('from:JOSÉ')).toEqual(['1/1']);
    expect(t.hits('from:bob@customer.example')).toEqual(['2/1']);
    expect(t.hits('from:max')).toEqual(['2/2']);
    expect(t.hits('to:dave')).toEqual(['3/1']);
    expect(t.hits('to:partner.example')).toEqual(['3/1']);
    expect(t.hits('to:ticket-2')).toEqual(['2/2']);
    expect(t.hits('subject:printer')).toEqual(['1/1']);
    expect(t.hits('subject:kaffee')).toEqual(['2/1', '2/2']);
    expect(t.hits('body:kaffee')).toEqual([]);
    expect(t.hits('subject:jammed')).toEqual([]);
    expect(t.hits('file:invoice')).toEqual(['3/1']);
    expect(t.hits('file:"invoice-2026.pdf"')).toEqual(['3/1']);
    expect(t.hits('body:invoice')).toEqual([]);
    expect(t.hits('invoice')).toEqual(['3/1', '3/2']); // subject, file name and the closing reply's subject
  });

  it('phrases, quoted values, and words that all must match in one message', () => {
    expect(t.hits('"printer jammed"')).toEqual(['1/1']);
    expect(t.hits('"jammed printer"')).toEqual([]);
    expect(t.hits('subject:"printer jam"')).toEqual(['1/1']);
    expect(t.hits('"froid dans"')).toEqual(['2/1']);
    expect(t.hits('cafe froid')).toEqual(['2/1']);
    expect(t.hits('cafe kaffee')).toEqual(['2/1']);    // the body's word, the subject's word
    expect(t.hits('printer froid')).toEqual([]);
  });

  it('regular-expression characters are only characters', () => {
    expect(t.hits('(v2.0)')).toEqual(['1/1']);
    expect(t.hits('[a.*b]')).toEqual(['1/1']);
    expect(t.hits('c++')).toEqual(['1/1']);
    expect(t.hits('.*')).toEqual([]);
    expect(t.hits('$^|\\')).toEqual([]);
  });

  it('is:open and is:closed (a closed ticket is in archived/), ticket:N, before: and after:', () => {
    expect(existsSync(join(t.tickets, 'archived', '3'))).toBe(true);
    expect(t.hits('is:closed')).toEqual(['3/1', '3/2']);
    expect(t.hits('is:open kaffee')).toEqual(['2/1', '2/2']);
    expect(t.hits('is:closed kaffee')).toEqual([]);
    expect(t.json(['invoice']).results.map((r) => r.state)).toEqual(['closed', 'closed']);
    expect(t.hits('ticket:2')).toEqual(['2/1', '2/2']);
    expect(t.hits('ticket:2 froid')).toEqual(['2/1']);
    expect(t.hits(`after:${today()}`)).toHaveLength(6);
    expect(t.hits(`before:${today()}`)).toEqual([]);
    expect(t.hits(`before:${tomorrow()} froid`)).toEqual(['2/1']);
    expect(t.hits(`after:${tomorrow()}`)).toEqual([]);
  });

  it('results newest first, with ticket, position, date, sender, subject and a marked snippet', () => {
    const found = t.json(['kaffee']);
    expect(found.total).toBe(2);
    expect(found.results.map((r) => r.message)).toEqual([2, 1]);
    expect(found.results[1]).toMatchObject({ ticket: 2, message: 1, state: 'open', from: 'Bob <bob@customer.example>', subject: 'Kaffee' });
    const jose = t.json(['cafe', 'printer']).results[0]!;
    expect(jose.from).toBe('José Café <jose@customer.example>');
    expect(jose.subject).toBe('Café printer jam');
    expect(jose.snippet).toEqual([{ text: 'The ' }, { text: 'printer', match: true }, { text: ' jammed again in the ' }, { text: 'café', match: true },
      { text: '. Compiled with C++ (v2.0) [a.*b]' }]);
  });

  it('--limit shows the newest N and says how many more; the terminal shows controls and bidi marks visibly, JSON escapes them', () => {
    const limited = t.search(['--limit', '1', 'kaffee']);
    expect(limited.status).toBe(0);
    expect(limited.stdout).toMatch(/^#\s+MSG\s+DATE\s+FROM\s+SUBJECT\n2\s+2\s+\S+\s+Max <max@tickets.example>\s+Re: Kaffee\n {4}We looked: <script>alert\(1\)<\/script> is only text\. Grüße\n1 more \(--limit 2\)\n$/);
    const hostile = t.search(['subject:hostile']);
    expect(hostile.status).toBe(0);
    expect(hostile.stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/);
    const json = t.search(['--json', 'subject:hostile']);
    expect(json.stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/);
    expect(json.stdout).toContain('hostile \\u009b31m \\u202egnp.exe');
    expect(JSON.parse(json.stdout).results[0].subject).toBe(HOSTILE);
  });

  it('no match: exit 1 and one line; bad queries: exit 2 and one line, in bounded time', () => {
    expect(t.search(['nothingatall'])).toMatchObject({ status: 1, stdout: '', stderr: 'ticket-mail: no message matches\n' });
    const bad: Array<[string[], RegExp]> = [
      [['foo:bar'], /unknown field "foo:"/], [['"unclosed'], /a quote is not closed/], [['before:2026-02-30'], /before: wants a date as YYYY-MM-DD/],
      [['after:yesterday'], /after: wants a date/], [['is:pending'], /is: wants open, closed or waiting/], [['ticket:0'], /ticket: wants a ticket number/],
      [['subject:'], /subject: has no value/], [['""'], /an empty phrase/], [['   '], /the query is empty/], [['--limit', '0', 'x'], /--limit wants a number/],
      [['x'.repeat(100_000)], /the query is too long \(100000 characters; at most 1000\)/],
      [[Array.from({ length: 10_000 }, (_, i) => `w${i}`).join(' ').slice(0, 999)], /too many terms \(at most 20\)/],
      [Array.from({ length: 10_000 }, (_, i) => `w${i}`), /the query is too long/],
    ];
    for (const [query, message] of bad) {
      const r = t.search(query);
      expect(r.status, query.join(' ').slice(0, 40)).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^ticket-mail: bad query: [^\n]+\n$/);
      expect(r.stderr).toMatch(message);
    }
    expect(() => parseQuery('is:waiting')).not.toThrow();
  });

  it('is:waiting: the open tickets whose last word is not ours, by the list\'s waiting facts and this config', () => {
    const r = deliver([...t.settings, 'search', '--json', 'is:waiting', 'cafe'], '', t.env);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).results.map((x: { ticket: number; message: number }) => `${x.ticket}/${x.message}`)).toEqual(['1/1']); // Max, an admin, answered ticket 2
    expect(t.hits('is:waiting', 'cafe')).toEqual(['1/1', '2/1']); // without --admin, Max is anyone: ticket 2 waits on us too
    expect(t.hits('is:waiting', 'solved')).toEqual([]);            // closed: waits on nobody
  });
});

describe('search: the folding and the snippet', { timeout: 120_000 }, () => {
  it('folds case, accents, ß and final sigma; a snippet is cut around the match, in a line of 10 MB too', () => {
    expect(foldText('Café STRAßE ΟΔΟΣ e\u0301\t\n x')).toBe('cafe strasse οδοσ e x');
    const long = `${'a'.repeat(5_000_000)} the Printer ${'b'.repeat(5_000_000)}`;
    const started = Date.now();
    const pieces = snippet(long, ['printer']);
    expect(Date.now() - started).toBeLessThan(20_000); // linear: a bound no loaded machine outruns, and a quadratic cut would
    expect(pieces.map((p) => p.text).join('').length).toBeLessThan(200);
    expect(pieces.find((p) => p.match)?.text).toBe('Printer');
    expect(snippet('Ünïcödé ÉCOLE', ['ecole'])).toEqual([{ text: 'Ünïcödé ' }, { text: 'ÉCOLE', match: true }]);
    expect(snippet('x \u{1F600}printer y', ['printer'])).toEqual([{ text: 'x \u{1F600}' }, { text: 'printer', match: true }, { text: ' y' }]);
  });
});

/** The search cache's files: the bucket of tickets 1-99 (its header and lines), the manifest. */
const cacheFolder = (tickets: string) => join(tickets, '.ticket-mail', 'search');
const bucketLines = (tickets: string) => readFileSync(join(cacheFolder(tickets), '0.txt'), 'utf8').split('\n').slice(1).filter(Boolean);

describe('search: the cache', { timeout: 120_000 }, () => {
  it('reads a ticket that only grew from where it grew, a moved one not at all, a rewritten one again', async () => {
    const t = fixture();
    const run = () => searchTickets(t.store, parseQuery('kaffee'), { cache: 'save', limit: 50, env: t.env });
    searchReads.messages = 0;
    expect((await run()).total).toBe(2);
    expect(searchReads.messages).toBe(5); // every message once
    expect(lstatSync(cacheFolder(t.tickets)).mode & 0o777).toBe(0o700);
    expect(lstatSync(join(cacheFolder(t.tickets), '0.txt')).mode & 0o777).toBe(0o600);
    searchReads.messages = 0;
    await run();
    expect(searchReads.messages).toBe(0);
    t.send('ticket-2@tickets.example', mail({ from: 'Bob <bob@customer.example>', subject: 'Re: Kaffee', id: 's7@customer.example', body: 'Noch kalt.\n' }), 'bob@customer.example');
    searchReads.messages = 0;
    const grown = await run();
    expect(searchReads.messages).toBe(1); // the new message only
    expect(grown.total).toBe(3);
    expect(bucketLines(t.tickets).map((l) => l.split('\t').slice(0, 2).join('/'))).toEqual(['1/1', '2/1', '2/2', '2/3', '3/1', '4/1']);
    // Closed: appended to and moved into archived/ (the same file): only the close message is read.
    t.send('ticket-2-done@tickets.example', mail({ from: 'Bob <bob@customer.example>', subject: 'Re: Kaffee', id: 's8@customer.example', body: 'Erledigt.\n' }), 'bob@customer.example');
    searchReads.messages = 0;
    const moved = await run();
    expect(searchReads.messages).toBe(1);
    expect(moved.results.map((r) => `${r.ticket}/${r.message}/${r.state}`)).toEqual(['2/4/closed', '2/3/closed', '2/2/closed', '2/1/closed']);
    // Rewritten (as mutt's sync does: a message deleted, the file written anew): read whole again.
    const path = join(t.tickets, 'archived', '2');
    const records = readFileSync(path, 'latin1').split(/(?<=\n)(?=From )/);
    writeFileSync(path, Buffer.from([records[0], records[2], records[3]].join(''), 'latin1'));
    searchReads.messages = 0;
    const rewritten = await run();
    expect(searchReads.messages).toBe(3);
    expect(rewritten.results.map((r) => r.message)).toEqual([3, 2, 1]);
    expect((await searchTickets(t.store, parseQuery('looked'), { cache: 'save', limit: 50, env: t.env })).total).toBe(0); // the deleted message
    expect((await searchTickets(t.store, parseQuery('noch'), { cache: 'save', limit: 50, env: t.env })).results.map((r) => r.message)).toEqual([2]);
  });

  it('a record still being written when the cache saw it is read again once whole', async () => {
    const t = fixture();
    const run = (q: string) => searchTickets(t.store, parseQuery(q), { cache: 'save', limit: 50, env: t.env });
    const path = join(t.tickets, '4');
    const whole = readFileSync(path);
    const record = `From eve@customer.example Sat Nov 28 10:00:00 2026\nX-Ticket-Mail: ticket 4\nFrom: Eve <eve@customer.example>\nSubject: late\n\nfirst half second half\n\n`;
    writeFileSync(path, Buffer.concat([whole, Buffer.from(record.slice(0, record.indexOf('second')))]));
    expect((await run('first')).total).toBe(1);
    expect((await run('second')).total).toBe(0);
    writeFileSync(path, Buffer.concat([whole, Buffer.from(record)]));
    searchReads.messages = 0;
    expect((await run('second')).total).toBe(1);
    expect(searchReads.messages).toBe(1);
  });

  it('garbage, a symlink, a foreign generation: no cache (never followed, never trusted), and replaced', () => {
    const t = fixture();
    expect(t.hits('printer')).toEqual(['1/1']);
    const folder = cacheFolder(t.tickets);
    const outside = join(t.dir, 'outside.txt');
    writeFileSync(outside, 'not ours\n');
    for (const spoil of [
      () => writeFileSync(join(folder, '0.txt'), 'garbage\n\u0000\u0001'),
      () => { rmSync(join(folder, '0.txt')); symlinkSync(outside, join(folder, '0.txt')); },
      () => writeFileSync(join(folder, 'manifest.json'), '{"version":"ticket-mail search cache 1","buckets":{"0":"forged"},"trusted":true,"folders":{"open":null,"archived":null}}'),
      // A link to a file of the machine's, here a stand-in: a test must never aim at /etc/passwd (a
      // mutation that wrote through this link once replaced the machine's own).
      () => { rmSync(join(folder, 'manifest.json')); symlinkSync(outside, join(folder, 'manifest.json')); },
      () => { rmSync(folder, { recursive: true }); writeFileSync(folder, 'a file where the folder was'); },
    ]) {
      spoil();
      expect(t.hits('printer')).toEqual(['1/1']);
      expect(t.hits('prinzer')).toEqual([]);
    }
    expect(readFileSync(outside, 'utf8')).toBe('not ours\n');
  });

  it('where the state folder cannot take it, in the user\'s own cache folder; where neither can, by reading every ticket', () => {
    const t = fixture();
    rmSync(cacheFolder(t.tickets), { recursive: true, force: true });
    writeFileSync(cacheFolder(t.tickets), ''); // not a folder: as one the user may not write
    const xdg = join(t.dir, 'xdg');
    expect(t.json(['printer'], { XDG_CACHE_HOME: xdg }).total).toBe(1);
    const [own] = readdirSync(join(xdg, 'ticket-mail'));
    expect(own).toMatch(/^search-[0-9a-f]{16}$/);
    expect(lstatSync(join(xdg, 'ticket-mail', own!)).mode & 0o777).toBe(0o700);
    expect(readdirSync(join(xdg, 'ticket-mail', own!)).sort()).toEqual(['0.txt', 'manifest.json']);
    const absentHome = join(t.dir, 'nonexistent', 'home');
    expect(t.json(['printer'], { XDG_CACHE_HOME: '', HOME: absentHome }).total).toBe(1);
    expect(existsSync(join(t.dir, 'nonexistent'))).toBe(false); // a HOME that is not there is not made
    expect(t.json(['printer'], { XDG_CACHE_HOME: join(t.dir, 'nonexistent', 'xdg'), HOME: '' }).total).toBe(1);
    expect(existsSync(join(t.dir, 'nonexistent'))).toBe(false);
    mkdirSync(join(t.dir, 'ro'), { mode: 0o500 });
    expect(t.json(['printer'], { XDG_CACHE_HOME: join(t.dir, 'ro', 'x', 'y'), HOME: '' }).total).toBe(1);
  });

  it('two searches racing deliveries: each answers, and the next search sees every message', async () => {
    const t = fixture();
    expect(t.hits('printer')).toEqual(['1/1']);
    const runs = await Promise.all([
      ...Array.from({ length: 3 }, (_, i) => deliverAsync([...t.settings, '--recipient', 'ticket-1@tickets.example', '--sender', 'jose@customer.example'],
        mail({ from: 'jose@customer.example', subject: 'Re: printer', id: `race${i}@customer.example`, body: `racing printer ${i}\n` }))),
      deliverAsync(['--dir', t.tickets, 'search', '--json', 'printer'], '', t.env),
      deliverAsync(['--dir', t.tickets, 'search', '--json', 'printer'], '', t.env),
    ]);
    for (const r of runs) expect(r.status, r.stderr).toBe(0);
    expect(t.hits('racing')).toEqual(['1/2', '1/3', '1/4']);
    expect(t.hits('printer')).toEqual(['1/1', '1/2', '1/3', '1/4']);
  });
});

/** The tickets folders as they are a while after their last change (past the racy margin): a search trusts them then. */
const settled = (tickets: string) => {
  const past = new Date(Date.now() - 60_000);
  for (const folder of [tickets, join(tickets, 'archived')]) if (existsSync(folder)) utimesSync(folder, past, past);
};
const manifestOf = (tickets: string) => JSON.parse(readFileSync(join(cacheFolder(tickets), 'manifest.json'), 'utf8'));

describe('search: the cache across versions and deliveries', { timeout: 120_000 }, () => {
  it('a cache of another version is made again, its folders not trusted (its buckets are not read)', () => {
    const t = fixture();
    settled(t.tickets);
    expect(t.hits('printer')).toEqual(['1/1']);
    const manifest = manifestOf(t.tickets);
    expect(manifest.folders.open.trusted).toBe(true);
    writeFileSync(join(cacheFolder(t.tickets), 'manifest.json'), JSON.stringify({ ...manifest, version: 'ticket-mail search cache 2' }) /* as an older ticket-mail left it */);
    expect(t.hits('printer')).toEqual(['1/1']);
    expect(manifestOf(t.tickets).version).toBe(manifest.version);
    expect(t.hits('kaffee')).toEqual(['2/1', '2/2']);
  });

  it('a delivery into a folder the cache trusts is found: its dotlock changed the folder, each ticket is looked at again', () => {
    const t = fixture();
    settled(t.tickets);
    expect(t.hits('printer')).toEqual(['1/1']);
    expect(manifestOf(t.tickets).folders.open.trusted).toBe(true);
    t.send('ticket-4@tickets.example', mail({ from: 'Eve <eve@customer.example>', subject: 'Re: printer', id: 's9@customer.example', body: 'The printer again.\n' }), 'eve@customer.example');
    expect(t.hits('printer')).toEqual(['1/1', '4/2']);
  });

  it('a bucket whose lines are cut or grown by hand, its head as written, is no cache (its lines are read only when searched)', () => {
    const t = fixture();
    settled(t.tickets);
    expect(t.hits('printer')).toEqual(['1/1']);
    const bucket = join(cacheFolder(t.tickets), '0.txt');
    const written = readFileSync(bucket);
    for (const spoiled of [written.subarray(0, written.length - 20), Buffer.concat([written, Buffer.from('4\t1\t0\t1\t0\tforged\t\t\t\tprinter\n')])]) {
      writeFileSync(bucket, spoiled);
      expect(t.hits('printer')).toEqual(['1/1']);
      expect(t.hits('テスト')).toEqual(['4/1']); // the end of the last line, the one cut
      expect(readFileSync(bucket).length).toBe(written.length); // made again
    }
  });
});

describe('search: the first results of many', { timeout: 120_000 }, () => {
  // searchTickets keeps only the first --limit matches as it finds them (a heap), not all of them
  // sorted: each limit's results must be the first of the whole order, ties in time broken by the
  // higher ticket and then the later message, across buckets, and the total must count them all.
  it('any --limit gives the first results of the whole order, newest first, and the total of all', () => {
    const t = fixture();
    t.send('submit@tickets.example', mail({ from: 'eve@customer.example', subject: 'zebra', id: 'zebra0@customer.example', body: 'zebra 0\n' }), 'eve@customer.example');
    for (const i of [1, 2, 3]) t.send('ticket-5@tickets.example', mail({ from: 'eve@customer.example', subject: 'Re: zebra', id: `zebra${i}@customer.example`, body: `zebra ${i}\n` }), 'eve@customer.example');
    // Copies of ticket 5 in three buckets: the same times, so ties everywhere.
    const copies = [6, 7, 99, 100, 101, 250, 251, 252];
    for (const n of copies) copyFileSync(join(t.tickets, '5'), join(t.tickets, String(n)));
    t.send('ticket-7@tickets.example', mail({ from: 'eve@customer.example', subject: 'Re: zebra', id: 'zebra-last@customer.example', body: 'zebra last\n' }), 'eve@customer.example');
    const all = t.json(['--limit', '1000', 'zebra']);
    const order = all.results.map((r) => `${r.ticket}/${r.message}`);
    expect(all.total).toBe(order.length);
    expect(all.total).toBeGreaterThanOrEqual(4 * (1 + copies.length) + 1); // ticket 5 and each copy: its first message and three answers; one more in 7
    expect(new Set(order.map((o) => o.split('/')[0])).size).toBe(1 + copies.length);
    const key = (r: (typeof all.results)[number]) => [Date.parse((r as unknown as { date: string }).date), r.ticket, r.message];
    for (let i = 1; i < all.results.length; i++) {
      const [a, b] = [key(all.results[i - 1]!), key(all.results[i]!)];
      expect(a[0]! > b[0]! || (a[0] === b[0] && (a[1]! > b[1]! || (a[1] === b[1] && a[2]! > b[2]!))), `${order[i - 1]} before ${order[i]}`).toBe(true);
    }
    for (let limit = 1; limit <= order.length + 1; limit++) {
      const some = t.json(['--limit', String(limit), 'zebra']);
      expect(some.total).toBe(all.total);
      expect(some.results.map((r) => `${r.ticket}/${r.message}`), `--limit ${limit}`).toEqual(order.slice(0, limit));
    }
  });

  // The exported searchTickets takes any number (the CLI refuses less than 1): a fraction rounded
  // down, nothing kept below 1 or for NaN, and the total counted all the same.
  it('searchTickets with a limit of 0, NaN, -1 or 2.5 keeps none, none, none and 2, and counts all', async () => {
    const t = fixture();
    t.send('submit@tickets.example', mail({ from: 'eve@customer.example', subject: 'okapi', id: 'okapi0@customer.example', body: 'okapi 0\n' }), 'eve@customer.example');
    for (const i of [1, 2]) t.send('ticket-1@tickets.example', mail({ from: 'eve@customer.example', subject: 'Re: okapi', id: `okapi${i}@customer.example`, body: `okapi ${i}\n` }), 'eve@customer.example');
    const run = (limit: number) => searchTickets(t.store, parseQuery('okapi'), { cache: 'save', limit, env: t.env });
    const all = (await run(50)).results.map((r) => r.message);
    expect(all).toHaveLength(3);
    for (const [limit, kept] of [[0, 0], [Number.NaN, 0], [-1, 0], [2.5, 2], [1, 1]] as const) {
      const found = await run(limit);
      expect(found.total, `limit ${limit}`).toBe(3);
      expect(found.results.map((r) => r.message), `limit ${limit}`).toEqual(all.slice(0, kept));
    }
  });
});

describe('search: the viewer\'s /?q=', { timeout: 120_000 }, () => {
  const t = fixture();
  const viewer = { store: t.store, base: '', access: { kind: 'loopback' as const, uids: new Set([process.getuid!()]) } };
  const get = async (target: string) => {
    const reply = await handle(viewer, { method: 'GET', target, peerUid: process.getuid!() });
    return { ...reply, text: String(reply.body ?? '') };
  };

  it('the results page: escaped, matches marked, linked to /N/#K; the form\'s pages allow only a form to the viewer', async () => {
    const r = await get('/?q=%3Cscript%3E');
    expect(r.status).toBe(200);
    expect(r.headers['Content-Security-Policy']).toBe("default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
    expect(r.text).toContain('We looked: <mark>&lt;script&gt;</mark>alert(1)&lt;/script&gt; is only text.');
    expect(r.text).toContain('<a href="/2/#2">#2, message 2: <bdi>Re: Kaffee</bdi></a>');
    expect(r.text).not.toMatch(/<script/i);
    expect(r.text).toContain('<input type="search" name="q" value="&lt;script&gt;"');
    const hostile = await get('/?q=subject%3Ahostile');
    expect(hostile.text).toContain('<bdi>hostile &lt;U+009B&gt;31m &lt;U+202E&gt;gnp.exe</bdi>');
    expect(hostile.text).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/);
    expect((await get('/')).headers['Content-Security-Policy']).toContain("form-action 'self'");
    expect((await get('/')).text).toContain('<form role="search" method="get" action="/">');
    expect((await get('/archived/')).headers['Content-Security-Policy']).toContain("form-action 'self'");
    for (const other of ['/1/', '/1/1/raw', '/new.atom', '/nope']) expect((await get(other)).headers['Content-Security-Policy'], other).toContain("form-action 'none'");
  });

  it('a bad query is a message on the page (400), no match a plain line', async () => {
    const bad = await get(`/?q=${encodeURIComponent('from:"x')}`);
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('<p role="alert">Bad query: a quote is not closed: &quot;x</p>');
    const none = await get('/?q=nothingatall');
    expect(none.status).toBe(200);
    expect(none.text).toContain('<p>No message matches.</p>');
    const long = await get(`/?q=${'x'.repeat(100_000)}`);
    expect(long.status).toBe(400);
    expect(long.text).toContain('the query is too long');
  });

  it('serve keeps what it read in memory and writes nothing into the tickets folder', async () => {
    const u = fixture();
    const v = { ...viewer, store: u.store };
    const before = readdirSync(join(u.tickets, '.ticket-mail')).sort();
    const reply = await handle(v, { method: 'GET', target: '/?q=printer', peerUid: process.getuid!() });
    expect(String(reply.body)).toContain('<mark>printer</mark>');
    expect(readdirSync(join(u.tickets, '.ticket-mail')).sort()).toEqual(before);
    searchReads.messages = 0;
    await handle(v, { method: 'GET', target: '/?q=jammed', peerUid: process.getuid!() });
    expect(searchReads.messages).toBe(0);
  });
});

if (browserMissing) console.log(`skipped: search in a browser: ${browserMissing}`);

describe.skipIf(browserMissing)('search: the viewer in Chromium', { timeout: 120_000 }, () => {
  const t = fixture();
  let serve: ServeServer | undefined;
  let browser: Browser | undefined;
  afterAll(async () => { await browser?.close(); await serve?.stop(); });

  it('the search box sends the query to /?q=; the results show hostile mail as text, run nothing, load nothing else, link to the message', async () => {
    serve = await startServe(['--dir', t.tickets, '--domain', 'tickets.example', '--listen', '127.0.0.1:0']);
    browser = (await launchBrowser())!;
    const page = await (await browser.newContext()).newPage();
    const watch = watchPage(page, serve.url);
    await page.goto(serve.url);
    await page.fill('input[name=q]', '<script>');
    await Promise.all([page.waitForURL(/\?q=/), page.click('button[type=submit]')]);
    await settle(page);
    expect(new URL(page.url()).search).toBe('?q=%3Cscript%3E');
    expect(await page.textContent('ol.found')).toContain('We looked: <script>alert(1)</script> is only text. Grüße');
    expect(await page.textContent('ol.found mark')).toBe('<script>');
    expect(await page.inputValue('input[name=q]')).toBe('<script>');
    await page.fill('input[name=q]', 'subject:hostile');
    await Promise.all([page.waitForURL(/hostile/), page.press('input[name=q]', 'Enter')]);
    await settle(page);
    expect(await page.textContent('ol.found a')).toBe('#4, message 1: hostile <U+009B>31m <U+202E>gnp.exe');
    await Promise.all([page.waitForURL(/\/4\/#1$/), page.click('ol.found a')]);
    expect(await page.textContent('article[id="1"] h2')).toContain('hostile');
    await page.goto(`${serve.url}?q=${encodeURIComponent('from:"x')}`);
    expect(await page.textContent('[role=alert]')).toBe('Bad query: a quote is not closed: "x');
    expect(watch.dialogs).toEqual([]);
    expect(watch.errors).toEqual([]);
    expect(watch.failed).toEqual([]);
    for (const request of watch.requests) expect(request).toMatch(/^\/(?:\?q=[^&]*)?$|^\/style\.css$|^\/4\/$/);
  });
});
