import { describe, expect, it } from 'vitest';
import {
  existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, utimesSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import fc from 'fast-check';
import {
  asctime, audience, classifyLocalPart, encodePhrase, foldHeader, headerSafe, htmlToText, mailbox, MailError, MAX_TICKET, mboxRecord, Message, MessageIndex, messagePrint, parseHead,
  plainDelivery, planReplies, quoteChunks, readMbox, resolveConfig, resolveEnvelope, route, splitEnvelopeLine, type Config, type Head,
} from './ticket.ts';
import PostalMime, { type Email } from 'postal-mime';
import {
  corpusFiles, deliver, deliverAsync, FAKE_SENDMAIL, mail, pool, pythonCounts, sentMail, stored, tempDir, type Sent,
} from './test/harness.ts';

const quoteFromLines = (message: Buffer): Buffer => Buffer.concat([...quoteChunks([message])]);
const cfg = (over: Partial<Config> = {}): Config => ({
  ...resolveConfig({ dir: '/nonexistent/tickets', domain: 'tickets.example' }, {}, {}), ...over,
});
const head = (text: string): Head => parseHead(text)!;
const noThreads = () => undefined;
const routeTo = (recipient: string, headText = 'Subject: hello', lookup: (id: string) => number | undefined = noThreads) =>
  route(head(headText), { sender: 'a@b.example', recipient, source: 'flags' }, cfg(), lookup);

// ---------------------------------------------------------------------------------------
// Pure core
// ---------------------------------------------------------------------------------------

describe('configuration', () => {
  it('applies defaults, lets the file override them and flags override the file', () => {
    const c = resolveConfig({ submit: 'help' }, { submit: 'new', tag: '[ticket N]', admin: ['Max@Tickets.Example'] }, { HOME: '/home/m' });
    expect(c.dir).toBe('/home/m/tickets');
    expect(c.submit).toBe('help');
    expect(c.tag).toBe('[ticket N]');
    expect(c.admins).toEqual(['max@tickets.example']);
    expect(c.ticketAddress).toBe('ticket-N');
    expect(c.closeAddress).toBe('ticket-N-done');
    expect(c.maxSize).toBe(100 * 1024 * 1024);
    expect(resolveConfig({}, {}, { TICKET_MAIL_DIR: '/srv/t', HOME: '/home/m' }).dir).toBe('/srv/t');
  });
  it.each([
    [{ dir: '/t', closePolicy: 'everyone' }, {}],
    [{ dir: '/t', ticketAddress: 'ticket' }, {}],
    [{ dir: '/t', tag: '[issue]' }, {}],
    [{ dir: '/t', maxSize: 'lots' }, {}],
    [{ dir: '/t', admin: 'not an address' }, {}],
    [{ dir: '/t' }, { colour: 'blue' }],
    [{}, {}],
  ])('refuses a bad setting with a temporary failure: %j %j', (flags, file) => {
    let error: unknown;
    try { resolveConfig(flags, file, {}); } catch (e) { error = e; }
    expect(error).toBeInstanceOf(MailError);
    expect((error as MailError).exitCode).toBe(75);
  });
});

describe('command line', () => {
  it('reads a plain delivery\'s flags as typed, without cac', () => {
    expect(plainDelivery(['--dir', '/t', '--admin', 'a@x', '--admin=b@x', '--sender', '', '--ticket-address', '007-N']))
      .toEqual({ dir: ['/t'], admin: ['a@x', 'b@x'], sender: [''], ticketAddress: ['007-N'] });
    expect(plainDelivery(['deliver', '--recipient=ticket-1@x'])).toEqual({ recipient: ['ticket-1@x'] });
    expect(plainDelivery(['--sender', '-bob@x', '--recipient=-x@y'])).toEqual({ sender: ['-bob@x'], recipient: ['-x@y'] });
    expect(plainDelivery([])).toEqual({});
  });
  it.each([
    [['list']], [['--help']], [['-h']], [['--version']], [['--dir']], [['--bogus', 'x']], [['--dir', '/t', 'extra']],
    [['--sender', '--dir', '/t']], [['--', '--dir', '/t']], [['deliver', '--help']],
  ])('leaves %j to cac, which explains it', (args) => {
    expect(plainDelivery(args)).toBeUndefined();
  });
});

describe('routing', () => {
  it('routes each address form, case-insensitively', () => {
    expect(routeTo('submit@tickets.example')).toEqual({ action: 'create', rule: 'submit' });
    expect(routeTo('SUBMIT@Tickets.Example')).toEqual({ action: 'create', rule: 'submit' });
    expect(routeTo('ticket-42@tickets.example')).toEqual({ action: 'append', ticket: 42, rule: 'address' });
    expect(routeTo('Ticket-42@tickets.example')).toEqual({ action: 'append', ticket: 42, rule: 'address' });
    expect(routeTo('ticket-42-done@tickets.example')).toEqual({ action: 'close', ticket: 42, rule: 'address' });
    expect(routeTo('TICKET-42-DONE@x')).toEqual({ action: 'close', ticket: 42, rule: 'address' });
  });
  it('refuses every bad number form before it can reach a path', () => {
    for (const local of ['ticket-0', 'ticket-007', `ticket-${'9'.repeat(40)}`, 'ticket-1234567890', 'ticket--1', 'ticket-1e3']) {
      expect(routeTo(`${local}@tickets.example`).action, local).toBe('unmatched');
      expect(routeTo(`${local}-done@tickets.example`).action, local).toBe('unmatched');
    }
    for (const subject of ['[issue0]', '[issue007]', `[issue${'1'.repeat(40)}]`]) {
      expect(routeTo('submit@x', `Subject: ${subject}`).action, subject).toBe('unmatched');
    }
    expect(routeTo('submit@x', 'Subject: [issue../../etc/passwd]')).toEqual({ action: 'create', rule: 'submit' });
    expect(routeTo('submit-done@x').action).toBe('unmatched');
    expect(routeTo('postmaster@x').action).toBe('unmatched');
  });
  it('finds our subject tag in any case, folded and RFC 2047 encoded, and no other tracker\'s reference', () => {
    const tagged = (subject: string) => routeTo('submit@x', `Subject: ${subject}`);
    const seven = { action: 'append', ticket: 7, rule: 'subject-tag' };
    expect(tagged('Re: [issue7] Printer')).toEqual(seven);
    expect(tagged('Re: [ISSUE7] Printer')).toEqual(seven);
    expect(tagged('Re: [issue 7] Printer')).toEqual({ action: 'create', rule: 'submit' });
    expect(tagged('Re: [Issue #7] Printer')).toEqual({ action: 'create', rule: 'submit' });
    expect(tagged('AW: =?UTF-8?B?W2lzc3VlN10gQ2Fmw6k=?=')).toEqual(seven); // "[issue7] Café", base64
    expect(tagged('=?UTF-8?Q?Re:_[iss?=\n =?UTF-8?Q?ue7]_Caf=C3=A9?=')).toEqual(seven); // split across two words
    expect(routeTo('submit@x', 'Subject: Re: a very long subject that\n\t[issue7] continues')).toEqual(seven);
    expect(tagged('=?UTF-8?B?UmU6IFtpc3N1ZTQyXSBDYWbDqQ==?=')).toEqual({ action: 'append', ticket: 42, rule: 'subject-tag' });
    expect(route(head('Subject: Re: [bug 9] x'), { sender: '', recipient: 'submit@x', source: 'flags' },
      cfg({ tag: '[bug N]' }), noThreads)).toEqual({ action: 'append', ticket: 9, rule: 'subject-tag' });
  });
  it('threads submit@ mail through In-Reply-To and References', () => {
    const known = new Map([['old@x', 3], ['newer@x', 5]]);
    const lookup = (id: string) => known.get(id);
    expect(routeTo('submit@x', 'Subject: hi\nIn-Reply-To: <old@x>', lookup)).toEqual({ action: 'append', ticket: 3, rule: 'thread' });
    expect(routeTo('submit@x', 'Subject: hi\nReferences: <old@x>\n <unknown@x> <newer@x>', lookup))
      .toEqual({ action: 'append', ticket: 5, rule: 'thread' });
    expect(routeTo('submit@x', 'Subject: hi\nReferences: <unknown@x>', lookup)).toEqual({ action: 'create', rule: 'submit' });
    // The address wins over tags and threads.
    expect(routeTo('ticket-8@x', 'Subject: [issue3]\nIn-Reply-To: <old@x>', lookup)).toEqual({ action: 'append', ticket: 8, rule: 'address' });
  });
  it('classifies custom address forms', () => {
    const c = cfg({ submit: 'help', ticketAddress: 'case.N', closeAddress: 'case.N.closed' });
    expect(classifyLocalPart('help', c)).toEqual({ kind: 'submit' });
    expect(classifyLocalPart('case.12', c)).toEqual({ kind: 'ticket', digits: '12' });
    expect(classifyLocalPart('case.12.closed', c)).toEqual({ kind: 'close', digits: '12' });
    expect(classifyLocalPart('case12', c)).toBeUndefined();
  });
});

describe('envelope', () => {
  const h = head('From: Alice <alice@customer.example>\nTo: Someone <other@elsewhere.example>, submit@tickets.example\nCc: ticket-3@tickets.example');
  it('prefers flags, then Exim, then Postfix, then headers', () => {
    const exim = { LOCAL_PART: 'ticket-7', LOCAL_PART_SUFFIX: '-done', DOMAIN: 'tickets.example', SENDER: 'bob@x.example' };
    expect(resolveEnvelope({ recipient: 'Ticket-1@tickets.example', sender: 'c@x' }, exim, undefined, h, cfg()))
      .toEqual({ sender: 'c@x', recipient: 'ticket-1@tickets.example', source: 'flags' });
    expect(resolveEnvelope({}, exim, 'ignored@x', h, cfg()))
      .toEqual({ sender: 'bob@x.example', recipient: 'ticket-7-done@tickets.example', source: 'exim' });
    expect(resolveEnvelope({}, { RECIPIENT: 'ticket-42-done@tickets.example', EXTENSION: '42-done', SENDER: '' }, 'x@y', h, cfg()))
      .toEqual({ sender: '', recipient: 'ticket-42-done@tickets.example', source: 'postfix' });
    expect(resolveEnvelope({}, {}, 'carol@x.example', h, cfg()))
      .toEqual({ sender: 'carol@x.example', recipient: 'submit@tickets.example', source: 'headers' });
    const delivered = head('Delivered-To: ticket-9@tickets.example\nTo: submit@tickets.example');
    expect(resolveEnvelope({}, {}, undefined, delivered, cfg()).recipient).toBe('ticket-9@tickets.example');
  });
  it('looks in the headers when the MTA\'s recipient is not ours (a .forward, an alias), else keeps it to say why', () => {
    const forward = { LOCAL_PART: 'me', DOMAIN: 'example.org', SENDER: 'bob@x.example' };
    expect(resolveEnvelope({}, forward, undefined, h, cfg()))
      .toEqual({ sender: 'bob@x.example', recipient: 'submit@tickets.example', source: 'headers' });
    expect(resolveEnvelope({}, { RECIPIENT: 'Me@Example.org' }, 'x@y', h, cfg()).recipient).toBe('submit@tickets.example');
    const notOurs = head('To: me@example.org');
    expect(resolveEnvelope({}, { RECIPIENT: 'Me@Example.org' }, 'x@y', notOurs, cfg()))
      .toEqual({ sender: 'x@y', recipient: 'me@example.org', source: 'postfix' });
    expect(resolveEnvelope({}, forward, undefined, notOurs, cfg()).source).toBe('exim');
    // Without --domain any domain's submit@ would do: a personal mail Cc'd to one elsewhere stays unmatched.
    expect(resolveEnvelope({}, forward, undefined, h, cfg({ domain: undefined })).recipient).toBe('me@example.org');
  });
  it('takes header recipients only in our domain, and knows the null sender', () => {
    const foreign = head('To: submit@elsewhere.example');
    expect(resolveEnvelope({}, {}, 'MAILER-DAEMON', foreign, cfg())).toEqual({ sender: '', recipient: undefined, source: 'none' });
    expect(resolveEnvelope({ sender: '<>' }, {}, undefined, foreign, cfg()).sender).toBe('');
    expect(resolveEnvelope({}, { SENDER: '' }, 'x@y', foreign, cfg()).sender).toBe('');
  });
});

describe('head parsing', () => {
  it('unfolds, keeps order, accepts obsolete "Name :" syntax and CRLF', () => {
    const h = head('Subject :obsolete\r\nReceived: a\r\n b\r\nReceived: c\r\n');
    expect(h.get('subject')).toEqual(['obsolete']);
    expect(h.get('received')).toEqual(['a b', 'c']);
  });
  it('says when there is no header at all', () => {
    expect(parseHead('This is a simple message not having headers.')).toBeUndefined();
    expect(parseHead('')).toBeUndefined();
  });
  it('strips the From_ line an MTA prepends and keeps its sender', () => {
    const { fromLineSender, message } = splitEnvelopeLine(Buffer.from('From bob@x.example Sat Nov 28 01:42:18 2026\nSubject: x\n\nhi\n'));
    expect(fromLineSender).toBe('bob@x.example');
    expect(message.toString()).toBe('Subject: x\n\nhi\n');
    expect(splitEnvelopeLine(Buffer.from('From: a@b\n\nx')).fromLineSender).toBeUndefined();
  });
});

describe('who hears of a filed message', () => {
  const OUTCOMES = ['created', 'appended', 'appended-archived', 'reopened', 'closed', 'close-refused', 'duplicate', 'unmatched'] as const;
  const member = { 'ack': 'sender', 'close-refused': 'sender', 'unknown-ticket': 'sender', 'close-notice': 'submitter', 'notify': 'admins' } as const;
  const plan = (outcome: typeof OUTCOMES[number], ticket: number | undefined, missing: number | undefined, c: Config) => planReplies({
    outcome, ticket, missing, head: head('From: Alice <alice@customer.example>\nSubject: help\nMessage-ID: <m1@customer.example>'),
    envelope: { sender: 'alice@customer.example', recipient: 'ticket-3@tickets.example', source: 'flags' }, first: { head: head('From: Bob <bob@customer.example>'), sender: 'bob@customer.example' },
    summary: undefined, templates: {}, domain: 'tickets.example', now: new Date(), unique: () => 'u',
  }, c);

  // The shell decodes, drafts and sends nothing when audience() names nobody: planReplies must
  // never write to anyone it leaves out, and for an ordinary message it writes to all it names.
  it('planReplies writes to exactly the audience, for every outcome and setting', () => {
    for (const outcome of OUTCOMES) for (const admins of [[], ['max@tickets.example']]) {
      for (const notify of [[], ['new'], ['update'], ['reopen'], ['new', 'update', 'reopen']] as Config['notify'][]) {
        for (const [ticket, missing] of [[3, undefined], [undefined, 7], [undefined, undefined]] as const) {
          const c = cfg({ admins, notify });
          const who = audience({ outcome, ticket, missing }, c);
          const reached = new Set(plan(outcome, ticket, missing, c).map((d) => member[d.kind]));
          const named = new Set((['sender', 'submitter', 'admins'] as const).filter((m) => who[m]));
          expect([...reached].sort(), `${outcome} ${admins} ${notify} ${ticket} ${missing}`).toEqual([...named].sort());
        }
      }
    }
  });

  it('sends no close notice to a submitter an automatic reply may not answer, nor to one who closed', () => {
    const noticeTo = (firstHead: string, closer = 'max@tickets.example', firstSender = 'bob@customer.example') => planReplies({
      outcome: 'closed', ticket: 3, missing: undefined, head: head(`From: ${closer}\nSubject: done`),
      envelope: { sender: closer, recipient: 'ticket-3-done@tickets.example', source: 'flags' }, first: { head: head(firstHead), sender: firstSender },
      summary: undefined, templates: {}, domain: 'tickets.example', now: new Date(), unique: () => 'u',
    }, cfg({ admins: ['max@tickets.example'] })).filter((d) => d.kind === 'close-notice').map((d) => d.to);
    const bob = 'From: Bob <bob@customer.example>';
    expect(noticeTo(bob)).toEqual(['bob@customer.example']);
    expect(noticeTo(`${bob}\nReply-To: bob.home@customer.example`)).toEqual(['bob.home@customer.example']);
    expect(noticeTo(`${bob}\nReply-To: bob.home@customer.example`, 'bob@customer.example')).toEqual([]);
    expect(noticeTo('From: Shop <noreply@shop.example>')).toEqual([]);
    expect(noticeTo(`${bob}\nList-Id: <users.lists.example>`)).toEqual([]);
    expect(noticeTo(`${bob}\nAuto-Submitted: auto-generated`)).toEqual([]);
    expect(noticeTo('From: Mail Delivery System <MAILER-DAEMON@mx.example>')).toEqual([]);
    expect(noticeTo(bob, 'max@tickets.example', '')).toEqual([]); // a bounce with a person's From:
  });
  it('names nobody for appends when no admin wants updates, and for duplicates', () => {
    expect(audience({ outcome: 'appended', ticket: 3 }, cfg({ admins: [] }))).toEqual({ sender: false, submitter: false, admins: false });
    expect(audience({ outcome: 'appended', ticket: 3 }, cfg({ admins: ['max@tickets.example'], notify: ['new'] })).admins).toBe(false);
    expect(audience({ outcome: 'appended', ticket: 3 }, cfg({ admins: ['max@tickets.example'], notify: ['update'] })).admins).toBe(true);
    expect(audience({ outcome: 'duplicate', ticket: 3 }, cfg({ admins: ['max@tickets.example'] }))).toEqual({ sender: false, submitter: false, admins: false });
  });
});

describe('HTML as text', () => {
  it('keeps the text, breaks lines where the layout did, decodes entities and drops scripts', () => {
    expect(htmlToText('<p>a &lt;b&gt; &#233;&#x41; &bogus;</p><br/>c<script>x<y</script >d<LI class=x>e'))
      .toBe('a <b> éA &bogus;\n\ncd\n* e');
    expect(htmlToText('a   \n\n\n\n<div>b</div>\t\n')).toBe('a\n\nb');
  });
  it('keeps as text a "<" that starts no tag, a tag never closed, and an element never ended', () => {
    expect(htmlToText('2 < 3 is true, <3')).toBe('2 < 3 is true, <3');
    expect(htmlToText(`a<b${'<'.repeat(5)}`)).toBe('a<b<<<<<');
    expect(htmlToText('<html><head><title>T</title><body><p>Hello</p>')).toBe('Hello');
    expect(htmlToText('a<script>x</script>b<style>c<p>d</p>')).toBe('abcd');
    expect(htmlToText('&constructor; &AMP; &#0; &#x110000;')).toBe('&constructor; & &#0; &#x110000;');
  });
});

describe('mbox bytes', () => {
  it('quotes with mboxrd and un-quotes back to the exact bytes', () => {
    const samples = [
      'Subject: x\n\nFrom here\n>From there\n>>From far\nFrom\nFromage\n',
      'Subject: x\r\n\r\nFrom crlf\r\n',
      'From the first line\n',
      'Subject: no final newline\n\nlast line',
      'Subject: x\n\n\n\n',
      'Subject: x\n\nbare\rCR From x\n\0NUL\n',
    ];
    for (const s of samples) {
      const record = mboxRecord(Buffer.from(s, 'latin1'), 'a@b', 'ticket 1', new Date(2026, 10, 7, 4, 0, 57));
      expect(record.toString('latin1')).toMatch(/^From a@b Sat Nov {2}7 04:00:57 2026\nX-Ticket-Mail: ticket 1/);
      expect(record.toString('latin1').endsWith('\n\n')).toBe(true);
      const both = Buffer.concat([record, record]);
      expect(readMbox(both).map((r) => r.message.toString('latin1'))).toEqual([s, s]);
    }
    expect(quoteFromLines(Buffer.from('From a\n>From b\nx From c\n')).toString()).toBe('>From a\n>>From b\nx From c\n');
    // A record another program wrote (mutt saving a message into the ticket) has no line of ours.
    const foreign = 'From a@b Sat Nov  7 04:00:57 2026\nFrom: Dora <d@e>\nSubject: s\n\n>From x\n\n';
    expect(readMbox(Buffer.from(foreign))).toEqual([{ note: '', message: Buffer.from('From: Dora <d@e>\nSubject: s\n\nFrom x\n') }]);
  });
  it('formats asctime in UTC with a space-padded day', () => {
    expect(asctime(new Date(Date.UTC(2026, 0, 1, 0, 0, 0)))).toBe('Thu Jan  1 00:00:00 2026');
    expect(asctime(new Date(Date.UTC(2026, 10, 28, 23, 59, 9)))).toBe('Sat Nov 28 23:59:09 2026');
    expect(asctime(new Date('2026-11-28T23:59:09-05:00'))).toBe('Sun Nov 29 04:59:09 2026'); // UTC, whatever the zone
  });
});

// ---------------------------------------------------------------------------------------
// The built program, run as an MTA runs it
// ---------------------------------------------------------------------------------------

const base = (dir: string) => ['--dir', dir, '--domain', 'tickets.example', '--lock-timeout', '20'];
const to = (dir: string, recipient: string, sender = 'alice@customer.example', more: string[] = []) =>
  [...base(dir), '--recipient', recipient, '--sender', sender, ...more];
const log = (dir: string) => readFileSync(join(dir, '.ticket-mail', 'log'), 'utf8').trim().split('\n').map((l) => l.split('\t'));
const mode = (path: string) => statSync(path).mode & 0o777;

describe('delivery', () => {
  it('creates, appends, closes and reopens, with private permissions under any umask', () => {
    const dir = join(tempDir(), 'tickets');
    const first = mail({ id: 'first@customer.example' });
    const r = deliver(to(dir, 'submit@tickets.example'), first, {}, 'umask 022;');
    expect(r).toMatchObject({ status: 0, stderr: '' });
    expect(stored(join(dir, '1')).map(String)).toEqual([first]);
    for (const p of [dir, join(dir, 'archived'), join(dir, '.ticket-mail')]) expect(mode(p)).toBe(0o700);
    for (const p of [join(dir, '1'), join(dir, '.ticket-mail', 'log')]) expect(mode(p)).toBe(0o600);

    const reply = mail({ subject: 'Re: [issue1] Printer on fire', body: 'From the third floor\n' });
    expect(deliver(to(dir, 'submit@tickets.example'), reply).status).toBe(0);
    const byAddress = mail({ from: 'Max <max@tickets.example>', subject: 'Re: Printer' });
    expect(deliver(to(dir, 'ticket-1@tickets.example', 'max@tickets.example'), byAddress).status).toBe(0);
    const done = mail({ subject: 'fixed' });
    expect(deliver(to(dir, 'ticket-1-done@tickets.example'), done).status).toBe(0);
    expect(existsSync(join(dir, '1'))).toBe(false);
    expect(stored(join(dir, 'archived', '1')).map(String)).toEqual([first, reply, byAddress, done]);
    expect(pythonCounts([join(dir, 'archived', '1')])).toEqual([4]);

    const again = mail({ subject: 'Re: [issue1] it is burning again' });
    expect(deliver(to(dir, 'submit@tickets.example'), again).status).toBe(0);
    expect(existsSync(join(dir, 'archived', '1'))).toBe(false);
    expect(stored(join(dir, '1'))).toHaveLength(5);
    expect(log(dir).map((f) => [f[4], f[5], f[6]])).toEqual([
      ['create/submit', '1', 'created'], ['append/subject-tag', '1', 'appended'], ['append/address', '1', 'appended'],
      ['close/address', '1', 'closed'], ['append/subject-tag', '1', 'reopened'],
    ]);
  });

  it('reads the envelope from an Exim pipe and drops its From_ line', () => {
    const dir = tempDir();
    const message = mail({ id: 'exim@customer.example' });
    const exim = { LOCAL_PART: 'submit', LOCAL_PART_SUFFIX: '', DOMAIN: 'tickets.example', RECIPIENT: 'submit@tickets.example', SENDER: 'alice@customer.example' };
    expect(deliver(base(dir), `From alice@customer.example Sat Nov 28 01:42:18 2026\n${message}`, exim).status).toBe(0);
    const raw = readFileSync(join(dir, '1'), 'latin1');
    expect(raw.startsWith('From alice@customer.example ')).toBe(true);
    expect(stored(join(dir, '1')).map(String)).toEqual([message]);
    const closeEnv = { ...exim, LOCAL_PART: 'ticket-1', LOCAL_PART_SUFFIX: '-done', RECIPIENT: 'ticket-1-done@tickets.example' };
    expect(deliver(base(dir), mail(), closeEnv).status).toBe(0);
    expect(existsSync(join(dir, 'archived', '1'))).toBe(true);
    // Bounces (empty SENDER) are stored with MAILER-DAEMON.
    expect(deliver(base(dir), mail({ subject: 'Undeliverable' }), { ...exim, SENDER: '' }).status).toBe(0);
    expect(readFileSync(join(dir, '2'), 'latin1').startsWith('From MAILER-DAEMON ')).toBe(true);
    // A sender that begins with "-", given as a word of its own (Postfix's pipe(8) ${sender}).
    expect(deliver(to(dir, 'ticket-2@tickets.example', '-bob@x.example'), mail()).status).toBe(0);
    expect(readFileSync(join(dir, '2'), 'latin1')).toMatch(/^From -bob@x\.example /m);
  });

  it('falls back to the headers when nobody gives an envelope of ours (a shell, procmail, a .forward)', () => {
    const dir = tempDir();
    const message = mail({ to: 'Help <Ticket-5@Tickets.Example>', headers: ['Delivered-To: someone@elsewhere.example'] });
    writeFileSync(join(dir, '5'), '', { mode: 0o600 });
    expect(deliver(base(dir), message).status).toBe(0);
    const forwarded = mail({ to: 'ticket-5@tickets.example', subject: 'via my .forward' });
    expect(deliver(base(dir), forwarded, { LOCAL_PART: 'me', DOMAIN: 'example.org', SENDER: 'alice@customer.example' }).status).toBe(0);
    expect(stored(join(dir, '5')).map(String)).toEqual([message, forwarded]);
  });

  it('files mail for an unknown ticket in unmatched, or bounces it on request', () => {
    const dir = tempDir();
    const r = deliver(to(dir, 'ticket-9@tickets.example'), mail());
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('ticket-mail: filed in unmatched: ticket 9 does not exist\n');
    const tagged = mail({ subject: 'Re: [issue12] hello' });
    expect(deliver(to(dir, 'submit@tickets.example'), tagged).status).toBe(0);
    expect(stored(join(dir, 'unmatched'))).toHaveLength(2);
    expect(readdirSync(dir).filter((n) => /^\d+$/.test(n))).toEqual([]); // no ticket was opened
    const bounced = deliver(to(dir, 'ticket-9@tickets.example', 'a@b.example', ['--unknown', 'bounce']), mail());
    expect(bounced).toMatchObject({ status: 67, stderr: 'ticket-mail: ticket 9 does not exist\n' });
    expect(stored(join(dir, 'unmatched'))).toHaveLength(2);
    // An address that is none of ours is kept too, never dropped.
    expect(deliver(to(dir, 'ticket-007@tickets.example'), mail()).stderr).toMatch(/bad ticket number/);
    expect(stored(join(dir, 'unmatched'))).toHaveLength(3);
  });

  it('answers every bad input with one sentence and the right exit status', () => {
    const dir = tempDir();
    const cases: Array<[string[], string | Buffer, number, RegExp]> = [
      [to(dir, 'submit@x'), '', 65, /empty message/],
      [to(dir, 'submit@x'), 'This is not a mail message.\n', 65, /no header/],
      [to(dir, 'submit@x', 'a@b', ['--max-size', '1k']), mail({ body: 'x'.repeat(5000) }), 65, /larger than/],
      [to(dir, 'submit@x', 'a@b', ['--close-policy', 'whoever']), mail(), 75, /closePolicy/],
      [to(join(dir, 'no', 'such', 'parent'), 'submit@x'), mail(), 75, /parent folder does not exist/],
      [[...to(dir, 'submit@x'), '--frobnicate'], mail(), 75, /Unknown option/],
      [to(dir, 'submit@x', 'a@b', ['--config', join(dir, 'missing.json')]), mail(), 75, /config file/],
    ];
    for (const [args, input, status, message] of cases) {
      const r = deliver(args, input);
      expect(r.status, String(message)).toBe(status);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect(readdirSync(dir).filter((n) => n !== '.ticket-mail' && n !== 'archived')).toEqual([]);
  });

  it('stops reading an endless stream at --max-size', () => {
    const dir = tempDir();
    const r = spawnSync('sh', ['-c', `yes "From: endless" | "${process.execPath}" "$0" "$@"`, join(import.meta.dirname, 'dist', 'ticket-mail.cjs'),
      ...to(dir, 'submit@x', 'a@b', ['--max-size', '1M'])]);
    expect(r.status).toBe(65);
    expect(existsSync(join(dir, '1'))).toBe(false);
  });

  it('stores messages around the 1 MiB held in memory byte for byte (the rest is spooled)', () => {
    const dir = tempDir();
    const MiB = 1 << 20;
    /** A message of exactly `size` bytes whose "From " line starts `fromAt` bytes before the MiB. */
    const sized = (size: number, fromAt: number, finalNewline: boolean) => {
      const head = Buffer.from(`Subject: ${size}\n\n`);
      const body = Buffer.alloc(size - head.length, 'x');
      const from = body.length - (size - MiB) - fromAt - head.length;
      if (from > 0) { body[from - 1] = 0x0a; body.write('From the middle\n', from, 'latin1'); }
      body[body.length - 1] = finalNewline ? 0x0a : 0x78;
      return Buffer.concat([head, body]);
    };
    const inputs = [
      sized(MiB - 1, 100, true), sized(MiB, 3, true), sized(MiB, 3, false), sized(MiB + 1, 2, false),
      sized(MiB + 70_000, 2, true), sized(3 * MiB + 5, 40_000, false),
    ];
    inputs.forEach((input, i) => {
      expect(deliver(to(dir, 'submit@x'), input).status).toBe(0);
      expect(stored(join(dir, String(i + 1)))[0]!.equals(input), `message of ${input.length} bytes`).toBe(true);
    });
    expect(readdirSync(join(dir, '.ticket-mail')).filter((n) => n.startsWith('spool'))).toEqual([]);
  });

  it('takes settings from a JSON config file, flags winning', () => {
    const dir = tempDir();
    const config = join(dir, 'config.json');
    writeFileSync(config, JSON.stringify({ dir: join(dir, 't'), submit: 'help', ticketAddress: 'case-N' }));
    expect(deliver(['--recipient', 'help@x', '--sender', 'a@b'], mail(), { TICKET_MAIL_CONFIG: config }).status).toBe(0);
    expect(deliver(['--config', config, '--recipient', 'case-1@x'], mail()).status).toBe(0);
    expect(stored(join(dir, 't', '1'))).toHaveLength(2);
    expect(deliver(['--config', config, '--submit', 'new', '--recipient', 'new@x'], mail()).status).toBe(0);
    expect(existsSync(join(dir, 't', '2'))).toBe(true);
  });

  it('shows every option with its default, and its version', () => {
    const help = deliver(['--help'], '').stdout;
    for (const option of ['--dir', '--domain', '--submit', '--ticket-address', '--close-address', '--tag', '--admin',
      '--close-policy', '--unknown', '--recipient', '--sender', '--max-size', '--lock-timeout', '--stale-lock', '--config']) {
      expect(help).toContain(option);
    }
    expect(help).toContain('(default: ticket-N-done)');
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, 'package.json'), 'utf8'));
    expect(deliver(['--version'], '').stdout).toContain(pkg.version);
  });
});

describe('close and reopen policy', () => {
  const setup = () => {
    const dir = tempDir();
    expect(deliver(to(dir, 'submit@tickets.example'), mail()).status).toBe(0);
    return dir;
  };
  it('lets the submitter and admins close, files anyone else\'s close as a message', () => {
    const dir = setup();
    const stranger = mail({ from: 'mallory@evil.example' });
    expect(deliver(to(dir, 'ticket-1-done@tickets.example', 'mallory@evil.example'), stranger).status).toBe(0);
    expect(existsSync(join(dir, '1'))).toBe(true);
    expect(log(dir).at(-1)![6]).toBe('close-refused');
    const admin = mail({ from: 'Max <MAX@tickets.example>' });
    expect(deliver(to(dir, 'ticket-1-done@tickets.example', 'max@tickets.example', ['--admin', 'max@tickets.example']), admin).status).toBe(0);
    expect(existsSync(join(dir, 'archived', '1'))).toBe(true);
    expect(stored(join(dir, 'archived', '1'))).toHaveLength(3);
    // Closing a closed ticket only appends.
    expect(deliver(to(dir, 'ticket-1-done@tickets.example'), mail()).status).toBe(0);
    expect(stored(join(dir, 'archived', '1'))).toHaveLength(4);
    expect(existsSync(join(dir, '1'))).toBe(false);
  });
  it('lets anyone close with --close-policy anyone', () => {
    const dir = setup();
    expect(deliver(to(dir, 'ticket-1-done@tickets.example', 'x@y.example', ['--close-policy', 'anyone']), mail({ from: 'x@y.example' })).status).toBe(0);
    expect(existsSync(join(dir, 'archived', '1'))).toBe(true);
  });
  it('files automatic mail in an archived ticket without reopening it', () => {
    const dir = setup();
    expect(deliver(to(dir, 'ticket-1-done@tickets.example'), mail()).status).toBe(0);
    const vacation = mail({ subject: 'Out of office', headers: ['Auto-Submitted: auto-replied'] });
    expect(deliver(to(dir, 'ticket-1@tickets.example'), vacation).status).toBe(0);
    expect(deliver(to(dir, 'ticket-1@tickets.example', '<>'), mail({ subject: 'Undeliverable' })).status).toBe(0);
    expect(existsSync(join(dir, '1'))).toBe(false);
    expect(stored(join(dir, 'archived', '1'))).toHaveLength(4);
    const human = mail({ headers: ['Auto-Submitted: no'] });
    expect(deliver(to(dir, 'ticket-1@tickets.example'), human).status).toBe(0);
    expect(stored(join(dir, '1'))).toHaveLength(5);
    expect(log(dir).map((f) => f[6])).toEqual(['created', 'closed', 'appended-archived', 'appended-archived', 'reopened']);
  });
});

describe('exactly once', () => {
  it('files the same message once, however often and wherever it is sent', () => {
    const dir = tempDir();
    const first = mail({ id: 'one@customer.example' });
    expect(deliver(to(dir, 'submit@tickets.example'), first).status).toBe(0);
    expect(deliver(to(dir, 'submit@tickets.example'), first).status).toBe(0); // an MTA retry
    expect(existsSync(join(dir, '2'))).toBe(false);
    const reply = mail({ id: 'two@customer.example', subject: 'more' });
    expect(deliver(to(dir, 'ticket-1@tickets.example'), reply).status).toBe(0);
    expect(deliver(to(dir, 'ticket-1@tickets.example'), reply).status).toBe(0);
    // The same new mail sent to submit@ and Cc ticket-1@: delivered once per address.
    const both = mail({ id: 'three@customer.example', subject: 'new question', to: 'submit@tickets.example', headers: ['Cc: ticket-1@tickets.example'] });
    expect(deliver(to(dir, 'ticket-1@tickets.example'), both).status).toBe(0);
    expect(deliver(to(dir, 'submit@tickets.example'), both).status).toBe(0);
    expect(existsSync(join(dir, '2'))).toBe(false);
    expect(stored(join(dir, '1'))).toHaveLength(3);
    expect(log(dir).map((f) => f[6])).toEqual(['created', 'duplicate', 'appended', 'duplicate', 'appended', 'duplicate']);
  });
  it('finishes a retried close whose move was cut short, filing the message once', () => {
    const dir = tempDir();
    expect(deliver(to(dir, 'submit@tickets.example'), mail()).status).toBe(0);
    const close = mail({ id: 'close@customer.example', subject: 'done' });
    // The state a crash between filing the close and moving the file leaves: filed, still open.
    expect(deliver(to(dir, 'ticket-1@tickets.example'), close).status).toBe(0);
    expect(deliver(to(dir, 'ticket-1-done@tickets.example'), close).status).toBe(0);
    expect(existsSync(join(dir, '1'))).toBe(false);
    const messages = stored(join(dir, 'archived', '1')).map(String);
    expect(messages).toHaveLength(2);
    expect(messages[1]).toBe(close);
    expect(log(dir).at(-1)![6]).toBe('closed');
  });

  it('threads a reply without a tag through the index', () => {
    const dir = tempDir();
    expect(deliver(to(dir, 'submit@tickets.example'), mail({ id: 'root@customer.example' })).status).toBe(0);
    expect(deliver(to(dir, 'submit@tickets.example'), mail({ subject: 'other', id: 'other@x' })).status).toBe(0);
    const reply = mail({ subject: 'Re: Printer', headers: ['In-Reply-To: <root@customer.example>'] });
    expect(deliver(to(dir, 'submit@tickets.example'), reply).status).toBe(0);
    expect(stored(join(dir, '1'))).toHaveLength(2);
    expect(log(dir).at(-1)![4]).toBe('append/thread');
  });
  it('never reuses a number, archived or not', () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'archived'), { mode: 0o700 });
    writeFileSync(join(dir, 'archived', '41'), '', { mode: 0o600 });
    writeFileSync(join(dir, '7'), '', { mode: 0o600 });
    expect(deliver(to(dir, 'submit@tickets.example'), mail()).status).toBe(0);
    expect(existsSync(join(dir, '42'))).toBe(true);
    expect(deliver(to(dir, 'ticket-42-done@tickets.example'), mail()).status).toBe(0);
    expect(deliver(to(dir, 'submit@tickets.example'), mail()).status).toBe(0);
    expect(existsSync(join(dir, '43'))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------
// Concurrency and failure
// ---------------------------------------------------------------------------------------

describe('concurrency', () => {
  it('files 200 concurrent deliveries into one ticket intact', async () => {
    const dir = tempDir();
    expect(deliver(to(dir, 'submit@tickets.example'), mail()).status).toBe(0);
    const messages = Array.from({ length: 200 }, (_, i) => mail({ id: `c${i}@x`, body: `message ${i}\nFrom line ${i}\n`.repeat(20) }));
    const runs = await pool(messages, 50, (m) => deliverAsync(to(dir, 'ticket-1@tickets.example', 'a@b', ['--lock-timeout', '120']), m));
    expect(runs.filter((r) => r.status !== 0)).toEqual([]);
    const got = stored(join(dir, '1')).map(String);
    expect(got).toHaveLength(201);
    expect(new Set(got.slice(1))).toEqual(new Set(messages));
    expect(pythonCounts([join(dir, '1')])).toEqual([201]);
  }, 120_000);

  it('numbers 100 concurrent submissions 1..100', async () => {
    const dir = tempDir();
    const messages = Array.from({ length: 100 }, (_, i) => mail({ id: `s${i}@x`, subject: `question ${i}` }));
    const runs = await pool(messages, 50, (m) => deliverAsync(to(dir, 'submit@tickets.example', 'a@b', ['--lock-timeout', '120']), m));
    expect(runs.filter((r) => r.status !== 0)).toEqual([]);
    const numbers = readdirSync(dir).filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b);
    expect(numbers).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    const all = numbers.flatMap((n) => stored(join(dir, String(n))).map(String));
    expect(new Set(all)).toEqual(new Set(messages));
  }, 120_000);

  it('loses no append that races closes and reopens', async () => {
    const dir = tempDir();
    const first = mail();
    expect(deliver(to(dir, 'submit@tickets.example'), first).status).toBe(0);
    const jobs = Array.from({ length: 90 }, (_, i) => (i % 3 === 0
      ? { recipient: 'ticket-1-done@tickets.example', message: mail({ id: `close${i}@x`, subject: `close ${i}` }) }
      : { recipient: 'ticket-1@tickets.example', message: mail({ id: `add${i}@x`, subject: `add ${i}` }) }));
    const runs = await pool(jobs, 30, (j) => deliverAsync(to(dir, j.recipient, 'alice@customer.example', ['--lock-timeout', '120']), j.message));
    expect(runs.filter((r) => r.status !== 0)).toEqual([]);
    const open = stored(join(dir, '1')).map(String);
    const archived = stored(join(dir, 'archived', '1')).map(String);
    expect(open.length === 0 || archived.length === 0).toBe(true); // one place only
    expect(new Set([...open, ...archived])).toEqual(new Set([first, ...jobs.map((j) => j.message)]));
    expect(open.length + archived.length).toBe(91);
    expect(readdirSync(dir).filter((n) => n.includes('.lock'))).toEqual([]);
  }, 120_000);
});

describe('failures roll back and ask the MTA to retry', () => {
  const ticketWithOneMessage = () => {
    const dir = tempDir();
    expect(deliver(to(dir, 'submit@tickets.example'), mail()).status).toBe(0);
    return { dir, before: readFileSync(join(dir, '1')) };
  };
  it('truncates back when a write fails (ulimit -f)', () => {
    const { dir, before } = ticketWithOneMessage();
    const big = mail({ body: 'x'.repeat(200_000) });
    const r = deliver(to(dir, 'ticket-1@tickets.example'), big, {}, 'ulimit -f 64;');
    expect(r.status).toBe(75);
    expect(r.stderr).toMatch(/^ticket-mail: cannot write .*EFBIG\n$/);
    expect(readFileSync(join(dir, '1'))).toEqual(before);
    expect(existsSync(join(dir, '1.lock'))).toBe(false);
  });
  it('waits for a held lock, then gives up with 75; succeeds once it is released', async () => {
    const { dir, before } = ticketWithOneMessage();
    writeFileSync(join(dir, '1.lock'), 'held by mutt\n');
    const r = deliver(to(dir, 'ticket-1@tickets.example', 'a@b', ['--lock-timeout', '1']), mail());
    expect(r).toMatchObject({ status: 75, stderr: expect.stringMatching(/locked for 1 seconds straight/) });
    expect(readFileSync(join(dir, '1'))).toEqual(before);
    const waiting = deliverAsync(to(dir, 'ticket-1@tickets.example', 'a@b', ['--lock-timeout', '20']), mail());
    await new Promise((r) => setTimeout(r, 700));
    expect(stored(join(dir, '1'))).toHaveLength(1);
    spawnSync('rm', [join(dir, '1.lock')]);
    expect((await waiting).status).toBe(0);
    expect(stored(join(dir, '1'))).toHaveLength(2);
  });
  it('breaks a stale lock: a dead holder\'s half-written append is undone, an old foreign lock is taken over', () => {
    const { dir, before } = ticketWithOneMessage();
    const path = join(dir, '1');
    writeFileSync(path, Buffer.concat([before, Buffer.from('From half@written Sat Nov 28 01:00:00 2026\nSubject: cut')]));
    writeFileSync(`${path}.lock`, `ticket-mail 999999999 ${hostname()} append 1 ${before.length} -\n`);
    const m = mail({ subject: 'after the crash' });
    expect(deliver(to(dir, 'ticket-1@tickets.example'), m).status).toBe(0);
    expect(stored(path).map(String).slice(1)).toEqual([m]);
    expect(pythonCounts([path])).toEqual([2]);
    writeFileSync(`${path}.lock`, 'foreign lock\n');
    const old = Date.now() / 1000 - 3600;
    utimesSync(`${path}.lock`, old, old);
    expect(deliver(to(dir, 'ticket-1@tickets.example', 'a@b', ['--stale-lock', '600']), mail()).status).toBe(0);
    expect(stored(path)).toHaveLength(3);
    expect(readdirSync(dir).filter((n) => n.includes('.lock'))).toEqual([]);
  });
  it('asks after a lock\'s holder only once the lock is a second old, or dated in the future', () => {
    const { dir } = ticketWithOneMessage();
    const lock = join(dir, '1.lock');
    const now = Date.now() / 1000;
    const attempt = (mtime: number) => {
      writeFileSync(lock, `ticket-mail 999999999 ${hostname()} wait\n`);
      utimesSync(lock, mtime, mtime);
      return deliver(to(dir, 'ticket-1@tickets.example', 'a@b', ['--lock-timeout', '0']), mail());
    };
    // --lock-timeout 0: one look at the lock, then give up; a dead holder's lock is broken
    // only if that one look checked its holder.
    expect(attempt(now)).toMatchObject({ status: 75, stderr: expect.stringMatching(/locked for 0 seconds/) });
    expect(stored(join(dir, '1'))).toHaveLength(1);
    expect(attempt(now - 2).status).toBe(0);
    expect(attempt(now + 3600).status).toBe(0);
    expect(stored(join(dir, '1'))).toHaveLength(3);
    expect(existsSync(lock)).toBe(false);
  });
  it('repairs a dead holder\'s step before anything else, and leaves the lock for the next taker when the repair fails', () => {
    const dir = tempDir();
    expect(deliver(to(dir, 'submit@tickets.example'), mail({ id: 'one@customer.example' })).status).toBe(0);
    const second = mail({ id: 'two@customer.example', subject: 'second' });
    expect(deliver(to(dir, 'submit@tickets.example'), second).status).toBe(0);
    // A creator that died after linking ticket 2 into place, before noting it in the index.
    const ids = join(dir, '.ticket-mail', 'ids');
    const key = MessageIndex.key('two@customer.example');
    const filing = `${key} ${messagePrint(Message.of(Buffer.from(second)))}`;
    rmSync(join(ids, key.slice(0, 2), key.slice(2)));
    const numbersLock = join(dir, '.ticket-mail', 'numbers.lock');
    const dead = () => {
      const old = Date.now() / 1000 - 2;
      utimesSync(numbersLock, old, old);
    };
    writeFileSync(numbersLock, `ticket-mail 999999999 ${hostname()} create 2 ${filing}\n`);
    dead();
    // The repair cannot read the index (a file where its folder should be): defer, keep the step.
    renameSync(ids, `${ids}.away`);
    writeFileSync(ids, '');
    const failed = deliver(to(dir, 'submit@tickets.example'), mail({ subject: 'third' }));
    expect(failed).toMatchObject({ status: 75, stderr: expect.stringMatching(/^ticket-mail: cannot repair what a dead process left under .*numbers\.lock: .*ENOTDIR.*\n$/) });
    expect(readFileSync(numbersLock, 'latin1')).toMatch(new RegExp(`^ticket-mail \\d+ \\S+ create 2 ${filing}\n$`));
    expect(existsSync(join(dir, '3'))).toBe(false);
    rmSync(ids);
    renameSync(`${ids}.away`, ids);
    dead();
    expect(deliver(to(dir, 'submit@tickets.example'), mail({ subject: 'third' })).status).toBe(0);
    expect(existsSync(numbersLock)).toBe(false);
    expect(deliver(to(dir, 'submit@tickets.example'), second).status).toBe(0); // the MTA's retry of ticket 2's message
    expect(log(dir).map((f) => [f[5], f[6]]).slice(-2)).toEqual([['3', 'created'], ['2', 'duplicate']]);
    expect(existsSync(join(dir, '4'))).toBe(false);
  });
  it('never files a message twice for a broken index: an unreadable one defers, an unwritable one warns after filing', (ctx) => {
    const dir = tempDir();
    expect(deliver(to(dir, 'submit@tickets.example'), mail({ id: 'one@customer.example' })).status).toBe(0);
    const ids = join(dir, '.ticket-mail', 'ids');
    renameSync(ids, `${ids}.away`);
    writeFileSync(ids, '');
    const unreadable = deliver(to(dir, 'ticket-1@tickets.example'), mail({ id: 'two@customer.example' }));
    expect(unreadable).toMatchObject({ status: 75, stderr: expect.stringMatching(/^ticket-mail: cannot read the message index \(\/.*, as uid \d+\): ENOTDIR\n$/) });
    expect(stored(join(dir, '1'))).toHaveLength(1);
    rmSync(ids);
    renameSync(`${ids}.away`, ids);
    const mounted = spawnSync('sh', ['-c', `mount --bind "$0" "$0" && mount -o remount,ro,bind "$0"`, ids]);
    if (mounted.status !== 0) {
      console.log(`skipped the read-only index: cannot bind-mount here (${mounted.stderr.toString().trim()})`);
      ctx.skip();
    }
    try {
      // Filed and fsync'd before the index refuses: a 75 now would have the MTA file it again.
      const unwritable = deliver(to(dir, 'ticket-1@tickets.example'), mail({ id: 'two@customer.example' }));
      expect(unwritable).toMatchObject({ status: 0, stderr: 'ticket-mail: ticket 1: filed, but not noted in the message index (EROFS)\n' });
      const created = deliver(to(dir, 'submit@tickets.example'), mail({ id: 'three@customer.example', subject: 'new' }));
      expect(created).toMatchObject({ status: 0, stderr: 'ticket-mail: ticket 2: filed, but not noted in the message index (EROFS)\n' });
    } finally {
      spawnSync('umount', [ids]);
    }
    expect(stored(join(dir, '1'))).toHaveLength(2);
    expect(stored(join(dir, '2'))).toHaveLength(1);
    expect(readdirSync(dir).filter((n) => n.includes('.lock'))).toEqual([]);
  });
  it('exits 75 on a full disk, a read-only folder and a folder it cannot create, the mbox unchanged', (ctx) => {
    const mnt = tempDir();
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', mnt]);
    if (mounted.status !== 0) {
      console.log(`skipped: cannot mount a small tmpfs here (${mounted.stderr.toString().trim()})`);
      ctx.skip();
    }
    try {
      expect(deliver(to(mnt, 'submit@tickets.example'), mail()).status).toBe(0);
      const before = readFileSync(join(mnt, '1'));
      const full = deliver(to(mnt, 'ticket-1@tickets.example'), mail({ body: 'y'.repeat(400_000) }));
      expect(full.status).toBe(75);
      expect(full.stderr).toMatch(/ENOSPC/);
      expect(readFileSync(join(mnt, '1'))).toEqual(before);
      expect(spawnSync('mount', ['-o', 'remount,ro', mnt]).status).toBe(0);
      const ro = deliver(to(mnt, 'ticket-1@tickets.example'), mail());
      expect(ro.status).toBe(75);
      expect(ro.stderr).toMatch(/EROFS/);
      expect(readFileSync(join(mnt, '1'))).toEqual(before);
      const cannotCreate = deliver(to(join(mnt, 'new-tickets'), 'submit@tickets.example'), mail());
      expect(cannotCreate.status).toBe(75);
      expect(cannotCreate.stderr).toMatch(/cannot create .*new-tickets: EROFS/);
    } finally {
      spawnSync('umount', [mnt]);
    }
  });
});

// ---------------------------------------------------------------------------------------
// The real-world corpus (next to the project in a developer checkout, absent in a user's clone)
// ---------------------------------------------------------------------------------------

describe('corpus round trip', () => {
  it('stores every real-world message byte for byte, one mbox message per delivery', async (ctx) => {
    const files = corpusFiles(ctx);
    expect(files.length).toBeGreaterThan(400);
    const root = tempDir('tm-corpus-');
    const results = await pool(files, 4, async (path, i) => {
      const dir = join(root, String(i));
      const input = readFileSync(path);
      const run = await deliverAsync(to(dir, 'submit@tickets.example', 'corpus@test.example'), input);
      return { path, input, run, mbox: join(dir, '1') };
    });
    const filed = results.filter((r) => r.run.status === 0);
    for (const r of results.filter((x) => x.run.status !== 0)) {
      // The only refusals allowed: empty input, or input whose first line is no header field.
      expect(r.run.status, r.path).toBe(65);
      const firstLine = splitEnvelopeLine(r.input).message.toString('latin1').split('\n')[0]!;
      expect(firstLine, r.path).not.toMatch(/^[!-9;-~]+[ \t]*:/);
      expect(existsSync(r.mbox)).toBe(false);
    }
    expect(filed.length).toBeGreaterThan(400);
    for (const r of filed) {
      const expected = splitEnvelopeLine(r.input).message;
      const messages = stored(r.mbox);
      expect(messages.length, r.path).toBe(1);
      expect(messages[0]!.equals(expected), r.path).toBe(true);
    }
    expect(pythonCounts(filed.map((r) => r.mbox))).toEqual(filed.map(() => 1));
  }, 300_000);
});

// ---------------------------------------------------------------------------------------
// Mail we send: acknowledgements, notifications, notices, errors; loop safety; failures
// ---------------------------------------------------------------------------------------

const ADMINS = ['max@tickets.example', 'moritz@tickets.example'];

/** A tickets folder with a fake sendmail recording into `outbox`. */
function mailSetup(more: string[] = []) {
  const dir = tempDir();
  const outbox = join(dir, 'sent');
  mkdirSync(outbox);
  const env = { FAKE_SENDMAIL_DIR: outbox };
  const args = (recipient: string, sender: string, extra: string[] = []) => [...to(join(dir, 't'), recipient, sender),
    '--sendmail', FAKE_SENDMAIL, ...ADMINS.flatMap((a) => ['--admin', a]), ...more, ...extra];
  const send = (recipient: string, sender: string, message: string, extra: string[] = [], extraEnv = {}) =>
    deliver(args(recipient, sender, extra), message, { ...env, ...extraEnv });
  return { dir, tickets: join(dir, 't'), outbox, env, args, send, sent: () => sentMail(outbox) };
}

/** What every message we send must be: parseable, RFC 5322 line lengths, the right encodings. */
async function checkOutgoing(sent: Sent): Promise<Email> {
  expect(sent.args.slice(0, 4)).toEqual(['-oi', '-f', '<>', '--']);
  for (const line of sent.text.split('\n')) expect(line.length).toBeLessThanOrEqual(998);
  for (const line of sent.text.slice(0, sent.text.indexOf('\n\n')).split('\n')) expect(line.length).toBeLessThanOrEqual(78);
  expect(sent.text).toMatch(/^[\x09\x0a\x20-\x7e]*$/); // no raw 8-bit anywhere
  expect(sent.headers.get('date')?.[0]).toMatch(/^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000$/);
  expect(sent.headers.get('message-id')?.[0]).toMatch(/^<ticket-mail\.(\d+|none)\.[0-9a-f]{16}@tickets\.example>$/);
  expect(sent.headers.get('x-ticket-mail-loop')).toEqual(['tickets.example']);
  expect(sent.headers.has('bcc')).toBe(false);
  const email = await PostalMime.parse(sent.text);
  expect(email.text).toBeTruthy();
  if (/[^\x00-\x7f]/.test(email.text!)) expect(sent.headers.get('content-transfer-encoding')).toEqual(['base64']);
  return email;
}

describe('acknowledgements and notifications', () => {
  it('acknowledges a new ticket once and notifies each admin once', async () => {
    const m = mailSetup();
    const first = mail({ from: 'Alice Example <alice@customer.example>', id: 'q1@customer.example', subject: 'Printer on fire' });
    expect(m.send('submit@tickets.example', 'alice@customer.example', first)).toMatchObject({ status: 0, stderr: '' });
    const sent = m.sent();
    expect(sent.map((s) => s.recipients)).toEqual([['alice@customer.example'], ['max@tickets.example'], ['moritz@tickets.example']]);
    const [ack, ...notes] = sent as [Sent, Sent, Sent];
    expect(ack.headers.get('from')).toEqual(['Support <ticket-1@tickets.example>']);
    expect(ack.headers.get('reply-to')).toEqual(['ticket-1@tickets.example']);
    expect(ack.headers.get('to')).toEqual(['alice@customer.example']);
    expect(ack.headers.get('subject')).toEqual(['[issue1] Printer on fire']);
    expect(ack.headers.get('in-reply-to')).toEqual(['<q1@customer.example>']);
    expect(ack.headers.get('references')).toEqual(['<q1@customer.example>']);
    expect(ack.headers.get('auto-submitted')).toEqual(['auto-replied']);
    expect(ack.headers.get('message-id')![0]).toMatch(/^<ticket-mail\.1\./);
    const ackText = (await checkOutgoing(ack)).text!;
    expect(ackText).toContain('ticket 1');
    expect(ackText).toContain('ticket-1@tickets.example');
    expect(ackText).toContain('ticket-1-done@tickets.example');
    for (const note of notes) {
      expect(note.headers.get('subject')).toEqual(['[issue1] New: Printer on fire']);
      expect(note.headers.get('reply-to')).toEqual(['alice@customer.example, ticket-1@tickets.example']);
      expect(note.headers.get('auto-submitted')).toEqual(['auto-generated']);
      const text = (await checkOutgoing(note)).text!;
      expect(text).toContain('Alice Example <alice@customer.example>');
      expect(text).toContain('Hello.');
    }
    // An update from the submitter: notifications, no acknowledgement.
    expect(m.send('ticket-1@tickets.example', 'alice@customer.example', mail({ subject: 'Re: [issue1] more smoke' })).status).toBe(0);
    expect(m.sent().slice(3).map((s) => [s.recipients[0], s.headers.get('subject')![0]])).toEqual([
      ['max@tickets.example', '[issue1] Update: Re: more smoke'], ['moritz@tickets.example', '[issue1] Update: Re: more smoke']]);
    // An admin's answer: nobody is notified.
    expect(m.send('ticket-1@tickets.example', 'max@tickets.example', mail({ from: 'Max <max@tickets.example>' })).status).toBe(0);
    expect(m.sent()).toHaveLength(5);
  });

  it('threads a reply to the acknowledgement whose tag was deleted, through its Message-ID', () => {
    const m = mailSetup(['--notify', 'none']);
    expect(m.send('submit@tickets.example', 'alice@customer.example', mail()).status).toBe(0);
    const ackId = m.sent()[0]!.headers.get('message-id')![0]!;
    const reply = mail({ subject: 'thanks (tag removed)', headers: [`In-Reply-To: ${ackId}`, `References: ${ackId}`] });
    expect(m.send('submit@tickets.example', 'alice@customer.example', reply).status).toBe(0);
    expect(stored(join(m.tickets, '1'))).toHaveLength(2);
    expect(existsSync(join(m.tickets, '2'))).toBe(false);
  });

  it('tells the submitter when someone else closes, quoting the closer, and the admins on reopen', async () => {
    const m = mailSetup();
    expect(m.send('submit@tickets.example', 'alice@customer.example', mail()).status).toBe(0);
    const close = mail({ from: 'Max <max@tickets.example>', subject: 'done', body: 'Replaced the fuser unit.\n' });
    expect(m.send('ticket-1-done@tickets.example', 'max@tickets.example', close).status).toBe(0);
    const notice = m.sent()[3]!;
    expect(notice.recipients).toEqual(['alice@customer.example']);
    // It names the ticket by its subject, not by the closing message's ("done").
    expect(notice.headers.get('subject')).toEqual(['[issue1] Closed: Printer on fire']);
    const text = (await checkOutgoing(notice)).text!;
    expect(text).toContain('Ticket 1 (Printer on fire) was closed by Max <max@tickets.example>:');
    expect(text).toContain('Replaced the fuser unit.');
    expect(text).toContain('Max <max@tickets.example>');
    expect(m.sent()).toHaveLength(4); // the admin closed it: no notification
    expect(m.send('ticket-1@tickets.example', 'alice@customer.example', mail({ subject: 'still broken' })).status).toBe(0);
    expect(m.sent().slice(4).map((s) => s.headers.get('subject')![0])).toEqual(['[issue1] Reopened: still broken', '[issue1] Reopened: still broken']);
    // A ticket a bounce opened (null envelope sender, a person's From:): no notice when closed.
    expect(m.send('submit@tickets.example', '', mail({ subject: 'Returned mail' })).status).toBe(0);
    expect(readFileSync(join(m.tickets, '2'), 'latin1')).toMatch(/^From MAILER-DAEMON /);
    const before = m.sent().length;
    expect(m.send('ticket-2-done@tickets.example', 'max@tickets.example', close).status).toBe(0);
    expect(m.sent().slice(before).map((s) => s.headers.get('subject')![0])).toEqual([]);
  });

  it('answers an unknown ticket number and a refused close with an error reply', async () => {
    const m = mailSetup(['--notify', 'none']);
    expect(m.send('ticket-77@tickets.example', 'bob@customer.example', mail({ from: 'bob@customer.example', subject: 'hello' })).status).toBe(0);
    const unknown = m.sent()[0]!;
    expect(unknown.recipients).toEqual(['bob@customer.example']);
    expect(unknown.headers.get('subject')).toEqual(['No such ticket: 77']);
    expect(unknown.headers.get('from')).toEqual(['Support <submit@tickets.example>']);
    const text = (await checkOutgoing(unknown)).text!;
    expect(text).toContain('ticket 77 does not exist');
    expect(text).toContain('submit@tickets.example');
    expect(m.send('submit@tickets.example', 'alice@customer.example', mail()).status).toBe(0);
    expect(m.send('ticket-1-done@tickets.example', 'bob@customer.example', mail({ from: 'bob@customer.example', subject: 'close it' })).status).toBe(0);
    const refused = m.sent()[2]!;
    expect(refused.recipients).toEqual(['bob@customer.example']);
    expect(refused.headers.get('subject')).toEqual(['[issue1] Not closed: close it']);
    expect((await checkOutgoing(refused)).text).toContain('was not closed');
    expect(existsSync(join(m.tickets, '1'))).toBe(true);
  });

  it('shows HTML-only text as text, lists attachments and bounds the quoted text', async () => {
    const m = mailSetup(['--name', 'Kundendienst Müller']);
    const html = [
      'From: Alice <alice@customer.example>', 'To: submit@tickets.example', 'Subject: layout', 'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary=XX', '', '--XX', 'Content-Type: text/html; charset=utf-8', '',
      `<html><head><style>p{color:red}</style></head><body><p>Hello &amp; <b>welcome</b></p><ul><li>one</li></ul>${'<p>filler text</p>'.repeat(600)}</body></html>`,
      '--XX', 'Content-Type: application/pdf; name="report.pdf"', 'Content-Disposition: attachment; filename="report.pdf"',
      'Content-Transfer-Encoding: base64', '', Buffer.alloc(3000).toString('base64'), '--XX--', '',
    ].join('\n');
    expect(m.send('submit@tickets.example', 'alice@customer.example', html).status).toBe(0);
    const [ack, note] = m.sent() as [Sent, Sent];
    expect((await checkOutgoing(ack)).from).toEqual({ name: 'Kundendienst Müller', address: 'ticket-1@tickets.example' });
    const text = (await checkOutgoing(note)).text!;
    expect(text).toContain('Hello & welcome');
    expect(text).toContain('* one');
    expect(text).not.toMatch(/<p>|color:red/);
    expect(text).toContain('report.pdf (3000 bytes)');
    expect(text).toMatch(/\[\.\.\. \d+ more characters in the ticket\]/);
    expect(text.length).toBeLessThan(5000);
  });

  it('takes its wording from template files', async () => {
    const m = mailSetup(['--notify', 'none']);
    const templates = join(m.dir, 'templates');
    mkdirSync(templates);
    writeFileSync(join(templates, 'ack.txt'), 'Moin! Ticket {ticket} ist angelegt. Antworten an {ticket_address}.\n\n> {text}\n');
    expect(m.send('submit@tickets.example', 'alice@customer.example', mail(), ['--templates', templates]).status).toBe(0);
    expect((await checkOutgoing(m.sent()[0]!)).text).toBe('Moin! Ticket 1 ist angelegt. Antworten an ticket-1@tickets.example.\n\n> Hello.\n');
  });

  it('keeps non-ASCII subjects and names readable, and lets no header or recipient be smuggled in', async () => {
    const m = mailSetup();
    const b64 = (s: string) => `=?UTF-8?B?${Buffer.from(s).toString('base64')}?=`;
    const hostile = mail({
      from: `${b64('Jörg\r\nBcc: victim@example.net')} <jorg@customer.example>`,
      subject: `${b64('Café\r\nBcc: victim@example.net\r\n\r\nbody')} crème brûlée ${'ü'.repeat(60)}`,
      headers: ['Reply-To: "x\\"\r\nBcc: victim@example.net" <jorg@customer.example>'],
    });
    expect(m.send('submit@tickets.example', 'jorg@customer.example', hostile).status).toBe(0);
    const sent = m.sent();
    expect(sent.flatMap((s) => s.recipients)).toEqual(['jorg@customer.example', ...ADMINS]);
    for (const s of sent) {
      const email = await checkOutgoing(s);
      expect(s.text).not.toMatch(/^bcc:/im);
      expect(email.headers.map((h) => h.key)).not.toContain('bcc');
      expect(email.subject).toMatch(/^\[issue1\] (New: )?Café Bcc: victim@example\.net body crème brûlée ü+$/);
    }
    expect((await PostalMime.parse(sent[1]!.text)).text).toContain('Jörg Bcc: victim@example.net <jorg@customer.example>');
  });
});

describe('loop and backscatter safety', () => {
  const cases: Array<[string, string, string[], string?]> = [
    ['null envelope sender', '<>', []],
    ['Auto-Submitted', 'alice@customer.example', ['Auto-Submitted: auto-replied']],
    ['Precedence: bulk', 'alice@customer.example', ['Precedence: bulk']],
    ['Precedence: list', 'alice@customer.example', ['Precedence: list']],
    ['Precedence: junk', 'alice@customer.example', ['Precedence: junk']],
    ['List-Id', 'alice@customer.example', ['List-Id: <users.lists.example>']],
    ['List-Unsubscribe', 'alice@customer.example', ['List-Unsubscribe: <mailto:leave@lists.example>']],
    ['X-Auto-Response-Suppress', 'alice@customer.example', ['X-Auto-Response-Suppress: All']],
    ['mailer-daemon', 'MAILER-DAEMON@customer.example', [], 'MAILER-DAEMON@customer.example'],
    ['postmaster', 'postmaster@customer.example', [], 'postmaster@customer.example'],
    ['noreply', 'noreply@customer.example', [], 'noreply@customer.example'],
    ['-request', 'users-request@lists.example', [], 'users-request@lists.example'],
    ['owner-', 'owner-users@lists.example', [], 'owner-users@lists.example'],
    ['one of our own addresses', 'ticket-5@tickets.example', [], 'ticket-5@tickets.example'],
  ];
  it.each(cases)('sends no automatic reply for %s, still files and notifies', (_, sender, headers, from) => {
    const m = mailSetup(['--admin', 'max@tickets.example']);
    expect(m.send('submit@tickets.example', sender, mail({ headers, ...(from ? { from } : {}) })).status).toBe(0);
    expect(stored(join(m.tickets, '1'))).toHaveLength(1);
    expect(m.sent().map((s) => s.headers.get('auto-submitted')![0])).toEqual(['auto-generated', 'auto-generated']);
  });
  it.each(['tickets.example', 'other.example'])('sends nothing at all about mail with the loop header of %s', (domain) => {
    const m = mailSetup();
    expect(m.send('submit@tickets.example', 'alice@customer.example', mail({ headers: [`X-Ticket-Mail-Loop: ${domain}`] })).status).toBe(0);
    expect(stored(join(m.tickets, '1'))).toHaveLength(1);
    expect(m.sent()).toEqual([]);
  });
  it('stops two instances whose acknowledgements reach each other after one message', () => {
    const root = tempDir();
    const relay = join(import.meta.dirname, 'test', 'relay-sendmail');
    for (const domain of ['a.example', 'b.example']) {
      writeFileSync(join(root, `${domain}.json`), JSON.stringify({ dir: join(root, domain), domain, sendmail: relay }));
    }
    const env = { RELAY_ROOT: root, RELAY_NODE: process.execPath, RELAY_BIN: join(import.meta.dirname, 'dist', 'ticket-mail.cjs') };
    // Someone sends a.example mail that claims to come from b.example's submit address.
    const spoofed = mail({ from: 'submit@b.example', to: 'submit@a.example' });
    expect(deliver(['--config', join(root, 'a.example.json'), '--recipient', 'submit@a.example', '--sender', 'submit@b.example'], spoofed, env).status).toBe(0);
    expect(readFileSync(join(root, 'sent'), 'utf8')).toBe('submit@b.example\n'); // a -> b once, b -> a never
    // b files the acknowledgement silently, in a ticket of its own: its [issue1] tag is a's (its loop header says so).
    expect(stored(join(root, 'b.example', '1'))).toHaveLength(1);
    expect(existsSync(join(root, 'b.example', 'unmatched'))).toBe(false);
  });
  it('holds the reply limit across processes', async () => {
    const m = mailSetup(['--notify', 'none', '--reply-limit', '3']);
    const runs = await pool(Array.from({ length: 8 }, (_, i) => mail({ subject: `question ${i}` })), 8,
      (message) => deliverAsync(m.args('submit@tickets.example', 'alice@customer.example'), message, m.env));
    expect(runs.map((r) => r.status)).toEqual(Array(8).fill(0));
    expect(readdirSync(m.tickets).filter((n) => /^\d+$/.test(n))).toHaveLength(8);
    expect(m.sent()).toHaveLength(3);
  });
});

describe('sending failures never fail a delivery', () => {
  it.each([['fails', { FAKE_SENDMAIL_MODE: 'fail' }, /exited with status 1/], ['is killed', { FAKE_SENDMAIL_MODE: 'kill' }, /killed by SIGKILL/],
    ['is missing', {}, /ENOENT/]] as const)('when sendmail %s: filed, kept in the outbox, exit 0; flush sends it', (_, env, why) => {
    const m = mailSetup();
    const missing = Object.keys(env).length === 0 ? ['--sendmail', join(m.dir, 'no-such-sendmail')] : [];
    const r = m.send('submit@tickets.example', 'alice@customer.example', mail(), missing, env);
    expect(r.status).toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(why);
    expect(r.stderr).toMatch(/kept in the outbox/);
    expect(stored(join(m.tickets, '1'))).toHaveLength(1);
    const outbox = join(m.tickets, '.ticket-mail', 'outbox');
    const kept = readMbox(readFileSync(outbox));
    expect(kept.map((k) => k.note)).toEqual(['outbox ack alice@customer.example', 'outbox notify max@tickets.example', 'outbox notify moritz@tickets.example']);
    for (const f of readdirSync(m.outbox)) spawnSync('rm', [join(m.outbox, f)]);
    const flush = deliver(['flush', '--dir', m.tickets, '--sendmail', FAKE_SENDMAIL], '', m.env);
    expect(flush).toMatchObject({ status: 0, stdout: 'sent 3, kept 0\n' });
    expect(m.sent().map((s) => s.recipients)).toEqual([['alice@customer.example'], ['max@tickets.example'], ['moritz@tickets.example']]);
    expect(m.sent()[0]!.text).toBe(kept[0]!.message.toString());
    expect(readFileSync(outbox, 'utf8')).toBe('');
  });
  it('keeps mail in the outbox while a flush waits on a slow sendmail', async () => {
    const m = mailSetup(['--notify', 'none', '--sendmail', join(tempDir(), 'none')]);
    expect(m.send('submit@tickets.example', 'alice@customer.example', mail()).status).toBe(0);
    const flushing = deliverAsync(['flush', '--dir', m.tickets, '--sendmail', FAKE_SENDMAIL], '', { ...m.env, FAKE_SENDMAIL_MODE: 'slow' });
    while (!readdirSync(m.outbox).some((f) => f.endsWith('.args'))) await new Promise((r) => setTimeout(r, 20));
    const r = m.send('submit@tickets.example', 'alice@customer.example', mail({ subject: 'second' }), ['--lock-timeout', '1']);
    expect(r).toMatchObject({ status: 0, stderr: expect.stringMatching(/^ticket-mail: 1 message\(s\) kept in the outbox .*\n$/) });
    expect(await flushing).toMatchObject({ status: 0, stdout: 'sent 1, kept 0\n' });
    expect(m.sent().map((s) => s.headers.get('subject'))).toEqual([['[issue1] Printer on fire']]);
    const kept = readMbox(readFileSync(join(m.tickets, '.ticket-mail', 'outbox')));
    expect(kept.map((k) => [k.note, /^Subject: (.*)$/m.exec(k.message.toString())?.[1]])).toEqual([['outbox ack alice@customer.example', '[issue2] second']]);
  });
  it('leaves the outbox to a flush that took over a stale one, with mail added meanwhile', async () => {
    const m = mailSetup(['--notify', 'none', '--sendmail', join(tempDir(), 'none')]);
    expect(m.send('submit@tickets.example', 'alice@customer.example', mail()).status).toBe(0);
    const flush = ['flush', '--dir', m.tickets, '--sendmail', FAKE_SENDMAIL, '--stale-lock', '1'];
    const first = deliverAsync(flush, '', { ...m.env, FAKE_SENDMAIL_MODE: 'slow', FAKE_SENDMAIL_SLEEP: '4' });
    while (!readdirSync(m.outbox).some((f) => f.endsWith('.args'))) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 1200)); // its flush lock is now older than --stale-lock
    expect(deliver(flush, '', m.env)).toMatchObject({ status: 0, stdout: 'sent 1, kept 0\n' }); // sent twice, never lost
    expect(m.send('submit@tickets.example', 'alice@customer.example', mail({ subject: 'second' })).status).toBe(0);
    expect(await first).toMatchObject({ status: 0, stdout: 'sent 1, kept 0\n' });
    const kept = readMbox(readFileSync(join(m.tickets, '.ticket-mail', 'outbox')));
    expect(kept.map((k) => /^Subject: (.*)$/m.exec(k.message.toString())?.[1])).toEqual(['[issue2] second']);
  }, 20_000);
  it('keeps what still fails when flushing', () => {
    const m = mailSetup(['--notify', 'none', '--sendmail', join(tempDir(), 'none')]);
    expect(m.send('submit@tickets.example', 'alice@customer.example', mail()).status).toBe(0);
    const flush = deliver(['flush', '--dir', m.tickets, '--sendmail', FAKE_SENDMAIL], '', { ...m.env, FAKE_SENDMAIL_MODE: 'fail' });
    expect(flush.status).toBe(1);
    expect(flush.stdout).toMatch(/^sent 0, kept 1/);
    expect(readMbox(readFileSync(join(m.tickets, '.ticket-mail', 'outbox')))).toHaveLength(1);
  });
});

describe('out-of-hours alert', () => {
  // The clock is injected through TZ: pick a time zone where it is now 13:xx (office hours) or 03:xx.
  const zoneWhereHourIs = (hour: number) => {
    const offset = ((hour - new Date().getUTCHours()) % 24 + 36) % 24 - 12; // -12..+11 hours from UTC
    return `Etc/GMT${offset <= 0 ? '+' : '-'}${Math.abs(offset)}`; // POSIX sign is reversed
  };
  const run = (hour: number, days = 'mon-sun') => {
    const m = mailSetup(['--notify', 'none']);
    const record = join(m.dir, 'alert');
    const command = `printf '%s|%s|%s|%s' "$TICKET_MAIL_TICKET" "$TICKET_MAIL_SENDER" "$TICKET_MAIL_SUBJECT" "$(date +%H)" > ${record}`;
    const subject = 'Server down; $(touch /tmp/pwned) `id`';
    const r = m.send('submit@tickets.example', 'alice@customer.example', mail({ subject }),
      ['--alert-command', command, '--office-hours', '10:00-17:00', '--office-days', days], { TZ: zoneWhereHourIs(hour) });
    expect(r.status).toBe(0);
    return existsSync(record) ? readFileSync(record, 'utf8') : undefined;
  };
  it('runs out of hours with the ticket in its environment, never in the command', () => {
    const out = run(3)!;
    expect(out.split('|').slice(0, 3)).toEqual(['1', 'Alice <alice@customer.example>', 'Server down; $(touch /tmp/pwned) `id`']);
    expect(Number(out.split('|')[3])).toBeLessThan(10);
  });
  it('stays quiet in office hours, and runs on a day off', () => {
    expect(run(13)).toBeUndefined();
    const today = new Date().toLocaleString('en-US', { timeZone: zoneWhereHourIs(13), weekday: 'short' }).toLowerCase();
    const anotherDay = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'].find((d) => d !== today)!;
    expect(run(13, anotherDay)).toMatch(/^1\|/);
  });
  it('never fails or holds up the delivery', () => {
    const m = mailSetup(['--notify', 'none', '--office-days', 'mon-sun', '--office-hours', '00:00-00:01']);
    const r = m.send('submit@tickets.example', 'alice@customer.example', mail(), ['--alert-command', 'exit 3']);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/alert command failed: status 3/);
  });
});

// ---------------------------------------------------------------------------------------
// The maintainer's toolkit
// ---------------------------------------------------------------------------------------

describe('toolkit', () => {
  /** Three tickets built by real deliveries: 1 closed, 2 with three messages, 3 with an encoded subject. */
  const built = () => {
    const m = mailSetup();
    const at = (n: number, secondsAgo: number) => {
      const t = Date.now() / 1000 - secondsAgo;
      for (const p of [join(m.tickets, String(n)), join(m.tickets, 'archived', String(n))]) if (existsSync(p)) utimesSync(p, t, t);
    };
    expect(m.send('submit@tickets.example', 'alice@customer.example', mail({ subject: 'Printer on fire' })).status).toBe(0);
    expect(m.send('ticket-1-done@tickets.example', 'alice@customer.example', mail({ subject: 'fixed' })).status).toBe(0);
    expect(m.send('submit@tickets.example', 'bob@customer.example', mail({ from: 'Bob <bob@customer.example>', subject: 'VPN down' })).status).toBe(0);
    expect(m.send('ticket-2@tickets.example', 'bob@customer.example', mail({ from: 'Bob <bob@customer.example>' })).status).toBe(0);
    expect(m.send('ticket-2@tickets.example', 'max@tickets.example', mail({ from: 'Max <max@tickets.example>' })).status).toBe(0);
    expect(m.send('submit@tickets.example', 'carol@customer.example', mail({ from: '=?UTF-8?Q?Car=C3=B6l?= <carol@customer.example>', subject: '=?UTF-8?B?S2FmZmVlbWFzY2hpbmU=?=' })).status).toBe(0);
    at(1, 300); at(2, 100); at(3, 200);
    return withCli(m);
  };
  /** Runs a toolkit command on a mailSetup's folder. */
  const withCli = (m: ReturnType<typeof mailSetup>) => ({
    ...m,
    cli: (args: string[], input = '', after: string[] = []) => deliver([...args, '--dir', m.tickets, '--domain', 'tickets.example',
      '--sendmail', FAKE_SENDMAIL, ...ADMINS.flatMap((a) => ['--admin', a]), ...after], input, m.env),
  });

  it('lists tickets newest activity first, as aligned columns or JSON, and never trusts a stale cache', () => {
    const t = built();
    const json = (args: string[]) => JSON.parse(t.cli(['list', '--json', ...args]).stdout);
    const times = { lastActivity: expect.any(String), opened: expect.any(String), firstAnswer: null, lastMessage: expect.any(String) };
    expect(json(['--all'])).toEqual([ // Max, an admin, answered 2 last
      { ticket: 2, state: 'open', submitter: 'Bob <bob@customer.example>', subject: 'VPN down', messages: 3, ...times, firstAnswer: expect.any(String), waiting: 'them', waitingSince: null },
      { ticket: 3, state: 'open', submitter: 'Caröl <carol@customer.example>', subject: 'Kaffeemaschine', messages: 1, ...times, waiting: 'us', waitingSince: expect.any(String) },
      { ticket: 1, state: 'closed', submitter: 'Alice <alice@customer.example>', subject: 'Printer on fire', messages: 2, ...times, waiting: null, waitingSince: null },
    ]);
    expect(json([]).map((r: { ticket: number }) => r.ticket)).toEqual([2, 3]);
    expect(json(['--closed']).map((r: { ticket: number }) => r.ticket)).toEqual([1]);
    const human = t.cli(['list', '--all']);
    expect(human.status).toBe(0);
    const lines = human.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^#\s+STATE\s+WAITING\s+MSGS\s+LAST ACTIVITY\s+SUBMITTER\s+SUBJECT$/);
    expect(human.stdout).not.toContain('\x1b['); // not a terminal: no colour
    const column = lines[0]!.indexOf('SUBJECT');
    expect(lines.slice(1).map((l) => l.slice(column))).toEqual(['VPN down', 'Kaffeemaschine', 'Printer on fire']);
    // A new message and a rewritten mbox (mutt adding Status headers) are both seen.
    expect(t.send('ticket-3@tickets.example', 'carol@customer.example', mail()).status).toBe(0);
    expect(json([])[0]).toMatchObject({ ticket: 3, messages: 2 });
    const path = join(t.tickets, '2');
    writeFileSync(path, readFileSync(path, 'latin1').replace(/^Subject: /gm, 'Status: RO\nSubject: '), 'latin1');
    expect(json([]).find((r: { ticket: number }) => r.ticket === 2).messages).toBe(3);
    writeFileSync(path, readFileSync(path, 'latin1').split(/^(?=From )/m).slice(0, 2).join(''), 'latin1');
    expect(json([]).find((r: { ticket: number }) => r.ticket === 2).messages).toBe(2);
  });

  it('lists a ticket over 1 MiB: a "From " line cut by a read\'s edge counts, and so do appends', () => {
    const t = withCli(mailSetup());
    const MiB = 1 << 20;
    const record = (subject: string, body: string) =>
      `From a@b.example Sat Nov 28 04:00:00 2026\nFrom: Dora <dora@customer.example>\nSubject: ${subject}\n\n${body}\n\n`;
    const first = record('Big logs', 'x');
    // The third record's "\nFrom " starts 3 bytes before the first MiB ends.
    const second = record('more', 'y'.repeat(MiB - 2 - first.length - record('more', '').length));
    const mbox = first + second + record('last', 'z') + record('after', 'w');
    expect(mbox.indexOf('\nFrom a@b', first.length + 100)).toBe(MiB - 3);
    expect(t.send('submit@tickets.example', 'alice@customer.example', mail()).status).toBe(0); // makes the folders
    writeFileSync(join(t.tickets, '9'), mbox, { mode: 0o600 });
    const nine = () => JSON.parse(t.cli(['list', '--json']).stdout).find((r: { ticket: number }) => r.ticket === 9);
    expect(nine()).toMatchObject({ submitter: 'Dora <dora@customer.example>', subject: 'Big logs', messages: 4 });
    expect(t.send('ticket-9@tickets.example', 'dora@customer.example', mail({ body: 'From here on' })).status).toBe(0);
    expect(nine()).toMatchObject({ subject: 'Big logs', messages: 5 }); // counted from the cached size on
    expect(pythonCounts([join(t.tickets, '9')])).toEqual([5]);
  });
  it('colours its output only on a terminal, and never with NO_COLOR', () => {
    const t = built();
    const onTerminal = (env: string) => spawnSync('script', ['-qec', `${env} "${process.execPath}" "${join(import.meta.dirname, 'dist', 'ticket-mail.cjs')}" list --all --dir "${t.tickets}"`, '/dev/null']).stdout.toString();
    const coloured = onTerminal('');
    expect(coloured).toContain('\x1b[1m#');
    expect(coloured).toMatch(/\d+ (min|h|d) ago|just now/); // relative times on a terminal
    expect(onTerminal('NO_COLOR=1')).not.toContain('\x1b[');
  });

  it('shows a thread and the path to open in mutt; refuses a bad or unknown number', () => {
    const t = built();
    const shown = JSON.parse(t.cli(['show', '2', '--json']).stdout);
    expect(shown).toMatchObject({ ticket: 2, state: 'open', path: join(t.tickets, '2') });
    expect(shown.messages.map((m: { from: string; subject: string; text: string[] }) => [m.from, m.subject, m.text])).toEqual([
      ['Bob <bob@customer.example>', 'VPN down', ['Hello.']], ['Bob <bob@customer.example>', 'Printer on fire', ['Hello.']],
      ['Max <max@tickets.example>', 'Printer on fire', ['Hello.']],
    ]);
    expect(t.cli(['show', '2']).stdout).toContain(join(t.tickets, '2'));
    expect(t.cli(['show', '007'])).toMatchObject({ status: 1, stderr: 'ticket-mail: "007" is not a ticket number\n' });
    expect(t.cli(['show', '9'])).toMatchObject({ status: 1, stderr: 'ticket-mail: ticket 9 does not exist\n' });
    // A maintainer's command typed wrong is a usage error (search's is 2, as its bad query), never the delivery's 75.
    expect(t.cli(['show'])).toMatchObject({ status: 1, stderr: 'ticket-mail: missing required args for command `show <ticket>` (see ticket-mail --help)\n' });
    expect(t.cli(['list', '--bogus'])).toMatchObject({ status: 1, stderr: 'ticket-mail: Unknown option `--bogus` (see ticket-mail --help)\n' });
    expect(t.cli(['search', '-printer'])).toMatchObject({ status: 2, stderr: 'ticket-mail: Unknown option `-p` (see ticket-mail --help)\n' });
    expect(t.cli(['deliver', '--bogus'], '')).toMatchObject({ status: 75, stderr: 'ticket-mail: Unknown option `--bogus` (see ticket-mail --help)\n' });
  });

  it('routes as a dry run that changes nothing on disk', () => {
    const t = built();
    const snapshot = () => spawnSync('sh', ['-c', `cd "${t.tickets}" && find . -printf '%p %s %T@ %m\\n' | sort && find . -type f -exec sha256sum {} + | sort`]).stdout.toString();
    const before = snapshot();
    const dry = (recipient: string, message: string, sender = 'dora@customer.example') =>
      JSON.parse(t.cli(['route', '--json', '--recipient', recipient, '--sender', sender], message).stdout);
    expect(dry('submit@tickets.example', mail({ from: 'dora@customer.example' }))).toMatchObject({
      route: { action: 'create', rule: 'submit' }, outcome: 'created', ticket: 4,
      replies: [{ kind: 'ack', to: 'dora@customer.example' }, { kind: 'notify', to: ADMINS[0] }, { kind: 'notify', to: ADMINS[1] }],
    });
    expect(dry('submit@tickets.example', mail({ subject: 'Re: [issue1] again' }))).toMatchObject({
      route: { action: 'append', ticket: 1, rule: 'subject-tag' }, outcome: 'reopened', ticket: 1 });
    expect(dry('ticket-2-done@tickets.example', mail({ from: 'dora@customer.example' }))).toMatchObject({
      outcome: 'close-refused', replies: [{ kind: 'close-refused', to: 'dora@customer.example' }, { kind: 'notify' }, { kind: 'notify' }] });
    expect(dry('ticket-9@tickets.example', mail(), '')).toMatchObject({ outcome: 'unmatched', missing: 9, replies: [], noAutoReplyBecause: 'null envelope sender' });
    const human = t.cli(['route', '--recipient', 'submit@tickets.example', '--sender', 'x@y.example'], mail({ subject: '[issue2] more' }));
    expect(human.stdout).toMatch(/^decision\s+append ticket 2, rule subject-tag$/m);
    expect(human.stdout).toMatch(/^outcome\s+appended \(ticket 2\)$/m);
    expect(snapshot()).toBe(before);
  });

  it('closes and reopens from the command line exactly as by mail', () => {
    const byMail = mailSetup();
    const byCommand = withCli(mailSetup());
    const closing = mail({ from: 'Max <max@tickets.example>', subject: 'Done', id: 'close-note@tickets.example', body: 'Fixed the fuser.\n' });
    const reopening = mail({ from: 'Max <max@tickets.example>', subject: 'Again', id: 'reopen-note@tickets.example' });
    const first = mail({ subject: 'Printer on fire', id: 'first@customer.example' });
    for (const m of [byMail, byCommand]) expect(m.send('submit@tickets.example', 'alice@customer.example', first).status).toBe(0);
    expect(byMail.send('ticket-1-done@tickets.example', 'max@tickets.example', closing).status).toBe(0);
    expect(byCommand.cli(['close', '1', '--as', 'max@tickets.example'], closing)).toMatchObject({ status: 0, stdout: 'ticket 1: closed\n' });
    expect(byMail.send('ticket-1@tickets.example', 'max@tickets.example', reopening).status).toBe(0);
    expect(byCommand.cli(['reopen', '1', '--as', 'max@tickets.example'], reopening)).toMatchObject({ status: 0, stdout: 'ticket 1: reopened\n' });
    const fromLinesOff = (path: string) => readFileSync(path, 'latin1').replace(/^From (\S+) .*$/gm, 'From $1');
    expect(fromLinesOff(join(byCommand.tickets, '1'))).toBe(fromLinesOff(join(byMail.tickets, '1')));
    const logOf = (m: typeof byMail) => log(m.tickets).map((f) => f.slice(1).join(' '));
    expect(logOf(byCommand)).toEqual(logOf(byMail));
    const sentOf = (m: typeof byMail) => m.sent().map((s) => [s.recipients, s.headers.get('subject')]);
    expect(sentOf(byCommand)).toEqual(sentOf(byMail));
    expect(sentOf(byMail).map(([r]) => r)).toContainEqual(['alice@customer.example']); // the close notice
    // Without a message, a note is filed; --quiet sends nothing; a closed ticket is not closed twice.
    const before = byCommand.sent().length;
    expect(byCommand.cli(['close', '1', '--quiet']).status).toBe(0);
    expect(byCommand.sent()).toHaveLength(before);
    expect(stored(join(byCommand.tickets, 'archived', '1')).at(-1)!.toString()).toMatch(/^Subject: Ticket 1 closed$/m);
    expect(byCommand.cli(['close', '1'])).toMatchObject({ status: 1, stderr: 'ticket-mail: ticket 1 is already closed\n' });
    expect(byCommand.cli(['reopen', '5'])).toMatchObject({ status: 1, stderr: 'ticket-mail: ticket 5 does not exist\n' });
  });

  describe('check', () => {
    const healthy = () => {
      const t = built();
      const run = (extra: string[] = []) => t.cli(['check'], '', extra);
      expect(run()).toMatchObject({ status: 0 });
      return { t, run };
    };
    it('passes a healthy setup', () => {
      const { run } = healthy();
      expect(run().stdout).not.toMatch(/^FIX/m);
    });
    const faults: Array<[string, (t: ReturnType<typeof built>) => string[] | void, RegExp]> = [
      ['a tickets folder whose parent is missing', () => ['--dir', '/nonexistent/parent/tickets'], /cannot be created: its parent does not exist/],
      ['a folder others can read', (t) => { spawnSync('chmod', ['755', t.tickets]); }, /readable by others \(mode 755\)/],
      ['a ticket others can read', (t) => { spawnSync('chmod', ['644', join(t.tickets, '2')]); }, /\/2 is readable by others: chmod 600/],
      ['a missing sendmail', () => ['--sendmail', '/nonexistent/sendmail'], /sendmail \/nonexistent\/sendmail is missing/],
      ['no domain', () => ['--domain', ''], /no --domain set/],
      ['a damaged counter', (t) => { writeFileSync(join(t.tickets, '.ticket-mail', 'last-ticket'), 'x'); }, /last-ticket is damaged/],
      ['a counter behind the tickets', (t) => { writeFileSync(join(t.tickets, '.ticket-mail', 'last-ticket'), '1\n'); }, /says 1 but ticket 3 exists/],
      ['a leftover from an interrupted delivery', (t) => { writeFileSync(join(t.tickets, '.ticket-mail', 'new-9'), ''); }, /leftover .*new-9/],
      ['mail waiting in the outbox', (t) => {
        expect(t.send('submit@tickets.example', 'eve@customer.example', mail(), ['--sendmail', '/nonexistent/sendmail']).status).toBe(0);
      }, /3 message\(s\) wait in the outbox/],
      ['a stale lock', (t) => { writeFileSync(join(t.tickets, '2.lock'), `ticket-mail 999999999 ${hostname()} wait\n`); }, /stale lock .*2\.lock/],
      ['a lock file left by a killed delivery', (t) => { writeFileSync(join(t.tickets, `2.lock.${hostname()}.999999999.abc`), 'ticket-mail 999999999 x wait\n'); }, /leftover .*2\.lock\..*of a killed delivery/],
      ['a ticket both open and archived', (t) => { writeFileSync(join(t.tickets, 'archived', '2'), ''); }, /ticket 2 exists both open and archived/],
    ];
    it.each(faults)('finds %s', (_, breakIt, finding) => {
      const { t, run } = healthy();
      const extra = breakIt(t) ?? [];
      const r = run(extra);
      expect(r.status).toBe(1);
      expect(r.stdout).toMatch(new RegExp(`^FIX  .*${finding.source}`, 'm'));
    });
    it('finds no admins', () => {
      const t = mailSetup();
      expect(t.send('submit@tickets.example', 'a@b.example', mail()).status).toBe(0);
      const r = deliver(['check', '--dir', t.tickets, '--domain', 'tickets.example', '--sendmail', FAKE_SENDMAIL], '');
      expect(r.status).toBe(1);
      expect(r.stdout).toMatch(/^FIX  no --admin set/m);
    });
  });
});

// ---------------------------------------------------------------------------------------
// Properties of the pure core (fast-check)
// ---------------------------------------------------------------------------------------

describe('properties', () => {
  // Bytes that matter to mbox quoting, mixed with arbitrary ones.
  const mboxish = fc.array(fc.oneof(
    fc.constantFrom('From ', '>From ', '>>From ', 'From', '>', '\n', '\r\n', '\r', 'From x Mon Jan  1 00:00:00 2024\n', ' ', 'x'),
    fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b).toString('latin1')),
  ), { maxLength: 60 }).map((parts) => Buffer.from(parts.join(''), 'latin1'));

  it('mboxrd quoting then un-quoting gives back any bytes', () => {
    fc.assert(fc.property(mboxish, mboxish, (a, b) => {
      const at = new Date(2026, 10, 28);
      const both = Buffer.concat([mboxRecord(a, 'x@y', 'ticket 1', at), mboxRecord(b, '', 'ticket 1', at)]);
      const back = readMbox(both).map((r) => r.message);
      return back.length === 2 && back[0]!.equals(a) && back[1]!.equals(b);
    }), { numRuns: 2000 });
  });

  it('quotes the same however the message is cut into chunks', () => {
    fc.assert(fc.property(mboxish, fc.array(fc.nat(), { maxLength: 6 }), (bytes, cuts) => {
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y);
      const chunks = [0, ...points].map((p, i, all) => bytes.subarray(p, all[i + 1] ?? bytes.length));
      return Buffer.concat([...quoteChunks(chunks)]).equals(quoteFromLines(bytes));
    }), { numRuns: 2000 });
  });

  it('routing never throws and never yields a number out of range, whatever the header', () => {
    const headerText = fc.array(fc.oneof(
      fc.constantFrom('Subject: ', 'In-Reply-To: ', 'References: ', 'From: ', 'To: ', '[issue', ']', '#', ' ', '\n', '\r\n', '\t',
        '=?UTF-8?B?', '=?utf-8?q?', '?=', '<', '>', '@', '0', '7', '99999999999999999999', 'ticket-', '-done'),
      fc.string({ maxLength: 6 }), fc.string({ unit: 'grapheme', maxLength: 4 })), { maxLength: 40 }).map((p) => `Subject: x\n${p.join('')}`);
    const recipient = fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('submit@t', 'ticket-1@t', 'ticket-0@t', `ticket-${'9'.repeat(12)}@t`));
    fc.assert(fc.property(headerText, recipient, (text, rcpt) => {
      const h = parseHead(text);
      if (!h) return true;
      const r = route(h, { sender: 'a@b', recipient: rcpt, source: 'flags' }, cfg(), (id) => (id.length % 3 ? undefined : 5));
      return !('ticket' in r) || (Number.isInteger(r.ticket) && r.ticket >= 1 && r.ticket <= MAX_TICKET);
    }), { numRuns: 3000 });
  });

  it('header sanitising never lets CR or LF through', () => {
    const nasty = fc.array(fc.oneof(fc.constantFrom('\r', '\n', '\r\n', '\u2028', '\u0085', 'Bcc: v@x', '=?', ' '), fc.string({ unit: 'grapheme', maxLength: 8 })), { maxLength: 30 }).map((p) => p.join(''));
    fc.assert(fc.property(nasty, nasty, (text, name) => {
      const safe = headerSafe(text);
      const phrase = foldHeader('Subject', encodePhrase(headerSafe(text, 150)));
      const from = mailbox(name, 'ticket-1@tickets.example');
      return !/[\r\n]/.test(safe) && !/\r|\n(?![ \t])/.test(phrase) && !/[\r\n]/.test(from) && [...safe].length <= 200;
    }), { numRuns: 3000 });
  });
});

describe('sha256', () => {
  it('agrees with node:crypto', async () => {
    const { createHash } = await import('node:crypto');
    const { sha256 } = await import('./ticket.ts');
    for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000]) {
      const data = Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + n) & 0xff));
      expect(sha256(data)).toBe(createHash('sha256').update(data).digest('hex'));
    }
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => sha256(bytes) === createHash('sha256').update(bytes).digest('hex')), { numRuns: 500 });
  });
});

import { eximSnippet, INSTALL_DEFAULTS, launcherScript } from './ticket.ts';

describe('installation', () => {
  it('keeps exim.conf.example exactly what exim-config prints for the README\'s set-up', () => {
    const cfg = resolveConfig({ dir: '/srv/tickets', domain: 'tickets.example.org' }, {}, {});
    const inst = { ...INSTALL_DEFAULTS, node: '/usr/bin/node', program: '/usr/lib/node_modules/ticket-mail/dist/bin/ticket-mail.cjs' };
    const example = readFileSync(join(import.meta.dirname, 'exim.conf.example'), 'utf8');
    expect(example.slice(example.indexOf('\n# ticket-mail for Exim') + 1)).toBe(eximSnippet(cfg, inst));
  });

  it('makes archived/ with the mode and group of the tickets folder, so the SMTP-time check can search it too', () => {
    const dir = join(tempDir(), 'tickets');
    mkdirSync(dir);
    const group = Number(spawnSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).stdout.trim()) || 65534;
    spawnSync('chgrp', [String(group), dir]);
    spawnSync('chmod', ['2710', dir]);
    const r = deliver(['--dir', dir, '--recipient', 'submit@tickets.example', '--sender', 'a@b.example'], mail());
    expect(r.status, r.stderr).toBe(0);
    const archived = statSync(join(dir, 'archived'));
    expect([archived.mode & 0o7777, archived.gid]).toEqual([0o2710, statSync(dir).gid]);
    expect(statSync(join(dir, '.ticket-mail')).mode & 0o777).toBe(0o700);
  });

  it.skipIf(process.getuid?.() !== 0)('finds /etc/ticket-mail/config.json without flags, and starts with no HOME and no passwd entry (in a mount namespace of its own)', () => {
    // The machine's /etc is never touched: a tmpfs over it, seen by this one shell alone.
    const root = tempDir();
    const dir = join(root, 't');
    const script = `set -e
mount -t tmpfs tmpfs /etc
mkdir /etc/ticket-mail
printf '// the commented config setup writes\\n{ "dir": "${dir}", "domain": "tickets.example", "sendmail": "${FAKE_SENDMAIL}" }\\n' > /etc/ticket-mail/config.json
printf 'From: a@b.example\\nSubject: found\\nMessage-ID: <cfg@b.example>\\n\\nhi\\n' | env -i PATH=/usr/bin:/bin "$0" "$1" --recipient submit@tickets.example --sender a@b.example
env -i PATH=/usr/bin:/bin "$0" "$1" list`;
    const build = /, "([0-9a-f]{16})", \["cac"/.exec(readFileSync(join(import.meta.dirname, 'dist', 'ticket-mail.cjs'), 'utf8'))![1]!;
    const cache = '/nonexistent/.cache/ticket-mail';
    const cacheUnderNonexistent = () => (existsSync(cache) ? readdirSync(cache) : [])
      .filter((name) => name.startsWith(build)).map((name) => `${name} ${statSync(join(cache, name)).mtimeMs}`);
    const before = cacheUnderNonexistent();
    const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, process.execPath, join(import.meta.dirname, 'dist', 'ticket-mail.cjs')], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^1 +open +on us +1 .*a@b\.example +found$/m);
    expect(existsSync('/etc/ticket-mail/config.json') && readFileSync('/etc/ticket-mail/config.json', 'utf8').includes(dir)).toBe(false);
    // No HOME is no code cache: nothing of this build is written under a made-up home (/nonexistent, as root).
    expect(cacheUnderNonexistent()).toEqual(before);
  });

  it('has the launcher pass 0, 65, 67 and 75 on, and turn a program that cannot run into 75 and one sentence', () => {
    const dir = tempDir('tm-launcher-');
    // The "program" is a shell script run by /bin/sh in node's place: it exits as told, after some output.
    const program = join(dir, 'program');
    writeFileSync(program, 'cat > "$0.stdin"; echo "$@" > "$0.args"; echo "ticket-mail: said on stderr" >&2; echo stdout\n' +
      'case $MODE in crash) echo "/x/y.cjs:1" >&2; echo "SyntaxError: Unexpected token" >&2; echo "    at foo" >&2; exit 1;; ' +
      'kill) kill -9 $$;; *) exit "$MODE";; esac\n');
    const launcher = (node: string) => {
      const path = join(dir, `launcher-${node.replace(/\W/g, '')}`);
      writeFileSync(path, launcherScript({ ...INSTALL_DEFAULTS, config: '/etc/x.json', node, program }), { mode: 0o755 });
      return (mode: string) => spawnSync(path, ['--recipient=a@b.c'], { input: 'the message', env: { MODE: mode }, encoding: 'utf8' });
    };
    const run = launcher('/bin/sh');
    for (const status of [0, 65, 67, 75]) {
      const r = run(String(status));
      expect([r.status, r.stderr, r.stdout]).toEqual([status, 'ticket-mail: said on stderr\n', '']);
    }
    expect(readFileSync(`${program}.stdin`, 'utf8')).toBe('the message');
    expect(readFileSync(`${program}.args`, 'utf8')).toBe('--config /etc/x.json --recipient=a@b.c\n');
    const sentence = (status: string, why = '') => `ticket-mail: cannot run /bin/sh ${program} (exit status ${status}${why}); the mail stays queued\n`;
    expect([run('crash').status, run('crash').stderr]).toEqual([75, sentence('1', ': SyntaxError: Unexpected token')]);
    expect([run('kill').status, run('kill').stderr]).toEqual([75, sentence('137')]);
    expect([run('1').status, run('1').stderr]).toEqual([75, sentence('1')]);
    const noNode = launcher('/nonexistent/node')('0');
    expect(noNode.status).toBe(75);
    expect(noNode.stderr).toBe(`ticket-mail: cannot run /nonexistent/node ${program} (exit status 127); the mail stays queued\n`);
  });
});

import { closer } from './ticket.ts';

describe('who closes at the shell', () => {
  it('is $EMAIL, else the admin named like the login, else the first admin, else login@domain', () => {
    const cfg = resolveConfig({ dir: '/t', admin: ['max@tickets.example', 'dora@tickets.example'] }, {}, {});
    expect(closer(cfg, { EMAIL: 'Moritz@Tickets.Example', USER: 'dora' }, 'tickets.example')).toBe('moritz@tickets.example');
    expect(closer(cfg, { EMAIL: 'not an address', USER: 'dora' }, 'tickets.example')).toBe('dora@tickets.example');
    expect(closer(cfg, { LOGNAME: 'tickets' }, 'tickets.example')).toBe('max@tickets.example');
    expect(closer(resolveConfig({ dir: '/t' }, {}, {}), { USER: 'tickets' }, 'tickets.example')).toBe('tickets@tickets.example');
  });
});
