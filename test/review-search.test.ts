// Hostile review of search (issue 18): what a sender with a mail account, a maintainer's tools
// and a curious newcomer can do to `ticket-mail search` and the viewer's /?q=. Tickets made by
// real deliveries of the built file (the harness), searched through the built file or the
// viewer's handler.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { renameSync, rmSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Store, parseQuery, resolveConfig, snippet } from '../ticket.ts';
import { handle } from '../viewer.ts';
import { BIN, deliver, mail, PRIVATE_ENV, searchFolder } from './harness.ts';

interface Found { total: number; results: Array<{ ticket: number; message: number; date: string; from: string; snippet: Array<{ text: string; match?: true }> }> }

/** A tickets folder with two tickets (1, 2) and a third closed (archived/3), delivered as an MTA delivers them. */
function fixture() {
  const { dir, tickets, send, env } = searchFolder('tm-review-search-');
  const search = (...query: string[]) => deliver(['--dir', tickets, 'search', ...query], '', env);
  const json = (...query: string[]) => {
    const r = search('--json', ...query);
    expect(r.status, r.stderr).toBeLessThan(2);
    return JSON.parse(r.stdout) as Found;
  };
  const hits = (...query: string[]) => json(...query).results.map((r) => `${r.ticket}/${r.message}`).sort();
  send('submit@tickets.example', mail({ from: 'Jose <jose@customer.example>', subject: 'Printer', id: 'r1@customer.example', body: 'The printer is jammed.\n' }));
  send('submit@tickets.example', mail({ from: 'Bob <bob@customer.example>', subject: 'Kaffee', id: 'r2@customer.example', body: 'Der Kaffee ist kalt.\n' }), 'bob@customer.example');
  send('submit@tickets.example', mail({ from: 'Carol <carol@customer.example>', subject: 'Invoice', id: 'r3@customer.example', body: 'Wrong invoice.\n' }), 'carol@customer.example');
  send('ticket-3-done@tickets.example', mail({ from: 'Carol <carol@customer.example>', subject: 'Re: Invoice', id: 'r4@customer.example', body: 'Solved.\n' }), 'carol@customer.example');
  const store = new Store(resolveConfig({ dir: tickets, domain: 'tickets.example' }, {}, {}));
  const viewer = { store, base: '', access: { kind: 'loopback' as const, uids: new Set([process.getuid!()]) } };
  const get = async (target: string) => {
    const reply = await handle(viewer, { method: 'GET', target, peerUid: process.getuid!() });
    return { status: reply.status, text: String(reply.body ?? '') };
  };
  return { dir, tickets, send, search, json, hits, get };
}

describe('review: search', { timeout: 240_000 }, () => {
  // The snippet folded the text a character at a time and asked `folded.endsWith(' ')` at each
  // white space: V8 flattens the string built so far for that, so the cost was quadratic in the
  // spaces. Each result shown reads up to 128 KiB of text: one mail of "x x x ..." cost a second
  // a result, 50 of them a minute of the viewer's only thread (serve answers nobody meanwhile).
  it('a snippet costs time linear in its text, whatever white space it holds', () => {
    for (const space of [' ', '\u00a0', '\t', '\u3000']) {
      const text = `${`x${space}`.repeat(150_000)}invoice`;
      const started = Date.now();
      const pieces = snippet(text, ['invoice']);
      expect(Date.now() - started, JSON.stringify(space)).toBeLessThan(20_000); // quadratic: minutes; linear: well under a second
      expect(pieces.find((p) => p.match)?.text).toBe('invoice');
    }
  });

  // The From_ line was read from the record's first 1,024 bytes, but recordChunks writes one of
  // up to 1,031 (the envelope sender cut at 1,000): with a long sender the line had no time, and
  // the Date: header the sender wrote was taken instead. A message "of 2100" led every search
  // (newest first) and escaped before:/after:.
  it('a message\'s time is its From_ line\'s, for every sender a delivery writes, never the Date: the sender chose', () => {
    const t = fixture();
    const started = Date.now();
    for (const [i, sender] of [`${'a'.repeat(1100)}@evil.example`, `${'é'.repeat(200)}@evil.example`, `${'%'.repeat(400)}@evil.example`].entries()) {
      t.send('submit@tickets.example', mail({ from: 'Eve <eve@evil.example>', subject: `pinned ${i}`, id: `pin${i}@evil.example`,
        headers: ['Date: Fri, 01 Jan 2100 00:00:00 +0000'], body: 'urgent printer\n' }), sender);
    }
    const found = t.json('urgent');
    expect(found.total).toBe(3);
    for (const r of found.results) {
      expect(Date.parse(r.date), r.date).toBeGreaterThan(started - 86_400_000);
      expect(Date.parse(r.date), r.date).toBeLessThan(Date.now() + 86_400_000);
    }
    expect(t.search('after:2099-01-01')).toMatchObject({ status: 1 });
    expect(t.json('printer').results[0]!.from).toBe('Eve <eve@evil.example>'); // the newest: filed last, not "of 2100"
  });

  // A ticket file that held no record (emptied: mutt, with save_empty, leaves a ticket whose
  // messages were all deleted as an empty file) and then grew was "read on" from its last
  // record, of which it had none: its messages were numbered from 0, and the viewer's link
  // /N/#K pointed at the message before the one found.
  it('a ticket that was empty and grew: its messages are numbered as the viewer numbers them', async () => {
    const t = fixture();
    truncateSync(join(t.tickets, '2'), 0);
    expect(t.search('kaffee')).toMatchObject({ status: 1 }); // the search saw it empty
    t.send('ticket-2@tickets.example', mail({ from: 'Bob <bob@customer.example>', subject: 'Re: Kaffee', id: 'e1@customer.example', body: 'refilled once\n' }), 'bob@customer.example');
    expect(t.hits('refilled')).toEqual(['2/1']);
    t.send('ticket-2@tickets.example', mail({ from: 'Bob <bob@customer.example>', subject: 'Re: Kaffee', id: 'e2@customer.example', body: 'refilled twice\n' }), 'bob@customer.example');
    expect(t.hits('refilled')).toEqual(['2/1', '2/2']);
    expect(t.hits('twice')).toEqual(['2/2']);
    const page = (await t.get('/2/')).text;
    const article = (k: number) => page.split(`<article id="${k}">`)[1]!.split('</article>')[0];
    expect(article(1)).toContain('refilled once');
    expect(article(2)).toContain('refilled twice');
    const results = (await t.get('/?q=twice')).text;
    expect(results).toContain('<a href="/2/#2">');
  });

  // serve keeps its cache in memory across searches. A search that failed half-way (here: the
  // second folder could not be read; under load: EMFILE) had already recorded the first folder
  // as read and unchanged, but not the changes it read there: the next search trusted that
  // folder and never looked at its new messages again, until the folder changed.
  it('serve: a search that failed half-way loses no change it had read', async () => {
    const t = fixture();
    expect((await t.get('/?q=printer')).text).toContain('<mark>printer</mark>');
    t.send('ticket-1@tickets.example', mail({ from: 'Jose <jose@customer.example>', subject: 'Re: Printer', id: 'l1@customer.example', body: 'lostword here\n' }));
    const aged = (Date.now() - 60_000) / 1000; // the folder as if unchanged for a minute (trusted once read), without waiting for it
    const archived = join(t.tickets, 'archived');
    renameSync(archived, `${archived}.away`);
    writeFileSync(archived, 'not a folder');
    utimesSync(t.tickets, aged, aged);
    expect((await t.get('/?q=lostword')).status).toBe(500); // archived/ cannot be read
    rmSync(archived);
    renameSync(`${archived}.away`, archived);
    utimesSync(t.tickets, aged, aged); // the open folder exactly as that search saw it
    const r = await t.get('/?q=lostword');
    expect(r.status).toBe(200);
    expect(r.text).toContain('<mark>lostword</mark>');
  });

  // Whether a term may start inside a word (scripts written without spaces) was decided by its
  // first UTF-16 unit: for a Han character outside the BMP (𠮷, common in Japanese names) that is
  // a lone surrogate, no Han letter, so the term had to start a word and was not found in text.
  it('a term starting with a character outside the BMP of a script without spaces is found anywhere', () => {
    const t = fixture();
    t.send('submit@tickets.example', mail({ from: 'Yoshino <y@customer.example>', subject: '=?UTF-8?B?' + Buffer.from('株式会社𠮷野家のお問い合わせ').toString('base64') + '?=',
      id: 'cjk@customer.example', headers: ['MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit'], body: 'こちらは株式会社𠮷野家です。\n' }), 'y@customer.example');
    expect(t.hits('𠮷野家')).toEqual(['4/1']);
    expect(t.hits('subject:𠮷野')).toEqual(['4/1']);
    expect(t.hits('body:𠮷野家です')).toEqual(['4/1']);
    expect(t.json('𠮷野').results[0]!.snippet.find((p) => p.match)?.text).toBe('𠮷野');
  });

  // An error (a folder it cannot read) exited 1, as "no message matches" does: a script asking
  // "is it there?" read a broken installation as "no". grep, the model of these codes, exits 2.
  it('an error is exit 2 and one line, never the 1 of "no match"', () => {
    const t = fixture();
    expect(t.search('nothingatall')).toMatchObject({ status: 1, stderr: 'ticket-mail: no message matches\n' });
    const archived = join(t.tickets, 'archived');
    rmSync(archived, { recursive: true });
    writeFileSync(archived, 'not a folder');
    const r = t.search('printer');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^ticket-mail: [^\n]*archived[^\n]*\n$/);
  });

  // new Date(y, m, d) reads the years 0-99 as 1900-1999: "before:0099-12-31" meant 1999.
  it('a date of a year before 100 is that year', () => {
    expect(new Date(parseQuery('after:0099-01-01').after!).getFullYear()).toBe(99);
    expect(new Date(parseQuery('before:0001-12-31').before!).getFullYear()).toBe(1);
    expect(new Date(parseQuery('before:1999-12-31').before!).getFullYear()).toBe(1999);
    expect(() => parseQuery('before:0099-02-29')).toThrow(/wants a date/); // 99 was no leap year
  });

  // A FIFO named as a ticket (a maintainer's mistake, or a planted one in a folder a team can
  // write) held search's open of it forever, and in serve every search queued behind it.
  // list (and is:waiting through it) waited on one the same way.
  it('a FIFO where a ticket should be is skipped, never waited on: search, is:waiting, list', () => {
    const t = fixture();
    expect(spawnSync('mkfifo', [join(t.tickets, '7')]).status).toBe(0);
    const run = (...args: string[]) => spawnSync(process.execPath, [BIN, '--dir', t.tickets, ...args], { env: { ...PRIVATE_ENV, HOME: join(t.dir, 'home') }, timeout: 60_000, encoding: 'utf8' });
    for (const args of [['search', 'printer'], ['search', 'is:waiting', 'printer'], ['list']]) {
      const r = run(...args);
      expect(r.signal, `${args.join(' ')}: killed: it waited on the FIFO`).toBe(null);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain(args[0] === 'list' ? 'Printer' : 'The printer is jammed.');
    }
  });
});
