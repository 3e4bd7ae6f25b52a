#!/usr/bin/env node
// node build-bun.mjs [--exe] [--out DIR]: the Bun builds, made from the modules build.mjs wrote
// to dist/bin/ (npm run build runs this when Bun is at hand, npm run build:exe with --exe):
//   DIR/ticket-mail.js (+ .jsc)  run as `bun DIR/ticket-mail.js`: the modules as Bun's bytecode,
//                                which only the Bun that made it reads (another parses the
//                                source instead: slower, the same program)
//   DIR/ticket-mail              with --exe: one executable for this platform, Bun inside (~110 MB)
// DIR is dist/bun (not in the npm package). Bun is $BUN, else bun on PATH, else the one the tests
// install (node_modules/.cache/ticket-mail-tools/bun); for --exe without any, npx fetches it.
//
// Why not build.mjs's loader: Bun precompiles only the code it bundles, never source that a
// vm.Script compiles at run time, and V8's code cache means nothing to it. So each module is a
// function of one file, run at its first require as the loader runs it: a delivery runs the
// core, and cac, mimetext, postal-mime and the viewer run only where the loader runs them (their
// bytecode is in the file; loading it costs ~1% of an append's instructions, measured).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const args = process.argv.slice(2);
const exe = args.includes('--exe');
const out = args.includes('--out') ? args[args.indexOf('--out') + 1] : 'dist/bun';

const TESTS_BUN = 'node_modules/.cache/ticket-mail-tools/bun/node_modules/.bin/bun';
const runs = (bun) => spawnSync(bun, ['--version'], { stdio: 'ignore' }).status === 0;
const found = process.env.BUN || ['bun', TESTS_BUN].find(runs);
const bun = found ? [found] : exe ? ['npx', '--yes', 'bun'] : undefined;
if (!bun) {
  console.error(`build-bun: no Bun ($BUN, bun on PATH, ${TESTS_BUN}): no Bun build made (npm run build:exe fetches Bun with npx)`);
  process.exit(0);
}

/** The entry as it runs under Bun: module `name` of `modules` runs at its first require. */
function start(modules) {
  const loaded = {};
  const ourRequire = (id) => (Object.hasOwn(modules, id) ? run(id) : require(id));
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

const names = readdirSync('dist/bin').filter((file) => file.endsWith('.js')).map((file) => file.slice(0, -3));
const work = mkdtempSync(join(tmpdir(), 'ticket-mail-bun-'));
const entry = join(work, 'ticket-mail.cjs');
writeFileSync(entry, `'use strict';\n(${start})({\n${names.map((name) => `${JSON.stringify(name)}: ${readFileSync(`dist/bin/${name}.js`, 'utf8')}`).join(',\n')}\n});\n`);
mkdirSync(out, { recursive: true });

/** Runs bun build; its report only when it fails. */
function bunBuild(...options) {
  const r = spawnSync(bun[0], [...bun.slice(1), 'build', '--bytecode', '--minify', ...options, entry], { encoding: 'utf8' });
  if (r.status !== 0) {
    process.stderr.write(`${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? `${r.error.message}\n` : ''}`);
    rmSync(work, { recursive: true, force: true });
    console.error(`build-bun: ${bun.join(' ')} build failed`);
    process.exit(1);
  }
}
const version = spawnSync(bun[0], [...bun.slice(1), '--version'], { encoding: 'utf8' }).stdout.trim();
bunBuild('--target=bun', '--format=cjs', '--outdir', out); // ticket-mail.js and its bytecode, ticket-mail.js.jsc
let made = `${out}/ticket-mail.js`;
if (exe) {
  // An executable reads no .env or bunfig.toml from the folder it runs in (Bun's default would):
  // an MTA's pipe runs it anywhere, and its environment is the MTA's.
  bunBuild('--compile', '--no-compile-autoload-dotenv', '--no-compile-autoload-bunfig', '--outfile', join(out, 'ticket-mail'));
  made += ` and ${out}/ticket-mail`;
}
rmSync(work, { recursive: true, force: true });
console.error(`build-bun: ${made}, with Bun ${version}`);
