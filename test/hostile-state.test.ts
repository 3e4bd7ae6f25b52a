// What is stored, deduplicated and sent from the state folder, against hostile mail (issue 14):
// non-Latin-1 addresses in every record, both RCPT orders, reused Message-IDs, symlinks in the
// state folder, control characters in IDs, the reopen command, a sendmail that reads nothing.
import { describe, expect, it } from 'vitest';
import {
  closeSync, existsSync, linkSync, lstatSync, openSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import {
  decodeToken, encodeToken, Message, MessageIndex, mboxMessages, mboxRecord, messageIds, messagePrint, readMbox, recordChunks, Sha256, storedPrint,
} from '../ticket.ts';
import { deliver, FAKE_SENDMAIL, mail, sentMail, stored, tempDir } from './harness.ts';

/** A tickets folder, a fake sendmail recording into `sent`, and an Exim-style delivery. */
function setup(more: string[] = []) {
  const root = tempDir();
  const tickets = join(root, 't');
  const sent = join(root, 'sent');
  mkdirSync(sent);
  const state = join(tickets, '.ticket-mail');
  const args = (extra: string[] = []) => ['--dir', tickets, '--domain', 'tickets.example', '--sendmail', FAKE_SENDMAIL,
    '--notify', 'none', ...more, ...extra];
  /** As Exim runs the pipe: LOCAL_PART, DOMAIN and SENDER in the environment. */
  const exim = (localPart: string, sender: string, message: string | Buffer, extra: string[] = [], env = {}) =>
    deliver(args(extra), message, { LOCAL_PART: localPart, DOMAIN: 'tickets.example', SENDER: sender, FAKE_SENDMAIL_DIR: sent, ...env });
  const tool = (command: string[], input = '', extra: string[] = [], env = {}) =>
    deliver([...command, ...args(extra)], input, { FAKE_SENDMAIL_DIR: sent, ...env });
  const log = () => readFileSync(join(state, 'log'), 'utf8').split('\n').filter(Boolean).map((l) => l.split('\t'));
  const outbox = () => (existsSync(join(state, 'outbox')) ? readMbox(readFileSync(join(state, 'outbox'))) : []);
  const ticketNames = () => readdirSync(tickets).filter((n) => /^\d+$/.test(n)).sort();
  return { root, tickets, state, sent, exim, tool, log, outbox, ticketNames, mails: () => sentMail(sent) };
}

const NO_SENDMAIL = ['--sendmail', '/nonexistent/sendmail'];

/** A local part of CJK characters whose low bytes spell `text` (what Buffer.from(s, 'latin1') keeps). */
const lowBytes = (text: string) => [...text].map((c) => String.fromCharCode(0x4e00 | c.charCodeAt(0))).join('');

describe('addresses are stored losslessly', () => {
  const forged = `${lowBytes('\n\nFrom x\nX-Ticket-Mail: outbox ack v@evil.example\n')}@customer.example`;
  const senders = ['łukasz@example.pl', '用户@example.cn', forged, 'a%41b@example.org'];

  it.each(senders)('keeps the acknowledgement for %j in one outbox record, and flush sends it to exactly that address', (address) => {
    const s = setup();
    const r = s.exim('submit', address, mail({ from: `Someone <${address}>` }), NO_SENDMAIL);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/^ticket-mail: 1 message\(s\) kept in the outbox .*\n$/);
    const records = s.outbox();
    expect(records).toHaveLength(1);
    expect(records[0]!.note).toMatch(/^outbox ack [\x21-\x7e]+$/);
    expect(decodeToken(records[0]!.note.split(' ')[2]!)).toBe(address);
    // No line of the outbox but the record's own two starts a record or a header of ours.
    const lines = readFileSync(join(s.state, 'outbox'), 'latin1').split('\n');
    expect(lines.filter((l) => l.startsWith('From ') || l.startsWith('X-Ticket-Mail:'))).toHaveLength(2);

    const flush = s.tool(['flush']);
    expect(flush).toMatchObject({ status: 0, stdout: 'sent 1, kept 0\n' });
    const sent = s.mails();
    expect(sent.map((m) => m.args)).toEqual([['-oi', '-f', '<>', '--', address]]); // UTF-8 argv, nothing else
    expect(sent[0]!.text).toBe(records[0]!.message.toString());
  });

  it('writes the envelope sender into the From_ line and the audit log losslessly, one line per delivery', () => {
    const s = setup();
    const ids = ['<a\tb@x>', '<plain@x>', '<naïve\u0085@x>'];
    for (const [i, sender] of senders.entries()) {
      const id = ids[i % ids.length]!;
      expect(s.exim('submit', sender, mail({ id: null, headers: [`Message-ID: ${id}`], subject: `q${i}` })).status).toBe(0);
    }
    const log = s.log();
    expect(log).toHaveLength(senders.length);
    for (const [i, line] of log.entries()) {
      expect(line).toHaveLength(8);
      expect(line.join('\t')).toMatch(/^[\x21-\x7e\t]+$/);
      expect(decodeToken(line[1]!)).toBe(ids[i % ids.length]);
      expect(decodeToken(line[2]!)).toBe(senders[i]);
      const firstLine = readFileSync(join(s.tickets, String(i + 1)), 'latin1').split('\n')[0]!;
      expect(firstLine).toMatch(/^From [\x21-\x7e]+ \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$/);
      expect(decodeToken(firstLine.split(' ')[1]!)).toBe(senders[i]);
    }
  });

  it('lets no note with a line break or a byte outside ASCII into a record', () => {
    const record = (note: string) => [...recordChunks(Message.of(Buffer.from('Subject: x\n\nhi\n')), '', note, new Date())];
    for (const note of ['outbox ack a@x\nFrom evil', 'outbox ack a@x\r', 'outbox ack łukasz@x', 'outbox ack 用户@x', 'x\u0085']) {
      expect(() => record(note)).toThrow(/printable ASCII/);
    }
    expect(record(`outbox ack ${encodeToken('用户@x')}`)).toHaveLength(3);
    for (const text of ['łukasz@example.pl', '用户 @x\n%41', forged, '\u0000\u001b[2J']) expect(decodeToken(encodeToken(text))).toBe(text);
  });
});

describe('one mail lands in one ticket whatever the RCPT order', () => {
  const start = () => {
    const s = setup();
    expect(s.exim('submit', 'alice@customer.example', mail({ subject: 'first' })).status).toBe(0);
    expect(s.exim('submit', 'bob@customer.example', mail({ from: 'bob@customer.example', subject: 'second' })).status).toBe(0);
    return s;
  };
  const both = (cc: string) => mail({ from: 'carol@customer.example', id: 'both@customer.example', subject: 'also this',
    to: 'Support <submit@tickets.example>', headers: [`Cc: ${cc}`] });

  it.each([['submit first', ['submit', 'ticket-1']], ['ticket-1 first', ['ticket-1', 'submit']]])('To: submit@, Cc: ticket-1@, %s', (_, order) => {
    const s = start();
    const acks = s.mails().length;
    for (const localPart of order) expect(s.exim(localPart, 'carol@customer.example', both('ticket-1@tickets.example'))).toMatchObject({ status: 0, stderr: '' });
    expect(s.ticketNames()).toEqual(['1', '2']);
    expect(stored(join(s.tickets, '1')).map(String)).toEqual([expect.any(String), both('ticket-1@tickets.example')]);
    expect(s.log().slice(-2).map((l) => [l[4], l[6]])).toEqual(order[0] === 'submit'
      ? [['append/header-address', 'appended'], ['append/address', 'duplicate']]
      : [['append/address', 'appended'], ['append/header-address', 'duplicate']]);
    expect(s.mails()).toHaveLength(acks); // no acknowledgement of a second ticket
  });

  it.each([['submit first', ['submit', 'ticket-2', 'ticket-1']], ['submit last', ['ticket-2', 'ticket-1', 'submit']]])(
    'To: submit@, Cc: ticket-2@ and ticket-1@, %s: once in each ticket', (_, order) => {
      const s = start();
      const message = both('ticket-2@tickets.example, ticket-1@tickets.example');
      for (const localPart of order) expect(s.exim(localPart, 'carol@customer.example', message).status).toBe(0);
      expect(s.ticketNames()).toEqual(['1', '2']);
      expect(stored(join(s.tickets, '1')).map(String).filter((m) => m === message)).toHaveLength(1);
      expect(stored(join(s.tickets, '2')).map(String).filter((m) => m === message)).toHaveLength(1);
    });

  it.each([['submit first', ['submit', 'ticket-5']], ['ticket-5 first', ['ticket-5', 'submit']]])(
    'Cc of a ticket that does not exist, %s: a new ticket, and the copy for ticket-5@ in unmatched', (_, order) => {
      const s = start();
      const message = both('ticket-5@tickets.example, ticket-1@elsewhere.example');
      for (const localPart of order) expect(s.exim(localPart, 'carol@customer.example', message).status).toBe(0);
      expect(s.ticketNames()).toEqual(['1', '2', '3']);
      expect(stored(join(s.tickets, '3')).map(String)).toEqual([message]);
      expect(stored(join(s.tickets, '1'))).toHaveLength(1); // ticket-1@ of another domain is not ours
      expect(stored(join(s.tickets, 'unmatched')).map(String)).toEqual([message]);
    });
});

describe('exactly once keys on the Message-ID and the content', () => {
  const bob = mail({ from: 'Bob <bob@customer.example>', id: 'bob.1@customer.example', subject: 'My invoice', body: 'Account 1234\n' });
  const trace = (to: string) => ['Received: from mx.customer.example by mx.tickets.example;\n\tSat, 7 Nov 2026 04:00:57 +0000',
    `Delivered-To: ${to}`, 'Return-Path: <bob@customer.example>', `Envelope-To: ${to}`,
    'Delivery-Date: Sat, 7 Nov 2026 04:00:58 +0000', `X-Original-To: ${to}`];

  it('files a different message under a known Message-ID, with a warning on stderr and in the log', () => {
    const s = setup();
    const junk = mail({ from: 'mallory@evil.example', id: 'bob.1@customer.example', subject: 'junk' });
    expect(s.exim('submit', 'mallory@evil.example', junk).status).toBe(0);
    const r = s.exim('submit', 'bob@customer.example', bob);
    expect(r).toMatchObject({ status: 0, stderr: expect.stringMatching(/^ticket-mail: ticket 2: its Message-ID was filed before with other content \(ticket 1\); filed as a new message\n$/) });
    expect(stored(join(s.tickets, '2')).map(String)).toEqual([bob]);
    expect(s.mails().map((m) => m.recipients)).toEqual([['mallory@evil.example'], ['bob@customer.example']]);
    expect(decodeToken(s.log()[1]![7]!)).toMatch(/filed before with other content/);
    // Into an existing ticket too, and a one-byte change in the body is another message.
    const changed = bob.replace('1234', '1235');
    const into = s.exim('ticket-2', 'bob@customer.example', changed);
    expect(into).toMatchObject({ status: 0, stderr: expect.stringMatching(/ticket 2: its Message-ID was filed before with other content \(ticket 1, 2\)/) });
    expect(stored(join(s.tickets, '2')).map(String)).toEqual([bob, changed]);
    // The same ID with another Subject only: another message as well.
    expect(s.exim('submit', 'bob@customer.example', bob.replace('My invoice', 'My invoices')).status).toBe(0);
    expect(s.ticketNames()).toEqual(['1', '2', '3']);
  });

  it('takes an MTA retry or a copy for another address, differing only in trace fields, for the same message', () => {
    const s = setup();
    expect(s.exim('submit', 'bob@customer.example', bob).status).toBe(0);
    // Trace fields on top (as MTAs add them), and one in the middle, folded.
    const traced = (to: string) => `${trace(to).join('\n')}\n${bob.replace('Subject:', `${trace(to)[0]}\nSubject:`)}`;
    expect(s.exim('submit', 'bob@customer.example', traced('submit@tickets.example'))).toMatchObject({ status: 0, stderr: '' });
    expect(s.exim('ticket-1', 'bob@customer.example', traced('ticket-1@tickets.example'))).toMatchObject({ status: 0, stderr: '' });
    expect(s.ticketNames()).toEqual(['1']);
    expect(stored(join(s.tickets, '1'))).toHaveLength(1);
    expect(s.log().map((l) => l[6])).toEqual(['created', 'duplicate', 'duplicate']);
    expect(s.mails()).toHaveLength(1);
    // A field that is not a trace field is content, however it is named: "Received-SPF", "X-Received".
    expect(s.exim('submit', 'bob@customer.example', `Received-SPF: pass\n${bob}`).status).toBe(0);
    expect(s.ticketNames()).toEqual(['1', '2']);
  });

  it('deduplicates a Message-ID that is too long or has no angle brackets, and a message without one, by the whole field', () => {
    const s = setup();
    const long = `<${'x'.repeat(300)}@customer.example>`;
    for (const [i, idLine] of [`Message-ID: ${long}`, 'Message-ID: no-brackets@customer.example', 'Message-Id:   <a b@x> (spaces)', ''].entries()) {
      const message = mail({ id: null, headers: idLine ? [idLine] : [], subject: `case ${i}` });
      expect(s.exim('submit', 'bob@customer.example', message).status).toBe(0);
      expect(s.exim('submit', 'bob@customer.example', `Received: by mx\n${message}`).status).toBe(0); // the MTA's retry
      expect(s.ticketNames()).toHaveLength(i + 1);
    }
    expect(s.log().map((l) => l[6])).toEqual(['created', 'duplicate', 'created', 'duplicate', 'created', 'duplicate', 'created', 'duplicate']);
    // Without a Message-ID, other content is another message.
    expect(s.exim('submit', 'bob@customer.example', mail({ id: null, subject: 'case 3', body: 'other\n' })).status).toBe(0);
    expect(s.ticketNames()).toHaveLength(5);
  });

  it('compares a message under a known ID with the one stored, wherever the ticket has gone since', () => {
    const s = setup(['--admin', 'max@tickets.example']);
    expect(s.exim('submit', 'bob@customer.example', bob).status).toBe(0);
    // More mail after it, a close (the file moves to archived/), and its record is still found.
    expect(s.exim('ticket-1', 'max@tickets.example', mail({ from: 'max@tickets.example', subject: 'answer' })).status).toBe(0);
    expect(s.exim('ticket-1-done', 'max@tickets.example', mail({ from: 'max@tickets.example', subject: 'done' })).status).toBe(0);
    expect(s.exim('submit', 'bob@customer.example', `Received: by mx2\n${bob}`)).toMatchObject({ status: 0, stderr: '' });
    expect(s.log().at(-1)!.slice(5, 7)).toEqual(['1', 'duplicate']);
    // A message stored at the end of a ticket, without a final newline, read back to its last byte.
    const unterminated = mail({ id: 'last@customer.example', subject: 'Re: [issue1] x', body: 'no newline' }).slice(0, -1);
    expect(s.exim('submit', 'bob@customer.example', unterminated).status).toBe(0);
    expect(s.exim('submit', 'bob@customer.example', `Received: by mx2\n${unterminated}`).stderr).toBe('');
    expect(s.exim('submit', 'bob@customer.example', `${unterminated}.`).stderr).toMatch(/filed before with other content/);
    expect(stored(join(s.tickets, '1')).map(String).slice(3)).toEqual([unterminated, `${unterminated}.`]);
  });

  it('files a copy again rather than drop it when the stored one is no longer where the index says (an mbox rewritten)', () => {
    const s = setup();
    expect(s.exim('submit', 'alice@customer.example', mail({ subject: 'first' })).status).toBe(0);
    expect(s.exim('ticket-1', 'bob@customer.example', bob).status).toBe(0);
    // A mail client rewrote the mbox: a Status: line added to the first message moves the second.
    const path = join(s.tickets, '1');
    writeFileSync(path, readFileSync(path, 'latin1').replace('\n\nHello.', '\nStatus: RO\n\nHello.'), 'latin1');
    expect(s.exim('ticket-1', 'bob@customer.example', bob).status).toBe(0);
    expect(stored(path).map(String).slice(1)).toEqual([bob, bob]);
  });

  it('reads an index written before fingerprints: it threads, and proves no message to be a copy', () => {
    const s = setup();
    expect(s.exim('submit', 'bob@customer.example', bob).status).toBe(0);
    const key = MessageIndex.key('bob.1@customer.example');
    const file = join(s.state, 'ids', key.slice(0, 2), key.slice(2));
    expect(readFileSync(file, 'latin1')).toBe('1 0\n'); // ticket 1, its record at byte 0
    writeFileSync(file, '1\n'); // the old format: the ticket number alone
    const reply = mail({ subject: 'Re: no tag', headers: ['In-Reply-To: <bob.1@customer.example>'] });
    expect(s.exim('submit', 'alice@customer.example', reply).status).toBe(0);
    expect(s.log().at(-1)!.slice(4, 7)).toEqual(['append/thread', '1', 'appended']);
    expect(s.exim('submit', 'bob@customer.example', bob).status).toBe(0); // filed again, rather than maybe never
    expect(s.ticketNames()).toEqual(['1', '2']);
  });

  it('route says what delivery would do with a copy and with other content', () => {
    const s = setup();
    expect(s.exim('submit', 'bob@customer.example', bob).status).toBe(0);
    const route = (message: string) => JSON.parse(s.tool(['route', '--json', '--recipient', 'submit@tickets.example', '--sender', 'bob@customer.example'], message).stdout);
    expect(route(`Received: by mx\n${bob}`)).toMatchObject({ outcome: 'duplicate', ticket: 1 });
    expect(route(bob.replace('1234', '9999'))).toMatchObject({ outcome: 'created', ticket: 2 });
  });
});

describe('symlinks in the state folder are never followed', () => {
  const bait = (s: ReturnType<typeof setup>) => {
    const target = join(s.root, 'victim');
    writeFileSync(target, 'precious\n');
    return target;
  };
  it('the audit log', () => {
    const s = setup();
    expect(s.exim('submit', 'alice@customer.example', mail()).status).toBe(0);
    const target = bait(s);
    rmSync(join(s.state, 'log'));
    symlinkSync(target, join(s.state, 'log'));
    const r = s.exim('submit', 'alice@customer.example', mail({ id: '$(touch /tmp/x)@x' }));
    expect(r).toMatchObject({ status: 0, stderr: expect.stringMatching(/cannot write the log: .*log is not a plain file \(a symlink\)/) });
    expect(readFileSync(target, 'utf8')).toBe('precious\n');
    expect(stored(join(s.tickets, '2'))).toHaveLength(1);
  });
  it.each(['ids', 'ids/xx', 'ids/xx/file'])('the Message-ID index: %s', (which) => {
    const s = setup();
    const outside = join(s.root, 'outside');
    mkdirSync(outside);
    const id = 'x@customer.example';
    const key = MessageIndex.key(id);
    const parts = ['ids', key.slice(0, 2), key.slice(2)];
    const depth = which.split('/').length;
    mkdirSync(join(s.state, ...parts.slice(0, depth - 1)), { recursive: true });
    const link = join(s.state, ...parts.slice(0, depth));
    if (depth === 3) writeFileSync(join(outside, 'file'), '');
    symlinkSync(depth === 3 ? join(outside, 'file') : outside, link);
    const r = s.exim('submit', 'alice@customer.example', mail({ id }));
    if (depth === 3) {
      // An index file it cannot read: deferred before anything is filed, as for any unreadable index.
      expect(r).toMatchObject({ status: 75, stderr: expect.stringMatching(/cannot read the message index: .* is not a plain file \(a symlink\)/) });
      expect(s.ticketNames()).toEqual([]);
    } else {
      expect(r).toMatchObject({ status: 0, stderr: expect.stringMatching(/filed, but not noted in the message index .*is not a folder/) });
      expect(s.ticketNames()).toEqual(['1']);
    }
    expect(readdirSync(outside, { recursive: true })).toEqual(depth === 3 ? ['file'] : []);
    if (depth === 3) expect(readFileSync(join(outside, 'file'), 'utf8')).toBe('');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
  });
  it('the outbox: moved aside, the replies kept in a new one, check tells, flush sends them', () => {
    const s = setup();
    expect(s.exim('submit', 'alice@customer.example', mail(), NO_SENDMAIL).status).toBe(0);
    const target = bait(s);
    rmSync(join(s.state, 'outbox'));
    symlinkSync(target, join(s.state, 'outbox'));
    expect(s.tool(['check']).stdout).toMatch(/outbox is not a regular file/);
    const r = s.exim('submit', 'bob@customer.example', mail({ from: 'bob@customer.example' }), NO_SENDMAIL);
    expect(r).toMatchObject({ status: 0, stderr: expect.stringMatching(/^ticket-mail: 1 message\(s\) kept in the outbox/) });
    expect(readFileSync(target, 'utf8')).toBe('precious\n');
    const aside = readdirSync(s.state).filter((n) => n.startsWith('outbox.not-a-file.'));
    expect(aside).toHaveLength(1);
    expect(readlinkSync(join(s.state, aside[0]!))).toBe(target);
    expect(s.outbox().map((r) => r.note)).toEqual(['outbox ack bob@customer.example']);
    const check = s.tool(['check']);
    expect(check.status).toBe(1);
    expect(check.stdout).toMatch(/outbox\.not-a-file\..* was the outbox, but not a regular file/);
    expect(s.tool(['flush'])).toMatchObject({ status: 0, stdout: 'sent 1, kept 0\n' });
    expect(s.mails().map((m) => m.recipients)).toEqual([['bob@customer.example']]);
  });
  it('the outbox as a folder, met by a flush', () => {
    const s = setup();
    mkdirSync(join(s.state), { recursive: true });
    mkdirSync(join(s.state, 'outbox'));
    expect(s.tool(['flush'])).toMatchObject({ status: 0, stdout: 'sent 0, kept 0\n' });
    expect(readdirSync(s.state).filter((n) => n.startsWith('outbox.not-a-file.'))).toHaveLength(1);
  });
});

describe('message IDs in our headers are printable ASCII', () => {
  it('ignores IDs with control characters, spaces or non-ASCII, for threading and for In-Reply-To/References', () => {
    for (const bad of ['a\u0000b@x', 'a\u001b[2Jb@x', 'a\u0007@x', 'a\u0085b@x', 'a\u007fb@x', 'ü@x', 'a\u202eb@x']) {
      expect(messageIds(`<${bad}> <good@x>`)).toEqual(['good@x']);
    }
    const s = setup();
    const refs = '<ok.1@customer.example> <bad\u001b]52;c;aGk=\u0007@x> <nul\u0000@x> <c1\u0085@x> <ok.2@customer.example>';
    const message = mail({ id: null, headers: ['Message-ID: <esc\u001b@customer.example>', `References: ${refs}`, 'In-Reply-To: <bel\u0007@x>'] });
    expect(s.exim('submit', 'alice@customer.example', message).status).toBe(0);
    const [ack] = s.mails();
    expect(ack!.headers.has('in-reply-to')).toBe(false);
    expect(ack!.headers.get('references')).toEqual(['<ok.1@customer.example> <ok.2@customer.example>']);
    expect(ack!.text).toMatch(/^[\x09\x0a\x20-\x7e]*$/);
  });
});

describe('reopen by the maintainer', () => {
  it('says why it did not reopen and exits 1, for a message already filed and for automatic mail', () => {
    const s = setup();
    const first = mail({ id: 'first@customer.example' });
    expect(s.exim('submit', 'alice@customer.example', first).status).toBe(0);
    expect(s.tool(['close', '1', '--quiet']).status).toBe(0);
    const again = s.tool(['reopen', '1', '--quiet'], first);
    expect(again).toMatchObject({ status: 1, stdout: 'ticket 1: duplicate\n', stderr: 'ticket-mail: ticket 1 was not reopened: the message on stdin is already filed\n' });
    const auto = s.tool(['reopen', '1', '--quiet'], mail({ headers: ['Auto-Submitted: auto-replied'] }));
    expect(auto).toMatchObject({ status: 1, stderr: expect.stringMatching(/not reopened: the message on stdin is automatic mail/) });
    expect(existsSync(join(s.tickets, 'archived', '1'))).toBe(true);
    expect(s.tool(['reopen', '1', '--quiet'], mail())).toMatchObject({ status: 0, stdout: 'ticket 1: reopened\n' });
    expect(existsSync(join(s.tickets, '1'))).toBe(true);
  });
});

describe('a sendmail that exits 0 without reading has taken the mail', () => {
  it('never keeps such mail in the outbox (a message larger than the pipe buffer: EPIPE every time)', () => {
    const s = setup();
    const templates = join(s.root, 'templates');
    mkdirSync(templates);
    writeFileSync(join(templates, 'ack.txt'), `Thanks: ticket {ticket}.\n${'long line of text\n'.repeat(8000)}`); // ~140 KB
    for (let i = 0; i < 5; i++) {
      const r = s.exim('submit', 'alice@customer.example', mail({ subject: `q${i}` }), ['--sendmail', '/bin/true', '--templates', templates]);
      expect(r).toMatchObject({ status: 0, stderr: '' });
    }
    expect(s.outbox()).toEqual([]);
    // And flush, for mail kept while sendmail was missing.
    const dave = mail({ from: 'dave@customer.example' }); // alice has had her five replies this hour
    expect(s.exim('submit', 'dave@customer.example', dave, [...NO_SENDMAIL, '--templates', templates]).status).toBe(0);
    expect(s.outbox()).toHaveLength(1);
    expect(s.tool(['flush'], '', ['--sendmail', '/bin/true'])).toMatchObject({ status: 0, stdout: 'sent 1, kept 0\n' });
  });
});

describe('the fingerprint\'s SHA-256, fed in pieces', () => {
  it('agrees with node:crypto however the input is cut', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 700 }), fc.array(fc.nat(700), { maxLength: 6 }), (bytes, cuts) => {
      const hash = new Sha256();
      let at = 0;
      for (const cut of [...cuts.map((c) => c % (bytes.length + 1))].sort((a, b) => a - b)) { hash.update(bytes.subarray(at, cut)); at = cut; }
      hash.update(bytes.subarray(at));
      return hash.digest() === createHash('sha256').update(bytes).digest('hex');
    }), { numRuns: 500 });
  });
});

describe('the fingerprint of a message read back from its mbox', () => {
  it('is the fingerprint of the message as it came, for any bytes, around the 1 MiB edge, with or without a final newline', () => {
    const dir = tempDir();
    const bytes = fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b));
    const line = fc.constantFrom('From x\n', '>From y\n', 'Received: by z\n', '\tfolded\n', 'Subject: s\n', '\n', 'From ', '>');
    const message = fc.tuple(fc.array(fc.oneof(line, bytes.map((b) => b.toString('latin1'))), { maxLength: 30 }), fc.nat(3))
      .map(([parts, big]) => Buffer.concat([Buffer.from(parts.join(''), 'latin1'), big === 3 ? Buffer.alloc((1 << 20) + 7, 0x61) : Buffer.alloc(0)]))
      .filter((m) => m.length > 0);
    fc.assert(fc.property(message, (m) => {
      const path = join(dir, 'mbox');
      const before = mboxRecord(Buffer.from('Subject: before\n\nx\n'), 'a@b', 'ticket 1', new Date());
      writeFileSync(path, Buffer.concat([before, mboxRecord(m, 'a@b', 'ticket 1', new Date()), mboxRecord(Buffer.from('From me\n'), '', 'ticket 1', new Date())]));
      expect(storedPrint(path, before.length)).toBe(messagePrint(Message.of(m)));
      expect(storedPrint(path, before.length + 1)).toBeUndefined(); // no record starts there
    }), { numRuns: 150 });
  });
});

describe('a second hostile look at the state folder and exactly once', () => {
  it('keeps the replies when the reply counters cannot be read (a symlink, a file for the folder), and never writes through a link', () => {
    const s = setup(['--admin', 'max@tickets.example', '--notify', 'new']);
    expect(s.exim('submit', 'alice@customer.example', mail({ subject: 'one' })).status).toBe(0);
    const folder = join(s.state, 'replies');
    const [counter] = readdirSync(folder);
    rmSync(join(folder, counter!));
    symlinkSync(join(s.root, 'nowhere'), join(folder, counter!));
    const r = s.exim('submit', 'alice@customer.example', mail({ subject: 'two' }));
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/1 message\(s\) kept in the outbox \(cannot count the replies to alice@customer\.example: .*not a plain file/);
    expect(s.outbox().map((o) => o.note)).toEqual([expect.stringMatching(/^outbox ack alice@customer\.example$/)]);
    expect(s.mails().map((m) => m.recipients)).toEqual([['alice@customer.example'], ['max@tickets.example'], ['max@tickets.example']]);
    expect(existsSync(join(s.root, 'nowhere'))).toBe(false);
    rmSync(folder, { recursive: true });
    writeFileSync(folder, ''); // a file where the folder belongs
    expect(s.exim('submit', 'alice@customer.example', mail({ subject: 'three' })).stderr).toMatch(/kept in the outbox/);
    expect(s.outbox()).toHaveLength(2);
  });

  it('says when the reply limit or a loop rule holds a reply back (stderr, the audit log), and route predicts it', () => {
    const s = setup(['--reply-limit', '1']);
    const route = (message: string) => s.tool(['route', '--recipient', 'submit@tickets.example', '--sender', 'alice@customer.example'], message).stdout;
    expect(route(mail({ subject: 'one' }))).toMatch(/^replies +ack to alice@customer\.example$/m);
    expect(s.exim('submit', 'alice@customer.example', mail({ subject: 'one' })).stderr).toBe('');
    const limit = 'no ack sent to alice@customer.example: the reply limit of 1 automatic replies an hour to one address is reached';
    expect(route(mail({ subject: 'two' }))).toMatch(/^replies +none\nheld back +ack to alice@customer\.example: the reply limit of 1 /m);
    expect(s.exim('submit', 'alice@customer.example', mail({ subject: 'two' })).stderr).toBe(`ticket-mail: ${limit}\n`);
    // A loop rule (a list's mail): held back too, and said.
    expect(s.exim('submit', 'bob@customer.example', mail({ from: 'bob@customer.example', subject: 'three', headers: ['List-Id: <l.example>'] })).stderr)
      .toBe('ticket-mail: no ack sent to bob@customer.example: list-id\n');
    expect(s.mails()).toHaveLength(1);
    expect(s.log().filter((l) => l[6] === 'held').map((l) => [l[4], l[5], decodeToken(l[7]!)])).toEqual([
      ['reply/ack', '2', 'to alice@customer.example: the reply limit of 1 automatic replies an hour to one address is reached'],
      ['reply/ack', '3', 'to bob@customer.example: list-id']]);
  });

  it('threads by an ID only when one ticket holds it: a stranger who filed it first under another ticket steers nothing', () => {
    const s = setup();
    expect(s.exim('submit', 'mal@evil.example', mail({ from: 'mal@evil.example', subject: 'mine' })).status).toBe(0);
    const bobsId = mail({ id: 'bob-42@corp.example', from: 'mal@evil.example', subject: 'junk', body: 'junk\n' });
    expect(s.exim('ticket-1', 'mal@evil.example', bobsId).status).toBe(0);
    expect(s.exim('submit', 'bob@corp.example', mail({ id: 'bob-42@corp.example', from: 'bob@corp.example', subject: 'invoice' })).status).toBe(0);
    const reply = mail({ from: 'carol@corp.example', subject: 'Re: invoice', headers: ['In-Reply-To: <bob-42@corp.example>'] });
    expect(s.exim('submit', 'carol@corp.example', reply).status).toBe(0);
    expect(s.log().map((l) => l.slice(4, 7))).toEqual([['create/submit', '1', 'created'], ['append/address', '1', 'appended'],
      ['create/submit', '2', 'created'], ['create/submit', '3', 'created']]);
  });

  it('threads replies to a message whose Message-ID field is folded or carries a comment', () => {
    for (const idLine of ['Message-ID:\n <i1@customer.example>', 'Message-ID: <i1@customer.example> (relay)']) {
      const s = setup();
      expect(s.exim('submit', 'alice@customer.example', mail({ id: null, headers: [idLine] })).status).toBe(0);
      const reply = mail({ from: 'carol@customer.example', subject: 'Re: printer', headers: ['In-Reply-To: <i1@customer.example>'] });
      expect(s.exim('submit', 'carol@customer.example', reply).status).toBe(0);
      expect(s.log().at(-1)!.slice(4, 7)).toEqual(['append/thread', '1', 'appended']);
    }
  });

  it('files one mail in one ticket whatever the order, also with the ticket\'s address past 50 others or Bcc\'d', () => {
    const others = Array.from({ length: 55 }, (_, i) => `p${i}@corp.example`).join(', ');
    for (const [to, cc] of [[`${others}, submit@tickets.example`, 'ticket-1@tickets.example'], ['submit@tickets.example', '']]) {
      for (const order of [['submit', 'ticket-1'], ['ticket-1', 'submit']]) {
        const s = setup();
        expect(s.exim('submit', 'alice@customer.example', mail({ subject: 'first' })).status).toBe(0);
        const message = mail({ from: 'bob@corp.example', to, subject: 'one mail', headers: cc ? [`Cc: ${cc}`] : [] });
        for (const localPart of order) expect(s.exim(localPart!, 'bob@corp.example', message).status).toBe(0);
        const holding = s.ticketNames().filter((n) => stored(join(s.tickets, n)).some((m) => String(m) === message));
        expect(holding, `${order} ${cc ? 'Cc' : 'Bcc'}`).toHaveLength(1);
      }
    }
  });

  it('files a copy of mail for a missing ticket once, and answers it once', () => {
    const s = setup();
    const lost = mail({ subject: 'lost' });
    expect(s.exim('ticket-99', 'alice@customer.example', lost).status).toBe(0);
    expect(s.exim('ticket-99', 'alice@customer.example', `Received: by mx2\n${lost}`).status).toBe(0);
    expect(stored(join(s.tickets, 'unmatched'))).toHaveLength(1);
    expect(s.mails().map((m) => m.headers.get('subject')?.[0])).toEqual(['No such ticket: 99']);
    expect(s.log().map((l) => l[6])).toEqual(['unmatched', 'duplicate']);
  });

  it('close says why it did not close (automatic mail on stdin) and exits 1, as reopen does', () => {
    const s = setup();
    expect(s.exim('submit', 'alice@customer.example', mail()).status).toBe(0);
    const r = s.tool(['close', '1'], mail({ from: 'max@tickets.example', headers: ['Precedence: bulk'] }));
    expect(r).toMatchObject({ status: 1, stderr: expect.stringMatching(/ticket 1 was not closed: the message on stdin is automatic mail, which never closes a ticket\n$/) });
    expect(s.ticketNames()).toEqual(['1']);
  });

  it('writes the log and the index into no FIFO (it would hang the delivery) and no file with another name (a planted hard link)', () => {
    const s = setup();
    mkdirSync(s.state, { recursive: true });
    expect(spawnSync('mkfifo', [join(s.state, 'log')]).status).toBe(0);
    const r = s.exim('submit', 'alice@customer.example', mail());
    expect(r).toMatchObject({ status: 0, stderr: expect.stringMatching(/cannot write the log: .*log is not a plain file/) });
    rmSync(join(s.state, 'log'));
    const victim = join(s.root, 'victim.rc');
    writeFileSync(victim, 'echo safe\n');
    linkSync(victim, join(s.state, 'log'));
    expect(s.exim('submit', 'alice@customer.example', mail({ id: '$(touch x)@evil.example' })).stderr).toMatch(/not a plain file \(it has other names\)/);
    expect(readFileSync(victim, 'utf8')).toBe('echo safe\n');
    // An index file that is a FIFO: the delivery defers (75) at once, before filing.
    const key = MessageIndex.key('fifo@customer.example');
    mkdirSync(join(s.state, 'ids', key.slice(0, 2)), { recursive: true });
    expect(spawnSync('mkfifo', [join(s.state, 'ids', key.slice(0, 2), key.slice(2))]).status).toBe(0);
    const fifo = s.exim('submit', 'alice@customer.example', mail({ id: 'fifo@customer.example' }));
    expect(fifo).toMatchObject({ status: 75, stderr: expect.stringMatching(/cannot read the message index: .*not a plain file/) });
    expect(s.ticketNames()).toEqual(['1', '2']);
  });
});

describe('reading an mbox one message at a time', () => {
  it('gives the messages readMbox gives, however large, in bounded pieces', () => {
    const dir = tempDir();
    const big = Buffer.concat([Buffer.from('Subject: big\n\n'), Buffer.from('From here\n>From there\nline\n'.repeat(80_000))]);
    const message = fc.oneof(fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
      fc.constantFrom(Buffer.from('From x\n\n>From y\nFrom '), Buffer.from('no newline'), big));
    fc.assert(fc.property(fc.array(message, { minLength: 1, maxLength: 5 }), (messages) => {
      const path = join(dir, 'mbox');
      writeFileSync(path, Buffer.concat(messages.map((m, i) => mboxRecord(m, 'a@b', `ticket ${i + 1}`, new Date()))));
      const fd = openSync(path, 'r');
      try {
        // The first MiB is held un-quoted; the rest is read from the file and un-quoted as it is read.
        const read = [...mboxMessages(fd)].map(({ note, message: m }) => {
          const pieces: Buffer[] = [];
          for (const c of m.chunks()) pieces.push(Buffer.from(c)); // copied as read: pieces share one buffer
          expect(m.first.length).toBeLessThanOrEqual(1 << 20);
          return { note, message: Buffer.concat(pieces) };
        });
        const expected = readMbox(readFileSync(path));
        expect(read.map((r) => r.note)).toEqual(expected.map((r) => r.note));
        expect(read.map((r, i) => r.message.equals(expected[i]!.message))).toEqual(expected.map(() => true)); // (toEqual on MBs is slow)
      } finally { closeSync(fd); }
    }), { numRuns: 25, endOnFailure: true });
  }, 60_000);
});
