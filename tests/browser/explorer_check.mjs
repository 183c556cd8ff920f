// Browser check of the built book, driven by tests/test_browser.py.
//
// usage: node explorer_check.mjs BASE_URL PAGES_JSON EXPLORER_PAGE SCREENSHOT FORBIDDEN_JSON
//   BASE_URL       the book's root served on 127.0.0.1 (e.g. http://127.0.0.1:8123/)
//   PAGES_JSON     JSON list of page paths relative to BASE_URL; every one is loaded
//   EXPLORER_PAGE  the explorer chapter's path; its HCP list is changed and the views compared ("-": none)
//   SCREENSHOT     where the explorer's screenshot goes (PNG)
//   FORBIDDEN_JSON JSON list of strings no page may contain (the building machine's paths)
// Prints one JSON object: non-local requests (blocked and recorded), failed local requests,
// page errors, per page the code cells whose source is visible and the forbidden strings found
// in its HTML, the text of the introduction's key results, and the explorer's recommendations
// before and after changing the HCP.
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";

const [baseUrl, pagesFile, explorerPage, screenshot, forbiddenFile] = process.argv.slice(2);
const local = new URL(baseUrl);
const pages = JSON.parse(readFileSync(pagesFile, "utf8"));
const forbidden = JSON.parse(readFileSync(forbiddenFile, "utf8"));
const result = {
  pages_checked: [], non_local: [], failed: [], page_errors: {}, visible_code: {}, machine_paths: {}, explorer: {},
};

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"],
});
let current = "";
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 2400 } });
  const isLocal = (url) => url.startsWith("data:") || url.startsWith("blob:") || url.startsWith("about:")
    || new URL(url).host === local.host;
  // Every request passes here: anything not served by the local server is recorded and aborted.
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (isLocal(url)) return route.continue();
    result.non_local.push({ page: current, url });
    return route.abort("blockedbyclient");
  });
  // Requests the router does not see (e.g. WebSockets) are recorded too.
  context.on("request", (request) => {
    if (!isLocal(request.url()) && !result.non_local.some((r) => r.url === request.url())) {
      result.non_local.push({ page: current, url: request.url() });
    }
  });
  context.on("response", (response) => {
    if (response.status() >= 400 && !response.url().endsWith("/favicon.ico")) {
      result.failed.push({ page: current, url: response.url(), status: response.status() });
    }
  });
  const page = await context.newPage();
  page.on("pageerror", (error) => {
    (result.page_errors[current] ||= []).push(String(error));
  });
  for (const path of pages) {
    current = path;
    await page.goto(new URL(path, baseUrl).href, { waitUntil: "load" });
    await page.waitForLoadState("networkidle", { timeout: 15000 }).catch(() => {});
    // a code cell's source the reader sees without asking (myst-nb puts it in .cell_input)
    const visibleCode = await page.locator(".cell_input:visible").count();
    if (visibleCode) result.visible_code[path] = visibleCode;
    const html = await page.content();
    const found = forbidden.filter((text) => html.includes(text));
    if (found.length) result.machine_paths[path] = found;
    // the introduction's key results, as the reader sees them
    if (path.endsWith("intro.html")) {
      result.key_results = await page.locator("#key-results").innerText({ timeout: 5000 }).catch(() => null);
    }
    result.pages_checked.push(path);
  }

  if (explorerPage !== "-") {  // "-": check the pages only
    current = explorerPage;
    await page.goto(new URL(explorerPage, baseUrl).href, { waitUntil: "load" });
    const visibleList = page.locator(".hcp-recommendations:visible").first();
    await visibleList.waitFor({ timeout: 60000 });
    const read = async () => ({
      hcp_id: await visibleList.getAttribute("data-hcp"),
      text: await visibleList.innerText(),
    });
    result.explorer.before = await read();
    const select = page.locator(".widget-dropdown:has(label:text-is('HCP')) select").first();
    result.explorer.options = await select.locator("option").count();
    await select.selectOption({ index: 1 });
    await page.waitForFunction(
      (before) => {
        const shown = [...document.querySelectorAll(".hcp-recommendations")].find((t) => t.offsetParent !== null);
        return shown && shown.getAttribute("data-hcp") !== before;
      },
      result.explorer.before.hcp_id,
      { timeout: 30000 },
    );
    result.explorer.after = await read();
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    await page.locator(".widget-vbox").first().screenshot({ path: screenshot });
    result.explorer.screenshot = screenshot;
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
