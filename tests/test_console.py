"""The operator console in a real headless browser (Debian's `chromium` driven by Selenium
through `chromedriver`), served by the real worker under `wrangler dev` with real origins on
127.0.0.1. Cloudflare Access is played by what Access does at its edge: it adds
`Cf-Access-Jwt-Assertion` to every request (here through the browser's DevTools), signed by a
key this test makes and serves as a JWKS from 127.0.0.1.

With DIDIT_EDGE_SCREENSHOTS=<dir> set, each view is saved there as a PNG (docs/console/ holds
the committed ones)."""

import base64
import json
import os
import pathlib
import re
import shutil
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

import didit
import stream_tokens
from harness import ADMIN_TOKEN, DIDIT_SECRET, SIGNING_SECRET, WranglerDev, base_config, free_port
from origin_server import Origin

READ_TOKEN = "test-read-only-token-0123456789abcdef"
TEAM = "didit-edge-test.cloudflareaccess.com"
AUD = "console-test-aud-" + "0" * 40
OPERATOR_EMAIL = "ops@example.com"
SCREENSHOTS = os.environ.get("DIDIT_EDGE_SCREENSHOTS")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_b64(number: int) -> str:
    return b64url(number.to_bytes((number.bit_length() + 7) // 8, "big"))


class AccessKeys:
    """What Cloudflare Access publishes at /cdn-cgi/access/certs, served from 127.0.0.1, and
    assertions signed as Access signs them (RS256)."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-kid-1"
        self.fetches = 0
        self.status = 200  # anything else: the keys URL is down
        keys = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                keys.fetches += 1
                if keys.status != 200:
                    self.send_response(keys.status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                numbers = keys.key.public_key().public_numbers()
                body = json.dumps({"keys": [{"kid": keys.kid, "kty": "RSA", "alg": "RS256", "use": "sig",
                                             "e": int_b64(numbers.e), "n": int_b64(numbers.n)}]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/cdn-cgi/access/certs"

    def assertion(self, email=OPERATOR_EMAIL, aud=AUD, key=None, kid=None, lifetime=300):
        now = int(time.time())
        header = {"alg": "RS256", "kid": kid or self.kid, "typ": "JWT"}
        claims = {"aud": [aud], "email": email, "exp": now + lifetime, "iat": now, "nbf": now,
                  "iss": f"https://{TEAM}", "type": "app", "sub": str(uuid.uuid4())}
        signed = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = (key or self.key).sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{b64url(signature)}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def world():
    """One worker, a failing-on-demand origin (consumer `default`) and a probed one (consumer
    `audit`), Access keys on 127.0.0.1, and the stream on."""
    primary = Origin(free_port(), SIGNING_SECRET).start()
    probed = Origin(free_port(), SIGNING_SECRET).start()
    keys = AccessKeys()
    origins = [
        {"name": "primary", "url": primary.url, "timeout_ms": 2000},
        {"name": "probed", "url": probed.url, "health_url": probed.health_url, "consumer": "audit",
         "timeout_ms": 2000, "region": "eu", "cloud": "aws"},
    ]
    edge = WranglerDev("console", base_config(
        primary.url, ORIGINS=json.dumps(origins), RETRY_SCHEDULE="1x2", ADMIN_TOKEN=ADMIN_TOKEN,
        ADMIN_READ_TOKEN=READ_TOKEN, ACCESS_TEAM_DOMAIN=TEAM, ACCESS_AUD=AUD, ACCESS_JWKS_URL=keys.url,
        ACCESS_OPERATORS=OPERATOR_EMAIL, STREAM_TOKEN_SECRET=stream_tokens.STREAM_SECRET))
    try:
        edge.start()
        yield edge, primary, probed, keys
    finally:
        edge.stop()
        shutil.rmtree(edge.persist_dir, ignore_errors=True)
        for one in (primary, probed):
            one.stop()
        keys.stop()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1200,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, predicate, timeout=20, message=""):
    """Polls until `predicate` returns something truthy, and returns it.

    Views that refresh on a timer (origins every 5 s, metrics every 15 s) replace their rows, so an
    element found in one poll can be gone by the next read: such a read is retried, not failed. A
    predicate should therefore read every value it needs in one go and return values, not elements.
    """
    return WebDriverWait(driver, timeout, poll_frequency=0.2,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
                         ).until(lambda d: predicate(d), message)


def shot(driver, name, width=1200, height=900):
    if not SCREENSHOTS:
        return
    directory = pathlib.Path(SCREENSHOTS)
    directory.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(width, height)
    time.sleep(0.2)
    driver.save_screenshot(str(directory / f"{name}.png"))
    driver.set_window_size(1200, 900)


def access_header(driver, assertion):
    """What Access does at the edge: the assertion on every request to the host."""
    driver.execute_cdp_cmd("Network.enable", {})
    headers = {"Cf-Access-Jwt-Assertion": assertion} if assertion else {}
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})


def open_console(driver, edge, view="dead-letters"):
    driver.get("about:blank")
    driver.get(f"{edge.url}/console/#{view}")


def sign_in(driver, edge, token):
    access_header(driver, None)
    open_console(driver, edge)
    driver.execute_script("sessionStorage.clear()")
    driver.refresh()
    field = wait(driver, lambda d: d.find_element(By.ID, "token") if d.find_element(By.ID, "sign-in").is_displayed() else None)
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#sign-in-form button[type=submit]").click()


def signed_in_as(driver):
    return wait(driver, lambda d: d.find_element(By.ID, "who").text if d.find_element(By.ID, "who").is_displayed() else None)


def go(driver, view):
    driver.find_element(By.CSS_SELECTOR, f"#nav a[data-view='{view}']").click()
    wait(driver, lambda d: d.find_element(By.ID, f"view-{view}").is_displayed())


def send(edge, session_id=None):
    payload = didit.session_payload(session_id=session_id)
    body = didit.encode(payload)
    code, reply = edge.post_webhook(body, didit.signed_headers(body, payload, DIDIT_SECRET))
    assert (code, reply["status"]) == (200, "accepted"), reply
    return reply["id"], payload["session_id"]


def dead_ids(edge):
    status, page = edge.admin("GET", "/admin/dead-letters")
    assert status == 200, page
    return {letter["id"] for letter in page["dead_letters"]}


def make_dead_letter(edge, primary):
    """A dead letter at once: the origin aborts the message (a 4xx, so its breaker stays
    closed and the next test's deliveries are not held back by a cool-down)."""
    primary.status = 422
    primary.extra_headers = {"webhook-delivery": "abort-message"}
    event, session = send(edge)
    deadline = time.time() + 40
    while event not in dead_ids(edge):
        assert time.time() < deadline, "no dead letter"
        time.sleep(0.3)
    fix(primary)
    return event, session


def fix(primary):
    primary.status = 204
    primary.extra_headers = {}


def look_up(driver, by, subject_id=None, event_id=None, until=None, timeout=30):
    """Fills the Lookup view's form and submits it, again while `until(driver)` is not yet
    true (a delivery is recorded a moment after the origin answers); answers the status text."""
    go(driver, "lookup")
    Select(driver.find_element(By.ID, "lk-by")).select_by_value(by)
    for field, value in (("lk-id", subject_id), ("lk-event", event_id)):
        box = driver.find_element(By.ID, field)
        if not box.is_displayed():
            continue
        box.clear()
        if value:
            box.send_keys(value)
    deadline = time.time() + timeout
    while True:
        driver.find_element(By.CSS_SELECTOR, "#lk-form button[type=submit]").click()
        status = wait(driver, lambda d: (lambda text: text if text and text != "Looking up…" else None)(
            d.find_element(By.ID, "status").text))
        if until is None or until(driver) or time.time() > deadline:
            return status
        time.sleep(0.5)


def timeline(driver, event):
    return driver.find_element(By.CSS_SELECTOR, f"#lk-result article[data-event='{event}']")


def test_the_console_is_a_static_asset_with_a_strict_policy(world):
    edge = world[0]
    status, headers, body = edge.request("GET", "/console/")
    headers = {k.lower(): v for k, v in headers.items()}
    assert status == 200 and b'<script type="module" src="/console/console.js">' in body
    policy = headers["content-security-policy"]
    for rule in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                 "frame-ancestors 'none'", "base-uri 'none'", "object-src 'none'"):
        assert rule in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert headers["x-content-type-options"] == "nosniff"
    # Nothing inline for the policy to refuse: no script body, style attribute or handler.
    assert b"<script>" not in body and b"<style" not in body and not re.search(rb"\s(style|on[a-z]+)=", body)
    # The worker's own refusals are not assets: an unknown path under /console is no page.
    assert edge.request("GET", "/console/nothing-here.js")[0] == 404


def test_a_wrong_token_is_refused_and_the_right_one_signs_in(world, browser):
    edge = world[0]
    sign_in(browser, edge, "not-the-admin-token-at-all-0123")
    error = wait(browser, lambda d: d.find_element(By.ID, "sign-in-error").text)
    assert error == "That token was refused."
    assert not browser.find_element(By.ID, "app").is_displayed()
    shot(browser, "sign-in")
    sign_in(browser, edge, ADMIN_TOKEN)
    assert signed_in_as(browser) == "Signed in: operator (token)"
    # Kept in memory only (not asked to remember), never in a cookie or the URL.
    assert browser.execute_script("return sessionStorage.length") == 0
    assert browser.get_cookies() == []
    assert ADMIN_TOKEN not in browser.current_url


def test_lookup_by_session_shows_the_signature_and_the_delivery(world, browser):
    edge, primary, _, _ = world
    fix(primary)
    event, session = send(edge)
    assert primary.wait_for(lambda o: event in o.delivered_ids(), timeout=40)
    sign_in(browser, edge, ADMIN_TOKEN)
    signed_in_as(browser)
    copy = f"article[data-event='{event}'] li.copy[data-consumer='default']"
    delivered = lambda d: d.find_elements(By.CSS_SELECTOR, f"{copy} [data-step='delivered']")
    status = look_up(browser, "session", subject_id=session, until=delivered)
    assert status == "1 event found.", status
    article = timeline(browser, event)
    assert article.find_element(By.CSS_SELECTOR, "[data-signature]").text == "X-Signature"
    received = article.find_element(By.CSS_SELECTOR, "[data-step='received']").text
    assert "by webhook" in received and "X-Signature verified" in received and "ms old" in received, received
    assert "risk" in article.find_element(By.CSS_SELECTOR, "[data-step='classified']").text
    request = browser.find_element(By.CSS_SELECTOR, f"{copy} [data-step='request'][data-status='204']")
    assert "primary" in request.text and "HTTP 204" in request.text and " ms" in request.text, request.text
    assert "to primary" in browser.find_element(By.CSS_SELECTOR, f"{copy} [data-step='delivered']").text
    # The second consumer's copy went to its own origin.
    assert article.find_elements(By.CSS_SELECTOR, "li.copy[data-consumer='audit']")
    # One ordered list per event, under a heading naming it.
    assert article.find_element(By.CSS_SELECTOR, "h3").text.startswith(event)
    assert article.find_element(By.CSS_SELECTOR, ":scope > ol.steps")
    if SCREENSHOTS:
        browser.execute_script("window.scrollTo(0, 0)")
        shot(browser, "lookup", height=1150)
        browser.set_window_size(400, 900)
        browser.execute_script("arguments[0].scrollIntoView()", article)
        shot(browser, "lookup-narrow", width=400, height=900)


def test_lookup_of_a_dead_letter_by_its_id_alone(world, browser):
    edge, primary, _, _ = world
    event, _ = make_dead_letter(edge, primary)
    sign_in(browser, edge, ADMIN_TOKEN)
    signed_in_as(browser)
    status = look_up(browser, "event", event_id=event)
    assert status == "1 event found.", status
    article = timeline(browser, event)
    dead = article.find_element(By.CSS_SELECTOR, "[data-step='dead_letter']")
    assert "aborted_by_origin" in dead.text, dead.text
    failed = article.find_element(By.CSS_SELECTOR, "li.copy[data-consumer='default'] [data-step='request'][data-status='422']")
    assert "primary" in failed.text and "aborted" in failed.text, failed.text
    assert "dead letter" in article.find_element(By.CSS_SELECTOR, "li.copy[data-consumer='default'] h4").text
    assert edge.admin("POST", f"/admin/dead-letters/{event}/replay")[0] == 200


def test_a_read_only_user_looks_up_and_an_unknown_session_is_a_404(world, browser):
    edge, primary, _, _ = world
    fix(primary)
    event, session = send(edge)
    sign_in(browser, edge, READ_TOKEN)
    assert signed_in_as(browser) == "Signed in: read-only (token)"
    # Lookup is the first view and the one the console falls back to.
    assert browser.find_element(By.CSS_SELECTOR, "#nav li:first-child a").get_attribute("data-view") == "lookup"
    browser.execute_script("location.hash = '#no-such-view'")
    wait(browser, lambda d: d.find_element(By.ID, "view-lookup").is_displayed())
    look_up(browser, "session", subject_id=session)
    assert timeline(browser, event).find_element(By.CSS_SELECTOR, "[data-step='received']")
    status = look_up(browser, "session", subject_id=f"never-seen-{uuid.uuid4()}")
    assert status.startswith("nothing is kept about this subject") and status.endswith("(subject_not_found)"), status
    assert "bad" in browser.find_element(By.ID, "status").get_attribute("class")
    assert browser.find_element(By.ID, "status").get_attribute("aria-live") == "polite"
    assert browser.find_element(By.ID, "lk-result").text == ""


def test_a_dead_letter_is_listed_replayed_and_delivered(world, browser):
    edge, primary, _, _ = world
    event, _ = make_dead_letter(edge, primary)
    sign_in(browser, edge, ADMIN_TOKEN)
    signed_in_as(browser)
    row = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"#dl-table tr[data-id='{event}']"))
    assert "aborted_by_origin" in row.text and "primary: 422 aborted" in row.text, row.text
    shot(browser, "dead-letters")
    shot(browser, "dead-letters-narrow", width=400, height=900)
    row.find_element(By.CSS_SELECTOR, "button[data-replay]").click()
    wait(browser, lambda d: f"Replayed {event}" in d.find_element(By.ID, "status").text)
    assert primary.wait_for(lambda o: event in o.delivered_ids(), timeout=40)
    assert event not in dead_ids(edge)


def test_bulk_replay_says_how_many_before_it_replays(world, browser):
    edge, primary, _, _ = world
    first, _ = make_dead_letter(edge, primary)
    second, _ = make_dead_letter(edge, primary)
    sign_in(browser, edge, ADMIN_TOKEN)
    signed_in_as(browser)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"#dl-table tr[data-id='{second}']"))
    count = len(dead_ids(edge))
    browser.find_element(By.ID, "dl-replay-all").click()
    text = wait(browser, lambda d: d.find_element(By.ID, "confirm-text").text)
    assert text.startswith(f"Replay {count} dead letters?"), text
    shot(browser, "bulk-replay-confirmation")
    browser.find_element(By.CSS_SELECTOR, "#confirm button[value=cancel]").click()
    assert dead_ids(edge) >= {first, second}, "cancelled: nothing replayed"
    browser.find_element(By.ID, "dl-replay-all").click()
    wait(browser, lambda d: d.find_element(By.ID, "confirm").is_displayed())
    browser.find_element(By.ID, "confirm-ok").click()
    wait(browser, lambda d: f"Replayed {count} dead letters." == d.find_element(By.ID, "status").text)
    assert primary.wait_for(lambda o: {first, second} <= set(o.delivered_ids()), timeout=40)


def test_a_read_only_user_cannot_replay_or_erase(world, browser):
    edge, primary, _, _ = world
    event, _ = make_dead_letter(edge, primary)
    sign_in(browser, edge, READ_TOKEN)
    assert signed_in_as(browser) == "Signed in: read-only (token)"
    row = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"#dl-table tr[data-id='{event}']"))
    assert row.find_elements(By.CSS_SELECTOR, "button") == []
    assert not browser.find_element(By.ID, "dl-replay-all").is_displayed()
    assert not browser.find_element(By.CSS_SELECTOR, "#nav a[data-view='erasure']").is_displayed()
    # And the API says the same, whatever the page shows.
    status, reply = edge.admin("POST", f"/admin/dead-letters/{event}/replay", token=READ_TOKEN)
    assert (status, reply["error"]["code"]) == (403, "operator_required")
    status, reply = edge.admin_json("POST", "/admin/erasures", {"subject_kind": "user", "subject_id": "x"},
                                    token=READ_TOKEN)
    assert (status, reply["error"]["code"]) == (403, "operator_required")
    assert edge.admin("GET", "/admin/origins", token=READ_TOKEN)[0] == 200
    assert event in dead_ids(edge)
    assert edge.admin("POST", f"/admin/dead-letters/{event}/replay")[0] == 200


def test_an_origin_taken_down_shows_its_breaker_open_then_closed(world, browser):
    edge, _, probed, _ = world
    sign_in(browser, edge, READ_TOKEN)
    signed_in_as(browser)
    go(browser, "origins")
    state = lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-origin='probed'] [data-state]").get_attribute("data-state")
    probe = lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-origin='probed'] [data-field='last-probe']").text
    assert wait(browser, state) == "closed"
    assert wait(browser, lambda d: d.find_element(
        By.CSS_SELECTOR, "tr[data-origin='primary'] [data-field='last-probe']").text) == "no health_url"
    edge.run_cron()
    wait(browser, lambda d: probe(d).startswith("up,"), timeout=15, message="the probe never shown up")
    probed.health_status = 503
    for _ in range(3):
        edge.run_cron()
    row = lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-origin='probed']").text
    shown_open = wait(browser, lambda d: state(d) == "open" and row(d), timeout=15, message="breaker never shown open")
    assert "open until" in shown_open, shown_open
    wait(browser, lambda d: probe(d).startswith("down,"), timeout=15, message="the failed probe never shown")
    shot(browser, "origins")
    probed.health_status = 200
    time.sleep(10.5)  # the first cool-down
    edge.run_cron()
    edge.run_cron()
    wait(browser, lambda d: state(d) == "closed", timeout=15, message="breaker never shown closed again")


def test_an_operator_erases_a_subject(world, browser):
    edge, primary, _, _ = world
    event, session = make_dead_letter(edge, primary)
    sign_in(browser, edge, ADMIN_TOKEN)
    signed_in_as(browser)
    go(browser, "erasure")
    Select(browser.find_element(By.ID, "er-kind")).select_by_value("session")
    browser.find_element(By.ID, "er-id").send_keys(session)
    browser.find_element(By.CSS_SELECTOR, "#er-form button[type=submit]").click()
    wait(browser, lambda d: d.find_element(By.ID, "confirm").is_displayed())
    ok = browser.find_element(By.ID, "confirm-ok")
    assert not ok.is_enabled(), "only typing the word confirms"
    browser.find_element(By.ID, "confirm-input").send_keys("erase")
    ok.click()
    result = wait(browser, lambda d: d.find_element(By.ID, "er-result").text)
    assert "Erased the session." in result and "dead letters\n1" in result, result
    shot(browser, "erasure")
    assert event not in dead_ids(edge)
    assert primary.delivered_ids().count(event) == 0
    # Looked up afterwards, the session says it was erased; its event keeps no payload.
    look_up(browser, "session", subject_id=session)
    notice = browser.find_element(By.CSS_SELECTOR, "#lk-result [data-erased]").text
    assert "the subject was erased and nothing personal is kept" in notice, notice
    assert "Payload no longer kept." in timeline(browser, event).text


def test_reconciliation_view_says_it_is_off(world, browser):
    edge = world[0]
    sign_in(browser, edge, READ_TOKEN)
    signed_in_as(browser)
    go(browser, "reconciliation")
    text = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[data-reconciliation]").text)
    assert text.startswith("Reconciliation is off")
    shot(browser, "reconciliation")


def test_the_metrics_view_shows_each_origin_by_hour_and_day(world, browser):
    edge = world[0]
    # Counts reach the Health object with the delivering isolate's next breaker refresh (2 s
    # cache): traffic keeps flowing until the primary's show.
    deadline = time.time() + 60
    while True:
        send(edge)
        time.sleep(2.2)
        status, view = edge.admin("GET", "/admin/metrics", token=READ_TOKEN)
        assert status == 200, view
        primary = next(o for o in view["origins"] if o["origin"] == "primary")
        if primary["hour"]["attempts"] > 0:
            break
        assert time.time() < deadline, view
    sign_in(browser, edge, READ_TOKEN)
    signed_in_as(browser)
    go(browser, "metrics")
    cell = "tr[data-origin='primary'][data-window='hour'] td[data-field='attempts']"
    shown = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, cell).text)
    assert int(shown) >= primary["hour"]["attempts"]
    rows, p50 = wait(browser, lambda d: (
        {(row.get_attribute("data-origin"), row.get_attribute("data-window"))
         for row in d.find_elements(By.CSS_SELECTOR, "#mt-table tbody tr")},
        d.find_element(By.CSS_SELECTOR, "tr[data-origin='primary'][data-window='hour'] td[data-field='p50']").text))
    assert rows >= {("primary", "hour"), ("primary", "day"), ("probed", "hour"), ("probed", "day")}, rows
    assert p50.startswith("< ") and p50.endswith(" ms"), p50
    shot(browser, "metrics")


def test_the_live_feed_shows_statuses_as_they_arrive(world, browser):
    edge = world[0]
    sign_in(browser, edge, READ_TOKEN)
    signed_in_as(browser)
    go(browser, "live")
    browser.find_element(By.ID, "lv-toggle").click()
    wait(browser, lambda d: d.find_element(By.ID, "lv-state").text.startswith("Connected"))
    event, session = send(edge)
    item = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"#lv-feed li[data-event='{event}']"))
    assert "approved" in item.text and session in item.text
    assert browser.find_element(By.ID, "lv-feed").get_attribute("aria-live") == "polite"
    shot(browser, "live-feed")
    browser.find_element(By.ID, "lv-toggle").click()


def test_access_signs_in_an_operator_and_refuses_other_audiences_and_keys(world, browser):
    edge, primary, _, keys = world
    access_header(browser, keys.assertion())
    open_console(browser, edge)
    assert signed_in_as(browser) == f"Signed in: {OPERATOR_EMAIL}, operator (Cloudflare Access)"
    assert not browser.find_element(By.ID, "sign-out").is_displayed()
    # An operator's change through Access: the console sends its header, same-origin.
    event, _ = make_dead_letter(edge, primary)
    browser.refresh()
    row = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"#dl-table tr[data-id='{event}']"))
    row.find_element(By.CSS_SELECTOR, "button[data-replay]").click()
    wait(browser, lambda d: f"Replayed {event}" in d.find_element(By.ID, "status").text)
    # Another identity Access lets through may read only.
    access_header(browser, keys.assertion(email="someone@example.com"))
    open_console(browser, edge)
    assert signed_in_as(browser) == "Signed in: someone@example.com, read-only (Cloudflare Access)"

    def session_with(assertion, extra=None):
        headers = {"Cf-Access-Jwt-Assertion": assertion, **(extra or {})}
        status, _, raw = edge.request("GET", "/admin/session", headers=headers)
        return status, json.loads(raw)

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for assertion, code in [
        (keys.assertion(aud="another-application"), "invalid_access_assertion"),
        (keys.assertion(key=other_key), "invalid_access_assertion"),
        (keys.assertion(key=other_key, kid="unknown-kid"), "invalid_access_assertion"),
        (keys.assertion(lifetime=-120), "invalid_access_assertion"),
    ]:
        status, reply = session_with(assertion)
        assert (status, reply["error"]["code"]) == (401, code), reply
    status, reply = session_with(keys.assertion())
    assert (status, reply) == (200, {"role": "operator", "via": "access", "identity": OPERATOR_EMAIL})
    # The browser with a wrong-audience assertion is shown the sign-in form, not the console.
    access_header(browser, keys.assertion(aud="another-application"))
    open_console(browser, edge)
    wait(browser, lambda d: d.find_element(By.ID, "sign-in").is_displayed())
    assert not browser.find_element(By.ID, "app").is_displayed()
    access_header(browser, None)

    # Cross-site safety: Access's cookie rides along on any request, so an operator's change
    # signed in through Access needs the console's header and no other site's fetch.
    letter, _ = make_dead_letter(edge, primary)
    path = f"/admin/dead-letters/{letter}/replay"
    bare = {"Cf-Access-Jwt-Assertion": keys.assertion()}
    for headers in [bare, {**bare, "x-didit-edge-console": "1", "sec-fetch-site": "cross-site"}]:
        status, _, raw = edge.request("POST", path, headers=headers)
        assert (status, json.loads(raw)["error"]["code"]) == (403, "cross_site_request")
    status, _, raw = edge.request("POST", path, headers={**bare, "x-didit-edge-console": "1",
                                                          "sec-fetch-site": "same-origin"})
    assert status == 200, raw
    # A forged kid does not make every request a fetch of the keys.
    before = keys.fetches
    for _ in range(3):
        session_with(keys.assertion(key=other_key, kid=f"forged-{uuid.uuid4()}"))
    assert keys.fetches - before <= 1


def test_a_keys_url_that_is_down_is_not_asked_at_every_request():
    """Without keys held and with the team's keys URL down, each request with an assertion
    (forged or not) is a 503, and the URL is asked again only after a pause."""
    keys = AccessKeys()
    keys.status = 500
    edge = WranglerDev("console-keys-down", base_config(
        "http://127.0.0.1:9/unused", ADMIN_TOKEN=ADMIN_TOKEN, ACCESS_TEAM_DOMAIN=TEAM, ACCESS_AUD=AUD,
        ACCESS_JWKS_URL=keys.url, ACCESS_OPERATORS=OPERATOR_EMAIL))
    try:
        edge.start()
        answers = []
        for _ in range(4):
            status, _, raw = edge.request("GET", "/admin/session",
                                          headers={"Cf-Access-Jwt-Assertion": keys.assertion()})
            answers.append((status, json.loads(raw)["error"]["code"]))
        assert answers == [(503, "access_keys_unavailable")] * 4, answers
        assert keys.fetches == 1
        # Once the URL is back, the assertion signs in (after the pause, so not within it).
        keys.status = 200
        status, _, raw = edge.request("GET", "/admin/session",
                                      headers={"Cf-Access-Jwt-Assertion": keys.assertion()})
        assert status == 503 and keys.fetches == 1
    finally:
        edge.stop()
        shutil.rmtree(edge.persist_dir, ignore_errors=True)
        keys.stop()


def port_free(port):
    import socket
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_a_newcomer_finds_the_event_sent_with_dev_sh(browser, tmp_path):
    """Issue 23's "done when": `bash scripts/dev.sh`, then `didit-edge send` from another
    terminal, then the console URL dev.sh printed, signed in with .dev.vars' ADMIN_TOKEN, finds
    the event delivered to the demo origin by the session `send` named. dev.sh's own ports and
    `.dev.vars` are used as a newcomer gets them; its object storage goes to a temporary
    directory, and a `.dev.vars` this test made is removed after."""
    import signal
    import subprocess
    root = pathlib.Path(__file__).resolve().parent.parent
    assert port_free(8787) and port_free(8788), "scripts/dev.sh needs 127.0.0.1:8787 and :8788 free"
    dev_vars = root / ".dev.vars"
    made_dev_vars = not dev_vars.exists()
    logs = os.environ.get("DIDIT_EDGE_TEST_LOGS")
    output = pathlib.Path(logs) / "dev-sh.log" if logs else tmp_path / "dev.log"
    output.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("DIDIT_WEBHOOK_SECRET", "DIDIT_WEBHOOK_SECRETS", "ADMIN_TOKEN", "DIDIT_EDGE_URL")}
    env["DIDIT_EDGE_DEV_STATE"] = str(tmp_path / "state")
    with open(output, "w") as log:
        dev = subprocess.Popen(["bash", "scripts/dev.sh"], cwd=root, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 600  # set-up checks every tool first (quick when installed)
        console_url = None
        while console_url is None:
            assert dev.poll() is None, output.read_text()[-3000:]
            assert time.time() < deadline, output.read_text()[-3000:]
            found = re.search(r"operator console: (http://\S+)", output.read_text())
            console_url = found.group(1) if found else None
            time.sleep(0.5)
        base = console_url.split("/console/")[0]
        while port_free(8787) or port_free(8788):
            assert dev.poll() is None, output.read_text()[-3000:]
            assert time.time() < deadline, output.read_text()[-3000:]
            time.sleep(0.5)

        cli = root / "target" / "debug" / "didit-edge"
        sent = None
        while sent is None or sent.returncode != 0:
            # wrangler listens before its first build is served: retry until it answers.
            assert time.time() < deadline, (sent.stdout, sent.stderr) if sent else "never sent"
            sent = subprocess.run([str(cli), "send", f"{base}/webhooks/didit"], cwd=root, env=env,
                                  capture_output=True, text=True, timeout=60)
            if sent.returncode != 0:
                time.sleep(1)
        assert sent.stdout.startswith("200 "), sent.stdout
        event = json.loads(sent.stdout.split(" ", 1)[1])["id"]
        hint = re.search(r"admin lookup --session (\S+)` or in the console, (\S+) ", sent.stderr)
        assert hint and hint.group(2) == console_url, sent.stderr
        session = hint.group(1)

        token = re.search(r'^ADMIN_TOKEN="([^"]+)"', dev_vars.read_text(), re.M).group(1)
        access_header(browser, None)
        browser.get("about:blank")
        browser.get(console_url)
        browser.execute_script("sessionStorage.clear()")
        browser.refresh()
        field = wait(browser, lambda d: d.find_element(By.ID, "token") if d.find_element(By.ID, "sign-in").is_displayed() else None)
        field.send_keys(token)
        browser.find_element(By.CSS_SELECTOR, "#sign-in-form button[type=submit]").click()
        signed_in_as(browser)
        copy = f"article[data-event='{event}'] li.copy[data-consumer='default']"
        delivered = lambda d: d.find_elements(By.CSS_SELECTOR, f"{copy} [data-step='delivered']")
        status = look_up(browser, "session", subject_id=session, until=delivered, timeout=60)
        assert status == "1 event found.", status
        assert "to local-demo" in browser.find_element(By.CSS_SELECTOR, f"{copy} [data-step='delivered']").text
    finally:
        try:
            os.killpg(dev.pid, signal.SIGTERM)
            dev.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(dev.pid, signal.SIGKILL)
        if made_dev_vars:
            dev_vars.unlink(missing_ok=True)


def test_didits_attempts_beside_the_timeline_and_its_destinations_health(make_edge, make_origin, browser):
    """With DIDIT_API_KEY (against the fake Didit, which really sends its webhooks to the worker):
    the Lookup view shows Didit's two tries, the first refused with 401 (a wrong secret), the
    retry taken with 200, and the Origins view each destination's health as Didit reports it."""
    from fake_didit_api import FakeDiditApi
    api = FakeDiditApi(free_port(), "didit-api-key-for-tests").start()
    try:
        origin = make_origin()
        edge = make_edge("console-didit", base_config(
            origin.url, ADMIN_TOKEN=ADMIN_TOKEN, ADMIN_READ_TOKEN=READ_TOKEN,
            DIDIT_API_KEY=api.api_key, DIDIT_API_BASE_URL=api.base_url))
        ours = api.add_destination(f"{edge.url}/webhooks/didit", label="didit-edge")
        api.add_destination("https://old-receiver.example/webhooks/didit", label="old receiver", enabled=False)
        payload = didit.session_payload()
        assert api.send_webhook(ours, payload, "not-the-secret") == 401
        assert api.send_webhook(ours, payload, DIDIT_SECRET) == 200
        event = origin.wait_for(lambda o: o.delivered_ids(), timeout=40)
        assert event

        sign_in(browser, edge, READ_TOKEN)
        signed_in_as(browser)
        look_up(browser, "session", subject_id=payload["session_id"])
        rows = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#lk-didit-table tbody tr"),
                    message="Didit's attempts")
        assert [row.get_attribute("data-status") for row in rows] == ["401", "200"]
        assert "HTTP 401" in rows[0].text and "status.updated" in rows[0].text and " ms" in rows[0].text
        assert "HTTP 200" in rows[1].text
        summary = browser.find_element(By.CSS_SELECTOR, "#lk-didit [role=status]").text
        assert summary.startswith("Didit tried 2 times; this edge answered 401 to 1 of them."), summary
        # Beside the edge's own timeline of the same session.
        assert browser.find_elements(By.CSS_SELECTOR, "#lk-result article.timeline [data-step='received']")
        if SCREENSHOTS:
            browser.execute_script("document.getElementById('lk-didit').scrollIntoView()")
            shot(browser, "lookup-didit")

        # Every try refused: the edge holds nothing (404), and Didit's attempt says what it answered.
        refused = didit.session_payload()
        assert api.send_webhook(ours, refused, "not-the-secret") == 401
        status = look_up(browser, "session", subject_id=refused["session_id"])
        assert status.endswith("(subject_not_found)"), status
        rows = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#lk-didit-table tbody tr"),
                    message="Didit's attempt for a session the edge holds nothing of")
        assert [row.get_attribute("data-status") for row in rows] == ["401"]

        go(browser, "origins")
        def destinations(d):
            rows = d.find_elements(By.CSS_SELECTOR, "#dd-table tr[data-this-edge='yes']")
            if not rows:
                return None
            return [{"destination": row.get_attribute("data-destination"),
                     "failed": row.find_element(By.CSS_SELECTOR, "[data-field='failed']").text,
                     "health": row.find_element(By.CSS_SELECTOR, "[data-field='health']").text,
                     "text": row.text} for row in rows], \
                d.find_element(By.CSS_SELECTOR, "#dd-table tr[data-this-edge='no']").text
        shown, other = wait(browser, destinations, message="Didit's destinations")
        [mine] = shown
        assert mine["destination"] == ours
        assert mine["failed"] == "2 / 3"
        assert mine["health"] == api.destination_row(api.destinations[0])["health_status"]
        assert "this edge" in mine["text"] and "didit-edge" in mine["text"]
        assert "old receiver" in other
        if SCREENSHOTS:
            shot(browser, "origins-didit")
    finally:
        api.stop()
