// End to end with a real Postfix: Debian's package unpacked into a private root
// (test/postfix/private-postfix.sh), set up the way the README tells a sysadmin: "ticket-mail
// setup" as root, then exactly what "ticket-mail postfix-config" prints, first the pipe(8) form,
// then the aliases form. Postfix listens on 127.0.0.1 only and delivers every outside address
// into one private mbox; the machine's own MTA is never used.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, ROOT, mail, stored, tempDir } from './harness.ts';

const sh = (command: string, input = '') => spawnSync('sh', ['-c', command], { input, encoding: 'utf8' });
const PRIVATE_POSTFIX = join(ROOT, 'test', 'postfix', 'private-postfix.sh');
const isRoot = process.getuid?.() === 0;
let deb = '';
const skipReason = !isRoot ? 'not root (the private Postfix and setup need root)'
  : sh('command -v python3').status !== 0 ? 'missing python3 (the SMTP client)'
  : (() => { // the .deb is downloaded once, into node_modules/.cache
    const r = sh(`${PRIVATE_POSTFIX} fetch ${join(ROOT, 'node_modules', '.cache', 'ticket-mail-postfix')}`);
    deb = r.stdout.trim();
    return r.status === 0 ? '' : `cannot download Postfix: ${r.stderr.trim()}`;
  })();
if (skipReason) console.log(`skipped: end-to-end tests with Postfix: ${skipReason}`);

// No "-" in the user names: with recipient_delimiter "+-" a user "a-b" would lose a-b+tag@.
const USER = 'tmpfx';
const LOCAL_USER = 'tmpfxu';
const DOMAIN = 'pftickets.test';
const ALICE = 'alice@pfclient.test';
const DEADLINE_MS = 30_000; // generous: a loaded 2-core machine must not make a wait fail

/** Polls `probe` until it returns something other than undefined/false, or the deadline passes. */
function waitFor<T>(what: string, probe: () => T | undefined | false): T {
  const end = Date.now() + DEADLINE_MS;
  for (;;) {
    const got = probe();
    if (got !== undefined && got !== false) return got;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
}

describe.skipIf(!!skipReason)('end to end: real Postfix', () => {
  let base = '';
  let pf = '';       // the private Postfix's root
  let port = 0;
  let tickets = '';
  let home = '';
  let installFlags: string[] = [];
  let eximQueueBefore = '';
  let serial = 0;
  const postfix = (bin: string, args: string[], input = '') => spawnSync(join(pf, 'bin', bin), args, { input, encoding: 'utf8' });
  const maillog = () => { try { return readFileSync(join(pf, 'log', 'maillog'), 'utf8'); } catch { return ''; } };
  /** The installed copy, run as root the way a sysadmin runs it. */
  const ticketMail = (args: string[]) => spawnSync(process.execPath, [join(base, 'ticket-mail.cjs'), ...args], { encoding: 'utf8' });
  const config = () => join(base, 'etc', 'config.json');

  /** A message with a Message-ID of its own, by which its queue id is found in the log. */
  const message = (subject: string, extra: Parameters<typeof mail>[0] = {}) => {
    const id = `pf-${++serial}-${process.pid}@pfclient.test`;
    return { id, text: mail({ from: `Alice <${ALICE}>`, to: `submit@${DOMAIN}`, subject, id, ...extra }) };
  };
  const queueIdOf = (messageId: string) => waitFor(`the queue id of <${messageId}>`,
    () => new RegExp(`: ([0-9A-F]+): message-id=<${messageId.replace(/[.+]/g, '\\$&')}>`).exec(maillog())?.[1]);
  /** One SMTP session from 127.0.0.1: each RCPT's reply, and the queue id if a message was sent. */
  const smtp = (rcpts: string[], text = '') => {
    const r = spawnSync('python3', [join(ROOT, 'test', 'postfix', 'smtp-send.py'), String(port), ALICE, ...rcpts], { input: text, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return { replies: r.stdout, queueId: /^QUEUED (\S+)$/m.exec(r.stdout)?.[1] };
  };
  const viaSmtp = (rcpt: string, m: { text: string }) => {
    const { replies, queueId } = smtp([rcpt], m.text);
    expect(replies).toMatch(/^RCPT \S+ 250 /m);
    return queueId!;
  };
  /** Local submission (pickup, no smtpd and so no policy check), as root with the private sendmail. */
  const viaSendmail = (rcpt: string, m: { id: string; text: string }) => {
    const r = postfix('sendmail', ['-oi', '-f', ALICE, '--', rcpt], m.text);
    expect(r.status, r.stderr).toBe(0);
    return queueIdOf(m.id);
  };
  /** Waits for a delivery attempt to `rcpt` ending in `status` (a bounce ends the wait at once); returns its log line. */
  const outcome = (queueId: string, rcpt: string, status: 'sent' | 'deferred' | 'bounced') => waitFor(
    `${queueId} to ${rcpt}: status=${status}`, () => {
      const lines = maillog().split('\n').filter((l) => l.includes(`${queueId}: to=<${rcpt}>`));
      const bounced = lines.find((l) => l.includes('status=bounced '));
      if (bounced && status !== 'bounced') throw new Error(`bounced, not ${status}: ${bounced}`);
      return lines.find((l) => l.includes(`status=${status} `));
    });
  const queueOf = (queueId: string) => postfix('postqueue', ['-j']).stdout.split('\n').filter(Boolean)
    .map((l) => JSON.parse(l) as { queue_id: string; queue_name: string }).find((m) => m.queue_id === queueId)?.queue_name;
  /** The private outbox (bounces and ticket-mail's replies), message by message. */
  const outbox = () => {
    const path = join(pf, 'mail', 'outbox');
    if (!existsSync(path)) return [];
    return readFileSync(path, 'utf8').split(/^(?=From \S+ +\w{3} \w{3} [ \d]\d )/m).filter(Boolean).map((text) => ({
      to: /^Delivered-To: (.*)$/m.exec(text)?.[1], subject: /^Subject: (.*)$/m.exec(text)?.[1], text,
    }));
  };

  /** What postfix-config printed, by its "# ---- main.cf ----" style section markers. */
  const sections = (printed: string) => {
    const found = new Map<string, string>();
    let name = '';
    for (const line of printed.split('\n')) {
      const marker = /^# ---- (.*) ----$/.exec(line);
      if (marker) name = marker[1]!;
      else if (name) found.set(name, `${found.get(name) ?? ''}${line}\n`);
    }
    return found;
  };
  /** Restarts the private Postfix with these main.cf settings and master.cf lines (as the lab does). */
  const restart = (main: string, master: string, prestart = '') => {
    stopPostfix();
    mkdirSync(pf, { recursive: true });
    writeFileSync(join(pf, 'main.cf.extra'), main);
    writeFileSync(join(pf, 'master.cf.extra'), master);
    const r = spawnSync(PRIVATE_POSTFIX, ['start', pf, String(port), deb], { encoding: 'utf8', env: { ...process.env, PF_PRESTART: prestart } });
    expect(r.status, r.stderr).toBe(0);
  };
  const stopPostfix = () => {
    if (!existsSync(join(pf, 'spool'))) return;
    const r = spawnSync(PRIVATE_POSTFIX, ['stop', pf], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  };

  beforeAll(() => {
    eximQueueBefore = sh('exim4 -bp 2>/dev/null').stdout;
    // setup makes the pipe's user with its HOME here: start from no such user.
    if (sh(`id -u ${USER}`).status === 0) sh(`userdel ${USER}`);
    if (sh(`id -u ${LOCAL_USER}`).status !== 0) sh(`useradd --system --no-create-home --shell /usr/sbin/nologin ${LOCAL_USER}`);
    base = tempDir('tm-postfix-');
    chmodSync(base, 0o755); // the daemons and the pipe's user must search their way to the files
    pf = join(base, 'pf');
    tickets = join(base, 'tickets');
    home = join(base, 'home');
    port = Number(sh(`python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'`).stdout);
    // The single copied file is what the pipe runs: the user it runs as cannot see the checkout.
    copyFileSync(BIN, join(base, 'ticket-mail.cjs'));
    chmodSync(join(base, 'ticket-mail.cjs'), 0o755);
    installFlags = ['--user', USER, '--home', home, '--launcher', join(base, 'bin', 'ticket-mail-deliver'), '--config', config()];
    // The README's set-up, as root. Replies go through the private instance's sendmail.
    const r = ticketMail(['setup', ...installFlags, '--etc', join(base, 'etc'), '--mta', 'postfix', '--dir', tickets, '--domain', DOMAIN,
      '--admin', 'max@staff.test', '--sendmail', join(pf, 'bin', 'sendmail')]);
    expect(r.status, r.stderr).toBe(0);
    // What a sysadmin would set in the config file: a short lock timeout (the 75 test), unknown
    // tickets bounced (67), a size limit (65: Postfix always adds Return-Path and Received, so an
    // empty or headerless message never reaches the pipe).
    writeFileSync(config(), readFileSync(config(), 'utf8')
      .replace('"dir":', '"lockTimeout": 2,\n  "unknown": "bounce",\n  "maxSize": "100K",\n  "dir":'));
    const printed = ticketMail(['postfix-config', ...installFlags]);
    expect(printed.status, printed.stderr).toBe(0);
    const parts = sections(printed.stdout);
    expect([...parts.keys()]).toEqual(['main.cf', 'master.cf']);
    restart(parts.get('main.cf')!, parts.get('master.cf')!);
  });

  afterAll(() => {
    if (pf) stopPostfix();
    if (base && !process.env.KEEP_E2E) rmSync(base, { recursive: true, force: true });
  });

  it('files a submission over SMTP, and the acknowledgement leaves through the private sendmail', () => {
    const q = viaSmtp(`submit@${DOMAIN}`, message('Printer on fire'));
    expect(outcome(q, `submit@${DOMAIN}`, 'sent')).toMatch(/relay=ticketmail, .*dsn=2\.0\.0, status=sent \(delivered via ticketmail service\)/);
    expect(stored(join(tickets, '1'))).toHaveLength(1);
    const replies = waitFor('the acknowledgement and the notification', () => outbox().length >= 2 && outbox());
    // Two sendmail runs: pickup may take them in either order.
    expect(replies.map((m) => [m.to, m.subject]).sort()).toEqual([
      [ALICE, '[issue1] Printer on fire'], ['max@staff.test', '[issue1] New: Printer on fire']]);
    for (const reply of replies) expect(reply.text).toMatch(/^Return-Path: <>$/m); // the null envelope sender
    // Picked up from the maildrop as the pipe's user: the private sendmail, not the machine's.
    expect(maillog()).toMatch(new RegExp(`postfix/pickup\\[\\d+\\]: [0-9A-F]+: uid=${statSync(tickets).uid} from=<>`));
  });

  it('appends mail to ticket-1@ and closes with ticket-1-done@', () => {
    const q1 = viaSmtp(`ticket-1@${DOMAIN}`, message('more smoke'));
    outcome(q1, `ticket-1@${DOMAIN}`, 'sent');
    expect(stored(join(tickets, '1'))).toHaveLength(2);
    const q2 = viaSmtp(`ticket-1-done@${DOMAIN}`, message('fixed'));
    outcome(q2, `ticket-1-done@${DOMAIN}`, 'sent');
    expect(existsSync(join(tickets, '1'))).toBe(false);
    expect(stored(join(tickets, 'archived', '1'))).toHaveLength(3);
    // Mail to the archived ticket reopens it (ticket 1 is open again for what follows).
    outcome(viaSmtp(`ticket-1@${DOMAIN}`, message('burning again')), `ticket-1@${DOMAIN}`, 'sent');
    expect(stored(join(tickets, '1'))).toHaveLength(4);
  });

  it('refuses an unknown ticket at RCPT time from 127.0.0.1, and accepts open, archived and submit', () => {
    outcome(viaSmtp(`submit@${DOMAIN}`, message('second')), `submit@${DOMAIN}`, 'sent');
    outcome(viaSmtp(`ticket-2-done@${DOMAIN}`, message('done')), `ticket-2-done@${DOMAIN}`, 'sent');
    expect(existsSync(join(tickets, 'archived', '2'))).toBe(true);
    const { replies } = smtp([`ticket-1@${DOMAIN}`, `ticket-2@${DOMAIN}`, `submit@${DOMAIN}`, `ticket-99@${DOMAIN}`, `ticket-99-done@${DOMAIN}`]);
    expect(replies.trim().split('\n').map((l) => l.split(' ').slice(1, 3).join(' '))).toEqual([
      `ticket-1@${DOMAIN} 250`, `ticket-2@${DOMAIN} 250`, `submit@${DOMAIN} 250`, `ticket-99@${DOMAIN} 550`, `ticket-99-done@${DOMAIN} 550`]);
    expect(replies).toMatch(/^RCPT ticket-99@\S+ 550 5\.1\.1 <ticket-99@pftickets\.test>: Recipient address rejected: no such ticket$/m);
  });

  /** Exit 75 (the ticket's lock held past lockTimeout): deferred, kept queued; released, a flush delivers it. */
  const defersThenDelivers = (rcpt: string, mbox: string) => {
    const before = stored(mbox).length;
    writeFileSync(`${mbox}.lock`, 'held\n');
    let q = '';
    try {
      q = viaSmtp(rcpt, message('while locked'));
      expect(outcome(q, rcpt, 'deferred')).toMatch(/dsn=4\.3\.0, status=deferred \(.*ticket-mail: .*\)$/);
      expect(queueOf(q)).toBe('deferred');
      expect(stored(mbox)).toHaveLength(before);
    } finally { rmSync(`${mbox}.lock`, { force: true }); }
    expect(postfix('postqueue', ['-f']).status).toBe(0);
    outcome(q, rcpt, 'sent');
    waitFor(`${q} to leave the queue`, () => queueOf(q) === undefined);
    expect(stored(mbox).map(String).slice(before)).toEqual([expect.stringMatching(/^Subject: while locked$/m)]);
  };
  /** Exit 65/67: bounced into the private outbox with ticket-mail's one sentence, no stack trace. */
  const bounces = (q: string, rcpt: string, dsn: string, why: string) => {
    expect(outcome(q, rcpt, 'bounced')).toMatch(new RegExp(`dsn=${dsn.replace(/\./g, '\\.')}, status=bounced `));
    const bounceId = waitFor(`the bounce of ${q}`, () => new RegExp(`${q}: sender non-delivery notification: (\\S+)`).exec(maillog())?.[1]);
    outcome(bounceId, ALICE, 'sent');
    const bounce = outbox().find((m) => m.text.includes(`X-Postfix-Queue-ID: ${q}`))!;
    expect(bounce.to).toBe(ALICE);
    expect(bounce.text).toMatch(new RegExp(`^Diagnostic-Code: x-unix; ${why.replace(/[.()]/g, '\\$&')}$`, 'm'));
    expect(bounce.text).not.toMatch(/^\s+at /m);
  };

  it('defers an exit 75 and delivers it after postqueue -f once the lock is released', () => {
    defersThenDelivers(`ticket-1@${DOMAIN}`, join(tickets, '1'));
  });

  it('bounces 67 (an unknown ticket from local sendmail, which skips the SMTP-time check) and 65 (too large)', () => {
    const q67 = viaSendmail(`ticket-99@${DOMAIN}`, message('lost'));
    bounces(q67, `ticket-99@${DOMAIN}`, '5.1.1', 'ticket-mail: ticket 99 does not exist');
    const q65 = viaSmtp(`ticket-1@${DOMAIN}`, message('huge', { body: `${'x'.repeat(999)}\n`.repeat(200) }));
    bounces(q65, `ticket-1@${DOMAIN}`, '5.6.0', 'ticket-mail: message larger than the 102400-byte limit');
  });

  it.each([
    ['missing (a wrong path, an upgrade in progress)', (program: string) => rmSync(program)],
    ['damaged (a syntax error)', (program: string) => writeFileSync(program, 'this is not ( javascript')],
  ])('keeps mail deferred with one sentence while the program is %s; a flush delivers it once restored', (_, breakIt) => {
    const program = join(base, 'ticket-mail.cjs');
    const saved = readFileSync(program);
    const before = stored(join(tickets, '1')).length;
    let q = '';
    breakIt(program);
    try {
      q = viaSendmail(`ticket-1@${DOMAIN}`, message('during the upgrade'));
      const line = outcome(q, `ticket-1@${DOMAIN}`, 'deferred');
      expect(line).toMatch(/status=deferred \(.*ticket-mail: cannot run .*ticket-mail\.cjs \(exit status 1: \w*Error: [^()]*\); the mail stays queued \)$/); // Postfix ends the output with a space
      expect(queueOf(q)).toBe('deferred');
    } finally { writeFileSync(program, saved); }
    expect(maillog()).not.toMatch(/^\s+at |status=bounced.*Cannot find module/m);
    expect(postfix('postqueue', ['-f']).status).toBe(0);
    outcome(q, `ticket-1@${DOMAIN}`, 'sent');
    expect(stored(join(tickets, '1')).map(String).slice(before)).toEqual([expect.stringMatching(/^Subject: during the upgrade$/m)]);
  });

  describe('the aliases form', () => {
    beforeAll(() => {
      const printed = ticketMail(['postfix-config', '--aliases', ...installFlags]);
      expect(printed.status, printed.stderr).toBe(0);
      const parts = sections(printed.stdout);
      const mapFile = join(home, 'aliases');
      const mapPart = [...parts.keys()].find((k) => k.startsWith(`${mapFile}, `))!;
      expect(mapPart).toBe(`${mapFile}, then as ${USER}: postalias ${mapFile}`);
      writeFileSync(mapFile, parts.get(mapPart)!);
      sh(`chown ${USER}: ${mapFile}`);
      // The machine's /etc/aliases is the system Exim's (no .db): this instance's stands in for it.
      const main = parts.get('main.cf')!.split('hash:/etc/aliases').join(`hash:${pf}/etc/aliases`);
      expect(main).not.toBe(parts.get('main.cf'));
      writeFileSync(join(pf, 'system-aliases'), 'postmaster: root\n');
      // The maps are built before the daemons that read them start.
      restart(main, parts.get('master.cf')!, `cp ${pf}/system-aliases ${pf}/etc/aliases && ${pf}/bin/postalias ${pf}/etc/aliases`
        + ` && runuser -u ${USER} -- ${pf}/bin/postalias ${mapFile}`);
      expect(statSync(`${mapFile}.db`).uid).toBe(statSync(tickets).uid);
    });

    it('defers an exit 75 and bounces a 67, as the pipe(8) form does', () => {
      defersThenDelivers(`ticket-1@${DOMAIN}`, join(tickets, '1'));
      bounces(viaSendmail(`ticket-98@${DOMAIN}`, message('lost too')), `ticket-98@${DOMAIN}`, '5.1.1', 'ticket-mail: ticket 98 does not exist');
    });

    it('runs the alias command as the map\'s owner, and ticket-N-done@ finds the alias "ticket" through "-"', () => {
      const q = viaSmtp(`ticket-1-done@${DOMAIN}`, message('fixed again'));
      expect(outcome(q, `ticket-1-done@${DOMAIN}`, 'sent')).toMatch(/relay=local, .*status=sent \(delivered to command: /);
      expect(existsSync(join(tickets, '1'))).toBe(false);
      expect(stored(join(tickets, 'archived', '1')).map(String).at(-1)).toMatch(/^Subject: fixed again$/m);
      // Filed as the tickets user (it owns what it wrote), not as nobody.
      expect(statSync(join(tickets, 'archived', '1')).uid).toBe(statSync(tickets).uid);
      const { replies } = smtp([`ticket-99@${DOMAIN}`]);
      expect(replies).toMatch(/^RCPT \S+ 550 5\.1\.1 /m);
    });

    it('keeps Debian\'s "+": a local user\'s user+tag@ still gets its mailbox', () => {
      const q = viaSmtp(`${LOCAL_USER}+tag@${DOMAIN}`, message('plus addressing'));
      expect(outcome(q, `${LOCAL_USER}+tag@${DOMAIN}`, 'sent')).toMatch(/relay=local, .*status=sent \(delivered to mailbox\)/);
      expect(readFileSync(join(pf, 'mail', 'spool', LOCAL_USER), 'utf8')).toMatch(/^Subject: plus addressing$/m);
    });

  });

  it('never used the machine\'s own MTA', () => {
    // Other processes may queue mail in the system Exim meanwhile: nothing of ours may be there.
    const eximQueue = sh('exim4 -bp 2>/dev/null').stdout;
    expect(eximQueue.split(DOMAIN).length).toBe(eximQueueBefore.split(DOMAIN).length);
    expect(eximQueue).not.toMatch(/pfclient\.test|staff\.test/);
  });
});
