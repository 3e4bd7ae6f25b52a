// RFC 2047 words decoded by ticket.ts (decodeWords: the common charsets itself, any other through
// postal-mime) must be what postal-mime's decodeWords gives: subjects, names and attachment names
// are shown, searched, and a subject's tag routes mail. postal-mime is the oracle: on named cases,
// on random header values, and on every header field of the real-world corpus.
import { describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { decodeWords as oracle } from 'postal-mime';
import { decodeWords, headEnd, parseHead, plainRead } from '../ticket.ts';
import { corpusMessages } from './harness.ts';

// postal-mime's decodeWords, watched: the common charsets must not reach it (that is the point).
vi.mock('postal-mime', async (original) => {
  const real = await original<typeof import('postal-mime')>();
  return { ...real, decodeWords: vi.fn(real.decodeWords) };
});

const b64 = (text: string, encoding: BufferEncoding = 'utf8') => Buffer.from(text, encoding).toString('base64');

describe('decodeWords is postal-mime\'s decodeWords', () => {
  it('named cases: B and Q, each common charset, split characters, folding, junk, other charsets', () => {
    const cases: Array<[string, string]> = [
      ['plain text, no words', 'plain text, no words'],
      ['=?UTF-8?Q?Ticket_n=C2=B0123?=', 'Ticket n°123'],
      [`=?utf-8?B?${b64('Störung 42')}?=`, 'Störung 42'],
      ['=?ISO-8859-1?Q?caf=E9?= au lait', 'café au lait'],
      ['=?iso-8859-15?q?=A4uro?=', '€uro'],
      ['=?windows-1250?Q?=9Ar=E1?=', 'šrá'],
      ['=?windows-1252?Q?caf=E9_cr=E8me?=', 'café crème'],
      ['=?windows-1251?B?7/Do4uXy?=', 'привет'],
      ['=?iso-8859-2?Q?=BF=F3=B3w?=', 'żółw'],
      ['=?iso-8859-2?Q?=BFó?=', 'żĂł'], // a raw character inside a word: its UTF-8 bytes, read in the word's charset
      ['=?iso-8859-7?B?xevr5+3p6t4=?=', 'Ελληνική'],
      ['=?us-ascii?Q?plain?=', 'plain'],
      // A character split between two words: joined before decoding (Q always, B on a whole group).
      ['=?UTF-8?Q?J=C3?= =?UTF-8?Q?=B6rg?=', 'Jörg'],
      [`=?UTF-8?B?${b64('abc')}?=\r\n =?UTF-8?B?${b64('déf')}?=`, 'abcdéf'],
      ['=?UTF-8?B?w7Y=?= =?UTF-8?B?w7Y=?=', 'öö'], // padded: each alone
      ['=?UTF-8?B?4oI=?= =?UTF-8?B?rA==?=', '\ufffd\ufffd'], // a split that padding keeps apart
      ['=?UTF-8?Q?=E2=82?= =?UTF-8?Q?=AC?=', '€'],
      ['=?UTF-8?Q?=E2=82?= =?utf-8?Q?=AC?=', '\ufffd\ufffd'], // charsets compared as written
      ['=?UTF-8?Q?a?= b =?UTF-8?Q?c?=', 'a b c'], // text between words stays
      ['=?UTF-8?Q?a?=\t \n=?UTF-8?Q?b?=', 'ab'],
      ['=?UTF-8?Q?bad_=ZZ_=4?=', 'bad =ZZ =4'],
      ['=?UTF-8?Q?soft=  41?=', 'softA'],
      ['=?UTF-8?B?w7 Y=?=', 'ö'], // junk in base64 skipped
      ['=?UTF-8?B?QUJDR?=', 'ABC'], // a lone last character holds no byte
      ['=?UTF-8?B?QU=JD?=', 'A@\t'], // an '=' inside: zero bits
      ['=?UTF-8?B??=', ''],
      ['=?UTF-8*en?Q?lang?=', 'lang'],
      ['=?UTF-8?X?not a word?=', '=?UTF-8?X?not a word?='],
      ['=? UTF-8?Q?x?=', '=? UTF-8?Q?x?='],
      ['=?UTF-8?Q?unclosed', '=?UTF-8?Q?unclosed'],
      ['=?UTF-8?B?77u/Qk9N?=', 'BOM'], // TextDecoder drops a leading BOM, as postal-mime's does
      ['=?koi8-r?B?8NLJ18XU?=', 'Привет'], // other charsets: through postal-mime
      ['=?x-unknown?Q?caf=E9?=', 'café'],
      ['=?cp-850?Q?x?= and =?UTF-8?Q?=C3=A9?=', 'x and é'],
      ['=?shift_jis?B?g2WDWINn?=', 'テスト'],
    ];
    for (const [raw, text] of cases) {
      expect(decodeWords(raw), raw).toBe(text);
      expect(oracle(raw), raw).toBe(text);
    }
  });

  it('decodes the common charsets itself, and leaves any other to postal-mime', () => {
    vi.mocked(oracle).mockClear();
    for (const raw of ['=?UTF-8?Q?a?=', '=?utf-8?B?w7Y=?= x', '=?ISO-8859-1?Q?caf=E9?=', '=?windows-1251?B?7/Do4uXy?=', '=?us-ascii*en?q?x?=', 'no words']) decodeWords(raw);
    expect(oracle).not.toHaveBeenCalled();
    for (const raw of ['=?koi8-r?B?8NLJ18XU?=', '=?UTF-8?Q?a?= =?x-unknown?Q?b?=', '=?*en?Q?x?=', '=?iso-8859-12?Q?x?=']) decodeWords(raw);
    expect(oracle).toHaveBeenCalledTimes(4);
  });

  it('property: any mix of encoded words, text and folding', () => {
    const charset = fc.constantFrom('UTF-8', 'utf-8', 'utf8', 'UTF8', 'us-ascii', 'ISO-8859-1', 'iso-8859-2', 'iso-8859-5', 'iso-8859-7', 'iso-8859-9',
      'iso-8859-10', 'iso-8859-11', 'iso-8859-12', 'iso-8859-13', 'iso-8859-15', 'iso-8859-16', 'latin1', 'windows-1250', 'windows-1251', 'Windows-1252',
      'windows-1255', 'windows-1258', 'windows-1259', 'utf-8*en', 'UTF-8*', '*en', 'koi8-r', 'x-unknown', 'utf-16le', 'cp1252', 'big5');
    const bytes = fc.oneof(fc.uint8Array({ maxLength: 12 }), fc.string({ maxLength: 6 }).map((s) => Buffer.from(s)),
      fc.constantFrom(Buffer.from('é'), Buffer.from('€'), Buffer.from([0xe2, 0x82]), Buffer.from([0xac]), Buffer.from([0xef, 0xbb, 0xbf])));
    const qEncoded = (b: Uint8Array) => Array.from(b, (c) => (c > 0x20 && c < 0x7f && c !== 0x3f && c !== 0x3d && c !== 0x5f ? String.fromCharCode(c) : c === 0x20 ? '_' : `=${c.toString(16).toUpperCase().padStart(2, '0')}`)).join('');
    const junk = fc.constantFrom('', '=', '==', '=Z', '= 4', '_', ' ', '\t', '*', 'é', '=4', '=e9', '!', '\u00a0');
    const word = fc.tuple(charset, fc.constantFrom('B', 'b', 'Q', 'q'), bytes, junk, fc.boolean()).map(([cs, enc, b, extra, before]) => {
      const encoded = /b/i.test(enc) ? Buffer.from(b).toString('base64') : qEncoded(b);
      return `=?${cs}?${enc}?${before ? extra + encoded : encoded + extra}?=`;
    });
    const text = fc.oneof(fc.constantFrom(' ', '  ', '\r\n ', '\n\t', ' - ', 'Re: ', 'a', '=?', '?=', '=?x?', '\ufffd', 'é'), fc.string({ maxLength: 5 }));
    let encodedWords = 0;
    fc.assert(fc.property(fc.array(fc.oneof(word, word, text), { maxLength: 6 }), (pieces) => {
      const raw = pieces.join('');
      if (raw.includes('=?')) encodedWords++;
      expect(decodeWords(raw)).toBe(oracle(raw));
    }), { numRuns: 5000 });
    expect(encodedWords).toBeGreaterThan(3000);
  });
});

describe('the real-world corpus', () => {
  it('every header field of every message: decodeWords gives what postal-mime gives', (ctx) => {
    let encoded = 0;
    for (const { path, message } of corpusMessages(ctx)) {
      for (const [name, values] of parseHead(message.subarray(0, headEnd(message)).toString('utf8')) ?? []) {
        for (const value of values) {
          if (value.includes('=?')) encoded++;
          expect(decodeWords(value), `${path}: ${name}`).toBe(oracle(value));
        }
      }
    }
    console.log(`corpus: ${encoded} header values with encoded words`);
    expect(encoded).toBeGreaterThan(40);
  }, 120_000);
});

// Not decoding, but the same errand (a cold list, a search, made cheaper): the commands that start without cac.
describe('plainRead: list, stats and search without cac', () => {
  it('takes their plain forms, with settings anywhere, as cac would give them', () => {
    expect(plainRead(['--dir', '/t', 'list', '--waiting', '--json'])).toEqual({ command: 'list', values: { dir: ['/t'] }, options: { waiting: true, json: true }, words: [] });
    expect(plainRead(['stats', '--admin=a@x', '--admin', 'b@x'])).toEqual({ command: 'stats', values: { admin: ['a@x', 'b@x'] }, options: {}, words: [] });
    expect(plainRead(['search', 'printer', '--limit', '5', 'subject:"jam"', '--json', '--dir=/t']))
      .toEqual({ command: 'search', values: { limit: ['5'], dir: ['/t'] }, options: { limit: '5', json: true }, words: ['printer', 'subject:"jam"'] });
  });

  it('leaves to cac whatever it must explain or parse its own way', () => {
    for (const args of [['list', '--help'], ['list', '-h'], ['list', '--wating'], ['list', 'extra'], ['list', '--limit', '3'], ['stats', '--all'],
      ['search'], ['search', '--json'], ['search', '-x'], ['search', '--', '-x'], ['search', 'a', '--limit'], ['search', '--limit', '--json', 'a'],
      ['--version'], ['show', '1'], ['list', '--json=false'], ['list', '--dir']]) {
      expect(plainRead(args), args.join(' ')).toBeUndefined();
    }
  });
});
