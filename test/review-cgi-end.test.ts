// Review rv1 of 2383480 (runCgi closes fds 1 and 2 and exits once the reply went out by writeSync).
// process.stderr on a pipe is libuv's: a line that meets a full pipe waits in the stream's queue.
// Before 2383480 the process lived until it was written; closeSync(2) + process.exit(0) dropped
// it, so a 500 page's "ticket-mail: viewer: ..." never reached the web server's log when the log
// pipe was busy for a moment (a piped logger or journald that other processes keep full). runCgi
// now leaves such a process to its natural exit.
import { describe, expect, it } from 'vitest';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, FAKE_SENDMAIL, PRIVATE_ENV, cgiWithBusyLog, deliver, tempDir } from './harness.ts';

describe('cgi: the error a 500 page reports', () => {
  it('reaches stderr even when the stderr pipe is full for a moment', () => {
    const tickets = join(tempDir('tm-rv1-'), 'tickets');
    const r0 = deliver(['--dir', tickets, '--domain', 'tickets.example', '--sendmail', FAKE_SENDMAIL, '--recipient', 'submit@tickets.example', '--sender', 'alice@customer.example'],
      'From: Alice <alice@customer.example>\nSubject: hi\nMessage-ID: <rv1@customer.example>\n\nHello.\n');
    expect(r0.status, r0.stderr).toBe(0);
    rmSync(join(tickets, 'archived'), { recursive: true });
    writeFileSync(join(tickets, 'archived'), 'not a folder\n'); // /archived/ is then a 500 (ENOTDIR)
    const r = cgiWithBusyLog([process.execPath, BIN, '--dir', tickets, 'cgi'],
      { ...PRIVATE_ENV, XDG_CACHE_HOME: tempDir(), REQUEST_METHOD: 'GET', SCRIPT_NAME: '/tickets', REQUEST_URI: '/tickets/archived/', REMOTE_USER: 'alice', AUTH_TYPE: 'Basic' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^Status: 500 /);
    expect(r.stderr).toMatch(/^ticket-mail: viewer: ENOTDIR: not a directory/);
  }, 30_000);
});
