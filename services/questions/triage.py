"""Red-flag triage: does a question describe signs of a medical emergency?

Pure rules (standard library only). A question that trips a rule is marked urgent: its
page shows EMERGENCY_NOTICE to the asker and its alerts bypass doctors' quiet hours.

The rules read a folded copy of the text (`fold`), so that invisible characters,
fullwidth or mathematical letters, ligatures, accents and look-alike letters from other
scripts cannot hide a red flag ("che\u200bst pain" reads as "chest pain").
"""

from __future__ import annotations

import bisect
import importlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------
# 3. Red-flag triage
# ---------------------------------------------------------------------------

EMERGENCY_NOTICE = (
    "Your question describes signs that can mean a medical emergency. Do not wait for "
    "an answer here: call 911 now (or your local emergency number) or go to the nearest "
    "emergency room. If you are thinking about suicide, call or text 988 (Suicide & "
    "Crisis Lifeline)."
)


_APOS = "['\u2019]"
_NEGATION = re.compile(
    r"\b(?:no|not|without|denies|denied|deny|nor|free\s+of|"
    rf"(?:do|does|did|is|was|are|were|have|has|had|ca|could|would|wo){_APOS}?n{_APOS}?t|"
    r"(?:do|does|did)\s+not)\b"
    r"(?:\W+\w+){0,2}\W*$",
)
_CLAUSE_BREAK = re.compile(r"[.!?;\n]|\b(?:but|however|although|though|yet)\b")
_SENTENCE_BREAK = re.compile(r"[.!?\n]")


def _negated(text: str, start: int) -> bool:
    """Whether a negation word stands at most two words before `start`, in the same clause."""
    clause = _CLAUSE_BREAK.split(text[max(0, start - 60) : start])[-1]
    return _NEGATION.search(clause) is not None


def _signs(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    """The spans of the pattern's non-negated matches, in order."""
    return [m.span() for m in pattern.finditer(text) if not _negated(text, m.start())]


@dataclass(frozen=True)
class SignPair:
    """Two signs that make a red flag together: both present, either order, close together.

    The pair is symmetric; `first` is the sign the triage screen looks for (`screens`), so
    it is the rarer one on this platform: the emergency sign, not the procedure or the
    everyday word ("injection", "asymmetry", "since this morning").
    """

    first: re.Pattern[str]
    second: re.Pattern[str]
    within_chars: int
    same_sentence: bool

    def found_in(self, text: str) -> bool:
        """Whether a non-negated `first` and `second` stand close enough in `text`."""
        firsts = _signs(self.first, text)
        seconds = _signs(self.second, text) if firsts else []
        if not seconds:
            return False
        starts = [start for start, _ in seconds]
        breaks = [m.start() for m in _SENTENCE_BREAK.finditer(text)] if self.same_sentence else []

        def close(lo: int, hi: int) -> bool:
            if hi - lo > self.within_chars:
                return False
            i = bisect.bisect_left(breaks, lo)
            return not (i < len(breaks) and breaks[i] < hi)

        # Matches of one pattern never overlap, so for each first sign the nearest second
        # sign on either side (or one overlapping it) is found by bisection.
        for start, end in firsts:
            after = bisect.bisect_left(starts, start)
            if after < len(starts) and (starts[after] < end or close(end, starts[after])):
                return True
            before = after - 1
            if before >= 0 and (seconds[before][1] > start or close(seconds[before][1], start)):
                return True
        return False


@dataclass(frozen=True)
class RedFlagRule:
    """An emergency sign: any non-negated match of a pattern, or both signs of a pair.

    A sign is negated when a negation word ("no", "not", "don't", "without", ...) stands
    at most two words before it in the same clause; "never" is not one ("never had chest
    pain like this" is a red flag). Triage errs towards urgent: a false alarm costs a
    notice, a missed emergency costs far more.
    """

    name: str
    description: str
    patterns: tuple[re.Pattern[str], ...]
    pairs: tuple[SignPair, ...] = ()

    def fires(self, text: str) -> bool:
        """Whether the rule finds its sign in `text`."""
        return any(_signs(p, text) for p in self.patterns) or any(
            pair.found_in(text) for pair in self.pairs
        )

    def screens(self) -> tuple[re.Pattern[str], ...]:
        """Patterns of which one matches (negated or not) wherever the rule fires."""
        return self.patterns + tuple(pair.first for pair in self.pairs)


def _rx(*alternatives: str) -> re.Pattern[str]:
    """A pattern matching any of the alternatives, in lower case.

    The rules read folded text (`fold`: case-folded, so no upper case is left), so the
    patterns need no IGNORECASE, which made the regex engine a third slower: triage
    was a tenth of a POST /questions.
    """
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


def _pair(a: str, b: str, *, within: int, same_sentence: bool) -> SignPair:
    """Signs `a` and `b` in either order, at most `within` characters apart."""
    return SignPair(_rx(a), _rx(b), within_chars=within, same_sentence=same_sentence)


def _any(*alternatives: str) -> str:
    """A non-capturing alternation (a building block for combined patterns)."""
    return "(?:" + "|".join(alternatives) + ")"


_W = r"(?:\W+\w+)"  # one more word
_CANT = rf"(?:can{_APOS}?t|cannot|unable\s+to)"

_SUDDEN = _any(
    r"\bsudden\w*",
    r"\ball\s+of\s+a\s+sudden\b",
    r"\bout\s+of\s+(?:nowhere|the\s+blue)\b",
    r"\bwoke\s+up\s+(?:with|and)\b",
    r"\bsince\s+this\s+morning\b",
)
# Asymmetry is common and benign (the seed question), so only an abrupt onset counts.
_SUDDEN_STRICT = _any(
    r"\bsudden\w*",
    r"\ball\s+of\s+a\s+sudden\b",
    r"\bout\s+of\s+(?:nowhere|the\s+blue)\b",
)
# Eyelid or brow droop after Botox is a common, benign complaint: a droop counts only
# near the face, mouth, smile, cheek or "side".
_FACE = r"\b(?:face|facial|mouth|smile|cheek|side)\b"
_FACE_CHANGE = r"(?:sag\w*|paraly\w*|numb\w*|frozen|crooked|lopsided|fell|fallen|dropp\w*)"
_FACE_DROOP = _any(
    rf"{_FACE}{_W}{{0,6}}?\W+droop\w*",
    rf"\bdroop\w*{_W}{{0,6}}?\W+{_FACE}",
    rf"\b(?:face|facial|mouth|smile)\W+(?:\w+\W+){{0,3}}?{_FACE_CHANGE}",
    rf"\b(?:one|left|right)\s+side\s+of\s+(?:my|his|her|their|the)\s+(?:face|mouth)"
    rf"\W+(?:\w+\W+){{0,4}}?(?:{_FACE_CHANGE}|weak\w*|won{_APOS}?t\s+move|{_CANT}\s+move)",
)
_ASYMMETRY = r"\ba?ss?ymm?etr\w*|\buneven\b"
_LIMB = r"(?:arms?|legs?|hands?)"
_LIMB_WEAKNESS = _any(
    rf"\b{_LIMB}\W+(?:\w+\W+){{0,3}}?(?:weak\w*|numb\w*|tingl\w*|limp|heavy|dead)\b",
    rf"\b(?:weak\w*|numb\w*|paraly\w*)\W+(?:\w+\W+){{0,4}}?{_LIMB}\b",
    rf"\b{_CANT}\s+(?:lift|move|feel)\s+(?:my|his|her)\s+{_LIMB}\b",
)
_SPEECH = _any(
    r"\bslurr\w*",
    r"\b(?:speech|talking|words)\W+(?:\w+\W+){0,3}?(?:slurred|garbled|jumbled|strange|weird)\b",
    rf"\b(?:trouble|difficulty|hard\s+time|{_CANT})\s+(?:\w+\s+)?(?:speak|talk)\w*",
)
_CONFUSION = _any(
    r"\bconfusion\b",
    r"\bconfused\b(?!\s+(?:about|as\s+to|by|whether|if|on|with|why|what|which|how))",
    r"\bdisorient\w*",
)
_VISION = _any(
    r"\b(?:loss\s+of|lost|losing|blurr\w*|double|dim\w*|changes?\s+in)\W+(?:\w+\W+){0,2}?"
    r"(?:vision|sight|eyesight)\b",
    r"\b(?:vision|sight|eyesight)\W+(?:\w+\W+){0,2}?(?:went|going|blurr\w*|black|dark\w*|"
    r"loss|lost|gone|changed)\b",
    rf"\b{_CANT}\s+see\b",
    r"\bblind\w*",
)
_FILLER = _any(
    r"\bfillers?\b",
    r"\b(?:juvederm|restylane|radiesse|sculptra|belotero|rha|voluma|volbella|hyaluronic)\b",
    r"\binject\w*",
)
_OCCLUSION_SIGN = _any(
    r"\bblanch\w*",
    r"\b(?:white|pale)\s+(?:\w+\s+)?(?:patch\w*|area|spot|skin)\b",
    r"\bmottl\w*",
    r"\bdusky\b",
    r"\blivedo\b",
    r"\b(?:lacy|net-?like|web-?like)\b",
    r"\b(?:skin|area|lip|nose|cheek)\W+(?:\w+\W+){0,2}?(?:turn\w*|went|gone|going)\s+"
    r"(?:\w+\s+)?(?:white|gr[ae]y|blue|purple|dusky|pale)\b",
    r"\b(?:severe|extreme|excruciating|intense|unbearable|terrible|worst)\W+(?:\w+\W+){0,2}?"
    r"pain\b",
    _VISION,
)

RED_FLAG_RULES: tuple[RedFlagRule, ...] = (
    RedFlagRule(
        name="stroke_signs",
        description=(
            "Stroke (FAST): a sudden facial droop or sudden one-sided face change or "
            "asymmetry; or a facial droop together with arm/leg weakness or numbness, "
            "slurred speech, confusion or vision loss."
        ),
        patterns=(),
        pairs=(
            _pair(_FACE_DROOP, _SUDDEN, within=80, same_sentence=True),
            _pair(_SUDDEN_STRICT, _ASYMMETRY, within=80, same_sentence=True),
            _pair(
                _FACE_DROOP,
                _any(_LIMB_WEAKNESS, _SPEECH, _CONFUSION, _VISION),
                within=400,
                same_sentence=False,
            ),
        ),
    ),
    RedFlagRule(
        name="anaphylaxis",
        description=(
            "Anaphylaxis (e.g. after an injection or filler): throat or tongue swelling, "
            "trouble breathing, or hives with swelling."
        ),
        patterns=(
            _rx(
                r"\bthroat\W+(?:\w+\W+){0,3}?(?:swell\w*|swollen|closing|tight\w*)",
                r"\b(?:swell\w*|swollen|closing)\W+(?:\w+\W+){0,2}?throat\b",
                r"\b(?:tongue|airway)\W+(?:\w+\W+){0,2}?(?:swell\w*|swollen)",
                r"\bswollen\s+tongue\b",
                rf"\b(?:trouble|difficulty|hard|struggling|{_CANT})\s+(?:\w+\s+)?breath\w*\b"
                r"(?!\s+(?:\w+\s+)?(?:through|out\s+of|from)\s+(?:my|the|one)\s+(?:\w+\s+)?"
                r"nos(?:e|tril))",
                r"\bshort(?:ness)?\s+of\s+breath\b",
                r"\bwheez\w*",
                r"\bgasping\b",
            ),
        ),
        pairs=(
            _pair(
                r"\b(?:hives|welts)\b", r"\b(?:swell\w*|swollen)\b", within=200, same_sentence=False
            ),
        ),
    ),
    RedFlagRule(
        name="vascular_occlusion",
        description=(
            "Vascular occlusion after filler: blanching, mottled or dusky skin, severe "
            "pain, or a vision change after a filler injection."
        ),
        patterns=(),
        pairs=(_pair(_OCCLUSION_SIGN, _FILLER, within=400, same_sentence=False),),
    ),
    RedFlagRule(
        name="chest_pain",
        description="Chest pain, pressure or tightness; a possible heart attack.",
        patterns=(
            _rx(
                r"\bchest\W+(?:\w+\W+){0,2}?(?:pain\w*|pressure|tight\w*|hurts?|ache|aching|"
                r"discomfort)\b",
                r"\b(?:pain|pressure|tightness|crushing)\W+(?:\w+\W+){0,1}?in\s+(?:my\s+)?chest\b",
                r"\bheart\s+attack\b",
            ),
        ),
    ),
    RedFlagRule(
        name="suicidal_thoughts",
        description="Thoughts of suicide or self-harm.",
        patterns=(
            _rx(
                r"\bsuicid\w*",
                r"\bkill\w*\s+myself\b",
                r"\bend\w*\s+(?:my\s+(?:own\s+)?life|it\s+all)\b",
                r"\b(?:want|wanted|wanting)\s+to\s+die\b",
                r"\bself[-\s]?harm\w*",
                r"\bharm\w*\s+myself\b",
                r"\bbetter\s+off\s+dead\b",
                r"\bno\s+reason\s+to\s+live\b",
                rf"\b(?:don{_APOS}?t|do\s+not)\s+want\s+to\s+(?:live|be\s+alive)\b",
            ),
        ),
    ),
    RedFlagRule(
        name="severe_bleeding",
        description="Severe or uncontrolled bleeding.",
        patterns=(
            _rx(
                r"\b(?:severe|heavy|heavily|uncontrolled|profuse\w*|non-?stop|massive)\W+"
                r"(?:\w+\W+){0,1}?bleed\w*",
                r"\bbleed\w*\W+(?:\w+\W+){0,1}?(?:heavily|profusely|a\s+lot|nonstop)\b",
                rf"\bbleed\w*\W+(?:\w+\W+){{0,3}}?(?:won{_APOS}?t|will\s+not|"
                rf"doesn{_APOS}?t|does\s+not|{_CANT})\s+stop\b",
                r"\b(?:soaked|soaking)\W+(?:\w+\W+){0,3}?(?:blood|gauze|bandages?|dressing)\b",
                r"\bh(?:a)?emorrhag\w*",
                r"\b(?:lots?\s+of|so\s+much)\s+blood\b",
            ),
        ),
    ),
)


# ---------------------------------------------------------------------------
# Folding: what the rules read
# ---------------------------------------------------------------------------

# Letters that look like Latin ones but NFKC leaves alone (Cyrillic and Greek homoglyphs,
# small capitals): mixed-script words are a known way past keyword filters. The table
# is data (lookalikes.json); mapping only affects what the rules read.
_LOOKALIKES = str.maketrans(
    {
        lookalike: latin
        for latin, lookalikes in json.loads(
            Path(__file__).with_name("lookalikes.json").read_text(encoding="utf-8")
        ).items()
        if not latin.startswith("_")
        for lookalike in lookalikes
    }
)
# Invisible letters that render as nothing (Hangul fillers), besides Unicode Cf.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
_KEEP_CONTROLS = frozenset("\n\t")
_MARKS = frozenset(("Mn", "Me"))
_ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _invisible(char: str) -> bool:
    """Format (Cf: zero-width, soft hyphen, bidi), other controls and blank fillers."""
    category = unicodedata.category(char)
    if category == "Cc":
        return char not in _KEEP_CONTROLS
    return category == "Cf" or char in _INVISIBLE_LETTERS


def _hidden(text: str) -> tuple[dict[int, None], frozenset[int]]:
    """Of the characters in `text`: the marks to drop, and the invisibles."""
    marks: dict[int, None] = {}
    invisibles = set()
    for char in set(text):
        if unicodedata.category(char) in _MARKS:
            marks[ord(char)] = None
        elif _invisible(char):
            invisibles.add(ord(char))
    return marks, frozenset(invisibles)


def fold(text: str, invisible_as: str = "") -> str:
    """The text as the rules read it: invisibles replaced, marks dropped, NFKC, case-folded.

    Compatibility decomposition turns fullwidth, mathematical, circled and ligature forms
    into plain letters; dropping combining marks (Mn, Me) removes accents, strike-through
    and variation selectors laid over letters.
    """
    if text.isascii():  # the common case: nothing to decompose, map or drop but controls
        return _ASCII_CONTROLS.sub(invisible_as, text).casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    marks, invisibles = _hidden(decomposed)
    table: dict[int, str | None] = {**marks, **dict.fromkeys(invisibles, invisible_as or None)}
    kept = decomposed.translate(table).translate(_LOOKALIKES)
    return unicodedata.normalize("NFKC", kept).casefold()


def _readings(text: str) -> tuple[str, ...]:
    """The folded text; where invisibles stood, also a reading with a space in their place.

    "che\u200bst" must read as "chest", but "chest\u200bpain" as "chest pain": a
    zero-width character may hide inside a word or stand for the space between two.
    """
    joined = fold(text)
    if text.isascii() and not _ASCII_CONTROLS.search(text):
        return (joined,)
    spaced = fold(text, invisible_as=" ")
    return (joined,) if spaced == joined else (joined, spaced)


@dataclass(frozen=True)
class Triage:
    """Whether a question shows emergency signs, and which rules fired."""

    urgent: bool
    flags: tuple[str, ...] = field(default=())


#: Every rule's screens in one pattern: a text it does not match fires no rule, so most
#: questions (no sign at all) take one search instead of every rule's (triage was a tenth
#: of a POST /questions). Every sign starts a word (its patterns begin with \b and a
#: letter), so the search tries the signs only where a word starts: twice as fast on a
#: long question, and the same matches.
SCREEN = re.compile(
    r"\b(?=\w)(?:"
    + "|".join(
        f"(?:{p})" for p in dict.fromkeys(p.pattern for r in RED_FLAG_RULES for p in r.screens())
    )
    + ")"
)
NOT_URGENT = Triage(urgent=False)


# --- the screen's prefilter: words every screen match contains -----------------------

#: Literal text that every match of a pattern contains: any one of the options of every
#: one of the conjuncts (an AND of ORs; None: nothing is known).
Needs = list[tuple[str, ...]]
_sre_parser: Any = importlib.import_module("re._parser")
_sre: Any = importlib.import_module("re._constants")
_REPEATS = frozenset(("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"))


def _needs(items: Any) -> tuple[str, Any] | None:
    """What every match of a parsed pattern contains: ("lit", text), ("and", parts),
    ("or", branches), or None when nothing is certain.

    Sound by construction: adjacent literal characters are one literal; a group needs what
    its pattern needs; an alternation one of its branches' needs (nothing if a branch needs
    nothing); a repeat its body's if it repeats at least once; a set of single characters
    one of them; anything else (assertions, classes, back references) nothing.
    """
    parts: list[tuple[str, Any]] = []
    run: list[str] = []
    for op, arg in items:
        if op is _sre.LITERAL:
            run.append(chr(arg))
            continue
        if run:
            parts.append(("lit", "".join(run)))
            run = []
        need: tuple[str, Any] | None = None
        if op is _sre.SUBPATTERN:
            need = _needs(arg[-1])
        elif op is _sre.ATOMIC_GROUP:
            need = _needs(arg)
        elif op is _sre.BRANCH:
            branches = [_needs(branch) for branch in arg[1]]
            if all(b is not None for b in branches):
                need = ("or", branches)
        elif str(op) in _REPEATS and arg[0] >= 1:
            need = _needs(arg[2])
        elif op is _sre.IN and arg and all(o is _sre.LITERAL for o, _ in arg):
            need = ("or", [("lit", chr(v)) for _, v in arg])
        if need is not None:
            parts.append(need)
    if run:
        parts.append(("lit", "".join(run)))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else ("and", parts)


def _options(need: tuple[str, Any]) -> tuple[str, ...]:
    """Literals of which every text meeting `need` contains one (an OR, possibly weaker)."""
    kind, arg = need
    if kind == "lit":
        return (arg,)
    if kind == "or":
        return tuple(dict.fromkeys(o for branch in arg for o in _options(branch)))
    # Of an AND, one conjunct will do: the most telling (fewest, longest literals).
    return min((_options(part) for part in arg), key=_vagueness)


def _vagueness(options: tuple[str, ...]) -> tuple[int, int]:
    return (len(options), -min(len(o) for o in options))


def _alternatives(need: tuple[str, Any]) -> list[Needs]:
    """`need` as an OR of AND of ORs of literals, each AND's most telling conjunct first."""
    kind, arg = need
    if kind == "or":
        return [alt for branch in arg for alt in _alternatives(branch)]
    conjuncts = [_options(part) for part in arg] if kind == "and" else [_options(need)]
    return [sorted(dict.fromkeys(conjuncts), key=_vagueness)]


def prefilter(pattern: re.Pattern[str]) -> list[Needs] | None:
    """The literal words a match of `pattern` must contain (see `may_match`); None if
    nothing is certain. Only for patterns without flags that change what a literal matches."""
    if pattern.flags & (re.IGNORECASE | re.VERBOSE):
        return None
    need = _needs(_sre_parser.parse(pattern.pattern))
    return None if need is None else _alternatives(need)


#: A prefilter arranged for `may_match`: each literal of an alternative's first conjunct,
#: with the rest of each alternative it opens (None: nothing is certain, all may match).
Gates = tuple[tuple[str, tuple[Needs, ...]], ...] | None


def gates(needs: list[Needs] | None) -> Gates:
    """`needs` (see `prefilter`) as gates: one pass over the first conjuncts' literals."""
    if needs is None:
        return None
    opened: dict[str, list[Needs]] = {}
    for conjuncts in needs:
        for option in conjuncts[0]:
            opened.setdefault(option, []).append(conjuncts[1:])
    return tuple((option, tuple(rests)) for option, rests in opened.items())


def may_match(gated: Gates, text: str) -> bool:
    """False only if no match of the pattern behind `gated` can be in `text`."""
    if gated is None:
        return True
    for rests in [rests for option, rests in gated if option in text]:
        for rest in rests:
            for options in rest:
                for option in options:
                    if option in text:
                        break
                else:
                    break  # a conjunct none of whose options is in the text
            else:
                return True
    return False


#: What any sign must contain: most questions (the platform's own, about faces, fillers
#: and asymmetry) contain none of it, and skip even the screen's search (a third of it).
SCREEN_GATES = gates(prefilter(SCREEN))


def triage(title: str, body: str) -> Triage:
    """Check a question's title and body against the red-flag rules."""
    readings = _readings(f"{title}\n{body}")
    if not any(may_match(SCREEN_GATES, text) and SCREEN.search(text) for text in readings):
        return NOT_URGENT
    return _every_rule(readings)


def full_triage(title: str, body: str) -> Triage:
    """`triage` without its screen: every rule run (what the screen must never change)."""
    return _every_rule(_readings(f"{title}\n{body}"))


def _every_rule(readings: tuple[str, ...]) -> Triage:
    flags = tuple(
        rule.name for rule in RED_FLAG_RULES if any(rule.fires(text) for text in readings)
    )
    return Triage(urgent=bool(flags), flags=flags)
