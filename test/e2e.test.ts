// End to end with the real tools: a private Exim 4 running the pipe transport from
// exim.conf.example, mutt in tmux with the hooks from muttrc.example, mailutils, and the
// package installed the ways users install it (npm pack + npx, bun, one copied file).
// Recipe: ../shared/docs/e2e-recipe.md. No daemon, nothing under /etc/exim4 is touched.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import {
  chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { BIN, ROOT, mail, stored, tempDir } from './harness.ts';

const sh = (command: string, input?: string) => spawnSync('sh', ['-c', command], { input, encoding: 'utf8' });
const has = (tool: string) => sh(`command -v ${tool}`).status === 0;
const missing = ['exim4', 'mutt', 'tmux', 'messages', 'mutt_dotlock', 'python3'].filter((t) => !has(t));
const isRoot = process.getuid?.() === 0;
const skipReason = missing.length ? `missing ${missing.join(', ')} (apt-get install exim4-daemon-light mutt mailutils tmux)`
  : !isRoot ? 'not root (the private Exim needs root to start)' : '';
if (skipReason) console.log(`skipped: end-to-end tests with Exim and mutt: ${skipReason}`);

const USER = 'tm-e2e';
const DOMAIN = 'tickets.test';

describe.skipIf(!!skipReason)('end to end: real Exim and real mutt', () => {
  let base = '';
  let conf = '';
  let tickets = '';
  const exim = (args: string[], input?: string) => spawnSync('/usr/sbin/exim4', ['-C', conf, ...args], { input, encoding: 'utf8' });
  /** Submits a message the way a local client would; -odf delivers it before returning. */
  const submit = (from: string, to: string, message: string) => exim(['-odf', '-oi', '-f', from, to], message);
  const mainlog = () => readFileSync(join(base, 'log', 'mainlog'), 'utf8');
  const outbox = () => {
    const path = join(base, 'mail', 'outbox');
    if (!existsSync(path)) return [];
    return readFileSync(path, 'utf8').split(/^(?=From \S+ \w{3} \w{3} [ \d]\d )/m).filter(Boolean).map((m) => ({
      to: /^Envelope-to: (.*)$/m.exec(m)?.[1], subject: /^Subject: (.*)$/m.exec(m)?.[1], text: m,
    }));
  };
  const queued = () => Number(exim(['-bpc']).stdout.trim());
  /** The installed copy, run as root the way a sysadmin runs it. */
  const ticketMail = (args: string[]) => spawnSync(process.execPath, [join(base, 'ticket-mail.cjs'), ...args], { encoding: 'utf8' });
  let installFlags: string[] = [];

  beforeAll(() => {
    // setup makes the pipe's user with its HOME here: start from no such user.
    if (sh(`id -u ${USER}`).status === 0) sh(`userdel ${USER}`);
    base = tempDir('tm-e2e-');
    chmodSync(base, 0o755);
    installFlags = ['--user', USER, '--home', join(base, 'home'), '--launcher', join(base, 'bin', 'ticket-mail-deliver'),
      '--config', join(base, 'etc', 'config.json')];
    for (const d of ['spool', 'log', 'mail']) {
      mkdirSync(join(base, d));
    }
    tickets = join(base, 'tickets');
    mkdirSync(join(base, 'bin'));
    // The single copied file is what the pipe runs: the user it runs as cannot see the checkout.
    copyFileSync(BIN, join(base, 'ticket-mail.cjs'));
    chmodSync(join(base, 'ticket-mail.cjs'), 0o755);
    conf = join(base, 'exim.conf');
    writeFileSync(join(base, 'bin', 'sendmail'), `#!/bin/sh\nexec /usr/sbin/exim4 -C ${conf} -odf "$@"\n`, { mode: 0o755 });
    // The README's set-up, as root, with this test's paths: user, folders, config, launcher.
    const r = ticketMail(['setup', ...installFlags, '--etc', join(base, 'etc'), '--mta', 'exim', '--dir', tickets, '--domain', DOMAIN,
      '--admin', 'max@staff.test', '--sendmail', join(base, 'bin', 'sendmail')]);
    expect(r.status, r.stderr).toBe(0);
    // A short lock timeout for the deferral test, set where a sysadmin would: in the config file.
    const config = join(base, 'etc', 'config.json');
    writeFileSync(config, readFileSync(config, 'utf8').replace('"dir":', '"lockTimeout": 2,\n  "dir":'));
    for (const d of ['spool', 'log', 'mail']) sh(`chown ${USER}:${USER} ${join(base, d)} && chmod 750 ${join(base, d)}`);
    writeFileSync(conf, eximConfig(base, ticketMail(['exim-config', ...installFlags]).stdout), { mode: 0o644 });
    const check = exim(['-bV']);
    expect(check.status, check.stderr).toBe(0);
  });

  afterAll(() => {
    if (base && !process.env.KEEP_E2E) sh(`rm -rf ${base}`);
  });

  it('files a submission and sends the acknowledgement and the admin notification', () => {
    const r = submit('alice@client.test', `submit@${DOMAIN}`, mail({ from: 'Alice <alice@client.test>', to: `submit@${DOMAIN}`, subject: 'Printer on fire', id: 'e2e-1@client.test' }));
    expect(r.status, r.stderr).toBe(0);
    expect(stored(join(tickets, '1'))).toHaveLength(1);
    expect(mainlog()).toMatch(/=> submit <submit@tickets\.test> .*T=ticket_mail_pipe/);
    expect(outbox().map((m) => [m.to, m.subject])).toEqual([
      ['alice@client.test', '[issue1] Printer on fire'], ['max@staff.test', '[issue1] New: Printer on fire']]);
    expect(outbox()[0]!.text).toMatch(/^Return-path: <>$/m); // sent with the null envelope sender
  });

  it('appends replies to ticket-N@ and [issueN] mail to submit@', () => {
    expect(submit('alice@client.test', `ticket-1@${DOMAIN}`, mail({ subject: 'more smoke' })).status).toBe(0);
    expect(submit('alice@client.test', `submit@${DOMAIN}`, mail({ subject: 'Re: [issue1] Printer on fire' })).status).toBe(0);
    expect(submit('bob@client.test', `Ticket-1@Tickets.Test`, mail({ from: 'bob@client.test', subject: 'me too' })).status).toBe(0);
    expect(stored(join(tickets, '1'))).toHaveLength(4);
    expect(existsSync(join(tickets, '2'))).toBe(false);
    // The pipe's HOME is its home_directory, the user's HOME (outside the tickets folder): the
    // first delivery left the code cache there, the unprivileged delivery user's own.
    const cache = join(base, 'home', '.cache', 'ticket-mail');
    expect(readdirSync(cache).filter((f) => f.includes('-core-'))).toHaveLength(1);
    expect([statSync(cache).mode & 0o777, statSync(cache).uid]).toEqual([0o700, Number(sh(`id -u ${USER}`).stdout.trim())]);
  });

  it('closes with -done and reopens with mail to the archived ticket', () => {
    expect(submit('alice@client.test', `ticket-1-done@${DOMAIN}`, mail({ from: 'Alice <alice@client.test>', subject: 'fixed' })).status).toBe(0);
    expect(existsSync(join(tickets, '1'))).toBe(false);
    expect(stored(join(tickets, 'archived', '1'))).toHaveLength(5);
    expect(submit('alice@client.test', `ticket-1@${DOMAIN}`, mail({ from: 'Alice <alice@client.test>', subject: 'burning again' })).status).toBe(0);
    expect(existsSync(join(tickets, 'archived', '1'))).toBe(false);
    expect(stored(join(tickets, '1'))).toHaveLength(6);
    expect(outbox().at(-1)!.subject).toBe('[issue1] Reopened: burning again');
  });

  it('rejects an unknown ticket at SMTP time with 550, and accepts a known one', () => {
    const session = (rcpt: string) => exim(['-bh', '192.0.2.7'],
      `HELO client.test\r\nMAIL FROM:<carol@client.test>\r\nRCPT TO:<${rcpt}>\r\nQUIT\r\n`).stdout;
    expect(session(`ticket-99@${DOMAIN}`)).toMatch(/^550[ -].*$/m);
    expect(session(`ticket-99-done@${DOMAIN}`)).toMatch(/^550[ -]/m);
    expect(session(`ticket-1@${DOMAIN}`)).toMatch(/^250 Accepted/m);
    expect(session(`ticket-1-done@${DOMAIN}`)).toMatch(/^250 Accepted/m);
    expect(session(`submit@${DOMAIN}`)).toMatch(/^250 Accepted/m);
    expect(session(`ticket-007@${DOMAIN}`)).toMatch(/^550[ -]/m);
  });

  it('files mail for an unknown ticket that a local client sent (no SMTP-time check) in unmatched, and tells the sender: no bounce', () => {
    expect(submit('carol@client.test', `ticket-99@${DOMAIN}`, mail({ from: 'carol@client.test', subject: 'lost' })).status).toBe(0);
    expect(stored(join(tickets, 'unmatched')).map(String)).toEqual([expect.stringMatching(/^Subject: lost$/m)]);
    expect(mainlog()).toMatch(/=> ticket-99 <ticket-99@tickets\.test> .*R=ticket_mail_unchecked T=ticket_mail_pipe/);
    expect(outbox().at(-1)).toMatchObject({ to: 'carol@client.test', subject: 'No such ticket: 99' });
    expect(queued()).toBe(0);
  });

  it('files a local client\'s mail for a bad ticket number (ticket-007@, ticket-0@, ten digits) in unmatched: nothing bounces', () => {
    const unmatched = join(tickets, 'unmatched');
    const before = stored(unmatched).length;
    const locals = ['ticket-007', 'ticket-0', 'ticket-1234567890', 'ticket-007-done'];
    for (const local of locals) {
      expect(submit('carol@client.test', `${local}@${DOMAIN}`, mail({ from: 'carol@client.test', subject: `bad ${local}` })).status).toBe(0);
      expect(mainlog()).toMatch(new RegExp(`=> ${local} <${local}@tickets\\.test> .*R=ticket_mail_unchecked T=ticket_mail_pipe`));
    }
    expect(stored(unmatched).slice(before).map((m) => /^Subject: (.*)$/m.exec(String(m))?.[1])).toEqual(locals.map((l) => `bad ${l}`));
    expect(outbox().filter((m) => /Mail delivery failed|undeliverable/i.test(m.text))).toEqual([]);
    expect(queued()).toBe(0);
  });

  it.each([
    ['missing (a wrong path, an upgrade in progress)', (program: string) => rmSync(program)],
    ['damaged (a syntax error)', (program: string) => writeFileSync(program, 'this is not ( javascript')],
  ])('keeps mail queued, never bounced, while the program is %s; delivers it once restored', (_, breakIt) => {
    const program = join(base, 'ticket-mail.cjs');
    const saved = readFileSync(program);
    const before = stored(join(tickets, '1')).length;
    breakIt(program);
    try {
      const r = submit('alice@client.test', `ticket-1@${DOMAIN}`, mail({ subject: 'during the upgrade' }));
      expect(r.status).toBe(0);
      expect(queued()).toBe(1);
      // One sentence in the log, never a stack trace; nothing went back to the sender.
      const log = mainlog().split('\n').filter((l) => l.includes('<ticket-1@tickets.test>') || l.includes('== ticket-1@'));
      expect(log.at(-1)).toMatch(/== ticket-1@tickets\.test .*returned 75/);
      // log_defer_output: the launcher's one sentence, the line before.
      expect(log.at(-2)).toMatch(/transport output: ticket-mail: cannot run .*ticket-mail\.cjs \(exit status 1: \w*Error: .*\); the mail stays queued$/);
      expect(mainlog()).not.toMatch(/^\s+at /m);
      expect(outbox().filter((m) => m.to === 'alice@client.test' && /Mail delivery failed|undeliverable/i.test(m.text))).toEqual([]);
    } finally {
      writeFileSync(program, saved);
    }
    expect(exim(['-qff']).status).toBe(0);
    expect(queued()).toBe(0);
    expect(stored(join(tickets, '1')).map(String).slice(before)).toEqual([expect.stringMatching(/^Subject: during the upgrade$/m)]);
  });

  it('runs a maintainer\'s command as root as the folder\'s owner, and check finds what would break delivery', () => {
    const check = (...extra: string[]) => ticketMail(['check', '--config', join(base, 'etc', 'config.json'), '--mta-config', conf, ...extra]);
    const ok = check();
    expect(ok.stdout).toMatch(new RegExp(`^ok +the MTA runs ${join(base, 'bin', 'ticket-mail-deliver')} \\(${process.execPath} ${join(base, 'ticket-mail.cjs')}\\)$`, 'm'));
    expect(ok.stdout).toMatch(new RegExp(`^ok +Exim can look up ticket numbers in ${join(tickets, 'archived')}$`, 'm'));
    expect(ok.stdout).toMatch(/^ok +every file in .* is its owner's/m);
    // root closes and reopens ticket 1: nothing root-owned is left behind in the tree.
    for (const action of ['close', 'reopen']) {
      const r = ticketMail([action, '1', '--config', join(base, 'etc', 'config.json'), '--quiet']);
      expect(r.status, r.stderr).toBe(0);
    }
    const owner = Number(sh(`id -u ${USER}`).stdout.trim());
    expect(sh(`find ${tickets} ! -uid ${owner}`).stdout).toBe('');
    // What the newcomer's trial did by hand: a root-owned index folder, Exim's group taken away.
    mkdirSync(join(tickets, '.ticket-mail', 'ids', 'zz'), { recursive: true });
    chmodSync(tickets, 0o700);
    try {
      const bad = check();
      expect(bad.status).toBe(1);
      expect(bad.stdout).toMatch(/^FIX +1 file\(s\) that tm-e2e, the owner of .* does not own, e\.g\. .*\/ids\/zz: chown -R tm-e2e:/m);
      expect(bad.stdout).toMatch(new RegExp(`^FIX +Exim checks ticket numbers at SMTP time but cannot search ${tickets}: `, 'm'));
    } finally {
      rmSync(join(tickets, '.ticket-mail', 'ids', 'zz'), { recursive: true });
      chmodSync(tickets, 0o2710);
    }
    rmSync(join(base, 'ticket-mail.cjs.moved'), { force: true });
    renameSync(join(base, 'ticket-mail.cjs'), join(base, 'ticket-mail.cjs.moved'));
    try {
      const moved = spawnSync(process.execPath, [BIN, 'check', '--config', join(base, 'etc', 'config.json'), '--mta-config', conf], { encoding: 'utf8' });
      expect(moved.stdout).toMatch(/^FIX +the MTA's launcher .* names program .*ticket-mail\.cjs, which does not exist/m);
    } finally { renameSync(join(base, 'ticket-mail.cjs.moved'), join(base, 'ticket-mail.cjs')); }
  });

  it('defers a delivery that exits 75 and delivers it on a later queue run, nothing lost', () => {
    const before = stored(join(tickets, '1')).length;
    writeFileSync(join(tickets, '1.lock'), 'held\n'); // someone holds the ticket longer than --lock-timeout 2
    const r = submit('alice@client.test', `ticket-1@${DOMAIN}`, mail({ subject: 'deferred', id: 'deferred@client.test' }));
    expect(r.status).toBe(0);
    expect(mainlog()).toMatch(/== ticket-1@tickets\.test .*returned 75/);
    expect(queued()).toBe(1);
    expect(stored(join(tickets, '1'))).toHaveLength(before);
    rmSync(join(tickets, '1.lock'));
    expect(exim(['-qff']).status).toBe(0);
    expect(queued()).toBe(0);
    const messages = stored(join(tickets, '1')).map(String);
    expect(messages).toHaveLength(before + 1);
    expect(messages.at(-1)).toMatch(/^Subject: deferred$/m);
  });

  it('waits while mutt holds the lock, then delivers', () => {
    const path = join(tickets, '1');
    const before = stored(path).length;
    expect(sh(`mutt_dotlock ${path}`).status).toBe(0);
    expect(existsSync(`${path}.lock`)).toBe(true);
    const releaser = sh(`(sleep 1; mutt_dotlock -u ${path}) >/dev/null 2>&1 & echo started`);
    expect(releaser.stdout.trim()).toBe('started');
    const r = submit('alice@client.test', `ticket-1@${DOMAIN}`, mail({ subject: 'waited' }));
    expect(r.status).toBe(0);
    expect(stored(path)).toHaveLength(before + 1);
    expect(queued()).toBe(0);
  });

  it('makes mutt\'s reply come from the ticket address with the ticket in Cc, for every ticket', () => {
    expect(submit('dora@client.test', `submit@${DOMAIN}`, mail({ from: 'Dora <dora@client.test>', subject: 'second' })).status).toBe(0);
    expect(submit('dora@client.test', `ticket-2-done@${DOMAIN}`, mail({ from: 'Dora <dora@client.test>' })).status).toBe(0);
    for (const [n, path] of [[1, join(tickets, '1')], [2, join(tickets, 'archived', '2')]] as const) {
      const draft = muttReplyDraft(base, path);
      expect(draft).toMatch(new RegExp(`^From: Support <ticket-${n}@tickets\\.test>$`, 'm'));
      expect(draft).toMatch(new RegExp(`^Cc: ticket-${n}@tickets\\.test$`, 'm'));
    }
  }, 60_000);

  it('files the maintainer\'s answer from mutt into the closed ticket without reopening it, and notifies nobody; a forged one from outside is news', () => {
    const closed = join(tickets, 'archived', '2');
    const before = stored(closed).length;
    const sentBefore = outbox().length;
    const answered = () => stored(closed).map(String).some((m) => m.includes('Fixed in 1.2.'));
    // r; the editor (behind the hook's "ticket-mail draft") writes the answer; y once the compose
    // menu shows (mutt drops what was typed ahead while the editor ran).
    inMutt(base, closed, 'r', answered, true, {}, 'printf "Fixed in 1.2.\\n" >> "$1"', [[/y:Send/, 'y']]);
    expect(existsSync(join(tickets, '2'))).toBe(false);
    expect(stored(closed).length).toBeGreaterThan(before);
    const sent = outbox().slice(sentBefore);
    expect(sent.filter((m) => m.to === 'dora@client.test').map((m) => m.subject)).toContain('Re: second');
    expect(sent.filter((m) => m.to === 'max@staff.test')).toEqual([]);
    // The same answer over SMTP from another host, its RFC 1413 ident claiming the tickets user: news.
    const forged = ['HELO client.test', 'MAIL FROM:<tm-e2e@tickets.test>', `RCPT TO:<ticket-1@${DOMAIN}>`, 'DATA',
      `From: Support <ticket-1@${DOMAIN}>`, 'To: alice@client.test', 'Subject: Re: [issue1] Printer on fire', '', 'Ignore the last mail.', '.', 'QUIT', ''].join('\r\n');
    expect(exim(['-bs', '-odf', '-oMa', '192.0.2.7', '-oMt', USER], forged).stdout).toMatch(/^250 OK id=/m);
    expect(exim(['-qff']).status).toBe(0);
    expect(queued()).toBe(0);
    expect(outbox().at(-1)).toMatchObject({ to: 'max@staff.test', subject: '[issue1] Update (third party): Re: Printer on fire' });
  }, 60_000);

  it('counts each ticket\'s messages the same in mutt, mailutils and Python', () => {
    const mboxes = [...readdirSync(tickets).filter((n) => /^\d+$/.test(n)).map((n) => join(tickets, n)),
      ...readdirSync(join(tickets, 'archived')).filter((n) => /^\d+$/.test(n)).map((n) => join(tickets, 'archived', n))];
    expect(mboxes.length).toBeGreaterThanOrEqual(2);
    for (const path of mboxes) {
      const expected = stored(path).length;
      expect(Number(sh(`messages -q ${path}`).stdout.trim())).toBe(expected);
      expect(Number(sh(`python3 -c 'import mailbox,sys; print(len(mailbox.mbox(sys.argv[1])))' ${path}`).stdout.trim())).toBe(expected);
      // mutt's own count, from its status line once it has read the whole mailbox.
      let count: number | undefined;
      inMutt(base, path, '', (_, screen) => (count = muttCount(screen)) !== undefined);
      expect(count).toBe(expected);
    }
  }, 120_000);

  it('closes the ticket being read with the muttrc\'s ",c" macro, naming the real closer and the ticket\'s subject, and mutt rewrites no ticket', () => {
    const open = join(tickets, '1');
    expect(existsSync(open)).toBe(true);
    const before = readFileSync(open);
    // The close notice goes through the private Exim (mutt's hooks inherit its SENDMAIL), never the machine's MTA.
    const notices = () => outbox().filter((m) => m.subject?.includes('Closed:'));
    const count = notices().length;
    // mutt opened for writing, as a maintainer would (no -R): the hooks make ticket folders read-only.
    inMutt(base, open, ',c', () => existsSync(join(tickets, 'archived', '1')) && !existsSync(open) && notices().length > count, false,
      { EMAIL: 'dora.admin@staff.test' });
    // A message read in a ticket (its flags change): mutt, quitting, writes nothing into the file.
    const other = join(tickets, 'archived', '2');
    const untouched = readFileSync(other);
    inMutt(base, other, '\r', (_, screen) => /Replaced|Hello\./.test(screen), false);
    expect(readFileSync(other).equals(untouched)).toBe(true);
    const closed = readFileSync(join(tickets, 'archived', '1'));
    expect(closed.subarray(0, before.length).equals(before)).toBe(true); // byte for byte: no Status: lines
    expect(stored(join(tickets, 'archived', '1')).map(String).at(-1)).toMatch(/^Subject: Ticket 1 closed$/m);
    const notice = notices().at(-1)!;
    expect([notice.to, notice.subject]).toEqual(['alice@client.test', '[issue1] Closed: Printer on fire']);
    expect(notice.text).toContain('was closed by dora.admin@staff.test');
  }, 60_000);
});

/** The private Exim config: the routers and transport "ticket-mail exim-config" printed, in a test frame. */
function eximConfig(base: string, ours: string): string {
  expect(ours).toMatch(/^ticket_mail_pipe:$/m);
  return `# Generated by test/e2e.test.ts around what "ticket-mail exim-config" printed
exim_user = ${USER}
exim_group = ${USER}
trusted_users = ${USER}
deliver_drop_privilege = true
spool_directory = ${base}/spool
log_file_path = ${base}/log/%slog
log_selector = +all
keep_environment =
host_lookup =
rfc1413_hosts =
primary_hostname = mx.${DOMAIN}
qualify_domain = ${DOMAIN}
domainlist local_domains = ${DOMAIN}
acl_smtp_rcpt = acl_check_rcpt

begin acl

acl_check_rcpt:
  deny domains = +local_domains
       !verify = recipient
  accept

begin routers

${ours.slice(0, ours.indexOf('ticket_mail_pipe:'))}
unknown_local:
  driver = redirect
  domains = +local_domains
  allow_fail
  data = :fail: no such ticket address

outbox:
  driver = accept
  domains = ! +local_domains
  transport = outbox_file

begin transports

${ours.slice(ours.indexOf('ticket_mail_pipe:'))}
outbox_file:
  driver = appendfile
  file = ${base}/mail/outbox
  user = ${USER}
  envelope_to_add
  return_path_add

begin retry

* * F,2h,15m; G,16h,1h,1.5; F,4d,6h
`;
}

/** Opens an mbox in real mutt (in tmux), presses r, and returns the draft mutt wrote. */
function muttReplyDraft(base: string, mbox: string): string {
  let text = '';
  inMutt(base, mbox, 'r', (draft) => existsSync(draft) && (text = readFileSync(draft, 'utf8')) !== '');
  return text;
}

/** The message count mutt's status line shows, once it shows one. */
const muttCount = (screen: string) => {
  const m = /STATUS msgs=(\d+)/.exec(screen);
  return m ? Number(m[1]) : undefined;
};

/**
 * Runs real mutt in tmux with muttrc.example's hooks on `mbox`, typing `keys` once mutt
 * shows its index (again while mutt drops them) until `done` says so, then quits it.
 * Whatever mutt's hooks send goes through the private Exim (SENDMAIL), never the machine's MTA.
 */
function inMutt(base: string, mbox: string, keys: string, done: (draft: string, screen: string) => boolean, readOnly = true,
  env: Record<string, string> = {}, edit = '', answers: Array<[RegExp, string]> = []): void {
  const work = tempDir('tm-mutt-');
  const draft = join(work, 'draft');
  writeFileSync(join(work, 'copy-draft'), `#!/bin/sh\n${edit}\ncp "$1" ${draft}\n`, { mode: 0o755 });
  // mutt runs as root here (a private -C configuration keeps Exim's privileges only for root):
  // -oMt, which only a trusted caller may give, makes Exim's $sender_ident the login it would be
  // had the tickets user run mutt. mutt's own mail never reaches the machine's MTA.
  writeFileSync(join(work, 'mutt-sendmail'), `#!/bin/sh\nexec /usr/sbin/exim4 -C ${base}/exim.conf -odf -oMt ${USER} "$@"\n`, { mode: 0o755 });
  const example = readFileSync(join(ROOT, 'muttrc.example'), 'utf8')
    .split('ticket-mail muttrc').join(`${process.execPath} ${join(base, 'ticket-mail.cjs')} muttrc`)
    .split('/srv/tickets').join(join(base, 'tickets'))
    .split('tickets.example.org').join(DOMAIN);
  writeFileSync(join(work, 'muttrc'), `${example}
set folder=${work}
set fast_reply=yes include=yes reply_to=yes abort_unmodified=yes
set record="" copy=no wait_key=no quit=yes move=no mark_old=no
set header_cache="" message_cachedir=""
set sendmail="${join(work, 'mutt-sendmail')}"
set status_format="STATUS msgs=%m"
`);
  const sock = join(work, 'tmux.sock');
  const tmux = (...args: string[]) => spawnSync('tmux', ['-S', sock, ...args], { encoding: 'utf8' });
  tmux('new-session', '-d', '-x', '150', '-y', '40', '-e', `EDITOR=${join(work, 'copy-draft')}`, '-e', `SENDMAIL=${base}/bin/sendmail`, '-e', `TICKET_MAIL_CONFIG=${base}/etc/config.json`, ...Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]),
    `mutt -n ${readOnly ? '-R ' : ''}-F ${join(work, 'muttrc')} -f ${mbox}; echo $? > ${join(work, 'rc')}`);
  try {
    let ok = false;
    for (let i = 0; i < 120 && !(ok = done(draft, tmux('capture-pane', '-p').stdout)); i++) { // up to 30 s: CI runs other tests alongside
      spawnSync('sleep', ['0.25']);
      // Keys again only while nothing happened yet: a reply typed twice would be sent twice.
      const screen = tmux('capture-pane', '-p').stdout;
      if (keys && i % 4 === 0 && screen.includes('STATUS msgs=') && !done(draft, '')) tmux('send-keys', keys);
      // A screen that asks (the compose menu): its answer, each time it shows.
      for (const [asks, key] of answers) if (asks.test(screen) && !done(draft, '')) tmux('send-keys', key);
    }
    if (!ok) throw new Error(`mutt did not get there; screen:\n${tmux('capture-pane', '-p').stdout}`);
    for (let i = 0; i < 20 && !existsSync(join(work, 'rc')); i++) { tmux('send-keys', 'q'); spawnSync('sleep', ['0.25']); }
  } finally {
    const pid = tmux('display-message', '-p', '#{pid}').stdout.trim();
    if (/^\d+$/.test(pid)) spawnSync('kill', [pid]);
    for (const f of readdirSync(work)) rmSync(join(work, f), { force: true, recursive: true });
  }
}
