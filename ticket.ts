#!/usr/bin/env node
/*
 * ticket-mail: an MTA pipes one message in; it lands in a support ticket.
 *
 * Design rationale.
 * - A ticket is a plain mbox (DIR/N while open, DIR/archived/N once closed), so mutt,
 *   grep and tar are the user interface; no database, no daemon.
 * - Messages are stored byte for byte with mboxrd From-quoting: the one mbox variant that
 *   un-quotes back to exactly the input. MIME is never parsed into storage.
 * - The MTA owns the queue, so the exit status is our interface (sysexits): 0 only after
 *   fsync; 75 for anything worth retrying, our own misconfiguration included (a bounce
 *   would lose a customer's mail); 65 and 67 for mail that can never be filed.
 * - Locking is the dotlock (DIR/N.lock): mutt, Exim, Postfix and procmail all honour it,
 *   and Node can take it without a native addon. Our lock file names its holder and the
 *   step in progress, so whoever breaks a dead holder's lock first undoes a half-written
 *   append or finishes a half-done move.
 * - Exactly once: each filed Message-ID is recorded in the state folder (one small file
 *   per ID, named by its hash) with the message's content fingerprint, so an MTA retry or a
 *   copy sent to two of our addresses is filed once without reading any mbox, and another
 *   message under a known ID is filed, never taken for a copy.
 * - The message is read whole before any lock is taken, but only its first MiB is held in
 *   memory; the rest is spooled to an unlinked file and streamed into the mbox.
 * - Start-up time is the cost of every delivery: the mail composer, the MIME parser and
 *   node:child_process are loaded only when a delivery sends mail, the CLI library only for
 *   the maintainer's commands (build.mjs keeps them out of the delivery core).
 *
 * The file reads top to bottom: types, the pure core (head parsing, routing, mbox bytes),
 * then the I/O shell (stdin, locks, files, exit codes), then the CLI.
 */
import {
  accessSync, chmodSync, chownSync, closeSync, existsSync, fchmodSync, fchownSync, fstatSync, fsyncSync, ftruncateSync, linkSync, lstatSync, mkdirSync,
  openSync, readFileSync, readSync, readdirSync, readlinkSync, realpathSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync,
  constants as fsc,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addressParser, decodeWords as libraryDecodeWords } from 'postal-mime';

declare const TICKET_MAIL_VERSION: string | undefined; // set by the build

// ---------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------

export interface Config {
  dir: string;
  domain: string | undefined;
  submit: string;            // local part that opens tickets
  ticketAddress: string;     // local-part form with one N, e.g. ticket-N
  closeAddress: string;      // e.g. ticket-N-done
  tag: string;               // subject tag form, e.g. [issueN]
  admins: string[];          // lower-cased addresses
  maintainers: string[];     // login names whose locally sent mail is the maintainers' own
  closePolicy: 'submitter' | 'anyone';
  unknown: 'file' | 'bounce';
  maxSize: number;           // bytes
  lockTimeout: number;       // seconds to wait for a lock before exiting 75
  staleLock: number;         // seconds after which anybody's lock is considered dead
  sendmail: string;          // program our mail is handed to; missing -> outbox
  name: string;              // display name on the mail we send
  notify: Array<'new' | 'update' | 'reopen'>; // what the admins hear about
  templates: string | undefined; // folder of body templates overriding the built-in wording
  replyLimit: number;        // automatic replies per recipient per hour
  alertCommand: string | undefined; // run for a new ticket out of office hours
  officeHours: [number, number]; // minutes after local midnight: start, end
  officeDays: number[];      // 0 = Sunday
}

/** Who sent the message and to which of our addresses, as the MTA tells it. */
export interface Envelope {
  sender: string;                 // '' is the null sender (bounces, auto-replies)
  recipient: string | undefined;  // local@domain, or undefined when nobody said
  source: 'flags' | 'exim' | 'postfix' | 'headers' | 'none';
  // The login of the local user who handed the message to the MTA, as the MTA says (Exim's
  // $sender_ident for mail submitted on this host); absent for mail from the network.
  localUser?: string;
}

/** The header of the message: lower-cased field name -> unfolded raw values, in order. */
export type Head = Map<string, string[]>;

export type Rule = 'submit' | 'address' | 'header-address' | 'subject-tag' | 'thread';

export type Route =
  | { action: 'create'; rule: 'submit' }
  | { action: 'append'; ticket: number; rule: Exclude<Rule, 'submit'> }
  | { action: 'close'; ticket: number; rule: 'address' }
  | { action: 'unmatched'; reason: string };

/** A failure the MTA must hear about: 75 retry later, 65 bad message, 67 no such ticket. */
export class MailError extends Error {
  constructor(readonly exitCode: 65 | 67 | 75, message: string) { super(message); }
}
const temporary = (message: string) => new MailError(75, message);

export const MAX_TICKET = 999_999_999;

// ---------------------------------------------------------------------------------------
// Pure core: configuration
// ---------------------------------------------------------------------------------------

export const DEFAULTS = {
  submit: 'submit',
  ticketAddress: 'ticket-N',
  closeAddress: 'ticket-N-done',
  tag: '[issueN]',
  closePolicy: 'submitter',
  unknown: 'file',
  maxSize: '100M',
  lockTimeout: 30,
  staleLock: 600,
  sendmail: '/usr/sbin/sendmail',
  name: 'Support',
  notify: 'new,update,reopen',
  replyLimit: 5,
  officeHours: '10:00-17:00',
  officeDays: 'mon-fri',
} as const;

/** Settings as they come from flags or the JSON config file, before checking. */
const SETTING_NAMES = ['dir', 'domain', 'submit', 'ticketAddress', 'closeAddress', 'tag',
  'closePolicy', 'unknown', 'maxSize', 'lockTimeout', 'staleLock', 'admin', 'maintainer', 'sendmail', 'name',
  'notify', 'templates', 'replyLimit', 'alertCommand', 'officeHours', 'officeDays'] as const;
export type RawSettings = Partial<Record<typeof SETTING_NAMES[number], unknown>>;

/** "100M", "64k", "5000" -> bytes. */
export function parseSize(value: string): number | undefined {
  const m = /^(\d{1,12})([kmg]?)b?$/i.exec(value.trim());
  if (!m) return undefined;
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(m[1]) * unit;
}

const LOCAL_FORM = /^[a-z0-9._+-]*N[a-z0-9._+-]*$/;
/** A login name as useradd(8) accepts it (Debian's default NAME_REGEX, and its "$" for machine accounts). */
const LOGIN = /^[a-z_][a-z0-9_.-]{0,31}\$?$/i;

/**
 * Merges flags over the config file over defaults and checks every value. Throws a
 * MailError 75: a broken configuration must make the MTA retry, never bounce.
 */
export function resolveConfig(flags: RawSettings, file: Record<string, unknown>, env: NodeJS.ProcessEnv): Config {
  for (const key of Object.keys(file)) {
    if (!(SETTING_NAMES as readonly string[]).includes(key) && key !== INSTALLATION_KEY) throw temporary(`config file: unknown setting "${key}"`);
  }
  const pick = (key: keyof RawSettings) => flags[key] ?? file[key];
  const text = (key: keyof RawSettings, fallback?: string): string | undefined => {
    const v = pick(key);
    if (v === undefined || v === '') return fallback;
    if (typeof v !== 'string' && typeof v !== 'number') throw temporary(`setting ${key} must be a string`);
    return String(v);
  };
  const home = env.HOME ? join(env.HOME, 'tickets') : undefined;
  const dir = text('dir', env.TICKET_MAIL_DIR || home);
  if (!dir) throw temporary('no tickets folder: give --dir or set TICKET_MAIL_DIR');
  const domain = text('domain')?.toLowerCase();
  if (domain !== undefined && !/^[a-z0-9]([a-z0-9.-]{0,252})$/.test(domain)) throw temporary(`bad domain "${domain}"`);
  const submit = text('submit', DEFAULTS.submit)!.toLowerCase();
  if (!/^[a-z0-9._+-]{1,64}$/.test(submit)) throw temporary(`bad submit local part "${submit}"`);
  const form = (key: 'ticketAddress' | 'closeAddress', fallback: string) => {
    const v = text(key, fallback)!;
    if (!LOCAL_FORM.test(v)) throw temporary(`bad ${key} "${v}": lower-case local part with one N, e.g. ${fallback}`);
    return v;
  };
  const ticketAddress = form('ticketAddress', DEFAULTS.ticketAddress);
  const closeAddress = form('closeAddress', DEFAULTS.closeAddress);
  if (ticketAddress === closeAddress) throw temporary('ticketAddress and closeAddress must differ');
  const tag = text('tag', DEFAULTS.tag)!;
  if (tag.split('N').length !== 2 || /[\r\n]/.test(tag) || tag.length > 40) throw temporary(`bad tag "${tag}": one N, e.g. [issueN]`);
  const choice = <T extends string>(key: keyof RawSettings, allowed: readonly T[], fallback: T): T => {
    const v = text(key, fallback) as T;
    if (!allowed.includes(v)) throw temporary(`${key} must be one of ${allowed.join(', ')}`);
    return v;
  };
  const number = (key: 'lockTimeout' | 'staleLock' | 'replyLimit', fallback: number) => {
    const v = Number(text(key, String(fallback)));
    if (!Number.isFinite(v) || v < 0) throw temporary(`${key} must be a number of seconds`);
    return v;
  };
  const maxSize = parseSize(text('maxSize', DEFAULTS.maxSize)!);
  if (!maxSize) throw temporary('maxSize must be a size such as 100M');
  const adminValue = pick('admin') ?? [];
  const admins = [...new Set((Array.isArray(adminValue) ? adminValue : [adminValue]).map((a) => String(a).trim().toLowerCase()))];
  for (const a of admins) if (!isPlainAddress(a)) throw temporary(`bad admin address "${a}"`);
  const maintainerValue = pick('maintainer') ?? [];
  const maintainers = [...new Set((Array.isArray(maintainerValue) ? maintainerValue : [maintainerValue]).map((m) => String(m).trim()))];
  for (const m of maintainers) if (!LOGIN.test(m)) throw temporary(`bad maintainer login "${printable(m, 40)}"`);
  const notify = text('notify', DEFAULTS.notify)!.split(',').map((k) => k.trim()).filter((k) => k && k !== 'none');
  for (const k of notify) if (!['new', 'update', 'reopen'].includes(k)) throw temporary(`notify: unknown kind "${k}" (new, update, reopen, none)`);
  const hours = /^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$/.exec(text('officeHours', DEFAULTS.officeHours)!);
  const officeHours = hours && [Number(hours[1]) * 60 + Number(hours[2]), Number(hours[3]) * 60 + Number(hours[4])] as [number, number];
  if (!officeHours || officeHours[0] >= officeHours[1] || officeHours[1] > 24 * 60) throw temporary('officeHours must look like 10:00-17:00');
  const officeDays = parseDays(text('officeDays', DEFAULTS.officeDays)!);
  if (!officeDays) throw temporary('officeDays must look like mon-fri or mon,wed,sat');
  return {
    dir, domain, submit, ticketAddress, closeAddress, tag, admins, maintainers,
    closePolicy: choice('closePolicy', ['submitter', 'anyone'], DEFAULTS.closePolicy),
    unknown: choice('unknown', ['file', 'bounce'], DEFAULTS.unknown),
    maxSize,
    lockTimeout: number('lockTimeout', DEFAULTS.lockTimeout),
    staleLock: number('staleLock', DEFAULTS.staleLock),
    sendmail: text('sendmail', env.SENDMAIL || DEFAULTS.sendmail)!,
    name: text('name', DEFAULTS.name)!,
    notify: notify as Config['notify'],
    templates: text('templates'),
    replyLimit: number('replyLimit', DEFAULTS.replyLimit),
    alertCommand: text('alertCommand'),
    officeHours, officeDays,
  };
}

const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

/** "mon-fri", "sat,sun", "mon-sun" -> day numbers (0 = Sunday). */
export function parseDays(text: string): number[] | undefined {
  const days = new Set<number>();
  for (const part of text.toLowerCase().split(',')) {
    const [first = '', last] = part.trim().split('-');
    const from = DAY_NAMES.indexOf(first);
    const to = last === undefined ? from : DAY_NAMES.indexOf(last);
    if (from < 0 || to < 0) return undefined;
    for (let d = from; ; d = (d + 1) % 7) { days.add(d); if (d === to) break; }
  }
  return [...days].sort();
}

// ---------------------------------------------------------------------------------------
// Pure core: reading the message head
// ---------------------------------------------------------------------------------------

const LF = 0x0a;
const FROM_ = Buffer.from('From '); // how an mbox separator line, and an MTA's envelope line, begin

/** An MTA's envelope line ("From sender date") that some pipes put before the message. */
export function splitEnvelopeLine(raw: Buffer): { fromLineSender: string | undefined; message: Buffer } {
  if (!raw.subarray(0, FROM_.length).equals(FROM_)) return { fromLineSender: undefined, message: raw };
  const end = raw.indexOf(LF);
  if (end < 0) return { fromLineSender: undefined, message: raw };
  const sender = raw.subarray(5, end).toString('latin1').trim().split(/\s+/)[0] ?? '';
  return { fromLineSender: sender, message: raw.subarray(end + 1) };
}

/** Where the header ends: the offset of the empty line, or the message length. */
export function headEnd(message: Buffer): number {
  let start = 0;
  while (start < message.length) {
    const nl = message.indexOf(LF, start);
    const line = nl < 0 ? message.length : nl;
    if (line === start || (line === start + 1 && message[start] === 0x0d)) return start;
    start = line + 1;
  }
  return message.length;
}

const FIELD = /^([!-9;-~]+)[ \t]*:/; // RFC 5322 field name; obsolete syntax allows WSP before ':'

/**
 * Parses the header into unfolded fields. Returns undefined when the message has no
 * header at all (its first line is not a field). Linear in the size of the head.
 */
export function parseHead(head: string): Head | undefined {
  const lines = head.split('\n'); // a string split: a RegExp split costs more than the parse
  if (!FIELD.test(lines[0] ?? '')) return undefined;
  const fields: Head = new Map();
  let name: string | undefined;
  let value = '';
  const flush = () => {
    if (name === undefined) return;
    const list = fields.get(name);
    const unfolded = value.trim(); // "Message-ID:" with its value on the next line: no leading space
    if (list) list.push(unfolded); else fields.set(name, [unfolded]);
  };
  for (let line of lines) {
    if (line.endsWith('\r')) line = line.slice(0, -1); // CRLF line ends
    if ((line.startsWith(' ') || line.startsWith('\t')) && name !== undefined) { value += line; continue; }
    flush();
    const m = FIELD.exec(line);
    name = m ? m[1]!.toLowerCase() : undefined; // a stray non-field line is ignored
    value = m ? line.slice(m[0].length).trim() : '';
  }
  flush();
  return fields;
}

/**
 * parseHead of the head that starts at `start` in `bytes` (read as UTF-8, to its blank line or
 * `end`), keeping only the fields named in `wanted` (lower case): the other fields are matched
 * in the bytes and never made strings. For list, which needs a handful of fields of each record
 * of 10,000 tickets: a cold stats parsed 25,000 heads whole, each from a string of its own.
 */
export function headFields(bytes: Buffer, start: number, end: number, wanted: ReadonlySet<string>): Head | undefined {
  const byLength = wantedByLength(wanted);
  const fields: Head = new Map();
  let name: string | undefined; // the wanted field being read, unfolded into value
  let value = '';
  for (let line = start; line < end;) {
    const lf = bytes.indexOf(LF, line);
    const next = lf < 0 || lf >= end ? end : lf + 1;
    const stop = next - (next > line && bytes[next - 1] === LF ? 1 : 0);
    const text = stop - (stop > line && bytes[stop - 1] === 0x0d ? 1 : 0); // CRLF line ends
    const first = bytes[line]!;
    const folded = first === 0x20 || first === 0x09;
    if (line === start && (text === line || folded)) return undefined; // no header at all
    if (text === line) break; // the blank line: the head's end
    if (folded) { // of a wanted field, or else ignored
      if (name !== undefined) value += bytes.toString('utf8', line, text);
      line = next;
      continue;
    }
    if (name !== undefined) addField(fields, name, value);
    name = undefined;
    let colon = line; // FIELD on bytes: a name of [!-9;-~], white space, ':'
    while (colon < text && bytes[colon]! >= 0x21 && bytes[colon]! <= 0x7e && bytes[colon] !== 0x3a) colon++;
    const nameEnd = colon;
    while (colon < text && (bytes[colon] === 0x20 || bytes[colon] === 0x09)) colon++;
    if (nameEnd === line || bytes[colon] !== 0x3a || colon >= text) {
      if (line === start) return undefined; // no header at all
    } else {
      const found = nameAt(bytes, line, byLength[nameEnd - line]);
      if (found !== undefined) { name = found; value = bytes.toString('utf8', colon + 1, text).trim(); }
    }
    line = next;
  }
  if (name !== undefined) addField(fields, name, value);
  return start < end ? fields : undefined;
}
/** A field's unfolded value after those of its name before it. A function, not a closure over headFields' state: one less object a head. */
function addField(fields: Head, name: string, value: string): void {
  const list = fields.get(name);
  const unfolded = value.trim();
  if (list) list.push(unfolded); else fields.set(name, [unfolded]);
}

/**
 * headFields' wanted names by their length, made once a set: a field's name is matched in the
 * bytes, not made a string and lower-cased first (two strings for each field of every head).
 * So a set once given to headFields must not change (FACTS_FIELDS is a constant).
 */
const namesByLength = new WeakMap<ReadonlySet<string>, string[][]>();
function wantedByLength(wanted: ReadonlySet<string>): string[][] {
  let byLength = namesByLength.get(wanted);
  if (!byLength) {
    byLength = [];
    for (const name of wanted) (byLength[name.length] ??= []).push(name);
    namesByLength.set(wanted, byLength);
  }
  return byLength;
}
/** The one of `names` (lower case) that the bytes at `at` spell in any case, if any. */
function nameAt(bytes: Buffer, at: number, names: string[] | undefined): string | undefined {
  if (!names) return undefined;
  for (const name of names) {
    let i = 0;
    for (; i < name.length; i++) {
      const byte = bytes[at + i]!;
      if ((byte >= 0x41 && byte <= 0x5a ? byte | 0x20 : byte) !== name.charCodeAt(i)) break;
    }
    if (i === name.length) return name;
  }
  return undefined;
}

export const field = (head: Head, name: string): string | undefined => head.get(name)?.[0];

/**
 * Message-IDs in a Message-ID, In-Reply-To or References value, without the brackets. A msg-id
 * is printable ASCII (RFC 5322): one with a control character, a space or anything outside ASCII
 * is ignored, since these go into the headers of the mail we send.
 */
export function messageIds(value: string | undefined): string[] {
  if (!value) return [];
  return [...value.matchAll(/<([!-;=?-~]{1,250})>/g)].map((m) => m[1]!);
}

/**
 * An address we may write to: one local part (non-ASCII allowed, for EAI) without specials,
 * spaces, control characters (C0, DEL, C1) or bidi controls, at a plain domain. It goes into
 * sendmail's argv and our To: header, and is shown to people.
 */
export function isPlainAddress(address: string): boolean {
  return /^[^\s@<>()",;:\\[\]\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]{1,64}@[a-z0-9.-]{1,253}$/i.test(address);
}

/**
 * The longest address field value parsed: 1,000 recipients with names fit. postal-mime's
 * parser is super-linear on nested groups ("g:g:g:...": 4 s for 1 MB, 0.1 s for 64 KiB).
 */
const MAX_ADDRESS_FIELD = 64 * 1024;
/** Each field value is parsed once per delivery, however many decisions read it. */
const parsedAddresses = new Map<string, readonly string[]>();

/**
 * Addresses in an address field, lower-cased, keeping only well-formed ones. Of a longer
 * value only the addresses before its last comma within the bound count: an address cut
 * in half could be somebody else's.
 */
export function addresses(value: string | undefined): readonly string[] {
  if (!value) return [];
  let found = parsedAddresses.get(value);
  if (!found) {
    const bounded = value.length <= MAX_ADDRESS_FIELD ? value : value.slice(0, value.lastIndexOf(',', MAX_ADDRESS_FIELD) + 1);
    // Only what the field says: the parser drops control characters ("<a^[b@x>" would give
    // "ab@x", an address the mail never named), so each becomes U+FFFD (a line end of a folded
    // value a space), and an address holding one is refused; so is an encoded word as a local part (many mail clients show it decoded).
    found = addressParser(bounded.replace(/\r?\n/g, ' ').replace(/[\x00-\x08\x0a-\x1f\x7f-\x9f]/g, '\ufffd'), { flatten: true })
      .map((a) => ('address' in a ? (a.address ?? '') : '').toLowerCase())
      .filter((a) => isPlainAddress(a) && !a.includes('=?') && !a.includes('\ufffd'));
    if (parsedAddresses.size >= 32) parsedAddresses.clear(); // a delivery reads a handful of fields
    parsedAddresses.set(value, found);
  }
  return found;
}

/**
 * The mailboxes of an address field as a person should see them: each name (decoded, at most 60
 * characters) and always its address in full, so that neither a long name nor a name that looks
 * like an address ("support@bank.example" <x@evil.example>) hides where the mail came from. A
 * field with no address is shown decoded, shortened. The parser would drop a control character
 * ("<a^[b@x>" would give "ab@x", an address the mail never named): each is U+FFFD to it.
 * `clean` makes each name and address one bounded line (headerSafe: controls and bidi gone).
 * Encoded words are decoded after parsing, each a placeholder to the parser: a ";" or ":" in one
 * is text, not the end of a group. Shown, a field is read to its first 4 KiB (the parser is
 * super-linear on nested groups), up to a comma.
 */
export function shownMailboxes(value: string | undefined, clean: (text: string, max: number) => string = headerSafe): string[] {
  const SHOWN_FIELD = 4096;
  const whole = (value ?? '').replace(/\r?\n/g, ' ');
  if (!whole.trim()) return []; // no field (a message without Cc), or an empty one
  // The plain forms most mail has ("Name <address>", an address alone: ASCII words or encoded
  // words, no quotes, comments or groups) need no parser: the same mailbox, for a cold list's
  // 10,000 From fields a tenth of the cost, and a page of them without loading it.
  const plain = /^\s*(?:(?:(?:([A-Za-z0-9_-]+(?: [A-Za-z0-9_-]+)*)|(=\?[^?\s]+\?[bqBQ]\?[^?\s]*\?=(?: =\?[^?\s]+\?[bqBQ]\?[^?\s]*\?=)*)) )?<([A-Za-z0-9._+-]+@[A-Za-z0-9.-]+)>|([A-Za-z0-9._+-]+@[A-Za-z0-9.-]+))\s*$/.exec(whole);
  if (plain) {
    const [, ascii, encoded, address, alone] = plain;
    // As below: each U+FFFD (a byte its charset does not have) a space.
    const name = ascii ? clean(ascii, 60) : encoded ? clean(decodeWords(encoded).replace(/\ufffd/g, ' '), 60) : '';
    return [address ? (name ? `${name} <${clean(address, 254)}>` : clean(address, 254)) : clean(alone!, 254)];
  }
  const bounded = whole.length <= SHOWN_FIELD ? whole : whole.slice(0, whole.lastIndexOf(',', SHOWN_FIELD) + 1 || SHOWN_FIELD);
  const words: string[] = [];
  const salt = Math.random().toString(36).slice(2, 10); // a placeholder the mail cannot write ahead
  const placeholders = bounded.replace(/=\?[^?\s]+\?[bqBQ]\?[^?\s]*\?=/g, (word) => `ew${salt}x${words.push(word) - 1}x`);
  // One pattern per field, and none without encoded words: a pattern built per call was compiled
  // anew each time, twice per mailbox (23 ms of a 200-message page).
  const placeholder = words.length ? new RegExp(`ew${salt}x(\\d+)x`, 'g') : undefined;
  const restored = (text: string) => (placeholder ? text.replace(placeholder, (_, i: string) => words[Number(i)]!) : text);
  const shown = addressParser(placeholders.replace(/[\x00-\x08\x0a-\x1f\x7f-\x9f]/g, '\ufffd'), { flatten: true }).flatMap((mailbox) => {
    const address = 'address' in mailbox ? clean(restored(mailbox.address ?? ''), 254) : ''; // as written: never decoded
    const name = clean(decodeWords(restored(mailbox.name ?? '')).replace(/\ufffd/g, ' '), 60); // each control a space, as headerSafe makes it
    return !address ? [] : name ? [`${name} <${address}>`] : [address];
  });
  return shown.length || !bounded.trim() ? shown : [clean(decodeWords(bounded), 80)];
}

/** The first mailbox of a From field, as shownMailboxes shows it ('' for none). */
export const shownMailbox = (value: string | undefined): string => shownMailboxes(value)[0] ?? '';

/** A robot's mailbox: a bounce's, a list's (RFC 2142, RFC 3834 section 2) or one nobody reads. */
const isRobotAddress = (address: string) =>
  /^(mailer-daemon|postmaster|no-?reply|do-?not-?reply|.*-request|owner-.*)$/.test(address.slice(0, address.lastIndexOf('@')).toLowerCase());

/**
 * Why this message was sent by a program rather than written by a person, or undefined.
 * The one definition of "automatic": such mail never closes or reopens a ticket, never gets
 * an automatic reply, and tells the admins of nothing but a ticket it opens. The marks are
 * those real auto-responders, bounces and lists send: the null sender; RFC 3834's
 * Auto-Submitted; Precedence bulk, list, junk (vacation(1) sends junk, Gmail bulk) or
 * auto_reply; List-* (RFC 2369, 2919); X-Autoreply and X-Autorespond (Gmail, osTicket,
 * cPanel); a ticket-mail's loop header, ours or another instance's; a robot's address as
 * the envelope sender or From. Not X-Auto-Response-Suppress: Outlook and Exchange put it on
 * mail people write (to a distribution list, a meeting reply); it only asks for no reply.
 */
export function whyAutomatic(head: Head, sender: string): string | undefined {
  const machine = whyMachineWritten(head, sender);
  if (machine) return machine;
  const precedence = field(head, 'precedence')?.trim().toLowerCase();
  if (precedence === 'list') return `Precedence: ${precedence}`;
  for (const name of ['list-id', 'list-unsubscribe', 'list-post', 'list-help', 'list-subscribe', 'list-owner', 'list-archive']) {
    if (head.has(name)) return name;
  }
  return undefined;
}

/**
 * The marks of mail no person wrote (a bounce, a vacation notice, a robot's, our own), without
 * whyAutomatic's list marks: a person may answer through a list, or from a tool that puts
 * List-Unsubscribe on all its mail. Who is waiting goes by these (recordSide); list reads only
 * the fields FACTS_FIELDS names, so a field read here must be named there.
 */
export function whyMachineWritten(head: Head, sender: string): string | undefined {
  if (sender === '') return 'null envelope sender';
  const auto = field(head, 'auto-submitted')?.split(/[;(\s]/)[0]?.toLowerCase();
  if (auto !== undefined && auto !== 'no') return 'Auto-Submitted';
  const precedence = field(head, 'precedence')?.trim().toLowerCase();
  // bulk too: vacation(1) and many autoresponders mark their replies so (a person's answer never is).
  if (precedence === 'bulk' || precedence === 'junk' || precedence === 'auto_reply') return `Precedence: ${precedence}`;
  for (const name of ['x-autoreply', 'x-autorespond', LOOP_HEADER.toLowerCase()]) {
    if (head.has(name)) return name;
  }
  if (isRobotAddress(sender)) return `robot address ${sender.toLowerCase()}`;
  // From is parsed only when it may name a robot: the address parser is a module to load
  // (a plain append loads none) and slow on hostile input.
  const from = field(head, 'from');
  const author = from && /mailer-daemon|postmaster|no-?reply|do-?not-?reply|-request|owner-/i.test(from) ? addresses(from)[0] : undefined;
  if (author !== undefined && isRobotAddress(author)) return `robot address ${author}`;
  return undefined;
}

// ---------------------------------------------------------------------------------------
// Pure core: routing
// ---------------------------------------------------------------------------------------

/** A ticket number: positive, no leading zero, bounded; anything else is refused. */
export function parseTicketNumber(digits: string): number | undefined {
  if (!/^[1-9][0-9]{0,8}$/.test(digits)) return undefined;
  return Number(digits);
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** "ticket-N" -> /^ticket-(\d+)$/: the digits are checked by parseTicketNumber. */
function formRegExp(form: string): RegExp {
  const [before, after] = form.split('N') as [string, string];
  return new RegExp(`^${escapeRegExp(before)}(\\d+)${escapeRegExp(after)}$`, 'i');
}

/**
 * "[issueN]" -> /\[issue(\d+)\]/i: our tag as we write it, in any case, anywhere in the
 * subject ("Re: AW: [list] [ISSUE7] ..."); a space in the form matches any run of white
 * space, as refolding may turn it into a tab. Nothing looser: "[issue 7]" and "[Issue #7]"
 * are how other trackers write their references, and a stranger quoting one must not be
 * filed into our ticket of that number. No two runs of \s side by side, which would try
 * every split of a long run of spaces.
 */
function tagRegExp(tag: string): RegExp {
  const [before, after] = tag.trim().split('N').map((part) => part.split(/\s+/).map(escapeRegExp).join('\\s+')) as [string, string];
  return new RegExp(`${before}(\\d+)${after}`, 'i');
}

/** postal-mime's grammar of an encoded word: charset (to the next '?', no space), B or Q, text. */
const ENCODED_WORD = /=\?([^?\s]+)\?([QqBb])\?([^?]*)\?=/g;
/** The charsets of nearly all encoded words, decoded here: postal-mime reads a word in any other (its aliases, its fallbacks decide). */
const COMMON_CHARSET = /^(?:utf-?8|us-ascii|latin1|iso-8859-(?:[1-9]|1[013-5])|windows-125[0-8])$/;
const base64Value = (c: number) => (c >= 0x61 ? c - 71 : c >= 0x41 ? c - 0x41 : c >= 0x30 && c <= 0x39 ? c + 4 : c === 0x2b ? 62 : c === 0x2f ? 63 : 0); // '=' 0

/** An encoded word's bytes, as postal-mime's decodeWord makes them (a Q word's stray spaces, a B word's junk and padding). */
function encodedWordBytes(b: boolean, encoded: string): Buffer {
  if (b) {
    const text = /^[a-zA-Z0-9+/=]*$/.test(encoded) ? encoded : encoded.replace(/[^a-zA-Z0-9+/=]+/g, '');
    let length = text.length;
    while (length > 0 && text.charCodeAt(length - 1) === 0x3d) length--;
    if (length % 4 === 1) length--; // one character holds no whole byte
    const out = Buffer.allocUnsafe(Math.floor(length / 4) * 3 + (length % 4 ? (length % 4) - 1 : 0));
    for (let i = 0, p = 0; i < length; i += 4) { // an '=' inside counts as zero bits, as there
      const n = (base64Value(text.charCodeAt(i)) << 18) | (base64Value(text.charCodeAt(i + 1)) << 12)
        | (i + 2 < length ? base64Value(text.charCodeAt(i + 2)) << 6 : 0) | (i + 3 < length ? base64Value(text.charCodeAt(i + 3)) : 0);
      out[p++] = n >> 16;
      if (p < out.length) out[p++] = (n >> 8) & 0xff;
      if (p < out.length) out[p++] = n & 0xff;
    }
    return out;
  }
  // Printable ASCII (nearly every Q word) is read as it is; else as postal-mime reads it, from its UTF-8 bytes.
  const bytes = /^[!->@-~]*$/.test(encoded) ? Buffer.from(encoded, 'latin1') : Buffer.from(encoded.replace(/=\s+([0-9a-fA-F])/g, '=$1').replace(/\s/g, ' '));
  let size = 0;
  for (let i = 0; i < bytes.length; i++) {
    const high = bytes[i] === 0x3d && i + 2 < bytes.length ? hexDigit(bytes[i + 1]!) : -1;
    const low = high < 0 ? -1 : hexDigit(bytes[i + 2]!);
    if (low < 0) bytes[size++] = bytes[i] === 0x5f ? 0x20 : bytes[i]!; // '_' is a space
    else { bytes[size++] = high * 16 + low; i += 2; }
  }
  return bytes.subarray(0, size);
}

/**
 * A word's bytes as its TextDecoder reads them. UTF-8 through Buffer's decoder, which replaces
 * bad bytes as TextDecoder does (the tests hold them equal) at a tenth of the cost of a call to
 * it: but for the byte order mark at the start, which TextDecoder drops.
 */
function wordText(decoder: TextDecoder, bytes: Buffer): string {
  if (decoder.encoding !== 'utf-8') return decoder.decode(bytes);
  const bom = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  return bytes.toString('utf8', bom);
}

/**
 * RFC 2047 words decoded as postal-mime's decodeWords decodes them (test/header-decoding.test.ts
 * holds the two equal): the words in the common charsets here, with the TextDecoders partText
 * keeps, any other through postal-mime. Why: a cold list decodes 10,000 subjects, and
 * postal-mime's decoder (a token object per word, an array of numbers per byte) was a tenth of it.
 */
export function decodeWords(text: string): string {
  if (!text.includes('=?')) return text;
  type Word = { charset: string; b: boolean; encoded: string; decoder: TextDecoder };
  const pieces: Array<string | Word> = [];
  ENCODED_WORD.lastIndex = 0;
  let pos = 0;
  for (let m; (m = ENCODED_WORD.exec(text));) {
    const star = m[1]!.indexOf('*'); // an RFC 2231 language, ignored
    const label = (star < 0 ? m[1]! : m[1]!.slice(0, star)).toLowerCase();
    if (!COMMON_CHARSET.test(label)) return libraryDecodeWords(text);
    let decoder = textDecoders.get(label);
    if (!decoder) {
      try { decoder = new TextDecoder(label); } catch { return libraryDecodeWords(text); } // a runtime without it: postal-mime's fallbacks
      textDecoders.set(label, decoder);
    }
    if (m.index > pos) pieces.push(text.slice(pos, m.index));
    pieces.push({ charset: m[1]!, b: m[2] === 'B' || m[2] === 'b', encoded: m[3]!, decoder });
    pos = m.index + m[0].length;
  }
  if (pos < text.length) pieces.push(text.slice(pos));
  // Adjacent words of one charset and encoding are decoded as one (a character may be split
  // between them; a B word only when it ends a whole group); white space between words is
  // folding. Where the joined bytes do not decode, postal-mime decodes each word alone.
  const render = (join: boolean) => {
    let out = '';
    let pending: Word | undefined;
    const flush = () => { if (pending) out += wordText(pending.decoder, encodedWordBytes(pending.b, pending.encoded)); pending = undefined; };
    for (const [i, piece] of pieces.entries()) {
      if (typeof piece === 'string') {
        if (pending && typeof pieces[i + 1] === 'object' && /^[ \t\r\n]+$/.test(piece)) continue;
        flush();
        out += piece;
      } else if (pending && join && pending.charset === piece.charset && pending.b === piece.b
        && (!piece.b || (pending.encoded.length % 4 === 0 && !pending.encoded.endsWith('=')))) {
        pending = { ...pending, encoded: pending.encoded + piece.encoded };
      } else {
        flush();
        pending = piece;
      }
    }
    flush();
    return out;
  };
  const joined = render(true);
  return joined.includes('\ufffd') ? render(false) : joined;
}

/** The decoded subject: unfolded, RFC 2047 words decoded (they can hide the tag). */
export function decodedSubject(head: Head): string {
  return decodeWords(field(head, 'subject') ?? '');
}

/** The tag's digits in a subject, if any (not yet checked as a number). */
export function subjectTag(subject: string, cfg: Config): string | undefined {
  return tagRegExp(cfg.tag).exec(subject)?.[1];
}

type AddressKind = { kind: 'submit' } | { kind: 'ticket' | 'close'; digits: string } | undefined;

/** Which of our addresses a local part is, if any. Case-insensitive. */
export function classifyLocalPart(localPart: string, cfg: Config): AddressKind {
  const local = localPart.toLowerCase();
  if (local === cfg.submit) return { kind: 'submit' };
  const close = formRegExp(cfg.closeAddress).exec(local);
  if (close) return { kind: 'close', digits: close[1]! };
  const ticket = formRegExp(cfg.ticketAddress).exec(local);
  if (ticket) return { kind: 'ticket', digits: ticket[1]! };
  return undefined;
}

/** Which of our addresses this is, by its local part (the MTA has matched the domain). */
function addressKind(address: string, cfg: Config): AddressKind {
  const at = address.lastIndexOf('@');
  return classifyLocalPart(at < 0 ? address : address.slice(0, at), cfg);
}

/**
 * Decides where a message goes. Pure: the facts it needs from disk, which ticket (if any)
 * already holds a Message-ID and whether a ticket exists, come in as lookup functions.
 */
export function route(head: Head, envelope: Envelope, cfg: Config,
  ticketOfMessageId: (id: string) => number | undefined, ticketExists: (n: number) => boolean = () => false): Route {
  if (!envelope.recipient) return { action: 'unmatched', reason: 'no recipient address of ours' };
  const address = addressKind(envelope.recipient, cfg);
  if (!address) return { action: 'unmatched', reason: `${printable(envelope.recipient)} is not a ticket address` };
  if (address.kind !== 'submit') {
    const ticket = parseTicketNumber(address.digits);
    if (ticket === undefined) return { action: 'unmatched', reason: `bad ticket number in ${printable(envelope.recipient)}` };
    return address.kind === 'close' ? { action: 'close', ticket, rule: 'address' } : { action: 'append', ticket, rule: 'address' };
  }
  // Mail to submit@ that To or Cc also sends to an existing ticket's address (in the domain it
  // came to): the MTA delivers it once per address, in either order, and it belongs in that
  // ticket (the other delivery is then its duplicate), never in a new one as well.
  const domain = cfg.domain ?? envelope.recipient.slice(envelope.recipient.lastIndexOf('@') + 1);
  const named = [...head.get('to') ?? [], ...head.get('cc') ?? []].flatMap((value) => addresses(value));
  for (const a of named) { // bounded: addresses() parses at most 64 KiB of a field
    const at = a.lastIndexOf('@');
    const kind = a.slice(at + 1) === domain ? classifyLocalPart(a.slice(0, at), cfg) : undefined;
    const ticket = kind && kind.kind !== 'submit' ? parseTicketNumber(kind.digits) : undefined;
    if (ticket !== undefined && ticketExists(ticket)) return { action: 'append', ticket, rule: 'header-address' };
  }
  // Another instance's mail (its loop header) carries its own tags: ticket 1 there is not ours.
  const foreign = head.get(LOOP_HEADER.toLowerCase())?.some((d) => d.trim().toLowerCase() !== domain) ?? false;
  const tag = foreign ? undefined : subjectTag(decodedSubject(head), cfg);
  if (tag !== undefined) {
    const ticket = parseTicketNumber(tag);
    if (ticket === undefined) return { action: 'unmatched', reason: `bad ticket number ${printable(tag)} in subject tag` };
    return { action: 'append', ticket, rule: 'subject-tag' };
  }
  // Newest reference first: In-Reply-To, then References from the end.
  const refs = [...messageIds(field(head, 'in-reply-to')), ...messageIds(field(head, 'references')).reverse()];
  for (const id of refs.slice(0, 50)) {
    const ticket = ticketOfMessageId(id);
    if (ticket !== undefined) return { action: 'append', ticket, rule: 'thread' };
  }
  return { action: 'create', rule: 'submit' };
}

/** An envelope sender as given; '' for the null sender of a bounce ("", "<>", MAILER-DAEMON). */
const envelopeSender = (s: string) => (/^(<>|mailer-daemon)?$/i.test(s.trim()) ? '' : s.trim());

/**
 * The envelope, from the first source that gives one: flags, Exim's pipe environment,
 * Postfix's, else (a shell, procmail) the Delivered-To, X-Original-To, To and Cc headers.
 * The MTA's recipient yields to the headers when it is not one of our addresses: run from a
 * .forward or an alias, it is the user's own address, and ours is only in the headers. Only
 * with --domain set, though: else a personal mail Cc'd to support@ elsewhere would open a ticket.
 */
export function resolveEnvelope(flags: EnvelopeFlags, env: NodeJS.ProcessEnv,
  fromLineSender: string | undefined, head: Head, cfg: Config): Envelope {
  const envelope = envelopeOf(flags, env, fromLineSender, head, cfg);
  const localUser = flags.localUser ?? env.TICKET_MAIL_LOCAL_USER;
  return localUser ? { ...envelope, localUser } : envelope;
}

/** What the MTA's pipe command may say about the envelope, as flags (Postfix passes them so). */
export interface EnvelopeFlags { recipient?: string; sender?: string; localUser?: string }

function envelopeOf(flags: EnvelopeFlags, env: NodeJS.ProcessEnv,
  fromLineSender: string | undefined, head: Head, cfg: Config): Envelope {
  // With no envelope at all (a person at a shell), Return-Path is the MTA's record of it, else From.
  const fromHeaders = () => {
    const returnPath = field(head, 'return-path');
    return (returnPath !== undefined ? addresses(returnPath)[0] : addresses(field(head, 'from'))[0]) ?? '';
  };
  const sender = envelopeSender(flags.sender ?? env.SENDER ?? fromLineSender ?? fromHeaders());
  if (flags.recipient) return { sender, recipient: flags.recipient.toLowerCase(), source: 'flags' };
  const postfix = env.RECIPIENT || env.ORIGINAL_RECIPIENT;
  const [mtaRecipient, source] = env.LOCAL_PART && env.DOMAIN
    ? [`${env.LOCAL_PART_PREFIX ?? ''}${env.LOCAL_PART}${env.LOCAL_PART_SUFFIX ?? ''}@${env.DOMAIN}`, 'exim' as const]
    : [postfix, 'postfix' as const];
  const mta = mtaRecipient ? { sender, recipient: mtaRecipient.toLowerCase(), source } : undefined;
  if (mta && (addressKind(mta.recipient, cfg) || !cfg.domain)) return mta;
  for (const name of ['delivered-to', 'x-original-to', 'to', 'cc']) {
    for (const value of head.get(name) ?? []) {
      for (const a of addresses(value)) {
        const [local, domain] = a.split('@') as [string, string];
        if (cfg.domain && domain !== cfg.domain) continue;
        if (classifyLocalPart(local, cfg)) return { sender, recipient: a, source: 'headers' };
      }
    }
  }
  return mta ?? { sender, recipient: undefined, source: 'none' }; // its address, to say why it is unmatched
}

/**
 * What filing into an existing ticket does, given where it is and what kind of mail came.
 * `staysClosed`: mail that files into a closed ticket without reopening it (staysClosed()).
 */
export function ticketOutcome(action: 'append' | 'close', place: 'open' | 'archived', staysClosed: boolean,
  closeAllowed: boolean): 'closed' | 'close-refused' | 'reopened' | 'appended' | 'appended-archived' {
  if (action === 'close' && place === 'open') return closeAllowed ? 'closed' : 'close-refused';
  if (place === 'archived') return action === 'append' && !staysClosed ? 'reopened' : 'appended-archived';
  return 'appended';
}

/**
 * A maintainer wrote it: the MTA says one of the maintainers' logins handed it over on this
 * host. Never from the message (its From is the ticket's own address, which anyone can
 * write), nor from the envelope sender (which any SMTP client sets).
 */
export const byMaintainer = (envelope: Envelope, cfg: Config): boolean =>
  envelope.localUser !== undefined && cfg.maintainers.includes(envelope.localUser);

/**
 * Mail that lands in a closed ticket without reopening it: automatic mail (a vacation notice
 * must not reopen what was settled), and the maintainers' own answers (a last word to the
 * customer; reopening would also move the file from under the mutt that wrote it).
 */
export const staysClosed = (head: Head, envelope: Envelope, cfg: Config): boolean =>
  whyAutomatic(head, envelope.sender) !== undefined || byMaintainer(envelope, cfg);

/** Who may close a ticket: its submitter or an admin, unless the policy is "anyone". */
export function mayClose(closerFrom: string | undefined, submitterFrom: string | undefined, cfg: Config): boolean {
  if (cfg.closePolicy === 'anyone') return true;
  if (!closerFrom) return false;
  return closerFrom === submitterFrom || cfg.admins.includes(closerFrom);
}

// ---------------------------------------------------------------------------------------
// Pure core: mbox bytes
// ---------------------------------------------------------------------------------------

/** Text that goes into a From_ line or the log: printable ASCII only, bounded. */
export function printable(text: string, max = 200): string {
  return text.replace(/[^\x21-\x7e]/g, '_').slice(0, max);
}

/** Characters a terminal obeys or that reorder what it shows: C0, DEL, C1, bidi controls, line separators. */
const UNSHOWABLE = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** "<U+009B>": how visible() shows a character that has no caret form. */
const codePoint = (c: string) => `<U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}>`;

/**
 * Text from mail, fit to be shown to a person (the toolkit's output now, a web view later):
 * every character that a terminal would obey, or that would reorder the text around it, is
 * shown instead. C0 controls and DEL in caret notation as mutt and less write them (ESC is
 * "^[", DEL "^?"); C1 controls (U+0080-U+009F: CSI, OSC and ST to a terminal), the bidi marks,
 * embeddings, overrides and isolates (U+061C, U+200E-200F, U+202A-202E, U+2066-2069: they
 * reverse "gnp.exe" and move columns) and the separators U+2028-2029 as "<U+009B>". A tab
 * becomes a space: harmless, but it would break columns. Everything else is kept as it is.
 */
export function visible(text: string): string {
  return text.replace(UNSHOWABLE, (c) => (c === '\t' ? ' ' : c === '\x7f' ? '^?'
    : c < ' ' ? `^${String.fromCharCode(c.charCodeAt(0) + 0x40)}` : codePoint(c)));
}

/**
 * JSON for scripts that a person may also read on a terminal: JSON.stringify escapes C0 but
 * writes DEL, C1 and bidi controls raw, so those become \u escapes too. The text is kept as it
 * is (it parses back unchanged); a raw line break in the output is JSON's own layout.
 */
export function terminalJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(RAW_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
/** UNSHOWABLE but C0, which JSON.stringify escapes itself: its raw line breaks are its layout (a call for each was most of list --json's printing). */
const RAW_IN_JSON = /[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

// East Asian Wide and Fullwidth (Unicode's EastAsianWidth.txt, W and F), which include every
// emoji shown as one by default; and what takes no column: combining marks, zero-width spaces
// and joiners, Hangul vowels and finals that join the syllable before them, emoji tag letters.
// Made at the first use: V8 builds a \p{...} class's sets when it meets the literal (~0.2 ms
// each), which at the top level every delivery and CGI page would pay.
let widthClasses: { wide: RegExp; zeroWidth: RegExp } | undefined;
const columnClasses = () => widthClasses ??= {
  wide: /[\u1100-\u115f\u2329\u232a\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\ua000-\ua4cf\ua960-\ua97f\uac00-\ud7a3\uf900-\ufaff\ufe10-\ufe19\ufe30-\ufe6f\uff00-\uff60\uffe0-\uffe6\u{16fe0}-\u{18aff}\u{1b000}-\u{1b2ff}\u{1f200}-\u{1f2ff}\u{20000}-\u{3fffd}\p{Emoji_Presentation}]/u,
  zeroWidth: /[\p{Mn}\p{Me}\u200b-\u200d\u2060-\u2064\ufeff\u1160-\u11ff\ud7b0-\ud7ff\u{e0000}-\u{e007f}]/u,
};

/** The columns a terminal gives text (wcwidth(3), for text that went through visible()). */
export function displayWidth(text: string): number {
  if (/^[\x20-\x7e]*$/.test(text)) return text.length;
  const { wide, zeroWidth } = columnClasses();
  let width = 0;
  let last = 0; // the width of the character before
  let joined = false; // after a zero-width joiner: part of the emoji before it
  let flag = false; // after the first of a pair of regional indicators (a flag takes two columns)
  for (const ch of text) {
    if (ch === '\u200d') { joined = true; continue; }
    if (ch === '\ufe0f') { if (last === 1) { width++; last = 2; } continue; } // emoji presentation of the one before
    if (joined) { joined = false; continue; }
    if (ch >= '\u{1f1e6}' && ch <= '\u{1f1ff}') { flag = !flag; if (flag) { width += 2; last = 2; } continue; }
    const w = zeroWidth.test(ch) ? 0 : wide.test(ch) ? 2 : 1;
    width += w;
    if (w) last = w;
  }
  return width;
}

/**
 * Text from mail as one token of a state file, a record's note or a From_ line, losslessly:
 * each byte of its UTF-8 outside printable ASCII, and '%' itself, becomes %XX (a space too, so
 * a token never splits, and a line break never gets through). decodeToken gives the text back.
 */
export function encodeToken(text: string): string {
  return text.replace(/[^\x21-\x24\x26-\x7e]+/g, (run) =>
    Array.from(Buffer.from(run), (b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''));
}

export function decodeToken(token: string): string {
  return Buffer.from(token.replace(/%([0-9A-F]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))), 'latin1').toString('utf8');
}

/*
 * SHA-256 (FIPS 180-4), written out because loading node:crypto costs about 4 ms, a sixth of a
 * whole delivery. It hashes Message-IDs (for index file names), 64-byte tails, and messages whose
 * Message-ID came before (see quotedPrint), streamed. Plain variables and loops, no per-round
 * arrays or destructuring: short inputs run in V8's interpreter, where those cost more than the
 * hashing itself. The tests check it against node:crypto.
 */
const K256 = new Int32Array([ // not Int32Array.from: Bun compiles that builtin (written in JS) at its first call, ~0.3 ms
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
  0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
  0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
  0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
  0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);

/** SHA-256 fed in pieces: update() as often as needed, then digest() once (hex). */
export class Sha256 {
  private readonly h = Int32Array.of(0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19);
  private readonly w = new Int32Array(64);
  private readonly pending = new Uint8Array(64); // the start of a block the next piece completes
  private held = 0;
  private length = 0;
  update(data: Uint8Array): this {
    this.length += data.length;
    let at = 0;
    if (this.held) {
      at = Math.min(64 - this.held, data.length);
      this.pending.set(data.subarray(0, at), this.held);
      this.held += at;
      if (this.held < 64) return this;
      this.blocks(this.pending, 0, 64);
      this.held = 0;
    }
    const whole = at + ((data.length - at) & ~63);
    this.blocks(data, at, whole); // straight from the caller's bytes: no copy of a large message
    this.pending.set(data.subarray(whole));
    this.held = data.length - whole;
    return this;
  }
  digest(): string {
    const tail = new Uint8Array(this.held < 56 ? 64 : 128);
    tail.set(this.pending.subarray(0, this.held));
    tail[this.held] = 0x80;
    const view = new DataView(tail.buffer);
    view.setUint32(tail.length - 8, Math.floor(this.length / 0x20000000));
    view.setUint32(tail.length - 4, (this.length << 3) >>> 0);
    this.blocks(tail, 0, tail.length);
    let hex = '';
    for (const word of this.h) hex += (word >>> 0).toString(16).padStart(8, '0');
    return hex;
  }
  /** Compresses the 64-byte blocks of d[from, to). */
  private blocks(d: Uint8Array, from: number, to: number): void {
    const w = this.w, h = this.h;
    for (let p = from; p < to; p += 64) {
      for (let i = 0; i < 16; i++) { const j = p + i * 4; w[i] = (d[j]! << 24) | (d[j + 1]! << 16) | (d[j + 2]! << 8) | d[j + 3]!; }
      for (let i = 16; i < 64; i++) {
        const a = w[i - 15]!, b = w[i - 2]!;
        w[i] = (w[i - 16]! + (((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3)) + w[i - 7]! +
          (((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10))) | 0;
      }
      let a = h[0]!, b = h[1]!, c = h[2]!, dd = h[3]!, e = h[4]!, f = h[5]!, g = h[6]!, hh = h[7]!;
      for (let i = 0; i < 64; i++) {
        const t1 = (hh + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) + ((e & f) ^ (~e & g)) + K256[i]! + w[i]!) | 0;
        const t2 = ((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
        hh = g; g = f; f = e; e = (dd + t1) | 0; dd = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      h[0] = (h[0]! + a) | 0; h[1] = (h[1]! + b) | 0; h[2] = (h[2]! + c) | 0; h[3] = (h[3]! + dd) | 0;
      h[4] = (h[4]! + e) | 0; h[5] = (h[5]! + f) | 0; h[6] = (h[6]! + g) | 0; h[7] = (h[7]! + hh) | 0;
    }
  }
}

/**
 * SHA-256 of a short input (a Message-ID, a path), in hex. Under Bun, Bun's own (a global: no
 * module to load), since there our JS runs in the interpreter: hashing a Message-ID was ~0.4 ms
 * of an append. A choice of engine, not a twin of our code: the same digests (the Bun tests file
 * into one index with both), and the streamed hashing above stays ours under both (it runs only
 * for a message whose ID came before, or that has none).
 */
const bunHasher = (globalThis as { Bun?: { CryptoHasher: new (algorithm: 'sha256') => { update(data: Uint8Array): { digest(encoding: 'hex'): string } } } }).Bun?.CryptoHasher;
export const sha256 = (data: Uint8Array): string => (bunHasher ? new bunHasher('sha256').update(data).digest('hex') : new Sha256().update(data).digest());

let uniqueCounter = 0;
/** A name part unique on this host: with the pid, no two live processes can make the same. */
const unique = () => `${Date.now().toString(36)}${(uniqueCounter++).toString(36)}`;
/** 64 random bits, for Message-IDs that must not collide anywhere (not a secret). */
const randomHex = () => Array.from({ length: 4 }, () => Math.floor(Math.random() * 0x10000).toString(16).padStart(4, '0')).join('');

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * asctime(3) of the time in UTC, e.g. "Sat Nov  7 04:00:57 2026" (day space-padded): the From_
 * line's date as qmail-local writes it and mutt reads it (as UTC), the same whatever zone the MTA
 * or a reader runs in. (Local time would move by the reader's offset, and costs Bun a time zone
 * set-up of half a delivery.)
 */
export function asctime(d: Date): string {
  const two = (n: number) => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ` +
    `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
}

const GT = Buffer.from('>');

/**
 * mboxrd quoting, streamed: every line matching /^>*From / gets one more '>'. Linear in the
 * input and holding at most four bytes between chunks. The '>' goes just before "From ",
 * which gives the same bytes as putting it at the line start (the run is all '>').
 */
export function* quoteChunks(chunks: Iterable<Buffer>): Generator<Buffer> {
  let lineStart = true; // at a line start, or inside the run of '>' that begins a line
  let held = Buffer.alloc(0); // a line-start prefix of "From " cut by the chunk's end
  for (const chunk of chunks) {
    const data = held.length ? Buffer.concat([held, chunk]) : chunk;
    held = Buffer.alloc(0);
    let copied = 0;
    let i = 0;
    while (i < data.length) {
      if (lineStart) {
        while (i < data.length && data[i] === 0x3e) i++; // '>'
        const rest = data.length - i;
        if (rest === 0) break; // the run goes on in the next chunk
        if (rest < FROM_.length && data.subarray(i).equals(FROM_.subarray(0, rest))) {
          if (i > copied) yield data.subarray(copied, i);
          held = Buffer.from(data.subarray(i)); // copied: the caller may reuse its buffer
          copied = data.length;
          break;
        }
        if (data.subarray(i, i + FROM_.length).equals(FROM_)) {
          if (i > copied) yield data.subarray(copied, i);
          yield GT;
          copied = i;
        }
        lineStart = false;
      }
      const nl = data.indexOf(LF, i);
      if (nl < 0) break;
      i = nl + 1;
      lineStart = true;
    }
    if (copied < data.length) yield data.subarray(copied);
  }
  if (held.length) yield held;
}

/**
 * mboxrd un-quoting, streamed (the inverse of quoteChunks; the chunks begin at a line start, or
 * within a line): every line matching /^>+From / loses one '>'. A line's run of '>' is counted,
 * not held, until what follows it is known, so that a hostile line of a million '>' costs no memory.
 */
export function* unquoteChunks(chunks: Iterable<Buffer>, atLineStart = true): Generator<Buffer> {
  let lineStart = atLineStart;
  let run = 0; // '>' seen at the start of the current line, not yet given out
  let held = Buffer.alloc(0); // after the run, a prefix of "From " cut by the chunk's end
  const gts = function* (n: number) { for (; n > 0; n -= 4096) yield Buffer.alloc(Math.min(n, 4096), 0x3e); };
  for (const chunk of chunks) {
    const data = held.length ? Buffer.concat([held, chunk]) : chunk;
    held = Buffer.alloc(0);
    let copied = 0;
    let i = 0;
    while (i < data.length) {
      if (lineStart && (run || data[i] === 0x3e)) { // else the usual line, passed on as it is
        if (i > copied) yield data.subarray(copied, i);
        while (i < data.length && data[i] === 0x3e) { run++; i++; }
        copied = i;
        const rest = data.length - i;
        if (rest === 0) break; // the run goes on in the next chunk
        if (rest < FROM_.length && data.subarray(i).equals(FROM_.subarray(0, rest))) {
          held = Buffer.from(data.subarray(i)); // copied: the caller may reuse its buffer
          copied = data.length;
          break;
        }
        yield* gts(data.subarray(i, i + FROM_.length).equals(FROM_) ? run - 1 : run);
        run = 0;
      }
      lineStart = false;
      const nl = data.indexOf(LF, i);
      if (nl < 0) break;
      i = nl + 1;
      lineStart = true;
    }
    if (copied < data.length) yield data.subarray(copied);
  }
  yield* gts(run);
  if (held.length) yield held;
}

/**
 * A message as read: its first bytes in memory (all of a small one), the rest in an
 * unlinked spool file, so that a 50 MB message costs no more memory than a 5 KB one.
 */
export class Message {
  static readonly IN_MEMORY = 1 << 20;
  /**
   * `spool`: the rest, bytes [start, start + size) of a file (an unlinked spool file, or a stored
   * mbox: then `quoted`, mboxrd-quoted from a line start or from within a line).
   */
  constructor(readonly first: Buffer, readonly spool?: { fd: number; start?: number; size: number; last: number; quoted?: 'line-start' | 'mid-line' }) {}
  static of(bytes: Buffer): Message { return new Message(bytes); }
  get size(): number { return this.first.length + (this.spool?.size ?? 0); }
  get endsWithNewline(): boolean { return (this.spool ? this.spool.last : this.first[this.first.length - 1]) === LF; }
  /** The same message without its first n bytes (n within `first`). */
  skip(n: number): Message { return new Message(this.first.subarray(n), this.spool); }
  /** The message in pieces; each is valid only until the next is read (the spool's are views of one buffer). */
  *chunks(): Generator<Buffer> {
    if (this.first.length) yield this.first;
    if (!this.spool) return;
    const { fd, start = 0, size, quoted } = this.spool;
    const stored = (function* () {
      const buf = Buffer.allocUnsafe(Message.IN_MEMORY);
      for (let pos = 0; pos < size;) {
        const got = readSync(fd, buf, 0, Math.min(buf.length, size - pos), start + pos);
        if (got === 0) throw new Error('the spooled message was cut short');
        yield buf.subarray(0, got);
        pos += got;
      }
    })();
    yield* quoted ? unquoteChunks(stored, quoted === 'line-start') : stored;
  }
}

/** Header fields an MTA adds on the way: an MTA's retry, or a copy to another of our addresses, differs in these alone. */
const TRACE_FIELDS = new Set(['received', 'delivered-to', 'return-path', 'envelope-to', 'delivery-date', 'x-original-to']);

/**
 * A message's content fingerprint, which tells a copy of a filed message from another message
 * under the same Message-ID: SHA-256 over the message as stored (mboxrd-quoted, which loses
 * nothing) but its trace fields, each with its continuation lines. Hashed only when a Message-ID
 * comes again, over the new message and over the stored one read back from its mbox: pure-JS
 * SHA-256 costs ~2 ms per 5 KB in V8's interpreter, which every delivery would pay. Streamed;
 * the head is looked for in the first MiB, as routing does, cut at exactly that many bytes so
 * that both readings agree however their pieces fall.
 */
export function quotedPrint(stored: Iterable<Buffer>): string {
  const hash = new Sha256();
  const pieces = stored[Symbol.iterator]();
  const start: Buffer[] = [];
  let have = 0;
  let rest: Buffer | undefined;
  for (let r = pieces.next(); !r.done; r = pieces.next()) {
    const take = Math.min(r.value.length, Message.IN_MEMORY - have);
    start.push(Buffer.from(r.value.subarray(0, take))); // copied: a piece may be a reused buffer
    have += take;
    if (have === Message.IN_MEMORY) { rest = r.value.subarray(take); break; }
  }
  const first = Buffer.concat(start);
  const end = headEnd(first);
  let kept = 0; // the start of the run of header lines not yet hashed
  let skipping = false;
  for (let line = 0; line < end;) {
    const next = first.indexOf(LF, line) + 1 || end;
    if (first[line] !== 0x20 && first[line] !== 0x09) { // a field's first line; else a continuation
      const name = FIELD.exec(first.toString('latin1', line, Math.min(next, line + 80)))?.[1]?.toLowerCase();
      const trace = name !== undefined && TRACE_FIELDS.has(name);
      if (trace && !skipping) hash.update(first.subarray(kept, line));
      if (!trace && skipping) kept = line;
      skipping = trace;
    }
    line = next;
  }
  hash.update(first.subarray(skipping ? end : kept));
  if (rest) {
    hash.update(rest);
    for (let r = pieces.next(); !r.done; r = pieces.next()) hash.update(r.value);
  }
  return hash.digest();
}

/** The fingerprint of a message as it came (quotedPrint of how it will be stored). */
export const messagePrint = (message: Message): string => quotedPrint(quoteChunks(message.chunks()));

/** The header line we put before every stored message; documented in the README. */
export const OUR_HEADER = 'X-Ticket-Mail';

/**
 * One mbox record, streamed: From_ line, our one header line, the quoted message, a newline
 * if the message lacked one (our header then says so, to keep the round trip exact), and a
 * blank line.
 */
export function* recordChunks(message: Message, sender: string, where: string, at: Date): Generator<Buffer> {
  // The note is ours, but may carry encoded text from mail (an outbox record's recipients): a
  // line break or a byte outside ASCII in it would forge lines, even whole records.
  if (!/^[\x20-\x7e]{0,2000}$/.test(where)) throw new Error('a record note must be printable ASCII (encodeToken)');
  const terminated = message.endsWithNewline;
  const header = `${OUR_HEADER}: ${where}${terminated ? '' : '; no-final-newline'}\n`;
  yield Buffer.from(`From ${sender ? encodeToken(sender).slice(0, 1000) : 'MAILER-DAEMON'} ${asctime(at)}\n${header}`);
  yield* quoteChunks(message.chunks());
  yield Buffer.from(terminated ? '\n' : '\n\n');
}

export const mboxRecord = (message: Buffer, sender: string, where: string, at: Date): Buffer =>
  Buffer.concat([...recordChunks(Message.of(message), sender, where, at)].map((c) => Buffer.from(c)));

/**
 * Splits an mbox we wrote back into its records: the exact messages that came in (the
 * inverse of mboxRecord) and what our header line said of each ('' for a record without one).
 */
export function readMbox(mbox: Buffer): Array<{ note: string; message: Buffer }> {
  const text = mbox.toString('latin1');
  const starts: number[] = [];
  // Lines end at LF only, as for mutt: a "From " after a bare CR starts no line (and was not quoted).
  for (const m of text.matchAll(/(?<=^|\n)From /g)) starts.push(m.index);
  return starts.map((start, i) => {
    const record = text.slice(start, starts[i + 1] ?? text.length);
    const afterFromLine = record.indexOf('\n') + 1;
    // Our header line follows the From_ line; a record another program wrote (a message saved
    // into the ticket from mutt) has none, and its first line is the message's own.
    const ourLine = record.startsWith(`${OUR_HEADER}: `, afterFromLine);
    const headerEnd = ourLine ? record.indexOf('\n', afterFromLine) + 1 : afterFromLine;
    const ours = record.slice(afterFromLine, headerEnd);
    let body = record.slice(headerEnd, record.length - 1); // drop the blank separator line
    if (ours.includes('; no-final-newline')) body = body.slice(0, -1);
    const note = ours.slice(OUR_HEADER.length + 2).replace(/(; no-final-newline)?\n$/, '');
    return { note, message: Buffer.from(body.replace(/(?<=^|\n)>(>*From )/g, '$1'), 'latin1') };
  });
}

// ---------------------------------------------------------------------------------------
// Pure core: the mail we send (RFC 3834 policy, composition)
// ---------------------------------------------------------------------------------------

/** Stamped on everything we send; mail carrying it never gets an automatic reply. */
export const LOOP_HEADER = 'X-Ticket-Mail-Loop';

/** Is this address one of ours (submit@, ticket-N@, ticket-N-done@ in our domain)? */
export function isOurAddress(address: string, cfg: Config): boolean {
  const at = address.lastIndexOf('@');
  const domain = address.slice(at + 1).toLowerCase();
  return at > 0 && (!cfg.domain || domain === cfg.domain) && classifyLocalPart(address.slice(0, at), cfg) !== undefined;
}

/**
 * Why no automatic reply (acknowledgement, close notice, error) may answer this message,
 * or undefined when one may. RFC 3834 section 2 and Exim's filter_personal() checklist.
 */
export function autoReplyBlock(head: Head, envelope: Envelope, replyTo: string | undefined, cfg: Config): string | undefined {
  const automatic = whyAutomatic(head, envelope.sender);
  if (automatic) return automatic;
  if (head.has('x-auto-response-suppress')) return 'X-Auto-Response-Suppress'; // the sender asks for none
  if (!replyTo) return 'no address to reply to';
  if (isRobotAddress(replyTo)) return `robot address ${replyTo}`;
  for (const address of [envelope.sender.toLowerCase(), replyTo]) {
    if (isOurAddress(address, cfg)) return `our own address ${address}`;
  }
  return undefined;
}

/**
 * Text from untrusted input fit for a header: bounded, and no control character (C0 with CR
 * and LF, DEL, C1) or line separator, each run of them a space. Bidi embeddings, overrides and
 * isolates (U+202A-202E, U+2066-2069) are dropped: in a Subject or a file name they would
 * reorder what the reader's mail client shows ("invoice<RLO>fdp.exe" reads "invoiceexe.pdf")
 * and, left open, our own text after them; right-to-left text is ordered by the bidi algorithm
 * without them. The marks U+200E, U+200F and U+061C stay: real text uses them, and they only
 * set the direction of the punctuation beside them.
 */
/**
 * Text from mail on one line, at most `max` characters, its controls and bidi characters kept
 * (for a display that shows them visibly: the viewer's pages; headerSafe is for what goes out).
 */
export const oneLine = (text: string, max: number) => firstCodePoints(text.replace(/[\r\n]+[ \t]*/g, ' ').trim(), max);

export function headerSafe(text: string, max = 200): string {
  return firstCodePoints(text.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]+/g, ' ').replace(/[\u202a-\u202e\u2066-\u2069]/g, '')
    .replace(/\s+/g, ' ').trim(), max);
}

/** The first `max` code points of a text; one no longer than that in UTF-16 units is all of them (a cold list shortens two texts of each ticket). */
const firstCodePoints = (text: string, max: number) => (text.length <= max ? text : [...text].slice(0, max).join(''));

/** RFC 2047 B-encoded words of at most 75 characters, split on character boundaries. */
function encodedWords(text: string): string[] {
  const words: string[] = [];
  let chunk = '';
  for (const ch of text) {
    if (Buffer.byteLength(chunk + ch) > 45) { words.push(chunk); chunk = ''; } // 45 bytes -> 60 base64 chars
    chunk += ch;
  }
  if (chunk) words.push(chunk);
  return words.map((w) => `=?UTF-8?B?${Buffer.from(w).toString('base64')}?=`);
}

const needsEncoding = (word: string) => /[^\x20-\x7e]|=\?/.test(word);

/** A header phrase: ASCII words stay readable (so "[issue7]" stays greppable), runs of others are encoded. */
export function encodePhrase(text: string): string {
  const out: string[] = [];
  let run: string[] = [];
  const flush = () => { if (run.length) out.push(...encodedWords(run.join(' '))); run = []; };
  for (const word of text.split(' ')) {
    if (needsEncoding(word)) run.push(word); else { flush(); out.push(word); }
  }
  flush();
  return out.join(' ');
}

/** "Name <address>" with the name quoted or encoded as needed; the address must be checked. */
export function mailbox(name: string, address: string): string {
  const clean = headerSafe(name, 64);
  if (!clean) return address;
  if (/^[\w !#$%&'*+/=?^`{|}~.-]+$/.test(clean) && !clean.includes('=?')) return `${clean} <${address}>`;
  if (!/[^\x20-\x7e]/.test(clean)) return `"${clean.replace(/["\\]/g, '\\$&')}" <${address}>`;
  return `${encodedWords(clean).join(' ')} <${address}>`;
}

/** Folds a header value at spaces so that "Name: value" lines stay within 78 characters. */
export function foldHeader(name: string, value: string): string {
  const lines: string[] = [];
  let line = `${name}:`;
  for (const word of value.split(' ')) {
    if (line.length + 1 + word.length > 78 && line.length > name.length + 1) { lines.push(line); line = ''; }
    line += ` ${word}`;
  }
  lines.push(line);
  return lines.join('\n').slice(name.length + 2);
}

export type ReplyKind = 'ack' | 'notify' | 'close-notice' | 'unknown-ticket' | 'close-refused';

/** A message ready for sendmail: explicit envelope recipients, RFC 5322 text. */
export interface Outgoing { kind: ReplyKind; recipients: string[]; text: string }

/** What a reply is made of; every header value in here is already checked. */
export interface Draft {
  kind: ReplyKind;
  to: string;                     // checked address
  from: string;                   // mailbox(...)
  replyTo: string[];              // checked addresses
  subject: string;                // decoded text; encoded and folded on output
  messageId: string;              // without brackets
  inReplyTo: string | undefined;  // checked id, without brackets
  references: string[];           // checked ids
  autoSubmitted: 'auto-replied' | 'auto-generated';
  body: string;
}

/** The decoded text and attachment list of a message, for notifications and close notices. */
export interface Summary { text: string; attachments: Array<{ name: string; size: number }>; unlisted: number }

/** A ticket's first message, the submitter's: its head and envelope sender ('' for a bounce). */
export interface FirstMessage { head: Head; sender: string }

/** Everything planReplies needs to know, gathered by the I/O shell. */
export interface ReplyFacts {
  outcome: Outcome;
  ticket: number | undefined;
  missing: number | undefined;       // the unknown ticket number, for the error reply
  head: Head;
  envelope: Envelope;
  first: FirstMessage | undefined;   // the ticket's first message
  summary: Summary | undefined;
  templates: Partial<Record<TemplateName, string>>;
  domain: string;
  now: Date;
  unique: () => string;              // a fresh random token for each Message-ID
}

export type TemplateName = 'ack' | 'notify' | 'close-notice' | 'unknown-ticket' | 'close-refused';

/** The built-in wording; a file of the same name in --templates replaces it. */
export const TEMPLATES: Record<TemplateName, string> = {
  'ack': `Thank you. Your message is now ticket {ticket}.

To add to the ticket, reply to this message or write to {ticket_address}.
When the problem is solved, write to {close_address} to close the ticket.

Subject: {subject}
`,
  'notify': `{event} in ticket {ticket}
From: {from}
Subject: {subject}
{note}
{text}
{attachments}
Reply to this message to answer both the sender and the ticket.
Close: {close_address}
`,
  'close-notice': `Ticket {ticket} ({ticket_subject}) was closed by {from}:

{text}

If the problem is not solved, reply to this message or write to {ticket_address}
and the ticket will be opened again.
`,
  'unknown-ticket': `Your message was not added to any ticket: ticket {number} does not exist.

To open a new ticket, write to {submit_address} (without a ticket tag in the subject).

Subject: {subject}
`,
  'close-refused': `Your message was added to ticket {ticket}, but the ticket was not closed:
only the person who opened it or an administrator may close it.

Subject: {subject}
`,
};

/** Replaces {name} placeholders; unknown names are left as they are. */
export function renderTemplate(template: string, vars: Record<string, string>): string {
  return template.replace(/\{([a-z_]+)\}/g, (whole, name: string) => vars[name] ?? whole);
}

/** Our Message-IDs name the ticket, so a reply whose subject tag was deleted still threads. */
export function ourMessageId(ticket: number | undefined, unique: string, domain: string): string {
  return `ticket-mail.${ticket ?? 'none'}.${unique}@${domain}`;
}

/** The ticket named by one of our own Message-IDs, if it is one. */
export function ticketOfOurMessageId(id: string, cfg: Config): number | undefined {
  const m = /^ticket-mail\.(\d+)\.[0-9a-f]+@(.+)$/.exec(id);
  if (!m || (cfg.domain && m[2]!.toLowerCase() !== cfg.domain)) return undefined;
  return parseTicketNumber(m[1]!);
}

/** The address to answer: Reply-To, else From, else the envelope sender. */
export function replyAddress(head: Head, envelope: Envelope): string | undefined {
  return addresses(field(head, 'reply-to'))[0] ?? addresses(field(head, 'from'))[0] ??
    (isPlainAddress(envelope.sender) ? envelope.sender.toLowerCase() : undefined);
}

/** The --notify kind under which the admins hear of each outcome; the others are news to nobody. */
const NEWS_KIND: Partial<Record<Outcome, Config['notify'][number]>> = {
  created: 'new', appended: 'update', 'appended-archived': 'update', closed: 'update', 'close-refused': 'update', reopened: 'reopen',
};

/**
 * Who may get mail about a filed message: its sender (the acknowledgement or an error reply),
 * the ticket's submitter (the close notice), the admins (a notification). The one place that
 * says so: planReplies drafts for no one else, and the shell decodes the message's body and
 * reads the ticket's submitter only when somebody may need them. A maintainer's own answer,
 * close or note (`maintainer`, byMaintainer()) is news to no admin; a ticket they open is.
 */
export function audience(filed: Pick<Filed, 'outcome' | 'ticket' | 'missing'>, cfg: Config, maintainer = false): { sender: boolean; submitter: boolean; admins: boolean } {
  const kind = NEWS_KIND[filed.outcome];
  return {
    sender: filed.outcome === 'created' || filed.outcome === 'close-refused' || (filed.outcome === 'unmatched' && filed.missing !== undefined),
    submitter: filed.outcome === 'closed',
    admins: kind !== undefined && filed.ticket !== undefined && cfg.admins.length > 0 && cfg.notify.includes(kind) &&
      (!maintainer || filed.outcome === 'created'),
  };
}

/** An automatic reply that was due but is not sent, and why: said on stderr and in the audit log. */
export interface Held { kind: ReplyKind; to: string; why: string }

/** The automatic reply the sender of a message with this outcome would get, if any. */
const SENDER_REPLY: Partial<Record<Outcome, ReplyKind>> = { created: 'ack', 'close-refused': 'close-refused', unmatched: 'unknown-ticket' };

/**
 * Decides which mail to send about a filed message and drafts it. Automatic replies honour
 * autoReplyBlock (each one held back is noted in `held`); admins hear about new tickets, other
 * people's updates and reopenings, never about their own messages, and of automatic mail only
 * when it opens a ticket. The per-recipient rate limit is the shell's job.
 */
export function planReplies(facts: ReplyFacts, cfg: Config, held: Held[] = []): Draft[] {
  const { head, envelope, ticket, domain } = facts;
  const who = audience(facts, cfg, byMaintainer(facts.envelope, cfg));
  const senderReply = who.sender ? SENDER_REPLY[facts.outcome] : undefined;
  // Mail a ticket-mail sent, ours come back or another instance's (whose admin address
  // reaches us, or ours reaches it): any answer to it starts two instances notifying each
  // other for ever, so nobody hears of it. It is filed all the same.
  const sender = replyAddress(head, envelope);
  if (head.has(LOOP_HEADER.toLowerCase())) {
    if (senderReply && sender) held.push({ kind: senderReply, to: sender, why: 'a ticket-mail loop header' });
    return [];
  }
  const author = addresses(field(head, 'from'))[0];
  const { first } = facts;
  const firstEnvelope: Envelope = { sender: first?.sender ?? '', recipient: undefined, source: 'none' };
  const submitter = first && replyAddress(first.head, firstEnvelope);
  // The submitter's addresses: the first message's reply address, From and envelope sender.
  const submitterFrom = first && addresses(field(first.head, 'from'))[0];
  const submitters = (address: string | undefined) =>
    address !== undefined && [submitter, submitterFrom, first?.sender.toLowerCase()].includes(address);
  // An admin wrote it only if both its From and its envelope sender are admins': either alone is
  // easily forged, and a forged admin must not silence the notifications of what it writes.
  const isAdmin = (address: string | undefined) => address !== undefined && cfg.admins.includes(address);
  const fromAdmin = isAdmin(author) && isAdmin(envelope.sender.toLowerCase());
  const blocked = autoReplyBlock(head, envelope, sender, cfg);
  // Whom a plain reply to a notification reaches besides the ticket: never another address of
  // ours (a stranger's "Reply-To: ticket-1-done@" would have the admin's answer close ticket 1).
  const answered = sender !== undefined && !isOurAddress(sender, cfg) ? sender : undefined;
  // Automatic mail into an existing ticket (a tracker's acknowledgement, a vacation notice)
  // tells nobody: a notification answering it is how trackers that notify each other loop.
  // A ticket it opens (a monitoring alert) is still news, once: whatever answers that
  // notification by its tag or thread lands in the ticket, where it tells nobody.
  const automatic = whyAutomatic(head, envelope.sender) !== undefined;
  // A notification says so when a plain reply to it would not reach the submitter: a stranger
  // wrote into the ticket (by its tag, thread or address), or the Reply-To is someone else's.
  const writer = author ?? sender;
  const thirdParty = facts.outcome !== 'created' && first !== undefined && !fromAdmin && !(submitters(writer) && submitters(answered));
  const reader = answered !== undefined && !submitters(answered) ? answered : writer; // whom the note names: who reads the answer
  const subject = headerSafe(decodedSubject(head), 150);
  const address = (form: string) => `${form.replace('N', String(ticket))}@${domain}`;
  const messageId = messageIds(field(head, 'message-id'))[0];
  const references = [...messageIds(field(head, 'references')).slice(-10), ...(messageId ? [messageId] : [])];
  const tag = cfg.tag.replace('N', String(ticket));
  const tagged = (prefix: string, text = subject) => (subjectTag(text, cfg) === String(ticket) && !prefix
    ? text : `${tag} ${prefix}${text.replace(tagRegExp(cfg.tag), '').replace(/\s+/g, ' ').trim()}`);
  // What the ticket is about, for the close notice: its first message's subject (the closing
  // note's, "Ticket 2 closed", tells the submitter nothing).
  const ticketSubject = first ? headerSafe(decodedSubject(first.head), 150) : subject;
  const vars: Record<string, string> = {
    ticket: String(ticket ?? ''), ticket_address: address(cfg.ticketAddress), close_address: address(cfg.closeAddress),
    submit_address: `${cfg.submit}@${domain}`, subject, ticket_subject: ticketSubject, number: String(facts.missing ?? ''),
    from: headerSafe(decodeWords(field(head, 'from') ?? envelope.sender), 120),
    text: facts.summary?.text ?? '', attachments: attachmentLines(facts.summary),
    note: thirdParty ? `Note: ${headerSafe(reader ?? 'the sender', 120)} is not the ticket's submitter (${headerSafe(submitterFrom ?? submitter ?? '', 120)}).\n` : '',
  };
  const draft = (kind: ReplyKind, to: string, subjectLine: string, template: TemplateName, extra: Partial<Draft> = {}): Draft => ({
    kind, to, subject: subjectLine,
    from: mailbox(cfg.name, ticket === undefined ? vars.submit_address! : vars.ticket_address!),
    replyTo: ticket === undefined ? [] : [vars.ticket_address!],
    messageId: ourMessageId(ticket, facts.unique(), domain),
    inReplyTo: messageId, references,
    autoSubmitted: 'auto-replied',
    body: renderTemplate(facts.templates[template] ?? TEMPLATES[template], vars),
    ...extra,
  });
  const drafts: Draft[] = [];
  const reply = (kind: ReplyKind, subjectLine: string, template: TemplateName) => {
    if (!who.sender || !sender) return;
    if (blocked) held.push({ kind, to: sender, why: blocked });
    else drafts.push(draft(kind, sender, subjectLine, template));
  };
  const notify = (event: 'New' | 'Update' | 'Reopened' | 'Closed') => {
    if (!who.admins || (automatic && event !== 'New')) return;
    for (const admin of cfg.admins) {
      if (fromAdmin && admin === author) continue;
      // A plain reply reaches whoever wrote this message, and the ticket.
      const replyTo = [...new Set([answered, vars.ticket_address!].filter((a): a is string => !!a))];
      drafts.push(draft('notify', admin, tagged(`${event}${thirdParty ? ' (third party)' : ''}: `), 'notify', {
        replyTo, autoSubmitted: 'auto-generated', body: renderTemplate(facts.templates.notify ?? TEMPLATES.notify, { ...vars, event }),
      }));
    }
  };
  switch (facts.outcome) {
    case 'created':
      reply('ack', tagged(''), 'ack');
      notify('New');
      break;
    case 'appended':
    case 'appended-archived':
      if (!fromAdmin) notify('Update');
      break;
    case 'reopened':
      notify('Reopened');
      break;
    case 'closed': {
      // It goes to the submitter: RFC 3834's rules hold for the message that opened the ticket (a
      // ticket opened by a robot, a list or a bounce gets no notice), not for the closer's (which
      // is never automatic: such mail does not close), whose Reply-To or X-Auto-Response-Suppress
      // a forger would set. The submitter closed it only if both its From and its envelope sender
      // are theirs: a From alone is easily forged, and the real submitter must hear of a forged close.
      const bySubmitter = submitters(author) && submitters(envelope.sender.toLowerCase());
      const firstBlocked = first && submitter && !bySubmitter ? autoReplyBlock(first.head, firstEnvelope, submitter, cfg) : undefined;
      if (firstBlocked) held.push({ kind: 'close-notice', to: submitter!, why: `the ticket's first message: ${firstBlocked}` });
      else if (first && submitter && !bySubmitter) drafts.push(draft('close-notice', submitter, tagged('Closed: ', ticketSubject), 'close-notice'));
      if (!fromAdmin) notify('Closed');
      break;
    }
    case 'close-refused':
      reply('close-refused', tagged('Not closed: '), 'close-refused');
      if (!fromAdmin) notify('Update');
      break;
    case 'unmatched':
      reply('unknown-ticket', `No such ticket: ${facts.missing}`, 'unknown-ticket');
      break;
    case 'duplicate':
      break;
  }
  return drafts;
}

function attachmentLines(summary: Summary | undefined): string {
  if (!summary?.attachments.length) return '';
  const more = summary.unlisted ? `\n  and ${summary.unlisted} more` : '';
  return `Attachments:\n${summary.attachments.map((a) => `  ${a.name} (${a.size} bytes)`).join('\n')}${more}\n`;
}

/**
 * Readable text from HTML, for HTML-only mail in a notification. One pass from tag to tag:
 * regular expressions over the whole text took seconds on hostile HTML (thousands of "<"
 * or "<script" never closed, a long run of spaces), each match scanning on to the end.
 * A "<" that starts no tag ("2 < 3", "<3") is text, as is the rest after one never closed.
 */
export function htmlToText(html: string): string {
  // Maps, not objects: a name from the mail such as "constructor" must find nothing.
  const entities = new Map(Object.entries({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' }));
  // Where the content of a skipped element ends; <head> also ends where <body> starts.
  const skipEnd = new Map([['script', /<\/script\s*>/gi], ['style', /<\/style\s*>/gi], ['head', /<\/head\s*>|(?=<body\b)/gi]]);
  const unended = new Set<string>(); // searched once to the end in vain: never searched again
  let text = '';
  for (let at = 0; at < html.length;) {
    const open = html.indexOf('<', at);
    if (open < 0) { text += html.slice(at); break; }
    text += html.slice(at, open);
    const name = /^<(\/?[a-z][a-z0-9]*|[!?])/i.exec(html.slice(open, open + 12))?.[1]?.toLowerCase();
    const close = name === undefined ? -1 : html.indexOf('>', open);
    if (name === undefined || close < 0) { // a "<" of the text (once none closes, none later does either)
      text += name === undefined ? '<' : html.slice(open);
      at = name === undefined ? open + 1 : html.length;
      continue;
    }
    at = close + 1;
    const end = skipEnd.get(name);
    if (end && !unended.has(name)) {
      end.lastIndex = at;
      if (end.exec(html)) at = end.lastIndex;
      else unended.add(name);
    } else if (name === 'li') {
      text += '\n* ';
    } else if (/^(br|\/(p|div|h[1-6]|tr|table|ul|ol))$/.test(name)) {
      text += '\n';
    }
  }
  return text
    .replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, e: string) => {
      if (e[0] !== '#') return entities.get(e.toLowerCase()) ?? whole;
      const cp = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : Number(e.slice(1));
      return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : whole;
    })
    .split('\n').map((line) => line.trimEnd()).join('\n').replace(/\n{3,}/g, '\n\n').trim();
}

/**
 * A MIME header value (Content-Type, -Disposition, -Transfer-Encoding): its value, lower-cased,
 * and its parameters, RFC 2231 sections joined and their charsets decoded. One pass. Inside a
 * parameter value a "(" opens a comment only after whitespace: filename=Invoice(1).pdf is a name.
 */
export function mimeValue(text: string): { value: string; params: Map<string, string> } {
  if (!text) return { value: '', params: new Map() };
  const fields: string[] = [];
  let current = '';
  let quoted = false;
  let comment = 0; // nesting depth
  let inValue = false;
  let afterSpace = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (comment) {
      if (c === '\\') i++;
      else if (c === '(') comment++;
      else if (c === ')') comment--;
    } else if (quoted) {
      current += c === '\\' ? c + (text[++i] ?? '') : c;
      quoted = c !== '"';
    } else if (c === '(' && (!inValue || afterSpace)) {
      comment = 1;
    } else if (c === ';') {
      fields.push(current);
      current = '';
      inValue = false;
    } else {
      current += c;
      quoted = c === '"';
      inValue ||= c === '=';
      afterSpace = c === ' ' || c === '\t';
    }
  }
  fields.push(current);
  const params = new Map<string, string>();
  const sections = new Map<string, Array<{ index: number; text: string; encoded: boolean }>>();
  for (const f of fields.slice(1)) {
    const eq = f.indexOf('=');
    if (eq < 0) continue;
    const key = f.slice(0, eq).trim().toLowerCase();
    let text = f.slice(eq + 1).trim();
    if (text.startsWith('"')) text = text.slice(1).replace(/"$/, '').replace(/\\(.)/g, '$1');
    const section = /^(.+?)\*(\d{0,3})(\*?)$/.exec(key);
    if (!section) { if (!params.has(key)) params.set(key, text); continue; }
    const list = sections.get(section[1]!) ?? [];
    sections.set(section[1]!, list);
    list.push({ index: Number(section[2]), text, encoded: section[2] === '' || section[3] === '*' });
  }
  for (const [name, list] of sections) {
    list.sort((a, b) => a.index - b.index);
    const first = list[0]!.encoded ? /^([^']*)'[^']*'(.*)$/.exec(list[0]!.text) : null;
    if (first) list[0]!.text = first[2]!;
    const decoder = (() => { try { return new TextDecoder(first?.[1] || 'utf-8'); } catch { return new TextDecoder(); } })();
    // Adjacent encoded sections are decoded together: a character may be split between them.
    let value = '';
    let bytes = '';
    for (const { text, encoded } of list) {
      if (encoded) { bytes += Buffer.from(text).toString('latin1').replace(/%([0-9a-f]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))); continue; }
      value += decoder.decode(Buffer.from(bytes, 'latin1')) + text;
      bytes = '';
    }
    params.set(name, value + decoder.decode(Buffer.from(bytes, 'latin1')));
  }
  return { value: fields[0]!.trim().toLowerCase(), params };
}

/** What a summary shows of a message: its text parts (kept bounded) and its attachments. */
/**
 * A text part, as a small message of its own: its Content-Type and transfer encoding, a blank
 * line, then its body (its first TEXT_BYTES), from byte `body` on.
 */
export interface OutlineText { html: boolean; bytes: Buffer; type: string; encoding: string; body: number }

export interface Outline {
  texts: OutlineText[];
  cut: boolean;                                   // text was left out: more is in the ticket
  attachments: Array<{ name: string; size: number; type: string; label: string }>; // label: the name with its controls, to be shown visibly
  unlisted: number;                               // attachments past MAX_LISTED, counted only
  kept?: { type: string; charset: string };      // the attachment asked for (its bytes: outlineParts)
}

const MAX_LISTED = 100;
/** The text parts' bytes and lines kept for the summary (it shows 4,000 characters of them). */
const TEXT_BYTES = 128 * 1024;
const TEXT_LINES = 4096;
/** Of a part's header this much is read, of a line this much at a time (RFC 5322 allows 998). */
const PART_HEAD = 64 * 1024;
const MAX_LINE = 64 * 1024;
const MAX_DEPTH = 64;
/** Bytes that `length` base64 characters between two paddings decode to (as postal-mime counts them). */
const base64Bytes = (length: number) => Math.floor(length / 4) * 3 + Math.max(0, (length % 4) - 1);
/** A hex digit's value, or -1. */
const hexDigit = (b: number): number => (b >= 0x30 && b <= 0x39 ? b - 0x30 : (b | 0x20) >= 0x61 && (b | 0x20) <= 0x66 ? (b | 0x20) - 0x57 : -1);
const isHex = (b: number | undefined) => b !== undefined && hexDigit(b) >= 0;

interface OutlinePart {
  head: string[] | undefined; // header lines while the header is read
  headSize: number;
  digest: boolean;            // in a multipart/digest, whose parts are messages by default
  body: 'skip' | 'text' | 'attachment';
  text?: Omit<OutlineText, 'bytes'> & { pieces: Buffer[] };
  encoding: 'base64' | 'quoted-printable' | 'plain';
  name: string;
  label: string;
  type: string;
  charset: string;
  size: number;               // decoded bytes so far
  decoder?: BodyDecoder;      // when this is the attachment asked for
  run: number;                // base64 characters since the last padding
}

/**
 * The MIME structure of a message, read once from its chunks in linear time and bounded
 * memory, as postal-mime would see it: which parts are text (the first TEXT_BYTES of them kept,
 * to be decoded by partText), and each attachment's name and decoded size, counted without
 * decoding. Why not postal-mime on the whole message: it keeps two Blob parts per body line
 * (1.7 GB and seconds per MiB of empty lines), and parts, base64 paddings and nested messages
 * cost it likewise. Chunks may be views of a reused buffer: whatever is kept is copied.
 * More than MAX_PARTS parts (a flood of empty ones costs per part) end the reading of structure.
 */
export function mimeOutline(chunks: Iterable<Buffer>): Outline {
  const reading = outlineParts(chunks, 0);
  for (;;) { const r = reading.next(); if (r.done) return r.value; }
}

const MAX_PARTS = 10_000;

/**
 * Each byte's class in base64 text: 1 data, 2 padding, 0 skipped (line ends, junk). Made at the
 * first outline, once: start-up pays nothing, and a page of 200 messages does not make it 200 times.
 */
let base64Classes: Uint8Array | undefined;
function classesOfBase64(): Uint8Array {
  const classes = new Uint8Array(256);
  for (const b of Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/', 'latin1')) classes[b] = 1;
  classes[0x3d] = 2;
  return classes;
}

/**
 * mimeOutline, giving out attachment number `keep` (from 1, in order, listed or not) decoded as
 * it is read: at most one chunk's worth is held (a 100 MB attachment is streamed).
 */
export function* outlineParts(chunks: Iterable<Buffer>, keep: number): Generator<Buffer, Outline> {
  const decoded: Buffer[] = []; // of the chunk being read
  const outline: Outline = { texts: [], cut: false, attachments: [], unlisted: 0 };
  const base64Class = base64Classes ??= classesOfBase64();
  const boundaries: Array<{ marker: Buffer; digest: boolean }> = []; // "--boundary" of each open multipart, innermost last
  let textBytes = 0;
  let textLines = 0;
  let attachmentCount = 0;
  let parts = 0;
  const newPart = (digest: boolean): OutlinePart => {
    if (++parts === MAX_PARTS) { boundaries.length = 0; outline.cut = true; } // the rest is one part's body
    return { head: [], headSize: 0, digest, body: 'skip', encoding: 'plain', name: '', label: '', type: '', charset: '', size: 0, run: 0 };
  };
  let part = newPart(false);
  /** The header is read: what the part is, and how its body is read. */
  const startBody = () => {
    const head = (part.head!.length && parseHead(part.head!.join('\n'))) || new Map();
    part.head = undefined;
    const type = mimeValue(field(head, 'content-type') ?? (part.digest ? 'message/rfc822' : 'text/plain'));
    const disposition = mimeValue(field(head, 'content-disposition') ?? '').value;
    const encoding = /[\w-]+/.exec(mimeValue(field(head, 'content-transfer-encoding') ?? '').value)?.[0] ?? '';
    part.encoding = /base64/.test(encoding) ? 'base64' : /quoted-printable/.test(encoding) ? 'quoted-printable' : 'plain';
    const boundary = type.params.get('boundary');
    if (type.value.startsWith('multipart/')) {
      if (boundary && boundaries.length < MAX_DEPTH) boundaries.push({ marker: Buffer.from(`--${boundary}`), digest: type.value === 'multipart/digest' });
    } else if (type.value === 'message/rfc822' && (disposition === '' || disposition === 'inline') && part.encoding === 'plain') {
      part = newPart(false); // a forwarded message: its own header follows
    } else if (disposition !== 'attachment' && (type.value === 'text/plain' || type.value === 'text/html')) {
      if (textBytes >= TEXT_BYTES || textLines >= TEXT_LINES) { outline.cut = true; return; }
      const text = { type: field(head, 'content-type') ?? 'text/plain', encoding: encoding || '8bit' };
      const own = Buffer.from(`Content-Type: ${text.type}\nContent-Transfer-Encoding: ${text.encoding}\n\n`);
      part.body = 'text';
      part.text = { ...text, html: type.value === 'text/html', body: own.length, pieces: [own] };
      textBytes += own.length;
      textLines += 3;
    } else {
      part.body = 'attachment';
      part.type = type.value;
      part.charset = type.params.get('charset') ?? '';
      if (++attachmentCount === keep) part.decoder = bodyDecoder(part.encoding);
      const decoded = decodeWords(mimeValue(field(head, 'content-disposition') ?? '').params.get('filename') || type.params.get('name') || '');
      part.name = headerSafe(decoded, 100) || type.value || 'unnamed';
      part.label = oneLine(decoded, 100) || part.name;
    }
  };
  const endPart = () => {
    if (part.head) startBody();
    if (part.text) {
      const { pieces, ...text } = part.text;
      outline.texts.push({ ...text, bytes: Buffer.concat(pieces) });
    }
    if (part.body !== 'attachment') return;
    if (part.decoder) { decoded.push(part.decoder.end()); outline.kept = { type: part.type, charset: part.charset }; }
    if (outline.attachments.length >= MAX_LISTED) outline.unlisted++;
    else outline.attachments.push({ name: part.name, size: part.size + (part.encoding === 'base64' ? base64Bytes(part.run) : 0), type: part.type, label: part.label });
  };
  /**
   * One line, or a piece of a longer one (`start` and `end` say which): buf[from, to). Indices,
   * not a subarray per line: on a flood of empty lines the allocation would cost most of the time.
   */
  /** An attachment's base64 characters in buf[from, to), counted into its decoded size (a padding ends a run). */
  const countBase64 = (buf: Buffer, from: number, to: number) => {
    let { run, size } = part; // locals: this runs for every byte of an attachment
    for (let i = from; i < to; i++) {
      const kind = base64Class[buf[i]!];
      if (kind === 1) run++;
      else if (kind === 2) { size += base64Bytes(run); run = 0; }
    }
    part.run = run;
    part.size = size;
  };
  /**
   * The same over whole lines of base64, in native code where it can (a split, a regular
   * expression): a loop per byte runs interpreted in a short process, as a CGI page is, at
   * ~100 ns a byte. Lines with anything else (junk postal-mime skips) take the loop.
   */
  const countBase64Lines = (buf: Buffer, from: number, to: number) => {
    const text = buf.toString('latin1', from, to);
    if (/[^A-Za-z0-9+/=\r\n]/.test(text)) return countBase64(buf, from, to);
    text.split('=').forEach((run, i) => {
      if (i) { part.size += base64Bytes(part.run); part.run = 0; }
      let ends = run.split('\n').length - 1;
      for (let cr = run.indexOf('\r'); cr >= 0; cr = run.indexOf('\r', cr + 1)) ends++;
      part.run += run.length - ends;
    });
  };
  const piece = (buf: Buffer, from: number, to: number, start: boolean, end: boolean) => {
    let stop = to;
    if (end) while (stop > from && buf[stop - 1] === 0x0d) stop--; // as postal-mime: trailing CRs are the line end's
    const length = stop - from;
    const dashes = length > 1 && buf[from] === 0x2d && buf[from + 1] === 0x2d;
    if (part.body === 'skip' && !part.head && !dashes) return; // the usual flood
    if (start && end && boundaries.length && dashes) {
      for (let i = boundaries.length - 1; i >= 0; i--) {
        const { marker, digest } = boundaries[i]!;
        if (length < marker.length || buf.compare(marker, 0, marker.length, from, from + marker.length) !== 0) continue;
        let after = from + marker.length;
        const closing = buf[after] === 0x2d && buf[after + 1] === 0x2d && after + 1 < stop;
        if (closing) after += 2;
        while (after < stop && (buf[after] === 0x20 || buf[after] === 0x09)) after++;
        if (after < stop) continue;
        endPart();
        boundaries.length = closing ? i : i + 1;
        part = newPart(digest);
        if (closing) { part.head = undefined; part.body = 'skip'; } // the epilogue
        return;
      }
    }
    if (part.head) {
      if (start && end && length === 0) startBody();
      else if (start && part.headSize < PART_HEAD) { part.head.push(buf.toString('utf8', from, stop)); part.headSize += length; }
      return;
    }
    if (part.body === 'text') {
      const bytes = buf.subarray(from, to);
      if (textBytes + bytes.length > TEXT_BYTES || textLines >= TEXT_LINES) { outline.cut = true; part.body = 'skip'; return; }
      part.text!.pieces.push(end ? Buffer.concat([bytes, NEWLINE]) : Buffer.from(bytes));
      textBytes += bytes.length;
      if (end) textLines++;
    } else if (part.body === 'attachment') {
      if (part.decoder) decoded.push(part.decoder.push(buf.subarray(from, to), end));
      if (part.encoding === 'plain') part.size += length + (end ? 1 : 0);
      else if (part.encoding === 'base64') countBase64(buf, from, stop);
      else {
        const line = buf.subarray(from, stop);
        const soft = end && length > 0 && line[length - 1] === 0x3d;
        const data = soft ? length - 1 : length;
        let escapes = 0;
        for (let i = line.indexOf(0x3d); i >= 0 && i + 2 < data; i = line.indexOf(0x3d, i + 1)) {
          if (isHex(line[i + 1]) && isHex(line[i + 2])) { escapes++; i += 2; }
        }
        part.size += data - 2 * escapes + (end && !soft ? 1 : 0);
      }
    }
  };
  // Lines, in pieces of at most MAX_LINE bytes; a line cut by a chunk's end is carried (copied).
  let carry = Buffer.alloc(0);
  let start = true;
  for (const chunk of chunks) {
    for (let at = 0; at < chunk.length;) {
      // Most of a large message is a base64 attachment: its whole lines up to the next one that
      // could be a boundary (one starting "-") are counted in one run, not line by line. Line
      // ends and CRs are no base64 characters, so the count is the same.
      if (start && !carry.length && part.body === 'attachment' && part.encoding === 'base64' && !part.decoder && chunk[at] !== 0x2d) {
        const dash = chunk.indexOf('\n-', at);
        const until = dash >= 0 ? dash + 1 : chunk.lastIndexOf(LF) + 1;
        if (until > at) { countBase64Lines(chunk, at, until); at = until; continue; }
      }
      const nl = chunk.indexOf(LF, at);
      let buf = chunk;
      let from = at;
      let to = nl < 0 ? chunk.length : nl;
      if (carry.length) { buf = Buffer.concat([carry, chunk.subarray(at, to)]); from = 0; to = buf.length; carry = Buffer.alloc(0); }
      for (; to - from > MAX_LINE; from += MAX_LINE) { piece(buf, from, from + MAX_LINE, start, false); start = false; }
      if (nl < 0) { carry = Buffer.from(buf.subarray(from, to)); break; }
      piece(buf, from, to, start, true);
      start = true;
      at = nl + 1;
    }
    for (const bytes of decoded.splice(0)) if (bytes.length) yield bytes;
  }
  if (carry.length || !start) piece(carry, 0, carry.length, start, true);
  endPart();
  for (const bytes of decoded.splice(0)) if (bytes.length) yield bytes;
  return outline;
}

const NEWLINE = Buffer.from('\n');

interface BodyDecoder {
  /** One line of the body, or a piece of a longer one (`end`: the line ends here); gives what it decodes to so far. */
  push(line: Buffer, end: boolean): Buffer;
  end(): Buffer;
}

/**
 * A MIME body decoded from its transfer encoding as it is read, as postal-mime decodes it (junk
 * in base64 skipped, each padded run decoded on its own). Its last line break is the boundary's
 * (RFC 2046), not the content's: a line break is given out only once more follows it.
 */
function bodyDecoder(encoding: OutlinePart['encoding']): BodyDecoder {
  if (encoding === 'base64') {
    let carry = ''; // base64 characters of an unfinished quartet
    return {
      push(line) {
        const text = carry + line.toString('latin1').replace(/[^A-Za-z0-9+/=]+/g, '');
        const whole = text.length - (text.length % 4);
        carry = text.slice(whole);
        const out: Buffer[] = [];
        let from = 0;
        for (let eq = text.indexOf('='); eq >= 0 && eq < whole; eq = text.indexOf('=', from)) { // a padding ends a run
          const end = eq - (eq % 4) + 4;
          out.push(Buffer.from(text.slice(from, end), 'base64'));
          from = end;
        }
        out.push(Buffer.from(text.slice(from, whole), 'base64'));
        return Buffer.concat(out);
      },
      end: () => Buffer.from(carry, 'base64'),
    };
  }
  let lineBreak: Buffer = Buffer.alloc(0); // held until more follows it
  const hex = (h: string) => String.fromCharCode(parseInt(h, 16));
  return {
    push(line, end) {
      let text = line;
      let eol = end ? NEWLINE : Buffer.alloc(0);
      if (encoding === 'quoted-printable') {
        const latin1 = line.toString('latin1').replace(/[ \t\r]+$/, end ? '' : '$&');
        const soft = end && latin1.endsWith('=');
        text = Buffer.from((soft ? latin1.slice(0, -1) : latin1).replace(/=([0-9A-Fa-f]{2})/g, (_, h: string) => hex(h)), 'latin1');
        if (soft) eol = Buffer.alloc(0);
      } else if (end && line.at(-1) === 0x0d) { // plain: a CR before the line's end is the line break's
        text = line.subarray(0, -1);
        eol = Buffer.from('\r\n');
      }
      const out = Buffer.concat([lineBreak, text]);
      lineBreak = eol;
      return out;
    },
    end: () => Buffer.alloc(0),
  };
}

/** RFC 5322 date in UTC, e.g. "Sat, 28 Nov 2026 04:00:57 +0000". */
export function rfc5322Date(d: Date): string {
  return d.toUTCString().replace('GMT', '+0000');
}


// ---------------------------------------------------------------------------------------
// I/O shell: folders, locks, appends
// ---------------------------------------------------------------------------------------

/** The folders a Config implies. Nothing here is derived from message text but N. */
export class Store {
  readonly archived: string;
  readonly state: string;
  constructor(readonly cfg: Config) {
    this.archived = join(cfg.dir, 'archived');
    this.state = join(cfg.dir, '.ticket-mail');
  }
  /** The path of ticket N in one of its two places; N is a checked number. */
  ticketPath(n: number, place: 'open' | 'archived'): string {
    return join(place === 'open' ? this.cfg.dir : this.archived, String(n));
  }
  /**
   * The mode of a ticket file we create: 0600, or 0640 when the tickets folder has group read
   * (a team of maintainers reading with their own accounts: the README's team setup).
   */
  ticketMode(): number {
    return (statSync(this.cfg.dir).mode & 0o040) ? 0o640 : 0o600;
  }
  placeOf(n: number): 'open' | 'archived' | undefined {
    try {
      if (exists(this.ticketPath(n, 'open'))) return 'open';
      if (exists(this.ticketPath(n, 'archived'))) return 'archived';
    } catch (e) {
      throw temporary(`cannot look for ticket ${n}: ${reason(e)}`);
    }
    return undefined;
  }
  /**
   * Creates DIR (if its parent exists) and .ticket-mail/, 0700, and archived/ with the
   * permissions and group of DIR: the group search permission the MTA's SMTP-time check of
   * ticket numbers needs must hold for closed tickets too, or they could not be reopened by mail.
   */
  ensureFolders(): void {
    for (const folder of [this.cfg.dir, this.archived, this.state]) {
      if (statSync(folder, { throwIfNoEntry: false })?.isDirectory()) continue;
      try {
        mkdirSync(folder, { mode: 0o700 });
        if (folder === this.archived) {
          const parent = statSync(this.cfg.dir);
          chmodSync(folder, parent.mode & 0o2770); // mkdir's mode passes through the umask
          // A setgid DIR gave archived/ its group already; else only a member of the group may give it.
          try { chownSync(folder, -1, parent.gid); } catch { /* check says so */ }
        }
        fsyncPath(join(folder, '..'));
      } catch (e) {
        if (code(e) === 'ENOENT') throw temporary(`cannot create ${folder}: its parent folder does not exist`);
        if (code(e) !== 'EEXIST') throw temporary(`cannot create ${folder}: ${reason(e)}`);
      }
    }
  }
}

const code = (e: unknown) => (e as NodeJS.ErrnoException)?.code;
const reason = (e: unknown) => (e as NodeJS.ErrnoException)?.code ?? String((e as Error)?.message ?? e);

/**
 * Whether a path exists. Unlike existsSync, a failure other than "no such file" (EACCES,
 * ENOTDIR, EIO) is thrown: taken for absence, it would make a known ticket unknown (a bounce)
 * or a filed message new (filed twice).
 */
const exists = (path: string): boolean => statSync(path, { throwIfNoEntry: false }) !== undefined;

/**
 * Opens one of our state files: never through a symlink, never a FIFO or device (opened without
 * blocking, then refused: a FIFO would hang the delivery), never a file with another name too
 * (a hard link planted there would have us write mail's text into some other file).
 */
function openStateFile(path: string, flags: number): number {
  let fd;
  try { fd = openSync(path, flags | fsc.O_NOFOLLOW | fsc.O_NONBLOCK, 0o600); } catch (e) {
    // A FIFO without a reader, opened to write without blocking; a symlink (O_NOFOLLOW).
    if (code(e) === 'ENXIO' || code(e) === 'ELOOP') throw new Error(`${path} is not a plain file (${code(e) === 'ELOOP' ? 'a symlink' : 'a FIFO'})`);
    throw e;
  }
  const st = fstatSync(fd);
  if (st.isFile() && st.nlink <= 1) return fd;
  closeSync(fd);
  throw new Error(`${path} is not a plain file (${st.isFile() ? 'it has other names' : 'not a regular file'})`);
}

/** A state file's content, read through openStateFile. */
function readStateFile(path: string): string {
  const fd = openStateFile(path, fsc.O_RDONLY);
  try { return readFileSync(fd, 'latin1'); } finally { closeSync(fd); }
}

/** A private folder, unless it exists already. */
function makeFolder(path: string): void {
  try { mkdirSync(path, { mode: 0o700 }); } catch (e) { if (code(e) !== 'EEXIST') throw e; }
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try { fsyncSync(fd); } finally { closeSync(fd); }
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
const sleep = (ms: number) => Atomics.wait(sleepCell, 0, 0, ms);

/** True when nothing with that pid runs on this host (so its lock is dead). */
function processGone(pid: number): boolean {
  try { process.kill(pid, 0); return false; } catch (e) { return code(e) === 'ESRCH'; }
}

/** The holder line we write into our lock files: who holds it and what step is in progress. */
function lockContent(intent: string): string {
  return `ticket-mail ${process.pid} ${hostname()} ${intent}\n`;
}

export interface Lock {
  path: string;
  /** Records the step in progress, for whoever must recover after we die. */
  intend(intent: string): void;
  release(): void;
}

/**
 * Takes the dotlock PATH.lock the way Exim and mutt do (a unique "hitching post" file,
 * then link(2), which is atomic even over NFS). Waits up to cfg.lockTimeout, then throws
 * a temporary error. A lock is stale when it names a ticket-mail process on this host
 * that no longer runs, or when it is older than cfg.staleLock whoever wrote it. A stale
 * lock is taken over (renamed over, never deleted first) under a short-lived PATH.lock.break
 * guard, and `recover` gets the dead holder's intent to repair its half-done step; when the
 * repair fails, the lock is left in place with that intent and a temporary error is thrown.
 */
export function takeLock(path: string, cfg: Config, recover: (intent: string) => void): Lock {
  const lockPath = `${path}.lock`;
  const post = writeLockFile(lockPath, 'wait');
  let postLeft = true; // until link() and unlink(), or a takeover's rename, use it up
  const deadline = Date.now() + cfg.lockTimeout * 1000;
  // Back off from 2 ms up to 100 ms, with jitter. Waiters never idle the CPU in a burst (the
  // holder and the starting processes use it), but each wake-up takes CPU from the holder:
  // 50 deliveries into one ticket on 2 cores lost ~15% throughput with a 10 ms cap.
  let pause = 2;
  try {
    for (;;) {
      try {
        linkSync(post, lockPath);
        unlinkSync(post);
        postLeft = false;
        return heldLock(lockPath);
      } catch (e) {
        if (code(e) !== 'EEXIST') throw temporary(`cannot lock ${path}: ${reason(e)}`);
      }
      if (breakIfStale(lockPath, post, cfg, recover)) { // the post was renamed over the lock
        postLeft = false;
        return heldLock(lockPath);
      }
      if (Date.now() >= deadline) {
        throw temporary(`${path} has been locked for ${cfg.lockTimeout} seconds straight`);
      }
      sleep(pause + Math.random() * pause);
      pause = Math.min(pause * 2, 100);
    }
  } finally {
    if (postLeft) try { unlinkSync(post); } catch { /* nothing left to remove */ }
  }
}

/**
 * Writes a lock file under a unique name beside the lock (the "hitching post") and returns
 * that name: a lock's content only ever appears whole, by link() or rename().
 */
function writeLockFile(lockPath: string, intent: string): string {
  const post = `${lockPath}.${hostname()}.${process.pid}.${unique()}`;
  const fd = openSync(post, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
  try { writeSync(fd, lockContent(intent)); } finally { closeSync(fd); }
  return post;
}

function heldLock(lockPath: string): Lock {
  let held = true;
  return {
    path: lockPath,
    // Replaced by rename, never rewritten in place: killed halfway, we must leave our pid
    // behind (so the lock can be seen to be dead), never an empty file.
    intend(intent) { renameSync(writeLockFile(lockPath, intent), lockPath); },
    release() { // idempotent: a second call must not remove the next holder's lock
      if (!held) return;
      held = false;
      try { unlinkSync(lockPath); } catch (e) { if (code(e) !== 'ENOENT') throw e; }
    },
  };
}

function isStale(content: string, mtimeMs: number, cfg: Config): boolean {
  const [tool, pid, host] = content.split(' ');
  if (tool === 'ticket-mail' && host === hostname() && /^\d+$/.test(pid ?? '') && processGone(Number(pid))) return true;
  return Date.now() - mtimeMs > cfg.staleLock * 1000;
}

/**
 * Takes over a stale lock; returns true when we now hold it. Throws a temporary error when the
 * dead holder's step cannot be repaired (the lock is then ours, and left for the next taker).
 */
function breakIfStale(lockPath: string, post: string, cfg: Config, recover: (intent: string) => void): boolean {
  let before;
  let content;
  try {
    before = statSync(lockPath);
    // A lock written less than a second ago has a live holder but for a crash that very moment.
    // Reading it and asking after its holder at every wake-up would only take CPU from that
    // holder (~4% of the throughput of 50 deliveries into one ticket); a dead holder's lock is
    // found a second later. A lock dated in the future (another host's clock) is checked at once.
    const age = Date.now() - before.mtimeMs;
    if (age >= 0 && age < 1000) return false;
    content = readFileSync(lockPath, 'latin1');
  } catch { return false; } // gone meanwhile: simply retry the link
  if (!isStale(content, before.mtimeMs, cfg)) return false;
  // One breaker at a time: two processes must never both take over the same dead lock.
  const guard = `${lockPath}.break`;
  const mine = writeLockFile(guard, 'break');
  try {
    linkSync(mine, guard);
  } catch (e) {
    if (code(e) !== 'EEXIST') return false;
    try { // a guard is held for milliseconds; one that is old or whose owner died is removed
      const guardContent = readFileSync(guard, 'latin1');
      if (isStale(guardContent, statSync(guard).mtimeMs, { ...cfg, staleLock: Math.min(cfg.staleLock, 60) })) unlinkSync(guard);
    } catch { /* someone else removed it */ }
    return false;
  } finally { unlinkSync(mine); }
  const [tool, , , ...words] = content.trim().split(' ');
  const unfinished = tool === 'ticket-mail' ? words.join(' ') : '';
  // Atomic takeover (the lock never stops existing) by a lock that names us and still the dead
  // holder's unfinished step: should the repair fail or we die, the next taker repairs it again.
  let heir: string | undefined;
  try {
    const now = statSync(lockPath);
    if (now.ino !== before.ino || now.mtimeMs !== before.mtimeMs) return false;
    heir = writeLockFile(lockPath, unfinished);
    renameSync(heir, lockPath);
  } catch {
    if (heir) try { unlinkSync(heir); } catch { /* renamed after all, or never written */ }
    return false;
  } finally {
    try { unlinkSync(guard); } catch { /* nothing to do */ }
  }
  try {
    recover(unfinished);
  } catch (e) { // the lock stays, ours and dead once we exit: the step is repaired by the next delivery
    throw temporary(`cannot repair what a dead process left under ${lockPath}: ${reason(e)}`);
  }
  renameSync(post, lockPath);
  return true;
}

/**
 * Appends one record durably: remember the size, write, fsync; on any failure truncate
 * back to that size. Refuses symlinks and non-regular files. The lock's recorded intent
 * (path, old size, the message's index key or '-') lets whoever breaks our lock after a crash
 * undo a partial write. Returns where the record starts.
 */
export function appendDurably(path: string, record: Iterable<Buffer>, lock: Lock, idKey: string, relative: string): number {
  let fd;
  try {
    fd = openSync(path, fsc.O_RDWR | fsc.O_APPEND | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600);
  } catch (e) {
    throw temporary(`cannot open ${path}: ${reason(e)}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw temporary(`${path} is not a regular file`);
    const size = st.size;
    lock.intend(`append ${relative} ${size} ${idKey}`);
    let start = size;
    try {
      if (size > 0) { // repair a mailbox that does not end in a newline, so our From_ line starts a line
        const last = Buffer.alloc(1);
        readSync(fd, last, 0, 1, size - 1);
        if (last[0] !== LF) { writeAll(fd, Buffer.from('\n')); start++; }
      }
      for (const chunk of record) writeAll(fd, chunk);
      fsyncSync(fd);
      if (size === 0) fsyncPath(join(path, '..')); // a new file: its name must be durable too
      return start;
    } catch (e) {
      // Past a file-size limit (ulimit -f) the kernel would kill us with SIGXFSZ; Node and Bun
      // ignore that signal, so the write fails (EFBIG) and lands here like a full disk.
      try { ftruncateSync(fd, size); fsyncSync(fd); } catch { /* the lock's intent lets a later run finish this */ }
      throw temporary(`cannot write ${path}: ${reason(e)}`);
    }
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------
// I/O shell: the Message-ID index (exactly-once delivery and threading)
// ---------------------------------------------------------------------------------------

/**
 * One file per Message-ID under .ticket-mail/ids/, named by the ID's hash (never by the ID
 * itself), with a line "N AT" for each ticket N that has filed a message under it, AT being
 * where that message's record starts in N's mbox: a message under a known ID is a copy only if
 * it is the same as the one stored there (quotedPrint). A message without a Message-ID is
 * indexed under its fingerprint's hash. A line of a number alone was written by an older
 * version: it still threads replies into N, but proves no message to be a copy (one straddling
 * the upgrade may be filed twice, never lost). Neither the files nor their two folders are ever
 * followed through a symlink.
 */
export class MessageIndex {
  constructor(private readonly state: string) {}
  static key(messageId: string): string {
    return sha256(Buffer.from(messageId)).slice(0, 40);
  }
  private path(key: string): string { return join(this.state, 'ids', key.slice(0, 2), key.slice(2)); }
  /** The folders of a key's file, refused when one is not a real folder. */
  private checkFolders(path: string): void {
    for (const folder of [join(this.state, 'ids'), join(path, '..')]) {
      const st = lstatSync(folder, { throwIfNoEntry: false });
      if (st && !st.isDirectory()) throw new Error(`${folder} is not a folder`);
    }
  }
  /** Each filing under a key: its ticket, and where its record starts (undefined on an older version's line). */
  filings(key: string): Filing[] {
    const path = this.path(key);
    try {
      if (!lstatSync(path, { throwIfNoEntry: false })) return []; // the usual case, and an exception costs more than a stat
      this.checkFolders(path);
      return readStateFile(path).split('\n').flatMap((line) => {
        const [digits = '', at] = line.split(' ');
        const ticket = digits === '0' ? UNMATCHED : parseTicketNumber(digits);
        return ticket === undefined ? [] : [{ ticket, at: at && /^\d{1,15}$/.test(at) ? Number(at) : undefined }];
      });
    } catch (e) {
      if (code(e) === 'ENOENT') return [];
      const where = code(e) ? ` (${(e as NodeJS.ErrnoException).path ?? path}, as uid ${process.getuid?.()})` : ''; // "EACCES" alone helps nobody
      throw temporary(`cannot read the message index${where}: ${reason(e)}`);
    }
  }
  /** The tickets that have filed a message under this key, whatever its content (for threading). */
  tickets(key: string): number[] { return this.filings(key).map((f) => f.ticket).filter((n) => n !== UNMATCHED); }
  record(key: string, ticket: number, at: number): void {
    const path = this.path(key);
    const open = () => openStateFile(path, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT);
    let fd;
    try {
      this.checkFolders(path);
      fd = open();
    } catch (e) {
      if (code(e) !== 'ENOENT') throw e;
      // Level by level: a recursive mkdir reports EROFS as ENOENT, a misleading warning.
      for (const folder of [join(this.state, 'ids'), join(path, '..')]) makeFolder(folder);
      this.checkFolders(path);
      fd = open();
    }
    try { writeSync(fd, `${ticket} ${at}\n`); } finally { closeSync(fd); }
  }
}

/** A message filed under an index key: in ticket N, its record starting at byte AT of the mbox. */
export interface Filing { ticket: number; at: number | undefined }

/**
 * The fingerprint of the message whose record starts at byte `at` of an mbox we wrote, or
 * undefined when no record of ours starts there (the file was rewritten since: then nothing
 * there counts as a copy, and a message may be filed twice, never dropped). Read in pieces,
 * as stored: a 50 MB message is never held.
 */
export function storedPrint(path: string, at: number): string | undefined {
  let fd;
  try { fd = openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW); } catch { return undefined; }
  try {
    const size = fstatSync(fd).size;
    const start = Buffer.alloc(Math.max(0, Math.min(2048, size - at + 1)));
    const got = readSync(fd, start, 0, start.length, Math.max(0, at - 1));
    const text = start.toString('latin1', 0, got);
    // A record begins a line with our From_ line and our header line, as recordChunks writes them.
    const record = /^From [^\n]*\nX-Ticket-Mail: (?:ticket \d+|unmatched)(; no-final-newline)?\n/.exec(at === 0 ? text : text.slice(1));
    if (!record || (at > 0 && text[0] !== '\n')) return undefined;
    const bodyStart = at + record[0].length;
    // The record ends where the next one starts: the next line beginning "From " (the stored
    // message's own such lines are quoted), after the blank line that closes every record.
    let next = size;
    for (const { bytes, pos } of fileRange(fd, bodyStart, size, 6)) {
      const found = bytes.indexOf('\nFrom ');
      if (found >= 0) { next = pos + found + 1; break; }
    }
    const bodyEnd = next - 1 - (record[1] ? 1 : 0);
    if (bodyEnd < bodyStart) return undefined;
    return quotedPrint((function* () { for (const { bytes } of fileRange(fd, bodyStart, bodyEnd, 0)) yield bytes; })());
  } finally { closeSync(fd); }
}

/**
 * Bytes [from, to) of a file in pieces of 1 MiB, each valid until the next; with `overlap`, each
 * piece after the first also begins with the last `overlap` bytes of the one before (for
 * searches across the edge). `pos` is where a piece's first byte is in the file.
 */
function* fileRange(fd: number, from: number, to: number, overlap: number): Generator<{ bytes: Buffer; pos: number }> {
  const buf = Buffer.allocUnsafe((1 << 20) + overlap);
  let carry = 0;
  for (let pos = from; pos < to;) {
    const got = readSync(fd, buf, carry, Math.min(buf.length - carry, to - pos), pos);
    if (got === 0) return;
    const length = carry + got;
    yield { bytes: buf.subarray(0, length), pos: pos - carry };
    pos += got;
    carry = Math.min(overlap, length);
    buf.copy(buf, 0, length - carry, length);
  }
}

// ---------------------------------------------------------------------------------------
// I/O shell: filing a message
// ---------------------------------------------------------------------------------------

export type Outcome = 'created' | 'appended' | 'closed' | 'reopened' | 'appended-archived' |
  'close-refused' | 'duplicate' | 'unmatched';

export interface Filed {
  outcome: Outcome;
  ticket: number | undefined;
  missing?: number;   // the ticket number that does not exist, when that sent the mail to unmatched
  warning?: string;
}

export interface Incoming {
  message: Message;          // without the MTA's From_ line
  head: Head;
  envelope: Envelope;
  messageId: string | undefined; // a strict msg-id (messageIds), for threading and our headers
  idKey: string;             // its index key: of the whole Message-ID field, else of the fingerprint
  print: string | undefined; // its content fingerprint (messagePrint), once something needed it
  at: Date;
}

/** Files one message according to its route; returns what happened. */
export function file(store: Store, index: MessageIndex, incoming: Incoming, routed: Route): Filed {
  switch (routed.action) {
    case 'unmatched': return fileUnmatched(store, index, incoming, routed.reason);
    case 'create': return createTicket(store, index, incoming);
    case 'append':
    case 'close': return fileIntoTicket(store, index, incoming, routed);
  }
}

/** The unmatched mbox, as the index names it: no ticket is ever number 0. */
const UNMATCHED = 0;

function fileUnmatched(store: Store, index: MessageIndex, incoming: Incoming, why: string): Filed {
  const path = join(store.cfg.dir, 'unmatched');
  const lock = takeLock(path, store.cfg, (intent) => recoverTicketStep(store, intent));
  try {
    if (inUnmatched(store, index, incoming)) return { outcome: 'duplicate', ticket: undefined };
    const created = !exists(path);
    const at = appendDurably(path, recordChunks(incoming.message, incoming.envelope.sender, 'unmatched', incoming.at), lock, incoming.idKey, 'unmatched');
    const warning = noteFiled(index, incoming, UNMATCHED, at, []);
    // The team reads it too; the message is filed by now, so a failure here is only check's to report.
    if (created) try { chmodSync(path, store.ticketMode()); } catch { /* see above */ }
    return { outcome: 'unmatched', ticket: undefined, warning: [`filed in unmatched: ${why}`, warning].filter(Boolean).join('; ') };
  } finally { lock.release(); }
}

/** Whether this very message is filed in unmatched already (an MTA's retry): it is neither filed nor answered again. */
function inUnmatched(store: Store, index: MessageIndex, incoming: Incoming): boolean {
  const path = join(store.cfg.dir, 'unmatched');
  return index.filings(incoming.idKey).some(({ ticket, at }) => ticket === UNMATCHED && at !== undefined &&
    storedPrint(path, at) === (incoming.print ??= messagePrint(incoming.message)));
}

/**
 * Notes a filed message in the index; returns a warning if that fails. The message is filed
 * and fsync'd by then: deferring the delivery would make the MTA's retry file it again, so
 * the index only loses this message (a later copy of it would be filed, and a reply to it
 * threaded by its tag or address alone).
 */
function noteFiled(index: MessageIndex, incoming: Incoming, ticket: number, at: number, other: number[]): string | undefined {
  // Another message under a known Message-ID (a reused one, or a stranger's who has seen it):
  // filed all the same, never taken for a copy, and said so.
  const where = ticket === UNMATCHED ? 'unmatched' : `ticket ${ticket}`;
  const reused = other.length ? `${where}: its Message-ID was filed before with other content (ticket ${other.join(', ')}); filed as a new message` : undefined;
  try {
    index.record(incoming.idKey, ticket, at);
    return reused;
  } catch (e) {
    return [reused, `${where}: filed, but not noted in the message index (${reason(e)})`].filter(Boolean).join('; ');
  }
}

/** The last ticket number handed out, kept so that no number is ever used twice. */
function lastNumber(store: Store): number {
  try {
    return parseTicketNumber(readFileSync(join(store.state, 'last-ticket'), 'latin1').trim()) ?? 0;
  } catch (e) {
    if (code(e) !== 'ENOENT') throw temporary(`cannot read the ticket counter: ${reason(e)}`);
  }
  // First run on an existing folder: start above every ticket already there.
  let max = 0;
  for (const folder of [store.cfg.dir, store.archived]) {
    for (const name of readdirSync(folder)) max = Math.max(max, parseTicketNumber(name) ?? 0);
  }
  return max;
}

function createTicket(store: Store, index: MessageIndex, incoming: Incoming): Filed {
  const lock = takeLock(join(store.state, 'numbers'), store.cfg, (intent) => recoverCreate(store, index, intent));
  try {
    const { same: [already], other } = copiesOf(store, index, incoming);
    if (already !== undefined) return { outcome: 'duplicate', ticket: already };
    let n = lastNumber(store) + 1;
    while (store.placeOf(n)) n++;
    if (n > MAX_TICKET) throw temporary('ticket numbers are exhausted');
    const counter = join(store.state, 'last-ticket');
    writeFileDurably(`${counter}.new`, `${n}\n`);
    renameSync(`${counter}.new`, counter);
    lock.intend(`create ${n} ${incoming.idKey}`);
    // The ticket appears complete or not at all: written aside, then linked into place.
    const aside = join(store.state, `new-${n}`);
    const path = store.ticketPath(n, 'open');
    try {
      writeFileDurably(aside, recordChunks(incoming.message, incoming.envelope.sender, `ticket ${n}`, incoming.at));
      const mode = store.ticketMode();
      if (mode !== 0o600) chmodSync(aside, mode);
      linkSync(aside, path);
    } finally { rmSync(aside, { force: true }); }
    try { fsyncPath(store.cfg.dir); } catch (e) { rmSync(path, { force: true }); throw e; } // not durably there: undone
    return { outcome: 'created', ticket: n, warning: noteFiled(index, incoming, n, 0, other) };
  } catch (e) {
    throw e instanceof MailError ? e : temporary(`cannot create a ticket: ${reason(e)}`);
  } finally { lock.release(); }
}

/** Writes a file of ours anew and fsyncs it; whatever had that name (a planted link) is replaced, never written through. */
function writeFileDurably(path: string, data: string | Buffer | Iterable<Buffer>): void {
  try { unlinkSync(path); } catch (e) { if (code(e) !== 'ENOENT') throw e; }
  const fd = openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
  try {
    for (const chunk of typeof data === 'string' ? [Buffer.from(data)] : Buffer.isBuffer(data) ? [data] : data) writeAll(fd, chunk);
    fsyncSync(fd);
  } finally { closeSync(fd); }
}

function writeAll(fd: number, bytes: Buffer): void {
  for (let written = 0; written < bytes.length;) written += writeSync(fd, bytes, written);
}

/** A creator died holding the numbers lock: finish its step if the ticket exists. */
function recoverCreate(store: Store, index: MessageIndex, intent: string): void {
  const [step, digits, key] = intent.split(' ');
  const n = parseTicketNumber(digits ?? '');
  if (step !== 'create' || n === undefined) return;
  try { unlinkSync(join(store.state, `new-${n}`)); } catch { /* not written yet, or linked and removed */ }
  if (key && /^[0-9a-f]{40}$/.test(key) && store.placeOf(n) && !index.filings(key).some((f) => f.ticket === n && f.at === 0)) index.record(key, n, 0);
}

/**
 * The tickets holding this very message (a copy: under its key, the same as the message stored
 * there), and those holding other messages under its key. The stored messages are read only
 * when the key is known: a new Message-ID costs one stat.
 */
function copiesOf(store: Store, index: MessageIndex, incoming: Incoming): { same: number[]; opened: number[]; other: number[] } {
  const filings = index.filings(incoming.idKey).filter((f) => f.ticket !== UNMATCHED);
  const same = new Set<number>();
  const opened = new Set<number>(); // tickets this very message opened
  for (const { ticket, at } of filings) {
    if (at === undefined) continue;
    const place = store.placeOf(ticket);
    incoming.print ??= messagePrint(incoming.message);
    if (place && storedPrint(store.ticketPath(ticket, place), at) === incoming.print) {
      same.add(ticket);
      if (at === 0) opened.add(ticket);
    }
  }
  return { same: [...same], opened: [...opened], other: [...new Set(filings.map((f) => f.ticket))].filter((n) => !same.has(n)) };
}

/**
 * A holder of a ticket lock died: undo a half-written append (unless the index shows it
 * completed) or finish a half-done move. Paths come from checked numbers only.
 */
function recoverTicketStep(store: Store, intent: string): void {
  const [step, ...args] = intent.split(' ');
  const located = (relative: string | undefined) => {
    if (relative === 'unmatched' || relative === OUTBOX) return { path: join(store.cfg.dir, relative), ticket: relative === OUTBOX ? undefined : UNMATCHED };
    const m = /^(archived\/)?([0-9]+)$/.exec(relative ?? '');
    const n = m && parseTicketNumber(m[2]!);
    if (!n) return undefined;
    return { path: store.ticketPath(n, m[1] ? 'archived' : 'open'), ticket: n };
  };
  if (step === 'append') {
    const [relative, offset, key] = args;
    const target = located(relative);
    if (!target || !/^\d+$/.test(offset ?? '')) return;
    // Completed if the index holds it at that offset (or one on: a newline was added before it).
    const done = (f: Filing) => f.ticket === target.ticket && (f.at === Number(offset) || f.at === Number(offset) + 1);
    if (key && key !== '-' && target.ticket !== undefined && new MessageIndex(store.state).filings(key).some(done)) return;
    try {
      const fd = openSync(target.path, fsc.O_WRONLY | fsc.O_NOFOLLOW);
      try {
        if (fstatSync(fd).size > Number(offset)) { ftruncateSync(fd, Number(offset)); fsyncSync(fd); }
      } finally { closeSync(fd); }
    } catch { /* the file moved or vanished: nothing of ours to undo there */ }
  } else if (step === 'move') {
    const from = located(args[0]);
    const to = located(args[1]);
    if (!from || !to) return;
    try {
      if (statSync(from.path).ino === statSync(to.path).ino) unlinkSync(from.path);
    } catch { /* one of them is missing: the move either never started or completed */ }
  }
}

const relativeTicket = (n: number, place: 'open' | 'archived') => (place === 'open' ? `${n}` : `archived/${n}`);

/** Moves ticket N between DIR/ and archived/ without ever clobbering; caller holds both locks. */
function moveTicket(store: Store, n: number, from: 'open' | 'archived', to: 'open' | 'archived', lock: Lock): void {
  lock.intend(`move ${relativeTicket(n, from)} ${relativeTicket(n, to)}`);
  try {
    linkSync(store.ticketPath(n, from), store.ticketPath(n, to));
  } catch (e) {
    throw temporary(code(e) === 'EEXIST'
      ? `ticket ${n} exists both open and archived; resolve it by hand`
      : `cannot move ticket ${n}: ${reason(e)}`);
  }
  unlinkSync(store.ticketPath(n, from));
  fsyncPath(store.archived);
  fsyncPath(store.cfg.dir);
}

/** A ticket's first message (its submitter's), read from the file's start. */
function firstMessageOf(path: string): FirstMessage | undefined {
  const fd = openSync(path, 'r');
  try {
    const start = readStart(fd, 64 * 1024);
    const head = headOfMbox(start);
    // Our From_ line holds the sender encoded (recordChunks); decoded, it is the sender as it came.
    return head && { head, sender: envelopeSender(decodeToken(splitEnvelopeLine(start).fromLineSender ?? '')) };
  } finally { closeSync(fd); }
}

function readStart(fd: number, bytes: number): Buffer {
  const buf = Buffer.alloc(bytes);
  return buf.subarray(0, readSync(fd, buf, 0, buf.length, 0));
}

/** The head of the first message in the start of an mbox. */
function headOfMbox(start: Buffer): Head | undefined {
  const first = readMbox(start)[0]?.message;
  return first && parseHead(first.subarray(0, headEnd(first)).toString('utf8'));
}

/**
 * May the author of this message close open ticket N? Never by automatic mail: a vacation
 * reply (or a bounce with a forged From, which no close notice would answer) closes nothing.
 * A maintainer may (byMaintainer: the MTA, not the message, says who they are).
 */
function closeAllowed(store: Store, n: number, incoming: Incoming): boolean {
  if (whyAutomatic(incoming.head, incoming.envelope.sender)) return false;
  if (byMaintainer(incoming.envelope, store.cfg)) return true;
  const first = firstMessageOf(store.ticketPath(n, 'open'))?.head;
  return mayClose(addresses(field(incoming.head, 'from'))[0], first && addresses(field(first, 'from'))[0], store.cfg);
}

/**
 * Append, close or reopen ticket N. Under DIR/N.lock (our lock for the ticket wherever it
 * is) plus archived/N.lock when the archived file is touched, so mutt is kept out of both.
 */
function fileIntoTicket(store: Store, index: MessageIndex, incoming: Incoming,
  routed: Extract<Route, { action: 'append' | 'close' }>): Filed {
  const n = routed.ticket;
  const recover = (intent: string) => recoverTicketStep(store, intent);
  const lock = takeLock(store.ticketPath(n, 'open'), store.cfg, recover);
  let archivedLock: Lock | undefined;
  try {
    const place = store.placeOf(n);
    if (!place) {
      if (store.cfg.unknown === 'bounce') throw new MailError(67, `ticket ${n} does not exist`);
      lock.release();
      return { ...fileUnmatched(store, index, incoming, `ticket ${n} does not exist`), missing: n };
    }
    const { same, opened, other } = copiesOf(store, index, incoming);
    // A message that opened another ticket, come again for ticket-N@ (a Bcc, or an address
    // past what the headers' check reads): one mail lands in one ticket, whatever the order.
    if (!same.includes(n) && opened.length) return { outcome: 'duplicate', ticket: opened[0] };
    if (same.includes(n)) {
      // A retried close whose move was cut short (filed, but the ticket still open): finish it.
      if (routed.action === 'close' && place === 'open' && closeAllowed(store, n, incoming)) {
        archivedLock = takeLock(store.ticketPath(n, 'archived'), store.cfg, recover);
        moveTicket(store, n, 'open', 'archived', lock);
        return { outcome: 'closed', ticket: n };
      }
      return { outcome: 'duplicate', ticket: n };
    }
    if (place === 'archived') archivedLock = takeLock(store.ticketPath(n, 'archived'), store.cfg, recover);
    const outcome = ticketOutcome(routed.action, place, staysClosed(incoming.head, incoming.envelope, store.cfg),
      routed.action === 'close' && place === 'open' && closeAllowed(store, n, incoming));
    let target = place;
    if (outcome === 'reopened') {
      moveTicket(store, n, 'archived', 'open', lock);
      target = 'open';
    }
    const record = recordChunks(incoming.message, incoming.envelope.sender, `ticket ${n}`, incoming.at);
    const at = appendDurably(store.ticketPath(n, target), record, lock, incoming.idKey, relativeTicket(n, target));
    const warning = noteFiled(index, incoming, n, at, other);
    if (outcome === 'closed') {
      archivedLock = takeLock(store.ticketPath(n, 'archived'), store.cfg, recover);
      moveTicket(store, n, 'open', 'archived', lock);
    }
    return { outcome, ticket: n, warning };
  } finally {
    archivedLock?.release();
    lock.release();
  }
}

// ---------------------------------------------------------------------------------------
// I/O shell: sending, after the message is safely filed
// ---------------------------------------------------------------------------------------

/** The outbox mbox, relative to the tickets folder: mail sendmail did not take. */
const OUTBOX = '.ticket-mail/outbox';

/**
 * node:child_process, loaded when first needed: most deliveries start no program, and each
 * module loaded costs every delivery start-up time.
 */
const childProcess = () => import('node:child_process');

/**
 * Returns a function that hands one message to sendmail with explicit recipients (never -t,
 * so no header can add one) and the null envelope sender for everything we send: a reply or
 * notification that cannot be delivered must never bounce back into a ticket and start a
 * loop. The function returns why sending failed, or undefined.
 */
async function mailer(cfg: Config): Promise<(mail: Outgoing) => string | undefined> {
  const { spawnSync } = await childProcess();
  return (mail) => {
    const r = spawnSync(cfg.sendmail, ['-oi', '-f', '<>', '--', ...mail.recipients],
      { input: mail.text, stdio: ['pipe', 'ignore', 'ignore'], timeout: 60_000, killSignal: 'SIGKILL' });
    // A program that exits 0 has taken the mail, whether or not it read it all (/bin/true as a
    // "mail off" stand-in): our write then fails with EPIPE, which is no failure of sending.
    if (r.error && !(code(r.error) === 'EPIPE' && r.status === 0)) return `${cfg.sendmail}: ${reason(r.error)}`;
    if (r.signal) return `${cfg.sendmail} was killed by ${r.signal}`;
    if (r.status !== 0) return `${cfg.sendmail} exited with status ${r.status}`;
    return undefined;
  };
}

/** An outbox record's note: its kind and recipients, each encoded (a recipient may be any UTF-8). */
const outboxNote = (mail: Outgoing) => ['outbox', mail.kind, ...mail.recipients].map(encodeToken).join(' ');

/** The mail an outbox record holds, or undefined when the record is not one of ours. */
function outboxMail(note: string, message: Buffer): Outgoing | undefined {
  const [word, kind, ...recipients] = note.split(' ').map(decodeToken);
  if (word !== 'outbox' || !kind || recipients.length === 0 || !recipients.every(isPlainAddress)) return undefined;
  return { kind: kind as ReplyKind, recipients, text: message.toString() };
}

/**
 * Where an outbox that is not a regular file (a symlink, a folder) is moved: renamed aside, the
 * link itself and not what it points to, so that the mail kept now is neither written through it
 * nor lost; `check` tells of it.
 */
const ASIDE = 'outbox.not-a-file.';

/** Moves the outbox aside if it is not a regular file; the caller holds its lock. */
function outboxAside(store: Store, path: string): void {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (st && !st.isFile()) renameSync(path, join(store.state, `${ASIDE}${process.pid}.${unique()}`));
}

/** Keeps mail that could not be sent in the outbox, for `ticket-mail flush`. */
function keepInOutbox(store: Store, mails: Outgoing[]): void {
  const path = join(store.cfg.dir, OUTBOX);
  const lock = takeLock(path, store.cfg, (intent) => recoverTicketStep(store, intent));
  try {
    outboxAside(store, path);
    for (const m of mails) {
      appendDurably(path, recordChunks(Message.of(Buffer.from(m.text)), '', outboxNote(m), new Date()), lock, '-', OUTBOX);
    }
  } finally { lock.release(); }
}

/**
 * Sends what the outbox holds; what still fails stays there. One flush at a time (none sends
 * a mail another is sending), but the outbox's own lock is held only to read it and to write
 * it back: deliveries keeping mail there must not wait out sendmail (60 s a try) and time out,
 * losing their replies. Mail they add meanwhile is kept as it is, after what failed again.
 * The flush lock is renewed at each mail so that it never looks stale while we send; should
 * it be taken over all the same, the outbox is no longer what we read, and is left as it is.
 */
export async function flushOutbox(store: Store): Promise<{ sent: number; kept: number; error: string | undefined }> {
  const path = join(store.cfg.dir, OUTBOX);
  if (!lstatSync(path, { throwIfNoEntry: false })) return { sent: 0, kept: 0, error: undefined };
  const sendmail = await mailer(store.cfg);
  const underLock = <T>(work: () => T): T => {
    const lock = takeLock(path, store.cfg, (intent) => recoverTicketStep(store, intent));
    try { return work(); } finally { lock.release(); }
  };
  const flushing = takeLock(`${path}.flush`, store.cfg, () => {});
  try {
    const taken = underLock(() => {
      outboxAside(store, path);
      return exists(path) ? readFileSync(path) : Buffer.alloc(0);
    });
    const records = readMbox(taken);
    const kept: Buffer[] = [];
    let error: string | undefined;
    for (const [i, record] of records.entries()) {
      flushing.intend(`flush ${i + 1} of ${records.length}`);
      const mail = outboxMail(record.note, record.message);
      const failed = mail ? sendmail(mail) : 'not an outbox record';
      if (failed) {
        error = failed;
        // A note of an older version's outbox may hold raw bytes: kept, encoded, for a person to read.
        kept.push(mboxRecord(record.message, '', /^[\x20-\x7e]*$/.test(record.note) ? record.note : encodeToken(record.note), new Date()));
      }
    }
    if (kept.length < records.length) {
      underLock(() => { // a crash before this rename sends the mail taken again: twice rather than never
        const now = readFileSync(path);
        if (!now.subarray(0, taken.length).equals(taken)) return;
        writeFileDurably(`${path}.new`, [...kept, now.subarray(taken.length)]);
        renameSync(`${path}.new`, path);
      });
    }
    return { sent: records.length - kept.length, kept: kept.length, error };
  } finally { flushing.release(); }
}

/** At most cfg.replyLimit automatic replies per recipient per hour, counted across processes. */
const replyLimitReached = (cfg: Config) => `the reply limit of ${cfg.replyLimit} automatic replies an hour to one address is reached`;

/** The times of the automatic replies to one address in the hour before `now`, from its counter file. */
function recentReplies(path: string, now: Date): number[] {
  try { return readStateFile(path).split('\n').map(Number).filter((t) => t > now.getTime() - 3600_000); } catch (e) {
    if (code(e) === 'ENOENT') return []; // none yet
    throw e;
  }
}
const replyCounter = (store: Store, recipient: string) => join(store.state, 'replies', MessageIndex.key(recipient));

function withinReplyLimit(store: Store, recipient: string, now: Date): boolean {
  const folder = join(store.state, 'replies');
  makeFolder(folder);
  if (!lstatSync(folder).isDirectory()) throw new Error(`${folder} is not a folder`);
  const path = replyCounter(store, recipient);
  const lock = takeLock(path, store.cfg, () => {});
  try {
    const times = recentReplies(path, now);
    if (times.length >= store.cfg.replyLimit) return false;
    times.push(now.getTime());
    writeFileDurably(path, times.join('\n'));
    return true;
  } finally { lock.release(); }
}

/**
 * `prune`: removes the reply counters with no reply in the hour before `now`; they limit
 * nothing any more, and one file per address ever answered would pile up. Each counter is read
 * and removed under the lock withinReplyLimit takes, so a reply being counted meanwhile is never
 * lost. Nothing else is removed: locks are left to their next taker (who repairs what they
 * name), and what is not a counter, or not a plain file (a symlink, a FIFO), is left alone and
 * named in `refused`, never followed.
 */
export function pruneReplyCounters(store: Store, now: Date): { removed: number; kept: number; refused: string[] } {
  const folder = join(store.state, 'replies');
  const st = lstatSync(folder, { throwIfNoEntry: false });
  if (!st) return { removed: 0, kept: 0, refused: [] };
  if (!st.isDirectory()) throw new Error(`${folder} is not a folder`);
  const counted = { removed: 0, kept: 0, refused: [] as string[] };
  for (const name of readdirSync(folder)) {
    if (!/^[0-9a-f]{40}$/.test(name)) continue; // a lock, a lock's hitching post
    const path = join(folder, name);
    try {
      const lock = takeLock(path, store.cfg, () => {});
      try {
        if (recentReplies(path, now).length) counted.kept++;
        else {
          try { unlinkSync(path); } catch (e) { if (code(e) !== 'ENOENT') throw e; } // another prune's
          counted.removed++;
        }
      } finally { lock.release(); }
    } catch (e) {
      counted.refused.push(e instanceof Error && !code(e) ? e.message : `${path}: ${reason(e)}`);
    }
  }
  return counted;
}

/**
 * The text of a message and its attachments, bounded in memory and time whatever the message:
 * mimeOutline reads its structure, and only the kept start of its text parts is decoded (format=
 * flowed reflowed). Plain text when there is any, else the HTML parts as text.
 */
export async function messageText(message: Message): Promise<Outline & { text: string }> {
  const outline = mimeOutline(message.chunks());
  const html = !outline.texts.some((t) => !t.html); // plain text if any, as postal-mime's text
  const parts = outline.texts.filter((t) => t.html === html);
  const decoded: string[] = [];
  for (const part of parts) decoded.push(partText(part) ?? await parsedPartText(part));
  const text = parts.length ? (html ? htmlToText(decoded.join('\n')) : decoded.join('\n')).trim() : '';
  return { ...outline, text };
}

/** A text part's text through postal-mime's parser: for the parts partText leaves to it. */
async function parsedPartText(part: OutlineText): Promise<string> {
  const { default: PostalMime } = await import('postal-mime'); // the full parser: only here
  const email = await PostalMime.parse(part.bytes, { attachmentEncoding: 'arraybuffer' });
  return (part.html ? email.html : email.text) ?? '';
}

/**
 * A Content-Type parameter that reads the same by every parser: a token or a plain quoted string,
 * no comment, escape or continuation (RFC 2231). A ';' inside quotes leaves a segment unmatched.
 * One pattern per segment, each part of it unambiguous: no backtracking on 64 KiB of spaces.
 */
const PLAIN_PARAM = /^[ \t]*([A-Za-z0-9-]+)=(?:"([^"\\()\r\n]*)"|([^\s";()\\]+))[ \t]*$/;
const textDecoders = new Map<string, TextDecoder>();

/** The parameters of a text/plain or text/html Content-Type made only of plain ones (the first of a name counts), else undefined. */
function plainTextParams(type: string): Map<string, string> | undefined {
  const [value, ...segments] = type.split(';');
  if (!/^[ \t]*text\/(?:plain|html)[ \t]*$/i.test(value!)) return undefined;
  const params = new Map<string, string>();
  for (const segment of segments) {
    if (/^[ \t]*$/.test(segment)) continue;
    const param = PLAIN_PARAM.exec(segment);
    if (!param) return undefined;
    const name = param[1]!.toLowerCase();
    if (!params.has(name)) params.set(name, param[2] ?? param[3]!);
  }
  return params;
}

/**
 * A text part's text as postal-mime's parser gives it (the tests hold the two equal, on the
 * corpus and on random parts), without loading that parser and its Blob-based decoders: the
 * transfer encoding undone line by line, the charset decoded, format=flowed unfolded. Undefined
 * for a part postal-mime must read: an unusual Content-Type, or a charset label the runtime does
 * not know (postal-mime's aliases then decide).
 */
export function partText(part: OutlineText): string | undefined {
  const params = plainTextParams(part.type);
  if (!params) return undefined;
  const label = (params.get('charset') || 'utf8').trim().toLowerCase();
  let decoder = textDecoders.get(label);
  if (!decoder) {
    try { decoder = new TextDecoder(label); } catch { return undefined; }
    textDecoders.set(label, decoder);
  }
  const text = decoder.decode(transferDecoded(part.bytes.subarray(part.body), part.encoding));
  return /^flowed$/i.test(params.get('format') ?? '') ? unflowed(text, /^yes$/i.test(params.get('delsp') ?? '')) : text;
}

/**
 * A body's bytes decoded from its transfer encoding as postal-mime decodes a text part: line by
 * line (each line's trailing CRs are the line end's), junk in base64 skipped and each run up to a
 * padding decoded on its own, quoted-printable's bad escapes kept as written.
 */
function transferDecoded(body: Buffer, encoding: string): Buffer {
  const lines: Buffer[] = [];
  for (let at = 0; at < body.length;) {
    const lf = body.indexOf(LF, at);
    const next = lf < 0 ? body.length : lf + 1;
    let end = lf < 0 ? body.length : lf;
    while (end > at && body[end - 1] === 0x0d) end--;
    lines.push(body.subarray(at, end));
    at = next;
  }
  if (/base64/i.test(encoding)) {
    const runs = lines.map((line) => line.toString('latin1').replace(/[^a-zA-Z0-9+/=]+/g, '')).join('').split(/=+/);
    // A run's last character alone holds no whole byte: it is dropped, as postal-mime drops it.
    return Buffer.concat(runs.map((run) => Buffer.from(run.slice(0, run.length - (run.length % 4 === 1 ? 1 : 0)), 'base64')));
  }
  if (!/quoted-printable/i.test(encoding)) return Buffer.concat(lines.flatMap((line) => [line, NEWLINE]));
  // Byte by byte into one buffer: a Buffer per escape (and a copy per run) made a line of "=41"s
  // 15 times slower than postal-mime's decoder. A line never grows; the last may gain its LF.
  const out = Buffer.allocUnsafe(body.length + 1);
  let size = 0;
  for (const line of lines) {
    const soft = line.at(-1) === 0x3d;
    const length = soft ? line.length - 1 : line.length;
    for (let i = 0; i < length; i++) {
      const byte = line[i]!;
      const high = byte === 0x3d && i + 2 < length ? hexDigit(line[i + 1]!) : -1;
      const low = high < 0 ? -1 : hexDigit(line[i + 2]!);
      if (low < 0) out[size++] = byte;
      else { out[size++] = high * 16 + low; i += 2; }
    }
    if (!soft) out[size++] = LF;
  }
  return out.subarray(0, size);
}

/**
 * RFC 3676 format=flowed text unfolded as postal-mime unfolds it: a line ending in a space goes
 * on with the next (less that space with delsp=yes), except the signature separator "-- ";
 * a leading space is stuffing. Pieces, joined once: growing one string would be quadratic.
 */
function unflowed(text: string, delSp: boolean): string {
  const lines: string[] = [];
  let pieces: string[] = []; // of the line being unfolded; none empty
  let length = 0;
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.startsWith(' ') ? raw.slice(1) : raw;
    const last = pieces.at(-1) ?? '';
    if (i && last.endsWith(' ') && !(length === 3 && pieces.join('') === '-- ')) {
      if (delSp) {
        if (last.length > 1) pieces[pieces.length - 1] = last.slice(0, -1);
        else pieces.pop();
        length--;
      }
    } else if (i) {
      lines.push(pieces.join(''));
      pieces = [];
      length = 0;
    }
    if (line) { pieces.push(line); length += line.length; }
  });
  lines.push(pieces.join(''));
  return lines.join('\n');
}

/** What a reply's summary shows of a message: its first 4,000 characters of text and its attachments. */
async function summarize(message: Message): Promise<Summary> {
  const MAX_TEXT = 4000;
  try {
    const { text, cut, attachments, unlisted } = await messageText(message);
    const rest = cut ? 'more' : text.length > MAX_TEXT ? `${text.length - MAX_TEXT} more characters` : undefined;
    return {
      text: rest ? `${text.slice(0, MAX_TEXT)}\n[... ${rest} in the ticket]` : text,
      attachments: attachments.map(({ name, size }) => ({ name, size })), unlisted,
    };
  } catch {
    return { text: '(the message could not be decoded: read it in the ticket)', attachments: [], unlisted: 0 };
  }
}

/**
 * Renders a draft with mimetext. mimetext insists on its own Mailbox objects for From, To
 * and Reply-To (one address only) and base64-encodes every Subject whole, which hides the
 * [issueN] tag and can exceed RFC 2047's 75 characters; so we give it finished, checked
 * values and have it print them as they are. Its default body encoding is 7bit whatever
 * the text: non-ASCII text goes out base64-encoded instead.
 */
export async function renderDraft(d: Draft, domain: string, now: Date): Promise<string> {
  const { createMimeMessage } = await import('mimetext');
  const msg = createMimeMessage();
  const set = (name: string, value: string) => {
    const builtIn = msg.headers.fields.find((f) => f.name.toLowerCase() === name.toLowerCase());
    if (builtIn) Object.assign(builtIn, { value, validate: undefined, dump: (v: unknown) => String(v) });
    else msg.setHeader(name, value);
  };
  set('Date', rfc5322Date(now));
  set('From', d.from);
  set('To', d.to);
  if (d.replyTo.length) set('Reply-To', foldHeader('Reply-To', d.replyTo.join(', ')));
  set('Message-ID', `<${d.messageId}>`);
  set('Subject', foldHeader('Subject', encodePhrase(d.subject)));
  if (d.inReplyTo) set('In-Reply-To', `<${d.inReplyTo}>`);
  if (d.references.length) set('References', foldHeader('References', d.references.map((id) => `<${id}>`).join(' ')));
  set('Auto-Submitted', d.autoSubmitted);
  set(LOOP_HEADER, domain);
  const plain = /^[\x09\x0a\x20-\x7e]*$/.test(d.body) && d.body.split('\n').every((l) => l.length <= 998);
  msg.addMessage({
    contentType: 'text/plain', charset: 'utf-8', encoding: plain ? '7bit' : 'base64',
    data: plain ? d.body : Buffer.from(d.body).toString('base64').replace(/.{76}/g, '$&\n'),
  });
  const text = msg.asRaw();
  return text.endsWith('\n') ? text : `${text}\n`;
}

function loadTemplates(cfg: Config): Partial<Record<TemplateName, string>> {
  const templates: Partial<Record<TemplateName, string>> = {};
  if (!cfg.templates) return templates;
  for (const name of Object.keys(TEMPLATES) as TemplateName[]) {
    try { templates[name] = readFileSync(join(cfg.templates, `${name}.txt`), 'utf8'); } catch (e) {
      if (code(e) !== 'ENOENT') throw e;
    }
  }
  return templates;
}

/** Outside office hours (local time) or on a day off? */
export function outOfHours(at: Date, cfg: Config): boolean {
  const minutes = at.getHours() * 60 + at.getMinutes();
  return !cfg.officeDays.includes(at.getDay()) || minutes < cfg.officeHours[0] || minutes >= cfg.officeHours[1];
}

/**
 * Runs the alert command for a new ticket. The ticket's facts travel in environment
 * variables, never spliced into the command string; a time limit keeps it from holding
 * up the delivery. Returns a warning when it failed.
 */
async function runAlert(cfg: Config, ticket: number, incoming: Incoming): Promise<string | undefined> {
  const { spawnSync } = await childProcess();
  const r = spawnSync('/bin/sh', ['-c', cfg.alertCommand!], {
    stdio: 'ignore', timeout: 10_000, killSignal: 'SIGKILL',
    env: {
      ...process.env,
      TICKET_MAIL_TICKET: String(ticket),
      TICKET_MAIL_SENDER: headerSafe(decodeWords(field(incoming.head, 'from') ?? incoming.envelope.sender), 200),
      TICKET_MAIL_SUBJECT: headerSafe(decodedSubject(incoming.head), 200),
    },
  });
  if (r.error || r.signal || r.status !== 0) return `alert command failed: ${r.error ? reason(r.error) : r.signal ?? `status ${r.status}`}`;
  return undefined;
}

/** The domain of our addresses: --domain, else the one the mail was delivered to. */
function replyDomain(cfg: Config, incoming: Incoming): string | undefined {
  const domain = cfg.domain ?? incoming.envelope.recipient?.split('@')[1];
  return domain && /^[a-z0-9.-]{1,253}$/.test(domain) ? domain : undefined;
}

/** planReplies() with the facts gathered from disk: the ticket's submitter, the templates. */
function draftReplies(store: Store, incoming: Incoming, filed: Pick<Filed, 'outcome' | 'ticket' | 'missing'>,
  domain: string, now: Date, summary: Summary | undefined, templates = loadTemplates(store.cfg), held: Held[] = []): Draft[] {
  // The submitter matters only to notifications and the close notice: read it only then.
  const who = audience(filed, store.cfg, byMaintainer(incoming.envelope, store.cfg));
  const place = !(who.submitter || who.admins) || filed.ticket === undefined ? undefined : store.placeOf(filed.ticket);
  const first = filed.outcome === 'created' ? { head: incoming.head, sender: incoming.envelope.sender }
    : place && firstMessageOf(store.ticketPath(filed.ticket!, place));
  return planReplies({
    outcome: filed.outcome, ticket: filed.ticket, missing: filed.missing, head: incoming.head, envelope: incoming.envelope,
    first,
    summary, templates, domain, now, unique: randomHex,
  }, store.cfg, held);
}

/**
 * Everything that follows a filed message: the alert, acknowledgement, notifications, close
 * notice or error reply. Never fails the delivery (the MTA would retry and file the message
 * twice): whatever goes wrong becomes a warning, and unsent mail waits in the outbox.
 */
export async function sendReplies(store: Store, incoming: Incoming, filed: Filed, now = new Date()): Promise<string[]> {
  const { cfg } = store;
  const warnings: string[] = [];
  try {
    if (filed.outcome === 'created' && cfg.alertCommand && outOfHours(now, cfg)) {
      const warning = await runAlert(cfg, filed.ticket!, incoming);
      if (warning) warnings.push(warning);
    }
    const who = audience(filed, cfg, byMaintainer(incoming.envelope, cfg));
    if (!who.sender && !who.submitter && !who.admins) return warnings; // nothing to decode, draft or send
    const domain = replyDomain(cfg, incoming);
    if (!domain) return [...warnings, 'no --domain set: no replies sent'];
    const templates = loadTemplates(cfg);
    let held: Held[] = [];
    const draft = (summary?: Summary) => draftReplies(store, incoming, filed, domain, now, summary, templates, held = []);
    // The body is decoded (by the full MIME parser) only for mail that shows its text or its
    // attachments: not for a message nobody is told of, such as an admin's own reply.
    const showsBody = (d: Draft) => /\{(text|attachments)\}/.test(templates[d.kind] ?? TEMPLATES[d.kind]);
    let drafts = draft();
    if (drafts.some(showsBody)) drafts = draft(await summarize(incoming.message));
    const outgoing: Outgoing[] = [];
    const unsent: Outgoing[] = [];
    let error: string | undefined;
    for (const d of drafts) {
      const mail = { kind: d.kind, recipients: [d.to], text: await renderDraft(d, domain, now) };
      if (d.autoSubmitted !== 'auto-replied') { outgoing.push(mail); continue; }
      let within;
      try { within = withinReplyLimit(store, d.to, now); } catch (e) { // kept, not lost, and not sent past a limit we cannot count
        unsent.push(mail);
        error = `cannot count the replies to ${d.to}: ${reason(e)}`;
        continue;
      }
      if (within) outgoing.push(mail);
      else held.push({ kind: d.kind, to: d.to, why: replyLimitReached(cfg) });
    }
    for (const h of held) { // each one line on stderr and in the audit log: never dropped without a trace
      warnings.push(`no ${h.kind} sent to ${h.to}: ${h.why}`);
      audit(store, [now.toISOString(), incoming.messageId, incoming.envelope.sender || '<>', incoming.envelope.recipient,
        `reply/${h.kind}`, filed.ticket, 'held', `to ${h.to}: ${h.why}`]);
    }
    const sendmail = outgoing.length ? await mailer(cfg) : undefined;
    for (const mail of outgoing) {
      const failed = error?.endsWith('ENOENT') ? error : sendmail!(mail); // no sendmail: don't look again
      if (failed) { unsent.push(mail); error = failed; }
    }
    if (unsent.length) {
      try {
        keepInOutbox(store, unsent);
        warnings.push(`${unsent.length} message(s) kept in the outbox (${error}); send them later with: ticket-mail flush`);
      } catch (e) {
        warnings.push(`${unsent.length} message(s) not sent (${error}) and not kept (${reason(e)}): ${unsent.map((m) => `${m.kind} to ${m.recipients.join(', ')}`).join('; ')}`);
      }
    }
  } catch (e) {
    warnings.push(`replies not sent: ${reason(e)}`);
  }
  return warnings;
}

// ---------------------------------------------------------------------------------------
// The maintainer's toolkit: list, show, route, close, reopen, check
// ---------------------------------------------------------------------------------------

export interface TicketRow {
  ticket: number; state: 'open' | 'closed'; submitter: string; subject: string; messages: number; lastActivity: string;
  /** ISO times of records (their From_ lines): the first, our first answer to the customer (null: none yet), the last. */
  opened: string; firstAnswer: string | null; lastMessage: string;
  /** Who owes the next message (null when closed), and since when the customer has waited on us (see nextFacts). */
  waiting: 'us' | 'them' | null; waitingSince: string | null;
}

/** What `list` remembers of one mbox, valid while the file's inode, size and mtime are unchanged. */
interface CacheEntry {
  ino: number; size: number; mtimeMs: number; tail: string; submitter: string; subject: string; messages: number;
  facts: TicketFacts;
  /** Where the last record starts and the facts before it, when its head was cut by the file's end (being written): read again when the file grew. */
  reread?: [start: number, factsBefore: TicketFacts | null];
  /** Its row, once made: shared by later lists while the entry is unchanged, and never saved (JSON has no symbol keys). */
  [ENTRY_ROW]?: TicketRow;
}
/**
 * Where an entry keeps its row. On the entry, not in a WeakMap of entries to rows: 10,000 such
 * pairs were a quarter of a cold stats' garbage collection (each scavenge works through a weak
 * map's young entries).
 */
const ENTRY_ROW = Symbol('row');

/** list's one read buffer for all files: 10,000 allocations of 1 MiB would cost more than the reading. */
let countBuffer: Buffer | undefined;

const RECORD_START = Buffer.from('\nFrom '); // where each record but the first starts, after a line break

/**
 * Where the mbox records (lines starting "From ") in bytes [from, size) start: at 0, and past it
 * at a "From " a line break comes before. The 5 bytes before `from` are
 * read again: the last count may have seen an append cut inside its "\nFrom " (a stat can land
 * between two pages of one write), and found no record there, nor should one be found in a
 * line it saw cut before "From ". When the range starts at 0 and fits in one read (a ticket
 * under 1 MiB: nearly all), also returns its bytes, so that list reads such a ticket once; they
 * are valid until the next call.
 */
function recordStarts(fd: number, from: number, size: number): { starts: number[]; bytes?: Buffer } {
  const needle = RECORD_START;
  const chunk = 1 << 20;
  const buf = countBuffer ??= Buffer.alloc(chunk + needle.length);
  let carry;
  if (from === 0) { buf[0] = LF; carry = 1; } // a record boundary at 0
  else carry = readSync(fd, buf, 0, Math.min(from, needle.length - 1), from - Math.min(from, needle.length - 1));
  const starts: number[] = [];
  let pos = from;
  while (pos < size) {
    const got = readSync(fd, buf, carry, Math.min(chunk, size - pos), pos);
    if (got === 0) break;
    const view = buf.subarray(0, carry + got); // view[0] is the file's byte pos - carry
    for (let i = view.indexOf(needle); i >= 0; i = view.indexOf(needle, i + 1)) starts.push(pos - carry + i + 1);
    pos += got;
    if (from === 0 && got === size) return { starts, bytes: view.subarray(1) }; // the whole file, in one read
    carry = Math.min(needle.length - 1, view.length); // a needle cut by the chunk edge is found next time
    view.copy(buf, 0, view.length - carry);
  }
  return { starts };
}

/**
 * A fingerprint of a file's last 64 bytes: tells an append from a rewrite (mutt's sync). Two
 * 32-bit FNV-1a hashes of different seeds, not SHA-256: nobody forges it (a rewrite that kept
 * the inode and the last 64 bytes and grew the file is read as grown), and SHA-256 in JS was a
 * quarter of a cold list.
 */
function tailPrint(bytes: Buffer): string {
  let a = 0x811c9dc5;
  let b = 0x2f6b1c3d;
  for (let i = Math.max(0, bytes.length - 64); i < bytes.length; i++) {
    a = Math.imul(a ^ bytes[i]!, 0x01000193);
    b = Math.imul(b ^ bytes[i]!, 0x01000193) ^ (b >>> 15);
  }
  return [hex32(a), hex32(b)].join(''); // one string, not a cons of two kept in each entry (see isoTime)
}
/**
 * A 32-bit number as 8 hex digits, by bytes from a table: toString(16) and padStart were a third
 * of tailPrint. The table is made at the first call, not at every start: a delivery needs none,
 * and under Bun, whose start runs it in the interpreter, making it cost ~0.4 ms.
 */
let hexBytes: string[] | undefined;
const hex32 = (n: number) => {
  const hex = hexBytes ??= Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
  return hex[n >>> 24]! + hex[(n >>> 16) & 0xff]! + hex[(n >>> 8) & 0xff]! + hex[n & 0xff]!;
};

/** The 64 bytes of fd before `size` (or all of them, when fewer). */
function tailBefore(fd: number, size: number): Buffer {
  const buf = Buffer.alloc(Math.min(64, size));
  readSync(fd, buf, 0, buf.length, size - buf.length);
  return buf;
}

/**
 * How long after a folder last changed its mtime is trusted to show the next change: a change
 * within the same tick of the file system's clock would leave the mtime as it was (git's "racily
 * clean" entries). The tick is a few ms, or a whole second where a file system keeps seconds
 * only: hence two. It assumes a clock that does not step back, and a local folder (an NFS
 * client caches a folder's attributes for 30 s or more).
 */
const RACY_MS = 2000;

/**
 * What this process knows of a tickets folder's list, for serve's many lists: each place's cache
 * entries and rows (newest activity first) as last read, with the folder's mtime then. Every
 * writer of a ticket (ticket-mail, mutt, Exim, procmail) takes its dotlock N.lock beside it, and
 * a new file or a rename is a change too: so an unchanged folder mtime means unchanged tickets,
 * and only a changed one costs a stat a ticket. (A writer that appends without the lock is seen
 * at the folder's next change.) A list of an unchanged folder costs a copy of its rows: its
 * entries are neither copied nor counted, its rows not sorted again. The rows are shared between
 * calls and never changed.
 */
type Place = 'open' | 'archived';
interface PlaceMemory { ino: number; mtimeMs: number; trusted: boolean; rows: TicketRow[] }
const listMemory = new Map<string, {
  settings: string; // factsSettings of the config the entries were read under
  entries: Record<Place, Record<string, CacheEntry>>; places: Partial<Record<Place, PlaceMemory>>;
  all?: { open: TicketRow[]; archived: TicketRow[]; rows: TicketRow[] }; // the last merge of both places' rows (the feed's list)
}>();

/** Newest activity first, then the higher number. ISO times of one format sort as text; localeCompare would cost more than the rest of a cached list. */
const byActivity = (a: TicketRow, b: TicketRow) => (a.lastActivity < b.lastActivity ? 1 : a.lastActivity > b.lastActivity ? -1 : b.ticket - a.ticket);

/** Two lists in byActivity order, merged in it; of two equal rows (a ticket in both places) the first list's comes first. */
function mergedByActivity(a: TicketRow[], b: TicketRow[]): TicketRow[] {
  const out: TicketRow[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) out.push(j >= b.length || (i < a.length && byActivity(a[i]!, b[j]!) <= 0) ? a[i++]! : b[j++]!);
  return out;
}

/**
 * The tickets, newest activity first. A cache keeps it fast; it is checked against each file, and
 * written back only with `saveCache` (the viewer reads it, never writes into the tickets folder).
 */
export function listTickets(store: Store, which: 'open' | 'closed' | 'all', saveCache = true): TicketRow[] {
  const { memory, lists } = readPlaces(store, which, saveCache);
  // A copy: the caller may sort or cut it, the memory's rows stay as they were read.
  if (lists.length === 1) return lists[0]!.slice();
  const [open, archived] = lists as [TicketRow[], TicketRow[]];
  if (memory.all?.open !== open || memory.all.archived !== archived) memory.all = { open, archived, rows: mergedByActivity(open, archived) };
  return memory.all.rows.slice();
}

/**
 * Every ticket as stats counts it, from the entries list reads (and saves, with `saveCache`),
 * without making their rows: a cold stats made 10,000 rows, each with four ISO times, only to
 * parse the times back (~15% of its CPU time).
 */
export function countedTickets(store: Store, saveCache = true): CountedTicket[] {
  const counted: CountedTicket[] = [];
  readPlaces(store, 'all', saveCache, counted);
  return counted;
}

/**
 * listTickets' and countedTickets' reading: each place's entries, read again where a ticket
 * file changed, and the cache written back when any did (with `saveCache`). Each place's rows,
 * newest activity first, or with `counted` none: each ticket is put in it instead (and the
 * memory's trust of a place's rows is neither used nor given).
 */
function readPlaces(store: Store, which: 'open' | 'closed' | 'all', saveCache: boolean, counted?: CountedTicket[]) {
  const cachePath = join(store.state, 'list-cache.json');
  const settings = factsSettings(store.cfg);
  let memory = listMemory.get(cachePath);
  if (memory?.settings !== settings) {
    const entries: Record<Place, Record<string, CacheEntry>> = { open: {}, archived: {} };
    try {
      // Entries read under other settings, or in an older format (a flat object, entries without
      // facts), are not used: every ticket is read again.
      const saved: { settings: unknown; entries: Record<string, CacheEntry> } = JSON.parse(readFileSync(cachePath, 'utf8'));
      if (saved.settings === settings) {
        for (const [key, entry] of Object.entries(saved.entries)) {
          if (Array.isArray(entry.facts)) entries[key.startsWith('archived/') ? 'archived' : 'open'][key] = entry;
        }
      }
    } catch { /* none yet, or unreadable: rebuild */ }
    listMemory.set(cachePath, memory = { settings, entries, places: {} });
  }
  let changed = false;
  const lists: TicketRow[][] = [];
  for (const [place, state] of [['open', 'open'], ['archived', 'closed']] as const) {
    if (which !== 'all' && which !== state) continue; // its entries kept as they were, for the next list that reads it
    const folder = place === 'open' ? store.cfg.dir : store.archived;
    let folderStat;
    try { folderStat = statSync(folder); } catch (e) { if (code(e) !== 'ENOENT') throw e; }
    const known = memory.places[place];
    if (!counted && known?.trusted && folderStat && known.ino === folderStat.ino && known.mtimeMs === folderStat.mtimeMs) {
      lists.push(known.rows);
      continue;
    }
    const readAt = Date.now();
    let names: string[] = [];
    try { names = readdirSync(folder); } catch (e) { if (code(e) !== 'ENOENT') throw e; }
    const cache = memory.entries[place];
    const fresh: Record<string, CacheEntry> = {};
    const inFolder = store.ticketPath(0, place).slice(0, -1); // ticketPath's folder, normalized once: a join per ticket was 3% of a cold list
    const placeRows: TicketRow[] = [];
    let unreadable = false; // a ticket left out that may be readable next time: the rows are not to be trusted
    for (const name of names) {
      const n = parseTicketNumber(name);
      if (n === undefined) continue;
      const key = relativeTicket(n, place);
      const entry = ticketEntry(inFolder + name, cache[key], store.cfg); // name is String(n): parseTicketNumber takes no other digits
      unreadable ||= entry === null;
      if (!entry) continue;
      fresh[key] = entry;
      changed ||= entry !== cache[key];
      if (counted) counted.push(countedTicket(n, state, entry));
      else placeRows.push(entry[ENTRY_ROW] ??= ticketRow(n, state, entry));
    }
    changed ||= Object.keys(fresh).length !== Object.keys(cache).length; // some ticket gone (or moved)
    memory.entries[place] = fresh;
    if (counted) continue;
    placeRows.sort(byActivity);
    memory.places[place] = folderStat && { ino: folderStat.ino, mtimeMs: folderStat.mtimeMs, trusted: !unreadable && readAt - folderStat.mtimeMs > RACY_MS, rows: placeRows };
    lists.push(placeRows);
  }
  if (saveCache && changed) {
    try { // the cache is a convenience: a folder we may not write just means no cache
      writeFileDurably(`${cachePath}.new`, JSON.stringify({ settings, entries: { ...memory.entries.open, ...memory.entries.archived } }));
      renameSync(`${cachePath}.new`, cachePath);
    } catch { /* see above */ }
  }
  return { memory, lists };
}

/**
 * What list knows of one ticket file: undefined when it is gone (moved meanwhile), null when it
 * is there but could not be read (its mode, an I/O error), which a chmod may mend without any
 * change of the folder.
 */
function ticketEntry(path: string, cached: CacheEntry | undefined, cfg: Config): CacheEntry | undefined | null {
  if (cached) { // one stat, not open, fstat and close: most of a list's tickets are unchanged
    try { if (sameStamp(cached, statSync(path))) return cached; } catch (e) { return missingOrNull(e); }
  }
  let fd;
  // Without blocking: a FIFO named like a ticket would hang the list (and serve with it) for good.
  try { fd = openSync(path, fsc.O_RDONLY | fsc.O_NONBLOCK); } catch (e) { return missingOrNull(e); }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return null; // there, and no ticket: shown by check, never read
    if (cached && sameStamp(cached, st)) return cached;
    // Grown by appends only (the old end unchanged): count just the new part, and read its
    // records and the last one before it again (it may have been read while being written).
    if (cached && cached.ino === st.ino && st.size > cached.size && tailPrint(tailBefore(fd, cached.size)) === cached.tail) {
      const { starts } = recordStarts(fd, cached.size, st.size);
      const [from, before] = cached.reread ?? [undefined, cached.facts];
      const scanned = scanRecords(fd, undefined, from === undefined ? starts : [from, ...starts], st.size, before, cfg, st.mtimeMs);
      return { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, tail: tailPrint(tailBefore(fd, st.size)), submitter: cached.submitter, subject: cached.subject,
        messages: cached.messages + starts.length, facts: scanned.facts ?? cached.facts, reread: scanned.facts ? scanned.reread : cached.reread }; // no record at all yet: as it was
    }
    const { starts, bytes } = recordStarts(fd, 0, st.size);
    const scanned = scanRecords(fd, bytes, starts, st.size, null, cfg, st.mtimeMs);
    const head = scanned.firstHead;
    return {
      ino: st.ino, size: st.size, mtimeMs: st.mtimeMs,
      tail: tailPrint(bytes ?? tailBefore(fd, st.size)),
      // Kept with their controls, for the viewer to show them visibly; list cleans them (runList).
      submitter: shownMailboxes(head && field(head, 'from'), oneLine)[0] ?? '',
      subject: head ? oneLine(decodedSubject(head), 100) : '',
      messages: starts.length,
      facts: scanned.facts ?? noRecordFacts(st.mtimeMs), reread: scanned.reread,
    };
  } finally { closeSync(fd); }
}

/** The entry was read from this very file, unchanged since (its inode, size and mtime). */
const sameStamp = (cached: CacheEntry, st: { ino: number; size: number; mtimeMs: number }) => cached.ino === st.ino && cached.size === st.size && cached.mtimeMs === st.mtimeMs;
/** A ticket file that could not be read: gone (undefined), or there and unreadable (null). */
const missingOrNull = (e: unknown) => (code(e) === 'ENOENT' ? undefined : null);

// ---------------------------------------------------------------------------------------
// The maintainer's toolkit: who is waiting, and the numbers
// ---------------------------------------------------------------------------------------

/**
 * What a ticket's records say of who owes the next message, times in ms. Derived from the mbox
 * alone (nothing is recorded at delivery time), record by record, so that an append is read on
 * from the facts before it. A tuple: the list cache holds two for each of 10,000 tickets.
 */
type TicketFacts = [
  opened: number,              // the first record's time
  answered: number | null,     // our first message after one of the customer's, in a ticket the customer opened
  waitingSince: number | null, // the customer's first message after our last one; null: waiting on them
  last: number,                // the last record's time
  openedByUs: 0 | 1,           // the first message was ours (an admin's, or from one of our addresses)
];

/** The settings the facts depend on: an entry read under others is read again. */
const FACTS_RULES = 3; // 3: a From_ year below 100 as written (17fd27e). the rules' own version: a change of recordSide or fromLineTime reads every ticket again
const factsSettings = (cfg: Config) => JSON.stringify([FACTS_RULES, cfg.domain ?? null, cfg.submit, cfg.ticketAddress, cfg.closeAddress, cfg.admins]);

/** A ticket file holding no record (empty, or bytes before any From_ line): nobody is waiting since its mtime. */
const noRecordFacts = (mtimeMs: number): TicketFacts => [mtimeMs, null, null, mtimeMs, 0];

/** What a From naming an admin or one of our addresses must contain: their domains (without a domain of ours, our local parts). */
const hintsOf = new WeakMap<Config, string[]>();
const ourHints = (cfg: Config) => {
  let hints = hintsOf.get(cfg);
  if (!hints) {
    // The domains as written, not whole addresses: the parser reads "max"@x and max(c)@x as max@x.
    hints = [...new Set([...cfg.admins.map((a) => a.slice(a.lastIndexOf('@') + 1)),
      ...(cfg.domain ? [cfg.domain] : [cfg.submit, cfg.ticketAddress.split('N')[0]!, cfg.closeAddress.split('N')[0]!])])];
    hintsOf.set(cfg, hints);
  }
  return hints;
};

/**
 * Who wrote a record: us (From is an admin's or one of our addresses), automatic mail
 * (whyMachineWritten: a vacation reply, a bounce, a robot's; not a list's marks, which a person's
 * answer through a list carries too) or the customer (anyone else). From is
 * the sender's word: a forged admin's From makes a ticket look answered (this view only).
 */
export function recordSide(head: Head, envelopeSenderOfRecord: string, cfg: Config): 'us' | 'them' | 'automatic' {
  if (whyMachineWritten(head, envelopeSenderOfRecord)) return 'automatic';
  const from = field(head, 'from');
  // The address parser only where an admin's address or our domain is written at all: it is
  // most of the cost of reading a record, and a parsed address's domain is in the field as written.
  const lower = from?.toLowerCase() ?? '';
  const author = ourHints(cfg).some((hint) => lower.includes(hint)) ? addresses(from)[0] : undefined;
  return author !== undefined && (cfg.admins.includes(author) || isOurAddress(author, cfg)) ? 'us' : 'them';
}

/**
 * The facts after one more record. "Waiting on us" starts at the customer's first message after
 * our last one (the first message, whoever's but ours, opens a wait: a monitoring alert too);
 * our message ends it; automatic mail changes nothing (an out-of-office after our answer must
 * not make the ticket wait on us).
 */
export function nextFacts(facts: TicketFacts | null, side: 'us' | 'them' | 'automatic', at: number): TicketFacts {
  if (!facts) return side === 'us' ? [at, null, null, at, 1] : [at, null, at, at, 0];
  const [opened, answered, waitingSince, , openedByUs] = facts;
  if (side === 'us') return [opened, answered ?? (waitingSince !== null && !openedByUs ? at : null), null, at, openedByUs];
  return [opened, answered, side === 'them' ? waitingSince ?? at : waitingSince, at, openedByUs];
}

/**
 * The time of a From_ line: asctime as recordChunks writes it (UTC), or as other programs do
 * (mutt, procmail: "From a@b Tue Dec  1 21:33:24 2026", with or without seconds, a zone name or a
 * numeric zone before or after the year; a numeric zone is honoured, else it is UTC, as mutt reads
 * it: records an older ticket-mail wrote in another zone's local time read off by its offset).
 * Undefined when it holds none (a hand-made file): the caller falls back.
 */
const MONTH_NUMBERS = new Map(MONTHS.flatMap((name, i) => [[name, i], [name.toLowerCase(), i]])); // as written, and in lower case
export function fromLineTime(line: string): number | undefined {
  const m = /^From \S* +(?:[A-Za-z]{3},? +)?([A-Za-z]{3}) +(\d{1,2}) +(\d{1,2}):(\d\d)(?::(\d\d))?(?: +([A-Za-z]{1,5}|[+-]\d{4}))? +(\d{4})(?: +([+-]\d{4}))?\s*$/.exec(line);
  const month = m ? MONTH_NUMBERS.get(m[1]!) ?? MONTH_NUMBERS.get(m[1]!.toLowerCase()) : undefined;
  if (!m || month === undefined) return undefined;
  // Plain numbers, no arrays or closures: 25,000 lines a cold stats (each array was garbage).
  const day = Number(m[2]);
  const hour = Number(m[3]);
  const minute = Number(m[4]);
  const second = Number(m[5] ?? 0);
  if (day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return undefined;
  // Date.UTC reads a year 0-99 as 1900-1999; 400 years later the calendar is the same, to the day.
  const year = Number(m[7]);
  const utc = year < 100 ? Date.UTC(year + 400, month, day, hour, minute, second) - FOUR_CENTURIES : Date.UTC(year, month, day, hour, minute, second);
  const zone = m[6] !== undefined && NUMERIC_ZONE.test(m[6]) ? m[6] : m[8];
  if (zone === undefined) return utc;
  const offset = (zone[0] === '-' ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3))) * 60_000;
  return utc - offset;
}
const NUMERIC_ZONE = /^[+-]\d{4}$/;
const FOUR_CENTURIES = 146_097 * 86_400_000; // days in 400 Gregorian years, in ms

/** How much of a record's start is read for its facts: a head past it is read as cut there. */
const FACTS_HEAD = 16 * 1024;
/** Where a record's start is read when list does not hold the whole file: one buffer for all. */
let factsBuffer: Buffer | undefined;
/** The line our records begin with (recordChunks), before the message. */
const OUR_LINE = Buffer.from(`${OUR_HEADER}: `);
/** Bytes [at, end) begin with prefix: a loop, where Buffer's compare costs more in its checks of the range than in comparing 15 bytes. */
function startsWithAt(bytes: Buffer, at: number, end: number, prefix: Buffer): boolean {
  if (end - at < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[at + i] !== prefix[i]) return false;
  return true;
}
/**
 * The fields list reads of a record's head: the first record's submitter and subject, and all
 * that recordSide and whyMachineWritten look at (a field they read must be named here).
 */
const FACTS_FIELDS: ReadonlySet<string> = new Set(['from', 'subject', 'auto-submitted', 'precedence', 'x-autoreply', 'x-autorespond', LOOP_HEADER.toLowerCase()]);

/**
 * Reads the From_ line and head of each record at `starts` (from `bytes`, the whole file, when
 * list has it, else from fd), carrying `facts` on. A record without a time in its From_ line
 * gets the one before it (the first: the file's mtime). Also the first record's head (for the
 * submitter and subject), and `reread` when the last record's head was cut by the file's end:
 * a record being appended (its facts are final once its head is whole). facts is null when
 * there was no record.
 */
function scanRecords(fd: number, bytes: Buffer | undefined, starts: number[], size: number, facts: TicketFacts | null, cfg: Config, mtimeMs: number) {
  let before: TicketFacts | null = facts;
  let firstHead: Head | undefined;
  let cut = false;
  for (let i = 0; i < starts.length; i++) {
    const start = starts[i]!;
    const end = Math.min(starts[i + 1] ?? size, start + FACTS_HEAD);
    // The record's start is chunk's bytes [from, to): offsets, not a subarray per record.
    let chunk = bytes;
    let from = start;
    let to = end;
    if (!chunk) {
      chunk = factsBuffer ??= Buffer.alloc(FACTS_HEAD);
      from = 0;
      to = readSync(fd, chunk, 0, Math.max(0, end - start), start);
    }
    const lf = chunk.indexOf(LF, from);
    const lineEnd = lf < 0 || lf >= to ? -1 : lf;
    const fromLine = chunk.toString('latin1', from, lineEnd < 0 ? to : lineEnd);
    let message = lineEnd < 0 ? to : lineEnd + 1;
    if (startsWithAt(chunk, message, to, OUR_LINE)) {
      const ours = chunk.indexOf(LF, message);
      message = ours < 0 || ours >= to ? to : ours + 1;
    }
    if (i === starts.length - 1) cut = lineEnd < 0 || (start + to - from === size && headEnd(chunk.subarray(message, to)) === to - message);
    const head = headFields(chunk, message, to, FACTS_FIELDS) ?? new Map<string, string[]>();
    if (i === 0 && start === 0) firstHead = head;
    // Our From_ line holds the sender encoded (recordChunks); MAILER-DAEMON is the null sender.
    const token = /^From +(\S*)/.exec(fromLine)?.[1] ?? '';
    const sender = envelopeSender(/[%\x80-\xff]/.test(token) ? decodeToken(token) : token);
    before = facts;
    facts = nextFacts(facts, recordSide(head, sender, cfg), fromLineTime(fromLine) ?? facts?.[3] ?? mtimeMs);
  }
  return { facts, firstHead, reread: cut ? [starts.at(-1)!, before] as [number, TicketFacts | null] : undefined };
}

/**
 * new Date(ms).toISOString(), the day's part made once per day: a cold list makes four of these
 * for each of 10,000 tickets, and toISOString cost more than reading the facts. Made by one
 * String.fromCharCode of its 24 characters: a flat string (a sum of nine strings is a tree of
 * eight, V8's cons strings, kept until first compared, and a list keeps 40,000 of them), and
 * no array to join (40,000 of them were 9 MB of garbage a cold stats).
 */
const isoDays = new Map<number, number[]>(); // a day's "YYYY-MM-DDT", as character codes
export function isoTime(ms: number): string {
  const whole = Math.trunc(ms); // as Date takes it
  if (!(whole >= 0 && whole < 253402300800000)) return new Date(ms).toISOString(); // years 0000-9999 have 4 digits
  const day = Math.floor(whole / 86400_000);
  let d = isoDays.get(day);
  if (d === undefined) isoDays.set(day, d = [...new Date(day * 86400_000).toISOString().slice(0, 11)].map((c) => c.charCodeAt(0)));
  const t = whole - day * 86400_000;
  const hour = Math.floor(t / 3600_000);
  const minute = Math.floor(t / 60_000) % 60;
  const second = Math.floor(t / 1000) % 60;
  const milli = t % 1000;
  const ZERO = 0x30;
  return String.fromCharCode(d[0]!, d[1]!, d[2]!, d[3]!, d[4]!, d[5]!, d[6]!, d[7]!, d[8]!, d[9]!, d[10]!,
    ZERO + Math.floor(hour / 10), ZERO + (hour % 10), 0x3a, ZERO + Math.floor(minute / 10), ZERO + (minute % 10), 0x3a,
    ZERO + Math.floor(second / 10), ZERO + (second % 10), 0x2e, ZERO + Math.floor(milli / 100), ZERO + (Math.floor(milli / 10) % 10), ZERO + (milli % 10), 0x5a);
}
const isoOrNull = (ms: number | null) => (ms === null ? null : isoTime(ms));

/** A ticket's row, from its entry: closed tickets wait on nobody. */
function ticketRow(ticket: number, state: 'open' | 'closed', entry: CacheEntry): TicketRow {
  const [opened, answered, waitingSince, last] = entry.facts;
  const open = state === 'open';
  return {
    ticket, state, submitter: entry.submitter, subject: entry.subject, messages: entry.messages, lastActivity: isoTime(entry.mtimeMs),
    opened: isoTime(opened), firstAnswer: isoOrNull(answered), lastMessage: isoTime(last),
    waiting: !open ? null : waitingSince !== null ? 'us' : 'them', waitingSince: open ? isoOrNull(waitingSince) : null,
  };
}

/** The open tickets waiting on us, the longest wait first (then the lower number). */
export const waitingOnUs = (rows: TicketRow[]): TicketRow[] => rows.filter((r) => r.waiting === 'us')
  .sort((a, b) => (a.waitingSince! < b.waitingSince! ? -1 : a.waitingSince! > b.waitingSince! ? 1 : a.ticket - b.ticket));

/** A duration as people say it, two units at most: "3d 4h", "5h 12m", "7m", "40s". */
export function shortDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const [d, h, m] = [Math.floor(s / 86400), Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60)];
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m` : `${s}s`;
}

/** Close and reopen times of each ticket, in order, from the audit log; undefined where no log could be read. */
export type CloseEvents = Map<number, Array<{ at: number; closed: boolean }>>;

/**
 * The closes and reopens the audit log holds: .ticket-mail/log and what logrotate kept of it
 * (log.1, log.2.gz ... log.52.gz), each read where readable. Undefined when none is (a team
 * member may not read the log): the numbers then come from the files alone (ticketStats).
 * Each part is a state file (openStateFile: a FIFO there would hang stats, and serve with it),
 * read a MiB at a time; an archive is inflated to at most LOG_PART_INFLATED (a gzip bomb of a
 * few MB is GBs) or not counted at all. Only the lines of a close or reopen are split.
 */
export async function readCloses(store: Store): Promise<CloseEvents | undefined> {
  const names = ['log', 'log.1', ...Array.from({ length: 51 }, (_, i) => `log.${i + 2}.gz`)];
  let zlib: typeof import('node:zlib') | undefined;
  const events: CloseEvents = new Map();
  const take = (line: string) => {
    const fields = line.split('\t');
    const outcome = fields[6];
    if (outcome !== 'closed' && outcome !== 'reopened') return;
    const at = Date.parse(fields[0] ?? '');
    const n = parseTicketNumber(fields[5] ?? '');
    if (Number.isNaN(at) || n === undefined) return;
    const list = events.get(n) ?? [];
    list.push({ at, closed: outcome === 'closed' });
    events.set(n, list);
  };
  let read = false;
  for (const name of names) {
    let fd;
    try { fd = openStateFile(join(store.state, name), fsc.O_RDONLY); } catch { continue; } // rotated away, unreadable, not a plain file
    try {
      if (name.endsWith('.gz')) {
        if (fstatSync(fd).size > LOG_PART_INFLATED) continue;
        closeLines((zlib ??= await import('node:zlib')).gunzipSync(readFileSync(fd), { maxOutputLength: LOG_PART_INFLATED }), take);
      } else {
        const chunk = Buffer.alloc(1 << 20);
        let carry = 0; // the start of a line the last read cut, kept at the buffer's start
        for (let got; (got = readSync(fd, chunk, carry, chunk.length - carry, null)) > 0;) {
          const end = chunk.lastIndexOf(LF, carry + got - 1) + 1;
          if (!end && carry + got < chunk.length) { carry += got; continue; } // a line still being read
          closeLines(chunk.subarray(0, end), take);
          carry = end ? chunk.copy(chunk, 0, end, carry + got) : 0; // a MiB without a line break is no line of ours
        }
        closeLines(chunk.subarray(0, carry), take);
      }
      read = true;
    } catch { /* a corrupt or oversized archive: the others still count */ } finally { closeSync(fd); }
  }
  for (const list of events.values()) list.sort((a, b) => a.at - b.at);
  return read ? events : undefined;
}

/** A rotated part of the log inflated past this is not read: a week of 256 MiB is a million deliveries. */
const LOG_PART_INFLATED = 256 << 20;

/** Passes the lines of `bytes` whose outcome field may be a close or reopen to `take` (the rest are never made strings). */
function closeLines(bytes: Buffer, take: (line: string) => void): void {
  for (const needle of ['\tclosed\t', '\treopened\t']) {
    for (let i = bytes.indexOf(needle); i >= 0;) {
      const start = bytes.lastIndexOf(LF, i) + 1;
      const end = bytes.indexOf(LF, i);
      take(bytes.toString('latin1', start, end < 0 ? bytes.length : end));
      i = end < 0 ? -1 : bytes.indexOf(needle, end);
    }
  }
}

export interface TicketStats {
  now: string; open: number; closed: number;
  closesFrom: 'log' | 'files';
  weeks: Array<{ start: string; opened: number; closed: number; backlog: number }>;
  firstAnswer: { tickets: number; medianSeconds: number | null; p90Seconds: number | null };
  timeToClose: { tickets: number; medianSeconds: number | null; p90Seconds: number | null };
  oldestOpen: Array<{ ticket: number; subject: string; submitter: string; opened: string; ageSeconds: number }>;
  longestWaits: Array<{ ticket: number; subject: string; submitter: string; waitingSince: string; waitedSeconds: number }>;
}

const WEEK = 7 * 86400_000;
export const STATS_WEEKS = 26;
const STATS_TOP = 10;

/** The nearest-rank percentile (no interpolation: every number shown is one ticket's). */
const percentile = (sorted: Float64Array, p: number) => (sorted.length ? sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]! : null);
const spread = (durations: number[]) => {
  const sorted = Float64Array.from(durations, (ms) => Math.round(ms / 1000)).sort(); // by number, without a comparison called 60,000 times
  return { tickets: sorted.length, medianSeconds: percentile(sorted, 50), p90Seconds: percentile(sorted, 90) };
};

/**
 * The numbers of the queue at `now`, over UTC weeks starting on Monday, the last one holding now.
 * A ticket's closes and reopens are the log's; a closed ticket the log has no close for (the log
 * rotated away or unreadable: `closes` undefined) was closed at its last message (a close is
 * filed as the ticket's last message, nearly always). Time to first answer and to close are over
 * the tickets opened in these weeks: answered (ours after the customer's, in a ticket the
 * customer opened), and closed now (its last close).
 */
export function ticketStats(rows: TicketRow[], closes: CloseEvents | undefined, now: number): TicketStats {
  return statsOf(rows.map((r) => ({ ticket: r.ticket, state: r.state, submitter: r.submitter, subject: r.subject, opened: Date.parse(r.opened),
    answered: r.firstAnswer === null ? null : Date.parse(r.firstAnswer), waitingSince: r.waitingSince === null ? null : Date.parse(r.waitingSince), last: Date.parse(r.lastMessage) })), closes, now);
}

/**
 * A ticket as stats counts it: its row's times in ms, whole as in its ISO times; waitingSince
 * null unless it is open and waits on us (as its row's).
 */
export interface CountedTicket {
  ticket: number; state: 'open' | 'closed'; submitter: string; subject: string;
  opened: number; answered: number | null; waitingSince: number | null; last: number;
}
/** What ticketRow and ticketStats' parse of it make of an entry: isoTime keeps whole ms. */
function countedTicket(ticket: number, state: 'open' | 'closed', entry: CacheEntry): CountedTicket {
  const [opened, answered, waitingSince, last] = entry.facts;
  const whole = (ms: number | null) => (ms === null ? null : Math.trunc(ms));
  return { ticket, state, submitter: entry.submitter, subject: entry.subject, opened: Math.trunc(opened), answered: whole(answered),
    waitingSince: state === 'open' ? whole(waitingSince) : null, last: Math.trunc(last) };
}

/** ticketStats of counted tickets (countedTickets: the CLI's stats, which makes no rows). */
export function statsOf(tickets: CountedTicket[], closes: CloseEvents | undefined, now: number): TicketStats {
  const monday = (() => { const d = new Date(now); d.setUTCHours(0, 0, 0, 0); return d.getTime() - ((d.getUTCDay() + 6) % 7) * 86400_000; })();
  const first = monday - (STATS_WEEKS - 1) * WEEK;
  // Week i ends at first + (i + 1) weeks, the last at now (inclusive). A ticket counts in the
  // backlog of each week whose end falls in one of its open spans (opened or reopened, closed):
  // summed over the spans with a difference array, not week by week.
  const weekOf = (t: number) => (t < first || t > now ? -1 : Math.min(STATS_WEEKS - 1, Math.floor((t - first) / WEEK)));
  const firstEndAfter = (t: number) => (t > now ? STATS_WEEKS : Math.max(0, Math.min(STATS_WEEKS - 1, Math.floor((t - first) / WEEK)))); // the first week whose end is past t
  const opened = new Array<number>(STATS_WEEKS).fill(0);
  const closed = new Array<number>(STATS_WEEKS).fill(0);
  const backlogSteps = new Array<number>(STATS_WEEKS + 1).fill(0);
  let openFrom: number | undefined;
  const span = (until: number) => { // open over [openFrom, until]: the weeks whose end e has openFrom < e <= until
    backlogSteps[firstEndAfter(openFrom!)]!++;
    backlogSteps[firstEndAfter(until)]!--;
    openFrom = undefined;
  };
  const none: Array<{ at: number; closed: boolean }> = [];
  const firstAnswers: number[] = [];
  const closeTimes: number[] = [];
  // One pass, without an object, array or closure a ticket.
  for (const r of tickets) {
    const at = r.opened;
    const logged = closes?.get(r.ticket) ?? none;
    const lastClosed = logged.at(-1)?.closed ?? false;
    // The files have the last word on the state now: a close or reopen the log lacks is put at the last message.
    const events = (r.state === 'closed') === lastClosed ? logged
      : [...logged, { at: Math.max(r.last, logged.at(-1)?.at ?? -Infinity), closed: !lastClosed }];
    if (weekOf(at) >= 0) opened[weekOf(at)]!++;
    openFrom = at;
    for (const e of events) { // a close of a closed ticket is none: a log line read twice (a rotation between two reads), say
      if (e.closed && openFrom !== undefined) {
        span(e.at);
        if (weekOf(e.at) >= 0) closed[weekOf(e.at)]!++;
      } else if (!e.closed && openFrom === undefined) openFrom = e.at;
    }
    if (openFrom !== undefined) span(Infinity);
    if (!(at >= first && at <= now)) continue; // the rest counts the tickets opened in these weeks
    if (r.answered !== null) firstAnswers.push(r.answered - at);
    if (r.state === 'closed') closeTimes.push(events.at(-1)!.at - at);
  }
  let backlog = 0;
  const weeks = opened.map((count, i) => ({
    start: new Date(first + i * WEEK).toISOString().slice(0, 10), opened: count, closed: closed[i]!, backlog: backlog += backlogSteps[i]!,
  }));
  const open = tickets.filter((r) => r.state === 'open');
  return {
    now: new Date(now).toISOString(), open: open.length, closed: tickets.length - open.length, closesFrom: closes ? 'log' : 'files', weeks,
    firstAnswer: spread(firstAnswers), timeToClose: spread(closeTimes),
    oldestOpen: firstInOrder(open, STATS_TOP, (a, b) => a.opened - b.opened || a.ticket - b.ticket)
      .map((r) => ({ ticket: r.ticket, subject: r.subject, submitter: r.submitter, opened: isoTime(r.opened), ageSeconds: Math.round((now - r.opened) / 1000) })),
    longestWaits: firstInOrder(tickets.filter((r) => r.waitingSince !== null), STATS_TOP, (a, b) => a.waitingSince! - b.waitingSince! || a.ticket - b.ticket)
      .map((r) => ({ ticket: r.ticket, subject: r.subject, submitter: r.submitter, waitingSince: isoTime(r.waitingSince!), waitedSeconds: Math.round((now - r.waitingSince!) / 1000) })),
  };
}

/**
 * items.slice().sort(order).slice(0, n), without sorting them all (stats' top 10 of 10,000
 * tickets: a sort of them all was 80,000 calls of its comparison). Stable, as sort is.
 */
export function firstInOrder<T>(items: T[], n: number, order: (a: T, b: T) => number): T[] {
  const kept: T[] = [];
  if (n < 1) return kept;
  for (const item of items) {
    if (kept.length === n && order(item, kept[n - 1]!) >= 0) continue;
    let i = kept.length;
    while (i > 0 && order(item, kept[i - 1]!) < 0) i--;
    kept.splice(i, 0, item);
    if (kept.length > n) kept.pop();
  }
  return kept;
}

/** A row of bars for the terminal, one per value, scaled to the largest (▁ for 0). */
export function sparkline(values: number[]): string {
  const max = Math.max(0, ...values);
  return values.map((v) => '▁▂▃▄▅▆▇█'[max ? Math.round((v / max) * 7) : 0]).join('');
}

/** Where each record of an mbox starts: at `from` (0, or a record's start) and after every LF followed by "From ", in bytes [from, size). */
export function mboxStarts(fd: number, size: number, from = 0): number[] {
  const first = Buffer.alloc(Math.max(0, Math.min(5, size - from)));
  readSync(fd, first, 0, first.length, from);
  // Bytes before the first "From " line (a file another program wrote oddly) are no record.
  const starts = first.equals(FROM_) ? [from] : [-1];
  for (const { bytes, pos } of fileRange(fd, from, size, 6)) {
    for (let i = bytes.indexOf('\nFrom '); i >= 0; i = bytes.indexOf('\nFrom ', i + 1)) {
      if (pos + i + 1 > starts.at(-1)!) starts.push(pos + i + 1);
    }
  }
  return starts[0] === -1 ? starts.slice(1) : starts;
}

/**
 * The record in bytes [start, end) of an mbox we wrote, in bounded memory: a Message whose first
 * MiB (to a line's end) is un-quoted in memory and whose rest is read from the file and un-quoted
 * as it is read: its chunks are the bytes that came in. Undefined for what is no record. The
 * blank line that ends a record is the mbox's, not the message's; a last record another program
 * wrote without one loses nothing. Valid while the fd is open.
 */
export function mboxRecordAt(fd: number, start: number, end: number): { note: string; message: Message } | undefined {
  const head = Buffer.alloc(Math.min(end - start, Message.IN_MEMORY + 4096));
  readSync(fd, head, 0, head.length, start);
  if (!head.subarray(0, 5).equals(FROM_)) return undefined;
  const afterFromLine = head.indexOf(LF) + 1;
  const ours = head.subarray(afterFromLine, afterFromLine + OUR_HEADER.length + 2).toString('latin1') === `${OUR_HEADER}: `;
  const noteEnd = ours ? head.indexOf(LF, afterFromLine) + 1 : afterFromLine;
  if (afterFromLine === 0 || noteEnd === 0) return undefined;
  const note = head.toString('latin1', afterFromLine + OUR_HEADER.length + 2, noteEnd - 1);
  const ending = Buffer.alloc(2);
  readSync(fd, ending, 0, 2, Math.max(start, end - 2));
  const separator = ending[0] === LF && ending[1] === LF ? 1 : 0;
  const bodyEnd = end - separator - (separator && note.endsWith('; no-final-newline') ? 1 : 0);
  const bodyStart = start + noteEnd;
  const inMemory = Math.min(bodyEnd - bodyStart, Message.IN_MEMORY);
  let cut = inMemory; // to a line's end, so that un-quoting sees whole lines
  if (bodyStart + inMemory < bodyEnd) cut = head.lastIndexOf(LF, noteEnd + inMemory - 1) + 1 - noteEnd || inMemory;
  // Un-quoting touches only lines ">From ", ">>From "...: a record without one (nearly all, and
  // every base64 body) is taken as it is, not run through a regular expression a MiB long.
  const stored = head.subarray(noteEnd, noteEnd + cut);
  const first = stored.includes('>From ') ? Buffer.from(stored.toString('latin1').replace(/(?<=^|\n)>(>*From )/g, '$1'), 'latin1') : stored;
  const rest = bodyEnd - bodyStart - cut;
  const last = Buffer.alloc(1);
  if (rest > 0) readSync(fd, last, 0, 1, bodyEnd - 1);
  const quoted = head[noteEnd + cut - 1] === LF ? 'line-start' : 'mid-line'; // where the rest begins
  return { note: note.replace(/; no-final-newline$/, ''), message: new Message(first, rest > 0 ? { fd, start: bodyStart + cut, size: rest, last: last[0]!, quoted } : undefined) };
}

/** The messages of an mbox we wrote, one at a time (mboxRecordAt); each is valid until the next is taken. */
export function* mboxMessages(fd: number): Generator<{ note: string; message: Message }> {
  const size = fstatSync(fd).size;
  const starts = mboxStarts(fd, size);
  for (const [i, start] of starts.entries()) {
    const record = mboxRecordAt(fd, start, starts[i + 1] ?? size);
    if (record) yield record;
  }
}

/** One ticket's thread at a glance, for `show`. */
export async function showTicket(store: Store, n: number) {
  const place = store.placeOf(n);
  if (!place) throw new Error(`ticket ${n} does not exist`);
  const path = store.ticketPath(n, place);
  const messages = [];
  const fd = openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  try {
    for (const { message } of mboxMessages(fd)) {
      const head = parseHead(message.first.subarray(0, headEnd(message.first)).toString('utf8'));
      const summary = await summarize(message);
      messages.push({
        date: head && field(head, 'date') || '',
        from: shownMailbox(head && field(head, 'from')),
        subject: head ? headerSafe(decodedSubject(head), 100) : '',
        text: summary.text.split('\n').map((l) => l.trim()).filter(Boolean).slice(0, 3),
        attachments: summary.attachments.map((a) => a.name),
      });
    }
  } finally { closeSync(fd); }
  return { ticket: n, state: place === 'open' ? 'open' : 'closed', path, messages };
}

/**
 * What delivering this message would do, for `route`: reads, never writes. It decides as
 * fileUnmatched, createTicket and fileIntoTicket do, in their order: a retry is a duplicate
 * (answered by nobody), and with --unknown bounce mail for a missing ticket is bounced (67).
 */
export function dryRoute(store: Store, incoming: Incoming) {
  const index = new MessageIndex(store.state);
  const routed = routeIncoming(store, index, incoming);
  let outcome: Outcome | 'bounced';
  let ticket: number | undefined;
  let missing: number | undefined;
  const unmatched = () => (inUnmatched(store, index, incoming) ? 'duplicate' : 'unmatched');
  if (routed.action === 'unmatched') outcome = unmatched();
  else if (routed.action === 'create') {
    const [already] = copiesOf(store, index, incoming).same;
    outcome = already === undefined ? 'created' : 'duplicate';
    ticket = already ?? lastNumberPreview(store);
  } else {
    ticket = routed.ticket;
    const place = store.placeOf(ticket);
    const copies = place && copiesOf(store, index, incoming);
    const mayClose = () => routed.action === 'close' && place === 'open' && closeAllowed(store, routed.ticket, incoming);
    if (!copies) { missing = ticket; ticket = undefined; outcome = store.cfg.unknown === 'bounce' ? 'bounced' : unmatched(); }
    else if (!copies.same.includes(ticket) && copies.opened.length) { outcome = 'duplicate'; ticket = copies.opened[0]; }
    else if (copies.same.includes(ticket)) outcome = mayClose() ? 'closed' : 'duplicate'; // a retried close finishes its move
    else outcome = ticketOutcome(routed.action, place, staysClosed(incoming.head, incoming.envelope, store.cfg), mayClose());
  }
  const domain = replyDomain(store.cfg, incoming);
  // What delivery would send and hold back, the reply limit included (read, never counted).
  const held: Held[] = [];
  const now = new Date();
  const drafts = !domain || outcome === 'bounced' ? [] : draftReplies(store, incoming, { outcome, ticket, missing }, domain, now, undefined, undefined, held);
  const limited = (d: Draft) => d.autoSubmitted === 'auto-replied' && recentReplies(replyCounter(store, d.to), now).length >= store.cfg.replyLimit;
  for (const d of drafts.filter(limited)) held.push({ kind: d.kind, to: d.to, why: replyLimitReached(store.cfg) });
  const replies = drafts.filter((d) => !limited(d)).map((d) => ({ kind: d.kind, to: d.to }));
  const block = autoReplyBlock(incoming.head, incoming.envelope, replyAddress(incoming.head, incoming.envelope), store.cfg);
  return { recipient: incoming.envelope.recipient ?? null, source: incoming.envelope.source, sender: incoming.envelope.sender,
    route: routed, outcome, ticket: ticket ?? null, ...(missing ? { missing } : {}), replies, held, noAutoReplyBecause: block ?? null };
}

/** The number a new ticket would get now (the real one is taken under the numbers lock). */
function lastNumberPreview(store: Store): number {
  let n = (existsSync(store.state) ? lastNumber(store) : 0) + 1;
  while (store.placeOf(n)) n++;
  return n;
}

/** A problem `check` found, or a line saying what is fine. */
export interface Finding { ok: boolean; text: string }

/** Checks a setup: folders, permissions, sendmail, domain and admins, state, locks. */
export function checkSetup(store: Store, mtaFiles: string[] = MTA_FILES, inst?: Installation): Finding[] {
  const { cfg } = store;
  const found: Finding[] = [];
  const say = (ok: boolean, text: string) => found.push({ ok, text });
  const top = statSync(cfg.dir, { throwIfNoEntry: false });
  // A team: maintainers other than the folder's owner read the tickets through the owner's group.
  const team = top ? cfg.maintainers.filter((m) => m !== userName(top.uid)) : [];
  const teamGid = top && Number(dbEntry('/etc/passwd', 2, String(top.uid))?.[3] ?? top.gid);
  const teamGroup = teamGid === undefined ? '' : dbEntry('/etc/group', 2, String(teamGid))?.[0] ?? String(teamGid);
  const folder = (path: string, what: string) => {
    let st;
    try { st = statSync(path); } catch {
      const parentExists = existsSync(join(path, '..'));
      say(path !== cfg.dir && parentExists, parentExists ? `${what} ${path} does not exist yet (created on first delivery)` :
        `${what} ${path} cannot be created: its parent does not exist (mkdir -p -m 700 ${path})`);
      return;
    }
    if (!st.isDirectory()) return say(false, `${what} ${path} is not a folder`);
    const writable = (() => { try { accessSync(path, fsc.W_OK | fsc.X_OK); return true; } catch { return false; } })();
    say(writable, writable ? `${what} ${path} is writable` : `${what} ${path} is not writable by this user`);
    // Group search permission alone (710) is fine: it lets the MTA check ticket numbers at SMTP time.
    // A team reads the tickets (750), never the state folder.
    // A team reads the tickets (2750; 2751 where Exim searches them as anyone), never the state folder.
    const groupReads = team.length > 0 && path !== store.state;
    if (st.mode & (groupReads ? 0o026 : 0o067)) {
      say(false, `${what} ${path} is readable by others (mode ${(st.mode & 0o777).toString(8)}): chmod ${groupReads ? 'g-w,o-rw' : 'g-rw,o-rwx'} ${path}`);
    }
    if (groupReads && (st.gid !== teamGid || (st.mode & 0o050) !== 0o050)) {
      say(false, `${what} ${path} does not let the maintainers (group ${teamGroup}, the tickets user's) read it: chgrp ${teamGroup} ${path} && chmod g+rx ${path}`);
    }
  };
  if (!existsSync(cfg.dir)) folder(cfg.dir, 'tickets folder');
  else {
    folder(cfg.dir, 'tickets folder');
    folder(store.archived, 'archived folder');
    folder(store.state, 'state folder');
  }
  let loose = 0;
  let unread = 0;
  for (const row of existsSync(cfg.dir) ? listTicketPaths(store) : []) {
    const st = lstatSync(row.path, { throwIfNoEntry: false });
    if (!st || st.isSymbolicLink()) continue; // a link is checkLinks' finding: chmod would follow it
    if (st.mode & (team.length ? 0o037 : 0o077)) { loose++; if (loose <= 5) say(false, `${row.path} is readable by others: chmod ${team.length ? 640 : 600} ${row.path}`); }
    if (team.length && (!(st.mode & 0o040) || st.gid !== teamGid)) {
      unread++;
      if (unread <= 5) say(false, `${row.path} is not readable by the maintainers' group: chgrp ${teamGroup} ${row.path} && chmod 640 ${row.path}`);
    }
    if (row.place === 'open' && existsSync(store.ticketPath(row.n, 'archived'))) say(false, `ticket ${row.n} exists both open and archived`);
  }
  try { accessSync(cfg.sendmail, fsc.X_OK); say(true, `sendmail ${cfg.sendmail} is executable`); } catch {
    say(false, `sendmail ${cfg.sendmail} is missing or not executable: replies wait in the outbox (set --sendmail)`);
  }
  say(!!cfg.domain, cfg.domain ? `domain ${cfg.domain}` : 'no --domain set: replies take the domain the mail came to, and header fallback accepts any domain');
  say(cfg.admins.length > 0, cfg.admins.length ? `admins ${cfg.admins.join(', ')}` : 'no --admin set: nobody is notified of new tickets, and only submitters may close');
  const stateReadable = (() => { try { accessSync(store.state, fsc.R_OK | fsc.X_OK); return true; } catch { return false; } })();
  if (existsSync(store.state) && !stateReadable) {
    // A team's maintainer: the state folder is the tickets user's alone.
    say(false, `cannot read the state folder ${store.state} as uid ${process.getuid?.()}: run check as its owner (${top ? userName(top.uid) : 'the tickets user'}) or as root`);
  } else if (existsSync(store.state)) {
    const counter = join(store.state, 'last-ticket');
    if (existsSync(counter)) {
      const last = parseTicketNumber((() => { try { return readFileSync(counter, 'latin1').trim(); } catch { return ''; } })());
      const highest = Math.max(0, ...listTicketPaths(store).map((r) => r.n));
      say(last !== undefined && last >= highest, last === undefined ? `${counter} is damaged: delete it (it is rebuilt from the tickets)`
        : last >= highest ? `ticket counter at ${last}` : `${counter} says ${last} but ticket ${highest} exists: delete it (it is rebuilt)`);
    }
    for (const name of (() => { try { return readdirSync(store.state); } catch { return []; } })()) {
      if (/^new-\d+$/.test(name)) say(false, `leftover ${join(store.state, name)} from an interrupted delivery: remove it`);
      if (name.startsWith(ASIDE)) say(false, `${join(store.state, name)} was the outbox, but not a regular file (moved aside, its mail kept in a new outbox): look at it, then remove it`);
    }
    const outbox = join(cfg.dir, OUTBOX);
    const box = lstatSync(outbox, { throwIfNoEntry: false });
    if (box && !box.isFile()) say(false, `${outbox} is not a regular file: the next delivery or flush moves it aside`);
    else {
      const waiting = box ? (() => { try { return readMbox(readFileSync(outbox)).length; } catch { return NaN; } })() : 0;
      say(waiting === 0, Number.isNaN(waiting) ? `cannot read ${outbox}` : waiting ? `${waiting} message(s) wait in the outbox: run ticket-mail flush` : 'outbox empty');
    }
  }
  for (const folderPath of [cfg.dir, store.archived, store.state]) {
    let names: string[] = [];
    try { names = readdirSync(folderPath); } catch { continue; }
    const host = hostname();
    for (const name of names) { // lock files a killed delivery left beside a lock (see takeLock)
      const m = /\.lock(\.break)?\.(.+)\.(\d+)\.[0-9a-z]+$/.exec(name);
      if (m && m[2] === host && processGone(Number(m[3]))) say(false, `leftover ${join(folderPath, name)} of a killed delivery: remove it`);
    }
    for (const name of names.filter((n) => n.endsWith('.lock'))) {
      const path = join(folderPath, name);
      try {
        if (isStale(readFileSync(path, 'latin1'), statSync(path).mtimeMs, cfg)) say(false, `stale lock ${path}: its holder is gone (whoever takes it next repairs the step it names first)`);
      } catch { /* released meanwhile */ }
    }
  }
  if (team.length && teamGid !== undefined) found.push(...safely('the team', () => checkTeam(store, team, teamGid, teamGroup)));
  return [...found, ...safely(store.cfg.dir, () => checkOwnership(store)), ...safely(store.cfg.dir, () => checkLinks(store)),
    ...safely('the MTA side', () => checkMtaSide(store, mtaFiles, inst))];
}

/** A check that cannot finish is a finding too: check never dies on what it reads. */
function safely(what: string, check: () => Finding[]): Finding[] {
  try { return check(); } catch (e) {
    const { path } = e as NodeJS.ErrnoException;
    return [{ ok: false, text: `cannot check ${what}: ${reason(e)}${path ? ` (${path})` : ''}` }];
  }
}

/**
 * No symbolic link anywhere in the tickets tree: deliveries never follow one (a ticket that is a
 * link defers its mail for ever, ELOOP; an archived/ on another filesystem cannot take a closed
 * ticket, EXDEV), and a chmod or chown advised for one would act on what it names.
 */
function checkLinks(store: Store): Finding[] {
  const links: string[] = [];
  let seen = 0;
  const walk = (path: string) => {
    let names: string[] = [];
    try { names = readdirSync(path); } catch { return; } // checkOwnership says so
    for (const name of names) {
      if (++seen > 200_000) return; // the same bound as checkOwnership's
      const child = join(path, name);
      const st = lstatSync(child, { throwIfNoEntry: false });
      if (st?.isSymbolicLink()) links.push(child);
      else if (st?.isDirectory()) walk(child);
    }
  };
  if (lstatSync(store.cfg.dir, { throwIfNoEntry: false })) walk(store.cfg.dir);
  if (!links.length) return [{ ok: true, text: `no symbolic links in ${store.cfg.dir}` }];
  const named = (link: string) => { try { return `${link} -> ${readlinkSync(link)}`; } catch { return link; } };
  return [{ ok: false, text: `${links.length} symbolic link(s) in ${store.cfg.dir}, e.g. ${links.slice(0, 3).map(named).join(', ')}: ` +
    'ticket-mail never follows one, and mail for it defers for ever; put the file or folder itself there (mv), never chmod or chown through the link' }];
}

/**
 * A team reads the tickets: each maintainer is a user in the tickets user's group, every folder
 * above the tickets lets them through, and unmatched mail is theirs to read too.
 */
function checkTeam(store: Store, team: string[], gid: number, name: string): Finding[] {
  const members = (dbEntry('/etc/group', 2, String(gid))?.[3] ?? '').split(',');
  const found: Finding[] = team.map((login) => {
    const user = dbEntry('/etc/passwd', 0, login);
    if (!user) return { ok: false, text: `maintainer ${login} is no user here (getent passwd ${login})` };
    const member = Number(user[3]) === gid || members.includes(login);
    return member ? { ok: true, text: `maintainer ${login} reads the tickets (group ${name})` }
      : { ok: false, text: `maintainer ${login} is not in the tickets user's group ${name}: usermod -aG ${name} ${login}` };
  });
  for (let above = join(realpathSync(store.cfg.dir), '..'); ; above = join(above, '..')) {
    const st = statSync(above);
    if (!(st.mode & 0o001) && !(st.gid === gid && st.mode & 0o010)) {
      found.push({ ok: false, text: `the maintainers cannot reach ${store.cfg.dir}: ${above} does not let them through (chmod o+x ${above})` });
    }
    if (above === '/') break;
  }
  const unmatched = statSync(join(store.cfg.dir, 'unmatched'), { throwIfNoEntry: false });
  if (unmatched && (!(unmatched.mode & 0o040) || unmatched.gid !== gid)) {
    found.push({ ok: false, text: `${join(store.cfg.dir, 'unmatched')} is not readable by the maintainers' group: chgrp ${name} ${join(store.cfg.dir, 'unmatched')} && chmod 640 ${join(store.cfg.dir, 'unmatched')}` });
  }
  return found;
}

/** Where an MTA's configuration that may run us lives (Debian's Exim and Postfix). */
const MTA_FILES = ['/etc/exim4', '/var/lib/exim4/config.autogenerated', '/etc/postfix/master.cf', '/etc/aliases'];

/**
 * Everything in the tree must be the folder owner's, readable and writable by it: a file root
 * made (a maintainer's command run as root) defers that owner's deliveries for ever.
 */
function checkOwnership(store: Store): Finding[] {
  const top = statSync(store.cfg.dir, { throwIfNoEntry: false });
  if (!top) return [];
  const wrong: string[] = [];
  let seen = 0;
  const walk = (path: string, depth: number) => {
    let names: string[] = [];
    try { names = readdirSync(path); } catch { wrong.push(`${path} (cannot be listed)`); return; }
    for (const name of names) {
      if (++seen > 200_000) return; // a bound: the index of a very large installation is not walked whole
      const child = join(path, name);
      const st = lstatSync(child, { throwIfNoEntry: false });
      if (!st || st.isSymbolicLink()) continue;
      const needs = st.isDirectory() ? 0o700 : 0o600;
      if (st.uid !== top.uid || (st.mode & needs) !== needs) wrong.push(child);
      // The index and the other state are ours alone; a ticket folder's other files are the tickets.
      if (st.isDirectory() && (depth < 1 || path.startsWith(store.state))) walk(child, depth + 1);
    }
  };
  walk(store.cfg.dir, 0);
  if (!wrong.length) return [{ ok: true, text: `every file in ${store.cfg.dir} is its owner's (uid ${top.uid}), readable and writable` }];
  const owner = userName(top.uid);
  return [{ ok: false, text: `${wrong.length} file(s) that ${owner}, the owner of ${store.cfg.dir}, cannot read or write or does not own, e.g. ` +
    `${wrong.slice(0, 3).join(', ')}: chown -R ${owner}: ${store.cfg.dir} && chmod -R u+rwX ${store.cfg.dir}` }];
}

/** A user's name by uid, from /etc/passwd (check runs without spawning getent). */
const userName = (uid: number): string => dbEntry('/etc/passwd', 2, String(uid))?.[0] ?? String(uid);

/** The fields of the line of /etc/passwd or /etc/group whose field `at` is `value` (check runs without spawning getent). */
function dbEntry(path: string, at: number, value: string): string[] | undefined {
  try {
    return readFileSync(path, 'utf8').split('\n').map((l) => l.split(':')).find((f) => f[at] === value);
  } catch { return undefined; }
}

/**
 * What the MTA side we can see says of us: the programs its commands name exist (a launcher's
 * node and program too), and an Exim router that checks ticket numbers at SMTP time can search
 * both folders as Exim's user (without it every ticket-N@, or every closed ticket, gets 550).
 */
function checkMtaSide(store: Store, files: string[], inst?: Installation): Finding[] {
  const found: Finding[] = [];
  const texts: Array<[string, string]> = [];
  const collect = (path: string, depth = 0) => {
    const st = (() => { try { return statSync(path, { throwIfNoEntry: false }); } catch { return undefined; } })();
    if (st?.isDirectory() && depth < 3) {
      try { for (const name of readdirSync(path)) collect(join(path, name), depth + 1); } catch { /* unreadable: not ours to judge */ }
    } else if (st?.isFile() && st.size < 4 << 20) {
      try { texts.push([path, readFileSync(path, 'utf8')]); } catch { /* see above */ }
    }
  };
  for (const file of files) collect(file);
  const ours = (command: string, line: string) => /ticket-mail/.test(line) || command === inst?.launcher;
  const commands = new Set<string>();
  for (const [, text] of texts) {
    // Exim's "command = ...", Postfix's "argv=...", an alias's "|..." that run ticket-mail.
    for (const m of text.matchAll(/(?:^\s*command\s*=\s*|\bargv=|"\|\s*)(\/[^\s"]+)/gm)) {
      const line = text.slice(m.index, text.indexOf('\n', m.index));
      if (ours(m[1]!, line)) commands.add(m[1]!);
    }
  }
  for (const command of commands) {
    const runs = (path: string) => { try { accessSync(path, fsc.X_OK); return statSync(path).isFile(); } catch { return false; } };
    if (!runs(command)) { found.push({ ok: false, text: `the MTA runs ${command}, which is missing or not executable: mail for tickets is deferred (ticket-mail setup writes it)` }); continue; }
    const script = (() => { try { return readFileSync(command, 'utf8').slice(0, 4096); } catch { return ''; } })();
    const named = [...script.matchAll(/^(node|program)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!.replace(/^'(.*)'$/, '$1')] as const);
    const missing = named.map(([what, path]) => [what, path, unusable(path, what === 'node' ? fsc.X_OK : fsc.R_OK)] as const).filter(([, , why]) => why);
    found.push(missing.length
      ? { ok: false, text: `the MTA's launcher ${command} names ${missing.map(([what, path, why]) => `${what} ${path}, which ${why}`).join(', and ')}: mail for tickets is deferred; ` +
        (missing.every(([, , why]) => why === 'does not exist') ? 'run ticket-mail setup again' : 'put ticket-mail where the pipe\'s user can read it, then run ticket-mail setup again') }
      : { ok: true, text: `the MTA runs ${command}${named.length ? ` (${named.map(([, p]) => p).join(' ')})` : ''}` });
  }
  // An Exim router whose condition looks for our tickets runs at SMTP time as Exim's user.
  const checksNumbers = texts.some(([, text]) => text.includes(`exists{${store.cfg.dir}/`));
  if (checksNumbers) {
    const exim = dbEntry('/etc/passwd', 0, 'Debian-exim') ?? dbEntry('/etc/passwd', 0, 'exim');
    // Exim's user is in the folder's group (its own, the default setup), or searches as anyone (a team's).
    const inGroup = (gid: number) => exim !== undefined &&
      (Number(exim[3]) === gid || (dbEntry('/etc/group', 2, String(gid))?.[3] ?? '').split(',').includes(exim[0]!));
    for (const path of [store.cfg.dir, store.archived]) {
      const st = statSync(path, { throwIfNoEntry: false });
      if (!st) continue;
      const searchable = (st.mode & 0o001) !== 0 || (inGroup(st.gid) && (st.mode & 0o010) !== 0);
      found.push(searchable ? { ok: true, text: `Exim can look up ticket numbers in ${path}` }
        : { ok: false, text: `Exim checks ticket numbers at SMTP time but cannot search ${path}: every such address gets 550; ` +
          // A team's folder (group read) keeps its group and lets Exim search as anyone, as setup makes it.
          ((st.mode & 0o040) ? `chmod o+x ${path}` : `chgrp ${exim?.[0] ?? 'Debian-exim'} ${path} && chmod 2710 ${path}`) });
    }
  }
  return [...found, ...checkEximLookups(store, texts), ...checkAliasMaps(texts, ours, inst), ...(inst ? checkInstallation(inst, texts, commands, ours) : [])];
}

/**
 * Why the user check runs as (the tickets folder's owner, as the pipe) cannot use a path a
 * launcher names, if it cannot. Never throws: a program under /root is a finding, not a crash.
 */
function unusable(path: string, mode: number): string | undefined {
  try { accessSync(path, mode); return undefined; } catch (e) {
    if (code(e) === 'ENOENT' || code(e) === 'ENOTDIR') return 'does not exist';
    const uid = process.getuid?.() ?? -1;
    const who = userName(uid);
    return `${who} (uid ${uid}, as whom check runs) cannot ${mode === fsc.X_OK ? 'run' : 'read'} (${reason(e)})`;
  }
}

/** Exim's user: its uid and every group it is in (from /etc/passwd and /etc/group). */
function eximAccount(): { name: string; uid: number; gids: Set<number> } | undefined {
  const passwd = readFileSync('/etc/passwd', 'utf8').split('\n').map((l) => l.split(':'));
  const user = passwd.find((p) => p[0] === 'Debian-exim') ?? passwd.find((p) => p[0] === 'exim');
  if (!user) return undefined;
  const gids = new Set([Number(user[3])]);
  for (const g of readFileSync('/etc/group', 'utf8').split('\n').map((l) => l.split(':'))) {
    if (g[3]?.split(',').includes(user[0]!)) gids.add(Number(g[2]));
  }
  return { name: user[0]!, uid: Number(user[2]), gids };
}

/**
 * Exim's SMTP-time lookup of ticket numbers: each router that does it looks in the tickets
 * folder of this config, and Exim's user can reach that folder through every parent (one
 * closed parent, and every ticket address gets 550).
 */
function checkEximLookups(store: Store, texts: Array<[string, string]>): Finding[] {
  const found: Finding[] = [];
  const dir = store.cfg.dir.replace(/(.)\/+$/, '$1');
  let looksHere = false;
  for (const [file, text] of texts) {
    const folders = new Set([...text.matchAll(/exists\{([^{}$\s]+?)\/(?:archived\/)?\$\{sg\{\$local_part\}/g)].map((m) => m[1]!));
    for (const folder of folders) {
      if (folder === dir) { looksHere = true; continue; }
      found.push({ ok: false, text: `an Exim router in ${file} looks up ticket numbers in ${folder}, but the tickets are in ${dir}: ` +
        'the ticket addresses get 550; print the routers again with ticket-mail exim-config' });
    }
  }
  const exim = looksHere ? eximAccount() : undefined;
  if (!exim) return found;
  for (let parent = join(dir, '..'), child = dir; parent !== child; child = parent, parent = join(parent, '..')) {
    let st;
    try { st = statSync(parent); } catch (e) { found.push({ ok: false, text: `cannot tell whether Exim can reach ${dir}: ${parent}: ${reason(e)}` }); break; }
    const bit = st.uid === exim.uid ? 0o100 : exim.gids.has(st.gid) ? 0o010 : 0o001;
    if (!(st.mode & bit)) {
      found.push({ ok: false, text: `Exim checks ticket numbers at SMTP time but its user ${exim.name} cannot reach ${dir}: ${parent} ` +
        `(mode ${(st.mode & 0o7777).toString(8)}) is closed to it, and every ticket address gets 550; chmod o+x ${parent}` });
    }
  }
  return found;
}

/**
 * An alias map's pipe runs as the map's owner (Postfix's local(8); a root-owned map's as
 * nobody, who cannot write the tickets folder: the mail defers for ever). The README's remedy
 * is an alias map of the tickets user's own.
 */
function checkAliasMaps(texts: Array<[string, string]>, ours: (command: string, line: string) => boolean, inst?: Installation): Finding[] {
  const found: Finding[] = [];
  for (const [file, text] of texts) {
    for (const m of text.matchAll(/^([^#\s:]+)[ \t]*:[ \t]*"?\|[ \t]*(\/[^\s"]+).*$/gm)) {
      if (!ours(m[2]!, m[0])) continue;
      const map = ['.db', '.lmdb', '.cdb', ''].map((ext) => file + ext).find((path) => existsSync(path))!;
      const owner = (() => { try { return statSync(map).uid; } catch { return undefined; } })();
      if (owner === undefined) continue;
      const runsAs = owner === 0 ? 'nobody' : userName(owner);
      const user = inst?.user ?? INSTALL_DEFAULTS.user;
      found.push(runsAs === user ? { ok: true, text: `the alias ${m[1]} in ${file} runs ${m[2]} as ${user}` }
        : { ok: false, text: `the alias ${m[1]} in ${file} runs ${m[2]} as ${runsAs}${owner === 0 ? ' (Postfix runs a root-owned map\'s commands as nobody)' : ''}, ` +
          `not as ${user}: mail for tickets defers for ever; use an alias map of ${user}'s own, as "ticket-mail postfix-config --aliases" prints` });
    }
  }
  return found;
}

/**
 * The MTA side against this installation (the config file's record of it): Exim's transport and
 * Postfix's service run its launcher as its user (with its HOME), and the launcher reads the
 * config file check read.
 */
function checkInstallation(inst: Installation, texts: Array<[string, string]>, commands: Set<string>,
  ours: (command: string, line: string) => boolean): Finding[] {
  const found: Finding[] = [];
  const differs = (what: string, where: string, theirs: string, mine: string) => found.push({ ok: false,
    text: `${where} has ${what} ${theirs || '(none)'}, but this installation's is ${mine} (${inst.config}): print it again with ticket-mail exim-config or postfix-config` });
  for (const [file, text] of texts) {
    // Exim: a transport is a "name:" line and its indented settings.
    for (const block of text.split(/^(?=[A-Za-z0-9_-]+:[ \t]*$)/m)) {
      const setting = (name: string) => new RegExp(`^[ \\t]+${name}[ \\t]*=[ \\t]*(\\S*)`, 'm').exec(block)?.[1] ?? '';
      const command = setting('command');
      if (!/^[ \t]+driver[ \t]*=[ \t]*pipe\b/m.test(block) || !command || !ours(command, block)) continue;
      const where = `Exim's transport ${block.slice(0, block.indexOf(':'))} in ${file}`;
      const before = found.length;
      if (command !== inst.launcher) differs('the command', where, command, inst.launcher);
      if (setting('user') !== inst.user) differs('the user', where, setting('user'), inst.user);
      if (setting('home_directory') !== inst.home) differs('the home_directory', where, setting('home_directory'), inst.home);
      if (found.length === before) found.push({ ok: true, text: `${where} runs ${inst.launcher} as ${inst.user}, HOME ${inst.home}` });
    }
    // Postfix's master.cf: a service is a line and its indented continuation lines.
    for (const entry of text.replace(/\n[ \t]+/g, ' ').split('\n')) {
      const argv = /\bargv=(\S+)/.exec(entry)?.[1];
      if (!argv || !ours(argv, entry)) continue;
      const where = `Postfix's service ${entry.split(/\s/)[0]} in ${file}`;
      const user = /\buser=([^\s:]+)/.exec(entry)?.[1] ?? '';
      if (user !== inst.user) differs('the user', where, user, inst.user);
      if (!/ postfix-policy\b/.test(entry) && argv !== inst.launcher) differs('the command', where, argv, inst.launcher);
    }
  }
  for (const launcher of commands) {
    const script = (() => { try { return readFileSync(launcher, 'utf8').slice(0, 4096); } catch { return ''; } })();
    const config = /^errors=.* --config ('(?:[^']|'\\'')*'|\S+)/m.exec(script)?.[1]?.replace(/^'(.*)'$/, '$1').replace(/'\\''/g, "'");
    if (config !== undefined && config !== inst.config) {
      found.push({ ok: false, text: `the launcher ${launcher} reads the config file ${config}, but check read ${inst.config}: ` +
        `check that one (--config ${config}), or run ticket-mail setup --config ${inst.config} again` });
    }
  }
  return found;
}

function listTicketPaths(store: Store): Array<{ n: number; place: 'open' | 'archived'; path: string }> {
  const out: Array<{ n: number; place: 'open' | 'archived'; path: string }> = [];
  for (const place of ['open', 'archived'] as const) {
    let names: string[] = [];
    try { names = readdirSync(place === 'open' ? store.cfg.dir : store.archived); } catch { continue; }
    for (const name of names) {
      const n = parseTicketNumber(name);
      if (n !== undefined) out.push({ n, place, path: store.ticketPath(n, place) });
    }
  }
  return out;
}

/** The message `close`/`reopen` file when none is given on stdin: a short note by the maintainer. */
export function commandNote(action: 'close' | 'reopen', n: number, author: string, recipient: string, domain: string, now: Date): Buffer {
  const done = action === 'close' ? 'closed' : 'reopened';
  return Buffer.from([
    `From: ${author}`, `To: ${recipient}`, `Subject: Ticket ${n} ${done}`, `Date: ${rfc5322Date(now)}`,
    `Message-ID: <ticket-mail.${action}.${randomHex()}@${domain}>`,
    'MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', '',
    `Ticket ${n} was ${done} with "ticket-mail ${action}" by ${author}.`, '',
  ].join('\n'));
}

/** Quotes a word for /bin/sh. */
const shellWord = (w: string) => `'${w.replace(/'/g, `'\\''`)}'`;

/** Quotes a string for a double-quoted mutt command argument. */
const muttString = (s: string) => `"${s.replace(/[\\"$`]/g, '\\$&')}"`;

/**
 * mutt hooks for every ticket, for `source "ticket-mail muttrc |"`. mutt hooks cannot use
 * regex captures, so there is one folder-hook per ticket: in ticket N's mbox (open or
 * closed) replies come from ticket-N@ with ticket-N@ in Cc, and ",c" closes the ticket.
 * mutt leaves a my_hdr Cc out of reply drafts, so the hook's editor command (`draft`) puts
 * the Cc line into the draft and then starts the maintainer's $VISUAL or $EDITOR.
 */
export function muttHooks(store: Store, self: string[]): string {
  const { cfg } = store;
  const domain = cfg.domain ?? 'localhost';
  const dir = realpathSync(cfg.dir);
  const settings = [...(cfg.domain ? ['--domain', cfg.domain] : []), '--dir', dir,
    ...(typed.config ? ['--config', typed.config.at(-1)!] : [])];
  const command = (...args: string[]) => [...self, ...args, ...settings].map(shellWord).join(' ');
  const lines = [
    `# ticket-mail hooks for ${dir}, printed by "ticket-mail muttrc"; every ticket gets one folder-hook.`,
    `folder-hook . ${muttString(`reset from; reset editor; reset read_only; macro index,pager ,c "<enter-command>echo 'not a ticket mbox'<enter>" "close this ticket"`)}`,
    // Every ticket read-only, also one opened after these hooks were printed (",r" gives it the
    // rest): mutt would write Status: lines into the ticket (its stored messages would no longer
    // be byte for byte what came in) and rewrite the file under a delivery's feet.
    `folder-hook ${muttString(`${escapeRegExp(dir)}/+(archived/+)?([1-9][0-9]*|unmatched)$`)} ${muttString('set read_only=yes')}`,
  ];
  for (const { n } of listTicketPaths(store).sort((a, b) => a.n - b.n)) {
    const address = `${cfg.ticketAddress.replace('N', String(n))}@${domain}`;
    const archived = `${dir}/archived/${n}`;
    const close = `<shell-escape>${command('close', String(n))}<enter><change-folder>${archived}<enter>`;
    const hook = [
      `set from=${muttString(mailbox(cfg.name, address))}`,
      `set editor=${muttString(`${command('draft', '--cc', address)} %s`)}`,
      `macro index,pager ,c ${muttString(close)} ${muttString(`close ticket ${n}`)}`,
    ].join('; ');
    // No leading "^": mutt would read it as its current-mailbox shortcut.
    lines.push(`folder-hook ${muttString(`${escapeRegExp(dir)}/+(archived/+)?${n}$`)} ${muttString(hook)}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * `draft`: the mutt draft with the ticket address added to its Cc field, and nothing else
 * changed. The draft holds mail's text (a Cc display name, the quoted body), so it is cut
 * and joined, never used as a pattern or a replacement string. A folded Cc grows at its last
 * line; an address already there (in any case) is not added again; a header without Cc gets
 * one at its end, with the draft's own line ends (mutt writes CRLF drafts for some setups).
 */
export function addCc(draft: string, address: string): string {
  const lines = draft.split(/(?<=\n)/); // each with its line end
  const eol = /\r?\n/.exec(draft)?.[0] ?? '\n';
  const blank = lines.findIndex((l) => l === '\n' || l === '\r\n');
  const headEnd = blank < 0 ? lines.length : blank;
  const start = lines.findIndex((l, i) => i < headEnd && /^cc[ \t]*:/i.test(l));
  if (start < 0) {
    const head = lines.slice(0, headEnd).join('');
    return `${head}${head && !head.endsWith('\n') ? eol : ''}Cc: ${address}${eol}${lines.slice(headEnd).join('')}`;
  }
  let end = start + 1;
  while (end < headEnd && /^[ \t]/.test(lines[end]!)) end++;
  const field = lines.slice(start, end).join('');
  const value = field.slice(field.indexOf(':') + 1);
  if (addresses(value).includes(address.toLowerCase())) return draft;
  const lineEnd = /\r?\n$/.exec(field)?.[0] ?? '';
  let cut = field.length - lineEnd.length; // before trailing blanks and commas: "Cc: a@x, " gets ", ours", not ", , ours"
  while (cut > 0 && /[\s,]/.test(field[cut - 1]!)) cut--;
  const kept = field.slice(0, cut);
  const joined = /[^\s,]/.test(value) ? `${kept}, ${address}` : `${kept} ${address}`;
  return lines.slice(0, start).join('') + joined + lineEnd + lines.slice(end).join('');
}

// ---------------------------------------------------------------------------------------
// Search: what people read (decoded subjects, names and text), found by words and fields
// ---------------------------------------------------------------------------------------

/** A query that cannot be run: its message is the one line the user sees. */
export class QueryError extends Error {}

export type SearchField = 'any' | 'from' | 'to' | 'subject' | 'body' | 'file';
/** One word or phrase (folded), and the field it must be found in. */
export interface SearchTerm { field: SearchField; text: string }
export interface Query {
  terms: SearchTerm[];
  is: Set<'open' | 'closed' | 'waiting'>;
  before?: number; after?: number; // ms: before the start of a (local) day, from the start of one on
  ticket?: number;
}

/** Bounds that keep a hostile or mistaken query (a pasted file) cheap: checked before any parsing. */
const MAX_QUERY = 1000;
const MAX_TERMS = 20;
const TEXT_FIELDS = ['from', 'to', 'subject', 'body', 'file'];

/**
 * Text as search compares it: decomposed (NFD), marks removed, lower-cased, ß as ss, final sigma
 * as sigma, each run of white space and controls one space. "Café" is "cafe", "STRASSE" "strasse".
 */
export function foldText(text: string): string {
  if (!/[^\x00-\x7f]/.test(text)) return text.toLowerCase().replace(/[\s\x00-\x1f\x7f]+/g, ' '); // most text: nothing to decompose
  return text.normalize('NFD').replace(/\p{M}+/gu, '').toLowerCase().replace(/ß/g, 'ss').replace(/ς/g, 'σ')
    .replace(/[\s\x00-\x1f\x7f-\x9f]+/g, ' ');
}

/** A day as YYYY-MM-DD: the start of it, local time. */
function dayStart(value: string, name: string): number {
  const m = /^(\d{4})-(\d\d)-(\d\d)$/.exec(value);
  const day = m && new Date(new Date(2000, 0, 1).setFullYear(Number(m[1]), Number(m[2]) - 1, Number(m[3]))); // not new Date(y, ...): it reads 0099 as 1999
  if (!m || !day || day.getMonth() !== Number(m[2]) - 1 || day.getDate() !== Number(m[3])) {
    throw new QueryError(`${name}: wants a date as YYYY-MM-DD, not "${printable(value, 40)}"`);
  }
  return day.getTime();
}

/**
 * A search query: words (each must be found), "exact phrases", field:value (a value may be
 * quoted: subject:"printer jam"), is:open|closed|waiting, before:/after: YYYY-MM-DD, ticket:N.
 * QueryError names what is wrong with it.
 */
export function parseQuery(text: string): Query {
  if (text.length > MAX_QUERY) throw new QueryError(`the query is too long (${text.length} characters; at most ${MAX_QUERY})`);
  const query: Query = { terms: [], is: new Set() };
  let tokens = 0;
  const tokenPattern = /\s*(?:([A-Za-z]+):)?(?:"([^"]*)("?)|(\S*))/y;
  for (let at = 0; at < text.length;) {
    tokenPattern.lastIndex = at;
    const m = tokenPattern.exec(text)!;
    at = tokenPattern.lastIndex;
    const [, name, quoted, closed, plain] = m;
    if (quoted === undefined && !plain && !name) { if (m[0].length === 0) at++; continue; } // trailing blanks
    if (quoted !== undefined && !closed) throw new QueryError(`a quote is not closed: "${printable(quoted, 40)}`);
    if (++tokens > MAX_TERMS) throw new QueryError(`too many terms (at most ${MAX_TERMS})`);
    const value = quoted ?? plain ?? '';
    const key = name?.toLowerCase();
    if (key !== undefined && !TEXT_FIELDS.includes(key) && !['is', 'before', 'after', 'ticket'].includes(key)) {
      throw new QueryError(`unknown field "${printable(name!, 20)}:" (fields: from: to: subject: body: file: is: before: after: ticket:)`);
    }
    if (key === 'is') {
      const state = value.toLowerCase();
      if (state !== 'open' && state !== 'closed' && state !== 'waiting') throw new QueryError(`is: wants open, closed or waiting, not "${printable(value, 40)}"`);
      query.is.add(state);
    } else if (key === 'before' || key === 'after') {
      query[key] = dayStart(value, key);
    } else if (key === 'ticket') {
      const n = parseTicketNumber(value);
      if (n === undefined) throw new QueryError(`ticket: wants a ticket number, not "${printable(value, 40)}"`);
      query.ticket = n;
    } else {
      const folded = foldText(value).trim();
      if (!folded) throw new QueryError(key ? `${key}: has no value` : 'an empty phrase ("")');
      query.terms.push({ field: (key ?? 'any') as SearchField, text: folded });
    }
  }
  if (!tokens) throw new QueryError('the query is empty');
  return query;
}

/**
 * Where a word may start. unspaced: a term that starts with a letter of a script written without
 * spaces between words (its first code point, not its first UTF-16 unit: 𠮷 is Han too) matches
 * anywhere; letterOrDigit: what no word start follows. Made at the first search, as columnClasses.
 */
let scriptClasses: { unspaced: RegExp; letterOrDigit: RegExp } | undefined;
const wordClasses = () => scriptClasses ??= {
  unspaced: /^[\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}\p{sc=Thai}\p{sc=Lao}\p{sc=Khmer}\p{sc=Myanmar}]/u,
  letterOrDigit: /[\p{L}\p{N}]/u,
};

/** A byte before a word's start: not an ASCII letter or digit. */
const wordStartsAfter = (byte: number) => !((byte >= 0x30 && byte <= 0x39) || ((byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x7a));

/** Does a word start at `i` of `text`: is the character before it, if any, no letter or digit? */
function wordStartsAt(text: string, i: number): boolean {
  if (i === 0) return true;
  const before = text.charCodeAt(i - 1);
  if (before < 0x80) return wordStartsAfter(before);
  return !wordClasses().letterOrDigit.test(String.fromCodePoint(text.codePointAt(before >= 0xdc00 && before <= 0xdfff && i >= 2 ? i - 2 : i - 1)!));
}

/** Where folded `term` is in folded `text` from `from` on as the start of a word (so "print" finds "printer", not "reprint"), else -1. */
export function termAt(text: string, term: string, from = 0): number {
  const anywhere = wordClasses().unspaced.test(term);
  for (let i = text.indexOf(term, from); i >= 0; i = text.indexOf(term, i + 1)) if (anywhere || wordStartsAt(text, i)) return i;
  return -1;
}

/**
 * What search keeps of one message: its ticket N, its position K in it (from 1, as the viewer
 * numbers it), its record's bytes, its time, and its fields folded (LINE_FIELDS). One line,
 * tab-separated: folded text has no tab and no line break.
 */
interface MessageLine { n: number; k: number; start: number; end: number; time: number }
const LINE_FIELDS = ['from', 'to', 'subject', 'file', 'body'] as const;

/**
 * The line in bytes [from, to) of `body`: its five numbers (each ended by a tab) read from the
 * bytes into `numbers`, and where its text starts; -1 when it does not start so. No string, no
 * closure, no object: a word found in 5,000 messages made 30,000 strings, and the collection of
 * their garbage cost more than the reading.
 */
function lineNumbers(body: Buffer, from: number, to: number, numbers: Float64Array): number {
  let at = from;
  for (let i = 0; i < 5; i++) {
    const negative = body[at] === 0x2d; // a time before 1970
    if (negative) at++;
    const digits = at;
    let value = 0;
    for (; at < to && body[at]! >= 0x30 && body[at]! <= 0x39; at++) value = value * 10 + (body[at]! - 0x30);
    if (at === digits || at >= to || body[at++] !== 0x09 || !Number.isSafeInteger(value)) return -1;
    numbers[i] = negative ? -value : value;
  }
  return at;
}
const lineOf = (numbers: Float64Array): MessageLine => ({ n: numbers[0]!, k: numbers[1]!, start: numbers[2]!, end: numbers[3]!, time: numbers[4]! });

/** Is a message of this time within the query's dates? */
const inDates = (time: number, query: Query) => !((query.before !== undefined && time >= query.before) || (query.after !== undefined && time < query.after));

/** The line in bytes [from, to) of `body`, when its message is within the query's dates and its fields hold every term (a word: any of them); else undefined. */
function matchedLine(body: Buffer, from: number, to: number, query: Query, numbers: Float64Array): MessageLine | undefined {
  const textStart = lineNumbers(body, from, to, numbers);
  if (textStart < 0 || !inDates(numbers[4]!, query)) return undefined;
  const text = body.toString('utf8', textStart, to);
  let fields: string[] | undefined;
  for (const term of query.terms) {
    if (term.field === 'any') { // in the text part, whose fields a tab (no letter) separates: a word starts at each
      if (termAt(text, term.text) < 0) return undefined;
      continue;
    }
    fields ??= text.split('\t');
    if (fields.length !== LINE_FIELDS.length || termAt(fields[LINE_FIELDS.indexOf(term.field)]!, term.text) < 0) return undefined;
  }
  return lineOf(numbers);
}

/** Counts the messages search read from mbox files, for the tests (a ticket that only grew is read from where it grew). */
export const searchReads = { messages: 0 };

/** Of a header field this much is searched (as shownMailboxes shows it): a field of a MiB of encoded words costs no more. */
const SEARCHED_FIELD = 4096;

/** Of a record this much is read for its From_ line: ours is at most 1,031 bytes (recordChunks cuts the sender at 1,000), and a cut one would have no time. */
const FROM_LINE_READ = 4096;

/** The search line of the record K of ticket N in bytes [start, end) of its mbox, or undefined for what is no record. */
async function extractLine(fd: number, n: number, k: number, start: number, end: number): Promise<string | undefined> {
  const record = mboxRecordAt(fd, start, end);
  if (!record) return undefined;
  searchReads.messages++;
  const fromLine = Buffer.alloc(Math.min(end - start, FROM_LINE_READ));
  readSync(fd, fromLine, 0, fromLine.length, start);
  const { message } = record;
  const head = parseHead(message.first.subarray(0, headEnd(message.first)).toString('utf8'));
  let text = '';
  let files: string[] = [];
  try {
    const outline = await messageText(message);
    text = outline.text;
    files = outline.attachments.map((a) => a.name);
  } catch { /* undecodable: found by its head alone */ }
  const time = fromLineTime(fromLine.toString('latin1', 0, Math.max(0, fromLine.indexOf(LF)))) ?? (Date.parse(head && field(head, 'date') || '') || 0);
  // Names decoded, addresses as written: what shownMailboxes shows, without parsing each address list.
  const decoded = (...names: string[]) => names.flatMap((name) => head?.get(name) ?? []).map((v) => decodeWords(v.slice(0, SEARCHED_FIELD)));
  const fields = [decoded('from'), decoded('to', 'cc'), [head ? decodedSubject(head) : ''], files, [text]];
  return [n, k, start, end, time, ...fields.map((values) => foldText(values.join(' ')))].join('\t');
}

/**
 * What search knows of one ticket file, valid while its inode, size and mtime (and the
 * fingerprint of its end) are unchanged: its messages' lines (a view of its bucket's), and where
 * its last record starts.
 */
interface TicketText { place: Place; ino: number; size: number; mtimeMs: number; tail: string; last: number; records: number; lines: Buffer }

/** Does a record start at `pos` (a line "From " there)? Past the old end of a grown file: then the old last record was whole. */
function recordStartsAt(fd: number, pos: number): boolean {
  const bytes = Buffer.alloc(6);
  return readSync(fd, bytes, 0, 6, pos - 1) === 6 && bytes.equals(Buffer.from('\nFrom '));
}

/**
 * One ticket's text: `known` as it is when the file is unchanged, extended when the
 * file only grew (its records from where the old last one ended, or that one again if it was
 * still being written), else read whole. Undefined when the file is gone, null when it cannot
 * be read.
 */
async function ticketText(n: number, path: string, place: Place, known: TicketText | undefined): Promise<TicketText | undefined | null> {
  const same = (st: { ino: number; size: number; mtimeMs: number }) => known && known.ino === st.ino && known.size === st.size && known.mtimeMs === st.mtimeMs;
  let fd;
  // O_NONBLOCK: a FIFO where a ticket should be would hold the open (and serve's searches behind it) forever; fstat then refuses it.
  try { fd = openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK); } catch (e) { return code(e) === 'ENOENT' ? undefined : null; }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return null;
    if (same(st)) return known!.place === place ? known : { ...known!, place };
    let from = 0;
    let old: Buffer = Buffer.alloc(0);
    let k = 0;
    // A file that held no record (emptied, as mutt leaves a ticket whose messages were all deleted) has no last record to read on from.
    if (known && known.records > 0 && known.ino === st.ino && st.size > known.size && tailPrint(tailBefore(fd, known.size)) === known.tail) {
      const whole = recordStartsAt(fd, known.size);
      const lastLine = known.lines.lastIndexOf(LF, known.lines.length - 2) + 1;
      const lastK = known.lines.toString('latin1', lastLine, lastLine + 40).split('\t')[1];
      from = whole ? known.size : known.last;
      k = whole ? known.records : known.records - 1;
      old = whole || lastK !== String(known.records) ? known.lines : known.lines.subarray(0, lastLine);
    }
    const starts = mboxStarts(fd, st.size, from);
    const lines: string[] = [];
    for (const [i, start] of starts.entries()) {
      const line = await extractLine(fd, n, k + i + 1, start, starts[i + 1] ?? st.size);
      if (line !== undefined) lines.push(`${line}\n`);
    }
    return {
      place, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, tail: tailPrint(tailBefore(fd, st.size)),
      last: starts.at(-1) ?? 0, records: k + starts.length, lines: Buffer.concat([old, Buffer.from(lines.join(''))]),
    };
  } finally { closeSync(fd); }
}

/**
 * Search's cache: the tickets' lines in buckets of a hundred tickets (N / 100), each a file
 * rewritten whole when one of its tickets changed, under a random generation; a manifest names
 * the generations and each tickets folder's inode and mtime as they were read. While a folder is
 * unchanged since (every writer's dotlock changes the folder: see RACY_MS) and every file is of
 * its generation, none of its tickets is even looked at. Files 0600 in a 0700 folder, written
 * under a new name and renamed: a search racing another sees a whole file, the old or the new.
 * Whatever fails to read back as it was written (garbage, a symlink, another name) is no cache.
 */
interface SearchCache {
  buckets: Map<number, Bucket>;
  folders: Partial<Record<Place, { ino: number; mtimeMs: number; trusted: boolean } | null>>; // as the last read of each saw it
}
/**
 * A bucket's tickets and their lines, in N order. Its rows are ROW_FIELDS numbers each (see ROW;
 * a place is 0 open, 1 archived; a tail's fingerprint two 32-bit halves), kept in the file as
 * base64 of little-endian doubles: 10,000 rows as JSON cost a warm search 25 ms to parse and
 * check, and their arrays as much again in garbage collection.
 */
interface Bucket {
  generation: string; rows: Float64Array;
  body?: Buffer; // its lines, once kept (serve's memory, a bucket changed)
  file?: { fd: number; at: number; length: number }; // else where they are: its file, held open (renamed over by another search, it stays whole)
  starts?: number[]; // of each row's lines in body, made when needed
}
const ROW = { n: 0, place: 1, ino: 2, size: 3, mtimeMs: 4, tailHigh: 5, tailLow: 6, last: 7, records: 8, length: 9 } as const;
const ROW_FIELDS = 10;
const CACHE_VERSION = 'ticket-mail search cache 5'; // 3: times from whole From_ lines, an emptied ticket's messages numbered from 1; 4: rows as numbers; 5: a From_ year below 100 as written (17fd27e)
const rowPlace = (bucket: Bucket, index: number): Place => (bucket.rows[index * ROW_FIELDS + ROW.place] ? 'archived' : 'open');
const bucketOf = (n: number) => Math.floor(n / 100);
const searchMemory = new Map<string, SearchCache>();

/** Bytes [at, at + length) of an open file into `into` (from 0); how many there were. */
function readAt(fd: number, into: Buffer, at: number, length: number): number {
  let got = 0;
  for (let n = -1; n !== 0 && got < length;) got += n = readSync(fd, into, got, length - got, at + got);
  return got;
}

/** How many bucket files a search holds open (their lines read when searched); those past it are read at once (EMFILE). */
const HELD_BUCKETS = 128;

/** Of a bucket file this much is read first, for its head line: that of 100 rows is 10.8 KB. */
const HEAD_READ = 16384;

/** search's one buffer for the lines of buckets read only to be searched (as list's countBuffer): 100 buffers of 300 KB, or one of 30 MB, cost more in page faults and garbage collection than their reading. */
let linesBuffer: Buffer | undefined;

/**
 * A bucket's lines: those it keeps, else read from its file, and then kept (`transient` false) or
 * in linesBuffer, valid until the next transient read. A file cut short since its head was read
 * (by hand: ours are only ever renamed over) fails this search; the next finds it no cache.
 */
function bucketLines(bucket: Bucket, transient = false): Buffer {
  if (bucket.body) return bucket.body;
  const { fd, at, length } = bucket.file!;
  const into = transient ? (linesBuffer = linesBuffer && linesBuffer.length >= length ? linesBuffer : Buffer.allocUnsafe(Math.max(length, 1 << 20))) : Buffer.allocUnsafe(length);
  if (readAt(fd, into, at, length) !== length) throw new Error('the search cache changed while read: search again');
  if (transient) return into.subarray(0, length);
  closeSync(fd);
  bucket.file = undefined;
  return bucket.body = into;
}

/** A bucket's file closed, if held (its lines no longer read). */
function closeBucket(bucket: Bucket): void {
  if (bucket.file) closeSync(bucket.file.fd);
  bucket.file = undefined;
}

/** A cache file written under a new name, then renamed over the old one (never written through a planted link). */
function writeCacheFile(folder: string, name: string, data: Buffer | string): void {
  const fresh = join(folder, `.${name}.${process.pid}.${unique()}`);
  try {
    const fd = openSync(fresh, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    try { writeAll(fd, typeof data === 'string' ? Buffer.from(data) : data); } finally { closeSync(fd); }
    renameSync(fresh, join(folder, name));
  } catch (e) {
    try { unlinkSync(fresh); } catch { /* not made */ }
    throw e;
  }
}

const isNumber = (v: unknown): v is number => typeof v === 'number' && v >= 0 && v < 2 ** 53;
const isFolderStamp = (v: unknown) => v === null || (typeof v === 'object' && isNumber((v as { ino?: unknown }).ino) && isNumber((v as { mtimeMs?: unknown }).mtimeMs));

/** The cache in `folder` as its files say, checked field by field; what does not check out is left out (and no folder trusted). */
function loadSearchCache(folder: string): SearchCache {
  const cache: SearchCache = { buckets: new Map(), folders: {} };
  let manifest: Record<string, unknown> = {};
  try {
    const fd = openStateFile(join(folder, 'manifest.json'), fsc.O_RDONLY);
    try {
      const bytes = Buffer.allocUnsafe(fstatSync(fd).size);
      manifest = JSON.parse(bytes.toString('utf8', 0, readAt(fd, bytes, 0, bytes.length)));
    } finally { closeSync(fd); }
  } catch { /* none */ }
  // Another version's manifest is none: its folders trusted would hide every ticket its buckets (not read) hold.
  if (manifest.version !== CACHE_VERSION) manifest = {};
  const names = Object.entries(typeof manifest.buckets === 'object' && manifest.buckets ? manifest.buckets as Record<string, unknown> : {})
    .filter(([name, generation]) => /^\d{1,8}$/.test(name) && typeof generation === 'string');
  // Only each bucket's head is read here, its lines when searched (bucketLines): held open, the file stays the one whose head was read (up to HELD_BUCKETS).
  const chunk = Buffer.allocUnsafe(HEAD_READ);
  let whole = true;
  for (const [name, generation] of names) {
    const bucket = Number(name);
    let fd;
    try { fd = openStateFile(`${folder}/${bucket}.txt`, fsc.O_RDONLY); } catch { whole = false; continue; } // folder is joined already: no join (a normalize) per bucket
    let head: { version?: unknown; generation?: unknown; rows?: unknown } = {};
    let headEnd = -1;
    let size = 0;
    try {
      size = fstatSync(fd).size;
      headEnd = chunk.subarray(0, readAt(fd, chunk, 0, Math.min(size, HEAD_READ))).indexOf(LF);
      if (headEnd > 0) head = JSON.parse(chunk.toString('latin1', 0, headEnd));
    } catch { /* garbage */ }
    const rows = head.version === CACHE_VERSION && typeof head.rows === 'string' ? decodedRows(head.rows) : undefined;
    if (headEnd < 0 || !rows || head.generation !== generation || !rowsValid(rows, bucket, size - headEnd - 1)) {
      closeSync(fd);
      whole = false;
      continue;
    }
    const kept: Bucket = { generation: generation as string, rows, file: { fd, at: headEnd + 1, length: size - headEnd - 1 } };
    cache.buckets.set(bucket, kept);
    if (cache.buckets.size > HELD_BUCKETS) { // read now and closed: a store's buckets held open would use up the files a process may open
      try { bucketLines(kept); } catch { closeBucket(kept); cache.buckets.delete(bucket); whole = false; }
    }
  }
  const folders = manifest.folders as Record<Place, unknown> | undefined;
  if (whole && folders && typeof folders === 'object') {
    for (const place of ['open', 'archived'] as const) {
      const f = folders[place] as { trusted?: unknown } | null;
      if (isFolderStamp(f) && (f === null || typeof f.trusted === 'boolean')) cache.folders[place] = f as SearchCache['folders'][Place];
    }
  }
  return cache;
}

/** Rows from their base64, or undefined when that is no whole number of rows. */
function decodedRows(base64: string): Float64Array | undefined {
  const bytes = Buffer.from(base64, 'base64');
  if (bytes.length % (ROW_FIELDS * 8)) return undefined;
  const rows = new Float64Array(bytes.length / 8);
  const view = Buffer.from(rows.buffer);
  view.set(bytes);
  if (BIG_ENDIAN) view.swap64();
  return rows;
}

/** Rows as a bucket file keeps them: base64 of their numbers as little-endian doubles. */
function encodedRows(rows: Float64Array): string {
  const bytes = Buffer.from(rows.buffer.slice(rows.byteOffset, rows.byteOffset + rows.byteLength));
  return (BIG_ENDIAN ? bytes.swap64() : bytes).toString('base64');
}
const BIG_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 0;

/** Are these rows what rebuildBuckets writes for bucket `bucket` with a body of `bodyLength` bytes: ascending N of the bucket, a place, whole numbers, their lines' lengths the body's? */
function rowsValid(rows: Float64Array, bucket: number, bodyLength: number): boolean {
  let length = 0;
  for (let i = 0; i < rows.length; i += ROW_FIELDS) {
    const n = rows[i + ROW.n]!;
    if (!Number.isInteger(n) || n < 1 || bucketOf(n) !== bucket || (i > 0 && rows[i - ROW_FIELDS + ROW.n]! >= n)) return false;
    if (rows[i + ROW.place] !== 0 && rows[i + ROW.place] !== 1) return false;
    for (let f = ROW.ino; f < ROW_FIELDS; f++) if (!isNumber(rows[i + f])) return false;
    if (rows[i + ROW.tailHigh]! >= 2 ** 32 || rows[i + ROW.tailLow]! >= 2 ** 32) return false;
    length += rows[i + ROW.length]!;
  }
  return length === bodyLength;
}

/** Ticket N's row: its bucket and index there (by the rows' N order), or undefined. */
function rowOf(cache: SearchCache, n: number): { bucket: Bucket; index: number } | undefined {
  const bucket = cache.buckets.get(bucketOf(n));
  if (!bucket) return undefined;
  let low = 0;
  let high = bucket.rows.length / ROW_FIELDS - 1;
  while (low <= high) {
    const mid = (low + high) >> 1;
    const at = bucket.rows[mid * ROW_FIELDS + ROW.n]!;
    if (at === n) return { bucket, index: mid };
    if (at < n) low = mid + 1;
    else high = mid - 1;
  }
  return undefined;
}

/** Row `index` of a bucket as a ticket's text (its lines a view of the bucket's): made only for a ticket that changed. */
function ticketAt(bucket: Bucket, index: number): TicketText {
  const { rows } = bucket;
  if (!bucket.starts) {
    bucket.starts = [];
    for (let i = 0, at = 0; i < rows.length; at += rows[ROW.length + i]!, i += ROW_FIELDS) bucket.starts.push(at);
  }
  const starts = bucket.starts;
  const row = (field: number) => rows[index * ROW_FIELDS + field]!;
  const half = (field: number) => row(field).toString(16).padStart(8, '0');
  return {
    place: rowPlace(bucket, index), ino: row(ROW.ino), size: row(ROW.size), mtimeMs: row(ROW.mtimeMs), tail: half(ROW.tailHigh) + half(ROW.tailLow),
    last: row(ROW.last), records: row(ROW.records), lines: bucketLines(bucket).subarray(starts[index], starts[index]! + row(ROW.length)),
  };
}

/** The buckets of the tickets in `updates` (null: gone) made again from their unchanged rows and those. */
function rebuildBuckets(cache: SearchCache, updates: Map<number, TicketText | null>): Set<number> {
  const changed = new Set([...updates.keys()].map(bucketOf));
  for (const number of changed) {
    const old = cache.buckets.get(number);
    const tickets: Array<[number, TicketText]> = [];
    for (let i = 0; old && i < old.rows.length / ROW_FIELDS; i++) {
      const n = old.rows[i * ROW_FIELDS + ROW.n]!;
      if (!updates.has(n)) tickets.push([n, ticketAt(old, i)]);
    }
    for (const [n, text] of updates) if (text && bucketOf(n) === number) tickets.push([n, text]);
    if (old) closeBucket(old);
    if (!tickets.length) { cache.buckets.delete(number); continue; }
    tickets.sort(([a], [b]) => a - b);
    const body = Buffer.concat(tickets.map(([, t]) => t.lines));
    const rows = new Float64Array(tickets.length * ROW_FIELDS);
    for (const [i, [n, t]] of tickets.entries()) {
      rows.set([n, t.place === 'archived' ? 1 : 0, t.ino, t.size, t.mtimeMs, parseInt(t.tail.slice(0, 8), 16), parseInt(t.tail.slice(8), 16), t.last, t.records, t.lines.length], i * ROW_FIELDS);
    }
    cache.buckets.set(number, { generation: `${unique()}${randomHex()}`, rows, body });
  }
  return changed;
}

/** The changed buckets, and then the manifest, written into `folder`. */
function saveSearchCache(folder: string, cache: SearchCache, changed: Set<number>): void {
  for (const bucket of changed) {
    const saved = cache.buckets.get(bucket);
    if (!saved) { try { unlinkSync(join(folder, `${bucket}.txt`)); } catch { /* none */ } continue; }
    writeCacheFile(folder, `${bucket}.txt`, Buffer.concat([Buffer.from(`${JSON.stringify({ version: CACHE_VERSION, generation: saved.generation, rows: encodedRows(saved.rows) })}\n`), bucketLines(saved)]));
  }
  const buckets = Object.fromEntries([...cache.buckets].map(([b, { generation }]) => [b, generation]));
  writeCacheFile(folder, 'manifest.json', JSON.stringify({ version: CACHE_VERSION, folders: cache.folders, buckets }));
}

/**
 * Where search keeps its cache: beside the list cache (.ticket-mail/search) when the state folder
 * is ours to write; else (a maintainer in the readers' group) in that user's own cache folder,
 * $XDG_CACHE_HOME or ~/.cache, ticket-mail/search-<digest of the tickets folder>; undefined
 * when neither can be made (then search reads every ticket, and keeps nothing).
 */
function searchCacheFolder(store: Store, env: NodeJS.ProcessEnv): string | undefined {
  // The user's cache folder, made below a folder that exists already (XDG_CACHE_HOME's parent, or
  // HOME): a made-up or absent HOME (nobody's /nonexistent) is never made, as root least of all.
  const [home, below] = env.XDG_CACHE_HOME?.startsWith('/') ? [env.XDG_CACHE_HOME, dirname(env.XDG_CACHE_HOME)]
    : env.HOME?.startsWith('/') ? [join(env.HOME, '.cache'), env.HOME] : [];
  // The second made only when the first fails: naming it takes a realpath and a SHA-256 in JavaScript, which every search paid.
  const userCache = () => {
    let dir = store.cfg.dir;
    try { dir = realpathSync(dir); } catch { /* as configured */ }
    return [join(home!, 'ticket-mail'), join(home!, 'ticket-mail', `search-${sha256(Buffer.from(dir)).slice(0, 16)}`)];
  };
  const candidates = [() => [store.state, join(store.state, 'search')], ...home ? [userCache] : []];
  for (const candidate of candidates) {
    const [parent, folder] = candidate() as [string, string];
    try {
      // The state folder as a delivery makes it (a folder of tickets not yet delivered to has none), by the tickets folder's owner only.
      if (parent === store.state) {
        if (statSync(store.cfg.dir).uid === process.getuid?.()) makeFolder(parent);
      } else if (statSync(below!).isDirectory()) mkdirSync(parent, { recursive: true, mode: 0o700 });
      makeFolder(folder);
      const st = lstatSync(folder);
      accessSync(folder, fsc.W_OK);
      if (st.isDirectory() && st.uid === process.getuid?.()) return folder;
    } catch { /* the next */ }
  }
  return undefined;
}

/**
 * Every ticket's text, up to date. `where`: 'save' keeps the cache on disk (the CLI);
 * 'memory' keeps it in this process (serve), 'read' uses the disk's where valid and writes
 * nothing (cgi: the viewer never writes into the tickets folder). Each starts from the tickets
 * folder's own cache when it can read it.
 */
function ticketTexts(store: Store, where: 'save' | 'memory' | 'read', env: NodeJS.ProcessEnv): Promise<SearchCache> {
  // One at a time per tickets folder: serve's requests share its memory, and a read may wait for postal-mime's parser.
  const previous = searchesRunning.get(store.cfg.dir) ?? Promise.resolve();
  const running = previous.then(() => refreshedTexts(store, where, env));
  searchesRunning.set(store.cfg.dir, running.then(() => undefined, () => undefined));
  return running;
}
const searchesRunning = new Map<string, Promise<unknown>>();

async function refreshedTexts(store: Store, where: 'save' | 'memory' | 'read', env: NodeJS.ProcessEnv): Promise<SearchCache> {
  const writeTo = where === 'save' ? searchCacheFolder(store, env) : undefined;
  let cache = where === 'memory' ? searchMemory.get(store.cfg.dir) : undefined;
  if (!cache) {
    cache = loadSearchCache(writeTo ?? join(store.state, 'search'));
    if (where === 'memory') { // kept: its lines read now, its files closed (serve lives on: none left open by a failed read)
      try {
        for (const bucket of cache.buckets.values()) bucketLines(bucket);
      } finally {
        for (const bucket of cache.buckets.values()) closeBucket(bucket);
      }
      searchMemory.set(store.cfg.dir, cache);
    }
  }
  const updates = new Map<number, TicketText | null>(); // null: gone
  const scanned = new Set<Place>();
  const seen = new Set<number>();
  // Each folder's stamp is the cache's only once its tickets' changes are: a read that fails half-way (serve's memory outlives it) leaves no folder trusted whose changes it dropped.
  const stamps: SearchCache['folders'] = {};
  for (const place of ['open', 'archived'] as const) {
    const folder = place === 'open' ? store.cfg.dir : store.archived;
    let st;
    try { st = statSync(folder); } catch (e) { if (code(e) !== 'ENOENT') throw e; }
    const known = cache.folders[place];
    if (known?.trusted && st && known.ino === st.ino && known.mtimeMs === st.mtimeMs) continue;
    scanned.add(place);
    const readAt = Date.now();
    let names: string[] = [];
    try { names = readdirSync(folder); } catch (e) { if (code(e) !== 'ENOENT') throw e; }
    let unreadable = false;
    for (const name of names) {
      const n = parseTicketNumber(name);
      if (n === undefined || seen.has(n)) continue;
      const found = rowOf(cache, n);
      const rows = found?.bucket.rows;
      const at = found ? found.index * ROW_FIELDS : 0;
      const rowIn = found && rowPlace(found.bucket, found.index);
      // A ticket in both places is being moved: the open one counts (as the list's does).
      if (place === 'archived' && !scanned.has('open') && rowIn === 'open') continue;
      const path = `${folder}/${name}`; // ticketPath(n, place) (the name is N as written: parseTicketNumber), without join's cost at each of 10,000 tickets
      if (rows) { // most tickets: one lstat, nothing made
        const now = lstatSync(path, { throwIfNoEntry: false });
        if (now && now.ino === rows[at + ROW.ino] && now.size === rows[at + ROW.size] && now.mtimeMs === rows[at + ROW.mtimeMs]) {
          seen.add(n);
          if (rowIn !== place) updates.set(n, { ...ticketAt(found!.bucket, found!.index), place });
          continue;
        }
      }
      const had = found && ticketAt(found.bucket, found.index);
      const text = await ticketText(n, path, place, had);
      unreadable ||= text === null;
      if (!text) continue;
      seen.add(n);
      if (text !== had) updates.set(n, text);
    }
    stamps[place] = st ? { ino: st.ino, mtimeMs: st.mtimeMs, trusted: !unreadable && readAt - st.mtimeMs > RACY_MS } : null;
  }
  if (scanned.size) {
    for (const bucket of cache.buckets.values()) {
      for (let i = 0; i < bucket.rows.length / ROW_FIELDS; i++) {
        const n = bucket.rows[i * ROW_FIELDS + ROW.n]!;
        if (!seen.has(n) && scanned.has(rowPlace(bucket, i))) updates.set(n, null);
      }
    }
  }
  const changed = rebuildBuckets(cache, updates);
  Object.assign(cache.folders, stamps);
  if (writeTo && scanned.size) {
    try { saveSearchCache(writeTo, cache, changed); } catch { /* the cache is a convenience */ }
  }
  return cache;
}

/** One message found: where, when, from whom, about what, and its text around the first match (the matches marked). */
export interface SearchResult {
  ticket: number; message: number; state: 'open' | 'closed'; date: string; from: string; subject: string;
  snippet: Array<{ text: string; match?: true }>;
}

/**
 * The messages of a bucket's lines that match, added to `found`: only the lines holding the
 * query's longest term are read. A query of one word (the usual one) is answered from the bytes:
 * its line's numbers are read, its text is not decoded.
 */
function matchingLines(body: Buffer, needle: Buffer, query: Query, found: MessageLine[]): void {
  const oneWord = query.terms.length === 1 && query.terms[0]!.field === 'any' && !wordClasses().unspaced.test(query.terms[0]!.text);
  const numbers = new Float64Array(5);
  /** A word starts at byte `i` of the bytes from `from` on (a byte of a longer character: that character decides). */
  const wordAt = (i: number, from: number) => {
    if (i === from || body[i - 1]! < 0x80) return i === from || wordStartsAfter(body[i - 1]!);
    const before = body.toString('utf8', Math.max(from, i - 4), i);
    return wordStartsAt(before, before.length);
  };
  for (let at = needle.length ? body.indexOf(needle) : 0; at >= 0 && at < body.length;) {
    const start = body.lastIndexOf(LF, at) + 1;
    let end = body.indexOf(LF, at);
    if (end < 0) end = body.length;
    let line: MessageLine | undefined;
    if (oneWord) {
      const textStart = lineNumbers(body, start, end, numbers);
      let word = textStart >= 0 ? at : -1;
      // An occurrence in the numbers, or inside a word, is none: the next one in this line may be.
      while (word >= 0 && word < end && (word < textStart || !wordAt(word, textStart))) word = body.indexOf(needle, word + 1);
      if (word >= 0 && word < end && inDates(numbers[4]!, query)) line = lineOf(numbers);
    } else line = matchedLine(body, start, end, query, numbers);
    if (line) found.push(line);
    at = needle.length ? body.indexOf(needle, end + 1) : end + 1;
  }
}

/** The snippet's width around the first match, in characters. */
const SNIPPET = 160;

/**
 * `text` around its first match of any of `terms` (or its start), one line, SNIPPET characters
 * at most, each match marked. Folded character by character, with the place each folded
 * character came from, so that the marks fall on the text as written.
 */
export function snippet(text: string, terms: string[]): SearchResult['snippet'] {
  let folded = '';
  let afterSpace = false; // not folded.endsWith(' '): that flattens the string built so far, each time (quadratic in the spaces)
  const origin: number[] = [];
  const folds = new Map<number, string>();
  for (let i = 0; i < text.length;) {
    const c = text.codePointAt(i)!;
    const width = c > 0xffff ? 2 : 1;
    let f = c < 0x80 ? (c <= 0x20 || c === 0x7f ? ' ' : String.fromCharCode(c >= 0x41 && c <= 0x5a ? c + 32 : c)) : folds.get(c);
    if (f === undefined) folds.set(c, f = foldText(String.fromCodePoint(c))); // a text has few distinct characters: each folded once
    if (!(f === ' ' && afterSpace)) {
      folded += f;
      for (let u = 0; u < f.length; u++) origin.push(i);
      if (f) afterSpace = f.endsWith(' ');
    }
    i += width;
  }
  origin.push(text.length);
  const matches: Array<[number, number]> = [];
  for (const term of terms) {
    for (let i = termAt(folded, term); i >= 0; i = termAt(folded, term, i + term.length)) matches.push([origin[i]!, origin[i + term.length]!]);
  }
  matches.sort((a, b) => a[0] - b[0]);
  const first = matches[0]?.[0] ?? 0;
  let from = Math.max(0, first - SNIPPET / 3);
  while (from > 0 && from < text.length && /\S/.test(text[from - 1]!) && first - from < SNIPPET / 2) from--; // to a word's start
  if (/[\udc00-\udfff]/.test(text[from] ?? '')) from++;
  let to = Math.min(text.length, from + SNIPPET);
  if (/[\udc00-\udfff]/.test(text[to] ?? '')) to++;
  const pieces: SearchResult['snippet'] = [];
  const add = (a: number, b: number, match?: true) => {
    const piece = text.slice(a, b).replace(/[\s\x00-\x1f\x7f-\x9f]+/g, ' ');
    if (piece) pieces.push(match ? { text: piece, match } : { text: piece });
  };
  let at = from;
  for (const [a, b] of matches) {
    if (a < at || a >= to) continue;
    add(at, a);
    add(a, Math.min(b, to), true);
    at = Math.min(b, to);
  }
  add(at, to);
  if (from > 0) pieces.unshift({ text: '…' });
  if (to < text.length) pieces.push({ text: '…' });
  return pieces;
}

export interface SearchOptions {
  /** 'save': the CLI (a cache on disk); 'memory': serve; 'read': cgi (the disk's cache, nothing written). */
  cache: 'save' | 'memory' | 'read';
  limit: number;
  env?: NodeJS.ProcessEnv;
}

/**
 * The messages matching `query`, newest first: all of them counted, the first `limit` read
 * again from their mbox for their sender, subject and snippet. QueryError for a query this
 * cannot answer.
 */
export async function searchTickets(store: Store, query: Query, options: SearchOptions): Promise<{ total: number; results: SearchResult[] }> {
  // is:waiting: the list's facts (its cache written only where search writes its own).
  const waiting = query.is.has('waiting')
    ? new Set(listTickets(store, 'open', options.cache === 'save').filter((r) => r.waiting === 'us').map((r) => r.ticket)) : undefined;
  const cache = await ticketTexts(store, options.cache, options.env ?? process.env);
  const found = new FirstLines(options.limit);
  const needle = Buffer.from(query.terms.reduce<string>((a, t) => (t.text.length > a.length ? t.text : a), ''));
  try {
    for (const [number, bucket] of cache.buckets) {
      if (query.ticket !== undefined && bucketOf(query.ticket) !== number) continue;
      const lines: MessageLine[] = [];
      matchingLines(bucketLines(bucket, true), needle, query, lines);
      for (const line of lines) {
        const row = rowOf(cache, line.n);
        const place = row && rowPlace(row.bucket, row.index);
        if (!place || (query.ticket !== undefined && line.n !== query.ticket)) continue;
        if ((query.is.has('open') && place !== 'open') || (query.is.has('closed') && place !== 'archived')) continue;
        if (waiting && !waiting.has(line.n)) continue;
        found.offer(line, place);
      }
    }
  } finally {
    for (const bucket of cache.buckets.values()) closeBucket(bucket);
  }
  const shownTerms = query.terms.filter((t) => t.field === 'any' || t.field === 'body').map((t) => t.text);
  const results: SearchResult[] = [];
  for (const { place, line } of found.inOrder()) {
    const { n } = line;
    const result: SearchResult = { ticket: n, message: line.k, state: place === 'open' ? 'open' : 'closed', date: new Date(line.time).toISOString(), from: '', subject: '', snippet: [] };
    let fd;
    try { fd = openSync(store.ticketPath(n, place), fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK); } catch { results.push(result); continue; } // moved meanwhile
    try {
      const record = mboxRecordAt(fd, line.start, line.end);
      if (record) {
        const head = parseHead(record.message.first.subarray(0, headEnd(record.message.first)).toString('utf8'));
        result.from = shownMailboxes(head && field(head, 'from'), oneLine)[0] ?? '';
        result.subject = head ? oneLine(decodedSubject(head), 200) : '';
        result.snippet = snippet((await messageText(record.message).catch(() => ({ text: '' }))).text, shownTerms);
      }
    } finally { closeSync(fd); }
    results.push(result);
  }
  return { total: found.total, results };
}

/** Where a match stands in the results: newest first, then the higher ticket, then the later message. */
const resultOrder = (a: MessageLine, b: MessageLine) => b.time - a.time || b.n - a.n || b.k - a.k;

/**
 * The first `limit` of the matches offered (in resultOrder), and how many were: a heap whose root
 * is the last of those kept, so that memory and work are bounded by the limit, not by the
 * matches (5,000 for a word in one message in 20, each an object to sort).
 */
class FirstLines {
  total = 0;
  private readonly heap: Array<{ place: Place; line: MessageLine }> = [];
  private readonly limit: number;
  // As slice(0, limit) took it: a fraction rounded down, nothing kept below 1 (or for NaN).
  constructor(limit: number) { this.limit = Math.max(0, Math.floor(limit) || 0); }

  offer(line: MessageLine, place: Place): void {
    this.total++;
    const { heap } = this;
    if (!this.limit) return;
    if (heap.length < this.limit) {
      heap.push({ place, line });
      for (let i = heap.length - 1; i > 0;) { // up while it comes after its parent
        const parent = (i - 1) >> 1;
        if (resultOrder(heap[parent]!.line, line) >= 0) break;
        [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
        i = parent;
      }
      return;
    }
    if (resultOrder(line, heap[0]!.line) >= 0) return; // after every one kept
    heap[0] = { place, line };
    for (let i = 0; ;) { // down while a child comes after it
      let last = i;
      for (const child of [2 * i + 1, 2 * i + 2]) if (child < heap.length && resultOrder(heap[last]!.line, heap[child]!.line) < 0) last = child;
      if (last === i) break;
      [heap[i], heap[last]] = [heap[last]!, heap[i]!];
      i = last;
    }
  }

  inOrder(): Array<{ place: Place; line: MessageLine }> {
    return [...this.heap].sort((a, b) => resultOrder(a.line, b.line));
  }
}

// ---------------------------------------------------------------------------------------
// The installation: what `setup` writes and what `exim-config` / `postfix-config` print
// ---------------------------------------------------------------------------------------

/** Where an installation's pieces are: what setup writes, and what the MTA's configuration names. */
export interface Installation {
  user: string;       // the pipe's user: it owns the tickets folder, and only it writes there
  home: string;       // its HOME (the code cache), outside the tickets folder
  launcher: string;   // the pipe command the MTA runs
  config: string;     // the config file the launcher names
  node: string;       // absolute paths of the runtime and of this program, as installed; a
  program: string;    // compiled executable (bun build --compile) is the runtime, its program ''
}

/**
 * This program as it runs now: the runtime and the file it runs, or a compiled executable
 * alone (bun build --compile: argv[1] is then a path inside it, /$bunfs/..., no realpath resolves).
 */
const runningProgram = (): Pick<Installation, 'node' | 'program'> => {
  const script = process.argv[1]!;
  return { node: process.execPath, program: script.startsWith('/$bunfs/') ? '' : realpathSync(script) };
};
/** The words that start it. */
const programWords = (p: Pick<Installation, 'node' | 'program'>) => (p.program ? [p.node, p.program] : [p.node]);

export const INSTALL_DEFAULTS = {
  user: 'tickets', home: '/var/lib/ticket-mail', launcher: '/usr/local/libexec/ticket-mail-deliver',
  config: '/etc/ticket-mail/config.json', dir: '/srv/tickets',
} as const;

/** A word for /bin/sh, quoted only when it needs to be (paths in generated files stay readable). */
const shWord = (w: string) => (/^[\w@%+=:,./-]+$/.test(w) ? w : shellWord(w));

/**
 * The MTA's pipe command. It passes ticket-mail's exit status on, except when ticket-mail
 * cannot run at all (node or the program missing, as during an upgrade; a damaged install; a
 * crash): then the MTA hears 75 and one sentence, and keeps the mail queued. Without it, node's
 * exit 1 and its stack trace reach the customer as a bounce. Deliveries print nothing on stdout.
 */
export function launcherScript(inst: Installation): string {
  return `#!/bin/sh
# ticket-mail's pipe command, written by "ticket-mail setup": run that again after moving node
# or ticket-mail. The MTA runs this for every message; it passes ticket-mail's exit status on,
# but when ticket-mail cannot run at all it exits 75 with one sentence, so the mail stays queued.
node=${shWord(inst.node)}
${inst.program ? `program=${shWord(inst.program)}` : '# node is ticket-mail itself, compiled (bun build --compile): no program file\nprogram='}
# "; exit" keeps the shell's own word on a killed program ("Killed") in $errors too.
errors=$("$node" \${program:+"$program"} --config ${shWord(inst.config)} "$@" 2>&1 >/dev/null; exit $?)
status=$?
case $status in
  0|65|67|75) [ -z "$errors" ] || printf '%s\\n' "$errors" >&2; exit "$status" ;;
esac
why=$(printf '%s\\n' "$errors" | sed -n '/^[A-Za-z]*Error: /{p;q;}')
printf 'ticket-mail: cannot run %s (exit status %s%s); the mail stays queued\\n' "$node\${program:+ $program}" "$status" "\${why:+: $why}" >&2
exit 75
`;
}

/**
 * The chores a timer runs, as argument vectors: the node, program and config file the launcher
 * names, not the launcher itself (it is the MTA's: it hides stdout and turns flush's exit 1,
 * "mail still kept", into 75 and "cannot run"). Prune comes first: flush's exit 1 is the one
 * worth a failed unit.
 */
const chores = (inst: Installation) => ['prune', 'flush'].map((command) => [...programWords(inst), '--config', inst.config, command]);

/**
 * A word of a systemd command line: quoted when needed, its specifiers (%) doubled, and in an
 * argument its variables ($) too (systemd expands none in the program's name, and refuses quotes there).
 */
const systemdWord = (w: string, i: number) => (/^[\w@+=:,./-]+$/.test(w) ? w
  : `"${w.replace(/[\\"]/g, '\\$&').replace(i === 0 ? /%/g : /[%$]/g, '$&$&')}"`);

/** ticket-mail-flush.service and .timer: every 10 minutes, as the pipe's user, prune then flush. */
export function systemdUnits(inst: Installation): { service: string; timer: string } {
  const [prune, flush] = chores(inst) as [string[], string[]];
  return {
    // No NoNewPrivileges= and no ProtectSystem=: sendmail is set-uid or set-gid (Exim's, Postfix's
    // postdrop) and writes its own queue.
    service: `# Written by "ticket-mail setup": run that again after moving node or ticket-mail.
[Unit]
Description=ticket-mail: prune the reply counters, send the mail kept in the outbox
After=network.target

[Service]
Type=oneshot
User=${inst.user}
# "-": a counter prune leaves alone (it says which) does not keep the outbox from being sent.
ExecStartPre=-${prune.map(systemdWord).join(' ')}
ExecStart=${flush.map(systemdWord).join(' ')}
`,
    timer: `# Written by "ticket-mail setup". Start it: systemctl enable --now ticket-mail-flush.timer
[Unit]
Description=ticket-mail: send the outbox and prune the reply counters every 10 minutes

[Timer]
OnBootSec=2min
OnUnitActiveSec=10min

[Install]
WantedBy=timers.target
`,
  };
}

/**
 * /etc/cron.d/ticket-mail, for a machine without systemd: the same chores. cron mails what a job
 * prints, so only stderr (a real problem) is left; the outbox's state is in "ticket-mail check".
 */
export function cronFile(inst: Installation): string {
  // cron turns an unescaped % into a line break, even within quotes.
  const command = chores(inst).map((argv) => `${argv.map(shWord).join(' ')} >/dev/null`).join('; ').replace(/%/g, '\\%');
  return `# Written by "ticket-mail setup": run that again after moving node or ticket-mail.
# Every 10 minutes: prune the reply counters, send the mail kept in the outbox.
*/10 * * * * ${inst.user} ${command}
`;
}

/**
 * /etc/logrotate.d/ticket-mail: the audit log, weekly, a year kept. Each delivery opens the log
 * by name for its one line (audit(), O_APPEND) and closes it, so a rename rotates it: no
 * copytruncate (which loses what is written between the copy and the truncation), and no create,
 * as the next delivery makes a new log as the pipe's user, mode 0600. delaycompress: a delivery
 * that opened the log just before the rename still writes its line into log.1, which must
 * therefore not be compressed (and removed) until the next rotation. As the pipe's user (su):
 * root must not move files around in a folder another user writes.
 */
export function logrotateSnippet(log: string, user: string, group: string): string {
  return `# Written by "ticket-mail setup": the audit log of ticket-mail.
"${log}" {
\tsu ${user} ${group}
\tweekly
\trotate 52
\tcompress
\tdelaycompress
\tmissingok
\tnotifempty
\tnocreate
}
`;
}

/** One of these strings, as a regular expression: "(?:a|b)", "(?:a)?" when one is empty. */
function oneOf(strings: string[]): string {
  const words = [...new Set(strings.filter(Boolean))].map(escapeRegExp);
  if (!words.length) return '';
  if (strings.includes('')) return `(?:${words.join('|')})?`;
  return words.length === 1 ? words[0]! : `(?:${words.join('|')})`;
}

/**
 * The local parts of our ticket and close addresses as one anchored regular expression; with
 * `capture`, its group 1 is the ticket number (what is around it is checked by local_parts).
 * With `anyDigits`, a bad number too (ticket-0, ticket-007, ten digits), which ticket-mail files
 * in unmatched.
 */
function addressFormsRegExp(cfg: Config, capture: boolean, anyDigits = false): string {
  const digits = anyDigits ? '[0-9]+' : '[1-9][0-9]{0,8}';
  const [tb, ta] = cfg.ticketAddress.split('N') as [string, string];
  const [cb, ca] = cfg.closeAddress.split('N') as [string, string];
  if (capture) return `^${oneOf([tb, cb])}(${digits})${oneOf([ta, ca])}$`;
  // A plain group, not (?:...): this one goes into an Exim list, where ":" separates items.
  return `^(${escapeRegExp(tb)}${digits}${escapeRegExp(ta)}|${escapeRegExp(cb)}${digits}${escapeRegExp(ca)})$`;
}

/** The router and transport for Exim 4.96 or newer, with this installation's paths. */
export function eximSnippet(cfg: Config, inst: Installation): string {
  const domain = cfg.domain ?? 'tickets.example.org';
  const localParts = (anyDigits = false) => `${cfg.submit} : \\N${addressFormsRegExp(cfg, false, anyDigits)}\\N`;
  const number = `\${sg{$local_part}{\\N${addressFormsRegExp(cfg, true)}\\N}{\\$1}}`;
  return `# ticket-mail for Exim 4.96 or newer, printed by "ticket-mail exim-config" for this installation.
# Debian, split configuration: the routers as /etc/exim4/conf.d/router/350_exim4-config_ticket_mail
# (before 400_exim4-config_system_aliases), the transport as
# /etc/exim4/conf.d/transport/30_exim4-config_ticket_mail. Single file (the default): the routers
# into "begin routers" of /etc/exim4/exim4.conf.template before system_aliases, the transport
# after "begin transports". Then: update-exim4.conf && systemctl reload exim4

# ---- routers ---------------------------------------------------------------------------
# Mail for a ticket that exists neither open nor archived is not routed here while Exim checks a
# recipient at SMTP time, so the RCPT is refused with 550 and no bounce is made. Exim checks as
# its own user (Debian-exim), which needs search permission on both folders ("ticket-mail setup"
# gives it; "ticket-mail check" says whether it has it). Debian's ACL checks recipients only of
# mail from outside (not from relay_from_hosts or local sendmail): the second router takes those.
ticket_mail:
  driver = accept
  domains = ${domain}
  local_parts = ${localParts()}
  condition = \${if or {{eq{$local_part}{${cfg.submit}}} \\
                       {exists{${cfg.dir}/${number}}} \\
                       {exists{${cfg.dir}/archived/${number}}}}}
  transport = ticket_mail_pipe

# Accepted without an SMTP-time check (a local client, a relay host) but for no ticket, or with a bad
# number (ticket-0, ticket-007): ticket-mail files it in "unmatched", where Exim would bounce it.
ticket_mail_unchecked:
  driver = accept
  domains = ${domain}
  local_parts = ${localParts(true)}
  verify = false
  transport = ticket_mail_pipe

# ---- transport ------------------------------------------------------------------------
ticket_mail_pipe:
  driver = pipe
  # Fixed: Exim refuses tainted values such as $local_part in a command; ticket-mail reads
  # LOCAL_PART, LOCAL_PART_SUFFIX, DOMAIN and SENDER from the environment. The launcher exits 75
  # when ticket-mail cannot run at all, so a broken install keeps mail queued.
  command = ${inst.launcher}
  user = ${inst.user}
  # The code cache lives in $HOME/.cache/ticket-mail: outside the tickets folder.
  home_directory = ${inst.home}
  current_directory = ${inst.home}
  path = /usr/local/bin:/usr/bin:/bin
  # Who handed the message over on this host (the login that ran sendmail, as Exim knows it; empty
  # for mail from the network, whose ident anyone can claim): a --maintainer's answer from mutt.
  # Only a login name passes (a trusted caller's -oMt could hold a ":", which splits this list).
  environment = TICKET_MAIL_LOCAL_USER=\${if and{{!def:sender_host_address}{match{$sender_ident}{\\N^[A-Za-z_][A-Za-z0-9_.-]*$\\N}}}{$sender_ident}}
  # ticket-mail stores what it reads byte for byte: no extra trailing line (the default From_
  # prefix line is fine, ticket-mail drops it).
  message_suffix =
  # 75: try again later. The one-line reason goes into the log, and into a bounce for 65/67.
  temp_errors = 75
  log_defer_output
  log_fail_output
  return_fail_output
  timeout = 10m
  timeout_defer
`;
}

/**
 * The aliases that take our addresses in local(8)'s form: submit, and for each address form the
 * part before its first delimiter ("ticket" of ticket-N and ticket-N-done, with "+-"), which must
 * come before the number; a form without one (tN, N-ticket) cannot be served by an alias.
 */
function aliasNames(cfg: Config): string[] {
  const names = [cfg.submit];
  for (const form of [cfg.ticketAddress, cfg.closeAddress]) {
    const alias = /^([a-z0-9._]+)[+-]/.exec(form)?.[1]; // no "N" in it: the delimiter comes before the number
    if (!alias) {
      throw new Error(`postfix-config --aliases cannot serve the address form "${form}": local(8) finds an alias by the part ` +
        'before the first "+" or "-", which must come before the number (ticket-N); use the pipe(8) form, "ticket-mail postfix-config" without --aliases');
    }
    names.push(alias);
  }
  return [...new Set(names)];
}

/**
 * The Postfix configuration for this installation: the ticket domain as a relay domain delivered
 * by a pipe(8) service (in mydestination, local(8)'s recipient table would refuse every ticket
 * address), and a policy service that refuses unknown tickets at SMTP time; or, with `aliases`,
 * the local(8) form through an alias map of the tickets user's own.
 */
export function postfixSnippet(cfg: Config, inst: Installation, aliases: boolean): string {
  const domain = cfg.domain ?? 'tickets.example.org';
  const policy = `${programWords(inst).join(' ')} postfix-policy --config ${inst.config}`;
  const head = `# ticket-mail for Postfix 3.x, printed by "ticket-mail postfix-config${aliases ? ' --aliases' : ''}" for this installation.
# Where a setting below already has a value in main.cf, add ours to it rather than replace it.
`;
  const policyPart = `
# SMTP-time 550 for a ticket that exists neither open nor archived, from any client. Mail from
# local sendmail skips smtpd: ticket-mail then files it in "unmatched" and tells the sender.
# ---- main.cf ----
smtpd_recipient_restrictions = check_policy_service unix:private/ticketpolicy
ticketpolicy_time_limit = 3600s
# ---- master.cf ----
ticketpolicy unix -  n       n       -       0       spawn
  user=${inst.user} argv=${policy}
`;
  if (aliases) {
    return `${head}# The local(8) form: the command runs as the owner of the alias map, so the map is the tickets
# user's own (never in /etc/postfix). ticket-42-done@ finds the alias "ticket" through the "-"
# delimiter; "+" keeps working for everyone else (a user whose name holds a "-" loses its "+").
# ---- ${inst.home}/aliases, then as ${inst.user}: postalias ${inst.home}/aliases ----
${aliasNames(cfg).map((name) => `${name}: "|${inst.launcher}"`).join('\n')}
# ---- main.cf ----
mydestination = $myhostname, localhost, ${domain}
alias_maps = hash:/etc/aliases, hash:${inst.home}/aliases
recipient_delimiter = +-
${policyPart}`;
  }
  return `${head}# The pipe(8) service, running the launcher as ${inst.user} (it exits 75 when ticket-mail
# cannot run at all, so a broken install keeps mail queued; "=" keeps each value one word).
# ---- main.cf ----
relay_domains = ${domain}
transport_maps = inline:{ ${domain}=ticketmail: }
ticketmail_destination_recipient_limit = 1
# ---- master.cf ----
ticketmail unix  -       n       n       -       -       pipe
  flags=Rq user=${inst.user} null_sender= argv=${inst.launcher} --recipient=\${recipient} --sender=\${sender}
${policyPart}`;
}

/**
 * One answer of the Postfix policy service (SMTPD_POLICY_README) to a request's attributes:
 * a recipient at our domain naming a ticket that is neither open nor archived is refused.
 */
export function policyAnswer(request: Map<string, string>, cfg: Config, exists: (n: number) => boolean): string {
  const recipient = (request.get('recipient') ?? '').toLowerCase();
  const at = recipient.lastIndexOf('@');
  if (request.get('protocol_state') !== 'RCPT' || at < 0 || (cfg.domain && recipient.slice(at + 1) !== cfg.domain)) return 'DUNNO';
  const kind = classifyLocalPart(recipient.slice(0, at), cfg);
  if (!kind || kind.kind === 'submit') return 'DUNNO';
  const n = parseTicketNumber(kind.digits);
  return n !== undefined && exists(n) ? 'DUNNO' : '550 5.1.1 no such ticket';
}

// ---------------------------------------------------------------------------------------
// I/O shell: reading stdin, the audit log, exit codes
// ---------------------------------------------------------------------------------------

/** The message as read: without the MTA's From_ line, its head parsed, its envelope resolved. */
export function parseIncoming(cfg: Config, raw: Message, env: NodeJS.ProcessEnv, flags: { recipient?: string; sender?: string }): Incoming {
  if (raw.size === 0) throw new MailError(65, 'empty message');
  const { fromLineSender, message: first } = splitEnvelopeLine(raw.first);
  const message = raw.skip(raw.first.length - first.length);
  // Routing reads only the head, and at most the first MiB of it: a hostile 10 MB header line
  // is stored as it came but parsed no further.
  const head = parseHead(first.subarray(0, headEnd(first)).toString('utf8'));
  if (!head) throw new MailError(65, 'not a mail message: it has no header');
  const idField = field(head, 'message-id');
  const messageId = messageIds(idField)[0];
  // Without a Message-ID, the message is its own key: hashed now (rare), where others are hashed
  // only when their ID comes again.
  const print = idField ? undefined : messagePrint(message);
  // Deduplicated by the whole field, whatever it holds (too long for a msg-id, no brackets): an
  // MTA's retry has it unchanged. One plain <msg-id> keys as that ID, as replies reference it.
  const plainId = messageId !== undefined && idField?.replace(/\([^()]*\)/g, '').trim() === `<${messageId}>`; // comments aside
  const idKey = MessageIndex.key(!idField ? `fingerprint ${print}` : plainId ? messageId! : idField);
  return { message, head, envelope: resolveEnvelope(flags, env, fromLineSender, head, cfg), at: new Date(), messageId, idKey, print };
}

/** route() with its one disk fact: which existing ticket holds a Message-ID (ours name it). */
function routeIncoming(store: Store, index: MessageIndex, incoming: Incoming): Route {
  // An ID filed in more than one ticket threads nowhere: a reused ID (a stranger's, filed first
  // under someone else's) must not steer replies to that message into the stranger's ticket.
  const ticketOfMessageId = (id: string) => {
    const ours = ticketOfOurMessageId(id, store.cfg);
    if (ours !== undefined) return store.placeOf(ours) ? ours : undefined;
    const tickets = [...new Set(index.tickets(MessageIndex.key(id)))].filter((n) => store.placeOf(n));
    return tickets.length === 1 ? tickets[0] : undefined;
  };
  return route(incoming.head, incoming.envelope, store.cfg, ticketOfMessageId, (n) => store.placeOf(n) !== undefined);
}

/**
 * Reads all of stdin (before any lock is taken), refusing (65) past maxSize without reading
 * the rest. The first MiB stays in memory; the rest goes to a spool file in `spoolDir`,
 * unlinked at once so that nothing is left behind whatever happens to us.
 */
export function readStdin(maxSize: number, spoolDir: string | undefined): Message {
  const first = Buffer.allocUnsafe(Message.IN_MEMORY);
  let inMemory = 0;
  let chunk: Buffer | undefined; // past the first MiB, reads go through it into the spool
  let spool: { fd: number; size: number; last: number } | undefined;
  for (;;) {
    const into = inMemory < first.length ? first : (chunk ??= Buffer.allocUnsafe(1 << 16));
    const at = into === first ? inMemory : 0;
    let got;
    try {
      got = readSync(0, into, at, into.length - at, null);
    } catch (e) {
      if (code(e) === 'EAGAIN') { sleep(5); continue; }
      if (code(e) === 'EOF') break;
      throw temporary(`cannot read the message: ${reason(e)}`);
    }
    if (got === 0) break;
    if (inMemory + (spool?.size ?? 0) + got > maxSize) throw new MailError(65, `message larger than the ${maxSize}-byte limit`);
    if (into === first) { inMemory += got; continue; }
    if (!spool) {
      if (!spoolDir) throw new MailError(65, `message larger than ${Message.IN_MEMORY} bytes`);
      const path = join(spoolDir, `spool-${process.pid}-${unique()}`);
      try {
        spool = { fd: openSync(path, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600), size: 0, last: 0 };
        unlinkSync(path);
      } catch (e) { throw temporary(`cannot spool the message: ${reason(e)}`); }
    }
    try { writeAll(spool.fd, into.subarray(0, got)); } catch (e) { throw temporary(`cannot spool the message: ${reason(e)}`); }
    spool.size += got;
    spool.last = into[got - 1]!;
  }
  return new Message(first.subarray(0, inMemory), spool);
}

/**
 * One line per delivery in .ticket-mail/log, so "where did my mail go?" has an answer. Each
 * field is encoded (encodeToken: no tab, no line break, nothing lost) and at most 1000
 * characters; a longer one is cut and ends in " [cut]". The log is opened for each line, never
 * held open, and the line is one write(): logrotate's rename rotates it (see logrotateSnippet).
 */
function audit(store: Store, fields: Array<string | number | undefined>): void {
  const line = fields.map((f) => {
    const token = f === undefined || f === '' ? '-' : encodeToken(String(f));
    return token.length > 1000 ? `${token.slice(0, 1000)} [cut]` : token;
  }).join('\t') + '\n';
  try {
    const fd = openStateFile(join(store.state, 'log'), fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT);
    try { writeSync(fd, line); } finally { closeSync(fd); }
  } catch (e) {
    process.stderr.write(`ticket-mail: warning: cannot write the log: ${reason(e)}\n`);
  }
}

/**
 * The delivery: bytes in, decision, effects (the folders exist: the message was read into
 * them). The replies come after, in sendReplies.
 */
export function deliver(store: Store, raw: Message, env: NodeJS.ProcessEnv,
  flags: { recipient?: string; sender?: string }): { incoming: Incoming; filed: Filed } {
  const incoming = parseIncoming(store.cfg, raw, env, flags);
  const index = new MessageIndex(store.state);
  const routed = routeIncoming(store, index, incoming);
  const { envelope } = incoming;
  let filed: Filed | undefined;
  try {
    filed = file(store, index, incoming, routed);
    return { incoming, filed };
  } finally {
    audit(store, [new Date().toISOString(), field(incoming.head, 'message-id'), envelope.sender || '<>', envelope.recipient,
      routed.action + ('rule' in routed ? `/${routed.rule}` : ''), filed?.ticket, filed?.outcome ?? 'failed', filed?.warning]);
  }
}

// ---------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------

const VERSION = typeof TICKET_MAIL_VERSION === 'string' ? TICKET_MAIL_VERSION : '0.0.0-dev';

/**
 * The config file: JSON, where a line whose first non-blank characters are "//" is a comment
 * (no JSON string can hold a line break, so such a line is never inside a value).
 */
function readConfigFile(path: string | undefined): Record<string, unknown> {
  if (!path) return {};
  let text;
  try { text = readFileSync(path, 'utf8'); } catch (e) { throw temporary(`cannot read config file ${path}: ${reason(e)}`); }
  try { return parseConfigText(text); } catch (e) { throw temporary(`cannot read config file ${path}: ${(e as Error).message}`); }
}

function parseConfigText(text: string): Record<string, unknown> {
  let parsed: unknown;
  try { parsed = JSON.parse(text.replace(/^[ \t]*\/\/.*$/gm, '')); } catch { throw new Error('not valid JSON'); }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('must hold a JSON object');
  return parsed as Record<string, unknown>;
}

/** Exit with the MTA contract: one sentence on stderr, never a stack trace. */
function fail(e: unknown): never {
  // An unexpected error names what it was doing, where, and as whom: "EACCES" alone helps nobody.
  const { syscall, path } = (e ?? {}) as NodeJS.ErrnoException;
  const where = path ? ` (${syscall ? `${syscall} ` : ''}${path}, as uid ${process.getuid?.()})` : '';
  const err = e instanceof MailError ? e : temporary(`unexpected error: ${reason(e)}${where}`);
  process.stderr.write(`ticket-mail: ${err.message}\n`);
  process.exit(err.exitCode);
}

/**
 * Each --option's values as typed. cac turns values that look like numbers into numbers
 * ("" becomes 0, "007" becomes 7), which would corrupt an empty --sender or a local part;
 * our option values are text, so they are read again from the command line. `rest`: the
 * arguments that are none of `takesValue` (a command, another flag); `plain`: each of these
 * options came with its value, and there was no "--".
 */
export function typedOptions(args: string[], takesValue: Set<string>): { values: Record<string, string[]>; plain: boolean; rest: string[] } {
  const values: Record<string, string[]> = {};
  const rest: string[] = []; // what is not one of these options: a command, another flag
  let plain = true;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--') return { values, plain: false, rest };
    const m = /^--([a-z][a-z-]*)(?:=([\s\S]*))?$/.exec(args[i]!);
    const name = m && camelCase(m[1]!);
    if (!name || !takesValue.has(name)) { rest.push(args[i]!); continue; }
    const value = m[2] ?? args[++i];
    // "--dir --domain x" lacks a value (cac explains); "--sender -bob@x" does not: an MTA
    // passing an address that begins with "-" must not have its mail deferred for ever.
    if (value === undefined || (m[2] === undefined && value.startsWith('--'))) plain = false;
    if (value !== undefined) (values[name] ??= []).push(value);
  }
  return { values, plain, rest };
}

const camelCase = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

let typed: Record<string, string[]> = {};

/** The settings that are lists: each flag adds one. */
const REPEATABLE = new Set<string>(['admin', 'maintainer']);

/** Settings from the command line and the config file (or, for setup, which writes it, none), checked. */
function configFrom(forSetup = false): Config {
  const flags: RawSettings = {};
  for (const name of SETTING_NAMES) {
    const values = typed[name];
    // A repeated flag: for anything but --admin and --maintainer the last one wins.
    if (values) flags[name] = REPEATABLE.has(name) ? values : values.at(-1);
  }
  // setup, run again (as the README says, after moving node), keeps what the config file it wrote
  // says (flags win: the tickets folder, the domain, the team) and checks it as the pipe will; it
  // makes the default folder only when neither names one.
  const setupFile = typed.config?.at(-1) ?? INSTALL_DEFAULTS.config;
  const file = readConfigFile(forSetup ? (existsSync(setupFile) ? setupFile : undefined) : configPath());
  if (forSetup && flags.dir === undefined && file.dir === undefined) flags.dir = INSTALL_DEFAULTS.dir;
  return resolveConfig(flags, file, process.env);
}

/**
 * --config, else $TICKET_MAIL_CONFIG (set but empty: none), else the one setup writes, when it
 * exists: so the pipe and a bare "ticket-mail list" read the same settings.
 */
function configPath(): string | undefined {
  const given = typed.config?.at(-1) ?? process.env.TICKET_MAIL_CONFIG;
  if (given !== undefined) return given || undefined;
  try {
    return statSync(INSTALL_DEFAULTS.config, { throwIfNoEntry: false }) ? INSTALL_DEFAULTS.config : undefined;
  } catch { return INSTALL_DEFAULTS.config; } // there but unreadable: reading it says why
}

/** A warning on stderr; it may quote mail (an address, a reason), so it is shown through visible(). */
const warn = (warning: string) => process.stderr.write(`ticket-mail: ${visible(warning)}\n`);

/** The --recipient and --sender overrides, as typed. */
const envelopeFlags = (): EnvelopeFlags => ({ recipient: typed.recipient?.at(-1), sender: typed.sender?.at(-1), localUser: typed.localUser?.at(-1) });

async function runDelivery(afterDelivery?: () => void): Promise<void> {
  try {
    const cfg = configFrom();
    await actAsOwner(cfg).catch((e) => { throw temporary((e as Error).message); });
    const store = new Store(cfg);
    store.ensureFolders(); // before reading: a large message is spooled into the state folder
    const raw = readStdin(cfg.maxSize, store.state);
    const { incoming, filed } = deliver(store, raw, process.env, envelopeFlags());
    if (filed.warning) warn(filed.warning);
    // The message is filed and fsync'd: from here on nothing may turn the exit status non-zero.
    for (const warning of await sendReplies(store, incoming, filed)) warn(warning);
    process.exitCode = 0;
  } catch (e) { fail(e); }
  afterDelivery?.();
  process.exit(); // as fail() does: nothing is left to run, and tearing down the heap costs ~0.5 ms
}

/**
 * Runs a maintainer's command: its errors are one line on stderr and exit 1 (these are
 * people at a terminal or scripts, not an MTA).
 */
function tool(run: (cfg: Config, ...args: any[]) => unknown, as: 'owner' | 'caller' | 'setup' = 'owner', failure = 1) {
  return async (...args: any[]) => {
    try {
      const cfg = configFrom(as === 'setup');
      if (as === 'owner') await actAsOwner(cfg);
      const done = await run(cfg, ...args);
      process.exitCode = typeof done === 'number' ? done : done === false ? 1 : 0;
    } catch (e) {
      const { path, syscall } = (e ?? {}) as NodeJS.ErrnoException;
      warn(e instanceof Error && !(e as NodeJS.ErrnoException).code ? e.message : `error: ${reason(e)}${path ? ` (${syscall ? `${syscall} ` : ''}${path})` : ''}`);
      process.exitCode = failure;
    }
  };
}

function ticketArgument(value: unknown): number {
  const n = parseTicketNumber(String(value ?? ''));
  if (n === undefined) throw new Error(`"${printable(String(value ?? ''), 40)}" is not a ticket number`);
  return n;
}

/** Colour only on a terminal, and never with NO_COLOR. */
const colour = (code: number, text: string) =>
  (process.stdout.isTTY && !process.env.NO_COLOR ? `\x1b[${code}m${text}\x1b[0m` : text);

/** A table cell: text (shown through visible()), or text and the colour it is shown in. */
type Cell = string | { text: string; colour: number };

/** Aligned columns, padded by the width a terminal shows (a CJK character takes two); the last one is not padded. */
function table(header: string[], rows: Cell[][]): string {
  const shown = rows.map((r) => r.map((c) => (typeof c === 'string' ? { text: visible(c) } : { ...c, text: visible(c.text) })));
  const widths = header.map((h, i) => Math.max(displayWidth(h), ...shown.map((r) => displayWidth(r[i]!.text))));
  const line = (cells: Array<{ text: string; colour?: number }>) => cells.map((c, i) => {
    const padded = i === cells.length - 1 ? c.text : c.text + ' '.repeat(widths[i]! - displayWidth(c.text));
    return c.colour === undefined ? padded : colour(c.colour, padded);
  }).join('  ').trimEnd();
  return [colour(1, line(header.map((text) => ({ text })))), ...shown.map(line)].join('\n') + '\n';
}

function ago(iso: string, now = Date.now()): string {
  if (!process.stdout.isTTY) return iso;
  const s = Math.max(0, (now - Date.parse(iso)) / 1000);
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['min', 60]] as const) if (s >= size) return `${Math.floor(s / size)} ${unit} ago`;
  return 'just now';
}

/**
 * Output of the maintainer's commands; `ticket-mail list | head` closing it early is no error.
 * Whatever came from mail is passed through visible() (or table(), or printJson()) first.
 */
let stdoutWatched = false;
const print = (text: string) => {
  if (!stdoutWatched) {
    stdoutWatched = true;
    process.stdout.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      process.stderr.write(`ticket-mail: cannot write the output: ${reason(e)}\n`); // a full disk, /dev/full
      process.exit(1);
    });
  }
  process.stdout.write(text);
};

/** The one printer of every --json output. */
const printJson = (value: unknown) => print(`${terminalJson(value)}\n`);

/** From and Subject cleaned as for the mail we send: each run of controls a space, bidi controls gone. */
const shownRow = <T extends { submitter: string; subject: string }>(r: T): T => ({ ...r, submitter: headerSafe(r.submitter, 80), subject: headerSafe(r.subject, 100) });

function runList(cfg: Config, options: Record<string, unknown>): void {
  const listed = listTickets(new Store(cfg), options.waiting ? 'open' : options.all ? 'all' : options.closed ? 'closed' : 'open');
  if (options.waiting) {
    const now = Date.now();
    const rows = waitingOnUs(listed).map((r) => ({ ...shownRow(r), waitedSeconds: Math.round((now - Date.parse(r.waitingSince!)) / 1000) }));
    if (options.json) return printJson(rows);
    print(table(['#', 'WAITED', 'SINCE', 'MSGS', 'SUBMITTER', 'SUBJECT'], rows.map((r) => [
      String(r.ticket), { text: shortDuration(r.waitedSeconds * 1000), colour: 33 }, ago(r.waitingSince!, now), String(r.messages), r.submitter, r.subject])));
    return;
  }
  const rows = listed.map(shownRow);
  if (options.json) return printJson(rows);
  print(table(['#', 'STATE', 'WAITING', 'MSGS', 'LAST ACTIVITY', 'SUBMITTER', 'SUBJECT'], rows.map((r) => [
    String(r.ticket), { text: r.state, colour: r.state === 'open' ? 32 : 2 }, r.waiting === 'us' ? { text: 'on us', colour: 33 } : r.waiting ? 'on them' : '',
    String(r.messages), ago(r.lastActivity), r.submitter, r.subject])));
}

async function runStats(cfg: Config, options: Record<string, unknown>): Promise<void> {
  const store = new Store(cfg);
  const stats = statsOf(countedTickets(store), await readCloses(store), Date.now());
  if (options.json) return printJson({ ...stats, oldestOpen: stats.oldestOpen.map(shownRow), longestWaits: stats.longestWaits.map(shownRow) });
  const spreadLine = (what: string, s: TicketStats['firstAnswer']) => `${what}: ${s.tickets ? `median ${shortDuration(s.medianSeconds! * 1000)}, 90% within ${shortDuration(s.p90Seconds! * 1000)}` : 'none yet'} (${s.tickets} tickets opened since ${stats.weeks[0]!.start})\n`;
  print(`${colour(1, `${stats.open} open, ${stats.closed} closed`)} (closes from ${stats.closesFrom === 'log' ? 'the audit log' : 'the files: no audit log readable'})\n\n`);
  print(table(['WEEK OF', 'OPENED', 'CLOSED', 'BACKLOG'], stats.weeks.map((w) => [w.start, String(w.opened), String(w.closed), String(w.backlog)])));
  for (const key of ['opened', 'closed', 'backlog'] as const) print(`${key.padEnd(8)} ${sparkline(stats.weeks.map((w) => w[key]))}\n`);
  print(`\n${spreadLine('Time to first answer', stats.firstAnswer)}${spreadLine('Time to close', stats.timeToClose)}`);
  const listed = (title: string, rows: Array<{ ticket: number; submitter: string; subject: string }>, when: string, age: (i: number) => string) => {
    print(`\n${colour(1, title)}\n`);
    print(rows.length ? table(['#', when, 'SUBMITTER', 'SUBJECT'], rows.map((r, i) => [String(r.ticket), age(i), shownRow(r).submitter, shownRow(r).subject])) : 'none\n');
  };
  listed('Oldest open tickets', stats.oldestOpen, 'OPEN FOR', (i) => shortDuration(stats.oldestOpen[i]!.ageSeconds * 1000));
  listed('Longest waits on us', stats.longestWaits, 'WAITED', (i) => shortDuration(stats.longestWaits[i]!.waitedSeconds * 1000));
}

async function runShow(cfg: Config, ticket: unknown, options: Record<string, unknown>): Promise<void> {
  const shown = await showTicket(new Store(cfg), ticketArgument(ticket));
  if (options.json) return printJson(shown);
  print(`${colour(1, `Ticket ${shown.ticket}`)} (${shown.state}, ${shown.messages.length} messages)\n${visible(shown.path)}\n`);
  for (const [i, m] of shown.messages.entries()) {
    print(`\n${colour(1, `${i + 1}. ${visible(m.subject)}`)}\n   ${visible(m.from)}, ${visible(m.date)}\n`);
    for (const line of m.text) print(`   | ${visible(line)}\n`);
    if (m.attachments.length) print(`   attachments: ${m.attachments.map(visible).join(', ')}\n`);
  }
}

function runRoute(cfg: Config, options: Record<string, unknown>): void {
  // A dry run writes nothing to the tickets folder: a large message is spooled in $TMPDIR.
  const incoming = parseIncoming(cfg, readStdin(cfg.maxSize, tmpdir()), process.env, envelopeFlags());
  const r = dryRoute(new Store(cfg), incoming);
  if (options.json) return printJson(r);
  const rule = 'rule' in r.route ? `, rule ${r.route.rule}` : `: ${r.route.reason}`;
  print(table(['', ''], [
    ['recipient', `${r.recipient ?? '(none)'} (from ${r.source})`],
    ['sender', r.sender || '<> (null sender)'],
    ['decision', `${r.route.action}${'ticket' in r.route ? ` ticket ${r.route.ticket}` : ''}${rule}`],
    ['outcome', `${r.outcome}${r.ticket !== null ? ` (ticket ${r.ticket})` : ''}${r.missing ? ` (ticket ${r.missing} does not exist${r.outcome === 'bounced' ? ': exit 67' : ''})` : ''}`],
    ['replies', r.replies.map((x) => `${x.kind} to ${x.to}`).join(', ') || 'none'],
    ...(r.held.length ? [['held back', r.held.map((h) => `${h.kind} to ${h.to}: ${h.why}`).join('; ')]] : []),
    ...(r.noAutoReplyBecause ? [['no auto-reply', r.noAutoReplyBecause]] : []),
  ]).split('\n').slice(1).join('\n'));
}

/**
 * Who closes or reopens at the shell, for the note and the notices: --as, else $EMAIL (mutt's and
 * many tools' way to name one's address), else the admin whose local part is the login name,
 * else the first admin, else login@domain.
 */
export function closer(cfg: Config, env: NodeJS.ProcessEnv, domain: string, owner?: string): string {
  const email = env.EMAIL?.trim().toLowerCase();
  if (email && isPlainAddress(email)) return email;
  // "sudo -u tickets ticket-mail close 3" is bob's close.
  const login = env.SUDO_USER || env.USER || env.LOGNAME || '';
  const admin = cfg.admins.find((a) => a.slice(0, a.lastIndexOf('@')) === login.toLowerCase());
  if (admin) return admin;
  // A team's maintainer is named by their login, not taken for the first admin; the tickets user
  // (or root), nobody in particular, is.
  const teamMember = cfg.maintainers.includes(login) && login !== owner && isPlainAddress(`${login.toLowerCase()}@${domain}`);
  return teamMember || !cfg.admins[0] ? `${login.toLowerCase() || 'maintainer'}@${domain}` : cfg.admins[0];
}

/** `close N` / `reopen N`: the same delivery as by mail, with a note (or stdin) as the message. */
async function runTicketCommand(cfg: Config, action: 'close' | 'reopen', ticket: unknown, options: Record<string, unknown>): Promise<void> {
  const n = ticketArgument(ticket);
  const place = new Store(cfg).placeOf(n);
  if (!place) throw new Error(`ticket ${n} does not exist`);
  if (action === 'close' && place === 'archived') throw new Error(`ticket ${n} is already closed`);
  if (action === 'reopen' && place === 'open') throw new Error(`ticket ${n} is already open`);
  const domain = cfg.domain ?? 'localhost';
  const recipient = `${(action === 'close' ? cfg.closeAddress : cfg.ticketAddress).replace('N', String(n))}@${domain}`;
  const author = (typed.as?.at(-1) ?? closer(cfg, callerEnv, domain, userName(statSync(cfg.dir).uid))).toLowerCase();
  if (!isPlainAddress(author)) throw new Error(`bad --as address "${printable(author, 80)}"`);
  // Mail from a robot's address (postmaster@, noreply@) never closes or reopens: not the note either.
  const robot = whyAutomatic(new Map(), author);
  if (robot) throw new Error(`the note would come from a ${robot}, whose mail never ${action}s a ticket: give --as a person's address`);
  if (!writable(cfg.dir)) {
    // A maintainer of a team reads the tickets; only the pipe's user writes them. A close goes by
    // mail, which the MTA vouches for (--maintainer); a reopen cannot (their mail keeps a ticket closed).
    if (action === 'reopen') throw new Error(`only the owner of ${cfg.dir} writes the tickets: sudo -u ${userName(statSync(cfg.dir).uid)} ticket-mail reopen ${n}`);
    if (options.quiet) throw new Error('a close by mail sends the notices delivery sends: --quiet is for the owner of the tickets');
    const given = process.stdin.isTTY ? undefined : readStdin(cfg.maxSize, tmpdir());
    return closeByMail(cfg, n, recipient, given?.size ? given : Message.of(commandNote(action, n, author, recipient, domain, new Date())));
  }
  // The maintainer at the shell has the files anyway: the close policy is for mail.
  const store = new Store({ ...cfg, closePolicy: 'anyone' });
  store.ensureFolders();
  const given = process.stdin.isTTY ? undefined : readStdin(cfg.maxSize, store.state);
  const message = given?.size ? given : Message.of(commandNote(action, n, author, recipient, domain, new Date()));
  const { incoming, filed } = deliver(store, message, {}, { recipient, sender: author });
  if (filed.warning) warn(filed.warning);
  if (!options.quiet) for (const warning of await sendReplies(store, incoming, filed)) warn(warning);
  print(`ticket ${n}: ${filed.outcome}\n`);
  // Mail that does not close or reopen (a copy of a message the ticket has, automatic mail) is
  // filed as by mail; the command says why it did not do what it was asked.
  const done = action === 'close' ? 'closed' : 'reopened';
  if (filed.outcome !== done) {
    throw new Error(`ticket ${n} was not ${done}: ${filed.outcome === 'duplicate' ? 'the message on stdin is already filed'
      : `the message on stdin is automatic mail, which never ${action}s a ticket`}`);
  }
}

const writable = (path: string) => { try { accessSync(path, fsc.W_OK); return true; } catch { return false; } };

/**
 * A team maintainer's close: the note goes by mail to ticket-N-done@ as they send any mail (the
 * MTA then says who sent it), and the command waits, for a bound, until the ticket is closed.
 */
async function closeByMail(cfg: Config, n: number, recipient: string, note: Message): Promise<void> {
  const { spawnSync } = await childProcess();
  const r = spawnSync(cfg.sendmail, ['-oi', '--', recipient], { input: Buffer.concat([...note.chunks()]), stdio: ['pipe', 'ignore', 'inherit'], timeout: 60_000 });
  if (r.error || r.status !== 0) throw new Error(`cannot mail ${recipient}: ${cfg.sendmail} ${r.error ? reason(r.error) : `exited with status ${r.status}`}`);
  const store = new Store(cfg);
  // The MTA delivers in the background; a person waits a few seconds, not for ever.
  for (let waited = 0; waited < 15_000 && store.placeOf(n) !== 'archived'; waited += 100) await new Promise((done) => setTimeout(done, 100));
  if (store.placeOf(n) !== 'archived') {
    throw new Error(`ticket ${n}: mailed ${recipient}, still open after 15 s: the mail is queued (the MTA's log), or delivery refused the close ` +
      `(the audit log; is ${callerEnv.USER || 'your login'} in the pipe's "maintainer" list?)`);
  }
  print(`ticket ${n}: closed (by mail to ${recipient})\n`);
}

function runMuttrc(cfg: Config): void {
  // The command mutt's hooks run: this very program, as it was started.
  print(muttHooks(new Store(cfg), programWords(runningProgram())));
}

async function runDraft(_cfg: Config, file: unknown): Promise<void> {
  const cc = typed.cc?.at(-1);
  if (!cc || !isPlainAddress(cc)) throw new Error('draft needs --cc ADDRESS');
  const path = String(file);
  // As bytes (Latin-1 keeps each one): a draft in another charset than UTF-8 must come back unchanged.
  writeFileSync(path, addCc(readFileSync(path, 'latin1'), cc), 'latin1');
  const editor = process.env.VISUAL || process.env.EDITOR || 'vi';
  const { spawnSync } = await childProcess();
  const r = spawnSync('/bin/sh', ['-c', `${editor} "$1"`, 'editor', path], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`${editor} exited with status ${r.status}`);
}

function runCheck(cfg: Config, options: Record<string, unknown>): boolean {
  const extra = ([] as unknown[]).concat(options.mtaConfig ?? []).map(String);
  let inst: Installation | undefined;
  let unknown: Finding[] = [];
  try { inst = installation(cfg, {}); } catch (e) { unknown = [{ ok: false, text: `this installation cannot be read: ${(e as Error).message}` }]; }
  const findings = [...unknown, ...checkSetup(new Store(cfg), [...MTA_FILES, ...extra], inst)];
  for (const f of findings) print(`${f.ok ? colour(32, 'ok ') : colour(31, 'FIX')}  ${visible(f.text)}\n`);
  return findings.every((f) => f.ok);
}

async function runFlush(cfg: Config): Promise<boolean> {
  const { sent, kept, error } = await flushOutbox(new Store(cfg));
  print(`sent ${sent}, kept ${kept}${error ? ` (${visible(error)})` : ''}\n`);
  return kept === 0;
}

function runPrune(cfg: Config): boolean {
  const { removed, kept, refused } = pruneReplyCounters(new Store(cfg), new Date());
  for (const why of refused) warn(`left alone: ${why}`);
  print(`removed ${removed}, kept ${kept}\n`);
  return refused.length === 0;
}

/** The environment the command was started with, before actAsOwner made it the owner's: who runs it. */
let callerEnv: NodeJS.ProcessEnv = process.env;

/** A user account as getent(1) tells it (so LDAP and other NSS users count too). */
async function account(user: string | number): Promise<{ name: string; uid: number; gid: number; home: string } | undefined> {
  const { spawnSync } = await childProcess();
  const r = spawnSync('getent', ['passwd', String(user)], { encoding: 'utf8' });
  const [name, , uid, gid, , home] = r.status === 0 ? r.stdout.trim().split(':') : [];
  return name && home !== undefined ? { name, uid: Number(uid), gid: Number(gid), home } : undefined;
}

/** A group as getent(1) tells it, by name or gid. */
async function groupEntryOf(group: string | number): Promise<{ name: string; gid: number; members: string[] } | undefined> {
  const { spawnSync } = await childProcess();
  const r = spawnSync('getent', ['group', String(group)], { encoding: 'utf8' });
  const [name, , gid, members] = r.status === 0 ? r.stdout.trim().split(':') : [];
  return name && gid ? { name, gid: Number(gid), members: (members ?? '').split(',').filter(Boolean) } : undefined;
}

/**
 * Run as root on a tickets folder another user owns, we become that user: whatever root made
 * in there (an index folder, the list cache) would later defer that user's deliveries for ever.
 */
async function actAsOwner(cfg: Config): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const owner = statSync(cfg.dir, { throwIfNoEntry: false })?.uid;
  if (owner === undefined || owner === 0) return;
  const who = await account(owner);
  const { spawnSync } = await childProcess();
  const groups = who && spawnSync('id', ['-G', who.name], { encoding: 'utf8' }).stdout?.trim().split(/\s+/).map(Number);
  if (!who || !groups?.length || !process.setuid || !process.setgid || !process.setgroups) {
    throw new Error(`${cfg.dir} belongs to ${who?.name ?? `uid ${owner}`}: run this as that user (sudo -u ${who?.name ?? `'#${owner}'`} ticket-mail ...)`);
  }
  process.setgroups(groups);
  process.setgid(who.gid);
  process.setuid(who.uid);
  callerEnv = { ...process.env };
  Object.assign(process.env, { HOME: who.home, USER: who.name, LOGNAME: who.name });
}

/**
 * The installation's paths: the options, else what setup recorded in the config file, else the
 * defaults; node and this program as they run now. Each must go into an MTA's configuration as
 * it is, or it is refused.
 */
function installation(cfg: Config, options: Record<string, unknown>): Installation {
  const config = configPath() ?? INSTALL_DEFAULTS.config;
  const recorded = recordedInstallation(statSync(config, { throwIfNoEntry: false }) ? config : undefined);
  // A repeated option: the last one wins, as for the settings.
  const pick = (name: 'user' | 'home' | 'launcher') => String(([] as unknown[]).concat(options[name] ?? []).at(-1) ?? recorded[name] ?? INSTALL_DEFAULTS[name]);
  return mtaSafe({
    user: pick('user'), home: pick('home'), launcher: pick('launcher'), config,
    ...runningProgram(),
  }, cfg.dir);
}

/** The config file's record of the installation, which setup writes: exim-config, postfix-config and check read it back. */
const INSTALLATION_KEY = 'installation';

function recordedInstallation(path: string | undefined): Partial<Pick<Installation, 'user' | 'home' | 'launcher'>> {
  const recorded = readConfigFile(path)[INSTALLATION_KEY];
  if (recorded === undefined) return {};
  const fields: Array<[string, unknown]> = recorded && typeof recorded === 'object' && !Array.isArray(recorded) ? Object.entries(recorded) : [['', 0]];
  if (fields.some(([k, v]) => !['user', 'home', 'launcher'].includes(k) || typeof v !== 'string')) {
    throw new Error(`config file ${path}: "${INSTALLATION_KEY}" must hold the strings user, home and launcher`);
  }
  return recorded as Partial<Installation>;
}

const installationLine = (inst: Pick<Installation, 'user' | 'home' | 'launcher'>) =>
  `  ${JSON.stringify(INSTALLATION_KEY)}: ${JSON.stringify({ user: inst.user, home: inst.home, launcher: inst.launcher })},`;

/**
 * Records the installation in an existing config file, as its one "installation" line (made
 * the object's first member, or replaced); the rest of the file stays as its owner wrote it.
 * Returns whether anything changed.
 */
function recordInstallation(path: string, inst: Installation): boolean {
  const now = recordedInstallation(path);
  if (now.user === inst.user && now.home === inst.home && now.launcher === inst.launcher) return false;
  const text = readFileSync(path, 'utf8');
  // Its member is replaced where it is (an object without braces inside, on one line or several);
  // else it becomes the first member, after the object's "{" (a file may hold all on one line).
  const ours = /"installation"[ \t\r\n]*:[ \t\r\n]*\{[^{}]*\}/;
  const member = installationLine(inst).trim().replace(/,$/, '');
  const updated = ours.test(text) ? text.replace(ours, () => member)
    : text.replace(/^((?:[ \t]*(?:\/\/.*)?\r?\n)*[ \t]*\{)/, `$1\n  ${member},\n`);
  // Nothing but the record may change: what the file says otherwise is its owner's.
  const before = JSON.stringify({ ...readConfigFile(path), [INSTALLATION_KEY]: undefined });
  const after = (() => { try { return parseConfigText(updated); } catch { return undefined; } })();
  const recorded = after?.[INSTALLATION_KEY] as Partial<Installation> | undefined;
  if (!after || JSON.stringify({ ...after, [INSTALLATION_KEY]: undefined }) !== before ||
    recorded?.user !== inst.user || recorded?.home !== inst.home || recorded?.launcher !== inst.launcher) {
    throw new Error(`cannot record this installation in ${path} without touching the rest: make its "${INSTALLATION_KEY}" member ${member.replace(/^"installation": /, '')}`);
  }
  const st = statSync(path);
  writeRootFile(path, updated, st.mode & 0o7777, { uid: st.uid, gid: st.gid });
  return true;
}

/** What an MTA's configuration can hold as it is: Exim expands "$" and "{" in a router, and a space ends a word in all of them. */
const MTA_SAFE_PATH = /^\/[A-Za-z0-9._/+-]*$/;
const MTA_SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$/;

function mtaSafe(inst: Installation, dir: string): Installation {
  const paths = [['the tickets folder', dir], ['--home', inst.home], ['--launcher', inst.launcher], ['--config', inst.config],
    ['node', inst.node], ['the program', inst.program]] as const;
  for (const [what, path] of paths) {
    if (!MTA_SAFE_PATH.test(path) && !(what === 'the program' && path === '')) {
      throw new Error(`${what} "${path.slice(0, 200)}" cannot go into the MTA's configuration as it is: use an absolute path of letters, digits and . _ / + - only`);
    }
  }
  if (!MTA_SAFE_NAME.test(inst.user)) throw new Error(`--user "${printable(inst.user, 40)}" is not a user name the MTA's configuration can hold`);
  return inst;
}

/** The commented config file setup writes. */
export function configFileText(cfg: Config, inst: Pick<Installation, 'user' | 'home' | 'launcher'>): string {
  return `// ticket-mail's settings: read by the MTA's pipe (through the launcher) and by every
// maintainer command (ticket-mail list, show, close, ...), which find this file without flags.
// Any option of "ticket-mail --help" can be set here under its camel-case name, e.g.
// "closePolicy": "anyone"; a flag on the command line wins. Lines starting with // are comments.
{
  // Where setup put the pipe's user, its HOME and the launcher: exim-config, postfix-config and check read it.
${installationLine(inst)}
  "dir": ${JSON.stringify(cfg.dir)},
  "domain": ${JSON.stringify(cfg.domain)},
  // Admins hear of new tickets and of updates, and may close any ticket.
  "admin": ${JSON.stringify(cfg.admins)},
  // The logins whose mail sent from this host (mutt's answers) is a maintainer's: it notifies no
  // admin, may close a ticket, and files into a closed ticket without reopening it.
  "maintainer": ${JSON.stringify(cfg.maintainers)},
  "sendmail": ${JSON.stringify(cfg.sendmail)}
}
`;
}

/**
 * One of setup's folders, made if missing, then given its owner and mode, never through a
 * symbolic link: the tickets user can replace archived/ with a link to /etc, and setup, run
 * again as root, would hand /etc over. Nor below a folder someone but root can change (they
 * could swap a folder on the way for a link); the folder's own parent may be the user's.
 */
/**
 * Refuses a path root is about to make or change below a folder someone else could change
 * (they could put a link on the way). `parentOwner`: a uid that may own the path's own parent.
 */
function refuseChangeableAbove(path: string, parentOwner = 0): void {
  const parent = join(path, '..');
  const ancestors = (from: string) => {
    const list: string[] = [];
    for (let p = from, up = join(p, '..'); ; p = up, up = join(up, '..')) { list.push(p); if (up === p) return list; }
  };
  const real = (() => { try { return realpathSync(parent); } catch { return undefined; } })();
  for (const folder of new Set([...ancestors(parent), ...(real ? ancestors(real) : [])])) {
    const st = statSync(folder, { throwIfNoEntry: false });
    if (!st) continue; // made below, by root
    const othersWrite = (st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0; // a sticky folder (/tmp) keeps root's entries root's
    const owner = folder === parent || folder === real ? [0, parentOwner] : [0];
    if (!owner.includes(st.uid) || othersWrite) {
      throw new Error(`setup will not make or change ${path}: ${folder} can be changed by ${othersWrite ? 'others than its owner' : `uid ${st.uid}`} ` +
        `(mode ${(st.mode & 0o7777).toString(8)}), who could put a link on the way; use a path only root can change`);
    }
  }
}

/**
 * A file setup writes as root (the launcher, the config file, the timer): below folders only root
 * can change, written beside its place through a descriptor that followed no link, then renamed.
 */
function writeRootFile(path: string, text: string, mode: number, owner?: { uid: number; gid: number }): void {
  refuseChangeableAbove(path);
  mkdirSync(join(path, '..'), { recursive: true, mode: 0o755 });
  const aside = `${path}.new`;
  rmSync(aside, { force: true }); // a leftover, or a link: unlinked, never followed
  const fd = openSync(aside, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, mode);
  try {
    writeAll(fd, Buffer.from(text));
    if (owner) fchownSync(fd, owner.uid, owner.gid);
    fchmodSync(fd, mode); // past the umask
    fsyncSync(fd);
  } finally { closeSync(fd); }
  renameSync(aside, path);
}

function setupFolder(path: string, uid: number, gid: number, mode: number): void {
  refuseChangeableAbove(path, uid);
  const link = new Error(`${path} is a symbolic link: setup gives a folder its owner and mode, never what a link names (remove the link, or give the real path)`);
  if (lstatSync(path, { throwIfNoEntry: false })?.isSymbolicLink()) throw link;
  mkdirSync(path, { recursive: true, mode: 0o700 });
  let fd;
  try { fd = openSync(path, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW); } catch (e) {
    // A link put there since: O_DIRECTORY with O_NOFOLLOW says ENOTDIR for it (Linux), ELOOP elsewhere.
    if (code(e) === 'ELOOP' || lstatSync(path, { throwIfNoEntry: false })?.isSymbolicLink()) throw link;
    if (code(e) === 'ENOTDIR') throw new Error(`${path} is not a folder`);
    throw e;
  }
  try {
    fchownSync(fd, uid, gid);
    fchmodSync(fd, mode);
  } finally { closeSync(fd); }
}

/**
 * `setup`, as root: the pipe's user with a HOME outside the tickets folder, the folders with
 * the permissions the MTA's SMTP-time check needs, the config file, and the launcher. Safe to
 * run again: what exists is kept (the launcher is rewritten, as node or the program may move).
 */
async function runSetup(cfg: Config, options: Record<string, unknown>): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('setup makes a user, folders and files under /etc: run it as root');
  if (!cfg.domain) throw new Error('setup needs --domain (the mail domain of the ticket addresses)');
  const inst = installation(cfg, options);
  const { spawnSync } = await childProcess();
  const done = (text: string) => print(`${text}\n`);
  let who = await account(inst.user);
  if (!who) {
    const r = spawnSync('useradd', ['--system', '--user-group', '--home-dir', inst.home, '--shell', '/usr/sbin/nologin',
      '--comment', 'ticket-mail', inst.user], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`useradd ${inst.user} failed: ${(r.stderr || r.error?.message || '').trim()}`);
    who = (await account(inst.user))!;
    done(`made user ${inst.user}`);
  }
  if (who.home !== inst.home) done(`user ${inst.user} exists with HOME ${who.home}: keeping it`);
  const unreachable = (paths: Array<[what: string, path: string, test: '-r' | '-x']>) => {
    // As that user, the way the pipe will run: a folder closed to it anywhere on the way (/root) is found too.
    for (const [what, path, test] of paths) {
      const r = spawnSync('runuser', ['-u', inst.user, '--', 'test', test, path], { encoding: 'utf8' });
      if (r.status !== 0) {
        throw new Error(`${inst.user}, the pipe's user, cannot ${test === '-x' ? 'run' : 'read'} ${what} ${path}${r.error ? ` (runuser: ${r.error.message})` : ''}: ` +
          'every delivery would be deferred; put it where that user can reach it (e.g. npm install -g, or dist/ticket-mail.cjs under /opt), then run setup again');
      }
    }
  };
  unreachable([['node', inst.node, '-x'], ...(inst.program ? [['the program', inst.program, '-r'] as [string, string, '-r']] : [])]);
  const home = who.home;
  // Exim checks ticket numbers at SMTP time as its own user: its group gets search permission only.
  const mta = String(options.mta ?? (existsSync('/usr/sbin/exim4') ? 'exim' : 'none'));
  if (!['exim', 'postfix', 'none'].includes(mta)) throw new Error('--mta must be exim, postfix or none');
  const eximUser = mta === 'exim' ? await account('Debian-exim') ?? await account('exim') : undefined;
  const folder = (path: string, gid: number, mode: number) => setupFolder(path, who!.uid, gid, mode);
  if (!existsSync(home)) folder(home, who.gid, 0o700); // an existing HOME is the user's business
  // A team: maintainers with accounts of their own read the tickets through the tickets user's
  // group (folders 2750, tickets 0640; ticket-mail makes new tickets so); Exim's SMTP-time check
  // then searches the folders as anyone (2751: a ticket number's existence, never its mail).
  // Alone, the folders' group is Exim's, with search only (2710). The team is the one named now
  // and in the config file already: running setup again as the README says keeps it.
  const team = cfg.maintainers.filter((m) => m !== inst.user); // the config file's too (configFrom)
  const teamGroup = team.length ? (await groupEntryOf(who.gid))?.name : undefined;
  if (team.length && !teamGroup) throw new Error(`the group of ${inst.user} (gid ${who.gid}) has no name: a team reads the tickets through it`);
  for (const login of teamGroup ? team : []) {
    if (!(await account(login))) throw new Error(`maintainer ${login} is no user here: make the account first (adduser ${login})`);
    const member = (await groupEntryOf(who.gid))!.members.includes(login) || (await account(login))!.gid === who.gid;
    if (member) continue;
    const r = spawnSync('usermod', ['--append', '--groups', teamGroup!, login], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`usermod --append --groups ${teamGroup} ${login} failed: ${(r.stderr || r.error?.message || '').trim()}`);
    done(`added ${login} to the group ${teamGroup} (it takes effect at their next login)`);
  }
  // setgid: archived/, made later by ticket-mail itself, gets the same group.
  const ticketsMode = teamGroup ? (eximUser === undefined ? 0o2750 : 0o2751) : eximUser === undefined ? 0o700 : 0o2710;
  const ticketsGroup = teamGroup ? who.gid : eximUser?.gid ?? who.gid;
  folder(cfg.dir, ticketsGroup, ticketsMode);
  folder(join(cfg.dir, 'archived'), ticketsGroup, ticketsMode);
  folder(join(cfg.dir, '.ticket-mail'), who.gid, 0o700);
  done(`folders ${cfg.dir} and ${cfg.dir}/archived (mode ${ticketsMode.toString(8)}${teamGroup ? `, the maintainers' group ${teamGroup} reads them`
    : eximUser === undefined ? '' : ', group search for Exim'}), owned by ${inst.user}; HOME ${home}`);
  if (teamGroup) {
    // Through a descriptor that followed no link: a ticket the tickets user replaced by a symlink
    // to /etc/shadow must not make root hand that file over.
    const paths = [...listTicketPaths(new Store(cfg)).map((t) => t.path), join(cfg.dir, 'unmatched')];
    let made = 0;
    for (const path of paths) {
      let fd;
      try { fd = openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK); } catch (e) {
        if (code(e) !== 'ENOENT') done(`left alone ${path}: ${code(e) === 'ELOOP' ? 'a symlink' : reason(e)} (ticket-mail check says more)`);
        continue;
      }
      try {
        const st = fstatSync(fd);
        if (!st.isFile() || st.nlink !== 1) { done(`left alone ${path}: not a plain file`); continue; }
        fchownSync(fd, who.uid, who.gid);
        fchmodSync(fd, 0o640);
        made++;
      } finally { closeSync(fd); }
    }
    if (made) done(`made the ${made} existing ticket file(s) readable by the group ${teamGroup}`);
  }
  if (existsSync(inst.config)) {
    done(`kept the config file ${inst.config}${recordInstallation(inst.config, { ...inst, home }) ? ' (recorded this installation in it)' : ''}`);
    const listed = readConfigFile(inst.config).maintainer;
    const missing = cfg.maintainers.filter((m) => !([] as unknown[]).concat(listed ?? []).includes(m));
    if (missing.length) done(`it does not name ${missing.join(', ')} as maintainer: add ${JSON.stringify(missing)} to its "maintainer" list`);
  } else {
    writeRootFile(inst.config, configFileText({ ...cfg, maintainers: [inst.user, ...team] }, { ...inst, home }), 0o644);
    done(`wrote the config file ${inst.config}`);
  }
  writeRootFile(inst.launcher, launcherScript({ ...inst, home }), 0o755);
  done(`wrote the launcher ${inst.launcher} (runs ${programWords(inst).join(' ')})`);
  unreachable([['the launcher', inst.launcher, '-x'], ['the config file', inst.config, '-r']]);
  await writeChores(cfg, inst, String(options.etc ?? '/etc'), done);
  done(`next: add the MTA's side, printed with these paths by "ticket-mail ${mta === 'postfix' ? 'postfix' : 'exim'}-config"; then "ticket-mail check"`);
}

/**
 * setup's timer (systemd's, else a cron file) for flush and prune, and the log's rotation,
 * written under ETC (default /etc). Written anew each time, like the launcher they follow.
 */
async function writeChores(cfg: Config, inst: Installation, etc: string, done: (text: string) => void): Promise<void> {
  const write = (path: string, text: string) => writeRootFile(path, text, 0o644);
  if (existsSync('/run/systemd/system')) {
    const units = systemdUnits(inst);
    for (const kind of ['service', 'timer'] as const) write(join(etc, 'systemd', 'system', `ticket-mail-flush.${kind}`), units[kind]);
    done(`wrote ${join(etc, 'systemd', 'system', 'ticket-mail-flush.{service,timer}')} (prune and flush every 10 minutes; start it: systemctl daemon-reload && systemctl enable --now ticket-mail-flush.timer)`);
  } else {
    write(join(etc, 'cron.d', 'ticket-mail'), cronFile(inst));
    done(`wrote ${join(etc, 'cron.d', 'ticket-mail')} (prune and flush every 10 minutes)`);
  }
  const { spawnSync } = await childProcess();
  const group = spawnSync('id', ['-gn', inst.user], { encoding: 'utf8' }).stdout.trim() || inst.user;
  // Unlike the timer, it names no program that may move: a sysadmin's edits (daily, rotate 12) stay.
  const rotation = join(etc, 'logrotate.d', 'ticket-mail');
  if (existsSync(rotation)) return done(`kept ${rotation}`);
  write(rotation, logrotateSnippet(join(cfg.dir, '.ticket-mail', 'log'), inst.user, group));
  done(`wrote ${rotation} (the audit log, weekly)`);
}

async function runPostfixConfig(cfg: Config, options: Record<string, unknown>): Promise<void> {
  const inst = installation(cfg, options);
  print(postfixSnippet(cfg, { ...inst, home: (await account(inst.user))?.home ?? inst.home }, !!options.aliases));
}

/**
 * `postfix-policy`: Postfix's spawn(8) runs it for each SMTP connection, requests on stdin until
 * EOF. A lookup that fails answers 451 (the client retries), never a wrong 550.
 */
async function runPasswordHash(_cfg: Config, name: unknown): Promise<void> {
  const user = String(name ?? '');
  if (!/^[^:\s]{1,64}$/.test(user)) throw new Error('a user name is 1 to 64 characters, without ":" or spaces');
  const password = readFileSync(0, 'utf8').replace(/\r?\n$/, '');
  if (password.length < 8) throw new Error('the password on stdin must have at least 8 characters');
  print(`${user}:${await (await import('./viewer.ts')).hashPassword(password)}\n`);
}

async function runPostfixPolicy(cfg: Config): Promise<void> {
  const store = new Store(cfg);
  const { createInterface } = await import('node:readline');
  let request = new Map<string, string>();
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    if (line) {
      const eq = line.indexOf('=');
      if (eq > 0) request.set(line.slice(0, eq), line.slice(eq + 1));
      continue;
    }
    let action;
    try { action = policyAnswer(request, cfg, (n) => store.placeOf(n) !== undefined); } catch { action = '451 4.3.0 cannot look up the ticket now'; }
    process.stdout.write(`action=${action}\n\n`);
    request = new Map();
  }
}

async function runEximConfig(cfg: Config, options: Record<string, unknown>): Promise<void> {
  const inst = installation(cfg, options);
  const snippet = eximSnippet(cfg, { ...inst, home: (await account(inst.user))?.home ?? inst.home });
  const transport = snippet.indexOf('# ---- transport');
  // Debian's split configuration wants the routers and the transport in files of their own.
  print(options.routers ? snippet.slice(0, transport) : options.transport ? snippet.slice(transport) : snippet);
}

/**
 * The command line's settings by name, with their value's placeholder and help, declared once:
 * cac shows them as --kebab-name <value>, and a delivery reads them without cac.
 */
const SETTING_HELP: Record<typeof SETTING_NAMES[number] | 'config', [value: string, description: string]> = {
  dir: ['dir', 'Tickets folder (default: $TICKET_MAIL_DIR, else $HOME/tickets)'],
  domain: ['domain', 'Mail domain of the ticket addresses (default: the envelope recipient\'s)'],
  submit: ['local-part', `Address that opens tickets (default: ${DEFAULTS.submit})`],
  ticketAddress: ['form', `Address of ticket N (default: ${DEFAULTS.ticketAddress})`],
  closeAddress: ['form', `Address that closes ticket N (default: ${DEFAULTS.closeAddress})`],
  tag: ['form', `Subject tag naming ticket N (default: ${DEFAULTS.tag})`],
  admin: ['address', 'Admin address: may close any ticket, gets notifications (repeatable; default: none)'],
  maintainer: ['login', 'Login whose mail sent on this host is a maintainer\'s: its answers and closes notify no admin, it may close, and it keeps a closed ticket closed (repeatable; default: none; needs an MTA that says who sent, see --local-user)'],
  closePolicy: ['policy', `Who may close: submitter (or an admin) | anyone (default: ${DEFAULTS.closePolicy})`],
  unknown: ['mode', `Mail for a ticket that does not exist: file (in DIR/unmatched) | bounce (exit 67) (default: ${DEFAULTS.unknown})`],
  maxSize: ['size', `Largest message accepted (default: ${DEFAULTS.maxSize})`],
  lockTimeout: ['seconds', `How long to wait for a lock before exit 75 (default: ${DEFAULTS.lockTimeout})`],
  staleLock: ['seconds', `Age after which any lock is considered dead (default: ${DEFAULTS.staleLock})`],
  sendmail: ['path', `Program that sends our mail (default: $SENDMAIL, else ${DEFAULTS.sendmail})`],
  name: ['name', `Display name on the mail we send (default: ${DEFAULTS.name})`],
  notify: ['kinds', `What admins hear about: new,update,reopen or none (default: ${DEFAULTS.notify})`],
  templates: ['dir', 'Folder of body templates: ack.txt, notify.txt, close-notice.txt, unknown-ticket.txt, close-refused.txt (default: built-in wording)'],
  replyLimit: ['n', `Automatic replies per recipient per hour (default: ${DEFAULTS.replyLimit})`],
  alertCommand: ['cmd', 'Run for each new ticket out of office hours, with TICKET_MAIL_TICKET, _SENDER, _SUBJECT set (default: none)'],
  officeHours: ['hh:mm-hh:mm', `Office hours, local time (default: ${DEFAULTS.officeHours})`],
  officeDays: ['days', `Office days (default: ${DEFAULTS.officeDays})`],
  config: ['file', `JSON config file; flags win (default: $TICKET_MAIL_CONFIG, else ${INSTALL_DEFAULTS.config} if it exists)`],
};
const ENVELOPE_HELP: Record<keyof EnvelopeFlags, [value: string, description: string]> = {
  recipient: ['address', 'Envelope recipient (default: from the MTA environment, else the headers)'],
  sender: ['address', 'Envelope sender (default: $SENDER, else the From_ line)'],
  localUser: ['login', 'Local user who handed the message to the MTA, to know a --maintainer\'s mail (default: $TICKET_MAIL_LOCAL_USER, which the Exim transport sets)'],
};
const flag = (name: string, value: string) => `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} <${value}>`;

/**
 * A plain delivery's options, or undefined when the command line needs cac: another command,
 * --help, an unknown flag, a missing value (cac explains those). Why: deliveries are what the
 * MTA runs for every message, and setting cac up costs more than the rest of their parsing.
 */
export function plainDelivery(args: string[]): Record<string, string[]> | undefined {
  const names = new Set([...Object.keys(SETTING_HELP), ...Object.keys(ENVELOPE_HELP)]);
  const { values, plain, rest } = typedOptions(args[0] === 'deliver' ? args.slice(1) : args, names);
  return plain && !rest.length ? values : undefined;
}

/**
 * `cgi` with nothing but settings, or undefined (cac explains the rest): the web server runs it
 * for every page a reader opens, so it starts as a delivery does, without cac.
 */
export function plainCgi(args: string[]): Record<string, string[]> | undefined {
  const { values, plain, rest } = typedOptions(args, new Set(Object.keys(SETTING_HELP)));
  return plain && rest.length === 1 && rest[0] === 'cgi' ? values : undefined;
}

/** The read-only commands a maintainer runs most, with the flags each takes besides the settings (a search also --limit). */
const PLAIN_READS: Record<string, string[]> = { list: ['--closed', '--all', '--waiting', '--json'], stats: ['--json'], search: ['--json'] };

/**
 * `list`, `stats` or `search` with nothing but settings, their own flags and (search) words not
 * looking like flags: the command, its options as cac would give them, and the words; else
 * undefined (cac explains the rest: --help, a typo, a missing value). Why: setting cac up (in the
 * single file, unpacking it) costs ~20 ms of CPU, a tenth of a search over 10,000 tickets.
 */
export function plainRead(args: string[]): { command: string; values: Record<string, string[]>; options: Record<string, unknown>; words: string[] } | undefined {
  const { values, plain, rest } = typedOptions(args, new Set([...Object.keys(SETTING_HELP), 'limit']));
  const [command = '', ...others] = rest;
  const flags = PLAIN_READS[command];
  if (!plain || !flags || (values.limit && command !== 'search')) return undefined;
  const options: Record<string, unknown> = values.limit ? { limit: values.limit.at(-1) } : {};
  const words: string[] = [];
  for (const arg of others) {
    if (flags.includes(arg)) options[arg.slice(2)] = true;
    else if (command === 'search' && !arg.startsWith('-')) words.push(arg);
    else return undefined;
  }
  return command === 'search' && !words.length ? undefined : { command, values, options, words };
}

/** The read commands, as both plainRead's path and cac run them. A search's error exits 2: its 1 is "no match", as grep's. */
const READ_TOOLS = { list: () => tool(runList), stats: () => tool(runStats), search: () => tool(runSearch, 'owner', 2) };

/** `search`: exit 0 with matches, 1 without (as grep), 2 for a query that cannot be run (and, through tool, for an error). */
async function runSearch(cfg: Config, words: unknown, options: Record<string, unknown>): Promise<number> {
  const limit = options.limit === undefined ? 20 : Number(typed.limit?.at(-1)); // a screenful: each result costs a read of its message
  let found;
  try {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new QueryError('--limit wants a number of results, 1 or more');
    found = await searchTickets(new Store(cfg), parseQuery((words as string[]).join(' ')), { cache: 'save', limit });
  } catch (e) {
    if (!(e instanceof QueryError)) throw e;
    warn(`bad query: ${e.message}`);
    return 2;
  }
  if (options.json) printJson(found);
  else {
    const lines = table(['#', 'MSG', 'DATE', 'FROM', 'SUBJECT'], found.results.map((r) => [
      String(r.ticket), String(r.message), ago(r.date), headerSafe(r.from, 60), headerSafe(r.subject, 100)])).split('\n');
    if (found.results.length) print(`${lines[0]}\n`);
    for (const [i, r] of found.results.entries()) {
      print(`${lines[i + 1]}\n    ${r.snippet.map((p) => (p.match ? colour(31, visible(p.text)) : visible(p.text))).join('')}\n`);
    }
    if (found.total > found.results.length) print(`${found.total - found.results.length} more (--limit ${found.total})\n`);
  }
  if (!found.total) warn('no message matches');
  return found.total ? 0 : 1;
}

/** One CGI page; then the code cache of the modules it compiled (the core's CGI cache, the viewer, the MIME parser), for the next page. */
async function runCgi(cfg: Config, saveCaches?: () => void): Promise<void> {
  const written = await (await import('./viewer.ts')).cgi(cfg);
  saveCaches?.();
  // The web server ends the response when our stdout and stderr close, which at a natural exit
  // comes after Node has torn its heap down: ~11 ms of a page here, half of all it costs above a
  // bare Node script. Both are closed once the reply is out, and the process goes.
  // A line for the web server's log (a 500's error, a warning) that met a full stderr pipe waits
  // in libuv as a write request: closing fd 2 and exiting would drop it; the natural exit writes it.
  // Bun keeps such a line where nothing reports it (no resource, writableLength 0: Bun 1.4.5), and
  // tears down in ~1.5 ms: under Bun every reply ends at the natural exit.
  if (!written || process.versions.bun || process.getActiveResourcesInfo?.().some((resource) => resource.endsWith('WriteWrap'))) return;
  closeSync(1);
  closeSync(2);
  process.exit(0);
}

/**
 * Runs the command line. `saveCaches` is the built file's loader saving V8's compiled code for
 * the next run: called once a message is filed, and once a CGI page is written.
 */
export async function main(argv: string[], saveCaches?: () => void): Promise<void> {
  const plain = plainDelivery(argv.slice(2));
  if (plain) {
    typed = plain;
    return runDelivery(saveCaches);
  }
  const cgiSettings = plainCgi(argv.slice(2));
  if (cgiSettings) {
    typed = cgiSettings;
    return tool((cfg) => runCgi(cfg, saveCaches))();
  }
  const read = plainRead(argv.slice(2));
  if (read) {
    typed = read.values;
    const run = READ_TOOLS[read.command as keyof typeof READ_TOOLS]();
    return read.command === 'search' ? run(read.words, read.options) : run(read.options);
  }
  // The maintainer's commands, --help, and mistakes. A missing module is a broken installation:
  // like the delivery's own modules, it defers (fail: 75), never bounces.
  const { cac } = await import('cac').catch(fail);
  const cli = cac('ticket-mail');
  for (const [name, [value, description]] of Object.entries(SETTING_HELP)) {
    cli.option(flag(name, value), description, REPEATABLE.has(name) ? { type: [String] } : undefined);
  }
  const envelopeOptions = (command: ReturnType<typeof cli.command>) => {
    for (const [name, [value, description]] of Object.entries(ENVELOPE_HELP)) command.option(flag(name, value), description);
    return command;
  };
  envelopeOptions(cli.command('', 'Deliver one message read on stdin')).action(() => runDelivery(saveCaches));
  envelopeOptions(cli.command('deliver', 'Deliver one message read on stdin (the default command)')).action(() => runDelivery(saveCaches));
  cli.command('list', 'List tickets, newest activity first')
    .option('--closed', 'Closed tickets only').option('--all', 'Open and closed tickets')
    .option('--waiting', 'Only the tickets waiting on us (the last word is not ours), the longest wait first').option('--json', 'JSON for scripts')
    .action(READ_TOOLS.list());
  cli.command('stats', 'The numbers: open and closed, per week over the last half year, times to first answer and to close, the oldest and longest waiting')
    .option('--json', 'JSON for scripts').action(READ_TOOLS.stats());
  cli.command('search <...query>', 'Messages matching words, "phrases", from: to: subject: body: file:, is:open|closed|waiting, before:/after: YYYY-MM-DD, ticket:N; newest first')
    .option('--limit <n>', 'Show this many, newest first (default: 20)').option('--json', 'JSON for scripts').action(READ_TOOLS.search());
  cli.command('show <ticket>', 'Show a ticket\'s thread and the path of its mbox').option('--json', 'JSON for scripts').action(tool(runShow));
  envelopeOptions(cli.command('route', 'Dry run: print what delivering the message on stdin would do; writes nothing'))
    .option('--json', 'JSON for scripts').action(tool(runRoute));
  for (const action of ['close', 'reopen'] as const) {
    cli.command(`${action} <ticket>`, `${action === 'close' ? 'Close' : 'Reopen'} a ticket as mail to its ${action === 'close' ? 'close ' : ''}address would (a message on stdin is filed, else a short note)`)
      .option('--as <address>', 'Author of the note (default: $EMAIL, else the --admin named like $SUDO_USER or $USER, else for a team maintainer LOGIN@domain, else the first --admin)')
      .option('--quiet', 'Send no notices').action(tool((cfg, ticket, options) => runTicketCommand(cfg, action, ticket, options)));
  }
  cli.command('muttrc', 'Print mutt hooks for every ticket: source "ticket-mail muttrc |"').action(tool(runMuttrc, 'caller'));
  cli.command('draft <file>', 'mutt editor wrapper used by the muttrc hooks: adds --cc to the draft, then runs $VISUAL or $EDITOR')
    .option('--cc <address>', 'The ticket address').action(tool(runDraft, 'caller'));
  cli.command('check', 'Check the setup and say what to fix; exit 1 when something is wrong')
    .option('--mta-config <file>', `Also read this MTA configuration (besides ${MTA_FILES.join(', ')})`, { type: [String] }).action(tool(runCheck));
  cli.command('flush', 'Send the mail kept in the outbox; exit 1 while some remains').action(tool(runFlush));
  cli.command('prune', 'Remove the reply counters with no reply in the last hour; exit 1 when one is left alone').action(tool(runPrune));
  const installOptions = (command: ReturnType<typeof cli.command>) => command
    .option('--user <name>', `The pipe's user, owner of the tickets folder (default: ${INSTALL_DEFAULTS.user})`)
    .option('--home <dir>', `Its HOME, outside the tickets folder (default: ${INSTALL_DEFAULTS.home})`)
    .option('--launcher <path>', `The pipe command the MTA runs (default: ${INSTALL_DEFAULTS.launcher})`);
  installOptions(cli.command('setup', `As root: make the pipe's user, the folders, the config file (--config, default ${INSTALL_DEFAULTS.config}), the launcher, the timer for flush and prune, and the log's rotation`))
    .option('--mta <mta>', 'exim | postfix | none: who checks ticket numbers at SMTP time (default: exim when installed)')
    .option('--etc <dir>', 'Where the timer (systemd/system/, else cron.d/) and logrotate.d/ files go (default: /etc)')
    .action(tool(runSetup, 'setup'));
  installOptions(cli.command('exim-config', 'Print the Exim routers and transport for this installation'))
    .option('--routers', 'Only the routers (for /etc/exim4/conf.d/router/)').option('--transport', 'Only the transport (for /etc/exim4/conf.d/transport/)')
    .action(tool(runEximConfig, 'caller'));
  installOptions(cli.command('postfix-config', 'Print the Postfix main.cf and master.cf settings for this installation'))
    .option('--aliases', 'The local(8) form, through an alias map of the tickets user\'s own, instead of pipe(8)')
    .action(tool(runPostfixConfig, 'caller'));
  cli.command('postfix-policy', 'Postfix policy service (run by spawn(8)): refuses unknown tickets at SMTP time').action(tool(runPostfixPolicy));
  // The history viewer is its own module (viewer.ts), loaded only by these commands.
  cli.command('serve', 'Serve every ticket read-only to a browser (the history viewer); on 127.0.0.1 unless --token-file or --users')
    .option('--listen <host:port>', 'Where to listen (default: 127.0.0.1:8025; another address needs --token-file or --users)')
    .option('--token-file <file>', 'A file holding a secret token: sent as "Authorization: Bearer", or opened once as ?token= for a cookie')
    .option('--users <file>', 'HTTP Basic users, one NAME:HASH line each (ticket-mail password-hash NAME)')
    .option('--host-name <name>', 'A name the viewer is reached by besides 127.0.0.1 and localhost (a proxy\'s); repeatable', { type: [String] })
    .action(tool(async (cfg, options) => (await import('./viewer.ts')).serve(cfg, options)));
  cli.command('cgi', 'Answer one CGI request with the viewer\'s pages (the web server authenticates: REMOTE_USER)')
    .action(tool((cfg) => runCgi(cfg, saveCaches)));
  cli.command('password-hash <name>', 'Read a password on stdin; print the line for serve --users')
    .action(tool(runPasswordHash, 'caller'));
  cli.help();
  cli.version(VERSION);
  const options = [...cli.globalCommand.options, ...cli.commands.flatMap((c) => c.options)];
  typed = typedOptions(argv.slice(2), new Set(options.filter((o) => !o.isBoolean).flatMap((o) => o.names))).values;
  try {
    cli.parse(argv);
  } catch (e) {
    const usage = `${(e as Error).message} (see ticket-mail --help)`;
    // A maintainer's command typed wrong exits 1 (search 2, as grep), as its other errors do; a
    // delivery's command line is the MTA's pipe, and a mistake there must not bounce mail.
    const command = cli.matchedCommandName;
    if (command === undefined || command === 'deliver') fail(temporary(usage));
    warn(usage);
    process.exitCode = command === 'search' ? 2 : 1;
  }
}

// Run as a script (bun ticket.ts). Bun says so itself (import.meta.main), also in a program
// compiled by bun build --compile, whose argv[1] is a virtual path (/$bunfs/...) no realpath
// resolves; Node 20 has no import.meta.main, so there argv[1] tells. The built file has no
// import.meta.url: its loader calls main.
const isScript = () => {
  const entry = process.argv[1];
  return (import.meta as { main?: boolean }).main ?? (entry !== undefined && realpathSync(entry) === fileURLToPath(import.meta.url));
};
if (import.meta.url && isScript()) void main(process.argv);
