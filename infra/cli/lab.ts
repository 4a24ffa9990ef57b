// `gateway lab …`: the lab's own command table lives with the lab (infra/lab/cli.ts); this only lists it.
import { LAB_USAGE, runLabCommand } from "../lab/cli";
import type { CliVerb } from "./verb";

export const labVerb: CliVerb = {
  summary: "boot, use and remove the local lab: real Debian hosts (systemd-nspawn) with lab DNS and ACME",
  help: `${LAB_USAGE}\n`,
  run: (args) => runLabCommand(args),
};
