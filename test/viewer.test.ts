// The history viewer's request handler, unit by unit: handle() over tickets made by real
// deliveries of the built file, in real folders. Status, headers and escaping of every page;
// bad paths, methods, Host checks and authentication; the raw bytes (byte for byte); and the
// read-only promise (nothing in the tickets folder changes, a half-appended record is left out).
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, readFileSync, readdirSync, renameSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { type IncomingHttpHeaders, request } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { Store, mboxRecord, mimeOutline, resolveConfig, shownMailboxes } from '../ticket.ts';
import { type Access, type Reply, type Request, disposition, handle, hashPassword, html, parseUsers, sha1Hex } from '../viewer.ts';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { deliver, FAKE_SENDMAIL, mail, tempDir } from './harness.ts';
import { startServe, until } from './web.ts';

/** A tickets folder filled by deliveries, and a viewer over it. */
function setup(access: Access = { kind: 'loopback', uids: new Set([process.getuid!()]) }, hosts?: Set<string>) {
  const tickets = join(tempDir('tm-view-'), 'tickets');
  const settings = ['--dir', tickets, '--domain', 'tickets.example', '--sendmail', FAKE_SENDMAIL];
  const send = (recipient: string, message: string | Buffer, sender = 'alice@customer.example') => {
    const r = deliver([...settings, '--recipient', recipient, '--sender', sender], message);
    expect(r, r.stderr).toMatchObject({ status: 0 });
  };
  const store = new Store(resolveConfig({ dir: tickets, domain: 'tickets.example' }, {}, {}));
  const viewer = { store, base: '', access, ...(hosts ? { hosts } : {}) };
  /** One request, its body read whole. */
  const get = async (target: string, req: Partial<Request> = {}): Promise<Reply & { bytes: Buffer; text: string }> => {
    const reply = await handle(viewer, { method: 'GET', target, peerUid: process.getuid!(), ...req });
    const chunks: Buffer[] = [];
    const body = reply.body;
    if (typeof body === 'string' || Buffer.isBuffer(body)) chunks.push(Buffer.from(body));
    else if (body) for await (const c of body) chunks.push(Buffer.from(c));
    reply.release?.();
    const bytes = Buffer.concat(chunks);
    return { ...reply, bytes, text: bytes.toString('utf8') };
  };
  return { tickets, send, get, viewer, store };
}

/** Everything in a folder tree: path, size, mtime (the read-only check). */
function tree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort().map((p) => {
    const st = statSync(join(dir, p));
    return `${p} ${st.size} ${st.mtimeMs} ${st.mode.toString(8)}`;
  });
}

const HOSTILE_SUBJECT = '=?UTF-8?B?PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==?= \x1b[2J \u202Egnp.exe';

describe('pages', () => {
  it('every response carries the security headers, also errors and refusals', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: 'Printer' }));
    for (const target of ['/', '/archived/', '/1/', '/1/1/raw', '/1/mbox', '/1/mbox.gz', '/new.atom', '/1/new.atom', '/style.css', '/nope', '/1/9/raw']) {
      const r = await t.get(target);
      expect(r.headers, target).toMatchObject({
        // The lists carry the search box: a form to the viewer itself, and only there (doc/viewer.md).
        'Content-Security-Policy': `default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action '${['/', '/archived/'].includes(target) ? 'self' : 'none'}'; frame-ancestors 'none'`,
        'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer', 'Cache-Control': 'no-store', 'X-Frame-Options': 'DENY',
      });
    }
    const post = await handle(t.viewer, { method: 'POST', target: '/1/' });
    expect(post).toMatchObject({ status: 405, headers: { Allow: 'GET, HEAD', 'X-Content-Type-Options': 'nosniff' } });
  });

  it('lists open and closed tickets, newest activity first, with name and address, escaped', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: 'First', from: '"support@bank.example" <x@evil.example>' }));
    t.send('submit@tickets.example', mail({ subject: HOSTILE_SUBJECT }));
    t.send('ticket-1-done@tickets.example', mail({ subject: 'done', from: 'x@evil.example' }), 'x@evil.example');
    const open = await t.get('/');
    expect(open).toMatchObject({ status: 200, headers: { 'Content-Type': 'text/html; charset=utf-8' } });
    expect(open.text).toContain('<a href="/2/"><bdi>&lt;script&gt;alert(1)&lt;/script&gt; ^[[2J &lt;U+202E&gt;gnp.exe</bdi></a>');
    expect(open.text).not.toContain('/1/');
    expect(open.text).not.toMatch(/<script|\x1b|\u202e/);
    const closed = await t.get('/archived/');
    expect(closed.text).toContain('<bdi>support@bank.example &lt;x@evil.example&gt;</bdi>');
    expect(closed.text).toMatch(/<td>\d{4}-\d\d-\d\d \d\d:\d\d UTC<\/td><td>closed<\/td>/);
  });

  it('pages the list with a cursor that arriving mail does not shift', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: 'one' }));
    for (let n = 2; n <= 120; n++) { // more tickets, as files: a copy of a delivered one, each its own activity time
      writeFileSync(join(t.tickets, String(n)), readFileSync(join(t.tickets, '1')));
      const when = new Date(Date.UTC(2026, 0, 1) + n * 60_000);
      spawnSync('touch', ['-d', when.toISOString(), join(t.tickets, String(n))]);
    }
    const first = await t.get('/');
    const numbers = (text: string) => [...text.matchAll(/<td class="n"><a href="\/(\d+)\/">/g)].map((m) => Number(m[1]));
    expect(numbers(first.text)).toHaveLength(50);
    expect(numbers(first.text).slice(0, 3)).toEqual([1, 120, 119]);
    const next = /href="(\/\?after=\d+-\d+)"/.exec(first.text)![1]!;
    const second = await t.get(next);
    expect(numbers(second.text)[0]).toBe(71);
    t.send('ticket-100@tickets.example', mail({ subject: 'Re: bump' })); // ticket 100 moves to the top
    const again = await t.get(next);
    expect(numbers(again.text)[0]).toBe(71); // the page starts where it did
    expect(numbers(again.text)).not.toContain(100);
    const last = await t.get(/href="(\/\?after=\d+-\d+)"/.exec(again.text)![1]!);
    expect(numbers(last.text).at(-1)).toBe(2);
    expect(last.text).not.toContain('Older activity');
    expect((await t.get('/?after=junk')).status).toBe(404);
  });

  it('shows a ticket: anchors, decoded then escaped fields, visible controls and bidi, folded quotes, links, attachments', async () => {
    const t = setup();
    t.send('submit@tickets.example', [
      `From: =?UTF-8?B?${Buffer.from('<img src=x onerror=alert(1)> \u202Eevil').toString('base64')}?= <eve@evil.example>`,
      'To: submit@tickets.example', 'Cc: Bob <bob@example.com>, carol@example.com', `Subject: ${HOSTILE_SUBJECT}`,
      'Date: Mon, 1 Jan 2024 00:00:00 +0000', 'Message-ID: <m1@evil.example>', '', 
      'See https://example.com/a?b=1&c=2. and javascript:alert(1) and http://x?"onmouseover="alert(1)',
      'tab\there \x1b[31mred\u009b2J', ...Array.from({ length: 8 }, (_, i) => `> quoted ${i}`), 'end', ''].join('\n'));
    t.send('ticket-1@tickets.example', [
      'From: Bob <bob@example.com>', 'To: ticket-1@tickets.example', 'Subject: Re: [issue1] files', 'Message-ID: <m2@example.com>',
      'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="b"', '',
      '--b', 'Content-Type: text/html; charset=utf-8', '', '<p>only <b>html</b><script>alert(2)</script><img src="http://track.example/p.gif"></p>',
      '--b', 'Content-Type: image/svg+xml', `Content-Disposition: attachment; filename*=UTF-8''%E2%80%AEgnp.svg`, 'Content-Transfer-Encoding: base64', '',
      Buffer.from('<svg onload="alert(3)"/>').toString('base64'), '--b--', ''].join('\n'));
    const r = await t.get('/1/');
    expect(r.status).toBe(200);
    const page = r.text;
    expect(page).toContain('<article id="1">');
    expect(page).toContain(`<span id="m${createHashHex('m1@evil.example')}"></span>`);
    expect(page).toContain('<bdi>&lt;script&gt;alert(1)&lt;/script&gt; ^[[2J &lt;U+202E&gt;gnp.exe</bdi>');
    expect(page).toContain('<bdi>&lt;img src=x onerror=alert(1)&gt; &lt;U+202E&gt;evil &lt;eve@evil.example&gt;</bdi>');
    expect(page).toContain('<dt>Cc</dt><dd><bdi>Bob &lt;bob@example.com&gt;</bdi>, <bdi>carol@example.com</bdi></dd>');
    expect(page).toContain('<a href="https://example.com/a?b=1&amp;c=2" rel="nofollow noreferrer">https://example.com/a?b=1&amp;c=2</a>.');
    expect(page).toContain('and javascript:alert(1) and <a href="http://x" rel="nofollow noreferrer">http://x</a>?&quot;onmouseover=&quot;alert(1)');
    expect(page).toContain('tab\there ^[[31mred&lt;U+009B&gt;2J');
    expect(page).toContain('<details><summary>8 quoted lines</summary><pre class="q">&gt; quoted 0\n');
    expect(page).toContain('<pre>only html</pre>'); // the HTML-only message as text: no script, no image
    expect(page).toContain('<a href="/1/2/1/gnp.svg"><bdi>&lt;U+202E&gt;gnp.svg</bdi></a> <span class="dim">(<bdi>image/svg+xml</bdi>, 24 bytes)</span>');
    expect(page).toContain('href="mailto:ticket-1@tickets.example?subject=Re%3A%20%5Bissue1%5D%20');
    expect(page).toContain('href="mailto:ticket-1-done@tickets.example?subject=');
    expectOnlyOurMarkup(page);
    expect(page).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/);
  });

  it('pages a ticket of more than 200 messages; each page links the next', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: 'long' }));
    const records = Array.from({ length: 450 }, (_, i) => mboxRecord(Buffer.from(mail({ subject: `n${i + 2}`, id: `p${i + 2}@x` })), 'a@x', 'ticket 1', new Date()));
    appendFileSync(join(t.tickets, '1'), Buffer.concat(records));
    const one = await t.get('/1/');
    expect(one.text.match(/<article /g)).toHaveLength(200);
    expect(one.text).toContain('Messages 1-200 of 451');
    expect(one.text).toContain('<a rel="next" href="/1/?page=2">');
    const three = await t.get('/1/?page=3');
    expect(three.text.match(/<article /g)).toHaveLength(51);
    expect(three.text).toContain('<article id="451">');
    expect((await t.get('/1/?page=4')).status).toBe(404);
    expect((await t.get('/1/?page=0')).status).toBe(404);
    t.send('ticket-1@tickets.example', mail({ subject: 'Re: later', id: 'late@x' }));
    expect(await t.get('/m/late@x')).toMatchObject({ status: 302, headers: { Location: '/1/?page=3#452' } });
  });
});

/** Every tag in a page is one the viewer writes, with attributes it writes, and no href but http(s), mailto and its own paths. */
function expectOnlyOurMarkup(page: string) {
  const tags = new Set(['html', 'head', 'meta', 'title', 'link', 'body', 'nav', 'main', 'a', 'h1', 'h2', 'p', 'span', 'article', 'dl', 'dt', 'dd',
    'pre', 'details', 'summary', 'ul', 'li', 'bdi', 'table', 'thead', 'tbody', 'tr', 'th', 'td']);
  const attributes = new Set(['lang', 'charset', 'name', 'content', 'rel', 'href', 'type', 'title', 'aria-label', 'id', 'class']);
  for (const [tag, name, attrs] of page.matchAll(/<\/?([a-z0-9]+)([^>]*)>/gi)) {
    expect(tags.has(name!), tag).toBe(true);
    for (const [, attribute, value] of attrs!.matchAll(/\s([^\s=]+)(?:="([^"]*)")?/g)) {
      expect(attributes.has(attribute!), tag).toBe(true);
      if (attribute === 'href') expect(value, tag).toMatch(/^(\/|#|\.\/|https?:\/\/|mailto:)/);
    }
  }
}

const createHashHex = (id: string) => spawnSync('python3', ['-c', 'import hashlib,sys;print(hashlib.sha1(sys.argv[1].encode()).hexdigest())', id], { encoding: 'utf8' }).stdout.trim();

describe('raw bytes', () => {
  it('gives message K exactly as it was delivered, mboxrd quoting undone, also past the first MiB and without a final newline', async () => {
    const t = setup();
    const small = `${mail({ subject: 'raw' })}From me\n>From you\n>>From them\nFrom`; // no final newline
    const big = Buffer.concat([Buffer.from(mail({ subject: 'big', body: '' })), Buffer.alloc(1_500_000, 'x\n'), Buffer.from('\nFrom late\n>From later\n\r\nFrom\n')]);
    const crlf = Buffer.from(mail({ subject: 'crlf', body: 'From a\r\n>From b\r\n' }).replace(/\n/g, '\r\n'));
    t.send('submit@tickets.example', small);
    t.send('ticket-1@tickets.example', big);
    t.send('ticket-1@tickets.example', crlf);
    for (const [k, sent] of [[1, Buffer.from(small)], [2, big], [3, crlf]] as const) {
      const r = await t.get(`/1/${k}/raw`);
      expect(r.status).toBe(200);
      expect(r.headers['Content-Type']).toBe('text/plain');
      expect(r.bytes.equals(sent), `message ${k}`).toBe(true);
    }
    const charset = setup();
    charset.send('submit@tickets.example', mail({ headers: ['Content-Type: text/plain; charset="iso-8859-1"'] }));
    charset.send('ticket-1@tickets.example', mail({ headers: ['Content-Type: text/plain; charset=utf-8\r\nX-Evil: 1'] }));
    expect((await charset.get('/1/1/raw')).headers['Content-Type']).toBe('text/plain; charset=iso-8859-1');
    charset.send('ticket-1@tickets.example', mail({ headers: ['Content-Type: text/plain; charset="a;b<script>"'] }));
    expect((await charset.get('/1/3/raw')).headers['Content-Type']).toBe('text/plain');
  });

  it('gives the ticket file byte for byte as mbox and mbox.gz', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ body: 'From here\n' }));
    t.send('ticket-1@tickets.example', mail({ subject: 'Re: x' }));
    const file = readFileSync(join(t.tickets, '1'));
    const mbox = await t.get('/1/mbox');
    expect(mbox.headers).toMatchObject({ 'Content-Type': 'application/mbox', 'Content-Disposition': 'attachment; filename="ticket-1.mbox"', 'Content-Length': String(file.length) });
    expect(mbox.bytes.equals(file)).toBe(true);
    const gz = await t.get('/1/mbox.gz');
    expect(gz.headers).toMatchObject({ 'Content-Type': 'application/gzip', 'Content-Disposition': 'attachment; filename="ticket-1.mbox.gz"' });
    expect(gunzipSync(gz.bytes).equals(file)).toBe(true);
  });

  it('serves attachments decoded, never with the sender\'s type: text as text/plain, the rest as downloads', async () => {
    const t = setup();
    const binary = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) % 256));
    t.send('submit@tickets.example', [
      'From: a@x', 'To: submit@tickets.example', 'Subject: files', 'Message-ID: <f@x>', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary=b', '',
      '--b', 'Content-Type: text/plain', '', 'see attached',
      '--b', 'Content-Type: application/pdf; name="a.pdf"', 'Content-Transfer-Encoding: base64', '', binary.toString('base64').replace(/.{76}/g, '$&\n'),
      '--b', 'Content-Type: text/html; charset=utf-8', 'Content-Disposition: attachment; filename="page.html"', 'Content-Transfer-Encoding: quoted-printable', '',
      '<script>alert(1)</script> caf=C3=A9 long=', 'line',
      '--b', 'Content-Type: image/png', 'Content-Disposition: attachment; filename="../../\\"x\u202Egnp.exe\r\n"', '', '<svg onload=alert(1)>',
      '--b--', ''].join('\n'));
    const pdf = await t.get('/1/1/1/a.pdf');
    expect(pdf.headers).toMatchObject({ 'Content-Type': 'application/octet-stream', 'Content-Disposition': `attachment; filename="a.pdf"; filename*=UTF-8''a.pdf` });
    expect(pdf.bytes.equals(binary)).toBe(true);
    const page = await t.get('/1/1/2/page.html');
    expect(page.headers).toMatchObject({ 'Content-Type': 'text/plain; charset=utf-8', 'Content-Disposition': expect.stringMatching(/^inline; filename="page.html"/) });
    expect(page.text).toBe('<script>alert(1)</script> café longline');
    const png = await t.get('/1/1/3/x');
    expect(png.headers['Content-Type']).toBe('application/octet-stream');
    expect(png.headers['Content-Disposition']).toMatch(/^attachment; filename="[A-Za-z0-9._ -]+"; filename\*=UTF-8''[A-Za-z0-9%._~!-]+$/);
    expect(decodeURIComponent(png.headers['Content-Disposition']!.split("''")[1]!)).not.toMatch(/[/\\"\u202e\r\n]/);
    expect((await t.get('/1/1/4/x')).status).toBe(404);
    expect((await t.get('/1/1/0/x')).status).toBe(404);
  });

  it('builds Content-Disposition from a safe alphabet and RFC 5987', () => {
    expect(disposition('attachment', '\u202Egnp.exe', 'f.bin')).toBe(`attachment; filename="gnp.exe"; filename*=UTF-8''gnp.exe`);
    expect(disposition('attachment', 'résumé (1).pdf', 'f.bin')).toBe(`attachment; filename="r_sum_ _1_.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%281%29.pdf`);
    expect(disposition('inline', '../.."\\x', 'f.txt')).toBe(`inline; filename="x"; filename*=UTF-8''x`);
    expect(disposition('attachment', '', 'f.bin')).toBe(`attachment; filename="f.bin"; filename*=UTF-8''f.bin`);
  });
});

describe('bounds on what hostile mail costs a page', () => {
  it('reads an address field to 4 KiB for showing (postal-mime is super-linear on nested groups) and outlines at most 10,000 MIME parts', () => {
    const groups = 'g:'.repeat(30_000);
    expect(shownMailboxes(`${groups} real@x.example`)).not.toContain('real@x.example');
    expect(shownMailboxes(`a@x.example, ${'b@x.example, '.repeat(400)}late@x.example`)).not.toContain('late@x.example');
    expect(shownMailboxes('=?utf-8?q?Eve_;_Admin:?= <eve@x.example>')).toEqual(['Eve ; Admin: <eve@x.example>']); // a ';' in an encoded word is text
    const parts = (n: number) => Buffer.from(`Content-Type: multipart/mixed; boundary=X\n\n${'--X\nContent-Type: text/plain\n\nx\n'.repeat(n)}--X\nContent-Type: application/pdf; name=late.pdf\n\npdf\n--X--\n`);
    expect(mimeOutline([parts(100)]).attachments.map((a) => a.name)).toEqual(['late.pdf']);
    const flood = mimeOutline([parts(20_000)]);
    expect(flood.cut).toBe(true);
    expect(flood.attachments).toEqual([]); // past the bound, the rest is one part's text, not parsed
  });
});

describe('routing and access', () => {
  it('answers bad paths with a short 404, never a file outside and never a stack trace', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail());
    for (const target of ['/1/%2e%2e/', '/1/%2e%2e/%2e%2e/etc/passwd', '//evil/', '/0/', '/01/', '/1/99999999999/raw', '/1/0/raw',
      '/../etc/passwd', '/1/1/1/../../x', '/1000000000/', '/1/1/raw/', '/archived', '/m/', '/m/%ZZ', '/1/1/1/a%2fb', '\\1\\', '/1/?page=1e3']) {
      const r = await t.get(target);
      expect(r.status, target).toBe(404);
      expect(r.text, target).toContain('<h1>Not found</h1>');
      expect(r.text).not.toMatch(/at .*\.ts:\d|Error:/);
    }
    expect(await t.get('/1')).toMatchObject({ status: 301, headers: { Location: '/1/' } });
    const head = await handle(t.viewer, { method: 'HEAD', target: '/1/mbox', peerUid: process.getuid!() });
    expect(head.status).toBe(200);
    expect(head.body).toBeUndefined();
  });

  it('answers a failure inside with a plain 500', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ id: 'x@y' }));
    const ids = join(t.tickets, '.ticket-mail', 'ids');
    renameSync(ids, `${ids}.aside`);
    writeFileSync(ids, 'not a folder');
    const r = await t.get('/m/x@y');
    expect(r.status).toBe(500);
    expect(r.text).toContain('Something went wrong');
    expect(r.text).not.toContain('ids');
  });

  it('checks the Host header against its list (DNS rebinding)', async () => {
    const t = setup({ kind: 'loopback', uids: new Set([process.getuid!()]) }, new Set(['127.0.0.1:8025', 'localhost:8025']));
    t.send('submit@tickets.example', mail());
    expect((await t.get('/1/mbox', { host: '127.0.0.1:8025' })).status).toBe(200);
    for (const host of ['evil.example:8025', 'localhost.evil.example:8025', '127.0.0.1:8026', '', 'localhost']) {
      const r = await t.get('/1/mbox', { host });
      expect(r.status, host).toBe(421);
      expect(r.text).not.toContain('From ');
    }
  });

  it('wants the token (Bearer, or ?token= once for an HttpOnly SameSite=Strict cookie) or a Basic user', async () => {
    const token = 'c0ffee-0123456789abcdef';
    const users = parseUsers(`alice:${await hashPassword('correct horse')}\n`, 'users');
    const t = setup({ kind: 'secrets', token: Buffer.from(token), users });
    t.send('submit@tickets.example', mail());
    const refused = await t.get('/1/mbox');
    expect(refused).toMatchObject({ status: 401, headers: { 'WWW-Authenticate': 'Basic realm="ticket-mail", charset="UTF-8"' } });
    expect(refused.text).not.toContain('From ');
    expect((await t.get('/1/mbox', { authorization: `Bearer ${token}` })).status).toBe(200);
    expect((await t.get('/1/mbox', { authorization: `Bearer ${token}x` })).status).toBe(401);
    expect((await t.get('/1/mbox?token=wrong')).status).toBe(401);
    const exchange = await t.get(`/1/?token=${token}&page=1`);
    expect(exchange).toMatchObject({ status: 303, headers: { Location: '/1/?page=1' } });
    const cookie = exchange.headers['Set-Cookie']!;
    expect(cookie).toMatch(/^ticket_mail=[0-9a-f]{64}; Path=\/; Max-Age=43200; HttpOnly; SameSite=Strict$/);
    expect(cookie).not.toContain(token);
    expect((await t.get('/1/mbox', { cookie: `other=1; ${cookie.split(';')[0]}` })).status).toBe(200);
    expect((await t.get('/1/mbox', { cookie: 'ticket_mail=' + '0'.repeat(64) })).status).toBe(401);
    const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    expect((await t.get('/1/mbox', { authorization: basic('alice', 'correct horse') })).status).toBe(200);
    expect((await t.get('/1/mbox', { authorization: basic('alice', 'wrong horse') })).status).toBe(401);
    expect((await t.get('/1/mbox', { authorization: basic('bob', 'correct horse') })).status).toBe(401);
  });

  it('on loopback without a secret, lets in only its own account and root; another site\'s requests only as navigations', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail());
    expect((await t.get('/1/mbox', { peerUid: 65534 })).status).toBe(403); // nobody: the 0600 tickets stay theirs
    expect((await t.get('/1/mbox', { peerUid: undefined })).status).toBe(403); // unknown: refused
    expect((await t.get('/1/mbox', { fetchSite: 'cross-site', fetchMode: 'no-cors' })).status).toBe(403); // <img src=...>
    expect((await t.get('/m/x@y', { fetchSite: 'same-site', fetchMode: 'cors' })).status).toBe(403); // another port of localhost
    expect((await t.get('/1/', { fetchSite: 'cross-site', fetchMode: 'navigate' })).status).toBe(200); // a link in a mail
    expect((await t.get('/1/', { fetchSite: 'same-origin', fetchMode: 'no-cors' })).status).toBe(200);
  });

  it('under CGI, refuses unless the web server authenticated the reader', async () => {
    const t = setup({ kind: 'web-server' });
    t.send('submit@tickets.example', mail());
    expect((await t.get('/1/mbox')).status).toBe(403);
    expect((await t.get('/1/mbox', { remoteUser: 'alice' })).status).toBe(200);
  });

  it('escapes every value of the html template unless it is markup, and shows controls', () => {
    const evil = '<a href="x" onclick=\'y\'>&amp;\x1b\u202e</a>';
    expect(html`<p title="${evil}">${evil}${html`<b>${evil}</b>`}${[evil, 1]}${undefined}${false}</p>`.text).toBe(
      '<p title="&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;^[&lt;U+202E&gt;&lt;/a&gt;">' +
      '&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;^[&lt;U+202E&gt;&lt;/a&gt;<b>&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;^[&lt;U+202E&gt;&lt;/a&gt;</b>' +
      '&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;^[&lt;U+202E&gt;&lt;/a&gt;1</p>');
  });
});

describe('permalinks and feeds', () => {
  it('redirects a Message-ID to its ticket and anchor, lists the tickets of a reused one, 404 otherwise', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ id: 'first@x' }));
    t.send('ticket-1@tickets.example', mail({ id: 'a/b+c@x', subject: 'Re: x' }));
    expect(await t.get('/m/a%2Fb%2Bc%40x')).toMatchObject({ status: 302, headers: { Location: '/1/#2' } });
    expect(await t.get('/m/%3Cfirst@x%3E')).toMatchObject({ status: 302, headers: { Location: '/1/#1' } });
    expect((await t.get('/m/unknown@x')).status).toBe(404);
    expect((await t.get('/m/a%20b@x')).status).toBe(404);
    t.send('submit@tickets.example', mail({ id: 'first@x', subject: 'another, same ID', body: 'different\n' }), 'mallory@evil.example');
    const both = await t.get('/m/first@x');
    expect(both.status).toBe(300);
    expect(both.text).toContain('<a href="/1/#1">Ticket 1, message 1</a>');
    expect(both.text).toContain('<a href="/2/#1">Ticket 2, message 1</a>');
  });

  it('writes well-formed Atom with stable ids, control characters removed', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: `bad \x01\x0b\x1b \u009b ]]> <x> &amp;`, id: 'feed@x', body: 'text \x00\x07 &#x1; &#xd800;\n' }));
    t.send('ticket-1@tickets.example', mail({ subject: 'Re: next', id: 'feed2@x', from: 'Bob <bob@x>' }));
    const feeds = ['/new.atom', '/1/new.atom'];
    for (const target of feeds) {
      const a = await t.get(target);
      expect(a.headers['Content-Type']).toBe('application/atom+xml; charset=utf-8');
      const parsed = spawnSync('python3', ['-c', 'import sys,xml.dom.minidom as m;d=m.parseString(sys.stdin.buffer.read());print(len(d.getElementsByTagName("entry")), *[e.firstChild.data for e in d.getElementsByTagName("id")])'], { input: a.bytes, encoding: 'utf8' });
      expect(parsed.stderr, target).toBe('');
      const [count, ...ids] = parsed.stdout.trim().split(' ');
      expect(Number(count), target).toBe(target === '/new.atom' ? 1 : 2);
      expect(ids.every((id) => /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(id))).toBe(true);
      expect((await t.get(target)).text).toBe(a.text); // the same ids (and all else) when nothing changed
    }
    const ticketFeed = (await t.get('/1/new.atom')).text;
    expect(ticketFeed).toContain('<link rel="alternate" type="text/html" href="./#2"/>');
    expect(ticketFeed).toContain('bad ^A^K^[ &lt;U+009B&gt; ]]&gt; &lt;x&gt; &amp;amp;');
  });
});

describe('SHA-1 of the anchors and feed ids', () => {
  it('is node:crypto\'s, at every length around a block\'s edges and for any text', () => {
    const node = (text: string) => createHash('sha1').update(text).digest('hex');
    for (let length = 0; length <= 130; length++) expect(sha1Hex('x'.repeat(length)), `length ${length}`).toBe(node('x'.repeat(length)));
    expect(sha1Hex('abc')).toBe('a9993e364706816aba3e25717850c26c9cd0d89d'); // FIPS 180-1's example
    fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 300 }), (text) => sha1Hex(text) === node(text)), { numRuns: 500 });
  });
});

describe('the open list', () => {
  it('reads the tickets again only when their folder changed, and every write under the dotlock changes it', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: 'one' }));
    t.send('submit@tickets.example', mail({ subject: 'two' }));
    const messages = async (n: number) => Number(new RegExp(`<a href="/${n}/">${n}</a>.*?<td class="n">(\\d+)</td>`).exec((await t.get('/')).text)?.[1]);
    const unlockedAppend = () => appendFileSync(join(t.tickets, '1'), 'From x@y Tue Dec  1 10:00:00 2026\nSubject: unlocked\n\nhi\n\n');
    const age = (seconds: number) => { const at = Date.now() / 1000 + seconds; utimesSync(t.tickets, at, at); };
    age(-60); // last changed a minute ago: its mtime will show the next change
    expect(await messages(1)).toBe(1);
    // An append without the lock leaves the folder as it was: the list is not read again ...
    unlockedAppend();
    expect(await messages(1)).toBe(1);
    // ... until a write under a dotlock, here a delivery to the other ticket.
    t.send('ticket-2@tickets.example', mail({ subject: 'Re: two' }));
    expect([await messages(1), await messages(2)]).toEqual([2, 2]);
    // A folder that changed within the clock's margin is read at every list (its mtime in the future is such a case).
    age(3600);
    expect(await messages(1)).toBe(2);
    unlockedAppend();
    expect(await messages(1)).toBe(3);
    // A new ticket and a close (a rename) are changes of the folders too.
    age(-60);
    expect(await messages(1)).toBe(3);
    t.send('submit@tickets.example', mail({ subject: 'three' }));
    expect(await messages(3)).toBe(1);
    t.send('ticket-2-done@tickets.example', mail({ subject: 'done' }));
    expect((await t.get('/')).text).not.toContain('<a href="/2/">');
    expect(await messages(2)).toBeNaN();
    expect((await t.get('/archived/')).text).toContain('<a href="/2/">');
  });
});

describe('read-only', () => {
  it('never writes into the tickets folder, and finds a ticket moved to archived/ between two requests', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ id: 'ro@x' }));
    t.send('ticket-1@tickets.example', mail({ subject: 'Re: x' }));
    const cache = join(t.tickets, '.ticket-mail', 'list-cache.json');
    chmodSync(t.tickets, 0o500); // no cache written, even where it could be
    const before = tree(t.tickets);
    for (const target of ['/', '/archived/', '/1/', '/1/1/raw', '/1/mbox', '/1/mbox.gz', '/new.atom', '/1/new.atom', '/m/ro@x']) {
      expect((await t.get(target)).status, target).toBeLessThan(400);
    }
    expect(tree(t.tickets)).toEqual(before);
    expect(() => statSync(cache)).toThrow();
    chmodSync(t.tickets, 0o700);
    t.send('ticket-1-done@tickets.example', mail({ subject: 'done' }));
    const moved = await t.get('/1/');
    expect(moved.status).toBe(200);
    expect(moved.text).toContain('Closed, 3 messages.');
    expect((await t.get('/archived/')).text).toContain('<a href="/1/">');
  });

  it('leaves out a record being appended under the lock, and waits out another program\'s lock', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: 'one' }));
    const path = join(t.tickets, '1');
    const complete = readFileSync(path);
    // An append under way: our lock names the size before it, and half a record is in the file.
    writeFileSync(`${path}.lock`, `ticket-mail 999999 ${'host'} append 1 ${complete.length} abc\n`);
    appendFileSync(path, 'From b@x Tue Dec  1 10:00:00 2026\nX-Ticket-Mail: ticket 1\nSubject: half\n');
    expect((await t.get('/1/mbox')).bytes.equals(complete)).toBe(true);
    const page = await t.get('/1/');
    expect(page.text).toContain('1 message.');
    expect(page.text).not.toContain('half');
    expect((await t.get('/1/2/raw')).status).toBe(404);
    // mutt's lock: it may be rewriting the file; the viewer waits, then says it is busy.
    writeFileSync(`${path}.lock`, '12345\n');
    const busy = await t.get('/1/');
    expect(busy).toMatchObject({ status: 503, headers: { 'Retry-After': '5' } });
    // A lock older than --stale-lock is a crashed program's: no longer waited for.
    const old = new Date(Date.now() - 601_000);
    utimesSync(`${path}.lock`, old, old);
    expect((await t.get('/1/')).status).toBe(200);
    writeFileSync(`${path}.lock`, '12345\n');
    // Released while a request waits: that request gets the file (its first look saw the lock).
    const pending = t.get('/1/mbox');
    setTimeout(() => unlinkSync(`${path}.lock`), 0);
    expect((await pending).status).toBe(200);
  });
});

/** A GET over real HTTP with the Host header we choose (fetch may not set it). */
function httpGet(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: IncomingHttpHeaders; text: string }> {
  return new Promise((done, failed) => {
    const req = request(url, { headers }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => done({ status: res.statusCode!, headers: res.headers, text }));
    });
    req.on('error', failed);
    req.end();
  });
}

describe('serve and cgi, run as the built program', () => {
  it('serve: loopback by default, the Host checked, stopped by SIGTERM; another address only with authentication', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: 'served' }));
    const server = await startServe(['--dir', t.tickets, '--domain', 'tickets.example', '--listen', '127.0.0.1:0']);
    try {
      expect(server.line).toMatch(/^ticket-mail: serving .* read-only at http:\/\/127\.0\.0\.1:\d+\/$/);
      const ok = await httpGet(`${server.url}1/`);
      expect(ok.status).toBe(200);
      expect(ok.headers['content-security-policy']).toMatch(/^default-src 'none'/);
      expect(ok.text).toContain('<bdi>served</bdi>');
      const port = new URL(server.url).port;
      expect((await httpGet(`${server.url}1/`, { Host: `localhost:${port}` })).status).toBe(200);
      const rebound = await httpGet(`${server.url}1/mbox`, { Host: `evil.example:${port}` });
      expect(rebound.status).toBe(421);
      expect(rebound.text).not.toContain('served');
      await until('the access log line', () => /^GET \/1\/mbox 421$/m.test(server.output())); // its pipe is read when this process likes
    } finally {
      expect(await server.stop()).toMatchObject({ code: 0 });
    }
    for (const listen of ['0.0.0.0:0', '[::]:0', '192.0.2.1:0']) {
      const r = deliver(['--dir', t.tickets, 'serve', '--listen', listen], '');
      expect(r.status, listen).toBe(1);
      expect(r.stderr).toMatch(/^ticket-mail: refusing to serve customer mail on .* without authentication: give --token-file or --users .*\n$/);
    }
    expect(deliver(['--dir', t.tickets, 'serve', '--listen', 'nonsense'], '').stderr).toMatch(/^ticket-mail: --listen wants HOST:PORT/);
  });

  it('serve --token-file: the token once in a URL becomes a cookie, and never reaches the log', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: 'secret' }));
    const token = 'f00dfeed0123456789abcdef';
    const tokenFile = join(t.tickets, '..', 'token');
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const short = join(t.tickets, '..', 'short');
    writeFileSync(short, 'abc\n');
    expect(deliver(['--dir', t.tickets, 'serve', '--token-file', short], '').stderr).toMatch(/the token must be one word of at least 16 characters/);
    const server = await startServe(['--dir', t.tickets, '--listen', '127.0.0.1:0', '--token-file', tokenFile]);
    try {
      expect((await httpGet(`${server.url}1/`)).status).toBe(401);
      const exchange = await httpGet(`${server.url}1/?token=${token}`);
      expect(exchange).toMatchObject({ status: 303, headers: { location: '/1/' } });
      const cookie = exchange.headers['set-cookie']![0]!.split(';')[0]!;
      const page = await httpGet(`${server.url}1/`, { Cookie: cookie });
      expect(page.status).toBe(200);
      expect(page.text).toContain('<bdi>secret</bdi>');
      expect((await httpGet(`${server.url}1/`, { Authorization: `Bearer ${token}` })).status).toBe(200);
      // All four requests logged (the pipe is read when this process likes), the exchange among them, never the token.
      await until('the access log lines', () => (server.output().match(/^GET \/1\/ \d{3}$/gm) ?? []).length >= 4);
      expect(server.output()).toMatch(/^GET \/1\/ 303$/m);
      expect(server.output()).not.toContain(token);
    } finally { await server.stop(); }
  });

  it('password-hash makes the --users line serve checks HTTP Basic against', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: 'basic' }));
    const made = deliver(['password-hash', 'alice'], 'correct horse battery\n');
    expect(made).toMatchObject({ status: 0, stderr: '' });
    expect(made.stdout).toMatch(/^alice:scrypt:32768:8:1:[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+\n$/);
    expect(deliver(['password-hash', 'alice'], 'short\n').stderr).toMatch(/at least 8 characters/);
    const usersFile = join(t.tickets, '..', 'users');
    writeFileSync(usersFile, made.stdout, { mode: 0o600 });
    const server = await startServe(['--dir', t.tickets, '--listen', '127.0.0.1:0', '--users', usersFile]);
    try {
      const basic = (password: string) => ({ Authorization: `Basic ${Buffer.from(`alice:${password}`).toString('base64')}` });
      const refused = await httpGet(`${server.url}1/`);
      expect(refused).toMatchObject({ status: 401, headers: { 'www-authenticate': 'Basic realm="ticket-mail", charset="UTF-8"' } });
      expect((await httpGet(`${server.url}1/`, basic('wrong horse battery'))).status).toBe(401);
      expect((await httpGet(`${server.url}1/`, basic('correct horse battery'))).status).toBe(200);
    } finally { await server.stop(); }
  });

  it('a users line with parameters scrypt refuses stops serve at the start; a check that cannot run is a refusal, and the next one runs', async () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: 'basic' }));
    const zeros = `${Buffer.alloc(16).toString('base64')}:${Buffer.alloc(32).toString('base64')}`;
    const good = (await hashPassword('correct horse')).split(':');
    // A typo (N=10000), more memory than a check may take (N=2^20, r=8), N too large for r=1: each line is refused by number.
    for (const [params, line] of [['10000:8:1', 2], ['1048576:8:1', 2], ['65536:1:1', 2]] as const) {
      const text = `dave:${good.join(':')}\nerin:scrypt:${params}:${zeros}\n`;
      expect(() => parseUsers(text, 'users'), params).toThrow(new RegExp(`^users line ${line}: scrypt:${params} are no parameters scrypt accepts here`));
      const usersFile = join(t.tickets, '..', 'users');
      writeFileSync(usersFile, text, { mode: 0o600 });
      const refused = deliver(['--dir', t.tickets, 'serve', '--listen', '127.0.0.1:0', '--users', usersFile], '');
      expect(refused.status, params).not.toBe(0);
      expect(refused.stderr.trim().split('\n'), params).toEqual([expect.stringContaining(`users line 2: scrypt:${params} are no parameters`)]);
    }
    // Such a hash, were it let in (a users map made by hand): scrypt throws at once. That check is a 401,
    // the queue of checks goes on, and nothing rejects unhandled (which would stop serve).
    const [N, r, p] = good.slice(1, 4).map(Number) as [number, number, number];
    const users = new Map([
      ['dave', { N, r, p, salt: Buffer.from(good[4]!, 'base64'), hash: Buffer.from(good[5]!, 'base64') }],
      ['erin', { N: 10000, r: 8, p: 1, salt: Buffer.alloc(16), hash: Buffer.alloc(32) }],
    ]);
    const viewer = { store: t.store, base: '', access: { kind: 'secrets', users } as Access };
    const unhandled: unknown[] = [];
    const keep = (e: unknown) => { unhandled.push(e); };
    process.on('unhandledRejection', keep);
    try {
      const basic = (user: string, password: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` });
      const status = async (req: Partial<Request>) => (await handle(viewer, { method: 'GET', target: '/1/mbox', ...req })).status;
      expect(await status(basic('erin', 'guess'))).toBe(401);
      expect(await status(basic('dave', 'correct horse'))).toBe(200);
      expect(await status(basic('dave', 'wrong horse'))).toBe(401);
      await new Promise((done) => setImmediate(done));
      expect(unhandled).toEqual([]);
    } finally { process.off('unhandledRejection', keep); }
  });

  it('cgi: one request from the CGI environment; the raw REQUEST_URI routes, links carry SCRIPT_NAME, no REMOTE_USER is refused', () => {
    const t = setup();
    t.send('submit@tickets.example', mail({ subject: 'cgi', id: 'a/b@x' }));
    const cgi = (env: NodeJS.ProcessEnv) => {
      const r = deliver(['--dir', t.tickets, '--domain', 'tickets.example', 'cgi'], '', { REQUEST_METHOD: 'GET', SCRIPT_NAME: '/tickets', REMOTE_USER: 'alice', AUTH_TYPE: 'Basic', ...env });
      expect(r.stderr).toBe('');
      const [head, ...body] = r.stdout.split('\r\n\r\n');
      return { head: head!.split('\r\n'), body: body.join('\r\n') };
    };
    const page = cgi({ REQUEST_URI: '/tickets/1/', PATH_INFO: '/1/' });
    expect(page.head[0]).toBe('Status: 200 OK');
    expect(page.head).toContain('Content-Type: text/html; charset=utf-8');
    expect(page.head).toContain('X-Content-Type-Options: nosniff');
    expect(page.body).toContain('<link rel="stylesheet" href="/tickets/style.css">');
    expect(page.body).toContain('<a href="/tickets/1/1/raw">raw</a>');
    // PATH_INFO is decoded by the web server ("%2F" became "/"); REQUEST_URI is the raw path.
    const permalink = cgi({ REQUEST_URI: '/tickets/m/a%2Fb@x', PATH_INFO: '/m/a/b@x' });
    expect(permalink.head).toEqual(expect.arrayContaining(['Status: 302 Found', 'Location: /tickets/1/#1']));
    expect(cgi({ REQUEST_URI: '/tickets/1/%2e%2e/', PATH_INFO: '/' }).head[0]).toBe('Status: 404 Not Found');
    expect(cgi({ PATH_INFO: '/1/1/raw', QUERY_STRING: '' }).head[0]).toBe('Status: 200 OK'); // no REQUEST_URI: PATH_INFO
    expect(cgi({ REQUEST_URI: '/tickets/1/', REMOTE_USER: '' }).head[0]).toBe('Status: 403 Forbidden');
    // A REMOTE_USER without AUTH_TYPE may be a client's own Authorization header (nginx's fastcgi_params pass it unchecked).
    expect(cgi({ REQUEST_URI: '/tickets/1/', AUTH_TYPE: '' }).head[0]).toBe('Status: 403 Forbidden');
    expect(cgi({ REQUEST_URI: '/tickets/1/', REQUEST_METHOD: 'POST' }).head).toEqual(expect.arrayContaining(['Status: 405 Method Not Allowed', 'Allow: GET, HEAD']));
  });
});
