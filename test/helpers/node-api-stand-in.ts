// A stand-in BrightChain node that speaks docs/node-api.openapi.yaml and nothing else: every request the runtime
// sends and every answer a test makes it give are checked against the document's paths, parameters, bodies and
// JSON Schemas (ajv, draft 2020-12 as OpenAPI 3.1 uses). What does not match is recorded in `violations`; a test
// asserts the list is empty, so neither the runtime nor the test can drift from the document unnoticed.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import { parse } from "yaml";

export const NODE_API_DOCUMENT = join(__dirname, "../../docs/node-api.openapi.yaml");

type Schema = Record<string, unknown>;

interface Parameter {
  name: string;
  in: "path" | "query" | "header";
  required?: boolean;
  schema: Schema;
}

interface MediaType {
  schema?: Schema;
}

interface Response {
  "x-gateway-outcome": string;
  content?: Record<string, MediaType>;
}

interface Operation {
  operationId: string;
  parameters: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, MediaType> };
  responses: Record<string, Response>;
}

interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema> };
}

export function loadNodeApiDocument(): OpenApiDocument {
  return parse(readFileSync(NODE_API_DOCUMENT, "utf8")) as OpenApiDocument;
}

/** What the runtime does with `status` from `operationId`, as the document's `x-gateway-outcome` says. */
export function documentedOutcome(document: OpenApiDocument, operationId: string, status: number): string {
  const operation = Object.values(document.paths)
    .flatMap((methods) => Object.values(methods))
    .find((candidate) => candidate.operationId === operationId);
  if (operation === undefined) throw new Error(`no operation ${operationId} in ${NODE_API_DOCUMENT}`);
  const response = operation.responses[String(status)] ?? operation.responses.default!;
  const outcome = response["x-gateway-outcome"];
  if (outcome !== "by-class") return outcome;
  if (status >= 200 && status < 300) return "stored";
  return status >= 400 && status < 500 ? "refused" : "temporary";
}

const SCHEMAS_ID = "node-api.openapi.yaml";

/** The document's `#/components/schemas/X` references, pointed at the one schema ajv holds them in. */
function withResolvableRefs(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withResolvableRefs);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, inner]) => [
      key,
      key === "$ref" && typeof inner === "string" && inner.startsWith("#/components/schemas/")
        ? `${SCHEMAS_ID}#/$defs/${inner.slice("#/components/schemas/".length)}`
        : withResolvableRefs(inner),
    ]),
  );
}

export interface NodeApiRequest {
  operationId: string;
  method: string;
  /** The request target as sent: path and query, percent-encoded. */
  url: string;
  /** Decoded path parameters, query parameters and headers, by name. */
  path: Record<string, string>;
  query: Record<string, string>;
  headers: Record<string, string>;
  body: Buffer;
}

export interface NodeApiAnswer {
  status: number;
  contentType?: string;
  body?: string;
}

/** Decides the answer to one request; `"no answer"` keeps the request open until the client gives up. */
export type NodeApiHandler = (request: NodeApiRequest) => NodeApiAnswer | "no answer" | Promise<NodeApiAnswer | "no answer">;

interface Route {
  pattern: RegExp;
  names: string[];
  method: string;
  operation: Operation;
}

export class StandInNode {
  readonly requests: NodeApiRequest[] = [];
  readonly violations: string[] = [];
  private readonly ajv = new Ajv2020({ strict: true, allErrors: true });
  private readonly validators = new Map<Schema, ValidateFunction>();
  private readonly routes: Route[];
  private readonly open = new Set<ServerResponse>();

  private constructor(
    private readonly server: Server,
    readonly document: OpenApiDocument,
    private readonly basePath: string,
    private readonly handler: NodeApiHandler,
  ) {
    this.ajv.addSchema({ $defs: withResolvableRefs(document.components.schemas) as Schema }, SCHEMAS_ID);
    this.routes = Object.entries(document.paths).flatMap(([template, methods]) => {
      const names: string[] = [];
      const pattern = new RegExp(
        `^${template.replace(/\{([^}]+)\}/g, (_match, name: string) => {
          names.push(name);
          return "([^/]+)";
        })}$`,
      );
      return Object.entries(methods).map(([method, operation]) => ({ pattern, names, method: method.toUpperCase(), operation }));
    });
  }

  /**
   * Listens on `host` (loopback unless a test serves lab hosts, from the lab bridge's address) and `port` (a free
   * one unless given: a node that comes back after an outage answers where it did); `basePath` is the path a node
   * URL carries before the document's paths.
   */
  static async start(
    handler: NodeApiHandler,
    options: { basePath?: string; host?: string; port?: number } = {},
  ): Promise<StandInNode> {
    const server = createServer();
    const node = new StandInNode(server, loadNodeApiDocument(), options.basePath ?? "", handler);
    server.on("request", (req, res) => void node.serve(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port ?? 0, options.host ?? "127.0.0.1", resolve);
    });
    return node;
  }

  /** The base URL to give the runtime (GATEWAY_REGISTRY_URL, GATEWAY_NODE_URL). */
  get url(): string {
    const { address, port } = this.server.address() as AddressInfo;
    return `http://${address}:${port}${this.basePath}`;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const res of this.open) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private check(where: string, schema: Schema, value: unknown): void {
    let validate = this.validators.get(schema);
    if (validate === undefined) {
      validate = this.ajv.compile(withResolvableRefs(schema) as Schema);
      this.validators.set(schema, validate);
    }
    if (!validate(value)) this.violations.push(`${where} ${JSON.stringify(value)}: ${this.ajv.errorsText(validate.errors)}`);
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url ?? "/", "http://stand-in");
    const where = `${req.method} ${url.pathname}`;
    const relative = url.pathname.startsWith(this.basePath) ? url.pathname.slice(this.basePath.length) : undefined;
    const match = this.routes
      .filter((route) => route.method === req.method)
      .map((route) => ({ route, groups: relative === undefined ? null : route.pattern.exec(relative) }))
      .find(({ groups }) => groups !== null);
    if (match === undefined) {
      this.violations.push(`${where}: no such operation in the document`);
      res.writeHead(404).end();
      return;
    }
    const { operation } = match.route;
    const request: NodeApiRequest = {
      operationId: operation.operationId,
      method: match.route.method,
      url: req.url ?? "",
      path: Object.fromEntries(match.route.names.map((name, i) => [name, decodeURIComponent(match.groups![i + 1]!)])),
      query: Object.fromEntries(url.searchParams),
      headers: Object.fromEntries(
        Object.entries(req.headers).flatMap(([name, value]) => (typeof value === "string" ? [[name, value]] : [])),
      ),
      body,
    };
    this.checkRequest(where, operation, request);
    this.requests.push(request);

    const answer = await this.handler(request);
    if (answer === "no answer") {
      this.open.add(res);
      return;
    }
    this.checkAnswer(where, operation, answer);
    res.writeHead(answer.status, answer.contentType === undefined ? {} : { "content-type": answer.contentType });
    res.end(answer.body ?? "");
  }

  private checkRequest(where: string, operation: Operation, request: NodeApiRequest): void {
    const sources = { path: request.path, query: request.query, header: request.headers };
    for (const parameter of operation.parameters) {
      const value = sources[parameter.in][parameter.in === "header" ? parameter.name.toLowerCase() : parameter.name];
      if (value === undefined) {
        if (parameter.required) this.violations.push(`${where}: ${parameter.in} parameter ${parameter.name} is missing`);
        continue;
      }
      this.check(`${where}: ${parameter.in} parameter ${parameter.name}`, parameter.schema, value);
    }
    const documentedQuery = operation.parameters.filter((p) => p.in === "query").map((p) => p.name);
    for (const name of Object.keys(request.query)) {
      if (!documentedQuery.includes(name)) this.violations.push(`${where}: query parameter ${name} is not in the document`);
    }
    if (operation.requestBody === undefined) {
      if (request.body.length > 0) this.violations.push(`${where}: a body, where the document has none`);
      return;
    }
    const contentType = (request.headers["content-type"] ?? "").split(";")[0]!.trim();
    const media = operation.requestBody.content[contentType];
    if (media === undefined) {
      this.violations.push(
        `${where}: content-type ${JSON.stringify(contentType)}; the document accepts ${Object.keys(operation.requestBody.content).join(", ")}`,
      );
    } else if (media.schema !== undefined) {
      this.check(`${where}: body`, media.schema, request.body.toString("latin1"));
    }
    if (request.headers["content-length"] !== String(request.body.length)) {
      this.violations.push(
        `${where}: content-length ${request.headers["content-length"]} for a ${request.body.length}-byte body`,
      );
    }
    // The path names the body by its SHA3-512: a node may rely on that to store it once.
    if (request.path.sha3 !== undefined && createHash("sha3-512").update(request.body).digest("hex") !== request.path.sha3) {
      this.violations.push(`${where}: the body's SHA3-512 is not the path's`);
    }
  }

  private checkAnswer(where: string, operation: Operation, answer: NodeApiAnswer): void {
    const response = operation.responses[String(answer.status)] ?? operation.responses.default;
    if (response === undefined) {
      this.violations.push(`${where}: answer ${answer.status} is not in the document`);
      return;
    }
    if (response.content === undefined || answer.body === undefined) return;
    const media = answer.contentType === undefined ? undefined : response.content[answer.contentType];
    if (media === undefined) {
      this.violations.push(
        `${where}: answer ${answer.status} as ${answer.contentType}; the document gives ${Object.keys(response.content).join(", ")}`,
      );
      return;
    }
    if (media.schema === undefined) return;
    let value: unknown = answer.body;
    if (answer.contentType === "application/json") {
      try {
        value = JSON.parse(answer.body);
      } catch {
        // A malformed body is what some tests send on purpose: it is recorded like any other mismatch.
        this.violations.push(`${where}: answer ${answer.status} body is not JSON`);
        return;
      }
    }
    this.check(`${where}: answer ${answer.status} body`, media.schema, value);
  }
}
