// Review rv1 of 2383480 (runCgi closes fds 1 and 2 and exits once the reply went out by writeSync).
// process.stderr on a pipe is libuv's: a line that meets a full pipe waits in the stream's queue.
// Before 2383480 the process lived until it was written; closeSync(2) + process.exit(0) dropped
// it, so a 500 page's "ticket-mail: viewer: ..." never reached the web server's log when the log
// pipe was busy for a moment (a piped logger or journald that other processes keep full). runCgi
// now leaves such a process to its natural exit.
import { describe, expect, it } from 'vitest';
import { rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { BIN, FAKE_SENDMAIL, PRIVATE_ENV, deliver, tempDir } from './harness.ts';

describe('cgi: the error a 500 page reports', () => {
  it('reaches stderr even when the stderr pipe is full for a moment', () => {
    const tickets = join(tempDir('tm-rv1-'), 'tickets');
    const r0 = deliver(['--dir', tickets, '--domain', 'tickets.example', '--sendmail', FAKE_SENDMAIL, '--recipient', 'submit@tickets.example', '--sender', 'alice@customer.example'],
      'From: Alice <alice@customer.example>\nSubject: hi\nMessage-ID: <rv1@customer.example>\n\nHello.\n');
    expect(r0.status, r0.stderr).toBe(0);
    rmSync(join(tickets, 'archived'), { recursive: true });
    writeFileSync(join(tickets, 'archived'), 'not a folder\n'); // /archived/ is then a 500 (ENOTDIR)
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
def logger():
    time.sleep(0.3)  # the logger catches up a moment later
    got.append(b''.join(iter(lambda: os.read(er, 1 << 16), b'')))
t = threading.Thread(target=logger); t.start()
out = b''.join(iter(lambda: os.read(r, 1 << 16), b''))
t.join()
sys.stdout.buffer.write(b'%d\\n' % child.wait() + out[:12] + b'\\n' + got[0].replace(b'.' * 512, b''))
`;
    const r = spawnSync('python3', ['-c', harness, process.execPath, BIN, '--dir', tickets, 'cgi'], { timeout: 20_000,
      env: { ...PRIVATE_ENV, XDG_CACHE_HOME: tempDir(), REQUEST_METHOD: 'GET', SCRIPT_NAME: '/tickets', REQUEST_URI: '/tickets/archived/', REMOTE_USER: 'alice', AUTH_TYPE: 'Basic' } });
    expect(r.status, String(r.stderr)).toBe(0);
    const [status, head, ...log] = r.stdout.toString().split('\n');
    expect(status).toBe('0');
    expect(head).toMatch(/^Status: 500 /);
    expect(log.join('\n')).toMatch(/^ticket-mail: viewer: ENOTDIR: not a directory/);
  }, 30_000);
});
