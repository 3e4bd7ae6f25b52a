#!/usr/bin/env node
// npm run bench: what ticket-mail costs, as ratios against baselines measured in the same
// run on the same machine (baseline and candidate runs interleaved, so drift hits both).
// Children get a clean environment, as from an MTA: in particular no NODE_EXTRA_CA_CERTS,
// which would make every Node start parse CA certificates (~40 ms on Node 20).
import { spawn, spawnSync } from 'node:child_process';
import { cpus, totalmem, tmpdir } from 'node:os';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const FILE = join(ROOT, 'dist', 'ticket-mail.cjs');
const FAKE_SENDMAIL = join(ROOT, 'test', 'fake-sendmail');
const RUNS = Number(process.env.BENCH_RUNS || 31);
const work = mkdtempSync(join(tmpdir(), 'tm-bench-'));
// The code cache goes to a folder of this run's own: the first delivery makes it, as on a server.
const ENV = { PATH: process.env.PATH, HOME: process.env.HOME, XDG_CACHE_HOME: join(work, 'cache'), SENDMAIL: FAKE_SENDMAIL, LANG: 'C' };
const rows = [];

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
  const ratios = c.map((x, i) => x / b[i]);
  const r = stats(ratios);
  rows.push({ name, unit: 'ms', base: stats(b), cand: stats(c), ratio: r, target, pass: target === undefined ? undefined : r.median <= target });
  console.error(`${name}: median ${f(stats(c).median)} ms vs ${f(stats(b).median)} ms, ratio ${f(r.median, 2)}`);
}

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
{
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
{
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
  } else console.error('Bun: not available (npm install bun failed); skipped');
}

// --- procmail, the classic MDA doing only the storage part --------------------------------------
if (spawnSync('sh', ['-c', 'command -v procmail']).status === 0) {
  const dir = tickets('procmail');
  const rc = join(dir, 'procmailrc');
  writeFileSync(rc, `LOGFILE=/dev/null\n:0:\n${join(dir, 'mbox')}\n`);
  const procmail = () => time('procmail', ['-m', rc], `From alice@customer.example Sat Nov 28 04:00:00 2026\n${message()}`);
  deliver([process.execPath, FILE], dir, 'submit@tickets.example')();
  compare('append: single file vs procmail (with locking)', undefined, procmail, deliver([process.execPath, FILE], dir, 'ticket-1@tickets.example'));
} else console.error('procmail: not installed (apt-get install procmail); skipped');

// --- scale ----------------------------------------------------------------------------------------
{
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
{
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
{
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
{
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

// --- list over 10,000 tickets ----------------------------------------------------------------------
{
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
}

// --- report ----------------------------------------------------------------------------------------
const node = process.version;
const head = `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux, Node ${node}; ${RUNS} runs per single-delivery row, ${process.env.BENCH_BURSTS || 5} per burst; NODE_EXTRA_CA_CERTS unset.`;
const lines = [head, '', '| measurement | baseline median | ours min / median / max | ratio min / median / max | target | |', '|---|---|---|---|---|---|'];
for (const r of rows) {
  const u = r.unit;
  const ratio = r.delta ? `+${f(r.ratio.min)} / +${f(r.ratio.median)} / +${f(r.ratio.max)} MiB` : `${f(r.ratio.min, 2)} / ${f(r.ratio.median, 2)} / ${f(r.ratio.max, 2)}`;
  const target = r.target === undefined ? 'report' : typeof r.target === 'string' ? r.target : r.delta ? `<= +${r.target} MiB` : r.atLeast ? `>= ${r.target}` : `<= ${r.target}`;
  const digits = u === 's' ? 2 : 1;
  lines.push(`| ${r.name} | ${f(r.base.median, digits)} ${u} | ${f(r.cand.min, digits)} / ${f(r.cand.median, digits)} / ${f(r.cand.max, digits)} ${u} | ${ratio} | ${target} | ${r.pass === undefined ? '' : r.pass ? 'ok' : 'MISSED'} |`);
}
const report = `${lines.join('\n')}\n`;
writeFileSync(join(ROOT, 'bench', 'results.md'), report);
process.stdout.write(report);
rmSync(work, { recursive: true, force: true });
