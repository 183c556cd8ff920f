// Browser check of the built book, driven by tests/test_browser.py.
//
// usage: node explorer_check.mjs BASE_URL PAGES_JSON EXPLORER_PAGE SCREENSHOT FORBIDDEN_JSON SEARCH_HCP
//   BASE_URL       the book's root served on 127.0.0.1 (e.g. http://127.0.0.1:8123/)
//   PAGES_JSON     JSON list of page paths relative to BASE_URL; every one is loaded
//   EXPLORER_PAGE  the explorer chapter's path ("-": none); its HCP explorer is searched and filtered
//   SEARCH_HCP     the id of an HCP the explorer's search must find
//   SCREENSHOT     where the explorer's screenshot goes (PNG)
//   FORBIDDEN_JSON JSON list of strings no page may contain (the building machine's paths)
// Prints one JSON object: non-local requests (blocked and recorded), failed local requests,
// page errors, per page the code cells whose source is visible and the forbidden strings found
// in its HTML, the text of the introduction's key results, and the HCP explorer as first shown,
// after searching SEARCH_HCP, and filtered by its first specialty.
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";

const [baseUrl, pagesFile, explorerPage, screenshot, forbiddenFile, searchHcp] = process.argv.slice(2);
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
    const explorer = page.locator(".hcp-browser").first();
    const list = explorer.locator(".hcp-recommendations");
    await list.waitFor({ timeout: 60000 });
    const read = async () => ({
      hcp_id: await list.getAttribute("data-hcp"),
      text: await list.innerText(),
      hint: await explorer.locator(".hint").innerText(),
      options: await explorer.locator(".f-hcp option").count(),
      plan_hcp: await explorer.locator(".plan-actions").getAttribute("data-hcp", { timeout: 1000 }).catch(() => null),
      story: await explorer.locator(".story").innerText(),
      timeline_dots: await explorer.locator("svg.timeline circle").count(),
    });
    result.explorer.before = await read();
    // the search finds the given HCP: type its id, the view switches to it
    await explorer.locator(".q").fill(searchHcp);
    await page.waitForFunction(
      (id) => document.querySelector(".hcp-browser .hcp-recommendations")?.getAttribute("data-hcp") === id,
      searchHcp,
      { timeout: 30000 },
    );
    result.explorer.searched = await read();
    // the specialty filter: every listed HCP has the chosen specialty
    await explorer.locator(".q").fill("");
    const specialty = await explorer.locator(".f-spec option").nth(1).innerText();
    await explorer.locator(".f-spec").selectOption({ index: 1 });
    result.explorer.filter = {
      specialty,
      labels: await explorer.locator(".f-hcp option").allInnerTexts(),
      hint: await explorer.locator(".hint").innerText(),
    };
    await explorer.locator(".f-spec").selectOption({ index: 0 });
    await explorer.locator(".q").fill(searchHcp);
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    await explorer.screenshot({ path: screenshot });
    result.explorer.screenshot = screenshot;
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
