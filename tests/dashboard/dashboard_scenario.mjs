// Drives the dashboards of a live 3-node cluster in Debian's headless Chromium (playwright-core,
// no browser download): node1's form sends a message, node2's live feed shows it, node3 is killed
// (SIGKILL) and node1's cluster table turns it dead, then a quorum send through node1's form
// shows the 503 outcome. Saves screenshots. Run by tests/dashboard/dashboard_test.cc, which
// starts and cleans up the cluster:
//
//   node dashboard_scenario.mjs --node1 URL --node2 URL --node3 URL --node3-pid PID
//        --screenshot FILE.png [--chromium /usr/bin/chromium] [--timeout-ms 30000]
//
// Prints one line "RESULT {json}" and exits 0 when every step passed; on failure prints the
// step that failed, saves FILE-failure.png and exits 1.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

function parseArgs(argv) {
  const out = {};
  for (let i = 2; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || i + 1 >= argv.length) throw new Error("bad argument " + argv[i]);
    out[argv[i].slice(2)] = argv[i + 1];
  }
  for (const required of ["node1", "node2", "node3", "node3-pid", "screenshot"]) {
    if (!out[required]) throw new Error("missing --" + required);
  }
  return out;
}

const args = parseArgs(process.argv);
const timeout = Number(args["timeout-ms"] || 30000);
const executablePath = args.chromium || "/usr/bin/chromium";
const profile = mkdtempSync(join(tmpdir(), "dsm-dashboard-chromium-"));
let step = "launching Chromium";

function log(msg) {
  process.stdout.write(`[scenario] ${msg}\n`);
}

let context = null;
let pages = [];
const pageErrors = [];

async function run() {
  // A persistent context gives Chromium a fresh --user-data-dir of our own.
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    viewport: { width: 1360, height: 1000 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    timeout,
  });
  context.setDefaultTimeout(timeout);

  step = "opening both dashboards";
  const page1 = await context.newPage();
  const page2 = await context.newPage();
  pages = [page1, page2];
  for (const [name, page] of [["node1", page1], ["node2", page2]]) {
    page.on("pageerror", (e) => pageErrors.push(`${name}: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error" && !/Failed to load resource|ERR_CONNECTION_REFUSED/.test(m.text())) {
        pageErrors.push(`${name} console: ${m.text()}`);
      }
    });
  }
  await page1.goto(args.node1 + "/?refresh_ms=300");
  await page2.goto(args.node2 + "/dashboard?refresh_ms=300");

  step = "waiting for node1's page to show the cluster (node3 alive)";
  await page1.locator("#node-id").filter({ hasText: "node1" }).waitFor();
  const node3Row = page1.locator(`#cluster tr[data-peer="${args.node3}"]`);
  await node3Row.and(page1.locator('[data-alive="true"]')).waitFor();
  log("node1 sees node3 alive");

  step = "waiting for node2's feed to be live";
  await page2.locator("#node-id").filter({ hasText: "node2" }).waitFor();
  await page2.locator("#feed-state").filter({ hasText: "live" }).waitFor();
  log("node2's feed is live");

  step = "sending a message through node1's form";
  const payload = `hello from node1's form ${Date.now()}-${Math.random().toString(16).slice(2)}`;
  await page1.fill('#send-form [name="sender"]', "browser");
  await page1.fill('#send-form [name="recipient"]', "dashboard-test");
  await page1.fill('#send-form [name="payload"]', payload);
  await page1.selectOption('#send-form [name="ack"]', "");
  await page1.click("#send-button");
  const okOutcome = page1.locator('#outcomes li[data-status="200"].ok').first();
  await okOutcome.waitFor();
  const okText = await okOutcome.innerText();
  const seqMatch = /seq (\d+), msg_id ([0-9a-f-]+)/.exec(okText);
  if (!seqMatch) throw new Error("unexpected ok outcome text: " + okText);
  log(`node1 answered: ${okText.replace(/\s+/g, " ")}`);

  step = "waiting for the message in node2's live feed";
  const fed = page2.locator("#feed li").filter({ hasText: payload });
  await fed.waitFor();
  const fedMsgId = await fed.first().getAttribute("data-msg-id");
  if (fedMsgId !== seqMatch[2]) throw new Error(`node2's feed shows msg_id ${fedMsgId}, node1 stored ${seqMatch[2]}`);
  log("node2's feed shows the message");

  step = "killing node3 (SIGKILL) and waiting for node1's page to show it dead";
  process.kill(Number(args["node3-pid"]), "SIGKILL");
  await node3Row.and(page1.locator('[data-alive="false"]')).waitFor();
  await node3Row.locator(".badge.dead").waitFor();
  const peersAlive = await page1.locator("#peers-alive").innerText();
  log(`node1 shows node3 dead; peers alive ${peersAlive}`);

  step = "sending a quorum message through node1's form with node3 dead";
  await page1.fill('#send-form [name="payload"]', "needs three nodes");
  await page1.selectOption('#send-form [name="ack"]', "quorum");
  await page1.click("#send-button");
  const refused = page1.locator('#outcomes li[data-status="503"].err').first();
  await refused.waitFor();
  const refusedText = await refused.innerText();
  if (!refusedText.includes("replication quorum not achieved")) {
    throw new Error("unexpected 503 outcome text: " + refusedText);
  }
  log(`node1 answered: ${refusedText.replace(/\s+/g, " ")}`);

  step = "saving screenshots";
  mkdirSync(dirname(args.screenshot), { recursive: true });
  await page1.screenshot({ path: args.screenshot, fullPage: true });
  await page2.screenshot({ path: args.screenshot.replace(/\.png$/, "-node2.png"), fullPage: true });

  if (pageErrors.length > 0) throw new Error("errors in the pages: " + pageErrors.join("; "));
  return { msg_id: seqMatch[2], seq: Number(seqMatch[1]), payload, peers_alive: peersAlive };
}

let status = 0;
try {
  const result = await run();
  process.stdout.write("RESULT " + JSON.stringify(result) + "\n");
} catch (e) {
  status = 1;
  process.stdout.write(`FAILED while ${step}: ${e && e.stack ? e.stack : e}\n`);
  for (const p of pages) {
    try {
      await p.screenshot({ path: args.screenshot.replace(/\.png$/, `-failure-${pages.indexOf(p) + 1}.png`), fullPage: true });
    } catch (_) {
      // The page is gone too.
    }
  }
  if (pageErrors.length > 0) process.stdout.write("page errors: " + pageErrors.join("; ") + "\n");
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exit(status);
