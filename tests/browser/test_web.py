"""The web in a real browser: the five services as processes on a real Redis, Chromium driven
as a person would (roles and labels), from the seed page to the live inbox."""

from __future__ import annotations

import re
import signal
import time
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, expect

from askdoc_cli import launcher
from demo.scenario import SEED
from tests.browser.conftest import AXE, SCREENSHOTS, Stack, person, until
from tests.support import ServiceProcess, auth, made_up_npi, token


def _answers(page: Page, count: int) -> Any:
    return page.get_by_role("region", name=f"Doctor Answers {count}").get_by_role("article")


def _post_question(stack: Stack, asker: str, title: str, topics: list[str]) -> str:
    question = stack.api(
        "POST",
        "questions",
        "/questions",
        headers=auth(asker),
        json={
            "title": title,
            "body": "Asked for a browser test.",
            "topics": topics,
            "location": {"city": "Los Angeles", "state": "CA"},
        },
    )
    return str(question["id"])


def _answer(stack: Stack, qid: str, doctor: str, name: str, headline: str) -> str:
    def post() -> Any:
        response = stack_post(stack, qid, doctor, name, headline)
        return response if response.status_code == 201 else None

    posted = until(post, what=f"{doctor} to be able to answer")
    aid = str(posted.json()["id"])
    until(
        lambda: any(
            a["id"] == aid for a in stack.api("GET", "questions", f"/questions/{qid}")["answers"]
        ),
        what="the answer on the page",
    )
    until(
        lambda: stack_status(stack, "votes", f"/answers/{aid}/votes") == 200,
        what="the votes service to know the answer",
    )
    return aid


def stack_post(stack: Stack, qid: str, doctor: str, name: str, headline: str) -> Any:
    return httpx.post(
        f"{stack.urls['answers']}/questions/{qid}/answers",
        headers=auth(doctor, "doctor", name),
        json={"headline": headline, "body": f"{headline}: an answer written for a browser test."},
        timeout=10,
    )


def stack_status(stack: Stack, service: str, path: str) -> int:
    return httpx.get(stack.urls[service] + path, timeout=10).status_code


# (a) ---------------------------------------------------------------------------------------


def test_the_seed_page_renders_as_the_seed(stack: Stack, browser: Browser) -> None:
    with person(browser, stack, viewport={"width": 1280, "height": 1000}) as context:
        page = context.new_page()
        response = page.goto(f"/questions/{stack.seed['qid']}")
        assert response is not None and response.status == 200
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp

        expect(page.get_by_role("heading", level=1)).to_have_text(SEED["question"]["title"])
        expect(page.get_by_text("Asked by Anonymous")).to_be_visible()
        expect(page.get_by_role("heading", name="Doctor Answers 6")).to_be_visible()
        answers = _answers(page, 6)
        expect(answers).to_have_count(6)
        for i, seeded in enumerate(SEED["answers"]):
            card, article = seeded["doctor"], answers.nth(i)
            expect(article.get_by_role("heading", level=3)).to_have_text(seeded["headline"])
            expect(article).to_contain_text(card["name"])
            expect(article).to_contain_text(f"{card['city']}, {card['state']}")
            expect(article).to_contain_text(f"{card['rating']:.1f} out of 5 stars")
            expect(article).to_contain_text(f"{card['review_count']} reviews")
            # The seed doctors are verified: each card says so.
            expect(article.get_by_text("Verified", exact=False)).to_be_visible()
        expect(answers.nth(1)).to_contain_text("MD, FACS")
        expect(answers.nth(1)).to_contain_text("Plastic Surgery")
        # A signed-out reader sees the counts and is invited to sign in to vote.
        expect(answers.nth(0)).to_contain_text("50 helpful")
        expect(answers.nth(0).get_by_role("link", name="Sign in")).to_be_visible()

        related = page.get_by_role("region", name="You might also like...")
        expect(related.get_by_role("link").first).to_be_visible()
        expect(page.get_by_text(SEED["disclaimer"])).to_be_visible()
        assert page.locator("script:not([src])").count() == 0, "no inline script"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "question-page.png"))


# (b) ---------------------------------------------------------------------------------------


def test_a_patient_asks_and_the_doctors_open_inbox_shows_it_live(
    stack: Stack, browser: Browser
) -> None:
    with (
        person(browser, stack, viewport={"width": 1100, "height": 800}) as doctor,
        person(browser, stack) as patient,
    ):
        inbox = doctor.new_page()
        inbox.goto("/signin")
        inbox.get_by_role("button", name="Sign in as Jason Emer").click()
        inbox.get_by_role("link", name="Inbox").click()
        expect(inbox.get_by_role("heading", name="Your inbox")).to_be_visible()
        expect(inbox.get_by_role("status")).to_contain_text("Live:")
        inbox.evaluate("() => { window.sameDocument = true; }")

        ask = patient.new_page()
        ask.goto("/signin?next=/ask")
        ask.get_by_role("button", name="Sign in as A patient in Los Angeles").click()
        expect(ask.get_by_role("heading", name="Ask a doctor")).to_be_visible()
        title = "Can Botox even out a lopsided cheek after years of asymmetry?"
        ask.get_by_label("Your question").fill(title)
        ask.get_by_label("Details").fill("One cheek sits higher than the other. What helps?")
        ask.get_by_label("Facial asymmetry").check()
        ask.get_by_label("Botox").check()
        ask.get_by_label("Your location: ZIP code or City, ST (optional)").fill("Los Angeles, CA")
        ask.get_by_role("button", name="Post your question").click()
        expect(ask.get_by_role("heading", level=1)).to_have_text(title)
        posted = time.monotonic()
        assert re.search(r"/questions/[A-Za-z0-9_-]+$", ask.url)

        alert = inbox.get_by_role("article").filter(has=inbox.get_by_role("link", name=title))
        expect(alert).to_be_visible(timeout=2_000)
        assert time.monotonic() - posted < 2.0 + 0.5  # the expect above is the 2 s bound
        expect(alert).to_contain_text("Why you got this:")
        # Rendered live by the relay as on the page: the specialty by name, rank in words.
        expect(alert).to_contain_text(re.compile(r"It matches your specialty, [A-Z]"))
        expect(alert).to_contain_text(
            re.compile(r"\d+(\.\d+)? km from you; you were the (\d+\w\w )?nearest doctor asked")
        )
        expect(alert.get_by_role("button", name="Mark read")).to_be_visible()
        assert inbox.evaluate("() => window.sameDocument === true"), "the inbox page was reloaded"
        inbox.screenshot(path=str(SCREENSHOTS / "live-inbox.png"))

        # Marking it read is a form POST back to the inbox.
        alert.get_by_role("button", name="Mark read").click()
        expect(alert).to_contain_text("Read")
        expect(alert.get_by_role("button", name="Mark read")).to_have_count(0)


def test_a_double_submitted_question_form_creates_one_question(
    stack: Stack, browser: Browser
) -> None:
    with person(browser, stack, "patient-double") as patient:
        page = patient.new_page()
        page.goto("/ask")
        form = {
            "csrf_token": page.locator("input[name=csrf_token]").first.get_attribute("value"),
            "idempotency_key": page.locator("input[name=idempotency_key]").get_attribute("value"),
            "title": "Does a second click post my question twice?",
            "body": "Testing a double submit.",
            "topics": "botox",
        }
        first = patient.request.post("/ask", form=form, max_redirects=0)
        second = patient.request.post("/ask", form=form, max_redirects=0)
        assert first.status == second.status == 303
        assert first.headers["location"] == second.headers["location"]


def test_ask_form_errors_appear_beside_their_fields_and_keep_what_was_typed(
    stack: Stack, browser: Browser
) -> None:
    with person(browser, stack, "patient-typo") as patient:
        page = patient.new_page()
        page.goto("/ask")
        page.get_by_label("Your question").fill("Too short")
        page.get_by_label("Details").fill("Everything I typed stays here.")
        page.get_by_label("Your location: ZIP code or City, ST (optional)").fill("Nowhere at all")
        page.get_by_role("button", name="Post your question").click()
        location = page.get_by_label("Your location: ZIP code or City, ST (optional)")
        expect(location).to_have_attribute("aria-invalid", "true")
        expect(location).to_have_accessible_description(re.compile("ZIP code"))
        expect(page.get_by_label("Details")).to_have_value("Everything I typed stays here.")
        page.get_by_label("Your location: ZIP code or City, ST (optional)").fill("90012")
        page.get_by_role("button", name="Post your question").click()
        title = page.get_by_label("Your question")
        expect(title).to_have_attribute("aria-invalid", "true")
        # In words a patient reads, not the validator's ("String should have at least...").
        expect(title).to_have_accessible_description("Write at least 10 characters.")
        expect(
            page.get_by_role("group", name="Topics (choose one or more)")
        ).to_have_accessible_description("Choose at least one.")
        expect(title).to_have_value("Too short")


# (c) ---------------------------------------------------------------------------------------


def test_the_doctor_answers_from_the_page_and_the_patient_hears_of_it(
    stack: Stack, browser: Browser
) -> None:
    title = "Which filler lasts longest for cheek asymmetry?"
    qid = _post_question(stack, "patient-c", title, ["fillers", "facial-asymmetry"])
    with (
        person(browser, stack, "dr-jason-emer", "doctor", "Jason Emer") as doctor,
        person(browser, stack, "patient-c") as patient,
    ):
        page = doctor.new_page()
        page.goto(f"/questions/{qid}")
        expect(page.get_by_role("heading", name="Doctor Answers 0")).to_be_visible()
        page.get_by_label("Headline (optional)").fill("Hyaluronic fillers first")
        page.get_by_label("Your answer").fill("Too short.")
        page.get_by_role("button", name="Post your answer").click()
        body = page.get_by_label("Your answer")
        expect(body).to_have_attribute("aria-invalid", "true")
        expect(body).to_have_accessible_description(re.compile("at least 20 characters"))
        expect(page.get_by_label("Headline (optional)")).to_have_value("Hyaluronic fillers first")
        page.get_by_label("Your answer").fill(
            "Start with a hyaluronic acid filler; it can be reversed."
        )
        page.get_by_role("button", name="Post your answer").click()
        answers = _answers(page, 1)
        expect(answers).to_have_count(1)
        expect(answers.first).to_contain_text("Jason Emer")
        expect(page.get_by_role("button", name="Post your answer")).to_have_count(0)

        mine = patient.new_page()
        mine.goto(f"/questions/{qid}")
        expect(_answers(mine, 1).first).to_contain_text("it can be reversed")
        mine.get_by_role("link", name="Inbox").click()
        alert = mine.get_by_role("article").filter(has=mine.get_by_role("link", name=title))
        expect(alert).to_contain_text("New answer")
        expect(alert).to_contain_text("Jason Emer")
        expect(alert).to_contain_text("answered your question")


# (d) ---------------------------------------------------------------------------------------


def test_a_reader_votes_helpful_the_count_and_ranking_move_and_retracting_works(
    stack: Stack, browser: Browser
) -> None:
    qid = _post_question(
        stack, "patient-d", "Is a thread lift worth it for jowls?", ["pdo-threads"]
    )
    _answer(stack, qid, "dr-jon-a-perlman", "Jon A. Perlman", "Threads last a year")
    _answer(stack, qid, "dr-victor-chung", "Victor Chung", "Consider a neck lift")
    with person(browser, stack, "reader-d") as reader:
        page = reader.new_page()
        page.goto(f"/questions/{qid}")
        answers = _answers(page, 2)
        last = answers.nth(1).get_by_role("heading", level=3).inner_text()
        target = page.get_by_role("article", name=last)
        expect(target).to_contain_text("0 helpful")

        target.get_by_role("button", name="Helpful", exact=True).click()
        expect(target).to_contain_text("1 helpful")
        expect(target.get_by_role("button", name="Helpful", exact=True)).to_have_attribute(
            "aria-pressed", "true"
        )
        expect(answers.first.get_by_role("heading", level=3)).to_have_text(last)

        target.get_by_role("button", name="Helpful", exact=True).click()
        expect(target).to_contain_text("0 helpful")
        expect(target.get_by_role("button", name="Helpful", exact=True)).to_have_attribute(
            "aria-pressed", "false"
        )
    tallies = [
        stack.api("GET", "votes", f"/answers/{a['id']}/votes")
        for a in stack.api("GET", "questions", f"/questions/{qid}")["answers"]
    ]
    assert all(t["helpful"] == 0 for t in tallies), "the retraction reached the votes service"


# (e) ---------------------------------------------------------------------------------------


def test_markup_in_a_question_renders_as_literal_text(stack: Stack, browser: Browser) -> None:
    title = "<script>alert('title')</script> is this safe?"
    body = "<img src=x onerror=\"alert('body')\"> and <b>bold</b>"
    with person(browser, stack, "patient-e") as patient:
        page = patient.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto("/ask")
        page.get_by_label("Your question").fill(title)
        page.get_by_label("Details").fill(body)
        page.get_by_label("Rosacea").check()
        page.get_by_role("button", name="Post your question").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(title)
        # (the asker's page has it in its edit form too: the paragraph is what readers see)
        expect(page.get_by_role("paragraph").filter(has_text=body)).to_have_text(body)
        assert page.get_by_role("main").get_by_role("img").count() == 0
        page.goto("/")
        expect(page.get_by_role("link", name=title)).to_be_visible()
        page.wait_for_timeout(200)
        assert dialogs == [], "a script ran"


# (f) ---------------------------------------------------------------------------------------


def test_a_form_post_without_the_csrf_token_is_refused(stack: Stack, browser: Browser) -> None:
    with person(browser, stack, "patient-f") as patient:
        page = patient.new_page()
        page.goto("/ask")
        token = page.locator("input[name=csrf_token]").first.get_attribute("value")
        assert token
        form = {"title": "A question sent by another site", "body": "Forged.", "topics": "botox"}
        for sent in (form, {**form, "csrf_token": "not-the-token"}):
            refused = patient.request.post("/ask", form=sent, max_redirects=0)
            assert refused.status == 403
            assert "This form was refused" in refused.text()
        assert patient.request.post("/signout", form={}, max_redirects=0).status == 403
        listing = stack.api("GET", "questions", "/questions?limit=100")["items"]
        assert not [q for q in listing if q["title"] == form["title"]]
        accepted = patient.request.post("/ask", form={**form, "csrf_token": token}, max_redirects=0)
        assert accepted.status == 303, "the same form with its token goes through"
    with person(browser, stack) as visitor:
        bad = visitor.request.post("/session", headers={"Authorization": "Bearer not-a-token"})
        assert bad.status == 401


# (g) ---------------------------------------------------------------------------------------


def _axe(page: Page) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    violations: list[dict[str, Any]] = page.evaluate("async () => (await axe.run()).violations")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]


def test_axe_finds_no_serious_violation_on_any_page_at_375px_and_desktop(
    stack: Stack, browser: Browser
) -> None:
    assert AXE.exists(), "axe-core is missing: run 'make install' (npm ci in tests/browser)"
    qid = stack.seed["qid"]
    other = _post_question(
        stack, "patient-g", "Will a brow lift fix one droopy eyebrow?", ["brow-lift"]
    )
    visits = [
        (None, "patient", ["/", f"/questions/{qid}", "/signin", "/?topic=botox"]),
        ("patient-g", "patient", ["/ask", f"/questions/{qid}", "/inbox"]),
        ("dr-jason-emer", "doctor", ["/inbox", "/settings", f"/questions/{other}"]),
    ]
    found: dict[str, Any] = {}
    for width, height in ((375, 800), (1280, 900)):
        for sub, role, paths in visits:
            with person(
                browser,
                stack,
                sub,
                role,
                viewport={"width": width, "height": height},
                bypass_csp=True,
            ) as context:
                page = context.new_page()
                for path in paths:
                    page.goto(path)
                    violations = _axe(page)
                    if violations:
                        found[f"{width}px {sub} {path}"] = violations
                    overflow = page.evaluate(
                        "() => document.documentElement.scrollWidth - window.innerWidth"
                    )
                    assert overflow <= 0, f"{path} scrolls sideways at {width}px"
                if sub == "patient-g":
                    page.goto("/ask")
                    page.get_by_role("button", name="Post your question").click()
                    expect(page.get_by_role("alert")).to_be_visible()
                    if violations := _axe(page):
                        found[f"{width}px /ask with errors"] = violations
    assert not found, found


def test_the_pages_are_usable_by_keyboard(stack: Stack, browser: Browser) -> None:
    with person(browser, stack, "reader-k") as reader:
        page = reader.new_page()
        page.goto(f"/questions/{stack.seed['qid']}")
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        page.keyboard.press("Enter")
        first = _answers(page, 6).first.get_by_role("button", name="Helpful", exact=True)
        for _ in range(40):
            page.keyboard.press("Tab")
            if first.evaluate("el => el === document.activeElement"):
                break
        expect(first).to_be_focused()
        page.keyboard.press("Enter")
        expect(_answers(page, 6).first).to_contain_text("51 helpful")
        page.goto(f"/questions/{stack.seed['qid']}")
        _answers(page, 6).first.get_by_role("button", name="Helpful", exact=True).click()
        expect(_answers(page, 6).first).to_contain_text("50 helpful")


def test_a_doctor_edits_their_alert_settings_and_keeps_their_rating(
    stack: Stack, browser: Browser
) -> None:
    with person(browser, stack, "dr-melvin-elson", "doctor", "Melvin Elson") as doctor:
        page = doctor.new_page()
        page.goto("/")
        page.get_by_role("link", name="Settings").click()
        expect(page.get_by_label("Name")).to_have_value("Melvin Elson")
        expect(page.get_by_label("Practice location: ZIP code or City, ST")).to_have_value(
            "Nashville, TN"
        )
        page.get_by_label("Alert radius (km)").fill("80")
        page.get_by_label("Quiet hours start (HH:MM)").fill("22:00")
        page.get_by_label("Quiet hours end (HH:MM)").fill("07:00")
        page.get_by_label("Time zone (e.g. America/Los_Angeles)").fill("America/Chicago")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_have_text("Your settings are saved.")
        expect(page.get_by_label("Alert radius (km)")).to_have_value("80")
        expect(page.get_by_label("Time zone (e.g. America/Los_Angeles)")).to_have_value(
            "America/Chicago"
        )
    card = stack.api("GET", "notify", "/doctors/dr-melvin-elson")
    assert card["radius_km"] == 80
    assert (card["rating"], card["review_count"]) == (5.0, 7), "a doctor's save keeps the rating"


def test_the_live_stream_needs_a_session_and_resumes_after_last_event_id(stack: Stack) -> None:
    asker = auth(stack.seed["asker"], "patient")
    items = stack.api("GET", "notify", "/inbox?limit=100", headers=asker)["items"]
    assert len(items) >= 6
    oldest, newer = items[-1]["id"], [i["id"] for i in reversed(items[:-1])]
    with httpx.Client(base_url=stack.web, timeout=10) as client:
        assert client.get("/inbox/stream").status_code == 401
        assert client.post("/session", headers=asker).status_code == 200
        replayed: list[str] = []
        with client.stream("GET", "/inbox/stream", headers={"Last-Event-ID": oldest}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("id: "):
                    replayed.append(line.removeprefix("id: "))
                if line.startswith("data: <li") and replayed:
                    assert f'id="n-{replayed[-1]}"' in line, "each item arrives rendered"
                if len(replayed) == len(newer):
                    break
    assert replayed == newer, "everything after Last-Event-ID, oldest first"


def _answers_listing_calls(stack: Stack) -> float:
    """How many GET /questions/{id}/answers the answers service has served (its metrics)."""
    metrics = httpx.get(stack.urls["answers"] + "/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("askdoc_http_requests_total")
        and 'method="GET"' in line
        and "/questions/{question_id}/answers" in line
    )


def test_the_home_page_lists_questions_with_answer_counts_and_filters_by_topic(
    stack: Stack, browser: Browser
) -> None:
    urgent = _post_question(
        stack, "patient-h", "Sudden facial droop and slurred speech this morning", ["bells-palsy"]
    )
    # One of two answers hidden by a moderator: the home page counts as the page does.
    moderated_title = "Does a jawline filler look uneven from the side?"
    moderated = _post_question(stack, "patient-h", moderated_title, ["fillers"])
    _answer(stack, moderated, "dr-jon-a-perlman", "Jon A. Perlman", "Kept")
    hidden = _answer(stack, moderated, "dr-shelby-bentz", "Shelby Bentz", "Hidden")
    stack.api(
        "PUT",
        "questions",
        f"/moderation/questions/{moderated}/answers/{hidden}",
        headers=auth("admin-h", "admin"),
        json={"decision": "hidden"},
    )
    until(
        lambda: stack.api("GET", "questions", f"/questions/{moderated}")["answer_count"] == 1,
        what="the hidden answer off its page",
    )
    with person(browser, stack) as visitor:
        page = visitor.new_page()
        calls = _answers_listing_calls(stack)
        page.goto("/")
        # The listing carries the counts: no call per question to the answers service.
        assert _answers_listing_calls(stack) == calls
        seed = page.get_by_role("listitem").filter(
            has=page.get_by_role("link", name=SEED["question"]["title"])
        )
        expect(seed).to_contain_text("6 doctor answers")
        listed = page.get_by_role("listitem").filter(
            has=page.get_by_role("link", name=moderated_title)
        )
        expect(listed).to_contain_text("1 doctor answer")
        expect(listed).not_to_contain_text("2 doctor answers")
        page.get_by_label("Topic").select_option(label="Dermal fillers")
        page.get_by_role("button", name="Filter").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Questions about Dermal fillers")
        expect(page.get_by_role("link", name=SEED["question"]["title"])).to_be_visible()
        expect(page.get_by_role("link", name="Is a thread lift worth it for jowls?")).to_have_count(
            0
        )

        page.goto(f"/questions/{urgent}")
        expect(page.get_by_role("alert")).to_contain_text("This may be an emergency")
        expect(page.get_by_role("alert")).to_contain_text("call 911")


def test_a_stopping_web_ends_its_open_live_streams_at_once(stack: Stack) -> None:
    # A second web replica of its own, so the module's one keeps serving.
    replica = ServiceProcess("web", "redis://127.0.0.1:1/0", **launcher.peer_env("web", stack.urls))
    replica.start(wait_ready=False)
    try:
        replica.wait_ready(60)
        with httpx.Client(base_url=replica.url, timeout=10) as client:
            assert (
                client.post("/session", headers=auth("dr-victor-chung", "doctor")).status_code
                == 200
            )
            with client.stream("GET", "/inbox/stream") as stream:
                lines = stream.iter_lines()
                assert next(lines).startswith("retry:")
                started = time.monotonic()
                replica.proc.terminate()  # SIGTERM, by pid
                for _ in lines:  # the stream ends instead of holding the replica
                    pass
                # uvicorn re-raises the SIGTERM after its graceful stop: -15 is a clean exit.
                assert replica.proc.wait(10) in (0, -signal.SIGTERM)
                assert "service_stopped" in replica.logs()
                assert time.monotonic() - started < 5, "the open stream held the stop"
    finally:
        replica.terminate(10)


# (follow, pick, edits) -------------------------------------------------------------------


def test_a_reader_follows_without_javascript_and_hears_of_the_next_answer(
    stack: Stack, browser: Browser
) -> None:
    title = "Does a masseter Botox dose change the jawline for good?"
    qid = _post_question(stack, "patient-f", title, ["botox"])
    with person(browser, stack, "reader-f", java_script_enabled=False) as reader:
        page = reader.new_page()
        page.goto(f"/questions/{qid}")
        expect(page.get_by_text("1 following")).to_be_visible()  # the asker
        page.get_by_role("button", name="Follow", exact=True).click()
        expect(page.get_by_text("2 following")).to_be_visible()
        expect(page.get_by_text("You follow this question")).to_be_visible()
        expect(page.get_by_role("button", name="Unfollow")).to_be_visible()

        _answer(stack, qid, "dr-jason-emer", "Jason Emer", "The jawline slims for months")
        page.get_by_role("link", name="Inbox").click()
        alert = page.get_by_role("article").filter(has=page.get_by_role("link", name=title))

        def arrived() -> bool:
            page.reload()
            return alert.count() == 1

        until(arrived, timeout=30, what="the follower's new-answer alert")
        expect(alert).to_contain_text("answered a question you follow")

        page.goto(f"/questions/{qid}")
        page.get_by_role("button", name="Unfollow").click()
        expect(page.get_by_text("1 following")).to_be_visible()
        expect(page.get_by_role("button", name="Follow", exact=True)).to_be_visible()
        # Another site's form (no CSRF token) cannot make the reader follow.
        forged = reader.request.post(
            f"/questions/{qid}/follow", form={"follow": "1"}, max_redirects=0
        )
        assert forged.status == 403
        assert stack.api("GET", "questions", f"/questions/{qid}")["follower_count"] == 1
    with person(browser, stack) as anonymous:
        page = anonymous.new_page()
        page.goto(f"/questions/{qid}")
        expect(page.get_by_text("1 following")).to_be_visible()
        expect(page.get_by_role("button", name="Follow", exact=True)).to_have_count(0)
        expect(page.get_by_role("link", name="Sign in").last).to_be_visible()


def test_the_askers_pick_comes_first_with_a_mark_and_edits_say_so(
    stack: Stack, browser: Browser
) -> None:
    qid = _post_question(
        stack, "patient-p", "Can fillers lift a flat cheek on one side?", ["fillers"]
    )
    edited = httpx.patch(
        f"{stack.urls['questions']}/questions/{qid}",
        json={"body": "My left cheek is flatter since an accident."},
        headers=auth("patient-p"),
        timeout=10,
    )
    assert edited.status_code == 200, edited.text
    first = _answer(stack, qid, "dr-jon-a-perlman", "Jon A. Perlman", "Fillers then fat")
    second = _answer(stack, qid, "dr-victor-chung", "Victor Chung", "Sculptra builds volume")
    stack.api("PUT", "votes", f"/answers/{first}/vote", headers=auth("voter-p"), json={"value": 1})
    until(
        lambda: stack.api("GET", "questions", f"/questions/{qid}")["answers"][0]["id"] == first,
        what="the voted answer ranked first",
    )
    stack.api(
        "PUT",
        "questions",
        f"/questions/{qid}/accepted-answer",
        headers=auth("patient-p"),
        json={"answer_id": second},
    )
    changed = httpx.patch(
        f"{stack.urls['answers']}/answers/{second}",
        json={
            "headline": "Sculptra builds volume",
            "body": "Sculptra builds volume slowly over three sessions.",
        },
        headers=auth("dr-victor-chung", "doctor"),
        timeout=10,
    )
    assert changed.status_code == 200, changed.text
    until(
        lambda: stack.api("GET", "questions", f"/questions/{qid}")["answers"][0].get("edited_at"),
        what="the edit on the page",
    )
    with person(browser, stack, "reader-p", bypass_csp=True) as reader:
        page = reader.new_page()
        page.goto(f"/questions/{qid}")
        answers = _answers(page, 2)
        # The pick is first, apart from the votes that rank the first answer higher.
        expect(answers.first).to_contain_text("The asker's pick: most helpful to them")
        expect(answers.first.get_by_role("heading", level=3)).to_have_text("Sculptra builds volume")
        expect(answers.first).to_contain_text("Edited")
        expect(answers.nth(1)).not_to_contain_text("The asker's pick")
        expect(answers.nth(1)).not_to_contain_text("Edited")
        question = page.get_by_role("article", name="Can fillers lift a flat cheek on one side?")
        expect(question.get_by_text("edited", exact=False).first).to_be_visible()
        page.get_by_role("button", name="Follow", exact=True).click()
        expect(page.get_by_text("2 following")).to_be_visible()
        for width in (375, 1280):
            page.set_viewport_size({"width": width, "height": 900})
            assert not _axe(page), _axe(page)


# (moderation) ------------------------------------------------------------------------------


def _flag(stack: Stack, path: str, reader: str, reason: str, note: str | None = None) -> None:
    body = {"reason": reason, **({"note": note} if note else {})}
    stack.api("PUT", "questions", f"{path}/flag", headers=auth(reader), json=body)


def _queued(stack: Stack, item_id: str, flags: int) -> None:
    """Wait until the moderation queue (a projection of item-flagged) counts the flags."""

    def counted() -> bool:
        queue = stack.api("GET", "questions", "/moderation/queue", headers=auth("admin", "admin"))
        return any(i["item_id"] == item_id and i["flag_count"] == flags for i in queue["items"])

    until(counted, timeout=20, what=f"{flags} flag(s) on {item_id} in the queue")


def test_an_admin_hides_and_restores_a_flagged_answer_from_the_moderation_page(
    stack: Stack, browser: Browser
) -> None:
    title = "Is a thread lift safe for a drooping cheek?"
    qid = _post_question(stack, "patient-m", title, ["facial-asymmetry"])
    aid = _answer(stack, qid, "dr-jason-emer", "Jason Emer", "Threads are a short-term fix")
    for reader, note in (("reader-m1", "dangerous dose"), ("reader-m2", None)):
        _flag(stack, f"/questions/{qid}/answers/{aid}", reader, "unsafe-medical-advice", note)
    _flag(stack, f"/questions/{qid}", "reader-m1", "spam")
    _queued(stack, aid, 2)
    _queued(stack, qid, 1)

    with person(browser, stack, "patient-m") as patient:
        refused = patient.new_page()
        response = refused.goto("/moderation")
        assert response is not None and response.status == 403
    with person(browser, stack) as anonymous:
        page = anonymous.new_page()
        page.goto("/moderation")
        expect(page).to_have_url(re.compile(r"/signin"))

    # Readable and usable without JavaScript: plain links and forms.
    with person(
        browser, stack, "admin-m", "admin", "Ada Admin", java_script_enabled=False
    ) as admin:
        page = admin.new_page()
        page.goto("/")
        page.get_by_role("link", name="Moderation").click()
        heading = f"Answer: {title}"
        flagged = page.get_by_role("article", name=heading)
        expect(flagged).to_contain_text("2 flags")
        expect(flagged.get_by_role("list", name="Flags per reason")).to_have_text(
            "Unsafe medical advice: 2"
        )
        flagged.get_by_text("Reporters' notes (1)").click()
        expect(flagged).to_contain_text("dangerous dose")
        expect(flagged).not_to_contain_text("reader-m1")
        # The most flagged comes first: the answer (2) before its question (1).
        items = page.get_by_role("article")
        expect(items.first).to_have_accessible_name(heading)
        expect(page.get_by_role("article", name=f"Question: {title}")).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "moderation.png"), full_page=True)

        flagged.get_by_label("Reason told to the author").select_option(label="Harassment")
        flagged.get_by_role("button", name="Hide").click()
        expect(page.get_by_role("status")).to_contain_text("Hidden")
        expect(page.get_by_role("article", name=heading)).to_have_count(0)

        public = admin.new_page()
        public.goto(f"/questions/{qid}")
        expect(public.get_by_role("heading", name="Doctor Answers 0")).to_be_visible()

        page.get_by_role("link", name="Hidden").click()
        hidden = page.get_by_role("article", name=heading)
        expect(hidden).to_contain_text("Harassment")
        hidden.get_by_role("button", name="Restore").click()
        expect(page.get_by_role("status")).to_contain_text("Restored")
        public.reload()
        expect(public.get_by_role("heading", name="Doctor Answers 1")).to_be_visible()

    with person(browser, stack, "dr-jason-emer", "doctor", "Jason Emer") as doctor:
        inbox = doctor.new_page()
        inbox.goto("/inbox")
        told = inbox.get_by_role("article").filter(has_text="Hidden by a moderator")
        expect(told.first).to_contain_text("harassment")
        expect(told.first).not_to_contain_text("reader-m")


def test_an_open_live_inbox_drops_an_alert_a_moderator_hides_and_gets_it_back_on_restore(
    stack: Stack, browser: Browser
) -> None:
    title = "Does a chemical peel help with melasma on the cheeks?"
    qid = _post_question(stack, "patient-w", title, ["acne"])
    stack.api("PUT", "questions", f"/questions/{qid}/follow", headers=auth("reader-w"))
    with person(browser, stack, "reader-w") as reader:
        inbox = reader.new_page()
        inbox.goto("/inbox")
        expect(inbox.get_by_role("status")).to_contain_text("Live:")
        expect(inbox.get_by_text("0 unread.")).to_be_visible()
        inbox.evaluate("() => { window.sameDocument = true; }")

        aid = _answer(stack, qid, "dr-jason-emer", "Jason Emer", "Peels help some melasma")
        alert = inbox.get_by_role("article").filter(has=inbox.get_by_role("link", name=title))
        expect(alert).to_be_visible()
        expect(alert).to_contain_text("answered a question you follow")
        expect(inbox.get_by_text("1 unread.")).to_be_visible()

        # The answer is hidden: the open page drops the alert about it, without a reload.
        stack.api(
            "PUT",
            "questions",
            f"/moderation/questions/{qid}/answers/{aid}",
            headers=auth("admin-w", "admin"),
            json={"decision": "hidden", "reason": "unsafe-medical-advice"},
        )
        expect(alert).to_have_count(0)
        expect(inbox.get_by_role("status")).to_contain_text("a moderator hid what it was about")
        expect(inbox.get_by_text("0 unread.")).to_be_visible()
        assert inbox.evaluate("() => window.sameDocument === true"), "the inbox page was reloaded"

        # Restored: the alert comes back to the open page, unread as it was, no reload.
        stack.api(
            "PUT",
            "questions",
            f"/moderation/questions/{qid}/answers/{aid}",
            headers=auth("admin-w", "admin"),
            json={"decision": "restored"},
        )
        expect(alert).to_be_visible()
        expect(alert).to_contain_text("answered a question you follow")
        expect(inbox.get_by_role("status")).to_contain_text("a moderator restored what it was")
        expect(inbox.get_by_text("1 unread.")).to_be_visible()
        assert inbox.evaluate("() => window.sameDocument === true"), "the inbox page was reloaded"
        inbox.reload()
        expect(inbox.get_by_role("heading", name="Your inbox")).to_be_visible()
        expect(alert).to_have_count(1)


def test_a_reader_reports_an_answer_from_the_page_once_and_never_their_own(
    stack: Stack, browser: Browser
) -> None:
    title = "Does microneedling help deep acne scars?"
    qid = _post_question(stack, "patient-r", title, ["acne"])
    aid = _answer(stack, qid, "dr-jason-emer", "Jason Emer", "Microneedling helps some scars")
    with person(browser, stack, "reader-r", java_script_enabled=False) as reader:
        page = reader.new_page()
        page.goto(f"/questions/{qid}")
        answer = page.get_by_role("article", name="Microneedling helps some scars")
        answer.get_by_text("Report this answer").click()
        answer.get_by_label("Why should a moderator look at it?").select_option(
            label="Unsafe medical advice"
        )
        answer.get_by_label("Note for the moderators (optional)").fill("no mention of risks")
        answer.get_by_role("button", name="Send report").click()
        expect(page.get_by_role("status")).to_have_text(
            "Thank you: a moderator will look at this answer."
        )
        # Reporting again is no second flag.
        again = page.get_by_role("article", name="Microneedling helps some scars")
        again.get_by_text("Report this answer").click()
        again.get_by_role("button", name="Send report").click()
        expect(page.get_by_role("status")).to_be_visible()
    _queued(stack, aid, 1)
    queue = stack.api("GET", "questions", "/moderation/queue", headers=auth("admin", "admin"))
    [item] = [i for i in queue["items"] if i["item_id"] == aid]
    assert item["counts"]["unsafe-medical-advice"] == 1
    assert item["notes"] == ["no mention of risks"]

    # The asker has no report form on their own question; the doctor none on their answer.
    with person(browser, stack, "patient-r") as asker:
        page = asker.new_page()
        page.goto(f"/questions/{qid}")
        expect(page.get_by_text("Report this question")).to_have_count(0)
        expect(page.get_by_text("Report this answer")).to_have_count(1)
    with person(browser, stack, "dr-jason-emer", "doctor", "Jason Emer") as doctor:
        page = doctor.new_page()
        page.goto(f"/questions/{qid}")
        expect(page.get_by_text("Report this answer")).to_have_count(0)
        expect(page.get_by_text("Report this question")).to_have_count(1)


def test_the_moderation_page_has_no_serious_axe_violation(stack: Stack, browser: Browser) -> None:
    assert AXE.exists(), "axe-core is missing: run 'make browser' (npm ci in tests/browser)"
    qid = _post_question(
        stack, "patient-ax", "Can botox fix a crooked smile after a stroke?", ["botox"]
    )
    _flag(stack, f"/questions/{qid}", "reader-ax", "other", "please check")
    _queued(stack, qid, 1)
    found: dict[str, Any] = {}
    for width, height in ((375, 800), (1280, 900)):
        with person(
            browser,
            stack,
            "admin-ax",
            "admin",
            "Ada Admin",
            viewport={"width": width, "height": height},
            bypass_csp=True,
        ) as admin:
            page = admin.new_page()
            for path in ("/moderation", "/moderation?status=hidden"):
                page.goto(path)
                if violations := _axe(page):
                    found[f"{width}px {path}"] = violations
                overflow = page.evaluate(
                    "() => document.documentElement.scrollWidth - window.innerWidth"
                )
                assert overflow <= 0, f"{path} scrolls sideways at {width}px"
    assert not found, found


def test_an_admin_dismisses_harmless_flags_from_the_moderation_page(
    stack: Stack, browser: Browser
) -> None:
    title = "Is it normal to bruise after cheek filler?"
    qid = _post_question(stack, "patient-dm", title, ["fillers"])
    _flag(stack, f"/questions/{qid}", "reader-dm", "other", "looks fine to me")
    _queued(stack, qid, 1)
    heading = f"Question: {title}"
    with person(
        browser, stack, "admin-dm", "admin", "Ada Admin", java_script_enabled=False
    ) as admin:
        page = admin.new_page()
        page.goto("/moderation")
        flagged = page.get_by_role("article", name=heading)
        expect(flagged.get_by_role("button", name="Hide")).to_be_visible()
        flagged.get_by_role("button", name="Dismiss").click()
        expect(page.get_by_role("status")).to_contain_text("Dismissed")
        expect(page.get_by_role("status")).to_contain_text("not told")
        expect(page.get_by_role("article", name=heading)).to_have_count(0)
        page.get_by_role("link", name="Hidden").click()
        expect(page.get_by_role("article", name=heading)).to_have_count(0)
        # Still there for readers.
        public = admin.new_page()
        public.goto(f"/questions/{qid}")
        expect(public.get_by_role("heading", name=title)).to_be_visible()

    # A later flag brings it back, saying what was dismissed before.
    _flag(stack, f"/questions/{qid}", "reader-dm2", "spam")
    _queued(stack, qid, 2)
    with person(browser, stack, "admin-dm", "admin", "Ada Admin") as admin:
        page = admin.new_page()
        page.goto("/moderation")
        back = page.get_by_role("article", name=heading)
        expect(back).to_contain_text("2 flags")
        expect(back).to_contain_text("1 dismissed before")


def _inbox_titles(stack: Stack, user: str) -> list[str]:
    inbox = stack.api("GET", "notify", "/inbox", headers=auth(user))
    return [str(item.get("title")) for item in inbox["items"]]


def test_an_alert_a_restore_brings_back_goes_to_its_own_page_of_the_open_inbox(
    stack: Stack, browser: Browser
) -> None:
    titles = [
        "Can a lopsided jaw be evened out with filler?",
        "Is a droopy eyelid on one side a sign of something?",
        "Why is one eyebrow higher than the other?",
        "Does Botox on one side even out a smile?",
    ]
    qids = [_post_question(stack, "patient-o", title, ["fillers"]) for title in titles]
    for qid in qids:
        stack.api("PUT", "questions", f"/questions/{qid}/follow", headers=auth("reader-o"))
    # Four alerts, oldest first; the second is about an answer a moderator hides.
    oldest = _answer(stack, qids[0], "dr-jon-a-perlman", "Jon A. Perlman", "For the inbox")
    until(lambda: titles[0] in _inbox_titles(stack, "reader-o"), what="the first alert")
    hidden = _answer(stack, qids[1], "dr-shelby-bentz", "Shelby Bentz", "Eyelids need an exam")
    until(lambda: titles[1] in _inbox_titles(stack, "reader-o"), what="the second alert")
    moderation = f"/moderation/questions/{qids[1]}/answers/{hidden}"
    admin = auth("admin-o", "admin")
    stack.api("PUT", "questions", moderation, headers=admin, json={"decision": "hidden"})
    until(lambda: titles[1] not in _inbox_titles(stack, "reader-o"), what="the alert withdrawn")
    for qid, doctor, name in (
        (qids[2], "dr-melvin-elson", "Melvin Elson"),
        (qids[3], "dr-steven-f-weiner", "Steven F. Weiner"),
    ):
        _answer(stack, qid, doctor, name, "An answer for the inbox pages")
    until(lambda: len(_inbox_titles(stack, "reader-o")) == 3, what="the two newer alerts")

    # A web whose inbox pages hold two alerts: the restored one is older than both on
    # page one, and newer than the one on page two.
    replica = ServiceProcess(
        "web",
        "redis://127.0.0.1:1/0",
        **launcher.peer_env("web", stack.urls),
        ASKDOC_WEB_INBOX_PAGE_SIZE="2",
    )
    replica.start(wait_ready=False)
    try:
        replica.wait_ready(60)
        context = browser.new_context(base_url=replica.url)
        context.set_default_timeout(10_000)
        assert context.request.post("/session", headers=auth("reader-o")).status == 200
        inbox = context.new_page()
        inbox.goto("/inbox")
        expect(inbox.get_by_role("status")).to_contain_text("Live:")
        expect(inbox.get_by_text("3 unread.")).to_be_visible()
        alerts = inbox.get_by_role("list").filter(has=inbox.get_by_role("article")).first
        expect(alerts.get_by_role("article")).to_have_count(2)
        restored = inbox.get_by_role("article").filter(
            has=inbox.get_by_role("link", name=titles[1])
        )

        stack.api("PUT", "questions", moderation, headers=admin, json={"decision": "restored"})
        # Counted as unread, but listed where the inbox's order puts it: on the next page.
        expect(inbox.get_by_text("4 unread.")).to_be_visible()
        expect(restored).to_have_count(0)
        expect(alerts.get_by_role("article")).to_have_count(2)
        expect(inbox.get_by_role("status")).to_contain_text("It is under Older alerts")

        # An unread alert on a later page is hidden: it leaves the count too.
        oldest_path = f"/moderation/questions/{qids[0]}/answers/{oldest}"
        stack.api("PUT", "questions", oldest_path, headers=admin, json={"decision": "hidden"})
        expect(inbox.get_by_text("3 unread.")).to_be_visible()
        expect(alerts.get_by_role("article")).to_have_count(2)
        inbox.get_by_role("link", name="Older alerts").click()
        expect(restored).to_be_visible()
        expect(inbox.get_by_role("link", name=titles[0])).to_have_count(0)
        context.close()
    finally:
        replica.terminate(10)


def test_an_alert_that_arrives_after_its_withdrawal_stays_off_the_open_inbox(
    stack: Stack, browser: Browser
) -> None:
    # The order a live stream could send them in when a hiding crossed the alert: the
    # withdrawal first, then the alert. The stream is played to the page's own inbox.js.
    late, other = "n" + "a" * 24, "n" + "b" * 24

    def item(nid: str, title: str) -> str:
        return (
            f'<li id="n-{nid}" class="alert unread"><article aria-labelledby="t-{nid}">'
            f'<h2 id="t-{nid}">New answer: <a href="/">{title}</a></h2></article></li>'
        )

    played = (
        "retry: 600000\n\n"
        f'event: withdrawn\ndata: {{"ids": ["{late}"]}}\n\n'
        f"id: {late}\nevent: notification\ndata: {item(late, 'About a hidden answer')}\n\n"
        f"id: {other}\nevent: notification\ndata: {item(other, 'About a shown answer')}\n\n"
    )
    with person(browser, stack, "reader-x") as reader:
        inbox = reader.new_page()
        inbox.route(
            "**/inbox/stream*",
            lambda route: route.fulfill(
                status=200, body=played, headers={"Content-Type": "text/event-stream"}
            ),
        )
        inbox.goto("/inbox")
        expect(inbox.get_by_role("link", name="About a shown answer")).to_be_visible()
        expect(inbox.get_by_role("link", name="About a hidden answer")).to_have_count(0)
        expect(inbox.get_by_text("1 unread.")).to_be_visible()


def test_the_asker_edits_until_answered_and_picks_and_the_doctor_edits_from_the_page(
    stack: Stack, browser: Browser
) -> None:
    title = "Can one cheek be lifted without surgery?"
    qid = _post_question(stack, "patient-e", title, ["fillers"])
    with person(
        browser, stack, "patient-e", viewport={"width": 375, "height": 800}, bypass_csp=True
    ) as asker:
        page = asker.new_page()
        page.goto(f"/questions/{qid}")
        page.get_by_text("Edit your question").click()
        page.get_by_label("Your question").fill("Cheek?")
        page.get_by_label("Details").fill("My right cheek sits lower since a fall last year.")
        page.get_by_role("button", name="Save your question").click()
        # Refused (too short): the error is beside the field and what was typed stays.
        expect(page.get_by_label("Your question")).to_have_attribute("aria-invalid", "true")
        expect(page.get_by_label("Details")).to_have_value(
            "My right cheek sits lower since a fall last year."
        )
        new_title = "Can one lower cheek be lifted without surgery?"
        page.get_by_label("Your question").fill(new_title)
        page.get_by_role("button", name="Save your question").click()
        expect(page.get_by_role("status")).to_have_text("Your question is saved.")
        expect(page.get_by_role("heading", level=1)).to_have_text(new_title)
        question = page.get_by_role("article", name=new_title)
        expect(question.get_by_role("paragraph").filter(has_text="since a fall")).to_be_visible()
        expect(page.get_by_text("Report this question")).to_have_count(0)

        first = _answer(stack, qid, "dr-jon-a-perlman", "Jon A. Perlman", "Fillers first")
        _answer(stack, qid, "dr-victor-chung", "Victor Chung", "Threads can lift it")
        stack.api(
            "PUT", "votes", f"/answers/{first}/vote", headers=auth("voter-e"), json={"value": 1}
        )
        until(
            lambda: stack.api("GET", "questions", f"/questions/{qid}")["answers"][0]["id"] == first,
            what="the voted answer ranked first",
        )
        page.reload()
        expect(page.get_by_text("it can no longer be edited")).to_be_visible()
        expect(page.get_by_text("Edit your question")).to_have_count(0)
        answers = _answers(page, 2)
        expect(answers.nth(1).get_by_role("heading", level=3)).to_have_text("Threads can lift it")
        answers.nth(1).get_by_role("button", name="Pick as most helpful to me").click()
        expect(answers.first).to_contain_text("The asker's pick: most helpful to them")
        expect(answers.first.get_by_role("heading", level=3)).to_have_text("Threads can lift it")
        expect(
            answers.first.get_by_role("button", name="Pick as most helpful to me")
        ).to_have_count(0)
        expect(
            answers.nth(1).get_by_role("button", name="Pick as most helpful to me")
        ).to_be_visible()
        for width in (375, 1280):
            page.set_viewport_size({"width": width, "height": 900})
            assert not _axe(page), _axe(page)

    with person(browser, stack, "reader-e") as reader:
        page = reader.new_page()
        page.goto(f"/questions/{qid}")
        expect(_answers(page, 2).first).to_be_visible()
        expect(page.get_by_role("button", name="Pick as most helpful to me")).to_have_count(0)
        expect(page.get_by_text("Edit your")).to_have_count(0)

    with person(
        browser, stack, "dr-jon-a-perlman", "doctor", "Jon A. Perlman", bypass_csp=True
    ) as doctor:
        page = doctor.new_page()
        page.goto(f"/questions/{qid}")
        mine = page.get_by_role("article", name="Fillers first")
        expect(page.get_by_text("Edit your answer")).to_have_count(1)
        mine.get_by_text("Edit your answer").click()
        mine.get_by_label("Headline (optional)").fill("Fillers, then see")
        mine.get_by_label("Your answer").fill("")
        mine.get_by_role("button", name="Save your answer").click()
        mine = page.get_by_role("article", name="Fillers first")
        expect(mine.get_by_label("Your answer")).to_have_attribute("aria-invalid", "true")
        expect(mine.get_by_label("Headline (optional)")).to_have_value("Fillers, then see")
        mine.get_by_label("Your answer").fill("Fillers first; if the cheek drops further, threads.")
        mine.get_by_role("button", name="Save your answer").click()
        expect(page.get_by_role("status")).to_have_text("Your answer is saved.")
        edited = page.get_by_role("article", name="Fillers, then see")
        expect(edited).to_contain_text("if the cheek drops further, threads.")
        expect(edited).to_contain_text("Edited")
        assert not _axe(page), _axe(page)


def test_a_form_sent_after_the_session_ended_comes_back_to_its_page_after_signing_in(
    stack: Stack, browser: Browser
) -> None:
    qid = stack.seed["qid"]
    with person(browser, stack) as reader:
        short = token("reader-1", "patient", "A reader", ttl_s=2)
        reply = reader.request.post("/session", headers={"Authorization": f"Bearer {short}"})
        assert reply.status == 200, reply.text()
        page = reader.new_page()
        page.goto(f"/questions/{qid}")
        follow = page.get_by_role("button", name=re.compile(r"^(Follow|Unfollow)$"))
        expect(follow).to_be_visible()
        time.sleep(3)  # the session's token expires while the page is open
        follow.click()
        expect(page).to_have_url(re.compile(r"/signin\?"))
        expect(page.get_by_role("status")).to_have_text(
            "Your session has ended. Sign in again to carry on where you were."
        )
        page.get_by_role("button", name="Sign in as A reader").click()
        # Back on the question, not on the form's POST-only address.
        expect(page).to_have_url(re.compile(rf"/questions/{qid}$"))
        expect(page.get_by_role("heading", level=1)).to_have_text(SEED["question"]["title"])


def test_a_doctor_is_not_offered_the_question_form(stack: Stack, browser: Browser) -> None:
    with person(browser, stack, "dr-melvin-elson", "doctor", "Melvin Elson") as doctor:
        page = doctor.new_page()
        page.goto("/")
        nav = page.get_by_role("navigation", name="Main")
        expect(nav.get_by_role("link", name="Inbox")).to_be_visible()
        expect(nav.get_by_role("link", name="Ask a doctor")).to_have_count(0)


def test_a_doctor_who_cannot_answer_yet_is_told_why_instead_of_a_form(
    stack: Stack, browser: Browser
) -> None:
    qid = stack.seed["qid"]
    with person(browser, stack, "dr-new-n", "doctor", "Nora New") as doctor:
        page = doctor.new_page()
        page.goto(f"/questions/{qid}")
        section = page.get_by_role("region", name="Answer this question")
        expect(section).to_contain_text("first fill in your card")
        expect(section.get_by_role("link", name="Settings")).to_be_visible()
        expect(page.get_by_role("button", name="Post your answer")).to_have_count(0)

        # Her own card, not yet verified: no form to write an answer the service refuses.
        profile = {
            "name": "Nora New",
            "credentials": "MD",
            "specialties": ["dermatology"],
            "location": {"city": "Los Angeles", "state": "CA"},
            "radius_km": 50,
            "npi": made_up_npi("dr-new-n"),
        }
        stack.api(
            "PUT", "notify", "/doctors/dr-new-n", headers=auth("dr-new-n", "doctor"), json=profile
        )
        page.reload()
        expect(section).to_contain_text("once an admin has verified your profile")
        expect(page.get_by_role("button", name="Post your answer")).to_have_count(0)

        stack.api(
            "PUT",
            "notify",
            "/doctors/dr-new-n/status",
            headers=auth("admin-n", "admin"),
            json={"status": "verified"},
        )
        page.reload()
        expect(page.get_by_role("button", name="Post your answer")).to_be_visible()


def test_an_admin_verifies_a_waiting_doctor_and_suspends_one_found_by_id(
    stack: Stack, browser: Browser
) -> None:
    profile = {
        "name": "Vera Waiting",
        "credentials": "MD, FAAD",
        "specialties": ["dermatology"],
        "location": {"city": "Los Angeles", "state": "CA"},
        "radius_km": 50,
        "npi": made_up_npi("dr-vera-v"),
    }
    stack.api(
        "PUT", "notify", "/doctors/dr-vera-v", headers=auth("dr-vera-v", "doctor"), json=profile
    )
    with person(browser, stack, "reader-v") as reader:
        refused = reader.new_page().goto("/doctors")
        assert refused is not None and refused.status == 403
    with person(
        browser,
        stack,
        "admin-v",
        "admin",
        "Ada Admin",
        java_script_enabled=False,
        viewport={"width": 375, "height": 800},
    ) as admin:
        page = admin.new_page()
        page.goto("/")
        page.get_by_role("link", name="Doctors").click()
        waiting = page.get_by_role("article", name="Vera Waiting")
        expect(waiting).to_contain_text(f"NPI {profile['npi']}")
        expect(waiting).to_contain_text("Dermatology · Los Angeles, CA")
        waiting.get_by_role("button", name="Verify").click()
        expect(page.get_by_role("status")).to_contain_text("Verified")
        expect(
            page.get_by_role("region", name=re.compile("Waiting for verification")).get_by_role(
                "article", name="Vera Waiting"
            )
        ).to_have_count(0)
        found = page.get_by_role("region", name="Doctor dr-vera-v")
        expect(found).to_contain_text("status: verified")
        assert stack.api("GET", "notify", "/doctors/dr-vera-v")["verified"] is True

        # Suspending asks first (a plain form: this browser runs no JavaScript).
        found.get_by_role("button", name="Suspend").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Suspend Vera Waiting?")
        expect(page.get_by_text("can no longer answer questions")).to_be_visible()
        assert stack.api("GET", "notify", "/doctors/dr-vera-v")["verified"] is True
        page.get_by_role("link", name="No, keep them as they are").click()
        expect(page.get_by_role("region", name="Doctor dr-vera-v")).to_contain_text(
            "status: verified"
        )
        assert stack.api("GET", "notify", "/doctors/dr-vera-v")["verified"] is True
        page.get_by_role("region", name="Doctor dr-vera-v").get_by_role(
            "button", name="Suspend"
        ).click()
        page.get_by_role("button", name="Yes, suspend Vera Waiting").click()
        expect(page.get_by_role("status")).to_contain_text("Suspended")
        expect(page.get_by_role("region", name="Doctor dr-vera-v")).to_contain_text(
            "status: suspended"
        )
        page.get_by_label("Doctor id").fill("dr-nobody-here")
        page.get_by_role("button", name="Find").click()
        expect(page.get_by_text("There is no doctor with the id")).to_be_visible()
    with person(browser, stack, "admin-v", "admin", "Ada Admin", bypass_csp=True) as admin:
        page = admin.new_page()
        page.goto("/doctors?id=dr-vera-v")
        for width in (375, 1280):
            page.set_viewport_size({"width": width, "height": 900})
            assert not _axe(page), _axe(page)
        page.get_by_role("button", name="Verify").click()
        page.get_by_role("region", name="Doctor dr-vera-v").get_by_role(
            "button", name="Suspend"
        ).click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Suspend Vera Waiting?")
        for width in (375, 1280):
            page.set_viewport_size({"width": width, "height": 900})
            assert not _axe(page), _axe(page)


def test_an_answer_sent_after_the_session_ended_is_given_back_not_lost(
    stack: Stack, browser: Browser
) -> None:
    qid = _post_question(stack, "patient-s", "Will my cheek filler migrate over time?", ["fillers"])
    written = "Filler rarely migrates when placed deep on the bone; massage it only if told to."
    with person(browser, stack) as doctor:
        short = token("dr-jason-emer", "doctor", "Jason Emer", ttl_s=2)
        reply = doctor.request.post("/session", headers={"Authorization": f"Bearer {short}"})
        assert reply.status == 200, reply.text()
        page = doctor.new_page()
        page.goto(f"/questions/{qid}")
        page.get_by_label("Your answer").fill(written)
        time.sleep(3)  # the session's token expires while the doctor writes
        page.get_by_role("button", name="Post your answer").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Your session has ended")
        expect(page.get_by_role("alert")).to_contain_text("This was not sent")
        expect(page.get_by_label("Your answer")).to_have_value(written)
        page.get_by_role("link", name="Sign in again").click()
        page.get_by_role("button", name="Sign in as Jason Emer").click()
        expect(page).to_have_url(re.compile(rf"/questions/{qid}$"))
        expect(page.get_by_role("button", name="Post your answer")).to_be_visible()
    assert stack.api("GET", "questions", f"/questions/{qid}")["answer_count"] == 0


def test_an_edit_sent_after_a_doctor_answered_says_so_and_gives_the_text_back(
    stack: Stack, browser: Browser
) -> None:
    qid = _post_question(
        stack, "patient-r", "Does a masseter Botox dose even out a jaw?", ["botox"]
    )
    with person(browser, stack, "patient-r") as asker:
        page = asker.new_page()
        page.goto(f"/questions/{qid}")
        page.get_by_text("Edit your question").click()
        page.get_by_label("Details").fill("The left side of my jaw is wider since my teens.")
        _answer(stack, qid, "dr-melvin-elson", "Melvin Elson", "Botox slims the masseter")
        page.get_by_role("button", name="Save your question").click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("a doctor answered meanwhile")
        expect(alert).to_contain_text("The left side of my jaw is wider since my teens.")
        expect(_answers(page, 1).first).to_be_visible()


def test_the_settings_error_summary_links_to_each_field_and_keeps_what_was_typed(
    stack: Stack, browser: Browser
) -> None:
    with person(browser, stack, "dr-steven-f-weiner", "doctor", "Steven F. Weiner") as doctor:
        page = doctor.new_page()
        page.goto("/settings")
        page.get_by_label("Practice location: ZIP code or City, ST").fill("Panama City")
        page.get_by_label("Alert radius (km)").fill("65")
        page.get_by_role("button", name="Save").click()
        summary = page.get_by_role("alert")
        expect(summary).to_contain_text("Please check your settings")
        summary.get_by_role("link", name=re.compile("ZIP code")).click()
        location = page.get_by_label("Practice location: ZIP code or City, ST")
        expect(location).to_be_focused()
        expect(location).to_have_value("Panama City")
        expect(page.get_by_label("Alert radius (km)")).to_have_value("65")


def test_a_link_to_an_unknown_topic_says_so(stack: Stack, browser: Browser) -> None:
    with person(browser, stack) as visitor:
        page = visitor.new_page()
        response = page.goto("/?topic=no-such-topic")
        assert response is not None and response.status == 404
        expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
        expect(page.get_by_text("There is no topic 'no-such-topic'.")).to_be_visible()
        page.get_by_role("link", name="Back to the questions").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Recent questions")


def test_inbox_reasons_read_as_people_speak_and_a_later_page_links_to_the_newest(
    stack: Stack, browser: Browser
) -> None:
    title = "Can Botox soften one deep frown line that is worse on the left?"
    qid = _post_question(stack, "patient-w", title, ["botox"])
    doctor = auth("dr-jason-emer", "doctor")

    def alert() -> Any:
        items = stack.api("GET", "notify", "/inbox?limit=100", headers=doctor)["items"]
        return next((i for i in items if i["question_id"] == qid), None)

    item = until(alert, what="the doctor's alert")
    slug = item["reason"]["specialty"]
    taxonomy = stack.api("GET", "questions", "/taxonomy")
    name = next(s["name"] for s in taxonomy["specialties"] if s["slug"] == slug)
    with person(browser, stack, "dr-jason-emer", "doctor", bypass_csp=True) as context:
        page = context.new_page()
        page.goto("/inbox")
        alert_card = page.get_by_role("article").filter(has=page.get_by_role("link", name=title))
        why = alert_card.get_by_role("paragraph").filter(has_text="Why you got this")
        expect(why).to_contain_text(f"It matches your specialty, {name}")
        expect(why).to_contain_text("km from you")
        expect(why).not_to_contain_text(slug)
        expect(alert_card).to_contain_text("Sent to your inbox")
        expect(alert_card).not_to_contain_text("Delivery:")
        expect(page.get_by_role("link", name="Newest alerts")).to_have_count(0)

        # A later page (as "Older alerts" opens it) has a way back to the newest.
        page.goto(f"/inbox?cursor={item['id']}")
        expect(page.get_by_role("link", name=title)).to_have_count(0)
        for width in (375, 1280):
            page.set_viewport_size({"width": width, "height": 900})
            assert not _axe(page), _axe(page)
        page.get_by_role("link", name="Newest alerts").first.click()
        expect(page).to_have_url(re.compile(r"/inbox$"))
        expect(page.get_by_role("link", name=title)).to_be_visible()
        expect(page.get_by_role("status")).to_contain_text("Live:")
        for width in (375, 1280):
            page.set_viewport_size({"width": width, "height": 900})
            assert not _axe(page), _axe(page)
