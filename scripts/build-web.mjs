#!/usr/bin/env node
// Builds the browser demo and the browser library into dist/web/:
//   dist/web/index.html, style.css, samples/   the page (copied from web/)
//   dist/web/app.js                             the page's code: web/app.ts + src/ bundled (esbuild)
//   dist/web/train-worker.js                    the Train panel's worker: web/train-worker.ts + src/
//   dist/web/atrous.js                          src/index.ts as one ES module, WGSL shaders embedded
// The shaders are embedded first (scripts/embed-shaders.mjs). The build fails when anything in
// the bundles imports a Node built-in (node:fs, path, ...): below the CLI, src/ must stay browser-safe.
//
//   node scripts/build-web.mjs [--minify] [--no-typecheck]

import { spawnSync } from 'node:child_process';
import { builtinModules } from 'node:module';
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const WEB_OUT = join(ROOT, 'dist', 'web');

const BUILTINS = new Set(builtinModules.map((m) => m.split('/')[0]));
const isBuiltin = (spec) => spec.startsWith('node:') || BUILTINS.has(spec.split('/')[0]);

/** esbuild plugin: any import of a Node built-in is a build error naming the importer. */
const noNodeBuiltins = {
  name: 'no-node-builtins',
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      if (!isBuiltin(args.path)) return undefined;
      return {
        errors: [{
          text: `'${relative(ROOT, args.importer)}' imports the Node built-in '${args.path}': the browser bundle must not ` +
            'contain Node built-ins (move the code behind the CLI or the io layer)',
        }],
      };
    });
  },
};

function embedShaders() {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'embed-shaders.mjs')], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`scripts/embed-shaders.mjs failed (${r.signal ?? `exit code ${r.status}`})`);
}

/** esbuild strips types without checking them: check web/ and src/ as the browser sees them
 * (DOM + @webgpu/types, no Node types) with tsconfig.web.json. */
function typeCheck() {
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.web.json')], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`build-web: type errors in the browser build (tsc -p tsconfig.web.json, ${r.signal ?? `exit code ${r.status}`})`);
}

function copyDir(from, to, keep) {
  mkdirSync(to, { recursive: true });
  const names = [];
  for (const f of readdirSync(from, { withFileTypes: true })) {
    if (!f.isFile() || !keep(f.name)) continue;
    copyFileSync(join(from, f.name), join(to, f.name));
    names.push(f.name);
  }
  return names.sort();
}

/** Builds dist/web; returns the output directory and the bundle sizes in bytes. */
export async function buildWeb({ minify = false, typecheck = true, log = console.log } = {}) {
  const t0 = performance.now();
  let esbuild;
  try {
    esbuild = await import('esbuild');
  } catch (e) {
    throw new Error(`cannot load esbuild (a devDependency): ${e.message}. Run 'npm install'.`);
  }
  embedShaders();
  if (typecheck) typeCheck();
  rmSync(WEB_OUT, { recursive: true, force: true });
  mkdirSync(WEB_OUT, { recursive: true });
  const common = {
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    sourcemap: true,
    minify,
    metafile: true,
    logLevel: 'silent',
    plugins: [noNodeBuiltins],
    absWorkingDir: ROOT,
  };
  let results;
  try {
    results = await Promise.all([
      esbuild.build({ ...common, entryPoints: [join(ROOT, 'web', 'app.ts')], outfile: join(WEB_OUT, 'app.js') }),
      esbuild.build({ ...common, entryPoints: [join(ROOT, 'web', 'train-worker.ts')], outfile: join(WEB_OUT, 'train-worker.js') }),
      esbuild.build({ ...common, entryPoints: [join(ROOT, 'src', 'index.ts')], outfile: join(WEB_OUT, 'atrous.js') }),
    ]);
  } catch (e) {
    const msgs = (e.errors ?? []).map((m) => `  ${m.location ? `${m.location.file}:${m.location.line}: ` : ''}${m.text}`);
    throw new Error(`build-web: esbuild failed:\n${msgs.join('\n') || e.message}`);
  }
  const sizes = {};
  for (const r of results) {
    for (const w of r.warnings) log(`build-web: warning: ${w.text}`);
    for (const [file, out] of Object.entries(r.metafile.outputs)) {
      if (!file.endsWith('.js')) continue;
      // Belt and braces: a Node built-in left external would show up as an import of the output.
      const bad = out.imports.filter((i) => isBuiltin(i.path));
      if (bad.length) throw new Error(`build-web: ${file} imports Node built-ins: ${bad.map((i) => i.path).join(', ')}`);
      sizes[relative(WEB_OUT, resolve(ROOT, file))] = out.bytes;
    }
  }
  copyDir(join(ROOT, 'web'), WEB_OUT, (f) => f.endsWith('.html') || f.endsWith('.css'));
  const samples = copyDir(join(ROOT, 'web', 'samples'), join(WEB_OUT, 'samples'), (f) => /\.(png|jpe?g)$/i.test(f));
  writeFileSync(join(WEB_OUT, 'samples', 'index.json'), `${JSON.stringify(samples)}\n`);
  const kb = Object.entries(sizes).map(([f, b]) => `${f} ${(b / 1024).toFixed(0)} KiB`).join(', ');
  log(`build-web: ${relative(ROOT, WEB_OUT)}/ (${kb}; ${samples.length} samples) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return { outdir: WEB_OUT, sizes };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  buildWeb({ minify: process.argv.includes('--minify'), typecheck: !process.argv.includes('--no-typecheck') }).catch((e) => {
    console.error(e.message);
    process.exit(1);
  });
}
