// docs/runtime.md's table of GATEWAY_* variables, generated from the contract (shared/gateway-env-contract.ts)
// so the page cannot drift from what the deploy writes and the runtime reads. `npm run docs:env` rewrites it;
// test/unit/gateway-env-contract.test.ts fails when the checked-in page is not what this module generates.
import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import {
  GATEWAY_ENV,
  GATEWAY_ENV_NAMES,
  acceptedValues,
  envFileOf,
  type GatewayEnvVariable,
} from "../../shared/gateway-env-contract";

export const ENV_DOC_BEGIN =
  "<!-- generated from shared/gateway-env-contract.ts by `npm run docs:env`: edit the contract, not this table -->";
export const ENV_DOC_END = "<!-- end of generated table -->";

export const RUNTIME_DOC = path.resolve(__dirname, "../../docs/runtime.md");

const cell = (text: string): string => text.replace(/\|/g, "\\|");

export function gatewayEnvTable(): string {
  const rows = GATEWAY_ENV_NAMES.map((name) => {
    const variable: GatewayEnvVariable = GATEWAY_ENV[name];
    const file = envFileOf(name) === "send" ? "brightchain-send.env" : "gateway.env";
    const fallback =
      variable.default !== undefined ? `\`${variable.default}\`` : variable.required ? "required" : (variable.whenUnset ?? "");
    const readers = variable.readers.map((reader) => reader.replace("brightchain-", "")).join(", ");
    return `| \`${name}\` | ${file} | ${readers} | ${fallback} | ${cell(acceptedValues(name))} | ${cell(variable.description)} |`;
  });
  return [
    ENV_DOC_BEGIN,
    "",
    "| variable | file | read by | when unset | accepted | what it is |",
    "|---|---|---|---|---|---|",
    ...rows,
    "",
    ENV_DOC_END,
  ].join("\n");
}

/** docs/runtime.md with its generated table replaced: the text the checked-in page must equal. */
export function withGatewayEnvTable(doc: string): string {
  const begin = doc.indexOf(ENV_DOC_BEGIN);
  const end = doc.indexOf(ENV_DOC_END);
  if (begin < 0 || end < begin) throw new Error(`docs/runtime.md has lost its markers ${ENV_DOC_BEGIN} … ${ENV_DOC_END}`);
  return doc.slice(0, begin) + gatewayEnvTable() + doc.slice(end + ENV_DOC_END.length);
}

if (require.main === module) {
  writeFileSync(RUNTIME_DOC, withGatewayEnvTable(readFileSync(RUNTIME_DOC, "utf8")));
  process.stdout.write(`wrote ${path.relative(process.cwd(), RUNTIME_DOC)}\n`);
}
