"""Sentence sources for the synthetic DeepSpeech2 corpus (tools/make_corpus.py).

Every sentence is reduced to the 29-label DeepSpeech2 alphabet: upper-case
A-Z, apostrophe and single spaces, 3-25 words.  Two sources are mixed:

1. Natural sentences from the BSD ``fortune`` cookie collections, Debian
   packages ``fortunes`` and ``fortunes-min`` (files under
   /usr/share/games/fortunes).  Licence: BSD (University of California,
   Ken Arnold's fortune(6); see /usr/share/doc/fortunes/copyright).  A fixed
   list of topic files is used (the technical, ASCII-art and ethnic-joke
   files are skipped).  Entries are split into sentences and normalised:
   numbers, ordinals and years are spelled out, "&" and "%" become words,
   a few unambiguous abbreviations are expanded (Mr., Dr., etc.), hyphens
   become spaces; any sentence with an all-caps token (acronym, Roman
   numeral), other abbreviations, URLs or unusual symbols is dropped, so
   the synthesiser reads exactly the words of the transcript.

2. Template sentences from a small English grammar whose open-class words
   (nouns, verbs, adjectives, adverbs) come from the SCOWL word list in the
   Debian package ``wamerican`` (/usr/share/dict/american-english).
   Licence: SCOWL/12Dicts permissive licence ("Permission to use, copy,
   modify, distribute and sell these word lists ... is hereby granted
   without fee"; see /usr/share/doc/wamerican/copyright).  Parts of speech
   are guessed from the inflections present in the list (walk/walked/
   walking/walks is a verb, big/bigger/biggest an adjective, ...); words
   that also occur in the fortune text are preferred, the rest still appear
   now and then, so the vocabulary is open.

The closed-class words, irregular verbs and first names embedded below are
written for this project.

Both inputs are read from the installed Debian packages; the same package
versions and the same seed give the same sentences (a SHA-256 of the inputs
is recorded so that differences can be spotted).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import unicodedata
from dataclasses import dataclass

FORTUNE_DIR = "/usr/share/games/fortunes"
DICT_PATH = "/usr/share/dict/american-english"

# Topic files of the fortunes / fortunes-min packages that hold ordinary
# English prose.  Skipped: ascii-art, computers, debian, linux, linuxcookie,
# perl, knghtbrd (technical or IRC logs), ethnic, men-women (stereotype
# jokes), translate-me, zippy, disclaimer, pratchett (tiny).
FORTUNE_FILES = (
    "art", "cookie", "definitions", "drugs", "education", "food", "fortunes",
    "goedel", "humorists", "kids", "law", "literature", "love", "magic",
    "medicine", "miscellaneous", "news", "paradoxum", "people", "pets",
    "platitudes", "politics", "riddles", "science", "songs-poems", "sports",
    "startrek", "tao", "wisdom", "work",
)

SOURCES_MD = """\
# Text sources

Transcripts are upper case, A-Z, apostrophe and single spaces (the 29
DeepSpeech2 labels), 3-25 words, and no transcript occurs in two splits.

| source | Debian package | path | licence |
| --- | --- | --- | --- |
| fortune cookie files ({n_fortune_files} topic files) | `fortunes`, `fortunes-min` | {fortune_dir} | BSD (Regents of the University of California; /usr/share/doc/fortunes/copyright) |
| SCOWL English word list (open-class words for the template grammar) | `wamerican` | {dict_path} | SCOWL permissive licence: use, copy, modify, distribute and sell permitted (/usr/share/doc/wamerican/copyright) |
| closed-class words, templates, irregular verbs, first names | (written for this project, tools/sentences.py) | | project licence |

Fortune topic files used: {fortune_files}.

SHA-256 of the text inputs: `{digest}`

Sentence counts: {counts}

Audio is synthesised by espeak-ng (Debian package `espeak-ng`, GPL-3.0-or-later)
and flite (Debian package `flite`, BSD-style CMU licence); see
/usr/share/doc/espeak-ng/copyright and /usr/share/doc/flite/copyright.
"""


class SourceError(RuntimeError):
    """A text source (Debian package) is missing."""


# ---------------------------------------------------------------------------
# numbers

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve "
         "thirteen fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORD_IRREG = {"one": "first", "two": "second", "three": "third", "five": "fifth",
              "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def number_words(n: int) -> str:
    """Cardinal number in words, 0 <= n < 10**12 ("one hundred and five")."""
    if n < 0 or n >= 10**12:
        raise ValueError(n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        t, o = divmod(n, 10)
        return _TENS[t] + ("" if o == 0 else " " + _ONES[o])
    if n < 1000:
        h, r = divmod(n, 100)
        return _ONES[h] + " hundred" + ("" if r == 0 else " and " + number_words(r))
    for scale, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if n >= scale:
            q, r = divmod(n, scale)
            head = number_words(q) + " " + name
            if r == 0:
                return head
            return head + (" and " if r < 100 else " ") + number_words(r)
    raise AssertionError(n)


def ordinal_words(n: int) -> str:
    words = number_words(n).split()
    last = words[-1]
    if last in _ORD_IRREG:
        last = _ORD_IRREG[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last = last + "th"
    return " ".join(words[:-1] + [last])


def year_words(n: int) -> str:
    """1100-1999 read as a year ("nineteen eighty four", "eighteen hundred")."""
    hi, lo = divmod(n, 100)
    if lo == 0:
        return number_words(hi) + " hundred"
    if lo < 10:
        return number_words(hi) + " oh " + number_words(lo)
    return number_words(hi) + " " + number_words(lo)


# ---------------------------------------------------------------------------
# normalisation of natural text

_ABBREV = {
    "mr.": "mister", "mrs.": "missus", "dr.": "doctor", "etc.": "et cetera",
    "vs.": "versus", "prof.": "professor", "jr.": "junior", "sr.": "senior",
}
_ABBREV_RE = re.compile(r"\b(mr|mrs|dr|etc|vs|prof|jr|sr)\.", re.IGNORECASE)
# Leftover abbreviations / initials make the sentence ambiguous to read.
_BAD_ABBREV_RE = re.compile(
    r"(\b[A-Za-z]\.\s?[A-Za-z]\.)|(\b(?:St|Mt|Ft|No|Vol|Gen|Col|Capt|Lt|Sgt|Rev|Gov|Sen|Rep|"
    r"Inc|Ltd|Co|Ave|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|ca|cf|"
    r"viz|approx|dept|esp|fig|ms)\.)|(\b[A-Z]\.(?=\s+[A-Z]))")
_URLISH_RE = re.compile(r"(://|www\.|\.com\b|\.org\b|\.edu\b|@)", re.IGNORECASE)
_SPLIT_RE = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n\s*\n")
_NUM_RE = re.compile(r"^(\d{1,3}(?:,\d{3})+|\d+)(st|nd|rd|th|s|'s)?$")
_ALLOWED_AFTER = re.compile(r"^[a-z' ]*$")


def _spell_number_token(tok: str) -> str | None:
    m = _NUM_RE.match(tok)
    if not m:
        return None
    digits, suffix = m.group(1), (m.group(2) or "").lower()
    n = int(digits.replace(",", ""))
    if n >= 10**12:
        return None
    if suffix in ("st", "nd", "rd", "th"):
        return ordinal_words(n)
    if "," not in digits and len(digits) == 4 and 1100 <= n <= 1999:
        words = year_words(n)
    else:
        if len(digits) > 1 and digits.startswith("0"):
            return None
        words = number_words(n)
    if suffix == "s":  # the 1960s -> the nineteen sixties
        last = words.split()[-1]
        plural = last[:-1] + "ies" if last.endswith("y") else last + "s"
        words = " ".join(words.split()[:-1] + [plural])
    elif suffix == "'s":
        words += "'s"
    return words


def _ascii(text: str) -> str:
    text = re.sub(r"[^\n]\x08", "", text)  # overstriking (x\bx, _\bx)
    text = (text.replace("\u2019", "'").replace("\u2018", "'")
            .replace("\u201c", '"').replace("\u201d", '"')
            .replace("\u2014", " -- ").replace("\u2013", "-"))
    text = unicodedata.normalize("NFKD", text)
    return text.encode("ascii", "ignore").decode("ascii")


def normalise_sentence(raw: str) -> tuple[str, str] | None:
    """Raw English sentence -> (spoken text, TRANSCRIPT) or None if unusable.

    The spoken text is lower case with commas and the final punctuation kept
    (for prosody); its words are exactly the transcript's words.
    """
    s = _ascii(raw).strip()
    if not s or _URLISH_RE.search(s) or _BAD_ABBREV_RE.search(s):
        return None
    if not re.match(r"[\"'(]*[A-Z0-9]", s):    # fragment starting mid-sentence
        return None
    s = _ABBREV_RE.sub(lambda m: " " + _ABBREV[m.group(0).lower()] + " ", s)
    s = s.replace("&", " and ")
    s = re.sub(r"(\d)\s*%", r"\1 percent", s)
    s = re.sub(r"\$(\d+)\b", r"\1 dollars", s)
    # decimal numbers: 3.5 -> 3 point 5 (digits read one by one after the point)
    s = re.sub(r"\b(\d+)\.(\d+)\b",
               lambda m: m.group(1) + " point " + " ".join(m.group(2)), s)
    end = "?" if s.rstrip("\"') ").endswith("?") else (
        "!" if s.rstrip("\"') ").endswith("!") else ".")
    s = re.sub(r"[;:]", ",", s)
    s = re.sub(r"[\"()\[\]]", " ", s)
    s = re.sub(r"(?<=\w)-(?=\w)", " ", s)      # well-known -> well known
    s = re.sub(r"\s-+\s|-{2,}", ", ", s)
    s = re.sub(r"[.!?]+$", "", s.strip())
    if re.search(r"[.!?]", s):                 # leftover inner full stops
        return None
    spoken_words: list[str] = []
    for tok in s.split():
        comma = tok.endswith(",")
        tok = tok.rstrip(",")
        if not tok:
            if spoken_words and not spoken_words[-1].endswith(","):
                spoken_words[-1] += ","
            continue
        tok = tok.strip("'")
        if not tok:
            continue
        if any(c.isdigit() for c in tok):
            spelled = _spell_number_token(tok)
            if spelled is None:
                return None
            tok = spelled
        else:
            letters = [c for c in tok if c.isalpha()]
            if len(letters) >= 2 and all(c.isupper() for c in letters):
                return None                    # acronym / Roman numeral / SHOUTING
            if not re.fullmatch(r"[A-Za-z]+(?:'[A-Za-z]+)*", tok):
                return None
            tok = tok.lower()
        spoken_words.append(tok + ("," if comma else ""))
    while spoken_words and spoken_words[-1].endswith(","):
        spoken_words[-1] = spoken_words[-1][:-1]
    if not spoken_words:
        return None
    spoken = " ".join(spoken_words) + end
    transcript = transcript_of(spoken)
    n = len(transcript.split())
    if n < 3 or n > 25 or not valid_transcript(transcript):
        return None
    return spoken, transcript


def transcript_of(spoken: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", spoken.lower()).split()).upper()


_TRANSCRIPT_RE = re.compile(r"^[A-Z']+(?: [A-Z']+)*$")


def valid_transcript(t: str) -> bool:
    return bool(_TRANSCRIPT_RE.match(t))


def _fortune_entries(text: str) -> list[str]:
    entries = []
    for entry in re.split(r"^%\s*$", text, flags=re.MULTILINE):
        lines = []
        for line in entry.split("\n"):
            st = line.strip()
            if st.startswith("--") or re.match(r"^\s{2,}-- ", line):
                break                          # attribution: drop it and the rest
            lines.append(line)
        if any(re.search(r"\S\t", ln) for ln in lines):
            continue                           # multi-column layout (poems side by side)
        body = "\n".join(lines)
        # dialogue / Q&A labels at line start: "Q:", "A:", "Bob:"
        body = re.sub(r"(?m)^\s*[A-Z][A-Za-z]{0,15}:\s", " ", body)
        entries.append(body)
    return entries


def fortune_sentences(paths: list[str]) -> list[tuple[str, str]]:
    """All usable (spoken, TRANSCRIPT) pairs from fortune files, in file order."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for path in paths:
        with open(path, "rb") as f:
            text = f.read().decode("latin-1")
        for entry in _fortune_entries(text):
            entry = re.sub(r"[ \t]*\n[ \t]*(?!\n)", " ", entry)  # unwrap lines
            for raw in _SPLIT_RE.split(entry):
                if not raw or not raw.strip():
                    continue
                r = normalise_sentence(raw)
                if r is not None and r[1] not in seen:
                    seen.add(r[1])
                    out.append(r)
    return out


# ---------------------------------------------------------------------------
# template grammar

DETS = ["the", "the", "the", "a", "this", "that", "my", "your", "his", "her",
        "our", "their", "every", "one", "some", "no", "another", "each"]
PLURAL_DETS = ["the", "the", "some", "many", "these", "those", "my", "our",
               "their", "all the", "a few", "most", "several", "no"]
PRONOUNS = [("i", "i"), ("you", "you"), ("he", "it"), ("she", "it"),
            ("we", "we"), ("they", "they"), ("it", "it")]
OBJ_PRONOUNS = ["me", "you", "him", "her", "us", "them", "it"]
PREPS = ["in", "on", "under", "near", "behind", "beside", "with", "without",
         "for", "from", "into", "over", "across", "after", "before", "about",
         "around", "through", "against", "between", "toward", "beyond",
         "along", "inside", "outside", "above", "below", "among"]
CONJS = ["and", "but", "because", "while", "when", "although", "so", "until",
         "after", "before", "since", "unless", "if", "as soon as", "whereas"]
MODALS = ["will", "would", "can", "could", "should", "might", "must", "may",
          "did not", "will not", "cannot", "would never", "should not",
          "don't", "didn't", "won't", "can't", "shouldn't", "wouldn't"]
ADVERBS = ["quickly", "slowly", "quietly", "today", "yesterday", "again",
           "never", "always", "often", "sometimes", "carefully", "suddenly",
           "together", "alone", "at once", "once more", "every day", "at night",
           "in the morning", "last week", "tomorrow", "soon", "early", "late",
           "twice", "here", "there", "outside", "upstairs", "abroad"]
INTENSIFIERS = ["very", "quite", "rather", "too", "so", "really", "almost",
                "extremely", "fairly", "terribly", "not"]
OPENERS = ["i think that", "she said that", "he told me that", "we know that",
           "they believe that", "it seems that", "nobody knew that",
           "i heard that", "everyone agreed that", "it is true that",
           "you said that", "i doubt that", "the report says that",
           "my friend thinks that", "somebody noticed that"]
QUESTION_WORDS = ["why", "where", "when", "how", "how often"]
NAMES = """adam alice amelia andrew anna arthur ben bella carl carol charlie
chloe daniel david diana edward ella emily emma frank george grace hannah harry
helen henry isaac jack james jane jessica john joseph julia kate laura leo lily
lucy mark martha mary matthew max mia michael nathan nora oliver olivia oscar
paul peter rachel robert rose ruby ryan sam sarah sophie thomas tom victor
walter william zoe""".split()
IRREGULAR = {  # base: (past, third person)
    "be": ("was", "is"), "have": ("had", "has"), "do": ("did", "does"),
    "go": ("went", "goes"), "see": ("saw", "sees"), "take": ("took", "takes"),
    "make": ("made", "makes"), "find": ("found", "finds"), "give": ("gave", "gives"),
    "know": ("knew", "knows"), "think": ("thought", "thinks"),
    "bring": ("brought", "brings"), "buy": ("bought", "buys"),
    "catch": ("caught", "catches"), "teach": ("taught", "teaches"),
    "write": ("wrote", "writes"), "read": ("read", "reads"),
    "break": ("broke", "breaks"), "choose": ("chose", "chooses"),
    "drive": ("drove", "drives"), "eat": ("ate", "eats"), "fall": ("fell", "falls"),
    "feel": ("felt", "feels"), "forget": ("forgot", "forgets"),
    "hold": ("held", "holds"), "keep": ("kept", "keeps"), "leave": ("left", "leaves"),
    "lose": ("lost", "loses"), "meet": ("met", "meets"), "pay": ("paid", "pays"),
    "sell": ("sold", "sells"), "send": ("sent", "sends"), "sing": ("sang", "sings"),
    "speak": ("spoke", "speaks"), "steal": ("stole", "steals"),
    "swim": ("swam", "swims"), "tell": ("told", "tells"), "throw": ("threw", "throws"),
    "wear": ("wore", "wears"), "win": ("won", "wins"), "build": ("built", "builds"),
    "draw": ("drew", "draws"), "drink": ("drank", "drinks"), "fly": ("flew", "flies"),
    "grow": ("grew", "grows"), "hide": ("hid", "hides"), "ride": ("rode", "rides"),
    "run": ("ran", "runs"), "shake": ("shook", "shakes"), "sleep": ("slept", "sleeps"),
    "spend": ("spent", "spends"), "stand": ("stood", "stands"),
    "understand": ("understood", "understands"), "wake": ("woke", "wakes"),
    "begin": ("began", "begins"), "bite": ("bit", "bites"), "blow": ("blew", "blows"),
    "dig": ("dug", "digs"), "feed": ("fed", "feeds"), "fight": ("fought", "fights"),
    "forgive": ("forgave", "forgives"), "freeze": ("froze", "freezes"),
    "hang": ("hung", "hangs"), "hear": ("heard", "hears"), "lead": ("led", "leads"),
    "lend": ("lent", "lends"), "seek": ("sought", "seeks"), "shoot": ("shot", "shoots"),
    "sink": ("sank", "sinks"), "sweep": ("swept", "sweeps"), "swing": ("swung", "swings"),
    "tear": ("tore", "tears"), "weave": ("wove", "weaves"),
}


@dataclass
class Lexicon:
    nouns: list[tuple[str, str]]          # (singular, plural)
    verbs: list[tuple[str, str, str, str]]  # (base, past, 3sg, ing)
    adjs: list[str]
    advs: list[str]
    common_nouns: list[tuple[str, str]]
    common_verbs: list[tuple[str, str, str, str]]
    common_adjs: list[str]
    common_advs: list[str]


_NOUN_SUFFIXES = ("tion", "sion", "ness", "ment", "ity", "ship", "ism", "ist",
                  "ance", "ence", "hood", "dom", "ure", "age", "ery")
_ADJ_SUFFIXES = ("ous", "ful", "ive", "able", "ible", "less", "ish", "ical")
_BAD_WORDS = {  # keep the generated text inoffensive
    "nigger", "nigga", "faggot", "fag", "kike", "spic", "chink", "wop", "dyke",
    "cunt", "twat", "fuck", "shit", "bitch", "whore", "slut", "rape", "rapist",
    "bastard", "cock", "dick", "pussy", "tit", "tits", "jap", "gook", "retard",
}


def build_lexicon(dict_words: list[str], common: set[str]) -> Lexicon:
    """Guess parts of speech from the inflections in a word list."""
    D = set(w for w in dict_words if re.fullmatch(r"[a-z]+", w))
    base = sorted(w for w in D if 3 <= len(w) <= 12 and w not in _BAD_WORDS
                  and not re.search(r"(.)\1\1", w))
    verbs: dict[str, tuple[str, str, str, str]] = {}
    for b, (past, third) in IRREGULAR.items():
        ing = (b[:-1] + "ing") if b.endswith("e") and b not in ("be", "see") else b + "ing"
        if b in ("run", "swim", "win", "dig", "begin", "forget"):
            ing = b + b[-1] + "ing"
        verbs[b] = (b, past, third, ing)
    for b in base:
        if b in verbs or b.endswith(("ing", "ed", "s", "ly")):
            continue
        if b.endswith("e"):
            past, ing = b + "d", b[:-1] + "ing"
        elif b.endswith("y") and len(b) > 3 and b[-2] not in "aeiou":
            past, ing = b[:-1] + "ied", b + "ing"
        else:
            past, ing = b + "ed", b + "ing"
            if past not in D:
                past, ing = b + b[-1] + "ed", b + b[-1] + "ing"
        if b.endswith(("s", "sh", "ch", "x", "z", "o")):
            third = b + "es"
        elif b.endswith("y") and b[-2] not in "aeiou":
            third = b[:-1] + "ies"
        else:
            third = b + "s"
        if past in D and ing in D and third in D:
            verbs[b] = (b, past, third, ing)
    adjs: set[str] = set()
    for b in base:
        if b in verbs:
            continue
        stem = b[:-1] + "i" if b.endswith("y") else (b[:-1] if b.endswith("e") else b)
        if (stem + "er" in D and stem + "est" in D) or (
                b.endswith(_ADJ_SUFFIXES) and len(b) >= 6):
            adjs.add(b)
    advs: set[str] = set()
    for a in adjs:
        for cand in (a + "ly", a[:-1] + "ily", a[:-2] + "ly" if a.endswith("le") else "",
                     a + "ally" if a.endswith("ic") else ""):
            if cand and cand in D:
                advs.add(cand)
                break
    nouns: dict[str, str] = {}
    for b in base:
        if b in verbs or b in adjs or b.endswith(("ing", "ed", "ly", "s")):
            continue
        if b.endswith(("s", "sh", "ch", "x", "z")):
            plural = b + "es"
        elif b.endswith("y") and b[-2] not in "aeiou":
            plural = b[:-1] + "ies"
        else:
            plural = b + "s"
        if plural in D or b.endswith(_NOUN_SUFFIXES):
            nouns[b] = plural
    noun_list = sorted(nouns.items())
    verb_list = [verbs[k] for k in sorted(verbs)]
    adj_list, adv_list = sorted(adjs), sorted(advs)
    return Lexicon(
        nouns=noun_list, verbs=verb_list, adjs=adj_list, advs=adv_list,
        common_nouns=[n for n in noun_list if n[0] in common],
        common_verbs=[v for v in verb_list if v[0] in common],
        common_adjs=[a for a in adj_list if a in common],
        common_advs=[a for a in adv_list if a in common],
    )


class TemplateGenerator:
    """Random grammatical(ish) English sentences with an open vocabulary."""

    def __init__(self, lex: Lexicon, rng: random.Random, rare_prob: float = 0.25):
        self.lex, self.rng, self.rare = lex, rng, rare_prob

    def _pick(self, common, full):
        if common and self.rng.random() >= self.rare:
            return self.rng.choice(common)
        return self.rng.choice(full)

    def noun(self):
        return self._pick(self.lex.common_nouns, self.lex.nouns)

    def verb(self):
        return self._pick(self.lex.common_verbs, self.lex.verbs)

    def adj(self):
        a = self._pick(self.lex.common_adjs, self.lex.adjs)
        if self.rng.random() < 0.15:
            a = self.rng.choice(INTENSIFIERS) + " " + a
        return a

    def adv(self):
        if self.rng.random() < 0.5:
            return self.rng.choice(ADVERBS)
        return self._pick(self.lex.common_advs, self.lex.advs)

    def np(self, simple: bool = False) -> tuple[str, bool]:
        """Noun phrase -> (text, is_plural)."""
        r = self.rng.random()
        if r < 0.12:
            return self.rng.choice(NAMES), False
        if r < 0.20:
            n = self.rng.choice([2, 2, 3, 3, 4, 5, 6, 7, 8, 10, 12, 20, 40, 100,
                                 self.rng.randint(2, 999), self.rng.randint(1000, 99999)])
            adj = (self.adj() + " ") if self.rng.random() < 0.3 else ""
            return f"{number_words(n)} {adj}{self.noun()[1]}", True
        plural = self.rng.random() < 0.3
        sing, plur = self.noun()
        words = [self.rng.choice(PLURAL_DETS) if plural else self.rng.choice(DETS)]
        if self.rng.random() < 0.45:
            words.append(self.adj())
        words.append(plur if plural else sing)
        if not simple and self.rng.random() < 0.2:
            words.append(self.rng.choice(PREPS) + " " + self.np(simple=True)[0])
        if words[0] == "a" and words[1][0] in "aeiou":
            words[0] = "an"
        return " ".join(words), plural

    def subject(self) -> tuple[str, str]:
        """-> (text, agreement) where agreement is 'it', 'they', 'i', 'we', 'you'."""
        if self.rng.random() < 0.25:
            return self.rng.choice(PRONOUNS)
        text, plural = self.np()
        return text, "they" if plural else "it"

    def obj(self) -> str:
        if self.rng.random() < 0.15:
            return self.rng.choice(OBJ_PRONOUNS)
        return self.np()[0]

    def vp(self, agr: str) -> str:
        base, past, third, ing = self.verb()
        r = self.rng.random()
        if r < 0.35:
            v = past
        elif r < 0.55:
            v = third if agr == "it" else base
        elif r < 0.75:
            v = self.rng.choice(MODALS) + " " + base
        elif r < 0.87:
            be = {"i": "was", "it": "was", "they": "were", "we": "were", "you": "were"}[agr]
            v = be + " " + ing
        else:
            be = {"i": "am", "it": "is", "they": "are", "we": "are", "you": "are"}[agr]
            return be + " " + self.adj() + (
                (" " + self.rng.choice(PREPS) + " " + self.np(simple=True)[0])
                if self.rng.random() < 0.3 else "")
        parts = [v]
        if self.rng.random() < 0.8:
            parts.append(self.obj())
        if self.rng.random() < 0.35:
            parts.append(self.rng.choice(PREPS) + " " + self.np(simple=True)[0])
        if self.rng.random() < 0.3:
            parts.append(self.adv())
        return " ".join(parts)

    def clause(self) -> str:
        subj, agr = self.subject()
        return subj + " " + self.vp(agr)

    def sentence(self) -> str:
        r = self.rng.random()
        if r < 0.45:
            s = self.clause() + "."
        elif r < 0.65:
            s = self.clause() + ", " + self.rng.choice(CONJS) + " " + self.clause() + "."
        elif r < 0.73:
            s = self.rng.choice(OPENERS) + " " + self.clause() + "."
        elif r < 0.83:
            subj, agr = self.subject()
            aux = "does" if agr == "it" else "do"
            if self.rng.random() < 0.5:
                aux = "did"
            qw = self.rng.choice(QUESTION_WORDS)
            s = f"{qw} {aux} {subj} {self.verb()[0]} {self.obj()}?"
        elif r < 0.9:
            s = f"please {self.verb()[0]} {self.obj()} {self.adv()}."
        elif r < 0.95:
            np, plural = self.np()
            s = f"there {'were' if plural else 'was'} {np} {self.rng.choice(PREPS)} {self.np(simple=True)[0]}."
        else:
            (np1, pl1), (np2, pl2) = self.np(), self.np()
            s = (f"{np1} {'are' if pl1 else 'is'} {self.adj()}, and "
                 f"{np2} {'are' if pl2 else 'is'} {self.adj()}.")
        return s


# ---------------------------------------------------------------------------
# loading the installed sources


@dataclass
class TextSources:
    natural: list[tuple[str, str]]   # (spoken, TRANSCRIPT) from fortunes
    lexicon: Lexicon
    digest: str
    fortune_files: list[str]


def load_sources(fortune_dir: str = FORTUNE_DIR, dict_path: str = DICT_PATH) -> TextSources:
    paths = []
    for name in FORTUNE_FILES:
        p = os.path.join(fortune_dir, name)
        if os.path.isfile(p):
            paths.append(p)
    if not paths:
        raise SourceError(f"no fortune files in {fortune_dir} "
                          "(install the Debian packages 'fortunes' and 'fortunes-min')")
    if not os.path.isfile(dict_path):
        raise SourceError(f"word list {dict_path} not found (install the Debian package 'wamerican')")
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        h.update(os.path.basename(p).encode() + b"\0" + data + b"\0")
    with open(dict_path, "rb") as f:
        dict_data = f.read()
    h.update(b"dict\0" + dict_data)
    natural = fortune_sentences(paths)
    common = set()
    for _, t in natural:
        common.update(t.lower().split())
    words = dict_data.decode("utf-8", "replace").split()
    lex = build_lexicon(words, common)
    return TextSources(natural=natural, lexicon=lex, digest=h.hexdigest(),
                       fortune_files=[os.path.basename(p) for p in paths])


def _demo() -> None:  # python tools/sentences.py -> a few samples
    src = load_sources()
    print(f"natural sentences: {len(src.natural)}; nouns {len(src.lexicon.nouns)} "
          f"verbs {len(src.lexicon.verbs)} adjs {len(src.lexicon.adjs)} advs {len(src.lexicon.advs)}")
    rng = random.Random(0)
    for spoken, t in rng.sample(src.natural, 15):
        print("N", t)
    gen = TemplateGenerator(src.lexicon, rng)
    for _ in range(15):
        s = gen.sentence()
        print("T", transcript_of(s), "|", s)


if __name__ == "__main__":
    _demo()
