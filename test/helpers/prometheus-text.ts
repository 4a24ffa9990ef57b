// Scrapes a Prometheus endpoint and reads the text exposition format back into numbers, so a test asserts
// `brightchain_lookup_answers_total{answer="NOTFOUND"}` is 1 rather than matching text.
import { request } from "node:http";

export interface Scrape {
  status: number;
  contentType: string;
  text: string;
  /** Every sample by its series as written: `name` or `name{label="value",…}`. */
  samples: Map<string, number>;
}

/** The samples of a text exposition; comment lines (# HELP, # TYPE) are skipped. */
export function parsePrometheusText(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

export function scrape(port: number, host = "127.0.0.1", path = "/metrics", method = "GET"): Promise<Scrape> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, method, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({
          status: res.statusCode ?? 0,
          contentType: String(res.headers["content-type"] ?? ""),
          text,
          samples: res.statusCode === 200 ? parsePrometheusText(text) : new Map(),
        });
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer from ${host}:${port}${path} within 10 s`)));
    req.on("error", reject);
    req.end();
  });
}

/** One sample's value; a missing series fails the test with what the scrape did hold. */
export function sample(scraped: Scrape, series: string): number {
  const value = scraped.samples.get(series);
  if (value === undefined) throw new Error(`no sample ${series} in:\n${scraped.text}`);
  return value;
}
