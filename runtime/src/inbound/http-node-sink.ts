// The production sink: the BrightChain node's HTTP API (GATEWAY_NODE_URL).
//
// Contract (one request per recipient copy):
//   PUT <GATEWAY_NODE_URL>/messages/<sha3>?recipient=<address>&folder=<inbox|spam>
//   Content-Type: message/rfc822, Content-Length: <size>, body: the raw message as received.
//   Optional headers: X-Spam-Score, X-Message-Id.
//   2xx            → stored.
//   409            → the node already holds (sha3, recipient): stored, so a repeated hand-off is harmless.
//   408, 429       → temporary: retried with backoff.
//   other 4xx      → permanent: the node refuses this message; it goes to GATEWAY_ERROR_DIR with the reason.
//   5xx, network errors, no answer within the deadline → temporary.
import { createReadStream, openSync } from "node:fs";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { DROP_OPEN_FLAGS } from "./message-file";
import { SinkError, type DeliveryResult, type Handoff, type Sink } from "./sink";

export interface HttpNodeSinkOptions {
  nodeUrl: string;
  /** Deadline for the whole request, body upload included. */
  timeoutMs?: number;
}

const MAX_ERROR_TEXT = 300;

export class HttpNodeSink implements Sink {
  private readonly base: URL;
  private readonly timeoutMs: number;

  constructor(options: HttpNodeSinkOptions) {
    this.base = new URL(options.nodeUrl.replace(/\/+$/, "") + "/");
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  deliver(handoff: Handoff): Promise<DeliveryResult> {
    const url = new URL(`messages/${handoff.sha3}`, this.base);
    url.searchParams.set("recipient", handoff.recipient);
    url.searchParams.set("folder", handoff.folder);
    const headers: Record<string, string> = {
      "content-type": "message/rfc822",
      "content-length": String(handoff.size),
    };
    if (handoff.spamScore !== undefined) headers["x-spam-score"] = String(handoff.spamScore);
    if (handoff.messageId !== undefined) headers["x-message-id"] = handoff.messageId.replace(/[\r\n]/g, "");
    const where = `PUT ${url.origin}${url.pathname.slice(0, 60)}…`;

    // Never through a link, never waiting on a FIFO: the processor checked the file, this keeps it so.
    let fd: number;
    try {
      fd = openSync(handoff.rawPath, DROP_OPEN_FLAGS);
    } catch (error) {
      return Promise.reject(new SinkError(`${where}: ${(error as Error).message}`, false));
    }
    return new Promise<DeliveryResult>((resolve, reject) => {
      const send = url.protocol === "https:" ? httpsRequest : httpRequest;
      const req = send(url, { method: "PUT", headers, timeout: this.timeoutMs });
      const deadline = setTimeout(() => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      const fail = (error: SinkError): void => {
        clearTimeout(deadline);
        reject(error);
      };
      req.on("timeout", () => req.destroy(new Error(`socket idle for ${this.timeoutMs} ms`)));
      req.on("error", (error) => fail(new SinkError(`${where}: ${error.message}`, false)));
      req.on("response", (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let length = 0;
        res.on("data", (chunk: Buffer) => {
          if (length < MAX_ERROR_TEXT) chunks.push(chunk);
          length += chunk.length;
        });
        res.on("error", (error) => fail(new SinkError(`${where}: ${error.message}`, false)));
        res.on("end", () => {
          clearTimeout(deadline);
          const status = res.statusCode ?? 0;
          if ((status >= 200 && status < 300) || status === 409) {
            resolve(status === 409 ? "duplicate" : "stored");
            return;
          }
          const text = Buffer.concat(chunks).toString("utf8").slice(0, MAX_ERROR_TEXT).trim();
          const permanent = status >= 400 && status < 500 && status !== 408 && status !== 429;
          reject(new SinkError(`${where}: node answered ${status}${text === "" ? "" : `: ${text}`}`, permanent));
        });
      });
      const body = createReadStream(handoff.rawPath, { fd });
      body.on("error", (error) => req.destroy(error));
      // An upload cut short (no answer, refused) closes the file with it.
      req.on("close", () => body.destroy());
      body.pipe(req);
    });
  }

  async close(): Promise<void> {}
}
