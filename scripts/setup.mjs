#!/usr/bin/env node
// Pre-step of `npm start`, `npm test` and `npm run bench` (see package.json).
//
// 1. Installs the npm dependencies when any is missing (`npm ci` on a fresh checkout
//    with a package-lock.json, `npm install` otherwise).
// 2. Probes for a WebGPU adapter in a CHILD process (Dawn can crash; never in-process).
// 3. Without an adapter, on Debian bookworm as root, installs Mesa's lavapipe (software
//    Vulkan) from bookworm-backports and probes again; elsewhere says what to install.
// 4. Prints one line naming the adapter.
//
// Node built-ins only: this runs before node_modules exists.
// Exit codes: 0 ready, 1 dependencies could not be installed, 2 no WebGPU adapter.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TAG = '[atrous setup]';
const PROBE_TIMEOUT_MS = 60_000;

const log = (msg) => console.log(`${TAG} ${msg}`);
function fail(msg, code) {
  console.error(`${TAG} ERROR: ${msg}`);
  process.exit(code);
}

// ---------------------------------------------------------------- 1. npm dependencies

function missingDependencies() {
  let pkg;
  try {
    pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  } catch (e) {
    fail(`cannot read ${join(ROOT, 'package.json')}: ${e.message}`, 1);
  }
  const names = [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.devDependencies ?? {})];
  return names.filter((name) => !existsSync(join(ROOT, 'node_modules', ...name.split('/'), 'package.json')));
}

function npmCommand() {
  // Under `npm run`, npm_execpath points at npm's own CLI script: reuse that npm.
  const cli = process.env.npm_execpath;
  if (cli && /npm-cli\.[cm]?js$/.test(cli) && existsSync(cli)) return { cmd: process.execPath, pre: [cli] };
  return { cmd: process.platform === 'win32' ? 'npm.cmd' : 'npm', pre: [] };
}

function ensureDependencies() {
  const missing = missingDependencies();
  if (missing.length === 0) return;
  const fresh = !existsSync(join(ROOT, 'node_modules'));
  const useCi = fresh && existsSync(join(ROOT, 'package-lock.json'));
  const args = useCi ? ['ci'] : ['install'];
  log(fresh
    ? `node_modules is missing: running \`npm ${args[0]}\``
    : `missing npm packages (${missing.join(', ')}): running \`npm ${args[0]}\``);
  const { cmd, pre } = npmCommand();
  const r = spawnSync(cmd, [...pre, ...args, '--no-audit', '--no-fund'], {
    cwd: ROOT,
    stdio: 'inherit',
    shell: process.platform === 'win32' && pre.length === 0,
  });
  if (r.error) fail(`could not run npm: ${r.error.message}. Is npm installed and on PATH?`, 1);
  if (r.status !== 0) fail(`\`npm ${args[0]}\` failed (${r.signal ? `signal ${r.signal}` : `exit code ${r.status}`}); see the npm output above.`, 1);
  const still = missingDependencies();
  if (still.length > 0) fail(`\`npm ${args[0]}\` finished but these packages are still missing: ${still.join(', ')}`, 1);
}

// ---------------------------------------------------------------- 2. WebGPU probe (child process)

const PROBE_SCRIPT = `
const emit = (o) => process.stdout.write('\\nATROUS_PROBE ' + JSON.stringify(o) + '\\n');
let mod;
try { mod = await import('webgpu'); }
catch (e) { emit({ ok: false, stage: 'import', error: String(e && e.message || e) }); process.exit(0); }
try {
  // Keep the create() result referenced while the adapter lives (docs/software-gpu.md: dropping it crashes).
  globalThis.__atrousGpu = mod.create([]);
  const adapter = await globalThis.__atrousGpu.requestAdapter();
  if (!adapter) { emit({ ok: false, stage: 'adapter', error: 'requestAdapter() returned null' }); process.exit(0); }
  const info = adapter.info || {};
  const backend = { linux: 'vulkan', darwin: 'metal', win32: 'd3d12' }[process.platform] || 'unknown';
  emit({
    ok: true,
    name: info.description || info.device || '(unnamed adapter)',
    description: info.description || '',
    device: info.device || '',
    vendor: info.vendor || '',
    architecture: info.architecture || '',
    backend: backend + ' (platform default of Dawn)',
    fallback: Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter),
    features: [...adapter.features].sort(),
  });
  process.exit(0);
} catch (e) { emit({ ok: false, stage: 'adapter', error: String(e && e.message || e) }); process.exit(0); }
`;

function childEnv() {
  const env = { ...process.env };
  if (!env.XDG_RUNTIME_DIR) {
    const uid = typeof process.getuid === 'function' ? process.getuid() : 'user';
    const dir = join(tmpdir(), `atrous-xdg-runtime-${uid}`);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      env.XDG_RUNTIME_DIR = dir;
    } catch { /* leave unset: only a Mesa warning */ }
  }
  return env;
}

function probe() {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', PROBE_SCRIPT], {
    cwd: ROOT,
    env: childEnv(),
    encoding: 'utf8',
    timeout: PROBE_TIMEOUT_MS,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr = (r.stderr ?? '').trim();
  if (r.error) return { ok: false, stage: 'crash', error: `probe process failed: ${r.error.message}`, stderr };
  const line = (r.stdout ?? '').split('\n').reverse().find((l) => l.startsWith('ATROUS_PROBE '));
  if (!line) {
    const how = r.signal ? `was killed by signal ${r.signal}` : `exited with code ${r.status}`;
    return { ok: false, stage: 'crash', error: `probe process ${how} before reporting`, stderr };
  }
  try {
    return { ...JSON.parse(line.slice('ATROUS_PROBE '.length)), stderr };
  } catch (e) {
    return { ok: false, stage: 'crash', error: `unreadable probe output: ${e.message}`, stderr };
  }
}

// ---------------------------------------------------------------- 3. lavapipe on Debian bookworm

const BACKPORTS_FILE = '/etc/apt/sources.list.d/backports.sources';
const BACKPORTS_SOURCES =
  'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\n' +
  'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n';
const APT_PACKAGES = ['mesa-vulkan-drivers', 'libvulkan1'];

function osRelease() {
  try {
    const out = {};
    for (const l of readFileSync('/etc/os-release', 'utf8').split('\n')) {
      const m = /^([A-Z0-9_]+)=(.*)$/.exec(l.trim());
      if (m) out[m[1]] = m[2].replace(/^["']|["']$/g, '');
    }
    return out;
  } catch {
    return {};
  }
}

function isBookworm(os) {
  return os.ID === 'debian' && (os.VERSION_CODENAME === 'bookworm' || os.VERSION_ID === '12');
}

function backportsConfigured() {
  if (existsSync(BACKPORTS_FILE)) return true;
  const files = ['/etc/apt/sources.list'];
  try {
    for (const f of readdirSync('/etc/apt/sources.list.d')) {
      if (f.endsWith('.list') || f.endsWith('.sources')) files.push(join('/etc/apt/sources.list.d', f));
    }
  } catch { /* no directory */ }
  return files.some((f) => {
    try {
      return readFileSync(f, 'utf8').split('\n')
        .some((l) => !l.trim().startsWith('#') && /\bbookworm-backports\b/.test(l));
    } catch {
      return false;
    }
  });
}

function installInstructions(os) {
  const bookworm = isBookworm(os);
  const lines = [
    'No WebGPU adapter was found. In Node, atrous runs on Dawn (npm `webgpu`), which needs a Vulkan',
    'driver on Linux (Metal on macOS, D3D12 on Windows). Without a GPU, install Mesa\'s lavapipe',
    '(software Vulkan). On Debian bookworm its own Mesa 22.3 is REJECTED by Dawn; use the one from',
    'bookworm-backports (25.x), as root:',
    '',
    `  printf '${BACKPORTS_SOURCES.replace(/\n/g, '\\n')}' > ${BACKPORTS_FILE}`,
    `  apt-get update && apt-get install -y -t bookworm-backports ${APT_PACKAGES.join(' ')}`,
    '',
  ];
  if (!bookworm) {
    lines.push(
      `This system is ${os.PRETTY_NAME ?? process.platform}, not Debian bookworm: install a recent Mesa`,
      '(>= 23, package mesa-vulkan-drivers or similar) plus the Vulkan loader (libvulkan1), or a GPU',
      'driver with Vulkan support, then run `npm run setup` again.',
    );
  } else {
    lines.push('Run those as root (or with sudo), or run `npm run setup` as root, then try again.');
  }
  return lines.join('\n');
}

function run(cmd, args, env) {
  log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', env });
  if (r.error) return `could not run ${cmd}: ${r.error.message}`;
  if (r.status !== 0) return `\`${cmd} ${args.join(' ')}\` failed (${r.signal ? `signal ${r.signal}` : `exit code ${r.status}`})`;
  return null;
}

function installLavapipe() {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (!backportsConfigured()) {
    log(`writing ${BACKPORTS_FILE}`);
    try {
      writeFileSync(BACKPORTS_FILE, BACKPORTS_SOURCES);
    } catch (e) {
      return `cannot write ${BACKPORTS_FILE}: ${e.message}`;
    }
  }
  return run('apt-get', ['update'], env)
    ?? run('apt-get', ['install', '-y', '-t', 'bookworm-backports', ...APT_PACKAGES], env);
}

function describeFailure(p) {
  let s = `${p.stage === 'import' ? 'could not load the npm package `webgpu`' : 'WebGPU probe failed'}: ${p.error}`;
  if (p.stderr) s += `\n--- probe stderr ---\n${p.stderr.split('\n').slice(-20).join('\n')}`;
  return s;
}

// ---------------------------------------------------------------- main

ensureDependencies();

let p = probe();
if (!p.ok && p.stage === 'import') {
  fail(`${describeFailure(p)}\nTry \`rm -rf node_modules && npm ci\`. Dawn ships prebuilt binaries for ` +
    'linux/macOS/windows on x64 and arm64 only.', 2);
}
if (!p.ok) {
  const os = osRelease();
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (process.platform === 'linux' && root && isBookworm(os)) {
    log(`no WebGPU adapter (${p.error}); installing Mesa lavapipe from bookworm-backports ` +
      '(bookworm\'s own Mesa 22.3 is rejected by Dawn)');
    const err = installLavapipe();
    if (err) fail(`${err}\n\n${installInstructions(os)}`, 2);
    p = probe();
    if (!p.ok) fail(`${describeFailure(p)}\nstill no WebGPU adapter after installing lavapipe.\n\n${installInstructions(os)}`, 2);
  } else {
    fail(`${describeFailure(p)}\n\n${installInstructions(os)}`, 2);
  }
}

const kind = [p.vendor, p.architecture, p.fallback ? 'fallback adapter' : ''].filter(Boolean).join(', ');
const pick = process.env.ATROUS_ADAPTER
  ? ` (ATROUS_ADAPTER=${process.env.ATROUS_ADAPTER} is set: the engine applies it when it requests its adapter)`
  : '';
log(`WebGPU adapter: ${p.name}${kind ? ` [${kind}]` : ''} via Dawn/${p.backend.split(' ')[0]}${pick}`);
