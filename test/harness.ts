// Test harness: runs the built program the way an MTA does (a child process, the message
// on stdin, the outcome in the exit status) and reads back what it stored.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, existsSync, openSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { mboxRecordAt, mboxStarts, readMbox } from '../ticket.ts';

export const ROOT = resolve(import.meta.dirname, '..');
export const BIN = join(ROOT, 'dist', 'ticket-mail.cjs');
export const FAKE_SENDMAIL = join(ROOT, 'test', 'fake-sendmail');

export interface Run { status: number | null; stderr: string; stdout: string }

/**
 * Environment of a pipe: nothing of the test runner's mail-related variables leaks in. Mail the
 * program sends goes to the fake sendmail (which discards it unless a test gives it a
 * FAKE_SENDMAIL_DIR), never to a real MTA that happens to be installed; and no config file of the
 * machine's (/etc/ticket-mail/config.json, whose sendmail would win) is read: set but empty, none is.
 */
export const PRIVATE_ENV: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, SENDMAIL: FAKE_SENDMAIL, TICKET_MAIL_CONFIG: '' };

function cleanEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...PRIVATE_ENV, ...extra };
}

/** Delivers synchronously; `shell` wraps the command (e.g. "ulimit -f 1;"). */
export function deliver(args: string[], input: string | Buffer, env: NodeJS.ProcessEnv = {}, shell = ''): Run {
  const r = shell
    ? spawnSync('sh', ['-c', `${shell} exec "$0" "$@"`, process.execPath, BIN, ...args], { input, env: cleanEnv(env) })
    : spawnSync(process.execPath, [BIN, ...args], { input, env: cleanEnv(env) });
  return { status: r.status, stderr: r.stderr.toString(), stdout: r.stdout.toString() };
}

/** Delivers asynchronously, for concurrency tests. */
export function deliverAsync(args: string[], input: string | Buffer, env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((done, failed) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: cleanEnv(env) });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d) => { stderr += d; });
    child.stdout.on('data', (d) => { stdout += d; });
    child.on('error', failed);
    child.on('close', (status) => done({ status, stderr, stdout }));
    child.stdin.on('error', () => { /* the child may exit before reading everything */ });
    child.stdin.end(input);
  });
}

/** Runs at most `width` promises at a time. */
export async function pool<T, R>(items: T[], width: number, work: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) { const i = next++; results[i] = await work(items[i]!, i); }
  }));
  return results;
}

export const tempDir = (prefix = 'tm-') => mkdtempSync(join(tmpdir(), prefix));

/** The real-world corpus: beside the project in a developer checkout, absent in a user's clone (never shipped). */
export const CORPUS = join(ROOT, '..', 'shared', 'corpus');
const filesUnder = (folder: string): string[] => readdirSync(folder, { withFileTypes: true }).flatMap((e) =>
  e.isDirectory() ? filesUnder(join(folder, e.name)) : folder === CORPUS ? [] : [join(folder, e.name)]);
/** The corpus's messages and mbox files (those in its subfolders), or the test skipped with the reason printed. */
export function corpusFiles(ctx: { skip: () => void }): string[] {
  if (!existsSync(CORPUS)) {
    console.log(`skipped: no corpus at ${CORPUS} (it sits beside the project only in a developer checkout)`);
    ctx.skip();
  }
  return filesUnder(CORPUS);
}

/** Each message of the corpus (a file is a message, or an mbox of them: its records' messages as they came), with its file. */
export function* corpusMessages(ctx: { skip: () => void }): Generator<{ path: string; message: Buffer }> {
  for (const path of corpusFiles(ctx)) {
    const bytes = readFileSync(path);
    if (bytes.subarray(0, 5).toString('latin1') !== 'From ') { yield { path, message: bytes }; continue; }
    const fd = openSync(path, 'r');
    try {
      const starts = mboxStarts(fd, bytes.length);
      for (const [i, start] of starts.entries()) {
        const record = mboxRecordAt(fd, start, starts[i + 1] ?? bytes.length);
        if (record) yield { path, message: Buffer.concat([...record.message.chunks()].map((c) => Buffer.from(c))) };
      }
    } finally { closeSync(fd); }
  }
}

export interface MailSpec {
  from?: string; to?: string; subject?: string; id?: string | null;
  headers?: string[]; body?: string;
}

/** A small well-formed message. */
export function mail(spec: MailSpec = {}): string {
  const lines = [
    `From: ${spec.from ?? 'Alice <alice@customer.example>'}`,
    `To: ${spec.to ?? 'submit@tickets.example'}`,
    `Subject: ${spec.subject ?? 'Printer on fire'}`,
    ...(spec.id === null ? [] : [`Message-ID: <${spec.id ?? `${Math.random().toString(36).slice(2)}@customer.example`}>`]),
    ...(spec.headers ?? []),
  ];
  return `${lines.join('\n')}\n\n${spec.body ?? 'Hello.\n'}`;
}

/** The messages stored in an mbox, un-quoted (empty when the file does not exist). */
export function stored(path: string): Buffer[] {
  return existsSync(path) ? readMbox(readFileSync(path)).map((r) => r.message) : [];
}

/** Message counts by Python's mailbox.mbox, an independent reader that splits at every "From " line. */
export function pythonCounts(paths: string[]): number[] {
  const r = spawnSync('python3', ['-c',
    'import mailbox,sys\nfor p in sys.stdin.read().split("\\0"):\n  print(len(mailbox.mbox(p)))'],
  { input: paths.join('\0') });
  if (r.status !== 0) throw new Error(`python3 failed: ${r.stderr}`);
  return r.stdout.toString().trim().split('\n').map(Number);
}


export interface Sent { args: string[]; text: string; headers: Map<string, string[]>; recipients: string[] }

/** The messages the fake sendmail recorded in `dir`, oldest first. */
export function sentMail(dir: string): Sent[] {
  return readdirSync(dir).filter((n) => n.endsWith('.eml')).sort().map((n) => {
    const text = readFileSync(join(dir, n), 'utf8');
    const args = readFileSync(join(dir, n.replace(/\.eml$/, '.args')), 'utf8').trim().split('\n');
    const headers = new Map<string, string[]>();
    for (const line of text.slice(0, text.indexOf('\n\n')).replace(/\n[ \t]/g, ' ').split('\n')) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).toLowerCase();
      headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()]);
    }
    return { args, text, headers, recipients: args.slice(args.indexOf('--') + 1) };
  });
}

/**
 * The built program and the fake sendmail where any user can run them: tests that run them as
 * another user (runuser, a setup's pipe user) must not depend on where the checkout lies (a
 * clean clone under mktemp -d is 0700, and everyone but root is kept out of it).
 */
export const readableCopies = (() => {
  let copies: { bin: string; sendmail: string } | undefined;
  return () => {
    if (copies) return copies;
    const dir = tempDir('tm-public-');
    chmodSync(dir, 0o755);
    copies = { bin: join(dir, 'ticket-mail.cjs'), sendmail: join(dir, 'fake-sendmail') };
    copyFileSync(BIN, copies.bin);
    copyFileSync(FAKE_SENDMAIL, copies.sendmail);
    chmodSync(copies.bin, 0o755);
    chmodSync(copies.sendmail, 0o755);
    return copies;
  };
})();

/** Installs an npm package once into a cache under node_modules; returns the path of its binary. */
export function toolFromNpm(spec: string, bin: string): { path?: string; why?: string } {
  const cache = join(ROOT, 'node_modules', '.cache', 'ticket-mail-tools', spec.replace(/[^a-z0-9.-]/gi, '_'));
  const path = join(cache, 'node_modules', ...bin.split('/'));
  if (!existsSync(path)) {
    // Installed aside, then renamed into place: two test files may ask for the same tool at once.
    const aside = `${cache}.${process.pid}`;
    mkdirSync(aside, { recursive: true });
    const r = spawnSync('npm', ['install', '--prefix', aside, '--no-audit', '--no-fund', '--no-save', spec], { encoding: 'utf8', timeout: 300_000 });
    if (r.status === 0) try { renameSync(aside, cache); } catch { /* the other one was first */ }
    rmSync(aside, { recursive: true, force: true });
    if (r.status !== 0 || !existsSync(path)) return { why: `cannot install ${spec} from the npm registry: ${(r.stderr || '').trim().split('\n').at(-1)}` };
  }
  return { path };
}

/**
 * A tickets folder of a search test's own (DIR/t), its settings, `send`, which delivers a message
 * to it as an MTA does and expects it filed, and the environment of a maintainer's command there
 * (its own HOME, no XDG cache folder).
 */
export function searchFolder(prefix: string) {
  const dir = tempDir(prefix);
  const tickets = join(dir, 't');
  const settings = ['--dir', tickets, '--domain', 'tickets.example', '--sendmail', FAKE_SENDMAIL, '--admin', 'max@tickets.example'];
  const send = (recipient: string, message: string, sender = 'jose@customer.example') => {
    const r = deliver([...settings, '--recipient', recipient, '--sender', sender], message);
    if (r.status !== 0) throw new Error(`the delivery to ${recipient} exited ${r.status}: ${r.stderr}`); // harness.ts is no test file: no expect here
  };
  return { dir, tickets, settings, send, env: { HOME: join(dir, 'home'), XDG_CACHE_HOME: '' } };
}

/**
 * Runs `command` as a CGI program whose stderr is a pipe full of other writers' lines that its
 * reader (a logger) drains only 0.3 s after the reply began on stdout (not after the start: a
 * slow start would meet a pipe already drained), as a piped logger or journald kept busy does:
 * a line written before the reply cannot go out at once. What the program wrote to stdout and, once drained,
 * to stderr (the other writers' lines taken out).
 */
export function cgiWithBusyLog(command: string[], env: NodeJS.ProcessEnv): Run {
  const harness = `
import fcntl, os, subprocess, sys, threading, time
r, w = os.pipe()
er, ew = os.pipe()
fcntl.fcntl(ew, 1031, 4096)  # F_SETPIPE_SZ
os.set_blocking(ew, False)
try:
    while True: os.write(ew, b'.' * 512)  # full of other writers' lines
except BlockingIOError: pass
os.set_blocking(ew, True)
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=w, stderr=ew)
os.close(w); os.close(ew)
got = []
replied = threading.Event()
def logger():
    replied.wait(15)  # the program's reply began: any error line before it met the full pipe
    time.sleep(0.3)  # the logger catches up a moment later
    got.append(b''.join(iter(lambda: os.read(er, 1 << 16), b'')))
t = threading.Thread(target=logger); t.start()
chunks = []
for chunk in iter(lambda: os.read(r, 1 << 16), b''):
    chunks.append(chunk); replied.set()
replied.set()
out = b''.join(chunks)
t.join()
sys.stdout.buffer.write(b'%d\\n' % child.wait() + out + b'\\0' + got[0].replace(b'.' * 512, b''))
`;
  const r = spawnSync('python3', ['-c', harness, ...command], { timeout: 20_000, env });
  if (r.status !== 0) throw new Error(`the harness exited ${r.status}: ${r.stderr}`);
  const text = r.stdout.toString();
  const [status, out, log] = [text.slice(0, text.indexOf('\n')), text.slice(text.indexOf('\n') + 1, text.lastIndexOf('\0')), text.slice(text.lastIndexOf('\0') + 1)];
  return { status: Number(status), stdout: out, stderr: log };
}
