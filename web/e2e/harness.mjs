// Test harness of the e2e script: starts `cellfab serve` (or uses CELLFAB_URL), serves
// web/dist in front of it when the server does not serve the UI itself yet, launches Debian's
// Chromium through playwright-core, and lists zip entries. Every wait is bounded.

import { spawn } from "node:child_process";
import { createReadStream, existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { extname, join, normalize, resolve } from "node:path";

export const WEB_DIR = resolve(import.meta.dirname, "..");
export const OUT_DIR = join(WEB_DIR, "e2e-output");

/** Fails with a message naming what did not happen in time. */
export async function within(ms, what, fn) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000} s: ${what}`)), ms);
  });
  try {
    return await Promise.race([fn(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Starts `cellfab serve --port 0` with a small plant (fast cell line) and `extraArgs`
 * (e.g. `--token T`); returns its URL. */
export async function startServer(cleanups, extraArgs = []) {
  if (process.env.CELLFAB_URL && extraArgs.length === 0) return process.env.CELLFAB_URL.replace(/\/$/, "");
  const bin = resolve(WEB_DIR, process.env.CELLFAB_BIN ?? "../target/release/cellfab");
  if (!existsSync(bin)) throw new Error(`no server binary at ${bin}: build it (cargo build --release -p cellfab) or set CELLFAB_URL / CELLFAB_BIN`);
  const dir = mkdtempSync(join(tmpdir(), "cellfab-e2e-"));
  const config = join(dir, "plant.json");
  const maxCells = Number(process.env.E2E_MAX_CELLS ?? 32);
  writeFileSync(config, JSON.stringify({ cell: { assembly: { max_cells: maxCells } } }));
  const child = spawn(bin, ["serve", "--port", "0", "--data-dir", join(dir, "data"), "--config", config, ...extraArgs], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  cleanups.push(() => child.kill("SIGTERM"));
  let output = "";
  child.stderr.on("data", (d) => (output += d));
  return within(30_000, `cellfab serve printing its address (output so far: ${output})`, () =>
    new Promise((res, rej) => {
      child.stdout.on("data", (d) => {
        output += d;
        const m = /serving on (http:\/\/[^\s]+)/.exec(output);
        if (m) res(m[1]);
      });
      child.on("exit", (code) => rej(new Error(`cellfab serve exited with ${code}: ${output}`)));
    }),
  );
}

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png", ".json": "application/json" };
const API = /^\/(api\/|files\/|start-both|reset|ws\/)/;

/**
 * The URL where the UI is: the server itself when it serves the built UI at `/`, otherwise a
 * loopback server that serves web/dist and forwards the API (HTTP and websockets) to it.
 */
export async function uiFor(serverUrl, cleanups) {
  const index = await fetch(serverUrl + "/").then((r) => (r.ok ? r.text() : ""), () => "");
  if (index.includes('id="root"') && !process.env.E2E_SERVE_DIST) return { url: serverUrl, via: "server" };
  const dist = join(WEB_DIR, "dist");
  if (!existsSync(join(dist, "index.html"))) throw new Error("web/dist is missing: run npm run build first");
  const target = new URL(serverUrl);
  const proxy = http.createServer((req, res) => {
    if (API.test(req.url)) {
      const up = http.request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on("error", (e) => {
        res.writeHead(502);
        res.end(String(e));
      });
      req.pipe(up);
      return;
    }
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^(\.\.[/\\])+/, "");
    let file = join(dist, path);
    if (!file.startsWith(dist) || !existsSync(file) || statSync(file).isDirectory()) file = join(dist, "index.html");
    res.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream" });
    createReadStream(file).pipe(res);
  });
  proxy.on("upgrade", (req, socket, head) => {
    const up = net.connect(Number(target.port), target.hostname, () => {
      const headers = Object.entries(req.headers).map(([k, v]) => `${k}: ${v}`).join("\r\n");
      up.write(`${req.method} ${req.url} HTTP/1.1\r\n${headers}\r\n\r\n`);
      up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on("error", () => socket.destroy());
    socket.on("error", () => up.destroy());
  });
  await new Promise((res) => proxy.listen(0, "127.0.0.1", res));
  cleanups.push(() => proxy.close());
  return { url: `http://127.0.0.1:${proxy.address().port}`, via: "web/dist + proxy" };
}

/** Debian's Chromium through playwright-core (never a downloaded browser). */
export async function launch(cleanups) {
  const { chromium } = await import("playwright-core");
  const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
  if (!existsSync(executablePath)) throw new Error(`no Chromium at ${executablePath}: apt-get install -y chromium`);
  const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "cellfab-chromium-")), {
    executablePath,
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1280, height: 800 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
  cleanups.push(() => context.close());
  return context;
}

/** Entry names of a zip file (from its central directory). */
export function zipEntries(file) {
  const buf = readFileSync(file);
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65_557); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error(`${file} is not a zip (no end of central directory)`);
  let count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  if ((count === 0xffff || p === 0xffffffff) && eocd >= 20 && buf.readUInt32LE(eocd - 20) === 0x07064b50) {
    // Zip64: the real count and offset are in the zip64 end of central directory record.
    const z = Number(buf.readBigUInt64LE(eocd - 20 + 8));
    count = Number(buf.readBigUInt64LE(z + 32));
    p = Number(buf.readBigUInt64LE(z + 48));
  }
  const names = [];
  for (let i = 0; i < count; i++) {
    if (buf.readUInt32LE(p) !== 0x02014b50) throw new Error(`${file}: broken central directory at entry ${i}`);
    const n = buf.readUInt16LE(p + 28), x = buf.readUInt16LE(p + 30), c = buf.readUInt16LE(p + 32);
    names.push(buf.toString("utf8", p + 46, p + 46 + n));
    p += 46 + n + x + c;
  }
  return names;
}
