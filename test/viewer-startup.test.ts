// The viewer's CGI program starts as a delivery does: the web server runs it for every page a
// reader opens. So it parses its command line without cac, and it saves V8's code cache of the
// modules it compiled (the viewer, the MIME parser) for the next page, but never the core's,
// which is compiled as a delivery runs it (doc/performance.md; bench/bench.mjs measures it).
import { describe, expect, it } from 'vitest';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { plainCgi } from '../ticket.ts';
import { deliver, tempDir } from './harness.ts';

describe('the CGI program starts without cac', () => {
  it('takes the settings and the command cgi, before or after them', () => {
    expect(plainCgi(['--dir', '/t', '--domain=x.example', 'cgi'])).toEqual({ dir: ['/t'], domain: ['x.example'] });
    expect(plainCgi(['cgi', '--config', '/etc/ticket-mail/config.json'])).toEqual({ config: ['/etc/ticket-mail/config.json'] });
  });
  it.each([
    [['cgi', '--help']], [['--dir', 'cgi']], [['--dir', '/t', 'cgi', 'extra']], [['cgi', 'cgi']], [['list']], [[]], [['--dir', '--domain', 'cgi']],
    [['--', 'cgi']], [['cgi', '--sender', 'a@b.example']], [['--bogus', 'x', 'cgi']],
  ])('leaves %j to cac, which explains it or runs another command', (args) => {
    expect(plainCgi(args)).toBeUndefined();
  });
});

describe('the CGI program\'s code cache', () => {
  /** The modules whose code cache `cache` holds, each with its file's mtime. */
  const cached = (cache: string) => Object.fromEntries(readdirSync(join(cache, 'ticket-mail')).map((file) => [
    file.replace(/^[0-9a-f]{16}-/, '').replace(`-${process.version}-${process.arch}.v8`, ''), statSync(join(cache, 'ticket-mail', file)).mtimeMs]));

  it('a page saves the viewer\'s and the MIME parser\'s, not the core\'s; cac never loads; the next page reads them', () => {
    const dir = tempDir();
    const delivered = deliver(['--dir', dir, '--domain', 'tickets.example', '--recipient', 'submit@tickets.example', '--sender', 'alice@customer.example'],
      'From: Alice <alice@customer.example>\nSubject: the printer\nMessage-ID: <startup@customer.example>\n\nIt prints blank pages.\n', { XDG_CACHE_HOME: tempDir() });
    expect(delivered).toMatchObject({ status: 0, stderr: '' });
    const cache = tempDir(); // the CGI's own, empty: what it saves is what it compiled
    const page = () => deliver(['--dir', dir, '--domain', 'tickets.example', 'cgi'], '',
      { XDG_CACHE_HOME: cache, REQUEST_METHOD: 'GET', SCRIPT_NAME: '/tickets', PATH_INFO: '/1/', REQUEST_URI: '/tickets/1/', REMOTE_USER: 'alice' });
    const first = page();
    expect(first).toMatchObject({ status: 0, stderr: '' });
    expect(first.stdout).toMatch(/^Status: 200 OK\r\n/);
    expect(first.stdout).toContain('It prints blank pages.'); // the MIME parser decoded the text
    expect(first.stdout).toContain('mailto:ticket-1@tickets.example'); // the settings were read
    const saved = cached(cache);
    expect(Object.keys(saved)).toEqual(expect.arrayContaining(['viewer', 'postal-mime']));
    expect(saved).not.toHaveProperty('core'); // a delivery's to make
    expect(saved).not.toHaveProperty('cac');
    const second = page();
    expect(second.stdout).toBe(first.stdout);
    expect(cached(cache)).toEqual(saved); // read, not made again
  });
});
