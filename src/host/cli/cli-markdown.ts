// docs/cli.md, generated from the same command table as `moat --help` (make docs).
import { buildProgram } from "./program.js";

export function cliMarkdown(): string {
  const program = buildProgram();
  program.configureHelp({ helpWidth: 100 });
  const sections = [`# moat command line\n\nGenerated from the command table by \`make docs\`; do not edit by hand.\n\n\`\`\`\n${program.helpInformation()}\`\`\`\n`];
  for (const command of program.commands) {
    command.configureHelp({ helpWidth: 100 });
    sections.push(`## moat ${command.name()}\n\n\`\`\`\n${command.helpInformation()}\`\`\`\n`);
  }
  return sections.join("\n");
}
