// The TLS probe every TLS check uses (test/helpers/tls-probe.ts), held against servers whose answer is known:
// STARTTLS stand-ins on loopback built on node:tls, one that accepts TLS 1.1, one that refuses below 1.2, one
// that says 220 to STARTTLS and then keeps speaking plaintext. A probe that cannot tell them apart proves nothing.
import { createServer, type Server, type Socket } from "node:net";
import { readFileSync, rmSync } from "node:fs";
import { createSecureContext, TLSSocket, type SecureVersion } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSelfSignedCert, scratchDir } from "../helpers/postfix-tools";
import { freePort, waitForPort } from "../helpers/renderer-net";
import {
  judgeTlsProbe,
  localOpenssl,
  probeStarttls,
  starttlsProbeArgs,
  tlsFloorViolations,
  type OpensslRunner,
} from "../helpers/tls-probe";

interface StandIn {
  port: number;
  close(): Promise<void>;
}

/** An SMTP greeting, EHLO with STARTTLS, then TLS from `minVersion` up — or plaintext when `minVersion` is null. */
async function startStarttlsStandIn(
  cert: { certFile: string; keyFile: string },
  minVersion: SecureVersion | null,
): Promise<StandIn> {
  const context = createSecureContext({
    key: readFileSync(cert.keyFile),
    cert: readFileSync(cert.certFile),
    minVersion: minVersion ?? undefined,
    // Node's default security level forbids TLS 1.1 whatever minVersion says.
    ciphers: "DEFAULT@SECLEVEL=0",
  });
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    socket.write("220 stand-in ESMTP\r\n");
    let buffered = "";
    const onLine = (chunk: Buffer) => {
      buffered += chunk.toString("latin1");
      for (let end = buffered.indexOf("\r\n"); end !== -1; end = buffered.indexOf("\r\n")) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        if (/^EHLO /i.test(line)) socket.write("250-stand-in\r\n250 STARTTLS\r\n");
        else if (/^STARTTLS$/i.test(line) && minVersion !== null) {
          socket.off("data", onLine);
          socket.write("220 2.0.0 Ready to start TLS\r\n");
          const tls = new TLSSocket(socket, { isServer: true, secureContext: context });
          tls.on("error", () => undefined);
          tls.on("data", () => tls.end("221 2.0.0 Bye\r\n"));
          return;
        } else if (/^STARTTLS$/i.test(line)) {
          // Whatever the client sends next (its ClientHello) gets a plaintext SMTP reply.
          socket.off("data", onLine);
          socket.write("220 2.0.0 Ready to start TLS\r\n");
          socket.once("data", () => socket.end("500 5.5.2 Error: bad syntax\r\n"));
          return;
        } else socket.write("221 2.0.0 Bye\r\n");
      }
    };
    socket.on("data", onLine);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  await waitForPort(port);
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

let root: string;
let acceptsTls11: StandIn;
let refusesTls11: StandIn;
let plaintext: StandIn;
const target = (standIn: StandIn) => ({ host: "127.0.0.1", port: standIn.port });

beforeAll(async () => {
  root = scratchDir("bc-tls-probe-");
  const cert = await createSelfSignedCert(root, "stand-in.example");
  acceptsTls11 = await startStarttlsStandIn(cert, "TLSv1.1");
  refusesTls11 = await startStarttlsStandIn(cert, "TLSv1.2");
  plaintext = await startStarttlsStandIn(cert, null);
});

afterAll(async () => {
  for (const standIn of [acceptsTls11, refusesTls11, plaintext]) await standIn?.close();
  rmSync(root, { recursive: true, force: true });
});

describe("the STARTTLS probe against servers whose answer is known", () => {
  it("a server that accepts TLS 1.1 is seen completing a TLS 1.1 handshake, and fails the TLS floor check", async () => {
    const probe = await probeStarttls(target(acceptsTls11), "TLSv1.1");
    expect(probe.verdict, probe.output).toEqual({ kind: "handshake", protocol: "TLSv1.1", cipher: expect.any(String) });
    expect(probe.exitCode).toBe(0);
    const violations = await tlsFloorViolations(target(acceptsTls11));
    expect(violations.map((violation) => violation.split("\n")[0])).toEqual([
      expect.stringMatching(/^TLSv1\.1 not refused by the server: \{"kind":"handshake","protocol":"TLSv1\.1"/),
    ]);
  });

  it("a server that refuses below TLS 1.2 is seen refusing 1.1 and completing 1.2 and 1.3: the floor check passes", async () => {
    const old = await probeStarttls(target(refusesTls11), "TLSv1.1");
    expect(old.verdict, old.output).toMatchObject({ kind: "refused-by-server" });
    expect(await tlsFloorViolations(target(refusesTls11))).toEqual([]);
  });

  it("a server that never speaks TLS completes no handshake, though openssl still prints a Protocol line", async () => {
    for (const version of ["TLSv1.1", "TLSv1.2"] as const) {
      const probe = await probeStarttls(target(plaintext), version);
      expect(probe.verdict.kind, probe.output).toBe("failed");
      expect(probe.exitCode).not.toBe(0);
    }
    // What the old check matched: a line OpenSSL 3.0 prints for a handshake that never happened.
    expect((await probeStarttls(target(plaintext), "TLSv1.2")).output).toMatch(/Protocol\s*: TLSv1\.2/);
    expect(await tlsFloorViolations(target(plaintext))).toHaveLength(3);
  });

  it("a client that refuses TLS 1.1 by itself is not a server refusing it", async () => {
    // An empty protocol range: the client fails before sending anything ("no protocols available").
    const emptyRange = [...starttlsProbeArgs(target(acceptsTls11)), "-min_protocol", "TLSv1.2", "-max_protocol", "TLSv1.1"];
    const empty = await localOpenssl(emptyRange);
    expect(empty.output).toContain("no protocols available");
    expect(judgeTlsProbe(empty.exitCode, empty.output)).toMatchObject({ kind: "refused-by-client" });
    // TLS 1.1 at Debian's default security level: the client rejects the server's SHA-1 signature itself, and
    // the floor check must not take that for the server's refusal.
    const strictClient: OpensslRunner = (args) =>
      localOpenssl(args.filter((arg) => !["-cipher", "DEFAULT@SECLEVEL=0"].includes(arg)));
    const violations = await tlsFloorViolations(target(acceptsTls11), strictClient);
    expect(violations.map((violation) => violation.split("\n")[0])).toEqual([
      expect.stringMatching(/^TLSv1\.1 not refused by the server: \{"kind":"refused-by-client"/),
    ]);
  });
});
