// The web harness (test/web.ts) proved through the real things, with no viewer: a real Chromium
// sees a script run and sees CSP stop it (the positive control the viewer's XSS tests stand on),
// and a real nginx + fcgiwrap run a CGI program behind Basic auth as another user.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { BIN, tempDir } from './harness.ts';
import { browserMissing, cgiMissing, launchBrowser, settle, startCgiServer, startServe, startServer, watchPage, type CgiServer, type PageWatch } from './web.ts';

const sh = (command: string) => spawnSync('sh', ['-c', command], { encoding: 'utf8' });
const isRoot = process.getuid?.() === 0;
if (browserMissing) console.log(`skipped: browser tests: ${browserMissing}`);
if (cgiMissing) console.log(`skipped: CGI tests: ${cgiMissing}`);

/** A GET with full control of the headers (Host included), no redirects followed. */
function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((done, failed) => {
    request(url, { headers }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (d) => { body += d; });
      response.on('end', () => done({ status: response.statusCode ?? 0, headers: response.headers, body }));
    }).on('error', failed).end();
  });
}
const basic = (name: string, password: string) => ({ Authorization: `Basic ${Buffer.from(`${name}:${password}`).toString('base64')}` });

/** What the viewer's XSS tests assert of every page: no script ran. */
function expectNoScript(watch: PageWatch) {
  expect(watch.dialogs, 'dialogs').toEqual([]);
  expect(watch.errors, 'page errors').toEqual([]);
}

describe.skipIf(!!browserMissing)('the browser and its XSS detector', () => {
  let browser: Browser;
  let server: Server;
  let base = '';
  let elsewhere = ''; // another origin, where nothing listens
  const hits: string[] = [];
  // Chromium asks for /favicon.ico by itself, when it likes, unseen by the page's request events.
  const pageHits = () => hits.filter((path) => path !== '/favicon.ico');

  beforeAll(async () => {
    browser = (await launchBrowser())!;
    // The same unescaped markup, once as it is and once behind the CSP the viewer ships.
    server = createServer((req, res) => {
      hits.push(req.url!);
      if (req.url === '/bare' || req.url === '/csp') {
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', ...(req.url === '/csp' ? { 'Content-Security-Policy': "default-src 'none'" } : {}) });
        // Scripts that run while parsing, once an image fails, once the page has loaded (what settle() waits for), and one that throws.
        res.end(`<!doctype html><title>t</title><body onload="setTimeout(() => alert(3))"><p>payload:</p><script>alert(1)</script>`
          + `<img src=x onerror=alert(2)><script>null.boom</script><img src="${elsewhere}/far">`);
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    elsewhere = base.replace('127.0.0.1', '127.0.0.2');
  }, 30_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise((done) => server?.close(done));
  });

  it('positive control: without CSP the page runs its scripts, and the detector sees every one', async () => {
    const page = await browser.newPage();
    const watch = watchPage(page, base);
    await page.goto(`${base}/bare`);
    await settle(page);
    expect(watch.dialogs).toEqual(['1', '2', '3']);
    expect(watch.errors).toEqual([expect.stringMatching(/TypeError.*boom/)]);
    expect(watch.requests).toEqual(['/bare', '/x', `${elsewhere}/far`]); // another origin is never shortened to a path
    expect(watch.failed).toEqual([`${elsewhere}/far net::ERR_CONNECTION_REFUSED`]);
    expect(pageHits()).toEqual(['/bare', '/x']);
    // The assertion the viewer's tests make fails here: the detector can fail.
    expect(() => expectNoScript(watch)).toThrow(/dialogs/);
    await page.close();
  });

  it("the same markup under default-src 'none': no dialog, no script; what it asks for is recorded, refused, never sent; the console says so", async () => {
    hits.length = 0;
    const page = await browser.newPage();
    const watch = watchPage(page, base);
    await page.goto(`${base}/csp`);
    await settle(page);
    expectNoScript(watch);
    expect(watch.requests).toEqual(['/csp', '/x', `${elsewhere}/far`]);
    expect(watch.failed).toEqual(['/x csp', `${elsewhere}/far csp`]);
    expect(pageHits()).toEqual(['/csp']);
    const refusals = watch.consoleLines.filter((line) => / violates the following Content Security Policy directive/.test(line));
    expect(refusals.map((line) => line.replace(/ violates .*/s, '').replace(/:\d+/, ':PORT')).sort()).toEqual([
      'error: Executing inline event handler', 'error: Executing inline event handler', 'error: Executing inline script', 'error: Executing inline script',
      "error: Loading the image 'http://127.0.0.1:PORT/x'", "error: Loading the image 'http://127.0.0.2:PORT/far'"]);
    expect(await page.textContent('p')).toBe('payload:');
    await page.close();
  });
});

describe.skipIf(!!cgiMissing)('CGI under nginx and fcgiwrap', () => {
  const USER = `tm-web-${process.pid}`;
  const TEAM = `${USER}-team`; // a supplementary group of USER's, as a team's maintainers have
  const makeUser = () => {
    if (sh(`id -u ${USER}`).status === 0) return;
    expect(sh(`groupadd --system ${TEAM} && useradd --system --no-create-home --shell /usr/sbin/nologin -G ${TEAM} ${USER}`).status).toBe(0);
  };
  const users = { alice: 'correct horse', bob: 'b:ttery staple' };
  let scripts = '';
  let script = '';
  const servers: CgiServer[] = [];
  const start = async (options: Parameters<typeof startCgiServer>[0]) => { const s = await startCgiServer(options); servers.push(s); return s; };
  const vars = (body: string) => Object.fromEntries(body.trim().split('\n').map((line) => line.split(/=(.*)/s).slice(0, 2)));

  beforeAll(() => {
    // Where another user can run it: a temp dir is 0700.
    scripts = tempDir('tm-web-cgi-');
    chmodSync(scripts, 0o755);
    script = join(scripts, 'env.cgi');
    writeFileSync(script, `#!/bin/sh
printf 'Status: 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n'
for name in PATH_INFO QUERY_STRING REMOTE_USER SCRIPT_NAME REQUEST_URI HTTP_HOST; do eval "printf '%s=%s\\n' $name \\"\\$$name\\""; done
printf 'user=%s\\ngroups=%s\\nNODE_EXTRA_CA_CERTS=%s\\nWEB_TEST=%s\\n' "$(id -un)" "$(id -G)" "\${NODE_EXTRA_CA_CERTS-unset}" "$WEB_TEST"
`, { mode: 0o755 });
  });

  afterAll(async () => {
    for (const server of servers) await server.stop();
    if (isRoot) sh(`userdel ${USER} 2>/dev/null; groupdel ${TEAM} 2>/dev/null`);
    if (scripts) sh(`rm -rf ${scripts}`);
  });

  it('Basic auth: 401 without credentials or with a wrong password; with them the program runs with the CGI variables', async () => {
    const server = await start({ script, users, env: { WEB_TEST: 'passed on' } });
    const url = `${server.url}12/3/raw?x=1`;
    expect((await get(url)).status).toBe(401);
    expect((await get(url, basic('alice', 'wrong'))).status).toBe(401);
    expect((await get(url, basic('mallory', 'correct horse'))).status).toBe(401);
    const r = await get(url, basic('alice', 'correct horse'));
    expect(r.status, server.log()).toBe(200);
    expect(r.headers['content-type']).toBe('text/plain');
    expect(vars(r.body)).toMatchObject({
      PATH_INFO: '/12/3/raw', QUERY_STRING: 'x=1', REMOTE_USER: 'alice', SCRIPT_NAME: '/tickets', REQUEST_URI: '/tickets/12/3/raw?x=1',
      user: sh('id -un').stdout.trim(), WEB_TEST: 'passed on',
      NODE_EXTRA_CA_CERTS: 'unset', // never inherited: it costs a Node CGI 70 ms a request
    });
    // A colon in the password, and the base itself: PATH_INFO "/".
    expect(vars((await get(server.url, basic('bob', 'b:ttery staple'))).body)).toMatchObject({ PATH_INFO: '/', REMOTE_USER: 'bob' });
    // Outside /tickets/ nothing runs.
    expect((await get(server.url.replace('/tickets/', '/etc/passwd'), basic('alice', 'correct horse'))).status).toBe(404);
    expect(await server.hits()).toEqual(['/tickets/12/3/raw?x=1', '/tickets/12/3/raw?x=1', '/tickets/12/3/raw?x=1', '/tickets/12/3/raw?x=1', '/tickets/', '/etc/passwd']);
  });

  it('what nginx passes the program: PATH_INFO decoded and its slashes merged, REQUEST_URI raw, HTTP_HOST without the port', async () => {
    const server = await start({ script });
    const port = new URL(server.url).port;
    const r = vars((await get(`${server.url}12/%41//b`, { Host: `evil.example:${port}` })).body);
    expect(r).toMatchObject({ PATH_INFO: '/12/A/b', REQUEST_URI: '/tickets/12/%41//b', REMOTE_USER: '', HTTP_HOST: 'evil.example' });
  });

  it.skipIf(!isRoot)('runAs: fcgiwrap, and so the program, runs as that user with its own groups, supplementary ones too', async () => {
    makeUser();
    const server = await start({ script, runAs: USER, users });
    const r = await get(`${server.url}1/`, basic('alice', 'correct horse'));
    expect(r.status, server.log()).toBe(200);
    const groups = sh(`id -G ${USER}`).stdout.trim();
    expect(groups.split(' ')).toContain(sh(`getent group ${TEAM}`).stdout.split(':')[2]);
    expect(vars(r.body)).toMatchObject({ user: USER, groups, PATH_INFO: '/1/' });
  });

  it.skipIf(!isRoot)('runAs refuses, saying why, a program that user cannot reach', async () => {
    const hidden = join(tempDir('tm-web-hidden-'), 'env.cgi'); // under a 0700 folder
    writeFileSync(hidden, '#!/bin/sh\n', { mode: 0o755 });
    makeUser();
    try {
      await expect(startCgiServer({ script: hidden, runAs: USER })).rejects.toThrow(`${USER} cannot run ${hidden}`);
    } finally {
      sh(`rm -rf ${join(hidden, '..')}`);
    }
  });

  it.skipIf(!!browserMissing)('a browser with Basic credentials: what it requested is what nginx logged', async () => {
    const server = await start({ script, users });
    const browser = (await launchBrowser())!;
    try {
      const page = await (await browser.newContext({ httpCredentials: { username: 'alice', password: 'correct horse' } })).newPage();
      const watch = watchPage(page, server.url);
      await page.goto(`${server.url}5/?q=a%20b`);
      await settle(page);
      expect(vars(await page.textContent('body') ?? '')).toMatchObject({ PATH_INFO: '/5/', QUERY_STRING: 'q=a%20b', REMOTE_USER: 'alice' });
      expect(watch.dialogs).toEqual([]);
      expect(watch.requests).toEqual(['/tickets/5/?q=a%20b']);
      // Chromium asks without credentials first (401), then with them; and for /favicon.ico, at a
      // moment of its own and unseen by the page: a hit log has to allow it.
      expect((await server.hits()).filter((uri) => uri !== '/favicon.ico')).toEqual(['/tickets/5/?q=a%20b', '/tickets/5/?q=a%20b']);
    } finally {
      await browser.close();
    }
  });
});

describe('serve, started as the viewer tests will start it', () => {
  it('startServer resolves on the line with the URL, serves, and stops by PID', async () => {
    const program = "require('http').createServer((q, s) => s.end('got ' + q.url)).listen(0, '127.0.0.1', function () { console.error('listening on http://127.0.0.1:' + this.address().port + '/ (Ctrl-C stops)') })";
    const server = await startServer(process.execPath, ['-e', program], {});
    try {
      expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      expect(server.line).toContain('(Ctrl-C stops)');
      expect((await get(`${server.url}7/`)).body).toBe('got /7/');
    } finally {
      expect(await server.stop()).toEqual({ code: null, signal: 'SIGTERM' });
    }
  });

  it('startServer rejects with what the program said when it exits before listening', async () => {
    await expect(startServer(process.execPath, ['-e', 'console.error("no such folder"); process.exit(2)'], {})).rejects.toThrow(/exited \(2\): no such folder/);
  });

  const hasServe = /^\s+serve\b/m.test(spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' }).stdout);
  if (!hasServe) console.log('skipped: ticket-mail serve: the built program has no serve command yet');
  it.skipIf(!hasServe)('ticket-mail serve --listen 127.0.0.1:0 prints its URL and answers there', async () => {
    const server = await startServe(['--listen', '127.0.0.1:0', '--dir', tempDir()]);
    try {
      expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      expect((await get(server.url)).status).toBe(200);
    } finally {
      await server.stop();
    }
  });
});
