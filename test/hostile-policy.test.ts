// Who gets mail, and which ticket mail goes to, when the sender is hostile or a program:
// automatic mail (one definition for reopening, closing, replies and notifications), two
// instances or a third-party tracker notifying each other, a stranger's "[Issue #1]", third
// parties writing into a ticket, a forged close. Everything runs the built file as an MTA does.
import { describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseHead, resolveConfig, subjectTag, whyAutomatic } from '../ticket.ts';
import { BIN, deliver, FAKE_SENDMAIL, mail, ROOT, sentMail, stored, tempDir, type Sent } from './harness.ts';

const ADMINS = ['max@tickets.example', 'moritz@tickets.example'];
const ALICE = 'alice@customer.example';
const BOB = 'bob@customer.example';

/** A tickets folder whose sendmail is the recording fake; send() delivers as the MTA would. */
function setup(more: string[] = []) {
  const dir = tempDir('tm-policy-');
  const tickets = join(dir, 't');
  const outbox = join(dir, 'sent');
  mkdirSync(outbox);
  const send = (recipient: string, sender: string, message: string) => {
    const r = deliver(['--dir', tickets, '--domain', 'tickets.example', '--recipient', recipient, '--sender', sender,
      '--sendmail', FAKE_SENDMAIL, ...ADMINS.flatMap((a) => ['--admin', a]), ...more], message, { FAKE_SENDMAIL_DIR: outbox });
    expect(r, r.stderr).toMatchObject({ status: 0 });
    return r;
  };
  const count = (path: string) => stored(join(tickets, path)).length;
  const sent = () => sentMail(outbox);
  /** The mail that delivering `message` sends, as [recipients, subject, Reply-To]. */
  const news = (recipient: string, sender: string, message: string) => {
    const before = sent().length;
    send(recipient, sender, message);
    return summary(sent().slice(before));
  };
  return { tickets, send, count, sent, news };
}

/** Each mail as [recipients, subject, Reply-To], to compare whole lists. */
const summary = (sent: Sent[]) => sent.map((s) => [s.recipients.join(' '), s.headers.get('subject')?.[0], s.headers.get('reply-to')?.[0]]);

/** A notification's text part (ours are 7bit or base64 text/plain). */
function body(s: Sent): string {
  const text = s.text.slice(s.text.indexOf('\n\n') + 2);
  return s.headers.get('content-transfer-encoding')?.[0] === 'base64' ? Buffer.from(text, 'base64').toString('utf8') : text;
}

// ---------------------------------------------------------------------------------------
// One definition of automatic mail
// ---------------------------------------------------------------------------------------

/** [what, envelope sender, header lines, From]: each mark of automatic mail alone. */
const AUTOMATIC: Array<[string, string, string[], string?]> = [
  ['vacation(1): Precedence: junk, the real sender', ALICE, ['Precedence: junk']],
  ['Precedence: bulk (Gmail\'s vacation responder)', ALICE, ['Precedence: bulk']],
  ['Precedence: list', ALICE, ['Precedence: list']],
  ['Precedence: auto_reply', ALICE, ['Precedence: auto_reply']],
  ['Auto-Submitted: auto-replied', ALICE, ['Auto-Submitted: auto-replied']],
  ['Auto-Submitted: auto-generated (Exchange out of office)', ALICE, ['Auto-Submitted: auto-generated', 'X-Auto-Response-Suppress: All']],
  ['X-Autoreply: yes', ALICE, ['X-Autoreply: yes']],
  ['X-Autorespond', ALICE, ['X-Autorespond: Out of office']],
  ['List-Id', ALICE, ['List-Id: <users.lists.example>']],
  ['List-Unsubscribe', ALICE, ['List-Unsubscribe: <mailto:leave@lists.example>']],
  ['a bounce: null sender, MAILER-DAEMON', '<>', [], 'Mail Delivery System <MAILER-DAEMON@mx.customer.example>'],
  ['a null sender with a person\'s From', '', []],
  ['a robot From with a person-like sender', 'bounces-7@mailer.customer.example', [], 'Shop <noreply@customer.example>'],
  ['a list\'s envelope sender', 'owner-users@lists.example', []],
];

describe('automatic mail: one definition for reopening, closing, replies and notifications', () => {
  it.each(AUTOMATIC)('%s: reopens, closes and answers nothing, tells the admins only of a ticket it opens', (what, sender, headers, from) => {
    const m = setup();
    const auto = (subject: string) => mail({ subject, headers, ...(from ? { from } : {}) });
    // Ticket 1, closed by an admin (its submitter gets the close notice); ticket 2 open.
    m.send('submit@tickets.example', ALICE, mail({ subject: 'Printer on fire' }));
    m.send('ticket-1-done@tickets.example', ADMINS[0]!, mail({ from: ADMINS[0], subject: 'fixed' }));
    m.send('submit@tickets.example', ALICE, mail({ subject: 'Scanner too' }));
    const before = m.sent().length;
    expect(summary(m.sent().slice(0, before)).filter(([to]) => to === ALICE).map(([, subject]) => subject))
      .toEqual(['[issue1] Printer on fire', '[issue1] Closed: Printer on fire', '[issue2] Scanner too']);

    // The answer to the close notice (its Reply-To is ticket-1@): filed, the ticket stays closed.
    m.send('ticket-1@tickets.example', sender, auto('Re: [issue1] Closed: fixed'));
    // By tag into the closed ticket, and into the open one by tag and by address.
    m.send('submit@tickets.example', sender, auto('away from my mail [issue1]'));
    m.send('submit@tickets.example', sender, auto('Re: [issue2] Scanner too'));
    m.send('ticket-2@tickets.example', sender, auto('away from my mail'));
    // Its close (its From is the submitter's) closes nothing; no error reply for a missing ticket.
    m.send('ticket-2-done@tickets.example', sender, auto('Re: close'));
    m.send('ticket-77@tickets.example', sender, auto('away from my mail'));
    expect(existsSync(join(m.tickets, '1')), what).toBe(false);
    expect(m.count('archived/1')).toBe(4);
    expect(m.count('2')).toBe(4);
    expect(existsSync(join(m.tickets, 'archived', '2'))).toBe(false);
    expect(m.count('unmatched')).toBe(1);
    expect(summary(m.sent().slice(before))).toEqual([]);

    // A ticket it opens (a monitoring alert): no acknowledgement, each admin hears of it once;
    // mail from a ticket-mail (the loop header) is news to nobody.
    m.send('submit@tickets.example', sender, auto('Disk full on db1'));
    expect(m.count('3')).toBe(1);
    expect(summary(m.sent().slice(before))).toEqual(ADMINS.map((a) => [a, '[issue3] New: Disk full on db1', expect.any(String)]));
  });

  it('another instance\'s mail (its loop header): its tags name its own tickets; it reopens, closes and answers nothing, tells nobody', () => {
    const m = setup();
    const theirs = (subject: string) => mail({ subject, headers: ['X-Ticket-Mail-Loop: other.example', 'Auto-Submitted: auto-generated'] });
    m.send('submit@tickets.example', ALICE, mail({ subject: 'Printer on fire' }));
    m.send('ticket-1-done@tickets.example', ADMINS[0]!, mail({ from: ADMINS[0], subject: 'fixed' }));
    const before = m.sent().length;
    m.send('ticket-1@tickets.example', ALICE, theirs('Re: [issue1] Closed: fixed')); // by our address: filed, stays closed
    m.send('submit@tickets.example', ALICE, theirs('[issue1] New: Login fails')); // their ticket 1: not ours
    m.send('ticket-1-done@tickets.example', ALICE, theirs('close'));
    expect(existsSync(join(m.tickets, '1'))).toBe(false);
    expect(m.count('archived/1')).toBe(4);
    expect(m.count('2')).toBe(1);
    expect(summary(m.sent().slice(before))).toEqual([]);
  });

  it('a person\'s mail reopens, closes and is answered; Outlook\'s X-Auto-Response-Suppress alone only stops replies', () => {
    const m = setup();
    m.send('submit@tickets.example', ALICE, mail({ subject: 'Printer on fire' }));
    m.send('ticket-1-done@tickets.example', ADMINS[0]!, mail({ from: ADMINS[0], subject: 'fixed' }));
    const person = (subject: string, headers: string[]) => mail({ subject, headers });
    // Outlook and Exchange put X-Auto-Response-Suppress on mail people write: it reopens.
    expect(m.news('ticket-1@tickets.example', ALICE, person('still smoking', ['X-Auto-Response-Suppress: All', 'Precedence: first-class'])))
      .toEqual(ADMINS.map((a) => [a, '[issue1] Reopened: still smoking', `${ALICE}, ticket-1@tickets.example`]));
    expect(m.count('1')).toBe(3);
    expect(m.news('ticket-1-done@tickets.example', ALICE, person('fixed now', ['Auto-Submitted: no'])).map(([to, subject]) => [to, subject]))
      .toEqual(ADMINS.map((a) => [a, '[issue1] Closed: fixed now']));
    expect(m.count('archived/1')).toBe(4);
    // A new ticket from it: the admins hear of it, the sender asked for no acknowledgement.
    expect(m.news('submit@tickets.example', BOB, mail({ from: BOB, subject: 'Toner', headers: ['X-Auto-Response-Suppress: OOF, AutoReply'] }))
      .map(([to, subject]) => [to, subject])).toEqual(ADMINS.map((a) => [a, '[issue2] New: Toner']));
  });

  it('names the reason; X-Auto-Response-Suppress is none, nor are Precedence: first-class and Auto-Submitted: no', () => {
    const why = (text: string, sender = ALICE) => whyAutomatic(parseHead(`From: ${ALICE}\n${text}`)!, sender);
    expect(why('Precedence: junk')).toBe('Precedence: junk');
    expect(why('Precedence:  Auto_Reply ')).toBe('Precedence: auto_reply');
    expect(why('Auto-Submitted: Auto-Replied (vacation)')).toBe('Auto-Submitted');
    expect(why('X-Ticket-Mail-Loop: b.example')).toBe('x-ticket-mail-loop');
    expect(why('Subject: x', 'Owner-Users@Lists.Example')).toBe('robot address owner-users@lists.example');
    expect(why('Subject: x', '')).toBe('null envelope sender');
    for (const text of ['X-Auto-Response-Suppress: All', 'Precedence: first-class', 'Auto-Submitted: no', 'Subject: [issue1] noreply']) {
      expect(why(text), text).toBeUndefined();
    }
    // The From's address counts, not its display name.
    const byFrom = (from: string) => whyAutomatic(parseHead(`From: ${from}`)!, 'bounces+x7@mailer.example');
    expect(byFrom('"Shop" <No-Reply@shop.example>')).toBe('robot address no-reply@shop.example');
    expect(byFrom('users-request@lists.example (List)')).toBe('robot address users-request@lists.example');
    expect(byFrom('"noreply fan, owner-x" <alice@customer.example>')).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------
// Two instances, and a third-party tracker, notifying each other
// ---------------------------------------------------------------------------------------

/**
 * ticket-mail instances for the given domains (settings each), all sending through the
 * relay sendmail, which delivers into the recipient's instance as its MTA would.
 */
function instances(settings: Record<string, Record<string, unknown>>) {
  const root = tempDir('tm-relay-');
  const relay = join(ROOT, 'test', 'relay-sendmail');
  for (const [domain, more] of Object.entries(settings)) {
    writeFileSync(join(root, `${domain}.json`), JSON.stringify({ dir: join(root, domain), domain, sendmail: relay, ...more }));
  }
  const env = { RELAY_ROOT: root, RELAY_NODE: process.execPath, RELAY_BIN: BIN, RELAY_SENDMAIL: relay };
  const send = (domain: string, recipient: string, sender: string, message: string, extraEnv: Record<string, string> = {}) => {
    const r = deliver(['--config', join(root, `${domain}.json`), '--recipient', recipient, '--sender', sender], message, { ...env, ...extraEnv });
    expect(r, r.stderr).toMatchObject({ status: 0 });
  };
  const sent = () => (existsSync(join(root, 'sent')) ? readFileSync(join(root, 'sent'), 'utf8').trim().split('\n') : []);
  const count = (domain: string, path: string) => stored(join(root, domain, path)).length;
  return { root, send, sent, count };
}

/**
 * A third-party tracker at t.example (our admin address ops@t.example forwards into it) that
 * knows no X-Ticket-Mail-Loop: it acknowledges every message from help@t.example with
 * Auto-Submitted: auto-replied, its real envelope sender and no loop header of ours, to the
 * message's From or to $TRACKER_TO, keeping the subject behind its own tag.
 */
function addTracker(root: string) {
  const script = join(root, 't.example.sh');
  writeFileSync(script, `#!/bin/sh
set -eu
head=$(sed '/^$/q')
from=$(printf '%s\\n' "$head" | sed -n 's/^From:.*<\\([^>]*\\)>.*/\\1/p' | head -n 1)
subject=$(printf '%s\\n' "$head" | sed -n 's/^Subject: //p' | head -n 1)
n=$(($(wc -l < "$RELAY_ROOT/sent")))
printf 'From: Tracker <help@t.example>\\nTo: %s\\nSubject: [T#%s] Re: %s\\nMessage-ID: <ack%s@t.example>\\nAuto-Submitted: auto-replied\\n\\nWe have your request.\\n' \\
  "\${TRACKER_TO:-$from}" "$n" "$subject" "$n" | "$RELAY_SENDMAIL" -oi -f help@t.example -- "\${TRACKER_TO:-$from}"
`);
  chmodSync(script, 0o755);
}

describe('two instances or a tracker notifying each other: at most one message each way', () => {
  it('stops two instances whose admin addresses are each other\'s submit addresses', () => {
    const net = instances({ 'a.example': { admin: ['submit@b.example'] }, 'b.example': { admin: ['submit@a.example'] } });
    // Carol opens B's ticket 1: her acknowledgement, B's notification to A, filed there silently.
    net.send('b.example', 'submit@b.example', 'carol@customer.example', mail({ from: 'carol@customer.example', to: 'submit@b.example', subject: 'Login fails' }));
    expect(net.sent()).toEqual(['carol@customer.example', 'submit@a.example']);
    // Its tag names B's ticket 1, not A's: A files it in a ticket of its own, and tells nobody.
    expect(net.count('a.example', '1')).toBe(1);
    // Alice opens A's ticket 2: her acknowledgement, A's notification to B, and nothing more.
    net.send('a.example', 'submit@a.example', ALICE, mail({ to: 'submit@a.example', subject: 'Printer on fire' }));
    expect(net.sent()).toEqual(['carol@customer.example', 'submit@a.example', ALICE, 'submit@b.example']);
    expect(net.count('a.example', '2')).toBe(1);
    // B files it in a ticket of its own too, not in Carol's ticket 1, which its tag [issue2] does not name anyway.
    expect([net.count('b.example', '1'), net.count('b.example', '2')]).toEqual([1, 1]);
    expect(net.count('a.example', 'unmatched') + net.count('b.example', 'unmatched')).toBe(0);
  });

  it('stops a third-party tracker that drops our loop header but marks its mail Auto-Submitted', () => {
    const net = instances({ 'a.example': { admin: ['ops@t.example'] } });
    addTracker(net.root);
    // Its acknowledgement goes to the notification's From, ticket-1@: filed, nobody hears of it.
    net.send('a.example', 'submit@a.example', ALICE, mail({ to: 'submit@a.example', subject: 'Printer on fire' }));
    expect(net.sent()).toEqual([ALICE, 'ops@t.example', 'ticket-1@a.example']);
    expect(net.count('a.example', '1')).toBe(2);
    // Sent to submit@ with our tag in its subject: into the ticket by the tag, silently.
    net.send('a.example', 'ticket-1@a.example', ALICE, mail({ to: 'ticket-1@a.example', subject: 'more smoke' }), { TRACKER_TO: 'submit@a.example' });
    expect(net.sent().slice(3)).toEqual(['ops@t.example', 'submit@a.example']);
    expect(net.count('a.example', '1')).toBe(4);
    expect(existsSync(join(net.root, 'a.example', '2'))).toBe(false);
  });

  it('tells the admins once of a ticket a monitoring alert opens, and not of the tracker answering that', () => {
    const net = instances({ 'a.example': { admin: ['ops@t.example'] } });
    addTracker(net.root);
    const alert = mail({ from: 'Nagios <nagios@monitor.example>', to: 'submit@a.example', subject: 'PROBLEM: db1 disk full', headers: ['Auto-Submitted: auto-generated'] });
    net.send('a.example', 'submit@a.example', 'nagios@monitor.example', alert);
    expect(net.sent()).toEqual(['ops@t.example', 'ticket-1@a.example']);
    expect(net.count('a.example', '1')).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------
// Our tag and nothing else; notifications name who reads the answer
// ---------------------------------------------------------------------------------------

describe('only our tag routes into a ticket, and a notification answers whoever wrote', () => {
  const b64 = (s: string) => `=?UTF-8?B?${Buffer.from(s).toString('base64')}?=`;

  it('opens a new ticket for a stranger whose subject has another tracker\'s reference', () => {
    const m = setup(['--reply-limit', '100']); // an acknowledgement for each
    m.send('submit@tickets.example', ALICE, mail({ subject: 'Account 1234 locked' }));
    const others = ['Crash like GitHub [Issue #1]', '[issue 1] crash', '[issue #1] crash', '[issue#1] crash', '[ISSUE 1] crash',
      'crash, see issue 1', 'crash #1', '[issue1a] crash', `${b64('Absturz wie ')} ${b64('[Issue #1]')}`, '[ issue1] crash', '[issue1 ] crash'];
    for (const [i, subject] of others.entries()) {
      const before = m.sent().length;
      m.send('submit@tickets.example', BOB, mail({ from: `Bob <${BOB}>`, subject }));
      const n = i + 2;
      expect(m.count(String(n)), subject).toBe(1);
      expect(summary(m.sent().slice(before)).map(([to, s, replyTo]) => [to, s!.startsWith(`[issue${n}] `), replyTo]), subject).toEqual([
        [BOB, true, `ticket-${n}@tickets.example`],
        ...ADMINS.map((a) => [a, true, `${BOB}, ticket-${n}@tickets.example`])]);
    }
    expect(m.count('1')).toBe(1);
  });

  it('files our exact tag in any case, anywhere, folded or RFC 2047 encoded and split, and marks a third party', () => {
    const m = setup();
    m.send('submit@tickets.example', ALICE, mail({ subject: 'Account 1234 locked' }));
    const ours = ['Re: [issue1] Account 1234 locked', 'RE: [ISSUE1] locked', 'Fwd: AW: [users] [Issue1] locked', 'locked [issue1]',
      b64('Re: [issue1] Konto gesperrt'), '=?UTF-8?Q?Re:_[iss?=\n =?UTF-8?Q?ue1]_Konto?=', 'Re: a long subject that was folded\n\t[issue1] here'];
    for (const [i, subject] of ours.entries()) {
      const before = m.sent().length;
      m.send('submit@tickets.example', BOB, mail({ from: `Bob <${BOB}>`, subject }));
      expect(m.count('1'), subject).toBe(i + 2);
      const notes = m.sent().slice(before);
      expect(notes.map((s) => [s.recipients.join(), s.headers.get('reply-to')?.[0]]), subject)
        .toEqual(ADMINS.map((a) => [a, `${BOB}, ticket-1@tickets.example`]));
      for (const s of notes) {
        expect(s.headers.get('subject')?.[0]).toMatch(/^\[issue1\] Update \(third party\): /);
        expect(body(s)).toContain(`Note: ${BOB} is not the ticket's submitter (${ALICE}).`);
      }
    }
    expect(existsSync(join(m.tickets, '2'))).toBe(false);
  });

  it('answers the author and marks a third party who writes by thread or by ticket-N@, not the submitter', () => {
    const m = setup();
    m.send('submit@tickets.example', ALICE, mail({ subject: 'Account 1234 locked', id: 'first@customer.example' }));
    const noted = (s: Sent) => body(s).match(/^Note: .*$/m)?.[0];
    const after = (send: () => void) => {
      const before = m.sent().length;
      send();
      return m.sent().slice(before).map((s) => [s.recipients.join(), s.headers.get('subject')?.[0], s.headers.get('reply-to')?.[0], noted(s)]);
    };
    const carol = 'carol@partner.example';
    expect(after(() => m.send('submit@tickets.example', carol, mail({ from: `Carol <${carol}>`, subject: 'me too', headers: ['In-Reply-To: <first@customer.example>'] }))))
      .toEqual(ADMINS.map((a) => [a, '[issue1] Update (third party): me too', `${carol}, ticket-1@tickets.example`, `Note: ${carol} is not the ticket's submitter (${ALICE}).`]));
    expect(after(() => m.send('ticket-1@tickets.example', BOB, mail({ from: BOB, subject: 'cc reply', headers: [`Reply-To: bob.home@customer.example`] }))))
      .toEqual(ADMINS.map((a) => [a, '[issue1] Update (third party): cc reply', 'bob.home@customer.example, ticket-1@tickets.example', `Note: bob.home@customer.example is not the ticket's submitter (${ALICE}).`]));
    // The submitter's From with someone else's Reply-To: the answer would go to them, so said.
    expect(after(() => m.send('ticket-1@tickets.example', ALICE, mail({ subject: 'see', headers: ['Reply-To: mallory@evil.example'] }))))
      .toEqual(ADMINS.map((a) => [a, '[issue1] Update (third party): see', 'mallory@evil.example, ticket-1@tickets.example', `Note: mallory@evil.example is not the ticket's submitter (${ALICE}).`]));
    // The submitter herself: plain, her address.
    expect(after(() => m.send('ticket-1@tickets.example', ALICE, mail({ subject: 'thanks' }))))
      .toEqual(ADMINS.map((a) => [a, '[issue1] Update: thanks', `${ALICE}, ticket-1@tickets.example`, undefined]));
    // A third party reopening a closed ticket.
    m.send('ticket-1-done@tickets.example', ADMINS[0]!, mail({ from: ADMINS[0], subject: 'unlocked' }));
    expect(after(() => m.send('ticket-1@tickets.example', BOB, mail({ from: BOB, subject: 'still locked' }))))
      .toEqual(ADMINS.map((a) => [a, '[issue1] Reopened (third party): still locked', `${BOB}, ticket-1@tickets.example`, `Note: ${BOB} is not the ticket's submitter (${ALICE}).`]));
    expect(m.count('1')).toBe(7);
  });

  it('finds the tag of a custom form with its space as any white space, and nothing looser', () => {
    const c = resolveConfig({ dir: '/nonexistent', domain: 'tickets.example', tag: '[bug N]' }, {}, {});
    expect(['Re: [bug 9] x', 'Re: [BUG\t9] x', 'x [bug  9]'].map((s) => subjectTag(s, c))).toEqual(['9', '9', '9']);
    expect(['[bug9]', '[bug #9]', '[bugs 9]', '[bug 9 ]'].map((s) => subjectTag(s, c))).toEqual([undefined, undefined, undefined, undefined]);
    const d = resolveConfig({ dir: '/nonexistent', domain: 'tickets.example' }, {}, {});
    expect(['[issue7]', '[ISSUE7]', 'x[Issue7]y', '[issue 7]', '[Issue #7]', '[issue#7]'].map((s) => subjectTag(s, d)))
      .toEqual(['7', '7', '7', undefined, undefined, undefined]);
    // Linear: a long run of spaces or digits after "[bug" costs nothing.
    const started = performance.now();
    expect(subjectTag(`[bug${' '.repeat(200_000)}x [bug ${'9'.repeat(200_000)}`, c)).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(2000);
  });
});

// ---------------------------------------------------------------------------------------
// A forged close
// ---------------------------------------------------------------------------------------

describe('a close in the submitter\'s name is seen by the real submitter unless it is theirs', () => {
  it('sends the close notice unless both From and envelope sender are the submitter\'s', () => {
    const m = setup();
    const closedNews = (subject: string) => ADMINS.map((a) => [a, `[issue1] Closed: ${subject}`]);
    const news = (recipient: string, sender: string, message: string) => m.news(recipient, sender, message).map(([to, subject]) => [to, subject]);
    m.send('submit@tickets.example', ALICE, mail({ subject: 'Account locked' }));
    // From: alice, envelope mallory's: closed (the From is what the policy knows), and alice hears of it.
    expect(news('ticket-1-done@tickets.example', 'mallory@evil.example', mail({ subject: 'done' })))
      .toEqual([[ALICE, '[issue1] Closed: Account locked'], ...closedNews('done')]);
    expect(m.count('archived/1')).toBe(2);
    // From: alice, envelope alice's other address (or a forwarder's): the notice goes, to be safe.
    m.send('ticket-1@tickets.example', ALICE, mail({ subject: 'I did not close it' }));
    expect(news('ticket-1-done@tickets.example', 'alice.work@customer.example', mail({ subject: 'done' })))
      .toEqual([[ALICE, '[issue1] Closed: Account locked'], ...closedNews('done')]);
    m.send('ticket-1@tickets.example', ALICE, mail({ subject: 'reopen' }));
    expect(m.count('1')).toBe(5);
    // From: alice with a null envelope sender: automatic, so it closes nothing and nobody hears of it.
    expect(news('ticket-1-done@tickets.example', '<>', mail({ subject: 'done' }))).toEqual([]);
    expect(m.count('1')).toBe(6);
    // Alice herself, From and envelope: closed, no notice to her; the admins hear of it.
    expect(news('ticket-1-done@tickets.example', ALICE, mail({ subject: 'fixed now' }))).toEqual(closedNews('fixed now'));
    expect(m.count('archived/1')).toBe(7);
  });
});

// ---------------------------------------------------------------------------------------
// A second hostile look: what a forger can still do with Reply-To, an admin's From, a close
// ---------------------------------------------------------------------------------------

describe('a forger gains nothing from our own addresses or an admin\'s From', () => {
  it('puts no address of ours but the ticket\'s into a notification\'s Reply-To (the admin\'s answer would close another ticket)', () => {
    const m = setup();
    m.send('submit@tickets.example', ALICE, mail({ subject: 'Printer on fire' }));
    m.send('submit@tickets.example', 'zed@z.example', mail({ from: 'zed@z.example', subject: 'other' }));
    for (const replyTo of ['ticket-1-done@tickets.example', 'ticket-1@tickets.example', 'submit@tickets.example', 'Ticket-1-Done@Tickets.Example']) {
      const news = m.news('submit@tickets.example', 'mal@evil.example',
        mail({ from: 'Mal <mal@evil.example>', subject: 'Re: [issue2] other', headers: [`Reply-To: ${replyTo}`] }));
      expect(news.map(([, , to]) => to)).toEqual(ADMINS.map(() => 'ticket-2@tickets.example'));
    }
    expect(existsSync(join(m.tickets, '1'))).toBe(true);
  });

  it('takes mail for an admin\'s only when both its From and its envelope sender are an admin\'s', () => {
    const m = setup();
    m.send('submit@tickets.example', ALICE, mail({ subject: 'Printer on fire' }));
    const fromMax = (subject: string) => mail({ from: `Max <${ADMINS[0]}>`, subject });
    // A forged admin From (another envelope sender): the admins hear of it, its author included.
    expect(m.news('ticket-1@tickets.example', 'mallory@evil.example', fromMax('ignore Alice')).map(([to]) => to)).toEqual(ADMINS);
    // A forged admin envelope sender with another From: the same.
    expect(m.news('ticket-1@tickets.example', ADMINS[0]!, mail({ from: 'mallory@evil.example', subject: 'me too' })).map(([to]) => to)).toEqual(ADMINS);
    // The admin's own answer (both the admin's): an update nobody needs to hear of.
    expect(m.news('ticket-1@tickets.example', ADMINS[0]!, fromMax('answer')).map(([to]) => to)).toEqual([]);
  });

  it('always tells the submitter of a close that is not theirs, whatever the closer\'s Reply-To or X-Auto-Response-Suppress', () => {
    for (const headers of [['X-Auto-Response-Suppress: All'], ['Reply-To: noreply@evil.example'], ['Reply-To: submit@tickets.example']]) {
      const m = setup();
      m.send('submit@tickets.example', ALICE, mail({ subject: 'Printer on fire' }));
      const news = m.news('ticket-1-done@tickets.example', 'mallory@evil.example', mail({ subject: 'done', headers }));
      expect(existsSync(join(m.tickets, 'archived', '1'))).toBe(true);
      // The close came From: Alice (forged: its envelope sender is not hers); she hears of it.
      expect(news.map(([to, subject]) => [to, subject])).toEqual([[ALICE, '[issue1] Closed: Printer on fire'],
        ...ADMINS.map((a) => [a, expect.stringMatching(/^\[issue1\] Closed( \(third party\))?: done$/)])]);
    }
  });
});
