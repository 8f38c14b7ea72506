// The `atrous` command line. Each command lives in its own module; this file only dispatches.
import { infoCommand } from './info.js';
import { verifyCommand } from './verify.js';
import { predictCommand } from './predict.js';
import { dataCommand } from './data.js';
import { trainCommand } from './train.js';
import { evalCommand } from './eval.js';
import { startCommand } from './start.js';
import { benchCommand } from './bench.js';

export interface Command {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  info: infoCommand,
  verify: verifyCommand,
  predict: predictCommand,
  data: dataCommand,
  train: trainCommand,
  eval: evalCommand,
  main: startCommand,
  bench: benchCommand,
};

function help(): string {
  const lines = ['usage: atrous <command> [options]', '', 'commands:'];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(8)} ${c.summary}`);
  lines.push('', "Run 'atrous <command> --help' for a command's options. Global: --adapter NAME (or env ATROUS_ADAPTER).");
  return lines.join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return name ? 0 : 1;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    console.error(`atrous: unknown command '${name}'\n\n${help()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(cmd.usage);
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    console.error((e as Error).message.startsWith('atrous') ? (e as Error).message : `atrous ${name}: ${(e as Error).message}`);
    return 1;
  }
}
