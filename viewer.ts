/*
 * ticket-mail's history viewer: every ticket readable in a browser, read-only, as `ticket-mail
 * serve` (a small HTTP server) or `ticket-mail cgi` (the same pages under a web server).
 *
 * Its threat model is not the delivery's: every byte of every message is a stranger's, and here
 * it meets a browser, in the maintainer's session. So (public-inbox is the model):
 * - Mail HTML is never rendered: an HTML-only message is shown as text (htmlToText). There is no
 *   JavaScript at all, and every response forbids it (CSP default-src 'none'), so even a mistake
 *   in escaping runs nothing and loads nothing (no tracking pixel can tell a sender it was read).
 * - Every value goes into a page through one `html` template that escapes it, and shows control
 *   and bidi characters as visible marks (visible()), each mail value isolated in <bdi>.
 * - No response header is copied from mail: an attachment is text/plain (text/*) or an
 *   application/octet-stream download, its name rebuilt from a safe alphabet.
 * - Routes are anchored patterns matched against the raw request path; a file path is made only
 *   from a parsed, range-checked ticket number, never from the URL's text.
 * - Read-only: it never writes into the tickets folder and never takes a lock. A record being
 *   appended under a lock is left out until it is complete.
 * It reuses ticket.ts's readers (mbox records, the list cache, MIME outline and text, the index).
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync, statSync, writeSync, constants as fsc } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  type Config, type Message, type TicketRow, MessageIndex, Store, decodedSubject, field, headEnd, headerSafe, listTickets,
  mboxRecordAt, mboxStarts, messageIds, messageText, mimeValue, outlineParts, parseHead, oneLine, parseQuery, parseTicketNumber, QueryError,
  readCloses, searchTickets, sha256, shortDuration, shownMailboxes, ticketStats, visible, waitingOnUs,
} from './ticket.ts';

/** node:crypto, loaded only where a secret is checked or made: a CGI page never needs it (its load is ~5 ms of each page). */
let cryptoModule: Promise<typeof import('node:crypto')> | undefined;
const nodeCrypto = () => (cryptoModule ??= import('node:crypto'));

declare global { interface String { toWellFormed(): string } } // ES2024; Node 20 and Bun have it

// ---------------------------------------------------------------------------------------
// Requests and replies: what both modes (serve, cgi) hand to handle() and write out
// ---------------------------------------------------------------------------------------

export interface Request {
  method: string;
  target: string;              // the raw request path below the viewer's base, with its query
  host?: string;               // the Host header (serve mode checks it)
  authorization?: string;
  cookie?: string;
  remoteUser?: string;         // CGI: who the web server authenticated (with AUTH_TYPE set: see cgi())
  fetchSite?: string;          // Sec-Fetch-Site, Sec-Fetch-Mode: who asks, and how (the browser says)
  fetchMode?: string;
  peerUid?: number;            // serve on loopback: the account that opened the connection
}

export type Body = string | Buffer | AsyncIterable<Buffer | string>;
/** `release`: called once the body is written or dropped (it closes the ticket a streamed body reads). */
export interface Reply { status: number; headers: Record<string, string>; body?: Body; release?: () => void; searchForm?: true }

/** Who may read (checked once, before routing: the feed and the mbox included). */
export type Access =
  | { kind: 'loopback'; uids: Set<number> }               // serve on 127.0.0.1 without secrets: only these accounts (and the Host check)
  | { kind: 'web-server' }                                 // cgi: the web server authenticates (REMOTE_USER)
  | { kind: 'secrets'; token?: Buffer; users?: Map<string, PasswordHash> };

export interface Viewer {
  store: Store;
  base: string;                // '' or the CGI's SCRIPT_NAME, e.g. /tickets
  access: Access;
  hosts?: Set<string>;         // Host header values accepted (serve mode)
}

/** Every response: no script, no remote anything, no framing, no sniffing, no caching of private mail. */
const SECURITY_HEADERS = {
  'Content-Security-Policy': "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'X-Frame-Options': 'DENY',
};
/**
 * A page with the search box may send its form to the viewer itself, and only there (a GET to
 * /?q=); every other page keeps form-action 'none' (doc/viewer.md: why).
 */
const SEARCH_FORM_CSP = SECURITY_HEADERS['Content-Security-Policy'].replace("form-action 'none'", "form-action 'self'");

const STATUS_TEXT: Record<number, string> = {
  200: 'OK', 300: 'Multiple Choices', 301: 'Moved Permanently', 302: 'Found', 303: 'See Other', 400: 'Bad Request',
  401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 421: 'Misdirected Request',
  500: 'Internal Server Error', 503: 'Service Unavailable',
};

// ---------------------------------------------------------------------------------------
// HTML: one template that escapes every value
// ---------------------------------------------------------------------------------------

/** Markup we made; anything else put into a page is text. */
class Markup { constructor(readonly text: string) {} toString() { return this.text; } }

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const escapeText = (text: string) => text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);

/**
 * html`...${value}...`: each value is escaped and its control and bidi characters shown as marks
 * (visible()), unless it is Markup (another html`` result); arrays are joined; undefined, null
 * and false give nothing. Lone surrogates (an HTML entity in mail can make one) become U+FFFD.
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Markup {
  const fill = (value: unknown): string => {
    if (value instanceof Markup) return value.text;
    if (Array.isArray(value)) return value.map(fill).join('');
    if (value === undefined || value === null || value === false) return '';
    return escapeText(visible(String(value).toWellFormed()));
  };
  return new Markup(strings.reduce((out, s, i) => out + fill(values[i - 1]) + s));
}

/** A value from mail: isolated, so that its right-to-left text cannot reorder ours. */
const mailValue = (text: string) => html`<bdi>${text}</bdi>`;

const STYLE = `:root{color-scheme:light dark;--fg:#1b1b1b;--bg:#fff;--dim:#666;--line:#ddd;--quote:#2a6b2a;--link:#0645ad}
@media (prefers-color-scheme:dark){:root{--fg:#e6e6e6;--bg:#141414;--dim:#9a9a9a;--line:#333;--quote:#8fc98f;--link:#8ab4f8}}
body{margin:0 auto;max-width:60rem;padding:0 1rem 3rem;font:16px/1.45 system-ui,sans-serif;color:var(--fg);background:var(--bg)}
a{color:var(--link)}nav{display:flex;gap:1rem;flex-wrap:wrap;padding:.75rem 0;border-bottom:1px solid var(--line)}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
td.n,th.n{text-align:right;white-space:nowrap}.dim,dt{color:var(--dim)}
article{border-bottom:1px solid var(--line);padding:1rem 0}article h2{font-size:1.05rem;margin:0 0 .5rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:0 .75rem;margin:0 0 .75rem}dd{margin:0;overflow-wrap:anywhere}
pre{font:14px/1.4 ui-monospace,monospace;white-space:pre-wrap;overflow-wrap:anywhere;margin:0}
.q{color:var(--quote)}details{margin:.25rem 0}summary{color:var(--dim);cursor:pointer}
ul.files{margin:.5rem 0;padding-left:1.25rem}.pages{display:flex;gap:1rem;margin:1rem 0}
figure{margin:1.5rem 0}figcaption{font-weight:600}svg.chart{width:100%;max-width:42rem;height:auto}.chart text{fill:var(--dim);font-size:10px}
.chart .opened{fill:var(--link)}.chart .closed{fill:var(--quote)}.chart .backlog{fill:var(--dim)}.chart line{stroke:var(--line)}
form[role=search]{display:flex;gap:.5rem;margin:1rem 0}form[role=search] input{flex:1;font:inherit}ol.found li{margin:.75rem 0}ol.found p{margin:.2rem 0}
`;

/** A page: semantic, one stylesheet, a viewport for phones, nothing else loaded. */
function page(viewer: Viewer, title: string, body: Markup, status = 200): Reply {
  const b = viewer.base;
  const text = html`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title><link rel="stylesheet" href="${b}/style.css">
<link rel="alternate" type="application/atom+xml" title="Tickets" href="${b}/new.atom"></head>
<body><nav aria-label="Tickets"><a href="${b}/">Open tickets</a><a href="${b}/?waiting=1">Waiting on us</a><a href="${b}/archived/">Closed tickets</a><a href="${b}/stats">Numbers</a><a href="${b}/new.atom">Feed</a></nav>
<main>
${body}
</main></body></html>
`;
  return { status, headers: { 'Content-Type': 'text/html; charset=utf-8' }, body: text.text };
}

const notFound = (viewer: Viewer, what = 'There is nothing here.') => page(viewer, 'Not found', html`<h1>Not found</h1><p>${what}</p>`, 404);

/** A date we are sure of (a file's time), absolute: pages get saved and read later. */
const shownDate = (ms: number) => new Date(ms).toISOString().replace('T', ' ').replace(/:\d\d\.\d+Z$/, ' UTC');

// ---------------------------------------------------------------------------------------
// Reading a ticket without its lock
// ---------------------------------------------------------------------------------------

export interface Snapshot { fd: number; place: 'open' | 'archived'; size: number }

/** A ticket's lock: none, ours (appending from a size, or doing something else), or another program's. */
type LockState = { holder: 'none' } | { holder: 'us'; appendingFrom: number | undefined } | { holder: 'other' };

/**
 * The state of a ticket's lock. Ours names the step under way: an append records the size before
 * it. Another program's lock older than --stale-lock is a crashed one's (deliveries take such a
 * lock over too): none.
 */
function lockState(lockPath: string, relative: string, staleSeconds: number): LockState {
  let text;
  let age;
  try {
    const fd = openSync(lockPath, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    try {
      age = Date.now() - fstatSync(fd).mtimeMs;
      text = readFileSync(fd, 'latin1').slice(0, 1000);
    } finally { closeSync(fd); }
  } catch { return { holder: 'none' }; }
  if (!text.startsWith('ticket-mail ')) return { holder: age > staleSeconds * 1000 ? 'none' : 'other' }; // mutt may be rewriting the file
  const append = / append (\S+) (\d{1,15}) \S+\n?$/.exec(text);
  return { holder: 'us', appendingFrom: append && append[1] === relative ? Number(append[2]) : undefined };
}

const pause = (ms: number) => new Promise((done) => setTimeout(done, ms));

/**
 * Ticket N opened read-only (never through a symlink), wherever it is now (a ticket may move to
 * archived/ between two requests, or while we look), with the size up to which its records are
 * complete: a record being appended under our lock is left out. How: the file's size Z, then
 * its lock. An append under way started at S: Z >= S means [0, S) is complete (the appender
 * holds the lock, so every earlier append is done); Z < S means another append finished in
 * between: look again. No append under way and the size still Z: [0, Z) is complete, since an
 * append that was under way at Z would have grown the file since. Another program's lock (mutt
 * rewriting the file) is waited out for a while; then 'busy'.
 */
export async function openTicket(store: Store, n: number): Promise<Snapshot | 'busy' | undefined> {
  for (let attempt = 0; attempt < 40; attempt++) {
    let opened: { fd: number; place: 'open' | 'archived' } | undefined;
    for (const place of ['open', 'archived', 'open'] as const) { // open, else archived, else it was reopened meanwhile
      try { opened = { fd: openSync(store.ticketPath(n, place), fsc.O_RDONLY | fsc.O_NOFOLLOW), place }; break; } catch (e) {
        // Not there, or a symlink (never followed). Anything else (EACCES: the viewer runs as a
        // user who may not read the tickets) is an error to say, not "there is no ticket N".
        if (!['ENOENT', 'ENOTDIR', 'ELOOP'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
      }
    }
    if (!opened) return undefined;
    const { fd, place } = opened;
    let keep = false;
    try {
      if (!fstatSync(fd).isFile()) return undefined;
      const size = fstatSync(fd).size;
      const lock = lockState(`${store.ticketPath(n, place)}.lock`, place === 'open' ? `${n}` : `archived/${n}`, store.cfg.staleLock);
      const appendingFrom = lock.holder === 'us' ? lock.appendingFrom : undefined;
      if (appendingFrom !== undefined) {
        if (size >= appendingFrom) { keep = true; return { fd, place, size: appendingFrom }; }
      } else if (lock.holder !== 'other' && fstatSync(fd).size === size) {
        keep = true;
        return { fd, place, size };
      }
    } finally { if (!keep) closeSync(fd); }
    await pause(attempt < 10 ? 10 : 50);
  }
  return 'busy';
}

/** The records of a snapshot: [start, end) of each, numbered from 1 (the K of /N/K/...). */
const recordRanges = (snap: Snapshot) => {
  const starts = mboxStarts(snap.fd, snap.size);
  return starts.map((start, i) => ({ start, end: starts[i + 1] ?? snap.size }));
};

// ---------------------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------------------

const LIST_PAGE = 50;
const TICKET_PAGE = 200; // messages; a longer ticket is paged, never read whole into one page
const FEED_ENTRIES = 25;
const QUOTE_FOLD = 6;    // a quoted run of more lines than this is folded

/** Who owes the next message, as the list shows it: since when the customer has waited on us. */
const waitingCell = (r: TicketRow) => (r.waiting === 'us' ? `on us since ${shownDate(Date.parse(r.waitingSince!))}` : r.waiting === 'them' ? 'on them' : '');

/**
 * A list page: the open tickets (or only those waiting on us, the longest wait first) or the
 * closed ones (newest activity first).
 */
function ticketList(viewer: Viewer, which: 'open' | 'closed' | 'waiting', after: string | undefined): Reply {
  const listed = listTickets(viewer.store, which === 'closed' ? 'closed' : 'open', false);
  const rows = which === 'waiting' ? waitingOnUs(listed) : listed;
  // The cursor is the last row shown (its time and number): the next page starts after it in
  // the same order, so arriving mail never shifts a page under the reader (no page numbers).
  const cursor = after === undefined ? undefined : /^(\d{1,15})-(\d{1,9})$/.exec(after);
  if (after !== undefined && !cursor) return notFound(viewer);
  const [sortKey, direction] = which === 'waiting'
    ? [(r: TicketRow) => [Date.parse(r.waitingSince!), r.ticket] as const, 1] // the longest wait first
    : [(r: TicketRow) => [Date.parse(r.lastActivity), r.ticket] as const, -1]; // newest activity first
  const start = !cursor ? 0 : rows.findIndex((r) => {
    const [at, n] = sortKey(r);
    return direction * (at - Number(cursor[1]) || n - Number(cursor[2])) > 0;
  });
  const shown = start < 0 ? [] : rows.slice(start, start + LIST_PAGE);
  const last = shown.at(-1);
  const more = last && start + LIST_PAGE < rows.length;
  const next = which === 'open' ? '/?after=' : which === 'waiting' ? '/?waiting=1&after=' : '/archived/?after=';
  const title = which === 'open' ? 'Open tickets' : which === 'waiting' ? 'Waiting on us' : 'Closed tickets';
  const none = which === 'waiting' ? 'No ticket waits on us' : `No ${which} tickets`;
  return withSearchForm(page(viewer, title, html`<h1>${title}</h1>
${searchForm(viewer, '')}
${which === 'waiting' ? html`<p>Open tickets whose last word is not ours (an admin's, or from one of our addresses), the longest wait first.</p>` : false}
${shown.length ? html`<table><thead><tr><th class="n">#</th><th>Subject</th><th>Submitter</th><th class="n">Messages</th><th>Last activity</th><th>State</th><th>Waiting</th></tr></thead><tbody>
${shown.map((r) => html`<tr><td class="n"><a href="${viewer.base}/${r.ticket}/">${r.ticket}</a></td><td><a href="${viewer.base}/${r.ticket}/">${mailValue(r.subject || '(no subject)')}</a></td><td>${mailValue(r.submitter)}</td><td class="n">${r.messages}</td><td>${shownDate(Date.parse(r.lastActivity))}</td><td>${r.state}</td><td>${waitingCell(r)}</td></tr>
`)}</tbody></table>` : html`<p>${none}${cursor ? ' after these' : ''}.</p>`}
${more ? html`<p class="pages"><a rel="next" href="${viewer.base}${next}${sortKey(last).join('-')}">${which === 'waiting' ? 'Shorter waits' : 'Older activity'}</a></p>` : false}`));
}

/**
 * A bar chart drawn here (no script, nothing loaded): one group of bars a week, each series a
 * class of the stylesheet, scaled to the largest value (at least 1). Numbers only: the table
 * beside it has them for screen readers and copy-paste.
 */
function barChart(label: string, weeks: string[], series: Array<{ name: string; values: number[] }>): Markup {
  const [width, height, top, bottom] = [520, 130, 14, 16];
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const slot = width / weeks.length;
  const bar = (slot - 2) / series.length;
  const scaled = (v: number) => (v / max) * (height - top - bottom);
  const rects = series.flatMap((s, k) => s.values.map((v, i) => html`<rect class="${s.name}" x="${(i * slot + 1 + k * bar).toFixed(1)}" y="${(height - bottom - scaled(v)).toFixed(1)}" width="${bar.toFixed(1)}" height="${scaled(v).toFixed(1)}"/>`));
  return html`<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" role="img" aria-label="${label}">
<line x1="0" y1="${height - bottom}" x2="${width}" y2="${height - bottom}"/><text x="0" y="10">${max}</text>
${rects}
<text x="0" y="${height - 4}">${weeks[0]}</text><text x="${width}" y="${height - 4}" text-anchor="end">${weeks.at(-1)}</text>
</svg>`;
}

/** /stats: the numbers of the queue, each chart with its table. */
async function statsPage(viewer: Viewer): Promise<Reply> {
  const now = Date.now();
  const stats = ticketStats(listTickets(viewer.store, 'all', false), await readCloses(viewer.store), now);
  const weeks = stats.weeks.map((w) => w.start);
  const spread = (s: typeof stats.firstAnswer) => (s.tickets ? html`median ${shortDuration(s.medianSeconds! * 1000)}, 90% within ${shortDuration(s.p90Seconds! * 1000)} (${s.tickets} tickets)` : html`none yet`);
  const link = (n: number) => html`<a href="${viewer.base}/${n}/">${n}</a>`;
  return page(viewer, 'Numbers', html`<h1>Numbers</h1>
<p>${stats.open} open, ${stats.closed} closed, at ${shownDate(now)}. Closes and reopens ${stats.closesFrom === 'log' ? 'from the audit log' : 'from the files (no audit log readable: a closed ticket counts as closed at its last message)'}.</p>
<figure><figcaption>Opened and closed per week</figcaption>
${barChart('Tickets opened and closed per week', weeks, [{ name: 'opened', values: stats.weeks.map((w) => w.opened) }, { name: 'closed', values: stats.weeks.map((w) => w.closed) }])}
<table><thead><tr><th>Week of</th><th class="n">Opened</th><th class="n">Closed</th></tr></thead><tbody>
${stats.weeks.map((w) => html`<tr><td>${w.start}</td><td class="n">${w.opened}</td><td class="n">${w.closed}</td></tr>
`)}</tbody></table></figure>
<figure><figcaption>Open tickets at each week's end</figcaption>
${barChart('Open tickets at the end of each week', weeks, [{ name: 'backlog', values: stats.weeks.map((w) => w.backlog) }])}
<table><thead><tr><th>Week of</th><th class="n">Open at its end</th></tr></thead><tbody>
${stats.weeks.map((w) => html`<tr><td>${w.start}</td><td class="n">${w.backlog}</td></tr>
`)}</tbody></table></figure>
<h2>How long it takes</h2>
<dl><dt>First answer</dt><dd>${spread(stats.firstAnswer)}</dd><dt>Close</dt><dd>${spread(stats.timeToClose)}</dd></dl>
<p class="dim">Over the tickets opened since ${weeks[0]}: answered (our first message after the customer's, in a ticket the customer opened), and closed now (at its last close).</p>
<h2>Oldest open tickets</h2>
${stats.oldestOpen.length ? html`<table><thead><tr><th class="n">#</th><th>Subject</th><th>Submitter</th><th>Opened</th><th class="n">Open for</th></tr></thead><tbody>
${stats.oldestOpen.map((r) => html`<tr><td class="n">${link(r.ticket)}</td><td>${mailValue(r.subject || '(no subject)')}</td><td>${mailValue(r.submitter)}</td><td>${shownDate(Date.parse(r.opened))}</td><td class="n">${shortDuration(r.ageSeconds * 1000)}</td></tr>
`)}</tbody></table>` : html`<p>No open tickets.</p>`}
<h2>Longest waits on us</h2>
${stats.longestWaits.length ? html`<table><thead><tr><th class="n">#</th><th>Subject</th><th>Submitter</th><th>Waiting since</th><th class="n">Waited</th></tr></thead><tbody>
${stats.longestWaits.map((r) => html`<tr><td class="n">${link(r.ticket)}</td><td>${mailValue(r.subject || '(no subject)')}</td><td>${mailValue(r.submitter)}</td><td>${shownDate(Date.parse(r.waitingSince))}</td><td class="n">${shortDuration(r.waitedSeconds * 1000)}</td></tr>
`)}</tbody></table>` : html`<p>No ticket waits on us.</p>`}`);
}

/** The search box: a GET form to the viewer's /?q= (the pages that carry it allow that form: withSearchForm). */
const searchForm = (viewer: Viewer, query: string) => html`<form role="search" method="get" action="${viewer.base}/">
<input type="search" name="q" value="${query}" maxlength="1000" aria-label="Search messages" placeholder="words, &quot;a phrase&quot;, from: subject: is:open before:2026-01-31">
<button type="submit">Search</button></form>`;
const withSearchForm = (reply: Reply): Reply => ({ ...reply, searchForm: true });

const SEARCH_RESULTS = 50;

/**
 * /?q=: the messages matching a query, newest first, each linked to its place in its ticket and
 * shown with its snippet, the matches marked. serve keeps what it extracted in memory; a CGI
 * page reads the cache the CLI keeps where it can, and writes nothing.
 */
async function searchPage(viewer: Viewer, q: string): Promise<Reply> {
  let found;
  let error = '';
  try {
    found = await searchTickets(viewer.store, parseQuery(q), { cache: viewer.access.kind === 'web-server' ? 'read' : 'memory', limit: SEARCH_RESULTS });
  } catch (e) {
    if (!(e instanceof QueryError)) throw e;
    error = e.message;
  }
  const b = viewer.base;
  const asked = q.slice(0, 1000); // a query too long to run is not repeated whole
  const body = html`<h1>Search</h1>
${searchForm(viewer, asked)}
${error ? html`<p role="alert">Bad query: ${error}</p>` : !found!.total ? html`<p>No message matches.</p>` : html`<p class="dim">${found!.total} message${found!.total === 1 ? '' : 's'} match${found!.total === 1 ? 'es' : ''}${found!.total > found!.results.length ? `; the newest ${found!.results.length} are shown` : ''}.</p>
<ol class="found">
${found!.results.map((r) => html`<li><a href="${b}/${r.ticket}/${pageQuery(pageOf(r.message))}#${r.message}">#${r.ticket}, message ${r.message}: ${mailValue(r.subject || '(no subject)')}</a>
<p class="dim">${mailValue(r.from || '(no sender)')} · ${shownDate(Date.parse(r.date))} · ${r.state}</p>
<p>${r.snippet.map((p) => (p.match ? html`<mark>${p.text}</mark>` : html`${p.text}`))}</p></li>
`)}</ol>`}`;
  return withSearchForm(page(viewer, `Search: ${asked.slice(0, 100)}`, body, error ? 400 : 200));
}

/** The From_, our note and the head of a record, parsed. */
function recordHead(message: Message) {
  const head = parseHead(message.first.subarray(0, headEnd(message.first)).toString('utf8')) ?? new Map<string, string[]>();
  return { head, messageId: messageIds(field(head, 'message-id'))[0] };
}

/**
 * SHA-1 of a string's UTF-8 bytes, in hex: public-inbox's anchors and feed ids. Written out, as
 * ticket.ts's SHA-256 is, so that a page loads no node:crypto; one-shot, for short names. The
 * tests check it against node:crypto.
 */
export function sha1Hex(text: string): string {
  const data = Buffer.from(text, 'utf8');
  const padded = new Uint8Array(Math.ceil((data.length + 9) / 64) * 64);
  padded.set(data);
  padded[data.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(data.length / 0x20000000));
  view.setUint32(padded.length - 4, (data.length << 3) >>> 0);
  const h = Int32Array.of(0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0);
  const w = new Int32Array(80);
  for (let p = 0; p < padded.length; p += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getInt32(p + i * 4);
    for (let i = 16; i < 80; i++) { const x = w[i - 3]! ^ w[i - 8]! ^ w[i - 14]! ^ w[i - 16]!; w[i] = (x << 1) | (x >>> 31); }
    let a = h[0]!, b = h[1]!, c = h[2]!, d = h[3]!, e = h[4]!;
    for (let i = 0; i < 80; i++) {
      const f = i < 20 ? (b & c) | (~b & d) : i < 40 || i >= 60 ? b ^ c ^ d : (b & c) | (b & d) | (c & d);
      const k = i < 20 ? 0x5a827999 : i < 40 ? 0x6ed9eba1 : i < 60 ? 0x8f1bbcdc : 0xca62c1d6;
      const t = (((a << 5) | (a >>> 27)) + f + e + k + w[i]!) | 0;
      e = d; d = c; c = (b << 30) | (b >>> 2); b = a; a = t;
    }
    h[0] = (h[0]! + a) | 0; h[1] = (h[1]! + b) | 0; h[2] = (h[2]! + c) | 0; h[3] = (h[3]! + d) | 0; h[4] = (h[4]! + e) | 0;
  }
  return [...h].map((word) => (word >>> 0).toString(16).padStart(8, '0')).join('');
}

/** The stable anchor of a message: from its Message-ID, as public-inbox makes it. */
const idAnchor = (messageId: string) => `m${sha1Hex(messageId)}`;

/** The page of a ticket that holds message K. */
const pageOf = (k: number) => Math.floor((k - 1) / TICKET_PAGE) + 1;
const pageQuery = (p: number) => (p > 1 ? `?page=${p}` : '');

async function ticketPage(viewer: Viewer, n: number, pageParam: string | undefined): Promise<Reply> {
  const p = pageParam === undefined ? 1 : /^[1-9]\d{0,5}$/.test(pageParam) ? Number(pageParam) : 0;
  if (!p) return notFound(viewer);
  const snap = await openTicket(viewer.store, n);
  if (snap === 'busy') return busy(viewer);
  if (!snap) return notFound(viewer, `There is no ticket ${n}.`);
  try {
    const ranges = recordRanges(snap);
    const pages = Math.max(1, Math.ceil(ranges.length / TICKET_PAGE));
    if (p > pages) return notFound(viewer);
    const articles: Markup[] = [];
    let subject = '';
    for (let k = (p - 1) * TICKET_PAGE + 1; k <= Math.min(ranges.length, p * TICKET_PAGE); k++) {
      const record = mboxRecordAt(snap.fd, ranges[k - 1]!.start, ranges[k - 1]!.end);
      if (!record) continue;
      articles.push(await messageArticle(viewer, n, k, record.message));
    }
    { // the ticket's subject is its first message's
      const first = ranges.length ? mboxRecordAt(snap.fd, ranges[0]!.start, ranges[0]!.end) : undefined;
      if (first) subject = oneLine(decodedSubject(recordHead(first.message).head), 200);
    }
    const b = `${viewer.base}/${n}`;
    const cfg = viewer.store.cfg;
    const mailto = (form: string, re: boolean) => {
      const address = `${form.replace('N', String(n))}@${cfg.domain}`;
      const tag = cfg.tag.replace('N', String(n));
      const wanted = `${re ? 'Re: ' : ''}${subject.includes(tag) ? '' : `${tag} `}${subject}`;
      // The subject becomes a header of the maintainer's mail: without the controls and bidi overrides its text may hold.
      return `mailto:${address}?subject=${encodeURIComponent(headerSafe(wanted, 300))}`;
    };
    const pageLinks = pages > 1 ? html`<p class="pages">${p > 1 ? html`<a rel="prev" href="${b}/${pageQuery(p - 1)}">Earlier messages</a>` : false}
<span class="dim">Messages ${(p - 1) * TICKET_PAGE + 1}-${Math.min(ranges.length, p * TICKET_PAGE)} of ${ranges.length}</span>
${p < pages ? html`<a rel="next" href="${b}/?page=${p + 1}">Later messages</a>` : false}</p>` : false;
    return page(viewer, `#${n} ${subject}`, html`<h1>Ticket ${n}: ${mailValue(subject || '(no subject)')}</h1>
<p class="dim">${snap.place === 'open' ? 'Open' : 'Closed'}, ${ranges.length} message${ranges.length === 1 ? '' : 's'}.
${cfg.domain ? html`<a href="${mailto(cfg.ticketAddress, true)}">Write to the ticket</a> · <a href="${mailto(cfg.closeAddress, true)}">Close it by mail</a> ·` : false}
<a href="${b}/mbox">mbox</a> · <a href="${b}/mbox.gz">mbox.gz</a> · <a href="${b}/new.atom">feed</a></p>
${pageLinks}
${articles}
${pageLinks}`);
  } finally { closeSync(snap.fd); }
}

const busy = (viewer: Viewer): Reply => {
  const reply = page(viewer, 'Busy', html`<h1>Busy</h1><p>Another program (mutt?) holds this ticket's lock. Try again in a moment.</p>`, 503);
  reply.headers['Retry-After'] = '5';
  return reply;
};

/** One message: its head fields (decoded, then escaped), its text and its attachments. */
async function messageArticle(viewer: Viewer, n: number, k: number, message: Message): Promise<Markup> {
  const { head, messageId } = recordHead(message);
  let body: Markup;
  let files: Markup = html``;
  try {
    const { text, cut, attachments, unlisted } = await messageText(message);
    const { shown, cut: long } = mailText(text);
    body = html`${shown}${cut || long ? html`<p class="dim">The rest of the text is in the <a href="${viewer.base}/${n}/${k}/raw">raw message</a>.</p>` : false}`;
    if (attachments.length) {
      files = html`<ul class="files">${attachments.map((a, i) => html`<li><a href="${viewer.base}/${n}/${k}/${i + 1}/${linkName(a.name)}">${mailValue(a.label)}</a> <span class="dim">(${mailValue(a.type)}, ${size(a.size)})</span></li>`)}${unlisted ? html`<li class="dim">and ${unlisted} more (in the raw message)</li>` : false}</ul>`;
    }
  } catch {
    body = html`<p class="dim">This message could not be decoded: read the <a href="${viewer.base}/${n}/${k}/raw">raw message</a>.</p>`;
  }
  const row = (name: string, values: string[]) => (values.length ? html`<dt>${name}</dt><dd>${values.map((v, i) => html`${i ? ', ' : ''}${mailValue(v)}`)}</dd>` : false);
  const from = field(head, 'from');
  return html`<article id="${k}">
${messageId ? html`<span id="${idAnchor(messageId)}"></span>` : false}<h2><a href="#${k}">${k}.</a> ${mailValue(oneLine(decodedSubject(head), 300) || '(no subject)')}</h2>
<dl>${row('From', from === undefined ? [] : [shownMailboxes(from, oneLine)[0] ?? '(none)'])}${row('To', shownMailboxes(field(head, 'to'), oneLine))}${row('Cc', shownMailboxes(field(head, 'cc'), oneLine))}${row('Date', [oneLine(field(head, 'date') ?? '', 100)].filter(Boolean))}</dl>
${body}${files}<p class="dim"><a href="${viewer.base}/${n}/${k}/raw">raw</a></p>
</article>
`;
}

const size = (bytes: number) => (bytes < 1024 ? `${bytes} bytes` : bytes < 1 << 20 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / (1 << 20)).toFixed(1)} MiB`);

/**
 * A message's text: <pre> runs, quoted runs (lines starting ">") styled, and long ones folded in
 * <details> (no script needed). Each line's URLs linked. At most SHOWN_TEXT characters of markup:
 * a control shown as "&lt;U+0085&gt;" is 14 of them, and 200 messages of those made 167 MB of page.
 */
const SHOWN_TEXT = 64 * 1024;
const LINE_PIECE = 2048; // a long line is rendered (and counted) a piece at a time
function mailText(text: string): { shown: Markup; cut: boolean } {
  const lines = text.split('\n');
  const blocks: Markup[] = [];
  let size = 0;
  for (let i = 0; i < lines.length;) {
    const quoted = /^[ \t]*>/.test(lines[i]!);
    const shownLines: Markup[] = [];
    let j = i;
    for (; j < lines.length && /^[ \t]*>/.test(lines[j]!) === quoted && size <= SHOWN_TEXT; j++) {
      const line = lines[j]!;
      let rendered = '';
      for (let at = 0; at === 0 || (at < line.length && size <= SHOWN_TEXT); at += LINE_PIECE) {
        const piece = textLine(line.slice(at, at + LINE_PIECE)).text;
        rendered += piece;
        size += piece.length + 1;
      }
      shownLines.push(new Markup(rendered));
    }
    // The HTML parser drops a line break right after <pre>: a run that starts with an empty line
    // (the one after a quote) gets one more, or that line would vanish.
    const run = html`${lines[i] === '' ? LINE_BREAK : ''}${shownLines.map((line, at) => html`${at ? LINE_BREAK : ''}${line}`)}`;
    if (!quoted) blocks.push(html`<pre>${run}</pre>`);
    else if (j - i <= QUOTE_FOLD) blocks.push(html`<pre class="q">${run}</pre>`);
    else blocks.push(html`<details><summary>${j - i} quoted lines</summary><pre class="q">${run}</pre></details>`);
    if (size > SHOWN_TEXT) return { shown: html`${blocks}`, cut: j < lines.length };
    i = j;
  }
  return { shown: html`${blocks}`, cut: false };
}

/**
 * URLs in text: found in the raw line (never in what escaping made of it), the text around
 * them escaped, each linked only when it parses as http, https or mailto, its href the escaped
 * text itself. Characters a URL cannot hold end it: spaces, quotes, angle brackets, controls, bidi.
 */
const URL_TEXT = /\b(?:https?:\/\/|mailto:)[^\s<>"'`\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]+/gi;
function textLine(line: string): Markup {
  const parts: Markup[] = [];
  let at = 0;
  for (const m of line.matchAll(URL_TEXT)) {
    let url = m[0].replace(/[.,;:!?)\]}]+$/, '');
    if (url.endsWith(')') === false && m[0].slice(url.length).startsWith(')') && url.includes('(')) url += ')'; // (see https://x/a_(b))
    let linked = false;
    try { linked = ['http:', 'https:', 'mailto:'].includes(new URL(url).protocol); } catch { /* not a URL */ }
    if (!linked) continue;
    parts.push(html`${tabbed(line.slice(at, m.index))}<a href="${url}" rel="nofollow noreferrer">${url}</a>`);
    at = m.index + url.length;
  }
  parts.push(tabbed(line.slice(at)));
  return html`${parts}`;
}

const LINE_BREAK = new Markup('\n'); // ours: a line break as a value would be shown as ^J

/** Text whose tabs stay tabs (visible() makes a tab a space; in mail text it aligns columns). */
const tabbed = (text: string) => html`${text.split('\t').map((piece, i) => html`${i ? new Markup('\t') : ''}${piece}`)}`;

/** An attachment's name in its URL: only the route's safe alphabet (the route ignores it anyway). */
const linkName = (name: string) => name.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '').slice(0, 80) || 'attachment';

// ---------------------------------------------------------------------------------------
// Raw bytes: a message, a ticket's mbox, an attachment
// ---------------------------------------------------------------------------------------

/** A checked charset for a text/plain response, or none. */
const checkedCharset = (charset: string | undefined) =>
  (charset && /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,39}$/.test(charset) ? `; charset=${charset}` : '');

/** The charset a message's top-level Content-Type names. */
const messageCharset = (head: Map<string, string[]>) => mimeValue(field(head, 'content-type') ?? '').params.get('charset');

/**
 * RFC 6266 Content-Disposition for a name from mail: an ASCII fallback of a safe alphabet and
 * the name itself as filename* (RFC 5987), with controls, bidi controls, slashes, backslashes
 * and quotes removed first (headerSafe already turned controls into spaces and dropped bidi).
 */
export function disposition(kind: 'inline' | 'attachment', name: string, fallback: string): string {
  const clean = headerSafe(name, 150).replace(/[\u061c\u200e\u200f\\/"]/g, '').replace(/^[.\s]+/, '').trim();
  const ascii = clean.replace(/[^A-Za-z0-9._ -]+/g, '_').replace(/^[._ ]+/, '').slice(0, 100) || fallback;
  const encoded = encodeURIComponent(clean || fallback).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

/** One record of ticket N, read under the snapshot's bounds. */
async function withRecord(viewer: Viewer, n: number, k: number, use: (message: Message, snap: Snapshot) => Reply | Promise<Reply>): Promise<Reply> {
  const snap = await openTicket(viewer.store, n);
  if (snap === 'busy') return busy(viewer);
  if (!snap) return notFound(viewer, `There is no ticket ${n}.`);
  let streamed = false;
  try {
    const range = recordRanges(snap)[k - 1];
    const record = range && mboxRecordAt(snap.fd, range.start, range.end);
    if (!record) return notFound(viewer, `Ticket ${n} has no message ${k}.`);
    const reply = await use(record.message, snap);
    streamed = typeof reply.body === 'object' && !Buffer.isBuffer(reply.body);
    if (streamed) reply.release = () => closeSync(snap.fd);
    return reply;
  } finally { if (!streamed) closeSync(snap.fd); }
}

/** Iterable chunks copied as they come (the readers' pieces are views of one reused buffer). */
async function* copied(chunks: Iterable<Buffer>): AsyncGenerator<Buffer> {
  for (const chunk of chunks) yield Buffer.from(chunk);
}

/** Message K as the MTA delivered it: the mboxrd quoting undone, byte for byte. */
function rawMessage(viewer: Viewer, n: number, k: number): Promise<Reply> {
  return withRecord(viewer, n, k, (message) => ({
    status: 200,
    headers: {
      'Content-Type': `text/plain${checkedCharset(messageCharset(recordHead(message).head))}`,
      'Content-Disposition': `inline; filename="ticket-${n}-message-${k}.eml.txt"`,
    },
    body: copied(message.chunks()),
  }));
}

/** The ticket's mbox, byte for byte (its complete records), streamed; gzipped on request. */
async function ticketMbox(viewer: Viewer, n: number, gzip: boolean): Promise<Reply> {
  const snap = await openTicket(viewer.store, n);
  if (snap === 'busy') return busy(viewer);
  if (!snap) return notFound(viewer, `There is no ticket ${n}.`);
  // Appends leave what is sent alone; a rewrite in place (mutt's, under its lock) would mix two
  // files: each piece is sent only while the file still holds what it held (its last 64 bytes
  // before the snapshot's end unchanged, no other program's lock), else the download fails.
  const lastBytes = () => { const b = Buffer.alloc(Math.min(64, snap.size)); readSync(snap.fd, b, 0, b.length, snap.size - b.length); return b; };
  const held = { ctime: fstatSync(snap.fd).ctimeMs, last: lastBytes() };
  const lockPath = `${viewer.store.ticketPath(n, snap.place)}.lock`;
  const unchanged = () => {
    const st = fstatSync(snap.fd);
    if (st.ctimeMs === held.ctime) return true;
    return st.size >= snap.size && lastBytes().equals(held.last) && lockState(lockPath, '', viewer.store.cfg.staleLock).holder !== 'other';
  };
  const bytes = (function* () {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let pos = 0; pos < snap.size;) {
      const got = readSync(snap.fd, buf, 0, Math.min(buf.length, snap.size - pos), pos);
      if (got === 0) return;
      if (!unchanged()) throw new Error(`ticket ${n} was rewritten during its download: the download is cut off`);
      yield buf.subarray(0, got);
      pos += got;
    }
  })();
  const stream = copied(bytes);
  return {
    status: 200,
    headers: {
      'Content-Type': gzip ? 'application/gzip' : 'application/mbox',
      'Content-Disposition': `attachment; filename="ticket-${n}.mbox${gzip ? '.gz' : ''}"`,
      ...(gzip ? {} : { 'Content-Length': String(snap.size) }),
    },
    body: gzip ? gzipped(stream) : stream,
    release: () => closeSync(snap.fd),
  };
}

/**
 * A body gzipped as it is read. Nothing starts before the first read (a HEAD request reads
 * none, and its ticket is closed at once); a reader that stops early stops the source.
 * node:stream and node:zlib are loaded only here (every CGI request would pay for them).
 */
async function* gzipped(stream: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const [{ Readable, pipeline }, { createGzip }] = await Promise.all([import('node:stream'), import('node:zlib')]);
  const gzip = createGzip();
  pipeline(Readable.from(stream), gzip, () => { /* an error ends the reading below */ });
  yield* gzip;
}

/**
 * Attachment A of message K, decoded. Never the sender's Content-Type: text/* is text/plain
 * (inline), everything else an application/octet-stream download. So no HTML, SVG, XML or PDF
 * from mail ever opens in the viewer's origin.
 */
function attachment(viewer: Viewer, n: number, k: number, a: number): Promise<Reply> {
  return withRecord(viewer, n, k, (message) => {
    // Read once for its type and size (the response's headers), then again as it is sent.
    let length = 0;
    const reading = outlineParts(message.chunks(), a);
    let read;
    while (!(read = reading.next()).done) length += read.value.length;
    const outline = read.value;
    const kept = outline.kept;
    const listed = outline.attachments[a - 1];
    if (!kept) return notFound(viewer, `Message ${k} of ticket ${n} has no attachment ${a}.`);
    const text = kept.type.startsWith('text/');
    const name = listed?.name ?? '';
    const fallback = `ticket-${n}-${k}-${a}.${text ? 'txt' : 'bin'}`;
    return {
      status: 200,
      headers: {
        'Content-Type': text ? `text/plain${checkedCharset(kept.charset)}` : 'application/octet-stream',
        'Content-Disposition': disposition(text ? 'inline' : 'attachment', name, fallback),
        'Content-Length': String(length),
      },
      body: (async function* () { yield* outlineParts(message.chunks(), a); })(),
    };
  });
}

// ---------------------------------------------------------------------------------------
// Permalinks and feeds
// ---------------------------------------------------------------------------------------

/** /m/MESSAGE-ID: the ticket and anchor that hold it, through the Message-ID index. */
async function byMessageId(viewer: Viewer, encoded: string): Promise<Reply> {
  let id;
  try { id = decodeURIComponent(encoded).replace(/^<(.*)>$/, '$1'); } catch { return notFound(viewer); }
  if (messageIds(`<${id}>`)[0] !== id) return notFound(viewer, 'That is not a Message-ID.');
  // The delivery keys a message by its ID, or by its whole Message-ID field when that is not one
  // plain <id> once comments are set aside: "(1)" inside an ID reads as a comment, so
  // <alert(1)@x> is filed under the key of "<alert(1)@x>".
  const index = new MessageIndex(viewer.store.state);
  const filings = [id, `<${id}>`].flatMap((name) => index.filings(MessageIndex.key(name))).filter((f) => f.ticket > 0);
  const places: Array<{ n: number; k: number | undefined }> = [];
  for (const { ticket, at } of filings) {
    if (places.some((p) => p.n === ticket)) continue;
    const snap = await openTicket(viewer.store, ticket);
    if (!snap || snap === 'busy') { if (snap === 'busy') places.push({ n: ticket, k: undefined }); continue; }
    try {
      // The index's offset is where the message was filed; mutt may have rewritten the file since
      // (a message deleted before it): the record there must still hold the ID, else it is looked for.
      const ranges = recordRanges(snap);
      const holds = (i: number) => {
        const record = mboxRecordAt(snap.fd, ranges[i]!.start, ranges[i]!.end);
        return record !== undefined && messageIds(field(recordHead(record.message).head, 'message-id'))[0] === id;
      };
      const filed = at === undefined ? -1 : ranges.findIndex((r) => r.start === at);
      const k = filed >= 0 && holds(filed) ? filed : ranges.findIndex((_, i) => holds(i));
      places.push({ n: ticket, k: k < 0 ? undefined : k + 1 });
    } finally { closeSync(snap.fd); }
  }
  const href = (p: { n: number; k: number | undefined }) => `${viewer.base}/${p.n}/${p.k ? `${pageQuery(pageOf(p.k))}#${p.k}` : ''}`;
  if (!places.length) return notFound(viewer, 'No ticket holds that Message-ID.');
  if (places.length === 1) return { status: 302, headers: { Location: href(places[0]!) } };
  // A reused ID (a stranger's, filed under someone else's too): the reader chooses.
  return page(viewer, 'Several tickets', html`<h1>Several tickets hold this Message-ID</h1>
<ul>${places.map((p) => html`<li><a href="${href(p)}">Ticket ${p.n}${p.k ? `, message ${p.k}` : ''}</a></li>`)}</ul>`, 300);
}

/** Text for XML 1.0: the controls it forbids, even as references, removed; the rest escaped. */
const xmlText = (text: string) => escapeText(visible(text.toWellFormed()).replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/g, ''));

/** A urn:uuid from a name (as public-inbox makes its entry ids: SHA-1 of the Message-ID). */
function uuidOf(name: string): string {
  const h = sha1Hex(name);
  return `urn:uuid:${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

interface FeedEntry { id: string; title: string; updated: number; author: string; href: string; summary: string }

/** A feed entry for one record. */
async function entryOf(viewer: Viewer, n: number, k: number, message: Message, updated: number): Promise<FeedEntry> {
  const { head, messageId } = recordHead(message);
  let summary = '';
  try { summary = (await messageText(message)).text.slice(0, 600); } catch { /* the title says enough */ }
  return {
    id: uuidOf(messageId ?? `ticket ${n} message ${k} in ${viewer.store.cfg.dir}`),
    title: `[#${n}] ${oneLine(decodedSubject(head), 200) || '(no subject)'}`,
    updated, author: shownMailboxes(field(head, 'from'), oneLine)[0] ?? '(unknown)', href: `${n}/${pageQuery(pageOf(k))}#${k}`, summary,
  };
}

/** Atom (RFC 4287), well-formed whatever the mail held. hrefs are relative to the feed's own URL. */
function atom(title: string, feedId: string, self: string, entries: FeedEntry[]): Reply {
  const date = (ms: number) => new Date(ms).toISOString();
  const x = xmlText;
  const text = `<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
<title>${x(title)}</title>
<id>${feedId}</id>
<updated>${date(Math.max(0, ...entries.map((e) => e.updated)))}</updated>
<link rel="self" href="${x(self)}"/>
${entries.map((e) => `<entry>
<id>${e.id}</id>
<title>${x(e.title)}</title>
<updated>${date(e.updated)}</updated>
<author><name>${x(e.author)}</name></author>
<link rel="alternate" type="text/html" href="${x(e.href)}"/>
<summary type="text">${e.summary.split('\n').map(x).join('\n')}</summary>
</entry>
`).join('')}</feed>
`;
  return { status: 200, headers: { 'Content-Type': 'application/atom+xml; charset=utf-8' }, body: text };
}

/** The start of the last record in [0, size), found from the end. */
function lastRecordStart(fd: number, size: number): number {
  const buf = Buffer.alloc(64 * 1024 + 6);
  for (let end = size; end > 0;) {
    const from = Math.max(0, end - 64 * 1024);
    const got = readSync(fd, buf, 0, Math.min(buf.length, size - from), from);
    const at = buf.subarray(0, got).lastIndexOf('\nFrom ', end - from - 1);
    if (at >= 0) return from + at + 1;
    end = from;
  }
  return 0;
}

/** /new.atom: the tickets with the newest activity, each with its latest message. */
async function newFeed(viewer: Viewer): Promise<Reply> {
  const rows = listTickets(viewer.store, 'all', false).slice(0, FEED_ENTRIES);
  const entries: FeedEntry[] = [];
  for (const row of rows) {
    const snap = await openTicket(viewer.store, row.ticket);
    if (!snap || snap === 'busy') continue;
    try {
      const start = lastRecordStart(snap.fd, snap.size);
      const record = mboxRecordAt(snap.fd, start, snap.size);
      if (!record) continue;
      const k = mboxStarts(snap.fd, snap.size).indexOf(start) + 1;
      entries.push(await entryOf(viewer, row.ticket, k, record.message, Date.parse(row.lastActivity)));
    } finally { closeSync(snap.fd); }
  }
  const cfg = viewer.store.cfg;
  return atom(`${cfg.name} tickets${cfg.domain ? ` at ${cfg.domain}` : ''}`, uuidOf(`ticket-mail feed ${cfg.dir}`), 'new.atom', entries);
}

/** /N/new.atom: the ticket's latest messages, newest first. */
async function ticketFeed(viewer: Viewer, n: number): Promise<Reply> {
  const snap = await openTicket(viewer.store, n);
  if (snap === 'busy') return busy(viewer);
  if (!snap) return notFound(viewer, `There is no ticket ${n}.`);
  try {
    const ranges = recordRanges(snap);
    const updated = fstatSync(snap.fd).mtimeMs;
    const entries: FeedEntry[] = [];
    for (let k = ranges.length; k >= 1 && entries.length < FEED_ENTRIES; k--) {
      const record = mboxRecordAt(snap.fd, ranges[k - 1]!.start, ranges[k - 1]!.end);
      // Entries are relative to /N/new.atom: "N/#K" would be /N/N/.
      if (record) entries.push({ ...(await entryOf(viewer, n, k, record.message, updated)), href: `./${pageQuery(pageOf(k))}#${k}` });
    }
    const subject = entries.at(-1)?.title ?? `[#${n}]`;
    return atom(`Ticket ${n}: ${subject.replace(/^\[#\d+\] /, '')}`, uuidOf(`ticket-mail feed ${viewer.store.cfg.dir} ${n}`), 'new.atom', entries);
  } finally { closeSync(snap.fd); }
}

// ---------------------------------------------------------------------------------------
// Who may read
// ---------------------------------------------------------------------------------------

/** A line of the --users file: NAME:scrypt:N:r:p:SALT:HASH (base64), made by "ticket-mail password-hash". */
export interface PasswordHash { N: number; r: number; p: number; salt: Buffer; hash: Buffer }

const SCRYPT = { N: 1 << 15, r: 8, p: 1 };
/** The memory a --users check may take: scrypt needs 128 × r × (N + p + 2) bytes (our N 2^15 and r 8: 32 MiB). */
const SCRYPT_MAXMEM = 256 * 2 ** 20;

/**
 * Parameters scrypt (OpenSSL's) accepts within SCRYPT_MAXMEM: N a power of two below 2^(16 r),
 * r and p small. Any other would make every check of that user fail, so the users file is
 * refused when it is read (a typo like N=10000, a hash made elsewhere with more memory).
 */
const usableScrypt = (N: number, r: number, p: number) =>
  r >= 1 && r <= 32 && p >= 1 && p <= 16 && N >= 2 && (N & (N - 1)) === 0 && N < 2 ** (16 * r) && 128 * r * (N + p + 2) <= SCRYPT_MAXMEM;

export async function hashPassword(password: string): Promise<string> {
  const { randomBytes, scryptSync } = await nodeCrypto();
  const salt = randomBytes(16);
  const hash = scryptSync(password, salt, 32, { ...SCRYPT, maxmem: 64 << 20 });
  return `scrypt:${SCRYPT.N}:${SCRYPT.r}:${SCRYPT.p}:${salt.toString('base64')}:${hash.toString('base64')}`;
}

export function parseUsers(text: string, path: string): Map<string, PasswordHash> {
  const users = new Map<string, PasswordHash>();
  for (const [i, line] of text.split('\n').entries()) {
    if (!line.trim() || line.startsWith('#')) continue;
    const m = /^([^:\s]{1,64}):scrypt:(\d{1,8}):(\d{1,3}):(\d{1,3}):([A-Za-z0-9+/=]{8,100}):([A-Za-z0-9+/=]{40,100})$/.exec(line.trim());
    if (!m) throw new Error(`${path} line ${i + 1} is not NAME:scrypt:... (make the hash with "ticket-mail password-hash")`);
    const [N, r, p] = [Number(m[2]), Number(m[3]), Number(m[4])];
    if (!usableScrypt(N, r, p)) throw new Error(`${path} line ${i + 1}: scrypt:${N}:${r}:${p} are no parameters scrypt accepts here (N a power of two, r 1 to 32, p 1 to 16, at most 256 MiB: 128 × r × N bytes)`);
    users.set(m[1]!, { N, r, p, salt: Buffer.from(m[5]!, 'base64'), hash: Buffer.from(m[6]!, 'base64') });
  }
  if (!users.size) throw new Error(`${path} names no user`);
  return users;
}

const digest = (text: string | Buffer) => sha256(Buffer.from(text));
/** Equal, in time that tells nothing of where they differ (both are hashed to one length first). */
async function sameSecret(a: string | Buffer, b: Buffer): Promise<boolean> {
  const { timingSafeEqual } = await nodeCrypto();
  return timingSafeEqual(Buffer.from(digest(a), 'hex'), Buffer.from(digest(b), 'hex'));
}

const COOKIE = 'ticket_mail';

/**
 * Basic credentials checked, each distinct header once per process. scrypt costs ~100 ms on
 * purpose: it runs off the event loop (a stranger's guesses must not stall other readers), two
 * at a time, and an unknown name costs the same as a known one.
 */
const verified = new Map<string, Promise<boolean>>();
let checking = Promise.resolve();
function basicUser(users: Map<string, PasswordHash>, authorization: string): Promise<boolean> {
  const key = digest(authorization);
  const known = verified.get(key);
  if (known) return known;
  const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const user = colon > 0 ? users.get(decoded.slice(0, colon)) : undefined;
  const hash = user ?? { ...SCRYPT, salt: Buffer.alloc(16), hash: Buffer.alloc(32) };
  // Never rejects: a check that cannot run (scrypt refusing its parameters, say) is a refusal,
  // and the queue behind it goes on.
  const check = checking.then(nodeCrypto).then(({ scrypt, timingSafeEqual }) => new Promise<boolean>((done) => {
    scrypt(decoded.slice(colon + 1), hash.salt, hash.hash.length, { N: hash.N, r: hash.r, p: hash.p, maxmem: SCRYPT_MAXMEM },
      (error, derived) => done(!error && derived.length === hash.hash.length && timingSafeEqual(derived, hash.hash) && user !== undefined));
  })).catch(() => false);
  checking = check.then(() => undefined); // one at a time: a flood of guesses queues, the rest of serve goes on
  if (verified.size > 1000) verified.clear();
  verified.set(key, check);
  return check;
}

/**
 * Sessions the token was exchanged for: random, kept in memory, each for SESSION_SECONDS (the
 * cookie is no second token: cookies ignore ports, so every service on the host name gets it).
 */
const SESSION_SECONDS = 12 * 3600;
const sessions = new Map<string, number>(); // sha256 of the value -> when it expires
async function newSession(): Promise<string> {
  const value = (await nodeCrypto()).randomBytes(32).toString('hex');
  if (sessions.size >= 1000) sessions.delete(sessions.keys().next().value!); // the oldest
  sessions.set(digest(value), Date.now() + SESSION_SECONDS * 1000);
  return value;
}
const validSession = (value: string) => (sessions.get(digest(value)) ?? 0) > Date.now();

/** undefined: may read; else the reply that refuses. */
async function refusal(viewer: Viewer, req: Request, path: string, query: URLSearchParams): Promise<Reply | undefined> {
  const { access } = viewer;
  if (access.kind === 'loopback') {
    // 127.0.0.1 is open to every account on the machine: only ours and root's may read (the
    // tickets are 0600). A forwarded connection (ssh -L) comes from another account: a token then.
    if (req.peerUid !== undefined && access.uids.has(req.peerUid)) return undefined;
    return page(viewer, 'Forbidden', html`<h1>Forbidden</h1><p>This connection comes from another account on the server. Start the viewer with --token-file (or --users) to read it from there.</p>`, 403);
  }
  if (access.kind === 'web-server') {
    return req.remoteUser ? undefined : page(viewer, 'Forbidden', html`<h1>Forbidden</h1><p>The web server must authenticate the reader (REMOTE_USER and AUTH_TYPE are not set): see the CGI recipe in doc/viewer.md.</p>`, 403);
  }
  const auth = req.authorization ?? '';
  if (access.token && /^Bearer /i.test(auth) && await sameSecret(auth.slice(7).trim(), access.token)) return undefined;
  if (access.users && /^Basic /i.test(auth) && await basicUser(access.users, auth)) return undefined;
  const cookie = /(?:^|;\s*)ticket_mail=([0-9a-f]{64})(?:;|$)/.exec(req.cookie ?? '')?.[1];
  if (access.token && cookie && validSession(cookie)) return undefined;
  const offered = query.get('token');
  if (access.token && offered !== null && await sameSecret(offered, access.token)) {
    // Exchanged once for a session cookie, and the URL that held it replaced: it stays in no
    // history or log. The redirect stays on this site: "//evil.example/" is a path of one slash.
    query.delete('token');
    const rest = query.toString();
    return {
      status: 303,
      headers: {
        Location: `${viewer.base}${path.replace(/^[/\\]+/, '/')}${rest ? `?${rest}` : ''}`,
        'Set-Cookie': `${COOKIE}=${await newSession()}; Path=${viewer.base || '/'}; Max-Age=${SESSION_SECONDS}; HttpOnly; SameSite=Strict`,
      },
    };
  }
  const reply = page(viewer, 'Sign in', html`<h1>Sign in</h1><p>This viewer needs ${access.users ? 'a user name and password' : 'its token (open ?token=... once)'}.</p>`, 401);
  reply.headers['WWW-Authenticate'] = access.users ? 'Basic realm="ticket-mail", charset="UTF-8"' : 'Bearer realm="ticket-mail"';
  return reply;
}

// ---------------------------------------------------------------------------------------
// The handler both modes share
// ---------------------------------------------------------------------------------------

const N = '([1-9][0-9]{0,8})';        // a ticket number, as parseTicketNumber takes it
const K = '([1-9][0-9]{0,5})';        // a message's position
const ROUTES: Array<[RegExp, (viewer: Viewer, m: RegExpExecArray, query: URLSearchParams) => Reply | Promise<Reply>]> = [
  [/^\/$/, (v, _, q) => (q.has('q') ? searchPage(v, q.get('q')!) : ticketList(v, q.get('waiting') === '1' ? 'waiting' : 'open', q.get('after') ?? undefined))],
  [/^\/archived\/$/, (v, _, q) => ticketList(v, 'closed', q.get('after') ?? undefined)],
  [/^\/stats$/, (v) => statsPage(v)],
  [/^\/style\.css$/, () => ({ status: 200, headers: { 'Content-Type': 'text/css; charset=utf-8' }, body: STYLE })],
  [/^\/new\.atom$/, (v) => newFeed(v)],
  [/^\/m\/([^/]{1,1000})\/?$/, (v, m) => byMessageId(v, m[1]!)],
  [new RegExp(`^/${N}/$`), (v, m, q) => ticketPage(v, ticket(m[1]), q.get('page') ?? undefined)],
  [new RegExp(`^/${N}$`), (v, m) => ({ status: 301, headers: { Location: `${v.base}/${ticket(m[1])}/` } })],
  [new RegExp(`^/${N}/mbox$`), (v, m) => ticketMbox(v, ticket(m[1]), false)],
  [new RegExp(`^/${N}/mbox\\.gz$`), (v, m) => ticketMbox(v, ticket(m[1]), true)],
  [new RegExp(`^/${N}/new\\.atom$`), (v, m) => ticketFeed(v, ticket(m[1]))],
  [new RegExp(`^/${N}/${K}/raw$`), (v, m) => rawMessage(v, ticket(m[1]), Number(m[2]))],
  [new RegExp(`^/${N}/${K}/([1-9][0-9]{0,3})/[A-Za-z0-9._-]{0,100}$`), (v, m) => attachment(v, ticket(m[1]), Number(m[2]), Number(m[3]))],
];
const ticket = (digits: string | undefined) => parseTicketNumber(digits ?? '')!; // the route's pattern is parseTicketNumber's

/** One request, answered: status, headers and body; never a stack trace. */
export async function handle(viewer: Viewer, req: Request): Promise<Reply> {
  const reply = await answer(viewer, req).catch((e: unknown) => {
    process.stderr.write(`ticket-mail: viewer: ${visible(String((e as Error)?.message ?? e)).slice(0, 500)}\n`);
    return page(viewer, 'Error', html`<h1>Something went wrong</h1><p>The error is in the server's log.</p>`, 500);
  });
  reply.headers = { ...reply.headers, ...SECURITY_HEADERS };
  if (reply.searchForm) reply.headers['Content-Security-Policy'] = SEARCH_FORM_CSP;
  delete reply.searchForm;
  if (req.method === 'HEAD') {
    delete reply.body;
    reply.release?.();
    delete reply.release;
  }
  return reply;
}

async function answer(viewer: Viewer, req: Request): Promise<Reply> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    const reply = page(viewer, 'Method not allowed', html`<h1>Method not allowed</h1><p>This viewer only reads.</p>`, 405);
    reply.headers.Allow = 'GET, HEAD';
    return reply;
  }
  // DNS rebinding: a page of evil.example resolved to 127.0.0.1 reaches us with its own Host.
  if (viewer.hosts && !viewer.hosts.has((req.host ?? '').toLowerCase())) {
    return page(viewer, 'Misdirected', html`<h1>Misdirected request</h1><p>This viewer does not answer to that host name.</p>`, 421);
  }
  const q = req.target.indexOf('?');
  const path = q < 0 ? req.target : req.target.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : req.target.slice(q + 1));
  // Another site's page may make the browser ask (an <img>, a HEAD fetch): only a reader's own
  // navigation comes from elsewhere. The browser says which (Sec-Fetch-*); older ones say nothing.
  if (req.fetchSite && !['same-origin', 'none'].includes(req.fetchSite) && req.fetchMode !== 'navigate') {
    return page(viewer, 'Forbidden', html`<h1>Forbidden</h1><p>Another site asked for this page.</p>`, 403);
  }
  const refused = await refusal(viewer, req, path, query);
  if (refused) return refused;
  for (const [pattern, route] of ROUTES) {
    const m = pattern.exec(path);
    if (m) return route(viewer, m, query);
  }
  return notFound(viewer);
}

// ---------------------------------------------------------------------------------------
// The two modes
// ---------------------------------------------------------------------------------------

/** Writes a reply's body with back-pressure, stopping when the reader goes away; then releases it. */
async function writeBody(out: Output, reply: Reply): Promise<void> {
  const { body } = reply;
  try {
    if (body === undefined) return;
    if (typeof body === 'string' || Buffer.isBuffer(body)) { out.write(body); return; }
    for await (const chunk of body) {
      if (out.destroyed) return;
      if (!out.write(chunk)) {
        await new Promise<void>((done) => {
          const resume = () => { out.off('drain', resume); out.off('close', resume); done(); };
          out.on('drain', resume);
          out.on('close', resume);
        });
      }
    }
  } finally { reply.release?.(); }
}

/**
 * The account that opened a TCP connection to us over loopback, from the kernel's socket table
 * (/proc/net/tcp and tcp6: the client's end has its port as local, ours as remote). Undefined
 * where there is none to read: then only a secret lets anyone in.
 */
function loopbackPeerUid(clientPort: number | undefined, ourPort: number | undefined): number | undefined {
  if (!clientPort || !ourPort) return undefined;
  const hex = (port: number) => port.toString(16).toUpperCase().padStart(4, '0');
  const [local, remote] = [`:${hex(clientPort)}`, `:${hex(ourPort)}`];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try { text = readFileSync(table, 'latin1'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[1]?.endsWith(local) && fields[2]?.endsWith(remote)) return Number(fields[7]);
    }
  }
  return undefined;
}

export interface ServeOptions { listen?: string; tokenFile?: string; users?: string; hostName?: string[] }

const isLoopback = (host: string) => host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '::1';

/** `ticket-mail serve`: node:http (Bun has it too) over the same --dir/config as everything else. */
export async function serve(cfg: Config, options: ServeOptions): Promise<void> {
  const [{ createServer }, { isIP }] = await Promise.all([import('node:http'), import('node:net')]);
  const listen = /^(?:\[([0-9a-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/i.exec(options.listen ?? '127.0.0.1:8025');
  if (!listen || Number(listen[3]) > 65535 || (listen[1] !== undefined && isIP(listen[1]) !== 6)) {
    throw new Error(`--listen wants HOST:PORT or [IPV6]:PORT, not "${visible(options.listen ?? '')}"`);
  }
  const host = listen[1] ?? listen[2]!;
  const secrets: Extract<Access, { kind: 'secrets' }> = { kind: 'secrets' };
  if (options.tokenFile) {
    const token = readFileSync(options.tokenFile, 'utf8').trim();
    if (token.length < 16 || /\s/.test(token)) throw new Error(`${options.tokenFile}: the token must be one word of at least 16 characters (e.g. openssl rand -hex 24)`);
    secrets.token = Buffer.from(token);
  }
  if (options.users) secrets.users = parseUsers(readFileSync(options.users, 'utf8'), options.users);
  const guarded = secrets.token !== undefined || secrets.users !== undefined;
  if (!isLoopback(host) && !guarded) {
    throw new Error(`refusing to serve customer mail on ${host} without authentication: give --token-file or --users (or listen on 127.0.0.1 and use ssh -L)`);
  }
  const store = new Store(cfg);
  statSync(cfg.dir); // a missing tickets folder is said now, not on the first request
  const ownUid = process.getuid?.();
  const viewer: Viewer = { store, base: '', access: guarded ? secrets : { kind: 'loopback', uids: new Set([0, ...(ownUid === undefined ? [] : [ownUid])]) } };
  const peers = new WeakMap<object, number | undefined>(); // looked up once per connection
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const target = req.url ?? '';
      const h = req.headers;
      const asked = { method: req.method ?? '', host: h.host, fetchSite: String(h['sec-fetch-site'] ?? '') || undefined, fetchMode: String(h['sec-fetch-mode'] ?? '') || undefined };
      if (viewer.access.kind === 'loopback' && !peers.has(req.socket)) peers.set(req.socket, loopbackPeerUid(req.socket.remotePort, req.socket.localPort));
      const peerUid = peers.get(req.socket);
      const reply = await handle(viewer, target.startsWith('/')
        ? { ...asked, target, authorization: h.authorization, cookie: h.cookie, peerUid }
        : { ...asked, target: '/\0' }); // an absolute-form target: a 404
      // The access log: method, path and status; never the query (a ?token= would stay in it).
      process.stdout.write(`${visible(`${req.method} ${target.split('?')[0]!.slice(0, 300)}`)} ${reply.status}\n`);
      res.writeHead(reply.status, reply.headers);
      await writeBody(res, reply);
      res.end();
    })().catch((e: unknown) => { res.destroy(); process.stderr.write(`ticket-mail: viewer: ${visible(String((e as Error)?.message ?? e)).slice(0, 300)}\n`); });
  });
  await new Promise<void>((done, failed) => { server.once('error', failed); server.listen(Number(listen[3]), host, done); });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : Number(listen[3]);
  const shownHost = host.includes(':') ? `[${host}]` : host;
  if (isLoopback(host) || options.hostName?.length) {
    viewer.hosts = new Set([...(isLoopback(host) ? [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `${shownHost}:${port}`] : []),
      ...(options.hostName ?? []).flatMap((name) => [name.toLowerCase(), `${name.toLowerCase()}:${port}`])]);
  }
  process.stdout.write(`ticket-mail: serving ${cfg.dir} read-only at http://${shownHost}:${port}/${guarded ? ' (authentication required)' : ''}\n`);
  await new Promise<void>((done) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => { server.close(); server.closeAllConnections(); done(); });
  });
}

/**
 * Reads the request body CONTENT_LENGTH announces, and drops it: the viewer takes none. Unread,
 * it turned the 405 to a POST into fcgiwrap's 502: fcgiwrap writes the whole body into our stdin
 * before it reads a byte of the answer, and a body larger than the pipe never fits.
 */
async function dropBody(env: NodeJS.ProcessEnv): Promise<void> {
  let left = Number(env.CONTENT_LENGTH);
  if (!(left > 0)) return;
  for await (const chunk of process.stdin) {
    left -= (chunk as Buffer).length;
    if (left <= 0) break;
  }
}

/**
 * `ticket-mail cgi`: one request from the CGI environment (RFC 3875), answered on stdout. The
 * raw path is REQUEST_URI below SCRIPT_NAME when the server passes it (PATH_INFO is decoded:
 * "%2F" in a Message-ID would be a slash), else PATH_INFO. The web server authenticates.
 * True when the whole reply went out by writeSync: none of it waits in process.stdout, so the
 * caller may end the process at once (see runCgi).
 */
export async function cgi(cfg: Config, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  await dropBody(env);
  const script = env.SCRIPT_NAME ?? '';
  const base = /^(\/[A-Za-z0-9._~-]+)*$/.test(script) ? script : '';
  const uri = env.REQUEST_URI;
  // Else PATH_INFO (no REQUEST_URI; a rewrite), or the base itself. An empty PATH_INFO with a
  // REQUEST_URI elsewhere is not "/": nginx sets none when its split pattern fails (%0A in the path).
  const pathInfo = uri === undefined || env.PATH_INFO || uri.split('?')[0] === script;
  const target = uri?.startsWith(`${script}/`) && script === base
    ? uri.slice(script.length)
    : pathInfo ? `${encodeURI(env.PATH_INFO || '/')}${env.QUERY_STRING ? `?${env.QUERY_STRING}` : ''}` : '/\0';
  const viewer: Viewer = { store: new Store(cfg), base, access: { kind: 'web-server' } };
  // REMOTE_USER counts only with AUTH_TYPE: Apache and lighttpd set both once they checked a login;
  // nginx's fastcgi_params passes $remote_user from any client's own Authorization header, so the
  // recipe sets AUTH_TYPE beside auth_basic, and a location without it lets nobody in.
  const remoteUser = env.AUTH_TYPE ? env.REMOTE_USER || undefined : undefined;
  const reply = await handle(viewer, { method: env.REQUEST_METHOD ?? 'GET', target, remoteUser,
    fetchSite: env.HTTP_SEC_FETCH_SITE || undefined, fetchMode: env.HTTP_SEC_FETCH_MODE || undefined });
  const head = [`Status: ${reply.status} ${STATUS_TEXT[reply.status] ?? ''}`, ...Object.entries(reply.headers).map(([k, v]) => `${k}: ${v}`)];
  const out = cgiOutput();
  out.write(`${head.join('\r\n')}\r\n\r\n`);
  await writeBody(out, reply);
  return !out.streamed;
}

/** What writeBody writes to: serve's ServerResponse, or cgiOutput. */
interface Output {
  write(chunk: string | Uint8Array): boolean;
  on(event: 'drain' | 'close', listener: () => void): unknown;
  off(event: 'drain' | 'close', listener: () => void): unknown;
  readonly destroyed?: boolean;
}
/**
 * The CGI reply's writer: writeSync on fd 1, not process.stdout, whose stream machinery costs a
 * page ~5 ms of its ~30. Where the web server handed over a non-blocking pipe (EAGAIN), the rest
 * goes through process.stdout, which waits for it. A reader who goes away mid-download closes
 * our stdout: the reply simply ends (no stack trace in the web server's log).
 */
function cgiOutput(): Output & { readonly streamed: boolean } {
  let stream: NodeJS.WriteStream | undefined;
  return {
    get destroyed() { return stream?.destroyed ?? false; },
    get streamed() { return stream !== undefined; },
    write(chunk: string | Uint8Array): boolean {
      if (stream) return stream.write(chunk);
      let bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      while (bytes.length) {
        try { bytes = bytes.subarray(writeSync(1, bytes)); } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') process.exit(0);
          stream = process.stdout.on('error', () => process.exit(0));
          return stream.write(bytes);
        }
      }
      return true;
    },
    // Only waited on after a write said false: through the stream.
    on: (event: 'drain' | 'close', listener: () => void) => stream!.on(event, listener),
    off: (event: 'drain' | 'close', listener: () => void) => stream!.off(event, listener),
  };
}
