// A text part's text, decoded by ticket.ts (partText) where the part is plain enough, must be what
// postal-mime's parser gives for it: the viewer's pages, the summaries in acknowledgements and the
// feeds show it. postal-mime is the oracle here: on random parts, on named cases, and on every
// text part of the real-world corpus (beside the project in a developer checkout only).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import PostalMime from 'postal-mime';
import { type OutlineText, mimeOutline, partText } from '../ticket.ts';
import { corpusMessages } from './harness.ts';

/** What postal-mime makes of the part, as messageText asked it before partText. */
async function oracle(part: OutlineText): Promise<string> {
  const email = await PostalMime.parse(part.bytes, { attachmentEncoding: 'arraybuffer' });
  return (part.html ? email.html : email.text) ?? '';
}

/** The text parts of a message, as the outline finds them. */
const textsOf = (message: Buffer): OutlineText[] => mimeOutline([message]).texts;
const single = (type: string, encoding: string | undefined, body: Buffer | string): OutlineText => {
  const head = `Content-Type: ${type}\n${encoding === undefined ? '' : `Content-Transfer-Encoding: ${encoding}\n`}\n`;
  const texts = textsOf(Buffer.concat([Buffer.from(head), Buffer.from(body)]));
  expect(texts).toHaveLength(1);
  return texts[0]!;
};

const LABELS = ['utf-8', 'UTF-8', ' utf-8 ', 'utf8', 'us-ascii', 'iso-8859-1', 'latin1', 'windows-1252', 'iso-8859-15', 'iso-8859-2',
  'koi8-r', 'shift_jis', 'euc-jp', 'iso-2022-jp', 'gb2312', 'gbk', 'gb18030', 'big5', 'euc-kr', 'utf-16le', 'utf-16be', 'utf-16',
  'x-user-defined', 'cp1252', 'unicode-1-1-utf-8', 'macintosh', 'ms932', 'cp-850', 'x-unknown', 'utf-7', ''];
const ENCODINGS = ['base64', 'BASE64', 'x-base64', 'quoted-printable', 'Quoted-Printable', '7bit', '8bit', 'binary', 'x-uuencode', undefined];

describe('partText is postal-mime\'s text for the parts it decodes', () => {
  it('named cases: each encoding, flowed text with and without delsp, the signature line, charsets', async () => {
    const cases: Array<[string, string | undefined, string | Buffer, string]> = [
      ['text/plain; charset=utf-8', 'quoted-printable', 'caf=C3=A9 =3D soft=\r\nbreak =ZZ bad=\n=\nend=4', 'café = softbreak =ZZ badend=4\n'],
      ['text/plain; charset="utf-8"', 'base64', 'aGVs\r\nbG8=\n  *!~\nIHdvcmxk\nQ\n', 'hello world'],
      ['text/plain; charset=utf-8; format=flowed', '8bit', 'one \ntwo\n\n-- \nsig \nlast\n', 'one two\n\n-- \nsig last\n'],
      ['text/plain; format=flowed; delsp=yes', '7bit', 'wr \nap \n stuffed\n', 'wrapstuffed\n'],
      ['TEXT/PLAIN; CHARSET=ISO-8859-1', undefined, Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0d, 0x0d, 0x0a]), 'café\n'],
      ['text/html; charset=windows-1252', '8bit', Buffer.from('<p>\xe9t\xe9</p>', 'latin1'), '<p>été</p>\n'],
      ['text/plain; charset=utf-16le', 'base64', Buffer.from('hi ü', 'utf16le').toString('base64'), 'hi ü'],
      ['text/plain; charset=utf-8', 'quoted-printable', `${'=41'.repeat(25)}\n`.repeat(1700), `${'A'.repeat(25)}\n`.repeat(1700)], // 127 KiB of escapes
    ];
    for (const [type, encoding, body, text] of cases) {
      const part = single(type, encoding, body);
      expect(partText(part), type).toBe(text);
      expect(await oracle(part), type).toBe(text);
    }
  });

  it('leaves to postal-mime what it would read another way: comments, escapes, RFC 2231, unknown labels', async () => {
    for (const type of ['text/plain; charset*=utf-8\'\'x', 'text/plain; charset="utf\\-8"', 'text/plain (note); charset=utf-8',
      'text/plain; charset=cp-850', 'text/plain; charset=x-user-defined', 'text/plain; charset=x-unknown', 'text/plain; charset = utf-8', 'text/plain; charset="utf-8"x',
      'text/plain; name="a;charset=koi8-r"', 'text/plain;\u00a0charset=utf-8',
      // Shapes that cost a backtracking pattern seconds (64 KiB of spaces before a stray ';x'): read in one pass.
      `text/plain${' '.repeat(60_000)};x`, `text/plain${';'.repeat(60_000)}x`, `text/plain${'; a= '.repeat(10_000)}`]) {
      const part = single(type, '8bit', 'text\n');
      expect(partText(part), type).toBeUndefined();
      expect(typeof await oracle(part)).toBe('string');
    }
  });

  it('property: any part, of any type line, encoding and body', async () => {
    const param = fc.tuple(fc.constantFrom('charset', 'CHARSET', 'format', 'delsp', 'name', 'charset'),
      fc.oneof(fc.constantFrom(...LABELS), fc.constantFrom('flowed', 'Flowed', 'fixed', 'yes', 'no', 'x=y')), fc.boolean(), fc.constantFrom('; ', ';', ' ; '))
      .map(([name, value, quoted, separator]) => `${separator}${name}=${quoted ? `"${value}"` : value || '""'}`);
    const type = fc.tuple(fc.constantFrom('text/plain', 'text/html', 'Text/Plain', ' text/plain', 'text/plain\t'), fc.array(param, { maxLength: 4 }),
      fc.constantFrom('', ';', ' ', ' ;', ';;', '\t', '\u00a0', ';\v', '; x', ';a=b;'))
      .map(([t, params, end]) => `${t}${params.join('')}${end}`);
    const piece = fc.oneof(
      fc.constantFrom('a', ' ', '  ', '=', '==', '=3D', '=C3=A9', '=e9', '=Z', '-- ', 'From ', '\t', '\r', '\r\r', 'é', '> quoted', 'QUJD', 'QQ', 'Q', '+/'),
      fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b).toString('latin1')),
      fc.uint8Array({ maxLength: 30 }).map((b) => Buffer.from(b).toString('base64')),
    );
    const body = fc.tuple(fc.array(fc.array(piece, { maxLength: 8 }).map((p) => p.join('')), { maxLength: 12 }), fc.constantFrom('\n', '\r\n'), fc.boolean())
      .map(([lines, eol, last]) => Buffer.from(lines.join(eol) + (last ? eol : ''), 'latin1'));
    let decoded = 0;
    await fc.assert(fc.asyncProperty(type, fc.constantFrom(...ENCODINGS), body, async (t, encoding, b) => {
      const part = single(t, encoding, b);
      const ours = partText(part);
      if (ours === undefined) return;
      decoded++;
      expect(ours).toBe(await oracle(part));
    }), { numRuns: 3000 });
    expect(decoded).toBeGreaterThan(1500); // most parts take the fast path: the property is about them
  }, 60_000); // 3,000 parses by postal-mime: 2.6-3.8 s on a loaded machine, against vitest's default 5 s
});

describe('the real-world corpus', () => {
  it('every text part of every message: partText gives what postal-mime gives, or leaves it to postal-mime', async (ctx) => {
    let parts = 0;
    let left = 0;
    for (const { path, message } of corpusMessages(ctx)) {
      for (const part of textsOf(message)) {
        parts++;
        const ours = partText(part);
        if (ours === undefined) left++;
        else expect(ours, `${path}: ${part.type}`).toBe(await oracle(part));
      }
    }
    console.log(`corpus: ${parts} text parts, ${left} left to postal-mime`);
    expect(parts).toBeGreaterThan(400);
    expect(left).toBeLessThan(parts / 10);
  }, 120_000);
});
