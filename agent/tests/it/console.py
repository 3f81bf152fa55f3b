"""Drives the console (/ui) of a running agent in headless Chromium (Debian's package) through
playwright, checks it against the agent's HTTP API, runs axe-core, and saves screenshots.

    python3 console.py <agent url> <screenshot dir> <token> <fleet member that is down>

Prints one JSON object of what it found; a failed check raises (exit status 1).
"""

import json
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import sync_playwright

URL, SHOTS, TOKEN, DEAD = sys.argv[1:5]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Records layout shifts not caused by input (Chromium's Layout Instability API).
CLS_PROBE = """
window.__cls = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (!e.hadRecentInput) window.__cls += e.value;
}).observe({ type: 'layout-shift', buffered: true });
"""


def api(path, **params):
    query = urllib.parse.urlencode(params)
    req = urllib.request.Request(
        f"{URL}{path}?{query}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def wait_until(page, js, arg=None, timeout=30.0):
    """Polls the function `js` in the page until it returns true. (playwright's own
    waiting evaluates a string, which the console's CSP rightly forbids.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(js, arg):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {js} ({arg})")
        time.sleep(0.1)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def serious(page, where, found):
    """axe-core's serious and critical violations on the page, recorded under `where`."""
    violations = Axe().run(page).response["violations"]
    bad = [
        {"id": v["id"], "impact": v["impact"], "nodes": len(v["nodes"]), "help": v["help"]}
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]
    found["axe"][where] = {"violations": len(violations), "serious": bad}


def data_value(page, selector):
    return int(page.locator(selector).get_attribute("data-value"))


def sign_in(page, found):
    """The console redirects to its sign-in page; a wrong token is refused, the right one
    signs in."""
    page.goto(f"{URL}/ui#/overview")
    page.wait_for_selector("form.signin")
    check(page.url.startswith(f"{URL}/ui/login"), f"not the sign-in page: {page.url}")
    serious(page, "sign_in", found)
    before = len(found["page_errors"])
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    page.wait_for_selector("#wrong[role=alert]")
    found["wrong_token_refused"] = page.locator("#wrong").is_visible()
    # The refusal is a 401, which Chromium logs: expected here, and only here.
    logged = found["page_errors"][before:]
    check(all("401" in e for e in logged), f"signing in logged {logged}")
    del found["page_errors"][before:]
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#view-overview")


def overview(page, found):
    page.goto(f"{URL}/ui#/overview")
    wait_until(page, "() => Number(document.querySelector('#ov-events').dataset.value) > 0")
    page.wait_for_selector("#ov-partitions tbody tr td >> text=llm-calls")
    found["overview_events"] = data_value(page, "#ov-events")
    found["overview_partitions"] = page.locator("#ov-partitions tbody tr").count()
    # Live: the "updated" time moves on by itself.
    first = page.locator("#ov-updated").text_content()
    wait_until(page, "(t) => document.querySelector('#ov-updated').textContent !== t", first, 10)
    page.wait_for_timeout(4500)  # two more refreshes: nothing may move
    found["overview_layout_shift"] = page.evaluate("window.__cls")
    serious(page, "overview", found)
    page.screenshot(path=f"{SHOTS}/overview.png", full_page=True)


def wait_for_explore(page):
    page.wait_for_selector("#series-chart rect.bar")
    page.wait_for_selector("#tops .top-table tbody button.link")
    page.wait_for_selector("#rollup-chart rect.bar")
    page.wait_for_load_state("networkidle")


def totals_on_page(page):
    return {
        "events": data_value(page, "#totals [data-key=events] .num"),
        "metric": data_value(page, "#totals [data-key=metric] .num"),
        "bars": page.eval_on_selector_all(
            "#series-chart rect.bar:not(.err)", "rs => rs.reduce((s, r) => s + Number(r.dataset.v), 0)"
        ),
        "by_dim": page.eval_on_selector_all(
            "#tops .top-table",
            """ts => Object.fromEntries(ts.map(t => [t.dataset.dim,
                 [...t.querySelectorAll('tbody td[data-count]')].map(td => Number(td.dataset.count))]))""",
        ),
    }


def explore(page, found):
    page.goto(f"{URL}/ui#/explore?range=all")
    wait_for_explore(page)
    whole = totals_on_page(page)
    total = api("/v1/aggregate")
    check(whole["events"] == total["event_count"], f"totals {whole} against {total}")
    check(whole["bars"] == total["event_count"], f"the series sums to {whole['bars']}")
    found["series_bars"] = page.locator("#series-chart rect.bar").count()
    found["rollup_bars"] = page.locator("#rollup-chart rect.bar").count()
    serious(page, "explore", found)
    page.screenshot(path=f"{SHOTS}/explore.png", full_page=True)

    # A click on a model in its top table filters everything on the page.
    link = page.locator('#tops .top-table[data-dim="model"] tbody button.link').first
    model = link.get_attribute("data-value")
    link.focus()
    page.keyboard.press("Enter")  # keyboard reachable: the value is a button
    wait_until(page, "() => location.hash.includes('dim.model=')")
    want = api("/v1/aggregate", **{"dim.model": model})
    wait_until(
        page,
        "(n) => Number(document.querySelector('#totals [data-key=events] .num')?.dataset.value) === n",
        want["event_count"],
    )
    wait_for_explore(page)
    filtered = totals_on_page(page)
    check(filtered["metric"] == want["metric"], f"metric {filtered} against {want}")
    check(filtered["bars"] == want["event_count"], f"series {filtered} against {want}")
    check(filtered["by_dim"]["model"] == [want["event_count"]], f"model table {filtered}")
    users = api("/v1/top", **{"dim.model": model, "by": "user", "limit": 10})
    check(
        filtered["by_dim"]["user"] == [g["event_count"] for g in users["groups"]],
        f"user table {filtered['by_dim']['user']} against {users}",
    )
    chips = page.locator("#chips li").all_text_contents()
    check(any(model in c for c in chips), f"filter chips {chips}")
    found["clicked_model"] = model
    found["filtered_events"] = filtered["events"]
    return model, want["event_count"]


def events(page, model, expected, found):
    page.goto(f"{URL}/ui#/events?range=all&dim.model={urllib.parse.quote(model)}")
    page.select_option("#page-size", "100")
    page.wait_for_selector("#events tbody tr[data-id]")
    wait_until(page, "() => document.querySelector('#page-info').textContent.startsWith('page 1')")
    serious(page, "events", found)
    page.screenshot(path=f"{SHOTS}/events.png", full_page=True)
    ids, pages = [], 0
    while True:
        pages += 1
        wait_until(
            page, "(n) => document.querySelector('#page-info').textContent.startsWith(`page ${n}`)", pages
        )
        ids += page.eval_on_selector_all("#events tbody tr[data-id]", "rs => rs.map(r => r.dataset.id)")
        if page.locator("#older").is_disabled():
            break
        page.click("#older")
    check(len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} ids repeated over {pages} pages")
    check(len(ids) == expected, f"{len(ids)} events paged, {expected} expected")
    found["paged_events"], found["pages"] = len(ids), pages
    # An event's detail by id.
    first = page.locator("#events tbody tr[data-id] button.link").first
    event_id = first.text_content()
    first.click()
    page.wait_for_selector("#detail:not([hidden])")
    detail = page.locator("#detail-body").text_content()
    event = api(f"/v1/events/{urllib.parse.quote(event_id, safe='')}")
    check(event["id"] in detail and event["dims"]["model"] in detail, f"detail {detail}")
    check(event["dims"]["model"] == model, f"event {event} of model {model}")
    found["detail_id"] = event_id
    # Any event by its id, and an id that is nowhere.
    before = len(found["page_errors"])
    page.fill("#find-id", "no-such-event")
    page.click("#find button[type=submit]")
    wait_until(page, "() => document.querySelector('#find-note').textContent.includes('no-such-event')")
    check(page.locator("#detail").is_hidden(), "a detail for an id that is nowhere")
    # The API's 404, which Chromium logs: expected here, and only here.
    logged = found["page_errors"][before:]
    check(all("404" in e for e in logged), f"looking up a missing id logged {logged}")
    del found["page_errors"][before:]
    other = api("/v1/events", limit=1)["events"][0]["id"]
    page.fill("#find-id", other)
    page.click("#find button[type=submit]")
    wait_until(page, "(id) => document.querySelector('#h-detail').textContent === `Event ${id}`", other)
    found["found_by_id"] = other


def other_looks(context, found):
    """Dark mode and a phone's width: screenshots, and axe in dark mode."""
    page = context.new_page()
    page.emulate_media(color_scheme="dark")
    page.goto(f"{URL}/ui#/explore?range=all")
    wait_for_explore(page)
    serious(page, "explore_dark", found)
    page.screenshot(path=f"{SHOTS}/explore-dark.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.emulate_media(color_scheme="light")
    page.goto(f"{URL}/ui#/overview")
    wait_until(page, "() => Number(document.querySelector('#ov-events').dataset.value) > 0")
    found["phone_overflow_px"] = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    page.screenshot(path=f"{SHOTS}/overview-phone.png", full_page=True)
    page.goto(f"{URL}/ui#/explore?range=all")
    wait_for_explore(page)
    found["phone_overflow_px"] += page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    page.screenshot(path=f"{SHOTS}/explore-phone.png", full_page=True)
    page.close()


def fleet(page, found):
    """With "Whole fleet", every answer is asked with fleet=true: one member is down, so the
    console says the answer is partial and shows what the answering member has."""
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{URL}/ui#/explore?range=all")
    wait_for_explore(page)
    check(page.locator("#fleet-switch").is_visible(), "no fleet switch")
    page.check("#fleet")
    wait_until(page, "() => !document.querySelector('#fleet-status').hidden")
    wait_for_explore(page)
    found["fleet_banner"] = page.locator("#fleet-status").text_content()
    want = api("/v1/aggregate", fleet="true")
    check(want["partial"] and want["missing"][0]["endpoint"] == DEAD, f"the API says {want}")
    found["fleet_events"] = data_value(page, "#totals [data-key=events] .num")
    check(found["fleet_events"] == want["event_count"], f"fleet totals {found} against {want}")
    page.screenshot(path=f"{SHOTS}/explore-fleet-partial.png", full_page=True)


def main():
    found = {"axe": {}, "page_errors": []}
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="keplor-chromium-"),
            executable_path="/usr/bin/chromium",
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        context.add_init_script(CLS_PROBE)
        page = context.new_page()
        page.on("pageerror", lambda e: found["page_errors"].append(str(e)))
        page.on(
            "console",
            lambda m: found["page_errors"].append(m.text) if m.type == "error" else None,
        )
        # Nothing but this agent: any other request would be the console reaching out.
        page.on(
            "request",
            lambda r: found["page_errors"].append(f"request to {r.url}")
            if not r.url.startswith(URL)
            else None,
        )
        sign_in(page, found)
        overview(page, found)
        model, expected = explore(page, found)
        events(page, model, expected, found)
        other_looks(context, found)
        fleet(page, found)
        context.close()
    print(json.dumps(found))


main()
