#!/usr/bin/env python3
"""bench/csft_data.py -- synthetic data for the conditional-SFT experiment (docs/sft.md).

A made-up world of COUNTRIES countries, each with a capital, written out as plain sentences for
pretraining, mixed with generic copying practice (random words, then "again:" the same words)
so that the small model learns to copy from its context at all. The instruction set mixes
  * knowledge-only turns: "what is the capital of X?" for the first TRAINED countries, answered
    from what pretraining taught ("Y.");
  * context-dependent turns: a user message with filler sentences and one needle
    ("the code of the red box is W.") and a question about it, answered "W."; the answer is
    only in the message.
Answers are short and every value W is one of the capital names, which the model knows as
tokens: retrieving from the context is then a matter of attending to the right word, which a
small model learns quickly, instead of generic copying of unseen strings (induction), which
it did not learn within the budget (with --repeat-frac > 0 the pretraining text also holds
copying practice).
Test sets (RoleMRC question + reference schema, `task` = category):
  * test_conflict.jsonl: a passage that states a different capital (another country's) for a
    known country (counterfactual: pretraining says otherwise), then the capital question;
    correct = the passage's;
  * test_needle.jsonl: new needles of the training kind (codes of other objects);
  * test_knowledge.jsonl: the capital question for the held-out countries (seen only in
    pretraining) and for trained ones.
Everything is a pure function of --seed. Standard library only."""
import argparse
import json
import os
import random

CONS = "bcdfghjklmnprstvz"
VOW = "aeiou"
FILLER = [
    "the weather was mild that day.",
    "a small boat crossed the lake at noon.",
    "the market opened early and closed late.",
    "two birds sat on the old stone wall.",
    "the road to the hills was long and dry.",
    "a child was reading a book under a tree.",
    "the bakery sold bread with seeds on top.",
    "nobody remembered who built the bridge.",
    "the train was late again this morning.",
    "music came from a window on the third floor.",
    "the garden had many flowers in spring.",
    "an old man fed the ducks by the river.",
]
OBJECTS = ["red box", "blue door", "green car", "old lamp", "tall tower", "small key",
           "black bag", "white ship", "silver ring", "yellow tent", "brown chair", "pink shell"]


def word(rng, syl):
    return "".join(rng.choice(CONS) + rng.choice(VOW) for _ in range(syl))


def passage(rng, needle, n_fill):
    sents = rng.sample(FILLER, n_fill)
    sents.insert(rng.randint(0, n_fill), needle)
    return " ".join(sents)


def conv(user, answer, kind):
    return {"conversations": [{"from": "human", "value": user}, {"from": "gpt", "value": answer}],
            "kind": kind}


def qa(user, ref, task, memory=None):
    q = {"question": [{"role": "user", "content": user}], "reference": ref, "task": task}
    if memory:
        q["memory"] = memory  # what pretraining says (conflict test)
    return q


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--countries", type=int, default=80)
    ap.add_argument("--trained", type=int, default=60)
    ap.add_argument("--sft", type=int, default=4000)
    ap.add_argument("--context-frac", type=float, default=0.5)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--pretrain-bytes", type=int, default=600000)
    ap.add_argument("--repeat-frac", type=float, default=0.0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    names, caps = [], []
    while len(names) < a.countries:
        n, c = word(rng, 3), word(rng, 2)
        if n not in names and c not in caps:
            names.append(n)
            caps.append(c)
    # pretraining text: every fact in several forms, mixed with filler
    forms = ["the capital of {n} is {c}.", "{c} is the capital of {n}.",
             "in {n}, the capital is {c}.", "people of {n} travel to {c}, the capital."]
    out, size = [], 0
    while size < a.pretrain_bytes:
        u = rng.random()
        if u < a.repeat_frac:
            # generic copying practice (induction): random words, then the same words again
            ws = " ".join(word(rng, rng.randint(1, 3)) for _ in range(rng.randint(2, 6)))
            s = "%s %s. again: %s." % (rng.choice(["words:", "list:", "say:"]), ws, ws)
        else:
            i = rng.randrange(a.countries)
            s = rng.choice(forms).format(n=names[i], c=caps[i])
            if rng.random() < 0.3:
                s += " " + rng.choice(FILLER)
        out.append(s)
        size += len(s) + 1
    with open(os.path.join(a.out, "pretrain.txt"), "w") as f:
        f.write("\n".join(out) + "\n")
    # the instruction set
    sft = []
    for _ in range(a.sft):
        if rng.random() < a.context_frac:
            obj, w = rng.choice(OBJECTS[:8]), rng.choice(caps)
            p = passage(rng, "the code of the %s is %s." % (obj, w), rng.randint(2, 4))
            sft.append(conv("%s what is the code of the %s?" % (p, obj), "%s." % w, "context"))
        else:
            i = rng.randrange(a.trained)
            sft.append(conv("what is the capital of %s?" % names[i], "%s." % caps[i], "knowledge"))
    with open(os.path.join(a.out, "sft.jsonl"), "w") as f:
        for x in sft:
            f.write(json.dumps(x) + "\n")
    # tests
    with open(os.path.join(a.out, "test_conflict.jsonl"), "w") as f:
        for _ in range(a.test):
            i = rng.randrange(a.countries)
            w = rng.choice(caps)
            while w == caps[i]:
                w = rng.choice(caps)
            p = passage(rng, "the capital of %s is %s." % (names[i], w), rng.randint(2, 4))
            f.write(json.dumps(qa("%s what is the capital of %s?" % (p, names[i]), w,
                                  "conflict", caps[i])) + "\n")
    with open(os.path.join(a.out, "test_needle.jsonl"), "w") as f:
        for _ in range(a.test):
            obj, w = rng.choice(OBJECTS[8:]), rng.choice(caps)
            p = passage(rng, "the code of the %s is %s." % (obj, w), rng.randint(2, 4))
            f.write(json.dumps(qa("%s what is the code of the %s?" % (p, obj), w, "needle")) + "\n")
    with open(os.path.join(a.out, "test_knowledge.jsonl"), "w") as f:
        for i in range(a.countries):
            tag = "heldout" if i >= a.trained else "trained"
            f.write(json.dumps(qa("what is the capital of %s?" % names[i], caps[i], tag)) + "\n")


if __name__ == "__main__":
    main()
