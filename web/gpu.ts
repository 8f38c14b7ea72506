// The WebGPU start: the engine on navigator.gpu, or a message that says what to enable.
import { init, engine } from '../src/index.js';
import { $, demo, errText, gpuState, mib, setStatus, updateMemory } from './page.js';


const ENABLE_HELP =
  'Use Chrome or Edge 113 or newer (Windows, macOS, ChromeOS; Chrome 121+ on Android), Safari 26 or newer, or Firefox 141+ on Windows. ' +
  'On Linux, Chrome and Chromium ship WebGPU switched off: enable <code>chrome://flags/#enable-unsafe-webgpu</code> (and ' +
  '<code>chrome://flags/#enable-vulkan</code>) and restart, or start the browser with <code>--enable-unsafe-webgpu</code>; ' +
  'without a usable GPU, <code>--enable-unsafe-webgpu --use-webgpu-adapter=swiftshader</code> runs WebGPU on the CPU (slowly). ' +
  'In Firefox elsewhere, set <code>dom.webgpu.enabled</code> to true in <code>about:config</code>.';

function noGpu(state: 'no-webgpu' | 'no-adapter' | 'device-error', html: string, plain: string): void {
  demo.state = state;
  demo.message = plain;
  const b = $('nogpu');
  b.innerHTML = html;
  b.hidden = false;
  $('gpu-line').textContent = `WebGPU: ${plain}`;
  // The panels stay visible (they say what they would do) but nothing can start.
  for (const el of document.querySelectorAll<HTMLInputElement | HTMLButtonElement | HTMLSelectElement>('main button, main input, main select')) el.disabled = true;
  setStatus('seg-status', 'Needs WebGPU (see above).');
  setStatus('train-status', 'Needs WebGPU (see above).');
  setStatus('bench-status', 'Needs WebGPU (see above).');
}

export async function startGpu(): Promise<boolean> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) {
    if (!window.isSecureContext) {
      noGpu('no-webgpu',
        `<strong>WebGPU needs a secure context.</strong> This page was opened from <code>${location.origin}</code>, which the browser does not trust, so it hides WebGPU. ` +
        'Open it as <code>http://localhost:PORT/</code> on the machine that runs <code>npm run serve</code>, or serve it over https.',
        'not available: this page is not a secure context (open it via http://localhost or https)');
    } else {
      noGpu('no-webgpu',
        `<strong>WebGPU is not available in this browser</strong> (<code>navigator.gpu</code> is undefined), so the model cannot run here. ${ENABLE_HELP}`,
        'not available in this browser (navigator.gpu is undefined): enable WebGPU, e.g. chrome://flags/#enable-unsafe-webgpu');
    }
    return false;
  }
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await gpu.requestAdapter();
  } catch (e) {
    console.warn('requestAdapter failed', e);
  }
  if (!adapter) {
    noGpu('no-adapter',
      '<strong>WebGPU is enabled but the browser offers no GPU adapter</strong> (its GPU may be blocklisted, or no driver fits). ' +
      'Look at <code>chrome://gpu</code>; try enabling <code>chrome://flags/#enable-unsafe-webgpu</code> and <code>chrome://flags/#enable-vulkan</code>, ' +
      'or start the browser with <code>--enable-unsafe-webgpu --use-webgpu-adapter=swiftshader</code> for a software adapter. ' + ENABLE_HELP,
      'no adapter: the browser has WebGPU but offers no GPU adapter (see chrome://gpu; try --use-webgpu-adapter=swiftshader)');
    return false;
  }
  try {
    const e = await init();
    demo.adapter = e.adapterName;
    void e.device.lost.then((info) => {
      if (info.reason === 'destroyed') return;
      gpuState.ready = false;
      noGpu('device-error', `<strong>The GPU device was lost</strong> (${info.message || 'no reason given'}). Reload the page.`, `device lost: ${info.message}`);
    });
  } catch (e) {
    noGpu('device-error', `<strong>Could not open a WebGPU device:</strong> ${errText(e)}`, `device error: ${errText(e)}`);
    return false;
  }
  gpuState.ready = true;
  const e = engine();
  $('gpu-line').textContent = `WebGPU adapter: ${e.adapterName}${e.info.architecture && !e.adapterName.includes(e.info.architecture) ? ` (${e.info.architecture})` : ''}` +
    `, max storage binding ${mib(e.limits.maxStorageBufferBindingSize)}, ${e.hasTimestamps ? 'GPU timestamps' : 'no GPU timestamps'}`;
  setInterval(updateMemory, 1000);
  updateMemory();
  return true;
}
