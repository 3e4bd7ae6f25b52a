#!/usr/bin/env node
// npm run build: ticket.ts becomes
//   dist/ticket-mail.cjs       one self-contained file (every dependency inlined), to copy onto a server;
//   dist/bin/ticket-mail.cjs   the npm bin: the same loader, reading its modules from dist/bin/*.js;
//   dist/ticket-mail.1         the man page, from the built program's --help;
//   dist/bun/                  when Bun is at hand, the Bun builds (below; with --exe, the executable).
//
// Why this shape: start-up is the cost of every delivery, and most of it is V8 reading and
// compiling JavaScript, not running it.
// - The delivery core is ticket.ts alone; cac, mimetext, postal-mime's full parser and its two
//   header functions are separate modules, compiled only by the runs that use them (the
//   maintainer's commands, sending mail, decoding a header).
// - Each module is compiled with V8's code cache: after the first delivery, later starts load
//   the compiled code instead of compiling the source again. The cache is private to the user
//   running us and only read from a file that user owns; without one we simply compile.
// - The loader is CommonJS: an ES module entry alone costs Node ~4 ms more.
import { build } from 'esbuild';
import ts from 'typescript';
import { createHash } from 'node:crypto';
import { brotliCompressSync } from 'node:zlib';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

if (process.argv.includes('--bun-only')) {
  bunBuilds(process.argv.slice(2));
  process.exit(0);
}

const { version, description } = JSON.parse(readFileSync(new URL('package.json', import.meta.url), 'utf8'));

/** Libraries the core loads when it needs them, and what it takes from each. */
const LAZY = {
  cac: "export { cac } from 'cac';",
  mimetext: "export { createMimeMessage } from 'mimetext';",
  // The core's import() of a bundled module sees module.exports as the default export, as Node
  // does for CommonJS: postal-mime's CommonJS build exports the parser exactly so.
  'postal-mime': "module.exports = require('postal-mime');",
  // The two header functions ticket.ts imports statically (see lazyOutside).
  'postal-mime-headers': "export { addressParser, decodeWords } from 'postal-mime';",
  // The history viewer (serve, cgi): ticket.ts's readers come from the core already loaded.
  viewer: await plainExports('viewer.ts'),
};

/** One module as a CommonJS function expression, the wrapper Node itself would add. */
async function bundle(options) {
  const result = await build({
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    minify: true,
    write: false,
    logLevel: 'warning',
    // Lazy import()s become require()s of the loader: a vm.Script has no ES module loader behind it.
    supported: { 'dynamic-import': false },
    ...options,
  });
  const code = result.outputFiles[0].text.replace(/^#!.*\n/, '');
  return `(function (exports, require, module, __filename, __dirname) {${code}\n})`;
}

/**
 * The core's imports: the libraries stay outside. Its static import of postal-mime's header
 * functions becomes a shim that loads them on first call: their module's start-up (text
 * decoders, charset tables) is then paid only by the deliveries that decode a header.
 */
const HEADER_SHIM = `const headers = () => require('postal-mime-headers');
export const addressParser = (...args) => headers().addressParser(...args);
export const decodeWords = (...args) => headers().decodeWords(...args);`;
// node:os likewise (~0.4 ms to load): only a delivery's lock and spool use it, not a CGI page or list.
const OS_SHIM = `const os = () => require('node:os');
export const hostname = () => os().hostname();
export const tmpdir = () => os().tmpdir();`;
const lazyOutside = {
  name: 'lazy-outside',
  setup(build) {
    build.onResolve({ filter: /^node:os$/ }, (args) => (args.kind === 'import-statement' ? { path: args.path, namespace: 'os-shim' } : undefined));
    build.onLoad({ filter: /.*/, namespace: 'os-shim' }, () => ({ contents: OS_SHIM, loader: 'js' }));
    build.onResolve({ filter: /^\.\/viewer\.ts$/ }, () => ({ path: 'viewer', external: true }));
    build.onResolve({ filter: /^(cac|mimetext|postal-mime)$/ }, (args) => {
      if (args.kind === 'dynamic-import') return { path: args.path, external: true };
      return args.path === 'postal-mime' ? { path: args.path, namespace: 'header-shim' } : undefined;
    });
    build.onLoad({ filter: /.*/, namespace: 'header-shim' }, () => ({ contents: HEADER_SHIM, loader: 'js' }));
    build.onResolve({ filter: /^postal-mime-headers$/ }, (args) => ({ path: args.path, external: true }));
  },
};

/** The viewer's import of ticket.ts is the core module, loaded once: the readers are not copied into it. */
const coreOutside = {
  name: 'core-outside',
  setup(build) {
    build.onResolve({ filter: /^\.\/ticket\.ts$/ }, (args) => (args.importer.endsWith('viewer.ts') ? { path: 'core', external: true } : undefined));
  },
};

/**
 * postal-mime imported by name takes only what is named: its package does not say
 * "sideEffects": false, so without this the whole MIME parser would come along.
 */
const byName = {
  name: 'by-name',
  setup(build) {
    build.onResolve({ filter: /^postal-mime$/ }, async (args) => {
      if (args.kind !== 'import-statement' || args.pluginData === 'inner') return undefined;
      const resolved = await build.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, pluginData: 'inner' });
      return { ...resolved, sideEffects: false };
    });
  },
};

/**
 * mimetext without what ticket-mail never uses: mime-types (with mime-db, 137 KB of the 162)
 * only checks an attachment's content type, and we send no attachments; core-js's String trim
 * is the engine's own on Node 20. Stubbed, a call to the first fails loudly instead.
 */
const STUBS = {
  'mime-types': "export function contentType() { throw new Error('ticket-mail is built without mime-types: it sends no attachments'); }",
  '@babel/runtime-corejs3/core-js/instance/trim': 'export default (it) => it.trim;',
};
const stubs = {
  name: 'stubs',
  setup(build) {
    const filter = new RegExp(`^(${Object.keys(STUBS).map((k) => k.replace(/[/.-]/g, '\\$&')).join('|')})$`);
    build.onResolve({ filter }, (args) => ({ path: args.path, namespace: 'stub' }));
    build.onLoad({ filter: /.*/, namespace: 'stub' }, (args) => ({ contents: STUBS[args.path], loader: 'js' }));
  },
};

/**
 * An entry handing over everything `file` exports as one plain object, made once its code has
 * run. esbuild's CommonJS form gives each export a getter and copies them all into a second
 * object of getters: for the core's 125 exports that was ~0.7 ms of every start, a delivery's
 * and a CGI page's (measured). Values serve as well as live bindings while no export is
 * re-assigned, which `export let` would allow: refused.
 */
async function plainExports(file) {
  const { metafile } = await build({ entryPoints: [file], bundle: true, packages: 'external', format: 'esm', platform: 'node', write: false, metafile: true, outdir: 'names', logLevel: 'error' });
  const names = Object.values(metafile.outputs).find((output) => output.entryPoint)?.exports ?? [];
  // An export bound to a let or var (`export let x`, `export { x as y }`, a list's or a
  // destructuring's, one re-exported from another file) would be copied once, and a later
  // assignment never seen: export a function or an object instead. TypeScript's binder follows
  // each export to its declaration (no types are checked).
  const program = ts.createProgram([file], { noLib: true, types: [], allowImportingTsExtensions: true, noEmit: true });
  const checker = program.getTypeChecker();
  const declared = (symbol) => (symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol).declarations ?? [];
  const variable = (d) => (ts.isVariableDeclaration(d) || ts.isBindingElement(d)) && !(ts.getCombinedNodeFlags(d) & (ts.NodeFlags.Const | ts.NodeFlags.Using));
  const copied = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(file))).filter((s) => declared(s).some(variable)).map((s) => s.name);
  if (copied.length) throw new Error(`${file}: an exported let or var would be copied once (${copied.join(', ')}); export a function or an object`);
  return `import { ${names.join(', ')} } from './${file}';\nmodule.exports = { ${names.join(', ')} };\n`;
}
// The entries' `module` is the loader's (the wrapper's parameter), not an ES module's.
const ourEntry = { logOverride: { 'commonjs-variable-in-esm': 'silent' } };

const modules = {
  core: await bundle({
    // Everything ticket.ts exports: main for the loader, the readers for the viewer.
    stdin: { contents: await plainExports('ticket.ts'), resolveDir: '.', loader: 'ts' },
    ...ourEntry,
    plugins: [lazyOutside],
    // import.meta only decides whether ticket.ts runs as a script; here the loader calls main.
    define: { TICKET_MAIL_VERSION: JSON.stringify(version), 'import.meta.url': 'undefined', 'import.meta.main': 'undefined' },
  }),
};
for (const [name, contents] of Object.entries(LAZY)) {
  modules[name] = await bundle({ stdin: { contents, resolveDir: '.', loader: name === 'viewer' ? 'ts' : 'js' }, plugins: [stubs, byName, coreOutside], ...(name === 'viewer' ? ourEntry : {}) });
}
const buildId = createHash('sha256').update(JSON.stringify(modules)).digest('hex').slice(0, 16);

/**
 * The loader, as it runs in the built files: compiles module `name` from `source(name)` with
 * its code cache and runs it. V8 accepts a code cache made from any source of the same length,
 * so a cache's name carries the build's hash (and Node's version, whose V8 would reject
 * another's cache anyway).
 */
function load(source, BUILD, LAZY) {
  const { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readSync, renameSync, writeFileSync } = require('node:fs');
  const { Script } = require('node:vm');
  // No HOME and no passwd entry (a pipe's environment can be that bare): homedir() throws, and
  // there is no cache at all, neither read nor written (a made-up home would be made, as root too).
  const cacheHome = () => {
    if (process.env.XDG_CACHE_HOME) return process.env.XDG_CACHE_HOME;
    // HOME first, as homedir() itself reads it: loading node:os only for that costs ~0.4 ms.
    try { const home = process.env.HOME || require('node:os').homedir(); return home ? `${home}/.cache` : undefined; } catch { return undefined; }
  };
  // Under Bun (bun dist/ticket-mail.cjs) there is none: its vm.Script makes a cache, but a start
  // with it costs what one without does (measured). Bun's precompiled form is bunBuilds' (below).
  const dir = process.versions.bun ? undefined : cacheHome()?.concat('/ticket-mail');
  const ours = (stat) => stat.uid === process.getuid?.() && (stat.mode & 0o022) === 0;
  const loaded = {};
  const unsaved = [];
  // A CGI page (the command cgi) runs other functions of the core than a delivery does: each has
  // its own cache of the core, so that neither loads or compiles the other's. (A delivery whose
  // envelope holds the word cgi takes the page's cache: slower, the same program.)
  const cgi = process.argv.includes('cgi');
  const role = (name) => (name === 'core' && cgi ? 'core-cgi' : name);
  const cacheFile = (name) => `${dir}/${BUILD}-${role(name)}-${process.version}-${process.arch}.v8`;
  const readCache = (name) => {
    if (!dir) return undefined;
    try {
      const fd = openSync(cacheFile(name), constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        const stat = fstatSync(fd);
        const data = Buffer.allocUnsafe(stat.size); // one read: readFileSync would stat it again
        if (ours(stat) && readSync(fd, data, 0, stat.size, 0) === stat.size) return data;
      } finally { closeSync(fd); }
    } catch { /* no cache yet */ }
    return undefined;
  };
  const ourRequire = (id) => (id === 'core' || LAZY.includes(id) ? run(id) : require(id));
  function run(name) {
    if (loaded[name]) return loaded[name].exports;
    try {
      const cachedData = readCache(name);
      const script = new Script(source(name), { filename: `${__filename}/${name}`, cachedData });
      if (!cachedData || script.cachedDataRejected) unsaved.push([name, script]);
      const module = loaded[name] = { exports: {} };
      script.runInThisContext()(module.exports, ourRequire, module, __filename, __dirname);
      return module.exports;
    } catch (e) { // missing or damaged: say which module, whoever reports it
      throw new Error(`cannot load ${name} (${e?.message ?? e})`);
    }
  }
  // Called after a delivery, so that the functions a delivery runs are in the cache compiled; and
  // after a CGI page, for the functions it ran.
  const saveCaches = () => {
    if (!unsaved.length || !dir) return;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      if (!ours(lstatSync(dir))) return; // a folder someone else could write to, or a symlink
      for (const [name, script] of unsaved) {
        const temporary = `${cacheFile(name)}.${process.pid}`;
        writeFileSync(temporary, script.createCachedData(), { mode: 0o600, flag: 'wx' });
        renameSync(temporary, cacheFile(name));
      }
    } catch { /* a read-only or foreign home: we run without a cache */ }
  };
  try {
    run('core').main(process.argv, saveCaches);
  } catch (e) {
    process.stderr.write(`ticket-mail: cannot start: ${e?.message ?? e}\n`);
    process.exit(75); // a broken installation must not bounce mail
  }
}

const header = `#!/usr/bin/env node
// ticket-mail ${version}: built by build.mjs from ticket.ts (https://www.npmjs.com/package/ticket-mail).
'use strict';
`;
const lazyNames = JSON.stringify(Object.keys(LAZY));
rmSync('dist', { recursive: true, force: true });
mkdirSync('dist/bin', { recursive: true });
for (const [name, code] of Object.entries(modules)) writeFileSync(`dist/bin/${name}.js`, code);
writeFileSync('dist/bin/ticket-mail.cjs', `${header}(${load})((name) => require('node:fs').readFileSync(\`\${__dirname}/\${name}.js\`, 'utf8'), ${JSON.stringify(buildId)}, ${lazyNames});
`);
// The single file: Node reads and scans every byte of it at each start (~4 us per KB), but
// loading node:zlib costs ~2 ms. So what a delivery may run on its way to an acknowledgement
// (the core, the header functions, mimetext: 74 KB) is plain text, and what only the
// maintainer's commands and admin notifications load (cac, the full MIME parser: 92 KB)
// travels compressed (brotli, base64: 34 KB).
const COMPRESSED = ['cac', 'postal-mime', 'viewer'];
const plain = Object.fromEntries(Object.entries(modules).filter(([name]) => !COMPRESSED.includes(name)));
const packed = Object.fromEntries(COMPRESSED.map((name) => [name, brotliCompressSync(modules[name]).toString('base64')]));
writeFileSync('dist/ticket-mail.cjs', `${header}const MODULES = ${JSON.stringify(plain, null, 0)};
const PACKED = ${JSON.stringify(packed, null, 0)};
const unpack = (name) => require('node:zlib').brotliDecompressSync(Buffer.from(PACKED[name], 'base64')).toString('utf8');
(${load})((name) => MODULES[name] ?? unpack(name), ${JSON.stringify(buildId)}, ${lazyNames});
`);
for (const file of ['dist/ticket-mail.cjs', 'dist/bin/ticket-mail.cjs']) chmodSync(file, 0o755);

// The man page, dist/ticket-mail.1, from the built program's own --help (one source: the cac
// definitions and SETTING_HELP in ticket.ts): the commands with their usage and own options,
// then the options every command takes.
const help = (...args) => execFileSync(process.execPath, ['dist/ticket-mail.cjs', ...args, '--help'], { encoding: 'utf8', env: { PATH: process.env.PATH } });
/** The "  name   description" lines of one section of cac's help. */
const section = (text, title) => {
  const block = text.split(`\n${title}:\n`)[1]?.split('\n\n')[0] ?? '';
  return block.split('\n').map((line) => /^ {2}(.*?) {2,}(\S.*?)\s*$/.exec(line)).filter(Boolean).map(([, name, description]) => ({ name, description }));
};
/** Text for roff: every character that means something to it escaped, no line a request. */
const roff = (text) => text.replace(/\\/g, '\\e').replace(/-/g, '\\-').replace(/'/g, '\\(aq').replace(/`/g, '\\(ga')
  .replace(/\^/g, '\\(ha').replace(/~/g, '\\(ti').replace(/^[.]/gm, '\\&.');
const top = help();
const globalOptions = section(top, 'Options');
const globalNames = new Set(globalOptions.map((o) => o.name));
const item = (term, description) => `.TP\n\\fB${roff(term)}\\fR\n${roff(description)}\n`;
const commands = section(top, 'Commands').map(({ name, description }) => {
  if (!name) return item('ticket-mail [options] < message', description);
  const text = help(name.split(' ')[0]);
  const usage = /\n {2}\$ (.*?)\s*\n/.exec(text)[1];
  const own = section(text, 'Options').filter((o) => !globalNames.has(o.name));
  return item(usage, description) + (own.length ? `.RS\n${own.map((o) => item(o.name, o.description)).join('')}.RE\n` : '');
});
writeFileSync('dist/ticket-mail.1', `.\\" Generated by build.mjs from "ticket-mail --help"; edit ticket.ts, not this file.
.TH TICKET\\-MAIL 1 "" "ticket-mail ${version}" "User Commands"
.nh
.ad l
.SH NAME
ticket\\-mail \\- ${roff(description.replace(/^E/, 'e'))}
.SH SYNOPSIS
\\fBticket\\-mail\\fR [\\fIoptions\\fR] < \\fImessage\\fR
.br
\\fBticket\\-mail\\fR \\fIcommand\\fR [\\fIoptions\\fR]
.SH DESCRIPTION
${roff(`The MTA pipes each message into ticket-mail (through the launcher "ticket-mail setup" writes); it lands in a support ticket, a plain mbox file that mutt opens: DIR/N while open, DIR/archived/N once closed. Mail to submit@DOMAIN opens a ticket, mail to ticket-N@DOMAIN (or with [issueN] in its subject) is added to ticket N, mail to ticket-N-done@DOMAIN closes it. The other commands are the maintainer's. Every option can also be set in the config file, under its camel-case name.`)}
.SH COMMANDS
${commands.join('')}.SH OPTIONS
${globalOptions.map((o) => item(o.name, o.description)).join('')}.SH EXIT STATUS
${roff('A delivery exits 0 once the message is filed and fsync\'d, 75 (the MTA retries) for anything worth retrying, a bad configuration included, 65 for an unusable message and 67 for a ticket that does not exist (only with --unknown bounce). The other commands exit 1 on an error or when something is wrong.')}
.SH FILES
${[['DIR/.ticket-mail/log', 'the audit log, one line per delivery (rotated by /etc/logrotate.d/ticket-mail)'],
  ['DIR/.ticket-mail/outbox', 'mail sendmail did not take, sent by flush'],
  ['DIR/.ticket-mail/replies/', 'the reply counters, pruned by prune'],
  ['/etc/systemd/system/ticket-mail-flush.timer, /etc/cron.d/ticket-mail', 'run prune and flush every 10 minutes']]
  .map(([file, what]) => item(file, what)).join('')}.SH SEE ALSO
\\fBmutt\\fR(1), \\fBexim4\\fR(8), \\fBpostfix\\fR(1), \\fBlogrotate\\fR(8); README.md of the package.
`);

// The Bun builds, from dist/bin's modules (it says how when there is no Bun).
bunBuilds(process.argv.slice(2));

// ---- The Bun builds --------------------------------------------------------------------------
// `node build.mjs [--exe] [--out DIR]` ends with them, made from the modules it wrote to dist/bin/;
// `node build.mjs --bun-only [--exe] [--out DIR]` makes only them, from the dist/bin/ there is
// (the bench and the tests make theirs apart):
//   DIR/ticket-mail.js (+ .jsc)  run as `bun DIR/ticket-mail.js`: the modules as Bun's bytecode,
//                                which only the Bun that made it reads (another parses the
//                                source instead: slower, the same program)
//   DIR/ticket-mail              with --exe: one executable for this platform, Bun inside (~110 MB)
// DIR is dist/bun (not in the npm package). Bun is $BUN, else bun on PATH, else the one the tests
// install (node_modules/.cache/ticket-mail-tools/bun); for --exe without any, npx fetches it.
//
// Why not the loader above: Bun precompiles only the code it bundles, never source that a
// vm.Script compiles at run time, and V8's code cache means nothing to it. So each module is a
// function of one file, run at its first require as the loader runs it: a delivery runs the
// core, and cac, mimetext, postal-mime and the viewer run only where the loader runs them (their
// bytecode is in the file; loading it costs ~1% of an append's instructions, measured).

/**
 * The entry as it runs under Bun: module `name` of `modules` runs at its first require, and
 * `builtins` loads the node: modules they name.
 */
function start(modules, builtins) {
  // JIT thresholds ten times the usual: a delivery runs most functions once or a few times, and
  // compiling the few that reach the usual ones (Bun's node:fs names its ~100 functions through
  // one), with the JIT's start-up, cost ~1-2 ms of an append's CPU. A long run (stats of 5,000
  // tickets, a 22 MB message) is no slower, measured. (An older Bun running the source may lack it.)
  Bun.unsafe?.setJITPolicy?.(10);
  const loaded = {};
  // A require the build did not find written out (a library's require of a variable, say) still loads.
  const ourRequire = (id) => (Object.hasOwn(modules, id) ? run(id) : Object.hasOwn(builtins, id) ? builtins[id]() : require(id));
  function run(name) {
    if (loaded[name]) return loaded[name].exports;
    const module = loaded[name] = { exports: {} };
    try {
      modules[name](module.exports, ourRequire, module); // no module uses its __filename or __dirname
    } catch (e) { // say which module, whoever reports it
      throw new Error(`cannot load ${name} (${e?.message ?? e})`);
    }
    return module.exports;
  }
  try {
    run('core').main(process.argv);
  } catch (e) {
    process.stderr.write(`ticket-mail: cannot start: ${e?.message ?? e}\n`);
    process.exit(75); // a broken installation must not bounce mail
  }
}

function bunBuilds(args) {
  const exe = args.includes('--exe');
  const out = args.includes('--out') ? args[args.indexOf('--out') + 1] : 'dist/bun';

  const TESTS_BUN = 'node_modules/.cache/ticket-mail-tools/bun/node_modules/.bin/bun';
  const runs = (bun) => spawnSync(bun, ['--version'], { stdio: 'ignore' }).status === 0;
  const found = process.env.BUN || ['bun', TESTS_BUN].find(runs);
  const bun = found ? [found] : exe ? ['npx', '--yes', 'bun'] : undefined;
  if (!bun) {
    console.error(`build (Bun): no Bun ($BUN, bun on PATH, ${TESTS_BUN}): no Bun build made (npm run build:exe fetches Bun with npx)`);
    return;
  }

  const names = readdirSync('dist/bin').filter((file) => file.endsWith('.js')).map((file) => file.slice(0, -3));
  const work = mkdtempSync(join(tmpdir(), 'ticket-mail-bun-'));
  const entry = join(work, 'ticket-mail.cjs');
  const sources = names.map((name) => readFileSync(`dist/bin/${name}.js`, 'utf8'));
  // Each node: module a module requires, by a require of its name written out (still at its first
  // require: a delivery loads no node:child_process): Bun loads node:fs so ~2.5 ms faster than
  // through require(id) of a variable (an executable that only loads it: 14.0 ms of CPU, 16.9 by
  // a variable), node:os and node:path after it ~0.4 ms.
  const builtins = [...new Set(sources.join('\n').match(/(?<=require\(")node:[\w/]+(?="\))/g))].sort();
  writeFileSync(entry, `'use strict';\n(${start})({\n${names.map((name, i) => `${JSON.stringify(name)}: ${sources[i]}`).join(',\n')}\n}, {\n${builtins.map((id) => `${JSON.stringify(id)}: () => require(${JSON.stringify(id)})`).join(',\n')}\n});\n`);
  mkdirSync(out, { recursive: true });

  /** Runs bun build; its report only when it fails. */
  function bunBuild(...options) {
    const r = spawnSync(bun[0], [...bun.slice(1), 'build', '--bytecode', '--minify', ...options, entry], { encoding: 'utf8' });
    if (r.status !== 0) {
      process.stderr.write(`${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? `${r.error.message}\n` : ''}`);
      rmSync(work, { recursive: true, force: true });
      console.error(`build (Bun): ${bun.join(' ')} build failed`);
      process.exit(1);
    }
  }
  const bunVersion = spawnSync(bun[0], [...bun.slice(1), '--version'], { encoding: 'utf8' }).stdout.trim();
  bunBuild('--target=bun', '--format=cjs', '--outdir', out); // ticket-mail.js and its bytecode, ticket-mail.js.jsc
  let made = `${out}/ticket-mail.js`;
  if (exe) {
    // An executable reads no .env or bunfig.toml from the folder it runs in (Bun's default would):
    // an MTA's pipe runs it anywhere, and its environment is the MTA's.
    bunBuild('--compile', '--no-compile-autoload-dotenv', '--no-compile-autoload-bunfig', '--outfile', join(out, 'ticket-mail'));
    made += ` and ${out}/ticket-mail`;
  }
  rmSync(work, { recursive: true, force: true });
  console.error(`build (Bun): ${made}, with Bun ${bunVersion}`);
}
