"""Post-processing of tagger spans before the rules (spec milp 3.4): the CRF's weak labels (VAR, OBJ_NAME) and
the PARAM-vs-LIMIT role are repaired with deterministic, dev-tuned rules."""

from __future__ import annotations

from .grouping import normalize_mention

__all__ = ["bio_to_spans", "propagate_var_mentions", "fix_number_roles", "augment_objective_names"]


def bio_to_spans(words: list[str], tags: list[str]) -> list[dict]:
    from ..scoring import ner_spans

    return [{"label": t, "token_start": a, "token_end": b - 1, "text": " ".join(words[a:b])}
            for t, a, b in ner_spans(tags)]


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
    sent, k = [], 0
    for w in words:
        sent.append(k)
        if w in (".", "?", "!"):
            k += 1
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
    return spans
