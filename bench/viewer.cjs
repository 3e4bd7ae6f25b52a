// The viewer's server time, in-process: bench.mjs runs this with a JSON job and reads the
// timings it prints. It loads the built modules (dist/bin/) as the loader does, so it times the
// code that ships, and calls the viewer's handle() directly: no HTTP, no process start.
//   {"mode":"page", "dir", "big", "small", "runs"}: the page /BIG/ interleaved with the page
//     /SMALL/ and with reading ticket BIG's file once (fs.readFileSync);
//   {"mode":"list", "dir", "runs"}: the open list / interleaved with listTickets (what it reads)
//     and with the list just after a delivery to ticket 1.
'use strict';
const { appendFileSync, existsSync, readFileSync, unlinkSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { Script } = require('node:vm');

const BIN = join(__dirname, '..', 'dist', 'bin');
const loaded = {};
const ours = (id) => id === 'core' || (!id.startsWith('node:') && existsSync(join(BIN, `${id}.js`)));
function run(name) {
  if (loaded[name]) return loaded[name].exports;
  const module = loaded[name] = { exports: {} };
  const file = join(BIN, `${name}.js`);
  new Script(readFileSync(file, 'utf8'), { filename: file }).runInThisContext()(module.exports, (id) => (ours(id) ? run(id) : require(id)), module, file, BIN);
  return module.exports;
}

const ms = (start) => Number(process.hrtime.bigint() - start) / 1e6;
/** Wall and CPU time of one step, in ms: the machine may be shared, and CPU time says what the step itself cost. */
async function timed(work) {
  const start = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  await work();
  const used = process.cpuUsage(cpu);
  return [ms(start), (used.user + used.system) / 1000];
}

async function main() {
  const job = JSON.parse(process.argv[2]);
  const core = run('core');
  const { handle } = run('viewer');
  const cfg = core.resolveConfig({ dir: job.dir, domain: 'tickets.example' }, {}, {});
  const store = new core.Store(cfg);
  // As serve on loopback answers its own account (the connection's peer, which serve looks up once per connection).
  const viewer = { store, base: '', access: { kind: 'loopback', uids: new Set([process.getuid()]) } };
  const get = async (target) => {
    const reply = await handle(viewer, { method: 'GET', target, peerUid: process.getuid() });
    if (reply.status !== 200 || typeof reply.body !== 'string') throw new Error(`${target}: ${reply.status}`);
    return reply.body.length;
  };
  const series = {};
  const add = (name, value) => (series[name] ??= []).push(value);
  // Steps interleaved, phase by phase: a delivery leaves the folder changed for a while, so the
  // list after one is timed after the unchanged list, not between its runs.
  const phases = job.mode === 'page'
    ? [{ read: () => readFileSync(store.ticketPath(job.big, 'open')), small: () => get(`/${job.small}/`), big: () => get(`/${job.big}/`) }]
    : [{ listTickets: () => core.listTickets(store, 'open', false), list: () => get('/') }, {
      // As a delivery changes a ticket: its dotlock beside it, a record appended, the lock removed.
      // The folder changed, so this list reads each ticket's stat again.
      afterDelivery: () => {
        const path = store.ticketPath(1, 'open');
        writeFileSync(`${path}.lock`, `${process.pid}\n`);
        appendFileSync(path, 'From a@b Sat Nov 28 06:00:00 2026\nSubject: re\n\nagain\n\n');
        unlinkSync(`${path}.lock`);
        return get('/');
      },
    }];
  for (const steps of phases) {
    for (const step of Object.values(steps)) await step(); // warm: modules compiled, file in the page cache
    for (let i = 0; i < job.runs; i++) {
      for (const [name, step] of Object.entries(steps)) {
        const [wall, cpu] = await timed(step);
        add(name, wall);
        add(`${name}Cpu`, cpu);
      }
    }
  }
  const pageBytes = job.mode === 'page' ? await get(`/${job.big}/`) : await get('/');
  process.stdout.write(`${JSON.stringify({ ...series, pageBytes })}\n`);
}
main().catch((e) => { process.stderr.write(`${e?.stack ?? e}\n`); process.exit(1); });
