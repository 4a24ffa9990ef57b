import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile, readdir, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { LAB_BASE_PACKAGES, labBaseDir, labSuite, type LabRelease } from "./constants";
import { takeFileLock } from "./lock";
import { ProgressReporter, runStep } from "./process";

const STAMP_FILE = ".brightchain-lab-base.json";
/** Bump when the customisation below changes, so cached bases built by older code are rebuilt. */
const BASE_LAYOUT_VERSION = 2;

export interface AptSourceFile {
  path: string;
  text: string;
}

export interface BaseImageRecipe {
  release: LabRelease;
  suite: string;
  packages: readonly string[];
  /** Mirror debootstrap fetches from, e.g. http://deb.debian.org/debian. */
  mirror: string;
  /** deb822 sources the guests use: the machine's own Debian entries, so guests see the same snapshot. */
  guestSources: string;
  layoutVersion: number;
}

/**
 * Keeps the Debian stanzas of the machine's apt sources (deb822 `.sources` and one-line `.list` files, disabled
 * files already excluded by the caller) and renders them as one deb822 file for guests of `suite`: the
 * machine's own suite names (bookworm, bookworm-updates, bookworm-security) become the guest's (trixie, …),
 * served by the same mirror. Third-party repositories are dropped: their keyrings are not in the base image and
 * the guests may not reach them.
 */
export function debianSourcesForGuests(files: readonly AptSourceFile[], suite: string): string {
  const stanzas: string[] = [];
  for (const file of files) {
    if (file.path.endsWith(".sources")) {
      for (const stanza of file.text.split(/\n\s*\n/)) {
        const uris = /^URIs:\s*(.+)$/m.exec(stanza)?.[1] ?? "";
        const types = /^Types:\s*(.+)$/m.exec(stanza)?.[1] ?? "";
        const enabled = !/^Enabled:\s*no\s*$/im.test(stanza);
        if (enabled && types.split(/\s+/).includes("deb") && isDebianMirror(uris)) {
          stanzas.push(
            stanza
              .split("\n")
              .filter((line) => line.trim() !== "" && !line.startsWith("#"))
              .map((line) => (line.startsWith("Types:") ? "Types: deb" : line))
              .map((line) => (line.startsWith("Suites:") ? `Suites: ${guestSuites(line.slice(7).trim(), suite)}` : line))
              .join("\n"),
          );
        }
      }
    } else {
      for (const line of file.text.split("\n")) {
        const match = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.+)$/.exec(line.trim());
        if (match && isDebianMirror(match[1])) {
          stanzas.push(
            `Types: deb\nURIs: ${match[1]}\nSuites: ${guestSuites(match[2], suite)}\nComponents: ${match[3].trim()}\n` +
              "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg",
          );
        }
      }
    }
  }
  return stanzas.length === 0 ? "" : `${stanzas.join("\n\n")}\n`;
}

/** `bookworm-security` → `trixie-security` for a trixie guest: the part before the first hyphen is the release. */
function guestSuites(suites: string, suite: string): string {
  return suites
    .split(/\s+/)
    .map((name) => name.replace(/^[a-z]+/, suite))
    .join(" ");
}

function isDebianMirror(uris: string): boolean {
  return uris.split(/\s+/).some((uri) => /^https?:\/\/[^/]*debian\.org\//.test(uri));
}

/** The mirror debootstrap uses: the first guest source serving the main archive (not -security). */
export function debootstrapMirror(guestSources: string, suite: string): string {
  for (const stanza of guestSources.split("\n\n")) {
    const uris = /^URIs:\s*(.+)$/m.exec(stanza)?.[1]?.split(/\s+/) ?? [];
    const suites = /^Suites:\s*(.+)$/m.exec(stanza)?.[1]?.split(/\s+/) ?? [];
    if (suites.includes(suite) && uris[0]) return uris[0];
  }
  throw new Error(
    `apt sources: no enabled Debian entry for suite "${suite}" in /etc/apt/sources.list or ` +
      "/etc/apt/sources.list.d/*.{list,sources}; the lab needs one to build its base image",
  );
}

/** Host names the guests must resolve to reach the mirror (the lab DNS answers them with the machine's view). */
export function mirrorHostNames(guestSources: string): string[] {
  const names = new Set<string>();
  for (const match of guestSources.matchAll(/https?:\/\/([^/\s]+)\//g)) names.add(match[1]);
  return [...names].sort();
}

export function readMachineAptSources(): AptSourceFile[] {
  const files: AptSourceFile[] = [];
  if (existsSync("/etc/apt/sources.list")) {
    files.push({ path: "/etc/apt/sources.list", text: readFileSync("/etc/apt/sources.list", "utf8") });
  }
  const dir = "/etc/apt/sources.list.d";
  if (existsSync(dir)) {
    for (const name of readdirSync(dir).sort()) {
      if (name.endsWith(".list") || name.endsWith(".sources")) {
        files.push({ path: join(dir, name), text: readFileSync(join(dir, name), "utf8") });
      }
    }
  }
  return files;
}

export function baseImageRecipe(release: LabRelease): BaseImageRecipe {
  const suite = labSuite(release);
  const guestSources = debianSourcesForGuests(readMachineAptSources(), suite);
  return {
    release,
    suite,
    packages: LAB_BASE_PACKAGES,
    mirror: debootstrapMirror(guestSources, suite),
    guestSources,
    layoutVersion: BASE_LAYOUT_VERSION,
  };
}

async function cachedRecipe(baseDir: string): Promise<string | undefined> {
  try {
    return await readFile(join(baseDir, STAMP_FILE), "utf8");
  } catch {
    return undefined;
  }
}

/**
 * Builds the bare Debian base once and reuses it while the recipe (suite, packages, mirror, sources) is
 * unchanged. Built beside its final path and renamed into place, so an interrupted build never looks cached.
 */
export async function ensureBaseImage(
  progress: ProgressReporter,
  recipe: BaseImageRecipe,
  baseDir: string = labBaseDir(recipe.release),
): Promise<{ built: boolean; seconds: number }> {
  const started = Date.now();
  const stamp = `${JSON.stringify(recipe, null, 2)}\n`;
  if ((await cachedRecipe(baseDir)) === stamp) {
    progress(`base image ${recipe.suite}: cached at ${baseDir}`);
    return { built: false, seconds: 0 };
  }
  // A host suite (chroot of the trixie base) and a lab suite may both find it missing: one builds, the other
  // waits and then finds it cached.
  await mkdir(dirname(baseDir), { recursive: true });
  const release = await takeFileLock(`${baseDir}.lock`, 1_800_000);
  try {
    if ((await cachedRecipe(baseDir)) === stamp) {
      progress(`base image ${recipe.suite}: cached at ${baseDir} (built meanwhile by another process)`);
      return { built: false, seconds: (Date.now() - started) / 1000 };
    }
    return await buildBaseImage(progress, recipe, baseDir, stamp, started);
  } finally {
    release();
  }
}

async function buildBaseImage(
  progress: ProgressReporter,
  recipe: BaseImageRecipe,
  baseDir: string,
  stamp: string,
  started: number,
): Promise<{ built: boolean; seconds: number }> {
  const buildDir = `${baseDir}.partial`;
  await rm(buildDir, { recursive: true, force: true });
  await mkdir(buildDir, { recursive: true });
  progress(`base image ${recipe.suite}: debootstrap from ${recipe.mirror} into ${buildDir} (about 2 minutes)`);
  let lastShown = 0;
  await runStep(
    "lab",
    "build base image (debootstrap)",
    "debootstrap",
    ["--variant=minbase", `--include=${recipe.packages.join(",")}`, recipe.suite, buildDir, recipe.mirror],
    {
      onLine: (line) => {
        // debootstrap prints one line per package; one line every few seconds is enough to show it moves.
        if (/^I: (Retrieving|Validating|Unpacking|Configuring|Base system)/.test(line) && Date.now() - lastShown > 3000) {
          lastShown = Date.now();
          progress(`base image ${recipe.suite}: ${line.slice(3)}`);
        }
      },
    },
  );
  progress(`base image ${recipe.suite}: configuring (networkd, no host keys, empty machine-id, lab apt sources)`);
  await customiseBase(buildDir, recipe);
  await writeFile(join(buildDir, STAMP_FILE), stamp);
  await rm(baseDir, { recursive: true, force: true });
  await rename(buildDir, baseDir);
  const seconds = (Date.now() - started) / 1000;
  progress(`base image ${recipe.suite}: built in ${seconds.toFixed(0)} s`);
  return { built: true, seconds };
}

async function customiseBase(root: string, recipe: BaseImageRecipe): Promise<void> {
  await runStep("lab", "enable systemd-networkd in the base", "systemctl", [
    `--root=${root}`,
    "enable",
    "systemd-networkd.service",
  ]);
  // Each clone gets its own identity; a shared machine-id or host key would make the hosts indistinguishable.
  await writeFile(join(root, "etc/machine-id"), "");
  // dbus's postinst leaves its own id, which systemd-machine-id-setup would copy into every clone.
  await rm(join(root, "var/lib/dbus/machine-id"), { force: true });
  for (const name of await readdir(join(root, "etc/ssh"))) {
    if (name.startsWith("ssh_host_")) await unlink(join(root, "etc/ssh", name));
  }
  await rm(join(root, "etc/apt/sources.list"), { force: true });
  await writeFile(join(root, "etc/apt/sources.list.d/debian.sources"), recipe.guestSources);
  // Translations double `apt-get update` time and the lab never reads them.
  await writeFile(join(root, "etc/apt/apt.conf.d/90brightchain-lab"), 'Acquire::Languages "none";\n');
  for (const name of await readdir(join(root, "var/cache/apt/archives"))) {
    if (name.endsWith(".deb")) await unlink(join(root, "var/cache/apt/archives", name));
  }
}
