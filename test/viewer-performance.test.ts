// What the viewer's speed-ups (bench/bench.mjs measures them; doc/performance.md says why) keep
// the same. The CGI program starts as a delivery does, for the web server runs it for every page
// a reader opens: it parses its command line without cac, and it saves V8's code cache of the
// modules it compiled (the core, as a cache of its own; the viewer; the MIME parser when a part
// needs it) for the next page, never the deliveries' cache of the core. The readers' fast paths for large tickets (a record
// with nothing to un-quote taken as read, base64 lines counted in native code) give what the
// slow paths gave.
import { describe, expect, it, onTestFinished } from 'vitest';
import { spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import PostalMime from 'postal-mime';
import { mboxRecord, mboxRecordAt, mboxStarts, mimeOutline, plainCgi } from '../ticket.ts';
import { BIN, PRIVATE_ENV, deliver, tempDir } from './harness.ts';

describe('the CGI program starts without cac', () => {
  it('takes the settings and the command cgi, before or after them', () => {
    expect(plainCgi(['--dir', '/t', '--domain=x.example', 'cgi'])).toEqual({ dir: ['/t'], domain: ['x.example'] });
    expect(plainCgi(['cgi', '--config', '/etc/ticket-mail/config.json'])).toEqual({ config: ['/etc/ticket-mail/config.json'] });
  });
  it.each([
    [['cgi', '--help']], [['--dir', 'cgi']], [['--dir', '/t', 'cgi', 'extra']], [['cgi', 'cgi']], [['list']], [[]], [['--dir', '--domain', 'cgi']],
    [['--', 'cgi']], [['cgi', '--sender', 'a@b.example']], [['--bogus', 'x', 'cgi']],
  ])('leaves %j to cac, which explains it or runs another command', (args) => {
    expect(plainCgi(args)).toBeUndefined();
  });
});

describe('the CGI program\'s code cache', () => {
  /** The modules whose code cache `cache` holds, each with its file's mtime. */
  const cached = (cache: string) => Object.fromEntries(readdirSync(join(cache, 'ticket-mail')).map((file) => [
    file.replace(/^[0-9a-f]{16}-/, '').replace(`-${process.version}-${process.arch}.v8`, ''), statSync(join(cache, 'ticket-mail', file)).mtimeMs]));

  it('a page saves its own code cache of the core and the viewer\'s, never the deliveries\' cache of the core; cac never loads; the MIME parser only for a part it must read; the next page reads them', () => {
    const dir = tempDir();
    const settings = ['--dir', dir, '--domain', 'tickets.example'];
    const submit = (message: string) => expect(deliver([...settings, '--recipient', 'submit@tickets.example', '--sender', 'alice@customer.example'],
      message, { XDG_CACHE_HOME: tempDir() })).toMatchObject({ status: 0, stderr: '' });
    submit('From: Alice <alice@customer.example>\nSubject: the printer\nMessage-ID: <startup@customer.example>\n\nIt prints blank pages.\n');
    // A charset in RFC 2231's form: postal-mime's parser reads this part (partText leaves it).
    submit('From: Alice <alice@customer.example>\nSubject: again\nContent-Type: text/plain; charset*=utf-8\'\'\nContent-Transfer-Encoding: 8bit\n\nStill blank, caf\u00e9.\n');
    const cache = tempDir(); // the CGI's own, empty: what it saves is what it compiled
    const page = (n: number) => deliver([...settings, 'cgi'], '',
      { XDG_CACHE_HOME: cache, REQUEST_METHOD: 'GET', SCRIPT_NAME: '/tickets', PATH_INFO: `/${n}/`, REQUEST_URI: `/tickets/${n}/`, REMOTE_USER: 'alice', AUTH_TYPE: 'Basic' });
    const first = page(1);
    expect(first).toMatchObject({ status: 0, stderr: '' });
    expect(first.stdout).toMatch(/^Status: 200 OK\r\n/);
    expect(first.stdout).toContain('It prints blank pages.'); // decoded without the MIME parser
    expect(first.stdout).toContain('mailto:ticket-1@tickets.example'); // the settings were read
    const saved = cached(cache);
    expect(Object.keys(saved)).toContain('viewer');
    expect(saved).not.toHaveProperty('postal-mime');
    expect(Object.keys(saved)).toContain('core-cgi');
    expect(saved).not.toHaveProperty('core'); // a delivery's to make, of the functions a delivery runs
    expect(saved).not.toHaveProperty('cac');
    const second = page(1);
    expect(second.stdout).toBe(first.stdout);
    expect(cached(cache)).toEqual(saved); // read, not made again
    const other = page(2);
    expect(other.stdout).toContain('Still blank, café.'); // the MIME parser decoded this one
    const withParser = cached(cache);
    expect(Object.keys(withParser)).toContain('postal-mime');
    expect(withParser.viewer).toBe(saved.viewer);
    expect(page(2).stdout).toBe(other.stdout);
    expect(cached(cache)).toEqual(withParser);
  });
});

// The web server ends a CGI response when the program's stdout and stderr close. Node closes
// them when it has torn its heap down, ~11 ms after the page was written (doc/performance.md):
// runCgi closes both as soon as the whole reply is out, then exits.
describe('the CGI program\'s end', () => {
  it('the reply is whole and both pipes close while the process is still exiting', async () => {
    const dir = tempDir();
    const settings = ['--dir', dir, '--domain', 'tickets.example'];
    expect(deliver([...settings, '--recipient', 'submit@tickets.example', '--sender', 'alice@customer.example'],
      'From: Alice <alice@customer.example>\nSubject: the printer\nMessage-ID: <end@customer.example>\n\nIt prints blank pages.\n')).toMatchObject({ status: 0 });
    // A preload whose exit handler holds the process until the test lets it go: a program that
    // kept its pipes open to the end would close them only after that, and this test would time out.
    const work = tempDir();
    const hold = join(work, 'hold.cjs');
    const release = join(work, 'release');
    writeFileSync(hold, `process.on('exit', () => { const cell = new Int32Array(new SharedArrayBuffer(4));
  while (!require('node:fs').existsSync(${JSON.stringify(release)})) Atomics.wait(cell, 0, 0, 20); });\n`);
    const child = spawn(process.execPath, [BIN, ...settings, 'cgi'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...PRIVATE_ENV, NODE_OPTIONS: `--require ${hold}`,
      XDG_CACHE_HOME: tempDir(), REQUEST_METHOD: 'GET', SCRIPT_NAME: '/tickets', PATH_INFO: '/1/', REQUEST_URI: '/tickets/1/', REMOTE_USER: 'alice', AUTH_TYPE: 'Basic' } });
    onTestFinished(() => { child.kill('SIGKILL'); }); // held, should the test fail
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    const text = (stream: NodeJS.ReadableStream) => new Promise<string>((done) => { let out = ''; stream.on('data', (d) => { out += d; }).on('end', () => done(out)); });
    const [stdout, stderr] = await Promise.all([text(child.stdout!), text(child.stderr!)]);
    expect(child.exitCode).toBe(null); // both ended, the process has not
    expect(stdout).toMatch(/^Status: 200 OK\r\n/);
    expect(stdout).toContain('It prints blank pages.');
    expect(stdout.endsWith('</html>\n')).toBe(true);
    expect(stderr).toBe('');
    writeFileSync(release, '');
    expect(await exited).toBe(0);
    expect(readFileSync(join(dir, '1'), 'latin1')).toContain('It prints blank pages.'); // read, never written
  }, 30_000);
});

describe('the readers\' fast paths', () => {
  it('a record is un-quoted exactly when it holds quoted From lines, within its first MiB and past it', () => {
    const at = new Date(Date.UTC(2026, 2, 2));
    const head = 'From: Alice <alice@customer.example>\nSubject: s\n\n';
    const messages = [
      `${head}Nothing to un-quote; >From only inside a line, and > From with a space.\n`,
      `${head}From the start\n>From quoted once\n>>From twice\nthe end\n`,
      `${head}${'x'.repeat(70)}\n`.repeat(16_000) + 'From past the first MiB\n', // 1.1 MiB: the rest stays in the file
      `${head}From early\n${`${'y'.repeat(70)}\n`.repeat(16_000)}>From late\n`,
    ].map((text) => Buffer.from(text));
    const file = join(tempDir(), 'mbox');
    writeFileSync(file, Buffer.concat(messages.map((m) => mboxRecord(m, 'alice@customer.example', 'ticket 1', at))));
    const fd = openSync(file, 'r');
    try {
      const size = statSync(file).size;
      const starts = mboxStarts(fd, size);
      expect(starts).toHaveLength(messages.length);
      const back = starts.map((start, i) => {
        const { message } = mboxRecordAt(fd, start, starts[i + 1] ?? size)!;
        return Buffer.concat([...message.chunks()].map((chunk) => Buffer.from(chunk)));
      });
      // The first MiB un-quoted in memory, the rest un-quoted as it is read from the file.
      for (const [i, message] of messages.entries()) expect(back[i]!.toString(), `message ${i + 1}`).toBe(message.toString());
    } finally { closeSync(fd); }
  });

  // Base64 with what postal-mime skips (spaces, tabs, "*", a line of "-" that is no boundary),
  // paddings mid-body, CRLF: each attachment's size as the full parser decodes it, in any chunking.
  const junk = (b64: string) => b64.replace(/(.{10})(.{20})/g, '$1 \t$2').replace(/.{60}/g, '$&*\n').replace(/(\n[^\n]*){40}\n/g, '$&---\n');
  const body = (seed: number, n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + seed) % 256)).toString('base64');
  it.each([['clean lines', (b: string) => b.replace(/.{76}/g, '$&\n')], ['junk among them', junk], ['paddings mid-body', (b: string) => `${b.slice(0, 4000)}==\n${b.slice(4000).replace(/.{76}/g, '$&\n')}`]])(
    'sizes base64 attachments with %s as postal-mime decodes them, LF or CRLF, in any chunking', async (_, lines) => {
      for (const eol of ['\n', '\r\n']) {
        const part = (name: string, data: string) => `--b\nContent-Type: application/octet-stream; name=${name}\nContent-Transfer-Encoding: base64\n\n${data}\n`;
        const raw = Buffer.from(`From: a@b.example\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\ntext\n${
          part('one.bin', lines(body(1, 30_000)))}${part('two.bin', lines(body(2, 777)))}--b--\n`.replace(/\n/g, eol));
        const full = await PostalMime.parse(raw, { attachmentEncoding: 'arraybuffer' });
        const expected = full.attachments.map((a) => ({ name: a.filename, size: (a.content as ArrayBuffer).byteLength, type: a.mimeType }));
        expect(expected.map((a) => a.name)).toEqual(['one.bin', 'two.bin']);
        for (const size of [7, 97, 4096, raw.length]) {
          const chunks = Array.from({ length: Math.ceil(raw.length / size) }, (_, i) => raw.subarray(i * size, (i + 1) * size));
          expect(mimeOutline(chunks).attachments.map(({ name, size, type }) => ({ name, size, type }))).toEqual(expected);
        }
      }
    });
});
