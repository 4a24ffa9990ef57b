// Tools beside the Postfix harness (postfix-server.ts): a netstring socketmap stand-in for the lookup service,
// a self-signed certificate, a command-by-command SMTP client, scratch directories Postfix can traverse.
import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync } from "node:fs";
import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export function countFiles(dir: string): number {
  try {
    return readdirSync(dir).length;
  } catch {
    return 0;
  }
}

/**
 * A throwaway EC certificate and key in `dir` (cert.pem, key.pem) for `hostname`. `subjectAltName` (OpenSSL
 * syntax, e.g. "DNS:localhost,IP:127.0.0.1") is for a client that verifies the name, which ignores the CN.
 */
export async function createSelfSignedCert(
  dir: string,
  hostname: string,
  options: { subjectAltName?: string } = {},
): Promise<{ certFile: string; keyFile: string }> {
  const files = { certFile: join(dir, "cert.pem"), keyFile: join(dir, "key.pem") };
  const extensions = options.subjectAltName === undefined ? [] : ["-addext", `subjectAltName=${options.subjectAltName}`];
  await execFileAsync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-days",
    "2",
    "-subj",
    `/CN=${hostname}`,
    ...extensions,
    "-keyout",
    files.keyFile,
    "-out",
    files.certFile,
  ]);
  return files;
}

/**
 * Netstring socketmap server (socketmap_table(5)) answering OK for the addresses in `known`, NOTFOUND otherwise.
 * Like the real lookup service it resolves user+tag@domain to user@domain: Postfix sends the tagged form.
 */
export interface SocketmapStandIn {
  port: number;
  lookups: string[];
  close(): Promise<void>;
}

export async function startSocketmap(known: Set<string>): Promise<SocketmapStandIn> {
  const lookups: string[] = [];
  const netstring = (text: string): string => `${Buffer.byteLength(text)}:${text},`;
  const open = new Set<Socket>();
  const server: Server = createServer((socket) => {
    open.add(socket);
    socket.once("close", () => open.delete(socket));
    let buffered = "";
    socket.on("data", (chunk) => {
      buffered += chunk.toString("utf8");
      for (;;) {
        const match = /^(\d+):/.exec(buffered);
        if (match === null) return;
        const length = Number(match[1]);
        const start = match[0].length;
        if (buffered.length < start + length + 1) return;
        const request = buffered.slice(start, start + length);
        buffered = buffered.slice(start + length + 1);
        const key = request.slice(request.indexOf(" ") + 1).toLowerCase();
        lookups.push(key);
        const untagged = key.replace(/\+[^@]*@/, "@");
        socket.write(netstring(known.has(untagged) ? `OK ${untagged}` : "NOTFOUND "));
      }
    });
    socket.on("error", () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    lookups,
    // Postfix keeps socketmap connections open between lookups: end them, or close() would wait for them.
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of open) socket.destroy();
      }),
  };
}

/** A scratch directory every Postfix daemon (user postfix) and delivery user (nobody) can traverse. */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

/** A minimal SMTP client: sends each command and collects the final reply line, one per command. */
export class SmtpClient {
  private buffer = "";
  private waiters: ((line: string) => void)[] = [];
  private readonly replies: string[] = [];

  private constructor(private readonly socket: ReturnType<typeof connect>) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      let newline: number;
      while ((newline = this.buffer.indexOf("\r\n")) >= 0) {
        const line = this.buffer.slice(0, newline);
        this.buffer = this.buffer.slice(newline + 2);
        // Multi-line replies end with "NNN " (space); only that line completes the reply.
        if (/^\d{3} /.test(line)) this.deliver(line);
      }
    });
  }

  private deliver(line: string): void {
    const waiter = this.waiters.shift();
    if (waiter === undefined) this.replies.push(line);
    else waiter(line);
  }

  static async open(port: number): Promise<{ client: SmtpClient; greeting: string }> {
    const socket = connect({ host: "127.0.0.1", port });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const client = new SmtpClient(socket);
    return { client, greeting: await client.reply() };
  }

  private reply(): Promise<string> {
    const ready = this.replies.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async command(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`);
    return this.reply();
  }

  /** DATA with dot-stuffing; resolves with the reply to the final dot. */
  async data(message: string): Promise<string> {
    const start = await this.command("DATA");
    if (!start.startsWith("354")) return start;
    const body = message.replace(/\r?\n/g, "\r\n").replace(/^\./gm, "..");
    this.socket.write(`${body}${body.endsWith("\r\n") ? "" : "\r\n"}.\r\n`);
    return this.reply();
  }

  async close(): Promise<void> {
    await this.command("QUIT");
    this.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }
}
