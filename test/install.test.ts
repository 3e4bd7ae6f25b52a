// The installation, as a hostile reviewer tried it (issue 15): setup as root, what exim-config and
// postfix-config print, what check reads, and route's prediction against the real delivery.
// Everything runs the built file; setup runs as root with every path in a temp dir, or in a mount
// namespace of its own: nothing of the machine's /etc, /srv or /usr/local is touched.
import { beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import {
  chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { decodeToken } from '../ticket.ts';
import { BIN, deliver, FAKE_SENDMAIL, mail, sentMail, tempDir } from './harness.ts';

const DOMAIN = 'tickets.example';
const isRoot = process.getuid?.() === 0;
const sh = (command: string) => spawnSync('sh', ['-c', command], { encoding: 'utf8' });

describe('route predicts what delivery does', () => {
  /** Runs route, then delivers the same message; returns both, as comparable facts. */
  const both = (dir: string, sent: string, recipient: string, message: string, extra: string[] = []) => {
    const flags = ['--dir', dir, '--domain', DOMAIN, '--admin', 'max@tickets.example', '--sendmail', FAKE_SENDMAIL,
      '--recipient', recipient, '--sender', 'alice@customer.example', ...extra];
    const predicted = deliver(['route', '--json', ...flags], message);
    expect(predicted.status, predicted.stderr).toBe(0);
    const route = JSON.parse(predicted.stdout) as { outcome: string; replies: Array<{ to: string }> };
    const before = readdirSync(sent).length;
    const r = deliver(flags, message, { FAKE_SENDMAIL_DIR: sent });
    const log = readFileSync(join(dir, '.ticket-mail', 'log'), 'utf8').trim().split('\n').at(-1)!.split('\t').map(decodeToken);
    const mails = sentMail(sent).slice(before / 2);
    return {
      predicted: { outcome: route.outcome, to: route.replies.map((x) => x.to).sort() },
      delivered: { outcome: r.status === 67 ? 'bounced' : log[6], to: mails.flatMap((m) => m.recipients).sort() },
      status: r.status,
    };
  };

  it('gives the outcome and the replies delivery then has, retries and --unknown bounce included (through the built file)', () => {
    const root = tempDir();
    const dir = join(root, 't');
    const sent = join(root, 'sent');
    mkdirSync(sent);
    const messages: Record<string, string> = {};
    const message = (name: string) => (messages[name] ??= mail({ from: 'alice@customer.example', subject: `about ${name}` }));
    const cases: Array<[string, string, string[]]> = [
      ['submit@', 'new', []], ['submit@', 'new', []], ['ticket-1@', 'reply', []], ['ticket-1@', 'reply', []],
      ['ticket-99@', 'lost', []], ['ticket-99@', 'lost', []], ['ticket-98@', 'bounced', ['--unknown', 'bounce']],
      ['ticket-007@', 'zero', []], ['ticket-007@', 'zero', []], ['submit-done@', 'other', []], ['submit-done@', 'other', []],
      ['ticket-1-done@', 'close', []], ['ticket-1-done@', 'close', []], ['ticket-1@', 'reopen', []],
    ];
    const outcomes = cases.map(([local, name, extra]) => {
      const { predicted, delivered, status } = both(dir, sent, `${local}${DOMAIN}`, message(name), extra);
      expect(predicted, `${local} ${name}`).toEqual(delivered);
      return `${predicted.outcome}/${status}/${predicted.to.length}`;
    });
    // What the cases are meant to cover happened (a retry is a duplicate and answered by nobody).
    expect(outcomes).toEqual(['created/0/2', 'duplicate/0/0', 'appended/0/1', 'duplicate/0/0', 'unmatched/0/1', 'duplicate/0/0',
      'bounced/67/0', 'unmatched/0/0', 'duplicate/0/0', 'unmatched/0/0', 'duplicate/0/0', 'closed/0/1', 'duplicate/0/0', 'reopened/0/1']);
  });
});

describe('output', () => {
  it('says in one line that it cannot write its output (list > /dev/full), exit 1, no stack trace', () => {
    const dir = tempDir();
    expect(deliver(['--dir', dir, '--recipient', `submit@${DOMAIN}`, '--sender', 'a@b.example'], mail()).status).toBe(0);
    const r = spawnSync('sh', ['-c', 'exec "$0" "$1" list --dir "$2" > /dev/full', process.execPath, BIN, dir], { encoding: 'utf8', env: { PATH: process.env.PATH, TICKET_MAIL_CONFIG: '' } });
    expect([r.status, r.stderr]).toEqual([1, 'ticket-mail: cannot write the output: ENOSPC\n']);
  });
});
