// The generated playbook and inventory read by the real Ansible from Debian (ansible-core 2.14): syntax check,
// the task and handler list Ansible itself derives, and the inventory as Ansible parses it. No host is touched.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const repo = path.resolve(__dirname, "../..");
const temp = mkdtempSync(path.join(tmpdir(), "gateway-ansible-"));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

const dist = path.join(temp, "dist");
mkdirSync(dist);
writeFileSync(path.join(dist, "brightchain-lookup.cjs"), "// lookup build\n");

function run(command: string, args: string[]) {
  // A private ANSIBLE_LOCAL_TEMP/HOME so the test neither reads nor writes the machine's ~/.ansible.
  const env = { ...process.env, HOME: temp, ANSIBLE_LOCAL_TEMP: path.join(temp, "ansible-tmp"), ANSIBLE_NOCOLOR: "1" };
  const result = spawnSync(command, args, { cwd: repo, env, encoding: "utf8", timeout: 120_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe.each(["primary", "relay"])("the %s playbook under real Ansible", (stack) => {
  const out = path.join(temp, stack);
  let written: ReturnType<typeof run>;
  beforeAll(() => {
    written = run(process.execPath, [
      path.join(repo, "bin/gateway.cjs"),
      "playbook",
      "--stack",
      stack,
      "--out",
      out,
      "--runtime-dist",
      dist,
      "--host",
      "192.0.2.1",
    ]);
  });
  const inventory = path.join(out, "inventory.ini");
  const playbook = path.join(out, "playbook.yml");

  it("is written", () => {
    expect(written.stderr).toBe("");
    expect(written.code).toBe(0);
  });

  it("passes ansible-playbook --syntax-check", () => {
    const check = run("ansible-playbook", ["-i", inventory, playbook, "--syntax-check"]);
    expect(check.stderr).not.toMatch(/ERROR|WARNING/);
    expect(check.code).toBe(0);
  });

  it("lists the plan's tasks and handlers for the node's hostname only", () => {
    const list = run("ansible-playbook", ["-i", inventory, playbook, "--list-tasks", "--list-hosts"]);
    expect(list.code).toBe(0);
    const hostname = stack === "primary" ? "mail.brightchain.org" : "mail2.brightchain.org";
    expect(list.stdout).toMatch(new RegExp(`hosts \\(1\\):\\s+${hostname.replace(/\./g, "\\.")}`));
    expect(list.stdout).toContain("install the distribution packages");
    expect(list.stdout).toContain("install /etc/postfix/main.cf (644 root:root)");
    expect(list.stdout).toContain("wait for Postfix to listen and the recipient lookup service to answer");
  });

  it("has an inventory Ansible parses to the overridden address", () => {
    const parsed = run("ansible-inventory", ["-i", inventory, "--list"]);
    expect(parsed.code).toBe(0);
    const data = JSON.parse(parsed.stdout) as {
      _meta: { hostvars: Record<string, Record<string, unknown>> };
      gateway: { hosts: string[] };
    };
    const [host] = data.gateway.hosts;
    expect(data._meta.hostvars[host!]).toMatchObject({ ansible_host: "192.0.2.1", ansible_port: 22, ansible_user: "root" });
  });
});
