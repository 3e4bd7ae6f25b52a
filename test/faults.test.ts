// Faults and hostile input: deliveries killed at random moments, and messages built to hurt.
import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, deliver, FAKE_SENDMAIL, mail, pool, PRIVATE_ENV, pythonCounts, sentMail, stored, tempDir, type Run } from './harness.ts';

const to = (dir: string, recipient: string, more: string[] = []) =>
  ['--dir', dir, '--domain', 'tickets.example', '--recipient', recipient, '--sender', 'a@customer.example', ...more];

/** Runs a delivery and kills it with SIGKILL after `afterMs` (if it is still running). */
function deliverAndKill(args: string[], input: string, afterMs: number): Promise<Run & { killed: boolean }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...PRIVATE_ENV } });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    child.stdin.on('error', () => {});
    child.stdin.end(input);
    const timer = setTimeout(() => child.kill('SIGKILL'), afterMs);
    child.on('close', (status, signal) => { clearTimeout(timer); done({ status, stderr, stdout: '', killed: signal === 'SIGKILL' }); });
  });
}

describe('deliveries killed at random moments', () => {
  it('leaves every message wholly present or absent, and redelivery files each exactly once', async () => {
    const dir = tempDir();
    expect(deliver(to(dir, 'submit@tickets.example'), mail({ id: 'first@x' })).status).toBe(0);
    const messages = Array.from({ length: 500 }, (_, i) => mail({ id: `kill-${i}@x`, body: `message ${i}\nFrom here ${i}\n`.repeat(30 + (i % 50)) }));
    // Every third delivery is killed somewhere between start-up and well past its append.
    const runs = await pool(messages, 50, (m, i) => deliverAndKill(to(dir, 'ticket-1@tickets.example', ['--lock-timeout', '300']), m,
      i % 3 === 0 ? 20 + Math.floor(Math.random() * 400) : 600_000));
    const killed = runs.flatMap((r, i) => (r.killed ? [i] : []));
    expect(killed.length).toBeGreaterThan(20);
    expect(runs.filter((r) => !r.killed && r.status !== 0)).toEqual([]);

    // What a reader honouring the lock sees: if the last holder died mid-append, its lock says
    // where its append began, and everything before that is whole.
    const path = join(dir, '1');
    let bytes = readFileSync(path);
    if (existsSync(`${path}.lock`)) {
      const [, , , step, , offset] = readFileSync(`${path}.lock`, 'latin1').trim().split(' ');
      if (step === 'append') bytes = bytes.subarray(0, Number(offset));
    }
    const sent = new Set([mail({ id: 'first@x' }), ...messages]);
    const whole = (await import('../ticket.ts')).readMbox(bytes).map((r) => r.message.toString());
    for (const m of whole) expect(sent.has(m)).toBe(true);
    expect(new Set(whole).size).toBe(whole.length);

    // The MTA retries the killed ones.
    const retried = await pool(killed, 20, (i) => deliverAndKill(to(dir, 'ticket-1@tickets.example', ['--lock-timeout', '300']), messages[i]!, 600_000));
    expect(retried.filter((r) => r.status !== 0)).toEqual([]);
    const final = stored(path).map(String);
    expect(final).toHaveLength(501);
    expect(new Set(final)).toEqual(sent);
    expect(pythonCounts([path])).toEqual([501]);
    expect(existsSync(`${path}.lock`)).toBe(false);
  }, 600_000);
});

describe('hostile input', () => {
  /** Delivers under /usr/bin/time and returns the exit status and peak RSS in MiB. */
  const measured = (args: string[], inputPath: string, env: NodeJS.ProcessEnv = {}) => {
    const r = spawnSync('sh', ['-c', `/usr/bin/time -f '%M' "$0" "$@" < "${inputPath}"`, process.execPath, BIN, ...args],
      { encoding: 'utf8', timeout: 120_000, env: { ...PRIVATE_ENV, ...env } });
    return { status: r.status, stderr: r.stderr, rssMiB: Number(r.stderr.trim().split('\n').at(-1)) / 1024 };
  };
  const cases: Array<[string, () => Buffer]> = [
    ['a 10 MB header line', () => Buffer.from(`X-Long: ${'a'.repeat(10 * 1024 * 1024)}\nSubject: long\n\nbody\n`)],
    ['100,000 headers', () => Buffer.from(`${Array.from({ length: 100_000 }, (_, i) => `X-H-${i}: value ${i}`).join('\n')}\nSubject: many\n\nbody\n`)],
    ['NUL bytes', () => Buffer.from('Subject: nul\n\nbefore\0after\0\0\nFrom \0\n')],
    ['invalid UTF-8', () => Buffer.concat([Buffer.from('Subject: '), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from('\nFrom: \xe9t\xe9 <a@b>\n\n'), Buffer.from([0xed, 0xa0, 0x80, 0x0a])])],
    ['bare CR line ends', () => Buffer.from('Subject: cr\rFrom: x@y\r\rFrom the body\rmore')],
    ['no header/body separator', () => Buffer.from('Subject: only headers\nX-Other: yes')],
    // Each stalled a regular expression for seconds to hours (every split of a run of spaces
    // tried, every "<" scanning on to the end), in routing or in the notification's text.
    ['"[issue" and a megabyte of spaces in the subject', () => Buffer.from(`Subject: [issue${' '.repeat(1 << 20)}x\n\nbody\n`)],
    ['HTML of a million "<"', () => Buffer.from(`Subject: html\nContent-Type: text/html\n\n<p>${'<'.repeat(1 << 20)}\n`)],
    ['HTML of "<script>" never closed', () => Buffer.from(`Subject: html\nContent-Type: text/html\n\n<p>hi</p>${'<script>'.repeat(1 << 17)}\n`)],
    ['HTML with a megabyte of spaces', () => Buffer.from(`Subject: html\nContent-Type: text/html\n\n<p>a${' '.repeat(1 << 20)}b</p>\n`)],
  ];
  it.each(cases)('files %s byte for byte, in bounded memory, and notifies', (_, make) => {
    const dir = tempDir();
    const outgoing = tempDir();
    const input = make();
    const path = join(tempDir(), 'input');
    writeFileSync(path, input);
    const replies = ['--admin', 'max@tickets.example', '--sendmail', FAKE_SENDMAIL];
    const r = measured(to(dir, 'submit@tickets.example', replies), path, { FAKE_SENDMAIL_DIR: outgoing });
    expect(r.status, r.stderr).toBe(0);
    expect(sentMail(outgoing).map((m) => m.recipients[0])).toContain('max@tickets.example');
    const got = stored(join(dir, '1'));
    expect(got).toHaveLength(1);
    expect(got[0]!.equals(input)).toBe(true);
    expect(r.rssMiB).toBeLessThan(200);
  });
  it('refuses empty input with 65 and writes nothing', () => {
    const dir = tempDir();
    const r = deliver(to(dir, 'submit@tickets.example'), '');
    expect(r).toMatchObject({ status: 65, stderr: 'ticket-mail: empty message\n' });
    expect(readdirSync(dir).filter((n) => /^\d+$/.test(n))).toEqual([]);
  });
  it('cuts an endless stream at --max-size without holding it in memory', () => {
    const dir = tempDir();
    const r = spawnSync('sh', ['-c', `(printf 'Subject: endless\\n\\n'; yes 'From an endless stream') | /usr/bin/time -f '%M' "$0" "$@"`,
      process.execPath, BIN, ...to(dir, 'submit@tickets.example', ['--max-size', '200M'])], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status).toBe(65);
    expect(r.stderr).toMatch(/message larger than the 209715200-byte limit/);
    expect(Number(r.stderr.trim().split('\n').at(-1)) / 1024).toBeLessThan(100);
    expect(existsSync(join(dir, '1'))).toBe(false);
    expect(readdirSync(join(dir, '.ticket-mail')).filter((n) => n.startsWith('spool'))).toEqual([]);
  }, 120_000);
});
