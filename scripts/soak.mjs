#!/usr/bin/env node
// `npm run soak`: the opt-in reliability run (not part of `npm test`). Two passes, each bounded:
//
// 1. Kill/resume soak: a tiny `mini` run is trained once without interruption (the reference),
//    then again while being killed at random moments (SIGKILL mostly, some SIGTERM), each kill
//    followed by `atrous train --resume` (or the original command when the kill came before the
//    run existed), until it finishes. The final checkpoint's model and optimizer files must be
//    byte-identical to the reference's.
// 2. Fuzz: mutated inputs for the image, safetensors checkpoint, run-directory and config readers,
//    each read in a child process (scripts/fuzz-worker.mjs) under a time limit, so that a crash
//    or a hang is seen and counted rather than ending the script.
//
// Prints counts: tried, clear errors (an Error naming the file), accepted (valid), silent
// acceptances (accepted although the result breaks an invariant), unclear errors, crashes, hangs.
//
//   npm run soak [-- --kills N] [--fuzz N] [--seed S]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { xorshift } from './xorshift.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(ROOT, 'bin', 'atrous.js');
const { values } = parseArgs({ options: { kills: { type: 'string' }, fuzz: { type: 'string' }, seed: { type: 'string' }, keep: { type: 'boolean' } } });
const KILLS = Number(values.kills ?? 30);
const FUZZ = Number(values.fuzz ?? 800); // per reader
const SEED = Number(values.seed ?? 1);

const rand = xorshift(SEED);

const work = mkdtempSync(join(tmpdir(), 'atrous-soak-'));
const TRAIN = ['--steps', '12', '--batch', '1', '--crop', '33', '--checkpoint-every', '2', '--log-every', '1', '--seed', '5'];

/** Runs the CLI; kills it with `signal` after `killAfterMs` (null: never). */
function atrous(args, { killAfterMs = null, signal = 'SIGKILL', timeoutMs = 300_000 } = {}) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    const timers = [setTimeout(() => p.kill('SIGKILL'), timeoutMs)];
    if (killAfterMs !== null) timers.push(setTimeout(() => p.kill(signal), killAfterMs));
    p.on('close', (code, sig) => {
      for (const t of timers) clearTimeout(t);
      resolve({ code, sig, out, err });
    });
  });
}

const final = (dir) => {
  const latest = JSON.parse(readFileSync(join(dir, 'latest.json'), 'utf8'));
  return ['model.safetensors', 'optimizer.safetensors'].map((f) => readFileSync(join(dir, latest.dir, f)));
};

async function soak() {
  const ref = join(work, 'reference');
  const t0 = performance.now();
  const r = await atrous(['train', '--out', ref, ...TRAIN]);
  if (r.code !== 0) throw new Error(`the reference run failed:\n${r.err}`);
  const refSeconds = (performance.now() - t0) / 1000;
  const [refModel, refOpt] = final(ref);
  const c = { runs: 0, kills: 0, sigterms: 0, missed: 0, resumes: 0, identical: 0, different: 0, failedResumes: 0, hangs: 0 };
  // Runs are started until KILLS kills have landed (a kill due after the run finished lands nowhere).
  for (let i = 0; c.kills + c.sigterms < KILLS && i < 4 * KILLS + 1; i++) {
    const dir = join(work, `run-${i}`);
    c.runs++;
    let done = false;
    for (let attempt = 0; attempt < 50 && !done; attempt++) {
      const args = existsSync(join(dir, 'run.json')) ? ['train', '--resume', dir] : ['train', '--out', dir, ...TRAIN];
      if (args[1] === '--resume') c.resumes++;
      const killing = c.kills + c.sigterms < KILLS;
      const signal = rand() < 0.25 ? 'SIGTERM' : 'SIGKILL';
      const res = await atrous(args, killing ? { killAfterMs: 300 + rand() * refSeconds * 600, signal } : {});
      if (res.code === 0) {
        if (killing) c.missed++; // the run finished before the kill was due
        done = true;
        break;
      }
      if (res.sig === 'SIGKILL' && killing) c.kills++;
      else if (res.code === 143 && signal === 'SIGTERM' && killing) c.sigterms++;
      else {
        c.failedResumes++;
        console.log(`  run ${i}: ${args.join(' ')} failed (status ${res.code}, signal ${res.sig}): ${res.err.trim().split('\n').pop()}`);
        if (res.sig === 'SIGKILL' && !killing) c.hangs++;
        break;
      }
    }
    if (!done) continue;
    const [m, o] = final(dir);
    if (m.equals(refModel) && o.equals(refOpt)) c.identical++;
    else c.different++;
  }
  console.log(`kill/resume soak: ${c.runs} runs of ${TRAIN.join(' ')}, ${c.kills} SIGKILLs and ${c.sigterms} SIGTERMs at random moments ` +
    `(${c.missed} more came after the run had finished), ` +
    `${c.resumes} resumes; final checkpoint byte-identical to an uninterrupted run: ${c.identical} of ${c.runs}; ` +
    `different: ${c.different}; failed resumes: ${c.failedResumes}; hangs: ${c.hangs}`);
  return { ...c, ref };
}

const READERS = ['png', 'jpeg', 'label-png', 'safetensors', 'run-dir', 'config'];

/** Runs the fuzz worker over inputs [from, to) of a reader, restarting after a crash or a hang. */
async function fuzzReader(reader, ref) {
  const c = { tried: 0, clear: 0, accepted: 0, silent: 0, unclear: 0, crashes: 0, hangs: 0 };
  const examples = { silent: [], unclear: [], crashes: [], hangs: [] };
  let next = 0;
  while (next < FUZZ) {
    const from = next;
    const res = await new Promise((resolve) => {
      const p = spawn(process.execPath, [join(ROOT, 'scripts', 'fuzz-worker.mjs'), reader, String(SEED), String(from), String(FUZZ), ref, work],
        { stdio: ['ignore', 'pipe', 'pipe'] });
      let buf = '';
      let last = Date.now();
      const lines = [];
      p.stdout.on('data', (d) => {
        buf += d;
        let k;
        while ((k = buf.indexOf('\n')) >= 0) {
          lines.push(JSON.parse(buf.slice(0, k)));
          buf = buf.slice(k + 1);
          last = Date.now();
        }
      });
      p.stderr.on('data', () => {});
      let hung = false;
      const watch = setInterval(() => {
        if (Date.now() - last > 20_000) {
          hung = true;
          p.kill('SIGKILL');
        }
      }, 500);
      p.on('close', (code, sig) => {
        clearInterval(watch);
        resolve({ lines, code, sig, hung });
      });
    });
    for (const l of res.lines) {
      if (l.ready) continue;
      c.tried++;
      c[l.outcome]++;
      if (examples[l.outcome] && examples[l.outcome].length < 3) examples[l.outcome].push(`#${l.i}: ${l.msg}`);
      next = l.i + 1;
    }
    if (next < FUZZ && (res.code !== 0 || res.hung)) {
      // the input after the last reported one crashed or hung the reader
      c.tried++;
      if (res.hung) c.hangs++;
      else c.crashes++;
      (res.hung ? examples.hangs : examples.crashes).push(`#${next}: status ${res.code}, signal ${res.sig}`);
      next++;
    } else if (next < FUZZ && res.lines.length === 0) break;
  }
  return { c, examples };
}

console.log(`atrous soak: seed ${SEED}, ${KILLS} kills, ${FUZZ} fuzzed inputs per reader; work in ${work}`);
const t0 = performance.now();
try {
  const s = await soak();
  const totals = { tried: 0, clear: 0, accepted: 0, silent: 0, unclear: 0, crashes: 0, hangs: 0 };
  console.log('fuzz (reader: tried, clear errors, accepted valid, silent acceptances, unclear errors, crashes, hangs):');
  for (const reader of READERS) {
    const { c, examples } = await fuzzReader(reader, s.ref);
    for (const k of Object.keys(totals)) totals[k] += c[k];
    console.log(`  ${reader.padEnd(12)} ${c.tried} tried, ${c.clear} clear errors, ${c.accepted} accepted (valid), ${c.silent} silent acceptances, ` +
      `${c.unclear} unclear errors, ${c.crashes} crashes, ${c.hangs} hangs`);
    for (const [k, v] of Object.entries(examples)) for (const e of v) console.log(`      ${k}: ${e}`);
  }
  console.log(`  ${'total'.padEnd(12)} ${totals.tried} tried, ${totals.clear} clear errors, ${totals.accepted} accepted (valid), ${totals.silent} silent acceptances, ` +
    `${totals.unclear} unclear errors, ${totals.crashes} crashes, ${totals.hangs} hangs`);
  console.log(`done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  const bad = s.different + s.failedResumes + s.hangs + totals.silent + totals.unclear + totals.crashes + totals.hangs;
  process.exitCode = bad ? 1 : 0;
} finally {
  if (!values.keep) rmSync(work, { recursive: true, force: true });
  spawnSync('true');
}
