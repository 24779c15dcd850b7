"""Generate the small labeled question set shipped with the package (seeded, reproducible).

    python scripts/make_questions.py  # writes shared/avengers/data/questions/demo.jsonl

Three kinds of question with checkable answers: arithmetic, number comparisons and multiple
choice on everyday facts (written for this project; released under the project's MIT license).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "shared/avengers/data/questions/demo.jsonl"

# (question, right answer, three wrong answers)
FACTS = [
    ("What is the capital of France?", "Paris", ["Rome", "Berlin", "Madrid"]),
    ("What is the capital of Japan?", "Tokyo", ["Seoul", "Beijing", "Bangkok"]),
    ("What is the capital of Italy?", "Rome", ["Milan", "Vienna", "Athens"]),
    ("What is the capital of Spain?", "Madrid", ["Lisbon", "Paris", "Barcelona"]),
    ("What is the capital of Germany?", "Berlin", ["Munich", "Vienna", "Zurich"]),
    ("What is the capital of Canada?", "Ottawa", ["Toronto", "Chicago", "Dublin"]),
    ("Which planet is known as the Red Planet?", "Mars", ["Venus", "Jupiter", "Saturn"]),
    ("Which planet is the largest in the Solar System?", "Jupiter", ["Mars", "Earth", "Mercury"]),
    ("Which star is at the centre of our Solar System?", "The Sun", ["Sirius", "Polaris", "Vega"]),
    ("What do bees make?", "Honey", ["Milk", "Silk", "Wool"]),
    ("Which animal is known for its long neck?", "Giraffe", ["Lion", "Zebra", "Hippo"]),
    ("Which animal says 'moo'?", "Cow", ["Dog", "Cat", "Duck"]),
    ("Which animal is the largest mammal?", "Blue whale", ["Elephant", "Horse", "Bear"]),
    ("How many legs does a spider have?", "Eight", ["Six", "Four", "Ten"]),
    ("How many days are in a week?", "Seven", ["Five", "Six", "Ten"]),
    ("How many months are in a year?", "Twelve", ["Ten", "Eleven", "Fourteen"]),
    ("How many hours are in a day?", "24", ["12", "20", "30"]),
    ("What colour is the sky on a clear day?", "Blue", ["Green", "Red", "Purple"]),
    ("What colour are ripe bananas?", "Yellow", ["Blue", "Black", "Pink"]),
    ("What colour do you get by mixing blue and yellow?", "Green", ["Orange", "Purple", "Red"]),
    ("What is frozen water called?", "Ice", ["Steam", "Sand", "Glass"]),
    (
        "At what temperature does water boil at sea level?",
        "100 degrees Celsius",
        ["50 degrees Celsius", "0 degrees Celsius", "200 degrees Celsius"],
    ),
    ("What gas do plants take in from the air?", "Carbon dioxide", ["Helium", "Neon", "Argon"]),
    ("What do we call a baby cat?", "Kitten", ["Puppy", "Calf", "Foal"]),
    ("What do we call a baby dog?", "Puppy", ["Kitten", "Lamb", "Chick"]),
    ("Which organ pumps blood through the body?", "Heart", ["Lung", "Liver", "Kidney"]),
    ("Which sense do we use our ears for?", "Hearing", ["Sight", "Taste", "Smell"]),
    ("Which is the opposite of hot?", "Cold", ["Warm", "Big", "Fast"]),
    ("Which is the opposite of up?", "Down", ["Left", "Over", "High"]),
    ("Which shape has three sides?", "Triangle", ["Square", "Circle", "Hexagon"]),
    ("Which shape has four equal sides?", "Square", ["Triangle", "Circle", "Oval"]),
    ("Which season comes after winter?", "Spring", ["Autumn", "Summer", "Winter"]),
    ("Which ocean is the largest?", "Pacific", ["Atlantic", "Indian", "Arctic"]),
    ("Which language is mainly spoken in Brazil?", "Portuguese", ["Spanish", "French", "Italian"]),
    ("Which instrument has black and white keys?", "Piano", ["Drum", "Flute", "Violin"]),
    ("What do you use to write on a blackboard?", "Chalk", ["Soap", "Butter", "Salt"]),
    ("Which fruit is red and often used to make ketchup?", "Tomato", ["Banana", "Lemon", "Grape"]),
    ("Which bird is a symbol of peace?", "Dove", ["Crow", "Eagle", "Owl"]),
    ("Which metal is liquid at room temperature?", "Mercury", ["Iron", "Gold", "Copper"]),
    ("Which continent is Egypt in?", "Africa", ["Asia", "Europe", "South America"]),
]


def arithmetic(rng: random.Random) -> tuple[str, int]:
    op = rng.choice("+-*")
    if op == "*":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return f"What is {a} times {b}?", a * b
    a, b = rng.randint(2, 20), rng.randint(2, 20)
    if op == "-":
        a, b = max(a, b), min(a, b)
        return f"What is {a} minus {b}?", a - b
    return f"What is {a} plus {b}?", a + b


def main() -> None:
    rng = random.Random(2025)
    rows: list[dict[str, object]] = []
    seen: set[str] = set()
    while sum(r["task"] == "arithmetic" for r in rows) < 50:
        q, ans = arithmetic(rng)
        if q not in seen:
            seen.add(q)
            rows.append(
                {
                    "question": f"{q} Answer with just the number.",
                    "answer": str(ans),
                    "answer_type": "number",
                    "task": "arithmetic",
                }
            )
    while sum(r["task"] == "comparison" for r in rows) < 40:
        a, b = rng.sample(range(10, 100), 2)
        word = rng.choice(["larger", "smaller"])
        q = f"Which number is {word}: {a} or {b}? Answer with just the number."
        if q not in seen:
            seen.add(q)
            ans = max(a, b) if word == "larger" else min(a, b)
            rows.append(
                {"question": q, "answer": str(ans), "answer_type": "number", "task": "comparison"}
            )
    for q, right, wrong in FACTS:
        options = [right, *wrong]
        rng.shuffle(options)
        letters = "ABCD"
        lines = "\n".join(f"{letters[i]}) {o}" for i, o in enumerate(options))
        rows.append(
            {
                "question": f"{q}\n{lines}\nAnswer with the letter of the right option.",
                "answer": letters[options.index(right)],
                "answer_type": "choice",
                "task": "multiple_choice",
            }
        )
    rng.shuffle(rows)
    for i, r in enumerate(rows):
        r["id"] = f"q{i:03d}"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w") as f:
        for r in rows:
            f.write(json.dumps({"id": r.pop("id"), **r}) + "\n")
    print(f"wrote {len(rows)} questions to {OUT}")


if __name__ == "__main__":
    main()
