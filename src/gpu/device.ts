// The device layer: the only place that knows whether we run in a browser (navigator.gpu) or in
// Node (npm `webgpu`, Dawn). Everything above it sees a GPUDevice and an `EngineLimits` record.

export interface DeviceOptions {
  /** Adapter name (Node: passed to Dawn as `adapter=NAME`; browser: must match the adapter's
   * description or the request fails). Default: env ATROUS_ADAPTER, else the system default. */
  adapter?: string;
  powerPreference?: GPUPowerPreference;
  /** Lower the engine's own view of a limit (for tests, or to leave room for other work).
   * Values above the adapter's limit are clamped to it. */
  limits?: Partial<EngineLimits>;
  /** Extra Dawn toggles in Node, e.g. ['enable-dawn-features=disable_robustness']. */
  dawnOptions?: string[];
  /** The most bytes of GPU memory the engine's pool may hold; a tensor that would take it past
   * this fails with an error naming the tensor, its bytes and this limit (BufferPool.memoryLimit).
   * Default: env ATROUS_MEMORY_LIMIT (bytes, or a number with K, M or G: "12G"), else, in Node on
   * a software adapter (lavapipe, whose GPU memory is host memory and which never reports running
   * out of it: the OS kills the process instead), 3/4 of the host's memory; else none (the
   * device reports out-of-memory itself). */
  memoryLimit?: number;
}

/** Parses a memory size: bytes, or a number followed by K, M or G (powers of 1024). */
export function parseMemorySize(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMG]?)i?B?\s*$/i.exec(text);
  if (!m) throw new Error(`atrous: ${what} must be a number of bytes, or a number with K, M or G (e.g. 12G), got '${text}'`);
  const unit = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Math.floor(Number(m[1]) * unit);
}

/** True for a software adapter (lavapipe/llvmpipe, SwiftShader): its GPU memory is host memory. */
export function isSoftwareAdapter(i: Pick<AdapterInfo, 'description' | 'architecture' | 'device' | 'vendor'>): boolean {
  return /llvmpipe|lavapipe|swiftshader|software/i.test(`${i.description} ${i.architecture} ${i.device} ${i.vendor}`);
}

/** The pool's memory limit for `opts` on an adapter (see DeviceOptions.memoryLimit). */
async function memoryLimitFor(opts: DeviceOptions, info: Pick<AdapterInfo, 'description' | 'architecture' | 'device' | 'vendor'>, inBrowser: boolean): Promise<number> {
  if (opts.memoryLimit !== undefined) {
    if (!(opts.memoryLimit > 0)) throw new Error(`atrous: memoryLimit must be a positive number of bytes, got ${opts.memoryLimit}`);
    return opts.memoryLimit;
  }
  // Only Node has a host-memory figure and an environment (a page's worker has neither).
  if (inBrowser || !isNode()) return Infinity;
  const fromEnv = env('ATROUS_MEMORY_LIMIT');
  if (fromEnv) return parseMemorySize(fromEnv, 'ATROUS_MEMORY_LIMIT');
  if (!isSoftwareAdapter(info)) return Infinity;
  const spec = 'node:os'; // a variable specifier, as 'webgpu' above
  const os = (await import(spec)) as { totalmem(): number };
  return Math.floor(os.totalmem() * 0.75);
}

/** The limits the engine checks before it records GPU work. */
export interface EngineLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxComputeWorkgroupsPerDimension: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxStorageBuffersPerShaderStage: number;
}

export interface AdapterInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  backend: string;
  runtime: 'browser' | 'node';
  features: string[];
  limits: Record<string, number>;
  /** The adapter's smallest subgroup size, where it says (GPUAdapterInfo.subgroupMinSize). */
  subgroupMinSize?: number;
}

export interface GPUContext {
  gpu: GPU;
  adapter: GPUAdapter;
  device: GPUDevice;
  limits: EngineLimits;
  info: AdapterInfo;
  /** The most bytes the engine's pool may hold (DeviceOptions.memoryLimit); Infinity for none. */
  memoryLimit: number;
}

// Dawn's `create()` result must outlive every adapter, device and buffer made from it: dropping
// it crashes the process at the next dispatch once the garbage collector runs (docs/software-gpu.md).
// Every create() result made in this process (one per distinct adapter/toggle request) is held;
// the first, made with default options, is reused by later default requests.
let dawnGPU: GPU | null = null;
const keepAlive: GPU[] = [];

function env(name: string): string | undefined {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return proc?.env?.[name];
}

async function nodeGPU(opts: DeviceOptions): Promise<GPU> {
  const proc = (globalThis as { process?: { env: Record<string, string | undefined> } }).process!;
  // Mesa warns at every start when XDG_RUNTIME_DIR is unset.
  if (!proc.env.XDG_RUNTIME_DIR) proc.env.XDG_RUNTIME_DIR = '/tmp';
  const spec = 'webgpu'; // a variable specifier keeps bundlers from pulling Dawn into the browser build
  let mod: { create: (o: string[]) => GPU; globals: Record<string, unknown> };
  try {
    mod = await import(spec);
  } catch (e) {
    throw new Error(`atrous: cannot load the npm package 'webgpu' (Dawn for Node): ${(e as Error).message}. Run 'npm install'.`);
  }
  // WebGPU enums/classes (GPUBufferUsage, ...) are globals in a browser; Dawn exports them.
  for (const [k, v] of Object.entries(mod.globals)) {
    if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  }
  if (dawnGPU && !opts.adapter && !opts.dawnOptions?.length) return dawnGPU;
  const args = [...(opts.dawnOptions ?? [])];
  const name = opts.adapter ?? env('ATROUS_ADAPTER');
  if (name) args.push(`adapter=${name}`);
  const gpu = mod.create(args);
  if (!dawnGPU) dawnGPU = gpu;
  keepAlive.push(gpu);
  return gpu;
}

/** The WebGPU entry point atrous opens its devices from: navigator.gpu in a browser, the cached
 * Dawn instance in Node (benchmarks hand it to another library so both use the same adapter). */
export async function webgpuInstance(opts: Pick<DeviceOptions, 'adapter' | 'dawnOptions'> = {}): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  return nodeGPU(opts);
}

const LIMIT_NAMES: (keyof EngineLimits)[] = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupsPerDimension',
  'maxComputeInvocationsPerWorkgroup',
  'maxStorageBuffersPerShaderStage',
];

function limitsRecord(l: GPUSupportedLimits): Record<string, number> {
  const out: Record<string, number> = {};
  let proto: object | null = l;
  while (proto && proto !== Object.prototype) {
    for (const k of Object.getOwnPropertyNames(proto)) {
      const v = (l as unknown as Record<string, unknown>)[k];
      if (typeof v === 'number' && !(k in out)) out[k] = v;
    }
    proto = Object.getPrototypeOf(proto);
  }
  return out;
}

/** Opens a WebGPU device with the adapter's real limits. Throws a message that says what to do
 * when WebGPU or an adapter is missing. */
export async function openDevice(opts: DeviceOptions = {}): Promise<GPUContext> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  const inBrowser = typeof (globalThis as { window?: unknown }).window !== 'undefined' && !!nav?.gpu;
  let gpu: GPU;
  if (nav?.gpu) gpu = nav.gpu;
  else if ((globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node) gpu = await nodeGPU(opts);
  else throw new Error('atrous: WebGPU is not available here (navigator.gpu is undefined). Use a browser with WebGPU enabled (Chrome/Edge 113+, or --enable-unsafe-webgpu).');

  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference });
  if (!adapter) {
    throw new Error(
      'atrous: no WebGPU adapter found. In Node on Linux without a GPU, install Mesa lavapipe from bookworm-backports ' +
        "(run 'node scripts/setup.mjs' as root, or see README); in a browser, enable WebGPU.",
    );
  }
  const info = adapter.info ?? ({} as GPUAdapterInfo);
  const wanted = opts.adapter ?? (inBrowser ? undefined : env('ATROUS_ADAPTER'));
  if (wanted && inBrowser && !`${info.description} ${info.device} ${info.vendor}`.includes(wanted)) {
    throw new Error(`atrous: adapter '${wanted}' requested but the browser offers '${info.description || info.vendor}'`);
  }
  const adapterLimits = limitsRecord(adapter.limits);
  // Ask for everything the adapter offers (WebGPU's defaults are far lower, e.g. 128 MiB bindings
  // and 256 invocations per workgroup).
  const requiredLimits: Record<string, number> = {};
  for (const [k, v] of Object.entries(adapterLimits)) {
    if (k.startsWith('max') || k.startsWith('min')) requiredLimits[k] = v;
  }
  const requiredFeatures: GPUFeatureName[] = [];
  for (const f of ['timestamp-query', 'shader-f16', 'subgroups'] as GPUFeatureName[]) if (adapter.features.has(f)) requiredFeatures.push(f);
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  } catch {
    device = await adapter.requestDevice({ requiredFeatures });
  }
  const deviceLimits = limitsRecord(device.limits);
  const limits = {} as EngineLimits;
  for (const k of LIMIT_NAMES) {
    const v = deviceLimits[k];
    const lowered = opts.limits?.[k];
    limits[k] = lowered !== undefined ? Math.min(lowered, v) : v;
  }
  const features = [...device.features].map(String).sort();
  const memoryLimit = await memoryLimitFor(opts, { description: info.description ?? '', architecture: info.architecture ?? '', device: info.device ?? '', vendor: info.vendor ?? '' }, inBrowser);
  return {
    gpu,
    adapter,
    device,
    limits,
    memoryLimit,
    info: {
      vendor: info.vendor ?? '',
      architecture: info.architecture ?? '',
      device: info.device ?? '',
      description: info.description ?? '',
      backend: inBrowser ? 'browser' : guessBackend(info),
      runtime: inBrowser ? 'browser' : 'node',
      features,
      limits: deviceLimits,
      ...(typeof (info as { subgroupMinSize?: number }).subgroupMinSize === 'number' ? { subgroupMinSize: (info as { subgroupMinSize: number }).subgroupMinSize } : {}),
    },
  };
}

function guessBackend(info: GPUAdapterInfo): string {
  // Dawn for Node exposes no backend field; on Linux it is Vulkan (docs/software-gpu.md: no working GL backend).
  const p = (globalThis as { process?: { platform?: string } }).process?.platform;
  if (p === 'darwin') return 'metal';
  if (p === 'win32') return 'd3d12';
  return info.vendor === 'mesa' || p === 'linux' ? 'vulkan' : 'unknown';
}

/** A short human name for the adapter, used on benchmark rows and in logs. */
export function adapterName(info: AdapterInfo): string {
  return info.description || [info.vendor, info.architecture, info.device].filter(Boolean).join(' ') || 'unknown adapter';
}

// A small per-user cache file (Node only; the browser has no file system, so there the callers
// keep their results in memory for the page's lifetime). The file system modules are imported
// dynamically through variable specifiers, as 'webgpu' above, so no bundler pulls them into the
// browser build.

/** The part of node:fs/promises used here (typed locally: the browser build has no Node types). */
interface NodeFs {
  readFile(path: string, enc: 'utf8'): Promise<string>;
  writeFile(path: string, text: string): Promise<void>;
  mkdir(path: string, opts: { recursive: boolean }): Promise<unknown>;
  rename(from: string, to: string): Promise<void>;
}

function isNode(): boolean {
  return !!(globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node && !(globalThis as { window?: unknown }).window;
}

/** Where the cache file `name` lives: $ATROUS_CACHE_DIR, else $XDG_CACHE_HOME/atrous, else
 * ~/.cache/atrous. Null outside Node or without a home directory. */
export function userCachePath(name: string): string | null {
  if (!isNode()) return null;
  const dir = env('ATROUS_CACHE_DIR') || (env('XDG_CACHE_HOME') ? `${env('XDG_CACHE_HOME')}/atrous` : env('HOME') ? `${env('HOME')}/.cache/atrous` : null);
  return dir ? `${dir.replace(/\/+$/, '')}/${name}` : null;
}

/** Reads the cache file `name`; null when absent, unreadable or outside Node. */
export async function readUserCache(name: string): Promise<string | null> {
  const path = userCachePath(name);
  if (!path) return null;
  try {
    const spec = 'node:fs/promises';
    const fs = (await import(spec)) as NodeFs;
    return await fs.readFile(path, 'utf8');
  } catch {
    return null;
  }
}

/** Writes the cache file `name` (directory created, written to a temporary file then renamed, so
 * a concurrent reader never sees half a file). Returns the path, or null when it could not be
 * written (outside Node, read-only home): a cache that cannot be kept is not an error. */
export async function writeUserCache(name: string, text: string): Promise<string | null> {
  const path = userCachePath(name);
  if (!path) return null;
  try {
    const spec = 'node:fs/promises';
    const fs = (await import(spec)) as NodeFs;
    await fs.mkdir(path.slice(0, path.lastIndexOf('/')), { recursive: true });
    const tmp = `${path}.${(globalThis as unknown as { process: { pid: number } }).process.pid}.tmp`;
    await fs.writeFile(tmp, text);
    await fs.rename(tmp, path);
    return path;
  } catch {
    return null;
  }
}
