"""The built book in a real browser with no network: headless Chromium (Debian's, driven by
playwright-core from npm; tests/browser/explorer_check.mjs) loads every page from a local HTTP
server with every non-local request blocked and recorded, changes the HCP of the explorer and
checks that the displayed recommendations change; on every page no code cell shows its source
unless the reader opens it, and no page holds an absolute path of the machine that built it.
Set-up: tests/browser/setup.sh."""

import functools
import json
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from hcp_lib.config import PROJECT_ROOT

DRIVER = PROJECT_ROOT / "tests" / "browser" / "explorer_check.mjs"
SETUP = PROJECT_ROOT / "tests" / "browser" / "setup.sh"
EXPLORER_PAGE = "outputs/report/08_explorer.html"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the driver reports failures itself
        pass


def book_pages(html_root: Path) -> list[str]:
    """Every HTML page of the book (theme snippets under ``_static`` etc. are not pages),
    the pyLDAvis view of chapter 3 included."""
    return sorted(
        str(p.relative_to(html_root))
        for p in html_root.rglob("*.html")
        if not p.relative_to(html_root).parts[0].startswith("_")
    )


def check_book(
    html_root: Path,
    screenshot: Path,
    scratch: Path,
    forbidden: list[str] = (),
    explorer_page: str = EXPLORER_PAGE,
    search_hcp: str = "-",
) -> dict:
    """Serve ``html_root`` on 127.0.0.1 (a free port) and run the browser driver on it."""
    if not (PROJECT_ROOT / "node_modules" / "playwright-core").is_dir() or not Path("/usr/bin/chromium").exists():
        setup = subprocess.run([str(SETUP)], capture_output=True, text=True, timeout=1200)
        assert setup.returncode == 0, f"{SETUP} failed:\n{setup.stdout[-2000:]}\n{setup.stderr[-2000:]}"
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(html_root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pages_file = scratch / "pages.json"
    pages_file.write_text(json.dumps(book_pages(html_root)))
    forbidden_file = scratch / "forbidden.json"
    forbidden_file.write_text(json.dumps(list(forbidden)))
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(
            [
                "node",
                str(DRIVER),
                f"http://127.0.0.1:{server.server_port}/",
                str(pages_file),
                explorer_page,
                str(screenshot),
                str(forbidden_file),
                search_hcp,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=PROJECT_ROOT,
        )
    finally:
        server.shutdown()
    assert result.returncode == 0, f"browser driver failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return json.loads(result.stdout)


def test_book_pages_are_found(tmp_path):
    for page in ("index.html", "_static/x.html", "outputs/report/figures/ldavis/index.html"):
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / page).write_text("<html></html>")
    assert book_pages(tmp_path) == ["index.html", "outputs/report/figures/ldavis/index.html"]


@pytest.mark.slow
def test_explorer_is_interactive_offline_in_chromium(tiny_book, tiny_run, tmp_path):
    assert (tiny_book / EXPLORER_PAGE).exists(), f"the book has no {EXPLORER_PAGE}: is 08_explorer in _toc.yml?"
    screenshot = tiny_run / "browser" / "explorer.png"
    build_paths = [str(tiny_run.resolve()), str(PROJECT_ROOT), str(tiny_book.resolve().parents[1])]
    # an HCP the week's plan gives an action, far down the explorer's list (the search must find it)
    plan = pd.read_parquet(tiny_run / "plan" / "plan.parquet")
    wanted = sorted(plan["hcp_id"].unique())[-1]
    result = check_book(tiny_book, screenshot, tmp_path, build_paths, search_hcp=wanted)
    assert set(result["pages_checked"]) == set(book_pages(tiny_book))
    assert "outputs/report/figures/ldavis/index.html" in result["pages_checked"]
    assert result["non_local"] == [], f"pages requested non-local resources: {result['non_local']}"
    assert result["failed"] == [], f"local requests failed: {result['failed']}"
    assert result["visible_code"] == {}, f"code cells show their source without being asked: {result['visible_code']}"
    assert result["machine_paths"] == {}, f"pages show the building machine's paths: {result['machine_paths']}"
    _check_key_results(result["key_results"], json.loads((tiny_run / "evaluation" / "metrics.json").read_text()))
    n_hcps = len(pd.read_parquet(tiny_run / "world" / "hcp_master.parquet"))
    before, searched = result["explorer"]["before"], result["explorer"]["searched"]
    assert before["hint"].endswith(f"matching HCPs listed (of {n_hcps} in this explorer)")  # every HCP
    assert before["options"] == n_hcps and before["timeline_dots"] > 0
    assert searched["hcp_id"] == wanted and searched["options"] == 1, "the search did not find the HCP"
    assert searched["plan_hcp"] == wanted, "the view does not show the HCP's planned actions"
    assert searched["text"] != before["text"] and "The week's plan" in searched["story"]
    chosen = result["explorer"]["filter"]
    assert chosen["labels"] and all(f" · {chosen['specialty']} · " in label for label in chosen["labels"])
    assert screenshot.stat().st_size > 10_000


@pytest.mark.slow
def test_the_browser_check_sees_visible_code_and_machine_paths(tmp_path):
    site = tmp_path / "site"
    (site / "chapter").mkdir(parents=True)
    (site / "index.html").write_text("<html><body><p>Key results</p></body></html>")
    (site / "chapter" / "page.html").write_text(
        "<html><body><div class='cell_input'>x = 1</div>"
        "<details><summary>Show code</summary><div class='cell_input'>y = 2</div></details>"
        "<p>wrote /home/builder/run/x.json</p></body></html>"
    )
    result = check_book(site, tmp_path / "shot.png", tmp_path, ["/home/builder/run"], explorer_page="-")
    assert result["pages_checked"] == ["chapter/page.html", "index.html"]
    assert result["visible_code"] == {"chapter/page.html": 1}  # the collapsed cell is not counted
    assert result["machine_paths"] == {"chapter/page.html": ["/home/builder/run"]}


def _check_key_results(text: str | None, report: dict) -> None:
    """The introduction's key results, as the browser shows them, carry metrics.json's numbers."""
    assert text, "the introduction has no Key results section"
    chosen = report["selection"]["chosen"]
    assert f"Use {chosen}." in text
    mine, bau = report["metrics"][chosen], report["policy"]["business_as_usual"]
    for entry, spec in (
        (mine["plan_value"], ".0f"),
        (mine["plan_fraction_of_oracle"], ".3f"),
        (mine["policy_fraction_of_oracle"], ".3f"),
        (bau["plan_value"], ".0f"),
        (bau["policy_fraction_of_oracle"], ".3f"),
    ):
        shown = f"{entry['value']:{spec}} [{entry['ci_low']:{spec}}, {entry['ci_high']:{spec}}]"
        assert shown in text, f"the introduction does not show {shown} from metrics.json:\n{text}"
    ratio = mine["plan_value"]["value"] / bau["plan_value"]["value"]
    assert f"{ratio:.1f} times business as usual" in text
    assert f"{report['selection']['validation_log_loss'][chosen]:.4f}" in text
    assert f"{report['population']['n_hcps']:,} HCPs" in text
