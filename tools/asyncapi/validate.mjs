// Validates AsyncAPI documents with the AsyncAPI Initiative's parser (its JSON Schema of the
// specification, the bindings' schemas and its Spectral ruleset), without network access.
// Usage: node validate.mjs FILE...  Prints one JSON line per file: {file, errors, warnings};
// exits 1 if any file has an error-level diagnostic.
import { readFile } from "node:fs/promises";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const parser = new Parser();
let failed = false;
for (const file of process.argv.slice(2)) {
  const text = await readFile(file, "utf8");
  const { document, diagnostics } = await parser.parse(text, { source: file });
  const show = (d) => ({ code: d.code, message: d.message, path: d.path.join("/") });
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).map(show);
  const warnings = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Warning).map(show);
  if (errors.length > 0 || document === undefined) failed = true;
  console.log(JSON.stringify({ file, parsed: document !== undefined, errors, warnings }));
}
process.exit(failed ? 1 : 0);
