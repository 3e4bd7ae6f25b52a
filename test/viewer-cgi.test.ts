// The history viewer as a CGI program under a real nginx and fcgiwrap, set up as doc/viewer.md
// says: its nginx location, its wrapper and its fcgiwrap service are read from that page (the
// blocks marked "viewer-cgi-test: NAME") with only paths and ports changed. fcgiwrap runs as a
// throwaway tickets user that owns a folder of tickets made by real deliveries. Every page must
// be what `serve` gives over the same folder as the same user, only with links under /tickets.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { PRIVATE_ENV, ROOT, deliver, readableCopies, tempDir } from './harness.ts';
import { cgiMissing, startCgiServer, startServer, type CgiOptions, type CgiServer, type ServeServer } from './web.ts';

const isRoot = process.getuid?.() === 0;
const sh = (command: string) => spawnSync('sh', ['-c', command], { encoding: 'utf8' });
if (cgiMissing) console.log(`skipped: the viewer under nginx and fcgiwrap: ${cgiMissing}`);
else if (!isRoot) console.log('skipped: the viewer under nginx and fcgiwrap: it runs fcgiwrap as a throwaway tickets user, which needs root');

// ---------------------------------------------------------------------------------------
// The recipe, as doc/viewer.md gives it
// ---------------------------------------------------------------------------------------

const DOC = readFileSync(join(ROOT, 'doc', 'viewer.md'), 'utf8');

/** The fenced block after `<!-- viewer-cgi-test: NAME -->`, without the list item's indentation. */
function docBlock(name: string): string {
  const m = new RegExp(`^([ \\t]*)<!-- viewer-cgi-test: ${name} -->\\n\\1\`\`\`\\w*\\n([\\s\\S]*?)\\n\\1\`\`\`$`, 'm').exec(DOC);
  if (!m) throw new Error(`doc/viewer.md has no block marked "viewer-cgi-test: ${name}"`);
  return `${m[2]!.split('\n').map((line) => (line.startsWith(m[1]!) ? line.slice(m[1]!.length) : line)).join('\n')}\n`;
}

/** `text` with each path of the recipe replaced by the test's; a path the recipe no longer names is an error, not a silent no-op. */
function withPaths(text: string, paths: Record<string, string>): string {
  for (const [from, to] of Object.entries(paths)) {
    if (!text.includes(from)) throw new Error(`the recipe's block no longer names ${from}:\n${text}`);
    text = text.split(from).join(to);
  }
  return text;
}

/** The recipe's own paths, which the test replaces by its own. */
const RECIPE = {
  wrapper: '/usr/local/libexec/ticket-mail-viewer',
  node: '/usr/bin/node',
  program: '/usr/local/lib/node_modules/ticket-mail/dist/bin/ticket-mail.cjs',
  config: '/etc/ticket-mail/config.json',
  htpasswd: '/etc/nginx/ticket-mail.htpasswd',
  socket: '/run/ticket-mail-viewer.socket',
  user: 'tickets',
};

/** A systemd unit's settings: key to its values, in order. */
function unitSettings(text: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) settings.set(m[1]!, [...settings.get(m[1]!) ?? [], m[2]!]);
  }
  return settings;
}

// ---------------------------------------------------------------------------------------
// HTTP with the raw path as given (Node's client normalises nothing)
// ---------------------------------------------------------------------------------------

interface Answer { status: number; headers: Record<string, string>; body: Buffer; text: string }

/**
 * `body` as a string: sent with its Content-Length (Node's client sends a GET's without one, and
 * the server reads it as the next request); as an array: in those chunks, Transfer-Encoding: chunked.
 */
function http(base: string, path: string, options: { method?: string; headers?: Record<string, string>; body?: string | string[] } = {}): Promise<Answer> {
  const url = new URL(base);
  return new Promise((done, failed) => {
    const { body } = options;
    const framing = typeof body === 'string' ? { 'Content-Length': String(Buffer.byteLength(body)) } : body ? { 'Transfer-Encoding': 'chunked' } : {};
    const req = request({ host: url.hostname, port: url.port, path, method: options.method ?? 'GET', headers: { ...framing, ...options.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        done({ status: res.statusCode ?? 0, headers: res.headers as Record<string, string>, body, text: body.toString('utf8') });
      });
    });
    req.on('error', failed);
    if (Array.isArray(body)) {
      for (const chunk of body) req.write(chunk);
      req.end();
    } else {
      req.end(body);
    }
  });
}

const basic = (name: string, password: string) => ({ Authorization: `Basic ${Buffer.from(`${name}:${password}`).toString('base64')}` });
const ALICE = basic('alice', 'correct horse');

/** What serve and nginx add on their own: the rest of the headers must be the viewer's, the same in both. */
const TRANSPORT_HEADERS = new Set(['date', 'connection', 'keep-alive', 'transfer-encoding', 'server']);
const viewerHeaders = (answer: Answer) =>
  Object.fromEntries(Object.entries(answer.headers).filter(([name]) => !TRANSPORT_HEADERS.has(name)).sort());

const SECURITY = {
  'content-security-policy': "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

// ---------------------------------------------------------------------------------------
// Tickets made by real deliveries
// ---------------------------------------------------------------------------------------

const SUBJECTS = ['Printer on fire', 'Cannot log in', 'Invoice question'];
const PDF = Buffer.from('%PDF-1.4\n% not really a PDF\n\x00\x01\x02\xff', 'latin1');

function deliverTickets(tickets: string) {
  const send = (recipient: string, sender: string, message: string) => {
    const r = deliver(['--dir', tickets, '--domain', 'tickets.example', '--recipient', recipient, '--sender', sender], message);
    expect(r.status, r.stderr).toBe(0);
  };
  // 1: text, then an answer with a PDF and a log file attached. Its Message-ID holds a slash.
  send('submit@tickets.example', 'alice@customer.example', `From: Alice <alice@customer.example>
To: submit@tickets.example
Subject: ${SUBJECTS[0]}
Message-ID: <fire/1@customer.example>
Date: Mon, 30 Nov 2026 10:00:00 +0000

The printer on floor 3 is on fire. See https://status.customer.example/printers for more.

> a quoted line
`);
  send('ticket-1@tickets.example', 'bob@customer.example', `From: Bob <bob@customer.example>
To: ticket-1@tickets.example
Subject: Re: [issue1] ${SUBJECTS[0]}
Message-ID: <fire-2@customer.example>
In-Reply-To: <fire/1@customer.example>
Date: Mon, 30 Nov 2026 10:05:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8

The report and the log are attached.
--b1
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"
Content-Transfer-Encoding: base64

${PDF.toString('base64')}
--b1
Content-Type: text/plain; charset=utf-8; name="printer.log"
Content-Disposition: attachment; filename="printer.log"

10:00 toner low
10:01 smoke detected
--b1--
`);
  // 2: opened and closed by its submitter (archived/2). Its Message-ID holds a question mark.
  send('submit@tickets.example', 'carol@customer.example', `From: Carol <carol@customer.example>
To: submit@tickets.example
Subject: ${SUBJECTS[1]}
Message-ID: <login?2@customer.example>
Date: Mon, 30 Nov 2026 11:00:00 +0000

My password stopped working.
`);
  send('ticket-2-done@tickets.example', 'carol@customer.example', `From: Carol <carol@customer.example>
To: ticket-2-done@tickets.example
Subject: Re: [issue2] ${SUBJECTS[1]}
Message-ID: <login-done@customer.example>
Date: Mon, 30 Nov 2026 11:30:00 +0000

It works again, thanks.
`);
  // 3: an RFC 2047 subject and a name in UTF-8.
  send('submit@tickets.example', 'dora@customer.example', `From: =?UTF-8?Q?D=C3=B3ra?= <dora@customer.example>
To: submit@tickets.example
Subject: =?UTF-8?B?${Buffer.from(SUBJECTS[2]!).toString('base64')}?=
Message-ID: <invoice-3@customer.example>
Date: Mon, 30 Nov 2026 12:00:00 +0000

Why was I charged twice?
`);
}

/** Every entry below `dir`: its type, mode, owner, size and times (what a write, chmod or chown would change). */
function tree(dir: string): Record<string, string> {
  const entries: Record<string, string> = {};
  const walk = (path: string, name: string) => {
    const s = lstatSync(path);
    entries[name] = `${s.isDirectory() ? 'd' : s.isFile() ? 'f' : 'other'} ${(s.mode & 0o7777).toString(8)} ${s.uid}:${s.gid} ${s.size} ${s.mtimeMs} ${s.ctimeMs}`;
    if (s.isDirectory()) for (const child of readdirSync(path).sort()) walk(join(path, child), `${name}/${child}`);
  };
  walk(dir, '.');
  return entries;
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

// A CGI request starts node: a few hundred ms each on a loaded machine, and a test makes up to a few dozen.
describe.skipIf(!!cgiMissing || !isRoot)('the viewer as a CGI program under nginx and fcgiwrap, set up as doc/viewer.md says', { timeout: 60_000 }, () => {
  const USER = `tm-hcgi-${process.pid}`;
  const OTHER = `tm-hcgi-${process.pid}-o`; // a user who does not own the tickets
  let root = '';
  let tickets = '';
  let before: Record<string, string> = {};
  let cgi: CgiServer;
  let serve: ServeServer;
  const servers: Array<{ stop(): Promise<unknown> }> = [];
  let recipe: CgiOptions;
  /** fcgiwrap's environment as the recipe's service would have it: the manager's (here a hostile one) less what UnsetEnvironment= names. */
  let serviceEnv: NodeJS.ProcessEnv = {};
  const id = (flag: string, user: string) => Number(sh(`id ${flag} ${user}`).stdout.trim());

  beforeAll(async () => {
    for (const user of [USER, OTHER]) {
      const made = sh(`useradd --system --user-group --no-create-home --shell /usr/sbin/nologin ${user}`);
      expect(made.status, made.stderr).toBe(0);
    }
    root = tempDir('tm-hcgi-');
    chmodSync(root, 0o755); // the tickets user reaches its folder, the config file and the wrapper
    tickets = join(root, 'tickets');
    deliverTickets(tickets);
    expect(sh(`chown -R ${USER}:${USER} ${tickets}`).status).toBe(0);
    before = tree(tickets);

    const config = join(root, 'config.json');
    writeFileSync(config, `${JSON.stringify({ dir: tickets, domain: 'tickets.example' })}\n`, { mode: 0o644 });
    const { bin } = readableCopies();
    const wrapper = join(root, 'ticket-mail-viewer');
    writeFileSync(wrapper, withPaths(docBlock('wrapper'), { [RECIPE.node]: process.execPath, [RECIPE.program]: bin, [RECIPE.config]: config }), { mode: 0o755 });

    const service = unitSettings(docBlock('service'));
    const execStart = service.get('ExecStart')?.[0]?.split(/\s+/) ?? [];
    expect(execStart[0]).toBe('/usr/sbin/fcgiwrap');
    expect(service.get('User')).toEqual([RECIPE.user]);
    // The manager's environment at its worst: a CA bundle that is not there (node says so on
    // stderr, on every request) and a preload that is not there (node refuses to start).
    const managerEnv: NodeJS.ProcessEnv = { NODE_EXTRA_CA_CERTS: join(root, 'no-such-bundle.pem'), NODE_OPTIONS: `--require=${join(root, 'no-such-preload.js')}` };
    for (const name of (service.get('UnsetEnvironment') ?? []).join(' ').split(/\s+/)) delete managerEnv[name];
    serviceEnv = managerEnv;
    recipe = {
      script: wrapper,
      runAs: USER,
      fcgiwrapArgs: withPaths(execStart.slice(1).join('\n'), { [RECIPE.wrapper]: wrapper }).split('\n'),
      env: serviceEnv,
      users: { alice: 'correct horse', bob: 'b:ttery staple' },
      location: ({ htpasswd, socket }) => withPaths(docBlock('nginx'), { [RECIPE.htpasswd]: htpasswd, [RECIPE.wrapper]: wrapper, [RECIPE.socket]: socket }),
    };
    cgi = await startCgiServer(recipe);
    servers.push(cgi);
    // serve over the same folder, as the same user (setpriv sets its own parent-death signal after changing user).
    const setpriv = sh('command -v setpriv').stdout.trim();
    serve = await startServer(setpriv, [`--reuid=${id('-u', USER)}`, `--regid=${id('-g', USER)}`, '--init-groups', '--pdeathsig', 'TERM', '--',
      process.execPath, bin, '--config', config, 'serve', '--listen', '127.0.0.1:0'], { ...PRIVATE_ENV, HOME: undefined });
    servers.push(serve);
  }, 60_000);

  afterAll(async () => {
    try {
      for (const server of servers) await server.stop();
    } finally { // the users and files go also when a server would not stop
      for (const user of [USER, OTHER]) sh(`userdel ${user} 2>/dev/null`);
      if (root) sh(`rm -rf ${root}`);
    }
  });

  /** GET (or another method) of a path below the viewer's base, through nginx and as the same user's serve. */
  const both = async (path: string, options: { method?: string; body?: string | string[] } = {}) => {
    const cgiBase = new URL(cgi.url).pathname.replace(/\/$/, ''); // /tickets
    const [viaCgi, viaServe] = await Promise.all([
      http(cgi.url, `${cgiBase}${path}`, { ...options, headers: ALICE }),
      http(serve.url, path, options),
    ]);
    return { viaCgi, viaServe };
  };

  it('the recipe names what this machine has: nginx runs as www-data, the only group that may connect to the socket; its units pass systemd-analyze', () => {
    expect(readFileSync('/etc/nginx/nginx.conf', 'utf8')).toMatch(/^user www-data;$/m);
    const socket = unitSettings(docBlock('socket'));
    expect(socket.get('ListenStream')).toEqual([RECIPE.socket]);
    expect(socket.get('SocketUser')).toEqual(['root']);
    expect(socket.get('SocketGroup')).toEqual(['www-data']);
    expect(socket.get('SocketMode')).toEqual(['0660']); // nothing for others
    expect(socket.get('Accept') ?? []).toEqual([]); // one fcgiwrap for all connections, as Debian's
    const analyze = sh('command -v systemd-analyze').stdout.trim();
    if (!analyze) { console.log('skipped: systemd-analyze verify (no systemd-analyze)'); return; }
    const units = tempDir('tm-hcgi-units-');
    try {
      // The unit names must pair (the socket starts the service of its own name); the user must exist.
      writeFileSync(join(units, 'ticket-mail-viewer.socket'), docBlock('socket'));
      writeFileSync(join(units, 'ticket-mail-viewer.service'), docBlock('service').replace(`User=${RECIPE.user}\n`, `User=${USER}\n`));
      const r = spawnSync(analyze, ['verify', join(units, 'ticket-mail-viewer.socket'), join(units, 'ticket-mail-viewer.service')], { encoding: 'utf8' });
      expect({ status: r.status, said: `${r.stdout}${r.stderr}`.trim() }).toEqual({ status: 0, said: '' });
    } finally {
      sh(`rm -rf ${units}`);
    }
  });

  it('nginx enforces Basic auth: 401 without credentials, with a wrong password or an unknown name, and the viewer never runs; with them, 200', async () => {
    const mbox = '/tickets/1/mbox';
    for (const headers of [{}, basic('alice', 'wrong'), basic('mallory', 'correct horse'), basic('alice', '')]) {
      const r = await http(cgi.url, mbox, { headers });
      expect(r.status).toBe(401);
      expect(r.headers['www-authenticate']).toBe('Basic realm="tickets"');
      expect(r.headers['content-security-policy']).toBeUndefined(); // nginx's own page: the viewer did not answer
      expect(r.text).not.toContain(SUBJECTS[0]);
    }
    const ok = await http(cgi.url, mbox, { headers: ALICE });
    expect(ok.status, cgi.log()).toBe(200);
    expect(ok.body.equals(readFileSync(join(tickets, '1')))).toBe(true);
    // A colon in the password is the password's.
    expect((await http(cgi.url, '/tickets/', { headers: basic('bob', 'b:ttery staple') })).status).toBe(200);
  });

  // Each route, and its variants: the same status, headers and body under CGI as under serve.
  const ROUTES = [
    '/', '/archived/', '/?after=0-0', '/?after=junk',
    '/1/', '/2/', '/3/', '/1/?page=1', '/1/?page=2', '/1',
    '/1/1/raw', '/1/2/raw', '/3/1/raw', '/1/3/raw',
    '/1/mbox', '/2/mbox', '/1/mbox.gz',
    '/1/2/1/report.pdf', '/1/2/2/printer.log', '/1/2/3/x',
    `/m/${encodeURIComponent('fire/1@customer.example')}`, `/m/${encodeURIComponent('<login?2@customer.example>')}`, '/m/invoice-3@customer.example',
    '/m/nobody@nowhere.example',
    '/new.atom', '/1/new.atom', '/2/new.atom',
    '/style.css', '/nothing', '/9/', '/0/', '/01/', '/1/99999999999/raw', '/1/1/raw/', '/archived/2/',
  ];
  it.each(ROUTES)('%s: the same answer as serve, links below /tickets, the security headers through nginx', async (path) => {
    const { viaCgi, viaServe } = await both(path);
    expect(viaCgi.status, cgi.log()).toBe(viaServe.status);
    const type = viaServe.headers['content-type'] ?? '';
    const cgiHeaders = viewerHeaders(viaCgi);
    if (cgiHeaders.location) {
      expect(cgiHeaders.location).toMatch(/^\/tickets\//);
      cgiHeaders.location = cgiHeaders.location.replace(/^\/tickets/, '');
    }
    expect(cgiHeaders).toEqual(viewerHeaders(viaServe));
    // The list pages carry the search box: a form to the viewer itself (doc/viewer.md).
    const withForm = /^\/(?:archived\/)?(?:\?after=0-0)?$/.test(path);
    expect(viaCgi.headers).toMatchObject(withForm ? { ...SECURITY, 'content-security-policy': SECURITY['content-security-policy'].replace("form-action 'none'", "form-action 'self'") } : SECURITY);
    if (type.startsWith('text/html')) {
      // Every link of ours starts with SCRIPT_NAME under CGI; serve's have no base.
      const links = [...viaCgi.text.matchAll(/(?:href|src)="(\/[^"]*)"/g)].map((m) => m[1]!);
      expect(links.length).toBeGreaterThan(0);
      expect(links.filter((link) => !link.startsWith('/tickets/'))).toEqual([]);
      expect(viaServe.text).not.toContain('/tickets/');
      expect(viaCgi.text.replaceAll('="/tickets/', '="/')).toBe(viaServe.text);
    } else {
      expect(viaCgi.body.equals(viaServe.body)).toBe(true);
    }
  });

  it('the pages hold the tickets: what the routes above compared is not two empty answers', async () => {
    const { viaCgi: list } = await both('/');
    expect(list.status).toBe(200);
    expect(list.text).toContain(SUBJECTS[0]);
    expect(list.text).toContain(SUBJECTS[2]); // decoded from RFC 2047
    expect(list.text).not.toContain(SUBJECTS[1]); // closed
    expect((await both('/archived/')).viaCgi.text).toContain(SUBJECTS[1]);
    const ticket = (await both('/1/')).viaCgi;
    expect(ticket.text).toContain('href="/tickets/1/2/1/report.pdf"');
    expect(ticket.text).toContain('href="https://status.customer.example/printers"');
    const pdf = (await both('/1/2/1/report.pdf')).viaCgi;
    expect(pdf.headers['content-type']).toBe('application/octet-stream');
    expect(pdf.body.equals(PDF)).toBe(true);
    expect((await both('/1/2/2/printer.log')).viaCgi.text).toBe('10:00 toner low\n10:01 smoke detected');
    expect(gunzipSync((await both('/1/mbox.gz')).viaCgi.body).equals(readFileSync(join(tickets, '1')))).toBe(true);
    expect((await both('/2/mbox')).viaCgi.body.equals(readFileSync(join(tickets, 'archived', '2')))).toBe(true);
    expect((await both('/1/new.atom')).viaCgi.text).toContain('<link rel="alternate" type="text/html" href="./#2"/>');
  });

  it('a Message-ID with %2F or %3F finds its ticket through /m/: the viewer routes on the raw REQUEST_URI, not the decoded PATH_INFO', async () => {
    expect((await http(cgi.url, '/tickets/m/fire%2F1@customer.example', { headers: ALICE })).headers.location).toBe('/tickets/1/#1');
    expect((await http(cgi.url, '/tickets/m/fire%2f1@customer.example', { headers: ALICE })).headers.location).toBe('/tickets/1/#1');
    expect((await http(cgi.url, '/tickets/m/%3Clogin%3F2@customer.example%3E', { headers: ALICE })).headers.location).toBe('/tickets/2/#1');
    expect((await http(cgi.url, '/tickets/m/fire-2@customer.example/', { headers: ALICE })).headers.location).toBe('/tickets/1/#2');
  });

  it('what cgi routes when REQUEST_URI is not below SCRIPT_NAME: PATH_INFO (a rewrite), the base itself (Apache\'s ScriptAlias), else nothing', () => {
    const answer = (env: NodeJS.ProcessEnv) => {
      const r = deliver(['--config', join(root, 'config.json'), 'cgi'], '', { REQUEST_METHOD: 'GET', REMOTE_USER: 'alice', AUTH_TYPE: 'Basic', ...env });
      expect(r.status, r.stderr).toBe(0);
      return { status: r.stdout.split('\r\n')[0], title: /<title>(.*)<\/title>/.exec(r.stdout)?.[1] };
    };
    expect(answer({ SCRIPT_NAME: '/tickets', REQUEST_URI: '/support/1/', PATH_INFO: '/1/' })).toEqual({ status: 'Status: 200 OK', title: `#1 ${SUBJECTS[0]}` });
    expect(answer({ SCRIPT_NAME: '/tickets', REQUEST_URI: '/tickets' })).toEqual({ status: 'Status: 200 OK', title: 'Open tickets' });
    expect(answer({ SCRIPT_NAME: '/tickets', REQUEST_URI: '/tickets?after=0-0', QUERY_STRING: 'after=0-0' })).toEqual({ status: 'Status: 200 OK', title: 'Open tickets' });
    // nginx on /tickets/%0a/: its split pattern failed, SCRIPT_NAME is the decoded path, PATH_INFO empty.
    expect(answer({ SCRIPT_NAME: '/tickets/\n/', REQUEST_URI: '/tickets/%0a/', PATH_INFO: '' })).toEqual({ status: 'Status: 404 Not Found', title: 'Not found' });
  });

  it('methods: POST, PUT and DELETE get 405; HEAD the GET\'s headers without a body', async () => {
    for (const [method, body] of [['POST', 'x=1'], ['PUT', ''], ['DELETE', '']] as const) {
      const { viaCgi, viaServe } = await both('/1/', { method, body });
      expect(viaCgi.status, cgi.log()).toBe(405);
      expect(viaServe.status).toBe(405);
      expect(viaCgi.headers.allow).toBe('GET, HEAD');
      expect(viaCgi.headers).toMatchObject(SECURITY);
      expect(viaCgi.text.replaceAll('="/tickets/', '="/')).toBe(viaServe.text);
    }
    for (const path of ['/1/mbox', '/1/']) {
      const head = await both(path, { method: 'HEAD' });
      const get = await both(path);
      expect(head.viaCgi.status).toBe(200);
      expect(head.viaCgi.body.length).toBe(0);
      expect(head.viaCgi.headers['content-type']).toBe(get.viaCgi.headers['content-type']);
      expect(viewerHeaders(head.viaCgi)).toEqual(viewerHeaders(head.viaServe));
    }
  });

  it('a request body more than a pipe holds (with a length, or chunked) is read and dropped: POST still gets 405 and GET its page, never fcgiwrap\'s 502', async () => {
    const big = 'y'.repeat(256 * 1024); // fcgiwrap writes it all into the program's stdin before reading its answer
    for (const [method, body, status] of [['POST', big, 405], ['POST', [big, big], 405], ['GET', big, 200], ['GET', [big], 200], ['DELETE', [big], 405]] as const) {
      const { viaCgi, viaServe } = await both('/1/', { method, body: body as string | string[] });
      expect(viaCgi.status, `${method} ${cgi.log()}`).toBe(status);
      expect(viaServe.status).toBe(status);
      expect(viaCgi.text.replaceAll('="/tickets/', '="/')).toBe(viaServe.text);
    }
  });

  // Raw paths that decode to a way out. nginx resolves dot segments in the decoded path before
  // choosing a location; what still reaches the viewer is routed on the raw REQUEST_URI.
  const TRAVERSALS: Array<[string, number]> = [
    ['/tickets/1/%2e%2e/', 404], ['/tickets/1/%2E%2E/', 404], ['/tickets/1/..%2f', 404], ['/tickets/1/..%2F', 404],
    ['/tickets/1/%2e%2e/mbox', 404], ['/tickets/1/%2e%2e%2f2/mbox', 404], ['/tickets/archived/%2e%2e/1/mbox', 404],
    ['/tickets/1%2fmbox', 404], ['/tickets/%31/mbox', 404], ['/tickets/1/1/raw%00', 400],
    ['/tickets/%2e%2e/config.json', 404], ['/tickets/1/%2e%2e/%2e%2e/config.json', 404],
    ['/tickets/..%2f..%2f..%2f..%2f..%2fetc/passwd', 400], ['/tickets/1/../../../../../etc/passwd', 400],
    ['/tickets/m/..%2f..%2f1', 404],
    // A line break where nginx's split pattern wants "/": it sets no PATH_INFO, and SCRIPT_NAME is the whole decoded path.
    ['/tickets/%0a/', 404], ['/tickets/%0A1/', 404], ['/tickets/1%0a/mbox', 404], ['/tickets/%0d%0a?after=0-0', 404], ['/tickets/1/%0a', 404],
  ];
  it.each(TRAVERSALS)('%s: %d, nothing of a ticket or of a file outside', async (path, status) => {
    const r = await http(cgi.url, path, { headers: ALICE });
    expect(r.status, cgi.log()).toBe(status);
    expect(r.text).not.toMatch(/^From |Printer on fire|Cannot log in|Invoice question|root:|"dir"/m);
  });

  it('without NODE_EXTRA_CA_CERTS or NODE_OPTIONS: the service\'s UnsetEnvironment= keeps a hostile manager environment away from node', () => {
    expect(serviceEnv).toEqual({});
    // Every request so far ran node under it; none said a word about a CA bundle or a preload.
    expect(cgi.log()).not.toMatch(/extra certs|no-such-preload|Cannot find module/i);
  });

  it('a location without auth_basic (and so, as the recipe says, without AUTH_TYPE): 403 for every page, also to a client that sends its own Authorization', async () => {
    const AUTH_LINES = /^\s*(?:auth_basic(?:_user_file)?\s|fastcgi_param AUTH_TYPE\s)/;
    const withoutAuth = (block: string) => block.split('\n').filter((line) => !AUTH_LINES.test(line)).join('\n');
    expect(docBlock('nginx').split('\n').length - withoutAuth(docBlock('nginx')).split('\n').length).toBe(3); // those lines, nothing else
    const server = await startCgiServer({ ...recipe, users: undefined, location: (paths) => withoutAuth(recipe.location!(paths)) });
    servers.push(server);
    const unchecked = basic('mallory', 'anything'); // nginx makes REMOTE_USER of it all the same
    for (const path of ['/tickets/', '/tickets/1/', '/tickets/1/mbox', '/tickets/1/1/raw', '/tickets/m/fire%2F1@customer.example', '/tickets/new.atom', '/tickets/style.css']) {
      for (const headers of [{}, unchecked]) {
        const r = await http(server.url, path, { headers });
        expect(r.status, server.log()).toBe(403);
        expect(r.headers).toMatchObject(SECURITY);
        expect(r.text).toContain('REMOTE_USER and AUTH_TYPE are not set');
        expect(r.text).not.toMatch(/Printer on fire|Cannot log in|Invoice question|^From /m);
      }
    }
    // Why AUTH_TYPE goes only beside auth_basic: without auth_basic, nginx passes the unchecked name, and the viewer believes it.
    const misplaced = await startCgiServer({ ...recipe, users: undefined, location: (paths) => recipe.location!(paths).split('\n').filter((line) => !/^\s*auth_basic/.test(line)).join('\n') });
    servers.push(misplaced);
    expect((await http(misplaced.url, '/tickets/', { headers: unchecked })).status).toBe(200);
    expect((await http(misplaced.url, '/tickets/')).status).toBe(403);
  });

  it("fcgiwrap's -p runs the wrapper and nothing else; without it, whoever reaches the socket runs /bin/sh as the tickets user", async () => {
    // Another location on the same socket stands for anything that can connect to it (www-data).
    const withShell = (options: CgiOptions): CgiOptions => ({
      ...options,
      location: (paths) => `${recipe.location!(paths)}location /shell/ {\n  include /etc/nginx/fastcgi_params;\n  fastcgi_param SCRIPT_FILENAME /bin/sh;\n  fastcgi_pass unix:${paths.socket};\n}\n`,
    });
    const commands = "printf 'Status: 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n'; id -un";
    const restricted = await startCgiServer(withShell(recipe));
    servers.push(restricted);
    // A GET: fcgiwrap refuses without reading a body, and nginx would answer 502 to a POST whose body it could not send.
    const refused = await http(restricted.url, '/shell/');
    expect(refused.status).toBe(403);
    expect(refused.text).toBe('403 Forbidden\r\n'); // fcgiwrap's, as doc/viewer.md describes it
    // The control: the same fcgiwrap without -p runs the shell, with the request body as its script.
    const open = await startCgiServer(withShell({ ...recipe, fcgiwrapArgs: [] }));
    servers.push(open);
    expect((await http(open.url, '/shell/', { method: 'POST', body: commands })).text).toBe(`${USER}\n`);
  });

  it('fcgiwrap as a user who does not own the tickets: every page is a 500 that shows nothing of them (never "no ticket N"), the reason in the log', async () => {
    const server = await startCgiServer({ ...recipe, runAs: OTHER });
    servers.push(server);
    for (const path of ['/', '/archived/', '/1/', '/2/', '/1/1/raw', '/1/mbox', '/1/mbox.gz', '/1/2/1/report.pdf', '/m/fire%2F1@customer.example', '/new.atom', '/1/new.atom']) {
      const r = await http(server.url, `/tickets${path}`, { headers: ALICE });
      expect(`${path} ${r.status}`, server.log()).toBe(`${path} 500`);
      expect(r.headers).toMatchObject(SECURITY);
      expect(r.text).toContain('Something went wrong');
      expect(r.text).not.toMatch(/Printer on fire|Cannot log in|^From /m);
    }
    expect(server.log()).toMatch(new RegExp(`EACCES: permission denied, open '${tickets}/1'`));
  });

  it('read-only: after every request above, the tickets folder is as the deliveries left it (no write, no lock, no chmod), files 0600 and folders 0700', () => {
    // A file made and removed meanwhile (a lock, a temporary) shows in its folder's times.
    const after = tree(tickets);
    expect(after).toEqual(before);
    const uid = id('-u', USER);
    for (const [name, entry] of Object.entries(after)) {
      const [kind, mode, owner] = entry.split(' ');
      expect(`${name} ${kind} ${mode} ${owner?.split(':')[0]}`).toBe(`${name} ${kind} ${kind === 'd' ? '700' : '600'} ${uid}`);
    }
  });
});
