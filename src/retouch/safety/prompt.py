"""Prompt moderation, offline: a lexicon (`lexicon.py`) matched against normalised views.

`scan_prompt` returns every finding (category, severity, the lexicon term that matched),
most severe first; `moderate_prompt` returns the most severe finding that the level blocks
(`levels.is_blocked`), or None. Nothing here touches the network or a model.

How severities were assigned
----------------------------
The three severities follow `levels.Severity`, per category:

- sexual: *mild* is suggestive or swimwear/underwear (sexy, lingerie, bikini, 性感, 比基尼);
  *explicit* is nudity, genitals, sex acts and pornography (nude, porn, 裸体, 色情, 做爱);
  *extreme* is sexual violence and abuse (rape, incest, upskirt, 强奸, 性侵, 乱伦).
- minors: always *extreme*. Direct terms (child porn, lolicon, 儿童色情, 恋童) are findings
  alone; otherwise a minor marker (child, kid, teen, loli, an age under 18, 小孩, 兒童,
  未成年, 萝莉) together with a sexualising sexual term anywhere in the prompt gives one
  finding, "marker + term". Clothing words (bikini, swimsuit, 泳装) do not sexualise, so a
  child at the beach is not flagged as such; "baby" only combines with explicit terms and
  "cp" only with a sexual term within three words.
- violence: *mild* is a fight, blood, a killing or weapon named (fistfight, murder, blood
  stain, 打架, 血迹, 杀人); *explicit* is gore and corpses (gore, dead body, 血腥, 尸体);
  *extreme* is torture, mutilation, mass killing and instructions to kill (beheading,
  school shooting, 碎尸, 酷刑).
- hate: *mild* is a symbol or figure named, or a weaker or ambiguous slur (nazi, hitler,
  swastika, 纳粹, 基佬); *explicit* is a strong slur, a hate ideology or a direct attack on
  a group (the strongest slurs, white power, "<group> are vermin", 黑鬼, 支那); *extreme*
  is incitement to kill or exterminate a group ("kill all <group>", 杀光<group>).
  Strong slurs are explicit, not "mild, a slur quoted in passing": in an image prompt a slur
  is usually text to be rendered.
- self-harm: *mild* mentions (suicide, overdose, 自杀); *explicit* depicts it (self-harm,
  slit wrists, 割腕, 上吊); *extreme* encourages it or asks how (kill yourself, kys,
  suicide methods, 怎么自杀).
- illegal: *mild* names weapons, common drugs or terrorism (gun, rifle, bomb, marijuana,
  手枪, 炸弹, 毒品); *explicit* is hard drugs, bomb-making materials in use, trafficking
  and forged documents (cocaine, pipe bomb, fake passport, 冰毒, 假身份证); *extreme* is
  instructions to make weapons or drugs and trafficking of people for sex or of children
  (how to make a bomb, cook meth, sex trafficking, 制作炸弹, 拐卖儿童).
Words with a common benign sense are left out or guarded by benign contexts in the lexicon
("nude lipstick", "pussy willow", "water gun", "food porn", 黑色情人节, 杀人鲸, 大麻烦,
跳楼价); what is left ambiguous is rated no higher than mild. A term right after a
negation ("no nudity", "without blood", 不要裸体) does not count, except for minors.

`PromptFinding.term` is the lexicon's own spelling of what matched, with the pattern
expanded ("kill all the jews", "nude" for "nuuuude", 裸体 for "裸 體"); a minors
combination is "<marker> + <term>" ("child + lingerie"). It never holds the user's text.

Normalisation
-------------
1. Unicode NFKC (full-width ｎｕｄｅ, ligatures, circled and mathematical letters → ASCII),
   then removal of invisible characters (zero-width space/joiners, soft hyphen, bidi
   controls, variation selectors, tag characters, C0 controls) and of apostrophes, then
   case folding, then removal of combining marks (nüde → nude) and of common Cyrillic and
   Greek look-alikes (Cyrillic а, е, о, р, с … → a, e, o, p, c …).
2. English is matched on word tokens `[a-z0-9]+`, in views that are each a sequence of
   whole words, so short terms never match inside longer words ("Scunthorpe", "cocktail",
   "therapist", "grapes", "basement"):
   - the plain tokens;
   - leetspeak read in words that have letters and are not mostly digits: 0→o, 1→i (and,
     in a second view, 1→l), 3→e, 4→a, 5→s, 7→t, @→a, $→s, !→i, |→i (l), €→e ("s3x",
     "k!ll", "$ex", "pr0n"; "4k", "1950s", "h264" stay numbers);
   - repeated letters: runs of three or more squeezed to one and to two ("nuuuude",
     "boooobs"); every doubled letter squeezed, matched only against terms of four or more
     letters without a double letter ("nuude");
   - words with punctuation inside, joined ("n.u.d.e", "n-a-k-e-d", "s_3_x",
     "child-porn"), singly and as a sequence ("k.i.l.l y.o.u.r.s.e.l.f");
   - words spelled out: runs of one- and two-character pieces with at most two separator
     characters between them and at least one single character, joined when they spell a
     term of three to sixteen letters ("n u d e", "s e x", "p o r n", "n. u. d. 3").
   Multi-word terms match consecutive tokens ("child porn") and, written together, in the
   joined words ("childporn"). Benign contexts and negations apply to the token views.
3. Chinese: every non-CJK character is dropped (spaces, punctuation, Latin letters and
   digits between characters: "裸 体", "裸.体", "裸a體" all read 裸体), Traditional
   characters are folded to Simplified (`lexicon.T2S`) and terms are found as substrings,
   each checked against its benign contexts. Terms that mix Latin and CJK (av女优, 18禁) are
   matched on the text with any separators between their characters.
4. Ages under 18 are minor markers, in digits ("12yo", "12-year-old", "aged 9", "12岁"),
   in words ("twelve year old") and in Chinese numerals ("十二歲", "三周岁").

Speed: the lexicon (about 17,000 expanded terms) is compiled on first use, in about 0.1 s;
a scan is a few regular-expression passes and set lookups, linear in the prompt: an
8,000-character prompt takes about 1.5-3 ms on one core.

Known gaps
----------
Words split into pieces of two or more letters ("nu de", "por n"), masked letters
("n*de", "p*rn"), synonyms, euphemisms and misspellings not in the lexicon ("unclad",
"in the buff"), ambiguous words deliberately left out ("xxx", "strip", "shoot", 色图),
languages other than English and Chinese, pinyin and abbreviations (sq, ml), homophone
slang (河蟹-style), and meaning that needs no listed word ("make her wear nothing"). The
minors combination looks at the whole prompt, so an unrelated child and a sexual word far
apart are still combined. The lexicon is a first line; the image classifier judges what
is actually produced.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from retouch.safety import lexicon
from retouch.safety.levels import Category, Severity, is_blocked

__all__ = ["PromptFinding", "moderate_prompt", "scan_prompt"]


@dataclass(frozen=True)
class PromptFinding:
    category: Category
    severity: Severity
    term: str
    """The lexicon term that matched, as the lexicon writes it (never the user's text)."""


def scan_prompt(prompt: str) -> list[PromptFinding]:
    """Every finding in the prompt, highest severity first."""
    return _scanner().scan(prompt)


def moderate_prompt(prompt: str, tolerance: int) -> PromptFinding | None:
    """The most severe finding that safety_tolerance `tolerance` (1..6) blocks, or None."""
    if not 1 <= tolerance <= 6:
        raise ValueError(f"safety_tolerance must be 1..6, got {tolerance}")
    for finding in scan_prompt(prompt):
        if is_blocked(finding.category, finding.severity, tolerance):
            return finding
    return None


# --- normalisation ------------------------------------------------------------------------

_CJK = "\u2e80-\u2fdf\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_INVISIBLE_RE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    "\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff'`\u00b4\u2018\u2019\u02bc]"
)
_MARKS_RE = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_CONFUSABLES = str.maketrans(
    {
        "а": "a",
        "е": "e",
        "і": "i",
        "ј": "j",
        "к": "k",
        "м": "m",
        "о": "o",
        "р": "p",
        "с": "c",
        "т": "t",
        "у": "y",
        "х": "x",
        "ѕ": "s",
        "һ": "h",
        "ԁ": "d",
        "ӏ": "l",
        "α": "a",
        "β": "b",
        "ε": "e",
        "ι": "i",
        "κ": "k",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        "ı": "i",
        "ł": "l",
        "ø": "o",
        "đ": "d",
    }
)


# Latin letters beyond ASCII (they may carry marks); Greek and Cyrillic (look-alikes).
_ACCENTED_RE = re.compile("[\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02af\u1e00-\u1eff]")
_LOOKALIKE_RE = re.compile("[\u0370-\u052f]")


# Runs of characters NFKC may change: all but ASCII and CJK ideographs (which it keeps).
_NFKC_RUN_RE = re.compile("[^\x00-\x7f\u3400-\u4dbf\u4e00-\u9fff]+")


def _nfkc(match: re.Match[str]) -> str:
    return unicodedata.normalize("NFKC", match.group())


def _normalize(prompt: str) -> str:
    text = prompt
    if not text.isascii() and not unicodedata.is_normalized("NFKC", text):
        text = _NFKC_RUN_RE.sub(_nfkc, text)
    text = _INVISIBLE_RE.sub("", text).casefold()
    if text.isascii():
        return text
    if _MARKS_RE.search(text) or _ACCENTED_RE.search(text):
        text = unicodedata.normalize("NFD", text)
        text = _MARKS_RE.sub("", text)
        text = unicodedata.normalize("NFC", text).translate(_CONFUSABLES)
    elif _LOOKALIKE_RE.search(text):
        text = text.translate(_CONFUSABLES)
    return text


_TOKEN_RE = re.compile(r"[a-z0-9]+")
_EXT_TOKEN_RE = re.compile(r"[a-z0-9@$!|€]+")
_LEET_ANY_RE = re.compile(r"[013457@$!|€]")
_LEET_HINT_RE = re.compile(r"[a-z][013457@$!|€]|[013457@$!|€][a-z]")
_LETTER_RE = re.compile(r"[a-z]")
_SEPARATORS_RE = re.compile(r"[^a-z0-9@$!|€\n]+")
_NON_ALNUM_RE = re.compile(r"[^a-z0-9\n]+")
# A word with punctuation inside: "n.u.d.e", "child-porn", "s_3_x".
_JOINED_RE = re.compile(
    rf"(?<![a-z0-9@$!|€])[a-z0-9@$!|€]++(?:[^\sa-z0-9@$!|€{_CJK}]++[a-z0-9@$!|€]++)+"
)
_TRIPLE_RE = re.compile(r"([a-z])\1{2,}")
_DOUBLE_RE = re.compile(r"([a-z])\1+")
_LEET: dict[str, str] = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t"}
_LEET |= {"@": "a", "$": "s", "!": "i", "|": "i", "€": "e"}
_LEET_I = str.maketrans(_LEET)
_LEET_L = str.maketrans(_LEET | {"1": "l", "|": "l"})
_TABLES = (_LEET_I, _LEET_L)

_CJK_ANY_RE = re.compile(f"[{_CJK}]")
_NON_CJK_RE = re.compile(f"[^{_CJK}]+")

# A word with a leetspeak character in it, from its start.
_LEETY_RE = re.compile(r"(?<![a-z0-9@$!|€])[a-z0-9@$!|€]*?[013457@$!|€][a-z0-9@$!|€]*+")


def _leet(text: str) -> tuple[str, dict[str, str]]:
    """`text` with leetspeak read as letters in words that have letters ("s3x", "k!ll",
    "$ex"); words that are mostly digits stay as they are ("1950s", "16x9", "h264").
    "1" and "|" are read as "i"; the words that had one are also returned read with "l"
    instead (word as read → other reading)."""
    other: dict[str, str] = {}

    def read(match: re.Match[str]) -> str:
        word = match.group()
        core = word.strip("!|")
        letters = sum(map(str.isalpha, core))
        if not letters or letters + 1 < sum(map(str.isdigit, core)):
            return word
        read_i = core.translate(_LEET_I)
        if "1" in core or "|" in core:
            other[read_i] = core.translate(_LEET_L)
        return read_i

    return _LEETY_RE.sub(read, text), other


def _squeeze(word: str) -> str:
    """`word` with every run of a repeated character read as one ("nuude" → "nude")."""
    return "".join(char for char, _ in itertools.groupby(word))


# A word or words right before a term that negate it ("no nudity", "without blood",
# "不要裸体"): the term does not count. Not applied to minors terms and markers.
_NEGATIONS = frozenset({"no", "not", "without", "avoid", "avoiding", "zero", "never"})
_ZH_NEGATIONS = frozenset({"不要", "没有", "禁止", "避免", "不含", "无", "别", "不能有", "不准"})


# --- the compiled lexicon -----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Term:
    term: str
    category: Category
    severity: Severity
    before: frozenset[str]
    after: frozenset[str]
    sexualizing: bool
    marker: str

    @property
    def sexual(self) -> bool:
        return self.category is Category.SEXUAL and not self.marker

    @property
    def negatable(self) -> bool:
        """Whether "no …" / "不要…" right before cancels it: not for minors terms."""
        return self.category is not Category.MINORS


_PART_RE = re.compile(r"\(([^()]*)\)|\{(\w+)\}|([^(){}]+)")
_EN_TERM_RE = re.compile(r"[a-z0-9]+(?: [a-z0-9]+)*")


def expand(pattern: str) -> list[str]:
    """Every string a lexicon pattern stands for (spaces normalised; none for Chinese)."""
    if pattern.isascii():
        return [" ".join(text.split()) for text in _raw(pattern)]
    return ["".join(text.split()) for text in _raw(pattern)]


def _raw(pattern: str) -> list[str]:
    options: list[Sequence[str]] = []
    covered = 0
    for match in _PART_RE.finditer(pattern):
        alternatives, group, literal = match.groups()
        if alternatives is not None:
            options.append([text for alt in alternatives.split("|") for text in _raw(alt)])
        elif group is not None:
            options.append(lexicon.GROUPS[group])
        else:
            options.append((literal,))
        covered += len(match.group())
    if covered != len(pattern):
        raise ValueError(f"malformed lexicon pattern: {pattern!r}")
    return ["".join(parts) for parts in itertools.product(*options)]


class _Lexicon:
    def __init__(self, entries: Sequence[lexicon.Entry]) -> None:
        self.single: dict[str, list[_Term]] = {}
        self.multi: dict[str, list[_Term]] = {}
        self.multi_prefixes: set[str] = set()
        self.joined: dict[str, list[_Term]] = {}
        self.nodouble: dict[str, list[_Term]] = {}
        self.cjk: dict[str, list[_Term]] = {}
        self.mixed: dict[str, list[_Term]] = {}
        for entry in entries:
            before = frozenset(entry.before)
            if not entry.pattern.isascii() and entry.category is not Category.MINORS:
                before |= _ZH_NEGATIONS
            after = frozenset(entry.after)
            for text in expand(entry.pattern):
                self._add(entry, text, before, after)
        self.multi_first = frozenset(key.split(" ", 1)[0] for key in self.multi)
        self.multi_words = frozenset(word for key in self.multi for word in key.split(" "))
        self.words = self.multi_words | self.single.keys()
        # Every prefix of two or more characters of a Chinese term, the terms included.
        self.cjk_prefixes = {text[:k] for text in self.cjk for k in range(2, len(text) + 1)}
        self.traditional_re = re.compile(
            "[" + "".join(map(re.escape, sorted(map(chr, lexicon.T2S)))) + "]"
        )
        firsts = sorted({text[0] for text in self.cjk})
        self.cjk_first_re = re.compile("[" + "".join(map(re.escape, firsts)) + "]")
        self.mixed_re = re.compile(
            "|".join(_mixed_pattern(text) for text in sorted(self.mixed, key=len, reverse=True))
        )
        self.by_squeeze: dict[str, list[str]] = {}
        for key in self.joined:
            self.by_squeeze.setdefault(_squeeze(key), []).append(key)
        self.spelled_prefixes = {
            key[:k]
            for key in self.joined
            if len(key) <= _MAX_SPELLED
            for k in range(2, len(key) + 1)
        }
        self.terms = tuple(
            term
            for table in (self.single, self.multi, self.cjk, self.mixed)
            for terms in table.values()
            for term in terms
        )

    def _add(
        self, entry: lexicon.Entry, text: str, before: frozenset[str], after: frozenset[str]
    ) -> None:
        term = _Term(
            text,
            entry.category,
            entry.severity,
            before,
            after,
            entry.sexualizing or entry.severity > Severity.MILD,
            entry.marker,
        )
        if text.isascii():
            if not _EN_TERM_RE.fullmatch(text):
                raise ValueError(f"English lexicon term must be [a-z0-9 ]: {text!r}")
            words = text.split(" ")
            squashed = "".join(words)
            if len(words) == 1:
                self.single.setdefault(text, []).append(term)
                if len(text) >= 3:
                    self.joined.setdefault(text, []).append(term)
                if len(text) >= 4 and not _DOUBLE_RE.search(text):
                    self.nodouble.setdefault(text, []).append(term)
            else:
                self.multi.setdefault(text, []).append(term)
                for k in range(1, len(words)):
                    self.multi_prefixes.add(" ".join(words[:k]))
                if len(squashed) >= 5:
                    self.joined.setdefault(squashed, []).append(term)
        elif _CJK_ANY_RE.search(text) and not _TOKEN_RE.search(text):
            if _NON_CJK_RE.search(text):
                raise ValueError(f"Chinese lexicon term has non-CJK characters: {text!r}")
            self.cjk.setdefault(text, []).append(term)
        else:
            if not re.fullmatch(f"[a-z0-9{_CJK}]+", text):
                raise ValueError(f"mixed lexicon term must be [a-z0-9] and CJK: {text!r}")
            self.mixed.setdefault(text, []).append(term)


_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_NON_WORD_RE = re.compile(r"[\W_]+")
_S2T: dict[str, str] = {}
for _traditional, _simplified in lexicon.T2S.items():
    _S2T[_simplified] = _S2T.get(_simplified, "") + chr(_traditional)


def _mixed_pattern(text: str) -> str:
    """A term mixing Latin and CJK, with any separators between its characters and
    Traditional forms of its characters. Whole-word guards are checked on each match."""
    chars = (f"[{char}{_S2T[char]}]" if char in _S2T else re.escape(char) for char in text)
    return r"[\W_]*".join(chars)


# --- scanning -----------------------------------------------------------------------------


class _Scan:
    """The hits of one prompt."""

    def __init__(self) -> None:
        self.hits: dict[_Term, None] = {}
        self.pairs: list[tuple[_Term, _Term]] = []  # a "near" marker and its sexual term


_CATEGORY_ORDER = {category: index for index, category in enumerate(Category)}


class _Scanner:
    def __init__(self, lex: _Lexicon) -> None:
        self.lex = lex

    def scan(self, prompt: str) -> list[PromptFinding]:
        text = _normalize(prompt)
        scan = _Scan()
        if _TOKEN_RE.search(text):
            self._scan_latin(text, scan)
        if _CJK_ANY_RE.search(text):
            self._scan_chinese(text, scan)
        return _findings(scan)

    # English -----------------------------------------------------------------------------

    def _scan_latin(self, text: str, scan: _Scan) -> None:
        lex = self.lex
        plain = _TOKEN_RE.findall(text)
        self._scan_tokens(plain, plain, lex.single, scan)
        base = plain
        synthesized: set[str] = set()
        base_text = " ".join(plain)
        if _LEET_HINT_RE.search(text):
            leet_text, other = _leet(text)
            if leet_text != text:
                base = _TOKEN_RE.findall(leet_text)
                base_text = " ".join(base)
                # Read again only if leetspeak made a word the lexicon knows.
                if not lex.words.isdisjoint(set(base).difference(plain)):
                    self._scan_tokens(base, base, lex.single, scan)
                if not lex.words.isdisjoint(other.values()):
                    leet_l = [other.get(token, token) for token in base]
                    self._scan_tokens(leet_l, leet_l, lex.single, scan)
        unique = list(set(base))
        unique_text = " ".join(unique)
        if _TRIPLE_RE.search(unique_text):
            for repl in (r"\1", r"\1\1"):
                squeezed = _TRIPLE_RE.sub(repl, base_text).split(" ")
                self._scan_tokens(squeezed, base, lex.single, scan)
        squeezed = _DOUBLE_RE.sub(r"\1", unique_text).split(" ")
        if any(
            new != old and new in lex.nodouble for old, new in zip(unique, squeezed, strict=True)
        ):
            squeezed = _DOUBLE_RE.sub(r"\1", base_text).split(" ")
            self._scan_tokens(squeezed, base, lex.nodouble, scan, multi=False)
        chunks = set(_JOINED_RE.findall(text))
        in_phrase = False  # a joined word that may be part of a multi-word term
        if chunks:
            # All at once, one per line: "n.u.d.e" → "nude", "s.3.x" → "s3x" and "sex".
            lines = _SEPARATORS_RE.sub("", "\n".join(chunks))
            words = set(_NON_ALNUM_RE.sub("", lines).split("\n"))
            if _LEET_HINT_RE.search(lines):
                leet_lines, other = _leet(lines)
                leet_words = set(leet_lines.split("\n"))
                words |= leet_words
                words.update(other.get(word, word) for word in leet_words)
            synthesized |= words
            in_phrase = any(_LETTER_RE.search(word) for word in words & lex.multi_words)
        if in_phrase:
            # "k.i.l.l y.o.u.r.s.e.l.f": the words joined, then read as a sequence.
            joined_text = _JOINED_RE.sub(lambda match: _SEPARATORS_RE.sub("", match.group()), text)
            tokens = _TOKEN_RE.findall(_leet(joined_text)[0])
            self._scan_tokens(tokens, tokens, lex.single, scan)
        synthesized.update(_runs(text, lex.spelled_prefixes))
        for word in synthesized:
            self._scan_synthesized(word, scan)

    def _scan_tokens(
        self,
        tokens: list[str],
        context: list[str],
        single: Mapping[str, list[_Term]],
        scan: _Scan,
        *,
        multi: bool = True,
    ) -> None:
        lex = self.lex
        present = set(tokens)
        found = present & single.keys()
        firsts = present & lex.multi_first if multi else set()
        if not found and not firsts:
            return
        near: list[tuple[int, _Term]] = []
        sexual: list[tuple[int, int, _Term]] = []

        def record(term: _Term, start: int, end: int) -> None:
            if start > 0 and (
                context[start - 1] in term.before
                or (term.negatable and context[start - 1] in _NEGATIONS)
            ):
                return
            if term.after and end < len(context) and context[end] in term.after:
                return
            if term.marker == "near":
                near.append((start, term))
                return
            scan.hits[term] = None
            if term.sexual and term.sexualizing:
                sexual.append((start, end, term))

        count = len(tokens)
        candidates = found | firsts
        for index in [index for index, token in enumerate(tokens) if token in candidates]:
            token = tokens[index]
            if token in found:
                for term in single[token]:
                    record(term, index, index + 1)
            if token in firsts:
                key = token
                for end in range(index + 1, count):
                    key = f"{key} {tokens[end]}"
                    for term in lex.multi.get(key, ()):
                        record(term, index, end + 1)
                    if key not in lex.multi_prefixes:
                        break
        for position, marker in near:
            for start, end, term in sexual:
                if start - 3 <= position < end + 3:
                    scan.pairs.append((marker, term))

    def _scan_synthesized(self, word: str, scan: _Scan) -> None:
        lex = self.lex
        if len(word) < 3:
            return
        squeezed = _squeeze(word) if _DOUBLE_RE.search(word) else word
        keys = lex.by_squeeze.get(squeezed)
        if not keys:
            return
        variants = {word}
        if _TRIPLE_RE.search(word):
            variants |= {_TRIPLE_RE.sub(r"\1", word), _TRIPLE_RE.sub(r"\1\1", word)}
        for key in keys:
            if key in variants:
                for term in lex.joined[key]:
                    scan.hits[term] = None
            elif key == squeezed:
                for term in lex.nodouble.get(key, ()):
                    scan.hits[term] = None

    # Chinese -----------------------------------------------------------------------------

    def _scan_chinese(self, text: str, scan: _Scan) -> None:
        lex = self.lex
        cjk = _NON_CJK_RE.sub("", text)
        if lex.traditional_re.search(cjk):
            cjk = cjk.translate(lexicon.T2S)
        length = len(cjk)
        terms_at = lex.cjk.get
        prefixes = lex.cjk_prefixes
        for match in lex.cjk_first_re.finditer(cjk):
            start = match.start()
            end = start + 1
            key = match.group()
            while True:
                for term in terms_at(key, ()):
                    if _zh_allowed(term, cjk, start, end):
                        scan.hits[term] = None
                if end >= length:
                    break
                end += 1
                key = cjk[start:end]
                if key not in prefixes:
                    break
        if "岁" in cjk:
            for match in _ZH_AGE_RE.finditer(cjk):
                scan.hits[_zh_age_marker(match.group())] = None
        for match in lex.mixed_re.finditer(text):
            start, end = match.span()
            if start and text[start - 1] in _ALNUM and match.group()[0] in _ALNUM:
                continue
            if end < len(text) and text[end] in _ALNUM and match.group()[-1] in _ALNUM:
                continue
            key = _NON_WORD_RE.sub("", match.group()).translate(lexicon.T2S)
            window = text[max(0, start - 4) : end + 4].translate(lexicon.T2S)
            offset = min(start, 4)
            for term in lex.mixed.get(key, ()):
                if _zh_allowed(term, window, offset, offset + end - start):
                    scan.hits[term] = None


# An age under 18 in Chinese numerals ("十二岁", "三周岁"), in the folded CJK view.
_ZH_AGE_RE = re.compile(
    "(?<![一二三四五六七八九十百千两零〇])(?:十[一二三四五六七]?|[一二两三四五六七八九])周?岁"
)


@functools.cache
def _zh_age_marker(text: str) -> _Term:
    return _Term(text, Category.MINORS, Severity.EXTREME, frozenset(), frozenset(), True, "strong")


def _zh_allowed(term: _Term, text: str, start: int, end: int) -> bool:
    for context in term.before:  # for Chinese terms, the negations are among them
        if start >= len(context) and text.startswith(context, start - len(context)):
            return False
    return not any(text.startswith(context, end) for context in term.after)


# Pieces of one or two characters with at most two separator characters between them:
# "n u d e", "n.u.d.e", "n. u. d. 3", "se x".
_RUN_RE = re.compile(
    rf"(?<![a-z0-9@$!|€])[a-z0-9@$!|€]{{1,2}}+"
    rf"(?:[^a-z0-9@$!|€\n{_CJK}]{{1,2}}+[a-z0-9@$!|€]{{1,2}}+(?![a-z0-9@$!|€]))+"
)
_PIECE_RE = re.compile(r"[a-z0-9@$!|€]+")
# Spelled-out words are looked for among the terms of at most this many letters.
_MAX_SPELLED = 16


def _runs(text: str, prefixes: AbstractSet[str]) -> list[str]:
    """Words spelled out in pieces ("n u d e", "se x", "n u u d 3"): joins of one- and
    two-character pieces, each with at least one single character in it, kept while they
    are the beginning of a lexicon term (`prefixes`); leetspeak read in the pieces."""
    words: list[str] = []
    for run in set(_RUN_RE.findall(text)):
        pieces = _PIECE_RE.findall(run)
        variants = [pieces, [piece for piece, _ in itertools.groupby(pieces)]]
        if _LEET_ANY_RE.search(run):
            variants += [[piece.translate(table) for piece in pieces] for table in _TABLES]
        for variant in variants:
            for start in range(len(variant) - 1):
                word = variant[start]
                single = len(word) == 1
                for index in range(start + 1, len(variant)):
                    piece = variant[index]
                    word += piece
                    if word not in prefixes:
                        break
                    single = single or len(piece) == 1
                    if single and len(word) >= 3:
                        words.append(word)
    return words


def _findings(scan: _Scan) -> list[PromptFinding]:
    findings: dict[tuple[Category, str], PromptFinding] = {}

    def add(category: Category, severity: Severity, term: str) -> None:
        # "self harm" and "selfharm" are one finding.
        key = (category, term.replace(" ", ""))
        findings.setdefault(key, PromptFinding(category, severity, term))

    strong: list[_Term] = []
    weak: list[_Term] = []
    sexual: list[_Term] = []
    for term in scan.hits:
        if term.marker == "strong":
            strong.append(term)
        elif term.marker == "weak":
            weak.append(term)
        elif not term.marker:
            add(term.category, term.severity, term.term)
            if term.sexual:
                sexual.append(term)
    sexualizing = [term for term in sexual if term.sexualizing]
    explicit = [term for term in sexual if term.severity >= Severity.EXPLICIT]
    pairs = list(scan.pairs)
    if strong and sexualizing:
        pairs.append((strong[0], max(sexualizing, key=lambda term: term.severity)))
    if weak and explicit:
        pairs.append((weak[0], max(explicit, key=lambda term: term.severity)))
    for marker, term in pairs:
        add(Category.MINORS, Severity.EXTREME, f"{marker.term} + {term.term}")
    return sorted(
        findings.values(),
        key=lambda f: (-f.severity, _CATEGORY_ORDER[f.category], f.term),
    )


@functools.cache
def _scanner() -> _Scanner:
    return _Scanner(_Lexicon(lexicon.ENTRIES))


def lexicon_terms() -> list[tuple[Category, Severity, str, str]]:
    """Every expanded lexicon term as (category, severity, term, marker): for tests and
    for counting."""
    return [(term.category, term.severity, term.term, term.marker) for term in _scanner().lex.terms]
