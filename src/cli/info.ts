// `atrous info`: the adapter, backend, features and limits the engine will use.
import { init } from '../init.js';
import { conv2dVariants, describeConv2dVariant } from '../ops/conv2d/index.js';
import { parse } from './args.js';
import type { Command } from './main.js';

export const infoCommand: Command = {
  summary: 'print the WebGPU adapter, backend, features and limits',
  usage: 'usage: atrous info [--json] [--adapter NAME]',
  async run(argv) {
    const { values } = parse('info', argv, { json: { type: 'boolean' } });
    const e = await init({ adapter: values.adapter as string | undefined });
    const info = e.info;
    if (values.json) {
      console.log(JSON.stringify({ ...info, engineLimits: e.limits, conv2dForwardVariant: conv2dVariants.choose(e) }, null, 2));
      return 0;
    }
    console.log(`adapter:      ${e.adapterName}`);
    console.log(`vendor:       ${info.vendor || '-'}   architecture: ${info.architecture || '-'}   device: ${info.device || '-'}`);
    console.log(`backend:      ${info.backend} (${info.runtime})`);
    console.log(`features:     ${info.features.join(', ') || '(none)'}`);
    console.log(`conv2d kernel variant: ${describeConv2dVariant(conv2dVariants.choose(e))}`);
    console.log('limits:');
    for (const [k, v] of Object.entries(info.limits).sort()) console.log(`  ${k.padEnd(44)} ${v}`);
    return 0;
  },
};
