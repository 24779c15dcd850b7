"""A small labeled toy outcome set: three topics, three specialist models."""

from __future__ import annotations

TOPICS = {
    "arithmetic": [
        "What is 17 times 23?",
        "Compute 481 plus 932.",
        "What is 1000 divided by 8?",
        "Subtract 299 from 1024.",
        "What is the square of 31?",
        "Multiply 45 by 12.",
        "What is 7 to the power of 3?",
        "Add 3456 and 6543.",
        "What is 144 divided by 12?",
        "Calculate 86 minus 47.",
    ],
    "cooking": [
        "How long should I boil an egg for a runny yolk?",
        "What temperature do I roast a chicken at?",
        "How do I make a simple tomato sauce?",
        "What can I use instead of butter in a cake?",
        "How do I keep rice from getting sticky?",
        "How long do I knead bread dough?",
        "What spices go well with lentil soup?",
        "How do I caramelize onions properly?",
        "How do I make pancakes fluffy?",
        "Can I freeze cooked pasta?",
    ],
    "code": [
        "Write a Python function that reverses a string.",
        "How do I read a CSV file in Python?",
        "Write a function to check whether a number is prime.",
        "How do I sort a list of dictionaries by a key in Python?",
        "Write a Python function that flattens a nested list.",
        "How do I open a file and count its lines in Python?",
        "Implement binary search in Python.",
        "Write a function that returns the Fibonacci numbers up to n.",
        "How do I remove duplicates from a list in Python?",
        "Write a Python class for a stack with push and pop.",
    ],
}
# which model is good at which topic: scores are exact so tests can check routing
SKILL = {
    "math-model": {"arithmetic": 1.0, "cooking": 0.0, "code": 0.2},
    "chef-model": {"arithmetic": 0.1, "cooking": 1.0, "code": 0.0},
    "code-model": {"arithmetic": 0.2, "cooking": 0.1, "code": 1.0},
}
COST = {"math-model": 1.0, "chef-model": 0.5, "code-model": 2.0}


def toy_rows(with_cost: bool = True) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for topic, queries in TOPICS.items():
        for q in queries:
            row: dict[str, object] = {
                "query": q,
                "task": topic,
                "scores": {m: s[topic] for m, s in SKILL.items()},
            }
            if with_cost:
                row["costs"] = dict(COST)
            rows.append(row)
    return rows
