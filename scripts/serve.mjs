#!/usr/bin/env node
// `npm run serve [-- --port N] [--host H] [--weights FILE] [--no-build]`: builds the browser demo
// (scripts/build-web.mjs) and serves it on http://localhost:8080/ with node:http. Static files only:
// the page does all the work on the visitor's GPU.
//
//   /                 dist/web/ (index.html, app.js, atrous.js, style.css, samples/)
//   /weights/NAME     weights/NAME; --weights FILE serves FILE as /weights/mini-shapes.safetensors
//
// WebGPU needs a secure context: http://localhost (or 127.0.0.1) is one, a LAN address over plain
// http is not (use https or a tunnel there).

import { createServer } from 'node:http';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { extname, join, normalize, resolve, sep, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildWeb, ROOT, WEB_OUT } from './build-web.mjs';

export const DEFAULT_WEIGHTS = 'mini-shapes.safetensors';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.safetensors': 'application/octet-stream',
  '.md': 'text/markdown; charset=utf-8',
};

/** The file under `dir` that a URL path names, or null when it escapes `dir`. */
function inside(dir, urlPath) {
  const p = resolve(dir, `.${normalize(`/${urlPath}`)}`);
  return p === dir || p.startsWith(dir + sep) ? p : null;
}

/**
 * Starts the static server. `weights`: a checkpoint file served as /weights/mini-shapes.safetensors
 * (default: the repository's weights/ directory as it is). Resolves to { server, url, port }.
 */
export function startServer({ port = 8080, host = '127.0.0.1', weights = null, log = console.log } = {}) {
  const weightsDir = join(ROOT, 'weights');
  const override = weights ? resolve(weights) : null;
  if (override && !existsSync(override)) throw new Error(`serve: --weights ${weights}: no such file`);
  const server = createServer((req, res) => {
    const send = (code, text) => {
      res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : `${text}\n`);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed');
    let path;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      return send(400, 'bad request');
    }
    let file;
    if (path.startsWith('/weights/')) {
      const name = path.slice('/weights/'.length);
      file = override && name === DEFAULT_WEIGHTS ? override : inside(weightsDir, name);
    } else {
      file = inside(WEB_OUT, path.endsWith('/') ? `${path}index.html` : path);
    }
    if (!file) return send(403, 'forbidden');
    let st;
    try {
      st = statSync(file);
    } catch {
      return send(404, `not found: ${path}`);
    }
    if (!st.isFile()) return send(404, `not found: ${path}`);
    res.writeHead(200, {
      'content-type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'content-length': st.size,
      'cache-control': 'no-store',
    });
    if (req.method === 'HEAD') return res.end();
    createReadStream(file).on('error', () => res.destroy()).pipe(res);
  });
  return new Promise((resolvePromise, reject) => {
    server.once('error', (e) => {
      reject(e.code === 'EADDRINUSE'
        ? new Error(`serve: port ${port} is in use on ${host}: pick another with 'npm run serve -- --port N'`)
        : e);
    });
    server.listen(port, host, () => {
      const actual = server.address().port;
      const shown = host === '127.0.0.1' || host === '0.0.0.0' || host === '::' ? 'localhost' : host;
      const url = `http://${shown}:${actual}/`;
      log(`serving the atrous demo at ${url}  (weights: ${override ?? (existsSync(join(weightsDir, DEFAULT_WEIGHTS)) ? join('weights', DEFAULT_WEIGHTS) : `none: weights/${DEFAULT_WEIGHTS} is missing, the page says so`)})`);
      resolvePromise({ server, url, port: actual });
    });
  });
}

function parseArgs(argv) {
  const o = { port: 8080, host: '127.0.0.1', weights: null, build: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`serve: ${flag} needs a value`);
      return v;
    };
    if (flag === '--port') {
      const v = value();
      o.port = Number(v);
      if (!/^\d+$/.test(v) || o.port > 65535) throw new Error(`serve: --port must be an integer in 0..65535, got '${v}'`);
    } else if (flag === '--host') o.host = value();
    else if (flag === '--weights') o.weights = value();
    else if (flag === '--no-build') o.build = false;
    else if (flag === '--help' || flag === '-h') {
      console.log('usage: npm run serve [-- --port N (default 8080)] [--host H (default 127.0.0.1)] [--weights FILE] [--no-build]');
      process.exit(0);
    } else throw new Error(`serve: unknown option '${a}' (try --help)`);
  }
  return o;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  (async () => {
    const o = parseArgs(process.argv.slice(2));
    if (o.build) await buildWeb();
    else if (!existsSync(join(WEB_OUT, 'index.html'))) throw new Error(`serve: ${WEB_OUT} is not built: drop --no-build`);
    await startServer(o);
    console.log(`open it in a browser with WebGPU (Chrome/Edge 113+; see README "Browser demo"); Ctrl-C stops ${basename(process.argv[1])}`);
  })().catch((e) => {
    console.error(e.message);
    process.exit(1);
  });
}
