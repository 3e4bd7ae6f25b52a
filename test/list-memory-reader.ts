// A long-lived reader like serve (one process, listTickets many times), run by list-memory.test.ts
// as another user: argv DIR ALIAS GO. Lists DIR's open tickets, waits for the file GO, lists again,
// and lists ALIAS (the same folder by another path: no memory). One JSON line.
import { existsSync } from 'node:fs';
import { Store, listTickets, resolveConfig } from '../ticket.ts';
const [dir, alias, go] = process.argv.slice(2) as [string, string, string];
const list = (d: string) => listTickets(new Store(resolveConfig({ dir: d, domain: 'x.example' }, {}, {})), 'open', false).map((r) => `${r.ticket} ${r.messages}`);
const before = list(dir);
process.stdout.write('ready\n');
const wait = new Int32Array(new SharedArrayBuffer(4));
while (!existsSync(go)) Atomics.wait(wait, 0, 0, 20);
process.stdout.write(`${JSON.stringify({ before, after: list(dir), fresh: list(alias) })}\n`);
