// Option parsing shared by the commands (node:util parseArgs, with errors that name the option).
import { parseArgs, type ParseArgsConfig } from 'node:util';

export function parse<T extends NonNullable<ParseArgsConfig['options']>>(cmd: string, argv: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options: { ...options, adapter: { type: 'string' } }, allowPositionals, strict: true });
  } catch (e) {
    throw new Error(`atrous ${cmd}: ${(e as Error).message} (see 'atrous ${cmd} --help')`);
  }
}
