// A raw TCP client for the socketmap service's tests: collects every byte the server writes, parses netstring
// replies, and notices when the server closes. What Postfix (and a person with nc) sees.
import { connect, type Socket } from "node:net";
import { encodeNetstring } from "../../runtime/src/lookup/server";

export const netstring = (payload: string): Buffer => Buffer.from(encodeNetstring(payload));

export class SocketmapClient {
  private received = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  private parsed: string[] = [];
  private parsedUpTo = 0;
  closed = false;
  /** The server ended its side (FIN received). */
  ended = false;
  readonly ready: Promise<void>;
  readonly socket: Socket;

  /**
   * `localAddress` another loopback address (127.0.0.2…) to be a different peer; `allowHalfOpen` to keep this
   * side open after the server's FIN, as Postfix does with an idle socketmap connection.
   */
  constructor(port: number, options: { localAddress?: string; allowHalfOpen?: boolean } = {}) {
    this.socket = connect({ port, host: "127.0.0.1", localAddress: options.localAddress, allowHalfOpen: options.allowHalfOpen });
    this.socket.setNoDelay(true);
    this.ready = new Promise((resolve) => this.socket.once("connect", () => resolve()));
    this.socket.on("data", (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.wake();
    });
    this.socket.on("end", () => {
      this.ended = true;
      this.wake();
    });
    this.socket.on("error", () => undefined);
    this.socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve) => this.socket.write(data, () => resolve()));
  }

  /** Ends this side (sends FIN), as a line probe from nc does after its last line. */
  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Waits until `predicate` holds, or fails at the deadline naming what was received. */
  async until(predicate: () => boolean, deadlineMs = 5_000): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`deadline: received ${JSON.stringify(this.text())}, closed=${this.closed}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 20);
      });
    }
  }

  /** Whether the connection is still open after `ms` (no reply needed meanwhile). */
  async stillOpenAfter(ms: number): Promise<boolean> {
    await this.until(() => this.closed, ms).catch(() => undefined);
    return !this.closed;
  }

  text(): string {
    return this.received.toString("utf8");
  }

  /** Complete netstring payloads received so far (parsed incrementally: some tests receive thousands). */
  netstrings(): string[] {
    for (;;) {
      const colon = this.received.indexOf(":", this.parsedUpTo);
      if (colon < 0) break;
      const header = this.received.toString("latin1", this.parsedUpTo, colon);
      if (!/^\d+$/.test(header)) throw new Error(`reply is not a netstring: ${JSON.stringify(header)}`);
      const end = colon + 1 + Number(header);
      if (this.received.length < end + 1) break;
      if (this.received[end] !== 0x2c) throw new Error(`netstring not terminated by a comma at byte ${end}`);
      this.parsed.push(this.received.toString("utf8", colon + 1, end));
      this.parsedUpTo = end + 1;
    }
    return this.parsed;
  }

  /** The first `count` netstring replies, or all there are once the server closed. */
  async replies(count: number, deadlineMs = 5_000): Promise<string[]> {
    await this.until(() => this.netstrings().length >= count || this.closed, deadlineMs);
    return this.netstrings();
  }
}
