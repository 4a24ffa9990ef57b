// Port helpers for the renderer validation tests: a free loopback port, and waiting (with a deadline, never a
// fixed sleep) until something accepts connections on it.
import { createServer, connect } from "node:net";

export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error("no TCP address from a port-0 listener"));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}

/**
 * A free port below the kernel's ephemeral range, for a server that must bind the same port again later
 * (certbot's standalone server on every renewal): an ephemeral port can meanwhile become the local end of
 * some unrelated outgoing connection, and the later bind fails.
 */
export async function freeFixedPort(host = "127.0.0.1"): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const bound = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once("error", () => resolve(false));
      server.listen(port, host, () => server.close(() => resolve(true)));
    });
    if (bound) return port;
  }
  throw new Error("no free port found in 20000-31999");
}

/** Resolves true once host:port accepts a TCP connection, false when it refuses (not open) — one attempt. */
export function probePort(port: number, host = "127.0.0.1", timeoutMs = 2_000): Promise<"open" | "refused" | "timeout"> {
  return new Promise((resolve) => {
    const socket = connect({ port, host });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve("timeout");
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.destroy();
      resolve("open");
    });
    socket.once("error", () => {
      clearTimeout(timer);
      resolve("refused");
    });
  });
}

export async function waitForPort(port: number, host = "127.0.0.1", deadlineMs = 15_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (Date.now() < deadline) {
    if ((await probePort(port, host, 500)) === "open") return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`nothing accepted connections on ${host}:${port} within ${deadlineMs} ms`);
}
