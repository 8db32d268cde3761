"""Task templates: write a task as a TOML file of slots and word lists, not Python (docs/tasks.md).

    name = "ownership"
    description = "who owns the animal named last"
    metric = "logit-diff"
    template = "{A} has a {X} and {B} has a {Y}. The {Y} belongs to"
    correct = " {B}"                  # the answer(s): a slot (mind the leading space) or literal text
    wrong = " {A}"
    balance = ["A", "B"]              # half the examples swap where A and B first appear
    [slots]                           # slot -> word list (a list, or the name of one in [lists])
    A = "names"
    B = "names"
    X = "animals"
    Y = "animals"
    [lists]
    names = ["Mary", "John", ...]
    animals = ["cat", "dog", ...]
    [corruption]                      # how the corrupted prompt differs (one or both):
    resample = ["A", "B"]             #   these slots get new fillers (not used in the clean prompt)
    # template = "..."                #   a corrupted template over the same slots

Generation (`generate_examples`): every slot draws a filler from its list; slots that share a list
draw distinct fillers. Only fillers that are **one token for the model's tokenizer** with a leading
space (" Mary") are kept, so answers are single tokens and the clean and corrupted prompts have the
same length (a pair whose lengths still differ is dropped). **Slot orders are balanced**: with
`balance = [S, T]`, every second example uses the template with the first `{S}` and `{T}` swapped
(IOI's ABBA / BABA: valid when the answer does not depend on which comes first); `template` may
also be a list of templates, used in turn (with `corruption.template` one per template). The result is the
JSONL task file of `subcircuit.tasks.files` (`write_task_file`), which `--task FILE` reads.
"""

from __future__ import annotations

import random
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subcircuit.errors import UserError
from subcircuit.tasks.base import single_token
from subcircuit.tasks.files import TaskExample, save_task_file

SLOT_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
KEYS = ("name", "description", "metric", "template", "correct", "wrong", "balance", "slots", "lists", "corruption")


@dataclass(frozen=True)
class Template:
    path: str
    name: str
    templates: tuple[str, ...]
    correct: tuple[str, ...]
    wrong: tuple[str, ...]
    slots: dict[str, tuple[str, ...]]  # slot -> its list's name
    lists: dict[str, tuple[str, ...]]
    resample: tuple[str, ...] = ()
    corrupted_templates: tuple[str, ...] = ()  # one per template (or one for all)
    metric: str = "logit-diff"
    description: str = ""
    balance: tuple[str, ...] = field(default=())


def _strings(v: Any, where: str) -> tuple[str, ...]:
    v = [v] if isinstance(v, str) else v
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise UserError(f"{where} must be a string or a non-empty list of strings")
    return tuple(v)


def read_template(path: str | Path) -> Template:
    """Parse and check a template file (a one-line UserError naming the field otherwise)."""
    p = Path(path)
    try:
        d = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no template file at {str(p)!r}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: not a TOML template ({str(e).splitlines()[0]})") from None
    extra = sorted(set(d) - set(KEYS))
    if extra:
        raise UserError(f"{p}: unknown key(s) {extra}; valid: {', '.join(KEYS)}")
    for k in ("template", "correct", "wrong", "slots"):
        if k not in d:
            raise UserError(f"{p}: missing {k!r}")
    templates = _strings(d["template"], f"{p}: 'template'")
    lists = {k: _strings(v, f"{p}: lists.{k}") for k, v in (d.get("lists") or {}).items()}
    slots: dict[str, str] = {}
    for slot, v in (d["slots"] or {}).items():
        if isinstance(v, str):
            if v not in lists:
                raise UserError(f"{p}: slots.{slot} names list {v!r}, which is not in [lists] ({', '.join(lists)})")
            slots[slot] = v
        else:
            lists[f"slot:{slot}"] = _strings(v, f"{p}: slots.{slot}")
            slots[slot] = f"slot:{slot}"
    corruption = d.get("corruption") or {}
    resample = _strings(corruption["resample"], f"{p}: corruption.resample") if "resample" in corruption else ()
    ctemplates = _strings(corruption["template"], f"{p}: corruption.template") if "template" in corruption else ()
    if ctemplates and len(ctemplates) not in (1, len(templates)):
        raise UserError(f"{p}: corruption.template needs one template or one per template ({len(templates)}), "
                        f"not {len(ctemplates)}")
    if not resample and not ctemplates:
        raise UserError(f"{p}: [corruption] needs 'resample' (slots to redraw) or 'template' (a corrupted template)")
    balance = _strings(d["balance"], f"{p}: 'balance'") if "balance" in d else ()
    if balance and len(balance) != 2:
        raise UserError(f"{p}: 'balance' names two slots, e.g. [\"A\", \"B\"], not {list(balance)}")
    correct, wrong = _strings(d["correct"], f"{p}: 'correct'"), _strings(d["wrong"], f"{p}: 'wrong'")
    texts = [*templates, *correct, *wrong, *ctemplates]
    for t in texts:
        for s in SLOT_RE.findall(t):
            if s not in slots:
                raise UserError(f"{p}: slot {{{s}}} in {t!r} has no word list in [slots] ({', '.join(slots)})")
    for s in (*resample, *balance):
        if s not in slots:
            raise UserError(f"{p}: slot {s!r} is not in [slots] ({', '.join(slots)})")
    return Template(str(p), str(d.get("name") or p.stem), templates, correct, wrong,
                    {k: (v,) for k, v in slots.items()}, lists, resample, ctemplates,
                    str(d.get("metric", "logit-diff")), str(d.get("description", "")), balance)


def _swap_first(template: str, a: str, b: str) -> str:
    """The template with the first `{a}` and the first `{b}` exchanged."""
    ia, ib = template.find("{" + a + "}"), template.find("{" + b + "}")
    if ia < 0 or ib < 0:
        return template
    (i, x), (j, y) = sorted([(ia, a), (ib, b)])
    tx, ty = "{" + x + "}", "{" + y + "}"
    return template[:i] + ty + template[i + len(tx):j] + tx + template[j + len(ty):]


def one_token_fillers(tpl: Template, tokenizer: Any) -> dict[str, tuple[str, ...]]:
    """Each list without the words that are not one token with a leading space."""
    if tokenizer is None:
        raise UserError("task templates need a model with a tokenizer (text prompts)")
    return {name: tuple(w for w in words if single_token(tokenizer, " " + w) is not None)
            for name, words in tpl.lists.items()}


def _fill(text: str, values: dict[str, str]) -> str:
    return SLOT_RE.sub(lambda m: values[m.group(1)], text)


def generate_examples(tpl: Template, tokenizer: Any, n: int, seed: int = 0) -> tuple[list[TaskExample], dict[str, Any]]:
    """n clean/corrupted examples from a template (see the module docstring), and what was kept
    and dropped: {list: (kept, total)}, the dropped pairs, the template order counts."""
    rng = random.Random(seed)
    words = one_token_fillers(tpl, tokenizer)
    per_list: dict[str, int] = {}
    for s, (lst,) in tpl.slots.items():
        per_list[lst] = per_list.get(lst, 0) + 1 + (1 if s in tpl.resample else 0)
    for lst, need in per_list.items():
        if len(words[lst]) < need:
            raise UserError(f"{tpl.path}: list {lst.removeprefix('slot:')!r} keeps {len(words[lst])} one-token words "
                            f"of {len(tpl.lists[lst])}; the template needs at least {need}")
    base = list(tpl.templates)
    cbase = (list(tpl.corrupted_templates) * len(base))[: len(base)] if tpl.corrupted_templates else base
    variants, cvariants = list(base), list(cbase)
    if tpl.balance:
        variants += [_swap_first(t, *tpl.balance) for t in base]
        cvariants += [_swap_first(t, *tpl.balance) for t in cbase]
    out: list[TaskExample] = []
    dropped, counts, attempts = 0, [0] * len(variants), 0
    while len(out) < n:
        attempts += 1
        if attempts > 20 * n + 100:
            raise UserError(f"{tpl.path}: could not make {n} examples of equal clean/corrupted length "
                            f"({len(out)} made, {dropped} dropped)")
        k = len(out) % len(variants)
        clean_v = _draw(tpl, words, rng, {})
        corr_v = dict(clean_v)
        for s in tpl.resample:
            (lst,) = tpl.slots[s]
            used = {v for t, v in clean_v.items() if tpl.slots[t] == (lst,)}
            used |= {corr_v[t] for t in tpl.resample[: tpl.resample.index(s)] if tpl.slots[t] == (lst,)}
            corr_v[s] = rng.choice([w for w in words[lst] if w not in used])
        ctext = cvariants[k]
        clean, corrupted = _fill(variants[k], clean_v), _fill(ctext, corr_v)
        if len(tokenizer(clean)["input_ids"]) != len(tokenizer(corrupted)["input_ids"]):
            dropped += 1
            continue
        counts[k] += 1
        out.append(TaskExample(clean, corrupted, tuple(_fill(a, clean_v) for a in tpl.correct),
                               tuple(_fill(a, clean_v) for a in tpl.wrong)))
    stats = {"kept": {lst.removeprefix("slot:"): (len(words[lst]), len(tpl.lists[lst])) for lst in tpl.lists},
             "dropped_pairs": dropped, "orders": dict(zip(variants, counts, strict=True))}
    return out, stats


def _draw(tpl: Template, words: dict[str, tuple[str, ...]], rng: random.Random, fixed: dict[str, str]) -> dict[str, str]:
    values: dict[str, str] = dict(fixed)
    for s, (lst,) in tpl.slots.items():
        if s in values:
            continue
        used = {values[t] for t, (l2,) in tpl.slots.items() if l2 == lst and t in values}
        values[s] = rng.choice([w for w in words[lst] if w not in used])
    return values


def write_task_file(tpl: Template, examples: list[TaskExample], path: str | Path) -> Path:
    """The JSONL task file (with its header: name, metric, description)."""
    return save_task_file(examples, path, name=tpl.name, metric=tpl.metric,
                          description=tpl.description or f"generated from template {Path(tpl.path).name}")
