"""Synthetic Korean dialogue-summarization data in the competition format.

The generator is deterministic (stdlib ``random.Random(seed)`` only) and renders each
dialogue and its summaries from the same slot values, so the summaries follow from the
dialogue. Topics and templates are data (``sample_templates.json`` beside this file, loaded as
``TOPICS``); the code below only fills them in.

Usage:
    python -m competition.sample_data --out data/sample --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from competition.rules.files import write_text_atomic

DEFAULT_SEED = 0
DEFAULT_COUNTS = {"train": 300, "dev": 60, "test": 60}
SUBMISSION_PLACEHOLDER = "요약문입니다."
MAX_TURNS = 14
MIN_TURNS = 4

# --------------------------------------------------------------------------------------
# Template data (competition/sample_templates.json; its "about" key describes the format)
# --------------------------------------------------------------------------------------

TEMPLATES_FILE = Path(__file__).with_name("sample_templates.json")
SlotPools = dict[str, tuple]  # slot key -> values; a key "x,y" holds tuples that bind x and y together


@dataclass(frozen=True)
class DialogueTemplate:
    """One dialogue shape with exactly three summary phrasings (used as test references)."""

    register: str  # "polite" or "casual": selects filler and elaboration pools
    lines: tuple[str, ...]
    summaries: tuple[str, str, str]
    slots: SlotPools = field(default_factory=dict)  # template-only slots, added to the topic's
    nameable: str = ""  # role that may be given a first name (addressed in the first line)


@dataclass(frozen=True)
class TopicSpec:
    """A topic label (the ``topic`` column), shared slot pools and its templates."""

    topic: str
    slots: SlotPools
    templates: tuple[DialogueTemplate, ...]


def _slot_pools(pools: dict[str, list]) -> SlotPools:
    """JSON lists -> tuples (a pool of a "x,y" key holds one tuple per draw)."""
    return {key: tuple(tuple(v) if isinstance(v, list) else v for v in values) for key, values in pools.items()}


def _template(entry: dict) -> DialogueTemplate:
    return DialogueTemplate(register=entry["register"], lines=tuple(entry["lines"]),
                            summaries=tuple(entry["summaries"]), slots=_slot_pools(entry.get("slots", {})),
                            nameable=entry.get("nameable", ""))


@dataclass(frozen=True)
class SampleTemplates:
    """Everything the generator renders from: names, topics, and the length-varying filler sentences."""

    casual_names: tuple[str, ...]  # first names a casual speaker may be called by
    topics: tuple[TopicSpec, ...]
    filler_exchanges: dict[str, tuple[tuple[str, str], ...]]  # register -> neutral (a line, b line) exchanges
    elaborations: dict[str, tuple[str, ...]]  # register -> sentences appended in long dialogues


def load_templates(path: Path = TEMPLATES_FILE) -> SampleTemplates:
    """Read the templates file (JSON lists become tuples, so the data is immutable like the code it replaced)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    topics = tuple(TopicSpec(topic=t["topic"], slots=_slot_pools(t["slots"]),
                             templates=tuple(_template(entry) for entry in t["templates"])) for t in data["topics"])
    return SampleTemplates(
        casual_names=tuple(data["casual_names"]), topics=topics,
        filler_exchanges={register: tuple(tuple(pair) for pair in pairs)
                          for register, pairs in data["filler_exchanges"].items()},
        elaborations={register: tuple(lines) for register, lines in data["elaborations"].items()},
    )


TEMPLATES = load_templates()
CASUAL_NAMES, TOPICS = TEMPLATES.casual_names, TEMPLATES.topics
FILLER_EXCHANGES, ELABORATIONS = TEMPLATES.filler_exchanges, TEMPLATES.elaborations

# --------------------------------------------------------------------------------------
# Korean particles
# --------------------------------------------------------------------------------------
# (form after a final consonant, form after a vowel); keyed by either form.
_PARTICLE_PAIRS = (
    ("은", "는"), ("이", "가"), ("을", "를"), ("과", "와"), ("으로", "로"),
    ("이에요", "예요"), ("이고", "고"), ("이야", "야"),
)
PARTICLES: dict[str, tuple[str, str]] = {form: pair for pair in _PARTICLE_PAIRS for form in pair}
_DIGIT_FINALS = {"0": "ㅇ", "1": "ㄹ", "3": "ㅁ", "6": "ㄱ", "7": "ㄹ", "8": "ㄹ"}  # 영 일 삼 육 칠 팔
_LATIN_FINALS = {"l": "ㄹ", "m": "ㅁ", "n": "ㄴ", "k": "ㄱ", "p": "ㅂ", "b": "ㅂ", "d": "ㄷ", "g": "ㅇ"}
_RIEUL_JONG_INDEX = 8
_SPEAKER_TAG = re.compile(r"#Person(\d+)#")


def final_consonant(word: str) -> str:
    """Return the final consonant (jamo) of how ``word`` is read aloud, or "" for a vowel ending."""
    tag = _SPEAKER_TAG.fullmatch(word)
    if tag:  # competition style: "#Person1#은" (one), "#Person2#는", "#Person3#가"
        return "ㄴ" if tag.group(1) == "1" else ""
    last = word.strip("#")[-1:]
    if "가" <= last <= "힣":
        jong = (ord(last) - ord("가")) % 28
        return "" if jong == 0 else ("ㄹ" if jong == _RIEUL_JONG_INDEX else "ㄴ")
    if last.isdigit():
        return _DIGIT_FINALS.get(last, "")
    return _LATIN_FINALS.get(last.lower(), "")


def attach_particle(word: str, particle: str) -> str:
    """Append ``particle`` to ``word``, choosing 은/는, 이/가, 으로/로 ... by the final sound."""
    if particle not in PARTICLES:
        return word + particle  # invariant particles: 에, 에게, 의, 에서, 까지, 부터, 도
    after_consonant, after_vowel = PARTICLES[particle]
    final = final_consonant(word)
    if after_consonant == "으로" and final == "ㄹ":
        return word + "로"  # ㄹ-final takes 로: 서울로, 2박 3일로
    return word + (after_consonant if final else after_vowel)


def vocative(name: str) -> str:
    """Casual address: 민수야, 지영아; Latin names stay bare (Jimmy)."""
    if not ("가" <= name[-1] <= "힣"):
        return name
    return name + ("아" if final_consonant(name) else "야")


_PLACEHOLDER = re.compile(r"\{(\w+)(?::(\w+))?\}")


def fill(template: str, values: dict[str, str]) -> str:
    """Replace {slot} / {slot:particle} placeholders; a missing slot raises KeyError."""

    def replace(match: re.Match[str]) -> str:
        word = values[match.group(1)]
        return attach_particle(word, match.group(2)) if match.group(2) else word

    return _PLACEHOLDER.sub(replace, template)


# --------------------------------------------------------------------------------------
# Rendering one example
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One rendered dialogue with its three summary phrasings."""

    topic: str
    dialogue: str
    summaries: tuple[str, str, str]


def draw_slots(pools: SlotPools, rng: random.Random) -> dict[str, str]:
    """Pick one value per pool; "x,y" keys bind a tuple of values to several slot names."""
    values: dict[str, str] = {}
    for key in sorted(pools):  # sorted: draw order must not depend on dict literal order
        choice = rng.choice(pools[key])
        names = key.split(",")
        values.update(zip(names, choice if len(names) > 1 else (choice,), strict=True))
    return values


def speaker_order(lines: tuple[str, ...]) -> dict[str, str]:
    """Map roles to #PersonN# tags in order of first appearance (the first speaker is #Person1#)."""
    order: dict[str, str] = {}
    for line in lines:
        role = line.split(":", 1)[0]
        order.setdefault(role, f"#Person{len(order) + 1}#")
    return order


def pad_with_fillers(lines: list[str], register: str, n_pairs: int, rng: random.Random) -> list[str]:
    """Insert ``n_pairs`` filler exchanges (a then b) where they keep a/b alternation."""
    pairs = rng.sample(FILLER_EXCHANGES[register], k=n_pairs)
    for line_a, line_b in pairs:
        # A slot after a b-line and before an a-line keeps alternation; else append at the end.
        slots = [i for i in range(1, len(lines)) if lines[i - 1][0] == "b" and lines[i][0] == "a"]
        at = rng.choice(slots) if slots else len(lines)
        lines[at:at] = [f"a: {line_a}", f"b: {line_b}"]
    return lines


def elaborate(lines: list[str], register: str, rng: random.Random) -> list[str]:
    """Make a long dialogue: append one or two unused neutral sentences to most lines."""
    pool = rng.sample(ELABORATIONS[register], k=len(ELABORATIONS[register]))
    out = []
    for line in lines:
        if pool and rng.random() < 0.85:
            n_extra = min(len(pool), rng.choice((1, 2)))
            line = " ".join([line, *(pool.pop() for _ in range(n_extra))])
        out.append(line)
    return out


def choose_length_plan(rng: random.Random) -> tuple[int, bool]:
    """Return (filler exchange pairs, long mode) so lengths vary widely but stay mostly short."""
    n_pairs = rng.choices((0, 1, 2, 3), weights=(50, 30, 15, 5))[0]
    return n_pairs, rng.random() < 0.07


def render_example(spec: TopicSpec, rng: random.Random) -> Example:
    """Render one dialogue and three summaries of ``spec`` from one set of slot values."""
    template = rng.choice(spec.templates)
    values = draw_slots({**spec.slots, **template.slots}, rng)
    tags = speaker_order(template.lines)
    name = rng.choice(CASUAL_NAMES) if template.nameable and rng.random() < 0.35 else ""

    n_pairs, long_mode = choose_length_plan(rng)
    room = (MAX_TURNS - len(template.lines)) // 2  # filler pairs that still fit in MAX_TURNS
    n_pairs = room if long_mode else min(n_pairs, room)
    lines = pad_with_fillers(list(template.lines), template.register, n_pairs, rng)
    if long_mode:
        lines = elaborate(lines, template.register, rng)

    rendered = []
    for line in lines:
        role, text = line.split(":", 1)
        text = fill(text.strip(), {**values, **tags})
        if name and not rendered and role != template.nameable:
            text = f"{vocative(name)}, {text}"  # the first speaker addresses the named friend
        rendered.append(f"{tags[role]}: {text}")

    summaries = tuple(
        fill(summary, {**values, **summary_refs(tags, template.nameable, name, rng)})
        for summary in template.summaries
    )
    return Example(topic=spec.topic, dialogue="\n".join(rendered), summaries=summaries)


def summary_refs(tags: dict[str, str], nameable: str, name: str, rng: random.Random) -> dict[str, str]:
    """Speaker references for one summary: tags, or sometimes the named friend's name."""
    refs = dict(tags)
    if name and rng.random() < 0.5:
        refs[nameable] = name
    return refs


# --------------------------------------------------------------------------------------
# Splits and files
# --------------------------------------------------------------------------------------


def generate_splits(seed: int, counts: dict[str, int]) -> dict[str, list[Example]]:
    """Generate disjoint splits; each split cycles through all topics in shuffled order."""
    rng = random.Random(seed)
    seen: set[str] = set()
    splits: dict[str, list[Example]] = {}
    for split, n_rows in counts.items():
        topic_order: list[TopicSpec] = []
        while len(topic_order) < n_rows:
            block = list(TOPICS)
            rng.shuffle(block)
            topic_order.extend(block)
        splits[split] = [unique_example(spec, rng, seen) for spec in topic_order[:n_rows]]
    return splits


def unique_example(spec: TopicSpec, rng: random.Random, seen: set[str], max_tries: int = 200) -> Example:
    """Render examples until one has a dialogue not used anywhere yet (splits must not overlap)."""
    for _ in range(max_tries):
        example = render_example(spec, rng)
        if example.dialogue not in seen:
            seen.add(example.dialogue)
            return example
    raise RuntimeError(f"topic {spec.topic!r}: no new dialogue after {max_tries} tries; add slot values")


def build_tables(splits: dict[str, list[Example]], rng: random.Random) -> dict[str, pd.DataFrame]:
    """Turn examples into the competition's CSV tables plus test references."""

    def labeled(split: str) -> pd.DataFrame:
        rows = [
            {"fname": f"{split}_{i}", "dialogue": ex.dialogue, "summary": rng.choice(ex.summaries), "topic": ex.topic}
            for i, ex in enumerate(splits[split])
        ]
        return pd.DataFrame(rows, columns=["fname", "dialogue", "summary", "topic"])

    test = splits["test"]
    fnames = [f"test_{i}" for i in range(len(test))]
    refs = []
    for fname, ex in zip(fnames, test, strict=True):
        ordered = rng.sample(ex.summaries, k=3)
        refs.append({"fname": fname, "summary1": ordered[0], "summary2": ordered[1], "summary3": ordered[2], "topic": ex.topic})
    return {
        "train.csv": labeled("train"),
        "dev.csv": labeled("dev"),
        "test.csv": pd.DataFrame({"fname": fnames, "dialogue": [ex.dialogue for ex in test]}),
        "test_refs.csv": pd.DataFrame(refs, columns=["fname", "summary1", "summary2", "summary3", "topic"]),
        "sample_submission.csv": pd.DataFrame({"fname": fnames, "summary": SUBMISSION_PLACEHOLDER}),
    }


def readme_text(tables: dict[str, pd.DataFrame], seed: int) -> str:
    """Describe the bundled sample data (written next to the CSV files)."""
    counts = "\n".join(f"| `{name}` | {len(df)} |" for name, df in tables.items())
    topics = ", ".join(spec.topic for spec in TOPICS)
    return f"""# Bundled sample data (synthetic)

Small, fully synthetic Korean dialogue-summarization data in the format of the Upstage AI Lab
"일상 대화 요약" competition. It is for tests, demos and smoke runs only: no row comes from the real
competition data, and scores on it say nothing about the leaderboard.

Generated by the project's template generator (do not edit by hand; a test checks the files equal a
fresh generation):

```
python -m competition.sample_data --out data/sample --seed {seed}
```

| file | rows |
|---|---|
{counts}

- `train.csv`, `dev.csv`: `fname,dialogue,summary,topic`
- `test.csv`: `fname,dialogue`
- `test_refs.csv`: `fname,summary1,summary2,summary3,topic`: three reference summaries per test
  dialogue (same facts, different wording), for multi-reference scoring demos.
- `sample_submission.csv`: `,fname,summary` (leading unnamed index column), every summary `{SUBMISSION_PLACEHOLDER}`.

Speakers are `#Person1#`, `#Person2#` (sometimes `#Person3#`); personal data appears only as masks
(`#PhoneNumber#`, `#Address#`, `#Email#`, `#CardNumber#`, `#CarNumber#`, `#PassportNumber#`,
`#DateOfBirth#`, `#SSN#`). Each dialogue and its summaries are rendered from the same slot values,
so the summaries follow from the dialogue. Topics ({len(TOPICS)}): {topics}.
"""


def write_sample_data(out_dir: Path, seed: int = DEFAULT_SEED, counts: dict[str, int] | None = None) -> dict[str, int]:
    """Generate all sample files into ``out_dir``; return row counts per file."""
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    rng = random.Random(f"{seed}:tables")  # separate stream from the dialogue generator
    tables = build_tables(generate_splits(seed, counts), rng)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        keep_index = name == "sample_submission.csv"  # the real file has a leading unnamed index column
        write_text_atomic(out_dir / name, df.to_csv(index=keep_index, lineterminator="\n"))
    write_text_atomic(out_dir / "README.md", readme_text(tables, seed))
    return {name: len(df) for name, df in tables.items()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; counts must be positive (argparse exits with code 2 otherwise)."""
    parser = argparse.ArgumentParser(description="Generate the bundled synthetic Korean sample data.")
    parser.add_argument("--out", type=Path, default=Path("data/sample"), help="output folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (same seed -> same bytes)")
    for split, n_rows in DEFAULT_COUNTS.items():
        parser.add_argument(f"--n-{split}", type=int, default=n_rows, help=f"{split} rows")
    args = parser.parse_args(argv)
    for split in DEFAULT_COUNTS:
        if getattr(args, f"n_{split}") < 1:
            parser.error(f"--n-{split} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = parse_args(argv)
    counts = {split: getattr(args, f"n_{split}") for split in DEFAULT_COUNTS}
    written = write_sample_data(args.out, args.seed, counts)
    for name, n_rows in written.items():
        print(f"{args.out / name}: {n_rows} rows")
    return 0


if __name__ == "__main__":
    from competition.harness.cli import exit_on_bad_input

    sys.exit(exit_on_bad_input(main)())  # a full disk or unwritable --out: one error line, exit 2
