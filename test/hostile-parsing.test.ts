// Bounded memory and time in what follows a filed message: summaries of spooled messages, MIME
// and address floods, and `show` over them. Run through the built file as an MTA runs it.
import { describe, expect, it } from 'vitest';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import PostalMime from 'postal-mime';
import { addresses, mimeOutline } from '../ticket.ts';
import { deliver, FAKE_SENDMAIL, sentMail, stored, tempDir, type Sent } from './harness.ts';

const MiB = 1 << 20;
const ADMINS = ['max@tickets.example', 'moritz@tickets.example'];
/** The memory bound: the old full parse needed gigabytes for these messages. */
const HEAP_CAP = { NODE_OPTIONS: '--max-old-space-size=128' };

/** A tickets folder with admins and a fake sendmail recording what is sent. */
function setup() {
  const dir = tempDir();
  const tickets = join(dir, 't');
  const outbox = join(dir, 'sent');
  mkdirSync(outbox);
  const settings = ['--dir', tickets, '--domain', 'tickets.example', '--sendmail', FAKE_SENDMAIL, ...ADMINS.flatMap((a) => ['--admin', a])];
  // Time is bounded by the test's timeout (a hang fails it); how fast lives in npm run bench,
  // as a ratio against a plain message of the same size ("floods").
  const timed = (args: string[], message: string | Buffer, env = {}) => deliver([...args, ...settings], message, { FAKE_SENDMAIL_DIR: outbox, ...env });
  return {
    tickets,
    send: (message: string | Buffer, env = {}, envelope = ['--recipient', 'submit@tickets.example', '--sender', 'alice@customer.example']) =>
      timed(envelope, message, env),
    cli: (args: string[], env = {}) => timed(args, '', env),
    sent: () => sentMail(outbox),
    ticketNames: () => readdirSync(tickets).filter((n) => /^\d+$/.test(n)),
  };
}

const HEAD = 'From: Alice <alice@customer.example>\nTo: submit@tickets.example\nSubject: big one\nMessage-ID: <big@customer.example>\nMIME-Version: 1.0\n';
const base64Lines = (bytes: Buffer) => bytes.toString('base64').replace(/.{76}/g, '$&\n');
const pattern = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) % 251));

/** A multipart message with a text part and attachments of the given names, encodings and sizes. */
function withAttachments(files: Array<[name: string, encoding: 'base64' | 'quoted-printable' | '7bit', size: number]>, eol = '\n'): Buffer {
  const parts = files.map(([name, encoding, size], i) => {
    const body = encoding === 'base64' ? base64Lines(pattern(size, i))
      : encoding === 'quoted-printable' ? `${'=E2=82=AC'.repeat(size / 3).replace(/.{72}/g, '$&=\n')}=` // euro signs, 3 bytes each; soft line ends
        : `${'x'.repeat(99)}\n`.repeat(size / 100).slice(0, -1); // lines of 99 and their newlines (the last one's is the boundary's)
    return `--b0\nContent-Type: application/octet-stream; name="${name}"\nContent-Disposition: attachment; filename="${name}"\n` +
      `Content-Transfer-Encoding: ${encoding}\n\n${body}\n`;
  });
  const text = `${HEAD}Content-Type: multipart/mixed; boundary=b0\n\n--b0\nContent-Type: text/plain; charset=utf-8\n\nSee the files.\n${parts.join('')}--b0--\n`;
  return Buffer.from(eol === '\n' ? text : text.replace(/\n/g, eol));
}

/** The notifications' attachment lines, one list per notification sent. */
const listed = (sent: Sent[]) => sent.filter((s) => s.headers.get('auto-submitted')?.[0] === 'auto-generated')
  .map((s) => /Attachments:\n([\s\S]*?)\n\n/.exec(s.text)?.[1]?.split('\n').map((l) => l.trim()) ?? []);

describe('notifications of messages held partly in a spool file', () => {
  it.each([
    ['three base64 files around the 1 MiB edge', [['a.bin', 'base64', 700_000], ['b.bin', 'base64', 900_000], ['c.bin', 'base64', 600_000]], '\n'],
    ['three encodings, CRLF line ends, 4 MB', [['a.bin', 'base64', 1_500_000], ['b.txt', 'quoted-printable', 600_000], ['c.log', '7bit', 1_000_000]], '\r\n'],
    ['five files over 5 MB', [1, 2, 3, 4, 5].map((i) => [`file-${i}.dat`, 'base64', 750_000 + i * 1000]), '\n'],
  ] as const)('lists every attachment by name and exact size: %s', (_, files, eol) => {
    const m = setup();
    const message = withAttachments(files as never, eol);
    expect(message.length).toBeGreaterThan(2 * MiB);
    const run = m.send(message);
    expect(run).toMatchObject({ status: 0, stderr: '' });
    expect(stored(join(m.tickets, '1'))[0]!.equals(message)).toBe(true);
    const lines = files.map(([name, , size]) => `${name} (${size} bytes)`);
    expect(listed(m.sent())).toEqual([lines, lines]);
  }, 30_000);
});

/** Hostile shapes of about `size` bytes that cost the full MIME parser gigabytes or minutes. */
const FLOOD: Record<string, (size: number) => string> = {
  'empty lines': (size) => `${HEAD}\n${'\n'.repeat(size)}`,
  'CRLF empty lines in an HTML part': (size) => `${HEAD}Content-Type: text/html\n\n${'<br>\r\n\r\n'.repeat(size / 8)}`,
  'tiny MIME parts': (size) => `${HEAD}Content-Type: multipart/mixed; boundary=b\n\n${'--b\n\nx\n'.repeat(size / 7)}--b--\n`,
  'base64 paddings': (size) => `${HEAD}Content-Type: application/pdf; name=x.pdf\nContent-Transfer-Encoding: base64\n\n${'QQ=\n'.repeat(size / 4)}`,
};

describe('MIME floods of 10 MiB, with admins to notify', () => {
  // name -> size: two of just under 10 MiB (the old code summarized up to 10 MiB), two smaller, just as far beyond its reach
  const FLOODS = { 'empty lines': 10 * MiB - 4096, 'tiny MIME parts': 10 * MiB - 4096, 'CRLF empty lines in an HTML part': 4 * MiB, 'base64 paddings': 4 * MiB };
  it.each(Object.entries(FLOODS))('%s: filed byte for byte, one ticket, notified, exit 0 under a 128 MB heap, in bounded time', (name, size) => {
    const m = setup();
    const message = Buffer.from(FLOOD[name]!(size));
    const run = m.send(message, HEAP_CAP);
    expect(run).toMatchObject({ status: 0, stderr: '' });
    expect(m.ticketNames()).toEqual(['1']);
    expect(stored(join(m.tickets, '1'))[0]!.equals(message)).toBe(true);
    expect(m.sent().map((s) => s.recipients[0])).toEqual(['alice@customer.example', ...ADMINS]);
    // `show` decodes each message as the notification did: bounded too.
    const shown = m.cli(['show', '1', '--json'], HEAP_CAP);
    expect(shown.status).toBe(0);
    expect(JSON.parse(shown.stdout).messages).toHaveLength(1);
  }, 60_000);
});

describe('address floods', () => {
  const groups = 'g:'.repeat(500_000); // ~1 MB of nested groups: 4 s for each parse of it before
  it.each([
    ['From of nested groups', `From: ${groups}<alice@customer.example>\nTo: submit@tickets.example`],
    ['Reply-To of nested groups', `From: Alice <alice@customer.example>\nReply-To: ${groups}\nTo: submit@tickets.example`],
    ['To and Cc of nested groups', `From: Alice <alice@customer.example>\nTo: submit@tickets.example, ${groups}\nCc: ${groups}`],
  ])('a %s: filed, notified, exit 0 within a bound, and so is `show`', (_, fields) => {
    const m = setup();
    const message = `${fields}\nSubject: floods\nMessage-ID: <g@customer.example>\n\nHello.\n`;
    const run = m.send(message, {}, ['--sender', 'alice@customer.example']); // our address comes from the headers
    expect(run).toMatchObject({ status: 0, stderr: '' });
    expect(stored(join(m.tickets, '1'))[0]!.toString()).toBe(message);
    expect(m.sent().filter((s) => ADMINS.includes(s.recipients[0]!))).toHaveLength(2);
    const shown = m.cli(['show', '1']);
    expect(shown.status).toBe(0);
  }, 60_000);

  it('finds our address among 1,000 recipients in the headers when the MTA names none', () => {
    const m = setup();
    const others = Array.from({ length: 999 }, (_, i) => `"Customer ${i}" <customer${i}@customer.example>`).join(', ');
    const message = `From: Alice <alice@customer.example>\nTo: ${others},\n submit@tickets.example\nSubject: many\n\nHello.\n`;
    const run = deliver(['--dir', m.tickets, '--domain', 'tickets.example', '--sendmail', FAKE_SENDMAIL, '--sender', 'alice@customer.example'], message);
    expect(run).toMatchObject({ status: 0, stderr: '' });
    expect(m.ticketNames()).toEqual(['1']);
  });
});

describe('the bounds, unit by unit', () => {
  it('parses an address field up to 64 KiB, and past it only the whole addresses before the last comma', () => {
    const list = Array.from({ length: 1000 }, (_, i) => `"N ${i}" <u${i}@example.com>`);
    expect(addresses(list.join(', '))).toHaveLength(1000);
    const long = `${'a@example.com, '.repeat(5000)}bob@example.com`; // ~75 KB: the bound falls inside the list
    const found = addresses(long);
    expect(found.length).toBeGreaterThan(4000);
    expect(found.length).toBeLessThan(5000);
    expect(new Set(found)).toEqual(new Set(['a@example.com'])); // never a piece of an address cut by the bound
    const cut = `${'x'.repeat(65_520)}, bob@example.com.evil`; // the bound cuts the address: not taken at all (nor bob@example.co)
    expect(addresses(cut)).toEqual([]);
  });

  /** Normal messages: the outline names and sizes every attachment exactly as the full parser does. */
  const part = (headers: string[], body: string) => `--XX\n${headers.join('\n')}\n\n${body}\n`;
  const cases: Record<string, string> = {
    'mixed, RFC 2231 and 2047 names, a comment': `Content-Type: multipart/mixed; boundary="XX"\n\npreamble\n${
      part(['Content-Type: text/plain'], 'Hello.')}${
      part(['Content-Type: application/pdf; name="report.pdf"', 'Content-Transfer-Encoding: base64'], base64Lines(pattern(5000, 1)))}${
      part(['Content-Type: application/octet-stream', "Content-Disposition: attachment;\n filename*=UTF-8''%E2%82%AC%20rates.txt",
        'Content-Transfer-Encoding: quoted-printable'], 'caf=C3=A9 =\nand=20more')}${
      part(['Content-Type: text/csv', 'Content-Disposition: attachment; filename="=?UTF-8?B?w6TDtsO8LmNzdg==?="'], 'a,b\n1,2')}${
      part(['Content-Type: image/png', 'Content-Disposition: inline; filename*0="very-long-"; filename*1="name.png"',
        'Content-Transfer-Encoding: base64'], base64Lines(pattern(1234, 3)))}${
      part(['Content-Type: application/x-thing; name=Invoice(1).pdf (a comment)'], 'raw\n\nbytes')}--XX--\nepilogue\n`,
    'a forwarded message with its own attachment': `Content-Type: multipart/mixed; boundary=XX\n\n${
      part(['Content-Type: message/rfc822'], `Subject: inner\nContent-Type: multipart/mixed; boundary=in\n\n--in\n\ninner text\n--in\n` +
        `Content-Type: application/zip; name=in.zip\nContent-Transfer-Encoding: base64\n\n${base64Lines(pattern(3001, 2))}\n--in--`)}--XX--\n`,
    'a single-part attachment, padding inside': `Content-Type: application/pdf; name=only.pdf\nContent-Transfer-Encoding: base64\n\nQQ\nQ=\nQQQ==\nQ${base64Lines(pattern(77, 5))}\n`,
  };
  it.each(Object.keys(cases))('outlines %s as postal-mime parses it, LF or CRLF, in any chunking', async (name) => {
    for (const eol of ['\n', '\r\n']) {
      const raw = Buffer.from(`From: a@b.example\nMIME-Version: 1.0\n${cases[name]}`.replace(/\n/g, eol));
      const full = await PostalMime.parse(raw, { attachmentEncoding: 'arraybuffer' });
      const expected = full.attachments.map((a) => ({ name: a.filename ?? a.mimeType, size: (a.content as ArrayBuffer).byteLength, type: a.mimeType }));
      expect(expected.length).toBeGreaterThan(0);
      for (const size of [7, 97, raw.length]) {
        const chunks = Array.from({ length: Math.ceil(raw.length / size) }, (_, i) => raw.subarray(i * size, (i + 1) * size));
        expect(mimeOutline(chunks).attachments.map(({ name, size, type }) => ({ name, size, type }))).toEqual(expected);
      }
    }
  });
  it('keeps at most 100 attachments by name and the text parts\' first 128 KiB', () => {
    const many = `From: a@b.example\nContent-Type: multipart/mixed; boundary=b\n\n${'--b\nContent-Type: image/gif\n\nx\n'.repeat(150)}--b--\n`;
    expect(mimeOutline([Buffer.from(many)])).toMatchObject({ unlisted: 50, cut: false });
    const long = mimeOutline([Buffer.from(`From: a@b.example\n\n${'a line of text\n'.repeat(20_000)}`)]);
    expect(long.cut).toBe(true);
    expect(long.texts[0]!.bytes.length).toBeLessThan(128 * 1024);
  });
});

describe('addresses are what the field says', () => {
  it('takes no address the parser would make by dropping control characters, none with bidi controls, none that is an encoded word', () => {
    expect(addresses('Bob <a\x1bb@x.example>, c\u0085d@x.example, ok@x.example')).toEqual(['ok@x.example']);
    expect(addresses('<moc.live\u202e@x.example>, <a\u2066b@x.example>')).toEqual([]);
    expect(addresses('=?UTF-8?B?Ym9zc0Bjb3JwLmV4YW1wbGU=?=@evil.example, "Name" <n@x.example>')).toEqual(['n@x.example']);
    expect(addresses('łukasz@example.pl, 用户@example.cn')).toEqual(['łukasz@example.pl', '用户@example.cn']);
  });
});
