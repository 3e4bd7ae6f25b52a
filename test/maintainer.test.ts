// The maintainer's day: answers written in mutt come back through the MTA as mail From the
// ticket's own address. The MTA (not the message) says a maintainer sent them: Exim's transport
// sets TICKET_MAIL_LOCAL_USER to the login that ran sendmail on this host. Such an answer
// notifies no admin and keeps a closed ticket closed; the same mail from anyone else (a forged
// From, a forged ident, another local user) is an ordinary customer's. The built file runs as
// an MTA runs it.
import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { closer, resolveConfig } from '../ticket.ts';
import { deliver, FAKE_SENDMAIL, mail, sentMail, stored, tempDir } from './harness.ts';

const DOMAIN = 'tickets.example';
const ADMIN = 'max@staff.example';
const ALICE = 'alice@customer.example';

function setup() {
  const base = tempDir('tm-maint-');
  const tickets = join(base, 't');
  const outbox = join(base, 'sent');
  mkdirSync(outbox);
  const flags = ['--dir', tickets, '--domain', DOMAIN, '--admin', ADMIN, '--maintainer', 'tickets', '--maintainer', 'bob',
    '--sendmail', FAKE_SENDMAIL];
  /** Delivers as Exim does: the envelope in the environment, TICKET_MAIL_LOCAL_USER from the transport. */
  const send = (recipient: string, message: string, env: Record<string, string> = {}, extra: string[] = []) => {
    const [local, domain] = recipient.split('@') as [string, string];
    const r = deliver([...flags, ...extra], message, { FAKE_SENDMAIL_DIR: outbox, LOCAL_PART: local, DOMAIN: domain, SENDER: env.SENDER ?? ALICE, ...env });
    expect(r.status, r.stderr).toBe(0);
    return r;
  };
  /** [recipients, subject] of what one delivery sent. */
  const news = (recipient: string, message: string, env: Record<string, string> = {}) => {
    const before = sentMail(outbox).length;
    send(recipient, message, env);
    return sentMail(outbox).slice(before).map((s) => [s.recipients.join(' '), s.headers.get('subject')?.[0]]);
  };
  const route = (recipient: string, message: string, extra: string[]) => {
    const r = deliver(['route', '--json', ...flags, '--recipient', recipient, '--sender', `tickets@mx.${DOMAIN}`, ...extra], message);
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { outcome: string; replies: Array<{ kind: string; to: string }> };
  };
  send(`submit@${DOMAIN}`, mail({ from: `Alice <${ALICE}>`, subject: 'Printer on fire' }));
  return { tickets, send, news, route };
}

/** The answer mutt sends with muttrc.example's hooks: From and Cc the ticket's address, To the customer. */
const answer = (n: number, text = 'Fixed in 1.2.') => mail({
  from: `Support <ticket-${n}@${DOMAIN}>`, to: ALICE, subject: `Re: [issue${n}] Printer on fire`,
  headers: [`Cc: ticket-${n}@${DOMAIN}`, `Sender: tickets@mx.${DOMAIN}`], body: `${text}\n`,
});
const maintainer = { SENDER: `tickets@mx.${DOMAIN}`, TICKET_MAIL_LOCAL_USER: 'tickets' };

describe('the maintainer\'s answers', () => {
  it('notify nobody when the MTA says a maintainer sent them; the same mail from anyone else is news', () => {
    const { news, tickets } = setup();
    expect(news(`ticket-1@${DOMAIN}`, answer(1), maintainer)).toEqual([]);
    // A second maintainer with an account of their own (a team).
    expect(news(`ticket-1@${DOMAIN}`, answer(1, 'Also this.'), { SENDER: `bob@mx.${DOMAIN}`, TICKET_MAIL_LOCAL_USER: 'bob' })).toEqual([]);
    // A forged From (the ticket's own address): from the network, or via a local user who is no maintainer.
    const update = [[ADMIN, '[issue1] Update (third party): Re: Printer on fire']];
    expect(news(`ticket-1@${DOMAIN}`, answer(1, 'forged'), { SENDER: `tickets@mx.${DOMAIN}` })).toEqual(update);
    expect(news(`ticket-1@${DOMAIN}`, answer(1, 'forged 2'), { SENDER: `tickets@mx.${DOMAIN}`, TICKET_MAIL_LOCAL_USER: 'mallory' })).toEqual(update);
    // A login is compared exactly: "Tickets" and "tickets " are other logins.
    expect(news(`ticket-1@${DOMAIN}`, answer(1, 'forged 3'), { SENDER: `tickets@mx.${DOMAIN}`, TICKET_MAIL_LOCAL_USER: 'Tickets' })).toEqual(update);
    expect(news(`ticket-1@${DOMAIN}`, answer(1, 'forged 4'), { SENDER: `tickets@mx.${DOMAIN}`, TICKET_MAIL_LOCAL_USER: 'tickets ' })).toEqual(update);
    expect(stored(join(tickets, '1'))).toHaveLength(7);
  });

  it('file into a closed ticket without reopening it; the customer\'s mail, or a forged answer, still reopens', () => {
    const { news, send, tickets } = setup();
    send(`ticket-1-done@${DOMAIN}`, mail({ from: `Alice <${ALICE}>`, subject: 'thanks' }));
    expect(existsSync(join(tickets, 'archived', '1'))).toBe(true);
    expect(news(`ticket-1@${DOMAIN}`, answer(1, 'You are welcome.'), maintainer)).toEqual([]);
    expect(existsSync(join(tickets, '1'))).toBe(false);
    expect(stored(join(tickets, 'archived', '1')).map(String).at(-1)).toContain('You are welcome.');
    // Tagged to submit@ rather than sent to ticket-1@: the same.
    expect(news(`submit@${DOMAIN}`, answer(1, 'One more thing.'), maintainer)).toEqual([]);
    expect(existsSync(join(tickets, '1'))).toBe(false);
    expect(news(`ticket-1@${DOMAIN}`, answer(1, 'forged'), { SENDER: `tickets@mx.${DOMAIN}`, TICKET_MAIL_LOCAL_USER: 'mallory' }))
      .toEqual([[ADMIN, '[issue1] Reopened (third party): Re: Printer on fire']]);
    expect(existsSync(join(tickets, '1'))).toBe(true);
  });

  it('may close the ticket by mail to ticket-N-done@, which a forged answer may not; the customer hears of it', () => {
    const { news, tickets } = setup();
    const close = mail({ from: `Support <ticket-1@${DOMAIN}>`, subject: 'Ticket 1 closed' });
    expect(news(`ticket-1-done@${DOMAIN}`, close, { SENDER: `tickets@mx.${DOMAIN}` }))
      .toEqual([[ADMIN, '[issue1] Update (third party): Ticket 1 closed']]); // no "Not closed" to an address of ours
    expect(existsSync(join(tickets, '1'))).toBe(true);
    expect(news(`ticket-1-done@${DOMAIN}`, close.replace(/Message-ID: <[^>]*>/, 'Message-ID: <close-2@x>'), maintainer))
      .toEqual([[ALICE, '[issue1] Closed: Printer on fire']]);
    expect(existsSync(join(tickets, 'archived', '1'))).toBe(true);
  });

  it('are predicted exactly by route --local-user', () => {
    const { route, send } = setup();
    expect(route(`ticket-1@${DOMAIN}`, answer(1), ['--local-user', 'tickets'])).toMatchObject({ outcome: 'appended', replies: [] });
    expect(route(`ticket-1@${DOMAIN}`, answer(1), [])).toMatchObject({ outcome: 'appended', replies: [{ kind: 'notify', to: ADMIN }] });
    send(`ticket-1-done@${DOMAIN}`, mail({ from: `Alice <${ALICE}>`, subject: 'thanks' }));
    expect(route(`ticket-1@${DOMAIN}`, answer(1), ['--local-user', 'tickets'])).toMatchObject({ outcome: 'appended-archived', replies: [] });
    expect(route(`ticket-1@${DOMAIN}`, answer(1), ['--local-user', 'mallory'])).toMatchObject({ outcome: 'reopened', replies: [{ kind: 'notify', to: ADMIN }] });
  });

  it('refuses a maintainer setting that is no login name, as a configuration mistake (75)', () => {
    const base = tempDir('tm-maint-');
    for (const bad of ['bob smith', 'bob\nroot', '-bob', 'a'.repeat(40), 'bøb']) {
      const r = deliver(['--dir', join(base, 't'), '--maintainer', bad, '--recipient', `submit@${DOMAIN}`], mail());
      expect([r.status, r.stderr.trim().split('\n')]).toEqual([75, [expect.stringMatching(/^ticket-mail: bad maintainer login "[ -~]*"$/)]]);
    }
  });
});

describe('closer: whom a note from close or ,c names', () => {
  const cfg = resolveConfig({ dir: '/srv/tickets', admin: ['alice@staff.example', 'max@staff.example'], maintainer: ['tickets', 'bob'] }, {}, {});
  it.each([
    ['$EMAIL first', { EMAIL: 'Bob.B@Home.example', USER: 'bob' }, 'bob.b@home.example'],
    ['the admin named like the login', { USER: 'max' }, 'max@staff.example'],
    ['the sudo caller, not the tickets user sudo made it', { USER: 'tickets', SUDO_USER: 'max' }, 'max@staff.example'],
    ['a team maintainer by their login, never the first admin', { USER: 'bob' }, 'bob@tickets.example'],
    ['the tickets user, nobody in particular: the first admin', { USER: 'tickets' }, 'alice@staff.example'],
  ])('%s', (_, env, expected) => {
    expect(closer(cfg, env, 'tickets.example', 'tickets')).toBe(expected);
  });
});
