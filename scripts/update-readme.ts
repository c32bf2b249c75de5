/**
 * Rewrites the generated parts of README.md (the flag and feature-gate tables) from the
 * configuration schema. `test/readme.test.ts` fails when README.md differs from this output.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { featureGatesMarkdownTable, flagsMarkdownTable } from "../src/config/help.ts";

/** README text with the generated sections filled in. */
export function renderReadme(readme: string): string {
  const fill = (text: string, name: string, body: string) => {
    const start = `<!-- ${name}:start -->`;
    const end = `<!-- ${name}:end -->`;
    const a = text.indexOf(start);
    const b = text.indexOf(end);
    if (a < 0 || b < a) throw new Error(`README.md lacks the ${start} ... ${end} markers`);
    return `${text.slice(0, a + start.length)}\n${body.trimEnd()}\n${text.slice(b)}`;
  };
  return fill(fill(readme, "flags", flagsMarkdownTable()), "gates", featureGatesMarkdownTable());
}

if (import.meta.main) {
  const path = new URL("../README.md", import.meta.url);
  const before = readFileSync(path, "utf8");
  const after = renderReadme(before);
  if (after !== before) writeFileSync(path, after);
  console.log(after === before ? "README.md is up to date" : "README.md updated");
}
