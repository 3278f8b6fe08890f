"""Rule-based formulator from NL4Opt-style spans (spec milp 3.4 items 5-9).

``formulate_from_spans(tokens, spans, order_mapping=None)`` turns tagged spans (VAR, PARAM, LIMIT, CONST_DIR,
OBJ_DIR, OBJ_NAME) into a :class:`~optkit.milp.ir.MILPModel`:

5. PARAM -> variable (same sentence): "<num> ... per/for/each <VAR>" within 6 tokens, else the nearest VAR (distance
   x 1.6 for a VAR after the number); "respectively" assigns in order; a PARAM in a sentence without a VAR is shared
   by all variables.
6. Objective: max if OBJ_DIR says max/high/most/great/large; per variable the PARAM closest to an OBJ_NAME in its
   sentence (window 8 tokens, 30 with "respectively"); none -> ``objvar``.
7. Unit signature of a number: stemmed content words in the 6 tokens after it (+ a ``$`` flag).
8. Each LIMIT is one constraint (operator from the nearest CONST_DIR; type: xby, ratio, bound, linear via a global
   greedy one-to-one (limit, variable) assignment of PARAMs, bound, sum).
9. A CONST_DIR without a LIMIT and with >= 2 variables in its clause -> ``xy`` (``xby`` with a multiplier).

Details tuned on NL4Opt dev only (the module constants below; faithful declaration accuracy with gold spans and
gold ``order_mapping`` 0.921):

- a VAR after the number across a clause break ("$350 and the profit per chair") weighs distance x 2.5 (x 4 across
  while/whereas/but/;), and the "per <VAR>" cue does not cross such breaks;
- OBJ_NAME mentions right after per/every/each ("per hour") are denominators, not objective anchors; with a money
  objective (profit, cost, ...) ``$`` numbers are 3 tokens closer;
- signatures also take the unit words inside the span ("8000 minutes"), skip VAR tokens and parentheses, stop at
  while/whereas/but; a shared ``$`` flag scores 0.5, a ``$`` mismatch -0.5; a LIMIT with an OBJ_NAME before it in
  its clause ("wage bill below $200000") matches the objective's numbers. ``PRE_WEIGHT`` (words before the number)
  is off, as the spec says (0.2 would add 2 rows on dev);
- "<limit> X or Y" and "<limit> ... in total" are ``sum``; a limit without CONST_DIR reads as <=; a comparison
  without operator reads as >=; "larger/more/higher" are >=;
- a CONST_DIR counts as "with a LIMIT" when it is the nearest CONST_DIR of some LIMIT (``COMPARE_MODE``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence

from ..._errors import InvalidProblemError
from ..ir import MILPModel
from ..numbers import parse_number
from .grouping import group_mentions

__all__ = ["formulate_from_spans"]

_SENT_END = {".", "?", "!"}
_PUNCT = set(".,;:!?()")
_MAX_WORDS = ("max", "high", "most", "great", "large")
_LE_CUES = ("at most", "available", "budget", "only", "has", "have", "maximum", "up to", "no more than", "capacity",
            "limit", "less", "fewer", "below", "under", "not exceed", "can not", "cannot", "within", "max")
_GE_CUES = ("at least", "minimum", "require", "must", "need", "no less than", "more than", "greater", "exceed",
            "above", "over", "min")
_EQ_CUES = ("exactly", "equal to")
_NEG = {"not", "cannot", "n't", "never", "no"}
_FRACTION_WORDS = {"half", "third", "thirds", "quarter", "quarters", "fourth", "fifth", "fifths", "percent", "%",
                   "tenth", "tenths"}
_GENERIC_UNITS = {"hour", "unit", "kg", "$", "minute", "gram", "dollar", "pound", "lb", "ton", "litre", "liter",
                  "ml", "gallon", "day", "item", "piece", "g", "mg", "calorie", "square", "foot", "feet", "meter",
                  "metre", "acre"}
_STOP = {"a", "an", "the", "of", "to", "in", "on", "for", "per", "each", "is", "are", "be", "it", "its", "they",
         "their", "them", "that", "this", "with", "by", "at", "as", "can", "will", "and", "or", "while", "which",
         "there", "has", "have", "had", "takes", "take", "requires", "require", "needs", "need", "uses", "use",
         "costs", "cost", "s", "'s", "also", "whereas", "only", "most", "least", "than", "from", "into", "worth"}
AFTER_BREAK_FACTOR = 2.5
STRONG_BREAK_FACTOR = 4.0
SIG_STOPPERS = {"while", "whereas", "but"}
PRE_WEIGHT = 0.0
PRE_WINDOW = 6
NUMBER_WORDS = (r"zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\w+teen|twenty|thirty|forty|"
                r"fifty|sixty|seventy|eighty|ninety|hundred|thousand|million|billion|half|third|thirds|quarter|"
                r"quarters|fourth|fifth|twice|thrice|double|triple|times|percent|cent|cents|usd|fold|a|and|dozen")
MIN_SLOT_SCORE = 0.0
COMPARE_MODE = "consumed"
DOLLAR_MATCH = 0.5
DOLLAR_MISMATCH = 0.5
DEFAULT_LIMIT_OP = "LESS_OR_EQUAL"
_PER_CUES = {"per", "for", "each", "every", "a"}


def _tok_text(t) -> str:
    return t["text"] if isinstance(t, Mapping) else str(t)


def _stem(w: str) -> str:
    w = w.lower()
    for suf in ("ing", "es", "s", "ed"):
        if len(w) > len(suf) + 2 and w.endswith(suf) and not w.endswith("ss"):
            return w[: -len(suf)]
    return w


class _Span:
    __slots__ = ("text", "label", "start", "end", "sent", "idx")

    def __init__(self, text, label, start, end, sent, idx):
        self.text, self.label, self.start, self.end, self.sent, self.idx = text, label, start, end, sent, idx

    def __repr__(self):
        return f"{self.label}({self.text!r}@{self.start})"


def _operator(text: str, words: list[str], pos: int) -> str | None:
    t = " " + text.lower() + " "
    for c in _EQ_CUES:
        if f" {c} " in t:
            return "EQUAL"
    neg = any(n in t.split() or "n't" in t for n in _NEG) or any(w.lower() in _NEG or w.lower() == "n't"
                                                                 for w in words[max(0, pos - 3):pos])
    if "exceed" in t or "more than" in t or "greater" in t or "over" in t.split() or "above" in t.split():
        return "LESS_OR_EQUAL" if neg else "GREATER_OR_EQUAL"
    if any(f" {w} " in t for w in ("larger", "more", "higher", "bigger")):
        return "LESS_OR_EQUAL" if neg else "GREATER_OR_EQUAL"
    if "less than" in t or "fewer" in t or "smaller" in t or "lower" in t:
        return "GREATER_OR_EQUAL" if neg else "LESS_OR_EQUAL"
    for c in _GE_CUES:
        if c in t:
            return "GREATER_OR_EQUAL"
    for c in _LE_CUES:
        if c in t:
            return "LESS_OR_EQUAL"
    return None


def _is_multiplier(text: str, words: list[str], end: int) -> bool:
    t = text.lower()
    if any(w in t.split() or t.endswith(w) for w in ("twice", "thrice", "double", "triple", "times", "fold")):
        return True
    nxt = " ".join(w.lower() for w in words[end + 1:end + 3])
    return nxt.startswith("times") or nxt.startswith("as much") or nxt.startswith("as many") or nxt.startswith(
        "-fold") or nxt.startswith("fold")


def _is_fraction(text: str, words: list[str], end: int) -> bool:
    t = text.lower()
    if "%" in t or "percent" in t or any(w in _FRACTION_WORDS for w in re.split(r"[\s-]+", t)):
        return True
    nxt = words[end + 1].lower() if end + 1 < len(words) else ""
    return nxt in ("%", "percent")


def formulate_from_spans(tokens: Sequence, spans: Sequence[Mapping], *, order_mapping: Mapping | None = None):
    """Rule pipeline of spec 3.4 items 5-9 on tagged spans.

    ``tokens``: NL4Opt token dicts (``text``) or strings. ``spans``: dicts with ``text``, ``label``,
    ``token_start`` and ``token_end`` (inclusive). ``order_mapping`` (mention -> variable index) gives the
    variables (gold grouping); without it mentions are grouped by :func:`group_mentions`.

    Returns ``(MILPModel, diagnostics)``; diagnostics is a list of dicts (``code``, ``severity``, ``message``):
    a LIMIT or PARAM whose text is not a number is dropped with an ``unparsable_number`` warning. Raises
    :class:`~optkit.InvalidProblemError` for malformed spans or when there is no VAR span.
    """
    words = [_tok_text(t) for t in tokens]
    lw = [w.lower() for w in words]
    n = len(words)
    diags: list[dict] = []
    sent_of = []
    s = 0
    for w in words:
        sent_of.append(s)
        if w in _SENT_END:
            s += 1
    clause_of = []
    c = 0
    for w in lw:
        clause_of.append(c)
        if w in _SENT_END or w in (";", ",", ":"):
            c += 1
    sp: list[_Span] = []
    checked = []
    for i, d in enumerate(spans):
        try:
            a, b = int(d["token_start"]), int(d["token_end"])
            str(d["label"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidProblemError(
                f"spans[{i}]: expected a dict with token_start, token_end and label ({exc!r})") from None
        if not (0 <= a < n and 0 <= b < n):
            raise InvalidProblemError(f"spans[{i}]: token range {a}..{b} outside the {n} tokens")
        checked.append((a, max(a, b), d))
    for i, (a, b, d) in enumerate(sorted(checked, key=lambda t: (t[0], t[1]))):
        sp.append(_Span(d.get("text") or " ".join(words[a:b + 1]), d["label"], a, b, sent_of[min(a, n - 1)], i))
    kept_spans = []
    dropped_limits: list[_Span] = []
    for x in sp:
        if x.label in ("PARAM", "LIMIT"):
            try:
                parse_number(x.text)
            except InvalidProblemError as exc:
                diags.append({"code": "unparsable_number", "severity": "warning",
                              "message": f"{x.label} span {x.text!r} at token {x.start} dropped: {exc}"})
                if x.label == "LIMIT":
                    dropped_limits.append(x)
                continue
        kept_spans.append(x)
    sp = kept_spans
    var_spans = [x for x in sp if x.label == "VAR"]
    var_tok = {j for x in var_spans for j in range(x.start, x.end + 1)}

    # ---------------------------------------------------------------- variables
    if order_mapping:
        groups: dict[int, list[str]] = {}
        for k, i in order_mapping.items():
            groups.setdefault(int(i), []).append(k)
        names = [groups[i][0] for i in sorted(groups)]
        mentions = [groups[i] for i in sorted(groups)]
        keys = list(order_mapping)

        def var_index(text):
            if text in order_mapping:
                return int(order_mapping[text])
            low = {k.lower(): v for k, v in order_mapping.items()}
            if text.lower() in low:
                return int(low[text.lower()])
            best = max(keys, key=lambda k: difflib.SequenceMatcher(None, k.lower(), text.lower()).ratio())
            return int(order_mapping[best])
    else:
        gl = group_mentions([x.text for x in var_spans])
        names = [g[0] for g in gl]
        mentions = gl
        m2i = {m: i for i, g in enumerate(gl) for m in g}

        def var_index(text):
            return m2i[text]

    nv = len(names)
    if nv == 0:
        raise InvalidProblemError("spans: no VAR span, cannot formulate (no decision variables)")
    for x in var_spans:
        x.idx = var_index(x.text)
    by_sent: dict[int, list[_Span]] = {}
    for x in sp:
        by_sent.setdefault(x.sent, []).append(x)

    def sent_has(si, word):
        return any(lw[j] == word for j in range(n) if sent_of[j] == si)

    # ---------------------------------------------------------------- comparison multipliers (PARAM in xby)
    params = [x for x in sp if x.label == "PARAM"]
    limits = [x for x in sp if x.label == "LIMIT"]
    cdirs = [x for x in sp if x.label == "CONST_DIR"]
    mult_params = set()
    for p in params:
        svars = {v.idx for v in by_sent[p.sent] if v.label == "VAR"}
        has_cd = any(x.label == "CONST_DIR" for x in by_sent[p.sent])
        is_mult = _is_multiplier(p.text, lw, p.end) or (has_cd and _is_fraction(p.text, lw, p.end))
        no_limit = not any(x.label == "LIMIT" for x in by_sent[p.sent])
        if COMPARE_MODE != "sentence" and not no_limit:
            no_limit = not any(x.label == "LIMIT" and abs(x.start - p.start) <= 3 for x in by_sent[p.sent])
        if is_mult and len(svars) >= 2 and no_limit:
            mult_params.add(id(p))

    # ---------------------------------------------------------------- 5. PARAM -> variable
    assign: dict[int, list[int]] = {}  # id(param) -> variable indices
    for si, group in by_sent.items():
        vs = [x for x in group if x.label == "VAR"]
        ps = [x for x in group if x.label == "PARAM" and id(x) not in mult_params]
        if not ps:
            continue
        if not vs:
            for p in ps:
                assign[id(p)] = list(range(nv))
            continue
        if sent_has(si, "respectively"):
            order = list(dict.fromkeys(v.idx for v in vs))
            if len(order) >= 2 and len(ps) % len(order) == 0:
                for k, p in enumerate(ps):
                    assign[id(p)] = [order[k % len(order)]]
                continue
        for p in ps:
            chosen = None
            for v in vs:  # cue "<num> ... per/for/each <VAR>" within 6 tokens
                if not (p.end < v.start <= p.end + 6):
                    continue
                gap = lw[p.end + 1:v.start]
                if any(w in _PER_CUES - {"a"} for w in gap) and not any(
                        w in _PUNCT or w in ("and", "or", "while", "whereas") or re.fullmatch(r"[\d.,$%]+", w)
                        for w in gap):
                    chosen = v
                    break
            if chosen is None:
                def dist(v, p=p):
                    if v.end < p.start:
                        return p.start - v.end
                    gap = lw[p.end + 1:v.start]
                    if any(w in ("while", "whereas", "but", ";") for w in gap):
                        return STRONG_BREAK_FACTOR * (v.start - p.end)
                    brk = any(w in _PUNCT or w == "and" for w in gap)
                    return (AFTER_BREAK_FACTOR if brk else 1.6) * (v.start - p.end)
                chosen = min(vs, key=dist)
            assign[id(p)] = [chosen.idx]

    # ---------------------------------------------------------------- 7. unit signatures
    def signature(x: _Span) -> set[str]:
        sig = set()
        if x.start > 0 and lw[x.start - 1] == "$" or "$" in x.text:
            sig.add("$")
        for w in re.findall(r"[a-z]+", x.text.lower()):
            if w not in _STOP and not re.fullmatch(NUMBER_WORDS, w):
                sig.add(_stem(w))
        for j in range(x.end + 1, min(n, x.end + 7)):
            w = lw[j]
            if w in ("(", ")"):
                continue
            if w in _PUNCT or w == "and" or re.fullmatch(r"[\d.,$%]+", w) or w in SIG_STOPPERS:
                break
            if w in _STOP or j in var_tok or not re.search(r"[a-z]", w):
                continue
            sig.add(_stem(w))
        if PRE_WEIGHT > 0:
            for j in range(x.start - 1, max(-1, x.start - 1 - PRE_WINDOW), -1):
                w = lw[j]
                if w in _PUNCT or w in SIG_STOPPERS or w == "and" or re.fullmatch(r"[\d.,%]+", w):
                    break
                if w in _STOP or j in var_tok or not re.search(r"[a-z]", w):
                    continue
                sig.add("<" + _stem(w))
        if x.label == "LIMIT" and any(o.sent == x.sent and clause_of[o.start] == clause_of[x.start]
                                      and o.end < x.start for o in onames):
            sig.add("__obj__")
        if id(x) in obj_ids:
            sig.add("__obj__")
        if "dollar" in sig or "dollars" in sig:
            sig.add("$")
        return sig

    # ---------------------------------------------------------------- 6. objective
    od = [x for x in sp if x.label == "OBJ_DIR"]
    direction = od[0].text if od else "maximize"
    sense = "maximize" if any(k in direction.lower() for k in _MAX_WORDS) else "minimize"
    onames = [x for x in sp if x.label == "OBJ_NAME"]
    money_obj = any(re.search(r"profit|cost|revenue|earn|pay|paid|wage|price|income|return|spend|fundrais|money|"
                              r"expense|sales", o.text.lower()) for o in onames)
    anchor_names = [o for o in onames if not (o.start > 0 and lw[o.start - 1] in ("per", "every", "each"))]
    obj_terms: dict[int, tuple[float, _Span]] = {}
    obj_ids = set()
    for p in params:
        if id(p) not in assign:
            continue
        win = 30 if sent_has(p.sent, "respectively") else 8
        cands = [o.start - p.end if o.start > p.end else p.start - o.end
                 for o in anchor_names if o.sent == p.sent]
        cands = [d for d in cands if d <= win]
        if not cands:
            continue
        dist = min(cands)
        if money_obj and (p.start > 0 and lw[p.start - 1] == "$" or "$" in p.text):
            dist -= 3
        for vi in assign[id(p)]:
            if vi not in obj_terms or dist < obj_terms[vi][0]:
                obj_terms[vi] = (dist, p)
    if obj_terms and len(obj_terms) < nv:
        # "a profit of $200 per acre of strawberries and $500 per acre of watermelons": the second coefficient lies
        # beyond the window; take a PARAM of a missing variable from a sentence that already gave one, with the
        # same $ flag as the coefficients found there.
        found_sents = {p.sent: (p.start > 0 and lw[p.start - 1] == "$") for _, p in obj_terms.values()}
        for p in params:
            vis = [vi for vi in assign.get(id(p), []) if vi not in obj_terms]
            if not vis or p.sent not in found_sents or len(assign[id(p)]) != 1:
                continue
            if (p.start > 0 and lw[p.start - 1] == "$") != found_sents[p.sent]:
                continue
            if any(id(p) == id(q) for _, q in obj_terms.values()):
                continue
            obj_terms[vis[0]] = (99.0, p)
    for _, p in obj_terms.values():
        obj_ids.add(id(p))
    obj_name = onames[-1].text if onames else None
    if od:  # prefer the OBJ_NAME nearest the OBJ_DIR
        near = [o for o in onames if o.sent == od[0].sent]
        if near:
            obj_name = min(near, key=lambda o: abs(o.start - od[0].start)).text
    if obj_terms:
        objective = {"type": "objective", "sense": sense, "direction": direction, "name": obj_name,
                     "terms": {names[vi]: p.text for vi, (_, p) in sorted(obj_terms.items())}}
    else:
        objective = {"type": "objvar", "sense": sense, "direction": direction, "name": obj_name,
                     "vars": list(names)}

    # ---------------------------------------------------------------- 8. constraints from LIMITs
    def nearest_cdir(x: _Span):
        cs = [c for c in cdirs if c.sent == x.sent]
        if not cs:
            return None
        return min(cs, key=lambda c: (abs(c.start - x.start), c.start > x.start))

    def clause_vars(x: _Span):
        return [v for v in by_sent[x.sent] if v.label == "VAR"]

    def local_vars(x: _Span):
        return [v for v in by_sent[x.sent] if v.label == "VAR" and clause_of[v.start] == clause_of[x.start]]

    resource_params = [p for p in params if id(p) in assign and id(p) not in mult_params]
    sigs = {id(p): signature(p) for p in resource_params}
    df: dict[str, int] = {}
    for p in resource_params:
        for w in sigs[id(p)]:
            df[w] = df.get(w, 0) + 1

    def score(lim_sig: set[str], p: _Span) -> float:
        sc = 0.0
        for w in lim_sig & sigs[id(p)]:
            if w == "$":
                sc += DOLLAR_MATCH
            elif w[0] == "<":
                sc += PRE_WEIGHT / max(1, df.get(w, 1))
            else:
                sc += 0.1 if w in _GENERIC_UNITS else 1.0 / max(1, df.get(w, 1))
        if ("$" in lim_sig) != ("$" in sigs[id(p)]):
            sc -= DOLLAR_MISMATCH
        if id(p) in obj_ids:
            sc -= 0.4
        return sc

    cons: list[dict | None] = [None] * len(limits)
    linear_pending = []
    for li, lim in enumerate(limits):
        cd = nearest_cdir(lim)
        op = _operator(cd.text, lw, cd.start) if cd else None
        vs = clause_vars(lim)
        vidx = list(dict.fromkeys(v.idx for v in vs))
        dtext = cd.text if cd else None
        if _is_multiplier(lim.text, lw, lim.end) and len(vidx) >= 2:  # (a)
            before = [v for v in vs if v.end < lim.start]
            after = [v for v in vs if v.start > lim.end]
            x = before[-1] if before else vs[0]
            y = after[0] if after else vs[-1]
            if x.idx == y.idx:
                others = [v for v in vs if v.idx != x.idx]
                y = others[0]
            cons[li] = {"type": "xby", "x_var": names[x.idx], "param": lim.text, "y_var": names[y.idx],
                        "operator": op or DEFAULT_LIMIT_OP, "direction": dtext}
            continue
        if _is_fraction(lim.text, lw, lim.end):  # (b)
            lv = local_vars(lim) or vs
            after = [v for v in lv if v.start > lim.end]
            before = [v for v in lv if v.end < lim.start]
            v = after[0] if after else (before[-1] if before else None)
            if v is not None:
                cons[li] = {"type": "ratio", "var": names[v.idx], "limit": lim.text,
                            "operator": op or DEFAULT_LIMIT_OP, "direction": dtext}
                continue
        lsig = signature(lim)
        after_words = lw[lim.end + 1:lim.end + 6]
        if any(w in ("total", "combined", "altogether", "overall") for w in after_words) and not any(
                w in _PUNCT for w in after_words[:after_words.index(next(
                    w for w in after_words if w in ("total", "combined", "altogether", "overall")))]):
            cons[li] = {"type": "sum", "limit": lim.text, "operator": op or DEFAULT_LIMIT_OP, "direction": dtext}
            continue
        best = max((score(lsig, p) for p in resource_params), default=0.0)
        right = None
        lv = local_vars(lim)
        for v in lv:  # (c) a VAR right after the limit
            if lim.end < v.start <= lim.end + 4 and not any(lw[j] in _PUNCT for j in range(lim.end + 1, v.start)):
                right = v
                break
        if right is not None:
            nxt = [v for v in lv if v.start > right.end and v.idx != right.idx and v.start <= right.end + 2]
            if nxt:  # "1200 raincoats or umbrellas"
                cons[li] = {"type": "sum", "limit": lim.text, "operator": op or DEFAULT_LIMIT_OP, "direction": dtext}
                continue
        if right is not None and best < 0.5:
            cons[li] = {"type": "upperbound" if op != "GREATER_OR_EQUAL" else "lowerbound",
                        "var": names[right.idx], "limit": lim.text, "operator": op or DEFAULT_LIMIT_OP,
                        "direction": dtext}
            continue
        linear_pending.append((li, lim, lsig, op, dtext, lv))

    # (d) global greedy one-to-one assignment over (limit, variable) slots
    cand = []
    for li, lim, lsig, _op, _d, _vs in linear_pending:
        for p in resource_params:
            sc = score(lsig, p)
            if sc > MIN_SLOT_SCORE:
                for vi in assign[id(p)]:
                    cand.append((sc, -abs(p.start - lim.start), li, vi, id(p), p))
    cand.sort(key=lambda t: (-t[0], -t[1]))
    used_p: dict[int, set[int]] = {}
    slot: dict[tuple[int, int], _Span] = {}
    for _sc, _d, li, vi, pid, p in cand:
        if (li, vi) in slot or vi in used_p.get(pid, set()):
            continue
        # a param shared by several variables may serve one limit only
        owners = {k[0] for k, q in slot.items() if id(q) == pid}
        if owners and li not in owners:
            continue
        slot[(li, vi)] = p
        used_p.setdefault(pid, set()).add(vi)
    for li, lim, _lsig, op, dtext, vs in linear_pending:
        terms = {names[vi]: slot[(li, vi)].text for vi in range(nv) if (li, vi) in slot}
        if terms:
            cons[li] = {"type": "linear", "terms": terms, "limit": lim.text, "operator": op or DEFAULT_LIMIT_OP,
                        "direction": dtext}
            continue
        vidx = list(dict.fromkeys(v.idx for v in vs))
        if len(vidx) == 1:  # (e)
            cons[li] = {"type": "upperbound" if op != "GREATER_OR_EQUAL" else "lowerbound", "var": names[vidx[0]],
                        "limit": lim.text, "operator": op or DEFAULT_LIMIT_OP, "direction": dtext}
        else:  # (f)
            cons[li] = {"type": "sum", "limit": lim.text, "operator": op or DEFAULT_LIMIT_OP, "direction": dtext}

    # ---------------------------------------------------------------- 9. comparisons
    lim_sents = {x.sent for x in limits}
    consumed = {id(c) for c in (nearest_cdir(x) for x in limits + dropped_limits) if c is not None}
    comps, comp_cdirs = [], []
    for cd in cdirs:
        if (cd.sent in lim_sents) if COMPARE_MODE == "sentence" else (id(cd) in consumed):
            continue
        vs = [v for v in by_sent[cd.sent] if v.label == "VAR"]
        if len({v.idx for v in vs}) < 2:
            continue
        cl = [v for v in vs if clause_of[v.start] == clause_of[cd.start]]
        if len({v.idx for v in cl}) >= 2:
            vs = cl
        before = [v for v in vs if v.end < cd.start]
        after = [v for v in vs if v.start > cd.end]
        if before:
            x = before[-1]
        elif after:
            x, after = after[0], after[1:]
        else:
            continue
        y = next((v for v in after if v.idx != x.idx), None)
        if y is None:
            continue
        op = _operator(cd.text, lw, cd.start) or "GREATER_OR_EQUAL"
        mult = sorted((p for p in params if id(p) in mult_params and p.sent == cd.sent),
                      key=lambda p: abs(p.start - cd.end))
        comp_cdirs.append(cd)
        if mult:
            comps.append({"type": "xby", "x_var": names[x.idx], "param": mult[0].text, "y_var": names[y.idx],
                          "operator": op, "direction": cd.text})
        else:
            comps.append({"type": "xy", "x_var": names[x.idx], "y_var": names[y.idx], "operator": op,
                          "direction": cd.text})
    def sentence(si):
        return " ".join(words[j] for j in range(n) if sent_of[j] == si)

    # each row keeps the sentence it was read from (diagnostics such as ratio_base_guess read it)
    for li, c in enumerate(cons):
        if c is not None:
            c["text"] = sentence(limits[li].sent)
    for c, cd in zip(comps, comp_cdirs):
        c["text"] = sentence(cd.sent)
    constraints = [c for c in cons if c is not None] + comps
    for c in constraints:
        if c.get("direction") is None:
            c.pop("direction", None)
    kept = []
    for c in constraints:
        raw = c.get("limit", c.get("param"))
        if raw is not None:
            try:
                parse_number(raw)
            except Exception as exc:  # noqa: BLE001 - a span that is not a number: drop the constraint
                diags.append({"code": "unparsable_number", "severity": "warning",
                              "message": f"{c['type']} {raw!r}: {exc}"})
                continue
        kept.append(c)
    constraints = kept
    for t in list(objective.get("terms", {})):
        try:
            parse_number(objective["terms"][t])
        except Exception as exc:  # noqa: BLE001
            diags.append({"code": "unparsable_number", "severity": "warning", "message": f"objective {t!r}: {exc}"})
            del objective["terms"][t]
    if objective["type"] == "objective" and not objective["terms"]:
        objective = {k: v for k, v in objective.items() if k != "terms"} | {"type": "objvar", "vars": list(names)}
    variables = [{"name": names[i], "mentions": [m for m in mentions[i] if m != names[i]]} for i in range(nv)]
    model = MILPModel(variables=variables, objective=objective, constraints=constraints)
    return model, diags
