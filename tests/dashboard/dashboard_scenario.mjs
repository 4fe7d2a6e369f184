// Drives the dashboards of a live 3-node cluster in Debian's headless Chromium (playwright-core,
// no browser download). Run by tests/dashboard/dashboard_test.cc, which starts and cleans up the
// cluster. Two modes:
//  - open (the default): node1's form sends a message, node2's live feed shows it; a durable
//    consumer created on node1 appears in node1's consumers table with its lag; while a load
//    of quorum sends runs against node1, node1's charts move (the accepted, replicated and quorum
//    ok rates get nonzero points, the accepted path changes between two samples, the lag chart
//    names both peers by node id); node3 is killed (SIGKILL) and node1's cluster table turns it
//    dead, then a quorum send through node1's form shows the 503 outcome and the quorum chart a
//    nonzero "503 refused" point;
//  - token (every node started with --client-token TOKEN): node1's page shows the token form, a
//    wrong token is refused, the right one brings the cluster table up; node2's page is opened
//    with the token in its #token= fragment; a message sent through node1's form arrives in
//    node2's live feed (an event stream authenticated by the dsm_token cookie).
// Saves screenshots.
//
//   node dashboard_scenario.mjs --node1 URL --node2 URL --node3 URL --node3-pid PID
//        --screenshot FILE.png [--chromium /usr/bin/chromium] [--timeout-ms 30000]
//   node dashboard_scenario.mjs --mode token --token TOKEN --node1 URL --node2 URL --node3 URL
//        --screenshot FILE.png [--chromium /usr/bin/chromium] [--timeout-ms 30000]
//
// Prints one line "RESULT {json}" and exits 0 when every step passed; on failure prints the
// step that failed, saves FILE-failure-N.png and exits 1.
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
  out.mode = out.mode || "open";
  if (out.mode !== "open" && out.mode !== "token") throw new Error("bad --mode " + out.mode);
  const required = ["node1", "node2", "node3", "screenshot"];
  required.push(out.mode === "open" ? "node3-pid" : "token");
  for (const r of required) {
    if (!out[r]) throw new Error("missing --" + r);
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

async function launch() {
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
  return [page1, page2];
}

// Sends a message through `page`'s form and waits for its ok outcome. Returns the payload, the
// seq and the msg_id the node answered.
async function sendThroughForm(page, sender) {
  const payload = `hello from node1's form ${Date.now()}-${Math.random().toString(16).slice(2)}`;
  await page.fill('#send-form [name="sender"]', sender);
  await page.fill('#send-form [name="recipient"]', "dashboard-test");
  await page.fill('#send-form [name="payload"]', payload);
  await page.selectOption('#send-form [name="ack"]', "");
  await page.click("#send-button");
  const okOutcome = page.locator('#outcomes li[data-status="200"].ok').first();
  await okOutcome.waitFor();
  const okText = await okOutcome.innerText();
  const seqMatch = /seq (\d+), msg_id ([0-9a-f-]+)/.exec(okText);
  if (!seqMatch) throw new Error("unexpected ok outcome text: " + okText);
  log(`node1 answered: ${okText.replace(/\s+/g, " ")}`);
  return { payload, seq: Number(seqMatch[1]), msg_id: seqMatch[2] };
}

// Waits for the message in `page`'s live feed and checks its msg_id.
async function waitInFeed(page, sent) {
  const fed = page.locator("#feed li").filter({ hasText: sent.payload });
  await fed.waitFor();
  const fedMsgId = await fed.first().getAttribute("data-msg-id");
  if (fedMsgId !== sent.msg_id) throw new Error(`node2's feed shows msg_id ${fedMsgId}, node1 stored ${sent.msg_id}`);
  log("node2's feed shows the message");
}

// Sends batches of quorum messages to `url`, one request every 50 ms or so (a steady rate, not a
// flood that slows the page's own refreshes), until stop() or `maxRequests`. Returns
// { state, stop }: stop() waits for the request in flight.
function startLoad(url, maxRequests = 3000) {
  let stopped = false;
  const state = { sent: 0, failed: 0 };
  const done = (async () => {
    for (let i = 0; i < maxRequests && !stopped; i++) {
      const messages = Array.from({ length: 5 }, (_, j) => ({
        sender: "chart-load", recipient: "chart-load", payload: `load ${i}.${j}`,
      }));
      try {
        const r = await fetch(url + "/send", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ messages, ack: "quorum" }),
        });
        await r.arrayBuffer();
        if (r.ok) state.sent += messages.length;
        else state.failed++;
      } catch (e) {
        state.failed++;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  return {
    state,
    stop: async () => {
      stopped = true;
      await done;
    },
  };
}

// Waits until the chart path `selector` has data-max above 0, and returns its data-max.
async function waitForNonzero(page, selector) {
  const handle = await page.waitForFunction((sel) => {
    const p = document.querySelector(sel);
    return p && Number(p.getAttribute("data-max")) > 0 ? Number(p.getAttribute("data-max")) : 0;
  }, selector);
  return handle.jsonValue();
}

// While a load runs against node1: its charts get nonzero points and move, and name the peers.
async function checkChartsMove(page1) {
  const load = startLoad(args.node1);
  const started = Date.now();
  try {
    const accepted = '#chart-rates path[data-series="accepted"]';
    const acceptedMax = await waitForNonzero(page1, accepted);
    const replicatedMax = await waitForNonzero(page1, '#chart-rates path[data-series="replicated"]');
    const quorumOkMax = await waitForNonzero(page1, '#chart-quorum path[data-series="quorum_ok"]');
    const before = await page1.locator(accepted).getAttribute("d");
    await page1.waitForFunction(([sel, d]) => {
      const p = document.querySelector(sel);
      return p && p.getAttribute("d") !== d;
    }, [accepted, before]);
    for (const [url, id] of [[args.node2, "node2"], [args.node3, "node3"]]) {
      await page1.locator(`#chart-lag path[data-series="lag:${url}"]`).waitFor({ state: "attached" });
      await page1.locator("#legend-lag li").filter({ hasText: id }).waitFor();
      await page1.locator(`#cluster tr[data-peer="${url}"] .peer-id`).filter({ hasText: id }).waitFor();
    }
    log(`node1's charts move under load (${Date.now() - started} ms): accepted ${acceptedMax}/s, ` +
      `replicated ${replicatedMax}/s, quorum ok ${quorumOkMax}/s at their first nonzero point; ` +
      "peers named node2 and node3");
    return { accepted_max: acceptedMax, replicated_max: replicatedMax, quorum_ok_max: quorumOkMax };
  } finally {
    await load.stop();
    log(`load: ${load.state.sent} messages sent, ${load.state.failed} requests failed`);
  }
}

async function saveScreenshots(page1, page2) {
  step = "saving screenshots";
  mkdirSync(dirname(args.screenshot), { recursive: true });
  await page1.screenshot({ path: args.screenshot, fullPage: true });
  await page2.screenshot({ path: args.screenshot.replace(/\.png$/, "-node2.png"), fullPage: true });
}

async function runOpen() {
  const [page1, page2] = await launch();
  step = "opening both dashboards";
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
  const sent = await sendThroughForm(page1, "browser");

  step = "waiting for the message in node2's live feed";
  await waitInFeed(page2, sent);

  step = "creating a durable consumer on node1 and waiting for its row and lag on node1's page";
  const put = await fetch(args.node1 + "/consumers/dash-reader", {
    method: "PUT",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ start: "first" }),
  });
  if (put.status !== 201) {
    throw new Error(`PUT /consumers/dash-reader answered ${put.status}: ${await put.text()}`);
  }
  const consumerRow = page1.locator('#consumers tr[data-consumer="dash-reader"]');
  await page1.waitForFunction(() => {
    const cell = document.querySelector('#consumers tr[data-consumer="dash-reader"] td.pending');
    return cell !== null && Number(cell.textContent) > 0;
  });
  const consumerPending = await consumerRow.locator("td.pending").innerText();
  log(`node1's page lists consumer dash-reader with ${consumerPending} pending`);

  step = "running a load against node1 and waiting for its charts to move";
  const charts = await checkChartsMove(page1);

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

  step = "waiting for the refused quorum write in node1's quorum chart";
  charts.quorum_refused_max =
    await waitForNonzero(page1, '#chart-quorum path[data-series="quorum_refused"]');
  log(`node1's quorum chart shows the 503: ${charts.quorum_refused_max}/s`);

  await saveScreenshots(page1, page2);

  if (pageErrors.length > 0) throw new Error("errors in the pages: " + pageErrors.join("; "));
  return { msg_id: sent.msg_id, seq: sent.seq, payload: sent.payload, peers_alive: peersAlive,
           charts };
}

// What `page` keeps of a token: its sessionStorage entry and whether a dsm_token cookie is set.
async function storedToken(page) {
  return page.evaluate(() => ({
    session: sessionStorage.getItem("dsm_token"),
    cookie: document.cookie.split(";").some((c) => c.trim().startsWith("dsm_token=")),
  }));
}

async function runToken() {
  const [page1, page2] = await launch();
  const token = args.token;

  step = "opening node1's dashboard without a token";
  await page1.goto(args.node1 + "/?refresh_ms=300");
  const panel1 = page1.locator("#token-panel");
  await panel1.filter({ hasText: "This node requires a client token" }).waitFor();
  if (await page1.locator("#content").isVisible()) throw new Error("the data is shown without a token");
  if ((await page1.locator("#node-id").innerText()) !== "…") throw new Error("node1's id is shown without a token");
  log("node1's page asks for the token");

  step = "submitting a wrong token";
  await page1.fill('#token-form [name="token"]', "not-the-" + token);
  await page1.click("#token-button");
  await page1.locator("#token-error").filter({ hasText: "invalid client token" }).waitFor();
  await panel1.waitFor();
  const afterWrong = await storedToken(page1);
  if (afterWrong.session !== null || afterWrong.cookie) {
    throw new Error("the refused token was kept: " + JSON.stringify(afterWrong));
  }
  log("the wrong token is refused");
  mkdirSync(dirname(args.screenshot), { recursive: true });
  await page1.screenshot({ path: args.screenshot.replace(/\.png$/, "-form.png"), fullPage: true });

  step = "submitting the right token and waiting for node1's cluster table";
  await page1.fill('#token-form [name="token"]', token);
  await page1.click("#token-button");
  await page1.locator("#node-id").filter({ hasText: "node1" }).waitFor();
  await panel1.waitFor({ state: "hidden" });
  for (const peer of [args.node2, args.node3]) {
    await page1.locator(`#cluster tr[data-peer="${peer}"]`).and(page1.locator('[data-alive="true"]')).waitFor();
  }
  await page1.locator("#feed-state").filter({ hasText: "live" }).waitFor();
  const kept = await storedToken(page1);
  if (kept.session !== token || !kept.cookie) throw new Error("the token was not kept: " + JSON.stringify(kept));
  log("node1's page shows both peers alive and a live feed");

  step = "opening node2's dashboard with a #token= link";
  await page2.goto(args.node2 + "/dashboard?refresh_ms=300#token=" + encodeURIComponent(token));
  await page2.locator("#node-id").filter({ hasText: "node2" }).waitFor();
  await page2.locator("#feed-state").filter({ hasText: "live" }).waitFor();
  const href2 = await page2.evaluate(() => location.href);
  if (href2.includes("token")) throw new Error("the token stayed in the address bar: " + href2);
  if (await page2.locator("#token-panel").isVisible()) throw new Error("node2's page asks for a token");
  log("node2's page took the token from its link; its feed is live");

  step = "sending a message through node1's form";
  const sent = await sendThroughForm(page1, "browser-token");

  step = "waiting for the message in node2's live feed";
  await waitInFeed(page2, sent);

  await saveScreenshots(page1, page2);

  if (pageErrors.length > 0) throw new Error("errors in the pages: " + pageErrors.join("; "));
  return { msg_id: sent.msg_id, seq: sent.seq, payload: sent.payload };
}

async function run() {
  return args.mode === "token" ? runToken() : runOpen();
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
