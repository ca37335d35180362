"""The Plan page in a real browser against a real `gpucloud up`: the default form plans a
fleet, a bad value is named inline, and it all works from the keyboard at 390 px."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from web_stack import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

COST = re.compile(r"^\$\d+\.\d{2}/h$")


def open_plan(page: Page) -> None:
    page.get_by_test_id("nav-plan").click()
    expect(page.get_by_test_id("page-plan")).to_be_visible()
    expect(page.get_by_test_id("plan-form")).to_be_visible()
    expect(page.get_by_test_id("plan-empty")).to_be_visible()


def test_the_default_form_plans_the_cheapest_fleet_and_the_one_too_small(signed_in: Page) -> None:
    page = signed_in
    open_plan(page)
    expect(page.get_by_test_id("plan-model")).to_have_value("meta-llama/Llama-3.1-8B-Instruct")
    expect(page.get_by_test_id("plan-price-h100")).to_have_value("2.99")
    page.get_by_test_id("plan-submit").click()

    best = page.get_by_test_id("plan-best")
    expect(best).to_be_visible()
    expect(best.get_by_test_id("plan-gpu-kind")).to_have_text(re.compile(r"\w"))
    expect(best.get_by_test_id("plan-cost")).to_have_text(COST)
    expect(best).to_contain_text("meets SLO")
    smaller = page.get_by_test_id("plan-smaller")
    expect(smaller).to_contain_text("breaks on")
    # The results take the focus, so a screen reader or the keyboard lands on them.
    expect(page.locator("#plan-results-title")).to_be_focused()
    page.get_by_text(re.compile(r"candidates? considered")).click()
    expect(page.get_by_test_id("plan-candidates").locator("tbody tr").first).to_be_visible()
    screenshot(page, "plan")


def test_a_refused_value_is_named_inline_and_the_form_works_by_keyboard_at_390px(
    signed_in: Page,
) -> None:
    page = signed_in
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/#/plan")
    expect(page.get_by_test_id("plan-form")).to_be_visible()

    rate = page.get_by_test_id("plan-ratePerSecond")
    rate.fill("0")
    rate.press("Enter")  # submits the form, as any text field does
    error = page.get_by_test_id("plan-error")
    expect(error).to_contain_text("ratePerSecond")
    expect(rate).to_have_attribute("aria-invalid", "true")

    rate.fill("6")
    page.get_by_test_id("plan-gpu-h100").press("Space")  # unticks H100 by keyboard
    expect(page.get_by_test_id("plan-price-h100")).to_be_disabled()
    page.get_by_test_id("plan-submit").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("plan-best").get_by_test_id("plan-cost")).to_have_text(COST)
    expect(error).to_have_count(0)
    expect(page.get_by_test_id("plan-best")).not_to_have_attribute("data-gpu", "h100")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px at 390 px"
    screenshot(page, "plan-narrow")
