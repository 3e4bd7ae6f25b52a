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

const USER = 'tm-install';

describe.skipIf(!isRoot)('setup as root, and what exim-config, postfix-config and check make of it', () => {
  let base = '';
  let program = '';
  /** The one copied file, as the pipe runs it: the user it runs as cannot see the checkout's temp dirs. */
  // setup writes its timer and logrotate files under the test's own folder (--etc), never /etc.
  const run = (args: string[]) => spawnSync(process.execPath, [program, ...args, ...(args[0] === 'setup' ? ['--etc', join(base, 'etc')] : [])],
    { encoding: 'utf8', env: { PATH: process.env.PATH, TICKET_MAIL_CONFIG: '' } });
  const paths = (name: string) => {
    const root = join(base, name);
    mkdirSync(root, { mode: 0o755 });
    chmodSync(root, 0o755);
    return {
      root, dir: join(root, 'tickets'), config: join(root, 'etc', 'config.json'),
      flags: ['--user', USER, '--home', join(root, 'home'), '--launcher', join(root, 'bin', 'deliver'), '--config', join(root, 'etc', 'config.json')],
    };
  };
  const setup = (p: ReturnType<typeof paths>, extra: string[] = []) =>
    run(['setup', ...p.flags, '--mta', 'exim', '--dir', p.dir, '--domain', DOMAIN, '--admin', 'max@tickets.example', '--sendmail', FAKE_SENDMAIL, ...extra]);

  beforeAll(() => {
    // setup makes the pipe's user: start from no such user (a fixed name of this file's own).
    if (sh(`id -u ${USER}`).status === 0) sh(`userdel ${USER}`);
    base = tempDir('tm-install-');
    chmodSync(base, 0o755);
    program = join(base, 'ticket-mail.cjs');
    writeFileSync(program, readFileSync(BIN), { mode: 0o755 });
  });

  it('records the installation: exim-config and postfix-config print it from the config file alone, and check compares the MTA side with it', () => {
    const p = paths('recorded');
    expect(setup(p).status).toBe(0);
    const home = join(p.root, 'home');
    const launcher = join(p.root, 'bin', 'deliver');
    const exim = run(['exim-config', '--config', p.config]);
    expect(exim.status, exim.stderr).toBe(0);
    expect(exim.stdout).toMatch(new RegExp(`^  command = ${launcher}\n  user = ${USER}\n.*\n  home_directory = ${home}$`, 'm'));
    expect(exim.stdout).toContain(`{exists{${p.dir}/\${sg{`);
    const postfix = run(['postfix-config', '--config', p.config]);
    expect(postfix.stdout).toMatch(new RegExp(`^  flags=Rq user=${USER} null_sender= argv=${launcher} `, 'm'));
    expect(run(['postfix-config', '--aliases', '--config', p.config]).stdout).toContain(`# ---- ${home}/aliases, then as ${USER}:`);
    // The same installation, set up again without its flags: the record is kept, the config file too.
    const again = run(['setup', '--config', p.config, '--mta', 'exim', '--dir', p.dir, '--domain', DOMAIN, '--sendmail', FAKE_SENDMAIL]);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toContain(`wrote the launcher ${launcher} `);
    // check: this installation's MTA side is fine, the defaults' (another user, launcher, HOME) are not.
    const mine = join(p.root, 'exim-mine.conf');
    writeFileSync(mine, exim.stdout);
    const theirs = join(p.root, 'exim-defaults.conf');
    writeFileSync(theirs, run(['exim-config', '--dir', p.dir, '--domain', DOMAIN]).stdout);
    const check = (file: string) => run(['check', '--config', p.config, '--mta-config', file]).stdout;
    expect(check(mine)).toMatch(new RegExp(`^ok +Exim's transport ticket_mail_pipe in ${mine} runs ${launcher} as ${USER}, HOME ${home}$`, 'm'));
    expect(check(mine)).not.toMatch(/^FIX .*(transport|launcher)/m);
    const bad = check(theirs);
    for (const [what, value] of [['command', '/usr/local/libexec/ticket-mail-deliver'], ['user', 'tickets'], ['home_directory', '/var/lib/ticket-mail']]) {
      expect(bad).toMatch(new RegExp(`^FIX +Exim's transport ticket_mail_pipe in ${theirs} has the ${what} ${value}, but this installation's is `, 'm'));
    }
    const master = join(p.root, 'master.cf');
    writeFileSync(master, `ticketmail unix  -       n       n       -       -       pipe\n  flags=Rq user=nobody argv=${launcher} --recipient=\${recipient}\n`);
    expect(check(master)).toMatch(new RegExp(`^FIX +Postfix's service ticketmail in ${master} has the user nobody, but this installation's is ${USER} `, 'm'));
    // The launcher reads another config file than the one check read.
    const other = join(p.root, 'etc', 'other.json');
    writeFileSync(other, readFileSync(p.config));
    expect(run(['check', '--config', other, '--mta-config', mine]).stdout)
      .toMatch(new RegExp(`^FIX +the launcher ${launcher} reads the config file ${p.config}, but check read ${other}: `, 'm'));
  });

  it('refuses a program the pipe\'s user cannot read; check says so as a FIX line where it died with EACCES', () => {
    const p = paths('unreadable');
    const hidden = join(p.root, 'private');
    mkdirSync(hidden, { mode: 0o700 });
    const copy = join(hidden, 'ticket-mail.cjs');
    writeFileSync(copy, readFileSync(BIN), { mode: 0o755 });
    const refused = spawnSync(process.execPath, [copy, 'setup', ...p.flags, '--etc', join(base, 'etc'), '--mta', 'exim', '--dir', p.dir, '--domain', DOMAIN], { encoding: 'utf8', env: { PATH: process.env.PATH, TICKET_MAIL_CONFIG: '' } });
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`^ticket-mail: ${USER}, the pipe's user, cannot read the program ${copy}: every delivery would be deferred`));
    expect(existsSync(p.dir)).toBe(false); // refused before anything was made
    // A launcher (set up right, then pointed into the closed folder) and the MTA config naming it.
    expect(setup(p).status).toBe(0);
    const launcher = join(p.root, 'bin', 'deliver');
    writeFileSync(launcher, readFileSync(launcher, 'utf8').replace(/^program=.*$/m, `program=${copy}`));
    const conf = join(p.root, 'exim.conf');
    writeFileSync(conf, run(['exim-config', '--config', p.config]).stdout);
    const r = run(['check', '--config', p.config, '--mta-config', conf]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`^FIX +the MTA's launcher ${launcher} names program ${copy}, which ${USER} \\(uid \\d+, as whom check runs\\) cannot read \\(EACCES\\): mail for tickets is deferred; put ticket-mail where the pipe's user can read it`, 'm'));
  });

  it('check never dies on the tree and flags every symbolic link in it (a ticket, archived/, a dangling one), advising no chmod through one', () => {
    const p = paths('tree');
    expect(setup(p).status).toBe(0);
    const send = (to: string) => spawnSync(process.execPath, [program, '--config', p.config, '--recipient', to, '--sender', 'a@b.example'],
      { input: mail(), encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(sh(`runuser -u ${USER} -- true`).status).toBe(0);
    for (let i = 0; i < 2; i++) expect(send(`submit@${DOMAIN}`).status).toBe(0);
    const check = () => run(['check', '--config', p.config]);
    expect(check().stdout).toMatch(/^ok +no symbolic links in /m);
    const elsewhere = join(p.root, 'elsewhere');
    mkdirSync(elsewhere, { mode: 0o755 });
    sh(`mv ${join(p.dir, '2')} ${join(elsewhere, '2')} && chmod 644 ${join(elsewhere, '2')}`);
    symlinkSync(join(elsewhere, '2'), join(p.dir, '2')); // a ticket that is a link (deliveries: ELOOP)
    symlinkSync(join(p.root, 'gone'), join(p.dir, '7')); // a dangling one (check died: ENOENT)
    const r = check();
    expect(r.stderr).toBe('');
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`^FIX +2 symbolic link\\(s\\) in ${p.dir}, e\\.g\\. .*${p.dir}/2 -> ${elsewhere}/2.*: ticket-mail never follows one`, 'm'));
    expect(r.stdout).not.toMatch(/chmod 600 .*\/(2|7)$/m); // it would follow the link
    rmSync(join(p.dir, '7'));
    rmSync(join(p.dir, '2'));
    sh(`mv ${join(p.dir, 'archived')} ${join(elsewhere, 'archived')}`);
    symlinkSync(join(elsewhere, 'archived'), join(p.dir, 'archived')); // another filesystem, say: closing gets EXDEV
    expect(check().stdout).toMatch(new RegExp(`^FIX +1 symbolic link\\(s\\) in ${p.dir}, e\\.g\\. ${p.dir}/archived -> `, 'm'));
  });

  it('check: Exim must reach the tickets folder through every parent, and its router must look where the tickets are', () => {
    const p = paths('reach');
    expect(setup(p).status).toBe(0);
    const conf = join(p.root, 'exim.conf');
    writeFileSync(conf, run(['exim-config', '--config', p.config]).stdout);
    const check = () => run(['check', '--config', p.config, '--mta-config', conf]).stdout;
    expect(check()).not.toMatch(/^FIX .*Exim/m);
    chmodSync(p.root, 0o750); // the tickets user (its owner's group aside) and Exim's user cannot pass
    sh(`chgrp ${USER} ${p.root}`);
    try {
      expect(check()).toMatch(new RegExp(`^FIX +Exim checks ticket numbers at SMTP time but its user Debian-exim cannot reach ${p.dir}: ${p.root} \\(mode 750\\) is closed to it, and every ticket address gets 550; chmod o\\+x ${p.root}$`, 'm'));
    } finally { chmodSync(p.root, 0o755); }
    writeFileSync(conf, run(['exim-config', '--dir', join(p.root, 'old-tickets'), '--domain', DOMAIN, '--config', p.config]).stdout);
    expect(check()).toMatch(new RegExp(`^FIX +an Exim router in ${conf} looks up ticket numbers in ${join(p.root, 'old-tickets')}, but the tickets are in ${p.dir}: `, 'm'));
  });

  it('check: a pipe to ticket-mail in a root-owned alias map runs as nobody (Postfix): FIX, the tickets user\'s own map is fine', () => {
    const p = paths('aliases');
    expect(setup(p).status).toBe(0);
    const aliases = join(p.root, 'aliases');
    writeFileSync(aliases, `postmaster: root\nsubmit: "|${join(p.root, 'bin', 'deliver')}"\n`, { mode: 0o644 });
    const check = () => run(['check', '--config', p.config, '--mta-config', aliases]).stdout;
    expect(check()).toMatch(new RegExp(`^FIX +the alias submit in ${aliases} runs ${join(p.root, 'bin', 'deliver')} as nobody \\(Postfix runs a root-owned map's commands as nobody\\), not as ${USER}: .*use an alias map of ${USER}'s own, as "ticket-mail postfix-config --aliases" prints$`, 'm'));
    sh(`chown ${USER} ${aliases}`);
    expect(check()).toMatch(new RegExp(`^ok +the alias submit in ${aliases} runs .* as ${USER}$`, 'm'));
  });

  it('refuses, at setup and at exim-config and postfix-config time, a path the MTA\'s configuration cannot hold as it is', () => {
    const p = paths('unsafe');
    const bad = [join(p.root, 'a b'), `${p.root}/x\${run{/bin/touch ${p.root}/pwn}}`, `${p.root}/q"uote`, `${p.root}/semi;colon`, 'relative/path'];
    for (const path of bad) {
      for (const [flag, args] of [['--dir', ['--dir', path]], ['--home', ['--home', path]], ['--launcher', ['--launcher', path]]] as const) {
        const words = flag === '--dir' ? 'the tickets folder' : flag;
        const message = `ticket-mail: ${words} "${path}" cannot go into the MTA's configuration as it is: use an absolute path of letters, digits and . _ / + - only\n`;
        for (const command of ['exim-config', 'postfix-config']) {
          expect(run([command, '--dir', p.dir, '--domain', DOMAIN, ...args])).toMatchObject({ status: 1, stdout: '', stderr: message });
        }
        expect(run(['setup', ...p.flags, '--dir', p.dir, '--domain', DOMAIN, ...args])).toMatchObject({ status: 1, stderr: message });
      }
    }
    expect(sh(`id -u ${USER}`).status).toBe(0); // made by the tests before: the refusals made nothing new
    expect(readdirSync(p.root)).toEqual([]);
  });

  it('never chowns or chmods through a symbolic link the tickets user put in place of archived/ or .ticket-mail/, nor a dangling HOME', () => {
    const p = paths('links');
    const first = setup(p);
    expect(first.status, first.stderr).toBe(0);
    for (const name of ['archived', '.ticket-mail']) {
      const victim = join(p.root, `victim-${name}`);
      mkdirSync(victim, { mode: 0o755 });
      const moved = join(p.dir, `${name}.real`);
      sh(`mv ${join(p.dir, name)} ${moved}`);
      symlinkSync(victim, join(p.dir, name)); // what the tickets user can do: it owns the tickets folder
      const again = setup(p);
      expect([again.status, again.stderr]).toEqual([1, `ticket-mail: ${join(p.dir, name)} is a symbolic link: setup gives a folder its owner and mode, never what a link names (remove the link, or give the real path)\n`]);
      expect([statSync(victim).uid, statSync(victim).mode & 0o7777]).toEqual([0, 0o755]);
      rmSync(join(p.dir, name));
      sh(`mv ${moved} ${join(p.dir, name)}`);
    }
    const home = join(p.root, 'home2');
    symlinkSync(join(p.root, 'victim-home'), home);
    sh(`usermod -d ${home} ${USER}`);
    try {
      const dangling = setup(p);
      expect(dangling.status).toBe(1);
      expect(dangling.stderr).toBe(`ticket-mail: ${home} is a symbolic link: setup gives a folder its owner and mode, never what a link names (remove the link, or give the real path)\n`);
      expect(existsSync(join(p.root, 'victim-home'))).toBe(false);
    } finally { sh(`usermod -d ${join(p.root, 'home')} ${USER}`); }
    expect(setup(p).status).toBe(0);
  });

  it('makes or chowns nothing below a folder someone but root can change', () => {
    const p = paths('parent');
    const theirs = join(p.root, 'theirs');
    mkdirSync(theirs, { mode: 0o755 });
    sh(`chown nobody ${theirs}`);
    const r = setup(p, ['--dir', join(theirs, 'tickets')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^ticket-mail: setup will not make or change ${join(theirs, 'tickets')}: ${theirs} can be changed by uid \\d+ \\(mode 755\\)`));
    expect(existsSync(join(theirs, 'tickets'))).toBe(false);
    chmodSync(theirs, 0o777);
    sh(`chown root ${theirs}`);
    expect(setup(p, ['--dir', join(theirs, 'tickets')]).stderr).toMatch(/can be changed by others than its owner \(mode 777\)/);
  });
  it('writes its files as root through no link the tickets user planted, and only below folders root alone can change', () => {
    const p = paths('planted');
    expect(setup(p).status).toBe(0);
    const victim = join(base, 'victim');
    writeFileSync(victim, 'root only\n', { mode: 0o600 });
    // A leftover ".new" that is a link to root's file: unlinked, never written through.
    symlinkSync(victim, join(p.root, 'bin', 'deliver.new'));
    symlinkSync(victim, join(p.root, 'etc', 'config.json.new'));
    const again = setup(p, ['--launcher', join(p.root, 'bin', 'deliver2')]);
    expect(again.status, again.stderr).toBe(0);
    expect([readFileSync(victim, 'utf8'), statSync(victim).uid, statSync(victim).mode & 0o777]).toEqual(['root only\n', 0, 0o600]);
    // The config file or launcher in a folder of the tickets user's (its HOME): refused, nothing written.
    const home = sh(`getent passwd ${USER} | cut -d: -f6`).stdout.trim(); // the user's, made by the first setup
    expect(statSync(home).uid).toBe(Number(sh(`id -u ${USER}`).stdout.trim()));
    const r = run(['setup', ...p.flags.slice(0, -2), '--config', join(home, 'config.json'), '--mta', 'exim', '--dir', p.dir, '--domain', DOMAIN]);
    expect([r.status, r.stderr]).toEqual([1, expect.stringMatching(new RegExp(`^ticket-mail: setup will not make or change ${home}/config\\.json: ${home} can be changed by uid \\d+`))]);
    expect(existsSync(join(home, 'config.json'))).toBe(false);
  });

  it('records the installation in a hand-written config file without touching the rest, or says exactly what to write', () => {
    const p = paths('handwritten');
    expect(setup(p).status).toBe(0);
    const write = (text: string) => writeFileSync(p.config, text);
    const settings = () => JSON.parse(readFileSync(p.config, 'utf8').replace(/^[ \t]*\/\/.*$/gm, ''));
    const moved = ['--launcher', join(p.root, 'bin', 'moved')];
    // One line holding everything (jq -c), the record among the rest: all of it kept.
    write(`{"installation": {"user": "${USER}", "home": "/old", "launcher": "/old/deliver"}, "dir": "${p.dir}", "domain": "${DOMAIN}", "admin": "max@tickets.example"}\n`);
    let r = setup(p, moved);
    expect(r.status, r.stderr).toBe(0);
    expect(settings()).toMatchObject({ dir: p.dir, domain: DOMAIN, admin: 'max@tickets.example', installation: { launcher: join(p.root, 'bin', 'moved') } });
    // The record as the last member, on a line of its own (no comma to add).
    write(`// mine\r\n{\r\n  "dir": "${p.dir}",\r\n  "domain": "${DOMAIN}",\r\n  "installation": {"user": "${USER}", "home": "/old", "launcher": "/old"}\r\n}\r\n`);
    r = setup(p, moved);
    expect(r.status, r.stderr).toBe(0);
    expect(settings()).toMatchObject({ dir: p.dir, domain: DOMAIN, installation: { launcher: join(p.root, 'bin', 'moved') } });
    // Spread over lines (jq .): replaced where it is.
    write(`{\n  "dir": "${p.dir}",\n  "installation": {\n    "user": "${USER}",\n    "home": "/old",\n    "launcher": "/old"\n  },\n  "domain": "${DOMAIN}"\n}\n`);
    r = setup(p, moved);
    expect(r.status, r.stderr).toBe(0);
    expect(settings()).toMatchObject({ dir: p.dir, domain: DOMAIN, installation: { launcher: join(p.root, 'bin', 'moved') } });
    // Where it cannot be added without breaking the file: left as it is; the error gives the exact member to write.
    const empty = '{}\n';
    write(empty);
    r = run(['setup', ...p.flags, '--mta', 'exim', '--dir', p.dir, '--domain', DOMAIN, ...moved.slice(0, 0), '--launcher', join(p.root, 'bin', 'moved2')]);
    expect([r.status, r.stderr]).toEqual([1, expect.stringMatching(/^ticket-mail: cannot record this installation in .* without touching the rest: make its "installation" member \{"user":/)]);
    expect(readFileSync(p.config, 'utf8')).toBe(empty);
  });

});

describe('postfix-config --aliases', () => {
  const aliases = (...forms: string[]) => deliver(['postfix-config', '--aliases', '--dir', '/srv/tickets', '--domain', DOMAIN, ...forms], '');
  it('prints an alias for every address form (local(8) finds it before the first + or -)', () => {
    const names = (r: ReturnType<typeof aliases>) => [...r.stdout.matchAll(/^([^#\s:]+): "\|/gm)].map((m) => m[1]);
    expect(names(aliases())).toEqual(['submit', 'ticket']);
    expect(names(aliases('--ticket-address', 'case-N', '--close-address', 'close-N'))).toEqual(['submit', 'case', 'close']);
    expect(names(aliases('--ticket-address', 'case+N', '--close-address', 'case+N+done', '--submit', 'new-case'))).toEqual(['new-case', 'case']);
  });
  it.each([['tN'], ['N'], ['N-ticket']])('refuses the form %s, which no alias can serve, naming the pipe(8) form', (form) => {
    const r = aliases('--ticket-address', form);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`ticket-mail: postfix-config --aliases cannot serve the address form "${form}": local(8) finds an alias by the part before the first "+" or "-", which must come before the number (ticket-N); use the pipe(8) form, "ticket-mail postfix-config" without --aliases\n`);
    expect(deliver(['postfix-config', '--dir', '/srv/tickets', '--domain', DOMAIN, '--ticket-address', form], '').status).toBe(0);
  });
});
