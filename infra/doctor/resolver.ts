// node:dns answers as doctor's checks read them: one canonical text per record, so a check compares what the
// renderer's DnsRecord says with what the world serves without knowing each type's answer shape. Any name
// server can be asked (`--resolver`), so doctor runs against the lab's resolver as against the public one.
import { randomInt } from "node:crypto";
import { createSocket } from "node:dgram";
import { Resolver } from "node:dns/promises";
import { connect, isIP } from "node:net";
import { decodeAnswer, DnsWireError, encodeQuery, tlsaText, TYPE_TLSA, type DnsAnswer } from "./dns-wire";
import { ResolverUnreachableError, type DnsLookup, type DnssecQuery } from "./types";

/** Answer codes that mean "there is no such record", as opposed to "could not find out". */
const NO_RECORDS = new Set(["ENODATA", "ENOTFOUND"]);
/** Answer codes that mean no server answered at all. */
const UNREACHABLE = new Set(["ECONNREFUSED", "ETIMEOUT", "ETIMEDOUT", "EREFUSED"]);

const withoutDot = (name: string): string => name.replace(/\.$/, "").toLowerCase();

/**
 * `IP` or `IP:PORT` (`[IPv6]:PORT`) as node:dns's setServers takes it; throws naming the value and what is accepted.
 */
export function parseResolverAddress(value: string): string {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(value);
  const hostPort = /^([^:]+):(\d+)$/.exec(value);
  const [host, port] = bracketed ? [bracketed[1]!, bracketed[2]] : hostPort ? [hostPort[1]!, hostPort[2]] : [value, undefined];
  const portNumber = port === undefined ? 53 : Number(port);
  if (isIP(host) === 0 || !Number.isInteger(portNumber) || portNumber < 1 || portNumber > 65535) {
    throw new Error(
      `--resolver ${JSON.stringify(value)} is not a name server address; accepted: IP, IP:PORT or [IPv6]:PORT, e.g. 192.0.2.53 or 127.0.0.1:5353`,
    );
  }
  return isIP(host) === 6 ? `[${host}]:${portNumber}` : `${host}:${portNumber}`;
}

type CaaAnswer = { critical: number } & Record<string, string | number>;

/** `ip`, `ip:port` or `[ip6]:port` (getServers' forms) as address and port. */
function splitServer(server: string): { address: string; port: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(server);
  if (bracketed) return { address: bracketed[1]!, port: Number(bracketed[2] ?? 53) };
  if (isIP(server) !== 0) return { address: server, port: 53 };
  const [address, port] = server.split(":");
  return { address: address!, port: Number(port ?? 53) };
}

/** One UDP query to one server; undefined when it does not answer within `timeoutMs`. */
function udpQuery(
  server: string,
  name: string,
  type: number,
  timeoutMs: number,
  options: { dnssec?: boolean } = {},
): Promise<DnsAnswer | undefined> {
  const { address, port } = splitServer(server);
  const id = randomInt(0x10000);
  return new Promise((resolve, reject) => {
    const socket = createSocket(isIP(address) === 6 ? "udp6" : "udp4");
    const done = (finish: () => void) => {
      clearTimeout(timer);
      socket.close();
      finish();
    };
    const timer = setTimeout(() => done(() => resolve(undefined)), timeoutMs);
    socket.on("error", () => done(() => resolve(undefined)));
    socket.on("message", (packet) => {
      try {
        const answer = decodeAnswer(packet);
        // Not the answer to this query (a late one to an earlier query): keep waiting.
        if (answer.id !== id) return;
        done(() => resolve(answer));
      } catch (error) {
        done(() => reject(error as Error));
      }
    });
    socket.send(encodeQuery(id, name, type, options), port, address);
  });
}

/**
 * The same query over TCP (RFC 7766), for an answer that came truncated over UDP: a DNSKEY set with RSA keys and
 * signatures can be larger than the EDNS buffer. The length prefix is read, never trusted beyond 65535 bytes.
 */
function tcpQuery(
  server: string,
  name: string,
  type: number,
  timeoutMs: number,
  options: { dnssec?: boolean },
): Promise<DnsAnswer> {
  const { address, port } = splitServer(server);
  const id = randomInt(0x10000);
  const query = encodeQuery(id, name, type, options);
  const framed = Buffer.concat([Buffer.from([query.length >> 8, query.length & 0xff]), query]);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: address, port });
    const chunks: Buffer[] = [];
    let received = 0;
    const done = (finish: () => void) => {
      clearTimeout(timer);
      socket.destroy();
      finish();
    };
    const timer = setTimeout(
      () => done(() => reject(new Error(`no answer over TCP from ${server} within ${timeoutMs} ms`))),
      timeoutMs,
    );
    socket.on("error", (error) => done(() => reject(new Error(`TCP to ${server}: ${error.message}`))));
    socket.on("connect", () => socket.write(framed));
    socket.on("data", (chunk) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received < 2) return;
      const whole = Buffer.concat(chunks);
      const length = whole.readUInt16BE(0);
      if (whole.length < 2 + length) return;
      try {
        const answer = decodeAnswer(whole.subarray(2, 2 + length));
        if (answer.id !== id) throw new DnsWireError(`answer id ${answer.id} is not the query's ${id}`);
        done(() => resolve(answer));
      } catch (error) {
        done(() => reject(error as Error));
      }
    });
    socket.on("end", () => done(() => reject(new Error(`TCP from ${server}: connection closed before a whole answer`))));
  });
}

/**
 * Queries with the DO and AD bits to `servers` (the system's when empty), in order, the first that answers;
 * over TCP when the UDP answer is truncated. A query node:dns cannot make: it neither sets DO nor returns RRSIGs.
 */
export function dnssecQuery(servers: string[] = [], options: { timeoutMs?: number } = {}): DnssecQuery {
  const timeoutMs = options.timeoutMs ?? 3_000;
  const candidates = servers.length > 0 ? servers : new Resolver().getServers();
  return async (name, type) => {
    for (const server of candidates) {
      let answer: DnsAnswer | undefined;
      try {
        answer = await udpQuery(server, name, type, timeoutMs, { dnssec: true });
        if (answer?.truncated) answer = await tcpQuery(server, name, type, timeoutMs, { dnssec: true });
      } catch (error) {
        throw new Error(`${server} for ${name} type ${type} (asked with DNSSEC OK): ${(error as Error).message}`);
      }
      if (answer === undefined) continue;
      const { address, port } = splitServer(server);
      return {
        server: isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`,
        rcode: answer.rcode,
        authenticated: answer.authenticated,
        records: answer.records,
      };
    }
    throw new Error(`no answer from ${candidates.join(", ")} for ${name} type ${type} (asked with DNSSEC OK)`);
  };
}

/** A resolver at `servers` (the system's when empty), answering every type doctor compares in canonical text. */
export function dnsLookup(servers: string[] = [], options: { timeoutMs?: number } = {}): DnsLookup {
  const resolver = new Resolver({ timeout: options.timeoutMs ?? 3_000, tries: 2 });
  if (servers.length > 0) resolver.setServers(servers);
  const described = servers.length > 0 ? servers.join(", ") : `the system's name servers (${resolver.getServers().join(", ")})`;

  const timeoutMs = options.timeoutMs ?? 3_000;
  /** node:dns (Node 20) cannot ask for TLSA: a query of doctor's own, to the same servers, in order. */
  const tlsa = async (name: string): Promise<string[]> => {
    for (const server of servers.length > 0 ? servers : resolver.getServers()) {
      const answer = await udpQuery(server, name, TYPE_TLSA, timeoutMs);
      if (answer === undefined) continue;
      if (answer.truncated) throw new Error(`TLSA ${name}: answer truncated (doctor asks over UDP only)`);
      if (answer.rcode === 3) return [];
      if (answer.rcode !== 0) throw new Error(`TLSA ${name}: rcode ${answer.rcode}`);
      return answer.records.filter((r) => r.type === TYPE_TLSA).map((r) => tlsaText(r.data));
    }
    const error = new Error(`no answer for TLSA ${name}`) as NodeJS.ErrnoException;
    error.code = "ETIMEOUT";
    throw error;
  };

  const answer = async (name: string, type: string): Promise<string[]> => {
    switch (type) {
      case "A":
        return resolver.resolve4(name);
      case "AAAA":
        return resolver.resolve6(name);
      case "MX":
        return (await resolver.resolveMx(name)).map((mx) => `${mx.priority} ${withoutDot(mx.exchange)}`);
      case "TXT":
        // A long TXT record (a 2048-bit DKIM key) arrives as several character-strings: one text, concatenated.
        return (await resolver.resolveTxt(name)).map((strings) => strings.join(""));
      case "PTR":
        return (await resolver.resolvePtr(name)).map(withoutDot);
      case "NS":
        return (await resolver.resolveNs(name)).map(withoutDot);
      case "TLSA":
        return tlsa(name);
      case "CAA":
        return (await resolver.resolveCaa(name)).map((caa) => {
          const { critical, ...rest } = caa as unknown as CaaAnswer;
          const [tag, value] = Object.entries(rest)[0] ?? ["", ""];
          return `${critical} ${tag} "${String(value)}"`;
        });
      default: {
        const records = (await resolver.resolve(name, type as "A")) as unknown[];
        return records.map((r) => (typeof r === "string" ? r : JSON.stringify(r)));
      }
    }
  };

  return async (name, type) => {
    try {
      return await answer(name, type);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? "";
      if (NO_RECORDS.has(code)) return [];
      if (UNREACHABLE.has(code)) {
        throw new ResolverUnreachableError(`no answer from ${described} for ${type} ${name} (${code})`);
      }
      throw new Error(`${type} ${name}: ${code || (error as Error).message}`);
    }
  };
}
