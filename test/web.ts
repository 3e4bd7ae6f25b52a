// Web test harness: a real Chromium (Debian's package, driven by playwright-core through
// executablePath: nothing downloads a browser) and real web servers on 127.0.0.1, each private
// to its test (own config, logs and port in a temp dir) and stopped by PID: the viewer's `serve`,
// and nginx + fcgiwrap running a CGI program as an Apache, lighttpd or nginx site would.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { BIN, PRIVATE_ENV, tempDir } from './harness.ts';

/** Debian's chromium; the binary itself first (the /usr/bin/chromium wrapper sources /etc/chromium.d and prints noise). */
export const CHROMIUM = ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((path) => existsSync(path));
/** Why the browser tests cannot run on this machine (print it when skipping), or undefined. */
export const browserMissing = CHROMIUM ? undefined : 'no chromium at /usr/lib/chromium/chromium or /usr/bin/chromium (apt-get install chromium, as .ci/run does)';

/** A headless Chromium, undefined without one (see browserMissing). Share one per test file: a launch costs 0.1-0.5 s. */
export async function launchBrowser(): Promise<Browser | undefined> {
  if (!CHROMIUM) return undefined;
  return chromium.launch({
    executablePath: CHROMIUM,
    // Root needs --no-sandbox; the rest keep Chromium from calling out (the machine has no way out, and a test must not).
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export interface PageWatch {
  /** Messages of alert, confirm and prompt (each dismissed): any at all means a script ran. */
  dialogs: string[];
  /** Uncaught exceptions in the page. */
  errors: string[];
  /** "type: text" of each console message; Chromium's CSP refusals are among them. */
  consoleLines: string[];
  /**
   * Every request the page made: path and query on `origin`, the whole URL anywhere else. Also
   * those the browser then refused to send (see failed: "csp"): markup that
   * asks for anything is a finding even when the CSP stops it. What reached a server is in its
   * own log (CgiServer.hits).
   */
  requests: string[];
  /** The requests that failed: the same form, then the reason ("net::ERR_CONNECTION_REFUSED", "csp" for one CSP refused). */
  failed: string[];
}

/** Records what the page does from now on; `origin` (any URL of it) is the server under test. */
export function watchPage(page: Page, origin: string): PageWatch {
  const ours = new URL(origin).origin;
  const show = (url: string) => { const u = new URL(url); return u.origin === ours ? u.pathname + u.search : url; };
  const watch: PageWatch = { dialogs: [], errors: [], consoleLines: [], requests: [], failed: [] };
  page.on('dialog', (dialog) => { watch.dialogs.push(dialog.message()); dialog.dismiss().catch(() => { /* page already gone */ }); });
  page.on('pageerror', (error) => watch.errors.push(String(error)));
  page.on('console', (message) => watch.consoleLines.push(`${message.type()}: ${message.text()}`));
  page.on('request', (request) => watch.requests.push(show(request.url())));
  page.on('requestfailed', (request) => watch.failed.push(`${show(request.url())} ${request.failure()?.errorText ?? ''}`));
  return watch;
}

/**
 * Waits until what the page started has run: the load event (images have loaded or failed, so
 * their onerror handlers have fired), then two animation frames and a task. Check `dialogs`
 * after this, not after a fixed time.
 */
export async function settle(page: Page): Promise<void> {
  await page.waitForLoadState('load');
  // The page's own event loop (a string: the tests compile without the DOM's types); CSP does not apply to it.
  await page.evaluate('new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 0))))');
}

const SYSTEM_PATH = `${process.env.PATH}:/usr/local/sbin:/usr/sbin:/sbin`;
const which = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8', env: { PATH: SYSTEM_PATH } }).stdout.trim() || undefined;
const NGINX = which('nginx');
const FCGIWRAP = which('fcgiwrap');
const SETPRIV = which('setpriv');
/** Why the CGI tests cannot run on this machine (print it when skipping), or undefined. */
export const cgiMissing = NGINX && FCGIWRAP ? undefined
  : `no ${[NGINX ? '' : 'nginx', FCGIWRAP ? '' : 'fcgiwrap'].filter(Boolean).join(' or ')} (apt-get install nginx fcgiwrap, as .ci/run does)`;

export interface CgiOptions {
  /** The CGI program (SCRIPT_FILENAME); `runAs` must be able to run it, so not under a 0700 checkout (see readableCopies). */
  script: string;
  /** Added to fcgiwrap's environment (PRIVATE_ENV; HOME only without runAs), which the program inherits beside the CGI variables. */
  env?: NodeJS.ProcessEnv;
  /** HTTP Basic accounts, name to password; without any, no authentication. */
  users?: Record<string, string>;
  /** The OS user fcgiwrap, and so the program, runs as (default: the current user). */
  runAs?: string;
  /** More fcgiwrap options, e.g. ['-p', script] (only that program may run). */
  fcgiwrapArgs?: string[];
  /**
   * The location blocks in place of the built-in /tickets/ one (a recipe's own, as a site has
   * it), given the paths of this instance's htpasswd file and fcgiwrap socket.
   */
  location?: (paths: { htpasswd: string; socket: string }) => string;
}

export interface CgiServer {
  /** The program's base: http://127.0.0.1:PORT/tickets/ (its PATH_INFO is "/"). */
  url: string;
  /** The request URIs nginx logged so far, in order, as the client sent them (path and query). */
  hits(): Promise<string[]>;
  /** nginx's error log and fcgiwrap's stderr (the program's stderr goes there): for a failing test's message. */
  log(): string;
  stop(): Promise<void>;
}

/**
 * nginx + fcgiwrap on 127.0.0.1, everything in a private temp dir: the program behind /tickets/
 * with `fastcgi_split_path_info ^(/tickets)(/.*)$` (SCRIPT_NAME /tickets, PATH_INFO the rest),
 * Debian's fastcgi_params, and Basic auth from an htpasswd file of `users`. Resolves once both
 * answer; stop it in afterAll (or finally), also when a test fails.
 */
export async function startCgiServer(options: CgiOptions): Promise<CgiServer> {
  if (!NGINX || !FCGIWRAP) throw new Error(cgiMissing);
  const dir = tempDir('tm-web-');
  chmodSync(dir, 0o711); // runAs must reach its socket's folder, and list nothing
  mkdirSync(join(dir, 'temp')); // nginx makes its temp folders, not their parent
  const children: ChildProcess[] = [];
  const stop = async () => {
    for (const child of children.reverse()) await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const fcgiwrap = await startFcgiwrap(FCGIWRAP, dir, options);
    children.push(fcgiwrap.child);
    const nginx = await startNginx(NGINX, dir, fcgiwrap.socket, options);
    children.push(nginx.child);
    const origin = `http://127.0.0.1:${nginx.port}`;
    let fences = 0;
    const accessLog = () => readFileSync(join(dir, 'access.log'), 'utf8').split('\n').filter(Boolean);
    return {
      url: `${origin}/tickets/`,
      // nginx logs a request after sending its response, so a client can be faster than the log.
      // A fence fixes that: the one worker handles requests in turn, so once the fence's line is
      // there, every request answered before it is logged too.
      hits: async () => {
        const fence = `${HARNESS_PATH}fence-${++fences}`;
        await httpGet(origin + fence);
        const lines = await poll('nginx logging the fence', nginx, async () => {
          const all = accessLog();
          return all.includes(fence) ? all : undefined;
        });
        return lines.filter((uri) => !uri.startsWith(HARNESS_PATH));
      },
      log: () => `${readOptional(join(dir, 'error.log'))}${fcgiwrap.output()}`,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Requests the harness itself makes (readiness, log fences): answered by nginx, left out of hits(). */
const HARNESS_PATH = '/.harness/';

async function startFcgiwrap(fcgiwrap: string, dir: string, options: CgiOptions) {
  const socketDir = join(dir, 'fcgiwrap');
  mkdirSync(socketDir, { mode: 0o700 });
  const socket = join(socketDir, 'socket');
  // The environment is built, never inherited: NODE_EXTRA_CA_CERTS alone costs every Node CGI
  // request 70 ms (reading the CA bundle), and nothing of the machine's config may leak in.
  const env = { ...PRIVATE_ENV, HOME: options.runAs ? undefined : PRIVATE_ENV.HOME, ...options.env };
  let as: string[] = [];
  if (options.runAs) {
    if (!SETPRIV) throw new Error('runAs needs setpriv (util-linux)');
    const id = (flag: string) => {
      const r = spawnSync('id', [flag, options.runAs!], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`runAs ${options.runAs}: ${r.stderr.trim()}`);
      return Number(r.stdout.trim());
    };
    const uid = id('-u');
    const gid = id('-g');
    chownSync(socketDir, uid, gid);
    // The user's own groups (supplementary ones too, as a team's), not root's.
    as = [`--reuid=${uid}`, `--regid=${gid}`, '--init-groups'];
    const canRun = spawnSync(SETPRIV, [...as, '--', 'test', '-x', options.script], { env: { PATH: SYSTEM_PATH }, encoding: 'utf8' });
    if (canRun.status !== 0) throw new Error(`${options.runAs} cannot run ${options.script} (a parent folder closed to it? see readableCopies) ${canRun.stderr.trim()}`);
  }
  const fcgi = run(fcgiwrap, ['-s', `unix:${socket}`, ...options.fcgiwrapArgs ?? []], env, as);
  try {
    await poll('fcgiwrap', fcgi, () => new Promise<true | undefined>((done) => {
      const probe = connect(socket, () => { probe.destroy(); done(true); });
      probe.on('error', () => done(undefined));
    }));
  } catch (error) {
    await stopChild(fcgi.child);
    throw error;
  }
  return { ...fcgi, socket };
}

async function startNginx(nginx: string, dir: string, socket: string, options: CgiOptions) {
  const users = Object.entries(options.users ?? {});
  if (users.length) {
    writeFileSync(join(dir, 'htpasswd'), users.map(([name, password]) => {
      if (/[:\s]/.test(name) || /[\r\n]/.test(password)) throw new Error(`unusable Basic account ${JSON.stringify(name)}`);
      // Apache's MD5 ($apr1$), as htpasswd writes it. Debian 12's nginx also takes crypt's $1$ $5$ $6$ $2b$,
      // {PLAIN} and {SHA}; a bare password it refuses.
      const hash = spawnSync('openssl', ['passwd', '-apr1', '-stdin'], { input: password, encoding: 'utf8' });
      if (hash.status !== 0) throw new Error(`openssl passwd: ${hash.stderr.trim()}`);
      return `${name}:${hash.stdout.trim()}\n`;
    }).join(''), { mode: 0o600 });
  }
  const token = randomBytes(12).toString('hex');
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    writeFileSync(join(dir, 'nginx.conf'), nginxConf(dir, port, socket, token, options, users.length > 0));
    // -e: the log nginx opens before reading its config would be the machine's /var/log/nginx/error.log.
    const server = run(nginx, ['-p', `${dir}/`, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { PATH: SYSTEM_PATH });
    try {
      // A probe that must return this instance's token: a port someone else took in between answers otherwise.
      await poll('nginx', server, async () => (await httpGet(`http://127.0.0.1:${port}${HARNESS_PATH}ready`).catch(() => undefined))?.body === token || undefined);
      return { ...server, port };
    } catch (error) {
      await stopChild(server.child);
      // Between freePort() and nginx's bind another process can take the port: try another.
      if (attempt < 5 && /Address already in use/.test(readOptional(join(dir, 'error.log')))) continue;
      throw error;
    }
  }
}

function nginxConf(dir: string, port: number, socket: string, token: string, options: CgiOptions, auth: boolean): string {
  const isRoot = process.getuid?.() === 0;
  const location = options.location?.({ htpasswd: join(dir, 'htpasswd'), socket }) ?? `location /tickets/ {
${auth ? `  auth_basic "tickets";\n  auth_basic_user_file ${dir}/htpasswd;\n  fastcgi_param AUTH_TYPE Basic;\n` : ''}  fastcgi_split_path_info ^(/tickets)(/.*)$;
  include /etc/nginx/fastcgi_params;
  fastcgi_param SCRIPT_FILENAME ${options.script};
  fastcgi_param PATH_INFO $fastcgi_path_info;
  fastcgi_pass unix:${socket};
}`;
  return `# A private nginx for one test: every path below ${dir}.
daemon off;
master_process on;
worker_processes 1;
${isRoot ? 'user root root;  # the workers reach fcgiwrap\'s socket whoever made it; everything else here is the test\'s own\n' : ''}pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 64; }
http {
  log_format hits '$request_uri';
  access_log ${dir}/access.log hits;
  client_body_temp_path ${dir}/temp/body;
  proxy_temp_path ${dir}/temp/proxy;
  fastcgi_temp_path ${dir}/temp/fastcgi;
  uwsgi_temp_path ${dir}/temp/uwsgi;
  scgi_temp_path ${dir}/temp/scgi;
  server {
    listen 127.0.0.1:${port};
    location ^~ ${HARNESS_PATH} { return 200 '${token}'; }
${location.replace(/^/gm, '    ')}
    location / { return 404; }
  }
}
`;
}

export interface ServeServer {
  /** The base the program printed: http://HOST:PORT/ */
  url: string;
  /** The whole line it was printed in (it may hold more, a token say). */
  line: string;
  /** Everything the program printed so far, stdout and stderr. */
  output(): string;
  /** SIGTERM, then its exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `ticket-mail serve ARGS` (the built file, PRIVATE_ENV plus `env`), e.g. with `--listen 127.0.0.1:0` for a free port. */
export const startServe = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  startServer(process.execPath, [BIN, 'serve', ...args], { ...PRIVATE_ENV, ...env });

/**
 * Any HTTP server that, once it listens, prints a line holding http://HOST:PORT/ on stdout or
 * stderr. Resolves on that line; rejects with what the program printed if it exits first.
 */
export async function startServer(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<ServeServer> {
  const server = run(command, args, env);
  const { child, output } = server;
  const stop = async () => { await stopChild(child); return { code: child.exitCode, signal: child.signalCode }; };
  try {
    const line = await poll(`${command} ${args.join(' ')}`, server, async () =>
      output().split('\n').find((l, i, all) => i < all.length - 1 && /http:\/\/\S+?:\d+\//.test(l)));
    return { url: line.match(/http:\/\/\S+?:\d+\//)![0], line, output, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

interface Running {
  child: ChildProcess;
  /** Its stdout and stderr so far (always read, so that it never blocks on a full pipe). */
  output(): string;
  /** Settles when it has exited and its output is all read. */
  closed: Promise<void>;
}

/**
 * Starts a server program. Under setpriv --pdeathsig it gets SIGTERM when the test process dies:
 * vitest ends its workers with a signal, so a stop() a test never reached would leave it running.
 * setpriv execs, so the PID stays the program's. `as` are more setpriv options (another user).
 */
function run(command: string, args: string[], env: NodeJS.ProcessEnv, as: string[] = []): Running {
  const argv = SETPRIV ? [SETPRIV, '--pdeathsig', 'TERM', ...as, '--', command, ...args] : [command, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout!.on('data', (d) => { text += d; });
  child.stderr!.on('data', (d) => { text += d; });
  const closed = new Promise<void>((done) => child.once('close', () => done()));
  child.once('error', (error) => { text += `${error.message}\n`; }); // not started at all: 'close' follows
  return { child, output: () => text, closed };
}

/** Waits until `ready` gives a value (or true): a condition, never a time (30 s is a machine with another problem). */
export async function until<T>(what: string, ready: () => T | undefined | false | Promise<T | undefined | false>): Promise<T> {
  for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
    const value = await ready();
    if (value !== undefined && value !== false) return value;
    await new Promise((done) => setTimeout(done, 20));
  }
  throw new Error(`not seen in 30 s: ${what}`);
}

/** Polls `ready` until it yields a value; fails at once if the program exits, or after 30 s (a machine that slow has another problem). */
async function poll<T>(what: string, program: Running, ready: () => Promise<T | undefined>): Promise<T> {
  let gone = false;
  void program.closed.then(() => { gone = true; });
  for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
    const value = await ready();
    if (value !== undefined) return value;
    if (gone) throw new Error(`${what} exited (${program.child.exitCode ?? program.child.signalCode}): ${program.output().trim()}`);
    await Promise.race([program.closed, new Promise((done) => setTimeout(done, 20))]);
  }
  throw new Error(`${what}: not ready after 30 s: ${program.output().trim()}`);
}

/** Stops a child by its PID: SIGTERM, and SIGKILL if it is still there 5 s later. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((done) => child.once('exit', done));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/** A port free on 127.0.0.1 a moment ago. */
function freePort(): Promise<number> {
  return new Promise((done, failed) => {
    const server = createServer();
    server.on('error', failed);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((done, failed) => {
    get(url, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (d) => { body += d; });
      response.on('end', () => done({ status: response.statusCode ?? 0, body }));
    }).on('error', failed);
  });
}

const readOptional = (path: string) => { try { return readFileSync(path, 'utf8'); } catch { return ''; } };
