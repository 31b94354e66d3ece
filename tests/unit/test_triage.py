"""Red-flag triage rules."""

from __future__ import annotations

import re
import string
import sys
import time as clock
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.questions.triage import (
    EMERGENCY_NOTICE,
    RED_FLAG_RULES,
    SCREEN,
    SCREEN_GATES,
    fold,
    full_triage,
    gates,
    may_match,
    prefilter,
    triage,
)

# --- triage ---------------------------------------------------------------------------

SEED_TITLE = (
    "Is there a treatment/injection for your face that can pull your cheek to the side "
    "towards your ear?"
)
SEED_BODY = (
    "My face is assymetrical and I'm assuming it's from a muscle imbalance in my face. Is "
    "there an injection like Botox or something else that can pull one half of your face "
    "towards your ear? The goal is to correct asymmetry. Thanks."
)


def test_seed_question_is_not_urgent() -> None:
    assert triage(SEED_TITLE, SEED_BODY).urgent is False
    assert triage(SEED_TITLE, SEED_BODY).flags == ()


def test_sudden_droop_with_slurred_speech_is_a_stroke_sign() -> None:
    result = triage(
        "Help",
        "Sudden droop on the left side of my face since this morning and my speech is slurred",
    )
    assert result.urgent is True
    assert result.flags == ("stroke_signs",)


@pytest.mark.parametrize(
    "body",
    [
        "My face suddenly started drooping on one side.",
        "Suddenly my face became asymmetrical.",
        "My face is drooping and my left arm feels weak.",
        "The left side of my mouth droops and I can't lift my arm.",
        "Droopy smile and I have trouble speaking.",
        "My face droops on one side and I lost vision in one eye.",
        "Facial droop, and my wife says I seem disoriented.",
    ],
)
def test_stroke_signs_fire(body: str) -> None:
    assert "stroke_signs" in triage("", body).flags


@pytest.mark.parametrize(
    "body",
    [
        "My eyelid is droopy after Botox, will it go away?",
        "It was not sudden, my face has always been asymmetrical.",
        "My mouth droops. I have no slurred speech and no weakness in my arm.",
        "I am confused about whether Botox or filler is better for a droopy face.",
        "I got filler 2 hours ago and my lips look uneven.",
    ],
)
def test_stroke_signs_do_not_fire_on_common_cosmetic_complaints(body: str) -> None:
    assert "stroke_signs" not in triage("", body).flags


@pytest.mark.parametrize(
    ("body", "flag"),
    [
        ("After my Botox injection my throat is swelling.", "anaphylaxis"),
        ("Right after filler I have trouble breathing.", "anaphylaxis"),
        ("I got hives and my lips are swollen after the injection.", "anaphylaxis"),
        (
            "Got filler in my nose yesterday, the skin is turning white and mottled.",
            "vascular_occlusion",
        ),
        ("Since the filler the area is dusky and I have severe pain.", "vascular_occlusion"),
        ("Since the filler I have blurry vision in my left eye.", "vascular_occlusion"),
        ("Crushing pain in my chest after the procedure.", "chest_pain"),
        ("My chest feels tight and I am sweating.", "chest_pain"),
        ("I feel suicidal since the surgery.", "suicidal_thoughts"),
        ("Honestly I want to die, I hate my face.", "suicidal_thoughts"),
        ("The incision keeps bleeding and won't stop.", "severe_bleeding"),
        (
            "Heavy bleeding from my nose after rhinoplasty, soaked through the gauze.",
            "severe_bleeding",
        ),
    ],
)
def test_red_flags_fire(body: str, flag: str) -> None:
    result = triage("", body)
    assert result.urgent is True
    assert flag in result.flags


@pytest.mark.parametrize(
    "body",
    [
        "I have no chest pain but my cheek is a bit swollen.",
        "I don't have trouble breathing, just some bruising.",
        "After rhinoplasty I have trouble breathing through my nose, is that normal?",
        "Got lip filler, is bruising normal?",
        "I am not suicidal, just unhappy with my nose.",
        "A little bleeding at the injection site, stopped after a minute.",
        "How long does Botox take to work on forehead lines?",
    ],
)
def test_red_flags_do_not_fire_on_negations_and_routine_questions(body: str) -> None:
    assert triage("Question", body).urgent is False


def test_triage_reads_the_title_too() -> None:
    assert triage("Chest pain after filler", "What should I do?").flags == ("chest_pain",)


def test_red_flag_rules_are_documented() -> None:
    names = [rule.name for rule in RED_FLAG_RULES]
    assert len(names) == len(set(names))
    assert {
        "stroke_signs",
        "anaphylaxis",
        "vascular_occlusion",
        "chest_pain",
        "suicidal_thoughts",
        "severe_bleeding",
    } <= set(names)
    assert all(rule.description and (rule.patterns or rule.pairs) for rule in RED_FLAG_RULES)
    assert "911" in EMERGENCY_NOTICE


def test_stroke_onset_and_droop_must_share_a_sentence() -> None:
    body = "I suddenly decided to ask. My smile droops a little and always has."
    assert triage("", body).urgent is False
    assert triage("", "My smile suddenly droops a little.").flags == ("stroke_signs",)


def test_negating_one_sign_of_a_pair_defuses_it() -> None:
    assert triage("", "After filler the area is not blanching.").urgent is False
    assert triage("", "After filler the area is blanching.").flags == ("vascular_occlusion",)


def test_a_later_non_negated_sign_still_fires() -> None:
    body = "No chest pain yesterday. Today there is crushing pain in my chest."
    assert triage("", body).flags == ("chest_pain",)


@pytest.mark.parametrize(
    "body",
    [
        "face droop side " * 4000,
        "filler injection severe pain " * 2000,
        "sudden droop face. " * 3000,
        "a" * 100_000,
    ],
)
def test_triage_is_fast_on_long_adversarial_text(body: str) -> None:
    started = clock.perf_counter()
    triage("title", body)
    assert clock.perf_counter() - started < 1.0


# --- evasions: text that reads as a red flag but is spelled to dodge the rules ----------

ZWSP, ZWNJ, ZWJ, WJ, SHY, BOM = "\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\ufeff"
LRM, RLM, RLO, PDF, LRI, PDI = "\u200e", "\u200f", "\u202e", "\u202c", "\u2066", "\u2069"


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def math_bold(text: str) -> str:
    return "".join(chr(0x1D41A + ord(c) - ord("a")) if "a" <= c <= "z" else c for c in text.lower())


def interleave(text: str, mark: str) -> str:
    return mark.join(text)


EVASIONS = [
    # invisible format characters (Unicode Cf) inside words
    ("sudden che\u200bst pain and my left arm is numb", "chest_pain"),
    (f"che{ZWNJ}st pa{ZWJ}in since this morning", "chest_pain"),
    (f"c{WJ}h{WJ}e{WJ}s{WJ}t pain", "chest_pain"),
    (f"ch{SHY}est pain after my filler", "chest_pain"),
    (f"{BOM}chest{BOM} pain", "chest_pain"),
    (f"I feel sui{SHY}cidal since the surgery", "suicidal_thoughts"),
    (interleave("suicidal", ZWSP), "suicidal_thoughts"),
    (f"my thr{LRM}oat is swel{RLM}ling after botox", "anaphylaxis"),
    (f"{LRI}chest{PDI} pain", "chest_pain"),
    (f"{RLO}chest pain{PDF}", "chest_pain"),
    ("tag chars: ch\U000e0041est pain", "chest_pain"),
    # a zero-width character standing in for the space between two words
    (f"chest{ZWSP}pain all night", "chest_pain"),
    (f"I want{ZWSP}to{ZWSP}die", "suicidal_thoughts"),
    # compatibility forms NFKC folds: fullwidth, mathematical, circled, ligatures
    (fullwidth("Chest pain and sweating"), "chest_pain"),
    (math_bold("chest pain"), "chest_pain"),
    ("\u24d2\u24d7\u24d4\u24e2\u24e3 pain", "chest_pain"),
    ("got \ufb01ller yesterday and the skin is turning white", "vascular_occlusion"),
    ("heavy blee\u1d05ing, soaked through the ga\u1d1cze", "severe_bleeding"),
    ("\u017fuicidal thoughts since the operation", "suicidal_thoughts"),
    ("chest\u00a0pain", "chest_pain"),
    ("chest\u2003pain", "chest_pain"),
    # marks laid over letters: accents, strike-through, variation selectors
    ("ch\u00e9st p\u00e0in", "chest_pain"),
    ("c\u0336h\u0336e\u0336s\u0336t\u0336 pain", "chest_pain"),
    ("chest\ufe0f pain", "chest_pain"),
    # look-alike letters from other scripts and small capitals
    ("\u0441\u04bb\u0435\u0455\u0442 pain", "chest_pain"),  # Cyrillic
    ("ch\u0435st p\u0430in", "chest_pain"),  # two Cyrillic letters in Latin words
    ("\u1d04\u029c\u1d07s\u1d1b pain", "chest_pain"),  # small capitals
    ("s\u03c5\u03b9cidal", "suicidal_thoughts"),  # Greek upsilon and iota
    # case and spacing games the plain rules already met
    ("CHEST PAIN", "chest_pain"),
    ("Chest   pain", "chest_pain"),
]


@pytest.mark.parametrize(("text", "flag"), EVASIONS)
def test_evasions_still_fire(text: str, flag: str) -> None:
    assert flag in triage("", text).flags, text.encode("unicode_escape")
    assert flag in triage(text, "What should I do?").flags


def test_the_issue_example_is_urgent() -> None:
    result = triage("Help", "sudden che\u200bst pain and my left arm is numb")
    assert result.urgent is True
    assert "chest_pain" in result.flags


@pytest.mark.parametrize(
    "text",
    [
        f"I have no che{ZWSP}st pain, only a bruise.",
        fullwidth("I do not have chest pain"),
        f"I am not sui{SHY}cidal, just unhappy with my nose.",
        "\u0421\u0435\u0439\u0447\u0430\u0441 \u0432\u0441\u0451 \u0445\u043e\u0440\u043e\u0448\u043e",  # Russian: all is fine
        "Caf\u00e9 au lait spots on my cheek, are they harmless?",
        f"How long does Botox{ZWSP} take to work?",
    ],
)
def test_folding_changes_no_verdict_on_harmless_text(text: str) -> None:
    assert triage("Question", text).urgent is False


def test_fold_reads_visible_letters_only() -> None:
    assert fold(f"\uff23{ZWSP}\uff48{SHY}\u00e9\u0455\u1d1b") == "chest"
    assert fold(f"chest{ZWSP}pain", invisible_as=" ") == "chest pain"
    assert fold("line one\nline two\ttab") == "line one\nline two\ttab"
    assert fold("bell\x07 and nul\x00 gone") == "bell and nul gone"
    # ASCII takes a short path; it must read the same as the general one.
    assert fold("Chest\rPain") == fold("Chest\rPain\u00e9")[:-1] == "chestpain"
    assert fold("chest\x0bpain", invisible_as=" ") == "chest pain"


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("SUDDEN FACIAL DROOP AND SLURRED SPEECH", "stroke_signs"),
        ("Crushing Chest Pain since lunch", "chest_pain"),
        ("I Want To Die", "suicidal_thoughts"),
    ],
)
def test_upper_case_fires_as_lower_case(text: str, flag: str) -> None:
    assert flag in triage("A question about my face", text).flags


def test_folded_text_needs_no_case_insensitive_rules() -> None:
    # The rules match without IGNORECASE: no character, once folded, is a letter that
    # only a case-insensitive match would take for one of the patterns' lower-case letters.
    letters = [re.compile(letter, re.IGNORECASE) for letter in string.ascii_lowercase]
    seen = set()
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if unicodedata.category(char) not in ("Cs", "Cn"):  # unassigned ones have no case
            seen.update(fold(char))
    assert not [
        (char, p.pattern)
        for char in seen - set(string.ascii_lowercase)
        for p in letters
        if p.fullmatch(char)
    ]


# Words of every rule's signs, their partners, negations and breaks: texts built from them
# trip every rule now and then, alone, in pairs, negated or split by a sentence.
_SIGN_TEXT = (
    "sudden suddenly woke up with since this morning out of nowhere all a face facial mouth "
    "smile cheek side one left right my the droop drooping droopy numb crooked weak arm legs "
    "can't lift move speech slurred trouble speaking confused disoriented vision blurry lost "
    "see filler fillers injection juvederm botox blanching white patch mottled dusky skin "
    "turned blue severe pain chest pressure tightness heart attack throat tongue swelling "
    "swollen closing hives breathing breathe wheezing bleeding heavily won't stop blood "
    "suicide kill myself want to die harm self-harm asymmetry asymmetrical uneven no not "
    "without don't but however . , ; ? ! \n and is it"
)
_SIGN_WORDS = _SIGN_TEXT.split(" ")


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(_SIGN_WORDS), max_size=30),
    st.lists(st.sampled_from(_SIGN_WORDS), max_size=8),
)
@example(["sudden", "droop", "on", "the", "left", "side", "of", "my", "face"], [])
@example(["filler", "injection", "and", "the", "skin", "turned", "white"], ["help"])
@example(["my", "face", "is", "asymmetrical", ";", "is", "there", "an", "injection", "?"], [])
def test_the_screen_never_changes_a_triage(body: list[str], title: list[str]) -> None:
    # triage skips the rules when its one screening search finds no sign: exactly when
    # the rules, all run, would have found none.
    title_text, body_text = " ".join(title), " ".join(body)
    assert triage(title_text, body_text) == full_triage(title_text, body_text)
    # The one screening search finds a sign wherever one of the screens does on its own.
    text = fold(f"{title_text}\n{body_text}")
    screens = [p for rule in RED_FLAG_RULES for p in rule.screens()]
    assert bool(SCREEN.search(text)) == any(p.search(text) for p in screens)


# --- the screen's prefilter -----------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "needs"),
    [
        (r"\bchest\W+pain", [[("chest",), ("pain",)]]),
        (r"\b(?:face|mouth)\s+droop\w*", [[("droop",), ("face", "mouth")]]),
        (r"abc|x[yz]", [[("abc",)], [("x",), ("y", "z")]]),
        (r"(?:ab)+c?d{0,3}", [[("ab",)]]),
        (r"\bsudden(?!ly)", [[("sudden",)]]),
        (r"a?b*", None),
        (r"\w+|x", None),
        (r"[a-z]+", None),
    ],
)
def test_the_prefilter_names_what_every_match_contains(
    pattern: str, needs: list[list[tuple[str, ...]]] | None
) -> None:
    assert prefilter(re.compile(pattern)) == needs


def test_the_prefilter_knows_nothing_of_a_case_insensitive_pattern() -> None:
    assert prefilter(re.compile("chest", re.IGNORECASE)) is None
    assert gates(None) is None and may_match(None, "anything") is True


def test_gates_open_an_alternative_only_with_all_its_conjuncts() -> None:
    gated = gates(prefilter(re.compile(r"\b(?:face|mouth)\W+droop|chest\s+pain")))
    assert may_match(gated, "my face droops")
    assert may_match(gated, "chest pain")
    assert not may_match(gated, "my face is uneven")
    assert not may_match(gated, "a droopy eyelid")
    assert not may_match(gated, "chest tightness")


def test_the_seed_question_skips_the_screen() -> None:
    text = fold(f"{SEED_TITLE}\n{SEED_BODY}")
    assert not may_match(SCREEN_GATES, text)
    assert not SCREEN.search(text)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from([*_SIGN_WORDS, "sw", "ell", "dropp", "fell"]), max_size=30))
@example(["sudden", "droop"])
@example(["my", "face", "fell"])
def test_the_prefilter_never_hides_a_screen_match(words: list[str]) -> None:
    for separator in (" ", "", "\n", "-"):
        text = fold(separator.join(words))
        if SCREEN.search(text):
            assert may_match(SCREEN_GATES, text), text
        for pattern in (p for rule in RED_FLAG_RULES for p in rule.screens()):
            if pattern.search(text):
                assert may_match(gates(prefilter(pattern)), text), (pattern.pattern, text)
