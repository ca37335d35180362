"""The dashboard in a real browser against a real `gpucloud up`: every page, live updates,
keys, the streaming playground and its stop button, metrics charts, error states."""

from __future__ import annotations

import re
import time
from datetime import date
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect
from web_stack import ADMIN_EMAIL, ADMIN_PASSWORD, Stack, screenshot, sign_in, stop

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MODEL = "meta-llama/Llama-3.1-8B-Instruct"  # the small model every simulated GPU serves
# Requests/s as the overview writes it: one decimal below 100, whole numbers above.
RATE = re.compile(r"^(\d{1,3}\.\d|\d{1,3}(,\d{3})*)$")
# How format.js writes a duration: "850 ms", "1.40 s", "12.5 s", "2 min 5 s".
DURATION = re.compile(r"^(\d+ ms|\d+\.\d+ s|\d+ min \d+ s)$")


def create_key(
    page: Page, name: str, rpm: str = "600", *, tpm: str = "", expires: str = "", models: str = ""
) -> str:
    """Creates a key on the keys page; returns the secret from the one-time dialog."""
    page.goto("/#/keys")
    page.get_by_test_id("key-name").fill(name)
    page.get_by_test_id("key-rpm").fill(rpm)
    for field, value in (("key-tpm", tpm), ("key-expires", expires), ("key-models", models)):
        if value:
            page.get_by_test_id(field).fill(value)
    page.get_by_test_id("create-key").click()
    dialog = page.get_by_test_id("secret-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("you will not see it again")
    secret = page.get_by_test_id("key-secret").inner_text().strip()
    assert len(secret) >= 20
    return secret


def key_row(page: Page, name: str) -> Locator:
    return page.locator(f'[data-testid="key-row"][data-key-name="{name}"]')


def cell(table: Locator, row: Locator, header: str) -> Locator:
    """The cell of `row` in the column headed `header` (by position, as a reader finds it)."""
    headers = [text.strip() for text in table.locator("thead th").all_text_contents()]
    return row.locator("td").nth(headers.index(header))


def ask(page: Page, prompt: str, max_tokens: int) -> None:
    page.get_by_test_id("pg-max-tokens").fill(str(max_tokens))
    page.get_by_test_id("pg-prompt").fill(prompt)
    page.get_by_test_id("pg-send").click()


def record_output_lengths(page: Page) -> None:
    """Samples the streamed answer's length every few ms, to tell streaming from one block."""
    page.evaluate(
        """() => {
          window.__lengths = new Set();
          window.__sampler = setInterval(() => {
            const out = document.querySelector('[data-testid="pg-output"]');
            if (out) window.__lengths.add(out.textContent.length);
          }, 5);
        }"""
    )


def canvas_has_ink(chart: Locator) -> bool:
    return bool(
        chart.evaluate(
            """el => {
              const canvas = el.querySelector('canvas');
              const {width, height} = canvas;
              const pixels = canvas.getContext('2d').getImageData(0, 0, width, height).data;
              for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) return true;
              return false;
            }"""
        )
    )


def test_login_rejects_a_wrong_password_then_signs_in_with_the_default_password_banner(
    page: Page, stack: Stack
) -> None:
    page.goto("/")
    expect(page.get_by_test_id("login-form")).to_be_visible()
    screenshot(page, "login")
    page.get_by_test_id("login-email").fill(ADMIN_EMAIL)
    page.get_by_test_id("login-password").fill("not-the-password")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("Wrong email or password")

    page.get_by_test_id("login-password").fill(stack.password)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("page-overview")).to_be_visible()
    expect(page.get_by_test_id("user-email")).to_have_text(ADMIN_EMAIL)
    if stack.password == ADMIN_PASSWORD:  # until the password test below changes it
        expect(page.get_by_test_id("password-banner")).to_be_visible()

    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("login-form")).to_be_visible()


def test_overview_shows_live_cluster_numbers(signed_in: Page, traffic: dict[str, Any]) -> None:
    page = signed_in
    expect(page.get_by_test_id("live-status")).to_have_text("Live")
    expect(page.get_by_test_id("stat-workers-value")).to_have_text(re.compile(r"^4\s*/\s*4$"))
    expect(page.get_by_test_id("stat-gpu-value")).to_have_text(re.compile(r"^\d+%$"))
    expect(page.get_by_test_id("stat-queue-value")).to_have_text(re.compile(r"^\d+$"))
    # Rates from the live stats: one decimal below 100 requests/s, whole tokens/s.
    expect(page.get_by_test_id("stat-rps-value")).to_have_text(RATE)
    expect(page.get_by_test_id("stat-tps-value")).to_have_text(re.compile(r"^\d{1,3}(,\d{3})*$"))
    expect(page.get_by_test_id("throughput-chart").locator("canvas")).to_be_visible()
    expect(page.get_by_test_id("fleet").locator("li")).to_have_count(4)
    page.wait_for_timeout(3000)  # a few more seconds of history for the screenshot's chart
    screenshot(page, "overview")

    page.set_viewport_size({"width": 400, "height": 860})
    expect(page.get_by_test_id("menu-button")).to_be_visible()
    screenshot(page, "overview-narrow")
    page.get_by_test_id("menu-button").click()
    page.get_by_test_id("nav-workers").click()
    expect(page.get_by_test_id("page-workers")).to_be_visible()


def test_a_request_the_worker_refuses_shows_in_recent_errors_live(
    signed_in: Page, stack: Stack
) -> None:
    page = signed_in
    # Stats come down the same watch as task errors: once they show, the error cannot be missed.
    expect(page.get_by_test_id("stat-rps-value")).to_have_text(RATE)
    secret = stack.api("POST", "/api/keys", json={"name": "error maker"})["secret"]
    # The core admits it (the model declares json_schema); the worker finds that no value
    # fits the schema and refuses the task.
    impossible = {"type": "string", "minLength": 5, "maxLength": 2}
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Answer in the schema."}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "impossible", "schema": impossible},
        },
    }
    answer = stack.complete(secret, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == "response_format"

    errors = page.get_by_test_id("recent-errors").locator("li")
    refused = errors.filter(has_text="admits no value")
    expect(refused).to_have_count(1)
    expect(refused).to_contain_text("INVALID_ARGUMENT")
    expect(refused).to_contain_text(MODEL)
    screenshot(page, "overview-errors")


def test_worker_table_follows_a_worker_joining_and_leaving_without_reload(
    signed_in: Page, stack: Stack
) -> None:
    page = signed_in
    page.get_by_test_id("nav-workers").click()
    rows = page.get_by_test_id("worker-row")
    expect(rows.and_(page.locator('[data-state="online"]'))).to_have_count(4)
    page.evaluate("window.__sameDocument = true")

    worker = stack.start_worker("web-test-joiner")
    row = page.locator('[data-testid="worker-row"][data-worker-name="web-test-joiner"]')
    expect(row).to_have_attribute("data-state", "online", timeout=30_000)
    expect(row.get_by_test_id("worker-gpu")).to_contain_text("H100")
    expect(row.get_by_test_id("worker-load")).to_have_text(re.compile(r"^0 / \d+$"))
    expect(row.get_by_test_id("worker-heartbeat")).to_have_text(re.compile(r"just now|\d s ago"))
    # Heartbeat figures: the weights resident on the one 80 GiB GPU, and its utilisation.
    table = page.get_by_test_id("workers-table")
    memory = cell(table, row, "Memory")
    expect(memory).to_have_text(re.compile(r"^[1-9][\d.]* GiB / 80 GiB$"))
    expect(row.get_by_test_id("worker-util")).to_have_text(re.compile(r"^\d+%$"))
    model = cell(table, row, "Models").locator(f'.chip[title="{MODEL}"]')
    expect(model).to_have_text(MODEL.split("/")[-1])
    screenshot(page, "workers")

    stop(worker)
    expect(row).to_have_attribute("data-state", re.compile("offline|draining"), timeout=30_000)
    expect(row).to_have_attribute("data-state", "offline", timeout=30_000)
    expect(rows.and_(page.locator('[data-state="online"]'))).to_have_count(4)
    assert page.evaluate("window.__sameDocument") is True


def test_a_new_key_shows_its_secret_once_and_streams_an_answer_in_the_playground(
    signed_in: Page,
) -> None:
    page = signed_in
    secret = create_key(page, "playground key")
    page.get_by_test_id("copy-secret").click()
    expect(page.get_by_test_id("copy-secret")).to_have_text(re.compile("Copied"))
    assert page.evaluate("navigator.clipboard.readText()") == secret
    screenshot(page, "keys-secret")
    page.get_by_test_id("close-secret").click()
    row = key_row(page, "playground key")
    expect(row.get_by_test_id("key-last4")).to_have_text(f"…{secret[-4:]}")
    expect(row.get_by_test_id("key-status")).to_have_text("active")
    page.reload()
    expect(key_row(page, "playground key")).to_be_visible()
    assert secret not in page.content()
    key_id = key_row(page, "playground key").get_attribute("data-key-id")
    assert key_id

    page.get_by_test_id("nav-playground").click()
    expect(page.get_by_test_id("pg-key")).to_have_value(key_id)
    expect(page.get_by_test_id("pg-model").locator("option").first).to_be_attached()
    # Only chat models: the sim's embedding model cannot answer a chat.
    offered = page.get_by_test_id("pg-model").locator("option").all_inner_texts()
    assert offered and not any("bge" in model for model in offered), offered
    page.get_by_test_id("pg-system").fill("Answer in plain words.")
    record_output_lengths(page)
    ask(page, "What does a GPU scheduler do?", max_tokens=96)

    expect(page.get_by_test_id("pg-status")).to_have_text(re.compile("^Done"), timeout=30_000)
    answer = page.get_by_test_id("pg-message-assistant").last
    expect(answer).not_to_be_empty()
    lengths = page.evaluate("clearInterval(window.__sampler), [...window.__lengths]")
    assert len([n for n in lengths if n > 0]) >= 3, f"answer arrived in one block: {lengths}"
    expect(page.get_by_test_id("pg-ttft")).to_have_text(re.compile(r"\d+(\.\d+)? (ms|s)"))
    expect(page.get_by_test_id("pg-tps")).to_have_text(re.compile(r"^\d"))
    expect(page.get_by_test_id("pg-usage")).to_contain_text("96 completion")
    screenshot(page, "playground")

    page.get_by_test_id("nav-keys").click()
    requests = key_row(page, "playground key").get_by_test_id("key-requests")
    for _ in range(20):  # usage is flushed to storage about once a second
        if requests.inner_text() != "0":
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(requests).to_have_text("1")
    screenshot(page, "keys")


def test_a_key_created_with_limits_expiry_and_models_lists_them_and_its_last_use(
    signed_in: Page, stack: Stack
) -> None:
    page = signed_in
    # Mid-June: past any date this test runs on, within the ten-year limit, and a month
    # whose short name reads the same in every locale data ("Sep" is "Sept" in some).
    expires = date(date.today().year + 2, 6, 15)
    other = "Qwen/Qwen2.5-14B-Instruct"
    secret = create_key(
        page,
        "limited key",
        rpm="300",
        tpm="12000",
        expires=f"{expires.isoformat()}T12:00",
        models=f"{MODEL}, {other}",
    )
    page.get_by_test_id("close-secret").click()
    row = key_row(page, "limited key")
    table = page.get_by_test_id("keys-table")
    expect(row.get_by_test_id("key-status")).to_have_text("active")
    limits = cell(table, row, "Limits")
    expect(limits).to_contain_text("300 req/min")
    expect(limits).to_contain_text("12K tok/min")
    expect(cell(table, row, "Models")).to_have_text(f"{MODEL}, {other}")
    expect(cell(table, row, "Created")).to_contain_text(
        re.compile(rf"expires {expires.day} Jun {expires.year}\D+12:00")
    )
    last_used = cell(table, row, "Last used")
    expect(last_used).to_have_text("never")

    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
    answer = stack.complete(secret, body)
    assert answer.status_code == 200, answer.text
    # The list refreshes itself every 10 s; usage reaches storage within about a second.
    expect(last_used).to_have_text(re.compile(r"^(just now|\d+ s ago)$"), timeout=30_000)
    expect(row.get_by_test_id("key-requests")).to_have_text("1")
    screenshot(page, "keys-limited")


def test_stop_really_cancels_the_stream_and_frees_the_worker_slot(
    signed_in: Page, stack: Stack
) -> None:
    page = signed_in
    create_key(page, "stop key")
    page.get_by_test_id("close-secret").click()
    page.get_by_test_id("nav-playground").click()
    ask(page, "Write a very long essay about schedulers.", max_tokens=4000)
    output = page.get_by_test_id("pg-output")
    expect(output).not_to_be_empty()
    expect(page.get_by_test_id("pg-status")).to_have_text("Streaming…")
    page.get_by_test_id("pg-stop").click()

    expect(page.get_by_test_id("pg-status")).to_have_text("Stopped")
    expect(page.get_by_test_id("pg-send")).to_be_visible()
    answer = page.get_by_test_id("pg-message-assistant").last
    expect(answer).to_contain_text("stopped")
    kept = answer.inner_text()
    page.wait_for_timeout(1000)
    assert answer.inner_text() == kept
    screenshot(page, "playground-stopped")

    deadline = time.monotonic() + 5
    while stack.api("GET", "/api/monitoring/queue")["running"] != 0:
        assert time.monotonic() < deadline, "the cancelled task still holds a slot"
        time.sleep(0.2)


def test_a_revoked_key_is_refused_in_the_playground(signed_in: Page) -> None:
    page = signed_in
    secret = create_key(page, "doomed key")
    page.get_by_test_id("close-secret").click()
    row = key_row(page, "doomed key")

    row.get_by_test_id("revoke-key").click()
    expect(page.get_by_test_id("revoke-dialog")).to_contain_text("doomed key")
    page.get_by_test_id("cancel-revoke").click()
    expect(row.get_by_test_id("key-status")).to_have_text("active")
    row.get_by_test_id("revoke-key").click()
    page.get_by_test_id("confirm-revoke").click()
    expect(row).to_have_count(0)  # revoked keys are hidden until asked for
    page.get_by_test_id("show-revoked").check()
    expect(row.get_by_test_id("key-status")).to_have_text("revoked")

    page.get_by_test_id("nav-playground").click()
    picker = page.get_by_test_id("pg-key")
    expect(picker.locator("option", has_text="doomed key")).to_have_count(0)
    picker.select_option("paste")
    page.get_by_test_id("pg-key-input").fill(secret)
    expect(page.get_by_test_id("pg-models-error")).to_be_visible()
    page.get_by_test_id("pg-model-input").fill("meta-llama/Llama-3.1-8B-Instruct")
    ask(page, "Are you still there?", max_tokens=16)
    expect(page.get_by_test_id("pg-error")).to_contain_text("Key refused")
    expect(page.get_by_test_id("pg-status")).to_have_text("Failed")
    screenshot(page, "playground-refused")


def test_metrics_page_draws_charts_from_recorded_usage(
    signed_in: Page, traffic: dict[str, Any]
) -> None:
    page = signed_in
    page.get_by_test_id("nav-metrics").click()
    page.get_by_test_id("window-15").click()
    expect(page.get_by_test_id("metric-requests-value")).not_to_have_text("0")
    for chart in ("chart-requests", "chart-tokens"):
        expect(page.get_by_test_id(chart).locator("canvas")).to_be_visible()
        assert canvas_has_ink(page.get_by_test_id(chart)), f"{chart} drew nothing"
    mix = page.get_by_test_id("model-mix-row")
    expect(mix.first).to_be_visible()
    for model in traffic["models"]:
        expect(page.get_by_test_id("model-mix")).to_contain_text(model)
    expect(page.get_by_test_id("key-usage")).to_contain_text("background traffic")
    latency = page.get_by_test_id("latency-table")
    expect(latency.locator("thead th")).to_have_text(["", "Time to first token", "Total time"])
    rows = latency.locator("tbody tr")
    expect(rows.locator("th")).to_have_text(["p50", "p90", "p99"])
    for i in range(3):  # both columns hold a duration on every row
        expect(rows.nth(i).locator("td")).to_have_text([DURATION, DURATION])
    screenshot(page, "metrics")


def test_queue_page_shows_depth_and_recent_waits(signed_in: Page, traffic: dict[str, Any]) -> None:
    page = signed_in
    page.get_by_test_id("nav-queue").click()
    expect(page.get_by_test_id("queue-depth-value")).to_have_text(re.compile(r"^\d+\s*/\s*[\d,]+$"))
    expect(page.get_by_test_id("recent-waits")).to_be_visible()
    screenshot(page, "queue")


def test_core_errors_show_an_error_state_instead_of_a_blank_page(signed_in: Page) -> None:
    page = signed_in
    envelope = (
        '{"error": {"message": "The core is not reachable.", "type": "server_error",'
        ' "param": null, "code": "unavailable"}}'
    )
    page.route(
        "**/api/monitoring/metrics*",
        lambda route: route.fulfill(status=503, content_type="application/json", body=envelope),
    )
    page.get_by_test_id("nav-metrics").click()
    error = page.get_by_test_id("error")
    expect(error).to_contain_text("Core unavailable")
    expect(error).to_contain_text("The core is not reachable.")
    screenshot(page, "metrics-core-down")


def test_an_expired_session_returns_to_the_login_page(signed_in: Page) -> None:
    page = signed_in
    page.evaluate(
        """() => {
          const session = JSON.parse(sessionStorage.getItem('gpucloud.session'));
          session.token = 'expired.' + session.token;
          sessionStorage.setItem('gpucloud.session', JSON.stringify(session));
        }"""
    )
    page.reload()
    expect(page.get_by_test_id("login-notice")).to_contain_text("expired")
    expect(page.get_by_test_id("login-form")).to_be_visible()
    # Reloading the login page, or a reload that races the 401 in the old page, keeps the reason.
    page.reload()
    expect(page.get_by_test_id("login-notice")).to_contain_text("expired")


def test_changing_the_default_password_removes_the_banner(signed_in: Page, stack: Stack) -> None:
    page = signed_in
    page.get_by_test_id("change-password-link").click()
    expect(page.get_by_test_id("password-required")).to_be_visible()
    page.get_by_test_id("current-password").fill(stack.password)
    page.get_by_test_id("new-password").fill("short")
    page.get_by_test_id("confirm-password").fill("short")
    page.get_by_test_id("password-submit").click()
    expect(page.get_by_test_id("password-form")).to_be_visible()  # the browser refuses minlength
    page.get_by_test_id("current-password").fill("not-the-password")
    page.get_by_test_id("new-password").fill("long-enough-password")
    page.get_by_test_id("confirm-password").fill("long-enough-password")
    page.get_by_test_id("password-submit").click()
    expect(page.get_by_test_id("password-error")).to_contain_text("current password")
    page.get_by_test_id("current-password").fill(stack.password)

    old_token = page.evaluate("JSON.parse(sessionStorage.getItem('gpucloud.session')).token")
    new_password = "web-test-password-42"
    page.get_by_test_id("new-password").fill(new_password)
    page.get_by_test_id("confirm-password").fill(new_password)
    page.get_by_test_id("password-submit").click()
    expect(page.get_by_test_id("password-changed")).to_be_visible()
    stack.password = new_password
    # The change ended the old session; the page signed in again by itself.
    old = page.request.get(
        f"{stack.url}/api/auth/me", headers={"authorization": f"Bearer {old_token}"}
    )
    assert old.status == 401
    expect(page.get_by_test_id("user-email")).to_be_visible()
    screenshot(page, "account")
    page.get_by_test_id("nav-overview").click()
    expect(page.get_by_test_id("password-banner")).to_have_count(0)

    page.get_by_test_id("logout").click()
    sign_in(page, stack)
    expect(page.get_by_test_id("password-banner")).to_have_count(0)
