#!/usr/bin/env node
// Command-line entry point (`npx atrous <command>`): loads the compiled CLI from dist/.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  console.error("atrous: the TypeScript sources are not built yet: run 'npm run build' (or 'npm test' / 'npm start', which build first)");
  process.exit(1);
}
const { run } = await import(main.href);
process.exitCode = await run(process.argv.slice(2));
// Dawn keeps background threads alive; exit explicitly once the command is done.
process.exit(process.exitCode);
