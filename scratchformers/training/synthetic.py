"""The demo's corpus, generated on the spot (no download, nothing copied into the repo).

Short stories from a small grammar: a few names, animals, colours, places and feelings, with counting lines in
between. A tiny model learns its grammar in a minute or two, so samples visibly follow the corpus, and SFT tasks
("Write a story about Mia and a frog.", "Count from 3 to 7.") check that the model follows instructions.
演示用语料：由小型文法随机生成的英文小故事（不需下载，也不复制任何外部文本）。
"""

from __future__ import annotations

import random
import re

NAMES = ["Tom", "Mia", "Ben", "Lily", "Sam", "Anna", "Max", "Zoe", "Leo", "Emma", "Jack", "Lucy"]
ANIMALS = ["cat", "dog", "frog", "bird", "fox", "rabbit", "duck", "bear", "mouse", "horse"]
COLORS = ["red", "blue", "green", "yellow", "pink", "brown", "white", "black"]
THINGS = ["ball", "kite", "hat", "boat", "book", "cup", "box", "bike", "drum", "car"]
PLACES = ["park", "forest", "river", "garden", "beach", "hill", "farm", "market"]
FEELINGS = ["happy", "glad", "proud", "excited", "calm", "surprised"]
WEATHER = ["sunny", "rainy", "windy", "cold", "warm"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def _pronoun(name: str) -> tuple[str, str]:
    return ("she", "her") if name in ("Mia", "Lily", "Anna", "Zoe", "Emma", "Lucy") else ("he", "his")


def make_story(rng: random.Random, name: str | None = None, animal: str | None = None) -> str:
    """One story; `name` and `animal` pick its hero and the animal they meet."""
    name = name or rng.choice(NAMES)
    animal = animal or rng.choice(ANIMALS)
    he, his = _pronoun(name)
    color, thing, place = rng.choice(COLORS), rng.choice(THINGS), rng.choice(PLACES)
    friend = rng.choice([n for n in NAMES if n != name])
    start = rng.randint(1, 12)
    end = start + rng.randint(2, 6)
    numbers = ", ".join(str(n) for n in range(start, end + 1))
    sentences = [
        f"{name} and the {animal}.\n",  # the title: the story must follow it, a skill SFT builds on
        rng.choice(
            [
                f"{name} had a {color} {thing}.",
                f"Once upon a time, {name} had a {color} {thing}.",
                f"It was a {rng.choice(WEATHER)} day, and {name} had a {color} {thing}.",
            ]
        ),
        f"One day {he} went to the {place} with {his} {thing}.",
        rng.choice([f"There {he} met a {animal}.", f"At the {place}, {he} saw a little {animal}."]),
        rng.choice(
            [
                f'The {animal} said, "Can I play with your {thing}?"',
                f'The {animal} said, "Hello, {name}!"',
                f"The {animal} wanted to play with the {color} {thing}.",
            ]
        ),
        rng.choice(
            [
                f"{name} and the {animal} played all day.",
                f"{name} gave the {thing} to the {animal}.",
                f"{name} and {friend} played with the {animal}.",
            ]
        ),
        f"They counted from {start} to {end}: {numbers}.",
        f"{name} was very {rng.choice(FEELINGS)}.",
        "The end.",
    ]
    return sentences[0] + " ".join(sentences[1:])


def make_story_corpus(num_stories: int = 4000, seed: int = 0) -> list[str]:
    """`num_stories` stories, one document each (the trainer ends each with <|endoftext|>)."""
    rng = random.Random(seed)
    return [make_story(rng) for _ in range(num_stories)]


def make_instruction_data(num_examples: int = 1000, seed: int = 1) -> list[dict]:
    """Instruction/input/output rows of three tasks the pretrained model can learn quickly: write a story about a
    given hero and animal, count between two numbers, and name the number after a number word."""
    rng = random.Random(seed)
    rows = []
    for _ in range(num_examples):
        task = rng.random()
        if task < 0.5:
            name, animal = rng.choice(NAMES), rng.choice(ANIMALS)
            rows.append(
                {
                    "instruction": f"Write a story about {name} and a {animal}.",
                    "input": "",
                    "output": make_story(rng, name, animal),
                }
            )
        elif task < 0.9:
            start = rng.randint(1, 12)
            end = start + rng.randint(2, 6)
            rows.append(
                {
                    "instruction": f"Count from {start} to {end}.",
                    "input": "",
                    "output": ", ".join(str(n) for n in range(start, end + 1)) + ".",
                }
            )
        else:
            n = rng.randint(0, 9)
            rows.append(
                {
                    "instruction": "What number comes after this one?",
                    "input": NUMBER_WORDS[n],
                    "output": f"After {NUMBER_WORDS[n]} comes {NUMBER_WORDS[n + 1]}.",
                }
            )
    return rows


def make_instruction_checks(num_examples: int = 20, seed: int = 2) -> list[tuple[str, str, dict]]:
    """Fresh prompts of the two main SFT tasks, each with what a correct answer must contain:
    ("count", prompt, {"expected": "4, 5, 6."}) or ("story", prompt, {"name": ..., "animal": ...})."""
    rng = random.Random(seed)
    checks = []
    for i in range(num_examples):
        if i % 2 == 0:
            start = rng.randint(1, 12)
            end = start + rng.randint(2, 6)
            expected = ", ".join(str(n) for n in range(start, end + 1)) + "."
            checks.append(("count", f"Count from {start} to {end}.", {"expected": expected}))
        else:
            name, animal = rng.choice(NAMES), rng.choice(ANIMALS)
            checks.append(("story", f"Write a story about {name} and a {animal}.", {"name": name, "animal": animal}))
    return checks


def instruction_followed(task: str, answer: str, want: dict) -> bool:
    """A counting answer must be exactly the sequence; a story must carry the asked title, and the only animal
    it mentions must be the asked one (a story that drifts to another animal fails)."""
    if task == "count":
        return answer.strip() == want["expected"]
    title, _, body = answer.strip().partition("\n")
    animals = set(re.findall(r"[a-z]+", body.lower())) & set(ANIMALS)
    return title == f"{want['name']} and the {want['animal']}." and animals == {want["animal"]}
