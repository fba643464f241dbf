// Drives the device's Update page (/update) in the system Chromium through
// playwright-core, one scenario per run. Called by
// crates/otter/tests/browser.rs, which creates and runs the virtual device,
// builds the images and checks the device afterwards:
//
//   node update_page.js CONFIG.json
//
// CONFIG: { scenario, url, chromium, userDataDir, shots, firmware?, ui?,
//           uiIndex?, oldIndex?, broken?, token?, newVersion?, oldVersion?,
//           uploadBytesPerSecond, noSubtle?, shaPrefix?, rollbackStale? }
//
// Every wait is bounded. Failures throw with what the page showed; the last
// line printed is `RESULT {json}` with what was observed (progress samples,
// messages, screenshots, the X-Otter-Sha256 headers the page sent).
"use strict";
const fs = require("fs");
const path = require("path");

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const WAIT = 30000;
const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const result = { scenario: cfg.scenario, shots: [], samples: {}, messages: {}, sha256Headers: [], dialogs: [] };

// A hard stop so a hung browser cannot hang the test.
const guard = setTimeout(() => { console.error("scenario timed out after 80 s"); process.exit(3); }, 80000);

// Whether a confirm() dialog is accepted (only the rollback scenario's).
let acceptDialogs = false;

function check(cond, what) { if (!cond) throw new Error(what); }

async function shot(page, name) {
  fs.mkdirSync(cfg.shots, { recursive: true });
  const file = path.join(cfg.shots, `${cfg.scenario}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  result.shots.push(file);
  console.log(`screenshot: ${file}`);
}

const text = (page, id) => page.locator("#" + id).innerText();
const visible = (page, id) => page.locator("#" + id).isVisible();

// Chooses `file` in the picker `kind` ("fw" or "www"), clicks upload,
// records the progress bar while the upload runs and returns the final
// message once it is a success or an error.
async function upload(page, kind, file) {
  await page.setInputFiles(`#${kind}-file`, file);
  await page.evaluate(kind => {
    window.__samples = [];
    const bar = document.getElementById(kind + "-progress");
    const t0 = performance.now();
    window.__sampler = setInterval(() => {
      const s = window.__samples, v = bar.value, m = bar.max;
      if (!s.length || s[s.length - 1].value !== v) s.push({ t: Math.round(performance.now() - t0), value: v, max: m });
    }, 20);
  }, kind);
  await page.click(`#${kind}-send`);
  const msg = page.locator(`#${kind}-msg`);
  await page.waitForFunction(id => /\b(ok|err)\b/.test(document.getElementById(id).className), `${kind}-msg`, { timeout: 45000 });
  const samples = await page.evaluate(() => { clearInterval(window.__sampler); return window.__samples; });
  result.samples[kind] = samples;
  result.messages[kind] = { cls: await msg.getAttribute("class"), text: await msg.innerText() };
  return result.messages[kind];
}

// The bar must have moved through several values between 0 and full.
function progressMoved(samples) {
  const mid = samples.filter(s => s.value > 0 && s.value < s.max);
  check(mid.length >= 3, `the progress bar did not move gradually: ${JSON.stringify(samples)}`);
  for (let i = 1; i < mid.length; i++) check(mid[i].value > mid[i - 1].value, `progress went backwards: ${JSON.stringify(samples)}`);
}

async function expectOk(m, what) { check(/\bok\b/.test(m.cls), `${what}: expected success, the page says: ${m.text}`); }

async function waitText(page, id, re, what) {
  try {
    await page.waitForFunction(([id, re]) => new RegExp(re).test(document.getElementById(id).innerText), [id, re.source], { timeout: WAIT });
  } catch (e) {
    throw new Error(`${what}: #${id} never matched ${re} (it says ${JSON.stringify(await text(page, id))})`);
  }
}

const scenarios = {
  // (a) firmware through the picker, then the confirm button.
  async firmware_confirm(page) {
    check(!(await visible(page, "auth")), "asked for a token although the device has none");
    const m = await upload(page, "fw", cfg.firmware);
    progressMoved(result.samples.fw);
    await expectOk(m, "firmware upload");
    check(m.text.includes(cfg.newVersion), `the success message does not name ${cfg.newVersion}: ${m.text}`);
    await waitText(page, "running-version", new RegExp(`^${cfg.newVersion}$`), "new version shown");
    await waitText(page, "running-state", /^pending_verify$/, "pending state shown");
    check(await visible(page, "confirm"), "no confirm button while the image is pending");
    await shot(page, "uploaded");
    await page.click("#confirm");
    await waitText(page, "running-state", /^valid$/, "confirmed state shown");
    await page.locator("#confirm").waitFor({ state: "hidden", timeout: WAIT });
    result.messages.act = await text(page, "act-msg");
    await shot(page, "confirmed");
  },

  // (e) the device runs an image whose app descriptor has an empty version
  // (Tasmota's): the page says what runs, never "No image runs.".
  async empty_version(page) {
    await waitText(page, "status", /sha256 [0-9a-f]{12}/, "the running image's SHA-256 prefix shown");
    const status = await text(page, "status");
    result.messages.status = status;
    check(!/No image runs/.test(status), `"No image runs." for a running image: ${status}`);
    check(status.includes("(no version)"), `the empty version is not shown as such: ${status}`);
    check(status.includes(cfg.shaPrefix), `no SHA-256 prefix in: ${status}`);
    const version = await text(page, "running-version");
    check(version === "(no version)", `version cell: ${version}`);
    result.messages.version = version;
    await shot(page, "shown");
  },

  // (f) the status line after a rollback: red while it is the device's
  // present state (cfg.rollbackStale false), not red once a later update
  // confirmed (true).
  async rollback_status(page) {
    await waitText(page, "status", /rollback/, "the rollback mentioned");
    const status = await text(page, "status");
    const cls = await page.locator("#status").getAttribute("class");
    result.messages.status = status;
    result.messages.statusClass = cls;
    if (cfg.rollbackStale) {
      check(!/\berr\b/.test(cls), `a superseded rollback is shown as an error (${cls}): ${status}`);
      check(/superseded/.test(status), `not said to be superseded: ${status}`);
    } else {
      check(/\berr\b/.test(cls), `a current rollback is not shown as an error (${cls}): ${status}`);
      check(/last rollback from/.test(status), `no last rollback in: ${status}`);
    }
    await shot(page, cfg.rollbackStale ? "stale" : "current");
  },

  // (a') firmware through the picker, then the rollback button.
  async firmware_rollback(page) {
    const m = await upload(page, "fw", cfg.firmware);
    progressMoved(result.samples.fw);
    await expectOk(m, "firmware upload");
    await waitText(page, "running-version", new RegExp(`^${cfg.newVersion}$`), "new version shown");
    check(await visible(page, "rollback"), "no rollback button although the previous image is valid");
    await shot(page, "uploaded");
    acceptDialogs = true;
    await page.click("#rollback");
    await waitText(page, "running-version", new RegExp(`^${cfg.oldVersion}$`), "old version shown after rollback");
    await waitText(page, "status", /last rollback/, "the rollback reported");
    result.messages.act = await text(page, "act-msg");
    await shot(page, "rolled-back");
  },

  // (b) a new web UI through the picker; the device serves it after reboot.
  async www_update(page) {
    await waitText(page, "www-active", /^www_0/, "active web-UI slot shown");
    const m = await upload(page, "www", cfg.ui);
    progressMoved(result.samples.www);
    await expectOk(m, "web-UI upload");
    await waitText(page, "www-active", /^www_1/, "new web-UI slot shown");
    await shot(page, "uploaded");
    const served = await page.evaluate(async () => (await fetch("/", { cache: "no-store" })).text());
    check(served === cfg.uiIndex, `GET / serves ${JSON.stringify(served)}, not the uploaded index.html`);
    await page.goto(cfg.url + "/");
    await shot(page, "new-ui");
  },

  // (c) a broken web UI: the server's message is shown, the old UI stays.
  async www_broken(page) {
    await waitText(page, "running-version", /./, "status shown");
    check(!(await visible(page, "confirm")) && !(await visible(page, "rollback")),
      "confirm or rollback offered on a factory-only device");
    const m = await upload(page, "www", cfg.broken);
    check(/\berr\b/.test(m.cls), `a broken web UI was not reported as an error: ${m.text}`);
    check(/bad_web_ui|wrong_size/.test(m.text), `the error does not carry the server's code: ${m.text}`);
    await waitText(page, "www-active", /^www_0/, "the old web-UI slot still active");
    await shot(page, "refused");
    const served = await page.evaluate(async () => (await fetch("/", { cache: "no-store" })).text());
    check(served === cfg.oldIndex, `GET / changed after a refused upload: ${JSON.stringify(served)}`);
  },

  // (d) a token is configured: the page asks, a wrong one is refused, the
  // right one is kept and the upload works.
  async token(page) {
    await page.locator("#auth").waitFor({ state: "visible", timeout: WAIT });
    await shot(page, "asked");
    await page.fill("#token", "not-the-token");
    await page.click("#token-save");
    await waitText(page, "auth-msg", /refused/, "a wrong token refused");
    check(await visible(page, "auth"), "the token field went away after a wrong token");
    await page.fill("#token", cfg.token);
    await page.click("#token-save");
    await page.locator("#auth").waitFor({ state: "hidden", timeout: WAIT });
    await waitText(page, "running-version", new RegExp(`^${cfg.oldVersion}$`), "status shown with the token");
    const m = await upload(page, "fw", cfg.firmware);
    progressMoved(result.samples.fw);
    await expectOk(m, "firmware upload with the token");
    await waitText(page, "running-version", new RegExp(`^${cfg.newVersion}$`), "new version shown");
    check(!(await visible(page, "auth")), "asked for the token again");
    result.sessionToken = await page.evaluate(() => sessionStorage.getItem("otter-token"));
    await shot(page, "uploaded");
  },

  // (d') no token configured: never asks, not even across a reboot. Run
  // without crypto.subtle (as on plain http to an IP) when noSubtle is set.
  async no_token(page) {
    result.subtle = await page.evaluate(() => !!(window.crypto && crypto.subtle));
    const m = await upload(page, "fw", cfg.firmware);
    progressMoved(result.samples.fw);
    await expectOk(m, "firmware upload");
    await waitText(page, "running-version", new RegExp(`^${cfg.newVersion}$`), "new version shown");
    await page.waitForTimeout(300);
    check(!(await visible(page, "auth")), "asked for a token although the device has none");
    check(await visible(page, "rollback"), "no rollback button although the factory image is valid");
    check(!(await visible(page, "confirm")), "a confirm button without app rollback");
    await shot(page, "uploaded");
  },
};

(async () => {
  const { chromium } = require("playwright-core");
  const ctx = await chromium.launchPersistentContext(cfg.userDataDir, {
    executablePath: cfg.chromium, headless: true, args: FLAGS, timeout: WAIT,
    viewport: { width: 900, height: 1000 },
  });
  let page;
  try {
    page = ctx.pages()[0] || (await ctx.newPage());
    page.setDefaultTimeout(WAIT);
    page.on("dialog", d => { result.dialogs.push(d.message()); (acceptDialogs ? d.accept() : d.dismiss()).catch(() => {}); });
    page.on("request", r => { const h = r.headers()["x-otter-sha256"]; if (h) result.sha256Headers.push(h); });
    page.on("pageerror", e => { result.pageErrors = (result.pageErrors || []).concat(String(e)); });
    if (cfg.noSubtle) await page.addInitScript(() => { delete Crypto.prototype.subtle; });
    // Throttle the upload direction in Chromium's network stack, so the
    // progress bar is seen moving on a loopback device.
    const cdp = await ctx.newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.emulateNetworkConditions", {
      offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: cfg.uploadBytesPerSecond,
    });
    await page.goto(cfg.url + "/update");
    await scenarios[cfg.scenario](page);
    check(!result.pageErrors, `JavaScript errors on the page: ${result.pageErrors}`);
  } catch (e) {
    if (page) await shot(page, "failure").catch(() => {});
    console.log("RESULT " + JSON.stringify(result));
    console.error(`scenario ${cfg.scenario} failed: ${e && e.stack || e}`);
    await ctx.close().catch(() => {});
    clearTimeout(guard);
    process.exit(1);
  }
  await ctx.close();
  console.log("RESULT " + JSON.stringify(result));
  clearTimeout(guard);
})().catch(e => { console.error(String(e && e.stack || e)); process.exit(2); });
