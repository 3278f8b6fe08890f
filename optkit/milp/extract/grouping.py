"""Group VAR mentions into decision variables (spec milp 3.4 item 4).

Mentions are normalised (lowercase; determiners, possessives, "number of", "units of" dropped; words singularised),
then grouped by equal normal form, then by token prefix/suffix containment ("film-based" / "film-based stores"),
then by a shared modifier with an anaphoric head ("premium one"). Variables are ordered by first mention.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["normalize_mention", "singularize", "group_mentions"]

_DETERMINERS = {"a", "an", "the", "this", "that", "these", "those", "each", "every", "its", "their", "his", "her",
                "our", "your", "my", "some", "any", "all", "both", "per"}
_LEAD_PHRASES = (("number", "of"), ("units", "of"), ("unit", "of"), ("amount", "of"), ("quantity", "of"),
                 ("servings", "of"), ("serving", "of"))
_ANAPHORIC = {"one", "ones", "type", "types", "kind", "kinds", "variety", "varieties", "version", "versions",
              "model", "models"}
_KEEP_S = ("ss", "us", "is", "ous")


def singularize(word: str) -> str:
    """ies -> y, (s|x|ch|sh)es -> drop es, s -> drop unless ss (and a few Latin endings)."""
    w = word
    if len(w) <= 3:
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if re.search(r"(s|x|ch|sh|z)es$", w):
        return w[:-2]
    if w.endswith("s") and not w.endswith(_KEEP_S):
        return w[:-1]
    return w


def _words(text: str) -> list[str]:
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"[\u201c\u201d\"]", "", text)
    text = re.sub(r"[.,;:!?]+$", "", text.strip())
    text = re.sub(r"'s\b|s'(?=\s|$)", " ", text)
    return [w for w in re.split(r"[\s]+", text.strip()) if w]


def normalize_mention(text: str) -> tuple[str, ...]:
    """Normal form of one mention as a tuple of words."""
    ws = _words(text)
    changed = True
    while changed and ws:
        changed = False
        if ws[0] in _DETERMINERS:
            ws = ws[1:]
            changed = True
            continue
        for ph in _LEAD_PHRASES:
            if tuple(ws[: len(ph)]) == ph and len(ws) > len(ph):
                ws = ws[len(ph):]
                changed = True
                break
    out = []
    for w in ws:
        w = singularize(w)
        if len(w) > 3 and w.endswith("ie"):  # "hoodie" / "hoodies" -> "hoody"
            w = w[:-2] + "y"
        out.append(w)
    return tuple(out)


def _contains(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """``a`` is a token prefix or suffix of ``b`` (or equal); "non-AC seats" does not contain "AC seats"."""
    if not (0 < len(a) <= len(b)):
        return False
    if b[len(b) - len(a):] == a:
        return b[:len(b) - len(a)] not in (("non",), ("non", "-"), ("not",))
    return b[: len(a)] == a


def _subset(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Token subset, except that a negation prefix makes a different thing ("AC seat" / "non-AC seat")."""
    return set(a) <= set(b) and not (set(b) - set(a)) & {"non", "not"}


def _identifier(w: str) -> bool:
    return len(w) <= 3 or any(c.isdigit() for c in w)


def group_mentions(mentions: Sequence[str]) -> list[list[str]]:
    """Group surface mentions (in text order, repeats allowed) into variables.

    Returns one list of distinct surface strings per variable, ordered by first mention; each list starts with the
    variable's first mention.
    """
    norms: dict[str, tuple[str, ...]] = {}
    order: list[str] = []
    for m in mentions:
        if m not in norms:
            norms[m] = normalize_mention(m)
            order.append(m)
    groups: list[list[str]] = []
    gnorms: list[list[tuple[str, ...]]] = []

    def find(nf):
        for gi, ns in enumerate(gnorms):
            if nf in ns:
                return gi
        return None

    pending = []
    for m in order:  # pass 1: equal normal forms; anaphoric mentions wait
        nf = norms[m] or (m.strip().lower(),)
        norms[m] = nf
        if len(nf) >= 2 and nf[-1] in _ANAPHORIC:
            pending.append(m)
            continue
        gi = find(nf)
        if gi is None:
            # pass 2: containment with exactly one existing group
            hits = [i for i, ns in enumerate(gnorms) if any(_contains(nf, n) or _contains(n, nf) for n in ns)]
            if len(hits) == 1:
                gi = hits[0]
            elif not hits:  # token subset ("vanilla powder shake" / "vanilla powder protein shake")
                hits = [i for i, ns in enumerate(gnorms) if any(_subset(nf, n) or _subset(n, nf) for n in ns)]
                if len(hits) == 1:
                    gi = hits[0]
            if gi is None and len(groups) >= 2:  # a third variable is rare: merge on a shared leading modifier
                # ... unless the heads are labels ("mixture A" / "mixture B", "reaction X" / "reaction Y")
                hits = [i for i, ns in enumerate(gnorms)
                        if any(n[0] == nf[0] and not (_identifier(n[-1]) and _identifier(nf[-1]) and n[-1] != nf[-1])
                               for n in ns)]
                if len(hits) == 1:
                    gi = hits[0]
        if gi is None:
            groups.append([m])
            gnorms.append([nf])
        else:
            groups[gi].append(m)
            gnorms[gi].append(nf)
    for m in pending:  # pass 3: shared modifier with an anaphoric head
        nf = norms[m]
        mods = set(nf[:-1])
        hits = [i for i, ns in enumerate(gnorms) if any(mods & set(n) for n in ns)]
        if len(hits) == 1:
            groups[hits[0]].append(m)
            gnorms[hits[0]].append(nf)
        else:
            groups.append([m])
            gnorms.append([nf])
    first = {m: i for i, m in enumerate(order)}
    groups.sort(key=lambda g: min(first[m] for m in g))
    return groups
