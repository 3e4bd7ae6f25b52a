// The history viewer in a real headless Chromium, against a real `ticket-mail serve` over tickets
// made by real deliveries (the built file, as an MTA runs it): a normal conversation and an XSS
// corpus, one message per vector (test/fixtures/xss/*.eml, each saying what it attacks in its
// X-Vector header). Every page a reader can reach is visited: the lists, each ticket, every raw
// message, the mbox downloads, every attachment link, the feeds and the /m/ permalinks. What
// holds on each: no dialog, no page error, nothing asked for but the viewer's own routes (the
// page's requests, also those the CSP refused, and serve's own access log), every payload on
// the page as text. The positive control, first, runs the corpus's HTML where scripts do run,
// and shows each of those checks failing on it.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { deliver, ROOT, tempDir } from './harness.ts';
import { browserMissing, launchBrowser, settle, startServe, until, watchPage, type PageWatch, type ServeServer } from './web.ts';

if (browserMissing) console.log(`skipped: the viewer in a browser: ${browserMissing}`);

const FIXTURES = join(ROOT, 'test', 'fixtures');
const XSS = join(FIXTURES, 'xss');
const SCREENSHOTS = join(ROOT, 'test', 'screenshots');

/**
 * The viewer's routes, written out again (not taken from viewer.ts): the only paths a page may
 * make a browser ask for, and the only ones serve may log.
 */
const ROUTES = [
  /^\/(?:archived\/)?(?:\?after=\d+-\d+)?$/, /^\/\?waiting=1(?:&after=\d+-\d+)?$/, /^\/stats$/, /^\/style\.css$/, /^\/new\.atom$/, /^\/m\/[^/]+$/,
  /^\/[1-9]\d*\/(?:\?page=\d+)?$/, /^\/[1-9]\d*\/(?:mbox|mbox\.gz|new\.atom)$/, /^\/[1-9]\d*\/[1-9]\d*\/raw$/,
  /^\/[1-9]\d*\/[1-9]\d*\/[1-9]\d*\/[A-Za-z0-9._-]*$/,
];
const isRoute = (path: string) => ROUTES.some((route) => route.test(path));

/** Characters no page may hold raw: C0 but tab and line feed, DEL, C1, bidi marks, embeddings, overrides, isolates, separators. */
const RAW_CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;
/** What a header may not hold (headerSafe's promise: the marks U+061C, U+200E and U+200F may stay). */
const HEADER_UNSAFE = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

/**
 * What each vector's ticket page must show as text (page.textContent), and the links the
 * message's own text may have become (only http, https and mailto, only as written).
 */
const VECTORS: Record<string, { shows: string[]; links?: string[] }> = {
  'alternative-script': { shows: ["Plain part: <script>alert('plain part')</script> and <img src=x onerror=alert('plain img')>",
    "Also </pre><script>alert('pre breakout')</script> and </bdi></dd></dl><b>bold</b>"] },
  'attachment-names': { shows: ['../../.bashrc', '..\\..\\Windows\\evil.bat', '/etc/cron.d/evil', 'evil Set-Cookie: x=1 ";.bin'] },
  'base-meta': { shows: ['Base and refresh.', 'relative link', '<meta http-equiv="refresh" content="0;url=http://evil.example/">'], links: ['http://evil.example/'] },
  // The file names' overrides are shown as marks too: each reads as what it is, never "exe.png".
  bidi: { shows: ['Invoice <U+202E>gnp.exe and <U+2066>isolate', 'Bob <U+2067>kcilc<U+2069> <bob@evil.example>', 'Please open <U+202E>gnp.exe today.',
    '<U+202E>gnp.exe (application/octet-stream, 14 bytes)', 'report<U+202E>fdp.scr (application/octet-stream'] },
  controls: { shows: ['^[[31mRED^[[0m ^[]0;owned title^G subject', '^[[31mEncoded <enc@evil.example>', '<blink@evil.example>',
    'Body: ^[[2J^[[Hcleared, <U+009B>31m C1 CSI, bell^G, pay^H^H^Hfee, del^?, form^Lfeed'] },
  css: { shows: ['Styled mail.', 'Style text: @import url(http://evil.example/in-text.css);'], links: ['http://evil.example/in-text.css'] },
  'display-name-spoof': { shows: ['support@bank.example <x@evil.example>'] },
  'header-markup': { shows: ["<script>alert('raw subject')</script> \"quoted\" 'single' & amp", "<img src=x onerror=alert('raw from')> <mallory@evil.example>"] },
  'html-attachment': { shows: ['invoice.html', 'page.xhtml', 'report.pdf'] },
  'html-links': { shows: ['Click me', 'data link', 'Log in'], links: ['https://bank.example/login'] },
  'html-only-script': { shows: ['Dear support,', "Escaped: <script>alert('entity script')</script> and <img src=x onerror=alert('entity img')>"] },
  'linkify-breakout': {
    shows: ['http://x?"onmouseover="alert(\'mailparser 412\')', "https://x.example/a'onmouseover='alert(2)'", 'http://x.example/"><img src=y onerror=alert(\'url img\')>',
      "http://x.example/<script>alert('url script')</script>", 'http://x.example/<U+202E>evil<U+202C>/'],
    links: ['http://x', 'https://x.example/a', 'http://x.example/', 'http://x.example/', 'http://x.example/', 'https://x.example/a_(b)', 'https://x.example/in-brackets'],
  },
  'lying-types': { shows: ['notes.txt', 'photo.png', 'upper.htm', 'utf7.txt'] },
  'message-id-markup': { shows: ['Message-ID markup.'] },
  'rfc2047-markup': { shows: ["<script>alert('subject')</script><script>", "<img src=x onerror=alert('from name')> <mallory@evil.example>",
    '<b>cc name</b> <cc@evil.example>', '<svg onload=alert(1)>.bin', '<script>alert(2)</script>.txt'] },
  'roundcube-cve-2023-5631': { shows: ['As text: <svg><use href="data:image/svg+xml;base64,PHN2Zy'] },
  'svg-attachment': { shows: ['See the attached drawing.', 'drawing.svg'] },
  'text-links': {
    shows: ["javascript:alert('js link')", "JaVaScRiPt:alert('mixed case js link')", "data:text/html,<script>alert('data link')</script>",
      "vbscript:msgbox('vb link')", '<a href="javascript:alert(\'tag in text\')">click</a>'],
    links: ['https://ok.example/path?q=1&r=2', 'mailto:alice@customer.example?subject=hi'],
  },
  'tracking-pixel': { shows: ['Newsletter.', 'cell'] },
};

/** The problems a visit showed: any dialog, page error, request the viewer does not serve, or request the CSP had to refuse. */
function pageProblems(watch: PageWatch): string[] {
  return [
    ...watch.dialogs.map((message) => `dialog ${message}`),
    ...watch.errors.map((error) => `page error ${error}`),
    ...watch.requests.filter((path) => !isRoute(path)).map((path) => `request ${path}`),
    ...watch.failed.map((failure) => `failed ${failure}`),
    ...watch.consoleLines.filter((line) => /Content Security Policy/.test(line)).map((line) => `console ${line}`),
  ];
}

/** The problems in serve's access log: a path that is no route, or a status a reader's click should never get. */
function serverProblems(lines: string[]): string[] {
  return lines.filter((line) => {
    if (line === 'GET /favicon.ico 404') return false; // Chromium's own, unseen by the page
    const m = /^GET (\S+) (\d{3})$/.exec(line);
    return !m || !isRoute(m[1]!) || !/^[23]/.test(m[2]!);
  });
}

/** Runs a Python program on each input (given and read back as JSON): one process for all of them. */
function python<T>(program: string, inputs: Buffer[]): T[] {
  const r = spawnSync('python3', ['-c', `import base64, json, sys\n${program}\nprint(json.dumps([each(base64.b64decode(i)) for i in json.load(sys.stdin)]))`],
    { input: JSON.stringify(inputs.map((b) => b.toString('base64'))), maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`python3: ${r.stderr}`);
  return JSON.parse(r.stdout.toString()) as T[];
}

/** Each attachment of each message as Python's email package decodes it (an independent MIME reader). */
function pythonAttachments(messages: Buffer[]): Array<Array<{ type: string; bytes: Buffer }>> {
  return python<Array<{ type: string; bytes: string }>>(`
import email
def each(raw):
    found = []
    for part in email.message_from_bytes(raw).walk():
        if part.is_multipart(): continue
        disposition = (part.get('Content-Disposition') or '').split(';')[0].strip().lower()
        if disposition != 'attachment' and part.get_content_type() in ('text/plain', 'text/html'): continue
        found.append({'type': part.get_content_type(), 'bytes': base64.b64encode(part.get_payload(decode=True)).decode()})
    return found
`, messages).map((found) => found.map((a) => ({ type: a.type, bytes: Buffer.from(a.bytes, 'base64') })));
}

interface Feed { id: string; title: string; entries: Array<{ id: string; title: string; href: string; author: string; summary: string }> }

/** Atom feeds parsed by Python's xml.dom.minidom: it throws on XML that is not well-formed. */
function pythonFeeds(xml: Buffer[]): Feed[] {
  return python<Feed>(`
import xml.dom.minidom
ATOM = 'http://www.w3.org/2005/Atom'
def text(node, name):
    found = [c for c in node.childNodes if c.nodeType == c.ELEMENT_NODE and c.namespaceURI == ATOM and c.localName == name]
    assert len(found) == 1, name
    return ''.join(t.data for t in found[0].childNodes if t.nodeType == t.TEXT_NODE)
def entry(e):
    link = [c for c in e.getElementsByTagNameNS(ATOM, 'link') if c.getAttribute('rel') == 'alternate'][0]
    text(e, 'updated')
    return {'id': text(e, 'id'), 'title': text(e, 'title'), 'href': link.getAttribute('href'),
            'author': text(e.getElementsByTagNameNS(ATOM, 'author')[0], 'name'), 'summary': text(e, 'summary')}
def each(raw):
    feed = xml.dom.minidom.parseString(raw).documentElement
    assert feed.namespaceURI == ATOM and feed.localName == 'feed', feed.tagName
    text(feed, 'updated')
    return {'id': text(feed, 'id'), 'title': text(feed, 'title'), 'entries': [entry(e) for e in feed.getElementsByTagNameNS(ATOM, 'entry')]}
`, xml);
}

/** The anchor the viewer derives from a Message-ID (as public-inbox: its SHA-1). */
const idAnchor = (messageId: string) => `m${createHash('sha1').update(messageId).digest('hex')}`;
const messageIdOf = (message: Buffer) => /^Message-ID:\s*<(.*)>\s*$/im.exec(message.subarray(0, message.indexOf('\n\n')).toString('utf8'))?.[1];


describe.skipIf(!!browserMissing)('the history viewer in a real browser, over an XSS corpus delivered for real', () => {
  let dir = '';
  let tickets = '';
  /** Each ticket: its number, what was delivered into it (the bytes the MTA handed over), and its vector. */
  const delivered: Array<{ n: number; messages: Buffer[]; vector?: string }> = [];
  let serve: ServeServer;
  let origin = '';
  let browser: Browser;
  const contexts: BrowserContext[] = [];

  const deliverTo = (recipient: string, message: Buffer) => {
    const r = deliver(['--dir', tickets, '--domain', 'tickets.example', '--recipient', recipient, '--sender', 'x@y'], message);
    expect(r, r.stderr).toMatchObject({ status: 0 });
  };

  /** serve's access-log lines (`GET /path status`) since the last call: everything answered before a fence request. */
  let logRead = 0;
  let fences = 0;
  async function serverLog(): Promise<string[]> {
    const fence = `/fence-${++fences}`; // no route: a 404, left out
    expect((await fetch(origin + fence)).status).toBe(404);
    // serve logs a request before answering it, so once the fence is answered every request answered before it is in
    // the pipe; this process reads the pipe when it likes.
    const lines = await until(`serve logging ${fence}`, () => {
      const all = serve.output().split('\n').filter((line) => /^[A-Z]+ \S* \d{3}$/.test(line));
      return all.includes(`GET ${fence} 404`) ? all : undefined;
    });
    const end = lines.indexOf(`GET ${fence} 404`);
    const fresh = lines.slice(logRead, end);
    logRead = end + 1;
    return fresh;
  }

  async function newPage(options: Parameters<Browser['newContext']>[0] = {}): Promise<{ page: Page; watch: PageWatch }> {
    const context = await browser.newContext({ acceptDownloads: true, ...options });
    contexts.push(context);
    const page = await context.newPage();
    return { page, watch: watchPage(page, origin) };
  }

  /** Visits a path and waits until what it started has run (settle: load, two frames, a task). */
  async function visit(page: Page, path: string) {
    const response = await page.goto(origin + path);
    await settle(page);
    expect(response, path).not.toBeNull();
    return response!;
  }

  /** Every tag and attribute of the page is one the viewer writes; every link goes to a route of its own or is http(s)/mailto. */
  async function domProblems(page: Page): Promise<string[]> {
    return page.evaluate(`(() => {
      const tags = new Set(['HTML','HEAD','META','TITLE','LINK','BODY','NAV','A','MAIN','H1','H2','P','TABLE','THEAD','TBODY','TR','TH','TD',
        'BDI','ARTICLE','SPAN','DL','DT','DD','PRE','DETAILS','SUMMARY','UL','LI','FORM','INPUT','BUTTON']);
      const attributes = new Set(['href','rel','id','class','lang','charset','name','content','type','title','aria-label',
        'role','method','action','value','maxlength','placeholder']);
      const problems = [];
      for (const element of document.querySelectorAll('*')) {
        if (!tags.has(element.tagName)) problems.push('element ' + element.tagName);
        for (const a of element.attributes) if (!attributes.has(a.name)) problems.push('attribute ' + element.tagName + ' ' + a.name + '=' + a.value);
        if (element.tagName === 'META' && element.hasAttribute('http-equiv')) problems.push('meta http-equiv');
      }
      // The one form a page may have is the viewer's search box: a GET to its own list.
      const forms = document.querySelectorAll('form');
      if (forms.length > 1) problems.push(forms.length + ' forms');
      for (const form of forms) {
        const url = new URL(form.getAttribute('action'), location.href);
        if (url.origin !== location.origin || form.getAttribute('method') !== 'get' || form.getAttribute('role') !== 'search') problems.push('form ' + url.href);
      }
      for (const link of document.querySelectorAll('[href]')) {
        const url = new URL(link.getAttribute('href'), location.href);
        if (url.origin === location.origin ? false : !['http:', 'https:', 'mailto:'].includes(url.protocol)) problems.push('href ' + url.href);
      }
      return problems;
    })()`);
  }

  /** Links the message texts became: every <a> inside a <pre>. */
  const textLinks = (page: Page): Promise<string[]> => page.evaluate("[...document.querySelectorAll('article pre a')].map((a) => a.getAttribute('href'))");
  const pageText = async (page: Page) => (await page.textContent('body')) ?? '';

  beforeAll(async () => {
    dir = tempDir('tm-viewer-browser-');
    tickets = join(dir, 'tickets');
    mkdirSync(SCREENSHOTS, { recursive: true });
    // Ticket 1: a normal conversation (a question; an answer quoting it, with an attachment).
    const conversation = ['new-ticket.eml', 'answer-with-attachment.eml'].map((name) => readFileSync(join(FIXTURES, name)));
    deliverTo('submit@tickets.example', conversation[0]!);
    deliverTo('ticket-1@tickets.example', conversation[1]!);
    delivered.push({ n: 1, messages: conversation });
    // Then one ticket per vector.
    for (const name of readdirSync(XSS).filter((f) => f.endsWith('.eml')).sort()) {
      const message = readFileSync(join(XSS, name));
      expect(message.toString('utf8'), name).toMatch(/^X-Vector: \S/);
      deliverTo('submit@tickets.example', message);
      delivered.push({ n: delivered.length + 1, messages: [message], vector: name.replace(/\.eml$/, '') });
    }
    expect(Object.keys(VECTORS).sort()).toEqual(delivered.flatMap((t) => t.vector ?? []).sort()); // every fixture has its expectations
    for (const { n, messages } of delivered) expect(readFileSync(join(tickets, String(n))).includes(messages.at(-1)!.subarray(0, 200))).toBe(true);
    serve = await startServe(['--dir', tickets, '--domain', 'tickets.example', '--listen', '127.0.0.1:0']);
    origin = serve.url.replace(/\/$/, '');
    browser = (await launchBrowser())!;
  }, 120_000);

  beforeEach(async () => { if (serve) await serverLog(); }); // what a failed test left in the log is its own

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => { /* the browser may be gone */ });
    await browser?.close();
    await serve?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('positive control: the corpus\'s HTML served as HTML without CSP runs its scripts and loads what it names, and every check sees it', async () => {
    // Two HTML bodies of the corpus as a careless viewer would show them (debbugs, hypermail),
    // their remote names pointed at an origin where nothing listens and their relative ones at
    // serve (a <base> to it): the same detectors as below, on the same page visit, must fail.
    const body = (name: string) => { const text = readFileSync(join(XSS, name), 'utf8'); return text.slice(text.indexOf('\n\n') + 2); };
    let elsewhere = '';
    const control: Server = createServer((_, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><base href="${origin}/">${body('html-only-script.eml')}${body('tracking-pixel.eml').replaceAll('http://evil.example', elsewhere)}`);
    });
    await new Promise<void>((done) => control.listen(0, '127.0.0.1', done));
    elsewhere = `http://127.0.0.2:${(control.address() as { port: number }).port}`;
    try {
      await serverLog();
      const { page, watch } = await newPage();
      await page.goto(elsewhere.replace('127.0.0.2', '127.0.0.1'));
      await settle(page);
      const problems = pageProblems(watch);
      expect(problems).toEqual(expect.arrayContaining([
        "dialog head script", "dialog body script", "dialog img onerror", "dialog body onload",
        expect.stringMatching(/^page error TypeError: window\.xssUndefinedCall is not a function/),
        'request /pixel.gif?relative', `request ${elsewhere}/pixel.gif?ticket=read`,
      ]));
      // Another origin's page (127.0.0.1 on another port is same-site, not same-origin): serve refuses its subresources.
      expect(serverProblems(await serverLog()).sort()).toEqual(['GET /pixel.gif 403', 'GET /x 403']);
      // And the rest of the checks below fail on this page too: foreign elements, handlers, a link to another site's script.
      expect(await domProblems(page)).toEqual(expect.arrayContaining(['element SCRIPT', 'element IMG', "attribute BODY onload=alert('body onload')"]));
    } finally {
      await new Promise((done) => control.close(done));
    }
  }, 60_000);

  it('the lists: every subject and submitter as text, nothing run or loaded; the closed list empty', async () => {
    const { page, watch } = await newPage();
    await visit(page, '/');
    expect(pageProblems(watch)).toEqual([]);
    expect(await domProblems(page)).toEqual([]);
    const text = await pageText(page);
    for (const shown of ["<script>alert('subject')</script><script>", "<script>alert('raw subject')</script> \"quoted\" 'single' & amp",
      "<img src=x onerror=alert('from name')> <mallory@evil.example>", 'support@bank.example <x@evil.example>', 'Printer on fire']) {
      expect(text).toContain(shown);
    }
    // Controls and bidi controls as marks, as on the ticket pages; never the raw character.
    for (const shown of ['^[[31mRED^[[0m ^[]0;owned title^G subject', 'Invoice <U+202E>gnp.exe and <U+2066>isolate', 'Bob <U+2067>kcilc<U+2069> <bob@evil.example>']) {
      expect(text).toContain(shown);
    }
    expect(text).not.toMatch(RAW_CONTROL);
    expect(await page.$$eval('tbody tr', (rows) => rows.length)).toBe(delivered.length);
    await visit(page, '/archived/');
    expect(await pageText(page)).toContain('No closed tickets.');
    expect(pageProblems(watch)).toEqual([]);
    expect(watch.requests).toEqual(['/', '/style.css', '/archived/', '/style.css']); // no-store: the stylesheet too
    expect(serverProblems(await serverLog())).toEqual([]);
  }, 60_000);

  it('each ticket page: the payloads as text, no raw control or bidi character, only the viewer\'s markup, links only as written', async () => {
    const { page, watch } = await newPage();
    for (const { n, vector } of delivered) {
      const label = vector ?? 'conversation';
      await visit(page, `/${n}/`);
      expect(pageProblems(watch), `ticket ${n} (${label})`).toEqual([]);
      expect(await domProblems(page), `ticket ${n} (${label})`).toEqual([]);
      const text = await pageText(page);
      const conversation = ['Alice Example <alice@customer.example>', 'service-report.pdf',
        'Hello support,\n\nthe printer next to the kitchen is on fire again. Smoke is coming out\nof the paper tray',
        '> the printer next to the kitchen is on fire again. Smoke is coming out\n> of the paper tray and it keeps printing blank pages.'];
      for (const shown of vector ? VECTORS[vector]!.shows : conversation) {
        expect(text, `ticket ${n} (${label})`).toContain(shown);
      }
      expect(text, `ticket ${n} (${label})`).not.toMatch(RAW_CONTROL);
      expect(text, `ticket ${n} (${label}): a line break shown as a control`).not.toContain('^J');
      // As rendered: the empty line after a quote is there (the parser drops a line break right after <pre>).
      if (!vector) expect(await page.innerText('article[id="2"]')).toContain('of the paper tray and it keeps printing blank pages.\n\nThe fuser unit was faulty');
      expect(await textLinks(page), `ticket ${n} (${label})`).toEqual(vector ? VECTORS[vector]!.links ?? [] : ['https://support.example/laserjet-4000']);
      expect(page.url(), 'no refresh, no base, no redirect').toBe(`${origin}/${n}/`);
      // The reply links' subjects become a header of the maintainer's mail: no control or bidi character in them.
      const replies: string[] = await page.$$eval('main > p a[href^="mailto:"]', (links) => links.map((a) => a.getAttribute('href')!));
      expect(replies.map((href) => new URL(href).pathname)).toEqual([`ticket-${n}@tickets.example`, `ticket-${n}-done@tickets.example`]);
      for (const href of replies) {
        const subject = new URL(href).searchParams.get('subject')!;
        expect(subject, `ticket ${n} (${label})`).toMatch(new RegExp(`^Re: \\[issue${n}\\] \\S`));
        expect(subject, `ticket ${n} (${label})`).not.toMatch(HEADER_UNSAFE);
      }
      // Hovering each link runs no handler (mailparser#412's onmouseover).
      for (const link of await page.$$('article a')) await link.hover();
      await settle(page);
      expect(pageProblems(watch), `ticket ${n} (${label})`).toEqual([]);
    }
    expect(serverProblems(await serverLog())).toEqual([]);
  }, 120_000);

  it('every raw message: text/plain, the bytes the MTA delivered, the payloads shown as text and nothing run', async () => {
    const { page, watch } = await newPage();
    for (const { n, messages } of delivered) {
      for (const [i, message] of messages.entries()) {
        const response = await visit(page, `/${n}/${i + 1}/raw`);
        expect(response.headers()['content-type']).toMatch(/^text\/plain(; charset=[\w-]+)?$/);
        expect(await page.evaluate('document.contentType')).toBe('text/plain');
        // The bytes as served (response.body() has them as the browser decoded them: windows-1252 without a charset).
        expect(Buffer.from(await (await fetch(`${origin}/${n}/${i + 1}/raw`)).arrayBuffer()).equals(message), `/${n}/${i + 1}/raw`).toBe(true);
      }
    }
    await visit(page, `/${delivered.find((t) => t.vector === 'html-only-script')!.n}/1/raw`);
    expect(await pageText(page)).toContain("<script>alert('body script')</script>");
    expect(pageProblems(watch)).toEqual([]);
    expect(serverProblems(await serverLog())).toEqual([]);
  }, 120_000);

  it('the mbox and mbox.gz links download the ticket file byte for byte', async () => {
    const { page, watch } = await newPage();
    for (const { n } of delivered) {
      const file = readFileSync(join(tickets, String(n)));
      await visit(page, `/${n}/`); // a download leaves the page where it is
      for (const [link, name, bytes] of [['mbox', `ticket-${n}.mbox`, (b: Buffer) => b], ['mbox.gz', `ticket-${n}.mbox.gz`, gunzipSync]] as const) {
        const [download] = await Promise.all([page.waitForEvent('download'), page.click(`a[href="/${n}/${link}"]`)]);
        expect(download.suggestedFilename()).toBe(name);
        expect(bytes(readFileSync((await download.path())!)).equals(file), `/${n}/${link}`).toBe(true);
      }
    }
    // A download is a navigation the browser then gives up: Chromium reports each as aborted.
    expect(pageProblems({ ...watch, failed: watch.failed.filter((f) => !/^\/\d+\/mbox(\.gz)? net::ERR_ABORTED$/.test(f)) })).toEqual([]);
    expect(serverProblems(await serverLog())).toEqual([]);
  }, 120_000);

  it('every attachment link: text as text/plain, anything else a download named without a path or bidi control, bytes as Python decodes them', async () => {
    const { page, watch } = await newPage();
    let texts = 0;
    const downloaded: string[] = [];
    const decoded = pythonAttachments(delivered.flatMap((t) => t.messages));
    for (const { n, messages } of delivered) {
      for (const i of messages.keys()) {
        const expected = decoded.shift()!;
        await visit(page, `/${n}/`);
        const hrefs: string[] = await page.$$eval(`article[id="${i + 1}"] ul.files a`, (links) => links.map((a) => a.getAttribute('href')!));
        expect(hrefs.length, `/${n}/ message ${i + 1}`).toBe(expected.length);
        for (const [a, href] of hrefs.entries()) {
          expect(href).toMatch(new RegExp(`^/${n}/${i + 1}/${a + 1}/[A-Za-z0-9._-]+$`));
          const { type, bytes } = expected[a]!;
          if (page.url() !== `${origin}/${n}/`) await visit(page, `/${n}/`); // after a text attachment, shown in its place
          if (type.startsWith('text/')) {
            const [response] = await Promise.all([page.waitForResponse(origin + href), page.click(`a[href="${href}"]`)]);
            await page.waitForURL(origin + href);
            await settle(page);
            expect(response.headers()['content-type'], href).toMatch(/^text\/plain(; charset=[\w-]+)?$/);
            expect(await page.evaluate('document.contentType'), href).toBe('text/plain');
            expect(Buffer.from(await (await fetch(origin + href)).arrayBuffer()).equals(bytes), href).toBe(true);
            texts++;
          } else {
            const [download] = await Promise.all([page.waitForEvent('download'), page.click(`a[href="${href}"]`)]);
            const name = download.suggestedFilename();
            expect(name, href).not.toMatch(/[/\\]|^\.|[\x00-\x1f\x7f-\x9f]/);
            expect(name, href).not.toMatch(BIDI);
            expect(readFileSync((await download.path())!).equals(bytes), href).toBe(true);
            downloaded.push(name);
          }
        }
      }
    }
    expect(texts).toBe(5);
    // Chromium's own cleaning adds to the viewer's (":" and "<" become "_"); no name keeps a folder, a leading dot or a bidi control.
    expect(downloaded).toEqual(['service-report.pdf', 'bashrc', 'Windowsevil.bat', 'etccron.devil', 'evil Set-Cookie_ x=1 ;.bin', 'gnp.exe', 'reportfdp.scr',
      'page.xhtml', 'report.pdf', 'photo.png', '_svg onload=alert(1)_.bin', 'drawing.svg']);
    // The text/html attachment and the text/plain one holding HTML: shown as text, their scripts not run.
    const lying = delivered.find((t) => t.vector === 'lying-types')!.n;
    await visit(page, `/${lying}/1/1/notes.txt`);
    expect(await pageText(page)).toContain("<html><script>alert('text/plain holding html')</script>");
    await visit(page, `/${delivered.find((t) => t.vector === 'html-attachment')!.n}/1/1/invoice.html`);
    expect(await pageText(page)).toContain("<script>alert('html attachment')</script>");
    expect(pageProblems({ ...watch, failed: watch.failed.filter((f) => !/^\/\d+\/\d+\/\d+\/\S+ net::ERR_ABORTED$/.test(f)) })).toEqual([]);
    expect(serverProblems(await serverLog())).toEqual([]);
  }, 180_000);

  it('the feeds: well-formed Atom to an XML parser, entry ids stable across fetches, the payloads as text, links that land on their message', async () => {
    const { page, watch } = await newPage();
    // Each feed fetched by the browser, then again: the same XML to a parser, the same entry ids.
    const paths = ['/new.atom', ...delivered.map(({ n }) => `/${n}/new.atom`)];
    const fetched: Buffer[] = [];
    for (const path of paths) fetched.push(await (await visit(page, path)).body());
    for (const path of paths) fetched.push(Buffer.from(await (await fetch(origin + path)).arrayBuffer()));
    const feeds = pythonFeeds(fetched);
    expect(feeds.slice(paths.length)).toEqual(feeds.slice(0, paths.length));
    const [all, ...perTicket] = feeds.slice(0, paths.length) as [Feed, ...Feed[]];
    expect(all.entries.map((e) => e.href).sort()).toEqual(delivered.map(({ n, messages }) => `${n}/#${messages.length}`).sort());
    expect(new Set(all.entries.map((e) => e.id)).size).toBe(delivered.length);
    const titles = all.entries.map((e) => e.title).join('\n');
    for (const shown of ["<script>alert('subject')</script><script>", '^[[31mRED^[[0m ^[]0;owned title^G subject', 'Invoice <U+202E>gnp.exe']) expect(titles).toContain(shown);
    for (const [t, { n, messages }] of delivered.entries()) {
      const one = perTicket[t]!;
      expect(one.entries.map((e) => e.href)).toEqual(messages.map((_, i) => `./#${messages.length - i}`));
      // The same message has the same id in both feeds (from its Message-ID).
      expect(one.entries[0]!.id).toBe(all.entries.find((e) => e.href === `${n}/#${messages.length}`)!.id);
      for (const e of one.entries) {
        expect(e.id).toMatch(/^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        expect(`${e.title}${e.author}${e.summary}`).not.toMatch(RAW_CONTROL);
      }
    }
    for (const entry of all.entries) {
      await visit(page, `/${entry.href}`);
      const k = entry.href.split('#')[1]!;
      expect(await page.evaluate('document.querySelector(":target")?.id'), entry.href).toBe(k);
    }
    expect(pageProblems(watch)).toEqual([]);
    expect(serverProblems(await serverLog())).toEqual([]);
  }, 120_000);

  it('/m/MESSAGE-ID: every message\'s permalink lands on its ticket and anchor, a Message-ID with quotes and slashes too', async () => {
    const { page, watch } = await newPage();
    for (const { n, messages } of delivered) {
      for (const [i, message] of messages.entries()) {
        const id = messageIdOf(message)!;
        await visit(page, `/m/${encodeURIComponent(id)}`);
        expect(page.url(), id).toBe(`${origin}/${n}/#${i + 1}`);
        expect(await page.evaluate('document.querySelector(":target")?.id'), id).toBe(String(i + 1));
        // The stable anchor (from the Message-ID) is in the same message.
        expect(await page.evaluate(`document.getElementById(${JSON.stringify(idAnchor(id))})?.closest('article')?.id`), id).toBe(String(i + 1));
      }
    }
    expect(pageProblems(watch)).toEqual([]);
    expect(serverProblems(await serverLog())).toEqual([]);
  }, 120_000);

  it('screenshots of the list and of a ticket page, light and dark (saved in test/screenshots/)', async () => {
    const backgrounds: Record<string, string> = {};
    for (const colorScheme of ['light', 'dark'] as const) {
      const { page, watch } = await newPage({ colorScheme, viewport: { width: 960, height: 700 } });
      await visit(page, '/');
      await page.screenshot({ path: join(SCREENSHOTS, `list-${colorScheme}.png`), fullPage: true });
      backgrounds[colorScheme] = await page.evaluate('getComputedStyle(document.body).backgroundColor');
      await visit(page, '/1/');
      await page.screenshot({ path: join(SCREENSHOTS, `ticket-${colorScheme}.png`), fullPage: true });
      const hostile = delivered.find((t) => t.vector === 'bidi')!.n;
      await visit(page, `/${hostile}/`);
      await page.screenshot({ path: join(SCREENSHOTS, `ticket-bidi-${colorScheme}.png`), fullPage: true });
      expect(pageProblems(watch)).toEqual([]);
    }
    // prefers-color-scheme is honoured: the stylesheet's two backgrounds.
    expect(backgrounds).toEqual({ light: 'rgb(255, 255, 255)', dark: 'rgb(20, 20, 20)' });
    for (const name of ['list-light', 'list-dark', 'ticket-light', 'ticket-dark']) {
      expect(readFileSync(join(SCREENSHOTS, `${name}.png`)).subarray(1, 4).toString()).toBe('PNG');
    }
    expect(serverProblems(await serverLog())).toEqual([]);
  }, 60_000);
});
