// Validates docs/openapi.yaml (or the file given) against the official OpenAPI 3.1 schema with
// @seriousme/openapi-schema-validator (installed by scripts/dev into tests/openapi/node_modules),
// then resolves every $ref. Exits 0 when the document is valid, 1 otherwise (2 when the
// validator is not installed). check_spec.py lint adds the project's own rules.
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const spec = process.argv[2] || path.join(here, "..", "..", "docs", "openapi.yaml");

let Validator;
try {
  ({ Validator } = await import("@seriousme/openapi-schema-validator"));
} catch (e) {
  console.error("lint_spec: @seriousme/openapi-schema-validator is not installed in " +
    "tests/openapi/node_modules (scripts/dev test installs it: npm ci there): " + e.message);
  process.exit(2);
}

const validator = new Validator();
const result = await validator.validate(spec);
if (!result.valid) {
  console.error(`lint_spec: ${spec} is not a valid OpenAPI document:`);
  console.error(JSON.stringify(result.errors, null, 2));
  process.exit(1);
}
if (!String(validator.version).startsWith("3.1")) {
  console.error(`lint_spec: ${spec} is OpenAPI ${validator.version}, not 3.1`);
  process.exit(1);
}
try {
  validator.resolveRefs();
} catch (e) {
  console.error(`lint_spec: a $ref of ${spec} does not resolve: ${e.message}`);
  process.exit(1);
}
console.log(`lint_spec: ${spec} is a valid OpenAPI ${validator.version} document`);
