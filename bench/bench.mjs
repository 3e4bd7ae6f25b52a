#!/usr/bin/env node
// npm run bench: what ticket-mail costs, as ratios against baselines measured in the same
// run on the same machine (baseline and candidate runs interleaved, so drift hits both).
// Children get a clean environment, as from an MTA: in particular no NODE_EXTRA_CA_CERTS,
// which would make every Node start parse CA certificates (~40 ms on Node 20).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Agent, get as httpGet } from 'node:http';
import { cpus, loadavg, totalmem, tmpdir } from 'node:os';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const FILE = join(ROOT, 'dist', 'ticket-mail.cjs');
const FAKE_SENDMAIL = join(ROOT, 'test', 'fake-sendmail');
const RUNS = Number(process.env.BENCH_RUNS || 31);
// BENCH_ONLY=viewer,cgi runs only those sections (deliveries bun procmail scale floods memory
// bursts list numbers viewer cgi search): to compare two trees' delivery rows, or while working on one row.
const ONLY = process.env.BENCH_ONLY?.split(',');
const section = (name) => !ONLY || ONLY.includes(name);
const work = mkdtempSync(join(tmpdir(), 'tm-bench-'));
// The code cache goes to a folder of this run's own: the first delivery makes it, as on a server.
const ENV = { PATH: process.env.PATH, HOME: process.env.HOME, XDG_CACHE_HOME: join(work, 'cache'), SENDMAIL: FAKE_SENDMAIL, LANG: 'C' };
const rows = [];
const loadAtStart = loadavg()[0];

const ms = (start) => Number(process.hrtime.bigint() - start) / 1e6;
let serial = 0;
const message = (extra = '') => `From: Alice <alice@customer.example>\nTo: submit@tickets.example\nSubject: bench ${extra}\nMessage-ID: <bench-${process.pid}-${++serial}@customer.example>\n\nHello.\n`;
function time(cmd, args, input = '', env = ENV) {
  const start = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { input, env, stdio: ['pipe', 'ignore', 'pipe'] });
  const t = ms(start);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return t;
}
const stats = (xs) => { const s = [...xs].sort((a, b) => a - b); return { min: s[0], median: s[Math.floor(s.length / 2)], max: s.at(-1) }; };
const f = (x, d = 1) => x.toFixed(d);

/** Runs baseline and candidate alternately; records ratios candidate/baseline per pair. */
function compare(name, target, baseline, candidate, runs = RUNS) {
  const b = [], c = [];
  baseline(); candidate(); // warm the page cache
  for (let i = 0; i < runs; i++) { b.push(baseline()); c.push(candidate()); }
  return record(name, target, b, c);
}
/** The same for steps that return a promise of their time (HTTP requests). */
async function compareAsync(name, target, baseline, candidate, runs = RUNS) {
  const b = [], c = [];
  await baseline(); await candidate();
  for (let i = 0; i < runs; i++) { b.push(await baseline()); c.push(await candidate()); }
  return record(name, target, b, c);
}
/** A row from paired times (b[i] and c[i] measured one after the other). */
function record(name, target, b, c) {
  const ratios = c.map((x, i) => x / b[i]);
  const r = stats(ratios);
  const row = { name, unit: 'ms', base: stats(b), cand: stats(c), ratio: r, target, pass: target === undefined ? undefined : r.median <= target };
  rows.push(row);
  console.error(`${name}: median ${f(stats(c).median)} ms vs ${f(stats(b).median)} ms, ratio ${f(r.median, 2)}`);
  return row;
}
/** A row whose target is the candidate's own median time, not its ratio (the issue's absolute targets). */
const judgedBy = (row, limit) => Object.assign(row, { target: `<= ${limit} ms`, pass: row.cand.median <= limit });

/** User + system CPU time of finished children, in ms (the kernel counts it in 10 ms ticks). */
const childrenCpu = () => {
  const fields = readFileSync('/proc/self/stat', 'latin1').split(') ')[1].split(' ');
  return (Number(fields[13]) + Number(fields[14])) * 10; // cutime, cstime
};
/** Like compare, for the CPU time of batches of 20 runs (single runs are below the tick). */
function compareCpu(name, baseline, candidate, batches = 7, size = 20) {
  const batch = ([cmd, ...args]) => {
    const before = childrenCpu();
    for (let i = 0; i < size; i++) time(cmd, args, message());
    return (childrenCpu() - before) / size;
  };
  const b = [], c = [];
  for (let i = 0; i < batches; i++) { b.push(batch(baseline)); c.push(batch(candidate)); }
  const ratios = c.map((x, i) => x / b[i]);
  rows.push({ name, unit: 'ms', base: stats(b), cand: stats(c), ratio: stats(ratios) });
  console.error(`${name}: median ${f(stats(c).median)} ms vs ${f(stats(b).median)} ms of CPU, ratio ${f(stats(ratios).median, 2)}`);
}

const tickets = (name) => { const d = join(work, name); mkdirSync(d, { recursive: true }); return d; };
const deliver = (bin, dir, recipient, extra = []) => () => time(bin[0], [...bin.slice(1), '--dir', dir, '--domain', 'tickets.example',
  '--recipient', recipient, '--sender', 'alice@customer.example', ...extra], message());
const nodeEmpty = () => time(process.execPath, ['-e', '']);

// --- the npm bin, installed from the packed tarball ----------------------------------------
const app = join(work, 'app');
mkdirSync(app);
const packed = spawnSync('npm', ['pack', '--ignore-scripts', '--pack-destination', work, '--json'], { cwd: ROOT, encoding: 'utf8' });
const tarball = join(work, JSON.parse(packed.stdout)[0].filename);
spawnSync('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], { cwd: app, stdio: 'ignore' });
const BINPATH = join(app, 'node_modules', '.bin', 'ticket-mail');

// --- single deliveries ------------------------------------------------------------------------
if (section('deliveries')) {
  const dir = tickets('append');
  deliver([FILE], dir, 'submit@tickets.example')();
  compare('append to a ticket: npm bin vs node -e \'\'', 1.15, nodeEmpty, deliver([BINPATH], dir, 'ticket-1@tickets.example'));
  compare('append to a ticket: single file vs node -e \'\'', 1.3, nodeEmpty, deliver([process.execPath, FILE], dir, 'ticket-1@tickets.example'));
  // A user with no writable home: the same single file, compiled at every start.
  const uncached = { ...ENV, XDG_CACHE_HOME: '/dev/null' };
  compare('append, single file without a code cache vs node -e \'\'', undefined, nodeEmpty,
    () => time(process.execPath, [FILE, '--dir', dir, '--domain', 'tickets.example', '--recipient', 'ticket-1@tickets.example', '--sender', 'alice@customer.example'], message(), uncached));
  const bare = [process.execPath, join(import.meta.dirname, 'bare-append.cjs'), join(dir, 'bare.mbox')];
  compare('the floor: a bare Node append (read, append, fsync) vs node -e \'\'', undefined, nodeEmpty, () => time(bare[0], bare.slice(1), message()));
  // CPU, not wall time: what bounds a burst on a small machine (throughput at best 1 / ratio).
  const ticketOne = [process.execPath, FILE, '--dir', dir, '--domain', 'tickets.example', '--recipient', 'ticket-1@tickets.example', '--sender', 'alice@customer.example'];
  compareCpu('CPU per append, one at a time: single file vs node -e \'\'', [process.execPath, '-e', ''], ticketOne);
  compareCpu('CPU per append, one at a time: the floor vs node -e \'\'', [process.execPath, '-e', ''], bare);
  const floor = () => time(process.execPath, ['-e', `const {spawnSync}=require('child_process');for(const a of ['alice@customer.example','max@tickets.example'])spawnSync(${JSON.stringify(FAKE_SENDMAIL)},['-oi','-f','<>','--',a],{input:'x'})`]);
  const newDir = tickets('new');
  compare('new ticket + ack + notification: npm bin vs node + 2 sendmail', 1.5, floor,
    deliver([BINPATH], newDir, 'submit@tickets.example', ['--admin', 'max@tickets.example']));
}

// --- Bun ----------------------------------------------------------------------------------------
if (section('bun')) {
  const bun = join(ROOT, 'node_modules', '.cache', 'ticket-mail-tools', 'bun', 'node_modules', '.bin', 'bun');
  if (!existsSync(bun)) spawnSync('npm', ['install', '--prefix', join(ROOT, 'node_modules', '.cache', 'ticket-mail-tools', 'bun'), '--no-audit', '--no-fund', '--no-save', 'bun'], { stdio: 'ignore' });
  if (existsSync(bun)) {
    const dir = tickets('bun');
    deliver([bun, join(ROOT, 'ticket.ts')], dir, 'submit@tickets.example')();
    const bunEmpty = () => time(bun, ['-e', 'void 0']);
    // The fastest way to run it under Bun is the built file: Bun transpiles ticket.ts at every start.
    deliver([bun, FILE], dir, 'ticket-1@tickets.example')();
    compare('Bun: append, bun dist/ticket-mail.cjs vs bun -e \'void 0\'', undefined, bunEmpty, deliver([bun, FILE], dir, 'ticket-1@tickets.example'));
    compare('Bun: append, bun dist/ticket-mail.cjs vs node dist/ticket-mail.cjs', undefined,
      deliver([process.execPath, FILE], dir, 'ticket-1@tickets.example'), deliver([bun, FILE], dir, 'ticket-1@tickets.example'));
    compare('Bun: append, bun ticket.ts vs bun -e \'void 0\'', undefined, bunEmpty, deliver([bun, join(ROOT, 'ticket.ts')], dir, 'ticket-1@tickets.example'));
    compare('Bun: new ticket + ack + notification vs bun -e \'void 0\'', undefined, bunEmpty,
      deliver([bun, join(ROOT, 'ticket.ts')], dir, 'submit@tickets.example', ['--admin', 'max@tickets.example']));
    // The Bun builds (build.mjs --bun-only), side by side: the bytecode file and the executable, each
    // against Node's and Bun's empty start. Built outside the run's folder in /tmp: Bun reads every
    // folder above the script it starts, and a big /tmp (30,000 entries) costs a start tens of ms.
    const built = join(ROOT, 'node_modules', '.cache', 'ticket-mail-bench', 'bun');
    const made = spawnSync(process.execPath, [join(ROOT, 'build.mjs'), '--bun-only', '--exe', '--out', built], { cwd: ROOT, env: { ...process.env, BUN: bun }, stdio: ['ignore', 'ignore', 'inherit'] });
    if (made.status !== 0) throw new Error('build.mjs --bun-only failed');
    for (const [what, program, targets] of [
      ['Bun bytecode (bun ticket-mail.js)', [bun, join(built, 'ticket-mail.js')], { node: 0.6 }],
      ['the executable (bun build --compile)', [join(built, 'ticket-mail')], { node: 0.4, bun: 2 }],
    ]) {
      deliver(program, dir, 'ticket-1@tickets.example')();
      compare(`${what}: append vs node -e ''`, targets.node, nodeEmpty, deliver(program, dir, 'ticket-1@tickets.example'));
      compare(`${what}: append vs bun -e 'void 0'`, targets.bun, bunEmpty, deliver(program, dir, 'ticket-1@tickets.example'));
      compare(`${what}: append vs node dist/ticket-mail.cjs`, undefined, deliver([process.execPath, FILE], dir, 'ticket-1@tickets.example'),
        deliver(program, dir, 'ticket-1@tickets.example'));
      const newTicket = deliver(program, dir, 'submit@tickets.example', ['--admin', 'max@tickets.example']);
      compare(`${what}: new ticket + ack + notification vs node -e ''`, undefined, nodeEmpty, newTicket);
      compare(`${what}: new ticket + ack + notification vs bun -e 'void 0'`, undefined, bunEmpty, newTicket);
    }
    rmSync(built, { recursive: true, force: true }); // the executable is ~110 MB
  } else console.error('Bun: not available (npm install bun failed); skipped');
}

// --- procmail, the classic MDA doing only the storage part --------------------------------------
if (!section('procmail')) { /* skipped */ } else if (spawnSync('sh', ['-c', 'command -v procmail']).status === 0) {
  const dir = tickets('procmail');
  const rc = join(dir, 'procmailrc');
  writeFileSync(rc, `LOGFILE=/dev/null\n:0:\n${join(dir, 'mbox')}\n`);
  const procmail = () => time('procmail', ['-m', rc], `From alice@customer.example Sat Nov 28 04:00:00 2026\n${message()}`);
  deliver([process.execPath, FILE], dir, 'submit@tickets.example')();
  compare('append: single file vs procmail (with locking)', undefined, procmail, deliver([process.execPath, FILE], dir, 'ticket-1@tickets.example'));
} else console.error('procmail: not installed (apt-get install procmail); skipped');

// --- scale ----------------------------------------------------------------------------------------
if (section('scale')) {
  const few = tickets('scale-10'), many = tickets('scale-10000');
  for (const [dir, n] of [[few, 10], [many, 10_000]]) {
    mkdirSync(join(dir, 'archived'), { recursive: true });
    for (let i = 1; i <= n; i++) writeFileSync(join(dir, String(i)), `From a@b Sat Nov 28 04:00:00 2026\nSubject: t${i}\n\nx\n\n`, { mode: 0o600 });
  }
  deliver([process.execPath, FILE], few, 'ticket-5@tickets.example')();
  deliver([process.execPath, FILE], many, 'ticket-5@tickets.example')();
  compare('append: 10,000 vs 10 existing tickets', 1.1, deliver([process.execPath, FILE], few, 'ticket-5@tickets.example'),
    deliver([process.execPath, FILE], many, 'ticket-5@tickets.example'));
  const small = tickets('mbox-1k'), big = tickets('mbox-200m');
  writeFileSync(join(small, '1'), `From a@b Sat Nov 28 04:00:00 2026\nSubject: small\n\n${'x'.repeat(1000)}\n\n`, { mode: 0o600 });
  const fd = openSync(join(big, '1'), 'w', 0o600);
  const line = Buffer.from(`${'y'.repeat(1023)}\n`);
  writeSync(fd, 'From a@b Sat Nov 28 04:00:00 2026\nSubject: big\n\n');
  const block = Buffer.concat(Array(1024).fill(line));
  for (let i = 0; i < 200; i++) writeSync(fd, block);
  writeSync(fd, '\n');
  closeSync(fd);
  compare('append: into a 200 MB mbox vs a 1 KB one', 1.1, deliver([process.execPath, FILE], small, 'ticket-1@tickets.example'),
    deliver([process.execPath, FILE], big, 'ticket-1@tickets.example'));
}

// --- hostile floods: a new ticket with an admin to notify, vs a plain message of the same size ----
// (test/hostile-parsing.test.ts proves these are filed and bounded in memory; here, how fast)
if (section('floods')) {
  const MiB = 1 << 20;
  const head = (id) => `From: Alice <alice@customer.example>\nTo: submit@tickets.example\nSubject: flood\nMessage-ID: <flood-${process.pid}-${id}@customer.example>\n`;
  const plain = (size) => (id) => `${head(id)}\n${`${'y'.repeat(71)}\n`.repeat(size / 72)}`;
  const floods = {
    'empty lines, 10 MiB': (id) => `${head(id)}\n${'\n'.repeat(10 * MiB)}`,
    'tiny MIME parts, 10 MiB': (id) => `${head(id)}Content-Type: multipart/mixed; boundary=b\n\n${'--b\n\nx\n'.repeat(10 * MiB / 7)}--b--\n`,
  };
  const dir = tickets('floods');
  let id = 0;
  const submit = (make) => () => time(process.execPath, [FILE, '--dir', dir, '--domain', 'tickets.example', '--admin', 'max@tickets.example',
    '--recipient', 'submit@tickets.example', '--sender', 'alice@customer.example'], make(++id));
  // The target says linear: 10 M lines cost their per-line work (quoting, the outline) where the
  // plain text has 145 k lines; the old code took minutes or ran out of memory.
  for (const [name, make] of Object.entries(floods)) compare(`new ticket: ${name} vs plain text of that size`, 6, submit(plain(10 * MiB)), submit(make), 5);
  const groups = 'g:'.repeat(500_000);
  const grouped = (id) => `From: ${groups}<alice@customer.example>\nTo: submit@tickets.example\nSubject: groups\nMessage-ID: <g-${process.pid}-${id}@x>\n\nHello.\n`;
  compare('new ticket: 1 MB From of nested groups vs 1 MB of body text', 3, submit(plain(MiB)), submit(grouped), 5);
}

// --- memory -----------------------------------------------------------------------------------------
if (section('memory')) {
  const peak = (bytes) => {
    const dir = tickets(`rss-${bytes}`);
    const path = join(work, `msg-${bytes}`);
    const body = Buffer.alloc(bytes, 'z\n'.repeat(38) + 'From the body\n');
    writeFileSync(path, Buffer.concat([Buffer.from(message()), body]));
    const r = spawnSync('sh', ['-c', `/usr/bin/time -f '%M' "$0" "$@" < ${path}`, process.execPath, FILE, '--dir', dir,
      '--recipient', 'submit@tickets.example', '--sender', 'a@b.example'], { env: ENV, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(r.stderr);
    return Number(r.stderr.trim().split('\n').at(-1)) / 1024; // MiB
  };
  const small = [], large = [];
  for (let i = 0; i < 5; i++) { small.push(peak(5 * 1024)); large.push(peak(50 * 1024 * 1024)); }
  const delta = large.map((x, i) => x - small[i]);
  rows.push({ name: 'peak RSS: 50 MB message minus 5 KB message', unit: 'MiB', base: stats(small), cand: stats(large), ratio: stats(delta), target: 20, pass: stats(delta).max <= 20, delta: true });
  console.error(`memory: +${f(stats(delta).median)} MiB`);
}

// --- bursts ---------------------------------------------------------------------------------------
function burst(count, width, command) {
  const start = process.hrtime.bigint();
  return new Promise((done, failed) => {
    let next = 0, running = 0, finished = 0;
    const launch = () => {
      while (running < width && next < count) {
        const [cmd, args, input] = command(next++);
        running++;
        const child = spawn(cmd, args, { env: ENV, stdio: ['pipe', 'ignore', 'ignore'] });
        child.on('close', (code) => {
          if (code !== 0) failed(new Error(`${cmd} exited ${code}`));
          running--; finished++;
          if (finished === count) done(ms(start)); else launch();
        });
        child.stdin.on('error', () => {}); // node -e '' exits without reading its stdin
        child.stdin.end(input);
      }
    };
    launch();
  });
}
if (section('bursts')) {
  const runs = Number(process.env.BENCH_BURSTS || 5);
  for (const [name, recipient] of [['500 deliveries into one ticket, 50 at a time', 'ticket-1@tickets.example'], ['500 new tickets, 50 at a time', 'submit@tickets.example']]) {
    const b = [], c = [];
    for (let i = 0; i < runs; i++) {
      b.push(await burst(500, 50, () => [process.execPath, ['-e', ''], '']));
      const dir = tickets(`burst-${recipient}-${i}`);
      deliver([process.execPath, FILE], dir, 'submit@tickets.example')();
      c.push(await burst(500, 50, () => [process.execPath, [FILE, '--dir', dir, '--domain', 'tickets.example', '--recipient', recipient,
        '--sender', 'a@b.example', '--lock-timeout', '300'], message()]));
      const numbers = readdirSync(dir).filter((n) => /^\d+$/.test(n));
      const stored = numbers.reduce((sum, n) => sum + (readFileSync(join(dir, n), 'latin1').match(/^From /gm) ?? []).length, 0);
      if (stored !== 501) throw new Error(`${name}: ${stored} messages stored, expected 501`);
    }
    const throughput = c.map((x, i) => b[i] / x); // our throughput as a share of node -e ''s
    rows.push({ name: `burst: ${name}, throughput vs node -e ''`, unit: 's', base: stats(b.map((x) => x / 1000)), cand: stats(c.map((x) => x / 1000)), ratio: stats(throughput), target: 0.85, pass: stats(throughput).median >= 0.85, atLeast: true });
    console.error(`${name}: ${f(stats(c).median / 1000, 2)} s vs ${f(stats(b).median / 1000, 2)} s`);
  }
}

// --- the history viewer: how its rows measure ------------------------------------------------------
/**
 * A ticket's conversation as mail clients write it, the same every run but for the attachments'
 * random bytes: text in paragraphs, replies quoting the message before (some quotes long enough
 * to be folded), a link now and then, RFC 2047 names, one message in 7 with an HTML
 * alternative and one in 25 HTML only, and one in 10 with a base64 attachment, sized (each
 * from what is left to fill) so that the whole comes to `bytes`.
 */
function* conversation(count, bytes) {
  let seed = 17;
  const random = () => { seed = (seed * 1664525 + 1013904223) >>> 0; return seed / 2 ** 32; };
  const pick = (xs) => xs[Math.floor(random() * xs.length)];
  const words = 'the printer on floor three prints blank pages since the update yesterday we restarted it twice and checked the toner but nothing changed could you please look into it before friday our invoices wait thanks for the quick answer I tried what you suggested and the queue moves again but the colour is off'.split(' ');
  const sentence = () => { const w = Array.from({ length: 6 + Math.floor(random() * 14) }, () => pick(words)).join(' '); return `${w[0].toUpperCase()}${w.slice(1)}.`; };
  const paragraph = () => Array.from({ length: 2 + Math.floor(random() * 4) }, sentence).join(' ').replace(/(.{1,72})(?: |$)/g, '$1\n').trimEnd();
  const people = [['Alice Example', 'alice@customer.example'], ['=?UTF-8?Q?Ren=C3=A9e_Dupr=C3=A9?=', 'renee@customer.example'], ['Max Support', 'max@tickets.example']];
  const escape = (text) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const TEXT_BYTES = 1500; // about what a message without attachment comes to
  let previous = '', made = 0, attachmentsLeft = Math.floor((count + 5) / 10);
  for (let k = 1; k <= count; k++) {
    const [name, address] = people[k === 1 ? 0 : k % 3];
    let text = `${Array.from({ length: 1 + Math.floor(random() * 3) }, paragraph).join('\n\n')}\n`;
    if (k % 20 === 7) text += `\nSee https://status.example.com/incidents/${k} and <mailto:help@tickets.example>.\n`;
    if (previous && random() < 0.6) text += `\nOn Mon, 2 Mar 2026, someone wrote:\n${previous.split('\n').slice(0, random() < 0.3 ? 40 : 5).map((l) => `> ${l}`).join('\n')}\n`;
    text += `\n-- \n${name.startsWith('=?') ? 'Renée' : name}\n`;
    previous = text;
    const head = `From: ${name} <${address}>\nTo: ${k === 1 ? 'submit' : 'ticket-1'}@tickets.example\nSubject: ${k === 1 ? '' : 'Re: [#1] '}Printer on floor 3 prints blank pages\n`
      + `Date: Mon, 2 Mar 2026 ${String(8 + Math.floor(k / 120)).padStart(2, '0')}:${String(k % 60).padStart(2, '0')}:00 +0000\nMessage-ID: <conversation-${process.pid}-${++serial}@customer.example>\nMIME-Version: 1.0\n`;
    let mail;
    if (k % 10 === 5) { // a screenshot, an invoice, a log
      const [type, file] = pick([['image/png', 'screenshot.png'], ['application/pdf', 'invoice.pdf'], ['application/octet-stream', 'printer.log.gz']]);
      const share = Math.max(0, (bytes - made - (count - k) * TEXT_BYTES) / attachmentsLeft--); // base64 bytes
      const data = randomBytes(Math.round(share * (attachmentsLeft ? 0.3 + 1.4 * random() : 1) * 3 / 4)).toString('base64').replace(/.{76}/g, '$&\n');
      mail = `${head}Content-Type: multipart/mixed; boundary="b${k}"\n\n--b${k}\nContent-Type: text/plain; charset=utf-8\n\n${text}\n--b${k}\nContent-Type: ${type}; name="${file}"\nContent-Disposition: attachment; filename="${file}"\nContent-Transfer-Encoding: base64\n\n${data}\n--b${k}--\n`;
    } else if (k % 25 === 12) {
      mail = `${head}Content-Type: text/html; charset=utf-8\n\n<html><body>${text.split('\n\n').map((p) => `<p>${escape(p).replace(/\n/g, '<br>')}</p>`).join('\n')}</body></html>\n`;
    } else if (k % 7 === 3) {
      mail = `${head}Content-Type: multipart/alternative; boundary="a${k}"\n\n--a${k}\nContent-Type: text/plain; charset=utf-8; format=flowed\nContent-Transfer-Encoding: quoted-printable\n\n${text.replace(/=/g, '=3D').replace(/é/g, '=C3=A9')}\n--a${k}\nContent-Type: text/html; charset=utf-8\n\n<p>${escape(text)}</p>\n--a${k}--\n`;
    } else {
      mail = `${head}Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n${text}`;
    }
    made += Buffer.byteLength(mail);
    yield mail;
  }
}
/** Delivers a conversation for real (the single file, as the MTA runs it) as the next ticket of `dir`. */
function deliverConversation(dir, count, bytes) {
  let ticket;
  for (const text of conversation(count, bytes)) {
    const recipient = ticket ? `ticket-${ticket}@tickets.example` : 'submit@tickets.example';
    time(process.execPath, [FILE, '--dir', dir, '--domain', 'tickets.example', '--recipient', recipient, '--sender', 'alice@customer.example'], text);
    ticket ??= Math.max(...readdirSync(dir).filter((n) => /^\d+$/.test(n)).map(Number));
  }
  return ticket;
}

/** bench/viewer.cjs: the viewer's handle() timed in a process of its own (see there). */
function inProcess(job) {
  const r = spawnSync(process.execPath, [join(import.meta.dirname, 'viewer.cjs'), JSON.stringify(job)], { env: ENV, encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`bench/viewer.cjs ${JSON.stringify(job)}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** `ticket-mail serve` on a free loopback port over `dir`; its access log is read and dropped. */
async function startServe(dir) {
  const child = spawn(process.execPath, [FILE, '--dir', dir, '--domain', 'tickets.example', 'serve', '--listen', '127.0.0.1:0'], { env: ENV, stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((done, failed) => {
    let out = '';
    const listening = (d) => {
      out += d;
      const m = /http:\/\/127\.0\.0\.1:\d+\//.exec(out);
      if (m) { child.stdout.off('data', listening).resume(); done(m[0]); }
    };
    child.stdout.on('data', listening);
    child.once('exit', (code) => failed(new Error(`ticket-mail serve exited ${code}`)));
  });
  return { url, pid: child.pid, stop: () => new Promise((done) => { child.once('exit', done); child.kill('SIGTERM'); }) };
}

const agent = new Agent({ keepAlive: true, maxSockets: 1 });
/** One GET, its whole body read, in ms; anything but 200 stops the bench. */
function fetchTime(url, headers = {}) {
  const start = process.hrtime.bigint();
  return new Promise((done, failed) => {
    httpGet(url, { agent, headers }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? done(ms(start)) : failed(new Error(`GET ${url}: ${res.statusCode}`))));
    }).on('error', failed);
  });
}

/** A process's resident memory now and at its peak since the last reset, in MiB (Linux). */
const memoryOf = (pid) => Object.fromEntries(readFileSync(`/proc/${pid}/status`, 'latin1').split('\n')
  .filter((l) => /^Vm(HWM|RSS):/.test(l)).map((l) => [l.slice(2, 5), Number.parseInt(l.split(/\s+/)[1], 10) / 1024]));
/** How far `pid`'s resident memory rose above where it was while `request` ran (peak RSS reset through clear_refs). */
async function peakGrowth(pid, request) {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
  const before = memoryOf(pid).RSS;
  await request();
  return memoryOf(pid).HWM - before;
}

// --- list over 10,000 tickets ----------------------------------------------------------------------
if (section('list')) {
  const dir = tickets('list');
  mkdirSync(join(dir, 'archived'));
  for (let i = 1; i <= 10_000; i++) {
    const where = i % 3 === 0 ? join(dir, 'archived', String(i)) : join(dir, String(i));
    writeFileSync(where, `From a@b Sat Nov 28 04:00:00 2026\nX-Ticket-Mail: ticket ${i}\nFrom: User ${i} <u${i}@customer.example>\nSubject: =?UTF-8?Q?Ticket_n=C2=B0${i}?=\n\nhello\n\nFrom a@b Sat Nov 28 05:00:00 2026\nX-Ticket-Mail: ticket ${i}\nSubject: re\n\nmore\n\n`, { mode: 0o600 });
  }
  const list = (cold) => () => {
    if (cold) rmSync(join(dir, '.ticket-mail', 'list-cache.json'), { force: true });
    return time(process.execPath, [FILE, 'list', '--all', '--json', '--dir', dir]);
  };
  mkdirSync(join(dir, '.ticket-mail'), { recursive: true });
  compare('list --all over 10,000 tickets, no cache, vs node -e \'\'', undefined, nodeEmpty, list(true), 5);
  compare('list --all over 10,000 tickets, cached, vs node -e \'\'', undefined, nodeEmpty, list(false), 5);
  const abs = rows.slice(-2);
  for (const r of abs) { r.target = '<= 1 s'; r.pass = r.cand.max <= 1000; }
  // The viewer's open list over the same tickets, its cache fresh (list --all just wrote it):
  // the server's time for the page against what it reads (listTickets, which writes no cache).
  // serve first: the in-process job's deliveries leave the folder changed, and a list within two
  // seconds of a change reads every ticket again (listTickets' racy margin).
  const server = await startServe(dir);
  try {
    await compareAsync('viewer: open list (/) over 10,000 tickets through serve (HTTP) vs /style.css', undefined,
      () => fetchTime(`${server.url}style.css`), () => fetchTime(server.url));
  } finally { await server.stop(); }
  const job = inProcess({ mode: 'list', dir, runs: RUNS });
  judgedBy(record('viewer: open list (/) over 10,000 tickets, cache fresh, in-process handle() vs listTickets()', undefined, job.listTickets, job.list), 50);
  record('viewer: the open list just after a delivery (a stat of each ticket) vs the list unchanged, in-process', undefined, job.list, job.afterDelivery);
}

// --- who is waiting, and the numbers, over 10,000 tickets ------------------------------------------
if (section('numbers')) {
  // Tickets of 2 to 4 records over the last half year: the customer's, an admin's answer, an
  // out-of-office (automatic) or the customer again; a third closed (archived), with an audit log.
  const dir = tickets('numbers');
  mkdirSync(join(dir, 'archived'));
  mkdirSync(join(dir, '.ticket-mail'));
  const asctime = (ms) => { const d = new Date(ms); return `${d.toDateString().slice(0, 10).replace(/ 0(\d)$/, '  $1')} ${d.toTimeString().slice(0, 8)} ${d.getFullYear()}`; };
  const record = (sender, at, head) => `From ${sender} ${asctime(at)}\nX-Ticket-Mail: ticket\n${head}\n\nhello\n\n`;
  const now = Date.now();
  const log = [];
  for (let i = 1; i <= 10_000; i++) {
    const opened = now - ((i * 7919) % (182 * 86400)) * 1000;
    const customer = `From: User ${i} <u${i}@customer.example>\nSubject: =?UTF-8?Q?Ticket_n=C2=B0${i}?=`;
    const records = [record(`u${i}@customer.example`, opened, customer)];
    if (i % 2 === 0) records.push(record('max@tickets.example', opened + 3600_000, 'From: Max <max@tickets.example>\nSubject: Re'));
    if (i % 4 === 0) records.push(record(`u${i}@customer.example`, opened + 7200_000, `From: u${i}@customer.example\nAuto-Submitted: auto-replied\nSubject: away`));
    if (i % 5 === 0) records.push(record(`u${i}@customer.example`, opened + 9000_000, `${customer}\nIn-Reply-To: <x@y>`));
    const closed = i % 3 === 0;
    writeFileSync(join(dir, closed ? 'archived' : '', String(i)), records.join(''), { mode: 0o600 });
    if (closed) log.push(`${new Date(opened + 10_000_000).toISOString()}\t<m${i}@x>\tu${i}@customer.example\tticket-${i}-done@tickets.example\tclose/address\t${i}\tclosed\t-\n`);
  }
  writeFileSync(join(dir, '.ticket-mail', 'log'), log.join(''), { mode: 0o600 });
  const run = (args, cold) => () => {
    if (cold) rmSync(join(dir, '.ticket-mail', 'list-cache.json'), { force: true });
    return time(process.execPath, [FILE, ...args, '--json', '--dir', dir, '--domain', 'tickets.example', '--admin', 'max@tickets.example']);
  };
  compare('list --waiting over 10,000 tickets, no cache, vs node -e \'\'', undefined, nodeEmpty, run(['list', '--waiting'], true), 5);
  compare('list --waiting over 10,000 tickets, cached, vs node -e \'\'', undefined, nodeEmpty, run(['list', '--waiting'], false), 5);
  compare('stats over 10,000 tickets, no cache, vs node -e \'\'', undefined, nodeEmpty, run(['stats'], true), 5);
  compare('stats over 10,000 tickets, cached, vs node -e \'\'', undefined, nodeEmpty, run(['stats'], false), 5);
  for (const r of rows.slice(-4)) { r.target = '<= 1 s'; r.pass = r.cand.max <= 1000; }
}

// --- the history viewer: a ticket page of a 1,000-message, 50 MB ticket ---------------------------
if (section('viewer')) {
  const dir = tickets('viewer');
  const started = process.hrtime.bigint();
  const big = deliverConversation(dir, 1000, 50 * 2 ** 20);
  const small = deliverConversation(dir, 1, 0);
  const size = statSync(join(dir, String(big))).size;
  console.error(`viewer: ticket ${big} made by 1,000 real deliveries, ${f(size / 2 ** 20)} MiB, in ${f(ms(started) / 1000)} s`);
  // In-process, the server's own time: against reading the ticket's file once (a floor: the page
  // must find where each of its 1,000 records starts) and against the page of a 1-message ticket.
  const job = inProcess({ mode: 'page', dir, big, small, runs: RUNS });
  judgedBy(record('viewer: ticket page of a 1,000-message 50 MB ticket, in-process handle() vs reading its file once', undefined, job.read, job.big), 200);
  record('viewer: the same page vs the page of a 1-message ticket, in-process', undefined, job.small, job.big);
  record('viewer: the same page\'s CPU time vs reading its file once, in-process', undefined, job.readCpu, job.bigCpu);
  const server = await startServe(dir);
  try {
    const page = (n) => () => fetchTime(`${server.url}${n}/`);
    judgedBy(await compareAsync('viewer: the same page through serve (HTTP) vs the page of a 1-message ticket', undefined, page(small), page(big)), 200);
    // Memory: how far serve's resident memory rises while it answers one page, the big against the small.
    const b = [], c = [];
    for (let i = 0; i < Math.min(RUNS, 11); i++) { b.push(await peakGrowth(server.pid, page(small))); c.push(await peakGrowth(server.pid, page(big))); }
    const delta = c.map((x, i) => x - b[i]);
    const limit = 25;
    rows.push({ name: 'viewer: serve\'s peak RSS growth during that page, minus during a 1-message page', unit: 'MiB', base: stats(b), cand: stats(c), ratio: stats(delta), target: limit, pass: stats(delta).max <= limit, delta: true });
    console.error(`viewer: peak RSS +${f(stats(delta).median)} MiB a page; serve's RSS ${f(memoryOf(server.pid).RSS)} MiB after ${2 * RUNS + 2 + 2 * b.length} pages`);
  } finally { await server.stop(); }
}

// --- the history viewer as a CGI program, under nginx + fcgiwrap -------------------------------------
// The web server is test/web.ts's (built here with esbuild: this script is plain JavaScript).
// The program is what doc/viewer.md's recipe runs: a shell wrapper exec'ing node with ticket-mail
// and `cgi`, as the tickets user, whose deliveries made the code cache. Its baseline is the
// least a Node CGI program costs: a `#!/usr/bin/env node` script printing a fixed page.
if (section('cgi')) {
  const { build } = await import('esbuild');
  const harness = join(ROOT, 'node_modules', '.cache', 'ticket-mail-bench', 'web.mjs');
  await build({ entryPoints: [join(ROOT, 'test', 'web.ts')], bundle: true, platform: 'node', format: 'esm', packages: 'external', outfile: harness,
    logLevel: 'warning', define: { 'import.meta.dirname': JSON.stringify(join(ROOT, 'test')), 'import.meta.url': 'undefined' } });
  const { cgiMissing, startCgiServer } = await import(harness);
  if (cgiMissing) console.error(`CGI: ${cgiMissing}; skipped`);
  else {
    const dir = tickets('cgi');
    const n = deliverConversation(dir, 5, 100_000); // a ticket of five messages, one with an attachment
    const scripts = tickets('cgi-scripts');
    const bare = join(scripts, 'bare.cgi');
    writeFileSync(bare, "#!/usr/bin/env node\nprocess.stdout.write('Status: 200 OK\\r\\nContent-Type: text/html; charset=utf-8\\r\\n\\r\\n<!DOCTYPE html><title>Ticket</title><p>A fixed page.</p>\\n');\n", { mode: 0o755 });
    const wrapper = (name, program) => {
      const path = join(scripts, name);
      writeFileSync(path, `#!/bin/sh\nexec ${process.execPath} ${program} --dir ${dir} --domain tickets.example cgi\n`, { mode: 0o755 });
      return path;
    };
    const users = { reader: 'a bench password' };
    const auth = { Authorization: `Basic ${Buffer.from('reader:a bench password').toString('base64')}` };
    const env = { XDG_CACHE_HOME: ENV.XDG_CACHE_HOME };
    const servers = [];
    try {
      for (const script of [bare, wrapper('npm.cgi', join(app, 'node_modules', 'ticket-mail', 'dist', 'bin', 'ticket-mail.cjs')), wrapper('single.cgi', FILE)]) {
        servers.push(await startCgiServer({ script, users, env }));
      }
      const [floor, npm, single] = servers.map((server) => () => fetchTime(`${server.url}${n}/`, auth));
      await compareAsync(`viewer: CGI, ticket page (5 messages) under nginx + fcgiwrap: npm bin vs a bare Node CGI script`, 1.3, floor, npm);
      await compareAsync(`viewer: CGI, the same: single file vs a bare Node CGI script`, undefined, floor, single);
    } finally {
      for (const server of servers) await server.stop();
    }
  }
}

// --- search over 10,000 tickets ------------------------------------------------------------------
if (section('search')) {
  const dir = tickets('search');
  mkdirSync(join(dir, 'archived'));
  // 10,000 tickets of 10 messages, written directly (deliveries would take an hour): plain text,
  // base64 UTF-8, quoted-printable Latin-1, HTML only, and a base64 attachment. "printer" is in
  // one message in 20, and in some of those only inside base64 or quoted-printable, where grep
  // cannot see it; "zqxj" is in no text, only in the attachments' bytes.
  const b64 = (text) => Buffer.from(text).toString('base64').replace(/.{76}/g, '$&\n');
  const filler = 'Dear support, the installation went well until the second reboot; since then the screen flickers and the log shows nothing useful. ';
  const attachment = b64(`${'zqxj'.repeat(300)}\n`);
  const body = (i, j) => {
    const word = (i + j) % 20 === 0 ? 'printer' : 'device';
    switch (j % 5) {
      case 0: return `Content-Type: text/plain; charset=utf-8\n\n${filler}My ${word} stopped at ${i}.${j}.\n`;
      case 1: return `Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n${b64(`${filler}Das Gerät (${word}) läuft nicht, ${i}.${j}.\n`)}\n`;
      case 2: return `Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n${filler}Le caf=E9 et le ${word[0]}=${word.charCodeAt(1).toString(16).toUpperCase()}${word.slice(2)} ${i}.${j}.\n`;
      case 3: return `Content-Type: text/html; charset=utf-8\n\n<html><body><p>${filler}</p><p>The <b>${word}</b> &amp; more, ${i}.${j}.</p></body></html>\n`;
      default: return `Content-Type: multipart/mixed; boundary="b${i}"\n\n--b${i}\nContent-Type: text/plain\n\n${filler}See the log of the ${word}.\n--b${i}\nContent-Type: application/octet-stream; name="log${j}.bin"\nContent-Transfer-Encoding: base64\n\n${attachment}\n--b${i}--\n`;
    }
  };
  const started = Date.now();
  for (let i = 1; i <= 10_000; i++) {
    const records = [];
    for (let j = 0; j < 10; j++) {
      records.push(`From u${i}@customer.example Sat Nov 28 ${String(j).padStart(2, '0')}:00:00 2026\nX-Ticket-Mail: ticket ${i}\nFrom: =?UTF-8?Q?J=C3=B6rg_${i}?= <u${i}@customer.example>\nTo: ticket-${i}@tickets.example\nSubject: =?UTF-8?B?${Buffer.from(`Störung ${i}`).toString('base64')}?=\nMessage-ID: <s${i}.${j}@customer.example>\nMIME-Version: 1.0\n${body(i, j)}\n`);
    }
    writeFileSync(i % 3 === 0 ? join(dir, 'archived', String(i)) : join(dir, String(i)), records.join(''), { mode: 0o600 });
  }
  console.error(`search: 10,000 tickets written in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const cache = join(dir, '.ticket-mail', 'search');
  const search = (word = 'printer') => () => time(process.execPath, [FILE, 'search', '--json', '--dir', dir, word]);
  const grep = () => time('grep', ['-rli', 'printer', dir]);
  const pause = () => spawnSync('sleep', ['2.1']); // past the folder's racy margin (RACY_MS): the cache may trust it again
  const cold = [];
  const coldBase = [];
  for (let i = 0; i < 2; i++) { coldBase.push(grep()); rmSync(cache, { recursive: true, force: true }); cold.push(search()()); }
  record('search: one word over 10,000 tickets (100,000 messages), no cache, vs grep -rli over the raw files', undefined, coldBase, cold);
  pause();
  search()(); // the cache trusts the folders from now on
  compare('search: one word over 10,000 tickets, cached, vs grep -rli over the raw files', 1, grep, search(), 11);
  const warm = [];
  const after = [];
  for (let i = 0; i < 7; i++) {
    pause();
    search()();
    warm.push(search()());
    time(process.execPath, [FILE, '--dir', dir, '--domain', 'tickets.example', '--recipient', `ticket-${1 + i * 3}@tickets.example`, '--sender', 'alice@customer.example'], message('printer'));
    after.push(search()());
  }
  record('search: the same just after one new delivery (a stat of each ticket, its new message read) vs cached', 1.2, warm, after);
}

// --- report ----------------------------------------------------------------------------------------
const node = process.version;
const head = `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux, Node ${node}; ${RUNS} runs per single-delivery row, ${process.env.BENCH_BURSTS || 5} per burst; NODE_EXTRA_CA_CERTS unset; load average ${f(loadAtStart, 2)} at the start, ${f(loadavg()[0], 2)} at the end.`;
const lines = [head, '', '| measurement | baseline median | ours min / median / max | ratio min / median / max | target | |', '|---|---|---|---|---|---|'];
for (const r of rows) {
  const u = r.unit;
  const ratio = r.delta ? `+${f(r.ratio.min)} / +${f(r.ratio.median)} / +${f(r.ratio.max)} MiB` : `${f(r.ratio.min, 2)} / ${f(r.ratio.median, 2)} / ${f(r.ratio.max, 2)}`;
  const target = r.target === undefined ? 'report' : typeof r.target === 'string' ? r.target : r.delta ? `<= +${r.target} MiB` : r.atLeast ? `>= ${r.target}` : `<= ${r.target}`;
  const digits = u === 's' ? 2 : 1;
  lines.push(`| ${r.name} | ${f(r.base.median, digits)} ${u} | ${f(r.cand.min, digits)} / ${f(r.cand.median, digits)} / ${f(r.cand.max, digits)} ${u} | ${ratio} | ${target} | ${r.pass === undefined ? '' : r.pass ? 'ok' : 'MISSED'} |`);
}
const report = `${lines.join('\n')}\n`;
if (!ONLY) writeFileSync(join(ROOT, 'bench', 'results.md'), report); // a partial run leaves the last full one's table
process.stdout.write(report);
agent.destroy();
rmSync(work, { recursive: true, force: true });
