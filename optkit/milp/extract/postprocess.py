"""Post-processing of tagger spans before the rules (spec milp 3.4): the CRF's weak labels (VAR, OBJ_NAME) and
the PARAM-vs-LIMIT role are repaired with deterministic, dev-tuned rules."""

from __future__ import annotations

from .grouping import normalize_mention

__all__ = ["bio_to_spans", "propagate_var_mentions", "fix_number_roles", "augment_objective_names", "select_variables",
           "head_noun_mentions", "detect_objective_direction", "clean_objective_names", "tagger_spans",
           "repair_spans", "add_comparison_cues", "add_limit_cues"]


def bio_to_spans(words: list[str], tags: list[str]) -> list[dict]:
    from ..scoring import ner_spans

    return [{"label": t, "token_start": a, "token_end": b - 1, "text": " ".join(words[a:b])}
            for t, a, b in ner_spans(tags)]


def _sentence_ids(words: list[str]) -> list[int]:
    """Sentence index of every token (sentences end at ".", "?", "!")."""
    ids, k = [], 0
    for w in words:
        ids.append(k)
        k += w in (".", "?", "!")
    return ids


def propagate_var_mentions(words: list[str], spans: list[dict]) -> list[dict]:
    """Tag every further occurrence of a tagged VAR mention (equal normal form, 3.4 item 4) that overlaps no
    span as a VAR span too: the CRF misses repeated mentions, which the PARAM -> variable rules need."""
    used = {j for s in spans for j in range(s["token_start"], s["token_end"] + 1)}
    keys = set()
    for s in spans:
        if s["label"] == "VAR":
            nf = normalize_mention(s.get("text") or " ".join(words[s["token_start"]:s["token_end"] + 1]))
            if nf:
                keys.add(nf)
    norm = []
    for w in words:
        nf = normalize_mention(w)
        norm.append(nf[0] if len(nf) == 1 else w.lower())
    new = []
    for k in sorted(keys, key=lambda t: (-len(t), t)):
        n = len(k)
        for i in range(len(words) - n + 1):
            if tuple(norm[i:i + n]) == k and not any(j in used for j in range(i, i + n)):
                new.append({"label": "VAR", "token_start": i, "token_end": i + n - 1, "text": " ".join(words[i:i + n])})
                used.update(range(i, i + n))
    return spans + new


def fix_number_roles(words: list[str], spans: list[dict]) -> list[dict]:
    """PARAM-vs-LIMIT is the tagger's hard call (3.4 item 3): a LIMIT in a sentence with no CONST_DIR span and a
    VAR mention before it ("A double-load machine sells 400 items") is relabelled PARAM. Tuned on NL4Opt dev."""
    sent = _sentence_ids(words)
    out = []
    for x in spans:
        x = dict(x)
        a = x["token_start"]
        if x["label"] == "LIMIT":
            same = [t for t in spans if sent[t["token_start"]] == sent[a]]
            if (not any(t["label"] == "CONST_DIR" for t in same)
                    and any(t["label"] == "VAR" and t["token_end"] < a for t in same)):
                x["label"] = "PARAM"
        out.append(x)
    return out


_OBJ_SKIP = {"the", "a", "an", "total", "number", "of", "amount", "overall", "their", "his", "her", "its", "our",
             "your", "my", "daily", "weekly", "monthly"}
_OBJ_STOP = {"and", "for", "from", "by", "while", "subject", "given", "to", "in", "that", "when", "with", "if", "so",
             "using", "at", "per", "they", "he", "she", "it", "we", "this", "is", "are", "can", "will", "should"}


def augment_objective_names(words: list[str], spans: list[dict]) -> list[dict]:
    """The CRF's weakest label is OBJ_NAME (its absence makes the objective ``objvar``). After an OBJ_DIR with no
    OBJ_NAME within 8 tokens, the noun phrase that follows ("minimize the total amount of [pollution]") becomes
    one; then every free occurrence of an OBJ_NAME head word ("pollution", "profit") becomes a mention, so the
    per-variable objective coefficients of 3.4 item 6 find it in their sentence. Tuned on NL4Opt dev."""
    from .grouping import singularize

    spans = list(spans)
    used = {j for s in spans for j in range(s["token_start"], s["token_end"] + 1)}
    for s in list(spans):
        if s["label"] != "OBJ_DIR":
            continue
        e = s["token_end"]
        if any(t["label"] == "OBJ_NAME" and e < t["token_start"] <= e + 8 for t in spans):
            continue
        i = e + 1
        while i < len(words) and words[i].lower() in _OBJ_SKIP:
            i += 1
        j = i
        while (j < len(words) and j - i < 3 and words[j].isalpha() and words[j].lower() not in _OBJ_STOP
               and j not in used):
            j += 1
        if j > i:
            spans.append({"label": "OBJ_NAME", "token_start": i, "token_end": j - 1, "text": " ".join(words[i:j])})
            used.update(range(i, j))
    heads = set()
    for s in spans:
        if s["label"] == "OBJ_NAME":
            text = s.get("text") or " ".join(words[s["token_start"]:s["token_end"] + 1])
            ws = [singularize(w.lower()) for w in text.split() if w.lower() not in _OBJ_SKIP]
            if ws:
                heads.add(ws[-1])
    for i, w in enumerate(words):
        if i not in used and singularize(w.lower()) in heads:
            spans.append({"label": "OBJ_NAME", "token_start": i, "token_end": i, "text": w})
            used.add(i)
    return _anchor_objective_units(words, spans, used)


# Words of an objective phrase that say nothing about its unit ("minimize the [sugar] intake").
_OBJ_GENERIC = _OBJ_SKIP | _OBJ_STOP | {"intake", "needed", "used", "produced", "spent", "made", "over", "required",
                                        "consumed", "generated", "created", "possible", "can", "be", "all", "put",
                                        "out", "that", "get", "obtained", "sold", "delivered", "transported"}
_OBJ_SYNONYMS = {"time": ("minute", "hour", "second", "day"), "money": ("$", "dollar"), "cost": ("$", "dollar")}


def _anchor_objective_units(words, spans, used):
    """Gold NL4Opt marks the unit of each objective coefficient ("3 grams of [sugar]", "takes 30 [minutes]") as an
    OBJ_NAME; the objective sentence names it later ("minimize sugar intake"). Any content word of an OBJ_NAME
    phrase (time words stand for minutes/hours) found in the unit window of a number (<= 4 tokens after it, within
    the clause) becomes an OBJ_NAME mention there."""
    from .grouping import singularize

    keys = set()
    for s in spans:
        if s["label"] == "OBJ_NAME":
            text = s.get("text") or " ".join(words[s["token_start"]:s["token_end"] + 1])
            for w in text.lower().split():
                if w.isalpha() and w not in _OBJ_GENERIC:
                    w = singularize(w)
                    keys.add(w)
                    keys.update(_OBJ_SYNONYMS.get(w, ()))
    if not keys:
        return spans
    for s in list(spans):
        if s["label"] not in ("PARAM",):
            continue
        for j in range(s["token_end"] + 1, min(len(words), s["token_end"] + 5)):
            w = words[j].lower()
            if w in (",", ".", ";", "and", "while", "whereas", "but") or any(c.isdigit() for c in w):
                break
            if j not in used and singularize(w) in keys:
                spans.append({"label": "OBJ_NAME", "token_start": j, "token_end": j, "text": words[j]})
                used.add(j)
                break
    return spans


# Variable selection (tuned on NL4Opt dev): a mention candidate is a run of tokens with P(VAR) >= CAND_PROB that
# overlaps no other span; groups are scored by the summed mean P(VAR) of their mentions.
CAND_PROB = 0.5
FALLBACK_PROBS = (0.25,)
KEEP_TOP = 2
THIRD_MIN_SCORE = 1.5
COMPARE_CUES = True
DROP_GENERIC = True
COORD_SWAP = True
COORD_MIN_PROB = 0.03


def select_variables(words: list[str], spans: list[dict], probs, labels) -> list[dict]:
    """NL4Opt problems have 2-3 decision variables (dev: 96 of 99 have two); the CRF both misses mentions and tags
    stray nouns ("software section", "pandemic") as VAR, and every stray group became a variable. Candidate
    mentions from the posterior (runs with P(VAR) >= ``CAND_PROB``) are added, mentions are grouped
    (:func:`~optkit.milp.extract.grouping.group_mentions`), groups are ranked by the summed mean P(VAR) of their
    mentions, and the best ``KEEP_TOP`` are kept, a third one only with score >= ``THIRD_MIN_SCORE``. Spans of
    the dropped groups are removed."""
    import numpy as np

    from .grouping import group_mentions

    lab = list(labels)
    pv = np.zeros(len(words))
    for k, name in enumerate(lab):
        if name.endswith("-VAR"):
            pv += probs[:, k]
    used = {j for s in spans for j in range(s["token_start"], s["token_end"] + 1)}
    cands = [dict(s) for s in spans if s["label"] == "VAR"]
    for c in cands:  # "electrical -" / "vitamin" cut at a hyphen: take the rest of the compound ("- added milk")
        b = c["token_end"]
        if words[b] == "-" or (b + 2 < len(words) and words[b + 1] == "-"
                               and b + 1 not in used and words[b + 2].isalpha()):
            if words[b] != "-":
                b += 1
            stop = b
            while (b + 1 < len(words) and b + 1 not in used and words[b + 1].isalpha()
                   and words[b + 1].lower() not in _COORD_STOP and b - stop < 2):
                b += 1
            used.update(range(c["token_end"] + 1, b + 1))
            c["token_end"] = b
            c["text"] = " ".join(words[c["token_start"]:b + 1])
    for thr in (CAND_PROB, *FALLBACK_PROBS):
        i = 0
        while i < len(words):
            if pv[i] >= thr and i not in used and any(c.isalpha() for c in words[i]):
                j = i
                while j + 1 < len(words) and pv[j + 1] >= thr and j + 1 not in used:
                    j += 1
                cands.append({"label": "VAR", "token_start": i, "token_end": j, "text": " ".join(words[i:j + 1])})
                used.update(range(i, j + 1))
                i = j + 1
            else:
                i += 1
        if len(group_mentions([c["text"] for c in cands])) >= 2:
            break  # lower thresholds only while fewer than two variables were found
    if not cands:
        return spans
    if DROP_GENERIC:
        cands = _drop_generic(cands)
    coord = _coordinated(words, cands, used) if COORD_SWAP else {}
    coord = {k: c for k, c in coord.items()  # a verb across "or" ("or outsource to") is no variable
             if not c.get("new") or pv[c["token_start"]:c["token_end"] + 1].mean() >= COORD_MIN_PROB}
    if len(group_mentions([c["text"] for c in cands])) < 2:  # one variable found: look across "and"/"or"
        coord = coord or _coordinated(words, cands, used)
        cands += [c for c in coord.values() if c.get("new")]
    elif COORD_SWAP:
        cands += [c for c in coord.values() if c.get("new")]
    cands.sort(key=lambda s: s["token_start"])
    groups = group_mentions([c["text"] for c in cands])
    gid = {m: g for g, ms in enumerate(groups) for m in ms}
    score = [0.0] * len(groups)
    for c in cands:
        score[gid[c["text"]]] += float(pv[c["token_start"]:c["token_end"] + 1].mean())
    rank = sorted(range(len(groups)), key=lambda g: -score[g])
    keep = set(rank[:KEEP_TOP])
    if len(rank) > KEEP_TOP and score[rank[KEEP_TOP]] >= THIRD_MIN_SCORE:
        keep.add(rank[KEEP_TOP])
    if COORD_SWAP and coord:
        # the variables are usually introduced together ("either bikes or by car"): a kept group outside every
        # coordination gives way to a coordinated one
        co = {gid[c["text"]] for c in coord.values()}
        inside, outside = [g for g in keep if g in co], [g for g in keep if g not in co]
        spare = [g for g in rank if g in co and g not in keep]
        if inside and outside and spare:
            keep.discard(min(outside, key=lambda g: score[g]))
            keep.add(spare[0])
    out = [s for s in spans if s["label"] != "VAR"] + [{k: v for k, v in c.items() if k != "new"} for c in cands
                                                       if gid[c["text"]] in keep]
    return sorted(out, key=lambda s: s["token_start"])


def _drop_generic(cands: list[dict]) -> list[dict]:
    """A bare head noun ("planes", "containers") that ends two different specific mentions ("commercial planes",
    "private planes") names the category, not a variable; grouped, it would merge both variables."""
    forms = {c["text"]: normalize_mention(c["text"]) for c in cands}
    distinct = set(forms.values())

    from .grouping import _contains

    def generic(nf):
        longer = [f for f in distinct if len(f) > len(nf) and f[len(f) - len(nf):] == nf]
        return any(not (_contains(f, g) or _contains(g, f)) for f in longer for g in longer)

    return [c for c in cands if not generic(forms[c["text"]])]


_COORD_SKIP = {"by", "through", "using", "the", "a", "an", "either", "via", "with"}
_COORD_STOP = {"and", "or", "to", "of", "in", "on", "for", "is", "are", "can", "will", "has", "have", "be", "that",
               "which", "it", "they", "two", "types", "kinds", "methods", "ways", "per", "each", "every", "week",
               "day", "hour", "month", "year", "minute"}


def _coordinated(words: list[str], cands: list[dict], used: set) -> dict:
    """Mentions in a coordination with another mention ("trucks and boats", "either bikes or by car"): existing
    candidates are returned as they are; an untagged noun phrase (<= 3 words) on the other side of the
    conjunction becomes a new candidate (flag ``new``)."""
    lw = [w.lower() for w in words]
    start = {c["token_start"]: c for c in cands}
    end = {c["token_end"]: c for c in cands}
    taken = set(used) | {j for c in cands for j in range(c["token_start"], c["token_end"] + 1)}
    out: dict = {}

    def np_after(i):
        while i < len(words) and lw[i] in _COORD_SKIP:
            i += 1
        j = i
        while (j < len(words) and j - i < 3 and words[j].isalpha() and lw[j] not in _COORD_STOP
               and lw[j] not in _COORD_SKIP and j not in taken):
            j += 1
        return (i, j - 1) if j > i else None

    def np_before(i):
        j = i
        while j >= 0 and lw[j] in _COORD_SKIP:
            j -= 1
        k = j
        while (k >= 0 and j - k < 3 and words[k].isalpha() and lw[k] not in _COORD_STOP
               and lw[k] not in _COORD_SKIP and k not in taken):
            k -= 1
        return (k + 1, j) if j > k else None

    def add_new(c, r):
        if r:
            out[id(c)] = c
            new = {"label": "VAR", "token_start": r[0], "token_end": r[1], "text": " ".join(words[r[0]:r[1] + 1]),
                   "new": True}
            out[id(new)] = new
            taken.update(range(r[0], r[1] + 1))

    for c in cands:
        a, b = c["token_start"], c["token_end"]
        if b + 1 < len(words) and lw[b + 1] in ("and", "or"):
            k = b + 2
            while k < len(words) and lw[k] in _COORD_SKIP:
                k += 1
            if k in start:
                out[id(c)] = c
                out[id(start[k])] = start[k]
            else:
                add_new(c, np_after(b + 2))
        k = a - 1
        while k >= 0 and lw[k] in _COORD_SKIP:
            k -= 1
        if k >= 1 and lw[k] in ("and", "or") and k - 1 not in end:
            add_new(c, np_before(k - 1))
    return out


def head_noun_mentions(words: list[str], spans: list[dict]) -> list[dict]:
    """A variable named by a multi-word mention ("sleeping pills") is later called by its head noun alone ("one
    serving of pills"); when that head belongs to exactly one variable, its free occurrences become VAR mentions."""
    from .grouping import group_mentions, singularize

    var = [s for s in spans if s["label"] == "VAR"]
    if not var:
        return spans
    groups = group_mentions([s.get("text") or " ".join(words[s["token_start"]:s["token_end"] + 1]) for s in var])
    heads: dict[str, set[int]] = {}
    words_of: dict[int, set[str]] = {}
    for gi, ms in enumerate(groups):
        for m in ms:
            nf = normalize_mention(m)
            words_of.setdefault(gi, set()).update(nf)
            if len(nf) >= 2 and nf[-1].isalpha() and len(nf[-1]) > 3:
                heads.setdefault(nf[-1], set()).add(gi)
    unique = {h for h, gs in heads.items() if len(gs) == 1
              and not any(h in ws for gi, ws in words_of.items() if gi not in gs)}
    if not unique:
        return spans
    used = {j for s in spans for j in range(s["token_start"], s["token_end"] + 1)}
    var_end = {s["token_end"] for s in var}
    out = list(spans)
    for i, w in enumerate(words):
        # not right after another mention: "Solid waste" is not "Solid" + the head of "liquid waste"
        if i not in used and i - 1 not in var_end and w.isalpha() and singularize(w.lower()) in unique:
            out.append({"label": "VAR", "token_start": i, "token_end": i, "text": w})
    return sorted(out, key=lambda s: s["token_start"])


_DIR_STRONG = ("maximiz", "maximis", "minimiz", "minimis")
_DIR_WEAK = {"reduce", "decrease", "lower", "lowest", "least", "fewest", "minimum", "maximum", "most", "highest",
             "largest", "greatest", "smallest", "cheapest"}


def detect_objective_direction(words: list[str], spans: list[dict]) -> list[dict]:
    """Without an OBJ_DIR span the rules default to maximise; take the last maximise/minimise word of the text, else
    a weaker cue ("reduce", "fewest", "minimum") in the last sentence."""
    if any(s["label"] == "OBJ_DIR" for s in spans):
        return spans
    used = {j for s in spans for j in range(s["token_start"], s["token_end"] + 1)}
    lw = [w.lower() for w in words]
    pick = None
    for i in range(len(words) - 1, -1, -1):
        if i not in used and lw[i].startswith(_DIR_STRONG):
            pick = i
            break
    if pick is None:
        last = max((i for i, w in enumerate(words[:-1]) if w in (".", "?", "!")), default=-1)
        for i in range(len(words) - 1, last, -1):
            if i not in used and lw[i] in _DIR_WEAK:
                pick = i
                break
    if pick is None:
        return spans
    return sorted(spans + [{"label": "OBJ_DIR", "token_start": pick, "token_end": pick, "text": words[pick]}],
                  key=lambda s: s["token_start"])


_MODALS = {"can", "will", "may", "must", "need", "needs", "use", "uses", "used", "take", "takes", "make", "makes"}
_MONEY = {"cost", "bill", "wage", "salary", "pay", "paid", "earn", "earning", "spend", "spent", "expense", "price",
          "$", "dollar", "profit", "revenue", "income", "fee", "budget"}
_OBJ_RELATED = {"cost": {"$", "dollar", "spend", "spent", "expense", "pay", "paid", "price"},
                "profit": {"earn", "earning", "revenue", "income", "sell"}}


def clean_objective_names(words: list[str], spans: list[dict]) -> list[dict]:
    """Keep the OBJ_NAME mentions consistent with the objective phrase (the one nearest the OBJ_DIR): a mention
    sharing no content word with it ("cost" while maximising "the number of coconuts") and modal verbs caught by
    singularisation ("can" from "cans") are dropped. A count objective ("the total number of cans") whose noun is
    never the unit of a number (outside "per/each <noun>") keeps only its own phrase: it sums the variables."""
    from .grouping import singularize

    od = [s for s in spans if s["label"] == "OBJ_DIR"]
    names = [s for s in spans if s["label"] == "OBJ_NAME"]
    if not od or not names:
        return spans
    main = min(names, key=lambda s: abs(s["token_start"] - od[-1]["token_start"]))
    text = (main.get("text") or " ".join(words[main["token_start"]:main["token_end"] + 1])).lower()
    lw = [w.lower() for w in words]
    tail = []  # "minimize total [production] costs": the tagged phrase may stop before its head noun
    for j in range(main["token_end"] + 1, min(len(words), main["token_end"] + 3)):
        if not lw[j].isalpha() or lw[j] in _OBJ_STOP or lw[j] in _OBJ_GENERIC:
            break
        tail.append(lw[j])
    keys = {singularize(w) for w in text.split() + tail if w.isalpha() and w not in _OBJ_GENERIC}
    for k in list(keys):
        keys.update(_OBJ_RELATED.get(k, ()))
        keys.update(_OBJ_SYNONYMS.get(k, ()))
    if keys & _MONEY:
        keys |= _MONEY

    def related(s):
        ws = [w for w in lw[s["token_start"]:s["token_end"] + 1] if w.isalpha()]
        if len(ws) == 1 and ws[0] in _MODALS:
            return False
        return any(singularize(w) in keys for w in ws) or not keys

    before = lw[max(0, main["token_start"] - 3):main["token_start"]]
    count = ("number" in text.split() or "number" in before) and keys
    var_tok = {j for s in spans if s["label"] == "VAR" for j in range(s["token_start"], s["token_end"] + 1)}
    if count and any(singularize(w) in keys and (j in var_tok or j - 1 in var_tok) for j, w in enumerate(lw)
                     if not main["token_start"] <= j <= main["token_end"]):
        # "the total number of stores" where stores are the variables ("film-based stores"): sum of variables
        return [s for s in spans if s["label"] != "OBJ_NAME" or s is main]
    if count:
        as_unit = False
        for s in spans:
            if s["label"] != "PARAM":
                continue
            for j in range(s["token_end"] + 1, min(len(words), s["token_end"] + 4)):
                if lw[j] in (",", ".", ";", "and") or any(c.isdigit() for c in lw[j]):
                    break
                if singularize(lw[j]) in keys and lw[j - 1] not in ("per", "each", "every", "a"):
                    as_unit = True
        if not as_unit:
            return [s for s in spans if s["label"] != "OBJ_NAME" or s is main]
    return [s for s in spans if s["label"] != "OBJ_NAME" or s is main or related(s)]


def tagger_spans(words: list[str], tagger) -> list[dict]:
    """The fully offline entity stage: CRF (Viterbi) spans, the VAR repairs, then :func:`repair_spans`."""
    spans = propagate_var_mentions(words, bio_to_spans(words, tagger.tag(words)))
    if hasattr(tagger, "marginals"):
        spans = select_variables(words, spans, tagger.marginals(words), tagger.labels)
        spans = propagate_var_mentions(words, spans)  # mentions of variables found by coordination
    spans = head_noun_mentions(words, spans)
    return repair_spans(words, spans)


def repair_spans(words: list[str], spans: list[dict]) -> list[dict]:
    """The repairs of every non-VAR label, in their tuned order (also used around an LLM's variables)."""
    spans = count_objective_from_var(words, detect_objective_direction(words, spans))
    if COMPARE_CUES:
        spans = add_comparison_cues(words, spans)
    if ENUM_LIMITS:
        spans = enumerated_limits(words, spans)
    if LIMIT_CUES:
        spans = add_limit_cues(words, spans)
    spans = augment_objective_names(words, fix_number_roles(words, spans))
    return clean_objective_names(words, spans)


_COMPARE_CUES = (("must", "exceed"), ("exceed",), ("exceeds",), ("more", "than"), ("less", "than"), ("fewer", "than"),
                 ("greater", "than"), ("larger", "than"), ("at", "least"), ("at", "most"), ("must", "be"),
                 ("should", "be"), ("has", "to", "be"), ("needs", "to", "be"))


def add_comparison_cues(words: list[str], spans: list[dict]) -> list[dict]:
    """The CRF often misses the CONST_DIR of a comparison between variables ("the number of cars used must exceed
    the number of trucks used", "there must be twice as many medium containers than large containers"), which
    loses an ``xy``/``xby`` row. In a sentence with VAR mentions of two different variables and neither a LIMIT nor
    a CONST_DIR, the first comparison cue becomes a CONST_DIR."""
    sent = _sentence_ids(words)
    lw = [w.lower() for w in words]
    used = {j for s in spans for j in range(s["token_start"], s["token_end"] + 1)}
    out = list(spans)
    for si in sorted(set(sent)):
        mine = [s for s in spans if sent[s["token_start"]] == si]
        if any(s["label"] in ("LIMIT", "CONST_DIR") for s in mine):
            continue
        forms = {normalize_mention(s.get("text") or "") for s in mine if s["label"] == "VAR"}
        if len(forms) < 2:
            continue
        idx = [i for i in range(len(words)) if sent[i] == si]
        hit = None
        for i in idx:
            for cue in _COMPARE_CUES:
                n = len(cue)
                if tuple(lw[i:i + n]) == cue and not any(j in used for j in range(i, i + n)):
                    hit = (i, i + n - 1)
                    break
            if hit:
                break
        if hit:
            a, b = hit
            out.append({"label": "CONST_DIR", "token_start": a, "token_end": b, "text": " ".join(words[a:b + 1])})
    return sorted(out, key=lambda s: s["token_start"])


_LIMIT_CUES = ("needs", "need", "must", "requires", "require", "required", "has", "have", "available", "only",
               "minimum", "maximum", "least", "most", "up")
LIMIT_CUES = True


def add_limit_cues(words: list[str], spans: list[dict]) -> list[dict]:
    """A LIMIT whose own clause has no CONST_DIR takes the operator of the nearest one in the sentence, often the
    wrong one ("needs to move 1000 units ... and must have a maximum of 40%"); a cue word up to 5 tokens before
    the LIMIT within its clause ("needs", "must", "available") becomes its CONST_DIR."""
    lw = [w.lower() for w in words]
    used = {j for s in spans for j in range(s["token_start"], s["token_end"] + 1)}
    cdir = {j for s in spans if s["label"] == "CONST_DIR" for j in range(s["token_start"], s["token_end"] + 1)}
    out = list(spans)
    for s in spans:
        if s["label"] != "LIMIT":
            continue
        a = s["token_start"]
        lo = a
        while lo > 0 and a - lo < 6 and lw[lo - 1] not in (",", ".", ";", "and", "?", "!", "while", "but"):
            lo -= 1
        if any(j in cdir for j in range(lo, a)):
            continue
        hi = s["token_end"] + 1
        if any(j in cdir for j in range(hi, min(len(words), hi + 4))):
            continue
        for j in range(a - 1, lo - 1, -1):
            if lw[j] in _LIMIT_CUES and j not in used:
                out.append({"label": "CONST_DIR", "token_start": j, "token_end": j, "text": words[j]})
                used.add(j)
                cdir.add(j)
                break
    return sorted(out, key=lambda s: s["token_start"])


ENUM_LIMITS = True
AFTER_CDIR = True
AVAILABLE_AFTER = True


_MULT_WORDS = {"twice", "thrice", "times", "half", "third", "thirds", "quarter", "fourth", "fifth", "double",
               "triple", "fold"}


def _multiplier_like(words, s) -> bool:
    """A comparison multiplier or fraction ("twice", "a third", "3 times as many"): a PARAM of xby/ratio."""
    nxt = [w.lower() for w in words[s["token_end"] + 1:s["token_end"] + 3]]
    return bool(set(s["text"].lower().split()) & _MULT_WORDS) or bool(set(nxt) & {"times", "as", "fold"})


def _available_after(words, end, var_tok):
    """Index of "available" when the clause after a number says it is a supply ("<n> units of wood are
    available", no VAR or number between), else None."""
    for j in range(end + 1, min(len(words), end + 7)):
        w = words[j].lower()
        if w in ("available", "remaining"):
            return j
        if w in (",", ".", ";", "and", "while", "but", "per", "each") or j in var_tok or any(c.isdigit() for c in w):
            return None
    return None


def enumerated_limits(words: list[str], spans: list[dict]) -> list[dict]:
    """In a list of requirements ("at least 160 grams of protein and 180 grams of carbs") the CRF labels the later
    numbers PARAM; a PARAM whose previous number in the sentence is a LIMIT, at most 8 tokens apart with no VAR
    between them (or right after "and"), is a LIMIT. Also: "three" + "times" (or "percent") is one number span, and a
    non-multiplier PARAM right after a CONST_DIR ("at least $500") is a LIMIT."""
    sent = _sentence_ids(words)
    spans = sorted(spans, key=lambda s: s["token_start"])
    cdir_end = {s["token_end"] for s in spans if s["label"] == "CONST_DIR"}
    taken = {j for s in spans for j in range(s["token_start"], s["token_end"] + 1)}
    var_tok = {j for s in spans if s["label"] == "VAR" for j in range(s["token_start"], s["token_end"] + 1)}
    out, prev, var_between, extra = [], None, False, []
    for s in spans:
        s = dict(s)
        e = s["token_end"]
        if (s["label"] in ("PARAM", "LIMIT") and e + 1 < len(words) and e + 1 not in taken
                and words[e + 1].lower() in ("times", "percent", "%")):
            s["token_end"] = e + 1  # "three times", "thirty percent": the word belongs to the number
            s["text"] = " ".join(words[s["token_start"]:e + 2])
        if (s["label"] == "PARAM" and AFTER_CDIR and any(s["token_start"] - k in cdir_end for k in (1, 2))
                and not _multiplier_like(words, s)):
            s["label"] = "LIMIT"  # "at least $ 500": a number right after its direction is a limit
        cue = _available_after(words, s["token_end"], var_tok) if AVAILABLE_AFTER else None
        if s["label"] in ("PARAM", "LIMIT") and cue is not None and cue not in taken:
            s["label"] = "LIMIT"  # "100 units of wood are available": the cue is its CONST_DIR
            extra.append({"label": "CONST_DIR", "token_start": cue, "token_end": cue, "text": words[cue]})
            taken.add(cue)
        if s["label"] == "VAR":
            var_between = True
        elif s["label"] in ("PARAM", "LIMIT"):
            a = s["token_start"]
            # "at least 8 refrigerator ABC's and 5 refrigerator XYZ's": a VAR between is fine after "and"/","
            if (s["label"] == "PARAM" and prev is not None and prev["label"] == "LIMIT"
                    and sent[prev["token_start"]] == sent[a] and a - prev["token_end"] <= 8
                    and (not var_between or words[a - 1].lower() in ("and", ","))
                    and not _multiplier_like(words, s)):
                s["label"] = "LIMIT"
            prev, var_between = s, False
        out.append(s)
    return sorted(out + extra, key=lambda s: s["token_start"])


def count_objective_from_var(words: list[str], spans: list[dict]) -> list[dict]:
    """"minimize the total number of [meals]" with the noun tagged VAR: that noun is the objective's name (a count
    of the variables), not one more variable mention."""
    lw = [w.lower() for w in words]
    out = [dict(s) for s in spans]
    for d in [s for s in out if s["label"] == "OBJ_DIR"]:
        e = d["token_end"]
        for s in out:
            a = s["token_start"]
            if s["label"] == "VAR" and e < a <= e + 6 and "number" in lw[e + 1:a] and lw[a - 1] == "of":
                s["label"] = "OBJ_NAME"
    return out
