// `atrous bench`: the benchmark suite (src/bench/run.ts), loaded only when asked for.
import type { Command } from './main.js';

export const benchCommand: Command = {
  summary: 'kernel and training-step benchmarks (GFLOP/s, GB/s, s/step; --compare tfjs,torch)',
  usage: 'usage: atrous bench [--quick] [--json] [--compare tfjs,torch] [--only SECTIONS] [--repeats N] [--out DIR] [--adapter NAME]',
  async run(argv) {
    const bench = await import('../bench/run.js');
    let opts;
    try {
      opts = bench.parseBenchArgs(argv);
    } catch (e) {
      throw new Error(`atrous bench: ${(e as Error).message} (see 'atrous bench --help')`);
    }
    await bench.runBench(opts);
    return 0;
  },
};
