// End-to-end test of the web UI against the real `cellfab serve`, in Debian's Chromium:
//
//   1. load the page: defaults filled in, no console errors;
//   2. a recipe that does not sum to 1 shows the message and Start is refused (no run made);
//   3. a parameter outside its range shows the server's own message next to the field;
//   4. fix both, start a paced run: machines change state, the log grows, the chart gets
//      points, the run completes;
//   5. the Anode download is a zip holding the run's Anode files;
//   6. reload: the run is in the history; keyboard reaches a machine; the narrow layout fits;
//   7. a server started with --token: the page asks for the token, takes it, and runs; a
//      `?token=` link opens the UI directly and leaves the address bar clean.
//
// Usage (from web/): npm run build && node e2e/run.mjs
//   CELLFAB_URL=http://127.0.0.1:8000  use a running server instead of starting one
//   CELLFAB_BIN=path                    server binary (default ../target/release/cellfab)
//   E2E_SPEED=50000                     pacing of the run (simulated s per wall s)
//   E2E_RUN_TIMEOUT_S=300               longest wait for the run to finish
// Screenshots go to web/e2e-output/.

import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { OUT_DIR, launch, startServer, uiFor, within, zipEntries } from "./harness.mjs";

const SPEED = process.env.E2E_SPEED ?? "50000";
const RUN_TIMEOUT_MS = Number(process.env.E2E_RUN_TIMEOUT_S ?? 300) * 1000;
const STEP_MS = 20_000;

const cleanups = [];
let failures = 0;
let step = 0;

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function stage(name, fn) {
  step += 1;
  const t0 = Date.now();
  try {
    await fn();
    console.log(`ok ${step} - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failures += 1;
    console.log(`not ok ${step} - ${name}\n  ${String(e?.message ?? e).split("\n").join("\n  ")}`);
    throw e;
  }
}

async function main() {
  rmSync(OUT_DIR, { recursive: true, force: true });
  mkdirSync(OUT_DIR, { recursive: true });
  const server = await startServer(cleanups);
  const ui = await uiFor(server, cleanups);
  console.log(`# server ${server}; UI at ${ui.url} (${ui.via})`);
  const api = (path, init) => fetch(server + path, init).then((r) => r.json());
  const context = await launch(cleanups);
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  const consoleErrors = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  // The sticky header is made static so that it does not cover element screenshots.
  const shot = (name, target = page) => target.screenshot({ path: join(OUT_DIR, name), style: ".top { position: static !important; }" });

  let original = "";
  await stage("the page loads with the default recipe filled in", async () => {
    await page.goto(ui.url);
    await page.locator('input[name="anode-AM"]').waitFor();
    original = await page.locator('input[name="anode-AM"]').inputValue();
    check(Number(original) > 0 && Number(original) < 1, `default anode AM fraction is ${original}`);
    await page.locator('output[aria-label="anode sum"]').filter({ hasText: "Σ 1" }).waitFor();
    await page.locator('.node[data-machine="MC_Assembly_Cell"]').waitFor();
  });

  await stage("a recipe that does not sum to 1 shows the message and Start is refused", async () => {
    const before = (await api("/api/v1/runs")).runs.length;
    await page.fill('input[name="anode-AM"]', String(Number(original) + 0.2));
    const msg = page.locator('fieldset[data-side="anode"] .recipe-error');
    await msg.waitFor();
    check((await msg.innerText()).includes("must sum to 1"), "the message says the fractions must sum to 1");
    await page.click("button.primary");
    const refused = page.locator(".notice-error");
    await refused.waitFor();
    check((await refused.innerText()).includes("Start refused"), "the notice says Start was refused");
    await shot("recipe-sum-error.png");
    const after = (await api("/api/v1/runs")).runs.length;
    check(after === before, `no run was created (${before} before, ${after} after)`);
    await page.fill('input[name="anode-AM"]', original);
    await msg.waitFor({ state: "detached" });
  });

  await stage("a parameter outside its range shows the server's message next to the field", async () => {
    const expected = await api("/api/v1/config/validate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ anode: { coating: { coating_speed_m_s: 9 } } }),
    });
    check(expected.valid === false && expected.errors.length > 0, "the server rejects coating_speed_m_s = 9");
    await page.click('.node[data-machine="MC_Coat_Anode"]');
    const input = page.locator("#f-anode-coating-coating_speed_m_s");
    const label = page.locator('label[for="f-anode-coating-coating_speed_m_s"]');
    check((await label.innerText()).includes("m/s"), "the field shows its unit m/s");
    const original = await input.inputValue();
    await input.fill("9");
    await input.press("Enter");
    const err = page.locator('.field[data-path="anode.coating.coating_speed_m_s"] .error-text');
    await err.waitFor();
    const text = await err.innerText();
    check(text === expected.errors[0].message, `the field shows the server's message "${expected.errors[0].message}", got "${text}"`);
    await shot("parameter-error.png", page.locator(".machine"));
    await input.fill(original);
    await input.press("Enter");
    await err.waitFor({ state: "detached" });
  });

  let runId = "";
  await stage(`a paced run (×${SPEED}) changes machine states, grows the log, charts points and completes`, async () => {
    await page.selectOption('select[name="speed"]', "custom");
    await page.fill('input[name="custom-speed"]', SPEED);
    // aging is the longest stage (10 days of plant time), so its chart fills live while we watch
    await page.click('.node[data-machine="MC_Aging_Cell"]');
    await page.click("button.primary");
    await page.locator('.run-status [data-status="running"], .run-status [data-status="finished"]').first().waitFor();
    runId = (await api("/api/v1/runs")).runs[0].id;
    await page.locator('.node[data-state="running"], .node[data-state="alarm"]').first().waitFor();
    await page.locator("figure.chart").waitFor();
    await within(RUN_TIMEOUT_MS, "the live chart of the aging shelves getting points", async () => {
      while (Number(await page.locator("figure.chart").getAttribute("data-points")) < 2) await page.waitForTimeout(200);
    });
    const lines1 = Number(await page.locator("ol.log").getAttribute("data-total"));
    await shot("plant-running.png");
    await shot("chart.png", page.locator(".machine-chart"));
    await within(RUN_TIMEOUT_MS, "the event log growing", async () => {
      while (Number(await page.locator("ol.log").getAttribute("data-total")) <= lines1) await page.waitForTimeout(200);
    });
    await page.locator('.run-status [data-status="finished"]').waitFor({ timeout: RUN_TIMEOUT_MS });
    const states = await page.$$eval(".node", (ns) => ns.map((n) => `${n.getAttribute("data-machine")}=${n.getAttribute("data-state")}`));
    const notDone = states.filter((s) => !s.endsWith("=done"));
    check(states.length === 18 && notDone.length === 0, `all 18 machines are done (not done: ${notDone.join(", ")})`);
    const run = await api(`/api/v1/runs/${runId}`);
    check(run.status === "finished", `the server says the run finished (${run.status})`);
    await page.locator(".stage-results tbody tr").first().waitFor();
    await page.click('.node[data-machine="MC_Cal_Anode"]');
    await within(STEP_MS, "the stored series of the calender", async () => {
      while (Number(await page.locator("figure.chart").getAttribute("data-points")) < 2) await page.waitForTimeout(200);
    });
    await shot("plant-finished.png", page);
    await shot("chart-stored.png", page.locator(".machine-chart"));
    await shot("results.png", page.locator(".results-card"));
  });

  await stage("the Anode download is a zip holding the run's Anode files", async () => {
    const [download] = await Promise.all([page.waitForEvent("download"), page.click('a[data-scope="anode"]')]);
    const file = join(OUT_DIR, "anode.zip");
    await download.saveAs(file);
    const names = zipEntries(file);
    const base = names.map((n) => n.split("/").at(-1));
    check(names.length > 0, "the zip is not empty");
    check(base.every((n) => n.includes("_Anode_")), `every entry is an Anode file (first other: ${base.find((n) => !n.includes("_Anode_"))})`);
    check(base.some((n) => n.startsWith("TK_Mix_Anode_")) && base.some((n) => n.startsWith("MC_Rewind_Anode_")), "mixing and rewinding files are there");
    console.log(`# anode.zip: ${names.length} entries`);
  });

  await stage("after a reload the run is in the history", async () => {
    await page.reload();
    await page.locator(`tr[data-run="${runId}"]`).waitFor();
  });

  await stage("a machine is reachable by keyboard and opens its panel", async () => {
    await page.locator("body").focus();
    let found = false;
    for (let i = 0; i < 60 && !found; i++) {
      await page.keyboard.press("Tab");
      found = await page.evaluate(() => document.activeElement?.getAttribute("data-machine") === "TK_Mix_Cathode");
    }
    check(found, "Tab reaches the cathode mixer");
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    check(outline !== "none", "the focused machine has a visible outline");
    await page.keyboard.press("Enter");
    await page.locator("#machine-h", { hasText: "TK_Mix_Cathode" }).waitFor();
  });

  await stage("the narrow layout has no horizontal scrolling", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await shot("narrow.png");
    const culprits = await page.evaluate(() =>
      [...document.querySelectorAll("body *")]
        .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !(e.parentElement && e.parentElement.getBoundingClientRect().right > window.innerWidth + 1))
        .slice(0, 8)
        .map((e) => `${e.tagName.toLowerCase()}.${String(e.className).split(" ")[0]} (right ${Math.round(e.getBoundingClientRect().right)})`),
    );
    check(overflow <= 1, `page is ${overflow}px wider than the window: ${culprits.join(", ")}`);
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  await stage("Cancel stops a run paced at ×600", async () => {
    await page.selectOption('select[name="speed"]', "600");
    await page.click("button.primary");
    await page.locator('.run-status [data-status="running"]').waitFor();
    const id = (await api("/api/v1/runs")).runs[0].id;
    check(id !== runId, "a new run was started");
    await page.locator('.node[data-state="running"]').first().waitFor();
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.locator('.run-status [data-status="cancelled"]').waitFor();
    const run = await api(`/api/v1/runs/${id}`);
    check(run.status === "cancelled", `the server says the run was cancelled (${run.status})`);
  });

  await stage("Reset (confirmed) clears the results and the history", async () => {
    await page.getByRole("button", { name: "Reset" }).click();
    await page.getByRole("button", { name: "Confirm reset?" }).click();
    await page.locator(".history-card", { hasText: "No runs yet." }).waitFor();
    const runs = (await api("/api/v1/runs")).runs;
    check(runs.length === 0, `the server lists no runs after the reset (${runs.length})`);
  });

  await stage("a server with a token asks for it, accepts it and runs a batch", async () => {
    const token = `e2e-${process.pid}-${Date.now()}`;
    const secured = await startServer(cleanups, ["--token", token]);
    const auth = { headers: { Authorization: `Bearer ${token}` } };
    const locked = await fetch(secured + "/api/v1/runs");
    check(locked.status === 401, `the API refuses a request without the token (${locked.status})`);
    const p2 = await context.newPage();
    p2.setDefaultTimeout(STEP_MS);
    await p2.goto(secured);
    const field = p2.locator('input[name="access-token"]');
    await field.waitFor();
    await shot("access-token.png", p2);
    await field.fill(token);
    await p2.getByRole("button", { name: "Continue" }).click();
    await p2.locator('input[name="anode-AM"]').waitFor();
    await p2.selectOption('select[name="speed"]', "max");
    await p2.click("button.primary");
    await p2.locator('.run-status [data-status="finished"]').waitFor({ timeout: RUN_TIMEOUT_MS });
    const runs = (await fetch(secured + "/api/v1/runs", auth).then((r) => r.json())).runs;
    check(runs.length === 1 && runs[0].status === "finished", `the server ran the batch (${JSON.stringify(runs.map((r) => r.status))})`);
    const [download] = await Promise.all([p2.waitForEvent("download"), p2.click('a[data-scope="anode"]')]);
    const file = join(OUT_DIR, "anode-token.zip");
    await download.saveAs(file);
    check(zipEntries(file).length > 0, "the download link carries the token");
    await p2.close();
    // a link with ?token= opens the UI at once and the token leaves the address bar
    const p3 = await (await launch(cleanups)).newPage();
    p3.setDefaultTimeout(STEP_MS);
    await p3.goto(`${secured}/?token=${encodeURIComponent(token)}`);
    await p3.locator(`tr[data-run="${runs[0].id}"]`).waitFor();
    check(!p3.url().includes("token"), `the token left the address bar (${p3.url()})`);
    check((await p3.locator('input[name="access-token"]').count()) === 0, "no token form");
  });

  await stage("no console errors", async () => {
    check(consoleErrors.length === 0, `console errors:\n${consoleErrors.join("\n")}`);
  });
}

const started = Date.now();
try {
  await within(RUN_TIMEOUT_MS + 180_000, "the whole e2e scenario", main);
} catch (e) {
  if (failures === 0) console.log(`not ok - setup: ${e?.message ?? e}`);
  failures = Math.max(failures, 1);
} finally {
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch {
      /* best effort */
    }
  }
}
console.log(`# ${failures ? "FAILED" : "passed"} in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${OUT_DIR}`);
process.exit(failures ? 1 : 0);
