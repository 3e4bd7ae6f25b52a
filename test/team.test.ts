// A team of maintainers with accounts of their own: `setup --maintainer` puts them in the
// tickets user's group, the folders are 2750 and every ticket 0640, so they read the tickets
// (list, show, mutt) while only the pipe's user writes; `check` says when that stops holding;
// a team maintainer's `close` goes by mail, which delivery (told by the MTA who sent it) obeys.
// Real users, real processes as those users (runuser), the launcher setup writes. Root only.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, mail, readableCopies, stored, tempDir } from './harness.ts';

const OWNER = 'tm-team';
const BOB = 'tm-team-bob';
const DOMAIN = 'tickets.test';
const sh = (command: string) => spawnSync('sh', ['-c', command], { encoding: 'utf8' });
const isRoot = process.getuid?.() === 0;
const skipReason = !isRoot ? 'not root (it makes users)' : sh('command -v runuser useradd').status !== 0 ? 'no runuser or useradd' : '';
if (skipReason) console.log(`skipped: team tests: ${skipReason}`);

describe.skipIf(!!skipReason)('a team of maintainers', () => {
  let base = '';
  let tickets = '';
  let config = '';
  let program = '';
  const spool = () => join(base, 'spool');
  /** The command as `user`, with the environment a login shell would give (no config of the machine's). */
  const as = (user: string, args: string[], input = '') => spawnSync('runuser', ['-u', user, '--', 'env', '-i', `PATH=${process.env.PATH}`,
    `USER=${user}`, `HOME=${base}`, `FAKE_SENDMAIL_DIR=${spool()}`, process.execPath, program, ...args, '--config', config], { input, encoding: 'utf8' });
  /** A delivery as the MTA runs it: the launcher, as the pipe's user, the envelope in the environment. */
  const deliver = (recipient: string, message: string, localUser = '') => {
    const [local, domain] = recipient.split('@');
    return spawnSync('runuser', ['-u', OWNER, '--', 'env', '-i', `PATH=${process.env.PATH}`, `LOCAL_PART=${local}`, `DOMAIN=${domain}`,
      'SENDER=alice@client.test', `TICKET_MAIL_LOCAL_USER=${localUser}`, join(base, 'bin', 'deliver')], { input: message, encoding: 'utf8' });
  };

  beforeAll(() => {
    for (const user of [OWNER, BOB]) if (sh(`id -u ${user}`).status === 0) sh(`userdel ${user}`);
    if (sh(`getent group ${OWNER}`).status === 0) sh(`groupdel ${OWNER}`);
    expect(sh(`useradd --system --no-create-home --shell /usr/sbin/nologin ${BOB}`).status).toBe(0);
    base = tempDir('tm-team-');
    chmodSync(base, 0o755);
    mkdirSync(spool(), { mode: 0o777 });
    chmodSync(spool(), 0o1777);
    tickets = join(base, 'tickets');
    config = join(base, 'etc', 'config.json');
    // The copy the pipe runs: its users cannot see the checkout.
    program = join(base, 'ticket-mail.cjs');
    copyFileSync(BIN, program);
    chmodSync(program, 0o755);
    const r = spawnSync(process.execPath, [program, 'setup', '--user', OWNER, '--home', join(base, 'home'), '--launcher', join(base, 'bin', 'deliver'),
      '--config', config, '--etc', join(base, 'etc'), '--mta', 'none', '--dir', tickets, '--domain', DOMAIN, '--admin', 'max@staff.test',
      '--maintainer', BOB, '--sendmail', readableCopies().sendmail], { encoding: 'utf8', env: { PATH: process.env.PATH, TICKET_MAIL_CONFIG: '' } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`added ${BOB} to the group ${OWNER}`);
  });

  afterAll(() => {
    for (const user of [OWNER, BOB]) sh(`userdel ${user}`);
    sh(`groupdel ${OWNER}`); // kept by userdel while it had another member
    if (base) sh(`rm -rf ${base}`);
  });

  it('sets the folders up for the group: tickets readable, state private; the config names both maintainers', () => {
    const gid = Number(sh(`getent group ${OWNER} | cut -d: -f3`).stdout.trim());
    for (const path of [tickets, join(tickets, 'archived')]) {
      expect([statSync(path).mode & 0o7777, statSync(path).gid]).toEqual([0o2750, gid]);
    }
    expect(statSync(join(tickets, '.ticket-mail')).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(config, 'utf8').replace(/^\s*\/\/.*$/gm, '')).maintainer).toEqual([OWNER, BOB]);
    expect(sh(`id -nG ${BOB}`).stdout.split(/\s+/)).toContain(OWNER);
  });

  it('files new tickets (and unmatched mail) readable by the group; a maintainer lists and shows them but cannot write', () => {
    expect(deliver(`submit@${DOMAIN}`, mail({ from: 'Alice <alice@client.test>', subject: 'Printer on fire' })).status).toBe(0);
    expect(deliver(`ticket-77@${DOMAIN}`, mail({ subject: 'lost' })).status).toBe(0);
    for (const name of ['1', 'unmatched']) {
      const st = statSync(join(tickets, name));
      expect([name, st.mode & 0o777, st.gid]).toEqual([name, 0o640, statSync(tickets).gid]);
    }
    const list = as(BOB, ['list']);
    expect(list.status, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^1 +open +on us +1 +\S+ +Alice <alice@client\.test> +Printer on fire$/m);
    const show = as(BOB, ['show', '1']);
    expect(show.status, show.stderr).toBe(0);
    expect(show.stdout).toContain('Printer on fire');
    expect(sh(`runuser -u ${BOB} -- sh -c 'echo x >> ${join(tickets, '1')}'`).status).not.toBe(0);
    expect(sh(`runuser -u ${BOB} -- ls ${join(tickets, '.ticket-mail')}`).status).not.toBe(0);
  });

  it('check says so when a maintainer could no longer read: a private ticket, a maintainer out of the group, a folder without group read', () => {
    const check = () => spawnSync(process.execPath, [program, 'check', '--config', config], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    const ok = check();
    expect(ok.stdout).toMatch(new RegExp(`^ok +maintainer ${BOB} reads the tickets \\(group ${OWNER}\\)$`, 'm'));
    expect(ok.stdout).not.toMatch(/^FIX .*(readable|group)/m);
    chmodSync(join(tickets, '1'), 0o600);
    chmodSync(join(tickets, 'archived'), 0o2700);
    sh(`gpasswd -d ${BOB} ${OWNER}`);
    try {
      const bad = check();
      expect(bad.status).toBe(1);
      expect(bad.stdout).toMatch(new RegExp(`^FIX +${join(tickets, '1')} is not readable by the maintainers' group: `, 'm'));
      expect(bad.stdout).toMatch(new RegExp(`^FIX +archived folder ${join(tickets, 'archived')} does not let the maintainers \\(group ${OWNER}, the tickets user's\\) read it: chgrp ${OWNER} `, 'm'));
      expect(bad.stdout).toMatch(new RegExp(`^FIX +maintainer ${BOB} is not in the tickets user's group ${OWNER}: usermod -aG ${OWNER} ${BOB}$`, 'm'));
    } finally {
      chmodSync(join(tickets, '1'), 0o640);
      chmodSync(join(tickets, 'archived'), 0o2750);
      sh(`usermod -aG ${OWNER} ${BOB}`);
    }
    expect(check().stdout).not.toMatch(/^FIX .*(readable|group)/m);
  });

  it('keeps the team (and the folder, the domain) when setup runs again with only --config, and never hands over what a ticket\'s symlink names', () => {
    // What the tickets user could plant: a ticket that is a link to a file of root's, an unmatched made before the team.
    const secret = join(base, 'secret');
    writeFileSync(secret, 'root only\n', { mode: 0o600 });
    expect(sh(`runuser -u ${OWNER} -- ln -s ${secret} ${join(tickets, '5')}`).status).toBe(0);
    chmodSync(join(tickets, 'unmatched'), 0o600);
    const again = spawnSync(process.execPath, [program, 'setup', '--user', OWNER, '--home', join(base, 'home'), '--launcher', join(base, 'bin', 'deliver'),
      '--config', config, '--etc', join(base, 'etc'), '--mta', 'none'], { encoding: 'utf8', env: { PATH: process.env.PATH, TICKET_MAIL_CONFIG: '' } });
    expect(again.status, again.stderr).toBe(0); // the tickets folder and the domain come from the config file
    expect(again.stdout).toContain(`folders ${tickets} and ${tickets}/archived (mode 2750`);
    expect(again.stdout).toContain(`left alone ${join(tickets, '5')}: a symlink`);
    expect([statSync(secret).uid, statSync(secret).mode & 0o777]).toEqual([0, 0o600]);
    expect(statSync(tickets).mode & 0o7777).toBe(0o2750); // still the team's
    expect(statSync(join(tickets, 'unmatched')).mode & 0o777).toBe(0o640);
    rmSync(join(tickets, '5'));
  });

  it('check says so when a folder above the tickets keeps the maintainers out', () => {
    // As a HOME of the tickets user's that holds the tickets would be: 0700, its own.
    sh(`chown ${OWNER} ${base}`);
    chmodSync(base, 0o700);
    try {
      const r = spawnSync(process.execPath, [program, 'check', '--config', config], { encoding: 'utf8', env: { PATH: process.env.PATH } });
      expect(r.stdout).toMatch(new RegExp(`^FIX +the maintainers cannot reach ${tickets}: ${base} does not let them through \\(chmod o\\+x ${base}\\)$`, 'm'));
    } finally { sh(`chown root ${base}`); chmodSync(base, 0o755); }
  });

  it('closes by mail when a team maintainer runs close: the MTA says who sent it, and delivery closes', async () => {
    // The command mails ticket-1-done@ through sendmail (the fake, which keeps it in the spool)
    // and waits; the test plays the MTA: it delivers what was sent, saying which login sent it.
    const command = spawn('runuser', ['-u', BOB, '--', 'env', '-i', `PATH=${process.env.PATH}`, `USER=${BOB}`, `FAKE_SENDMAIL_DIR=${spool()}`,
      process.execPath, program, 'close', '1', '--as', 'bob@staff.test', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    command.stdout.on('data', (d) => { out += d; });
    command.stderr.on('data', (d) => { out += d; });
    const exited = new Promise<number | null>((done) => command.on('close', done));
    let sent: string | undefined;
    let gone = false;
    void exited.then(() => { gone = true; });
    while (!sent && !gone) {
      sent = readdirSync(spool()).find((n) => n.endsWith('.eml') && readFileSync(join(spool(), n.replace(/\.eml$/, '.args')), 'utf8').includes(`ticket-1-done@${DOMAIN}`));
      if (!sent) await new Promise((done) => setTimeout(done, 50));
    }
    if (!sent) throw new Error(`close exited without mailing: ${out}`);
    await new Promise((done) => setTimeout(done, 50)); // the fake writes .args first, then the message
    const args = readFileSync(join(spool(), sent.replace(/\.eml$/, '.args')), 'utf8').trim().split('\n');
    expect(args).toEqual(['-oi', '--', `ticket-1-done@${DOMAIN}`]); // the sender is the MTA's to say: the caller's login
    const r = deliver(`ticket-1-done@${DOMAIN}`, readFileSync(join(spool(), sent), 'utf8'), BOB);
    expect(r.status, r.stderr).toBe(0);
    expect(await exited, out).toBe(0);
    expect(out).toBe(`ticket 1: closed (by mail to ticket-1-done@${DOMAIN})\n`);
    expect(existsSync(join(tickets, 'archived', '1'))).toBe(true);
    expect(stored(join(tickets, 'archived', '1')).map(String).at(-1)).toMatch(/was closed with "ticket-mail close" by bob@staff\.test/);
    // Reopening is the owner's: a maintainer's mail keeps a ticket closed.
    const reopen = as(BOB, ['reopen', '1']);
    expect([reopen.status, reopen.stderr]).toEqual([1, `ticket-mail: only the owner of ${tickets} writes the tickets: sudo -u ${OWNER} ticket-mail reopen 1\n`]);
  });
});
